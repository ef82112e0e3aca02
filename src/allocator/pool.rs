//! One memory type's pool of blocks, and the blocks themselves.
//!
//! # Locking
//!
//! A pool keeps its blocks in a `RwLock<Vec<Arc<Block>>>`. Allocating takes the read lock
//! and walks the blocks; each block's suballocator sits behind its own `Mutex`, so threads
//! allocating from different blocks, or freeing, do not wait for each other. Each block also
//! publishes its suballocator's `largest_free_range` in an atomic, so the walk skips blocks
//! that cannot fit the request without locking them. The write lock is taken only to add a
//! block or to release an empty one.
//!
//! # Growing and shrinking
//!
//! A pool starts empty. While it holds fewer than three blocks, a new block is made smaller
//! than the preferred size (1/8, 1/4, 1/2 of it, but at least twice the request), the way VMA
//! does, so a small application does not reserve 256 MiB up front. When a block becomes empty
//! and the pool already holds another empty block, the smaller of the two is released: at most
//! one empty block stays around, so memory goes back to the driver without thrashing.

use crate::allocation::{BlockOwner, MemoryAlloc, Owner};
use crate::device_memory::DeviceMemory;
use crate::layout::{DeviceAlignment, DeviceLayout, DeviceSize};
use crate::suballocator::{AllocationType, Suballocation, Suballocator, SuballocatorError};
use parking_lot::{Mutex, RwLock};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

/// A `VkDeviceMemory` block and the suballocator carving it.
pub(crate) struct Block<S> {
    memory: DeviceMemory,
    suballocator: Mutex<S>,
    largest_free: AtomicU64,
    pool: Weak<Pool<S>>,
    /// Names of the named allocations, by offset (unnamed ones are not in it).
    names: Mutex<BTreeMap<DeviceSize, Arc<str>>>,
}

impl<S: Suballocator + Send + 'static> Block<S> {
    pub(crate) fn memory(&self) -> &DeviceMemory {
        &self.memory
    }

    /// Runs `f` on the suballocator under its lock.
    pub(crate) fn with_suballocator<R>(&self, f: impl FnOnce(&S) -> R) -> R {
        f(&self.suballocator.lock())
    }

    /// Runs `f` on the suballocator and the names of the named allocations, under both locks.
    pub(crate) fn with_names<R>(
        &self,
        f: impl FnOnce(&S, &BTreeMap<DeviceSize, Arc<str>>) -> R,
    ) -> R {
        let s = self.suballocator.lock();
        f(&s, &self.names.lock())
    }

    fn try_allocate(
        &self,
        layout: DeviceLayout,
        allocation_type: AllocationType,
        granularity: DeviceAlignment,
    ) -> Result<Suballocation, SuballocatorError> {
        let mut s = self.suballocator.lock();
        let result = s.allocate(layout, allocation_type, granularity);
        self.largest_free
            .store(s.largest_free_range(), Ordering::Relaxed);
        result
    }

    fn is_empty(&self) -> bool {
        self.suballocator.lock().allocation_count() == 0
    }
}

impl<S: Suballocator + Send + 'static> BlockOwner for Block<S> {
    fn memory(&self) -> &DeviceMemory {
        &self.memory
    }

    fn forget_name(&self, offset: DeviceSize) {
        self.names.lock().remove(&offset);
    }

    unsafe fn free(&self, suballocation: Suballocation) {
        let now_empty = {
            let mut s = self.suballocator.lock();
            // SAFETY: forwarded from the caller: the suballocation came from this block's
            // suballocator and is returned once.
            unsafe { s.deallocate(suballocation) };
            self.largest_free
                .store(s.largest_free_range(), Ordering::Relaxed);
            s.allocation_count() == 0
        };
        if now_empty {
            if let Some(pool) = self.pool.upgrade() {
                pool.release_empty_blocks();
            }
        }
    }
}

/// The blocks of one memory type.
pub(crate) struct Pool<S> {
    pub(crate) memory_type_index: u32,
    blocks: RwLock<Vec<Arc<Block<S>>>>,
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
    pub(crate) fn new(memory_type_index: u32) -> Arc<Self> {
        Arc::new(Self {
            memory_type_index,
            blocks: RwLock::new(Vec::new()),
        })
    }

    /// Runs `f` for every block under the pool's read lock.
    pub(crate) fn for_each_block(&self, mut f: impl FnMut(&Block<S>)) {
        for block in self.blocks.read().iter() {
            f(block);
        }
    }

    fn wrap(block: &Arc<Block<S>>, s: Suballocation, name: Option<Arc<str>>) -> MemoryAlloc {
        if let Some(name) = &name {
            block.names.lock().insert(s.offset, name.clone());
        }
        MemoryAlloc::new(
            Owner::block(block.clone() as Arc<dyn BlockOwner>, s.handle),
            s.offset,
            s.size,
            s.allocation_type,
            name,
        )
    }

    fn search(
        blocks: &[Arc<Block<S>>],
        layout: DeviceLayout,
        allocation_type: AllocationType,
        granularity: DeviceAlignment,
        name: &Option<Arc<str>>,
    ) -> Result<Option<MemoryAlloc>, crate::AllocationError> {
        for block in blocks {
            if block.largest_free.load(Ordering::Relaxed) < layout.size() {
                continue;
            }
            match block.try_allocate(layout, allocation_type, granularity) {
                Ok(s) => return Ok(Some(Self::wrap(block, s, name.clone()))),
                Err(SuballocatorError::BlockSizeExceeded) => {
                    return Err(crate::AllocationError::SuballocatorBlockSizeExceeded)
                }
                Err(_) => {}
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
        Self::search(&blocks, layout, allocation_type, granularity, name)
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
            if let Some(a) = Self::search(&blocks, layout, allocation_type, granularity, name)? {
                return Ok(a);
            }
            blocks.len()
        };
        if never_allocate {
            return Err(crate::AllocationError::OutOfPoolMemory);
        }
        let mut blocks = self.blocks.write();
        // Another thread may have added (or released) blocks meanwhile: look again.
        if blocks.len() != seen {
            if let Some(a) = Self::search(&blocks, layout, allocation_type, granularity, name)? {
                return Ok(a);
            }
        }
        let size = layout.size();
        let mut block_size = new_block.preferred_size;
        if new_block.grow {
            let shift = 3usize.saturating_sub(blocks.len()) as u32;
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
        let block = Arc::new(Block {
            largest_free: AtomicU64::new(memory.size()),
            suballocator: Mutex::new(S::new(memory.size())),
            memory,
            pool: Arc::downgrade(self),
            names: Mutex::default(),
        });
        let result = block.try_allocate(layout, allocation_type, granularity);
        match result {
            Ok(s) => {
                let alloc = Self::wrap(&block, s, name.clone());
                blocks.push(block);
                Ok(alloc)
            }
            // The fresh block is dropped here, which frees its memory.
            Err(SuballocatorError::BlockSizeExceeded) => {
                Err(crate::AllocationError::SuballocatorBlockSizeExceeded)
            }
            Err(_) => Err(crate::AllocationError::OutOfDeviceMemory),
        }
    }

    /// Keeps at most one empty block: releases the smaller ones.
    fn release_empty_blocks(&self) {
        let mut blocks = self.blocks.write();
        let mut empty: smallvec::SmallVec<[usize; 4]> = blocks
            .iter()
            .enumerate()
            .filter(|(_, b)| b.is_empty())
            .map(|(i, _)| i)
            .collect();
        if empty.len() <= 1 {
            return;
        }
        // Keep the largest empty block, release the others.
        empty.sort_by_key(|&i| std::cmp::Reverse(blocks[i].memory.size()));
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
