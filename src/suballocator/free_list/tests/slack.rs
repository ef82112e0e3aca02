//! The slack after an allocation and the boundary quantum (see the `take` module): free bytes,
//! reported as free, given back at the free; every range starts on a multiple of the quantum,
//! so a request at that alignment takes a range of its own size; a request aligned to less
//! lowers the quantum when it succeeds; the granularity checks give the answers they give
//! without slack.

use super::*;

#[test]
fn slack_is_free_and_comes_back_with_its_allocation() {
    let mut c = checker(1024, 1);
    assert_eq!(alloc(&mut c, 10, 16, Linear), 0);
    assert_eq!(alloc(&mut c, 20, 16, Linear), 16);
    assert_eq!(alloc(&mut c, 5, 16, Linear), 48);
    // Each allocation holds its bytes; the slack up to the next multiple of 16 is free and
    // joins the free range after it in the report.
    assert_eq!(
        ranges(&c.sub),
        [
            (0, 10, Some(Linear)),
            (10, 6, None),
            (16, 20, Some(Linear)),
            (36, 12, None),
            (48, 5, Some(Linear)),
            (53, 971, None),
        ]
    );
    assert_eq!(c.sub.free_size(), 1024 - 35);
    assert_eq!(c.sub.boundary_quantum, al(16));
    check_internal(&c.sub);
    // The range after the last slack holds a request of its whole length.
    assert_eq!(alloc(&mut c, 960, 16, Linear), 64);
    // The slack is free, but takes no request until its allocation is freed.
    assert_eq!(c.sub.free_size(), 6 + 12 + 11);
    assert_eq!(c.sub.largest_free_range(), 0);
    assert_eq!(
        c.allocate(layout(4, 16), Linear),
        Err(SuballocatorError::FragmentedRegion)
    );
    // Freed, the allocation's node gives its bytes and its slack back as one range.
    free_at(&mut c, 16);
    assert_eq!(ranges(&c.sub)[1], (10, 38, None));
    check_internal(&c.sub);
    assert_eq!(alloc(&mut c, 32, 16, Linear), 16);
    check_internal(&c.sub);
    c.free_all_and_reuse(1024);
}

/// A request aligned to the quantum needs no room for padding: it takes a freed range of its
/// own size (the first range of the first size class whose ranges all hold it), not the
/// front of the larger range at the end.
#[test]
fn a_request_at_the_quantum_takes_a_range_of_its_own_size() {
    let mut c = checker(64 * KIB, 1);
    for i in 0..8 {
        assert_eq!(alloc(&mut c, 100, 16, Linear), i * 112);
    }
    free_at(&mut c, 3 * 112);
    // The hole is the allocation's 100 bytes and its 12 bytes of slack; the report joins
    // the slack of the allocation before it.
    assert_eq!(ranges(&c.sub)[5], (3 * 112 - 12, 124, None));
    // 112 bytes at 16: the hole, which holds it exactly. With room for 15 bytes of padding
    // the sure-fit search would have looked for a range of at least 127 bytes.
    assert_eq!(alloc(&mut c, 112, 16, Linear), 3 * 112);
    check_internal(&c.sub);
    // A request aligned to more than the quantum still reserves room for the difference:
    // 32 - 16 bytes, so a 112-byte hole is passed over for the range at the end.
    free_at(&mut c, 5 * 112);
    assert_eq!(alloc(&mut c, 112, 32, Linear), 8 * 112);
    check_internal(&c.sub);
    c.free_all_and_reuse(64 * KIB);
}

/// A request aligned to less than the quantum lowers it once it has found its range (a
/// request that fails changes nothing); the allocations after it are packed at their own
/// alignment again, their padding absorbed as before.
#[test]
fn a_request_aligned_to_less_lowers_the_quantum() {
    let mut c = checker(1024, 1);
    assert_eq!(alloc(&mut c, 10, 64, Linear), 0);
    assert_eq!(c.sub.boundary_quantum, al(64));
    assert_eq!(ranges(&c.sub)[1], (10, 1014, None));
    // Too large for the region: it fails, and the quantum stays.
    assert_eq!(
        c.allocate(layout(1000, 1), Linear),
        Err(SuballocatorError::FragmentedRegion)
    );
    assert_eq!(c.sub.boundary_quantum, al(64));
    assert_eq!(alloc(&mut c, 3, 4, Linear), 64);
    assert_eq!(c.sub.boundary_quantum, al(4));
    // The 3-byte allocation's node ends at 68; the next request at 16 starts at 80, its 12
    // bytes of padding absorbed.
    assert_eq!(alloc(&mut c, 16, 16, Linear), 80);
    assert_eq!(
        ranges(&c.sub)[..5],
        [
            (0, 10, Some(Linear)),
            (10, 54, None),
            (64, 3, Some(Linear)),
            (67, 13, None),
            (80, 16, Some(Linear)),
        ]
    );
    check_internal(&c.sub);
    // The quantum only falls until the region is reset.
    assert_eq!(alloc(&mut c, 10, 64, Linear), 128);
    assert_eq!(c.sub.boundary_quantum, al(4));
    c.sub.reset();
    assert_eq!(c.sub.boundary_quantum, al(64));
}

/// The slack stops at the end of the region when the region is no multiple of the quantum.
#[test]
fn slack_stops_at_the_end_of_the_region() {
    let mut c = checker(1000, 1);
    assert_eq!(alloc(&mut c, 990, 16, Linear), 0);
    assert_eq!(ranges(&c.sub)[1], (990, 10, None));
    assert_eq!(alloc(&mut c, 8, 16, Linear), 992);
    assert_eq!(c.sub.free_size(), 2);
    check_internal(&c.sub);
    c.free_all_and_reuse(1000);
}

/// The granularity checks look at the byte before a node, the last of the slack before it:
/// the same page as the allocation's last byte whenever that matters.
#[test]
fn slack_moves_no_page_boundary() {
    // Pages of 32 bytes, quantum 16: a linear allocation of 17 bytes ends on page 0 with 15
    // bytes of slack; a non-linear request starts on page 1 at once.
    let mut c = checker(256, 32);
    assert_eq!(alloc(&mut c, 17, 16, Linear), 0);
    assert_eq!(alloc(&mut c, 16, 16, NonLinear), 32);
    check_internal(&c.sub);
    // Pages of 64 bytes: offset 32 is on the linear allocation's page, so the non-linear
    // request goes to the next page.
    let mut c = checker(256, 64);
    assert_eq!(alloc(&mut c, 17, 16, Linear), 0);
    assert_eq!(alloc(&mut c, 16, 16, NonLinear), 64);
    check_internal(&c.sub);
    // Pages of 8 bytes, below the quantum: the slack [5, 16) spans page boundaries, and the
    // next node starts on one, so a non-linear request takes offset 16.
    let mut c = checker(256, 8);
    assert_eq!(alloc(&mut c, 5, 16, Linear), 0);
    assert_eq!(alloc(&mut c, 16, 16, NonLinear), 16);
    check_internal(&c.sub);
}
