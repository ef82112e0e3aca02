//! Several pages at once (VMA's `vmaAllocateMemoryPages`): all or nothing. With every
//! `vkAllocateMemory` of a run failing in turn (injected), the call fails with the driver's
//! error and leaves nothing behind (no allocation, and only the allocator's one kept empty
//! block per memory type); otherwise every page is there, disjoint, aligned and holding its
//! data. lavapipe has no sparse binding, so the binding side is documented, not run.

mod common;
mod support;

use ash::vk;
use ash_memory::*;
use support::{Faults, GpuLayout, Sim, KIB, MIB};

fn page_requirements() -> AllocationRequirements {
    AllocationRequirements {
        layout: DeviceLayout::from_size_alignment(64 * KIB, 64 * KIB).unwrap(),
        memory_type_bits: 0b110, // host memory of the simulated NVIDIA GPU
        prefers_dedicated_allocation: false,
        requires_dedicated_allocation: false,
    }
}

fn host() -> AllocationCreateInfo {
    AllocationCreateInfo {
        usage: MemoryUsage::Auto(HostAccess::Random),
        ..Default::default()
    }
}

const PAGES: usize = 200;

fn pool_info() -> PoolCreateInfo {
    PoolCreateInfo {
        memory_type: PoolMemoryType::Index(1),
        block_size: 2 * MIB,
        ..Default::default()
    }
}

#[test]
fn pages_are_all_made_or_none() {
    let sim = Sim::new(GpuLayout::nvidia_discrete());
    {
        let device = sim.memory_device();
        let allocator = StandardMemoryAllocator::new_default(device.clone());
        // A pool of small blocks, so that the pages need several of them.
        let pool = allocator
            .create_pool::<FreeListAllocator>(&pool_info())
            .unwrap();
        assert!(pool
            .allocate_pages(page_requirements(), AllocationType::Linear, &host(), 0)
            .unwrap()
            .is_empty());

        // A dry run counts the vkAllocateMemory calls.
        sim.state.reset_counters();
        let mut pages = pool
            .allocate_pages(page_requirements(), AllocationType::Linear, &host(), PAGES)
            .unwrap();
        let calls = sim.state.allocate_calls();
        assert!(calls >= 3, "the pages need several blocks ({calls} calls)");
        assert_eq!(pages.len(), PAGES);
        for (i, p) in pages.iter_mut().enumerate() {
            assert_eq!(p.offset() % (64 * KIB), 0);
            p.write(0, &[i as u8; 64]).unwrap();
        }
        for (i, a) in pages.iter().enumerate() {
            let mut b = [0u8; 64];
            a.read(0, &mut b).unwrap();
            assert_eq!(b, [i as u8; 64]);
            for c in &pages[i + 1..] {
                assert!(
                    a.memory() != c.memory()
                        || a.offset() + a.size() <= c.offset()
                        || c.offset() + c.size() <= a.offset()
                );
            }
        }
        drop(pages);
        drop(pool);

        for fail_at in 1..=calls {
            for fault in [
                vk::Result::ERROR_OUT_OF_DEVICE_MEMORY,
                vk::Result::ERROR_TOO_MANY_OBJECTS,
            ] {
                let pool = allocator
                    .create_pool::<FreeListAllocator>(&pool_info())
                    .unwrap();
                sim.state.reset_counters();
                sim.state.set_faults(Faults {
                    allocate_at: Some((fail_at, fault)),
                    allocate_more: 1000,
                    ..Default::default()
                });
                let result = pool.allocate_pages(
                    page_requirements(),
                    AllocationType::Linear,
                    &host(),
                    PAGES,
                );
                sim.state.set_faults(Faults::default());
                let error = result.expect_err("a page could not be made");
                assert!(
                    matches!(
                        error,
                        AllocationError::OutOfDeviceMemory | AllocationError::TooManyObjects { .. }
                    ),
                    "{error:?}"
                );
                let stats = pool.statistics().total;
                assert_eq!(stats.allocation_count, 0, "pages left behind");
                assert!(stats.block_count <= 1, "at most one empty block is kept");
                drop(pool);
                assert_eq!(
                    allocator.statistics().total.allocation_count,
                    0,
                    "fail at {fail_at}"
                );
            }
        }
        drop(allocator);
        drop(device);
        sim.assert_nothing_allocated();
    }
}

#[test]
fn pages_from_the_default_pools_and_dedicated() {
    let sim = Sim::new(GpuLayout::nvidia_discrete());
    {
        let device = sim.memory_device();
        let allocator = StandardMemoryAllocator::new_default(device.clone());
        let dedicated = AllocationCreateInfo {
            allocate_preference: MemoryAllocatePreference::AlwaysAllocate,
            ..host()
        };
        let pages = allocator
            .allocate_pages(page_requirements(), AllocationType::Linear, &dedicated, 8)
            .unwrap();
        assert!(pages.iter().all(|p| p.is_dedicated()));
        // The 5th memory object fails (and every call after it): the 4 made are freed again.
        sim.state.reset_counters();
        sim.state.set_faults(Faults {
            allocate_at: Some((5, vk::Result::ERROR_OUT_OF_HOST_MEMORY)),
            // The driver stays out of memory: no fallback (another host type) helps.
            allocate_more: 1000,
            ..Default::default()
        });
        let live_before = device.live_memory_objects();
        let failed =
            allocator.allocate_pages(page_requirements(), AllocationType::Linear, &dedicated, 8);
        sim.state.set_faults(Faults::default());
        assert_eq!(failed.err(), Some(AllocationError::OutOfHostMemory));
        assert_eq!(device.live_memory_objects(), live_before);
        drop((pages, allocator, device));
        sim.assert_nothing_allocated();
    }
}
