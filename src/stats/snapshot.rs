//! The allocator-wide views: [`AllocatorStatistics`] (numbers only, cheap) and
//! [`MemorySnapshot`] (every range of every block, for dumps and pictures).

use super::summary::Statistics;
use crate::allocation::{AllocationMeta, MetaMap};
use crate::budget::HeapBudget;
use crate::device::MemoryDevice;
use crate::layout::DeviceSize;
use crate::suballocator::{RangeInfo, RangeKind, Suballocator};
use ash::vk;
use std::collections::BTreeMap;
use std::sync::Arc;

/// One memory heap: its flags, its budget and the statistics of this allocator's memory in it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HeapStatistics {
    /// The heap index.
    pub index: u32,
    /// The heap's flags.
    pub flags: vk::MemoryHeapFlags,
    /// The heap's size, usage and budget ([`MemoryDevice::heap_budgets`](crate::MemoryDevice::heap_budgets)),
    /// which count every allocator of the device, not only this one.
    pub budget: HeapBudget,
    /// This allocator's memory in the heap.
    pub statistics: Statistics,
}

/// One memory type and the statistics of this allocator's memory of that type.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemoryTypeStatistics {
    /// The memory type index.
    pub index: u32,
    /// The heap the type allocates from.
    pub heap_index: u32,
    /// The type's property flags.
    pub property_flags: vk::MemoryPropertyFlags,
    /// This allocator's memory of this type.
    pub statistics: Statistics,
}

/// One memory object: a block, or a dedicated allocation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BlockStatistics {
    /// The memory type of the object.
    pub memory_type_index: u32,
    /// The heap of that memory type.
    pub heap_index: u32,
    /// The raw `VkDeviceMemory` handle, to match objects against other tools' output.
    pub memory: u64,
    /// The size of the object.
    pub size: DeviceSize,
    /// Whether this is a dedicated allocation rather than a shared block.
    pub dedicated: bool,
    /// The name of the custom pool the object belongs to (see
    /// [`MemoryPool`](crate::MemoryPool)), or `None` for the allocator's default block vectors.
    pub pool: Option<Arc<str>>,
    /// The object's statistics: one block (or one dedicated allocation) and its ranges.
    pub statistics: Statistics,
}

/// The memory of one custom pool (see [`MemoryPool`](crate::MemoryPool)).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PoolStatistics {
    /// The pool's name (pools of the same name and memory type are summed up together).
    pub name: Arc<str>,
    /// The pool's memory type.
    pub memory_type_index: u32,
    /// The pool's blocks and dedicated allocations.
    pub statistics: Statistics,
}

/// Statistics of a whole allocator: in total, per heap, per memory type and per memory object.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AllocatorStatistics {
    /// Everything together.
    pub total: Statistics,
    /// One entry per heap of the device, in index order.
    pub heaps: Vec<HeapStatistics>,
    /// One entry per memory type of the device, in index order.
    pub memory_types: Vec<MemoryTypeStatistics>,
    /// One entry per live custom pool, by name and memory type, also for a pool that holds
    /// no memory (then with zero statistics).
    pub pools: Vec<PoolStatistics>,
    /// One entry per block and per dedicated allocation.
    pub blocks: Vec<BlockStatistics>,
}

impl AllocatorStatistics {
    /// Rolls `blocks` up into their memory types, heaps, custom pools and the total. The
    /// `statistics` given in `heaps` and `memory_types` are replaced; a block whose memory type
    /// or heap is not listed only counts in the total.
    pub fn new(
        mut heaps: Vec<HeapStatistics>,
        mut memory_types: Vec<MemoryTypeStatistics>,
        blocks: Vec<BlockStatistics>,
    ) -> Self {
        for h in &mut heaps {
            h.statistics = Statistics::default();
        }
        for t in &mut memory_types {
            t.statistics = Statistics::default();
        }
        let mut total = Statistics::default();
        let mut pools: Vec<PoolStatistics> = Vec::new();
        for b in &blocks {
            if let Some(name) = &b.pool {
                let i = match pools
                    .iter()
                    .position(|p| &p.name == name && p.memory_type_index == b.memory_type_index)
                {
                    Some(i) => i,
                    None => {
                        pools.push(PoolStatistics {
                            name: name.clone(),
                            memory_type_index: b.memory_type_index,
                            statistics: Statistics::default(),
                        });
                        pools.len() - 1
                    }
                };
                pools[i].statistics.merge(&b.statistics);
            }
            if let Some(t) = memory_types
                .iter_mut()
                .find(|t| t.index == b.memory_type_index)
            {
                t.statistics.merge(&b.statistics);
            }
            if let Some(h) = heaps.iter_mut().find(|h| h.index == b.heap_index) {
                h.statistics.merge(&b.statistics);
            }
            total.merge(&b.statistics);
        }
        Self {
            total,
            heaps,
            memory_types,
            pools,
            blocks,
        }
    }

    /// Rolls `blocks` up into the heaps (with their budgets) and memory types of `device`.
    pub fn of_device(device: &MemoryDevice, blocks: Vec<BlockStatistics>) -> Self {
        Self::new(heap_entries(device), memory_type_entries(device), blocks)
    }

    /// Lists each custom pool of `pools` (name and memory type) that no block named: a live
    /// pool that holds no memory, with zero statistics (VMA lists every custom pool).
    pub(crate) fn list_pools(mut self, pools: Vec<(Arc<str>, u32)>) -> Self {
        for (name, memory_type_index) in pools {
            let listed = self
                .pools
                .iter()
                .any(|p| p.name == name && p.memory_type_index == memory_type_index);
            if !listed {
                self.pools.push(PoolStatistics {
                    name,
                    memory_type_index,
                    statistics: Statistics::default(),
                });
            }
        }
        self
    }
}

/// One entry per heap of `device`, with its budget and empty statistics.
fn heap_entries(device: &MemoryDevice) -> Vec<HeapStatistics> {
    let budgets = device.heap_budgets();
    device
        .memory_properties()
        .memory_heaps
        .iter()
        .zip(budgets)
        .enumerate()
        .map(|(index, (heap, budget))| HeapStatistics {
            index: index as u32,
            flags: heap.flags,
            budget,
            statistics: Statistics::default(),
        })
        .collect()
}

/// One entry per memory type of `device`, with empty statistics.
fn memory_type_entries(device: &MemoryDevice) -> Vec<MemoryTypeStatistics> {
    device
        .memory_properties()
        .memory_types
        .iter()
        .enumerate()
        .map(|(index, t)| MemoryTypeStatistics {
            index: index as u32,
            heap_index: t.heap_index,
            property_flags: t.property_flags,
            statistics: Statistics::default(),
        })
        .collect()
}

/// One range of a block in a [`MemorySnapshot`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RangeSnapshot {
    /// Start of the range in its memory object.
    pub offset: DeviceSize,
    /// Length of the range.
    pub size: DeviceSize,
    /// Free, or allocated for a buffer (`Linear`), an image (`NonLinear`) or unknown.
    pub kind: RangeKind,
    /// The name of the allocation in the range, if it has one. When a suballocator reports
    /// several named allocations as one range, their names joined by `", "` (the same for
    /// the other texts).
    pub name: Option<Arc<str>>,
    /// The `Debug` text of the allocation's [user data](crate::MemoryAlloc::set_user_data).
    pub user_data: Option<Arc<str>>,
    /// Where the allocation was made, when the allocator captures backtraces.
    pub backtrace: Option<Arc<str>>,
}

impl RangeSnapshot {
    /// A range with no name, user data or backtrace.
    pub fn new(offset: DeviceSize, size: DeviceSize, kind: RangeKind) -> Self {
        Self {
            offset,
            size,
            kind,
            name: None,
            user_data: None,
            backtrace: None,
        }
    }
}

/// One memory object and all its ranges.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockSnapshot {
    /// The memory type of the object.
    pub memory_type_index: u32,
    /// The heap of that memory type.
    pub heap_index: u32,
    /// The raw `VkDeviceMemory` handle.
    pub memory: u64,
    /// The size of the object.
    pub size: DeviceSize,
    /// Whether this is a dedicated allocation (then it has exactly one allocated range).
    pub dedicated: bool,
    /// The name of the custom pool the object belongs to, or `None` for the allocator's
    /// default block vectors.
    pub pool: Option<Arc<str>>,
    /// The number of live allocations in the object.
    pub allocation_count: u64,
    /// The ranges in increasing offset order, tiling `[0, size)`.
    pub ranges: Vec<RangeSnapshot>,
}

impl BlockSnapshot {
    /// The ranges of a region managed by `suballocator`, each named from `names` (allocation
    /// offset to name, for the named allocations only).
    pub fn ranges_of<S: Suballocator + ?Sized>(
        suballocator: &S,
        names: &BTreeMap<DeviceSize, Arc<str>>,
    ) -> Vec<RangeSnapshot> {
        let metas: MetaMap = names
            .iter()
            .filter_map(|(&offset, name)| {
                Some((offset, AllocationMeta::of(Some(name.clone()), None, None)?))
            })
            .collect();
        Self::ranges_from(|f| suballocator.for_each_range(f), &metas)
    }

    /// The ranges that `walk` reports, with the metadata of the allocations in them.
    pub(crate) fn ranges_from(
        walk: impl FnOnce(&mut dyn FnMut(RangeInfo)),
        metas: &MetaMap,
    ) -> Vec<RangeSnapshot> {
        let mut ranges = Vec::new();
        walk(&mut |r| {
            let mut range = RangeSnapshot::new(r.offset, r.size, r.kind);
            if let RangeKind::Allocated(_) = r.kind {
                range.describe(
                    metas
                        .range(r.offset..r.offset.saturating_add(r.size))
                        .map(|(_, m)| &**m),
                );
            }
            ranges.push(range);
        });
        ranges
    }

    /// The object's statistics, computed from its ranges.
    pub fn statistics(&self) -> BlockStatistics {
        let mut statistics = Statistics {
            block_count: u64::from(!self.dedicated),
            dedicated_count: u64::from(self.dedicated),
            allocation_count: self.allocation_count,
            reserved_bytes: self.size,
            ..Statistics::default()
        };
        for r in &self.ranges {
            statistics.add_range(crate::suballocator::RangeInfo {
                offset: r.offset,
                size: r.size,
                kind: r.kind,
            });
        }
        BlockStatistics {
            memory_type_index: self.memory_type_index,
            heap_index: self.heap_index,
            memory: self.memory,
            size: self.size,
            dedicated: self.dedicated,
            pool: self.pool.clone(),
            statistics,
        }
    }
}

impl RangeSnapshot {
    /// Fills in the name, user data and backtrace texts of the allocations `metas` (those
    /// starting in the range), joined by `", "` when there are several.
    pub(crate) fn describe<'a>(&mut self, metas: impl Iterator<Item = &'a AllocationMeta> + Clone) {
        self.name = join(metas.clone().filter_map(|m| m.name.clone()));
        self.user_data = join(metas.clone().filter_map(|m| m.user_data_text()));
        self.backtrace = join(metas.filter_map(|m| m.backtrace_text()));
    }
}

/// The texts joined by `", "`, or `None` when there are none.
fn join(mut texts: impl Iterator<Item = Arc<str>>) -> Option<Arc<str>> {
    let first = texts.next()?;
    let rest: Vec<Arc<str>> = texts.collect();
    if rest.is_empty() {
        return Some(first);
    }
    let mut joined = String::from(&*first);
    for t in rest {
        joined.push_str(", ");
        joined.push_str(&t);
    }
    Some(joined.into())
}

/// The full state of an allocator: its statistics and every range of every memory object.
///
/// Render it with [`to_json`](Self::to_json) or [`to_svg`](Self::to_svg), or list what is still
/// allocated with [`leaks`](Self::leaks).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemorySnapshot {
    /// The statistics, computed from `blocks`.
    pub statistics: AllocatorStatistics,
    /// Every block and dedicated allocation, blocks first, by memory type.
    pub blocks: Vec<BlockSnapshot>,
}

impl MemorySnapshot {
    /// A snapshot of `blocks`, with the statistics rolled up into `heaps` and `memory_types`
    /// (see [`AllocatorStatistics::new`]).
    pub fn new(
        heaps: Vec<HeapStatistics>,
        memory_types: Vec<MemoryTypeStatistics>,
        blocks: Vec<BlockSnapshot>,
    ) -> Self {
        let block_stats = blocks.iter().map(BlockSnapshot::statistics).collect();
        Self {
            statistics: AllocatorStatistics::new(heaps, memory_types, block_stats),
            blocks,
        }
    }

    /// Lists each custom pool of `pools` that no block named (see
    /// [`AllocatorStatistics::list_pools`]).
    pub(crate) fn list_pools(mut self, pools: Vec<(Arc<str>, u32)>) -> Self {
        self.statistics = self.statistics.list_pools(pools);
        self
    }

    /// A snapshot of `blocks` on `device`: its heaps (with their budgets) and memory types.
    pub fn of_device(device: &MemoryDevice, blocks: Vec<BlockSnapshot>) -> Self {
        Self::new(heap_entries(device), memory_type_entries(device), blocks)
    }
}

#[cfg(test)]
mod tests;
