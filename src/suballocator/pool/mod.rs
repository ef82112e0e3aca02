//! The pool allocator: fixed-size slots handed out from a free stack.
//!
//! # Algorithm
//!
//! The region is cut into `region_size / BLOCK_SIZE` *slots* of `BLOCK_SIZE` bytes; slot `i`
//! is `[i * BLOCK_SIZE, (i + 1) * BLOCK_SIZE)`. Whatever is left past the last whole slot can
//! never hold a slot, so the pool ignores it: its [`region_size`](Suballocator::region_size)
//! is `slots * BLOCK_SIZE`, the part it manages, not the size passed to
//! [`new`](Suballocator::new). A `BLOCK_SIZE` of 0 gives a pool with no slots, which rejects
//! every request.
//!
//! Every allocation takes one whole slot. Freed slots go on a stack and are handed out again
//! last-in first-out; slots never used yet are handed out in address order after the stack is
//! empty, so a fresh pool costs no memory up front, and bookkeeping (one byte of state per
//! slot, plus the stack) grows only with the highest slot ever used at once. When the last
//! allocation is freed the pool forgets all of that and starts over from slot 0. (Slots that
//! share granularity pages are handed out by groups instead, see
//! [below](#buffer-image-granularity).)
//!
//! # Cost
//!
//! `allocate` and `deallocate` are O(1). With typed groups they are amortized O(1): opening a
//! group beyond the highest slot used so far extends the per-slot state up to it, which touches
//! each slot once until the pool is empty again; groups add 8 bytes per freed slot and 48 per
//! group used. [`for_each_range`](Suballocator::for_each_range) reports each slot as its own
//! range, O(slots).
//!
//! # Alignment
//!
//! Slots start at multiples of `BLOCK_SIZE`, so every slot start is aligned to `slot_align`,
//! the largest power of two dividing `BLOCK_SIZE` (32 for slots of 96 bytes). A request with a
//! larger alignment gets the first aligned offset inside its slot, which costs up to
//! `alignment − slot_align` bytes of padding depending on the slot. Whether a request fits is
//! decided against that worst case, so the answer never depends on which slot happens to be
//! free: a request is accepted when `size + alignment.saturating_sub(slot_align)` is at most
//! `BLOCK_SIZE`, and fails with [`BlockSizeExceeded`](SuballocatorError::BlockSizeExceeded)
//! otherwise. [`max_request_size`](PoolAllocator::max_request_size) computes the limit.
//!
//! # Buffer-image granularity
//!
//! Which rule applies depends on `BLOCK_SIZE` and the granularity `g` alone:
//!
//! - **Slots of whole pages.** When `BLOCK_SIZE` is a multiple of `g`, no two slots share a
//!   page, so granularity costs nothing.
//! - **Allocations of whole pages.** Otherwise, when every slot still holds at least one whole
//!   page after the worst-case padding (`BLOCK_SIZE − (g − slot_align) ≥ g`, for example 96-byte
//!   slots with `g` = 64), an allocation is placed at the first offset of its slot aligned to
//!   both its alignment and `g`, and it must own every page it touches: the end of its range,
//!   rounded up to a page, must not pass the end of its slot. Each allocation then holds pages
//!   no other allocation touches, whatever the types. The worst-case padding is again assumed
//!   when deciding whether a request fits.
//! - **Typed groups.** Otherwise no allocation could own its pages: slots are smaller than a
//!   page (256-byte slots with `g` = 1 KiB), or too close to one (1000-byte slots with
//!   `g` = 512). Slots then share pages, and the pool only lets allocations of
//!   [non-conflicting](AllocationType::conflicts_with) types share one. The slots are cut into
//!   *groups* of `g / slot_align` consecutive slots, `lcm(BLOCK_SIZE, g)` bytes: the shortest
//!   run of whole slots that is also a run of whole pages, so no page is shared by two groups
//!   (for a power-of-two `BLOCK_SIZE` below `g` a group is exactly one page). The live slots of
//!   a group all have the same type, `Linear` or `NonLinear`, or there is one `Unknown` slot,
//!   which holds the rest of its group while it lives. A `Linear` or `NonLinear` request takes
//!   a free slot of a partly used group of its type, or else the first slot of an empty group;
//!   an `Unknown` request always takes an empty group. Allocations are placed as in the first
//!   case (no page rounding), so [`max_request_size`](PoolAllocator::max_request_size) is only
//!   reduced by alignment padding. Both calls stay O(1) (amortized, see [Cost](#cost)): per
//!   group a count of live slots, a list of its freed slots and a cursor over its slots never
//!   handed out since it was last empty (so emptying a group costs O(1), whatever its size),
//!   and per type a doubly linked list of partly used groups plus a stack of empty groups. A group of several pages is
//!   typed as a whole, which is more cautious than needed on its inner pages; pick a
//!   power-of-two `BLOCK_SIZE` to make groups single pages.
//!
//! The groups are laid out for the granularity of the first request that needs them while the
//! pool is empty, and kept until it is empty again. A device's granularity is a constant, so
//! this never matters in practice; but while groups are in use, a request with another
//! granularity is refused, and while slots taken without groups are live, a request whose
//! granularity needs groups is refused (with the errors below).
//!
//! # Accounting
//!
//! A slot is held whole, so [`free_size`](Suballocator::free_size) is the number of free
//! slots times `BLOCK_SIZE`, including free slots of typed groups that some types may not take
//! right now. [`largest_free_range`](Suballocator::largest_free_range) is `BLOCK_SIZE` while a
//! slot is free (a request of that size with alignment 1 fits any free slot it may take) and 0
//! when the pool is full. A full pool answers
//! [`OutOfRegionMemory`](SuballocatorError::OutOfRegionMemory). Without groups the pool never
//! reports [`FragmentedRegion`](SuballocatorError::FragmentedRegion), since any free slot fits
//! any request that passes the size check; with groups it does when slots are free but none
//! may be taken by the request's type (and for the refused requests above).
//!
//! The suballocation (and the allocator's [`MemoryAlloc::size`](crate::MemoryAlloc::size)) is
//! the size *requested*, while [`for_each_range`](Suballocator::for_each_range), and with it
//! the statistics, the JSON dump and the SVG map, reports each allocated slot whole: a 64-byte
//! request in a `SlotAllocator<256>` is a 64-byte allocation that holds a 256-byte slot. The
//! difference is the pool's internal fragmentation, the price of O(1) slots.

mod groups;

use self::groups::Groups;
use super::*;
use crate::layout::{align_down, padding_needed};

/// The old name of [`SlotAllocator`] ("pool" also named custom pools and the allocator's
/// block vectors; this one hands out fixed-size slots).
#[deprecated(since = "0.2.0", note = "renamed to `SlotAllocator`")]
pub type PoolAllocator<const BLOCK_SIZE: u64> = SlotAllocator<BLOCK_SIZE>;

/// A pool of `BLOCK_SIZE`-byte slots with O(1) `allocate` and `deallocate`.
///
/// The region holds `region_size / BLOCK_SIZE` slots; the rest past the last whole slot is
/// ignored, and [`region_size`](Suballocator::region_size) reports the slots only. A
/// `BLOCK_SIZE` of 0 makes a pool with no slots. Each allocation takes a whole slot, so
/// [`free_size`](Suballocator::free_size) is the free slots times `BLOCK_SIZE`, and a full
/// pool answers [`OutOfRegionMemory`](SuballocatorError::OutOfRegionMemory).
///
/// An allocation starts at the first offset of its slot aligned as requested. When
/// `BLOCK_SIZE` is not a multiple of `buffer_image_granularity` but a slot can hold a whole
/// page, it also starts on a page boundary and must own every page it touches, inside its
/// slot. When no slot can, slots share pages and each run of slots making whole pages holds
/// only allocations of non-conflicting types (see the
/// [module docs](self#buffer-image-granularity)). Whether a request fits is decided against
/// the worst-case padding over all slots, so the answer does not depend on which slot is free:
/// see [`max_request_size`](Self::max_request_size). A request above it fails with
/// [`BlockSizeExceeded`](SuballocatorError::BlockSizeExceeded).
#[derive(Debug)]
pub struct SlotAllocator<const BLOCK_SIZE: u64> {
    slot_count: u64,
    /// States of the slots below the highest one used since the pool was last empty; the slots
    /// from `slots.len()` on are free and have never been handed out.
    slots: Vec<Slot>,
    /// Free slots below `slots.len()`, the most recently freed last (not used with groups).
    free_stack: Vec<u64>,
    allocation_count: usize,
    /// Typed groups, while slots share granularity pages.
    groups: Groups,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Slot {
    Free,
    Allocated(AllocationType),
}

/// How a pool keeps allocations of conflicting types off each other's granularity pages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PageRule {
    /// Slots are whole pages.
    WholeSlots,
    /// Each allocation owns the pages it touches, inside its slot.
    OwnPages,
    /// Slots share pages; groups of slots are typed.
    Groups,
}

impl<const BLOCK_SIZE: u64> SlotAllocator<BLOCK_SIZE> {
    /// The number of slots.
    #[inline]
    pub fn slot_count(&self) -> u64 {
        self.slot_count
    }

    /// The largest request size with `alignment` that fits in whichever slot it gets, under
    /// `buffer_image_granularity`; 0 when no request with that alignment fits.
    ///
    /// Slot starts are multiples of `slot_align`, the largest power of two dividing
    /// `BLOCK_SIZE`, so an alignment above it costs up to `alignment − slot_align` bytes of
    /// padding. When the granularity is above `slot_align` too and a slot can hold a whole
    /// page after that padding, the allocation is aligned to the granularity as well and its
    /// size is rounded up to whole pages; when no slot can, slots share pages instead (see the
    /// [module docs](self#buffer-image-granularity)) and only alignment padding counts.
    pub fn max_request_size(
        alignment: DeviceAlignment,
        buffer_image_granularity: DeviceAlignment,
    ) -> DeviceSize {
        if BLOCK_SIZE == 0 {
            return 0;
        }
        let rule = Self::page_rule(buffer_image_granularity);
        let alignment = if rule == PageRule::OwnPages {
            alignment.max(buffer_image_granularity)
        } else {
            alignment
        };
        let room = Self::room(alignment);
        if rule == PageRule::OwnPages {
            align_down(room, buffer_image_granularity)
        } else {
            room
        }
    }

    /// The bytes left in the worst-placed slot after padding to `alignment` (0 without slots).
    #[inline]
    fn room(alignment: DeviceAlignment) -> DeviceSize {
        if BLOCK_SIZE == 0 {
            return 0;
        }
        let worst_padding = alignment
            .as_devicesize()
            .saturating_sub(1 << BLOCK_SIZE.trailing_zeros());
        BLOCK_SIZE.saturating_sub(worst_padding)
    }

    /// The granularity rule for `BLOCK_SIZE` (not 0) and `g`.
    #[inline]
    fn page_rule(g: DeviceAlignment) -> PageRule {
        if g.log2() <= BLOCK_SIZE.trailing_zeros() {
            PageRule::WholeSlots
        } else if align_down(Self::room(g), g) > 0 {
            PageRule::OwnPages
        } else {
            PageRule::Groups
        }
    }

    /// The error for a request of `size` bytes that gets no slot.
    #[inline]
    fn no_slot(&self, size: DeviceSize) -> SuballocatorError {
        if self.free_size() < size {
            SuballocatorError::OutOfRegionMemory
        } else {
            SuballocatorError::FragmentedRegion
        }
    }

    /// The next free slot without groups: the most recently freed one, or a new one.
    #[inline]
    fn take_free(&mut self) -> Result<u64, SuballocatorError> {
        match self.free_stack.pop() {
            Some(index) => Ok(index),
            None if (self.slots.len() as u64) < self.slot_count => {
                self.slots.push(Slot::Free);
                Ok(self.slots.len() as u64 - 1)
            }
            None => Err(SuballocatorError::OutOfRegionMemory),
        }
    }

    /// A slot for a request under a granularity that slots do not divide, or while groups are
    /// in use. Out of line, so that the common path of `allocate` stays small enough to
    /// inline (the result then stays in registers).
    #[inline(never)]
    fn take_paged(
        &mut self,
        layout: DeviceLayout,
        allocation_type: AllocationType,
        g: DeviceAlignment,
        rule: PageRule,
    ) -> Result<u64, SuballocatorError> {
        if layout.size() > Self::max_request_size(layout.alignment(), g) {
            return Err(SuballocatorError::BlockSizeExceeded);
        }
        // `max_request_size` returned a non-zero size, so `BLOCK_SIZE` is not zero.
        if rule == PageRule::Groups || self.groups.granularity().is_some() {
            self.take_grouped(allocation_type, g, layout.size())
        } else {
            self.take_free()
        }
    }

    /// A free slot from a typed group of `g`, laying out the groups if the pool is empty.
    fn take_grouped(
        &mut self,
        allocation_type: AllocationType,
        g: DeviceAlignment,
        size: DeviceSize,
    ) -> Result<u64, SuballocatorError> {
        match self.groups.granularity() {
            Some(current) if current == g => {}
            None if self.allocation_count == 0 => {
                // `page_rule` chose groups, so `g` is above `slot_align`.
                let group_slots = 1 << (g.log2() - BLOCK_SIZE.trailing_zeros());
                self.groups.activate(g, group_slots, self.slot_count);
            }
            _ => return Err(self.no_slot(size)),
        }
        let index = self
            .groups
            .take(allocation_type)
            .ok_or_else(|| self.no_slot(size))?;
        if index as usize >= self.slots.len() {
            self.slots.resize(index as usize + 1, Slot::Free);
        }
        Ok(index)
    }
}

// The trait is unsafe to implement; nothing unsafe happens inside.
#[allow(unsafe_code)]
// SAFETY: every range lies in one free slot of the region, at an offset aligned as requested,
// and either on granularity pages of its own or in a group of whole pages whose live slots
// have types that do not conflict with it (see the module docs); the shared property tests
// (`testing`) check every guarantee after every operation.
unsafe impl<const BLOCK_SIZE: u64> Suballocator for SlotAllocator<BLOCK_SIZE> {
    /// `true`: a request fails when no free slot can take it (none at all, or none in a
    /// group its type may use), and a larger or more strictly aligned request of the same
    /// type can only use the same slots; allocating never frees a slot.
    #[inline]
    fn fails_monotonically() -> bool {
        true
    }

    /// One slot, or one group of slots when slots share granularity pages (see
    /// [granularity](self#buffer-image-granularity)); `None` for a request larger than
    /// [`max_request_size`](PoolAllocator::max_request_size).
    fn region_size_for(
        layout: DeviceLayout,
        _allocation_type: AllocationType,
        buffer_image_granularity: DeviceAlignment,
    ) -> Option<DeviceSize> {
        let g = buffer_image_granularity;
        if BLOCK_SIZE == 0 || layout.size() > Self::max_request_size(layout.alignment(), g) {
            return None;
        }
        match Self::page_rule(g) {
            PageRule::Groups => {
                BLOCK_SIZE.checked_mul(g.as_devicesize() >> BLOCK_SIZE.trailing_zeros())
            }
            PageRule::WholeSlots | PageRule::OwnPages => Some(BLOCK_SIZE),
        }
    }

    fn new(region_size: DeviceSize) -> Self {
        Self {
            slot_count: region_size.checked_div(BLOCK_SIZE).unwrap_or(0),
            slots: Vec::new(),
            free_stack: Vec::new(),
            allocation_count: 0,
            groups: Groups::default(),
        }
    }

    /// The whole slots only: `floor(region_size / BLOCK_SIZE) * BLOCK_SIZE`.
    #[inline]
    fn region_size(&self) -> DeviceSize {
        self.slot_count * BLOCK_SIZE
    }

    #[inline]
    fn allocate(
        &mut self,
        layout: DeviceLayout,
        allocation_type: AllocationType,
        buffer_image_granularity: DeviceAlignment,
    ) -> Result<Suballocation, SuballocatorError> {
        let size = layout.size();
        let g = buffer_image_granularity;
        let rule = Self::page_rule(g);
        let index = if rule == PageRule::WholeSlots && self.groups.granularity().is_none() {
            // `max_request_size` without granularity, which also rejects every request when
            // `BLOCK_SIZE` is 0.
            if size > Self::room(layout.alignment()) {
                return Err(SuballocatorError::BlockSizeExceeded);
            }
            self.take_free()?
        } else {
            self.take_paged(layout, allocation_type, g, rule)?
        };
        let slot = &mut self.slots[index as usize];
        debug_assert_eq!(*slot, Slot::Free);
        *slot = Slot::Allocated(allocation_type);
        self.allocation_count += 1;

        let alignment = if rule == PageRule::OwnPages {
            layout.alignment().max(g)
        } else {
            layout.alignment()
        };
        // Within the slot by the size check above, so it does not overflow.
        let start = index * BLOCK_SIZE;
        let offset = start + padding_needed(start, alignment);
        debug_assert!(offset + size <= start + BLOCK_SIZE);
        Ok(Suballocation {
            offset,
            size,
            allocation_type,
            handle: SuballocationHandle::new(index),
        })
    }

    #[inline]
    unsafe fn deallocate(&mut self, suballocation: Suballocation) {
        let index = suballocation.handle.get();
        let slot = usize::try_from(index)
            .ok()
            .and_then(|i| self.slots.get_mut(i))
            .filter(|slot| matches!(**slot, Slot::Allocated(_)));
        debug_assert!(
            slot.is_some() && suballocation.offset / BLOCK_SIZE == index,
            "{suballocation:?} is not a live allocation of this pool"
        );
        // A bad handle breaks the caller's contract; ignoring it keeps the bookkeeping whole.
        let Some(slot) = slot else { return };
        *slot = Slot::Free;
        self.allocation_count -= 1;
        if self.allocation_count == 0 {
            self.reset();
        } else if self.groups.granularity().is_some() {
            self.groups.release(index);
        } else {
            self.free_stack.push(index);
        }
    }

    #[inline]
    fn free_size(&self) -> DeviceSize {
        (self.slot_count - self.allocation_count as u64) * BLOCK_SIZE
    }

    #[inline]
    fn largest_free_range(&self) -> DeviceSize {
        if (self.allocation_count as u64) < self.slot_count {
            BLOCK_SIZE
        } else {
            0
        }
    }

    #[inline]
    fn allocation_count(&self) -> usize {
        self.allocation_count
    }

    fn reset(&mut self) {
        self.slots.clear();
        self.free_stack.clear();
        self.groups.deactivate();
        self.allocation_count = 0;
    }

    fn for_each_range(&self, f: &mut dyn FnMut(RangeInfo)) {
        for index in 0..self.slot_count {
            let state = self.slots.get(index as usize).copied();
            f(RangeInfo {
                offset: index * BLOCK_SIZE,
                size: BLOCK_SIZE,
                kind: match state {
                    Some(Slot::Allocated(ty)) => RangeKind::Allocated(ty),
                    Some(Slot::Free) | None => RangeKind::Free,
                },
            });
        }
    }
}

#[cfg(test)]
mod tests;
