//! The dump in VMA's JSON format (`vmaBuildStatsString` with the detailed map), checked
//! against what VMA's `GpuMemDump.schema.json` requires (required fields, their types, no
//! unknown fields where the schema forbids them) and what `GpuMemDumpVis.py` reads, on the
//! real driver with blocks, a dedicated allocation, a custom pool and names. A custom pool
//! that holds no memory is listed too (as VMA lists every custom pool), with zero bytes, in
//! the statistics, both dumps and the pool's own statistics.

mod common;

use ash::vk;
use ash_memory::*;
use common::{buffer_info, image_info, TestContext};
use serde_json::{Map, Value};

fn object<'a>(v: &'a Value, what: &str) -> &'a Map<String, Value> {
    v.as_object()
        .unwrap_or_else(|| panic!("{what} is not an object: {v}"))
}

fn int(v: &Value, key: &str, what: &str) -> u64 {
    v.get(key)
        .unwrap_or_else(|| panic!("{what} has no {key:?}: {v}"))
        .as_u64()
        .unwrap_or_else(|| panic!("{what}.{key} is not an integer: {v}"))
}

fn only(v: &Value, allowed: &[&str], what: &str) {
    for key in object(v, what).keys() {
        assert!(
            allowed.contains(&key.as_str()),
            "{what}: {key:?} is not allowed by VMA's schema"
        );
    }
}

fn strings(v: &Value, what: &str) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("{what} is not an array: {v}"))
        .iter()
        .map(|s| s.as_str().expect("a string").to_owned())
        .collect()
}

/// A `Stats` object (VMA's `$defs/Stats`); returns (BlockCount, BlockBytes, AllocationCount).
fn check_stats(v: &Value, what: &str) -> (u64, u64, u64) {
    only(
        v,
        &[
            "BlockCount",
            "BlockBytes",
            "AllocationCount",
            "AllocationBytes",
            "UnusedRangeCount",
            "AllocationSizeMin",
            "AllocationSizeMax",
            "UnusedRangeSizeMin",
            "UnusedRangeSizeMax",
        ],
        what,
    );
    for key in ["AllocationBytes", "UnusedRangeCount"] {
        int(v, key, what);
    }
    for key in [
        "AllocationSizeMin",
        "AllocationSizeMax",
        "UnusedRangeSizeMin",
        "UnusedRangeSizeMax",
    ] {
        if v.get(key).is_some() {
            int(v, key, what);
        }
    }
    (
        int(v, "BlockCount", what),
        int(v, "BlockBytes", what),
        int(v, "AllocationCount", what),
    )
}

/// A `Block` (`$defs/Block`) whose suballocations tile it; returns its allocation count.
fn check_block(v: &Value, what: &str) -> u64 {
    let total = int(v, "TotalBytes", what);
    let unused = int(v, "UnusedBytes", what);
    let allocations = int(v, "Allocations", what);
    let unused_ranges = int(v, "UnusedRanges", what);
    let subs = v["Suballocations"]
        .as_array()
        .unwrap_or_else(|| panic!("{what}: no Suballocations (the detailed map)"));
    let (mut cursor, mut free_bytes, mut free_ranges) = (0, 0, 0);
    for s in subs {
        only(
            s,
            &[
                "Offset",
                "Type",
                "Size",
                "Usage",
                "CustomData",
                "Name",
                "Layout",
            ],
            what,
        );
        assert_eq!(
            int(s, "Offset", what),
            cursor,
            "{what}: suballocations tile the block"
        );
        let size = int(s, "Size", what);
        let ty = s["Type"].as_str().expect("Type is a string");
        assert!(
            [
                "FREE",
                "UNKNOWN",
                "BUFFER",
                "IMAGE_OPTIMAL",
                "IMAGE_LINEAR",
                "IMAGE_UNKNOWN"
            ]
            .contains(&ty),
            "{what}: type {ty}"
        );
        if ty == "FREE" {
            free_bytes += size;
            free_ranges += 1;
        } else {
            int(s, "Usage", what); // GpuMemDumpVis colors by it
        }
        if let Some(name) = s.get("Name") {
            assert!(name.is_string(), "{what}: Name is a string");
        }
        cursor += size;
    }
    assert_eq!(cursor, total, "{what}: suballocations cover the block");
    assert_eq!((free_bytes, free_ranges), (unused, unused_ranges), "{what}");
    allocations
}

/// `Blocks` and `DedicatedAllocations` of a default or custom pool; returns the number of
/// memory objects and allocations.
fn check_pool_memory(v: &Value, what: &str) -> (u64, u64) {
    int(v, "PreferredBlockSize", what);
    let (mut objects, mut allocations) = (0, 0);
    for (id, block) in object(&v["Blocks"], what) {
        assert!(
            id.chars().all(|c| c.is_ascii_digit()),
            "{what}: block id {id}"
        );
        allocations += check_block(block, &format!("{what} block {id}"));
        objects += 1;
    }
    for d in v["DedicatedAllocations"].as_array().expect("an array") {
        only(
            d,
            &["Type", "Size", "Usage", "CustomData", "Name", "Layout"],
            what,
        );
        assert!(d["Type"].is_string());
        int(d, "Size", what);
        int(d, "Usage", what); // GpuMemDumpVis reads it unconditionally
        objects += 1;
        allocations += 1;
    }
    (objects, allocations)
}

#[test]
fn the_dump_follows_vmas_schema_and_adds_up() {
    let ctx = TestContext::new();
    let allocator = StandardMemoryAllocator::new_default(ctx.memory_device());
    let named = |name: &str, pref| AllocationCreateInfo {
        name: Some(name.into()),
        allocate_preference: pref,
        ..Default::default()
    };
    let mut buffers = Vec::new();
    for i in 0..5u64 {
        // SAFETY: valid create infos; destroyed below.
        let b = unsafe {
            OwnedBuffer::new(
                &allocator,
                &buffer_info(1000 + i * 4096, vk::BufferUsageFlags::VERTEX_BUFFER),
                &named(&format!("mesh \"{i}\""), MemoryAllocatePreference::Auto),
            )
        }
        .unwrap();
        buffers.push(b);
    }
    buffers.remove(2); // a hole
                       // SAFETY: valid create info.
    let image = unsafe {
        OwnedImage::new(
            &allocator,
            &image_info(64, vk::Format::R8G8B8A8_UNORM, vk::ImageTiling::OPTIMAL),
            &named("albedo", MemoryAllocatePreference::AlwaysAllocate),
        )
    }
    .unwrap();
    let pool = allocator
        .create_pool::<FreeListAllocator>(&PoolCreateInfo {
            name: Some("particles".into()),
            memory_type: PoolMemoryType::Index(0),
            block_size: 1 << 20,
            ..Default::default()
        })
        .unwrap();
    let layout = DeviceLayout::from_size_alignment(3000, 256).unwrap();
    let in_pool: Vec<_> = (0..3)
        .map(|_| {
            pool.allocate_from_type(
                0,
                layout,
                AllocationType::Unknown,
                &named("spark", MemoryAllocatePreference::Auto),
            )
            .unwrap()
        })
        .collect();

    let text = allocator.to_vma_json();
    let json: Value = serde_json::from_str(&text).expect("valid JSON");
    only(
        &json,
        &[
            "General",
            "Total",
            "MemoryInfo",
            "DefaultPools",
            "CustomPools",
        ],
        "the dump",
    );

    // General: API and GPU are required.
    let general = &json["General"];
    assert_eq!(general["API"], "Vulkan");
    let gpu = general["GPU"].as_str().expect("GPU is a string");
    assert!(!gpu.is_empty(), "the device name");
    let props = allocator.device().physical_device_properties();
    assert_eq!(gpu, props.device_name_as_c_str().unwrap().to_str().unwrap());
    assert_eq!(
        int(general, "memoryTypeCount", "General") as usize,
        allocator.device().memory_properties().memory_types.len()
    );

    // Total, and MemoryInfo per heap, which adds up to it.
    let (blocks, bytes, allocations) = check_stats(&json["Total"], "Total");
    let stats = allocator.statistics();
    assert_eq!(
        blocks,
        stats.total.block_count + stats.total.dedicated_count
    );
    assert_eq!(bytes, stats.total.reserved_bytes);
    assert_eq!(allocations, 4 + 1 + 3);
    let heaps = object(&json["MemoryInfo"], "MemoryInfo");
    assert_eq!(
        heaps.len(),
        allocator.device().memory_properties().memory_heaps.len()
    );
    let mut heap_sum = (0, 0, 0);
    let mut type_count = 0;
    for (name, heap) in heaps {
        assert!(name.starts_with("Heap "), "{name}");
        only(
            heap,
            &["Flags", "Size", "Budget", "Stats", "MemoryPools"],
            name,
        );
        strings(&heap["Flags"], name);
        int(heap, "Size", name);
        only(&heap["Budget"], &["BudgetBytes", "UsageBytes"], name);
        assert!(int(&heap["Budget"], "BudgetBytes", name) > 0);
        int(&heap["Budget"], "UsageBytes", name);
        let s = check_stats(&heap["Stats"], name);
        heap_sum = (heap_sum.0 + s.0, heap_sum.1 + s.1, heap_sum.2 + s.2);
        let mut type_sum = (0, 0, 0);
        for (tname, t) in object(&heap["MemoryPools"], name) {
            assert!(tname.starts_with("Type "), "{tname}");
            only(t, &["Flags", "Stats"], tname);
            strings(&t["Flags"], tname);
            let s = check_stats(&t["Stats"], tname);
            type_sum = (type_sum.0 + s.0, type_sum.1 + s.1, type_sum.2 + s.2);
            type_count += 1;
        }
        assert_eq!(type_sum, s, "{name}: its types add up to it");
    }
    assert_eq!(
        heap_sum,
        (blocks, bytes, allocations),
        "heaps add up to Total"
    );
    assert_eq!(
        type_count,
        allocator.device().memory_properties().memory_types.len()
    );

    // DefaultPools and CustomPools hold every memory object and allocation.
    let mut found = (0, 0);
    for (name, p) in object(&json["DefaultPools"], "DefaultPools") {
        let (o, a) = check_pool_memory(p, name);
        found = (found.0 + o, found.1 + a);
    }
    let custom = object(&json["CustomPools"], "CustomPools");
    let type0 = custom["Type 0"].as_array().expect("pools of type 0");
    assert_eq!(type0.len(), 1);
    let particles = &type0[0];
    only(
        particles,
        &[
            "Name",
            "Flags",
            "PreferredBlockSize",
            "Blocks",
            "DedicatedAllocations",
        ],
        "custom pool",
    );
    assert_eq!(particles["Name"], "particles");
    assert!(particles["Flags"].is_array());
    assert_eq!(int(particles, "PreferredBlockSize", "pool"), 1 << 20);
    let (o, a) = check_pool_memory(particles, "particles");
    assert_eq!(a, 3);
    found = (found.0 + o, found.1 + a);
    assert_eq!(
        found,
        (blocks, allocations),
        "every object and allocation is listed"
    );

    // Names and the dedicated image.
    assert!(text.contains("\"Name\": \"mesh \\\"0\\\"\""), "{text}");
    assert!(
        text.contains("\"Type\": \"IMAGE_OPTIMAL\", \"Size\":"),
        "{text}"
    );
    assert!(text.contains("\"Name\": \"albedo\""));
    assert!(text.contains("\"Name\": \"spark\""));

    drop((in_pool, pool, image, buffers, allocator));
    assert!(ctx.messages().is_empty(), "{:?}", ctx.messages());
}

#[test]
fn a_custom_pool_without_memory_is_listed_with_zero_bytes() {
    let ctx = TestContext::new();
    let allocator = StandardMemoryAllocator::new_default(ctx.memory_device());
    let pool = allocator
        .create_pool::<FreeListAllocator>(&PoolCreateInfo {
            name: Some("empty \"pool\"".into()),
            memory_type: PoolMemoryType::Index(0),
            block_size: 1 << 20,
            ..Default::default()
        })
        .unwrap();
    let listed = |stats: &AllocatorStatistics| -> Vec<stats::PoolStatistics> {
        stats
            .pools
            .iter()
            .filter(|p| &*p.name == "empty \"pool\"")
            .cloned()
            .collect()
    };
    // No block yet: listed, with nothing in it, and no memory object is invented.
    let stats = allocator.statistics();
    let mine = listed(&stats);
    assert_eq!(mine.len(), 1, "{:?}", stats.pools);
    assert_eq!(mine[0].memory_type_index, 0);
    assert_eq!(mine[0].statistics, Statistics::default());
    assert!(stats.blocks.is_empty(), "{:?}", stats.blocks);
    assert_eq!(stats.total, Statistics::default());
    let snap = allocator.snapshot();
    assert_eq!(snap.statistics, stats);
    assert!(snap.blocks.is_empty(), "{:?}", snap.blocks);
    assert_eq!(listed(&pool.statistics()).len(), 1);
    assert!(pool.statistics().blocks.is_empty());
    // Both dumps name it, with no memory.
    let json: Value = serde_json::from_str(&allocator.snapshot().to_json()).unwrap();
    let pools = json["pools"].as_array().expect("pools");
    assert_eq!(pools.len(), 1);
    assert_eq!(pools[0]["name"], "empty \"pool\"");
    assert!(json["blocks"].as_array().expect("blocks").is_empty());
    let vma: Value = serde_json::from_str(&allocator.to_vma_json()).unwrap();
    let type0 = vma["CustomPools"]["Type 0"]
        .as_array()
        .expect("the empty pool under its memory type");
    assert_eq!(type0.len(), 1);
    assert_eq!(type0[0]["Name"], "empty \"pool\"");
    assert_eq!(check_pool_memory(&type0[0], "empty pool"), (0, 0));
    assert_eq!(int(&vma["Total"], "BlockCount", "Total"), 0);

    // With memory, then without again: still one entry, now with what it holds.
    let requirements = AllocationRequirements {
        layout: DeviceLayout::from_size_alignment(4096, 256).unwrap(),
        memory_type_bits: 1,
        prefers_dedicated_allocation: false,
        requires_dedicated_allocation: false,
    };
    let alloc = pool
        .allocate(
            requirements,
            AllocationType::Linear,
            &Default::default(),
            None,
        )
        .unwrap();
    let stats = allocator.statistics();
    let mine = listed(&stats);
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0].statistics.allocation_count, 1);
    assert_eq!(mine[0].statistics.block_count, 1);
    assert_eq!(stats.blocks.len(), 1);
    drop(alloc);
    assert_eq!(listed(&allocator.statistics()).len(), 1);
    // A dropped pool is no longer listed.
    drop(pool);
    let stats = allocator.statistics();
    assert!(stats.pools.is_empty(), "{:?}", stats.pools);
    let vma: Value = serde_json::from_str(&allocator.to_vma_json()).unwrap();
    assert!(object(&vma["CustomPools"], "CustomPools").is_empty());
}
