//! The threads' fast try ([`fast`](super::super::fast)): it serves the first block's home
//! arena and the tightest arena in use without the list, never fills an empty block or one
//! set aside, and keeps no block's memory alive.

use super::*;

/// A thread's kept arena is reached without the block list: the thread allocates once (a
/// walk, which keeps its home arena of the first block), then another thread takes every copy
/// of the list (a walk would wait for one), and the thread allocates again, from its fast
/// try.
#[test]
fn the_fast_try_needs_no_copy_of_the_list() {
    let h = Harness::<FreeListAllocator>::new(1, BlockLimits::NONE, 64 * MIB, 1);
    let fit = h.fit(64 * KIB, 256, AllocationType::Linear);
    h.add_block(64 * MIB, MIB, 1);
    let (to_worker, work) = std::sync::mpsc::channel::<()>();
    let (to_main, report) = std::sync::mpsc::channel();
    std::thread::scope(|s| {
        let (h, fit) = (&h, &fit);
        let worker = s.spawn(move || {
            let first = h.allocate(fit).unwrap();
            to_main.send(None).unwrap();
            work.recv().unwrap();
            // Every copy of the list is held by the main thread now.
            let second = h.allocate(fit).unwrap();
            to_main.send(Some(second.suballocation.offset)).unwrap();
            (first, second)
        });
        assert_eq!(report.recv().unwrap(), None);
        let copies: Vec<_> = (0..h.vec.blocks.copies())
            .map(|_| h.vec.blocks.read())
            .collect();
        to_worker.send(()).unwrap();
        let offset = report
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("the allocation waited for the list");
        assert_eq!(
            offset,
            Some(64 * KIB),
            "next to the first, in the kept arena"
        );
        drop(copies);
        let (first, second) = worker.join().unwrap();
        assert_eq!(first.block, second.block);
        h.free(first);
        h.free(second);
    });
}

/// The tightest arena in use is reached without the block list too, and is the arena the
/// walk would take: with the first block full and two blocks in use, a thread's requests go
/// to the block whose room fits them best while another thread holds every copy of the list.
#[test]
fn the_fast_try_takes_the_tightest_arena_without_the_list() {
    let h = Harness::<FreeListAllocator>::new(1, BlockLimits::NONE, 64 * MIB, 1);
    for _ in 0..3 {
        h.add_block(4 * MIB, MIB, 1);
    }
    let fit = |size| h.fit(size, 256, AllocationType::Linear);
    let (to_worker, work) = std::sync::mpsc::channel::<()>();
    let (to_main, report) = std::sync::mpsc::channel();
    std::thread::scope(|s| {
        let (h, fit) = (&h, &fit);
        let worker = s.spawn(move || {
            // The first block full; the second with 3 MiB of room, the third with 512 KiB.
            let setup: Vec<_> = [4 * MIB, MIB, 3 * MIB + 512 * KIB]
                .into_iter()
                .map(|size| h.allocate(&fit(size)).unwrap())
                .collect();
            let blocks: Vec<_> = setup.iter().map(|l| l.block).collect();
            assert!(blocks[0] != blocks[1] && blocks[1] != blocks[2]);
            to_main.send(None).unwrap();
            work.recv().unwrap();
            // Every copy of the list is held by the main thread now.
            let snug = h.allocate(&fit(512 * KIB)).unwrap();
            let (snug_block, snug_offset) = (snug.block, snug.suballocation.offset);
            let loose = h.allocate(&fit(MIB)).unwrap();
            to_main
                .send(Some((
                    snug_block,
                    snug_offset,
                    loose.block,
                    loose.suballocation.offset,
                )))
                .unwrap();
            (blocks, setup, snug, loose)
        });
        assert_eq!(report.recv().unwrap(), None);
        let copies: Vec<_> = (0..h.vec.blocks.copies())
            .map(|_| h.vec.blocks.read())
            .collect();
        to_worker.send(()).unwrap();
        let placed = report
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("the allocations waited for the list")
            .unwrap();
        drop(copies);
        let (blocks, setup, snug, loose) = worker.join().unwrap();
        assert_eq!(
            placed,
            (blocks[2], 3 * MIB + 512 * KIB, blocks[1], MIB),
            "each in the tightest block in use, after what it holds"
        );
        for live in setup.into_iter().chain([snug, loose]) {
            h.free(live);
        }
    });
}

/// A block released while a thread keeps one of its arenas: the block's memory goes at once,
/// and so does its suballocator's bookkeeping (the arena keeps an empty suballocator, all of
/// it free), the arena takes no allocation again, and the thread's next allocation goes to a
/// new block.
#[test]
fn a_released_block_keeps_no_memory_through_a_threads_kept_arena() {
    let h = Harness::<Counted>::new(1, BlockLimits::NONE, 64 * MIB, 1);
    let fit = h.fit(64 * KIB, 256, AllocationType::Linear);
    std::thread::scope(|s| {
        s.spawn(|| {
            let a = h.allocate(&fit).unwrap();
            let b = h.allocate(&fit).unwrap();
            let arena = Arc::downgrade(&a.arena);
            let old_block = a.block;
            h.free(a);
            h.free(b);
            assert_eq!(COUNTED_DROPPED.load(Ordering::SeqCst), 0);
            assert_eq!(h.vec.release_empty_among(|_| true), 1);
            assert_eq!(
                h.live_memory.load(Ordering::SeqCst),
                0,
                "the thread's kept arena kept the block's memory"
            );
            let kept = arena.upgrade().expect("the thread keeps the arena");
            assert_eq!(
                COUNTED_DROPPED.load(Ordering::SeqCst),
                1,
                "the thread's kept arena kept the block's suballocator"
            );
            assert_eq!(kept.largest_free_hint(), kept.extent().1, "all of it free");
            assert!(
                kept.try_allocate_in_use(
                    fit.layout,
                    fit.allocation_type,
                    h.granularity,
                    fit.strategy
                )
                .is_none(),
                "an arena of a released block took an allocation"
            );
            let c = h.allocate(&fit).unwrap();
            assert_ne!(c.block, old_block);
            assert_eq!(kept.live(), 0);
            assert_eq!(h.live_memory.load(Ordering::SeqCst), 1);
            h.free(c);
        });
    });
}

/// Free lists that count how many of them were dropped (used by one test alone, so that the
/// count is its own).
struct Counted(FreeListAllocator);

static COUNTED_DROPPED: AtomicUsize = AtomicUsize::new(0);

impl Drop for Counted {
    fn drop(&mut self) {
        COUNTED_DROPPED.fetch_add(1, Ordering::SeqCst);
    }
}

// SAFETY: every call goes to the free list, which keeps the contract.
unsafe impl Suballocator for Counted {
    fn new(region_size: DeviceSize) -> Self {
        Counted(FreeListAllocator::new(region_size))
    }
    fn region_size(&self) -> DeviceSize {
        self.0.region_size()
    }
    fn allocate(
        &mut self,
        layout: DeviceLayout,
        allocation_type: AllocationType,
        granularity: DeviceAlignment,
    ) -> Result<Suballocation, SuballocatorError> {
        self.0.allocate(layout, allocation_type, granularity)
    }
    unsafe fn deallocate(&mut self, suballocation: Suballocation) {
        // SAFETY: forwarded from the caller.
        unsafe { self.0.deallocate(suballocation) }
    }
    fn free_size(&self) -> DeviceSize {
        self.0.free_size()
    }
    fn largest_free_range(&self) -> DeviceSize {
        self.0.largest_free_range()
    }
    fn allocation_count(&self) -> usize {
        self.0.allocation_count()
    }
    fn reset(&mut self) {
        self.0.reset()
    }
    fn for_each_range(&self, f: &mut dyn FnMut(crate::suballocator::RangeInfo)) {
        self.0.for_each_range(f)
    }
}

/// A block set aside by a defragmentation while a thread keeps one of its arenas, with live
/// allocations in it: the arena is closed to the fast try until the block is back.
#[test]
fn a_block_set_aside_is_closed_to_the_fast_try_until_it_is_back() {
    let h = Harness::<FreeListAllocator>::new(1, BlockLimits::NONE, 64 * MIB, 1);
    let fit = h.fit(64 * KIB, 256, AllocationType::Linear);
    h.add_block(64 * MIB, MIB, 1);
    let try_in_use = |arena: &Arena<FreeListAllocator, Mock>| {
        arena.try_allocate_in_use(fit.layout, fit.allocation_type, h.granularity, fit.strategy)
    };
    std::thread::scope(|s| {
        s.spawn(|| {
            let a = h.allocate(&fit).unwrap();
            let block = h.vec.with_blocks(|b| b[0].clone());
            assert!(h.vec.set_aside(&block, false));
            assert!(
                try_in_use(&a.arena).is_none(),
                "a closed arena took an allocation"
            );
            // The thread's next allocation goes elsewhere: a new block.
            let b = h.allocate(&fit).unwrap();
            assert_ne!(b.block, a.block);
            assert_eq!(
                block.allocation_count(),
                1,
                "the block set aside received nothing"
            );
            h.vec.put_back(&block);
            let placed = try_in_use(&a.arena).expect("open again").unwrap();
            // SAFETY: just allocated in this arena, freed once.
            unsafe { a.arena.free(placed.suballocation) };
            h.free(a);
            h.free(b);
        });
    });
}

/// A vector dropped while a thread keeps one of its arenas: its memory goes with it; a new
/// vector made afterwards (perhaps at the same address) is never served from the old arena.
#[test]
fn a_dropped_vector_keeps_no_memory_and_lends_nothing_to_the_next() {
    std::thread::scope(|s| {
        s.spawn(|| {
            let h = Harness::<FreeListAllocator>::new(1, BlockLimits::NONE, 64 * MIB, 1);
            let fit = h.fit(64 * KIB, 256, AllocationType::Linear);
            let a = h.allocate(&fit).unwrap();
            let b = h.allocate(&fit).unwrap();
            let live_memory = h.live_memory.clone();
            let arena = Arc::downgrade(&a.arena);
            h.free(b);
            drop(h);
            // The vector is gone; its block lives on for `a`, then goes with it.
            assert_eq!(live_memory.load(Ordering::SeqCst), 1);
            // SAFETY: `a` came from this arena and is freed once.
            unsafe { a.arena.free(a.suballocation) };
            drop(a.arena);
            assert_eq!(live_memory.load(Ordering::SeqCst), 0);
            // Only the thread's cache holds the arena now. Held here from now on, so that its
            // address is no other arena's even once the cache lets it go (other tests' vectors
            // take numbers too, and one of the next vectors may take its place in the cache).
            let kept = arena.upgrade().expect("the thread keeps the arena");
            assert_eq!(kept.live(), 0);
            for _ in 0..4 {
                let h = Harness::<FreeListAllocator>::new(1, BlockLimits::NONE, 64 * MIB, 1);
                let fit = h.fit(64 * KIB, 256, AllocationType::Linear);
                let x = h.allocate(&fit).unwrap();
                let y = h.allocate(&fit).unwrap();
                assert!(!Arc::ptr_eq(&x.arena, &kept) && !Arc::ptr_eq(&y.arena, &kept));
                assert_eq!(kept.live(), 0, "the old vector's arena took an allocation");
                h.free(x);
                h.free(y);
            }
        });
    });
}

/// Threads allocating and freeing side by side while another thread releases empty blocks
/// and sets blocks aside and back: no two live ranges overlap, no block set aside receives
/// an allocation while it is out, and every block's memory is freed at the end.
#[test]
fn threads_allocate_while_blocks_are_released_and_set_aside() {
    use std::sync::atomic::AtomicBool;
    let h = Harness::<FreeListAllocator>::new(2, BlockLimits::NONE, 4 * MIB, 1);
    let stop = AtomicBool::new(false);
    let aside_received = AtomicUsize::new(0);
    // Every live range, by block and offset: a new one must not overlap its neighbours.
    let ranges = parking_lot::Mutex::new(BTreeMap::<(usize, DeviceSize), DeviceSize>::new());
    let add = |l: &Live<FreeListAllocator>| {
        let (offset, size) = (l.suballocation.offset, l.suballocation.size);
        let mut ranges = ranges.lock();
        if let Some((&(b, o), &s)) = ranges.range(..(l.block, offset)).next_back() {
            assert!(b != l.block || o + s <= offset, "overlaps the range before");
        }
        if let Some((&(b, o), _)) = ranges.range((l.block, offset)..).next() {
            assert!(
                b != l.block || offset + size <= o,
                "overlaps the range after"
            );
        }
        ranges.insert((l.block, offset), size);
    };
    let remove = |l: &Live<FreeListAllocator>| {
        ranges.lock().remove(&(l.block, l.suballocation.offset));
    };
    std::thread::scope(|s| {
        for t in 0..3u64 {
            let (h, stop, add, remove) = (&h, &stop, &add, &remove);
            s.spawn(move || {
                let mut live: Vec<Live<FreeListAllocator>> = Vec::new();
                let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ t;
                while !stop.load(Ordering::Relaxed) {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    if live.len() < 64 && (x & 3 != 0 || live.is_empty()) {
                        let size = 256 * (1 + (x >> 8) % 64);
                        let l = h
                            .allocate(&h.fit(size, 256, AllocationType::Linear))
                            .unwrap();
                        add(&l);
                        live.push(l);
                    } else {
                        let i = (x >> 16) as usize % live.len();
                        let l = live.swap_remove(i);
                        remove(&l);
                        h.free(l);
                    }
                    if live.len() == 64 {
                        for l in live.drain(..) {
                            remove(&l);
                            h.free(l);
                        }
                    }
                }
                for l in live {
                    remove(&l);
                    h.free(l);
                }
            });
        }
        let (h, stop, aside_received) = (&h, &stop, &aside_received);
        s.spawn(move || {
            for round in 0..300 {
                h.vec.release_empty_among(|_| true);
                if let Some(block) = h.vec.with_blocks(|b| b.first().cloned()) {
                    if h.vec.set_aside(&block, round % 2 == 0) {
                        let before = block.allocation_count();
                        std::thread::yield_now();
                        if block.allocation_count() > before {
                            aside_received.fetch_add(1, Ordering::Relaxed);
                        }
                        h.vec.put_back(&block);
                    }
                }
                std::thread::yield_now();
            }
            stop.store(true, Ordering::Relaxed);
        });
    });
    assert_eq!(
        aside_received.load(Ordering::Relaxed),
        0,
        "a block set aside received allocations"
    );
    assert!(ranges.lock().is_empty());
    h.vec.for_each_block(|b| assert!(b.is_empty()));
    let blocks = h.block_sizes().len();
    assert_eq!(h.vec.release_empty_among(|_| true), blocks);
    assert_eq!(h.live_memory.load(Ordering::SeqCst), 0);
}
