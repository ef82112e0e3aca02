//! Edges of the debug aids, on the driver under the validation layer (simulated layouts):
//! margins of odd, large and huge sizes on every allocation path (allocate, allocate_desc,
//! allocate_pages, allocate_from_type, custom pools of every suballocator) in coherent and
//! non-coherent memory; one damaged byte either side of every allocation is reported with the
//! right allocation, memory and offset; margins of neighbours never overlap; fill patterns
//! around defragmentation moves and skipped moves; the books (statistics, leak report) with
//! margins; and the leak check in every mode, during unwinding included.

mod common;
mod support;

use ash::vk::Handle;
use ash_memory::corruption::{CorruptionError, DamagedMargin, MARGIN_MAGIC, NEW_BYTE};
use ash_memory::*;
use std::panic::{catch_unwind, AssertUnwindSafe};
use support::{check_triples, fill, verify, GpuLayout, Sim, KIB, MIB};

#[path = "debug_aids_edges/books.rs"]
mod books;
#[path = "debug_aids_edges/defrag.rs"]
mod defrag;
#[path = "debug_aids_edges/driver.rs"]
mod driver;
#[path = "debug_aids_edges/paths.rs"]
mod paths;

/// An allocator with margins of `margin` bytes, fill patterns as asked, 4 MiB blocks of one
/// arena, and the debug builds' leak check (so that a leak fails the test).
pub(crate) fn allocator(
    device: &std::sync::Arc<MemoryDevice>,
    margin: u64,
    fill: bool,
) -> StandardMemoryAllocator {
    StandardMemoryAllocator::new(
        device.clone(),
        GenericMemoryAllocatorCreateInfo {
            block_sizes: BlockSizeThresholds::uniform(4 * MIB).unwrap(),
            block_arenas: Some(1),
            debug: DebugOptions {
                margin,
                fill_patterns: fill,
                leak_check: LeakCheck::Panic,
                ..Default::default()
            },
            ..Default::default()
        },
    )
    .unwrap()
}

pub(crate) fn reqs(ty: u32, size: u64, alignment: u64) -> AllocationRequirements {
    AllocationRequirements {
        layout: DeviceLayout::from_size_alignment(size, alignment).unwrap(),
        memory_type_bits: 1 << ty,
        prefers_dedicated_allocation: false,
        requires_dedicated_allocation: false,
    }
}

pub(crate) fn info(name: &str) -> AllocationCreateInfo {
    AllocationCreateInfo {
        usage: MemoryUsage::Upload,
        name: Some(name.into()),
        ..Default::default()
    }
}

/// The front margin of an allocation aligned to `alignment`: the margin rounded up to it.
pub(crate) fn front(margin: u64, alignment: u64) -> u64 {
    margin.next_multiple_of(alignment)
}

/// Writes `byte` at `offset_in_block` of `alloc`'s block, outside the allocation, and flushes
/// the allocation (in non-coherent memory the check also reads the host's view).
///
/// # Safety
///
/// The byte lies in one of `alloc`'s margins inside its mapped block.
pub(crate) unsafe fn poke(alloc: &MemoryAlloc, offset_in_block: u64, byte: u8) {
    // SAFETY: the caller's contract.
    unsafe { support::poke(alloc, offset_in_block, byte) };
    alloc.flush(0, alloc.size()).unwrap();
}

pub(crate) fn damaged(
    result: Result<corruption::CorruptionReport, CorruptionError>,
) -> Vec<DamagedMargin> {
    match result {
        Err(CorruptionError::Damaged { damaged, .. }) => damaged,
        other => panic!("expected damage, got {other:?}"),
    }
}

/// One live allocation probed: its range is as asked, the allocate fill is visible, writing
/// the whole range damages no margin, and one byte damaged just before and just after it is
/// reported (alone) with the right allocation, memory and offset, then repaired.
pub(crate) fn probe(
    allocator: &StandardMemoryAllocator,
    a: &mut MemoryAlloc,
    (size, alignment, seed): (u64, u64, u64),
    fills: bool,
    what: &str,
) {
    assert_eq!(a.size(), size, "{what}: size as asked");
    assert_eq!(a.offset() % alignment, 0, "{what}: offset aligned");
    assert!(!a.is_dedicated(), "{what}: suballocated");
    if fills {
        let mut back = vec![0u8; size as usize];
        a.read(0, &mut back).unwrap();
        assert!(back.iter().all(|&b| b == NEW_BYTE), "{what}: new fill");
    }
    fill(a, seed, size);
    let check = || allocator.check_corruption(u32::MAX);
    assert!(
        check().is_ok(),
        "{what}: writing the whole range damages no margin"
    );
    let magic = MARGIN_MAGIC.to_le_bytes();
    let o = a.offset();
    // The front margin is a multiple of 4 bytes long: its last byte is the word's last; the
    // back margin starts with the word's first.
    for (at, good, after) in [(o - 1, magic[3], false), (o + size, magic[0], true)] {
        // SAFETY: `at` is in one of `a`'s margins.
        unsafe { poke(a, at, !good) };
        let d = damaged(check());
        assert_eq!(d.len(), 1, "{what}: one damaged margin: {d:?}");
        let d = &d[0];
        assert_eq!(
            (d.offset, d.after, d.allocation_offset, d.allocation_size),
            (at, after, o, size),
            "{what}"
        );
        assert_eq!(d.memory, a.memory().as_raw(), "{what}");
        assert_eq!(d.memory_type_index, a.memory_type_index(), "{what}");
        assert_eq!(d.name.as_deref(), a.name(), "{what}");
        // SAFETY: as above.
        unsafe { poke(a, at, good) };
        assert!(check().is_ok(), "{what}: repaired");
    }
    verify(a, seed, size, what);
}

/// The margins of live allocations, as the docs lay them out (at least `margin` bytes each
/// side, the front one rounded up to the alignment), never overlap.
pub(crate) fn assert_margins_apart(live: &[(MemoryAlloc, u64, u64, u64)], margin: u64, what: &str) {
    let mut spans: Vec<_> = live
        .iter()
        .filter(|(a, ..)| !a.is_dedicated())
        .map(|(a, alignment, _, _)| {
            (
                a.memory().as_raw(),
                a.offset() - front(margin, *alignment),
                a.offset() + a.size() + margin,
            )
        })
        .collect();
    spans.sort_unstable();
    for w in spans.windows(2) {
        if w[0].0 == w[1].0 {
            assert!(w[0].2 <= w[1].1, "{what}: margins overlap: {w:?}");
        }
    }
}

pub(crate) const SHAPES: [(u64, u64); 6] =
    [(1, 1), (3, 2), (100, 4), (333, 64), (1000, 256), (64, 4096)];

/// A host-visible pool of 1 MiB one-arena blocks in `allocator`.
pub(crate) fn defrag_pool(
    allocator: &StandardMemoryAllocator,
    name: &str,
) -> MemoryPool<FreeListAllocator> {
    allocator
        .create_pool::<FreeListAllocator>(&PoolCreateInfo {
            name: Some(name.into()),
            memory_type: PoolMemoryType::Index(1),
            block_size: MIB,
            block_arenas: Some(1),
            ..Default::default()
        })
        .unwrap()
}

pub(crate) fn panic_text(e: &(dyn std::any::Any + Send)) -> String {
    e.downcast_ref::<String>()
        .cloned()
        .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}
