//! The allocator-wide views: [`AllocatorStatistics`] (numbers only, cheap) and
//! [`MemorySnapshot`] (every range of every block, for dumps and pictures).

use super::summary::Statistics;
use crate::budget::HeapBudget;
use crate::device::Device;
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
    /// The heap's size, usage and budget ([`Device::heap_budgets`](crate::Device::heap_budgets)),
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
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
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
    /// The object's statistics: one block (or one dedicated allocation) and its ranges.
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
    /// One entry per block and per dedicated allocation.
    pub blocks: Vec<BlockStatistics>,
}

impl AllocatorStatistics {
    /// Rolls `blocks` up into their memory types, heaps and the total. The `statistics` given
    /// in `heaps` and `memory_types` are replaced; a block whose memory type or heap is not
    /// listed only counts in the total.
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
        for b in &blocks {
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
            blocks,
        }
    }

    /// Rolls `blocks` up into the heaps (with their budgets) and memory types of `device`.
    pub fn of_device(device: &Device, blocks: Vec<BlockStatistics>) -> Self {
        Self::new(heap_entries(device), memory_type_entries(device), blocks)
    }
}

/// One entry per heap of `device`, with its budget and empty statistics.
fn heap_entries(device: &Device) -> Vec<HeapStatistics> {
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
fn memory_type_entries(device: &Device) -> Vec<MemoryTypeStatistics> {
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
    /// several named allocations as one range, their names joined by `", "`.
    pub name: Option<Arc<str>>,
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
        Self::ranges_from(|f| suballocator.for_each_range(f), names)
    }

    /// The ranges that `walk` reports, each named from `names`.
    pub(crate) fn ranges_from(
        walk: impl FnOnce(&mut dyn FnMut(RangeInfo)),
        names: &BTreeMap<DeviceSize, Arc<str>>,
    ) -> Vec<RangeSnapshot> {
        let mut ranges = Vec::new();
        walk(&mut |r| {
            let name = match r.kind {
                RangeKind::Free => None,
                RangeKind::Allocated(_) => name_in(names, r.offset, r.size),
            };
            ranges.push(RangeSnapshot {
                offset: r.offset,
                size: r.size,
                kind: r.kind,
                name,
            });
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
            statistics,
        }
    }
}

/// The names of the allocations starting in `[offset, offset + size)`.
fn name_in(
    names: &BTreeMap<DeviceSize, Arc<str>>,
    offset: DeviceSize,
    size: DeviceSize,
) -> Option<Arc<str>> {
    let mut found = names.range(offset..offset.saturating_add(size));
    let first = found.next()?.1;
    let rest: Vec<&Arc<str>> = found.map(|(_, n)| n).collect();
    if rest.is_empty() {
        return Some(first.clone());
    }
    let mut joined = String::from(&**first);
    for n in rest {
        joined.push_str(", ");
        joined.push_str(n);
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

    /// A snapshot of `blocks` on `device`: its heaps (with their budgets) and memory types.
    pub fn of_device(device: &Device, blocks: Vec<BlockSnapshot>) -> Self {
        Self::new(heap_entries(device), memory_type_entries(device), blocks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::suballocator::AllocationType;

    fn range(offset: u64, size: u64, kind: RangeKind) -> RangeSnapshot {
        RangeSnapshot {
            offset,
            size,
            kind,
            name: None,
        }
    }

    #[test]
    fn names_are_found_inside_ranges_and_joined() {
        let mut names = BTreeMap::new();
        names.insert(16, Arc::from("a"));
        names.insert(32, Arc::from("b"));
        names.insert(100, Arc::from("c"));
        assert_eq!(name_in(&names, 0, 16), None);
        assert_eq!(name_in(&names, 0, 17).as_deref(), Some("a"));
        assert_eq!(name_in(&names, 10, 40).as_deref(), Some("a, b"));
        assert_eq!(name_in(&names, 100, 1).as_deref(), Some("c"));
        assert_eq!(name_in(&names, u64::MAX - 1, 5), None);
    }

    #[test]
    fn roll_up_by_type_and_heap() {
        let linear = RangeKind::Allocated(AllocationType::Linear);
        let block = |t, h, dedicated, ranges: Vec<RangeSnapshot>| BlockSnapshot {
            memory_type_index: t,
            heap_index: h,
            memory: 1,
            size: ranges.iter().map(|r| r.size).sum(),
            dedicated,
            allocation_count: ranges.iter().filter(|r| r.kind != RangeKind::Free).count() as u64,
            ranges,
        };
        let heaps = (0..2)
            .map(|index| HeapStatistics {
                index,
                ..Default::default()
            })
            .collect();
        let types = [(0, 0), (1, 1), (2, 1)]
            .into_iter()
            .map(|(index, heap_index)| MemoryTypeStatistics {
                index,
                heap_index,
                ..Default::default()
            })
            .collect();
        let snap = MemorySnapshot::new(
            heaps,
            types,
            vec![
                block(
                    0,
                    0,
                    false,
                    vec![range(0, 10, linear), range(10, 90, RangeKind::Free)],
                ),
                block(1, 1, true, vec![range(0, 50, linear)]),
                block(2, 1, true, vec![range(0, 70, linear)]),
                // Unknown type and heap: counted in the total only.
                block(9, 9, true, vec![range(0, 5, linear)]),
            ],
        );
        let s = &snap.statistics;
        assert_eq!(s.total.block_count, 1);
        assert_eq!(s.total.dedicated_count, 3);
        assert_eq!(s.total.allocation_count, 4);
        assert_eq!(s.total.reserved_bytes, 225);
        assert_eq!(s.total.allocated_bytes(), 135);
        assert_eq!(s.heaps[1].statistics.dedicated_count, 2);
        assert_eq!(s.heaps[1].statistics.allocations.max, 70);
        assert_eq!(s.heaps[0].statistics.free_bytes(), 90);
        assert_eq!(s.memory_types[2].statistics.reserved_bytes, 70);
        assert_eq!(s.blocks.len(), 4);
    }
}
