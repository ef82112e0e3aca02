//! The defragmentation tests' common setup: a host-visible pool of whole 1 MiB blocks,
//! patterned allocations in it, and a move copied on the host and completed.

use super::{fill, MIB};
use ash_memory::allocator::defrag::DefragmentationError;
use ash_memory::*;

/// Host-visible memory for the application's allocations.
pub fn upload() -> AllocationCreateInfo {
    AllocationCreateInfo {
        usage: MemoryUsage::Upload,
        ..Default::default()
    }
}

/// The requirements of a buffer of `size` bytes at 256-byte alignment, any memory type.
pub fn reqs(device: &MemoryDevice, size: u64) -> AllocationRequirements {
    AllocationRequirements {
        layout: DeviceLayout::from_size_alignment(size, 256).unwrap(),
        memory_type_bits: device.memory_properties().all_types_mask(),
        prefers_dedicated_allocation: false,
        requires_dedicated_allocation: false,
    }
}

/// The alignment every registration is added with.
pub fn align() -> DeviceAlignment {
    DeviceAlignment::new(256).unwrap()
}

/// A host-visible pool of whole (one-arena) 1 MiB blocks, at most `max_blocks` of them.
pub fn pool(
    allocator: &StandardMemoryAllocator,
    max_blocks: usize,
) -> MemoryPool<FreeListAllocator> {
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
pub fn patterned(
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

/// Copies a move's source into its destination on the host and completes it.
pub fn copy_and_complete<S: Suballocator + Send + 'static>(
    pass: &mut DefragmentationPass<'_, S>,
    index: usize,
    source: &mut MemoryAlloc,
) -> Result<(), DefragmentationError> {
    let size = pass.get(index).unwrap().size();
    let mut bytes = vec![0; size as usize];
    source.read(0, &mut bytes).unwrap();
    let dst = pass.get(index).unwrap().destination();
    let ptr = dst.mapped_ptr().unwrap();
    // SAFETY: `size` bytes inside the destination, which nothing else uses until completed.
    unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), ptr.as_ptr(), bytes.len()) };
    dst.flush(0, size).unwrap();
    pass.complete(index, source)
}

/// The indices of a pass's open moves.
pub fn open<S: Suballocator + Send + 'static>(pass: &DefragmentationPass<'_, S>) -> Vec<usize> {
    pass.moves().map(|m| m.index()).collect()
}
