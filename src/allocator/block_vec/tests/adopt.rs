//! Memory objects of their own left to the vector when their allocation is freed
//! ([`BlockVec::adopt_emptied`]): an empty block for large requests alone, that the rule for a
//! block that just emptied keeps or releases, never more blocks than the vector may hold, and
//! none in a vector without a mark (a custom pool's).

use super::*;
use std::sync::atomic::AtomicU64;

/// A harness whose vector counts `outside` bytes in use besides its blocks (the memory type's
/// dedicated allocations, as the allocator's default vectors do).
fn counting(limits: BlockLimits) -> (Harness<FreeListAllocator>, Arc<AtomicU64>) {
    let outside = Arc::new(AtomicU64::new(0));
    let mut h = Harness::new(1, limits, 64 * MIB, 1);
    h.vec = BlockVec::new_counting(1, limits, outside.clone());
    (h, outside)
}

/// An object of its own of `size` bytes, made beside the vector's blocks: counted in use, and
/// the mark sampled (as the allocator does for a dedicated allocation).
fn made_outside(h: &Harness<FreeListAllocator>, outside: &AtomicU64, size: DeviceSize) -> Mock {
    let object = h.make(size).unwrap();
    outside.fetch_add(size, Ordering::SeqCst);
    h.vec.outside_made();
    object
}

/// Its allocation is freed: no longer counted in use (the register forgets it first), then
/// offered to the vector. Returns what the vector hands back.
fn freed(h: &Harness<FreeListAllocator>, outside: &AtomicU64, object: Mock) -> Option<Mock> {
    outside.fetch_sub(object.size, Ordering::SeqCst);
    h.vec.adopt_emptied(object)
}

#[test]
fn a_freed_object_of_its_own_is_kept_as_a_whole_empty_block_under_the_mark() {
    let (h, outside) = counting(BlockLimits::default_vector(64 * MIB));
    let fit = |size| h.fit(size, 256, AllocationType::Linear);
    let small = h.allocate(&fit(20 * MIB)).unwrap();
    let object = made_outside(&h, &outside, 32 * MIB);
    let id = object.id;
    assert!(freed(&h, &outside, object).is_none(), "kept");
    assert_eq!(h.block_sizes(), [20 * MIB, 32 * MIB]);
    assert_eq!(h.empty_blocks(), 1);
    assert_eq!(h.live_memory.load(Ordering::SeqCst), 2, "nothing freed");
    // Kept for large requests alone: the searches of existing blocks pass it over.
    assert!(h
        .vec
        .allocate_existing(&fit(MIB), &Live::of)
        .unwrap()
        .is_none());
    // One arena, the whole object, for a request that leaves at most a sixteenth of it
    // unused (2 MiB of 32): 30 MiB does not take it, 30 MiB and a byte does, without new
    // memory.
    assert!(h.vec.allocate_in_kept(&fit(30 * MIB), &Live::of).is_none());
    let large = h
        .vec
        .allocate_in_kept(&fit(30 * MIB + 1), &Live::of)
        .unwrap();
    assert_eq!(large.block, id);
    assert_eq!(h.live_memory.load(Ordering::SeqCst), 2);
    // What it leaves serves no one: a small request gets a block of its own.
    let other = h.allocate(&fit(MIB)).unwrap();
    assert_ne!(other.block, id);
    assert_eq!(h.live_memory.load(Ordering::SeqCst), 3);
    for l in [large, small, other] {
        h.free(l);
    }
}

/// A vector that keeps one block's worth of empty memory, with a 20 MiB block in use.
fn keeping_one_block() -> (
    Harness<FreeListAllocator>,
    Arc<AtomicU64>,
    Live<FreeListAllocator>,
) {
    let (h, outside) = counting(BlockLimits {
        empty_kept: 1,
        ..BlockLimits::default_vector(64 * MIB)
    });
    let small = h
        .allocate(&h.fit(20 * MIB, 256, AllocationType::Linear))
        .unwrap();
    (h, outside, small)
}

#[test]
fn the_rule_for_an_emptied_block_decides_what_stays() {
    // Of two freed objects, the larger stays.
    let (h, outside, small) = keeping_one_block();
    let a = made_outside(&h, &outside, 40 * MIB);
    let b = made_outside(&h, &outside, 30 * MIB);
    assert!(freed(&h, &outside, a).is_none());
    assert!(
        freed(&h, &outside, b).is_none(),
        "taken, then released by the rule"
    );
    assert_eq!(h.block_sizes(), [20 * MIB, 40 * MIB]);
    assert_eq!(
        h.live_memory.load(Ordering::SeqCst),
        2,
        "the 30 MiB object freed"
    );
    h.free(small);
}

#[test]
fn a_vector_at_its_most_blocks_or_without_a_mark_hands_the_object_back() {
    let at_most_one = BlockLimits {
        max: 1,
        ..BlockLimits::default_vector(64 * MIB)
    };
    let (h, outside) = counting(at_most_one);
    let small = h
        .allocate(&h.fit(MIB, 256, AllocationType::Linear))
        .unwrap();
    let object = made_outside(&h, &outside, 40 * MIB);
    let back = freed(&h, &outside, object).expect("no room for a second block");
    assert_eq!(back.size, 40 * MIB);
    assert_eq!(h.block_sizes(), [8 * MIB]);
    drop(back);
    h.free(small);

    // A custom pool's vector keeps no blocks under a mark.
    let (h, outside) = counting(BlockLimits::pool(0, 8));
    let object = made_outside(&h, &outside, 40 * MIB);
    assert!(freed(&h, &outside, object).is_some());
    assert!(h.block_sizes().is_empty());
}

#[test]
fn objects_kept_for_large_requests_are_released_before_other_kept_blocks() {
    // A 30 MiB block made for a sizable request and a 40 MiB object a large request left are
    // empty together. By size the 40 MiB one would stay; it serves large requests alone, so
    // it goes first.
    let (h, outside, small) = keeping_one_block();
    let sizable = h
        .allocate(&h.fit(30 * MIB, 256, AllocationType::Linear))
        .unwrap();
    let object = made_outside(&h, &outside, 40 * MIB);
    h.free(sizable);
    assert!(freed(&h, &outside, object).is_none());
    assert_eq!(h.block_sizes(), [20 * MIB, 30 * MIB]);
    assert_eq!(
        h.live_memory.load(Ordering::SeqCst),
        2,
        "the 40 MiB object freed"
    );
    h.free(small);
}
