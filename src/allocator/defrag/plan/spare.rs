//! Cheaper blocks are not filled: which blocks the allocations of a source leave alone on
//! their first try.
//!
//! The destinations are the tightest blocks, and with blocks of mixed sizes (a vector's first
//! blocks are smaller: it grows them) those are the small ones, however little they hold.
//! Filling a small, sparse block that the phase would empty a little later keeps it for good
//! (it received), and a large block that holds more stays in its place: the allocator then
//! ends with the small blocks full and a partly used large one. So an allocation of a source
//! goes first to the destinations other than the blocks still to be tried as sources that
//! hold fewer live bytes than the source (they are cheaper to empty, and their turn comes),
//! unless such a block will not be emptied anyway (a receiver it keeps, one that received in
//! this plan, or one holding an allocation that may not move or that no pass can move).
//! Only when the source does not fit the other destinations
//! are its allocations placed again with those blocks among them, so no source is left
//! alone that the plain search would have emptied. Whether a block holds an allocation that
//! may not move, or one larger than a pass (when its largest allocation is not known up
//! front), is learned by walking it the first time it could be spared (such a block stays a
//! destination); a block still to be tried is walked when its turn comes anyway,
//! and the walk is kept for then. A drain, which an earlier plan started, is placed without
//! this rule, and so is every source where an undone place does not give its room back (a
//! bump allocator's block gets it back only when all of it is freed): there the failed
//! first try left that room taken, and the second one, or a later source, could then fail
//! where the plain search succeeds.
//!
//! On the peers bench's own state (8 MiB blocks after blocks of 2 and 4 MiB) the plan now
//! ends with 1.006 times the live bytes reserved, where it ended with 1.153 (as VMA does),
//! moving 0.243 bytes per byte freed against VMA's 0.248; on the fragmented states of
//! 16 MiB blocks it ends at or below VMA's reserved bytes on every one of six seeds and
//! sizes (see docs/defragmentation.md).

use super::{Picture, Planner};

#[cfg(test)]
thread_local! {
    /// Tests only: plans without the rule (the plain search), to compare the two.
    pub(super) static PLAIN: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

impl<P: Picture> Planner<'_, P> {
    /// Marks the blocks that the placements of `source`'s allocations leave alone on their
    /// first try: those still to be tried as sources, holding fewer live bytes than it, that
    /// the phase may empty: none that received in this plan, nor a receiver it keeps (see
    /// [receivers](super#receivers)), nor a block whose largest allocation is known to
    /// exceed a pass, and every allocation of them may move, each within a pass (see
    /// [`may_empty`](Self::may_empty)). Returns whether it marked any
    /// (with none, the first try would be the plain one).
    pub(super) fn mark_spared(&mut self, source: usize) -> bool {
        #[cfg(test)]
        if PLAIN.with(|p| p.get()) {
            return false;
        }
        // A failed first try would cost its room for good (see the module docs).
        if !self.picture.undo_gives_room_back() {
            return false;
        }
        let from = self.live[source];
        let mut any = false;
        for b in 0..self.blocks.len() {
            let live = self.live[b];
            // A block that received in this plan is kept (given up when its turn comes), and
            // a walk of it would show the moves it holds.
            if !self.pending[b] || self.received[b] || live == 0 || live >= from {
                continue;
            }
            let block = &self.blocks[b];
            if block.receiver && live > block.size / 2 {
                continue;
            }
            // Its largest allocation moves within no pass: the phase leaves it alone without
            // a walk, and so does this.
            if live > self.limits.bytes && block.largest.is_some_and(|l| l > self.limits.bytes) {
                continue;
            }
            if self.may_empty(b) {
                self.spared[b] = true;
                any = true;
            }
        }
        any
    }

    /// Ends a first try: no block is spared.
    pub(super) fn unmark_spared(&mut self) {
        self.spared.fill(false);
    }

    /// Whether block `b` holds allocations, all of them may move, and each within a pass
    /// (else the phase gives it up on its turn: a drain must be able to end), walking it the
    /// first time it is asked, as [`facts`](Planner::facts) does, when it was not walked up
    /// front. Its largest allocation is not always known before the walk (the allocator
    /// knows it for a block an earlier pass walked): the walk tells.
    fn may_empty(&mut self, b: usize) -> bool {
        let block = &self.blocks[b];
        let (all_movable, candidates) = if block.walked {
            (block.all_movable, &block.candidates)
        } else {
            if self.walked[b].is_none() {
                let facts = self.picture.walk(b, self.candidates);
                self.walked[b] = Some(facts);
            }
            match &self.walked[b] {
                Some((all_movable, candidates)) => (*all_movable, candidates),
                None => return false,
            }
        };
        let bytes = self.limits.bytes;
        all_movable
            && !candidates.is_empty()
            && candidates.iter().all(|&c| self.candidates[c].need <= bytes)
    }
}
