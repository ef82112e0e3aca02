//! The defragmentation's spare rule (the planner's `spare` module) on the driver: a source's
//! allocations first leave alone the blocks still to be tried that hold less than it, but
//! only those the emptying phase may empty. Blocks of mixed sizes (a vector grows its first
//! blocks), bounded passes, host copies verified byte by byte.

mod common;
mod support;

use ash_memory::*;
use support::{patterned_upload, verify_each, GpuLayout, Sim, KIB, MIB};

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
        let open: Vec<usize> = pass.moves().map(|m| m.index()).collect();
        for i in open {
            let id = pass.get(i).unwrap().id();
            let (src, _, size) = &live[id];
            let mut bytes = vec![0; *size as usize];
            src.read(0, &mut bytes).unwrap();
            let dst = pass.get(i).unwrap().destination();
            let ptr = dst.mapped_ptr().unwrap();
            // SAFETY: `size` bytes inside the destination, which is new and owned by the pass
            // until completed: nothing else uses it.
            unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), ptr.as_ptr(), bytes.len()) };
            dst.flush(0, *size).unwrap();
            pass.complete(i, &mut live[id].0).unwrap();
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
    assert_eq!(stats.memory_objects_freed, 2, "{stats:?}");
    assert_eq!(before - after, 2);
    verify_each(&live, "after the moves");
    verify_each(&pinned, "the allocations not registered");
    drop((live, pinned, allocator));
    sim.assert_nothing_allocated();
}
