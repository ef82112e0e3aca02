//! Quickstart: allocate, upload, copy through the GPU, read back, check.
//!
//! Picks the first Vulkan device (Mesa's lavapipe on a machine without a GPU), creates a
//! `StandardMemoryAllocator`, then:
//! 1. writes vertex data into an `Upload` vertex buffer through its persistent mapping;
//! 2. writes pixel data into an `Upload` staging buffer;
//! 3. copies the staging buffer into a device-local optimal image, the image into a
//!    `Download` readback buffer, and the vertex buffer after it;
//! 4. reads the readback buffer and checks every byte.
//!
//! Run it with `cargo run --example quickstart`.

use ash::vk;
use ash_memory::{
    AllocationCreateInfo, MemoryAlloc, MemoryAllocator, MemoryUsage, StandardMemoryAllocator,
};
use std::error::Error;

const WIDTH: u32 = 64;
const HEIGHT: u32 = 64;

fn describe(what: &str, alloc: &MemoryAlloc) {
    println!(
        "  {what:<16} {:>8} bytes  memory type {}  offset {:>8}  {}  {:?}",
        alloc.size(),
        alloc.memory_type_index(),
        alloc.offset(),
        if alloc.is_dedicated() {
            "dedicated"
        } else {
            "in a block"
        },
        alloc.memory_property_flags(),
    );
}

fn main() -> Result<(), Box<dyn Error>> {
    // SAFETY: loading the system's Vulkan loader.
    let entry = unsafe { ash::Entry::load() }.map_err(|e| {
        format!(
            "no Vulkan loader ({e}); on Debian/Ubuntu without a GPU: \
             apt-get install mesa-vulkan-drivers libvulkan1"
        )
    })?;
    let app = vk::ApplicationInfo::default()
        .application_name(c"ash-memory quickstart")
        .api_version(vk::API_VERSION_1_2);
    // SAFETY: valid create info that lives through the call.
    let instance = unsafe {
        entry.create_instance(
            &vk::InstanceCreateInfo::default().application_info(&app),
            None,
        )?
    };
    // SAFETY: plain queries on a valid instance.
    let physical_device = unsafe { instance.enumerate_physical_devices()? }
        .into_iter()
        .next()
        .ok_or("no Vulkan device found; install mesa-vulkan-drivers for a software one")?;
    // SAFETY: as above.
    let props = unsafe { instance.get_physical_device_properties(physical_device) };
    println!(
        "device: {}",
        props
            .device_name_as_c_str()
            .unwrap_or(c"?")
            .to_string_lossy()
    );
    // SAFETY: as above.
    let queue_family =
        unsafe { instance.get_physical_device_queue_family_properties(physical_device) }
            .iter()
            .position(|f| {
                f.queue_flags
                    .intersects(vk::QueueFlags::GRAPHICS | vk::QueueFlags::COMPUTE)
            })
            .ok_or("no graphics or compute queue")? as u32;
    let priorities = [1.0];
    let queues = [vk::DeviceQueueCreateInfo::default()
        .queue_family_index(queue_family)
        .queue_priorities(&priorities)];
    // SAFETY: valid create info.
    let device = unsafe {
        instance.create_device(
            physical_device,
            &vk::DeviceCreateInfo::default().queue_create_infos(&queues),
            None,
        )?
    };

    // SAFETY: the handles are valid and destroyed only after the allocator and every
    // allocation are dropped (end of `run`); the instance was created from `entry` for Vulkan 1.2 and no
    // optional extension is claimed.
    let memory_device = unsafe {
        ash_memory::Device::new(
            &entry,
            &instance,
            physical_device,
            device.clone(),
            vk::API_VERSION_1_2,
            Default::default(),
        )?
    };
    let result = run(
        &device,
        queue_family,
        StandardMemoryAllocator::new_default(memory_device.clone()),
    );
    println!(
        "live memory objects after dropping everything: {}",
        memory_device.live_memory_objects()
    );
    drop(memory_device);
    // SAFETY: everything created from the device is gone; the device is idle.
    unsafe {
        device.device_wait_idle()?;
        device.destroy_device(None);
        instance.destroy_instance(None);
    }
    result
}

fn run(
    device: &ash::Device,
    queue_family: u32,
    allocator: StandardMemoryAllocator,
) -> Result<(), Box<dyn Error>> {
    let upload = AllocationCreateInfo {
        usage: MemoryUsage::Upload,
        name: Some("vertices".into()),
        ..Default::default()
    };
    let vertices: Vec<u8> = (0..4096u32)
        .flat_map(|i| (i as f32).to_le_bytes())
        .collect();
    let pixels: Vec<u8> = (0..WIDTH * HEIGHT * 4)
        .map(|i| (i * 7 % 251) as u8)
        .collect();

    let buffer_info = |size: usize, usage| {
        vk::BufferCreateInfo::default()
            .size(size as u64)
            .usage(usage)
            .sharing_mode(vk::SharingMode::EXCLUSIVE)
    };
    // Every `create_*` call below gets a valid create info for any Vulkan device, and every
    // resource is destroyed at the end of this function, before its allocation is dropped.
    // SAFETY: see above.
    let (vertex_buffer, mut vertex_alloc) = unsafe {
        allocator.create_buffer(
            &buffer_info(
                vertices.len(),
                vk::BufferUsageFlags::VERTEX_BUFFER | vk::BufferUsageFlags::TRANSFER_SRC,
            ),
            &upload,
        )?
    };
    vertex_alloc.write(0, &vertices)?;

    let staging_info = AllocationCreateInfo {
        name: Some("staging".into()),
        ..upload.clone()
    };
    // SAFETY: see above.
    let (staging, mut staging_alloc) = unsafe {
        allocator.create_buffer(
            &buffer_info(pixels.len(), vk::BufferUsageFlags::TRANSFER_SRC),
            &staging_info,
        )?
    };
    staging_alloc.write(0, &pixels)?;

    let image_info = vk::ImageCreateInfo::default()
        .image_type(vk::ImageType::TYPE_2D)
        .format(vk::Format::R8G8B8A8_UNORM)
        .extent(vk::Extent3D {
            width: WIDTH,
            height: HEIGHT,
            depth: 1,
        })
        .mip_levels(1)
        .array_layers(1)
        .samples(vk::SampleCountFlags::TYPE_1)
        .tiling(vk::ImageTiling::OPTIMAL)
        .usage(
            vk::ImageUsageFlags::TRANSFER_DST
                | vk::ImageUsageFlags::TRANSFER_SRC
                | vk::ImageUsageFlags::SAMPLED,
        )
        .initial_layout(vk::ImageLayout::UNDEFINED);
    let texture_info = AllocationCreateInfo {
        usage: MemoryUsage::DeviceOnly,
        name: Some("texture".into()),
        ..Default::default()
    };
    // SAFETY: see above.
    let (image, image_alloc) = unsafe { allocator.create_image(&image_info, &texture_info)? };

    let readback_size = pixels.len() + vertices.len();
    let download = AllocationCreateInfo {
        usage: MemoryUsage::Download,
        name: Some("readback".into()),
        ..Default::default()
    };
    // SAFETY: see above.
    let (readback, readback_alloc) = unsafe {
        allocator.create_buffer(
            &buffer_info(readback_size, vk::BufferUsageFlags::TRANSFER_DST),
            &download,
        )?
    };

    println!("allocations:");
    describe("vertex buffer", &vertex_alloc);
    describe("staging buffer", &staging_alloc);
    describe("texture", &image_alloc);
    describe("readback buffer", &readback_alloc);

    // SAFETY: one command buffer recorded and submitted on this thread, waited for before
    // anything it uses is destroyed; barriers order the transfers and the host read.
    unsafe {
        let pool = device.create_command_pool(
            &vk::CommandPoolCreateInfo::default().queue_family_index(queue_family),
            None,
        )?;
        let cmd = device.allocate_command_buffers(
            &vk::CommandBufferAllocateInfo::default()
                .command_pool(pool)
                .level(vk::CommandBufferLevel::PRIMARY)
                .command_buffer_count(1),
        )?[0];
        device.begin_command_buffer(cmd, &vk::CommandBufferBeginInfo::default())?;
        let range = vk::ImageSubresourceRange {
            aspect_mask: vk::ImageAspectFlags::COLOR,
            base_mip_level: 0,
            level_count: 1,
            base_array_layer: 0,
            layer_count: 1,
        };
        let to_dst = vk::ImageMemoryBarrier::default()
            .image(image)
            .subresource_range(range)
            .old_layout(vk::ImageLayout::UNDEFINED)
            .new_layout(vk::ImageLayout::TRANSFER_DST_OPTIMAL)
            .dst_access_mask(vk::AccessFlags::TRANSFER_WRITE);
        device.cmd_pipeline_barrier(
            cmd,
            vk::PipelineStageFlags::TOP_OF_PIPE,
            vk::PipelineStageFlags::TRANSFER,
            vk::DependencyFlags::empty(),
            &[],
            &[],
            &[to_dst],
        );
        let layers = vk::ImageSubresourceLayers {
            aspect_mask: vk::ImageAspectFlags::COLOR,
            mip_level: 0,
            base_array_layer: 0,
            layer_count: 1,
        };
        let copy = vk::BufferImageCopy::default()
            .image_subresource(layers)
            .image_extent(vk::Extent3D {
                width: WIDTH,
                height: HEIGHT,
                depth: 1,
            });
        device.cmd_copy_buffer_to_image(
            cmd,
            staging,
            image,
            vk::ImageLayout::TRANSFER_DST_OPTIMAL,
            &[copy],
        );
        let to_src = vk::ImageMemoryBarrier::default()
            .image(image)
            .subresource_range(range)
            .old_layout(vk::ImageLayout::TRANSFER_DST_OPTIMAL)
            .new_layout(vk::ImageLayout::TRANSFER_SRC_OPTIMAL)
            .src_access_mask(vk::AccessFlags::TRANSFER_WRITE)
            .dst_access_mask(vk::AccessFlags::TRANSFER_READ);
        device.cmd_pipeline_barrier(
            cmd,
            vk::PipelineStageFlags::TRANSFER,
            vk::PipelineStageFlags::TRANSFER,
            vk::DependencyFlags::empty(),
            &[],
            &[],
            &[to_src],
        );
        device.cmd_copy_image_to_buffer(
            cmd,
            image,
            vk::ImageLayout::TRANSFER_SRC_OPTIMAL,
            readback,
            &[copy],
        );
        let vertex_copy = vk::BufferCopy {
            src_offset: 0,
            dst_offset: pixels.len() as u64,
            size: vertices.len() as u64,
        };
        device.cmd_copy_buffer(cmd, vertex_buffer, readback, &[vertex_copy]);
        let to_host = vk::MemoryBarrier::default()
            .src_access_mask(vk::AccessFlags::TRANSFER_WRITE)
            .dst_access_mask(vk::AccessFlags::HOST_READ);
        device.cmd_pipeline_barrier(
            cmd,
            vk::PipelineStageFlags::TRANSFER,
            vk::PipelineStageFlags::HOST,
            vk::DependencyFlags::empty(),
            &[to_host],
            &[],
            &[],
        );
        device.end_command_buffer(cmd)?;
        let fence = device.create_fence(&vk::FenceCreateInfo::default(), None)?;
        let cmds = [cmd];
        device.queue_submit(
            device.get_device_queue(queue_family, 0),
            &[vk::SubmitInfo::default().command_buffers(&cmds)],
            fence,
        )?;
        device.wait_for_fences(&[fence], true, u64::MAX)?;
        device.destroy_fence(fence, None);
        device.destroy_command_pool(pool, None);
    }

    let mut back = vec![0u8; readback_size];
    readback_alloc.read(0, &mut back)?;
    let ok = back[..pixels.len()] == pixels[..] && back[pixels.len()..] == vertices[..];

    // SAFETY: the GPU is idle; resources are destroyed before their allocations drop.
    unsafe {
        device.destroy_buffer(vertex_buffer, None);
        device.destroy_buffer(staging, None);
        device.destroy_image(image, None);
        device.destroy_buffer(readback, None);
    }
    if !ok {
        return Err("the data read back does not match what was uploaded".into());
    }
    println!(
        "round trip ok: {} pixel bytes through a device-local image and {} vertex bytes read back intact",
        pixels.len(),
        vertices.len()
    );
    Ok(())
}
