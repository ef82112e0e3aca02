//! The allocator on the real driver, with the validation layer on.

mod common;

use ash::vk;
use ash_memory::*;
use common::{buffer_info, image_info, Rng, TestContext};
use std::collections::HashMap;

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;

/// Checks that the live `(memory, offset, size)` ranges never overlap.
fn assert_disjoint(allocs: &[&MemoryAlloc]) {
    let mut by_memory: HashMap<vk::DeviceMemory, Vec<(u64, u64)>> = HashMap::new();
    for a in allocs {
        by_memory
            .entry(a.memory())
            .or_default()
            .push((a.offset(), a.offset() + a.size()));
    }
    for ranges in by_memory.values_mut() {
        ranges.sort_unstable();
        for w in ranges.windows(2) {
            assert!(w[0].1 <= w[1].0, "ranges {:?} and {:?} overlap", w[0], w[1]);
        }
    }
}

#[test]
fn buffers_and_images_of_many_sizes_bind_and_do_not_overlap() {
    let ctx = TestContext::new();
    let device = ctx.memory_device();
    let allocator = StandardMemoryAllocator::new_default(device.clone());
    let mut rng = Rng(7);
    let mut buffers = Vec::new();
    let mut images = Vec::new();
    for i in 0..300 {
        let size = 1u64 << rng.range(0, 24);
        let size = size + rng.range(0, size);
        let usage = [
            MemoryUsage::DeviceOnly,
            MemoryUsage::Upload,
            MemoryUsage::Download,
        ][i % 3];
        let info = AllocationCreateInfo {
            usage,
            ..Default::default()
        };
        // SAFETY: a valid buffer create info; the buffer is destroyed before its memory.
        let (buffer, alloc) = unsafe {
            allocator.create_buffer(
                &buffer_info(size, vk::BufferUsageFlags::TRANSFER_DST),
                &info,
            )
        }
        .expect("create_buffer");
        assert!(alloc.size() >= size);
        buffers.push((buffer, alloc));
    }
    let formats = [
        vk::Format::R8G8B8A8_UNORM,
        vk::Format::R32_SFLOAT,
        vk::Format::R16G16_SFLOAT,
    ];
    for i in 0..60 {
        let extent = 1u32 << rng.range(0, 11);
        let tiling = if i % 4 == 0 {
            vk::ImageTiling::LINEAR
        } else {
            vk::ImageTiling::OPTIMAL
        };
        // SAFETY: a valid image create info for every driver (2D, sampled, transfer dst).
        let (image, alloc) = unsafe {
            allocator.create_image(
                &image_info(extent, formats[i % 3], tiling),
                &AllocationCreateInfo::default(),
            )
        }
        .expect("create_image");
        let expected = if tiling == vk::ImageTiling::LINEAR {
            AllocationType::Linear
        } else {
            AllocationType::NonLinear
        };
        assert_eq!(alloc.allocation_type(), expected);
        images.push((image, alloc));
    }
    let all: Vec<&MemoryAlloc> = buffers
        .iter()
        .map(|(_, a)| a)
        .chain(images.iter().map(|(_, a)| a))
        .collect();
    assert_disjoint(&all);
    assert!(device.live_memory_objects() > 0);
    // SAFETY: the resources are unused and destroyed before their memory is dropped.
    unsafe {
        for (b, _) in &buffers {
            ctx.device.destroy_buffer(*b, None);
        }
        for (i, _) in &images {
            ctx.device.destroy_image(*i, None);
        }
    }
    drop(buffers);
    drop(images);
    drop(allocator);
    assert_eq!(device.live_memory_objects(), 0, "memory objects leaked");
    assert_eq!(device.live_memory_bytes(), 0);
}

#[test]
fn checked_paths_with_dedicated_allocation() {
    let ctx = TestContext::new();
    let device = ctx.memory_device();
    let allocator = StandardMemoryAllocator::new_default(device.clone());
    for (pref, dedicated) in [
        (MemoryAllocatePreference::AlwaysAllocate, true),
        (MemoryAllocatePreference::Auto, false),
        (MemoryAllocatePreference::Auto, true),
    ] {
        let size = if dedicated && pref == MemoryAllocatePreference::Auto {
            // Larger than half a block: the allocator makes it dedicated by itself.
            allocator.block_size(0).unwrap() / 2 + 4 * KIB
        } else {
            64 * KIB
        };
        // SAFETY: valid create info; destroyed below before its memory.
        let buffer = unsafe {
            ctx.device.create_buffer(
                &buffer_info(size, vk::BufferUsageFlags::STORAGE_BUFFER),
                None,
            )
        }
        .unwrap();
        // SAFETY: the buffer was just created from this device.
        let reqs = unsafe { AllocationRequirements::for_buffer(&device, buffer) }.unwrap();
        // SAFETY: the buffer is valid and unbound; the allocation is bound to it only.
        let d = unsafe { DedicatedAllocation::buffer(buffer) };
        let info = AllocationCreateInfo {
            allocate_preference: pref,
            name: Some("dedicated-test".into()),
            ..Default::default()
        };
        let alloc = allocator
            .allocate(reqs, AllocationType::Linear, &info, Some(d))
            .expect("allocate");
        assert_eq!(alloc.is_dedicated(), dedicated, "{pref:?} {size}");
        assert_eq!(alloc.name(), Some("dedicated-test"));
        // SAFETY: the allocation was made for this buffer, which is unbound.
        unsafe { alloc.bind_buffer(buffer) }.unwrap();
        // SAFETY: the buffer is unused; destroyed before its memory.
        unsafe { ctx.device.destroy_buffer(buffer, None) };
    }
    // allocate_from_type and allocate_dedicated are checked too.
    let layout = DeviceLayout::from_size_alignment(4096, 256).unwrap();
    let a = allocator
        .allocate_from_type(
            0,
            layout,
            AllocationType::Linear,
            &AllocationCreateInfo::default(),
        )
        .unwrap();
    assert_eq!(a.offset() % 256, 0);
    let d = allocator
        .allocate_dedicated(0, 4096, None, &AllocationCreateInfo::default())
        .unwrap();
    assert!(d.is_dedicated() && d.offset() == 0);
}

#[test]
fn gpu_fill_and_copy_prove_no_allocation_overwrites_another() {
    let ctx = TestContext::new();
    let device = ctx.memory_device();
    let allocator = StandardMemoryAllocator::new_default(device.clone());
    let mut rng = Rng(42);
    let count = 2000;
    let mut sources = Vec::with_capacity(count);
    let mut total = 0u64;
    for i in 0..count {
        let size = rng.range(1, 16) * 256 + 4 * rng.range(0, 64);
        let usage = vk::BufferUsageFlags::TRANSFER_DST | vk::BufferUsageFlags::TRANSFER_SRC;
        // SAFETY: valid create info; destroyed below before its memory.
        let (buffer, alloc) = unsafe {
            allocator.create_buffer(&buffer_info(size, usage), &AllocationCreateInfo::default())
        }
        .unwrap();
        sources.push((buffer, alloc, size, 0xA5A5_0000u32 ^ i as u32, total));
        total += size;
    }
    let readback_info = AllocationCreateInfo {
        usage: MemoryUsage::Download,
        ..Default::default()
    };
    // SAFETY: valid create info; destroyed below before its memory.
    let (readback, readback_alloc) = unsafe {
        allocator.create_buffer(
            &buffer_info(total, vk::BufferUsageFlags::TRANSFER_DST),
            &readback_info,
        )
    }
    .unwrap();
    // Fill every buffer with its own pattern, then copy them all into the readback buffer.
    ctx.submit(|d, cmd| {
        for (buffer, _, _, pattern, _) in &sources {
            // SAFETY: recording into a command buffer in the recording state.
            unsafe { d.cmd_fill_buffer(cmd, *buffer, 0, vk::WHOLE_SIZE, *pattern) };
        }
        TestContext::transfer_barrier(d, cmd);
        for (buffer, _, size, _, dst) in &sources {
            let region = vk::BufferCopy {
                src_offset: 0,
                dst_offset: *dst,
                size: *size,
            };
            // SAFETY: both buffers are valid and the region lies inside both.
            unsafe { d.cmd_copy_buffer(cmd, *buffer, readback, &[region]) };
        }
        TestContext::transfer_barrier(d, cmd);
    });
    let mut bytes = vec![0u8; total as usize];
    readback_alloc.read(0, &mut bytes).unwrap();
    for (i, (_, _, size, pattern, dst)) in sources.iter().enumerate() {
        let chunk = &bytes[*dst as usize..(*dst + *size) as usize];
        for (w, word) in chunk.chunks_exact(4).enumerate() {
            let v = u32::from_le_bytes(word.try_into().unwrap());
            assert_eq!(v, *pattern, "buffer {i} word {w} was overwritten");
        }
    }
    let all: Vec<&MemoryAlloc> = sources.iter().map(|s| &s.1).collect();
    assert_disjoint(&all);
    // SAFETY: the GPU is idle (submit waited); buffers destroyed before their memory.
    unsafe {
        for s in &sources {
            ctx.device.destroy_buffer(s.0, None);
        }
        ctx.device.destroy_buffer(readback, None);
    }
}

#[test]
fn empty_blocks_are_released_and_nothing_leaks() {
    let ctx = TestContext::new();
    let device = ctx.memory_device();
    let create_info = GenericMemoryAllocatorCreateInfo {
        block_sizes: ash_memory::BlockSizeThresholds::uniform(4 * MIB).unwrap(),
        grow_blocks: false,
        ..Default::default()
    };
    let allocator = StandardMemoryAllocator::new(device.clone(), create_info).unwrap();
    // An eighth of a block: the largest request that still makes blocks (not sizable).
    let layout = DeviceLayout::from_size_alignment(MIB / 2, 256).unwrap();
    let reqs = AllocationRequirements {
        layout,
        memory_type_bits: 1,
        prefers_dedicated_allocation: false,
        requires_dedicated_allocation: false,
    };
    let allocs: Vec<_> = (0..48)
        .map(|_| {
            allocator
                .allocate(
                    reqs,
                    AllocationType::Linear,
                    &AllocationCreateInfo::default(),
                    None,
                )
                .unwrap()
        })
        .collect();
    assert!(
        allocator.block_count(0) >= 6,
        "{} blocks",
        allocator.block_count(0)
    );
    assert_eq!(
        device.live_memory_objects() as usize,
        allocator.block_count(0)
    );
    drop(allocs);
    // Empty blocks are kept up to four of the largest block's size (all six were in use a
    // moment ago, the high-water mark), for reuse.
    assert_eq!(
        allocator.block_count(0),
        4,
        "empty blocks beyond four times the largest block's size kept"
    );
    assert_eq!(device.live_memory_objects(), 4);
    drop(allocator);
    assert_eq!(device.live_memory_objects(), 0);
}

#[test]
fn growing_blocks_start_small() {
    let ctx = TestContext::new();
    let device = ctx.memory_device();
    let allocator = StandardMemoryAllocator::new_default(device.clone());
    let preferred = allocator.block_size(0).unwrap();
    let small = AllocationCreateInfo::default();
    let layout = DeviceLayout::from_size_alignment(4 * KIB, 16).unwrap();
    let a = allocator
        .allocate_from_type(0, layout, AllocationType::Linear, &small)
        .unwrap();
    assert_eq!(
        device.live_memory_bytes(),
        preferred / 8,
        "first block is 1/8 size"
    );
    drop(a);
}

/// Large resources first (sizable: a quarter of a block each, in blocks of their own size),
/// then small ones: the first block for the small ones is still an eighth of the preferred
/// size (the blocks of the large ones are no steps of the growth).
#[test]
fn growing_blocks_start_small_after_large_resources() {
    let ctx = TestContext::new();
    let device = ctx.memory_device();
    let allocator = StandardMemoryAllocator::new_default(device.clone());
    let preferred = allocator.block_size(0).unwrap();
    let info = AllocationCreateInfo::default();
    let large = DeviceLayout::from_size_alignment(preferred / 4, 256).unwrap();
    let targets: Vec<_> = (0..4)
        .map(|_| {
            allocator
                .allocate_from_type(0, large, AllocationType::Linear, &info)
                .unwrap()
        })
        .collect();
    assert_eq!(
        device.live_memory_bytes(),
        preferred,
        "four blocks of their own size"
    );
    let small = DeviceLayout::from_size_alignment(4 * KIB, 16).unwrap();
    let a = allocator
        .allocate_from_type(0, small, AllocationType::Linear, &info)
        .unwrap();
    assert_eq!(
        device.live_memory_bytes(),
        preferred + preferred / 8,
        "the first block for small resources is 1/8 size"
    );
    drop((a, targets));
}

#[test]
fn bad_input_returns_errors() {
    let ctx = TestContext::new();
    let device = ctx.memory_device();
    let allocator = StandardMemoryAllocator::new_default(device.clone());
    let type_count = device.memory_properties().memory_types.len() as u32;
    let layout = DeviceLayout::from_size_alignment(256, 16).unwrap();
    let reqs = |bits| AllocationRequirements {
        layout,
        memory_type_bits: bits,
        prefers_dedicated_allocation: false,
        requires_dedicated_allocation: false,
    };
    let info = AllocationCreateInfo::default();
    let ty = AllocationType::Linear;
    assert_eq!(
        allocator.allocate(reqs(0), ty, &info, None).unwrap_err(),
        AllocationError::NoMemoryTypeBits
    );
    assert!(matches!(
        allocator
            .allocate(reqs(1 << type_count), ty, &info, None)
            .unwrap_err(),
        AllocationError::MemoryTypeBitsOutOfRange { .. }
    ));
    let lazy = AllocationCreateInfo {
        usage: MemoryUsage::Custom(MemoryTypeFilter {
            required_flags: vk::MemoryPropertyFlags::LAZILY_ALLOCATED,
            ..Default::default()
        }),
        ..Default::default()
    };
    let err = allocator.allocate(reqs(1), ty, &lazy, None).unwrap_err();
    assert!(
        matches!(err, AllocationError::NoSuitableMemoryType { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("LAZILY_ALLOCATED"), "{err}");
    let heap = device.memory_properties().memory_heaps[0].size;
    let huge = AllocationRequirements {
        layout: DeviceLayout::from_size_alignment(heap * 2, 1).unwrap(),
        ..reqs(1)
    };
    let err = allocator.allocate(huge, ty, &info, None).unwrap_err();
    assert!(
        matches!(err, AllocationError::SizeExceedsHeap { .. }),
        "{err}"
    );
    let never = AllocationCreateInfo {
        allocate_preference: MemoryAllocatePreference::NeverAllocate,
        ..Default::default()
    };
    assert_eq!(
        allocator.allocate(reqs(1), ty, &never, None).unwrap_err(),
        AllocationError::OutOfPoolMemory
    );
    let required = AllocationRequirements {
        requires_dedicated_allocation: true,
        ..reqs(1)
    };
    assert_eq!(
        allocator.allocate(required, ty, &never, None).unwrap_err(),
        AllocationError::DedicatedAllocationRequired
    );
    assert!(matches!(
        allocator
            .allocate_from_type(type_count, layout, ty, &info)
            .unwrap_err(),
        AllocationError::MemoryTypeIndexOutOfRange { .. }
    ));
    assert!(matches!(
        allocator.allocate_dedicated(0, 0, None, &info).unwrap_err(),
        AllocationError::Layout(LayoutError::ZeroSize)
    ));
    assert!(matches!(
        AllocationRequirements::from_vk(vk::MemoryRequirements {
            size: 64,
            alignment: 3,
            memory_type_bits: 1
        }),
        Err(AllocationError::Layout(
            LayoutError::AlignmentNotPowerOfTwo(3)
        ))
    ));
    for table in [
        vec![],
        vec![(1, MIB)],
        vec![(0, MIB), (0, 2 * MIB)],
        vec![(0, MIB), (GIB, MIB), (MIB, MIB)],
    ] {
        let err = BlockSizeThresholds::new(table).unwrap_err();
        assert!(matches!(err, ConfigError::BlockSizes(_)), "{err}");
    }
    // Reads and writes outside the allocation.
    let upload = AllocationCreateInfo {
        usage: MemoryUsage::Upload,
        ..Default::default()
    };
    let mut a = allocator.allocate(reqs(1), ty, &upload, None).unwrap();
    let err = a.write(200, &[0u8; 57]).unwrap_err();
    assert!(
        matches!(err, MemoryAccessError::OutOfBounds { .. }),
        "{err}"
    );
    let err = a.read(u64::MAX, &mut [0u8; 2]).unwrap_err();
    assert!(
        matches!(err, MemoryAccessError::OutOfBounds { .. }),
        "{err}"
    );
    a.write(0, &[7u8; 256]).unwrap();
    let mut back = [0u8; 256];
    a.read(0, &mut back).unwrap();
    assert_eq!(back, [7u8; 256]);
}

const GIB: u64 = 1 << 30;

/// Compile-time check: the allocator and its allocations cross threads.
#[test]
fn allocator_and_allocations_are_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<StandardMemoryAllocator>();
    assert_send_sync::<GenericMemoryAllocator<BuddyAllocator>>();
    assert_send_sync::<GenericMemoryAllocator<SlotAllocator<4096>>>();
    assert_send_sync::<GenericMemoryAllocator<BumpAllocator>>();
    assert_send_sync::<MemoryAlloc>();
    assert_send_sync::<MemoryDevice>();
    let ctx = TestContext::new();
    let allocator = std::sync::Arc::new(StandardMemoryAllocator::new_default(ctx.memory_device()));
    let layout = DeviceLayout::from_size_alignment(4096, 64).unwrap();
    let from_other_thread = std::thread::scope(|s| {
        s.spawn(|| {
            allocator
                .allocate_from_type(
                    0,
                    layout,
                    AllocationType::Linear,
                    &AllocationCreateInfo::default(),
                )
                .unwrap()
        })
        .join()
        .unwrap()
    });
    // Freed on this thread, allocated on the other.
    drop(from_other_thread);
    drop(allocator);
}

/// A suballocator that places ranges correctly but always reports no live allocations: the
/// `Suballocator` contract leaves counts out of its safety guarantees, so a miscount must not
/// let the allocator free a block that still has allocations.
struct Miscounting(FreeListAllocator);

// SAFETY: every range comes from the wrapped `FreeListAllocator`, which upholds the contract.
unsafe impl Suballocator for Miscounting {
    common::forward::forward_to_free_list!(
        new,
        region_size,
        allocate,
        deallocate,
        free_size,
        largest_free_range,
        reset,
        for_each_range,
    );
    fn allocation_count(&self) -> usize {
        0
    }
}

#[test]
fn allocations_keep_their_block_alive_whatever_the_suballocator_counts() {
    let ctx = TestContext::new();
    let device = ctx.memory_device();
    let allocator = GenericMemoryAllocator::<Miscounting>::new(
        device.clone(),
        GenericMemoryAllocatorCreateInfo {
            // Allocations outlive the allocator here on purpose: no leak panic.
            debug: DebugOptions {
                leak_check: LeakCheck::Log,
                ..Default::default()
            },
            ..Default::default()
        },
    )
    .unwrap();
    let info = AllocationCreateInfo {
        usage: MemoryUsage::Upload,
        ..Default::default()
    };
    let layout = DeviceLayout::from_size_alignment(4 * KIB, 64).unwrap();
    let ty = allocator
        .find_memory_type_index(u32::MAX, MemoryUsage::Upload.into())
        .unwrap();
    let mut a = allocator
        .allocate_from_type(ty, layout, AllocationType::Linear, &info)
        .unwrap();
    let mut b = allocator
        .allocate_from_type(ty, layout, AllocationType::Linear, &info)
        .unwrap();
    assert_eq!(a.memory(), b.memory());
    // Freeing one of two must not release the block, nor must dropping the allocator.
    let c = allocator
        .allocate_from_type(ty, layout, AllocationType::Linear, &info)
        .unwrap();
    drop(c);
    assert_eq!(allocator.block_count(ty), 1);
    drop(allocator);
    assert_eq!(device.live_memory_objects(), 1);
    for (alloc, byte) in [(&mut a, 0xA5u8), (&mut b, 0x5A)] {
        alloc.write(0, &[byte; 256]).unwrap();
    }
    drop(a);
    assert_eq!(
        device.live_memory_objects(),
        1,
        "b still lives in the block"
    );
    let mut back = [0u8; 256];
    b.read(0, &mut back).unwrap();
    assert_eq!(back, [0x5A; 256]);
    drop(b);
    assert_eq!(device.live_memory_objects(), 0);
}
