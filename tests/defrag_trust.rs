//! Defragmentation that can never lose data, on the driver: registrations tied to the
//! allocation itself (not to its place), passes that always end whatever the application
//! does between them, settled moves gone from their pass, names and user data as they are
//! when a move completes, and custom pools that never pass their maximum block count.

mod common;
mod support;

use ash_memory::allocator::defrag::DefragmentationError;
use ash_memory::*;
use std::collections::HashSet;
use std::sync::Arc;
use support::defrag::{align, copy_and_complete, open, patterned, pool, reqs, upload};
use support::{fill, verify, GpuLayout, Rng, Sim, KIB};

/// A pool of whole 1 MiB blocks, dropped before its allocator and device.
struct PoolSetup {
    pool: MemoryPool<FreeListAllocator>,
    _allocator: StandardMemoryAllocator,
    sim: Sim,
}

impl PoolSetup {
    fn new(max_blocks: usize) -> Self {
        let sim = Sim::new(GpuLayout::amd_discrete_bar());
        let allocator = StandardMemoryAllocator::new_default(sim.memory_device());
        let pool = pool(&allocator, max_blocks);
        Self {
            pool,
            _allocator: allocator,
            sim,
        }
    }
}

#[test]
fn an_allocation_freed_after_add_is_never_planned_and_its_place_is_never_resized() {
    // Block 1: `a` (64 KiB, registered, then freed) with `b` (96 KiB, not registered) made in
    // its place, and `g` and `x` (registered). Block 2 (64 KiB free) and block 3 (924 KiB
    // free) hold allocations that may not move. Were `b` taken for `a`, block 1 would look
    // movable as a whole, and a pass would move "a" (b's bytes) out of it.
    let setup = PoolSetup::new(4);
    let device = setup.sim.memory_device();
    let pool = &setup.pool;
    let mut a = patterned(pool, &device, 64 * KIB, 1);
    let f = patterned(pool, &device, 64 * KIB, 2);
    let mut g = patterned(pool, &device, 64 * KIB, 3);
    let mut x = patterned(pool, &device, 768 * KIB, 4);
    let l = patterned(pool, &device, 512 * KIB, 5);
    let m = patterned(pool, &device, 448 * KIB, 6);
    assert_ne!(l.memory(), a.memory(), "block 1 is full but 64 KiB");
    drop(f);
    let (a_memory, a_offset) = (a.memory(), a.offset());
    let mut defrag = pool.defragmentation(&DefragmentationInfo::default());
    let a_id = defrag.add(&mut a, align()).unwrap();
    let g_id = defrag.add(&mut g, align()).unwrap();
    let x_id = defrag.add(&mut x, align()).unwrap();
    drop(a);
    let mut b = patterned(pool, &device, 96 * KIB, 7);
    assert_eq!(
        (b.memory(), b.offset()),
        (a_memory, a_offset),
        "setup: b takes a's place"
    );
    let z = patterned(pool, &device, 100 * KIB, 8);
    let mut passes = 0;
    while let Some(mut pass) = defrag.next_pass() {
        passes += 1;
        assert!(passes <= 20, "the passes never end");
        for i in open(&pass) {
            let id = pass.get(i).unwrap().id();
            // The allocation in a freed registration's place is never that registration's.
            assert_eq!(
                pass.complete(i, &mut b),
                Err(DefragmentationError::NotTheSource)
            );
            assert_ne!(id, a_id, "a move planned for a freed allocation");
            let source = if id == g_id { &mut g } else { &mut x };
            assert!(id == g_id || id == x_id);
            copy_and_complete(&mut pass, i, source).unwrap();
        }
        pass.end();
    }
    assert_eq!(b.size(), 96 * KIB, "b keeps its size");
    verify(&b, 7, 96 * KIB, "b after the defragmentation");
    verify(&g, 3, 64 * KIB, "g");
    verify(&x, 4, 768 * KIB, "x");
    verify(&l, 5, 512 * KIB, "l");
    verify(&m, 6, 448 * KIB, "m");
    verify(&z, 8, 100 * KIB, "z");
}

#[test]
fn a_moved_allocation_freed_between_passes_leaves_the_defragmentation() {
    // A registration follows its allocation to the destination; once the application frees
    // it there (and allocates anew, in its place often), no pass plans a move for it.
    let setup = PoolSetup::new(4);
    let device = setup.sim.memory_device();
    let pool = &setup.pool;
    let mut live: Vec<(MemoryAlloc, u64, u64)> = Vec::new();
    let mut rng = Rng(11);
    for seed in 0..40 {
        let size = (1 + rng.below(8)) * 16 * KIB;
        live.push((patterned(pool, &device, size, seed), seed, size));
    }
    // Every second one freed: sparse blocks.
    let mut live: Vec<_> = live
        .into_iter()
        .enumerate()
        .filter(|(i, _)| i % 2 == 0)
        .map(|(_, x)| x)
        .collect();
    let mut defrag = pool.defragmentation(&DefragmentationInfo {
        max_moves_per_pass: 1,
        ..Default::default()
    });
    let mut ids = Vec::new();
    for (a, _, _) in &mut live {
        ids.push(defrag.add(a, align()).unwrap());
    }
    let mut passes = 0;
    let mut replaced = HashSet::new();
    while let Some(mut pass) = defrag.next_pass() {
        passes += 1;
        assert!(passes <= 200, "the passes never end");
        let moves = open(&pass);
        // The first pass's move completes; then its allocation is freed and a new one of
        // its size made (in its place, often): the registration went with the allocation.
        if passes == 1 {
            let i = moves[0];
            let id = pass.get(i).unwrap().id();
            let k = ids.iter().position(|&x| x == id).unwrap();
            copy_and_complete(&mut pass, i, &mut live[k].0).unwrap();
            pass.end();
            let size = live[k].2;
            live[k] = (patterned(pool, &device, size, 1000), 1000, size);
            replaced.insert(id);
            continue;
        }
        for i in moves {
            let id = pass.get(i).unwrap().id();
            assert!(!replaced.contains(&id), "a move for a freed allocation");
            let k = ids.iter().position(|&x| x == id).unwrap();
            copy_and_complete(&mut pass, i, &mut live[k].0).unwrap();
        }
        pass.end();
    }
    for (a, seed, size) in &live {
        assert_eq!(a.size(), *size);
        verify(a, *seed, *size, "after the defragmentation");
    }
}

#[test]
fn adding_an_allocation_twice_registers_it_once() {
    let setup = PoolSetup::new(4);
    let device = setup.sim.memory_device();
    let pool = &setup.pool;
    let mut a = patterned(pool, &device, 64 * KIB, 1);
    let pad = patterned(pool, &device, 900 * KIB, 2);
    let mut c = patterned(pool, &device, 512 * KIB, 3);
    drop(pad);
    let mut defrag = pool.defragmentation(&DefragmentationInfo::default());
    let first = defrag.add(&mut a, align()).unwrap();
    assert_eq!(defrag.add(&mut a, align()), Ok(first), "the same id again");
    defrag.add(&mut c, align()).unwrap();
    let mut passes = 0;
    while let Some(mut pass) = defrag.next_pass() {
        passes += 1;
        assert!(passes <= 20, "the passes never end");
        let moves = open(&pass);
        let sources: HashSet<_> = moves
            .iter()
            .map(|&i| {
                let m = pass.get(i).unwrap();
                (m.source_memory(), m.source_offset())
            })
            .collect();
        assert_eq!(sources.len(), moves.len(), "two moves of one allocation");
        for i in moves {
            let source = if pass.get(i).unwrap().id() == first {
                &mut a
            } else {
                &mut c
            };
            copy_and_complete(&mut pass, i, source).unwrap();
        }
        pass.end();
    }
    verify(&a, 1, 64 * KIB, "a");
    verify(&c, 3, 512 * KIB, "c");
}

#[test]
fn names_and_user_data_set_after_add_are_what_a_moved_allocation_carries() {
    let sim = Sim::new(GpuLayout::amd_discrete_bar());
    let allocator = StandardMemoryAllocator::new_default(sim.memory_device());
    let device = sim.memory_device();
    let pool = pool(&allocator, 8);
    let mut live: Vec<(MemoryAlloc, u64, u64)> = (0..60)
        .map(|seed| (patterned(&pool, &device, 48 * KIB, seed), seed, 48 * KIB))
        .collect();
    // Sparse blocks: two of three freed.
    let mut k = 0;
    live.retain(|_| {
        k += 1;
        k % 3 == 0
    });
    for (i, (a, _, _)) in live.iter_mut().enumerate() {
        if i % 2 == 0 {
            a.set_name(Some(format!("old {i}").into()));
            a.set_user_data(Some(Arc::new(i)));
        }
    }
    let mut defrag = pool.defragmentation(&DefragmentationInfo::default());
    for (a, _, _) in &mut live {
        defrag.add(a, align()).unwrap();
    }
    // After `add`: even ones renamed or stripped, odd ones named for the first time.
    for (i, (a, _, _)) in live.iter_mut().enumerate() {
        match i % 4 {
            0 => {
                a.set_name(Some(format!("new {i}").into()));
                a.set_user_data(Some(Arc::new(i * 10)));
            }
            2 => {
                a.set_name(None);
                a.set_user_data(None);
            }
            _ => a.set_name(Some(format!("late {i}").into())),
        }
    }
    let before: Vec<_> = live
        .iter()
        .map(|(a, _, _)| (a.memory(), a.offset()))
        .collect();
    let mut passes = 0;
    while let Some(mut pass) = defrag.next_pass() {
        passes += 1;
        assert!(passes <= 50, "the passes never end");
        for i in open(&pass) {
            let id = pass.get(i).unwrap().id();
            copy_and_complete(&mut pass, i, &mut live[id].0).unwrap();
        }
        pass.end();
    }
    let mut moved = 0;
    for (i, (a, seed, size)) in live.iter().enumerate() {
        moved += usize::from((a.memory(), a.offset()) != before[i]);
        let (name, data) = match i % 4 {
            0 => (Some(format!("new {i}")), Some(i * 10)),
            2 => (None, None),
            _ => (Some(format!("late {i}")), None),
        };
        assert_eq!(a.name(), name.as_deref(), "allocation {i}'s name");
        assert_eq!(
            a.user_data_as::<usize>().copied(),
            data,
            "allocation {i}'s data"
        );
        verify(a, *seed, *size, "after the moves");
    }
    assert!(moved > 4, "{moved} moves");
    // The snapshot (what the JSON dump shows) has the names as they are now.
    let names: HashSet<String> = pool
        .snapshot()
        .blocks
        .iter()
        .flat_map(|b| {
            b.ranges
                .iter()
                .filter_map(|r| r.name.as_deref().map(String::from))
        })
        .collect();
    for (i, _) in live.iter().enumerate() {
        let stale = format!("old {i}");
        assert!(
            !names.contains(&stale),
            "stale name {stale} in the snapshot"
        );
    }
}

#[test]
fn settled_moves_are_gone_from_their_pass() {
    let sim = Sim::new(GpuLayout::amd_discrete_bar());
    let allocator = StandardMemoryAllocator::new_default(sim.memory_device());
    let device = sim.memory_device();
    let pool = pool(&allocator, 8);
    let mut live: Vec<(MemoryAlloc, u64, u64)> = (0..40)
        .map(|seed| (patterned(&pool, &device, 64 * KIB, seed), seed, 64 * KIB))
        .collect();
    let mut k = 0;
    live.retain(|_| {
        k += 1;
        k % 4 == 0
    });
    let mut defrag = pool.defragmentation(&DefragmentationInfo::default());
    for (a, _, _) in &mut live {
        defrag.add(a, align()).unwrap();
    }
    let mut pass = defrag.next_pass().expect("a pass");
    let moves = open(&pass);
    assert!(moves.len() >= 3, "{} moves", moves.len());
    let (done, skipped) = (moves[0], moves[1]);
    let id = pass.get(done).unwrap().id();
    copy_and_complete(&mut pass, done, &mut live[id].0).unwrap();
    pass.skip(skipped).unwrap();
    // Gone from the pass: listing the moves and reading every destination never panics.
    let left = open(&pass);
    assert_eq!(left, moves[2..].to_vec());
    for m in pass.moves() {
        assert!(m.destination().size() >= m.size());
    }
    assert!(pass.get(done).is_none() && pass.get(skipped).is_none());
    assert_eq!(pass.skip(done), Err(DefragmentationError::NoSuchMove(done)));
    let report = pass.end();
    assert_eq!((report.moves, report.skipped), (1, moves.len() - 1));
    // The defragmentation's own count, read between passes.
    let stats = defrag.stats();
    assert_eq!((stats.passes, stats.moves), (1, 1));
    assert_eq!(stats.bytes_moved, 64 * KIB);
    assert!(format!("{defrag:?}").contains("moves: 1"));
}

#[test]
fn skipping_every_move_ends_the_defragmentation() {
    // An application that cannot move anything (resources in use every frame): each skipped
    // allocation is never planned again, so the passes end.
    let sim = Sim::new(GpuLayout::amd_discrete_bar());
    let allocator = StandardMemoryAllocator::new_default(sim.memory_device());
    let device = sim.memory_device();
    let pool = pool(&allocator, 16);
    let mut live: Vec<MemoryAlloc> = (0..120)
        .map(|seed| patterned(&pool, &device, 32 * KIB, seed))
        .collect();
    let mut k = 0;
    live.retain(|_| {
        k += 1;
        k % 3 == 0
    });
    for info in [
        DefragmentationInfo::default(),
        DefragmentationInfo {
            algorithm: DefragmentationAlgorithm::Full,
            max_moves_per_pass: 3,
            ..Default::default()
        },
    ] {
        let mut defrag = pool.defragmentation(&info);
        for a in &mut live {
            defrag.add(a, align()).unwrap();
        }
        let mut passes = 0;
        while let Some(mut pass) = defrag.next_pass() {
            passes += 1;
            assert!(
                passes <= live.len() + 1,
                "{passes} passes for {} allocations",
                live.len()
            );
            for i in open(&pass) {
                pass.skip(i).unwrap();
            }
            pass.end();
        }
    }
}

#[test]
fn a_pool_never_holds_more_than_its_maximum_of_blocks_during_a_defragmentation() {
    let sim = Sim::new(GpuLayout::amd_discrete_bar());
    let allocator = StandardMemoryAllocator::new_default(sim.memory_device());
    let device = sim.memory_device();
    let pool = pool(&allocator, 2);
    // Two blocks: the first sparse (one allocation of 64 KiB), the second half full.
    let mut a = patterned(&pool, &device, 64 * KIB, 1);
    let pad = patterned(&pool, &device, 960 * KIB, 2);
    let mut c = patterned(&pool, &device, 512 * KIB, 3);
    drop(pad);
    assert_ne!(a.memory(), c.memory());
    let mut defrag = pool.defragmentation(&DefragmentationInfo::default());
    defrag.add(&mut a, align()).unwrap();
    defrag.add(&mut c, align()).unwrap();
    let pass = defrag.next_pass().expect("a pass empties the sparse block");
    assert_eq!(pass.emptying().len(), 1);
    // The block being emptied is the pool's too: a request that fits neither block's free
    // room finds the pool full, and no third memory object is made.
    let objects = sim.state.live_objects();
    let err = pool
        .allocate(
            reqs(&device, 600 * KIB),
            AllocationType::Linear,
            &upload(),
            None,
        )
        .unwrap_err();
    assert_eq!(err, AllocationError::PoolFull { max_blocks: 2 });
    assert_eq!(sim.state.live_objects(), objects, "no vkAllocateMemory");
    assert!(pool.statistics().total.block_count <= 2);
    drop(pass);
}

/// A random application between passes: completes, skips or leaves open each move, frees
/// moving and other allocations, allocates anew (in the freed places, often), and adds some
/// of the new ones. Whatever it does, `next_pass` returns `None` within the stated bound:
/// at most `(MAX_MOVES_PER_ALLOCATION + 1) × added` passes.
#[test]
fn passes_end_within_the_bound_whatever_the_application_does() {
    let sim = Sim::new(GpuLayout::amd_discrete_bar());
    let allocator = StandardMemoryAllocator::new_default(sim.memory_device());
    let device = sim.memory_device();
    for seed in 0..12u64 {
        let pool = pool(&allocator, 12);
        let mut rng = Rng(seed);
        let mut live: Vec<Option<(MemoryAlloc, u64, u64)>> = (0..90)
            .map(|s| {
                let size = (1 + rng.below(16)) * 8 * KIB;
                Some((patterned(&pool, &device, size, s), s, size))
            })
            .collect();
        for slot in live.iter_mut() {
            if rng.below(3) > 0 {
                *slot = None;
            }
        }
        let info = DefragmentationInfo {
            algorithm: if seed % 2 == 0 {
                DefragmentationAlgorithm::Fast
            } else {
                DefragmentationAlgorithm::Full
            },
            max_moves_per_pass: if seed % 3 == 0 { 2 } else { usize::MAX },
            max_bytes_per_pass: if seed % 4 == 1 { 96 * KIB } else { u64::MAX },
            ..Default::default()
        };
        let mut defrag = pool.defragmentation(&info);
        // Registration id -> slot in `live`.
        let mut slot_of = std::collections::HashMap::new();
        let mut added = 0usize;
        for (k, slot) in live.iter_mut().enumerate() {
            if let Some((a, _, _)) = slot {
                slot_of.insert(defrag.add(a, align()).unwrap(), k);
                added += 1;
            }
        }
        let mut passes = 0usize;
        let mut next_seed = 10_000;
        loop {
            let Some(mut pass) = defrag.next_pass() else {
                break;
            };
            passes += 1;
            let bound = (allocator::defrag::MAX_MOVES_PER_ALLOCATION + 1) * added;
            assert!(
                passes <= bound,
                "seed {seed}: {passes} passes, bound {bound}"
            );
            for i in open(&pass) {
                let id = pass.get(i).unwrap().id();
                let k = slot_of[&id];
                match rng.below(4) {
                    0 => pass.skip(i).unwrap(),
                    1 => {} // left open: skipped at the end of the pass
                    _ => {
                        let (a, _, _) = live[k].as_mut().unwrap();
                        copy_and_complete(&mut pass, i, a).unwrap();
                    }
                }
            }
            pass.end();
            // Between passes: free some, allocate some (and add some of those).
            for slot in live.iter_mut() {
                if slot.is_some() && rng.below(8) == 0 {
                    *slot = None;
                }
            }
            for _ in 0..rng.below(6) {
                let size = (1 + rng.below(16)) * 8 * KIB;
                let Ok(mut a) =
                    pool.allocate(reqs(&device, size), AllocationType::Linear, &upload(), None)
                else {
                    continue;
                };
                fill(&mut a, next_seed, size);
                if rng.below(2) == 0 {
                    slot_of.insert(defrag.add(&mut a, align()).unwrap(), live.len());
                    added += 1;
                }
                live.push(Some((a, next_seed, size)));
                next_seed += 1;
            }
        }
        for (a, s, size) in live.iter().flatten() {
            assert_eq!(a.size(), *size);
            verify(a, *s, *size, "after the defragmentation");
        }
    }
}

#[test]
fn walks_kept_between_passes_never_plan_a_freed_or_skipped_allocation() {
    // Full tries the same sparse blocks pass after pass, and what a walk of a block found is
    // kept while the block shows nothing changed since. Freeing a registered allocation
    // that has not moved (and making another of its size, in its place often), or skipping
    // a move, changes what a walk finds: no later pass plans either allocation.
    let setup = PoolSetup::new(16);
    let device = setup.sim.memory_device();
    let pool = &setup.pool;
    let mut rng = Rng(29);
    let mut live: Vec<(MemoryAlloc, u64, u64)> = Vec::new();
    for seed in 0..90 {
        let size = (1 + rng.below(8)) * 16 * KIB;
        live.push((patterned(pool, &device, size, seed), seed, size));
    }
    // Every second one freed: sparse blocks.
    let mut live: Vec<_> = live
        .into_iter()
        .enumerate()
        .filter(|(i, _)| i % 2 == 0)
        .map(|(_, x)| x)
        .collect();
    let mut defrag = pool.defragmentation(&DefragmentationInfo {
        algorithm: DefragmentationAlgorithm::Full,
        max_moves_per_pass: 1,
        ..Default::default()
    });
    let mut ids = Vec::new();
    for (a, _, _) in &mut live {
        ids.push(defrag.add(a, align()).unwrap());
    }
    let (mut passes, mut next_freed, mut moved_ids) = (0, 0, HashSet::new());
    let (mut freed, mut skipped) = (HashSet::new(), HashSet::new());
    while let Some(mut pass) = defrag.next_pass() {
        passes += 1;
        assert!(passes <= 3 * ids.len(), "the passes never end");
        for i in open(&pass) {
            let id = pass.get(i).unwrap().id();
            assert!(!freed.contains(&id), "a move for a freed allocation");
            assert!(!skipped.contains(&id), "a move for a skipped allocation");
            if passes % 4 == 0 {
                pass.skip(i).unwrap();
                skipped.insert(id);
                continue;
            }
            let k = ids.iter().position(|&x| x == id).unwrap();
            copy_and_complete(&mut pass, i, &mut live[k].0).unwrap();
            moved_ids.insert(id);
        }
        pass.end();
        // Every third pass, a registered allocation that never moved is freed and another
        // of its size made.
        if passes % 3 == 0 {
            while next_freed < live.len()
                && (moved_ids.contains(&ids[next_freed]) || skipped.contains(&ids[next_freed]))
            {
                next_freed += 1;
            }
            if next_freed < live.len() {
                let size = live[next_freed].2;
                let seed = 1000 + next_freed as u64;
                live[next_freed] = (patterned(pool, &device, size, seed), seed, size);
                freed.insert(ids[next_freed]);
                next_freed += 1;
            }
        }
    }
    assert!(
        !freed.is_empty() && !skipped.is_empty(),
        "nothing was tried"
    );
    for (a, seed, size) in &live {
        assert_eq!(a.size(), *size);
        verify(a, *seed, *size, "after the defragmentation");
    }
}
