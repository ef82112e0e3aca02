//! Automatic memory usage: the memory type chosen from what the resource is, how the host
//! touches it, the shape of the device's heaps, the size of the request and the state of the
//! heap's budget.
//!
//! # Why not just flags
//!
//! The simple usages ([`DeviceOnly`](MemoryUsage::DeviceOnly),
//! [`Upload`](MemoryUsage::Upload), [`Download`](MemoryUsage::Download), VMA 2's
//! `GPU_ONLY` / `CPU_TO_GPU` / `GPU_TO_CPU`) name fixed flags, and choose badly on real
//! hardware. `Upload` prefers `DEVICE_LOCAL`, so on a discrete GPU without resizable BAR
//! every staging buffer lands in the 256 MiB `DEVICE_LOCAL | HOST_VISIBLE` window (the *BAR
//! heap*) and fills it, leaving nothing for the small buffers the CPU rewrites every frame,
//! which are the ones that profit from it. The automatic usages
//! ([`Auto`](MemoryUsage::Auto), [`AutoPreferDevice`](MemoryUsage::AutoPreferDevice),
//! [`AutoPreferHost`](MemoryUsage::AutoPreferHost), VMA 3's `AUTO*`) say what the memory is
//! for instead, and the allocator works out the flags:
//!
//! - the **resource** ([`ResourceUsage`]): `create_buffer` and `create_image` pass their
//!   usage flags; a plain `allocate` takes
//!   [`AllocationCreateInfo::resource_usage`](crate::AllocationCreateInfo::resource_usage)
//!   as a hint (without it, the GPU is assumed to use the memory directly). A resource whose
//!   only usages are transfers is *staging*: the GPU never reads it in place. An image with
//!   `TRANSIENT_ATTACHMENT` usage is *transient*: tiled GPUs can back it with lazily
//!   allocated memory that is never committed.
//! - the **host access** ([`HostAccess`]): none; sequential writes (write-combined,
//!   uncached memory is fine and usually fastest); random access (reads want
//!   `HOST_CACHED`); and either of the two "or transfer" forms, which let the allocator pick
//!   memory the host cannot map when that is faster for the GPU. The allocation then says so
//!   ([`MemoryAlloc::mapped_ptr`](crate::MemoryAlloc::mapped_ptr) is `None`, its
//!   [`memory_property_flags`](crate::MemoryAlloc::memory_property_flags) lack
//!   `HOST_VISIBLE`) and the application stages through a copy.
//! - the **heaps**: a *unified* device (an integrated GPU by its device type, as VMA decides,
//!   or any device whose every heap is `DEVICE_LOCAL`: mobile GPUs, software drivers) gains
//!   nothing from staging, so the "or transfer" forms behave like plain host access there.
//!   An integrated GPU may report a device-local carve-out heap beside system memory that is
//!   not device-local (AMD APUs, the Steam Deck): it is unified all the same, and has no BAR
//!   window to ration. A *small* device-local heap with a host-visible type (the
//!   BAR window: less than a quarter of the largest device-local heap, on a device that also
//!   has host memory) is rationed, see below.
//!
//! # The rule
//!
//! Each intent becomes a [`MemoryTypeFilter`] (required, preferred and not-preferred flags),
//! chosen among the allowed types exactly as for an explicit filter (fewest missing preferred
//! plus present not-preferred flags, ties to the lowest index). "GPU reads it" means the
//! resource has a usage other than transfers (or is unknown); "discrete" means not unified.
//!
//! | host access | resource | required | preferred | not preferred |
//! |---|---|---|---|---|
//! | none | transient image | `LAZILY_ALLOCATED` first, then the row below | `DEVICE_LOCAL` | |
//! | none | any | | `DEVICE_LOCAL` | `HOST_VISIBLE` |
//! | none, prefer host | any | | | `DEVICE_LOCAL` |
//! | sequential write | GPU reads it | `HOST_VISIBLE` | `DEVICE_LOCAL` | `HOST_CACHED` |
//! | sequential write, prefer host | GPU reads it | `HOST_VISIBLE` | | `DEVICE_LOCAL`, `HOST_CACHED` |
//! | sequential write | staging | `HOST_VISIBLE` | | `DEVICE_LOCAL`, `HOST_CACHED` |
//! | sequential write, prefer device | staging | `HOST_VISIBLE` | `DEVICE_LOCAL` | `HOST_CACHED` |
//! | sequential write or transfer, not prefer host | GPU reads it, discrete | | `DEVICE_LOCAL`, `HOST_VISIBLE` | `HOST_CACHED` |
//! | random | any | `HOST_VISIBLE` | `HOST_CACHED` (prefer device: and `DEVICE_LOCAL`) | (prefer host: `DEVICE_LOCAL`) |
//! | random or transfer, not prefer host | GPU reads it, discrete | | `HOST_CACHED`, `DEVICE_LOCAL` | |
//!
//! The other "or transfer" cases are their plain row with `HOST_VISIBLE` preferred instead of
//! required. Why each row: device-only memory stays out of host-visible types so that the BAR
//! window is left for the host; a buffer the CPU rewrites and the GPU reads directly (a
//! dynamic uniform or vertex buffer) is fastest in device-local host-visible memory; a staging
//! buffer is only ever read by a copy, so it belongs in host memory and never takes BAR
//! space; read-back memory must be cached for the CPU to read it at speed (on mobile, the
//! cached type is the non-coherent one, and the allocator pads such allocations to whole
//! atoms); when the application can stage, VRAM beats any host-visible memory for what the
//! GPU uses.
//!
//! # Rationing a small BAR heap
//!
//! An automatic-usage request may take a type on a small BAR heap only while the request is
//! small, at most 1/[`SMALL_HEAP_MAX_REQUEST_DIVISOR`] of the heap, and the heap stays within
//! 1/[`SMALL_HEAP_FILL_DIVISOR`] of its budget after it ([`small_heap_admits`]; the budget
//! and usage are those of [`budget`](crate::budget), with `VK_EXT_memory_budget` when it is
//! enabled). A request the rule turns away is not refused: the type only drops behind every
//! other allowed type, so the next-best one (host memory for a dynamic buffer, VRAM for an
//! "or transfer" one) is tried first and the BAR heap stays the last resort. Large staging
//! buffers never reach it at all (their row does not prefer `DEVICE_LOCAL`). On resizable-BAR
//! and unified devices the host-visible device-local type lives in the large heap and nothing
//! is rationed.
//!
//! # Caching the choice
//!
//! The allocator caches, per intent class and `memoryTypeBits`, the type the rule picks
//! *before* rationing: rationing only ever moves a type back, so when the cached type is not
//! on a small BAR heap it is the answer whatever the size and the budget, and when it is, the
//! allocator checks the ration for this request and searches again if it fails.

#![deny(unsafe_code)]

use super::memory_type::{find_memory_type_index_demoting, MemoryTypeFilter, MemoryUsage};
use crate::device::{EnabledMemoryFeatures, MemoryProperties};
use crate::layout::DeviceSize;
use ash::vk;
use vk::MemoryPropertyFlags as F;

#[cfg(test)]
mod tests;

pub use super::memory_type::HostAccess;

/// What the memory is for, as far as the choice of its type cares: the usage flags of the
/// buffer or image. [`MemoryAllocator::create_buffer`](super::MemoryAllocator::create_buffer)
/// and [`create_image`](super::MemoryAllocator::create_image) fill it in; set it in
/// [`AllocationCreateInfo`](crate::AllocationCreateInfo) when allocating for a resource
/// yourself.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ResourceUsage {
    /// Not known: the GPU is assumed to use the memory directly.
    #[default]
    Unknown,
    /// A buffer with these usage flags.
    Buffer(vk::BufferUsageFlags),
    /// An image with these usage flags.
    Image(vk::ImageUsageFlags),
}

impl ResourceUsage {
    /// Whether the GPU uses the memory other than as the source or destination of a copy.
    pub fn device_access(self) -> bool {
        match self {
            Self::Unknown => true,
            Self::Buffer(u) => !(u & !(vk::BufferUsageFlags::TRANSFER_SRC
                | vk::BufferUsageFlags::TRANSFER_DST))
                .is_empty(),
            Self::Image(u) => !(u & !(vk::ImageUsageFlags::TRANSFER_SRC
                | vk::ImageUsageFlags::TRANSFER_DST))
                .is_empty(),
        }
    }

    /// Whether the resource is a transient attachment (lazily allocated memory fits it).
    pub fn transient(self) -> bool {
        matches!(self, Self::Image(u) if u.contains(vk::ImageUsageFlags::TRANSIENT_ATTACHMENT))
    }
}

/// A request may take a small BAR heap's type when it is at most this fraction of the heap.
pub const SMALL_HEAP_MAX_REQUEST_DIVISOR: DeviceSize = 32;
/// Automatic usages fill a small BAR heap up to this fraction of its budget.
pub const SMALL_HEAP_FILL_DIVISOR: DeviceSize = 2;
/// A device-local heap with a host-visible type is small when it is less than the largest
/// device-local heap divided by this.
const SMALL_HEAP_RATIO: DeviceSize = 4;

/// What the choice needs to know about a device's heaps, computed once per allocator.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct HeapFacts {
    /// An integrated GPU, or every heap is device-local (mobile and software GPUs).
    pub unified: bool,
    /// The small BAR heaps, as a mask of heap indices.
    pub small_heaps: u32,
}

impl HeapFacts {
    pub(crate) fn of(props: &MemoryProperties) -> Self {
        let local = |h: &vk::MemoryHeap| h.flags.contains(vk::MemoryHeapFlags::DEVICE_LOCAL);
        let unified = props.memory_heaps.iter().all(local);
        let largest_local = props
            .memory_heaps
            .iter()
            .filter(|h| local(h))
            .map(|h| h.size)
            .max()
            .unwrap_or(0);
        let mut small_heaps = 0;
        if !unified {
            for t in &props.memory_types {
                let Some(heap) = props.memory_heaps.get(t.heap_index as usize) else {
                    continue;
                };
                if t.property_flags.contains(F::DEVICE_LOCAL | F::HOST_VISIBLE)
                    && local(heap)
                    && heap.size < largest_local / SMALL_HEAP_RATIO
                    && t.heap_index < 32
                {
                    small_heaps |= 1 << t.heap_index;
                }
            }
        }
        Self {
            unified,
            small_heaps,
        }
    }

    /// The facts of a device of `device_type` with `props`: an integrated GPU is unified
    /// whatever its heaps say (a carve-out heap is still system memory), and has no BAR
    /// window.
    pub(crate) fn of_device(props: &MemoryProperties, device_type: vk::PhysicalDeviceType) -> Self {
        if device_type == vk::PhysicalDeviceType::INTEGRATED_GPU {
            Self {
                unified: true,
                small_heaps: 0,
            }
        } else {
            Self::of(props)
        }
    }

    /// Whether `heap` is rationed.
    pub(crate) fn is_small(&self, heap: u32) -> bool {
        heap < 32 && self.small_heaps & (1 << heap) != 0
    }
}

/// Whether a request of `size` bytes may take a type on a small heap of `heap_size` bytes
/// whose usage (live and reserved) is `used` of `budget`.
pub fn small_heap_admits(
    size: DeviceSize,
    heap_size: DeviceSize,
    used: DeviceSize,
    budget: DeviceSize,
) -> bool {
    size <= heap_size / SMALL_HEAP_MAX_REQUEST_DIVISOR
        && used.saturating_add(size) <= budget / SMALL_HEAP_FILL_DIVISOR
}

/// An intent worked out into flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Resolved {
    /// The filter.
    pub filter: MemoryTypeFilter,
    /// Try lazily allocated types first (transient attachments).
    pub lazy_first: bool,
    /// Small BAR heaps are rationed for this request.
    pub rationed: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Prefer {
    Neither,
    MemoryDevice,
    Host,
}

/// The flags of `usage` for a resource of `resource` on a device with `facts` (the
/// [table](self#the-rule)).
#[inline]
pub(crate) fn resolve(usage: MemoryUsage, resource: ResourceUsage, facts: HeapFacts) -> Resolved {
    let (prefer, host) = match usage {
        MemoryUsage::Auto(h) => (Prefer::Neither, h),
        MemoryUsage::AutoPreferDevice(h) => (Prefer::MemoryDevice, h),
        MemoryUsage::AutoPreferHost(h) => (Prefer::Host, h),
        simple => {
            return Resolved {
                // Never the default: `simple` is not an automatic usage.
                filter: simple.simple_filter().unwrap_or_default(),
                lazy_first: false,
                rationed: false,
            };
        }
    };
    resolve_auto(prefer, host, resource, facts)
}

/// The [rule](self#the-rule) for an automatic usage (out of line: the simple usages, the
/// common case of the hot path, stop before it).
#[inline(never)]
fn resolve_auto(
    prefer: Prefer,
    host: HostAccess,
    resource: ResourceUsage,
    facts: HeapFacts,
) -> Resolved {
    let gpu = resource.device_access();
    let transfer = host.allows_transfer_instead();
    // Staging instead of mapping pays off only where the GPU has memory of its own.
    let stage = transfer && gpu && !facts.unified && prefer != Prefer::Host;
    let (mut required, mut preferred, mut not_preferred) = (F::empty(), F::empty(), F::empty());
    // Host-visible memory: required, or only preferred when a copy may stand in.
    let host_visible = |required: &mut F, preferred: &mut F| {
        if transfer {
            *preferred |= F::HOST_VISIBLE;
        } else {
            *required |= F::HOST_VISIBLE;
        }
    };
    let mut lazy_first = false;
    match host {
        HostAccess::NoAccess => {
            if prefer == Prefer::Host {
                not_preferred |= F::DEVICE_LOCAL;
            } else {
                preferred |= F::DEVICE_LOCAL;
                not_preferred |= F::HOST_VISIBLE;
                lazy_first = resource.transient();
            }
        }
        HostAccess::SequentialWrite | HostAccess::SequentialWriteOrTransfer => {
            not_preferred |= F::HOST_CACHED;
            if stage {
                preferred |= F::DEVICE_LOCAL | F::HOST_VISIBLE;
            } else {
                host_visible(&mut required, &mut preferred);
                let device_side = if gpu {
                    prefer != Prefer::Host
                } else {
                    prefer == Prefer::MemoryDevice
                };
                if device_side {
                    preferred |= F::DEVICE_LOCAL;
                } else {
                    not_preferred |= F::DEVICE_LOCAL;
                }
            }
        }
        HostAccess::Random | HostAccess::RandomOrTransfer => {
            preferred |= F::HOST_CACHED;
            if stage {
                preferred |= F::DEVICE_LOCAL;
            } else {
                host_visible(&mut required, &mut preferred);
                match prefer {
                    Prefer::MemoryDevice => preferred |= F::DEVICE_LOCAL,
                    Prefer::Host => not_preferred |= F::DEVICE_LOCAL,
                    Prefer::Neither => {}
                }
            }
        }
    }
    Resolved {
        filter: MemoryTypeFilter {
            required_flags: required,
            preferred_flags: preferred,
            not_preferred_flags: not_preferred,
        },
        lazy_first,
        rationed: true,
    }
}

/// The slot of the memory-type cache for `usage` and `resource`: every request of one class
/// resolves to the same flags on one device. `None` for custom filters (not cached).
#[inline]
pub(crate) fn class_of(usage: MemoryUsage, resource: ResourceUsage) -> Option<usize> {
    // The three plain usages first, told apart without a jump on the usage: an application
    // that mixes them at random (uploads among device-local resources) would have such a
    // jump mispredicted whenever the usage changes.
    let device_only = usage == MemoryUsage::DeviceOnly;
    let upload = usage == MemoryUsage::Upload;
    let download = usage == MemoryUsage::Download;
    let simple = usize::from(upload) + 2 * usize::from(download);
    if device_only | upload | download {
        return Some(simple);
    }
    let (prefer, host) = match usage {
        MemoryUsage::DeviceOnly | MemoryUsage::Upload | MemoryUsage::Download => {
            return Some(simple)
        }
        MemoryUsage::Custom(_) => return None,
        MemoryUsage::Auto(h) => (0, h),
        MemoryUsage::AutoPreferDevice(h) => (1, h),
        MemoryUsage::AutoPreferHost(h) => (2, h),
    };
    let host = HostAccess::ALL.iter().position(|&h| h == host)?;
    // Staging, used in place, or transient (which the GPU always uses in place).
    let kind = if resource.transient() {
        2
    } else {
        resource.device_access() as usize
    };
    Some(SIMPLE_CLASSES + (prefer * HostAccess::ALL.len() + host) * RESOURCE_KINDS + kind)
}

const SIMPLE_CLASSES: usize = 3;
const RESOURCE_KINDS: usize = 3;
/// How many classes [`class_of`] tells apart.
pub(crate) const CLASSES: usize = SIMPLE_CLASSES + 3 * HostAccess::ALL.len() * RESOURCE_KINDS;

/// The best memory type among `memory_type_bits` for `resolved`, with the types in
/// `demoted` (a mask of type indices) behind every other allowed type.
pub(crate) fn choose(
    props: &MemoryProperties,
    features: &EnabledMemoryFeatures,
    memory_type_bits: u32,
    resolved: &Resolved,
    demoted: u32,
) -> Option<u32> {
    if resolved.lazy_first {
        let lazy = MemoryTypeFilter {
            required_flags: resolved.filter.required_flags | F::LAZILY_ALLOCATED,
            ..resolved.filter
        };
        let found =
            find_memory_type_index_demoting(props, features, memory_type_bits, &lazy, demoted);
        if found.is_some() {
            return found;
        }
    }
    find_memory_type_index_demoting(props, features, memory_type_bits, &resolved.filter, demoted)
}

impl From<MemoryUsage> for MemoryTypeFilter {
    /// The filter of a usage. An automatic usage is worked out as for a resource of unknown
    /// usage on a discrete GPU, with no heap rationed; allocators resolve it with what they
    /// know of the resource and the device instead.
    fn from(usage: MemoryUsage) -> Self {
        resolve(usage, ResourceUsage::Unknown, HeapFacts::default()).filter
    }
}
