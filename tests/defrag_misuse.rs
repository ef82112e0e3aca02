//! Defragmentation against misuse and reuse, on the driver: what the application may do
//! through the safe API between and during passes never makes a pass plan a freed
//! allocation, lose bytes, or leave the allocator's accounts wrong.

mod common;
mod support;

use ash_memory::*;
use support::{fill, verify, GpuLayout, Sim, KIB, MIB};

fn upload() -> AllocationCreateInfo {
    AllocationCreateInfo {
        usage: MemoryUsage::Upload,
        ..Default::default()
    }
}

fn reqs(device: &MemoryDevice, size: u64) -> AllocationRequirements {
    AllocationRequirements {
        layout: DeviceLayout::from_size_alignment(size, 256).unwrap(),
        memory_type_bits: device.memory_properties().all_types_mask(),
        prefers_dedicated_allocation: false,
        requires_dedicated_allocation: false,
    }
}

fn align() -> DeviceAlignment {
    DeviceAlignment::new(256).unwrap()
}

/// A host-visible pool of whole (one-arena) 1 MiB blocks, at most `max_blocks` of them.
fn pool(allocator: &StandardMemoryAllocator, max_blocks: usize) -> MemoryPool<FreeListAllocator> {
    allocator
        .create_pool::<FreeListAllocator>(&PoolCreateInfo {
            memory_type: PoolMemoryType::Find {
                memory_type_bits: u32::MAX,
                usage: MemoryUsage::Upload,
            },
            block_size: MIB,
            max_block_count: max_blocks,
            block_arenas: Some(1),
            ..Default::default()
        })
        .unwrap()
}

/// A patterned allocation of `size` bytes (pattern `seed`).
fn patterned(
    pool: &dyn MemoryAllocator,
    device: &MemoryDevice,
    size: u64,
    seed: u64,
) -> MemoryAlloc {
    let mut a = pool
        .allocate(reqs(device, size), AllocationType::Linear, &upload(), None)
        .unwrap();
    fill(&mut a, seed, size);
    a
}

#[test]
fn a_registration_whose_block_was_released_is_never_planned_in_a_new_block_of_its_handle() {
    // Registered allocations freed, their blocks released, and new blocks made that the
    // driver gives the same memory handles (drivers reuse freed handles; the validation
    // layer's handle wrapping is off here so that lavapipe's show): the allocations made
    // there, at the freed ones' offsets, are not the registered ones.
    const BLOCKS: u64 = 12;
    let sim = Sim::with_reused_handles(GpuLayout::amd_discrete_bar());
    let allocator = StandardMemoryAllocator::new_default(sim.memory_device());
    let device = sim.memory_device();
    let pool = pool(&allocator, 32);
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
    const BLOCKS: u64 = 12;
    let sim = Sim::with_reused_handles(GpuLayout::amd_discrete_bar());
    let allocator = StandardMemoryAllocator::new_default(sim.memory_device());
    let device = sim.memory_device();
    let ours = pool(&allocator, 32);
    let theirs = pool(&allocator, 32);
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
