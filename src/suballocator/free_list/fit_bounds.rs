//! What the complete search learned from its failures: per type and alignment, the most
//! bytes that any free range can hold, so that a larger request fails at once.
//!
//! When the complete search finds no free range for a request, it has looked at every range
//! that could hold it, and it goes on through the smaller ones until it knows `largest`: the
//! most bytes that any free range holds at the request's alignment, for its type and
//! granularity. Every request of that type, at least as strictly aligned and larger than
//! `largest`, must fail too, and keeps failing while only allocations follow: an allocation
//! only takes free bytes away and adds allocations to conflict with (the argument of
//! [`fails_monotonically`](crate::suballocator::Suballocator::fails_monotonically)). A free
//! changes one free range only, the one it makes by merging the freed range with its free
//! neighbours (the ranges elsewhere keep their bytes and their neighbours), so the bounds stay
//! upper bounds once each is raised to what that range holds at its alignment, granularity
//! aside (granularity only takes room away).
//!
//! That is worth its cost only after a long walk: a free then notes its range (one of
//! [`PENDING`]), and a lookup takes for each bound the most any noted range holds at its
//! alignment. An allocation cuts its bytes out of the noted ranges ([`taken`](FitBounds::taken)):
//! the quick search often takes the very range a free just noted, and a bound still counting
//! it would send the next request on a walk that fails. With `PENDING` ranges noted, a free
//! folds them into the bounds if a lookup used them since the last fold, and forgets the
//! bounds (one store) if none did; after a short walk (fewer than [`LONG_WALK`] nodes) the
//! next free forgets them, as a walk costs about what the noting saves.
//!
//! Forgetting the bounds at every free instead cost a complete walk per free, and more: where
//! requests of many alignments share a region whose free ranges are all short (objects of
//! 16 B-4 KiB at alignments 1 B-64 KiB, 10,000 live), every request aligned to 8 KiB or more
//! failed the quick search in the first, full block and walked all its free ranges again
//! after each free there before the block search moved on: 2.9 µs per allocate+free, growing
//! with the number of live objects (69 µs at 100,000, where VMA takes 99 µs); with the bounds
//! kept, 1.7 µs and 12 µs (see docs/benchmarks.md, "Bounds that survive a free").
//!
//! The bound is over the free nodes only: the padding that allocations absorb takes no
//! request (see [padding](super#padding-and-granularity)), so a region whose free bytes are
//! all such padding learns a bound of 0.

use super::class_bounds::aligned_room;
use super::AllocationType;
use crate::layout::{DeviceAlignment, DeviceSize};

/// Alignment classes `2^0 ..= 2^LAST_EXPONENT`. A failure more strictly aligned than the last
/// class is not recorded; a request more strictly aligned is bounded by the last class.
const LAST_EXPONENT: u32 = 16;
const CLASSES: usize = LAST_EXPONENT as usize + 1;
const TYPES: usize = 3;

/// The free ranges noted since the last lookup, at most; one more forgets the bounds.
pub(super) const PENDING: usize = 8;
/// A failed walk over at least this many free nodes keeps the bounds across frees.
pub(super) const LONG_WALK: usize = 64;

/// Upper bounds on the room of the free ranges (see the module docs).
#[derive(Debug)]
pub(super) struct FitBounds {
    tables: Box<Tables>,
    /// One bit per entry of `largest` (bit `type * CLASSES + class`): which hold a bound.
    /// Cleared to forget them all: one store, however many bounds there were.
    pub(super) known: u64,
    /// How many of `pending` hold a range the bounds do not count yet (0 unless `kept`).
    pending: usize,
    /// Whether frees note their ranges (the bounds outlive them) rather than forget the
    /// bounds: set by a long failed walk, cleared when the bounds are forgotten.
    kept: bool,
    /// Whether a lookup came since the noted ranges were last folded into the bounds: a
    /// free that finds no room to note one more folds them then, and forgets the bounds
    /// when no lookup used them.
    looked: bool,
    /// The walk that keeps the bounds: [`LONG_WALK`] nodes (tests lower it, to keep the
    /// bounds after every failed walk).
    pub(super) long_walk: usize,
    /// The granularity the known bounds hold for.
    granularity: DeviceAlignment,
}

#[derive(Debug)]
struct Tables {
    /// Per type and alignment class `j`: the most bytes a free range holds at an alignment of
    /// `2^j`, where the entry's bit in `known` is set. A bound holds for the stricter classes
    /// too: a lookup takes the least known bound of its class and the classes below.
    largest: [[DeviceSize; CLASSES]; TYPES],
    /// `[offset, end)` of the free ranges that frees made since the last lookup.
    pending: [(DeviceSize, DeviceSize); PENDING],
}

const _: () = assert!(TYPES * CLASSES <= u64::BITS as usize);

#[inline]
fn type_index(ty: AllocationType) -> usize {
    match ty {
        AllocationType::Unknown => 0,
        AllocationType::Linear => 1,
        AllocationType::NonLinear => 2,
    }
}

impl FitBounds {
    pub(super) fn new() -> Self {
        Self {
            tables: Box::new(Tables {
                largest: [[DeviceSize::MAX; CLASSES]; TYPES],
                pending: [(0, 0); PENDING],
            }),
            known: 0,
            pending: 0,
            kept: false,
            looked: false,
            long_walk: LONG_WALK,
            granularity: DeviceAlignment::MIN,
        }
    }

    /// Forgets every bound.
    #[inline(always)]
    pub(super) fn forget(&mut self) {
        self.known = 0;
        self.pending = 0;
        self.kept = false;
        self.looked = false;
    }

    /// Whether a free should note the range it makes ([`freed`](Self::freed)); when not, it
    /// calls [`forget_at_free`](Self::forget_at_free).
    #[inline(always)]
    pub(super) fn kept(&self) -> bool {
        self.kept
    }

    /// A free while the bounds are not kept: forgets them, one store (`pending` is 0 and
    /// `kept` false already).
    #[inline(always)]
    pub(super) fn forget_at_free(&mut self) {
        debug_assert!(!self.kept && self.pending == 0);
        self.known = 0;
    }

    /// A free made the free range `[offset, end)` (the freed bytes merged with the free
    /// neighbours), the only range a free changes: a lookup takes for each known bound the
    /// bytes that range holds at the bound's alignment, if more, so the bounds stay upper
    /// bounds. With [`PENDING`] ranges noted already, they are folded into the bounds first,
    /// if a lookup used them since the last fold; else the bounds are forgotten.
    #[inline]
    pub(super) fn freed(&mut self, offset: DeviceSize, end: DeviceSize) {
        if self.pending == PENDING {
            if !self.looked {
                self.forget();
                return;
            }
            self.raise_by_pending();
        }
        self.tables.pending[self.pending] = (offset, end);
        self.pending += 1;
    }

    /// Whether ranges are noted ([`taken`](Self::taken) has work only then).
    #[inline(always)]
    pub(super) fn any_pending(&self) -> bool {
        self.pending != 0
    }

    /// An allocation took `[start, end)` (the bytes before `start` it absorbs stay counted, an
    /// upper bound): the noted ranges lose those bytes, so that a bound raised by a range the
    /// quick search then took does not send the next request on a walk that fails. A range cut
    /// in two keeps both pieces while there is room to note one more, else stays whole.
    #[cold]
    #[inline(never)]
    pub(super) fn taken(&mut self, start: DeviceSize, end: DeviceSize) {
        let pending = &mut self.tables.pending;
        let mut i = 0;
        while i < self.pending {
            let (a, b) = pending[i];
            if a < end && start < b {
                match (a < start, end < b) {
                    (false, false) => {
                        self.pending -= 1;
                        pending[i] = pending[self.pending];
                        continue;
                    }
                    (true, false) => pending[i] = (a, start),
                    (false, true) => pending[i] = (end, b),
                    (true, true) => {
                        if self.pending < PENDING {
                            pending[i] = (a, start);
                            pending[self.pending] = (end, b);
                            self.pending += 1;
                        }
                    }
                }
            }
            i += 1;
        }
    }

    /// The bytes `[offset, end)` hold at an alignment of `2^class`.
    #[inline]
    fn room(offset: DeviceSize, end: DeviceSize, class: usize) -> DeviceSize {
        // `class <= LAST_EXPONENT`: a power of two that fits.
        let alignment = DeviceAlignment::new(1 << class).unwrap();
        aligned_room(offset, end, alignment)
    }

    /// Raises the known bounds by the noted ranges, and forgets the ranges.
    #[cold]
    #[inline(never)]
    fn raise_by_pending(&mut self) {
        let Tables { largest, pending } = &mut *self.tables;
        for &(offset, end) in &pending[..self.pending] {
            let mut known = self.known;
            while known != 0 {
                let bit = known.trailing_zeros() as usize;
                known &= known - 1;
                let (row, class) = (bit / CLASSES, bit % CLASSES);
                let entry = &mut largest[row][class];
                *entry = (*entry).max(Self::room(offset, end, class));
            }
        }
        self.pending = 0;
        self.looked = false;
    }

    /// The most bytes a free range can hold for a request of this type, alignment and
    /// granularity, as far as is known: `DeviceSize::MAX` when nothing is.
    #[inline]
    pub(super) fn largest(
        &mut self,
        ty: AllocationType,
        alignment: DeviceAlignment,
        granularity: DeviceAlignment,
    ) -> DeviceSize {
        let class = alignment.log2().min(LAST_EXPONENT) as usize;
        let row = type_index(ty);
        // The known bounds of this type at this alignment or a looser one.
        let mut classes = (self.known >> (row * CLASSES)) & ((2 << class) - 1);
        if classes == 0 || self.granularity != granularity {
            return DeviceSize::MAX;
        }
        self.looked = true;
        let mut largest = DeviceSize::MAX;
        while classes != 0 {
            let class = classes.trailing_zeros() as usize;
            let mut bound = self.tables.largest[row][class];
            for &(offset, end) in &self.tables.pending[..self.pending] {
                bound = bound.max(Self::room(offset, end, class));
            }
            largest = largest.min(bound);
            classes &= classes - 1;
        }
        largest
    }

    /// Records that no free range holds more than `largest` bytes for a request of this type,
    /// alignment and granularity (hence none of any stricter alignment either), as a walk
    /// over `walked` free nodes found; a long walk keeps the bounds across frees.
    pub(super) fn record(
        &mut self,
        ty: AllocationType,
        alignment: DeviceAlignment,
        granularity: DeviceAlignment,
        largest: DeviceSize,
        walked: usize,
    ) {
        if alignment.log2() > LAST_EXPONENT {
            return;
        }
        if self.pending != 0 {
            self.raise_by_pending();
        }
        if self.granularity != granularity {
            // The bounds of another granularity say nothing about this one.
            self.forget();
            self.granularity = granularity;
        }
        let class = alignment.log2() as usize;
        let row = type_index(ty);
        let bit = 1 << (row * CLASSES + class);
        let entry = &mut self.tables.largest[row][class];
        *entry = if self.known & bit == 0 {
            largest
        } else {
            (*entry).min(largest)
        };
        self.known |= bit;
        self.kept |= walked >= self.long_walk;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn al(value: u64) -> DeviceAlignment {
        DeviceAlignment::new(value).unwrap()
    }

    #[test]
    fn a_bound_holds_for_its_type_its_granularity_and_stricter_alignments_until_forgotten() {
        use AllocationType::*;
        let g = al(64);
        let mut b = FitBounds::new();
        assert_eq!(b.largest(Linear, al(16), g), DeviceSize::MAX);
        b.record(Linear, al(128), g, 100, 0);
        assert_eq!(b.largest(Linear, al(128), g), 100);
        assert_eq!(b.largest(Linear, al(1 << 20), g), 100, "stricter");
        assert_eq!(b.largest(Linear, al(64), g), DeviceSize::MAX, "looser");
        assert_eq!(b.largest(NonLinear, al(128), g), DeviceSize::MAX, "type");
        assert_eq!(
            b.largest(Linear, al(128), al(1)),
            DeviceSize::MAX,
            "granularity"
        );
        // A looser failure bounds the stricter classes, never raises them.
        b.record(Linear, al(16), g, 200, 0);
        assert_eq!(b.largest(Linear, al(16), g), 200);
        assert_eq!(b.largest(Linear, al(128), g), 100);
        // Past the last class: not recorded.
        b.record(Linear, al(1 << 20), g, 0, 0);
        assert_eq!(b.largest(Linear, al(1 << 20), g), 100);
        // Another granularity starts over.
        b.record(Unknown, al(1), al(1), 7, 0);
        assert_eq!(b.largest(Unknown, al(1), al(1)), 7);
        assert_eq!(b.largest(Linear, al(128), g), DeviceSize::MAX);
        b.forget();
        assert_eq!(b.largest(Unknown, al(1), al(1)), DeviceSize::MAX);
    }

    #[test]
    fn an_allocation_cuts_only_the_noted_ranges_it_overlaps() {
        use AllocationType::Linear;
        let g = al(1);
        let bound = |b: &mut FitBounds| b.largest(Linear, al(1), g);
        let mut b = FitBounds::new();
        b.record(Linear, al(1), g, 10, LONG_WALK);
        assert!(b.kept());
        b.freed(100, 200);
        assert_eq!(bound(&mut b), 100, "raised by the noted range");
        // Allocations beside the range, touching it or not, leave it whole.
        b.taken(300, 400);
        b.taken(200, 250);
        b.taken(40, 100);
        assert_eq!(bound(&mut b), 100);
        // One over its start, one over its end: the middle is left.
        b.taken(90, 120);
        b.taken(170, 210);
        assert_eq!(bound(&mut b), 50);
        // One in the middle leaves the larger piece (both are kept).
        b.taken(130, 140);
        assert_eq!(bound(&mut b), 30);
        // One over all of it removes it: the learned bound is back.
        b.taken(0, 1000);
        assert!(!b.any_pending(), "both pieces gone");
        assert_eq!(bound(&mut b), 10);
    }
}
