//! The allocations added to a defragmentation: who each is, where it is now, and whether it
//! may still move.
//!
//! The registry is where the two rules of the [module docs](super) live:
//! [identity, not place](super#identity-not-place) and [termination](super#termination).
//!
//! # Changes settle before a plan reads them
//!
//! Planning reads each memory object's registrations as one list sorted by offset. Keeping
//! every list sorted at every change cost a shift of the whole list per change: registering
//! the allocations of a block one by one, and completing a pass's moves in it, took time
//! quadratic in the block's allocations (12,000 buffers in 64 MiB blocks: setting them up
//! took 20 ms, and settling one pass 51 ms against VMA's 7 ms).
//!
//! Now a short list (under [`SHORT_LIST`] entries) with no change pending still takes each
//! change at once, which costs little. A longer one only notes it, in the memory's
//! [`Pending`] changes (the entries that leave, and those that join in the order they
//! came), and applies them in one pass over the list once they are an eighth of it, or
//! sooner, when a plan calls [`settle`](Registry::settle) before it reads. A change then
//! costs about eight entry moves, whatever the list's length. What does not read the lists
//! (an allocation's own registration by id, the counts, the clock and the verified marks)
//! is kept up to date at every change.

use super::{DefragmentationError, HandleMap, MoveId};
use crate::allocation::Identity;
use crate::layout::{DeviceLayout, DeviceSize};
use crate::suballocator::buddy::OffsetHasher;
use crate::suballocator::AllocationType;
use ash::vk;
use std::collections::HashMap;
use std::hash::BuildHasherDefault;

/// The most moves of one allocation a defragmentation completes; then the allocation stays
/// where it is (see [termination](super#termination)).
pub const MAX_MOVES_PER_ALLOCATION: usize = 2;

/// A registered allocation as the index lists it: where it is and what a destination of it
/// needs, so that planning finds all it needs here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Indexed {
    pub offset: DeviceSize,
    pub id: MoveId,
    /// What its resource requires (a destination's layout; its size is a candidate's `need`,
    /// and the bytes its move copies).
    pub layout: DeviceLayout,
    pub allocation_type: AllocationType,
    pub identity: Identity,
    /// It may not move any more (see [termination](super#termination)).
    pub pinned: bool,
}

impl Indexed {
    /// Its place in its memory's list: by offset (then id).
    fn key(&self) -> Key {
        (self.offset, self.id)
    }
}

/// The longest list a change is made to at once, by shifting its entries (14 KiB at most);
/// longer lists note their changes, to [settle](Registry::settle) them in one pass. Lower,
/// the lists of a few hundred allocations a block (the peers bench's own state) would settle
/// in planning, which costs more there than the shifts; higher, the shifts cost more than
/// the settles they save (callgrind, `benches/peers --defrag`).
const SHORT_LIST: usize = 256;

/// An entry's place in its memory's list (unique: an id has one entry at a time).
type Key = (DeviceSize, MoveId);

/// The changes to one memory's list not yet [settled](Registry::settle).
#[derive(Debug, Default)]
struct Pending {
    /// Entries of the list that leave it, in the order they left.
    leave: Vec<Key>,
    /// Entries that join it, in the order they came (settling sorts them, unless they came
    /// in order, and merges them into the list in one pass).
    join: Vec<Indexed>,
}

/// The registered allocations of one memory object.
#[derive(Debug, Default)]
pub(super) struct Listed {
    /// Sorted by offset.
    pub entries: Vec<Indexed>,
    /// The most bytes one of them needs: a lower bound on the largest allocation of the block
    /// (for the planner's [hint](super::plan::BlockState::largest), without a walk), while the
    /// entries are all live.
    pub largest_need: DeviceSize,
    /// The fewest bytes one of them needs: a lower bound on what each allocation of the block
    /// that may move needs (the planner's [hint](super::plan::BlockState::smallest), without
    /// a walk).
    pub smallest_need: DeviceSize,
}

/// One registration: where its allocation is, and how many of its moves completed.
#[derive(Clone, Copy, Debug)]
struct Registered {
    memory: vk::DeviceMemory,
    entry: Indexed,
    moves: usize,
    /// Its entry is among its memory's [pending](Pending) joiners, not yet in the list.
    joining: bool,
}

/// The registrations of a defragmentation, by id and by memory object.
#[derive(Debug, Default)]
pub(super) struct Registry {
    /// By id; `None` once the allocation left (freed).
    registered: Vec<Option<Registered>>,
    /// The id of each registered allocation, by identity (for [`add`](Self::add) to find
    /// one registered already).
    by_identity: HashMap<Identity, MoveId, BuildHasherDefault<OffsetHasher>>,
    /// The live registrations by memory object, sorted by offset, as of the last
    /// [`settle`](Self::settle) (see [the module docs](self#changes-settle-before-a-plan-reads-them)).
    by_memory: HandleMap<Listed>,
    /// The changes to `by_memory` since.
    pending: HandleMap<Pending>,
    /// How many live registrations each memory object has, at every change.
    counts: HandleMap<usize>,
    /// For each memory object, its block's count of removed metadata records when every
    /// registration in it was last known live: while the count stays, none of them was freed
    /// (a registered allocation has a record, which its free removes), so a walk needs no
    /// check. Kept through `add` and completed moves while it holds.
    verified: HandleMap<u64>,
    /// For each memory object, when its registrations last changed (joined, left, moved,
    /// pinned), on the registry's [clock](Self::clock): a walk of its block that saw the
    /// same time saw the same registrations.
    changed: HandleMap<u64>,
    /// Counts every change of any memory's registrations (never goes back, so a time is
    /// never seen twice).
    clock: u64,
}

impl Registry {
    /// Registers the allocation `identity` at `offset` of `memory`. An allocation registered
    /// already keeps its id (adding it twice registers it once).
    /// `removals` is the block's count of removed records now.
    pub fn add(
        &mut self,
        memory: vk::DeviceMemory,
        offset: DeviceSize,
        layout: DeviceLayout,
        allocation_type: AllocationType,
        identity: Identity,
        removals: u64,
    ) -> MoveId {
        if let Some(&id) = self.by_identity.get(&identity) {
            if self
                .get(id)
                .is_some_and(|(m, e)| m == memory && e.offset == offset)
            {
                return id;
            }
        }
        let id = self.registered.len();
        let entry = Indexed {
            offset,
            id,
            layout,
            allocation_type,
            identity,
            pinned: false,
        };
        self.registered.push(Some(Registered {
            memory,
            entry,
            moves: 0,
            joining: false,
        }));
        self.by_identity.insert(identity, id);
        self.joined(memory, removals);
        self.index(memory, entry);
        id
    }

    /// Whether every registration in `memory` is known live, its block's count of removed
    /// records being `removals` now.
    pub fn verified(&self, memory: vk::DeviceMemory, removals: u64) -> bool {
        self.verified.get(&memory) == Some(&removals)
    }

    /// Notes that every registration in `memory` was found live at `removals` (the dead
    /// ones have left).
    pub fn verify(&mut self, memory: vk::DeviceMemory, removals: u64) {
        self.verified.insert(memory, removals);
    }

    /// A live allocation joins `memory`'s registrations, at `removals`: they stay verified
    /// if they were (or there were none).
    fn joined(&mut self, memory: vk::DeviceMemory, removals: u64) {
        if !self.counts.contains_key(&memory) || self.verified(memory, removals) {
            self.verified.insert(memory, removals);
        }
    }

    /// A completed move took its source out of `memory`, whose count of removed records was
    /// `before` just before: that one removal is the source's own, and the rest stay verified.
    /// (Another removal meanwhile makes the count differ, and the next walk checks.)
    pub fn source_left(&mut self, memory: vk::DeviceMemory, before: u64) {
        if self.verified(memory, before) {
            self.verified.insert(memory, before + 1);
        }
    }

    /// The live registrations in `memory`, by offset. Only after [`settle`](Self::settle),
    /// with no change since.
    pub fn entries(&self, memory: vk::DeviceMemory) -> &[Indexed] {
        debug_assert!(
            self.pending.is_empty(),
            "registrations read before they settled"
        );
        self.by_memory.get(&memory).map_or(&[], |l| &l.entries)
    }

    /// When the registrations in `memory` last changed (0: never): equal times, the same
    /// registrations, pinned or not.
    pub fn changed(&self, memory: vk::DeviceMemory) -> u64 {
        self.changed.get(&memory).copied().unwrap_or(0)
    }

    /// Notes a change of `memory`'s registrations.
    fn tick(&mut self, memory: vk::DeviceMemory) {
        self.clock += 1;
        self.changed.insert(memory, self.clock);
    }

    /// The registrations in `memory`. Only after [`settle`](Self::settle), with no change
    /// since.
    pub fn listed(&self, memory: vk::DeviceMemory) -> Option<&Listed> {
        debug_assert!(
            self.pending.is_empty(),
            "registrations read before they settled"
        );
        self.by_memory.get(&memory)
    }

    /// Applies the changes noted since the last call to the lists by memory, each list in
    /// one pass (see [the module docs](self#changes-settle-before-a-plan-reads-them)).
    pub fn settle(&mut self) {
        while let Some(&memory) = self.pending.keys().next() {
            self.settle_memory(memory);
        }
    }

    /// Applies the changes noted to `memory`'s list.
    fn settle_memory(&mut self, memory: vk::DeviceMemory) {
        let Some(pending) = self.pending.remove(&memory) else {
            return;
        };
        for e in &pending.join {
            if let Some(r) = self.registered.get_mut(e.id).and_then(Option::as_mut) {
                r.joining = false;
            }
        }
        let list = self.by_memory.entry(memory).or_default();
        // The bounds of what the entries need: kept and widened by the joiners while none
        // leaves, else counted again.
        let (mut smallest, mut largest) = match list.entries.is_empty() {
            false if pending.leave.is_empty() => (list.smallest_need, list.largest_need),
            _ => (DeviceSize::MAX, 0),
        };
        if !pending.leave.is_empty() {
            let mut leave = pending.leave;
            leave.sort_unstable();
            let mut leaving = leave.into_iter().peekable();
            list.entries.retain(|e| {
                while leaving.next_if(|k| *k < e.key()).is_some() {}
                leaving.next_if_eq(&e.key()).is_none()
            });
            (smallest, largest) = bounds(&list.entries, (smallest, largest));
        }
        (smallest, largest) = bounds(&pending.join, (smallest, largest));
        let mut join = pending.join;
        if !join.is_sorted_by_key(Indexed::key) {
            join.sort_unstable_by_key(Indexed::key);
        }
        merge_sorted(&mut list.entries, join);
        if list.entries.is_empty() {
            self.by_memory.remove(&memory);
            return;
        }
        list.smallest_need = smallest;
        list.largest_need = largest;
        debug_assert_eq!(
            self.counts.get(&memory).copied().unwrap_or(0),
            list.entries.len(),
            "the count of a memory's registrations"
        );
    }

    /// The registration `id`, while its allocation is registered: its memory and entry.
    pub fn get(&self, id: MoveId) -> Option<(vk::DeviceMemory, Indexed)> {
        let r = self.registered.get(id)?.as_ref()?;
        Some((r.memory, r.entry))
    }

    /// Whether registration `id` may no longer move.
    pub fn is_pinned(&self, id: MoveId) -> bool {
        self.get(id).is_none_or(|(_, e)| e.pinned)
    }

    /// Checks that `identity` is registration `id`'s allocation.
    pub fn check(
        &self,
        id: MoveId,
        identity: Option<Identity>,
    ) -> Result<(), DefragmentationError> {
        match self.get(id) {
            Some((_, e)) if Some(e.identity) == identity => Ok(()),
            _ => Err(DefragmentationError::NotTheSource),
        }
    }

    /// Notes that `id`'s allocation moved to `offset` of `memory`, whose count of removed
    /// records is `removals` (its move completed); pins it once it has moved
    /// [`MAX_MOVES_PER_ALLOCATION`] times.
    pub fn moved(
        &mut self,
        id: MoveId,
        memory: vk::DeviceMemory,
        offset: DeviceSize,
        removals: u64,
    ) {
        let Some(r) = self.registered.get_mut(id).and_then(Option::as_mut) else {
            return;
        };
        let (from, old, joining) = (r.memory, r.entry, r.joining);
        r.moves += 1;
        r.memory = memory;
        r.entry.offset = offset;
        r.entry.pinned |= r.moves >= MAX_MOVES_PER_ALLOCATION;
        let new = r.entry;
        self.unindex(from, old, joining);
        self.joined(memory, removals);
        self.index(memory, new);
    }

    /// Pins `id`: it is never planned again (its move was skipped or left open).
    pub fn pin(&mut self, id: MoveId) {
        let Some(r) = self.registered.get_mut(id).and_then(Option::as_mut) else {
            return;
        };
        if r.entry.pinned {
            return;
        }
        let (memory, old, joining) = (r.memory, r.entry, r.joining);
        r.entry.pinned = true;
        let new = r.entry;
        self.unindex(memory, old, joining);
        self.index(memory, new);
    }

    /// Forgets `id`: its allocation is gone.
    pub fn remove(&mut self, id: MoveId) {
        if let Some(r) = self.registered.get_mut(id).and_then(Option::take) {
            if self.by_identity.get(&r.entry.identity) == Some(&id) {
                self.by_identity.remove(&r.entry.identity);
            }
            self.unindex(r.memory, r.entry, r.joining);
        }
    }

    /// Whether each of `entries` (registrations in `metas`' block) is live: its block holds
    /// an allocation of its identity at its offset. `metas` is the block's metadata by offset.
    pub fn live_in(entries: &[Indexed], metas: &crate::allocation::MetaMap, out: &mut Vec<bool>) {
        out.clear();
        out.extend(
            entries
                .iter()
                .map(|e| metas.get(&e.offset).and_then(|m| m.identity) == Some(e.identity)),
        );
    }

    /// Notes that `entry` joins `memory`'s list: at once into a short list with no change
    /// pending, else at the next [`settle`](Self::settle).
    fn index(&mut self, memory: vk::DeviceMemory, entry: Indexed) {
        self.tick(memory);
        *self.counts.entry(memory).or_default() += 1;
        let at_once = self.changes_at_once(memory).map(|list| {
            let at = list.entries.partition_point(|e| e.key() < entry.key());
            let from = match list.entries.is_empty() {
                true => (DeviceSize::MAX, 0),
                false => (list.smallest_need, list.largest_need),
            };
            (list.smallest_need, list.largest_need) = bounds([&entry], from);
            list.entries.insert(at, entry);
        });
        if let Some(r) = self.registered.get_mut(entry.id).and_then(Option::as_mut) {
            r.joining = at_once.is_none();
        }
        if at_once.is_some() {
            return;
        }
        self.pending.entry(memory).or_default().join.push(entry);
        self.settle_if_due(memory);
    }

    /// Notes that `entry`, of `memory`'s list, leaves it: at once from a short list with no
    /// change pending, else at the next [`settle`](Self::settle).
    /// `joining`: it is among the memory's pending joiners (its registration's
    /// [`joining`](Registered::joining)).
    fn unindex(&mut self, memory: vk::DeviceMemory, entry: Indexed, joining: bool) {
        self.tick(memory);
        if let Some(count) = self.counts.get_mut(&memory) {
            *count -= 1;
            if *count == 0 {
                self.counts.remove(&memory);
            }
        }
        if let Some(list) = self.changes_at_once(memory) {
            let at = list.entries.partition_point(|e| e.key() < entry.key());
            if list.entries.get(at).map(Indexed::key) != Some(entry.key()) {
                return;
            }
            list.entries.remove(at);
            if list.entries.is_empty() {
                self.by_memory.remove(&memory);
            } else if entry.layout.size() == list.largest_need
                || entry.layout.size() == list.smallest_need
            {
                // The entry left held a bound: both are counted again, in one pass.
                (list.smallest_need, list.largest_need) =
                    bounds(&list.entries, (DeviceSize::MAX, 0));
            }
            return;
        }
        let pending = self.pending.entry(memory).or_default();
        if joining {
            // An entry that joined since the last settle only leaves the joiners. (A scan,
            // but rare: a pass moves an allocation once, and its moves and pins change
            // entries that were in the lists when it was planned.)
            let at = pending.join.iter().rposition(|j| j.key() == entry.key());
            debug_assert!(at.is_some(), "a joining entry is among the joiners");
            if let Some(at) = at {
                pending.join.remove(at);
            }
        } else {
            pending.leave.push(entry.key());
        }
        self.settle_if_due(memory);
    }

    /// Applies `memory`'s noted changes once they are an eighth of its list (a merge then
    /// moves each entry of the list once for every eighth's worth of changes, and a plan
    /// finds few left to apply).
    fn settle_if_due(&mut self, memory: vk::DeviceMemory) {
        let Some(pending) = self.pending.get(&memory) else {
            return;
        };
        let listed = self.by_memory.get(&memory).map_or(0, |l| l.entries.len());
        if pending.join.len() + pending.leave.len() >= (listed / 8).max(32) {
            self.settle_memory(memory);
        }
    }

    /// `memory`'s list, when a change to it is made at once: it has no change pending, and
    /// shifting its entries for one costs little (see [`SHORT_LIST`]).
    fn changes_at_once(&mut self, memory: vk::DeviceMemory) -> Option<&mut Listed> {
        if self.pending.contains_key(&memory) {
            return None;
        }
        let list = self.by_memory.entry(memory).or_default();
        (list.entries.len() < SHORT_LIST).then_some(list)
    }
}

/// Merges the sorted `join` into the sorted `entries`, in one pass from the back: the
/// entries before the first joiner's place stay where they are.
fn merge_sorted(entries: &mut Vec<Indexed>, join: Vec<Indexed>) {
    let (mut kept, mut joining) = (entries.len(), join.len());
    // Room at the end (these copies are overwritten below).
    entries.extend_from_slice(&join);
    let mut write = entries.len();
    while joining > 0 {
        write -= 1;
        let next = join[joining - 1];
        if kept > 0 && entries[kept - 1].key() > next.key() {
            entries[write] = entries[kept - 1];
            kept -= 1;
        } else {
            entries[write] = next;
            joining -= 1;
        }
    }
}

/// `(smallest, largest)` widened by what each of `entries` needs.
fn bounds<'e>(
    entries: impl IntoIterator<Item = &'e Indexed>,
    from: (DeviceSize, DeviceSize),
) -> (DeviceSize, DeviceSize) {
    entries.into_iter().fold(from, |(lo, hi), e| {
        let need = e.layout.size();
        (lo.min(need), hi.max(need))
    })
}

#[cfg(test)]
mod tests;
