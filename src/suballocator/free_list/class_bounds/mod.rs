//! What complete searches learn per size class: for each bucket that a walk read to its end,
//! the most bytes any of its free ranges holds at an alignment, so that a later walk passes
//! over the bucket, without reading a node of it, while the bucket holds nothing that could
//! take the request.
//!
//! The complete search (step 3 of the [search](super#algorithm)) reads the free ranges from
//! the longest down and stops at the first that holds the request. Where the free bytes of a
//! region are thousands of short ranges and the requests are small but strictly aligned, few
//! of the longest ranges cross an alignment boundary with room enough after it: objects of
//! 16 B-1 KiB at alignments of 16-256 bytes, 100,000 live and freed oldest first, made
//! complete searches that read some 1,700 ranges each before one held the request (3,349 such
//! searches in a run of 300,000 allocations), and the next request of that alignment read
//! the same ranges again. With the bounds, the same searches read about a third as many
//! (see docs/benchmarks.md, "Short ranges and strict alignments").
//!
//! A bound is the most bytes that any free range of the bucket holds after its start is
//! aligned up, the neighbours' granularity aside (which only takes room away): it holds for
//! every allocation type. A range holds no more at a stricter alignment, so a bound learned
//! at an alignment holds for every stricter one too. The bounds stay upper bounds while the
//! bucket's ranges only shrink: an allocation carves a range from its front (the end stays,
//! the aligned start can only move up), and a range that leaves the bucket takes nothing from
//! the others. The two ways a range can hold more make the bucket forget its bounds: a range
//! that enters the bucket ([`Buckets::insert`](super::buckets::Buckets::insert): one bit
//! cleared beside the one that insertion sets), and a free that merges into the free
//! range before it, which grows in place when it keeps its size class
//! ([`Buckets::grew_in_place`](super::buckets::Buckets::grew_in_place)).
//!
//! Bounds are kept for the alignments of `2^4` to `2^16` bytes (16 B to 64 KiB), one class
//! each, and for buckets of ranges below 512 KiB, where walks over many ranges happen: 256
//! buckets of thirteen 32-bit entries, 13 KiB, made by the first walk that learns. A walk at
//! another alignment learns nothing; one at a stricter alignment still passes a bucket whose
//! bounds show that it holds no more than the walk has seen (see [`ClassBounds::passes`]).
//! (The classes above 256 bytes halved the complete search's instructions where small
//! objects have alignments of up to 4-64 KiB; see docs/benchmarks.md.)

use super::buckets::BUCKETS_PER_LEVEL;
use crate::layout::{align_up, DeviceAlignment, DeviceSize};

/// The first alignment class: `2^4`, 16 bytes.
const FIRST_EXPONENT: u32 = 4;
/// The last alignment class: `2^16`, 64 KiB.
const LAST_EXPONENT: u32 = 16;
const CLASSES: usize = (LAST_EXPONENT - FIRST_EXPONENT + 1) as usize;
/// First levels whose buckets learn: the buckets of ranges below 512 KiB.
const LEARNED_FIRST_LEVELS: usize = 16;
/// Buckets that learn: the first ones, by [`Bucket::index`](super::buckets::Bucket::index).
pub(super) const LEARNED_BUCKETS: usize = LEARNED_FIRST_LEVELS * BUCKETS_PER_LEVEL;
/// An entry that holds no bound.
const UNKNOWN: u32 = u32::MAX;
/// A walk of this many nodes is long. A walk teaches bounds once it has read that many, or
/// from its first node once an earlier walk of the region was long: the buckets it reads to
/// their ends learn. Learning costs a few instructions a node read, and once a bucket learned,
/// every free that grows a range in place computes that range's bucket to make it forget
/// (together about one instruction in a hundred of the peer benchmark's `frame`, whose full
/// regions make some 30 walks of 69-84 nodes a run); a region whose walks are all short would
/// pay that for nothing.
pub(super) const LEARNING_WALK: usize = 64;

/// The class of `alignment`, whose bound a walk at that alignment learns and uses in full:
/// `None` for an alignment below the first class or above the last.
#[inline]
pub(super) fn class_of(alignment: DeviceAlignment) -> Option<usize> {
    let class = alignment.log2().checked_sub(FIRST_EXPONENT)? as usize;
    (class < CLASSES).then_some(class)
}

/// The bytes of `[offset, end)` from `offset` aligned up to `alignment`, 0 when that is past
/// the end: what the range holds at that alignment, the neighbours' granularity aside.
#[inline(always)]
pub(super) fn aligned_room(
    offset: DeviceSize,
    end: DeviceSize,
    alignment: DeviceAlignment,
) -> DeviceSize {
    align_up(offset, alignment).map_or(0, |start| end.saturating_sub(start))
}

/// Per learning bucket and alignment class, an upper bound of the bytes its free ranges hold.
/// Which buckets' entries hold is kept by [`Buckets`](super::buckets::Buckets), one bit each
/// in its `learned` bitmaps, next to the bitmaps of non-empty buckets.
#[derive(Debug)]
pub(super) struct ClassBounds {
    /// Made by the first walk that learns.
    table: Option<Box<[[u32; CLASSES]; LEARNED_BUCKETS]>>,
    /// Whether a walk of this region was long.
    long_walks: bool,
    /// [`LEARNING_WALK`] (tests lower it, so that every walk learns).
    pub(super) learning_walk: usize,
}

impl ClassBounds {
    pub(super) fn new() -> Self {
        Self {
            table: None,
            long_walks: false,
            learning_walk: LEARNING_WALK,
        }
    }

    /// Whether a walk that has read `walked` nodes learns from the buckets it reads now.
    #[inline]
    pub(super) fn learns(&self, walked: usize) -> bool {
        self.long_walks || walked >= self.learning_walk
    }

    /// A walk read `walked` nodes (those of the bucket it stopped in aside).
    #[inline]
    pub(super) fn walked(&mut self, walked: usize) {
        self.long_walks |= walked >= self.learning_walk;
    }

    /// Whether any bucket ever learned (only then must a range that grows in place make its
    /// bucket forget).
    #[inline(always)]
    pub(super) fn any(&self) -> bool {
        self.table.is_some()
    }

    /// Whether a walk for `size` bytes at `alignment`, which has seen at most `largest` bytes
    /// of room so far (less than `size`), may pass bucket `index` without reading its nodes,
    /// and the most room it has seen then. The caller checked that the bucket's entries hold.
    ///
    /// The entry of the request's own class passes the bucket when it is below `size`, and
    /// stands in for the room of the nodes not read: the bound of a walk that fails (which
    /// [`fit_bounds`](super::fit_bounds) records for the requests after it) stays what reading
    /// them would have given, granularity aside. An entry of a looser class (or of the last
    /// class, for a stricter alignment) bounds the room less tightly: it passes the bucket
    /// only when it adds nothing to `largest`, so that it never weakens what a failed walk
    /// records.
    #[inline]
    pub(super) fn passes(
        &self,
        index: usize,
        alignment: DeviceAlignment,
        size: DeviceSize,
        largest: DeviceSize,
    ) -> Option<DeviceSize> {
        let entries = self.table.as_ref()?.get(index)?;
        let looser = match class_of(alignment) {
            Some(class) => {
                let own = entries[class];
                if own != UNKNOWN && DeviceSize::from(own) < size {
                    return Some(largest.max(DeviceSize::from(own)));
                }
                &entries[..class]
            }
            // Below the first class no entry holds; above the last, every one does.
            None if alignment.log2() < FIRST_EXPONENT => return None,
            None => &entries[..],
        };
        let least = looser.iter().copied().min().unwrap_or(UNKNOWN);
        (least != UNKNOWN && DeviceSize::from(least) <= largest).then_some(largest)
    }

    /// The entry of bucket `index` for the class of exactly `alignment`, if known.
    #[cfg(test)]
    pub(super) fn entry(&self, index: usize, alignment: DeviceAlignment) -> Option<DeviceSize> {
        let own = self.table.as_ref()?.get(index)?[class_of(alignment)?];
        (own != UNKNOWN).then_some(DeviceSize::from(own))
    }

    /// A walk read every range of bucket `index` (below [`LEARNED_BUCKETS`]): none holds more
    /// than `room` bytes at the alignment of class `class` (see [`class_of`]). `fresh`: the
    /// bucket's entries did not hold, and are all unknown but this one now.
    #[inline]
    pub(super) fn learn(&mut self, index: usize, class: usize, room: DeviceSize, fresh: bool) {
        let table = self
            .table
            .get_or_insert_with(|| Box::new([[UNKNOWN; CLASSES]; LEARNED_BUCKETS]));
        let entries = &mut table[index];
        if fresh {
            *entries = [UNKNOWN; CLASSES];
        }
        // The room is below the bucket's sizes, under 512 KiB; a larger value is no bound.
        entries[class] = u32::try_from(room).unwrap_or(UNKNOWN);
    }
}

#[cfg(test)]
mod tests;
