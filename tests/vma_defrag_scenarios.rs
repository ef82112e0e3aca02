//! VMA's `TestDefragmentationSimple`, retold: a custom pool of 512 KiB blocks holding
//! buffers, defragmented with the Fast algorithm while the buffers are recreated at their
//! destinations and their bytes copied by the GPU (`vkCmdCopyBuffer`), on lavapipe with the
//! validation layer. It checks what VMA checks: an empty pool plans nothing, two half-empty
//! blocks empty one with exactly four moves, in one pass or one move a pass, and buffers of
//! random sizes, some of them not movable, keep their bytes.

mod common;
mod support;

use ash::vk;
use ash_memory::*;
use common::TestContext;
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

fn create(ctx: &TestContext, pool: &MemoryPool<FreeListAllocator>, size: u64, seed: u64) -> Live {
    let info = AllocationCreateInfo {
        usage: MemoryUsage::Upload,
        ..Default::default()
    };
    // SAFETY: a valid buffer info; the buffer is destroyed before its allocation.
    let (buffer, mut alloc) =
        unsafe { pool.create_buffer(&common::buffer_info(size, usage()), &info) }.unwrap();
    fill(&mut alloc, seed, size);
    let _ = ctx;
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
        .map(|seed| create(ctx, pool, BUF, seed))
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
fn fast_defragmentation_of_buffers_moves_what_vma_moves_and_keeps_every_byte() {
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
        ..fast.clone()
    });
    add_all(&mut defrag, &ctx, &mut live, &movable);
    let per_pass = run(&ctx, &mut defrag, &mut live, &movable);
    let stats = defrag.finish();
    assert_eq!(&per_pass[..4], &[1, 1, 1, 1], "{per_pass:?}");
    assert!(per_pass[4..].iter().all(|&n| n == 0), "{per_pass:?}");
    assert_eq!((stats.moves, stats.bytes_moved), (4, 4 * BUF), "{stats:?}");
    verify_all(&live, "one move a pass");
    live.drain(..).for_each(|l| destroy(&ctx, l));

    // Random sizes, 60 % freed, a fifth of the rest not movable.
    let mut rng = Rng(667);
    let mut live: Vec<Live> = (0..100)
        .map(|seed| {
            let size = (32 + rng.below(4 * BUF - 32 + 1)).next_multiple_of(64);
            create(&ctx, &pool, size, 1000 + seed)
        })
        .collect();
    for _ in 0..60 {
        let l = live.remove(rng.below(live.len() as u64) as usize);
        destroy(&ctx, l);
    }
    let pinned = live.len() / 5;
    let movable: Vec<usize> = (pinned..live.len()).collect();
    let places: Vec<_> = live[..pinned]
        .iter()
        .map(|l| (l.alloc.memory(), l.alloc.offset()))
        .collect();
    let mut defrag = pool.defragmentation(&fast);
    add_all(&mut defrag, &ctx, &mut live, &movable);
    run(&ctx, &mut defrag, &mut live, &movable);
    let stats = defrag.finish();
    assert!(stats.moves > 0, "{stats:?}");
    let after: Vec<_> = live[..pinned]
        .iter()
        .map(|l| (l.alloc.memory(), l.alloc.offset()))
        .collect();
    assert_eq!(places, after, "allocations not added never move");
    verify_all(&live, "random sizes");
    live.drain(..).for_each(|l| destroy(&ctx, l));
    drop(pool);
    assert!(ctx.messages().is_empty(), "{:?}", ctx.messages());
}
