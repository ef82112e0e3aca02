//! Block vectors: the blocks of one memory type (or of one custom pool), searched, grown and
//! released.
//!
//! A block vector knows nothing of Vulkan: it holds blocks of some [`BlockMemory`] (a
//! `VkDeviceMemory` in the allocator, a plain stand-in in its tests) and suballocates in
//! them. New memory comes from a closure the caller passes, the *memory seam*, so search,
//! growth, arena choice and release are tested without a driver (see the tests of this
//! module). How large a new block is and how it is cut into arenas is the
//! [placement policy](super::placement)'s decision.
//!
//! # Locking
//!
//! The blocks are kept in a [`ShardedList`]: identical copies of the list, each behind its own
//! lock, so that allocating threads do not fight over one lock word. Allocating takes a copy
//! (its thread shard's, or any free one) and walks the blocks. Each block is cut into arenas
//! (see [`block`]), and each arena's suballocator sits behind its own lock. Both locks are
//! [spin locks](spin_lock) that are given back with a plain store: an allocation and its
//! free take three atomic read-modify-writes in all, where reader-writer and parking locks
//! took six. Most allocations take one fewer: each thread keeps a copy of the list's arenas,
//! and tries its home arena of the first block, then the tightest arena in use, before it
//! takes a copy of the list (the [fast try](fast), which explains why that is safe without
//! the list, and [its two steps](fast_try)), so an allocation and its free take the arena's
//! lock twice and nothing else.
//! The walk tries the thread's home arena of the first block, then the arena in use with the
//! least room that fits (see [which block](super::placement#which-block)), then the thread's
//! home arena of every block, then the other arenas, skipping arenas another thread holds at
//! that moment; only if nothing free fits does it wait for those. Each arena publishes its
//! suballocator's `largest_free_range`, and the smallest request that failed in it since
//! its last free, in atomics, so the walk skips
//! arenas that cannot fit the request without locking them. All copies of the list are
//! write-locked only to add a block or to release an empty one; a new block is made under
//! that lock, after one more search, so two threads never both make a block for want of one.
//!
//! # Releasing
//!
//! Empty blocks are a cache of memory objects. A default block vector keeps its empty
//! blocks only where they cannot raise the most memory it reserves: the blocks that hold
//! allocations and the allocator's dedicated allocations of its memory type (the memory
//! *in use*: they share the type's peak) and the empty blocks kept add up to at most the
//! [high-water mark](high_water), the most memory the vector had in use recently (sampled
//! just before each free that empties a block, and with each new block). So the next
//! requests reuse them without a `vkAllocateMemory`, while the memory reserved rises past its
//! peak only when the memory in use does. Within the mark, the empty blocks kept add up to at
//! most [`BlockLimits::empty_kept`] blocks' worth: while its heap is within its budget,
//! [`EMPTY_KEPT_BLOCKS`](limits::EMPTY_KEPT_BLOCKS) (four) times the larger of the vector's
//! largest block and its memory type's preferred block size; past the budget, its largest
//! block (as VMA frees its empty block past the budget). The largest stay first, smaller ones
//! fill the rest, and a free always leaves one empty block. Counting in preferred blocks
//! matters where blocks are smaller than that: blocks made for sizable requests have the
//! request's size, and counted in the largest of those, four of them were kept, too few for
//! the next request to find one that fits (sizable resources of 32-64 MiB among small
//! ones: 198 `vkAllocateMemory` calls per 10,000 steps before, 40 after, VMA 38). A custom
//! pool keeps one block's worth (its blocks all have one size) and no mark. A block counts
//! its arenas that hold allocations, so whether it is empty is read without a lock, and
//! only the free that empties a block
//! looks for blocks to release: on `large` (40 live resources of 1-85 MiB), about one free
//! in 23 empties its block. Four rules keep the cache from costing memory when it matters:
//!
//! - Before a new block or a dedicated allocation of the type is made, the empty blocks
//!   are given back as far as needed for the memory in use, the new memory object and the
//!   blocks that stay to fit under the mark; all of them when the memory in use and the new
//!   object alone reach past it (the mark then rises to them). Kept memory never adds to the
//!   memory reserved at the type's fullest. And when the new object (or one of a custom
//!   pool of the allocator) would take the device past the most memory it held so far, the
//!   allocator's other default vectors give back their kept blocks as far as needed first
//!   ([`try_release_kept_bytes`](BlockVec::try_release_kept_bytes)), then the vector its own
//!   (see [`Neighbours`]): kept blocks never add to the allocator's peak either (phases of
//!   upload then device-local memory: peak reserved / peak live 1.20 before, 1.02 after,
//!   VMA's rule 1.06; a steady state over three types: 1.27-1.37 before, 1.16-1.21 after,
//!   for 8-19 % more `vkAllocateMemory` calls; see tests/memory_books.rs).
//! - The mark decays: it is the largest sample of the last one to two epochs of
//!   [`HIGH_WATER_EPOCH`](high_water::HIGH_WATER_EPOCH) samples, so a vector whose memory in
//!   use drops for good gives back what it kept, as its blocks keep emptying. A vector that
//!   takes no sample at all (no block of it empties, none is made) while another default
//!   vector of the allocator passes a whole epoch keeps one empty block, as VMA's default
//!   pools do, and its mark starts over
//!   ([`neighbour_epoch_passed`](BlockVec::neighbour_epoch_passed)): a memory type the
//!   application stopped using does not keep four blocks' worth for good.
//! - When a heap runs out of memory (or of budget, for a request that asked to stay within
//!   it) while the allocator or one of its custom pools makes a memory object, the empty
//!   blocks of every default block vector of that heap are released
//!   ([`try_release_empty`](BlockVec::try_release_empty)), for the allocator's own requests
//!   those that its custom pools keep in the heap beyond their minimum too, and the memory
//!   object is tried once more; the vector that makes a block releases its own kept blocks
//!   and tries once more too, and so does a custom pool for its dedicated allocations: kept
//!   memory never makes an allocation fail.
//! - A vector never goes below its minimum block count (custom pools keep their first
//!   blocks for good).
//!
//! A large request, which would get a memory object of its own, takes a kept empty block
//! that it is large for first (see
//! [kept blocks](super::placement#kept-blocks-for-large-requests)). And a memory object of
//! its own that the allocator made for a large request by its own choice, as a block's
//! would be made, comes back to the vector when its allocation is freed
//! ([`adopt_emptied`](BlockVec::adopt_emptied)): it is listed as an empty block of one
//! arena, and the rule for a block that just emptied decides whether it stays.
//! A best-fit request takes an empty block more than
//! [`EMPTY_BLOCK_FIT_PERCENT`](super::placement::EMPTY_BLOCK_FIT_PERCENT) of its size only
//! when nothing else fits (see [which block](super::placement#which-block)), so that kept
//! blocks go to requests of about their size.
//!
//! On the peer benchmark's `large` workload (40 live resources of 1-85 MiB, 256 MiB blocks),
//! over 30 traces of the class, this took the `vkAllocateMemory` calls per run from 85 to 25
//! on average at one thread (VMA: 221), with peak reserved / peak live the same within the
//! traces' spread (see docs/benchmarks.md, "Large resources, second round"); the rule before
//! (up to two blocks' worth, all given back on a miss) gave 85. A
//! defragmentation keeps the *smallest* empty block between its passes instead
//! ([`Keep::Smallest`]), and releases the blocks it emptied when it ends
//! ([`release_empty_among`](BlockVec::release_empty_among)): see
//! [its docs](super::defrag#how-it-goes).

mod block;
mod failed_request;
mod fast;
mod fast_try;
mod high_water;
mod left;
mod limits;
mod ranked;
mod release;
mod reuse;
mod sharded;
mod spin_lock;
#[cfg(test)]
mod tests;
mod wrap;

pub(crate) use self::block::{Arena, Block, BlockMemory, BlockOrigin, Placed, WeakBlock};
use self::fast_try::Tightest;
use self::high_water::HighWater;
pub(crate) use self::left::{LeftBlock, LeftView};
pub(crate) use self::limits::{BlockLimits, Keep};
pub(crate) use self::release::Neighbours;
pub(crate) use self::sharded::thread_shard;
use self::sharded::ShardedList;
pub(crate) use self::wrap::Wrap;
use super::placement::ArenaLayout;
use crate::layout::{DeviceAlignment, DeviceLayout, DeviceSize};
use crate::suballocator::{AllocationStrategy, AllocationType, Suballocator, SuballocatorError};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

/// One request to suballocate.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Fit {
    /// The layout in the block (already adjusted for the memory type).
    pub layout: DeviceLayout,
    pub allocation_type: AllocationType,
    pub granularity: DeviceAlignment,
    /// Search every arena for the tightest fit instead of taking the first (see
    /// [which block](super::placement#which-block)).
    pub best_fit: bool,
    /// How to choose among the free ranges that fit (the allocation's, else its pool's).
    pub strategy: AllocationStrategy,
}

/// The blocks' suballocator can never serve the request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct DoesNotFit;

/// Why no new block served a request.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum NewBlockError<E> {
    /// The memory seam failed.
    Memory(E),
    /// No block size is left to try (see [`new_block_size`](super::placement::new_block_size)).
    NoSize,
    /// The vector holds its maximum number of blocks.
    Full { max_blocks: usize },
    /// The fresh block's suballocator refused the request.
    DoesNotFit,
}

/// The blocks of one memory type or custom pool.
pub(crate) struct BlockVec<S, M: BlockMemory> {
    /// The vector's number for the threads' [fast tries](fast): never another vector's.
    number: usize,
    /// Blocks are handles (reference-counted parts): each copy of the list holds them
    /// inline, so the search reads a block's arenas straight from the list.
    blocks: ShardedList<Block<S, M>>,
    /// The most arenas per block, a power of two. Each thread has one of this many home
    /// slots, and every slot has one home arena in each fully cut block; blocks cut into
    /// fewer arenas (or none) take turns serving the slots, so threads do not share homes
    /// there either.
    home_slots: usize,
    /// Blocks cut into fewer than `home_slots` arenas made so far: decides which slots the
    /// next such block serves, so that they take turns.
    partial_blocks_made: AtomicUsize,
    /// The largest request that asked for a new block (arenas are cut in proportion to it).
    largest_request: AtomicU64,
    limits: BlockLimits,
    /// Blocks a defragmentation is emptying: out of the list, so that no search finds them,
    /// but still counted and walked by statistics (see [`set_aside`](Self::set_aside)).
    aside: parking_lot::Mutex<Vec<Block<S, M>>>,
    /// The recent high-water mark of the memory in use (with [`BlockLimits::high_water`]).
    high_water: parking_lot::Mutex<HighWater>,
    /// Bytes of the memory objects of the vector's memory type that live outside its blocks
    /// (the allocator's dedicated allocations of that type): memory in use for the
    /// high-water mark (see [`new_counting`](Self::new_counting)).
    outside: Arc<AtomicU64>,
    /// The allocator's other default vectors ([`set_neighbours`](Self::set_neighbours)).
    neighbours: std::sync::OnceLock<Box<dyn Neighbours>>,
    /// Whether the vector took a sample of its mark since the last epoch of a neighbour, and
    /// how many epochs of its neighbours passed in a row without one (see
    /// [`neighbour_epoch_passed`](Self::neighbour_epoch_passed)).
    sampled: std::sync::atomic::AtomicBool,
    idle_epochs: std::sync::atomic::AtomicU32,
    /// Whether a block may have emptied since a walk under the write lock found none empty
    /// (a vector that keeps nothing is passed without stopping the threads that search it).
    maybe_kept: std::sync::atomic::AtomicBool,
}

impl<S: Suballocator + Send + 'static, M: BlockMemory> BlockVec<S, M> {
    /// A vector whose blocks are cut into at most `home_slots` arenas (a power of two).
    pub(crate) fn new(home_slots: usize, limits: BlockLimits) -> Arc<Self> {
        Self::new_counting(home_slots, limits, Arc::default())
    }

    /// A vector as [`new`](Self::new) whose memory in use, for the
    /// [high-water mark](high_water), counts `outside` bytes besides its blocks that hold
    /// allocations: the dedicated allocations of its memory type, which share the heap and
    /// the peak with the blocks (see [releasing](self#releasing)).
    pub(crate) fn new_counting(
        home_slots: usize,
        limits: BlockLimits,
        outside: Arc<AtomicU64>,
    ) -> Arc<Self> {
        debug_assert!(home_slots.is_power_of_two());
        Arc::new(Self {
            number: fast::next_vec_number(),
            blocks: ShardedList::new(),
            home_slots,
            partial_blocks_made: AtomicUsize::new(0),
            largest_request: AtomicU64::new(0),
            limits,
            aside: parking_lot::Mutex::default(),
            high_water: parking_lot::Mutex::default(),
            outside,
            neighbours: std::sync::OnceLock::new(),
            sampled: std::sync::atomic::AtomicBool::new(false),
            idle_epochs: std::sync::atomic::AtomicU32::new(0),
            maybe_kept: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Sets the allocator's other default vectors: before the vector makes a memory object (a
    /// block, or a dedicated allocation of its type), they give back their kept blocks as far
    /// as the allocator's peak needs, then the vector its own; and each epoch of its mark is
    /// an epoch for them (see [releasing](self#releasing)). Only the first call counts.
    pub(crate) fn set_neighbours(&self, neighbours: Box<dyn Neighbours>) {
        let _ = self.neighbours.set(neighbours);
    }

    /// The most arenas a block is cut into.
    pub(crate) fn home_slots(&self) -> usize {
        self.home_slots
    }

    /// The calling thread's home slot.
    #[inline]
    fn home_slot(&self) -> usize {
        thread_shard() & (self.home_slots - 1)
    }

    /// Runs `f` for every block, the ones set aside included.
    pub(crate) fn for_each_block(&self, mut f: impl FnMut(&Block<S, M>)) {
        for block in self.blocks.read().iter() {
            f(block);
        }
        for block in self.aside.lock().iter() {
            f(block);
        }
    }

    /// Number of blocks, the ones set aside included.
    pub(crate) fn block_count(&self) -> usize {
        self.blocks.read().len() + self.aside.lock().len()
    }

    /// The blocks the vector owns, given the `listed` ones under the list's lock: the blocks
    /// a defragmentation set aside count too, always (against the maximum block count, and
    /// for the size of the next block).
    fn owned(&self, listed: usize) -> usize {
        // The list's lock first, then the set-aside one, as everywhere.
        listed + self.aside.lock().len()
    }

    /// Calls `f` with the blocks a search sees, in search order, under the list's read lock
    /// (a defragmentation takes handles only of the blocks it holds none of yet).
    pub(crate) fn with_blocks<R>(&self, f: impl FnOnce(&[Block<S, M>]) -> R) -> R {
        f(&self.blocks.read())
    }

    /// Takes the block `block` out of every search (a defragmentation empties it): new
    /// allocations never land in it until [`restore_aside`](Self::restore_aside); frees and
    /// statistics still reach it. `false` when the block is not in the list. With
    /// `keep_order` the other blocks keep their order (the
    /// [`MinOffset`](AllocationStrategy::MinOffset) search goes by it); otherwise the last
    /// block takes its place, which spares moving the rest of the list in every copy.
    pub(crate) fn set_aside(&self, block: &Block<S, M>, keep_order: bool) -> bool {
        let mut blocks = self.blocks.write();
        let Some(i) = blocks.items().iter().position(|b| b.same_as(block)) else {
            return false;
        };
        self.aside.lock().push(block.clone());
        if keep_order {
            blocks.remove(i);
        } else {
            blocks.swap_remove(i);
        }
        // Out of the list, and closed to the fast tries before the caller goes on.
        block.set_closed(true);
        true
    }

    /// Puts a block set aside back into the list (a defragmentation gave up emptying it).
    pub(crate) fn put_back(&self, block: &Block<S, M>) {
        let mut aside = self.aside.lock();
        if let Some(i) = aside.iter().position(|b| b.same_as(block)) {
            let b = aside.swap_remove(i);
            drop(aside);
            let mut list = self.blocks.write();
            b.set_closed(false);
            list.push(b);
        }
    }

    /// Ends a defragmentation's pass: puts the blocks `blocks` back into the list (those of
    /// them set aside; other blocks set aside stay so) and releases empty blocks, keeping the
    /// smallest ([`release_empty_blocks`](Self::release_empty_blocks)). Returns how many were
    /// released.
    pub(crate) fn restore_aside(&self, blocks: &[Block<S, M>]) -> usize {
        {
            // The list's lock first, as `set_aside` takes them.
            let mut list = self.blocks.write();
            let mut aside = self.aside.lock();
            for block in blocks {
                if let Some(i) = aside.iter().position(|b| b.same_as(block)) {
                    let b = aside.swap_remove(i);
                    b.set_closed(false);
                    list.push(b);
                }
            }
        }
        self.release_empty_blocks(Keep::Smallest)
    }

    /// Suballocates in the given block (waiting for its arenas' locks), or `None`; `None` as
    /// well when the block is no longer in the list (another defragmentation set it aside
    /// since the caller saw it: a block being emptied receives nothing).
    pub(crate) fn allocate_in<W: Wrap<S, M>>(
        &self,
        block: &Block<S, M>,
        fit: &Fit,
        wrap: &W,
    ) -> Option<W::Out> {
        // Held until the suballocation is made: `set_aside` takes the list's write lock, so
        // the block cannot leave the list in between.
        let listed = self.blocks.read();
        if !listed.iter().any(|b| b.same_as(block)) {
            return None;
        }
        let strategy = fit.strategy;
        for arena in block.arenas() {
            if arena.may_fit(fit.layout, fit.allocation_type) {
                if let Some(Ok(placed)) = arena.try_allocate(
                    fit.layout,
                    fit.allocation_type,
                    fit.granularity,
                    true,
                    strategy,
                ) {
                    return Some(wrap.wrap(arena, placed));
                }
            }
        }
        None
    }

    /// Why an arena did not fit: only a request its suballocator can never serve is an
    /// error; a full or fragmented arena is not.
    #[inline]
    fn no_fit(e: SuballocatorError) -> Result<(), DoesNotFit> {
        match e {
            SuballocatorError::BlockSizeExceeded => Err(DoesNotFit),
            SuballocatorError::OutOfRegionMemory | SuballocatorError::FragmentedRegion => Ok(()),
        }
    }

    #[inline]
    fn search<W: Wrap<S, M>>(
        &self,
        blocks: &[Block<S, M>],
        fit: &Fit,
        wrap: &W,
    ) -> Result<Option<W::Out>, DoesNotFit> {
        self.search_from(thread_shard(), blocks, fit, wrap, false)
    }

    /// [`search`](Self::search) for a thread of shard `shard` (its [`thread_shard`]);
    /// `past_tightest`: the thread's [fast try](fast) made the first two steps of the default
    /// search (the first block's home arena, then the tightest arena in use), neither arena
    /// was busy and neither took the request, so the search goes on from the third.
    #[inline]
    fn search_from<W: Wrap<S, M>>(
        &self,
        shard: usize,
        blocks: &[Block<S, M>],
        fit: &Fit,
        wrap: &W,
        past_tightest: bool,
    ) -> Result<Option<W::Out>, DoesNotFit> {
        // First pass: the thread's home arena of each block; second pass: the other arenas,
        // each block's from an arena that depends on the thread's slot (see below). Both skip
        // arenas another thread holds right now, so that threads allocating at the same time
        // spread over arenas instead of queueing on one. A single thread never finds an
        // arena busy. Third pass, only if some arena was busy: wait for those.
        // Arena counts are powers of two, so the home arena is a mask away. The hints are
        // checked here, inline: most arenas the walk passes are skipped on them.
        let Fit {
            layout,
            allocation_type,
            granularity,
            best_fit,
            strategy,
        } = *fit;
        match strategy {
            AllocationStrategy::MinMemory => return self.search_best_fit(blocks, fit, wrap),
            AllocationStrategy::MinOffset => return self.search_in_order(blocks, fit, wrap),
            AllocationStrategy::Default if best_fit => {
                return self.search_best_fit(blocks, fit, wrap)
            }
            AllocationStrategy::Default | AllocationStrategy::MinTime => {}
        }
        let slot = shard & (self.home_slots - 1);
        let mut busy = false;
        let mut split = false;
        macro_rules! try_arena {
            ($arena:expr, wait: $wait:expr, on_busy: $on_busy:expr) => {
                let arena = $arena;
                if arena.may_fit(layout, allocation_type) {
                    match arena.try_allocate(layout, allocation_type, granularity, $wait, strategy)
                    {
                        None => $on_busy,
                        Some(Ok(placed)) => {
                            arena.note_slot(slot);
                            return Ok(Some(wrap.wrap(arena, placed)));
                        }
                        Some(Err(e)) => Self::no_fit(e)?,
                    }
                }
            };
        }
        // First fit in the first block's home arena; when it cannot take the request, the
        // arena in use with the least room that may fit (see
        // [which block](super::placement#which-block)); then the empty arenas too, in order.
        // The first block's home arena is not tried twice: one that was busy is waited for
        // below with the others.
        // The thread's home arena of a block, if the block has one for its slot and `try`
        // holds (`split`: some block has other arenas to try in the pass below).
        macro_rules! try_home {
            ($block:expr, try: $try:expr) => {
                let block = $block;
                let arenas = block.arenas();
                match block.home_index(slot, self.home_slots) {
                    Some(i) => {
                        split |= arenas.len() > 1;
                        if $try {
                            try_arena!(&arenas[i], wait: false, on_busy: busy = true);
                        }
                    }
                    None => split = true,
                }
            };
        }
        let (first, rest) = blocks
            .split_first()
            .map_or((None, blocks), |(f, r)| (Some(f), r));
        if let Some(block) = first {
            try_home!(block, try: !past_tightest);
        }
        if !past_tightest {
            let arenas = blocks.iter().map(|block| block.arenas());
            if let Some(arena) = Self::tightest_in_use(arenas, slot, layout, allocation_type) {
                try_arena!(arena, wait: false, on_busy: busy = true);
            }
        }
        for block in rest {
            try_home!(block, try: true);
        }
        if split {
            let newest = blocks.len().wrapping_sub(1);
            for (b, block) in blocks.iter().enumerate() {
                let arenas = block.arenas();
                let n = arenas.len();
                let home = block.home_index(slot, self.home_slots);
                // In the newest block, an arena that another thread is filling (by the
                // hints: it allocated there last, and more than half of it is taken) is left
                // to that thread: sharing it would have the two threads take turns on its lock
                // and its cache lines until it is full. The request goes to another arena, or
                // to a new block. The room is not lost: once the block is no longer the
                // newest, this pass takes it like any other.
                let leave_others_homes = b == newest && home.is_some() && n == self.home_slots;
                // Threads of different slots walk the block from different arenas, so that
                // they spread over it instead of queueing on its first arena: from the arena
                // opposite the home (then, while there are more home slots than threads at
                // work, neighbouring slots overflow into arenas no thread calls home), or, in
                // a block that is home to other slots, from the arena the slot would have
                // in it (neighbouring slots start at different arenas).
                let (own, start) = match home {
                    Some(own) => (own, own + n / 2),
                    None => (usize::MAX, slot),
                };
                for k in 0..n {
                    let i = (start + k) & (n - 1);
                    if i != own && !(leave_others_homes && arenas[i].is_filled_by_another(slot)) {
                        try_arena!(&arenas[i], wait: false, on_busy: busy = true);
                    }
                }
            }
        }
        if busy {
            // Waiting too, threads of different slots start at different arenas.
            for block in blocks {
                let arenas = block.arenas();
                for k in 0..arenas.len() {
                    let i = (slot + k) & (arenas.len() - 1);
                    try_arena!(&arenas[i], wait: true, on_busy: ());
                }
            }
        }
        Ok(None)
    }

    /// Suballocates in an existing block: the thread's [fast try](fast) first, then the walk,
    /// holding a copy of the list; `Ok(None)` when none has room.
    /// `wrap` turns the arena and the suballocation into what the caller keeps.
    #[inline(always)]
    pub(crate) fn allocate_existing<W: Wrap<S, M>>(
        &self,
        fit: &Fit,
        wrap: &W,
    ) -> Result<Option<W::Out>, DoesNotFit> {
        if let Some(found) = self.fast_try(fit, wrap) {
            return Ok(Some(found));
        }
        self.walk_existing(fit, wrap)
    }

    /// The walk of [`allocate_existing`](Self::allocate_existing), out of line: for a request
    /// of the default search, the second step of the fast try first.
    #[inline(never)]
    fn walk_existing<W: Wrap<S, M>>(
        &self,
        fit: &Fit,
        wrap: &W,
    ) -> Result<Option<W::Out>, DoesNotFit> {
        let (mut past_tightest, mut keep) = (None, false);
        if Self::takes_fast_try(fit) {
            match self.fast_tightest(fit, wrap) {
                Tightest::Served(found) => return Ok(Some(found)),
                Tightest::Passed(generation) => past_tightest = Some(generation),
                Tightest::Walk => {}
                Tightest::Stale => keep = true,
            }
        }
        let shard = thread_shard();
        let blocks = self.blocks.read_shard(shard);
        // Read while the copy is held: a writer changes the generation with every copy taken.
        let past_tightest = past_tightest == Some(self.blocks.generation());
        let found = self.search_from(shard, &blocks, fit, wrap, past_tightest);
        if keep {
            self.keep_fast(shard, &blocks);
        }
        found
    }

    /// Suballocates in a new block, under the write lock: first searches the existing blocks
    /// again (another thread may have added one or freed room meanwhile), then asks
    /// `block_size` for the size of the new block given the number of blocks held that are
    /// steps of the growing block sizes (those not made for sizable requests) and, when every
    /// block listed was made for a sizable request, the memory in use (else 0; `None`: no
    /// size left to try), `arenas` how to cut it (given its size and the largest request that
    /// asked for a block so far, this one included), and `make` for its memory.
    /// `for_sizable`: the block is made for this sizable request (see
    /// [block sizes](super::placement#block-sizes)), and is no step of the growth.
    pub(crate) fn allocate_in_new_block<W: Wrap<S, M>, E>(
        self: &Arc<Self>,
        fit: &Fit,
        for_sizable: bool,
        block_size: impl FnOnce(usize, DeviceSize) -> Option<DeviceSize>,
        arenas: impl FnOnce(DeviceSize, DeviceSize) -> ArenaLayout,
        mut make: impl FnMut(DeviceSize) -> Result<M, E>,
        wrap: &W,
    ) -> Result<W::Out, NewBlockError<E>> {
        let mut blocks = self.blocks.write();
        match self.search(blocks.items(), fit, wrap) {
            Ok(Some(found)) => return Ok(found),
            Ok(None) => {}
            Err(DoesNotFit) => return Err(NewBlockError::DoesNotFit),
        }
        let (size, in_use) = if self.high_water_on() {
            self.make_room(&mut blocks, block_size)?
        } else {
            // The empty blocks kept for reuse could not hold this request: give them back
            // before asking for more memory (see [releasing](self#releasing)).
            Self::remove_empty(&mut blocks, self.limits.min, |_| true);
            let held = self.owned(blocks.items().len());
            if held >= self.limits.max {
                return Err(NewBlockError::Full {
                    max_blocks: self.limits.max,
                });
            }
            (block_size(held, 0).ok_or(NewBlockError::NoSize)?, 0)
        };
        let largest = self
            .largest_request
            .fetch_max(fit.layout.size(), Ordering::Relaxed)
            .max(fit.layout.size());
        let memory = match make(size) {
            Ok(memory) => memory,
            // Out of memory (or budget) with empty blocks still kept: they give their memory
            // back, and the memory is asked for once more.
            Err(_) if Self::remove_empty(&mut blocks, self.limits.min, |_| true) > 0 => {
                make(size).map_err(NewBlockError::Memory)?
            }
            Err(e) => return Err(NewBlockError::Memory(e)),
        };
        if self.high_water_on() {
            // Only memory that was made is a sample: a failure reserves nothing.
            self.sample_in_use(in_use.saturating_add(size));
        }
        let origin = if for_sizable {
            BlockOrigin::Sizable
        } else {
            BlockOrigin::Growth
        };
        let block = self.new_block(memory, origin, |size| arenas(size, largest));
        // The home arena first, then the others (one of them is large enough unless the
        // request's alignment or granularity needs more than the block can give).
        let own = block
            .home_index(self.home_slot(), self.home_slots)
            .unwrap_or(0);
        let order = block.arenas()[own..].iter().chain(&block.arenas()[..own]);
        let strategy = fit.strategy;
        for arena in order.filter(|a| a.may_fit(fit.layout, fit.allocation_type)) {
            match arena.try_allocate(
                fit.layout,
                fit.allocation_type,
                fit.granularity,
                true,
                strategy,
            ) {
                Some(Ok(placed)) => {
                    arena.note_slot(self.home_slot());
                    let found = wrap.wrap(arena, placed);
                    blocks.push(block);
                    return Ok(found);
                }
                // On error the fresh block is dropped here, which frees its memory.
                Some(Err(e)) => {
                    Self::no_fit(e).map_err(|DoesNotFit| NewBlockError::DoesNotFit)?;
                }
                None => {}
            }
        }
        Err(NewBlockError::DoesNotFit)
    }

    /// Makes and adds an empty block (custom pools' minimum blocks), under the write lock.
    #[allow(dead_code)] // Custom pools' minimum blocks use it (next change).
    pub(crate) fn add_empty_block<E>(
        self: &Arc<Self>,
        size: DeviceSize,
        arenas: impl FnOnce(DeviceSize, DeviceSize) -> ArenaLayout,
        make: impl FnOnce(DeviceSize) -> Result<M, E>,
    ) -> Result<(), NewBlockError<E>> {
        let mut blocks = self.blocks.write();
        if self.owned(blocks.items().len()) >= self.limits.max {
            return Err(NewBlockError::Full {
                max_blocks: self.limits.max,
            });
        }
        let memory = make(size).map_err(NewBlockError::Memory)?;
        let largest = self.largest_request.load(Ordering::Relaxed);
        blocks.push(self.new_block(memory, BlockOrigin::Growth, |size| arenas(size, largest)));
        Ok(())
    }

    fn new_block(
        self: &Arc<Self>,
        memory: M,
        origin: BlockOrigin,
        arenas: impl FnOnce(DeviceSize) -> ArenaLayout,
    ) -> Block<S, M> {
        let layout = arenas(memory.size());
        let serial = if layout.count < self.home_slots {
            self.partial_blocks_made.fetch_add(1, Ordering::Relaxed)
        } else {
            0
        };
        Block::new(
            memory,
            layout,
            serial,
            self.home_slots,
            Arc::downgrade(self),
            origin,
        )
    }
}
