//! Resources that clean up after themselves, and VMA's `destroy_buffer` / `destroy_image`.
//!
//! [`MemoryAllocator::create_buffer`] and [`MemoryAllocator::create_image`] hand back the raw
//! handle and its [`MemoryAlloc`]: the resource must be destroyed before its memory is
//! freed, and both before the `VkDevice` is. Two ways to get that right:
//!
//! - [`MemoryAllocator::destroy_buffer`] / [`MemoryAllocator::destroy_image`] take the pair
//!   and destroy both in the right order (VMA's `vmaDestroyBuffer` / `vmaDestroyImage`);
//! - [`OwnedBuffer`] / [`OwnedImage`] (opt-in) own the pair and do that when dropped, so an
//!   early `?` return or a panic frees them too. The raw handle stays available
//!   ([`OwnedBuffer::handle`]), and [`OwnedBuffer::into_raw`] gives the pair back to manage
//!   by hand.
//!
//! An owned resource keeps the allocator's [`MemoryDevice`] alive (an `Arc`), not the `VkDevice`
//! itself: drop every resource before destroying the `ash::Device`, as for any Vulkan object.
//!
//! ```no_run
//! # fn demo(allocator: &ash_memory::StandardMemoryAllocator) -> Result<(), Box<dyn std::error::Error>> {
//! use ash::vk;
//! use ash_memory::{AllocationCreateInfo, HostAccess, MemoryUsage, OwnedBuffer};
//!
//! let info = vk::BufferCreateInfo::default()
//!     .size(4096)
//!     .usage(vk::BufferUsageFlags::UNIFORM_BUFFER);
//! let alloc_info = AllocationCreateInfo {
//!     usage: MemoryUsage::Auto(HostAccess::SequentialWrite),
//!     ..Default::default()
//! };
//! // SAFETY: a valid create info; the buffer is not in use by the GPU when it drops.
//! let mut uniforms = unsafe { OwnedBuffer::new(allocator, &info, &alloc_info)? };
//! uniforms.allocation_mut().write_value(0, [1.0f32; 4])?; // a `?` here frees it all
//! let raw: vk::Buffer = uniforms.handle(); // for descriptor sets, copies, ...
//! # let _ = raw;
//! # Ok(()) }
//! ```

use super::intent::ResourceUsage;
use super::request::AllocationRequirements;
use super::{AllocationCreateInfo, AllocationError, MemoryAllocator};
use crate::allocation::MemoryAccessError;
use crate::allocation::MemoryAlloc;
use crate::device::MemoryDevice;
use crate::device::Resource;
use crate::device_memory::DedicatedAllocation;
use crate::suballocator::AllocationType;
use ash::vk;
use std::mem::ManuallyDrop;
use std::sync::Arc;

/// Destroys `buffer` (unless null), then frees `allocation`.
///
/// # Safety
///
/// `buffer` is null or a buffer of `device`, not in use by the device, not used afterwards.
pub(crate) unsafe fn destroy_buffer(
    device: &MemoryDevice,
    buffer: vk::Buffer,
    allocation: MemoryAlloc,
) {
    if buffer != vk::Buffer::null() {
        // SAFETY: the caller's contract.
        unsafe { device.ash().destroy_buffer(buffer, None) };
    }
    drop(allocation);
}

/// Destroys `image` (unless null), then frees `allocation`.
///
/// # Safety
///
/// `image` is null or an image of `device`, not in use by the device, not used afterwards.
pub(crate) unsafe fn destroy_image(
    device: &MemoryDevice,
    image: vk::Image,
    allocation: MemoryAlloc,
) {
    if image != vk::Image::null() {
        // SAFETY: the caller's contract.
        unsafe { device.ash().destroy_image(image, None) };
    }
    drop(allocation);
}

macro_rules! owned_resource {
    (
        $(#[$doc:meta])*
        $name:ident, $handle:ty, $info:ty, $create:ident, $destroy:ident, $what:literal
    ) => {
        $(#[$doc])*
        pub struct $name {
            device: Arc<MemoryDevice>,
            handle: $handle,
            allocation: ManuallyDrop<MemoryAlloc>,
        }

        impl $name {
            #[doc = concat!("Creates the ", $what, ", allocates its memory and binds it (see [`MemoryAllocator::", stringify!($create), "`]).")]
            ///
            /// # Safety
            ///
            #[doc = concat!("The create info is valid for the allocator's device (as for [`MemoryAllocator::", stringify!($create), "`]), and the ", $what, " is not in use by the device when this value is dropped.")]
            pub unsafe fn new<A: MemoryAllocator + ?Sized>(
                allocator: &A,
                info: &$info,
                create_info: &AllocationCreateInfo,
            ) -> Result<Self, AllocationError> {
                // SAFETY: the caller's contract.
                let (handle, allocation) = unsafe { allocator.$create(info, create_info)? };
                Ok(Self {
                    device: allocator.device().clone(),
                    handle,
                    allocation: ManuallyDrop::new(allocation),
                })
            }

            #[doc = concat!("Takes ownership of a ", $what, " and the allocation bound to it.")]
            ///
            /// # Safety
            ///
            #[doc = concat!("`handle` is a ", $what, " of `device`, bound to `allocation`, owned by the caller and used by nothing else once dropped; it is not in use by the device when this value is dropped.")]
            pub unsafe fn from_raw(device: Arc<MemoryDevice>, handle: $handle, allocation: MemoryAlloc) -> Self {
                Self {
                    device,
                    handle,
                    allocation: ManuallyDrop::new(allocation),
                }
            }

            #[doc = concat!("The raw ", $what, " handle (still owned by `self`).")]
            pub fn handle(&self) -> $handle {
                self.handle
            }

            /// The memory bound to it.
            pub fn allocation(&self) -> &MemoryAlloc {
                &self.allocation
            }

            /// The memory bound to it, to write or read through its mapping.
            pub fn allocation_mut(&mut self) -> &mut MemoryAlloc {
                &mut self.allocation
            }

            #[doc = concat!("Gives up ownership: the caller destroys the ", $what, " before dropping the allocation (e.g. with [`MemoryAllocator::", stringify!($destroy), "`]).")]
            pub fn into_raw(self) -> ($handle, MemoryAlloc) {
                let mut this = ManuallyDrop::new(self);
                // SAFETY: `this` is never dropped, so the allocation is taken out exactly once,
                // and the device `Arc` is moved out of it once too (then dropped here).
                let (allocation, _device) = unsafe {
                    (
                        ManuallyDrop::take(&mut this.allocation),
                        std::ptr::read(&this.device),
                    )
                };
                (this.handle, allocation)
            }
        }

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($name))
                    .field("handle", &self.handle)
                    .field("allocation", &*self.allocation)
                    .finish()
            }
        }

        impl Drop for $name {
            fn drop(&mut self) {
                // SAFETY: dropped once, here; never used again.
                let allocation = unsafe { ManuallyDrop::take(&mut self.allocation) };
                // SAFETY: the handle is owned, of this device, and (the constructors'
                // contract) not in use by the device any more.
                unsafe { $destroy(&self.device, self.handle, allocation) };
            }
        }
    };
}

owned_resource!(
    /// A buffer and its memory, destroyed in the right order (buffer first) when dropped.
    ///
    /// Opt-in: [`MemoryAllocator::create_buffer`] still returns the raw pair. See the
    /// [module docs](self).
    OwnedBuffer,
    vk::Buffer,
    vk::BufferCreateInfo<'_>,
    create_buffer,
    destroy_buffer,
    "buffer"
);

owned_resource!(
    /// An image and its memory, destroyed in the right order (image first) when dropped.
    ///
    /// Opt-in: [`MemoryAllocator::create_image`] still returns the raw pair. See the
    /// [module docs](self).
    OwnedImage,
    vk::Image,
    vk::ImageCreateInfo<'_>,
    create_image,
    destroy_image,
    "image"
);

/// `create_info` with `usage` as its resource usage, unless it already names one.
pub(crate) fn with_resource_usage(
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
/// owned by the caller, and not used by anything else until this returns; `create_chain` is
/// the `pNext` chain of the create info it was made from (null or valid), and `buffer_usage`
/// a buffer's usage (`None` for an image); `bind_next` is null
/// or a valid `pNext` chain for its bind info (bound through `vkBind*Memory2`).
pub(crate) unsafe fn allocate_and_bind<A: MemoryAllocator + ?Sized>(
    allocator: &A,
    resource: Resource,
    allocation_type: AllocationType,
    create_info: &AllocationCreateInfo,
    create_chain: *const std::ffi::c_void,
    buffer_usage: Option<vk::BufferUsageFlags>,
    bind_next: *const std::ffi::c_void,
) -> Result<MemoryAlloc, AllocationError> {
    let device = allocator.device();
    let result = (|| {
        // SAFETY: the caller's contract: the resource is valid and from this device.
        let (reqs, dedicated_reqs) = unsafe { device.raw_requirements(resource) };
        let requirements = AllocationRequirements::with_hints(reqs, dedicated_reqs)?;
        // SAFETY: the resource is valid and unbound, and this allocation is made for it.
        let dedicated = unsafe {
            match resource {
                Resource::Buffer(b) => DedicatedAllocation::buffer(b),
                Resource::Image(i) => DedicatedAllocation::image(i),
            }
        };
        let alloc =
            allocator.allocate(requirements, allocation_type, create_info, Some(dedicated))?;
        // Exportable memory (the allocator's or a pool's export types) takes only a resource
        // created for one of its handle types (VUID-vkBindBufferMemory-memory-02726).
        let for_image = matches!(resource, Resource::Image(_));
        // SAFETY: the chain is the resource's create info's (the caller's contract).
        unsafe { alloc.check_external(create_chain, for_image) }.map_err(AllocationError::Bind)?;
        if let Some(usage) = buffer_usage {
            alloc
                .check_buffer_usage(usage)
                .map_err(AllocationError::Bind)?;
        }
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
