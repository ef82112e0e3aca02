//! One memory type's pool of blocks.
//!
//! # Locking
//!
//! A pool keeps its blocks in a [`BlockList`]: one copy of the list per thread shard, each
//! behind its own reader-writer lock, so that allocating threads do not fight over one lock
//! word. Allocating takes the read lock of its shard and walks the blocks. Each block is cut
//! into arenas (see [`block`]), and each arena's suballocator sits behind its own `Mutex`.
//! The walk tries the thread's home arena of every block first, then the other arenas,
//! skipping arenas another thread holds at that moment; only if nothing free fits does it
//! wait for those. Each arena publishes its suballocator's `largest_free_range`, and the
//! smallest request that failed in it since its last free, in atomics, so the walk skips
//! arenas that cannot fit the request without locking them. All copies of the list are
//! write-locked only to add a block or to release an empty one.
//!
//! # Growing and shrinking
//!
//! A pool starts empty. While it holds fewer than three blocks, a new block is made smaller
//! than the preferred size (1/8, 1/4, 1/2 of it, but at least twice the request), the way VMA
//! does, so a small application does not reserve 256 MiB up front. When a block becomes empty
//! and the pool already holds another empty block, the smaller of the two is released: at most
//! one empty block stays around, so memory goes back to the driver without thrashing.

mod block;
mod failed_request;

pub(crate) use self::block::Block;
use self::block::{Arena, ArenaLayout};
use super::block_list::{thread_shard, BlockList};
use crate::allocation::{BlockRef, MemoryAlloc, Owner};
use crate::device_memory::DeviceMemory;
use crate::layout::{DeviceAlignment, DeviceLayout, DeviceSize};
use crate::suballocator::{AllocationType, Suballocation, Suballocator, SuballocatorError};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// The blocks of one memory type.
pub(crate) struct Pool<S> {
    pub(crate) memory_type_index: u32,
    /// Blocks are handles (reference-counted parts): each copy of the list holds them
    /// inline, so the search reads a block's arenas straight from the list.
    blocks: BlockList<Block<S>>,
    /// The most arenas per block, a power of two. Each thread has one of this many home
    /// slots, and every slot has one home arena in each fully cut block; blocks cut into
    /// fewer arenas (or none) take turns serving the slots, so threads do not share homes
    /// there either.
    home_slots: usize,
    /// Blocks cut into fewer than `home_slots` arenas made so far: decides which slots the
    /// next such block serves, so that they take turns.
    partial_blocks_made: AtomicUsize,
}

/// How a new block should be made, decided by the allocator.
pub(crate) struct NewBlock<'a> {
    /// The allocator's preferred block size for the heap.
    pub preferred_size: DeviceSize,
    /// Whether the first blocks start smaller.
    pub grow: bool,
    /// Makes the memory of the given size, or fails.
    pub allocate_memory: &'a dyn Fn(DeviceSize) -> Result<DeviceMemory, crate::AllocationError>,
}

impl<S: Suballocator + Send + 'static> Pool<S> {
    /// A pool whose blocks are cut into at most `home_slots` arenas (a power of two).
    pub(crate) fn new(memory_type_index: u32, home_slots: usize) -> Arc<Self> {
        debug_assert!(home_slots.is_power_of_two());
        Arc::new(Self {
            memory_type_index,
            blocks: BlockList::new(),
            home_slots,
            partial_blocks_made: AtomicUsize::new(0),
        })
    }

    /// The calling thread's home slot.
    #[inline]
    fn home_slot(&self) -> usize {
        thread_shard() & (self.home_slots - 1)
    }

    /// Runs `f` for every block under the pool's read lock.
    pub(crate) fn for_each_block(&self, mut f: impl FnMut(&Block<S>)) {
        for block in self.blocks.read().iter() {
            f(block);
        }
    }

    fn wrap(
        arena: &Arena<S>,
        (s, block): (Suballocation, BlockRef),
        name: Option<Arc<str>>,
    ) -> MemoryAlloc {
        if let Some(name) = &name {
            arena.set_name(s.offset, name.clone());
        }
        MemoryAlloc::new(
            Owner::block(block, s.handle),
            s.offset,
            s.size,
            s.allocation_type,
            name,
        )
    }

    /// Why an arena did not fit: only a request its suballocator can never serve is an
    /// error; a full or fragmented arena is not.
    fn no_fit(e: SuballocatorError) -> Result<(), crate::AllocationError> {
        match e {
            SuballocatorError::BlockSizeExceeded => {
                Err(crate::AllocationError::SuballocatorBlockSizeExceeded)
            }
            SuballocatorError::OutOfRegionMemory | SuballocatorError::FragmentedRegion => Ok(()),
        }
    }

    fn search(
        &self,
        blocks: &[Block<S>],
        layout: DeviceLayout,
        allocation_type: AllocationType,
        granularity: DeviceAlignment,
        name: &Option<Arc<str>>,
    ) -> Result<Option<MemoryAlloc>, crate::AllocationError> {
        // First pass: the thread's home arena of each block; second pass: the other arenas.
        // Both skip arenas another thread holds right now, so that threads allocating at the
        // same time spread over arenas instead of queueing on one. A single thread never
        // finds an arena busy. Third pass, only if some arena was busy: wait for those.
        // Arena counts are powers of two, so the home arena is a mask away. The hints are
        // checked here, inline: most arenas the walk passes are skipped on them.
        let slot = self.home_slot();
        let mut busy = false;
        let mut split = false;
        macro_rules! try_arena {
            ($arena:expr, wait: $wait:expr, on_busy: $on_busy:expr) => {
                let arena = $arena;
                if arena.may_fit(layout, allocation_type) {
                    match arena.try_allocate(layout, allocation_type, granularity, $wait) {
                        None => $on_busy,
                        Some(Ok(s)) => return Ok(Some(Self::wrap(arena, s, name.clone()))),
                        Some(Err(e)) => Self::no_fit(e)?,
                    }
                }
            };
        }
        for block in blocks {
            let arenas = block.arenas();
            match block.home_index(slot, self.home_slots) {
                Some(i) => {
                    split |= arenas.len() > 1;
                    try_arena!(&arenas[i], wait: false, on_busy: busy = true);
                }
                None => split = true,
            }
        }
        if split {
            for block in blocks {
                let own = block.home_index(slot, self.home_slots);
                for (i, arena) in block.arenas().iter().enumerate() {
                    if Some(i) != own {
                        try_arena!(arena, wait: false, on_busy: busy = true);
                    }
                }
            }
        }
        if busy {
            for arena in blocks.iter().flat_map(|b| b.arenas()) {
                try_arena!(arena, wait: true, on_busy: ());
            }
        }
        Ok(None)
    }

    /// The hot path: suballocates from an existing block under the read lock, or returns
    /// `None` (the caller then takes the full path, which also reports errors).
    #[inline]
    pub(crate) fn allocate_existing(
        &self,
        layout: DeviceLayout,
        allocation_type: AllocationType,
        granularity: DeviceAlignment,
        name: &Option<Arc<str>>,
    ) -> Option<MemoryAlloc> {
        let blocks = self.blocks.read();
        self.search(&blocks, layout, allocation_type, granularity, name)
            .ok()
            .flatten()
    }

    /// Suballocates from an existing block, or (unless `never_allocate`) from a new one.
    pub(crate) fn allocate(
        self: &Arc<Self>,
        layout: DeviceLayout,
        allocation_type: AllocationType,
        granularity: DeviceAlignment,
        name: &Option<Arc<str>>,
        never_allocate: bool,
        new_block: &NewBlock<'_>,
    ) -> Result<MemoryAlloc, crate::AllocationError> {
        let seen = {
            let blocks = self.blocks.read();
            if let Some(a) = self.search(&blocks, layout, allocation_type, granularity, name)? {
                return Ok(a);
            }
            blocks.len()
        };
        if never_allocate {
            return Err(crate::AllocationError::OutOfPoolMemory);
        }
        let mut blocks = self.blocks.write();
        // Another thread may have added (or released) blocks meanwhile: look again.
        if blocks.items().len() != seen {
            if let Some(a) =
                self.search(blocks.items(), layout, allocation_type, granularity, name)?
            {
                return Ok(a);
            }
        }
        let size = layout.size();
        let mut block_size = new_block.preferred_size;
        if new_block.grow {
            let shift = 3usize.saturating_sub(blocks.items().len()) as u32;
            block_size = (block_size >> shift)
                .max(size.saturating_mul(2))
                .min(block_size);
        }
        let memory = {
            let mut attempt = block_size;
            let mut tries = 0;
            loop {
                match (new_block.allocate_memory)(attempt) {
                    Ok(memory) => break memory,
                    Err(e) if e.is_recoverable() && tries < 3 && attempt / 2 >= size => {
                        attempt /= 2;
                        tries += 1;
                    }
                    Err(e) => return Err(e),
                }
            }
        };
        let arenas = ArenaLayout::choose(memory.size(), size, granularity, self.home_slots);
        let serial = if arenas.count < self.home_slots {
            self.partial_blocks_made.fetch_add(1, Ordering::Relaxed)
        } else {
            0
        };
        let block = Block::new(
            memory,
            arenas,
            serial,
            self.home_slots,
            Arc::downgrade(self),
        );
        // The home arena first, then the others (one of them is large enough unless the
        // request's alignment or granularity needs more than the block can give).
        let own = block
            .home_index(self.home_slot(), self.home_slots)
            .unwrap_or(0);
        let order = block.arenas()[own..].iter().chain(&block.arenas()[..own]);
        for arena in order.filter(|a| a.may_fit(layout, allocation_type)) {
            match arena.try_allocate(layout, allocation_type, granularity, true) {
                Some(Ok(s)) => {
                    let alloc = Self::wrap(arena, s, name.clone());
                    blocks.push(block);
                    return Ok(alloc);
                }
                // On error the fresh block is dropped here, which frees its memory.
                Some(Err(e)) => Self::no_fit(e)?,
                None => {}
            }
        }
        Err(crate::AllocationError::OutOfDeviceMemory)
    }

    /// Keeps at most one empty block: releases the smaller ones.
    fn release_empty_blocks(&self) {
        // A first look under the read lock, which allocating threads share: most calls find
        // at most one empty block and need not stop them.
        if self
            .blocks
            .read()
            .iter()
            .filter(|b| b.is_empty())
            .nth(1)
            .is_none()
        {
            return;
        }
        let mut blocks = self.blocks.write();
        let mut empty: smallvec::SmallVec<[usize; 4]> = blocks
            .items()
            .iter()
            .enumerate()
            .filter(|(_, b)| b.is_empty())
            .map(|(i, _)| i)
            .collect();
        if empty.len() <= 1 {
            return;
        }
        // Keep the largest empty block, release the others.
        empty.sort_by_key(|&i| std::cmp::Reverse(blocks.items()[i].memory().size()));
        let mut release = empty[1..].to_vec();
        release.sort_unstable_by(|a, b| b.cmp(a));
        for i in release {
            // Blocks are only referenced by the pool and by live allocations; an empty block
            // has none, so removing it here drops it (and frees its memory) once any
            // in-flight `free` on it returns.
            blocks.remove(i);
        }
    }

    /// Number of blocks.
    pub(crate) fn block_count(&self) -> usize {
        self.blocks.read().len()
    }
}
