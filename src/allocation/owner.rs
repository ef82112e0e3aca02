//! Where an allocation's range goes back to: its block (through a one-word pointer that costs
//! no reference count per allocation) or a dedicated memory object of its own, in one tagged
//! word ([`Owner`]).

use super::AllocationMeta;
use crate::device_memory::MemoryObject;
use crate::layout::DeviceSize;
use crate::suballocator::{AllocationType, Suballocation, SuballocationHandle};
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
    /// The owner's [`ArenaLink`]: its own pointer to itself.
    fn link(&self) -> &ArenaLink;
}

/// An arena's pointer to itself as a [`BlockOwner`], kept in the arena: an allocation points
/// to this link (one word) instead of holding the two-word `dyn BlockOwner` pointer itself.
/// Made once, when the arena is made (see [`BlockRef`]).
pub(crate) struct ArenaLink(*const dyn BlockOwner);

// SAFETY: the link is a shared pointer to a `BlockOwner: Send + Sync`, only read.
unsafe impl Send for ArenaLink {}
// SAFETY: as above.
unsafe impl Sync for ArenaLink {}

impl ArenaLink {
    /// The link of the owner that lives (or is about to live) at `owner` in an `Arc`.
    ///
    /// # Safety
    ///
    /// `owner` is the address of the value, in an `Arc`, that keeps this link (its
    /// [`BlockOwner::link`]): allocations reach their owner, and give back its reference,
    /// through it.
    pub(crate) unsafe fn new(owner: *const dyn BlockOwner) -> Self {
        Self(owner)
    }
}

/// An allocation's pointer to its block owner: one word, which costs no reference count per
/// allocation.
///
/// It points to the owner's [`ArenaLink`], which the owner keeps in itself: the allocation
/// reaches the owner through the link, so that a `MemoryAlloc` holds one word for its block
/// where a `dyn BlockOwner` pointer takes two (allocations are kept by the user, often many of
/// them, and moved on every allocation).
///
/// The live allocations of an owner together hold *one* strong reference to its `Arc`: the
/// allocation that makes the owner's count of live allocations go from 0 to 1 is created with
/// [`first`](Self::first), which leaks a clone of the `Arc`; the others with
/// [`another`](Self::another), which only takes the link's address. The free that brings the
/// count back to 0 (the owner's [`free`](BlockOwner::free) returns `true`) gives that
/// reference back with [`release`](Self::release). The count is kept by the owner under its
/// lock, so while any allocation of the owner lives the reference is held and the pointer is
/// valid. Saving the atomic increment and decrement of every allocation matters on the hot
/// path (about 10 ns per allocate and free).
#[derive(Clone, Copy)]
pub(crate) struct BlockRef(NonNull<ArenaLink>);

// SAFETY: a `BlockRef` is used as a shared reference to the link of a `dyn BlockOwner`, kept
// valid by the protocol above; `ArenaLink` and `BlockOwner` are `Send + Sync`, so sharing and
// sending it across threads is as safe as for `&dyn BlockOwner`.
unsafe impl Send for BlockRef {}
// SAFETY: as above.
unsafe impl Sync for BlockRef {}

impl BlockRef {
    /// The pointer of the allocation that makes `owner`'s live count go from 0 to 1: takes
    /// the allocations' shared strong reference.
    #[inline]
    pub(crate) fn first<T: BlockOwner + 'static>(owner: &Arc<T>) -> Self {
        // Given back by `release`, through the link's pointer to the same owner.
        let _leaked = Arc::into_raw(Arc::clone(owner));
        Self::another(owner)
    }

    /// The pointer of any other allocation of `owner`, made while its live count is above 0.
    #[inline]
    pub(crate) fn another<T: BlockOwner + 'static>(owner: &Arc<T>) -> Self {
        let link = owner.link();
        debug_assert!(std::ptr::addr_eq(link.0, Arc::as_ptr(owner)));
        Self(NonNull::from(link))
    }

    #[inline]
    pub(super) fn get(&self) -> &dyn BlockOwner {
        // SAFETY: `self` belongs to a live allocation, which outlives this borrow.
        unsafe { self.owner_for_allocation() }
    }

    /// The owner, for as long as the allocation this pointer belongs to is borrowed.
    ///
    /// # Safety
    ///
    /// The allocation that holds this pointer is alive for `'a`.
    #[inline]
    unsafe fn owner_for_allocation<'a>(self) -> &'a dyn BlockOwner {
        // SAFETY: the owner, and the link in it, are alive while any of its allocations is
        // (see the type's docs), and the caller's allocation is, for `'a`; the link points
        // to the owner it is kept in.
        unsafe { &*self.0.as_ref().0 }
    }

    /// Gives back the allocations' shared strong reference.
    ///
    /// # Safety
    ///
    /// The owner's `free` just returned `true` for this allocation, which is dead now: the
    /// pointer must not be used afterwards.
    pub(super) unsafe fn release(self) {
        // SAFETY: the owner is still alive (its reference is given back only here), so its
        // link can be read.
        let owner = unsafe { self.0.as_ref().0 };
        // SAFETY: `first` leaked a strong reference through `Arc::into_raw` of the `Arc`
        // whose value the link points to (the same pointer, unsized to `dyn BlockOwner`), and
        // by the caller's contract it is given back once.
        drop(unsafe { Arc::from_raw(owner) });
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

impl Dedicated {
    /// A memory object of its own, registered with its allocator, offered to `keeper` when
    /// the allocation is dropped.
    pub(crate) fn new(
        memory: MemoryObject,
        registration: Registration,
        keeper: Option<Weak<dyn FreedMemoryKeeper>>,
    ) -> Self {
        Self {
            memory: ManuallyDrop::new(memory),
            registration,
            keeper,
        }
    }
}

/// What an allocation that is not a plain block range keeps on the heap (see [`Owner`]): a
/// dedicated memory object, or a block range with a metadata record; and its type.
pub(crate) struct Extended {
    pub(super) place: Place,
    pub(super) allocation_type: AllocationType,
    pub(super) meta: Option<Arc<AllocationMeta>>,
    /// The allocation's size, whole (the `MemoryAlloc` keeps it in 32 bits when it fits).
    pub(super) size: DeviceSize,
    /// The block suballocator's handle, whole (as the size).
    pub(super) handle: SuballocationHandle,
}

/// Where an [`Extended`] allocation's range lives.
pub(crate) enum Place {
    /// A range of a shared block (the rest of the suballocation is in the `MemoryAlloc`).
    Block(BlockRef),
    /// A memory object of its own.
    Dedicated(Dedicated),
}

/// Where an allocation's memory comes from, in one tagged word. A plain block range (no
/// metadata record: the hot path) is its [`BlockRef`] with the allocation type in the low
/// two bits (1 to 3: the word is never the pointer alone); anything else (a dedicated
/// memory object, or a range with a name, user data, debug aids or an identity) is a boxed
/// [`Extended`], untagged. Both pointees are aligned to at least 4 bytes, so the two low
/// bits are free. Never null: the niche of `Option<MemoryAlloc>`.
pub(crate) struct Owner(NonNull<u8>);

/// The two low bits of an [`Owner`] word.
const TAG_MASK: usize = 0b11;

const _: () = assert!(std::mem::align_of::<ArenaLink>() > TAG_MASK);
const _: () = assert!(std::mem::align_of::<Extended>() > TAG_MASK);

// SAFETY: an `Owner` is a `BlockRef` or a `Box<Extended>`, both `Send + Sync` (checked just
// below); the word is only a way to hold either.
unsafe impl Send for Owner {}
// SAFETY: as above.
unsafe impl Sync for Owner {}

const _: fn() = || {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<BlockRef>();
    send_sync::<Box<Extended>>();
};

/// An [`Owner`] read back.
pub(crate) enum OwnerView<'a> {
    /// A plain block range of this type.
    Plain(BlockRef, AllocationType),
    /// Anything else.
    Extended(&'a Extended),
}

impl Owner {
    /// A plain block range: no metadata record.
    #[inline]
    pub(crate) fn plain(block: BlockRef, allocation_type: AllocationType) -> Self {
        let tag = match allocation_type {
            AllocationType::Unknown => 1,
            AllocationType::Linear => 2,
            AllocationType::NonLinear => 3,
        };
        let tagged = block.0.as_ptr().cast::<u8>().wrapping_add(tag);
        // SAFETY: the link is aligned past the tag bits (see above), so adding the tag only
        // sets them (keeping the pointer's provenance), and the result is not null.
        Self(unsafe { NonNull::new_unchecked(tagged) })
    }

    /// Anything else, on the heap: the range in `place`, its type, its record, its size and
    /// its suballocator's handle.
    pub(crate) fn extended(
        place: Place,
        allocation_type: AllocationType,
        meta: Option<Arc<AllocationMeta>>,
        size: DeviceSize,
        handle: SuballocationHandle,
    ) -> Self {
        let extended = Box::new(Extended {
            place,
            allocation_type,
            meta,
            size,
            handle,
        });
        // A leaked box is never null; it is given back in `drop`.
        Self(NonNull::from(Box::leak(extended)).cast())
    }

    #[inline]
    fn tag(&self) -> usize {
        self.0.as_ptr() as usize & TAG_MASK
    }

    /// What the word holds.
    #[inline]
    pub(crate) fn view(&self) -> OwnerView<'_> {
        let tag = self.tag();
        if tag == 0 {
            // SAFETY: an untagged word is a leaked `Box<Extended>`, owned by `self` and
            // given back only in `drop`.
            return OwnerView::Extended(unsafe { self.0.cast::<Extended>().as_ref() });
        }
        let allocation_type = match tag {
            1 => AllocationType::Unknown,
            2 => AllocationType::Linear,
            _ => AllocationType::NonLinear,
        };
        let link = self.0.as_ptr().wrapping_sub(tag).cast::<ArenaLink>();
        // SAFETY: clearing the tag bits gives back the link's pointer that `plain` tagged,
        // which is not null.
        OwnerView::Plain(
            BlockRef(unsafe { NonNull::new_unchecked(link) }),
            allocation_type,
        )
    }

    /// Where the range lives: the owner of its block, or its own memory object.
    #[inline]
    pub(crate) fn place(&self) -> Result<&dyn BlockOwner, &Dedicated> {
        let block = match self.view() {
            OwnerView::Plain(block, _) => block,
            OwnerView::Extended(e) => match &e.place {
                Place::Block(block) => *block,
                Place::Dedicated(d) => return Err(d),
            },
        };
        // SAFETY: `self` is the owner word of the allocation `block` belongs to, borrowed for
        // the result's lifetime.
        Ok(unsafe { block.owner_for_allocation() })
    }

    /// The boxed part, if any.
    pub(crate) fn extended_mut(&mut self) -> Option<&mut Extended> {
        if self.tag() != 0 {
            return None;
        }
        // SAFETY: as in `view`, and `&mut self` makes the access exclusive.
        Some(unsafe { self.0.cast::<Extended>().as_mut() })
    }
}

impl Drop for Owner {
    // Inline: for a plain block range (the hot path) this is one test.
    #[inline]
    fn drop(&mut self) {
        if self.tag() == 0 {
            self.drop_extended();
        }
    }
}

impl Owner {
    #[cold]
    fn drop_extended(&mut self) {
        // SAFETY: an untagged word is the box leaked in `extended`, given back once, here
        // (only `Drop::drop` calls this).
        drop(unsafe { Box::from_raw(self.0.cast::<Extended>().as_ptr()) });
    }
}
