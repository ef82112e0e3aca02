//! Fault injection: a mixed scenario is run once to count its `vkAllocateMemory` (and
//! `vkMapMemory`) calls, then rerun with each call failing in turn, with every error a driver
//! may return. Every run must end without a panic, with the failing request either failing
//! with a clear error or served through a documented fallback (a smaller block, a dedicated
//! allocation, an existing block, another memory type), with every earlier allocation's data
//! intact, and with nothing left allocated or mapped once everything is dropped.

mod common;
mod support;

use ash::vk;
use ash_memory::*;
use std::collections::BTreeMap;
use support::{buffer_info, fill, image_info, verify, AllocCall, Faults, GpuLayout, Sim, KIB, MIB};

enum Item {
    Buffer(vk::Buffer, MemoryAlloc, Option<(u64, u64)>),
    Image(vk::Image, MemoryAlloc),
    Raw(MemoryAlloc, Option<(u64, u64)>),
}

impl Item {
    fn alloc(&self) -> &MemoryAlloc {
        match self {
            Item::Buffer(_, a, _) | Item::Image(_, a) | Item::Raw(a, _) => a,
        }
    }

    fn verify(&self, what: &str) {
        match self {
            Item::Buffer(_, a, Some((seed, len))) | Item::Raw(a, Some((seed, len))) => {
                verify(a, *seed, *len, what)
            }
            _ => {}
        }
    }
}

/// One request of the scenario.
#[derive(Clone, Copy, Debug)]
enum Request {
    Buffer(u64, MemoryUsage),
    Image(u32, vk::ImageTiling),
    /// A raw request: size, usage, memory type bits, preference, driver prefers dedicated.
    Raw(u64, MemoryUsage, u32, MemoryAllocatePreference, bool),
}

fn scenario() -> Vec<Request> {
    use MemoryAllocatePreference::*;
    use MemoryUsage::{DeviceOnly, Download, Upload};
    let mut r = Vec::new();
    r.extend((0..6).map(|i| Request::Buffer(4 * KIB + 256 * i, Upload)));
    r.extend((0..4).map(|i| Request::Buffer(16 * KIB * (i + 1), DeviceOnly)));
    // The driver prefers a dedicated allocation; a block has room too.
    r.push(Request::Raw(64 * KIB, DeviceOnly, 0b1111, Auto, true));
    // Larger than half a 256 MiB block: dedicated.
    r.push(Request::Buffer(150 * MIB, DeviceOnly));
    r.push(Request::Buffer(64 * KIB, Download));
    r.push(Request::Image(128, vk::ImageTiling::OPTIMAL));
    r.push(Request::Image(64, vk::ImageTiling::LINEAR));
    r.push(Request::Raw(MIB, Upload, 0b1111, AlwaysAllocate, false));
    // Larger than half a 64 MiB BAR block: a dedicated BAR allocation.
    r.push(Request::Buffer(40 * MIB, Upload));
    // Only the device-local type allowed: no other type to fall back to.
    r.push(Request::Raw(2 * MIB, DeviceOnly, 0b0001, Auto, false));
    r.push(Request::Raw(MIB, DeviceOnly, 0b0001, AlwaysAllocate, false));
    r.extend((0..4).map(|i| Request::Buffer(2 * KIB * (i + 1), Download)));
    r.extend((0..4).map(|i| Request::Buffer(8 * MIB + i * KIB, Upload)));
    r
}

/// What happened to one request.
#[derive(Debug)]
struct Outcome {
    request: Request,
    /// The `vkAllocateMemory` calls made for it.
    calls: std::ops::Range<u64>,
    maps: std::ops::Range<u64>,
    error: Option<AllocationError>,
    /// The memory type and dedicated flag of the allocation made.
    made: Option<(u32, bool)>,
}

fn required_flags(usage: MemoryUsage) -> vk::MemoryPropertyFlags {
    MemoryTypeFilter::from(usage).required_flags
}

fn run(sim: &Sim, faults: Faults) -> Vec<Outcome> {
    sim.state.set_faults(Faults::default());
    sim.state.reset_counters();
    sim.state.set_faults(faults);
    let device = sim.memory_device();
    let allocator = StandardMemoryAllocator::new_default(device.clone());
    let mut items: Vec<Item> = Vec::new();
    let mut outcomes = Vec::new();
    let maps = || {
        sim.state
            .map_calls
            .load(std::sync::atomic::Ordering::SeqCst)
    };
    for (n, request) in scenario().into_iter().enumerate() {
        let seed = n as u64 * 7919;
        let (calls_before, maps_before) = (sim.state.allocate_calls(), maps());
        let result = match request {
            Request::Buffer(size, usage) => {
                let info = AllocationCreateInfo {
                    usage,
                    ..Default::default()
                };
                // SAFETY: a valid create info; destroyed at the end before its memory.
                unsafe {
                    allocator.create_buffer(
                        &buffer_info(size, vk::BufferUsageFlags::TRANSFER_SRC),
                        &info,
                    )
                }
                .map(|(b, mut a)| {
                    assert!(a.memory_property_flags().contains(required_flags(usage)));
                    let check = (usage != MemoryUsage::DeviceOnly).then(|| {
                        let len = size.min(8 * KIB);
                        fill(&mut a, seed, len);
                        (seed, len)
                    });
                    Item::Buffer(b, a, check)
                })
            }
            Request::Image(extent, tiling) => {
                // SAFETY: a valid create info; destroyed at the end before its memory.
                unsafe {
                    allocator.create_image(
                        &image_info(extent, vk::Format::R8G8B8A8_UNORM, tiling),
                        &AllocationCreateInfo::default(),
                    )
                }
                .map(|(i, a)| Item::Image(i, a))
            }
            Request::Raw(size, usage, bits, pref, prefers) => {
                let reqs = AllocationRequirements {
                    layout: DeviceLayout::from_size_alignment(size, 256).unwrap(),
                    memory_type_bits: bits,
                    prefers_dedicated_allocation: prefers,
                    requires_dedicated_allocation: false,
                };
                let info = AllocationCreateInfo {
                    usage,
                    allocate_preference: pref,
                    ..Default::default()
                };
                allocator
                    .allocate(reqs, AllocationType::Linear, &info, None)
                    .map(|mut a| {
                        assert_ne!(bits & (1 << a.memory_type_index()), 0);
                        let check = (usage != MemoryUsage::DeviceOnly).then(|| {
                            fill(&mut a, seed, 4 * KIB);
                            (seed, 4 * KIB)
                        });
                        Item::Raw(a, check)
                    })
            }
        };
        let calls = calls_before + 1..sim.state.allocate_calls() + 1;
        let maps = maps_before + 1..maps() + 1;
        let (error, made) = match result {
            Ok(item) => {
                let a = item.alloc();
                let made = (a.memory_type_index(), a.is_dedicated());
                items.push(item);
                (None, Some(made))
            }
            Err(e) => (Some(e), None),
        };
        // Everything allocated so far is still intact.
        for (i, item) in items.iter().enumerate() {
            item.verify(&format!("item {i} after request {n}"));
        }
        outcomes.push(Outcome {
            request,
            calls,
            maps,
            error,
            made,
        });
    }
    sim.state.set_faults(Faults::default());
    let all: Vec<_> = items.iter().map(|i| (i.alloc(), 1)).collect();
    support::check_triples(&all, &sim.state, sim.state.layout.buffer_image_granularity);
    for item in &items {
        // SAFETY: nothing uses the resources; destroyed before their memory.
        unsafe {
            match item {
                Item::Buffer(b, ..) => sim.device.destroy_buffer(*b, None),
                Item::Image(i, _) => sim.device.destroy_image(*i, None),
                Item::Raw(..) => {}
            }
        }
    }
    drop(items);
    drop(allocator);
    assert_eq!(device.live_memory_objects(), 0);
    assert_eq!(device.live_memory_bytes(), 0);
    sim.assert_nothing_allocated();
    outcomes
}

/// How a request survived the failure of call `failed`, judged from the calls that followed
/// and from the allocation it got.
fn classify(failed: &AllocCall, later: &[AllocCall], made: (u32, bool)) -> &'static str {
    let (memory_type, dedicated) = made;
    match later.iter().find(|c| c.result == vk::Result::SUCCESS) {
        None => "an existing block",
        Some(_) if memory_type != failed.memory_type => "another memory type",
        Some(c) if dedicated && c.size != failed.size => "a dedicated allocation",
        Some(c) if !dedicated && c.size < failed.size => "a smaller block",
        Some(_) => "a retry of the same call",
    }
}

#[test]
fn every_allocate_and_map_call_of_a_mixed_scenario_can_fail() {
    let sim = Sim::new(GpuLayout::amd_discrete_bar());
    let baseline = run(&sim, Faults::default());
    for o in &baseline {
        assert!(
            o.error.is_none(),
            "baseline request {:?}: {:?}",
            o.request,
            o.error
        );
    }
    let k = baseline.last().unwrap().calls.end - 1;
    let m = baseline.last().unwrap().maps.end - 1;
    assert!(k >= 8, "the scenario makes only {k} vkAllocateMemory calls");
    let mut summary: BTreeMap<String, usize> = BTreeMap::new();
    let max = sim.state.layout.max_memory_allocation_count;
    for more in [0, 3] {
        for result in [
            vk::Result::ERROR_OUT_OF_DEVICE_MEMORY,
            vk::Result::ERROR_OUT_OF_HOST_MEMORY,
            vk::Result::ERROR_TOO_MANY_OBJECTS,
        ] {
            for at in 1..=k {
                let faults = Faults {
                    allocate_at: Some((at, result)),
                    allocate_more: more,
                    ..Default::default()
                };
                let outcomes = run(&sim, faults);
                let calls = sim.state.calls();
                let failing = |c: &AllocCall| c.index >= at && c.index <= at + more;
                for o in &outcomes {
                    let mine = &calls[o.calls.start as usize - 1..o.calls.end as usize - 1];
                    let Some(first) = mine.iter().find(|c| failing(c)) else {
                        // Requests the fault did not reach behave as in the baseline.
                        assert!(
                            o.error.is_none(),
                            "fault at {at}+{more} ({result}): {:?} failed: {:?}",
                            o.request,
                            o.error
                        );
                        continue;
                    };
                    assert_eq!(first.result, result);
                    let verdict = match &o.error {
                        Some(e) => {
                            let clear = match result {
                                vk::Result::ERROR_OUT_OF_DEVICE_MEMORY => {
                                    *e == AllocationError::OutOfDeviceMemory
                                }
                                vk::Result::ERROR_OUT_OF_HOST_MEMORY => {
                                    *e == AllocationError::OutOfHostMemory
                                }
                                _ => *e == AllocationError::TooManyObjects { max },
                            };
                            assert!(
                                clear,
                                "fault at {at}+{more} ({result}): unclear error {e:?}: {e}"
                            );
                            "an error"
                        }
                        None => {
                            let last = mine.iter().rposition(failing).unwrap();
                            classify(first, &mine[last + 1..], o.made.unwrap())
                        }
                    };
                    println!(
                        "fault {result} at {at}+{more} ({first:?}): {:?} -> {verdict}",
                        o.request
                    );
                    *summary.entry(verdict.to_string()).or_default() += 1;
                }
            }
        }
    }
    println!("{summary:#?}");
    // The scenario exercises every fallback and the error path.
    for kind in [
        "a smaller block",
        "a dedicated allocation",
        "an existing block",
        "another memory type",
        "an error",
    ] {
        assert!(
            summary.contains_key(kind),
            "no fault was handled by {kind}: {summary:?}"
        );
    }
    assert!(
        !summary.contains_key("a retry of the same call"),
        "{summary:?}"
    );
    // A failed vkMapMemory frees the memory again and counts as running out of memory: the
    // request falls back (a smaller block, a dedicated allocation, another type) or fails
    // with the map error; no other request is touched.
    let mut map_fallbacks = 0;
    for at in 1..=m {
        let outcomes = run(
            &sim,
            Faults {
                map_at: Some(at),
                ..Default::default()
            },
        );
        for o in outcomes {
            if o.maps.contains(&at) {
                match o.error {
                    Some(e) => {
                        assert_eq!(
                            e,
                            AllocationError::MapFailed(vk::Result::ERROR_MEMORY_MAP_FAILED)
                        );
                        assert!(e.to_string().contains("vkMapMemory failed"), "{e}");
                    }
                    None => map_fallbacks += 1,
                }
            } else {
                assert!(o.error.is_none(), "{:?}: {:?}", o.request, o.error);
            }
        }
    }
    assert!(
        map_fallbacks > 0,
        "no failed map was survived by a fallback"
    );
}
