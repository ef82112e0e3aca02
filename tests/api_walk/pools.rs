//! Custom pools made (valid configurations and not), renamed and dropped.

use super::*;

impl World {
    pub(crate) fn create_pool(&mut self, rng: &mut Rng) {
        if self.pools.len() >= 4 {
            return;
        }
        let types = self.type_count() as u64;
        let kind = rng.below(5);
        let wild = rng.below(3) == 0;
        let block_size = match if wild { rng.below(8) } else { 3 } {
            0 => 0,
            1 => 1 << 40,
            2 => 3 * KIB + rng.below(KIB),
            _ => *rng.pick(&[64 * KIB, 256 * KIB, MIB, 2 * MIB]),
        };
        let id = self.next_pool;
        let name: Arc<str> = format!("pool{id}").into();
        let min_alignment =
            DeviceAlignment::from_log2(rng.below(10) as u32 * (rng.below(2) as u32)).unwrap();
        let info = PoolCreateInfo {
            name: Some(name.clone()),
            memory_type: match rng.below(4) + 2 * u64::from(!wild) {
                0 => PoolMemoryType::Index(rng.below(types + 2) as u32),
                1 => PoolMemoryType::Find {
                    memory_type_bits: pick_bits(rng, self.all_types()),
                    usage: MemoryUsage::DeviceOnly,
                },
                _ => PoolMemoryType::Find {
                    memory_type_bits: u32::MAX,
                    usage: *rng.pick(&[MemoryUsage::Upload, MemoryUsage::Download]),
                },
            },
            block_size,
            min_block_count: rng.below(3) as usize,
            max_block_count: match rng.below(4) + u64::from(!wild) {
                0 => rng.below(3) as usize,
                1 => usize::MAX,
                _ => 2 + rng.below(4) as usize,
            },
            priority: if wild && rng.below(3) == 0 {
                f32::NAN
            } else {
                0.5
            },
            block_arenas: if wild {
                *rng.pick(&[None, Some(0), Some(1), Some(2), Some(64)])
            } else {
                *rng.pick(&[None, Some(1), Some(2)])
            },
            min_alignment,
            strategy: *rng.pick(&[
                AllocationStrategy::Default,
                AllocationStrategy::MinMemory,
                AllocationStrategy::MinOffset,
            ]),
            ..Default::default()
        };
        let a = &self.allocator;
        let made = match kind {
            0 => a.create_pool(&info).map(AnyPool::FreeList),
            1 => a.create_pool(&info).map(AnyPool::Buddy),
            2 => a.create_pool(&info).map(AnyPool::Bump),
            3 => a.create_pool(&info).map(AnyPool::Ring),
            _ => a.create_pool(&info).map(AnyPool::Slot),
        };
        match made {
            Ok(pool) => {
                assert_eq!(pool.name(), name);
                let (min, max) = pool.block_count_limits();
                assert_eq!((min, max), (info.min_block_count, info.max_block_count));
                assert_eq!(pool.block_count(), min, "a new pool has its minimum blocks");
                if block_size != 0 {
                    assert_eq!(pool.block_size(), block_size);
                }
                self.next_pool += 1;
                if matches!(pool, AnyPool::Bump(_)) {
                    self.bump_pools.push(id);
                }
                self.pools.push(PoolEntry {
                    id,
                    pool,
                    name,
                    min_alignment: min_alignment.as_devicesize(),
                });
                self.count("pool made");
            }
            Err(e) => {
                use AllocationError::*;
                assert!(
                    matches!(
                        e,
                        Config(_)
                            | NoSuitableMemoryType { .. }
                            | MemoryTypeIndexOutOfRange { .. }
                            | MemoryTypeNotUsable { .. }
                            | MemoryTypeBitsOutOfRange { .. }
                            | NoMemoryTypeBits
                            | SizeExceedsHeap { .. }
                            | OutOfDeviceMemory
                            | InvalidPriority(_)
                    ) || documented(&e, self.faults),
                    "step {}: create_pool({info:?}) kind {kind}: {e:?}",
                    self.step
                );
                let variant = format!("{e:?}");
                let variant = variant.split([' ', '(', '{']).next().unwrap_or("");
                self.count(format!("pool refused {variant}"));
            }
        }
    }

    pub(crate) fn drop_or_rename_pool(&mut self, rng: &mut Rng) {
        if self.pools.is_empty() {
            return;
        }
        let i = rng.below(self.pools.len() as u64) as usize;
        if rng.below(2) == 0 {
            let p = &mut self.pools[i];
            if rng.below(4) == 0 {
                // Back to a name of the form `pool N`.
                p.pool.set_name(None);
                assert!(p.pool.name().starts_with("pool "), "{}", p.pool.name());
            } else {
                let name: Arc<str> = format!("pool{}-renamed{}", p.id, rng.below(9)).into();
                p.pool.set_name(Some(name.clone()));
                assert_eq!(p.pool.name(), name);
            }
            p.name = p.pool.name();
            self.count("pool renamed");
        } else {
            self.check_leaks(&self.pools[i].pool.report_leaks(), Some(&self.pools[i]));
            let p = self.pools.swap_remove(i);
            let alive = self
                .live
                .iter()
                .filter(|l| l.source == Source::Pool(p.id))
                .count();
            if alive > 0 {
                self.count("pool dropped with allocations");
            }
            drop(p);
            self.count("pool dropped");
        }
    }
}
