//! The walk's model: the allocator, its pools and the live allocations, with what each should be.

use super::*;

/// Slot size of the slot-allocator pools.
pub(crate) const SLOT: u64 = 4 * KIB;
/// The most bytes of an allocation the model keeps a copy of (and checks).
pub(crate) const SHADOW: u64 = 16 * KIB;

/// The simulated GPU: device-local, host-coherent, host-cached non-coherent and a small BAR
/// heap, on small heaps so that large requests fail without reaching the real driver; its
/// buffer-image granularity is `granularity`.
pub(crate) fn layout_with(granularity: u64) -> GpuLayout {
    GpuLayout {
        name: "api-walk",
        types: vec![
            (F::DEVICE_LOCAL, 0),
            (F::HOST_VISIBLE | F::HOST_COHERENT, 1),
            (F::HOST_VISIBLE | F::HOST_CACHED, 1),
            (F::DEVICE_LOCAL | F::HOST_VISIBLE | F::HOST_COHERENT, 2),
        ],
        heaps: vec![(96 * MIB, true), (64 * MIB, false), (16 * MIB, true)],
        buffer_image_granularity: granularity,
        non_coherent_atom_size: 256,
        max_memory_allocation_count: 4096,
        optimal_images_device_local_only: false,
    }
}

/// A custom pool of any suballocator.
pub(crate) enum AnyPool {
    FreeList(MemoryPool<FreeListAllocator>),
    Buddy(MemoryPool<BuddyAllocator>),
    Bump(MemoryPool<BumpAllocator>),
    Ring(MemoryPool<RingAllocator>),
    Slot(MemoryPool<SlotAllocator<SLOT>>),
}

macro_rules! each_pool {
    ($pool:expr, $p:ident => $body:expr) => {
        match $pool {
            AnyPool::FreeList($p) => $body,
            AnyPool::Buddy($p) => $body,
            AnyPool::Bump($p) => $body,
            AnyPool::Ring($p) => $body,
            AnyPool::Slot($p) => $body,
        }
    };
}

impl AnyPool {
    pub(crate) fn api(&self) -> &dyn MemoryAllocator {
        each_pool!(self, p => p)
    }
    pub(crate) fn name(&self) -> Arc<str> {
        each_pool!(self, p => p.name())
    }
    pub(crate) fn set_name(&self, name: Option<Arc<str>>) {
        each_pool!(self, p => p.set_name(name))
    }
    pub(crate) fn memory_type_index(&self) -> u32 {
        each_pool!(self, p => p.memory_type_index())
    }
    pub(crate) fn block_size(&self) -> u64 {
        each_pool!(self, p => p.block_size())
    }
    pub(crate) fn block_count(&self) -> usize {
        each_pool!(self, p => p.block_count())
    }
    pub(crate) fn block_count_limits(&self) -> (usize, usize) {
        each_pool!(self, p => p.block_count_limits())
    }
    pub(crate) fn report_leaks(&self) -> Vec<LeakedAllocation> {
        each_pool!(self, p => p.report_leaks())
    }
    pub(crate) fn check_corruption(&self) -> bool {
        each_pool!(self, p => p.check_corruption().is_ok())
    }
}

/// Where an allocation came from: the allocator's default vectors or a pool (by its id).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Source {
    Default,
    Pool(usize),
}

/// One live allocation of the model.
pub(crate) struct Live {
    pub(crate) uid: u64,
    pub(crate) alloc: MemoryAlloc,
    pub(crate) source: Source,
    /// The alignment its offset must have.
    pub(crate) alignment: u64,
    /// The requested size.
    pub(crate) requested: u64,
    /// What the first `SHADOW` bytes hold, for host-visible memory.
    pub(crate) shadow: Option<Vec<u8>>,
    pub(crate) name: Option<Arc<str>>,
    pub(crate) user: Option<u64>,
}

pub(crate) struct PoolEntry {
    pub(crate) id: usize,
    pub(crate) pool: AnyPool,
    pub(crate) name: Arc<str>,
    pub(crate) min_alignment: u64,
}

/// The walk's state. Fields drop in order: allocations, pools, the allocator, then the
/// simulated driver.
pub(crate) struct World {
    pub(crate) live: Vec<Live>,
    pub(crate) pools: Vec<PoolEntry>,
    pub(crate) allocator: StandardMemoryAllocator,
    pub(crate) device: Arc<MemoryDevice>,
    pub(crate) sim: Sim,
    pub(crate) margin: u64,
    /// The ids of the bump pools made.
    pub(crate) bump_pools: Vec<usize>,
    pub(crate) next_pool: usize,
    /// Whether the driver may fail now (the errors of a failed `vkAllocateMemory` or
    /// `vkMapMemory` are then expected).
    pub(crate) faults: bool,
    /// The bytes of each heap that the simulated driver says other processes use.
    pub(crate) other_usage: Vec<u64>,
    pub(crate) next_uid: u64,
    pub(crate) step: usize,
    /// Counters of what the walk did, for the summary.
    pub(crate) done: HashMap<String, u64>,
}

impl World {
    /// A walk with debug margins of `margin` bytes and a 1 KiB granularity.
    pub(crate) fn new(margin: u64) -> Self {
        Self::with(margin, 1024)
    }

    /// A walk with debug margins of `margin` bytes and a buffer-image granularity of
    /// `granularity` bytes.
    pub(crate) fn with(margin: u64, granularity: u64) -> Self {
        let sim = Sim::with_features(
            layout_with(granularity),
            support::SimFeatures {
                memory_budget: true,
                memory_priority: true,
                ..Default::default()
            },
        );
        let device = sim.memory_device_claimed();
        let heaps = sim.state.layout.heaps.len();
        let allocator = StandardMemoryAllocator::new(
            device.clone(),
            GenericMemoryAllocatorCreateInfo {
                debug: DebugOptions {
                    margin,
                    // Pools are dropped with their allocations alive on purpose.
                    leak_check: LeakCheck::Off,
                    ..Default::default()
                },
                ..Default::default()
            },
        )
        .unwrap();
        Self {
            sim,
            device,
            allocator,
            margin,
            pools: Vec::new(),
            bump_pools: Vec::new(),
            next_pool: 0,
            faults: false,
            other_usage: vec![0; heaps],
            live: Vec::new(),
            next_uid: 0,
            step: 0,
            done: HashMap::new(),
        }
    }

    pub(crate) fn count(&mut self, what: impl Into<String>) {
        *self.done.entry(what.into()).or_default() += 1;
    }

    pub(crate) fn all_types(&self) -> u32 {
        self.device.memory_properties().all_types_mask()
    }

    pub(crate) fn type_count(&self) -> u32 {
        self.all_types().count_ones()
    }

    pub(crate) fn step(&mut self, op: u8, seed: u64) {
        let mut rng = Rng(seed);
        if std::env::var_os("API_WALK_TRACE").is_some() {
            eprintln!(
                "step {}: op {} seed {seed:#x}: {} live",
                self.step,
                op % 16,
                self.live.len()
            );
        }
        match op % 16 {
            0..=5 => self.allocate(&mut rng),
            6 | 7 => self.free(&mut rng),
            8 | 9 => self.access(&mut rng),
            10 => self.set_meta(&mut rng),
            11 => self.create_pool(&mut rng),
            12 => self.drop_or_rename_pool(&mut rng),
            13 => self.observe(&mut rng),
            14 => self.defragment(&mut rng),
            _ if seed % 2 == 0 => self.bad_requirements(&mut rng),
            _ => self.with_faults(&mut rng),
        }
        self.check();
        self.step += 1;
    }
}
