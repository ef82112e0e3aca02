//! Scenarios of VMA's own test suite (`src/Tests.cpp`) about statistics, virtual blocks and
//! what allocations hold, retold for this crate's API (see also `vma_scenarios.rs`):
//!
//! - `TestVirtualBlocks` / `TestDebugMarginNotInVirtualAllocator`: a suballocator used alone;
//! - `TestStatistics`: buffers in their own memory, in blocks, in custom pools and in a
//!   preallocated block, with the statistics checked before, with and after them;
//! - `TestVirtualBlocksAlgorithms`: every suballocator under every strategy;
//! - `TestAllocationAlgorithmsCorrectness`: holes halved level by level, filled exactly;
//! - `TestAllocationsInitialization`: fill patterns in one-block pools of every suballocator;
//! - VMA's invariant that a block's bytes are its allocated plus its unused bytes, on blocks
//!   that slots do not divide.

mod common;
mod support;

use ash::vk;
use ash_memory::*;
use common::TestContext;
use support::vma::{patterned_at, verify_all, Patterned};
use support::{GpuLayout, Rng, Sim, MIB};

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
                // The pool's blocks went with it. (The empty blocks the allocator kept from
                // the cases before may have given way to the pool as it grew past the
                // allocator's peak: kept blocks never raise it. None came.)
                assert!(
                    after.blocks.iter().all(|o| o.pool.is_none()),
                    "{what}: the pool's blocks went with it"
                );
                assert!(a.block_count <= b.block_count, "{what}");
                assert!(a.reserved_bytes <= b.reserved_bytes, "{what}");
                assert!(w.reserved_bytes > a.reserved_bytes, "{what}");
                if preallocated {
                    assert_eq!(w.block_count, a.block_count + 1, "{what}");
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

/// The levels of [`halving`]: a block of 2^11 units.
const LEVELS: u32 = 12;

/// `TestAllocationAlgorithmsCorrectness`' walk: one allocation fills the block; then, level
/// by level, one allocation of 2^L units is freed and two of 2^(L-1) take its place, which
/// only fit if the allocator finds the one hole exactly. `allocate(level)` makes one of
/// `level`, `free(level, index)` frees one; returns the live allocations per level.
fn halving<T>(rng: &mut Rng, mut allocate: impl FnMut(u32) -> T) -> Vec<Vec<T>> {
    let mut levels: Vec<Vec<T>> = (0..LEVELS).map(|_| Vec::new()).collect();
    levels[LEVELS as usize - 1].push(allocate(LEVELS - 1));
    for level in (1..LEVELS as usize).rev() {
        let index = rng.below(levels[level].len() as u64) as usize;
        drop(levels[level].remove(index));
        for _ in 0..2 {
            let a = allocate(level as u32 - 1);
            levels[level - 1].push(a);
        }
    }
    levels
}

/// The walk of [`halving`] in a suballocator used alone, with units of 1 byte and 64 KiB.
fn halving_virtual<S: Suballocator>(rng: &mut Rng) {
    let name = std::any::type_name::<S>();
    for unit in [1, 64 * 1024] {
        for strategy in [
            AllocationStrategy::Default,
            AllocationStrategy::MinTime,
            AllocationStrategy::MinMemory,
            AllocationStrategy::MinOffset,
        ] {
            let block = std::cell::RefCell::new(S::new((1 << (LEVELS - 1)) * unit));
            // Frees happen when an entry is dropped.
            struct Live<'a, S: Suballocator>(&'a std::cell::RefCell<S>, Suballocation);
            impl<S: Suballocator> Drop for Live<'_, S> {
                fn drop(&mut self) {
                    // SAFETY: made by this block, freed once.
                    unsafe { self.0.borrow_mut().deallocate(self.1) };
                }
            }
            let levels = halving(rng, |level| {
                let size = (1 << level) * unit;
                let s = block
                    .borrow_mut()
                    .allocate_with_strategy(
                        DeviceLayout::from_size_alignment(size, 1).unwrap(),
                        AllocationType::Unknown,
                        DeviceAlignment::MIN,
                        strategy,
                    )
                    .unwrap_or_else(|e| {
                        panic!("{name}, unit {unit}, {strategy:?}: 2^{level}: {e}")
                    });
                Live(&block, s)
            });
            let count: usize = levels.iter().map(Vec::len).sum();
            let bytes: u64 = levels.iter().flatten().map(|l| l.1.size).sum();
            let stats = Statistics::of_suballocator(&*block.borrow());
            assert_eq!(stats.allocation_count, count as u64, "{name}");
            assert_eq!(stats.allocations.total, bytes, "{name}, {strategy:?}");
            assert_eq!(bytes, (1 << (LEVELS - 1)) * unit, "the block is full");
            drop(levels);
            assert_eq!(block.borrow().allocation_count(), 0);
        }
    }
}

#[test]
fn halving_walks_fill_every_hole_exactly_in_virtual_blocks() {
    let mut rng = Rng(2342435);
    halving_virtual::<FreeListAllocator>(&mut rng);
    halving_virtual::<BuddyAllocator>(&mut rng);
}

/// The walk of [`halving`] in a one-block custom pool of 8 MiB (units of 4 KiB), under every
/// strategy: every allocation succeeds, keeps its data, and the pool's statistics are the
/// live allocations.
fn halving_pool<S: Suballocator + Send + Sync + 'static>(rng: &mut Rng) {
    const UNIT: u64 = 4096;
    let name = std::any::type_name::<S>();
    let sim = Sim::new(GpuLayout::lavapipe());
    let device = sim.memory_device();
    let allocator = StandardMemoryAllocator::new_default(device.clone());
    let block = (1 << (LEVELS - 1)) * UNIT;
    let pool = support::vma::host_pool::<S>(&allocator, block, 1, 1);
    for strategy in [
        AllocationStrategy::Default,
        AllocationStrategy::MinTime,
        AllocationStrategy::MinMemory,
        AllocationStrategy::MinOffset,
    ] {
        let info = AllocationCreateInfo {
            strategy,
            ..support::vma::upload()
        };
        let mut seed = 0;
        let levels = halving(rng, |level| {
            let size = (1 << level) * UNIT;
            seed += 1;
            let mut a = pool
                .allocate(
                    support::vma::reqs(&device, size, 256),
                    AllocationType::Linear,
                    &info,
                    None,
                )
                .unwrap_or_else(|e| panic!("{name}, {strategy:?}: 2^{level} units: {e}"));
            support::fill(&mut a, seed, size);
            (a, seed, size)
        });
        let live: Vec<Patterned> = levels.into_iter().flatten().collect();
        verify_all(&live, &format!("{name}, {strategy:?}"));
        let stats = support::vma::pool_statistics(&allocator);
        assert_eq!(stats.allocation_count, live.len() as u64, "{name}");
        assert_eq!(stats.block_count, 1, "{name}");
        assert_eq!(stats.reserved_bytes, block, "{name}");
        assert_eq!(stats.allocations.total, block, "{name}, {strategy:?}: full");
        assert_eq!(stats.free_ranges.count, 0, "{name}, {strategy:?}");
    }
    drop(pool);
    drop(allocator);
    sim.assert_nothing_allocated();
}

#[test]
fn halving_walks_fill_every_hole_exactly_in_one_block_pools() {
    let mut rng = Rng(2342435);
    halving_pool::<FreeListAllocator>(&mut rng);
    halving_pool::<BuddyAllocator>(&mut rng);
}

/// `TestAllocationsInitialization` in a one-block pool of each suballocator, with fill
/// patterns on: a kept buffer holds the block; a new buffer reads as
/// [`NEW_BYTE`](ash_memory::corruption::NEW_BYTE), and once destroyed its bytes read as
/// [`FREED_BYTE`](ash_memory::corruption::FREED_BYTE), while the kept one's data stays.
fn initialized<S: Suballocator + Send + Sync + 'static>(ctx: &TestContext) {
    const BUF_SIZE: u64 = 1024;
    let name = std::any::type_name::<S>();
    let allocator = StandardMemoryAllocator::new(
        ctx.memory_device(),
        GenericMemoryAllocatorCreateInfo {
            debug: DebugOptions {
                fill_patterns: true,
                ..Default::default()
            },
            ..Default::default()
        },
    )
    .unwrap();
    let pool = support::vma::host_pool::<S>(&allocator, BUF_SIZE * 10, 1, 1);
    let info = support::vma::upload();
    let buffer_info = common::buffer_info(BUF_SIZE, vk::BufferUsageFlags::TRANSFER_SRC);
    // SAFETY: a valid buffer info; destroyed before its allocation.
    let (kept_buffer, mut kept) = unsafe { pool.create_buffer(&buffer_info, &info) }.unwrap();
    support::fill(&mut kept, 7, BUF_SIZE);
    for round in 0..2 {
        // SAFETY: as above.
        let (buffer, mut alloc) = unsafe { pool.create_buffer(&buffer_info, &info) }.unwrap();
        assert_eq!(alloc.memory(), kept.memory(), "{name}: one block");
        let mut bytes = vec![0; BUF_SIZE as usize];
        alloc.read(0, &mut bytes).unwrap();
        assert!(
            bytes.iter().all(|&b| b == corruption::NEW_BYTE),
            "{name}, round {round}: new memory reads as the pattern"
        );
        alloc.write(0, &[1; BUF_SIZE as usize]).unwrap();
        let ptr = alloc.mapped_ptr().unwrap().as_ptr() as usize;
        // SAFETY: never used by the GPU.
        unsafe { pool.destroy_buffer(buffer, alloc) };
        // SAFETY: the block is alive and mapped (`kept` lives), and nothing uses these freed
        // bytes now.
        unsafe { std::ptr::copy_nonoverlapping(ptr as *const u8, bytes.as_mut_ptr(), bytes.len()) };
        assert!(
            bytes.iter().all(|&b| b == corruption::FREED_BYTE),
            "{name}, round {round}: freed memory reads as the pattern"
        );
        support::verify(&kept, 7, BUF_SIZE, name);
    }
    // SAFETY: never used by the GPU.
    unsafe { pool.destroy_buffer(kept_buffer, kept) };
}

#[test]
fn new_and_freed_allocations_read_as_their_patterns_in_every_kind_of_pool() {
    let ctx = TestContext::new();
    initialized::<FreeListAllocator>(&ctx);
    initialized::<BuddyAllocator>(&ctx);
    initialized::<RingAllocator>(&ctx);
    initialized::<BumpAllocator>(&ctx);
    initialized::<SlotAllocator<1024>>(&ctx);
    assert!(ctx.messages().is_empty(), "{:?}", ctx.messages());
}
