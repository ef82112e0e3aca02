//! Sources that [`Full`](super::Algorithm::Full)'s gathering passes over: nothing they hold
//! found room when last tried, and no block they could gather into now has room it did not
//! have then.
//!
//! Once the first phase has emptied what it can, Full's gathering plans again in every pass
//! and tries the least occupied blocks as sources, one after another. Late in a
//! defragmentation most of those tries fail: every allocation of the source is refused by
//! every block it may gather into (those holding more live bytes), and the next plan tries
//! the same allocations against the same blocks again, to the same end. A plan reports the
//! sources whose gathering tried all their allocations this way (its
//! [`exhausted`](super::MovePlan::exhausted)). The caller marks such a source
//! [`exhausted`](super::BlockState::exhausted) in the next picture while it holds just the
//! allocations left then (it lost only the moves out of it that completed), and marks
//! [`unchanged`](super::BlockState::unchanged) each block that could receive when that plan
//! ended and in which nothing was freed since (no room came back to it: no completed move
//! out of it, no skipped move's destination given back, no free of the application).
//!
//! When its turn comes, an exhausted source is passed over if every block it may gather into
//! at that moment (another block holding more live bytes, not set aside, not empty) is
//! unchanged and held more live bytes than the source already when the last plan ended.
//! Such a block was a destination of every allocation the source has left, in that plan, and
//! has only lost room since (within this plan too: until the source's turn, blocks only
//! receive). A block that held fewer live bytes then (or was set aside, or is new) was never
//! tried: once it holds more than the source, by what it received, the source is tried. A
//! source passed over is reported exhausted again.
//!
//! A block counts as unchanged only if it also holds the live bytes the plan counted it with
//! when it ended ([`MovePlan::live`](super::MovePlan::live)): the plan counts what a block
//! received by the bytes each allocation held in its own block, and the block may hold fewer;
//! a refusal on its free bytes as the plan saw them would then not be one in the block.
//!
//! The planner reports a source exhausted only when the blocks it could gather into were the
//! same for all its allocations (its live bytes fall as its allocations leave, and a block
//! that held between its live bytes before and after, give or take what it received, was a
//! destination of its last tries only), and only when the rest of the plan kept to what the
//! next plan assumes: the source received nothing after its turn (a later source whose own
//! moves took it below this one may gather into it), and no block that was no destination of
//! it then came to hold more than it by the end of the plan (by what it received later).

use super::{Picture, Planner};
use crate::layout::DeviceSize;

/// A source found exhausted in the gathering: the block, its live bytes after its turn, and
/// every block's live bytes then.
pub(super) type Tried = (usize, DeviceSize, Vec<DeviceSize>);

impl<P: Picture> Planner<'_, P> {
    /// Whether the gathering may pass over `source` (see the [module docs](self)).
    pub(super) fn may_pass_over(&self, source: usize) -> bool {
        let blocks = self.blocks;
        if !blocks[source].exhausted {
            return false;
        }
        let from = self.live[source];
        let then = blocks[source].live;
        (0..blocks.len()).all(|b| {
            b == source
                || self.set_aside[b]
                || self.live[b] == 0
                || self.live[b] <= from
                || (blocks[b].unchanged && blocks[b].live > then)
        })
    }

    /// Reports the sources of `tried` exhausted, but those that received after their turn,
    /// and those that a block not among their destinations then now holds more than (see the
    /// [module docs](self)).
    pub(super) fn report_exhausted(&mut self, tried: Vec<Tried>) {
        for (source, after, then) in tried {
            let kept = !self.received[source]
                && (0..self.blocks.len()).all(|b| {
                    b == source || self.set_aside[b] || then[b] > after || self.live[b] <= after
                });
            if kept {
                self.out.exhausted.push(source);
            }
        }
    }
}
