//! The bump allocator: a cursor that only moves forward until everything is freed.
//!
//! # Algorithm
//!
//! Everything before the cursor is used, everything after it is free. An allocation starts at
//! the cursor rounded up to its alignment (and, if needed, to the next granularity page, see
//! below), and the cursor moves to its end. Freeing an allocation only decrements the count of
//! live allocations; when the count reaches zero the cursor returns to 0 and the whole region
//! is available again. [`reset`](Suballocator::reset) does the same at once. This suits
//! transient data with one lifetime, such as everything written for one frame.
//!
//! # Cost
//!
//! `allocate` and `deallocate` are O(1) and a handful of instructions, and the allocator
//! holds no memory beyond its own few fields.
//!
//! # Padding and granularity
//!
//! Padding skipped to satisfy an alignment or a page boundary lies before the cursor and is
//! held, like the allocations themselves, until the region empties: so is every freed
//! allocation. [`free_size`](Suballocator::free_size) and
//! [`largest_free_range`](Suballocator::largest_free_range) are both `region_size − cursor`,
//! exact.
//!
//! Only the previous allocation can share a page with a new one: the new one starts at or after
//! the cursor, and nothing lies beyond. When `buffer_image_granularity` is larger than 1, the
//! previous allocation's type [conflicts](AllocationType::conflicts_with) with the new one's,
//! and its last byte lies on the page where the new one would start, the start moves to the
//! next page boundary. Checking the previous allocation alone is enough: an older allocation
//! that reaches the same page shares it with the previous one too, so it has a type that does
//! not conflict with the previous one, that is the same non-`Unknown` type, which the new one
//! does not conflict with either. The previous allocation is remembered even once freed, which
//! is only ever more cautious.
//!
//! # Tracking
//!
//! The allocator does not remember individual ranges, so
//! [`for_each_range`](Suballocator::for_each_range) reports `[0, cursor)` as one range of
//! [`AllocationType::Unknown`] followed by the free rest of the region.
//!
//! # Errors
//!
//! [`OutOfRegionMemory`](SuballocatorError::OutOfRegionMemory) when fewer than `size` bytes
//! lie after the cursor; [`FragmentedRegion`](SuballocatorError::FragmentedRegion) when they
//! would be enough but the padding pushes the end past the region.

use super::*;
use crate::layout::{align_up, on_same_page};

/// A linear allocator, reusable once all its allocations are freed.
///
/// Each allocation starts at the cursor, rounded up to its alignment and, when the previous
/// allocation has a conflicting type and ends on that page, to the next
/// `buffer_image_granularity` page; the cursor moves to its end. Freeing only counts down:
/// when no allocation is left (or on [`reset`](Suballocator::reset)) the cursor returns to 0.
/// Both calls are O(1).
///
/// Padding and freed allocations stay held until then, so
/// [`free_size`](Suballocator::free_size) and
/// [`largest_free_range`](Suballocator::largest_free_range) are `region_size − cursor`, and
/// [`for_each_range`](Suballocator::for_each_range) reports `[0, cursor)` as one range of
/// [`AllocationType::Unknown`]: individual ranges are not tracked. Errors:
/// [`OutOfRegionMemory`](SuballocatorError::OutOfRegionMemory) when fewer than `size` bytes
/// lie after the cursor, [`FragmentedRegion`](SuballocatorError::FragmentedRegion) when the
/// padding pushes the end past the region.
#[derive(Debug)]
pub struct BumpAllocator {
    region_size: DeviceSize,
    cursor: DeviceSize,
    allocation_count: usize,
    /// End and type of the last allocation made since the cursor was last at 0.
    previous: Option<(DeviceSize, AllocationType)>,
    /// Incremented each time the cursor returns to 0, and stored in each handle, so that debug
    /// builds catch a suballocation freed after the region was reused. 32 bits, wrapping: a
    /// handle that fits in 32 bits keeps the allocation that holds it three words (see
    /// [`MemoryAlloc`](crate::MemoryAlloc)).
    epoch: u32,
}

impl BumpAllocator {
    fn rewind(&mut self) {
        self.cursor = 0;
        self.allocation_count = 0;
        self.previous = None;
        self.epoch = self.epoch.wrapping_add(1);
    }
}

// The trait is unsafe to implement; nothing unsafe happens inside.
#[allow(unsafe_code)]
// SAFETY: ranges are handed out in increasing offsets past every live one, aligned and moved
// to a new granularity page after a conflicting type, and never beyond the region; the shared
// property tests (`testing`) check every guarantee after every operation.
unsafe impl Suballocator for BumpAllocator {
    /// A request of type `t` starts at the cursor rounded up to its alignment, moved to the
    /// next page after a conflicting previous allocation on the same page. That start is no
    /// earlier for a stricter alignment, and no earlier after any allocation in between: the
    /// cursor only moves forward, and an allocation that stays on the conflicting page has
    /// the previous allocation's type, which `t` conflicts with as well. A larger request
    /// from a start no earlier ends no earlier, so it runs past the region too. Freeing all
    /// allocations rewinds the cursor, but that is a `deallocate`.
    #[inline]
    fn fails_monotonically() -> bool {
        true
    }

    fn new(region_size: DeviceSize) -> Self {
        Self {
            region_size,
            cursor: 0,
            allocation_count: 0,
            previous: None,
            epoch: 0,
        }
    }

    #[inline]
    fn region_size(&self) -> DeviceSize {
        self.region_size
    }

    fn allocate(
        &mut self,
        layout: DeviceLayout,
        allocation_type: AllocationType,
        buffer_image_granularity: DeviceAlignment,
    ) -> Result<Suballocation, SuballocatorError> {
        let size = layout.size();
        if self.free_size() < size {
            return Err(SuballocatorError::OutOfRegionMemory);
        }
        let mut start = align_up(self.cursor, layout.alignment());
        if let (Some(candidate), Some((previous_end, previous_type))) = (start, self.previous) {
            let g = buffer_image_granularity;
            // `previous_end` is not 0: allocations are never empty.
            if g != DeviceAlignment::MIN
                && previous_type.conflicts_with(allocation_type)
                && on_same_page(previous_end - 1, candidate, g)
            {
                start = align_up(candidate, g);
            }
        }
        let (offset, end) = start
            .and_then(|offset| Some((offset, offset.checked_add(size)?)))
            .filter(|&(_, end)| end <= self.region_size)
            .ok_or(SuballocatorError::FragmentedRegion)?;
        self.cursor = end;
        self.previous = Some((end, allocation_type));
        self.allocation_count += 1;
        Ok(Suballocation {
            offset,
            size,
            allocation_type,
            handle: SuballocationHandle::new(u64::from(self.epoch)),
        })
    }

    unsafe fn deallocate(&mut self, suballocation: Suballocation) {
        debug_assert!(
            self.allocation_count > 0 && suballocation.handle.get() == u64::from(self.epoch),
            "{suballocation:?} is not a live allocation of this allocator"
        );
        self.allocation_count -= 1;
        if self.allocation_count == 0 {
            self.rewind();
        }
    }

    #[inline]
    fn free_size(&self) -> DeviceSize {
        self.region_size - self.cursor
    }

    #[inline]
    fn largest_free_range(&self) -> DeviceSize {
        self.region_size - self.cursor
    }

    #[inline]
    fn allocation_count(&self) -> usize {
        self.allocation_count
    }

    fn reset(&mut self) {
        self.rewind();
    }

    fn for_each_range(&self, f: &mut dyn FnMut(RangeInfo)) {
        if self.cursor > 0 {
            f(RangeInfo {
                offset: 0,
                size: self.cursor,
                kind: RangeKind::Allocated(AllocationType::Unknown),
            });
        }
        if self.cursor < self.region_size {
            f(RangeInfo {
                offset: self.cursor,
                size: self.region_size - self.cursor,
                kind: RangeKind::Free,
            });
        }
    }
}

#[cfg(test)]
mod tests;
