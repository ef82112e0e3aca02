use super::*;
use crate::suballocator::testing::{self, Checker, Op};
use proptest::prelude::*;
use AllocationType::{Linear, NonLinear, Unknown};

const G1: DeviceAlignment = DeviceAlignment::MIN;

fn a(value: DeviceSize) -> DeviceAlignment {
    DeviceAlignment::new(value).unwrap()
}

fn layout(size: DeviceSize, alignment: DeviceSize) -> DeviceLayout {
    DeviceLayout::from_size_alignment(size, alignment).unwrap()
}

fn alloc(
    c: &mut Checker<RingAllocator>,
    size: DeviceSize,
    alignment: DeviceSize,
    ty: AllocationType,
) -> Result<DeviceSize, SuballocatorError> {
    let result = c.allocate(layout(size, alignment), ty).map(|s| s.offset);
    check_internal(&c.sub);
    result
}

/// Frees the `n`-th oldest live allocation (0: the oldest), whatever its offset.
fn free_nth_oldest(c: &mut Checker<RingAllocator>, n: usize) {
    // The checker frees by offset order; find the offset order index of the entry.
    let live: Vec<_> = c.sub.entries.iter().filter(|e| e.live).copied().collect();
    let offset = live[n].offset;
    let mut offsets: Vec<_> = live.iter().map(|e| e.offset).collect();
    offsets.sort_unstable();
    c.free(offsets.iter().position(|&o| o == offset).unwrap());
    check_internal(&c.sub);
}

fn ranges(sub: &RingAllocator) -> Vec<(DeviceSize, DeviceSize, Option<AllocationType>)> {
    let mut out = Vec::new();
    sub.for_each_range(&mut |r| {
        let ty = match r.kind {
            RangeKind::Free => None,
            RangeKind::Allocated(ty) => Some(ty),
        };
        out.push((r.offset, r.offset + r.size, ty));
    });
    out
}

/// The ring's own invariants: held ranges chain from the tail to the head, wrapping at most
/// once; the oldest is live; the counts agree.
fn check_internal(sub: &RingAllocator) {
    let live = sub.entries.iter().filter(|e| e.live).count();
    assert_eq!(live, sub.allocation_count);
    let (Some(front), Some(back)) = (sub.entries.front(), sub.entries.back()) else {
        assert_eq!(sub.head, 0);
        return;
    };
    assert!(front.live, "the tail stopped at a freed allocation");
    assert!(back.offset < sub.head && sub.head <= back.end);
    let mut wraps = 0;
    for (e, next) in sub.entries.iter().zip(sub.entries.iter().skip(1)) {
        assert!(e.start <= e.offset && e.offset < e.end);
        if next.start != e.end {
            assert_eq!(
                (e.end, next.start),
                (sub.region_size, 0),
                "held ranges not chained"
            );
            wraps += 1;
        }
    }
    assert!(wraps <= 1);
    assert_eq!(wraps == 1, sub.wrapped());
}

#[test]
fn entries_are_32_bytes() {
    assert_eq!(std::mem::size_of::<Entry>(), 32);
}

#[test]
fn allocations_follow_each_other_and_wrap_around() {
    let mut c = Checker::new(RingAllocator::new(100), G1);
    assert_eq!(alloc(&mut c, 40, 1, Linear), Ok(0));
    assert_eq!(alloc(&mut c, 40, 1, Linear), Ok(40));
    free_nth_oldest(&mut c, 0);
    assert_eq!(c.sub.free_size(), 60);
    assert_eq!(c.sub.largest_free_range(), 40);
    // 30 bytes do not fit before the end (20 left), but do before the tail at 40.
    assert_eq!(alloc(&mut c, 30, 1, Linear), Ok(0));
    // The 20 bytes skipped at the end are held with the allocation before them.
    assert_eq!(c.sub.free_size(), 10);
    assert_eq!(c.sub.largest_free_range(), 10);
    assert_eq!(
        ranges(&c.sub),
        [
            (0, 30, Some(Linear)),
            (30, 40, None),
            (40, 100, Some(Linear))
        ]
    );
    // Once the tail passes the wrap point, the end of the region is free again.
    free_nth_oldest(&mut c, 0);
    assert_eq!(c.sub.free_size(), 70);
    assert_eq!(ranges(&c.sub), [(0, 30, Some(Linear)), (30, 100, None)]);
    assert_eq!(alloc(&mut c, 70, 1, Linear), Ok(30));
    assert_eq!(c.sub.free_size(), 0);
    c.free_all_and_reuse(100);
}

#[test]
fn fifo_frees_cycle_through_the_region() {
    // Three allocations in flight, each a tenth of the region: the ring never fails and the
    // offsets go round and round.
    let mut c = Checker::new(RingAllocator::new(1000), G1);
    for i in 0..100u64 {
        if c.live_count() == 3 {
            free_nth_oldest(&mut c, 0);
        }
        assert_eq!(alloc(&mut c, 100, 1, Linear), Ok(i % 10 * 100));
        assert_eq!(c.sub.free_size(), 1000 - 100 * c.live_count() as u64);
    }
    // Sizes that do not divide the region leave a gap at the end on each lap.
    let mut c = Checker::new(RingAllocator::new(1000), G1);
    let mut offsets = Vec::new();
    for _ in 0..8 {
        if c.live_count() == 2 {
            free_nth_oldest(&mut c, 0);
        }
        offsets.push(alloc(&mut c, 300, 1, Linear).unwrap());
    }
    assert_eq!(offsets, [0, 300, 600, 0, 300, 600, 0, 300]);
}

#[test]
fn out_of_order_frees_wait_for_the_tail() {
    let mut c = Checker::new(RingAllocator::new(100), G1);
    for expected in [0, 30, 60] {
        assert_eq!(alloc(&mut c, 30, 1, NonLinear), Ok(expected));
    }
    free_nth_oldest(&mut c, 1);
    // The middle one is freed but still held: reported as the padding of the one before.
    assert_eq!(c.sub.allocation_count(), 2);
    assert_eq!(c.sub.free_size(), 10);
    assert_eq!(
        ranges(&c.sub),
        [
            (0, 60, Some(NonLinear)),
            (60, 90, Some(NonLinear)),
            (90, 100, None)
        ]
    );
    assert_eq!(
        alloc(&mut c, 20, 1, NonLinear),
        Err(SuballocatorError::OutOfRegionMemory)
    );
    // Freeing the oldest moves the tail past both.
    free_nth_oldest(&mut c, 0);
    assert_eq!(c.sub.free_size(), 70);
    assert_eq!(c.sub.entries.len(), 1);
    assert_eq!(alloc(&mut c, 50, 1, NonLinear), Ok(0));
    assert_eq!(c.sub.free_size(), 10);
    // Freeing the newest (out of order) moves the head back: the 10 bytes the oldest skipped
    // at the end stay held with it. Then freeing the oldest empties the ring.
    free_nth_oldest(&mut c, 1);
    assert_eq!(c.sub.free_size(), 60);
    assert_eq!(ranges(&c.sub), [(0, 60, None), (60, 100, Some(NonLinear))]);
    free_nth_oldest(&mut c, 0);
    assert_eq!(c.sub.free_size(), 100);
    assert_eq!(ranges(&c.sub), [(0, 100, None)]);
    assert_eq!(alloc(&mut c, 100, 1, Unknown), Ok(0));
}

#[test]
fn freed_held_ranges_are_reported_with_a_live_neighbour() {
    let mut c = Checker::new(RingAllocator::new(100), G1);
    for (size, expected) in [(30, 0), (30, 30), (35, 60)] {
        assert_eq!(alloc(&mut c, size, 1, Linear), Ok(expected));
    }
    free_nth_oldest(&mut c, 0);
    // Wrapped: A [30, 60), B [60, 100) (with the 5 bytes skipped), then C, D, E after 0.
    for expected in [0, 10, 20] {
        assert_eq!(alloc(&mut c, 10, 1, NonLinear), Ok(expected));
    }
    // The first two after the wrap point are freed: held by E, the first live one after.
    free_nth_oldest(&mut c, 2);
    free_nth_oldest(&mut c, 2);
    // B, freed, is held by A, the live one before it.
    free_nth_oldest(&mut c, 1);
    assert_eq!(c.sub.allocation_count(), 2);
    assert_eq!(
        ranges(&c.sub),
        [(0, 30, Some(NonLinear)), (30, 100, Some(Linear))]
    );
    // Freeing E, the newest, moves the head back over every freed one to A's end.
    free_nth_oldest(&mut c, 1);
    assert_eq!(c.sub.allocation_count(), 1);
    assert_eq!(c.sub.free_size(), 70);
    assert_eq!(
        ranges(&c.sub),
        [(0, 30, None), (30, 60, Some(Linear)), (60, 100, None)]
    );
    assert_eq!(alloc(&mut c, 40, 1, Unknown), Ok(60));
    free_nth_oldest(&mut c, 0);
    assert_eq!(ranges(&c.sub), [(0, 60, None), (60, 100, Some(Unknown))]);
    free_nth_oldest(&mut c, 0);
    assert_eq!(ranges(&c.sub), [(0, 100, None)]);
}

#[test]
fn alignment_padding_is_held() {
    let mut c = Checker::new(RingAllocator::new(1000), G1);
    assert_eq!(alloc(&mut c, 10, 1, Linear), Ok(0));
    assert_eq!(alloc(&mut c, 1, 64, Linear), Ok(64));
    // The padding [10, 64) belongs to the second allocation's held range.
    assert_eq!(c.sub.free_size(), 1000 - 65);
    assert_eq!(
        ranges(&c.sub),
        [
            (0, 10, Some(Linear)),
            (10, 65, Some(Linear)),
            (65, 1000, None)
        ]
    );
    free_nth_oldest(&mut c, 0);
    assert_eq!(c.sub.free_size(), 1000 - 55);
    // Offset 0 is aligned to anything, but the wrap is only taken when the head is full.
    assert_eq!(alloc(&mut c, 8, 512, Linear), Ok(512));
    assert_eq!(c.sub.free_size(), 1000 - (520 - 10));
    // 480 bytes are free after the head and 10 before the tail: enough bytes, no range.
    assert_eq!(
        alloc(&mut c, 481, 1, Linear),
        Err(SuballocatorError::FragmentedRegion)
    );
    assert_eq!(alloc(&mut c, 480, 1, Linear), Ok(520));
    assert_eq!(alloc(&mut c, 10, 1, Linear), Ok(0));
    assert_eq!(c.sub.free_size(), 0);
}

#[test]
fn granularity_against_the_newest_allocation() {
    let mut c = Checker::new(RingAllocator::new(1024), a(64));
    assert_eq!(alloc(&mut c, 10, 1, Linear), Ok(0));
    assert_eq!(alloc(&mut c, 10, 1, Linear), Ok(10));
    assert_eq!(alloc(&mut c, 10, 1, NonLinear), Ok(64));
    assert_eq!(alloc(&mut c, 10, 1, NonLinear), Ok(74));
    assert_eq!(alloc(&mut c, 10, 1, Unknown), Ok(128));
    assert_eq!(alloc(&mut c, 10, 1, Unknown), Ok(192));
    // A newest range ending on a page boundary leaves the next page untouched.
    assert_eq!(alloc(&mut c, 64, 1, Unknown), Ok(256));
    assert_eq!(alloc(&mut c, 1, 1, Linear), Ok(320));
    // Alignment first, then the page check on the aligned start.
    assert_eq!(alloc(&mut c, 1, 32, NonLinear), Ok(384));
    // The skipped page counts as padding held by the allocation.
    assert_eq!(c.sub.free_size(), 1024 - 385);
    // A freed newest allocation gives its bytes back: the head moves back to the linear one
    // before it, next to which a linear one needs no new page.
    free_nth_oldest(&mut c, 8);
    assert_eq!(c.sub.free_size(), 1024 - 321);
    assert_eq!(alloc(&mut c, 1, 1, Linear), Ok(321));
}

#[test]
fn a_wrapped_head_on_a_page_boundary_shares_no_page_with_the_newest() {
    // Wrapped, the newest (linear) allocation ends at 64, on a page boundary: its last byte is
    // on page 0, so a non-linear range may start right at 64.
    let mut c = Checker::new(RingAllocator::new(512), a(64));
    assert_eq!(alloc(&mut c, 200, 1, Linear), Ok(0));
    assert_eq!(alloc(&mut c, 300, 1, Linear), Ok(200));
    free_nth_oldest(&mut c, 0);
    assert_eq!(alloc(&mut c, 64, 1, Linear), Ok(0), "wrapped to the front");
    assert_eq!(alloc(&mut c, 10, 1, NonLinear), Ok(64));
}

#[test]
fn granularity_at_the_wrap_point_and_against_the_tail() {
    let g = a(64);
    let mut c = Checker::new(RingAllocator::new(256), g);
    assert_eq!(alloc(&mut c, 100, 1, Linear), Ok(0));
    assert_eq!(alloc(&mut c, 100, 1, Linear), Ok(100));
    free_nth_oldest(&mut c, 0);
    // The oldest live allocation starts at 100, on the page [64, 128). A non-linear range at
    // 0 must end before that page.
    assert_eq!(c.sub.free_size(), 156);
    assert_eq!(
        alloc(&mut c, 65, 1, NonLinear),
        Err(SuballocatorError::FragmentedRegion)
    );
    // A linear one may share the page.
    assert_eq!(alloc(&mut c, 70, 1, Linear), Ok(0));
    free_nth_oldest(&mut c, 1);
    free_nth_oldest(&mut c, 0);

    let mut c = Checker::new(RingAllocator::new(256), g);
    assert_eq!(alloc(&mut c, 100, 1, Linear), Ok(0));
    assert_eq!(alloc(&mut c, 100, 1, Linear), Ok(100));
    free_nth_oldest(&mut c, 0);
    assert_eq!(alloc(&mut c, 64, 1, NonLinear), Ok(0));
    // Wrapped: the head at 64 is between the newest (non-linear, page 0) and the oldest
    // (linear, page 1). A linear range fits on page 1; a non-linear one would need page 2,
    // past the tail.
    assert_eq!(
        alloc(&mut c, 10, 1, NonLinear),
        Err(SuballocatorError::FragmentedRegion)
    );
    assert_eq!(alloc(&mut c, 10, 1, Linear), Ok(64));
    assert_eq!(
        ranges(&c.sub),
        [
            (0, 64, Some(NonLinear)),
            (64, 74, Some(Linear)),
            (74, 100, None),
            (100, 256, Some(Linear))
        ]
    );
    assert_eq!(c.sub.free_size(), 26);
}

#[test]
fn the_tail_check_uses_the_allocation_not_its_padding() {
    let g = a(64);
    let mut c = Checker::new(RingAllocator::new(512), g);
    assert_eq!(alloc(&mut c, 100, 1, Linear), Ok(0));
    // Held from 100, but the allocation starts at 128, on page 2.
    assert_eq!(alloc(&mut c, 100, 128, Linear), Ok(128));
    assert_eq!(alloc(&mut c, 250, 1, Linear), Ok(228));
    free_nth_oldest(&mut c, 0);
    // [0, 100) ends on page 1: no conflict with the oldest live allocation on page 2.
    assert_eq!(alloc(&mut c, 100, 1, NonLinear), Ok(0));
    assert_eq!(c.sub.free_size(), 512 - 100 - (478 - 100) - 34);
}

#[test]
fn reset_rewinds_everything() {
    let g = a(16);
    let mut c = Checker::new(RingAllocator::new(64), g);
    alloc(&mut c, 30, 1, Linear).unwrap();
    alloc(&mut c, 20, 1, NonLinear).unwrap();
    free_nth_oldest(&mut c, 0);
    alloc(&mut c, 10, 1, NonLinear).unwrap();
    let mut sub = c.sub;
    sub.reset();
    check_internal(&sub);
    assert_eq!((sub.allocation_count(), sub.free_size()), (0, 64));
    assert_eq!(sub.largest_free_range(), 64);
    assert_eq!(ranges(&sub), [(0, 64, None)]);
    let mut c = Checker::new(sub, g);
    assert_eq!(alloc(&mut c, 7, 1, Linear), Ok(0));
    assert_eq!(alloc(&mut c, 57, 1, Linear), Ok(7));
}

#[test]
fn error_kinds_and_tiny_regions() {
    let mut c = Checker::new(RingAllocator::new(0), G1);
    assert!(ranges(&c.sub).is_empty());
    assert_eq!(c.sub.largest_free_range(), 0);
    assert_eq!(
        alloc(&mut c, 1, 1, Linear),
        Err(SuballocatorError::OutOfRegionMemory)
    );
    let mut c = Checker::new(RingAllocator::new(1), G1);
    assert_eq!(alloc(&mut c, 1, 1, Linear), Ok(0));
    assert_eq!(c.sub.largest_free_range(), 0);
    assert_eq!(
        alloc(&mut c, 1, 1, Linear),
        Err(SuballocatorError::OutOfRegionMemory)
    );
    c.free_all_and_reuse(1);
    let mut c = Checker::new(RingAllocator::new(101), G1);
    assert_eq!(alloc(&mut c, 1, 1, Linear), Ok(0));
    // 100 bytes are free after the head, but alignment skips one of them.
    assert_eq!(
        alloc(&mut c, 100, 2, Linear),
        Err(SuballocatorError::FragmentedRegion)
    );
    assert_eq!(
        alloc(&mut c, 101, 1, Linear),
        Err(SuballocatorError::OutOfRegionMemory)
    );
    // Or a page boundary does.
    let mut c = Checker::new(RingAllocator::new(11), a(4));
    assert_eq!(alloc(&mut c, 1, 1, Linear), Ok(0));
    assert_eq!(
        alloc(&mut c, 10, 1, NonLinear),
        Err(SuballocatorError::FragmentedRegion)
    );
    assert_eq!(alloc(&mut c, 7, 1, NonLinear), Ok(4));
    assert_eq!(c.sub.free_size(), 0);
}

#[test]
fn rounding_near_the_end_of_the_address_space_does_not_overflow() {
    let mut c = Checker::new(RingAllocator::new(u64::MAX), DeviceAlignment::MAX);
    let max = DeviceLayout::MAX_SIZE;
    assert_eq!(alloc(&mut c, max, 1, Linear), Ok(0));
    assert_eq!(alloc(&mut c, max - 5, 1, Linear), Ok(max));
    assert_eq!(c.sub.free_size(), 6);
    // Rounding the head up to a multiple of 2^62 would wrap around the address space; the
    // tail is at 0, so there is no room before it either.
    assert_eq!(
        alloc(&mut c, 1, 1 << 62, Linear),
        Err(SuballocatorError::FragmentedRegion)
    );
    // So would moving past the conflicting newest page.
    assert_eq!(
        alloc(&mut c, 1, 1, NonLinear),
        Err(SuballocatorError::FragmentedRegion)
    );
    assert_eq!(alloc(&mut c, 6, 1, Linear), Ok(u64::MAX - 6));
    free_nth_oldest(&mut c, 0);
    // The oldest live allocation starts at 2^63 - 1, on page 0 like anything placed at 0: a
    // conflicting type cannot wrap around, the same type can.
    assert_eq!(
        alloc(&mut c, 1, 1, NonLinear),
        Err(SuballocatorError::FragmentedRegion)
    );
    assert_eq!(alloc(&mut c, max, 1, Linear), Ok(0));
    assert_eq!(c.sub.free_size(), 0);
    c.free_all_and_reuse(max);
}

#[test]
#[cfg(debug_assertions)]
#[should_panic(expected = "not a live allocation")]
fn double_free_is_caught_in_debug_builds() {
    let mut sub = RingAllocator::new(100);
    let s = sub.allocate(layout(10, 1), Linear, G1).unwrap();
    sub.allocate(layout(10, 1), Linear, G1).unwrap();
    #[allow(unsafe_code)]
    // SAFETY: deliberately breaks the contract; the ring touches no memory.
    unsafe {
        sub.deallocate(s);
        sub.deallocate(s);
    }
}

/// `reset` keeps the sequence numbers counting: a handle from before it names no allocation
/// after it, even one at the same offset.
#[test]
#[cfg(debug_assertions)]
#[should_panic(expected = "not a live allocation")]
fn a_stale_handle_after_reset_is_caught_in_debug_builds() {
    let mut sub = RingAllocator::new(100);
    let stale = sub.allocate(layout(10, 1), Linear, G1).unwrap();
    sub.reset();
    let fresh = sub.allocate(layout(10, 1), Linear, G1).unwrap();
    assert_eq!(fresh.offset, stale.offset);
    #[allow(unsafe_code)]
    // SAFETY: deliberately breaks the contract; the ring touches no memory.
    unsafe {
        sub.deallocate(stale)
    };
}

/// Runs `ops`, checking that a failed request implies that every larger, at least as strictly
/// aligned request of the same type fails too until the next free.
fn check_monotone_failures(c: &mut Checker<RingAllocator>, ops: &[Op]) {
    let mut failed: Vec<(DeviceLayout, AllocationType)> = Vec::new();
    for op in ops {
        match *op {
            Op::Alloc {
                size,
                align_log,
                ty,
            } => {
                let alignment = DeviceAlignment::from_log2(align_log).unwrap();
                let Ok(l) = DeviceLayout::new(size, alignment) else {
                    continue;
                };
                let dominated = failed.iter().any(|&(f, fty)| {
                    fty == ty && f.size() <= l.size() && f.alignment() <= l.alignment()
                });
                let result = c.allocate(l, ty);
                assert!(!(dominated && result.is_ok()), "{l:?} {ty:?} succeeded");
                if result.is_err() {
                    failed.push((l, ty));
                    let probes = [
                        (size + 1, alignment.log2()),
                        (size.saturating_mul(2), alignment.log2()),
                        (size, alignment.log2() + 1),
                    ];
                    for (size, align_log) in probes {
                        let alignment = DeviceAlignment::from_log2(align_log).unwrap();
                        if let Ok(l) = DeviceLayout::new(size, alignment) {
                            assert!(c.allocate(l, ty).is_err(), "{l:?} {ty:?} succeeded");
                        }
                    }
                }
            }
            Op::Free(i) => {
                c.free(i);
                failed.clear();
            }
            Op::FreeOldest => {
                c.free_oldest();
                failed.clear();
            }
        }
        check_internal(&c.sub);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(crate::suballocator::testing::cases(64)))]

    /// Uniformly random frees: the ring mostly waits for its oldest allocation.
    #[test]
    fn random_sequences_keep_the_invariants(
        region in testing::log_uniform_size(1 << 22),
        granularity in testing::granularity(),
        ops in testing::op_sequence(1 << 12, 200..2000),
    ) {
        let mut c = Checker::new(RingAllocator::new(region), granularity);
        for chunk in ops.chunks(16) {
            c.run(chunk);
            check_internal(&c.sub);
        }
        c.free_all_and_reuse(region);
    }

    /// Mostly oldest-first frees of requests up to a quarter of the region: the head laps
    /// the region many times.
    #[test]
    fn fifo_sequences_keep_the_invariants(
        (region, ops) in testing::log_uniform_size(1 << 22).prop_flat_map(|r| {
            (Just(r), testing::fifo_op_sequence((r / 4).max(1), 200..2000, 90))
        }),
        granularity in testing::granularity(),
    ) {
        let mut c = Checker::new(RingAllocator::new(region), granularity);
        for chunk in ops.chunks(16) {
            c.run(chunk);
            check_internal(&c.sub);
        }
        c.free_all_and_reuse(region);
    }

    /// Many small requests, so that hundreds of allocations are in the ring at once.
    #[test]
    fn many_small_allocations_keep_the_invariants(
        (region, ops) in (1u64 << 12..1 << 24).prop_flat_map(|r| {
            (Just(r), testing::fifo_op_sequence((r / 512).max(1), 500..3000, 70))
        }),
        granularity in testing::granularity(),
    ) {
        let mut c = Checker::new(RingAllocator::new(region), granularity);
        for chunk in ops.chunks(64) {
            c.run(chunk);
            check_internal(&c.sub);
        }
        c.free_all_and_reuse(region);
    }

    /// A failure is never followed by the success of a larger, at least as strictly aligned
    /// request of the same type before something is freed.
    #[test]
    fn failures_are_monotone_until_the_next_free(
        (region, ops) in testing::log_uniform_size(1 << 16).prop_flat_map(|r| {
            (Just(r), testing::fifo_op_sequence(r, 200..1000, 80))
        }),
        granularity in testing::granularity(),
    ) {
        let mut c = Checker::new(RingAllocator::new(region), granularity);
        check_monotone_failures(&mut c, &ops);
        c.free_all_and_reuse(region);
    }
}

#[test]
fn sequence_numbers_wrap_in_32_bits_and_every_handle_fits() {
    // Handles fit in 32 bits (so an allocation holding one stays three words); the sequence
    // numbers wrap there, and frees in any order across the wrap find their entries.
    let mut c = Checker::new(RingAllocator::new(1024), G1);
    c.sub.front_seq = u32::MAX - 2;
    let handles: Vec<u64> = (0..6)
        .map(|_| c.allocate(layout(64, 16), Linear).unwrap().handle.get())
        .collect();
    check_internal(&c.sub);
    assert!(
        handles.iter().all(|&h| h <= u64::from(u32::MAX)),
        "{handles:?}"
    );
    assert!(handles.contains(&u64::from(u32::MAX)) && handles.contains(&0));
    // Out of order across the wrap (sequence numbers 1, then u32::MAX), then the oldest
    // twice: the tail passes the freed ones, across the wrap.
    free_nth_oldest(&mut c, 4);
    free_nth_oldest(&mut c, 2);
    free_nth_oldest(&mut c, 0);
    assert_eq!(c.sub.allocation_count(), 3);
    assert_eq!(c.sub.front_seq, u32::MAX - 1);
    free_nth_oldest(&mut c, 0);
    assert_eq!(c.sub.front_seq, 0, "the tail passed the freed u32::MAX");
    while c.sub.allocation_count() > 0 {
        free_nth_oldest(&mut c, 0);
    }
    assert_eq!(c.sub.free_size(), 1024);
}
