//! The automatic usages on the memory layouts of real GPUs (the layouts the driver tests
//! simulate): one expected memory type per layout and intent, each with its reason, and the
//! rationing of small BAR heaps, with no driver at all.

use super::*;
use crate::device::MemoryProperties;
use vk::BufferUsageFlags as B;
use vk::ImageUsageFlags as I;
use HostAccess::{
    NoAccess as NoHost, Random, RandomOrTransfer, SequentialWrite, SequentialWriteOrTransfer,
};

use crate::simulated_layouts::GpuLayout;

const MIB: DeviceSize = 1 << 20;

fn props(layout: &GpuLayout) -> MemoryProperties {
    MemoryProperties::from_vk(&layout.to_vk()).unwrap()
}

/// One intent: what the application says, for which resource.
#[derive(Clone, Copy, Debug)]
struct Intent {
    name: &'static str,
    usage: MemoryUsage,
    resource: ResourceUsage,
}

const fn intent(name: &'static str, usage: MemoryUsage, resource: ResourceUsage) -> Intent {
    Intent {
        name,
        usage,
        resource,
    }
}

const fn buffer(flags: B) -> ResourceUsage {
    ResourceUsage::Buffer(flags)
}

/// Every host access with every preference, on the resources that tell the rows apart.
fn intents() -> Vec<Intent> {
    use MemoryUsage::{Auto, AutoPreferDevice, AutoPreferHost};
    let attachment = ResourceUsage::Image(I::COLOR_ATTACHMENT | I::SAMPLED);
    let transient = ResourceUsage::Image(I::COLOR_ATTACHMENT | I::TRANSIENT_ATTACHMENT);
    let vertex = buffer(B::VERTEX_BUFFER | B::TRANSFER_DST);
    let staging = buffer(B::TRANSFER_SRC);
    let uniform = buffer(B::UNIFORM_BUFFER);
    let readback = buffer(B::TRANSFER_DST);
    let storage = buffer(B::STORAGE_BUFFER);
    vec![
        intent("render target", Auto(NoHost), attachment),
        intent("transient attachment", Auto(NoHost), transient),
        intent("GPU-only vertex buffer", Auto(NoHost), vertex),
        intent("GPU-only, prefer host", AutoPreferHost(NoHost), storage),
        intent("unknown resource", Auto(NoHost), ResourceUsage::Unknown),
        intent("staging upload", Auto(SequentialWrite), staging),
        intent(
            "staging, prefer device",
            AutoPreferDevice(SequentialWrite),
            staging,
        ),
        intent("dynamic uniform", Auto(SequentialWrite), uniform),
        intent(
            "dynamic uniform, prefer host",
            AutoPreferHost(SequentialWrite),
            uniform,
        ),
        intent("written or staged", Auto(SequentialWriteOrTransfer), vertex),
        intent("read-back", Auto(Random), readback),
        intent(
            "read-back, prefer device",
            AutoPreferDevice(Random),
            readback,
        ),
        intent("read-back, prefer host", AutoPreferHost(Random), storage),
        intent("read or staged", Auto(RandomOrTransfer), storage),
    ]
}

/// The expected type of each intent (in the order of [`intents`]) on each layout, and why.
fn expected() -> Vec<(GpuLayout, [(u32, &'static str); 14])> {
    vec![
        (
            GpuLayout::nvidia_discrete(),
            [
                (0, "VRAM"),
                (0, "no lazily allocated type: VRAM"),
                (0, "VRAM"),
                (1, "host memory, the first host type"),
                (0, "unknown resources are taken for GPU-only"),
                (1, "write-combined host memory"),
                (
                    1,
                    "no device-local host-visible type: write-combined host memory",
                ),
                (1, "no BAR: write-combined host memory, read over PCIe"),
                (1, "write-combined host memory"),
                (0, "VRAM, filled through a staging copy"),
                (2, "cached host memory"),
                (2, "cached host memory"),
                (2, "cached host memory"),
                (0, "VRAM, read back through a copy"),
            ],
        ),
        (
            GpuLayout::amd_discrete_bar(),
            [
                (0, "VRAM, not the BAR window"),
                (0, "VRAM"),
                (0, "VRAM"),
                (1, "host memory"),
                (0, "VRAM"),
                (1, "staging never takes BAR space"),
                (2, "the BAR window, as asked (rationed)"),
                (
                    2,
                    "the BAR window: small and written every frame (rationed)",
                ),
                (1, "write-combined host memory"),
                (2, "the BAR window, mapped (rationed)"),
                (3, "cached host memory"),
                (
                    2,
                    "device-local first, though uncached: the BAR window (rationed)",
                ),
                (3, "cached host memory"),
                (0, "VRAM, read back through a copy"),
            ],
        ),
        (
            GpuLayout::amd_discrete_rebar(),
            [
                (0, "VRAM, device-only type"),
                (0, "VRAM"),
                (0, "VRAM"),
                (1, "host memory"),
                (0, "VRAM"),
                (1, "staging stays in host memory"),
                (2, "host-visible VRAM"),
                (2, "host-visible VRAM, all of it mappable"),
                (1, "write-combined host memory"),
                (2, "host-visible VRAM, mapped: no copy needed"),
                (3, "cached host memory"),
                (2, "host-visible VRAM"),
                (3, "cached host memory"),
                (0, "VRAM, read back through a copy"),
            ],
        ),
        (
            GpuLayout::intel_integrated(),
            [
                (0, "the device-only type"),
                (0, "no lazily allocated type"),
                (0, "the device-only type"),
                (0, "one heap: every type is device-local, the lowest index"),
                (0, "the device-only type"),
                (2, "the uncached (write-combined) host-visible type"),
                (2, "the uncached host-visible type"),
                (2, "the uncached host-visible type"),
                (2, "the uncached host-visible type"),
                (2, "unified memory: mapped, no staging"),
                (1, "the cached type"),
                (1, "the cached type"),
                (1, "the cached type"),
                (1, "unified memory: the cached type, mapped"),
            ],
        ),
        (
            GpuLayout::mobile(),
            [
                (0, "the coherent type (no device-only type)"),
                (2, "lazily allocated memory, never committed on a tiler"),
                (0, "the coherent type"),
                (0, "the coherent type"),
                (0, "the coherent type"),
                (0, "the coherent uncached type"),
                (0, "the coherent uncached type"),
                (0, "the coherent uncached type"),
                (0, "the coherent uncached type"),
                (0, "unified memory: mapped, no staging"),
                (1, "the cached (non-coherent) type"),
                (1, "the cached type"),
                (1, "the cached type"),
                (1, "unified memory: the cached type, mapped"),
            ],
        ),
        (
            GpuLayout::large_granularity(),
            [
                (0, "as NVIDIA"),
                (0, "as NVIDIA"),
                (0, "as NVIDIA"),
                (1, "as NVIDIA"),
                (0, "as NVIDIA"),
                (1, "as NVIDIA"),
                (1, "as NVIDIA"),
                (1, "as NVIDIA"),
                (1, "as NVIDIA"),
                (0, "as NVIDIA"),
                (2, "as NVIDIA"),
                (2, "as NVIDIA"),
                (2, "as NVIDIA"),
                (0, "as NVIDIA"),
            ],
        ),
        (GpuLayout::lavapipe(), [(0, "the only type"); 14]),
    ]
}

/// The memory types a resource of `resource` may use on `layout`.
fn bits(layout: &GpuLayout, resource: ResourceUsage) -> u32 {
    match resource {
        ResourceUsage::Image(usage) => layout.image_bits(vk::ImageTiling::OPTIMAL, usage),
        _ => layout.buffer_bits(),
    }
}

fn pick(layout: &GpuLayout, i: &Intent, demoted: u32) -> Option<u32> {
    let p = props(layout);
    let resolved = resolve(i.usage, i.resource, HeapFacts::of(&p));
    choose(
        &p,
        &EnabledMemoryFeatures::default(),
        bits(layout, i.resource),
        &resolved,
        demoted,
    )
}

#[test]
fn every_intent_picks_the_expected_type_on_every_layout() {
    let intents = intents();
    for (layout, rows) in expected() {
        assert_eq!(rows.len(), intents.len());
        for (i, &(expected, why)) in intents.iter().zip(&rows) {
            assert_eq!(
                pick(&layout, i, 0),
                Some(expected),
                "{} / {}: expected type {expected} ({why})",
                layout.name,
                i.name
            );
        }
    }
}

#[test]
fn the_heap_shape_is_read_from_the_layout() {
    let facts = |l: GpuLayout| HeapFacts::of(&props(&l));
    let bar = facts(GpuLayout::amd_discrete_bar());
    assert_eq!((bar.unified, bar.small_heaps), (false, 1 << 2));
    assert!(bar.is_small(2) && !bar.is_small(0) && !bar.is_small(40));
    // Resizable BAR: the host-visible VRAM type is on the large heap.
    let rebar = facts(GpuLayout::amd_discrete_rebar());
    assert_eq!((rebar.unified, rebar.small_heaps), (false, 0));
    assert_eq!(facts(GpuLayout::nvidia_discrete()).small_heaps, 0);
    for l in [
        GpuLayout::intel_integrated(),
        GpuLayout::mobile(),
        GpuLayout::lavapipe(),
    ] {
        let f = facts(l.clone());
        assert!(f.unified, "{}", l.name);
        assert_eq!(f.small_heaps, 0, "{}: nothing is rationed", l.name);
    }
}

#[test]
fn a_heap_is_small_below_a_quarter_of_vram_and_only_with_a_host_visible_type() {
    let layout = |bar: DeviceSize, bar_flags: F| GpuLayout {
        name: "bar-boundary",
        types: vec![
            (F::DEVICE_LOCAL, 0),
            (F::HOST_VISIBLE | F::HOST_COHERENT, 1),
            (bar_flags, 2),
        ],
        heaps: vec![(1024 * MIB, true), (4096 * MIB, false), (bar, true)],
        ..GpuLayout::amd_discrete_bar()
    };
    let facts = |l: GpuLayout| HeapFacts::of(&props(&l));
    let bar = F::DEVICE_LOCAL | F::HOST_VISIBLE | F::HOST_COHERENT;
    assert_eq!(facts(layout(256 * MIB - 1, bar)).small_heaps, 1 << 2);
    assert_eq!(
        facts(layout(256 * MIB, bar)).small_heaps,
        0,
        "a quarter is not small"
    );
    // A small device-local heap without a host-visible type is not a BAR window.
    assert_eq!(facts(layout(64 * MIB, F::DEVICE_LOCAL)).small_heaps, 0);
    // Nor is a small heap whose host-visible type is not device-local.
    assert_eq!(facts(layout(64 * MIB, F::HOST_VISIBLE)).small_heaps, 0);
    // Heap indices past the mask are never small (and never overflow it).
    let f = facts(layout(64 * MIB, bar));
    assert!(f.is_small(2) && !f.is_small(31) && !f.is_small(32) && !f.is_small(u32::MAX));
}

#[test]
fn a_small_heap_admits_small_requests_up_to_half_its_budget() {
    let heap = 256 * MIB;
    let budget = heap / 10 * 8;
    let largest = heap / SMALL_HEAP_MAX_REQUEST_DIVISOR;
    assert_eq!(largest, 8 * MIB);
    assert!(small_heap_admits(largest, heap, 0, budget));
    assert!(!small_heap_admits(largest + 1, heap, 0, budget));
    let limit = budget / SMALL_HEAP_FILL_DIVISOR;
    assert!(small_heap_admits(MIB, heap, limit - MIB, budget));
    assert!(!small_heap_admits(MIB, heap, limit - MIB + 1, budget));
    assert!(
        !small_heap_admits(1, heap, DeviceSize::MAX, budget),
        "no overflow"
    );
}

#[test]
fn rationing_moves_the_bar_type_behind_every_other() {
    let layout = GpuLayout::amd_discrete_bar();
    let bar_type = 1 << 2;
    // Turned away from the BAR window, each intent takes its next-best type.
    for (name, expected, why) in [
        ("staging, prefer device", 1, "write-combined host memory"),
        ("dynamic uniform", 1, "write-combined host memory"),
        ("written or staged", 0, "VRAM and a staging copy"),
        ("read-back, prefer device", 3, "cached host memory"),
    ] {
        let i = intents().into_iter().find(|i| i.name == name).unwrap();
        assert_eq!(
            pick(&layout, &i, 0),
            Some(2),
            "{name}: the BAR window first"
        );
        assert_eq!(pick(&layout, &i, bar_type), Some(expected), "{name}: {why}");
    }
    // A demoted type is still the last resort, never excluded.
    let uniform = intent(
        "dynamic uniform",
        MemoryUsage::Auto(SequentialWrite),
        buffer(B::UNIFORM_BUFFER),
    );
    let p = props(&layout);
    let resolved = resolve(uniform.usage, uniform.resource, HeapFacts::of(&p));
    assert!(resolved.rationed);
    let features = EnabledMemoryFeatures::default();
    assert_eq!(
        choose(&p, &features, bar_type, &resolved, bar_type),
        Some(2)
    );
}

#[test]
fn the_simple_usages_keep_their_fixed_flags() {
    let facts = HeapFacts::of(&props(&GpuLayout::amd_discrete_bar()));
    for usage in [
        MemoryUsage::DeviceOnly,
        MemoryUsage::Upload,
        MemoryUsage::Download,
        MemoryUsage::Custom(MemoryTypeFilter {
            required_flags: F::HOST_COHERENT,
            ..Default::default()
        }),
    ] {
        for resource in [ResourceUsage::Unknown, buffer(B::TRANSFER_SRC)] {
            let r = resolve(usage, resource, facts);
            assert_eq!(Some(r.filter), usage.simple_filter(), "{usage:?}");
            assert_eq!(MemoryTypeFilter::from(usage), r.filter);
            assert!(!r.rationed && !r.lazy_first, "{usage:?}");
        }
    }
    // Upload still prefers the BAR window for staging buffers; that is what Auto fixes.
    let layout = GpuLayout::amd_discrete_bar();
    let upload = intent("upload", MemoryUsage::Upload, buffer(B::TRANSFER_SRC));
    assert_eq!(pick(&layout, &upload, 0), Some(2));
    // Without context, an automatic usage is resolved as for an unknown resource on a
    // discrete GPU.
    assert_eq!(
        MemoryTypeFilter::from(MemoryUsage::Auto(NoHost)),
        MemoryUsage::DeviceOnly.simple_filter().unwrap()
    );
}

#[test]
fn the_lazily_allocated_type_is_only_for_transient_attachments_without_host_access() {
    let layout = GpuLayout::mobile();
    let transient = ResourceUsage::Image(I::COLOR_ATTACHMENT | I::TRANSIENT_ATTACHMENT);
    let all = layout.image_bits(vk::ImageTiling::OPTIMAL, I::TRANSIENT_ATTACHMENT);
    let p = props(&layout);
    let features = EnabledMemoryFeatures::default();
    let facts = HeapFacts::of(&p);
    let pick =
        |usage, resource, bits| choose(&p, &features, bits, &resolve(usage, resource, facts), 0);
    assert_eq!(pick(MemoryUsage::Auto(NoHost), transient, all), Some(2));
    // Without the lazily allocated type in the mask (it failed, or the image does not allow
    // it), the ordinary device-local choice.
    assert_eq!(
        pick(MemoryUsage::Auto(NoHost), transient, all & !(1 << 2)),
        Some(0)
    );
    // A mapped transient image, or one that prefers host memory, is not lazily allocated.
    assert_eq!(
        pick(MemoryUsage::Auto(SequentialWrite), transient, all),
        Some(0)
    );
    assert_eq!(
        pick(MemoryUsage::AutoPreferHost(NoHost), transient, all),
        Some(0)
    );
    // An attachment that is not transient never is.
    let attachment = ResourceUsage::Image(I::COLOR_ATTACHMENT);
    assert_eq!(pick(MemoryUsage::Auto(NoHost), attachment, all), Some(0));
}

#[test]
fn resources_are_classified_by_their_usage_flags() {
    assert!(ResourceUsage::Unknown.device_access());
    assert!(!buffer(B::TRANSFER_SRC).device_access());
    assert!(!buffer(B::TRANSFER_SRC | B::TRANSFER_DST).device_access());
    assert!(buffer(B::TRANSFER_SRC | B::UNIFORM_BUFFER).device_access());
    assert!(!ResourceUsage::Image(I::TRANSFER_DST).device_access());
    assert!(ResourceUsage::Image(I::SAMPLED).device_access());
    assert!(ResourceUsage::Image(I::TRANSIENT_ATTACHMENT | I::COLOR_ATTACHMENT).transient());
    assert!(!ResourceUsage::Image(I::COLOR_ATTACHMENT).transient());
    assert!(!buffer(B::UNIFORM_BUFFER).transient());
    assert!(SequentialWriteOrTransfer.allows_transfer_instead());
    assert!(RandomOrTransfer.allows_transfer_instead());
    assert!(!SequentialWrite.allows_transfer_instead() && !NoHost.allows_transfer_instead());
}

#[test]
fn every_class_has_its_own_cache_slot() {
    use MemoryUsage::{Auto, AutoPreferDevice, AutoPreferHost};
    let resources = [
        ResourceUsage::Unknown,
        buffer(B::TRANSFER_SRC),
        ResourceUsage::Image(I::TRANSIENT_ATTACHMENT | I::COLOR_ATTACHMENT),
        ResourceUsage::Image(I::TRANSIENT_ATTACHMENT),
    ];
    let mut seen = std::collections::HashMap::new();
    let facts = HeapFacts::of(&props(&GpuLayout::amd_discrete_bar()));
    for usage in [
        MemoryUsage::DeviceOnly,
        MemoryUsage::Upload,
        MemoryUsage::Download,
    ]
    .into_iter()
    .chain(
        HostAccess::ALL
            .iter()
            .flat_map(|&h| [Auto(h), AutoPreferDevice(h), AutoPreferHost(h)]),
    ) {
        for resource in resources {
            let class = class_of(usage, resource).unwrap();
            assert!(class < CLASSES);
            let key = (usage, resource.device_access(), resource.transient());
            let resolved = resolve(usage, resource, facts);
            // One class, one resolution: the cache is keyed soundly.
            if let Some((other_key, other)) = seen.insert(class, (key, resolved)) {
                assert_eq!(
                    other, resolved,
                    "{key:?} and {other_key:?} share slot {class}"
                );
            }
        }
    }
    // Every slot is used by some automatic class or simple usage.
    assert_eq!(seen.len(), CLASSES);
}

#[test]
fn cached_vram_is_taken_or_avoided_as_the_preference_says() {
    // A discrete GPU whose VRAM is also mappable and cached (no real layout in the table
    // has one), where the host types come first.
    let layout = GpuLayout {
        name: "cached-vram",
        types: vec![
            (F::HOST_VISIBLE | F::HOST_COHERENT, 0),
            (F::DEVICE_LOCAL, 1),
            (
                F::DEVICE_LOCAL | F::HOST_VISIBLE | F::HOST_COHERENT | F::HOST_CACHED,
                1,
            ),
            (F::HOST_VISIBLE | F::HOST_COHERENT | F::HOST_CACHED, 0),
        ],
        heaps: vec![(16 * 1024 * MIB, false), (8 * 1024 * MIB, true)],
        ..GpuLayout::nvidia_discrete()
    };
    let storage = buffer(B::STORAGE_BUFFER);
    for (usage, expected, why) in [
        (
            MemoryUsage::Auto(RandomOrTransfer),
            2,
            "device-local and cached",
        ),
        (
            MemoryUsage::Auto(Random),
            2,
            "cached, the lower index of two",
        ),
        (MemoryUsage::AutoPreferHost(Random), 3, "cached host memory"),
        (MemoryUsage::AutoPreferDevice(Random), 2, "cached VRAM"),
        (
            MemoryUsage::AutoPreferHost(SequentialWrite),
            0,
            "write-combined host memory",
        ),
    ] {
        let i = intent(why, usage, storage);
        assert_eq!(pick(&layout, &i, 0), Some(expected), "{usage:?}: {why}");
    }
}

/// An integrated GPU with a device-local carve-out heap beside system memory (AMD APUs on
/// RADV, the Steam Deck): VMA takes it for integrated by its device type, so the "or
/// transfer" forms map the memory instead of staging through a non-mappable carve-out type.
/// Taken for discrete, "random or transfer" lands in the carve-out's device-only type, which
/// forces the application through a copy it does not need.
#[test]
fn an_integrated_gpu_with_a_carve_out_heap_is_unified_by_its_device_type() {
    let layout = GpuLayout {
        name: "apu-carve-out",
        heaps: vec![(1024 * MIB, true), (8 * 1024 * MIB, false)],
        ..GpuLayout::amd_discrete_rebar()
    };
    let p = props(&layout);
    let integrated = HeapFacts::of_device(&p, vk::PhysicalDeviceType::INTEGRATED_GPU);
    assert_eq!((integrated.unified, integrated.small_heaps), (true, 0));
    let discrete = HeapFacts::of_device(&p, vk::PhysicalDeviceType::DISCRETE_GPU);
    assert_eq!(discrete, HeapFacts::of(&p), "other types go by the heaps");
    assert!(!discrete.unified);
    let storage = buffer(B::STORAGE_BUFFER);
    let vertex = buffer(B::VERTEX_BUFFER | B::TRANSFER_DST);
    let pick = |facts, usage, resource| {
        let resolved = resolve(usage, resource, facts);
        choose(
            &p,
            &EnabledMemoryFeatures::default(),
            u32::MAX,
            &resolved,
            0,
        )
    };
    use MemoryUsage::Auto;
    // Types: 0 carve-out VRAM, 1 write-combined host, 2 carve-out host-visible, 3 cached host.
    assert_eq!(pick(integrated, Auto(RandomOrTransfer), storage), Some(3));
    assert_eq!(pick(discrete, Auto(RandomOrTransfer), storage), Some(0));
    assert_eq!(
        pick(integrated, Auto(SequentialWriteOrTransfer), vertex),
        Some(2)
    );
    assert_eq!(pick(integrated, Auto(NoHost), storage), Some(0));
    assert_eq!(pick(integrated, Auto(Random), storage), Some(3));
}
