//! The allocations added to a defragmentation: who each is, where it is now, and whether it
//! may still move.
//!
//! The registry is where the two rules of the [module docs](super) live:
//! [identity, not place](super#identity-not-place) and [termination](super#termination).

use super::{DefragmentationError, HandleMap, MoveId};
use crate::allocation::Identity;
use crate::layout::{DeviceLayout, DeviceSize};
use crate::suballocator::AllocationType;
use ash::vk;

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
    fn key(&self) -> (DeviceSize, MoveId) {
        (self.offset, self.id)
    }
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
}

/// The registrations of a defragmentation, by id and by memory object.
#[derive(Debug, Default)]
pub(super) struct Registry {
    /// By id; `None` once the allocation left (freed).
    registered: Vec<Option<Registered>>,
    /// The live registrations by memory object, sorted by offset (kept so by every change, so
    /// that planning finds them in order).
    by_memory: HandleMap<Listed>,
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
        if let Some(e) = self
            .entries(memory)
            .iter()
            .find(|e| e.offset == offset && e.identity == identity)
        {
            return e.id;
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
        }));
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
        if !self.by_memory.contains_key(&memory) || self.verified(memory, removals) {
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

    /// The live registrations in `memory`, by offset.
    pub fn entries(&self, memory: vk::DeviceMemory) -> &[Indexed] {
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

    /// The registrations in `memory`.
    pub fn listed(&self, memory: vk::DeviceMemory) -> Option<&Listed> {
        self.by_memory.get(&memory)
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
        let (from, old) = (r.memory, r.entry);
        r.moves += 1;
        r.memory = memory;
        r.entry.offset = offset;
        r.entry.pinned |= r.moves >= MAX_MOVES_PER_ALLOCATION;
        let new = r.entry;
        self.unindex(from, old);
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
        let (memory, old) = (r.memory, r.entry);
        r.entry.pinned = true;
        let new = r.entry;
        self.unindex(memory, old);
        self.index(memory, new);
    }

    /// Forgets `id`: its allocation is gone.
    pub fn remove(&mut self, id: MoveId) {
        if let Some(r) = self.registered.get_mut(id).and_then(Option::take) {
            self.unindex(r.memory, r.entry);
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

    fn index(&mut self, memory: vk::DeviceMemory, entry: Indexed) {
        self.tick(memory);
        let list = self.by_memory.entry(memory).or_default();
        let at = list.entries.partition_point(|e| e.key() < entry.key());
        list.entries.insert(at, entry);
        list.largest_need = list.largest_need.max(entry.layout.size());
        list.smallest_need = if list.entries.len() == 1 {
            entry.layout.size()
        } else {
            list.smallest_need.min(entry.layout.size())
        };
    }

    fn unindex(&mut self, memory: vk::DeviceMemory, entry: Indexed) {
        self.tick(memory);
        let Some(list) = self.by_memory.get_mut(&memory) else {
            return;
        };
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
            let needs = list.entries.iter().map(|e| e.layout.size());
            let (smallest, largest) =
                needs.fold((DeviceSize::MAX, 0), |(lo, hi), n| (lo.min(n), hi.max(n)));
            list.smallest_need = smallest;
            list.largest_need = largest;
        }
    }
}
