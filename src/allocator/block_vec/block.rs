//! A `VkDeviceMemory` block, split into arenas that threads allocate from side by side.
//!
//! # Arenas
//!
//! Two threads that allocate from the same suballocator take turns on its lock and pass the
//! cache lines of its bookkeeping back and forth, however little work each allocation does.
//! So a block is cut into a few *arenas*: equal, contiguous parts of its memory, each with
//! a suballocator, a lock and search hints of its own, each on its own cache lines and behind
//! its own reference count. A thread tries its *home* arena of each block first (chosen from
//! its thread number), so threads working at the same time mostly touch different arenas,
//! yet they share the blocks: no thread reserves memory of its own, and a thread whose home
//! arenas are full uses the others before a new block is made. It walks a block's other
//! arenas from the one opposite its home (or, in a block that is home to other slots, from
//! the one its slot would have), so that threads of different slots overflow into different
//! arenas rather than all queueing on a block's first arena. In the newest block, it passes
//! over an arena that another thread is filling (by the hints: a thread of another slot
//! allocated there last, and more than half of it is taken): two threads sharing an arena
//! take turns on its lock and its cache lines until it is full, so the request goes to
//! another arena or a new block instead. That room is not lost: once a newer block exists,
//! the overflow takes it like any other. Threads allocating side by side fill their homes at
//! about the same pace, so the new block is one the other thread needs a moment later (peers
//! bench: `burst` at two threads from 1.3-1.5x to 1.6-2.0x one thread's throughput, the
//! memory reserved unchanged on every workload). A block cut into fewer
//! arenas than the block vector's maximum (a small block, or one made for a large request) is home
//! to only as many threads' slots as it has arenas, and successive such blocks take turns,
//! so that no arena is every thread's home.
//!
//! The cost is that a range cannot straddle two arenas. Arenas are therefore only cut when
//! each is at least [`MIN_ARENA_SIZE`](crate::allocator::placement::MIN_ARENA_SIZE) and at least as large as the request that made the
//! block (which then fits in its fresh arena; arena 0 starts at offset 0, so any alignment
//! holds there), and a request too large for the arenas of the existing blocks gets a new
//! block with fewer, larger arenas. A whole block would be home to one thread's slot only
//! (see above), so cutting even the block of a large request keeps threads' home space
//! even. Arena offsets are multiples of a power
//! of two at least as large as the granularity, so resources in neighbouring arenas never
//! share a granularity page, and any alignment up to that power of two carries over from the
//! arena's offsets to the block's. Setting
//! [`block_arenas`](crate::GenericMemoryAllocatorCreateInfo::block_arenas) to 1 keeps every
//! block in one piece.

mod arena;

pub(crate) use self::arena::{Arena, Placed};
use super::BlockVec;
use crate::allocation::MetaMap;
use crate::allocator::placement::ArenaLayout;
use crate::layout::DeviceSize;
use crate::suballocator::{RangeInfo, Suballocator};
use parking_lot::Mutex;
use smallvec::SmallVec;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};

/// The memory a block is made of, the block vectors' seam: a `VkDeviceMemory` in the allocator
/// (implemented in [`block_memory`](crate::allocator::block_memory)), a plain stand-in in the
/// block vector's own tests. Dropping it frees it.
pub(crate) trait BlockMemory: Send + Sync + 'static {
    /// What an arena over this memory keeps for the allocations made in it to reach it (the
    /// driver's memory: its [`ArenaLink`](crate::allocation::ArenaLink); a stand-in: nothing).
    type Link: Send + Sync;

    /// The link of the arena that lives (or is about to live) at `arena` in an `Arc`.
    ///
    /// # Safety
    ///
    /// `arena` is the address of the arena, in an `Arc`, that keeps the link (see
    /// [`ArenaLink::new`](crate::allocation::ArenaLink::new)).
    unsafe fn link<S: Suballocator + Send + 'static>(arena: *const Arena<S, Self>) -> Self::Link
    where
        Self: Sized;

    /// The size in bytes.
    fn size(&self) -> DeviceSize;

    /// Whether the heap of this memory is under its budget now (usage below it, as VMA
    /// judges it): a vector keeps more than one empty block only then (see
    /// [releasing](super#releasing)).
    fn heap_within_budget(&self) -> bool {
        true
    }
}

/// The home slot that arena 0 of a block serves, when the block has `count` arenas, is the
/// `serial`-th such block of its vector, and the vector has `home_slots` (both powers of two,
/// `count <= home_slots`).
pub(super) fn home_base(serial: usize, count: usize, home_slots: usize) -> usize {
    serial.wrapping_mul(count) & (home_slots - 1)
}

/// Which arena of a block (`count` arenas, arena 0 serving slot `base`) is home to threads of
/// home slot `slot`, out of `home_slots`. Arena `i` serves slot `base + i` only: a block cut
/// into all `home_slots` arenas has a home for every slot, and blocks cut into fewer serve
/// `count` consecutive slots, moving on with every block made ([`home_base`]), so that
/// threads share no home there either.
#[inline]
pub(super) fn home_arena(
    slot: usize,
    base: usize,
    count: usize,
    home_slots: usize,
) -> Option<usize> {
    let i = slot.wrapping_sub(base) & (home_slots - 1);
    (i < count).then_some(i)
}

/// What the arenas of a block share: the memory, the vector to report empty blocks to, and
/// the metadata of the allocations that have some.
struct BlockShared<S, M: BlockMemory> {
    memory: M,
    vec: Weak<BlockVec<S, M>>,
    /// Names, user data and backtraces, by offset in the block (allocations without any are
    /// not in it).
    metas: Mutex<MetaMap>,
    /// How many records `metas` has lost (an allocation with a record freed, or its record
    /// dropped), counted from the block's own [start](first_removals): while this count
    /// stays, every record there still stands for the same allocation (a defragmentation's
    /// registrations need no new check). No two blocks ever show the same count, so a count
    /// seen for a memory handle is never shown by a later block that the driver gave the
    /// same handle.
    removals: AtomicU64,
    /// How many of the block's arenas hold a live allocation: changed under an arena's lock
    /// when its count of live allocations leaves or reaches zero, read without any lock.
    /// The block is empty when it is zero, and only the free that brings it to zero looks
    /// for empty blocks to release (see [`Arena::free`]). While it is above zero, the block's
    /// allocations hold one strong reference to this shared part (see `SharedPtr` in
    /// [arena]).
    busy_arenas: AtomicUsize,
    /// What the block was made for: a block made for a sizable request or left by a large
    /// one is no step of the vector's growing block sizes (see
    /// [block sizes](crate::allocator::placement#block-sizes)).
    origin: BlockOrigin,
}

/// A memory block and its arenas: a handle, cheap to clone (the vector's list keeps one per
/// copy). The memory is freed when the last handle and the last allocation in it are gone.
pub(crate) struct Block<S, M: BlockMemory> {
    /// The home slot that arena 0 serves (see [`home_index`](Self::home_index)).
    home_base: usize,
    shared: Arc<BlockShared<S, M>>,
    /// Inline for the usual few: the search reads them for every block it passes.
    arenas: SmallVec<[Arc<Arena<S, M>>; 4]>,
}

impl<S, M: BlockMemory> Clone for Block<S, M> {
    fn clone(&self) -> Self {
        Self {
            home_base: self.home_base,
            shared: self.shared.clone(),
            arenas: self.arenas.clone(),
        }
    }
}

/// Where a new block's [count of removed records](BlockShared::removals) starts: each block
/// starts `2^32` past the last one, so that the counts of two blocks never meet (a block
/// would have to lose four billion records first). A defragmentation keys what it knows of
/// a block by its memory handle and that count, and drivers give a freed memory object's
/// handle to the next one they make: a block made with the handle of a released one must
/// not show the count that the released one was last seen with.
fn first_removals() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1 << 32, Ordering::Relaxed)
}

/// What a block was made for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BlockOrigin {
    /// A step of the vector's growing block sizes (or a custom pool's block).
    Growth,
    /// One sizable request, at about its size (see
    /// [block sizes](crate::allocator::placement#block-sizes)).
    Sizable,
    /// A memory object of its own that a large request left when it was freed (see
    /// [`BlockVec::adopt_emptied`](super::BlockVec::adopt_emptied)): kept for large requests
    /// alone, its arenas publish no free range (see [`Arena::published`]). Like a block made
    /// for a sizable request, no step of the growth.
    LargeObject,
}

impl<S: Suballocator + Send + 'static, M: BlockMemory> Block<S, M> {
    /// A block over `memory`, cut as `layout` says, whose arenas report to `vec`; `serial`
    /// counts the vector's blocks cut into fewer than `home_slots` arenas (see
    /// [`home_index`](Self::home_index)).
    pub(super) fn new(
        memory: M,
        layout: ArenaLayout,
        serial: usize,
        home_slots: usize,
        vec: Weak<BlockVec<S, M>>,
        origin: BlockOrigin,
    ) -> Self {
        let block_size = memory.size();
        let published = if origin == BlockOrigin::LargeObject {
            0
        } else {
            DeviceSize::MAX
        };
        let shared = Arc::new(BlockShared {
            memory,
            vec,
            metas: Mutex::default(),
            removals: AtomicU64::new(first_removals()),
            busy_arenas: AtomicUsize::new(0),
            origin,
        });
        let arenas = (0..layout.count)
            .map(|i| {
                let (base, size) = layout.range(i, block_size);
                Arc::new_cyclic(|this| Arena::new(&shared, base, size, published, this))
            })
            .collect();
        Self {
            home_base: home_base(serial, layout.count, home_slots),
            shared,
            arenas,
        }
    }

    /// The index of the arena that is home to threads of home slot `slot` (see
    /// [`home_arena`]), or `None` when this block serves other slots.
    #[inline]
    pub(super) fn home_index(&self, slot: usize, home_slots: usize) -> Option<usize> {
        home_arena(slot, self.home_base, self.arenas.len(), home_slots)
    }

    /// The block's memory.
    pub(crate) fn memory(&self) -> &M {
        &self.shared.memory
    }

    /// The arenas in offset order.
    pub(crate) fn arenas(&self) -> &[Arc<Arena<S, M>>] {
        &self.arenas
    }

    /// Closes (`true`) or opens the block's arenas to the threads' [fast tries](super::fast),
    /// each under its lock: a block set aside by a defragmentation is closed while it is out
    /// of the list (the walks do not see it, and a fast try made before the block was set
    /// aside ends before its arena is closed).
    pub(super) fn set_closed(&self, closed: bool) {
        for arena in &self.arenas {
            arena.set_closed(closed);
        }
    }

    /// Whether the block is kept for large requests alone ([`BlockOrigin::LargeObject`]).
    pub(super) fn for_large(&self) -> bool {
        self.shared.origin == BlockOrigin::LargeObject
    }

    /// Whether the block was made for one request, no step of the growth: a sizable request
    /// (at about its size, see [block sizes](crate::allocator::placement#block-sizes)) or a
    /// large one that left its memory object.
    pub(super) fn for_sizable(&self) -> bool {
        self.shared.origin != BlockOrigin::Growth
    }

    /// An upper bound on the largest free range of the block: the largest of its arenas'
    /// published hints (read without their locks).
    pub(crate) fn largest_free_hint(&self) -> DeviceSize {
        self.arenas
            .iter()
            .map(|a| a.largest_free_hint())
            .max()
            .unwrap_or(0)
    }

    pub(crate) fn free_size(&self) -> DeviceSize {
        self.arenas.iter().map(|a| a.free_size()).sum()
    }

    /// The number of live allocations, over all arenas.
    pub(crate) fn allocation_count(&self) -> usize {
        self.arenas.iter().map(|a| a.live()).sum()
    }

    /// Calls `f` for every range of the block in offset order (arena by arena, offsets in
    /// the block), each arena under its lock. The ranges tile the block. Neighbouring arenas'
    /// free ranges are reported separately: no allocation can span them.
    ///
    /// A suballocator may manage less than its arena (a [`SlotAllocator`](crate::SlotAllocator)
    /// covers whole slots only, see its `region_size`): the bytes past its last range are
    /// still the block's memory, unused, so they are reported free, joined to the arena's last
    /// range when that one is free too.
    ///
    /// Returns the number of live allocations, each arena's read under the lock its ranges
    /// were read under: with other threads allocating and freeing, it matches the ranges
    /// reported, where a separate [`allocation_count`](Self::allocation_count) may not.
    pub(crate) fn for_each_range(&self, mut f: impl FnMut(RangeInfo)) -> usize {
        self.arenas
            .iter()
            .map(|arena| arena.for_each_range(&mut f))
            .sum()
    }

    /// Runs `f` with the metadata of the allocations that have some, by offset in the block.
    pub(crate) fn with_metas<R>(&self, f: impl FnOnce(&MetaMap) -> R) -> R {
        f(&self.shared.metas.lock())
    }

    /// How many metadata records the block has lost so far (see
    /// [`BlockShared::removals`]).
    pub(crate) fn removals(&self) -> u64 {
        self.shared.removals.load(Ordering::Acquire)
    }

    /// Whether no allocation lives in the block, read without a lock (the count of busy
    /// arenas, [`BlockShared::busy_arenas`]): the list's write lock keeps searches from
    /// filling an empty block while its holder decides to release it.
    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.shared.busy_arenas.load(Ordering::Acquire) == 0
    }

    /// Whether `other` is a handle of the same block.
    pub(crate) fn same_as(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }

    /// A handle that does not keep the block (its memory) alive.
    pub(crate) fn downgrade(&self) -> WeakBlock<S, M> {
        WeakBlock(Arc::downgrade(&self.shared))
    }

    /// Weak handles of the block's shared part and of its arenas, for a view that outlives
    /// the vector (see [`LeftBlock`](super::left::LeftBlock)).
    pub(super) fn weak_parts(&self) -> (WeakShared<S, M>, WeakArenas<S, M>) {
        (
            WeakShared(Arc::downgrade(&self.shared)),
            self.arenas.iter().map(Arc::downgrade).collect(),
        )
    }
}

/// A block's arenas, held weakly.
pub(super) type WeakArenas<S, M> = Vec<Weak<Arena<S, M>>>;

/// A block's shared part (its memory and metadata), held weakly.
pub(super) struct WeakShared<S, M: BlockMemory>(Weak<BlockShared<S, M>>);

/// A block's shared part, held for a moment (see [`WeakShared::upgrade`]).
pub(super) struct SharedRef<S, M: BlockMemory>(Arc<BlockShared<S, M>>);

impl<S, M: BlockMemory> WeakShared<S, M> {
    /// The shared part, while the block lives.
    pub(super) fn upgrade(&self) -> Option<SharedRef<S, M>> {
        self.0.upgrade().map(SharedRef)
    }

    /// Whether the block's memory is freed.
    pub(super) fn is_dead(&self) -> bool {
        self.0.strong_count() == 0
    }
}

impl<S, M: BlockMemory> SharedRef<S, M> {
    /// The block's memory.
    pub(super) fn memory(&self) -> &M {
        &self.0.memory
    }

    /// Runs `f` with the block's metadata records (see [`Block::with_metas`]).
    pub(super) fn with_metas<R>(&self, f: impl FnOnce(&MetaMap) -> R) -> R {
        f(&self.0.metas.lock())
    }
}

/// A block's identity, without keeping it alive ([`Block::downgrade`]).
pub(crate) struct WeakBlock<S, M: BlockMemory>(Weak<BlockShared<S, M>>);

impl<S, M: BlockMemory> WeakBlock<S, M> {
    /// Whether `block` is the block this handle was made from (never a later block at the
    /// same address: the weak count keeps the address taken).
    pub(crate) fn is(&self, block: &Block<S, M>) -> bool {
        std::ptr::eq(self.0.as_ptr(), Arc::as_ptr(&block.shared))
    }

    /// Whether the block is still alive: its memory object is not freed, so no other memory
    /// object has its handle.
    pub(crate) fn is_alive(&self) -> bool {
        self.0.strong_count() > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_slot_has_one_home_per_round_of_blocks() {
        for home_slots in [1, 2, 4, 8] {
            let mut count = 1;
            while count <= home_slots {
                // Consecutive blocks with `count` arenas, one round of `home_slots / count`:
                // every slot has exactly one home arena in the round, and no arena is home
                // to two slots.
                let round = home_slots / count;
                for first in 0..3 * round {
                    let mut homes = vec![0; home_slots];
                    for serial in first..first + round {
                        let base = home_base(serial, count, home_slots);
                        let mut served = vec![false; count];
                        for (slot, homes) in homes.iter_mut().enumerate() {
                            if let Some(i) = home_arena(slot, base, count, home_slots) {
                                assert!(i < count);
                                assert!(!served[i], "arena {i} home to two slots");
                                served[i] = true;
                                *homes += 1;
                            }
                        }
                        assert!(served.iter().all(|&s| s), "an arena is nobody's home");
                    }
                    assert!(
                        homes.iter().all(|&h| h == 1),
                        "{home_slots} slots, {count} arenas: {homes:?}"
                    );
                }
                count *= 2;
            }
        }
        // A fully cut block is home to every slot at the same index, whatever its serial.
        for serial in 0..5 {
            let base = home_base(serial, 4, 4);
            assert_eq!(
                (0..4)
                    .map(|s| home_arena(s, base, 4, 4))
                    .collect::<Vec<_>>(),
                [Some(0), Some(1), Some(2), Some(3)]
            );
        }
    }
}
