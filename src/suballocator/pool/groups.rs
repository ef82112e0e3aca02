//! Slot groups typed by the allocations live in them, for slots that share granularity pages.
//!
//! A *group* is a run of `group_slots` consecutive slots that is also a run of whole
//! granularity pages (see the pool's module docs). Each group is *empty* (no live slot), or
//! holds live slots of one class only: any number of `Linear` ones, any number of `NonLinear`
//! ones, or a single `Unknown` one. Groups with live slots of a class and at least one free
//! slot are on that class's *partial* list (a doubly linked list, so that a group leaving it
//! is unlinked in O(1)); `Unknown` groups are never on a list, as no other slot may join them.
//!
//! Inside a group, slots are handed out from a free list of freed slots (an intrusive list
//! through `next_free`), then in address order from `bump`. When a group empties, it forgets
//! both in O(1) and goes onto the stack of empty groups. Groups never used since the pool
//! was last empty are not stored: the next one is `groups.len()`.

use crate::layout::DeviceAlignment;
use crate::suballocator::AllocationType;

/// "No group" or "no slot": the end of a list.
const NONE: u64 = u64::MAX;

#[derive(Clone, Copy, Debug)]
struct Group {
    /// The class of the live slots; meaningless while the group is empty.
    class: AllocationType,
    live: u64,
    /// Slots of the group from `bump` on have not been handed out since it was last empty.
    bump: u64,
    /// The most recently freed slot of the group (its index in the group), or `NONE`.
    free_head: u64,
    /// Neighbours on the partial list of `class`, while `listed`.
    prev: u64,
    next: u64,
    listed: bool,
}

impl Group {
    const EMPTY: Self = Self {
        class: AllocationType::Unknown,
        live: 0,
        bump: 0,
        free_head: NONE,
        prev: NONE,
        next: NONE,
        listed: false,
    };
}

/// The typed groups of one pool, laid out for one granularity while it has live slots.
#[derive(Debug, Default)]
pub(super) struct Groups {
    /// The granularity the groups are laid out for; `None` while no group is in use.
    granularity: Option<DeviceAlignment>,
    group_slots: u64,
    slot_count: u64,
    groups: Vec<Group>,
    /// Empty groups below `groups.len()`.
    empty: Vec<u64>,
    /// Heads of the partial lists of `Linear` and `NonLinear` groups.
    partial: [u64; 2],
    /// For each freed slot, the next free slot of its group (an index in the group).
    next_free: Vec<u64>,
}

/// The partial list of a class; `None` for `Unknown`, which has none.
#[inline]
fn list(class: AllocationType) -> Option<usize> {
    match class {
        AllocationType::Unknown => None,
        AllocationType::Linear => Some(0),
        AllocationType::NonLinear => Some(1),
    }
}

impl Groups {
    /// The granularity the groups are laid out for, while any slot is live in them.
    #[inline]
    pub(super) fn granularity(&self) -> Option<DeviceAlignment> {
        self.granularity
    }

    /// Starts laying out groups of `group_slots` slots (at least 1) for `granularity`, over
    /// `slot_count` slots. Only while no group is in use.
    pub(super) fn activate(
        &mut self,
        granularity: DeviceAlignment,
        group_slots: u64,
        slot_count: u64,
    ) {
        debug_assert!(self.granularity.is_none() && group_slots > 0);
        self.granularity = Some(granularity);
        self.group_slots = group_slots;
        self.slot_count = slot_count;
        self.partial = [NONE; 2];
    }

    /// Forgets every group (the pool is empty), keeping the memory for the next use.
    pub(super) fn deactivate(&mut self) {
        self.granularity = None;
        self.groups.clear();
        self.empty.clear();
        self.next_free.clear();
    }

    /// The number of slots of group `k`: `group_slots`, or fewer for the last group.
    #[inline]
    fn slots_in(&self, k: u64) -> u64 {
        self.group_slots.min(self.slot_count - k * self.group_slots)
    }

    fn take_empty(&mut self) -> Option<u64> {
        if let Some(k) = self.empty.pop() {
            return Some(k);
        }
        let k = self.groups.len() as u64;
        // `k * group_slots` is at most `slot_count` while `k` is a group index.
        if k.checked_mul(self.group_slots)? >= self.slot_count {
            return None;
        }
        self.groups.push(Group::EMPTY);
        Some(k)
    }

    fn link(&mut self, k: u64) {
        let group = &mut self.groups[k as usize];
        let Some(l) = list(group.class) else { return };
        let head = self.partial[l];
        group.prev = NONE;
        group.next = head;
        group.listed = true;
        if head != NONE {
            self.groups[head as usize].prev = k;
        }
        self.partial[l] = k;
    }

    fn unlink(&mut self, k: u64) {
        let Group {
            class,
            prev,
            next,
            listed,
            ..
        } = self.groups[k as usize];
        let Some(l) = list(class).filter(|_| listed) else {
            return;
        };
        match prev {
            NONE => self.partial[l] = next,
            p => self.groups[p as usize].next = next,
        }
        if next != NONE {
            self.groups[next as usize].prev = prev;
        }
        self.groups[k as usize].listed = false;
    }

    /// A free slot that `class` may take, or `None`: one in a partial group of the same class
    /// or, failing that (and always for `Unknown`), the first slot of an empty group.
    pub(super) fn take(&mut self, class: AllocationType) -> Option<u64> {
        let partial = list(class).map_or(NONE, |l| self.partial[l]);
        let k = match partial {
            NONE => self.take_empty()?,
            k => k,
        };
        let slots = self.slots_in(k);
        let group = &mut self.groups[k as usize];
        let was_empty = group.live == 0;
        if was_empty {
            group.class = class;
        }
        debug_assert_eq!(group.class, class);
        let local = match group.free_head {
            NONE => {
                group.bump += 1;
                group.bump - 1
            }
            local => {
                group.free_head = self.next_free[(k * self.group_slots + local) as usize];
                local
            }
        };
        group.live += 1;
        let full = group.free_head == NONE && group.bump == slots;
        if was_empty && !full {
            // A no-op for `Unknown`: its group is held for it.
            self.link(k);
        } else if !was_empty && full {
            self.unlink(k);
        }
        Some(k * self.group_slots + local)
    }

    /// Gives back the live slot `slot`.
    #[inline(never)]
    pub(super) fn release(&mut self, slot: u64) {
        let k = slot / self.group_slots;
        let Some(group) = self.groups.get_mut(k as usize) else {
            return;
        };
        debug_assert!(group.live > 0);
        group.live = group.live.saturating_sub(1);
        if group.live == 0 {
            self.unlink(k);
            self.groups[k as usize] = Group::EMPTY;
            self.empty.push(k);
            return;
        }
        let listed = group.listed;
        let next = group.free_head;
        group.free_head = slot % self.group_slots;
        if slot as usize >= self.next_free.len() {
            self.next_free.resize(slot as usize + 1, NONE);
        }
        self.next_free[slot as usize] = next;
        if !listed {
            self.link(k);
        }
    }
}

#[cfg(test)]
impl Groups {
    /// Checks the bookkeeping against `slot_type`, the type of each live slot (`None` for a
    /// free one).
    pub(super) fn check(&self, slot_type: &dyn Fn(u64) -> Option<AllocationType>) {
        if self.granularity.is_none() {
            assert!(self.groups.is_empty() && self.empty.is_empty());
            return;
        }
        for (k, group) in self.groups.iter().enumerate() {
            let k = k as u64;
            let first = k * self.group_slots;
            let slots = self.slots_in(k);
            let live: Vec<_> = (first..first + slots).filter_map(slot_type).collect();
            assert_eq!(live.len() as u64, group.live, "live count of group {k}");
            assert!(live.iter().all(|&t| t == group.class), "mixed group {k}");
            if group.class == AllocationType::Unknown {
                assert!(group.live <= 1, "an unknown slot shares group {k}");
            }
            let mut freed = 0;
            let mut local = group.free_head;
            while local != NONE {
                assert!(local < group.bump && slot_type(first + local).is_none());
                freed += 1;
                local = self.next_free[(first + local) as usize];
            }
            assert_eq!(freed + group.live, group.bump, "lost slots in group {k}");
            let has_free = group.bump < slots || group.free_head != NONE;
            let should_list = group.live > 0 && has_free && list(group.class).is_some();
            assert_eq!(group.listed, should_list, "group {k} listed");
        }
        for l in 0..2 {
            let (mut k, mut prev) = (self.partial[l], NONE);
            while k != NONE {
                let group = &self.groups[k as usize];
                assert!(group.listed && list(group.class) == Some(l) && group.prev == prev);
                (prev, k) = (k, group.next);
            }
        }
        for &k in &self.empty {
            assert_eq!(self.groups[k as usize].live, 0);
        }
        let empty = self.groups.iter().filter(|g| g.live == 0).count();
        assert_eq!(empty, self.empty.len(), "empty groups off the stack");
    }
}
