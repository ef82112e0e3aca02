//! Choosing a memory type, as pure functions over a snapshot of the device's memory properties.
//!
//! # Memory types and heaps
//!
//! A Vulkan device exposes up to 16 *heaps* (physical pools of memory: VRAM, system RAM, the
//! PCIe BAR window into VRAM) and up to 32 *memory types*. Each type lives in one heap and has
//! property flags: `DEVICE_LOCAL` (fast for the GPU), `HOST_VISIBLE` (mappable by the CPU),
//! `HOST_COHERENT` (CPU writes visible without flushing), `HOST_CACHED` (fast CPU reads), and
//! rarer ones (`LAZILY_ALLOCATED`, `PROTECTED`, AMD's `DEVICE_COHERENT`/`DEVICE_UNCACHED`,
//! NVIDIA's `RDMA_CAPABLE`). A resource reports which types it can live in as a bit mask,
//! `memoryTypeBits`; the allocator picks one of those.
//!
//! # The choice
//!
//! A [`MemoryTypeFilter`] names flags that are *required*, *preferred* and *not preferred*.
//! Among the allowed types that have every required flag, the one missing the fewest preferred
//! flags and having the fewest not-preferred flags wins; ties go to the lowest index, because
//! the specification orders types by the driver's own preference. [`MemoryUsage`] gives the
//! filters that fit the three common cases, the same ones VMA picks for its GPU-only,
//! CPU-to-GPU and GPU-to-CPU usages, and the automatic usages that work the filter out from
//! the resource, the host access and the device's heaps ([`intent`](super::intent)).
//!
//! Special types are never chosen by accident: `PROTECTED`, `LAZILY_ALLOCATED` and
//! `RDMA_CAPABLE` types only when the filter requires that flag (and, for `PROTECTED`, the
//! feature is enabled); AMD's device-coherent and uncached types only when the
//! `deviceCoherentMemory` feature is enabled, and even then a filter that neither requires
//! nor prefers `DEVICE_COHERENT_AMD` or `DEVICE_UNCACHED_AMD` counts `DEVICE_UNCACHED_AMD`
//! as not preferred (VMA's rule). Lazily allocated memory is only ever given out
//! as dedicated allocations, since carving a block of it up would commit it all.

#![deny(unsafe_code)]

use crate::device::{EnabledMemoryFeatures, MemoryProperties};
use ash::vk;

/// Which memory property flags a memory type must, should and should not have.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemoryTypeFilter {
    /// Flags the type must have.
    pub required_flags: vk::MemoryPropertyFlags,
    /// Flags the type should have, each missing one counts against it.
    pub preferred_flags: vk::MemoryPropertyFlags,
    /// Flags the type should not have, each present one counts against it.
    pub not_preferred_flags: vk::MemoryPropertyFlags,
}

/// How the host touches an allocation, part of an automatic [`MemoryUsage`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum HostAccess {
    /// The host never maps the memory: only the GPU uses it. (Called `None` before 0.2, a
    /// name that read like `Option::None`.)
    #[default]
    NoAccess,
    /// The host writes it sequentially (`memcpy`, no reads): write-combined memory is fine.
    SequentialWrite,
    /// The host reads it, or writes it in any order: the memory should be `HOST_CACHED`.
    Random,
    /// As [`SequentialWrite`](Self::SequentialWrite), but the allocator may choose memory
    /// the host cannot map when the GPU is faster with it; the application then writes a
    /// staging buffer and copies.
    SequentialWriteOrTransfer,
    /// As [`Random`](Self::Random), but the allocator may choose memory the host cannot map;
    /// the application then copies to a host-visible buffer and reads that.
    RandomOrTransfer,
}

impl HostAccess {
    /// The old name of [`NoAccess`](Self::NoAccess), kept so that code using it compiles.
    #[deprecated(since = "0.2.0", note = "renamed to `HostAccess::NoAccess`")]
    #[allow(non_upper_case_globals)]
    pub const None: Self = Self::NoAccess;

    pub(crate) const ALL: [Self; 5] = [
        Self::NoAccess,
        Self::SequentialWrite,
        Self::Random,
        Self::SequentialWriteOrTransfer,
        Self::RandomOrTransfer,
    ];

    /// Whether memory the host cannot map is acceptable.
    pub fn allows_transfer_instead(self) -> bool {
        matches!(
            self,
            Self::SequentialWriteOrTransfer | Self::RandomOrTransfer
        )
    }
}

/// What an allocation is for, which decides its memory type.
///
/// The automatic usages ([`Auto`](Self::Auto) and its two preferences, VMA 3's `AUTO*`) are
/// the ones to reach for: they choose from the resource's usage flags, the host access, the
/// device's heaps, the size of the request and the heap's budget (the rule and its reasons
/// are in [`intent`](super::intent)). The simple forms ([`DeviceOnly`](Self::DeviceOnly),
/// [`Upload`](Self::Upload), [`Download`](Self::Download), VMA 2's `GPU_ONLY`,
/// `CPU_TO_GPU`, `GPU_TO_CPU`) name fixed flags, whatever the resource and the heaps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum MemoryUsage {
    /// Only the GPU touches the memory: prefer `DEVICE_LOCAL`, avoid `HOST_VISIBLE` so that
    /// the small mappable window of VRAM is left for uploads. The default.
    #[default]
    DeviceOnly,
    /// The CPU writes (sequentially) and the GPU reads: requires `HOST_VISIBLE`, prefers
    /// `DEVICE_LOCAL` (a BAR or unified-memory type where there is one), avoids `HOST_CACHED`
    /// (write-combined memory is faster for sequential writes). Every upload, staging buffers
    /// included, goes to a BAR heap while it has room: prefer
    /// `Auto(HostAccess::SequentialWrite)`, which keeps staging buffers out of it.
    Upload,
    /// The GPU writes and the CPU reads: requires `HOST_VISIBLE`, prefers `HOST_CACHED` so that
    /// reads are fast.
    Download,
    /// A filter of your own.
    Custom(MemoryTypeFilter),
    /// Chosen from the resource and the host access (see [`intent`](super::intent)).
    Auto(HostAccess),
    /// As [`Auto`](Self::Auto), leaning to device-local memory where the rule has a choice
    /// (a staging buffer in the BAR window, random host access in VRAM-backed memory).
    AutoPreferDevice(HostAccess),
    /// As [`Auto`](Self::Auto), leaning to host memory where the rule has a choice (a
    /// buffer the GPU reads in place, but rarely, kept in system RAM).
    AutoPreferHost(HostAccess),
}

impl MemoryUsage {
    /// The filter of a simple form (an automatic usage yields its filter without knowledge of
    /// the resource or the heaps); `None` for an automatic usage (see
    /// [`intent`](super::intent)).
    #[inline]
    pub(crate) fn simple_filter(self) -> Option<MemoryTypeFilter> {
        use vk::MemoryPropertyFlags as F;
        let filter = match self {
            Self::DeviceOnly => MemoryTypeFilter {
                required_flags: F::empty(),
                preferred_flags: F::DEVICE_LOCAL,
                not_preferred_flags: F::HOST_VISIBLE,
            },
            Self::Upload => MemoryTypeFilter {
                required_flags: F::HOST_VISIBLE,
                preferred_flags: F::DEVICE_LOCAL,
                not_preferred_flags: F::HOST_CACHED,
            },
            Self::Download => MemoryTypeFilter {
                required_flags: F::HOST_VISIBLE,
                preferred_flags: F::HOST_CACHED,
                not_preferred_flags: F::empty(),
            },
            Self::Custom(filter) => filter,
            Self::Auto(_) | Self::AutoPreferDevice(_) | Self::AutoPreferHost(_) => return None,
        };
        Some(filter)
    }
}

/// Flags that make a memory type special: never chosen unless asked for.
const OPT_IN_FLAGS: vk::MemoryPropertyFlags = vk::MemoryPropertyFlags::from_raw(
    vk::MemoryPropertyFlags::PROTECTED.as_raw()
        | vk::MemoryPropertyFlags::LAZILY_ALLOCATED.as_raw()
        | vk::MemoryPropertyFlags::RDMA_CAPABLE_NV.as_raw(),
);

/// The flags `filter` counts as not preferred on top of its own: AMD's `DEVICE_UNCACHED`
/// (memory the GPU does not cache, slow for anything but the rare resource that needs device
/// coherence), unless the filter requires or prefers `DEVICE_COHERENT_AMD` or
/// `DEVICE_UNCACHED_AMD`. VMA's rule too: once `deviceCoherentMemory` is enabled the uncached
/// types are allowed, and without this an ordinary request whose plain type is left out of
/// `memoryTypeBits` (or is out of memory) would take one on a tie of cost, or even ahead of
/// a plain type that misses a preferred flag.
fn implicitly_not_preferred(filter: &MemoryTypeFilter) -> vk::MemoryPropertyFlags {
    use vk::MemoryPropertyFlags as F;
    let asked = filter.required_flags | filter.preferred_flags;
    if asked.intersects(F::DEVICE_COHERENT_AMD | F::DEVICE_UNCACHED_AMD) {
        F::empty()
    } else {
        F::DEVICE_UNCACHED_AMD
    }
}

/// Whether memory type flags `flags` may be used for a request with `filter` on a device with
/// `features`.
pub fn is_type_allowed(
    flags: vk::MemoryPropertyFlags,
    filter: &MemoryTypeFilter,
    features: &EnabledMemoryFeatures,
) -> bool {
    let opt_in = flags & OPT_IN_FLAGS;
    if !filter.required_flags.contains(opt_in) {
        return false;
    }
    // The same rule as the device layer's check before `vkAllocateMemory`.
    features.missing_for(flags).is_none()
}

/// Whether memory of a type with `flags` may be carved into blocks; otherwise it is only given
/// out as dedicated allocations.
pub fn is_suballocatable(flags: vk::MemoryPropertyFlags) -> bool {
    !flags.intersects(
        vk::MemoryPropertyFlags::LAZILY_ALLOCATED | vk::MemoryPropertyFlags::RDMA_CAPABLE_NV,
    )
}

/// The best memory type among those in `memory_type_bits` for `filter`, or `None`.
pub fn find_memory_type_index(
    props: &MemoryProperties,
    features: &EnabledMemoryFeatures,
    memory_type_bits: u32,
    filter: &MemoryTypeFilter,
) -> Option<u32> {
    find_memory_type_index_demoting(props, features, memory_type_bits, filter, 0)
}

/// [`find_memory_type_index`], with the types in `demoted` (a mask of type indices) behind
/// every type not in it.
pub(crate) fn find_memory_type_index_demoting(
    props: &MemoryProperties,
    features: &EnabledMemoryFeatures,
    memory_type_bits: u32,
    filter: &MemoryTypeFilter,
    demoted: u32,
) -> Option<u32> {
    // Above any cost of flags (at most 32 + 32).
    const DEMOTED: u32 = 1 << 8;
    let not_preferred = filter.not_preferred_flags | implicitly_not_preferred(filter);
    let mut best: Option<(u32, u32)> = None;
    // At most 32 types: `memory_type_bits` has no bit for more (a hand-built
    // `MemoryProperties` may list more; they are never chosen).
    for (index, t) in props.memory_types.iter().enumerate().take(32) {
        let flags = t.property_flags;
        if memory_type_bits & (1 << index) == 0
            || !flags.contains(filter.required_flags)
            || !is_type_allowed(flags, filter, features)
        {
            continue;
        }
        let cost = (filter.preferred_flags & !flags).as_raw().count_ones()
            + (not_preferred & flags).as_raw().count_ones()
            + if demoted & (1 << index) != 0 {
                DEMOTED
            } else {
                0
            };
        if best.is_none_or(|(_, c)| cost < c) {
            best = Some((index as u32, cost));
        }
    }
    best.map(|(index, _)| index)
}

#[cfg(test)]
mod tests {
    use super::*;
    use vk::MemoryPropertyFlags as F;

    fn props(types: &[(F, u32)], heaps: &[(u64, bool)]) -> MemoryProperties {
        MemoryProperties {
            memory_types: types
                .iter()
                .map(|&(property_flags, heap_index)| vk::MemoryType {
                    property_flags,
                    heap_index,
                })
                .collect(),
            memory_heaps: heaps
                .iter()
                .map(|&(size, local)| vk::MemoryHeap {
                    size,
                    flags: if local {
                        vk::MemoryHeapFlags::DEVICE_LOCAL
                    } else {
                        vk::MemoryHeapFlags::empty()
                    },
                })
                .collect(),
        }
    }

    fn pick(p: &MemoryProperties, usage: MemoryUsage) -> Option<u32> {
        let f = EnabledMemoryFeatures::default();
        find_memory_type_index(p, &f, u32::MAX, &usage.into())
    }

    #[test]
    fn discrete_nvidia_like() {
        let p = props(
            &[
                (F::DEVICE_LOCAL, 0),
                (F::HOST_VISIBLE | F::HOST_COHERENT, 1),
                (F::HOST_VISIBLE | F::HOST_COHERENT | F::HOST_CACHED, 1),
            ],
            &[(8 << 30, true), (16 << 30, false)],
        );
        assert_eq!(pick(&p, MemoryUsage::DeviceOnly), Some(0));
        assert_eq!(pick(&p, MemoryUsage::Upload), Some(1));
        assert_eq!(pick(&p, MemoryUsage::Download), Some(2));
    }

    #[test]
    fn bar_and_unified_memory() {
        let p = props(
            &[
                (F::DEVICE_LOCAL, 0),
                (F::HOST_VISIBLE | F::HOST_COHERENT, 1),
                (F::DEVICE_LOCAL | F::HOST_VISIBLE | F::HOST_COHERENT, 2),
            ],
            &[(8 << 30, true), (16 << 30, false), (256 << 20, true)],
        );
        assert_eq!(pick(&p, MemoryUsage::DeviceOnly), Some(0));
        assert_eq!(pick(&p, MemoryUsage::Upload), Some(2));
        assert_eq!(pick(&p, MemoryUsage::Download), Some(1));
        // Without the BAR type in the mask, uploads fall back to host memory.
        let f = EnabledMemoryFeatures::default();
        assert_eq!(
            find_memory_type_index(&p, &f, 0b011, &MemoryUsage::Upload.into()),
            Some(1)
        );
    }

    #[test]
    fn special_types_need_opt_in() {
        let p = props(
            &[
                (F::DEVICE_LOCAL | F::LAZILY_ALLOCATED, 0),
                (F::DEVICE_LOCAL | F::PROTECTED, 0),
                (F::DEVICE_LOCAL | F::DEVICE_COHERENT_AMD, 0),
                (F::DEVICE_LOCAL, 0),
            ],
            &[(1 << 30, true)],
        );
        assert_eq!(pick(&p, MemoryUsage::DeviceOnly), Some(3));
        let lazy = MemoryTypeFilter {
            required_flags: F::LAZILY_ALLOCATED,
            ..Default::default()
        };
        assert_eq!(pick(&p, MemoryUsage::Custom(lazy)), Some(0));
        let protected = MemoryTypeFilter {
            required_flags: F::PROTECTED,
            ..Default::default()
        };
        assert_eq!(pick(&p, MemoryUsage::Custom(protected)), None);
        let enabled = EnabledMemoryFeatures {
            protected_memory: true,
            device_coherent_memory: true,
            ..Default::default()
        };
        assert_eq!(
            find_memory_type_index(&p, &enabled, u32::MAX, &protected),
            Some(1)
        );
        assert_eq!(
            find_memory_type_index(&p, &enabled, 0b0100, &MemoryUsage::DeviceOnly.into()),
            Some(2)
        );
        assert!(!is_suballocatable(F::DEVICE_LOCAL | F::LAZILY_ALLOCATED));
        assert!(is_suballocatable(F::DEVICE_LOCAL));
    }

    #[test]
    fn device_uncached_types_are_avoided_unless_asked_for() {
        let uncached = F::DEVICE_COHERENT_AMD | F::DEVICE_UNCACHED_AMD;
        let p = props(
            &[
                (F::HOST_VISIBLE | F::HOST_COHERENT, 1),
                (F::DEVICE_LOCAL | uncached, 0),
                (F::DEVICE_LOCAL | F::HOST_VISIBLE | F::HOST_COHERENT, 0),
                (
                    F::HOST_VISIBLE | F::HOST_COHERENT | F::HOST_CACHED | uncached,
                    1,
                ),
            ],
            &[(8 << 30, true), (16 << 30, false)],
        );
        let f = EnabledMemoryFeatures {
            device_coherent_memory: true,
            ..Default::default()
        };
        let find = |bits, usage: MemoryUsage| find_memory_type_index(&p, &f, bits, &usage.into());
        // Device-local memory is the BAR type rather than uncached VRAM, and readback takes
        // uncached host memory over device-uncached cached memory (both cost one: the tie
        // goes to the lower index).
        let device_local = MemoryTypeFilter {
            preferred_flags: F::DEVICE_LOCAL,
            ..Default::default()
        };
        assert_eq!(find(0b0110, MemoryUsage::Custom(device_local)), Some(2));
        assert_eq!(find(0b1001, MemoryUsage::Download), Some(0));
        // Asked for, by requirement or preference, they are chosen.
        let coherent = MemoryTypeFilter {
            preferred_flags: F::DEVICE_COHERENT_AMD,
            ..Default::default()
        };
        assert_eq!(find(0b1111, MemoryUsage::Custom(coherent)), Some(1));
        let required = MemoryTypeFilter {
            required_flags: F::DEVICE_UNCACHED_AMD | F::HOST_VISIBLE,
            ..Default::default()
        };
        assert_eq!(find(0b1111, MemoryUsage::Custom(required)), Some(3));
    }
}
