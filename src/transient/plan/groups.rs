//! Grouping resources by memory type, and the lower bound of a group's memory. Pure.

#![deny(unsafe_code)]

use super::TransientResource;
use crate::layout::DeviceSize;

/// Resources that share one memory object, of one memory type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Group {
    pub(crate) memory_type_index: u32,
    /// Indices into the planner's input, ascending.
    pub(crate) members: Vec<usize>,
}

/// Partitions the resources into groups of one memory type each (see
/// [`plan`](fn@super::plan#memory-types) for the rule): repeatedly the allowed type accepted by
/// the most bytes of the remaining resources, lowest index on a tie, among the `preferred`
/// ones (a subset of `allowed`) while a remaining resource accepts one. Every resource accepts
/// some allowed type (checked by the caller), so every resource ends in a group.
pub(crate) fn by_memory_type(
    resources: &[TransientResource],
    allowed: u32,
    preferred: u32,
) -> Vec<Group> {
    let mut groups = Vec::new();
    let mut left: Vec<usize> = (0..resources.len()).collect();
    while !left.is_empty() {
        let mut bytes = [0u128; 32];
        for &r in &left {
            let mut bits = resources[r].memory_type_bits & allowed;
            while bits != 0 {
                let t = bits.trailing_zeros() as usize;
                bytes[t] += u128::from(resources[r].aligned_size());
                bits &= bits - 1;
            }
        }
        // The first maximum: lowest index on a tie; a preferred type before any other.
        let rank = |t: usize| (preferred & (1 << t) != 0 && bytes[t] != 0, bytes[t]);
        let mut best = 0;
        for t in 1..32 {
            if rank(t) > rank(best) {
                best = t;
            }
        }
        if bytes[best] == 0 {
            // Unreachable when every resource has an allowed type; stop rather than loop.
            break;
        }
        let bit = 1u32 << best;
        let (members, rest): (Vec<usize>, Vec<usize>) = left
            .iter()
            .partition(|&&r| resources[r].memory_type_bits & allowed & bit != 0);
        groups.push(Group {
            memory_type_index: best as u32,
            members,
        });
        left = rest;
    }
    groups
}

/// The largest sum of aligned sizes of `members` alive in one pass.
pub(crate) fn lower_bound(resources: &[TransientResource], members: &[usize]) -> DeviceSize {
    let mut starts: Vec<(u32, DeviceSize)> = members
        .iter()
        .map(|&r| (resources[r].first_pass, resources[r].aligned_size()))
        .collect();
    // The pass after the last one, as u64 so that `u32::MAX` has a successor.
    let mut ends: Vec<(u64, DeviceSize)> = members
        .iter()
        .map(|&r| {
            (
                u64::from(resources[r].last_pass) + 1,
                resources[r].aligned_size(),
            )
        })
        .collect();
    starts.sort_unstable();
    ends.sort_unstable();
    let (mut live, mut best, mut e) = (0 as DeviceSize, 0 as DeviceSize, 0);
    for &(pass, size) in &starts {
        while e < ends.len() && ends[e].0 <= u64::from(pass) {
            live -= ends[e].1;
            e += 1;
        }
        live += size;
        best = best.max(live);
    }
    best
}
