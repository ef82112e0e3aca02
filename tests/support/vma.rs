//! Helpers shared by the ports of VMA's test scenarios (`tests/vma_*.rs`): host-visible
//! pools on the lavapipe layout and patterned allocations in them.

use super::{fill, verify};
use ash_memory::*;

/// Host-visible memory for the application's data.
pub fn upload() -> AllocationCreateInfo {
    AllocationCreateInfo {
        usage: MemoryUsage::Upload,
        ..Default::default()
    }
}

/// The requirements of `size` bytes at `alignment`, of any memory type.
pub fn reqs(device: &MemoryDevice, size: u64, alignment: u64) -> AllocationRequirements {
    AllocationRequirements {
        layout: DeviceLayout::from_size_alignment(size, alignment).unwrap(),
        memory_type_bits: device.memory_properties().all_types_mask(),
        prefers_dedicated_allocation: false,
        requires_dedicated_allocation: false,
    }
}

/// A host-visible pool of `S` on the lavapipe layout.
pub fn host_pool<S: Suballocator + Send + Sync + 'static>(
    allocator: &StandardMemoryAllocator,
    block_size: u64,
    min_block_count: usize,
    max_block_count: usize,
) -> MemoryPool<S> {
    allocator
        .create_pool::<S>(&PoolCreateInfo {
            name: Some("vma scenario".into()),
            memory_type: PoolMemoryType::Find {
                memory_type_bits: u32::MAX,
                usage: MemoryUsage::Upload,
            },
            block_size,
            min_block_count,
            max_block_count,
            block_arenas: Some(1),
            ..Default::default()
        })
        .unwrap()
}

/// One live allocation: the allocation, its pattern seed and its size.
pub type Patterned = (MemoryAlloc, u64, u64);

pub fn patterned(
    pool: &dyn MemoryAllocator,
    device: &MemoryDevice,
    size: u64,
    seed: u64,
) -> Patterned {
    patterned_at(pool, device, size, 256, seed)
}

/// [`patterned`] at `alignment`.
pub fn patterned_at(
    pool: &dyn MemoryAllocator,
    device: &MemoryDevice,
    size: u64,
    alignment: u64,
    seed: u64,
) -> Patterned {
    let mut a = pool
        .allocate(
            reqs(device, size, alignment),
            AllocationType::Linear,
            &upload(),
            None,
        )
        .unwrap_or_else(|e| panic!("allocation {seed} of {size} bytes: {e}"));
    fill(&mut a, seed, size);
    (a, seed, size)
}

pub fn verify_all(live: &[Patterned], what: &str) {
    for (a, seed, size) in live {
        verify(a, *seed, *size, what);
    }
}

/// The statistics of the one custom pool of `allocator`.
pub fn pool_statistics(allocator: &StandardMemoryAllocator) -> Statistics {
    let stats = allocator.statistics();
    assert_eq!(stats.pools.len(), 1, "{:?}", stats.pools);
    stats.pools[0].statistics
}
