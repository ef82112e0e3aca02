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

/// An allocator with margins of `margin` bytes, fill patterns as asked, 4 MiB blocks of one
/// arena, and the debug builds' leak check (so that a leak fails the test).
fn allocator(device: &std::sync::Arc<MemoryDevice>, margin: u64, fill: bool) -> StandardMemoryAllocator {
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

fn reqs(ty: u32, size: u64, alignment: u64) -> AllocationRequirements {
    AllocationRequirements {
        layout: DeviceLayout::from_size_alignment(size, alignment).unwrap(),
        memory_type_bits: 1 << ty,
        prefers_dedicated_allocation: false,
        requires_dedicated_allocation: false,
    }
}

fn info(name: &str) -> AllocationCreateInfo {
    AllocationCreateInfo {
        usage: MemoryUsage::Upload,
        name: Some(name.into()),
        ..Default::default()
    }
}

/// The front margin of an allocation aligned to `alignment`: the margin rounded up to it.
fn front(margin: u64, alignment: u64) -> u64 {
    margin.next_multiple_of(alignment)
}

/// Writes `byte` at `offset_in_block` of `alloc`'s block, outside the allocation, and flushes
/// the allocation (in non-coherent memory the check also reads the host's view).
///
/// # Safety
///
/// The byte lies in one of `alloc`'s margins inside its mapped block.
unsafe fn poke(alloc: &MemoryAlloc, offset_in_block: u64, byte: u8) {
    // SAFETY: the caller's contract.
    unsafe { support::poke(alloc, offset_in_block, byte) };
    alloc.flush(0, alloc.size()).unwrap();
}

fn damaged(result: Result<corruption::CorruptionReport, CorruptionError>) -> Vec<DamagedMargin> {
    match result {
        Err(CorruptionError::Damaged { damaged, .. }) => damaged,
        other => panic!("expected damage, got {other:?}"),
    }
}

/// One live allocation probed: its range is as asked, the allocate fill is visible, writing
/// the whole range damages no margin, and one byte damaged just before and just after it is
/// reported (alone) with the right allocation, memory and offset, then repaired.
fn probe(
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
    assert!(check().is_ok(), "{what}: writing the whole range damages no margin");
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
fn assert_margins_apart(live: &[(MemoryAlloc, u64, u64, u64)], margin: u64, what: &str) {
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

const SHAPES: [(u64, u64); 6] = [(1, 1), (3, 2), (100, 4), (333, 64), (1000, 256), (64, 4096)];

/// Every allocation path, with its margins probed.
fn every_path(sim: &Sim, ty: u32, margin: u64) {
    let device = sim.memory_device();
    let allocator = allocator(&device, margin, true);
    let what = |path: &str| format!("{} type {ty}, margin {margin}, {path}", sim.state.layout.name);
    let mut live: Vec<(MemoryAlloc, u64, u64, u64)> = Vec::new();
    let mut seed = 0;
    for (size, alignment) in SHAPES {
        seed += 1;
        let r = reqs(ty, size, alignment);
        let mut made = vec![
            (
                "allocate",
                allocator
                    .allocate(r, AllocationType::Linear, &info("allocate"), None)
                    .unwrap(),
            ),
            (
                "allocate_desc",
                allocator
                    .allocate_desc(&AllocationDesc {
                        create_info: info("desc"),
                        allocation_type: AllocationType::NonLinear,
                        ..AllocationDesc::new(r)
                    })
                    .unwrap(),
            ),
            (
                "allocate_from_type",
                allocator
                    .allocate_from_type(ty, r.layout, AllocationType::Linear, &info("typed"))
                    .unwrap(),
            ),
        ];
        for page in allocator
            .allocate_pages(r, AllocationType::Linear, &info("page"), 3)
            .unwrap()
        {
            made.push(("allocate_pages", page));
        }
        for (path, mut a) in made {
            probe(&allocator, &mut a, (size, alignment, seed), true, &what(path));
            live.push((a, alignment, size, seed));
        }
    }
    assert_margins_apart(&live, margin, &what("all paths"));
    let triples: Vec<_> = live.iter().map(|(a, al, ..)| (a, *al)).collect();
    check_triples(&triples, &sim.state, sim.state.layout.buffer_image_granularity);
    for (a, _, size, seed) in &live {
        verify(a, *seed, *size, &what("after all probes"));
    }
    let report = allocator.check_corruption(u32::MAX).unwrap();
    assert_eq!(report.checked_allocations, live.len() as u64);
    drop(live);
    drop(allocator);
}

fn pool_paths<S: Suballocator + Send + 'static>(sim: &Sim, ty: u32, margin: u64, name: &str) {
    let device = sim.memory_device();
    let allocator = allocator(&device, margin, true);
    let pool = allocator
        .create_pool::<S>(&PoolCreateInfo {
            name: Some(name.into()),
            memory_type: PoolMemoryType::Index(ty),
            block_size: MIB,
            block_arenas: Some(1),
            ..Default::default()
        })
        .unwrap();
    let what = |s: &str| format!("{} pool {name}, margin {margin}, {s}", sim.state.layout.name);
    let mut live: Vec<(MemoryAlloc, u64, u64, u64)> = Vec::new();
    for (i, (size, alignment)) in SHAPES.into_iter().enumerate() {
        let seed = 100 + i as u64;
        let mut a = pool
            .allocate(
                reqs(ty, size, alignment),
                AllocationType::Linear,
                &info(name),
                None,
            )
            .unwrap();
        probe(&allocator, &mut a, (size, alignment, seed), true, &what("allocate"));
        let d = {
            // SAFETY: the byte before `a` is its front margin.
            unsafe { poke(&a, a.offset() - 1, 0x5A) };
            let d = damaged(pool.check_corruption());
            // SAFETY: as above, restored.
            unsafe { poke(&a, a.offset() - 1, MARGIN_MAGIC.to_le_bytes()[3]) };
            d
        };
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].pool.as_deref(), Some(name), "{}", what("pool named"));
        live.push((a, alignment, size, seed));
    }
    assert_margins_apart(&live, margin, &what("pool"));
    for (a, _, size, seed) in &live {
        verify(a, *seed, *size, &what("after all probes"));
    }
    assert!(pool.check_corruption().is_ok());
    drop(live);
    drop(pool);
    drop(allocator);
}

/// Margins of several sizes (odd multiples of 4, larger than the alignment, larger than an
/// atom) on every path, in coherent memory (NVIDIA-like type 1) and non-coherent memory with
/// a 128-byte atom (the mobile layout's type 1).
#[test]
fn margins_on_every_path_keep_the_range_and_catch_one_byte_either_side() {
    for (layout, ty) in [(GpuLayout::nvidia_discrete(), 1), (GpuLayout::mobile(), 1)] {
        let sim = Sim::new(layout);
        for margin in [4, 12, 36, 260, 4100] {
            every_path(&sim, ty, margin);
            pool_paths::<FreeListAllocator>(&sim, ty, margin, "free list");
            pool_paths::<BuddyAllocator>(&sim, ty, margin, "buddy");
            pool_paths::<SlotAllocator<{ 32 * 1024 }>>(&sim, ty, margin, "slot");
            pool_paths::<BumpAllocator>(&sim, ty, margin, "bump");
            pool_paths::<RingAllocator>(&sim, ty, margin, "ring");
        }
        sim.assert_nothing_allocated();
    }
}

/// Margins that make a request not fit a block: a pool request whose margins exactly fill a
/// block is suballocated with both margins intact; one byte more, and it is refused or made
/// dedicated (no margins), never truncated and never a panic; the allocator's own blocks
/// move such a request to a dedicated allocation of the size asked.
#[test]
fn huge_margins_never_shrink_a_request() {
    let sim = Sim::new(GpuLayout::nvidia_discrete());
    let device = sim.memory_device();
    let margin = 256 * KIB;
    let allocator = allocator(&device, margin, true);
    let pool = allocator
        .create_pool::<FreeListAllocator>(&PoolCreateInfo {
            memory_type: PoolMemoryType::Index(1),
            block_size: MIB,
            block_arenas: Some(1),
            ..Default::default()
        })
        .unwrap();
    // 256 KiB + 512 KiB + 256 KiB: exactly one block.
    let mut exact = pool
        .allocate(reqs(1, 512 * KIB, 1), AllocationType::Linear, &info("exact"), None)
        .unwrap();
    probe(&allocator, &mut exact, (512 * KIB, 1, 7), true, "exactly one block");
    assert_eq!(exact.offset(), margin);
    for size in [512 * KIB + 1, MIB - 4, MIB] {
        match pool.allocate(reqs(1, size, 1), AllocationType::Linear, &info("over"), None) {
            Ok(mut a) => {
                assert_eq!(a.size(), size, "never shrunk");
                assert!(a.is_dedicated(), "{size} bytes and margins are no block's");
                fill(&mut a, 8, size);
                verify(&a, 8, size, "over");
            }
            Err(e) => {
                let text = e.to_string();
                assert!(!text.is_empty());
            }
        }
    }
    for size in [512 * KIB + 4, 3 * MIB + 512 * KIB, 4 * MIB] {
        let mut a = allocator
            .allocate(reqs(1, size, 4), AllocationType::Linear, &info("big"), None)
            .unwrap();
        assert_eq!(a.size(), size, "never shrunk");
        fill(&mut a, size, size);
        verify(&a, size, size, "big");
        if !a.is_dedicated() {
            probe(&allocator, &mut a, (size, 4, 9), false, "big in a block");
        }
    }
    // The largest margin with the largest alignment: front margin of the alignment.
    let mut a = allocator
        .allocate(reqs(1, 4, 64 * KIB), AllocationType::Linear, &info("aligned"), None)
        .unwrap();
    probe(&allocator, &mut a, (4, 64 * KIB, 10), true, "aligned");
    drop((a, exact, pool, allocator));
    sim.assert_nothing_allocated();
}
