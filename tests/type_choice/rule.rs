//! VMA 3's rule for choosing a memory type, written out from `vk_mem_alloc.h`
//! (`FindMemoryPreferences`, `FindMemoryTypeIndex`, `CalculateGlobalMemoryTypeBits`), the
//! crate's documented differences from it, gpu-allocator's rule, and the layouts and usages
//! the tests go through.

use crate::support::GpuLayout;
use ash::vk;
use ash::vk::MemoryPropertyFlags as F;
use ash_memory::*;
use vk::BufferUsageFlags as B;
use vk::ImageUsageFlags as I;

pub const DL: F = F::DEVICE_LOCAL;
pub const HV: F = F::HOST_VISIBLE;
pub const HC: F = F::HOST_COHERENT;
pub const CACHED: F = F::HOST_CACHED;
pub const LAZY: F = F::LAZILY_ALLOCATED;
pub const PROT: F = F::PROTECTED;
pub const DC: F = F::DEVICE_COHERENT_AMD;
pub const DU: F = F::DEVICE_UNCACHED_AMD;

/// An AMD discrete GPU with `VK_AMD_device_coherent_memory` (RADV and the Windows driver on
/// RDNA): the four ordinary types of a 256 MiB BAR device, then the same four again with
/// `DEVICE_COHERENT | DEVICE_UNCACHED`.
pub fn amd_device_coherent() -> GpuLayout {
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
pub fn apu_carve_out() -> GpuLayout {
    GpuLayout {
        name: "apu-carve-out",
        heaps: vec![(1 << 30, true), (8 << 30, false)],
        ..GpuLayout::amd_discrete_rebar()
    }
}

/// A mobile layout whose lazily allocated type comes first, so that only the opt-in rule keeps
/// it from ordinary device-local requests.
pub fn mobile_lazy_first() -> GpuLayout {
    GpuLayout {
        name: "mobile-lazy-first",
        types: vec![(DL | LAZY, 0), (DL | HV | HC, 0), (DL | HV | CACHED, 0)],
        ..GpuLayout::mobile()
    }
}

/// A layout and the optional features its allocator has enabled.
pub struct Config {
    pub layout: GpuLayout,
    pub protected: bool,
    pub device_coherent: bool,
    /// The device type the driver reports is `INTEGRATED_GPU` (VMA's `isIntegratedGPU`);
    /// the simulated driver reports lavapipe's own type.
    pub integrated_type: bool,
}

pub fn configs() -> Vec<Config> {
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
pub fn resources() -> Vec<ResourceUsage> {
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

pub fn custom(required: F, preferred: F, not_preferred: F) -> MemoryUsage {
    MemoryUsage::Custom(MemoryTypeFilter {
        required_flags: required,
        preferred_flags: preferred,
        not_preferred_flags: not_preferred,
    })
}

/// Every usage: the legacy ones, each automatic usage with each host access, and explicit
/// filters (VMA's `requiredFlags` / `preferredFlags` with `VMA_MEMORY_USAGE_UNKNOWN`).
pub fn usages() -> Vec<MemoryUsage> {
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
pub type Flags = (F, F, F);

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Prefer {
    Neither,
    Device,
    Host,
}

pub fn auto_parts(usage: MemoryUsage) -> Option<(Prefer, HostAccess)> {
    match usage {
        MemoryUsage::Auto(h) => Some((Prefer::Neither, h)),
        MemoryUsage::AutoPreferDevice(h) => Some((Prefer::Device, h)),
        MemoryUsage::AutoPreferHost(h) => Some((Prefer::Host, h)),
        _ => None,
    }
}

/// VMA 3's `FindMemoryPreferences`, for a resource whose usage flags say `device_access`
/// (anything but transfers) on a GPU that is `integrated`.
pub fn vma_preferences(usage: MemoryUsage, device_access: bool, integrated: bool) -> Flags {
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
pub fn vma_pick(
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
pub fn vma(c: &Config, bits: u32, usage: MemoryUsage, resource: ResourceUsage) -> Option<u32> {
    let integrated = c.integrated_type;
    let flags = vma_preferences(usage, resource.device_access(), integrated);
    vma_pick(&c.layout, bits, flags, |f| {
        c.device_coherent || !f.contains(DC)
    })
}

/// VMA's choice with the differences the crate documents, each named.
pub fn ours(c: &Config, bits: u32, usage: MemoryUsage, resource: ResourceUsage) -> Option<u32> {
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

/// gpu-allocator's choice for a `MemoryLocation`: the first type in the bits with all the
/// preferred flags, else the first with all the required ones.
pub fn gpu_allocator_pick(layout: &GpuLayout, bits: u32, preferred: F, required: F) -> Option<u32> {
    let first = |flags: F| {
        (0..layout.type_count()).find(|&i| bits & (1 << i) != 0 && layout.flags(i).contains(flags))
    };
    first(preferred).or_else(|| first(required))
}
