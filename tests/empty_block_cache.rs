//! The empty blocks that a default block vector keeps for reuse (under the recent high-water
//! mark of its memory in use, at most four preferred blocks' worth) never raise the most
//! memory reserved and never cost the application an allocation: when a heap runs out, for
//! the allocator or one of its custom pools, the kept blocks of every memory type of that
//! heap give their memory back and the request is tried again. A custom pool keeps one empty
//! block, as before.

mod common;
mod support;

use ash::vk;
use ash_memory::*;
use support::{Faults, GpuLayout, Sim, SimFeatures, MIB};

const HEAP: u64 = 128 * MIB;
const BLOCK: u64 = 16 * MIB;

/// The NVIDIA layout with a small host heap: two memory types (1 and 2) share heap 1.
fn small_host_heap() -> GpuLayout {
    let mut layout = GpuLayout::nvidia_discrete();
    layout.heaps[1].0 = HEAP;
    layout
}

fn allocator(sim: &Sim) -> StandardMemoryAllocator {
    StandardMemoryAllocator::new(
        sim.memory_device(),
        GenericMemoryAllocatorCreateInfo {
            block_sizes: BlockSizeThresholds::uniform(BLOCK).unwrap(),
            grow_blocks: false,
            ..Default::default()
        },
    )
    .unwrap()
}

/// An allocator with the default settings but `block` as its block size (blocks grow).
fn growing_allocator(sim: &Sim, block: u64) -> StandardMemoryAllocator {
    StandardMemoryAllocator::new(
        sim.memory_device(),
        GenericMemoryAllocatorCreateInfo {
            block_sizes: BlockSizeThresholds::uniform(block).unwrap(),
            ..Default::default()
        },
    )
    .unwrap()
}

fn allocate(allocator: &StandardMemoryAllocator, ty: u32) -> Result<MemoryAlloc, AllocationError> {
    allocator.allocate_from_type(
        ty,
        DeviceLayout::from_size_alignment(MIB, 256).unwrap(),
        AllocationType::Linear,
        &AllocationCreateInfo::default(),
    )
}

#[test]
fn kept_empty_blocks_give_their_memory_back_when_the_heap_runs_out() {
    let sim = Sim::new(small_host_heap());
    let layout = small_host_heap();
    assert_eq!((layout.types[1].1, layout.types[2].1), (1, 1), "one heap");
    {
        let allocator = allocator(&sim);
        // Memory type 1: two blocks' worth, then freed. Both blocks stay, empty, for reuse.
        let held: Vec<_> = (0..2 * BLOCK / MIB)
            .map(|_| allocate(&allocator, 1).unwrap())
            .collect();
        assert_eq!(allocator.block_count(1), 2);
        drop(held);
        assert_eq!(allocator.block_count(1), 2, "two empty blocks kept");
        assert_eq!(sim.state.heap_used(1), 2 * BLOCK);

        // Memory type 2 takes the whole heap: when it runs out, type 1's kept blocks are
        // released and the block is made after all.
        let mut other = Vec::new();
        let error = loop {
            match allocate(&allocator, 2) {
                Ok(a) => other.push(a),
                Err(e) => break e,
            }
            assert!(other.len() as u64 <= HEAP / MIB, "more than the heap");
        };
        assert_eq!(error, AllocationError::OutOfDeviceMemory);
        assert_eq!(allocator.block_count(1), 0, "the kept blocks were released");
        assert_eq!(
            other.len() as u64 * MIB,
            HEAP,
            "type 2 got the whole heap, the kept blocks' share included"
        );
        assert_eq!(sim.state.heap_used(1), HEAP);

        // Freed, type 2 keeps four blocks' worth (all eight were in use a moment ago); type 1
        // then gets them back the same way.
        drop(other);
        assert_eq!(allocator.block_count(2), 4);
        let again: Vec<_> = (0..HEAP / MIB)
            .map(|_| allocate(&allocator, 1).unwrap())
            .collect();
        assert_eq!(allocator.block_count(2), 0);
        drop(again);
    }
    sim.assert_nothing_allocated();
}

/// The bytes of the allocator's blocks of memory type `ty` that hold allocations.
fn in_use(allocator: &StandardMemoryAllocator, ty: u32) -> u64 {
    allocator
        .statistics()
        .blocks
        .iter()
        .filter(|b| b.memory_type_index == ty && !b.dedicated)
        .filter(|b| b.statistics.allocation_count > 0)
        .map(|b| b.size)
        .sum()
}

/// A `large`-like trace (a dozen live resources of 256 KiB to 24 MiB in 64 MiB blocks, so
/// that sizable requests get blocks of their own size, freed and replaced at random): the
/// heap's use rises above its peak so far only to the blocks in use (no kept block adds to
/// it), and most requests reuse kept memory instead of making more. Then, with one small
/// resource at a time for two epochs of samples, the kept memory decays to one block.
#[test]
fn kept_memory_never_raises_the_peak_and_decays() {
    let sim = Sim::new(GpuLayout::nvidia_discrete());
    {
        let allocator = growing_allocator(&sim, 64 * MIB);
        let info = AllocationCreateInfo::default();
        let allocate = |size: u64| {
            allocator
                .allocate_from_type(
                    0,
                    DeviceLayout::from_size_alignment(size, 4096).unwrap(),
                    AllocationType::NonLinear,
                    &info,
                )
                .unwrap()
        };
        let mut seed = 0x5eed_u64;
        let mut next = move || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            seed >> 33
        };
        // Log-uniform sizes from 256 KiB to 24 MiB.
        let mut size = move || {
            let r = next() as f64 / (1u64 << 31) as f64;
            ((256 << 10) as f64 * (96f64).powf(r)) as u64
        };
        sim.state.reset_counters();
        let mut live: Vec<MemoryAlloc> = Vec::new();
        let mut peak = 0;
        let steps = 1500;
        for step in 0..steps {
            if live.len() >= 12 {
                let i = (step * 7919) % live.len();
                drop(live.swap_remove(i));
            }
            live.push(allocate(size()));
            let reserved = sim.state.heap_used(0);
            let in_use = in_use(&allocator, 0);
            assert!(
                reserved <= peak.max(in_use),
                "step {step}: {reserved} reserved, above the peak {peak} and the {in_use} in use"
            );
            peak = peak.max(reserved);
        }
        let calls = sim.state.allocate_calls();
        assert!(
            calls < steps as u64 / 20,
            "{calls} vkAllocateMemory calls for {steps} requests"
        );
        drop(live);
        let kept = sim.state.heap_used(0);
        assert!(kept > 64 * MIB, "{kept} bytes kept after the trace");
        // One 1 MiB resource at a time: each free empties its block, a sample of one block
        // in use. Two epochs of them and only that block stays.
        for _ in 0..300 {
            drop(allocate(MIB));
        }
        let kept = sim.state.heap_used(0);
        assert!(kept <= 64 * MIB, "{kept} bytes still kept");
        assert_eq!(allocator.block_count(0), 1);
    }
    sim.assert_nothing_allocated();
}

/// Sizable resources (more than an eighth of a 64 MiB block: blocks of their own size) are
/// kept for reuse by the preferred block's measure, four 64 MiB blocks' worth, not four of
/// their own blocks: twelve 10 MiB resources, eight freed, eight made again take the eight
/// kept blocks, with no new memory object.
#[test]
fn kept_blocks_of_sizable_resources_count_in_preferred_blocks() {
    let sim = Sim::new(GpuLayout::nvidia_discrete());
    {
        let allocator = growing_allocator(&sim, 64 * MIB);
        let info = AllocationCreateInfo::default();
        let allocate = || {
            allocator
                .allocate_from_type(
                    0,
                    DeviceLayout::from_size_alignment(10 * MIB, 4096).unwrap(),
                    AllocationType::Linear,
                    &info,
                )
                .unwrap()
        };
        let mut live: Vec<MemoryAlloc> = (0..12).map(|_| allocate()).collect();
        assert_eq!(allocator.block_count(0), 12, "one block each");
        live.truncate(4);
        assert_eq!(
            allocator.block_count(0),
            12,
            "the eight emptied blocks are kept"
        );
        sim.state.reset_counters();
        live.extend((0..8).map(|_| allocate()));
        assert_eq!(sim.state.allocate_calls(), 0, "the kept blocks were reused");
        assert_eq!(allocator.block_count(0), 12);
    }
    sim.assert_nothing_allocated();
}

/// The driver refuses a new block while a default vector keeps empty blocks under its mark
/// beside it: the vector gives them back itself and asks once more (the heap-wide release
/// cannot take that vector's list while it makes the block), so the request succeeds.
#[test]
fn a_vector_gives_back_its_own_kept_blocks_when_memory_runs_out() {
    let sim = Sim::new(small_host_heap());
    {
        let allocator = growing_allocator(&sim, 64 * MIB);
        let info = AllocationCreateInfo::default();
        let allocate = |size: u64| {
            allocator.allocate_from_type(
                1,
                DeviceLayout::from_size_alignment(size, 256).unwrap(),
                AllocationType::Linear,
                &info,
            )
        };
        // Sizable requests (more than 8 MiB): blocks of their own size, 30 + 20 + 10 MiB in
        // use at once, then freed: all three kept (the mark is 60 MiB).
        let held: Vec<_> = [30 * MIB, 20 * MIB, 10 * MIB]
            .into_iter()
            .map(|s| allocate(s).unwrap())
            .collect();
        drop(held);
        assert_eq!(allocator.block_count(1), 3);
        assert_eq!(sim.state.heap_used(1), 60 * MIB);
        // 31 MiB fits none of them: its block and the 20 MiB one stay under the mark, the
        // others go. The driver refuses the block once: the 20 MiB block goes too, and the
        // block is made on the second call.
        sim.state.reset_counters();
        sim.state.set_faults(Faults {
            allocate_at: Some((1, vk::Result::ERROR_OUT_OF_DEVICE_MEMORY)),
            ..Default::default()
        });
        let a = allocate(31 * MIB).expect("made once the kept block is given back");
        assert_eq!(sim.state.allocate_calls(), 2);
        assert_eq!(allocator.block_count(1), 1);
        assert_eq!(sim.state.heap_used(1), 31 * MIB);
        sim.state.set_faults(Faults::default());
        drop(a);
    }
    sim.assert_nothing_allocated();
}

#[test]
fn a_custom_pool_keeps_one_empty_block_and_default_vectors_what_was_in_use() {
    let sim = Sim::new(small_host_heap());
    {
        let allocator = allocator(&sim);
        let pool = allocator
            .create_pool::<FreeListAllocator>(&PoolCreateInfo {
                memory_type: PoolMemoryType::Index(1),
                block_size: BLOCK,
                ..Default::default()
            })
            .unwrap();
        let info = AllocationCreateInfo::default();
        let requirements = AllocationRequirements {
            layout: DeviceLayout::from_size_alignment(MIB, 256).unwrap(),
            memory_type_bits: 1 << 1,
            prefers_dedicated_allocation: false,
            requires_dedicated_allocation: false,
        };
        let held: Vec<_> = (0..3 * BLOCK / MIB)
            .map(|_| {
                pool.allocate(requirements, AllocationType::Linear, &info, None)
                    .unwrap()
            })
            .collect();
        assert_eq!(pool.statistics().total.block_count, 3);
        drop(held);
        assert_eq!(
            pool.statistics().total.block_count,
            1,
            "one empty block kept"
        );

        let held: Vec<_> = (0..3 * BLOCK / MIB)
            .map(|_| allocate(&allocator, 2).unwrap())
            .collect();
        assert_eq!(allocator.block_count(2), 3);
        drop(held);
        assert_eq!(
            allocator.block_count(2),
            3,
            "three empty blocks kept: all were in use a moment ago"
        );
        drop(pool);
        // The pool's block went with it; the allocator's three stay until it is dropped.
        assert_eq!(sim.state.heap_used(1), 3 * BLOCK);
    }
    sim.assert_nothing_allocated();
}

#[test]
fn a_custom_pool_gets_the_memory_that_the_allocator_kept() {
    let sim = Sim::new(small_host_heap());
    {
        let allocator = allocator(&sim);
        let held: Vec<_> = (0..2 * BLOCK / MIB)
            .map(|_| allocate(&allocator, 1).unwrap())
            .collect();
        drop(held);
        assert_eq!(allocator.block_count(1), 2, "two empty blocks kept");
        // A pool of the other memory type of the heap whose first block needs all but one
        // block of the heap: made once the allocator's kept blocks are given back.
        let pool = allocator
            .create_pool::<FreeListAllocator>(&PoolCreateInfo {
                memory_type: PoolMemoryType::Index(2),
                block_size: HEAP - BLOCK,
                min_block_count: 1,
                ..Default::default()
            })
            .expect("the kept blocks give the pool room");
        assert_eq!(allocator.block_count(1), 0, "the kept blocks were released");
        assert_eq!(sim.state.heap_used(1), HEAP - BLOCK);
        // Without anything kept to give back, the heap's limit stands.
        let more = allocator.create_pool::<FreeListAllocator>(&PoolCreateInfo {
            memory_type: PoolMemoryType::Index(1),
            block_size: 2 * BLOCK,
            min_block_count: 1,
            ..Default::default()
        });
        assert_eq!(more.err(), Some(AllocationError::OutOfDeviceMemory));
        drop(pool);
    }
    sim.assert_nothing_allocated();
}

#[test]
fn past_the_budget_one_empty_block_is_kept() {
    let features = SimFeatures {
        memory_budget: true,
        ..Default::default()
    };
    let sim = Sim::with_features(small_host_heap(), features);
    {
        let allocator = StandardMemoryAllocator::new(
            sim.memory_device_claimed(),
            GenericMemoryAllocatorCreateInfo {
                block_sizes: BlockSizeThresholds::uniform(BLOCK).unwrap(),
                grow_blocks: false,
                ..Default::default()
            },
        )
        .unwrap();
        sim.state.set_heap_budget(1, HEAP);
        for (other, kept) in [(0, 3), (HEAP - 2 * BLOCK, 1)] {
            // The rest of the process uses `other` bytes of the heap: with three blocks of
            // this allocator's, the heap is past its budget in the second round.
            sim.state.set_other_usage(1, other);
            let held: Vec<_> = (0..3 * BLOCK / MIB)
                .map(|_| allocate(&allocator, 1).unwrap())
                .collect();
            assert_eq!(allocator.block_count(1), 3);
            drop(held);
            assert_eq!(
                allocator.block_count(1),
                kept,
                "{other} bytes used by others"
            );
        }
        sim.state.set_other_usage(1, 0);
    }
    sim.assert_nothing_allocated();
}

#[test]
fn with_nothing_kept_a_failed_memory_object_is_not_tried_again() {
    let sim = Sim::new(small_host_heap());
    {
        let allocator = allocator(&sim);
        // The driver refuses the next vkAllocateMemory, once: nothing is kept to release, so
        // the allocation fails there, with one call.
        sim.state.reset_counters();
        sim.state.set_faults(Faults {
            allocate_at: Some((1, vk::Result::ERROR_OUT_OF_DEVICE_MEMORY)),
            ..Default::default()
        });
        let failed = allocator.allocate_dedicated(1, MIB, None, &AllocationCreateInfo::default());
        assert_eq!(failed.err(), Some(AllocationError::OutOfDeviceMemory));
        assert_eq!(sim.state.allocate_calls(), 1, "tried once");
        sim.state.set_faults(Faults::default());
        // With an empty block kept in the heap, the failure releases it and tries again.
        let held: Vec<_> = (0..2 * BLOCK / MIB)
            .map(|_| allocate(&allocator, 1).unwrap())
            .collect();
        drop(held);
        assert_eq!(allocator.block_count(1), 2);
        sim.state.reset_counters();
        sim.state.set_faults(Faults {
            allocate_at: Some((1, vk::Result::ERROR_OUT_OF_DEVICE_MEMORY)),
            ..Default::default()
        });
        let made = allocator.allocate_dedicated(2, MIB, None, &AllocationCreateInfo::default());
        assert!(made.is_ok(), "{made:?}");
        assert_eq!(sim.state.allocate_calls(), 2, "tried again once");
        assert_eq!(allocator.block_count(1), 0);
        sim.state.set_faults(Faults::default());
        drop(made);
    }
    sim.assert_nothing_allocated();
}

/// A large request (more than half a block) takes an empty block kept for reuse that it is
/// large for, instead of a memory object of its own: no `vkAllocateMemory`, no memory
/// beyond what was kept. The driver's preference for a dedicated allocation still gets one.
#[test]
fn a_large_request_reuses_a_kept_block_it_is_large_for() {
    let sim = Sim::new(GpuLayout::nvidia_discrete());
    {
        let allocator = growing_allocator(&sim, 64 * MIB);
        let info = AllocationCreateInfo::default();
        let requirements = |size, prefers_dedicated_allocation| AllocationRequirements {
            layout: DeviceLayout::from_size_alignment(size, 4096).unwrap(),
            memory_type_bits: 1,
            prefers_dedicated_allocation,
            requires_dedicated_allocation: false,
        };
        let allocate = |size, prefers| {
            allocator
                .allocate(
                    requirements(size, prefers),
                    AllocationType::Linear,
                    &info,
                    None,
                )
                .unwrap()
        };
        // A sizable resource first (a block of its own): blocks are cut into arenas of at
        // least four times the largest request seen, so the next ones stay whole.
        let sizable = allocate(20 * MIB, false);
        // 4 MiB objects fill blocks of 8, 16, 32 and 64 MiB; the 64 MiB block's sixteen are
        // freed and the block is kept.
        let mut small: Vec<_> = (0..30).map(|_| allocate(4 * MIB, false)).collect();
        assert_eq!(allocator.block_count(0), 5);
        small.truncate(14);
        assert_eq!(allocator.block_count(0), 5, "the emptied block is kept");
        let reserved = sim.state.heap_used(0);
        sim.state.reset_counters();

        // 40 MiB is large for the 64 MiB block: it takes it.
        let large = allocate(40 * MIB, false);
        assert!(!large.is_dedicated());
        assert_eq!(sim.state.allocate_calls(), 0, "no memory object made");
        assert_eq!(sim.state.heap_used(0), reserved);
        // The block is in use: the next large request gets a memory object of its own.
        let second = allocate(40 * MIB, false);
        assert!(second.is_dedicated());
        assert_eq!(sim.state.allocate_calls(), 1);
        drop((large, second));

        // The driver's preference is kept even with a kept block that fits.
        sim.state.reset_counters();
        let preferred = allocate(40 * MIB, true);
        assert!(preferred.is_dedicated());
        assert_eq!(sim.state.allocate_calls(), 1);
        drop(preferred);
        drop((small, sizable));
    }
    sim.assert_nothing_allocated();
}
