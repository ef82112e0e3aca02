//! Large requests in kept empty blocks ([`BlockVec::allocate_in_kept`]): the smallest empty
//! block that holds the request and that it is large for, never a block in use, never new
//! memory.

use super::*;

#[test]
fn a_large_request_takes_the_smallest_kept_block_it_is_large_for() {
    let h = Harness::<FreeListAllocator>::new(1, BlockLimits::NONE, 64 * MIB, 1);
    let fit = |size| h.fit(size, 256, AllocationType::Linear);
    let wrap = Live::of;
    // Nothing kept yet: nothing to reuse.
    assert!(h.vec.allocate_in_kept(&fit(20 * MIB), &wrap).is_none());
    // Sizable requests get blocks of their own size: 20, 40 and 60 MiB, then all empty.
    let made: Vec<_> = [20, 40, 60]
        .map(|m| h.allocate(&fit(m * MIB)).unwrap())
        .into_iter()
        .collect();
    assert_eq!(h.block_sizes(), [20 * MIB, 40 * MIB, 60 * MIB]);
    let ids: Vec<_> = made.iter().map(|l| l.block).collect();
    for l in made {
        h.free(l);
    }
    assert_eq!(h.empty_blocks(), 3, "kept under the mark");
    let memory = h.live_memory.load(Ordering::SeqCst);
    // 35 MiB: the 40 and 60 MiB blocks hold it and it is large for both: the smaller.
    let a = h.vec.allocate_in_kept(&fit(35 * MIB), &wrap).unwrap();
    assert_eq!(a.block, ids[1]);
    // The 40 MiB block is in use now: the next one takes the 60 MiB block.
    let b = h.vec.allocate_in_kept(&fit(35 * MIB), &wrap).unwrap();
    assert_eq!(b.block, ids[2]);
    // Nothing empty holds 35 MiB any more; 15 MiB is large for the 20 MiB block.
    assert!(h.vec.allocate_in_kept(&fit(35 * MIB), &wrap).is_none());
    let c = h.vec.allocate_in_kept(&fit(15 * MIB), &wrap).unwrap();
    assert_eq!(c.block, ids[0]);
    h.free(a);
    // 20 MiB is half of the 40 MiB block, not more: not large for it.
    assert!(h.vec.allocate_in_kept(&fit(20 * MIB), &wrap).is_none());
    let d = h.vec.allocate_in_kept(&fit(20 * MIB + 1), &wrap).unwrap();
    assert_eq!(d.block, ids[1]);
    // More than the block: never.
    h.free(d);
    assert!(h.vec.allocate_in_kept(&fit(40 * MIB + 1), &wrap).is_none());
    assert_eq!(
        h.live_memory.load(Ordering::SeqCst),
        memory,
        "no memory made"
    );
    for l in [b, c] {
        h.free(l);
    }
}

/// A kept block cut into arenas too small for the request is passed over for a larger one
/// that holds it whole.
#[test]
fn a_kept_block_whose_arenas_cannot_hold_the_request_is_passed_over() {
    let h = Harness::<FreeListAllocator>::new(4, BlockLimits::NONE, 64 * MIB, 1);
    let fit = |size| h.fit(size, 256, AllocationType::Linear);
    let wrap = Live::of;
    // 64 MiB in four arenas of 16 MiB, 80 MiB whole.
    h.add_block(64 * MIB, 16 * MIB, 4);
    h.add_block(80 * MIB, 80 * MIB, 4);
    // Both in use, then both emptied: the mark holds both, and they are kept.
    let large = h.allocate(&fit(41 * MIB)).unwrap();
    let small = h.allocate(&fit(MIB)).unwrap();
    assert_eq!((large.block, small.block), (1, 0));
    h.free(small);
    h.free(large);
    assert_eq!(h.empty_blocks(), 2);
    // 41 MiB is large for both; only the 80 MiB block has an arena that holds it.
    let a = h.vec.allocate_in_kept(&fit(41 * MIB), &wrap).unwrap();
    assert_eq!(a.block, 1);
    // 33 MiB is large for the 64 MiB block alone, whose arenas cannot hold it.
    h.free(a);
    assert!(h.vec.allocate_in_kept(&fit(33 * MIB), &wrap).is_none());
}
