//! The books with margins (statistics, leak report, VMA dump) and the leak check in every
//! mode, during unwinding and for dropped pools.

use super::*;

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
