//! The [fast try](super::fast)'s two steps, as the block vector takes them: the thread's home
//! arena of the first block, then the tightest arena in use among the copy of the list's
//! arenas that the thread keeps, both without taking a copy of the list. The walk
//! ([`search_from`](BlockVec::search_from)) takes the same steps first, in the same order, so
//! a request lands where the walk would have put it (a property the block vector's tests
//! check against the walk).

use super::{fast, Arena, Block, BlockMemory, BlockVec, Fit, Wrap};
use crate::suballocator::{AllocationStrategy, Suballocator, SuballocatorError};
use std::sync::Arc;

/// What the second step of a thread's [fast try](super::fast) did.
pub(super) enum Tightest<T> {
    /// It served the request.
    Served(T),
    /// Neither of the walk's first two steps can take the request in the list of this
    /// generation: the walk, from its third step if the list is still the same.
    Passed(u64),
    /// The walk, from its first step.
    Walk,
    /// The thread keeps no copy of the vector's current list: the walk, then keep one.
    Stale,
}

impl<S: Suballocator + Send + 'static, M: BlockMemory> BlockVec<S, M> {
    /// Whether a request takes the [fast try](super::fast): one of the default search.
    #[inline(always)]
    pub(super) fn takes_fast_try(fit: &Fit) -> bool {
        !fit.best_fit
            && matches!(
                fit.strategy,
                AllocationStrategy::Default | AllocationStrategy::MinTime
            )
    }

    /// The first step of the walk ([`search_from`](Self::search_from)) for a request of the
    /// default search, in the thread's home arena of the first block that it keeps for this
    /// vector, without the list (see [the fast try](super::fast)).
    #[inline(always)]
    pub(super) fn fast_try<W: Wrap<S, M>>(&self, fit: &Fit, wrap: &W) -> Option<W::Out> {
        if !Self::takes_fast_try(fit) {
            return None;
        }
        let (home, generation, slot) = fast::cached(self.number)?;
        // Also when the first block has no home arena for the thread (see `fast::NO_HOME`).
        if generation != self.blocks.generation() {
            return None;
        }
        // SAFETY: the pointer is that of an `Arc<Arena<S, M>>` whose strong reference the
        // thread's copy holds (the generation holds, so the copy has a home arena): the cache
        // keeps it under this vector's number, which no other vector has, and only
        // `keep_fast` of this vector stores there. The copy lives until this thread stores
        // another in its place, which nothing below does; `ManuallyDrop` leaves the reference
        // to the copy.
        let arena =
            std::mem::ManuallyDrop::new(unsafe { Arc::from_raw(home.cast::<Arena<S, M>>()) });
        if !arena.may_fit(fit.layout, fit.allocation_type) {
            return None;
        }
        match arena.try_allocate_in_use(
            fit.layout,
            fit.allocation_type,
            fit.granularity,
            fit.strategy,
        ) {
            Some(Ok(placed)) => {
                arena.note_slot(slot);
                Some(wrap.wrap(&arena, placed))
            }
            // Full, busy, or empty: the walk's turn.
            _ => None,
        }
    }

    /// The second step of the [fast try](super::fast), after the home arena missed: the tightest
    /// arena in use among those the thread keeps, when they are the current list's.
    #[inline(always)]
    pub(super) fn fast_tightest<W: Wrap<S, M>>(&self, fit: &Fit, wrap: &W) -> Tightest<W::Out> {
        let Some(fast::KeptCopy {
            home,
            generation: kept,
            slot,
            arenas: first,
            len,
        }) = fast::cached_copy(self.number)
        else {
            return Tightest::Stale;
        };
        let generation = kept & !fast::NO_HOME;
        if generation != self.blocks.generation() {
            return Tightest::Stale;
        }
        if kept & fast::NO_HOME == 0 {
            // SAFETY: as in `fast_try`, the thread's copy holds a strong reference of this
            // `Arc<Arena<S, M>>`, and nothing below replaces the copy.
            let home = unsafe { &*home.cast::<Arena<S, M>>() };
            // The first step missed. A request that did not fit there is recorded as failed
            // (see `Arena::may_fit`), and the walk's first step would pass the arena over as
            // the fast try did. While the hints still say that it may fit, the miss was one
            // the walk handles otherwise: an empty arena (which the walk fills, the fast try
            // does not), a busy one (which the walk waits for if nothing else fits), a closed
            // one, or a failure the hints do not record: the walk, from its first step.
            if home.may_fit(fit.layout, fit.allocation_type) {
                return Tightest::Walk;
            }
        }
        // SAFETY: the thread's copy holds `len` `Arc<Arena<S, M>>`s from `first` (the list's
        // arenas, whose generation was found current above): the cache keeps them under this
        // vector's number, which no other vector has, and only `keep_fast` of this vector
        // stores there. They live until this thread stores another copy in their place,
        // which nothing below does.
        let arenas: &[Arc<Arena<S, M>>] = unsafe { std::slice::from_raw_parts(first.cast(), len) };
        let Some(arena) = Self::tightest_in_use(
            std::iter::once(arenas),
            slot,
            fit.layout,
            fit.allocation_type,
        ) else {
            return Tightest::Passed(generation);
        };
        // The allocation as in `fast_try`, written out again: a helper shared by the two,
        // inlined always, cost `frame` 0.7-2 % more instructions (the compiler laid out the
        // first step's code around it differently).
        match arena.try_allocate_in_use(
            fit.layout,
            fit.allocation_type,
            fit.granularity,
            fit.strategy,
        ) {
            Some(Ok(placed)) => {
                arena.note_slot(slot);
                Tightest::Served(wrap.wrap(arena, placed))
            }
            // Too full or fragmented: passed over, as by the walk's second step.
            Some(Err(
                SuballocatorError::OutOfRegionMemory | SuballocatorError::FragmentedRegion,
            )) => Tightest::Passed(generation),
            // Busy or empty (where the walk would go on, or allocate), or a request that
            // never fits (which the walk reports): the walk, from its first step.
            _ => Tightest::Walk,
        }
    }

    /// Keeps the arenas of `blocks` (a copy of the list the caller holds) for the thread's
    /// [fast try](super::fast), `shard` being the thread's shard.
    #[cold]
    #[inline(never)]
    pub(super) fn keep_fast(&self, shard: usize, blocks: &[Block<S, M>]) {
        let slot = shard & (self.home_slots - 1);
        let home = blocks
            .first()
            .and_then(|first| first.home_index(slot, self.home_slots));
        let arenas = blocks
            .iter()
            .flat_map(|block| block.arenas().iter().cloned())
            .collect();
        fast::keep(self.number, arenas, home, self.blocks.generation(), slot);
    }
}
