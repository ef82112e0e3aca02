//! VMA's defragmentation scenarios, retold, on lavapipe with the validation layer: the
//! resources are recreated at their destinations and their contents copied by the GPU.
//!
//! - `TestDefragmentationSimple`: a custom pool of 512 KiB blocks holding buffers,
//!   defragmented with the Fast algorithm: an empty pool plans nothing, two half-empty blocks
//!   empty one with exactly four moves, in one pass or one move a pass, and buffers of random
//!   sizes, some of them not movable, keep their bytes.
//! - `TestDefragmentationIncrementalBasic`: optimal-tiling images and buffers, most of them
//!   freed, defragmented in bounded passes with `vkCmdCopyImage` and `vkCmdCopyBuffer`;
//!   every texel and byte is read back through the GPU afterwards (VMA leaves that check
//!   out);
//! - `TestDefragmentationVsMapping`: mapped allocations with user data, defragmented while
//!   the application skips some moves.

mod common;
mod support;

use ash::vk;
use ash_memory::*;
use common::{Resource, TestContext};
use support::{fill, verify, Rng, KIB};

const BUF: u64 = 64 * KIB;
const BLOCK: u64 = 8 * BUF;

/// A buffer, its allocation, its pattern seed and its size.
struct Live {
    buffer: vk::Buffer,
    alloc: MemoryAlloc,
    seed: u64,
    size: u64,
}

fn usage() -> vk::BufferUsageFlags {
    vk::BufferUsageFlags::TRANSFER_SRC | vk::BufferUsageFlags::TRANSFER_DST
}

fn create(pool: &MemoryPool<FreeListAllocator>, size: u64, seed: u64) -> Live {
    let info = AllocationCreateInfo {
        usage: MemoryUsage::Upload,
        ..Default::default()
    };
    // SAFETY: a valid buffer info; the buffer is destroyed before its allocation.
    let (buffer, mut alloc) =
        unsafe { pool.create_buffer(&common::buffer_info(size, usage()), &info) }.unwrap();
    fill(&mut alloc, seed, size);
    Live {
        buffer,
        alloc,
        seed,
        size,
    }
}

fn destroy(ctx: &TestContext, live: Live) {
    // SAFETY: idle; destroyed before its memory.
    unsafe { ctx.device.destroy_buffer(live.buffer, None) };
}

/// Runs `defrag` to its end over `live[movable[id]]`: each move gets a new buffer bound at
/// its destination, one submission copies the pass's buffers, the old buffers go and the
/// moves complete. Returns the moves of each pass.
fn run(
    ctx: &TestContext,
    defrag: &mut Defragmentation<FreeListAllocator>,
    live: &mut [Live],
    movable: &[usize],
) -> Vec<usize> {
    let mut per_pass = Vec::new();
    while let Some(mut pass) = defrag.next_pass() {
        assert!(per_pass.len() < 1000, "the passes never end");
        let mut copies = Vec::new();
        for m in pass.moves() {
            let entry = &live[movable[m.id()]];
            // SAFETY: a valid buffer info, bound below to memory made for its requirements.
            let new = unsafe {
                ctx.device
                    .create_buffer(&common::buffer_info(entry.size, usage()), None)
            }
            .unwrap();
            // SAFETY: `new` is unbound and fits the destination.
            unsafe { m.destination().bind_buffer(new) }.unwrap();
            copies.push((m.index(), m.id(), new));
        }
        ctx.submit(|d, cmd| {
            for &(_, id, new) in &copies {
                let entry = &live[movable[id]];
                let region = vk::BufferCopy::default().size(entry.size);
                // SAFETY: both buffers are bound, idle and live until the submission ends.
                unsafe { d.cmd_copy_buffer(cmd, entry.buffer, new, &[region]) };
            }
        });
        for &(index, id, new) in &copies {
            let entry = &mut live[movable[id]];
            // SAFETY: the copy is done; the old buffer goes before its memory.
            unsafe { ctx.device.destroy_buffer(entry.buffer, None) };
            entry.buffer = new;
            pass.complete(index, &mut entry.alloc).unwrap();
        }
        per_pass.push(copies.len());
        pass.end();
    }
    per_pass
}

fn verify_all(live: &[Live], what: &str) {
    for l in live {
        verify(&l.alloc, l.seed, l.size, what);
    }
}

/// Two full blocks of 64 KiB buffers, every other one freed: four in each block.
fn two_half_blocks(ctx: &TestContext, pool: &MemoryPool<FreeListAllocator>) -> Vec<Live> {
    let all: Vec<Live> = (0..2 * BLOCK / BUF)
        .map(|seed| create(pool, BUF, seed))
        .collect();
    assert_eq!(pool.block_count(), 2);
    let mut live = Vec::new();
    for (i, l) in all.into_iter().enumerate() {
        if i % 2 == 0 {
            live.push(l);
        } else {
            destroy(ctx, l);
        }
    }
    live
}

fn add_all(
    defrag: &mut Defragmentation<FreeListAllocator>,
    ctx: &TestContext,
    live: &mut [Live],
    movable: &[usize],
) {
    for (id, &i) in movable.iter().enumerate() {
        let l = &mut live[i];
        // SAFETY: a valid buffer.
        let a = unsafe { ctx.device.get_buffer_memory_requirements(l.buffer) }.alignment;
        assert_eq!(
            defrag.add(&mut l.alloc, DeviceAlignment::new(a).unwrap()),
            Ok(id)
        );
    }
}

#[test]
fn defragmentation_of_buffers_moves_what_vma_moves_and_keeps_every_byte() {
    let ctx = TestContext::new();
    let device = ctx.memory_device();
    let allocator = StandardMemoryAllocator::new_default(device.clone());
    let pool = allocator
        .create_pool::<FreeListAllocator>(&PoolCreateInfo {
            memory_type: PoolMemoryType::Find {
                memory_type_bits: u32::MAX,
                usage: MemoryUsage::Upload,
            },
            block_size: BLOCK,
            block_arenas: Some(1),
            ..Default::default()
        })
        .unwrap();
    let fast = DefragmentationInfo {
        algorithm: DefragmentationAlgorithm::Fast,
        ..Default::default()
    };

    // An empty pool: nothing to plan.
    let mut defrag = pool.defragmentation(&fast);
    assert!(defrag.next_pass().is_none());
    let stats = defrag.finish();
    assert_eq!(
        (stats.moves, stats.bytes_moved, stats.memory_objects_freed),
        (0, 0, 0)
    );

    // Everything at once: the four of one block move into the other's holes.
    let mut live = two_half_blocks(&ctx, &pool);
    let movable: Vec<usize> = (0..live.len()).collect();
    let mut defrag = pool.defragmentation(&fast);
    add_all(&mut defrag, &ctx, &mut live, &movable);
    run(&ctx, &mut defrag, &mut live, &movable);
    let stats = defrag.finish();
    assert_eq!((stats.moves, stats.bytes_moved), (4, 4 * BUF), "{stats:?}");
    verify_all(&live, "one go");
    let memory = live[0].alloc.memory();
    assert!(
        live.iter().all(|l| l.alloc.memory() == memory),
        "one block holds all"
    );
    live.drain(..).for_each(|l| destroy(&ctx, l));

    // One move of 64 KiB a pass: four passes, each makes progress.
    let mut live = two_half_blocks(&ctx, &pool);
    let movable: Vec<usize> = (0..live.len()).collect();
    let mut defrag = pool.defragmentation(&DefragmentationInfo {
        max_moves_per_pass: 1,
        max_bytes_per_pass: BUF,
        ..fast
    });
    add_all(&mut defrag, &ctx, &mut live, &movable);
    let per_pass = run(&ctx, &mut defrag, &mut live, &movable);
    let stats = defrag.finish();
    assert_eq!(&per_pass[..4], &[1, 1, 1, 1], "{per_pass:?}");
    assert!(per_pass[4..].iter().all(|&n| n == 0), "{per_pass:?}");
    assert_eq!((stats.moves, stats.bytes_moved), (4, 4 * BUF), "{stats:?}");
    verify_all(&live, "one move a pass");
    live.drain(..).for_each(|l| destroy(&ctx, l));

    // Random sizes, 60 % freed, a fifth of the rest not movable: with Fast, then with Full
    // in passes of at most 256 KiB.
    let full = DefragmentationInfo {
        algorithm: DefragmentationAlgorithm::Full,
        max_bytes_per_pass: 4 * BUF,
        ..Default::default()
    };
    for (round, info) in [fast, full].into_iter().enumerate() {
        let mut rng = Rng(667 + round as u64);
        let mut live: Vec<Live> = (0..100)
            .map(|seed| {
                let size = (32 + rng.below(4 * BUF - 32 + 1)).next_multiple_of(64);
                create(&pool, size, 1000 + seed)
            })
            .collect();
        for _ in 0..60 {
            let l = live.remove(rng.below(live.len() as u64) as usize);
            destroy(&ctx, l);
        }
        let pinned = live.len() / 5;
        let movable: Vec<usize> = (pinned..live.len()).collect();
        let places = |live: &[Live]| -> Vec<_> {
            live[..pinned]
                .iter()
                .map(|l| (l.alloc.memory(), l.alloc.offset()))
                .collect()
        };
        let before = places(&live);
        let mut defrag = pool.defragmentation(&info);
        add_all(&mut defrag, &ctx, &mut live, &movable);
        run(&ctx, &mut defrag, &mut live, &movable);
        let stats = defrag.finish();
        assert!(stats.moves > 0, "{info:?}: {stats:?}");
        assert_eq!(before, places(&live), "allocations not added never move");
        verify_all(&live, &format!("random sizes, {info:?}"));
        let spans: Vec<_> = live
            .iter()
            .map(|l| (l.alloc.memory(), l.alloc.offset(), l.alloc.size()))
            .collect();
        for (i, a) in spans.iter().enumerate() {
            for b in &spans[i + 1..] {
                assert!(
                    a.0 != b.0 || a.1 + a.2 <= b.1 || b.1 + b.2 <= a.1,
                    "{info:?}: {a:?} and {b:?} overlap"
                );
            }
        }
        live.drain(..).for_each(|l| destroy(&ctx, l));
    }
    drop(pool);
    assert!(ctx.messages().is_empty(), "{:?}", ctx.messages());
}

/// Creates a resource like `like` (not bound).
fn recreate(ctx: &TestContext, like: Resource) -> Resource {
    // SAFETY: valid create infos.
    unsafe {
        match like {
            Resource::Buffer(_, size) => Resource::Buffer(
                ctx.device
                    .create_buffer(&common::buffer_info(size, usage()), None)
                    .unwrap(),
                size,
            ),
            Resource::Image(_, side) => Resource::Image(
                ctx.device
                    .create_image(&common::texture_info(side), None)
                    .unwrap(),
                side,
            ),
        }
    }
}

fn destroy_resource(ctx: &TestContext, r: Resource) {
    // SAFETY: idle; destroyed before its memory.
    unsafe {
        match r {
            Resource::Buffer(b, _) => ctx.device.destroy_buffer(b, None),
            Resource::Image(i, _) => ctx.device.destroy_image(i, None),
        }
    }
}

/// Host-visible staging buffers, one per resource, filled with (or for) `bytes` bytes each.
fn staging(
    allocator: &StandardMemoryAllocator,
    sizes: impl Iterator<Item = u64>,
) -> Vec<(vk::Buffer, MemoryAlloc)> {
    let info = AllocationCreateInfo {
        usage: MemoryUsage::Upload,
        ..Default::default()
    };
    sizes
        .map(|size| {
            // SAFETY: a valid buffer info; destroyed before its allocation.
            unsafe { allocator.create_buffer(&common::buffer_info(size, usage()), &info) }.unwrap()
        })
        .collect()
}

#[test]
fn images_and_buffers_defragmented_in_passes_keep_every_texel() {
    let ctx = TestContext::new();
    let device = ctx.memory_device();
    let allocator = StandardMemoryAllocator::new_default(device.clone());
    let pool = allocator
        .create_pool::<FreeListAllocator>(&PoolCreateInfo {
            memory_type: PoolMemoryType::Find {
                memory_type_bits: u32::MAX,
                usage: MemoryUsage::DeviceOnly,
            },
            block_size: 2 << 20,
            block_arenas: Some(1),
            ..Default::default()
        })
        .unwrap();
    let mut rng = Rng(234522);
    let dedicated_off = AllocationCreateInfo::default();
    let mut all: Vec<(Resource, MemoryAlloc)> = Vec::new();
    for _ in 0..60 {
        let side = [32, 64, 128][rng.below(3) as usize];
        // SAFETY: a valid image info; destroyed before its allocation.
        let (image, alloc) =
            unsafe { pool.create_image(&common::texture_info(side), &dedicated_off) }.unwrap();
        assert_eq!(alloc.allocation_type(), AllocationType::NonLinear);
        all.push((Resource::Image(image, side), alloc));
    }
    for _ in 0..30 {
        let size = (64 * KIB + rng.below(192 * KIB)).next_multiple_of(16);
        // SAFETY: a valid buffer info; destroyed before its allocation.
        let (buffer, alloc) =
            unsafe { pool.create_buffer(&common::buffer_info(size, usage()), &dedicated_off) }
                .unwrap();
        all.push((Resource::Buffer(buffer, size), alloc));
    }
    let blocks_before = pool.block_count();
    for _ in 0..all.len() * 7 / 10 {
        let (r, alloc) = all.remove(rng.below(all.len() as u64) as usize);
        destroy_resource(&ctx, r);
        drop(alloc);
    }

    // Upload a pattern into each through the GPU; images end in TRANSFER_SRC_OPTIMAL.
    let mut uploads = staging(&allocator, all.iter().map(|(r, _)| r.bytes()));
    for (i, (_, alloc)) in uploads.iter_mut().enumerate() {
        let size = alloc.size().min(all[i].0.bytes());
        fill(alloc, i as u64, size);
    }
    ctx.submit(|d, cmd| {
        for ((r, _), (src, _)) in all.iter().zip(&uploads) {
            // SAFETY: the resources are bound and idle; the layouts are as recorded.
            unsafe {
                match *r {
                    Resource::Buffer(b, size) => {
                        d.cmd_copy_buffer(cmd, *src, b, &[vk::BufferCopy::default().size(size)])
                    }
                    Resource::Image(image, side) => {
                        common::transition(
                            d,
                            cmd,
                            image,
                            vk::ImageLayout::UNDEFINED,
                            vk::ImageLayout::TRANSFER_DST_OPTIMAL,
                        );
                        d.cmd_copy_buffer_to_image(
                            cmd,
                            *src,
                            image,
                            vk::ImageLayout::TRANSFER_DST_OPTIMAL,
                            &[common::image_copy(side, side)],
                        );
                        common::transition(
                            d,
                            cmd,
                            image,
                            vk::ImageLayout::TRANSFER_DST_OPTIMAL,
                            vk::ImageLayout::TRANSFER_SRC_OPTIMAL,
                        );
                    }
                }
            }
        }
    });
    for (b, a) in uploads.drain(..) {
        // SAFETY: the upload is done.
        unsafe { allocator.destroy_buffer(b, a) };
    }

    let mut defrag = pool.defragmentation(&DefragmentationInfo {
        algorithm: DefragmentationAlgorithm::Full,
        max_bytes_per_pass: 512 * KIB,
        ..Default::default()
    });
    for (r, alloc) in &mut all {
        // SAFETY: valid resources.
        let alignment = unsafe {
            match *r {
                Resource::Buffer(b, _) => ctx.device.get_buffer_memory_requirements(b),
                Resource::Image(i, _) => ctx.device.get_image_memory_requirements(i),
            }
        }
        .alignment;
        defrag
            .add(alloc, DeviceAlignment::new(alignment).unwrap())
            .unwrap();
    }
    let mut passes = 0;
    while let Some(mut pass) = defrag.next_pass() {
        passes += 1;
        assert!(passes < 1000, "the passes never end");
        let mut moves = Vec::new();
        for m in pass.moves() {
            let old = all[m.id()].0;
            let new = recreate(&ctx, old);
            // SAFETY: `new` is unbound; the destination was made for the old one's needs.
            unsafe {
                match new {
                    Resource::Buffer(b, _) => m.destination().bind_buffer(b),
                    Resource::Image(i, _) => m.destination().bind_image(i),
                }
            }
            .unwrap();
            moves.push((m.index(), m.id(), old, new));
        }
        ctx.submit(|d, cmd| {
            for &(_, _, old, new) in &moves {
                // SAFETY: both bound and idle; the old image is in TRANSFER_SRC_OPTIMAL.
                unsafe {
                    match (old, new) {
                        (Resource::Buffer(src, size), Resource::Buffer(dst, _)) => d
                            .cmd_copy_buffer(
                                cmd,
                                src,
                                dst,
                                &[vk::BufferCopy::default().size(size)],
                            ),
                        (Resource::Image(src, side), Resource::Image(dst, _)) => {
                            common::transition(
                                d,
                                cmd,
                                dst,
                                vk::ImageLayout::UNDEFINED,
                                vk::ImageLayout::TRANSFER_DST_OPTIMAL,
                            );
                            let layers = vk::ImageSubresourceLayers {
                                aspect_mask: vk::ImageAspectFlags::COLOR,
                                mip_level: 0,
                                base_array_layer: 0,
                                layer_count: 1,
                            };
                            let region = vk::ImageCopy::default()
                                .src_subresource(layers)
                                .dst_subresource(layers)
                                .extent(vk::Extent3D {
                                    width: side,
                                    height: side,
                                    depth: 1,
                                });
                            d.cmd_copy_image(
                                cmd,
                                src,
                                vk::ImageLayout::TRANSFER_SRC_OPTIMAL,
                                dst,
                                vk::ImageLayout::TRANSFER_DST_OPTIMAL,
                                &[region],
                            );
                            common::transition(
                                d,
                                cmd,
                                dst,
                                vk::ImageLayout::TRANSFER_DST_OPTIMAL,
                                vk::ImageLayout::TRANSFER_SRC_OPTIMAL,
                            );
                        }
                        _ => unreachable!("a resource is recreated as its own kind"),
                    }
                }
            }
        });
        for (index, id, old, new) in moves {
            destroy_resource(&ctx, old);
            all[id].0 = new;
            pass.complete(index, &mut all[id].1).unwrap();
        }
        pass.end();
    }
    let stats = defrag.finish();
    assert!(stats.moves > 0 && stats.bytes_moved > 0, "{stats:?}");
    assert!(stats.memory_objects_freed > 0, "{stats:?}");
    assert!(pool.block_count() < blocks_before);
    assert!(passes > 1, "bounded passes: {passes}");

    // Read everything back through the GPU.
    let readbacks = staging(&allocator, all.iter().map(|(r, _)| r.bytes()));
    ctx.submit(|d, cmd| {
        for ((r, _), (dst, _)) in all.iter().zip(&readbacks) {
            // SAFETY: bound and idle; images are in TRANSFER_SRC_OPTIMAL; `dst` holds them.
            unsafe { r.cmd_copy_to(d, cmd, *dst) };
        }
        TestContext::transfer_barrier(d, cmd);
    });
    for (i, ((r, _), (_, back))) in all.iter().zip(&readbacks).enumerate() {
        back.invalidate(0, back.size()).unwrap();
        verify(back, i as u64, r.bytes(), "read back after the moves");
    }
    for (b, a) in readbacks {
        // SAFETY: the readback is done.
        unsafe { allocator.destroy_buffer(b, a) };
    }
    for (r, alloc) in all {
        destroy_resource(&ctx, r);
        drop(alloc);
    }
    drop(pool);
    assert!(ctx.messages().is_empty(), "{:?}", ctx.messages());
}

/// `TestDefragmentationVsMapping`: 160 mapped 64 KiB allocations with user data in a pool of
/// 1 MiB blocks, two thirds freed at random, defragmented with Full while the application
/// skips one move in five. Moves happen and blocks are freed; every allocation, moved or
/// skipped, is still mapped, keeps its bytes (copied on the host) and its user data.
#[test]
fn mapped_allocations_with_user_data_survive_a_defragmentation_with_skipped_moves() {
    let sim = support::Sim::new(support::GpuLayout::lavapipe());
    let device = sim.memory_device();
    let allocator = StandardMemoryAllocator::new_default(device.clone());
    let pool = support::vma::host_pool::<FreeListAllocator>(&allocator, 1 << 20, 0, usize::MAX);
    let mut rng = Rng(2355762);
    let mut live: Vec<support::vma::Patterned> = (0..160)
        .map(|seed| {
            let mut p = support::vma::patterned(&pool, &device, BUF, seed);
            p.0.set_user_data(Some(std::sync::Arc::new(seed)));
            p
        })
        .collect();
    for _ in 0..160 * 2 / 3 {
        live.remove(rng.below(live.len() as u64) as usize);
    }
    let blocks_before = pool.block_count();
    let mut defrag = pool.defragmentation(&DefragmentationInfo {
        algorithm: DefragmentationAlgorithm::Full,
        ..Default::default()
    });
    for (a, _, _) in &mut live {
        defrag.add(a, DeviceAlignment::new(256).unwrap()).unwrap();
    }
    let mut skipped = 0;
    let mut passes = 0;
    while let Some(mut pass) = defrag.next_pass() {
        passes += 1;
        assert!(passes < 1000, "the passes never end");
        let open: Vec<(usize, usize)> = pass.moves().map(|m| (m.index(), m.id())).collect();
        for (index, id) in open {
            if rng.below(5) == 0 {
                pass.skip(index).unwrap();
                skipped += 1;
            } else {
                support::defrag::copy_and_complete(&mut pass, index, &mut live[id].0).unwrap();
            }
        }
        pass.end();
    }
    let stats = defrag.finish();
    assert!(stats.moves > 0 && stats.bytes_moved > 0, "{stats:?}");
    assert!(stats.memory_objects_freed > 0, "{stats:?}");
    assert!(pool.block_count() < blocks_before);
    assert!(skipped > 0, "some moves were skipped");
    for (a, seed, size) in &live {
        assert!(a.mapped_ptr().is_some(), "still mapped");
        assert_eq!(a.user_data_as::<u64>(), Some(seed), "user data kept");
        verify(a, *seed, *size, "after the moves and skips");
    }
    drop(live);
    drop(pool);
    drop(allocator);
    sim.assert_nothing_allocated();
}
