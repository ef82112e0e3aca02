//! Requirements, memory types and allocations for a create info, with no resource made yet
//! (see [`crate::device_requirements`]'s entry points: Vulkan 1.3 or `VK_KHR_maintenance4`).

use super::{
    resources::with_resource_usage, AllocationCreateInfo, AllocationError, AllocationRequirements,
    GenericMemoryAllocator, MemoryAllocator, ResourceUsage,
};
use crate::allocation::MemoryAlloc;
use crate::device::MemoryDevice;
use crate::device_requirements::{buffer_usage, CreateInfo};
use crate::suballocator::{AllocationType, Suballocator};
use ash::vk;

impl AllocationRequirements {
    /// The requirements of a buffer made from `info`, without making it
    /// (`vkGetDeviceBufferMemoryRequirements`), with the dedicated-allocation hints. Needs
    /// [`EnabledMemoryFeatures::maintenance4`](crate::EnabledMemoryFeatures::maintenance4)
    /// (implied by Vulkan 1.3), else [`AllocationError::FeatureNotEnabled`].
    ///
    /// # Safety
    ///
    /// `info` is a valid `VkBufferCreateInfo` for `device`.
    pub unsafe fn for_buffer_info(
        device: &MemoryDevice,
        info: &vk::BufferCreateInfo<'_>,
    ) -> Result<Self, AllocationError> {
        // SAFETY: the caller's contract.
        unsafe { of_info(device, CreateInfo::Buffer(info)) }
    }

    /// The requirements of an image made from `info`, like
    /// [`for_buffer_info`](Self::for_buffer_info) (`vkGetDeviceImageMemoryRequirements`).
    ///
    /// # Safety
    ///
    /// `info` is a valid `VkImageCreateInfo` for `device`, without the `DISJOINT` flag.
    pub unsafe fn for_image_info(
        device: &MemoryDevice,
        info: &vk::ImageCreateInfo<'_>,
    ) -> Result<Self, AllocationError> {
        // SAFETY: the caller's contract.
        unsafe { of_info(device, CreateInfo::Image(info)) }
    }
}

/// # Safety
///
/// `info` is valid for `device` (an image one not disjoint).
unsafe fn of_info(
    device: &MemoryDevice,
    info: CreateInfo<'_>,
) -> Result<AllocationRequirements, AllocationError> {
    match info {
        // SAFETY: the create info's own index array (the caller's contract).
        CreateInfo::Buffer(b) => unsafe { super::bind_next::check_buffer_info(device, b) }?,
        // SAFETY: as above.
        CreateInfo::Image(i) => unsafe { super::bind_next::check_image_info(device, i) }?,
    }
    if !device.has_device_requirements() {
        return Err(AllocationError::FeatureNotEnabled(
            "VK_KHR_maintenance4 or Vulkan 1.3",
        ));
    }
    // SAFETY: the feature is there (checked); the caller's contract.
    let (reqs, hints) = unsafe { device.requirements_of_info(info) };
    AllocationRequirements::with_hints(reqs, hints)
}

/// The resource usage and allocation type of a create info.
fn kind_of(info: CreateInfo<'_>) -> (ResourceUsage, AllocationType) {
    match info {
        CreateInfo::Buffer(b) => (
            ResourceUsage::Buffer(buffer_usage(b)),
            AllocationType::Linear,
        ),
        CreateInfo::Image(i) => (
            ResourceUsage::Image(i.usage),
            if i.tiling == vk::ImageTiling::LINEAR {
                AllocationType::Linear
            } else {
                AllocationType::NonLinear
            },
        ),
    }
}

/// Allocates for the resource `info` would make, without making it.
///
/// # Safety
///
/// `info` is valid for the allocator's device (an image one not disjoint).
pub(super) unsafe fn allocate_for_info<A: MemoryAllocator + ?Sized>(
    allocator: &A,
    info: CreateInfo<'_>,
    create_info: &AllocationCreateInfo,
) -> Result<MemoryAlloc, AllocationError> {
    // SAFETY: the caller's contract.
    let requirements = unsafe { of_info(allocator.device(), info) }?;
    if requirements.requires_dedicated_allocation {
        // Only an allocation dedicated to the resource itself would do.
        return Err(AllocationError::DedicatedAllocationRequired);
    }
    let (usage, allocation_type) = kind_of(info);
    let create_info = with_resource_usage(create_info, usage);
    let alloc = allocator.allocate(requirements, allocation_type, &create_info, None)?;
    // The buffer will be bound to this memory: refuse memory it cannot be bound to (the
    // allocation is freed again).
    if let CreateInfo::Buffer(b) = info {
        alloc
            .check_buffer_usage(buffer_usage(b))
            .map_err(AllocationError::Bind)?;
    }
    Ok(alloc)
}

impl<S: Suballocator + Send + 'static> GenericMemoryAllocator<S> {
    /// The memory type an allocation for a buffer made from `info` would use (VMA's
    /// `vmaFindMemoryTypeIndexForBufferInfo`): the buffer's requirements from the create
    /// info (see [`AllocationRequirements::for_buffer_info`]) and `create_info`'s usage, with
    /// the buffer's usage flags (those of a `VkBufferUsageFlags2CreateInfoKHR` in the chain
    /// when there is one) as the resource usage when it is left `Unknown`.
    ///
    /// # Safety
    ///
    /// `info` is a valid `VkBufferCreateInfo` for the allocator's device.
    pub unsafe fn find_memory_type_index_for_buffer_info(
        &self,
        info: &vk::BufferCreateInfo<'_>,
        create_info: &AllocationCreateInfo,
    ) -> Result<u32, AllocationError> {
        // SAFETY: the caller's contract.
        unsafe { self.type_for_info(CreateInfo::Buffer(info), create_info) }
    }

    /// The memory type for an image made from `info`, like
    /// [`find_memory_type_index_for_buffer_info`](Self::find_memory_type_index_for_buffer_info)
    /// (VMA's `vmaFindMemoryTypeIndexForImageInfo`).
    ///
    /// # Safety
    ///
    /// `info` is a valid `VkImageCreateInfo` for the allocator's device, not `DISJOINT`.
    pub unsafe fn find_memory_type_index_for_image_info(
        &self,
        info: &vk::ImageCreateInfo<'_>,
        create_info: &AllocationCreateInfo,
    ) -> Result<u32, AllocationError> {
        // SAFETY: the caller's contract.
        unsafe { self.type_for_info(CreateInfo::Image(info), create_info) }
    }

    /// # Safety
    ///
    /// `info` is valid for the device (an image one not disjoint).
    unsafe fn type_for_info(
        &self,
        info: CreateInfo<'_>,
        create_info: &AllocationCreateInfo,
    ) -> Result<u32, AllocationError> {
        // SAFETY: the caller's contract.
        let requirements = unsafe { of_info(self.device(), info) }?;
        let (usage, _) = kind_of(info);
        let create_info = with_resource_usage(create_info, usage);
        self.type_for(requirements.memory_type_bits, &create_info)
            .ok_or(AllocationError::NoSuitableMemoryType {
                bits: requirements.memory_type_bits,
                required: self.required_flags(&create_info),
            })
    }
}
