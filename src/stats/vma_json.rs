//! VMA's JSON dump format, for the tools that read it.
//!
//! Vulkan Memory Allocator writes its state with `vmaBuildStatsString` (with the detailed map
//! on), and AMD's `GpuMemDumpVis.py` draws that JSON as a picture of every block. A VMA user's
//! scripts and that tool read [`MemorySnapshot::to_vma_json`]'s output unchanged. The format,
//! as VMA's `GpuMemDump.schema.json` describes it:
//!
//! - `"General"`: `"API"` (`"Vulkan"`), `"GPU"` (the device name), and VMA's extra facts
//!   (`"apiVersion"`, `"deviceType"`, `"maxMemoryAllocationCount"`,
//!   `"bufferImageGranularity"`, `"nonCoherentAtomSize"`, `"memoryHeapCount"`,
//!   `"memoryTypeCount"`);
//! - `"Total"`: statistics of everything (below);
//! - `"MemoryInfo"`: `"Heap N"` for every heap, with its `"Flags"`, `"Size"`, `"Budget"`
//!   (`"BudgetBytes"`, `"UsageBytes"`), `"Stats"`, and `"MemoryPools"`: `"Type M"` for every
//!   memory type of the heap, with its `"Flags"` and `"Stats"`;
//! - `"DefaultPools"`: `"Type M"` for every memory type: `"PreferredBlockSize"`, `"Blocks"`
//!   (by block number: `"TotalBytes"`, `"UnusedBytes"`, `"Allocations"`, `"UnusedRanges"`
//!   and the `"Suballocations"`, each `"Offset"`, `"Type"`, `"Size"` and, unless free,
//!   `"Usage"` and the `"Name"` if any) and `"DedicatedAllocations"` (`"Type"`, `"Size"`,
//!   `"Usage"`, `"Name"`);
//! - `"CustomPools"`: `"Type M"`: an array of the custom pools of that memory type, each with
//!   its `"Name"`, `"Flags"`, `"PreferredBlockSize"`, `"Blocks"` and `"DedicatedAllocations"`.
//!
//! A `"Stats"` object has `"BlockCount"` (memory objects: blocks and dedicated allocations,
//! as VMA counts them), `"BlockBytes"`, `"AllocationCount"`, `"AllocationBytes"`,
//! `"UnusedRangeCount"`, and `"AllocationSizeMin"` / `"AllocationSizeMax"` and
//! `"UnusedRangeSizeMin"` / `"UnusedRangeSizeMax"` when there are any.
//!
//! # What differs from VMA's own dumps
//!
//! - Suballocation types: ash-memory knows whether a range is linear or not, not whether it
//!   is a buffer: [`Linear`](crate::AllocationType::Linear) ranges (buffers and linear
//!   images) are written as `"BUFFER"`, [`NonLinear`](crate::AllocationType::NonLinear) as
//!   `"IMAGE_OPTIMAL"`, [`Unknown`](crate::AllocationType::Unknown) as `"UNKNOWN"`.
//! - `"Usage"` (the resource's usage flags, which the tool uses for colors) is 0: allocations
//!   do not keep their resource's flags.
//! - User data is not written: VMA's `"CustomData"` is a pointer in hex, and ash-memory's user
//!   data is a value with a `Debug` text (which the crate's own [JSON dump](super#json-dump)
//!   carries).
//! - Allocation sizes are those of the ranges the suballocators hold (see
//!   [`Statistics`]), and a custom pool's `"PreferredBlockSize"` is the size
//!   of its largest block.
//! - `"MapRefCount"` is left out (the schema makes it optional): blocks of host-visible memory
//!   stay mapped for their whole life.

use super::format::{heap_flag_names, json_string, memory_property_names};
use super::snapshot::{BlockSnapshot, MemorySnapshot};
use super::summary::Statistics;
use crate::layout::DeviceSize;
use crate::suballocator::{AllocationType, RangeKind};
use std::fmt::{self, Write};

/// What VMA's dump says about the device and the allocator beyond a [`MemorySnapshot`]: its
/// `"General"` section and the default block vectors' block sizes. [`GenericMemoryAllocator::to_vma_json`](crate::GenericMemoryAllocator::to_vma_json)
/// fills it in from the device and the allocator.
///
/// Build it with `..Default::default()`: new fields may be added.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VmaDumpInfo {
    /// The device name (`VkPhysicalDeviceProperties::deviceName`). The default value is empty.
    pub gpu: String,
    /// The device's Vulkan version (`apiVersion`). The default value is 0.
    pub api_version: u32,
    /// `VkPhysicalDeviceType` as a number (2: discrete, 1: integrated, 4: CPU). The default
    /// value is 0 (other).
    pub device_type: i32,
    /// `maxMemoryAllocationCount`. The default value is 0.
    pub max_memory_allocation_count: u32,
    /// `bufferImageGranularity`. The default value is 0.
    pub buffer_image_granularity: DeviceSize,
    /// `nonCoherentAtomSize`. The default value is 0.
    pub non_coherent_atom_size: DeviceSize,
    /// The block size of the default block vector of each memory type, by memory type index (0 for
    /// a type that has none). The default value is empty (all 0).
    pub preferred_block_sizes: Vec<DeviceSize>,
    #[doc(hidden)]
    pub _ne: crate::non_exhaustive::NonExhaustive,
}

impl MemorySnapshot {
    /// The snapshot in VMA's JSON dump format (see [the format](crate::stats::vma_json)), with
    /// the facts of `info` in its `"General"` section.
    pub fn to_vma_json(&self, info: &VmaDumpInfo) -> String {
        let mut out = String::new();
        // Writing to a `String` cannot fail.
        let _ = self.write_vma_json(info, &mut out);
        out
    }

    /// Writes the snapshot in VMA's JSON dump format to `out`.
    pub fn write_vma_json(&self, info: &VmaDumpInfo, out: &mut impl Write) -> fmt::Result {
        let s = &self.statistics;
        out.write_str("{\n\"General\": {\"API\": \"Vulkan\", \"apiVersion\": ")?;
        json_string(
            out,
            &format!(
                "{}.{}.{}",
                ash::vk::api_version_major(info.api_version),
                ash::vk::api_version_minor(info.api_version),
                ash::vk::api_version_patch(info.api_version)
            ),
        )?;
        out.write_str(", \"GPU\": ")?;
        json_string(out, &info.gpu)?;
        write!(
            out,
            ", \"deviceType\": {}, \"maxMemoryAllocationCount\": {}, \
             \"bufferImageGranularity\": {}, \"nonCoherentAtomSize\": {}, \
             \"memoryHeapCount\": {}, \"memoryTypeCount\": {}}},\n\"Total\": ",
            info.device_type,
            info.max_memory_allocation_count,
            info.buffer_image_granularity,
            info.non_coherent_atom_size,
            s.heaps.len(),
            s.memory_types.len()
        )?;
        write_stats(out, &s.total)?;

        out.write_str(",\n\"MemoryInfo\": {")?;
        for (i, h) in s.heaps.iter().enumerate() {
            out.write_str(if i == 0 { "\n  " } else { ",\n  " })?;
            write!(out, "\"Heap {}\": {{\"Flags\": ", h.index)?;
            write_names(out, &heap_flag_names(h.flags))?;
            write!(
                out,
                ", \"Size\": {}, \"Budget\": {{\"BudgetBytes\": {}, \"UsageBytes\": {}}}, \
                 \"Stats\": ",
                h.budget.heap_size, h.budget.budget, h.budget.usage
            )?;
            write_stats(out, &h.statistics)?;
            out.write_str(", \"MemoryPools\": {")?;
            let types = s.memory_types.iter().filter(|t| t.heap_index == h.index);
            for (j, t) in types.enumerate() {
                out.write_str(if j == 0 { "\n    " } else { ",\n    " })?;
                write!(out, "\"Type {}\": {{\"Flags\": ", t.index)?;
                write_names(out, &memory_property_names(t.property_flags))?;
                out.write_str(", \"Stats\": ")?;
                write_stats(out, &t.statistics)?;
                out.write_char('}')?;
            }
            out.write_str("}}")?;
        }

        out.write_str("\n},\n\"DefaultPools\": {")?;
        for (i, t) in s.memory_types.iter().enumerate() {
            out.write_str(if i == 0 { "\n  " } else { ",\n  " })?;
            let preferred = info
                .preferred_block_sizes
                .get(t.index as usize)
                .copied()
                .unwrap_or(0);
            write!(
                out,
                "\"Type {}\": {{\"PreferredBlockSize\": {preferred}, ",
                t.index
            )?;
            let of_type = |b: &&BlockSnapshot| b.pool.is_none() && b.memory_type_index == t.index;
            write_pool_memory(out, self.blocks.iter().filter(of_type), "    ")?;
            out.write_char('}')?;
        }

        out.write_str("\n},\n\"CustomPools\": {")?;
        let mut types: Vec<u32> = s.pools.iter().map(|p| p.memory_type_index).collect();
        types.sort_unstable();
        types.dedup();
        for (i, &type_index) in types.iter().enumerate() {
            out.write_str(if i == 0 { "\n  " } else { ",\n  " })?;
            write!(out, "\"Type {type_index}\": [")?;
            let pools = s.pools.iter().filter(|p| p.memory_type_index == type_index);
            for (j, p) in pools.enumerate() {
                out.write_str(if j == 0 { "\n    " } else { ",\n    " })?;
                let blocks = || {
                    self.blocks.iter().filter(move |b| {
                        b.memory_type_index == type_index && b.pool.as_deref() == Some(&*p.name)
                    })
                };
                let preferred = blocks()
                    .filter(|b| !b.dedicated)
                    .map(|b| b.size)
                    .max()
                    .unwrap_or(0);
                out.write_str("{\"Name\": ")?;
                json_string(out, &p.name)?;
                write!(
                    out,
                    ", \"Flags\": [], \"PreferredBlockSize\": {preferred}, "
                )?;
                write_pool_memory(out, blocks(), "      ")?;
                out.write_char('}')?;
            }
            out.write_str("\n  ]")?;
        }
        out.write_str("\n}\n}\n")
    }
}

/// `"Blocks": {...}, "DedicatedAllocations": [...]` of one pool's memory objects.
fn write_pool_memory<'a>(
    out: &mut impl Write,
    objects: impl Iterator<Item = &'a BlockSnapshot> + Clone,
    indent: &str,
) -> fmt::Result {
    out.write_str("\"Blocks\": {")?;
    for (i, b) in objects.clone().filter(|b| !b.dedicated).enumerate() {
        write!(out, "{}\n{indent}\"{i}\": ", if i == 0 { "" } else { "," })?;
        write_block(out, b, indent)?;
    }
    out.write_str("}, \"DedicatedAllocations\": [")?;
    for (i, b) in objects.filter(|b| b.dedicated).enumerate() {
        write!(out, "{}\n{indent}", if i == 0 { "" } else { "," })?;
        let kind = b
            .ranges
            .iter()
            .find_map(|r| match r.kind {
                RangeKind::Allocated(t) => Some(t),
                RangeKind::Free => None,
            })
            .unwrap_or(AllocationType::Unknown);
        write!(
            out,
            "{{\"Type\": \"{}\", \"Size\": {}, \"Usage\": 0",
            type_name(kind),
            b.size
        )?;
        if let Some(name) = b.ranges.iter().find_map(|r| r.name.as_deref()) {
            out.write_str(", \"Name\": ")?;
            json_string(out, name)?;
        }
        out.write_char('}')?;
    }
    out.write_char(']')
}

fn write_block(out: &mut impl Write, b: &BlockSnapshot, indent: &str) -> fmt::Result {
    let free = b.ranges.iter().filter(|r| r.kind == RangeKind::Free);
    let unused_bytes: DeviceSize = free.clone().map(|r| r.size).sum();
    write!(
        out,
        "{{\"TotalBytes\": {}, \"UnusedBytes\": {unused_bytes}, \"Allocations\": {}, \
         \"UnusedRanges\": {}, \"Suballocations\": [",
        b.size,
        b.allocation_count,
        free.count()
    )?;
    for (i, r) in b.ranges.iter().enumerate() {
        write!(out, "{}\n{indent}  ", if i == 0 { "" } else { "," })?;
        write!(out, "{{\"Offset\": {}, \"Type\": ", r.offset)?;
        match r.kind {
            RangeKind::Free => write!(out, "\"FREE\", \"Size\": {}", r.size)?,
            RangeKind::Allocated(t) => {
                write!(
                    out,
                    "\"{}\", \"Size\": {}, \"Usage\": 0",
                    type_name(t),
                    r.size
                )?;
                if let Some(name) = &r.name {
                    out.write_str(", \"Name\": ")?;
                    json_string(out, name)?;
                }
            }
        }
        out.write_char('}')?;
    }
    out.write_str("]}")
}

/// VMA's name of a suballocation type.
fn type_name(t: AllocationType) -> &'static str {
    match t {
        AllocationType::Unknown => "UNKNOWN",
        AllocationType::Linear => "BUFFER",
        AllocationType::NonLinear => "IMAGE_OPTIMAL",
    }
}

/// A VMA `"Stats"` object.
fn write_stats(out: &mut impl Write, s: &Statistics) -> fmt::Result {
    write!(
        out,
        "{{\"BlockCount\": {}, \"BlockBytes\": {}, \"AllocationCount\": {}, \
         \"AllocationBytes\": {}, \"UnusedRangeCount\": {}",
        s.block_count + s.dedicated_count,
        s.reserved_bytes,
        s.allocation_count,
        s.allocations.total,
        s.free_ranges.count
    )?;
    if s.allocations.count > 0 {
        write!(
            out,
            ", \"AllocationSizeMin\": {}, \"AllocationSizeMax\": {}",
            s.allocations.min, s.allocations.max
        )?;
    }
    if s.free_ranges.count > 0 {
        write!(
            out,
            ", \"UnusedRangeSizeMin\": {}, \"UnusedRangeSizeMax\": {}",
            s.free_ranges.min, s.free_ranges.max
        )?;
    }
    out.write_char('}')
}

fn write_names(out: &mut impl Write, names: &[String]) -> fmt::Result {
    out.write_char('[')?;
    for (i, n) in names.iter().enumerate() {
        if i > 0 {
            out.write_str(", ")?;
        }
        json_string(out, n)?;
    }
    out.write_char(']')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::sample;

    #[test]
    fn the_sample_in_vma_format() {
        let info = VmaDumpInfo {
            gpu: "Test \"GPU\"".into(),
            api_version: ash::vk::make_api_version(0, 1, 3, 7),
            device_type: 2,
            preferred_block_sizes: vec![1 << 20, 2 << 20],
            ..Default::default()
        };
        let text = sample::snapshot().to_vma_json(&info);
        let json: serde_json::Value = serde_json::from_str(&text).expect(&text);
        assert_eq!(json["General"]["GPU"], "Test \"GPU\"");
        assert_eq!(json["General"]["apiVersion"], "1.3.7");
        assert_eq!(json["General"]["deviceType"], 2);
        // One block and one dedicated allocation: two memory objects, four allocations.
        assert_eq!(json["Total"]["BlockCount"], 2);
        assert_eq!(json["Total"]["AllocationCount"], 4);
        assert_eq!(json["Total"]["UnusedRangeCount"], 2);
        assert_eq!(json["MemoryInfo"]["Heap 0"]["Flags"][0], "DEVICE_LOCAL");
        assert_eq!(
            json["MemoryInfo"]["Heap 1"]["MemoryPools"]["Type 1"]["Flags"],
            serde_json::json!(["HOST_VISIBLE", "HOST_COHERENT"])
        );
        // An empty heap's stats have no min/max.
        let block = &json["DefaultPools"]["Type 0"]["Blocks"]["0"];
        assert_eq!(
            json["DefaultPools"]["Type 0"]["PreferredBlockSize"],
            1 << 20
        );
        assert_eq!(block["TotalBytes"], 1 << 20);
        assert_eq!(block["Allocations"], 3);
        assert_eq!(block["UnusedRanges"], 2);
        let subs = block["Suballocations"].as_array().unwrap();
        assert_eq!(subs[0]["Type"], "BUFFER");
        assert_eq!(subs[0]["Name"], "vertices \"<&>\" \\ \n\u{1} ünï");
        assert_eq!(subs[1]["Type"], "FREE");
        assert!(subs[1].get("Usage").is_none());
        assert_eq!(subs[2]["Type"], "IMAGE_OPTIMAL");
        assert_eq!(subs[3]["Type"], "UNKNOWN");
        // The dedicated allocation of a custom pool is listed under it.
        assert_eq!(
            json["DefaultPools"]["Type 1"]["DedicatedAllocations"],
            serde_json::json!([])
        );
        let pool = &json["CustomPools"]["Type 1"][0];
        assert_eq!(pool["Name"], "staging \"pool\"");
        assert_eq!(
            pool["PreferredBlockSize"], 0,
            "no block, only a dedicated allocation"
        );
        assert_eq!(
            pool["DedicatedAllocations"],
            serde_json::json!([{"Type": "BUFFER", "Size": 2 << 20, "Usage": 0, "Name": "staging"}])
        );
    }
}
