//! The allocator's side of the sources Full's gathering [passes over](super::plan#algorithms):
//! which sources the last plan of a vector found exhausted, and what each block that could
//! receive showed of its room when that plan ended, so that the next picture marks them
//! exhausted and unchanged only while that still holds.
//!
//! A block's *stamp* is what the allocator sees of it without a walk: its count of removed
//! metadata records, its allocation count and its free bytes. Room comes back to a block only
//! through a free: a completed move out of it (its source's record is removed, and the count
//! and the free bytes change), a skipped move's destination given back, or the application
//! freeing an allocation between passes (the count falls and the free bytes grow, or, with an
//! allocation of its own made meanwhile, the count or the free bytes differ unless the new
//! allocations hold exactly as many bytes as the freed). The one change a stamp does not show
//! is the application freeing allocations without records and making as many others, of
//! exactly the same bytes, in the same block between two plans; the cost of missing it is
//! a source not gathered in that plan, never a wrong move: a source is only passed over.
//!
//! A block new to the list, or one that was set aside when the plan ended (emptied, or
//! draining), has no stamp kept: it is not unchanged.

use super::known::KnownWalk;
use super::plan::BlockState;
use super::registry::Registry;
use super::HandleMap;
use crate::device_memory::MemoryObject;
use crate::layout::DeviceSize;
use crate::suballocator::Suballocator;

use super::super::block_vec::{Block, WeakBlock};

/// What a block shows of its room (see the [module docs](self)): removed records, allocation
/// count, free bytes.
type Stamp = (u64, usize, DeviceSize);

/// The stamp of `block`, whose free bytes are `free`.
fn stamp<S: Suballocator + Send + 'static>(
    block: &Block<S, MemoryObject>,
    free: DeviceSize,
) -> Stamp {
    (block.removals(), block.allocation_count(), free)
}

/// One vector's sources found exhausted by its last plan, and the stamps of its blocks then.
pub(super) struct Settling<S> {
    /// The sources, with the time their memory's registrations had last changed then.
    sources: HandleMap<u64>,
    /// Each block that could receive, its stamp and the live bytes the plan counted it with.
    stamps: HandleMap<(WeakBlock<S, MemoryObject>, Stamp, DeviceSize)>,
}

impl<S> Default for Settling<S> {
    fn default() -> Self {
        Self {
            sources: HandleMap::default(),
            stamps: HandleMap::default(),
        }
    }
}

impl<S: Suballocator + Send + 'static> Settling<S> {
    /// Marks in `states` (pictures of `blocks`) the blocks [exhausted](BlockState::exhausted):
    /// found so by the last plan, and holding what they held then but the moves out of them
    /// that completed (their walk kept in `known` still holds, or they show the stamp kept
    /// and their registrations have not changed since); and those
    /// [unchanged](BlockState::unchanged): showing the stamp kept when that plan ended (see
    /// [`plan::settle`](super::plan)).
    pub fn mark(
        &self,
        blocks: &[Block<S, MemoryObject>],
        states: &mut [BlockState],
        known: &HandleMap<KnownWalk<S>>,
        registry: &Registry,
    ) {
        if self.sources.is_empty() {
            return;
        }
        for (block, state) in blocks.iter().zip(states.iter_mut()) {
            if state.draining {
                continue;
            }
            let memory = block.memory().handle();
            let unchanged = self.stamps.get(&memory).is_some_and(|(w, kept, counted)| {
                w.is(block)
                    && *counted == state.live
                    && *kept == stamp(block, state.size.saturating_sub(state.live))
            });
            // It holds what it held then but the moves out of it that completed: its walk
            // followed them; or nothing changed in it at all (no move out of it completed,
            // none was skipped: its registrations are as they were).
            state.exhausted = self.sources.get(&memory).is_some_and(|&changed| {
                known
                    .get(&memory)
                    .is_some_and(|k| k.holds(block, state.live, registry))
                    || (unchanged && registry.changed(memory) == changed)
            });
            state.unchanged = unchanged;
        }
    }

    /// Keeps the sources a plan over `blocks` found `exhausted`, and the stamps of the blocks
    /// not `aside` (emptied or draining) as the plan left them, with the live bytes it
    /// `counted` each with; forgets both when no source was exhausted.
    pub fn keep(
        &mut self,
        blocks: &[Block<S, MemoryObject>],
        (exhausted, counted): (&[usize], &[DeviceSize]),
        aside: impl Fn(usize) -> bool,
        registry: &Registry,
    ) {
        self.sources.clear();
        self.stamps.clear();
        if exhausted.is_empty() {
            return;
        }
        self.sources.extend(exhausted.iter().map(|&b| {
            let memory = blocks[b].memory().handle();
            (memory, registry.changed(memory))
        }));
        for (b, block) in blocks.iter().enumerate() {
            if !aside(b) {
                let live = counted.get(b).copied().unwrap_or(DeviceSize::MAX);
                let kept = (block.downgrade(), stamp(block, block.free_size()), live);
                self.stamps.insert(block.memory().handle(), kept);
            }
        }
    }

    /// Forgets everything (the defragmentation ends).
    pub fn clear(&mut self) {
        self.sources.clear();
        self.stamps.clear();
    }
}
