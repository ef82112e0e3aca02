//! What a walk over a block found, kept from pass to pass while the block shows that it still
//! holds: a block that no pass empties is tried as a source again and again (Full's gathering
//! tries the least occupied blocks first in every pass, and bounded passes are many), and a
//! walk over its ranges is the bulk of trying it.
//!
//! A walk's result is a function of the block's ranges and of the registrations in its
//! memory. It still holds while the block is the same block (not another one that got the
//! same memory handle), none of its metadata records was removed (a registered allocation
//! has one, which its free removes), its allocation count and live bytes are the same (no
//! allocation came, none went), and its memory's registrations have not changed since
//! (none joined, left, moved or was pinned: the registry's [clock](super::registry)). Any
//! other change walks the block afresh.

use super::drain::Found;
use super::registry::Registry;
use crate::device_memory::MemoryObject;
use crate::layout::DeviceSize;
use crate::suballocator::Suballocator;

use super::super::block_vec::{Block, WeakBlock};

/// A block walked afresh in a plan: its index in the picture, what it showed (live bytes,
/// allocation count, removed records), whether all of it may move, and its candidates.
pub(super) type FreshWalk = (
    usize,
    (DeviceSize, usize, u64),
    bool,
    std::ops::Range<usize>,
);

/// A walk's result and what the block showed when it was made.
pub(super) struct KnownWalk<S> {
    block: WeakBlock<S, MemoryObject>,
    live: DeviceSize,
    count: usize,
    removals: u64,
    registrations: u64,
    /// Whether every live allocation of the block may move.
    pub all_movable: bool,
    /// The registered allocations found, in the walk's order.
    pub found: Vec<Found>,
}

impl<S: Suballocator + Send + 'static> KnownWalk<S> {
    /// What a walk of `block` found (`found`, in the walk's order), when the block showed
    /// `live` bytes, `count` allocations and `removals` removed records, and its
    /// registrations had last changed at `registrations`. Reuses `old`'s room.
    pub fn new(
        block: &Block<S, MemoryObject>,
        (live, count, removals, registrations): (DeviceSize, usize, u64, u64),
        all_movable: bool,
        found: &[Found],
        old: Option<Self>,
    ) -> Self {
        let mut kept = old.map(|o| o.found).unwrap_or_default();
        kept.clear();
        kept.extend_from_slice(found);
        Self {
            block: block.downgrade(),
            live,
            count,
            removals,
            registrations,
            all_movable,
            found: kept,
        }
    }

    /// Whether the walk still holds for `block`, whose live bytes are `live` now (see the
    /// [module docs](self)).
    pub fn holds(
        &self,
        block: &Block<S, MemoryObject>,
        live: DeviceSize,
        registry: &Registry,
    ) -> bool {
        self.block.is(block)
            && self.live == live
            && self.removals == block.removals()
            && self.registrations == registry.changed(block.memory().handle())
            && self.count == block.allocation_count()
    }
}
