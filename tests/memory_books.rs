//! The books of reserved memory on random traces, on the simulated driver.
//!
//! Every memory object the crate makes or frees is reported to [`Books`] through the
//! device's memory callbacks. Random traces (small, sizable and large requests, phases that
//! grow and shrink, default vectors and custom pools, small heaps, a simulated budget, one
//! and two threads) check after every step that:
//!
//! - the statistics' reserved bytes and object counts are those of the memory objects alive
//!   (the callbacks' and the simulated driver's counts agree), per memory type too;
//! - kept empty memory never raises the most memory reserved: what is reserved stays under
//!   the peak so far or the memory in use now (see the block vectors' docs, "Releasing");
//! - a custom pool above its minimum block count keeps at most one empty block;
//! - a failed allocation leaves no more memory reserved than before it;
//! - every memory object is freed exactly once, whatever outlives what.
//!
//! After a trace, nothing live and small requests that each empty their block for more than
//! two high-water epochs ([`HIGH_WATER_EPOCH`] samples each) leave exactly one block: the
//! mark has decayed to that block's size, and the empty blocks kept stay under the mark.
//! A memory type left idle while another passes an epoch keeps one empty block. The traces
//! print their peak reserved / peak live ratios, and what VMA's rule (one empty block per
//! memory type) gives on the same placement: they are never above it.

mod common;
#[path = "memory_books/harness.rs"]
mod harness;
mod support;

use ash_memory::*;
use harness::*;
use std::sync::atomic::{AtomicU64, Ordering};
use support::{GpuLayout, Rng, Sim, SimFeatures, KIB, MIB};

/// The default vector of memory type 0 on a device whose heap 0 is `heap` bytes.
fn default_vector_traces(heap: u64, features: SimFeatures, info: AllocationCreateInfo) {
    let block = 8 * MIB;
    let mut ratios = Vec::new();
    let mut failures = 0;
    for (seed, weights) in [
        (1, [8, 3, 1]),
        (2, [3, 3, 1]),
        (3, [1, 4, 0]),
        (4, [10, 1, 1]),
        (5, [0, 1, 1]),
    ] {
        let sim = Sim::with_features(GpuLayout::small_heaps(heap, 256 * MIB), features);
        let (device, books) = device_with_books(&sim);
        if features.memory_budget {
            // The rest of the process holds a quarter of the heap.
            sim.state.set_other_usage(0, heap / 4);
        }
        {
            let allocator = allocator(device, block);
            let allocate = from_type(&allocator, 0, &info);
            let target = Target {
                allocate: &allocate,
                check: &no_check,
                block,
                largest: heap,
            };
            let (peaks, failed) = run_trace(&sim, &allocator, &books, &target, seed, weights, 600);
            ratios.push((seed, peaks.ratio(), peaks.vma_ratio()));
            failures += failed;
            check_decay(&sim, &allocator, &books, 0);
        }
        books.assert_balanced();
        sim.assert_nothing_allocated();
    }
    eprintln!(
        "heap {} MiB: peak reserved / peak live (seed, ratio, VMA's rule): {ratios:.3?}; \
         {failures} failed allocations",
        heap / MIB
    );
}

#[test]
fn the_books_balance_on_random_traces_of_a_default_vector() {
    default_vector_traces(8 << 30, SimFeatures::default(), Default::default());
}

#[test]
fn a_full_heap_never_leaves_more_reserved_after_a_failure() {
    default_vector_traces(48 * MIB, SimFeatures::default(), Default::default());
}

#[test]
fn a_budget_never_leaves_more_reserved_after_a_failure() {
    let features = SimFeatures {
        memory_budget: true,
        ..Default::default()
    };
    let info = AllocationCreateInfo {
        within_budget: true,
        ..Default::default()
    };
    default_vector_traces(64 * MIB, features, info);
}

/// Phases in different memory types: the upload type (1) grows and is freed, then the
/// device-local type (0) grows and is freed, three rounds. What one type keeps never raises
/// the allocator's peak: reserved stays under the peak so far or the memory in use, and the
/// peak under what VMA's rule (one empty block kept per memory type) gives on the same
/// placement: the memory in use plus the largest empty block of each type, at its peak.
/// (Before the allocator-wide rule, the upload type's four kept blocks stayed while the
/// device-local type grew: 1.20 against VMA's 1.06.)
#[test]
fn phases_in_two_memory_types() {
    let block = 8 * MIB;
    let sim = Sim::new(GpuLayout::nvidia_discrete());
    let (device, books) = device_with_books(&sim);
    {
        let allocator = allocator(device, block);
        let types = sim.state.layout.type_count();
        let info = AllocationCreateInfo::default();
        let mut rng = Rng(7);
        let mut peaks = Peaks::default();
        let mut vma_peak = 0;
        for round in 0..3 {
            for ty in [1, 0] {
                let mut live: Vec<(MemoryAlloc, u64)> = Vec::new();
                let mut live_bytes = 0;
                for step in 0..400 {
                    if step < 200 || live.is_empty() {
                        let size = request_size(&mut rng, block, [8, 3, 0]);
                        let layout = DeviceLayout::from_size_alignment(size, 256).unwrap();
                        let a = allocator
                            .allocate_from_type(ty, layout, AllocationType::Linear, &info)
                            .unwrap();
                        live.push((a, size));
                        live_bytes += size;
                    } else {
                        let i = rng.below(live.len() as u64) as usize;
                        live_bytes -= live.swap_remove(i).1;
                    }
                    let stats = allocator.statistics();
                    let now = check_books(&stats, &books, &sim, types);
                    assert!(
                        now.bytes <= peaks.reserved.max(now.in_use),
                        "round {round} type {ty} step {step}: {} bytes reserved, above the peak \
                         {} and the {} in use; objects: {:?}",
                        now.bytes,
                        peaks.reserved,
                        now.in_use,
                        objects(&stats)
                    );
                    peaks.reserved = peaks.reserved.max(now.bytes);
                    peaks.live = peaks.live.max(live_bytes);
                    vma_peak = vma_peak.max(vma_rule(&stats, now, types));
                }
                eprintln!(
                    "round {round} type {ty}: reserved {} MiB at the end of the phase",
                    books.alive(None).0 / MIB
                );
            }
        }
        eprintln!(
            "two types in phases: peak reserved / peak live {:.3}, VMA's rule {:.3}",
            peaks.ratio(),
            vma_peak as f64 / peaks.live as f64
        );
        assert!(peaks.reserved <= vma_peak, "worse than VMA's rule");
    }
    books.assert_balanced();
    sim.assert_nothing_allocated();
}

/// The pool named `name`'s memory objects in `stats`: how many, and how many are empty.
fn pool_objects(stats: &AllocatorStatistics, name: &str) -> (usize, usize) {
    let blocks = stats
        .blocks
        .iter()
        .filter(|b| b.pool.as_deref() == Some(name) && !b.dedicated);
    blocks.fold((0, 0), |(n, e), b| {
        (n + 1, e + usize::from(b.statistics.allocation_count == 0))
    })
}

/// Custom pools of several minimum and maximum block counts, on a small heap: the books
/// balance, a failure (the heap or the pool full) leaves no more reserved, the pool holds
/// between its minimum and maximum blocks, and above its minimum it keeps at most one empty
/// block (see the block vectors' "Releasing": a custom pool keeps one block's worth).
#[test]
fn custom_pools_keep_their_minimum_and_at_most_one_empty_block_above_it() {
    let block = 4 * MIB;
    let mut ratios = Vec::new();
    for (seed, min, max, heap) in [
        (11, 0, usize::MAX, 8 << 30),
        (12, 2, 6, 8 << 30),
        (13, 1, 3, 8 << 30),
        (14, 0, usize::MAX, 40 * MIB),
        (15, 3, usize::MAX, 30 * MIB),
    ] {
        let sim = Sim::new(GpuLayout::small_heaps(heap, 256 * MIB));
        let (device, books) = device_with_books(&sim);
        {
            let allocator = allocator(device, 8 * MIB);
            let name = format!("pool {seed}");
            let pool = allocator
                .create_pool::<FreeListAllocator>(&PoolCreateInfo {
                    name: Some(name.as_str().into()),
                    memory_type: PoolMemoryType::Index(0),
                    block_size: block,
                    min_block_count: min,
                    max_block_count: max,
                    ..Default::default()
                })
                .unwrap();
            let info = AllocationCreateInfo::default();
            let allocate = |layout: DeviceLayout, kind| {
                let requirements = AllocationRequirements {
                    layout,
                    memory_type_bits: 1,
                    prefers_dedicated_allocation: false,
                    requires_dedicated_allocation: false,
                };
                pool.allocate(requirements, kind, &info, None)
            };
            let check = |stats: &AllocatorStatistics| {
                let (count, empty) = pool_objects(stats, &name);
                if count < min || count > max {
                    return Err(format!("{count} blocks, limits {min}..={max}"));
                }
                if count > min && empty > 1 {
                    return Err(format!(
                        "{empty} empty blocks kept, {count} blocks, min {min}"
                    ));
                }
                Ok(())
            };
            let target = Target {
                allocate: &allocate,
                check: &check,
                block,
                largest: block,
            };
            let (peaks, failed) =
                run_trace(&sim, &allocator, &books, &target, seed, [6, 3, 1], 500);
            ratios.push((seed, peaks.ratio(), peaks.vma_ratio(), failed));
            let (count, empty) = pool_objects(&allocator.statistics(), &name);
            // All freed: the minimum stays, or the one empty block a pool keeps.
            assert_eq!((count, empty), (min.max(1), min.max(1)), "seed {seed}");
        }
        books.assert_balanced();
        sim.assert_nothing_allocated();
    }
    eprintln!(
        "pools: peak reserved / peak live (seed, ratio, VMA's rule, failed allocations): \
         {ratios:.3?}"
    );
}

/// One allocation of `size` bytes from memory type 0 of `allocator`.
fn one(allocator: &StandardMemoryAllocator, size: u64) -> MemoryAlloc {
    let layout = DeviceLayout::from_size_alignment(size, 256).unwrap();
    allocator
        .allocate_from_type(0, layout, AllocationType::Linear, &Default::default())
        .unwrap()
}

/// Bytes of the memory objects in `stats` that hold allocations, and of a pool's (all of
/// them, if `pool` is given).
fn held(stats: &AllocatorStatistics, pool: Option<&str>) -> u64 {
    stats
        .blocks
        .iter()
        .filter(|b| {
            b.statistics.allocation_count > 0 || (pool.is_some() && b.pool.as_deref() == pool)
        })
        .map(|b| b.size)
        .sum()
}

/// Allocations outliving their pool and their allocator: dropping the allocator frees at once
/// every memory object that holds no live allocation (kept blocks included) and keeps the
/// others (and its pools') until their last allocation goes; dropping a pool does the same
/// for its own; every memory object is freed exactly once.
#[test]
fn memory_outliving_its_allocator_or_pool_is_freed_once_when_its_last_allocation_goes() {
    let block = 8 * MIB;
    for pool_outlives_allocator in [false, true] {
        let sim = Sim::new(GpuLayout::nvidia_discrete());
        let (device, books) = device_with_books(&sim);
        let allocator = allocator(device, block);
        let pool = allocator
            .create_pool::<FreeListAllocator>(&PoolCreateInfo {
                name: Some("outliving".into()),
                memory_type: PoolMemoryType::Index(0),
                block_size: 4 * MIB,
                min_block_count: 2,
                ..Default::default()
            })
            .unwrap();
        let requirements = |size| AllocationRequirements {
            layout: DeviceLayout::from_size_alignment(size, 256).unwrap(),
            memory_type_bits: 1,
            prefers_dedicated_allocation: false,
            requires_dedicated_allocation: false,
        };
        let from_pool = |size| {
            pool.allocate(
                requirements(size),
                AllocationType::Linear,
                &Default::default(),
                None,
            )
            .unwrap()
        };
        // Blocks of the allocator in use, kept empty, a dedicated allocation; the pool's
        // minimum blocks, one in use, and one more block in use.
        let mut mine: Vec<_> = (0..40)
            .map(|i| one(&allocator, (i % 5 + 1) * 200 * KIB))
            .collect();
        mine.push(one(&allocator, 6 * MIB));
        let mut kept: Vec<_> = (0..20).map(|_| one(&allocator, 2 * MIB)).collect();
        let theirs = vec![from_pool(3 * MIB), from_pool(3 * MIB), from_pool(3 * MIB)];
        kept.truncate(0);
        mine.truncate(30);
        let types = sim.state.layout.type_count();
        let stats = allocator.statistics();
        check_books(&stats, &books, &sim, types);
        assert!(
            stats
                .blocks
                .iter()
                .any(|b| b.statistics.allocation_count == 0 && b.pool.is_none()),
            "the trace keeps empty blocks: {:?}",
            objects(&stats)
        );
        let (a, p) = if pool_outlives_allocator {
            // The allocator goes first: its memory that holds nothing goes with it.
            let expected = held(&stats, Some("outliving"));
            drop(allocator);
            assert_eq!(books.alive(None).0, expected, "the allocator's kept memory");
            (None, Some(pool))
        } else {
            let expected = held(&stats, None)
                + stats
                    .blocks
                    .iter()
                    .filter(|b| b.pool.is_none() && b.statistics.allocation_count == 0)
                    .map(|b| b.size)
                    .sum::<u64>();
            drop(pool);
            assert_eq!(books.alive(None).0, expected, "the pool's empty blocks");
            (Some(allocator), None)
        };
        // Half of the allocations go, then the last owner, then the rest.
        mine.truncate(10);
        drop(a);
        drop(p);
        let driver: u64 = (0..2).map(|h| sim.state.heap_used(h)).sum();
        assert_eq!(books.alive(None).0, driver);
        drop(theirs);
        drop(mine);
        books.assert_balanced();
        sim.assert_nothing_allocated();
    }
}

/// Two threads on one allocator (one memory type, then one each), growing then shrinking at
/// random: at every meeting point (each 20 steps) the books balance; afterwards the kept
/// memory decays as on one thread, and every memory object is freed once. Prints peak
/// reserved (the simulated driver's peak) / peak live (the live bytes of both threads).
#[test]
fn two_threads_keep_the_books() {
    let block = 8 * MIB;
    let mut ratios = Vec::new();
    for (seed, types) in [(21u64, [0u32, 0]), (22, [0, 1]), (23, [0, 0])] {
        let sim = Sim::new(GpuLayout::nvidia_discrete());
        let (device, books) = device_with_books(&sim);
        {
            let allocator = allocator(device, block);
            let count = sim.state.layout.type_count();
            let barrier = std::sync::Barrier::new(2);
            let live_bytes = AtomicU64::new(0);
            let peak_live = AtomicU64::new(0);
            std::thread::scope(|s| {
                for (t, ty) in types.into_iter().enumerate() {
                    let (allocator, barrier, books, sim) = (&allocator, &barrier, &books, &sim);
                    let (live_bytes, peak_live) = (&live_bytes, &peak_live);
                    s.spawn(move || {
                        let mut rng = Rng(seed * 100 + t as u64);
                        let mut live: Vec<(MemoryAlloc, u64)> = Vec::new();
                        let steps = 400;
                        for step in 0..steps {
                            let grow = step < steps / 2;
                            if live.is_empty() || rng.below(3) < if grow { 2 } else { 1 } {
                                let size = request_size(&mut rng, block, [8, 3, 1]);
                                let layout = DeviceLayout::from_size_alignment(size, 256).unwrap();
                                let a = allocator
                                    .allocate_from_type(
                                        ty,
                                        layout,
                                        AllocationType::Linear,
                                        &Default::default(),
                                    )
                                    .unwrap();
                                live.push((a, size));
                                let now = live_bytes.fetch_add(size, Ordering::SeqCst) + size;
                                peak_live.fetch_max(now, Ordering::SeqCst);
                            } else {
                                let i = rng.below(live.len() as u64) as usize;
                                let (a, size) = live.swap_remove(i);
                                drop(a);
                                live_bytes.fetch_sub(size, Ordering::SeqCst);
                            }
                            if step % 20 == 19 {
                                barrier.wait();
                                if t == 0 {
                                    check_books(&allocator.statistics(), books, sim, count);
                                }
                                barrier.wait();
                            }
                        }
                        for (_, size) in live.drain(..) {
                            live_bytes.fetch_sub(size, Ordering::SeqCst);
                        }
                    });
                }
            });
            check_books(&allocator.statistics(), &books, &sim, count);
            let peak_reserved: u64 = (0..2).map(|h| sim.state.heap_peak(h)).sum();
            ratios.push((
                seed,
                peak_reserved as f64 / peak_live.load(Ordering::SeqCst) as f64,
            ));
            for ty in types {
                check_decay(&sim, &allocator, &books, ty);
            }
        }
        books.assert_balanced();
        sim.assert_nothing_allocated();
    }
    eprintln!("two threads: peak reserved / peak live (seed, ratio): {ratios:.3?}");
}

/// A steady state over three memory types (three quarters device-local, the rest upload and
/// download; one request in ten sizable): at every step the books balance and what is
/// reserved stays under the peak so far or the memory in use, across the types (the kept
/// blocks of one type give way when another would take the allocator past its peak).
/// Prints peak reserved / peak live and the `vkAllocateMemory` calls.
#[test]
fn a_steady_state_over_three_memory_types() {
    let block = 16 * MIB;
    let mut results = Vec::new();
    for seed in 31..34u64 {
        let sim = Sim::new(GpuLayout::nvidia_discrete());
        let (device, books) = device_with_books(&sim);
        {
            let allocator = allocator(device.clone(), block);
            let types = sim.state.layout.type_count();
            let mut rng = Rng(seed);
            let mut live: Vec<(MemoryAlloc, u64)> = Vec::new();
            let mut live_bytes = 0;
            let mut peaks = Peaks::default();
            for step in 0..3000 {
                if live.len() < 300 || step % 2 == 0 {
                    let ty = match rng.below(100) {
                        0..75 => 0,
                        75..90 => 1,
                        _ => 2,
                    };
                    let size = if rng.below(10) == 0 {
                        rng.range(block / 8 + 1, block / 2)
                    } else {
                        rng.range(KIB, 256 * KIB)
                    };
                    let layout = DeviceLayout::from_size_alignment(size, 256).unwrap();
                    let a = allocator
                        .allocate_from_type(ty, layout, AllocationType::Linear, &Default::default())
                        .unwrap();
                    live.push((a, size));
                    live_bytes += size;
                } else {
                    let i = rng.below(live.len() as u64) as usize;
                    live_bytes -= live.swap_remove(i).1;
                }
                let stats = allocator.statistics();
                let now = check_books(&stats, &books, &sim, types);
                assert!(
                    now.bytes <= peaks.reserved.max(now.in_use),
                    "seed {seed} step {step}: {} bytes reserved, above the peak {} and the {} \
                     in use; objects: {:?}",
                    now.bytes,
                    peaks.reserved,
                    now.in_use,
                    objects(&stats)
                );
                peaks.reserved = peaks.reserved.max(now.bytes);
                peaks.live = peaks.live.max(live_bytes);
                peaks.vma = peaks.vma.max(vma_rule(&stats, now, types));
            }
            assert!(peaks.reserved <= peaks.vma, "seed {seed}: above VMA's rule");
            results.push((
                seed,
                peaks.ratio(),
                peaks.vma_ratio(),
                device.memory_allocation_calls(),
            ));
        }
        books.assert_balanced();
        sim.assert_nothing_allocated();
    }
    eprintln!(
        "three types, steady state: (seed, peak reserved / peak live, VMA's rule, \
         vkAllocateMemory calls): {results:.3?}"
    );
}

/// The upload type (1) fills four blocks and frees everything; then the device-local type (0)
/// serves one small request at a time for more than two epochs of its mark. The upload type
/// took no sample of its own meanwhile: it keeps one empty block (VMA's rule for a default
/// pool), not the four its mark allowed.
#[test]
fn an_idle_memory_type_keeps_one_empty_block() {
    let block = 8 * MIB;
    let sim = Sim::new(GpuLayout::nvidia_discrete());
    let (device, books) = device_with_books(&sim);
    {
        let allocator = allocator(device, block);
        let types = sim.state.layout.type_count();
        let info = AllocationCreateInfo::default();
        let layout = DeviceLayout::from_size_alignment(MIB, 256).unwrap();
        let upload: Vec<_> = (0..28)
            .map(|_| {
                allocator
                    .allocate_from_type(1, layout, AllocationType::Linear, &info)
                    .unwrap()
            })
            .collect();
        drop(upload);
        let small = DeviceLayout::from_size_alignment(4 * KIB, 256).unwrap();
        // The first small request makes a block past the allocator's peak: the upload type
        // gives back as much first (its smallest block that covers it).
        drop(
            allocator
                .allocate_from_type(0, small, AllocationType::Linear, &info)
                .unwrap(),
        );
        let kept = allocator.block_count(1);
        assert!(kept >= 3, "{kept} blocks kept");
        for round in 0..2 * HIGH_WATER_EPOCH + 2 {
            drop(
                allocator
                    .allocate_from_type(0, small, AllocationType::Linear, &info)
                    .unwrap(),
            );
            if round < HIGH_WATER_EPOCH {
                assert_eq!(allocator.block_count(1), kept, "round {round}");
            }
        }
        check_books(&allocator.statistics(), &books, &sim, types);
        assert_eq!(allocator.block_count(1), 1, "the idle type keeps one block");
        assert_eq!(allocator.block_count(0), 1);
    }
    books.assert_balanced();
    sim.assert_nothing_allocated();
}

/// The default vector of memory type 0 fills blocks and frees them (they are kept); then a
/// custom pool of the same type grows: the default vector's kept blocks give way as far as
/// the allocator's peak needs, so what is reserved stays under the peak so far or the memory
/// in use, as for the default vectors.
#[test]
fn kept_blocks_give_way_to_a_custom_pool_that_grows() {
    let block = 8 * MIB;
    let sim = Sim::new(GpuLayout::nvidia_discrete());
    let (device, books) = device_with_books(&sim);
    {
        let allocator = allocator(device, block);
        let types = sim.state.layout.type_count();
        let info = AllocationCreateInfo::default();
        let layout = DeviceLayout::from_size_alignment(MIB, 256).unwrap();
        let held: Vec<_> = (0..30)
            .map(|_| {
                allocator
                    .allocate_from_type(0, layout, AllocationType::Linear, &info)
                    .unwrap()
            })
            .collect();
        drop(held);
        let stats = allocator.statistics();
        let mut peak = check_books(&stats, &books, &sim, types).bytes;
        assert!(allocator.block_count(0) >= 3, "{:?}", objects(&stats));
        let pool = allocator
            .create_pool::<FreeListAllocator>(&PoolCreateInfo {
                memory_type: PoolMemoryType::Index(0),
                block_size: block,
                ..Default::default()
            })
            .unwrap();
        let requirements = AllocationRequirements {
            layout: DeviceLayout::from_size_alignment(7 * MIB, 256).unwrap(),
            memory_type_bits: 1,
            prefers_dedicated_allocation: false,
            requires_dedicated_allocation: false,
        };
        let mut live = Vec::new();
        for step in 0..6 {
            live.push(
                pool.allocate(requirements, AllocationType::Linear, &info, None)
                    .unwrap(),
            );
            let stats = allocator.statistics();
            let now = check_books(&stats, &books, &sim, types);
            assert!(
                now.bytes <= peak.max(now.in_use),
                "step {step}: {} reserved, above the peak {peak} and the {} in use: {:?}",
                now.bytes,
                now.in_use,
                objects(&stats)
            );
            peak = peak.max(now.bytes);
        }
        drop(live);
        drop(pool);
    }
    books.assert_balanced();
    sim.assert_nothing_allocated();
}
