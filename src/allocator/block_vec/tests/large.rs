//! Large requests in a block vector: the best-fit walk picks what the sorted search would,
//! and a block's count of busy arenas follows its arenas, so that the empty-block cache
//! sees every block that empties, whichever arena empties last.

use super::*;
use crate::allocator::placement;

/// The arena the best-fit search must take for `fit`, asked before it runs: among the
/// arenas whose hints admit the request and whose suballocator can serve it now (asked
/// directly, undone at once), the one with the smallest published largest free range, the
/// first in search order among equals, where an empty block that the request does not fit
/// well ([`placement::fits_empty_block_well`]) ranks after all the others. `None` when no
/// arena can serve it.
fn expected_best_fit<S: Suballocator + Send + 'static>(
    h: &Harness<S>,
    fit: &Fit,
) -> Option<Arc<Arena<S, Mock>>> {
    let mut best: Option<(DeviceSize, Arc<Arena<S, Mock>>)> = None;
    for block in h.vec.with_blocks(|b| b.to_vec()) {
        let loose = block.is_empty()
            && !placement::fits_empty_block_well(block.memory().size(), fit.layout.size());
        for arena in block.arenas() {
            let hint = arena.largest_free_hint() + if loose { 1 << 62 } else { 0 };
            if arena.may_fit(fit.layout, fit.allocation_type)
                && arena.try_without_hints(fit)
                && best.as_ref().is_none_or(|(b, _)| hint < *b)
            {
                best = Some((hint, arena.clone()));
            }
        }
    }
    best.map(|(_, a)| a)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(crate::suballocator::testing::cases(48)))]

    /// On one thread (no arena busy), every large request lands in the arena of
    /// [`expected_best_fit`], and fails only when there is none: the one-comparison walk
    /// admits exactly the arenas whose hint is at least the request, keeps the smallest,
    /// and the fallback keeps the sorted order.
    #[test]
    fn the_best_fit_walk_takes_the_tightest_arena_that_serves_the_request(
        ops in ops(24 * MIB, 200),
        arenas in prop_oneof![Just(1usize), Just(2), Just(4)],
    ) {
        // Preferred 32 MiB: requests above 512 KiB search for the best fit.
        let h = Harness::<FreeListAllocator>::new(arenas, BlockLimits::NONE, 32 * MIB, 1);
        let wrap = Live::of;
        let mut live = Vec::new();
        let mut searched = 0;
        for op in &ops {
            match *op {
                Op::Alloc { size, align_log, ty } => {
                    let fit = h.fit(size, 1 << align_log, ty);
                    if !fit.best_fit {
                        if let Ok(l) = h.allocate(&fit) {
                            live.push(l);
                        }
                        continue;
                    }
                    let expected = expected_best_fit(&h, &fit);
                    match h.vec.allocate_existing(&fit, &wrap) {
                        Ok(Some(l)) => {
                            searched += 1;
                            let e = expected.expect("placed where no arena could serve it");
                            prop_assert!(
                                Arc::ptr_eq(&l.arena, &e),
                                "{size} bytes at {}: hint {} taken, {} expected",
                                1u64 << align_log,
                                l.arena.largest_free_hint(),
                                e.largest_free_hint()
                            );
                            live.push(l);
                        }
                        Ok(None) => {
                            prop_assert!(expected.is_none(), "an arena could serve {size} bytes");
                            // Grow, so that there are blocks to choose from.
                            if let Ok(l) = h.allocate(&fit) {
                                live.push(l);
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
        prop_assume!(searched > 0);
    }
}

/// Two blocks of two arenas, each with an allocation in both arenas, in a vector that keeps
/// only one block's worth of empty memory. A block whose arenas empty one after the other is
/// empty only after the second; when the second block empties (by either arena last), the
/// cache's rule releases one of them, and only then.
#[test]
fn a_block_empties_when_its_last_busy_arena_does() {
    for second_last in [0, 1] {
        let limits = BlockLimits {
            min: 0,
            max: usize::MAX,
            empty_kept: 1,
            high_water: false,
            preferred_block: 0,
        };
        let h = Harness::<FreeListAllocator>::new(2, limits, 64 * MIB, 1);
        for _ in 0..2 {
            h.add_block(64 * MIB, MIB, 2);
        }
        let blocks = h.vec.with_blocks(|b| b.to_vec());
        assert!(blocks.iter().all(|b| b.arenas().len() == 2 && b.is_empty()));
        let fit = h.fit(MIB, 1, AllocationType::Linear);
        let wrap = Live::of;
        // One allocation in each arena of each block: [block][arena].
        let mut live: Vec<Vec<Option<Live<FreeListAllocator>>>> = blocks
            .iter()
            .map(|b| {
                b.arenas()
                    .iter()
                    .map(|a| {
                        let placed = a
                            .try_allocate(
                                fit.layout,
                                fit.allocation_type,
                                fit.granularity,
                                true,
                                fit.strategy,
                            )
                            .unwrap()
                            .unwrap();
                        Some(wrap(a, placed))
                    })
                    .collect()
            })
            .collect();
        assert!(blocks.iter().all(|b| !b.is_empty()));
        let mut free = |b: usize, a: usize| h.free(live[b][a].take().unwrap());
        free(0, 1);
        assert!(!blocks[0].is_empty(), "arena 0 of block 0 still holds one");
        free(0, 0);
        assert!(blocks[0].is_empty());
        assert_eq!(
            h.vec.block_count(),
            2,
            "one empty block is within the cache"
        );
        free(1, 1 - second_last);
        assert!(!blocks[1].is_empty());
        assert_eq!(h.vec.block_count(), 2);
        free(1, second_last);
        assert!(blocks[1].is_empty());
        assert_eq!(
            h.vec.block_count(),
            1,
            "two empty blocks of 64 MiB are more than the 64 MiB kept"
        );
        // The released block's memory goes with the last handle (this test's).
        drop(blocks);
        assert_eq!(h.live_memory.load(Ordering::SeqCst), 1);
    }
}

/// A default vector keeps up to four blocks' worth of empty memory (under its high-water
/// mark) while its heap is within its budget, one block's worth past it: the release's first
/// look, which skips reading the budget when the empty blocks are within one block's worth,
/// reads it when they are more.
#[test]
fn past_the_budget_one_block_of_empty_memory_stays() {
    for over_budget in [false, true] {
        let h = Harness::<FreeListAllocator>::new(1, BlockLimits::NONE, 64 * MIB, 1);
        h.over_budget.store(over_budget, Ordering::SeqCst);
        for _ in 0..3 {
            h.add_block(64 * MIB, MIB, 1);
        }
        // Fill all three (one whole-block allocation each), then free them one by one.
        let fit = h.fit(64 * MIB, 1, AllocationType::Linear);
        let live: Vec<_> = (0..3).map(|_| h.allocate(&fit).unwrap()).collect();
        assert_eq!(h.vec.block_count(), 3);
        let mut counts = Vec::new();
        for l in live {
            h.free(l);
            counts.push(h.vec.block_count());
        }
        // Three blocks were in use at once: under the budget all three stay.
        let kept = if over_budget { 1 } else { 3 };
        assert_eq!(
            counts,
            [3, 3.min(1 + kept), kept],
            "over budget: {over_budget}"
        );
        assert_eq!(h.empty_blocks(), kept);
    }
}
