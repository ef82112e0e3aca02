//! The aliasing pairs of a plan: for each resource, the earlier resources whose memory it
//! takes over. Pure.
//!
//! Two resources *alias* when they share a byte, or when one is linear and the other optimal
//! (or either is of unknown kind) and they share a `bufferImageGranularity` page: Vulkan
//! defines the granularity as the distance at which such resources may be bound "without
//! aliasing". The planner never lets resources alive together alias, and a resource needs a
//! barrier against the earlier ones it aliases, page or byte.
//!
//! # Algorithm
//!
//! The resources are visited in the order of their first pass. Each memory object keeps a
//! sorted list of segments of its bytes, each mapped to three owners among the resources
//! visited that cover it: the last one, the last one that conflicts with a linear resource
//! (optimal or unknown), and the last one that conflicts with an optimal one (linear or
//! unknown). A resource takes over from the last owners of the segments in its range, from the
//! owners of its conflicting kind in the rest of its first and last pages, and becomes the
//! owner of its range in each slot its kind fills. Resources that alias are never alive
//! together, so the owner of a byte (of a slot) when a resource is visited is the one alive
//! there last: an earlier one further back in the same bytes is ordered by the barrier before
//! its successor. Cost: a few binary searches per resource, the segments of its pages, and
//! at most two insertions in the list (at most 2n + 1 segments).

#![deny(unsafe_code)]

use super::{Placement, TransientResource};
use crate::layout::{DeviceAlignment, DeviceSize};
use crate::suballocator::AllocationType;

/// Slot of the last owner of a segment.
const LAST: usize = 0;
/// Slot of the last owner that conflicts with a linear resource.
const LAST_NOT_LINEAR: usize = 1;
/// Slot of the last owner that conflicts with an optimal resource.
const LAST_NOT_OPTIMAL: usize = 2;

/// The slot whose owners alias a resource of `kind` that shares only a page with them.
fn page_slot(kind: AllocationType) -> usize {
    match kind {
        AllocationType::Linear => LAST_NOT_LINEAR,
        AllocationType::NonLinear => LAST_NOT_OPTIMAL,
        AllocationType::Unknown => LAST,
    }
}

/// `(takes_over, start)`: the sorted list of resource `r` is
/// `takes_over[start[r]..start[r + 1]]`.
pub(crate) fn takes_over(
    resources: &[TransientResource],
    placements: &[Placement],
    memory_count: usize,
    granularity: DeviceAlignment,
) -> (Vec<usize>, Vec<usize>) {
    let mut order: Vec<usize> = (0..resources.len()).collect();
    order.sort_unstable_by_key(|&r| (resources[r].first_pass, r));
    let page_mask = granularity.as_devicesize() - 1;
    // Sorted by start; segment `i` is `[segments[i].0, segments[i + 1].0)` (the last one
    // runs to the end of the memory) and its owners are `segments[i].1`, by slot (`NONE` for
    // none).
    let mut owners: Vec<Vec<(DeviceSize, [usize; 3])>> = vec![vec![(0, [NONE; 3])]; memory_count];
    // `(later, earlier)`, sorted and grouped by `later` at the end.
    let mut pairs: Vec<(usize, usize)> = Vec::new();
    for &r in &order {
        let Placement { memory, offset } = placements[r];
        let resource = &resources[r];
        let end = offset + resource.layout.size();
        let segments = &mut owners[memory];
        // Split the segments at `offset` and `end`, so that `first..last` is exactly the
        // resource's range (never empty: the first segment starts at 0).
        let mut first = segments.partition_point(|s| s.0 <= offset) - 1;
        if segments[first].0 < offset {
            segments.insert(first + 1, (offset, segments[first].1));
            first += 1;
        }
        let last = segments.partition_point(|s| s.0 < end);
        if segments.get(last).is_none_or(|s| s.0 > end) {
            segments.insert(last, (end, segments[last - 1].1));
        }
        // The rest of the first and last pages: `page_first..first` and `last..page_last`.
        // The validated plan keeps `end + page_mask` far below overflow.
        let (page_start, page_end) = (offset & !page_mask, (end + page_mask) & !page_mask);
        let page_first = segments.partition_point(|s| s.0 <= page_start) - 1;
        let page_last = segments.partition_point(|s| s.0 < page_end);
        let slot = page_slot(resource.allocation_type);
        let in_pages = segments[page_first..first]
            .iter()
            .chain(&segments[last..page_last])
            .map(|s| s.1[slot]);
        let in_range = segments[first..last].iter().map(|s| s.1[LAST]);
        pairs.extend(
            in_range
                .chain(in_pages)
                .filter(|&q| q != NONE)
                .map(|q| (r, q)),
        );
        let fills = [
            true,
            resource
                .allocation_type
                .conflicts_with(AllocationType::Linear),
            resource
                .allocation_type
                .conflicts_with(AllocationType::NonLinear),
        ];
        for segment in &mut segments[first..last] {
            for (owner, fill) in segment.1.iter_mut().zip(fills) {
                if fill {
                    *owner = r;
                }
            }
        }
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
