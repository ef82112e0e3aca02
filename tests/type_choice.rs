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
    vma_pick(&c.layout, bits, flags, |f| c.device_coherent || !f.contains(DC))
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
                        failures.push((key, format!(
                            "{} (protected {}, device coherent {}) {usage:?} {resource:?} \
                             bits {bits:#b}: got {got:?}, VMA's rule {want:?} (plain VMA {:?})",
                            c.layout.name,
                            c.protected,
                            c.device_coherent,
                            vma(&c, bits, usage, resource),
                        )));
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
