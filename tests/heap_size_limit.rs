//! A hard per-heap limit (VMA's `pHeapSizeLimit`): the crate never holds more than the limit
//! of a limited heap, fails past it as out of device memory (after its fallbacks), treats
//! the heap as that size for block sizes and the budget, and works again once memory is
//! freed.

mod common;
mod support;

use ash::vk;
use ash_memory::*;
use common::{buffer_info, TestContext, API_VERSION};
use support::{GpuLayout, Sim, SimFeatures, MIB};

fn limited(
    ctx: &TestContext,
    limits: &[Option<u64>],
) -> Result<std::sync::Arc<MemoryDevice>, DeviceError> {
    // SAFETY: the context's handles, which outlive every allocator of the test; no feature
    // claimed.
    unsafe {
        MemoryDevice::new_with_heap_size_limits(
            &ctx.entry,
            &ctx.instance,
            ctx.physical_device,
            ctx.device.clone(),
            API_VERSION,
            Default::default(),
            limits,
        )
    }
}

#[test]
fn the_crate_never_holds_more_than_the_limit() {
    let ctx = TestContext::new();
    {
        let limit = 48 * MIB;
        let device = limited(&ctx, &[Some(limit)]).unwrap();
        assert!(device.is_heap_size_limited(0));
        let budgets = device.heap_budgets();
        assert_eq!(budgets[0].heap_size, limit);
        assert_eq!(budgets[0].budget, limit / 10 * 8, "80 % of the limit");
        // One memory object larger than the limit is refused as too large for the heap.
        let too_big = MemoryObject::allocate(
            device.clone(),
            &MemoryObjectCreateInfo {
                size: limit + 1,
                ..Default::default()
            },
        );
        assert!(matches!(
            too_big,
            Err(MemoryObjectError::InvalidSize { heap_size, .. }) if heap_size == limit
        ));

        let allocator = StandardMemoryAllocator::new_default(device.clone());
        let info = buffer_info(MIB, vk::BufferUsageFlags::STORAGE_BUFFER);
        let mut buffers = Vec::new();
        let error = loop {
            // SAFETY: a valid create info.
            match unsafe { allocator.create_buffer(&info, &Default::default()) } {
                Ok(b) => buffers.push(b),
                Err(e) => break e,
            }
            assert!(device.heap_usage_by_crate(0) <= limit);
            assert!(buffers.len() < 1000, "the limit was never reached");
        };
        assert_eq!(error, AllocationError::OutOfDeviceMemory);
        assert!(device.heap_usage_by_crate(0) <= limit);
        // The fallbacks (smaller blocks) used the heap nearly to the end.
        assert!(
            buffers.len() as u64 * MIB >= limit / 2,
            "only {} MiB allocated of a {} MiB limit",
            buffers.len(),
            limit / MIB
        );
        // A raw memory object past the limit fails the same way, before the driver.
        let calls = device.memory_allocation_calls();
        let free = limit - device.heap_usage_by_crate(0);
        let past = MemoryObject::allocate(
            device.clone(),
            &MemoryObjectCreateInfo {
                size: free + 1,
                ..Default::default()
            },
        );
        assert_eq!(past.err(), Some(MemoryObjectError::OutOfDeviceMemory));
        assert_eq!(device.memory_allocation_calls(), calls);

        // Freed memory can be used again.
        for (buffer, alloc) in buffers.drain(..) {
            // SAFETY: unused.
            unsafe { ctx.device.destroy_buffer(buffer, None) };
            drop(alloc);
        }
        // SAFETY: a valid create info.
        let (buffer, alloc) =
            unsafe { allocator.create_buffer(&info, &Default::default()) }.unwrap();
        // SAFETY: unused.
        unsafe { ctx.device.destroy_buffer(buffer, None) };
        drop((alloc, allocator));
        assert_eq!(device.heap_usage_by_crate(0), 0);
    }
}

#[test]
fn block_sizes_follow_the_limited_heap() {
    let ctx = TestContext::new();
    {
        let unlimited = ctx.memory_device();
        let small = limited(&ctx, &[Some(64 * MIB)]).unwrap();
        let big_blocks = StandardMemoryAllocator::new_default(unlimited);
        let small_blocks = StandardMemoryAllocator::new_default(small);
        let requirements = AllocationRequirements {
            layout: DeviceLayout::from_size_alignment(4096, 256).unwrap(),
            memory_type_bits: 1,
            prefers_dedicated_allocation: false,
            requires_dedicated_allocation: false,
        };
        let block_of = |a: &StandardMemoryAllocator| {
            let alloc = a
                .allocate(
                    requirements,
                    AllocationType::Linear,
                    &Default::default(),
                    None,
                )
                .unwrap();
            let size = a.statistics().total.reserved_bytes;
            drop(alloc);
            size
        };
        let (big, small) = (block_of(&big_blocks), block_of(&small_blocks));
        assert!(
            small < big && small <= 64 * MIB / 2,
            "blocks of {small} bytes on a 64 MiB heap (unlimited: {big})"
        );
    }
}

#[test]
fn bad_limits_are_refused() {
    let ctx = TestContext::new();
    let count = ctx.memory_device().memory_properties().memory_heaps.len() as u32;
    let mut beyond = vec![None; count as usize];
    beyond.push(Some(MIB));
    assert_eq!(
        limited(&ctx, &beyond).err(),
        Some(DeviceError::InvalidHeapSizeLimit {
            heap: count,
            limit: MIB,
            count
        })
    );
    assert_eq!(
        limited(&ctx, &[Some(0)]).err(),
        Some(DeviceError::InvalidHeapSizeLimit {
            heap: 0,
            limit: 0,
            count
        })
    );
    // A limit above the heap's size changes nothing.
    let device = limited(&ctx, &[Some(u64::MAX)]).unwrap();
    assert!(!device.is_heap_size_limited(0));
}

#[test]
fn the_extension_budget_is_capped_at_the_limit() {
    let sim = Sim::with_features(
        GpuLayout::nvidia_discrete(),
        SimFeatures {
            memory_budget: true,
            ..Default::default()
        },
    );
    {
        // SAFETY: as in `Sim::memory_device_with`: the wrapped handles outlive the device;
        // the claimed budget extension is what the simulated driver implements.
        let device = unsafe {
            MemoryDevice::new_with_heap_size_limits(
                sim.entry(),
                &sim.instance,
                sim.ctx.physical_device,
                sim.device.clone(),
                API_VERSION,
                EnabledMemoryFeatures {
                    memory_budget: true,
                    ..Default::default()
                },
                &[Some(256 * MIB), None],
            )
        }
        .unwrap();
        let budgets = device.heap_budgets();
        assert!(budgets[0].from_extension);
        assert_eq!(budgets[0].heap_size, 256 * MIB);
        assert_eq!(budgets[0].budget, 256 * MIB, "the driver's 8 GiB capped");
        assert!(budgets[1].budget > 256 * MIB, "heap 1 is not limited");
        // Within budget: the limit is the budget.
        let allocator = StandardMemoryAllocator::new_default(device.clone());
        let within = AllocationCreateInfo {
            within_budget: true,
            ..Default::default()
        };
        let requirements = AllocationRequirements {
            layout: DeviceLayout::from_size_alignment(200 * MIB, 256).unwrap(),
            memory_type_bits: 1,
            prefers_dedicated_allocation: false,
            requires_dedicated_allocation: false,
        };
        let first = allocator
            .allocate(requirements, AllocationType::Linear, &within, None)
            .unwrap();
        let second = allocator.allocate(requirements, AllocationType::Linear, &within, None);
        assert!(matches!(
            second,
            Err(AllocationError::BudgetExceeded(_)) | Err(AllocationError::OutOfDeviceMemory)
        ));
        drop((first, allocator, device));
        sim.assert_nothing_allocated();
    }
}
