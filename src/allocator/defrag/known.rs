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
//!
//! A completed move changes two blocks in ways known exactly, and their walks follow it
//! rather than being made again (Full's gathering moves a few allocations out of a block
//! and into another in each pass, and each would otherwise be walked afresh in the next
//! plan): the source's walk loses the allocation's entry, its live bytes and its count, and
//! gains the removal of the allocation's record; the destination's walk gains the entry at
//! its new place, the bytes its range holds (measured when the plan made it) and one
//! allocation. Each is followed only when the walk was up to date with the registrations
//! just before the move completed (the walk's registrations time is the memory's then), so
//! that the change followed is the only one since; the block's own counts are compared
//! with the followed ones by the next [`holds`](KnownWalk::holds) as before, so anything
//! else that happened to the block (an allocation of the application, a destination not
//! completed yet, a move skipped) still walks it afresh. A walk that cannot follow is
//! dropped.

use super::drain::{Found, NO_SLOT};
use super::registry::{Indexed, Registry};
use super::{HandleMap, MoveId};
use crate::device_memory::MemoryObject;
use crate::layout::DeviceSize;
use crate::suballocator::Suballocator;
use ash::vk;

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
    /// The fewest bytes one of them needs (`DeviceSize::MAX`: none found).
    smallest: DeviceSize,
}

/// The fewest bytes one of `found` needs (`DeviceSize::MAX`: none).
fn smallest_need(found: &[Found]) -> DeviceSize {
    found
        .iter()
        .map(Found::need)
        .min()
        .unwrap_or(DeviceSize::MAX)
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
            smallest: smallest_need(&kept),
            found: kept,
        }
    }

    /// The fewest bytes one of the allocations found needs (`DeviceSize::MAX`: none), while
    /// the walk holds for `block`, whose live bytes are `live` now.
    pub fn smallest_if_holds(
        &self,
        block: &Block<S, MemoryObject>,
        live: DeviceSize,
        registry: &Registry,
    ) -> Option<DeviceSize> {
        self.holds(block, live, registry).then_some(self.smallest)
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

/// A completed move, as the walks of its two blocks [follow](follow_move) it.
pub(super) struct Completed {
    /// The allocation that moved.
    pub id: MoveId,
    /// Its source's memory, and that block's count of removed records just before the move
    /// completed.
    pub from: (vk::DeviceMemory, u64),
    /// Its destination's memory, and that block's count of removed records once the move
    /// completed.
    pub to: (vk::DeviceMemory, u64),
    /// The bytes the destination's range holds in its block (0: not known).
    pub range: DeviceSize,
    /// When the registrations of the source's and the destination's memory had last
    /// changed just before the move completed.
    pub before: (u64, u64),
}

/// Follows a completed move `m` in the walks of its source and destination blocks, as the
/// registry is once it completed (see the [module docs](self)); a walk that cannot follow
/// is dropped.
pub(super) fn follow_move<S: Suballocator + Send + 'static>(
    known: &mut HandleMap<KnownWalk<S>>,
    registry: &Registry,
    m: &Completed,
) {
    let ((from, removals_before), (to, removals_to)) = (m.from, m.to);
    if let Some(walk) = known.get_mut(&from) {
        if !(from != to && walk.source_left(m, removals_before, registry.changed(from))) {
            known.remove(&from);
        }
    }
    if let Some(walk) = known.get_mut(&to) {
        let entry = registry.get(m.id).filter(|&(memory, _)| memory == to);
        let followed = match entry {
            Some((_, indexed)) if from != to => {
                walk.received(m, indexed, removals_to, registry.changed(to))
            }
            _ => false,
        };
        if !followed {
            known.remove(&to);
        }
    }
}

impl<S: Suballocator + Send + 'static> KnownWalk<S> {
    /// Follows the move `m` out of this walk's block: `false` when the walk cannot.
    fn source_left(&mut self, m: &Completed, removals_before: u64, changed: u64) -> bool {
        if self.registrations != m.before.0 || self.removals != removals_before {
            return false;
        }
        let Some(at) = self.found.iter().position(|f| f.id() == m.id) else {
            return false;
        };
        let size = self.found[at].size;
        // A range shared with another allocation (a bump block's: the bytes are counted on
        // its first): what its block frees is not known here.
        if size == 0 || self.found.get(at + 1).is_some_and(|f| f.size == 0) || size > self.live {
            return false;
        }
        let left = self.found.remove(at);
        if left.need() == self.smallest {
            self.smallest = smallest_need(&self.found);
        }
        self.live -= size;
        self.count = self.count.saturating_sub(1);
        // The source's record, removed when it was freed.
        self.removals = removals_before + 1;
        self.registrations = changed;
        true
    }

    /// Follows the move `m` into this walk's block, where it is registered as `indexed` now:
    /// `false` when the walk cannot.
    fn received(&mut self, m: &Completed, indexed: Indexed, removals: u64, changed: u64) -> bool {
        if m.range == 0 || self.registrations != m.before.1 || self.removals != removals {
            return false;
        }
        if indexed.pinned {
            // A walk finds no candidate in its range: the block cannot be emptied.
            self.all_movable = false;
        } else {
            let key = (indexed.offset, indexed.id);
            let at = self
                .found
                .partition_point(|f| (f.indexed.offset, f.indexed.id) < key);
            self.smallest = self.smallest.min(indexed.layout.size());
            self.found.insert(
                at,
                Found {
                    indexed,
                    memory: m.to.0,
                    size: m.range,
                    slot: NO_SLOT,
                },
            );
        }
        self.live += m.range;
        self.count += 1;
        self.registrations = changed;
        true
    }
}
