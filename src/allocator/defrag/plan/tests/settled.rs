//! Settled sources (see [`settle`](crate::allocator::defrag::plan::settle)) on the model:
//! passing over them changes no plan. Two models run the same passes, with the same completes,
//! skips, frees and new allocations between passes; one marks settled the sources its last
//! plan found exhausted while nothing they could gather into changed, as the allocator does;
//! the other marks none. Their plans must be the same, pass after pass: a source passed over
//! would have moved nothing. A block counts as changed when any of its ranges did (the
//! allocator's stamps show less, but never miss room gained but in the case its docs name).

use super::termination::{churn, settle, Caller};
use super::*;

/// A block's ranges: offset, size, and whether allocated.
type Ranges = Vec<(DeviceSize, DeviceSize, bool)>;

/// A block's ranges, and which of its allocations may move (by offset).
type Shape = (Ranges, Vec<bool>);

/// A block's ranges, and which of its allocations may move: what the block is, for the
/// comparisons of the test.
fn shape(block: &ModelBlock) -> Shape {
    let mut ranges = Vec::new();
    block.sub.for_each_range(&mut |r| {
        let allocated = matches!(r.kind, crate::suballocator::RangeKind::Allocated(_));
        ranges.push((r.offset, r.size, allocated));
    });
    let mut movable: Vec<(DeviceSize, bool)> =
        block.live.iter().map(|l| (l.0.offset, l.2)).collect();
    movable.sort_unstable();
    (ranges, movable.into_iter().map(|m| m.1).collect())
}

/// A block's shape as far as room goes: its ranges (a destination made by a plan is there
/// already, so a move completing into it changes nothing).
fn ranges(block: &ModelBlock) -> Ranges {
    shape(block).0
}

/// What the model keeps from its last plan, as the allocator does.
#[derive(Default)]
struct Kept {
    /// The sources the plan found exhausted, and each one's shape once the plan's moves were
    /// settled (it may only have lost the moves out of it that completed).
    exhausted: Vec<(usize, Shape)>,
    /// The ranges of each block that could receive as the plan left it, and the live bytes
    /// the plan counted it with (`None`: set aside).
    ranges: Vec<Option<(Ranges, DeviceSize)>>,
}

impl Kept {
    /// What the model's next picture says of each block: exhausted, unchanged.
    fn marks(&self, model: &Model) -> Vec<(bool, bool)> {
        (0..model.blocks.len())
            .map(|b| {
                let block = &model.blocks[b];
                let exhausted = self
                    .exhausted
                    .iter()
                    .any(|(e, kept)| *e == b && *kept == shape(block));
                let live = block.sub.region_size() - block.sub.free_size();
                let unchanged = self
                    .ranges
                    .get(b)
                    .and_then(Option::as_ref)
                    .is_some_and(|kept| kept.0 == ranges(block) && kept.1 == live);
                let usable = !model.draining[b];
                (usable && exhausted, usable && unchanged)
            })
            .collect()
    }

    /// Keeps what `plan` left (before its moves are settled).
    fn keep_ranges(&mut self, model: &Model, plan: &MovePlan<Suballocation>) {
        self.ranges = (0..model.blocks.len())
            .map(|b| {
                let aside = plan.emptied.contains(&b) || plan.draining.contains(&b);
                let counted = plan.live.get(b).copied().unwrap_or(DeviceSize::MAX);
                (!aside).then(|| (ranges(&model.blocks[b]), counted))
            })
            .collect();
    }

    /// Keeps the sources `exhausted` as they are once the plan's moves were settled.
    fn keep_exhausted(&mut self, model: &Model, exhausted: Vec<usize>) {
        self.exhausted = exhausted
            .into_iter()
            .map(|s| (s, shape(&model.blocks[s])))
            .collect();
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(crate::suballocator::testing::cases(200)))]

    #[test]
    fn passing_over_settled_sources_changes_no_plan(
        setup in setups(granularities(), pass_moves(), pass_bytes()),
        seed in any::<u64>(),
        quiet in any::<bool>(),
    ) {
        let limits = setup.limits;
        let algorithm = Algorithm::Full;
        let mut with = setup.model();
        let mut without = setup.model();
        // The same caller for both: the same choices while the plans are the same.
        let (mut caller_with, mut caller_without) = (Caller(seed), Caller(seed));
        let (mut moved_with, mut moved_without) = (HashMap::new(), HashMap::new());
        let mut kept = Kept::default();
        for pass in 0..400 {
            with.settled = kept.marks(&with);
            let (a, blocks, candidates) = run(&mut with, algorithm, limits);
            check(&with, &a, &blocks, &candidates, algorithm, limits);
            let (b, _, _) = run(&mut without, algorithm, limits);
            let key = |p: &MovePlan<Suballocation>| {
                let moves: Vec<_> = p.moves.iter().map(|m| (m.0, m.1, m.2.offset)).collect();
                (p.emptied.clone(), p.draining.clone(), moves)
            };
            prop_assert_eq!(key(&a), key(&b), "pass {}", pass);
            if a.moves.is_empty() {
                break;
            }
            kept.keep_ranges(&with, &a);
            let exhausted = a.exhausted.clone();
            settle(&mut with, a, &mut caller_with, &mut moved_with);
            settle(&mut without, b, &mut caller_without, &mut moved_without);
            kept.keep_exhausted(&with, exhausted);
            // Now and then the application frees and allocates between passes.
            if !quiet && pass % 2 == 1 {
                churn(&mut with, &mut caller_with, &mut moved_with);
                churn(&mut without, &mut caller_without, &mut moved_without);
            }
        }
    }
}

/// Passing over sources does happen on the model, and spares walks (the property above is
/// not vacuous): Full in bounded passes over assorted fills, from fixed seeds, the plans the
/// same with and without the marks.
#[test]
fn passing_over_sources_spares_walks() {
    let (mut walks_with, mut walks_without) = (0, 0);
    for seed in 0..40 {
        let mut rng = Caller(seed);
        let sizes: Vec<DeviceSize> = (0..8).map(|_| (64 * KIB) << rng.below(3)).collect();
        let fills: Vec<Fill> = sizes
            .iter()
            .map(|_| {
                (0..rng.below(40))
                    .map(|_| {
                        let size = 1 + rng.below(16 * KIB);
                        (size, rng.below(11) as u32, rng.below(10) != 0)
                    })
                    .collect()
            })
            .collect();
        let limits = Limits {
            bytes: 16 * KIB + rng.below(48 * KIB),
            moves: usize::MAX,
        };
        let (mut with, mut without) =
            (Model::new(&sizes, &fills, 1), Model::new(&sizes, &fills, 1));
        let mut kept = Kept::default();
        for pass in 0..400 {
            with.settled = kept.marks(&with);
            let (a, _, _) = run_checked(&mut with, Algorithm::Full, limits);
            let (b, _, _) = run_checked(&mut without, Algorithm::Full, limits);
            let key = |p: &MovePlan<Suballocation>| {
                let moves: Vec<_> = p.moves.iter().map(|m| (m.0, m.1, m.2.offset)).collect();
                (p.emptied.clone(), p.draining.clone(), moves)
            };
            assert_eq!(key(&a), key(&b), "seed {seed}, pass {pass}");
            if a.moves.is_empty() {
                break;
            }
            kept.keep_ranges(&with, &a);
            let exhausted = a.exhausted.clone();
            apply(&mut with, a);
            apply(&mut without, b);
            kept.keep_exhausted(&with, exhausted);
        }
        walks_with += with.walks;
        walks_without += without.walks;
    }
    assert!(
        walks_with < walks_without,
        "{walks_with} walks with sources passed over, {walks_without} without"
    );
}
