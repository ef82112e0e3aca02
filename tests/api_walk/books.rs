//! The invariants checked after every step, and at the end.

use super::*;

/// `counted` allocations where the model has `live`: exactly, or at least when a
/// defragmentation is between passes (its reservations are allocations too).
fn counts(counted: u64, live: u64, reservations: bool) -> bool {
    if reservations {
        counted >= live
    } else {
        counted == live
    }
}

impl World {
    /// The invariants after every step.
    pub(crate) fn check(&self) {
        self.check_books(false)
    }

    /// The invariants between two passes of a defragmentation: the same, but the blocks it
    /// drains hold reservations (allocations of the defragmentation, counted in the
    /// statistics, see `allocator::defrag`).
    pub(crate) fn check_between_passes(&self) {
        self.check_books(true)
    }

    fn check_books(&self, reservations: bool) {
        let step = self.step;
        let r = reservations;
        let stats = self.allocator.statistics();
        let snap = self.allocator.snapshot();
        assert_eq!(
            snap.statistics, stats,
            "step {step}: snapshot and statistics"
        );
        assert!(
            counts(stats.total.allocation_count, self.live.len() as u64, r),
            "step {step}: {} allocations counted, {} live",
            stats.total.allocation_count,
            self.live.len()
        );
        let total = &stats.total;
        assert_eq!(
            total.allocations.total + total.free_ranges.total,
            total.reserved_bytes,
            "step {step}: allocated and free bytes make the memory"
        );
        let live_bytes: u64 = self.live.iter().map(|l| l.alloc.size()).sum();
        assert!(
            total.allocations.total >= live_bytes,
            "step {step}: {total:?} < {live_bytes}"
        );
        // Per pool.
        for p in &self.pools {
            let mine: Vec<&Live> = self
                .live
                .iter()
                .filter(|l| l.source == Source::Pool(p.id))
                .collect();
            let s = p.pool.api().statistics().total;
            assert!(
                counts(s.allocation_count, mine.len() as u64, r),
                "step {step}: pool {}: {} counted, {} live",
                p.name,
                s.allocation_count,
                mine.len()
            );
            assert_eq!(
                s.block_count,
                p.pool.block_count() as u64,
                "step {step}: pool {}",
                p.name
            );
            assert!(s.block_count <= p.pool.block_count_limits().1 as u64);
            let bytes: u64 = mine.iter().map(|l| l.alloc.size()).sum();
            assert!(s.allocations.total >= bytes, "step {step}: pool {}", p.name);
            assert_eq!(s.allocations.total + s.free_ranges.total, s.reserved_bytes);
            let listed: Vec<_> = stats.pools.iter().filter(|s| s.name == p.name).collect();
            // The allocator lists every live pool, holding memory or not (as VMA does).
            assert_eq!(listed.len(), 1, "step {step}: pool {} listed", p.name);
            assert_eq!(listed[0].statistics, s, "step {step}: pool {}", p.name);
            for l in mine {
                assert_eq!(l.alloc.memory_type_index(), p.pool.memory_type_index());
            }
        }
        // The default vectors and dedicated allocations outside pools.
        let outside_pools: u64 = snap
            .blocks
            .iter()
            .filter(|b| b.pool.is_none())
            .map(|b| b.allocation_count)
            .sum();
        let default_live = self
            .live
            .iter()
            .filter(|l| l.source == Source::Default)
            .count() as u64;
        assert!(
            counts(outside_pools, default_live, r),
            "step {step}: {outside_pools} default allocations counted, {default_live} live"
        );
        // Heaps: counts, the driver's bytes and the budget.
        let heap_allocations: u64 = stats
            .heaps
            .iter()
            .map(|h| h.statistics.allocation_count)
            .sum();
        assert!(
            counts(heap_allocations, self.live.len() as u64, r),
            "step {step}"
        );
        let budgets = self.device.heap_budgets();
        for h in &stats.heaps {
            let used = self.sim.state.heap_used(h.index);
            assert_eq!(
                h.statistics.reserved_bytes, used,
                "step {step}: heap {}",
                h.index
            );
            assert_eq!(h.budget.crate_usage, used, "step {step}: heap {}", h.index);
            assert_eq!(budgets[h.index as usize].crate_usage, used);
            // The extension's usage counts this process's memory, the crate's and the rest.
            let b = &budgets[h.index as usize];
            assert!(b.from_extension);
            assert_eq!(
                b.usage,
                used + self.other_usage[h.index as usize],
                "step {step}: heap {}",
                h.index
            );
        }
        assert_eq!(total.reserved_bytes, self.device.live_memory_bytes());
        assert_eq!(
            snap.blocks.len() as u32,
            self.sim.state.live_objects(),
            "step {step}: memory objects the driver holds"
        );
        // Blocks tile, hold the allocations the model says.
        let mut by_memory: HashMap<u64, Vec<&Live>> = HashMap::new();
        for l in &self.live {
            by_memory
                .entry(l.alloc.memory().as_raw())
                .or_default()
                .push(l);
        }
        for b in &snap.blocks {
            let mut end = 0;
            for r in &b.ranges {
                assert_eq!(
                    r.offset, end,
                    "step {step}: ranges tile block {:#x}",
                    b.memory
                );
                end += r.size;
            }
            assert_eq!(end, b.size);
            let mine = by_memory.get(&b.memory).map_or(&[][..], Vec::as_slice);
            assert!(
                counts(b.allocation_count, mine.len() as u64, r),
                "step {step}: block {:#x} ({:?}): {} counted, {} live",
                b.memory,
                b.pool,
                b.allocation_count,
                mine.len()
            );
            for l in mine {
                let inside: Vec<_> = b
                    .ranges
                    .iter()
                    .filter(|r| {
                        matches!(r.kind, RangeKind::Allocated(_))
                            && r.offset <= l.alloc.offset()
                            && l.alloc.offset() + l.alloc.size() <= r.offset + r.size
                    })
                    .collect();
                assert_eq!(
                    inside.len(),
                    1,
                    "step {step}: allocation at {}",
                    l.alloc.offset()
                );
            }
        }
        let triples: Vec<_> = self.live.iter().map(|l| (&l.alloc, l.alignment)).collect();
        check_triples(
            &triples,
            &self.sim.state,
            self.sim.state.layout.buffer_image_granularity,
        );
        // Every live byte reads back as written.
        for l in &self.live {
            if let Some(shadow) = &l.shadow {
                let mut back = vec![0; shadow.len()];
                l.alloc.read(0, &mut back).unwrap();
                assert!(
                    back == *shadow,
                    "step {step}: the bytes of {}+{} ({} requested, {:?}) changed",
                    l.alloc.memory().as_raw(),
                    l.alloc.offset(),
                    l.requested,
                    l.source
                );
            }
        }
    }

    /// Drops everything; the leak check is clean and every memory object is gone.
    pub(crate) fn finish(mut self) {
        self.check();
        while let Some(l) = self.live.pop() {
            drop(l);
        }
        assert!(self.allocator.report_leaks().is_empty());
        for p in &self.pools {
            assert!(p.pool.report_leaks().is_empty());
        }
        self.pools.clear();
        self.check();
        let World {
            sim,
            device,
            allocator,
            ..
        } = self;
        drop(allocator);
        drop(device);
        sim.assert_nothing_allocated();
    }
}
