//! Where a candidate goes: the first destination that takes it (tightest first, see
//! [`Destinations`](super::orders::Destinations)), or its reservation; and a source's
//! candidates all placed, or none.

use super::{Picture, Planner};
use crate::layout::DeviceSize;

impl<P: Picture> Planner<'_, P> {
    /// Puts candidate `c` of block `source` in the first destination that takes it, among
    /// those `eligible` says may: never the source, a block set aside, or an empty block
    /// (filling an empty block would only trade one block in use for another, and a kept
    /// empty block would then ping-pong with the one emptied into it, pass after pass).
    pub(super) fn place_one(
        &mut self,
        c: usize,
        source: usize,
        eligible: impl Fn(&[DeviceSize], usize) -> bool,
    ) -> Option<(usize, P::Made)> {
        // What it needs, not the range it holds (a bump's or ring's holds freed room too).
        let size = self.candidates[c].need;
        let from = self.destinations.first_with(size);
        let found = self.destinations.order[from..].iter().find_map(|&b| {
            // A block with fewer free bytes than the allocation holds cannot take it (the
            // cheap test first: most tries in the tightest blocks end here).
            if b == source
                || self.set_aside[b]
                || self.live[b] == 0
                || self.destinations.free[b] < size
                || self.candidates[c].need > self.largest_free[b]
                || !eligible(&self.live, b)
            {
                return None;
            }
            let (placed, largest_free) = self.picture.place(c, b);
            // What the block says of itself now (an allocation in it took room, or a failure
            // showed less than the bound).
            self.largest_free[b] = largest_free;
            placed.map(|t| (b, t))
        })?;
        self.set_live(found.0, self.live[found.0] + size);
        self.destinations.update(self.blocks, &self.live, found.0);
        Some(found)
    }

    /// Places candidate `c` of block `source`: in its reserved destination when it has one
    /// that may still receive, else in the first destination that takes it.
    pub(super) fn place_or_claim(&mut self, c: usize, source: usize) -> Option<(usize, P::Made)> {
        match self.candidates[c].reserved {
            // Its room is counted in the block's live bytes already. A reservation is never
            // in its own block, and its block is never set aside: it holds what may not move
            // (the reservation), so it is neither emptied nor drained.
            Some(b) => {
                debug_assert!(
                    b != source && !self.set_aside[b],
                    "reservation in block {b}"
                );
                // What the block says of itself (as after any attempt): the planner asks no
                // more of it until room comes back there.
                let (made, largest_free) = self.picture.place(c, b);
                self.largest_free[b] = largest_free;
                made.map(|t| (b, t))
            }
            None => {
                // Not into a block spared for this source (see [`spare`]).
                let spared = std::mem::take(&mut self.spared);
                let found = self.place_one(c, source, |_, b| !spared[b]);
                self.spared = spared;
                found
            }
        }
    }

    /// Takes back a tentative move of candidate `c` into block `b`.
    pub(super) fn unplace(&mut self, c: usize, b: usize, t: P::Made) {
        // Saturating: what a candidate needs is only an estimate of what its destination
        // holds (the padding differs).
        self.set_live(b, self.live[b].saturating_sub(self.candidates[c].need));
        self.destinations.update(self.blocks, &self.live, b);
        self.picture.undo(t);
        self.largest_free[b] = self.blocks[b].size;
    }

    /// Places every candidate of `source` (in its reservation, when it has one): the moves,
    /// in the candidates' order; `None`, with every place taken back, when one does not fit.
    pub(super) fn place_all(
        &mut self,
        source: usize,
        candidates: &[usize],
    ) -> Option<Vec<(usize, usize, P::Made)>> {
        let mut placed = Vec::with_capacity(candidates.len());
        for &c in candidates {
            match self.place_or_claim(c, source) {
                Some((b, t)) => placed.push((c, b, t)),
                None => {
                    for (c, b, t) in placed.into_iter().rev() {
                        self.unplace(c, b, t);
                    }
                    return None;
                }
            }
        }
        Some(placed)
    }

    /// Moves `candidates` of the draining block `source` now (claiming their reservations):
    /// `false`, with the drain given up, when one cannot be placed.
    pub(super) fn claim_all(&mut self, source: usize, candidates: &[usize]) -> bool {
        match self.place_all(source, candidates) {
            Some(placed) => {
                self.commit(placed);
                true
            }
            None => {
                self.give_up(source);
                false
            }
        }
    }
}
