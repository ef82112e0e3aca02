//! Placement across arenas and blocks: random walks over a block vector cut into several
//! arenas, with large granularities and every strategy, checked against a brute-force model
//! of each block (every live range of the block, whichever arena holds it): in the block,
//! aligned, no overlap, and no two conflicting types on one granularity page, across arena
//! boundaries too. Whenever the hinted search of the existing blocks finds no room, no arena
//! of any block fits when asked directly. And the threads' fast try places every request
//! exactly where the walk over the list would.

use super::*;
use crate::suballocator::AllocationStrategy;

#[derive(Clone, Debug)]
enum Step {
    Alloc {
        size: DeviceSize,
        align_log: u32,
        ty: AllocationType,
        strategy: AllocationStrategy,
    },
    Free(usize),
}

fn steps(max: DeviceSize, len: usize) -> impl Strategy<Value = Vec<Step>> {
    steps_of(crate::suballocator::testing::log_uniform_size(max), len)
}

/// As [`steps`], with the requests' sizes drawn from `sizes`.
fn steps_of(
    sizes: impl Strategy<Value = DeviceSize>,
    len: usize,
) -> impl Strategy<Value = Vec<Step>> {
    let ty = prop_oneof![
        Just(AllocationType::Linear),
        Just(AllocationType::NonLinear),
        Just(AllocationType::Unknown)
    ];
    let strategy = prop_oneof![
        Just(AllocationStrategy::Default),
        Just(AllocationStrategy::MinTime),
        Just(AllocationStrategy::MinMemory),
        Just(AllocationStrategy::MinOffset),
    ];
    let step = prop_oneof![
        6 => (sizes, 0..=16u32, ty, strategy)
            .prop_map(|(size, align_log, ty, strategy)| Step::Alloc { size, align_log, ty, strategy }),
        4 => any::<usize>().prop_map(Step::Free),
    ];
    proptest::collection::vec(step, 1..len)
}

/// Panics if `[offset, offset + size)` of type `ty` overlaps a live range of `block`, or
/// shares a granularity page with one of a conflicting type.
fn check_placement(
    live: &[Live<FreeListAllocator>],
    tys: &[AllocationType],
    block: usize,
    offset: DeviceSize,
    size: DeviceSize,
    ty: AllocationType,
    g: DeviceSize,
) {
    let (first, last) = (offset / g, (offset + size - 1) / g);
    for (l, &t) in live.iter().zip(tys) {
        if l.block != block {
            continue;
        }
        let s = l.suballocation;
        assert!(
            s.offset + s.size <= offset || offset + size <= s.offset,
            "block {block}: [{offset}, {}) overlaps [{}, {})",
            offset + size,
            s.offset,
            s.offset + s.size
        );
        let (f, e) = (s.offset / g, (s.offset + s.size - 1) / g);
        assert!(
            !(ty.conflicts_with(t) && f <= last && first <= e),
            "block {block}: [{offset}, {}) {ty:?} shares a {g}-byte page with [{}, {}) {t:?}",
            offset + size,
            s.offset,
            s.offset + s.size
        );
    }
}

/// A case of the placement properties: the steps, the arenas per block, the granularity's
/// log2 and the preferred block size. One case in four has requests of 1-8 MiB and blocks of
/// up to 64 MiB, large enough to be cut into arenas (each at least 16 MiB, and four times
/// the largest request), so that the walk's passes over the arenas of a block are covered too.
fn placement_case() -> impl Strategy<Value = (Vec<Step>, usize, u32, DeviceSize)> {
    let arenas = prop_oneof![Just(1usize), Just(2), Just(4), Just(8)];
    let granularity_log = prop_oneof![Just(0u32), 8..=16u32];
    prop_oneof![
        3 => (
            steps(512 * KIB, 300),
            arenas.clone(),
            granularity_log.clone(),
            prop_oneof![Just(256 * KIB), Just(MIB), Just(4 * MIB)],
        ),
        1 => (steps_of(MIB..=8 * MIB, 300), arenas, granularity_log, Just(64 * MIB)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(crate::suballocator::testing::cases(48)))]

    #[test]
    fn placement_holds_across_arenas_and_blocks(
        (steps, arenas, granularity_log, preferred) in placement_case(),
    ) {
        let g = 1u64 << granularity_log;
        let h = Harness::<FreeListAllocator>::new(arenas, BlockLimits::NONE, preferred, g);
        let mut live: Vec<Live<FreeListAllocator>> = Vec::new();
        let mut tys: Vec<AllocationType> = Vec::new();
        let wrap = Live::of;
        for step in &steps {
            match *step {
                Step::Alloc { size, align_log, ty, strategy } => {
                    let mut fit = h.fit(size, 1 << align_log, ty);
                    fit.strategy = strategy;
                    let placed = match h.vec.allocate_existing(&fit, &wrap) {
                        Ok(Some(l)) => Some(l),
                        Ok(None) => {
                            prop_assert!(
                                !any_arena_fits(&h, &fit),
                                "the search skipped an arena that fits {size} bytes at {} ({ty:?})",
                                1u64 << align_log
                            );
                            h.allocate(&fit).ok()
                        }
                        Err(DoesNotFit) => None,
                    };
                    if let Some(l) = placed {
                        let s = l.suballocation;
                        prop_assert!(fit.layout.alignment().is_aligned(s.offset));
                        prop_assert_eq!(s.size, size);
                        let mut block_size = 0;
                        h.vec.for_each_block(|b| {
                            if b.memory().id == l.block {
                                block_size = b.memory().size();
                            }
                        });
                        prop_assert!(s.offset + s.size <= block_size, "past the block's end");
                        check_placement(&live, &tys, l.block, s.offset, s.size, ty, g);
                        live.push(l);
                        tys.push(ty);
                    }
                }
                Step::Free(i) if !live.is_empty() => {
                    let i = i % live.len();
                    tys.swap_remove(i);
                    h.free(live.swap_remove(i));
                }
                Step::Free(_) => {}
            }
            // Each block's ranges tile it and hold every live range of the block.
            h.vec.for_each_block(|b| {
                let id = b.memory().id;
                let mut cursor = 0;
                let mut allocated = Vec::new();
                b.for_each_range(|r: crate::suballocator::RangeInfo| {
                    assert_eq!(r.offset, cursor, "ranges tile block {id}");
                    cursor += r.size;
                    if let RangeKind::Allocated(t) = r.kind {
                        allocated.push((r.offset, r.offset + r.size, t));
                    }
                });
                assert_eq!(cursor, b.memory().size());
                for (l, &t) in live.iter().zip(&tys).filter(|(l, _)| l.block == id) {
                    let s = l.suballocation;
                    assert!(
                        allocated
                            .iter()
                            .any(|&(a, e, rt)| a <= s.offset && s.offset + s.size <= e && rt == t),
                        "live {s:?} is in no allocated range of block {id}"
                    );
                }
            });
        }
        for l in live {
            h.free(l);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(crate::suballocator::testing::cases(48)))]

    /// Two vectors given the same requests and frees, one through the thread's fast try and
    /// the walk, the other through the walk alone: every request lands in the same block at
    /// the same offset (or fails in both).
    #[test]
    fn the_fast_try_places_as_the_walk(
        (steps, arenas, granularity_log, preferred) in placement_case(),
    ) {
        let g = 1u64 << granularity_log;
        let fast = Harness::<FreeListAllocator>::new(arenas, BlockLimits::NONE, preferred, g);
        let walk = Harness::<FreeListAllocator>::new(arenas, BlockLimits::NONE, preferred, g);
        let (mut fast_live, mut walk_live) = (Vec::new(), Vec::new());
        let at = |l: &Live<FreeListAllocator>| (l.block, l.suballocation.offset);
        for step in &steps {
            match *step {
                Step::Alloc { size, align_log, ty, strategy } => {
                    let mut fit = fast.fit(size, 1 << align_log, ty);
                    fit.strategy = strategy;
                    let (f, w) = (fast.allocate(&fit).ok(), walk.allocate_walking(&fit).ok());
                    prop_assert_eq!(f.as_ref().map(at), w.as_ref().map(at), "{:?}", step);
                    if let (Some(f), Some(w)) = (f, w) {
                        fast_live.push(f);
                        walk_live.push(w);
                    }
                }
                Step::Free(i) if !fast_live.is_empty() => {
                    let i = i % fast_live.len();
                    fast.free(fast_live.swap_remove(i));
                    walk.free(walk_live.swap_remove(i));
                }
                Step::Free(_) => {}
            }
        }
        for l in fast_live {
            fast.free(l);
        }
        for l in walk_live {
            walk.free(l);
        }
    }
}
