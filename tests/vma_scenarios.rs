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
//! - `TestAllocationVersusResourceSize`: every allocation holds its resource's size;
//! - `TestVirtualBlocks` / `TestDebugMarginNotInVirtualAllocator`: a suballocator used alone.
//!
//! Each checks what VMA checks: data written earlier is read back intact, offsets are
//! aligned and disjoint, statistics equal the sums, and errors come where VMA gives errors.

mod common;
mod support;

use ash::vk;
use ash_memory::*;
use common::TestContext;
use support::defrag::copy_and_complete;
use support::{check_triples, fill, verify, GpuLayout, Rng, Sim, MIB};

/// Host-visible memory for the application's data.
fn upload() -> AllocationCreateInfo {
    AllocationCreateInfo {
        usage: MemoryUsage::Upload,
        ..Default::default()
    }
}

fn reqs(device: &MemoryDevice, size: u64, alignment: u64) -> AllocationRequirements {
    AllocationRequirements {
        layout: DeviceLayout::from_size_alignment(size, alignment).unwrap(),
        memory_type_bits: device.memory_properties().all_types_mask(),
        prefers_dedicated_allocation: false,
        requires_dedicated_allocation: false,
    }
}

/// A host-visible pool of `S` on the lavapipe layout.
fn host_pool<S: Suballocator + Send + Sync + 'static>(
    allocator: &StandardMemoryAllocator,
    block_size: u64,
    min_block_count: usize,
    max_block_count: usize,
) -> MemoryPool<S> {
    allocator
        .create_pool::<S>(&PoolCreateInfo {
            name: Some("vma scenario".into()),
            memory_type: PoolMemoryType::Find {
                memory_type_bits: u32::MAX,
                usage: MemoryUsage::Upload,
            },
            block_size,
            min_block_count,
            max_block_count,
            block_arenas: Some(1),
            ..Default::default()
        })
        .unwrap()
}

/// One live allocation: the allocation, its pattern seed and its size.
type Patterned = (MemoryAlloc, u64, u64);

fn patterned(pool: &dyn MemoryAllocator, device: &MemoryDevice, size: u64, seed: u64) -> Patterned {
    patterned_at(pool, device, size, 256, seed)
}

/// [`patterned`] at `alignment`.
fn patterned_at(
    pool: &dyn MemoryAllocator,
    device: &MemoryDevice,
    size: u64,
    alignment: u64,
    seed: u64,
) -> Patterned {
    let mut a = pool
        .allocate(
            reqs(device, size, alignment),
            AllocationType::Linear,
            &upload(),
            None,
        )
        .unwrap_or_else(|e| panic!("allocation {seed} of {size} bytes: {e}"));
    fill(&mut a, seed, size);
    (a, seed, size)
}

fn verify_all(live: &[Patterned], what: &str) {
    for (a, seed, size) in live {
        verify(a, *seed, *size, what);
    }
}

/// The statistics of the one custom pool of `allocator`.
fn pool_statistics(allocator: &StandardMemoryAllocator) -> Statistics {
    let stats = allocator.statistics();
    assert_eq!(stats.pools.len(), 1, "{:?}", stats.pools);
    stats.pools[0].statistics
}

const BUF: u64 = MIB;
const BUF_COUNT: usize = 100;

/// `TestPool_SameSize`: 100 buffers of 1 MiB fill a pool of at most four 25 MiB blocks to the
/// byte; the 101st is an error. After random frees and allocations the pool fills up to 100
/// again, one free leaves exactly one free range of 1 MiB, and a Full defragmentation of every
/// other buffer packs 50 of them into two blocks, moving the 24 or 25 of the blocks emptied.
#[test]
fn same_size_allocations_fill_a_pool_exactly_and_again_after_random_frees() {
    let sim = Sim::new(GpuLayout::lavapipe());
    let device = sim.memory_device();
    let allocator = StandardMemoryAllocator::new_default(device.clone());
    let block = BUF * BUF_COUNT as u64 / 4;
    let pool = host_pool::<FreeListAllocator>(&allocator, block, 1, 4);
    let mut rng = Rng(123);
    let mut seed = 0;
    let mut next = |pool: &MemoryPool<FreeListAllocator>| {
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
            let blocks = if name == "fixed" { 1 } else { 1 };
            let dedicated = if name == "fixed" { 0 } else { 1 };
            assert_eq!(stats.block_count, blocks, "{name}: {stats:?}");
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
fn fill_until_second_block(
    pool: &MemoryPool<RingAllocator>,
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
    let pool = host_pool::<RingAllocator>(&allocator, 16 * MIB, 0, usize::MAX);
    let mut rng = Rng(345673);
    let mut seed = 0;

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

fn layout(size: u64, alignment: u64) -> DeviceLayout {
    DeviceLayout::from_size_alignment(size, alignment).unwrap()
}

/// `TestVirtualBlocks` (and `TestDebugMarginNotInVirtualAllocator`): a suballocator used
/// alone over 16 MiB, with the allocator's debug margins nowhere in sight.
fn virtual_block<S: Suballocator>() {
    let name = std::any::type_name::<S>();
    let one = DeviceAlignment::MIN;
    let mut block = S::new(16 * MIB);
    let a0 = block
        .allocate(layout(8 * MIB, 256), AllocationType::Unknown, one)
        .unwrap();
    assert!(a0.offset < 16 * MIB && a0.offset % 256 == 0, "{name}");
    assert_eq!(a0.size, 8 * MIB, "{name}");
    let a1 = block
        .allocate(layout(4 * MIB, 256), AllocationType::Unknown, one)
        .unwrap();
    let apart = |a: &Suballocation, b: &Suballocation| {
        a.offset + a.size <= b.offset || b.offset + b.size <= a.offset
    };
    assert!(apart(&a0, &a1), "{name}: {a0:?} {a1:?}");
    block
        .allocate(layout(8 * MIB, 256), AllocationType::Unknown, one)
        .expect_err("only 4 MiB are left");
    // SAFETY: made by this block, freed once.
    unsafe { block.deallocate(a1) };
    let a2 = block
        .allocate(layout(8 * MIB, 256), AllocationType::Unknown, one)
        .unwrap_or_else(|e| panic!("{name}: 8 MiB are free again: {e}"));
    assert!(apart(&a0, &a2), "{name}: {a0:?} {a2:?}");
    let stats = Statistics::of_suballocator(&block);
    assert_eq!(stats.allocation_count, 2, "{name}");
    assert_eq!(stats.block_count, 1, "{name}");
    assert_eq!(stats.allocations.total, 16 * MIB, "{name}");
    assert_eq!(stats.reserved_bytes, 16 * MIB, "{name}");
    assert_eq!(block.free_size(), 0, "{name}");
    // SAFETY: made by this block, freed once.
    unsafe { block.deallocate(a0) };

    // Small odd sizes at alignment 8 and 1; no margins between them, as in VMA's virtual
    // blocks (margins belong to the allocator's memory blocks).
    let mut small = Vec::new();
    for i in 0..10u64 {
        let alignment = if i == 9 { 1 } else { 8 };
        let s = block
            .allocate(layout(i * 3 + 15, alignment), AllocationType::Unknown, one)
            .unwrap();
        assert_eq!(s.offset % alignment, 0, "{name}");
        assert_eq!(s.size, i * 3 + 15, "{name}");
        small.push(s);
    }
    for pair in small.windows(2) {
        assert!(apart(&pair[0], &pair[1]), "{name}: {pair:?}");
    }
    while let Some(s) = small.pop() {
        // SAFETY: made by this block, freed once.
        unsafe { block.deallocate(s) };
    }
    // SAFETY: made by this block, freed once.
    unsafe { block.deallocate(a2) };
    assert_eq!(block.free_size(), 16 * MIB, "{name}");
    assert_eq!(block.allocation_count(), 0, "{name}");

    // Cleared in one go.
    for _ in 0..8 {
        block
            .allocate(layout(MIB, 1), AllocationType::Unknown, one)
            .unwrap();
    }
    block.reset();
    assert_eq!(block.free_size(), 16 * MIB, "{name}");
    let whole = block
        .allocate(layout(16 * MIB, 1), AllocationType::Unknown, one)
        .unwrap_or_else(|e| panic!("{name}: the whole block after a reset: {e}"));
    assert_eq!((whole.offset, whole.size), (0, 16 * MIB), "{name}");
}

#[test]
fn suballocators_serve_as_virtual_blocks() {
    virtual_block::<FreeListAllocator>();
    virtual_block::<BuddyAllocator>();
    virtual_block::<RingAllocator>();
}

/// Checks that the heaps, the memory types and the blocks of `stats` each add up to its
/// total, and that each heap's statistics are within what its budget says this crate holds.
fn check_sums(stats: &stats::AllocatorStatistics, what: &str) {
    let sum = |parts: &mut dyn Iterator<Item = &Statistics>| {
        let mut all = Statistics::default();
        parts.for_each(|s| all.merge(s));
        all
    };
    let heaps = sum(&mut stats.heaps.iter().map(|h| &h.statistics));
    let types = sum(&mut stats.memory_types.iter().map(|t| &t.statistics));
    let blocks = sum(&mut stats.blocks.iter().map(|b| &b.statistics));
    assert_eq!(heaps, stats.total, "{what}: heaps");
    assert_eq!(types, stats.total, "{what}: memory types");
    assert_eq!(blocks, stats.total, "{what}: memory objects");
    for h in &stats.heaps {
        let s = &h.statistics;
        assert!(
            h.budget.budget > 0 && h.budget.budget <= h.budget.heap_size,
            "{what}: {h:?}"
        );
        assert!(s.allocations.total <= s.reserved_bytes, "{what}: {h:?}");
        assert_eq!(h.budget.crate_usage, s.reserved_bytes, "{what}: {h:?}");
    }
}

/// `TestStatistics`: four 10 MiB buffers in their own memory, in blocks, in a custom pool, in
/// their own memory through a custom pool, and in a pool of one preallocated block. Before,
/// with and after the buffers, the heaps, types and memory objects add up to the total, the
/// budget's count of this crate's memory matches, the buffers' heap grows by exactly their
/// bytes and count and shrinks back, other heaps do not change, and the pool's own
/// statistics are exact.
#[test]
fn statistics_add_up_before_with_and_after_buffers_in_every_kind_of_memory() {
    const BUF_SIZE: u64 = 10 * MIB;
    const BUF_COUNT: u64 = 4;
    const PREALLOCATED: u64 = BUF_SIZE * (BUF_COUNT + 1);
    let ctx = TestContext::new();
    let device = ctx.memory_device();
    let allocator = StandardMemoryAllocator::new_default(device.clone());
    let buffer_info = common::buffer_info(BUF_SIZE, vk::BufferUsageFlags::TRANSFER_DST);
    let memory_type = allocator
        .find_memory_type_index(u32::MAX, MemoryUsage::DeviceOnly.into())
        .unwrap();
    let heap = device.memory_properties().memory_types[memory_type as usize].heap_index;
    let heap = heap as usize;
    for (case, (use_pool, dedicated, preallocated)) in [
        (false, true, false),
        (false, false, false),
        (true, false, false),
        (true, true, false),
        (true, false, true),
    ]
    .into_iter()
    .enumerate()
    {
        let what = format!("case {case}");
        let before = allocator.statistics();
        check_sums(&before, &what);
        let pool = use_pool.then(|| {
            allocator
                .create_pool::<FreeListAllocator>(&PoolCreateInfo {
                    name: Some("statistics".into()),
                    memory_type: PoolMemoryType::Index(memory_type),
                    block_size: if preallocated { PREALLOCATED } else { 0 },
                    min_block_count: usize::from(preallocated),
                    max_block_count: if preallocated { 1 } else { usize::MAX },
                    ..Default::default()
                })
                .unwrap()
        });
        let pool_stats = || {
            let stats = allocator.statistics();
            let found = stats.pools.iter().find(|p| &*p.name == "statistics");
            found.map(|p| p.statistics).unwrap_or_default()
        };
        let empty_pool = pool_stats();
        let target: &dyn MemoryAllocator = match &pool {
            Some(pool) => pool,
            None => &allocator,
        };
        let info = AllocationCreateInfo {
            usage: MemoryUsage::DeviceOnly,
            allocate_preference: if dedicated {
                MemoryAllocatePreference::AlwaysAllocate
            } else {
                MemoryAllocatePreference::Auto
            },
            ..Default::default()
        };
        let buffers: Vec<_> = (0..BUF_COUNT)
            // SAFETY: a valid buffer info for this device.
            .map(|_| unsafe { target.create_buffer(&buffer_info, &info) }.unwrap())
            .collect();
        for (_, a) in &buffers {
            assert_eq!(a.memory_type_index(), memory_type, "{what}");
            assert_eq!(a.is_dedicated(), dedicated, "{what}");
        }
        let with = allocator.statistics();
        check_sums(&with, &what);
        let full_pool = pool_stats();
        for (buffer, alloc) in buffers {
            // SAFETY: made above, never used by the GPU.
            unsafe { allocator.destroy_buffer(buffer, alloc) };
        }
        let drained_pool = pool_stats();
        drop(pool);
        let after = allocator.statistics();
        check_sums(&after, &what);

        for (i, ((b, w), a)) in before
            .heaps
            .iter()
            .zip(&with.heaps)
            .zip(&after.heaps)
            .enumerate()
        {
            let (b, w, a) = (&b.statistics, &w.statistics, &a.statistics);
            if i != heap {
                assert!(b == w && w == a, "{what}: heap {i} changed");
                continue;
            }
            assert_eq!(w.allocation_count, b.allocation_count + BUF_COUNT, "{what}");
            assert_eq!(
                w.allocations.total,
                b.allocations.total + BUF_COUNT * BUF_SIZE,
                "{what}"
            );
            assert_eq!(a.allocation_count, b.allocation_count, "{what}");
            assert_eq!(a.allocations.total, b.allocations.total, "{what}");
            if dedicated {
                assert_eq!(w.dedicated_count, b.dedicated_count + BUF_COUNT, "{what}");
                assert_eq!(a.dedicated_count, b.dedicated_count, "{what}");
            }
            if use_pool {
                assert_eq!(
                    a.block_count, b.block_count,
                    "{what}: the pool's blocks went with it"
                );
                assert_eq!(a.reserved_bytes, b.reserved_bytes, "{what}");
                assert!(w.reserved_bytes > b.reserved_bytes, "{what}");
                if preallocated {
                    assert_eq!(w.block_count, b.block_count + 1, "{what}");
                }
            }
        }
        if use_pool {
            for s in [&empty_pool, &drained_pool] {
                assert_eq!(s.allocation_count, 0, "{what}");
                assert_eq!(s.allocations, stats::SizeStats::default(), "{what}");
            }
            if preallocated {
                for s in [&empty_pool, &full_pool, &drained_pool] {
                    assert_eq!(
                        (s.block_count, s.reserved_bytes),
                        (1, PREALLOCATED),
                        "{what}"
                    );
                }
            } else {
                assert_eq!(
                    (empty_pool.block_count, empty_pool.reserved_bytes),
                    (0, 0),
                    "{what}"
                );
            }
            let a = &full_pool.allocations;
            assert_eq!(
                (a.count, a.total, a.min, a.max),
                (BUF_COUNT, BUF_COUNT * BUF_SIZE, BUF_SIZE, BUF_SIZE),
                "{what}"
            );
            assert_eq!(full_pool.allocation_count, BUF_COUNT, "{what}");
            assert!(
                full_pool.reserved_bytes >= full_pool.allocations.total,
                "{what}"
            );
        }
    }
    assert!(ctx.messages().is_empty(), "{:?}", ctx.messages());
}

/// `TestVirtualBlocksAlgorithms` for one suballocator over a region of 10 000 bytes (not a
/// power of two): a request twice the region fails; small allocations under every strategy,
/// some freed at random, more made, three at alignment 16; none overlap, all are aligned and
/// at least the requested size, and the statistics hold exactly the live allocations.
fn virtual_block_algorithm<S: Suballocator>(seed: u64) {
    const REGION: u64 = 10_000;
    let name = std::any::type_name::<S>();
    let one = DeviceAlignment::MIN;
    let mut rng = Rng(seed);
    let mut block = S::new(REGION);
    block
        .allocate(layout(2 * REGION, 1), AllocationType::Unknown, one)
        .expect_err("twice the region");
    let mut live: Vec<(Suballocation, u64, u64)> = Vec::new();
    let make = |block: &mut S, rng: &mut Rng, alignment: u64, strategy| {
        let size = 5 + rng.below(20);
        let s = block
            .allocate_with_strategy(
                layout(size, alignment),
                AllocationType::Unknown,
                one,
                strategy,
            )
            .unwrap_or_else(|e| panic!("{name}: {size} bytes at {alignment}, {strategy:?}: {e}"));
        assert!(s.size >= size, "{name}: {s:?} for {size}");
        assert_eq!(s.offset % alignment, 0, "{name}: {s:?}");
        assert!(s.offset + s.size <= REGION, "{name}: {s:?}");
        (s, size, alignment)
    };
    for i in 0..20 {
        let strategy = match i {
            10 | 11 | 14 | 15 => AllocationStrategy::MinMemory,
            12 | 13 => AllocationStrategy::MinTime,
            16 | 17 => AllocationStrategy::MinOffset,
            _ => AllocationStrategy::Default,
        };
        live.push(make(&mut block, &mut rng, 1, strategy));
    }
    for _ in 0..5 {
        let (s, _, _) = live.remove(rng.below(live.len() as u64) as usize);
        // SAFETY: made by this block, freed once.
        unsafe { block.deallocate(s) };
    }
    for _ in 0..6 {
        live.push(make(&mut block, &mut rng, 1, AllocationStrategy::Default));
    }
    for _ in 0..3 {
        live.push(make(&mut block, &mut rng, 16, AllocationStrategy::Default));
    }
    let mut sorted: Vec<_> = live.iter().map(|(s, _, _)| (s.offset, s.size)).collect();
    sorted.sort_unstable();
    for w in sorted.windows(2) {
        assert!(w[0].0 + w[0].1 <= w[1].0, "{name}: {w:?} overlap");
    }
    let stats = Statistics::of_suballocator(&block);
    let sizes = live.iter().map(|(s, _, _)| s.size);
    assert_eq!(stats.allocation_count, live.len() as u64, "{name}");
    assert_eq!(stats.block_count, 1, "{name}");
    // A slot allocator manages whole slots only (its region size, documented).
    let region = block.region_size();
    assert!(REGION - region < 32, "{name}");
    assert_eq!(stats.reserved_bytes, region, "{name}");
    // Allocated ranges include the padding a suballocator gives (a buddy's whole block, a
    // slot), so they are at least the allocations VMA compares them with.
    assert!(
        stats.allocations.max >= sizes.clone().max().unwrap(),
        "{name}: {stats:?}"
    );
    assert!(
        stats.allocations.total >= sizes.sum::<u64>(),
        "{name}: {stats:?}"
    );
    assert_eq!(
        stats.allocations.total + stats.free_ranges.total,
        region,
        "{name}: allocated and free ranges tile the region: {stats:?}"
    );
    assert_eq!(stats.free_ranges.total, block.free_size(), "{name}");
    block.reset();
    assert_eq!(block.free_size(), region, "{name}");
    assert_eq!(block.allocation_count(), 0, "{name}");
}

#[test]
fn every_suballocator_passes_vmas_virtual_algorithm_walk() {
    for seed in [3454335, 1, 2, 3] {
        virtual_block_algorithm::<FreeListAllocator>(seed);
        virtual_block_algorithm::<BuddyAllocator>(seed);
        virtual_block_algorithm::<RingAllocator>(seed);
        virtual_block_algorithm::<BumpAllocator>(seed);
        virtual_block_algorithm::<SlotAllocator<32>>(seed);
    }
}

/// VMA's statistics always add up: a block's bytes are its allocated bytes plus its unused
/// bytes, and its ranges cover it. Slots that do not divide a block (96-byte slots in a
/// 1 MiB block, whole or cut into arenas) leave a tail no slot covers; it is still part of the
/// block, reported as unused.
#[test]
fn blocks_of_slots_that_do_not_divide_them_are_covered_by_their_ranges() {
    let sim = Sim::new(GpuLayout::lavapipe());
    let device = sim.memory_device();
    let allocator = StandardMemoryAllocator::new_default(device.clone());
    for arenas in [1, 4] {
        let pool = allocator
            .create_pool::<SlotAllocator<96>>(&PoolCreateInfo {
                name: Some("slots".into()),
                memory_type: PoolMemoryType::Find {
                    memory_type_bits: u32::MAX,
                    usage: MemoryUsage::Upload,
                },
                block_size: MIB,
                block_arenas: Some(arenas),
                ..Default::default()
            })
            .unwrap();
        let live: Vec<Patterned> = (1..=40)
            .map(|seed| patterned_at(&pool, &device, 1 + seed % 60, 16, seed))
            .collect();
        let what = format!("{arenas} arenas");
        let snapshot = allocator.snapshot();
        let stats = allocator.statistics();
        for b in snapshot
            .blocks
            .iter()
            .filter(|b| b.pool.as_deref() == Some("slots"))
        {
            let mut end = 0;
            for r in &b.ranges {
                assert_eq!(r.offset, end, "{what}: ranges tile the block");
                end += r.size;
            }
            assert_eq!(end, b.size, "{what}: the ranges cover the block");
        }
        for b in stats
            .blocks
            .iter()
            .filter(|b| b.pool.as_deref() == Some("slots"))
        {
            let s = &b.statistics;
            assert_eq!(
                s.allocations.total + s.free_ranges.total,
                s.reserved_bytes,
                "{what}: {s:?}"
            );
        }
        let json: serde_json::Value = serde_json::from_str(&allocator.to_vma_json()).unwrap();
        let mut dumped = Vec::new();
        dumped_blocks(&json, &mut dumped);
        assert!(!dumped.is_empty(), "{what}");
        for block in dumped {
            let total = block["TotalBytes"].as_u64().unwrap();
            let unused = block["UnusedBytes"].as_u64().unwrap();
            let ranges = block["Suballocations"].as_array().unwrap();
            let size = |r: &&serde_json::Value| r["Size"].as_u64().unwrap();
            let free = ranges.iter().filter(|r| r["Type"] == "FREE");
            assert_eq!(
                ranges.iter().map(|r| size(&r)).sum::<u64>(),
                total,
                "{what}: {block}"
            );
            assert_eq!(
                free.map(|r| size(&r)).sum::<u64>(),
                unused,
                "{what}: {block}"
            );
        }
        verify_all(&live, &what);
        drop(live);
        drop(pool);
    }
    drop(allocator);
    sim.assert_nothing_allocated();
}

/// Every block of a VMA JSON dump: the objects with `"TotalBytes"` and `"Suballocations"`.
fn dumped_blocks<'a>(value: &'a serde_json::Value, out: &mut Vec<&'a serde_json::Value>) {
    match value {
        serde_json::Value::Object(map) => {
            if map.contains_key("TotalBytes") && map.contains_key("Suballocations") {
                out.push(value);
            }
            map.values().for_each(|v| dumped_blocks(v, out));
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| dumped_blocks(v, out)),
        _ => {}
    }
}
