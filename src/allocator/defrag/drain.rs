//! Drains: blocks emptied over several passes (see the planner's
//! [draining](super::plan#passes-and-draining)), their records and their reservations.
//!
//! A block being drained is set aside: nothing is allocated in it, so its ranges can only go,
//! through the moves completed or through the application freeing. What the walk that
//! started the drain found is kept in a [`WalkRecord`], with the destination held for each
//! allocation that a later pass moves (its *reservation*). While the block shows that nothing
//! but the completed moves has left it, the record less the moved allocations is the block as
//! a walk would find it, and a pass hands out the drain's next part straight from it
//! ([`Defragmentation::continue_drains`]), without a picture or a plan.

use super::plan::{self, DrainPart, Limits};
use super::registry::Indexed;
use super::{Block, Defragmentation, IdMap, Move, MoveId};
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

    /// Its move, to `destination`, whose range holds `range` bytes of its block (0: not
    /// known).
    pub fn to(&self, destination: MemoryAlloc, range: DeviceSize) -> Move {
        Move {
            index: 0,
            id: self.id(),
            source_memory: self.memory,
            source_offset: self.indexed.offset,
            size: self.need(),
            destination,
            range,
        }
    }
}

/// The longest [`WalkRecord`] that [`left`](WalkRecord::left) scans; a longer one is looked
/// up by id (a map made once: cheaper than the scans after some dozens of moves).
const SCAN_LIMIT: usize = 64;

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
    /// Where each allocation is in `entries`, by id, made by the first
    /// [`left`](Self::left) of a record longer than [`SCAN_LIMIT`]: a scan of a block of
    /// thousands of allocations at each of their moves made draining it quadratic.
    pub slots: Option<IdMap<u32>>,
    /// Bytes (held in the block) and number of the entries [`gone`](Entry::gone).
    pub gone_bytes: DeviceSize,
    pub gone: usize,
    /// The block's count of removed metadata records when the record was made: while a
    /// drain waits for its turn, nothing leaves the block but what the application frees
    /// (every allocation in it is registered, so it has a record, which its free removes).
    pub removals: u64,
}

impl WalkRecord {
    /// Notes that allocation `id` left the block (its move was completed).
    pub fn left(&mut self, id: MoveId) {
        if self.slots.is_none() && self.entries.len() > SCAN_LIMIT {
            let slots = self.entries.iter().enumerate();
            self.slots = Some(slots.map(|(k, e)| (e.found.id(), k as u32)).collect());
        }
        let slot = match &self.slots {
            Some(slots) => slots.get(&id).map(|&k| k as usize),
            None => self
                .entries
                .iter()
                .position(|e| e.found.id() == id && !e.gone),
        };
        if let Some(e) = slot
            .and_then(|k| self.entries.get_mut(k))
            .filter(|e| !e.gone)
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

/// The drains' parts handed out without a plan ([`Defragmentation::continue_drains`]).
pub(super) struct ContinuedDrains<S> {
    /// How many moves it pushed.
    pub count: usize,
    /// The memory object of each move's destination.
    pub destinations: Vec<vk::DeviceMemory>,
    /// Bytes the moves hold in their blocks (a candidate's size).
    pub bytes: DeviceSize,
    /// The drains that end in this pass (every allocation left moves), in order.
    pub ended: Vec<Block<S, MemoryObject>>,
    /// The drains left, in order (the first may move its part in this pass).
    pub left: Vec<Block<S, MemoryObject>>,
    /// Whether the first of `left` moves its part in this pass.
    pub part: bool,
    /// The pass is full: the drains left wait for the next passes. Otherwise a plan decides
    /// the rest of the pass (no drain is left, or the first one left changed since its walk).
    pub full: bool,
}

impl<S: Suballocator + Send + 'static> Defragmentation<S> {
    /// The next parts of the drains `drains` of block vector `v` (in the order the plan that
    /// started them tried them), handed out from their [records](WalkRecord) within `limits`
    /// by the planner's rule: each drain in turn, whole while it fits what is left of the
    /// pass, then the part ([`plan::drain_part`]) of the first that does not, and the pass is
    /// full. Each allocation left holds its destination already, in a block that cannot be
    /// emptied while it does, so nothing but the limits is left to decide. It stops, leaving
    /// the rest to a plan, at a drain whose block changed since its walk (the application
    /// freed some of it) or an allocation of which left without its reservation (its move was
    /// skipped).
    pub(super) fn continue_drains(
        &mut self,
        v: usize,
        drains: Vec<Block<S, MemoryObject>>,
        limits: Limits,
        moves: &mut Vec<Option<Move>>,
    ) -> ContinuedDrains<S> {
        let from = moves.len();
        let mut destinations = std::mem::take(&mut self.destination_scratch);
        destinations.clear();
        let mut bytes = 0;
        let mut ended = 0;
        let mut part = false;
        let mut full = false;
        let mut left = std::mem::take(&mut self.left_scratch);
        for block in &drains {
            let memory = block.memory().handle();
            let Some(record) = self.walks.get_mut(&memory) else {
                break;
            };
            let live = block.memory().size().saturating_sub(block.free_size());
            if !record.holds(block, live) {
                break;
            }
            // The allocations left, in the record's order: the reservations largest first.
            left.clear();
            left.extend((0..record.entries.len()).filter(|&k| !record.entries[k].gone));
            // What a pass's limit counts: the bytes each move copies.
            let size = |i: usize| record.entries[left[i]].found.need();
            if left
                .iter()
                .any(|&k| record.entries[k].reservation.is_none())
                || (1..left.len()).any(|i| size(i - 1) < size(i))
            {
                break;
            }
            let room = Limits {
                bytes: limits.bytes.saturating_sub(bytes),
                moves: limits.moves.saturating_sub(moves.len() - from),
            };
            let drain_part = plan::drain_part(left.len(), size, room);
            let mut hand_out = |k: usize| {
                let e = &mut record.entries[k];
                if let Some((destination, alloc)) = e.reservation.take() {
                    bytes += e.found.need();
                    destinations.push(destination);
                    moves.push(Some(e.found.to(alloc, 0)));
                }
            };
            match drain_part {
                DrainPart::Whole => {
                    left.iter().for_each(|&k| hand_out(k));
                    // Nothing of it is left to hold.
                    self.walks.remove(&memory);
                    ended += 1;
                }
                DrainPart::Part(p) => {
                    p.iter().for_each(|&i| hand_out(left[i]));
                    part = !p.is_empty();
                    full = true;
                    break;
                }
                DrainPart::Waits => {
                    full = true;
                    break;
                }
            }
        }
        self.left_scratch = left;
        let mut rest = drains;
        let ended: Vec<_> = rest.drain(..ended).collect();
        if full {
            // The drains that wait: one the application freed some of since its walk is given
            // up (back into the search), so that the destinations it holds do not outlive
            // what they were for. (The first was checked above.)
            let target = &self.vecs[v];
            let walks = &mut self.walks;
            let mut first = true;
            rest.retain(|block| {
                if std::mem::take(&mut first) {
                    return true;
                }
                let memory = block.memory().handle();
                let same = walks
                    .get(&memory)
                    .is_some_and(|r| r.removals == block.removals());
                if !same {
                    walks.remove(&memory);
                    target.blocks.put_back(block);
                }
                same
            });
        }
        ContinuedDrains {
            count: moves.len() - from,
            destinations,
            bytes,
            ended,
            left: rest,
            part,
            full,
        }
    }
}
