//! Resources that clean up after themselves (`OwnedBuffer`, `OwnedImage`) and
//! `destroy_buffer` / `destroy_image`, on the real driver under the validation layer: the
//! validation layer reports every buffer, image or memory object still alive when the test
//! context destroys the device (`VUID-vkDestroyDevice-device-00378`), which fails the test.

mod common;

use ash::vk;
use ash_memory::*;
use common::{buffer_info, image_info, TestContext};

fn host_info() -> AllocationCreateInfo {
    AllocationCreateInfo {
        usage: MemoryUsage::Auto(HostAccess::Random),
        ..Default::default()
    }
}

#[derive(Debug)]
struct EarlyReturn;

impl From<AllocationError> for EarlyReturn {
    fn from(_: AllocationError) -> Self {
        Self
    }
}

impl From<MemoryAccessError> for EarlyReturn {
    fn from(_: MemoryAccessError) -> Self {
        Self
    }
}

/// A function that creates owned resources and leaves early through `?` (here, a write
/// past the end of a buffer).
fn make_then_fail(allocator: &StandardMemoryAllocator) -> Result<(), EarlyReturn> {
    // SAFETY: valid create infos; nothing is submitted to the device.
    let mut staging = unsafe {
        OwnedBuffer::new(
            allocator,
            &buffer_info(1024, vk::BufferUsageFlags::TRANSFER_SRC),
            &host_info(),
        )?
    };
    // SAFETY: as above.
    let _texture = unsafe {
        OwnedImage::new(
            allocator,
            &image_info(64, vk::Format::R8G8B8A8_UNORM, vk::ImageTiling::OPTIMAL),
            &AllocationCreateInfo::default(),
        )?
    };
    staging.allocation_mut().write_value(0, 1u32)?;
    staging.allocation_mut().write_value(1024, 1u32)?; // out of bounds: returns early
    unreachable!("the write past the end fails");
}

#[test]
fn an_early_return_leaves_nothing_behind() {
    let ctx = TestContext::new();
    let device = ctx.memory_device();
    let allocator = StandardMemoryAllocator::new_default(device.clone());
    assert!(make_then_fail(&allocator).is_err());
    assert_eq!(allocator.statistics().total.allocation_count, 0);
    drop(allocator);
    assert_eq!(device.live_memory_objects(), 0);
    // Dropping `ctx` destroys the device: a buffer, image or memory object left alive would be
    // a validation error there, which fails the test.
}

#[test]
fn owned_resources_expose_their_handles_and_give_them_back() {
    let ctx = TestContext::new();
    let allocator = StandardMemoryAllocator::new_default(ctx.memory_device());
    // SAFETY: a valid create info; the buffer is not used by the device.
    let mut buffer = unsafe {
        OwnedBuffer::new(
            &allocator,
            &buffer_info(256, vk::BufferUsageFlags::TRANSFER_SRC),
            &host_info(),
        )
    }
    .unwrap();
    assert_ne!(buffer.handle(), vk::Buffer::null());
    buffer.allocation_mut().write_slice(0, &[7u16; 8]).unwrap();
    assert_eq!(buffer.allocation().read_value::<u16>(14).unwrap(), 7);
    assert!(format!("{buffer:?}").contains("OwnedBuffer"));
    // Back to raw handles, destroyed by hand with destroy_buffer.
    let (raw, alloc) = buffer.into_raw();
    assert_eq!(allocator.statistics().total.allocation_count, 1);
    // SAFETY: the buffer is ours and unused.
    unsafe { allocator.destroy_buffer(raw, alloc) };
    assert_eq!(allocator.statistics().total.allocation_count, 0);

    // From raw handles into an owned image, dropped.
    // SAFETY: a valid create info.
    let (image, alloc) = unsafe {
        allocator.create_image(
            &image_info(32, vk::Format::R8G8B8A8_UNORM, vk::ImageTiling::OPTIMAL),
            &Default::default(),
        )
    }
    .unwrap();
    // SAFETY: the image is of this device, bound to `alloc`, and ours.
    let owned = unsafe { OwnedImage::from_raw(allocator.device().clone(), image, alloc) };
    assert_eq!(owned.handle(), image);
    assert!(owned.allocation().size() > 0);
    drop(owned);

    // destroy_image, and null handles only free the allocation.
    // SAFETY: a valid create info.
    let (image, alloc) = unsafe {
        allocator.create_image(
            &image_info(16, vk::Format::R8G8B8A8_UNORM, vk::ImageTiling::OPTIMAL),
            &Default::default(),
        )
    }
    .unwrap();
    // SAFETY: ours and unused.
    unsafe { allocator.destroy_image(image, alloc) };
    let layout = DeviceLayout::from_size_alignment(64, 4).unwrap();
    let alloc = allocator
        .allocate_from_type(0, layout, AllocationType::Linear, &Default::default())
        .unwrap();
    // SAFETY: a null buffer is allowed.
    unsafe { allocator.destroy_buffer(vk::Buffer::null(), alloc) };
    let alloc = allocator
        .allocate_from_type(0, layout, AllocationType::Linear, &Default::default())
        .unwrap();
    // SAFETY: a null image is allowed.
    unsafe { allocator.destroy_image(vk::Image::null(), alloc) };
    assert_eq!(allocator.statistics().total.allocation_count, 0);
    drop(allocator);
    assert!(ctx.messages().is_empty(), "{:?}", ctx.messages());
}
