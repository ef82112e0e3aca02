//! Dumps, leak reports, corruption checks and budgets at random points.

use super::*;

impl World {
    /// The dumps, the SVG, leak reports and corruption checks at a random point; sometimes
    /// new budgets and other processes' usage of the heaps first.
    pub(crate) fn observe(&mut self, rng: &mut Rng) {
        if rng.below(3) == 0 {
            for (h, &(size, _)) in self.sim.state.layout.heaps.clone().iter().enumerate() {
                let budget = match rng.below(4) {
                    0 => size,
                    1 => 0,
                    _ => rng.below(size),
                };
                self.other_usage[h] = rng.below(size / 4);
                self.sim.state.set_heap_budget(h as u32, budget);
                self.sim
                    .state
                    .set_other_usage(h as u32, self.other_usage[h]);
            }
            self.count("budgets set");
        }
        let snap = self.allocator.snapshot();
        let json: serde_json::Value = serde_json::from_str(&snap.to_json()).unwrap();
        assert_eq!(
            json["total"]["allocations"].as_u64(),
            Some(self.live.len() as u64)
        );
        let vma: serde_json::Value =
            serde_json::from_str(&self.allocator.to_vma_json()).expect("VMA JSON parses");
        let mut allocations = 0;
        let mut count = |pool: &serde_json::Value| {
            for b in pool["Blocks"].as_object().unwrap().values() {
                allocations += b["Allocations"].as_u64().unwrap();
            }
            allocations += pool["DedicatedAllocations"].as_array().unwrap().len() as u64;
        };
        for p in vma["DefaultPools"].as_object().unwrap().values() {
            count(p);
        }
        for pools in vma["CustomPools"].as_object().unwrap().values() {
            for p in pools.as_array().unwrap() {
                count(p);
            }
        }
        assert_eq!(
            allocations,
            self.live.len() as u64,
            "allocations in VMA's dump"
        );
        if rng.below(4) == 0 {
            assert!(snap.to_svg().starts_with("<svg") || snap.to_svg().starts_with("<?xml"));
        }
        let leaks = self.allocator.report_leaks();
        self.check_leaks(&leaks, None);
        for p in &self.pools {
            self.check_leaks(&p.pool.report_leaks(), Some(p));
        }
        let margins = self.margin > 0;
        assert_eq!(self.allocator.check_corruption(u32::MAX).is_ok(), margins);
        for p in &self.pools {
            assert_eq!(p.pool.check_corruption(), margins);
        }
        self.count("observe");
    }

    /// A leak report (of the allocator, or of pool `pool`) against the live allocations:
    /// each lies in exactly one reported range, each reported range holds one at least, and
    /// a range of one allocation carries its name and user data. (A bump pool reports its
    /// used prefix as one range, see `Statistics`.)
    pub(crate) fn check_leaks(&self, leaks: &[LeakedAllocation], pool: Option<&PoolEntry>) {
        let step = self.step;
        let mine: Vec<&Live> = self
            .live
            .iter()
            .filter(|l| pool.is_none_or(|p| l.source == Source::Pool(p.id)))
            .collect();
        let holds = |k: &LeakedAllocation, l: &Live| {
            k.memory == l.alloc.memory().as_raw()
                && k.offset <= l.alloc.offset()
                && l.alloc.offset() + l.alloc.size() <= k.offset + k.size
        };
        for l in &mine {
            let n = leaks.iter().filter(|k| holds(k, l)).count();
            assert_eq!(
                n,
                1,
                "step {step}: leak reports of {:#x}+{}",
                l.alloc.memory().as_raw(),
                l.alloc.offset()
            );
        }
        for k in leaks {
            let inside: Vec<&&Live> = mine.iter().filter(|l| holds(k, l)).collect();
            assert!(!inside.is_empty(), "step {step}: a leak of nothing: {k:?}");
            if let [l] = inside[..] {
                if !self.is_bump(l.source) {
                    assert_eq!(k.name.as_deref(), l.name.as_deref(), "step {step}: {k:?}");
                    assert_eq!(
                        k.user_data.as_deref(),
                        l.user.map(|u| format!("{u:?}")).as_deref(),
                        "step {step}: {k:?}"
                    );
                    assert_eq!(k.dedicated, l.alloc.is_dedicated());
                    assert_eq!(k.memory_type_index, l.alloc.memory_type_index());
                }
            }
        }
    }

    pub(crate) fn is_bump(&self, source: Source) -> bool {
        matches!(source, Source::Pool(id) if self.bump_pools.contains(&id))
    }
}
