//! The allocator: the [`MemoryAllocator`] trait and the requests it serves.
//!
//! # Asking for memory
//!
//! A request is three things. [`MemoryRequirements`] say what the resource needs: size,
//! alignment, the memory types it can live in, and whether the driver prefers or requires a
//! dedicated memory object (from `vkGet*MemoryRequirements2` with
//! `VkMemoryDedicatedRequirements`). [`AllocationType`] says whether the resource is linear
//! (buffers, linear images) or not (optimal images), for buffer-image granularity.
//! [`AllocationCreateInfo`] says what the user intends: [`MemoryUsage`] picks the memory
//! type (best as an automatic usage, which takes the resource's usage flags and the host
//! access into account, see [`intent`]), [`MemoryAllocatePreference`] governs dedicated
//! allocations, and an optional name shows up in leak reports.
//!
//! # Where an allocation goes
//!
//! Most allocations are ranges of a shared block; some get a memory object of their own (a
//! *dedicated* allocation): when the driver requires or prefers it, when the request is
//! large, or when the preference says so. When the driver runs out of memory, the allocator
//! retries with smaller blocks, then a dedicated allocation, then the next-best memory type.
//! All of these rules, and their thresholds, are in one place: the
//! [placement policy](placement). Dedicated allocations carry
//! `VkMemoryDedicatedAllocateInfo` when the resource is known.
//!
//! # Non-coherent memory
//!
//! In memory that is host-visible but not host-coherent, writes by the host must be flushed
//! and writes by the device invalidated, in whole `nonCoherentAtomSize` atoms. Every
//! suballocation in such memory therefore starts and ends on an atom boundary
//! ([placement](placement#non-coherent-memory)), so that the widened flush or invalidate of
//! one allocation ([`MemoryAlloc::write`], [`MemoryAlloc::read`], [`MemoryAlloc::flush`],
//! [`MemoryAlloc::invalidate`]) never touches the bytes of another, which the GPU or another
//! thread may be writing at that moment. The allocation's [`size`](MemoryAlloc::size) is
//! then the padded size. (VMA does the same.)
//!
//! # Threads
//!
//! An allocator is `Send + Sync` and meant to be shared: allocating and freeing take `&self`.
//! Threads that allocate at the same time would queue on a block's lock, so each block is
//! cut into a few arenas (up to
//! [`block_arenas`](GenericMemoryAllocatorCreateInfo::block_arenas), by default one per CPU,
//! at most four, none smaller than [`placement::MIN_ARENA_SIZE`]) with a lock each. A thread
//! tries its own arena of every block first and the others before a new block is made:
//! threads share the blocks, and no memory is set aside per thread.

mod bind_next;
mod block_vec;
mod config;
mod dedicated;
pub mod defrag;
mod error;
mod execute;
mod generic;
mod import;
pub mod intent;
pub mod memory_pool;
pub mod memory_type;
mod observe;
mod pages;
pub mod placement;
mod requirements;
mod strategy_scope;
mod type_cache;

/// The memory layouts of real GPUs that the driver tests simulate, for the unit tests of the
/// pure layers (placement, automatic usages).
#[cfg(test)]
#[path = "../../tests/support/layouts.rs"]
pub(crate) mod test_layouts;

pub use self::config::{
    BlockSizeThresholds, ConfigError, DebugOptions, GenericMemoryAllocatorCreateInfo,
    MAX_AUTO_BLOCK_ARENAS, MAX_BLOCK_ARENAS, MAX_DEBUG_MARGIN,
};
pub use self::defrag::{
    Algorithm as DefragmentationAlgorithm, Defragmentation, DefragmentationInfo,
    DefragmentationPass,
};
pub use self::error::AllocationError;
pub use self::generic::{GenericMemoryAllocator, StandardMemoryAllocator};
pub use self::intent::{HostAccess, ResourceUsage};
pub use self::memory_pool::{MemoryPool, PoolCreateInfo, PoolMemoryType};
pub use self::memory_type::{MemoryTypeFilter, MemoryUsage};
pub use self::placement::MemoryAllocatePreference;
use crate::allocation::{MemoryAccessError, MemoryAlloc, UserData};
use crate::device::{Device, Resource};
use crate::device_memory::DedicatedAllocation;
use crate::layout::{DeviceLayout, DeviceSize};
use crate::stats::{AllocatorStatistics, MemorySnapshot};
use crate::suballocator::AllocationType;
use ash::vk;
use std::sync::Arc;

/// What the user intends with an allocation.
///
/// Build it with `..Default::default()`: new fields may be added.
#[derive(Clone, Debug)]
pub struct AllocationCreateInfo {
    /// Which kind of memory type to choose. The default value is [`MemoryUsage::DeviceOnly`];
    /// [`MemoryUsage::Auto`] chooses from the resource and the host access.
    pub usage: MemoryUsage,
    /// What the memory is for, for the automatic usages (the simple ones ignore it).
    /// [`MemoryAllocator::create_buffer`] and [`MemoryAllocator::create_image`] fill it in from
    /// the resource's usage flags when it is left [`ResourceUsage::Unknown`]; give it when
    /// allocating for a resource with [`MemoryAllocator::allocate`]. The default value is
    /// `Unknown` (the GPU is assumed to use the memory directly).
    pub resource_usage: ResourceUsage,
    /// Dedicated-allocation policy. The default value is [`MemoryAllocatePreference::Auto`].
    pub allocate_preference: MemoryAllocatePreference,
    /// A name for statistics and leak reports. The default value is `None`.
    pub name: Option<Arc<str>>,
    /// Priority of a dedicated allocation's memory, 0.0 ..= 1.0 (anything else, NaN
    /// included, is an [`InvalidPriority`](AllocationError::InvalidPriority) error), passed
    /// to `VK_EXT_memory_priority` when it is enabled. The default value is `None` (the
    /// allocator's block priority).
    pub priority: Option<f32>,
    /// Refuse to allocate a new memory object that would take its heap past the heap's budget
    /// (VMA's `WITHIN_BUDGET`; see [`budget`](crate::budget)). The default value is `false`.
    pub within_budget: bool,
    /// Data of your choosing, shown (by its `Debug` text) in statistics snapshots, the JSON
    /// dump, the SVG memory map and the leak report, and readable from the allocation
    /// ([`MemoryAlloc::user_data`]). The default value is `None`.
    pub user_data: Option<Arc<dyn UserData>>,
    /// The least alignment of the allocation's offset, on top of what the resource requires
    /// (VMA's `vmaCreateBufferWithAlignment`; a custom pool adds its own
    /// [`PoolCreateInfo::min_alignment`]). Raises the alignment only, not the size. The
    /// default value is 1 (the resource's alignment).
    pub min_alignment: crate::DeviceAlignment,
    /// Which free range to take when several fit (VMA's `STRATEGY_MIN_MEMORY` /
    /// `MIN_TIME` / `MIN_OFFSET` flags; see [`strategy`](crate::suballocator::strategy)). It
    /// wins over a custom pool's [`PoolCreateInfo::strategy`]. The default value is
    /// [`AllocationStrategy::Default`](crate::AllocationStrategy::Default): the pool's
    /// strategy, else the allocator's (a quick good fit, a best fit for large requests).
    pub strategy: crate::AllocationStrategy,
    #[doc(hidden)]
    pub _ne: crate::NonExhaustive,
}

impl PartialEq for AllocationCreateInfo {
    /// User data compares by identity (the same `Arc`).
    fn eq(&self, other: &Self) -> bool {
        self.usage == other.usage
            && self.resource_usage == other.resource_usage
            && self.allocate_preference == other.allocate_preference
            && self.name == other.name
            && self.priority == other.priority
            && self.within_budget == other.within_budget
            && self.min_alignment == other.min_alignment
            && self.strategy == other.strategy
            && match (&self.user_data, &other.user_data) {
                (None, None) => true,
                (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                _ => false,
            }
    }
}

impl Default for AllocationCreateInfo {
    fn default() -> Self {
        Self {
            usage: MemoryUsage::DeviceOnly,
            resource_usage: ResourceUsage::Unknown,
            allocate_preference: MemoryAllocatePreference::Auto,
            name: None,
            priority: None,
            within_budget: false,
            user_data: None,
            min_alignment: crate::DeviceAlignment::MIN,
            strategy: crate::AllocationStrategy::Default,
            _ne: crate::NonExhaustive(()),
        }
    }
}

/// What a resource needs from its memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryRequirements {
    /// Size and alignment.
    pub layout: DeviceLayout,
    /// Bit `i` set when memory type `i` is allowed.
    pub memory_type_bits: u32,
    /// The driver would rather give the resource its own memory object.
    pub prefers_dedicated_allocation: bool,
    /// The driver insists on a memory object of its own.
    pub requires_dedicated_allocation: bool,
}

impl MemoryRequirements {
    /// Checks and converts the plain `VkMemoryRequirements`.
    pub fn from_vk(requirements: vk::MemoryRequirements) -> Result<Self, AllocationError> {
        Ok(Self {
            layout: DeviceLayout::from_size_alignment(requirements.size, requirements.alignment)?,
            memory_type_bits: requirements.memory_type_bits,
            prefers_dedicated_allocation: false,
            requires_dedicated_allocation: false,
        })
    }

    /// Queries a buffer's requirements, including the dedicated-allocation hints when
    /// `vkGetBufferMemoryRequirements2` is available.
    ///
    /// # Safety
    ///
    /// `buffer` is a valid buffer created from `device`.
    pub unsafe fn for_buffer(device: &Device, buffer: vk::Buffer) -> Result<Self, AllocationError> {
        // SAFETY: the caller's contract.
        let (reqs, dedicated) = unsafe { device.raw_requirements(Resource::Buffer(buffer)) };
        Self::with_hints(reqs, dedicated)
    }

    /// Queries a (non-disjoint) image's requirements, including the dedicated-allocation hints
    /// when `vkGetImageMemoryRequirements2` is available.
    ///
    /// # Safety
    ///
    /// `image` is a valid, non-disjoint image created from `device`.
    pub unsafe fn for_image(device: &Device, image: vk::Image) -> Result<Self, AllocationError> {
        // SAFETY: the caller's contract.
        let (reqs, dedicated) = unsafe { device.raw_requirements(Resource::Image(image)) };
        Self::with_hints(reqs, dedicated)
    }

    fn with_hints(
        reqs: vk::MemoryRequirements,
        dedicated: vk::MemoryDedicatedRequirements<'_>,
    ) -> Result<Self, AllocationError> {
        let mut out = Self::from_vk(reqs)?;
        out.prefers_dedicated_allocation = dedicated.prefers_dedicated_allocation != 0;
        out.requires_dedicated_allocation = dedicated.requires_dedicated_allocation != 0;
        Ok(out)
    }
}

/// An allocator of device memory.
///
/// Implementations are shared between threads (`&self` everywhere) and hand out
/// [`MemoryAlloc`]s that give their memory back when dropped.
pub trait MemoryAllocator: Send + Sync {
    /// The device the allocator works for.
    fn device(&self) -> &Arc<Device>;

    /// The best memory type among `memory_type_bits` for `filter`, or `None`.
    fn find_memory_type_index(
        &self,
        memory_type_bits: u32,
        filter: MemoryTypeFilter,
    ) -> Option<u32>;

    /// Allocates from one given memory type: suballocated, or dedicated when the preference
    /// says [`AlwaysAllocate`](MemoryAllocatePreference::AlwaysAllocate) or the layout is too
    /// large for a block. `create_info.usage` is ignored.
    fn allocate_from_type(
        &self,
        memory_type_index: u32,
        layout: DeviceLayout,
        allocation_type: AllocationType,
        create_info: &AllocationCreateInfo,
    ) -> Result<MemoryAlloc, AllocationError>;

    /// Allocates memory for a resource with `requirements`, choosing the memory type and
    /// whether to make a dedicated allocation, with every fallback described in the
    /// [module docs](self#running-out).
    fn allocate(
        &self,
        requirements: MemoryRequirements,
        allocation_type: AllocationType,
        create_info: &AllocationCreateInfo,
        dedicated: Option<DedicatedAllocation>,
    ) -> Result<MemoryAlloc, AllocationError>;

    /// Allocates a memory object of its own, of exactly `size` bytes, from one memory type.
    fn allocate_dedicated(
        &self,
        memory_type_index: u32,
        size: DeviceSize,
        dedicated: Option<DedicatedAllocation>,
        create_info: &AllocationCreateInfo,
    ) -> Result<MemoryAlloc, AllocationError>;

    /// Allocates `count` allocations with the same requirements, all or nothing (VMA's
    /// `vmaAllocateMemoryPages`): when one fails, those already made are freed again and
    /// the error returned. Each page is placed like one [`allocate`](Self::allocate) call
    /// without a dedicated resource.
    ///
    /// For the pages of a sparse resource (created with `SPARSE_BINDING`): each
    /// `VkSparseMemoryBind` (or `VkSparseImageMemoryBind`) of `vkQueueBindSparse` names one
    /// page's [`memory`](MemoryAlloc::memory) and [`offset`](MemoryAlloc::offset). Take the
    /// page layout from the resource's requirements (its alignment is the sparse page size;
    /// `vkGetImageSparseMemoryRequirements` for images), and keep the pages alive until the
    /// resource is destroyed or the pages are unbound.
    fn allocate_pages(
        &self,
        requirements: MemoryRequirements,
        allocation_type: AllocationType,
        create_info: &AllocationCreateInfo,
        count: usize,
    ) -> Result<Vec<MemoryAlloc>, AllocationError> {
        pages::allocate_pages(self, requirements, allocation_type, create_info, count)
    }

    /// Statistics of the allocator's memory (see [`stats`](crate::stats)). The default
    /// computes them from [`snapshot`](Self::snapshot).
    fn statistics(&self) -> AllocatorStatistics {
        self.snapshot().statistics
    }

    /// The full state of the allocator's memory (see [`stats`](crate::stats)). The default,
    /// for allocators that do not track their memory, lists the device's heaps (with their
    /// budgets) and memory types, and no memory objects.
    fn snapshot(&self) -> MemorySnapshot {
        MemorySnapshot::of_device(self.device(), Vec::new())
    }

    /// Creates a buffer, allocates memory for it and binds it. On any failure the buffer is
    /// destroyed again and the error returned. The caller destroys the buffer (before dropping
    /// the allocation, or without using it afterwards).
    ///
    /// # Safety
    ///
    /// `buffer_info` is a valid `VkBufferCreateInfo` for this device (non-zero size, supported
    /// usage flags, valid `pNext` chain and queue family indices).
    unsafe fn create_buffer(
        &self,
        buffer_info: &vk::BufferCreateInfo<'_>,
        create_info: &AllocationCreateInfo,
    ) -> Result<(vk::Buffer, MemoryAlloc), AllocationError> {
        let ash = self.device().ash();
        // SAFETY: the caller guarantees `buffer_info` is valid for this device.
        let buffer =
            unsafe { ash.create_buffer(buffer_info, None) }.map_err(AllocationError::from_vk)?;
        let create_info = with_resource_usage(
            create_info,
            ResourceUsage::Buffer(crate::device_requirements::buffer_usage(buffer_info)),
        );
        // SAFETY: `buffer` was just created from this device and is unbound.
        unsafe {
            allocate_and_bind(
                self,
                Resource::Buffer(buffer),
                AllocationType::Linear,
                &create_info,
                std::ptr::null(),
            )
        }
        .map(|alloc| (buffer, alloc))
    }

    /// Creates an image, allocates memory for it and binds it, like
    /// [`create_buffer`](Self::create_buffer). Optimal tiling counts as
    /// [`AllocationType::NonLinear`], linear tiling as [`AllocationType::Linear`].
    ///
    /// # Safety
    ///
    /// `image_info` is a valid `VkImageCreateInfo` for this device, without the `DISJOINT`
    /// flag.
    unsafe fn create_image(
        &self,
        image_info: &vk::ImageCreateInfo<'_>,
        create_info: &AllocationCreateInfo,
    ) -> Result<(vk::Image, MemoryAlloc), AllocationError> {
        let ash = self.device().ash();
        let allocation_type = if image_info.tiling == vk::ImageTiling::LINEAR {
            AllocationType::Linear
        } else {
            AllocationType::NonLinear
        };
        // SAFETY: the caller guarantees `image_info` is valid for this device.
        let image =
            unsafe { ash.create_image(image_info, None) }.map_err(AllocationError::from_vk)?;
        let create_info = with_resource_usage(create_info, ResourceUsage::Image(image_info.usage));
        // SAFETY: `image` was just created from this device, is unbound and not disjoint.
        unsafe {
            allocate_and_bind(
                self,
                Resource::Image(image),
                allocation_type,
                &create_info,
                std::ptr::null(),
            )
        }
        .map(|alloc| (image, alloc))
    }

    /// Allocates memory for a buffer that `buffer_info` would make, without making it
    /// (requirements from [`MemoryRequirements::for_buffer_info`]; Vulkan 1.3 or
    /// `VK_KHR_maintenance4`): create the buffer later and bind it with
    /// [`MemoryAlloc::bind_buffer_at`]. The buffer's usage (of a
    /// `VkBufferUsageFlags2CreateInfoKHR` in the chain when there is one) is the resource
    /// usage when `create_info` leaves it `Unknown`. A buffer the driver says requires a
    /// dedicated allocation is refused with
    /// [`DedicatedAllocationRequired`](AllocationError::DedicatedAllocationRequired) (only
    /// memory dedicated to the buffer itself would do).
    ///
    /// # Safety
    ///
    /// `buffer_info` is a valid `VkBufferCreateInfo` for this device.
    unsafe fn allocate_for_buffer_info(
        &self,
        buffer_info: &vk::BufferCreateInfo<'_>,
        create_info: &AllocationCreateInfo,
    ) -> Result<MemoryAlloc, AllocationError> {
        let info = crate::device_requirements::CreateInfo::Buffer(buffer_info);
        // SAFETY: the caller's contract.
        unsafe { requirements::allocate_for_info(self, info, create_info) }
    }

    /// Allocates memory for an image that `image_info` would make, without making it, like
    /// [`allocate_for_buffer_info`](Self::allocate_for_buffer_info).
    ///
    /// # Safety
    ///
    /// `image_info` is a valid `VkImageCreateInfo` for this device, not `DISJOINT`.
    unsafe fn allocate_for_image_info(
        &self,
        image_info: &vk::ImageCreateInfo<'_>,
        create_info: &AllocationCreateInfo,
    ) -> Result<MemoryAlloc, AllocationError> {
        let info = crate::device_requirements::CreateInfo::Image(image_info);
        // SAFETY: the caller's contract.
        unsafe { requirements::allocate_for_info(self, info, create_info) }
    }

    /// [`create_buffer`](Self::create_buffer), binding through `vkBindBufferMemory2` with the
    /// `pNext` chain of `bind_chain` (only its `pNext` is read): see
    /// [`MemoryAlloc::bind_buffer_at_with_next`]. Without
    /// [`bind_memory2`](crate::EnabledMemoryFeatures::bind_memory2) a non-empty chain is an
    /// [`AllocationError::Bind`] error, returned before anything is created.
    ///
    /// # Safety
    ///
    /// As for `create_buffer`; every structure in the chain is valid for the bind and its
    /// extension or feature is enabled.
    unsafe fn create_buffer_with_bind_next(
        &self,
        buffer_info: &vk::BufferCreateInfo<'_>,
        create_info: &AllocationCreateInfo,
        bind_chain: &vk::BindBufferMemoryInfo<'_>,
    ) -> Result<(vk::Buffer, MemoryAlloc), AllocationError> {
        // SAFETY: the caller's contract.
        unsafe { bind_next::create_buffer(self, buffer_info, create_info, bind_chain.p_next) }
    }

    /// [`create_image`](Self::create_image), binding through `vkBindImageMemory2` with the
    /// `pNext` chain of `bind_chain`, like
    /// [`create_buffer_with_bind_next`](Self::create_buffer_with_bind_next).
    ///
    /// # Safety
    ///
    /// As for `create_image`; every structure in the chain is valid for the bind and its
    /// extension or feature is enabled.
    unsafe fn create_image_with_bind_next(
        &self,
        image_info: &vk::ImageCreateInfo<'_>,
        create_info: &AllocationCreateInfo,
        bind_chain: &vk::BindImageMemoryInfo<'_>,
    ) -> Result<(vk::Image, MemoryAlloc), AllocationError> {
        // SAFETY: the caller's contract.
        unsafe { bind_next::create_image(self, image_info, create_info, bind_chain.p_next) }
    }
}

/// `create_info` with `usage` as its resource usage, unless it already names one.
fn with_resource_usage(
    create_info: &AllocationCreateInfo,
    usage: ResourceUsage,
) -> std::borrow::Cow<'_, AllocationCreateInfo> {
    if create_info.resource_usage == ResourceUsage::Unknown {
        std::borrow::Cow::Owned(AllocationCreateInfo {
            resource_usage: usage,
            ..create_info.clone()
        })
    } else {
        std::borrow::Cow::Borrowed(create_info)
    }
}

/// Allocates memory for a freshly created resource and binds it; on any failure destroys the
/// resource (and frees what was allocated) and returns the error. The one place that
/// creates, allocates, binds and cleans up for [`MemoryAllocator::create_buffer`] and
/// [`MemoryAllocator::create_image`].
///
/// # Safety
///
/// `resource` is a valid, unbound buffer or non-disjoint image of the allocator's device,
/// owned by the caller, and not used by anything else until this returns; `bind_next` is null
/// or a valid `pNext` chain for its bind info (bound through `vkBind*Memory2`).
pub(crate) unsafe fn allocate_and_bind<A: MemoryAllocator + ?Sized>(
    allocator: &A,
    resource: Resource,
    allocation_type: AllocationType,
    create_info: &AllocationCreateInfo,
    bind_next: *const std::ffi::c_void,
) -> Result<MemoryAlloc, AllocationError> {
    let device = allocator.device();
    let result = (|| {
        // SAFETY: the caller's contract: the resource is valid and from this device.
        let (reqs, dedicated_reqs) = unsafe { device.raw_requirements(resource) };
        let requirements = MemoryRequirements::with_hints(reqs, dedicated_reqs)?;
        // SAFETY: the resource is valid and unbound, and this allocation is made for it.
        let dedicated = unsafe {
            match resource {
                Resource::Buffer(b) => DedicatedAllocation::buffer(b),
                Resource::Image(i) => DedicatedAllocation::image(i),
            }
        };
        let alloc =
            allocator.allocate(requirements, allocation_type, create_info, Some(dedicated))?;
        // SAFETY: the allocation was made for this resource's requirements; it is unbound;
        // the chain is valid (the caller's contract).
        unsafe { alloc.bind_resource(resource, alloc.offset(), bind_next) }.map_err(bind_error)?;
        Ok(alloc)
    })();
    if result.is_err() {
        let ash = device.ash();
        // SAFETY: the resource is ours and unused; memory allocated for it (if any) was
        // dropped inside the closure, after which nothing refers to it.
        unsafe {
            match resource {
                Resource::Buffer(b) => ash.destroy_buffer(b, None),
                Resource::Image(i) => ash.destroy_image(i, None),
            }
        }
    }
    result
}

/// The error of a failed bind inside `create_buffer` / `create_image`.
fn bind_error(e: MemoryAccessError) -> AllocationError {
    match e {
        MemoryAccessError::Vulkan(r) => AllocationError::from_vk(r),
        other => AllocationError::Bind(other),
    }
}
