//! The smallest request that failed in an arena since its last free: lets the block search
//! skip arenas that must fail without locking them.

use crate::layout::DeviceLayout;
use crate::suballocator::{AllocationType, Suballocator, SuballocatorError};
use std::sync::atomic::{AtomicU64, Ordering};

/// The smallest request that failed in an arena since the arena's last free, packed in one
/// atomic so the block search can read it without the arena's lock.
///
/// The hint relies on failure being *monotone*: without a free in between, an arena that
/// could not fit `size` bytes aligned to `a` for a resource of type `t` cannot fit any
/// request of type `t` that is at least as large and at least as strictly aligned either,
/// so the search skips it instead of locking and searching it again. That holds for every
/// suballocator when the failure was [`OutOfRegionMemory`](SuballocatorError::OutOfRegionMemory)
/// (fewer free bytes than the smaller request), and for
/// [`FragmentedRegion`](SuballocatorError::FragmentedRegion) only where the suballocator
/// promises it ([`Suballocator::fails_monotonically`], see [`records`](Self::records)). The hint thus only ever skips arenas that would
/// fail; a stale read costs a wasted try, never a wrong result.
pub(super) struct FailedRequest(AtomicU64);

impl Default for FailedRequest {
    fn default() -> Self {
        Self(AtomicU64::new(Self::NONE))
    }
}

impl FailedRequest {
    const NONE: u64 = u64::MAX;

    /// Packs size (56 bits), alignment exponent (6 bits) and type (2 bits); sizes too large
    /// to pack are not recorded.
    fn pack(layout: DeviceLayout, allocation_type: AllocationType) -> Option<u64> {
        let size = layout.size();
        let ty = match allocation_type {
            AllocationType::Unknown => 0,
            AllocationType::Linear => 1,
            AllocationType::NonLinear => 2,
        };
        (size < 1 << 56).then(|| size << 8 | (layout.alignment().log2() as u64) << 2 | ty)
    }

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
        let Some(packed) = Self::pack(layout, allocation_type) else {
            return;
        };
        let old = self.0.load(Ordering::Relaxed);
        if old == Self::NONE || packed >> 8 < old >> 8 {
            self.0.store(packed, Ordering::Relaxed);
        }
    }

    /// Called under the arena's lock after a free.
    #[inline]
    pub(super) fn clear(&self) {
        if self.0.load(Ordering::Relaxed) != Self::NONE {
            self.0.store(Self::NONE, Ordering::Relaxed);
        }
    }

    /// Whether the request must fail in this arena, given the recorded failure.
    #[inline]
    pub(super) fn implies_failure(
        &self,
        layout: DeviceLayout,
        allocation_type: AllocationType,
    ) -> bool {
        let old = self.0.load(Ordering::Relaxed);
        if old == Self::NONE {
            return false;
        }
        let Some(new) = Self::pack(layout, allocation_type) else {
            return false;
        };
        new & 3 == old & 3 && new >> 8 >= old >> 8 && (new >> 2) & 63 >= (old >> 2) & 63
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(size: u64, alignment: u64) -> DeviceLayout {
        DeviceLayout::from_size_alignment(size, alignment).unwrap()
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
        // A larger failure does not replace a smaller one; a smaller one does.
        f.record(layout(1 << 20, 1), Linear);
        assert!(f.implies_failure(layout(4096, 256), Linear));
        f.record(layout(1024, 512), Linear);
        assert!(f.implies_failure(layout(1024, 512), Linear));
        assert!(!f.implies_failure(layout(4096, 256), Linear));
        f.clear();
        assert!(!f.implies_failure(layout(1 << 30, 1 << 12), Linear));
        // Sizes too large to pack are never recorded nor implied.
        f.record(layout(1 << 57, 1), Unknown);
        assert!(!f.implies_failure(layout(1 << 58, 1), Unknown));
    }
}
