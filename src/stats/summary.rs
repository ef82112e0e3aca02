//! [`Statistics`]: the numbers that sum up a region, a block, a memory type, a heap or a whole
//! allocator, and how they are computed from a [`Suballocator`].

use crate::layout::DeviceSize;
use crate::suballocator::{RangeInfo, RangeKind, Suballocator};

/// Count, sum, minimum and maximum of a set of sizes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SizeStats {
    /// How many sizes were added.
    pub count: u64,
    /// Their sum (saturating).
    pub total: DeviceSize,
    /// The smallest, 0 when `count` is 0.
    pub min: DeviceSize,
    /// The largest, 0 when `count` is 0.
    pub max: DeviceSize,
}

impl SizeStats {
    /// Adds one size.
    pub fn add(&mut self, size: DeviceSize) {
        if self.count == 0 {
            self.min = size;
            self.max = size;
        } else {
            self.min = self.min.min(size);
            self.max = self.max.max(size);
        }
        self.count += 1;
        self.total = self.total.saturating_add(size);
    }

    /// Adds every size of `other`.
    pub fn merge(&mut self, other: &Self) {
        if other.count == 0 {
            return;
        }
        if self.count == 0 {
            *self = *other;
            return;
        }
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        self.count = self.count.saturating_add(other.count);
        self.total = self.total.saturating_add(other.total);
    }

    /// The mean size, 0.0 when `count` is 0.
    pub fn average(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.total as f64 / self.count as f64
        }
    }
}

/// A summary of memory objects and the ranges inside them.
///
/// "Allocated ranges" are the ranges a suballocator reports as held by live allocations
/// ([`Suballocator::for_each_range`]): they include any padding the suballocator gave an
/// allocation, and a suballocator may report several allocations as one range (the
/// [`BumpAllocator`](crate::BumpAllocator) reports its whole used prefix as one). The count of
/// live allocations therefore comes from [`Suballocator::allocation_count`] instead. An
/// allocation's own [`size`](crate::MemoryAlloc::size) is what was requested, so the
/// allocated bytes here can exceed the sum of the live allocations' sizes (by a whole slot
/// per allocation with a [`SlotAllocator`](crate::SlotAllocator)).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Statistics {
    /// Memory objects shared by suballocations (blocks).
    pub block_count: u64,
    /// Memory objects of one allocation each (dedicated allocations).
    pub dedicated_count: u64,
    /// Live allocations, suballocated and dedicated.
    pub allocation_count: u64,
    /// Bytes of all memory objects (blocks and dedicated allocations): what the driver gave.
    pub reserved_bytes: DeviceSize,
    /// Sizes of the allocated ranges (see the type's docs) and of dedicated allocations.
    pub allocations: SizeStats,
    /// Sizes of the free ranges inside blocks.
    pub free_ranges: SizeStats,
}

impl Statistics {
    /// The statistics of one region managed by `suballocator`, counted as one block of
    /// [`region_size`](Suballocator::region_size) bytes. Walks every range: meant for
    /// statistics and debugging, not the hot path.
    pub fn of_suballocator<S: Suballocator + ?Sized>(suballocator: &S) -> Self {
        Self::of_block(
            suballocator.region_size(),
            suballocator.allocation_count(),
            |f| suballocator.for_each_range(f),
        )
    }

    /// The statistics of one block of `size` bytes holding `allocation_count` allocations,
    /// whose ranges `walk` reports.
    pub(crate) fn of_block(
        size: DeviceSize,
        allocation_count: usize,
        walk: impl FnOnce(&mut dyn FnMut(RangeInfo)),
    ) -> Self {
        let mut stats = Self {
            block_count: 1,
            allocation_count: allocation_count as u64,
            reserved_bytes: size,
            ..Self::default()
        };
        walk(&mut |r| stats.add_range(r));
        stats
    }

    /// The statistics of one dedicated allocation of `size` bytes.
    pub fn of_dedicated(size: DeviceSize) -> Self {
        let mut allocations = SizeStats::default();
        allocations.add(size);
        Self {
            dedicated_count: 1,
            allocation_count: 1,
            reserved_bytes: size,
            allocations,
            ..Self::default()
        }
    }

    /// Counts one range of a region in `allocations` or `free_ranges`.
    pub fn add_range(&mut self, range: RangeInfo) {
        match range.kind {
            RangeKind::Free => self.free_ranges.add(range.size),
            RangeKind::Allocated(_) => self.allocations.add(range.size),
        }
    }

    /// Adds everything counted in `other`.
    pub fn merge(&mut self, other: &Self) {
        self.block_count = self.block_count.saturating_add(other.block_count);
        self.dedicated_count = self.dedicated_count.saturating_add(other.dedicated_count);
        self.allocation_count = self.allocation_count.saturating_add(other.allocation_count);
        self.reserved_bytes = self.reserved_bytes.saturating_add(other.reserved_bytes);
        self.allocations.merge(&other.allocations);
        self.free_ranges.merge(&other.free_ranges);
    }

    /// Bytes held by live allocations (the sum of [`allocations`](Self::allocations)).
    pub fn allocated_bytes(&self) -> DeviceSize {
        self.allocations.total
    }

    /// Bytes free inside blocks (the sum of [`free_ranges`](Self::free_ranges)).
    pub fn free_bytes(&self) -> DeviceSize {
        self.free_ranges.total
    }

    /// The largest free range inside any block, 0 when there is none.
    pub fn largest_free_range(&self) -> DeviceSize {
        self.free_ranges.max
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::{DeviceAlignment, DeviceLayout};
    use crate::suballocator::{AllocationType, FreeListAllocator, Suballocation};

    #[test]
    fn size_stats_add_and_merge() {
        let mut a = SizeStats::default();
        assert_eq!(a.average(), 0.0);
        a.add(10);
        a.add(30);
        assert_eq!((a.count, a.total, a.min, a.max), (2, 40, 10, 30));
        assert_eq!(a.average(), 20.0);
        let mut b = SizeStats::default();
        b.merge(&a);
        assert_eq!(a, b);
        let mut c = SizeStats::default();
        c.add(5);
        b.merge(&c);
        b.merge(&SizeStats::default());
        assert_eq!((b.count, b.total, b.min, b.max), (3, 45, 5, 30));
    }

    #[test]
    #[allow(unsafe_code)] // Freeing a suballocation is an `unsafe` contract.
    fn of_free_list_matches_its_ranges() {
        let mut s = FreeListAllocator::new(4096);
        let layout = |size| DeviceLayout::new(size, DeviceAlignment::MIN).unwrap();
        let g = DeviceAlignment::MIN;
        let a = s.allocate(layout(100), AllocationType::Linear, g).unwrap();
        let _b = s.allocate(layout(200), AllocationType::Linear, g).unwrap();
        let _c = s.allocate(layout(300), AllocationType::Linear, g).unwrap();
        // SAFETY: `a` came from `s` and is freed once.
        unsafe { s.deallocate(a) };
        let st = Statistics::of_suballocator(&s);
        assert_eq!(st.block_count, 1);
        assert_eq!(st.reserved_bytes, 4096);
        assert_eq!(st.allocation_count, 2);
        assert_eq!(st.allocations.count, 2);
        assert_eq!(st.allocated_bytes(), 500);
        assert_eq!((st.allocations.min, st.allocations.max), (200, 300));
        assert_eq!(st.free_bytes(), s.free_size());
        assert_eq!(st.free_ranges.count, 2);
        assert_eq!(st.largest_free_range(), 4096 - 600);
        assert_eq!(st.free_ranges.min, 100);
    }

    /// A bump-like suballocator that reports its used prefix as one range.
    struct Prefix {
        size: DeviceSize,
        used: DeviceSize,
        count: usize,
    }

    #[allow(unsafe_code)] // Implements the unsafe trait; no unsafe operation inside.
                          // SAFETY: a prefix of the region, handed out in increasing offsets, only used here to
                          // feed statistics; nothing maps it.
    unsafe impl Suballocator for Prefix {
        fn new(size: DeviceSize) -> Self {
            Self {
                size,
                used: 0,
                count: 0,
            }
        }
        fn region_size(&self) -> DeviceSize {
            self.size
        }
        fn allocate(
            &mut self,
            layout: DeviceLayout,
            allocation_type: AllocationType,
            _: DeviceAlignment,
        ) -> Result<Suballocation, crate::SuballocatorError> {
            let offset = self.used;
            self.used += layout.size();
            self.count += 1;
            Ok(Suballocation {
                offset,
                size: layout.size(),
                allocation_type,
                handle: crate::SuballocationHandle::new(0),
            })
        }
        #[allow(unsafe_code)]
        unsafe fn deallocate(&mut self, _: Suballocation) {
            self.count -= 1;
        }
        fn free_size(&self) -> DeviceSize {
            self.size - self.used
        }
        fn largest_free_range(&self) -> DeviceSize {
            self.size - self.used
        }
        fn allocation_count(&self) -> usize {
            self.count
        }
        fn reset(&mut self) {
            self.used = 0;
            self.count = 0;
        }
        fn for_each_range(&self, f: &mut dyn FnMut(RangeInfo)) {
            if self.used > 0 {
                f(RangeInfo {
                    offset: 0,
                    size: self.used,
                    kind: RangeKind::Allocated(AllocationType::Unknown),
                });
            }
            if self.used < self.size {
                f(RangeInfo {
                    offset: self.used,
                    size: self.size - self.used,
                    kind: RangeKind::Free,
                });
            }
        }
    }

    #[test]
    fn one_range_for_many_allocations_still_counts_allocations() {
        let mut s = Prefix::new(1000);
        let l = DeviceLayout::new(100, DeviceAlignment::MIN).unwrap();
        for _ in 0..3 {
            s.allocate(l, AllocationType::Unknown, DeviceAlignment::MIN)
                .unwrap();
        }
        let st = Statistics::of_suballocator(&s);
        assert_eq!(st.allocation_count, 3);
        assert_eq!(st.allocations.count, 1);
        assert_eq!(st.allocated_bytes(), 300);
        assert_eq!(st.free_bytes(), 700);
    }

    #[test]
    fn dedicated_and_merge() {
        let mut total = Statistics::default();
        total.merge(&Statistics::of_dedicated(64));
        total.merge(&Statistics::of_suballocator(&FreeListAllocator::new(128)));
        assert_eq!(total.block_count, 1);
        assert_eq!(total.dedicated_count, 1);
        assert_eq!(total.allocation_count, 1);
        assert_eq!(total.reserved_bytes, 192);
        assert_eq!(total.allocated_bytes(), 64);
        assert_eq!(total.free_bytes(), 128);
    }
}
