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

fn alloc<const B: u64>(
    c: &mut Checker<SlotAllocator<B>>,
    size: DeviceSize,
    alignment: DeviceSize,
) -> Result<DeviceSize, SuballocatorError> {
    c.allocate(layout(size, alignment), AllocationType::Linear)
        .map(|s| s.offset)
}

#[test]
fn slots_are_handed_out_in_order_then_last_freed_first() {
    // 1000 bytes: three slots of 256, the last 232 bytes are ignored.
    let mut c = Checker::new(SlotAllocator::<256>::new(1000), G1);
    assert_eq!(c.sub.region_size(), 768);
    assert_eq!(c.sub.slot_count(), 3);
    assert_eq!(c.sub.free_size(), 768);
    assert_eq!(alloc(&mut c, 1, 1), Ok(0));
    assert_eq!(alloc(&mut c, 256, 1), Ok(256));
    assert_eq!(alloc(&mut c, 100, 64), Ok(512));
    assert_eq!(c.sub.free_size(), 0);
    assert_eq!(c.sub.largest_free_range(), 0);
    assert_eq!(
        alloc(&mut c, 1, 1),
        Err(SuballocatorError::OutOfRegionMemory)
    );
    c.free(1); // the slot at 256
    c.free(0); // the slot at 0
    assert_eq!(c.sub.free_size(), 512);
    assert_eq!(c.sub.largest_free_range(), 256);
    assert_eq!(alloc(&mut c, 8, 1), Ok(0));
    assert_eq!(alloc(&mut c, 8, 1), Ok(256));
    c.free_all_and_reuse(256);
    // After the pool emptied, it starts again from the first slot.
    assert_eq!(alloc(&mut c, 8, 1), Ok(0));
}

#[test]
fn empty_pools() {
    let mut c = Checker::new(SlotAllocator::<0>::new(100), G1);
    assert_eq!((c.sub.region_size(), c.sub.largest_free_range()), (0, 0));
    assert_eq!(
        alloc(&mut c, 1, 1),
        Err(SuballocatorError::BlockSizeExceeded)
    );
    let mut c = Checker::new(SlotAllocator::<256>::new(255), G1);
    assert_eq!(c.sub.region_size(), 0);
    assert_eq!(
        alloc(&mut c, 1, 1),
        Err(SuballocatorError::OutOfRegionMemory)
    );
    let mut c = Checker::new(SlotAllocator::<1>::new(1), G1);
    assert_eq!(alloc(&mut c, 1, 1), Ok(0));
    assert_eq!(
        alloc(&mut c, 2, 1),
        Err(SuballocatorError::BlockSizeExceeded)
    );
    assert_eq!(
        alloc(&mut c, 1, 2),
        Err(SuballocatorError::BlockSizeExceeded)
    );
    assert_eq!(
        alloc(&mut c, 1, 1),
        Err(SuballocatorError::OutOfRegionMemory)
    );
}

#[test]
fn offsets_honour_alignments_above_the_slot_alignment() {
    // Slots of 96 bytes start at multiples of 32 only.
    let mut c = Checker::new(SlotAllocator::<96>::new(4 * 96 + 50), G1);
    let offsets: Vec<_> = (0..4).map(|_| alloc(&mut c, 32, 64).unwrap()).collect();
    assert_eq!(offsets, [0, 128, 192, 320]);
    c.free_all_and_reuse(96);
    // Padding up to 64 - 32 bytes must be left whichever slot the request gets.
    assert_eq!(SlotAllocator::<96>::max_request_size(a(64), G1), 64);
    assert_eq!(alloc(&mut c, 64, 64), Ok(0));
    assert_eq!(
        alloc(&mut c, 65, 64),
        Err(SuballocatorError::BlockSizeExceeded)
    );
    assert_eq!(alloc(&mut c, 96, 32), Ok(96));
    assert_eq!(
        alloc(&mut c, 97, 1),
        Err(SuballocatorError::BlockSizeExceeded)
    );
    assert_eq!(
        alloc(&mut c, 1, 128),
        Err(SuballocatorError::BlockSizeExceeded)
    );
    assert_eq!(SlotAllocator::<96>::max_request_size(a(128), G1), 0);
}

#[test]
fn granularity_dividing_the_slot_costs_nothing() {
    let mut c = Checker::new(SlotAllocator::<256>::new(1024), a(64));
    assert_eq!(SlotAllocator::<256>::max_request_size(G1, a(64)), 256);
    let types = [
        AllocationType::Linear,
        AllocationType::NonLinear,
        AllocationType::Unknown,
        AllocationType::Linear,
    ];
    for (i, ty) in types.into_iter().enumerate() {
        let s = c.allocate(layout(256, 1), ty).unwrap();
        assert_eq!(s.offset, i as u64 * 256);
    }
}

#[test]
fn granularity_larger_than_the_slot_alignment_takes_whole_pages() {
    let g = a(64);
    let mut c = Checker::new(SlotAllocator::<96>::new(4 * 96), g);
    // Worst case: 32 bytes of padding, and the rest rounded down to whole pages.
    assert_eq!(SlotAllocator::<96>::max_request_size(G1, g), 64);
    let types = [
        AllocationType::Linear,
        AllocationType::NonLinear,
        AllocationType::Linear,
        AllocationType::Unknown,
    ];
    let offsets: Vec<_> = types
        .into_iter()
        .map(|ty| c.allocate(layout(64, 1), ty).unwrap().offset)
        .collect();
    assert_eq!(offsets, [0, 128, 192, 320]);
    c.free_all_and_reuse(64);
    assert_eq!(
        alloc(&mut c, 65, 1),
        Err(SuballocatorError::BlockSizeExceeded)
    );
    // A page larger than a slot can never be owned by one: slots share pages instead, and
    // only alignment padding limits the size.
    assert_eq!(SlotAllocator::<96>::max_request_size(G1, a(128)), 96);
    assert_eq!(SlotAllocator::<96>::max_request_size(a(64), a(128)), 64);
}

#[test]
fn reset_frees_every_slot() {
    let mut c = Checker::new(SlotAllocator::<16>::new(64), G1);
    for _ in 0..4 {
        alloc(&mut c, 16, 16).unwrap();
    }
    let mut sub = c.sub;
    sub.reset();
    assert_eq!((sub.allocation_count(), sub.free_size()), (0, 64));
    let mut c = Checker::new(sub, G1);
    let offsets: Vec<_> = (0..4).map(|_| alloc(&mut c, 16, 16).unwrap()).collect();
    assert_eq!(offsets, [0, 16, 32, 48]);
}

/// The pool's own bookkeeping: the typed groups agree with the slots.
fn check_internal<const B: u64>(pool: &SlotAllocator<B>) {
    pool.groups
        .check(&|slot| match pool.slots.get(slot as usize) {
            Some(&Slot::Allocated(ty)) => Some(ty),
            _ => None,
        });
    let live = pool
        .slots
        .iter()
        .filter(|s| matches!(s, Slot::Allocated(_)))
        .count();
    assert_eq!(live, pool.allocation_count);
}

fn alloc_typed<const B: u64>(
    c: &mut Checker<SlotAllocator<B>>,
    size: DeviceSize,
    ty: AllocationType,
) -> Result<DeviceSize, SuballocatorError> {
    let result = c.allocate(layout(size, 1), ty).map(|s| s.offset);
    check_internal(&c.sub);
    result
}

/// Frees the live allocation at `offset`.
fn free_at<const B: u64>(c: &mut Checker<SlotAllocator<B>>, offset: DeviceSize) {
    let mut live: Vec<_> = (0..c.sub.slots.len() as u64)
        .filter(|&i| matches!(c.sub.slots[i as usize], Slot::Allocated(_)))
        .collect();
    live.sort_unstable();
    // Offsets of slots are in slot order; with alignment 1 an allocation starts its slot.
    c.free(live.iter().position(|&i| i * B == offset).unwrap());
    check_internal(&c.sub);
}

#[test]
fn slots_smaller_than_a_page_share_it_with_their_type_only() {
    // 16 slots of 256 bytes, 1 KiB pages: 4 slots per page.
    let g = a(1024);
    let mut c = Checker::new(SlotAllocator::<256>::new(4096), g);
    assert_eq!(SlotAllocator::<256>::max_request_size(G1, g), 256);
    assert_eq!(SlotAllocator::<256>::max_request_size(a(512), g), 0);
    for expected in [0, 256, 512, 768] {
        assert_eq!(alloc_typed(&mut c, 256, Linear), Ok(expected));
    }
    // The first page is full: a new type, and then the same, take pages of their own.
    assert_eq!(alloc_typed(&mut c, 100, NonLinear), Ok(1024));
    assert_eq!(alloc_typed(&mut c, 1, Linear), Ok(2048));
    // Unknown takes a page of its own and holds it.
    assert_eq!(alloc_typed(&mut c, 1, Unknown), Ok(3072));
    assert_eq!(alloc_typed(&mut c, 1, NonLinear), Ok(1280));
    // No empty page is left: free slots exist, but none an unknown range may take.
    assert_eq!(c.sub.free_size(), 8 * 256);
    assert_eq!(c.sub.largest_free_range(), 256);
    assert_eq!(
        alloc_typed(&mut c, 1, Unknown),
        Err(SuballocatorError::FragmentedRegion)
    );
    // The unknown page's three free slots serve nobody while it lives.
    for expected in [1536, 1792] {
        assert_eq!(alloc_typed(&mut c, 1, NonLinear), Ok(expected));
    }
    assert_eq!(
        alloc_typed(&mut c, 1, NonLinear),
        Err(SuballocatorError::FragmentedRegion)
    );
    free_at(&mut c, 3072);
    assert_eq!(alloc_typed(&mut c, 1, NonLinear), Ok(3072));
    // Freed slots of a page go back to its type, last freed first.
    free_at(&mut c, 256);
    free_at(&mut c, 768);
    assert_eq!(alloc_typed(&mut c, 1, Linear), Ok(768));
    assert_eq!(alloc_typed(&mut c, 1, Linear), Ok(256));
    // A page emptied of its last slot serves any type again.
    free_at(&mut c, 2048);
    assert_eq!(alloc_typed(&mut c, 1, Unknown), Ok(2048));
    assert_eq!(
        alloc_typed(&mut c, 1, Linear),
        Err(SuballocatorError::FragmentedRegion)
    );
    c.free_all_and_reuse(256);
    check_internal(&c.sub);
}

#[test]
fn slots_not_dividing_the_page_are_typed_in_runs_of_whole_pages() {
    // 96-byte slots start at multiples of 32; with 1 KiB pages a group is
    // 1024 / 32 = 32 slots, 3072 bytes, exactly 3 pages. 40 slots: one whole group and 8
    // slots of the next.
    let g = a(1024);
    let mut c = Checker::new(SlotAllocator::<96>::new(40 * 96), g);
    assert_eq!(SlotAllocator::<96>::max_request_size(G1, g), 96);
    assert_eq!(alloc_typed(&mut c, 96, Linear), Ok(0));
    assert_eq!(alloc_typed(&mut c, 96, NonLinear), Ok(3072));
    assert_eq!(
        alloc_typed(&mut c, 96, Unknown),
        Err(SuballocatorError::FragmentedRegion)
    );
    for i in 1..32 {
        assert_eq!(alloc_typed(&mut c, 96, Linear), Ok(i * 96));
    }
    assert_eq!(
        alloc_typed(&mut c, 96, Linear),
        Err(SuballocatorError::FragmentedRegion)
    );
    for i in 33..40 {
        assert_eq!(alloc_typed(&mut c, 96, NonLinear), Ok(i * 96));
    }
    assert_eq!(
        alloc_typed(&mut c, 1, NonLinear),
        Err(SuballocatorError::OutOfRegionMemory)
    );
    c.free_all_and_reuse(96);
}

#[test]
fn slots_too_small_to_own_a_page_use_groups_too() {
    // 1000-byte slots start at multiples of 8: with 512-byte pages, the worst slot keeps
    // 1000 - 504 = 496 bytes after aligning to a page, less than a page. Before groups, such a
    // pool served nothing; now a group is 512 / 8 = 64 slots (125 pages).
    let g = a(512);
    assert_eq!(SlotAllocator::<1000>::max_request_size(G1, g), 1000);
    assert_eq!(SlotAllocator::<1000>::max_request_size(G1, a(256)), 512);
    let mut c = Checker::new(SlotAllocator::<1000>::new(130 * 1000), g);
    assert_eq!(alloc_typed(&mut c, 1000, Unknown), Ok(0));
    assert_eq!(alloc_typed(&mut c, 1000, Linear), Ok(64_000));
    assert_eq!(alloc_typed(&mut c, 1000, NonLinear), Ok(128_000));
    assert_eq!(alloc_typed(&mut c, 1000, NonLinear), Ok(129_000));
    assert_eq!(
        alloc_typed(&mut c, 1000, NonLinear),
        Err(SuballocatorError::FragmentedRegion)
    );
    c.free_all_and_reuse(1000);
}

#[test]
fn a_change_of_granularity_while_slots_are_live_is_refused() {
    let mut c = Checker::new(SlotAllocator::<256>::new(4096), a(1024));
    assert_eq!(alloc_typed(&mut c, 1, Linear), Ok(0));
    let sub = &mut c.sub;
    for g in [G1, a(512), a(2048)] {
        assert_eq!(
            sub.allocate(layout(1, 1), Linear, g),
            Err(SuballocatorError::FragmentedRegion)
        );
    }
    let mut c = Checker::new(SlotAllocator::<256>::new(256), a(1024));
    alloc_typed(&mut c, 1, NonLinear).unwrap();
    // Full: the refusal says so.
    assert_eq!(
        c.sub.allocate(layout(1, 1), Linear, G1),
        Err(SuballocatorError::OutOfRegionMemory)
    );
    // Slots taken without groups are live: a granularity that needs groups is refused.
    let mut sub = SlotAllocator::<256>::new(4096);
    let s = sub.allocate(layout(1, 1), Linear, G1).unwrap();
    assert_eq!(
        sub.allocate(layout(1, 1), Linear, a(1024)),
        Err(SuballocatorError::FragmentedRegion)
    );
    // Once the pool is empty, any granularity goes.
    // SAFETY: `s` comes from `sub` and is freed once.
    #[allow(unsafe_code)]
    unsafe {
        sub.deallocate(s)
    };
    check_internal(&sub);
    let mut c = Checker::new(sub, a(1024));
    assert_eq!(alloc_typed(&mut c, 1, NonLinear), Ok(0));
    assert_eq!(alloc_typed(&mut c, 1, NonLinear), Ok(256));
}

#[test]
fn huge_granularities_make_one_group() {
    let mut c = Checker::new(SlotAllocator::<96>::new(10 * 96), DeviceAlignment::MAX);
    assert_eq!(alloc_typed(&mut c, 96, Linear), Ok(0));
    assert_eq!(
        alloc_typed(&mut c, 96, NonLinear),
        Err(SuballocatorError::FragmentedRegion)
    );
    assert_eq!(alloc_typed(&mut c, 96, Linear), Ok(96));
    c.free_all_and_reuse(96);
    let mut c = Checker::new(SlotAllocator::<1>::new(1000), DeviceAlignment::MAX);
    assert_eq!(alloc_typed(&mut c, 1, Unknown), Ok(0));
    assert_eq!(
        alloc_typed(&mut c, 1, Unknown),
        Err(SuballocatorError::FragmentedRegion)
    );
    c.free_all_and_reuse(1);
}

/// Random operations on a pool of `slots` slots plus an ignored tail, then a check that
/// every slot can be taken again once everything is freed.
fn random_run<const B: u64>(slots: u64, tail: u64, g: DeviceAlignment, ops: &[Op]) {
    let mut c = Checker::new(SlotAllocator::<B>::new(slots * B + tail % B), g);
    assert_eq!(c.sub.region_size(), slots * B);
    for chunk in ops.chunks(16) {
        c.run(chunk);
        check_internal(&c.sub);
    }
    let whole = SlotAllocator::<B>::max_request_size(G1, g);
    c.free_all_and_reuse(whole);
    if whole == 0 {
        assert_eq!(
            alloc(&mut c, 1, 1),
            Err(SuballocatorError::BlockSizeExceeded)
        );
        return;
    }
    // Unknown ranges can take every slot, unless slots share pages: then one per group.
    let grouped = SlotAllocator::<B>::page_rule(g) == PageRule::Groups;
    let ty = if grouped { Linear } else { Unknown };
    let mut offsets: Vec<_> = (0..slots)
        .map(|_| c.allocate(layout(whole, 1), ty).unwrap().offset / B)
        .collect();
    offsets.sort_unstable();
    assert!(offsets.iter().copied().eq(0..slots), "{offsets:?}");
    assert_eq!(
        alloc(&mut c, 1, 1),
        Err(SuballocatorError::OutOfRegionMemory)
    );
    if grouped {
        c.free_all_and_reuse(whole);
        let group_slots = 1u64 << (g.log2() - B.trailing_zeros());
        let groups = slots.div_ceil(group_slots);
        let mut offsets: Vec<_> = (0..groups)
            .map(|_| c.allocate(layout(whole, 1), Unknown).unwrap().offset / B)
            .collect();
        offsets.sort_unstable();
        assert!(offsets
            .iter()
            .copied()
            .eq((0..groups).map(|k| k * group_slots)));
        let error = c.allocate(layout(1, 1), Unknown).unwrap_err();
        assert_eq!(error, c.sub.no_slot(1), "{error:?}");
    }
    check_internal(&c.sub);
}

/// Operations whose requests mostly fit a slot of `block` bytes: alignments up to twice the
/// slot alignment.
fn fitting_ops(block: u64) -> impl Strategy<Value = Vec<Op>> {
    let max_align_log = block.trailing_zeros() + 1;
    testing::fifo_op_sequence(block, 200..3000, 30).prop_map(move |ops| {
        ops.into_iter()
            .map(|op| match op {
                Op::Alloc {
                    size,
                    align_log,
                    ty,
                } => Op::Alloc {
                    size,
                    align_log: align_log % (max_align_log + 1),
                    ty,
                },
                op => op,
            })
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(crate::suballocator::testing::cases(64)))]

    #[test]
    fn random_sequences_keep_the_invariants(
        block in 0..4usize,
        slots in 1u64..64,
        tail in any::<u64>(),
        granularity in testing::granularity(),
        ops in testing::op_sequence(4096, 200..2000),
    ) {
        match block {
            0 => random_run::<256>(slots, tail, granularity, &ops),
            1 => random_run::<96>(slots, tail, granularity, &ops),
            2 => random_run::<1000>(slots, tail, granularity, &ops),
            _ => random_run::<{ 3 << 16 }>(slots, tail, granularity, &ops),
        }
    }

    /// Slots smaller than a page (or too close to one to own it), mixed types, requests that
    /// fit a slot: slots share pages.
    #[test]
    fn slots_sharing_pages_keep_the_invariants(
        block in 0..4usize,
        slots in 1u64..600,
        tail in any::<u64>(),
        granularity in (10..=16u32).prop_map(|log| DeviceAlignment::from_log2(log).unwrap()),
        ops in (0..4usize).prop_flat_map(|b| fitting_ops([64, 96, 256, 1000][b])),
    ) {
        // `ops` was drawn for some block size; they all fit 64..1000-byte slots reasonably.
        match block {
            0 => random_run::<64>(slots, tail, granularity, &ops),
            1 => random_run::<96>(slots, tail, granularity, &ops),
            2 => random_run::<256>(slots, tail, granularity, &ops),
            _ => random_run::<1000>(slots, tail, granularity, &ops),
        }
    }
}

#[test]
fn region_size_for_is_the_smallest_region_that_serves_the_request() {
    fn check<const B: u64>(size: u64, alignment: u64, g: u64) -> Option<u64> {
        let layout = layout(size, alignment);
        let g = a(g);
        let region = SlotAllocator::<B>::region_size_for(layout, AllocationType::Linear, g)?;
        let mut pool = SlotAllocator::<B>::new(region);
        assert!(
            pool.allocate(layout, AllocationType::Linear, g).is_ok(),
            "a fresh region of {region} bytes refused {size} bytes for slots of {B}"
        );
        Some(region)
    }
    assert_eq!(check::<{ 64 << 20 }>(4096, 256, 1024), Some(64 << 20));
    assert_eq!(
        check::<256>(16, 16, 1024),
        Some(1024),
        "a group of four slots"
    );
    assert_eq!(check::<96>(16, 16, 64), Some(96), "own pages");
    assert_eq!(
        check::<1000>(8, 8, 512),
        Some(64_000),
        "a group of 64 slots"
    );
    assert_eq!(check::<256>(257, 1, 1), None, "larger than a slot");
    assert_eq!(check::<0>(1, 1, 1), None);
}
