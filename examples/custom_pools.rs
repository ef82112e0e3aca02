//! Custom pools side by side with the default ones, over a few hundred frames.
//!
//! - an **upload ring**: one 8 MiB block of host-visible memory carved by a `RingAllocator`;
//!   every frame writes its staging data at the head, and the data of the frame before last
//!   is freed from the tail (two frames in flight), so the ring never grows;
//! - a **texture pool**: long-lived device-local images in 16 MiB blocks of their own, so the
//!   per-frame churn never pins their blocks; textures are uploaded from the ring with a GPU
//!   copy, and some are replaced as the frames go by;
//! - the **default pools** for everything else (per-frame uniform buffers here).
//!
//! Every 100 frames it prints each pool's statistics; at the end it reads every texture back
//! through a `Download` buffer, checks every byte, drops everything and prints
//! `pools ok: <n> pools, <m> frames, live memory objects after drop: 0`.
//!
//! Run it with `cargo run --example custom_pools`.

mod common;

use ash::vk;
use ash_memory::*;
use common::{buffer_info, image_copy, image_info, pattern, upload_to_image, Gpu};
use std::collections::VecDeque;
use std::error::Error;

const FRAMES: u64 = 300;
const TEXTURE: u32 = 64;
const TEXTURE_BYTES: u64 = (TEXTURE * TEXTURE * 4) as u64;

struct Texture {
    image: vk::Image,
    alloc: MemoryAlloc,
    seed: u64,
}

fn print_pools(frame: u64, allocator: &StandardMemoryAllocator) {
    let stats = allocator.statistics();
    println!("frame {frame}:");
    for p in &stats.pools {
        let s = &p.statistics;
        println!(
            "  pool {:<8} type {}: {} block(s), {} allocation(s), {} of {} bytes in use",
            p.name,
            p.memory_type_index,
            s.block_count,
            s.allocation_count,
            s.allocated_bytes(),
            s.reserved_bytes
        );
    }
    let t = &stats.total;
    println!(
        "  all pools and the default ones: {} block(s), {} allocation(s), {} bytes reserved",
        t.block_count, t.allocation_count, t.reserved_bytes
    );
}

fn main() -> Result<(), Box<dyn Error>> {
    let gpu = Gpu::new(c"ash-memory custom_pools")?;
    println!("device: {}", gpu.name());
    let memory_device = gpu.memory_device()?;
    let pools = run(
        &gpu,
        StandardMemoryAllocator::new_default(memory_device.clone()),
    )?;
    println!(
        "pools ok: {pools} pools, {FRAMES} frames, live memory objects after drop: {}",
        memory_device.live_memory_objects()
    );
    Ok(())
}

fn run(gpu: &Gpu, allocator: StandardMemoryAllocator) -> Result<usize, Box<dyn Error>> {
    let d = &gpu.device;
    let ring = allocator.create_pool::<RingAllocator>(&PoolCreateInfo {
        name: Some("upload".into()),
        memory_type: PoolMemoryType::Find {
            memory_type_bits: u32::MAX,
            usage: MemoryUsage::Upload,
        },
        block_size: 8 << 20,
        min_block_count: 1,
        max_block_count: 1,
        block_arenas: Some(1),
        ..Default::default()
    })?;
    let textures_pool = allocator.create_pool::<FreeListAllocator>(&PoolCreateInfo {
        name: Some("textures".into()),
        memory_type: PoolMemoryType::Find {
            memory_type_bits: u32::MAX,
            usage: MemoryUsage::DeviceOnly,
        },
        block_size: 16 << 20,
        ..Default::default()
    })?;
    let upload_info = AllocationCreateInfo::default();
    let mut in_flight: VecDeque<Vec<(vk::Buffer, MemoryAlloc)>> = VecDeque::new();
    let mut textures: Vec<Texture> = Vec::new();
    let mut uniforms: VecDeque<(vk::Buffer, MemoryAlloc)> = VecDeque::new();
    for frame in 0..FRAMES {
        // Two frames in flight: the staging data of the frame before last is done with.
        if in_flight.len() == 2 {
            for (buffer, _) in in_flight.pop_front().into_iter().flatten() {
                // SAFETY: the GPU is done with it (every submit below is waited for).
                unsafe { d.destroy_buffer(buffer, None) };
            }
        }
        let mut staging = Vec::new();
        // A texture or two per frame for the first frames, then one replaced every 10.
        let new_textures = if frame < 8 {
            2
        } else {
            u64::from(frame % 10 == 0)
        };
        for t in 0..new_textures {
            let seed = frame * 10 + t;
            // SAFETY: valid create infos; each resource is destroyed before its allocation.
            let (buffer, mut alloc) = unsafe {
                ring.create_buffer(
                    &buffer_info(TEXTURE_BYTES, vk::BufferUsageFlags::TRANSFER_SRC),
                    &upload_info,
                )?
            };
            alloc.write(0, &pattern(seed, TEXTURE_BYTES as usize))?;
            let name = AllocationCreateInfo {
                name: Some(format!("texture {seed}").into()),
                ..Default::default()
            };
            // SAFETY: as above.
            let (image, image_alloc) =
                unsafe { textures_pool.create_image(&image_info(TEXTURE, TEXTURE), &name)? };
            // SAFETY: the buffer and image live until the submission is waited for.
            unsafe {
                gpu.submit(|d, cmd| {
                    upload_to_image(d, cmd, buffer, image, image_copy(TEXTURE, TEXTURE));
                })?;
            }
            staging.push((buffer, alloc));
            if textures.len() >= 12 {
                let old = textures.remove((frame as usize * 7) % textures.len());
                // SAFETY: the image is idle (its upload was waited for).
                unsafe { d.destroy_image(old.image, None) };
            }
            textures.push(Texture {
                image,
                alloc: image_alloc,
                seed,
            });
        }
        // Per-frame uploads of assorted sizes into the ring.
        for i in 0..20 {
            let size = 256 + (frame * 131 + i * 977) % (48 << 10);
            // SAFETY: as above.
            let (buffer, mut alloc) = unsafe {
                ring.create_buffer(
                    &buffer_info(size, vk::BufferUsageFlags::TRANSFER_SRC),
                    &upload_info,
                )?
            };
            alloc.write(0, &pattern(frame ^ i, size as usize))?;
            staging.push((buffer, alloc));
        }
        in_flight.push_back(staging);
        // A uniform buffer per frame from the default pools, kept for three frames.
        let uniform_info = AllocationCreateInfo {
            usage: MemoryUsage::Upload,
            ..Default::default()
        };
        // SAFETY: as above.
        let uniform = unsafe {
            allocator.create_buffer(
                &buffer_info(256, vk::BufferUsageFlags::UNIFORM_BUFFER),
                &uniform_info,
            )?
        };
        uniforms.push_back(uniform);
        if uniforms.len() > 3 {
            if let Some((buffer, _)) = uniforms.pop_front() {
                // SAFETY: unused by the GPU (nothing reads it in this example).
                unsafe { d.destroy_buffer(buffer, None) };
            }
        }
        if (frame + 1) % 100 == 0 {
            print_pools(frame + 1, &allocator);
        }
    }
    if ring.block_count() != 1 {
        return Err("the upload ring grew past its one block".into());
    }
    // Every texture still holds the bytes uploaded into it.
    let download = AllocationCreateInfo {
        usage: MemoryUsage::Download,
        ..Default::default()
    };
    // SAFETY: as above.
    let (readback, readback_alloc) = unsafe {
        allocator.create_buffer(
            &buffer_info(
                TEXTURE_BYTES * textures.len() as u64,
                vk::BufferUsageFlags::TRANSFER_DST,
            ),
            &download,
        )?
    };
    // SAFETY: the images and the buffer live until the submission is waited for.
    unsafe {
        gpu.submit(|d, cmd| {
            for (i, t) in textures.iter().enumerate() {
                let region = image_copy(TEXTURE, TEXTURE).buffer_offset(i as u64 * TEXTURE_BYTES);
                d.cmd_copy_image_to_buffer(
                    cmd,
                    t.image,
                    vk::ImageLayout::TRANSFER_SRC_OPTIMAL,
                    readback,
                    &[region],
                );
            }
            common::transfer_to_host(d, cmd);
        })?;
    }
    let mut back = vec![0u8; (TEXTURE_BYTES as usize) * textures.len()];
    readback_alloc.read(0, &mut back)?;
    for (i, t) in textures.iter().enumerate() {
        let bytes = &back[i * TEXTURE_BYTES as usize..(i + 1) * TEXTURE_BYTES as usize];
        if bytes != pattern(t.seed, TEXTURE_BYTES as usize) {
            return Err(format!("texture {} came back changed", t.seed).into());
        }
        debug_assert_eq!(
            t.alloc.memory_type_index(),
            textures_pool.memory_type_index()
        );
    }
    println!(
        "{} textures read back intact from pool {:?} ({} block(s))",
        textures.len(),
        textures_pool.name(),
        textures_pool.block_count()
    );
    // SAFETY: the GPU is idle; every resource goes before its allocation.
    unsafe {
        d.destroy_buffer(readback, None);
        for t in textures.drain(..) {
            d.destroy_image(t.image, None);
        }
        for (buffer, _) in in_flight.drain(..).flatten().chain(uniforms.drain(..)) {
            d.destroy_buffer(buffer, None);
        }
    }
    Ok(2)
}
