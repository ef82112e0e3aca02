//! Differential tests: every suballocator against a brute-force reference model.
//!
//! The model ([`Model`]) is deliberately naive and shares no code or reasoning with the
//! suballocators (nor with the shared [`Checker`](super::testing::Checker)): it keeps the live
//! ranges with their types in a sorted map and answers every question by looking at all of
//! them. Placement is checked against *every* live range (overlap, and buffer-image
//! granularity page by page, read from the [`Suballocator`] trait docs: a range's pages are
//! the `g`-sized pages its first and last byte lie on and every page between, and two ranges
//! of [conflicting](AllocationType::conflicts_with) types may not share one). For the
//! suballocators whose search is complete (the free list, whatever the strategy), a refusal is
//! checked by trying every aligned offset of every gap between live ranges.
//!
//! The random walks mix the four strategies call by call, resets, fills of tiny allocations
//! (with alternating types) up to a full region, requests of exactly the free size, of size 1
//! and of the largest layout, alignments beyond the region, region sizes from 0 to odd ones,
//! and granularities from 1 B to 64 KiB.

use super::*;
use crate::layout::align_up;
use crate::suballocator::testing::{self, cases};
use proptest::prelude::*;
use std::collections::BTreeMap;

/// The reference model: live ranges by offset, with their size and type.
#[derive(Default)]
struct Model {
    live: BTreeMap<DeviceSize, (DeviceSize, AllocationType, Suballocation)>,
}

/// The granularity pages `[first, last]` (page indices) that `[offset, offset + size)` touches.
fn pages_of(offset: DeviceSize, size: DeviceSize, g: DeviceAlignment) -> (DeviceSize, DeviceSize) {
    let g = g.as_devicesize();
    (offset / g, (offset + size - 1) / g)
}

impl Model {
    fn live_bytes(&self) -> DeviceSize {
        self.live.values().map(|l| l.0).sum()
    }

    /// Why `[offset, offset + size)` of type `ty` may not be placed, if it may not: looks at
    /// every live range.
    fn conflict(
        &self,
        offset: DeviceSize,
        size: DeviceSize,
        ty: AllocationType,
        g: DeviceAlignment,
    ) -> Option<String> {
        let (first, last) = pages_of(offset, size, g);
        for (&o, &(s, t, _)) in &self.live {
            if o < offset + size && offset < o + s {
                return Some(format!("overlaps the live [{o}, {}) {t:?}", o + s));
            }
            let (of, ol) = pages_of(o, s, g);
            if ty.conflicts_with(t) && of <= last && first <= ol {
                return Some(format!(
                    "shares a {}-byte page with the live [{o}, {}) {t:?}",
                    g.as_devicesize(),
                    o + s
                ));
            }
        }
        None
    }

    /// The free gaps between the live allocations and the `held` ranges (free ranges that the
    /// suballocator does not hand out, see [`testing::fragments`]).
    fn gaps_besides(
        &self,
        region: DeviceSize,
        held: &[(DeviceSize, DeviceSize)],
    ) -> Vec<(DeviceSize, DeviceSize)> {
        let mut taken: Vec<(DeviceSize, DeviceSize)> =
            self.live.iter().map(|(&o, &(s, _, _))| (o, s)).collect();
        taken.extend_from_slice(held);
        taken.sort_unstable();
        let mut out = Vec::new();
        let mut cursor = 0;
        for (o, s) in taken {
            if o > cursor {
                out.push((cursor, o));
            }
            cursor = cursor.max(o + s);
        }
        if cursor < region {
            out.push((cursor, region));
        }
        out
    }

    /// Some offset at which `layout` of type `ty` could be placed, trying every aligned offset
    /// of every gap beside the `held` ranges (regions small enough to enumerate only). Tables built from scratch make
    /// each try O(1): live bytes before each offset, and pages before each page on which a
    /// live range of a conflicting type has a byte.
    fn legal_offset(
        &self,
        region: DeviceSize,
        layout: DeviceLayout,
        ty: AllocationType,
        g: DeviceAlignment,
        held: &[(DeviceSize, DeviceSize)],
    ) -> Option<DeviceSize> {
        let (size, a) = (layout.size(), layout.alignment());
        let gs = g.as_devicesize();
        let pages = region.div_ceil(gs) as usize;
        let mut bad = vec![0u32; pages + 1];
        for (&o, &(s, t, _)) in &self.live {
            if ty.conflicts_with(t) {
                let (first, last) = pages_of(o, s, g);
                for p in first..=last {
                    bad[p as usize + 1] = 1;
                }
            }
        }
        for p in 0..pages {
            bad[p + 1] += bad[p];
        }
        for (start, end) in self.gaps_besides(region, held) {
            let mut o = align_up(start, a)?;
            while o.checked_add(size).is_some_and(|e| e <= end) {
                let (first, last) = pages_of(o, size, g);
                if bad[last as usize + 1] == bad[first as usize] {
                    debug_assert!(self.conflict(o, size, ty, g).is_none());
                    return Some(o);
                }
                o = match o.checked_add(a.as_devicesize()) {
                    Some(next) => next,
                    None => break,
                };
            }
        }
        None
    }

    /// The largest gap beside the `held` ranges.
    fn largest_gap(&self, region: DeviceSize, held: &[(DeviceSize, DeviceSize)]) -> DeviceSize {
        self.gaps_besides(region, held)
            .into_iter()
            .map(|(s, e)| e - s)
            .max()
            .unwrap_or(0)
    }
}

/// What a suballocator promises beyond the trait, as far as these tests check it.
#[derive(Clone, Copy)]
struct Promises {
    /// Every byte not in a live allocation is free (`free_size` exact).
    exact: bool,
    /// A refusal means no offset can hold the request.
    complete: bool,
}

/// The size of a request.
#[derive(Clone, Copy, Debug)]
enum Size {
    Bytes(DeviceSize),
    /// The free size, plus or minus a little.
    Free(i8),
    /// The largest layout of the alignment.
    Max,
}

#[derive(Clone, Copy, Debug)]
enum Step {
    Alloc {
        size: Size,
        align_log: u32,
        ty: AllocationType,
        strategy: AllocationStrategy,
    },
    /// Allocates `size` bytes until a refusal, with alternating types if `alternate`.
    Fill {
        size: DeviceSize,
        align_log: u32,
        alternate: bool,
        strategy: AllocationStrategy,
    },
    Free(usize),
    /// Frees all but one allocation in `n` (from a random phase).
    Thin(usize, usize),
    Reset,
}

fn ty() -> impl Strategy<Value = AllocationType> {
    prop_oneof![
        Just(AllocationType::Unknown),
        Just(AllocationType::Linear),
        Just(AllocationType::NonLinear),
    ]
}

fn strategy() -> impl Strategy<Value = AllocationStrategy> {
    prop_oneof![
        Just(AllocationStrategy::Default),
        Just(AllocationStrategy::MinTime),
        Just(AllocationStrategy::MinMemory),
        Just(AllocationStrategy::MinOffset),
    ]
}

/// Up to `max`, log-uniform.
fn log_size(max: DeviceSize) -> impl Strategy<Value = DeviceSize> {
    let max_log = 64 - max.max(1).leading_zeros();
    (0..max_log, any::<u64>()).prop_map(move |(log, bits)| {
        let lo = 1u64 << log;
        let hi = (lo << 1).min(max.max(1) + 1).max(lo + 1);
        lo + bits % (hi - lo)
    })
}

fn steps(region: DeviceSize, len: std::ops::Range<usize>) -> impl Strategy<Value = Vec<Step>> {
    let size = prop_oneof![
        8 => log_size(region.saturating_mul(2).max(2)).prop_map(Size::Bytes),
        2 => Just(Size::Bytes(1)),
        2 => (-2i8..=2).prop_map(Size::Free),
        1 => Just(Size::Max),
    ];
    let align = prop_oneof![6 => 0..=8u32, 2 => 0..=20u32, 1 => Just(63u32)];
    let step = prop_oneof![
        12 => (size, align.clone(), ty(), strategy())
            .prop_map(|(size, align_log, ty, strategy)| Step::Alloc { size, align_log, ty, strategy }),
        8 => any::<usize>().prop_map(Step::Free),
        1 => (log_size((region / 8).max(1)), 0..=6u32, any::<bool>(), strategy()).prop_map(
            |(size, align_log, alternate, strategy)| Step::Fill { size, align_log, alternate, strategy },
        ),
        1 => (2..5usize, any::<usize>()).prop_map(|(n, phase)| Step::Thin(n, phase)),
        1 => Just(Step::Reset),
    ];
    proptest::collection::vec(step, len)
}

/// A suballocator driven next to the model.
struct Run<S> {
    sub: S,
    model: Model,
    g: DeviceAlignment,
    promises: Promises,
    /// Calls made, for messages.
    calls: usize,
}

impl<S: Suballocator + 'static> Run<S> {
    fn new(region: DeviceSize, g: DeviceAlignment, promises: Promises) -> Self {
        let run = Self {
            sub: S::new(region),
            model: Model::default(),
            g,
            promises,
            calls: 0,
        };
        run.check();
        run
    }

    fn layout(&self, size: Size, align_log: u32) -> Option<DeviceLayout> {
        let a = DeviceAlignment::from_log2(align_log)?;
        let size = match size {
            Size::Bytes(b) => b,
            Size::Free(d) => self.sub.free_size().checked_add_signed(d.into())?,
            Size::Max => DeviceLayout::MAX_SIZE - (a.as_devicesize() - 1),
        };
        DeviceLayout::new(size, a).ok()
    }

    fn allocate(
        &mut self,
        layout: DeviceLayout,
        ty: AllocationType,
        strategy: AllocationStrategy,
    ) -> bool {
        self.calls += 1;
        let region = self.sub.region_size();
        let free_before = self.sub.free_size();
        let result = self
            .sub
            .allocate_with_strategy(layout, ty, self.g, strategy);
        let what = format!(
            "call {}: {layout:?} {ty:?} {strategy:?} granularity {} in a region of {region}",
            self.calls,
            self.g.as_devicesize()
        );
        let ok = match result {
            Ok(s) => {
                assert_eq!((s.size, s.allocation_type), (layout.size(), ty), "{what}");
                assert!(
                    layout.alignment().is_aligned(s.offset),
                    "{what}: misaligned {s:?}"
                );
                assert!(
                    s.offset
                        .checked_add(s.size)
                        .is_some_and(|end| end <= region),
                    "{what}: {s:?} leaves the region"
                );
                if let Some(why) = self.model.conflict(s.offset, s.size, ty, self.g) {
                    panic!("{what}: {s:?} {why}");
                }
                self.model.live.insert(s.offset, (s.size, ty, s));
                true
            }
            Err(e) => {
                assert_eq!(
                    self.sub.free_size(),
                    free_before,
                    "{what}: failure freed bytes"
                );
                match e {
                    SuballocatorError::OutOfRegionMemory => assert!(
                        free_before < layout.size(),
                        "{what}: OutOfRegionMemory with {free_before} bytes free"
                    ),
                    SuballocatorError::FragmentedRegion => assert!(
                        free_before >= layout.size(),
                        "{what}: FragmentedRegion with only {free_before} bytes free"
                    ),
                    SuballocatorError::BlockSizeExceeded => {}
                }
                if self.promises.complete && region <= 1 << 16 {
                    let held = testing::fragments(&self.sub);
                    if let Some(o) = self.model.legal_offset(region, layout, ty, self.g, &held) {
                        panic!("{what}: refused with {e:?}, but offset {o} is legal");
                    }
                }
                false
            }
        };
        self.check();
        ok
    }

    fn free(&mut self, index: usize) {
        if self.model.live.is_empty() {
            return;
        }
        let key = *self
            .model
            .live
            .keys()
            .nth(index % self.model.live.len())
            .unwrap();
        let (_, _, s) = self.model.live.remove(&key).unwrap();
        // SAFETY: `s` came from `self.sub`, and the model removed it: freed exactly once.
        #[allow(unsafe_code)]
        unsafe {
            self.sub.deallocate(s)
        };
        self.check();
    }

    fn step(&mut self, step: Step) {
        match step {
            Step::Alloc {
                size,
                align_log,
                ty,
                strategy,
            } => {
                if let Some(layout) = self.layout(size, align_log) {
                    self.allocate(layout, ty, strategy);
                }
            }
            Step::Fill {
                size,
                align_log,
                alternate,
                strategy,
            } => {
                let Some(layout) = self.layout(Size::Bytes(size), align_log) else {
                    return;
                };
                let types = [AllocationType::Linear, AllocationType::NonLinear];
                for i in 0..1024 {
                    let ty = if alternate { types[i % 2] } else { types[0] };
                    if !self.allocate(layout, ty, strategy) {
                        break;
                    }
                }
            }
            Step::Free(i) => self.free(i),
            Step::Thin(n, phase) => {
                let keys: Vec<_> = self.model.live.keys().copied().collect();
                for (i, _) in keys.iter().enumerate().rev() {
                    if (i + phase) % n != 0 {
                        self.free(i);
                    }
                }
            }
            Step::Reset => {
                self.sub.reset();
                self.model.live.clear();
                self.check();
            }
        }
    }

    /// The state checks, after every call.
    fn check(&self) {
        let region = self.sub.region_size();
        assert_eq!(self.sub.allocation_count(), self.model.live.len(), "count");
        let (mut cursor, mut free_sum, mut largest_free) = (0, 0, 0);
        let mut allocated = Vec::new();
        let held = testing::fragments(&self.sub);
        self.sub.for_each_range(&mut |r| {
            assert_eq!(
                r.offset, cursor,
                "for_each_range leaves a gap or overlaps: {r:?}"
            );
            assert!(r.size > 0, "empty range {r:?}");
            cursor += r.size;
            match r.kind {
                RangeKind::Free => {
                    free_sum += r.size;
                    largest_free = largest_free.max(testing::requestable(&r, &held));
                }
                RangeKind::Allocated(t) => allocated.push((r.offset, r.size, t)),
            }
        });
        assert_eq!(cursor, region, "for_each_range does not cover the region");
        assert_eq!(free_sum, self.sub.free_size(), "free ranges vs free_size");
        let live_bytes = self.model.live_bytes();
        assert!(
            self.sub.free_size() <= region - live_bytes,
            "free_size counts live bytes"
        );
        assert!(
            self.sub.largest_free_range() >= largest_free,
            "largest_free_range {} below a free range of {largest_free}",
            self.sub.largest_free_range()
        );
        // Each live range inside an allocated range of its type; each allocated range holds
        // at least one live range.
        for (&o, &(s, t, _)) in &self.model.live {
            // (A range that holds several allocations, or does not track them, may say
            // `Unknown`.)
            let i = allocated.partition_point(|&(ro, rs, _)| ro + rs <= o);
            assert!(
                allocated.get(i).is_some_and(|&(ro, rs, rt)| ro <= o
                    && o + s <= ro + rs
                    && (rt == t || rt == AllocationType::Unknown)),
                "live [{o}, {}) {t:?} is in no allocated range of its type: {allocated:?}",
                o + s
            );
        }
        for &(ro, rs, _) in &allocated {
            assert!(
                self.model.live.range(ro..ro + rs).next().is_some(),
                "allocated range at {ro} of {rs} bytes holds no live allocation"
            );
        }
        if self.promises.exact {
            assert_eq!(
                self.sub.free_size(),
                region - live_bytes,
                "free_size not exact"
            );
            let largest_gap = self.model.largest_gap(region, &held);
            assert!(
                self.sub.largest_free_range() >= largest_gap,
                "largest_free_range {} below the largest gap {largest_gap}",
                self.sub.largest_free_range(),
            );
        }
        if self.model.live.is_empty() {
            assert_eq!(self.sub.free_size(), region, "empty but bytes held");
        }
    }

    /// Frees everything and checks that the whole region serves one request again.
    fn drain(&mut self) {
        while !self.model.live.is_empty() {
            self.free(0);
        }
        let region = self.sub.region_size();
        if region > 0 && self.promises.exact {
            let layout = DeviceLayout::new(region, DeviceAlignment::MIN).unwrap();
            assert!(
                self.allocate(layout, AllocationType::Unknown, AllocationStrategy::Default),
                "the whole region is not reusable"
            );
            self.free(0);
        }
    }
}

fn walk<S: Suballocator + 'static>(
    region: DeviceSize,
    g: DeviceAlignment,
    steps: &[Step],
    promises: Promises,
) {
    let mut run = Run::<S>::new(region, g, promises);
    for &step in steps {
        run.step(step);
    }
    run.drain();
}

const FREE_LIST: Promises = Promises {
    exact: true,
    complete: true,
};
const OTHER: Promises = Promises {
    exact: false,
    complete: false,
};

/// Region sizes: 0, tiny, odd and up to 64 KiB; granularities 1 B to 64 KiB.
fn region_granularity_steps(
    len: std::ops::Range<usize>,
) -> impl Strategy<Value = (DeviceSize, DeviceAlignment, Vec<Step>)> {
    (
        prop_oneof![1 => Just(0u64), 3 => 1..64u64, 4 => log_size(1 << 16)],
        0..=16u32,
    )
        .prop_flat_map(move |(region, g)| {
            (
                Just(region),
                Just(DeviceAlignment::from_log2(g).unwrap()),
                steps(region, len.clone()),
            )
        })
}

/// `S::region_size_for` is the smallest region in which a fresh `S` serves the request.
fn check_region_size_for<S: Suballocator>(
    layout: DeviceLayout,
    ty: AllocationType,
    g: DeviceAlignment,
    exact_minimum_exempt: bool,
) {
    let Some(region) = S::region_size_for(layout, ty, g) else {
        return;
    };
    let mut sub = S::new(region);
    let s = sub.allocate(layout, ty, g).unwrap_or_else(|e| {
        panic!("{layout:?} {ty:?} g {g:?}: a region of {region} refuses it: {e:?}")
    });
    assert!(s.offset + s.size <= sub.region_size());
    // The pool documents a whole group of slots where slots share pages, although the last,
    // short group of a smaller region serves too: an overestimate that costs no request.
    if region > 0 && !exact_minimum_exempt {
        let mut smaller = S::new(region - 1);
        assert!(
            smaller.allocate(layout, ty, g).is_err(),
            "{layout:?} {ty:?} g {g:?}: region_size_for says {region}, but {} serves it",
            region - 1
        );
    }
}

/// The case the differential test found: a buddy region as large as the request (the default
/// `region_size_for`) has only smaller roots when the request is not a power of two, or is
/// aligned or paged beyond its size, so a block sized for it refused it.
#[test]
fn buddy_region_size_for_covers_size_alignment_and_granularity() {
    let g1 = DeviceAlignment::MIN;
    let cases = [
        (3, 1, g1, 4),
        (1, 1, DeviceAlignment::new(2).unwrap(), 2),
        (1, 256, g1, 256),
        (300 << 20, 1, g1, 512 << 20),
        (DeviceLayout::MAX_SIZE, 1, g1, 1 << 63),
    ];
    for (size, align, g, want) in cases {
        let layout = DeviceLayout::from_size_alignment(size, align).unwrap();
        let region = BuddyAllocator::region_size_for(layout, AllocationType::Linear, g);
        assert_eq!(region, Some(want), "{layout:?} g {g:?}");
        check_region_size_for::<BuddyAllocator>(layout, AllocationType::Linear, g, false);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(32)))]

    #[test]
    fn free_list_matches_the_model((region, g, steps) in region_granularity_steps(50..300)) {
        walk::<FreeListAllocator>(region, g, &steps, FREE_LIST);
    }

    #[test]
    fn buddy_matches_the_model((region, g, steps) in region_granularity_steps(50..300)) {
        walk::<BuddyAllocator>(region, g, &steps, OTHER);
    }

    #[test]
    fn bump_matches_the_model((region, g, steps) in region_granularity_steps(50..300)) {
        walk::<BumpAllocator>(region, g, &steps, OTHER);
    }

    #[test]
    fn ring_matches_the_model((region, g, steps) in region_granularity_steps(50..300)) {
        walk::<RingAllocator>(region, g, &steps, OTHER);
    }

    #[test]
    fn slots_match_the_model((region, g, steps) in region_granularity_steps(50..300)) {
        walk::<SlotAllocator<1>>(region, g, &steps, OTHER);
        walk::<SlotAllocator<96>>(region, g, &steps, OTHER);
        walk::<SlotAllocator<256>>(region, g, &steps, OTHER);
        walk::<SlotAllocator<1000>>(region, g, &steps, OTHER);
    }

}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(256)))]

    #[test]
    fn region_size_for_is_the_smallest_region_that_serves(
        size in log_size(1 << 20),
        align_log in 0..=20u32,
        ty in ty(),
        g in 0..=16u32,
    ) {
        let g = DeviceAlignment::from_log2(g).unwrap();
        let Ok(layout) = DeviceLayout::new(size, DeviceAlignment::from_log2(align_log).unwrap()) else {
            return Ok(());
        };
        check_region_size_for::<FreeListAllocator>(layout, ty, g, false);
        check_region_size_for::<BuddyAllocator>(layout, ty, g, false);
        check_region_size_for::<BumpAllocator>(layout, ty, g, false);
        check_region_size_for::<RingAllocator>(layout, ty, g, false);
        check_region_size_for::<SlotAllocator<96>>(layout, ty, g, true);
        check_region_size_for::<SlotAllocator<256>>(layout, ty, g, true);
        check_region_size_for::<SlotAllocator<1000>>(layout, ty, g, true);
    }
}
