//! Allocation strategies: which free range a suballocator picks when several fit (VMA's
//! `VMA_ALLOCATION_CREATE_STRATEGY_*` flags and pool algorithms).
//!
//! - [`MinTime`](AllocationStrategy::MinTime): the fastest search. For the
//!   [`FreeListAllocator`](super::FreeListAllocator), the first range of the first size class
//!   sure to hold the request (good fit, O(1) unless the request is about to fail), after the
//!   first range of the request's own size class in a region at most a quarter free that
//!   holds 32 allocations or more; across blocks, the first block with room, each thread
//!   starting from its own arena.
//! - [`MinMemory`](AllocationStrategy::MinMemory): the smallest free range that fits (best
//!   fit), leaving large ranges whole for large requests; across blocks, the block with the
//!   least room that fits first. Costs a scan of the ranges of one size class (and of every
//!   arena's hint across blocks).
//! - [`MinOffset`](AllocationStrategy::MinOffset): the free range at the lowest offset that
//!   fits (first fit in address order), which packs allocations towards the start of a block
//!   so that its end empties (useful before a defragmentation or to let blocks go); across
//!   blocks, the first block in creation order. Costs a walk of the region's ranges.
//! - [`Default`](AllocationStrategy::Default): the suballocator's or pool's own choice (the
//!   allocator's default is `MinTime`, with a best fit for requests large for their
//!   blocks).
//!
//! Suballocators that have no choice to make (buddy, pool, bump, ring) ignore the strategy.

/// Which free range to pick when several fit (see the [module docs](self)).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum AllocationStrategy {
    /// The suballocator's (or pool's) own choice.
    #[default]
    Default,
    /// The smallest range that fits (best fit): the least memory wasted.
    MinMemory,
    /// The first range found that surely fits: the fastest.
    MinTime,
    /// The range at the lowest offset that fits.
    MinOffset,
}
