//! The segregated index of free ranges: size classes ("buckets"), their lists and bitmaps.
//!
//! A size `s >= 16` belongs to first level `fl = floor(log2(s)) - 3` and to one of
//! [`SL_COUNT`] equal-width second-level subdivisions of `[2^floor(log2 s), 2^(floor(log2 s)+1))`.
//! Sizes below 16 get first level 0 and one exact bucket each. Every bucket holds a doubly
//! linked list of free nodes (threaded through [`Node::prev_free`]/[`Node::next_free`]); one bit
//! per non-empty bucket in `sl_bitmaps[fl]`, and one bit per first level with any non-empty
//! bucket in `fl_bitmap`, turn "the first non-empty bucket at or above this one" into two
//! `trailing_zeros`.
//!
//! One more bit per bucket, in `learned[fl]`, says that the bounds complete searches learned
//! for the bucket hold (see [`class_bounds`](super::class_bounds)): an insertion into the
//! bucket clears it, next to the store that marks the bucket non-empty.

use super::class_bounds::{ClassBounds, LEARNED_BUCKETS};
use super::{Node, State, NONE};
use crate::layout::{DeviceAlignment, DeviceSize};

/// log2 of the number of second-level subdivisions per first level.
const SL_LOG2: u32 = 4;
/// Second-level subdivisions per first level (fits the `u32` bitmaps).
const SL_COUNT: u32 = 1 << SL_LOG2;
/// Buckets per first level.
pub(super) const BUCKETS_PER_LEVEL: usize = SL_COUNT as usize;
/// First levels: 0 for sizes below `SL_COUNT`, then one per power of two up to 2^63.
const FL_COUNT: usize = (64 - SL_LOG2 + 1) as usize;

/// One size class.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Bucket {
    fl: u32,
    sl: u32,
}

impl Bucket {
    /// The bucket whose size range contains `size` (which must not be zero).
    #[inline]
    pub(super) fn containing(size: DeviceSize) -> Self {
        debug_assert!(size > 0);
        if size < DeviceSize::from(SL_COUNT) {
            Self {
                fl: 0,
                sl: size as u32,
            }
        } else {
            let log2 = 63 - size.leading_zeros();
            Self {
                fl: log2 - SL_LOG2 + 1,
                sl: (size >> (log2 - SL_LOG2)) as u32 - SL_COUNT,
            }
        }
    }

    /// Whether sizes `a` and `b` (neither zero) belong to the same bucket, in a few
    /// instructions: a bucket of sizes from 16 up is a run of `2^(log2 - SL_LOG2)` sizes
    /// aligned to its width, so two sizes share it exactly when they agree in every bit above
    /// the width of `b`'s bucket (which also makes their highest bits, hence their first
    /// levels, equal); below 16 that width is one, and only equal sizes agree.
    #[inline(always)]
    pub(super) fn same(a: DeviceSize, b: DeviceSize) -> bool {
        debug_assert!(a > 0 && b > 0);
        let width_log2 = (63 - b.leading_zeros()).saturating_sub(SL_LOG2);
        (a ^ b) >> width_log2 == 0
    }

    /// The first bucket whose every range is at least `size` bytes, `None` if there is none.
    #[inline]
    pub(super) fn all_at_least(size: DeviceSize) -> Option<Self> {
        if size < DeviceSize::from(SL_COUNT) {
            return Some(Self::containing(size.max(1)));
        }
        // Round up to the next bucket boundary: boundaries at this level are `step` apart.
        let step = 1u64 << (63 - size.leading_zeros() - SL_LOG2);
        size.checked_add(step - 1).map(Self::containing)
    }

    /// The smallest size in this bucket.
    #[inline]
    pub(super) fn min_size(self) -> DeviceSize {
        if self.fl == 0 {
            DeviceSize::from(self.sl)
        } else {
            DeviceSize::from(SL_COUNT + self.sl) << (self.fl - 1)
        }
    }

    /// The largest size in this bucket.
    #[inline]
    pub(super) fn max_size(self) -> DeviceSize {
        let width = if self.fl == 0 { 1 } else { 1 << (self.fl - 1) };
        self.min_size() + (width - 1)
    }

    /// The bucket right above this one, `None` for the last.
    #[inline]
    pub(super) fn next(self) -> Option<Self> {
        if self.sl + 1 < SL_COUNT {
            Some(Self {
                fl: self.fl,
                sl: self.sl + 1,
            })
        } else if (self.fl as usize) + 1 < FL_COUNT {
            Some(Self {
                fl: self.fl + 1,
                sl: 0,
            })
        } else {
            None
        }
    }

    /// The bucket right below this one, `None` for the first.
    #[inline]
    pub(super) fn prev(self) -> Option<Self> {
        if self.sl > 0 {
            Some(Self {
                fl: self.fl,
                sl: self.sl - 1,
            })
        } else if self.fl > 0 {
            Some(Self {
                fl: self.fl - 1,
                sl: SL_COUNT - 1,
            })
        } else {
            None
        }
    }

    /// The bucket's place among all buckets, from the smallest sizes up.
    #[inline]
    pub(super) fn index(self) -> usize {
        self.fl as usize * SL_COUNT as usize + self.sl as usize
    }
}

/// The heads of all bucket lists plus the two bitmap levels, and the bounds that complete
/// searches learned per bucket.
#[derive(Debug)]
pub(super) struct Buckets {
    fl_bitmap: u64,
    sl_bitmaps: [u32; FL_COUNT],
    /// One bit per bucket whose learned bounds hold, laid out as `sl_bitmaps`.
    learned: [u32; FL_COUNT],
    heads: Box<[u32]>,
    pub(super) bounds: ClassBounds,
}

impl Buckets {
    pub(super) fn new() -> Self {
        Self {
            fl_bitmap: 0,
            sl_bitmaps: [0; FL_COUNT],
            learned: [0; FL_COUNT],
            heads: vec![NONE; FL_COUNT * SL_COUNT as usize].into_boxed_slice(),
            bounds: ClassBounds::new(),
        }
    }

    /// Empties every bucket (the nodes themselves are the caller's business), and forgets
    /// every learned bound.
    pub(super) fn clear(&mut self) {
        self.fl_bitmap = 0;
        self.sl_bitmaps = [0; FL_COUNT];
        self.learned = [0; FL_COUNT];
        self.heads.fill(NONE);
    }

    /// The first node of a bucket's list, `NONE` if it is empty.
    #[inline]
    pub(super) fn head(&self, bucket: Bucket) -> u32 {
        self.heads[bucket.index()]
    }

    /// Pushes the free node `idx` onto the list of the bucket its size belongs to (which
    /// forgets the bucket's learned bounds: the node may hold more).
    #[inline(always)]
    pub(super) fn insert(&mut self, nodes: &mut [Node], idx: u32) {
        let bucket = Bucket::containing(nodes[idx as usize].size);
        let head = self.heads[bucket.index()];
        let node = &mut nodes[idx as usize];
        debug_assert_eq!(node.state(), State::Free);
        node.prev_free = NONE;
        node.next_free = head;
        if head != NONE {
            nodes[head as usize].prev_free = idx;
        }
        self.heads[bucket.index()] = idx;
        self.sl_bitmaps[bucket.fl as usize] |= 1 << bucket.sl;
        self.learned[bucket.fl as usize] &= !(1 << bucket.sl);
        self.fl_bitmap |= 1 << bucket.fl;
    }

    /// Unlinks the free node `idx` from its bucket's list. Its size must not have changed since
    /// it was inserted.
    #[inline(always)]
    pub(super) fn remove(&mut self, nodes: &mut [Node], idx: u32) {
        let Node {
            size,
            prev_free,
            next_free,
            ..
        } = nodes[idx as usize];
        if next_free != NONE {
            nodes[next_free as usize].prev_free = prev_free;
        }
        if prev_free != NONE {
            nodes[prev_free as usize].next_free = next_free;
            return;
        }
        let bucket = Bucket::containing(size);
        debug_assert_eq!(self.heads[bucket.index()], idx);
        self.heads[bucket.index()] = next_free;
        if next_free == NONE {
            let sl_map = &mut self.sl_bitmaps[bucket.fl as usize];
            *sl_map &= !(1 << bucket.sl);
            if *sl_map == 0 {
                self.fl_bitmap &= !(1 << bucket.fl);
            }
        }
    }

    /// The first non-empty bucket at or above `bucket`.
    #[inline]
    pub(super) fn first_non_empty_from(&self, bucket: Bucket) -> Option<Bucket> {
        let sl_map = self.sl_bitmaps[bucket.fl as usize] & (u32::MAX << bucket.sl);
        if sl_map != 0 {
            return Some(Bucket {
                fl: bucket.fl,
                sl: sl_map.trailing_zeros(),
            });
        }
        // `bucket.fl + 1 <= FL_COUNT < 64`, so the shift cannot overflow.
        let fl_map = self.fl_bitmap & (u64::MAX << (bucket.fl + 1));
        if fl_map == 0 {
            return None;
        }
        let fl = fl_map.trailing_zeros();
        Some(Bucket {
            fl,
            sl: self.sl_bitmaps[fl as usize].trailing_zeros(),
        })
    }

    /// The last non-empty bucket at or below `bucket`.
    #[inline]
    pub(super) fn last_non_empty_through(&self, bucket: Bucket) -> Option<Bucket> {
        // `bucket.sl < SL_COUNT <= 32`: the mask keeps bits `0..=sl`.
        let sl_map = self.sl_bitmaps[bucket.fl as usize] & (u32::MAX >> (31 - bucket.sl));
        if sl_map != 0 {
            return Some(Bucket {
                fl: bucket.fl,
                sl: 31 - sl_map.leading_zeros(),
            });
        }
        // The first levels below `bucket.fl` (`bucket.fl < 64`).
        let fl_map = self.fl_bitmap & ((1u64 << bucket.fl) - 1);
        if fl_map == 0 {
            return None;
        }
        let fl = 63 - fl_map.leading_zeros();
        Some(Bucket {
            fl,
            sl: 31 - self.sl_bitmaps[fl as usize].leading_zeros(),
        })
    }

    /// The highest non-empty bucket, `None` when nothing is free.
    #[inline]
    pub(super) fn highest_non_empty(&self) -> Option<Bucket> {
        if self.fl_bitmap == 0 {
            return None;
        }
        let fl = 63 - self.fl_bitmap.leading_zeros();
        Some(Bucket {
            fl,
            sl: 31 - self.sl_bitmaps[fl as usize].leading_zeros(),
        })
    }

    /// Whether `bucket`'s learned bounds hold.
    #[inline]
    fn learned(&self, bucket: Bucket) -> bool {
        self.learned[bucket.fl as usize] & 1 << bucket.sl != 0
    }

    /// Whether a complete search for `size` bytes at `alignment`, which has seen at most
    /// `largest` bytes of room, may pass `bucket` without reading its nodes, by what it
    /// learned, and the most room it has seen then (see [`ClassBounds::passes`]).
    #[inline]
    pub(super) fn passes(
        &self,
        bucket: Bucket,
        alignment: DeviceAlignment,
        size: DeviceSize,
        largest: DeviceSize,
    ) -> Option<DeviceSize> {
        if !self.learned(bucket) {
            return None;
        }
        self.bounds.passes(bucket.index(), alignment, size, largest)
    }

    /// The bound `bucket` learned for the alignment class of exactly `alignment`, if it holds.
    #[cfg(test)]
    pub(super) fn learned_bound(
        &self,
        bucket: Bucket,
        alignment: DeviceAlignment,
    ) -> Option<DeviceSize> {
        if !self.learned(bucket) {
            return None;
        }
        self.bounds.entry(bucket.index(), alignment)
    }

    /// A complete search read every range of `bucket`: none holds more than `room` bytes at
    /// the alignment of class `class` (see [`class_of`](super::class_bounds::class_of)).
    #[inline]
    pub(super) fn learn(&mut self, bucket: Bucket, class: usize, room: DeviceSize) {
        let index = bucket.index();
        if index >= LEARNED_BUCKETS {
            return;
        }
        let fresh = !self.learned(bucket);
        self.bounds.learn(index, class, room, fresh);
        self.learned[bucket.fl as usize] |= 1 << bucket.sl;
    }

    /// A free range of `size` bytes grew in place, within its bucket: the bucket's learned
    /// bounds no longer hold. (Only once a bucket learned can there be any to forget.)
    #[inline(always)]
    pub(super) fn grew_in_place(&mut self, size: DeviceSize) {
        if self.bounds.any() {
            let bucket = Bucket::containing(size);
            self.learned[bucket.fl as usize] &= !(1 << bucket.sl);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_tile_the_sizes() {
        // Consecutive buckets cover consecutive size ranges, from 1 to u64::MAX.
        let mut bucket = Bucket::containing(1);
        assert_eq!(bucket.min_size(), 1);
        let mut count = 1;
        while let Some(next) = bucket.next() {
            assert_eq!(bucket.max_size() + 1, next.min_size(), "{bucket:?}");
            assert_eq!(Bucket::containing(next.min_size()), next);
            assert_eq!(Bucket::containing(bucket.max_size()), bucket);
            bucket = next;
            count += 1;
        }
        assert_eq!(bucket.max_size(), u64::MAX);
        assert_eq!(count, FL_COUNT * SL_COUNT as usize - 1); // bucket (0, 0) holds size 0.
    }

    #[test]
    fn same_is_equal_buckets() {
        // Every pair around the bucket boundaries of the first levels, and far apart.
        let mut sizes: Vec<DeviceSize> = (1..=40).collect();
        for log2 in 4..64u32 {
            let base = 1u64 << log2;
            let width = 1u64 << (log2 - SL_LOG2);
            for k in [0, 1, 7, 8, 15] {
                let start = base + k * width;
                sizes.extend([
                    start.saturating_sub(1),
                    start,
                    start.saturating_add(1),
                    start.saturating_add(width - 1),
                ]);
            }
        }
        sizes.push(u64::MAX);
        for &a in &sizes {
            for &b in &sizes {
                if a == 0 || b == 0 {
                    continue;
                }
                assert_eq!(
                    Bucket::same(a, b),
                    Bucket::containing(a) == Bucket::containing(b),
                    "{a} {b}"
                );
            }
        }
    }

    #[test]
    fn prev_undoes_next() {
        let mut bucket = Bucket::containing(1);
        assert_eq!(Bucket { fl: 0, sl: 0 }.prev(), None);
        while let Some(next) = bucket.next() {
            assert_eq!(next.prev(), Some(bucket));
            bucket = next;
        }
    }

    #[test]
    fn the_first_and_last_non_empty_buckets_around_a_bucket() {
        // Non-empty buckets scattered over the levels: every bucket's neighbours in both
        // directions agree with a walk over all buckets.
        let filled: Vec<DeviceSize> = vec![3, 17, 40, 41, 1000, 4096, 70_000, 1 << 40];
        let mut nodes: Vec<Node> = filled
            .iter()
            .map(|&size| Node {
                offset: 0,
                size,
                prev: NONE,
                next: NONE,
                prev_free: NONE,
                next_free: NONE,
            })
            .collect();
        let mut buckets = Buckets::new();
        for idx in 0..nodes.len() {
            buckets.insert(&mut nodes, idx as u32);
        }
        let non_empty: Vec<Bucket> = filled.iter().map(|&s| Bucket::containing(s)).collect();
        let mut bucket = Some(Bucket { fl: 0, sl: 0 });
        while let Some(b) = bucket {
            let at_or_above = non_empty.iter().copied().find(|n| n.index() >= b.index());
            let at_or_below = non_empty
                .iter()
                .copied()
                .rev()
                .find(|n| n.index() <= b.index());
            assert_eq!(buckets.first_non_empty_from(b), at_or_above, "{b:?}");
            assert_eq!(buckets.last_non_empty_through(b), at_or_below, "{b:?}");
            bucket = b.next();
        }
    }

    #[test]
    fn all_at_least_rounds_up() {
        for size in [1, 15, 16, 17, 31, 32, 33, 1000, 4096, 4097, (1 << 40) + 3] {
            let b = Bucket::all_at_least(size).unwrap();
            assert!(b.min_size() >= size, "{size}: {b:?}");
            // And it is the first such bucket.
            let c = Bucket::containing(size);
            assert!(c == b || c.next() == Some(b), "{size}: {c:?} {b:?}");
        }
        assert_eq!(Bucket::all_at_least(u64::MAX), None);
        assert_eq!(
            Bucket::all_at_least(1 << 63).map(Bucket::min_size),
            Some(1 << 63)
        );
    }
}
