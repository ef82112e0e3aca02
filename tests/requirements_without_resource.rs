//! Memory requirements of a create info, with no resource made: with Vulkan 1.3 (core) and
//! with `VK_KHR_maintenance4` on a 1.2 instance, the requirements equal those of the real
//! resource, the memory type found is the one `create_buffer` / `create_image` use, and
//! memory allocated ahead of the resource takes it (validation clean, data round-trip).
//! Without either, a clear error.

mod common;

use ash::vk;
use ash_memory::*;
use common::{buffer_info, image_info, TestContext};
use std::sync::Arc;

fn device(ctx: &TestContext, api_version: u32, maintenance4: bool) -> Arc<MemoryDevice> {
    // SAFETY: the context's handles, which outlive the allocator; the instance was made for
    // at least `api_version`; `maintenance4` is claimed only when enabled or core.
    unsafe {
        MemoryDevice::new(
            &ctx.entry,
            &ctx.instance,
            ctx.physical_device,
            ctx.device.clone(),
            api_version,
            EnabledMemoryFeatures {
                maintenance4,
                ..Default::default()
            },
        )
    }
    .unwrap()
}

fn buffers() -> Vec<vk::BufferCreateInfo<'static>> {
    use vk::BufferUsageFlags as U;
    vec![
        buffer_info(1, U::UNIFORM_BUFFER),
        buffer_info(1000, U::STORAGE_BUFFER | U::TRANSFER_DST),
        buffer_info(65536, U::VERTEX_BUFFER | U::INDEX_BUFFER),
        buffer_info(3 << 20, U::TRANSFER_SRC | U::TRANSFER_DST),
    ]
}

fn images() -> Vec<vk::ImageCreateInfo<'static>> {
    vec![
        image_info(16, vk::Format::R8G8B8A8_UNORM, vk::ImageTiling::OPTIMAL),
        image_info(
            100,
            vk::Format::R32G32B32A32_SFLOAT,
            vk::ImageTiling::OPTIMAL,
        ),
        image_info(64, vk::Format::R8G8B8A8_UNORM, vk::ImageTiling::LINEAR),
    ]
}

fn check_against_real_resources(ctx: &TestContext, device: &Arc<MemoryDevice>) {
    let d = &ctx.device;
    let allocator = StandardMemoryAllocator::new_default(device.clone());
    let usages = [
        MemoryUsage::DeviceOnly,
        MemoryUsage::Auto(HostAccess::SequentialWrite),
        MemoryUsage::Auto(HostAccess::Random),
    ];
    for info in buffers() {
        // SAFETY: valid create infos.
        let from_info = unsafe { AllocationRequirements::for_buffer_info(device, &info) }.unwrap();
        // SAFETY: as above; destroyed below.
        let buffer = unsafe { d.create_buffer(&info, None) }.unwrap();
        // SAFETY: a valid buffer.
        let real = unsafe { AllocationRequirements::for_buffer(device, buffer) }.unwrap();
        assert_eq!(from_info, real, "{info:?}");
        // SAFETY: valid; destroyed below.
        unsafe { d.destroy_buffer(buffer, None) };
        for usage in usages {
            let create_info = AllocationCreateInfo {
                usage,
                ..Default::default()
            };
            // SAFETY: a valid create info.
            let found =
                unsafe { allocator.find_memory_type_index_for_buffer_info(&info, &create_info) }
                    .unwrap();
            // SAFETY: as above.
            let (buffer, alloc) = unsafe { allocator.create_buffer(&info, &create_info) }.unwrap();
            assert_eq!(found, alloc.memory_type_index(), "{usage:?} {info:?}");
            // SAFETY: unused.
            unsafe { d.destroy_buffer(buffer, None) };
        }
    }
    for info in images() {
        // SAFETY: valid create infos.
        let from_info = unsafe { AllocationRequirements::for_image_info(device, &info) }.unwrap();
        // SAFETY: as above.
        let image = unsafe { d.create_image(&info, None) }.unwrap();
        // SAFETY: a valid image.
        let real = unsafe { AllocationRequirements::for_image(device, image) }.unwrap();
        assert_eq!(from_info, real, "{info:?}");
        // SAFETY: unused.
        unsafe { d.destroy_image(image, None) };
        let create_info = AllocationCreateInfo::default();
        // SAFETY: a valid create info.
        let found = unsafe { allocator.find_memory_type_index_for_image_info(&info, &create_info) }
            .unwrap();
        // SAFETY: as above.
        let (image, alloc) = unsafe { allocator.create_image(&info, &create_info) }.unwrap();
        assert_eq!(found, alloc.memory_type_index());
        // SAFETY: unused.
        unsafe { d.destroy_image(image, None) };
    }

    // Allocate first, make the resources later.
    let info = buffer_info(
        4096,
        vk::BufferUsageFlags::TRANSFER_SRC | vk::BufferUsageFlags::TRANSFER_DST,
    );
    let host = AllocationCreateInfo {
        usage: MemoryUsage::Auto(HostAccess::Random),
        ..Default::default()
    };
    // SAFETY: a valid create info.
    let mut src_alloc = unsafe { allocator.allocate_for_buffer_info(&info, &host) }.unwrap();
    // SAFETY: as above.
    let dst_alloc = unsafe { allocator.allocate_for_buffer_info(&info, &host) }.unwrap();
    assert_eq!(src_alloc.allocation_type(), AllocationType::Linear);
    let data: Vec<u8> = (0..4096u32).map(|i| (i * 13) as u8).collect();
    src_alloc.write(0, &data).unwrap();
    // SAFETY: valid create infos; bound before use, destroyed before their memory.
    let (src, dst) = unsafe {
        (
            src_alloc.create_aliasing_buffer(&info, 0).unwrap(),
            dst_alloc.create_aliasing_buffer(&info, 0).unwrap(),
        )
    };
    ctx.submit(|d, cmd| {
        let region = vk::BufferCopy {
            src_offset: 0,
            dst_offset: 0,
            size: 4096,
        };
        // SAFETY: recording; both buffers are bound.
        unsafe { d.cmd_copy_buffer(cmd, src, dst, &[region]) };
        TestContext::transfer_barrier(d, cmd);
    });
    let mut read = vec![0; 4096];
    dst_alloc.read(0, &mut read).unwrap();
    assert!(read == data);
    let image = image_info(32, vk::Format::R8G8B8A8_UNORM, vk::ImageTiling::OPTIMAL);
    // SAFETY: a valid create info.
    let image_alloc =
        unsafe { allocator.allocate_for_image_info(&image, &Default::default()) }.unwrap();
    assert_eq!(image_alloc.allocation_type(), AllocationType::NonLinear);
    // SAFETY: a valid create info; destroyed at once (the bind is what is checked).
    let made = unsafe { image_alloc.create_aliasing_image(&image, 0) }.unwrap();
    // SAFETY: the GPU is done with everything.
    unsafe {
        d.destroy_image(made, None);
        d.destroy_buffer(src, None);
        d.destroy_buffer(dst, None);
    }
}

#[test]
fn vulkan_1_3_core() {
    let ctx = TestContext::with_api_version(vk::API_VERSION_1_3, &[]);
    let device = device(&ctx, vk::API_VERSION_1_3, false);
    assert!(device.features().maintenance4, "implied by 1.3");
    check_against_real_resources(&ctx, &device);
}

#[test]
fn khr_maintenance4_on_vulkan_1_2() {
    let ctx = TestContext::with_device_extensions(&[ash::khr::maintenance4::NAME]);
    let device = device(&ctx, vk::API_VERSION_1_2, true);
    check_against_real_resources(&ctx, &device);
}

#[test]
fn without_either_the_error_says_what_is_missing() {
    let ctx = TestContext::new();
    let device = device(&ctx, vk::API_VERSION_1_2, false);
    let allocator = StandardMemoryAllocator::new_default(device.clone());
    let info = buffer_info(256, vk::BufferUsageFlags::UNIFORM_BUFFER);
    let missing = AllocationError::FeatureNotEnabled("VK_KHR_maintenance4 or Vulkan 1.3");
    // SAFETY: a valid create info (nothing reaches the driver).
    unsafe {
        assert_eq!(
            AllocationRequirements::for_buffer_info(&device, &info).err(),
            Some(missing.clone())
        );
        assert_eq!(
            allocator
                .find_memory_type_index_for_buffer_info(&info, &Default::default())
                .err(),
            Some(missing.clone())
        );
        assert_eq!(
            allocator
                .allocate_for_buffer_info(&info, &Default::default())
                .err(),
            Some(missing)
        );
    }
    assert_eq!(device.memory_allocation_calls(), 0);
}
