//! The [`spare`](super::super::spare) rule on inputs that probe it: a block it spares must be
//! one the phase may empty, and what the rule costs a later source.

use super::*;

/// A pass of 100 KiB, with moves to spare.
const PASS: Limits = Limits {
    bytes: 100 * KIB,
    moves: usize::MAX,
};

#[test]
fn a_block_whose_allocation_exceeds_a_pass_is_not_spared_when_that_is_learned_by_its_walk() {
    // Most free bytes first: a sparse source (3 x 50 KiB in 1 MiB), a block of 2 x 100 KiB
    // in 512 KiB, a pinned block with 200 KiB free, and a small block whose one 110 KiB
    // allocation moves within no pass of 100 KiB (190 KiB free).
    let fills = [
        vec![(50 * KIB, 4, true); 3],
        vec![(100 * KIB, 4, true); 2],
        vec![(824 * KIB, 4, false)],
        vec![(110 * KIB, 4, true)],
    ];
    let sizes = [1024 * KIB, 512 * KIB, 1024 * KIB, 300 * KIB];
    // With the hints (each block's largest allocation known up front, as the allocator knows
    // it for a block an earlier pass walked), the small block is neither spared nor walked:
    // the source fills it (tightest), and the second block fits the pinned one. Without them
    // (the allocator's first pass over a block whose registrations need more than a pass),
    // the walk shows the same allocation, and the plan must be the same: sparing the small
    // block sent the source into the pinned block, and the second block, finding no room
    // left (the small one takes one of its two), was left alone; the small one was never
    // emptied either.
    for hints in [true, false] {
        let mut model = Model::new(&sizes, &fills, 1);
        model.hints = hints;
        let (plan, _, _) = run_checked(&mut model, Algorithm::Fast, PASS);
        assert_eq!(plan.draining, [0, 1], "hints: {hints}");
        let into: Vec<usize> = plan
            .moves
            .iter()
            .chain(&plan.reserved)
            .map(|m| m.1)
            .collect();
        assert_eq!(into, [3, 3, 3, 2, 2], "hints: {hints}");
        // Pass after pass, both drains end emptied.
        let mut model = Model::new(&sizes, &fills, 1);
        model.hints = hints;
        let seen = passes(&mut model, Algorithm::Fast, PASS);
        let emptied: Vec<usize> = seen.iter().flat_map(|p| p.0.iter().copied()).collect();
        assert_eq!(emptied, [0, 1], "hints: {hints}: {seen:?}");
    }
}

/// Runs passes until they end, with the rule or without it (the plain search): the blocks
/// emptied, in the order the passes emptied them.
fn emptied_over_passes(setup: &Setup, plain: bool) -> Vec<usize> {
    super::super::spare::PLAIN.with(|p| p.set(plain));
    let mut model = setup.model();
    let seen = passes(&mut model, setup.algorithm, setup.limits);
    super::super::spare::PLAIN.with(|p| p.set(false));
    seen.iter().flat_map(|p| p.0.iter().copied()).collect()
}

#[test]
fn sparing_a_block_can_cost_a_later_source_its_room() {
    // The smallest input found where the rule frees fewer blocks than the plain search (three
    // blocks cannot: the spared block then fits where the source went). Most free bytes
    // first: a source of 40 KiB (256 KiB block), a pinned block with 64 KiB free, a block of
    // 30 KiB with 50 KiB free, and a block of one 64 KiB allocation with 16 KiB free.
    // - Plain: the source fills the 50 KiB (tightest), the 64 KiB allocation fits the pinned
    //   block exactly: two blocks freed.
    // - The rule spares the 30 KiB block (it holds less than the source, and its turn comes):
    //   the source goes into the pinned block, leaving 24 KiB. The fallback is not needed
    //   for the source; but the 30 KiB then fits nowhere (24 and 16 KiB free), and neither
    //   does the 64 KiB allocation (50 and 24 KiB): one block freed.
    // The rule is kept: on the peers bench and the fragmented states it frees more (see the
    // `spare` module); this documents what it can cost.
    let fills = [
        vec![(40 * KIB, 4, true)],
        vec![(64 * KIB, 4, false)],
        vec![(30 * KIB, 4, true)],
        vec![(64 * KIB, 4, true)],
    ];
    let sizes = [256 * KIB, 128 * KIB, 80 * KIB, 80 * KIB];
    let setup = Setup {
        sizes: sizes.to_vec(),
        fills: fills.to_vec(),
        granularity: 1,
        algorithm: Algorithm::Fast,
        limits: Limits {
            bytes: DeviceSize::MAX,
            moves: usize::MAX,
        },
    };
    let plan = |plain: bool| {
        super::super::spare::PLAIN.with(|p| p.set(plain));
        let mut model = setup.model();
        let (plan, _, _) = run_checked(&mut model, setup.algorithm, setup.limits);
        super::super::spare::PLAIN.with(|p| p.set(false));
        let into: Vec<usize> = plan.moves.iter().map(|m| m.1).collect();
        (plan.emptied, into)
    };
    assert_eq!(plan(false), (vec![0], vec![1]));
    assert_eq!(plan(true), (vec![0, 3], vec![2, 1]));
    // Over passes too (nothing more moves after the first).
    assert_eq!(emptied_over_passes(&setup, false), [0]);
    assert_eq!(emptied_over_passes(&setup, true), [0, 3]);
}

/// Blocks as bump allocators see them: a place takes room at the block's cursor, and an
/// undo gives none back (a bump block gets it back only once all of it is freed).
struct BumpPicture {
    cursors: Vec<DeviceSize>,
    sizes: Vec<DeviceSize>,
    needs: Vec<DeviceSize>,
    /// Each candidate's block.
    owners: Vec<usize>,
    /// What [`Picture::undo_gives_room_back`] says (`true`: wrongly, as a picture that does
    /// not tell).
    says_undo_gives_back: bool,
}

impl Picture for BumpPicture {
    type Made = ();

    fn place(&mut self, c: usize, b: usize) -> (Option<()>, DeviceSize) {
        let fits = self.cursors[b] + self.needs[c] <= self.sizes[b];
        if fits {
            self.cursors[b] += self.needs[c];
        }
        (fits.then_some(()), self.sizes[b] - self.cursors[b])
    }

    fn undo(&mut self, _: ()) {}

    fn undo_gives_room_back(&self) -> bool {
        self.says_undo_gives_back
    }

    fn set_aside(&mut self, _: usize, _: bool) -> bool {
        true
    }

    fn walk(&mut self, b: usize, _: &mut Vec<Candidate>) -> (bool, Vec<usize>) {
        panic!("block {b} walked: all are walked up front")
    }

    fn index(&mut self, b: usize, needs: &mut Vec<DeviceSize>) -> Option<bool> {
        // A bump block's live bytes hold its freed ranges: the index tells what its
        // allocations need.
        needs.extend(
            self.owners
                .iter()
                .zip(&self.needs)
                .filter(|o| *o.0 == b)
                .map(|o| *o.1),
        );
        Some(true)
    }
}

#[test]
fn a_failed_first_try_costs_no_room_where_undo_does_not_give_it_back() {
    // Bump blocks (sizes in KiB): a source of two 100 KiB allocations (its most free bytes:
    // 200 of 2048 free behind freed ranges), a 256 KiB block of one 100 KiB allocation, and
    // a pinned block with 100 KiB free. The plain search puts one into the pinned block
    // (tightest), the other into the small block, and empties the source (2 MiB freed).
    // The rule spares the small block: the pinned block takes the first, the second fits
    // nowhere, and the undo leaves the pinned block's 100 KiB taken (a bump block). The
    // second try then fails too, and the small block is emptied into the source instead
    // (256 KiB freed). A picture that says so makes no first try.
    let state = |size: u64, live: u64, candidates: Vec<usize>| BlockState {
        size: size * KIB,
        live: live * KIB,
        largest_free: (size - live) * KIB,
        all_movable: !candidates.is_empty(),
        candidates,
        walked: true,
        largest: None,
        smallest: None,
        draining: false,
        received: false,
        receiver: false,
        exhausted: false,
        unchanged: false,
    };
    let blocks = [
        state(2048, 1848, vec![0, 1]),
        state(256, 100, vec![2]),
        state(1024, 924, vec![]),
    ];
    // Each needs 100 KiB; the source's first holds the freed ranges before it too (a bump
    // block's range).
    let candidate = |block: usize, size: u64| Candidate {
        block,
        size: size * KIB,
        need: 100 * KIB,
        reserved: None,
    };
    let candidates = vec![candidate(0, 1748), candidate(0, 100), candidate(1, 100)];
    let plan = |says_undo_gives_back: bool| {
        let mut picture = BumpPicture {
            cursors: blocks.iter().map(|b| b.live).collect(),
            sizes: blocks.iter().map(|b| b.size).collect(),
            needs: vec![100 * KIB; 3],
            owners: candidates.iter().map(|c| c.block).collect(),
            says_undo_gives_back,
        };
        let mut candidates = candidates.clone();
        let plan = plan_moves(
            &blocks,
            &mut candidates,
            Algorithm::Fast,
            Limits {
                bytes: DeviceSize::MAX,
                moves: usize::MAX,
            },
            &mut picture,
            &mut Scratch::default(),
        );
        let into: Vec<(usize, usize)> = plan.moves.iter().map(|m| (m.0, m.1)).collect();
        (plan.emptied, into)
    };
    assert_eq!(plan(false), (vec![0], vec![(0, 2), (1, 1)]));
    assert_eq!(plan(true), (vec![1], vec![(2, 0)]));
}

/// Setups of blocks of mixed sizes holding small allocations (up to 4 KiB), some of them
/// with one of 8 to 32 KiB too, and passes of 4 to 16 KiB: blocks whose largest allocation
/// exceeds a pass beside blocks that drain.
fn large_and_small() -> impl Strategy<Value = Setup> {
    let block = (
        prop_oneof![Just(64 * KIB), Just(128 * KIB), Just(256 * KIB)],
        proptest::option::weighted(0.4, 8 * KIB..32 * KIB),
        proptest::collection::vec((1..4 * KIB, 0..=8u32, prop::bool::weighted(0.95)), 0..24),
    );
    (
        proptest::collection::vec(block, 2..10),
        any::<bool>(),
        pass_moves(),
        4 * KIB..16 * KIB,
    )
        .prop_map(|(blocks, full, moves, bytes)| {
            let (sizes, fills) = blocks
                .into_iter()
                .map(|(size, large, small)| {
                    let fill: Fill = large
                        .map(|l| (l, 4, true))
                        .into_iter()
                        .chain(small)
                        .collect();
                    (size, fill)
                })
                .unzip();
            Setup {
                sizes,
                fills,
                granularity: 1,
                algorithm: if full {
                    Algorithm::Full
                } else {
                    Algorithm::Fast
                },
                limits: Limits { bytes, moves },
            }
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(crate::suballocator::testing::cases(200)))]

    #[test]
    fn blocks_of_one_size_plan_as_the_plain_search(
        setup in setups(granularities(), pass_moves(), pass_bytes()),
        size in prop_oneof![Just(64 * KIB), Just(256 * KIB)],
    ) {
        // Of blocks of one size, those still to be tried hold at least the source's live
        // bytes (most free bytes first): the rule spares none (a custom pool's blocks, and a
        // vector's once grown), pass after pass.
        let setup = Setup { sizes: vec![size; setup.sizes.len()], ..setup };
        let key = |plain: bool| {
            super::super::spare::PLAIN.with(|p| p.set(plain));
            let mut model = setup.model();
            let mut plans = Vec::new();
            for _ in 0..50 {
                let (plan, _, _) = run_checked(&mut model, setup.algorithm, setup.limits);
                let moves: Vec<_> = plan.moves.iter().map(|m| (m.0, m.1, m.2.offset)).collect();
                plans.push((plan.emptied.clone(), plan.draining.clone(), moves));
                if plan.moves.is_empty() {
                    break;
                }
                apply(&mut model, plan);
            }
            super::super::spare::PLAIN.with(|p| p.set(false));
            plans
        };
        prop_assert_eq!(key(false), key(true));
    }

    #[test]
    fn the_hints_change_no_plan_when_allocations_exceed_a_pass(
        setup in large_and_small(),
    ) {
        // As `the_hints_change_no_plan`, with passes smaller than some allocations: a block
        // whose largest allocation exceeds a pass is left alone, whether the picture says so
        // up front or the walk shows it (the spare rule spared it without the hint).
        plans_agree_with_and_without_hints(&setup)?;
    }
}
