//! Where an allocation's range goes back to: its block (through a pointer that costs no
//! reference count per allocation) or a dedicated memory object of its own.

use super::AllocationMeta;
use crate::device_memory::MemoryObject;
use crate::layout::DeviceSize;
use crate::suballocator::{Suballocation, SuballocationHandle};
use std::mem::ManuallyDrop;
use std::ptr::NonNull;
use std::sync::{Arc, Weak};

/// The block side of an allocation: where its range goes back to.
///
/// Implemented by a type that lives in an `Arc` and counts its live allocations itself, under
/// its own lock: see [`BlockRef`] for how the allocations keep it alive.
pub(crate) trait BlockOwner: Send + Sync {
    /// The block's memory.
    fn memory(&self) -> &MemoryObject;
    /// Returns `suballocation` to the block, and says whether that was the last live
    /// allocation of this owner (the caller then calls [`BlockRef::release`]).
    ///
    /// # Safety
    ///
    /// `suballocation` came from this block and is returned once.
    unsafe fn free(&self, suballocation: Suballocation) -> bool;
    /// Sets (`Some`) or forgets (`None`) the metadata record of the allocation at `offset`
    /// (called only for allocations that have or had one).
    fn set_meta(&self, offset: DeviceSize, meta: Option<Arc<AllocationMeta>>);
    /// How many metadata records the block has lost so far: while the count stays, each
    /// record it keeps stands for the same allocation.
    fn removals(&self) -> u64;
}

/// An allocation's pointer to its block owner, which costs no reference count per
/// allocation.
///
/// The live allocations of an owner together hold *one* strong reference to its `Arc`: the
/// allocation that makes the owner's count of live allocations go from 0 to 1 is created with
/// [`first`](Self::first), which leaks a clone of the `Arc` into the pointer; the others
/// with [`another`](Self::another), which only copies the pointer. The free that brings the
/// count back to 0 (the owner's [`free`](BlockOwner::free) returns `true`) gives that
/// reference back with [`release`](Self::release). The count is kept by the owner under its
/// lock, so while any allocation of the owner lives the reference is held and the pointer is
/// valid. Saving the atomic increment and decrement of every allocation matters on the hot
/// path (about 10 ns per allocate and free).
pub(crate) struct BlockRef(NonNull<dyn BlockOwner>);

// SAFETY: a `BlockRef` is used as a shared reference to a `dyn BlockOwner`, kept valid by the
// protocol above; `BlockOwner: Send + Sync`, so sharing and sending it across threads is as
// safe as for `&dyn BlockOwner` (the `Arc` it stands for is `Send + Sync` too).
unsafe impl Send for BlockRef {}
// SAFETY: as above.
unsafe impl Sync for BlockRef {}

impl BlockRef {
    /// The pointer of the allocation that makes `owner`'s live count go from 0 to 1: takes
    /// the allocations' shared strong reference.
    pub(crate) fn first<T: BlockOwner + 'static>(owner: &Arc<T>) -> Self {
        let raw: *const dyn BlockOwner = Arc::into_raw(owner.clone() as Arc<dyn BlockOwner>);
        // SAFETY: `Arc::into_raw` never returns null.
        Self(unsafe { NonNull::new_unchecked(raw.cast_mut()) })
    }

    /// The pointer of any other allocation of `owner`, made while its live count is above 0.
    pub(crate) fn another<T: BlockOwner + 'static>(owner: &Arc<T>) -> Self {
        let raw: *const dyn BlockOwner = Arc::as_ptr(owner) as *const dyn BlockOwner;
        // SAFETY: `Arc::as_ptr` never returns null.
        Self(unsafe { NonNull::new_unchecked(raw.cast_mut()) })
    }

    #[inline]
    pub(super) fn get(&self) -> &dyn BlockOwner {
        // SAFETY: the owner is alive while any of its allocations is (see the type's docs),
        // and `self` belongs to a live allocation.
        unsafe { self.0.as_ref() }
    }

    /// Gives back the allocations' shared strong reference.
    ///
    /// # Safety
    ///
    /// The owner's `free` just returned `true` for this allocation, which is dead now: the
    /// pointer must not be used afterwards.
    pub(super) unsafe fn release(&self) {
        // SAFETY: the reference was leaked by `first` through `Arc::into_raw` of an
        // `Arc<dyn BlockOwner>` with this very pointer, and by the caller's contract it is
        // given back once.
        drop(unsafe { Arc::from_raw(self.0.as_ptr().cast_const()) });
    }
}

/// Whoever keeps a register of dedicated allocations (for statistics and leak reports): told
/// when one is gone.
pub(crate) trait DedicatedRegister: Send + Sync {
    /// The dedicated allocation registered as `id` is being dropped.
    fn forget(&self, id: u64);
    /// The dedicated allocation registered as `id` has new metadata.
    fn set_meta(&self, id: u64, meta: Option<Arc<AllocationMeta>>);
}

/// A dedicated allocation's entry in a [`DedicatedRegister`].
pub(crate) struct Registration {
    pub(crate) register: Arc<dyn DedicatedRegister>,
    pub(crate) id: u64,
}

/// Where the memory object of a dedicated allocation the allocator chose to make may stay
/// when the allocation is dropped: its memory type's block vector, which keeps it as an
/// empty block where its rule for emptied blocks would (see the block vectors' docs,
/// "Releasing").
pub(crate) trait FreedMemoryKeeper: Send + Sync {
    /// `memory`'s allocation is gone (and no longer counted as the memory type's memory in
    /// use): keeps it as an empty block, or hands it back to be freed.
    fn keep(self: Arc<Self>, memory: MemoryObject) -> Option<MemoryObject>;
}

/// A memory object of its own, with its registration for statistics.
pub(crate) struct Dedicated {
    /// Taken only by `drop`.
    pub(super) memory: ManuallyDrop<MemoryObject>,
    pub(super) registration: Registration,
    /// Offered the memory object when the allocation is dropped (weak: the allocator may be
    /// gone by then, and the object is freed).
    pub(super) keeper: Option<Weak<dyn FreedMemoryKeeper>>,
}

impl Drop for Dedicated {
    fn drop(&mut self) {
        // First out of the register, so that the keeper no longer counts it in use.
        self.registration.register.forget(self.registration.id);
        // SAFETY: `memory` is taken once, here, and `self` is not used after `drop`.
        let memory = unsafe { ManuallyDrop::take(&mut self.memory) };
        let back = match self.keeper.as_ref().and_then(Weak::upgrade) {
            Some(keeper) => keeper.keep(memory),
            None => Some(memory),
        };
        // Not kept: freed here.
        drop(back);
    }
}

/// Where an allocation's memory comes from. Kept small (three words): `MemoryAlloc`s are
/// stored by the user, often many of them, and moved on every allocation.
pub(crate) enum Owner {
    /// A memory object of its own (boxed: dedicated allocations are rare and large).
    Dedicated(Box<Dedicated>),
    /// A range of a shared block; the rest of the suballocation is in the `MemoryAlloc`.
    Block {
        block: BlockRef,
        handle: SuballocationHandle,
    },
}

impl Owner {
    /// A block range.
    pub(crate) fn block(block: BlockRef, handle: SuballocationHandle) -> Self {
        Self::Block { block, handle }
    }

    /// A dedicated memory object, registered with its allocator, offered to `keeper` when
    /// the allocation is dropped.
    pub(crate) fn dedicated(
        memory: MemoryObject,
        registration: Registration,
        keeper: Option<Weak<dyn FreedMemoryKeeper>>,
    ) -> Self {
        Self::Dedicated(Box::new(Dedicated {
            memory: ManuallyDrop::new(memory),
            registration,
            keeper,
        }))
    }
}
