//! The block vectors' memory seam, implemented for the driver's memory objects: a block of
//! the allocator is a [`MemoryObject`], and its arenas are what an allocation's range goes
//! back to ([`BlockOwner`]). The block vectors themselves know only the
//! [`BlockMemory`] trait, so that their tests run on a stand-in.

use super::block_vec::{Arena, BlockMemory, BlockVec};
use super::AllocationError;
use crate::allocation::{AllocationMeta, ArenaLink, BlockOwner, BlockRef, FreedMemoryKeeper};
use crate::device::MemoryDevice;
use crate::device_memory::{MemoryObject, MemoryObjectCreateInfo, MemoryObjectError};
use crate::layout::DeviceSize;
use crate::suballocator::{Suballocation, Suballocator};
use std::sync::Arc;

/// The block vector of one memory type or custom pool: blocks of driver memory.
pub(crate) type DeviceBlockVec<S> = BlockVec<S, MemoryObject>;

impl BlockMemory for MemoryObject {
    type Link = ArenaLink;

    unsafe fn link<S: Suballocator + Send + 'static>(arena: *const Arena<S, Self>) -> ArenaLink {
        // SAFETY: forwarded from the caller (the contract is the same).
        unsafe { ArenaLink::new(arena as *const dyn BlockOwner) }
    }

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

    #[inline]
    fn link(&self) -> &ArenaLink {
        Arena::link(self)
    }

    unsafe fn free(&self, suballocation: Suballocation) -> bool {
        // SAFETY: forwarded from the caller (the `BlockOwner::free` contract is the same).
        unsafe { Arena::free(self, suballocation) }
    }
}

impl<S: Suballocator + Send + 'static> FreedMemoryKeeper for DeviceBlockVec<S> {
    fn keep(self: Arc<Self>, memory: MemoryObject) -> Option<MemoryObject> {
        self.adopt_emptied(memory)
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

/// Releases the empty blocks kept for reuse in a heap (see
/// [releasing](super::block_vec#releasing)); returns how many it released.
pub(super) type ReleaseKept = Box<dyn Fn() -> usize + Send + Sync>;

/// A memory object made from `info`. When its heap is out of memory or of budget, `release`
/// gives back the empty blocks kept for reuse in that heap, and the allocation is tried once
/// more if any were released: kept memory never makes an allocation fail.
pub(super) fn allocate_releasing_kept(
    device: &Arc<MemoryDevice>,
    info: &MemoryObjectCreateInfo,
    release: impl Fn() -> usize,
) -> Result<MemoryObject, AllocationError> {
    match MemoryObject::allocate(device.clone(), info) {
        Err(MemoryObjectError::OutOfDeviceMemory | MemoryObjectError::Budget(_))
            if release() > 0 =>
        {
            Ok(MemoryObject::allocate(device.clone(), info)?)
        }
        made => Ok(made?),
    }
}
