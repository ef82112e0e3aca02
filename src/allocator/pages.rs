//! Several allocations at once, all or nothing (VMA's `vmaAllocateMemoryPages`): the pages of
//! a sparse resource.
//!
//! See [`MemoryAllocator::allocate_pages`] for binding them to a sparse resource.

use super::{AllocationCreateInfo, AllocationError, AllocationRequirements, MemoryAllocator};
use crate::allocation::MemoryAlloc;
use crate::layout::DeviceSize;
use crate::suballocator::AllocationType;

/// See [`MemoryAllocator::allocate_pages`].
pub(super) fn allocate_pages<A: MemoryAllocator + ?Sized>(
    allocator: &A,
    requirements: AllocationRequirements,
    allocation_type: AllocationType,
    create_info: &AllocationCreateInfo,
    count: usize,
) -> Result<Vec<MemoryAlloc>, AllocationError> {
    if count == 0 {
        return Ok(Vec::new());
    }
    // Pages that add up to more than every heap they may go to can never all be allocated:
    // refused before the first one (a huge count would otherwise run until the heaps are
    // full).
    // (Bits that name no memory type leave no heap: the first page's own error says so.)
    let heaps = heaps_of(allocator, requirements.memory_type_bits);
    let total = requirements.layout.size().checked_mul(count as DeviceSize);
    if heaps > 0 && total.is_none_or(|total| total > heaps) {
        return Err(AllocationError::OutOfDeviceMemory);
    }
    // The first page before the room for all of them: it names any problem of the request
    // itself before a reservation for `count` pages could fail first.
    let first = allocator.allocate(requirements, allocation_type, create_info, None)?;
    let mut pages = Vec::new();
    pages
        .try_reserve_exact(count)
        .map_err(|_| AllocationError::OutOfHostMemory)?;
    pages.push(first);
    for _ in 1..count {
        // On failure `pages` is dropped here: the pages taken so far are freed again.
        pages.push(allocator.allocate(requirements, allocation_type, create_info, None)?);
    }
    Ok(pages)
}

/// The bytes of all heaps that the memory types of `memory_type_bits` live in, each heap
/// counted once: no set of allocations of those types holds more.
fn heaps_of<A: MemoryAllocator + ?Sized>(allocator: &A, memory_type_bits: u32) -> DeviceSize {
    let props = allocator.device().memory_properties();
    let mut heaps = 0u64;
    for (index, t) in props.memory_types.iter().enumerate().take(32) {
        if memory_type_bits & (1 << index) != 0 && t.heap_index < 64 {
            heaps |= 1 << t.heap_index;
        }
    }
    props
        .memory_heaps
        .iter()
        .enumerate()
        .filter(|&(i, _)| i < 64 && heaps & (1 << i) != 0)
        .fold(0, |sum: DeviceSize, (_, h)| sum.saturating_add(h.size))
}
