//! A memory object the allocator made for a large request by its own choice (more than half a
//! block, the driver not preferring a dedicated allocation) is not tied to its resource: when
//! the allocation is freed, the object stays as an empty block of its memory type, and the
//! next large request takes it without a `vkAllocateMemory`. Objects tied to their resource or
//! made with other settings than a block's (the driver's preference, the caller's request for a
//! memory object of its own, another priority, a custom pool's) are freed with their
//! allocation, as before. On the simulated driver (the exact calls and chains) and on the real
//! one (a buffer bound where a freed one was, its bytes copied by the GPU, under validation).

mod common;
mod support;

use ash::vk;
use ash_memory::*;
use std::sync::atomic::Ordering;
use support::{buffer_info, GpuLayout, Sim, MIB};

const BLOCK: u64 = 64 * MIB;

fn allocator_with(
    device: std::sync::Arc<MemoryDevice>,
    dedicated_allocation: bool,
) -> StandardMemoryAllocator {
    StandardMemoryAllocator::new(
        device,
        GenericMemoryAllocatorCreateInfo {
            block_sizes: BlockSizeThresholds::uniform(BLOCK).unwrap(),
            dedicated_allocation,
            ..Default::default()
        },
    )
    .unwrap()
}

/// A buffer of `size` bytes with its memory, through `create_buffer`: the resource is known,
/// so a memory object of its own may name it.
fn buffer(
    allocator: &StandardMemoryAllocator,
    size: u64,
    info: &AllocationCreateInfo,
) -> (vk::Buffer, MemoryAlloc) {
    let usage = vk::BufferUsageFlags::TRANSFER_SRC | vk::BufferUsageFlags::TRANSFER_DST;
    // SAFETY: a valid create info for this device; the buffer is destroyed before its memory.
    unsafe { allocator.create_buffer(&buffer_info(size, usage), info) }
        .unwrap_or_else(|e| panic!("create_buffer({size}): {e}"))
}

/// Requirements of `size` bytes in memory type 0, with no resource behind them.
fn raw(size: u64) -> AllocationRequirements {
    AllocationRequirements {
        layout: DeviceLayout::from_size_alignment(size, 256).unwrap(),
        memory_type_bits: 1,
        prefers_dedicated_allocation: false,
        requires_dedicated_allocation: false,
    }
}

/// Destroys `buffer`, then frees its memory.
fn free(sim: &Sim, (buffer, alloc): (vk::Buffer, MemoryAlloc)) {
    // SAFETY: the buffer is unused; destroyed before its memory.
    unsafe { sim.device.destroy_buffer(buffer, None) };
    drop(alloc);
}

/// The empty blocks of the allocator's statistics, by size.
fn empty_blocks(allocator: &StandardMemoryAllocator) -> Vec<u64> {
    allocator
        .statistics()
        .blocks
        .iter()
        .filter(|b| !b.dedicated && b.statistics.allocation_count == 0)
        .map(|b| b.size)
        .collect()
}

#[test]
fn a_freed_large_allocation_leaves_its_memory_object_to_the_next_large_request() {
    let sim = Sim::new(GpuLayout::nvidia_discrete());
    {
        let allocator = allocator_with(sim.memory_device(), true);
        let info = AllocationCreateInfo::default();
        let first = buffer(&allocator, 40 * MIB, &info);
        assert!(first.1.is_dedicated());
        let call = sim.state.call_of(first.1.memory()).unwrap();
        assert_eq!(
            call.chain.dedicated, None,
            "chosen for its size alone: the object names no resource"
        );
        let memory = first.1.memory();
        free(&sim, first);
        assert_eq!(sim.state.live_objects(), 1, "the object stays");
        assert_eq!(empty_blocks(&allocator), [40 * MIB]);
        assert_eq!(allocator.statistics().total.dedicated_count, 0);

        // 38 MiB leaves less than a sixteenth of the 40 MiB object unused: it takes it, bound
        // at offset 0.
        sim.state.reset_counters();
        let second = buffer(&allocator, 38 * MIB, &info);
        assert!(!second.1.is_dedicated());
        assert_eq!((second.1.memory(), second.1.offset()), (memory, 0));
        assert_eq!(sim.state.allocate_calls(), 0, "no vkAllocateMemory");
        // With it in use, the next large request gets a memory object of its own.
        let third = buffer(&allocator, 40 * MIB, &info);
        assert!(third.1.is_dedicated());
        assert_eq!(sim.state.allocate_calls(), 1);
        free(&sim, second);
        free(&sim, third);
        // Both kept (under the mark: both were in use at once).
        let mut kept = empty_blocks(&allocator);
        kept.sort_unstable();
        assert_eq!(kept, [40 * MIB, 40 * MIB]);
    }
    sim.assert_nothing_allocated();
}

#[test]
fn objects_tied_to_their_resource_or_made_otherwise_are_freed_with_their_allocation() {
    let sim = Sim::new(GpuLayout::nvidia_discrete());
    let device = sim.memory_device();
    let allocator = allocator_with(device.clone(), true);
    // A memory object of its own, dropped: one object fewer, none kept.
    let dropped_frees = |what: &str, alloc: MemoryAlloc| {
        assert!(alloc.is_dedicated(), "{what}");
        let live = sim.state.live_objects();
        drop(alloc);
        assert_eq!(sim.state.live_objects(), live - 1, "{what}: freed");
        assert!(empty_blocks(&allocator).is_empty(), "{what}");
    };
    let freed_with_it = |what: &str, (buffer, alloc): (vk::Buffer, MemoryAlloc)| {
        // SAFETY: the buffer is unused; destroyed before its memory.
        unsafe { sim.device.destroy_buffer(buffer, None) };
        dropped_frees(what, alloc);
    };
    // The caller asked for a memory object of its own: it names its buffer, and goes.
    let always = AllocationCreateInfo {
        allocate_preference: MemoryAllocatePreference::AlwaysAllocate,
        ..Default::default()
    };
    let asked = buffer(&allocator, 40 * MIB, &always);
    let call = sim.state.call_of(asked.1.memory()).unwrap();
    assert_eq!(call.chain.dedicated.map(|d| d.buffer), Some(asked.0));
    freed_with_it("AlwaysAllocate", asked);
    // Also without a resource to name.
    let unnamed = allocator
        .allocate(raw(40 * MIB), AllocationType::Linear, &always, None)
        .unwrap();
    dropped_frees("AlwaysAllocate, no resource", unnamed);
    // Another priority than the blocks'.
    let urgent = AllocationCreateInfo {
        priority: Some(1.0),
        ..Default::default()
    };
    freed_with_it("priority 1.0", buffer(&allocator, 40 * MIB, &urgent));
    // The driver prefers a memory object of its own: it names the buffer, and goes.
    sim.state.prefers_dedicated.store(true, Ordering::SeqCst);
    let preferred = buffer(&allocator, 40 * MIB, &AllocationCreateInfo::default());
    let call = sim.state.call_of(preferred.1.memory()).unwrap();
    assert_eq!(call.chain.dedicated.map(|d| d.buffer), Some(preferred.0));
    freed_with_it("driver-preferred", preferred);
    sim.state.prefers_dedicated.store(false, Ordering::SeqCst);
    // `allocate_dedicated`: the caller's explicit memory object.
    let explicit = allocator
        .allocate_dedicated(0, 40 * MIB, None, &AllocationCreateInfo::default())
        .unwrap();
    dropped_frees("allocate_dedicated", explicit);
    // A custom pool's (it makes one only when asked to; no resource here to name).
    let pool = allocator
        .create_pool::<FreeListAllocator>(&PoolCreateInfo {
            memory_type: PoolMemoryType::Index(0),
            block_size: 16 * MIB,
            ..Default::default()
        })
        .unwrap();
    let pooled = pool
        .allocate(raw(40 * MIB), AllocationType::Linear, &always, None)
        .unwrap();
    dropped_frees("a custom pool's", pooled);
    drop(pool);

    drop(allocator);

    // Freed after its allocator is gone (allowed with the leak check logging): there is no
    // vector to keep it.
    let allocator = StandardMemoryAllocator::new(
        device,
        GenericMemoryAllocatorCreateInfo {
            block_sizes: BlockSizeThresholds::uniform(BLOCK).unwrap(),
            debug: DebugOptions {
                leak_check: LeakCheck::Log,
                ..Default::default()
            },
            ..Default::default()
        },
    )
    .unwrap();
    let outlives = buffer(&allocator, 40 * MIB, &AllocationCreateInfo::default());
    assert!(outlives.1.is_dedicated());
    drop(allocator);
    free(&sim, outlives);
    sim.assert_nothing_allocated();
}

#[test]
fn with_dedicated_allocation_off_a_preferred_object_names_nothing_and_is_kept() {
    let sim = Sim::new(GpuLayout::nvidia_discrete());
    {
        let allocator = allocator_with(sim.memory_device(), false);
        sim.state.prefers_dedicated.store(true, Ordering::SeqCst);
        let preferred = buffer(&allocator, 40 * MIB, &AllocationCreateInfo::default());
        assert!(preferred.1.is_dedicated());
        let call = sim.state.call_of(preferred.1.memory()).unwrap();
        assert_eq!(call.chain.dedicated, None);
        free(&sim, preferred);
        assert_eq!(empty_blocks(&allocator), [40 * MIB]);
    }
    sim.assert_nothing_allocated();
}

/// On lavapipe, under the validation layer: a buffer bound to the object a freed large buffer
/// left, its bytes written by the host and copied by the GPU into another buffer.
#[test]
fn a_buffer_bound_where_a_freed_large_one_was_round_trips_its_bytes() {
    let ctx = common::TestContext::new();
    let allocator = allocator_with(ctx.memory_device(), true);
    let upload = AllocationCreateInfo {
        usage: MemoryUsage::Upload,
        ..Default::default()
    };
    let usage = vk::BufferUsageFlags::TRANSFER_SRC | vk::BufferUsageFlags::TRANSFER_DST;
    let make = |size: u64, info: &AllocationCreateInfo| {
        // SAFETY: a valid create info for this device; destroyed before its memory.
        unsafe { allocator.create_buffer(&buffer_info(size, usage), info) }.unwrap()
    };
    let (first, first_alloc) = make(40 * MIB, &upload);
    assert!(first_alloc.is_dedicated());
    let memory = first_alloc.memory();
    // SAFETY: unused; destroyed before its memory.
    unsafe { ctx.device.destroy_buffer(first, None) };
    drop(first_alloc);

    let size = 38 * MIB;
    let (src, mut src_alloc) = make(size, &upload);
    assert!(!src_alloc.is_dedicated());
    assert_eq!(src_alloc.memory(), memory, "the freed buffer's object");
    let pattern: Vec<u8> = (0..size).map(|i| (i * 7 + i / 4093) as u8).collect();
    src_alloc.write(0, &pattern).unwrap();
    let readback = AllocationCreateInfo {
        usage: MemoryUsage::Download,
        ..Default::default()
    };
    let (dst, dst_alloc) = make(size, &readback);
    ctx.submit(|d, cmd| {
        // SAFETY: both buffers are bound and at least `size` bytes; the host write above is
        // visible to the transfer (coherent or flushed by `write`), and the barrier makes the
        // copy visible to the host read below.
        unsafe {
            d.cmd_copy_buffer(cmd, src, dst, &[vk::BufferCopy::default().size(size)]);
            common::TestContext::transfer_barrier(d, cmd);
        }
    });
    let mut out = vec![0u8; size as usize];
    dst_alloc.read(0, &mut out).unwrap();
    assert!(out == pattern, "the copy differs from what was written");
    // SAFETY: the GPU is done with both (the submit waited); destroyed before their memory.
    unsafe {
        ctx.device.destroy_buffer(src, None);
        ctx.device.destroy_buffer(dst, None);
    }
    drop((src_alloc, dst_alloc, allocator));
}

/// Lazily allocated memory is never carved into blocks: its objects are freed with their
/// allocation, whatever made them.
#[test]
fn a_lazily_allocated_object_is_freed_with_its_allocation() {
    let sim = Sim::new(GpuLayout::mobile());
    {
        let allocator = allocator_with(sim.memory_device(), false);
        let lazy = AllocationCreateInfo {
            usage: MemoryUsage::Custom(MemoryTypeFilter {
                required_flags: vk::MemoryPropertyFlags::LAZILY_ALLOCATED,
                ..Default::default()
            }),
            ..Default::default()
        };
        let info = support::image_info(256, vk::Format::R8G8B8A8_UNORM, vk::ImageTiling::OPTIMAL)
            .usage(
                vk::ImageUsageFlags::COLOR_ATTACHMENT | vk::ImageUsageFlags::TRANSIENT_ATTACHMENT,
            );
        // SAFETY: a valid create info; the image is destroyed before its memory.
        let (image, alloc) = unsafe { allocator.create_image(&info, &lazy) }.unwrap();
        assert!(alloc.is_dedicated());
        let ty = alloc.memory_type_index();
        let live = sim.state.live_objects();
        // SAFETY: the image is unused; destroyed before its memory.
        unsafe { sim.device.destroy_image(image, None) };
        drop(alloc);
        assert_eq!(sim.state.live_objects(), live - 1, "freed");
        assert_eq!(allocator.block_count(ty), 0);
    }
    sim.assert_nothing_allocated();
}
