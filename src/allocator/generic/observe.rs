//! Statistics, snapshots and the leak report of a [`GenericMemoryAllocator`].
//!
//! Blocks are walked through their block vectors; dedicated allocations through the
//! allocator's [`DedicatedRegistry`]. Each arena of a block is read under its own lock, so a snapshot
//! taken while other threads allocate is consistent per arena.

use super::GenericMemoryAllocator;
use crate::allocation::Registration;
use crate::allocator::dedicated::DedicatedRegistry;
use crate::allocator::execute::TypeBlocks;
use crate::device::Device;
use crate::device_memory::DeviceMemory;
use crate::stats::{
    leaks_in, log_leaks, AllocatorStatistics, BlockSnapshot, BlockStatistics, LeakedAllocation,
    MemorySnapshot, Statistics, LOG_TARGET,
};
use crate::suballocator::{AllocationType, Suballocator};
use ash::vk::Handle;
use std::sync::Arc;

type CollectLeaks = Box<dyn Fn() -> Vec<LeakedAllocation> + Send + Sync>;

/// What a [`GenericMemoryAllocator`] keeps for observability.
pub(crate) struct Observer {
    dedicated: Arc<DedicatedRegistry>,
    /// Lists the live allocations; run when the allocator is dropped.
    collect_leaks: CollectLeaks,
}

impl Observer {
    pub(super) fn new<S: Suballocator + Send + 'static>(
        device: &Arc<Device>,
        pools: &[Arc<TypeBlocks<S>>],
    ) -> Self {
        let dedicated = Arc::<DedicatedRegistry>::default();
        let (device, pools, registry) = (device.clone(), pools.to_vec(), dedicated.clone());
        let collect_leaks: CollectLeaks = Box::new(move || {
            let mut blocks = block_snapshots(&device, &pools);
            blocks.extend(registry.snapshot());
            leaks_in(&blocks)
        });
        Self {
            dedicated,
            collect_leaks,
        }
    }

    /// Registers a new dedicated allocation of `memory`.
    pub(super) fn register_dedicated(
        &self,
        memory: &DeviceMemory,
        allocation_type: AllocationType,
        name: Option<Arc<str>>,
    ) -> Registration {
        self.dedicated.register(memory, allocation_type, name)
    }
}

impl Drop for Observer {
    fn drop(&mut self) {
        if !log::log_enabled!(target: LOG_TARGET, log::Level::Warn) {
            return;
        }
        let leaks = (self.collect_leaks)();
        log_leaks(
            &leaks,
            log::Level::Warn,
            "GenericMemoryAllocator dropped while allocations are alive (their memory is freed \
             when they are dropped)",
        );
    }
}

fn heap_of(device: &Device, memory_type_index: u32) -> u32 {
    device
        .memory_properties()
        .memory_types
        .get(memory_type_index as usize)
        .map_or(u32::MAX, |t| t.heap_index)
}

fn block_snapshots<S: Suballocator + Send + 'static>(
    device: &Device,
    vecs: &[Arc<TypeBlocks<S>>],
) -> Vec<BlockSnapshot> {
    let mut out = Vec::new();
    for (memory_type_index, vec) in vecs.iter().enumerate() {
        let memory_type_index = memory_type_index as u32;
        let heap_index = heap_of(device, memory_type_index);
        vec.for_each_block(|b| {
            let memory = b.memory();
            out.push(BlockSnapshot {
                memory_type_index,
                heap_index,
                memory: memory.handle().as_raw(),
                size: memory.size(),
                dedicated: false,
                allocation_count: b.allocation_count() as u64,
                ranges: b
                    .with_names(|names| BlockSnapshot::ranges_from(|f| b.for_each_range(f), names)),
            });
        });
    }
    out
}

impl<S: Suballocator + Send + 'static> GenericMemoryAllocator<S> {
    /// Statistics of the allocator's memory: in total, per heap (with the heap's budget), per
    /// memory type, and per block and dedicated allocation. Walks every range of every block
    /// (see [`stats`](crate::stats)).
    pub fn statistics(&self) -> AllocatorStatistics {
        let mut blocks = Vec::new();
        for (memory_type_index, vec) in self.block_vecs().iter().enumerate() {
            let memory_type_index = memory_type_index as u32;
            vec.for_each_block(|block| {
                let memory = block.memory();
                let statistics =
                    Statistics::of_block(memory.size(), block.allocation_count(), |f| {
                        block.for_each_range(f)
                    });
                blocks.push(BlockStatistics {
                    memory_type_index,
                    heap_index: heap_of(&self.device, memory_type_index),
                    memory: memory.handle().as_raw(),
                    size: memory.size(),
                    dedicated: false,
                    statistics,
                });
            });
        }
        self.observer
            .dedicated
            .for_each(|memory_type_index, heap_index, memory, size| {
                blocks.push(BlockStatistics {
                    memory_type_index,
                    heap_index,
                    memory,
                    size,
                    dedicated: true,
                    statistics: Statistics::of_dedicated(size),
                });
            });
        AllocatorStatistics::of_device(&self.device, blocks)
    }

    /// The full state: statistics and every range of every block and dedicated allocation,
    /// with the names of named allocations. Render it with
    /// [`MemorySnapshot::to_json`] or [`MemorySnapshot::to_svg`].
    pub fn snapshot(&self) -> MemorySnapshot {
        let mut blocks = block_snapshots(&self.device, self.block_vecs());
        blocks.extend(self.observer.dedicated.snapshot());
        MemorySnapshot::of_device(&self.device, blocks)
    }

    /// Lists every allocation still alive and logs each one through the `log` facade at the
    /// `warn` level (target [`LOG_TARGET`](crate::stats::LOG_TARGET)). The same report is
    /// logged when the allocator is dropped while allocations are alive.
    pub fn report_leaks(&self) -> Vec<LeakedAllocation> {
        let leaks = (self.observer.collect_leaks)();
        log_leaks(&leaks, log::Level::Warn, "report_leaks");
        leaks
    }
}
