//! Unit tests of the module.

use super::*;
use crate::suballocator::testing::{self, Checker};
use proptest::prelude::*;
use AllocationType::{Linear, NonLinear, Unknown};

const KIB: u64 = 1024;

fn al(value: u64) -> DeviceAlignment {
    DeviceAlignment::new(value).unwrap()
}

fn layout(size: u64, alignment: u64) -> DeviceLayout {
    DeviceLayout::from_size_alignment(size, alignment).unwrap()
}

fn checker(region: u64, granularity: u64) -> Checker<FreeListAllocator> {
    Checker::new(FreeListAllocator::new(region), al(granularity)).exact()
}

/// A free list of `region` bytes whose every complete search teaches its buckets' bounds
/// when `always` (small regions seldom make the long walks that do: see [`class_bounds`]).
fn learning(region: u64, always: bool) -> FreeListAllocator {
    let mut sub = FreeListAllocator::new(region);
    if always {
        sub.buckets.bounds.learning_walk = 0;
    }
    sub
}

impl FreeListAllocator {
    /// Calls `f` with the offset and size of every absorbed padding and every slack: free
    /// bytes that no request is placed in until the allocation they border is freed.
    pub(crate) fn for_each_fragment(&self, f: &mut dyn FnMut(DeviceSize, DeviceSize)) {
        let mut idx = self.first;
        while idx != NONE {
            let node = &self.nodes[idx as usize];
            if matches!(node.state(), State::Used(_)) {
                if node.has_padding() {
                    f(node.offset, node.allocation_start() - node.offset);
                }
                if node.slack() > 0 {
                    f(node.allocation_end(), node.slack());
                }
            }
            idx = node.next;
        }
    }
}

fn alloc(c: &mut Checker<FreeListAllocator>, size: u64, align: u64, ty: AllocationType) -> u64 {
    c.allocate(layout(size, align), ty).unwrap().offset
}

/// Frees the live allocation at `offset` (the checker frees by rank in offset order).
fn free_at(c: &mut Checker<FreeListAllocator>, offset: u64) {
    let mut rank = 0;
    c.sub.for_each_range(&mut |r| {
        if matches!(r.kind, RangeKind::Allocated(_)) && r.offset + r.size <= offset {
            rank += 1;
        }
    });
    let before = c.live_count();
    c.free(rank);
    assert_eq!(c.live_count(), before - 1);
}

/// The region as `(offset, size, None for free / Some(type))`.
fn ranges(s: &FreeListAllocator) -> Vec<(u64, u64, Option<AllocationType>)> {
    let mut out = Vec::new();
    s.for_each_range(&mut |r| {
        let ty = match r.kind {
            RangeKind::Free => None,
            RangeKind::Allocated(ty) => Some(ty),
        };
        out.push((r.offset, r.size, ty));
    });
    out
}

/// Freeing in allocation order grows the free range in front of each freed allocation: while
/// the range stays in its size class it keeps its node and its place in its bucket list, and
/// when it leaves the class it moves to the bucket of its new size (the invariants, checked
/// after every free, hold both ways), until the region is one free range again.
#[test]
fn freeing_in_allocation_order_grows_the_range_before_in_or_out_of_its_bucket() {
    let region = 64 * KIB;
    let mut c = checker(region, 1);
    let sizes = [256, 64, 64, 64, 1024, 64, 4096, 64, 64, 128, 8192, 64];
    let offsets: Vec<u64> = sizes
        .iter()
        .map(|&s| alloc(&mut c, s, 16, Linear))
        .collect();
    let front_node = |c: &Checker<FreeListAllocator>| c.sub.first;
    let (mut kept, mut moved) = (0, 0);
    for (i, &offset) in offsets.iter().enumerate() {
        let before = (front_node(&c), c.sub.nodes[c.sub.first as usize].size);
        free_at(&mut c, offset);
        check_internal(&c.sub);
        let front = &c.sub.nodes[c.sub.first as usize];
        assert_eq!(front.state(), State::Free);
        assert_eq!(front.size, offsets.get(i + 1).copied().unwrap_or(region));
        if i > 0 {
            if Bucket::same(before.1, front.size) {
                assert_eq!(front_node(&c), before.0, "the range kept its node");
                kept += 1;
            } else {
                moved += 1;
            }
        }
    }
    assert!(
        kept > 0 && moved > 0,
        "both ways taken: {kept} kept, {moved} moved"
    );
    assert_eq!(ranges(&c.sub), vec![(0, region, None)]);
}

#[test]
fn a_node_is_half_a_cache_line() {
    assert_eq!(std::mem::size_of::<Node>(), 32);
    for state in [
        State::Free,
        State::Recycled,
        State::Used(Unknown),
        State::Used(Linear),
        State::Used(NonLinear),
    ] {
        let mut node = Node {
            offset: 0,
            size: 1,
            prev: NONE,
            next: NONE,
            prev_free: 7,
            next_free: NONE,
        };
        node.set_state(state);
        assert_eq!(node.state(), state);
    }
    // A free node's link, whatever its value below the tags, reads as free.
    for link in [0, 1, FIRST_TAG - 1, NONE] {
        let node = Node {
            offset: 0,
            size: 1,
            prev: NONE,
            next: NONE,
            prev_free: link,
            next_free: NONE,
        };
        assert_eq!(node.state(), State::Free);
    }
}

/// Internal invariants the public checker cannot see: free ranges are coalesced, every
/// free node is in the list of the bucket its size belongs to, the bitmaps agree with the
/// lists, the physical list links both ways, and every bound a bucket learned holds for each
/// of its ranges at every alignment (see [`class_bounds`]).
fn check_internal(s: &FreeListAllocator) {
    let mut free_nodes = 0;
    let mut prev = NONE;
    let mut idx = s.first;
    while idx != NONE {
        let node = &s.nodes[idx as usize];
        assert_eq!(node.prev, prev, "physical back link of node {idx}");
        if node.state() == State::Free {
            free_nodes += 1;
            assert_eq!(
                node.offset % s.boundary_quantum.as_devicesize(),
                0,
                "free node {idx} starts off the boundary quantum {:?}",
                s.boundary_quantum
            );
            assert!(
                prev == NONE || s.nodes[prev as usize].state() != State::Free,
                "two free neighbours at {}",
                node.offset
            );
        }
        assert_ne!(node.state(), State::Recycled);
        if let State::Used(_) = node.state() {
            let padding = node.allocation_start() - node.offset;
            assert!(
                padding < MIN_SPLIT_PADDING.min(node.size),
                "absorbed padding {padding} of node {idx}"
            );
            assert!(
                node.slack() < MIN_SPLIT_PADDING,
                "slack {} of node {idx}",
                node.slack()
            );
            assert!(
                node.allocation_end() > node.allocation_start(),
                "node {idx} holds no allocation"
            );
            if node.has_padding() {
                assert!(
                    prev == NONE || s.nodes[prev as usize].state() != State::Free,
                    "node {idx} holds padding behind a free node"
                );
            }
        }
        prev = idx;
        idx = node.next;
    }
    let mut listed = 0;
    let mut bucket = Some(Bucket::containing(1));
    while let Some(b) = bucket {
        let head = s.buckets.head(b);
        assert_eq!(s.buckets.first_non_empty_from(b) == Some(b), head != NONE);
        let mut prev_free = NONE;
        let mut idx = head;
        while idx != NONE {
            let node = &s.nodes[idx as usize];
            assert_eq!(node.state(), State::Free);
            assert_eq!(Bucket::containing(node.size), b);
            assert_eq!(node.prev_free, prev_free);
            for log2 in 0..=17 {
                let alignment = DeviceAlignment::from_log2(log2).unwrap();
                if let Some(bound) = s.buckets.learned_bound(b, alignment) {
                    let room = class_bounds::aligned_room(node.offset, node.end(), alignment);
                    assert!(
                        room <= bound,
                        "node {idx}: {room} bytes at {alignment:?}, over its bucket's bound {bound}"
                    );
                }
            }
            listed += 1;
            prev_free = idx;
            idx = node.next_free;
        }
        bucket = b.next();
    }
    assert_eq!(listed, free_nodes, "free nodes missing from the buckets");
    let mut recycled = 0;
    let mut idx = s.recycled;
    while idx != NONE {
        assert_eq!(s.nodes[idx as usize].state(), State::Recycled);
        recycled += 1;
        idx = s.nodes[idx as usize].next_free;
    }
    let mut linked = 0;
    let mut idx = s.first;
    while idx != NONE {
        linked += 1;
        idx = s.nodes[idx as usize].next;
    }
    assert_eq!(linked + recycled, s.nodes.len(), "nodes leaked");
}

#[test]
fn empty_and_one_byte_regions() {
    let mut c = checker(0, 1);
    assert_eq!(c.sub.free_size(), 0);
    assert_eq!(c.sub.largest_free_range(), 0);
    assert!(ranges(&c.sub).is_empty());
    assert_eq!(
        c.allocate(layout(1, 1), Unknown),
        Err(SuballocatorError::OutOfRegionMemory)
    );
    c.free_all_and_reuse(0);

    let mut c = checker(1, 1);
    assert_eq!(c.sub.largest_free_range(), 1);
    assert_eq!(alloc(&mut c, 1, 1, Linear), 0);
    assert_eq!(c.sub.largest_free_range(), 0);
    assert_eq!(
        c.allocate(layout(1, 1), Linear),
        Err(SuballocatorError::OutOfRegionMemory)
    );
    c.free_all_and_reuse(1);
    check_internal(&c.sub);
}

#[test]
fn places_consecutively_and_splits_the_tail() {
    let mut c = checker(1000, 1);
    assert_eq!(alloc(&mut c, 100, 1, Linear), 0);
    assert_eq!(alloc(&mut c, 200, 1, NonLinear), 100);
    assert_eq!(alloc(&mut c, 300, 4, Unknown), 300);
    assert_eq!(
        ranges(&c.sub),
        [
            (0, 100, Some(Linear)),
            (100, 200, Some(NonLinear)),
            (300, 300, Some(Unknown)),
            (600, 400, None),
        ]
    );
    assert_eq!(c.sub.free_size(), 400);
    assert_eq!(c.sub.allocation_count(), 3);
    assert_eq!(c.sub.largest_free_range(), 400);
    // Exactly the rest fits, with no tail left.
    assert_eq!(alloc(&mut c, 400, 1, Linear), 600);
    assert_eq!(c.sub.free_size(), 0);
    assert_eq!(c.sub.largest_free_range(), 0);
    check_internal(&c.sub);
    c.free_all_and_reuse(1000);
}

#[test]
fn coalesces_with_both_neighbours() {
    let mut c = checker(1000, 1);
    for i in 0..4 {
        assert_eq!(alloc(&mut c, 100, 1, Linear), i * 100);
    }
    free_at(&mut c, 100);
    free_at(&mut c, 300); // merges with the free tail after it
    assert_eq!(
        ranges(&c.sub),
        [
            (0, 100, Some(Linear)),
            (100, 100, None),
            (200, 100, Some(Linear)),
            (300, 700, None),
        ]
    );
    free_at(&mut c, 200); // merges with both sides
    assert_eq!(ranges(&c.sub), [(0, 100, Some(Linear)), (100, 900, None)]);
    check_internal(&c.sub);
    assert_eq!(alloc(&mut c, 900, 1, Linear), 100);
    free_at(&mut c, 0); // merges with nothing: its neighbour is allocated
    assert_eq!(ranges(&c.sub), [(0, 100, None), (100, 900, Some(Linear))]);
    free_at(&mut c, 100);
    assert_eq!(ranges(&c.sub), [(0, 1000, None)]);
    check_internal(&c.sub);
}

#[test]
fn alignment_padding_stays_free() {
    let mut c = checker(4096, 1);
    assert_eq!(alloc(&mut c, 1, 1, Linear), 0);
    // 511 bytes of padding: a free node.
    assert_eq!(alloc(&mut c, 10, 512, Linear), 512);
    assert_eq!(c.sub.free_size(), 4096 - 11);
    // 15 bytes of padding, carved from that node: absorbed into the allocation's node,
    // and free all the same.
    assert_eq!(alloc(&mut c, 10, 16, Linear), 16);
    assert_eq!(
        ranges(&c.sub),
        [
            (0, 1, Some(Linear)),
            (1, 15, None),
            (16, 10, Some(Linear)),
            (26, 486, None),
            (512, 10, Some(Linear)),
            (522, 3574, None),
        ]
    );
    assert_eq!(c.sub.free_size(), 4096 - 21);
    check_internal(&c.sub);
    // Once every free node is taken, the padding stays free but takes no request (it is
    // not indexed: a region full of small allocations would otherwise be walked through for
    // every small request): a request fails as fragmented, not out of memory.
    assert_eq!(alloc(&mut c, 3574, 1, Linear), 522);
    assert_eq!(alloc(&mut c, 486, 1, Linear), 26);
    assert_eq!(c.sub.free_size(), 15);
    assert_eq!(
        c.sub.largest_free_range(),
        0,
        "padding only: no request fits"
    );
    for size in [1, 7, 15] {
        assert_eq!(
            c.allocate(layout(size, 1), Linear),
            Err(SuballocatorError::FragmentedRegion)
        );
    }
    check_internal(&c.sub);
    // Freeing the allocation behind the padding makes it part of a free range again.
    free_at(&mut c, 16);
    assert_eq!(ranges(&c.sub)[1], (1, 25, None));
    assert_eq!(alloc(&mut c, 7, 1, Linear), 1);
    assert_eq!(alloc(&mut c, 8, 8, Linear), 8);
    // The 10 bytes left are a free node (the region served a 1-byte request: see
    // `bytes_left_over_join_the_padding_only_below_every_request_served`).
    assert_eq!(alloc(&mut c, 10, 1, Linear), 16);
    assert_eq!(c.sub.free_size(), 0);
    check_internal(&c.sub);
    // Freeing in any order gives every byte back.
    free_at(&mut c, 26);
    free_at(&mut c, 16);
    assert_eq!(ranges(&c.sub)[3], (16, 496, None));
    free_at(&mut c, 8);
    assert_eq!(ranges(&c.sub)[1..3], [(1, 7, Some(Linear)), (8, 504, None)]);
    free_at(&mut c, 1);
    assert_eq!(ranges(&c.sub)[1], (1, 511, None));
    check_internal(&c.sub);
    c.free_all_and_reuse(4096);
}

/// The index of the node that starts at `offset`.
fn node_at(s: &FreeListAllocator, offset: u64) -> u32 {
    let mut idx = s.first;
    while s.nodes[idx as usize].offset != offset {
        idx = s.nodes[idx as usize].next;
    }
    idx
}

/// Padding long enough to be a free node of its own is split off in front of an allocation
/// carved from a large range whose rest stays in its size class: the large range keeps its
/// node (and its place in its bucket list) as the range after the allocation, the padding
/// is filed as a free range that takes the next request it holds, and every byte comes back.
#[test]
fn padding_split_off_in_front_of_a_range_that_keeps_its_place() {
    let region = 1024 * KIB;
    let mut c = checker(region, 1);
    assert_eq!(alloc(&mut c, 1, 1, Linear), 0);
    let large = node_at(&c.sub, 1);
    // 255 bytes of padding: a free node; the 1,048,310 bytes after stay in the class of
    // the 1,048,575 before.
    assert_eq!(alloc(&mut c, 10, 256, Linear), 256);
    assert!(Bucket::same(region - 266, region - 1));
    assert_eq!(
        ranges(&c.sub),
        [
            (0, 1, Some(Linear)),
            (1, 255, None),
            (256, 10, Some(Linear)),
            (266, region - 266, None),
        ]
    );
    assert_eq!(node_at(&c.sub, 266), large, "the large range kept its node");
    assert_eq!(c.sub.free_size(), region - 11);
    check_internal(&c.sub);
    // The padding holds the next request that fits it.
    assert_eq!(alloc(&mut c, 200, 1, NonLinear), 1);
    assert_eq!(c.sub.free_size(), region - 211);
    check_internal(&c.sub);
    c.free_all_and_reuse(region);
}

/// Padding absorbed by an allocation joins the free range in front of it when that range
/// is freed, so free bytes are never cut in two.
#[test]
fn a_freed_range_takes_over_the_padding_behind_it() {
    let mut c = checker(1024, 1);
    assert_eq!(alloc(&mut c, 10, 1, Linear), 0);
    assert_eq!(alloc(&mut c, 10, 32, Linear), 32);
    assert_eq!(alloc(&mut c, 982, 1, Linear), 42);
    // [10, 32) is padding held by the node at 32.
    free_at(&mut c, 0);
    assert_eq!(ranges(&c.sub)[0], (0, 32, None));
    // One free range of 32: a 32-byte request fits at 0.
    assert_eq!(alloc(&mut c, 32, 1, Linear), 0);
    check_internal(&c.sub);
    c.free_all_and_reuse(1024);
}

/// Issue 23, item 9: the bytes a granularity page skips stay free, at every granularity,
/// so a later request that fits in them lands there instead of failing with
/// `FragmentedRegion` (64 bytes or more: a free node; fewer are absorbed, below).
#[test]
fn padding_in_front_of_a_page_stays_free() {
    for g in [1024, 4096] {
        let mut c = checker(2 * g, g);
        assert_eq!(alloc(&mut c, 1, 1, Linear), 0);
        assert_eq!(alloc(&mut c, 1, 1, NonLinear), g);
        assert_eq!(c.sub.free_size(), 2 * g - 2, "granularity {g}");
        assert_eq!(ranges(&c.sub)[1], (1, g - 1, None), "granularity {g}");
        // Offset 1 is legal: a linear byte on page 0, away from the non-linear page.
        assert_eq!(alloc(&mut c, 1, 1, Linear), 1, "granularity {g}");
        assert_eq!(alloc(&mut c, g - 2, 1, Linear), 2, "granularity {g}");
        assert_eq!(c.sub.free_size(), g - 1);
        check_internal(&c.sub);
        c.free_all_and_reuse(2 * g);
    }
    // 63 bytes skipped: absorbed into the node of the allocation behind them, free and not
    // handed out until it is freed.
    let g = 64;
    let mut c = checker(2 * g, g);
    assert_eq!(alloc(&mut c, 1, 1, Linear), 0);
    assert_eq!(alloc(&mut c, 1, 1, NonLinear), g);
    assert_eq!(c.sub.free_size(), 2 * g - 2);
    assert_eq!(ranges(&c.sub)[1], (1, g - 1, None));
    assert_eq!(
        c.allocate(layout(1, 1), Linear),
        Err(SuballocatorError::FragmentedRegion)
    );
    free_at(&mut c, g);
    assert_eq!(alloc(&mut c, 1, 1, Linear), 1);
    check_internal(&c.sub);
    c.free_all_and_reuse(2 * g);
}

#[test]
fn granularity_against_the_previous_neighbour() {
    let mut c = checker(8192, 1024);
    assert_eq!(alloc(&mut c, 100, 1, Linear), 0);
    // Different kind: moved to the next page; the skipped bytes stay free.
    assert_eq!(alloc(&mut c, 100, 1, NonLinear), 1024);
    assert_eq!(ranges(&c.sub)[1], (100, 924, None));
    // Same kind: may share the page.
    assert_eq!(alloc(&mut c, 100, 1, NonLinear), 1124);
    // Unknown conflicts with everything, itself included.
    assert_eq!(alloc(&mut c, 100, 1, Unknown), 2048);
    assert_eq!(alloc(&mut c, 100, 1, Unknown), 3072);
    // Padding up to the page stays free, however short.
    assert_eq!(alloc(&mut c, 1000, 1, Unknown), 4096);
    assert_eq!(alloc(&mut c, 100, 1, Linear), 5120);
    assert!(ranges(&c.sub).contains(&(5096, 24, None)));
    assert!(ranges(&c.sub).contains(&(5120, 100, Some(Linear))));
    check_internal(&c.sub);
    c.free_all_and_reuse(8192);
}

#[test]
fn granularity_against_the_next_neighbour() {
    let mut c = checker(4000, 1024);
    assert_eq!(alloc(&mut c, 3000, 1, NonLinear), 0);
    assert_eq!(alloc(&mut c, 1000, 1, NonLinear), 3000);
    free_at(&mut c, 0);
    // [0, 3000) is free, followed by a non-linear range starting on page 2048. A linear
    // range ending on that page would share it (vulkano's free list allowed this).
    assert_eq!(
        c.allocate(layout(2100, 1), Linear),
        Err(SuballocatorError::FragmentedRegion)
    );
    assert_eq!(
        c.allocate(layout(2049, 1), Unknown),
        Err(SuballocatorError::FragmentedRegion)
    );
    // Ending on the page before is fine.
    assert_eq!(alloc(&mut c, 2048, 1, Linear), 0);
    free_at(&mut c, 0);
    // The same kind may share the page.
    assert_eq!(alloc(&mut c, 3000, 1, NonLinear), 0);
    check_internal(&c.sub);
    c.free_all_and_reuse(4000);

    // Without a granularity constraint there is nothing to check.
    let mut c = checker(4000, 1);
    assert_eq!(alloc(&mut c, 3000, 1, NonLinear), 0);
    assert_eq!(alloc(&mut c, 1000, 1, NonLinear), 3000);
    free_at(&mut c, 0);
    assert_eq!(alloc(&mut c, 2100, 1, Linear), 0);
}

#[test]
fn granularity_padding_holds_requests_that_keep_off_the_next_page() {
    let mut c = checker(2048, 1024);
    assert_eq!(alloc(&mut c, 1000, 1, Linear), 0);
    // Moved to the next page; the 24 bytes skipped stay free.
    assert_eq!(alloc(&mut c, 10, 1, NonLinear), 1024);
    assert_eq!(ranges(&c.sub)[1], (1000, 24, None));
    free_at(&mut c, 0);
    // [0, 1024) is free, followed by the non-linear page 1024: a linear range may end on
    // page 0, and fill it.
    assert_eq!(alloc(&mut c, 1000, 1, Linear), 0);
    assert_eq!(alloc(&mut c, 24, 1, Linear), 1000);
    assert_eq!(
        c.allocate(layout(1, 1), Linear),
        Err(SuballocatorError::FragmentedRegion)
    );
    check_internal(&c.sub);
}

#[test]
fn error_kinds() {
    let mut c = checker(1000, 1);
    for (size, offset) in [(50, 0), (300, 50), (100, 350), (300, 450), (250, 750)] {
        assert_eq!(alloc(&mut c, size, 1, Linear), offset);
    }
    free_at(&mut c, 50);
    free_at(&mut c, 450);
    // 600 bytes free, in two ranges of 300: [50, 350) and [450, 750).
    assert_eq!(
        c.allocate(layout(500, 1), Linear),
        Err(SuballocatorError::FragmentedRegion)
    );
    assert_eq!(
        c.allocate(layout(601, 1), Linear),
        Err(SuballocatorError::OutOfRegionMemory)
    );
    // Fits in size, not with its alignment: no multiple of 256 leaves 250 bytes in either.
    assert_eq!(
        c.allocate(layout(250, 256), Linear),
        Err(SuballocatorError::FragmentedRegion)
    );
    // A smaller one does, at 512.
    assert_eq!(alloc(&mut c, 200, 256, Linear), 512);
    free_at(&mut c, 512);
    // Both ranges are in one size class; it is a LIFO list.
    assert_eq!(alloc(&mut c, 300, 1, Linear), 450);
    assert_eq!(alloc(&mut c, 300, 1, Linear), 50);
    check_internal(&c.sub);
}

#[test]
fn large_alignment_falls_back_to_a_snug_range() {
    let mut c = checker(1024 * KIB, 1);
    assert_eq!(alloc(&mut c, 64 * KIB, 1, Linear), 0);
    assert_eq!(alloc(&mut c, 64 * KIB, 1, Linear), 64 * KIB);
    assert_eq!(alloc(&mut c, 896 * KIB, 1, Linear), 128 * KIB);
    free_at(&mut c, 64 * KIB);
    // The worst case needs 128 KiB - 1 bytes, but the only free range is aligned.
    assert_eq!(alloc(&mut c, 64 * KIB, 64 * KIB, Linear), 64 * KIB);
    free_at(&mut c, 64 * KIB);
    // Same with granularity padding that turns out not to be needed.
    let mut c = checker(1024 * KIB, 4 * KIB);
    assert_eq!(alloc(&mut c, 64 * KIB, 1, Linear), 0);
    assert_eq!(alloc(&mut c, 64 * KIB, 1, Linear), 64 * KIB);
    assert_eq!(alloc(&mut c, 896 * KIB, 1, Linear), 128 * KIB);
    free_at(&mut c, 64 * KIB);
    assert_eq!(alloc(&mut c, 64 * KIB, 1, Linear), 64 * KIB);
    check_internal(&c.sub);
}

#[test]
fn a_legal_range_behind_a_failing_bucket_head_is_found() {
    // Page 0: linear ranges around a free [1, 101); page 1: non-linear ranges around a
    // free [1025, 1125), freed last, so it heads the list of the size class of both.
    let mut c = checker(2048, 1024);
    for (size, ty, offset) in [
        (1, Linear, 0),
        (100, Linear, 1),
        (923, Linear, 101),
        (1, NonLinear, 1024),
        (100, NonLinear, 1025),
        (923, NonLinear, 1125),
    ] {
        assert_eq!(alloc(&mut c, size, 1, ty), offset);
    }
    free_at(&mut c, 1);
    free_at(&mut c, 1025);
    // A linear byte cannot go into [1025, 1125) (its page holds non-linear ranges), but
    // offset 1 is free and shares its page with linear ranges only.
    assert_eq!(alloc(&mut c, 1, 1, Linear), 1);
    // And a non-linear one goes into the other range.
    assert_eq!(alloc(&mut c, 1, 1, NonLinear), 1025);
    check_internal(&c.sub);
}

#[test]
fn a_small_strictly_aligned_request_fits_where_a_larger_one_does() {
    // 16 free ranges of 16 ..= 31 bytes (one size class each) in the first 64 KiB, none
    // holding a multiple of 64 KiB, and a free 4 KiB range at 64 KiB.
    let mut c = checker(64 * KIB + 4 * KIB, 1);
    assert_eq!(alloc(&mut c, 1, 1, Linear), 0);
    let mut smalls = Vec::new();
    for size in 16..32 {
        smalls.push(alloc(&mut c, size, 1, Linear));
        alloc(&mut c, 1, 1, Linear);
    }
    let used = 1 + (16..32).sum::<u64>() + 16;
    alloc(&mut c, 64 * KIB - used, 1, Linear);
    assert_eq!(alloc(&mut c, 4 * KIB, 1, Linear), 64 * KIB);
    for offset in smalls {
        free_at(&mut c, offset);
    }
    free_at(&mut c, 64 * KIB);
    assert_eq!(alloc(&mut c, 4 * KIB, 64 * KIB, Linear), 64 * KIB);
    free_at(&mut c, 64 * KIB);
    // The 16 small ranges come first in size order; the search must not stop there.
    assert_eq!(alloc(&mut c, 16, 64 * KIB, Linear), 64 * KIB);
    check_internal(&c.sub);
}

#[test]
fn largest_free_range_is_a_tight_upper_bound() {
    let mut c = checker(1 << 20, 1);
    assert_eq!(c.sub.largest_free_range(), 1 << 20);
    for _ in 0..5 {
        alloc(&mut c, 100_000, 1, Linear);
    }
    // Free ranges now: [500_000, 2^20) only.
    let largest = (1 << 20) - 500_000;
    assert!(c.sub.largest_free_range() >= largest);
    assert!(c.sub.largest_free_range() <= largest + largest / 16);
    free_at(&mut c, 100_000);
    assert!(c.sub.largest_free_range() >= largest);
    assert!(c.sub.largest_free_range() <= largest + largest / 16);
}

#[test]
fn non_power_of_two_and_huge_regions() {
    let mut c = checker(1_000_003, 1);
    assert_eq!(alloc(&mut c, 999_999, 1, Linear), 0);
    assert_eq!(alloc(&mut c, 4, 1, Linear), 999_999);
    c.free_all_and_reuse(1_000_003);

    let mut c = checker(1 << 62, 64 * KIB);
    assert_eq!(alloc(&mut c, 1 << 61, 1 << 61, Linear), 0);
    assert_eq!(alloc(&mut c, 1, 1, NonLinear), 1 << 61);
    assert_eq!(alloc(&mut c, 1 << 60, 1 << 60, Linear), 3 << 60);
    check_internal(&c.sub);
    c.free_all_and_reuse(1 << 62);

    let mut c = checker(u64::MAX, 1);
    assert_eq!(alloc(&mut c, DeviceLayout::MAX_SIZE, 1, Linear), 0);
    // One byte of padding, which stays free, then up to the last byte of the region.
    assert_eq!(alloc(&mut c, 1 << 62, 1 << 62, Linear), 1 << 63);
    assert_eq!(
        c.allocate(layout(1 << 62, 1 << 62), Linear),
        Err(SuballocatorError::FragmentedRegion)
    );
    assert_eq!(
        alloc(&mut c, (1 << 62) - 1, 1, Linear),
        (1 << 63) + (1 << 62)
    );
    // The byte of padding is free, and handed out once the allocation behind it is freed.
    assert_eq!(c.sub.free_size(), 1);
    assert_eq!(
        c.allocate(layout(1, 1), Linear),
        Err(SuballocatorError::FragmentedRegion)
    );
    free_at(&mut c, 1 << 63);
    assert_eq!(alloc(&mut c, 1, 1, Linear), DeviceLayout::MAX_SIZE);
    check_internal(&c.sub);
    c.free_all_and_reuse(DeviceLayout::MAX_SIZE);
}

#[test]
fn reset_frees_everything() {
    let mut s = FreeListAllocator::new(10_000);
    for i in 0..10 {
        s.allocate(layout(100 + i, 64), Linear, al(1)).unwrap();
    }
    s.reset();
    assert_eq!(s.free_size(), 10_000);
    assert_eq!(s.allocation_count(), 0);
    assert_eq!(ranges(&s), [(0, 10_000, None)]);
    assert_eq!(s.nodes.len(), 1);
    check_internal(&s);
    let whole = s.allocate(layout(10_000, 1), Unknown, al(1)).unwrap();
    assert_eq!(whole.offset, 0);
}

/// A tiny deterministic generator for the node-reuse test.
fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[test]
fn nodes_are_recycled() {
    let mut s = FreeListAllocator::new(1 << 30);
    let mut live = Vec::new();
    let mut rng = 0x9e37_79b9_7f4a_7c15;
    let mut churn = |s: &mut FreeListAllocator, live: &mut Vec<Suballocation>, steps| {
        for _ in 0..steps {
            if live.len() == 200 {
                let i = xorshift(&mut rng) as usize % live.len();
                // SAFETY: allocated by `s` above and removed from `live`, freed once.
                #[allow(unsafe_code)]
                unsafe {
                    s.deallocate(live.swap_remove(i))
                };
            }
            let r = xorshift(&mut rng);
            let l = layout(1 + r % 100_000, 1 << ((r >> 32) % 13));
            live.push(s.allocate(l, Linear, al(1)).unwrap());
            // Free ranges are never neighbours, so there are at most 2n + 1 ranges, and a
            // node is only pushed when none is recycled.
            assert!(s.nodes.len() <= 2 * 200 + 1);
        }
    };
    churn(&mut s, &mut live, 5_000);
    check_internal(&s);
    let capacity = s.nodes.capacity();
    churn(&mut s, &mut live, 20_000);
    assert_eq!(s.nodes.capacity(), capacity, "steady state allocated nodes");
    check_internal(&s);
}

/// A granularity between 1 B and 4 KiB.
fn small_granularity() -> impl Strategy<Value = DeviceAlignment> {
    (0..=12u32).prop_map(|log| DeviceAlignment::from_log2(log).unwrap())
}

/// Region sizes log-uniform in [1 KiB, 1 GiB).
fn region_size() -> impl Strategy<Value = u64> {
    (10..30u32, any::<u64>()).prop_map(|(log, bits)| (1 << log) + bits % (1 << log))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(crate::suballocator::testing::cases(64)))]

    /// Requests from 1 byte up to the whole region.
    #[test]
    fn random_sequences_keep_the_invariants(
        (region, ops) in region_size()
            .prop_flat_map(|r| (Just(r), testing::op_sequence(r, 200..2000))),
        granularity in testing::granularity(),
        always in any::<bool>(),
    ) {
        let mut c = Checker::new(learning(region, always), granularity).exact();
        for chunk in ops.chunks(16) {
            c.run(chunk);
            check_internal(&c.sub);
        }
        c.free_all_and_reuse(region);
        check_internal(&c.sub);
    }

    /// Many small requests, so that hundreds of ranges are live at once.
    #[test]
    fn many_small_allocations_keep_the_invariants(
        (region, ops) in region_size()
            .prop_flat_map(|r| (Just(r), testing::op_sequence((r / 256).max(1), 200..2000))),
        granularity in testing::granularity(),
        always in any::<bool>(),
    ) {
        let mut c = Checker::new(learning(region, always), granularity).exact();
        for chunk in ops.chunks(64) {
            c.run(chunk);
            check_internal(&c.sub);
        }
        c.free_all_and_reuse(region);
    }

    /// Small regions, all three types, granularities up to 4 KiB: every failure is checked
    /// against the brute-force oracle, which tries every aligned offset.
    #[test]
    fn fails_only_when_no_offset_is_legal(
        (region, ops) in (1..=16 * KIB, 0..=6u32).prop_flat_map(|(r, shift)| {
            (Just(r), testing::op_sequence((r >> shift).max(1), 100..1000))
        }),
        granularity in small_granularity(),
        always in any::<bool>(),
    ) {
        let mut c = Checker::new(learning(region, always), granularity)
            .exact()
            .complete();
        for chunk in ops.chunks(16) {
            c.run(chunk);
            check_internal(&c.sub);
        }
        c.free_all_and_reuse(region);
    }
}

/// Sequences that fill a small region with few frees between: many requests fail, and most
/// failures come after another one since the last free, so the complete search's
/// [learned bounds](super::fit_bounds) decide them.
fn filling_sequence(region: u64) -> impl Strategy<Value = Vec<testing::Op>> {
    let alloc = (
        testing::log_uniform_size((region / 8).max(1)),
        0..=9u32,
        prop_oneof![Just(Unknown), Just(Linear), Just(NonLinear)],
    )
        .prop_map(|(size, align_log, ty)| testing::Op::Alloc {
            size,
            align_log,
            ty,
        });
    let op = prop_oneof![12 => alloc, 1 => any::<usize>().prop_map(testing::Op::Free)];
    proptest::collection::vec(op, 100..600)
}

/// Each free node's [`room`](FreeListAllocator::room) for `alignment` and `ty`: `fit` takes
/// exactly the sizes up to it, at the start it names.
fn assert_room_is_what_fits(
    s: &FreeListAllocator,
    alignment: DeviceAlignment,
    ty: AllocationType,
    granularity: DeviceAlignment,
) {
    let mut idx = s.first;
    while idx != NONE {
        if s.nodes[idx as usize].state() == State::Free {
            let (room, start) = s.room(idx, alignment, ty, granularity);
            if room > 0 {
                assert_eq!(
                    s.fit(idx, room, alignment, ty, granularity),
                    Some(start),
                    "node {idx} holds its room of {room} bytes"
                );
            }
            assert_eq!(
                s.fit(idx, room + 1, alignment, ty, granularity),
                None,
                "node {idx} holds more than its room of {room} bytes"
            );
        }
        idx = s.nodes[idx as usize].next;
    }
}

/// Every bound the failed searches learned is at least the room of every free node, at every
/// alignment and for every type (the bounds that frees raised included).
fn assert_bounds_hold(s: &mut FreeListAllocator, granularity: DeviceAlignment) {
    for ty in [Unknown, Linear, NonLinear] {
        let g = s.effective_granularity(ty, granularity);
        for log2 in 0..=17 {
            let alignment = DeviceAlignment::from_log2(log2).unwrap();
            let bound = s.fit_bounds.largest(ty, alignment, g);
            let mut idx = s.first;
            while idx != NONE {
                if s.nodes[idx as usize].state() == State::Free {
                    let (room, _) = s.room(idx, alignment, ty, g);
                    assert!(
                        room <= bound,
                        "{ty:?} at {alignment:?}: room {room} > bound {bound}"
                    );
                }
                idx = s.nodes[idx as usize].next;
            }
        }
    }
}

/// A region filled with few frees between, by a fixed sequence: the learned bounds refuse many
/// requests without a walk, and the oracle confirms every refusal.
#[test]
fn learned_bounds_refuse_only_requests_that_no_range_holds() {
    let region = 16 * KIB;
    let mut state = 0x2545_f491_4f6c_dd1d;
    let types = [Unknown, Linear, NonLinear];
    for granularity in [1, 16, 256] {
        let mut c = Checker::new(FreeListAllocator::new(region), al(granularity))
            .exact()
            .complete();
        let mut refused_by_bound = 0;
        for step in 0..3000 {
            let r = xorshift(&mut state);
            if r % 13 == 0 {
                c.free(r as usize / 13);
                continue;
            }
            let size = 1 + (r >> 8) % (1 << ((r >> 20) % 10));
            let alignment = al(1 << ((r >> 32) % 9));
            let ty = types[(r >> 40) as usize % 3];
            let bound = c.sub.fit_bounds.largest(ty, alignment, al(granularity));
            if c.allocate(layout(size, alignment.as_devicesize()), ty)
                .is_err()
                && size > bound
            {
                refused_by_bound += 1;
            }
            if step % 64 == 0 {
                check_internal(&c.sub);
                assert_room_is_what_fits(&c.sub, alignment, ty, al(granularity));
            }
        }
        assert!(
            refused_by_bound > 100,
            "granularity {granularity}: only {refused_by_bound} requests refused by a bound"
        );
    }
}

/// After a long failed walk, a free keeps what the walk learned, raised to what the one range
/// the free makes holds: a strictly aligned request that range cannot hold is still refused by
/// the bound, without a walk. (Forgetting every bound at each free made every such request
/// walk all the free ranges again: objects of 16 B-4 KiB at alignments 1 B-64 KiB, 10,000
/// live, took 2.9 µs per allocate+free in the peer benchmark, 69 µs with 100,000.)
#[test]
fn a_free_raises_the_learned_bounds_instead_of_forgetting_them() {
    const OBJ: u64 = 1000;
    let region = 256 * KIB;
    let mut c = Checker::new(FreeListAllocator::new(region), al(1))
        .exact()
        .complete();
    let count = region / OBJ;
    for k in 0..count {
        assert_eq!(alloc(&mut c, OBJ, 1, Linear), k * OBJ);
    }
    // The bytes from `start` to `end` at 4 KiB.
    let room = |start: u64, end: u64| end.saturating_sub(start.next_multiple_of(4096));
    // Free every odd object that holds no byte at 4 KiB: many short ranges, none merged.
    let freed: Vec<u64> = (1..count - 1)
        .step_by(2)
        .filter(|&k| room(k * OBJ, (k + 1) * OBJ) == 0)
        .collect();
    for &k in &freed {
        free_at(&mut c, k * OBJ);
    }
    assert!(
        freed.len() >= fit_bounds::LONG_WALK,
        "{} ranges",
        freed.len()
    );
    let bound =
        |c: &mut Checker<FreeListAllocator>| c.sub.fit_bounds.largest(Linear, al(4096), al(1));
    assert_eq!(bound(&mut c), DeviceSize::MAX, "nothing learned yet");
    assert!(c.allocate(layout(16, 4096), Linear).is_err());
    assert_eq!(bound(&mut c), 0, "no free range holds a byte at 4 KiB");
    // Freeing an even object between two freed ones makes one range of three objects.
    let merged = |k: u64| room((k - 1) * OBJ, (k + 2) * OBJ);
    let between = |k: &u64| freed.contains(&(k - 1)) && freed.contains(&(k + 1));
    let none = (2..count - 1)
        .step_by(2)
        .filter(between)
        .find(|&k| merged(k) == 0);
    let some = (2..count - 1)
        .step_by(2)
        .filter(between)
        .find(|&k| merged(k) >= 16);
    let (none, some) = (none.unwrap(), some.unwrap());
    free_at(&mut c, none * OBJ);
    assert_eq!(
        bound(&mut c),
        0,
        "a free that makes no room keeps the bound"
    );
    assert!(c.allocate(layout(16, 4096), Linear).is_err());
    free_at(&mut c, some * OBJ);
    assert_eq!(
        bound(&mut c),
        merged(some),
        "raised to the new range's room, no further"
    );
    assert!(c.allocate(layout(merged(some) + 1, 4096), Linear).is_err());
    let placed = alloc(&mut c, merged(some), 4096, Linear);
    assert_eq!(placed, ((some - 1) * OBJ).next_multiple_of(4096));
    // The quick search took the range that raised the bound: the bound falls back with it,
    // and the next request at 4 KiB is refused without a walk that would fail.
    assert_eq!(bound(&mut c), 0);
    // The range a free makes reaches back over the free range before it: free an object
    // that holds a 4 KiB boundary, then the one after it; the request that only the two
    // together hold is placed (a bound raised by the second object alone refuses it).
    let live = |k: u64| k % 2 == 0 && k != none && k != some || k % 2 == 1 && !freed.contains(&k);
    let (a, start, end) = (2..count - 3)
        .filter(|&a| live(a) && live(a + 1))
        .filter(|&a| room(a * OBJ, (a + 1) * OBJ) > 0 && room((a + 1) * OBJ, (a + 2) * OBJ) == 0)
        .map(|a| {
            let start = if live(a - 1) { a * OBJ } else { (a - 1) * OBJ };
            let end = if live(a + 2) { a + 2 } else { a + 3 } * OBJ;
            (a, start, end)
        })
        .find(|&(_, start, end)| room(start, end) > bound(&mut c))
        .unwrap();
    free_at(&mut c, a * OBJ);
    free_at(&mut c, (a + 1) * OBJ);
    assert_eq!(bound(&mut c), room(start, end));
    assert_eq!(
        alloc(&mut c, room(start, end), 4096, Linear),
        start.next_multiple_of(4096)
    );
    // A looser alignment learned nothing and keeps searching.
    assert_eq!(
        c.sub.fit_bounds.largest(Linear, al(1024), al(1)),
        DeviceSize::MAX
    );
    // Frees note their ranges (`PENDING` of them at most); when the list is full, a free
    // folds them into the bounds if a lookup used them since the last fold, and forgets the
    // bounds (one store) if none did.
    assert!(bound(&mut c) < DeviceSize::MAX);
    let live_even: Vec<u64> = (2..count - 1)
        .step_by(2)
        .filter(|&k| live(k) && k != a && k != a + 1)
        .take(2 * fit_bounds::PENDING + 1)
        .collect();
    for &k in &live_even[..=fit_bounds::PENDING] {
        free_at(&mut c, k * OBJ);
    }
    assert!(c.sub.fit_bounds.known != 0, "folded: a lookup came before");
    for &k in &live_even[fit_bounds::PENDING + 1..] {
        free_at(&mut c, k * OBJ);
    }
    assert_eq!(bound(&mut c), DeviceSize::MAX);
    c.free_all_and_reuse(region);
}

/// A short failed walk does not keep the bounds: the next free forgets them (a walk costs
/// about what noting the frees would save).
#[test]
fn a_short_walk_keeps_its_bound_until_the_next_free_only() {
    let mut c = checker(64 * KIB, 1);
    for k in 0..65 {
        assert_eq!(alloc(&mut c, 1000, 1, Linear), k * 1000);
    }
    assert!(c.allocate(layout(16, 4096), Linear).is_err());
    assert_eq!(c.sub.fit_bounds.largest(Linear, al(4096), al(1)), 0);
    free_at(&mut c, 5000);
    assert_eq!(
        c.sub.fit_bounds.largest(Linear, al(4096), al(1)),
        DeviceSize::MAX
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(crate::suballocator::testing::cases(64)))]

    /// Every failure in a filling region is checked by the brute-force oracle, so a bound
    /// that refuses a request some range holds (one too low, or one raised too little by a
    /// free) fails the test. `keep`: the bounds outlive the frees after every failed walk,
    /// not only after long ones (which small regions seldom make).
    #[test]
    fn learned_bounds_keep_the_search_complete(
        (region, ops) in (1..=16 * KIB).prop_flat_map(|r| (Just(r), filling_sequence(r))),
        granularity in small_granularity(),
        keep in any::<bool>(),
        always in any::<bool>(),
    ) {
        let mut sub = learning(region, always);
        if keep {
            sub.fit_bounds.long_walk = 0;
        }
        let mut c = Checker::new(sub, granularity)
            .exact()
            .complete();
        for chunk in ops.chunks(8) {
            c.run(chunk);
            check_internal(&c.sub);
            assert_bounds_hold(&mut c.sub, granularity);
        }
        c.free_all_and_reuse(region);
    }

    /// A node's room is exactly the largest request `fit` accepts in it, at every alignment,
    /// for every type, next to neighbours of every type.
    #[test]
    fn room_is_the_largest_request_that_fits(
        (region, ops) in (1..=64 * KIB).prop_flat_map(|r| (Just(r), filling_sequence(r))),
        granularity in small_granularity(),
        probes in proptest::collection::vec(
            (0..=12u32, prop_oneof![Just(Unknown), Just(Linear), Just(NonLinear)]),
            1..6,
        ),
    ) {
        let mut c = Checker::new(FreeListAllocator::new(region), granularity).exact();
        for chunk in ops.chunks(50) {
            c.run(chunk);
            for &(align_log, ty) in &probes {
                let alignment = DeviceAlignment::from_log2(align_log).unwrap();
                assert_room_is_what_fits(&c.sub, alignment, ty, granularity);
            }
        }
    }
}

/// While no allocation of a conflicting type lives in the region, a request needs no room for
/// granularity pages, and the sure-fit search takes a snug range that a freed allocation left;
/// once one lives, the search reserves that room again.
#[test]
fn the_granularity_reserve_applies_only_while_a_conflicting_type_lives() {
    let mut c = checker(64 * KIB, 64);
    let offsets: Vec<u64> = (0..4).map(|_| alloc(&mut c, 256, 16, Linear)).collect();
    assert_eq!(offsets, [0, 256, 512, 768]);
    free_at(&mut c, 256);
    // 240 bytes at alignment 16 surely fit a range of 256; with room for two pages of 64
    // bytes they would not.
    assert_eq!(
        alloc(&mut c, 240, 16, Linear),
        256,
        "the snug range, not the tail"
    );
    let image = alloc(&mut c, 1024, 1024, NonLinear);
    assert_eq!(image, 1024);
    free_at(&mut c, 512);
    let placed = alloc(&mut c, 240, 16, Linear);
    assert!(
        placed >= 2048,
        "with an image live, a buffer goes where a range surely holds it: {placed}"
    );
    check_internal(&c.sub);
}

/// A few bytes left between a new allocation and the next one join the next one's padding:
/// no free node of their own. They stay free (reported and counted), and go back to a free
/// range with the allocation that holds them.
#[test]
fn a_few_bytes_left_join_the_next_allocations_padding() {
    let region = 64 * KIB;
    let mut c = checker(region, 1);
    for expected in [0, 100, 200] {
        assert_eq!(alloc(&mut c, 100, 1, Linear), expected);
    }
    free_at(&mut c, 100);
    assert_eq!(alloc(&mut c, 90, 1, Linear), 100);
    assert_eq!(
        ranges(&c.sub),
        [
            (0, 100, Some(Linear)),
            (100, 90, Some(Linear)),
            (190, 10, None),
            (200, 100, Some(Linear)),
            (300, region - 300, None),
        ]
    );
    let free_nodes = c
        .sub
        .nodes
        .iter()
        .filter(|n| n.state() == State::Free)
        .count();
    assert_eq!(free_nodes, 1, "only the tail is a free node");
    assert_eq!(c.sub.free_size(), region - 290);
    check_internal(&c.sub);
    free_at(&mut c, 200);
    assert_eq!(ranges(&c.sub)[2], (190, region - 190, None));
    check_internal(&c.sub);
}

/// Absorbed padding takes no request: a region full of small allocations, with padding in
/// front of each and no free node, refuses a request that only the padding could hold, and
/// learns a bound of 0 (no free range), so that the next small request is refused at once
/// rather than after a walk. (The padding search that placed such requests walked every
/// allocation of the region each time, after every free: tens of microseconds per request in
/// a region of a few megabytes of small allocations.)
#[test]
fn padding_takes_no_request_and_a_full_region_refuses_at_once() {
    // 40 bytes every 64, the last one ending at the region's end: 24 bytes of padding in
    // front of each allocation but the first, and no free node.
    let region = 63 * 64 + 40;
    let mut c = checker(region, 1);
    while c.allocate(layout(40, 64), Linear).is_ok() {}
    check_internal(&c.sub);
    assert_eq!(c.sub.free_size(), 63 * 24);
    // Absorbed padding takes no request: an allocator skips the region for any request.
    assert_eq!(c.sub.largest_free_range(), 0);
    assert_eq!(
        c.allocate(layout(24, 4), Linear),
        Err(SuballocatorError::FragmentedRegion)
    );
    assert_eq!(
        c.sub
            .fit_bounds
            .largest(Linear, al(4), DeviceAlignment::MIN),
        0,
        "no free range holds anything"
    );
    check_internal(&c.sub);
}

/// Bytes left over after an allocation join the next allocation's padding only when they
/// are fewer than every request the region served (and fewer than 64): a region of requests
/// of 16 bytes and more keeps 16 bytes left over as a free node, which a later request takes;
/// fewer join the padding, and come back with the free of the allocation behind them.
#[test]
fn bytes_left_over_join_the_padding_only_below_every_request_served() {
    let mut c = checker(1024, 1);
    assert_eq!(alloc(&mut c, 16, 1, Linear), 0);
    assert_eq!(alloc(&mut c, 84, 1, Linear), 16);
    assert_eq!(alloc(&mut c, 100, 1, Linear), 100);
    assert_eq!(alloc(&mut c, 824, 1, Linear), 200);
    free_at(&mut c, 16);
    free_at(&mut c, 0);
    // 84 of the 100 bytes: 16 left over, as many as the smallest request: a free node.
    assert_eq!(alloc(&mut c, 84, 1, Linear), 0);
    assert_eq!(ranges(&c.sub)[1], (84, 16, None));
    assert_eq!(alloc(&mut c, 16, 1, Linear), 84);
    free_at(&mut c, 0);
    free_at(&mut c, 84);
    // 90 of the 100 bytes: 10 left over, fewer than every request so far: absorbed by the
    // allocation at 100, free, and not handed out until it is freed.
    assert_eq!(alloc(&mut c, 90, 1, Linear), 0);
    assert_eq!(
        ranges(&c.sub)[1..3],
        [(90, 10, None), (100, 100, Some(Linear))]
    );
    assert_eq!(
        c.allocate(layout(10, 1), Linear),
        Err(SuballocatorError::FragmentedRegion)
    );
    free_at(&mut c, 100);
    assert_eq!(ranges(&c.sub)[1], (90, 110, None));
    check_internal(&c.sub);
    // Once a request of 10 bytes was served, 10 bytes left over make a free node.
    assert_eq!(alloc(&mut c, 10, 1, Linear), 90);
    assert_eq!(alloc(&mut c, 90, 1, Linear), 100);
    assert_eq!(ranges(&c.sub)[3], (190, 10, None));
    check_internal(&c.sub);
    c.free_all_and_reuse(1024);
}

/// A 1 MiB region whose front holds `count` live allocations of 1 KiB, and the offset after
/// them. Its first allocation is byte-aligned, so that no node boundary is known to be
/// aligned (the boundary quantum is 1): the sure-fit search adds room for the padding of
/// every request aligned to more than a byte.
fn populated(count: u64) -> (Checker<FreeListAllocator>, u64) {
    let mut c = checker(1024 * KIB, 1);
    for i in 0..count {
        let align = if i == 0 { 1 } else { 16 };
        assert_eq!(alloc(&mut c, KIB, align, Linear), i * KIB);
    }
    (c, count * KIB)
}

/// [`populated`] with `count` allocations, then a 1 KiB hole and an allocation after it, which
/// leaves `tail` bytes free at the end; returns the hole's offset and the tail's.
fn hole_and_tail(count: u64, tail: u64) -> (Checker<FreeListAllocator>, u64, u64) {
    let (mut c, hole) = populated(count);
    // Byte-aligned, as `populated`'s first allocation (which there may be none of).
    assert_eq!(alloc(&mut c, KIB, 1, Linear), hole);
    let filler = 1024 * KIB - hole - KIB - tail;
    assert_eq!(alloc(&mut c, filler, 16, Linear), hole + KIB);
    free_at(&mut c, hole);
    (c, hole, hole + KIB + filler)
}

#[test]
fn near_capacity_a_request_takes_the_snug_range_rather_than_cutting_a_larger_one() {
    // 224 KiB of 1 MiB free (a 1 KiB hole and 223 KiB at the end): within a quarter, so the
    // region is near capacity; 33 live allocations.
    let (mut c, hole, tail) = hole_and_tail(32, 223 * KIB);
    assert_eq!(c.sub.free_size(), 224 * KIB);
    // The request takes the hole that holds it exactly (its own size class), not the front
    // of the larger range, which stays whole for a larger request.
    assert_eq!(alloc(&mut c, KIB, 16, Linear), hole);
    assert_eq!(alloc(&mut c, 223 * KIB, 16, Linear), tail);
    check_internal(&c.sub);
    // A smaller request of the same size class takes the hole too.
    let (mut c, hole, _) = hole_and_tail(32, 223 * KIB);
    assert_eq!(alloc(&mut c, 1000, 16, Linear), hole);
    check_internal(&c.sub);
    // Exactly a quarter free is near capacity.
    let (mut c, hole, _) = hole_and_tail(32, 255 * KIB);
    assert_eq!(c.sub.free_size(), 1024 * KIB / 4);
    assert_eq!(alloc(&mut c, KIB, 16, Linear), hole);
    check_internal(&c.sub);
    // Far from capacity (324 KiB free) the search is the sure-fit search as before: the
    // first range of the first size class whose every range holds the request.
    let (mut c, _, tail) = hole_and_tail(32, 323 * KIB);
    assert_eq!(alloc(&mut c, KIB, 16, Linear), tail);
    check_internal(&c.sub);
}

#[test]
fn a_region_of_few_allocations_keeps_the_sure_fit_search_near_capacity() {
    // 32 live allocations are enough (31 before the hole, and the one after it)...
    let (mut c, hole, _) = hole_and_tail(31, 223 * KIB);
    assert_eq!(alloc(&mut c, KIB, 16, Linear), hole);
    check_internal(&c.sub);
    // ...31 are not: the request goes to the front of the range at the end.
    let (mut c, _, tail) = hole_and_tail(30, 223 * KIB);
    assert_eq!(alloc(&mut c, KIB, 16, Linear), tail);
    check_internal(&c.sub);
    let (mut c, _, tail) = hole_and_tail(0, 223 * KIB);
    assert_eq!(alloc(&mut c, KIB, 16, Linear), tail);
    check_internal(&c.sub);
}

#[test]
fn near_capacity_a_snug_range_that_does_not_fit_leaves_the_request_to_the_sure_fit_search() {
    // Near capacity, with a 1,040-byte hole heading the size class of 1,024-1,087 bytes and
    // 100 KiB free at the end: a request of 1,050 bytes is of the hole's class but does not
    // fit it, and goes to the front of the range at the end.
    let (mut c, _) = populated(32);
    let hole = alloc(&mut c, 1040, 16, Linear);
    alloc(&mut c, KIB, 16, Linear);
    let filler_size = c.sub.free_size() - 100 * KIB;
    let end = alloc(&mut c, filler_size, 16, Linear) + filler_size;
    free_at(&mut c, hole);
    assert!(c.sub.free_size() <= 1024 * KIB / 4);
    assert_eq!(alloc(&mut c, 1050, 16, Linear), end);
    // A request the hole holds takes it.
    assert_eq!(alloc(&mut c, 1040, 16, Linear), hole);
    check_internal(&c.sub);
}

mod slack;
