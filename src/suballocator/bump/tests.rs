//! Unit tests of the module.

use super::*;
use crate::suballocator::testing::{self, Checker};
use proptest::prelude::*;
use AllocationType::{Linear, NonLinear, Unknown};

const G1: DeviceAlignment = DeviceAlignment::MIN;

fn layout(size: DeviceSize, alignment: DeviceSize) -> DeviceLayout {
    DeviceLayout::from_size_alignment(size, alignment).unwrap()
}

fn alloc(
    c: &mut Checker<BumpAllocator>,
    size: DeviceSize,
    alignment: DeviceSize,
    ty: AllocationType,
) -> Result<DeviceSize, SuballocatorError> {
    c.allocate(layout(size, alignment), ty).map(|s| s.offset)
}

fn ranges(sub: &BumpAllocator) -> Vec<RangeInfo> {
    let mut out = Vec::new();
    sub.for_each_range(&mut |r| out.push(r));
    out
}

#[test]
fn allocations_follow_each_other_with_alignment_padding() {
    let mut c = Checker::new(BumpAllocator::new(1000), G1);
    assert_eq!(alloc(&mut c, 10, 1, Linear), Ok(0));
    assert_eq!(alloc(&mut c, 1, 16, Linear), Ok(16));
    assert_eq!(alloc(&mut c, 5, 1, NonLinear), Ok(17));
    // The 6 bytes of padding before 16 stay held.
    assert_eq!(c.sub.free_size(), 1000 - 22);
    assert_eq!(c.sub.largest_free_range(), 1000 - 22);
    assert_eq!(
        ranges(&c.sub),
        [
            RangeInfo {
                offset: 0,
                size: 22,
                kind: RangeKind::Allocated(Unknown)
            },
            RangeInfo {
                offset: 22,
                size: 978,
                kind: RangeKind::Free
            },
        ]
    );
}

#[test]
fn granularity_moves_only_past_a_conflicting_previous_page() {
    let g = DeviceAlignment::new(64).unwrap();
    let mut c = Checker::new(BumpAllocator::new(1024), g);
    assert_eq!(alloc(&mut c, 10, 1, Linear), Ok(0));
    assert_eq!(alloc(&mut c, 10, 1, Linear), Ok(10));
    assert_eq!(alloc(&mut c, 10, 1, NonLinear), Ok(64));
    assert_eq!(alloc(&mut c, 10, 1, NonLinear), Ok(74));
    assert_eq!(alloc(&mut c, 10, 1, Unknown), Ok(128));
    assert_eq!(alloc(&mut c, 10, 1, Unknown), Ok(192));
    // A previous range that ends on a page boundary leaves the next page untouched.
    assert_eq!(alloc(&mut c, 64, 1, Unknown), Ok(256));
    assert_eq!(alloc(&mut c, 1, 1, Linear), Ok(320));
    // Alignment first, then the page check on the aligned start.
    assert_eq!(alloc(&mut c, 1, 32, NonLinear), Ok(384));
    assert_eq!(c.sub.free_size(), 1024 - 385);
}

#[test]
fn region_is_reused_once_every_allocation_is_freed() {
    let mut c = Checker::new(BumpAllocator::new(100), G1);
    for expected in [0, 30, 60] {
        assert_eq!(alloc(&mut c, 30, 1, Linear), Ok(expected));
    }
    c.free(0);
    c.free(1);
    // One allocation is still live: the cursor stays where it is.
    assert_eq!(c.sub.free_size(), 10);
    assert_eq!(
        alloc(&mut c, 30, 1, Linear),
        Err(SuballocatorError::OutOfRegionMemory)
    );
    c.free(0);
    assert_eq!(c.sub.free_size(), 100);
    assert_eq!(alloc(&mut c, 100, 1, Linear), Ok(0));
}

#[test]
fn reset_rewinds_the_cursor() {
    let g = DeviceAlignment::new(16).unwrap();
    let mut c = Checker::new(BumpAllocator::new(64), g);
    alloc(&mut c, 7, 1, Linear).unwrap();
    alloc(&mut c, 7, 1, NonLinear).unwrap();
    let mut sub = c.sub;
    sub.reset();
    assert_eq!((sub.allocation_count(), sub.free_size()), (0, 64));
    assert_eq!(
        ranges(&sub),
        [RangeInfo {
            offset: 0,
            size: 64,
            kind: RangeKind::Free
        }]
    );
    // The type of the allocation before the reset no longer matters.
    let mut c = Checker::new(sub, g);
    assert_eq!(alloc(&mut c, 7, 1, Linear), Ok(0));
}

#[test]
fn error_kinds_and_tiny_regions() {
    let mut c = Checker::new(BumpAllocator::new(0), G1);
    assert!(ranges(&c.sub).is_empty());
    assert_eq!(
        alloc(&mut c, 1, 1, Linear),
        Err(SuballocatorError::OutOfRegionMemory)
    );
    let mut c = Checker::new(BumpAllocator::new(1), G1);
    assert_eq!(alloc(&mut c, 1, 1, Linear), Ok(0));
    assert_eq!(
        alloc(&mut c, 1, 1, Linear),
        Err(SuballocatorError::OutOfRegionMemory)
    );
    let mut c = Checker::new(BumpAllocator::new(101), G1);
    assert_eq!(alloc(&mut c, 1, 1, Linear), Ok(0));
    // 100 bytes are free, but alignment skips one of them.
    assert_eq!(
        alloc(&mut c, 100, 2, Linear),
        Err(SuballocatorError::FragmentedRegion)
    );
    assert_eq!(
        alloc(&mut c, 101, 1, Linear),
        Err(SuballocatorError::OutOfRegionMemory)
    );
    // Or a page boundary does.
    let g = DeviceAlignment::new(4).unwrap();
    let mut c = Checker::new(BumpAllocator::new(11), g);
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
    let mut c = Checker::new(BumpAllocator::new(u64::MAX), DeviceAlignment::MAX);
    let max = DeviceLayout::MAX_SIZE;
    assert_eq!(alloc(&mut c, max, 1, Linear), Ok(0));
    assert_eq!(alloc(&mut c, max - 5, 1, Linear), Ok(max));
    assert_eq!(c.sub.free_size(), 6);
    // Rounding the cursor up to a multiple of 2^62 would wrap around.
    assert_eq!(
        alloc(&mut c, 1, 1 << 62, Linear),
        Err(SuballocatorError::FragmentedRegion)
    );
    // So would moving past the conflicting previous page.
    assert_eq!(
        alloc(&mut c, 1, 1, NonLinear),
        Err(SuballocatorError::FragmentedRegion)
    );
    // Same type: no page to skip, the allocation fits right after.
    assert_eq!(alloc(&mut c, 6, 1, Linear), Ok(u64::MAX - 6));
    c.free_all_and_reuse(max);
    assert_eq!(alloc(&mut c, 1, 1, Unknown), Ok(0));
    // The next page starts at 2^63, and that fits.
    assert_eq!(alloc(&mut c, 1, 1, Unknown), Ok(1 << 63));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(crate::suballocator::testing::cases(64)))]

    #[test]
    fn random_sequences_keep_the_invariants(
        region in testing::log_uniform_size(1 << 22),
        granularity in testing::granularity(),
        ops in testing::op_sequence(1 << 12, 200..2000),
    ) {
        let mut c = Checker::new(BumpAllocator::new(region), granularity);
        c.run(&ops);
        c.free_all_and_reuse(region);
    }
}

#[test]
fn the_epoch_wraps_in_32_bits_and_every_handle_fits() {
    // Handles fit in 32 bits (so an allocation holding one stays three words): the epoch wraps
    // there, and a region reused across the wrap serves and frees as before.
    let mut c = Checker::new(BumpAllocator::new(1024), G1);
    c.sub.epoch = u32::MAX;
    let first = c.allocate(layout(64, 16), Linear).unwrap();
    assert_eq!(first.handle.get(), u64::from(u32::MAX));
    c.free(0);
    assert_eq!(
        c.sub.epoch, 0,
        "the last free rewound the region into the next epoch"
    );
    let second = c.allocate(layout(64, 16), Linear).unwrap();
    assert_eq!((second.offset, second.handle.get()), (0, 0));
    c.free(0);
    assert_eq!(c.sub.free_size(), 1024);
}
