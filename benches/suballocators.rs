//! Suballocator benchmarks: the five suballocators of this crate and, as a baseline, the
//! `offset-allocator` crate (a port of Sebastian Aaltonen's TLSF-like OffsetAllocator).
//!
//! Every contender runs the same pre-generated request sequences (fixed seeds, SplitMix64):
//!
//! - `churn`: a 16 GiB region holding 10,000 live allocations of log-uniform sizes 256 B to
//!   1 MiB with alignments 16 B to 4 KiB; each measured iteration frees a random live
//!   allocation and allocates a new one, so the reported time is per allocate + free pair.
//!   100,000 such steps run before measuring so that fragmentation is at steady state.
//! - `burst`: 100,000 allocations of 64 B to 64 KiB (log-uniform, alignments 16 B to 256 B)
//!   in an 8 GiB region, then all freed in random order; the time is per burst.
//! - `frame`: 500 transient allocations of 256 B to 64 KiB (alignment 256 B) in a 64 MiB
//!   region, freed together at the end of the frame; the time is per frame.
//! - `staging`: a staging ring with two frames in flight. Each frame makes 300 uploads of
//!   256 B to 256 KiB (log-uniform, alignments 16 B to 256 B, about 11 MiB per frame), and the
//!   uploads of frame N are freed, oldest first, when frame N + 2 starts (the GPU is done with
//!   them); the time is per frame (300 frees and 300 allocations). 64 MiB of memory in all.
//!   64 frames of requests are pre-generated and replayed in a loop.
//!
//! Granularity is 1 and every request is `Linear`, except in `churn/free_list_g1024_mixed`,
//! where the granularity is 1 KiB and requests are randomly `Linear` or `NonLinear`.
//!
//! Per-contender parameters:
//! - `SlotAllocator` serves one fixed slot per allocation: 1 MiB slots for `churn` (its
//!   largest request), 64 KiB slots for `burst` and `frame`.
//! - `BuddyAllocator` rounds sizes up to powers of two; the regions are large enough for it.
//! - `BumpAllocator` is not in `churn`: it never reuses memory before everything is freed, so
//!   a steady churn would only measure failing allocations. In `frame` it is `reset` instead of
//!   freeing each allocation. In `staging` a single bump region would never empty (a frame is
//!   always in flight), so it gets one region of 32 MiB per frame in flight, frame N using
//!   region N mod 2: the region empties (and rewinds) as the frame that used it two frames ago
//!   is freed, one allocation at a time like the others.
//! - `RingAllocator` is only in `staging`, its use case, with one 64 MiB region, as is
//!   `FreeListAllocator`, for comparison.
//! - `offset_allocator::Allocator` counts in `u32` units and knows no alignment: sizes are
//!   rounded up to 256-byte units in `churn` and `frame` and to 64-byte units in `burst`
//!   (so its regions fit in `u32` units), and the alignment of each request is ignored. It
//!   thus does strictly less work than the suballocators of this crate.
//!
//! Failed allocations are counted and printed on stderr; with these parameters there should
//! be none.

// `criterion_group!` generates an undocumented public function.
#![allow(missing_docs)]

use ash_memory::{
    AllocationType, BuddyAllocator, BumpAllocator, DeviceAlignment, DeviceLayout,
    FreeListAllocator, RingAllocator, SlotAllocator, Suballocation, Suballocator,
};
use criterion::{
    criterion_group, criterion_main, measurement::WallTime, BenchmarkGroup, Criterion, Throughput,
};
use std::time::Duration;

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

/// SplitMix64: a tiny, good-enough generator for reproducible request sequences.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// Log-uniform in `[lo, hi)`; both must be powers of two.
    fn log_uniform(&mut self, lo: u64, hi: u64) -> u64 {
        let log = lo.ilog2() + self.below(u64::from(hi.ilog2() - lo.ilog2())) as u32;
        (1 << log) + self.below(1 << log)
    }

    /// A power of two in `[lo, hi]`, uniform in the exponent.
    fn alignment(&mut self, lo: u64, hi: u64) -> DeviceAlignment {
        let log = lo.ilog2() + self.below(u64::from(hi.ilog2() - lo.ilog2() + 1)) as u32;
        DeviceAlignment::from_log2(log).unwrap()
    }
}

#[derive(Clone, Copy)]
struct Request {
    layout: DeviceLayout,
    ty: AllocationType,
}

/// Something that hands out ranges.
trait Target {
    type Handle: Copy;
    fn allocate(&mut self, request: &Request) -> Option<Self::Handle>;
    fn free(&mut self, handle: Self::Handle);
    fn reset(&mut self);
    /// Called before each frame's allocations, in workloads made of frames.
    fn begin_frame(&mut self, _frame: usize) {}
}

/// A suballocator of this crate, with the granularity to pass it.
struct Sub<S> {
    sub: S,
    granularity: DeviceAlignment,
}

impl<S: Suballocator> Sub<S> {
    fn new(region: u64, granularity: u64) -> Self {
        Self {
            sub: S::new(region),
            granularity: DeviceAlignment::new(granularity).unwrap(),
        }
    }
}

impl<S: Suballocator> Target for Sub<S> {
    type Handle = Suballocation;

    #[inline]
    fn allocate(&mut self, request: &Request) -> Option<Suballocation> {
        self.sub
            .allocate(request.layout, request.ty, self.granularity)
            .ok()
    }

    #[inline]
    fn free(&mut self, handle: Suballocation) {
        // SAFETY: every handle comes from `allocate` on this suballocator, and the benchmarks
        // free each one exactly once (they `take` it out of its slot) and never after `reset`.
        unsafe { self.sub.deallocate(handle) }
    }

    fn reset(&mut self) {
        self.sub.reset();
    }
}

/// The `offset-allocator` baseline, in units of `1 << unit_log2` bytes, without alignment.
struct Offset {
    allocator: offset_allocator::Allocator,
    unit_log2: u32,
}

impl Offset {
    fn new(region: u64, unit: u64, max_allocs: u32) -> Self {
        let unit_log2 = unit.ilog2();
        let units = u32::try_from(region >> unit_log2).expect("region too large for u32 units");
        Self {
            allocator: offset_allocator::Allocator::with_max_allocs(units, max_allocs),
            unit_log2,
        }
    }
}

impl Target for Offset {
    type Handle = offset_allocator::Allocation;

    #[inline]
    fn allocate(&mut self, request: &Request) -> Option<Self::Handle> {
        let size = request.layout.size();
        let units = (size + (1 << self.unit_log2) - 1) >> self.unit_log2;
        self.allocator.allocate(units as u32)
    }

    #[inline]
    fn free(&mut self, handle: Self::Handle) {
        self.allocator.free(handle);
    }

    fn reset(&mut self) {
        self.allocator.reset();
    }
}

/// Live handles by slot; `None` for a freed slot or a failed allocation.
type Slots<T> = Vec<Option<<T as Target>::Handle>>;

fn report_failures(name: &str, failures: u64) {
    if failures > 0 {
        eprintln!("{name}: {failures} allocations failed");
    }
}

// ---------------------------------------------------------------------------------------------
// churn

const CHURN_REGION: u64 = 16 * GIB;
const CHURN_LIVE: usize = 10_000;
const CHURN_STEPS: usize = 1 << 17;
const CHURN_PREHEAT: usize = 100_000;

struct ChurnSeq {
    initial: Vec<Request>,
    /// (index of the live allocation to free, request to allocate in its place)
    steps: Vec<(usize, Request)>,
}

impl ChurnSeq {
    fn new(mixed_types: bool) -> Self {
        let mut rng = Rng(0x5eed_c4a2);
        let mut types = Rng(0x7e5);
        let mut request = |rng: &mut Rng| {
            let size = rng.log_uniform(256, MIB);
            let alignment = rng.alignment(16, 4 * KIB);
            let ty = if mixed_types && types.below(2) == 0 {
                AllocationType::NonLinear
            } else {
                AllocationType::Linear
            };
            Request {
                layout: DeviceLayout::new(size, alignment).unwrap(),
                ty,
            }
        };
        let initial = (0..CHURN_LIVE).map(|_| request(&mut rng)).collect();
        let steps = (0..CHURN_STEPS)
            .map(|_| {
                let victim = rng.below(CHURN_LIVE as u64) as usize;
                (victim, request(&mut rng))
            })
            .collect();
        Self { initial, steps }
    }
}

struct ChurnState<T: Target> {
    target: T,
    live: Slots<T>,
    step: usize,
    failures: u64,
}

impl<T: Target> ChurnState<T> {
    #[inline]
    fn step(&mut self, seq: &ChurnSeq) {
        let (victim, ref request) = seq.steps[self.step % CHURN_STEPS];
        self.step += 1;
        if let Some(handle) = self.live[victim].take() {
            self.target.free(handle);
        }
        self.live[victim] = self.target.allocate(request);
        self.failures += u64::from(self.live[victim].is_none());
    }
}

fn churn<T: Target>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    seq: &ChurnSeq,
    make: impl Fn() -> T,
) {
    // Built on first use, so that a filtered-out contender never runs, and kept across samples
    // so that the region stays at its steady state.
    let mut state: Option<ChurnState<T>> = None;
    group.bench_function(name, |b| {
        let state = state.get_or_insert_with(|| {
            let mut target = make();
            let live: Vec<_> = seq.initial.iter().map(|r| target.allocate(r)).collect();
            let failures = live.iter().filter(|h| h.is_none()).count() as u64;
            let mut state = ChurnState {
                target,
                live,
                step: 0,
                failures,
            };
            for _ in 0..CHURN_PREHEAT {
                state.step(seq);
            }
            state
        });
        b.iter(|| state.step(seq));
    });
    if let Some(state) = state {
        report_failures(name, state.failures);
    }
}

fn bench_churn(c: &mut Criterion) {
    let seq = ChurnSeq::new(false);
    let mut group = c.benchmark_group("churn");
    churn(&mut group, "free_list", &seq, || {
        Sub::<FreeListAllocator>::new(CHURN_REGION, 1)
    });
    churn(&mut group, "buddy", &seq, || {
        Sub::<BuddyAllocator>::new(CHURN_REGION, 1)
    });
    churn(&mut group, "pool_1MiB", &seq, || {
        Sub::<SlotAllocator<MIB>>::new(CHURN_REGION, 1)
    });
    churn(&mut group, "offset_allocator", &seq, || {
        Offset::new(CHURN_REGION, 256, 128 * 1024)
    });
    let mixed = ChurnSeq::new(true);
    churn(&mut group, "free_list_g1024_mixed", &mixed, || {
        Sub::<FreeListAllocator>::new(CHURN_REGION, 1024)
    });
    group.finish();
}

// ---------------------------------------------------------------------------------------------
// burst

const BURST_REGION: u64 = 8 * GIB;
const BURST_COUNT: usize = 100_000;

struct BurstSeq {
    requests: Vec<Request>,
    free_order: Vec<usize>,
}

impl BurstSeq {
    fn new() -> Self {
        let mut rng = Rng(0xb0b57);
        let requests = (0..BURST_COUNT)
            .map(|_| Request {
                layout: DeviceLayout::new(rng.log_uniform(64, 64 * KIB), rng.alignment(16, 256))
                    .unwrap(),
                ty: AllocationType::Linear,
            })
            .collect();
        // Fisher-Yates shuffle of the free order.
        let mut free_order: Vec<usize> = (0..BURST_COUNT).collect();
        for i in (1..BURST_COUNT).rev() {
            free_order.swap(i, rng.below(i as u64 + 1) as usize);
        }
        Self {
            requests,
            free_order,
        }
    }
}

fn burst<T: Target>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    seq: &BurstSeq,
    make: impl Fn() -> T,
) {
    // (target, handles, failures)
    let mut state: Option<(T, Slots<T>, u64)> = None;
    group.bench_function(name, |b| {
        let (target, handles, failures) =
            state.get_or_insert_with(|| (make(), Vec::with_capacity(BURST_COUNT), 0));
        b.iter(|| {
            handles.extend(seq.requests.iter().map(|r| target.allocate(r)));
            for &i in &seq.free_order {
                match handles[i].take() {
                    Some(handle) => target.free(handle),
                    None => *failures += 1,
                }
            }
            handles.clear();
        });
    });
    if let Some((_, _, failures)) = state {
        report_failures(name, failures);
    }
}

fn bench_burst(c: &mut Criterion) {
    let seq = BurstSeq::new();
    let mut group = c.benchmark_group("burst");
    group.sample_size(10);
    group.throughput(Throughput::Elements(BURST_COUNT as u64));
    burst(&mut group, "free_list", &seq, || {
        Sub::<FreeListAllocator>::new(BURST_REGION, 1)
    });
    burst(&mut group, "buddy", &seq, || {
        Sub::<BuddyAllocator>::new(BURST_REGION, 1)
    });
    burst(&mut group, "pool_64KiB", &seq, || {
        Sub::<SlotAllocator<{ 64 * KIB }>>::new(BURST_REGION, 1)
    });
    burst(&mut group, "bump", &seq, || {
        Sub::<BumpAllocator>::new(BURST_REGION, 1)
    });
    burst(&mut group, "offset_allocator", &seq, || {
        Offset::new(BURST_REGION, 64, 256 * 1024)
    });
    group.finish();
}

// ---------------------------------------------------------------------------------------------
// frame

const FRAME_REGION: u64 = 64 * MIB;
const FRAME_ALLOCATIONS: usize = 500;
const FRAMES: usize = 64;

fn frame_requests() -> Vec<Request> {
    let mut rng = Rng(0xf4a3e);
    let alignment = DeviceAlignment::new(256).unwrap();
    (0..FRAME_ALLOCATIONS * FRAMES)
        .map(|_| Request {
            layout: DeviceLayout::new(rng.log_uniform(256, 64 * KIB), alignment).unwrap(),
            ty: AllocationType::Linear,
        })
        .collect()
}

fn frame<T: Target>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    requests: &[Request],
    use_reset: bool,
    make: impl Fn() -> T,
) {
    // (target, handles, frame number, failures)
    let mut state: Option<(T, Slots<T>, usize, u64)> = None;
    group.bench_function(name, |b| {
        let (target, handles, frame, failures) =
            state.get_or_insert_with(|| (make(), Vec::with_capacity(FRAME_ALLOCATIONS), 0, 0));
        b.iter(|| {
            let start = (*frame % FRAMES) * FRAME_ALLOCATIONS;
            *frame += 1;
            for request in &requests[start..start + FRAME_ALLOCATIONS] {
                let handle = target.allocate(request);
                *failures += u64::from(handle.is_none());
                handles.push(handle);
            }
            if use_reset {
                target.reset();
                handles.clear();
            } else {
                for handle in handles.drain(..).flatten() {
                    target.free(handle);
                }
            }
        });
    });
    if let Some((_, _, _, failures)) = state {
        report_failures(name, failures);
    }
}

fn bench_frame(c: &mut Criterion) {
    let requests = frame_requests();
    let mut group = c.benchmark_group("frame");
    group.throughput(Throughput::Elements(FRAME_ALLOCATIONS as u64));
    frame(&mut group, "free_list", &requests, false, || {
        Sub::<FreeListAllocator>::new(FRAME_REGION, 1)
    });
    frame(&mut group, "buddy", &requests, false, || {
        Sub::<BuddyAllocator>::new(FRAME_REGION, 1)
    });
    frame(&mut group, "pool_64KiB", &requests, false, || {
        Sub::<SlotAllocator<{ 64 * KIB }>>::new(FRAME_REGION, 1)
    });
    frame(&mut group, "bump_reset", &requests, true, || {
        Sub::<BumpAllocator>::new(FRAME_REGION, 1)
    });
    frame(&mut group, "offset_allocator", &requests, false, || {
        Offset::new(FRAME_REGION, 256, 4 * 1024)
    });
    group.finish();
}

// ---------------------------------------------------------------------------------------------
// staging

const STAGING_REGION: u64 = 64 * MIB;
const STAGING_UPLOADS: usize = 300;
const STAGING_FRAMES: usize = 64;
/// Frames whose uploads are live at once: those of frame N are freed when N + 2 starts.
const FRAMES_IN_FLIGHT: usize = 2;

fn staging_requests() -> Vec<Request> {
    let mut rng = Rng(0x0057_a61e);
    (0..STAGING_UPLOADS * STAGING_FRAMES)
        .map(|_| Request {
            layout: DeviceLayout::new(rng.log_uniform(256, 256 * KIB), rng.alignment(16, 256))
                .unwrap(),
            ty: AllocationType::Linear,
        })
        .collect()
}

/// One bump region per frame in flight; frame N allocates from region N mod 2.
struct BumpPerFrame {
    regions: [Sub<BumpAllocator>; FRAMES_IN_FLIGHT],
    current: usize,
}

impl BumpPerFrame {
    fn new(region: u64) -> Self {
        Self {
            regions: std::array::from_fn(|_| Sub::new(region / FRAMES_IN_FLIGHT as u64, 1)),
            current: 0,
        }
    }
}

impl Target for BumpPerFrame {
    type Handle = (usize, Suballocation);

    #[inline]
    fn allocate(&mut self, request: &Request) -> Option<Self::Handle> {
        let region = self.current;
        Some((region, self.regions[region].allocate(request)?))
    }

    #[inline]
    fn free(&mut self, (region, handle): Self::Handle) {
        self.regions[region].free(handle);
    }

    fn reset(&mut self) {
        self.regions.iter_mut().for_each(Target::reset);
    }

    fn begin_frame(&mut self, frame: usize) {
        self.current = frame % FRAMES_IN_FLIGHT;
    }
}

fn staging<T: Target>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    requests: &[Request],
    make: impl Fn() -> T,
) {
    // (target, handles of the frames in flight, frame number, failures)
    let mut state: Option<(T, [Slots<T>; FRAMES_IN_FLIGHT], usize, u64)> = None;
    group.bench_function(name, |b| {
        let (target, in_flight, frame, failures) = state.get_or_insert_with(|| {
            let slots = std::array::from_fn(|_| Vec::with_capacity(STAGING_UPLOADS));
            (make(), slots, 0, 0)
        });
        b.iter(|| {
            // Frame N - 2 is done on the GPU: free its uploads, oldest first.
            let handles = &mut in_flight[*frame % FRAMES_IN_FLIGHT];
            for handle in handles.drain(..).flatten() {
                target.free(handle);
            }
            target.begin_frame(*frame);
            let start = (*frame % STAGING_FRAMES) * STAGING_UPLOADS;
            *frame += 1;
            for request in &requests[start..start + STAGING_UPLOADS] {
                let handle = target.allocate(request);
                *failures += u64::from(handle.is_none());
                handles.push(handle);
            }
        });
    });
    if let Some((_, _, _, failures)) = state {
        report_failures(name, failures);
    }
}

fn bench_staging(c: &mut Criterion) {
    let requests = staging_requests();
    let mut group = c.benchmark_group("staging");
    group.throughput(Throughput::Elements(STAGING_UPLOADS as u64));
    staging(&mut group, "ring", &requests, || {
        Sub::<RingAllocator>::new(STAGING_REGION, 1)
    });
    staging(&mut group, "bump_per_frame", &requests, || {
        BumpPerFrame::new(STAGING_REGION)
    });
    staging(&mut group, "free_list", &requests, || {
        Sub::<FreeListAllocator>::new(STAGING_REGION, 1)
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = bench_churn, bench_burst, bench_frame, bench_staging
}
criterion_main!(benches);
