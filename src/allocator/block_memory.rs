//! The block vectors' memory seam, implemented for the driver's memory objects: a block of
//! the allocator is a [`MemoryObject`], and its arenas are what an allocation's range goes
//! back to ([`BlockOwner`]). The block vectors themselves know only the
//! [`BlockMemory`] trait, so that their tests run on a stand-in.

use super::block_vec::{Arena, BlockMemory, BlockVec};
use crate::allocation::{AllocationMeta, BlockOwner, BlockRef};
use crate::device_memory::MemoryObject;
use crate::layout::DeviceSize;
use crate::suballocator::{Suballocation, Suballocator};
use std::sync::Arc;

/// The block vector of one memory type or custom pool: blocks of driver memory.
pub(crate) type DeviceBlockVec<S> = BlockVec<S, MemoryObject>;

impl BlockMemory for MemoryObject {
    #[inline]
    fn size(&self) -> DeviceSize {
        MemoryObject::size(self)
    }

    fn heap_within_budget(&self) -> bool {
        let (used, budget) = crate::budget::heap_load(self.device(), self.heap_index());
        used < budget
    }
}

impl<S: Suballocator + Send + 'static> BlockOwner for Arena<S, MemoryObject> {
    fn memory(&self) -> &MemoryObject {
        Arena::memory(self)
    }

    fn set_meta(&self, offset: DeviceSize, meta: Option<Arc<AllocationMeta>>) {
        Arena::set_meta(self, offset, meta);
    }

    fn removals(&self) -> u64 {
        Arena::removals(self)
    }

    unsafe fn free(&self, suballocation: Suballocation) -> bool {
        // SAFETY: forwarded from the caller (the `BlockOwner::free` contract is the same).
        unsafe { Arena::free(self, suballocation) }
    }
}

/// Creates the pointer an allocation keeps to its arena: the shared strong reference when the
/// allocation is the arena's only live one (see [`BlockRef`]).
#[inline]
pub(crate) fn block_ref<S: Suballocator + Send + 'static>(
    arena: &Arc<Arena<S, MemoryObject>>,
    first: bool,
) -> BlockRef {
    if first {
        BlockRef::first(arena)
    } else {
        BlockRef::another(arena)
    }
}
