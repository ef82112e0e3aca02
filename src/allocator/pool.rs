//! One memory type's pool of blocks, and the blocks themselves.
//!
//! # Locking
//!
//! A pool keeps its blocks in a [`BlockList`]: one copy of the list per thread shard, each
//! behind its own reader-writer lock, so that allocating threads do not fight over one lock
//! word. Allocating takes the read lock of its shard and walks the blocks; each block's
//! suballocator sits behind its own `Mutex`. The walk first skips blocks another thread holds
//! at that moment and only waits for them if no free block fits, so concurrent threads
//! spread over blocks. Each block publishes its suballocator's `largest_free_range`, and the
//! smallest request that failed in it since its last free, in atomics, so the walk skips
//! blocks that cannot fit the request without locking them. All copies are write-locked
//! only to add a block or to release an empty one.
//!
//! # Growing and shrinking
//!
//! A pool starts empty. While it holds fewer than three blocks, a new block is made smaller
//! than the preferred size (1/8, 1/4, 1/2 of it, but at least twice the request), the way VMA
//! does, so a small application does not reserve 256 MiB up front. When a block becomes empty
//! and the pool already holds another empty block, the smaller of the two is released: at most
//! one empty block stays around, so memory goes back to the driver without thrashing.

use super::block_list::BlockList;
use crate::allocation::{BlockOwner, MemoryAlloc, Owner};
use crate::device_memory::DeviceMemory;
use crate::layout::{DeviceAlignment, DeviceLayout, DeviceSize};
use crate::suballocator::{AllocationType, Suballocation, Suballocator, SuballocatorError};
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

/// The smallest request that failed in a block since the block's last free, packed in one
/// atomic so the block search can read it without the block's lock.
///
/// Without a free in between, a block that could not fit `size` bytes aligned to `a` for a
/// resource of type `t` cannot fit any request of type `t` that is at least as large and at
/// least as strictly aligned either (an offset aligned to the larger power of two is aligned
/// to the smaller one), so the search skips it instead of locking and searching it again.
/// The hint only ever skips blocks that would fail; a stale read costs a wasted try, never a
/// wrong result.
struct FailedRequest(AtomicU64);

impl Default for FailedRequest {
    fn default() -> Self {
        Self(AtomicU64::new(Self::NONE))
    }
}

impl FailedRequest {
    const NONE: u64 = u64::MAX;

    /// Packs size (56 bits), alignment exponent (6 bits) and type (2 bits); sizes too large
    /// to pack are not recorded.
    fn pack(layout: DeviceLayout, allocation_type: AllocationType) -> Option<u64> {
        let size = layout.size();
        let ty = match allocation_type {
            AllocationType::Unknown => 0,
            AllocationType::Linear => 1,
            AllocationType::NonLinear => 2,
        };
        (size < 1 << 56).then(|| size << 8 | (layout.alignment().log2() as u64) << 2 | ty)
    }

    /// Called under the block's lock after a failed allocation.
    fn record(&self, layout: DeviceLayout, allocation_type: AllocationType) {
        let Some(packed) = Self::pack(layout, allocation_type) else {
            return;
        };
        let old = self.0.load(Ordering::Relaxed);
        if old == Self::NONE || packed >> 8 < old >> 8 {
            self.0.store(packed, Ordering::Relaxed);
        }
    }

    /// Called under the block's lock after a free.
    #[inline]
    fn clear(&self) {
        if self.0.load(Ordering::Relaxed) != Self::NONE {
            self.0.store(Self::NONE, Ordering::Relaxed);
        }
    }

    /// Whether the request must fail in this block, given the recorded failure.
    #[inline]
    fn implies_failure(&self, layout: DeviceLayout, allocation_type: AllocationType) -> bool {
        let old = self.0.load(Ordering::Relaxed);
        if old == Self::NONE {
            return false;
        }
        let Some(new) = Self::pack(layout, allocation_type) else {
            return false;
        };
        new & 3 == old & 3 && new >> 8 >= old >> 8 && (new >> 2) & 63 >= (old >> 2) & 63
    }
}

/// A `VkDeviceMemory` block and the suballocator carving it.
pub(crate) struct Block<S> {
    memory: DeviceMemory,
    suballocator: Mutex<S>,
    largest_free: AtomicU64,
    /// The smallest request that failed in this block since its last free.
    failed: FailedRequest,
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

    /// Allocates under the suballocator's lock; when `wait` is false and another thread holds
    /// the lock, returns `None` at once.
    fn try_allocate(
        &self,
        layout: DeviceLayout,
        allocation_type: AllocationType,
        granularity: DeviceAlignment,
        wait: bool,
    ) -> Option<Result<Suballocation, SuballocatorError>> {
        let mut s = if wait {
            self.suballocator.lock()
        } else {
            self.suballocator.try_lock()?
        };
        Some(self.allocate_locked(&mut s, layout, allocation_type, granularity))
    }

    /// Allocates from the locked suballocator `s` and updates the block's hints.
    fn allocate_locked(
        &self,
        s: &mut S,
        layout: DeviceLayout,
        allocation_type: AllocationType,
        granularity: DeviceAlignment,
    ) -> Result<Suballocation, SuballocatorError> {
        let result = s.allocate(layout, allocation_type, granularity);
        self.publish_largest_free(s);
        if matches!(
            result,
            Err(SuballocatorError::FragmentedRegion | SuballocatorError::OutOfRegionMemory)
        ) {
            // Recorded under the suballocator's lock, so a concurrent free (which clears it
            // under the same lock) cannot be overwritten by a stale failure.
            self.failed.record(layout, allocation_type);
        }
        result
    }

    /// Publishes the suballocator's bound for lock-free reads, writing only on change so
    /// that threads do not steal the cache line from each other needlessly.
    #[inline]
    fn publish_largest_free(&self, s: &S) {
        let largest = s.largest_free_range();
        if self.largest_free.load(Ordering::Relaxed) != largest {
            self.largest_free.store(largest, Ordering::Relaxed);
        }
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
            self.failed.clear();
            self.publish_largest_free(&s);
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
    blocks: BlockList<Arc<Block<S>>>,
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
            blocks: BlockList::new(),
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
        // First pass: skip blocks another thread holds right now, so that threads allocating
        // at the same time spread over blocks instead of queueing on one. A single thread
        // never finds a block busy, so its packing is that of a plain first fit. Second pass,
        // only if some block was busy: wait for those.
        let mut busy = false;
        for wait in [false, true] {
            for block in blocks {
                if block.largest_free.load(Ordering::Relaxed) < layout.size()
                    || block.failed.implies_failure(layout, allocation_type)
                {
                    continue;
                }
                match block.try_allocate(layout, allocation_type, granularity, wait) {
                    None => busy = true,
                    Some(Ok(s)) => return Ok(Some(Self::wrap(block, s, name.clone()))),
                    Some(Err(SuballocatorError::BlockSizeExceeded)) => {
                        return Err(crate::AllocationError::SuballocatorBlockSizeExceeded)
                    }
                    Some(Err(_)) => {}
                }
            }
            if !busy {
                break;
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
        if blocks.items().len() != seen {
            if let Some(a) =
                Self::search(blocks.items(), layout, allocation_type, granularity, name)?
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
        let block = Arc::new(Block {
            largest_free: AtomicU64::new(memory.size()),
            failed: FailedRequest::default(),
            suballocator: Mutex::new(S::new(memory.size())),
            memory,
            pool: Arc::downgrade(self),
            names: Mutex::default(),
        });
        let result = block.allocate_locked(
            &mut block.suballocator.lock(),
            layout,
            allocation_type,
            granularity,
        );
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
        empty.sort_by_key(|&i| std::cmp::Reverse(blocks.items()[i].memory.size()));
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

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(size: u64, alignment: u64) -> DeviceLayout {
        DeviceLayout::from_size_alignment(size, alignment).unwrap()
    }

    #[test]
    fn a_failure_implies_only_larger_stricter_requests_of_the_same_type() {
        use AllocationType::*;
        let f = FailedRequest::default();
        assert!(!f.implies_failure(layout(1 << 40, 1 << 20), Linear));
        f.record(layout(4096, 256), Linear);
        assert!(f.implies_failure(layout(4096, 256), Linear));
        assert!(f.implies_failure(layout(8192, 4096), Linear));
        assert!(!f.implies_failure(layout(4095, 256), Linear), "smaller");
        assert!(
            !f.implies_failure(layout(8192, 128), Linear),
            "looser alignment"
        );
        assert!(
            !f.implies_failure(layout(8192, 256), NonLinear),
            "other type"
        );
        // A larger failure does not replace a smaller one; a smaller one does.
        f.record(layout(1 << 20, 1), Linear);
        assert!(f.implies_failure(layout(4096, 256), Linear));
        f.record(layout(1024, 512), Linear);
        assert!(f.implies_failure(layout(1024, 512), Linear));
        assert!(!f.implies_failure(layout(4096, 256), Linear));
        f.clear();
        assert!(!f.implies_failure(layout(1 << 30, 1 << 12), Linear));
        // Sizes too large to pack are never recorded nor implied.
        f.record(layout(1 << 57, 1), Unknown);
        assert!(!f.implies_failure(layout(1 << 58, 1), Unknown));
    }
}
