//! The second phase of [`Full`](super::Algorithm::Full): gathering what the first phase
//! left, out of the least occupied blocks into fuller ones (see the
//! [algorithms](super#algorithms)).

use super::orders::{refill, sort_by_fields};
use super::settle::Tried;
use super::{Candidate, Picture, Planner};
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
        let mut tried = Vec::new();
        self.gather_in_order(&order, &mut tried);
        self.report_exhausted(tried);
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

    /// The most one allocation of `source` may need to find room in the blocks that may
    /// receive from it once it holds no more than `from` live bytes.
    fn room_above(&self, source: usize, from: DeviceSize) -> DeviceSize {
        (0..self.blocks.len())
            .filter(|&b| b != source && !self.set_aside[b] && self.live[b] > from)
            .map(|b| self.largest_free[b].min(self.destinations.free[b]))
            .max()
            .unwrap_or(0)
    }

    /// A bound on what one of `candidates` of `source` may need to find room in its
    /// gathering, whatever leaves it first: the room of the blocks it may gather into once
    /// every candidate that needs no more has left it (its live bytes fall as they leave, and
    /// more blocks hold more than it). Found from the room of every block that may receive,
    /// down to where it stays (a block's bounds only fall as allocations are placed in it).
    fn gathering_bound(&self, source: usize, candidates: &[usize]) -> DeviceSize {
        let all = &*self.candidates;
        self.bound_on(source, || {
            candidates.iter().map(|&c| (all[c].need, all[c].size))
        })
    }

    /// The candidates of `source` that may find room in its gathering, from the allocator's
    /// index of its registrations, with no walk over its ranges: when it was not walked yet,
    /// the index can tell, and the block cannot be emptied in this gathering anyway (some of
    /// its allocations may not move, or need more than any room it may gather into). Its
    /// candidates then need at most the [bound](Self::gathering_bound) of the gathering, and
    /// it counts as not all movable (it is not emptied).
    fn index_facts(&mut self, source: usize) -> Option<(bool, Vec<usize>)> {
        if self.blocks[source].walked || self.walked[source].is_some() {
            return None;
        }
        let mut needs = Vec::new();
        let all_listed = self.picture.index(source, &mut needs)?;
        let most = self.bound_on(source, || needs.iter().map(|&n| (n, n)));
        if all_listed && needs.iter().all(|&n| n <= most) {
            // It might empty: the walk tells whether it does.
            return None;
        }
        let candidates = self.picture.walk_index(source, most, self.candidates);
        Some((false, candidates))
    }

    /// [`gathering_bound`](Self::gathering_bound) of allocations given as `(need, size)`
    /// pairs (`items` lists them anew at each call).
    fn bound_on<I: Iterator<Item = (DeviceSize, DeviceSize)>>(
        &self,
        source: usize,
        items: impl Fn() -> I,
    ) -> DeviceSize {
        let mut room = self.room_above(source, 0);
        loop {
            let leaving: DeviceSize = items()
                .filter(|&(need, _)| need <= room)
                .map(|(_, size)| size)
                .sum();
            let next = self.room_above(source, self.live[source].saturating_sub(leaving));
            if next >= room {
                return room;
            }
            room = next;
        }
    }

    /// Whether a block other than `source`, that may receive, may have been a destination of
    /// `source`'s last tries (once it held `after` live bytes) and not of its first (when it
    /// held `before`). Such a block held at most `before` then, and since received at most
    /// what left the source: it holds more than `after` now, and at most `before` plus that.
    fn destination_between(&self, source: usize, after: DeviceSize, before: DeviceSize) -> bool {
        let most = before.saturating_add(before.saturating_sub(after));
        after < before
            && (0..self.blocks.len()).any(|b| {
                b != source && !self.set_aside[b] && self.live[b] > after && self.live[b] <= most
            })
    }

    /// [`gather`](Self::gather) over the blocks in `order`. An allocation larger than what is
    /// left of the pass's bytes is passed over (smaller ones may still fit); the gathering
    /// ends once the pass has no bytes or moves left. What a source moves thus depends only
    /// on which of its allocations find room, never on how soon a refusal is known (the
    /// hints, and the sources and allocations passed over below, spare only tries that would
    /// fail).
    /// The sources found exhausted go to `tried`, with their live bytes and every block's then
    /// (see [`report_exhausted`](Self::report_exhausted)).
    fn gather_in_order(&mut self, order: &[usize], tried: &mut Vec<Tried>) {
        for &source in order {
            let left = self.left();
            if left.moves == 0 || left.bytes == 0 {
                return;
            }
            if self.set_aside[source] || self.received[source] || self.blocks[source].receiver {
                continue;
            }
            // Nothing it holds found room when last tried, and no block it may gather into
            // gained room since (see `settle`): it would move nothing.
            if self.may_pass_over(source) {
                tried.push((source, self.live[source], self.live.clone()));
                continue;
            }
            // None of its allocations fits where it may go (what `place_one` tests first), or
            // what is left of the pass: nothing moves, and the block needs no walk.
            if let Some(smallest) = self.blocks[source].smallest {
                if smallest > left.bytes || smallest > self.gathering_room(source) {
                    continue;
                }
            }
            let (all_movable, mut candidates) = match self.index_facts(source) {
                Some(facts) => facts,
                None => self.facts(source),
            };
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
            // Only those that fit somewhere (the others `place_one` would refuse in every
            // block, on its first tests) and that fit the pass are tried, and sorted.
            let all = candidates.len();
            let room = self.gathering_bound(source, &candidates);
            let mut cut = false;
            candidates.retain(|&c| {
                let Candidate { need, .. } = self.candidates[c];
                cut |= need > left.bytes;
                need <= room && need <= left.bytes
            });
            self.sort(&mut candidates);
            let before = self.live[source];
            let mut moved = 0;
            for &c in &candidates {
                let size = self.candidates[c].size;
                let left = self.left();
                if left.moves == 0 {
                    return;
                }
                // The limit counts what a move copies.
                if self.candidates[c].need > left.bytes {
                    cut = true;
                    continue;
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
            let emptied = all_movable && moved > 0 && moved == all;
            // Every allocation left in it was tried, and refused by the same blocks: the next
            // plan may pass over it while none of them gains room.
            if !emptied && !cut && !self.destination_between(source, self.live[source], before) {
                tried.push((source, self.live[source], self.live.clone()));
            }
            if emptied && self.picture.set_aside(source, true) {
                self.mark_aside(source, true);
                self.emptied[source] = true;
                self.out.emptied.push(source);
            }
        }
    }
}
