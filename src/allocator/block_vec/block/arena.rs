//! An arena: one independently locked part of a block (see [arenas](super#arenas)), with
//! its suballocator, its search hints, and the counts that decide when its block is in use.

use super::{BlockMemory, BlockShared};
use crate::allocation::AllocationMeta;
use crate::allocator::block_vec::failed_request::FailedRequest;
use crate::allocator::block_vec::spin_lock::SpinMutex;
use crate::layout::{DeviceAlignment, DeviceLayout, DeviceSize};
use crate::suballocator::{
    AllocationType, RangeInfo, RangeKind, Suballocation, Suballocator, SuballocatorError,
};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};

/// What an arena's lock guards: the suballocator and the arena's own count of live allocations. The
/// count, not the suballocator's `allocation_count` (a trait users may implement), decides when the
/// allocations' shared reference to the arena is taken and given back (see
/// [`BlockRef`](crate::allocation::BlockRef)), so a suballocator that miscounts cannot free an
/// arena that is still in use.
struct Guarded<S> {
    sub: S,
    live: usize,
    /// The block is set aside by a defragmentation: a thread's [fast
    /// try](crate::allocator::block_vec::fast) must not allocate here (the walks do not see the
    /// block).
    closed: bool,
}

/// An arena's pointer to its block's shared part (memory, metadata): not a counted reference,
/// because a thread's [fast try](crate::allocator::block_vec::fast) keeps arenas past their block,
/// and must not keep the block's memory alive with them. The shared part lives while
/// - the block has a handle ([`Block`](super::Block): the vector's list, its set-aside list, a
///   copy a walker or a release holds), or
/// - the block holds an allocation: when its count of busy arenas leaves zero, the
///   allocation that made it so takes one strong reference for all of the block's
///   allocations, and the free that brings the count back to zero gives it back
///   ([`Arena::try_allocate`], [`Arena::free`]).
///
/// So an arena reads its block's shared part only where its caller holds a handle of the
/// block or a live allocation in it; the fast try reads it nowhere.
struct SharedPtr<S, M: BlockMemory>(NonNull<BlockShared<S, M>>);

// SAFETY: a `SharedPtr` is used as a `&BlockShared` (see above), and `BlockShared` is `Send +
// Sync` for the suballocators the block vectors hold (`S: Send`; `M: Send + Sync` by
// `BlockMemory`; the rest are locks, atomics and a weak handle of the vector, which an `Arc`
// shares between threads already): sharing or sending the pointer shares the reference.
unsafe impl<S: Send, M: BlockMemory> Send for SharedPtr<S, M> {}
// SAFETY: as for `Send` just above.
unsafe impl<S: Send, M: BlockMemory> Sync for SharedPtr<S, M> {}

// What the two `unsafe impl`s above rely on, checked by the compiler for every `S: Send`.
const _: () = {
    #[allow(dead_code)]
    fn shared_part_is_send_and_sync<S: Send, M: BlockMemory>() {
        fn check<T: Send + Sync>() {}
        check::<BlockShared<S, M>>();
    }
};

/// One independently locked part of a block, allocated on its own behind the reference
/// count that its allocations hold.
///
/// Not over-aligned: that would put the reference count (which `Arc` keeps in front of the
/// value) on a cache line of its own, one more line for every allocation and free. Instead
/// the arena ends in padding, so that the next heap object (often the block's next arena)
/// starts at least 128 bytes (adjacent-line prefetch included) after its last field.
pub(crate) struct Arena<S, M: BlockMemory> {
    suballocator: SpinMutex<Guarded<S>>,
    /// The suballocator's `largest_free_range`, readable without the lock.
    largest_free: AtomicU64,
    /// A mask on the free range the arena publishes: all ones, or 0 in a block kept for large
    /// requests alone ([`BlockOrigin::LargeObject`](super::BlockOrigin::LargeObject)), whose arenas
    /// the searches of existing blocks then pass over (on the same cache line as the bound, and no
    /// branch).
    published: DeviceSize,
    /// The requests that failed here since the last free.
    failed: FailedRequest,
    /// Where the arena starts in the block's memory.
    base: DeviceSize,
    /// Its size in bytes.
    size: DeviceSize,
    /// The home slot of the thread that allocated here last: a hint, read without the lock
    /// (see [`is_filled_by_another`](Self::is_filled_by_another)).
    last_slot: AtomicUsize,
    /// Whether the arena holds a live allocation: set and cleared under the lock where its
    /// count of live allocations leaves and reaches zero, read without the lock (a hint).
    in_use: AtomicBool,
    shared: SharedPtr<S, M>,
    /// The arena's pointer to itself, which its allocations point to (see
    /// [`BlockRef`](crate::allocation::BlockRef)).
    link: M::Link,
    _tail: [u8; 128],
}

/// [`Arena::last_slot`] of an arena no search has allocated in yet.
const NO_SLOT: usize = usize::MAX;

/// A suballocation made in an arena: its range (offsets in the block) and whether it is the
/// arena's only live allocation (then the allocation takes the live allocations' shared
/// reference to the arena, see [`BlockRef::first`](crate::allocation::BlockRef::first)).
pub(crate) struct Placed {
    pub suballocation: Suballocation,
    pub first: bool,
}

impl<S: Suballocator + Send + 'static, M: BlockMemory> Arena<S, M> {
    /// The arena of `size` bytes at `base` in the block whose shared part is `shared`, to
    /// live at `this` (made by `Arc::new_cyclic`); `published` masks the free range it
    /// publishes (see [`published`](Self::published)).
    pub(super) fn new(
        shared: &Arc<BlockShared<S, M>>,
        base: DeviceSize,
        size: DeviceSize,
        published: DeviceSize,
        this: &Weak<Self>,
    ) -> Self {
        Arena {
            suballocator: SpinMutex::new(Guarded {
                sub: S::new(size),
                live: 0,
                closed: false,
            }),
            largest_free: AtomicU64::new(size & published),
            published,
            failed: FailedRequest::default(),
            base,
            size,
            last_slot: AtomicUsize::new(NO_SLOT),
            in_use: AtomicBool::new(false),
            shared: SharedPtr(NonNull::from(&**shared)),
            // SAFETY: `new_cyclic` writes the arena to the address its weak reference has
            // now, and the arena keeps this link.
            link: unsafe { M::link(this.as_ptr()) },
            _tail: [0; 128],
        }
    }

    /// Closes (`true`) or opens the arena to the threads' fast tries, under its lock (see
    /// [`Block::set_closed`](super::Block::set_closed)).
    pub(super) fn set_closed(&self, closed: bool) {
        self.suballocator.lock().closed = closed;
    }

    /// Gives back the suballocator's bookkeeping (its node arrays, learned bounds, and so on)
    /// for that of a new, empty one, under the lock, when the arena holds no allocation: the
    /// arena of a released block, which a thread's [fast try](crate::allocator::block_vec::fast)
    /// may keep until it takes its next copy of the list, then keeps an empty suballocator,
    /// not the largest bookkeeping the block ever needed. An empty suballocator and a new one
    /// serve the same requests, so this changes nothing for a search that still reaches the
    /// arena.
    pub(in crate::allocator::block_vec) fn drop_bookkeeping(&self) {
        let mut guarded = self.suballocator.lock();
        if guarded.live == 0 {
            guarded.sub = S::new(self.size);
            self.publish_largest_free(&guarded.sub);
        }
    }

    /// The suballocator's free bytes, under the lock.
    pub(super) fn free_size(&self) -> DeviceSize {
        self.suballocator.lock().sub.free_size()
    }

    /// Whether the request may fit, judged from the hints without locking: the arena has a
    /// free range as large, no smaller request failed since the last free, and its offset
    /// keeps the alignment.
    #[inline]
    pub(in crate::allocator::block_vec) fn may_fit(
        &self,
        layout: DeviceLayout,
        allocation_type: AllocationType,
    ) -> bool {
        self.largest_free.load(Ordering::Relaxed) >= layout.size()
            && self.may_place(layout, allocation_type)
    }

    /// The hints of [`may_fit`](Self::may_fit) besides the free range: the offset keeps the
    /// alignment, and no smaller request failed since the last free.
    #[inline]
    fn may_place(&self, layout: DeviceLayout, allocation_type: AllocationType) -> bool {
        layout.alignment().is_aligned(self.base)
            && !self.failed.implies_failure(layout, allocation_type)
    }

    /// Allocates under the arena's lock; when `wait` is false and another thread holds the
    /// lock, returns `None` at once. The returned offset is the block's, not the arena's.
    /// The caller holds a handle of the block (see [`SharedPtr`]).
    #[inline(always)]
    pub(in crate::allocator::block_vec) fn try_allocate(
        &self,
        layout: DeviceLayout,
        allocation_type: AllocationType,
        granularity: DeviceAlignment,
        wait: bool,
        strategy: crate::suballocator::AllocationStrategy,
    ) -> Option<Result<Placed, SuballocatorError>> {
        let mut guard = if wait {
            self.suballocator.lock()
        } else {
            self.suballocator.try_lock()?
        };
        Some(self.allocate_locked(&mut guard, layout, allocation_type, granularity, strategy))
    }

    /// [`try_allocate`](Self::try_allocate) without waiting, for a thread's [fast
    /// try](crate::allocator::block_vec::fast), whose caller holds no handle of the block: only
    /// while the arena already holds a live allocation and is not [closed](Guarded::closed), else
    /// `None`. Such an allocation leaves the arena's and the block's counts of allocations above
    /// zero, so it never turns an empty block into one in use, and never reads the block's shared
    /// part: a block that a release found empty stays empty, and one set aside receives nothing
    /// once it is closed.
    #[inline(always)]
    pub(in crate::allocator::block_vec) fn try_allocate_in_use(
        &self,
        layout: DeviceLayout,
        allocation_type: AllocationType,
        granularity: DeviceAlignment,
        strategy: crate::suballocator::AllocationStrategy,
    ) -> Option<Result<Placed, SuballocatorError>> {
        let mut guard = self.suballocator.try_lock()?;
        if guard.live == 0 || guard.closed {
            return None;
        }
        Some(self.allocate_locked(&mut guard, layout, allocation_type, granularity, strategy))
    }

    /// The allocation of [`try_allocate`](Self::try_allocate), under the lock held as `g`.
    #[inline(always)]
    fn allocate_locked(
        &self,
        g: &mut Guarded<S>,
        layout: DeviceLayout,
        allocation_type: AllocationType,
        granularity: DeviceAlignment,
        strategy: crate::suballocator::AllocationStrategy,
    ) -> Result<Placed, SuballocatorError> {
        let result = g
            .sub
            .allocate_with_strategy(layout, allocation_type, granularity, strategy);
        self.publish_largest_free(&g.sub);
        match result {
            Ok(mut suballocation) => {
                suballocation.offset += self.base;
                g.live += 1;
                let first = g.live == 1;
                if first {
                    self.in_use.store(true, Ordering::Relaxed);
                    // Only the callers of `try_allocate` get here (the fast try needs a live
                    // allocation already), and they hold a handle of the block.
                    let shared = self.shared();
                    if shared.busy_arenas.fetch_add(1, Ordering::AcqRel) == 0 {
                        // SAFETY: the caller's handle keeps the shared part alive (its count
                        // is at least one); this is the allocations' reference, given back by
                        // the free that brings the count of busy arenas back to zero.
                        unsafe { Arc::increment_strong_count(self.shared.0.as_ptr()) };
                    }
                }
                Ok(Placed {
                    suballocation,
                    first,
                })
            }
            Err(e) => {
                if FailedRequest::records::<S>(e) {
                    // Recorded under the lock, so a concurrent free (which clears it under the
                    // same lock) cannot be overwritten by a stale failure.
                    self.failed.record(layout, allocation_type);
                }
                Err(e)
            }
        }
    }

    /// The block's shared part. The caller holds a handle of the block or a live allocation
    /// in it (see [`SharedPtr`]).
    #[inline]
    fn shared(&self) -> &BlockShared<S, M> {
        // SAFETY: every caller holds a handle of the block or a live allocation in this arena
        // (each call site says which), and either keeps the shared part alive.
        unsafe { self.shared.0.as_ref() }
    }

    /// The block's memory. The caller holds a live allocation of the arena (or a handle of
    /// its block).
    pub(crate) fn memory(&self) -> &M {
        &self.shared().memory
    }

    /// The arena's pointer to itself (see [`BlockRef`](crate::allocation::BlockRef)).
    #[inline]
    pub(crate) fn link(&self) -> &M::Link {
        &self.link
    }

    /// Remembers (`Some`) or forgets (`None`) the metadata of the allocation at block offset
    /// `offset`.
    /// The caller holds that allocation.
    pub(crate) fn set_meta(&self, offset: DeviceSize, meta: Option<Arc<AllocationMeta>>) {
        let shared = self.shared();
        let mut metas = shared.metas.lock();
        match meta {
            Some(meta) => {
                metas.insert(offset, meta);
            }
            None => {
                metas.remove(&offset);
                shared.removals.fetch_add(1, Ordering::Release);
            }
        }
    }

    /// The block's count of [removed records](BlockShared::removals). The caller holds a
    /// live allocation of the arena.
    pub(crate) fn removals(&self) -> u64 {
        self.shared().removals.load(Ordering::Acquire)
    }

    /// Returns `suballocation` (offsets in the block) to the arena; says whether that was
    /// the arena's last live allocation. When it was the block's last one, releases empty
    /// blocks of the vector as its rule says (only a block that empties can change what the
    /// rule keeps, so frees that leave the block in use skip the vector altogether).
    ///
    /// # Safety
    ///
    /// `suballocation` came from this arena's [`try_allocate`](Self::try_allocate),
    /// unchanged, and is returned once.
    pub(crate) unsafe fn free(&self, mut suballocation: Suballocation) -> bool {
        suballocation.offset -= self.base;
        let (now_empty, block_empty) = {
            let mut guard = self.suballocator.lock();
            let g = &mut *guard;
            // SAFETY: forwarded from the caller: the suballocation came from this arena (its
            // offset moved back from the block's to the arena's, as `try_allocate` moved it)
            // and is returned once.
            unsafe { g.sub.deallocate(suballocation) };
            g.live -= 1;
            self.failed.clear();
            self.publish_largest_free(&g.sub);
            let now_empty = g.live == 0;
            if now_empty {
                self.in_use.store(false, Ordering::Relaxed);
            }
            // Under the arena's lock, as the increment in `try_allocate`: the count never
            // misses an arena's change. The shared part is alive: the allocation being freed
            // holds it (see `SharedPtr`).
            let block_empty =
                now_empty && self.shared().busy_arenas.fetch_sub(1, Ordering::AcqRel) == 1;
            (now_empty, block_empty)
        };
        if block_empty {
            // Still alive here: the allocations' reference to the shared part is given back
            // only below, and the caller holds their reference to the arena until this
            // returns.
            let shared = self.shared();
            if let Some(vec) = shared.vec.upgrade() {
                vec.block_emptied(shared.memory.size());
            }
            // SAFETY: the block's count of busy arenas reached zero here, so this gives back
            // the reference its allocations took when it left zero (`allocate_locked`),
            // once; the shared part is not read below.
            unsafe { Arc::decrement_strong_count(self.shared.0.as_ptr()) };
        }
        now_empty
    }

    /// [`may_fit`](Self::may_fit) for an empty arena, whatever its published bound: the whole
    /// arena is free.
    pub(in crate::allocator::block_vec) fn may_fit_empty(
        &self,
        layout: DeviceLayout,
        allocation_type: AllocationType,
    ) -> bool {
        self.size >= layout.size() && self.may_place(layout, allocation_type)
    }

    /// Publishes the suballocator's bound for lock-free reads, writing only on change so
    /// that threads do not steal the cache line from each other needlessly.
    #[inline(always)]
    fn publish_largest_free(&self, s: &S) {
        let largest = s.largest_free_range() & self.published;
        if self.largest_free.load(Ordering::Relaxed) != largest {
            self.largest_free.store(largest, Ordering::Relaxed);
        }
    }

    /// The published `largest_free_range` of the suballocator (a hint, read without the
    /// lock).
    #[inline]
    pub(crate) fn largest_free_hint(&self) -> DeviceSize {
        self.largest_free.load(Ordering::Relaxed)
    }

    /// Records that a thread of home slot `slot` allocated here (a store only when the slot
    /// changes, so a thread allocating in its own home writes nothing more).
    #[inline]
    pub(in crate::allocator::block_vec) fn note_slot(&self, slot: usize) {
        if self.last_slot.load(Ordering::Relaxed) != slot {
            self.last_slot.store(slot, Ordering::Relaxed);
        }
    }

    /// Whether the arena holds a live allocation (a hint, read without the lock).
    #[inline]
    pub(in crate::allocator::block_vec) fn in_use_hint(&self) -> bool {
        self.in_use.load(Ordering::Relaxed)
    }

    /// Whether a thread of another home slot than `slot` allocated here last.
    #[inline]
    pub(in crate::allocator::block_vec) fn last_used_by_another(&self, slot: usize) -> bool {
        let last = self.last_slot.load(Ordering::Relaxed);
        last != slot && last != NO_SLOT
    }

    /// Whether a thread of another home slot than `slot` allocated here last and the arena is
    /// more than half full: by the hints, another thread is filling it. (An arena that only
    /// a defragmentation moved allocations into has no slot: no thread is filling it.)
    #[inline]
    pub(in crate::allocator::block_vec) fn is_filled_by_another(&self, slot: usize) -> bool {
        let last = self.last_slot.load(Ordering::Relaxed);
        last != slot && last != NO_SLOT && self.largest_free.load(Ordering::Relaxed) < self.size / 2
    }

    /// Calls `f` for every range of the arena in offset order (offsets in the block), under its
    /// lock; the bytes past the suballocator's last range are reported free (see
    /// [`Block::for_each_range`](super::Block::for_each_range)). Returns the arena's count of live
    /// allocations, read under the same lock (so it matches the ranges even while other threads
    /// allocate).
    pub(in crate::allocator::block_vec) fn for_each_range(
        &self,
        f: &mut impl FnMut(RangeInfo),
    ) -> usize {
        let mut last: Option<RangeInfo> = None;
        let guard = self.suballocator.lock();
        let live = guard.live;
        guard.sub.for_each_range(&mut |r| {
            let r = RangeInfo {
                offset: r.offset + self.base,
                ..r
            };
            if let Some(previous) = last.replace(r) {
                f(previous);
            }
        });
        drop(guard);
        let arena_end = self.base + self.size;
        let covered = last.map_or(self.base, |r| r.offset + r.size);
        let tail = RangeInfo {
            offset: covered,
            size: arena_end.saturating_sub(covered),
            kind: RangeKind::Free,
        };
        match last {
            Some(mut r) if tail.size > 0 && r.kind == RangeKind::Free => {
                r.size += tail.size;
                f(r);
            }
            Some(r) => {
                f(r);
                if tail.size > 0 {
                    f(tail);
                }
            }
            None if tail.size > 0 => f(tail),
            None => {}
        }
        live
    }

    /// Where the arena starts in the block, and its size.
    pub(in crate::allocator::block_vec) fn extent(&self) -> (DeviceSize, DeviceSize) {
        (self.base, self.size)
    }

    /// The number of live allocations, under the lock.
    pub(crate) fn live(&self) -> usize {
        self.suballocator.lock().live
    }

    /// Where the arena starts in the block.
    #[cfg(test)]
    pub(in crate::allocator::block_vec) fn base(&self) -> DeviceSize {
        self.base
    }

    /// Whether the suballocator could serve `fit` right now, asked directly (no hint); a
    /// success is undone at once, and no hint is recorded or cleared.
    #[cfg(test)]
    pub(in crate::allocator::block_vec) fn try_without_hints(
        &self,
        fit: &crate::allocator::block_vec::Fit,
    ) -> bool {
        let mut g = self.suballocator.lock();
        match g
            .sub
            .allocate(fit.layout, fit.allocation_type, fit.granularity)
        {
            Ok(s) => {
                // SAFETY: just allocated by this suballocator, freed once.
                unsafe { g.sub.deallocate(s) };
                true
            }
            Err(_) => false,
        }
    }
}
