//! Walks kept from pass to pass and followed through the moves that complete (see the
//! defragmentation's `known` module): over many bounded passes of [`Full`], blocks that gave
//! and received allocations are planned again from the walks that followed them. A walk
//! that followed a move wrongly (an allocation left out, or one that left kept) shows as a
//! block whose candidates do not hold its live bytes (the planner checks it in debug
//! builds), a move whose source is not the allocation it names (`complete` refuses it), or
//! bytes that do not survive.
//!
//! [`Full`]: ash_memory::DefragmentationAlgorithm::Full

mod common;
mod support;

use ash_memory::*;
use support::{patterned_upload, verify, GpuLayout, Rng, Sim, KIB, MIB};

const ALIGN: u64 = 256;

/// `count` host-visible allocations of assorted sizes from `seed`, each with its own pattern,
/// of which a random share (from `seed`) is freed: the survivors, `(allocation, pattern seed,
/// size)`.
fn scattered(
    allocator: &dyn MemoryAllocator,
    device: &MemoryDevice,
    count: u64,
    seed: u64,
) -> Vec<(MemoryAlloc, u64, u64)> {
    let mut rng = Rng(seed);
    let mut all = Vec::new();
    for i in 0..count {
        let size = 1 + rng.below(48 * KIB);
        let a = patterned_upload(allocator, device, size, ALIGN, i);
        if rng.below(100) < 55 {
            all.push((a, i, size));
        }
    }
    all
}

#[test]
fn walks_followed_through_completed_moves_plan_full_passes_truly() {
    let sim = Sim::new(GpuLayout::amd_discrete_bar());
    let device = sim.memory_device();
    let mut total_moves = 0;
    for seed in 1..=6 {
        for max_bytes in [48 * KIB, 128 * KIB, 512 * KIB] {
            let allocator = StandardMemoryAllocator::new(
                device.clone(),
                GenericMemoryAllocatorCreateInfo {
                    block_sizes: BlockSizeThresholds::uniform(MIB).unwrap(),
                    block_arenas: Some(1),
                    ..Default::default()
                },
            )
            .unwrap();
            let mut live = scattered(&allocator, &device, 240, seed);
            let before = allocator.statistics().total;
            let mut defrag = allocator.defragmentation(&DefragmentationInfo {
                algorithm: DefragmentationAlgorithm::Full,
                max_bytes_per_pass: max_bytes,
                ..Default::default()
            });
            for (a, _, _) in &mut live {
                defrag.add(a, DeviceAlignment::new(ALIGN).unwrap()).unwrap();
            }
            let mut passes = 0;
            while let Some(mut pass) = defrag.next_pass() {
                passes += 1;
                assert!(passes <= 2000, "the passes never end");
                let open: Vec<usize> = pass.moves().map(|m| m.index()).collect();
                for i in open {
                    let m = pass.get(i).unwrap();
                    let id = m.id();
                    let (src, _, size) = &live[id];
                    assert_eq!(
                        (m.source_memory(), m.source_offset()),
                        (src.memory(), src.offset()),
                        "seed {seed}, {max_bytes} bytes a pass: a move names its allocation"
                    );
                    let mut bytes = vec![0; *size as usize];
                    src.read(0, &mut bytes).unwrap();
                    let dst = m.destination();
                    let ptr = dst.mapped_ptr().unwrap();
                    // SAFETY: `size` bytes inside the destination, which is new and owned
                    // by the pass until completed: nothing else uses it.
                    unsafe {
                        std::ptr::copy_nonoverlapping(bytes.as_ptr(), ptr.as_ptr(), bytes.len())
                    };
                    dst.flush(0, *size).unwrap();
                    pass.complete(i, &mut live[id].0).unwrap();
                    total_moves += 1;
                }
                pass.end();
            }
            let stats = defrag.finish();
            let after = allocator.statistics().total;
            assert_eq!(
                before.block_count - after.block_count,
                stats.memory_objects_freed as u64,
                "seed {seed}, {max_bytes} bytes a pass: {stats:?}"
            );
            assert_eq!(after.allocation_count, live.len() as u64);
            for (a, pattern, size) in &live {
                verify(a, *pattern, *size, "after the moves");
            }
            drop(live);
            drop(allocator);
        }
    }
    assert!(total_moves > 0, "nothing moved");
    sim.assert_nothing_allocated();
}
