//! Probes of resources bound by hand and of their error paths, on the real driver under the
//! validation layer (any validation message fails the test, and a buffer or memory object
//! left alive is reported when the test context destroys the device):
//!
//! - buffers aliased at the last offsets of an allocation: the last aligned offset binds and
//!   sees exactly the allocation's last bytes (a GPU copy reads what the host wrote there),
//!   every offset past it is refused and the refused buffer is destroyed again;
//! - a bind that fails inside `create_buffer` / `create_image` / `OwnedBuffer::new` /
//!   `OwnedImage::new`, after the resource was created and its memory allocated, destroys
//!   the resource and frees the memory (block or dedicated);
//! - typed access to the last bytes of a non-coherent memory object of an odd size (simulated
//!   non-coherent memory, which loses unflushed writes on an invalidate): written values
//!   survive, because the flush is widened to atoms and clamped to the object's end;
//! - an image aliased at the last offset of an `Unknown` allocation between two buffer
//!   allocations of one block never shares a `bufferImageGranularity` page with the buffers
//!   bound next to it (the simulated driver records any granularity conflict);
//! - resources the driver says *require* a memory object of their own get one named after
//!   them through `create_buffer` / `create_image` / `OwnedImage::new`, also when the
//!   allocator is told not to name resources on its own or to use only existing blocks
//!   (then the request fails instead of landing in a block);
//! - a `TransientMemory::prepare` whose second memory object fails to allocate leaks nothing,
//!   refuses binds for the plan it did not prepare, and succeeds once memory is available.
//!
//! External memory edges are in `tests/external_memory_edges.rs`.

mod common;
mod support;

use ash::vk;
use ash_memory::*;
use common::{buffer_info, image_info, TestContext};
use support::{Faults, GpuLayout, Sim};

fn host_info() -> AllocationCreateInfo {
    AllocationCreateInfo {
        usage: MemoryUsage::Auto(HostAccess::Random),
        ..Default::default()
    }
}

fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 8) as u8)
        .collect()
}

#[test]
fn buffers_aliased_at_the_last_offsets_see_the_last_bytes_and_past_them_are_refused() {
    const ALIAS: u64 = 256;
    let ctx = TestContext::new();
    let device = ctx.memory_device();
    let allocator = StandardMemoryAllocator::new_default(device.clone());
    let info = buffer_info(
        ALIAS,
        vk::BufferUsageFlags::TRANSFER_SRC | vk::BufferUsageFlags::TRANSFER_DST,
    );
    // SAFETY: a valid create info; the probe is destroyed unbound.
    let reqs = unsafe {
        let probe = ctx.device.create_buffer(&info, None).unwrap();
        let reqs = ctx.device.get_buffer_memory_requirements(probe);
        ctx.device.destroy_buffer(probe, None);
        reqs
    };
    let align = reqs.alignment.max(1);
    // An odd size, so that the last aligned offset is not at the very end.
    let size = 8 * 1024 + 3 * align / 2 + 5;
    let mut alloc = allocator
        .allocate(
            AllocationRequirements::from_vk(vk::MemoryRequirements {
                size,
                alignment: align,
                memory_type_bits: reqs.memory_type_bits,
            })
            .unwrap(),
            AllocationType::Unknown,
            &host_info(),
            None,
        )
        .unwrap();
    let data = pattern(3, alloc.size() as usize);
    alloc.write(0, &data).unwrap();
    let last = (alloc.size() - ALIAS) / align * align;
    // Every offset past the last aligned one is refused, and the buffer is not leaked.
    for bad in [
        last + align,
        alloc.size() - ALIAS + 1,
        alloc.size(),
        alloc.size() + align,
        u64::MAX - align + 1,
    ] {
        // SAFETY: a valid create info; on error the buffer is destroyed by the call.
        let result = unsafe { alloc.create_aliasing_buffer(&info, bad) };
        assert!(
            matches!(result, Err(MemoryAccessError::ResourceOutOfBounds { .. })),
            "offset {bad} of {}: {result:?}",
            alloc.size()
        );
    }
    if align > 1 {
        // SAFETY: as above.
        let result = unsafe { alloc.create_aliasing_buffer(&info, last - align + 1) };
        assert!(
            matches!(result, Err(MemoryAccessError::MisalignedBind { .. })),
            "{result:?}"
        );
    }
    // The last aligned offset and the first overlap nothing else but each other's bytes.
    // SAFETY: valid create infos; both are destroyed before the allocation is dropped.
    let (at_end, at_start) = unsafe {
        (
            alloc.create_aliasing_buffer(&info, last).unwrap(),
            alloc.create_aliasing_buffer(&info, 0).unwrap(),
        )
    };
    // SAFETY: a valid create info.
    let (readback, readback_alloc) = unsafe {
        allocator.create_buffer(
            &buffer_info(2 * ALIAS, vk::BufferUsageFlags::TRANSFER_DST),
            &host_info(),
        )
    }
    .unwrap();
    ctx.submit(|d, cmd| {
        let region = |dst_offset| vk::BufferCopy {
            src_offset: 0,
            dst_offset,
            size: ALIAS,
        };
        // SAFETY: recording; every buffer is bound and large enough.
        unsafe {
            d.cmd_copy_buffer(cmd, at_end, readback, &[region(0)]);
            d.cmd_copy_buffer(cmd, at_start, readback, &[region(ALIAS)]);
        }
        TestContext::transfer_barrier(d, cmd);
    });
    let mut read = vec![0u8; 2 * ALIAS as usize];
    readback_alloc.read(0, &mut read).unwrap();
    let last = last as usize;
    assert!(
        read[..ALIAS as usize] == data[last..last + ALIAS as usize],
        "the buffer at the last aligned offset reads other bytes"
    );
    assert!(read[ALIAS as usize..] == data[..ALIAS as usize]);
    // The host's last bytes, typed, at the very end of the allocation.
    let end = alloc.size();
    alloc.write_value(end - 4, 0xA1B2_C3D4u32).unwrap();
    assert_eq!(alloc.read_value::<u32>(end - 4).unwrap(), 0xA1B2_C3D4);
    assert!(matches!(
        alloc.write_value(end - 3, 0u32),
        Err(MemoryAccessError::OutOfBounds { .. })
    ));
    assert!(matches!(
        alloc.read_value::<u16>(end - 1),
        Err(MemoryAccessError::OutOfBounds { .. })
    ));
    // SAFETY: the GPU is done with them (submit waits).
    unsafe {
        ctx.device.destroy_buffer(at_end, None);
        ctx.device.destroy_buffer(at_start, None);
        allocator.destroy_buffer(readback, readback_alloc);
    }
    drop((alloc, allocator));
    assert_eq!(device.live_memory_objects(), 0);
}

#[test]
fn a_bind_failing_inside_create_destroys_the_resource_and_frees_its_memory() {
    let ctx = TestContext::new();
    let device = ctx.memory_device_with_v1_0(common::failing_bind::hook, Default::default());
    let allocator = StandardMemoryAllocator::new_default(device.clone());
    let fault = vk::Result::ERROR_OUT_OF_DEVICE_MEMORY;
    let usage = vk::BufferUsageFlags::TRANSFER_SRC;
    let image = image_info(64, vk::Format::R8G8B8A8_UNORM, vk::ImageTiling::OPTIMAL);
    let dedicated = AllocationCreateInfo {
        allocate_preference: MemoryAllocatePreference::AlwaysAllocate,
        ..host_info()
    };
    // In a block, and dedicated (a memory object created for the resource, then freed).
    for create_info in [host_info(), dedicated] {
        let before = allocator.statistics().total;
        common::failing_bind::fail_next(fault);
        // SAFETY: a valid create info; on error the buffer is destroyed by the call (the
        // validation layer reports any left at device destruction).
        let result = unsafe { allocator.create_buffer(&buffer_info(4096, usage), &create_info) };
        assert!(result.is_err(), "{result:?}");
        common::failing_bind::fail_next(fault);
        // SAFETY: as above.
        let result =
            unsafe { OwnedBuffer::new(&allocator, &buffer_info(4096, usage), &create_info) };
        assert!(result.is_err(), "{result:?}");
        common::failing_bind::fail_next(fault);
        // SAFETY: as above, for an image.
        let result = unsafe { allocator.create_image(&image, &create_info) };
        assert!(result.is_err(), "{result:?}");
        common::failing_bind::fail_next(fault);
        // SAFETY: as above.
        let result = unsafe { OwnedImage::new(&allocator, &image, &create_info) };
        assert!(result.is_err(), "{result:?}");
        assert!(
            !common::failing_bind::pending(),
            "every fault reached a bind"
        );
        let after = allocator.statistics().total;
        assert_eq!(after.allocation_count, before.allocation_count);
        assert_eq!(after.dedicated_count, before.dedicated_count);
    }
    // Without a fault both work, and the owned ones clean up after themselves.
    // SAFETY: valid create infos; nothing is submitted.
    unsafe {
        let buffer = OwnedBuffer::new(&allocator, &buffer_info(4096, usage), &host_info()).unwrap();
        let (raw, alloc) = buffer.into_raw();
        let again = OwnedBuffer::from_raw(allocator.device().clone(), raw, alloc);
        assert_eq!(again.handle(), raw);
        drop(again);
        drop(OwnedImage::new(&allocator, &image, &Default::default()).unwrap());
    }
    assert_eq!(allocator.statistics().total.allocation_count, 0);
    drop(allocator);
    assert_eq!(device.live_memory_objects(), 0);
}

#[test]
fn typed_writes_to_the_last_bytes_of_a_non_coherent_object_survive_an_invalidate() {
    for layout in [GpuLayout::mobile(), GpuLayout::nvidia_discrete()] {
        let name = layout.name;
        let mut layout = layout;
        for t in layout.types.iter_mut() {
            t.0 &= !vk::MemoryPropertyFlags::HOST_COHERENT;
        }
        let sim = Sim::new(layout);
        let allocator = StandardMemoryAllocator::new_default(sim.memory_device());
        let atom = allocator.device().non_coherent_atom_size().as_devicesize();
        let host = allocator
            .find_memory_type_index(u32::MAX, MemoryTypeFilter::from(MemoryUsage::Download))
            .unwrap();
        // An object whose size is not a multiple of the atom: its last atom is cut short.
        let size = 4 * atom + 12;
        let mut alloc = allocator
            .allocate_dedicated(host, size, None, &Default::default())
            .unwrap();
        assert_eq!(alloc.size(), size, "{name}");
        alloc.write_value(size - 4, 0x0102_0304u32).unwrap();
        alloc.write_slice(size - 12, &[7u16, 8, 9, 10]).unwrap();
        alloc.invalidate(0, size).unwrap();
        assert_eq!(
            alloc.read_value::<u32>(size - 4).unwrap(),
            0x0102_0304,
            "{name}"
        );
        let mut back = [0u16; 4];
        alloc.read_slice(size - 12, &mut back).unwrap();
        assert_eq!(back, [7, 8, 9, 10], "{name}");
        // The last whole `u32` of a typed slice, flushed with the documented call.
        let slice = alloc.mapped_slice_of_mut::<u32>().unwrap();
        assert_eq!(slice.len() as u64, size / 4, "{name}");
        *slice.last_mut().unwrap() = 0xCAFE_F00D;
        alloc.flush(size - 4, 4).unwrap();
        alloc.invalidate(size - 1, 1).unwrap();
        assert_eq!(
            alloc.read_value::<u32>(size - 4).unwrap(),
            0xCAFE_F00D,
            "{name}"
        );
        // Past the end: errors, no sync reaches the driver out of range.
        assert!(matches!(
            alloc.write_value(size - 3, 0u32),
            Err(MemoryAccessError::OutOfBounds { .. })
        ));
        assert!(alloc.flush(size, 1).is_err());
        assert!(alloc.invalidate(size - 1, 2).is_err());
        drop((alloc, allocator));
        sim.assert_nothing_allocated();
    }
}

#[test]
fn an_image_aliased_at_the_end_of_an_unknown_allocation_keeps_clear_of_buffer_neighbours() {
    for layout in [GpuLayout::large_granularity(), GpuLayout::nvidia_discrete()] {
        let name = layout.name;
        let sim = Sim::new(layout);
        let device = sim.memory_device();
        let ash = device.ash().clone();
        let allocator = StandardMemoryAllocator::new_default(device.clone());
        let granularity = device.buffer_image_granularity().as_devicesize();
        let usage = vk::BufferUsageFlags::TRANSFER_SRC;
        let image = image_info(32, vk::Format::R8G8B8A8_UNORM, vk::ImageTiling::OPTIMAL);
        // SAFETY: valid create infos; the probes are destroyed unbound.
        let (buffer_reqs, image_reqs) = unsafe {
            let b = ash.create_buffer(&buffer_info(256, usage), None).unwrap();
            let i = ash.create_image(&image, None).unwrap();
            let reqs = (
                ash.get_buffer_memory_requirements(b),
                ash.get_image_memory_requirements(i),
            );
            ash.destroy_buffer(b, None);
            ash.destroy_image(i, None);
            reqs
        };
        let device_local = AllocationCreateInfo {
            usage: MemoryUsage::Auto(HostAccess::NoAccess),
            ..Default::default()
        };
        let alloc = |reqs: vk::MemoryRequirements, ty| {
            allocator
                .allocate(
                    AllocationRequirements::from_vk(reqs).unwrap(),
                    ty,
                    &device_local,
                    None,
                )
                .unwrap()
        };
        // Buffer, Unknown (a bit larger than the image, odd-sized), buffer, in one block.
        let before = alloc(buffer_reqs, AllocationType::Linear);
        let shared_reqs = vk::MemoryRequirements {
            size: image_reqs.size + image_reqs.alignment + 100,
            memory_type_bits: image_reqs.memory_type_bits & buffer_reqs.memory_type_bits,
            alignment: image_reqs.alignment.max(buffer_reqs.alignment),
        };
        let shared = alloc(shared_reqs, AllocationType::Unknown);
        let after = alloc(buffer_reqs, AllocationType::Linear);
        assert_eq!(before.memory(), shared.memory(), "{name}: one block");
        assert_eq!(after.memory(), shared.memory(), "{name}: one block");
        let align = image_reqs.alignment.max(1);
        let last =
            (shared.offset() + shared.size() - image_reqs.size) / align * align - shared.offset();
        // SAFETY: valid create infos; every resource is destroyed before its memory.
        unsafe {
            let b1 = ash.create_buffer(&buffer_info(256, usage), None).unwrap();
            let b2 = ash.create_buffer(&buffer_info(256, usage), None).unwrap();
            before.bind_buffer_at(b1, 0).unwrap();
            after.bind_buffer_at(b2, 0).unwrap();
            let i = shared.create_aliasing_image(&image, last).unwrap();
            let end = shared.offset() + last + image_reqs.size;
            assert!(
                (end - 1) / granularity < after.offset() / granularity,
                "{name}: the image ends on the page of the next buffer"
            );
            assert!(
                (before.offset() + 255) / granularity < (shared.offset() + last) / granularity,
                "{name}: the image starts on the page of the previous buffer"
            );
            ash.destroy_image(i, None);
            // And a buffer at the start of the same allocation, after the image is gone.
            let b3 = shared
                .create_aliasing_buffer(&buffer_info(256, usage), 0)
                .unwrap();
            ash.destroy_buffer(b3, None);
            ash.destroy_buffer(b1, None);
            ash.destroy_buffer(b2, None);
        }
        drop((before, shared, after, allocator));
        sim.assert_nothing_allocated();
    }
}

#[test]
fn resources_that_require_their_own_memory_get_it_or_an_error() {
    let sim = Sim::new(GpuLayout::nvidia_discrete());
    {
        let device = sim.memory_device();
        let usage = vk::BufferUsageFlags::TRANSFER_SRC;
        let image = image_info(32, vk::Format::R8G8B8A8_UNORM, vk::ImageTiling::OPTIMAL);
        for name_resources in [true, false] {
            let allocator = StandardMemoryAllocator::new(
                device.clone(),
                GenericMemoryAllocatorCreateInfo {
                    dedicated_allocation: name_resources,
                    ..Default::default()
                },
            )
            .unwrap();
            // A block of each kind exists before the driver starts requiring dedicated memory.
            sim.state
                .requires_dedicated
                .store(false, std::sync::atomic::Ordering::SeqCst);
            // SAFETY: valid create infos; destroyed below, before their memory.
            let (b0, a0) =
                unsafe { allocator.create_buffer(&buffer_info(256, usage), &host_info()) }.unwrap();
            // SAFETY: as above.
            let (i0, ai0) = unsafe { allocator.create_image(&image, &Default::default()) }.unwrap();
            assert!(!a0.is_dedicated() && !ai0.is_dedicated());
            sim.state
                .requires_dedicated
                .store(true, std::sync::atomic::Ordering::SeqCst);
            let never = AllocationCreateInfo {
                allocate_preference: MemoryAllocatePreference::NeverAllocate,
                ..host_info()
            };
            // SAFETY: a valid create info; on error the buffer is destroyed by the call.
            let refused = unsafe { allocator.create_buffer(&buffer_info(256, usage), &never) };
            assert!(refused.is_err(), "{refused:?}");
            // SAFETY: as above.
            let refused = unsafe {
                allocator.create_image(
                    &image,
                    &AllocationCreateInfo {
                        allocate_preference: MemoryAllocatePreference::NeverAllocate,
                        ..Default::default()
                    },
                )
            };
            assert!(refused.is_err(), "{refused:?}");
            // SAFETY: valid create infos; nothing is submitted.
            unsafe {
                let (b1, a1) = allocator
                    .create_buffer(&buffer_info(256, usage), &host_info())
                    .unwrap();
                assert!(a1.is_dedicated());
                let owned = OwnedImage::new(&allocator, &image, &Default::default()).unwrap();
                assert!(owned.allocation().is_dedicated());
                drop(owned);
                allocator.destroy_buffer(b1, a1);
                allocator.destroy_buffer(b0, a0);
                allocator.destroy_image(i0, ai0);
            }
            assert_eq!(allocator.statistics().total.allocation_count, 0);
        }
        drop(device);
        sim.assert_nothing_allocated();
    }
}

#[test]
fn a_transient_prepare_failing_halfway_leaks_nothing_and_recovers() {
    use ash_memory::transient::{
        plan, PlanInfo, TransientError, TransientMemory, TransientResource,
    };
    let sim = Sim::new(GpuLayout::nvidia_discrete());
    {
        let device = sim.memory_device();
        let allocator = std::sync::Arc::new(StandardMemoryAllocator::new_default(device.clone()));
        // Types 0 (device-local) and 1 (host-visible): one memory object each.
        let info = PlanInfo {
            buffer_image_granularity: device.buffer_image_granularity(),
            memory_types: 0b011,
            ..Default::default()
        };
        let resources = |size: u64| {
            let layout = DeviceLayout::from_size_alignment(size, 4096).unwrap();
            [
                TransientResource::new(layout, 0b01, AllocationType::Linear, 0, 1),
                TransientResource::new(layout, 0b10, AllocationType::Linear, 0, 1),
            ]
        };
        let small = plan(&resources(1 << 20), &info).unwrap();
        let large = plan(&resources(2 << 20), &info).unwrap();
        assert_eq!(small.memory().len(), 2);
        let mut memory = TransientMemory::new(allocator.clone(), Default::default());
        // SAFETY: nothing is bound through `memory` in this test.
        unsafe {
            assert!(memory.prepare(&small).unwrap());
            let live = sim.state.live_objects();
            sim.state.reset_counters();
            // Growing the first object works, growing the second one fails.
            sim.state.set_faults(Faults {
                allocate_at: Some((2, vk::Result::ERROR_OUT_OF_DEVICE_MEMORY)),
                ..Default::default()
            });
            let result = memory.prepare(&large);
            assert!(
                matches!(result, Err(TransientError::Allocation(_))),
                "{result:?}"
            );
            assert_eq!(sim.state.live_objects(), live, "a memory object leaked");
            assert_eq!(
                memory.bind_buffer(&large, 0, vk::Buffer::null()),
                Err(TransientError::NotPrepared)
            );
            sim.state.set_faults(Faults::default());
            assert!(memory.prepare(&large).unwrap());
            let mut kept = memory.kept_memory();
            kept.sort_unstable();
            assert_eq!(kept, vec![(0, 2 << 20), (1, 2 << 20)]);
            assert_eq!(sim.state.live_objects(), live);
        }
        drop((memory, allocator, device));
        sim.assert_nothing_allocated();
    }
}
