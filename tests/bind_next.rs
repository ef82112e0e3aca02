//! Binds with a `pNext` chain on the driver: `create_buffer_with_bind_next`,
//! `create_image_with_bind_next` and the binds by hand reach `vkBind*Memory2` with the user's
//! chain (recorded by a wrapper around the real entry points), the resources work (data
//! round-trips through the GPU), an empty chain stays a plain bind, a chain without
//! `vkBind*Memory2` is refused before anything is created, the `VK_KHR_bind_memory2` path of
//! a Vulkan 1.0 instance works, and a failing bind destroys the resource and frees its memory.

mod common;

use ash::vk;
use ash_memory::*;
use common::{buffer_info, image_info, TestContext, API_VERSION};
use std::cell::{Cell, RefCell};
use std::sync::Arc;

/// One recorded `vkBind*Memory2` bind: memory offset and the chain's structure types.
type Recorded = (u64, Vec<vk::StructureType>);

thread_local! {
    static REAL_BUFFER: Cell<Option<vk::PFN_vkBindBufferMemory2>> = const { Cell::new(None) };
    static REAL_IMAGE: Cell<Option<vk::PFN_vkBindImageMemory2>> = const { Cell::new(None) };
    static RECORDED: RefCell<Vec<Recorded>> = const { RefCell::new(Vec::new()) };
    /// The next bind fails with this result instead of reaching the driver.
    static FAIL: Cell<Option<vk::Result>> = const { Cell::new(None) };
}

/// The structure types of a `pNext` chain.
///
/// # Safety
/// `next` is null or a valid chain.
unsafe fn chain_types(mut next: *const std::ffi::c_void) -> Vec<vk::StructureType> {
    let mut out = Vec::new();
    while !next.is_null() {
        // SAFETY: every structure of a valid chain starts with a `VkBaseInStructure`.
        let base = unsafe { &*(next as *const vk::BaseInStructure<'_>) };
        out.push(base.s_type);
        next = base.p_next as *const _;
    }
    out
}

unsafe extern "system" fn bind_buffer_memory2(
    device: vk::Device,
    count: u32,
    infos: *const vk::BindBufferMemoryInfo<'_>,
) -> vk::Result {
    // SAFETY: the caller passes `count` valid infos.
    let list = unsafe { std::slice::from_raw_parts(infos, count as usize) };
    for info in list {
        // SAFETY: a valid chain (the caller's).
        let types = unsafe { chain_types(info.p_next) };
        RECORDED.with(|r| r.borrow_mut().push((info.memory_offset, types)));
    }
    if let Some(e) = FAIL.take() {
        return e;
    }
    let real = REAL_BUFFER.get().expect("real vkBindBufferMemory2");
    // SAFETY: forwarded unchanged.
    unsafe { real(device, count, infos) }
}

unsafe extern "system" fn bind_image_memory2(
    device: vk::Device,
    count: u32,
    infos: *const vk::BindImageMemoryInfo<'_>,
) -> vk::Result {
    // SAFETY: as above.
    let list = unsafe { std::slice::from_raw_parts(infos, count as usize) };
    for info in list {
        // SAFETY: as above.
        let types = unsafe { chain_types(info.p_next) };
        RECORDED.with(|r| r.borrow_mut().push((info.memory_offset, types)));
    }
    if let Some(e) = FAIL.take() {
        return e;
    }
    let real = REAL_IMAGE.get().expect("real vkBindImageMemory2");
    // SAFETY: forwarded unchanged.
    unsafe { real(device, count, infos) }
}

/// The context's device with `vkBind*Memory2` recorded (on this thread).
fn recording_device(ctx: &TestContext) -> ash::Device {
    let d = &ctx.device;
    REAL_BUFFER.set(Some(d.fp_v1_1().bind_buffer_memory2));
    REAL_IMAGE.set(Some(d.fp_v1_1().bind_image_memory2));
    let mut d1 = d.fp_v1_1().clone();
    d1.bind_buffer_memory2 = bind_buffer_memory2;
    d1.bind_image_memory2 = bind_image_memory2;
    ash::Device::from_parts_1_3(
        d.handle(),
        d.fp_v1_0().clone(),
        d1,
        d.fp_v1_2().clone(),
        d.fp_v1_3().clone(),
    )
}

fn take_recorded() -> Vec<Recorded> {
    RECORDED.with(|r| std::mem::take(&mut *r.borrow_mut()))
}

fn memory_device(
    ctx: &TestContext,
    device: ash::Device,
    api_version: u32,
    features: EnabledMemoryFeatures,
) -> Arc<MemoryDevice> {
    // SAFETY: the handles are the context's (or forward to them) and outlive the allocator;
    // the features claimed are those enabled (or core).
    unsafe {
        MemoryDevice::new(
            &ctx.entry,
            &ctx.instance,
            ctx.physical_device,
            device,
            api_version,
            features,
        )
    }
    .unwrap()
}

fn host() -> AllocationCreateInfo {
    AllocationCreateInfo {
        usage: MemoryUsage::Auto(HostAccess::Random),
        ..Default::default()
    }
}

/// Copies `len` bytes of `src` into a new host buffer through the GPU and returns them.
fn gpu_copy_out(ctx: &TestContext, allocator: &impl MemoryAllocator, src: vk::Buffer) -> Vec<u8> {
    let usage = vk::BufferUsageFlags::TRANSFER_DST;
    // SAFETY: a valid create info.
    let (dst, dst_alloc) =
        unsafe { allocator.create_buffer(&buffer_info(4096, usage), &host()) }.unwrap();
    ctx.submit(|d, cmd| {
        // SAFETY: recording; both buffers are bound.
        unsafe {
            d.cmd_copy_buffer(
                cmd,
                src,
                dst,
                &[vk::BufferCopy {
                    src_offset: 0,
                    dst_offset: 0,
                    size: 4096,
                }],
            )
        };
        TestContext::transfer_barrier(d, cmd);
    });
    let mut out = vec![0; 4096];
    dst_alloc.read(0, &mut out).unwrap();
    // SAFETY: the copy is done.
    unsafe { ctx.device.destroy_buffer(dst, None) };
    out
}

fn pattern(seed: u8) -> Vec<u8> {
    (0..4096u32)
        .map(|i| (i as u8).wrapping_mul(31) ^ seed)
        .collect()
}

#[test]
fn chains_reach_bind_memory2_and_the_resources_work() {
    let ctx = TestContext::new();
    {
        let device = memory_device(
            &ctx,
            recording_device(&ctx),
            API_VERSION,
            Default::default(),
        );
        assert!(device.features().bind_memory2, "implied by Vulkan 1.1+");
        let allocator = StandardMemoryAllocator::new_default(device.clone());
        let indices = [0u32];
        let mut group = vk::BindBufferMemoryDeviceGroupInfo::default().device_indices(&indices);
        let chain = vk::BindBufferMemoryInfo::default().push_next(&mut group);
        let usage = vk::BufferUsageFlags::TRANSFER_SRC | vk::BufferUsageFlags::TRANSFER_DST;
        // SAFETY: a valid create info; a valid chain for a one-device group.
        let (buffer, mut alloc) = unsafe {
            allocator.create_buffer_with_bind_next(&buffer_info(4096, usage), &host(), &chain)
        }
        .unwrap();
        assert_eq!(
            take_recorded(),
            vec![(
                alloc.offset(),
                vec![vk::StructureType::BIND_BUFFER_MEMORY_DEVICE_GROUP_INFO]
            )]
        );
        alloc.write(0, &pattern(1)).unwrap();
        assert_eq!(gpu_copy_out(&ctx, &allocator, buffer), pattern(1));

        // An empty chain is a plain vkBindBufferMemory.
        // SAFETY: as above.
        let (plain, _plain_alloc) = unsafe {
            allocator.create_buffer_with_bind_next(
                &buffer_info(4096, usage),
                &host(),
                &vk::BindBufferMemoryInfo::default(),
            )
        }
        .unwrap();
        assert!(take_recorded().is_empty());

        // An image with its device-group chain: cleared and copied out through the GPU.
        let mut image_group =
            vk::BindImageMemoryDeviceGroupInfo::default().device_indices(&indices);
        let image_chain = vk::BindImageMemoryInfo::default().push_next(&mut image_group);
        let info = image_info(32, vk::Format::R8G8B8A8_UINT, vk::ImageTiling::OPTIMAL)
            .usage(vk::ImageUsageFlags::TRANSFER_DST | vk::ImageUsageFlags::TRANSFER_SRC);
        // SAFETY: a valid create info and chain.
        let (image, image_alloc) = unsafe {
            allocator.create_image_with_bind_next(&info, &Default::default(), &image_chain)
        }
        .unwrap();
        assert_eq!(
            take_recorded(),
            vec![(
                image_alloc.offset(),
                vec![vk::StructureType::BIND_IMAGE_MEMORY_DEVICE_GROUP_INFO]
            )]
        );

        // By hand, at an offset inside a larger allocation.
        // SAFETY: a valid create info.
        let by_hand = unsafe { ctx.device.create_buffer(&buffer_info(4096, usage), None) }.unwrap();
        // SAFETY: valid and unbound.
        let req = unsafe { AllocationRequirements::for_buffer(&device, by_hand) }.unwrap();
        let big = allocator
            .allocate(
                AllocationRequirements {
                    layout: DeviceLayout::from_size_alignment(3 * 4096, 4096).unwrap(),
                    ..req
                },
                AllocationType::Linear,
                &host(),
                None,
            )
            .unwrap();
        // SAFETY: unbound; destroyed before `big`; the chain is valid.
        unsafe { big.bind_buffer_at_with_next(by_hand, 4096, &chain) }.unwrap();
        assert_eq!(
            take_recorded(),
            vec![(
                big.offset() + 4096,
                vec![vk::StructureType::BIND_BUFFER_MEMORY_DEVICE_GROUP_INFO]
            )]
        );
        let mut big = big;
        big.write(4096, &pattern(2)).unwrap();
        assert_eq!(gpu_copy_out(&ctx, &allocator, by_hand), pattern(2));

        // Image by hand into an image allocation.
        // SAFETY: a valid create info.
        let image2 = unsafe { ctx.device.create_image(&info, None) }.unwrap();
        // SAFETY: valid and unbound.
        let image_req = unsafe { AllocationRequirements::for_image(&device, image2) }.unwrap();
        let image2_alloc = allocator
            .allocate(
                image_req,
                AllocationType::NonLinear,
                &Default::default(),
                None,
            )
            .unwrap();
        // SAFETY: unbound; destroyed before its memory; a valid chain.
        unsafe { image2_alloc.bind_image_at_with_next(image2, 0, &image_chain) }.unwrap();
        assert_eq!(take_recorded().len(), 1);
        ctx.submit(|d, cmd| {
            let range = vk::ImageSubresourceRange {
                aspect_mask: vk::ImageAspectFlags::COLOR,
                base_mip_level: 0,
                level_count: 1,
                base_array_layer: 0,
                layer_count: 1,
            };
            let to_dst = |image| {
                vk::ImageMemoryBarrier::default()
                    .image(image)
                    .old_layout(vk::ImageLayout::UNDEFINED)
                    .new_layout(vk::ImageLayout::TRANSFER_DST_OPTIMAL)
                    .dst_access_mask(vk::AccessFlags::TRANSFER_WRITE)
                    .src_queue_family_index(vk::QUEUE_FAMILY_IGNORED)
                    .dst_queue_family_index(vk::QUEUE_FAMILY_IGNORED)
                    .subresource_range(range)
            };
            // SAFETY: recording; the images are bound (an unbound one is a validation error).
            unsafe {
                d.cmd_pipeline_barrier(
                    cmd,
                    vk::PipelineStageFlags::TOP_OF_PIPE,
                    vk::PipelineStageFlags::TRANSFER,
                    vk::DependencyFlags::empty(),
                    &[],
                    &[],
                    &[to_dst(image), to_dst(image2)],
                );
                for i in [image, image2] {
                    d.cmd_clear_color_image(
                        cmd,
                        i,
                        vk::ImageLayout::TRANSFER_DST_OPTIMAL,
                        &vk::ClearColorValue { uint32: [7; 4] },
                        &[range],
                    );
                }
            }
        });
        // SAFETY: the GPU is done; destroyed before their memory is freed.
        unsafe {
            for b in [buffer, plain, by_hand] {
                ctx.device.destroy_buffer(b, None);
            }
            ctx.device.destroy_image(image, None);
            ctx.device.destroy_image(image2, None);
        }
    }
}

#[test]
fn a_failing_bind_destroys_the_resource_and_frees_the_memory() {
    let ctx = TestContext::new();
    {
        let device = memory_device(
            &ctx,
            recording_device(&ctx),
            API_VERSION,
            Default::default(),
        );
        let allocator = StandardMemoryAllocator::new_default(device.clone());
        let indices = [0u32];
        let mut group = vk::BindBufferMemoryDeviceGroupInfo::default().device_indices(&indices);
        let chain = vk::BindBufferMemoryInfo::default().push_next(&mut group);
        let usage = vk::BufferUsageFlags::TRANSFER_SRC;
        for fault in [
            vk::Result::ERROR_OUT_OF_DEVICE_MEMORY,
            vk::Result::ERROR_OUT_OF_HOST_MEMORY,
        ] {
            FAIL.set(Some(fault));
            // SAFETY: a valid create info and chain.
            let result = unsafe {
                allocator.create_buffer_with_bind_next(&buffer_info(4096, usage), &host(), &chain)
            };
            assert_eq!(take_recorded().len(), 1);
            let expected = match fault {
                vk::Result::ERROR_OUT_OF_DEVICE_MEMORY => AllocationError::OutOfDeviceMemory,
                _ => AllocationError::OutOfHostMemory,
            };
            assert_eq!(result.err(), Some(expected));
            // The buffer is destroyed (the validation layer reports any left at device
            // destruction) and its range given back.
            assert_eq!(allocator.statistics().total.allocation_count, 0);
        }
    }
}

#[test]
fn without_bind_memory2_a_chain_is_refused_before_anything_is_made() {
    let ctx = TestContext::new();
    {
        // Told: a Vulkan 1.0 instance, no VK_KHR_bind_memory2.
        let device = memory_device(
            &ctx,
            ctx.device.clone(),
            vk::API_VERSION_1_0,
            Default::default(),
        );
        assert!(!device.features().bind_memory2);
        let allocator = StandardMemoryAllocator::new_default(device.clone());
        let indices = [0u32];
        let mut group = vk::BindBufferMemoryDeviceGroupInfo::default().device_indices(&indices);
        let chain = vk::BindBufferMemoryInfo::default().push_next(&mut group);
        let usage = vk::BufferUsageFlags::TRANSFER_SRC;
        let calls = device.memory_allocation_calls();
        // SAFETY: a valid create info; the chain is refused before any bind.
        let result = unsafe {
            allocator.create_buffer_with_bind_next(&buffer_info(4096, usage), &host(), &chain)
        };
        assert_eq!(
            result.err(),
            Some(AllocationError::Bind(
                MemoryAccessError::BindMemory2Unavailable
            ))
        );
        assert_eq!(device.memory_allocation_calls(), calls, "nothing allocated");
        // By hand: refused, and the buffer stays unbound (a plain bind then works).
        // SAFETY: a valid create info.
        let buffer = unsafe { ctx.device.create_buffer(&buffer_info(4096, usage), None) }.unwrap();
        // SAFETY: valid and unbound.
        let req = unsafe { AllocationRequirements::for_buffer(&device, buffer) }.unwrap();
        let alloc = allocator
            .allocate(req, AllocationType::Linear, &host(), None)
            .unwrap();
        // SAFETY: unbound, destroyed before `alloc`.
        unsafe {
            assert_eq!(
                alloc.bind_buffer_at_with_next(buffer, 0, &chain),
                Err(MemoryAccessError::BindMemory2Unavailable)
            );
            alloc.bind_buffer_at(buffer, 0).unwrap();
            ctx.device.destroy_buffer(buffer, None);
        }
    }
}

#[test]
fn khr_bind_memory2_serves_a_vulkan_1_0_instance() {
    let ctx = TestContext::with_device_extensions(&[ash::khr::bind_memory2::NAME]);
    {
        let device = memory_device(
            &ctx,
            ctx.device.clone(),
            vk::API_VERSION_1_0,
            EnabledMemoryFeatures {
                bind_memory2: true,
                ..Default::default()
            },
        );
        let allocator = StandardMemoryAllocator::new_default(device.clone());
        let indices = [0u32];
        let mut group = vk::BindBufferMemoryDeviceGroupInfo::default().device_indices(&indices);
        let chain = vk::BindBufferMemoryInfo::default().push_next(&mut group);
        let usage = vk::BufferUsageFlags::TRANSFER_SRC | vk::BufferUsageFlags::TRANSFER_DST;
        // SAFETY: a valid create info and chain.
        let (buffer, mut alloc) = unsafe {
            allocator.create_buffer_with_bind_next(&buffer_info(4096, usage), &host(), &chain)
        }
        .unwrap();
        alloc.write(0, &pattern(3)).unwrap();
        // Copying through an unbound buffer would be a validation error.
        assert_eq!(gpu_copy_out(&ctx, &allocator, buffer), pattern(3));
        // SAFETY: the GPU is done.
        unsafe { ctx.device.destroy_buffer(buffer, None) };
    }
}
