//! Observability: statistics, a JSON dump, an SVG memory map and the leak report.
//!
//! Everything here is plain data and pure functions: no Vulkan call is made in this module.
//! The allocator fills the data in
//! ([`GenericMemoryAllocator::statistics`](crate::GenericMemoryAllocator::statistics),
//! [`GenericMemoryAllocator::snapshot`](crate::GenericMemoryAllocator::snapshot)), and a
//! suballocator used on its own is summed up by [`Statistics::of_suballocator`].
//!
//! # Statistics
//!
//! [`Statistics`] counts memory objects (blocks and dedicated allocations), live allocations,
//! bytes reserved from the driver, bytes in live allocations, and the count, sum, minimum,
//! maximum and average of the allocated and of the free ranges. [`AllocatorStatistics`] has
//! one per memory object, memory type and heap (with the heap's [budget](crate::budget)), and
//! the total. Computing them walks every range of every block under its arenas' locks: cheap
//! enough for a debug overlay once a frame, but not free.
//!
//! # Snapshot
//!
//! [`MemorySnapshot`] adds every range of every memory object, with its kind and the name of
//! the allocation in it (from [`AllocationCreateInfo::name`](crate::AllocationCreateInfo::name)).
//! Blocks remember names only for allocations that have one, so unnamed allocations cost
//! nothing. A snapshot taken while other threads allocate is consistent per block arena, not
//! across arenas or blocks. A block cut into arenas (see
//! [`block_arenas`](crate::GenericMemoryAllocatorCreateInfo::block_arenas)) shows free space
//! that meets at an arena boundary as two free ranges, because no allocation can span it.
//!
//! # JSON dump
//!
//! [`MemorySnapshot::to_json`] writes (schema version [`JSON_SCHEMA_VERSION`]):
//!
//! ```text
//! {
//!   "version": 2,
//!   "total": STATS,
//!   "heaps": [{"index": 0, "flags": ["DEVICE_LOCAL"], "size": BYTES,
//!              "budget": {"usage": BYTES, "budget": BYTES, "crate_usage": BYTES,
//!                         "from_extension": false},
//!              "statistics": STATS}, ...],
//!   "memory_types": [{"index": 0, "heap_index": 0,
//!                     "flags": ["DEVICE_LOCAL", "HOST_VISIBLE"], "statistics": STATS}, ...],
//!   "pools": [{"name": "textures", "memory_type_index": 0, "statistics": STATS}, ...],
//!   "blocks": [{"memory_type_index": 0, "heap_index": 0, "memory": "0x5581f0a0c0",
//!               "size": BYTES, "dedicated": false, "pool": "textures" | null,
//!               "allocation_count": N, "statistics": STATS,
//!               "ranges": [{"offset": 0, "size": BYTES,
//!                           "kind": "free" | "linear" | "non_linear" | "unknown",
//!                           "name": "vertices" | null, "user_data": "..." | null,
//!                           "backtrace": "..." | null}, ...]}, ...]
//! }
//!
//! STATS = {"blocks": N, "dedicated_allocations": N, "allocations": N,
//!          "reserved_bytes": BYTES, "allocated_bytes": BYTES, "free_bytes": BYTES,
//!          "free_ranges": N, "largest_free_range": BYTES,
//!          "allocation_sizes": SIZES, "free_range_sizes": SIZES}
//! SIZES = {"count": N, "total": BYTES, "min": BYTES, "max": BYTES, "avg": NUMBER}
//! ```
//!
//! Integers are exact (up to `u64::MAX`); `avg` is a floating-point number; `memory` is the raw
//! `VkDeviceMemory` handle as a hexadecimal string; `kind` is `linear` for buffers and
//! linear images, `non_linear` for optimal-tiling images. The ranges of a block tile
//! `[0, size)` in offset order; a dedicated allocation is a block with `"dedicated": true` and
//! one range. `min`, `max` and `avg` are 0 when `count` is 0. Heap budgets count every
//! allocator of the device; `from_extension` says whether they come from
//! `VK_EXT_memory_budget` or are estimated (80 % of the heap).
//! `pools` sums up each live [custom pool](crate::MemoryPool), one that holds no memory
//! included (with zero statistics, as VMA lists every pool), and `pool` names the pool a block
//! belongs to (`null`: the allocator's default block vectors); `user_data` is the `Debug` text of an
//! allocation's [user data](crate::MemoryAlloc::set_user_data) and `backtrace` where it was
//! made (with [`DebugOptions::capture_backtraces`](crate::DebugOptions::capture_backtraces)).
//! Version 2 added `pools`, `pool`, `user_data` and `backtrace` to version 1.
//!
//! # VMA's dump format
//!
//! [`MemorySnapshot::to_vma_json`] (or
//! [`GenericMemoryAllocator::to_vma_json`](crate::GenericMemoryAllocator::to_vma_json)) writes
//! the same state in the format of VMA's `vmaBuildStatsString` with the detailed map, which
//! VMA users' tools read (AMD's `GpuMemDumpVis.py` draws it): see [`vma_json`].
//!
//! # Memory map
//!
//! [`MemorySnapshot::to_svg`] draws the snapshot as a standalone SVG picture: one row per
//! memory object under a heading per heap, ranges coloured by kind, dedicated allocations
//! outlined. `cargo run --example memory_map` makes one from a small scene.
//!
//! # Leak report
//!
//! [`MemorySnapshot::leaks`] lists every allocation still alive as a [`LeakedAllocation`]. The
//! allocator logs them through the [`log`] facade (target [`LOG_TARGET`]) when it is dropped
//! with allocations still alive, and on request
//! ([`GenericMemoryAllocator::report_leaks`](crate::GenericMemoryAllocator::report_leaks)).
//! In debug builds a leak cannot go unnoticed: without a logger the report is printed to
//! standard error, and the drop panics; [`LeakCheck`](crate::LeakCheck) says how to opt out.

#![deny(unsafe_code)]

mod format;
mod json;
mod leaks;
mod snapshot;
mod summary;
mod svg;
pub mod vma_json;

pub use self::json::JSON_SCHEMA_VERSION;
pub(crate) use self::leaks::{leaks_in, log_leaks};
pub use self::leaks::{LeakedAllocation, LOG_TARGET};
pub use self::snapshot::{
    AllocatorStatistics, BlockSnapshot, BlockStatistics, HeapStatistics, MemorySnapshot,
    MemoryTypeStatistics, PoolStatistics, RangeSnapshot,
};
pub use self::summary::{SizeStats, Statistics};
pub use self::vma_json::VmaDumpInfo;

impl MemorySnapshot {
    /// Every allocation in the snapshot, as a leak report.
    pub fn leaks(&self) -> Vec<LeakedAllocation> {
        leaks::leaks_in(&self.blocks)
    }
}

#[cfg(test)]
pub(crate) mod sample {
    use super::*;
    use crate::budget::HeapBudget;
    use crate::suballocator::{AllocationType, RangeKind};
    use ash::vk;
    use std::sync::Arc;

    /// Two heaps, three memory types, a block with a nastily named buffer, an image, holes,
    /// and a dedicated allocation.
    pub(crate) fn snapshot() -> MemorySnapshot {
        let range = |offset, size, kind, name: Option<&str>| RangeSnapshot {
            name: name.map(Arc::from),
            ..RangeSnapshot::new(offset, size, kind)
        };
        let linear = RangeKind::Allocated(AllocationType::Linear);
        let image = RangeKind::Allocated(AllocationType::NonLinear);
        let heaps = (0..2)
            .map(|index| HeapStatistics {
                index,
                flags: if index == 0 {
                    vk::MemoryHeapFlags::DEVICE_LOCAL
                } else {
                    vk::MemoryHeapFlags::empty()
                },
                budget: HeapBudget {
                    heap_size: 1 << 30,
                    usage: 3 << 20,
                    budget: (1 << 30) / 10 * 8,
                    crate_usage: 3 << 20,
                    from_extension: false,
                },
                statistics: Statistics::default(),
            })
            .collect();
        let types = vec![
            MemoryTypeStatistics {
                index: 0,
                heap_index: 0,
                property_flags: vk::MemoryPropertyFlags::DEVICE_LOCAL,
                statistics: Statistics::default(),
            },
            MemoryTypeStatistics {
                index: 1,
                heap_index: 1,
                property_flags: vk::MemoryPropertyFlags::HOST_VISIBLE
                    | vk::MemoryPropertyFlags::HOST_COHERENT,
                statistics: Statistics::default(),
            },
        ];
        let blocks = vec![
            BlockSnapshot {
                memory_type_index: 0,
                heap_index: 0,
                memory: 0xdead_beef,
                size: 1 << 20,
                dedicated: false,
                pool: None,
                allocation_count: 3,
                ranges: vec![
                    range(0, 4096, linear, Some("vertices \"<&>\" \\ \n\u{1} ünï")),
                    range(4096, 4096, RangeKind::Free, None),
                    range(8192, 65536, image, Some("albedo")),
                    range(
                        73728,
                        256,
                        RangeKind::Allocated(AllocationType::Unknown),
                        None,
                    ),
                    range(73984, (1 << 20) - 73984, RangeKind::Free, None),
                ],
            },
            BlockSnapshot {
                memory_type_index: 1,
                heap_index: 1,
                memory: u64::MAX,
                size: 2 << 20,
                dedicated: true,
                pool: Some(Arc::from("staging \"pool\"")),
                allocation_count: 1,
                ranges: vec![RangeSnapshot {
                    user_data: Some(Arc::from("Frame { index: 3 }")),
                    backtrace: Some(Arc::from("at main.rs:1")),
                    ..range(0, 2 << 20, linear, Some("staging"))
                }],
            },
        ];
        MemorySnapshot::new(heaps, types, blocks)
    }
}
