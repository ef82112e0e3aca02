//! Random walks over the whole safe API on the real driver (simulated memory layout, validation
//! layer on), checked against a model after every step.
//!
//! One allocator and a few custom pools (every suballocator, random configurations, some of
//! them invalid) take a random sequence of operations: allocations through every entry point
//! (`allocate`, `allocate_desc`, `allocate_pages`, `allocate_from_type`, `allocate_dedicated`)
//! with sizes, alignments, memory type bits, usages, preferences, strategies, priorities,
//! names, user data and minimum alignments good and bad; frees in random order; host accesses
//! at random offsets and lengths, out of bounds included; names and user data set; pools made,
//! renamed and dropped with their allocations alive; statistics, snapshots, budgets, both JSON
//! dumps, the SVG map, leak reports and corruption checks at random points; defragmentations
//! whose moves are completed (after a host copy), skipped, left open, completed with the wrong
//! allocation, whose sources are freed between passes, and that are dropped midway.
//!
//! After every step: each error is one the operation documents for its input; every live
//! allocation's bytes read back as written; the statistics count the model's live allocations
//! (per pool, per default vector, per heap and in total) and their bytes add up; no two live
//! allocations of one memory object overlap; every heap's budget usage is the driver's count
//! of the heap's memory; the simulated driver holds exactly the memory objects the snapshot
//! lists. At the end, with everything dropped, the leak report is empty and every memory object
//! is freed.
//!
//! The walks are proptest cases (a list of up to 150 `(operation, seed)` pairs each; 8 cases,
//! `PROPTEST_CASES` or `ASH_MEMORY_PROPTEST_CASES` for another count, 160 with
//! `ASH_MEMORY_SOAK`), so a failure shrinks to a short list; the named regressions at the end
//! replay such lists. `a_long_seeded_walk` takes 600 steps from a fixed seed (12,000 with
//! `ASH_MEMORY_SOAK`; `API_WALK_SEED` and `API_WALK_STEPS` for others) and prints what it did;
//! `API_WALK_TRACE` prints every step.

mod common;
mod support;

use ash::vk;
use ash::vk::Handle;
use ash_memory::allocator::defrag::{DefragmentationError, MoveId};
use ash_memory::*;
use proptest::prelude::*;
use std::collections::HashMap;
use std::sync::Arc;
use support::{check_triples, GpuLayout, Rng, Sim, KIB, MIB};

use vk::MemoryPropertyFlags as F;

#[path = "api_walk/access.rs"]
mod access;
#[path = "api_walk/allocate.rs"]
mod allocate;
#[path = "api_walk/books.rs"]
mod books;
#[path = "api_walk/defrag.rs"]
mod defrag;
#[path = "api_walk/model.rs"]
mod model;
#[path = "api_walk/observe.rs"]
mod observe;
#[path = "api_walk/pick.rs"]
mod pick;
#[path = "api_walk/pools.rs"]
mod pools;

use model::*;
use pick::*;

fn run(ops: &[(u8, u64)], margin: u64) -> HashMap<String, u64> {
    run_with(ops, margin, 1024)
}

fn run_with(ops: &[(u8, u64)], margin: u64, granularity: u64) -> HashMap<String, u64> {
    let mut world = World::with(margin, granularity);
    for &(op, seed) in ops {
        world.step(op, seed);
    }
    let done = world.done.clone();
    world.finish();
    done
}

/// 8 cases (see the module docs for more).
fn config() -> ProptestConfig {
    let cases = ["PROPTEST_CASES", "ASH_MEMORY_PROPTEST_CASES"]
        .iter()
        .find_map(|name| std::env::var(name).ok()?.parse().ok())
        .unwrap_or(8 * soak() as u32);
    ProptestConfig {
        cases,
        failure_persistence: None,
        max_shrink_iters: 400,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn random_walks_over_the_api(
        ops in prop::collection::vec((any::<u8>(), any::<u64>()), 1..150),
        margin in prop::sample::select(vec![0u64, 16, 64]),
        granularity in prop::sample::select(vec![1u64, 1024, 64 * 1024]),
    ) {
        run_with(&ops, margin, granularity);
    }
}

/// 20 with `ASH_MEMORY_SOAK` set, else 1.
fn soak() -> u64 {
    if std::env::var_os("ASH_MEMORY_SOAK").is_some() {
        20
    } else {
        1
    }
}

/// A long walk from fixed seeds, with a summary of what it did.
#[test]
fn a_long_seeded_walk() {
    // `API_WALK_SEED` and `API_WALK_STEPS` walk elsewhere.
    let var = |name: &str, default: u64| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let mut rng = Rng(var("API_WALK_SEED", 0x5eed));
    let ops: Vec<(u8, u64)> = (0..var("API_WALK_STEPS", 600 * soak()))
        .map(|_| (rng.next() as u8, rng.next()))
        .collect();
    let done = run(&ops, 16);
    eprintln!("{done:#?}");
    for what in [
        "allocate",
        "allocate_pages",
        "free",
        "access",
        "pool made",
        "defragmentation",
        "observe",
    ] {
        assert!(
            done.get(what).copied().unwrap_or(0) > 0,
            "the walk never did {what}: {done:?}"
        );
    }
}

/// A pool dropped while its allocations live on: the allocator's statistics, snapshot and
/// leak report still show them (and the memory they hold) until they are freed.
#[test]
fn a_dropped_pools_live_allocations_stay_in_the_books() {
    run(
        &[
            (11, 1058539759814963983),
            (14, 2556472812362419019),
            (12, 3505597125811755349),
        ],
        0,
    );
}

/// The same, spelled out: a block allocation and a dedicated one outlive their pool; the
/// allocator's books show them, under the pool's name, until each is freed, and their memory
/// goes back with them.
#[test]
fn a_dropped_pools_allocations_are_counted_until_freed() {
    let world = World::new(16);
    let pool = world
        .allocator
        .create_pool::<FreeListAllocator>(&PoolCreateInfo {
            name: Some("gone".into()),
            memory_type: PoolMemoryType::Index(1),
            block_size: MIB,
            ..Default::default()
        })
        .unwrap();
    let requirements = AllocationRequirements {
        layout: DeviceLayout::from_size_alignment(4 * KIB, 256).unwrap(),
        memory_type_bits: 1 << 1,
        prefers_dedicated_allocation: false,
        requires_dedicated_allocation: false,
    };
    let named = AllocationCreateInfo {
        name: Some("kept".into()),
        ..Default::default()
    };
    let mut block = pool
        .allocate(requirements, AllocationType::Linear, &named, None)
        .unwrap();
    let dedicated = pool
        .allocate_dedicated(1, 8 * KIB, None, &AllocationCreateInfo::default())
        .unwrap();
    assert!(!block.is_dedicated() && dedicated.is_dedicated());
    block.write(0, &[7; 64]).unwrap();
    drop(pool);

    let books = |expected: u64| {
        let stats = world.allocator.statistics();
        assert_eq!(stats.total.allocation_count, expected);
        assert_eq!(stats.total.reserved_bytes, world.device.live_memory_bytes());
        assert_eq!(
            world.allocator.snapshot().blocks.len() as u32,
            world.sim.state.live_objects()
        );
        let leaks = world.allocator.report_leaks();
        assert_eq!(leaks.len() as u64, expected);
        assert!(leaks.iter().all(|l| l.pool.as_deref() == Some("gone")));
        assert!(world.allocator.check_corruption(u32::MAX).is_ok());
        leaks
    };
    let leaks = books(2);
    assert!(leaks.iter().any(|l| l.name.as_deref() == Some("kept")));
    assert_eq!(world.sim.state.live_objects(), 2);
    drop(dedicated);
    books(1);
    assert_eq!(world.sim.state.live_objects(), 1);
    let mut back = [0; 64];
    block.read(0, &mut back).unwrap();
    assert_eq!(back, [7; 64]);
    drop(block);
    books(0);
    assert_eq!(
        world.sim.state.live_objects(),
        0,
        "the block goes with its allocation"
    );
    world.finish();
}
