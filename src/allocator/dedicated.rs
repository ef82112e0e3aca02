//! The register of an allocator's live dedicated allocations, for statistics and leak reports.
//!
//! A dedicated [`MemoryAlloc`](crate::MemoryAlloc) owns its memory object, so the allocator
//! would not know about it otherwise. Each one holds a [`Registration`] that takes its entry
//! out of the register when the allocation is dropped. Dedicated allocations are rare and
//! expensive anyway (a `vkAllocateMemory` call each), so one mutex around the register costs
//! nothing noticeable; suballocations never touch it.

use crate::allocation::{DedicatedRegister, Registration};
use crate::device_memory::DeviceMemory;
use crate::layout::DeviceSize;
use crate::stats::{BlockSnapshot, RangeSnapshot};
use crate::suballocator::{AllocationType, RangeKind};
use ash::vk::Handle;
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::sync::Arc;

/// What the register knows about one dedicated allocation.
#[derive(Clone, Debug)]
struct Entry {
    memory_type_index: u32,
    heap_index: u32,
    memory: u64,
    size: DeviceSize,
    allocation_type: AllocationType,
    name: Option<Arc<str>>,
}

/// The live dedicated allocations of one allocator, by registration order.
#[derive(Debug, Default)]
pub(crate) struct DedicatedRegistry {
    entries: Mutex<(u64, BTreeMap<u64, Entry>)>,
}

impl DedicatedRegister for DedicatedRegistry {
    fn forget(&self, id: u64) {
        self.entries.lock().1.remove(&id);
    }
}

impl DedicatedRegistry {
    /// Registers a dedicated allocation of `memory`.
    pub(crate) fn register(
        self: &Arc<Self>,
        memory: &DeviceMemory,
        allocation_type: AllocationType,
        name: Option<Arc<str>>,
    ) -> Registration {
        let entry = Entry {
            memory_type_index: memory.memory_type_index(),
            heap_index: memory.heap_index(),
            memory: memory.handle().as_raw(),
            size: memory.size(),
            allocation_type,
            name,
        };
        let mut guard = self.entries.lock();
        let (next, entries) = &mut *guard;
        let id = *next;
        *next = next.wrapping_add(1);
        entries.insert(id, entry);
        Registration {
            register: self.clone(),
            id,
        }
    }

    /// The live dedicated allocations as one-range blocks.
    pub(crate) fn snapshot(&self) -> Vec<BlockSnapshot> {
        self.entries
            .lock()
            .1
            .values()
            .map(|e| BlockSnapshot {
                memory_type_index: e.memory_type_index,
                heap_index: e.heap_index,
                memory: e.memory,
                size: e.size,
                dedicated: true,
                allocation_count: 1,
                ranges: vec![RangeSnapshot {
                    offset: 0,
                    size: e.size,
                    kind: RangeKind::Allocated(e.allocation_type),
                    name: e.name.clone(),
                }],
            })
            .collect()
    }

    /// `(memory type, heap, memory, size)` of each live dedicated allocation.
    pub(crate) fn for_each(&self, mut f: impl FnMut(u32, u32, u64, DeviceSize)) {
        for e in self.entries.lock().1.values() {
            f(e.memory_type_index, e.heap_index, e.memory, e.size);
        }
    }
}
