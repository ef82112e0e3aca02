//! Statistics, JSON dump, SVG memory map, leak report, budget and priority on the real driver.

mod common;

use ash_memory::stats::LOG_TARGET;
use ash_memory::*;
use common::{Rng, TestContext};
use std::collections::HashMap;
use std::sync::Arc;

const KIB: u64 = 1024;
const GIB: u64 = 1 << 30;

fn all_types(device: &MemoryDevice) -> u32 {
    let n = device.memory_properties().memory_types.len();
    if n >= 32 {
        u32::MAX
    } else {
        (1u32 << n) - 1
    }
}

fn requirements(device: &MemoryDevice, size: u64) -> AllocationRequirements {
    AllocationRequirements {
        layout: DeviceLayout::from_size_alignment(size, 256).unwrap(),
        memory_type_bits: all_types(device),
        prefers_dedicated_allocation: false,
        requires_dedicated_allocation: false,
    }
}

/// Allocates a random scene: suballocated buffers (sizes and alignment multiples of 256, so no
/// padding), some dedicated, some named; frees some of them again.
fn random_scene(
    allocator: &StandardMemoryAllocator,
    rng: &mut Rng,
    live: &mut Vec<MemoryAlloc>,
    steps: usize,
) {
    let device = allocator.device().clone();
    for step in 0..steps {
        if !live.is_empty() && rng.below(3) == 0 {
            let i = rng.below(live.len() as u64) as usize;
            live.swap_remove(i);
            continue;
        }
        let units = if rng.below(8) == 0 { 16 * 1024 } else { 256 };
        let size = 256 * (1 + rng.below(units));
        let dedicated = rng.below(10) == 0;
        let info = AllocationCreateInfo {
            usage: MemoryUsage::Upload,
            allocate_preference: if dedicated {
                MemoryAllocatePreference::AlwaysAllocate
            } else {
                MemoryAllocatePreference::Auto
            },
            name: (rng.below(2) == 0).then(|| Arc::from(format!("alloc {step} <&\"'>"))),
            ..Default::default()
        };
        let a = allocator
            .allocate(
                requirements(&device, size),
                AllocationType::Linear,
                &info,
                None,
            )
            .expect("allocation");
        live.push(a);
    }
}

fn check_against_ground_truth(allocator: &StandardMemoryAllocator, live: &[MemoryAlloc]) {
    let device = allocator.device();
    let stats = allocator.statistics();
    let t = &stats.total;
    let live_dedicated = live.iter().filter(|a| a.is_dedicated()).count() as u64;
    let types = device.memory_properties().memory_types.len() as u32;
    let blocks: usize = (0..types).map(|i| allocator.block_count(i)).sum();
    assert_eq!(t.allocation_count, live.len() as u64);
    assert_eq!(
        t.allocated_bytes(),
        live.iter().map(MemoryAlloc::size).sum::<u64>()
    );
    assert_eq!(t.dedicated_count, live_dedicated);
    assert_eq!(t.block_count, blocks as u64);
    assert_eq!(t.reserved_bytes, device.live_memory_bytes());
    // Blocks are tiled by their ranges; dedicated allocations are wholly allocated.
    assert_eq!(t.allocated_bytes() + t.free_bytes(), t.reserved_bytes);
    assert_eq!(stats.blocks.len() as u64, t.block_count + t.dedicated_count);
    if let Some(max) = live.iter().map(MemoryAlloc::size).max() {
        assert_eq!(t.allocations.max, max);
        assert_eq!(
            t.allocations.min,
            live.iter().map(MemoryAlloc::size).min().unwrap()
        );
    }
    // Per memory type and per heap.
    for ts in &stats.memory_types {
        let mine: Vec<_> = live
            .iter()
            .filter(|a| a.memory_type_index() == ts.index)
            .collect();
        assert_eq!(ts.statistics.allocation_count, mine.len() as u64);
        assert_eq!(
            ts.statistics.allocated_bytes(),
            mine.iter().map(|a| a.size()).sum::<u64>()
        );
        assert_eq!(
            ts.statistics.block_count,
            allocator.block_count(ts.index) as u64
        );
    }
    let heap_sum: u64 = stats
        .heaps
        .iter()
        .map(|h| h.statistics.reserved_bytes)
        .sum();
    assert_eq!(heap_sum, t.reserved_bytes);
    for h in &stats.heaps {
        assert_eq!(h.budget, device.heap_budgets()[h.index as usize]);
    }
    // The snapshot agrees, and names every named allocation where it lives.
    let snap = allocator.snapshot();
    assert_eq!(snap.statistics, stats);
    let mut names: HashMap<(u64, u64), &str> = HashMap::new();
    for b in &snap.blocks {
        for r in &b.ranges {
            if let Some(n) = &r.name {
                names.insert((b.memory, r.offset), n);
            }
        }
    }
    let named = live.iter().filter(|a| a.name().is_some()).count();
    assert_eq!(names.len(), named);
    for a in live.iter().filter(|a| a.name().is_some()) {
        use ash::vk::Handle;
        assert_eq!(
            names.get(&(a.memory().as_raw(), a.offset())).copied(),
            a.name()
        );
    }
}

#[test]
fn statistics_match_ground_truth_after_random_sequences() {
    let ctx = TestContext::new();
    let allocator = StandardMemoryAllocator::new_default(ctx.memory_device());
    let mut rng = Rng(42);
    let mut live = Vec::new();
    check_against_ground_truth(&allocator, &live);
    for _ in 0..6 {
        random_scene(&allocator, &mut rng, &mut live, 60);
        check_against_ground_truth(&allocator, &live);
    }
    while !live.is_empty() {
        let i = rng.below(live.len() as u64) as usize;
        live.swap_remove(i);
        if live.len() % 25 == 0 {
            check_against_ground_truth(&allocator, &live);
        }
    }
    let t = allocator.statistics().total;
    assert_eq!((t.allocation_count, t.dedicated_count), (0, 0));
    assert!(allocator.report_leaks().is_empty());
}

#[test]
fn json_dump_parses_and_round_trips() {
    let ctx = TestContext::new();
    let allocator = StandardMemoryAllocator::new_default(ctx.memory_device());
    let mut live = Vec::new();
    random_scene(&allocator, &mut Rng(3), &mut live, 80);
    let snap = allocator.snapshot();
    let json = snap.to_json();
    let v: serde_json::Value = serde_json::from_str(&json).expect("valid JSON");
    let t = &snap.statistics.total;
    assert_eq!(v["total"]["allocations"], live.len() as u64);
    assert_eq!(v["total"]["blocks"], t.block_count);
    assert_eq!(v["total"]["dedicated_allocations"], t.dedicated_count);
    assert_eq!(v["total"]["reserved_bytes"], t.reserved_bytes);
    assert_eq!(v["total"]["allocated_bytes"], t.allocated_bytes());
    assert_eq!(v["total"]["free_bytes"], t.free_bytes());
    assert_eq!(v["total"]["largest_free_range"], t.largest_free_range());
    let heaps = v["heaps"].as_array().unwrap();
    assert_eq!(heaps.len(), snap.statistics.heaps.len());
    for (h, sh) in heaps.iter().zip(&snap.statistics.heaps) {
        assert_eq!(h["size"], sh.budget.heap_size);
        assert_eq!(h["budget"]["budget"], sh.budget.budget);
        assert_eq!(h["budget"]["usage"], sh.budget.usage);
    }
    let blocks = v["blocks"].as_array().unwrap();
    assert_eq!(blocks.len(), snap.blocks.len());
    let mut named = 0;
    for (b, sb) in blocks.iter().zip(&snap.blocks) {
        assert_eq!(b["size"], sb.size);
        assert_eq!(b["dedicated"], sb.dedicated);
        let ranges = b["ranges"].as_array().unwrap();
        assert_eq!(ranges.len(), sb.ranges.len());
        let mut end = 0;
        for (r, sr) in ranges.iter().zip(&sb.ranges) {
            assert_eq!(r["offset"], end, "ranges tile the block");
            end = sr.offset + sr.size;
            assert_eq!(r["size"], sr.size);
            assert_eq!(r["name"].as_str(), sr.name.as_deref());
            named += usize::from(r["name"].is_string());
        }
        assert_eq!(end, sb.size);
    }
    assert_eq!(named, live.iter().filter(|a| a.name().is_some()).count());
}

/// Checks that `text` is well-formed XML (the subset an SVG writer produces: prolog, elements,
/// attributes, text, entity references) and returns each element's name and attributes.
fn parse_xml(text: &str) -> Vec<(String, HashMap<String, String>)> {
    fn check_entities(s: &str) {
        let mut rest = s;
        while let Some(i) = rest.find('&') {
            rest = &rest[i + 1..];
            let end = rest.find(';').expect("unterminated entity");
            let name = &rest[..end];
            assert!(
                ["amp", "lt", "gt", "quot", "apos"].contains(&name) || name.starts_with('#'),
                "bad entity &{name};"
            );
            rest = &rest[end + 1..];
        }
    }
    let mut s = text.trim_start();
    if s.starts_with("<?xml") {
        s = &s[s.find("?>").expect("unterminated prolog") + 2..];
    }
    let mut stack: Vec<String> = Vec::new();
    let mut elements = Vec::new();
    let mut roots = 0;
    loop {
        let lt = s.find('<');
        let chunk = &s[..lt.unwrap_or(s.len())];
        assert!(!chunk.contains('>'), "stray '>' in text {chunk:?}");
        check_entities(chunk);
        if stack.is_empty() {
            assert!(chunk.trim().is_empty(), "text outside the root: {chunk:?}");
        }
        let Some(lt) = lt else { break };
        s = &s[lt + 1..];
        if let Some(rest) = s.strip_prefix('/') {
            let gt = rest.find('>').expect("unterminated end tag");
            let name = rest[..gt].trim();
            assert_eq!(stack.pop().as_deref(), Some(name), "mismatched end tag");
            s = &rest[gt + 1..];
            continue;
        }
        let name_end = s
            .find(|c: char| c.is_whitespace() || c == '>' || c == '/')
            .expect("unterminated start tag");
        let name = s[..name_end].to_string();
        assert!(
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_alphanumeric() || "_-:.".contains(c)),
            "bad element name {name:?}"
        );
        s = &s[name_end..];
        let mut attrs = HashMap::new();
        let self_closing = loop {
            s = s.trim_start();
            if let Some(rest) = s.strip_prefix("/>") {
                s = rest;
                break true;
            }
            if let Some(rest) = s.strip_prefix('>') {
                s = rest;
                break false;
            }
            let eq = s.find('=').expect("attribute without value");
            let attr = s[..eq].trim().to_string();
            assert!(
                !attr.is_empty()
                    && attr
                        .chars()
                        .all(|c| c.is_alphanumeric() || "_-:".contains(c)),
                "bad attribute name {attr:?}"
            );
            s = s[eq + 1..].trim_start();
            let quote = s.chars().next().expect("missing attribute value");
            assert!(quote == '"' || quote == '\'', "unquoted attribute {attr}");
            let close = s[1..].find(quote).expect("unterminated attribute value") + 1;
            let value = &s[1..close];
            assert!(!value.contains('<'), "'<' in attribute value");
            check_entities(value);
            assert!(
                attrs.insert(attr.clone(), value.to_string()).is_none(),
                "duplicate attribute {attr}"
            );
            s = &s[close + 1..];
        };
        if stack.is_empty() {
            roots += 1;
        }
        elements.push((name.clone(), attrs));
        if !self_closing {
            stack.push(name);
        }
    }
    assert!(stack.is_empty(), "unclosed elements {stack:?}");
    assert_eq!(roots, 1, "exactly one root element");
    elements
}

#[test]
fn xml_checker_rejects_broken_documents() {
    assert_eq!(parse_xml("<a x=\"1\"><b/>t &amp; u</a>").len(), 2);
    for bad in [
        "<a><b></a>",
        "<a x=1/>",
        "<a>&nope;</a>",
        "<a/><b/>",
        "<a>",
        "<a x=\"<\"/>",
    ] {
        assert!(
            std::panic::catch_unwind(|| parse_xml(bad)).is_err(),
            "accepted {bad}"
        );
    }
}

#[test]
fn svg_map_is_well_formed_with_one_element_per_range() {
    let ctx = TestContext::new();
    let allocator = StandardMemoryAllocator::new_default(ctx.memory_device());
    let mut live = Vec::new();
    random_scene(&allocator, &mut Rng(11), &mut live, 80);
    let snap = allocator.snapshot();
    let svg = snap.to_svg();
    let elements = parse_xml(&svg);
    assert_eq!(elements[0].0, "svg");
    assert_eq!(
        elements[0].1.get("xmlns").map(String::as_str),
        Some("http://www.w3.org/2000/svg")
    );
    let range_rects: Vec<_> = elements
        .iter()
        .filter(|(name, attrs)| {
            name == "rect"
                && attrs
                    .get("class")
                    .is_some_and(|c| c.split(' ').any(|w| w == "range"))
        })
        .collect();
    let ranges: usize = snap.blocks.iter().map(|b| b.ranges.len()).sum();
    assert_eq!(range_rects.len(), ranges);
    let allocated = range_rects
        .iter()
        .filter(|(_, a)| !a["class"].contains("free"))
        .count();
    let allocated_ranges: usize = snap
        .blocks
        .iter()
        .flat_map(|b| &b.ranges)
        .filter(|r| r.kind != RangeKind::Free)
        .count();
    assert_eq!(allocated, allocated_ranges);
    let dedicated_rows = elements
        .iter()
        .filter(|(n, a)| n == "rect" && a.get("class").is_some_and(|c| c == "outline dedicated"))
        .count();
    // One per dedicated allocation, plus the legend's sample.
    assert_eq!(
        dedicated_rows as u64,
        snap.statistics.total.dedicated_count + 1
    );
}

#[test]
fn leaked_allocations_are_logged_by_name() {
    common::log_capture::install();
    let ctx = TestContext::new();
    let device = ctx.memory_device();
    let allocator = StandardMemoryAllocator::new(
        device.clone(),
        GenericMemoryAllocatorCreateInfo {
            // Allocations outlive the allocator here on purpose: no leak panic.
            debug: DebugOptions {
                leak_check: LeakCheck::Log,
                ..Default::default()
            },
            ..Default::default()
        },
    )
    .unwrap();
    let info = |name: &str, preference| AllocationCreateInfo {
        usage: MemoryUsage::Upload,
        name: Some(Arc::from(name)),
        allocate_preference: preference,
        ..Default::default()
    };
    let freed = allocator
        .allocate(
            requirements(&device, 512),
            AllocationType::Linear,
            &info("leak-test: freed in time", MemoryAllocatePreference::Auto),
            None,
        )
        .unwrap();
    let block_leak = allocator
        .allocate(
            requirements(&device, 4 * KIB),
            AllocationType::Linear,
            &info("leak-test: vertex buffer", MemoryAllocatePreference::Auto),
            None,
        )
        .unwrap();
    let dedicated_leak = allocator
        .allocate(
            requirements(&device, 64 * KIB),
            AllocationType::NonLinear,
            &info(
                "leak-test: dedicated texture",
                MemoryAllocatePreference::AlwaysAllocate,
            ),
            None,
        )
        .unwrap();
    let _unnamed = allocator
        .allocate(
            requirements(&device, 256),
            AllocationType::Linear,
            &AllocationCreateInfo::default(),
            None,
        )
        .unwrap();
    drop(freed);

    // On request: the list, and one warning per allocation.
    let leaks = allocator.report_leaks();
    assert_eq!(leaks.len(), 3);
    let block = leaks
        .iter()
        .find(|l| l.name.as_deref() == Some("leak-test: vertex buffer"))
        .expect("the block allocation is reported by name");
    assert_eq!(block.size, 4 * KIB);
    assert_eq!(block.offset, block_leak.offset());
    assert_eq!(block.memory_type_index, block_leak.memory_type_index());
    assert!(!block.dedicated);
    let dedicated = leaks
        .iter()
        .find(|l| l.name.as_deref() == Some("leak-test: dedicated texture"))
        .expect("the dedicated allocation is reported by name");
    assert!(dedicated.dedicated);
    assert_eq!(dedicated.size, 64 * KIB);
    assert_eq!(dedicated.allocation_type, AllocationType::NonLinear);
    assert!(leaks.iter().any(|l| l.name.is_none()));
    let on_request = common::log_capture::records_mentioning("leak-test: vertex buffer");
    assert_eq!(on_request.len(), 1);
    assert_eq!(on_request[0].0, log::Level::Warn);
    assert_eq!(on_request[0].1, LOG_TARGET);
    assert!(
        on_request[0].2.contains("4096 bytes"),
        "{}",
        on_request[0].2
    );
    assert!(common::log_capture::records_mentioning("leak-test: freed in time").is_empty());

    // On drop: every live allocation again, the allocations stay usable afterwards.
    drop(allocator);
    assert_eq!(
        common::log_capture::records_mentioning("leak-test: vertex buffer").len(),
        2
    );
    let dropped = common::log_capture::records_mentioning("leak-test: dedicated texture");
    assert_eq!(dropped.len(), 2);
    assert!(dropped[1].2.contains("dedicated"), "{}", dropped[1].2);
    assert!(common::log_capture::records_mentioning("leak-test: freed in time").is_empty());
    assert!(!common::log_capture::records_mentioning("GenericMemoryAllocator dropped").is_empty());
    assert_eq!(dedicated_leak.size(), 64 * KIB);
    drop((block_leak, dedicated_leak));
    assert_eq!(
        device.live_memory_objects(),
        1,
        "only the unnamed block is left"
    );
}

#[test]
fn within_budget_refuses_an_allocation_past_the_budget() {
    let ctx = TestContext::new();
    let device = ctx.memory_device();
    let allocator = StandardMemoryAllocator::new_default(device.clone());
    // Some usage first, so the estimate is not trivially zero.
    let _small = allocator
        .allocate(
            requirements(&device, 4 * KIB),
            AllocationType::Linear,
            &AllocationCreateInfo::default(),
            None,
        )
        .unwrap();
    let type_index = 0;
    let heap = device.memory_properties().memory_types[type_index as usize].heap_index;
    let b = device.heap_budgets()[heap as usize];
    assert!(b.usage > 0);
    if !b.from_extension {
        // The estimate: 80 % of the heap, usage from this crate's memory objects.
        assert_eq!(b.budget, b.heap_size / 10 * 8);
        assert_eq!(b.usage, device.live_memory_bytes());
    }
    // On lavapipe (2 GiB heap) this asks for about 1.6 GiB: refused before the driver is
    // called, so nothing that large is ever allocated.
    let size = b.budget - b.usage + 1;
    assert!(size <= b.heap_size && size > GIB / 2);
    let calls = device.memory_allocation_calls();
    let within = AllocationCreateInfo {
        within_budget: true,
        ..Default::default()
    };
    let err = allocator
        .allocate_dedicated(type_index, size, None, &within)
        .unwrap_err();
    match err {
        AllocationError::BudgetExceeded(BudgetError {
            heap: h,
            usage,
            size: s,
            budget,
        }) => {
            assert_eq!((h, usage, s, budget), (heap, b.usage, size, b.budget));
        }
        other => panic!("expected BudgetExceeded, got {other:?}"),
    }
    assert!(err.to_string().contains("budget"));
    // Through the memory-type choice as well, restricted to the heap's types.
    let same_heap: u32 = device
        .memory_properties()
        .memory_types
        .iter()
        .enumerate()
        .filter(|(_, t)| t.heap_index == heap)
        .map(|(i, _)| 1 << i)
        .sum();
    let reqs = AllocationRequirements {
        layout: DeviceLayout::from_size_alignment(size, 256).unwrap(),
        memory_type_bits: same_heap,
        prefers_dedicated_allocation: false,
        requires_dedicated_allocation: false,
    };
    let err = allocator
        .allocate(reqs, AllocationType::Linear, &within, None)
        .unwrap_err();
    assert!(matches!(err, AllocationError::BudgetExceeded(_)), "{err:?}");
    assert_eq!(
        device.memory_allocation_calls(),
        calls,
        "the driver was not asked"
    );
    // The budget shows up in the statistics.
    let stats = allocator.statistics();
    assert_eq!(stats.heaps[heap as usize].budget.budget, b.budget);
}

#[test]
fn block_priority_outside_zero_to_one_is_rejected() {
    let ctx = TestContext::new();
    let device = ctx.memory_device();
    for bad in [1.5, -0.1, f32::NAN, f32::INFINITY] {
        let err = StandardMemoryAllocator::new(
            device.clone(),
            GenericMemoryAllocatorCreateInfo {
                block_priority: bad,
                ..Default::default()
            },
        )
        .unwrap_err();
        assert!(
            matches!(&err, AllocationError::Config(ConfigError::Priority(_))),
            "{bad}: {err:?}"
        );
    }
    for good in [0.0, 0.5, 1.0] {
        StandardMemoryAllocator::new(
            device.clone(),
            GenericMemoryAllocatorCreateInfo {
                block_priority: good,
                ..Default::default()
            },
        )
        .unwrap_or_else(|e| panic!("{good}: {e}"));
    }
}
