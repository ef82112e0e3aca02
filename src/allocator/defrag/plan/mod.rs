//! The defragmentation planner: which allocations move where, as a pure function over a
//! plain picture of the blocks.
//!
//! The planner sees each block's size and live bytes and which of its allocations may move;
//! it decides which blocks to empty and in which order, and asks a `place` callback to put
//! each moving allocation in a chosen destination block. The callback does the real work
//! (in the allocator, a suballocation in that block; in the tests, a model): the planner only
//! ever asks for room in blocks it does not empty, never for a new block, so a plan cannot
//! increase the memory reserved from the driver.
//!
//! # Algorithms
//!
//! - [`Fast`](Algorithm::Fast) empties whole blocks and nothing else. It tries the blocks in
//!   the order of their free bytes (size minus live bytes), most first, ties broken by fewer
//!   live bytes: the blocks that give back the most room for the bytes they hold, which
//!   keeps the small, full blocks and empties the large, sparse ones. Each is emptied only if
//!   all its allocations may move and all find room in the other blocks (the tightest
//!   first: the fewest free bytes, a best fit among blocks, so that the holes of the blocks
//!   that stay are filled and the room left over stays whole in few blocks for the larger
//!   allocations still to place); otherwise its
//!   tentative destinations are undone and it is left alone, so every move Fast makes frees
//!   a memory object.
//! - [`Full`](Algorithm::Full) does the same, then packs the rest: from the least occupied
//!   remaining blocks it moves what fits into blocks that hold more, even when the source
//!   block does not empty, so that live data gathers in as few blocks as it can and the free
//!   space left joins into larger ranges. A source none of whose allocations found room in
//!   the last plan is passed over while nothing it could gather into gained room (the
//!   `settle` module).
//!
//! # Passes and draining
//!
//! Both respect the limits of a pass (bytes and moves). A block that fits the limits left is
//! emptied within the pass. A block that does not, but all of whose allocations find room
//! elsewhere, is *drained*: its allocations move in this pass largest first, each that still
//! fits the limits left, and the destinations found for the others are kept as *reservations*
//! (the plan's `reserved`): they hold the room the rest needs until later passes move it, so
//! neither the plan nor the application allocating between passes can take it, and each
//! allocation of a drain is placed once. The block stays set aside between passes (nothing
//! moves into it, and no allocation lands in it), and the next pass continues with it before
//! any other block (its `draining` flag), handing out the reservations. An allocation of a
//! drained block without a reservation (its move was skipped) is placed again; if it no
//! longer fits, the drain is given up and the block goes back into the search. A drain
//! starts only when each of its allocations fits the limits of a pass, so that it can end.
//!
//! # Planning ahead
//!
//! Once a block did not fit what was left of the pass (it moved its part, or nothing), the
//! pass is *full*, and the plan goes on as if the pass had no limits: every later block that
//! can be emptied is drained with nothing moving now, all its allocations placed as
//! reservations. One plan thus decides a bounded defragmentation's passes, which then hand
//! out the drains in the order the plan tried them: each whole while it fits what is left of
//! the pass, then the part of the first that does not (the one rule of a drain's part). A
//! pass needs no plan again until the drains run out or one of them changed (the
//! application freed some of it, or skipped a move of it): the allocator hands the drains
//! out from its records. The blocks emptied are those an unbounded plan empties, and each
//! allocation is placed once: without planning ahead, every bounded pass pictured and
//! sorted every block again to move a dozen allocations, and a block that received in one
//! pass could be emptied by a later one, moving allocations twice. The price is room: from
//! the first pass on, the destinations of every drain planned ahead are held (reservations,
//! counted in the statistics), so between passes the application finds that room taken in
//! the receiving blocks, as it finds the drained blocks set aside; no memory is reserved
//! from the driver for it, and a defragmentation that ends early lets every reservation go.
//!
//! # Receivers
//!
//! A block that allocations moved into, in an earlier pass of the same defragmentation (or
//! that holds reservations for the passes to come), is a *receiver*. The destinations are
//! chosen tightest first, so receivers are the blocks meant to stay; emptying one later
//! moves the bytes that came in a second time. A later plan (the drains ran out, or the
//! application changed the blocks) that found room for a receiver's allocations elsewhere
//! would do just that: on a state of full small blocks and sparse large ones, the small
//! blocks took moves first and were emptied again at the end, moving as many bytes as they
//! freed. So a receiver is emptied or drained only when that frees at least twice the bytes
//! it moves (it holds at most half its size), and [`Full`](Algorithm::Full) gathers nothing
//! out of one. The allocator remembers the receivers until the defragmentation ends.
//!
//! # Cheaper blocks are not filled
//!
//! A source's allocations go first to the destinations other than the blocks still to be
//! tried that hold fewer live bytes (they are cheaper to empty, and their turn comes); see
//! the `spare` module of this folder.
//!
//! # Invariants
//!
//! - A block that receives an allocation is never emptied or drained in the same plan, nor
//!   in a later one of the same defragmentation unless it holds at most half its size; a
//!   block being emptied or drained never receives one, and neither does a block that was
//!   empty to begin with (the empty block the allocator keeps): moving into it would free
//!   nothing, and the next pass would move everything back.
//! - Fast moves allocations only out of blocks it empties or drains; every block all of
//!   whose allocations leave is among the emptied.
//! - No plan asks for a new block: reserved memory never grows.
//! - Exactly the emptied and the draining blocks are set aside when the plan returns.

#![deny(unsafe_code)]

use crate::layout::DeviceSize;

mod drain_part;
mod gather;
mod orders;
mod place;
mod settle;
mod spare;
pub(crate) use self::drain_part::{drain_part, DrainPart};
use self::orders::{refill, sort_by_fields, Destinations};

/// How a defragmentation chooses its moves (see [algorithms](self#algorithms)).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum DefragmentationAlgorithm {
    /// Empty whole blocks, with as few moves as that takes. The default.
    #[default]
    Fast,
    /// Empty whole blocks, then gather the rest into as few blocks as possible.
    Full,
}

/// The old name of [`DefragmentationAlgorithm`], kept so that code using it compiles.
pub type Algorithm = DefragmentationAlgorithm;

/// One block as the planner sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct BlockState {
    /// The block's size.
    pub size: DeviceSize,
    /// Bytes held by live allocations (movable or not).
    pub live: DeviceSize,
    /// An upper bound on its largest free range: no allocation that needs more fits.
    pub largest_free: DeviceSize,
    /// Whether every live allocation of the block may move (so that it can be emptied).
    pub all_movable: bool,
    /// The movable allocations in it, as indices into the candidates.
    pub candidates: Vec<usize>,
    /// Whether `all_movable` and `candidates` are filled in; otherwise the planner asks its
    /// `walk` callback for them when it first looks at the block as a source (a picture of
    /// a block costs a walk over its ranges, and most blocks are never tried).
    pub walked: bool,
    /// The largest of its movable allocations, or a lower bound on it, when known without a
    /// walk (an earlier pass walked the block and its live bytes have not changed since, or
    /// the allocator's index of them). A hint: it only spares the walk of a block that could
    /// not start a drain anyway.
    pub largest: Option<DeviceSize>,
    /// The fewest bytes one of its movable allocations needs, or a lower bound on it
    /// (`DeviceSize::MAX`: it has none), when known without a walk (a walk of an earlier
    /// pass that still holds, or the allocator's index of them). A hint: it only spares
    /// [`Full`](Algorithm::Full)'s gathering the walk of a source none of whose allocations
    /// fits any destination.
    pub smallest: Option<DeviceSize>,
    /// Whether an earlier pass started draining it (see [draining](self#passes-and-draining)):
    /// it is set aside already, and the plan continues with the drains first.
    pub draining: bool,
    /// Whether allocations moved into it earlier in this pass, before the plan (a drain whose
    /// last part the allocator handed out on its own): like a block the plan moves
    /// allocations into, it is neither emptied nor drained in the same pass.
    pub received: bool,
    /// Whether allocations moved into it in an earlier pass of the defragmentation (or it
    /// holds reservations for moves to come): emptying it would move those a second time,
    /// so it is emptied only when that frees at least twice the bytes it moves, and
    /// [`Full`](Algorithm::Full) gathers nothing out of it (see [receivers](self#receivers)).
    pub receiver: bool,
    /// Whether the last plan tried every allocation of it as a source of
    /// [`Full`](Algorithm::Full)'s gathering and found room for none of those left, and it
    /// holds just those still (see [`settle`]).
    pub exhausted: bool,
    /// Whether no room came back to it since the last plan ended (nothing was freed in it),
    /// it could receive then, and it holds the live bytes that plan counted it with (see
    /// [`settle`]).
    pub unchanged: bool,
}

impl BlockState {
    /// Bytes not held by live allocations.
    fn free(&self, live: DeviceSize) -> DeviceSize {
        self.size.saturating_sub(live)
    }
}

/// One allocation that may move.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Candidate {
    /// Its block, as an index into the blocks.
    pub block: usize,
    /// The bytes it holds there.
    pub size: DeviceSize,
    /// The fewest bytes it needs in one free range of a destination (its size, without the
    /// padding its range in its own block may hold).
    pub need: DeviceSize,
    /// The block holding its reserved destination, made by the pass that started draining
    /// its block (see [draining](self#passes-and-draining)): that room is counted in the
    /// block's live bytes already, and `place(c, block)` hands it out.
    pub reserved: Option<usize>,
}

/// The most a pass may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Limits {
    pub bytes: DeviceSize,
    pub moves: usize,
}

/// What a plan decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct MovePlan<T> {
    /// The blocks that every live allocation leaves.
    pub emptied: Vec<usize>,
    /// The blocks being drained, in the order of their passes: set aside, part of their
    /// allocations move now (of the first at most), the rest in later passes.
    pub draining: Vec<usize>,
    /// Each move: the candidate, its destination block, and what `place` returned for it.
    pub moves: Vec<(usize, usize, T)>,
    /// The destinations of the rest of the drains started by this plan (each block's in a
    /// run, largest first), as the moves: placed,
    /// not moving in this pass. The caller keeps them (they hold the room the drain needs)
    /// and marks them [`reserved`](Candidate::reserved) in the next pictures.
    pub reserved: Vec<(usize, usize, T)>,
    /// Bytes moved.
    pub bytes: DeviceSize,
    /// The sources [`Full`](Algorithm::Full)'s gathering tried all the allocations of (or
    /// passed over, see [`settle`]) and found room for none of those left
    /// (see [`settle`]).
    pub exhausted: Vec<usize>,
    /// Each block's live bytes as the plan counted them when it ended (for
    /// [`unchanged`](BlockState::unchanged)); filled in only when `exhausted` is not empty.
    pub live: Vec<DeviceSize>,
}

/// The vectors a plan works in, kept by the caller from one plan to the next: a pass's plan is
/// over in tens of microseconds, and fresh heap memory for each of its vectors was a good part
/// of that.
#[derive(Debug, Default)]
pub(crate) struct Scratch {
    walked: Vec<Option<(bool, Vec<usize>)>>,
    live: Vec<DeviceSize>,
    received: Vec<bool>,
    pending: Vec<bool>,
    spared: Vec<bool>,
    largest_free: Vec<DeviceSize>,
    set_aside: Vec<bool>,
    emptied: Vec<bool>,
    order: Vec<usize>,
    at: Vec<usize>,
    free: Vec<DeviceSize>,
    sources: Vec<usize>,
    keys: Vec<u64>,
    block_keys: Vec<u64>,
}

/// The blocks as the planner works through them: what it asks of the allocator (or of a
/// test's model) while it plans. The planner decides; a picture only carries out and reports.
pub(crate) trait Picture {
    /// What [`place`](Self::place) makes: a destination, held until the plan is over.
    type Made;

    /// Puts candidate `c` in block `b`: what it made (`None` when it does not fit), and an
    /// upper bound on the block's largest free range after the attempt (the planner asks no
    /// more of the block until room comes back there).
    fn place(&mut self, c: usize, b: usize) -> (Option<Self::Made>, DeviceSize);

    /// Takes back what `place` made, for a move that is given up.
    fn undo(&mut self, made: Self::Made);

    /// Whether [`undo`](Self::undo) gives the room back at once. A bump allocator's block
    /// gets it back only when all of it is freed: every try undone there costs room until
    /// then, so the [`spare`] rule's first try, undone when it fails, is not made.
    fn undo_gives_room_back(&self) -> bool {
        true
    }

    /// `on`: block `b` is about to be emptied or drained, so nothing else may land in it
    /// (`false` back: it cannot be, and the planner leaves it alone). `!on`: the planner gives
    /// up on it (a block [draining](BlockState::draining) is set aside already: only this
    /// call can come for it).
    fn set_aside(&mut self, b: usize, on: bool) -> bool;

    /// Pushes the candidates of block `b` (not walked up front) and returns whether every
    /// live allocation of it may move, with their indices.
    fn walk(&mut self, b: usize, candidates: &mut Vec<Candidate>) -> (bool, Vec<usize>);

    /// What the allocator's index of block `b`'s registrations tells without a walk over its
    /// ranges, when it can: the needs of the allocations of `b` that may move (into
    /// `needs`), and whether those are all of its allocations. `None`: it cannot tell (then
    /// the planner walks the block). [`Full`](Algorithm::Full)'s gathering asks, for a block
    /// not walked yet, and the first phase, for a block holding more than the room elsewhere.
    fn index(&mut self, _b: usize, _needs: &mut Vec<DeviceSize>) -> Option<bool> {
        None
    }

    /// Pushes the candidates of block `b` that need at most `most` bytes, from the index
    /// (after [`index`](Self::index) told of them), and returns their indices. Each holds its
    /// need (its range in the block may hold more).
    fn walk_index(&mut self, _b: usize, _most: DeviceSize, _c: &mut Vec<Candidate>) -> Vec<usize> {
        Vec::new()
    }
}

/// The planner's working state over one plan.
struct Planner<'a, P: Picture> {
    blocks: &'a [BlockState],
    candidates: &'a mut Vec<Candidate>,
    /// What `walk` said of the blocks not walked up front.
    walked: Vec<Option<(bool, Vec<usize>)>>,
    limits: Limits,
    picture: &'a mut P,
    live: Vec<DeviceSize>,
    /// Blocks that received an allocation.
    received: Vec<bool>,
    /// Blocks that the emptying phase has yet to try as sources (see [`spare`]).
    pending: Vec<bool>,
    /// The blocks the placements of the current source leave alone (see [`spare`]); all
    /// `false` outside that source's first try.
    spared: Vec<bool>,
    /// For each block, an upper bound on its largest free range: the picture's, then what
    /// `place` said after each attempt there (placing only lowers it), and the block's size
    /// once a move out of it is undone.
    largest_free: Vec<DeviceSize>,
    /// Blocks set aside: being emptied or drained.
    set_aside: Vec<bool>,
    emptied: Vec<bool>,
    destinations: Destinations,
    /// Blocks in the order they are tried as sources (a phase's).
    sources: Vec<usize>,
    /// The keys of a sort of candidates.
    keys: Vec<u64>,
    /// The keys of a sort of blocks.
    block_keys: Vec<u64>,
    /// The free bytes of the blocks that may receive (not set aside, not empty): what
    /// [`room`](Self::room) counts, kept as `live` and `set_aside` change.
    room: u128,
    out: MovePlan<P::Made>,
}

impl<P: Picture> Planner<'_, P> {
    /// The free bytes of the blocks that may receive from `source`.
    fn room(&self, source: usize) -> u128 {
        self.room - self.room_of(source)
    }

    /// What block `b` adds to [`room`](Self::room): its free bytes while it may receive.
    #[inline(always)]
    fn room_of(&self, b: usize) -> u128 {
        if self.set_aside[b] || self.live[b] == 0 {
            0
        } else {
            u128::from(self.blocks[b].free(self.live[b]))
        }
    }

    /// Sets block `b`'s live bytes (keeping [`room`](Self::room)).
    fn set_live(&mut self, b: usize, live: DeviceSize) {
        let old = std::mem::replace(&mut self.live[b], live);
        if !self.set_aside[b] {
            let size = self.blocks[b].size;
            let free = |l: DeviceSize| {
                if l == 0 {
                    0
                } else {
                    u128::from(size.saturating_sub(l))
                }
            };
            self.room = self.room - free(old) + free(live);
        }
    }

    /// Sets whether block `b` is set aside (keeping [`room`](Self::room)).
    fn mark_aside(&mut self, b: usize, on: bool) {
        self.room -= self.room_of(b);
        self.set_aside[b] = on;
        self.room += self.room_of(b);
    }

    /// Whether every live allocation of block `b` may move, and its candidates (walking the
    /// block the first time it is asked, when it was not walked up front).
    fn facts(&mut self, b: usize) -> (bool, Vec<usize>) {
        let block = &self.blocks[b];
        if block.walked {
            return (block.all_movable, block.candidates.clone());
        }
        if self.walked[b].is_none() {
            let facts = self.picture.walk(b, self.candidates);
            self.walked[b] = Some(facts);
        }
        self.walked[b].clone().unwrap_or_default()
    }

    /// The limits left to the plan.
    fn left(&self) -> Limits {
        Limits {
            bytes: self.limits.bytes.saturating_sub(self.out.bytes),
            moves: self.limits.moves.saturating_sub(self.out.moves.len()),
        }
    }

    /// Sorts candidates largest first (by their needs: what a pass's limit counts), then by index.
    fn sort(&mut self, c: &mut [usize]) {
        let candidates = &*self.candidates;
        let size = |c: usize| candidates[c].need;
        // A drain's record hands its candidates over in this order already.
        if c.windows(2)
            .all(|w| (size(w[1]), w[0]) < (size(w[0]), w[1]))
        {
            return;
        }
        // The same sort as the blocks' (one sort's code to keep warm, not one per order).
        let most = c.iter().map(|&c| size(c)).max().unwrap_or(0);
        sort_by_fields(c, &mut self.keys, [most], |c| [most - size(c)]);
    }

    fn commit(&mut self, moves: Vec<(usize, usize, P::Made)>) {
        self.out.moves.reserve(moves.len());
        for (c, b, t) in moves {
            self.received[b] = true;
            self.out.bytes += self.candidates[c].need;
            self.out.moves.push((c, b, t));
        }
    }

    /// Stops emptying or draining `source`: back into the search.
    fn give_up(&mut self, source: usize) {
        if self.set_aside[source] {
            self.mark_aside(source, false);
            self.picture.set_aside(source, false);
        }
    }

    /// The first phase, common to both algorithms: empties (or drains) whole blocks. Returns
    /// whether a block is being drained (then nothing else may take its room).
    fn empty_blocks(&mut self) -> bool {
        let blocks = self.blocks;
        let mut order = std::mem::take(&mut self.sources);
        refill(&mut order, 0..blocks.len());
        // Blocks being drained first, then the most free bytes first, then the fewest live.
        let most_free = blocks.iter().map(|b| b.free(b.live)).max().unwrap_or(0);
        let most_live = blocks.iter().map(|b| b.live).max().unwrap_or(0);
        sort_by_fields(
            &mut order,
            &mut self.block_keys,
            [1, most_free, most_live],
            |b| {
                let block = &blocks[b];
                [
                    u64::from(!block.draining),
                    most_free - block.free(block.live),
                    block.live,
                ]
            },
        );
        self.empty_in_order(&order);
        // The blocks left draining, in the order they were tried: the order their passes
        // come in.
        let draining: Vec<usize> = order
            .iter()
            .copied()
            .filter(|&b| self.set_aside[b] && !self.emptied[b])
            .collect();
        self.sources = order;
        let any = !draining.is_empty();
        self.out.draining = draining;
        any
    }

    /// [`empty_blocks`](Self::empty_blocks) over the blocks in `order`: the blocks that fit
    /// what is left of the pass move now; from the first that does not (it moves its part,
    /// or nothing), the pass is *full*, and every block after it that can be emptied is
    /// planned ahead: all its allocations are placed, as reservations (see
    /// [planning ahead](self#planning-ahead)).
    fn empty_in_order(&mut self, order: &[usize]) {
        let blocks = self.blocks;
        if self.limits.moves == 0 || self.limits.bytes == 0 {
            return;
        }
        let mut full = false;
        refill(&mut self.pending, std::iter::repeat_n(false, blocks.len()));
        for &b in order {
            self.pending[b] = true;
        }
        for &source in order {
            self.pending[source] = false;
            let block = &blocks[source];
            if block.draining && block.live == 0 {
                // Its allocations left on their own.
                self.emptied[source] = true;
                self.out.emptied.push(source);
                continue;
            }
            if self.received[source] {
                self.give_up(source);
                continue;
            }
            if !block.draining && self.live[source] == 0 {
                // Empty to begin with: nothing to move (and not a destination either).
                continue;
            }
            if block.receiver && self.live[source] > block.size / 2 {
                // It is kept: see [receivers](self#receivers).
                self.give_up(source);
                continue;
            }
            // A quick look, without a walk: not in less room than it holds, or (a bump or ring
            // block holds its freed allocations' room too) than the index's needs, when it knows
            // them all. (Not a drain: its room is in its reservations, live bytes elsewhere.)
            if !block.draining && self.room(source) < u128::from(self.live[source]) {
                let mut needs = Vec::new();
                let known = self.picture.index(source, &mut needs) == Some(true);
                if !known || self.room(source) < needs.iter().map(|&n| u128::from(n)).sum::<u128>()
                {
                    self.give_up(source);
                    continue;
                }
            }
            // A block whose largest allocation does not fit a whole pass can never be emptied
            // over passes: when that is known already, the block needs no walk to be left
            // alone.
            if !block.draining
                && self.live[source] > self.limits.bytes
                && block.largest.is_some_and(|l| l > self.limits.bytes)
            {
                continue;
            }
            let (all_movable, mut candidates) = self.facts(source);
            if !all_movable || candidates.is_empty() {
                self.give_up(source);
                continue;
            }
            self.sort(&mut candidates);
            let held = |i: usize| self.candidates[candidates[i]].size;
            debug_assert_eq!(
                (0..candidates.len()).map(held).sum::<DeviceSize>(),
                self.live[source],
                "block {source}'s candidates"
            );
            // The quick look again, with the needs the walk found; a pass's limit counts them
            // too (the bytes each move copies, not the range it holds in a bump or ring).
            let size = |i: usize| self.candidates[candidates[i]].need;
            let need: u128 = (0..candidates.len()).map(|i| u128::from(size(i))).sum();
            if !block.draining && self.room(source) < need {
                self.give_up(source);
                continue;
            }
            if size(0) > self.limits.bytes {
                // Not even over several passes (a drain must be able to end).
                self.give_up(source);
                continue;
            }
            if block.draining && full {
                // Its turn comes in a later pass: its reservations hold its room until then.
                continue;
            }
            let part = if full {
                DrainPart::Waits
            } else {
                drain_part(candidates.len(), size, self.left())
            };
            let part = match part {
                DrainPart::Whole => None,
                DrainPart::Part(part) => Some(part),
                DrainPart::Waits => Some(Vec::new()),
            };
            if block.draining {
                // It holds the room for its rest in its reservations: this pass places just
                // its part.
                let Some(part) = part else {
                    if self.claim_all(source, &candidates) {
                        self.set_live(source, 0);
                        self.emptied[source] = true;
                        self.out.emptied.push(source);
                    }
                    continue;
                };
                let part: Vec<usize> = part.iter().map(|&i| candidates[i]).collect();
                if self.claim_all(source, &part) {
                    full = true;
                    let bytes: DeviceSize = part.iter().map(|&c| self.candidates[c].size).sum();
                    self.set_live(source, self.live[source] - bytes);
                }
                continue;
            }
            if !self.picture.set_aside(source, true) {
                continue;
            }
            self.mark_aside(source, true);
            // Every allocation is placed: those of the part move now, the others' places are
            // reserved for the passes to come.
            // First sparing the blocks still to be tried that hold less, then, when the rest
            // has too little room, in those too (see [`spare`]).
            let mut placed = None;
            if self.mark_spared(source) {
                placed = self.place_all(source, &candidates);
                self.unmark_spared();
            }
            if placed.is_none() {
                placed = self.place_all(source, &candidates);
            }
            let Some(placed) = placed else {
                self.give_up(source);
                continue;
            };
            let Some(part) = part else {
                self.set_live(source, 0);
                self.emptied[source] = true;
                self.out.emptied.push(source);
                self.commit(placed);
                continue;
            };
            full = true;
            // `part` is ascending, as `placed` is in the order of the candidates.
            let mut kept = Vec::with_capacity(part.len());
            let mut next = part.iter().peekable();
            for (i, m) in placed.into_iter().enumerate() {
                if next.next_if(|&&k| k == i).is_some() {
                    kept.push(m);
                } else {
                    // Not emptied or drained later in this plan either: it holds the drain's
                    // room.
                    self.received[m.1] = true;
                    self.out.reserved.push(m);
                }
            }
            let kept_bytes: DeviceSize = kept.iter().map(|m| self.candidates[m.0].size).sum();
            self.set_live(source, self.live[source] - kept_bytes);
            self.commit(kept);
        }
    }
}

/// Plans a pass over `blocks` and `candidates` (see the [module docs](self)), asking
/// `picture` for destinations, walks and blocks set aside. `candidates` grows by what walks
/// find (a caller may keep it, and its capacity, for the next plan).
pub(crate) fn plan_moves<P: Picture>(
    blocks: &[BlockState],
    candidates: &mut Vec<Candidate>,
    algorithm: Algorithm,
    limits: Limits,
    picture: &mut P,
    scratch: &mut Scratch,
) -> MovePlan<P::Made> {
    let n = blocks.len();
    use std::mem::take;
    let mut live = take(&mut scratch.live);
    refill(&mut live, blocks.iter().map(|b| b.live));
    let mut walked = take(&mut scratch.walked);
    refill(&mut walked, std::iter::repeat_n(None, n));
    let mut received = take(&mut scratch.received);
    refill(&mut received, blocks.iter().map(|b| b.received));
    let mut pending = take(&mut scratch.pending);
    refill(&mut pending, std::iter::repeat_n(false, n));
    let mut spared = take(&mut scratch.spared);
    refill(&mut spared, std::iter::repeat_n(false, n));
    let mut largest_free = take(&mut scratch.largest_free);
    refill(&mut largest_free, blocks.iter().map(|b| b.largest_free));
    let mut set_aside = take(&mut scratch.set_aside);
    refill(&mut set_aside, blocks.iter().map(|b| b.draining));
    let mut emptied = take(&mut scratch.emptied);
    refill(&mut emptied, std::iter::repeat_n(false, n));
    let mut block_keys = take(&mut scratch.block_keys);
    let destinations = Destinations::in_buffers(
        blocks,
        &live,
        take(&mut scratch.order),
        take(&mut scratch.at),
        take(&mut scratch.free),
        &mut block_keys,
    );
    let room = (0..n)
        .filter(|&b| !set_aside[b] && live[b] > 0)
        .map(|b| u128::from(blocks[b].free(live[b])))
        .sum();
    let mut p = Planner {
        blocks,
        candidates,
        walked,
        limits,
        picture,
        destinations,
        received,
        pending,
        spared,
        largest_free,
        set_aside,
        emptied,
        live,
        sources: take(&mut scratch.sources),
        keys: take(&mut scratch.keys),
        block_keys,
        room,
        out: MovePlan {
            emptied: Vec::new(),
            draining: Vec::new(),
            moves: Vec::new(),
            reserved: Vec::new(),
            bytes: 0,
            exhausted: Vec::new(),
            live: Vec::new(),
        },
    };
    let draining = p.empty_blocks();
    if algorithm == Algorithm::Full && !draining {
        p.gather();
        if !p.out.exhausted.is_empty() {
            p.out.live = p.live.clone();
        }
    }
    *scratch = Scratch {
        walked: p.walked,
        live: p.live,
        received: p.received,
        pending: p.pending,
        spared: p.spared,
        largest_free: p.largest_free,
        set_aside: p.set_aside,
        emptied: p.emptied,
        order: p.destinations.order,
        at: p.destinations.at,
        free: p.destinations.free,
        sources: p.sources,
        keys: p.keys,
        block_keys: p.block_keys,
    };
    p.out
}

#[cfg(test)]
mod tests;
