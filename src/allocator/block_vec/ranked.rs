//! The searches that rank arenas instead of taking the first that fits: the tightest arena
//! in use, where a request goes that the first block's home arena cannot take; the best fit
//! of large requests and of [`MinMemory`](AllocationStrategy::MinMemory); the lowest offsets
//! of [`MinOffset`](AllocationStrategy::MinOffset) (see
//! [which block](crate::allocator::placement#which-block)).

#![deny(unsafe_code)]

use super::{Arena, Block, BlockMemory, BlockVec, DoesNotFit, Fit, Wrap};
use crate::allocator::placement;
use crate::layout::{DeviceLayout, DeviceSize};
use crate::suballocator::{AllocationStrategy, AllocationType, Suballocator};
use std::sync::Arc;

/// Added to the excess of an empty block that a best-fit request fits loosely: more than any
/// excess (device sizes stay below 2^62), less than the wrapped excess of an arena too small.
const LOOSE_FIT_PENALTY: DeviceSize = 1 << 62;

impl<S: Suballocator + Send + 'static, M: BlockMemory> BlockVec<S, M> {
    /// Of the arenas that hold allocations (by the hints) and that no thread of another slot
    /// than `slot` allocated in last, the one with the smallest largest free range that may
    /// fit the request (the first of equals in the blocks' order, so that older blocks fill
    /// first). `arenas`: the arenas of the list in its order, in runs (each block's, or all of
    /// them at once).
    #[inline]
    pub(super) fn tightest_in_use<'a>(
        arenas: impl IntoIterator<Item = &'a [Arc<Arena<S, M>>]>,
        slot: usize,
        layout: DeviceLayout,
        allocation_type: AllocationType,
    ) -> Option<&'a Arc<Arena<S, M>>> {
        let size = layout.size();
        let mut best = None;
        // As in `search_best_fit`: a hint below the request wraps past every excess that fits.
        let mut best_excess = (DeviceSize::MAX - size).saturating_add(1);
        for run in arenas {
            for arena in run {
                // Another thread's arena is passed over on a line that its owner rarely
                // writes, before the hints that it writes as it allocates are read.
                if arena.last_used_by_another(slot) {
                    continue;
                }
                let excess = arena.largest_free_hint().wrapping_sub(size);
                if excess < best_excess
                    && arena.in_use_hint()
                    && arena.may_fit(layout, allocation_type)
                {
                    best_excess = excess;
                    best = Some(arena);
                }
            }
        }
        best
    }

    /// The best-fit search of large requests: every arena that may fit, tried in the order of
    /// their largest free range, smallest first.
    #[cold]
    pub(super) fn search_best_fit<W: Wrap<S, M>>(
        &self,
        blocks: &[Block<S, M>],
        fit: &Fit,
        wrap: &W,
    ) -> Result<Option<W::Out>, DoesNotFit> {
        type Candidate<'a, S, M> = (DeviceSize, &'a Arc<Arena<S, M>>);
        // The common case in one walk, with no list and no sort: the arena the sorted search
        // below would try first (the first of the smallest hints), if it is free and fits.
        // Plain nested loops (a flat map's state checks cost more than the test per arena),
        // and the cheap hint comparisons before the full `may_fit`.
        //
        // One comparison per arena: the excess `hint - size` is taken modulo 2^64, so a hint
        // below the request wraps to at least `2^64 - size`, above the excess of every hint
        // that fits (at most `MAX - size`). Starting from that bound, `hint` is a new
        // candidate (at least `size`, less than the best so far) exactly when its excess is
        // smaller. The branch is taken only for each new best (a few times per walk, however
        // the sizes fall), and only then are the other hints (alignment, failures) read.
        let size = fit.layout.size();
        let mut first: Option<&Arc<Arena<S, M>>> = None;
        let mut best_excess = (DeviceSize::MAX - size).saturating_add(1);
        for block in blocks {
            for arena in block.arenas() {
                let mut excess = arena.largest_free_hint().wrapping_sub(size);
                // Only for a candidate: whether it is an empty block too large for the
                // request (then it ranks after every block in use that fits).
                if excess < best_excess {
                    excess = excess.saturating_add(Self::loose_fit_penalty(block, size));
                    if excess < best_excess && arena.may_fit(fit.layout, fit.allocation_type) {
                        best_excess = excess;
                        first = Some(arena);
                    }
                }
            }
        }
        let Some(first) = first else {
            return Ok(None);
        };
        match first.try_allocate(
            fit.layout,
            fit.allocation_type,
            fit.granularity,
            false,
            fit.strategy,
        ) {
            Some(Ok(placed)) => {
                first.note_slot(self.home_slot());
                return Ok(Some(wrap.wrap(first, placed)));
            }
            Some(Err(e)) => Self::no_fit(e)?,
            None => {}
        }
        let mut candidates: smallvec::SmallVec<[Candidate<'_, S, M>; 16]> = blocks
            .iter()
            .flat_map(|b| b.arenas().iter().map(move |a| (b, a)))
            .filter(|(_, a)| a.may_fit(fit.layout, fit.allocation_type))
            .map(|(b, a)| {
                let penalty = Self::loose_fit_penalty(b, size);
                (a.largest_free_hint().saturating_add(penalty), a)
            })
            .collect();
        candidates.sort_by_key(|&(largest, _)| largest);
        // Arenas another thread holds are passed over first, as in the first-fit search, and
        // waited for only when no other arena fits.
        let strategy = fit.strategy;
        let mut busy = false;
        for wait in [false, true] {
            for &(_, arena) in &candidates {
                match arena.try_allocate(
                    fit.layout,
                    fit.allocation_type,
                    fit.granularity,
                    wait,
                    strategy,
                ) {
                    Some(Ok(placed)) => {
                        arena.note_slot(self.home_slot());
                        return Ok(Some(wrap.wrap(arena, placed)));
                    }
                    Some(Err(e)) => Self::no_fit(e)?,
                    None => busy = true,
                }
            }
            if !busy {
                break;
            }
        }
        Ok(None)
    }

    /// What the best-fit search adds to the excess of an arena of `block` for a request of
    /// `size` bytes: an empty block more than [`EMPTY_BLOCK_FIT_PERCENT`] of the request
    /// ranks after every block in use that fits (and after the empty blocks that fit it
    /// well), so that the empty blocks kept for reuse go to requests of about their size
    /// (see [which block](crate::allocator::placement#which-block)).
    ///
    /// [`EMPTY_BLOCK_FIT_PERCENT`]: crate::allocator::placement::EMPTY_BLOCK_FIT_PERCENT
    #[inline]
    fn loose_fit_penalty(block: &Block<S, M>, size: DeviceSize) -> DeviceSize {
        if !placement::fits_empty_block_well(block.memory().size(), size) && block.is_empty() {
            LOOSE_FIT_PENALTY
        } else {
            0
        }
    }

    /// The search of [`MinOffset`](AllocationStrategy::MinOffset): every arena in block
    /// order (blocks in the order they were made), the first that fits, waiting for busy
    /// ones: the lowest place, not the quickest.
    #[cold]
    pub(super) fn search_in_order<W: Wrap<S, M>>(
        &self,
        blocks: &[Block<S, M>],
        fit: &Fit,
        wrap: &W,
    ) -> Result<Option<W::Out>, DoesNotFit> {
        for arena in blocks.iter().flat_map(|b| b.arenas()) {
            if arena.may_fit(fit.layout, fit.allocation_type) {
                match arena.try_allocate(
                    fit.layout,
                    fit.allocation_type,
                    fit.granularity,
                    true,
                    AllocationStrategy::MinOffset,
                ) {
                    Some(Ok(placed)) => {
                        arena.note_slot(self.home_slot());
                        return Ok(Some(wrap.wrap(arena, placed)));
                    }
                    Some(Err(e)) => Self::no_fit(e)?,
                    None => {}
                }
            }
        }
        Ok(None)
    }
}
