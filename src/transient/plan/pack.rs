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
//! The runs: by size with best fit (TFLite's greedy by size, the baseline) and with first
//! fit; by the fullest pass a resource is alive in, with best fit (the idea of TFLite's greedy
//! by breadth: the busiest moments decide the total); by size × lifetime with first fit. These
//! four won on the sample graphs and on random graphs of 500 resources; orders by lifetime
//! length or by first pass never did, and were dropped to keep planning under a millisecond.
//! A run stops as soon as its top passes the best result so far, and the search stops when a
//! result reaches the lower bound.
//!
//! # Cost
//!
//! Each placement tests the lifetime of every resource placed so far (a branch-free pass over
//! two `u32` arrays in offset order), then sweeps the gaps between those alive with it, which
//! come out sorted by offset (sorted again only when a page-widened start breaks the order):
//! O(n²) per run in the worst case with a small constant. Four runs plan 500 resources in
//! under a millisecond (see the `transient` bench).

#![deny(unsafe_code)]

use super::{Strategy, TransientResource};
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
    placed: PlacedItems,
    /// Bit `j` set when placed item `j` is alive with the item being placed.
    hits: Vec<u64>,
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
                (Order::Size, Fit::First),
                (Order::Busiest, Fit::Best),
                (Order::Area, Fit::First),
            ],
        };
        let mut sorted_by = None;
        for &(order, fit) in runs {
            if sorted_by != Some(order) {
                self.sort(order);
                sorted_by = Some(order);
            }
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
                .extend(items.iter().map(|i| (u128::from(i.size) << 64) | len(i))),
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
            hits,
            ..
        } = self;
        placed.clear();
        let page_mask = granularity - 1;
        let mut top = 0;
        for &i in order.iter() {
            let item = items[i as usize];
            let conflict_set = [
                AllocationType::Unknown,
                AllocationType::Linear,
                AllocationType::NonLinear,
            ]
            .into_iter()
            .filter(|&k| item.kind.conflicts_with(k))
            .fold(0, |set, k| set | kind_bit(k));
            // Which placed items are alive with this one, as bits: a branch-free pass over
            // the lifetimes, then a walk over the set bits only.
            hits.clear();
            for chunk in placed.first.chunks(64).zip(placed.last.chunks(64)) {
                let mut word = 0u64;
                for (bit, (&first, &last)) in chunk.0.iter().zip(chunk.1).enumerate() {
                    word |= u64::from((first <= item.last) & (item.first <= last)) << bit;
                }
                hits.push(word);
            }
            blocked.clear();
            // `placed` is sorted by start, so `blocked` is too, unless a page-widened start
            // falls below the one before it.
            let mut sorted = true;
            let mut previous = 0;
            for (w, &word) in hits.iter().enumerate() {
                let mut word = word;
                while word != 0 {
                    let j = w * 64 + word.trailing_zeros() as usize;
                    word &= word - 1;
                    let (start, end) = placed.range[j];
                    // Whole pages against a resource of a conflicting kind, branch-free.
                    let conflicts = conflict_set & placed.kind[j] != 0;
                    let mask = page_mask & 0u64.wrapping_sub(u64::from(conflicts));
                    let interval = (start & !mask, (end + mask) & !mask);
                    sorted &= interval.0 >= previous;
                    previous = interval.0;
                    blocked.push(interval);
                }
            }
            if !sorted {
                blocked.sort_unstable();
            }
            let offset = find_offset(blocked, item.size, item.align_mask, fit);
            let end = offset + item.size;
            if end >= give_up {
                return None;
            }
            top = top.max(end);
            offsets[i as usize] = offset;
            placed.insert(offset, end, &item);
        }
        Some(top)
    }
}

/// The placed items, as the sweep reads them: in offset order, one array per field so that
/// the lifetime test runs over plain `u32`s.
#[derive(Default)]
struct PlacedItems {
    first: Vec<u32>,
    last: Vec<u32>,
    range: Vec<(DeviceSize, DeviceSize)>,
    /// [`kind_bit`] of each item's kind.
    kind: Vec<u8>,
}

/// One bit per [`AllocationType`], so that "conflicts with" is a mask test.
fn kind_bit(kind: AllocationType) -> u8 {
    match kind {
        AllocationType::Unknown => 1,
        AllocationType::Linear => 2,
        AllocationType::NonLinear => 4,
    }
}

impl PlacedItems {
    fn clear(&mut self) {
        self.first.clear();
        self.last.clear();
        self.range.clear();
        self.kind.clear();
    }

    fn insert(&mut self, start: DeviceSize, end: DeviceSize, item: &Item) {
        let at = self.range.partition_point(|r| r.0 <= start);
        self.first.insert(at, item.first);
        self.last.insert(at, item.last);
        self.range.insert(at, (start, end));
        self.kind.insert(at, kind_bit(item.kind));
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
                        if best.is_none_or(|(g, _)| gap < g) {
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
