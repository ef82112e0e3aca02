//! The memory type the allocator picks, against VMA's rule, through the safe public API.
//!
//! [`vma`] is VMA 3's rule written out from `vk_mem_alloc.h` (`FindMemoryPreferences` and
//! `FindMemoryTypeIndex`): the usage (legacy `GPU_ONLY` / `CPU_TO_GPU` / `GPU_TO_CPU`, the
//! `AUTO*` usages with the host-access and allow-transfer-instead flags, or explicit
//! required and preferred flags) becomes required, preferred and not-preferred flags;
//! `DEVICE_UNCACHED_AMD` is not preferred unless asked for; `DEVICE_COHERENT_AMD` types are
//! left out unless the feature is enabled; the lowest cost (missing preferred plus present
//! not-preferred flags) wins, ties to the lowest index. [`ours`] is that rule with the
//! differences the crate documents (`allocator::intent` and `allocator::memory_type`), each
//! named where it is applied. On every simulated layout, for every usage and kind of resource
//! and **every subset** of the memory types as `memoryTypeBits`, the allocator's choice must
//! equal [`ours`]: a type outside the bits, a special type picked by accident, or any other
//! choice that neither VMA's rule nor a documented difference explains fails.
//!
//! The other tests fill a heap or its budget for real and check the fallback to the next type
//! in VMA's order, and check the errors of requests no type can serve. A pure property test
//! checks the same rule on random layouts and filters without a driver.

mod common;
mod support;

use ash::vk;
use ash::vk::MemoryPropertyFlags as F;
use ash_memory::allocator::memory_type::find_memory_type_index;
use ash_memory::*;
use proptest::prelude::*;
use support::{buffer_info, fill, verify, GpuLayout, Sim, KIB, MIB};
use vk::BufferUsageFlags as B;
use vk::ImageUsageFlags as I;

const DL: F = F::DEVICE_LOCAL;
const HV: F = F::HOST_VISIBLE;
const HC: F = F::HOST_COHERENT;
const CACHED: F = F::HOST_CACHED;
const LAZY: F = F::LAZILY_ALLOCATED;
const PROT: F = F::PROTECTED;
const DC: F = F::DEVICE_COHERENT_AMD;
const DU: F = F::DEVICE_UNCACHED_AMD;

/// An AMD discrete GPU with `VK_AMD_device_coherent_memory` (RADV and the Windows driver on
/// RDNA): the four ordinary types of a 256 MiB BAR device, then the same four again with
/// `DEVICE_COHERENT | DEVICE_UNCACHED`.
fn amd_device_coherent() -> GpuLayout {
    let base = GpuLayout::amd_discrete_bar();
    let mut types = base.types.clone();
    for &(flags, heap) in &base.types {
        types.push((flags | DC | DU, heap));
    }
    GpuLayout {
        name: "amd-device-coherent",
        types,
        ..base
    }
}

/// An integrated GPU with a carve-out (AMD APUs on RADV, the Steam Deck): a 1 GiB
/// device-local heap with a host-visible type, and system memory that is not device-local.
fn apu_carve_out() -> GpuLayout {
    GpuLayout {
        name: "apu-carve-out",
        heaps: vec![(1 << 30, true), (8 << 30, false)],
        ..GpuLayout::amd_discrete_rebar()
    }
}

/// A mobile layout whose lazily allocated type comes first, so that only the opt-in rule keeps
/// it from ordinary device-local requests.
fn mobile_lazy_first() -> GpuLayout {
    GpuLayout {
        name: "mobile-lazy-first",
        types: vec![(DL | LAZY, 0), (DL | HV | HC, 0), (DL | HV | CACHED, 0)],
        ..GpuLayout::mobile()
    }
}

/// A layout and the optional features its allocator has enabled.
struct Config {
    layout: GpuLayout,
    protected: bool,
    device_coherent: bool,
    /// The device type the driver reports is `INTEGRATED_GPU` (VMA's `isIntegratedGPU`);
    /// the simulated driver reports lavapipe's own type.
    integrated_type: bool,
}

fn configs() -> Vec<Config> {
    let plain = |layout| Config {
        layout,
        protected: false,
        device_coherent: false,
        integrated_type: false,
    };
    let mut all: Vec<Config> = GpuLayout::all().into_iter().map(plain).collect();
    all.push(plain(GpuLayout::lavapipe()));
    all.push(plain(apu_carve_out()));
    all.push(plain(mobile_lazy_first()));
    all.push(plain(GpuLayout::with_protected()));
    all.push(Config {
        layout: GpuLayout::with_protected(),
        protected: true,
        device_coherent: false,
        integrated_type: false,
    });
    all.push(plain(amd_device_coherent()));
    all.push(Config {
        layout: amd_device_coherent(),
        protected: false,
        device_coherent: true,
        integrated_type: false,
    });
    all
}

/// The resources that tell VMA's rows apart.
fn resources() -> Vec<ResourceUsage> {
    vec![
        ResourceUsage::Unknown,
        ResourceUsage::Buffer(B::TRANSFER_SRC),
        ResourceUsage::Buffer(B::TRANSFER_DST),
        ResourceUsage::Buffer(B::UNIFORM_BUFFER),
        ResourceUsage::Buffer(B::VERTEX_BUFFER | B::TRANSFER_DST),
        ResourceUsage::Image(I::COLOR_ATTACHMENT | I::SAMPLED),
        ResourceUsage::Image(I::COLOR_ATTACHMENT | I::TRANSIENT_ATTACHMENT),
        ResourceUsage::Image(I::TRANSFER_SRC | I::TRANSFER_DST),
    ]
}

fn custom(required: F, preferred: F, not_preferred: F) -> MemoryUsage {
    MemoryUsage::Custom(MemoryTypeFilter {
        required_flags: required,
        preferred_flags: preferred,
        not_preferred_flags: not_preferred,
    })
}

/// Every usage: the legacy ones, each automatic usage with each host access, and explicit
/// filters (VMA's `requiredFlags` / `preferredFlags` with `VMA_MEMORY_USAGE_UNKNOWN`).
fn usages() -> Vec<MemoryUsage> {
    let mut all = vec![
        MemoryUsage::DeviceOnly,
        MemoryUsage::Upload,
        MemoryUsage::Download,
        custom(F::empty(), F::empty(), F::empty()),
        custom(DL | HV, F::empty(), F::empty()),
        custom(HV, CACHED | HC, F::empty()),
        custom(F::empty(), HV, DL),
        custom(LAZY, DL, F::empty()),
        custom(PROT, F::empty(), F::empty()),
        custom(DL, DC, F::empty()),
        custom(HV | DU, F::empty(), F::empty()),
    ];
    for host in [
        HostAccess::NoAccess,
        HostAccess::SequentialWrite,
        HostAccess::Random,
        HostAccess::SequentialWriteOrTransfer,
        HostAccess::RandomOrTransfer,
    ] {
        all.push(MemoryUsage::Auto(host));
        all.push(MemoryUsage::AutoPreferDevice(host));
        all.push(MemoryUsage::AutoPreferHost(host));
    }
    all
}

/// Required, preferred and not-preferred flags.
type Flags = (F, F, F);

#[derive(Clone, Copy, PartialEq, Eq)]
enum Prefer {
    Neither,
    Device,
    Host,
}

fn auto_parts(usage: MemoryUsage) -> Option<(Prefer, HostAccess)> {
    match usage {
        MemoryUsage::Auto(h) => Some((Prefer::Neither, h)),
        MemoryUsage::AutoPreferDevice(h) => Some((Prefer::Device, h)),
        MemoryUsage::AutoPreferHost(h) => Some((Prefer::Host, h)),
        _ => None,
    }
}

/// VMA 3's `FindMemoryPreferences`, for a resource whose usage flags say `device_access`
/// (anything but transfers) on a GPU that is `integrated`.
fn vma_preferences(usage: MemoryUsage, device_access: bool, integrated: bool) -> Flags {
    let (mut req, mut pref, mut not) = (F::empty(), F::empty(), F::empty());
    let user = match usage {
        MemoryUsage::Custom(f) => f.required_flags | f.preferred_flags,
        _ => F::empty(),
    };
    match usage {
        // GPU_ONLY.
        MemoryUsage::DeviceOnly => pref |= DL,
        // CPU_TO_GPU.
        MemoryUsage::Upload => {
            req |= HV;
            pref |= DL;
        }
        // GPU_TO_CPU.
        MemoryUsage::Download => {
            req |= HV;
            pref |= CACHED;
        }
        // UNKNOWN with requiredFlags / preferredFlags (the not-preferred flags are the
        // crate's own addition, counted like VMA's internal ones).
        MemoryUsage::Custom(f) => {
            req = f.required_flags;
            pref = f.preferred_flags;
            not = f.not_preferred_flags;
        }
        _ => {
            let (prefer, host) = auto_parts(usage).unwrap();
            let transfer = matches!(
                host,
                HostAccess::SequentialWriteOrTransfer | HostAccess::RandomOrTransfer
            );
            let stage = !integrated && device_access && transfer && prefer != Prefer::Host;
            match host {
                HostAccess::Random | HostAccess::RandomOrTransfer => {
                    pref |= CACHED;
                    if stage {
                        pref |= DL;
                    } else if transfer {
                        pref |= HV;
                    } else {
                        req |= HV;
                    }
                }
                HostAccess::SequentialWrite | HostAccess::SequentialWriteOrTransfer => {
                    not |= CACHED;
                    if stage {
                        pref |= DL | HV;
                    } else {
                        if transfer {
                            pref |= HV;
                        } else {
                            req |= HV;
                        }
                        let device_side = if device_access {
                            prefer != Prefer::Host
                        } else {
                            prefer == Prefer::Device
                        };
                        if device_side {
                            pref |= DL;
                        } else {
                            not |= DL;
                        }
                    }
                }
                _ => {
                    if prefer == Prefer::Host {
                        not |= DL;
                    } else {
                        pref |= DL;
                    }
                }
            }
        }
    }
    // Avoid DEVICE_UNCACHED unless explicitly requested.
    if !user.intersects(DC | DU) {
        not |= DU;
    }
    (req, pref, not)
}

/// VMA's `FindMemoryTypeIndex` over the types in `bits` that `usable` lets through.
fn vma_pick(
    layout: &GpuLayout,
    bits: u32,
    (req, pref, not): Flags,
    usable: impl Fn(F) -> bool,
) -> Option<u32> {
    (0..layout.type_count())
        .filter(|&i| bits & (1 << i) != 0)
        .filter(|&i| layout.flags(i).contains(req) && usable(layout.flags(i)))
        .min_by_key(|&i| {
            let f = layout.flags(i);
            (pref & !f).as_raw().count_ones() + (not & f).as_raw().count_ones()
        })
}

/// VMA's choice: `DEVICE_COHERENT_AMD` types only with the feature (its global type bits).
fn vma(c: &Config, bits: u32, usage: MemoryUsage, resource: ResourceUsage) -> Option<u32> {
    let integrated = c.integrated_type;
    let flags = vma_preferences(usage, resource.device_access(), integrated);
    vma_pick(&c.layout, bits, flags, |f| {
        c.device_coherent || !f.contains(DC)
    })
}

/// VMA's choice with the differences the crate documents, each named.
fn ours(c: &Config, bits: u32, usage: MemoryUsage, resource: ResourceUsage) -> Option<u32> {
    // Documented (`intent`): a device whose every heap is device-local (mobile GPUs, software
    // drivers) is unified like VMA's integrated GPUs.
    let integrated = c.integrated_type || c.layout.heaps.iter().all(|h| h.1);
    let gpu = resource.device_access();
    let (req, mut pref, mut not) = vma_preferences(usage, gpu, integrated);
    match usage {
        // Documented (`MemoryUsage::DeviceOnly`): avoid HOST_VISIBLE, leaving the BAR window.
        MemoryUsage::DeviceOnly => not |= HV,
        // Documented (`MemoryUsage::Upload`): avoid HOST_CACHED (write-combined is faster).
        MemoryUsage::Upload => not |= CACHED,
        _ => {}
    }
    let mut lazy_first = false;
    if let Some((prefer, host)) = auto_parts(usage) {
        let transfer = host.allows_transfer_instead();
        let stage = !integrated && gpu && transfer && prefer != Prefer::Host;
        match host {
            // Documented (the rule's table): device-only memory avoids HOST_VISIBLE; transient
            // attachments try lazily allocated types first.
            HostAccess::NoAccess if prefer != Prefer::Host => {
                not |= HV;
                lazy_first = resource.transient();
            }
            // Documented (the rule's table): random access leans with the preference.
            HostAccess::Random | HostAccess::RandomOrTransfer if !stage => match prefer {
                Prefer::Device => pref |= DL,
                Prefer::Host => not |= DL,
                Prefer::Neither => {}
            },
            _ => {}
        }
    }
    // Documented (`memory_type`): PROTECTED, LAZILY_ALLOCATED and RDMA_CAPABLE types only
    // when required (PROTECTED also needs the feature); AMD's device-coherent and uncached
    // types only with their feature.
    let usable = |req: F| {
        move |f: F| {
            let opt_in = f & (PROT | LAZY | F::RDMA_CAPABLE_NV);
            req.contains(opt_in)
                && (c.protected || !f.contains(PROT))
                && (c.device_coherent || !f.intersects(DC | DU))
        }
    };
    if lazy_first {
        let lazy = (req | LAZY, pref, not);
        if let Some(i) = vma_pick(&c.layout, bits, lazy, usable(req | LAZY)) {
            return Some(i);
        }
    }
    vma_pick(&c.layout, bits, (req, pref, not), usable(req))
}

fn requirements(size: u64, bits: u32) -> AllocationRequirements {
    AllocationRequirements {
        layout: DeviceLayout::from_size_alignment(size, 256).unwrap(),
        memory_type_bits: bits,
        prefers_dedicated_allocation: false,
        requires_dedicated_allocation: false,
    }
}

fn allocator_for(sim: &Sim, c: &Config) -> StandardMemoryAllocator {
    let features = EnabledMemoryFeatures {
        protected_memory: c.protected,
        device_coherent_memory: c.device_coherent,
        ..Default::default()
    };
    StandardMemoryAllocator::new_default(sim.memory_device_with(common::API_VERSION, features))
}

fn sim_for(c: &Config) -> Sim {
    Sim::with_features(
        c.layout.clone(),
        support::SimFeatures {
            protected_memory: c.protected,
            ..Default::default()
        },
    )
}

/// Every layout, usage, resource and subset of the memory types: the allocator picks what
/// VMA's rule with the crate's documented differences picks, and never a type outside the
/// bits or a special type it was not asked for.
#[test]
fn every_choice_on_every_layout_and_memory_type_bits_follows_vmas_rule() {
    let mut failures = Vec::new();
    let mut checked = 0u64;
    for c in configs() {
        let sim = sim_for(&c);
        let allocator = allocator_for(&sim, &c);
        let c = Config {
            integrated_type: allocator.device().physical_device_properties().device_type
                == vk::PhysicalDeviceType::INTEGRATED_GPU,
            ..c
        };
        let count = c.layout.type_count();
        for usage in usages() {
            for resource in resources() {
                let info = AllocationCreateInfo {
                    usage,
                    resource_usage: resource,
                    ..Default::default()
                };
                for bits in 1..(1u32 << count) {
                    let got = allocator.memory_type_for(&requirements(4 * KIB, bits), &info);
                    let want = ours(&c, bits, usage, resource);
                    checked += 1;
                    if let Some(t) = got {
                        assert!(bits & (1 << t) != 0, "type {t} outside {bits:#b}");
                    }
                    if got != want {
                        let key = format!("{} {} {usage:?}", c.layout.name, c.device_coherent);
                        failures.push((
                            key,
                            format!(
                                "{} (protected {}, device coherent {}) {usage:?} {resource:?} \
                             bits {bits:#b}: got {got:?}, VMA's rule {want:?} (plain VMA {:?})",
                                c.layout.name,
                                c.protected,
                                c.device_coherent,
                                vma(&c, bits, usage, resource),
                            ),
                        ));
                    }
                }
            }
        }
    }
    assert!(checked > 100_000, "only {checked} choices checked");
    // One line per layout and usage: the first difference and how many there are.
    let mut first: Vec<(String, String, usize)> = Vec::new();
    for (key, line) in &failures {
        match first.iter_mut().find(|(k, ..)| k == key) {
            Some(entry) => entry.2 += 1,
            None => first.push((key.clone(), line.clone(), 1)),
        }
    }
    let report: Vec<String> = first
        .iter()
        .map(|(_, line, n)| format!("{line} (and {} more)", n - 1))
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {checked} choices differ:\n{}",
        failures.len(),
        report.join("\n")
    );
}

/// The memory types of `layout` on heap `heap`, as a mask.
fn types_on_heap(layout: &GpuLayout, heap: u32) -> u32 {
    (0..layout.type_count())
        .filter(|&i| layout.heap_of(i) == heap)
        .fold(0, |m, i| m | 1 << i)
}

/// An AMD-like discrete GPU with small heaps, for tests that fill them for real: 64 MiB of
/// VRAM, 512 MiB of host memory, a 12 MiB BAR window.
fn amd_small_heaps() -> GpuLayout {
    GpuLayout {
        name: "amd-small-heaps",
        heaps: vec![(64 * MIB, true), (512 * MIB, false), (12 * MIB, true)],
        ..GpuLayout::amd_discrete_bar()
    }
}

/// Allocates `size`-byte buffers of `usage` until one lands outside the heap of the first, and
/// returns the live buffers (buffer, allocation, seed) and the type of that one.
fn fill_until_spill(
    sim: &Sim,
    allocator: &StandardMemoryAllocator,
    info: &AllocationCreateInfo,
    usage_flags: vk::BufferUsageFlags,
    size: u64,
    what: &str,
) -> (Vec<(vk::Buffer, MemoryAlloc)>, u32, u32) {
    let mut live = Vec::new();
    let mut first_heap = None;
    for seed in 0..1000u64 {
        // SAFETY: a valid create info; the caller destroys the buffer before its memory.
        let (buffer, mut alloc) =
            unsafe { allocator.create_buffer(&buffer_info(size, usage_flags), info) }
                .unwrap_or_else(|e| panic!("{what}: buffer {seed}: {e}"));
        let t = alloc.memory_type_index();
        assert_eq!(sim.state.memory_type_of(alloc.memory()), Some(t), "{what}");
        if alloc
            .memory_property_flags()
            .contains(vk::MemoryPropertyFlags::HOST_VISIBLE)
        {
            fill(&mut alloc, seed, 4 * KIB);
            verify(&alloc, seed, 4 * KIB, what);
        }
        let heap = sim.state.layout.heap_of(t);
        live.push((buffer, alloc));
        match first_heap {
            None => first_heap = Some((t, heap)),
            Some((_, h)) if h != heap => return (live, first_heap.unwrap().0, t),
            Some(_) => {}
        }
    }
    panic!("{what}: 1000 buffers and the first heap never filled");
}

fn destroy_all(sim: &Sim, live: Vec<(vk::Buffer, MemoryAlloc)>) {
    for (buffer, alloc) in live {
        // SAFETY: the buffer is unused; destroyed before its memory.
        unsafe { sim.device.destroy_buffer(buffer, None) };
        drop(alloc);
    }
}

/// When the heap of the best type is full, the allocation goes on in the next type of VMA's
/// order (its `AllocateMemory` loop: leave the failed type out of the bits, choose again),
/// never failing while another allowed type has room.
#[test]
fn a_full_heap_falls_back_to_the_next_type_in_vmas_order() {
    let layout = amd_small_heaps();
    let c = Config {
        layout: layout.clone(),
        protected: false,
        device_coherent: false,
        integrated_type: false,
    };
    use HostAccess::*;
    for (usage, flags, why) in [
        (MemoryUsage::DeviceOnly, B::STORAGE_BUFFER, "GPU_ONLY"),
        (
            MemoryUsage::Auto(NoAccess),
            B::VERTEX_BUFFER,
            "AUTO, device",
        ),
        (MemoryUsage::Upload, B::UNIFORM_BUFFER, "CPU_TO_GPU, BAR"),
        (
            MemoryUsage::Auto(SequentialWriteOrTransfer),
            B::VERTEX_BUFFER,
            "AUTO, write or transfer: VRAM",
        ),
    ] {
        let what = format!("{} {usage:?} ({why})", layout.name);
        let sim = Sim::new(layout.clone());
        let allocator = StandardMemoryAllocator::new_default(sim.memory_device());
        let info = AllocationCreateInfo {
            usage,
            ..Default::default()
        };
        let resource = ResourceUsage::Buffer(flags);
        let bits = layout.buffer_bits();
        let size = 2 * MIB;
        let (live, first, spilled) = fill_until_spill(&sim, &allocator, &info, flags, size, &what);
        let full_heap = layout.heap_of(first);
        // Documented (`intent`, rationing a small BAR heap): an automatic usage may not take
        // the 12 MiB BAR window for a 2 MiB request (over 1/32 of it): its types fall behind
        // every other type. VMA has no such rule and would take it.
        let rationed_out = match usage {
            MemoryUsage::Auto(_) => types_on_heap(&layout, 2),
            _ => 0,
        };
        let expected = |bits| {
            ours(&c, bits & !rationed_out, usage, resource).or(ours(&c, bits, usage, resource))
        };
        assert_eq!(Some(first), expected(bits), "{what}: first");
        // Full: the last buffer could not fit it.
        let heap_size = layout.heaps[full_heap as usize].0;
        assert!(
            sim.state.heap_used(full_heap) + size > heap_size,
            "{what}: spilled with {} of {heap_size} bytes used",
            sim.state.heap_used(full_heap)
        );
        let rest = bits & !types_on_heap(&layout, full_heap);
        assert_eq!(Some(spilled), expected(rest), "{what}: next");
        if rationed_out == 0 {
            assert_eq!(
                Some(first),
                vma(&c, bits, usage, resource),
                "{what}: VMA's first"
            );
            assert_eq!(
                Some(spilled),
                vma(&c, rest, usage, resource),
                "{what}: VMA's next"
            );
        }
        for (_, alloc) in &live {
            assert!(alloc.memory_type_index() == first || alloc.memory_type_index() == spilled);
        }
        destroy_all(&sim, live);
        drop(allocator);
        sim.assert_nothing_allocated();
    }
}

/// With `within_budget` (VMA's `WITHIN_BUDGET`), a heap over its reported budget sends the
/// allocation to the next type instead of failing; without it the budget is advisory and the
/// best type is kept, as in VMA.
#[test]
fn a_heap_over_budget_falls_back_to_the_next_type_within_budget() {
    let layout = GpuLayout::nvidia_discrete();
    let sim = Sim::with_features(
        layout.clone(),
        support::SimFeatures {
            memory_budget: true,
            ..Default::default()
        },
    );
    sim.state.set_heap_budget(0, 48 * MIB);
    sim.state.set_other_usage(0, 16 * MIB);
    let allocator = StandardMemoryAllocator::new_default(sim.memory_device_claimed());
    let within = AllocationCreateInfo {
        usage: MemoryUsage::Auto(HostAccess::NoAccess),
        within_budget: true,
        ..Default::default()
    };
    let what = "nvidia-discrete, VRAM budget 48 MiB, 16 MiB used elsewhere";
    let (live, first, spilled) =
        fill_until_spill(&sim, &allocator, &within, B::STORAGE_BUFFER, 2 * MIB, what);
    assert_eq!((first, spilled), (0, 1), "{what}: VRAM, then host memory");
    let own = sim.state.heap_used(0);
    assert!(
        own <= 32 * MIB,
        "{what}: {own} bytes of VRAM taken, past the 32 MiB left in the budget"
    );
    // Without `within_budget` the best type is kept past the budget (the heap has room).
    let advisory = AllocationCreateInfo {
        within_budget: false,
        ..within.clone()
    };
    let requirements = requirements(2 * MIB, layout.buffer_bits());
    let alloc = allocator
        .allocate(requirements, AllocationType::Linear, &advisory, None)
        .unwrap();
    assert_eq!(
        alloc.memory_type_index(),
        0,
        "{what}: over budget, not within_budget"
    );
    drop(alloc);
    destroy_all(&sim, live);
    drop(allocator);
    sim.assert_nothing_allocated();
}

/// A request no allowed type can serve fails with `NoSuitableMemoryType`, naming the bits and
/// the required flags, allocates nothing, and leaves the resource to the caller.
#[test]
fn required_flags_no_allowed_type_has_are_a_clear_error() {
    for (layout, protected, filter_required, bits, why) in [
        (
            GpuLayout::nvidia_discrete(),
            false,
            DL | HV,
            None,
            "no BAR type",
        ),
        (
            GpuLayout::amd_discrete_bar(),
            false,
            DL | HV,
            Some(0b1011),
            "the BAR type is not in memoryTypeBits",
        ),
        (
            GpuLayout::intel_integrated(),
            false,
            LAZY,
            None,
            "no lazily allocated type",
        ),
        (
            GpuLayout::with_protected(),
            false,
            PROT,
            None,
            "protected without protectedMemory",
        ),
        (
            GpuLayout::mobile(),
            false,
            CACHED | HC,
            None,
            "the cached type is not coherent",
        ),
    ] {
        let what = format!("{}: {why}", layout.name);
        let sim = Sim::with_features(
            layout.clone(),
            support::SimFeatures {
                protected_memory: protected,
                ..Default::default()
            },
        );
        let allocator = StandardMemoryAllocator::new_default(sim.memory_device_claimed());
        let bits = bits.unwrap_or_else(|| layout.buffer_bits());
        let info = AllocationCreateInfo {
            usage: custom(filter_required, F::empty(), F::empty()),
            ..Default::default()
        };
        let requirements = requirements(4 * KIB, bits);
        assert_eq!(
            allocator.memory_type_for(&requirements, &info),
            None,
            "{what}"
        );
        let err = allocator
            .allocate(requirements, AllocationType::Linear, &info, None)
            .expect_err(&what);
        match &err {
            AllocationError::NoSuitableMemoryType { bits: b, required } => {
                assert_eq!((*b, *required), (bits, filter_required), "{what}");
            }
            other => panic!("{what}: {other:?}"),
        }
        let text = err.to_string();
        assert!(text.contains(&format!("{bits:#x}")), "{what}: {text}");
        // Through `create_buffer` too (where the buffer's own bits are the ones tested): an
        // error, no buffer left behind, nothing allocated.
        if bits == layout.buffer_bits() {
            let buffer = buffer_info(4 * KIB, B::STORAGE_BUFFER);
            // SAFETY: a valid create info.
            let result = unsafe { allocator.create_buffer(&buffer, &info) };
            assert!(
                matches!(result, Err(AllocationError::NoSuitableMemoryType { .. })),
                "{what}: {result:?}"
            );
        }
        assert_eq!(
            sim.state.allocate_calls(),
            0,
            "{what}: memory was allocated"
        );
        drop(allocator);
        sim.assert_nothing_allocated();
    }
}

/// A pool that finds its type for a usage takes the type of the rule for a resource of
/// unknown usage (documented: no rationing, the pool's blocks are the application's own
/// budget), for every usage and with each type left out of the bits in turn.
#[test]
fn a_pool_finds_the_type_of_the_rule_for_every_usage() {
    for c in configs() {
        let sim = sim_for(&c);
        let allocator = allocator_for(&sim, &c);
        let all = (1u32 << c.layout.type_count()) - 1;
        for usage in usages() {
            for bits in
                std::iter::once(all).chain((0..c.layout.type_count()).map(|i| all & !(1 << i)))
            {
                let what = format!("{} {usage:?} bits {bits:#b}", c.layout.name);
                let want = ours(&c, bits, usage, ResourceUsage::Unknown);
                let created = allocator.create_pool::<FreeListAllocator>(&PoolCreateInfo {
                    memory_type: PoolMemoryType::Find {
                        memory_type_bits: bits,
                        usage,
                    },
                    block_size: MIB,
                    ..Default::default()
                });
                match (created, want) {
                    (Ok(pool), Some(t)) => assert_eq!(pool.memory_type_index(), t, "{what}"),
                    // Lazily allocated memory is never carved into blocks.
                    (Err(_), Some(t)) if c.layout.flags(t).contains(LAZY) => {}
                    (Err(e), None) => assert!(
                        matches!(e, AllocationError::NoSuitableMemoryType { .. }),
                        "{what}: {e:?}"
                    ),
                    (got, want) => panic!("{what}: {got:?}, VMA's rule {want:?}"),
                }
            }
        }
        drop(allocator);
        sim.assert_nothing_allocated();
    }
}

/// A transient attachment whose lazily allocated memory cannot be had (the driver is out of
/// it) falls back to the next type of the rule, committed device memory, and is usable.
#[test]
fn a_transient_attachment_falls_back_from_lazily_allocated_memory() {
    for layout in [GpuLayout::mobile(), mobile_lazy_first()] {
        let c = Config {
            layout: layout.clone(),
            protected: false,
            device_coherent: false,
            integrated_type: false,
        };
        let sim = Sim::new(layout.clone());
        let allocator = StandardMemoryAllocator::new_default(sim.memory_device());
        let usage = I::COLOR_ATTACHMENT | I::TRANSIENT_ATTACHMENT;
        let resource = ResourceUsage::Image(usage);
        let info = AllocationCreateInfo {
            usage: MemoryUsage::Auto(HostAccess::NoAccess),
            ..Default::default()
        };
        let bits = layout.image_bits(vk::ImageTiling::OPTIMAL, usage);
        let lazy = (0..layout.type_count())
            .filter(|&i| layout.flags(i).contains(LAZY))
            .fold(0, |m, i| m | 1 << i);
        let first = ours(&c, bits, info.usage, resource).unwrap();
        assert!(layout.flags(first).contains(LAZY), "{}", layout.name);
        let next = ours(&c, bits & !lazy, info.usage, resource).unwrap();
        assert!(!layout.flags(next).contains(LAZY), "{}", layout.name);
        sim.state.set_faults(support::Faults {
            allocate_at: Some((1, vk::Result::ERROR_OUT_OF_DEVICE_MEMORY)),
            ..Default::default()
        });
        let image_info =
            support::image_info(256, vk::Format::R8G8B8A8_UNORM, vk::ImageTiling::OPTIMAL)
                .usage(usage);
        // SAFETY: a valid create info; the image is destroyed before its memory.
        let (image, alloc) = unsafe { allocator.create_image(&image_info, &info) }
            .unwrap_or_else(|e| panic!("{}: {e}", layout.name));
        assert_eq!(alloc.memory_type_index(), next, "{}", layout.name);
        assert_eq!(sim.state.memory_type_of(alloc.memory()), Some(next));
        let calls = sim.state.calls();
        assert_eq!(calls.len(), 2, "{}: lazy, then committed", layout.name);
        assert_eq!(calls[0].memory_type, first);
        // SAFETY: the image is unused; destroyed before its memory.
        unsafe { sim.device.destroy_image(image, None) };
        drop(alloc);
        drop(allocator);
        sim.assert_nothing_allocated();
    }
}

/// The flags a random memory type is made of.
const RANDOM_FLAGS: [F; 8] = [DL, HV, HC, CACHED, LAZY, PROT, DC, DU];

fn flags_of(mask: u8) -> F {
    RANDOM_FLAGS
        .iter()
        .enumerate()
        .filter(|(i, _)| mask & (1 << i) != 0)
        .fold(F::empty(), |f, (_, &flag)| f | flag)
}

/// Random flags, each of [`RANDOM_FLAGS`] present with probability 2^-`sparseness`: dense
/// flags would leave most requests without any type.
fn sparse_flags(sparseness: u32) -> impl Strategy<Value = u8> {
    proptest::collection::vec(any::<u8>(), sparseness as usize)
        .prop_map(|masks| masks.into_iter().fold(u8::MAX, |m, x| m & x))
}

proptest! {
    /// The choice for an explicit filter is a pure function of the types, the bits, the
    /// filter and the features: on random layouts it is VMA's (lowest cost, ties to the lowest
    /// index, `DEVICE_UNCACHED` avoided unless asked for) among the types the opt-in rules
    /// allow, and never a type outside the bits or without a required flag.
    #[test]
    fn an_explicit_filter_chooses_as_vma_on_random_layouts(
        types in proptest::collection::vec((sparse_flags(2), 0u32..2), 1..12),
        bits in any::<u32>(),
        (req, pref, not) in (sparse_flags(3), sparse_flags(2), sparse_flags(2)),
        (protected, device_coherent) in (any::<bool>(), any::<bool>()),
    ) {
        let layout = GpuLayout {
            name: "random",
            types: types.iter().map(|&(f, h)| (flags_of(f), h)).collect(),
            heaps: vec![(1 << 30, true), (1 << 30, false)],
            ..GpuLayout::nvidia_discrete()
        };
        let props = MemoryProperties::from_vk(&layout.to_vk()).unwrap();
        let features = EnabledMemoryFeatures {
            protected_memory: protected,
            device_coherent_memory: device_coherent,
            ..Default::default()
        };
        let usage = custom(flags_of(req), flags_of(pref), flags_of(not));
        let MemoryUsage::Custom(filter) = usage else { unreachable!() };
        let c = Config { layout: layout.clone(), protected, device_coherent, integrated_type: false };
        let got = find_memory_type_index(&props, &features, bits, &filter);
        let want = ours(&c, bits, usage, ResourceUsage::Unknown);
        prop_assert_eq!(got, want);
        if let Some(t) = got {
            prop_assert!(bits & (1 << t) != 0);
            prop_assert!(layout.flags(t).contains(filter.required_flags));
        }
    }
}

/// gpu-allocator's choice for a `MemoryLocation`: the first type in the bits with all the
/// preferred flags, else the first with all the required ones.
fn gpu_allocator_pick(layout: &GpuLayout, bits: u32, preferred: F, required: F) -> Option<u32> {
    let first = |flags: F| {
        (0..layout.type_count()).find(|&i| bits & (1 << i) != 0 && layout.flags(i).contains(flags))
    };
    first(preferred).or_else(|| first(required))
}

/// gpu-allocator's `MemoryLocation`s against the usages its migration guide maps them to
/// (`docs/from-gpu-allocator.md`: `Auto(NoAccess)` or `DeviceOnly`, `Auto(SequentialWrite)` or
/// `Upload`, `Auto(Random)` or `Download`), for a buffer of unknown use, on every layout. They
/// agree except where VMA's rule and gpu-allocator's disagree and the crate documents that it
/// follows VMA's, listed here with the reason.
#[test]
fn gpu_allocator_locations_land_where_gpu_allocator_puts_them_or_differ_as_documented() {
    use HostAccess::*;
    // (layout, location, why the crate follows VMA there).
    let differs = |layout: &str, location: &str| match (layout, location) {
        // `MemoryUsage::Upload` and the rule's sequential-write row avoid HOST_CACHED:
        // gpu-allocator takes the first host-visible device-local type, the cached one.
        ("intel-integrated", "CpuToGpu") => Some("uploads avoid HOST_CACHED"),
        // gpu-allocator requires HOST_COHERENT and so reads back from uncached memory; the
        // crate takes the cached non-coherent type and pads to whole atoms (`intent`).
        ("mobile-noncoherent" | "mobile-lazy-first", "GpuToCpu") => {
            Some("readback wants HOST_CACHED, coherent or not")
        }
        _ => None,
    };
    let mut checked = 0;
    for c in configs() {
        let sim = sim_for(&c);
        let allocator = allocator_for(&sim, &c);
        let bits = c.layout.buffer_bits();
        for (location, usages, preferred, required) in [
            (
                "GpuOnly",
                [MemoryUsage::Auto(NoAccess), MemoryUsage::DeviceOnly],
                DL,
                DL,
            ),
            (
                "CpuToGpu",
                [MemoryUsage::Auto(SequentialWrite), MemoryUsage::Upload],
                HV | HC | DL,
                HV | HC,
            ),
            (
                "GpuToCpu",
                [MemoryUsage::Auto(Random), MemoryUsage::Download],
                HV | HC | CACHED,
                HV | HC,
            ),
        ] {
            let theirs = gpu_allocator_pick(&c.layout, bits, preferred, required);
            for usage in usages {
                let what = format!("{} {location} as {usage:?}", c.layout.name);
                let info = AllocationCreateInfo {
                    usage,
                    ..Default::default()
                };
                let got = allocator.memory_type_for(&requirements(4 * KIB, bits), &info);
                checked += 1;
                match differs(c.layout.name, location) {
                    None => assert_eq!(got, theirs, "{what}"),
                    Some(why) => {
                        assert_ne!(got, theirs, "{what}: listed as different ({why})");
                        // VMA 3's automatic usages agree with the crate (its legacy
                        // CPU_TO_GPU does not avoid HOST_CACHED: `tests/simulated_gpus.rs`).
                        if auto_parts(usage).is_some() {
                            let vma = vma(&c, bits, usage, ResourceUsage::Unknown);
                            assert_eq!(got, vma, "{what}: {why}, as VMA");
                        }
                    }
                }
            }
        }
    }
    assert_eq!(checked, configs().len() * 6);
}
