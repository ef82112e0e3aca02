//! What the complete search learned from its failures: per type and alignment, the most
//! bytes that any free range can hold, so that a larger request fails at once.
//!
//! When the complete search finds no free range for a request, it has looked at every range
//! that could hold it, and it goes on through the smaller ones until it knows `largest`: the
//! most bytes that any free range holds at the request's alignment, for its type and
//! granularity. Every request of that type, at least as strictly aligned and larger than
//! `largest`, must fail too, and keeps failing while only allocations follow: an allocation
//! only takes free bytes away and adds allocations to conflict with (the argument of
//! [`fails_monotonically`](crate::suballocator::Suballocator::fails_monotonically)). So the
//! bound stays an upper bound until the next free, which forgets every bound with one store.
//!
//! The bound is over the free nodes only: the padding that allocations absorb takes no
//! request (see [padding](super#padding-and-granularity)), so a region whose free bytes are
//! all such padding learns a bound of 0.

use super::AllocationType;
use crate::layout::{DeviceAlignment, DeviceSize};

/// Alignment classes `2^0 ..= 2^LAST_EXPONENT`. A failure more strictly aligned than the last
/// class is not recorded; a request more strictly aligned is bounded by the last class.
const LAST_EXPONENT: u32 = 16;
const CLASSES: usize = LAST_EXPONENT as usize + 1;
const TYPES: usize = 3;

/// Upper bounds on the room of the free ranges since the last free (see the module docs).
#[derive(Debug)]
pub(super) struct FitBounds {
    /// Per type and alignment class `j`: the most bytes a free range holds at an alignment of
    /// `2^j`, where the entry's bit in `known` is set. A bound holds for the stricter classes
    /// too: a lookup takes the least known bound of its class and the classes below.
    largest: Box<[[DeviceSize; CLASSES]; TYPES]>,
    /// One bit per entry of `largest` (bit `type * CLASSES + class`): which hold a bound.
    /// Cleared by a free: forgetting costs one store, however many bounds there were.
    known: u64,
    /// The granularity the known bounds hold for.
    granularity: DeviceAlignment,
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
            largest: Box::new([[DeviceSize::MAX; CLASSES]; TYPES]),
            known: 0,
            granularity: DeviceAlignment::MIN,
        }
    }

    /// Forgets every bound (a free may have made room anywhere): one store.
    #[inline(always)]
    pub(super) fn forget(&mut self) {
        self.known = 0;
    }

    /// The most bytes a free range can hold for a request of this type, alignment and
    /// granularity, as far as is known: `DeviceSize::MAX` when nothing is.
    #[inline]
    pub(super) fn largest(
        &self,
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
        let mut largest = DeviceSize::MAX;
        while classes != 0 {
            largest = largest.min(self.largest[row][classes.trailing_zeros() as usize]);
            classes &= classes - 1;
        }
        largest
    }

    /// Records that no free range holds more than `largest` bytes for a request of this type,
    /// alignment and granularity (hence none of any stricter alignment either).
    pub(super) fn record(
        &mut self,
        ty: AllocationType,
        alignment: DeviceAlignment,
        granularity: DeviceAlignment,
        largest: DeviceSize,
    ) {
        if alignment.log2() > LAST_EXPONENT {
            return;
        }
        if self.granularity != granularity {
            // The bounds of another granularity say nothing about this one.
            self.known = 0;
            self.granularity = granularity;
        }
        let class = alignment.log2() as usize;
        let row = type_index(ty);
        let bit = 1 << (row * CLASSES + class);
        let entry = &mut self.largest[row][class];
        *entry = if self.known & bit == 0 {
            largest
        } else {
            (*entry).min(largest)
        };
        self.known |= bit;
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
        b.record(Linear, al(128), g, 100);
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
        b.record(Linear, al(16), g, 200);
        assert_eq!(b.largest(Linear, al(16), g), 200);
        assert_eq!(b.largest(Linear, al(128), g), 100);
        // Past the last class: not recorded.
        b.record(Linear, al(1 << 20), g, 0);
        assert_eq!(b.largest(Linear, al(1 << 20), g), 100);
        // Another granularity starts over.
        b.record(Unknown, al(1), al(1), 7);
        assert_eq!(b.largest(Unknown, al(1), al(1)), 7);
        assert_eq!(b.largest(Linear, al(128), g), DeviceSize::MAX);
        b.forget();
        assert_eq!(b.largest(Unknown, al(1), al(1)), DeviceSize::MAX);
    }
}
