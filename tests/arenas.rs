//! Blocks cut into arenas (`block_arenas`): threads get their own arena of a shared block,
//! spill into the other arenas before a new block is made, large or strictly aligned
//! requests still fit, statistics see the whole block, and empty blocks are still released.
//!
//! One test function on purpose: a thread's home arena follows the order in which threads
//! first use an allocator in the process, so no other test may start threads alongside.

mod common;
mod support;

use ash_memory::*;
use support::{GpuLayout, Sim, MIB};

fn allocator(sim: &Sim, block_size: u64, arenas: usize) -> StandardMemoryAllocator {
    StandardMemoryAllocator::new(
        sim.memory_device(),
        GenericMemoryAllocatorCreateInfo {
            block_sizes: ash_memory::BlockSizeThresholds::uniform(block_size).unwrap(),
            grow_blocks: false,
            block_arenas: Some(arenas),
            ..Default::default()
        },
    )
    .unwrap()
}

fn allocate(allocator: &StandardMemoryAllocator, size: u64, alignment: u64) -> MemoryAlloc {
    let requirements = AllocationRequirements {
        layout: DeviceLayout::from_size_alignment(size, alignment).unwrap(),
        memory_type_bits: u32::MAX
            >> (32 - allocator.device().memory_properties().memory_types.len()),
        prefers_dedicated_allocation: false,
        requires_dedicated_allocation: false,
    };
    let info = AllocationCreateInfo {
        usage: MemoryUsage::DeviceOnly,
        ..Default::default()
    };
    allocator
        .allocate(requirements, AllocationType::Linear, &info, None)
        .unwrap_or_else(|e| panic!("{size} bytes aligned to {alignment}: {e}"))
}

fn in_thread<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| s.spawn(f).join().expect("thread panicked"))
}

/// Two threads, one after the other: each lands in its own half of the same block, and a
/// thread whose half is full fills the other half before a second block is made.
fn threads_get_their_own_arena_of_one_block(sim: &Sim) {
    let allocator = allocator(sim, 64 * MIB, 2);
    let ty = allocator
        .find_memory_type_index(u32::MAX, MemoryUsage::DeviceOnly.into())
        .unwrap();
    let a = in_thread(|| allocate(&allocator, MIB, 256));
    let b = in_thread(|| allocate(&allocator, MIB, 256));
    assert_eq!(a.memory(), b.memory(), "one block for both threads");
    assert_eq!(allocator.block_count(ty), 1);
    let half = |x: &MemoryAlloc| x.offset() / (32 * MIB);
    assert_ne!(half(&a), half(&b), "each thread in its own arena");

    // One thread alone: its own half first, then the other one, then a new block. Its home
    // arena already holds `a` or `b`, so 31 allocations of 1 MiB fill it.
    let (filled, spilled) = in_thread(|| {
        let filled: Vec<_> = (0..31).map(|_| allocate(&allocator, MIB, 256)).collect();
        let spilled: Vec<_> = (0..31).map(|_| allocate(&allocator, MIB, 256)).collect();
        (filled, spilled)
    });
    let home = half(&filled[0]);
    assert!(filled
        .iter()
        .all(|x| x.memory() == a.memory() && half(x) == home));
    assert!(spilled
        .iter()
        .all(|x| x.memory() == a.memory() && half(x) != home));
    assert_eq!(
        allocator.block_count(ty),
        1,
        "no new block while an arena has room"
    );
    let extra = allocate(&allocator, MIB, 256);
    assert_ne!(extra.memory(), a.memory());
    assert_eq!(allocator.block_count(ty), 2);

    // The statistics see whole blocks: every range of every arena, tiling the block.
    let stats = allocator.statistics();
    assert_eq!(stats.total.allocation_count, 2 + 31 + 31 + 1);
    assert_eq!(stats.total.block_count, 2);
    assert_eq!(stats.total.reserved_bytes, 128 * MIB);
    let snapshot = allocator.snapshot();
    for block in snapshot.blocks.iter().filter(|b| !b.dedicated) {
        let mut end = 0;
        for r in &block.ranges {
            assert_eq!(r.offset, end, "ranges tile the block");
            end += r.size;
        }
        assert_eq!(end, block.size);
    }
    let leaked = allocator.report_leaks();
    assert_eq!(leaked.len(), 65);

    // Freeing everything: both blocks stay, empty (both were in use: under the high-water
    // mark, up to four preferred blocks' worth).
    drop((a, b, filled, spilled, extra));
    assert_eq!(allocator.block_count(ty), 2);
    assert_eq!(allocator.statistics().total.allocation_count, 0);
}

/// A block made for a request is cut into arenas of at least four times the largest request
/// seen; a sizable request makes a new block; a request aligned more strictly than an
/// arena's offset only goes where the alignment holds.
fn large_and_strictly_aligned_requests(sim: &Sim) {
    let allocator = allocator(sim, 128 * MIB, 8);
    let ty = allocator
        .find_memory_type_index(u32::MAX, MemoryUsage::DeviceOnly.into())
        .unwrap();
    // The first block is cut into 8 arenas of 16 MiB; one 12 MiB request fits each.
    let small = allocate(&allocator, MIB, 1);
    let fill: Vec<_> = (0..8).map(|_| allocate(&allocator, 12 * MIB, 1)).collect();
    assert!(fill.iter().all(|x| x.memory() == small.memory()));
    assert_eq!(allocator.block_count(ty), 1);
    // The next one needs a block, cut into arenas of at least 4 x 12 MiB: the one after it
    // goes right behind it, which 16 MiB arenas would not allow.
    let large = allocate(&allocator, 12 * MIB, 1);
    assert!(!large.is_dedicated());
    assert_ne!(large.memory(), small.memory());
    assert_eq!(allocator.block_count(ty), 2);
    let large2 = allocate(&allocator, 12 * MIB, 1);
    assert_eq!(large2.memory(), large.memory());
    assert_eq!(
        large2.offset(),
        large.offset() + 12 * MIB,
        "arena boundaries do not split the block"
    );
    // The emptied block goes back to the driver when another one is empty.
    drop((large, large2, fill));
    assert_eq!(allocator.block_count(ty), 2);
    // A sizable request (more than an eighth of a block) that no block has room for gets a
    // new block: with `grow_blocks` off, of the configured size (with it on, of its own size
    // rounded up to 1/32 of a block: see the placement's unit tests).
    // Seven 16 MiB arenas of the first block and the 2 x 64 MiB of the second.
    let filler: Vec<_> = (0..15).map(|_| allocate(&allocator, 16 * MIB, 1)).collect();
    let before = allocator.block_count(ty);
    let sizable = allocate(&allocator, 19 * MIB, 1);
    assert!(!sizable.is_dedicated());
    assert_eq!(allocator.block_count(ty), before + 1, "a block made for it");
    let block = allocator
        .statistics()
        .blocks
        .into_iter()
        .find(|b| b.memory == ash::vk::Handle::as_raw(sizable.memory()))
        .unwrap();
    assert_eq!(block.size, 128 * MIB);
    drop((filler, sizable));

    // 64 MiB alignment: only the arenas at offsets 0 and 64 MiB of a 128 MiB block keep it.
    let aligned: Vec<_> = (0..4)
        .map(|_| allocate(&allocator, MIB, 64 * MIB))
        .collect();
    for x in &aligned {
        assert_eq!(x.offset() % (64 * MIB), 0, "offset {}", x.offset());
    }
    let mut places: Vec<_> = aligned.iter().map(|x| (x.memory(), x.offset())).collect();
    places.sort();
    places.dedup();
    assert_eq!(places.len(), aligned.len(), "no two at the same place");
}

fn invalid_arena_counts_are_rejected(sim: &Sim) {
    for arenas in [0, MAX_BLOCK_ARENAS + 1] {
        let result = StandardMemoryAllocator::new(
            sim.memory_device(),
            GenericMemoryAllocatorCreateInfo {
                block_arenas: Some(arenas),
                ..Default::default()
            },
        );
        assert!(
            matches!(result, Err(AllocationError::Config(_))),
            "{arenas} arenas"
        );
    }
}

#[test]
fn arenas() {
    let sim = Sim::new(GpuLayout::nvidia_discrete());
    threads_get_their_own_arena_of_one_block(&sim);
    large_and_strictly_aligned_requests(&sim);
    invalid_arena_counts_are_rejected(&sim);
    sim.assert_nothing_allocated();
}
