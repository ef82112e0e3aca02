//! Block vectors without a driver: a stand-in memory behind the memory seam, unit tests of
//! growth, limits and release, and property tests against a shadow model.

use super::*;
use crate::allocator::placement::{makes_block_for_sizable, new_block_size, ArenaLayout};
use crate::suballocator::{FreeListAllocator, RangeKind, SlotAllocator, Suballocation};
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::sync::atomic::AtomicUsize;

mod adopt;
mod fast;
mod kept;
mod large;
mod placement_walk;
mod reuse;

const KIB: DeviceSize = 1 << 10;
const MIB: DeviceSize = 1 << 20;

/// Memory that counts how many of its kind are alive.
struct Mock {
    size: DeviceSize,
    id: usize,
    live: Arc<AtomicUsize>,
    /// Whether the heap is past its budget (shared by all the harness's memory).
    over_budget: Arc<std::sync::atomic::AtomicBool>,
}

impl BlockMemory for Mock {
    type Link = ();

    unsafe fn link<S: Suballocator + Send + 'static>(_arena: *const Arena<S, Self>) {}

    fn size(&self) -> DeviceSize {
        self.size
    }

    fn heap_within_budget(&self) -> bool {
        !self.over_budget.load(Ordering::SeqCst)
    }
}

impl Drop for Mock {
    fn drop(&mut self) {
        self.live.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A live suballocation: the arena it came from and its range.
struct Live<S> {
    arena: Arc<Arena<S, Mock>>,
    block: usize,
    suballocation: Suballocation,
}

impl<S: Suballocator + Send + 'static> Live<S> {
    /// The live suballocation `placed` in `arena`: the `wrap` of the block vector's searches.
    fn of(arena: &Arc<Arena<S, Mock>>, placed: Placed) -> Self {
        Live {
            arena: arena.clone(),
            block: arena.memory().id,
            suballocation: placed.suballocation,
        }
    }
}

/// A block vector with a memory seam that hands out [`Mock`]s, fails on request, and counts.
struct Harness<S> {
    vec: Arc<BlockVec<S, Mock>>,
    live_memory: Arc<AtomicUsize>,
    next_id: AtomicUsize,
    preferred: DeviceSize,
    granularity: DeviceAlignment,
    fail_next_memory: std::sync::atomic::AtomicBool,
    over_budget: Arc<std::sync::atomic::AtomicBool>,
}

impl<S: Suballocator + Send + 'static> Harness<S> {
    fn new(arenas: usize, limits: BlockLimits, preferred: DeviceSize, granularity: u64) -> Self {
        Self {
            vec: BlockVec::new(arenas, limits),
            live_memory: Arc::default(),
            next_id: AtomicUsize::new(0),
            preferred,
            granularity: DeviceAlignment::new(granularity).unwrap(),
            fail_next_memory: std::sync::atomic::AtomicBool::new(false),
            over_budget: Arc::default(),
        }
    }

    fn fit(&self, size: DeviceSize, alignment: DeviceSize, ty: AllocationType) -> Fit {
        Fit {
            layout: DeviceLayout::from_size_alignment(size, alignment).unwrap(),
            allocation_type: ty,
            granularity: self.granularity,
            best_fit: size > self.preferred / crate::allocator::placement::BEST_FIT_DIVISOR,
            strategy: crate::suballocator::AllocationStrategy::Default,
        }
    }

    fn make(&self, size: DeviceSize) -> Result<Mock, &'static str> {
        if self.fail_next_memory.swap(false, Ordering::SeqCst) {
            return Err("out of memory");
        }
        self.live_memory.fetch_add(1, Ordering::SeqCst);
        Ok(Mock {
            size,
            id: self.next_id.fetch_add(1, Ordering::SeqCst),
            live: self.live_memory.clone(),
            over_budget: self.over_budget.clone(),
        })
    }

    /// Adds an empty block of `size` bytes, cut into at most `arenas` arenas each holding at
    /// least `min_region` bytes.
    fn add_block(&self, size: DeviceSize, min_region: DeviceSize, arenas: usize) {
        self.vec
            .add_empty_block(
                size,
                |s, _| ArenaLayout::choose(s, min_region, 0, self.granularity, arenas),
                |s| self.make(s),
            )
            .unwrap();
    }

    /// Existing blocks, then a new block: the suballocation half of the fallback ladder.
    fn allocate(&self, fit: &Fit) -> Result<Live<S>, NewBlockError<&'static str>> {
        let existing = self.vec.allocate_existing(fit, &Live::of);
        self.or_new_block(fit, existing)
    }

    /// [`allocate`](Self::allocate) with the walk over the list alone, as if the thread had
    /// no [fast try](super::fast).
    fn allocate_walking(&self, fit: &Fit) -> Result<Live<S>, NewBlockError<&'static str>> {
        let existing = self
            .vec
            .with_blocks(|blocks| self.vec.search(blocks, fit, &Live::of));
        self.or_new_block(fit, existing)
    }

    /// What the search of the existing blocks found, else a new block.
    fn or_new_block(
        &self,
        fit: &Fit,
        existing: Result<Option<Live<S>>, DoesNotFit>,
    ) -> Result<Live<S>, NewBlockError<&'static str>> {
        let wrap = Live::of;
        if let Some(live) = existing.map_err(|DoesNotFit| NewBlockError::DoesNotFit)? {
            return Ok(live);
        }
        let min = fit.layout.size();
        let home_slots = self.vec.home_slots();
        self.vec.allocate_in_new_block(
            fit,
            makes_block_for_sizable(self.preferred, true, min),
            |held, sizable_in_use| {
                new_block_size(self.preferred, true, held, 0, min, min, sizable_in_use)
            },
            |size, largest| ArenaLayout::choose(size, min, largest, self.granularity, home_slots),
            |size| self.make(size),
            &wrap,
        )
    }

    fn free(&self, live: Live<S>) {
        // SAFETY: the suballocation came from this arena and is freed once (moved in).
        unsafe { live.arena.free(live.suballocation) };
    }

    fn empty_blocks(&self) -> usize {
        let mut n = 0;
        self.vec.for_each_block(|b| n += usize::from(b.is_empty()));
        n
    }

    fn block_sizes(&self) -> Vec<DeviceSize> {
        let mut out = Vec::new();
        self.vec.for_each_block(|b| out.push(b.memory().size()));
        out
    }
}

/// Blocks made for sizable requests (more than 8 MiB of a 64 MiB block: their own size) are
/// no steps of the growth: after three of them, the first block for small requests is still
/// an eighth of the preferred size, and the next ones grow from there.
#[test]
fn blocks_for_sizable_requests_are_no_steps_of_the_growth() {
    let h = Harness::<FreeListAllocator>::new(1, BlockLimits::NONE, 64 * MIB, 1);
    let fit = |size| h.fit(size, 256, AllocationType::Linear);
    let mut live: Vec<_> = (0..3)
        .map(|_| h.allocate(&fit(10 * MIB)).unwrap())
        .collect();
    assert_eq!(h.block_sizes(), [10 * MIB; 3]);
    for _ in 0..3 {
        live.push(h.allocate(&fit(4 * MIB)).unwrap());
    }
    assert_eq!(
        h.block_sizes(),
        [10 * MIB, 10 * MIB, 10 * MIB, 8 * MIB, 16 * MIB]
    );
    for l in live {
        h.free(l);
    }
}

/// A vector that holds only blocks made for sizable requests gets full blocks for them once
/// its memory in use reaches eight preferred blocks, which the next requests fill; one that
/// holds a block for small requests keeps giving each sizable request a block of its own.
#[test]
fn a_vector_of_sizable_resources_alone_gets_full_blocks_at_eight_blocks_in_use() {
    for with_small in [false, true] {
        let h = Harness::<FreeListAllocator>::new(1, BlockLimits::NONE, 64 * MIB, 1);
        let fit = |size| h.fit(size, 256, AllocationType::Linear);
        let mut live = Vec::new();
        if with_small {
            live.push(h.allocate(&fit(MIB)).unwrap());
        }
        // 26 blocks of 20 MiB take the memory in use to 520 MiB (eight blocks: 512 MiB).
        for _ in 0..26 {
            live.push(h.allocate(&fit(20 * MIB)).unwrap());
        }
        let own = h.block_sizes().iter().filter(|&&s| s == 20 * MIB).count();
        assert_eq!(own, 26);
        // Three more.
        for _ in 0..3 {
            live.push(h.allocate(&fit(20 * MIB)).unwrap());
        }
        let sizes = h.block_sizes();
        if with_small {
            assert_eq!(sizes.iter().filter(|&&s| s == 20 * MIB).count(), 29);
        } else {
            // One full block, holding all three.
            assert_eq!(sizes.len(), 27, "{sizes:?}");
            assert_eq!(sizes[26], 64 * MIB);
            assert!(live[26..].iter().all(|l| l.block == live[26].block));
        }
        for l in live {
            h.free(l);
        }
    }
}

#[test]
fn blocks_grow_and_empty_blocks_stay_under_the_high_water_mark() {
    let h = Harness::<FreeListAllocator>::new(1, BlockLimits::NONE, 64 * MIB, 1);
    // 1/8, 1/4, 1/2 of the preferred size, then the preferred size.
    let mut live = Vec::new();
    for _ in 0..6 {
        live.push(
            h.allocate(&h.fit(4 * MIB, 256, AllocationType::Linear))
                .unwrap(),
        );
    }
    assert_eq!(h.block_sizes(), [8 * MIB, 16 * MIB]);
    for _ in 0..9 {
        live.push(
            h.allocate(&h.fit(4 * MIB, 256, AllocationType::Linear))
                .unwrap(),
        );
    }
    assert_eq!(h.block_sizes(), [8 * MIB, 16 * MIB, 32 * MIB, 64 * MIB]);
    assert_eq!(h.live_memory.load(Ordering::SeqCst), 4);
    assert_eq!(h.vec.high_water.lock().mark(), 120 * MIB, "all four in use");
    // Empty the first three blocks, then the last: all 120 MiB were in use a moment ago
    // (the mark), so all stay, for the next requests.
    let (first, rest): (Vec<_>, Vec<_>) = live.into_iter().partition(|l| l.block < 3);
    for l in first {
        h.free(l);
    }
    assert_eq!(h.empty_blocks(), 3);
    assert_eq!(h.block_sizes(), [8 * MIB, 16 * MIB, 32 * MIB, 64 * MIB]);
    for l in rest {
        h.free(l);
    }
    assert_eq!(h.block_sizes(), [8 * MIB, 16 * MIB, 32 * MIB, 64 * MIB]);
    assert_eq!(h.live_memory.load(Ordering::SeqCst), 4);
    // A request that none of them holds (a sizable request's block: the request rounded up
    // to 64 MiB / 128 = 512 KiB, 99.5 MiB) gives back as many as the mark needs: 99.5 MiB
    // new and 16 MiB kept stay within 120 MiB; 64, 32 and 8 go.
    let big = h
        .allocate(&h.fit(99 * MIB + 1, 256, AllocationType::Linear))
        .unwrap();
    assert_eq!(
        h.block_sizes(),
        [16 * MIB, 99 * MIB + MIB / 2],
        "empty blocks beyond the mark released before the new block"
    );
    assert_eq!(h.live_memory.load(Ordering::SeqCst), 2);
    // One that an empty block holds takes it: no new memory.
    h.free(big);
    let small = h
        .allocate(&h.fit(MIB, 256, AllocationType::Linear))
        .unwrap();
    assert_eq!(h.block_sizes(), [16 * MIB, 99 * MIB + MIB / 2]);
    assert_eq!(small.block, 1, "the 16 MiB block");
    h.free(small);
    drop(h);
}

#[test]
fn limits_hold_and_failed_memory_leaves_nothing_behind() {
    let limits = BlockLimits::pool(2, 3);
    let h = Harness::<FreeListAllocator>::new(1, limits, 4 * MIB, 1);
    for _ in 0..2 {
        h.add_block(4 * MIB, 1, 1);
    }
    assert_eq!(h.vec.block_count(), 2, "minimum blocks exist up front");
    assert_eq!(h.empty_blocks(), 2, "and are kept although empty");
    let fit = h.fit(3 * MIB, 1, AllocationType::Linear);
    let a = h.allocate(&fit).unwrap();
    let b = h.allocate(&fit).unwrap();
    h.fail_next_memory.store(true, Ordering::SeqCst);
    assert_eq!(
        h.allocate(&fit).err(),
        Some(NewBlockError::Memory("out of memory"))
    );
    assert_eq!(h.vec.block_count(), 2, "no block for failed memory");
    let c = h.allocate(&fit).unwrap();
    assert_eq!(h.vec.block_count(), 3);
    assert_eq!(
        h.allocate(&fit).err(),
        Some(NewBlockError::Full { max_blocks: 3 })
    );
    let calls = h.next_id.load(Ordering::SeqCst);
    assert_eq!(
        h.allocate(&fit).err(),
        Some(NewBlockError::Full { max_blocks: 3 })
    );
    assert_eq!(
        h.next_id.load(Ordering::SeqCst),
        calls,
        "no memory asked for when full"
    );
    for l in [a, b, c] {
        h.free(l);
    }
    assert_eq!(h.vec.block_count(), 2, "down to the minimum, not below");
    assert_eq!(h.live_memory.load(Ordering::SeqCst), 2);
    drop(h);
}

/// The releases of empty blocks that the heap's exhaustion and the caller ask for give back
/// every empty block beyond the minimum block count, and none of the minimum.
#[test]
fn releases_of_empty_blocks_keep_the_minimum() {
    let h = Harness::<FreeListAllocator>::new(1, BlockLimits::pool(1, 4), 4 * MIB, 1);
    for _ in 0..3 {
        h.add_block(4 * MIB, 1, 1);
    }
    assert_eq!(h.empty_blocks(), 3);
    assert_eq!(h.vec.try_release_empty(), 2, "all but the minimum");
    assert_eq!(h.vec.block_count(), 1);
    assert_eq!(h.live_memory.load(Ordering::SeqCst), 1);
    assert_eq!(h.vec.try_release_empty(), 0, "never below the minimum");
    assert_eq!(h.vec.release_empty_among(|_| true), 0);
    assert_eq!(h.vec.block_count(), 1);
    // A block in use is not released, and the minimum counts it.
    h.add_block(4 * MIB, 1, 1);
    let fit = h.fit(3 * MIB, 1, AllocationType::Linear);
    let a = h.allocate(&fit).unwrap();
    assert_eq!(h.vec.try_release_empty(), 1);
    assert_eq!(h.vec.block_count(), 1);
    h.free(a);
    assert_eq!(h.vec.release_empty_among(|_| true), 0);
    assert_eq!(h.live_memory.load(Ordering::SeqCst), 1);
}

#[test]
fn a_fresh_block_that_cannot_serve_the_request_is_dropped() {
    // Slots of 1 MiB cannot hold 2 MiB: the new block refuses and is freed again.
    let h = Harness::<SlotAllocator<{ 1 << 20 }>>::new(1, BlockLimits::NONE, 8 * MIB, 1);
    let fit = h.fit(2 * MIB, 1, AllocationType::Linear);
    assert_eq!(h.allocate(&fit).err(), Some(NewBlockError::DoesNotFit));
    assert_eq!(h.vec.block_count(), 0);
    assert_eq!(h.live_memory.load(Ordering::SeqCst), 0);
    // With a block, existing blocks report that the suballocator can never serve it.
    let small = h.allocate(&h.fit(KIB, 1, AllocationType::Linear)).unwrap();
    assert_eq!(h.allocate(&fit).err(), Some(NewBlockError::DoesNotFit));
    h.free(small);
}

#[test]
fn large_requests_take_the_tightest_arena_small_ones_the_first() {
    let h = Harness::<FreeListAllocator>::new(1, BlockLimits::NONE, 64 * MIB, 1);
    for size in [64 * MIB, 24 * MIB, 32 * MIB] {
        h.add_block(size, 1, 1);
    }
    let block_size = |l: &Live<FreeListAllocator>| l.arena.memory().size;
    // Large (more than 1/64 of the preferred 64 MiB): the smallest block that holds it.
    let a = h
        .allocate(&h.fit(20 * MIB, 1, AllocationType::Linear))
        .unwrap();
    assert_eq!(block_size(&a), 24 * MIB);
    let b = h
        .allocate(&h.fit(28 * MIB, 1, AllocationType::Linear))
        .unwrap();
    assert_eq!(block_size(&b), 32 * MIB, "the 64 MiB range stays whole");
    let c = h
        .allocate(&h.fit(60 * MIB, 1, AllocationType::Linear))
        .unwrap();
    assert_eq!(block_size(&c), 64 * MIB);
    for l in [a, b, c] {
        h.free(l);
    }
    // Small: the first block with room.
    let d = h.allocate(&h.fit(KIB, 1, AllocationType::Linear)).unwrap();
    assert_eq!(block_size(&d), 64 * MIB);
    h.free(d);
}

/// A small request that the first block's home arena cannot take goes to the block in use
/// with the least room that fits (the first of equals in the blocks' order), not to the next
/// block in order: the larger free range stays whole for a larger request, which then needs
/// no new block.
#[test]
fn a_request_the_first_block_cannot_take_goes_to_the_tightest_block_in_use() {
    let h = Harness::<FreeListAllocator>::new(1, BlockLimits::NONE, 256 * MIB, 1);
    for _ in 0..4 {
        h.add_block(4 * MIB, 1, 1);
    }
    let mib = h.fit(MIB, 1, AllocationType::Linear);
    let mut live: Vec<_> = (0..16).map(|_| h.allocate(&mib).unwrap()).collect();
    let ids: Vec<usize> = live.iter().map(|l| l.block).collect();
    let in_order: Vec<usize> = (0..16).map(|i| i / 4).collect();
    assert_eq!(ids, in_order, "first fit fills them in order");
    // Block 1 gets a free range of 2 MiB, blocks 2 and 3 one of 1 MiB; block 0 stays full.
    for i in [13, 9, 6, 5] {
        h.free(live.remove(i));
    }
    let small = h.allocate(&mib).unwrap();
    assert_eq!(
        small.block, 2,
        "the tightest block in use (the first of two), not the next in order"
    );
    let second = h.allocate(&mib).unwrap();
    assert_eq!(second.block, 3);
    let large = h
        .allocate(&h.fit(2 * MIB, 1, AllocationType::Linear))
        .unwrap();
    assert_eq!(large.block, 1, "the 2 MiB range stayed whole");
    assert_eq!(h.vec.block_count(), 4);
    for l in live.into_iter().chain([small, second, large]) {
        h.free(l);
    }
}

#[test]
fn threads_fill_their_home_arenas_of_one_block() {
    let h = Harness::<FreeListAllocator>::new(2, BlockLimits::NONE, 64 * MIB, 1);
    let fit = h.fit(MIB, 1, AllocationType::Linear);
    // The first block (1/8 of 64 MiB = 8 MiB, too small to cut) takes turns; make a large
    // one directly so that it is cut into two arenas of 32 MiB.
    h.add_block(64 * MIB, MIB, 2);
    let arena_of = |l: &Live<FreeListAllocator>| l.suballocation.offset / (32 * MIB);
    let homes: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..2)
            .map(|_| {
                s.spawn(|| {
                    let ls: Vec<_> = (0..8).map(|_| h.allocate(&fit).unwrap()).collect();
                    let arenas: Vec<_> = ls.iter().map(arena_of).collect();
                    for l in ls {
                        h.free(l);
                    }
                    arenas
                })
            })
            .collect();
        handles.into_iter().map(|t| t.join().unwrap()).collect()
    });
    for arenas in &homes {
        assert!(
            arenas.iter().all(|&a| a == arenas[0]),
            "a thread stays in its home arena: {arenas:?}"
        );
    }
    assert_eq!(h.vec.block_count(), 1);
}

#[test]
fn a_thread_whose_home_is_full_goes_on_from_the_arena_opposite_its_home() {
    // Four home slots, one block of four 16 MiB arenas: the thread's home (its slot, in a
    // block cut for every slot), then the arena opposite it, then on around the block.
    let h = Harness::<FreeListAllocator>::new(4, BlockLimits::NONE, 64 * MIB, 1);
    let fit = h.fit(MIB, 1, AllocationType::Linear);
    h.add_block(64 * MIB, MIB, 4);
    let home = (thread_shard() & 3) as DeviceSize;
    let live: Vec<_> = (0..64).map(|_| h.allocate(&fit).unwrap()).collect();
    let arenas: Vec<DeviceSize> = live
        .iter()
        .map(|l| l.suballocation.offset / (16 * MIB))
        .collect();
    let expected: Vec<DeviceSize> = [home, home + 2, home + 3, home + 1]
        .iter()
        .flat_map(|&a| std::iter::repeat_n(a % 4, 16))
        .collect();
    assert_eq!(arenas, expected);
    assert_eq!(h.vec.block_count(), 1);
    for l in live {
        h.free(l);
    }
}

#[test]
fn threads_start_at_different_arenas_of_a_block_that_is_home_to_other_slots() {
    // Four home slots, one block of two 32 MiB arenas, home to slots 0 and 1 only. A thread of
    // slot 2 or 3 has no home there: it starts at the arena its slot would have (slot 2 at
    // arena 0, slot 3 at arena 1), so that two such threads do not queue on arena 0 together.
    let h = Harness::<FreeListAllocator>::new(4, BlockLimits::NONE, 64 * MIB, 1);
    let fit = h.fit(MIB, 1, AllocationType::Linear);
    h.add_block(64 * MIB, MIB, 2);
    let mut seen = [false; 4];
    // Each new thread takes the next shard; threads of other tests take some too, so go on
    // until both slots without a home here have been seen.
    for _ in 0..256 {
        let (slot, arena) = std::thread::scope(|s| {
            s.spawn(|| {
                let slot = thread_shard() & 3;
                let l = h.allocate(&fit).unwrap();
                let arena = l.suballocation.offset / (32 * MIB);
                h.free(l);
                (slot, arena)
            })
            .join()
            .unwrap()
        });
        assert_eq!(arena, (slot & 1) as DeviceSize, "slot {slot}");
        seen[slot] = true;
        if seen[2] && seen[3] {
            break;
        }
    }
    assert!(seen[2] && seen[3], "threads of slots 2 and 3 ran: {seen:?}");
    assert_eq!(h.vec.block_count(), 1);
}

/// Runs `f` on a new thread of home slot `slot` out of two (threads take shards in turn, and
/// threads of other tests take some, so one of the next few threads has it).
fn on_slot<T: Send>(slot: usize, f: impl Fn() -> T + Sync) -> T {
    for _ in 0..256 {
        let found = std::thread::scope(|s| {
            s.spawn(|| (thread_shard() & 1 == slot).then(&f))
                .join()
                .unwrap()
        });
        if let Some(result) = found {
            return result;
        }
    }
    panic!("no thread of slot {slot} in 256");
}

/// Two home slots, one block of two 32 MiB arenas (arena `s` is home to slot `s`): a thread
/// of slot 0 takes `taken` MiB of its home, then a thread of slot 1 fills its own and asks for
/// one MiB more. Returns where that last MiB went (block id, offset) and the first block's id.
fn overflow_after(taken: usize) -> ((usize, DeviceSize), usize) {
    let h = Harness::<FreeListAllocator>::new(2, BlockLimits::NONE, 64 * MIB, 1);
    let fit = h.fit(MIB, 1, AllocationType::Linear);
    h.add_block(64 * MIB, MIB, 2);
    let x = on_slot(0, || {
        (0..taken)
            .map(|_| h.allocate(&fit).unwrap())
            .collect::<Vec<_>>()
    });
    let y = on_slot(1, || {
        (0..33)
            .map(|_| h.allocate(&fit).unwrap())
            .collect::<Vec<_>>()
    });
    let first = y[0].block;
    assert!(x
        .iter()
        .all(|l| l.block == first && l.suballocation.offset < 32 * MIB));
    assert!(y[..32]
        .iter()
        .all(|l| l.block == first && l.suballocation.offset >= 32 * MIB));
    let last = &y[32];
    let out = ((last.block, last.suballocation.offset), first);
    for l in x.into_iter().chain(y) {
        h.free(l);
    }
    out
}

#[test]
fn a_thread_leaves_to_another_the_newest_blocks_arena_it_is_filling() {
    // Slot 0's home is more than half full and slot 0 allocated there last: slot 1 makes a
    // new block rather than share it.
    let ((block, _), first) = overflow_after(20);
    assert_ne!(
        block, first,
        "the overflow went into the arena slot 0 is filling"
    );
}

#[test]
fn a_thread_overflows_into_an_arena_another_thread_barely_uses() {
    // Slot 0 took a quarter of its home: slot 1 overflows into it, no new block.
    let ((block, offset), first) = overflow_after(8);
    assert_eq!(block, first);
    assert!(offset < 32 * MIB);
}

#[test]
fn a_block_set_aside_receives_nothing_even_from_a_caller_that_saw_it_listed() {
    // Two defragmentations of one vector plan side by side: one sets a block aside to empty
    // it after the other saw the block in the list and chose it as a destination. The
    // placement in the given block is refused, so the block being emptied receives nothing;
    // once it is back in the list it takes allocations again.
    let h = Harness::<FreeListAllocator>::new(1, BlockLimits::NONE, 64 * MIB, 1);
    let fit = h.fit(MIB, 1, AllocationType::Linear);
    h.add_block(64 * MIB, MIB, 1);
    let block = h.vec.with_blocks(|b| b[0].clone());
    let wrap = Live::of;
    assert!(h.vec.set_aside(&block, false));
    assert!(h.vec.allocate_in(&block, &fit, &wrap).is_none());
    assert!(block.is_empty(), "nothing landed in the block set aside");
    h.vec.put_back(&block);
    let placed = h
        .vec
        .allocate_in(&block, &fit, &wrap)
        .expect("listed again");
    h.free(placed);
}

#[test]
fn an_arena_only_a_defragmentation_moved_into_is_no_threads_to_leave() {
    // Allocations placed in a given block (a defragmentation's destinations) record no
    // slot: a thread whose home is full overflows into that arena, however full.
    let h = Harness::<FreeListAllocator>::new(2, BlockLimits::NONE, 64 * MIB, 1);
    let fit = h.fit(MIB, 1, AllocationType::Linear);
    h.add_block(64 * MIB, MIB, 2);
    let block = h.vec.with_blocks(|b| b[0].clone());
    let wrap = Live::of;
    let moved: Vec<_> = (0..20)
        .map(|_| h.vec.allocate_in(&block, &fit, &wrap).unwrap())
        .collect();
    assert!(moved.iter().all(|l| l.suballocation.offset < 32 * MIB));
    let y = on_slot(1, || {
        (0..33)
            .map(|_| h.allocate(&fit).unwrap())
            .collect::<Vec<_>>()
    });
    assert_eq!(h.vec.block_count(), 1);
    assert!(y[32].suballocation.offset < 32 * MIB);
    for l in moved.into_iter().chain(y) {
        h.free(l);
    }
}

#[test]
fn a_single_thread_overflows_into_the_other_arenas_of_the_newest_block() {
    // One thread fills its home and both halves of the other arena: never a second block.
    let h = Harness::<FreeListAllocator>::new(2, BlockLimits::NONE, 64 * MIB, 1);
    let fit = h.fit(MIB, 1, AllocationType::Linear);
    h.add_block(64 * MIB, MIB, 2);
    let live: Vec<_> = (0..64).map(|_| h.allocate(&fit).unwrap()).collect();
    assert_eq!(h.vec.block_count(), 1);
    assert!(live.iter().all(|l| l.block == live[0].block));
    for l in live {
        h.free(l);
    }
}

/// One step of a random sequence.
#[derive(Clone, Debug)]
enum Op {
    Alloc {
        size: DeviceSize,
        align_log: u32,
        ty: AllocationType,
    },
    Free(usize),
    FailNextMemory,
}

fn ops(max: DeviceSize, len: usize) -> impl Strategy<Value = Vec<Op>> {
    let ty = prop_oneof![
        Just(AllocationType::Linear),
        Just(AllocationType::NonLinear),
        Just(AllocationType::Unknown)
    ];
    let op = prop_oneof![
        6 => (crate::suballocator::testing::log_uniform_size(max), 0..=16u32, ty)
            .prop_map(|(size, align_log, ty)| Op::Alloc { size, align_log, ty }),
        4 => any::<usize>().prop_map(Op::Free),
        1 => Just(Op::FailNextMemory),
    ];
    proptest::collection::vec(op, 1..len)
}

/// Checks the vector against the shadow model of live ranges (by block id and offset).
fn check_model<S: Suballocator + Send + 'static>(
    h: &Harness<S>,
    model: &BTreeMap<(usize, DeviceSize), DeviceSize>,
    limits: BlockLimits,
) {
    let mut ids = Vec::new();
    h.vec.for_each_block(|b| {
        let id = b.memory().id;
        ids.push(id);
        // Ranges tile the block; every live range of the model lies in one allocated range;
        // the live count matches.
        let mut cursor = 0;
        let mut allocated = Vec::new();
        b.for_each_range(|r: crate::suballocator::RangeInfo| {
            assert_eq!(r.offset, cursor, "ranges tile the block");
            cursor += r.size;
            if matches!(r.kind, RangeKind::Allocated(_)) {
                allocated.push((r.offset, r.offset + r.size));
            }
        });
        assert_eq!(cursor, b.memory().size());
        let live: Vec<_> = model.range((id, 0)..(id + 1, 0)).collect();
        assert_eq!(b.allocation_count(), live.len(), "live count of block {id}");
        assert_eq!(
            b.is_empty(),
            live.is_empty(),
            "block {id}'s count of busy arenas"
        );
        for &(&(_, offset), &size) in &live {
            assert!(
                allocated
                    .iter()
                    .any(|&(s, e)| s <= offset && offset + size <= e),
                "live range {offset}+{size} is not allocated in block {id}"
            );
        }
    });
    // Live ranges never overlap (the model is keyed by block and offset).
    let mut prev: Option<(usize, DeviceSize)> = None;
    for (&(id, offset), &size) in model {
        if let Some((pid, pend)) = prev {
            assert!(
                pid != id || pend <= offset,
                "overlap in block {id} at {offset}"
            );
        }
        prev = Some((id, offset + size));
        assert!(ids.contains(&id), "a live range in a released block");
    }
    // Every memory object is a block of the vector, and the empty blocks kept beyond the
    // minimum add up to at most `limits.empty_kept` of the largest block.
    assert_eq!(
        h.live_memory.load(Ordering::SeqCst),
        ids.len(),
        "memory leaked"
    );
    let (mut empty_bytes, mut largest) = (0, 0);
    h.vec.for_each_block(|b| {
        largest = largest.max(b.memory().size());
        if b.is_empty() {
            empty_bytes += b.memory().size();
        }
    });
    assert!(
        h.empty_blocks() <= 1
            || ids.len() <= limits.min
            || empty_bytes <= largest * limits.empty_kept,
        "{} empty blocks ({empty_bytes} bytes) of {}",
        h.empty_blocks(),
        ids.len()
    );
    assert!(ids.len() <= limits.max);
}

fn random_run<S: Suballocator + Send + 'static>(
    ops: &[Op],
    arenas: usize,
    limits: BlockLimits,
    granularity: u64,
) {
    let h = Harness::<S>::new(arenas, limits, 32 * MIB, granularity);
    let mut live: Vec<Live<S>> = Vec::new();
    let mut model = BTreeMap::new();
    for op in ops {
        match *op {
            Op::Alloc {
                size,
                align_log,
                ty,
            } => {
                let fit = h.fit(size, 1 << align_log, ty);
                match h.allocate(&fit) {
                    Ok(l) => {
                        let s = l.suballocation;
                        assert!(fit.layout.alignment().is_aligned(s.offset));
                        assert_eq!(s.size, size);
                        assert!(
                            model.insert((l.block, s.offset), s.size).is_none(),
                            "two live allocations at one offset"
                        );
                        live.push(l);
                    }
                    Err(NewBlockError::Memory(_) | NewBlockError::Full { .. }) => {}
                    Err(NewBlockError::DoesNotFit | NewBlockError::NoSize) => {
                        // A fresh block of at least twice the request always holds it,
                        // unless it is too large for one or strictly aligned beyond it.
                        assert!(
                            size > 16 * MIB || (1 << align_log) > size,
                            "a fresh block refused {size} bytes at {}",
                            1u64 << align_log
                        );
                    }
                }
            }
            Op::Free(i) if !live.is_empty() => {
                let l = live.swap_remove(i % live.len());
                model.remove(&(l.block, l.suballocation.offset));
                h.free(l);
            }
            Op::Free(_) => {}
            Op::FailNextMemory => h.fail_next_memory.store(true, Ordering::SeqCst),
        }
        check_model(&h, &model, limits);
    }
    for l in live.drain(..) {
        model.remove(&(l.block, l.suballocation.offset));
        h.free(l);
    }
    check_model(&h, &model, limits);
    // Everything freed: the blocks kept are the minimum, or empty ones within the cache's
    // bound (checked by `check_model`).
    assert!(h.vec.block_count() <= limits.min.max(1) || h.empty_blocks() == h.vec.block_count());
    let vec = h.vec.clone();
    let counter = h.live_memory.clone();
    drop(h);
    drop(vec);
    assert_eq!(
        counter.load(Ordering::SeqCst),
        0,
        "memory left after dropping"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(crate::suballocator::testing::cases(48)))]

    #[test]
    fn random_sequences_keep_the_block_vector_consistent(
        ops in ops(24 * MIB, 300),
        arenas in prop_oneof![Just(1usize), Just(2), Just(4)],
        granularity in prop_oneof![Just(1u64), Just(1024), Just(65536)],
    ) {
        random_run::<FreeListAllocator>(&ops, arenas, BlockLimits::NONE, granularity);
    }

    #[test]
    fn limits_hold_on_random_sequences(
        ops in ops(4 * MIB, 200),
        min in 0usize..3,
        extra in 1usize..4,
    ) {
        random_run::<FreeListAllocator>(&ops, 1, BlockLimits::pool(min, min + extra), 1);
    }
}

/// Whether any arena of the vector could serve `fit`, asked of every suballocator directly
/// (no hint, no skipping); a success is undone at once.
fn any_arena_fits<S: Suballocator + Send + 'static>(h: &Harness<S>, fit: &Fit) -> bool {
    let mut found = false;
    h.vec.for_each_block(|b| {
        for arena in b.arenas() {
            if !found && fit.layout.alignment().is_aligned(arena.base()) {
                found = arena.try_without_hints(fit);
            }
        }
    });
    found
}

/// The review's case: a 16-byte request at 64 KiB alignment fails where a 4 KiB request at
/// the same alignment fits (a bounded search tries only the first range of each size class),
/// so a hint that recorded the first failure would skip an arena where the second fits.
#[test]
fn a_failure_of_a_smaller_request_does_not_hide_a_fitting_larger_one() {
    let h = Harness::<FreeListAllocator>::new(1, BlockLimits::NONE, 128 * KIB, 1);
    h.add_block(128 * KIB, 1, 1);
    let take = |size| h.allocate(&h.fit(size, 1, AllocationType::Linear)).unwrap();
    // Sixteen holes of 17 ..= 32 bytes (sixteen size classes) between spacers, far from any
    // 64 KiB boundary; a 4 KiB hole at 64 KiB; everything else allocated.
    let mut holes = Vec::new();
    let mut keep = vec![take(100)];
    let mut cursor = 100;
    for i in 0..16 {
        holes.push(take(17 + i));
        keep.push(take(100));
        cursor += 117 + i;
    }
    keep.push(take(64 * KIB - cursor));
    holes.push(take(4 * KIB));
    keep.push(take(64 * KIB - 4 * KIB));
    assert_eq!(holes.last().unwrap().suballocation.offset, 64 * KIB);
    assert_eq!(h.vec.block_count(), 1);
    for l in holes {
        h.free(l);
    }
    let wrap = Live::of;
    for size in [16, 4 * KIB] {
        let fit = h.fit(size, 64 * KIB, AllocationType::Linear);
        let fits = any_arena_fits(&h, &fit);
        let found = h.vec.allocate_existing(&fit, &wrap).unwrap();
        assert_eq!(found.is_some(), fits, "{size} bytes at 64 KiB");
        if let Some(l) = found {
            h.free(l);
        }
    }
    for l in keep {
        h.free(l);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(crate::suballocator::testing::cases(64)))]

    /// The failed-request hint may save work, never change an outcome: whenever the hinted
    /// search of the existing blocks finds no room, asking every arena's suballocator
    /// directly finds none either.
    #[test]
    fn the_failed_request_hint_never_changes_an_outcome(
        ops in ops(2 * MIB, 400),
        granularity in prop_oneof![Just(1u64), Just(1024)],
    ) {
        let h = Harness::<FreeListAllocator>::new(2, BlockLimits::NONE, 32 * MIB, granularity);
        let mut live = Vec::new();
        for op in &ops {
            match *op {
                Op::Alloc { size, align_log, ty } => {
                    let fit = h.fit(size, 1 << align_log, ty);
                    let wrap = Live::of;
                    match h.vec.allocate_existing(&fit, &wrap) {
                        Ok(Some(l)) => live.push(l),
                        Ok(None) => {
                            prop_assert!(
                                !any_arena_fits(&h, &fit),
                                "the hint skipped an arena that fits {size} bytes at {}",
                                1u64 << align_log
                            );
                            // Grow now and then, so that there are blocks to search.
                            if live.len() % 3 == 0 {
                                if let Ok(l) = h.allocate(&fit) {
                                    live.push(l);
                                }
                            }
                        }
                        Err(DoesNotFit) => {}
                    }
                }
                Op::Free(i) if !live.is_empty() => {
                    let l = live.swap_remove(i % live.len());
                    h.free(l);
                }
                _ => {}
            }
        }
        for l in live {
            h.free(l);
        }
    }
}
