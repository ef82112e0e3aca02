//! The defragmentation's spare rule (the planner's `spare` module) on the driver: a source's
//! allocations first leave alone the blocks still to be tried that hold less than it, but
//! only those the emptying phase may empty. Blocks of mixed sizes (a vector grows its first
//! blocks), bounded passes, host copies verified byte by byte.

mod common;
mod support;

use ash_memory::*;
use support::{patterned_upload, verify, verify_each, GpuLayout, Rng, Sim, KIB, MIB};

const ALIGN: u64 = 256;

/// Completes every move of every pass with a host copy; fails if the passes do not end.
fn defragment(
    defrag: &mut Defragmentation<FreeListAllocator>,
    live: &mut [(MemoryAlloc, u64, u64)],
) {
    let mut passes = 0;
    while let Some(mut pass) = defrag.next_pass() {
        passes += 1;
        assert!(passes <= 100, "the passes never end");
        for i in support::defrag::open(&pass) {
            let id = pass.get(i).unwrap().id();
            support::defrag::copy_and_complete(&mut pass, i, &mut live[id].0).unwrap();
        }
        pass.end();
    }
}

#[test]
fn a_small_block_holding_an_allocation_larger_than_a_pass_is_filled_not_spared() {
    // Passes of 100 KiB over four blocks of a vector of 2 MiB blocks, made in turn (256 KiB,
    // 512 KiB, 1 MiB, 2 MiB), each filled exactly and its filler freed:
    // - the 256 KiB block: one 110 KiB allocation (146 KiB free), which no pass can move;
    // - the 512 KiB block: two of 100 KiB (312 KiB free);
    // - the 1 MiB block: 824 KiB the defragmentation does not know (200 KiB free);
    // - the 2 MiB block: three of 45 KiB, the first source (most free bytes).
    // The small block holds less than the first source, but is never emptied: the source
    // fills it (tightest), and the two of 100 KiB fit the 1 MiB block. Spared (its largest
    // allocation was learned only by the walk), it sent the source into the 1 MiB block, and
    // the 512 KiB block found no room: one block freed, not two.
    let sim = Sim::new(GpuLayout::amd_discrete_bar());
    let device = sim.memory_device();
    let allocator = StandardMemoryAllocator::new(
        device.clone(),
        GenericMemoryAllocatorCreateInfo {
            block_sizes: BlockSizeThresholds::uniform(2 * MIB).unwrap(),
            block_arenas: Some(1),
            ..Default::default()
        },
    )
    .unwrap();
    let mut seed = 0;
    let mut make = |size: u64| {
        seed += 1;
        (
            patterned_upload(&allocator, &device, size, ALIGN, seed),
            seed,
            size,
        )
    };
    // (size in KiB, kept, registered)
    let layout: [(u64, bool, bool); 15] = [
        (110, true, true),
        (146, false, false),
        (100, true, true),
        (100, true, true),
        (156, false, false),
        (156, false, false),
        (206, true, false),
        (206, true, false),
        (206, true, false),
        (206, true, false),
        (200, false, false),
        (45, true, true),
        (45, true, true),
        (45, true, true),
        (2048 - 135, false, false),
    ];
    let made: Vec<_> = layout.iter().map(|&(kib, _, _)| make(kib * KIB)).collect();
    let sizes: Vec<u64> = {
        let mut s: Vec<u64> = allocator
            .statistics()
            .blocks
            .iter()
            .filter(|b| !b.dedicated)
            .map(|b| b.size)
            .collect();
        s.sort_unstable();
        s
    };
    assert_eq!(
        sizes,
        [256 * KIB, 512 * KIB, MIB, 2 * MIB],
        "the blocks as made"
    );
    let mut live = Vec::new();
    let mut pinned = Vec::new();
    for (x, &(_, kept, registered)) in made.into_iter().zip(&layout) {
        match (kept, registered) {
            (true, true) => live.push(x),
            (true, false) => pinned.push(x),
            _ => drop(x),
        }
    }
    // The freed 1913 KiB request was large for the 2 MiB blocks: a memory object of its own,
    // kept as an empty block when it was dropped. The defragmentation releases it at the end
    // with the blocks it empties (every empty block of a vector it emptied one of).
    let kept_before = allocator
        .statistics()
        .blocks
        .iter()
        .filter(|b| !b.dedicated && b.statistics.allocation_count == 0)
        .count();
    assert_eq!(kept_before, 1, "the large request's object, kept");
    let before = allocator.statistics().total.block_count;
    let mut defrag = allocator.defragmentation(&DefragmentationInfo {
        max_bytes_per_pass: 100 * KIB,
        ..Default::default()
    });
    for (a, _, _) in &mut live {
        defrag.add(a, DeviceAlignment::new(ALIGN).unwrap()).unwrap();
    }
    defragment(&mut defrag, &mut live);
    let stats = defrag.finish();
    let after = allocator.statistics().total.block_count;
    assert_eq!(stats.memory_objects_freed, 2 + kept_before, "{stats:?}");
    assert_eq!(before - after, 2 + kept_before as u64);
    verify_each(&live, "after the moves");
    verify_each(&pinned, "the allocations not registered");
    drop((live, pinned, allocator));
    sim.assert_nothing_allocated();
}

/// The allocator's blocks: `(memory, size, allocations)`.
fn blocks<S: Suballocator + Send + 'static>(
    allocator: &GenericMemoryAllocator<S>,
) -> Vec<(u64, u64, u64)> {
    allocator
        .statistics()
        .blocks
        .into_iter()
        .filter(|b| !b.dedicated)
        .map(|b| (b.memory, b.size, b.statistics.allocation_count))
        .collect()
}

/// Completes every move of `pass` with a host copy; a move of an allocation the application
/// freed (`None`) fails the test.
fn complete_live<S: Suballocator + Send + 'static>(
    pass: &mut DefragmentationPass<'_, S>,
    live: &mut [Option<(MemoryAlloc, u64, u64)>],
) {
    let open: Vec<usize> = pass.moves().map(|m| m.index()).collect();
    for i in open {
        let id = pass.get(i).unwrap().id();
        let (src, _, size) = live[id].as_mut().expect("a move of a freed allocation");
        let mut bytes = vec![0; *size as usize];
        src.read(0, &mut bytes).unwrap();
        let dst = pass.get(i).unwrap().destination();
        let ptr = dst.mapped_ptr().unwrap();
        // SAFETY: `size` bytes inside the destination, which is new and owned by the pass
        // until completed: nothing else uses it.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), ptr.as_ptr(), bytes.len()) };
        dst.flush(0, *size).unwrap();
        pass.complete(i, src).unwrap();
    }
}

#[test]
fn random_states_of_grown_blocks_with_pinned_allocations_keep_every_byte_and_free_what_they_say() {
    // A vector of 2 MiB blocks grown from 256 KiB, random allocations of up to 64 KiB (some
    // not registered: they may not move), runs of them freed at random rates (sparse small
    // blocks beside fuller large ones); bounded passes (bytes and moves) of both algorithms.
    // With `churn`, the application frees registered allocations and makes new ones between
    // passes. Every byte survives every pass; without churn, no pass reserves more than the
    // state began with, the passes end, and the blocks freed are those the statistics count.
    // The blocks are free lists, then bump allocators (an undone destination keeps its room
    // there: the spare rule makes no first try).
    random_states::<FreeListAllocator>();
    random_states::<BumpAllocator>();
}

/// [`random_states_of_grown_blocks_with_pinned_allocations_keep_every_byte_and_free_what_they_say`]
/// with blocks of `S`.
fn random_states<S: Suballocator + Send + 'static>() {
    let sim = Sim::new(GpuLayout::amd_discrete_bar());
    let device = sim.memory_device();
    let mut total_moves = 0;
    let mut total_freed = 0;
    for seed in 1..=8u64 {
        for churn in [false, true] {
            let mut rng = Rng(seed * 7919 + u64::from(churn));
            let algorithm = if seed % 2 == 0 {
                DefragmentationAlgorithm::Full
            } else {
                DefragmentationAlgorithm::Fast
            };
            let max_bytes = [64 * KIB, 100 * KIB, 256 * KIB, u64::MAX][rng.below(4) as usize];
            let max_moves = [3, 16, usize::MAX][rng.below(3) as usize];
            let what = format!(
                "{}: seed {seed}, churn {churn}, {algorithm:?}, {max_bytes} bytes, {max_moves} moves",
                std::any::type_name::<S>()
            );
            let allocator = StandardMemoryAllocator::new(
                device.clone(),
                GenericMemoryAllocatorCreateInfo {
                    block_sizes: BlockSizeThresholds::uniform(2 * MIB).unwrap(),
                    block_arenas: Some(1),
                    ..Default::default()
                },
            )
            .unwrap();
            let mut live = Vec::new();
            let mut pinned = Vec::new();
            // Runs of allocations (a block's worth or so) kept at rates of their own: sparse
            // blocks beside full ones.
            // A third of the runs hold allocations that may not move.
            let (mut kept, mut pin) = (35, 0);
            for i in 0..400 {
                if i % 40 == 0 {
                    kept = 5 + rng.below(80);
                    pin = if rng.below(3) == 0 { 8 } else { 0 };
                }
                let size = 1 + rng.below(64 * KIB);
                let a = (
                    patterned_upload(&allocator, &device, size, ALIGN, i),
                    i,
                    size,
                );
                match rng.below(100) {
                    k if k < pin => pinned.push(a),
                    k if k < pin + kept => live.push(Some(a)),
                    _ => drop(a),
                }
            }
            let before = blocks(&allocator);
            let reserved_before: u64 = before.iter().map(|b| b.1).sum();
            let empty_before = before.iter().filter(|b| b.2 == 0).count();
            let mut defrag = allocator.defragmentation(&DefragmentationInfo {
                algorithm,
                max_bytes_per_pass: max_bytes,
                max_moves_per_pass: max_moves,
                ..Default::default()
            });
            for (a, _, _) in live.iter_mut().flatten() {
                defrag.add(a, DeviceAlignment::new(ALIGN).unwrap()).unwrap();
            }
            let mut passes = 0;
            let mut next = 1000;
            while let Some(mut pass) = defrag.next_pass() {
                passes += 1;
                assert!(passes <= 500, "{what}: the passes never end");
                complete_live(&mut pass, &mut live);
                pass.end();
                for (a, pattern, size) in live.iter().flatten().chain(&pinned) {
                    verify(a, *pattern, *size, &format!("{what}: pass {passes}"));
                }
                if churn {
                    let k = rng.below(live.len() as u64) as usize;
                    live[k] = None;
                    let size = 1 + rng.below(48 * KIB);
                    next += 1;
                    let a = patterned_upload(&allocator, &device, size, ALIGN, next);
                    pinned.push((a, next, size));
                } else {
                    let reserved: u64 = blocks(&allocator).iter().map(|b| b.1).sum();
                    assert!(
                        reserved <= reserved_before,
                        "{what}: pass {passes} reserves {reserved} of {reserved_before}"
                    );
                }
            }
            let stats = defrag.finish();
            total_moves += stats.moves;
            let after = blocks(&allocator);
            if !churn {
                assert_eq!(
                    stats.memory_objects_freed,
                    before.len() - after.len(),
                    "{what}: {stats:?}"
                );
                total_freed += stats.memory_objects_freed;
                let empty_after = after.iter().filter(|b| b.2 == 0).count();
                assert!(empty_after <= empty_before, "{what}: {after:?}");
            }
            for (a, pattern, size) in live.iter().flatten().chain(&pinned) {
                verify(a, *pattern, *size, &format!("{what}: at the end"));
            }
            drop((live, pinned, allocator));
        }
    }
    assert!(
        total_moves > 0 && total_freed > 0,
        "{total_moves} moves, {total_freed} freed"
    );
    sim.assert_nothing_allocated();
}
