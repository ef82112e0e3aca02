//! The planner against a model: blocks are real [`FreeListAllocator`]s filled at random, and
//! `place` suballocates in them, so every invariant is checked on real ranges.

use super::*;
use crate::layout::{DeviceAlignment, DeviceLayout};
use crate::suballocator::{AllocationType, FreeListAllocator, Suballocation, Suballocator};
use proptest::prelude::*;

const KIB: DeviceSize = 1 << 10;

/// A block of the model, its live ranges, and which of them may move.
struct ModelBlock {
    sub: FreeListAllocator,
    live: Vec<(Suballocation, DeviceAlignment, bool)>,
}

struct Model {
    blocks: Vec<ModelBlock>,
    granularity: DeviceAlignment,
    /// The blocks an earlier pass left draining.
    draining: Vec<bool>,
    /// The blocks that earlier plans moved (or reserved) allocations into: the
    /// [receivers](super#receivers).
    receivers: Vec<bool>,
    /// The reservations of those drains, by the block and offset of the allocation they
    /// are for: the block they are in, and the range.
    reserved: HashMap<(usize, DeviceSize), (usize, Suballocation)>,
    /// The calls to `place` so far that looked for room (not those claiming a reservation).
    places: usize,
    /// The calls to `walk` so far.
    walks: usize,
    /// Whether the pictures carry the hints that spare work (each block's largest
    /// allocation and largest free range): with or without them, plans are the same.
    hints: bool,
    /// The planner's vectors, kept from pass to pass as the allocator keeps them.
    scratch: Scratch,
    /// What the pictures say of each block: whether it is [exhausted](BlockState::exhausted),
    /// and [unchanged](BlockState::unchanged) (neither when empty).
    settled: Vec<(bool, bool)>,
}

use std::collections::HashMap;

/// A pass with no limit.
const UNLIMITED: Limits = Limits {
    bytes: DeviceSize::MAX,
    moves: usize::MAX,
};

/// A picture made of four closures (the model's state shared between them).
struct Callbacks<P, U, A, W>(P, U, A, W);

/// [`Callbacks`] of these closures (their bounds give the closures their signatures).
fn callbacks<T, P, U, A, W>(place: P, undo: U, aside: A, walk: W) -> Callbacks<P, U, A, W>
where
    P: FnMut(usize, usize) -> (Option<T>, DeviceSize),
    U: FnMut(T),
    A: FnMut(usize, bool) -> bool,
    W: FnMut(usize, &mut Vec<Candidate>) -> (bool, Vec<usize>),
{
    Callbacks(place, undo, aside, walk)
}

impl<T, P, U, A, W> Picture for Callbacks<P, U, A, W>
where
    P: FnMut(usize, usize) -> (Option<T>, DeviceSize),
    U: FnMut(T),
    A: FnMut(usize, bool) -> bool,
    W: FnMut(usize, &mut Vec<Candidate>) -> (bool, Vec<usize>),
{
    type Made = T;

    fn place(&mut self, c: usize, b: usize) -> (Option<T>, DeviceSize) {
        (self.0)(c, b)
    }

    fn undo(&mut self, made: T) {
        (self.1)(made)
    }

    fn set_aside(&mut self, b: usize, on: bool) -> bool {
        (self.2)(b, on)
    }

    fn walk(&mut self, b: usize, candidates: &mut Vec<Candidate>) -> (bool, Vec<usize>) {
        (self.3)(b, candidates)
    }
}

/// A suballocation of block `b` as `place` hands it out: the block in the handle's spare
/// bits (the test's own use).
fn tagged(s: Suballocation, b: usize) -> Suballocation {
    Suballocation {
        handle: crate::suballocator::SuballocationHandle::new(s.handle.get() | (b as u64) << 40),
        ..s
    }
}

/// What [`tagged`] tagged, and its block.
fn untagged(s: Suballocation) -> (Suballocation, usize) {
    let b = (s.handle.get() >> 40) as usize;
    let s = Suballocation {
        handle: crate::suballocator::SuballocationHandle::new(s.handle.get() & ((1 << 40) - 1)),
        ..s
    };
    (s, b)
}

impl Model {
    /// Blocks of the given sizes, each filled with allocations of `(size, align_log, movable)`
    /// until one fails.
    fn new(sizes: &[DeviceSize], fills: &[Fill], granularity: u64) -> Self {
        let granularity = DeviceAlignment::new(granularity).unwrap();
        let blocks = sizes
            .iter()
            .zip(fills)
            .map(|(&size, fill)| {
                let mut sub = FreeListAllocator::new(size);
                let mut live = Vec::new();
                for &(s, align_log, movable) in fill {
                    let alignment = DeviceAlignment::from_log2(align_log).unwrap();
                    let layout = DeviceLayout::new(s, alignment).unwrap();
                    if let Ok(a) = sub.allocate(layout, AllocationType::Linear, granularity) {
                        live.push((a, alignment, movable));
                    }
                }
                ModelBlock { sub, live }
            })
            .collect();
        let draining = vec![false; sizes.len()];
        Self {
            blocks,
            granularity,
            draining,
            receivers: vec![false; sizes.len()],
            reserved: HashMap::new(),
            places: 0,
            walks: 0,
            hints: true,
            scratch: Scratch::default(),
            settled: Vec::new(),
        }
    }

    /// The planner's picture: blocks, and candidates with their alignment and size, and the
    /// block and offset of each.
    fn picture(&self) -> (Vec<BlockState>, Vec<Candidate>, Vec<Layout>) {
        let mut blocks = Vec::new();
        let mut candidates = Vec::new();
        let mut layouts = Vec::new();
        for (b, block) in self.blocks.iter().enumerate() {
            // A reservation in a block is live and may not move.
            let holds_reservation = self.reserved.values().any(|r| r.0 == b);
            let mut state = BlockState {
                size: block.sub.region_size(),
                live: block.sub.region_size() - block.sub.free_size(),
                largest_free: if self.hints {
                    block.sub.largest_free_range()
                } else {
                    block.sub.region_size()
                },
                all_movable: block.live.iter().all(|l| l.2) && !holds_reservation,
                candidates: Vec::new(),
                draining: self.draining[b],
                received: false,
                receiver: self.receivers[b],
                exhausted: self.settled.get(b).is_some_and(|s| s.0),
                unchanged: self.settled.get(b).is_some_and(|s| s.1),
                walked: true,
                largest: None,
                smallest: None,
            };
            // As the allocator sees it: a candidate holds its whole range (with the padding
            // its range absorbed), so the candidates of a block that may be emptied hold
            // exactly its live bytes.
            let mut ranges = Vec::new();
            block.sub.for_each_range(&mut |r| {
                if let crate::suballocator::RangeKind::Allocated(_) = r.kind {
                    ranges.push((r.offset, r.size));
                }
            });
            for &(s, alignment, movable) in &block.live {
                if movable {
                    let at = ranges.partition_point(|&(o, _)| o <= s.offset) - 1;
                    state.candidates.push(candidates.len());
                    candidates.push(Candidate {
                        block: b,
                        size: ranges[at].1,
                        need: s.size,
                        reserved: self.reserved.get(&(b, s.offset)).map(|r| r.0),
                    });
                    layouts.push(Layout {
                        size: s.size,
                        alignment,
                        at: (b, s.offset),
                    });
                }
            }
            // The largest known for every block (the allocator knows it for the blocks an
            // earlier pass walked).
            if self.hints {
                state.largest = state.candidates.iter().map(|&c| candidates[c].size).max();
                // The least any of its allocations needs, those that may not move included
                // (the allocator's index knows its registrations, pinned ones too): a lower
                // bound on what each candidate needs.
                state.smallest = Some(
                    block
                        .live
                        .iter()
                        .map(|l| l.0.size)
                        .min()
                        .unwrap_or(DeviceSize::MAX),
                );
            }
            blocks.push(state);
        }
        (blocks, candidates, layouts)
    }
}

/// What a candidate of the picture is: its size and alignment, and `(block, offset)`.
#[derive(Clone, Copy, Debug)]
struct Layout {
    size: DeviceSize,
    alignment: DeviceAlignment,
    at: (usize, DeviceSize),
}

/// [`run`], then [`check`] of every invariant.
fn run_checked(
    model: &mut Model,
    algorithm: Algorithm,
    limits: Limits,
) -> (MovePlan<Suballocation>, Vec<BlockState>, Vec<Candidate>) {
    let (plan, blocks, candidates) = run(model, algorithm, limits);
    check(model, &plan, &blocks, &candidates, algorithm, limits);
    (plan, blocks, candidates)
}

fn run(
    model: &mut Model,
    algorithm: Algorithm,
    limits: Limits,
) -> (MovePlan<Suballocation>, Vec<BlockState>, Vec<Candidate>) {
    let (walked, candidates, layouts) = model.picture();
    // Every other block is left for the planner to walk when it looks at it: the plan must
    // be the same either way.
    let blocks: Vec<BlockState> = walked
        .iter()
        .enumerate()
        .map(|(b, state)| {
            if b % 2 == 0 {
                state.clone()
            } else {
                BlockState {
                    all_movable: false,
                    candidates: Vec::new(),
                    walked: false,
                    ..state.clone()
                }
            }
        })
        .collect();
    let walks = std::cell::RefCell::new(vec![0usize; blocks.len()]);
    let before: Vec<usize> = model
        .blocks
        .iter()
        .map(|b| b.sub.allocation_count())
        .collect();
    let granularity = model.granularity;
    let hints = model.hints;
    let model_blocks = std::cell::RefCell::new(&mut model.blocks);
    let reserved = std::cell::RefCell::new(std::mem::take(&mut model.reserved));
    let claimed = std::cell::RefCell::new(vec![0usize; blocks.len()]);
    let places = std::cell::Cell::new(0);
    let set_aside = std::cell::RefCell::new(model.draining.clone());
    // Blocks that a move out of was undone in: their largest free range may have grown past
    // the picture's.
    let undone_in = std::cell::RefCell::new(vec![false; blocks.len()]);
    // The largest free range each block had at most, as the planner was last told.
    let bounds = std::cell::RefCell::new(blocks.iter().map(|b| b.largest_free).collect::<Vec<_>>());
    let mut scratch = std::mem::take(&mut model.scratch);
    let plan = plan_moves(
        &blocks,
        &mut candidates.clone(),
        algorithm,
        limits,
        &mut callbacks(
            |c, b| {
                assert!(
                    !set_aside.borrow()[b],
                    "a place in block {b}, which is set aside"
                );
                let l = layouts[c];
                let held = reserved.borrow_mut().remove(&l.at);
                if let Some((rb, r)) = held {
                    assert_eq!(candidates[c].reserved, Some(rb));
                    claimed.borrow_mut()[rb] += 1;
                    if b == rb {
                        // Without the hints, the bound stays the block's size, as for any
                        // other attempt.
                        let sub = &model_blocks.borrow()[b].sub;
                        let largest = if hints {
                            sub.largest_free_range()
                        } else {
                            sub.region_size()
                        };
                        // What the planner is told now bounds what it may ask next.
                        bounds.borrow_mut()[b] = largest;
                        return (Some(tagged(r, b)), largest);
                    }
                    // Elsewhere (its drain was given up): the reservation is let go, as the
                    // allocator does.
                    assert!(
                        !blocks[candidates[c].block].draining
                            || !set_aside.borrow()[candidates[c].block],
                        "candidate {c} of a drain going on placed away from its reservation"
                    );
                    // SAFETY: made by this block's model allocator, let go once (it left the map).
                    #[allow(unsafe_code)]
                    unsafe {
                        model_blocks.borrow_mut()[rb].sub.deallocate(r)
                    };
                }
                places.set(places.get() + 1);
                // Never asked for more than the block's largest free range can hold, as the
                // picture or the last attempt there said.
                let bound = bounds.borrow()[b];
                assert!(
                    l.size <= bound || undone_in.borrow()[b],
                    "block {b} asked for {} bytes, its largest free range is at most {bound}",
                    l.size,
                );
                let layout = DeviceLayout::new(l.size, l.alignment).unwrap();
                let mut model_blocks = model_blocks.borrow_mut();
                let sub = &mut model_blocks[b].sub;
                let made = sub
                    .allocate(layout, AllocationType::Linear, granularity)
                    .ok()
                    .map(|s| tagged(s, b));
                // Without the hints, the bound stays the block's size: plans must not change.
                let largest = if hints {
                    sub.largest_free_range()
                } else {
                    sub.region_size()
                };
                bounds.borrow_mut()[b] = largest;
                (made, largest)
            },
            |s| {
                let (s, b) = untagged(s);
                undone_in.borrow_mut()[b] = true;
                // SAFETY: made by this block's model allocator in `place`, undone once.
                #[allow(unsafe_code)]
                unsafe {
                    model_blocks.borrow_mut()[b].sub.deallocate(s)
                };
            },
            |b, on| {
                let mut aside = set_aside.borrow_mut();
                assert_ne!(aside[b], on, "block {b} set aside twice or put back unset");
                aside[b] = on;
                true
            },
            |b, _| {
                // A block that can neither empty within a pass nor start a drain (its largest
                // allocation is larger than a pass) is left alone without a walk when its
                // largest allocation is known (by Fast: Full's gathering walks what it packs).
                let state = &blocks[b];
                assert!(
                    algorithm == Algorithm::Full
                        || state.draining
                        || state.live <= limits.bytes
                        || state.largest.is_none_or(|l| l <= limits.bytes),
                    "block {b} walked, though its largest allocation cannot move within a pass"
                );
                walks.borrow_mut()[b] += 1;
                (walked[b].all_movable, walked[b].candidates.clone())
            },
        ),
        &mut scratch,
    );
    model.scratch = scratch;
    model.walks += walks.borrow().iter().sum::<usize>();
    // The planner walks a block at most once, and only one it did not get walked.
    for (b, &n) in walks.borrow().iter().enumerate() {
        assert!(
            n <= 1 && (n == 0 || !blocks[b].walked),
            "block {b} walked {n} times"
        );
    }
    // Exactly the emptied and the draining blocks are left set aside.
    let aside = set_aside.into_inner();
    for (b, &on) in aside.iter().enumerate() {
        let kept = plan.emptied.contains(&b) || plan.draining.contains(&b);
        assert_eq!(on, kept, "block {b}");
        assert!(
            !(plan.emptied.contains(&b) && plan.draining.contains(&b)),
            "block {b} both emptied and draining"
        );
    }
    // Every `place` that is not a move or a reservation was undone (a claimed reservation
    // was counted before already).
    let after: Vec<usize> = model
        .blocks
        .iter()
        .map(|b| b.sub.allocation_count())
        .collect();
    let mut received = vec![0; after.len()];
    for &(_, b, _) in plan.moves.iter().chain(&plan.reserved) {
        received[b] += 1;
        model.receivers[b] = true;
    }
    let claimed = claimed.into_inner();
    for b in 0..after.len() {
        assert_eq!(
            after[b] + claimed[b],
            before[b] + received[b],
            "block {b}: undone places"
        );
    }
    model.places += places.get();
    // The reservations not claimed stay while their drains go on; the plan's own join them.
    let mut reserved = reserved.into_inner();
    // Let go in the order of their allocations (not the map's, which differs from one map to
    // the next): two models given the same calls stay the same, free lists and all.
    let mut gone: Vec<_> = reserved
        .iter()
        .filter(|(&(from, _), _)| !plan.draining.contains(&from))
        .map(|(&at, &(b, r))| (at, b, r))
        .collect();
    gone.sort_unstable_by_key(|g| g.0);
    for (at, b, r) in gone {
        reserved.remove(&at);
        // SAFETY: made by this block's model allocator, let go once (it left the map).
        #[allow(unsafe_code)]
        unsafe {
            model.blocks[b].sub.deallocate(r)
        };
    }
    for &(c, b, r) in &plan.reserved {
        let (r, _) = untagged(r);
        assert!(reserved.insert(layouts[c].at, (b, r)).is_none());
    }
    model.reserved = reserved;
    (plan, walked, candidates)
}

/// The invariants of any plan.
fn check(
    model: &Model,
    plan: &MovePlan<Suballocation>,
    blocks: &[BlockState],
    candidates: &[Candidate],
    algorithm: Algorithm,
    limits: Limits,
) {
    assert!(plan.moves.len() <= limits.moves, "too many moves");
    assert!(plan.bytes <= limits.bytes, "too many bytes");
    let bytes: DeviceSize = plan.moves.iter().map(|&(c, _, _)| candidates[c].size).sum();
    assert_eq!(bytes, plan.bytes);
    let (_, _, layouts) = model.picture();
    let mut moved = std::collections::HashSet::new();
    for &(c, _, _) in &plan.moves {
        assert!(moved.insert(c), "candidate {c} moves twice");
    }
    let mut reserved = std::collections::HashSet::new();
    for &(c, _, _) in &plan.reserved {
        assert!(reserved.insert(c), "candidate {c} reserved twice");
        assert!(!moved.contains(&c), "candidate {c} moves and is reserved");
        let from = candidates[c].block;
        assert!(
            plan.draining.contains(&from) && !blocks[from].draining,
            "a reservation for a block not starting to drain"
        );
        assert!(model.reserved.contains_key(&layouts[c].at));
    }
    // Every reservation held is for an allocation of a block draining.
    for &(from, _) in model.reserved.keys() {
        assert!(
            plan.draining.contains(&from),
            "a reservation outlives its drain"
        );
    }
    for &(c, b, s) in plan.moves.iter().chain(&plan.reserved) {
        // Never into a block being emptied or drained (now or by an earlier pass: `place`
        // checks that the block is not set aside at the time; a drain given up is back in
        // the search), never within its own block.
        assert!(
            !plan.emptied.contains(&b),
            "a destination in an emptied block"
        );
        assert!(
            !plan.draining.contains(&b),
            "a destination in a block being drained"
        );
        assert_ne!(candidates[c].block, b, "a move within its block");
        // Out of a block that received in an earlier pass only to empty it, and only when
        // that frees at least twice what it moves.
        let from = &blocks[candidates[c].block];
        if from.receiver {
            assert!(
                from.live <= from.size / 2,
                "a move out of a receiver holding {} of {}",
                from.live,
                from.size
            );
        }
        assert!(blocks[b].live > 0, "a move into a block that was empty");
        // The destination fits the source: same size, its alignment, inside the block.
        let l = layouts[c];
        assert_eq!(s.size, l.size);
        assert!(l.alignment.is_aligned(s.offset));
        assert!(s.offset + s.size <= blocks[b].size);
        // A drain going on hands out its reservations; one given up (an allocation of it may
        // no longer move) lets them go, and Full may gather its allocations elsewhere.
        let from = candidates[c].block;
        let drain_goes_on = plan.emptied.contains(&from) || plan.draining.contains(&from);
        if let (Some(r), true) = (candidates[c].reserved, drain_goes_on) {
            assert_eq!(b, r, "candidate {c} did not take its reservation");
        }
        if algorithm == Algorithm::Fast {
            let from = candidates[c].block;
            assert!(
                plan.emptied.contains(&from) || plan.draining.contains(&from),
                "Fast moves only out of blocks it empties or drains over several passes"
            );
        }
    }
    // Destinations never overlap each other or what was there (the model allocator would
    // not hand out such ranges; checked anyway on the ranges of each block).
    for (b, block) in model.blocks.iter().enumerate() {
        let mut ranges: Vec<(DeviceSize, DeviceSize)> =
            block.live.iter().map(|l| (l.0.offset, l.0.size)).collect();
        // The reservations held after the plan (the plan's own among them; one claimed is a
        // move now).
        ranges.extend(
            model
                .reserved
                .values()
                .filter(|r| r.0 == b)
                .map(|r| (r.1.offset, r.1.size)),
        );
        ranges.extend(
            plan.moves
                .iter()
                .filter(|m| m.1 == b)
                .map(|m| (m.2.offset, m.2.size)),
        );
        ranges.sort_unstable();
        for w in ranges.windows(2) {
            assert!(w[0].0 + w[0].1 <= w[1].0, "block {b}: {w:?} overlap");
        }
    }
    // A drained block had only movable allocations, each within the limits of a pass; some
    // of them leave, not all (that would be emptying it).
    for &d in &plan.draining {
        assert!(
            blocks[d].all_movable,
            "block {d} drains but holds what may not move"
        );
        assert!(
            blocks[d]
                .candidates
                .iter()
                .all(|&c| candidates[c].size <= limits.bytes),
            "block {d} drains with an allocation larger than a pass"
        );
        assert!(
            !blocks[d].candidates.iter().all(|c| moved.contains(c)),
            "block {d} drains but all of it leaves"
        );
    }
    // An emptied block had only movable allocations, and all of them left.
    for &e in &plan.emptied {
        assert!(blocks[e].all_movable);
        for c in &blocks[e].candidates {
            assert!(
                moved.contains(c),
                "block {e} emptied but candidate {c} stayed"
            );
        }
    }
    // And a block all of whose allocations leave is one of the emptied (so it is released).
    for (b, block) in blocks.iter().enumerate() {
        if block.all_movable
            && !block.candidates.is_empty()
            && block.candidates.iter().all(|c| moved.contains(c))
        {
            assert!(
                plan.emptied.contains(&b),
                "block {b} left empty, not emptied"
            );
        }
    }
    // Reserved memory never grows: no block is ever made, some may be freed.
    let before: DeviceSize = blocks.iter().map(|b| b.size).sum();
    let after: DeviceSize = blocks
        .iter()
        .enumerate()
        .filter(|(i, _)| !plan.emptied.contains(i))
        .map(|(_, b)| b.size)
        .sum();
    assert!(after <= before);
}

/// Carries a plan out on the model, as a pass whose moves all complete: each source is freed,
/// each destination stays, and the draining blocks stay set aside for the next pass.
fn apply(model: &mut Model, plan: MovePlan<Suballocation>) {
    apply_skipping(model, plan, |_| false);
}

/// [`apply`], but the moves `skip` says (by their index in the plan) are skipped: their
/// destinations are freed and their sources stay.
fn apply_skipping(
    model: &mut Model,
    mut plan: MovePlan<Suballocation>,
    skip: impl Fn(usize) -> bool,
) {
    let moves = std::mem::take(&mut plan.moves);
    for (i, m) in moves.into_iter().enumerate() {
        if skip(i) {
            let (s, b) = untagged(m.2);
            // SAFETY: a destination made by this block's model allocator, freed once (the
            // move leaves the plan here).
            #[allow(unsafe_code)]
            unsafe {
                model.blocks[b].sub.deallocate(s)
            };
        } else {
            plan.moves.push(m);
        }
    }
    // The candidates in the order `picture` numbers them: (block, index in its live list).
    let mut numbered = Vec::new();
    for (b, block) in model.blocks.iter().enumerate() {
        for (i, l) in block.live.iter().enumerate() {
            if l.2 {
                numbered.push((b, i));
            }
        }
    }
    let mut leaving: Vec<(usize, usize)> = Vec::new();
    for (c, b, s) in plan.moves {
        let (from, i) = numbered[c];
        let alignment = model.blocks[from].live[i].1;
        let (s, _) = untagged(s);
        model.blocks[b].live.push((s, alignment, true));
        leaving.push((from, i));
    }
    leaving.sort_unstable_by(|a, b| b.cmp(a));
    for (from, i) in leaving {
        let (s, _, _) = model.blocks[from].live.remove(i);
        // SAFETY: a live allocation of this block's model allocator, freed once (it leaves
        // the live list here).
        #[allow(unsafe_code)]
        unsafe {
            model.blocks[from].sub.deallocate(s)
        };
    }
    model.draining = (0..model.blocks.len())
        .map(|b| plan.draining.contains(&b))
        .collect();
}

/// Runs passes until one has nothing to move, checking every plan; returns the plans'
/// emptied and draining blocks, pass by pass.
fn passes(
    model: &mut Model,
    algorithm: Algorithm,
    limits: Limits,
) -> Vec<(Vec<usize>, Vec<usize>, usize)> {
    passes_skipping(model, algorithm, limits, 0)
}

/// [`passes`], with every other move of the first `skipping` passes skipped. A skipped move
/// of a drain loses its destination, and the room may be gone for it the next pass (the
/// planner counts what a move takes by its range in its own block, padding and all): then
/// the drain is given up. Without skips a drain is never given up.
fn passes_skipping(
    model: &mut Model,
    algorithm: Algorithm,
    limits: Limits,
    skipping: usize,
) -> Vec<(Vec<usize>, Vec<usize>, usize)> {
    let mut seen = Vec::new();
    for pass in 0..10_000 {
        let (plan, blocks, candidates) = run(model, algorithm, limits);
        check(model, &plan, &blocks, &candidates, algorithm, limits);
        // A block draining goes on draining, or empties: with nothing else changing, the
        // room found for its rest is still there.
        for (b, block) in blocks.iter().enumerate() {
            if block.draining && skipping == 0 {
                assert!(
                    plan.emptied.contains(&b) || plan.draining.contains(&b),
                    "block {b}: a drain given up"
                );
            }
        }
        if plan.moves.is_empty() {
            assert!(
                plan.draining.is_empty(),
                "a drain waits on a pass with no moves"
            );
            return seen;
        }
        seen.push((
            plan.emptied.clone(),
            plan.draining.clone(),
            plan.moves.len(),
        ));
        apply_skipping(model, plan, |i| pass < skipping && i % 2 == 1);
    }
    panic!("the passes never end");
}

/// What a block of the model is filled with: `(size, alignment exponent, movable)`.
type Fill = Vec<(DeviceSize, u32, bool)>;

fn fills() -> impl Strategy<Value = (Vec<DeviceSize>, Vec<Fill>)> {
    proptest::collection::vec(
        (
            prop_oneof![Just(64 * KIB), Just(128 * KIB), Just(256 * KIB)],
            proptest::collection::vec((1..16 * KIB, 0..=10u32, prop::bool::weighted(0.9)), 0..40),
        ),
        1..12,
    )
    .prop_map(|v| v.into_iter().unzip())
}

/// One setup of the property tests: the model's blocks, the algorithm and the limits of a
/// pass.
#[derive(Clone, Debug)]
struct Setup {
    sizes: Vec<DeviceSize>,
    fills: Vec<Fill>,
    granularity: u64,
    algorithm: Algorithm,
    limits: Limits,
}

impl Setup {
    fn model(&self) -> Model {
        Model::new(&self.sizes, &self.fills, self.granularity)
    }
}

fn setups(
    granularity: impl Strategy<Value = u64>,
    moves: impl Strategy<Value = usize>,
    bytes: impl Strategy<Value = DeviceSize>,
) -> impl Strategy<Value = Setup> {
    (fills(), granularity, any::<bool>(), moves, bytes).prop_map(
        |((sizes, fills), granularity, full, moves, bytes)| Setup {
            sizes,
            fills,
            granularity,
            algorithm: if full {
                Algorithm::Full
            } else {
                Algorithm::Fast
            },
            limits: Limits { bytes, moves },
        },
    )
}

/// Either granularity the tests use: none, or 1 KiB pages.
fn granularities() -> impl Strategy<Value = u64> {
    prop_oneof![Just(1u64), Just(1024)]
}

/// Moves a pass may make, for the tests that run passes until they end (at least one).
fn pass_moves() -> impl Strategy<Value = usize> {
    prop_oneof![Just(usize::MAX), 1..20usize]
}

/// Bytes a pass may move, for the tests that run passes until they end (more than any
/// allocation of the fills, so that each can move).
fn pass_bytes() -> impl Strategy<Value = DeviceSize> {
    prop_oneof![Just(DeviceSize::MAX), 16 * KIB..256 * KIB]
}

/// Runs `setup`'s passes (at most 50) with and without the hints that spare work (each
/// block's largest allocation and largest free range): every plan must be the same.
fn plans_agree_with_and_without_hints(setup: &Setup) -> Result<(), TestCaseError> {
    let (algorithm, limits) = (setup.algorithm, setup.limits);
    let mut with = setup.model();
    let mut without = setup.model();
    without.hints = false;
    for _ in 0..50 {
        let (a, _, _) = run_checked(&mut with, algorithm, limits);
        let (b, _, _) = run_checked(&mut without, algorithm, limits);
        let key = |p: &MovePlan<Suballocation>| {
            let moves: Vec<_> = p.moves.iter().map(|m| (m.0, m.1, m.2.offset)).collect();
            (p.emptied.clone(), p.draining.clone(), moves)
        };
        prop_assert_eq!(key(&a), key(&b));
        if a.moves.is_empty() {
            break;
        }
        apply(&mut with, a);
        apply(&mut without, b);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(crate::suballocator::testing::cases(200)))]

    #[test]
    fn destinations_stay_tightest_first(
        sizes in proptest::collection::vec(1..64u64, 1..16),
        changes in proptest::collection::vec((0..16usize, 0..64u64), 0..64),
    ) {
        // Blocks of the given sizes, empty; then live bytes change one block at a time (up
        // as placements do, down as undos do), the order kept by `update`.
        let blocks: Vec<BlockState> = sizes
            .iter()
            .map(|&size| BlockState {
                size,
                live: 0,
                largest_free: size,
                all_movable: true,
                candidates: Vec::new(),
                walked: true,
                largest: None,
                smallest: None,
                draining: false,
                received: false,
                receiver: false,
                exhausted: false,
                unchanged: false,
            })
            .collect();
        let mut live = vec![0; blocks.len()];
        let mut destinations = Destinations::new(&blocks, &live);
        for (b, l) in changes {
            let b = b % blocks.len();
            live[b] = l.min(blocks[b].size);
            destinations.update(&blocks, &live, b);
            // The same order a full sort gives, and every block's place known.
            let mut sorted: Vec<usize> = (0..blocks.len()).collect();
            sorted.sort_by_key(|&x| (blocks[x].size - live[x], x));
            prop_assert_eq!(&destinations.order, &sorted);
            for (i, &x) in destinations.order.iter().enumerate() {
                prop_assert_eq!(destinations.at[x], i);
            }
        }
    }

    #[test]
    fn plans_keep_every_invariant(
        setup in setups(
            granularities(),
            prop_oneof![Just(usize::MAX), 0..20usize],
            prop_oneof![Just(DeviceSize::MAX), 0..256 * KIB],
        ),
    ) {
        let Setup { algorithm, limits, .. } = setup;
        let mut model = setup.model();
        let (plan, blocks, candidates) = run(&mut model, algorithm, limits);
        check(&model, &plan, &blocks, &candidates, algorithm, limits);
    }

    #[test]
    fn the_hints_change_no_plan(
        setup in setups(granularities(), pass_moves(), pass_bytes()),
    ) {
        // The largest allocation and largest free range of each block only spare walks and
        // tries that would fail: pass after pass, the plans with and without them agree.
        plans_agree_with_and_without_hints(&setup)?;
    }

    #[test]
    fn passes_keep_every_invariant_and_end(
        setup in setups(granularities(), pass_moves(), pass_bytes()),
    ) {
        let Setup { algorithm, limits, .. } = setup;
        let mut model = setup.model();
        let seen = passes(&mut model, algorithm, limits);
        // Every block that drained ends emptied.
        let drained: std::collections::HashSet<usize> =
            seen.iter().flat_map(|p| p.1.iter().copied()).collect();
        let emptied: std::collections::HashSet<usize> =
            seen.iter().flat_map(|p| p.0.iter().copied()).collect();
        prop_assert!(drained.is_subset(&emptied), "{seen:?}");
        for &b in &emptied {
            prop_assert!(model.blocks[b].live.is_empty(), "block {b} emptied but not empty");
        }
        prop_assert!(model.reserved.is_empty(), "reservations outlive the passes");
    }

    #[test]
    fn passes_with_skipped_moves_keep_every_invariant_and_end(
        setup in setups(Just(1), pass_moves(), 16 * KIB..256 * KIB),
        skipping in 1..4usize,
    ) {
        // A skipped move of a drain loses its destination (a reservation it claimed among
        // them): the next pass places it again, or gives the drain up.
        let Setup { algorithm, limits, .. } = setup;
        let mut model = setup.model();
        passes_skipping(&mut model, algorithm, limits, skipping);
        prop_assert!(model.reserved.is_empty(), "reservations outlive the passes");
    }
}

#[test]
fn fast_empties_the_sparse_blocks_into_the_full_ones() {
    // Four blocks of 64 KiB: two a quarter full, two three quarters full.
    let quarter = vec![(8 * KIB, 4, true); 2];
    let most = vec![(8 * KIB, 4, true); 6];
    let sizes = [64 * KIB; 4];
    let mut model = Model::new(&sizes, &[quarter.clone(), most.clone(), quarter, most], 1);
    let (plan, _, _) = run_checked(&mut model, Algorithm::Fast, UNLIMITED);
    let mut emptied = plan.emptied.clone();
    emptied.sort_unstable();
    assert_eq!(emptied, [0, 2], "the sparse blocks");
    assert_eq!(plan.moves.len(), 4);
    assert_eq!(plan.bytes, 4 * 8 * KIB);
}

#[test]
fn an_empty_block_receives_nothing() {
    // The allocator keeps one empty block; a sparse block next to it stays where it is
    // (moving it there would free nothing, and the next pass would move it back).
    let sparse = vec![(8 * KIB, 4, true); 2];
    let mut model = Model::new(&[64 * KIB; 2], &[Vec::new(), sparse], 1);
    for algorithm in [Algorithm::Fast, Algorithm::Full] {
        let (plan, _, _) = run(&mut model, algorithm, UNLIMITED);
        assert!(plan.moves.is_empty(), "{algorithm:?}: {plan:?}");
        assert!(plan.emptied.is_empty(), "{algorithm:?}");
    }
}

#[test]
fn a_block_with_an_allocation_that_may_not_move_is_not_emptied() {
    let pinned = vec![(8 * KIB, 4, true), (8 * KIB, 4, false)];
    let roomy = vec![(8 * KIB, 4, true)];
    let mut model = Model::new(&[64 * KIB, 64 * KIB], &[pinned, roomy], 1);
    let (plan, _, _) = run_checked(&mut model, Algorithm::Fast, UNLIMITED);
    // Block 1 (one movable allocation, the least occupied) empties into block 0.
    assert_eq!(plan.emptied, [1]);
    // Full also gathers the rest: nothing more can go (block 1 is empty, block 0 is pinned).
    let mut model = Model::new(
        &[64 * KIB, 64 * KIB],
        &[
            vec![(8 * KIB, 4, true), (8 * KIB, 4, false)],
            vec![(24 * KIB, 4, true), (8 * KIB, 4, false)],
        ],
        1,
    );
    let (plan, _, candidates) = run_checked(&mut model, Algorithm::Full, UNLIMITED);
    assert!(plan.emptied.is_empty(), "both blocks are pinned");
    assert_eq!(
        plan.moves.len(),
        1,
        "the less occupied block's movable part gathers"
    );
    assert_eq!(candidates[plan.moves[0].0].block, 0);
}

#[test]
fn a_block_beyond_the_limits_left_drains_and_the_plan_stops_there() {
    let quarter = vec![(8 * KIB, 4, true); 2];
    let half = vec![(8 * KIB, 4, true); 4];
    let mut model = Model::new(&[64 * KIB; 3], &[quarter.clone(), quarter, half], 1);
    let three = Limits {
        bytes: DeviceSize::MAX,
        moves: 3,
    };
    let (plan, blocks, candidates) = run(&mut model, Algorithm::Fast, three);
    check(&model, &plan, &blocks, &candidates, Algorithm::Fast, three);
    // Two moves per block, all fitting in the half-full block: the first sparse block empties,
    // the second starts draining with the one move left.
    assert_eq!(plan.emptied, [0]);
    assert_eq!(plan.draining, [1]);
    assert_eq!(plan.moves.len(), 3);
    // The next pass finishes it first.
    apply(&mut model, plan);
    let (plan, blocks, candidates) = run(&mut model, Algorithm::Fast, three);
    check(&model, &plan, &blocks, &candidates, Algorithm::Fast, three);
    assert_eq!(plan.emptied, [1]);
    assert!(plan.draining.is_empty());
    assert_eq!(plan.moves.len(), 1);
}

#[test]
fn a_block_larger_than_a_pass_drains_over_several_passes() {
    // Block 0 holds 40 KiB in five moves, the passes 16 KiB each: it cannot empty within one
    // pass, but all of it fits in blocks 1 and 2, so it drains, two moves a pass, and empties
    // in the third.
    let fills = [
        vec![(8 * KIB, 4, true); 5],
        vec![(16 * KIB, 4, false)],
        vec![(16 * KIB, 4, false)],
    ];
    let limits = Limits {
        bytes: 16 * KIB,
        moves: usize::MAX,
    };
    let mut model = Model::new(&[64 * KIB; 3], &fills, 1);
    let seen = passes(&mut model, Algorithm::Fast, limits);
    assert_eq!(
        seen,
        [
            (vec![], vec![0], 2),
            (vec![], vec![0], 2),
            (vec![0], vec![], 1)
        ],
        "(emptied, draining, moves) per pass"
    );
    assert!(model.blocks[0].live.is_empty());
    // Each allocation found its room once: the first pass reserved it for the others.
    assert_eq!(model.places, 5);
    assert!(model.reserved.is_empty());
    // A block with an allocation larger than a pass never starts draining.
    let fills = [
        vec![(24 * KIB, 4, true), (8 * KIB, 4, true)],
        vec![(16 * KIB, 4, false)],
    ];
    let mut model = Model::new(&[64 * KIB; 2], &fills, 1);
    let (plan, _, _) = run(&mut model, Algorithm::Fast, limits);
    assert!(
        plan.moves.is_empty() && plan.draining.is_empty(),
        "{plan:?}"
    );
}

#[test]
fn a_full_pass_plans_the_later_blocks_ahead_and_their_passes_follow_the_plan() {
    // Three sparse blocks of 16 KiB each (two moves), a pass of 16 KiB, and one block with
    // room for all of them. The first pass empties block 0 and is then full: blocks 1 and 2
    // are planned ahead (every allocation placed, nothing moving now), and the next passes
    // hand them out in that order, without placing anything again.
    let sparse = vec![(8 * KIB, 4, true); 2];
    let fills = [
        sparse.clone(),
        sparse.clone(),
        sparse,
        vec![(8 * KIB, 4, false)],
    ];
    let limits = Limits {
        bytes: 16 * KIB,
        moves: usize::MAX,
    };
    let mut model = Model::new(&[128 * KIB, 128 * KIB, 128 * KIB, 64 * KIB], &fills, 1);
    let (plan, blocks, candidates) = run_checked(&mut model, Algorithm::Fast, limits);
    assert_eq!(plan.emptied, [0]);
    assert_eq!(
        plan.draining,
        [1, 2],
        "planned ahead, in the order of their passes"
    );
    assert_eq!(plan.moves.len(), 2);
    assert_eq!(
        plan.reserved.len(),
        4,
        "the rest placed once, as reservations"
    );
    assert!(plan.reserved.iter().all(|&(_, b, _)| b == 3));
    // The reservations come in runs, one per block, largest first.
    let from: Vec<usize> = plan
        .reserved
        .iter()
        .map(|&(c, _, _)| candidates[c].block)
        .collect();
    assert_eq!(from, [1, 1, 2, 2]);
    check(&model, &plan, &blocks, &candidates, Algorithm::Fast, limits);
    apply(&mut model, plan);
    let seen = passes(&mut model, Algorithm::Fast, limits);
    assert_eq!(
        seen,
        [(vec![1], vec![2], 2), (vec![2], vec![], 2)],
        "(emptied, draining, moves) per pass"
    );
    assert_eq!(model.places, 6, "each allocation placed once");
    assert!(model.reserved.is_empty());
    assert!((0..3).all(|b| model.blocks[b].live.is_empty()));
}

#[test]
fn fast_empties_the_blocks_with_the_most_free_bytes_first_into_the_tightest() {
    // A small block nearly full (40 KiB of 64), a large one nearly empty (48 KiB of 256), and
    // a large pinned one with 56 KiB free. Fewest live bytes first would empty the small
    // block into the pinned one and then find no room for the large one (512 KiB stay);
    // most free bytes first empties the large sparse block (320 KiB stay).
    let fills = [
        vec![(8 * KIB, 4, true); 5],
        vec![(8 * KIB, 4, true); 6],
        vec![(200 * KIB, 4, false)],
    ];
    let mut model = Model::new(&[64 * KIB, 256 * KIB, 256 * KIB], &fills, 1);
    let (plan, _, _) = run_checked(&mut model, Algorithm::Fast, UNLIMITED);
    assert_eq!(plan.emptied, [1]);
    // The small block holds less than the source and is still to be tried: the pinned one
    // (56 KiB free) takes all six (see `spare`). The small block then finds no room.
    let into: Vec<usize> = plan.moves.iter().map(|m| m.1).collect();
    assert_eq!(into, [2; 6]);
}

#[test]
fn a_block_still_to_be_tried_that_holds_less_is_not_filled_while_others_have_room() {
    // A small sparse block (16 KiB of 64), a large sparse one (48 KiB of 256), and a large
    // one with `free` KiB free around an allocation that may not move. The large sparse
    // block goes first (most free bytes).
    let plan_with = |free: u64| {
        let fills = [
            vec![(8 * KIB, 4, true); 2],
            vec![(8 * KIB, 4, true); 6],
            vec![((256 - free) * KIB, 4, false)],
        ];
        let mut model = Model::new(&[64 * KIB, 256 * KIB, 256 * KIB], &fills, 1);
        let (plan, _, _) = run_checked(&mut model, Algorithm::Fast, UNLIMITED);
        let into: Vec<usize> = plan.moves.iter().map(|m| m.1).collect();
        (plan.emptied, into)
    };
    // Room for both in the pinned block: the small block is spared, then emptied too (the
    // plain search filled it first, tightest, and kept it: 320 KiB stayed, not 256).
    assert_eq!(plan_with(96), (vec![1, 0], vec![2; 8]));
    // Room for five of the six: the source goes in again with the small block among the
    // destinations, and empties as the plain search empties it.
    assert_eq!(plan_with(40), (vec![1], vec![2, 2, 2, 2, 2, 0]));
}

#[test]
fn a_receiver_is_emptied_again_only_when_that_frees_twice_what_it_moves() {
    // A small block with `live` KiB of 64, and a large block with room for all of it (its one
    // allocation may not move).
    let emptied = |live: u64, receiver: bool, algorithm| {
        let fills = [
            vec![(8 * KIB, 4, true); live as usize / 8],
            vec![(8 * KIB, 4, false)],
        ];
        let mut model = Model::new(&[64 * KIB, 256 * KIB], &fills, 1);
        model.receivers = vec![receiver, false];
        let (plan, _, _) = run_checked(&mut model, algorithm, UNLIMITED);
        assert_eq!(plan.moves.len(), plan.emptied.len() * live as usize / 8);
        plan.emptied
    };
    for algorithm in [Algorithm::Fast, Algorithm::Full] {
        // Not a receiver: it empties, however full.
        assert_eq!(emptied(48, false, algorithm), [0], "{algorithm:?}");
        // A receiver: emptying it would move 48 KiB (some of them a second time) to free 64.
        assert_eq!(
            emptied(48, true, algorithm),
            [] as [usize; 0],
            "{algorithm:?}"
        );
        // Half full, it frees twice what it moves.
        assert_eq!(emptied(32, true, algorithm), [0], "{algorithm:?}");
    }
}

#[test]
fn an_allocation_fills_a_hole_of_exactly_its_size() {
    // Block 0 holds 56 KiB that may not move and has one hole of 8 KiB at its end, its
    // largest free range exactly; block 1's only allocation takes 8 KiB. It goes there.
    let fills = [vec![(56 * KIB, 4, false)], vec![(8 * KIB, 4, true)]];
    let mut model = Model::new(&[64 * KIB; 2], &fills, 1);
    assert_eq!(model.blocks[0].sub.largest_free_range(), 8 * KIB);
    let (plan, _, _) = run_checked(&mut model, Algorithm::Fast, UNLIMITED);
    assert_eq!(plan.emptied, [1]);
    assert_eq!(plan.moves[0].1, 0);
    assert_eq!(plan.moves[0].2.offset, 56 * KIB);
}

#[test]
fn limits_are_inclusive() {
    // One sparse block of two 8 KiB moves: exactly two moves, or exactly 16 KiB, is enough.
    let quarter = vec![(8 * KIB, 4, true); 2];
    let most = vec![(8 * KIB, 4, true); 6];
    for limits in [
        Limits {
            bytes: DeviceSize::MAX,
            moves: 2,
        },
        Limits {
            bytes: 16 * KIB,
            moves: usize::MAX,
        },
    ] {
        let mut model = Model::new(&[64 * KIB; 2], &[quarter.clone(), most.clone()], 1);
        let (plan, blocks, candidates) = run(&mut model, Algorithm::Fast, limits);
        check(&model, &plan, &blocks, &candidates, Algorithm::Fast, limits);
        assert_eq!(plan.emptied, [0], "{limits:?}");
    }
}

#[test]
fn a_block_that_fails_to_empty_leaves_no_trace_in_the_choice_of_destinations() {
    // Block 0 (40 KiB in two moves) is tried first and fails: its first move fits only
    // block 1, its second nowhere (block 3 has 19 KiB free). Block 3 is emptied next,
    // tightest destination first: block 2 (46 KiB live), not block 1 (42 KiB, as it is again
    // once block 0's tentative move is undone).
    let fills = [
        vec![(20 * KIB, 4, true); 2],
        vec![(42 * KIB, 4, false)],
        vec![(46 * KIB, 4, false)],
        vec![
            (16 * KIB, 4, true),
            (16 * KIB, 4, true),
            (13 * KIB, 4, true),
        ],
    ];
    let mut model = Model::new(&[64 * KIB; 4], &fills, 1);
    let (plan, _, candidates) = run_checked(&mut model, Algorithm::Fast, UNLIMITED);
    assert_eq!(plan.emptied, [3]);
    let first = (0..candidates.len())
        .find(|&c| candidates[c].block == 3 && candidates[c].size == 16 * KIB)
        .unwrap();
    let (_, destination, _) = plan.moves.iter().find(|m| m.0 == first).unwrap();
    assert_eq!(*destination, 2, "{:?}", plan.moves);
}

#[test]
fn full_gathers_into_strictly_fuller_blocks_within_inclusive_limits() {
    let pinned = |movable_kib: u64| vec![(8 * KIB, 4, false), (movable_kib * KIB, 4, true)];
    // From a 16 KiB block into a 40 KiB one: the 8 KiB move fits a limit of exactly 8 KiB.
    let mut model = Model::new(&[64 * KIB; 2], &[pinned(8), pinned(32)], 1);
    let eight = Limits {
        bytes: 8 * KIB,
        moves: usize::MAX,
    };
    let (plan, blocks, candidates) = run(&mut model, Algorithm::Full, eight);
    check(&model, &plan, &blocks, &candidates, Algorithm::Full, eight);
    assert_eq!(plan.moves.len(), 1, "{plan:?}");
    assert_eq!(plan.moves[0].1, 1, "into the fuller block");
    // Two blocks equally full: nothing to gather, data would only change places.
    let mut model = Model::new(&[64 * KIB; 2], &[pinned(8), pinned(8)], 1);
    let (plan, _, _) = run(&mut model, Algorithm::Full, UNLIMITED);
    assert!(plan.moves.is_empty(), "{plan:?}");
}

#[test]
fn gathering_keeps_count_of_what_moved() {
    // Gathering only goes into blocks that hold more than the source holds at that moment:
    // block 0 (8 KiB pinned, two 6 KiB moves) sends its first move to block 1 (57 KiB), and
    // then, holding 14 KiB, its second to block 2 (15 KiB). Block 3 (60 KiB, one 1 KiB move)
    // then goes into block 1, which holds 63 KiB by then.
    let fills = [
        vec![(8 * KIB, 4, false), (6 * KIB, 4, true), (6 * KIB, 4, true)],
        vec![(57 * KIB, 4, false)],
        vec![(15 * KIB, 4, false)],
        vec![(59 * KIB, 4, false), (KIB, 4, true)],
    ];
    let mut model = Model::new(&[64 * KIB; 4], &fills, 1);
    let (plan, _, candidates) = run_checked(&mut model, Algorithm::Full, UNLIMITED);
    let mut moves: Vec<(usize, DeviceSize, usize)> = plan
        .moves
        .iter()
        .map(|&(c, b, _)| (candidates[c].block, candidates[c].size, b))
        .collect();
    moves.sort_unstable();
    assert_eq!(
        moves,
        [(0, 6 * KIB, 1), (0, 6 * KIB, 2), (3, KIB, 1)],
        "(from, size, to)"
    );
}

#[test]
fn a_drain_part_is_the_largest_first_each_that_still_fits() {
    let limits = |bytes, moves| Limits { bytes, moves };
    let part = |sizes: &[DeviceSize], left| drain_part(sizes.len(), |i| sizes[i], left);
    // All of it fits: it empties.
    assert_eq!(part(&[40, 30, 20], limits(90, 3)), DrainPart::Whole);
    // One move too many: the largest first, each that still fits the moves left.
    assert_eq!(
        part(&[40, 30, 20], limits(90, 2)),
        DrainPart::Part(vec![0, 1])
    );
    // A larger one that does not fit what is left is passed over for smaller ones.
    assert_eq!(
        part(&[50, 40, 30, 10], limits(70, 9)),
        DrainPart::Part(vec![0, 3])
    );
    // Not even the largest fits: nothing of it moves in this pass.
    assert_eq!(part(&[80, 10], limits(70, 9)), DrainPart::Waits);
    // The largest exactly fits what is left: the drain starts now (with passes of exactly
    // its size it would otherwise never start).
    assert_eq!(part(&[70, 10], limits(70, 9)), DrainPart::Part(vec![0]));
    // Nothing left: it has emptied.
    assert_eq!(part(&[], limits(0, 0)), DrainPart::Whole);
}

#[test]
fn a_block_whose_largest_allocation_exceeds_the_pass_is_passed_over_unwalked_and_the_plan_goes_on()
{
    // Block 0 has the most free bytes, but holds more than a pass and its largest allocation
    // (known without a walk) is larger than a pass: it can neither empty nor start a drain,
    // so it is not walked, and the plan goes on to block 1, which empties into block 2.
    let state = |size, live, walked, all_movable, candidates: Vec<usize>, largest| BlockState {
        size,
        live,
        largest_free: size - live,
        all_movable,
        candidates,
        walked,
        largest,
        smallest: None,
        draining: false,
        received: false,
        receiver: false,
        exhausted: false,
        unchanged: false,
    };
    let blocks = [
        state(256 * KIB, 100 * KIB, false, false, vec![], Some(80 * KIB)),
        state(128 * KIB, 48 * KIB, true, true, vec![0, 1], None),
        state(256 * KIB, 200 * KIB, true, false, vec![], None),
    ];
    let candidate = |size| Candidate {
        block: 1,
        size,
        need: size,
        reserved: None,
    };
    let mut candidates = vec![candidate(32 * KIB), candidate(16 * KIB)];
    let limits = Limits {
        bytes: 64 * KIB,
        moves: usize::MAX,
    };
    let plan = plan_moves(
        &blocks,
        &mut candidates,
        Algorithm::Fast,
        limits,
        &mut callbacks(
            |_, b: usize| (Some(b), 256 * KIB),
            |_| {},
            |_, _| true,
            |b, _| panic!("block {b} walked"),
        ),
        &mut Scratch::default(),
    );
    assert_eq!(plan.emptied, [1]);
    assert_eq!(plan.moves.iter().map(|m| m.1).collect::<Vec<_>>(), [2, 2]);
}

#[test]
fn a_block_holding_more_than_the_room_elsewhere_is_given_up_unwalked() {
    // Block 1 holds 200 KiB; the only block that could receive (block 2) has 56 KiB free, and
    // the empty block 0 does not count (nothing moves into an empty block): block 1 is left
    // alone without a walk.
    let state = |size, live, walked| BlockState {
        size,
        live,
        largest_free: size - live,
        all_movable: false,
        candidates: vec![],
        walked,
        largest: None,
        smallest: None,
        draining: false,
        received: false,
        receiver: false,
        exhausted: false,
        unchanged: false,
    };
    let blocks = [
        state(1024 * KIB, 0, true),
        state(256 * KIB, 200 * KIB, false),
        state(256 * KIB, 200 * KIB, true),
    ];
    let plan = plan_moves(
        &blocks,
        &mut Vec::new(),
        Algorithm::Fast,
        Limits {
            bytes: DeviceSize::MAX,
            moves: usize::MAX,
        },
        &mut callbacks(
            |_, b: usize| (Some(b), 0),
            |_| {},
            |_, _| true,
            |b, _| panic!("block {b} walked"),
        ),
        &mut Scratch::default(),
    );
    assert!(plan.moves.is_empty() && plan.emptied.is_empty());
}

mod settled;
mod spare;
mod termination;

#[test]
fn a_block_tried_already_is_no_spared_block_and_is_not_walked_for_it() {
    // Block 1 (walked only when asked) has the most free bytes and goes first, but the
    // others have too little room for it: it is left alone without a walk. Block 0 then
    // holds more live bytes than it, yet block 1 is no longer to be tried: nothing is
    // spared, block 0 empties into it, and block 1 is never walked.
    let fills = [
        vec![(8 * KIB, 4, true); 12],
        vec![(8 * KIB, 4, true); 5],
        vec![(64 * KIB, 4, false)],
    ];
    let mut model = Model::new(&[128 * KIB, 256 * KIB, 64 * KIB], &fills, 1);
    let (plan, _, _) = run_checked(&mut model, Algorithm::Fast, UNLIMITED);
    assert_eq!(plan.emptied, [0]);
    assert!(plan.moves.iter().all(|m| m.1 == 1));
    assert_eq!(model.walks, 0, "a block tried already walked to be spared");
}

#[test]
fn a_block_that_received_in_the_plan_is_no_spared_block_and_is_not_walked_for_it() {
    // Block 0 (an allocation that may not move, much room) is left alone; block 2 empties
    // into the tightest, block 1, which then holds less than block 3 but received: it is
    // kept, so block 3 is placed without sparing it (the tightest first: two into block 1,
    // the rest into block 0), and block 1 is never walked.
    let fills = [
        vec![(8 * KIB, 4, false)],
        vec![(8 * KIB, 4, true); 4],
        vec![(8 * KIB, 4, true); 2],
        vec![(8 * KIB, 4, true); 10],
    ];
    let mut model = Model::new(&[512 * KIB, 64 * KIB, 256 * KIB, 128 * KIB], &fills, 1);
    let (plan, _, _) = run_checked(&mut model, Algorithm::Fast, UNLIMITED);
    assert_eq!(plan.emptied, [2, 3]);
    let into: Vec<usize> = plan.moves.iter().map(|m| m.1).collect();
    assert_eq!(into, [1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0]);
    // Block 3 is walked when its turn comes; block 1 never.
    assert_eq!(model.walks, 1);
}
