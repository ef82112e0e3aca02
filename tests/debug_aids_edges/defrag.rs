//! Defragmentation with margins and fill patterns: moves, skips, and passes left open.

use super::*;

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
