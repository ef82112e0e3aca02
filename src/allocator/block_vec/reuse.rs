//! Large requests in kept empty blocks: a memory object the vector keeps for reuse (see
//! [releasing](super#releasing)) serves a request that would otherwise get one of its own
//! (see the placement's
//! [kept blocks](crate::allocator::placement#kept-blocks-for-large-requests)).

use super::{Arena, BlockMemory, BlockVec, Fit, Wrap};
use crate::allocator::placement;
use crate::suballocator::Suballocator;
use std::sync::atomic::Ordering;
use std::sync::Arc;

impl<S: Suballocator + Send + 'static, M: BlockMemory> BlockVec<S, M> {
    /// Suballocates `fit` in the smallest empty block for which it is large (more than
    /// 1/[`LARGE_REQUEST_DIVISOR`](placement::LARGE_REQUEST_DIVISOR) of the block) and one of
    /// whose arenas holds it, or `None`.
    pub(crate) fn allocate_in_kept<W: Wrap<S, M>>(&self, fit: &Fit, wrap: &W) -> Option<W::Out> {
        if !self.maybe_kept.load(Ordering::Acquire) {
            return None;
        }
        let size = fit.layout.size();
        let fits = |a: &&Arc<Arena<S, M>>| a.may_fit_empty(fit.layout, fit.allocation_type);
        let blocks = self.blocks.read();
        let block = blocks
            .iter()
            .filter(|b| {
                b.is_empty()
                    && size > placement::kept_block_threshold(b.memory().size(), b.for_large())
                    && b.arenas().iter().any(|a| fits(&a))
            })
            .min_by_key(|b| b.memory().size())?;
        for arena in block.arenas().iter().filter(fits) {
            if let Some(Ok(placed)) = arena.try_allocate(
                fit.layout,
                fit.allocation_type,
                fit.granularity,
                true,
                fit.strategy,
            ) {
                arena.note_slot(self.home_slot());
                return Some(wrap.wrap(arena, placed));
            }
        }
        None
    }
}
