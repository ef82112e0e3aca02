//! A least alignment per allocation (`AllocationCreateInfo::min_alignment`, VMA's
//! `vmaCreateBufferWithAlignment`) and per custom pool (`PoolCreateInfo::min_alignment`,
//! VMA's `minAllocationAlignment`): every offset honours the largest of the resource's, the
//! allocation's and the pool's alignment, allocations never overlap, and the data of each
//! survives the others' writes.

mod common;

use ash::vk;
use ash_memory::*;
use common::{buffer_info, Rng, TestContext};

fn host(min_alignment: u64) -> AllocationCreateInfo {
    AllocationCreateInfo {
        usage: MemoryUsage::Auto(HostAccess::Random),
        min_alignment: DeviceAlignment::new(min_alignment).unwrap(),
        ..Default::default()
    }
}

fn requirements(size: u64, alignment: u64) -> AllocationRequirements {
    AllocationRequirements {
        layout: DeviceLayout::from_size_alignment(size, alignment).unwrap(),
        // lavapipe's one memory type.
        memory_type_bits: 1,
        prefers_dedicated_allocation: false,
        requires_dedicated_allocation: false,
    }
}

/// Asserts that no two allocations overlap in the same memory object, and that the pattern
/// each wrote is intact.
fn check_disjoint_and_intact(allocs: &[(MemoryAlloc, u8)]) {
    for (i, (a, _)) in allocs.iter().enumerate() {
        for (b, _) in &allocs[i + 1..] {
            if a.memory() == b.memory() {
                let disjoint =
                    a.offset() + a.size() <= b.offset() || b.offset() + b.size() <= a.offset();
                assert!(disjoint, "{a:?} overlaps {b:?}");
            }
        }
    }
    for (a, seed) in allocs {
        let mut read = vec![0; a.size() as usize];
        a.read(0, &mut read).unwrap();
        assert!(read.iter().all(|&x| x == *seed));
    }
}

#[test]
fn allocations_and_pools_honour_their_least_alignment() {
    let ctx = TestContext::new();
    {
        let device = ctx.memory_device();
        let allocator = StandardMemoryAllocator::new_default(device.clone());
        let pool = allocator
            .create_pool::<FreeListAllocator>(&PoolCreateInfo {
                memory_type: PoolMemoryType::Find {
                    memory_type_bits: u32::MAX,
                    usage: MemoryUsage::Auto(HostAccess::Random),
                },
                block_size: 8 << 20,
                min_alignment: DeviceAlignment::new(1024).unwrap(),
                ..Default::default()
            })
            .unwrap();
        let mut rng = Rng(7);
        let mut allocs = Vec::new();
        for i in 0..200u32 {
            let size = rng.range(1, 3000);
            let resource_alignment = 1 << rng.below(8);
            let min = 1 << rng.below(14);
            let in_pool = i % 2 == 1;
            let mut alloc = if in_pool {
                pool.allocate(
                    requirements(size, resource_alignment),
                    AllocationType::Linear,
                    &host(min),
                    None,
                )
            } else {
                allocator.allocate(
                    requirements(size, resource_alignment),
                    AllocationType::Linear,
                    &host(min),
                    None,
                )
            }
            .unwrap();
            let pool_min = if in_pool { 1024 } else { 1 };
            let want = resource_alignment.max(min).max(pool_min);
            assert_eq!(
                alloc.offset() % want,
                0,
                "offset {} for {want}",
                alloc.offset()
            );
            assert_eq!(alloc.size(), size, "only the alignment is raised");
            let seed = i as u8;
            alloc.write(0, &vec![seed; size as usize]).unwrap();
            allocs.push((alloc, seed));
            if rng.below(4) == 0 {
                let k = rng.below(allocs.len() as u64) as usize;
                allocs.swap_remove(k);
            }
        }
        check_disjoint_and_intact(&allocs);

        // From a type, and through create_buffer (vmaCreateBufferWithAlignment).
        let from_type = allocator
            .allocate_from_type(
                allocs[0].0.memory_type_index(),
                DeviceLayout::from_size_alignment(10, 1).unwrap(),
                AllocationType::Linear,
                &host(1 << 16),
            )
            .unwrap();
        assert_eq!(from_type.offset() % (1 << 16), 0);
        let info = buffer_info(100, vk::BufferUsageFlags::UNIFORM_BUFFER);
        for _ in 0..4 {
            // SAFETY: a valid create info.
            let (buffer, alloc) =
                unsafe { allocator.create_buffer(&info, &host(1 << 15)) }.unwrap();
            assert_eq!(alloc.offset() % (1 << 15), 0);
            // SAFETY: a valid create info.
            let (pool_buffer, pool_alloc) = unsafe { pool.create_buffer(&info, &host(1)) }.unwrap();
            assert_eq!(pool_alloc.offset() % 1024, 0);
            // SAFETY: unused.
            unsafe {
                ctx.device.destroy_buffer(buffer, None);
                ctx.device.destroy_buffer(pool_buffer, None);
            }
        }
    }
}
