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
//! allocation is freed the pool forgets all of that and starts over from slot 0.
//!
//! # Cost
//!
//! `allocate` and `deallocate` are O(1). [`for_each_range`](Suballocator::for_each_range)
//! reports each slot as its own range, O(slots).
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
//! When `BLOCK_SIZE` is a multiple of the granularity, every slot is made of whole pages and no
//! two allocations can ever share a page, so granularity costs nothing. Otherwise an allocation
//! is placed at the first offset of its slot aligned to both its alignment and the granularity,
//! and it must own every page it touches: the end of its range, rounded up to a page, must not
//! pass the end of its slot. Each allocation then holds pages no other allocation touches,
//! whatever the types. The worst-case padding is again assumed when deciding whether a request
//! fits.
//!
//! # Accounting
//!
//! A slot is held whole, so [`free_size`](Suballocator::free_size) is the number of free
//! slots times `BLOCK_SIZE`, and [`largest_free_range`](Suballocator::largest_free_range) is
//! `BLOCK_SIZE` while a slot is free and 0 when the pool is full. A full pool answers
//! [`OutOfRegionMemory`](SuballocatorError::OutOfRegionMemory); the pool never reports
//! [`FragmentedRegion`](SuballocatorError::FragmentedRegion), since any free slot fits any
//! request that passes the size check.

use super::*;
use crate::layout::{align_down, padding_needed};

/// A pool of `BLOCK_SIZE`-byte slots with O(1) `allocate` and `deallocate`.
///
/// The region holds `region_size / BLOCK_SIZE` slots; the rest past the last whole slot is
/// ignored, and [`region_size`](Suballocator::region_size) reports the slots only. A
/// `BLOCK_SIZE` of 0 makes a pool with no slots. Each allocation takes a whole slot, so
/// [`free_size`](Suballocator::free_size) is the free slots times `BLOCK_SIZE`, and a full
/// pool answers [`OutOfRegionMemory`](SuballocatorError::OutOfRegionMemory).
///
/// An allocation starts at the first offset of its slot aligned as requested. When
/// `BLOCK_SIZE` is not a multiple of `buffer_image_granularity`, it also starts on a page
/// boundary and must own every page it touches, inside its slot. Whether a request fits is
/// decided against the worst-case padding over all slots, so the answer does not depend on
/// which slot is free: see [`max_request_size`](Self::max_request_size). A request above it
/// fails with [`BlockSizeExceeded`](SuballocatorError::BlockSizeExceeded).
#[derive(Debug)]
pub struct PoolAllocator<const BLOCK_SIZE: u64> {
    slot_count: u64,
    /// States of the slots below the highest one used since the pool was last empty; the slots
    /// from `slots.len()` on are free and have never been handed out.
    slots: Vec<Slot>,
    /// Free slots below `slots.len()`, the most recently freed last.
    free_stack: Vec<u64>,
    allocation_count: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Slot {
    Free,
    Allocated(AllocationType),
}

impl<const BLOCK_SIZE: u64> PoolAllocator<BLOCK_SIZE> {
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
    /// padding. When the granularity is above `slot_align` too, the allocation is aligned to
    /// the granularity as well and its size is rounded up to whole pages.
    pub fn max_request_size(
        alignment: DeviceAlignment,
        buffer_image_granularity: DeviceAlignment,
    ) -> DeviceSize {
        if BLOCK_SIZE == 0 {
            return 0;
        }
        let slot_align = BLOCK_SIZE.trailing_zeros();
        let needs_pages = buffer_image_granularity.log2() > slot_align;
        let alignment = if needs_pages {
            alignment.max(buffer_image_granularity)
        } else {
            alignment
        };
        let worst_padding = alignment.as_devicesize().saturating_sub(1 << slot_align);
        let room = BLOCK_SIZE.saturating_sub(worst_padding);
        if needs_pages {
            align_down(room, buffer_image_granularity)
        } else {
            room
        }
    }
}

#[allow(unsafe_code)] // Implements the unsafe trait; no unsafe operation inside.
                      // SAFETY: every range lies in one free slot of the region, at an offset aligned as requested
                      // and on granularity pages of its own (see the type's docs); the shared property tests
                      // (`testing`) check every guarantee after every operation.
unsafe impl<const BLOCK_SIZE: u64> Suballocator for PoolAllocator<BLOCK_SIZE> {
    fn new(region_size: DeviceSize) -> Self {
        Self {
            slot_count: region_size.checked_div(BLOCK_SIZE).unwrap_or(0),
            slots: Vec::new(),
            free_stack: Vec::new(),
            allocation_count: 0,
        }
    }

    /// The whole slots only: `floor(region_size / BLOCK_SIZE) * BLOCK_SIZE`.
    #[inline]
    fn region_size(&self) -> DeviceSize {
        self.slot_count * BLOCK_SIZE
    }

    fn allocate(
        &mut self,
        layout: DeviceLayout,
        allocation_type: AllocationType,
        buffer_image_granularity: DeviceAlignment,
    ) -> Result<Suballocation, SuballocatorError> {
        let size = layout.size();
        if size > Self::max_request_size(layout.alignment(), buffer_image_granularity) {
            return Err(SuballocatorError::BlockSizeExceeded);
        }
        let index = match self.free_stack.pop() {
            Some(index) => index,
            None if (self.slots.len() as u64) < self.slot_count => {
                self.slots.push(Slot::Free);
                self.slots.len() as u64 - 1
            }
            None => return Err(SuballocatorError::OutOfRegionMemory),
        };
        let slot = &mut self.slots[index as usize];
        debug_assert_eq!(*slot, Slot::Free);
        *slot = Slot::Allocated(allocation_type);
        self.allocation_count += 1;

        // `max_request_size` returned a non-zero size, so `BLOCK_SIZE` is not zero.
        let alignment = if buffer_image_granularity.log2() > BLOCK_SIZE.trailing_zeros() {
            layout.alignment().max(buffer_image_granularity)
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

    unsafe fn deallocate(&mut self, suballocation: Suballocation) {
        let index = suballocation.handle.get();
        let slot = &mut self.slots[index as usize];
        debug_assert!(
            matches!(*slot, Slot::Allocated(_)) && suballocation.offset / BLOCK_SIZE == index,
            "{suballocation:?} is not a live allocation of this pool"
        );
        *slot = Slot::Free;
        self.allocation_count -= 1;
        if self.allocation_count == 0 {
            self.reset();
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
mod tests {
    use super::*;
    use crate::suballocator::testing::{self, Checker};
    use proptest::prelude::*;

    const G1: DeviceAlignment = DeviceAlignment::MIN;

    fn a(value: DeviceSize) -> DeviceAlignment {
        DeviceAlignment::new(value).unwrap()
    }

    fn layout(size: DeviceSize, alignment: DeviceSize) -> DeviceLayout {
        DeviceLayout::from_size_alignment(size, alignment).unwrap()
    }

    fn alloc<const B: u64>(
        c: &mut Checker<PoolAllocator<B>>,
        size: DeviceSize,
        alignment: DeviceSize,
    ) -> Result<DeviceSize, SuballocatorError> {
        c.allocate(layout(size, alignment), AllocationType::Linear)
            .map(|s| s.offset)
    }

    #[test]
    fn slots_are_handed_out_in_order_then_last_freed_first() {
        // 1000 bytes: three slots of 256, the last 232 bytes are ignored.
        let mut c = Checker::new(PoolAllocator::<256>::new(1000), G1);
        assert_eq!(c.sub.region_size(), 768);
        assert_eq!(c.sub.slot_count(), 3);
        assert_eq!(c.sub.free_size(), 768);
        assert_eq!(alloc(&mut c, 1, 1), Ok(0));
        assert_eq!(alloc(&mut c, 256, 1), Ok(256));
        assert_eq!(alloc(&mut c, 100, 64), Ok(512));
        assert_eq!(c.sub.free_size(), 0);
        assert_eq!(c.sub.largest_free_range(), 0);
        assert_eq!(
            alloc(&mut c, 1, 1),
            Err(SuballocatorError::OutOfRegionMemory)
        );
        c.free(1); // the slot at 256
        c.free(0); // the slot at 0
        assert_eq!(c.sub.free_size(), 512);
        assert_eq!(c.sub.largest_free_range(), 256);
        assert_eq!(alloc(&mut c, 8, 1), Ok(0));
        assert_eq!(alloc(&mut c, 8, 1), Ok(256));
        c.free_all_and_reuse(256);
        // After the pool emptied, it starts again from the first slot.
        assert_eq!(alloc(&mut c, 8, 1), Ok(0));
    }

    #[test]
    fn empty_pools() {
        let mut c = Checker::new(PoolAllocator::<0>::new(100), G1);
        assert_eq!((c.sub.region_size(), c.sub.largest_free_range()), (0, 0));
        assert_eq!(
            alloc(&mut c, 1, 1),
            Err(SuballocatorError::BlockSizeExceeded)
        );
        let mut c = Checker::new(PoolAllocator::<256>::new(255), G1);
        assert_eq!(c.sub.region_size(), 0);
        assert_eq!(
            alloc(&mut c, 1, 1),
            Err(SuballocatorError::OutOfRegionMemory)
        );
        let mut c = Checker::new(PoolAllocator::<1>::new(1), G1);
        assert_eq!(alloc(&mut c, 1, 1), Ok(0));
        assert_eq!(
            alloc(&mut c, 2, 1),
            Err(SuballocatorError::BlockSizeExceeded)
        );
        assert_eq!(
            alloc(&mut c, 1, 2),
            Err(SuballocatorError::BlockSizeExceeded)
        );
        assert_eq!(
            alloc(&mut c, 1, 1),
            Err(SuballocatorError::OutOfRegionMemory)
        );
    }

    #[test]
    fn offsets_honour_alignments_above_the_slot_alignment() {
        // Slots of 96 bytes start at multiples of 32 only.
        let mut c = Checker::new(PoolAllocator::<96>::new(4 * 96 + 50), G1);
        let offsets: Vec<_> = (0..4).map(|_| alloc(&mut c, 32, 64).unwrap()).collect();
        assert_eq!(offsets, [0, 128, 192, 320]);
        c.free_all_and_reuse(96);
        // Padding up to 64 - 32 bytes must be left whichever slot the request gets.
        assert_eq!(PoolAllocator::<96>::max_request_size(a(64), G1), 64);
        assert_eq!(alloc(&mut c, 64, 64), Ok(0));
        assert_eq!(
            alloc(&mut c, 65, 64),
            Err(SuballocatorError::BlockSizeExceeded)
        );
        assert_eq!(alloc(&mut c, 96, 32), Ok(96));
        assert_eq!(
            alloc(&mut c, 97, 1),
            Err(SuballocatorError::BlockSizeExceeded)
        );
        assert_eq!(
            alloc(&mut c, 1, 128),
            Err(SuballocatorError::BlockSizeExceeded)
        );
        assert_eq!(PoolAllocator::<96>::max_request_size(a(128), G1), 0);
    }

    #[test]
    fn granularity_dividing_the_slot_costs_nothing() {
        let mut c = Checker::new(PoolAllocator::<256>::new(1024), a(64));
        assert_eq!(PoolAllocator::<256>::max_request_size(G1, a(64)), 256);
        let types = [
            AllocationType::Linear,
            AllocationType::NonLinear,
            AllocationType::Unknown,
            AllocationType::Linear,
        ];
        for (i, ty) in types.into_iter().enumerate() {
            let s = c.allocate(layout(256, 1), ty).unwrap();
            assert_eq!(s.offset, i as u64 * 256);
        }
    }

    #[test]
    fn granularity_larger_than_the_slot_alignment_takes_whole_pages() {
        let g = a(64);
        let mut c = Checker::new(PoolAllocator::<96>::new(4 * 96), g);
        // Worst case: 32 bytes of padding, and the rest rounded down to whole pages.
        assert_eq!(PoolAllocator::<96>::max_request_size(G1, g), 64);
        let types = [
            AllocationType::Linear,
            AllocationType::NonLinear,
            AllocationType::Linear,
            AllocationType::Unknown,
        ];
        let offsets: Vec<_> = types
            .into_iter()
            .map(|ty| c.allocate(layout(64, 1), ty).unwrap().offset)
            .collect();
        assert_eq!(offsets, [0, 128, 192, 320]);
        c.free_all_and_reuse(64);
        assert_eq!(
            alloc(&mut c, 65, 1),
            Err(SuballocatorError::BlockSizeExceeded)
        );
        // A page larger than a slot can never be owned by one.
        assert_eq!(PoolAllocator::<96>::max_request_size(G1, a(128)), 0);
    }

    #[test]
    fn reset_frees_every_slot() {
        let mut c = Checker::new(PoolAllocator::<16>::new(64), G1);
        for _ in 0..4 {
            alloc(&mut c, 16, 16).unwrap();
        }
        let mut sub = c.sub;
        sub.reset();
        assert_eq!((sub.allocation_count(), sub.free_size()), (0, 64));
        let mut c = Checker::new(sub, G1);
        let offsets: Vec<_> = (0..4).map(|_| alloc(&mut c, 16, 16).unwrap()).collect();
        assert_eq!(offsets, [0, 16, 32, 48]);
    }

    /// Random operations on a pool of `slots` slots plus an ignored tail, then a check that
    /// every slot can be taken again once everything is freed.
    fn random_run<const B: u64>(slots: u64, tail: u64, g: DeviceAlignment, ops: &[testing::Op]) {
        let mut c = Checker::new(PoolAllocator::<B>::new(slots * B + tail % B), g);
        assert_eq!(c.sub.region_size(), slots * B);
        c.run(ops);
        let whole = PoolAllocator::<B>::max_request_size(G1, g);
        c.free_all_and_reuse(whole);
        if whole == 0 {
            assert_eq!(
                alloc(&mut c, 1, 1),
                Err(SuballocatorError::BlockSizeExceeded)
            );
            return;
        }
        let mut offsets: Vec<_> = (0..slots)
            .map(|_| {
                c.allocate(layout(whole, 1), AllocationType::Unknown)
                    .unwrap()
                    .offset
                    / B
            })
            .collect();
        offsets.sort_unstable();
        assert!(offsets.iter().copied().eq(0..slots), "{offsets:?}");
        assert_eq!(
            alloc(&mut c, 1, 1),
            Err(SuballocatorError::OutOfRegionMemory)
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn random_sequences_keep_the_invariants(
            block in 0..4usize,
            slots in 1u64..64,
            tail in any::<u64>(),
            granularity in testing::granularity(),
            ops in testing::op_sequence(4096, 200..2000),
        ) {
            match block {
                0 => random_run::<256>(slots, tail, granularity, &ops),
                1 => random_run::<96>(slots, tail, granularity, &ops),
                2 => random_run::<1000>(slots, tail, granularity, &ops),
                _ => random_run::<{ 3 << 16 }>(slots, tail, granularity, &ops),
            }
        }
    }
}
