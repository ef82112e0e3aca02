//! Suballocators: pure offset allocators over one region `[0, region_size)`.
//!
//! Creating a `VkDeviceMemory` object is slow, the driver caps how many can exist at once
//! (`maxMemoryAllocationCount`, as low as 4096), and every object has a minimum cost in memory.
//! Allocators therefore ask the driver for a few large *blocks* and carve each resource out of
//! one of them. Carving is called *suballocation*, and the algorithm that decides where each
//! range goes is a *suballocator*.
//!
//! A suballocator in this crate knows nothing about Vulkan. It manages offsets in an abstract
//! region and never touches the memory itself, so the same algorithms can carve up a
//! `VkDeviceMemory` block, a large buffer (a "virtual block", as VMA calls it), or anything
//! else addressed by offsets. All methods take `&mut self`: the
//! [`GenericMemoryAllocator`](crate::GenericMemoryAllocator) puts each block's suballocator
//! behind its own lock, and single-threaded users pay for no lock at all.
//!
//! # Choosing one
//!
//! | suballocator | allocate / free | fragmentation | use it for |
//! |---|---|---|---|
//! | [`FreeListAllocator`] | O(1) (two-level segregated fit); O(free ranges) when a request barely fits or fails | low | everything: the default |
//! | [`BuddyAllocator`] | O(log n) | internal: sizes round up to a power of two | many similar sizes, fast merge |
//! | [`SlotAllocator`] | O(1) | none inside a slot class | many allocations of one size |
//! | [`BumpAllocator`] | O(1) | none until reset | per-frame transient data |
//! | [`RingAllocator`] | O(1), amortized O(1) free | none while freed in order | staging rings, frames in flight |
//!
//! # Fragmentation
//!
//! *External* fragmentation is free memory split into ranges too small for a request, even
//! though their sum would be enough; a suballocator reports it as
//! [`SuballocatorError::FragmentedRegion`] so that the caller can tell it apart from a region
//! that is simply full ([`SuballocatorError::OutOfRegionMemory`]). *Internal* fragmentation is
//! memory given to an allocation beyond what it asked for: alignment padding, rounding to a
//! power of two in the buddy allocator, or the unused tail of a pool slot.
//!
//! # Buffer-image granularity
//!
//! Every `allocate` call says what kind of resource the range is for ([`AllocationType`]) and
//! the device's `bufferImageGranularity`. A suballocator must never let a
//! [`Linear`](AllocationType::Linear) and a [`NonLinear`](AllocationType::NonLinear) range
//! share a page of that size, and treats [`Unknown`](AllocationType::Unknown) as conflicting
//! with every other range (see [the layout module](crate::layout#pages-and-buffer-image-granularity)).
//! A granularity of 1 costs nothing.

#![deny(unsafe_code)]

pub mod buddy;
pub mod bump;
#[cfg(test)]
mod differential_tests;
pub mod free_list;
pub mod pool;
pub mod ring;
pub mod strategy;
#[cfg(test)]
pub(crate) mod testing;

#[allow(deprecated)]
pub use self::pool::PoolAllocator;
pub use self::strategy::AllocationStrategy;
pub use self::{
    buddy::BuddyAllocator, bump::BumpAllocator, free_list::FreeListAllocator, pool::SlotAllocator,
    ring::RingAllocator,
};
use crate::layout::{DeviceAlignment, DeviceLayout, DeviceSize};

/// What kind of resource a range of memory is for, as far as buffer-image granularity is
/// concerned.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum AllocationType {
    /// Not known: treated as conflicting with every other range on the same granularity page.
    #[default]
    Unknown,
    /// A buffer or a linear-tiling image.
    Linear,
    /// An optimal-tiling image.
    NonLinear,
}

impl AllocationType {
    /// Whether a range of this type and one of `other` may not share a
    /// `bufferImageGranularity` page. `Unknown` conflicts with everything, itself included.
    #[inline]
    pub const fn conflicts_with(self, other: Self) -> bool {
        !matches!(
            (self, other),
            (Self::Linear, Self::Linear) | (Self::NonLinear, Self::NonLinear)
        )
    }

    /// A short lowercase name (`"unknown"`, `"linear"`, `"non_linear"`).
    pub const fn name(self) -> &'static str {
        match self {
            Self::Unknown => "unknown",
            Self::Linear => "linear",
            Self::NonLinear => "non_linear",
        }
    }
}

/// An opaque value a suballocator attaches to each suballocation to find its bookkeeping again
/// in O(1) when it is freed (a node index, a slot number, ...).
///
/// Any `u64` works. A handle that fits in 32 bits (every built-in suballocator's does) lets a
/// [`MemoryAlloc`](crate::MemoryAlloc) of a block keep it inline, with its size; a larger one
/// costs the allocation a heap object of its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SuballocationHandle(u64);

impl SuballocationHandle {
    /// Wraps a suballocator-defined value.
    #[inline]
    pub const fn new(value: u64) -> Self {
        Self(value)
    }

    /// The suballocator-defined value.
    #[inline]
    pub const fn get(self) -> u64 {
        self.0
    }
}

/// A range handed out by a [`Suballocator`]. It is plain data: giving it back is the caller's
/// job, through [`Suballocator::deallocate`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Suballocation {
    /// Start of the range, aligned as requested.
    pub offset: DeviceSize,
    /// Size of the range as requested (the suballocator may hold more, see its docs).
    pub size: DeviceSize,
    /// The type the range was requested with.
    pub allocation_type: AllocationType,
    /// Bookkeeping for the suballocator that made it.
    pub handle: SuballocationHandle,
}

/// Why a [`Suballocator`] could not satisfy a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SuballocatorError {
    /// The free bytes in the region, all together, are fewer than requested.
    #[error("out of region memory: fewer free bytes than requested")]
    OutOfRegionMemory,
    /// Enough bytes are free in total, but no free range can hold the request with its
    /// alignment and granularity.
    #[error("the region is too fragmented: enough free bytes in total, but no range fits")]
    FragmentedRegion,
    /// The request is larger than the fixed slot size of a [`SlotAllocator`].
    #[error("the request is larger than the pool's block size")]
    BlockSizeExceeded,
}

/// Whether a range reported by [`Suballocator::for_each_range`] is free or in use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RangeKind {
    /// Available for allocation.
    Free,
    /// Held by a live allocation (including any padding the suballocator gave it).
    Allocated(AllocationType),
}

/// One range of a region, for statistics and memory maps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RangeInfo {
    /// Start of the range.
    pub offset: DeviceSize,
    /// Length of the range, never zero.
    pub size: DeviceSize,
    /// Free or allocated.
    pub kind: RangeKind,
}

/// A pure offset allocator over the region `[0, region_size)`.
///
/// Implementations guarantee, for every successful [`allocate`](Self::allocate):
/// - the returned range lies inside the region and overlaps no other live range;
/// - its offset is a multiple of the requested alignment;
/// - no live range of a [conflicting](AllocationType::conflicts_with) type shares a
///   `buffer_image_granularity` page with it, before or after it, provided every call since
///   the region was last empty passed the same granularity (a device's is a constant: the
///   free list, bump and ring allocators check only a candidate's neighbours and rely on it;
///   after `A` and `B` were placed at a granularity of 1, a request at 64 can land on `A`'s
///   page next to `B`; the slot allocator refuses such a change instead);
/// - [`free_size`](Self::free_size) drops by exactly the bytes the allocation holds (its size
///   plus the padding the implementation documents), and rises by the same amount when it is
///   freed.
///
/// # Safety
///
/// The first three guarantees are relied on for memory safety: a
/// [`GenericMemoryAllocator`](crate::GenericMemoryAllocator) turns the ranges into pointers
/// into mapped memory ([`MemoryAlloc::write`](crate::MemoryAlloc::write) and friends) and
/// hands the same bytes to no two allocations. An implementation must uphold them for every
/// sequence of calls the safe methods allow. The others (`free_size`,
/// `largest_free_range`, `allocation_count`) may be wrong without harm to memory safety: the
/// allocator only uses them as hints.
#[allow(unsafe_code)] // A contract on implementations (above).
pub unsafe trait Suballocator {
    /// Creates a suballocator managing `[0, region_size)`, all of it free.
    fn new(region_size: DeviceSize) -> Self
    where
        Self: Sized;

    /// Whether failure is monotone in the request, a property callers may use as a hint.
    ///
    /// `true` promises: after [`allocate`](Self::allocate) with a layout of size `s` and
    /// alignment `a`, type `t` and granularity `g` fails with
    /// [`OutOfRegionMemory`](SuballocatorError::OutOfRegionMemory) or
    /// [`FragmentedRegion`](SuballocatorError::FragmentedRegion), every `allocate` of type `t`
    /// and granularity `g` whose layout has a size `s' >= s` and an alignment `a' >= a` fails
    /// as well (with any error) until the next [`deallocate`](Self::deallocate) or
    /// [`reset`](Self::reset), whatever other `allocate` calls, of any type, successful or
    /// not, come in between. A search that gives up early (after a bounded number of
    /// candidates, say) usually breaks it: a small request can then fail where a larger or
    /// more strictly aligned one, searched from elsewhere, succeeds.
    ///
    /// Callers rely on it only when it is `true`: the
    /// [`GenericMemoryAllocator`](crate::GenericMemoryAllocator)'s failed-request hint, which
    /// skips an arena for a request implied by one that failed there since its last free
    /// without locking it. It is not part of the safety contract: a wrong `true` makes a
    /// caller skip room that was there (and perhaps create a block or fail a request), never
    /// hand out overlapping memory. `false`, the default, promises nothing. (A function, not
    /// an associated constant, so that the trait stays usable as `dyn Suballocator`.)
    #[inline]
    fn fails_monotonically() -> bool
    where
        Self: Sized,
    {
        false
    }

    /// The smallest region in which a fresh suballocator (as [`new`](Self::new) makes it)
    /// can serve `layout` of `allocation_type` under `buffer_image_granularity`, or `None`
    /// when no region can (a [`SlotAllocator`] request larger than its slot). An allocator
    /// sizes new blocks (and their arenas) with it. The default, `layout.size()`, is right
    /// for any suballocator that places the first allocation of a fresh region at offset 0;
    /// a wrong answer costs a refused block, never memory safety.
    #[inline]
    fn region_size_for(
        layout: DeviceLayout,
        allocation_type: AllocationType,
        buffer_image_granularity: DeviceAlignment,
    ) -> Option<DeviceSize>
    where
        Self: Sized,
    {
        let _ = (allocation_type, buffer_image_granularity);
        Some(layout.size())
    }

    /// The size of the managed region.
    fn region_size(&self) -> DeviceSize;

    /// Finds a range for `layout`.
    fn allocate(
        &mut self,
        layout: DeviceLayout,
        allocation_type: AllocationType,
        buffer_image_granularity: DeviceAlignment,
    ) -> Result<Suballocation, SuballocatorError>;

    /// Finds a range for `layout` the way `strategy` asks (see
    /// [`strategy`]). The default ignores the strategy and calls
    /// [`allocate`](Self::allocate), which is right for a suballocator with no choice to
    /// make; the [`FreeListAllocator`] implements every strategy.
    fn allocate_with_strategy(
        &mut self,
        layout: DeviceLayout,
        allocation_type: AllocationType,
        buffer_image_granularity: DeviceAlignment,
        strategy: AllocationStrategy,
    ) -> Result<Suballocation, SuballocatorError> {
        let _ = strategy;
        self.allocate(layout, allocation_type, buffer_image_granularity)
    }

    /// Gives a range back.
    ///
    /// # Safety
    ///
    /// `suballocation` must have been returned by [`allocate`](Self::allocate) on this very
    /// suballocator, unchanged, and must not have been deallocated already, nor been live
    /// across a [`reset`](Self::reset). Breaking this corrupts the suballocator's bookkeeping
    /// (it may hand out overlapping ranges later); it does not touch any memory.
    #[allow(unsafe_code)] // A contract on the caller only: no memory is touched.
    unsafe fn deallocate(&mut self, suballocation: Suballocation);

    /// The number of bytes not held by any live allocation. Equal to
    /// [`region_size`](Self::region_size) exactly when no allocation is live.
    fn free_size(&self) -> DeviceSize;

    /// A cheap upper bound on the largest request (alignment 1, no granularity conflict) that
    /// could succeed right now; never smaller than the largest free range a request can be
    /// placed in (a suballocator may keep a few free bytes out of reach, as the
    /// [`FreeListAllocator`] keeps small padding in front of allocations), 0 when nothing is
    /// free. Each implementation documents how tight the bound is. An allocator uses it to skip
    /// blocks that cannot fit a request without locking or searching them.
    fn largest_free_range(&self) -> DeviceSize;

    /// The number of live allocations.
    fn allocation_count(&self) -> usize;

    /// Frees every allocation at once. Suballocations handed out before must not be
    /// deallocated afterwards.
    fn reset(&mut self);

    /// Calls `f` for the ranges of the region in increasing offset order: they tile the region
    /// without gaps or overlaps, free ranges sum to [`free_size`](Self::free_size), and every
    /// live allocation lies inside an allocated range. Adjacent free ranges may be reported
    /// separately. Meant for statistics and memory maps, not the hot path.
    fn for_each_range(&self, f: &mut dyn FnMut(RangeInfo));
}
