//! The memory layouts of real GPUs, from their published `vulkaninfo` reports (memory types,
//! heaps and the limits the allocator reads). Heap sizes are the real ones; tests only
//! allocate a few hundred MiB of them, except where a small heap (the 256 MiB BAR window) is
//! the point of the test and is filled for real.

//!
//! The file is self-contained: the crate's own unit tests check the placement policy and the
//! automatic usages on these layouts without a driver, and the driver tests
//! (`tests/support`) include it to present them on top of the software driver.
#![allow(dead_code)]

use ash::vk;
use ash::vk::MemoryPropertyFlags as F;

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

/// A GPU's memory types, heaps and limits.
#[derive(Clone, Debug)]
pub struct GpuLayout {
    pub name: &'static str,
    /// `(flags, heap index)`, indexed by memory type index.
    pub types: Vec<(F, u32)>,
    /// `(size, device local)`, indexed by heap index.
    pub heaps: Vec<(u64, bool)>,
    pub buffer_image_granularity: u64,
    pub non_coherent_atom_size: u64,
    pub max_memory_allocation_count: u32,
    /// Optimal-tiling images may only live in `DEVICE_LOCAL` types.
    pub optimal_images_device_local_only: bool,
}

const DL: F = F::DEVICE_LOCAL;
const HV: F = F::HOST_VISIBLE;
const HC: F = F::HOST_COHERENT;
const CACHED: F = F::HOST_CACHED;
const LAZY: F = F::LAZILY_ALLOCATED;
const PROT: F = F::PROTECTED;

impl GpuLayout {
    /// NVIDIA discrete (e.g. RTX 3070, 8 GiB): one VRAM heap, host memory in two types
    /// (write-combined and cached), 4096 memory objects, 1 KiB granularity.
    pub fn nvidia_discrete() -> Self {
        Self {
            name: "nvidia-discrete",
            types: vec![(DL, 0), (HV | HC, 1), (HV | HC | CACHED, 1)],
            heaps: vec![(8 * GIB, true), (16 * GIB, false)],
            buffer_image_granularity: 1024,
            non_coherent_atom_size: 64,
            max_memory_allocation_count: 4096,
            optimal_images_device_local_only: true,
        }
    }

    /// AMD discrete without resizable BAR (e.g. RX 6800 on RADV): VRAM, host memory, and the
    /// 256 MiB `DEVICE_LOCAL | HOST_VISIBLE` BAR window.
    pub fn amd_discrete_bar() -> Self {
        Self {
            name: "amd-discrete-256mib-bar",
            types: vec![
                (DL, 0),
                (HV | HC, 1),
                (DL | HV | HC, 2),
                (HV | HC | CACHED, 1),
            ],
            heaps: vec![(8 * GIB, true), (16 * GIB, false), (256 * MIB, true)],
            buffer_image_granularity: 64,
            non_coherent_atom_size: 64,
            max_memory_allocation_count: 4_294_967_295,
            optimal_images_device_local_only: false,
        }
    }

    /// The same AMD GPU with resizable BAR: all of VRAM is host-visible.
    pub fn amd_discrete_rebar() -> Self {
        Self {
            name: "amd-discrete-resizable-bar",
            types: vec![
                (DL, 0),
                (HV | HC, 1),
                (DL | HV | HC, 0),
                (HV | HC | CACHED, 1),
            ],
            heaps: vec![(8 * GIB, true), (16 * GIB, false)],
            buffer_image_granularity: 64,
            non_coherent_atom_size: 64,
            max_memory_allocation_count: 4_294_967_295,
            optimal_images_device_local_only: false,
        }
    }

    /// An integrated GPU with one unified heap (Intel on Mesa ANV): a device-only type, a
    /// cached host-visible type, and an uncached (write-combined) host-visible type.
    pub fn intel_integrated() -> Self {
        Self {
            name: "intel-integrated",
            types: vec![(DL, 0), (DL | HV | HC | CACHED, 0), (DL | HV | HC, 0)],
            heaps: vec![(4 * GIB, true)],
            buffer_image_granularity: 64,
            non_coherent_atom_size: 64,
            max_memory_allocation_count: 4_294_967_295,
            optimal_images_device_local_only: false,
        }
    }

    /// A mobile GPU (ARM Mali-like): unified memory, a coherent type, a cached type that is
    /// *not* coherent, and lazily allocated memory for transient attachments;
    /// `nonCoherentAtomSize` 128.
    pub fn mobile() -> Self {
        Self {
            name: "mobile-noncoherent",
            types: vec![(DL | HV | HC, 0), (DL | HV | CACHED, 0), (DL | LAZY, 0)],
            heaps: vec![(4 * GIB, true)],
            buffer_image_granularity: 1024,
            non_coherent_atom_size: 128,
            max_memory_allocation_count: 4096,
            optimal_images_device_local_only: false,
        }
    }

    /// A device with a 64 KiB `bufferImageGranularity` and 4096 memory objects (older NVIDIA
    /// generations reported 64 KiB).
    pub fn large_granularity() -> Self {
        Self {
            name: "granularity-64k",
            buffer_image_granularity: 65536,
            ..Self::nvidia_discrete()
        }
    }

    /// A discrete GPU with a protected VRAM type (`DEVICE_LOCAL | PROTECTED`, as desktop
    /// drivers with `protectedMemory` report it). It is memory type 0, so that only the opt-in
    /// rule keeps it from ordinary device-local requests, which would otherwise pick the
    /// lowest index.
    pub fn with_protected() -> Self {
        Self {
            name: "nvidia-discrete-protected",
            types: vec![(DL | PROT, 0), (DL, 0), (HV | HC, 1), (HV | HC | CACHED, 1)],
            ..Self::nvidia_discrete()
        }
    }

    /// The NVIDIA-like types on small heaps (VRAM and host memory of the given sizes), for
    /// tests that fill a heap or its budget for real.
    pub fn small_heaps(vram: u64, host: u64) -> Self {
        Self {
            name: "small-heaps",
            heaps: vec![(vram, true), (host, false)],
            ..Self::nvidia_discrete()
        }
    }

    /// Lavapipe's own layout, as reported (used where only fault injection matters).
    pub fn lavapipe() -> Self {
        Self {
            name: "lavapipe",
            types: vec![(DL | HV | HC | CACHED, 0)],
            heaps: vec![(2 * GIB, true)],
            buffer_image_granularity: 64,
            non_coherent_atom_size: 64,
            max_memory_allocation_count: u32::MAX,
            optimal_images_device_local_only: false,
        }
    }

    pub fn all() -> Vec<Self> {
        vec![
            Self::nvidia_discrete(),
            Self::amd_discrete_bar(),
            Self::amd_discrete_rebar(),
            Self::intel_integrated(),
            Self::mobile(),
            Self::large_granularity(),
        ]
    }

    pub fn type_count(&self) -> u32 {
        self.types.len() as u32
    }

    pub fn flags(&self, memory_type: u32) -> F {
        self.types[memory_type as usize].0
    }

    pub fn heap_of(&self, memory_type: u32) -> u32 {
        self.types[memory_type as usize].1
    }

    /// Every type with none of `excluded` flags, as a mask.
    pub fn mask_without(&self, excluded: F) -> u32 {
        self.types
            .iter()
            .enumerate()
            .filter(|(_, (f, _))| !f.intersects(excluded))
            .fold(0, |m, (i, _)| m | 1 << i)
    }

    /// The memory types a buffer (or linear image) may use: all but lazily allocated ones.
    pub fn buffer_bits(&self) -> u32 {
        self.mask_without(LAZY | F::PROTECTED)
    }

    /// The memory types an image may use.
    pub fn image_bits(&self, tiling: vk::ImageTiling, usage: vk::ImageUsageFlags) -> u32 {
        let mut bits = if usage.contains(vk::ImageUsageFlags::TRANSIENT_ATTACHMENT) {
            self.mask_without(F::PROTECTED)
        } else {
            self.buffer_bits()
        };
        if tiling == vk::ImageTiling::OPTIMAL && self.optimal_images_device_local_only {
            for (i, (f, _)) in self.types.iter().enumerate() {
                if !f.contains(DL) {
                    bits &= !(1 << i);
                }
            }
        }
        bits
    }

    pub fn to_vk(&self) -> vk::PhysicalDeviceMemoryProperties {
        let mut p = vk::PhysicalDeviceMemoryProperties {
            memory_type_count: self.types.len() as u32,
            memory_heap_count: self.heaps.len() as u32,
            ..Default::default()
        };
        for (i, &(property_flags, heap_index)) in self.types.iter().enumerate() {
            p.memory_types[i] = vk::MemoryType {
                property_flags,
                heap_index,
            };
        }
        for (i, &(size, local)) in self.heaps.iter().enumerate() {
            p.memory_heaps[i] = vk::MemoryHeap {
                size,
                flags: if local {
                    vk::MemoryHeapFlags::DEVICE_LOCAL
                } else {
                    vk::MemoryHeapFlags::empty()
                },
            };
        }
        p
    }
}
