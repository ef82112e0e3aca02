//! Random walks over the whole safe API on the real driver (simulated memory layout, validation
//! layer on), checked against a model after every step.
//!
//! One allocator and a few custom pools (every suballocator, random configurations, some of
//! them invalid) take a random sequence of operations: allocations through every entry point
//! (`allocate`, `allocate_desc`, `allocate_pages`, `allocate_from_type`, `allocate_dedicated`)
//! with sizes, alignments, memory type bits, usages, preferences, strategies, priorities,
//! names, user data and minimum alignments good and bad; frees in random order; host accesses
//! at random offsets and lengths, out of bounds included; names and user data set; pools made,
//! renamed and dropped with their allocations alive; statistics, snapshots, budgets, both JSON
//! dumps, the SVG map, leak reports and corruption checks at random points; defragmentations
//! whose moves are completed (after a host copy), skipped, left open, completed with the wrong
//! allocation, whose sources are freed between passes, and that are dropped midway.
//!
//! After every step: each error is one the operation documents for its input; every live
//! allocation's bytes read back as written; the statistics count the model's live allocations
//! (per pool, per default vector, per heap and in total) and their bytes add up; no two live
//! allocations of one memory object overlap; every heap's budget usage is the driver's count
//! of the heap's memory; the simulated driver holds exactly the memory objects the snapshot
//! lists. At the end, with everything dropped, the leak report is empty and every memory object
//! is freed.
//!
//! The walks are proptest cases (a list of `(operation, seed)` pairs each; `PROPTEST_CASES` for
//! more than the default 8), so a failure shrinks to a short list; the named regressions at the
//! end replay such lists.

mod common;
mod support;

use ash::vk;
use ash::vk::Handle;
use ash_memory::allocator::defrag::{DefragmentationError, MoveId};
use ash_memory::*;
use proptest::prelude::*;
use std::collections::HashMap;
use std::sync::Arc;
use support::{check_triples, GpuLayout, Rng, Sim, KIB, MIB};

use vk::MemoryPropertyFlags as F;

/// Slot size of the slot-allocator pools.
const SLOT: u64 = 4 * KIB;
/// The most bytes of an allocation the model keeps a copy of (and checks).
const SHADOW: u64 = 16 * KIB;

/// The simulated GPU: device-local, host-coherent, host-cached non-coherent and a small BAR
/// heap, on small heaps so that large requests fail without reaching the real driver.
fn layout() -> GpuLayout {
    GpuLayout {
        name: "api-walk",
        types: vec![
            (F::DEVICE_LOCAL, 0),
            (F::HOST_VISIBLE | F::HOST_COHERENT, 1),
            (F::HOST_VISIBLE | F::HOST_CACHED, 1),
            (F::DEVICE_LOCAL | F::HOST_VISIBLE | F::HOST_COHERENT, 2),
        ],
        heaps: vec![(96 * MIB, true), (64 * MIB, false), (16 * MIB, true)],
        buffer_image_granularity: 1024,
        non_coherent_atom_size: 256,
        max_memory_allocation_count: 4096,
        optimal_images_device_local_only: false,
    }
}

/// A custom pool of any suballocator.
enum AnyPool {
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
    fn api(&self) -> &dyn MemoryAllocator {
        each_pool!(self, p => p)
    }
    fn name(&self) -> Arc<str> {
        each_pool!(self, p => p.name())
    }
    fn set_name(&self, name: Option<Arc<str>>) {
        each_pool!(self, p => p.set_name(name))
    }
    fn memory_type_index(&self) -> u32 {
        each_pool!(self, p => p.memory_type_index())
    }
    fn block_size(&self) -> u64 {
        each_pool!(self, p => p.block_size())
    }
    fn block_count(&self) -> usize {
        each_pool!(self, p => p.block_count())
    }
    fn block_count_limits(&self) -> (usize, usize) {
        each_pool!(self, p => p.block_count_limits())
    }
    fn report_leaks(&self) -> Vec<LeakedAllocation> {
        each_pool!(self, p => p.report_leaks())
    }
    fn check_corruption(&self) -> bool {
        each_pool!(self, p => p.check_corruption().is_ok())
    }
}

/// Where an allocation came from: the allocator's default vectors or a pool (by its id).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Source {
    Default,
    Pool(usize),
}

/// One live allocation of the model.
struct Live {
    uid: u64,
    alloc: MemoryAlloc,
    source: Source,
    /// The alignment its offset must have.
    alignment: u64,
    /// The requested size.
    requested: u64,
    /// What the first `SHADOW` bytes hold, for host-visible memory.
    shadow: Option<Vec<u8>>,
    name: Option<Arc<str>>,
    user: Option<u64>,
}

struct PoolEntry {
    id: usize,
    pool: AnyPool,
    name: Arc<str>,
    min_alignment: u64,
}

/// The walk's state. Fields drop in order: allocations, pools, the allocator, then the
/// simulated driver.
struct World {
    live: Vec<Live>,
    pools: Vec<PoolEntry>,
    allocator: StandardMemoryAllocator,
    device: Arc<MemoryDevice>,
    sim: Sim,
    margin: u64,
    /// Pools dropped with allocations alive.
    orphaned: Vec<usize>,
    /// The ids of the bump pools made.
    bump_pools: Vec<usize>,
    next_pool: usize,
    /// Whether the driver may fail now (the errors of a failed `vkAllocateMemory` or
    /// `vkMapMemory` are then expected).
    faults: bool,
    /// The bytes of each heap that the simulated driver says other processes use.
    other_usage: Vec<u64>,
    next_uid: u64,
    step: usize,
    /// Counters of what the walk did, for the summary.
    done: HashMap<String, u64>,
}

const SIZES: [u64; 4] = [
    0,
    u64::MAX,
    DeviceLayout::MAX_SIZE,
    DeviceLayout::MAX_SIZE + 1,
];

fn pick_size(rng: &mut Rng) -> u64 {
    if rng.below(3) != 0 {
        let max = if rng.below(4) == 0 {
            256 * KIB
        } else {
            4 * KIB
        };
        return 1 + rng.below(max);
    }
    match rng.below(20) {
        0 => *rng.pick(&SIZES),
        1 => 1,
        2 => 1 << rng.range(20, 45),
        3 => 2 * MIB + rng.below(6 * MIB),
        4..=9 => 1 + rng.below(4 * KIB),
        _ => 1 + rng.below(256 * KIB),
    }
}

fn pick_alignment(rng: &mut Rng) -> u64 {
    if rng.below(3) != 0 {
        return 1 << rng.below(9);
    }
    match rng.below(16) {
        0 => 0,
        1 => 3 + 2 * rng.below(100),
        2 => 1 << 63,
        3 => u64::MAX,
        4 => 1 << rng.range(20, 40),
        _ => 1 << rng.below(13),
    }
}

fn pick_bits(rng: &mut Rng, all: u32) -> u32 {
    match rng.below(16) {
        0 => 0,
        1 => 1 << rng.range(all.count_ones() as u64, 32),
        2 => u32::MAX,
        3 => rng.next() as u32,
        4 => 1 << rng.below(all.count_ones() as u64),
        _ => all,
    }
}

fn pick_host_access(rng: &mut Rng) -> HostAccess {
    *rng.pick(&[
        HostAccess::NoAccess,
        HostAccess::SequentialWrite,
        HostAccess::Random,
        HostAccess::SequentialWriteOrTransfer,
        HostAccess::RandomOrTransfer,
    ])
}

fn pick_create_info(rng: &mut Rng) -> (AllocationCreateInfo, Option<u64>) {
    let usage = match rng.below(12) {
        0 => MemoryUsage::DeviceOnly,
        1..=4 => MemoryUsage::Upload,
        5 => MemoryUsage::Download,
        6 | 7 => MemoryUsage::Auto(pick_host_access(rng)),
        8 => MemoryUsage::AutoPreferDevice(pick_host_access(rng)),
        9 => MemoryUsage::AutoPreferHost(pick_host_access(rng)),
        _ => MemoryUsage::Custom(MemoryTypeFilter {
            required_flags: F::from_raw(rng.next() as u32 & 0x1f),
            preferred_flags: F::from_raw(rng.next() as u32 & 0x1f),
            not_preferred_flags: F::from_raw(rng.next() as u32 & 0x1f),
        }),
    };
    let resource_usage = match rng.below(3) {
        0 => ResourceUsage::Unknown,
        1 => ResourceUsage::Buffer(vk::BufferUsageFlags::from_raw(rng.next() as u32 & 0x1ff)),
        _ => ResourceUsage::Image(vk::ImageUsageFlags::from_raw(rng.next() as u32 & 0xff)),
    };
    let user = (rng.below(3) == 0).then(|| rng.next());
    let info = AllocationCreateInfo {
        usage,
        resource_usage,
        allocate_preference: *rng.pick(&[
            MemoryAllocatePreference::Auto,
            MemoryAllocatePreference::Auto,
            MemoryAllocatePreference::NeverAllocate,
            MemoryAllocatePreference::AlwaysAllocate,
        ]),
        name: (rng.below(2) == 0).then(|| format!("a{}", rng.below(1000)).into()),
        priority: match rng.below(16) {
            0 => Some(f32::NAN),
            1 => Some(-0.5),
            2 => Some(1.5),
            3 | 4 => Some(rng.below(101) as f32 / 100.0),
            _ => None,
        },
        within_budget: rng.below(8) == 0,
        user_data: user.map(|u| Arc::new(u) as Arc<dyn UserData>),
        min_alignment: DeviceAlignment::from_log2(rng.below(12) as u32 * (rng.below(3) as u32 / 2))
            .unwrap(),
        strategy: *rng.pick(&[
            AllocationStrategy::Default,
            AllocationStrategy::MinMemory,
            AllocationStrategy::MinTime,
            AllocationStrategy::MinOffset,
        ]),
        ..Default::default()
    };
    (info, user)
}

fn priority_ok(info: &AllocationCreateInfo) -> bool {
    info.priority.is_none_or(|p| (0.0..=1.0).contains(&p))
}

/// An error the allocation entry points document for bad input or exhausted memory: never
/// a raw Vulkan error, a failed map or a bind error unless the driver fails (`faults`).
fn documented(e: &AllocationError, faults: bool) -> bool {
    use AllocationError::*;
    let driver = matches!(
        e,
        OutOfHostMemory | MapFailed(vk::Result::ERROR_MEMORY_MAP_FAILED)
    );
    (faults && driver)
        || matches!(
            e,
            OutOfDeviceMemory
                | NoMemoryTypeBits
                | MemoryTypeBitsOutOfRange { .. }
                | MemoryTypeIndexOutOfRange { .. }
                | NoSuitableMemoryType { .. }
                | MemoryTypeNotUsable { .. }
                | SizeExceedsHeap { .. }
                | OutOfPoolMemory
                | DedicatedAllocationRequired
                | BlockSizeExceeded { .. }
                | SuballocatorBlockSizeExceeded
                | PoolMemoryTypeNotAllowed { .. }
                | PoolFull { .. }
                | Layout(_)
                | InvalidPriority(_)
                | BudgetExceeded(_)
        )
}

impl World {
    fn new(margin: u64) -> Self {
        let sim = Sim::with_features(
            layout(),
            support::SimFeatures {
                memory_budget: true,
                memory_priority: true,
                ..Default::default()
            },
        );
        let device = sim.memory_device_claimed();
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
            orphaned: Vec::new(),
            bump_pools: Vec::new(),
            next_pool: 0,
            faults: false,
            other_usage: vec![0; layout().heaps.len()],
            live: Vec::new(),
            next_uid: 0,
            step: 0,
            done: HashMap::new(),
        }
    }

    fn count(&mut self, what: impl Into<String>) {
        *self.done.entry(what.into()).or_default() += 1;
    }

    fn all_types(&self) -> u32 {
        self.device.memory_properties().all_types_mask()
    }

    fn type_count(&self) -> u32 {
        self.all_types().count_ones()
    }

    fn step(&mut self, op: u8, seed: u64) {
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

    /// Requirements from raw `VkMemoryRequirements`: an error exactly when the layout is not
    /// one.
    fn bad_requirements(&mut self, rng: &mut Rng) {
        let (size, alignment) = (pick_size(rng), pick_alignment(rng));
        let raw = vk::MemoryRequirements {
            size,
            alignment,
            memory_type_bits: rng.next() as u32,
        };
        let expected = DeviceLayout::from_size_alignment(size, alignment);
        match (AllocationRequirements::from_vk(raw), expected) {
            (Ok(r), Ok(l)) => assert_eq!(r.layout, l),
            (Err(AllocationError::Layout(e)), Err(l)) => assert_eq!(e, l),
            (got, want) => panic!("from_vk({raw:?}) = {got:?}, layout {want:?}"),
        }
        self.count("requirements");
    }

    /// Which allocator serves a request: the default one or a live pool.
    fn pick_target(&self, rng: &mut Rng) -> Option<usize> {
        if self.pools.is_empty() || rng.below(3) == 0 {
            None
        } else {
            Some(rng.below(self.pools.len() as u64) as usize)
        }
    }

    fn allocate(&mut self, rng: &mut Rng) {
        let target = self.pick_target(rng);
        let (size, alignment) = (pick_size(rng), pick_alignment(rng));
        let bits = pick_bits(rng, self.all_types());
        let ty = *rng.pick(&[
            AllocationType::Linear,
            AllocationType::Linear,
            AllocationType::NonLinear,
            AllocationType::Unknown,
        ]);
        let (info, user) = pick_create_info(rng);
        let layout = DeviceLayout::from_size_alignment(size, alignment);
        let (api, source, pool_align, pool_type): (&dyn MemoryAllocator, Source, u64, Option<u32>) =
            match target {
                None => (&self.allocator, Source::Default, 1, None),
                Some(i) => {
                    let p = &self.pools[i];
                    (
                        p.pool.api(),
                        Source::Pool(p.id),
                        p.min_alignment,
                        Some(p.pool.memory_type_index()),
                    )
                }
            };
        let via = rng.below(5);
        let mut what = "allocate";
        let result: Result<Vec<MemoryAlloc>, AllocationError> = match layout {
            Err(e) => {
                // The raw requirements are refused before any allocation.
                let raw = vk::MemoryRequirements {
                    size,
                    alignment,
                    memory_type_bits: bits,
                };
                assert_eq!(
                    AllocationRequirements::from_vk(raw).unwrap_err(),
                    AllocationError::Layout(e)
                );
                self.count("refused layout");
                return;
            }
            Ok(layout) => {
                let requirements = AllocationRequirements {
                    layout,
                    memory_type_bits: bits,
                    prefers_dedicated_allocation: rng.below(8) == 0,
                    requires_dedicated_allocation: rng.below(16) == 0,
                };
                match via {
                    0 | 1 => api.allocate(requirements, ty, &info, None).map(|a| vec![a]),
                    2 => {
                        what = "allocate_desc";
                        let mut desc = AllocationDesc::new(requirements);
                        desc.allocation_type = ty;
                        desc.create_info = info.clone();
                        api.allocate_desc(&desc).map(|a| vec![a])
                    }
                    3 => {
                        what = "allocate_pages";
                        let n = rng.below(4) as usize;
                        let r = api.allocate_pages(requirements, ty, &info, n);
                        if let Ok(v) = &r {
                            assert_eq!(v.len(), n, "allocate_pages made the wrong count");
                        }
                        r
                    }
                    _ => {
                        let index = rng.below(self.type_count() as u64 + 2) as u32;
                        if rng.below(2) == 0 {
                            what = "allocate_from_type";
                            api.allocate_from_type(index, layout, ty, &info)
                                .map(|a| vec![a])
                        } else {
                            what = "allocate_dedicated";
                            api.allocate_dedicated(index, layout.size(), None, &info)
                                .map(|a| vec![a])
                        }
                    }
                }
            }
        };
        let allocs = match result {
            Ok(v) => v,
            Err(e) => {
                assert!(
                    documented(&e, self.faults),
                    "step {}: {what} of {size} at {alignment} (bits {bits:#x}, {info:?}): \
                     undocumented error {e:?}",
                    self.step
                );
                if let AllocationError::BudgetExceeded(b) = &e {
                    assert!(info.within_budget, "step {}: {b:?} unasked", self.step);
                    assert!(
                        b.usage.saturating_add(b.size) > b.budget,
                        "step {}: {b:?} is within the budget",
                        self.step
                    );
                }
                if !priority_ok(&info) {
                    self.count("refused priority");
                }
                let variant = format!("{e:?}");
                let variant = variant.split([' ', '(', '{']).next().unwrap_or("");
                self.count(format!("error {variant}"));
                return;
            }
        };
        assert!(
            priority_ok(&info) || allocs.is_empty(),
            "step {}: {what} with priority {:?} succeeded",
            self.step,
            info.priority
        );
        let explicit_type = matches!(what, "allocate_from_type" | "allocate_dedicated");
        for mut a in allocs {
            let t = a.memory_type_index();
            if !explicit_type {
                assert_ne!(bits & (1 << t), 0, "{what}: type {t} outside {bits:#x}");
            }
            if let Some(pt) = pool_type {
                assert_eq!(t, pt, "{what}: a pool allocation of another type");
            }
            assert!(a.size() >= size, "{what}: {} bytes for {size}", a.size());
            let alignment = if what == "allocate_dedicated" {
                1
            } else {
                alignment
                    .max(info.min_alignment.as_devicesize())
                    .max(pool_align)
            };
            assert_eq!(a.name(), info.name.as_deref());
            assert_eq!(a.user_data_as::<u64>().copied(), user);
            let host_visible = a.memory_property_flags().contains(F::HOST_VISIBLE);
            assert_eq!(host_visible, a.mapped_ptr().is_some());
            if matches!(info.usage, MemoryUsage::Upload | MemoryUsage::Download)
                && !explicit_type
                && source == Source::Default
            {
                assert!(
                    host_visible,
                    "step {}: {what}: {:?} in memory type {t} the host cannot see (bits {bits:#x}, \
                     {size} at {alignment}, {ty:?}, {info:?})",
                    self.step,
                    info.usage
                );
            }
            let shadow = host_visible.then(|| {
                let bytes = support::pattern(rng.next(), a.size().min(SHADOW) as usize);
                a.write(0, &bytes).unwrap();
                bytes
            });
            self.next_uid += 1;
            self.live.push(Live {
                uid: self.next_uid,
                alloc: a,
                source,
                alignment,
                requested: size,
                shadow,
                name: info.name.clone(),
                user,
            });
            self.count(what);
        }
    }

    /// A host-visible allocation of up to a third of a block in `target`, filled with a pattern.
    fn plain_allocation(&mut self, target: Source, rng: &mut Rng) {
        let api: &dyn MemoryAllocator = match target {
            Source::Default => &self.allocator,
            Source::Pool(id) => match self.pools.iter().find(|p| p.id == id) {
                Some(p) => p.pool.api(),
                None => return,
            },
        };
        let pool_align = match target {
            Source::Default => 1,
            Source::Pool(id) => {
                self.pools
                    .iter()
                    .find(|p| p.id == id)
                    .unwrap()
                    .min_alignment
            }
        };
        // Up to a third of a block, so that a few blocks fill.
        let block = match target {
            Source::Default => self.allocator.block_size(1).unwrap_or(MIB),
            Source::Pool(id) => self
                .pools
                .iter()
                .find(|p| p.id == id)
                .unwrap()
                .pool
                .block_size(),
        };
        let size = 1 + rng.below((block / 3).clamp(1, 4 * MIB));
        let alignment = 1 << rng.below(9);
        let requirements = AllocationRequirements {
            layout: DeviceLayout::from_size_alignment(size, alignment).unwrap(),
            memory_type_bits: self.all_types(),
            prefers_dedicated_allocation: false,
            requires_dedicated_allocation: false,
        };
        let info = AllocationCreateInfo {
            usage: MemoryUsage::Upload,
            ..Default::default()
        };
        let mut a = match api.allocate(requirements, AllocationType::Linear, &info, None) {
            Ok(a) => a,
            Err(e) => {
                assert!(documented(&e, self.faults), "step {}: {e:?}", self.step);
                return;
            }
        };
        let shadow = a.mapped_ptr().is_some().then(|| {
            let bytes = support::pattern(rng.next(), a.size().min(SHADOW) as usize);
            a.write(0, &bytes).unwrap();
            bytes
        });
        self.next_uid += 1;
        self.live.push(Live {
            uid: self.next_uid,
            alloc: a,
            source: target,
            alignment: alignment.max(pool_align),
            requested: size,
            shadow,
            name: None,
            user: None,
        });
        self.count("plain allocation");
    }

    fn pick_live(&self, rng: &mut Rng) -> Option<usize> {
        (!self.live.is_empty()).then(|| rng.below(self.live.len() as u64) as usize)
    }

    fn free(&mut self, rng: &mut Rng) {
        for _ in 0..1 + rng.below(2) {
            if let Some(i) = self.pick_live(rng) {
                self.live.swap_remove(i);
                self.count("free");
            }
        }
    }

    /// An allocation, a pool or a defragmentation while the driver fails: one of the next
    /// few `vkAllocateMemory` (out of device or host memory) or `vkMapMemory` calls fails.
    /// The errors are the documented ones and the books stay right (checked after the step).
    fn with_faults(&mut self, rng: &mut Rng) {
        let result = *rng.pick(&[
            vk::Result::ERROR_OUT_OF_DEVICE_MEMORY,
            vk::Result::ERROR_OUT_OF_HOST_MEMORY,
        ]);
        let map = rng.below(3) == 0;
        self.sim.state.reset_counters();
        self.sim.state.set_faults(support::Faults {
            allocate_at: (!map).then(|| (1 + rng.below(3), result)),
            allocate_more: rng.below(3),
            map_at: map.then(|| 1 + rng.below(2)),
        });
        self.faults = true;
        match rng.below(4) {
            0 => self.create_pool(rng),
            1 => self.defragment(rng),
            _ => {
                for _ in 0..1 + rng.below(4) {
                    self.allocate(rng);
                }
            }
        }
        self.sim.state.set_faults(support::Faults::default());
        self.faults = false;
        self.count("faulty step");
    }

    /// A typed access: a value or a slice of values at any offset, or the mapped bytes as
    /// values (which need the allocation's address aligned for them).
    fn typed_access(&mut self, i: usize, rng: &mut Rng) {
        let step = self.step;
        let l = &mut self.live[i];
        let size = l.alloc.size();
        let offset = match rng.below(4) {
            0 => size.saturating_sub(rng.below(16)),
            _ => rng.below(size.min(SHADOW)),
        };
        let fits = offset.checked_add(8).is_some_and(|end| end <= size);
        match rng.below(3) {
            0 => {
                let v = rng.next();
                let r = l.alloc.write_value(offset, v);
                match (&r, l.shadow.as_mut()) {
                    (Ok(()), Some(shadow)) => {
                        for (k, b) in v.to_ne_bytes().into_iter().enumerate() {
                            if let Some(x) = shadow.get_mut(offset as usize + k) {
                                *x = b;
                            }
                        }
                    }
                    (Ok(()), None) => panic!("step {step}: a value written to hidden memory"),
                    (Err(MemoryAccessError::OutOfBounds { .. }), _) => assert!(!fits),
                    (Err(MemoryAccessError::NotHostVisible { .. }), None) => {}
                    (Err(e), _) => panic!("step {step}: write_value at {offset}: {e:?}"),
                }
            }
            1 => {
                let r = l.alloc.read_value::<u64>(offset);
                match (&r, l.shadow.as_ref()) {
                    (Ok(v), Some(shadow)) => {
                        assert!(fits);
                        for (k, b) in v.to_ne_bytes().into_iter().enumerate() {
                            if let Some(x) = shadow.get(offset as usize + k) {
                                assert_eq!(*x, b, "step {step}: read_value at {offset}");
                            }
                        }
                    }
                    (Ok(_), None) => panic!("step {step}: a value read from hidden memory"),
                    (Err(MemoryAccessError::OutOfBounds { .. }), _) => assert!(!fits),
                    (Err(MemoryAccessError::NotHostVisible { .. }), None) => {}
                    (Err(e), _) => panic!("step {step}: read_value at {offset}: {e:?}"),
                }
            }
            _ => {
                let address = l.alloc.mapped_ptr().map(|p| p.as_ptr() as usize);
                let r = l.alloc.mapped_slice_of::<u32>();
                match (r, address, l.shadow.as_ref()) {
                    (Ok(values), Some(a), Some(shadow)) => {
                        assert_eq!(a % 4, 0);
                        assert_eq!(values.len() as u64, size / 4);
                        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_ne_bytes()).collect();
                        let n = bytes.len().min(shadow.len()) & !3;
                        // Coherent or not, nothing else wrote: the mapping holds what was
                        // written.
                        assert!(bytes[..n] == shadow[..n], "step {step}: mapped_slice_of");
                    }
                    (Err(MemoryAccessError::Misaligned { .. }), Some(a), Some(_)) => {
                        assert_ne!(a % 4, 0)
                    }
                    (Err(MemoryAccessError::NotHostVisible { .. }), None, None) => {}
                    (r, a, _) => panic!("step {step}: mapped_slice_of at {a:?}: {r:?}"),
                }
            }
        }
        self.count("typed access");
    }

    /// A write, read, flush or invalidate at a random offset and length, in bounds or not.
    fn access(&mut self, rng: &mut Rng) {
        let Some(i) = self.pick_live(rng) else { return };
        if rng.below(3) == 0 {
            return self.typed_access(i, rng);
        }
        let l = &mut self.live[i];
        let size = l.alloc.size();
        let offset = match rng.below(6) {
            0 => size,
            1 => u64::MAX - rng.below(8),
            2 => size.saturating_sub(rng.below(64)),
            _ => rng.below(size.min(SHADOW)),
        };
        let len = match rng.below(6) {
            0 => 0,
            1 => u64::MAX,
            2 => size + 1 - size.min(offset).min(size),
            _ => rng.below(2 * KIB),
        };
        let in_bounds = offset.checked_add(len).is_some_and(|end| end <= size);
        let visible = l.shadow.is_some();
        let kind = rng.below(4);
        let result = match kind {
            0 | 1 if len > 64 * KIB => return,
            0 => {
                let data = support::pattern(rng.next(), len as usize);
                let r = l.alloc.write(offset, &data);
                if r.is_ok() {
                    let shadow = l.shadow.as_mut().unwrap();
                    let end = (offset + len).min(shadow.len() as u64);
                    if offset < end {
                        shadow[offset as usize..end as usize]
                            .copy_from_slice(&data[..(end - offset) as usize]);
                    }
                }
                r
            }
            1 => {
                let mut out = vec![0; len as usize];
                let r = l.alloc.read(offset, &mut out);
                if r.is_ok() {
                    let shadow = l.shadow.as_ref().unwrap();
                    let end = (offset + len).min(shadow.len() as u64);
                    if offset < end {
                        assert!(
                            out[..(end - offset) as usize] == shadow[offset as usize..end as usize],
                            "step {}: read {offset}+{len} differs from what was written",
                            self.step
                        );
                    }
                }
                r
            }
            2 => l.alloc.flush(offset, len),
            _ => l.alloc.invalidate(offset, len),
        };
        match result {
            Ok(()) => assert!(
                in_bounds && (visible || kind >= 2),
                "step {}: access {kind} {offset}+{len} of {size} bytes (visible {visible})",
                self.step
            ),
            Err(MemoryAccessError::OutOfBounds { .. }) => assert!(!in_bounds),
            Err(MemoryAccessError::NotHostVisible { .. }) => {
                assert!(!visible && kind < 2 && in_bounds)
            }
            Err(e) => panic!("step {}: access {kind} {offset}+{len}: {e:?}", self.step),
        }
        self.count(if in_bounds {
            "access"
        } else {
            "access out of bounds"
        });
    }

    fn set_meta(&mut self, rng: &mut Rng) {
        let Some(i) = self.pick_live(rng) else { return };
        let l = &mut self.live[i];
        if rng.below(2) == 0 {
            let name: Option<Arc<str>> =
                (rng.below(3) != 0).then(|| format!("n{}", rng.below(99)).into());
            l.alloc.set_name(name.clone());
            l.name = name;
        } else {
            let user = (rng.below(3) != 0).then(|| rng.next());
            l.alloc
                .set_user_data(user.map(|u| Arc::new(u) as Arc<dyn UserData>));
            l.user = user;
        }
        assert_eq!(l.alloc.name(), l.name.as_deref());
        assert_eq!(l.alloc.user_data_as::<u64>().copied(), l.user);
        self.count("set meta");
    }

    fn create_pool(&mut self, rng: &mut Rng) {
        if self.pools.len() >= 4 {
            return;
        }
        let types = self.type_count() as u64;
        let kind = rng.below(5);
        let wild = rng.below(3) == 0;
        let block_size = match if wild { rng.below(8) } else { 3 } {
            0 => 0,
            1 => 1 << 40,
            2 => 3 * KIB + rng.below(KIB),
            _ => *rng.pick(&[64 * KIB, 256 * KIB, MIB, 2 * MIB]),
        };
        let id = self.next_pool;
        let name: Arc<str> = format!("pool{id}").into();
        let min_alignment =
            DeviceAlignment::from_log2(rng.below(10) as u32 * (rng.below(2) as u32)).unwrap();
        let info = PoolCreateInfo {
            name: Some(name.clone()),
            memory_type: match rng.below(4) + 2 * u64::from(!wild) {
                0 => PoolMemoryType::Index(rng.below(types + 2) as u32),
                1 => PoolMemoryType::Find {
                    memory_type_bits: pick_bits(rng, self.all_types()),
                    usage: MemoryUsage::DeviceOnly,
                },
                _ => PoolMemoryType::Find {
                    memory_type_bits: u32::MAX,
                    usage: *rng.pick(&[MemoryUsage::Upload, MemoryUsage::Download]),
                },
            },
            block_size,
            min_block_count: rng.below(3) as usize,
            max_block_count: match rng.below(4) + u64::from(!wild) {
                0 => rng.below(3) as usize,
                1 => usize::MAX,
                _ => 2 + rng.below(4) as usize,
            },
            priority: if wild && rng.below(3) == 0 {
                f32::NAN
            } else {
                0.5
            },
            block_arenas: if wild {
                *rng.pick(&[None, Some(0), Some(1), Some(2), Some(64)])
            } else {
                *rng.pick(&[None, Some(1), Some(2)])
            },
            min_alignment,
            strategy: *rng.pick(&[
                AllocationStrategy::Default,
                AllocationStrategy::MinMemory,
                AllocationStrategy::MinOffset,
            ]),
            ..Default::default()
        };
        let a = &self.allocator;
        let made = match kind {
            0 => a.create_pool(&info).map(AnyPool::FreeList),
            1 => a.create_pool(&info).map(AnyPool::Buddy),
            2 => a.create_pool(&info).map(AnyPool::Bump),
            3 => a.create_pool(&info).map(AnyPool::Ring),
            _ => a.create_pool(&info).map(AnyPool::Slot),
        };
        match made {
            Ok(pool) => {
                assert_eq!(pool.name(), name);
                let (min, max) = pool.block_count_limits();
                assert_eq!((min, max), (info.min_block_count, info.max_block_count));
                assert_eq!(pool.block_count(), min, "a new pool has its minimum blocks");
                if block_size != 0 {
                    assert_eq!(pool.block_size(), block_size);
                }
                self.next_pool += 1;
                if matches!(pool, AnyPool::Bump(_)) {
                    self.bump_pools.push(id);
                }
                self.pools.push(PoolEntry {
                    id,
                    pool,
                    name,
                    min_alignment: min_alignment.as_devicesize(),
                });
                self.count("pool made");
            }
            Err(e) => {
                use AllocationError::*;
                assert!(
                    matches!(
                        e,
                        Config(_)
                            | NoSuitableMemoryType { .. }
                            | MemoryTypeIndexOutOfRange { .. }
                            | MemoryTypeNotUsable { .. }
                            | MemoryTypeBitsOutOfRange { .. }
                            | NoMemoryTypeBits
                            | SizeExceedsHeap { .. }
                            | OutOfDeviceMemory
                            | InvalidPriority(_)
                    ) || documented(&e, self.faults),
                    "step {}: create_pool({info:?}) kind {kind}: {e:?}",
                    self.step
                );
                let variant = format!("{e:?}");
                let variant = variant.split([' ', '(', '{']).next().unwrap_or("");
                self.count(format!("pool refused {variant}"));
            }
        }
    }

    fn drop_or_rename_pool(&mut self, rng: &mut Rng) {
        if self.pools.is_empty() {
            return;
        }
        let i = rng.below(self.pools.len() as u64) as usize;
        if rng.below(2) == 0 {
            let p = &mut self.pools[i];
            if rng.below(4) == 0 {
                // Back to a name of the form `pool N`.
                p.pool.set_name(None);
                assert!(p.pool.name().starts_with("pool "), "{}", p.pool.name());
            } else {
                let name: Arc<str> = format!("pool{}-renamed{}", p.id, rng.below(9)).into();
                p.pool.set_name(Some(name.clone()));
                assert_eq!(p.pool.name(), name);
            }
            p.name = p.pool.name();
            self.count("pool renamed");
        } else {
            self.check_leaks(&self.pools[i].pool.report_leaks(), Some(&self.pools[i]));
            if std::env::var_os("API_WALK_NO_ORPHANS").is_some()
                && self
                    .live
                    .iter()
                    .any(|l| l.source == Source::Pool(self.pools[i].id))
            {
                return;
            }
            let p = self.pools.swap_remove(i);
            let alive = self
                .live
                .iter()
                .filter(|l| l.source == Source::Pool(p.id))
                .count();
            if alive > 0 {
                self.orphaned.push(p.id);
                self.count("pool dropped with allocations");
            }
            drop(p);
            self.count("pool dropped");
        }
    }

    /// The dumps, the SVG, leak reports and corruption checks at a random point; sometimes
    /// new budgets and other processes' usage of the heaps first.
    fn observe(&mut self, rng: &mut Rng) {
        if rng.below(3) == 0 {
            for (h, &(size, _)) in layout().heaps.iter().enumerate() {
                let budget = match rng.below(4) {
                    0 => size,
                    1 => 0,
                    _ => rng.below(size),
                };
                self.other_usage[h] = rng.below(size / 4);
                self.sim.state.set_heap_budget(h as u32, budget);
                self.sim
                    .state
                    .set_other_usage(h as u32, self.other_usage[h]);
            }
            self.count("budgets set");
        }
        let snap = self.allocator.snapshot();
        let json: serde_json::Value = serde_json::from_str(&snap.to_json()).unwrap();
        assert_eq!(
            json["total"]["allocations"].as_u64(),
            Some(self.live.len() as u64)
        );
        let vma: serde_json::Value =
            serde_json::from_str(&self.allocator.to_vma_json()).expect("VMA JSON parses");
        let mut allocations = 0;
        let mut count = |pool: &serde_json::Value| {
            for b in pool["Blocks"].as_object().unwrap().values() {
                allocations += b["Allocations"].as_u64().unwrap();
            }
            allocations += pool["DedicatedAllocations"].as_array().unwrap().len() as u64;
        };
        for p in vma["DefaultPools"].as_object().unwrap().values() {
            count(p);
        }
        for pools in vma["CustomPools"].as_object().unwrap().values() {
            for p in pools.as_array().unwrap() {
                count(p);
            }
        }
        assert_eq!(
            allocations,
            self.live.len() as u64,
            "allocations in VMA's dump"
        );
        if rng.below(4) == 0 {
            assert!(snap.to_svg().starts_with("<svg") || snap.to_svg().starts_with("<?xml"));
        }
        let leaks = self.allocator.report_leaks();
        self.check_leaks(&leaks, None);
        for p in &self.pools {
            self.check_leaks(&p.pool.report_leaks(), Some(p));
        }
        let margins = self.margin > 0;
        assert_eq!(self.allocator.check_corruption(u32::MAX).is_ok(), margins);
        for p in &self.pools {
            assert_eq!(p.pool.check_corruption(), margins);
        }
        self.count("observe");
    }

    /// A leak report (of the allocator, or of pool `pool`) against the live allocations:
    /// each lies in exactly one reported range, each reported range holds one at least, and
    /// a range of one allocation carries its name and user data. (A bump pool reports its
    /// used prefix as one range, see `Statistics`.)
    fn check_leaks(&self, leaks: &[LeakedAllocation], pool: Option<&PoolEntry>) {
        let step = self.step;
        let mine: Vec<&Live> = self
            .live
            .iter()
            .filter(|l| pool.is_none_or(|p| l.source == Source::Pool(p.id)))
            .collect();
        let holds = |k: &LeakedAllocation, l: &Live| {
            k.memory == l.alloc.memory().as_raw()
                && k.offset <= l.alloc.offset()
                && l.alloc.offset() + l.alloc.size() <= k.offset + k.size
        };
        for l in &mine {
            let n = leaks.iter().filter(|k| holds(k, l)).count();
            assert_eq!(
                n,
                1,
                "step {step}: leak reports of {:#x}+{}",
                l.alloc.memory().as_raw(),
                l.alloc.offset()
            );
        }
        for k in leaks {
            let inside: Vec<&&Live> = mine.iter().filter(|l| holds(k, l)).collect();
            assert!(!inside.is_empty(), "step {step}: a leak of nothing: {k:?}");
            if let [l] = inside[..] {
                if !self.is_bump(l.source) {
                    assert_eq!(k.name.as_deref(), l.name.as_deref(), "step {step}: {k:?}");
                    assert_eq!(
                        k.user_data.as_deref(),
                        l.user.map(|u| format!("{u:?}")).as_deref(),
                        "step {step}: {k:?}"
                    );
                    assert_eq!(k.dedicated, l.alloc.is_dedicated());
                    assert_eq!(k.memory_type_index, l.alloc.memory_type_index());
                }
            }
        }
    }

    fn is_bump(&self, source: Source) -> bool {
        matches!(source, Source::Pool(id) if self.bump_pools.contains(&id))
    }

    /// A defragmentation of the default vectors or of one pool.
    fn defragment(&mut self, rng: &mut Rng) {
        let info = DefragmentationInfo {
            algorithm: if rng.below(2) == 0 {
                DefragmentationAlgorithm::Fast
            } else {
                DefragmentationAlgorithm::Full
            },
            max_bytes_per_pass: if rng.below(2) == 0 {
                DeviceSize::MAX
            } else {
                rng.below(512 * KIB)
            },
            max_moves_per_pass: if rng.below(2) == 0 {
                usize::MAX
            } else {
                rng.below(6) as usize
            },
            ..Default::default()
        };
        match self.pick_target(rng) {
            None => {
                let d = self.allocator.defragmentation(&info);
                self.run_defrag(d, Source::Default, rng);
            }
            Some(i) => {
                let source = Source::Pool(self.pools[i].id);
                match &self.pools[i].pool {
                    AnyPool::FreeList(p) => {
                        let d = p.defragmentation(&info);
                        self.run_defrag(d, source, rng)
                    }
                    AnyPool::Buddy(p) => {
                        let d = p.defragmentation(&info);
                        self.run_defrag(d, source, rng)
                    }
                    AnyPool::Bump(p) => {
                        let d = p.defragmentation(&info);
                        self.run_defrag(d, source, rng)
                    }
                    AnyPool::Ring(p) => {
                        let d = p.defragmentation(&info);
                        self.run_defrag(d, source, rng)
                    }
                    AnyPool::Slot(p) => {
                        let d = p.defragmentation(&info);
                        self.run_defrag(d, source, rng)
                    }
                }
            }
        }
        self.count("defragmentation");
    }

    fn run_defrag<S: Suballocator + Send + 'static>(
        &mut self,
        mut defrag: Defragmentation<S>,
        target: Source,
        rng: &mut Rng,
    ) {
        // Some allocations in the target, every other one freed again: holes to fill.
        if rng.below(2) == 0 {
            let first = self.live.len();
            for _ in 0..4 + rng.below(12) {
                self.plain_allocation(target, rng);
            }
            let mut i = first;
            while i < self.live.len() {
                self.live.swap_remove(i);
                i += 1;
            }
        }
        // Registration id -> uid of the live allocation.
        let mut ids: HashMap<MoveId, u64> = HashMap::new();
        for l in &mut self.live {
            if rng.below(4) == 0 {
                continue;
            }
            let alignment = DeviceAlignment::new(l.alignment).unwrap();
            let result = defrag.add(&mut l.alloc, alignment);
            let ours = l.source == target && !l.alloc.is_dedicated();
            match result {
                Ok(id) => {
                    if rng.below(4) == 0 {
                        // Added again: the same id.
                        assert_eq!(defrag.add(&mut l.alloc, alignment), Ok(id));
                    }
                    self.done
                        .entry("registered".into())
                        .and_modify(|n| *n += 1)
                        .or_insert(1);
                    assert!(
                        ours,
                        "step {}: {:?} added to a defragmentation of {target:?}",
                        self.step, l.source
                    );
                    ids.insert(id, l.uid);
                }
                Err(DefragmentationError::Dedicated) => assert!(l.alloc.is_dedicated()),
                Err(DefragmentationError::NotHere) => assert!(
                    !ours,
                    "step {}: an allocation of {target:?} refused",
                    self.step
                ),
                Err(e) => panic!("add: {e:?}"),
            }
        }
        let passes = 1 + rng.below(6);
        for _ in 0..passes {
            let Some(mut pass) = defrag.next_pass() else {
                break;
            };
            let open: Vec<usize> = pass.moves().map(|m| m.index()).collect();
            self.count("defragmentation pass");
            for index in open {
                let (id, src_memory, src_offset, size) = {
                    let m = pass.get(index).unwrap();
                    (m.id(), m.source_memory(), m.source_offset(), m.size())
                };
                let uid = *ids.get(&id).expect("a move of an allocation never added");
                let Some(li) = self.live.iter().position(|l| l.uid == uid) else {
                    panic!("step {}: a move of a freed allocation", self.step);
                };
                assert_eq!(self.live[li].alloc.memory(), src_memory);
                assert_eq!(self.live[li].alloc.offset(), src_offset);
                match rng.below(8) {
                    0 => pass.skip(index).unwrap(),
                    1 => {} // left open
                    2 => {
                        // Completed with the wrong allocation: refused, nothing changes.
                        if let Some(other) = self.pick_live(rng).filter(|&o| o != li) {
                            let r = pass.complete(index, &mut self.live[other].alloc);
                            assert!(
                                matches!(r, Err(DefragmentationError::NotTheSource)),
                                "complete with the wrong allocation: {r:?}"
                            );
                        }
                        let r = pass.complete(index + 1000, &mut self.live[li].alloc);
                        assert_eq!(r, Err(DefragmentationError::NoSuchMove(index + 1000)));
                    }
                    _ => {
                        let l = &mut self.live[li];
                        if rng.below(4) == 0 {
                            // Renamed while it moves: the name as it is now goes along.
                            let name: Option<Arc<str>> = (rng.below(2) == 0)
                                .then(|| format!("moved{}", rng.below(9)).into());
                            l.alloc.set_name(name.clone());
                            l.name = name;
                        }
                        let dst = pass.get(index).unwrap().destination();
                        if let Some(ptr) = dst.mapped_ptr() {
                            let mut bytes = vec![0; size as usize];
                            l.alloc.read(0, &mut bytes).unwrap();
                            // SAFETY: `size` bytes inside the destination, which nothing else
                            // uses until the move is completed.
                            unsafe {
                                std::ptr::copy_nonoverlapping(
                                    bytes.as_ptr(),
                                    ptr.as_ptr(),
                                    bytes.len(),
                                )
                            };
                            dst.flush(0, size).unwrap();
                        }
                        pass.complete(index, &mut l.alloc).unwrap();
                        assert_eq!(l.alloc.name(), l.name.as_deref(), "the name moves along");
                        assert_eq!(l.alloc.user_data_as::<u64>().copied(), l.user);
                        self.count("move completed");
                    }
                }
            }
            match rng.below(5) {
                0 => drop(pass),
                _ => {
                    pass.end();
                }
            }
            // The application frees some between passes, and allocates.
            if rng.below(3) == 0 {
                let i = self.pick_live(rng);
                if let Some(i) = i {
                    self.live.swap_remove(i);
                    self.count("freed during defragmentation");
                }
            }
            if rng.below(3) == 0 {
                self.allocate(rng);
            }
        }
        if rng.below(3) == 0 {
            drop(defrag);
            self.count("defragmentation dropped");
        } else {
            defrag.finish();
        }
    }

    /// The invariants after every step.
    fn check(&self) {
        let step = self.step;
        let stats = self.allocator.statistics();
        let snap = self.allocator.snapshot();
        assert_eq!(
            snap.statistics, stats,
            "step {step}: snapshot and statistics"
        );
        assert_eq!(
            stats.total.allocation_count,
            self.live.len() as u64,
            "step {step}: allocations counted"
        );
        let total = &stats.total;
        assert_eq!(
            total.allocations.total + total.free_ranges.total,
            total.reserved_bytes,
            "step {step}: allocated and free bytes make the memory"
        );
        let live_bytes: u64 = self.live.iter().map(|l| l.alloc.size()).sum();
        assert!(
            total.allocations.total >= live_bytes,
            "step {step}: {total:?} < {live_bytes}"
        );
        // Per pool.
        for p in &self.pools {
            let mine: Vec<&Live> = self
                .live
                .iter()
                .filter(|l| l.source == Source::Pool(p.id))
                .collect();
            let s = p.pool.api().statistics().total;
            assert_eq!(
                s.allocation_count,
                mine.len() as u64,
                "step {step}: pool {}",
                p.name
            );
            assert_eq!(
                s.block_count,
                p.pool.block_count() as u64,
                "step {step}: pool {}",
                p.name
            );
            assert!(s.block_count <= p.pool.block_count_limits().1 as u64);
            let bytes: u64 = mine.iter().map(|l| l.alloc.size()).sum();
            assert!(s.allocations.total >= bytes, "step {step}: pool {}", p.name);
            assert_eq!(s.allocations.total + s.free_ranges.total, s.reserved_bytes);
            let listed: Vec<_> = stats.pools.iter().filter(|s| s.name == p.name).collect();
            // The allocator lists the pools that hold memory (it sums up their blocks).
            let holds_memory = s.block_count + s.dedicated_count > 0;
            assert_eq!(
                listed.len(),
                usize::from(holds_memory),
                "step {step}: pool {} listed",
                p.name
            );
            if holds_memory {
                assert_eq!(listed[0].statistics, s, "step {step}: pool {}", p.name);
            }
            for l in mine {
                assert_eq!(l.alloc.memory_type_index(), p.pool.memory_type_index());
            }
        }
        // The default vectors and dedicated allocations outside pools.
        let outside_pools: u64 = snap
            .blocks
            .iter()
            .filter(|b| b.pool.is_none())
            .map(|b| b.allocation_count)
            .sum();
        let default_live = self
            .live
            .iter()
            .filter(|l| l.source == Source::Default)
            .count() as u64;
        assert_eq!(
            outside_pools, default_live,
            "step {step}: default allocations"
        );
        // Heaps: counts, the driver's bytes and the budget.
        let heap_allocations: u64 = stats
            .heaps
            .iter()
            .map(|h| h.statistics.allocation_count)
            .sum();
        assert_eq!(heap_allocations, self.live.len() as u64, "step {step}");
        let budgets = self.device.heap_budgets();
        for h in &stats.heaps {
            let used = self.sim.state.heap_used(h.index);
            assert_eq!(
                h.statistics.reserved_bytes, used,
                "step {step}: heap {}",
                h.index
            );
            assert_eq!(h.budget.crate_usage, used, "step {step}: heap {}", h.index);
            assert_eq!(budgets[h.index as usize].crate_usage, used);
            // The extension's usage counts this process's memory, the crate's and the rest.
            let b = &budgets[h.index as usize];
            assert!(b.from_extension);
            assert_eq!(
                b.usage,
                used + self.other_usage[h.index as usize],
                "step {step}: heap {}",
                h.index
            );
        }
        assert_eq!(total.reserved_bytes, self.device.live_memory_bytes());
        assert_eq!(
            snap.blocks.len() as u32,
            self.sim.state.live_objects(),
            "step {step}: memory objects the driver holds"
        );
        // Blocks tile, hold the allocations the model says.
        let mut by_memory: HashMap<u64, Vec<&Live>> = HashMap::new();
        for l in &self.live {
            by_memory
                .entry(l.alloc.memory().as_raw())
                .or_default()
                .push(l);
        }
        for b in &snap.blocks {
            let mut end = 0;
            for r in &b.ranges {
                assert_eq!(
                    r.offset, end,
                    "step {step}: ranges tile block {:#x}",
                    b.memory
                );
                end += r.size;
            }
            assert_eq!(end, b.size);
            let mine = by_memory.get(&b.memory).map_or(&[][..], Vec::as_slice);
            assert_eq!(
                b.allocation_count,
                mine.len() as u64,
                "step {step}: block {:#x} ({:?})",
                b.memory,
                b.pool
            );
            for l in mine {
                let inside: Vec<_> = b
                    .ranges
                    .iter()
                    .filter(|r| {
                        matches!(r.kind, RangeKind::Allocated(_))
                            && r.offset <= l.alloc.offset()
                            && l.alloc.offset() + l.alloc.size() <= r.offset + r.size
                    })
                    .collect();
                assert_eq!(
                    inside.len(),
                    1,
                    "step {step}: allocation at {}",
                    l.alloc.offset()
                );
            }
        }
        let triples: Vec<_> = self.live.iter().map(|l| (&l.alloc, l.alignment)).collect();
        check_triples(&triples, &self.sim.state, 1024);
        // Every live byte reads back as written.
        for l in &self.live {
            if let Some(shadow) = &l.shadow {
                let mut back = vec![0; shadow.len()];
                l.alloc.read(0, &mut back).unwrap();
                assert!(
                    back == *shadow,
                    "step {step}: the bytes of {}+{} ({} requested, {:?}) changed",
                    l.alloc.memory().as_raw(),
                    l.alloc.offset(),
                    l.requested,
                    l.source
                );
            }
        }
    }

    /// Drops everything; the leak check is clean and every memory object is gone.
    fn finish(mut self) {
        self.check();
        while let Some(l) = self.live.pop() {
            drop(l);
        }
        assert!(self.allocator.report_leaks().is_empty());
        for p in &self.pools {
            assert!(p.pool.report_leaks().is_empty());
        }
        self.pools.clear();
        self.check();
        let World {
            sim,
            device,
            allocator,
            ..
        } = self;
        drop(allocator);
        drop(device);
        sim.assert_nothing_allocated();
    }
}

fn run(ops: &[(u8, u64)], margin: u64) -> HashMap<String, u64> {
    let mut world = World::new(margin);
    for &(op, seed) in ops {
        world.step(op, seed);
    }
    let done = world.done.clone();
    world.finish();
    done
}

/// 8 cases (`PROPTEST_CASES` for more).
fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8);
    ProptestConfig {
        cases,
        failure_persistence: None,
        max_shrink_iters: 400,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn random_walks_over_the_api(
        ops in prop::collection::vec((any::<u8>(), any::<u64>()), 1..150),
        margin in prop::sample::select(vec![0u64, 16, 64]),
    ) {
        run(&ops, margin);
    }
}

/// A long walk from fixed seeds, with a summary of what it did.
#[test]
fn a_long_seeded_walk() {
    // `API_WALK_SEED` and `API_WALK_STEPS` walk elsewhere.
    let var = |name: &str, default: u64| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let mut rng = Rng(var("API_WALK_SEED", 0x5eed));
    let ops: Vec<(u8, u64)> = (0..var("API_WALK_STEPS", 600))
        .map(|_| (rng.next() as u8, rng.next()))
        .collect();
    let done = run(&ops, 16);
    eprintln!("{done:#?}");
    for what in [
        "allocate",
        "allocate_pages",
        "free",
        "access",
        "pool made",
        "defragmentation",
        "observe",
    ] {
        assert!(
            done.get(what).copied().unwrap_or(0) > 0,
            "the walk never did {what}: {done:?}"
        );
    }
}

/// A pool dropped while its allocations live on: the allocator's statistics, snapshot and
/// leak report still show them (and the memory they hold) until they are freed.
#[test]
fn a_dropped_pools_live_allocations_stay_in_the_books() {
    run(
        &[
            (11, 1058539759814963983),
            (14, 2556472812362419019),
            (12, 3505597125811755349),
        ],
        0,
    );
}

/// The same, spelled out: a block allocation and a dedicated one outlive their pool; the
/// allocator's books show them, under the pool's name, until each is freed, and their memory
/// goes back with them.
#[test]
fn a_dropped_pools_allocations_are_counted_until_freed() {
    let world = World::new(16);
    let pool = world
        .allocator
        .create_pool::<FreeListAllocator>(&PoolCreateInfo {
            name: Some("gone".into()),
            memory_type: PoolMemoryType::Index(1),
            block_size: MIB,
            ..Default::default()
        })
        .unwrap();
    let requirements = AllocationRequirements {
        layout: DeviceLayout::from_size_alignment(4 * KIB, 256).unwrap(),
        memory_type_bits: 1 << 1,
        prefers_dedicated_allocation: false,
        requires_dedicated_allocation: false,
    };
    let named = AllocationCreateInfo {
        name: Some("kept".into()),
        ..Default::default()
    };
    let mut block = pool
        .allocate(requirements, AllocationType::Linear, &named, None)
        .unwrap();
    let dedicated = pool
        .allocate_dedicated(1, 8 * KIB, None, &AllocationCreateInfo::default())
        .unwrap();
    assert!(!block.is_dedicated() && dedicated.is_dedicated());
    block.write(0, &[7; 64]).unwrap();
    drop(pool);

    let books = |expected: u64| {
        let stats = world.allocator.statistics();
        assert_eq!(stats.total.allocation_count, expected);
        assert_eq!(stats.total.reserved_bytes, world.device.live_memory_bytes());
        assert_eq!(
            world.allocator.snapshot().blocks.len() as u32,
            world.sim.state.live_objects()
        );
        let leaks = world.allocator.report_leaks();
        assert_eq!(leaks.len() as u64, expected);
        assert!(leaks.iter().all(|l| l.pool.as_deref() == Some("gone")));
        assert!(world.allocator.check_corruption(u32::MAX).is_ok());
        leaks
    };
    let leaks = books(2);
    assert!(leaks.iter().any(|l| l.name.as_deref() == Some("kept")));
    assert_eq!(world.sim.state.live_objects(), 2);
    drop(dedicated);
    books(1);
    assert_eq!(world.sim.state.live_objects(), 1);
    let mut back = [0; 64];
    block.read(0, &mut back).unwrap();
    assert_eq!(back, [7; 64]);
    drop(block);
    books(0);
    assert_eq!(
        world.sim.state.live_objects(),
        0,
        "the block goes with its allocation"
    );
    world.finish();
}
