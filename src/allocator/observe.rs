//! Statistics, snapshots and leak reports of the memory an allocator or a custom pool holds.
//!
//! Blocks are walked through their block vectors; dedicated allocations through a
//! [`DedicatedRegistry`]. Each arena of a block is read under its own lock, so a snapshot taken
//! while other threads allocate is consistent per arena. An allocator also sees the custom
//! pools made from it, through weak references; a pool dropped while allocations in it live
//! on leaves its blocks and dedicated allocations to the allocator ([`Left`]), which sees
//! them until the last one is freed.

use super::pool_name::PoolName;
use crate::allocation::MetaMap;
use crate::allocator::block_memory::DeviceBlockVec;
use crate::allocator::block_vec::{Block, LeftBlock};
use crate::allocator::config::LeakCheck;
use crate::allocator::dedicated::DedicatedRegistry;
use crate::corruption::{self, CorruptionError, CorruptionReport, DamagedMargin};
use crate::device::MemoryDevice;
use crate::device_memory::{MemoryObject, ScanInvalidate};
use crate::stats::{
    leaks_in, log_leaks, BlockSnapshot, BlockStatistics, LeakedAllocation, Statistics, LOG_TARGET,
};
use crate::suballocator::{RangeInfo, Suballocator};
use ash::vk::Handle;
use parking_lot::Mutex;
use std::sync::{Arc, Weak};

/// Memory that can be looked at: the default block vectors of an allocator, or one custom pool.
pub(crate) trait Observe: Send + Sync {
    /// Every block and dedicated allocation, with every range.
    fn snapshots(&self) -> Vec<BlockSnapshot>;
    /// The statistics of every block and dedicated allocation.
    fn statistics(&self) -> Vec<BlockStatistics>;
    /// The custom pool this is, by name and memory type, while it lives (statistics list
    /// every live pool, one without memory included); none for the allocator's own memory
    /// and for what a dropped pool left.
    fn live_pool(&self) -> Option<(Arc<str>, u32)> {
        None
    }
    /// Reads the margins of every live allocation in the memory types of `memory_type_bits`
    /// (see [`crate::corruption`]).
    fn check_margins(&self, memory_type_bits: u32, scan: &mut Scan);
    /// Releases the empty blocks kept for reuse in `heap` beyond each vector's minimum (the
    /// heap ran out of memory, see [releasing](super::block_vec#releasing)); returns how many.
    fn release_kept(&self, heap: u32) -> usize;
    /// Whether there is nothing left to see, for good (a dropped pool's last allocation is
    /// freed).
    fn is_gone(&self) -> bool {
        false
    }
}

/// What a corruption check found so far.
#[derive(Default)]
pub(crate) struct Scan {
    pub damaged: Vec<DamagedMargin>,
    pub report: CorruptionReport,
}

/// Block vectors by memory type (one for a pool, one per type for an allocator), a register
/// of dedicated allocations and, for a custom pool, its name.
pub(crate) struct Held<S> {
    pub device: Arc<MemoryDevice>,
    pub vecs: Vec<(u32, Arc<DeviceBlockVec<S>>)>,
    pub dedicated: Arc<DedicatedRegistry>,
    pub pool: Option<Arc<PoolName>>,
}

fn heap_of(device: &MemoryDevice, memory_type_index: u32) -> u32 {
    device
        .memory_properties()
        .memory_type(memory_type_index)
        .map_or(u32::MAX, |t| t.heap_index)
}

/// A block as the observer reads it: one of a vector, or one a dropped pool left behind.
trait BlockRead {
    fn memory(&self) -> &MemoryObject;
    /// Calls `f` for every range and returns the live allocations, counted under the locks
    /// the ranges were read under (two separate reads disagree while other threads allocate).
    fn ranges(&self, f: &mut dyn FnMut(RangeInfo)) -> usize;
    fn metas<R>(&self, f: impl FnOnce(&MetaMap) -> R) -> R;
}

impl<S: Suballocator + Send + 'static> BlockRead for Block<S, MemoryObject> {
    fn memory(&self) -> &MemoryObject {
        Block::memory(self)
    }
    fn ranges(&self, f: &mut dyn FnMut(RangeInfo)) -> usize {
        self.for_each_range(f)
    }
    fn metas<R>(&self, f: impl FnOnce(&MetaMap) -> R) -> R {
        self.with_metas(f)
    }
}

impl<S: Suballocator + Send + 'static> BlockRead
    for crate::allocator::block_vec::LeftView<S, MemoryObject>
{
    fn memory(&self) -> &MemoryObject {
        Self::memory(self)
    }
    fn ranges(&self, f: &mut dyn FnMut(RangeInfo)) -> usize {
        self.for_each_range(f)
    }
    fn metas<R>(&self, f: impl FnOnce(&MetaMap) -> R) -> R {
        self.with_metas(f)
    }
}

/// Where a block belongs, for what the observer reports of it.
#[derive(Clone, Copy)]
struct Place<'a> {
    device: &'a MemoryDevice,
    memory_type_index: u32,
    pool: Option<&'a Arc<PoolName>>,
}

impl Place<'_> {
    fn snapshot(&self, b: &impl BlockRead) -> BlockSnapshot {
        let memory = b.memory();
        let mut live = 0;
        let ranges = b.metas(|metas| BlockSnapshot::ranges_from(|f| live = b.ranges(f), metas));
        BlockSnapshot {
            memory_type_index: self.memory_type_index,
            heap_index: heap_of(self.device, self.memory_type_index),
            memory: memory.handle().as_raw(),
            size: memory.size(),
            dedicated: false,
            pool: self.pool.map(|p| p.get()),
            allocation_count: live as u64,
            ranges,
        }
    }

    fn statistics(&self, b: &impl BlockRead) -> BlockStatistics {
        let memory = b.memory();
        let mut live = 0;
        let mut statistics = Statistics::of_block(memory.size(), 0, |f| live = b.ranges(f));
        statistics.allocation_count = live as u64;
        BlockStatistics {
            memory_type_index: self.memory_type_index,
            heap_index: heap_of(self.device, self.memory_type_index),
            memory: memory.handle().as_raw(),
            size: memory.size(),
            dedicated: false,
            pool: self.pool.map(|p| p.get()),
            statistics,
        }
    }

    /// Whether the margins of the place's memory type are to be read (host-visible memory;
    /// another type is noted as skipped).
    fn scans(&self, memory_type_bits: u32, scan: &mut Scan) -> bool {
        if memory_type_bits & 1u32.checked_shl(self.memory_type_index).unwrap_or(0) == 0 {
            return false;
        }
        let host_visible = self
            .device
            .memory_properties()
            .memory_type(self.memory_type_index)
            .is_some_and(|t| {
                t.property_flags
                    .contains(ash::vk::MemoryPropertyFlags::HOST_VISIBLE)
            });
        if !host_visible
            && !scan
                .report
                .skipped_memory_types
                .contains(&self.memory_type_index)
        {
            scan.report
                .skipped_memory_types
                .push(self.memory_type_index);
        }
        host_visible
    }

    fn check_margins(&self, block: &impl BlockRead, scan: &mut Scan) {
        let memory = block.memory();
        // Under the block's metadata lock: an allocation in the map is alive (a free
        // takes its record out first).
        block.metas(|metas| {
            for (&offset, meta) in metas {
                let Some(guard) = meta.guard else { continue };
                scan.report.checked_allocations += 1;
                let size = guard.size;
                for (i, (start, end)) in guard.margins(offset).into_iter().enumerate() {
                    // The allocation is live: its unflushed writes share atoms
                    // with its margins, so only whole margin atoms are invalidated.
                    let damage = memory.scan_mapped(
                        start,
                        end - start,
                        ScanInvalidate::Inside,
                        corruption::first_damage,
                    );
                    if let Some(at) = damage {
                        scan.damaged.push(DamagedMargin {
                            memory_type_index: self.memory_type_index,
                            memory: memory.handle().as_raw(),
                            offset: start + at,
                            after: i == 1,
                            allocation_offset: offset,
                            allocation_size: size,
                            name: meta.name.clone(),
                            pool: self.pool.map(|p| p.get()),
                        });
                    }
                }
            }
        });
    }
}

impl<S> Held<S> {
    fn place(&self, memory_type_index: u32) -> Place<'_> {
        Place {
            device: &self.device,
            memory_type_index,
            pool: self.pool.as_ref(),
        }
    }
}

impl<S: Suballocator + Send + 'static> Observe for Held<S> {
    fn live_pool(&self) -> Option<(Arc<str>, u32)> {
        let pool = self.pool.as_ref()?;
        let (memory_type_index, _) = self.vecs.first()?;
        Some((pool.get(), *memory_type_index))
    }

    fn snapshots(&self) -> Vec<BlockSnapshot> {
        let mut out = Vec::new();
        for (memory_type_index, vec) in &self.vecs {
            let place = self.place(*memory_type_index);
            vec.for_each_block(|b| out.push(place.snapshot(b)));
        }
        out.extend(self.dedicated.snapshot());
        out
    }

    fn statistics(&self) -> Vec<BlockStatistics> {
        let mut out = Vec::new();
        for (memory_type_index, vec) in &self.vecs {
            let place = self.place(*memory_type_index);
            vec.for_each_block(|b| out.push(place.statistics(b)));
        }
        out.extend(self.dedicated.statistics());
        out
    }

    fn release_kept(&self, heap: u32) -> usize {
        self.vecs
            .iter()
            .filter(|(memory_type_index, _)| heap_of(&self.device, *memory_type_index) == heap)
            .map(|(_, vec)| vec.try_release_empty())
            .sum()
    }

    fn check_margins(&self, memory_type_bits: u32, scan: &mut Scan) {
        for (memory_type_index, vec) in &self.vecs {
            let place = self.place(*memory_type_index);
            if place.scans(memory_type_bits, scan) {
                vec.for_each_block(|block| place.check_margins(block, scan));
            }
        }
    }
}

/// What a custom pool dropped while allocations in it live on leaves behind: its blocks that
/// hold them (weakly, see [`LeftBlock`]) and its register of dedicated allocations.
pub(crate) struct Left<S> {
    pub device: Arc<MemoryDevice>,
    pub memory_type_index: u32,
    pub blocks: Vec<LeftBlock<S, MemoryObject>>,
    pub dedicated: Arc<DedicatedRegistry>,
    pub pool: Arc<PoolName>,
}

impl<S> Left<S> {
    fn place(&self) -> Place<'_> {
        Place {
            device: &self.device,
            memory_type_index: self.memory_type_index,
            pool: Some(&self.pool),
        }
    }
}

impl<S: Suballocator + Send + 'static> Observe for Left<S> {
    fn snapshots(&self) -> Vec<BlockSnapshot> {
        let place = self.place();
        let mut out: Vec<_> = self
            .blocks
            .iter()
            .filter_map(LeftBlock::view)
            .map(|b| place.snapshot(&b))
            .collect();
        out.extend(self.dedicated.snapshot());
        out
    }

    fn statistics(&self) -> Vec<BlockStatistics> {
        let place = self.place();
        let mut out: Vec<_> = self
            .blocks
            .iter()
            .filter_map(LeftBlock::view)
            .map(|b| place.statistics(&b))
            .collect();
        out.extend(self.dedicated.statistics());
        out
    }

    fn check_margins(&self, memory_type_bits: u32, scan: &mut Scan) {
        let place = self.place();
        if place.scans(memory_type_bits, scan) {
            for b in self.blocks.iter().filter_map(LeftBlock::view) {
                place.check_margins(&b, scan);
            }
        }
    }

    /// No block left here is kept empty: each is freed with its last allocation.
    fn release_kept(&self, _heap: u32) -> usize {
        0
    }

    fn is_gone(&self) -> bool {
        self.blocks.iter().all(LeftBlock::is_gone) && self.dedicated.is_empty()
    }
}

/// What an allocator keeps for observability: its own memory and the custom pools made from
/// it. Dropping it logs the allocations of its own memory that are still alive.
pub(crate) struct Observer {
    own: Arc<dyn Observe>,
    pools: Mutex<Vec<Weak<dyn Observe>>>,
    /// What dropped pools left behind, until it is gone.
    left: Mutex<Vec<Arc<dyn Observe>>>,
    /// What the leak report on drop says the dropped thing is.
    what: &'static str,
    /// What the drop does about live allocations.
    leak_check: LeakCheck,
}

impl Observer {
    pub(crate) fn new(own: Arc<dyn Observe>, what: &'static str, leak_check: LeakCheck) -> Self {
        Self {
            own,
            pools: Mutex::default(),
            left: Mutex::default(),
            what,
            leak_check,
        }
    }

    /// Adds a custom pool to what [`all_snapshots`](Self::all_snapshots) and
    /// [`all_statistics`](Self::all_statistics) see.
    pub(crate) fn add_pool(&self, pool: Weak<dyn Observe>) {
        let mut pools = self.pools.lock();
        pools.retain(|p| p.strong_count() > 0);
        pools.push(pool);
    }

    /// Replaces a dropped custom pool (`pool`, the weak handle it was added with) by what it
    /// left behind (see [`Left`]), in one step under both lists' locks: a walk sees either
    /// the pool or what it left, never both (the pool's handle still upgrades until its
    /// fields are dropped, and counting its blocks twice would be a torn book).
    pub(crate) fn replace_pool(&self, pool: &Weak<dyn Observe>, left: Arc<dyn Observe>) {
        // Lock order: `pools`, then `left` (as in `live_pools`).
        let mut pools = self.pools.lock();
        let mut all = self.left.lock();
        pools.retain(|p| p.strong_count() > 0 && !Weak::ptr_eq(p, pool));
        all.retain(|l| !l.is_gone());
        all.push(left);
    }

    /// The weak handle of the memory this observer looks at, as a parent's
    /// [`add_pool`](Self::add_pool) took it.
    pub(crate) fn own_weak(&self) -> Weak<dyn Observe> {
        Arc::downgrade(&self.own)
    }

    /// The live custom pools, then what dropped ones left behind, both lists read under
    /// their locks at once (see [`replace_pool`](Self::replace_pool)).
    fn live_pools(&self) -> Vec<Arc<dyn Observe>> {
        let pools = self.pools.lock();
        let mut out: Vec<_> = pools.iter().filter_map(Weak::upgrade).collect();
        let mut left = self.left.lock();
        left.retain(|l| !l.is_gone());
        out.extend(left.iter().cloned());
        drop(left);
        drop(pools);
        out
    }

    /// Releases the empty blocks that the custom pools keep in `heap` beyond their minimum
    /// block counts; returns how many.
    pub(crate) fn release_pools_kept(&self, heap: u32) -> usize {
        self.live_pools().iter().map(|p| p.release_kept(heap)).sum()
    }

    /// Every block and dedicated allocation, the custom pools' included.
    pub(crate) fn all_snapshots(&self) -> Vec<BlockSnapshot> {
        let mut out = self.own.snapshots();
        for p in self.live_pools() {
            out.extend(p.snapshots());
        }
        out
    }

    /// Every live custom pool seen here (this observer's own memory, when it is a pool's, and
    /// the pools made from it), by name and memory type.
    pub(crate) fn live_pool_list(&self) -> Vec<(Arc<str>, u32)> {
        let mut out: Vec<_> = self.own.live_pool().into_iter().collect();
        out.extend(self.live_pools().iter().filter_map(|p| p.live_pool()));
        out
    }

    /// The statistics of every block and dedicated allocation, the custom pools' included.
    pub(crate) fn all_statistics(&self) -> Vec<BlockStatistics> {
        let mut out = self.own.statistics();
        for p in self.live_pools() {
            out.extend(p.statistics());
        }
        out
    }

    /// Checks the margins of every live allocation in `memory_type_bits`, the custom pools'
    /// included.
    pub(crate) fn check_corruption(
        &self,
        memory_type_bits: u32,
    ) -> Result<CorruptionReport, CorruptionError> {
        let mut scan = Scan::default();
        self.own.check_margins(memory_type_bits, &mut scan);
        for p in self.live_pools() {
            p.check_margins(memory_type_bits, &mut scan);
        }
        scan.report.skipped_memory_types.sort_unstable();
        if scan.damaged.is_empty() {
            Ok(scan.report)
        } else {
            Err(CorruptionError::Damaged {
                damaged: scan.damaged,
                report: scan.report,
            })
        }
    }

    /// The live allocations, the custom pools' included, logged at the `warn` level.
    pub(crate) fn report_leaks(&self) -> Vec<LeakedAllocation> {
        let leaks = leaks_in(&self.all_snapshots());
        log_leaks(&leaks, log::Level::Warn, "report_leaks");
        leaks
    }
}

impl Drop for Observer {
    /// The leak check (see [`LeakCheck`]).
    fn drop(&mut self) {
        let logged = log::log_enabled!(target: LOG_TARGET, log::Level::Warn);
        let print = matches!(self.leak_check, LeakCheck::Print | LeakCheck::Panic);
        if self.leak_check == LeakCheck::Off || !(logged || print) {
            return;
        }
        let leaks = leaks_in(&self.own.snapshots());
        if leaks.is_empty() {
            return;
        }
        let context = format!(
            "{} dropped while allocations are alive (their memory is freed when they are \
             dropped)",
            self.what
        );
        if logged {
            log_leaks(&leaks, log::Level::Warn, &context);
        } else {
            eprintln!("ash-memory: {context}:");
            for leak in &leaks {
                eprintln!("  leaked {leak}");
            }
        }
        if self.leak_check == LeakCheck::Panic && !std::thread::panicking() {
            panic!(
                "ash-memory: {context}: {} leaked allocation(s), listed above. Drop them first, \
                 or opt out with `DebugOptions {{ leak_check: LeakCheck::Log, .. }}`",
                leaks.len()
            );
        }
    }
}
