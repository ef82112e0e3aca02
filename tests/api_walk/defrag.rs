//! Defragmentations started at random points.

use super::*;

impl World {
    /// A defragmentation of the default vectors or of one pool.
    pub(crate) fn defragment(&mut self, rng: &mut Rng) {
        let info = DefragmentationInfo {
            algorithm: if rng.below(2) == 0 {
                DefragmentationAlgorithm::Fast
            } else {
                DefragmentationAlgorithm::Full
            },
            max_bytes_per_pass: if rng.below(2) == 0 {
                DeviceSize::MAX
            } else {
                rng.below(512 * KIB)
            },
            max_moves_per_pass: if rng.below(2) == 0 {
                usize::MAX
            } else {
                rng.below(6) as usize
            },
            ..Default::default()
        };
        match self.pick_target(rng) {
            None => {
                let d = self.allocator.defragmentation(&info);
                self.run_defrag(d, Source::Default, rng);
            }
            Some(i) => {
                let source = Source::Pool(self.pools[i].id);
                match &self.pools[i].pool {
                    AnyPool::FreeList(p) => {
                        let d = p.defragmentation(&info);
                        self.run_defrag(d, source, rng)
                    }
                    AnyPool::Buddy(p) => {
                        let d = p.defragmentation(&info);
                        self.run_defrag(d, source, rng)
                    }
                    AnyPool::Bump(p) => {
                        let d = p.defragmentation(&info);
                        self.run_defrag(d, source, rng)
                    }
                    AnyPool::Ring(p) => {
                        let d = p.defragmentation(&info);
                        self.run_defrag(d, source, rng)
                    }
                    AnyPool::Slot(p) => {
                        let d = p.defragmentation(&info);
                        self.run_defrag(d, source, rng)
                    }
                }
            }
        }
        self.count("defragmentation");
    }

    pub(crate) fn run_defrag<S: Suballocator + Send + 'static>(
        &mut self,
        mut defrag: Defragmentation<S>,
        target: Source,
        rng: &mut Rng,
    ) {
        // Some allocations in the target, every other one freed again: holes to fill.
        if rng.below(2) == 0 {
            let first = self.live.len();
            for _ in 0..4 + rng.below(12) {
                self.plain_allocation(target, rng);
            }
            let mut i = first;
            while i < self.live.len() {
                self.live.swap_remove(i);
                i += 1;
            }
        }
        // Registration id -> uid of the live allocation.
        let mut ids: HashMap<MoveId, u64> = HashMap::new();
        for l in &mut self.live {
            if rng.below(4) == 0 {
                continue;
            }
            let alignment = DeviceAlignment::new(l.alignment).unwrap();
            let result = defrag.add(&mut l.alloc, alignment);
            let ours = l.source == target && !l.alloc.is_dedicated();
            match result {
                Ok(id) => {
                    if rng.below(4) == 0 {
                        // Added again: the same id.
                        assert_eq!(defrag.add(&mut l.alloc, alignment), Ok(id));
                    }
                    self.done
                        .entry("registered".into())
                        .and_modify(|n| *n += 1)
                        .or_insert(1);
                    assert!(
                        ours,
                        "step {}: {:?} added to a defragmentation of {target:?}",
                        self.step, l.source
                    );
                    ids.insert(id, l.uid);
                }
                Err(DefragmentationError::Dedicated) => assert!(l.alloc.is_dedicated()),
                Err(DefragmentationError::NotHere) => assert!(
                    !ours,
                    "step {}: an allocation of {target:?} refused",
                    self.step
                ),
                Err(e) => panic!("add: {e:?}"),
            }
        }
        let passes = 1 + rng.below(6);
        for _ in 0..passes {
            let Some(mut pass) = defrag.next_pass() else {
                break;
            };
            let open: Vec<usize> = pass.moves().map(|m| m.index()).collect();
            self.count("defragmentation pass");
            for index in open {
                let (id, src_memory, src_offset, size) = {
                    let m = pass.get(index).unwrap();
                    (m.id(), m.source_memory(), m.source_offset(), m.size())
                };
                let uid = *ids.get(&id).expect("a move of an allocation never added");
                let Some(li) = self.live.iter().position(|l| l.uid == uid) else {
                    panic!("step {}: a move of a freed allocation", self.step);
                };
                assert_eq!(self.live[li].alloc.memory(), src_memory);
                assert_eq!(self.live[li].alloc.offset(), src_offset);
                match rng.below(8) {
                    0 => pass.skip(index).unwrap(),
                    1 => {} // left open
                    2 => {
                        // Completed with the wrong allocation: refused, nothing changes.
                        if let Some(other) = self.pick_live(rng).filter(|&o| o != li) {
                            let r = pass.complete(index, &mut self.live[other].alloc);
                            assert!(
                                matches!(r, Err(DefragmentationError::NotTheSource)),
                                "complete with the wrong allocation: {r:?}"
                            );
                        }
                        let r = pass.complete(index + 1000, &mut self.live[li].alloc);
                        assert_eq!(r, Err(DefragmentationError::NoSuchMove(index + 1000)));
                    }
                    _ => {
                        let l = &mut self.live[li];
                        if rng.below(4) == 0 {
                            // Renamed while it moves: the name as it is now goes along.
                            let name: Option<Arc<str>> = (rng.below(2) == 0)
                                .then(|| format!("moved{}", rng.below(9)).into());
                            l.alloc.set_name(name.clone());
                            l.name = name;
                        }
                        let dst = pass.get(index).unwrap().destination();
                        if let Some(ptr) = dst.mapped_ptr() {
                            let mut bytes = vec![0; size as usize];
                            l.alloc.read(0, &mut bytes).unwrap();
                            // SAFETY: `size` bytes inside the destination, which nothing else
                            // uses until the move is completed.
                            unsafe {
                                std::ptr::copy_nonoverlapping(
                                    bytes.as_ptr(),
                                    ptr.as_ptr(),
                                    bytes.len(),
                                )
                            };
                            dst.flush(0, size).unwrap();
                        }
                        pass.complete(index, &mut l.alloc).unwrap();
                        assert_eq!(l.alloc.name(), l.name.as_deref(), "the name moves along");
                        assert_eq!(l.alloc.user_data_as::<u64>().copied(), l.user);
                        self.count("move completed");
                    }
                }
            }
            match rng.below(5) {
                0 => drop(pass),
                _ => {
                    pass.end();
                }
            }
            // Between passes: the books, with the reservations of the blocks it drains.
            self.check_between_passes();
            // The application drops the pool's handle: the defragmentation keeps the pool
            // until it ends, then its live allocations stay in the allocator's books.
            if let Source::Pool(id) = target {
                if rng.below(8) == 0 {
                    if let Some(i) = self.pools.iter().position(|p| p.id == id) {
                        self.pools.swap_remove(i);
                        self.count("pool dropped during defragmentation");
                    }
                }
            }
            // The application frees some between passes, and allocates.
            if rng.below(3) == 0 {
                let i = self.pick_live(rng);
                if let Some(i) = i {
                    self.live.swap_remove(i);
                    self.count("freed during defragmentation");
                }
            }
            if rng.below(3) == 0 {
                self.allocate(rng);
            }
        }
        if rng.below(3) == 0 {
            drop(defrag);
            self.count("defragmentation dropped");
        } else {
            defrag.finish();
        }
    }
}
