//! The second phase of [`Full`](super::Algorithm::Full): gathering what the first phase
//! left, out of the least occupied blocks into fuller ones (see the
//! [algorithms](super#algorithms)).

use super::orders::{refill, sort_by_fields};
use super::{Picture, Planner};
use crate::layout::DeviceSize;

impl<P: Picture> Planner<'_, P> {
    /// The second phase of [`Full`](super::Algorithm::Full): gathers what is left, out of the least
    /// occupied blocks into fuller ones. It rarely empties a block the first phase gave up
    /// on (its destinations are among the first phase's, the fuller ones), but it can: the
    /// first phase tries a block's allocations in the destinations' order as they were, and
    /// a first fit there may fail where the gathering's, after other moves, succeeds (the
    /// property tests found such plans). A block all of whose allocations leave is then
    /// emptied, as the first phase would have.
    pub(super) fn gather(&mut self) {
        let mut order = std::mem::take(&mut self.sources);
        refill(&mut order, 0..self.blocks.len());
        let live = &self.live;
        let most = live.iter().copied().max().unwrap_or(0);
        sort_by_fields(&mut order, &mut self.block_keys, [most], |b| [live[b]]);
        self.gather_in_order(&order);
        self.sources = order;
    }

    /// The most one allocation of `source` may need to find room in the gathering: the
    /// largest free range (by its bound, and the free bytes) of a block that may take it.
    fn gathering_room(&self, source: usize) -> DeviceSize {
        let from = self.live[source];
        (0..self.blocks.len())
            .filter(|&b| b != source && !self.set_aside[b] && self.live[b] > from)
            .map(|b| self.largest_free[b].min(self.destinations.free[b]))
            .max()
            .unwrap_or(0)
    }

    /// [`gather`](Self::gather) over the blocks in `order`.
    fn gather_in_order(&mut self, order: &[usize]) {
        for &source in order {
            if self.set_aside[source] || self.received[source] {
                continue;
            }
            // None of its allocations fits where it may go (what `place_one` tests first):
            // nothing moves, and the block needs no walk.
            if let Some(smallest) = self.blocks[source].smallest {
                if smallest > self.gathering_room(source) {
                    continue;
                }
            }
            let (all_movable, mut candidates) = self.facts(source);
            // A block all of whose allocations may move holds exactly its candidates' bytes
            // (a walk kept from an earlier pass must show it too).
            debug_assert!(
                !all_movable
                    || candidates
                        .iter()
                        .map(|&c| self.candidates[c].size)
                        .sum::<DeviceSize>()
                        == self.live[source],
                "block {source}'s candidates"
            );
            self.sort(&mut candidates);
            let mut moved = 0;
            for &c in &candidates {
                let size = self.candidates[c].size;
                let left = self.left();
                if left.moves == 0 || size > left.bytes {
                    return;
                }
                // Only into blocks that hold more than the source: data gathers, never
                // spreads.
                let from = self.live[source];
                if let Some((b, t)) = self.place_one(c, source, |live, b| live[b] > from) {
                    self.set_live(source, self.live[source] - size);
                    self.destinations.update(self.blocks, &self.live, source);
                    self.commit(vec![(c, b, t)]);
                    moved += 1;
                }
            }
            // Every allocation left (the first phase gave up on the block, and the room
            // gathering left before it served it after all): emptied, so that it is released.
            if all_movable
                && moved > 0
                && moved == candidates.len()
                && self.picture.set_aside(source, true)
            {
                self.mark_aside(source, true);
                self.emptied[source] = true;
                self.out.emptied.push(source);
            }
        }
    }
}
