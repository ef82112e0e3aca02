//! Several allocations at once, all or nothing (VMA's `vmaAllocateMemoryPages`): the pages of
//! a sparse resource.
//!
//! See [`MemoryAllocator::allocate_pages`] for binding them to a sparse resource.

use super::{AllocationCreateInfo, AllocationError, AllocationRequirements, MemoryAllocator};
use crate::allocation::MemoryAlloc;
use crate::suballocator::AllocationType;

/// See [`MemoryAllocator::allocate_pages`].
pub(super) fn allocate_pages<A: MemoryAllocator + ?Sized>(
    allocator: &A,
    requirements: AllocationRequirements,
    allocation_type: AllocationType,
    create_info: &AllocationCreateInfo,
    count: usize,
) -> Result<Vec<MemoryAlloc>, AllocationError> {
    let mut pages = Vec::new();
    pages
        .try_reserve_exact(count)
        .map_err(|_| AllocationError::OutOfHostMemory)?;
    for _ in 0..count {
        // On failure `pages` is dropped here: the pages taken so far are freed again.
        pages.push(allocator.allocate(requirements, allocation_type, create_info, None)?);
    }
    Ok(pages)
}
