//! Allocations through every entry point, frees, and steps on a failing driver.

use super::*;

impl World {
    /// Requirements from raw `VkMemoryRequirements`: an error exactly when the layout is not
    /// one.
    pub(crate) fn bad_requirements(&mut self, rng: &mut Rng) {
        let (size, alignment) = (pick_size(rng), pick_alignment(rng));
        let raw = vk::MemoryRequirements {
            size,
            alignment,
            memory_type_bits: rng.next() as u32,
        };
        let expected = DeviceLayout::from_size_alignment(size, alignment);
        match (AllocationRequirements::from_vk(raw), expected) {
            (Ok(r), Ok(l)) => assert_eq!(r.layout, l),
            (Err(AllocationError::Layout(e)), Err(l)) => assert_eq!(e, l),
            (got, want) => panic!("from_vk({raw:?}) = {got:?}, layout {want:?}"),
        }
        self.count("requirements");
    }

    /// Which allocator serves a request: the default one or a live pool.
    pub(crate) fn pick_target(&self, rng: &mut Rng) -> Option<usize> {
        if self.pools.is_empty() || rng.below(3) == 0 {
            None
        } else {
            Some(rng.below(self.pools.len() as u64) as usize)
        }
    }

    pub(crate) fn allocate(&mut self, rng: &mut Rng) {
        let target = self.pick_target(rng);
        let (size, alignment) = (pick_size(rng), pick_alignment(rng));
        let bits = pick_bits(rng, self.all_types());
        let ty = *rng.pick(&[
            AllocationType::Linear,
            AllocationType::Linear,
            AllocationType::NonLinear,
            AllocationType::Unknown,
        ]);
        let (info, user) = pick_create_info(rng);
        let layout = DeviceLayout::from_size_alignment(size, alignment);
        let (api, source, pool_align, pool_type): (&dyn MemoryAllocator, Source, u64, Option<u32>) =
            match target {
                None => (&self.allocator, Source::Default, 1, None),
                Some(i) => {
                    let p = &self.pools[i];
                    (
                        p.pool.api(),
                        Source::Pool(p.id),
                        p.min_alignment,
                        Some(p.pool.memory_type_index()),
                    )
                }
            };
        let via = rng.below(5);
        let mut what = "allocate";
        let result: Result<Vec<MemoryAlloc>, AllocationError> = match layout {
            Err(e) => {
                // The raw requirements are refused before any allocation.
                let raw = vk::MemoryRequirements {
                    size,
                    alignment,
                    memory_type_bits: bits,
                };
                assert_eq!(
                    AllocationRequirements::from_vk(raw).unwrap_err(),
                    AllocationError::Layout(e)
                );
                self.count("refused layout");
                return;
            }
            Ok(layout) => {
                let requirements = AllocationRequirements {
                    layout,
                    memory_type_bits: bits,
                    prefers_dedicated_allocation: rng.below(8) == 0,
                    requires_dedicated_allocation: rng.below(16) == 0,
                };
                match via {
                    0 | 1 => api.allocate(requirements, ty, &info, None).map(|a| vec![a]),
                    2 => {
                        what = "allocate_desc";
                        let mut desc = AllocationDesc::new(requirements);
                        desc.allocation_type = ty;
                        desc.create_info = info.clone();
                        api.allocate_desc(&desc).map(|a| vec![a])
                    }
                    3 => {
                        what = "allocate_pages";
                        let n = match rng.below(12) {
                            // More than the heaps hold: refused before the first page.
                            0 => usize::MAX,
                            1 => 1 << 40,
                            _ => rng.below(4) as usize,
                        };
                        let r = api.allocate_pages(requirements, ty, &info, n);
                        if let Ok(v) = &r {
                            assert_eq!(v.len(), n, "allocate_pages made the wrong count");
                        }
                        r
                    }
                    _ => {
                        let index = rng.below(self.type_count() as u64 + 2) as u32;
                        if rng.below(2) == 0 {
                            what = "allocate_from_type";
                            api.allocate_from_type(index, layout, ty, &info)
                                .map(|a| vec![a])
                        } else {
                            what = "allocate_dedicated";
                            api.allocate_dedicated(index, layout.size(), None, &info)
                                .map(|a| vec![a])
                        }
                    }
                }
            }
        };
        let allocs = match result {
            Ok(v) => v,
            Err(e) => {
                assert!(
                    documented(&e, self.faults),
                    "step {}: {what} of {size} at {alignment} (bits {bits:#x}, {info:?}): \
                     undocumented error {e:?}",
                    self.step
                );
                if let AllocationError::BudgetExceeded(b) = &e {
                    assert!(info.within_budget, "step {}: {b:?} unasked", self.step);
                    assert!(
                        b.usage.saturating_add(b.size) > b.budget,
                        "step {}: {b:?} is within the budget",
                        self.step
                    );
                }
                if !priority_ok(&info) {
                    self.count("refused priority");
                }
                let variant = format!("{e:?}");
                let variant = variant.split([' ', '(', '{']).next().unwrap_or("");
                self.count(format!("error {variant}"));
                return;
            }
        };
        assert!(
            priority_ok(&info) || allocs.is_empty(),
            "step {}: {what} with priority {:?} succeeded",
            self.step,
            info.priority
        );
        let explicit_type = matches!(what, "allocate_from_type" | "allocate_dedicated");
        for mut a in allocs {
            let t = a.memory_type_index();
            if !explicit_type {
                assert_ne!(bits & (1 << t), 0, "{what}: type {t} outside {bits:#x}");
            }
            if let Some(pt) = pool_type {
                assert_eq!(t, pt, "{what}: a pool allocation of another type");
            }
            assert!(a.size() >= size, "{what}: {} bytes for {size}", a.size());
            let alignment = if what == "allocate_dedicated" {
                1
            } else {
                alignment
                    .max(info.min_alignment.as_devicesize())
                    .max(pool_align)
            };
            assert_eq!(a.name(), info.name.as_deref());
            assert_eq!(a.user_data_as::<u64>().copied(), user);
            let host_visible = a.memory_property_flags().contains(F::HOST_VISIBLE);
            assert_eq!(host_visible, a.mapped_ptr().is_some());
            if matches!(info.usage, MemoryUsage::Upload | MemoryUsage::Download)
                && !explicit_type
                && source == Source::Default
            {
                assert!(
                    host_visible,
                    "step {}: {what}: {:?} in memory type {t} the host cannot see (bits {bits:#x}, \
                     {size} at {alignment}, {ty:?}, {info:?})",
                    self.step,
                    info.usage
                );
            }
            let shadow = host_visible.then(|| {
                let bytes = support::pattern(rng.next(), a.size().min(SHADOW) as usize);
                a.write(0, &bytes).unwrap();
                bytes
            });
            self.next_uid += 1;
            self.live.push(Live {
                uid: self.next_uid,
                alloc: a,
                source,
                alignment,
                requested: size,
                shadow,
                name: info.name.clone(),
                user,
            });
            self.count(what);
        }
    }

    /// A host-visible allocation of up to a third of a block in `target`, filled with a pattern.
    pub(crate) fn plain_allocation(&mut self, target: Source, rng: &mut Rng) {
        let api: &dyn MemoryAllocator = match target {
            Source::Default => &self.allocator,
            Source::Pool(id) => match self.pools.iter().find(|p| p.id == id) {
                Some(p) => p.pool.api(),
                None => return,
            },
        };
        let pool_align = match target {
            Source::Default => 1,
            Source::Pool(id) => {
                self.pools
                    .iter()
                    .find(|p| p.id == id)
                    .unwrap()
                    .min_alignment
            }
        };
        // Up to a third of a block, so that a few blocks fill.
        let block = match target {
            Source::Default => self.allocator.block_size(1).unwrap_or(MIB),
            Source::Pool(id) => self
                .pools
                .iter()
                .find(|p| p.id == id)
                .unwrap()
                .pool
                .block_size(),
        };
        let size = 1 + rng.below((block / 3).clamp(1, 4 * MIB));
        let alignment = 1 << rng.below(9);
        let requirements = AllocationRequirements {
            layout: DeviceLayout::from_size_alignment(size, alignment).unwrap(),
            memory_type_bits: self.all_types(),
            prefers_dedicated_allocation: false,
            requires_dedicated_allocation: false,
        };
        let info = AllocationCreateInfo {
            usage: MemoryUsage::Upload,
            ..Default::default()
        };
        let mut a = match api.allocate(requirements, AllocationType::Linear, &info, None) {
            Ok(a) => a,
            Err(e) => {
                assert!(documented(&e, self.faults), "step {}: {e:?}", self.step);
                return;
            }
        };
        let shadow = a.mapped_ptr().is_some().then(|| {
            let bytes = support::pattern(rng.next(), a.size().min(SHADOW) as usize);
            a.write(0, &bytes).unwrap();
            bytes
        });
        self.next_uid += 1;
        self.live.push(Live {
            uid: self.next_uid,
            alloc: a,
            source: target,
            alignment: alignment.max(pool_align),
            requested: size,
            shadow,
            name: None,
            user: None,
        });
        self.count("plain allocation");
    }

    pub(crate) fn pick_live(&self, rng: &mut Rng) -> Option<usize> {
        (!self.live.is_empty()).then(|| rng.below(self.live.len() as u64) as usize)
    }

    pub(crate) fn free(&mut self, rng: &mut Rng) {
        for _ in 0..1 + rng.below(2) {
            if let Some(i) = self.pick_live(rng) {
                self.live.swap_remove(i);
                self.count("free");
            }
        }
    }

    /// An allocation, a pool or a defragmentation while the driver fails: one of the next
    /// few `vkAllocateMemory` (out of device or host memory) or `vkMapMemory` calls fails.
    /// The errors are the documented ones and the books stay right (checked after the step).
    pub(crate) fn with_faults(&mut self, rng: &mut Rng) {
        let result = *rng.pick(&[
            vk::Result::ERROR_OUT_OF_DEVICE_MEMORY,
            vk::Result::ERROR_OUT_OF_HOST_MEMORY,
        ]);
        let map = rng.below(3) == 0;
        self.sim.state.reset_counters();
        self.sim.state.set_faults(support::Faults {
            allocate_at: (!map).then(|| (1 + rng.below(3), result)),
            allocate_more: rng.below(3),
            map_at: map.then(|| 1 + rng.below(2)),
        });
        self.faults = true;
        match rng.below(4) {
            0 => self.create_pool(rng),
            1 => self.defragment(rng),
            _ => {
                for _ in 0..1 + rng.below(4) {
                    self.allocate(rng);
                }
            }
        }
        self.sim.state.set_faults(support::Faults::default());
        self.faults = false;
        self.count("faulty step");
    }
}
