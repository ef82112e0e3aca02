//! Defragmentation against misuse and reuse, on the driver: what the application may do
//! through the safe API between and during passes never makes a pass plan a freed
//! allocation, lose bytes, or leave the allocator's accounts wrong.

mod common;
mod support;

use ash::vk;
use ash_memory::allocator::defrag::DefragmentationError;
use ash_memory::*;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::RwLock;
use support::defrag::{align, copy_and_complete, open, patterned, pool, reqs, upload};
use support::{fill, verify, verify_each, GpuLayout, Rng, Sim, KIB, MIB};

/// `count` patterned allocations of 16 to 128 KiB in `pool`, every second one freed:
/// sparse blocks. `(allocation, pattern seed, size)`.
fn sparse(
    pool: &dyn MemoryAllocator,
    device: &MemoryDevice,
    count: u64,
    seed: u64,
) -> Vec<(MemoryAlloc, u64, u64)> {
    let mut rng = Rng(seed);
    let all: Vec<_> = (0..count)
        .map(|s| {
            let size = (1 + rng.below(8)) * 16 * KIB;
            (
                patterned(pool, device, size, seed * 1000 + s),
                seed * 1000 + s,
                size,
            )
        })
        .collect();
    all.into_iter().step_by(2).collect()
}

#[test]
fn a_registration_whose_block_was_released_is_never_planned_in_a_new_block_of_its_handle() {
    // Registered allocations freed, their blocks released, and new blocks made that the
    // driver gives the same memory handles (drivers reuse freed handles; the validation
    // layer's handle wrapping is off here so that lavapipe's show): the allocations made
    // there, at the freed ones' offsets, are not the registered ones.
    const BLOCKS: u64 = 24;
    let sim = Sim::with_reused_handles(GpuLayout::amd_discrete_bar());
    let allocator = StandardMemoryAllocator::new_default(sim.memory_device());
    let device = sim.memory_device();
    let pool = pool(&allocator, 64);
    let mut old: Vec<MemoryAlloc> = (0..BLOCKS)
        .map(|s| patterned(&pool, &device, 640 * KIB, s))
        .collect();
    let mut defrag = pool.defragmentation(&DefragmentationInfo::default());
    let stale: Vec<_> = old
        .iter_mut()
        .map(|a| defrag.add(a, align()).unwrap())
        .collect();
    let old_memory: Vec<_> = old.iter().map(MemoryAlloc::memory).collect();
    // Every block empty: one stays (the pool keeps one empty block), the others are released.
    drop(old);
    assert_eq!(pool.block_count(), 1);
    let k1 = patterned(&pool, &device, 256 * KIB, 100);
    let k2 = patterned(&pool, &device, 512 * KIB, 101);
    // No room in the block kept: new blocks, some with the released blocks' handles.
    let new: Vec<MemoryAlloc> = (0..BLOCKS)
        .map(|s| patterned(&pool, &device, 640 * KIB, 200 + s))
        .collect();
    let reused = new
        .iter()
        .filter(|b| b.memory() != k1.memory() && old_memory.contains(&b.memory()))
        .count();
    assert!(
        reused > 0,
        "setup: no new block got a released block's handle"
    );
    // Room for one of them in the block kept: a pass would move it there, were it taken
    // for a registered allocation.
    drop(k2);
    let mut passes = 0;
    while let Some(pass) = defrag.next_pass() {
        passes += 1;
        assert!(passes <= 8, "the passes never end");
        for m in pass.moves() {
            assert!(
                !stale.contains(&m.id()),
                "a move planned for a freed allocation, from {:?} at {}",
                m.source_memory(),
                m.source_offset()
            );
        }
        pass.end();
    }
    for (s, b) in new.iter().enumerate() {
        verify(b, 200 + s as u64, 640 * KIB, "a new allocation");
    }
    verify(&k1, 100, 256 * KIB, "k1");
}

#[test]
fn an_allocation_of_another_pool_is_not_taken_for_ours_through_a_reused_handle() {
    // A defragmentation knows its blocks by their memory handles; once one of them is
    // released, the driver may give its handle to another pool's new block, whose
    // allocations are still not this defragmentation's to move.
    const BLOCKS: u64 = 24;
    let sim = Sim::with_reused_handles(GpuLayout::amd_discrete_bar());
    let allocator = StandardMemoryAllocator::new_default(sim.memory_device());
    let device = sim.memory_device();
    let ours = pool(&allocator, 64);
    let theirs = pool(&allocator, 64);
    let old: Vec<MemoryAlloc> = (0..BLOCKS)
        .map(|s| patterned(&ours, &device, 640 * KIB, s))
        .collect();
    let mut defrag = ours.defragmentation(&DefragmentationInfo::default());
    let kept = old[0].memory();
    let old_memory: Vec<_> = old.iter().map(MemoryAlloc::memory).collect();
    drop(old);
    assert_eq!(ours.block_count(), 1);
    let mut new: Vec<MemoryAlloc> = (0..BLOCKS)
        .map(|s| patterned(&theirs, &device, 640 * KIB, 100 + s))
        .collect();
    let mut reused = 0;
    for a in &mut new {
        if a.memory() != kept && old_memory.contains(&a.memory()) {
            reused += 1;
        }
        assert_eq!(
            defrag.add(a, align()),
            Err(allocator::defrag::DefragmentationError::NotHere),
            "another pool's allocation taken for ours"
        );
    }
    assert!(
        reused > 0,
        "setup: no new block got a released block's handle"
    );
    assert!(defrag.next_pass().is_none());
}

/// The blocks an open pass set aside (none without a pass).
fn aside_of<S: Suballocator + Send + 'static>(
    pass: Option<&DefragmentationPass<'_, S>>,
) -> HashSet<vk::DeviceMemory> {
    pass.map(DefragmentationPass::emptying)
        .unwrap_or_default()
        .into_iter()
        .collect()
}

#[test]
fn two_defragmentations_of_one_pool_interleaved_lose_nothing_and_give_every_block_back() {
    // Two defragmentations of the same pool with the same allocations registered, their
    // passes open at the same time: neither moves into or out of the blocks the other set
    // aside, a move the other completed first cannot be completed (its source moved), and
    // once both end the pool's accounts hold the live allocations only.
    let sim = Sim::new(GpuLayout::amd_discrete_bar());
    let allocator = StandardMemoryAllocator::new_default(sim.memory_device());
    let device = sim.memory_device();
    let pool = pool(&allocator, 16);
    let mut live = sparse(&pool, &device, 90, 7);
    let blocks_before = pool.statistics().total.block_count;
    let mut fast = pool.defragmentation(&DefragmentationInfo {
        max_moves_per_pass: 3,
        ..Default::default()
    });
    let mut full = pool.defragmentation(&DefragmentationInfo {
        algorithm: DefragmentationAlgorithm::Full,
        max_bytes_per_pass: 256 * KIB,
        ..Default::default()
    });
    for (a, _, _) in &mut live {
        fast.add(a, align()).unwrap();
        full.add(a, align()).unwrap();
    }
    let (mut rounds, mut moved) = (0, 0);
    loop {
        rounds += 1;
        assert!(rounds <= 200, "the passes never end");
        let mut a = fast.next_pass();
        let mut b = full.next_pass();
        if a.is_none() && b.is_none() {
            break;
        }
        let (a_aside, b_aside) = (aside_of(a.as_ref()), aside_of(b.as_ref()));
        assert!(a_aside.is_disjoint(&b_aside), "a block set aside by both");
        for (pass, other) in [(a.as_ref(), &b_aside), (b.as_ref(), &a_aside)] {
            for m in pass.iter().flat_map(|p| p.moves()) {
                assert!(
                    !other.contains(&m.source_memory()),
                    "a move out of a block the other set aside"
                );
                assert!(
                    !other.contains(&m.destination().memory()),
                    "a move into a block the other set aside"
                );
            }
        }
        // Their sources are in blocks the other did not set aside, and Fast moves only
        // out of blocks it sets aside: no allocation has a move in both, and each completes
        // (a move planned from a place its allocation left would be refused).
        for pass in [&mut b, &mut a].into_iter().flatten() {
            for i in open(pass) {
                let id = pass.get(i).unwrap().id();
                copy_and_complete(pass, i, &mut live[id].0).unwrap();
                moved += 1;
            }
        }
        drop(b);
        drop(a);
    }
    assert!(moved > 0, "nothing moved");
    verify_each(&live, "after both defragmentations");
    drop(fast);
    drop(full);
    let total = pool.statistics().total;
    assert_eq!(
        total.allocation_count,
        live.len() as u64,
        "the live allocations only"
    );
    assert!(total.block_count <= blocks_before);
    drop(live);
    assert!(
        pool.statistics().total.block_count <= 1,
        "an empty block kept beyond one"
    );
}

#[test]
fn threads_allocating_while_bounded_passes_plan_and_drain_never_land_in_blocks_set_aside() {
    // Bounded passes drain blocks over several passes (planned ahead), while three threads
    // allocate and free in the same memory type the whole time, planning included: no
    // allocation a thread makes while a pass is open lands in a block the pass set aside,
    // and every byte written before reads back the same after all moves.
    let sim = Sim::new(GpuLayout::amd_discrete_bar());
    let device = sim.memory_device();
    let allocator = StandardMemoryAllocator::new(
        device.clone(),
        GenericMemoryAllocatorCreateInfo {
            block_sizes: BlockSizeThresholds::uniform(MIB).unwrap(),
            block_arenas: Some(2),
            ..Default::default()
        },
    )
    .unwrap();
    let mut live = sparse(&allocator, &device, 160, 3);
    let mut defrag = allocator.defragmentation(&DefragmentationInfo {
        max_bytes_per_pass: 192 * KIB,
        max_moves_per_pass: 4,
        ..Default::default()
    });
    for (a, _, _) in &mut live {
        defrag.add(a, align()).unwrap();
    }
    // The blocks the open pass set aside; empty between passes. Threads read it for the
    // whole of an allocation, so that it never changes while one is made.
    let aside: RwLock<Vec<vk::DeviceMemory>> = RwLock::default();
    let stop = AtomicBool::new(false);
    let mut passes = 0;
    std::thread::scope(|s| {
        for t in 0..3u64 {
            let (allocator, device, aside, stop) = (&allocator, &device, &aside, &stop);
            s.spawn(move || {
                let mut rng = Rng(t + 40);
                let mut mine: Vec<(MemoryAlloc, u64, u64)> = Vec::new();
                let mut seed = 1_000_000 * (t + 1);
                while !stop.load(Ordering::Relaxed) {
                    let size = (1 + rng.below(16)) * 4 * KIB;
                    let mut a = {
                        let aside = aside.read().unwrap();
                        let a = patterned(allocator, device, size, seed);
                        assert!(
                            !aside.contains(&a.memory()),
                            "a new allocation landed in a block set aside"
                        );
                        a
                    };
                    fill(&mut a, seed, size);
                    mine.push((a, seed, size));
                    seed += 1;
                    if mine.len() > 40 {
                        let k = rng.below(mine.len() as u64) as usize;
                        let (a, s, n) = mine.swap_remove(k);
                        verify(&a, s, n, "a thread's allocation");
                    }
                }
                verify_each(&mine, "a thread's allocation");
            });
        }
        while let Some(mut pass) = defrag.next_pass() {
            passes += 1;
            assert!(passes <= 500, "the passes never end");
            *aside.write().unwrap() = pass.emptying();
            for i in open(&pass) {
                let id = pass.get(i).unwrap().id();
                copy_and_complete(&mut pass, i, &mut live[id].0).unwrap();
            }
            aside.write().unwrap().clear();
            pass.end();
        }
        stop.store(true, Ordering::Relaxed);
    });
    assert!(passes > 3, "{passes} passes: the limits split the moves");
    verify_each(&live, "after the defragmentation");
    drop(defrag);
    assert_eq!(
        allocator.statistics().total.allocation_count,
        live.len() as u64,
        "the live allocations only"
    );
    drop(live);
    drop(allocator);
    sim.assert_nothing_allocated();
}

#[test]
fn an_allocation_two_defragmentations_move_at_once_moves_once() {
    // Full gathers out of blocks it does not set aside, so two defragmentations can hand
    // out moves of one allocation at the same time. The first completed wins; the other is
    // refused (its source is no longer there), changes nothing, and is never planned again.
    let sim = Sim::new(GpuLayout::amd_discrete_bar());
    let allocator = StandardMemoryAllocator::new_default(sim.memory_device());
    let device = sim.memory_device();
    let pool = pool(&allocator, 4);
    // Block 1: p (may move) and u (may not); block 2: d (may not), with room for p twice.
    let mut p = patterned(&pool, &device, 64 * KIB, 1);
    let u = patterned(&pool, &device, 128 * KIB, 2);
    let d = patterned(&pool, &device, 840 * KIB, 3);
    assert_eq!(p.memory(), u.memory());
    assert_ne!(p.memory(), d.memory());
    let full = DefragmentationInfo {
        algorithm: DefragmentationAlgorithm::Full,
        ..Default::default()
    };
    let mut first = pool.defragmentation(&full);
    let mut second = pool.defragmentation(&full);
    first.add(&mut p, align()).unwrap();
    second.add(&mut p, align()).unwrap();
    let mut a = first.next_pass().expect("p gathers into block 2");
    let mut b = second.next_pass().expect("p gathers into block 2");
    let (i, j) = (open(&a)[0], open(&b)[0]);
    assert_eq!(a.get(i).unwrap().destination().memory(), d.memory());
    assert_eq!(b.get(j).unwrap().destination().memory(), d.memory());
    let count = pool.statistics().total.allocation_count;
    assert_eq!(count, 5, "p, u, d and a destination each");
    copy_and_complete(&mut a, i, &mut p).unwrap();
    let place = (p.memory(), p.offset());
    assert_eq!(
        copy_and_complete(&mut b, j, &mut p),
        Err(DefragmentationError::NotTheSource)
    );
    assert_eq!(
        (p.memory(), p.offset()),
        place,
        "the refused move changed p"
    );
    b.skip(j).unwrap();
    a.end();
    b.end();
    assert_eq!(pool.statistics().total.allocation_count, 3);
    let again = second
        .next_pass()
        .map(|pass| pass.moves().map(|m| m.id()).collect::<Vec<_>>());
    assert_eq!(again, None, "the second planned p after it moved");
    while let Some(mut pass) = first.next_pass() {
        for i in open(&pass) {
            copy_and_complete(&mut pass, i, &mut p).unwrap();
        }
        pass.end();
    }
    verify(&p, 1, 64 * KIB, "p");
    verify(&u, 2, 128 * KIB, "u");
    verify(&d, 3, 840 * KIB, "d");
    drop((first, second));
    assert_eq!(pool.statistics().total.allocation_count, 3);
}

#[test]
fn drains_the_application_emptied_are_released_when_the_next_pass_finds_nothing_to_move() {
    // Bounded passes leave blocks draining; the application then frees every allocation it
    // registered, the drained blocks' included. The next plan finds those blocks empty
    // and nothing to move: `next_pass` returns `None`, and the blocks it found emptied go
    // back to the driver, as the end of a defragmentation releases every block it emptied.
    let sim = Sim::new(GpuLayout::amd_discrete_bar());
    let allocator = StandardMemoryAllocator::new_default(sim.memory_device());
    let device = sim.memory_device();
    let pool = pool(&allocator, 16);
    let mut live = sparse(&pool, &device, 60, 5);
    let mut defrag = pool.defragmentation(&DefragmentationInfo {
        max_moves_per_pass: 2,
        ..Default::default()
    });
    for (a, _, _) in &mut live {
        defrag.add(a, align()).unwrap();
    }
    let mut pass = defrag.next_pass().expect("a pass");
    for i in open(&pass) {
        let id = pass.get(i).unwrap().id();
        copy_and_complete(&mut pass, i, &mut live[id].0).unwrap();
    }
    let emptying = pass.emptying();
    pass.end();
    let still_used = emptying
        .iter()
        .any(|m| live.iter().any(|(a, _, _)| a.memory() == *m));
    assert!(still_used, "setup: blocks left draining");
    drop(live);
    assert!(defrag.next_pass().is_none(), "nothing left to move");
    let blocks = pool.statistics().total.block_count;
    assert!(blocks <= 1, "{blocks} blocks left, all empty");
    let stats = defrag.finish();
    assert!(stats.memory_objects_freed > 0, "{stats:?}");
}

#[test]
fn moves_among_linear_and_optimal_neighbours_keep_their_granularity_pages_apart() {
    // A 64 KiB buffer-image granularity, linear and optimal allocations mixed in the same
    // blocks: while a pass is open (sources and destinations alive together) and after it,
    // no two ranges overlap and no linear and optimal neighbours share a page; every byte
    // moves intact.
    const GRANULARITY: u64 = 64 * KIB;
    let sim = Sim::new(GpuLayout::large_granularity());
    let device = sim.memory_device();
    let allocator = StandardMemoryAllocator::new(
        device.clone(),
        GenericMemoryAllocatorCreateInfo {
            block_sizes: BlockSizeThresholds::uniform(MIB).unwrap(),
            block_arenas: Some(1),
            ..Default::default()
        },
    )
    .unwrap();
    let mut rng = Rng(17);
    let mut live: Vec<(MemoryAlloc, u64, u64)> = (0..200)
        .map(|s| {
            let size = 1 + rng.below(48 * KIB);
            let kind = if rng.below(2) == 0 {
                AllocationType::Linear
            } else {
                AllocationType::NonLinear
            };
            let mut a = allocator
                .allocate(reqs(&device, size), kind, &upload(), None)
                .unwrap();
            fill(&mut a, s, size);
            (a, s, size)
        })
        .collect();
    // Two of three freed: sparse blocks, holes next to both kinds.
    let mut k = 0;
    live.retain(|_| {
        k += 1;
        k % 3 == 0
    });
    let mut defrag = allocator.defragmentation(&DefragmentationInfo {
        algorithm: DefragmentationAlgorithm::Full,
        max_moves_per_pass: 6,
        ..Default::default()
    });
    for (a, _, _) in &mut live {
        defrag.add(a, align()).unwrap();
    }
    let (mut passes, mut moved) = (0, 0);
    while let Some(mut pass) = defrag.next_pass() {
        passes += 1;
        assert!(passes <= 200, "the passes never end");
        {
            let mut all: Vec<(&MemoryAlloc, u64)> = live.iter().map(|(a, _, _)| (a, 256)).collect();
            all.extend(pass.moves().map(|m| (m.destination(), 256)));
            support::check_triples(&all, &sim.state, GRANULARITY);
        }
        for i in open(&pass) {
            let id = pass.get(i).unwrap().id();
            copy_and_complete(&mut pass, i, &mut live[id].0).unwrap();
            moved += 1;
        }
        pass.end();
        let all: Vec<(&MemoryAlloc, u64)> = live.iter().map(|(a, _, _)| (a, 256)).collect();
        support::check_triples(&all, &sim.state, GRANULARITY);
    }
    assert!(moved > 10, "{moved} moves");
    let mut kinds = std::collections::HashMap::<_, HashSet<_>>::new();
    for (a, _, _) in &live {
        kinds
            .entry(a.memory())
            .or_default()
            .insert(a.allocation_type());
    }
    assert!(
        kinds.values().any(|k| k.len() == 2),
        "setup: no block holds both kinds"
    );
    verify_each(&live, "after the moves");
}

/// A random application that frees and allocates while passes are open: sources of open
/// moves freed before their move is settled, new allocations made (in the freed places
/// often, of blocks not set aside), moves completed, skipped or left open, passes dropped
/// midway, new allocations added between passes. Data written before reads back the same,
/// a freed allocation's move can never complete, and once the defragmentation and every
/// allocation are gone the pool's accounts are empty and its blocks all given back but one.
#[test]
fn frees_and_allocations_during_open_passes_lose_nothing_and_leave_the_accounts_true() {
    let sim = Sim::new(GpuLayout::amd_discrete_bar());
    let allocator = StandardMemoryAllocator::new_default(sim.memory_device());
    let device = sim.memory_device();
    for seed in 0..8u64 {
        let pool = pool(&allocator, 12);
        let mut rng = Rng(seed + 300);
        let mut live: Vec<Option<(MemoryAlloc, u64, u64)>> = sparse(&pool, &device, 70, seed)
            .into_iter()
            .map(Some)
            .collect();
        let mut defrag = pool.defragmentation(&DefragmentationInfo {
            algorithm: if seed % 2 == 0 {
                DefragmentationAlgorithm::Fast
            } else {
                DefragmentationAlgorithm::Full
            },
            max_moves_per_pass: if seed % 4 < 2 { 3 } else { usize::MAX },
            max_bytes_per_pass: if seed % 4 == 3 { 160 * KIB } else { u64::MAX },
            ..Default::default()
        });
        let mut slot_of = std::collections::HashMap::new();
        for (k, slot) in live.iter_mut().enumerate() {
            let (a, _, _) = slot.as_mut().unwrap();
            slot_of.insert(defrag.add(a, align()).unwrap(), k);
        }
        let mut passes = 0;
        let mut next_seed = 50_000 * (seed + 1);
        loop {
            let Some(mut pass) = defrag.next_pass() else {
                break;
            };
            passes += 1;
            assert!(passes <= 400, "seed {seed}: the passes never end");
            let aside = pass.emptying();
            for i in open(&pass) {
                let k = slot_of[&pass.get(i).unwrap().id()];
                match rng.below(6) {
                    0 => {
                        // The source freed while its move is open: no allocation made
                        // meanwhile completes it.
                        let size = live[k].take().unwrap().2;
                        if let Ok(mut b) = pool.allocate(
                            reqs(&device, size),
                            AllocationType::Linear,
                            &upload(),
                            None,
                        ) {
                            assert!(
                                !aside.contains(&b.memory()),
                                "seed {seed}: in a block set aside"
                            );
                            fill(&mut b, next_seed, size);
                            assert_eq!(
                                pass.complete(i, &mut b),
                                Err(DefragmentationError::NotTheSource),
                                "seed {seed}"
                            );
                            live.push(Some((b, next_seed, size)));
                            next_seed += 1;
                        }
                    }
                    1 => pass.skip(i).unwrap(),
                    2 => {}
                    _ => {
                        let (a, _, _) = live[k].as_mut().unwrap();
                        copy_and_complete(&mut pass, i, a).unwrap();
                    }
                }
            }
            if rng.below(5) == 0 {
                drop(pass);
            } else {
                pass.end();
            }
            // Between passes: some freed, some made, some of those added.
            for slot in live.iter_mut() {
                if slot.is_some() && rng.below(10) == 0 {
                    *slot = None;
                }
            }
            for _ in 0..rng.below(4) {
                let size = (1 + rng.below(8)) * 16 * KIB;
                let Ok(mut a) =
                    pool.allocate(reqs(&device, size), AllocationType::Linear, &upload(), None)
                else {
                    continue;
                };
                fill(&mut a, next_seed, size);
                if rng.below(2) == 0 {
                    slot_of.insert(defrag.add(&mut a, align()).unwrap(), live.len());
                }
                live.push(Some((a, next_seed, size)));
                next_seed += 1;
            }
        }
        for (a, s, size) in live.iter().flatten() {
            assert_eq!(a.size(), *size, "seed {seed}");
            verify(a, *s, *size, "after the defragmentation");
        }
        drop(defrag);
        let total = pool.statistics().total;
        assert_eq!(
            total.allocation_count,
            live.iter().flatten().count() as u64,
            "seed {seed}: the live allocations only"
        );
        drop(live);
        let total = pool.statistics().total;
        assert_eq!(total.allocation_count, 0, "seed {seed}");
        assert!(
            total.block_count <= 1,
            "seed {seed}: {} blocks left",
            total.block_count
        );
    }
    drop(allocator);
    sim.assert_nothing_allocated();
}

#[test]
fn moves_under_debug_margins_keep_every_margin_whole_and_odd_alignments_never_panic() {
    // Margins and fill patterns on: each destination gets margins of its own, filled, so a
    // corruption check finds none damaged while passes are open (destinations, reservations
    // and sources alive) nor after; a skipped destination and the freed sources are checked
    // when freed. An allocation added with an alignment far beyond its block's size moves
    // only to the start of a block, without margins (none fit such an alignment), and
    // nothing panics; one whose alignment cannot pad its size is refused.
    let sim = Sim::new(GpuLayout::amd_discrete_bar());
    let device = sim.memory_device();
    let allocator = StandardMemoryAllocator::new(
        device.clone(),
        GenericMemoryAllocatorCreateInfo {
            block_sizes: BlockSizeThresholds::uniform(MIB).unwrap(),
            block_arenas: Some(1),
            debug: DebugOptions {
                margin: 64,
                fill_patterns: true,
                ..Default::default()
            },
            ..Default::default()
        },
    )
    .unwrap();
    let mut live = sparse(&allocator, &device, 90, 9);
    let mut defrag = allocator.defragmentation(&DefragmentationInfo {
        max_bytes_per_pass: 200 * KIB,
        ..Default::default()
    });
    let huge = DeviceAlignment::new(1 << 62).unwrap();
    assert_eq!(
        defrag.add(&mut live[0].0, DeviceAlignment::MAX),
        Err(DefragmentationError::NotHere)
    );
    let odd = defrag.add(&mut live[0].0, huge).unwrap();
    assert_eq!(odd, 0);
    for (a, _, _) in &mut live[1..] {
        defrag.add(a, align()).unwrap();
    }
    let (mut passes, mut moved) = (0, 0);
    while let Some(mut pass) = defrag.next_pass() {
        passes += 1;
        assert!(passes <= 200, "the passes never end");
        allocator
            .check_corruption(u32::MAX)
            .expect("margins whole while a pass is open");
        for i in open(&pass) {
            let id = pass.get(i).unwrap().id();
            if id == odd {
                // Only an offset that is a multiple of 2^62 will do: the start of a block.
                assert_eq!(pass.get(i).unwrap().destination().offset() % (1 << 62), 0);
            }
            if (passes + i) % 5 == 0 {
                pass.skip(i).unwrap();
            } else {
                copy_and_complete(&mut pass, i, &mut live[id].0).unwrap();
                moved += 1;
            }
        }
        pass.end();
    }
    assert!(moved > 5, "{moved} moves");
    let report = allocator
        .check_corruption(u32::MAX)
        .expect("margins whole after the defragmentation");
    // Every allocation has margins but the hugely aligned one, once it moved.
    assert!(
        report.checked_allocations >= live.len() as u64 - 1,
        "{report:?}"
    );
    verify_each(&live, "after the moves");
}

#[test]
fn a_pool_dropped_before_its_defragmentation_reports_no_leak_and_goes_with_it() {
    // Bounded passes hold destinations for the drains planned ahead (allocations of the
    // pool). The application frees everything it allocated and drops its pool handle while
    // the defragmentation lives: the pool's leak check (a panic in debug builds) has no
    // allocation of the application's to report, and the pool's memory goes once the
    // defragmentation is dropped too.
    let sim = Sim::new(GpuLayout::amd_discrete_bar());
    let allocator = StandardMemoryAllocator::new_default(sim.memory_device());
    let objects = sim.state.live_objects();
    let pool = pool(&allocator, 16);
    let live = sparse(&pool, &sim.memory_device(), 60, 11);
    drop_owner_before_its_defragmentation(&sim, objects, pool, live, |p, info| {
        p.defragmentation(info)
    });
}

#[test]
fn an_allocator_dropped_before_its_defragmentation_reports_no_leak_and_goes_with_it() {
    // As for a pool (above), with the allocator's own block vectors: a struct that holds the
    // allocator before its defragmentation drops them in that order. The leak check (a panic
    // in debug builds, the default here) waits for the defragmentation, whose destinations
    // are no leak of the application's, and the memory goes with the defragmentation.
    let sim = Sim::new(GpuLayout::amd_discrete_bar());
    let objects = sim.state.live_objects();
    let allocator = StandardMemoryAllocator::new(
        sim.memory_device(),
        GenericMemoryAllocatorCreateInfo {
            block_sizes: BlockSizeThresholds::uniform(MIB).unwrap(),
            block_arenas: Some(1),
            ..Default::default()
        },
    )
    .unwrap();
    let live = sparse(&allocator, &sim.memory_device(), 60, 17);
    drop_owner_before_its_defragmentation(&sim, objects, allocator, live, |a, info| {
        a.defragmentation(info)
    });
}

/// Registers `live` (allocations of `owner`) with the defragmentation `defragmentation`
/// makes of `owner`, and hands out one bounded pass, so that destinations are held for the
/// drains planned ahead; then drops the application's allocations and `owner` before the
/// defragmentation. No leak may be reported (a panic in debug builds); the memory objects
/// made since `objects` live on with the defragmentation and go with it.
fn drop_owner_before_its_defragmentation<A: MemoryAllocator>(
    sim: &Sim,
    objects: u32,
    owner: A,
    mut live: Vec<(MemoryAlloc, u64, u64)>,
    defragmentation: impl FnOnce(&A, &DefragmentationInfo) -> Defragmentation<FreeListAllocator>,
) {
    let info = DefragmentationInfo {
        max_moves_per_pass: 1,
        ..Default::default()
    };
    let mut defrag = defragmentation(&owner, &info);
    for (a, _, _) in &mut live {
        defrag.add(a, align()).unwrap();
    }
    drop(defrag.next_pass().expect("a pass"));
    let held = owner.statistics().total.allocation_count - live.len() as u64;
    assert!(
        held > 0,
        "setup: destinations held for the drains planned ahead"
    );
    drop(live);
    drop(owner);
    assert!(
        sim.state.live_objects() > objects,
        "the blocks holding the destinations live on"
    );
    drop(defrag);
    assert_eq!(
        sim.state.live_objects(),
        objects,
        "every memory object made since is gone"
    );
}

#[test]
fn limits_of_zero_plan_no_pass_and_leave_everything_in_place() {
    let sim = Sim::new(GpuLayout::amd_discrete_bar());
    let allocator = StandardMemoryAllocator::new_default(sim.memory_device());
    let device = sim.memory_device();
    let pool = pool(&allocator, 16);
    let mut live = sparse(&pool, &device, 60, 13);
    let places: Vec<_> = live
        .iter()
        .map(|(a, _, _)| (a.memory(), a.offset()))
        .collect();
    for algorithm in [
        DefragmentationAlgorithm::Fast,
        DefragmentationAlgorithm::Full,
    ] {
        for (bytes, moves) in [(0, usize::MAX), (u64::MAX, 0), (0, 0), (1, usize::MAX)] {
            let mut defrag = pool.defragmentation(&DefragmentationInfo {
                algorithm,
                max_bytes_per_pass: bytes,
                max_moves_per_pass: moves,
                ..Default::default()
            });
            for (a, _, _) in &mut live {
                defrag.add(a, align()).unwrap();
            }
            assert!(
                defrag.next_pass().is_none(),
                "{algorithm:?} {bytes} {moves}"
            );
            assert_eq!(defrag.finish().passes, 0);
        }
    }
    let now: Vec<_> = live
        .iter()
        .map(|(a, _, _)| (a.memory(), a.offset()))
        .collect();
    assert_eq!(now, places);
    assert_eq!(pool.statistics().total.allocation_count, live.len() as u64);
    verify_each(&live, "in place");
}
