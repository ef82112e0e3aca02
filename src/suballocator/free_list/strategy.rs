//! The [`AllocationStrategy`] searches of the free list: best fit over the ranges of the
//! lowest size class that holds a fitting range (`MinMemory`), and first fit in address
//! order over the physical list (`MinOffset`). `MinTime` and `Default` are the good-fit search
//! of [`allocate`](Suballocator::allocate).
//!
//! Both searches check every candidate with the same exact [`fit`](FreeListAllocator::fit)
//! and are complete over the free ranges, as the default search is: they fail only when no
//! free range can hold the request, so failure stays monotone whatever the strategy.

use super::*;

impl FreeListAllocator {
    /// Allocates with `strategy` (see [`AllocationStrategy`]).
    #[cold]
    pub(super) fn allocate_by_strategy(
        &mut self,
        layout: DeviceLayout,
        allocation_type: AllocationType,
        granularity: DeviceAlignment,
        strategy: AllocationStrategy,
    ) -> Result<Suballocation, SuballocatorError> {
        let search = match strategy {
            AllocationStrategy::Default | AllocationStrategy::MinTime => {
                return self.allocate(layout, allocation_type, granularity)
            }
            AllocationStrategy::MinMemory => Self::smallest_fit,
            AllocationStrategy::MinOffset => Self::lowest_fit,
        };
        let size = layout.size();
        if size > self.free_size {
            return Err(SuballocatorError::OutOfRegionMemory);
        }
        // As in `allocate`: an allocation adds at most two nodes.
        if self.recycled == NONE && self.nodes.len() >= (FIRST_TAG - 2) as usize {
            return Err(SuballocatorError::FragmentedRegion);
        }
        let alignment = layout.alignment();
        let granularity = self.effective_granularity(allocation_type, granularity);
        match search(self, size, alignment, allocation_type, granularity) {
            Some((idx, start)) => {
                self.lower_quantum(alignment);
                Ok(self.take(idx, start, size, allocation_type))
            }
            None => Err(SuballocatorError::FragmentedRegion),
        }
    }

    /// The smallest free range that fits: every size class holds only ranges larger than
    /// those of the classes below it, so the smallest fitting range is in the lowest class
    /// that has one.
    fn smallest_fit(
        &self,
        size: DeviceSize,
        alignment: DeviceAlignment,
        ty: AllocationType,
        granularity: DeviceAlignment,
    ) -> Option<(u32, DeviceSize)> {
        let mut from = Some(Bucket::containing(size));
        while let Some(bucket) = from.and_then(|b| self.buckets.first_non_empty_from(b)) {
            let mut best: Option<(DeviceSize, u32, DeviceSize)> = None;
            let mut idx = self.buckets.head(bucket);
            while idx != NONE {
                let node = &self.nodes[idx as usize];
                if node.size >= size && best.is_none_or(|(s, _, _)| node.size < s) {
                    if let Some(start) = self.fit(idx, size, alignment, ty, granularity) {
                        best = Some((node.size, idx, start));
                    }
                }
                idx = node.next_free;
            }
            if let Some((_, idx, start)) = best {
                return Some((idx, start));
            }
            from = bucket.next();
        }
        None
    }

    /// The free range at the lowest offset that fits.
    fn lowest_fit(
        &self,
        size: DeviceSize,
        alignment: DeviceAlignment,
        ty: AllocationType,
        granularity: DeviceAlignment,
    ) -> Option<(u32, DeviceSize)> {
        let mut idx = self.first;
        while idx != NONE {
            let node = &self.nodes[idx as usize];
            if node.state() == State::Free && node.size >= size {
                if let Some(start) = self.fit(idx, size, alignment, ty, granularity) {
                    return Some((idx, start));
                }
            }
            idx = node.next;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::suballocator::testing::{self, Checker, Op};
    use proptest::prelude::*;

    /// The free ranges, as (offset, size).
    fn free_ranges(sub: &FreeListAllocator) -> Vec<(DeviceSize, DeviceSize)> {
        let mut out = Vec::new();
        sub.for_each_range(&mut |r| {
            if r.kind == RangeKind::Free {
                out.push((r.offset, r.size));
            }
        });
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(testing::cases(48)))]

        /// Every strategy keeps the suballocator's guarantees (checked after every call, with
        /// the complete-search oracle on failures).
        #[test]
        fn strategies_keep_every_guarantee(
            (region, ops) in (1u64..=1 << 16)
                .prop_flat_map(|r| (Just(r), testing::op_sequence(r, 100..800))),
            granularity in testing::granularity(),
            strategy in prop_oneof![
                Just(AllocationStrategy::MinMemory),
                Just(AllocationStrategy::MinOffset),
                Just(AllocationStrategy::MinTime),
            ],
        ) {
            let mut checker = Checker::new(FreeListAllocator::new(region), granularity)
                .complete()
                .exact()
                .with_strategy(strategy);
            checker.run(&ops);
            checker.free_all_and_reuse(region);
        }

        /// With no alignment or granularity to honour, `MinMemory` takes the smallest free
        /// range that holds the request and `MinOffset` the first one. (The probes are at
        /// least `MIN_SPLIT_PADDING` bytes, so no padding kept in allocations' nodes, which
        /// takes no request, could have held one.)
        #[test]
        fn min_memory_is_best_fit_and_min_offset_first_fit(
            ops in testing::op_sequence(1 << 14, 50..400),
            probes in proptest::collection::vec(MIN_SPLIT_PADDING..4096, 20),
        ) {
            let mut sub = FreeListAllocator::new(1 << 14);
            let mut live = Vec::new();
            // Fragment the region with plain allocations and frees.
            for op in ops {
                match op {
                    Op::Alloc { size, .. } => {
                        if let Ok(s) = sub.allocate(
                            DeviceLayout::from_size_alignment(size, 1).unwrap(),
                            AllocationType::Linear,
                            DeviceAlignment::MIN,
                        ) {
                            live.push(s);
                        }
                    }
                    Op::Free(i) if !live.is_empty() => {
                        let s = live.swap_remove(i % live.len());
                        // SAFETY: allocated above, freed once.
                        #[allow(unsafe_code)]
                        unsafe { sub.deallocate(s) };
                    }
                    _ => {}
                }
            }
            for (i, size) in probes.into_iter().enumerate() {
                let strategy = if i % 2 == 0 {
                    AllocationStrategy::MinMemory
                } else {
                    AllocationStrategy::MinOffset
                };
                let ranges = free_ranges(&sub);
                let fitting: Vec<_> = ranges.iter().filter(|r| r.1 >= size).collect();
                let layout = DeviceLayout::from_size_alignment(size, 1).unwrap();
                match sub.allocate_with_strategy(
                    layout,
                    AllocationType::Linear,
                    DeviceAlignment::MIN,
                    strategy,
                ) {
                    Ok(s) => {
                        let (offset, range) = **ranges
                            .iter()
                            .filter(|r| r.0 <= s.offset && s.offset < r.0 + r.1)
                            .collect::<Vec<_>>()
                            .first()
                            .expect("placed in a free range");
                        prop_assert_eq!(s.offset, offset, "placed at the range's start");
                        if strategy == AllocationStrategy::MinMemory {
                            let smallest = fitting.iter().map(|r| r.1).min().unwrap();
                            prop_assert_eq!(range, smallest);
                        } else {
                            prop_assert_eq!(offset, fitting[0].0);
                        }
                        live.push(s);
                    }
                    Err(_) => prop_assert!(fitting.is_empty()),
                }
            }
        }
    }
}
