//! The allocator with `SlotAllocator` blocks: blocks hold whole slots, and slots smaller than
//! the granularity still serve what can safely share a page.

mod common;
mod support;

use ash_memory::*;
use support::{GpuLayout, Sim, MIB};

fn request(size: u64, alignment: u64, device: &MemoryDevice) -> AllocationRequirements {
    AllocationRequirements {
        layout: DeviceLayout::from_size_alignment(size, alignment).unwrap(),
        memory_type_bits: device.memory_properties().all_types_mask(),
        prefers_dedicated_allocation: false,
        requires_dedicated_allocation: false,
    }
}

/// Slots of 64 MiB: the first block used to be 32 MiB (1/8 of the block size), held no slot,
/// was freed again, and every request ended up in a dedicated allocation after a wasted
/// `vkAllocateMemory`. Blocks are now at least one slot per arena.
#[test]
fn blocks_hold_at_least_one_slot_per_arena() {
    let sim = Sim::new(GpuLayout::nvidia_discrete());
    let device = sim.memory_device();
    for arenas in [1, 2] {
        let allocator = GenericMemoryAllocator::<SlotAllocator<{ 64 << 20 }>>::new(
            device.clone(),
            GenericMemoryAllocatorCreateInfo {
                block_arenas: Some(arenas),
                ..Default::default()
            },
        )
        .unwrap();
        sim.state.reset_counters();
        let info = AllocationCreateInfo::default();
        let a = allocator
            .allocate(
                request(MIB, 256, &device),
                AllocationType::Linear,
                &info,
                None,
            )
            .unwrap();
        assert!(!a.is_dedicated(), "suballocated in a slot");
        let calls = sim.state.calls();
        assert_eq!(
            calls.len(),
            1,
            "{arenas} arenas: one vkAllocateMemory: {calls:?}"
        );
        // A slot is more than an eighth of a block, but the request is not sizable: the
        // block holds a slot per arena (see the placement's block sizes).
        assert!(calls[0].size >= 64 * MIB * arenas as u64, "{calls:?}");
        // Every arena of the block holds a slot.
        let b = allocator
            .allocate(
                request(MIB, 256, &device),
                AllocationType::Linear,
                &info,
                None,
            )
            .unwrap();
        assert!(!b.is_dedicated());
        if arenas == 2 {
            assert_eq!(b.memory(), a.memory(), "the second slot of the block");
            assert_eq!(sim.state.calls().len(), 1);
        }
        drop((a, b, allocator));
    }
    sim.assert_nothing_allocated();
}

/// Slots of 256 bytes under a 64 KiB granularity: buffers share pages with buffers, images
/// with images, and nothing is refused that can be placed safely.
#[test]
fn slots_smaller_than_the_granularity_serve_what_may_share_a_page() {
    let sim = Sim::new(GpuLayout::large_granularity());
    let device = sim.memory_device();
    let allocator = GenericMemoryAllocator::<SlotAllocator<256>>::new(
        device.clone(),
        GenericMemoryAllocatorCreateInfo {
            block_sizes: BlockSizeThresholds::uniform(4 * MIB).unwrap(),
            ..Default::default()
        },
    )
    .unwrap();
    let info = AllocationCreateInfo::default();
    let mut live = Vec::new();
    for i in 0..600 {
        let ty = if i % 3 == 0 {
            AllocationType::NonLinear
        } else {
            AllocationType::Linear
        };
        let a = allocator
            .allocate(request(100, 16, &device), ty, &info, None)
            .unwrap();
        assert!(!a.is_dedicated(), "request {i} was not suballocated");
        live.push(a);
    }
    // No buffer and image share a 64 KiB page.
    let mut ranges: Vec<_> = live
        .iter()
        .map(|a| (a.memory(), a.offset(), a.size(), a.allocation_type()))
        .collect();
    ranges.sort_by_key(|r| (r.0, r.1));
    for w in ranges.windows(2) {
        let (a, b) = (w[0], w[1]);
        if a.0 == b.0 && a.3 != b.3 {
            assert_ne!(
                (a.1 + a.2 - 1) >> 16,
                b.1 >> 16,
                "{a:?} and {b:?} share a page"
            );
        }
    }
    assert!(
        allocator.block_count(0) <= 2,
        "slots were shared, not wasted"
    );
    drop(live);
    drop(allocator);
    sim.assert_nothing_allocated();
}

/// As documented on `MemoryAlloc::size`: a 64-byte request in a `SlotAllocator<256>` is a
/// 64-byte allocation, and the statistics count the 256-byte slot it holds.
#[test]
fn size_is_the_request_and_statistics_count_whole_slots() {
    let sim = Sim::new(GpuLayout::nvidia_discrete());
    let device = sim.memory_device();
    let allocator =
        GenericMemoryAllocator::<SlotAllocator<256>>::new(device.clone(), Default::default())
            .unwrap();
    let allocs: Vec<_> = (0..3)
        .map(|_| {
            allocator
                .allocate(
                    request(64, 16, &device),
                    AllocationType::Linear,
                    &AllocationCreateInfo::default(),
                    None,
                )
                .unwrap()
        })
        .collect();
    assert!(allocs.iter().all(|a| a.size() == 64 && !a.is_dedicated()));
    let total = allocator.statistics().total;
    assert_eq!(total.allocation_count, 3);
    assert_eq!(total.allocations.total, 3 * 256, "{total:?}");
    assert_eq!(total.allocations.min, 256);
    drop(allocs);
    drop(allocator);
    sim.assert_nothing_allocated();
}
