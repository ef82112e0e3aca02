//! Sources that [`Full`](super::Algorithm::Full)'s gathering may pass over: nothing they hold
//! found room when last tried, and nothing has given room since where they could gather.
//!
//! Once the first phase has emptied what it can, Full's gathering plans again in every pass
//! and tries the least occupied blocks as sources, one after another. Late in a
//! defragmentation most of those tries fail: every allocation of the source is refused by
//! every block it may gather into (those holding more live bytes), and the next plan tries
//! the same allocations against the same blocks again, to the same end. A plan reports the
//! sources whose gathering ran through all their allocations this way (its
//! [`exhausted`](super::MovePlan::exhausted)); the caller keeps them, with a *stamp* of each
//! block that may receive as the plan left it, and marks such a source
//! [`settled`](super::BlockState::settled) in the next picture while
//!
//! - the source holds what it held then, but for the moves out of it that completed (its
//!   allocations left are those that failed: the caller's kept walk of it holds), and
//! - no block it may gather into now (another block holding more live bytes, not set aside,
//!   not empty) shows a stamp other than the one kept: none of them has gained room (an
//!   allocation freed in it, by a completed move, a skipped move's destination given back or
//!   the application), and none became a destination (a block new to the list, or one put
//!   back from being set aside, has no kept stamp).
//!
//! Within a plan the blocks a source may gather into only lose room before its turn (the
//! first phase and the sources before it move into them; a source before it holds fewer
//! live bytes, so it is no destination of it), so a settled source would move nothing. The
//! planner reports a source as exhausted only when the blocks it could gather into were the
//! same for all its allocations: its live bytes fall as its allocations leave, and a block
//! holding live bytes between the source's before and after was a destination of its last
//! tries only.

use crate::layout::DeviceSize;

/// Which blocks are [settled](super::BlockState::settled): `exhausted(s)` says whether block
/// `s` was reported exhausted by the last plan and holds what it held then but the moves out
/// of it that completed; `may_receive(b)` whether block `b` may receive now (not set aside,
/// not empty); `unchanged(b)` whether its stamp is the one kept after that plan. `live` is
/// each block's live bytes now.
pub(crate) fn settled(
    live: &[DeviceSize],
    exhausted: impl Fn(usize) -> bool,
    may_receive: impl Fn(usize) -> bool,
    unchanged: impl Fn(usize) -> bool,
) -> Vec<bool> {
    // The two changed destinations holding the most live bytes: a source is settled when
    // every changed block other than itself holds at most its live bytes.
    let mut top: [Option<(DeviceSize, usize)>; 2] = [None, None];
    for (b, &l) in live.iter().enumerate() {
        if !may_receive(b) || unchanged(b) {
            continue;
        }
        if top[0].is_none_or(|t| l > t.0) {
            top[1] = top[0];
            top[0] = Some((l, b));
        } else if top[1].is_none_or(|t| l > t.0) {
            top[1] = Some((l, b));
        }
    }
    (0..live.len())
        .map(|s| {
            if !exhausted(s) {
                return false;
            }
            let most = match top {
                [Some((_, b)), other] if b == s => other,
                [first, _] => first,
            };
            most.is_none_or(|(l, _)| l <= live[s])
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// A source is settled exactly when it was exhausted and no other block that may
        /// receive, holding more live bytes, changed (the rule spelled out block by block).
        #[test]
        fn settled_is_the_rule_block_by_block(
            blocks in prop::collection::vec((0u64..8, any::<bool>(), any::<bool>(), any::<bool>()), 0..12),
        ) {
            let live: Vec<DeviceSize> = blocks.iter().map(|b| b.0).collect();
            let got = settled(&live, |b| blocks[b].1, |b| blocks[b].2, |b| blocks[b].3);
            for s in 0..blocks.len() {
                let want = blocks[s].1
                    && (0..blocks.len()).all(|b| {
                        b == s || !blocks[b].2 || blocks[b].3 || live[b] <= live[s]
                    });
                prop_assert_eq!(got[s], want, "block {}", s);
            }
        }
    }
}
