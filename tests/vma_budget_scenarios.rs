//! VMA's `TestBudget` (from VMA 3.0's `src/Tests.cpp`; later versions fold it into
//! `TestStatistics`), retold on the simulated layouts of real GPUs over the real driver
//! (lavapipe, validation layer on), each claiming `VK_EXT_memory_budget`, and on lavapipe's
//! own layout without it (the crate's estimate):
//!
//! every heap's budget is positive and at most the heap, its allocated bytes are at most its
//! reserved bytes; four 10 MiB buffers (in memory of their own, then in blocks) land in one
//! heap, whose allocated bytes grow by exactly 40 MiB and fall back when they are freed,
//! while every other heap's figures stay as they were. The budget's usage is what the driver
//! reports: the crate's live memory plus the rest of the process.
//!
//! Also VMA's `TestHeapSizeLimit` with its exact numbers (`tests/heap_size_limit.rs` covers
//! the limit's other sides).

mod common;
mod support;

use ash::vk;
use ash_memory::stats::HeapStatistics;
use ash_memory::*;
use support::{GpuLayout, Sim, SimFeatures, MIB};

const BUF: u64 = 10 * MIB;
const COUNT: usize = 4;

/// Every heap's budget and statistics, checked against VMA's invariants and the driver's
/// numbers.
fn heaps(sim: &Sim, allocator: &StandardMemoryAllocator, what: &str) -> Vec<HeapStatistics> {
    let stats = allocator.statistics();
    let budgets = allocator.device().heap_budgets();
    assert_eq!(stats.heaps.len(), budgets.len(), "{what}");
    for (h, b) in stats.heaps.iter().zip(&budgets) {
        let i = h.index;
        assert_eq!(h.budget, *b, "{what}: heap {i} in the statistics");
        assert!(
            b.budget > 0 && b.budget <= b.heap_size,
            "{what}: heap {i}: {b:?}"
        );
        let s = &h.statistics;
        assert!(
            s.allocations.total <= s.reserved_bytes,
            "{what}: heap {i}: {s:?}"
        );
        assert_eq!(b.crate_usage, sim.state.heap_used(i), "{what}: heap {i}");
        if b.from_extension {
            assert_eq!(b.usage, sim.state.budget_of(i).0, "{what}: heap {i}");
        } else {
            assert_eq!(b.usage, b.crate_usage, "{what}: heap {i}");
        }
    }
    stats.heaps
}

fn budget_case(layout: GpuLayout, features: SimFeatures) {
    let name = layout.name;
    let sim = Sim::with_features(layout, features);
    let device = sim.memory_device_claimed();
    assert_eq!(device.features().memory_budget, features.memory_budget);
    let allocator = StandardMemoryAllocator::new_default(device.clone());
    if features.memory_budget {
        // The rest of the process uses some of every heap, and the driver gives a budget
        // below each heap's size.
        for heap in 0..sim.state.layout.heaps.len() as u32 {
            let size = sim.state.layout.heaps[heap as usize].0;
            sim.state.set_other_usage(heap, 3 * MIB);
            sim.state.set_heap_budget(heap, size / 4 * 3);
        }
    }
    for preference in [
        MemoryAllocatePreference::AlwaysAllocate,
        MemoryAllocatePreference::Auto,
    ] {
        let what = format!("{name}, {preference:?}");
        let before = heaps(&sim, &allocator, &format!("{what}, before"));
        let info = AllocationCreateInfo {
            usage: MemoryUsage::AutoPreferDevice(HostAccess::NoAccess),
            allocate_preference: preference,
            ..Default::default()
        };
        let buffer_info = common::buffer_info(BUF, vk::BufferUsageFlags::TRANSFER_DST);
        let made: Vec<_> = (0..COUNT)
            // SAFETY: a valid buffer info for this device.
            .map(|_| unsafe { allocator.create_buffer(&buffer_info, &info) }.unwrap())
            .collect();
        let heap = device
            .memory_properties()
            .memory_type(made[0].1.memory_type_index())
            .unwrap()
            .heap_index;
        for (_, a) in &made {
            let h = device
                .memory_properties()
                .memory_type(a.memory_type_index());
            assert_eq!(h.unwrap().heap_index, heap, "{what}: one heap for all");
            assert_eq!(a.size(), BUF, "{what}");
        }
        let with = heaps(&sim, &allocator, &format!("{what}, with the buffers"));
        for (buffer, a) in made.into_iter().rev() {
            // SAFETY: made above, never used by the GPU.
            unsafe { allocator.destroy_buffer(buffer, a) };
        }
        let after = heaps(&sim, &allocator, &format!("{what}, after"));
        for ((b, w), e) in before.iter().zip(&with).zip(&after) {
            let index = b.index;
            let (b, w, e) = (&b.statistics, &w.statistics, &e.statistics);
            if index == heap {
                assert_eq!(
                    w.allocations.total,
                    b.allocations.total + BUF * COUNT as u64,
                    "{what}: heap {heap} with the buffers"
                );
                assert_eq!(e.allocations.total, b.allocations.total, "{what}: freed");
                assert!(w.reserved_bytes >= e.reserved_bytes, "{what}");
                assert!(w.reserved_bytes >= b.reserved_bytes + BUF * COUNT as u64);
            } else {
                assert_eq!(w, b, "{what}: another heap");
                assert_eq!(e, b, "{what}: another heap");
            }
        }
    }
    drop(allocator);
    sim.assert_nothing_allocated();
}

/// On every simulated layout, claiming `VK_EXT_memory_budget`.
#[test]
fn heap_budgets_and_statistics_follow_the_buffers_with_the_extension() {
    let budget = SimFeatures {
        memory_budget: true,
        ..Default::default()
    };
    for layout in GpuLayout::all() {
        budget_case(layout, budget);
    }
}

/// On lavapipe's layout, without the extension: the crate's estimate.
#[test]
fn heap_budgets_and_statistics_follow_the_buffers_with_the_estimate() {
    budget_case(GpuLayout::lavapipe(), SimFeatures::default());
}

/// VMA's `TestHeapSizeLimit`, exactly: with every heap limited to 100 MiB, two dedicated
/// buffers of 5 MiB, then a pool of 10 MiB blocks takes exactly 18 more buffers of 5 MiB
/// (the other 90 MiB), and one more buffer, however small, fails as out of device memory.
/// Freeing everything gives the heap back.
#[test]
fn a_heap_size_limit_holds_to_the_byte() {
    const LIMIT: u64 = 100 * MIB;
    const BLOCK: u64 = 10 * MIB;
    let ctx = common::TestContext::new();
    let heaps = GpuLayout::lavapipe().heaps.len();
    // SAFETY: the context's handles, which outlive the allocator; no feature claimed.
    let device = unsafe {
        MemoryDevice::new_with_heap_size_limits(
            &ctx.entry,
            &ctx.instance,
            ctx.physical_device,
            ctx.device.clone(),
            common::API_VERSION,
            Default::default(),
            &vec![Some(LIMIT); heaps],
        )
    }
    .unwrap();
    let allocator = StandardMemoryAllocator::new_default(device.clone());
    let mut made = Vec::new();
    let mut buffer_info = common::buffer_info(BLOCK / 2, vk::BufferUsageFlags::VERTEX_BUFFER);
    let dedicated = AllocationCreateInfo {
        usage: MemoryUsage::AutoPreferDevice(HostAccess::NoAccess),
        allocate_preference: MemoryAllocatePreference::AlwaysAllocate,
        ..Default::default()
    };
    for _ in 0..2 {
        // SAFETY: a valid buffer info for this device.
        made.push(unsafe { allocator.create_buffer(&buffer_info, &dedicated) }.unwrap());
    }
    let pool = allocator
        .create_pool::<FreeListAllocator>(&PoolCreateInfo {
            memory_type: PoolMemoryType::Index(made[0].1.memory_type_index()),
            block_size: BLOCK,
            ..Default::default()
        })
        .unwrap();
    let in_pool = AllocationCreateInfo::default();
    for i in 0..(LIMIT / BLOCK - 1) * 2 {
        // SAFETY: a valid buffer info for this device.
        let got = unsafe { pool.create_buffer(&buffer_info, &in_pool) };
        made.push(got.unwrap_or_else(|e| panic!("buffer {i} in the pool: {e}")));
    }
    assert_eq!(device.heap_usage_by_crate(0), LIMIT);
    buffer_info.size = 128;
    // SAFETY: a valid buffer info for this device.
    let more = unsafe { pool.create_buffer(&buffer_info, &in_pool) };
    assert_eq!(more.err(), Some(AllocationError::OutOfDeviceMemory));
    for (buffer, alloc) in made.into_iter().rev() {
        // SAFETY: never used by the GPU.
        unsafe { allocator.destroy_buffer(buffer, alloc) };
    }
    drop(pool);
    drop(allocator);
    assert_eq!(device.heap_usage_by_crate(0), 0);
    drop(device);
    assert!(ctx.messages().is_empty(), "{:?}", ctx.messages());
}
