//! The empty blocks a default block vector keeps for reuse, against its
//! [high-water mark](crate::allocator::block_vec::high_water): kept memory never raises the
//! most memory reserved, it is given back before a new block is made and when the memory
//! runs out, and it goes once the memory in use stays lower for long enough.

use super::*;
use crate::allocator::block_vec::high_water::HIGH_WATER_EPOCH;

/// One sizable request (more than 8 MiB of a 64 MiB block: a block of its own size) per size.
fn sizable(h: &Harness<FreeListAllocator>, sizes: &[DeviceSize]) -> Vec<Live<FreeListAllocator>> {
    sizes
        .iter()
        .map(|&s| h.allocate(&h.fit(s, 256, AllocationType::Linear)).unwrap())
        .collect()
}

/// Bytes of all blocks, and of the blocks that hold allocations.
fn reserved_and_in_use<S: Suballocator + Send + 'static>(h: &Harness<S>) -> (u64, u64) {
    let (mut reserved, mut in_use) = (0, 0);
    h.vec.for_each_block(|b| {
        reserved += b.memory().size();
        if !b.is_empty() {
            in_use += b.memory().size();
        }
    });
    (reserved, in_use)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(crate::suballocator::testing::cases(64)))]

    /// On random sequences of large and small requests (sizable ones get blocks of their
    /// own size), the memory reserved rises above its peak so far only to the blocks in use
    /// (the request's new block included): no empty block is kept then. Memory that fails
    /// once is asked for again after the kept blocks are given back, so a request fails
    /// only when nothing was kept.
    #[test]
    fn kept_memory_never_raises_the_peak(
        ops in ops(30 * MIB, 300),
        preferred_block in prop::sample::select(vec![0, 64 * MIB]),
    ) {
        let limits = BlockLimits::default_vector(preferred_block);
        let h = Harness::<FreeListAllocator>::new(1, limits, 64 * MIB, 1);
        let mut live: Vec<Live<FreeListAllocator>> = Vec::new();
        let mut peak = 0;
        for op in &ops {
            match *op {
                Op::Alloc { size, align_log, ty } => {
                    let failing = h.fail_next_memory.load(Ordering::SeqCst);
                    let result = h.allocate(&h.fit(size, 1 << align_log.min(12), ty));
                    let (reserved, in_use) = reserved_and_in_use(&h);
                    prop_assert!(
                        reserved <= peak.max(in_use),
                        "reserved {reserved} above the peak {peak} and the {in_use} in use"
                    );
                    match result {
                        Ok(l) => live.push(l),
                        Err(NewBlockError::Memory(_)) => {
                            prop_assert!(failing);
                            prop_assert_eq!(h.empty_blocks(), 0, "kept blocks not given back");
                        }
                        Err(e) => prop_assert!(false, "{:?}", e),
                    }
                    peak = peak.max(reserved);
                }
                Op::Free(i) if !live.is_empty() => {
                    let (before, _) = reserved_and_in_use(&h);
                    h.free(live.swap_remove(i % live.len()));
                    prop_assert!(reserved_and_in_use(&h).0 <= before, "a free reserved memory");
                }
                Op::Free(_) => {}
                Op::FailNextMemory => h.fail_next_memory.store(true, Ordering::SeqCst),
            }
        }
        for l in live {
            h.free(l);
        }
        // Nothing in use: what stays is within the mark (or the one block always kept).
        let (reserved, _) = reserved_and_in_use(&h);
        let mark = h.vec.high_water.lock().mark();
        prop_assert!(reserved <= mark || h.empty_blocks() <= 1);
    }
}

/// Four blocks' worth, all in use, then freed: all stay (they were in use a moment ago). A
/// request none of them fits gives back only as many as the new block needs to stay under
/// the mark, and a request whose new block alone reaches past the mark gives back all.
#[test]
fn a_new_block_gives_back_only_what_the_mark_needs() {
    let h = Harness::<FreeListAllocator>::new(1, BlockLimits::NONE, 64 * MIB, 1);
    // Sizable requests (more than 8 MiB): blocks of their own size.
    let sizes = [24 * MIB, 20 * MIB, 16 * MIB, 12 * MIB];
    let live = sizable(&h, &sizes);
    assert_eq!(h.block_sizes(), sizes);
    assert_eq!(h.vec.high_water.lock().mark(), 72 * MIB);
    for l in live {
        h.free(l);
    }
    assert_eq!(h.block_sizes(), sizes, "all kept: 72 MiB were in use");
    // 30 MiB: none of them fits it. 30 + 24 + 16 = 70 stay within 72 MiB.
    let a = h
        .allocate(&h.fit(30 * MIB, 256, AllocationType::Linear))
        .unwrap();
    assert_eq!(h.block_sizes(), [24 * MIB, 16 * MIB, 30 * MIB]);
    assert_eq!(h.live_memory.load(Ordering::SeqCst), 3);
    // 31 MiB with 30 in use: 61 MiB leaves room for none of the empty blocks but... 24 + 61
    // is more than 72, 16 + 61 too: both go, and the mark stays.
    let b = h
        .allocate(&h.fit(31 * MIB, 256, AllocationType::Linear))
        .unwrap();
    assert_eq!(h.block_sizes(), [30 * MIB, 31 * MIB]);
    assert_eq!(h.vec.high_water.lock().mark(), 72 * MIB);
    h.free(a);
    h.free(b);
    // A request larger than the mark: every kept block goes, the mark rises to it.
    let c = h
        .allocate(&h.fit(80 * MIB, 256, AllocationType::Linear))
        .unwrap();
    assert_eq!(h.block_sizes(), [80 * MIB]);
    assert_eq!(h.vec.high_water.lock().mark(), 80 * MIB);
    h.free(c);
}

/// Blocks made for sizable requests are a fraction of the preferred block, and the cache
/// counts in preferred blocks: twelve 10 MiB blocks in use, eight freed, all eight stay (80
/// MiB, under the 120 MiB mark and four 64 MiB blocks' worth), and eight requests of their
/// size take them back without a new memory object. Counted in the largest block (10 MiB),
/// four would stay and the other four requests would each make one. Past the budget, one
/// block (the largest) stays, as before.
#[test]
fn kept_memory_counts_in_preferred_blocks() {
    for (preferred_block, over_budget, kept) in
        [(64 * MIB, false, 8), (0, false, 4), (64 * MIB, true, 1)]
    {
        let limits = BlockLimits::default_vector(preferred_block);
        let h = Harness::<FreeListAllocator>::new(1, limits, 64 * MIB, 1);
        h.over_budget.store(over_budget, Ordering::SeqCst);
        let mut live = sizable(&h, &[10 * MIB; 12]);
        assert_eq!(h.block_sizes(), [10 * MIB; 12]);
        for l in live.drain(4..) {
            h.free(l);
        }
        let case = format!("preferred {preferred_block}, over budget {over_budget}");
        assert_eq!(h.empty_blocks(), kept, "{case}");
        let made = h.live_memory.load(Ordering::SeqCst);
        live.extend(sizable(&h, &[10 * MIB; 8]));
        assert_eq!(
            h.live_memory.load(Ordering::SeqCst) - made,
            12 - 4 - kept,
            "{case}: memory objects made"
        );
        assert_eq!(h.empty_blocks(), 0, "{case}");
        for l in live {
            h.free(l);
        }
    }
}

/// The memory runs out while blocks are kept: the vector gives its own kept blocks back and
/// asks once more (the memory seam fails once), so kept memory never fails a request.
#[test]
fn kept_blocks_go_when_the_memory_runs_out() {
    let h = Harness::<FreeListAllocator>::new(1, BlockLimits::NONE, 64 * MIB, 1);
    let live = sizable(&h, &[30 * MIB, 20 * MIB, 10 * MIB]);
    for l in live {
        h.free(l);
    }
    assert_eq!(h.empty_blocks(), 3);
    // 31 MiB fits none: its block and the 20 MiB one stay within the 60 MiB mark, the
    // others go; then the memory fails, and the 20 MiB block goes too before the memory is
    // asked for again.
    h.fail_next_memory.store(true, Ordering::SeqCst);
    let a = h
        .allocate(&h.fit(31 * MIB, 256, AllocationType::Linear))
        .expect("made once the kept block is given back");
    assert_eq!(h.block_sizes(), [31 * MIB]);
    assert_eq!(h.live_memory.load(Ordering::SeqCst), 1);
    h.free(a);
    // With nothing kept to give back, the failure stands.
    let fresh = Harness::<FreeListAllocator>::new(1, BlockLimits::NONE, 64 * MIB, 1);
    fresh.fail_next_memory.store(true, Ordering::SeqCst);
    let failed = fresh.allocate(&fresh.fit(40 * MIB, 256, AllocationType::Linear));
    assert!(matches!(failed, Err(NewBlockError::Memory(_))));
    assert_eq!(fresh.live_memory.load(Ordering::SeqCst), 0);
}

/// The mark decays: once the memory in use stays at one small block for two epochs of
/// samples, the large empty blocks kept from before are given back: only what fits the
/// mark stays.
#[test]
fn kept_memory_decays_when_less_is_in_use() {
    let h = Harness::<FreeListAllocator>::new(1, BlockLimits::NONE, 64 * MIB, 1);
    let sizes = [30 * MIB, 28 * MIB, 26 * MIB, 9 * MIB];
    let live = sizable(&h, &sizes);
    for l in live {
        h.free(l);
    }
    assert_eq!(h.block_sizes(), sizes);
    // From now on one 9 MiB request at a time, in the 9 MiB block (it fits it well): each
    // free empties it, a sample of 9 MiB in use.
    for round in 0..2 * HIGH_WATER_EPOCH {
        let l = h
            .allocate(&h.fit(9 * MIB, 256, AllocationType::Linear))
            .unwrap();
        assert_eq!(l.block, 3, "round {round}");
        h.free(l);
        if round < HIGH_WATER_EPOCH {
            assert_eq!(
                h.block_sizes(),
                sizes,
                "round {round}: the mark still holds"
            );
        }
    }
    // The mark is 9 MiB now: only the 9 MiB block stays.
    assert_eq!(h.vec.high_water.lock().mark(), 9 * MIB);
    assert_eq!(h.block_sizes(), [9 * MIB]);
}

/// Memory objects of the type outside the blocks (dedicated allocations) count as memory in
/// use: before one is made, the kept blocks give way as far as the mark needs, as before a
/// new block; once it is made, it is part of the next samples.
#[test]
fn memory_outside_the_blocks_counts_as_in_use() {
    let outside = Arc::new(AtomicU64::new(0));
    let h = Harness::<FreeListAllocator> {
        vec: BlockVec::new_counting(1, BlockLimits::NONE, outside.clone()),
        ..Harness::new(1, BlockLimits::NONE, 64 * MIB, 1)
    };
    let live = sizable(&h, &[30 * MIB, 20 * MIB, 10 * MIB]);
    for l in live {
        h.free(l);
    }
    assert_eq!(h.vec.high_water.lock().mark(), 60 * MIB);
    // 25 MiB outside: 35 MiB of room under the mark, the 30 MiB block stays.
    assert_eq!(h.vec.make_room_outside(25 * MIB), 2);
    assert_eq!(h.block_sizes(), [30 * MIB]);
    outside.fetch_add(25 * MIB, Ordering::SeqCst);
    h.vec.outside_made();
    assert_eq!(h.vec.high_water.lock().mark(), 60 * MIB);
    // 40 MiB more outside: with 25 in use, past the mark: the last kept block goes.
    assert_eq!(h.vec.make_room_outside(40 * MIB), 1);
    assert!(h.block_sizes().is_empty());
    outside.fetch_add(40 * MIB, Ordering::SeqCst);
    h.vec.outside_made();
    assert_eq!(h.vec.high_water.lock().mark(), 65 * MIB, "a sample");
    // A block made now (16 MiB, the first of a growing vector): its sample counts the
    // memory outside with it; emptied, it stays.
    let a = h
        .allocate(&h.fit(8 * MIB, 256, AllocationType::Linear))
        .unwrap();
    assert_eq!(
        h.vec.high_water.lock().mark(),
        65 * MIB + h.block_sizes()[0]
    );
    h.free(a);
    assert_eq!(h.empty_blocks(), 1);
    // Outside memory gone, a dedicated allocation smaller than the mark: the kept block
    // stays under it.
    outside.store(0, Ordering::SeqCst);
    assert_eq!(h.vec.make_room_outside(10 * MIB), 0);
    // A custom pool's vector (no mark) never gives way.
    let pool = Harness::<FreeListAllocator>::new(1, BlockLimits::pool(0, 4), 64 * MIB, 1);
    pool.add_block(8 * MIB, MIB, 1);
    assert_eq!(pool.vec.make_room_outside(1 << 40), 0);
    assert_eq!(pool.empty_blocks(), 1);
}

/// Another vector is about to take the allocator past its peak: the kept blocks give back
/// at least what is asked, the smallest that covers it first, and never below the minimum
/// block count; a custom pool's vector gives nothing.
#[test]
fn kept_blocks_give_back_what_another_vector_needs() {
    let h = Harness::<FreeListAllocator>::new(1, BlockLimits::NONE, 64 * MIB, 1);
    let live = sizable(&h, &[30 * MIB, 20 * MIB, 10 * MIB, 12 * MIB]);
    let mut live = live.into_iter();
    let held = live.next().unwrap();
    for l in live {
        h.free(l);
    }
    assert_eq!(h.block_sizes(), [30 * MIB, 20 * MIB, 10 * MIB, 12 * MIB]);
    assert_eq!(h.vec.try_release_kept_bytes(0), 0);
    // 11 MiB: the 12 MiB block covers it.
    assert_eq!(h.vec.try_release_kept_bytes(11 * MIB), 12 * MIB);
    assert_eq!(h.block_sizes(), [30 * MIB, 20 * MIB, 10 * MIB]);
    // 25 MiB: none covers it: the largest (20), then the 10 covering the 5 left.
    assert_eq!(h.vec.try_release_kept_bytes(25 * MIB), 30 * MIB);
    assert_eq!(h.block_sizes(), [30 * MIB], "the block in use stays");
    assert_eq!(h.vec.try_release_kept_bytes(1 << 40), 0);
    h.free(held);
    // A custom pool's kept block stays (its own rule keeps one).
    let pool = Harness::<FreeListAllocator>::new(1, BlockLimits::pool(0, 4), 64 * MIB, 1);
    pool.add_block(8 * MIB, MIB, 1);
    assert_eq!(pool.vec.try_release_kept_bytes(MIB), 0);
    // A list another thread holds: nothing released, no wait for good.
    let h = Harness::<FreeListAllocator>::new(1, BlockLimits::NONE, 64 * MIB, 1);
    for l in sizable(&h, &[10 * MIB]) {
        h.free(l);
    }
    let held = h.vec.blocks.write();
    assert_eq!(h.vec.try_release_kept_bytes(MIB), 0);
    drop(held);
    assert_eq!(h.vec.try_release_kept_bytes(MIB), 10 * MIB);
}

/// Neighbours that say a fixed number of bytes is over the peak, and record what they hear.
struct FakeNeighbours {
    over: Arc<AtomicU64>,
    asked: Arc<AtomicU64>,
    epochs: Arc<AtomicU64>,
}

impl Neighbours for FakeNeighbours {
    fn make_way(&self, size: DeviceSize) -> DeviceSize {
        self.asked.store(size, Ordering::SeqCst);
        self.over.load(Ordering::SeqCst)
    }

    fn epoch_passed(&self) {
        self.epochs.fetch_add(1, Ordering::SeqCst);
    }
}

/// The allocator's rule for its peak: what its neighbours say is still over the peak once the
/// other vectors gave theirs back, the vector gives back of its own kept blocks (beyond what
/// its mark asks), before a new block and before a dedicated allocation of its type.
#[test]
fn the_peak_guard_takes_the_vectors_own_kept_blocks_last() {
    let h = Harness::<FreeListAllocator>::new(1, BlockLimits::NONE, 64 * MIB, 1);
    let over = Arc::new(AtomicU64::new(0));
    let asked = Arc::new(AtomicU64::new(0));
    h.vec.set_neighbours(Box::new(FakeNeighbours {
        over: over.clone(),
        asked: asked.clone(),
        epochs: Arc::default(),
    }));
    let live = sizable(&h, &[30 * MIB, 20 * MIB, 10 * MIB, 12 * MIB]);
    for l in live {
        h.free(l);
    }
    // A dedicated allocation of 5 MiB: 30 + 20 + 12 stay within the 72 MiB mark (the 10
    // goes), but the guard says 11 MiB are over the peak: the 12 MiB block goes too.
    over.store(11 * MIB, Ordering::SeqCst);
    assert_eq!(h.vec.make_room_outside(5 * MIB), 2);
    assert_eq!(asked.load(Ordering::SeqCst), 5 * MIB);
    assert_eq!(h.block_sizes(), [30 * MIB, 20 * MIB]);
    // A new block for a 40 MiB request: the mark (72 MiB) keeps 30 MiB beside it; the
    // guard says 25 MiB over: the 30 MiB block goes too.
    over.store(25 * MIB, Ordering::SeqCst);
    let l = h
        .allocate(&h.fit(40 * MIB, 256, AllocationType::Linear))
        .unwrap();
    assert_eq!(h.block_sizes(), [40 * MIB]);
    // Nothing over: nothing more goes.
    over.store(0, Ordering::SeqCst);
    h.free(l);
    assert_eq!(h.vec.make_room_outside(MIB), 0);
    assert_eq!(h.block_sizes(), [40 * MIB]);
}

/// A vector whose blocks stay as they are while a neighbour's mark passes a whole epoch keeps
/// one empty block, and its mark starts over; a vector that takes samples of
/// its own keeps what its mark allows. Its own epochs are told to its neighbours.
#[test]
fn an_idle_vector_keeps_one_empty_block_after_a_whole_epoch_of_a_neighbour() {
    let h = Harness::<FreeListAllocator>::new(1, BlockLimits::NONE, 64 * MIB, 1);
    let epochs = Arc::new(AtomicU64::new(0));
    h.vec.set_neighbours(Box::new(FakeNeighbours {
        over: Arc::default(),
        asked: Arc::default(),
        epochs: epochs.clone(),
    }));
    let sizes = [30 * MIB, 20 * MIB, 10 * MIB];
    let live = sizable(&h, &sizes);
    let mut live = live.into_iter();
    let held = live.next().unwrap();
    for l in live {
        h.free(l);
    }
    assert_eq!(h.block_sizes(), sizes);
    // Its own samples (the frees that emptied blocks) count: the first epoch elsewhere
    // only notes that it sampled.
    h.vec.neighbour_epoch_passed();
    assert_eq!(h.block_sizes(), sizes);
    h.vec.neighbour_epoch_passed();
    assert_eq!(
        h.block_sizes(),
        [30 * MIB, 20 * MIB],
        "a whole epoch idle: the largest empty one stays"
    );
    assert_eq!(
        h.vec.high_water.lock().mark(),
        30 * MIB,
        "the mark starts over"
    );
    // Its last allocation goes: under the mark that started over (30 MiB), only the 30 MiB
    // block stays. That free is a sample of its own: it is active again.
    h.free(held);
    assert_eq!(h.block_sizes(), [30 * MIB]);
    h.vec.neighbour_epoch_passed();
    h.vec.neighbour_epoch_passed();
    assert_eq!(h.block_sizes(), [30 * MIB]);
    // Its own epochs are told: one per HIGH_WATER_EPOCH samples.
    assert_eq!(epochs.load(Ordering::SeqCst), 0);
    for _ in 0..HIGH_WATER_EPOCH {
        let l = h
            .allocate(&h.fit(20 * MIB, 256, AllocationType::Linear))
            .unwrap();
        h.free(l);
    }
    assert_eq!(epochs.load(Ordering::SeqCst), 1);
    assert_eq!(h.block_sizes(), [30 * MIB]);
    // A custom pool's vector (no mark) never gives way.
    let pool = Harness::<FreeListAllocator>::new(1, BlockLimits::pool(0, 4), 64 * MIB, 1);
    pool.add_block(8 * MIB, MIB, 1);
    pool.add_block(8 * MIB, MIB, 1);
    for _ in 0..4 {
        pool.vec.neighbour_epoch_passed();
    }
    assert_eq!(pool.empty_blocks(), 2);
}
