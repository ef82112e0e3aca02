//! One thread's seeded random walk over the safe API, and the observer thread.

use super::*;

/// Errors a valid request may meet under heap, budget, pool and object-count pressure.
pub(crate) fn expected_failure(e: &AllocationError) -> bool {
    matches!(
        e,
        AllocationError::OutOfDeviceMemory
            | AllocationError::BudgetExceeded(_)
            | AllocationError::PoolFull { .. }
            | AllocationError::OutOfPoolMemory
            | AllocationError::TooManyObjects { .. }
    )
}

/// A walking thread: its own allocations (nobody else touches them) and its random source.
pub(crate) struct Walker<'a> {
    pub(crate) shared: &'a Shared,
    pub(crate) thread: u64,
    pub(crate) rng: Rng,
    pub(crate) live: Vec<Live>,
    /// What it did, for the summary.
    pub(crate) done: HashMap<&'static str, u64>,
    pub(crate) round: u64,
    pub(crate) op: u64,
}

impl Walker<'_> {
    fn count(&mut self, what: &'static str) {
        *self.done.entry(what).or_default() += 1;
    }

    fn at(&self) -> String {
        format!(
            "seed {:#x}, round {}, thread {}, op {}",
            self.shared.seed, self.round, self.thread, self.op
        )
    }

    pub(crate) fn step(&mut self) {
        match self.rng.below(100) {
            0..=37 => self.allocate(),
            38..=52 => self.free(),
            53..=62 => self.verify_one(),
            63..=67 => self.rewrite(),
            68..=71 => self.rename(),
            72..=75 => self.allocate_pages(),
            76..=78 => self.create_pool(),
            79..=80 => self.drop_pool(),
            81 => self.rename_pool(),
            82..=84 => self.statistics(),
            85..=87 if self.shared.walk.defrag && self.thread == 0 => self.defragment(),
            _ => self.allocate(),
        }
        // Heap pressure: a few dozen allocations per thread at most.
        while self.live.len() > 32 {
            let l = self.live.swap_remove(0);
            self.check_and_free(l);
        }
        self.op += 1;
    }

    /// The default vectors (about 60%) or one of the shared pools.
    fn pick_pool(&mut self) -> Option<SharedPool> {
        if self.rng.below(5) < 3 {
            return None;
        }
        let pools = self.shared.pools.lock().unwrap();
        if pools.is_empty() {
            return None;
        }
        Some(pools[self.rng.below(pools.len() as u64) as usize].clone())
    }

    fn request(&mut self, pool: bool) -> (AllocationRequirements, AllocationCreateInfo) {
        let rng = &mut self.rng;
        let size = match rng.below(40) {
            0 if !pool => rng.range(MIB, 3 * MIB),
            1..=6 => rng.range(16 * KIB, 256 * KIB),
            _ => rng.range(1, 16 * KIB),
        };
        let alignment = 1 << rng.below(11);
        let requirements = AllocationRequirements {
            layout: DeviceLayout::from_size_alignment(size, alignment).unwrap(),
            memory_type_bits: self.shared.all_types,
            prefers_dedicated_allocation: rng.below(30) == 0,
            requires_dedicated_allocation: false,
        };
        let info = AllocationCreateInfo {
            usage: *rng.pick(&[
                MemoryUsage::Upload,
                MemoryUsage::Upload,
                MemoryUsage::Download,
                MemoryUsage::DeviceOnly,
            ]),
            allocate_preference: if rng.below(40) == 0 {
                MemoryAllocatePreference::AlwaysAllocate
            } else {
                MemoryAllocatePreference::Auto
            },
            within_budget: rng.below(4) == 0,
            name: (rng.below(4) == 0).then(|| format!("t{}-{}", self.thread, rng.below(99)).into()),
            strategy: *rng.pick(&[
                AllocationStrategy::Default,
                AllocationStrategy::MinMemory,
                AllocationStrategy::MinTime,
            ]),
            ..Default::default()
        };
        (requirements, info)
    }

    fn keep(&mut self, mut alloc: MemoryAlloc, alignment: u64, pool: Option<&SharedPool>) {
        let len = if alloc.mapped_ptr().is_some() {
            alloc.size().min(PATTERN)
        } else {
            0
        };
        let seed = self.rng.next();
        if len > 0 {
            fill(&mut alloc, seed, len);
        }
        if let Some(p) = pool {
            assert_eq!(
                alloc.memory_type_index(),
                p.pool.memory_type_index(),
                "{}",
                self.at()
            );
        }
        self.live.push(Live {
            alloc,
            seed,
            len,
            alignment,
            pool: pool.map(|p| p.id),
            uid: self.shared.next_uid.fetch_add(1, Ordering::Relaxed),
        });
    }

    fn allocate(&mut self) {
        let pool = self.pick_pool();
        let (requirements, info) = self.request(pool.is_some());
        let ty = *self
            .rng
            .pick(&[AllocationType::Linear, AllocationType::NonLinear]);
        let api: &dyn MemoryAllocator = match &pool {
            Some(p) => p.pool.api(),
            None => &self.shared.allocator,
        };
        let result = if self.rng.below(4) == 0 {
            let mut desc = AllocationDesc::new(requirements);
            desc.allocation_type = ty;
            desc.create_info = info.clone();
            api.allocate_desc(&desc)
        } else {
            api.allocate(requirements, ty, &info, None)
        };
        match result {
            Ok(a) => {
                assert!(a.size() >= requirements.layout.size(), "{}", self.at());
                assert_eq!(a.name(), info.name.as_deref(), "{}", self.at());
                self.keep(
                    a,
                    requirements.layout.alignment().as_devicesize(),
                    pool.as_ref(),
                );
                self.count("allocate");
            }
            Err(e) if expected_failure(&e) => self.count("allocation refused"),
            Err(e) => panic!("{}: allocate({requirements:?}, {info:?}): {e:?}", self.at()),
        }
    }

    fn allocate_pages(&mut self) {
        let pool = self.pick_pool();
        let (requirements, info) = self.request(pool.is_some());
        let n = 1 + self.rng.below(4) as usize;
        let api: &dyn MemoryAllocator = match &pool {
            Some(p) => p.pool.api(),
            None => &self.shared.allocator,
        };
        match api.allocate_pages(requirements, AllocationType::Linear, &info, n) {
            Ok(pages) => {
                assert_eq!(pages.len(), n, "{}", self.at());
                for a in pages {
                    self.keep(
                        a,
                        requirements.layout.alignment().as_devicesize(),
                        pool.as_ref(),
                    );
                }
                self.count("allocate_pages");
            }
            Err(e) if expected_failure(&e) => self.count("pages refused"),
            Err(e) => panic!("{}: allocate_pages({n}): {e:?}", self.at()),
        }
    }

    fn pick_live(&mut self) -> Option<usize> {
        (!self.live.is_empty()).then(|| self.rng.below(self.live.len() as u64) as usize)
    }

    fn verify(&self, l: &Live, what: &str) {
        if l.len > 0 {
            verify(&l.alloc, l.seed, l.len, &format!("{}: {what}", self.at()));
        }
    }

    /// Checks `l`, then overwrites it before it goes: a range another live allocation also
    /// holds shows up there as a broken pattern.
    pub(crate) fn check_and_free(&mut self, l: Live) {
        self.verify(&l, "before its free");
        let mut l = l;
        if l.len > 0 {
            fill(&mut l.alloc, !l.seed, l.len);
        }
        drop(l);
        self.count("free");
    }

    fn free(&mut self) {
        if let Some(i) = self.pick_live() {
            let l = self.live.swap_remove(i);
            self.check_and_free(l);
        }
    }

    fn verify_one(&mut self) {
        if let Some(i) = self.pick_live() {
            self.verify(&self.live[i], "at a random point");
            self.count("verify");
        }
    }

    fn rewrite(&mut self) {
        if let Some(i) = self.pick_live() {
            self.verify(&self.live[i], "before a rewrite");
            let seed = self.rng.next();
            let l = &mut self.live[i];
            if l.len > 0 {
                fill(&mut l.alloc, seed, l.len);
                l.seed = seed;
            }
            self.count("rewrite");
        }
    }

    fn rename(&mut self) {
        if let Some(i) = self.pick_live() {
            let name: Option<Arc<str>> = (self.rng.below(3) != 0)
                .then(|| format!("r{}-{}", self.thread, self.rng.below(99)).into());
            self.live[i].alloc.set_name(name.clone());
            assert_eq!(self.live[i].alloc.name(), name.as_deref());
            self.count("rename");
        }
    }

    fn create_pool(&mut self) {
        if self.shared.pools.lock().unwrap().len() >= 3 {
            return;
        }
        let id = self.shared.next_pool.fetch_add(1, Ordering::Relaxed);
        let rng = &mut self.rng;
        let info = PoolCreateInfo {
            name: Some(format!("pool{id}").into()),
            memory_type: PoolMemoryType::Find {
                memory_type_bits: u32::MAX,
                usage: *rng.pick(&[
                    MemoryUsage::Upload,
                    MemoryUsage::Download,
                    MemoryUsage::DeviceOnly,
                ]),
            },
            block_size: *rng.pick(&[512 * KIB, MIB, 2 * MIB]),
            min_block_count: rng.below(2) as usize,
            max_block_count: 2 + rng.below(3) as usize,
            block_arenas: *rng.pick(&[None, Some(1), Some(2)]),
            ..Default::default()
        };
        let allocator = &self.shared.allocator;
        let made = if rng.below(2) == 0 {
            allocator.create_pool(&info).map(AnyPool::FreeList)
        } else {
            allocator.create_pool(&info).map(AnyPool::Buddy)
        };
        match made {
            Ok(pool) => {
                let mut pools = self.shared.pools.lock().unwrap();
                pools.push(SharedPool {
                    id,
                    pool: pool.clone(),
                });
                self.shared.names.lock().unwrap().insert(id, pool.name());
                self.count("pool made");
            }
            Err(e) if expected_failure(&e) => self.count("pool refused"),
            Err(e) => panic!("{}: create_pool({info:?}): {e:?}", self.at()),
        }
    }

    /// A pool's shared handle goes (other threads may still hold a clone for a moment, and
    /// allocations from it live on).
    fn drop_pool(&mut self) {
        let taken = {
            let mut pools = self.shared.pools.lock().unwrap();
            if pools.is_empty() {
                return;
            }
            let i = self.rng.below(pools.len() as u64) as usize;
            pools.swap_remove(i)
        };
        drop(taken);
        self.count("pool dropped");
    }

    fn rename_pool(&mut self) {
        let pools = self.shared.pools.lock().unwrap();
        if pools.is_empty() {
            return;
        }
        let p = &pools[self.rng.below(pools.len() as u64) as usize];
        let name: Arc<str> = format!("pool{}-{}", p.id, self.rng.below(9)).into();
        p.pool.set_name(Some(name.clone()));
        assert_eq!(p.pool.name(), name);
        self.shared.names.lock().unwrap().insert(p.id, name);
        drop(pools);
        self.count("pool renamed");
    }

    fn statistics(&mut self) {
        let stats = self.shared.allocator.statistics();
        consistent(&stats, &self.at());
        self.count("statistics");
    }

    /// A defragmentation of the default vectors or of a shared pool, over this thread's own
    /// allocations there, while the other threads allocate and free in the same blocks (and
    /// may drop the pool's shared handle); moves of host-visible allocations are copied on
    /// the host, some moves skipped.
    fn defragment(&mut self) {
        let info = DefragmentationInfo {
            algorithm: if self.rng.below(2) == 0 {
                DefragmentationAlgorithm::Fast
            } else {
                DefragmentationAlgorithm::Full
            },
            max_moves_per_pass: *self.rng.pick(&[usize::MAX, 1, 3]),
            ..Default::default()
        };
        match self.pick_pool() {
            None => {
                let d = self.shared.allocator.defragmentation(&info);
                self.run_defrag(d, None);
            }
            Some(p) => match &p.pool {
                AnyPool::FreeList(pool) => self.run_defrag(pool.defragmentation(&info), Some(p.id)),
                AnyPool::Buddy(pool) => self.run_defrag(pool.defragmentation(&info), Some(p.id)),
            },
        }
    }

    fn run_defrag<S: Suballocator + Send + 'static>(
        &mut self,
        mut defrag: Defragmentation<S>,
        target: Option<u64>,
    ) {
        let mut ids: HashMap<MoveId, u64> = HashMap::new();
        for l in &mut self.live {
            if l.pool != target || l.alloc.is_dedicated() {
                continue;
            }
            let alignment = DeviceAlignment::new(l.alignment).unwrap();
            match defrag.add(&mut l.alloc, alignment) {
                Ok(id) => {
                    ids.insert(id, l.uid);
                }
                Err(e) => panic!(
                    "seed {:#x} thread {}: add of an allocation of {target:?}: {e:?}",
                    self.shared.seed, self.thread
                ),
            }
        }
        for _ in 0..8 {
            let Some(mut pass) = defrag.next_pass() else {
                break;
            };
            let open: Vec<usize> = pass.moves().map(|m| m.index()).collect();
            for index in open {
                let (id, memory, offset, size) = {
                    let m = pass.get(index).unwrap();
                    (m.id(), m.source_memory(), m.source_offset(), m.size())
                };
                let uid = ids[&id];
                let li = self
                    .live
                    .iter()
                    .position(|l| l.uid == uid)
                    .expect("a move of a freed allocation");
                let l = &mut self.live[li];
                assert_eq!((l.alloc.memory(), l.alloc.offset()), (memory, offset));
                if self.rng.below(6) == 0 {
                    pass.skip(index).unwrap();
                    continue;
                }
                let dst = pass.get(index).unwrap().destination();
                if let Some(ptr) = dst.mapped_ptr() {
                    let mut bytes = vec![0; size as usize];
                    l.alloc.read(0, &mut bytes).unwrap();
                    // SAFETY: `size` bytes inside the destination, which nothing else uses
                    // until the move is completed.
                    unsafe {
                        std::ptr::copy_nonoverlapping(bytes.as_ptr(), ptr.as_ptr(), bytes.len())
                    };
                    dst.flush(0, size).unwrap();
                }
                pass.complete(index, &mut l.alloc).unwrap();
                *self.done.entry("move completed").or_default() += 1;
            }
            pass.end();
            // Between passes this thread frees one of its allocations now and then.
            if self.rng.below(3) == 0 {
                self.free();
            }
        }
        defrag.finish();
        for l in &self.live {
            self.verify(l, "after a defragmentation");
        }
        self.count(if target.is_some() {
            "pool defragmentation"
        } else {
            "defragmentation"
        });
    }
}

/// One number of a [`Statistics`].
type Field = fn(&Statistics) -> u64;

/// What a statistics walk must agree with itself on, however others allocate meanwhile.
pub(crate) fn consistent(stats: &AllocatorStatistics, at: &str) {
    let t = &stats.total;
    let fields: [(&str, Field); 3] = [
        ("allocations", |s| s.allocation_count),
        ("reserved bytes", |s| s.reserved_bytes),
        ("blocks", |s| s.block_count),
    ];
    for (what, f) in fields {
        let heaps: u64 = stats.heaps.iter().map(|h| f(&h.statistics)).sum();
        let types: u64 = stats.memory_types.iter().map(|h| f(&h.statistics)).sum();
        let blocks: u64 = stats.blocks.iter().map(|b| f(&b.statistics)).sum();
        assert_eq!((heaps, types, blocks), (f(t), f(t), f(t)), "{at}: {what}");
    }
    assert_eq!(
        t.allocations.total + t.free_ranges.total,
        t.reserved_bytes,
        "{at}: allocated and free bytes make the memory"
    );
    let mut handles: Vec<u64> = stats.blocks.iter().map(|b| b.memory).collect();
    handles.sort_unstable();
    let n = handles.len();
    handles.dedup();
    assert_eq!(handles.len(), n, "{at}: a memory object counted twice");
    for b in &stats.blocks {
        let s = &b.statistics;
        assert_eq!(s.reserved_bytes, b.size, "{at}: block {:#x}", b.memory);
        assert_eq!(
            s.allocations.total + s.free_ranges.total,
            s.reserved_bytes,
            "{at}: block {:#x}",
            b.memory
        );
    }
}

/// Takes every kind of look at the allocator and the live pools until `stop`: statistics,
/// snapshots (their ranges tile each block), both JSON dumps (they parse), the SVG map, leak
/// reports, corruption checks and budgets.
pub(crate) fn observe(shared: &Shared, stop: &AtomicBool) -> u64 {
    let at = format!("seed {:#x}: observer", shared.seed);
    let mut rng = Rng(shared.seed ^ 0x0b5e);
    let mut looks = 0;
    while !stop.load(Ordering::Relaxed) {
        let a = &shared.allocator;
        match rng.below(8) {
            0 | 1 => consistent(&a.statistics(), &at),
            2 => {
                let snap = a.snapshot();
                consistent(&snap.statistics, &at);
                for b in &snap.blocks {
                    let mut end = 0;
                    let mut allocated = 0;
                    for r in &b.ranges {
                        assert_eq!(r.offset, end, "{at}: ranges tile {:#x}", b.memory);
                        end += r.size;
                        allocated += u64::from(matches!(r.kind, RangeKind::Allocated(_)));
                    }
                    assert_eq!(end, b.size, "{at}: block {:#x}", b.memory);
                    assert_eq!(allocated, b.allocation_count, "{at}: block {:#x}", b.memory);
                }
                if rng.below(4) == 0 {
                    let json: serde_json::Value =
                        serde_json::from_str(&snap.to_json()).expect("the JSON dump parses");
                    assert!(json["total"]["allocations"].is_u64(), "{at}");
                    assert!(snap.to_svg().contains("<svg"), "{at}");
                }
            }
            3 => {
                let vma: serde_json::Value =
                    serde_json::from_str(&a.to_vma_json()).expect("VMA JSON parses");
                assert!(vma["DefaultPools"].is_object(), "{at}");
            }
            4 => {
                for l in a.report_leaks() {
                    assert!(l.size > 0, "{at}: {l:?}");
                }
            }
            5 => {
                let r = a.check_corruption(u32::MAX);
                assert_eq!(r.is_ok(), shared.walk.margin > 0, "{at}: {r:?}");
            }
            6 => {
                let pools: Vec<SharedPool> = shared.pools.lock().unwrap().clone();
                for p in pools {
                    let s = p.pool.api().statistics();
                    consistent(&s, &at);
                    let _ = p.pool.report_leaks();
                    assert_eq!(p.pool.check_corruption(), shared.walk.margin > 0, "{at}");
                }
            }
            _ => {
                for b in a.device().heap_budgets() {
                    assert!(b.from_extension, "{at}");
                }
            }
        }
        looks += 1;
    }
    looks
}
