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
fn allocator(
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
    let what = |path: &str| {
        format!(
            "{} type {ty}, margin {margin}, {path}",
            sim.state.layout.name
        )
    };
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
            probe(
                &allocator,
                &mut a,
                (size, alignment, seed),
                true,
                &what(path),
            );
            live.push((a, alignment, size, seed));
        }
    }
    assert_margins_apart(&live, margin, &what("all paths"));
    let triples: Vec<_> = live.iter().map(|(a, al, ..)| (a, *al)).collect();
    check_triples(
        &triples,
        &sim.state,
        sim.state.layout.buffer_image_granularity,
    );
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
    let what = |s: &str| {
        format!(
            "{} pool {name}, margin {margin}, {s}",
            sim.state.layout.name
        )
    };
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
        probe(
            &allocator,
            &mut a,
            (size, alignment, seed),
            true,
            &what("allocate"),
        );
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
        .allocate(
            reqs(1, 512 * KIB, 1),
            AllocationType::Linear,
            &info("exact"),
            None,
        )
        .unwrap();
    probe(
        &allocator,
        &mut exact,
        (512 * KIB, 1, 7),
        true,
        "exactly one block",
    );
    assert_eq!(exact.offset(), margin);
    for size in [512 * KIB + 1, MIB - 4, MIB] {
        match pool.allocate(
            reqs(1, size, 1),
            AllocationType::Linear,
            &info("over"),
            None,
        ) {
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
        .allocate(
            reqs(1, 4, 64 * KIB),
            AllocationType::Linear,
            &info("aligned"),
            None,
        )
        .unwrap();
    probe(&allocator, &mut a, (4, 64 * KIB, 10), true, "aligned");
    drop((a, exact, pool, allocator));
    sim.assert_nothing_allocated();
}

/// A host-visible pool of 1 MiB one-arena blocks in `allocator`.
fn defrag_pool(allocator: &StandardMemoryAllocator, name: &str) -> MemoryPool<FreeListAllocator> {
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

/// Defragmentation with margins and fill patterns: destinations get margins of their own
/// (checked, and damage to them found), a completed move frees the source with the freed
/// pattern without touching any live byte, a skipped move's destination is freed the same
/// way, and after every pass every allocation's data and every margin is intact.
#[test]
fn defragmentation_with_margins_and_fills_touches_no_live_byte() {
    for (layout, margin) in [
        (GpuLayout::nvidia_discrete(), 64),
        (GpuLayout::nvidia_discrete(), 4100),
        (GpuLayout::mobile(), 12),
    ] {
        let sim = Sim::new(layout);
        let device = sim.memory_device();
        let allocator = allocator(&device, margin, true);
        let pool = defrag_pool(&allocator, "defrag");
        let mut live: Vec<(MemoryAlloc, u64, u64)> = Vec::new();
        let mut i = 0u64;
        // Three blocks' worth, then every other one freed: room to gather into.
        while live.len() < 36 {
            i += 1;
            let size = 60 * KIB + i * 52;
            let mut a = pool
                .allocate(
                    reqs(1, size, 256),
                    AllocationType::Linear,
                    &info("moving"),
                    None,
                )
                .unwrap();
            fill(&mut a, i, size);
            live.push((a, i, size));
        }
        let mut k = 0;
        live.retain(|_| {
            k += 1;
            k % 2 == 0
        });
        let mut defrag = pool.defragmentation(&DefragmentationInfo {
            algorithm: DefragmentationAlgorithm::Full,
            ..Default::default()
        });
        for (a, ..) in &mut live {
            defrag.add(a, DeviceAlignment::new(256).unwrap()).unwrap();
        }
        let mut moves = 0;
        let mut skipped = false;
        while let Some(mut pass) = defrag.next_pass() {
            let open = support::defrag::open(&pass);
            assert!(
                pool.check_corruption().is_ok(),
                "destinations' margins hold"
            );
            for index in open {
                let m = pass.get(index).unwrap();
                let (memory, offset) = (m.source_memory(), m.source_offset());
                let dst = m.destination();
                assert_eq!(dst.size(), m.size());
                // The destination's own margin is checked like any allocation's.
                // SAFETY: the byte after the destination is its back margin.
                unsafe { poke(dst, dst.offset() + dst.size(), 0) };
                let d = damaged(pool.check_corruption());
                assert_eq!(d.len(), 1);
                assert_eq!(d[0].allocation_offset, dst.offset());
                // SAFETY: as above, restored.
                unsafe {
                    poke(
                        dst,
                        dst.offset() + dst.size(),
                        MARGIN_MAGIC.to_le_bytes()[0],
                    )
                };
                let j = live
                    .iter()
                    .position(|(a, ..)| a.memory() == memory && a.offset() == offset)
                    .expect("the move's source is live");
                if !skipped {
                    skipped = true;
                    pass.skip(index).unwrap();
                } else {
                    support::defrag::copy_and_complete(&mut pass, index, &mut live[j].0).unwrap();
                    moves += 1;
                }
                for (a, seed, size) in &live {
                    verify(a, *seed, *size, "after a move or a skip");
                }
                assert!(pool.check_corruption().is_ok(), "after a move or a skip");
            }
            pass.end();
        }
        drop(defrag);
        assert!(moves > 0, "margins keep defragmentation working");
        let report = allocator.check_corruption(u32::MAX).unwrap();
        assert_eq!(report.checked_allocations, live.len() as u64);
        for (a, seed, size) in &live {
            verify(a, *seed, *size, "after the defragmentation");
        }
        drop(live);
        drop((pool, allocator));
        sim.assert_nothing_allocated();
    }
}

/// The books with margins: each allocation counts what its block holds for it, front margin
/// (the margin rounded up to the alignment), size and back margin, in the statistics; the
/// free ranges and allocations add up to the blocks; the leak report names every one.
#[test]
fn statistics_and_leak_report_with_margins_match_a_model() {
    let sim = Sim::new(GpuLayout::nvidia_discrete());
    let device = sim.memory_device();
    for margin in [4, 36, 4100] {
        let allocator = allocator(&device, margin, false);
        let mut live = Vec::new();
        let mut held = 0;
        for (i, (size, alignment)) in SHAPES.into_iter().enumerate() {
            let name = format!("book {i}");
            let a = allocator
                .allocate(
                    reqs(1, size, alignment),
                    AllocationType::Linear,
                    &info(&name),
                    None,
                )
                .unwrap();
            held += front(margin, alignment) + size + margin;
            live.push((a, name));
        }
        let s = allocator.statistics().total;
        assert_eq!(s.allocation_count, live.len() as u64, "margin {margin}");
        assert_eq!(s.allocations.count, live.len() as u64, "margin {margin}");
        assert_eq!(s.allocations.total, held, "margin {margin}");
        assert_eq!(
            s.allocations.total + s.free_ranges.total,
            s.reserved_bytes,
            "margin {margin}"
        );
        let leaks = allocator.report_leaks();
        assert_eq!(leaks.len(), live.len());
        for (a, name) in &live {
            let leak = leaks
                .iter()
                .find(|l| l.name.as_deref() == Some(name.as_str()))
                .unwrap_or_else(|| panic!("{name} not in the leak report: {leaks:?}"));
            // The report shows the range the block holds: the allocation inside it.
            assert!(leak.offset <= a.offset(), "{leak:?}");
            assert!(a.offset() + a.size() <= leak.offset + leak.size, "{leak:?}");
            assert_eq!(leak.memory, a.memory().as_raw());
        }
        let json = allocator.to_vma_json();
        for (_, name) in &live {
            assert!(json.contains(name.as_str()), "{name} in the VMA dump");
        }
        drop(live);
        let s = allocator.statistics().total;
        assert_eq!((s.allocation_count, s.allocations.total), (0, 0));
        drop(allocator);
    }
    sim.assert_nothing_allocated();
}

fn panic_text(e: &(dyn std::any::Any + Send)) -> String {
    e.downcast_ref::<String>()
        .cloned()
        .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

fn leak_checked(
    device: &std::sync::Arc<MemoryDevice>,
    leak_check: LeakCheck,
) -> StandardMemoryAllocator {
    StandardMemoryAllocator::new(
        device.clone(),
        GenericMemoryAllocatorCreateInfo {
            debug: DebugOptions {
                margin: 16,
                fill_patterns: true,
                leak_check,
                ..Default::default()
            },
            ..Default::default()
        },
    )
    .unwrap()
}

/// The leak check in every mode at an allocator's and a pool's drop: `Log` logs the report
/// (and never panics), `Print` and `Off` never panic, `Panic` panics; and a drop during
/// unwinding (the allocator or pool dropped by another panic) never panics again, so the
/// process does not abort and the first panic is the one caught. The leaked allocations
/// stay usable, with their margins, and free their memory when dropped.
#[test]
fn leak_check_in_every_mode_and_during_unwinding() {
    common::log_capture::install();
    let sim = Sim::new(GpuLayout::nvidia_discrete());
    let device = sim.memory_device();
    for mode in [
        LeakCheck::Off,
        LeakCheck::Log,
        LeakCheck::Print,
        LeakCheck::Panic,
    ] {
        for in_pool in [false, true] {
            let name = format!("leak {mode:?} pool {in_pool}");
            // Dropped plainly.
            let mut kept = None;
            let result = catch_unwind(AssertUnwindSafe(|| {
                let allocator = leak_checked(&device, mode);
                let pool = defrag_pool(&allocator, &name);
                let a = if in_pool {
                    pool.allocate(reqs(1, 100, 4), AllocationType::Linear, &info(&name), None)
                } else {
                    allocator.allocate(reqs(1, 100, 4), AllocationType::Linear, &info(&name), None)
                };
                kept = Some(a.unwrap());
                drop(pool);
                drop(allocator);
            }));
            let logged = common::log_capture::records_mentioning(&name);
            match mode {
                LeakCheck::Panic => {
                    let e = result.expect_err("Panic panics");
                    assert!(
                        panic_text(&*e).contains("leaked allocation"),
                        "{}",
                        panic_text(&*e)
                    );
                }
                _ => assert!(result.is_ok(), "{mode:?} never panics"),
            }
            match mode {
                LeakCheck::Off => assert!(logged.is_empty(), "{logged:?}"),
                _ => assert!(
                    logged.iter().any(|r| r.0 == log::Level::Warn),
                    "{mode:?}: {logged:?}"
                ),
            }
            let mut a = kept.take().expect("the leaked allocation");
            fill(&mut a, 3, 100);
            verify(&a, 3, 100, "a leaked allocation stays usable");
            drop(a);

            // Dropped while another panic unwinds.
            let result = catch_unwind(AssertUnwindSafe(|| {
                let allocator = leak_checked(&device, mode);
                let pool = defrag_pool(&allocator, &name);
                let a = if in_pool {
                    pool.allocate(reqs(1, 100, 4), AllocationType::Linear, &info(&name), None)
                } else {
                    allocator.allocate(reqs(1, 100, 4), AllocationType::Linear, &info(&name), None)
                };
                kept = Some(a.unwrap());
                let _held = (allocator, pool);
                panic!("the first panic");
            }));
            let e = result.expect_err("the first panic");
            assert_eq!(panic_text(&*e), "the first panic", "{mode:?}");
            drop(kept.take());
        }
    }
    sim.assert_nothing_allocated();
}

/// A defragmentation dropped with a pass open (its destinations alive), with the leak check
/// set to panic: dropping the pass and the defragmentation frees the destinations, so the
/// pool and the allocator drop without a leak; and dropping them while unwinding from a
/// panic inside a pass does not abort.
#[test]
fn defragmentation_dropped_with_open_passes_leaks_nothing() {
    let sim = Sim::new(GpuLayout::nvidia_discrete());
    let device = sim.memory_device();
    for unwind in [false, true] {
        let allocator = allocator(&device, 16, true);
        let pool = defrag_pool(&allocator, "open passes");
        let mut live: Vec<MemoryAlloc> = (0..12)
            .map(|i| {
                let mut a = pool
                    .allocate(
                        reqs(1, 200 * KIB, 256),
                        AllocationType::Linear,
                        &info("o"),
                        None,
                    )
                    .unwrap();
                fill(&mut a, i, 200 * KIB);
                a
            })
            .collect();
        let mut k = 0;
        live.retain(|_| {
            k += 1;
            k % 2 == 0
        });
        let result = catch_unwind(AssertUnwindSafe(|| {
            let mut defrag = pool.defragmentation(&DefragmentationInfo::default());
            for a in &mut live {
                defrag.add(a, DeviceAlignment::new(256).unwrap()).unwrap();
            }
            let pass = defrag.next_pass().expect("something to move");
            assert!(pass.moves().count() > 0);
            if unwind {
                panic!("inside a pass");
            }
            drop(pass);
            drop(defrag);
        }));
        assert_eq!(result.is_err(), unwind);
        for (i, a) in live.iter().enumerate() {
            verify(a, 2 * i as u64 + 1, 200 * KIB, "after the open pass");
        }
        assert!(allocator.check_corruption(u32::MAX).is_ok());
        assert_eq!(
            allocator.statistics().total.allocation_count,
            live.len() as u64,
            "no destination left behind"
        );
        drop(live);
        drop(pool);
        drop(allocator);
    }
    sim.assert_nothing_allocated();
}

/// Buffers and images made by `create_buffer`/`create_image` with margins, on the real
/// driver (lavapipe's own memory types) under the validation layer: the binds are valid
/// (the allocation is aligned as the driver requires), a GPU fill of each whole buffer damages
/// no margin, and a GPU write through a buffer aliasing one byte-word of a back margin (a
/// device overrun) is reported at its offset.
#[test]
fn gpu_writes_fill_buffers_without_damage_and_a_device_overrun_is_found() {
    use ash::vk;
    let ctx = common::TestContext::new();
    let device = ctx.memory_device();
    let d = &ctx.device;
    let margin = 4100;
    let allocator = allocator(&device, margin, true);
    let usage = vk::BufferUsageFlags::TRANSFER_DST | vk::BufferUsageFlags::TRANSFER_SRC;
    let upload = info("gpu");
    let mut buffers = Vec::new();
    let mut images = Vec::new();
    for (i, size) in [4u64, 100, 1028, 65540, 4096].into_iter().enumerate() {
        // SAFETY: a valid buffer create info.
        let (buffer, alloc) =
            unsafe { allocator.create_buffer(&common::buffer_info(size, usage), &upload) }.unwrap();
        assert_eq!(alloc.size(), size);
        buffers.push((buffer, alloc, size, 0x0101_0101u32 * (i as u32 + 1)));
        let tiling = if i % 2 == 0 {
            vk::ImageTiling::OPTIMAL
        } else {
            vk::ImageTiling::LINEAR
        };
        let image_info = common::image_info(16 << i, vk::Format::R8G8B8A8_UNORM, tiling);
        let create = AllocationCreateInfo {
            usage: MemoryUsage::DeviceOnly,
            ..info("image")
        };
        // SAFETY: a valid image create info.
        let (image, alloc) = unsafe { allocator.create_image(&image_info, &create) }.unwrap();
        images.push((image, alloc));
    }
    ctx.submit(|d, cmd| {
        for (buffer, _, _, word) in &buffers {
            // SAFETY: the buffer is alive and bound, made with TRANSFER_DST.
            unsafe { d.cmd_fill_buffer(cmd, *buffer, 0, vk::WHOLE_SIZE, *word) };
        }
        common::TestContext::transfer_barrier(d, cmd);
    });
    for (_, alloc, size, word) in &buffers {
        let mut back = vec![0u8; *size as usize];
        alloc.invalidate(0, *size).unwrap();
        alloc.read(0, &mut back).unwrap();
        assert!(back.iter().all(|&b| b == word.to_le_bytes()[0]), "GPU fill");
    }
    let report = allocator.check_corruption(u32::MAX).unwrap();
    assert_eq!(
        report.checked_allocations,
        (buffers.iter().filter(|b| !b.1.is_dedicated()).count()
            + images.iter().filter(|i| !i.1.is_dedicated()).count()) as u64
    );
    // A device overrun: a 4-byte buffer aliasing the back margin of the 100-byte buffer.
    let victim = &buffers[1].1;
    // SAFETY: a valid buffer create info.
    let spy = unsafe { d.create_buffer(&common::buffer_info(4, usage), None) }.unwrap();
    // SAFETY: `spy` is alive.
    let requirements = unsafe { d.get_buffer_memory_requirements(spy) };
    let at = (victim.offset() + victim.size()).next_multiple_of(requirements.alignment);
    assert!(
        at + 4 <= victim.offset() + victim.size() + margin,
        "inside the back margin"
    );
    assert!(requirements.memory_type_bits & (1 << victim.memory_type_index()) != 0);
    // SAFETY: `at` is aligned as required and the 4 bytes lie in the victim's block (in its
    // back margin): aliasing memory is valid.
    unsafe { d.bind_buffer_memory(spy, victim.memory(), at) }.unwrap();
    ctx.submit(|d, cmd| {
        // SAFETY: `spy` is alive and bound.
        unsafe { d.cmd_fill_buffer(cmd, spy, 0, 4, 0) };
        common::TestContext::transfer_barrier(d, cmd);
    });
    let found = damaged(allocator.check_corruption(u32::MAX));
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(
        (found[0].offset, found[0].after, found[0].allocation_offset),
        (at, true, victim.offset())
    );
    // SAFETY: the GPU is done with every resource.
    unsafe {
        d.destroy_buffer(spy, None);
        for (buffer, ..) in &buffers {
            d.destroy_buffer(*buffer, None);
        }
        for (image, _) in &images {
            d.destroy_image(*image, None);
        }
    }
    drop((buffers, images, allocator));
    assert!(ctx.messages().is_empty(), "{:?}", ctx.messages());
}

/// Alignments so large that the margins cannot be laid out around the request: the
/// allocation is never made in a block without its margins (where damage around it would go
/// unseen); it is dedicated (no margins, as documented) or refused with an error.
#[test]
fn alignments_too_large_for_margins_never_lose_them_silently() {
    let sim = Sim::new(GpuLayout::nvidia_discrete());
    let device = sim.memory_device();
    let allocator = allocator(&device, 16, false);
    for shift in [20u32, 32, 48, 61, 62] {
        let alignment = 1u64 << shift;
        let result = allocator.allocate(
            reqs(1, 100, alignment),
            AllocationType::Linear,
            &info("aligned far"),
            None,
        );
        match result {
            Ok(mut a) => {
                assert_eq!(a.offset() % alignment, 0);
                if !a.is_dedicated() {
                    probe(
                        &allocator,
                        &mut a,
                        (100, alignment, 5),
                        false,
                        &format!("2^{shift}"),
                    );
                }
            }
            Err(e) => assert!(shift > 32, "2^{shift}: {e}"),
        }
        if shift == 62 {
            // 16 + 100 + 16 bytes aligned to 2^62 pad past the largest layout.
            let e = allocator
                .allocate(
                    reqs(1, 100, alignment),
                    AllocationType::Linear,
                    &info("x"),
                    None,
                )
                .unwrap_err();
            assert!(matches!(e, AllocationError::Layout(_)), "{e}");
            assert!(e.to_string().contains("exceeds the largest layout"), "{e}");
            // Without margins the same request is served, in a block.
            let plain = StandardMemoryAllocator::new_default(device.clone());
            let a = plain
                .allocate(
                    reqs(1, 100, alignment),
                    AllocationType::Linear,
                    &info("x"),
                    None,
                )
                .unwrap();
            drop((a, plain));
        }
    }
    drop(allocator);
    sim.assert_nothing_allocated();
}

/// Puts `byte` at `at` of `alloc`'s block in the device's view only (a GPU write that the
/// host's view does not show yet): written through the mapping, its atom flushed, and the
/// host byte put back.
///
/// # Safety
///
/// `at` lies in one of `alloc`'s margins inside the mapped block, and the allocation's own
/// bytes in that atom were flushed already.
unsafe fn device_poke(device: &MemoryDevice, alloc: &MemoryAlloc, at: u64, byte: u8) {
    let atom = device.non_coherent_atom_size().as_devicesize();
    let base = alloc
        .mapped_ptr()
        .unwrap()
        .as_ptr()
        .wrapping_sub(alloc.offset() as usize);
    // SAFETY: the caller's contract.
    let host = unsafe { &mut *base.add(at as usize) };
    let old = std::mem::replace(host, byte);
    let range = ash::vk::MappedMemoryRange::default()
        .memory(alloc.memory())
        .offset(at / atom * atom)
        .size(atom);
    // SAFETY: the block is mapped; the range is one whole atom inside it.
    unsafe { device.ash().flush_mapped_memory_ranges(&[range]).unwrap() };
    *host = old;
}

/// Damage found when the allocation is freed, as documented: logged at `error` (target
/// `LOG_TARGET`) with the allocation's name, the free goes on, and nothing of it stays: the
/// next check is clean, the neighbours' data and margins are intact, and an allocation made
/// in the same place gets margins of its own. In non-coherent memory a device write into the
/// back margin's atom shared with the allocation is not seen by a live check, is seen once
/// the application invalidates its range, and is always seen at the free.
#[test]
fn damage_at_free_is_logged_and_leaves_a_clean_place() {
    common::log_capture::install();
    for (layout, device_write) in [
        (GpuLayout::nvidia_discrete(), false),
        (GpuLayout::mobile(), false),
        (GpuLayout::mobile(), true),
    ] {
        let sim = Sim::new(layout);
        let device = sim.memory_device();
        let allocator = allocator(&device, 12, true);
        for round in 0..2 {
            let name = format!("{} victim {device_write} {round}", sim.state.layout.name);
            let mut before = allocator
                .allocate(
                    reqs(1, 300, 4),
                    AllocationType::Linear,
                    &info("before"),
                    None,
                )
                .unwrap();
            let mut victim = allocator
                .allocate(reqs(1, 200, 4), AllocationType::Linear, &info(&name), None)
                .unwrap();
            let mut after = allocator
                .allocate(
                    reqs(1, 300, 4),
                    AllocationType::Linear,
                    &info("after"),
                    None,
                )
                .unwrap();
            fill(&mut before, 1, 300);
            fill(&mut victim, 2, 200);
            fill(&mut after, 3, 300);
            let at = victim.offset() + 200;
            if device_write {
                // SAFETY: `at` is in the victim's back margin; its data is flushed.
                unsafe { device_poke(&device, &victim, at, 0) };
                assert!(
                    allocator.check_corruption(u32::MAX).is_ok(),
                    "a live check does not invalidate an atom the allocation shares"
                );
                victim.invalidate(0, 200).unwrap();
            } else {
                // SAFETY: as above.
                unsafe { poke(&victim, at, 0) };
            }
            let d = damaged(allocator.check_corruption(u32::MAX));
            assert_eq!((d.len(), d[0].offset, d[0].after), (1, at, true), "{d:?}");
            drop(victim);
            let logged = common::log_capture::records_mentioning(&name);
            assert_eq!(logged.len(), 1, "{logged:?}");
            assert_eq!(
                (logged[0].0, logged[0].1.as_str()),
                (log::Level::Error, corruption::LOG_TARGET)
            );
            assert!(logged[0].2.contains(&format!("offset {at}")), "{logged:?}");
            assert!(
                allocator.check_corruption(u32::MAX).is_ok(),
                "nothing stays"
            );
            verify(&before, 1, 300, "before");
            verify(&after, 3, 300, "after");
            let mut again = allocator
                .allocate(
                    reqs(1, 200, 4),
                    AllocationType::Linear,
                    &info("again"),
                    None,
                )
                .unwrap();
            probe(
                &allocator,
                &mut again,
                (200, 4, 4),
                true,
                "in the damaged place",
            );
            drop(again);
            verify(&before, 1, 300, "before, after the place was freed again");
            verify(&after, 3, 300, "after, after the place was freed again");
            assert!(allocator.check_corruption(u32::MAX).is_ok());
        }
        drop(allocator);
        sim.assert_nothing_allocated();
    }
}

/// A pool dropped (leak check `Panic`, the panic caught) while an allocation with margins
/// lives in it: the allocation stays in the allocator's books and checks, damage to its
/// margins is still found (naming the pool), and it frees its memory when dropped.
#[test]
fn a_pool_dropped_with_a_leak_keeps_its_margins_checked() {
    let sim = Sim::new(GpuLayout::nvidia_discrete());
    let device = sim.memory_device();
    let allocator = allocator(&device, 16, true);
    let pool = defrag_pool(&allocator, "dropped");
    let mut a = pool
        .allocate(
            reqs(1, 500, 16),
            AllocationType::Linear,
            &info("orphan"),
            None,
        )
        .unwrap();
    fill(&mut a, 6, 500);
    let e = catch_unwind(AssertUnwindSafe(|| drop(pool))).expect_err("the pool's leak check");
    assert!(
        panic_text(&*e).contains("MemoryPool"),
        "{}",
        panic_text(&*e)
    );
    assert_eq!(allocator.statistics().total.allocation_count, 1);
    assert_eq!(
        allocator
            .check_corruption(u32::MAX)
            .unwrap()
            .checked_allocations,
        1
    );
    probe(&allocator, &mut a, (500, 16, 7), false, "orphan");
    // SAFETY: the byte before `a` is its front margin.
    unsafe { poke(&a, a.offset() - 1, 0) };
    let d = damaged(allocator.check_corruption(u32::MAX));
    assert_eq!(d[0].pool.as_deref(), Some("dropped"));
    // SAFETY: as above, restored.
    unsafe { poke(&a, a.offset() - 1, MARGIN_MAGIC.to_le_bytes()[3]) };
    drop(a);
    assert_eq!(allocator.statistics().total.allocation_count, 0);
    drop(allocator);
    sim.assert_nothing_allocated();
}

/// Failed allocations with fill patterns and margins: a `create_buffer` whose bind fails
/// frees its allocation (the freed fill lands in its own range only), and `allocate_pages`
/// that runs out of room part way frees the pages made; the neighbours' data and margins are
/// intact and the books count only them.
#[test]
fn failed_allocations_fill_only_their_own_bytes() {
    use ash::vk;
    let ctx = common::TestContext::new();
    let device = ctx.memory_device_with_v1_0(common::failing_bind::hook, Default::default());
    let allocator = allocator(&device, 20, true);
    let all = device.memory_properties().all_types_mask();
    let r = |size, alignment| AllocationRequirements {
        memory_type_bits: all,
        ..reqs(0, size, alignment)
    };
    let mut neighbours = Vec::new();
    for (i, size) in [100u64, 4096, 333, 64 * KIB].into_iter().enumerate() {
        let mut a = allocator
            .allocate(
                r(size, 64),
                AllocationType::Linear,
                &info("neighbour"),
                None,
            )
            .unwrap();
        fill(&mut a, i as u64, size);
        neighbours.push((a, i as u64, size));
    }
    let usage = vk::BufferUsageFlags::TRANSFER_DST;
    for fault in [
        vk::Result::ERROR_OUT_OF_DEVICE_MEMORY,
        vk::Result::ERROR_OUT_OF_HOST_MEMORY,
    ] {
        common::failing_bind::fail_next(fault);
        // SAFETY: a valid buffer create info.
        let e =
            unsafe { allocator.create_buffer(&common::buffer_info(1000, usage), &info("failed")) }
                .unwrap_err();
        assert!(!common::failing_bind::pending(), "{e}");
        for (a, seed, size) in &neighbours {
            verify(a, *seed, *size, "after a failed bind");
        }
        assert!(allocator.check_corruption(u32::MAX).is_ok());
        assert_eq!(
            allocator.statistics().total.allocation_count,
            neighbours.len() as u64
        );
    }
    // Pages in a pool of one block: the neighbour and three pages fit, the fourth does not.
    let pool = allocator
        .create_pool::<FreeListAllocator>(&PoolCreateInfo {
            memory_type: PoolMemoryType::Index(neighbours[0].0.memory_type_index()),
            block_size: MIB,
            max_block_count: 1,
            block_arenas: Some(1),
            ..Default::default()
        })
        .unwrap();
    let mut pooled = pool
        .allocate(
            r(100 * KIB, 256),
            AllocationType::Linear,
            &info("pooled"),
            None,
        )
        .unwrap();
    fill(&mut pooled, 9, 100 * KIB);
    let e = pool
        .allocate_pages(r(256 * KIB, 256), AllocationType::Linear, &info("pages"), 4)
        .unwrap_err();
    assert!(matches!(e, AllocationError::PoolFull { .. }), "{e}");
    verify(&pooled, 9, 100 * KIB, "after the failed pages");
    let pages = pool
        .allocate_pages(r(256 * KIB, 256), AllocationType::Linear, &info("pages"), 3)
        .unwrap();
    assert!(allocator.check_corruption(u32::MAX).is_ok());
    for (a, seed, size) in &neighbours {
        verify(a, *seed, *size, "after the pages");
    }
    verify(&pooled, 9, 100 * KIB, "after the pages");
    drop((pages, pooled, pool, neighbours, allocator));
    assert!(ctx.messages().is_empty(), "{:?}", ctx.messages());
}

/// Aliasing binds at offsets inside an allocation with margins (lavapipe, validation on):
/// a buffer bound at the allocation's last bytes and filled by the GPU leaves the back margin
/// whole, one at offset 0 leaves the front margin whole, and a bind that would reach into a
/// margin is refused before the driver sees it.
#[test]
fn aliasing_binds_at_offsets_stay_inside_the_margins() {
    use ash::vk;
    let ctx = common::TestContext::new();
    let device = ctx.memory_device();
    let d = &ctx.device;
    let margin = 36;
    let allocator = allocator(&device, margin, true);
    let usage = vk::BufferUsageFlags::TRANSFER_DST;
    let info_of = |size| common::buffer_info(size, usage);
    // SAFETY: a valid create info (used for its requirements only).
    let probe_buffer = unsafe { d.create_buffer(&info_of(256), None) }.unwrap();
    // SAFETY: `probe_buffer` is alive.
    let mr = unsafe { d.get_buffer_memory_requirements(probe_buffer) };
    // SAFETY: never bound or used.
    unsafe { d.destroy_buffer(probe_buffer, None) };
    let size = 16 * KIB;
    let a = allocator
        .allocate(
            AllocationRequirements {
                layout: DeviceLayout::from_size_alignment(size, mr.alignment).unwrap(),
                memory_type_bits: mr.memory_type_bits,
                prefers_dedicated_allocation: false,
                requires_dedicated_allocation: false,
            },
            AllocationType::Unknown,
            &info("aliased"),
            None,
        )
        .unwrap();
    assert!(!a.is_dedicated());
    let last = size - 256;
    // SAFETY: valid create infos; the buffers are destroyed before the allocation drops.
    let (head, tail) = unsafe {
        (
            a.create_aliasing_buffer(&info_of(256), 0).unwrap(),
            a.create_aliasing_buffer(&info_of(256), last).unwrap(),
        )
    };
    // One byte-word past the end would reach the back margin: refused.
    // SAFETY: as above.
    let past = unsafe { a.create_aliasing_buffer(&info_of(256), last + mr.alignment) };
    assert!(
        matches!(past, Err(MemoryAccessError::ResourceOutOfBounds { .. })),
        "{past:?}"
    );
    ctx.submit(|d, cmd| {
        // SAFETY: both buffers are alive and bound.
        unsafe {
            d.cmd_fill_buffer(cmd, head, 0, vk::WHOLE_SIZE, 0);
            d.cmd_fill_buffer(cmd, tail, 0, vk::WHOLE_SIZE, 0);
        }
        common::TestContext::transfer_barrier(d, cmd);
    });
    assert_eq!(
        allocator
            .check_corruption(u32::MAX)
            .unwrap()
            .checked_allocations,
        1,
        "GPU writes at both ends damage no margin"
    );
    // SAFETY: the GPU is done with them.
    unsafe {
        d.destroy_buffer(head, None);
        d.destroy_buffer(tail, None);
    }
    drop((a, allocator));
    assert!(ctx.messages().is_empty(), "{:?}", ctx.messages());
}

/// Margins that push a request past a pool slot: a `SlotAllocator<256>` pool serves a
/// 200-byte request with 36-byte margins (272 bytes held) without shrinking it (dedicated, or
/// a clear error), and a request that fits with its margins keeps them. Renaming an
/// allocation (or giving it user data) keeps its margins checked under the new name.
#[test]
fn slots_too_small_for_margins_and_renamed_allocations() {
    let sim = Sim::new(GpuLayout::nvidia_discrete());
    let device = sim.memory_device();
    let allocator = allocator(&device, 36, true);
    let pool = allocator
        .create_pool::<SlotAllocator<256>>(&PoolCreateInfo {
            memory_type: PoolMemoryType::Index(1),
            block_size: 64 * KIB,
            block_arenas: Some(1),
            ..Default::default()
        })
        .unwrap();
    let mut fits = pool
        .allocate(reqs(1, 184, 4), AllocationType::Linear, &info("fits"), None)
        .unwrap();
    probe(
        &allocator,
        &mut fits,
        (184, 4, 1),
        true,
        "184 + 2 x 36 in a 256-byte slot",
    );
    match pool.allocate(reqs(1, 200, 4), AllocationType::Linear, &info("over"), None) {
        Ok(mut a) => {
            assert_eq!(a.size(), 200);
            assert!(a.is_dedicated(), "272 bytes are no 256-byte slot's");
            fill(&mut a, 2, 200);
            verify(&a, 2, 200, "over");
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
    fits.set_name(Some("renamed".into()));
    fits.set_user_data(Some(std::sync::Arc::new(7u32)));
    // SAFETY: the byte after `fits` is its back margin.
    unsafe { poke(&fits, fits.offset() + 184, 0) };
    let d = damaged(allocator.check_corruption(u32::MAX));
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].name.as_deref(), Some("renamed"));
    // SAFETY: as above, restored.
    unsafe { poke(&fits, fits.offset() + 184, MARGIN_MAGIC.to_le_bytes()[0]) };
    probe(&allocator, &mut fits, (184, 4, 3), false, "renamed");
    drop((fits, pool, allocator));
    sim.assert_nothing_allocated();
}
