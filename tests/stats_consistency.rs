//! What statistics, snapshots and the two JSON dumps say, checked against the allocations
//! actually alive: custom pools of every suballocator (same-named ones included), margins,
//! non-coherent memory and dedicated allocations, on simulated layouts over the real driver.

mod common;
mod support;

use ash::vk::Handle;
use ash_memory::*;
use serde_json::Value;
use std::collections::HashMap;
use support::{poke, GpuLayout, Rng, Sim, KIB, MIB};

fn layout(size: u64, alignment: u64) -> DeviceLayout {
    DeviceLayout::from_size_alignment(size, alignment).unwrap()
}

fn named(name: String) -> AllocationCreateInfo {
    AllocationCreateInfo {
        name: Some(name.into()),
        ..Default::default()
    }
}

/// Every custom pool's allocations in VMA's dump: `(pool name, memory type)` to the number of
/// allocations listed (in blocks and dedicated allocations), each block listed once.
fn vma_custom_pools(json: &Value) -> HashMap<(String, u32), u64> {
    let mut out = HashMap::new();
    for (ty, pools) in json["CustomPools"].as_object().unwrap() {
        let ty: u32 = ty.strip_prefix("Type ").unwrap().parse().unwrap();
        for p in pools.as_array().unwrap() {
            let name = p["Name"].as_str().unwrap().to_owned();
            let mut n = 0;
            for b in p["Blocks"].as_object().unwrap().values() {
                n += b["Allocations"].as_u64().unwrap();
            }
            n += p["DedicatedAllocations"].as_array().unwrap().len() as u64;
            *out.entry((name, ty)).or_default() += n;
        }
    }
    out
}

/// Two custom pools may share a name (names are the application's, and
/// `MemoryPool::set_name` can make them equal). Each pool's memory is still summed up under
/// its own memory type, and both dumps list every one of its allocations.
#[test]
fn same_named_pools_of_two_memory_types_are_each_reported() {
    let sim = Sim::new(GpuLayout::nvidia_discrete());
    let device = sim.memory_device();
    let allocator = StandardMemoryAllocator::new_default(device.clone());
    let pool = |memory_type| {
        allocator
            .create_pool::<FreeListAllocator>(&PoolCreateInfo {
                name: Some("twin".into()),
                memory_type: PoolMemoryType::Index(memory_type),
                block_size: MIB,
                ..Default::default()
            })
            .unwrap()
    };
    let (a, b) = (pool(1), pool(2));
    let mut live = Vec::new();
    for (p, n) in [(&a, 2), (&b, 3)] {
        for i in 0..n {
            let ty = p.memory_type_index();
            let info = named(format!("{ty}/{i}"));
            live.push(
                p.allocate_from_type(ty, layout(4 * KIB, 256), AllocationType::Linear, &info)
                    .unwrap(),
            );
        }
    }

    let stats = allocator.statistics();
    let mut pools: Vec<_> = stats
        .pools
        .iter()
        .map(|p| {
            (
                p.name.to_string(),
                p.memory_type_index,
                p.statistics.allocation_count,
                p.statistics.block_count,
            )
        })
        .collect();
    pools.sort();
    assert_eq!(
        pools,
        [("twin".into(), 1, 2, 1), ("twin".into(), 2, 3, 1)],
        "one entry per pool memory type, with its own allocations"
    );

    let json: Value = serde_json::from_str(&allocator.snapshot().to_json()).unwrap();
    let mut listed: Vec<_> = json["pools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["memory_type_index"].as_u64().unwrap(),
                p["statistics"]["allocations"].as_u64().unwrap(),
            )
        })
        .collect();
    listed.sort();
    assert_eq!(listed, [(1, 2), (2, 3)]);

    let vma: Value = serde_json::from_str(&allocator.to_vma_json()).unwrap();
    let custom = vma_custom_pools(&vma);
    assert_eq!(custom.get(&("twin".into(), 1)), Some(&2), "{custom:?}");
    assert_eq!(custom.get(&("twin".into(), 2)), Some(&3), "{custom:?}");
    assert_eq!(custom.values().sum::<u64>(), live.len() as u64);
    drop((live, a, b, allocator));
    sim.assert_nothing_allocated();
}

/// The invariants of one snapshot against the allocations alive: every memory object is tiled
/// by its ranges; each live allocation lies inside one allocated range of its own memory
/// object; the block's allocation count is the allocations in it; statistics are the sum of
/// the snapshot's; VMA's dump lists every memory object once and every allocation.
fn check(allocator: &StandardMemoryAllocator, live: &[MemoryAlloc], what: &str) {
    let snap = allocator.snapshot();
    let stats = allocator.statistics();
    assert_eq!(snap.statistics, stats, "{what}: snapshot and statistics");
    let mut by_memory: HashMap<u64, Vec<&MemoryAlloc>> = HashMap::new();
    for a in live {
        by_memory.entry(a.memory().as_raw()).or_default().push(a);
    }
    assert_eq!(
        snap.blocks.len() as u64,
        stats.total.block_count + stats.total.dedicated_count
    );
    let mut seen = 0;
    for b in &snap.blocks {
        let mut end = 0;
        for r in &b.ranges {
            assert_eq!(r.offset, end, "{what}: ranges tile block {:#x}", b.memory);
            assert!(r.size > 0, "{what}: an empty range");
            end += r.size;
        }
        assert_eq!(end, b.size, "{what}: ranges cover block {:#x}", b.memory);
        let mine = by_memory.get(&b.memory).map_or(&[][..], Vec::as_slice);
        assert_eq!(
            b.allocation_count,
            mine.len() as u64,
            "{what}: allocations in block {:#x} (pool {:?})",
            b.memory,
            b.pool
        );
        for a in mine {
            let inside = b.ranges.iter().filter(|r| {
                matches!(r.kind, RangeKind::Allocated(_))
                    && r.offset <= a.offset()
                    && a.offset() + a.size() <= r.offset + r.size
            });
            assert_eq!(inside.count(), 1, "{what}: allocation at {}", a.offset());
            assert_eq!(a.is_dedicated(), b.dedicated);
        }
        // Every allocated range holds a live allocation: the leak report lists these ranges.
        for r in &b.ranges {
            if matches!(r.kind, RangeKind::Allocated(_)) {
                assert!(
                    mine.iter()
                        .any(|a| r.offset <= a.offset() && a.offset() < r.offset + r.size),
                    "{what}: allocated range {}+{} of block {:#x} (pool {:?}) holds no live \
                     allocation",
                    r.offset,
                    r.size,
                    b.memory,
                    b.pool
                );
            }
        }
        seen += mine.len();
    }
    assert_eq!(
        seen,
        live.len(),
        "{what}: every live allocation is in a block"
    );
    assert_eq!(stats.total.allocation_count, live.len() as u64, "{what}");
    let heap_allocations: u64 = stats
        .heaps
        .iter()
        .map(|h| h.statistics.allocation_count)
        .sum();
    let type_bytes: u64 = stats
        .memory_types
        .iter()
        .map(|t| t.statistics.reserved_bytes)
        .sum();
    assert_eq!(heap_allocations, live.len() as u64, "{what}");
    assert_eq!(type_bytes, stats.total.reserved_bytes, "{what}");
    assert_eq!(type_bytes, allocator.device().live_memory_bytes(), "{what}");
    // The only allocator of the device: each heap's budget usage is its memory here.
    for h in &stats.heaps {
        assert_eq!(h.budget.crate_usage, h.statistics.reserved_bytes, "{what}");
        assert_eq!(h.budget.usage, h.statistics.reserved_bytes, "{what}");
        assert_eq!(
            h.budget.from_extension,
            allocator.device().features().memory_budget
        );
    }

    let vma: Value = serde_json::from_str(&allocator.to_vma_json()).unwrap();
    let mut objects = 0;
    let mut allocations = 0;
    let mut count = |pool: &Value| {
        for b in pool["Blocks"].as_object().unwrap().values() {
            objects += 1;
            allocations += b["Allocations"].as_u64().unwrap();
        }
        let dedicated = pool["DedicatedAllocations"].as_array().unwrap().len() as u64;
        objects += dedicated;
        allocations += dedicated;
    };
    for p in vma["DefaultPools"].as_object().unwrap().values() {
        count(p);
    }
    for pools in vma["CustomPools"].as_object().unwrap().values() {
        for p in pools.as_array().unwrap() {
            count(p);
        }
    }
    assert_eq!(
        objects,
        snap.blocks.len() as u64,
        "{what}: memory objects in VMA's dump"
    );
    assert_eq!(
        allocations,
        live.len() as u64,
        "{what}: allocations in VMA's dump"
    );
}

/// Random allocations and frees in custom pools of every suballocator (two of them sharing a
/// name), the default block vectors and dedicated memory, with margins, in coherent and
/// non-coherent memory.
#[test]
fn snapshots_and_dumps_match_the_live_allocations() {
    snapshot_run(Sim::new(GpuLayout::mobile()));
}

/// The same with `VK_EXT_memory_budget`: its usage per heap is the allocator's memory.
#[test]
fn snapshots_and_dumps_match_the_live_allocations_with_the_budget_extension() {
    let features = support::SimFeatures {
        memory_budget: true,
        ..Default::default()
    };
    snapshot_run(Sim::with_features(GpuLayout::mobile(), features));
}

fn snapshot_run(sim: Sim) {
    let device = sim.memory_device();
    let allocator = StandardMemoryAllocator::new(
        device.clone(),
        GenericMemoryAllocatorCreateInfo {
            debug: DebugOptions {
                margin: 16,
                ..Default::default()
            },
            block_arenas: Some(2),
            ..Default::default()
        },
    )
    .unwrap();
    let info = |name: &str, memory_type, block_arenas| PoolCreateInfo {
        name: Some(name.into()),
        memory_type: PoolMemoryType::Index(memory_type),
        block_size: 128 * KIB,
        block_arenas,
        ..Default::default()
    };
    type Source = Box<dyn Fn(u64, u64, &AllocationCreateInfo) -> Option<MemoryAlloc>>;
    let pools: Vec<Source> = {
        let mut v: Vec<Source> = Vec::new();
        // A custom pool of suballocator `$s`, its requests at most `$max` bytes.
        macro_rules! pool {
            ($s:ty, $name:expr, $ty:expr, $arenas:expr, $max:expr) => {{
                let p = allocator
                    .create_pool::<$s>(&info($name, $ty, $arenas))
                    .unwrap();
                v.push(Box::new(move |size, alignment, i| {
                    let ty = p.memory_type_index();
                    let l = layout(size.min($max), alignment);
                    p.allocate_from_type(ty, l, AllocationType::Linear, i).ok()
                }));
            }};
        }
        pool!(FreeListAllocator, "free list", 1, Some(4), u64::MAX);
        pool!(BuddyAllocator, "buddy", 1, None, 16 * KIB);
        pool!(BumpAllocator, "bump", 0, Some(2), 4 * KIB);
        pool!(RingAllocator, "ring", 1, None, 4 * KIB);
        pool!(SlotAllocator<{ 8 * KIB }>, "same", 0, None, 4 * KIB);
        pool!(FreeListAllocator, "same", 1, None, u64::MAX);
        v
    };
    let mut rng = Rng(7);
    let mut live: Vec<MemoryAlloc> = Vec::new();
    let mut made = vec![0u32; pools.len() + 2];
    for step in 0..400 {
        if !live.is_empty() && rng.below(3) == 0 {
            let i = rng.below(live.len() as u64) as usize;
            live.swap_remove(i);
            continue;
        }
        let big = rng.below(6) == 0;
        let size = 1 + rng.below(if big { 200 * KIB } else { 3000 });
        let alignment = 1 << rng.below(9);
        let mut ainfo = named(format!("a{step}"));
        let which = rng.below(pools.len() as u64 + 2) as usize;
        let a = if which < pools.len() {
            pools[which](size, alignment, &ainfo)
        } else {
            if which == pools.len() {
                ainfo.allocate_preference = MemoryAllocatePreference::AlwaysAllocate;
            }
            let ty = rng.below(2) as u32;
            allocator
                .allocate_from_type(ty, layout(size, alignment), AllocationType::Linear, &ainfo)
                .ok()
        };
        made[which] += u32::from(a.is_some());
        live.extend(a);
        if step % 50 == 0 {
            check(&allocator, &live, &format!("step {step}"));
        }
    }
    assert!(
        made.iter().all(|&n| n > 10),
        "allocations made per source: {made:?}"
    );
    check(&allocator, &live, "end");
    while let Some(a) = live.pop() {
        drop(a);
        if live.len() % 40 == 0 {
            check(&allocator, &live, &format!("{} left", live.len()));
        }
    }
    drop(pools);
    drop(allocator);
    sim.assert_nothing_allocated();
}

/// Damage to the first and last byte of each margin of each allocation, in custom pools of
/// every suballocator, in coherent and non-coherent memory, at odd sizes and alignments, is
/// reported exactly once, at that byte and for that allocation; writes over the whole of
/// every allocation are never reported.
#[test]
fn margin_damage_is_reported_exactly_with_every_suballocator() {
    const MARGIN: u64 = 16;
    let sim = Sim::new(GpuLayout::mobile());
    let device = sim.memory_device();
    let allocator = StandardMemoryAllocator::new(
        device.clone(),
        GenericMemoryAllocatorCreateInfo {
            debug: DebugOptions {
                margin: MARGIN,
                ..Default::default()
            },
            ..Default::default()
        },
    )
    .unwrap();
    let mut rng = Rng(11);
    for memory_type in [0, 1] {
        let info = PoolCreateInfo {
            memory_type: PoolMemoryType::Index(memory_type),
            block_size: 64 * KIB,
            ..Default::default()
        };
        let mut live: Vec<(MemoryAlloc, u64)> = Vec::new();
        macro_rules! fill_pool {
            ($s:ty) => {{
                let p = allocator.create_pool::<$s>(&info).unwrap();
                for i in 0..6 {
                    let size = 1 + rng.below(300);
                    let alignment = 1 << rng.below(7);
                    let a = p
                        .allocate_from_type(
                            memory_type,
                            layout(size, alignment),
                            AllocationType::Linear,
                            &named(format!("{i}")),
                        )
                        .unwrap();
                    live.push((a, alignment));
                }
                p
            }};
        }
        let pools = (
            fill_pool!(FreeListAllocator),
            fill_pool!(BuddyAllocator),
            fill_pool!(BumpAllocator),
            fill_pool!(RingAllocator),
            fill_pool!(SlotAllocator<1024>),
        );
        for (a, _) in &mut live {
            let size = a.size() as usize;
            a.write(0, &vec![0xA5; size]).unwrap();
        }
        let report = allocator.check_corruption(1 << memory_type).unwrap();
        assert_eq!(report.checked_allocations, live.len() as u64);
        let magic = corruption::MARGIN_MAGIC.to_le_bytes();
        for (k, (a, alignment)) in live.iter().enumerate() {
            let o = a.offset();
            let front = MARGIN.next_multiple_of(*alignment);
            let back = o + a.size();
            for (at, start, after) in [
                (o - front, o - front, false),
                (o - 1, o - front, false),
                (back, back, true),
                (back + MARGIN - 1, back, true),
            ] {
                // SAFETY: `at` lies in one of `a`'s margins.
                unsafe { poke(a, at, !magic[((at - start) % 4) as usize]) };
                let found = match allocator.check_corruption(1 << memory_type) {
                    Err(corruption::CorruptionError::Damaged { damaged, .. }) => damaged,
                    other => panic!("type {memory_type}, allocation {k}, byte {at}: {other:?}"),
                };
                assert_eq!(found.len(), 1, "{found:?}");
                let d = &found[0];
                assert_eq!(
                    (d.offset, d.after, d.allocation_offset, d.allocation_size),
                    (at, after, o, a.size()),
                    "type {memory_type}, allocation {k}"
                );
                assert_eq!(d.memory, a.memory().as_raw());
                // SAFETY: as above.
                unsafe { poke(a, at, magic[((at - start) % 4) as usize]) };
            }
        }
        assert!(allocator.check_corruption(1 << memory_type).is_ok());
        for (a, _) in &live {
            let mut data = vec![0; a.size() as usize];
            a.read(0, &mut data).unwrap();
            assert!(
                data.iter().all(|&b| b == 0xA5),
                "the allocations' own bytes"
            );
        }
        drop(live);
        drop(pools);
    }
    drop(allocator);
    sim.assert_nothing_allocated();
}

/// An allocation freed out of order in a ring pool stays held until the tail passes it, but it
/// is not a leak: the report lists the live allocations only, and VMA's dump lists one
/// suballocation per live allocation.
#[test]
fn a_ring_pools_freed_allocations_are_not_reported_as_leaks() {
    let sim = Sim::new(GpuLayout::nvidia_discrete());
    let allocator = StandardMemoryAllocator::new_default(sim.memory_device());
    let pool = allocator
        .create_pool::<RingAllocator>(&PoolCreateInfo {
            name: Some("staging".into()),
            memory_type: PoolMemoryType::Index(1),
            block_size: 64 * KIB,
            ..Default::default()
        })
        .unwrap();
    let mut live: Vec<_> = (0..3)
        .map(|i| {
            pool.allocate_from_type(
                1,
                layout(1000, 256),
                AllocationType::Linear,
                &named(format!("frame {i}")),
            )
            .unwrap()
        })
        .collect();
    live.remove(1);
    let leaks = allocator.report_leaks();
    let mut names: Vec<_> = leaks.iter().map(|l| l.name.as_deref().unwrap()).collect();
    names.sort_unstable();
    assert_eq!(names, ["frame 0", "frame 2"], "{leaks:?}");
    let vma: Value = serde_json::from_str(&allocator.to_vma_json()).unwrap();
    let block = &vma["CustomPools"]["Type 1"][0]["Blocks"]["0"];
    let used = block["Suballocations"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["Type"] != "FREE")
        .count();
    assert_eq!((block["Allocations"].as_u64(), used), (Some(2), 2));
    drop((live, pool, allocator));
    sim.assert_nothing_allocated();
}
