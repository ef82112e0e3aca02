//! [`AllocationDesc`]: one value that describes an allocation for
//! [`MemoryAllocator::allocate_desc`](super::MemoryAllocator::allocate_desc), in the style of gpu-allocator's `AllocationCreateDesc`.
//!
//! [`MemoryAllocator::allocate`](super::MemoryAllocator::allocate) takes the same four things as positional arguments (the
//! trait's required method, which every allocator implements); `allocate_desc` names them at
//! the call site:
//!
//! ```no_run
//! # fn demo(allocator: &ash_memory::StandardMemoryAllocator, buffer: ash::vk::Buffer)
//! #     -> Result<(), Box<dyn std::error::Error>> {
//! use ash_memory::{
//!     AllocationCreateInfo, AllocationDesc, AllocationType, HostAccess, MemoryAllocator,
//!     MemoryRequirements, MemoryUsage, ResourceUsage,
//! };
//! use ash::vk;
//!
//! // SAFETY: `buffer` is a valid buffer of the allocator's device.
//! let requirements = unsafe { MemoryRequirements::for_buffer(allocator.device(), buffer)? };
//! let alloc = allocator.allocate_desc(&AllocationDesc {
//!     allocation_type: AllocationType::Linear, // gpu-allocator's `linear: true`
//!     create_info: AllocationCreateInfo {
//!         usage: MemoryUsage::Auto(HostAccess::SequentialWrite),
//!         resource_usage: ResourceUsage::Buffer(vk::BufferUsageFlags::UNIFORM_BUFFER),
//!         name: Some("uniforms".into()),
//!         ..Default::default()
//!     },
//!     ..AllocationDesc::new(requirements)
//! })?;
//! // SAFETY: the allocation was made for this buffer's requirements; it is unbound.
//! unsafe { alloc.bind_buffer(buffer)? };
//! # Ok(()) }
//! ```
//!
//! # Dedicated allocations
//!
//! Naming the resource in [`dedicated`](AllocationDesc::dedicated) does **not** by itself make
//! the allocation dedicated. The allocation gets a memory object of its own when the driver
//! requires or prefers it (the requirements' flags), when it is large for a block, or when
//! [`MemoryAllocatePreference::AlwaysAllocate`](crate::MemoryAllocatePreference::AlwaysAllocate)
//! asks for it; only then is the named resource passed in `VkMemoryDedicatedAllocateInfo`
//! (always when the driver requires it; otherwise when
//! [`dedicated_allocation`](crate::GenericMemoryAllocatorCreateInfo::dedicated_allocation) is
//! on, the default). To force a dedicated allocation, set `AlwaysAllocate` in the create
//! info.

use super::{AllocationCreateInfo, AllocationRequirements};
use crate::device_memory::DedicatedAllocation;
use crate::suballocator::AllocationType;

/// Everything [`MemoryAllocator::allocate_desc`](super::MemoryAllocator::allocate_desc)
/// needs to know about an allocation (see the [module docs](self)).
///
/// Build it with `..AllocationDesc::new(requirements)`: new fields may be added.
#[derive(Clone, Debug, PartialEq)]
pub struct AllocationDesc {
    /// What the resource needs: size, alignment, allowed memory types, dedicated hints (from
    /// [`AllocationRequirements::for_buffer`] / [`AllocationRequirements::for_image`]). Given to
    /// [`new`](Self::new); it has no default.
    pub requirements: AllocationRequirements,
    /// Whether the resource is linear (buffers, linear images) or not (optimal images), for
    /// buffer-image granularity: gpu-allocator's `linear`. The default value is
    /// [`AllocationType::Unknown`], which is always correct but keeps a granularity page of
    /// distance from every neighbour.
    pub allocation_type: AllocationType,
    /// What the allocation is for: memory usage, dedicated preference, name, priority, user
    /// data, budget. The default value is `AllocationCreateInfo::default()`.
    pub create_info: AllocationCreateInfo,
    /// The resource, for `VkMemoryDedicatedAllocateInfo` if the allocation turns out to be
    /// dedicated ([which naming it alone does not cause](self#dedicated-allocations)). The
    /// default value is `None`.
    pub dedicated: Option<DedicatedAllocation>,
    #[doc(hidden)]
    pub _ne: crate::non_exhaustive::NonExhaustive,
}

impl AllocationDesc {
    /// A description of an allocation for `requirements`, every other field at its default.
    pub fn new(requirements: AllocationRequirements) -> Self {
        Self {
            requirements,
            allocation_type: AllocationType::Unknown,
            create_info: AllocationCreateInfo::default(),
            dedicated: None,
            _ne: crate::non_exhaustive::NonExhaustive(()),
        }
    }
}
