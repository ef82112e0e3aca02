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
//! - [`Fast`](Algorithm::Fast) empties whole blocks and nothing else: the least occupied
//!   blocks first, each only if all its allocations may move and all find room in the other
//!   blocks (fullest first, so that the room left over stays in few blocks). A block it
//!   cannot empty entirely is left alone (its tentative destinations are undone), so every
//!   move it makes frees a memory object.
//! - [`Full`](Algorithm::Full) does the same, then packs the rest: from the least occupied
//!   remaining blocks it moves what fits into blocks that hold more, even when the source
//!   block does not empty, so that live data gathers in as few blocks as it can and the free
//!   space left joins into larger ranges.
//!
//! Both respect the limits of a pass (bytes and moves); a block that Fast empties is emptied
//! within one pass or not at all. A block that receives an allocation is never emptied in
//! the same plan, a block that is emptied never receives one, and neither does a block that
//! was empty to begin with (the one empty block the allocator keeps): moving into it would
//! free nothing, and the next pass would move everything back.

#![deny(unsafe_code)]

use crate::layout::DeviceSize;

/// How a defragmentation chooses its moves (see [algorithms](self#algorithms)).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// Empty whole blocks, with as few moves as that takes. The default.
    #[default]
    Fast,
    /// Empty whole blocks, then gather the rest into as few blocks as possible.
    Full,
}

/// One block as the planner sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct BlockState {
    /// The block's size.
    pub size: DeviceSize,
    /// Bytes held by live allocations (movable or not).
    pub live: DeviceSize,
    /// Whether every live allocation of the block may move (so that it can be emptied).
    pub all_movable: bool,
    /// The movable allocations in it, as indices into the candidates.
    pub candidates: Vec<usize>,
}

/// One allocation that may move.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Candidate {
    /// Its block, as an index into the blocks.
    pub block: usize,
    /// The bytes it holds there.
    pub size: DeviceSize,
}

/// The most a pass may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Limits {
    pub bytes: DeviceSize,
    pub moves: usize,
}

/// What a plan decided.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Plan<T> {
    /// The blocks that every live allocation leaves.
    pub emptied: Vec<usize>,
    /// Each move: the candidate, its destination block, and what `place` returned for it.
    pub moves: Vec<(usize, usize, T)>,
    /// Bytes moved.
    pub bytes: DeviceSize,
}

/// Plans a pass over `blocks` and `candidates` (see the [module docs](self)). `place(c, b)`
/// puts candidate `c` in block `b` and returns what it made, or `None` when it does not
/// fit; `undo` takes back what `place` made for a move that is given up; `aside(b, true)` is
/// called before the planner starts emptying block `b` (so that nothing else lands in it
/// meanwhile), `aside(b, false)` when it gives up on it.
pub(crate) fn plan<T>(
    blocks: &[BlockState],
    candidates: &[Candidate],
    algorithm: Algorithm,
    limits: Limits,
    mut place: impl FnMut(usize, usize) -> Option<T>,
    mut undo: impl FnMut(T),
    mut aside: impl FnMut(usize, bool),
) -> Plan<T> {
    let mut out = Plan {
        emptied: Vec::new(),
        moves: Vec::new(),
        bytes: 0,
    };
    let mut live: Vec<DeviceSize> = blocks.iter().map(|b| b.live).collect();
    // Blocks that received an allocation, and blocks being emptied.
    let mut received = vec![false; blocks.len()];
    let mut emptying = vec![false; blocks.len()];
    let order_by_live = |live: &[DeviceSize]| {
        let mut order: Vec<usize> = (0..blocks.len()).collect();
        order.sort_by_key(|&b| (live[b], b));
        order
    };
    // Destinations for a move out of `source`: the other blocks that hold something, fullest
    // first. Filling an empty block would only trade one block in use for another (and a
    // kept empty block would then ping-pong with the one emptied into it, pass after pass).
    let destinations = |live: &[DeviceSize], emptying: &[bool], source: usize| {
        let mut order: Vec<usize> = (0..blocks.len())
            .filter(|&b| b != source && !emptying[b] && live[b] > 0)
            .collect();
        order.sort_by_key(|&b| (std::cmp::Reverse(live[b]), b));
        order
    };
    // Candidates of a block, largest first (they are the hardest to place).
    let sorted = |b: usize| {
        let mut c = blocks[b].candidates.clone();
        c.sort_by_key(|&c| (std::cmp::Reverse(candidates[c].size), c));
        c
    };

    // Whole blocks, least occupied first.
    for source in order_by_live(&live) {
        let block = &blocks[source];
        if !block.all_movable || received[source] || block.candidates.is_empty() {
            continue;
        }
        let bytes: DeviceSize = block.candidates.iter().map(|&c| candidates[c].size).sum();
        if out.moves.len() + block.candidates.len() > limits.moves
            || out.bytes.saturating_add(bytes) > limits.bytes
        {
            continue;
        }
        emptying[source] = true;
        aside(source, true);
        let mut placed = Vec::new();
        let mut complete = true;
        for c in sorted(source) {
            let found = destinations(&live, &emptying, source)
                .into_iter()
                .find_map(|b| place(c, b).map(|t| (b, t)));
            match found {
                Some((b, t)) => {
                    live[b] += candidates[c].size;
                    placed.push((c, b, t));
                }
                None => {
                    complete = false;
                    break;
                }
            }
        }
        if complete {
            for &(_, b, _) in &placed {
                received[b] = true;
            }
            live[source] = 0;
            out.bytes += bytes;
            out.emptied.push(source);
            out.moves.extend(placed);
        } else {
            emptying[source] = false;
            aside(source, false);
            for (c, b, t) in placed {
                live[b] -= candidates[c].size;
                undo(t);
            }
        }
    }
    if algorithm == Algorithm::Fast {
        return out;
    }
    // Then gather: out of the least occupied blocks left, into fuller ones. This never
    // empties a block the first phase could not: its destinations are a subset of the first
    // phase's (the fuller ones), with no more room than they had then, under the same limits.
    for source in order_by_live(&live) {
        if emptying[source] || received[source] {
            continue;
        }
        for c in sorted(source) {
            let size = candidates[c].size;
            if out.moves.len() >= limits.moves || out.bytes.saturating_add(size) > limits.bytes {
                return out;
            }
            // Only into blocks that hold more than the source: data gathers, never spreads.
            let found = destinations(&live, &emptying, source)
                .into_iter()
                .filter(|&b| live[b] > live[source])
                .find_map(|b| place(c, b).map(|t| (b, t)));
            if let Some((b, t)) = found {
                live[b] += size;
                live[source] -= size;
                received[b] = true;
                out.bytes += size;
                out.moves.push((c, b, t));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests;
