//! Defragmentation with GPU copies, verified byte by byte.
//!
//! Creates 2,000 device-local buffers and 600 optimal-tiling images with random contents
//! (uploaded through a staging buffer) in 4 MiB blocks, frees a random 70 % of them so that
//! the blocks are sparse, then defragments: every pass, each moving resource gets a new
//! buffer or image bound to its destination, the GPU copies the old one into it, and the
//! moves are completed. Images are copied image to image with their layout transitions:
//! the new image goes from `UNDEFINED` to `TRANSFER_DST_OPTIMAL` for the copy and then to
//! the layout the old one was in (`TRANSFER_SRC_OPTIMAL` here), while the old one, already
//! in `TRANSFER_SRC_OPTIMAL`, is read as it is; a barrier orders the copies before the
//! transitions. Finally every surviving buffer and image is read back through a `Download`
//! buffer and compared with what was written.
//!
//! The last line reads `defragmentation: reserved/live <before> -> <after>, moved <bytes>
//! bytes in <moves> moves, freed <n> memory objects, data verified`.
//!
//! Run it with `cargo run --example defragment`.

mod common;

use ash::vk;
use ash_memory::allocator::defrag::{record_buffer_copies, BufferMove, Move};
use ash_memory::*;
use common::{buffer_info, image_copy, image_info, pattern, transition, Gpu};
use std::error::Error;

const BUFFERS: usize = 2000;
const IMAGES: usize = 600;

/// A resource and the allocation it is bound to.
struct Resource {
    kind: Kind,
    alloc: MemoryAlloc,
    alignment: u64,
    seed: u64,
}

#[derive(Clone, Copy)]
enum Kind {
    Buffer { buffer: vk::Buffer, size: u64 },
    Image { image: vk::Image, extent: u32 },
}

impl Kind {
    fn bytes(self) -> u64 {
        match self {
            Kind::Buffer { size, .. } => size,
            Kind::Image { extent, .. } => u64::from(extent * extent * 4),
        }
    }

    /// Its span in the staging and readback buffers: its bytes rounded up to 16, so that
    /// every resource starts at a multiple of 16 there (a copy to or from an image must start
    /// at a multiple of its texel size, 4 bytes here).
    fn span(self) -> u64 {
        self.bytes().next_multiple_of(16)
    }
}

/// SplitMix64.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn ratio(allocator: &StandardMemoryAllocator) -> (f64, u64) {
    let t = allocator.statistics().total;
    (
        t.reserved_bytes as f64 / t.allocated_bytes().max(1) as f64,
        t.block_count,
    )
}

fn main() -> Result<(), Box<dyn Error>> {
    let gpu = Gpu::new(c"ash-memory defragment")?;
    println!("device: {}", gpu.name());
    let memory_device = gpu.memory_device()?;
    let allocator = StandardMemoryAllocator::new(
        memory_device.clone(),
        GenericMemoryAllocatorCreateInfo {
            block_sizes: BlockSizeThresholds::uniform(4 << 20)?,
            ..Default::default()
        },
    )?;
    let line = run(&gpu, &allocator)?;
    drop(allocator);
    if memory_device.live_memory_objects() != 0 {
        return Err("memory objects left after dropping everything".into());
    }
    println!("{line}");
    Ok(())
}

/// Creates the resources, fills them through a staging buffer, and returns them.
fn create(gpu: &Gpu, allocator: &StandardMemoryAllocator) -> Result<Vec<Resource>, Box<dyn Error>> {
    let d = &gpu.device;
    let mut rng = Rng(0xdef2a9);
    let mut resources = Vec::new();
    let device_only = AllocationCreateInfo::default();
    for i in 0..BUFFERS + IMAGES {
        let seed = rng.next();
        // Buffers and images interleaved (3 in 13 are images), so that both share blocks.
        if i % 13 >= 3 {
            let size = 256 + rng.below(32 << 10);
            let info = buffer_info(
                size,
                vk::BufferUsageFlags::TRANSFER_SRC | vk::BufferUsageFlags::TRANSFER_DST,
            );
            // SAFETY: a valid create info; destroyed before its allocation (end of `run`).
            let (buffer, alloc) = unsafe { allocator.create_buffer(&info, &device_only)? };
            // SAFETY: a valid buffer of this device.
            let alignment = unsafe { d.get_buffer_memory_requirements(buffer) }.alignment;
            resources.push(Resource {
                kind: Kind::Buffer { buffer, size },
                alloc,
                alignment,
                seed,
            });
        } else {
            let extent = 16 << rng.below(3);
            // SAFETY: as above.
            let (image, alloc) =
                unsafe { allocator.create_image(&image_info(extent, extent), &device_only)? };
            // SAFETY: a valid image of this device.
            let alignment = unsafe { d.get_image_memory_requirements(image) }.alignment;
            resources.push(Resource {
                kind: Kind::Image { image, extent },
                alloc,
                alignment,
                seed,
            });
        }
    }
    // Upload every resource's pattern through one staging buffer.
    let total: u64 = resources.iter().map(|r| r.kind.span()).sum();
    let upload = AllocationCreateInfo {
        usage: MemoryUsage::Upload,
        ..Default::default()
    };
    // SAFETY: as above.
    let (staging, mut staging_alloc) = unsafe {
        allocator.create_buffer(
            &buffer_info(total, vk::BufferUsageFlags::TRANSFER_SRC),
            &upload,
        )?
    };
    let mut offset = 0;
    for r in &resources {
        staging_alloc.write(offset, &pattern(r.seed, r.kind.bytes() as usize))?;
        offset += r.kind.span();
    }
    // SAFETY: every resource and the staging buffer live until the submission is done.
    unsafe {
        gpu.submit(|d, cmd| {
            let mut offset = 0;
            for r in &resources {
                match r.kind {
                    Kind::Buffer { buffer, size } => {
                        let region = vk::BufferCopy {
                            src_offset: offset,
                            dst_offset: 0,
                            size,
                        };
                        d.cmd_copy_buffer(cmd, staging, buffer, &[region]);
                    }
                    Kind::Image { image, extent } => {
                        let region = image_copy(extent, extent).buffer_offset(offset);
                        common::upload_to_image(d, cmd, staging, image, region);
                    }
                }
                offset += r.kind.span();
            }
            common::transfer_to_host(d, cmd);
        })?;
        d.destroy_buffer(staging, None);
    }
    Ok(resources)
}

/// Records the copies of one pass; returns the new resources, by move.
///
/// # Safety
///
/// `cmd` is recording; every resource of a move is valid and idle.
unsafe fn record_moves<'a>(
    d: &ash::Device,
    cmd: vk::CommandBuffer,
    moves: impl Iterator<Item = &'a Move>,
    resources: &[Resource],
) -> Result<Vec<Kind>, vk::Result> {
    let mut new = Vec::new();
    let mut buffer_moves = Vec::new();
    let mut images = Vec::new();
    for m in moves {
        let r = &resources[m.id()];
        // SAFETY: valid create infos; each new resource is bound to its move's destination,
        // made for the same requirements as the source.
        unsafe {
            match r.kind {
                Kind::Buffer { buffer, size } => {
                    let info = buffer_info(
                        size,
                        vk::BufferUsageFlags::TRANSFER_SRC | vk::BufferUsageFlags::TRANSFER_DST,
                    );
                    let new_buffer = d.create_buffer(&info, None)?;
                    m.destination()
                        .bind_buffer(new_buffer)
                        .map_err(|_| vk::Result::ERROR_UNKNOWN)?;
                    buffer_moves.push(BufferMove {
                        src: buffer,
                        dst: new_buffer,
                        size,
                    });
                    new.push(Kind::Buffer {
                        buffer: new_buffer,
                        size,
                    });
                }
                Kind::Image { image, extent } => {
                    let new_image = d.create_image(&image_info(extent, extent), None)?;
                    m.destination()
                        .bind_image(new_image)
                        .map_err(|_| vk::Result::ERROR_UNKNOWN)?;
                    images.push((image, new_image, extent));
                    new.push(Kind::Image {
                        image: new_image,
                        extent,
                    });
                }
            }
        }
    }
    // SAFETY: the caller's contract; the buffers are bound and idle.
    unsafe { record_buffer_copies(d, cmd, &buffer_moves) };
    for &(old, new_image, extent) in &images {
        // SAFETY: `new_image` is fresh (UNDEFINED); `old` is in TRANSFER_SRC_OPTIMAL.
        unsafe {
            transition(
                d,
                cmd,
                new_image,
                vk::ImageLayout::UNDEFINED,
                vk::ImageLayout::TRANSFER_DST_OPTIMAL,
            );
            let layers = vk::ImageSubresourceLayers {
                aspect_mask: vk::ImageAspectFlags::COLOR,
                mip_level: 0,
                base_array_layer: 0,
                layer_count: 1,
            };
            let region = vk::ImageCopy {
                src_subresource: layers,
                dst_subresource: layers,
                extent: vk::Extent3D {
                    width: extent,
                    height: extent,
                    depth: 1,
                },
                ..Default::default()
            };
            d.cmd_copy_image(
                cmd,
                old,
                vk::ImageLayout::TRANSFER_SRC_OPTIMAL,
                new_image,
                vk::ImageLayout::TRANSFER_DST_OPTIMAL,
                &[region],
            );
            transition(
                d,
                cmd,
                new_image,
                vk::ImageLayout::TRANSFER_DST_OPTIMAL,
                vk::ImageLayout::TRANSFER_SRC_OPTIMAL,
            );
        }
    }
    Ok(new)
}

fn run(gpu: &Gpu, allocator: &StandardMemoryAllocator) -> Result<String, Box<dyn Error>> {
    let d = &gpu.device;
    let mut resources = create(gpu, allocator)?;
    // Free a random 70 %.
    let mut rng = Rng(70);
    let mut kept = Vec::new();
    for r in resources.drain(..) {
        if rng.below(10) < 7 {
            // SAFETY: idle (every submission was waited for); destroyed before its memory.
            unsafe {
                match r.kind {
                    Kind::Buffer { buffer, .. } => d.destroy_buffer(buffer, None),
                    Kind::Image { image, .. } => d.destroy_image(image, None),
                }
            }
        } else {
            kept.push(r);
        }
    }
    let mut resources = kept;
    let (before, blocks_before) = ratio(allocator);
    println!(
        "before: {} resources in {blocks_before} blocks, reserved/live {before:.2}",
        resources.len()
    );

    let mut defrag = allocator.defragmentation(&DefragmentationInfo {
        algorithm: DefragmentationAlgorithm::Full,
        max_moves_per_pass: 400,
        ..Default::default()
    });
    for (k, r) in resources.iter_mut().enumerate() {
        let alignment = DeviceAlignment::new(r.alignment).ok_or("alignment")?;
        let id = defrag.add(&mut r.alloc, alignment)?;
        debug_assert_eq!(id, k, "ids follow the order of add");
    }
    while let Some(mut pass) = defrag.next_pass() {
        let mut new = Vec::new();
        let mut failure = None;
        // SAFETY: the resources of the moves are idle; the new ones live on.
        unsafe {
            gpu.submit(
                |d, cmd| match record_moves(d, cmd, pass.moves(), &resources) {
                    Ok(n) => new = n,
                    Err(e) => failure = Some(e),
                },
            )?;
        }
        if let Some(e) = failure {
            return Err(e.into());
        }
        for (i, kind) in new.into_iter().enumerate() {
            let id = pass.get(i).ok_or("a move settled early")?.id();
            let r = &mut resources[id];
            // SAFETY: the copy is done; the old resource goes before its memory does.
            unsafe {
                match r.kind {
                    Kind::Buffer { buffer, .. } => d.destroy_buffer(buffer, None),
                    Kind::Image { image, .. } => d.destroy_image(image, None),
                }
            }
            r.kind = kind;
            pass.complete(i, &mut r.alloc)?;
        }
        let report = pass.end();
        println!(
            "pass: {} moves, {} bytes, {} memory objects freed",
            report.moves, report.bytes_moved, report.memory_objects_freed
        );
    }
    let stats = defrag.finish();
    let (after, blocks_after) = ratio(allocator);
    let empty = allocator
        .statistics()
        .blocks
        .iter()
        .filter(|b| !b.dedicated && b.statistics.allocation_count == 0)
        .count();
    println!(
        "after: {blocks_after} blocks ({empty} of them empty, kept for the next allocations), \
         reserved/live {after:.2}"
    );

    // Every byte of every surviving resource.
    let total: u64 = resources.iter().map(|r| r.kind.span()).sum();
    let download = AllocationCreateInfo {
        usage: MemoryUsage::Download,
        ..Default::default()
    };
    // SAFETY: a valid create info; destroyed below.
    let (readback, readback_alloc) = unsafe {
        allocator.create_buffer(
            &buffer_info(total, vk::BufferUsageFlags::TRANSFER_DST),
            &download,
        )?
    };
    // SAFETY: every resource and the readback buffer live until the submission is done.
    unsafe {
        gpu.submit(|d, cmd| {
            let mut offset = 0;
            for r in &resources {
                match r.kind {
                    Kind::Buffer { buffer, size } => {
                        let region = vk::BufferCopy {
                            src_offset: 0,
                            dst_offset: offset,
                            size,
                        };
                        d.cmd_copy_buffer(cmd, buffer, readback, &[region]);
                    }
                    Kind::Image { image, extent } => {
                        let region = image_copy(extent, extent).buffer_offset(offset);
                        d.cmd_copy_image_to_buffer(
                            cmd,
                            image,
                            vk::ImageLayout::TRANSFER_SRC_OPTIMAL,
                            readback,
                            &[region],
                        );
                    }
                }
                offset += r.kind.span();
            }
            common::transfer_to_host(d, cmd);
        })?;
    }
    let mut back = vec![0u8; total as usize];
    readback_alloc.read(0, &mut back)?;
    let mut offset = 0usize;
    for r in &resources {
        let len = r.kind.bytes() as usize;
        if back[offset..offset + len] != pattern(r.seed, len)[..] {
            return Err("a resource's data changed in the move".into());
        }
        offset += r.kind.span() as usize;
    }
    // SAFETY: the GPU is idle; resources go before their allocations.
    unsafe {
        d.destroy_buffer(readback, None);
        for r in &resources {
            match r.kind {
                Kind::Buffer { buffer, .. } => d.destroy_buffer(buffer, None),
                Kind::Image { image, .. } => d.destroy_image(image, None),
            }
        }
    }
    drop(readback_alloc);
    drop(resources);
    Ok(format!(
        "defragmentation: reserved/live {before:.2} -> {after:.2}, moved {} bytes in {} moves, \
         freed {} memory objects, data verified",
        stats.bytes_moved, stats.moves, stats.memory_objects_freed
    ))
}
