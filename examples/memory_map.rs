//! Builds a small scene on the first Vulkan device, brought up by `examples/common` (textures,
//! vertex and index buffers, uniform buffers, staging buffers, a dedicated render target),
//! frees part of it to leave holes, and writes the allocator's memory map as `memory_map.svg`
//! and its JSON dump as `memory_map.json` (or to the paths given as the first and second
//! arguments). Given a third path, it also writes the dump in VMA's JSON format there
//! (`vmaBuildStatsString` with the detailed map), which VMA's `GpuMemDumpVis.py` draws.
//!
//! ```text
//! cargo run --example memory_map
//! cargo run --example memory_map -- a.svg a.json vma.json
//! ```

mod common;

use ash::vk;
use ash_memory::{
    AllocationCreateInfo, MemoryAlloc, MemoryAllocatePreference, MemoryAllocator, MemoryUsage,
    StandardMemoryAllocator,
};
use common::{buffer_info, Gpu};
use std::error::Error;
use std::sync::Arc;

enum Handle {
    Buffer(vk::Buffer),
    Image(vk::Image),
}

/// A buffer or image and the memory bound to it (freed when this is dropped).
struct Resource {
    handle: Handle,
    _memory: MemoryAlloc,
}

fn main() -> Result<(), Box<dyn Error>> {
    let mut args = std::env::args().skip(1);
    let svg_path = args.next().unwrap_or_else(|| "memory_map.svg".into());
    let json_path = args.next().unwrap_or_else(|| "memory_map.json".into());
    let vma_path = args.next();

    let gpu = Gpu::new(c"ash-memory memory_map")?;
    // The allocator and every allocation are dropped in `build_scene`, before `gpu` drops.
    build_scene(&gpu, &svg_path, &json_path, vma_path.as_deref())
}

fn build_scene(
    gpu: &Gpu,
    svg_path: &str,
    json_path: &str,
    vma_path: Option<&str>,
) -> Result<(), Box<dyn Error>> {
    let device = &gpu.device;
    let memory_device = gpu.memory_device()?;
    let allocator = StandardMemoryAllocator::new_default(memory_device);
    let mut scene: Vec<(String, Resource)> = Vec::new();

    let named = |name: &str, usage| AllocationCreateInfo {
        usage,
        name: Some(Arc::from(name)),
        ..Default::default()
    };
    let buffer = |scene: &mut Vec<(String, Resource)>, name: String, size, usage, mem| {
        // SAFETY: a valid buffer create info; the buffer is destroyed before its allocation.
        let (b, a) =
            unsafe { allocator.create_buffer(&buffer_info(size, usage), &named(&name, mem)) }?;
        scene.push((
            name,
            Resource {
                handle: Handle::Buffer(b),
                _memory: a,
            },
        ));
        Ok::<_, Box<dyn Error>>(())
    };

    // Geometry: vertex and index buffers of many sizes.
    for i in 0..24u64 {
        let vertices = (8 + (i * 37) % 120) * 16 * 1024;
        buffer(
            &mut scene,
            format!("mesh {i} vertices"),
            vertices,
            vk::BufferUsageFlags::VERTEX_BUFFER | vk::BufferUsageFlags::TRANSFER_DST,
            MemoryUsage::DeviceOnly,
        )?;
        buffer(
            &mut scene,
            format!("mesh {i} indices"),
            vertices / 4,
            vk::BufferUsageFlags::INDEX_BUFFER | vk::BufferUsageFlags::TRANSFER_DST,
            MemoryUsage::DeviceOnly,
        )?;
    }
    // Per-frame uniforms, written by the host.
    for i in 0..16 {
        buffer(
            &mut scene,
            format!("frame uniforms {i}"),
            4 * 1024,
            vk::BufferUsageFlags::UNIFORM_BUFFER,
            MemoryUsage::Upload,
        )?;
    }
    // Staging buffers for the texture uploads.
    for i in 0..4 {
        buffer(
            &mut scene,
            format!("staging {i}"),
            6 * 1024 * 1024,
            vk::BufferUsageFlags::TRANSFER_SRC,
            MemoryUsage::Upload,
        )?;
    }
    // Textures.
    for (i, extent) in [
        1024, 512, 512, 2048, 256, 1024, 256, 256, 512, 2048, 128, 1024,
    ]
    .into_iter()
    .enumerate()
    {
        let info = image_info(extent, extent, vk::Format::R8G8B8A8_UNORM);
        let name = format!("texture {i} ({extent}x{extent})");
        // SAFETY: a valid image create info.
        let (image, alloc) =
            unsafe { allocator.create_image(&info, &named(&name, MemoryUsage::DeviceOnly)) }?;
        scene.push((
            name,
            Resource {
                handle: Handle::Image(image),
                _memory: alloc,
            },
        ));
    }
    // A render target that gets a memory object of its own.
    let target = image_info(1920, 1080, vk::Format::R16G16B16A16_SFLOAT)
        .usage(vk::ImageUsageFlags::COLOR_ATTACHMENT | vk::ImageUsageFlags::SAMPLED);
    let info = AllocationCreateInfo {
        allocate_preference: MemoryAllocatePreference::AlwaysAllocate,
        ..named("HDR render target", MemoryUsage::DeviceOnly)
    };
    // SAFETY: a valid image create info.
    let (image, alloc) = unsafe { allocator.create_image(&target, &info) }?;
    scene.push((
        "HDR render target".into(),
        Resource {
            handle: Handle::Image(image),
            _memory: alloc,
        },
    ));

    // The uploads are done: free most staging buffers and some meshes, leaving holes.
    scene.retain(|(name, resource)| {
        let drop_it = (name.starts_with("staging") && !name.ends_with('0'))
            || name
                .strip_prefix("mesh ")
                .and_then(|rest| rest.strip_suffix(" vertices"))
                .and_then(|i| i.parse::<u32>().ok())
                .is_some_and(|i| i % 3 == 1);
        if drop_it {
            destroy(device, resource);
        }
        !drop_it
    });

    let snapshot = allocator.snapshot();
    std::fs::write(svg_path, snapshot.to_svg())?;
    std::fs::write(json_path, snapshot.to_json())?;
    let t = &snapshot.statistics.total;
    println!(
        "{} blocks, {} dedicated, {} allocations, {} of {} bytes in use",
        t.block_count,
        t.dedicated_count,
        t.allocation_count,
        t.allocated_bytes(),
        t.reserved_bytes
    );
    println!("memory map: {}", absolute(svg_path));
    if let Some(vma_path) = vma_path {
        // The same state in VMA's format, for VMA's tools.
        std::fs::write(vma_path, allocator.to_vma_json())?;
        println!("VMA-format dump: {}", absolute(vma_path));
    }
    println!("JSON dump:  {}", absolute(json_path));

    for (_, resource) in &scene {
        destroy(device, resource);
    }
    drop(scene);
    Ok(())
}

/// A 2D optimal-tiling image to upload to and sample; unlike `common::image_info`, of any
/// format and not a transfer source.
fn image_info(width: u32, height: u32, format: vk::Format) -> vk::ImageCreateInfo<'static> {
    vk::ImageCreateInfo::default()
        .image_type(vk::ImageType::TYPE_2D)
        .format(format)
        .extent(vk::Extent3D {
            width,
            height,
            depth: 1,
        })
        .mip_levels(1)
        .array_layers(1)
        .samples(vk::SampleCountFlags::TYPE_1)
        .tiling(vk::ImageTiling::OPTIMAL)
        .usage(vk::ImageUsageFlags::TRANSFER_DST | vk::ImageUsageFlags::SAMPLED)
        .initial_layout(vk::ImageLayout::UNDEFINED)
}

/// Destroys the buffer or image; its memory goes back when the allocation is dropped.
fn destroy(device: &ash::Device, resource: &Resource) {
    // SAFETY: the resources are ours, unused by the GPU (nothing was submitted), and each is
    // destroyed once, right before its allocation is dropped.
    unsafe {
        match resource.handle {
            Handle::Buffer(b) => device.destroy_buffer(b, None),
            Handle::Image(i) => device.destroy_image(i, None),
        }
    }
}

fn absolute(path: &str) -> String {
    std::path::absolute(path).map_or_else(|_| path.to_string(), |p| p.display().to_string())
}
