//! The aliasing pairs of a plan: for each resource, the earlier resources whose memory it
//! takes over. Pure.
//!
//! # Algorithm
//!
//! The resources are visited in the order of their first pass. Each memory object keeps a
//! sorted list of segments of its bytes, each mapped to the last resource visited that covers
//! them. A resource takes over from the owners of the segments in its range, and becomes
//! their owner. Resources that cover one byte are never alive together, so the owner of a byte
//! when a resource is visited is the one alive there last: exactly the resources the new one
//! needs a barrier against. Cost: two binary searches per resource, the segments it covers,
//! and one move of the list's tail (at most 2n + 1 segments).

#![deny(unsafe_code)]

use super::{Placement, TransientResource};
use crate::layout::DeviceSize;

/// `(takes_over, start)`: the sorted list of resource `r` is
/// `takes_over[start[r]..start[r + 1]]`.
pub(crate) fn takes_over(
    resources: &[TransientResource],
    placements: &[Placement],
    memory_count: usize,
) -> (Vec<usize>, Vec<usize>) {
    let mut order: Vec<usize> = (0..resources.len()).collect();
    order.sort_unstable_by_key(|&r| (resources[r].first_pass, r));
    // Sorted by start; segment `i` is `[segments[i].0, segments[i + 1].0)` (the last one
    // runs to the end of the memory) and belongs to resource `segments[i].1`, or to none
    // when that is `NONE`.
    let mut owners: Vec<Vec<(DeviceSize, usize)>> = vec![vec![(0, NONE)]; memory_count];
    // `(later, earlier)`, sorted and grouped by `later` at the end.
    let mut pairs: Vec<(usize, usize)> = Vec::new();
    let mut replacement = Vec::with_capacity(3);
    for &r in &order {
        let Placement { memory, offset } = placements[r];
        let end = offset + resources[r].layout.size();
        let segments = &mut owners[memory];
        // The segments that meet `[offset, end)`: `first..last`, never empty since the
        // first segment starts at 0.
        let first = segments.partition_point(|s| s.0 <= offset) - 1;
        let last = segments.partition_point(|s| s.0 < end);
        pairs.extend(
            segments[first..last]
                .iter()
                .filter(|s| s.1 != NONE)
                .map(|s| (r, s.1)),
        );
        replacement.clear();
        let (head_start, head_owner) = segments[first];
        if head_start < offset {
            replacement.push((head_start, head_owner));
        }
        replacement.push((offset, r));
        let tail_owner = segments[last - 1].1;
        let tail_end = segments.get(last).map_or(DeviceSize::MAX, |s| s.0);
        if tail_end > end {
            replacement.push((end, tail_owner));
        }
        segments.splice(first..last, replacement.drain(..));
    }
    pairs.sort_unstable();
    pairs.dedup();
    let mut start = Vec::with_capacity(resources.len() + 1);
    let mut next = 0;
    for r in 0..=resources.len() {
        while next < pairs.len() && pairs[next].0 < r {
            next += 1;
        }
        start.push(next);
    }
    (pairs.into_iter().map(|(_, q)| q).collect(), start)
}

/// The owner of bytes no resource used yet.
const NONE: usize = usize::MAX;
