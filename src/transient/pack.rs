//! Placing one group's resources on the offset axis. Pure.
//!
//! # Algorithm
//!
//! This is offline *dynamic storage allocation*: intervals in time with sizes, to be given
//! offsets so that no two alive together overlap, with the highest end as small as possible.
//! It is NP-hard, and greedy heuristics come close in practice. A heuristic takes the resources
//! in some order and puts each at an offset where it overlaps none of the resources already
//! placed that are alive with it: it sweeps those resources by offset and looks at the gaps
//! between them, taking the smallest gap that fits (best fit) or the lowest (first fit), or the
//! top of the stack when no gap fits.
//!
//! Against a resource of the other kind (linear against optimal) alive at the same time, the
//! placed resource counts as covering whole `bufferImageGranularity` pages, which is exactly
//! the rule that the two may not share a page. Resources never alive together need nothing.
//!
//! The orders tried: by size (TFLite's greedy by size), by lifetime length, by first pass,
//! by size × lifetime, and by the fullest pass a resource is alive in (the idea of TFLite's
//! greedy by breadth: the busiest moments decide the total), each with best and first fit.
//! A run stops as soon as its top passes the best result so far, and the search stops when a
//! result reaches the lower bound.
//!
//! # Cost
//!
//! Each placement looks at every resource placed so far (to find those alive with it) and
//! sorts those that are: O(n²) per heuristic in the worst case, with a small constant; ten
//! heuristics plan 500 resources well under a millisecond (see the `transient` bench).

#![deny(unsafe_code)]

use super::plan::{Strategy, TransientResource};
use crate::layout::DeviceSize;
use crate::suballocator::AllocationType;
use std::cmp::Reverse;

#[derive(Clone, Copy, Debug)]
struct Item {
    size: DeviceSize,
    /// Alignment minus one.
    align_mask: DeviceSize,
    first: u32,
    last: u32,
    kind: AllocationType,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fit {
    Best,
    First,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Order {
    Size,
    Lifetime,
    FirstPass,
    Area,
    Busiest,
}

/// Scratch space reused between heuristics and groups.
#[derive(Default)]
pub(crate) struct Packer {
    items: Vec<Item>,
    order: Vec<u32>,
    offsets: Vec<DeviceSize>,
    best: Vec<DeviceSize>,
    /// Local indices of the placed items, sorted by offset.
    placed: Vec<u32>,
    /// Intervals `[start, end)` that the item being placed must avoid.
    blocked: Vec<(DeviceSize, DeviceSize)>,
    keys: Vec<u128>,
}

impl Packer {
    /// Offsets for `members` (in their order) and the highest end.
    pub(crate) fn pack(
        &mut self,
        resources: &[TransientResource],
        members: &[usize],
        granularity: crate::layout::DeviceAlignment,
        lower_bound: DeviceSize,
        strategy: Strategy,
    ) -> (Vec<DeviceSize>, DeviceSize) {
        self.items.clear();
        self.items.extend(members.iter().map(|&r| {
            let r = &resources[r];
            Item {
                size: r.layout.size(),
                align_mask: r.layout.alignment().as_devicesize() - 1,
                first: r.first_pass,
                last: r.last_pass,
                kind: r.allocation_type,
            }
        }));
        let n = self.items.len();
        self.offsets.clear();
        self.offsets.resize(n, 0);
        let mut best_total = DeviceSize::MAX;
        let runs: &[(Order, Fit)] = match strategy {
            Strategy::GreedyBySize => &[(Order::Size, Fit::Best)],
            Strategy::Best => &[
                (Order::Size, Fit::Best),
                (Order::Busiest, Fit::Best),
                (Order::Area, Fit::Best),
                (Order::Lifetime, Fit::Best),
                (Order::FirstPass, Fit::Best),
                (Order::Size, Fit::First),
                (Order::Busiest, Fit::First),
                (Order::Area, Fit::First),
                (Order::Lifetime, Fit::First),
                (Order::FirstPass, Fit::First),
            ],
        };
        for &(order, fit) in runs {
            self.sort(order);
            if let Some(total) = self.run(fit, granularity.as_devicesize(), best_total) {
                best_total = total;
                std::mem::swap(&mut self.best, &mut self.offsets);
                self.offsets.resize(n, 0);
                if total <= lower_bound {
                    break;
                }
            }
        }
        (self.best[..n].to_vec(), best_total)
    }

    fn sort(&mut self, order: Order) {
        let items = &self.items;
        self.order.clear();
        self.order.extend(0..items.len() as u32);
        let len = |i: &Item| u128::from(i.last - i.first) + 1;
        self.keys.clear();
        match order {
            Order::Size => self
                .keys
                .extend(items.iter().map(|i| (u128::from(i.size) << 32) | len(i))),
            Order::Lifetime => self
                .keys
                .extend(items.iter().map(|i| (len(i) << 64) | u128::from(i.size))),
            Order::FirstPass => self.keys.extend(
                items
                    .iter()
                    .map(|i| (u128::from(u32::MAX - i.first) << 64) | u128::from(i.size)),
            ),
            Order::Area => self
                .keys
                .extend(items.iter().map(|i| u128::from(i.size) * len(i))),
            Order::Busiest => busiest(items, &mut self.keys),
        }
        let keys = &self.keys;
        // Largest key first; ties by index, for a deterministic plan.
        self.order
            .sort_unstable_by_key(|&i| (Reverse(keys[i as usize]), i));
    }

    /// Places the items in `self.order`; `None` as soon as the top reaches `give_up`.
    fn run(
        &mut self,
        fit: Fit,
        granularity: DeviceSize,
        give_up: DeviceSize,
    ) -> Option<DeviceSize> {
        let Self {
            items,
            order,
            offsets,
            placed,
            blocked,
            ..
        } = self;
        placed.clear();
        let page_mask = granularity - 1;
        let mut top = 0;
        for &i in order.iter() {
            let item = items[i as usize];
            blocked.clear();
            for &j in placed.iter() {
                let other = &items[j as usize];
                if other.first > item.last || item.first > other.last {
                    continue;
                }
                let (start, end) = (offsets[j as usize], offsets[j as usize] + other.size);
                if page_mask != 0 && item.kind.conflicts_with(other.kind) {
                    blocked.push((start & !page_mask, (end + page_mask) & !page_mask));
                } else {
                    blocked.push((start, end));
                }
            }
            if page_mask != 0 {
                blocked.sort_unstable();
            }
            let offset = find_offset(blocked, item.size, item.align_mask, fit);
            let end = offset + item.size;
            if end >= give_up {
                return None;
            }
            top = top.max(end);
            offsets[i as usize] = offset;
            let at = placed.partition_point(|&j| offsets[j as usize] <= offset);
            placed.insert(at, i);
        }
        Some(top)
    }
}

/// The offset for an item of `size` bytes and alignment `align_mask + 1` that avoids every
/// interval of `blocked` (sorted by start).
fn find_offset(
    blocked: &[(DeviceSize, DeviceSize)],
    size: DeviceSize,
    align_mask: DeviceSize,
    fit: Fit,
) -> DeviceSize {
    let align = |x: DeviceSize| (x + align_mask) & !align_mask;
    let mut cursor = 0;
    let mut best: Option<(DeviceSize, DeviceSize)> = None;
    for &(start, end) in blocked {
        if start > cursor {
            let candidate = align(cursor);
            if candidate + size <= start {
                let gap = start - cursor;
                match fit {
                    Fit::First => return candidate,
                    Fit::Best => {
                        if best.map_or(true, |(g, _)| gap < g) {
                            best = Some((gap, candidate));
                        }
                    }
                }
            }
        }
        cursor = cursor.max(end);
    }
    match best {
        Some((_, offset)) => offset,
        None => align(cursor),
    }
}

/// For each item, the largest sum of sizes alive at a pass of its lifetime, then its size:
/// items alive at the busiest moments come first.
fn busiest(items: &[Item], keys: &mut Vec<u128>) {
    // Live bytes just after each distinct first pass: the maximum over a lifetime is reached
    // at one of the first passes inside it.
    let mut starts: Vec<(u32, DeviceSize)> = items.iter().map(|i| (i.first, i.size)).collect();
    let mut ends: Vec<(u64, DeviceSize)> = items
        .iter()
        .map(|i| (u64::from(i.last) + 1, i.size))
        .collect();
    starts.sort_unstable();
    ends.sort_unstable();
    let mut live_at: Vec<(u32, DeviceSize)> = Vec::with_capacity(starts.len());
    let (mut live, mut e) = (0 as DeviceSize, 0);
    for &(pass, size) in &starts {
        while e < ends.len() && ends[e].0 <= u64::from(pass) {
            live -= ends[e].1;
            e += 1;
        }
        live += size;
        match live_at.last_mut() {
            Some(last) if last.0 == pass => last.1 = live,
            _ => live_at.push((pass, live)),
        }
    }
    keys.extend(items.iter().map(|i| {
        let from = live_at.partition_point(|&(p, _)| p < i.first);
        let peak = live_at[from..]
            .iter()
            .take_while(|&&(p, _)| p <= i.last)
            .map(|&(_, l)| l)
            .max()
            .unwrap_or(0);
        (u128::from(peak) << 64) | u128::from(i.size)
    }));
}
