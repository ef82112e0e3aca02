//! The aliasing pairs of a plan: for each resource, the earlier resources whose memory it
//! takes over. Pure.
//!
//! # Algorithm
//!
//! The resources are visited in the order of their first pass. Each memory object keeps a map
//! of its bytes, cut into segments, to the last resource visited that covers them. A resource
//! takes over from the owners of the segments in its range, and becomes their owner. Resources
//! that cover one byte are never alive together, so the owner of a byte when a resource is
//! visited is the one alive there last: exactly the resources the new one needs a barrier
//! against. O(n log n) plus the segments each resource covers.

#![deny(unsafe_code)]

use super::plan::{Placement, TransientResource};
use crate::layout::DeviceSize;
use std::collections::BTreeMap;

/// `(takes_over, start)`: the sorted list of resource `r` is
/// `takes_over[start[r]..start[r + 1]]`.
pub(crate) fn takes_over(
    resources: &[TransientResource],
    placements: &[Placement],
    memory_count: usize,
) -> (Vec<usize>, Vec<usize>) {
    let mut order: Vec<usize> = (0..resources.len()).collect();
    order.sort_unstable_by_key(|&r| (resources[r].first_pass, r));
    // Segment `[key, next key)` belongs to the value's resource (or to none).
    let mut owners: Vec<BTreeMap<DeviceSize, Option<usize>>> =
        vec![BTreeMap::from([(0, None)]); memory_count];
    let mut lists: Vec<Vec<usize>> = vec![Vec::new(); resources.len()];
    let mut inside = Vec::new();
    for &r in &order {
        let Placement { memory, offset } = placements[r];
        let end = offset + resources[r].layout.size();
        let map = &mut owners[memory];
        split_at(map, offset);
        split_at(map, end);
        inside.clear();
        inside.extend(map.range(offset..end).map(|(&k, &owner)| (k, owner)));
        let list = &mut lists[r];
        for &(key, owner) in &inside {
            if let Some(q) = owner {
                list.push(q);
            }
            if key != offset {
                map.remove(&key);
            }
        }
        map.insert(offset, Some(r));
        list.sort_unstable();
        list.dedup();
    }
    let mut start = Vec::with_capacity(resources.len() + 1);
    let mut flat = Vec::new();
    start.push(0);
    for list in lists {
        flat.extend(list);
        start.push(flat.len());
    }
    (flat, start)
}

/// Makes `at` the start of a segment, keeping the owner of the segment it was inside.
fn split_at(map: &mut BTreeMap<DeviceSize, Option<usize>>, at: DeviceSize) {
    if let Some((&key, &owner)) = map.range(..=at).next_back() {
        if key != at {
            map.insert(at, owner);
        }
    }
}
