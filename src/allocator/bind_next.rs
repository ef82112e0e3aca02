//! `create_buffer` / `create_image`, with or without a bind `pNext` chain: the resource is
//! created, allocated for and bound (through `vkBind*Memory2` when there is a chain; see
//! [`crate::aliasing`] for binding by hand), and destroyed again on any failure. The trait's
//! `create_buffer` and `create_image` are these with no chain.

use super::resources::{allocate_and_bind, with_resource_usage};
use super::{AllocationCreateInfo, MemoryAllocator};
use super::{AllocationError, ResourceUsage};
use crate::allocation::{MemoryAccessError, MemoryAlloc};
use crate::device::Resource;
use crate::suballocator::AllocationType;
use ash::vk;
use std::ffi::c_void;

/// Refuses a chain the device cannot take, before anything is created.
fn check_chain<A: MemoryAllocator + ?Sized>(
    allocator: &A,
    next: *const c_void,
) -> Result<(), AllocationError> {
    if !next.is_null() && !allocator.device().has_bind_memory2() {
        return Err(AllocationError::Bind(
            MemoryAccessError::BindMemory2Unavailable,
        ));
    }
    Ok(())
}

/// Refuses a buffer of 0 bytes before the driver sees it (as VMA does): such a create info
/// is invalid, and a driver may still make the resource.
fn refuse_empty_buffer(info: &vk::BufferCreateInfo<'_>) -> Result<(), AllocationError> {
    refuse_empty(info.size == 0)
}

/// Refuses an image with a zero extent, mip count or layer count before the driver sees it
/// (as VMA does): lavapipe makes images of zero height, and the allocator would then bind
/// memory to them.
fn refuse_empty_image(info: &vk::ImageCreateInfo<'_>) -> Result<(), AllocationError> {
    let extent = info.extent;
    refuse_empty(
        extent.width == 0
            || extent.height == 0
            || extent.depth == 0
            || info.mip_levels == 0
            || info.array_layers == 0,
    )
}

/// Refuses a sparse buffer before the driver sees it: `vkBindBufferMemory` cannot bind it.
fn refuse_sparse_buffer(info: &vk::BufferCreateInfo<'_>) -> Result<(), AllocationError> {
    let sparse = vk::BufferCreateFlags::SPARSE_BINDING
        | vk::BufferCreateFlags::SPARSE_RESIDENCY
        | vk::BufferCreateFlags::SPARSE_ALIASED;
    refuse_unbindable(info.flags.intersects(sparse), "sparse")
}

/// Refuses a sparse image before the driver sees it, like
/// [`refuse_disjoint_image`] for a disjoint one.
fn refuse_sparse_image(info: &vk::ImageCreateFlags) -> Result<(), AllocationError> {
    let sparse = vk::ImageCreateFlags::SPARSE_BINDING
        | vk::ImageCreateFlags::SPARSE_RESIDENCY
        | vk::ImageCreateFlags::SPARSE_ALIASED;
    refuse_unbindable(info.intersects(sparse), "sparse")
}

/// Refuses a `DISJOINT` image before the driver sees it: its planes have requirements and
/// binds of their own (and its requirements query needs a plane aspect).
fn refuse_disjoint_image(info: &vk::ImageCreateInfo<'_>) -> Result<(), AllocationError> {
    refuse_unbindable(
        info.flags.contains(vk::ImageCreateFlags::DISJOINT),
        "DISJOINT",
    )
}

fn refuse_unbindable(refused: bool, what: &'static str) -> Result<(), AllocationError> {
    if refused {
        return Err(AllocationError::Bind(MemoryAccessError::NotBindableWhole(
            what,
        )));
    }
    Ok(())
}

/// Refuses `CONCURRENT` sharing that Vulkan forbids before the driver sees it: fewer than
/// two queue families, no index array, an index of no queue family of the device, or one
/// twice (VUID-VkBufferCreateInfo-sharingMode-00913, -00914 and -01419, and the image ones).
///
/// # Safety
///
/// With `CONCURRENT` sharing and `count` of at least 2, `indices` is null or points to
/// `count` readable `u32`s (the create info's own array).
unsafe fn refuse_bad_sharing(
    device: &crate::device::MemoryDevice,
    mode: vk::SharingMode,
    count: u32,
    indices: *const u32,
) -> Result<(), AllocationError> {
    if mode != vk::SharingMode::CONCURRENT {
        return Ok(());
    }
    let invalid = AllocationError::InvalidCreateInfo;
    if count < 2 {
        return Err(invalid(
            "CONCURRENT sharing needs at least two queue families",
        ));
    }
    if indices.is_null() {
        return Err(invalid("CONCURRENT sharing without queue family indices"));
    }
    // SAFETY: the caller's contract: `count` indices at `indices`.
    let indices = unsafe { std::slice::from_raw_parts(indices, count as usize) };
    // SAFETY: a plain query of the allocator's physical device.
    let families = unsafe {
        device
            .instance()
            .get_physical_device_queue_family_properties(device.physical_device())
    }
    .len();
    if indices.iter().any(|&i| i as usize >= families) {
        return Err(invalid(
            "a CONCURRENT queue family index names no queue family of the device",
        ));
    }
    if indices
        .iter()
        .enumerate()
        .any(|(n, i)| indices[..n].contains(i))
    {
        return Err(invalid("a CONCURRENT queue family index is given twice"));
    }
    Ok(())
}

/// The checks of a buffer create info that hold for its requirements too: not empty, and
/// valid `CONCURRENT` sharing.
///
/// # Safety
///
/// `info`'s queue family index array is valid (its count of readable `u32`s, or null).
pub(super) unsafe fn check_buffer_info(
    device: &crate::device::MemoryDevice,
    info: &vk::BufferCreateInfo<'_>,
) -> Result<(), AllocationError> {
    refuse_empty_buffer(info)?;
    // SAFETY: the caller's contract.
    unsafe {
        refuse_bad_sharing(
            device,
            info.sharing_mode,
            info.queue_family_index_count,
            info.p_queue_family_indices,
        )
    }
}

/// The checks of an image create info that hold for its requirements too: not empty, not
/// `DISJOINT`, and valid `CONCURRENT` sharing.
///
/// # Safety
///
/// As [`check_buffer_info`].
pub(super) unsafe fn check_image_info(
    device: &crate::device::MemoryDevice,
    info: &vk::ImageCreateInfo<'_>,
) -> Result<(), AllocationError> {
    refuse_empty_image(info)?;
    refuse_disjoint_image(info)?;
    // SAFETY: the caller's contract.
    unsafe {
        refuse_bad_sharing(
            device,
            info.sharing_mode,
            info.queue_family_index_count,
            info.p_queue_family_indices,
        )
    }
}

fn refuse_empty(empty: bool) -> Result<(), AllocationError> {
    if empty {
        return Err(AllocationError::Layout(
            crate::layout::LayoutError::ZeroSize,
        ));
    }
    Ok(())
}

/// See [`MemoryAllocator::create_buffer_with_bind_next`].
///
/// # Safety
///
/// `buffer_info` is valid for the allocator's device; `next` is null or a valid chain for
/// `VkBindBufferMemoryInfo`.
pub(super) unsafe fn create_buffer<A: MemoryAllocator + ?Sized>(
    allocator: &A,
    buffer_info: &vk::BufferCreateInfo<'_>,
    create_info: &AllocationCreateInfo,
    next: *const c_void,
) -> Result<(vk::Buffer, MemoryAlloc), AllocationError> {
    // SAFETY: the create info's own index array (the caller's contract).
    unsafe { check_buffer_info(allocator.device(), buffer_info) }?;
    refuse_sparse_buffer(buffer_info)?;
    check_chain(allocator, next)?;
    let ash = allocator.device().ash();
    // SAFETY: the caller guarantees `buffer_info` is valid for this device.
    let buffer =
        unsafe { ash.create_buffer(buffer_info, None) }.map_err(AllocationError::from_vk)?;
    let create_info = with_resource_usage(
        create_info,
        ResourceUsage::Buffer(crate::device_requirements::buffer_usage(buffer_info)),
    );
    // SAFETY: `buffer` was just created from this device and is unbound; the chain is the
    // caller's.
    unsafe {
        allocate_and_bind(
            allocator,
            Resource::Buffer(buffer),
            AllocationType::Linear,
            &create_info,
            buffer_info.p_next,
            Some(crate::device_requirements::buffer_usage(buffer_info)),
            next,
        )
    }
    .map(|alloc| (buffer, alloc))
}

/// See [`MemoryAllocator::create_image_with_bind_next`].
///
/// # Safety
///
/// `image_info` is valid for the allocator's device and not `DISJOINT`; `next` is null or a
/// valid chain for `VkBindImageMemoryInfo`.
pub(super) unsafe fn create_image<A: MemoryAllocator + ?Sized>(
    allocator: &A,
    image_info: &vk::ImageCreateInfo<'_>,
    create_info: &AllocationCreateInfo,
    next: *const c_void,
) -> Result<(vk::Image, MemoryAlloc), AllocationError> {
    // SAFETY: the create info's own index array (the caller's contract).
    unsafe { check_image_info(allocator.device(), image_info) }?;
    refuse_sparse_image(&image_info.flags)?;
    check_chain(allocator, next)?;
    let ash = allocator.device().ash();
    let allocation_type = if image_info.tiling == vk::ImageTiling::LINEAR {
        AllocationType::Linear
    } else {
        AllocationType::NonLinear
    };
    // SAFETY: the caller guarantees `image_info` is valid for this device.
    let image = unsafe { ash.create_image(image_info, None) }.map_err(AllocationError::from_vk)?;
    let create_info = with_resource_usage(create_info, ResourceUsage::Image(image_info.usage));
    // SAFETY: `image` was just created from this device, is unbound and not disjoint; the
    // chain is the caller's.
    unsafe {
        allocate_and_bind(
            allocator,
            Resource::Image(image),
            allocation_type,
            &create_info,
            image_info.p_next,
            None,
            next,
        )
    }
    .map(|alloc| (image, alloc))
}
