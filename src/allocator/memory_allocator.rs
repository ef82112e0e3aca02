//! The [`MemoryAllocator`] trait: what every allocator of this crate offers.

use super::desc::AllocationDesc;
use super::error::AllocationError;
use super::memory_type::MemoryTypeFilter;
use super::request::{AllocationCreateInfo, AllocationRequirements};
use super::{bind_next, pages, requirements, resources};
use crate::allocation::MemoryAlloc;
use crate::device::MemoryDevice;
use crate::device_memory::DedicatedAllocation;
use crate::layout::{DeviceLayout, DeviceSize};
use crate::stats::{AllocatorStatistics, MemorySnapshot};
use crate::suballocator::AllocationType;
use ash::vk;
use std::sync::Arc;

/// An allocator of device memory.
///
/// Implementations are shared between threads (`&self` everywhere) and hand out
/// [`MemoryAlloc`]s that give their memory back when dropped.
pub trait MemoryAllocator: Send + Sync {
    /// The device the allocator works for.
    fn device(&self) -> &Arc<MemoryDevice>;

    /// The best memory type among `memory_type_bits` for `filter`, or `None`.
    fn find_memory_type_index(
        &self,
        memory_type_bits: u32,
        filter: MemoryTypeFilter,
    ) -> Option<u32>;

    /// Allocates from one given memory type: suballocated, or dedicated when the preference
    /// says [`AlwaysAllocate`](super::MemoryAllocatePreference::AlwaysAllocate) or the layout is too
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
    /// [module docs](super#where-an-allocation-goes).
    ///
    /// The trait's required method, which allocators implement; at call sites,
    /// [`allocate_desc`](Self::allocate_desc) names the same four arguments. `dedicated`
    /// alone does not make the allocation dedicated ([see
    /// why](super::desc#dedicated-allocations)).
    fn allocate(
        &self,
        requirements: AllocationRequirements,
        allocation_type: AllocationType,
        create_info: &AllocationCreateInfo,
        dedicated: Option<DedicatedAllocation>,
    ) -> Result<MemoryAlloc, AllocationError>;

    /// Allocates memory as `desc` describes it: [`allocate`](Self::allocate) with named
    /// arguments, in the style of gpu-allocator's `AllocationCreateDesc` (see
    /// [`AllocationDesc`]).
    fn allocate_desc(&self, desc: &AllocationDesc) -> Result<MemoryAlloc, AllocationError> {
        self.allocate(
            desc.requirements,
            desc.allocation_type,
            &desc.create_info,
            desc.dedicated,
        )
    }

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
    /// without a dedicated resource. Pages that add up to more than the heaps of the allowed
    /// memory types fail with [`OutOfDeviceMemory`](AllocationError::OutOfDeviceMemory)
    /// before the first one is made.
    ///
    /// For the pages of a sparse resource (created with `SPARSE_BINDING`): each
    /// `VkSparseMemoryBind` (or `VkSparseImageMemoryBind`) of `vkQueueBindSparse` names one
    /// page's [`memory`](MemoryAlloc::memory) and [`offset`](MemoryAlloc::offset). Take the
    /// page layout from the resource's requirements (its alignment is the sparse page size;
    /// `vkGetImageSparseMemoryRequirements` for images), and keep the pages alive until the
    /// resource is destroyed or the pages are unbound.
    fn allocate_pages(
        &self,
        requirements: AllocationRequirements,
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
    /// the allocation, or without using it afterwards). A size of 0 is refused with
    /// [`LayoutError::ZeroSize`](crate::LayoutError::ZeroSize) before the driver sees it, as
    /// is an image with a zero extent, mip count or layer count in
    /// [`create_image`](Self::create_image). Memory exportable as external handle types
    /// (the allocator's or a pool's export types) takes only a resource created for one of
    /// them (`VkExternalMemoryBufferCreateInfo` / `VkExternalMemoryImageCreateInfo`): any other
    /// is destroyed again and refused with
    /// [`MemoryAccessError::NotCreatedForExternalMemory`](crate::MemoryAccessError::NotCreatedForExternalMemory)
    /// (in [`AllocationError::Bind`]); so is a `SHADER_DEVICE_ADDRESS` buffer for memory
    /// allocated without device addresses
    /// ([`NoDeviceAddressMemory`](crate::MemoryAccessError::NoDeviceAddressMemory)). Sparse
    /// resources and `DISJOINT` images cannot be bound whole: they are refused with
    /// [`NotBindableWhole`](crate::MemoryAccessError::NotBindableWhole) before anything is
    /// created, as is `CONCURRENT` sharing without two distinct queue families of the device
    /// ([`AllocationError::InvalidCreateInfo`]).
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
        // SAFETY: the caller's contract; no bind chain.
        unsafe { bind_next::create_buffer(self, buffer_info, create_info, std::ptr::null()) }
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
        // SAFETY: the caller's contract; no bind chain.
        unsafe { bind_next::create_image(self, image_info, create_info, std::ptr::null()) }
    }

    /// Allocates memory for a buffer that `buffer_info` would make, without making it
    /// (requirements from [`AllocationRequirements::for_buffer_info`]; Vulkan 1.3 or
    /// `VK_KHR_maintenance4`): create the buffer later and bind it with
    /// [`MemoryAlloc::bind_buffer_at`]. The buffer's usage (of a
    /// `VkBufferUsageFlags2CreateInfoKHR` in the chain when there is one) is the resource
    /// usage when `create_info` leaves it `Unknown`. A buffer the driver says requires a
    /// dedicated allocation is refused with
    /// [`DedicatedAllocationRequired`](AllocationError::DedicatedAllocationRequired) (only
    /// memory dedicated to the buffer itself would do), and a `SHADER_DEVICE_ADDRESS` buffer
    /// with memory allocated without device addresses (the `device_address` setting off, on a
    /// device with `bufferDeviceAddress`) with
    /// [`Bind`](AllocationError::Bind)`(`[`NoDeviceAddressMemory`](crate::MemoryAccessError::NoDeviceAddressMemory)`)`.
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

    /// Destroys `buffer`, then frees `allocation` (VMA's `vmaDestroyBuffer`): the order
    /// Vulkan needs. A null `buffer` only frees the allocation. See also [`OwnedBuffer`](super::OwnedBuffer).
    ///
    /// # Safety
    ///
    /// `buffer` is null or a buffer of this allocator's device that the device no longer
    /// uses, and is not used afterwards.
    unsafe fn destroy_buffer(&self, buffer: vk::Buffer, allocation: MemoryAlloc) {
        // SAFETY: the caller's contract.
        unsafe { resources::destroy_buffer(self.device(), buffer, allocation) }
    }

    /// Destroys `image`, then frees `allocation` (VMA's `vmaDestroyImage`). A null `image`
    /// only frees the allocation. See also [`OwnedImage`](super::OwnedImage).
    ///
    /// # Safety
    ///
    /// As for [`destroy_buffer`](Self::destroy_buffer), for an image.
    unsafe fn destroy_image(&self, image: vk::Image, allocation: MemoryAlloc) {
        // SAFETY: the caller's contract.
        unsafe { resources::destroy_image(self.device(), image, allocation) }
    }
}
