//! The one rule for the part of a drain that moves in a pass (see
//! [draining](super#passes-and-draining)), whether a plan makes it or the allocator hands out a
//! drain's reservations on its own.

use super::Limits;
use crate::layout::DeviceSize;

/// What a block that cannot empty within a pass moves in it (see
/// [draining](super#passes-and-draining)).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum DrainPart {
    /// It empties within the limits left: every allocation moves.
    Whole,
    /// These of its allocations move (indices into its allocations, largest first): the
    /// largest first, each that still fits the limits left.
    Part(Vec<usize>),
    /// Not even its largest allocation fits the limits left: nothing of it moves in this
    /// pass (a drain must be able to end, so none starts whose allocations do not each fit
    /// a whole pass).
    Waits,
}

/// What a block (or the rest of a drain) moves in a pass with `left` of its limits: `n`
/// allocations, `size(i)` bytes the `i`-th, largest first. The one rule for a drain's part,
/// whether a plan makes it or the allocator hands out a drain's reservations on its own.
pub(crate) fn drain_part(n: usize, size: impl Fn(usize) -> DeviceSize, left: Limits) -> DrainPart {
    let total = (0..n).map(&size).fold(0, DeviceSize::saturating_add);
    if n <= left.moves && total <= left.bytes {
        return DrainPart::Whole;
    }
    // The largest first: when it does not fit, this pass would move nothing (and the limits
    // left are never more than a pass's, so neither does an allocation larger than a pass).
    if n == 0 || size(0) > left.bytes {
        return DrainPart::Waits;
    }
    // The smallest: once less than it is left, nothing more fits.
    let smallest = size(n - 1);
    let mut part = Vec::new();
    let mut bytes: DeviceSize = 0;
    for i in 0..n {
        if part.len() == left.moves || left.bytes - bytes < smallest {
            break;
        }
        if bytes + size(i) <= left.bytes {
            bytes += size(i);
            part.push(i);
        }
    }
    DrainPart::Part(part)
}
