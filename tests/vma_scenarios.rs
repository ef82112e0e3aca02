//! Scenarios of VMA's own test suite (`src/Tests.cpp`) that no other test here covers,
//! retold for this crate's API and run on the real driver (lavapipe, validation layer on):
//!
//! - `TestPool_SameSize`: a custom pool filled to the byte with same-size allocations,
//!   refilled after random frees, its statistics, a Full defragmentation, a request larger
//!   than a block;
//! - `TestPoolsAndAllocationParameters`: the default pools, a flexible custom pool and a
//!   one-block pool under the allocate preferences, and the statistics summed over them;
//! - `TestLinearAllocatorMultiBlock`: a linear (ring) pool spilling into a second block and
//!   giving it back, freed at random and as a stack;
//! - `TestLinearAllocator`: a one-block ring pool used as a stack and as a ring buffer;
//! - `TestPool_MinBlockCount`: a pool's minimum and its one kept empty block;
//! - `TestAllocationVersusResourceSize`: every allocation holds its resource's size.
//!
//! The statistics and virtual-block scenarios are in `vma_stats_scenarios.rs`, the
//! defragmentation ones in `vma_defrag_scenarios.rs`.
//!
//! Each checks what VMA checks: data written earlier is read back intact, offsets are
//! aligned and disjoint, statistics equal the sums, and errors come where VMA gives errors.

mod common;
mod support;

use ash::vk;
use ash_memory::*;
use common::TestContext;
use support::defrag::copy_and_complete;
use support::vma::{
    host_pool, patterned, patterned_at, pool_statistics, reqs, upload, verify_all, Patterned,
};
use support::{check_triples, fill, verify, GpuLayout, Rng, Sim, MIB};

const BUF: u64 = MIB;
const BUF_COUNT: usize = 100;

/// `TestPool_SameSize`: 100 buffers of 1 MiB fill a pool of at most four 25 MiB blocks to the
/// byte; the 101st is an error. After random frees and allocations the pool fills up to 100
/// again, one free leaves exactly one free range of 1 MiB, and a Full defragmentation of every
/// other buffer packs 50 of them into two blocks, moving the 24 or 25 of the blocks emptied.
#[test]
fn same_size_allocations_fill_a_pool_exactly_and_again_after_random_frees() {
    same_size::<FreeListAllocator>();
}

/// The same with the suballocators whose freed ranges can be reused one by one.
#[test]
fn same_size_allocations_fill_buddy_and_slot_pools_exactly_too() {
    same_size::<BuddyAllocator>();
    same_size::<SlotAllocator<BUF>>();
}

fn same_size<S: Suballocator + Send + Sync + 'static>() {
    let sim = Sim::new(GpuLayout::lavapipe());
    let device = sim.memory_device();
    let allocator = StandardMemoryAllocator::new_default(device.clone());
    let block = BUF * BUF_COUNT as u64 / 4;
    let pool = host_pool::<S>(&allocator, block, 1, 4);
    let mut rng = Rng(123);
    let mut seed = 0;
    let mut next = |pool: &MemoryPool<S>| {
        seed += 1;
        patterned(pool, &device, BUF, seed)
    };

    let mut live: Vec<Patterned> = (0..BUF_COUNT).map(|_| next(&pool)).collect();
    assert_eq!(pool.block_count(), 4);
    let err = pool
        .allocate(
            reqs(&device, BUF, 256),
            AllocationType::Linear,
            &upload(),
            None,
        )
        .unwrap_err();
    assert_eq!(err, AllocationError::PoolFull { max_blocks: 4 });

    for _ in 0..BUF_COUNT / 10 {
        live.swap_remove(rng.below(live.len() as u64) as usize);
    }
    for _ in 0..BUF_COUNT {
        if rng.below(2) == 0 {
            if live.len() < BUF_COUNT {
                live.push(next(&pool));
            }
        } else if !live.is_empty() {
            live.swap_remove(rng.below(live.len() as u64) as usize);
        }
    }
    while live.len() < BUF_COUNT {
        live.push(next(&pool));
    }
    verify_all(&live, "after random frees and refills");
    let pairs: Vec<_> = live.iter().map(|(a, _, _)| (a, 256)).collect();
    check_triples(&pairs, &sim.state, 1);
    drop(pairs);

    live.pop();
    let stats = pool_statistics(&allocator);
    assert_eq!(stats.allocation_count, BUF_COUNT as u64 - 1);
    assert_eq!(stats.block_count, 4);
    assert_eq!(stats.reserved_bytes, BUF * BUF_COUNT as u64);
    assert_eq!(stats.allocations.total, BUF * (BUF_COUNT as u64 - 1));
    assert_eq!(stats.free_ranges.count, 1, "{stats:?}");
    assert_eq!(stats.free_bytes(), BUF);

    live.clear();
    live = (0..BUF_COUNT).map(|_| next(&pool)).collect();
    // Every other one goes: 12 or 13 stay in each block.
    let mut index = 0;
    live.retain(|_| {
        index += 1;
        index % 2 == 0
    });
    let mut defrag = pool.defragmentation(&DefragmentationInfo {
        algorithm: DefragmentationAlgorithm::Full,
        ..Default::default()
    });
    for (a, _, _) in &mut live {
        defrag.add(a, DeviceAlignment::new(256).unwrap()).unwrap();
    }
    let mut passes = 0;
    while let Some(mut pass) = defrag.next_pass() {
        passes += 1;
        assert!(passes < 100, "the passes never end");
        let open: Vec<usize> = pass.moves().map(|m| m.index()).collect();
        for i in open {
            let id = pass.get(i).unwrap().id();
            copy_and_complete(&mut pass, i, &mut live[id].0).unwrap();
        }
        pass.end();
    }
    let result = defrag.finish();
    assert_eq!(result.memory_objects_freed, 2, "{result:?}");
    assert!(
        (24..=25).contains(&result.moves),
        "two blocks of 12 or 13 empty into the holes of the others: {result:?}"
    );
    assert_eq!(pool.block_count(), 2);
    verify_all(&live, "after the defragmentation");
    live.clear();

    let err = pool
        .allocate(
            reqs(&device, block + 4, 1),
            AllocationType::Linear,
            &upload(),
            None,
        )
        .unwrap_err();
    assert!(
        matches!(err, AllocationError::BlockSizeExceeded { .. }),
        "{err:?}"
    );
    drop(pool);
    drop(allocator);
    sim.assert_nothing_allocated();
}

/// `TestPoolsAndAllocationParameters`: in the default pools, a custom pool of the default
/// block size and a one-block pool of 2.5 MiB, a 1 MiB buffer in the default way, one in its
/// own memory (not in the one-block pool), and two with `NeverAllocate`: the first shares
/// the first one's memory at another offset, the second fails in the full one-block pool.
/// The allocator's totals grow by exactly the pools' sums.
#[test]
fn pools_and_allocate_preferences_add_up_in_the_statistics() {
    let ctx = TestContext::new();
    let device = ctx.memory_device();
    let allocator = StandardMemoryAllocator::new_default(device.clone());
    let buffer_info = common::buffer_info(
        MIB,
        vk::BufferUsageFlags::TRANSFER_SRC | vk::BufferUsageFlags::TRANSFER_DST,
    );
    let memory_type = allocator
        .find_memory_type_index(u32::MAX, MemoryUsage::DeviceOnly.into())
        .unwrap();
    let flexible = allocator
        .create_pool::<FreeListAllocator>(&PoolCreateInfo {
            name: Some("flexible".into()),
            memory_type: PoolMemoryType::Index(memory_type),
            ..Default::default()
        })
        .unwrap();
    let fixed = allocator
        .create_pool::<FreeListAllocator>(&PoolCreateInfo {
            name: Some("fixed".into()),
            memory_type: PoolMemoryType::Index(memory_type),
            block_size: 2 * MIB + MIB / 2,
            max_block_count: 1,
            ..Default::default()
        })
        .unwrap();
    let before = allocator.statistics().total;
    let targets: [(&str, &dyn MemoryAllocator); 3] = [
        ("default", &allocator),
        ("flexible", &flexible),
        ("fixed", &fixed),
    ];
    let mut buffers = Vec::new();
    let mut new_allocations = 0;
    for (name, target) in targets {
        let create = |preference| {
            let info = AllocationCreateInfo {
                allocate_preference: preference,
                ..Default::default()
            };
            // SAFETY: a valid buffer info for this device.
            unsafe { target.create_buffer(&buffer_info, &info) }
        };
        let first = create(MemoryAllocatePreference::Auto).unwrap();
        assert!(!first.1.is_dedicated(), "{name}");
        let mut count = 1;
        let own = if name != "fixed" {
            let own = create(MemoryAllocatePreference::AlwaysAllocate).unwrap();
            assert!(own.1.is_dedicated(), "{name}");
            assert_eq!(own.1.offset(), 0, "{name}");
            assert_ne!(own.1.memory(), first.1.memory(), "{name}");
            count += 1;
            Some(own)
        } else {
            None
        };
        let never = create(MemoryAllocatePreference::NeverAllocate).unwrap();
        assert_eq!(never.1.memory(), first.1.memory(), "{name}: the same block");
        assert_ne!(never.1.offset(), first.1.offset(), "{name}");
        count += 1;
        let second = create(MemoryAllocatePreference::NeverAllocate);
        if name == "fixed" {
            assert!(second.is_err(), "{name}: no room left without a new block");
        } else {
            second.as_ref().unwrap();
            count += 1;
        }
        if name != "default" {
            let stats = allocator
                .statistics()
                .pools
                .into_iter()
                .find(|p| &*p.name == name)
                .unwrap()
                .statistics;
            assert_eq!(stats.allocation_count, count, "{name}: {stats:?}");
            assert_eq!(stats.allocations.total, count * MIB, "{name}: {stats:?}");
            // One block each; the flexible pool also made one allocation in its own memory.
            let dedicated = if name == "fixed" { 0 } else { 1 };
            assert_eq!(stats.block_count, 1, "{name}: {stats:?}");
            assert_eq!(stats.dedicated_count, dedicated, "{name}: {stats:?}");
        }
        new_allocations += count;
        buffers.extend(
            [Some(first), own, Some(never), second.ok()]
                .into_iter()
                .flatten(),
        );
    }
    let after = allocator.statistics().total;
    assert_eq!(
        after.allocation_count,
        before.allocation_count + new_allocations
    );
    assert_eq!(
        after.allocations.total,
        before.allocations.total + new_allocations * MIB
    );
    for (buffer, allocation) in buffers {
        // SAFETY: made by the allocator above, never used by the GPU.
        unsafe { allocator.destroy_buffer(buffer, allocation) };
    }
    drop((flexible, fixed));
    assert_eq!(allocator.statistics().total.allocation_count, 0);
    assert!(ctx.messages().is_empty(), "{:?}", ctx.messages());
}

/// A size from VMA's linear tests: 64 to 1023 bytes rounded up to 64.
fn linear_size(rng: &mut Rng) -> u64 {
    (64 + rng.below(1024 - 64)).next_multiple_of(64)
}

/// `TestLinearAllocator` without its double stack (no upper-address allocations here): a
/// one-block ring pool of 300 KiB filled in increasing offsets and freed at random (twice),
/// used as a stack, and as a ring buffer that wraps around several times and then fills up.
#[test]
fn a_one_block_ring_pool_serves_as_one_time_stack_and_ring_buffer() {
    const BLOCK: u64 = 300 * 1024;
    const COUNT: usize = 100;
    let sim = Sim::new(GpuLayout::lavapipe());
    let device = sim.memory_device();
    let allocator = StandardMemoryAllocator::new_default(device.clone());
    let pool = host_pool::<RingAllocator>(&allocator, BLOCK, 1, 1);
    let mut rng = Rng(645332);
    let seed = std::cell::Cell::new(0);
    let next = |size: u64| {
        seed.set(seed.get() + 1);
        patterned_at(&pool, &device, size, 64, seed.get())
    };
    let mut live: Vec<Patterned> = Vec::new();

    // One-time free, twice.
    for round in 0..2 {
        let mut sum = 0;
        for i in 0..COUNT {
            let size = linear_size(&mut rng);
            let a = next(size);
            if i == 0 {
                assert_eq!(a.0.offset(), 0, "round {round}: an empty ring starts at 0");
            } else {
                assert!(a.0.offset() > live[i - 1].0.offset(), "round {round}, {i}");
            }
            assert!(a.0.size() >= size);
            sum += a.0.size();
            live.push(a);
        }
        let stats = pool_statistics(&allocator);
        assert_eq!(stats.reserved_bytes, BLOCK);
        assert_eq!(stats.allocation_count, COUNT as u64);
        assert_eq!(stats.reserved_bytes - stats.allocations.total, BLOCK - sum);
        verify_all(&live, "one-time free");
        while !live.is_empty() {
            live.remove(rng.below(live.len() as u64) as usize);
            verify_all(&live, "freed at random");
        }
        assert_eq!(pool_statistics(&allocator).allocation_count, 0);
    }

    // Stack: the top comes off and goes back on at the same place.
    for _ in 0..COUNT {
        let a = next(linear_size(&mut rng));
        assert!(live.last().is_none_or(|p| a.0.offset() > p.0.offset()));
        live.push(a);
    }
    for _ in 0..COUNT / 5 {
        live.pop();
    }
    for i in 0..COUNT / 5 {
        let top = live.last().unwrap();
        let top_end = top.0.offset() + top.0.size();
        let a = next(linear_size(&mut rng));
        assert_eq!(
            a.0.offset(),
            top_end.next_multiple_of(64),
            "pushed {i} on the stack"
        );
        live.push(a);
    }
    verify_all(&live, "stack");
    while live.pop().is_some() {}

    // Ring buffer: free the oldest, allocate the newest, until it wrapped twice.
    for _ in 0..COUNT {
        live.push(next(1024));
    }
    let per_round = COUNT / 10 - 1;
    let rounds = (BLOCK / 1024) as usize / per_round * 2;
    let mut wraps = 0;
    for _ in 0..rounds {
        live.drain(..per_round);
        for _ in 0..per_round {
            let newest = live.last().unwrap().0.offset();
            let a = next(1024);
            if a.0.offset() < newest {
                wraps += 1;
            }
            live.push(a);
        }
        verify_all(&live, "ring buffer");
    }
    assert!(wraps >= 2, "the ring wrapped {wraps} times");
    let pairs: Vec<_> = live.iter().map(|(a, _, _)| (a, 64)).collect();
    check_triples(&pairs, &sim.state, 1);
    drop(pairs);
    let full = loop {
        match pool.allocate(
            reqs(&device, 1024, 64),
            AllocationType::Linear,
            &upload(),
            None,
        ) {
            Ok(mut a) => {
                seed.set(seed.get() + 1);
                fill(&mut a, seed.get(), 1024);
                live.push((a, seed.get(), 1024));
            }
            Err(e) => break e,
        }
    };
    assert_eq!(full, AllocationError::PoolFull { max_blocks: 1 });
    assert!(live.len() as u64 >= BLOCK / 1024 - 2, "{} fit", live.len());
    verify_all(&live, "ring buffer filled up");
    while !live.is_empty() {
        live.remove(rng.below(live.len() as u64) as usize);
    }
    // Everything is free again: the whole block is one range.
    let whole = next(BLOCK);
    assert_eq!(whole.0.offset(), 0);
    drop(whole);
    drop(pool);
    drop(allocator);
    sim.assert_nothing_allocated();
}

/// Allocates 1 MiB at a time from `pool` until an allocation lands in a second block; the
/// allocations, the last one in the new block.
fn fill_until_second_block<S: Suballocator + Send + 'static>(
    pool: &MemoryPool<S>,
    device: &MemoryDevice,
    seed: &mut u64,
) -> Vec<Patterned> {
    let mut live: Vec<Patterned> = Vec::new();
    loop {
        *seed += 1;
        let a = patterned(pool, device, MIB, *seed);
        let moved_on = live.last().is_some_and(|p| p.0.memory() != a.0.memory());
        live.push(a);
        if moved_on {
            return live;
        }
    }
}

/// `TestLinearAllocatorMultiBlock`: a ring pool of 16 MiB blocks spills into a second block,
/// and gives it back when the application frees everything at random, or when it frees the
/// second block's allocations as a stack and allocates again.
#[test]
fn a_linear_pool_spills_into_a_second_block_and_gives_it_back() {
    let sim = Sim::new(GpuLayout::lavapipe());
    let device = sim.memory_device();
    let allocator = StandardMemoryAllocator::new_default(device.clone());
    let mut rng = Rng(345673);
    let mut seed = 0;

    // One-time free, in a bump pool (VMA's linear algorithm without its stack) and a ring.
    let bump = host_pool::<BumpAllocator>(&allocator, 16 * MIB, 0, usize::MAX);
    let mut live = fill_until_second_block(&bump, &device, &mut seed);
    assert!(live.len() > 2);
    assert_eq!(pool_statistics(&allocator).block_count, 2);
    while !live.is_empty() {
        live.remove(rng.below(live.len() as u64) as usize);
        verify_all(&live, "freed at random");
    }
    assert!(bump.block_count() <= 1, "{} blocks", bump.block_count());
    drop(bump);

    let pool = host_pool::<RingAllocator>(&allocator, 16 * MIB, 0, usize::MAX);
    let mut live = fill_until_second_block(&pool, &device, &mut seed);
    assert!(live.len() > 2);
    assert_eq!(pool_statistics(&allocator).block_count, 2);
    while !live.is_empty() {
        live.remove(rng.below(live.len() as u64) as usize);
        verify_all(&live, "freed at random");
    }
    assert!(pool.block_count() <= 1, "{} blocks", pool.block_count());

    let mut live = fill_until_second_block(&pool, &device, &mut seed);
    assert!(live.len() > 2);
    for _ in 0..5 {
        seed += 1;
        live.push(patterned(&pool, &device, MIB, seed));
    }
    assert_eq!(pool_statistics(&allocator).block_count, 2);
    let first_block = live[0].0.memory();
    for _ in 0..live.len() / 2 {
        live.pop();
    }
    assert!(live.iter().all(|p| p.0.memory() == first_block));
    seed += 1;
    let a = patterned(&pool, &device, MIB, seed);
    assert_eq!(a.0.memory(), first_block, "the first block has room on top");
    live.push(a);
    // VMA gives the empty second block back here (an empty block goes when another block
    // frees); this crate keeps at most one empty block per pool, by design.
    let stats = allocator.statistics();
    let empty = stats
        .blocks
        .iter()
        .filter(|b| b.statistics.allocation_count == 0);
    assert!(empty.count() <= 1, "{:?}", stats.blocks);
    verify_all(&live, "stack");
    while live.pop().is_some() {}
    drop(pool);
    drop(allocator);
    sim.assert_nothing_allocated();
}

/// `TestPool_MinBlockCount`: a pool of two-allocation blocks with a minimum of two makes them
/// up front, grows to three for five allocations, keeps three while one block is empty, and
/// goes back to two when a second block empties.
#[test]
fn a_pool_keeps_its_minimum_and_one_empty_block_above_it() {
    const ALLOC: u64 = 512 * 1024;
    let sim = Sim::new(GpuLayout::lavapipe());
    let device = sim.memory_device();
    let allocator = StandardMemoryAllocator::new_default(device.clone());
    let pool = host_pool::<FreeListAllocator>(&allocator, 2 * ALLOC, 2, usize::MAX);
    let stats = pool_statistics(&allocator);
    assert_eq!(
        (
            stats.block_count,
            stats.allocation_count,
            stats.reserved_bytes
        ),
        (2, 0, 4 * ALLOC)
    );
    let mut live: Vec<Option<Patterned>> = (1..=5)
        .map(|seed| Some(patterned(&pool, &device, ALLOC, seed)))
        .collect();
    let stats = pool_statistics(&allocator);
    assert_eq!(
        (
            stats.block_count,
            stats.allocation_count,
            stats.reserved_bytes
        ),
        (3, 5, 6 * ALLOC)
    );
    // Two that share a block go: the block stays, empty.
    let memory = |live: &[Option<Patterned>], i: usize| live[i].as_ref().unwrap().0.memory();
    let (a, b) = (0..5)
        .flat_map(|a| (a + 1..5).map(move |b| (a, b)))
        .find(|&(a, b)| memory(&live, a) == memory(&live, b))
        .unwrap();
    live[a] = None;
    live[b] = None;
    let stats = pool_statistics(&allocator);
    assert_eq!(
        (
            stats.block_count,
            stats.allocation_count,
            stats.reserved_bytes
        ),
        (3, 3, 6 * ALLOC)
    );
    // The one alone in its block goes: a second empty block, and one of the two goes.
    let alone = (0..5)
        .find(|&i| {
            live[i].is_some()
                && (0..5)
                    .all(|j| j == i || live[j].is_none() || memory(&live, j) != memory(&live, i))
        })
        .unwrap();
    live[alone] = None;
    let stats = pool_statistics(&allocator);
    assert_eq!(
        (
            stats.block_count,
            stats.allocation_count,
            stats.reserved_bytes
        ),
        (2, 2, 4 * ALLOC)
    );
    for p in live.iter().flatten() {
        verify(&p.0, p.1, p.2, "after the blocks around were freed");
    }
    drop(live);
    assert_eq!(pool.block_count(), 2, "never below the minimum");
    drop(pool);
    drop(allocator);
    sim.assert_nothing_allocated();
}

/// `TestAllocationVersusResourceSize`: a buffer of a prime size, in a block and in its own
/// memory: the allocation is at least the buffer's size, every byte of it can be written and
/// read back, and writing all of it touches no neighbour.
#[test]
fn every_byte_of_an_allocation_is_the_applications() {
    let ctx = TestContext::new();
    let device = ctx.memory_device();
    let allocator = StandardMemoryAllocator::new_default(device.clone());
    let buffer_info = common::buffer_info(
        22921,
        vk::BufferUsageFlags::TRANSFER_SRC | vk::BufferUsageFlags::TRANSFER_DST,
    );
    for preference in [
        MemoryAllocatePreference::Auto,
        MemoryAllocatePreference::AlwaysAllocate,
    ] {
        let info = AllocationCreateInfo {
            usage: MemoryUsage::Upload,
            allocate_preference: preference,
            ..Default::default()
        };
        let mut made = Vec::new();
        for seed in 0..3u64 {
            // SAFETY: a valid buffer info for this device.
            let (buffer, mut alloc) = unsafe { allocator.create_buffer(&buffer_info, &info) }
                .unwrap_or_else(|e| panic!("{preference:?}: {e}"));
            assert!(alloc.size() >= buffer_info.size, "{preference:?}");
            assert_eq!(
                alloc.is_dedicated(),
                preference == MemoryAllocatePreference::AlwaysAllocate
            );
            let size = alloc.size();
            fill(&mut alloc, seed, size);
            made.push((buffer, alloc, seed));
        }
        for (_, alloc, seed) in &made {
            verify(alloc, *seed, alloc.size(), &format!("{preference:?}"));
        }
        let stats = allocator.statistics();
        for (_, alloc, _) in &made {
            let block = stats
                .blocks
                .iter()
                .find(|b| b.memory == ash::vk::Handle::as_raw(alloc.memory()))
                .unwrap();
            assert_eq!(block.dedicated, alloc.is_dedicated());
            if alloc.is_dedicated() {
                assert_eq!(block.size, alloc.size());
            } else {
                assert!(block.size > alloc.size());
            }
        }
        for (buffer, alloc, _) in made {
            // SAFETY: made above, never used by the GPU.
            unsafe { allocator.destroy_buffer(buffer, alloc) };
        }
    }
    assert!(ctx.messages().is_empty(), "{:?}", ctx.messages());
}

/// `TestPool_SameSize` filled from four threads at once, with the allocator's own choice of
/// arenas: the pool's 100 MiB still hold 100 allocations of 1 MiB, and the 101st fails.
#[test]
fn same_size_allocations_fill_a_pool_exactly_from_four_threads() {
    let sim = Sim::new(GpuLayout::lavapipe());
    let device = sim.memory_device();
    let allocator = StandardMemoryAllocator::new_default(device.clone());
    for arenas in [None, Some(4)] {
        let pool = allocator
            .create_pool::<FreeListAllocator>(&PoolCreateInfo {
                memory_type: PoolMemoryType::Find {
                    memory_type_bits: u32::MAX,
                    usage: MemoryUsage::Upload,
                },
                block_size: BUF * BUF_COUNT as u64 / 4,
                max_block_count: 4,
                block_arenas: arenas,
                ..Default::default()
            })
            .unwrap();
        let live: Vec<Patterned> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4u64)
                .map(|t| {
                    let (pool, device) = (&pool, &device);
                    s.spawn(move || {
                        (0..BUF_COUNT as u64 / 4)
                            .map(|i| patterned(pool, device, BUF, t * 1000 + i))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap())
                .collect()
        });
        assert_eq!(live.len(), BUF_COUNT, "{arenas:?}");
        let err = pool
            .allocate(
                reqs(&device, BUF, 256),
                AllocationType::Linear,
                &upload(),
                None,
            )
            .unwrap_err();
        assert_eq!(
            err,
            AllocationError::PoolFull { max_blocks: 4 },
            "{arenas:?}"
        );
        verify_all(&live, &format!("{arenas:?}"));
        drop(live);
        drop(pool);
    }
    drop(allocator);
    sim.assert_nothing_allocated();
}

/// `TestInvalidAllocations`: requests of nothing are errors before the driver sees them: a
/// layout of 0 bytes cannot be made, and a buffer of 0 bytes or an image with a zero extent
/// is refused by `create_buffer` / `create_image` and the `allocate_for_*_info` calls (VMA's
/// `VK_ERROR_INITIALIZATION_FAILED`),
/// with no validation message and no memory made.
#[test]
fn requests_of_nothing_are_refused_before_the_driver() {
    let ctx = TestContext::new();
    let device = ctx.memory_device();
    let allocator = StandardMemoryAllocator::new_default(device.clone());
    assert_eq!(
        DeviceLayout::from_size_alignment(0, 4),
        Err(LayoutError::ZeroSize)
    );
    let info = AllocationCreateInfo::default();
    let empty = common::buffer_info(0, vk::BufferUsageFlags::TRANSFER_SRC);
    // SAFETY: a zero size is what is tested: the call must refuse it before the driver.
    let err = unsafe { allocator.create_buffer(&empty, &info) }.unwrap_err();
    assert_eq!(err, AllocationError::Layout(LayoutError::ZeroSize));
    // SAFETY: as above, for the paths that take requirements from a create info.
    let err = unsafe { allocator.allocate_for_buffer_info(&empty, &info) }.unwrap_err();
    assert_eq!(err, AllocationError::Layout(LayoutError::ZeroSize));
    for (width, height, depth, mips, layers) in [
        (128, 0, 1, 1, 1),
        (0, 128, 1, 1, 1),
        (128, 128, 0, 1, 1),
        (128, 128, 1, 0, 1),
        (128, 128, 1, 1, 0),
    ] {
        let image = vk::ImageCreateInfo::default()
            .image_type(vk::ImageType::TYPE_2D)
            .format(vk::Format::B8G8R8A8_UNORM)
            .extent(vk::Extent3D {
                width,
                height,
                depth,
            })
            .mip_levels(mips)
            .array_layers(layers)
            .samples(vk::SampleCountFlags::TYPE_1)
            .tiling(vk::ImageTiling::LINEAR)
            .usage(vk::ImageUsageFlags::TRANSFER_SRC)
            .initial_layout(vk::ImageLayout::PREINITIALIZED);
        // SAFETY: as above, for the image's extent, mip levels and layers.
        let err = unsafe { allocator.create_image(&image, &info) }.unwrap_err();
        assert_eq!(
            err,
            AllocationError::Layout(LayoutError::ZeroSize),
            "{width}x{height}x{depth}, {mips} mips, {layers} layers"
        );
        // SAFETY: as above.
        let err = unsafe { allocator.allocate_for_image_info(&image, &info) }.unwrap_err();
        assert_eq!(err, AllocationError::Layout(LayoutError::ZeroSize));
    }
    assert_eq!(allocator.statistics().total, Statistics::default());
    drop(allocator);
    assert!(ctx.messages().is_empty(), "{:?}", ctx.messages());
}
