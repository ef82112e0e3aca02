//! Custom pools of every suballocator at the two ends of their allocations' lives: a Fast
//! defragmentation that empties whole blocks (the one that helps bump and ring pools), and
//! a pool dropped while its allocations live on and are freed later by other threads.

mod common;
mod support;

use ash_memory::*;
use support::{fill, verify, GpuLayout, Rng, Sim, KIB, MIB};

const QUARTER: u64 = 256 * KIB;

fn upload() -> AllocationCreateInfo {
    AllocationCreateInfo {
        usage: MemoryUsage::Upload,
        ..Default::default()
    }
}

fn request(device: &MemoryDevice, size: u64) -> AllocationRequirements {
    AllocationRequirements {
        layout: DeviceLayout::from_size_alignment(size, 256).unwrap(),
        memory_type_bits: device.memory_properties().all_types_mask(),
        prefers_dedicated_allocation: false,
        requires_dedicated_allocation: false,
    }
}

fn pool_info(max_block_count: usize) -> PoolCreateInfo {
    PoolCreateInfo {
        memory_type: PoolMemoryType::Find {
            memory_type_bits: u32::MAX,
            usage: MemoryUsage::Upload,
        },
        block_size: MIB,
        max_block_count,
        block_arenas: Some(1),
        ..Default::default()
    }
}

/// Three 1 MiB blocks of four 256 KiB allocations; the first is emptied and gets a 64 KiB
/// allocation, the other two keep one each. Fast moves the two into the first block's room
/// and both blocks go back to the driver, with every byte kept.
fn fast_empties_whole_blocks<S: Suballocator + Send + Sync + 'static>(info: DefragmentationInfo) {
    let sim = Sim::new(GpuLayout::amd_discrete_bar());
    let device = sim.memory_device();
    let allocator = StandardMemoryAllocator::new_default(device.clone());
    let pool = allocator.create_pool::<S>(&pool_info(8)).unwrap();
    let mut quarters: Vec<Option<MemoryAlloc>> = (0..12u64)
        .map(|i| {
            let mut a = pool
                .allocate(
                    request(&device, QUARTER),
                    AllocationType::Linear,
                    &upload(),
                    None,
                )
                .unwrap();
            fill(&mut a, i, QUARTER);
            Some(a)
        })
        .collect();
    assert_eq!(pool.block_count(), 3, "four quarters a block");
    let first = quarters[0].as_ref().unwrap().memory();
    assert!(quarters[..4].iter().flatten().all(|a| a.memory() == first));
    // Newest first, so that a ring takes its room back as it goes.
    for i in [3, 2, 1, 0, 7, 6, 5, 11, 10, 9] {
        quarters[i] = None;
    }
    let mut small = pool
        .allocate(
            request(&device, 64 * KIB),
            AllocationType::Linear,
            &upload(),
            None,
        )
        .unwrap();
    fill(&mut small, 100, 64 * KIB);
    let mut live: Vec<(MemoryAlloc, u64, u64)> = vec![(small, 100, 64 * KIB)];
    for i in [4, 8] {
        live.push((quarters[i].take().unwrap(), i as u64, QUARTER));
    }
    let blocks_before = pool.block_count();
    let mut occupied: Vec<_> = live.iter().map(|(a, _, _)| a.memory()).collect();
    occupied.sort();
    occupied.dedup();
    // An empty block the allocation path kept goes back too, as the defragmentation empties
    // blocks of the pool (see the defragmentation's docs).
    let empty_before = blocks_before - occupied.len();
    let mut defrag = pool.defragmentation(&info);
    for (a, _, _) in &mut live {
        defrag.add(a, DeviceAlignment::MIN).unwrap();
    }
    let mut passes = 0;
    while let Some(mut pass) = defrag.next_pass() {
        passes += 1;
        assert!(passes < 10, "the passes never end");
        let open: Vec<usize> = pass.moves().map(|m| m.index()).collect();
        for index in open {
            let id = pass.get(index).unwrap().id();
            let (src, _, _) = &mut live[id];
            support::defrag::copy_and_complete(&mut pass, index, src).unwrap();
        }
        pass.end();
    }
    let stats = defrag.finish();
    for (a, seed, size) in &live {
        verify(a, *seed, *size, "after the defragmentation");
    }
    let memory = live[0].0.memory();
    assert!(
        live.iter().all(|(a, _, _)| a.memory() == memory),
        "{blocks_before} blocks before, {stats:?}"
    );
    assert_eq!(pool.block_count(), 1, "{stats:?}");
    assert_eq!(sim.state.live_objects(), 1);
    assert_eq!(
        stats.memory_objects_freed,
        occupied.len() - 1 + empty_before,
        "{stats:?}"
    );
    assert_eq!(pool.statistics().total.allocation_count, 3);
    drop(live);
    drop((pool, allocator));
    sim.assert_nothing_allocated();
}

#[test]
fn fast_defragmentation_empties_whole_blocks_of_every_suballocator() {
    // Unbounded, and one move of at most 300 KiB a pass (the blocks drain over passes).
    for info in [
        DefragmentationInfo::default(),
        DefragmentationInfo {
            max_bytes_per_pass: 300 * KIB,
            max_moves_per_pass: 1,
            ..Default::default()
        },
    ] {
        fast_empties_whole_blocks::<FreeListAllocator>(info);
        fast_empties_whole_blocks::<BuddyAllocator>(info);
        fast_empties_whole_blocks::<BumpAllocator>(info);
        fast_empties_whole_blocks::<RingAllocator>(info);
        fast_empties_whole_blocks::<SlotAllocator<{ 256 * 1024 }>>(info);
    }
}

/// The pool and its allocator are dropped with allocations alive; four threads check and
/// free them later, in any order. Every memory object goes back to the driver.
fn dropped_pool_freed_from_threads<S: Suballocator + Send + Sync + 'static>(max_size: u64) {
    let sim = Sim::new(GpuLayout::nvidia_discrete());
    let device = sim.memory_device();
    let allocator = StandardMemoryAllocator::new(
        device.clone(),
        GenericMemoryAllocatorCreateInfo {
            // The allocations outlive the allocator on purpose: logged, not a panic.
            debug: DebugOptions {
                leak_check: LeakCheck::Log,
                margin: 16,
                ..Default::default()
            },
            ..Default::default()
        },
    )
    .unwrap();
    let pool = allocator
        .create_pool::<S>(&PoolCreateInfo {
            min_block_count: 1,
            ..pool_info(usize::MAX)
        })
        .unwrap();
    let mut rng = Rng(7);
    let mut live = Vec::new();
    for seed in 0..200u64 {
        let size = 1 + rng.below(max_size);
        let mut a = pool
            .allocate(
                request(&device, size),
                AllocationType::Linear,
                &upload(),
                None,
            )
            .unwrap();
        fill(&mut a, seed, size);
        live.push((a, seed, size));
    }
    assert!(pool.block_count() > 1, "several blocks");
    drop(pool);
    drop(allocator);
    let mut chunks: Vec<Vec<_>> = (0..4).map(|_| Vec::new()).collect();
    for (i, x) in live.into_iter().enumerate() {
        chunks[i % 4].push(x);
    }
    std::thread::scope(|s| {
        for mut chunk in chunks {
            s.spawn(move || {
                let mut rng = Rng(chunk.len() as u64);
                while !chunk.is_empty() {
                    let (a, seed, size) = chunk.swap_remove(rng.below(chunk.len() as u64) as usize);
                    verify(&a, seed, size, "an allocation of a dropped pool");
                    drop(a);
                }
            });
        }
    });
    sim.assert_nothing_allocated();
}

#[test]
fn a_dropped_pool_of_every_suballocator_is_freed_by_other_threads() {
    dropped_pool_freed_from_threads::<FreeListAllocator>(32 * KIB);
    dropped_pool_freed_from_threads::<BuddyAllocator>(32 * KIB);
    dropped_pool_freed_from_threads::<BumpAllocator>(32 * KIB);
    dropped_pool_freed_from_threads::<RingAllocator>(32 * KIB);
    dropped_pool_freed_from_threads::<SlotAllocator<{ 16 * 1024 }>>(16 * KIB - 512);
}
