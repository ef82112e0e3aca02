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
