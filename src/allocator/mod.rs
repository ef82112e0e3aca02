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
//! type, [`MemoryAllocatePreference`] governs dedicated allocations, and an optional name shows
//! up in leak reports.
//!
//! # Dedicated allocations
//!
//! Most allocations are ranges of a shared block. An allocation gets a memory object of its
//! own when the driver requires it, when the driver prefers it or the request is larger than
//! half a block (unless the device is close to its `maxMemoryAllocationCount`), or when the
//! preference is [`AlwaysAllocate`](MemoryAllocatePreference::AlwaysAllocate). Such
//! allocations carry `VkMemoryDedicatedAllocateInfo` when the resource is known.
//!
//! # Threads
//!
//! An allocator is `Send + Sync` and meant to be shared: allocating and freeing take `&self`.
//! Threads that allocate at the same time would queue on a block's lock, so each block is
//! cut into a few arenas (up to
//! [`block_arenas`](GenericMemoryAllocatorCreateInfo::block_arenas), by default one per CPU,
//! at most four, none smaller than 16 MiB) with a lock each. A thread tries its own arena of
//! every block first and the others before a new block is made: threads share the blocks,
//! and no memory is set aside per thread.
//!
//! # Running out
//!
//! When `vkAllocateMemory` fails for a new block, the allocator retries with half, a quarter
//! and an eighth of the block size (as long as the request still fits), then tries a dedicated
//! allocation, then the next-best memory type that the requirements allow. Only when all of
//! that fails is an error returned, and it says what failed.

mod block_list;
mod config;
pub(crate) mod dedicated;
mod error;
mod generic;
pub mod memory_type;
mod pool;
mod type_cache;

pub use self::error::{AllocationError, MemoryAccessError};
pub use self::generic::{
    BlockSizeThresholds, GenericMemoryAllocator, GenericMemoryAllocatorCreateInfo,
    StandardMemoryAllocator, MAX_AUTO_BLOCK_ARENAS, MAX_BLOCK_ARENAS,
};
pub use self::memory_type::{MemoryProperties, MemoryTypeFilter, MemoryUsage};
use crate::allocation::MemoryAlloc;
use crate::device::{Device, Resource};
use crate::device_memory::DedicatedAllocation;
use crate::layout::{DeviceLayout, DeviceSize};
use crate::stats::{AllocatorStatistics, MemorySnapshot};
use crate::suballocator::AllocationType;
use ash::vk;
use std::sync::Arc;

/// Whether an allocation may, must or must not get a memory object of its own.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MemoryAllocatePreference {
    /// The allocator decides (see the [module docs](self#dedicated-allocations)). The default.
    #[default]
    Unknown,
    /// Never call `vkAllocateMemory`: use existing blocks only, fail otherwise.
    NeverAllocate,
    /// Always make a dedicated allocation.
    AlwaysAllocate,
}

/// What the user intends with an allocation.
#[derive(Clone, Debug, PartialEq)]
pub struct AllocationCreateInfo {
    /// Which kind of memory type to choose. The default value is [`MemoryUsage::DeviceOnly`].
    pub usage: MemoryUsage,
    /// Dedicated-allocation policy. The default value is
    /// [`MemoryAllocatePreference::Unknown`].
    pub allocate_preference: MemoryAllocatePreference,
    /// A name for statistics and leak reports. The default value is `None`.
    pub name: Option<Arc<str>>,
    /// Priority of a dedicated allocation's memory, 0.0 ..= 1.0, passed to
    /// `VK_EXT_memory_priority` when it is enabled. The default value is `None` (the
    /// allocator's pool priority).
    pub priority: Option<f32>,
    /// Refuse to allocate a new memory object that would take its heap past the heap's budget
    /// (VMA's `WITHIN_BUDGET`). The default value is `false`.
    pub within_budget: bool,
}

impl Default for AllocationCreateInfo {
    fn default() -> Self {
        Self {
            usage: MemoryUsage::DeviceOnly,
            allocate_preference: MemoryAllocatePreference::Unknown,
            name: None,
            priority: None,
            within_budget: false,
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

    /// Statistics of the allocator's memory (see [`stats`](crate::stats)). The default
    /// computes them from [`snapshot`](Self::snapshot).
    fn statistics(&self) -> AllocatorStatistics {
        self.snapshot().statistics
    }

    /// The full state of the allocator's memory (see [`stats`](crate::stats)). The default,
    /// for allocators that do not track their memory, lists the device's heaps (with their
    /// budgets) and memory types, and no memory objects.
    fn snapshot(&self) -> MemorySnapshot {
        MemorySnapshot::new(
            generic::observe::heap_entries(self.device()),
            generic::observe::memory_type_entries(self.device()),
            Vec::new(),
        )
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
        let device = self.device();
        let ash = device.ash();
        // SAFETY: the caller guarantees `buffer_info` is valid for this device.
        let buffer =
            unsafe { ash.create_buffer(buffer_info, None) }.map_err(AllocationError::from_vk)?;
        let result = (|| {
            // SAFETY: `buffer` was just created from this device.
            let requirements = unsafe { MemoryRequirements::for_buffer(device, buffer) }?;
            // SAFETY: `buffer` is valid, unbound, and this allocation is made for it.
            let dedicated = unsafe { DedicatedAllocation::buffer(buffer) };
            let alloc = self.allocate(
                requirements,
                AllocationType::Linear,
                create_info,
                Some(dedicated),
            )?;
            // SAFETY: the allocation was made for this buffer's requirements; it is unbound.
            unsafe { alloc.bind_buffer(buffer) }.map_err(bind_error)?;
            Ok(alloc)
        })();
        match result {
            Ok(alloc) => Ok((buffer, alloc)),
            Err(e) => {
                // SAFETY: the buffer is ours, unused, and destroyed before its memory (if any)
                // is dropped at the end of the closure above.
                unsafe { ash.destroy_buffer(buffer, None) };
                Err(e)
            }
        }
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
        let device = self.device();
        let ash = device.ash();
        let allocation_type = if image_info.tiling == vk::ImageTiling::LINEAR {
            AllocationType::Linear
        } else {
            AllocationType::NonLinear
        };
        // SAFETY: the caller guarantees `image_info` is valid for this device.
        let image =
            unsafe { ash.create_image(image_info, None) }.map_err(AllocationError::from_vk)?;
        let result = (|| {
            // SAFETY: `image` was just created from this device and is not disjoint.
            let requirements = unsafe { MemoryRequirements::for_image(device, image) }?;
            // SAFETY: `image` is valid, unbound, and this allocation is made for it.
            let dedicated = unsafe { DedicatedAllocation::image(image) };
            let alloc =
                self.allocate(requirements, allocation_type, create_info, Some(dedicated))?;
            // SAFETY: the allocation was made for this image's requirements; it is unbound.
            unsafe { alloc.bind_image(image) }.map_err(bind_error)?;
            Ok(alloc)
        })();
        match result {
            Ok(alloc) => Ok((image, alloc)),
            Err(e) => {
                // SAFETY: the image is ours and unused.
                unsafe { ash.destroy_image(image, None) };
                Err(e)
            }
        }
    }
}

/// The error of a failed bind inside `create_buffer` / `create_image`.
fn bind_error(e: MemoryAccessError) -> AllocationError {
    match e {
        MemoryAccessError::Vulkan(r) => AllocationError::from_vk(r),
        // Binding only fails in Vulkan; keep the message if that ever changes.
        other => AllocationError::InvalidConfiguration(other.to_string()),
    }
}
