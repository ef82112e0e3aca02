//! Unit tests of the module.

use super::super::{AllocationType, Bucket, FreeListAllocator, Suballocator};
use super::*;
use crate::layout::DeviceLayout;
use crate::suballocator::testing::Checker;

fn al(value: DeviceSize) -> DeviceAlignment {
    DeviceAlignment::new(value).unwrap()
}

/// A region filled by allocations of `sizes` (alignment 1, so back to back from offset 0),
/// then the ones at the indices `free` freed; every walk teaches bounds.
fn region_of(sizes: &[DeviceSize], free: &[usize]) -> Checker<FreeListAllocator> {
    filled(sizes, free, true)
}

/// [`region_of`], where every walk teaches bounds when `always`, else long walks only.
fn filled(sizes: &[DeviceSize], free: &[usize], always: bool) -> Checker<FreeListAllocator> {
    let region = sizes.iter().sum();
    let mut sub = FreeListAllocator::new(region);
    if always {
        sub.buckets.bounds.learning_walk = 0;
    }
    let mut c = Checker::new(sub, DeviceAlignment::MIN).exact();
    let mut offset = 0;
    for &size in sizes {
        let layout = DeviceLayout::from_size_alignment(size, 1).unwrap();
        let placed = c.allocate(layout, AllocationType::Linear).unwrap();
        assert_eq!(placed.offset, offset);
        offset += size;
    }
    // The checker frees by rank among the live allocations: from the highest index down,
    // the ranks below stay.
    let mut free = free.to_vec();
    free.sort_unstable();
    for &index in free.iter().rev() {
        c.free(index);
    }
    c
}

fn walk(
    s: &mut FreeListAllocator,
    size: DeviceSize,
    alignment: DeviceSize,
) -> Result<(u32, DeviceSize), (DeviceSize, usize)> {
    s.walk_all(
        size,
        al(alignment),
        AllocationType::Linear,
        DeviceAlignment::MIN,
    )
}

#[test]
fn classes() {
    assert_eq!(class_of(al(1)), None);
    assert_eq!(class_of(al(8)), None);
    assert_eq!(class_of(al(16)), Some(0));
    assert_eq!(class_of(al(64)), Some(2));
    assert_eq!(class_of(al(256)), Some(4));
    assert_eq!(class_of(al(512)), Some(5));
    assert_eq!(class_of(al(1 << 16)), Some(12));
    assert_eq!(class_of(al(1 << 17)), None);
    assert_eq!(class_of(al(1 << 20)), None);
    assert_eq!(aligned_room(300, 514, al(256)), 2);
    assert_eq!(aligned_room(300, 510, al(256)), 0);
    assert_eq!(aligned_room(0, 10, al(256)), 10);
}

/// Allocations whose second, `[302, 510)`, and fifth, `[560, 770)`, are of the bucket of
/// 208-215 bytes once freed: at an alignment of 256 the first holds nothing (512 is past
/// its end), the second 2 bytes at 768. The third, `[510, 514)`, reaches past 512.
const SIZES: [DeviceSize; 6] = [302, 208, 4, 46, 210, 254];

/// A failed walk learns its bucket's bound; the next walk at that alignment, or a
/// stricter one, passes the bucket without reading a node, and gets the same answer. A
/// looser alignment does not take the bound.
#[test]
fn a_walk_passes_a_bucket_that_learned_it_holds_nothing_for_the_request() {
    // Only `[302, 510)` is free: no room at 256 (512 is past its end), 126 bytes at 128.
    let mut c = region_of(&SIZES, &[1]);
    let s = &mut c.sub;
    assert_eq!(walk(s, 2, 256), Err((0, 1)));
    assert_eq!(walk(s, 2, 256), Err((0, 0)), "passed without a read");
    assert_eq!(
        walk(s, 2, 4096),
        Err((0, 0)),
        "a stricter alignment takes the bound (here it adds nothing to the room seen)"
    );
    assert_eq!(
        walk(s, 2, 1 << 20),
        Err((0, 0)),
        "so does one above the last class"
    );
    let (idx, start) = walk(s, 2, 128).expect("126 bytes at 384");
    assert_eq!((s.nodes[idx as usize].offset, start), (302, 384));
    // That walk stopped at the range: the bucket learned nothing at 128, and keeps its
    // bound at 256.
    let bucket = Bucket::containing(208);
    assert_eq!(s.buckets.learned_bound(bucket, al(128)), None);
    assert_eq!(s.buckets.learned_bound(bucket, al(256)), Some(0));
    assert_eq!(walk(s, 200, 128), Err((126, 1)));
    assert_eq!(s.buckets.learned_bound(bucket, al(128)), Some(126));
    assert_eq!(s.buckets.learned_bound(bucket, al(512)), None);
    assert_eq!(walk(s, 127, 128), Err((126, 0)));
    // A looser class's bound passes a bucket only where it adds nothing to the room seen:
    // at 64, the bound of 126 bytes at 128 does not stand in for the bucket's room.
    assert_eq!(walk(s, 200, 64), Err((190, 1)));
}

/// A range that enters a bucket that learned makes it forget: the next walk finds it.
#[test]
fn a_range_filed_into_a_bucket_makes_it_forget() {
    let mut c = region_of(&SIZES, &[1]);
    assert_eq!(walk(&mut c.sub, 2, 256), Err((0, 1)));
    // Free `[560, 770)`, 2 bytes at 768; its neighbours stay, so it is filed as it is.
    c.free(3);
    let (idx, start) = walk(&mut c.sub, 2, 256).expect("the filed range holds it");
    assert_eq!((c.sub.nodes[idx as usize].offset, start), (560, 768));
}

/// A free that grows the free range before it within its bucket makes the bucket forget:
/// the next walk finds the room the growth made.
#[test]
fn a_range_that_grows_in_its_bucket_makes_it_forget() {
    let mut c = region_of(&SIZES, &[1]);
    assert_eq!(walk(&mut c.sub, 2, 256), Err((0, 1)));
    // Free `[510, 514)`: `[302, 510)` grows to `[302, 514)`, 212 bytes, the same bucket,
    // and holds 2 bytes at 512.
    c.free(1);
    assert_eq!(c.sub.free_size(), 212);
    let (idx, start) = walk(&mut c.sub, 2, 256).expect("the grown range holds it");
    assert_eq!((c.sub.nodes[idx as usize].offset, start), (302, 512));
    // And the public search finds it too, after the failure the walk above would have
    // repeated.
    let layout = DeviceLayout::from_size_alignment(2, 256).unwrap();
    assert_eq!(
        c.allocate(layout, AllocationType::Linear).unwrap().offset,
        512
    );
}

/// A walk teaches bounds only once it has read [`LEARNING_WALK`] nodes.
#[test]
fn only_a_long_walk_teaches() {
    // One free range, `[302, 510)`: a walk of one node teaches nothing.
    let mut c = filled(&SIZES, &[1], false);
    assert_eq!(walk(&mut c.sub, 2, 256), Err((0, 1)));
    let bucket = Bucket::containing(208);
    assert_eq!(c.sub.buckets.learned_bound(bucket, al(256)), None);
    // 100 free ranges of 48 bytes, none of them at a multiple of 256: a walk of 100 nodes
    // finds no 48 bytes at that alignment. It read them all in one bucket, which it began
    // before it was long, and teaches nothing; the next walk, in a region of long walks,
    // teaches the bucket, and the one after passes it.
    let odd: Vec<usize> = (1..200).step_by(2).collect();
    let mut c = filled(&[48; 200], &odd, false);
    let (largest, walked) = walk(&mut c.sub, 48, 256).unwrap_err();
    assert_eq!(walked, 100);
    assert!(largest < 48);
    let bucket = Bucket::containing(48);
    assert_eq!(c.sub.buckets.learned_bound(bucket, al(256)), None);
    assert_eq!(walk(&mut c.sub, 48, 256), Err((largest, 100)));
    assert_eq!(c.sub.buckets.learned_bound(bucket, al(256)), Some(largest));
    assert_eq!(walk(&mut c.sub, 48, 256), Err((largest, 0)));
}

/// A reset forgets what the buckets learned.
#[test]
fn a_reset_forgets() {
    let mut c = region_of(&SIZES, &[1]);
    assert_eq!(walk(&mut c.sub, 2, 256), Err((0, 1)));
    let bucket = Bucket::containing(208);
    assert_eq!(c.sub.buckets.learned_bound(bucket, al(256)), Some(0));
    c.sub.reset();
    assert_eq!(c.sub.buckets.learned_bound(bucket, al(256)), None);
}
