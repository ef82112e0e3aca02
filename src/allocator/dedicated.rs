//! The register of an allocator's live dedicated allocations, for statistics and leak reports.
//!
//! A dedicated [`MemoryAlloc`](crate::MemoryAlloc) owns its memory object, so the allocator
//! would not know about it otherwise. Each one holds a [`Registration`] that takes its entry
//! out of the register when the allocation is dropped. Dedicated allocations are rare and
//! expensive anyway (a `vkAllocateMemory` call each), so one mutex around the register costs
//! nothing noticeable; suballocations never touch it.

use super::pool_name::PoolName;
use crate::allocation::{AllocationMeta, DedicatedRegister, Registration};
use crate::device_memory::MemoryObject;
use crate::layout::DeviceSize;
use crate::stats::{BlockSnapshot, BlockStatistics, RangeSnapshot, Statistics};
use crate::suballocator::{AllocationType, RangeKind};
use ash::vk::Handle;
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// What the register knows about one dedicated allocation.
#[derive(Clone, Debug)]
struct Entry {
    memory_type_index: u32,
    heap_index: u32,
    memory: u64,
    size: DeviceSize,
    allocation_type: AllocationType,
    meta: Option<Arc<AllocationMeta>>,
}

/// The live dedicated allocations of one allocator (or custom pool), by registration order.
#[derive(Debug, Default)]
pub(crate) struct DedicatedRegistry {
    /// The custom pool's name, for the snapshots of a pool's register.
    pool: Option<Arc<PoolName>>,
    entries: Mutex<(u64, BTreeMap<u64, Entry>)>,
    /// Bytes of the live dedicated allocations of each memory type: the allocator's default
    /// block vectors count them as memory in use of their type (see
    /// [`BlockVec::new_counting`](super::block_vec::BlockVec::new_counting)).
    bytes_of_type: [Arc<AtomicU64>; ash::vk::MAX_MEMORY_TYPES],
}

impl DedicatedRegister for DedicatedRegistry {
    fn forget(&self, id: u64) {
        if let Some(e) = self.entries.lock().1.remove(&id) {
            if let Some(bytes) = self.bytes_of_type.get(e.memory_type_index as usize) {
                bytes.fetch_sub(e.size, Ordering::Relaxed);
            }
        }
    }

    fn set_meta(&self, id: u64, meta: Option<Arc<AllocationMeta>>) {
        if let Some(e) = self.entries.lock().1.get_mut(&id) {
            e.meta = meta;
        }
    }
}

impl DedicatedRegistry {
    /// The register of a custom pool named `pool`.
    pub(crate) fn of_pool(pool: Arc<PoolName>) -> Self {
        Self {
            pool: Some(pool),
            ..Self::default()
        }
    }

    /// The bytes of the live dedicated allocations of `memory_type_index` (a counter of its
    /// own for an index out of range).
    pub(crate) fn bytes_of_type(&self, memory_type_index: u32) -> Arc<AtomicU64> {
        self.bytes_of_type
            .get(memory_type_index as usize)
            .cloned()
            .unwrap_or_default()
    }

    /// Registers a dedicated allocation of `memory`.
    pub(crate) fn register(
        self: &Arc<Self>,
        memory: &MemoryObject,
        allocation_type: AllocationType,
        meta: Option<Arc<AllocationMeta>>,
    ) -> Registration {
        let entry = Entry {
            memory_type_index: memory.memory_type_index(),
            heap_index: memory.heap_index(),
            memory: memory.handle().as_raw(),
            size: memory.size(),
            allocation_type,
            meta,
        };
        let mut guard = self.entries.lock();
        if let Some(bytes) = self.bytes_of_type.get(entry.memory_type_index as usize) {
            bytes.fetch_add(entry.size, Ordering::Relaxed);
        }
        let (next, entries) = &mut *guard;
        let id = *next;
        *next = next.wrapping_add(1);
        entries.insert(id, entry);
        Registration {
            register: self.clone(),
            id,
        }
    }

    /// Whether no dedicated allocation is registered.
    pub(crate) fn is_empty(&self) -> bool {
        self.entries.lock().1.is_empty()
    }

    /// The live dedicated allocations as one-range blocks.
    pub(crate) fn snapshot(&self) -> Vec<BlockSnapshot> {
        self.entries
            .lock()
            .1
            .values()
            .map(|e| {
                let mut range =
                    RangeSnapshot::new(0, e.size, RangeKind::Allocated(e.allocation_type));
                range.describe(e.meta.as_deref().into_iter());
                BlockSnapshot {
                    memory_type_index: e.memory_type_index,
                    heap_index: e.heap_index,
                    memory: e.memory,
                    size: e.size,
                    dedicated: true,
                    pool: self.pool.as_ref().map(|p| p.get()),
                    allocation_count: 1,
                    ranges: vec![range],
                }
            })
            .collect()
    }

    /// The statistics of each live dedicated allocation.
    pub(crate) fn statistics(&self) -> Vec<BlockStatistics> {
        self.entries
            .lock()
            .1
            .values()
            .map(|e| BlockStatistics {
                memory_type_index: e.memory_type_index,
                heap_index: e.heap_index,
                memory: e.memory,
                size: e.size,
                dedicated: true,
                pool: self.pool.as_ref().map(|p| p.get()),
                statistics: Statistics::of_dedicated(e.size),
            })
            .collect()
    }
}
