//! Defragmentation on the driver: GPU copies verified byte by byte under the validation
//! layer, allocations from other threads during a pass, destinations that fail mid-pass,
//! skipped and abandoned moves, custom pools, and what cannot move.

mod common;
mod support;

use ash::vk;
use ash_memory::allocator::defrag::{
    record_buffer_copies, BufferMove, DefragmentationError, PassReport,
};
use ash_memory::*;
use std::sync::atomic::{AtomicU64, Ordering};
use support::{
    buffer_info, fill, patterned_upload, verify, verify_each, Faults, GpuLayout, Rng, Sim, KIB, MIB,
};

fn reqs(device: &MemoryDevice, size: u64, alignment: u64) -> AllocationRequirements {
    AllocationRequirements {
        layout: DeviceLayout::from_size_alignment(size, alignment).unwrap(),
        memory_type_bits: device.memory_properties().all_types_mask(),
        prefers_dedicated_allocation: false,
        requires_dedicated_allocation: false,
    }
}

const ALIGN: u64 = 256;

fn align() -> DeviceAlignment {
    DeviceAlignment::new(ALIGN).unwrap()
}

fn small_blocks(arenas: usize) -> GenericMemoryAllocatorCreateInfo {
    GenericMemoryAllocatorCreateInfo {
        block_sizes: BlockSizeThresholds::uniform(MIB).unwrap(),
        block_arenas: Some(arenas),
        ..Default::default()
    }
}

fn upload() -> AllocationCreateInfo {
    AllocationCreateInfo {
        usage: MemoryUsage::Upload,
        ..Default::default()
    }
}

/// `count` host-visible allocations of assorted sizes (from `seed`), each filled with its own
/// pattern: `(allocation, pattern seed, size)`.
fn patterned(
    allocator: &dyn MemoryAllocator,
    device: &MemoryDevice,
    count: u64,
    seed: u64,
) -> Vec<(MemoryAlloc, u64, u64)> {
    let mut rng = Rng(seed);
    let mut all = Vec::new();
    for i in 0..count {
        let size = 1 + rng.below(60 * KIB);
        all.push((patterned_upload(allocator, device, size, ALIGN, i), i, size));
    }
    all
}

/// `count` [`patterned`] allocations; every second one of three is freed so that blocks are
/// sparse. Returns the survivors with their seeds.
fn sparse(
    allocator: &dyn MemoryAllocator,
    device: &MemoryDevice,
    count: u64,
) -> Vec<(MemoryAlloc, u64, u64)> {
    patterned(allocator, device, count, count)
        .into_iter()
        .enumerate()
        .filter(|(i, _)| i % 3 == 0)
        .map(|(_, x)| x)
        .collect()
}

/// Runs a whole defragmentation with host copies (the memory is host-visible) and completes
/// every move; fails if the passes do not end.
fn defragment_with_host_copies(
    defrag: &mut Defragmentation<FreeListAllocator>,
    live: &mut [(MemoryAlloc, u64, u64)],
) {
    defragment_checking_passes(defrag, live, |_, _| {});
}

/// As [`defragment_with_host_copies`], calling `after_pass` with the blocks each pass emptied
/// or drained and what it reported, once it ended.
fn defragment_checking_passes(
    defrag: &mut Defragmentation<FreeListAllocator>,
    live: &mut [(MemoryAlloc, u64, u64)],
    mut after_pass: impl FnMut(&[vk::DeviceMemory], PassReport),
) {
    let mut passes = 0;
    while let Some(mut pass) = defrag.next_pass() {
        passes += 1;
        assert!(passes <= 1000, "the passes never end");
        complete_with_host_copies(&mut pass, live);
        let emptying = pass.emptying();
        let report = pass.end();
        after_pass(&emptying, report);
    }
}

/// Completes every move of `pass` with a host copy.
fn complete_with_host_copies<S: Suballocator + Send + 'static>(
    pass: &mut DefragmentationPass<'_, S>,
    live: &mut [(MemoryAlloc, u64, u64)],
) {
    for i in support::defrag::open(pass) {
        let id = pass.get(i).unwrap().id();
        support::defrag::copy_and_complete(pass, i, &mut live[id].0).unwrap();
    }
}

/// [`sparse`], each allocation in an `Option` that the test empties when it frees it.
fn sparse_or_freed(
    allocator: &dyn MemoryAllocator,
    device: &MemoryDevice,
    count: u64,
) -> Vec<Option<(MemoryAlloc, u64, u64)>> {
    sparse(allocator, device, count)
        .into_iter()
        .map(Some)
        .collect()
}

/// Completes every move of `pass` with a host copy, where the application may have freed
/// some allocations (`None`): a move of one of those fails the test.
fn complete_live_with_host_copies<S: Suballocator + Send + 'static>(
    pass: &mut DefragmentationPass<'_, S>,
    live: &mut [Option<(MemoryAlloc, u64, u64)>],
) {
    let open: Vec<usize> = pass.moves().map(|m| m.index()).collect();
    for i in open {
        let id = pass.get(i).unwrap().id();
        let (src, _, size) = live[id]
            .as_mut()
            .expect("a move of an allocation the application freed");
        let mut bytes = vec![0; *size as usize];
        src.read(0, &mut bytes).unwrap();
        let dst = pass.get(i).unwrap().destination();
        // SAFETY: `size` bytes inside the destination, which nothing else uses.
        unsafe {
            std::ptr::copy_nonoverlapping(
                bytes.as_ptr(),
                dst.mapped_ptr().unwrap().as_ptr(),
                bytes.len(),
            )
        };
        dst.flush(0, *size).unwrap();
        pass.complete(i, src).unwrap();
    }
}

/// The allocator's blocks (not dedicated allocations): `(memory, size, allocations)`.
fn blocks(allocator: &StandardMemoryAllocator) -> Vec<(u64, u64, u64)> {
    allocator
        .statistics()
        .blocks
        .into_iter()
        .filter(|b| !b.dedicated)
        .map(|b| (b.memory, b.size, b.statistics.allocation_count))
        .collect()
}

/// How many of the allocator's blocks (not dedicated allocations) hold allocations, and how
/// many are empty.
fn occupied_and_empty(allocator: &StandardMemoryAllocator) -> (usize, usize) {
    let blocks: Vec<_> = allocator
        .statistics()
        .blocks
        .into_iter()
        .filter(|b| !b.dedicated)
        .collect();
    let empty = blocks
        .iter()
        .filter(|b| b.statistics.allocation_count == 0)
        .count();
    (blocks.len() - empty, empty)
}

#[test]
fn a_defragmentation_keeps_at_most_one_empty_block_between_passes_none_after_and_terminates() {
    // Sparse blocks, ten moves a pass: each pass empties a block or drains one, and the empty
    // block kept between passes must not be filled again by the next (the passes would then
    // never end). Once the defragmentation ends, no block it emptied stays.
    let sim = Sim::new(GpuLayout::amd_discrete_bar());
    let device = sim.memory_device();
    let allocator = StandardMemoryAllocator::new(device.clone(), small_blocks(1)).unwrap();
    let mut live = sparse(&allocator, &device, 300);
    let (occupied_before, empty_before) = occupied_and_empty(&allocator);
    assert!(occupied_before >= 2);
    assert_eq!(empty_before, 0, "the trace leaves no block empty");
    let mut defrag = allocator.defragmentation(&DefragmentationInfo {
        algorithm: DefragmentationAlgorithm::Full,
        max_moves_per_pass: 10,
        ..Default::default()
    });
    for (a, _, _) in &mut live {
        defrag.add(a, align()).unwrap();
    }
    let mut kept_some = false;
    defragment_checking_passes(&mut defrag, &mut live, |_, _| {
        let (_, empty) = occupied_and_empty(&allocator);
        assert!(empty <= 1, "{empty} empty blocks kept between passes");
        kept_some |= empty == 1;
    });
    assert!(kept_some, "some pass kept an empty block");
    let stats = defrag.finish();
    let (occupied_after, empty_after) = occupied_and_empty(&allocator);
    assert!(occupied_after < occupied_before, "{stats:?}");
    assert_eq!(empty_after, 0, "an emptied block stays after the end");
    assert_eq!(
        stats.memory_objects_freed,
        occupied_before - occupied_after,
        "{stats:?}"
    );
    verify_each(&live, "after the moves");
}

/// An allocator of 2 MiB blocks (its first blocks smaller) holding 400 patterned allocations,
/// of which the first blocks (smaller than 2 MiB) keep one each and the 2 MiB blocks all but
/// one in 16; the blocks as they are then, and the survivors.
#[allow(clippy::type_complexity)]
fn small_blocks_first(
    allocator: &StandardMemoryAllocator,
    device: &MemoryDevice,
) -> (Vec<(u64, u64, u64)>, Vec<(MemoryAlloc, u64, u64)>) {
    let all = patterned(allocator, device, 400, 7);
    let size_now = |m: vk::DeviceMemory| {
        let raw = vk::Handle::as_raw(m);
        blocks(allocator).iter().find(|b| b.0 == raw).unwrap().1
    };
    let mut seen = std::collections::HashSet::new();
    let mut live = Vec::new();
    for (k, x) in all.into_iter().enumerate() {
        let keep = if size_now(x.0.memory()) < 2 * MIB {
            seen.insert(x.0.memory())
        } else {
            k % 16 != 0
        };
        if keep {
            live.push(x);
        }
    }
    (blocks(allocator), live)
}

fn two_mib_blocks() -> GenericMemoryAllocatorCreateInfo {
    GenericMemoryAllocatorCreateInfo {
        block_sizes: BlockSizeThresholds::uniform(2 * MIB).unwrap(),
        block_arenas: Some(1),
        ..Default::default()
    }
}

#[test]
fn between_passes_the_smallest_empty_block_stays_while_drains_go_on() {
    // Bounded passes: the small first blocks (the most free bytes) empty whole in the first
    // pass, the rest drains over later passes. Between passes, of the blocks emptied, the
    // smallest stays (the application allocating meanwhile need not make a block); once
    // nothing is left draining, no empty block stays.
    let sim = Sim::new(GpuLayout::amd_discrete_bar());
    let device = sim.memory_device();
    let allocator = StandardMemoryAllocator::new(device.clone(), two_mib_blocks()).unwrap();
    let (before, mut live) = small_blocks_first(&allocator, &device);
    let mut defrag = allocator.defragmentation(&DefragmentationInfo {
        max_bytes_per_pass: 64 * KIB,
        ..Default::default()
    });
    for (a, _, _) in &mut live {
        defrag.add(a, align()).unwrap();
    }
    let size_of = |m: u64| before.iter().find(|b| b.0 == m).unwrap().1;
    let mut kept_between = 0;
    let mut passes = 0;
    while let Some(mut pass) = defrag.next_pass() {
        passes += 1;
        complete_with_host_copies(&mut pass, &mut live);
        let emptying: Vec<u64> = pass
            .emptying()
            .iter()
            .map(|m| vk::Handle::as_raw(*m))
            .collect();
        pass.end();
        let now = blocks(&allocator);
        let empty: Vec<_> = now.iter().filter(|b| b.2 == 0).collect();
        // A block of the pass that still holds allocations is a drain waiting for its turn.
        let draining = now.iter().any(|b| b.2 > 0 && emptying.contains(&b.0));
        if draining {
            assert!(empty.len() <= 1, "pass {passes}: {now:?}");
            if let Some(e) = empty.first() {
                kept_between += 1;
                let emptied_sizes = emptying
                    .iter()
                    .filter(|m| !now.iter().any(|b| b.0 == **m && b.2 > 0))
                    .map(|&m| size_of(m));
                assert_eq!(Some(e.1), emptied_sizes.min(), "the smallest stays");
            }
        } else {
            assert!(empty.is_empty(), "pass {passes}, nothing draining: {now:?}");
        }
    }
    assert!(passes >= 2, "{passes} passes");
    assert!(kept_between > 0, "no empty block kept between passes");
    let after = blocks(&allocator);
    assert!(after.iter().all(|b| b.2 > 0), "{after:?}");
    let stats = defrag.finish();
    assert_eq!(stats.memory_objects_freed, before.len() - after.len());
    verify_each(&live, "after the moves");
}

#[test]
fn the_small_first_blocks_are_emptied_not_filled_while_the_large_ones_have_room() {
    // A vector's first blocks are smaller (it grows them). Each keeps one allocation, the
    // 2 MiB blocks one in four. The large sparse blocks go first (the most free bytes); the
    // small blocks are the tightest destinations, but they hold less than any large source
    // and their turn comes: filled, they would stay for good (the plan ended with them full
    // and a partly used large block). Other blocks have room, so they are spared, and then
    // emptied in their turn.
    let sim = Sim::new(GpuLayout::amd_discrete_bar());
    let device = sim.memory_device();
    let allocator = StandardMemoryAllocator::new(device.clone(), two_mib_blocks()).unwrap();
    let all = patterned(&allocator, &device, 400, 11);
    let size_of = |m: vk::DeviceMemory| {
        let raw = vk::Handle::as_raw(m);
        blocks(&allocator).iter().find(|b| b.0 == raw).unwrap().1
    };
    let mut seen = std::collections::HashSet::new();
    let mut live = Vec::new();
    for (k, x) in all.into_iter().enumerate() {
        let keep = if size_of(x.0.memory()) < 2 * MIB {
            seen.insert(x.0.memory())
        } else {
            k % 4 == 0
        };
        if keep {
            live.push(x);
        }
    }
    let before = blocks(&allocator);
    let small = before.iter().filter(|b| b.1 < 2 * MIB).count();
    assert!(small >= 2, "{before:?}");
    let mut defrag = allocator.defragmentation(&DefragmentationInfo::default());
    for (a, _, _) in &mut live {
        defrag.add(a, align()).unwrap();
    }
    defragment_with_host_copies(&mut defrag, &mut live);
    let stats = defrag.finish();
    let after = blocks(&allocator);
    assert!(
        after.iter().all(|b| b.1 == 2 * MIB),
        "a small block stayed: {after:?} (before: {before:?})"
    );
    let live_bytes: u64 = live.iter().map(|x| x.2).sum();
    let reserved: u64 = after.iter().map(|b| b.1).sum();
    assert!(
        reserved < live_bytes + 2 * MIB,
        "{reserved} reserved for {live_bytes} live: {after:?}"
    );
    assert_eq!(stats.memory_objects_freed, before.len() - after.len());
    verify_each(&live, "after the moves");
}

#[test]
fn a_defragmentation_with_nothing_left_draining_gives_back_every_empty_block() {
    // One unlimited pass empties blocks of several sizes; the allocation path kept an empty
    // block from before. Once the pass ends nothing is left draining, and none of them
    // stays: the defragmentation gives the memory back, as VMA's does.
    let sim = Sim::new(GpuLayout::amd_discrete_bar());
    let device = sim.memory_device();
    let allocator = StandardMemoryAllocator::new(device.clone(), two_mib_blocks()).unwrap();
    let (_, mut live) = small_blocks_first(&allocator, &device);
    // Every allocation of the last 2 MiB block goes: the allocation path keeps it, empty.
    let last = blocks(&allocator).iter().map(|b| b.0).max().unwrap();
    live.retain(|x| vk::Handle::as_raw(x.0.memory()) != last);
    let before = blocks(&allocator);
    assert_eq!(before.iter().filter(|b| b.2 == 0).count(), 1, "{before:?}");
    let mut defrag = allocator.defragmentation(&Default::default());
    for (a, _, _) in &mut live {
        defrag.add(a, align()).unwrap();
    }
    let mut pass = defrag.next_pass().expect("something to move");
    complete_with_host_copies(&mut pass, &mut live);
    let emptying = pass.emptying();
    let report = pass.end();
    let size_of = |m: vk::DeviceMemory| {
        let raw = vk::Handle::as_raw(m);
        before.iter().find(|b| b.0 == raw).unwrap().1
    };
    let mut sizes: Vec<u64> = emptying.iter().map(|&m| size_of(m)).collect();
    sizes.sort_unstable();
    sizes.dedup();
    assert!(sizes.len() >= 2, "blocks of one size emptied: {sizes:?}");
    let now = blocks(&allocator);
    assert!(now.iter().all(|b| b.2 > 0), "{now:?}");
    assert_eq!(report.memory_objects_freed, emptying.len() + 1);
    assert!(defrag.next_pass().is_none());
    let stats = defrag.finish();
    assert_eq!(stats.memory_objects_freed, before.len() - now.len());
    verify_each(&live, "after the moves");
}

/// A vector the defragmentation empties nothing in keeps its empty block.
#[test]
fn a_defragmentation_that_empties_nothing_leaves_the_kept_empty_block() {
    let sim = Sim::new(GpuLayout::amd_discrete_bar());
    let device = sim.memory_device();
    let allocator = StandardMemoryAllocator::new(device.clone(), two_mib_blocks()).unwrap();
    let mut all = patterned(&allocator, &device, 120, 3);
    let last = blocks(&allocator).iter().map(|b| b.0).max().unwrap();
    all.retain(|x| vk::Handle::as_raw(x.0.memory()) != last);
    let before = blocks(&allocator);
    assert_eq!(before.iter().filter(|b| b.2 == 0).count(), 1, "{before:?}");
    // Full blocks: nothing to move.
    let mut defrag = allocator.defragmentation(&Default::default());
    for (a, _, _) in &mut all {
        defrag.add(a, align()).unwrap();
    }
    assert!(defrag.next_pass().is_none());
    let stats = defrag.finish();
    assert_eq!(stats.memory_objects_freed, 0);
    assert_eq!(blocks(&allocator), before);
}

#[test]
fn a_block_larger_than_a_pass_drains_over_several_passes() {
    // 64 KiB a pass: blocks of 1 MiB, a third full, only empty over several passes. A block
    // being drained stays out of every search between passes.
    let sim = Sim::new(GpuLayout::amd_discrete_bar());
    let device = sim.memory_device();
    let allocator = StandardMemoryAllocator::new(device.clone(), small_blocks(1)).unwrap();
    let mut live = sparse(&allocator, &device, 300);
    let before = allocator.statistics().total;
    let mut defrag = allocator.defragmentation(&DefragmentationInfo {
        max_bytes_per_pass: 64 * KIB,
        ..Default::default()
    });
    for (a, _, _) in &mut live {
        defrag.add(a, align()).unwrap();
    }
    let mut last: Vec<vk::DeviceMemory> = Vec::new();
    let mut drained = 0;
    let mut freed_by_passes = 0;
    let live_count = live.len() as u64;
    defragment_checking_passes(&mut defrag, &mut live, |emptying, report| {
        assert!(report.bytes_moved <= 64 * KIB);
        freed_by_passes += report.memory_objects_freed;
        // A block still held after the pass was drained, not emptied: nothing may land in it.
        let now = blocks(&allocator);
        // Every allocation left in it keeps its destination from pass to pass: one
        // reservation each, held by the defragmentation.
        let rest: u64 = emptying
            .iter()
            .filter_map(|m| now.iter().find(|b| b.0 == vk::Handle::as_raw(*m)))
            .map(|b| b.2)
            .sum();
        assert_eq!(
            allocator.statistics().total.allocation_count,
            live_count + rest,
            "a reservation for each allocation left in the blocks draining"
        );
        for m in emptying {
            let raw = vk::Handle::as_raw(*m);
            if now.iter().any(|b| b.0 == raw && b.2 > 0) {
                let probe = allocator
                    .allocate(
                        reqs(&device, 256, ALIGN),
                        AllocationType::Linear,
                        &upload(),
                        None,
                    )
                    .unwrap();
                assert_ne!(
                    probe.memory(),
                    *m,
                    "an allocation landed in a block draining"
                );
            }
            if last.contains(m) {
                drained += 1;
            }
        }
        last = emptying.to_vec();
    });
    assert!(drained > 0, "no block drained over several passes");
    let stats = defrag.finish();
    let after = allocator.statistics().total;
    assert!(stats.memory_objects_freed >= freed_by_passes);
    assert_eq!(
        before.block_count - after.block_count,
        stats.memory_objects_freed as u64
    );
    assert!(
        after.block_count * 2 <= before.block_count,
        "{before:?} -> {after:?}"
    );
    verify_each(&live, "after the moves");
}

#[test]
fn allocations_freed_in_a_block_draining_between_passes_are_never_moved() {
    // 64 KiB a pass over 1 MiB blocks: blocks drain over several passes. After each pass,
    // the application frees one allocation still in a block draining: no later move is for
    // it (the next pass sees the block changed), and the drains still end.
    let sim = Sim::new(GpuLayout::amd_discrete_bar());
    let device = sim.memory_device();
    let allocator = StandardMemoryAllocator::new(device.clone(), small_blocks(1)).unwrap();
    let mut live = sparse_or_freed(&allocator, &device, 300);
    let before = allocator.statistics().total.block_count;
    let mut defrag = allocator.defragmentation(&DefragmentationInfo {
        max_bytes_per_pass: 64 * KIB,
        ..Default::default()
    });
    for (a, _, _) in live.iter_mut().flatten() {
        defrag.add(a, align()).unwrap();
    }
    let mut freed = 0;
    let mut passes = 0;
    while let Some(mut pass) = defrag.next_pass() {
        passes += 1;
        assert!(passes <= 1000, "the passes never end");
        complete_live_with_host_copies(&mut pass, &mut live);
        let emptying = pass.emptying();
        pass.end();
        // Every allocation left in a block draining has its destination held, also after a
        // pass that found the block changed by the application and walked it again.
        let now = blocks(&allocator);
        let rest: u64 = emptying
            .iter()
            .filter_map(|m| now.iter().find(|b| b.0 == vk::Handle::as_raw(*m)))
            .map(|b| b.2)
            .sum();
        assert_eq!(
            allocator.statistics().total.allocation_count,
            live.iter().flatten().count() as u64 + rest,
            "a reservation for each allocation left in the blocks draining (pass {passes})"
        );
        // One allocation left in a block that is still draining, freed by the application.
        let victim = live
            .iter()
            .position(|l| l.as_ref().is_some_and(|l| emptying.contains(&l.0.memory())));
        if let Some(k) = victim {
            live[k] = None;
            freed += 1;
        }
    }
    assert!(freed > 0, "no block drained over several passes");
    let stats = defrag.finish();
    let after = allocator.statistics().total;
    assert_eq!(
        before - after.block_count,
        stats.memory_objects_freed as u64
    );
    assert_eq!(after.allocation_count, live.iter().flatten().count() as u64);
    assert!(after.block_count * 2 <= before, "{before} -> {after:?}");
    verify_each(live.iter().flatten(), "after the moves");
}

#[test]
fn dropping_a_defragmentation_while_a_block_drains_puts_the_block_back() {
    let sim = Sim::new(GpuLayout::amd_discrete_bar());
    let device = sim.memory_device();
    let allocator = StandardMemoryAllocator::new(device.clone(), small_blocks(1)).unwrap();
    let mut live = sparse(&allocator, &device, 300);
    let mut defrag = allocator.defragmentation(&DefragmentationInfo {
        max_bytes_per_pass: 64 * KIB,
        ..Default::default()
    });
    for (a, _, _) in &mut live {
        defrag.add(a, align()).unwrap();
    }
    // Passes until one leaves a block draining (still holding allocations).
    let (draining, emptying) = loop {
        let mut pass = defrag
            .next_pass()
            .expect("a block drains before the passes end");
        complete_with_host_copies(&mut pass, &mut live);
        let emptying = pass.emptying();
        pass.end();
        let now = blocks(&allocator);
        if let Some(m) = emptying.iter().find(|m| {
            now.iter()
                .any(|b| b.0 == vk::Handle::as_raw(**m) && b.2 > 0)
        }) {
            break (*m, emptying);
        }
    };
    // The rest of the drained blocks (the one going on and those planned ahead) has its
    // destinations reserved: one more allocation each, held by the defragmentation, and
    // given back when it is dropped.
    let total = allocator.statistics().total;
    let now = blocks(&allocator);
    let rest: u64 = emptying
        .iter()
        .filter_map(|m| now.iter().find(|b| b.0 == vk::Handle::as_raw(*m)))
        .map(|b| b.2)
        .sum();
    assert_eq!(
        total.allocation_count,
        live.len() as u64 + rest,
        "a reservation for each allocation left in the drained blocks"
    );
    let count = total.block_count;
    drop(defrag);
    assert_eq!(
        allocator.statistics().total.allocation_count,
        live.len() as u64
    );
    // Back in the search: filling the existing blocks, before a new one is made, uses it.
    let mut filler = Vec::new();
    while allocator.statistics().total.block_count <= count {
        filler.push(
            allocator
                .allocate(
                    reqs(&device, 4 * KIB, ALIGN),
                    AllocationType::Linear,
                    &upload(),
                    None,
                )
                .unwrap(),
        );
    }
    assert!(
        filler.iter().any(|a| a.memory() == draining),
        "the drained block never served an allocation again"
    );
    verify_each(&live, "after the moves");
}

#[test]
fn blocks_empty_out_and_every_byte_survives_host_copies() {
    let sim = Sim::new(GpuLayout::amd_discrete_bar());
    let device = sim.memory_device();
    let allocator = StandardMemoryAllocator::new(device.clone(), small_blocks(1)).unwrap();
    for algorithm in [
        DefragmentationAlgorithm::Fast,
        DefragmentationAlgorithm::Full,
    ] {
        let mut live = sparse(&allocator, &device, 300);
        let before = allocator.statistics().total;
        let mut defrag = allocator.defragmentation(&DefragmentationInfo {
            algorithm,
            ..Default::default()
        });
        for (a, _, _) in &mut live {
            defrag.add(a, align()).unwrap();
        }
        let calls = sim.state.allocate_calls();
        defragment_with_host_copies(&mut defrag, &mut live);
        let stats = defrag.finish();
        assert_eq!(
            sim.state.allocate_calls(),
            calls,
            "a defragmentation never allocates memory"
        );
        let after = allocator.statistics().total;
        assert!(stats.memory_objects_freed > 0, "{algorithm:?}: {stats:?}");
        assert_eq!(
            before.block_count - after.block_count,
            stats.memory_objects_freed as u64
        );
        assert!(after.reserved_bytes < before.reserved_bytes);
        assert_eq!(after.allocation_count, live.len() as u64);
        for (a, seed, size) in &live {
            verify(a, *seed, *size, "after the moves");
            assert_eq!(a.offset() % ALIGN, 0, "destinations keep the alignment");
        }
        let triples: Vec<_> = live.iter().map(|(a, _, _)| (a, ALIGN)).collect();
        support::check_triples(
            &triples,
            &sim.state,
            sim.state.layout.buffer_image_granularity,
        );
        drop(live);
    }
    drop(allocator);
    sim.assert_nothing_allocated();
}

/// GPU copies of buffers through `record_buffer_copies`, under the validation layer.
#[test]
fn gpu_copies_of_buffers_move_every_byte() {
    let ctx = common::TestContext::new();
    let device = ctx.memory_device();
    let allocator = StandardMemoryAllocator::new(device.clone(), small_blocks(2)).unwrap();
    let usage = vk::BufferUsageFlags::TRANSFER_SRC | vk::BufferUsageFlags::TRANSFER_DST;
    let mut live: Vec<(vk::Buffer, MemoryAlloc, u64, u64)> = Vec::new();
    let mut rng = Rng(9);
    for i in 0..200u64 {
        let size = 16 + rng.below(40 * KIB);
        // SAFETY: a valid create info; destroyed before its allocation below.
        let (buffer, mut alloc) = unsafe {
            allocator.create_buffer(&buffer_info(size, usage), &AllocationCreateInfo::default())
        }
        .unwrap();
        fill(&mut alloc, i, size);
        if i % 3 == 0 {
            live.push((buffer, alloc, i, size));
        } else {
            // SAFETY: idle, destroyed before its memory.
            unsafe { ctx.device.destroy_buffer(buffer, None) };
        }
    }
    let (occupied_before, empty_before) = occupied_and_empty(&allocator);
    let mut defrag = allocator.defragmentation(&DefragmentationInfo {
        algorithm: DefragmentationAlgorithm::Full,
        max_moves_per_pass: 6,
        ..Default::default()
    });
    for (buffer, alloc, _, _) in &mut live {
        // SAFETY: a valid buffer.
        let a = unsafe { ctx.device.get_buffer_memory_requirements(*buffer) }.alignment;
        defrag.add(alloc, DeviceAlignment::new(a).unwrap()).unwrap();
    }
    let mut passes = 0;
    while let Some(mut pass) = defrag.next_pass() {
        passes += 1;
        assert!(pass.moves().count() <= 6);
        let mut copies = Vec::new();
        for m in pass.moves() {
            let (old, _, _, size) = live[m.id()];
            // SAFETY: a valid create info; bound to the destination made for these
            // requirements.
            let new = unsafe { ctx.device.create_buffer(&buffer_info(size, usage), None) }.unwrap();
            // SAFETY: as above.
            unsafe { m.destination().bind_buffer(new) }.unwrap();
            copies.push(BufferMove {
                src: old,
                dst: new,
                size,
            });
        }
        // SAFETY: the buffers are bound, idle and live until the submission is done.
        ctx.submit(|d, cmd| unsafe { record_buffer_copies(d, cmd, &copies) });
        for (i, copy) in copies.iter().enumerate() {
            let id = pass.get(i).unwrap().id();
            let entry = &mut live[id];
            // SAFETY: the copy is done; the old buffer goes before its memory.
            unsafe { ctx.device.destroy_buffer(entry.0, None) };
            entry.0 = copy.dst;
            pass.complete(i, &mut entry.1).unwrap();
        }
        pass.end();
    }
    assert!(passes > 1, "the moves were spread over passes");
    let stats = defrag.finish();
    // Fewer blocks hold allocations; of those emptied, one may stay (the usual hysteresis).
    let (occupied_after, empty_after) = occupied_and_empty(&allocator);
    assert!(occupied_after < occupied_before, "{stats:?}");
    assert!(empty_after <= 1, "{empty_after} empty blocks kept");
    assert_eq!(
        stats.memory_objects_freed,
        occupied_before + empty_before - occupied_after - empty_after
    );
    for (_, alloc, seed, size) in &live {
        verify(alloc, *seed, *size, "after the GPU copies");
    }
    for (buffer, _, _, _) in live.drain(..) {
        // SAFETY: idle; destroyed before its memory.
        unsafe { ctx.device.destroy_buffer(buffer, None) };
    }
}

#[test]
fn other_threads_allocate_and_free_during_a_pass_but_never_in_blocks_being_emptied() {
    let sim = Sim::new(GpuLayout::amd_discrete_bar());
    let device = sim.memory_device();
    let allocator = StandardMemoryAllocator::new(device.clone(), small_blocks(2)).unwrap();
    let mut live = sparse(&allocator, &device, 400);
    let mut defrag = allocator.defragmentation(&Default::default());
    for (a, _, _) in &mut live {
        defrag.add(a, align()).unwrap();
    }
    let mut pass = defrag.next_pass().expect("something to move");
    let emptying = pass.emptying();
    assert!(!emptying.is_empty());
    std::thread::scope(|s| {
        for t in 0..3u64 {
            let (allocator, device, emptying) = (&allocator, &device, &emptying);
            s.spawn(move || {
                let mut rng = Rng(t + 100);
                let mut mine = Vec::new();
                for i in 0..300 {
                    let size = 1 + rng.below(8 * KIB);
                    let mut a = allocator
                        .allocate(
                            reqs(device, size, 16),
                            AllocationType::Linear,
                            &upload(),
                            None,
                        )
                        .unwrap();
                    assert!(
                        !emptying.contains(&a.memory()),
                        "a new allocation landed in a block being emptied"
                    );
                    fill(&mut a, t * 1000 + i, size);
                    if rng.below(2) == 0 {
                        mine.push((a, t * 1000 + i, size));
                    }
                }
                verify_each(&mine, "a concurrent allocation");
            });
        }
    });
    // Complete every move with host copies.
    complete_with_host_copies(&mut pass, &mut live);
    let report = pass.end();
    assert!(report.memory_objects_freed > 0, "{report:?}");
    for (a, seed, size) in &live {
        verify(a, *seed, *size, "moved data");
        assert!(!emptying.contains(&a.memory()));
    }
    drop(defrag);
    drop(live);
    drop(allocator);
    sim.assert_nothing_allocated();
}

#[test]
fn skipped_and_abandoned_moves_leave_the_sources_intact() {
    let sim = Sim::new(GpuLayout::amd_discrete_bar());
    let device = sim.memory_device();
    let allocator = StandardMemoryAllocator::new(device.clone(), small_blocks(1)).unwrap();
    let mut live = sparse(&allocator, &device, 200);
    let places: Vec<_> = live
        .iter()
        .map(|(a, _, _)| (a.memory(), a.offset()))
        .collect();
    let count = allocator.statistics().total.allocation_count;
    let blocks = allocator.statistics().total.block_count;
    let mut defrag = allocator.defragmentation(&Default::default());
    for (a, _, _) in &mut live {
        defrag.add(a, align()).unwrap();
    }
    {
        let mut pass = defrag.next_pass().unwrap();
        let n = pass.moves().count();
        assert!(n >= 2);
        // The destinations exist while the pass is open.
        assert_eq!(
            allocator.statistics().total.allocation_count,
            count + n as u64
        );
        pass.skip(0).unwrap();
        assert_eq!(pass.skip(0), Err(DefragmentationError::NoSuchMove(0)));
        // Completing with the wrong allocation is refused, and changes nothing.
        let id1 = pass.get(1).unwrap().id();
        let w = (0..live.len()).find(|&j| j != id1).unwrap();
        assert_eq!(
            pass.complete(1, &mut live[w].0),
            Err(DefragmentationError::NotTheSource)
        );
        // The rest: abandoned by dropping the pass.
    }
    assert_eq!(
        allocator.statistics().total.allocation_count,
        count,
        "destinations freed"
    );
    assert_eq!(
        allocator.statistics().total.block_count,
        blocks,
        "nothing released"
    );
    for ((a, seed, size), place) in live.iter().zip(&places) {
        assert_eq!((a.memory(), a.offset()), *place, "the source did not move");
        verify(a, *seed, *size, "a skipped or abandoned move's source");
    }
    // What cannot take part.
    let mut dedicated = allocator
        .allocate(
            reqs(&device, 4096, 16),
            AllocationType::Linear,
            &AllocationCreateInfo {
                allocate_preference: MemoryAllocatePreference::AlwaysAllocate,
                ..upload()
            },
            None,
        )
        .unwrap();
    assert_eq!(
        defrag.add(&mut dedicated, align()),
        Err(DefragmentationError::Dedicated)
    );
    let other = StandardMemoryAllocator::new_default(device.clone());
    let mut foreign = other
        .allocate(
            reqs(&device, 4096, 16),
            AllocationType::Linear,
            &upload(),
            None,
        )
        .unwrap();
    assert_eq!(
        defrag.add(&mut foreign, align()),
        Err(DefragmentationError::NotHere)
    );
    drop((dedicated, foreign, other, defrag));
    // After all that, a full defragmentation still works.
    let mut defrag = allocator.defragmentation(&Default::default());
    for (a, _, _) in &mut live {
        defrag.add(a, align()).unwrap();
    }
    defragment_with_host_copies(&mut defrag, &mut live);
    verify_each(&live, "after the defragmentation");
    defrag.finish();
    drop(live);
    drop(allocator);
    sim.assert_nothing_allocated();
}

/// A suballocator that fails on demand: destinations that cannot be made mid-pass.
struct Flaky(FreeListAllocator);

static FAIL_AFTER: AtomicU64 = AtomicU64::new(u64::MAX);

// SAFETY: forwards to `FreeListAllocator`, whose guarantees it keeps; it only fails more.
unsafe impl Suballocator for Flaky {
    common::forward::forward_to_free_list!(
        new,
        region_size,
        deallocate,
        free_size,
        largest_free_range,
        allocation_count,
        reset,
        for_each_range,
    );
    fn allocate(
        &mut self,
        layout: DeviceLayout,
        allocation_type: AllocationType,
        g: DeviceAlignment,
    ) -> Result<Suballocation, SuballocatorError> {
        let left = FAIL_AFTER.load(Ordering::SeqCst);
        if left == 0 {
            return Err(SuballocatorError::FragmentedRegion);
        }
        FAIL_AFTER.store(left.saturating_sub(1), Ordering::SeqCst);
        self.0.allocate(layout, allocation_type, g)
    }
}

#[test]
fn destinations_failing_mid_pass_lose_nothing_and_driver_faults_cannot_reach_a_pass() {
    let sim = Sim::new(GpuLayout::amd_discrete_bar());
    let device = sim.memory_device();
    let allocator = GenericMemoryAllocator::<Flaky>::new(device.clone(), small_blocks(1)).unwrap();
    let mut live = sparse(&allocator, &device, 200);
    let count = allocator.statistics().total.allocation_count;
    for fail_after in [0, 1, 3, 7] {
        let mut defrag = allocator.defragmentation(&Default::default());
        for (a, _, _) in &mut live {
            defrag.add(a, align()).unwrap();
        }
        // Every vkAllocateMemory would fail: a pass makes none.
        sim.state.set_faults(Faults {
            allocate_at: Some((1, vk::Result::ERROR_OUT_OF_DEVICE_MEMORY)),
            allocate_more: u64::MAX / 2,
            ..Default::default()
        });
        sim.state.reset_counters();
        FAIL_AFTER.store(fail_after, Ordering::SeqCst);
        let pass = defrag.next_pass();
        FAIL_AFTER.store(u64::MAX, Ordering::SeqCst);
        assert_eq!(sim.state.allocate_calls(), 0);
        if let Some(mut pass) = pass {
            // Blocks whose destinations failed were given up whole: every move offered
            // still completes.
            complete_with_host_copies(&mut pass, &mut live);
            pass.end();
        }
        sim.state.set_faults(Faults::default());
        assert_eq!(
            allocator.statistics().total.allocation_count,
            count,
            "{fail_after}"
        );
        verify_each(&live, "after a pass with failing destinations");
    }
    drop(live);
    drop(allocator);
    sim.assert_nothing_allocated();
}

#[test]
fn custom_pools_defragment_on_their_own() {
    let sim = Sim::new(GpuLayout::amd_discrete_bar());
    let device = sim.memory_device();
    let allocator = StandardMemoryAllocator::new_default(device.clone());
    let pool = allocator
        .create_pool::<FreeListAllocator>(&PoolCreateInfo {
            name: Some("streaming".into()),
            memory_type: PoolMemoryType::Find {
                memory_type_bits: u32::MAX,
                usage: MemoryUsage::Upload,
            },
            block_size: MIB,
            min_block_count: 1,
            ..Default::default()
        })
        .unwrap();
    let mut live = sparse(&pool, &device, 200);
    let before = pool.statistics().total;
    let mut defrag = pool.defragmentation(&DefragmentationInfo {
        algorithm: DefragmentationAlgorithm::Full,
        ..Default::default()
    });
    for (a, _, _) in &mut live {
        defrag.add(a, align()).unwrap();
    }
    // Allocations of the default pools are not this defragmentation's.
    let mut outside = allocator
        .allocate(
            reqs(&device, 100, 16),
            AllocationType::Linear,
            &upload(),
            None,
        )
        .unwrap();
    assert_eq!(
        defrag.add(&mut outside, align()),
        Err(DefragmentationError::NotHere)
    );
    defragment_with_host_copies(&mut defrag, &mut live);
    let stats = defrag.finish();
    let after = pool.statistics().total;
    assert!(stats.memory_objects_freed > 0);
    assert!(after.block_count < before.block_count);
    assert!(after.block_count >= 1, "the pool's minimum stays");
    verify_each(&live, "pool data after the moves");
    drop((live, outside, pool, allocator));
    sim.assert_nothing_allocated();
}

#[test]
fn moved_allocations_keep_their_names_and_user_data() {
    // A destination carries its source's name and user data; allocations without either stay
    // without (only those with some have their registration read when their destination is
    // made).
    let sim = Sim::new(GpuLayout::amd_discrete_bar());
    let device = sim.memory_device();
    let allocator = StandardMemoryAllocator::new(device.clone(), small_blocks(1)).unwrap();
    let mut live = sparse(&allocator, &device, 300);
    for (k, (a, _, _)) in live.iter_mut().enumerate() {
        match k % 3 {
            0 => a.set_name(Some(format!("buffer {k}").into())),
            1 => a.set_user_data(Some(std::sync::Arc::new(k))),
            _ => {}
        }
    }
    let before: Vec<(vk::DeviceMemory, u64)> = live
        .iter()
        .map(|(a, _, _)| (a.memory(), a.offset()))
        .collect();
    let mut defrag = allocator.defragmentation(&DefragmentationInfo {
        max_bytes_per_pass: 64 * KIB,
        ..Default::default()
    });
    for (a, _, _) in &mut live {
        defrag.add(a, align()).unwrap();
    }
    defragment_with_host_copies(&mut defrag, &mut live);
    let stats = defrag.finish();
    assert!(stats.moves > 0);
    let mut moved = [0; 3];
    for (k, (a, seed, size)) in live.iter().enumerate() {
        if (a.memory(), a.offset()) != before[k] {
            moved[k % 3] += 1;
        }
        let name = (k % 3 == 0).then(|| format!("buffer {k}"));
        assert_eq!(a.name(), name.as_deref(), "allocation {k}'s name");
        assert_eq!(
            a.user_data_as::<usize>().copied(),
            (k % 3 == 1).then_some(k),
            "allocation {k}'s user data"
        );
        verify(a, *seed, *size, "after the moves");
    }
    assert!(
        moved.iter().all(|&m| m > 0),
        "moves of each kind: {moved:?}"
    );
}

#[test]
fn a_drained_block_the_application_emptied_is_released_and_counted_when_the_defragmentation_ends() {
    // A block left draining, whose last allocations the application frees itself between
    // passes: the end of the defragmentation releases it, and its stats count it.
    let sim = Sim::new(GpuLayout::amd_discrete_bar());
    let device = sim.memory_device();
    let allocator = StandardMemoryAllocator::new(device.clone(), small_blocks(1)).unwrap();
    let mut live = sparse(&allocator, &device, 300);
    let mut defrag = allocator.defragmentation(&DefragmentationInfo {
        max_bytes_per_pass: 64 * KIB,
        ..Default::default()
    });
    for (a, _, _) in &mut live {
        defrag.add(a, align()).unwrap();
    }
    let draining = loop {
        let mut pass = defrag
            .next_pass()
            .expect("a block drains before the passes end");
        complete_with_host_copies(&mut pass, &mut live);
        let emptying = pass.emptying();
        pass.end();
        let now = blocks(&allocator);
        if let Some(m) = emptying.iter().find(|m| {
            now.iter()
                .any(|b| b.0 == vk::Handle::as_raw(**m) && b.2 > 0)
        }) {
            break *m;
        }
    };
    // The application frees what is left in the draining block (no pass follows, so the ids
    // need not stay positions in `live`).
    live.retain(|(a, _, _)| a.memory() != draining);
    let freed_before = defrag.stats().memory_objects_freed;
    let stats = defrag.finish();
    assert!(
        !blocks(&allocator)
            .iter()
            .any(|b| b.0 == vk::Handle::as_raw(draining)),
        "the emptied drained block was released"
    );
    assert!(
        stats.memory_objects_freed > freed_before,
        "the release is counted: {} then {}",
        freed_before,
        stats.memory_objects_freed
    );
    verify_each(&live, "after the defragmentation");
}

#[test]
fn blocks_made_and_released_between_bounded_passes_free_their_memory_at_once_and_plans_stay_true() {
    // Bounded passes, and between them the application frees every allocation of a block
    // (which empties and may go) and makes new ones (in new blocks too). The defragmentation
    // keeps block handles from pass to pass: the blocks a pass releases must free their memory
    // when it ends, no move may name an allocation the application freed, and no destination
    // may overlap an allocation made between passes (checked by the bytes at the end).
    let sim = Sim::new(GpuLayout::amd_discrete_bar());
    let device = sim.memory_device();
    let allocator = StandardMemoryAllocator::new(device.clone(), small_blocks(1)).unwrap();
    let mut live = sparse_or_freed(&allocator, &device, 600);
    let mut defrag = allocator.defragmentation(&DefragmentationInfo {
        max_bytes_per_pass: 128 * KIB,
        ..Default::default()
    });
    for (i, x) in live.iter_mut().enumerate() {
        let (a, _, _) = x.as_mut().unwrap();
        assert_eq!(defrag.add(a, align()).unwrap(), i);
    }
    let mut made = Vec::new();
    let mut rng = Rng(27);
    let (mut passes, mut released, mut freed_blocks) = (0, 0, 0);
    while let Some(mut pass) = defrag.next_pass() {
        passes += 1;
        assert!(passes <= 3 * live.len(), "the passes never end");
        complete_live_with_host_copies(&mut pass, &mut live);
        let objects = sim.state.live_objects();
        let report = pass.end();
        released += report.memory_objects_freed;
        assert_eq!(
            sim.state.live_objects(),
            objects - report.memory_objects_freed as u32,
            "pass {passes}: a block the pass released keeps its memory"
        );
        if passes % 2 == 0 {
            // Every allocation of one block goes.
            let memories: Vec<vk::DeviceMemory> =
                live.iter().flatten().map(|x| x.0.memory()).collect();
            if !memories.is_empty() {
                let memory = memories[rng.below(memories.len() as u64) as usize];
                for x in live.iter_mut() {
                    if x.as_ref().is_some_and(|x| x.0.memory() == memory) {
                        *x = None;
                    }
                }
                freed_blocks += 1;
            }
        }
        for k in 0..6 {
            let size = 1 + rng.below(60 * KIB);
            let seed = 100_000 + passes as u64 * 100 + k;
            let a = patterned_upload(&allocator, &device, size, ALIGN, seed);
            made.push((a, seed, size));
        }
    }
    assert!(passes >= 4, "too few passes to test anything: {passes}");
    assert!(
        released > 0 && freed_blocks > 0,
        "{released} {freed_blocks}"
    );
    let stats = defrag.finish();
    assert!(stats.moves > 0, "{stats:?}");
    verify_each(live.iter().flatten(), "a moved allocation");
    verify_each(&made, "an allocation made between passes");
    drop(live);
    drop(made);
    drop(allocator);
    sim.assert_nothing_allocated();
}

#[test]
fn drains_planned_ahead_stay_true_when_the_application_frees_from_them_and_allocates_between_passes(
) {
    // Small passes over sparse blocks: the first pass is full after a block or two, and the
    // plan drains the later blocks ahead (their destinations held, nothing moving yet). Between
    // passes the application frees allocations in a drain still waiting for its turn and in
    // the drain going on, and makes new allocations. No move may name a freed allocation,
    // every allocation left in a block draining keeps exactly one destination (a waiting drain
    // freed from lets its destinations go), and every byte survives.
    let sim = Sim::new(GpuLayout::amd_discrete_bar());
    let device = sim.memory_device();
    let allocator = StandardMemoryAllocator::new(device.clone(), small_blocks(1)).unwrap();
    let mut live = sparse_or_freed(&allocator, &device, 600);
    let mut defrag = allocator.defragmentation(&DefragmentationInfo {
        max_bytes_per_pass: 64 * KIB,
        ..Default::default()
    });
    for (a, _, _) in live.iter_mut().flatten() {
        defrag.add(a, align()).unwrap();
    }
    let mut made: Vec<(MemoryAlloc, u64, u64)> = Vec::new();
    let mut rng = Rng(5);
    let (mut passes, mut most_draining, mut freed_waiting) = (0, 0, 0);
    while let Some(mut pass) = defrag.next_pass() {
        passes += 1;
        assert!(passes <= 3 * live.len(), "the passes never end");
        let sources: Vec<vk::DeviceMemory> = pass.moves().map(|m| m.source_memory()).collect();
        complete_live_with_host_copies(&mut pass, &mut live);
        let emptying = pass.emptying();
        pass.end();
        let now = blocks(&allocator);
        let holding = |m: &vk::DeviceMemory| {
            now.iter()
                .find(|b| b.0 == vk::Handle::as_raw(*m))
                .map_or(0, |b| b.2)
        };
        let draining: Vec<vk::DeviceMemory> = emptying
            .iter()
            .copied()
            .filter(|m| holding(m) > 0)
            .collect();
        most_draining = most_draining.max(draining.len());
        // One destination held for each allocation left in the blocks draining.
        let rest: u64 = draining.iter().map(holding).sum();
        assert_eq!(
            allocator.statistics().total.allocation_count,
            (live.iter().flatten().count() + made.len()) as u64 + rest,
            "a reservation for each allocation left in the blocks draining (pass {passes})"
        );
        // Free an allocation of a drain waiting for its turn (no move of this pass came out of
        // it), and every third pass one of the drain going on.
        let mut victims: Vec<vk::DeviceMemory> = draining
            .iter()
            .copied()
            .filter(|m| !sources.contains(m))
            .rev()
            .take(1)
            .collect();
        freed_waiting += victims.len();
        if passes % 3 == 0 {
            victims.extend(draining.iter().copied().filter(|m| sources.contains(m)));
        }
        for memory in victims {
            if let Some(k) = live
                .iter()
                .position(|x| x.as_ref().is_some_and(|x| x.0.memory() == memory))
            {
                live[k] = None;
            }
        }
        for k in 0..4 {
            let size = 1 + rng.below(24 * KIB);
            let seed = 200_000 + passes as u64 * 100 + k;
            let a = patterned_upload(&allocator, &device, size, ALIGN, seed);
            assert!(
                !draining.contains(&a.memory()),
                "an allocation landed in a block draining"
            );
            made.push((a, seed, size));
        }
    }
    assert!(
        most_draining >= 3,
        "too few drains planned ahead to test anything: {most_draining}"
    );
    assert!(freed_waiting > 0, "no waiting drain was freed from");
    let stats = defrag.finish();
    assert!(
        stats.moves > 0 && stats.memory_objects_freed > 0,
        "{stats:?}"
    );
    assert_eq!(
        allocator.statistics().total.allocation_count,
        (live.iter().flatten().count() + made.len()) as u64,
        "a destination outlived the defragmentation"
    );
    verify_each(live.iter().flatten(), "a moved allocation");
    verify_each(&made, "an allocation made between passes");
    drop(live);
    drop(made);
    drop(allocator);
    sim.assert_nothing_allocated();
}

#[test]
fn hundreds_of_allocations_a_block_registered_in_any_order_move_with_their_data() {
    // Blocks holding hundreds of registered allocations each, registered in a shuffled
    // order: their lists are longer than the registry changes at once, so it notes each change
    // and settles it before the next plan, instead of shifting the list at every one. Bounded
    // passes move them over many passes, each between two settles; every byte arrives.
    let sim = Sim::new(GpuLayout::amd_discrete_bar());
    let device = sim.memory_device();
    let allocator = StandardMemoryAllocator::new(device.clone(), small_blocks(1)).unwrap();
    let mut rng = Rng(0x10ad);
    let mut live: Vec<(MemoryAlloc, u64, u64)> = (0..6_000)
        .map(|i| {
            let size = 64 + rng.below(448);
            (patterned_upload(&allocator, &device, size, 64, i), i, size)
        })
        .enumerate()
        .filter(|(i, _)| i % 3 == 0)
        .map(|(_, x)| x)
        .collect();
    let (occupied_before, _) = occupied_and_empty(&allocator);
    let most = blocks(&allocator).iter().map(|b| b.2).max().unwrap();
    assert!(most > 600, "the fullest block holds {most} allocations");
    let mut order: Vec<usize> = (0..live.len()).collect();
    for i in (1..order.len()).rev() {
        order.swap(i, rng.below(i as u64 + 1) as usize);
    }
    let mut defrag = allocator.defragmentation(&DefragmentationInfo {
        max_bytes_per_pass: 64 * KIB,
        ..Default::default()
    });
    let mut index_of = std::collections::HashMap::new();
    for &k in &order {
        let id = defrag.add(&mut live[k].0, DeviceAlignment::new(64).unwrap());
        index_of.insert(id.unwrap(), k);
    }
    let mut passes = 0;
    while let Some(mut pass) = defrag.next_pass() {
        passes += 1;
        assert!(passes <= 1000, "the passes never end");
        for i in support::defrag::open(&pass) {
            let k = index_of[&pass.get(i).unwrap().id()];
            support::defrag::copy_and_complete(&mut pass, i, &mut live[k].0).unwrap();
        }
        pass.end();
    }
    let stats = defrag.finish();
    assert!(
        passes > 3,
        "{passes} passes: the test wants several settles"
    );
    let (occupied_after, _) = occupied_and_empty(&allocator);
    assert!(occupied_after < occupied_before, "{stats:?}");
    verify_each(&live, "after the moves");
    let triples: Vec<_> = live.iter().map(|(a, _, _)| (a, 64)).collect();
    support::check_triples(&triples, &sim.state, 1);
}
