//! The invariant checker shared by every suballocator's tests.
//!
//! [`Checker`] wraps a suballocator and a shadow model of its live allocations (a `BTreeMap`
//! by offset) and, after every call, verifies the properties the [`Suballocator`] trait
//! promises: ranges inside the region, no overlaps, alignment, buffer-image granularity
//! against *every* live range that shares a page (not only the adjacent ones), exact free-size
//! accounting through [`Suballocator::for_each_range`], and consistent error kinds.
//! [`op_sequence`] is the proptest strategy that drives it with long random sequences, and
//! [`fifo_op_sequence`] a variant that mostly frees the oldest allocation (as a ring is used).

use super::*;
use crate::layout::align_down;
use proptest::prelude::*;
use std::collections::BTreeMap;

/// One step of a random sequence.
#[derive(Clone, Debug)]
pub(crate) enum Op {
    /// Allocate `size` bytes aligned to `1 << align_log` with the given type.
    Alloc {
        size: DeviceSize,
        align_log: u32,
        ty: AllocationType,
    },
    /// Free the live allocation at this index (modulo the number of live allocations).
    Free(usize),
    /// Free the oldest live allocation.
    FreeOldest,
}

fn allocation_type() -> impl Strategy<Value = AllocationType> {
    prop_oneof![
        Just(AllocationType::Unknown),
        Just(AllocationType::Linear),
        Just(AllocationType::NonLinear),
    ]
}

/// A size between 1 and `max`, log-uniform so that small and large requests are both common.
pub(crate) fn log_uniform_size(max: DeviceSize) -> impl Strategy<Value = DeviceSize> {
    let max_log = 64 - max.leading_zeros();
    (0..max_log, any::<u64>()).prop_map(move |(log, bits)| {
        let lo = 1u64 << log;
        let hi = (lo << 1).min(max + 1).max(lo + 1);
        lo + bits % (hi - lo)
    })
}

/// Random sequences of `len` operations: sizes 1 B ..= `max_size`, alignments 1 ..= 64 KiB,
/// all three allocation types, about 60 % allocations.
pub(crate) fn op_sequence(
    max_size: DeviceSize,
    len: std::ops::Range<usize>,
) -> impl Strategy<Value = Vec<Op>> {
    let op = prop_oneof![
        3 => (log_uniform_size(max_size), 0..=16u32, allocation_type())
            .prop_map(|(size, align_log, ty)| Op::Alloc { size, align_log, ty }),
        2 => any::<usize>().prop_map(Op::Free),
    ];
    proptest::collection::vec(op, len)
}

/// Like [`op_sequence`], but a free is of the oldest live allocation `fifo_percent` % of the
/// time (and of a random one otherwise), as in a ring of transient allocations.
pub(crate) fn fifo_op_sequence(
    max_size: DeviceSize,
    len: std::ops::Range<usize>,
    fifo_percent: u32,
) -> impl Strategy<Value = Vec<Op>> {
    let op = prop_oneof![
        3 => (log_uniform_size(max_size), 0..=16u32, allocation_type())
            .prop_map(|(size, align_log, ty)| Op::Alloc { size, align_log, ty }),
        2 => (0..100u32, any::<usize>()).prop_map(move |(p, i)| {
            if p < fifo_percent { Op::FreeOldest } else { Op::Free(i) }
        }),
    ];
    proptest::collection::vec(op, len)
}

/// A granularity between 1 B and 64 KiB.
pub(crate) fn granularity() -> impl Strategy<Value = DeviceAlignment> {
    (0..=16u32).prop_map(|log| DeviceAlignment::from_log2(log).unwrap())
}

#[derive(Clone, Copy, Debug)]
struct Live {
    suballocation: Suballocation,
    alignment: DeviceAlignment,
    /// Allocation order, for [`Op::FreeOldest`].
    seq: u64,
}

/// A suballocator under test plus a shadow model of what is live.
pub(crate) struct Checker<S> {
    pub(crate) sub: S,
    granularity: DeviceAlignment,
    live: BTreeMap<DeviceSize, Live>,
    next_seq: u64,
}

impl<S: Suballocator> Checker<S> {
    pub(crate) fn new(sub: S, granularity: DeviceAlignment) -> Self {
        let checker = Self {
            sub,
            granularity,
            live: BTreeMap::new(),
            next_seq: 0,
        };
        checker.check();
        checker
    }

    pub(crate) fn live_count(&self) -> usize {
        self.live.len()
    }

    /// Allocates through the suballocator and checks the result against the model.
    pub(crate) fn allocate(
        &mut self,
        layout: DeviceLayout,
        ty: AllocationType,
    ) -> Result<Suballocation, SuballocatorError> {
        let free_before = self.sub.free_size();
        let result = self.sub.allocate(layout, ty, self.granularity);
        match result {
            Ok(s) => {
                assert_eq!(s.size, layout.size(), "size changed");
                assert_eq!(s.allocation_type, ty, "type changed");
                assert!(
                    layout.alignment().is_aligned(s.offset),
                    "offset {} not aligned to {:?}",
                    s.offset,
                    layout.alignment()
                );
                let end = s.offset.checked_add(s.size).expect("end overflows");
                assert!(end <= self.sub.region_size(), "range ends past the region");
                self.check_no_overlap(&s);
                self.check_granularity(&s);
                assert!(
                    free_before - self.sub.free_size() >= s.size,
                    "free size dropped by less than the allocation's size"
                );
                self.live.insert(
                    s.offset,
                    Live {
                        suballocation: s,
                        alignment: layout.alignment(),
                        seq: self.next_seq,
                    },
                );
                self.next_seq += 1;
            }
            Err(SuballocatorError::OutOfRegionMemory) => assert!(
                free_before < layout.size(),
                "OutOfRegionMemory with {free_before} bytes free for {}",
                layout.size()
            ),
            Err(SuballocatorError::FragmentedRegion) => assert!(
                free_before >= layout.size(),
                "FragmentedRegion with only {free_before} bytes free for {}",
                layout.size()
            ),
            Err(SuballocatorError::BlockSizeExceeded) => {}
        }
        if result.is_err() {
            assert_eq!(
                self.sub.free_size(),
                free_before,
                "a failed allocation changed the free size"
            );
        }
        self.check();
        result
    }

    /// Frees the live allocation at `index % live_count`.
    pub(crate) fn free(&mut self, index: usize) {
        if self.live.is_empty() {
            return;
        }
        let key = *self.live.keys().nth(index % self.live.len()).unwrap();
        self.free_at(key);
    }

    /// Frees the oldest live allocation (the first of those still live to be allocated).
    pub(crate) fn free_oldest(&mut self) {
        let oldest = self.live.iter().min_by_key(|(_, l)| l.seq).map(|(&k, _)| k);
        if let Some(key) = oldest {
            self.free_at(key);
        }
    }

    fn free_at(&mut self, key: DeviceSize) {
        let live = self.live.remove(&key).unwrap();
        let free_before = self.sub.free_size();
        // SAFETY: the suballocation came from `self.sub` and the model removed it, so it is
        // freed exactly once.
        #[allow(unsafe_code)]
        unsafe {
            self.sub.deallocate(live.suballocation)
        };
        assert!(
            self.sub.free_size() >= free_before,
            "free size shrank on deallocate"
        );
        self.check();
    }

    /// Runs `ops`, checking after every step.
    pub(crate) fn run(&mut self, ops: &[Op]) {
        for op in ops {
            match *op {
                Op::Alloc {
                    size,
                    align_log,
                    ty,
                } => {
                    let alignment = DeviceAlignment::from_log2(align_log).unwrap();
                    if let Ok(layout) = DeviceLayout::new(size, alignment) {
                        let _ = self.allocate(layout, ty);
                    }
                }
                Op::Free(i) => self.free(i),
                Op::FreeOldest => self.free_oldest(),
            }
        }
    }

    /// Frees everything, checks that the region is whole again, and that one allocation of
    /// `whole` bytes (the region, or what the suballocator documents as its largest request)
    /// succeeds.
    pub(crate) fn free_all_and_reuse(&mut self, whole: DeviceSize) {
        while !self.live.is_empty() {
            self.free(0);
        }
        assert_eq!(self.sub.allocation_count(), 0);
        assert_eq!(self.sub.free_size(), self.sub.region_size(), "bytes leaked");
        if whole > 0 {
            let layout = DeviceLayout::new(whole, DeviceAlignment::MIN).unwrap();
            self.allocate(layout, AllocationType::Unknown)
                .expect("whole region not reusable after freeing everything");
            self.free(0);
        }
    }

    fn check_no_overlap(&self, s: &Suballocation) {
        let end = s.offset + s.size;
        if let Some((_, prev)) = self.live.range(..=s.offset).next_back() {
            let p = prev.suballocation;
            assert!(
                p.offset + p.size <= s.offset,
                "{s:?} overlaps the live {p:?}"
            );
        }
        if let Some((_, next)) = self.live.range(s.offset..).next() {
            assert!(
                end <= next.suballocation.offset,
                "{s:?} overlaps the live {:?}",
                next.suballocation
            );
        }
    }

    fn check_granularity(&self, s: &Suballocation) {
        let g = self.granularity;
        if g == DeviceAlignment::MIN {
            return;
        }
        let first_page = align_down(s.offset, g);
        let last_page = align_down(s.offset + s.size - 1, g);
        let page_end = last_page.saturating_add(g.as_devicesize());
        // Every live range that touches one of the pages [first_page, page_end): those that
        // start inside, plus the one (at most) that starts before and reaches into it.
        let straddling = self
            .live
            .range(..first_page)
            .next_back()
            .filter(|(_, l)| l.suballocation.offset + l.suballocation.size > first_page);
        for (_, other) in straddling
            .into_iter()
            .chain(self.live.range(first_page..page_end))
        {
            let o = other.suballocation;
            let o_first = align_down(o.offset, g);
            let o_last = align_down(o.offset + o.size - 1, g);
            let shares = o_first <= last_page && first_page <= o_last;
            assert!(
                !(shares && s.allocation_type.conflicts_with(o.allocation_type)),
                "{s:?} shares a {g:?} page with the conflicting {o:?}"
            );
        }
    }

    /// Full consistency check of the suballocator against the model.
    pub(crate) fn check(&self) {
        let region = self.sub.region_size();
        assert_eq!(self.sub.allocation_count(), self.live.len());
        let mut cursor = 0;
        let mut free_sum = 0;
        let mut largest_free = 0;
        let mut allocated = Vec::new();
        self.sub.for_each_range(&mut |r| {
            assert_eq!(r.offset, cursor, "ranges do not tile the region: {r:?}");
            assert!(r.size > 0, "empty range reported");
            cursor += r.size;
            match r.kind {
                RangeKind::Free => {
                    free_sum += r.size;
                    largest_free = largest_free.max(r.size);
                }
                RangeKind::Allocated(_) => allocated.push(r),
            }
        });
        assert_eq!(cursor, region, "ranges do not cover the region");
        assert_eq!(free_sum, self.sub.free_size(), "free size accounting");
        assert!(
            self.sub.largest_free_range() >= largest_free,
            "largest_free_range {} below the largest free range {largest_free}",
            self.sub.largest_free_range()
        );
        // Every live allocation lies inside one allocated range.
        let mut live_bytes = 0;
        for live in self.live.values() {
            let s = live.suballocation;
            live_bytes += s.size;
            assert!(live.alignment.is_aligned(s.offset));
            let idx = allocated.partition_point(|r| r.offset + r.size <= s.offset);
            let r = allocated
                .get(idx)
                .unwrap_or_else(|| panic!("{s:?} is not inside any allocated range"));
            assert!(
                r.offset <= s.offset && s.offset + s.size <= r.offset + r.size,
                "{s:?} is not inside an allocated range (nearest {r:?})"
            );
        }
        assert!(region - self.sub.free_size() >= live_bytes);
    }
}
