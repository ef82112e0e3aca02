//! The allocator's hot path (a plain request served straight from the existing blocks of the
//! memory type already chosen for its class) places every request exactly where the full
//! allocate sequence places it.
//!
//! Two allocators on two identical simulated GPUs replay the same random trace of allocations
//! and frees: one with plain requests (which take the hot path whenever it applies), one with
//! the same requests carrying an explicit priority equal to the allocator's block priority
//! (which sends every request down the full sequence and changes nothing else: a block's
//! priority is the allocator's, and a dedicated allocation's is the request's, the same
//! value). After every step, both must agree on every allocation: memory type, which block
//! (blocks numbered in the order each allocator made them), offset, size, dedicated or not.
//! The trace mixes the memory-type classes (simple usages, automatic usages with host access
//! and resource kinds), small and large sizes (large ones take the dedicated path or the
//! best-fit search), alignments, and linear and non-linear resources, on GPUs with and
//! without a small BAR heap (whose types the hot path leaves to the full sequence).

mod common;
mod support;

use ash::vk;
use ash_memory::*;
use std::collections::HashMap;
use support::{GpuLayout, Sim, KIB, MIB};

/// A small deterministic generator (xorshift): the trace is the same on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[derive(Clone, Copy, Debug)]
struct Request {
    size: u64,
    alignment: u64,
    usage: MemoryUsage,
    resource: ResourceUsage,
    allocation_type: AllocationType,
}

fn random_request(rng: &mut Rng) -> Request {
    use HostAccess::*;
    let usages = [
        (MemoryUsage::DeviceOnly, ResourceUsage::Unknown),
        (MemoryUsage::Upload, ResourceUsage::Unknown),
        (MemoryUsage::Download, ResourceUsage::Unknown),
        (MemoryUsage::Auto(NoAccess), ResourceUsage::Unknown),
        (
            MemoryUsage::Auto(SequentialWrite),
            ResourceUsage::Buffer(vk::BufferUsageFlags::TRANSFER_SRC),
        ),
        (
            MemoryUsage::Auto(SequentialWrite),
            ResourceUsage::Buffer(vk::BufferUsageFlags::UNIFORM_BUFFER),
        ),
        (MemoryUsage::AutoPreferHost(Random), ResourceUsage::Unknown),
    ];
    let (usage, resource) = usages[rng.below(usages.len() as u64) as usize];
    // Mostly small (the hot path's requests), sometimes large enough for the best-fit search
    // or a memory object of its own.
    let size = if rng.below(20) == 0 {
        MIB + rng.below(40 * MIB)
    } else {
        16 + rng.below(64 * KIB)
    };
    Request {
        size,
        alignment: 1 << (4 + rng.below(9)),
        usage,
        resource,
        allocation_type: if rng.below(3) == 0 {
            AllocationType::NonLinear
        } else {
            AllocationType::Linear
        },
    }
}

/// Where an allocation lies, comparable across two allocators: its memory object is named by
/// the order in which the allocator first handed it out.
#[derive(Debug, PartialEq, Eq)]
struct Place {
    memory_type: u32,
    object: usize,
    offset: u64,
    size: u64,
    dedicated: bool,
}

/// One allocator and its live allocations (fields drop in this order: allocations, the
/// allocator, then the simulated device).
struct Side {
    live: Vec<Option<MemoryAlloc>>,
    allocator: StandardMemoryAllocator,
    objects: HashMap<vk::DeviceMemory, usize>,
    /// Whether requests carry the explicit priority that keeps them off the hot path.
    full: bool,
    sim: Sim,
}

impl Side {
    fn new(layout: GpuLayout, full: bool, slots: usize) -> Self {
        let sim = Sim::new(layout);
        let allocator = StandardMemoryAllocator::new(
            sim.memory_device(),
            GenericMemoryAllocatorCreateInfo {
                block_sizes: BlockSizeThresholds::uniform(64 * MIB).unwrap(),
                ..Default::default()
            },
        )
        .unwrap();
        Self {
            live: (0..slots).map(|_| None).collect(),
            allocator,
            objects: HashMap::new(),
            full,
            sim,
        }
    }

    fn allocate(&mut self, slot: usize, r: Request) {
        let bits = u32::MAX
            >> (32
                - self
                    .allocator
                    .device()
                    .memory_properties()
                    .memory_types
                    .len());
        let requirements = AllocationRequirements {
            layout: DeviceLayout::from_size_alignment(r.size, r.alignment).unwrap(),
            memory_type_bits: bits,
            prefers_dedicated_allocation: false,
            requires_dedicated_allocation: false,
        };
        let info = AllocationCreateInfo {
            usage: r.usage,
            resource_usage: r.resource,
            priority: self
                .full
                .then_some(self.allocator.create_info().block_priority),
            ..Default::default()
        };
        let alloc = self
            .allocator
            .allocate(requirements, r.allocation_type, &info, None)
            .unwrap_or_else(|e| panic!("{r:?}: {e}"));
        self.live[slot] = Some(alloc);
    }

    fn place(&mut self, slot: usize) -> Option<Place> {
        let a = self.live[slot].as_ref()?;
        let next = self.objects.len();
        let object = *self.objects.entry(a.memory()).or_insert(next);
        Some(Place {
            memory_type: a.memory_type_index(),
            object,
            offset: a.offset(),
            size: a.size(),
            dedicated: a.is_dedicated(),
        })
    }
}

fn hot_and_full_paths_agree(layout: fn() -> GpuLayout, seed: u64) {
    const SLOTS: usize = 300;
    const STEPS: usize = 4_000;
    let mut hot = Side::new(layout(), false, SLOTS);
    let mut full = Side::new(layout(), true, SLOTS);
    let mut rng = Rng(seed);
    let mut hot_served = 0;
    for step in 0..STEPS {
        let slot = rng.below(SLOTS as u64) as usize;
        if hot.live[slot].is_some() && rng.below(2) == 0 {
            hot.live[slot] = None;
            full.live[slot] = None;
            continue;
        }
        let r = random_request(&mut rng);
        hot.live[slot] = None;
        full.live[slot] = None;
        hot.allocate(slot, r);
        full.allocate(slot, r);
        let (h, f) = (hot.place(slot), full.place(slot));
        assert_eq!(h, f, "step {step}: {r:?}");
        hot_served += usize::from(!h.is_some_and(|p| p.dedicated));
    }
    // The comparison means something only if both paths saw suballocations.
    assert!(hot_served > STEPS / 4, "{hot_served} suballocations");
    for ty in 0..hot
        .allocator
        .device()
        .memory_properties()
        .memory_types
        .len() as u32
    {
        assert_eq!(
            hot.allocator.block_count(ty),
            full.allocator.block_count(ty),
            "blocks of memory type {ty}"
        );
    }
    for side in [hot, full] {
        let Side {
            live,
            allocator,
            sim,
            ..
        } = side;
        drop(live);
        drop(allocator);
        sim.assert_nothing_allocated();
    }
}

#[test]
fn the_hot_path_places_every_request_as_the_full_sequence_does() {
    // A discrete GPU with a small BAR heap (its type is rationed, which the hot path leaves to
    // the full sequence: requests above a 32nd of the heap go elsewhere), one with a
    // resizable BAR, one with no device-local host-visible memory, and the software driver's
    // single heap.
    hot_and_full_paths_agree(GpuLayout::amd_discrete_bar, 0x9e37_79b9_7f4a_7c15);
    hot_and_full_paths_agree(GpuLayout::amd_discrete_rebar, 0x2545_f491_4f6c_dd1d);
    hot_and_full_paths_agree(GpuLayout::nvidia_discrete, 0x1405_7b7e_f767_814f);
    hot_and_full_paths_agree(GpuLayout::lavapipe, 0x5851_f42d_4c95_7f2d);
}
