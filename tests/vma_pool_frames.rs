//! VMA's pool test (`PerformPoolTests` / `TestPool_Benchmark` in `src/Tests.cpp`), retold as a
//! correctness test on a simulated integrated GPU with a 64 KiB `bufferImageGranularity`
//! over the real driver (lavapipe, validation layer on):
//!
//! a custom pool of exactly one 8 MiB block (VMA's `minBlockCount = maxBlockCount = 1`) of
//! each suballocator serves four threads. Each thread owns items (buffers of 4 to 256 KiB,
//! optimal textures of 32 to 256 texels a side) and in every frame brings some into use and
//! takes others out of use, as VMA's threads do; a request the full block cannot serve is a
//! clean "pool full" error (VMA counts them as failed allocations), never anything else.
//! Between frames, with every thread waiting, all live allocations are checked: inside the
//! block, disjoint, buffers and textures on separate granularity pages, each holding the
//! bytes its thread wrote (textures' memory too, written through the mapping), and the pool's
//! statistics equal to the live allocations. VMA measures times; this test checks results.

mod common;
mod support;

use ash::vk;
use ash_memory::*;
use std::sync::{Barrier, Mutex};
use support::{check_triples, fill, verify, GpuLayout, Rng, Sim, KIB, MIB};

const THREADS: u64 = 4;
const ITEMS_PER_THREAD: usize = 40;
const FRAMES: usize = 12;

/// An integrated GPU (every type device-local, two host-visible) with the 64 KiB granularity
/// of older NVIDIA generations, so that buffers and optimal textures sharing the one block
/// need whole pages apart.
fn layout() -> GpuLayout {
    GpuLayout {
        name: "integrated-64k-granularity",
        buffer_image_granularity: 64 * KIB,
        ..GpuLayout::intel_integrated()
    }
}

/// What an item is when it is in use.
#[derive(Clone, Copy, Debug)]
enum Kind {
    Buffer(u64),
    Texture(u32),
}

/// A resource in use: its handle, allocation and pattern seed.
struct InUse {
    handle: u64,
    alloc: MemoryAlloc,
    seed: u64,
}

struct Item {
    kind: Kind,
    in_use: Option<InUse>,
}

fn texture_info(side: u32) -> vk::ImageCreateInfo<'static> {
    common::image_info(side, vk::Format::R8G8B8A8_UNORM, vk::ImageTiling::OPTIMAL)
}

/// Brings `item` into use from `pool`: `Ok(false)` when the pool is full.
fn bring_into_use(
    pool: &dyn MemoryAllocator,
    item: &mut Item,
    seed: u64,
) -> Result<bool, AllocationError> {
    let info = AllocationCreateInfo {
        usage: MemoryUsage::Auto(HostAccess::Random),
        ..Default::default()
    };
    // SAFETY: valid create infos; the resources are destroyed before their allocations.
    let made = unsafe {
        match item.kind {
            Kind::Buffer(size) => {
                let usage = vk::BufferUsageFlags::VERTEX_BUFFER
                    | vk::BufferUsageFlags::INDEX_BUFFER
                    | vk::BufferUsageFlags::TRANSFER_DST;
                pool.create_buffer(&common::buffer_info(size, usage), &info)
                    .map(|(b, a)| (vk::Handle::as_raw(b), a))
            }
            Kind::Texture(side) => pool
                .create_image(&texture_info(side), &info)
                .map(|(i, a)| (vk::Handle::as_raw(i), a)),
        }
    };
    match made {
        Ok((handle, mut alloc)) => {
            let size = alloc.size();
            fill(&mut alloc, seed, size);
            item.in_use = Some(InUse {
                handle,
                alloc,
                seed,
            });
            Ok(true)
        }
        Err(AllocationError::PoolFull { max_blocks: 1 }) => Ok(false),
        Err(e) => Err(e),
    }
}

fn take_out_of_use(pool: &dyn MemoryAllocator, item: &mut Item) {
    if let Some(u) = item.in_use.take() {
        // SAFETY: never used by the GPU; destroyed before its memory (through the simulated
        // device, which keeps track of every bind).
        unsafe {
            match item.kind {
                Kind::Buffer(_) => pool.destroy_buffer(vk::Handle::from_raw(u.handle), u.alloc),
                Kind::Texture(_) => pool.destroy_image(vk::Handle::from_raw(u.handle), u.alloc),
            }
        }
    }
}

/// One thread's frames: `(allocations made, pool-full failures, other errors)`.
fn frames(
    pool: &dyn MemoryAllocator,
    thread: u64,
    items: &Mutex<Vec<Item>>,
    frame_done: &Barrier,
) -> (u64, u64, Vec<String>) {
    let mut rng = Rng(thread * 31 + 7);
    let (mut made, mut failed, mut errors) = (0, 0, Vec::new());
    for frame in 0..FRAMES {
        {
            let mut items = items.lock().unwrap();
            // VMA's threads use a share of their items each frame and drop the others.
            for (i, item) in items.iter_mut().enumerate() {
                if rng.below(3) != 0 {
                    continue;
                }
                if item.in_use.is_some() {
                    take_out_of_use(pool, item);
                } else {
                    let seed = thread << 32 | (frame as u64) << 16 | i as u64;
                    match bring_into_use(pool, item, seed) {
                        Ok(true) => made += 1,
                        Ok(false) => failed += 1,
                        // Not a panic here: the other threads wait for this one at the barrier.
                        Err(e) => errors.push(format!("frame {frame}, {:?}: {e}", item.kind)),
                    }
                }
            }
        }
        frame_done.wait(); // The main thread checks everything...
        frame_done.wait(); // ... and lets the next frame start.
    }
    for item in items.lock().unwrap().iter_mut() {
        take_out_of_use(pool, item);
    }
    (made, failed, errors)
}

/// Everything live across the threads, checked against the driver and the pool's statistics.
fn check_frame(
    sim: &Sim,
    pool_stats: Statistics,
    all: &[Mutex<Vec<Item>>],
    exact: bool,
    what: &str,
) {
    let guards: Vec<_> = all.iter().map(|m| m.lock().unwrap()).collect();
    let live: Vec<&InUse> = guards
        .iter()
        .flat_map(|g| g.iter().filter_map(|i| i.in_use.as_ref()))
        .collect();
    for u in &live {
        verify(&u.alloc, u.seed, u.alloc.size(), what);
    }
    let pairs: Vec<(&MemoryAlloc, u64)> = live.iter().map(|u| (&u.alloc, 1)).collect();
    check_triples(
        &pairs,
        &sim.state,
        sim.state.layout.buffer_image_granularity,
    );
    assert!(
        live.iter().all(|u| !u.alloc.is_dedicated()),
        "{what}: all in the block"
    );
    assert_eq!(pool_stats.block_count, 1, "{what}");
    assert_eq!(pool_stats.allocation_count, live.len() as u64, "{what}");
    let bytes: u64 = live.iter().map(|u| u.alloc.size()).sum();
    // The allocated ranges include what a suballocator rounds up (a buddy's power of two, a
    // ring's padding): see `Statistics`.
    if exact {
        assert_eq!(pool_stats.allocations.total, bytes, "{what}");
    } else {
        assert!(pool_stats.allocations.total >= bytes, "{what}");
    }
    assert!(
        pool_stats.allocations.total <= pool_stats.reserved_bytes,
        "{what}"
    );
}

/// The sizes of a case's items: buffers in `buffers` bytes, textures of these sides.
struct Sizes {
    block: u64,
    buffers: (u64, u64),
    sides: &'static [u32],
}

/// VMA's mix: buffers of 4 to 256 KiB, textures of 32 to 256 texels a side. About 80 items
/// in use at once of some 120 KiB each on average (9.5 MB) want more than the 4 MiB block
/// holds, so that it fills up whatever the threads' interleaving (8 MiB, close to the
/// demand, would fill only in some runs).
const MIXED: Sizes = Sizes {
    block: 4 * MIB,
    buffers: (4 * KIB, 256 * KIB),
    sides: &[32, 64, 128, 256],
};

fn pool_case<S: Suballocator + Send + Sync + 'static>(name: &str, exact: bool, sizes: &Sizes) {
    let sim = Sim::new(layout());
    let device = sim.memory_device();
    let allocator = StandardMemoryAllocator::new_default(device.clone());
    let pool = allocator
        .create_pool::<S>(&PoolCreateInfo {
            name: Some(name.into()),
            memory_type: PoolMemoryType::Find {
                memory_type_bits: u32::MAX,
                usage: MemoryUsage::Auto(HostAccess::Random),
            },
            block_size: sizes.block,
            min_block_count: 1,
            max_block_count: 1,
            ..Default::default()
        })
        .unwrap();
    let mut rng = Rng(0x5eed);
    let all: Vec<Mutex<Vec<Item>>> = (0..THREADS)
        .map(|_| {
            let items = (0..ITEMS_PER_THREAD)
                .map(|_| Item {
                    kind: if rng.below(4) == 0 {
                        Kind::Texture(*rng.pick(sizes.sides))
                    } else {
                        let (lo, hi) = sizes.buffers;
                        Kind::Buffer(rng.range(lo, hi + 1).next_multiple_of(16))
                    },
                    in_use: None,
                })
                .collect();
            Mutex::new(items)
        })
        .collect();
    let frame_done = Barrier::new(THREADS as usize + 1);
    let mut first_failure = None;
    let (made, failed, errors) = std::thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let (pool, items, frame_done) = (&pool, &all[t as usize], &frame_done);
                s.spawn(move || frames(pool, t, items, frame_done))
            })
            .collect();
        for frame in 0..FRAMES {
            frame_done.wait();
            let stats = allocator
                .statistics()
                .pools
                .iter()
                .find(|p| &*p.name == name)
                .unwrap()
                .statistics;
            // A failed check must not leave the threads waiting at the barrier forever.
            let checked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                check_frame(&sim, stats, &all, exact, &format!("{name}, frame {frame}"))
            }));
            if let Err(e) = checked {
                first_failure.get_or_insert(e);
            }
            frame_done.wait();
        }
        handles.into_iter().map(|h| h.join().unwrap()).fold(
            (0, 0, Vec::new()),
            |(m, f, mut e), (dm, df, de)| {
                e.extend(de);
                (m + dm, f + df, e)
            },
        )
    });
    if let Some(e) = first_failure {
        std::panic::resume_unwind(e);
    }
    assert!(errors.is_empty(), "{name}: {errors:#?}");
    assert!(made > 0, "{name}: nothing was made");
    assert!(
        failed > 0,
        "{name}: the block never filled up ({made} made)"
    );
    assert_eq!(allocator.statistics().total.allocation_count, 0, "{name}");
    drop(pool);
    drop(allocator);
    sim.assert_nothing_allocated();
}

/// Every suballocator that frees in any order serves the frames: the free list (VMA's
/// default algorithm), the buddy allocator and the ring (freed out of order here).
#[test]
fn threads_using_items_frame_by_frame_in_a_one_block_pool() {
    pool_case::<FreeListAllocator>("free list", true, &MIXED);
    pool_case::<BuddyAllocator>("buddy", false, &MIXED);
    pool_case::<RingAllocator>("ring", false, &MIXED);
}

/// Slots smaller than the 64 KiB granularity page: buffers and textures of at most a slot
/// share pages only with their own kind (the slot allocator's typed groups), under threads.
#[test]
fn threads_using_small_items_frame_by_frame_in_a_one_block_slot_pool() {
    // About 80 items in use at once (half of each thread's 40) of some 2 KiB each: more than
    // the block holds, so that it fills up whatever the threads' interleaving (at 256 KiB it
    // filled only in some runs).
    let small = Sizes {
        block: 128 * KIB,
        buffers: (256, 4 * KIB),
        sides: &[8, 16, 32],
    };
    pool_case::<SlotAllocator<{ 4 * KIB }>>("4 KiB slots", false, &small);
    pool_case::<FreeListAllocator>("free list of small items", true, &small);
}
