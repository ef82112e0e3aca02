//! The invariant checker shared by every suballocator's tests.
//!
//! [`Checker`] wraps a suballocator and a shadow model of its live allocations (a `BTreeMap`
//! by offset) and, after every call, verifies the properties the [`Suballocator`] trait
//! promises: ranges inside the region, no overlaps, alignment, buffer-image granularity
//! against *every* live range that shares a page (not only the adjacent ones), exact free-size
//! accounting through [`Suballocator::for_each_range`], and consistent error kinds.
//! [`op_sequence`] is the proptest strategy that drives it with long random sequences, and
//! [`fifo_op_sequence`] a variant that mostly frees the oldest allocation (as a ring is used).
//!
//! Two stronger checks are opt-in, for the suballocators that promise them:
//! - [`Checker::complete`] turns on a brute-force oracle on small regions: every
//!   `OutOfRegionMemory` or `FragmentedRegion` is checked against every aligned offset
//!   ([`Checker::assert_no_legal_offset`]), for suballocators whose search finds a range
//!   whenever one exists;
//! - [`Checker::run_checking_monotone_failure`] checks
//!   [`Suballocator::fails_monotonically`]: after a failure, no request of the same type that
//!   is at least as large and as strictly aligned succeeds before the next free.

use super::*;
use crate::layout::align_down;
use proptest::prelude::*;
use std::collections::BTreeMap;

/// `n` property-test cases, or fewer when the environment variable
/// `ASH_MEMORY_PROPTEST_CASES` says so (mutation testing runs the suite hundreds of times).
pub(crate) fn cases(n: u32) -> u32 {
    std::env::var("ASH_MEMORY_PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(n, |max: u32| n.min(max.max(1)))
}

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
    /// Whether failed allocations go through [`assert_no_legal_offset`](Self::assert_no_legal_offset).
    complete: bool,
    /// Whether the suballocator holds no byte beyond its live allocations (see
    /// [`exact`](Self::exact)).
    exact: bool,
    next_seq: u64,
    /// The strategy every allocation uses.
    strategy: AllocationStrategy,
}

/// The free ranges that `sub` does not hand out while they are what they are (see
/// [`FreeListAllocator::for_each_fragment`](crate::suballocator::FreeListAllocator)): the
/// free list's absorbed padding and slack. An oracle of a complete search counts them as
/// taken.
pub(crate) fn fragments<S: Suballocator + 'static>(sub: &S) -> Vec<(DeviceSize, DeviceSize)> {
    let mut out = Vec::new();
    if let Some(free_list) = (sub as &dyn std::any::Any).downcast_ref::<FreeListAllocator>() {
        free_list.for_each_fragment(&mut |offset, size| out.push((offset, size)));
    }
    out
}

/// The bytes of the free range `r` that take requests: those outside the fragments `held`
/// (in offset order, as [`fragments`] gives them). A free range reported by the free list may
/// hold fragments at its ends (the slack of the allocation before it, the padding of the one
/// after it) around one free node.
pub(crate) fn requestable(r: &RangeInfo, held: &[(DeviceSize, DeviceSize)]) -> DeviceSize {
    let first = held.partition_point(|&(offset, _)| offset < r.offset);
    let inside: DeviceSize = held[first..]
        .iter()
        .take_while(|&&(offset, _)| offset < r.offset + r.size)
        .map(|&(_, size)| size)
        .sum();
    r.size - inside
}

/// The largest region [`Checker::assert_no_legal_offset`] scans (it builds tables of one entry
/// per byte).
pub(crate) const ORACLE_MAX_REGION: DeviceSize = 1 << 20;

impl<S: Suballocator + 'static> Checker<S> {
    pub(crate) fn new(sub: S, granularity: DeviceAlignment) -> Self {
        let checker = Self {
            sub,
            granularity,
            live: BTreeMap::new(),
            complete: false,
            exact: false,
            next_seq: 0,
            strategy: AllocationStrategy::Default,
        };
        checker.check();
        checker
    }

    /// Checks every later `OutOfRegionMemory` and `FragmentedRegion` with
    /// [`assert_no_legal_offset`](Self::assert_no_legal_offset): for suballocators whose search
    /// is complete, on regions of at most [`ORACLE_MAX_REGION`] bytes.
    pub(crate) fn complete(mut self) -> Self {
        assert!(
            self.sub.region_size() <= ORACLE_MAX_REGION,
            "the oracle scans at most {ORACLE_MAX_REGION} bytes"
        );
        self.complete = true;
        self
    }

    /// Holds the suballocator to keeping every byte that no live allocation covers free (no
    /// padding held by an allocation): [`check`](Self::check) then requires the allocated
    /// ranges to be exactly the live allocations, and
    /// [`assert_no_legal_offset`](Self::assert_no_legal_offset) counts only the live
    /// allocations' bytes as taken.
    pub(crate) fn exact(mut self) -> Self {
        self.exact = true;
        self.check();
        self
    }

    /// Allocates with `strategy` from now on.
    pub(crate) fn with_strategy(mut self, strategy: AllocationStrategy) -> Self {
        self.strategy = strategy;
        self
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
        let result = self
            .sub
            .allocate_with_strategy(layout, ty, self.granularity, self.strategy);
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
        if self.complete
            && matches!(
                result,
                Err(SuballocatorError::OutOfRegionMemory | SuballocatorError::FragmentedRegion)
            )
        {
            self.assert_no_legal_offset(layout, ty);
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

    /// The brute-force oracle: panics if some offset could hold `layout` for `ty`. An offset
    /// `o` aligned to the layout is *legal* when `[o, o + size)` lies inside the region,
    /// overlaps no range the suballocator reports as allocated (so padding it holds counts as
    /// taken; with [`exact`](Self::exact), no live allocation of the model), and touches no granularity page on which a live allocation of a
    /// [conflicting](AllocationType::conflicts_with) type has a byte. Every aligned offset is
    /// tried, against tables built from scratch, so the answer does not depend on any
    /// reasoning about neighbours. Regions of at most [`ORACLE_MAX_REGION`] bytes.
    pub(crate) fn assert_no_legal_offset(&self, layout: DeviceLayout, ty: AllocationType) {
        let region = self.sub.region_size();
        assert!(
            region <= ORACLE_MAX_REGION,
            "region too large for the oracle"
        );
        let region = region as usize;
        let size = layout.size() as usize;
        if size > region {
            return;
        }
        // `taken[i]`: bytes of `[0, i)` inside ranges reported as allocated.
        let mut taken = vec![0usize; region + 1];
        let mut take = |offset: DeviceSize, size: DeviceSize| {
            for byte in offset..offset + size {
                taken[byte as usize + 1] = 1;
            }
        };
        if self.exact {
            for live in self.live.values() {
                take(live.suballocation.offset, live.suballocation.size);
            }
            for (offset, size) in fragments(&self.sub) {
                take(offset, size);
            }
        } else {
            self.sub.for_each_range(&mut |r| {
                if let RangeKind::Allocated(_) = r.kind {
                    take(r.offset, r.size);
                }
            });
        }
        for i in 0..region {
            taken[i + 1] += taken[i];
        }
        // `bad[p]`: pages among the first `p` where a conflicting live allocation has a byte.
        let g = self.granularity.as_devicesize() as usize;
        let pages = region.div_ceil(g);
        let mut bad = vec![0usize; pages + 1];
        for live in self.live.values() {
            let s = live.suballocation;
            if ty.conflicts_with(s.allocation_type) {
                let (first, last) = (s.offset as usize, (s.offset + s.size) as usize - 1);
                for page in first / g..=last / g {
                    bad[page + 1] = 1;
                }
            }
        }
        for p in 0..pages {
            bad[p + 1] += bad[p];
        }
        let step = layout.alignment().as_devicesize();
        let mut o = 0usize;
        while o + size <= region {
            let end = o + size;
            let free = taken[end] == taken[o];
            let pages_ok = bad[(end - 1) / g + 1] == bad[o / g];
            assert!(
                !(free && pages_ok),
                "{layout:?} of type {ty:?} failed, but offset {o} is legal (granularity {g})"
            );
            match usize::try_from(step)
                .ok()
                .and_then(|step| o.checked_add(step))
            {
                Some(next) => o = next,
                None => break,
            }
        }
    }

    /// Runs `ops` like [`run`](Self::run) and checks
    /// [`Suballocator::fails_monotonically`] on the way: it remembers every request that
    /// failed with `OutOfRegionMemory` or `FragmentedRegion` since the last free, and after
    /// every allocation, successful or not, tries [`MONOTONE_PROBES`] requests of the same type
    /// that are at least as large and at least as strictly aligned as a remembered failure
    /// (picked at random, from `seed`). Each must fail; one that succeeds is freed again and
    /// reported.
    pub(crate) fn run_checking_monotone_failure(&mut self, ops: &[Op], seed: u64) {
        let mut rng = seed | 1;
        let mut failed: Vec<(DeviceLayout, AllocationType)> = Vec::new();
        for op in ops {
            match *op {
                Op::Alloc {
                    size,
                    align_log,
                    ty,
                } => {
                    let alignment = DeviceAlignment::from_log2(align_log).unwrap();
                    let Ok(layout) = DeviceLayout::new(size, alignment) else {
                        continue;
                    };
                    if let Err(
                        SuballocatorError::OutOfRegionMemory | SuballocatorError::FragmentedRegion,
                    ) = self.allocate(layout, ty)
                    {
                        failed.push((layout, ty));
                    }
                    if failed.is_empty() {
                        continue;
                    }
                    for _ in 0..MONOTONE_PROBES {
                        let (layout, ty) =
                            failed[(xorshift(&mut rng) % failed.len() as u64) as usize];
                        if let Some(probe) = larger_or_stricter(&mut rng, layout) {
                            self.probe_must_fail(probe, ty, layout);
                        }
                    }
                }
                Op::Free(i) => {
                    if !self.live.is_empty() {
                        self.free(i);
                        failed.clear();
                    }
                }
                Op::FreeOldest => {
                    if !self.live.is_empty() {
                        self.free_oldest();
                        failed.clear();
                    }
                }
            }
        }
    }

    /// Allocates `probe`, which an earlier failure of `failed` implies must fail; frees it and
    /// panics if it succeeds.
    fn probe_must_fail(&mut self, probe: DeviceLayout, ty: AllocationType, failed: DeviceLayout) {
        if let Ok(s) = self.allocate(probe, ty) {
            let rank = self.live.range(..s.offset).count();
            self.free(rank);
            panic!(
                "{probe:?} of type {ty:?} succeeded at {} after {failed:?} of the same type \
                 failed, with no free in between",
                s.offset
            );
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
        let held = fragments(&self.sub);
        self.sub.for_each_range(&mut |r| {
            assert_eq!(r.offset, cursor, "ranges do not tile the region: {r:?}");
            assert!(r.size > 0, "empty range reported");
            cursor += r.size;
            match r.kind {
                RangeKind::Free => {
                    free_sum += r.size;
                    largest_free = largest_free.max(requestable(&r, &held));
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
        // Every allocated range holds a live allocation: statistics count these ranges, and
        // leak reports list them.
        for r in &allocated {
            let first = self.live.range(r.offset..).next();
            assert!(
                first.is_some_and(|(&offset, _)| offset < r.offset + r.size),
                "allocated range {r:?} holds no live allocation"
            );
        }
        assert!(region - self.sub.free_size() >= live_bytes);
        if self.exact {
            assert_eq!(
                region - self.sub.free_size(),
                live_bytes,
                "bytes held beyond the live allocations"
            );
            let exact = allocated.len() == self.live.len()
                && allocated.iter().zip(self.live.values()).all(|(r, l)| {
                    (r.offset, r.size) == (l.suballocation.offset, l.suballocation.size)
                });
            assert!(
                exact,
                "allocated ranges {allocated:?} are not the live allocations"
            );
        }
    }
}

/// Requests tried after each allocation by [`Checker::run_checking_monotone_failure`].
pub(crate) const MONOTONE_PROBES: usize = 4;

/// A tiny deterministic generator for the probes.
fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// A random layout at least as large and at least as strictly aligned as `layout`: the same
/// one a quarter of the time, otherwise a little or a lot larger, or more strictly aligned, or
/// both. `None` when the result is not a valid layout.
fn larger_or_stricter(rng: &mut u64, layout: DeviceLayout) -> Option<DeviceLayout> {
    let r = xorshift(rng);
    let bits = r >> 8;
    let extra = match r % 4 {
        0 => 0,
        1 => bits % 16,
        2 => bits % layout.size(),
        _ => bits % layout.size().saturating_mul(16),
    };
    let raise = [0, 0, 1, 4][(r >> 4) as usize % 4];
    let align_log = (layout.alignment().log2() + raise).min(DeviceAlignment::MAX.log2());
    let alignment = DeviceAlignment::from_log2(align_log)?;
    DeviceLayout::new(layout.size().saturating_add(extra), alignment).ok()
}

#[cfg(test)]
mod tests {
    //! [`Suballocator::fails_monotonically`] for every suballocator that claims it.

    use super::*;

    /// Region sizes log-uniform in [1 B, 4 MiB), with requests up to the region or up to a
    /// 256th of it, so that both full and fragmented regions are common.
    fn region_and_ops() -> impl Strategy<Value = (DeviceSize, Vec<Op>)> {
        (log_uniform_size(1 << 22), 0..=8u32).prop_flat_map(|(region, shift)| {
            (
                Just(region),
                op_sequence((region >> shift).max(1), 100..600),
            )
        })
    }

    fn check_monotone<S: Suballocator + 'static>(
        region: DeviceSize,
        granularity: DeviceAlignment,
        ops: &[Op],
        seed: u64,
    ) {
        assert!(S::fails_monotonically());
        let mut c = Checker::new(S::new(region), granularity);
        c.run_checking_monotone_failure(ops, seed);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(crate::suballocator::testing::cases(64)))]

        #[test]
        fn free_list_fails_monotonically(
            (region, ops) in region_and_ops(),
            granularity in granularity(),
            seed in any::<u64>(),
        ) {
            check_monotone::<FreeListAllocator>(region, granularity, &ops, seed);
        }

        #[test]
        fn buddy_fails_monotonically(
            (region, ops) in region_and_ops(),
            granularity in granularity(),
            seed in any::<u64>(),
        ) {
            check_monotone::<BuddyAllocator>(region, granularity, &ops, seed);
        }

        #[test]
        fn bump_fails_monotonically(
            (region, ops) in region_and_ops(),
            granularity in granularity(),
            seed in any::<u64>(),
        ) {
            check_monotone::<BumpAllocator>(region, granularity, &ops, seed);
        }

        #[test]
        fn ring_fails_monotonically(
            (region, ops) in (log_uniform_size(1 << 22), 0..=8u32).prop_flat_map(|(region, shift)| {
                (Just(region), fifo_op_sequence((region >> shift).max(1), 100..600, 70))
            }),
            granularity in granularity(),
            seed in any::<u64>(),
        ) {
            check_monotone::<RingAllocator>(region, granularity, &ops, seed);
        }

        #[test]
        fn pool_fails_monotonically(
            (region, ops) in (12..24u32).prop_flat_map(|log| {
                let region = 1u64 << log;
                (Just(region), op_sequence(1024, 100..600))
            }),
            granularity in granularity(),
            seed in any::<u64>(),
        ) {
            check_monotone::<SlotAllocator<256>>(region, granularity, &ops, seed);
            check_monotone::<SlotAllocator<1024>>(region, granularity, &ops, seed);
        }
    }
}
