//! The requests that failed in an arena since its last free: lets the block search skip
//! arenas that must fail without locking them.

use crate::layout::{DeviceLayout, DeviceSize};
use crate::suballocator::{AllocationType, Suballocator, SuballocatorError};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Alignment classes: `2^0 ..= 2^LAST_EXPONENT`; failures more strictly aligned than the
/// last class are not recorded, requests more strictly aligned are looked up in it.
const LAST_EXPONENT: usize = 16;
const CLASSES: usize = LAST_EXPONENT + 1;
const TYPES: usize = 3;
const NONE: u64 = u64::MAX;

/// The failures of an arena since its last free, readable without the arena's lock.
///
/// The hint relies on failure being *monotone*: without a free in between, an arena that
/// could not fit `size` bytes aligned to `a` for a resource of type `t` cannot fit any
/// request of type `t` that is at least as large and at least as strictly aligned either,
/// so the search skips it instead of locking and searching it again. That holds for every
/// suballocator when the failure was [`OutOfRegionMemory`](SuballocatorError::OutOfRegionMemory)
/// (fewer free bytes than the smaller request), and for
/// [`FragmentedRegion`](SuballocatorError::FragmentedRegion) only where the suballocator
/// promises it ([`Suballocator::fails_monotonically`], see [`records`](Self::records)).
///
/// What is kept is the whole frontier of such failures, not one of them: per type and per
/// alignment class `j`, the smallest size that failed at an alignment of at most `2^j`. A
/// request aligned to `2^q` must fail when the entry of class `min(q, 16)` is at most its
/// size. (One remembered failure is not enough where requests of every size come with every
/// alignment: the smallest failure seldom has the smallest alignment, and every smaller or
/// looser request then searched the full arena again.) The hint only ever skips arenas that
/// would fail; a stale read costs a wasted try, never a wrong result.
pub(super) struct FailedRequest {
    smallest: [[AtomicU64; CLASSES]; TYPES],
    /// Whether any entry is set (so that a free clears them only then).
    any: AtomicBool,
}

impl Default for FailedRequest {
    fn default() -> Self {
        Self {
            smallest: std::array::from_fn(|_| std::array::from_fn(|_| AtomicU64::new(NONE))),
            any: AtomicBool::new(false),
        }
    }
}

fn type_index(allocation_type: AllocationType) -> usize {
    match allocation_type {
        AllocationType::Unknown => 0,
        AllocationType::Linear => 1,
        AllocationType::NonLinear => 2,
    }
}

impl FailedRequest {
    /// Whether a failure `e` of suballocator `S` may be recorded: only failures that every
    /// larger, at least as strictly aligned request of the same type must share.
    #[inline]
    pub(super) fn records<S: Suballocator>(e: SuballocatorError) -> bool {
        match e {
            SuballocatorError::OutOfRegionMemory => true,
            SuballocatorError::FragmentedRegion => S::fails_monotonically(),
            SuballocatorError::BlockSizeExceeded => false,
        }
    }

    /// Called under the arena's lock after a failed allocation that
    /// [`records`](Self::records) accepts.
    pub(super) fn record(&self, layout: DeviceLayout, allocation_type: AllocationType) {
        let exponent = layout.alignment().log2() as usize;
        if exponent > LAST_EXPONENT {
            return;
        }
        let size: DeviceSize = layout.size();
        // The failure implies failure in every stricter alignment class too.
        for entry in &self.smallest[type_index(allocation_type)][exponent..] {
            if size < entry.load(Ordering::Relaxed) {
                entry.store(size, Ordering::Relaxed);
            }
        }
        self.any.store(true, Ordering::Relaxed);
    }

    /// Called under the arena's lock after a free.
    #[inline]
    pub(super) fn clear(&self) {
        if self.any.load(Ordering::Relaxed) {
            for entry in self.smallest.iter().flatten() {
                entry.store(NONE, Ordering::Relaxed);
            }
            self.any.store(false, Ordering::Relaxed);
        }
    }

    /// Whether the request must fail in this arena, given the recorded failures.
    #[inline]
    pub(super) fn implies_failure(
        &self,
        layout: DeviceLayout,
        allocation_type: AllocationType,
    ) -> bool {
        let class = (layout.alignment().log2() as usize).min(LAST_EXPONENT);
        self.smallest[type_index(allocation_type)][class].load(Ordering::Relaxed) <= layout.size()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(size: u64, alignment: u64) -> DeviceLayout {
        DeviceLayout::from_size_alignment(size, alignment).unwrap()
    }

    #[test]
    fn only_failures_that_larger_requests_share_are_recorded() {
        use crate::suballocator::FreeListAllocator;
        type Fl = FreeListAllocator;
        assert!(FailedRequest::records::<Fl>(
            SuballocatorError::OutOfRegionMemory
        ));
        assert!(FailedRequest::records::<Fl>(
            SuballocatorError::FragmentedRegion
        ));
        // A request larger than a slot allocator's slots says nothing of the arena's room.
        assert!(!FailedRequest::records::<Fl>(
            SuballocatorError::BlockSizeExceeded
        ));
    }

    #[test]
    fn a_failure_implies_only_larger_stricter_requests_of_the_same_type() {
        use AllocationType::*;
        let f = FailedRequest::default();
        assert!(!f.implies_failure(layout(1 << 40, 1 << 20), Linear));
        f.record(layout(4096, 256), Linear);
        assert!(f.implies_failure(layout(4096, 256), Linear));
        assert!(f.implies_failure(layout(8192, 4096), Linear));
        assert!(!f.implies_failure(layout(4095, 256), Linear), "smaller");
        assert!(
            !f.implies_failure(layout(8192, 128), Linear),
            "looser alignment"
        );
        assert!(
            !f.implies_failure(layout(8192, 256), NonLinear),
            "other type"
        );
        // Failures that do not imply each other are both kept.
        f.record(layout(1 << 20, 1), Linear);
        assert!(f.implies_failure(layout(4096, 256), Linear));
        assert!(
            f.implies_failure(layout(1 << 20, 16), Linear),
            "looser, but larger"
        );
        assert!(!f.implies_failure(layout((1 << 20) - 1, 16), Linear));
        f.record(layout(1024, 512), Linear);
        assert!(f.implies_failure(layout(1024, 512), Linear));
        assert!(
            f.implies_failure(layout(4096, 256), Linear),
            "still implied"
        );
        assert!(!f.implies_failure(layout(1024, 256), Linear));
        f.clear();
        assert!(!f.implies_failure(layout(1 << 30, 1 << 12), Linear));
        // Alignments past the last class: a failure there is not recorded, a request there
        // is implied by a failure in the last class.
        f.record(layout(64, 1 << 20), Unknown);
        assert!(!f.implies_failure(layout(1 << 30, 1 << 30), Unknown));
        f.record(layout(64, 1 << 16), Unknown);
        assert!(f.implies_failure(layout(64, 1 << 30), Unknown));
        assert!(!f.implies_failure(layout(64, 1 << 15), Unknown));
    }
}
