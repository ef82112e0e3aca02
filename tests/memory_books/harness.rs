//! The harness of the books tests: the memory objects alive as the memory callbacks report
//! them, the statistics checked against them and the simulated driver, and random traces.

use crate::support::{Rng, Sim, KIB};
use ash::vk;
use ash_memory::*;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// `HIGH_WATER_EPOCH` of the block vectors: samples per epoch of the high-water mark.
pub const HIGH_WATER_EPOCH: u64 = 128;

/// The memory objects alive, as the memory callbacks report them.
#[derive(Default)]
pub struct Books {
    pub live: Mutex<HashMap<vk::DeviceMemory, (u32, u64)>>,
    pub errors: Mutex<Vec<String>>,
    pub allocated: AtomicU64,
    pub freed: AtomicU64,
}

impl DeviceMemoryCallbacks for Books {
    fn allocated(&self, memory_type_index: u32, memory: vk::DeviceMemory, size: u64) {
        self.allocated.fetch_add(1, Ordering::SeqCst);
        let old = self
            .live
            .lock()
            .unwrap()
            .insert(memory, (memory_type_index, size));
        if old.is_some() {
            self.errors
                .lock()
                .unwrap()
                .push(format!("{memory:?} reported allocated twice"));
        }
    }

    fn freeing(&self, memory_type_index: u32, memory: vk::DeviceMemory, size: u64) {
        self.freed.fetch_add(1, Ordering::SeqCst);
        match self.live.lock().unwrap().remove(&memory) {
            Some(known) if known == (memory_type_index, size) => {}
            Some(known) => self.errors.lock().unwrap().push(format!(
                "{memory:?} freed as {:?}, allocated as {known:?}",
                (memory_type_index, size)
            )),
            None => self
                .errors
                .lock()
                .unwrap()
                .push(format!("{memory:?} freed but not alive")),
        }
    }
}

impl Books {
    /// Bytes and count of the memory objects alive (of memory type `ty`, or all).
    pub fn alive(&self, ty: Option<u32>) -> (u64, u64) {
        let live = self.live.lock().unwrap();
        live.values()
            .filter(|(t, _)| ty.is_none_or(|ty| *t == ty))
            .fold((0, 0), |(b, n), (_, s)| (b + s, n + 1))
    }

    pub fn assert_balanced(&self) {
        let errors = self.errors.lock().unwrap();
        assert!(errors.is_empty(), "{errors:#?}");
        assert_eq!(self.alive(None), (0, 0), "memory objects never freed");
        assert_eq!(
            self.allocated.load(Ordering::SeqCst),
            self.freed.load(Ordering::SeqCst)
        );
    }
}

/// A simulated device whose memory objects go into the returned books.
pub fn device_with_books(sim: &Sim) -> (Arc<MemoryDevice>, Arc<Books>) {
    let device = sim.memory_device_claimed();
    let books = Arc::new(Books::default());
    device.set_memory_callbacks(Some(books.clone()));
    (device, books)
}

pub fn quiet() -> DebugOptions {
    DebugOptions {
        leak_check: LeakCheck::Off,
        ..Default::default()
    }
}

pub fn allocator(device: Arc<MemoryDevice>, block: u64) -> StandardMemoryAllocator {
    StandardMemoryAllocator::new(
        device,
        GenericMemoryAllocatorCreateInfo {
            block_sizes: BlockSizeThresholds::uniform(block).unwrap(),
            debug: quiet(),
            ..Default::default()
        },
    )
    .unwrap()
}

/// What one step of a trace asks for, relative to the block size `b`: small requests (at
/// most `b / 16`), sizable ones (`b / 8 .. b / 2`: blocks of their own size when no block
/// has room) and large ones (`b / 2 .. 3b / 2`: dedicated allocations).
pub fn request_size(rng: &mut Rng, b: u64, weights: [u64; 3]) -> u64 {
    let total: u64 = weights.iter().sum();
    let r = rng.below(total);
    if r < weights[0] {
        rng.range(KIB, b / 16)
    } else if r < weights[0] + weights[1] {
        rng.range(b / 8 + 1, b / 2)
    } else {
        rng.range(b / 2 + 1, 3 * b / 2)
    }
}

/// What the statistics say of the memory reserved, and what is live.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Reserved {
    pub bytes: u64,
    pub objects: u64,
    /// Bytes of the memory objects (blocks or dedicated) that hold allocations.
    pub in_use: u64,
}

/// Checks the statistics against the books and the simulated driver; returns them.
pub fn check_books(stats: &AllocatorStatistics, books: &Books, sim: &Sim, types: u32) -> Reserved {
    let t = &stats.total;
    let (bytes, objects) = books.alive(None);
    let driver: u64 = (0..sim.state.layout.heaps.len() as u32)
        .map(|h| sim.state.heap_used(h))
        .sum();
    assert_eq!(t.reserved_bytes, bytes, "statistics against the callbacks");
    assert_eq!(driver, bytes, "the driver against the callbacks");
    assert_eq!(t.block_count + t.dedicated_count, objects, "object counts");
    assert_eq!(sim.state.live_objects() as u64, objects);
    for ty in 0..types {
        assert_eq!(
            stats.memory_types[ty as usize].statistics.reserved_bytes,
            books.alive(Some(ty)).0,
            "memory type {ty}"
        );
    }
    let listed: u64 = stats.blocks.iter().map(|b| b.size).sum();
    assert_eq!(listed, bytes, "the blocks listed");
    let in_use = stats
        .blocks
        .iter()
        .filter(|b| b.statistics.allocation_count > 0)
        .map(|b| b.size)
        .sum();
    Reserved {
        bytes,
        objects,
        in_use,
    }
}

/// `(size, dedicated, allocation count)` of every memory object, for failure messages.
pub fn objects(stats: &AllocatorStatistics) -> Vec<(u64, bool, u64)> {
    stats
        .blocks
        .iter()
        .map(|b| (b.size, b.dedicated, b.statistics.allocation_count))
        .collect()
}

/// What VMA's rule would reserve on the same placement: the memory objects in use, and one
/// empty block kept per memory type (its default pools keep one; a custom pool's keep what
/// they keep here too).
pub fn vma_rule(stats: &AllocatorStatistics, now: Reserved, types: u32) -> u64 {
    let kept = (0..types)
        .map(|t| {
            stats
                .blocks
                .iter()
                .filter(|b| b.memory_type_index == t && b.pool.is_none() && !b.dedicated)
                .filter(|b| b.statistics.allocation_count == 0)
                .map(|b| b.size)
                .max()
                .unwrap_or(0)
        })
        .sum::<u64>();
    let pools: u64 = stats
        .blocks
        .iter()
        .filter(|b| b.pool.is_some() && b.statistics.allocation_count == 0)
        .map(|b| b.size)
        .sum();
    now.in_use + kept + pools
}

/// Peaks of a trace: reserved bytes and bytes asked for by live allocations.
#[derive(Default)]
pub struct Peaks {
    pub reserved: u64,
    pub live: u64,
    /// The peak of [`vma_rule`].
    pub vma: u64,
}

impl Peaks {
    pub fn ratio(&self) -> f64 {
        self.reserved as f64 / self.live.max(1) as f64
    }

    pub fn vma_ratio(&self) -> f64 {
        self.vma as f64 / self.live.max(1) as f64
    }
}

/// What a trace allocates from, and what it checks beyond the books.
pub struct Target<'a> {
    pub allocate: &'a dyn Fn(DeviceLayout, AllocationType) -> Result<MemoryAlloc, AllocationError>,
    /// Run on the statistics after every step.
    pub check: &'a dyn Fn(&AllocatorStatistics) -> Result<(), String>,
    /// The block size the request classes are relative to, and the largest request.
    pub block: u64,
    pub largest: u64,
}

/// One random trace: `steps` steps growing (two allocations in three), then shrinking (one
/// in three), then everything freed; the books checked after every step. Returns the peaks
/// and the number of failed allocations.
pub fn run_trace(
    sim: &Sim,
    allocator: &StandardMemoryAllocator,
    books: &Books,
    target: &Target<'_>,
    seed: u64,
    weights: [u64; 3],
    steps: usize,
) -> (Peaks, usize) {
    let types = sim.state.layout.type_count();
    let mut rng = Rng(seed);
    let mut live: Vec<(MemoryAlloc, u64)> = Vec::new();
    let mut live_bytes = 0;
    let mut failed = 0;
    let mut recovered = 0;
    let mut before = check_books(&allocator.statistics(), books, sim, types);
    let mut peaks = Peaks {
        reserved: before.bytes,
        live: 0,
        vma: before.bytes,
    };
    for step in 0..steps {
        let grow = step < steps / 2;
        let allocate = live.is_empty() || rng.below(3) < if grow { 2 } else { 1 };
        let what;
        if allocate {
            let size = request_size(&mut rng, target.block, weights).min(target.largest);
            what = format!("allocate {size}");
            let layout = DeviceLayout::from_size_alignment(size, 1 << rng.range(4, 13)).unwrap();
            let kind = if rng.below(2) == 0 {
                AllocationType::Linear
            } else {
                AllocationType::NonLinear
            };
            let refused = refused_calls(sim);
            match (target.allocate)(layout, kind) {
                Ok(a) => {
                    live_bytes += size;
                    live.push((a, size));
                    // The driver refused memory on the way (the books were checked after it
                    // all the same, below).
                    recovered += usize::from(refused_calls(sim) > refused);
                }
                Err(e) => {
                    failed += 1;
                    let stats = allocator.statistics();
                    let after = check_books(&stats, books, sim, types);
                    assert!(
                        matches!(
                            e,
                            AllocationError::OutOfDeviceMemory
                                | AllocationError::BudgetExceeded(_)
                                | AllocationError::PoolFull { .. }
                        ),
                        "seed {seed} step {step}: {e}"
                    );
                    assert!(
                        after.bytes <= before.bytes,
                        "seed {seed} step {step}: a failed {what} ({e}) left {} bytes reserved, \
                         {} before; objects: {:?}",
                        after.bytes,
                        before.bytes,
                        objects(&stats)
                    );
                }
            }
        } else {
            let i = rng.below(live.len() as u64) as usize;
            let (a, size) = live.swap_remove(i);
            what = format!("free {size}");
            drop(a);
            live_bytes -= size;
        }
        let stats = allocator.statistics();
        let now = check_books(&stats, books, sim, types);
        assert!(
            now.bytes <= peaks.reserved.max(now.in_use),
            "seed {seed} step {step} ({what}): {} bytes reserved, above the peak {} and the {} \
             in use; objects (size, dedicated, allocations): {:?}",
            now.bytes,
            peaks.reserved,
            now.in_use,
            objects(&stats)
        );
        if let Err(e) = (target.check)(&stats) {
            panic!(
                "seed {seed} step {step} ({what}): {e}; objects: {:?}",
                objects(&stats)
            );
        }
        peaks.reserved = peaks.reserved.max(now.bytes);
        peaks.live = peaks.live.max(live_bytes);
        peaks.vma = peaks.vma.max(vma_rule(&stats, now, types));
        before = now;
    }
    drop(live);
    eprintln!("seed {seed}: {recovered} allocations made after the driver refused memory");
    assert!(
        peaks.reserved <= peaks.vma,
        "seed {seed}: peak reserved {} above VMA's rule's {}",
        peaks.reserved,
        peaks.vma
    );
    check_books(&allocator.statistics(), books, sim, types);
    (peaks, failed)
}

/// How many `vkAllocateMemory` calls the simulated driver refused so far.
pub fn refused_calls(sim: &Sim) -> usize {
    sim.state
        .calls()
        .iter()
        .filter(|c| c.result != vk::Result::SUCCESS)
        .count()
}

/// Allocates from memory type `ty` of `allocator`.
pub fn from_type<'a>(
    allocator: &'a StandardMemoryAllocator,
    ty: u32,
    info: &'a AllocationCreateInfo,
) -> impl Fn(DeviceLayout, AllocationType) -> Result<MemoryAlloc, AllocationError> + 'a {
    move |layout, kind| allocator.allocate_from_type(ty, layout, kind, info)
}

pub fn no_check(_: &AllocatorStatistics) -> Result<(), String> {
    Ok(())
}

/// After a trace: one small request at a time for more than two epochs of samples (each
/// free empties its block, a sample). The mark decays to the size of the block they use,
/// and only that block stays.
pub fn check_decay(sim: &Sim, allocator: &StandardMemoryAllocator, books: &Books, ty: u32) {
    let types = sim.state.layout.type_count();
    let layout = DeviceLayout::from_size_alignment(4 * KIB, 256).unwrap();
    let mut used_block = None;
    for _ in 0..2 * HIGH_WATER_EPOCH + 2 {
        let a = allocator
            .allocate_from_type(ty, layout, AllocationType::Linear, &Default::default())
            .unwrap();
        used_block = Some(ash::vk::Handle::as_raw(a.memory()));
        drop(a);
    }
    let stats = allocator.statistics();
    let r = check_books(&stats, books, sim, types);
    let blocks: Vec<_> = stats
        .blocks
        .iter()
        .filter(|b| b.memory_type_index == ty)
        .collect();
    assert_eq!(
        blocks.len(),
        1,
        "kept after two epochs of one small request at a time: {blocks:#?}"
    );
    let of_type = stats.memory_types[ty as usize].statistics.reserved_bytes;
    assert_eq!(of_type, blocks[0].size);
    assert!(r.bytes >= of_type);
    assert_eq!(Some(blocks[0].memory), used_block, "the block in use stays");
}
