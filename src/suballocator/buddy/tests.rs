//! Unit tests of the module.

use super::*;
use crate::suballocator::testing::{self, Checker};
use proptest::prelude::*;

const G1: DeviceAlignment = DeviceAlignment::MIN;

fn layout(size: DeviceSize, alignment: DeviceSize) -> DeviceLayout {
    DeviceLayout::from_size_alignment(size, alignment).unwrap()
}

fn ranges(sub: &BuddyAllocator) -> Vec<(DeviceSize, DeviceSize, bool)> {
    let mut out = Vec::new();
    sub.for_each_range(&mut |r| out.push((r.offset, r.size, r.kind == RangeKind::Free)));
    out
}

fn alloc(c: &mut Checker<BuddyAllocator>, size: DeviceSize, align: DeviceSize) -> Suballocation {
    c.allocate(layout(size, align), AllocationType::Linear)
        .unwrap()
}

#[test]
fn offsets_hash_by_every_bit() {
    use std::hash::{BuildHasher, BuildHasherDefault};
    let build = BuildHasherDefault::<OffsetHasher>::default();
    // Offsets of large blocks differ only in their high bits; the bucket index comes
    // from the low bits, which must differ too.
    let low = |offset: u64| build.hash_one(offset) & 0xFFFF;
    let buckets: std::collections::HashSet<_> = (0..64u64).map(|i| low(i << 32)).collect();
    assert!(buckets.len() > 60, "{} distinct low halves", buckets.len());
    assert_ne!(low(1 << 40), low(2 << 40));
    // Bytes are hashed in order.
    let bytes = |b: &[u8]| {
        let mut h = build.build_hasher();
        h.write(b);
        h.finish()
    };
    assert_ne!(bytes(&[1, 2]), bytes(&[2, 1]));
    assert_ne!(bytes(&[1]), bytes(&[1, 0]));
}

#[test]
fn non_power_of_two_region_has_one_root_per_bit() {
    let sub = BuddyAllocator::new(96);
    assert_eq!(ranges(&sub), [(0, 64, true), (64, 32, true)]);
    assert_eq!(sub.free_size(), 96);
    assert_eq!(sub.largest_free_range(), 64);
    let sub = BuddyAllocator::new(7);
    assert_eq!(ranges(&sub), [(0, 4, true), (4, 2, true), (6, 1, true)]);
}

#[test]
fn split_takes_the_smallest_block_and_merge_restores_the_roots() {
    let mut c = Checker::new(BuddyAllocator::new(96), G1);
    // The smallest free block that holds 1 byte is the 32-byte root at 64.
    let a = alloc(&mut c, 1, 1);
    assert_eq!((a.offset, a.handle.get()), (64, 0));
    assert_eq!(c.sub.free_size(), 95);
    assert_eq!(
        ranges(&c.sub),
        [
            (0, 64, true),
            (64, 1, false),
            (65, 1, true),
            (66, 2, true),
            (68, 4, true),
            (72, 8, true),
            (80, 16, true),
        ]
    );
    // 5 bytes round up to 8: the free 8-byte block at 72.
    let b = alloc(&mut c, 5, 1);
    assert_eq!(b.offset, 72);
    assert_eq!(c.sub.free_size(), 95 - 8);
    // 20 bytes need 32: only the 64-byte root has room.
    let d = alloc(&mut c, 20, 1);
    assert_eq!(d.offset, 0);
    assert_eq!(c.sub.largest_free_range(), 32);
    while c.live_count() > 0 {
        c.free(0);
    }
    // Everything merged back, but the roots stay apart.
    assert_eq!(ranges(&c.sub), [(0, 64, true), (64, 32, true)]);
    assert_eq!(c.sub.largest_free_range(), 64);
}

#[test]
fn buddies_merge_only_when_both_halves_are_free() {
    let mut c = Checker::new(BuddyAllocator::new(64), G1);
    let offsets: Vec<_> = (0..4).map(|_| alloc(&mut c, 16, 1).offset).collect();
    let mut sorted = offsets.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, [0, 16, 32, 48]);
    assert_eq!(c.sub.largest_free_range(), 0);
    // Free 0 and 32 (index 0, then index 1 of the remaining [16, 32, 48]): no buddies.
    c.free(0);
    c.free(1);
    assert_eq!(c.sub.largest_free_range(), 16);
    assert_eq!(
        c.allocate(layout(32, 1), AllocationType::Linear),
        Err(SuballocatorError::FragmentedRegion)
    );
    // Free 16: it merges with 0 into [0, 32).
    c.free(0);
    assert_eq!(c.sub.largest_free_range(), 32);
    assert_eq!(alloc(&mut c, 32, 1).offset, 0);
}

#[test]
fn alignment_raises_the_order() {
    let mut c = Checker::new(BuddyAllocator::new(1024), G1);
    let a = alloc(&mut c, 1, 256);
    assert_eq!((a.offset, a.handle.get()), (0, 8));
    let b = alloc(&mut c, 3, 1);
    assert_eq!(b.offset, 256);
    let d = alloc(&mut c, 1, 256);
    assert_eq!(d.offset, 512);
    assert_eq!(c.sub.free_size(), 1024 - 256 - 4 - 256);
}

#[test]
fn granularity_gives_every_allocation_whole_pages() {
    let g = DeviceAlignment::new(64).unwrap();
    let mut c = Checker::new(BuddyAllocator::new(256), g);
    let a = c.allocate(layout(1, 1), AllocationType::Linear).unwrap();
    let b = c.allocate(layout(1, 1), AllocationType::NonLinear).unwrap();
    let d = c.allocate(layout(100, 1), AllocationType::Unknown).unwrap();
    assert_eq!((a.offset, b.offset, d.offset), (0, 64, 128));
    assert_eq!(c.sub.free_size(), 0);
    // A 96-byte region has a 32-byte root that can never hold a 64-byte page.
    let mut c = Checker::new(BuddyAllocator::new(96), g);
    c.allocate(layout(1, 1), AllocationType::Linear).unwrap();
    assert_eq!(
        c.allocate(layout(1, 1), AllocationType::Linear),
        Err(SuballocatorError::FragmentedRegion)
    );
}

#[test]
fn error_kinds_and_tiny_regions() {
    let mut c = Checker::new(BuddyAllocator::new(0), G1);
    assert_eq!(c.sub.largest_free_range(), 0);
    assert_eq!(
        c.allocate(layout(1, 1), AllocationType::Linear),
        Err(SuballocatorError::OutOfRegionMemory)
    );
    let mut c = Checker::new(BuddyAllocator::new(1), G1);
    assert_eq!(alloc(&mut c, 1, 1).offset, 0);
    assert_eq!(
        c.allocate(layout(1, 1), AllocationType::Linear),
        Err(SuballocatorError::OutOfRegionMemory)
    );
    // 7 = 4 + 2 + 1: all three roots can be filled exactly.
    let mut c = Checker::new(BuddyAllocator::new(7), G1);
    assert_eq!(alloc(&mut c, 3, 1).offset, 0);
    assert_eq!(alloc(&mut c, 1, 1).offset, 6);
    assert_eq!(alloc(&mut c, 2, 1).offset, 4);
    // 3 + 1 + 2 bytes asked, 7 held: the free size counts the rounding as used.
    assert_eq!(c.sub.free_size(), 0);
    assert_eq!(
        c.allocate(layout(1, 1), AllocationType::Linear),
        Err(SuballocatorError::OutOfRegionMemory)
    );
    // Enough bytes in total, but larger than the largest root.
    let mut c = Checker::new(BuddyAllocator::new(96), G1);
    assert_eq!(
        c.allocate(layout(80, 1), AllocationType::Linear),
        Err(SuballocatorError::FragmentedRegion)
    );
    assert_eq!(
        c.allocate(layout(97, 1), AllocationType::Linear),
        Err(SuballocatorError::OutOfRegionMemory)
    );
    // Enough bytes, but the alignment asks for a block larger than the region.
    assert_eq!(
        c.allocate(layout(1, 128), AllocationType::Linear),
        Err(SuballocatorError::FragmentedRegion)
    );
}

#[test]
fn largest_region_and_request() {
    let mut c = Checker::new(BuddyAllocator::new(u64::MAX), G1);
    let a = alloc(&mut c, DeviceLayout::MAX_SIZE, 1);
    assert_eq!((a.offset, a.handle.get()), (0, 63));
    let b = alloc(&mut c, 1, 1);
    assert_eq!(b.offset, u64::MAX - 1);
    c.free_all_and_reuse(DeviceLayout::MAX_SIZE);
    assert_eq!(ranges(&c.sub).len(), 64);
}

#[test]
fn reset_frees_everything() {
    let mut c = Checker::new(BuddyAllocator::new(96), G1);
    for _ in 0..5 {
        alloc(&mut c, 3, 1);
    }
    let mut sub = c.sub;
    sub.reset();
    assert_eq!(sub.allocation_count(), 0);
    assert_eq!(sub.free_size(), 96);
    assert_eq!(ranges(&sub), [(0, 64, true), (64, 32, true)]);
    let mut c = Checker::new(sub, G1);
    c.free_all_and_reuse(64);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(crate::suballocator::testing::cases(64)))]

    #[test]
    fn random_sequences_keep_the_invariants(
        region in (1u64 << 16)..(1 << 22),
        granularity in testing::granularity(),
        ops in testing::op_sequence(1 << 14, 200..2000),
    ) {
        let mut c = Checker::new(BuddyAllocator::new(region), granularity);
        c.run(&ops);
        // The claim of exactness, beyond the checker's upper bound.
        let mut largest = 0;
        c.sub.for_each_range(&mut |r| {
            if r.kind == RangeKind::Free {
                largest = largest.max(r.size);
            }
        });
        prop_assert_eq!(c.sub.largest_free_range(), largest);
        let largest_root = 1 << (63 - region.leading_zeros());
        c.free_all_and_reuse(largest_root);
        // Fully merged: one free range per root.
        prop_assert_eq!(ranges(&c.sub).len(), region.count_ones() as usize);
    }

    #[test]
    fn small_odd_regions_fill_up_and_merge_back(
        region in 1u64..4096,
        ops in testing::op_sequence(512, 200..1000),
    ) {
        let mut c = Checker::new(BuddyAllocator::new(region), DeviceAlignment::MIN);
        c.run(&ops);
        c.free_all_and_reuse(1 << (63 - region.leading_zeros()));
        prop_assert_eq!(ranges(&c.sub).len(), region.count_ones() as usize);
    }
}
