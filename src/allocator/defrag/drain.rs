//! Drains: blocks emptied over several passes (see the planner's
//! [draining](super::plan#passes-and-draining)), their records and their reservations.
//!
//! A block being drained is set aside: nothing is allocated in it, so its ranges can only go,
//! through the moves completed or through the application freeing. What the walk that
//! started the drain found is kept in a [`WalkRecord`], with the destination held for each
//! allocation that a later pass moves (its *reservation*). While the block shows that nothing
//! but the completed moves has left it, the record less the moved allocations is the block as
//! a walk would find it, and a pass hands out the drain's next part straight from it
//! ([`Defragmentation::continue_drain`]), without a picture or a plan.

use super::plan::{self, DrainPart, Limits};
use super::registry::Indexed;
use super::{Block, Defragmentation, Move, MoveId};
use crate::allocation::MemoryAlloc;
use crate::device_memory::MemoryObject;
use crate::layout::DeviceSize;
use crate::suballocator::Suballocator;
use ash::vk;

/// A destination held for an allocation of a draining block that a later pass moves: the
/// memory it is in, and the allocation.
pub(super) type Reservation = (vk::DeviceMemory, MemoryAlloc);

/// One registered allocation a walk found in a block: what a candidate stands for, and what its
/// move says of its source.
#[derive(Clone, Copy, Debug)]
pub(super) struct Found {
    /// Its entry in the registry (offset, id, what a destination needs).
    pub indexed: Indexed,
    pub memory: vk::DeviceMemory,
    /// The bytes it holds in the block (its range, padding included: a candidate's `size`).
    pub size: DeviceSize,
    /// Its entry in its block's [`WalkRecord`], when a record gave it ([`NO_SLOT`]: a walk).
    pub slot: u32,
}

impl Found {
    pub fn id(&self) -> MoveId {
        self.indexed.id
    }

    /// Its layout's size (a candidate's `need`, and the bytes its move copies).
    pub fn need(&self) -> DeviceSize {
        self.indexed.layout.size()
    }

    /// Its move, to `destination`.
    pub fn to(&self, destination: MemoryAlloc) -> Move {
        Move {
            index: 0,
            id: self.id(),
            source_memory: self.memory,
            source_offset: self.indexed.offset,
            size: self.need(),
            destination,
        }
    }
}

/// [`Found::slot`] of an allocation a walk found.
pub(super) const NO_SLOT: u32 = u32::MAX;

/// One allocation of a [`WalkRecord`].
pub(super) struct Entry {
    pub found: Found,
    /// Its move was completed: it is in another block now.
    pub gone: bool,
    /// Its destination, held until a pass moves it.
    pub reservation: Option<Reservation>,
}

/// What a walk over a block found, kept while the block drains (see the
/// [module docs](self)). It also learns of the completed moves from
/// [`complete`](super::DefragmentationPass::complete): a pass reads it in one sweep, without
/// looking the allocations up.
pub(super) struct WalkRecord {
    pub live: DeviceSize,
    pub count: usize,
    /// The registered allocations in the block: those with reservations largest first, then
    /// the others.
    pub entries: Vec<Entry>,
    /// Bytes (held in the block) and number of the entries [`gone`](Entry::gone).
    pub gone_bytes: DeviceSize,
    pub gone: usize,
}

impl WalkRecord {
    /// Notes that allocation `id` left the block (its move was completed).
    pub fn left(&mut self, id: MoveId) {
        if let Some(e) = self
            .entries
            .iter_mut()
            .find(|e| e.found.id() == id && !e.gone)
        {
            e.gone = true;
            self.gone_bytes += e.found.size;
            self.gone += 1;
        }
    }

    /// Whether the record still describes the block, whose live bytes are `live` now: nothing
    /// but the completed moves left it since the walk.
    pub fn holds<S: Suballocator + Send + 'static>(
        &self,
        block: &Block<S, MemoryObject>,
        live: DeviceSize,
    ) -> bool {
        self.live.checked_sub(self.gone_bytes) == Some(live)
            && self.count.checked_sub(self.gone) == Some(block.allocation_count())
    }
}

/// A drain's part handed out without a plan ([`Defragmentation::continue_drain`]).
pub(super) struct ContinuedDrain<S> {
    /// How many moves it pushed.
    pub count: usize,
    /// The memory object of each move's destination.
    pub destinations: Vec<vk::DeviceMemory>,
    /// Bytes the moves hold in the block (a candidate's size).
    pub bytes: DeviceSize,
    /// Every allocation left moves: the block empties in this pass.
    pub ended: bool,
    pub block: Block<S, MemoryObject>,
}

impl<S: Suballocator + Send + 'static> Defragmentation<S> {
    /// The next part of the drain going on in block vector `v`, handed out from the drain's
    /// [record](WalkRecord) within `limits` by the planner's rule ([`plan::drain_part`]), or
    /// `None` when a plan must decide: no drain or several, the block changed since its walk
    /// (the application freed some of it), or an allocation left without its reservation
    /// (its move was skipped). Each allocation left holds its destination already, in a
    /// block that cannot be emptied while it does, so nothing but the limits is left to
    /// decide.
    pub(super) fn continue_drain(
        &mut self,
        v: usize,
        limits: Limits,
        moves: &mut Vec<Option<Move>>,
    ) -> Option<ContinuedDrain<S>> {
        let mut mine = self.draining.iter().filter(|(w, _)| *w == v);
        let (_, block) = mine.next()?;
        if mine.next().is_some() {
            return None;
        }
        let memory = block.memory().handle();
        let record = self.walks.get_mut(&memory)?;
        let live = block.memory().size().saturating_sub(block.free_size());
        if !record.holds(block, live) {
            return None;
        }
        // The allocations left, in the record's order: the reservations largest first.
        let mut left = std::mem::take(&mut self.left_scratch);
        left.clear();
        left.extend((0..record.entries.len()).filter(|&k| !record.entries[k].gone));
        let size = |i: usize| record.entries[left[i]].found.size;
        if left
            .iter()
            .any(|&k| record.entries[k].reservation.is_none())
            || (1..left.len()).any(|i| size(i - 1) < size(i))
        {
            self.left_scratch = left;
            return None;
        }
        let part = plan::drain_part(left.len(), size, limits);
        let from = moves.len();
        let mut destinations = std::mem::take(&mut self.destination_scratch);
        destinations.clear();
        let mut bytes = 0;
        let mut hand_out = |k: usize| {
            let e = &mut record.entries[k];
            if let Some((destination, alloc)) = e.reservation.take() {
                bytes += e.found.size;
                destinations.push(destination);
                moves.push(Some(e.found.to(alloc)));
            }
        };
        let ended = match part {
            DrainPart::Whole => {
                left.iter().for_each(|&k| hand_out(k));
                true
            }
            DrainPart::Part(part) => {
                part.iter().for_each(|&i| hand_out(left[i]));
                false
            }
            DrainPart::Waits => false,
        };
        self.left_scratch = left;
        let drain = ContinuedDrain {
            count: moves.len() - from,
            destinations,
            bytes,
            ended,
            block: block.clone(),
        };
        if ended {
            // Nothing of it is left to hold.
            self.walks.remove(&memory);
        }
        Some(drain)
    }
}
