//! Quickstart: allocate, upload, copy through the GPU, read back, check.
//!
//! Brings up the first Vulkan device (Mesa's lavapipe on a machine without a GPU) with the
//! helpers in `examples/common`, creates a `StandardMemoryAllocator`, then:
//! 1. writes vertex data into an `Upload` vertex buffer through its persistent mapping;
//! 2. writes pixel data into an `Upload` staging buffer;
//! 3. copies the staging buffer into a device-local optimal image, the image into a
//!    `Download` readback buffer, and the vertex buffer after it;
//! 4. reads the readback buffer and checks every byte;
//! 5. drops everything and prints how many memory objects are still alive (none).
//!
//! Run it with `cargo run --example quickstart`.

mod common;

use ash::vk;
use ash_memory::{
    AllocationCreateInfo, HostAccess, MemoryAlloc, MemoryAllocator, MemoryUsage,
    StandardMemoryAllocator,
};
use common::{buffer_info, image_copy, image_info, transfer_to_host, upload_to_image, Gpu};
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
    let gpu = Gpu::new(c"ash-memory quickstart")?;
    println!("device: {}", gpu.name());

    // The allocator: it hands out the memory of this device for buffers and images.
    let memory_device = gpu.memory_device()?;
    let allocator = StandardMemoryAllocator::new_default(memory_device.clone());
    let result = round_trip(&gpu, &allocator);
    // Every allocation is gone by now; dropping the allocator frees its memory blocks.
    drop(allocator);
    println!(
        "live memory objects after dropping everything: {}",
        memory_device.live_memory_objects()
    );
    let (pixel_bytes, vertex_bytes) = result?;
    println!(
        "round trip ok: {} pixel bytes through a device-local image and {} vertex bytes read back intact",
        pixel_bytes, vertex_bytes
    );
    // `memory_device` drops here, then `gpu`, which destroys the Vulkan device.
    Ok(())
}

/// Uploads vertices and pixels, copies them through the GPU into a readback buffer and checks
/// every byte; returns the number of pixel and vertex bytes that made the trip.
fn round_trip(
    gpu: &Gpu,
    allocator: &StandardMemoryAllocator,
) -> Result<(usize, usize), Box<dyn Error>> {
    let vertices: Vec<u8> = (0..4096u32)
        .flat_map(|i| (i as f32).to_le_bytes())
        .collect();
    let pixels: Vec<u8> = (0..WIDTH * HEIGHT * 4)
        .map(|i| (i * 7 % 251) as u8)
        .collect();

    // 1. A vertex buffer the host writes and the GPU reads. The automatic usage picks the
    //    memory type from the buffer's usage flags, the host access and the device's heaps
    //    (device-local host-visible memory where there is room for it, else host memory).
    let upload = AllocationCreateInfo {
        usage: MemoryUsage::Auto(HostAccess::SequentialWrite),
        name: Some("vertices".into()),
        ..Default::default()
    };
    let vertex_usage = vk::BufferUsageFlags::VERTEX_BUFFER | vk::BufferUsageFlags::TRANSFER_SRC;
    // SAFETY: a valid create info; the buffer is destroyed before its allocation drops.
    let (vertex_buffer, mut vertex_alloc) = unsafe {
        allocator.create_buffer(&buffer_info(vertices.len() as u64, vertex_usage), &upload)?
    };
    vertex_alloc.write(0, &vertices)?;

    // 2. A staging buffer for the pixels, with the same intent: a transfer-only buffer is
    //    staging, which the rule keeps in host memory (never in a small BAR heap).
    let staging_info = AllocationCreateInfo {
        name: Some("staging".into()),
        ..upload.clone()
    };
    let staging_usage = vk::BufferUsageFlags::TRANSFER_SRC;
    // SAFETY: as above.
    let (staging, mut staging_alloc) = unsafe {
        allocator.create_buffer(
            &buffer_info(pixels.len() as u64, staging_usage),
            &staging_info,
        )?
    };
    staging_alloc.write(0, &pixels)?;

    // 3. A device-local image only the GPU touches, and a readback buffer the host reads.
    let texture_info = AllocationCreateInfo {
        usage: MemoryUsage::Auto(HostAccess::NoAccess),
        name: Some("texture".into()),
        ..Default::default()
    };
    // SAFETY: as above.
    let (image, image_alloc) =
        unsafe { allocator.create_image(&image_info(WIDTH, HEIGHT), &texture_info)? };

    let readback_size = pixels.len() + vertices.len();
    let download = AllocationCreateInfo {
        usage: MemoryUsage::Auto(HostAccess::Random),
        name: Some("readback".into()),
        ..Default::default()
    };
    let readback_usage = vk::BufferUsageFlags::TRANSFER_DST;
    // SAFETY: as above.
    let (readback, readback_alloc) = unsafe {
        allocator.create_buffer(
            &buffer_info(readback_size as u64, readback_usage),
            &download,
        )?
    };

    println!("allocations:");
    describe("vertex buffer", &vertex_alloc);
    describe("staging buffer", &staging_alloc);
    describe("texture", &image_alloc);
    describe("readback buffer", &readback_alloc);

    // The GPU part: staging -> image -> readback, then the vertices after the pixels.
    let vertex_copy = vk::BufferCopy {
        src_offset: 0,
        dst_offset: pixels.len() as u64,
        size: vertices.len() as u64,
    };
    // SAFETY: the buffers and the image are valid, live until `submit` has waited for the
    // commands, and are used in the layouts the transitions put them in; the last barrier
    // makes the copies visible to the host read below.
    unsafe {
        gpu.submit(|d, cmd| {
            upload_to_image(d, cmd, staging, image, image_copy(WIDTH, HEIGHT));
            d.cmd_copy_image_to_buffer(
                cmd,
                image,
                vk::ImageLayout::TRANSFER_SRC_OPTIMAL,
                readback,
                &[image_copy(WIDTH, HEIGHT)],
            );
            d.cmd_copy_buffer(cmd, vertex_buffer, readback, &[vertex_copy]);
            transfer_to_host(d, cmd);
        })?;
    }

    // 4. Read back and compare.
    let mut back = vec![0u8; readback_size];
    readback_alloc.read(0, &mut back)?;
    let ok = back[..pixels.len()] == pixels[..] && back[pixels.len()..] == vertices[..];

    // SAFETY: the GPU is idle (`submit` waited); each resource is destroyed once, before its
    // allocation drops at the end of this function.
    unsafe {
        gpu.device.destroy_buffer(vertex_buffer, None);
        gpu.device.destroy_buffer(staging, None);
        gpu.device.destroy_image(image, None);
        gpu.device.destroy_buffer(readback, None);
    }
    if !ok {
        return Err("the data read back does not match what was uploaded".into());
    }
    Ok((pixels.len(), vertices.len()))
}
