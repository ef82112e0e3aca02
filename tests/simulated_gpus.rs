//! The allocator on the memory layouts of real GPUs, simulated on top of lavapipe (see
//! `support`): memory type choice per usage, the BAR-heap fallback, the memory object count
//! limit, flush/invalidate alignment on non-coherent memory, and large granularity.

mod common;
mod support;

use ash::vk;
use ash::vk::MemoryPropertyFlags as F;
use ash_memory::*;
use support::{buffer_info, fill, image_info, verify, GpuLayout, Sim, KIB, MIB};

/// The memory type VMA picks for its legacy usages (`GPU_ONLY`, `CPU_TO_GPU`, `GPU_TO_CPU`),
/// per its documentation: required flags must be present; the cost is the number of missing
/// preferred flags; the lowest cost wins, ties go to the lowest index. `GPU_ONLY` prefers
/// `DEVICE_LOCAL`; `CPU_TO_GPU` requires `HOST_VISIBLE` and prefers `DEVICE_LOCAL`;
/// `GPU_TO_CPU` requires `HOST_VISIBLE` and prefers `HOST_CACHED`.
fn vma_legacy_pick(layout: &GpuLayout, bits: u32, usage: MemoryUsage) -> Option<u32> {
    let (required, preferred) = match usage {
        MemoryUsage::DeviceOnly => (F::empty(), F::DEVICE_LOCAL),
        MemoryUsage::Upload => (F::HOST_VISIBLE, F::DEVICE_LOCAL),
        MemoryUsage::Download => (F::HOST_VISIBLE, F::HOST_CACHED),
        _ => unreachable!("not a legacy usage"),
    };
    (0..layout.type_count())
        .filter(|&i| bits & (1 << i) != 0 && layout.flags(i).contains(required))
        .min_by_key(|&i| (preferred & !layout.flags(i)).as_raw().count_ones())
}

struct Expected {
    layout: GpuLayout,
    device_only: u32,
    upload: u32,
    download: u32,
    /// Where VMA's legacy choice differs: `(usage, VMA's type, why)`.
    vma_differs: Option<(MemoryUsage, u32, &'static str)>,
}

fn expectations() -> Vec<Expected> {
    vec![
        // VRAM for the GPU, write-combined host memory for uploads, cached host memory for
        // readback: exactly VMA's choice.
        Expected {
            layout: GpuLayout::nvidia_discrete(),
            device_only: 0,
            upload: 1,
            download: 2,
            vma_differs: None,
        },
        // Uploads go through the BAR window (DEVICE_LOCAL | HOST_VISIBLE), device-only memory
        // stays out of it, readback in cached host memory: VMA's choice.
        Expected {
            layout: GpuLayout::amd_discrete_bar(),
            device_only: 0,
            upload: 2,
            download: 3,
            vma_differs: None,
        },
        Expected {
            layout: GpuLayout::amd_discrete_rebar(),
            device_only: 0,
            upload: 2,
            download: 3,
            vma_differs: None,
        },
        // On the unified heap uploads avoid the cached type (write-combined memory is faster
        // for sequential CPU writes). VMA's legacy CPU_TO_GPU only prefers DEVICE_LOCAL, which
        // both host-visible types have, so it takes the lower index, the cached type 1.
        Expected {
            layout: GpuLayout::intel_integrated(),
            device_only: 0,
            upload: 2,
            download: 1,
            vma_differs: Some((
                MemoryUsage::Upload,
                1,
                "ash-memory avoids HOST_CACHED for uploads",
            )),
        },
        // Every ordinary type is host-visible: device-only and uploads take the coherent type,
        // readback the cached non-coherent one; the lazily allocated type is never chosen for
        // a buffer (not in its memoryTypeBits, and opt-in only). VMA agrees.
        Expected {
            layout: GpuLayout::mobile(),
            device_only: 0,
            upload: 0,
            download: 1,
            vma_differs: None,
        },
        Expected {
            layout: GpuLayout::large_granularity(),
            device_only: 0,
            upload: 1,
            download: 2,
            vma_differs: None,
        },
    ]
}

#[test]
fn each_usage_picks_the_expected_memory_type_on_each_layout() {
    for e in expectations() {
        let sim = Sim::new(e.layout.clone());
        let device = sim.memory_device();
        let allocator = StandardMemoryAllocator::new_default(device.clone());
        let bits = e.layout.buffer_bits();
        for (usage, expected) in [
            (MemoryUsage::DeviceOnly, e.device_only),
            (MemoryUsage::Upload, e.upload),
            (MemoryUsage::Download, e.download),
        ] {
            let name = e.layout.name;
            let vma = vma_legacy_pick(&e.layout, bits, usage);
            match e.vma_differs {
                Some((u, vma_type, why)) if u == usage => {
                    assert_eq!(vma, Some(vma_type), "{name} {usage:?}: VMA model");
                    assert_ne!(vma_type, expected, "{name} {usage:?}: {why}");
                }
                _ => assert_eq!(vma, Some(expected), "{name} {usage:?}: VMA would differ"),
            }
            assert_eq!(
                allocator.find_memory_type_index(bits, usage.into()),
                Some(expected),
                "{name} {usage:?}"
            );
            let info = AllocationCreateInfo {
                usage,
                ..Default::default()
            };
            // SAFETY: a valid create info; the buffer is destroyed before its memory.
            let (buffer, mut alloc) = unsafe {
                allocator.create_buffer(
                    &buffer_info(4 * KIB, vk::BufferUsageFlags::TRANSFER_SRC),
                    &info,
                )
            }
            .unwrap_or_else(|err| panic!("{name} {usage:?}: {err}"));
            assert_eq!(alloc.memory_type_index(), expected, "{name} {usage:?}");
            assert_eq!(
                sim.state.memory_type_of(alloc.memory()),
                Some(expected),
                "{name} {usage:?}: the driver saw another memory type"
            );
            if usage != MemoryUsage::DeviceOnly {
                fill(&mut alloc, expected as u64, 4 * KIB);
                verify(&alloc, expected as u64, 4 * KIB, name);
            }
            // SAFETY: the buffer is unused; destroyed before its memory.
            unsafe { sim.device.destroy_buffer(buffer, None) };
        }
        // Optimal images for the GPU land in a DEVICE_LOCAL type.
        // SAFETY: a valid create info; the image is destroyed before its memory.
        let (image, alloc) = unsafe {
            allocator.create_image(
                &image_info(64, vk::Format::R8G8B8A8_UNORM, vk::ImageTiling::OPTIMAL),
                &AllocationCreateInfo::default(),
            )
        }
        .unwrap();
        assert_eq!(
            alloc.memory_type_index(),
            e.device_only,
            "{}",
            e.layout.name
        );
        // SAFETY: the image is unused; destroyed before its memory.
        unsafe { sim.device.destroy_image(image, None) };
        drop(alloc);
        drop(allocator);
        sim.assert_nothing_allocated();
    }
}

#[test]
fn transient_attachments_get_lazily_allocated_dedicated_memory_on_mobile() {
    let sim = Sim::new(GpuLayout::mobile());
    let allocator = StandardMemoryAllocator::new_default(sim.memory_device());
    let info = image_info(256, vk::Format::R8G8B8A8_UNORM, vk::ImageTiling::OPTIMAL)
        .usage(vk::ImageUsageFlags::COLOR_ATTACHMENT | vk::ImageUsageFlags::TRANSIENT_ATTACHMENT);
    let lazy = AllocationCreateInfo {
        usage: MemoryUsage::Custom(MemoryTypeFilter {
            required_flags: F::LAZILY_ALLOCATED,
            ..Default::default()
        }),
        ..Default::default()
    };
    // SAFETY: a valid create info; the images are destroyed before their memory.
    let (image, alloc) = unsafe { allocator.create_image(&info, &lazy) }.unwrap();
    assert_eq!(alloc.memory_type_index(), 2);
    assert!(
        alloc.is_dedicated(),
        "lazily allocated memory is never suballocated"
    );
    // The same image without the opt-in never lands in lazily allocated memory.
    // SAFETY: as above.
    let (image2, alloc2) =
        unsafe { allocator.create_image(&info, &AllocationCreateInfo::default()) }.unwrap();
    assert_eq!(alloc2.memory_type_index(), 0);
    // SAFETY: the images are unused; destroyed before their memory.
    unsafe {
        sim.device.destroy_image(image, None);
        sim.device.destroy_image(image2, None);
    }
}

#[test]
fn large_uploads_that_do_not_fit_the_bar_heap_fall_back_to_host_memory() {
    let layout = GpuLayout::amd_discrete_bar();
    let sim = Sim::new(layout.clone());
    let device = sim.memory_device();
    let allocator = StandardMemoryAllocator::new_default(device.clone());
    let upload = AllocationCreateInfo {
        usage: MemoryUsage::Upload,
        ..Default::default()
    };
    let bar_heap = 2;
    let size = 96 * MIB;
    let mut live = Vec::new();
    for i in 0..4u64 {
        // SAFETY: a valid create info; destroyed below before its memory.
        let (buffer, mut alloc) = unsafe {
            allocator.create_buffer(
                &buffer_info(size, vk::BufferUsageFlags::TRANSFER_SRC),
                &upload,
            )
        }
        .unwrap_or_else(|e| panic!("upload {i} failed instead of falling back: {e}"));
        // Two fit the 256 MiB BAR heap; the others go to write-combined host memory.
        let expected = if i < 2 { 2 } else { 1 };
        assert_eq!(alloc.memory_type_index(), expected, "upload {i}");
        assert!(sim.state.heap_used(bar_heap) <= layout.heaps[bar_heap as usize].0);
        let tail = alloc.size() - 4 * KIB;
        fill(&mut alloc, i, 4 * KIB);
        alloc.write(tail, &support::pattern(!i, 4096)).unwrap();
        live.push((buffer, alloc, i, tail));
    }
    // The failed BAR attempts were real driver failures, handled by the fallback.
    assert!(sim
        .state
        .calls()
        .iter()
        .any(|c| c.memory_type == 2 && c.result == vk::Result::ERROR_OUT_OF_DEVICE_MEMORY));
    // Small uploads still use what is left of the BAR heap.
    // SAFETY: as above.
    let (small_buffer, small) = unsafe {
        allocator.create_buffer(
            &buffer_info(64 * KIB, vk::BufferUsageFlags::TRANSFER_SRC),
            &upload,
        )
    }
    .unwrap();
    assert_eq!(small.memory_type_index(), 2);
    for (_, alloc, i, tail) in &live {
        verify(alloc, *i, 4 * KIB, "upload head");
        let mut back = vec![0; 4096];
        alloc.read(*tail, &mut back).unwrap();
        assert_eq!(back, support::pattern(!*i, 4096), "upload tail");
    }
    // SAFETY: the buffers are unused; destroyed before their memory.
    unsafe {
        sim.device.destroy_buffer(small_buffer, None);
        for (buffer, ..) in &live {
            sim.device.destroy_buffer(*buffer, None);
        }
    }
    drop((live, small, allocator));
    sim.assert_nothing_allocated();
}

#[test]
fn the_memory_object_count_limit_holds_with_10000_live_allocations() {
    let layout = GpuLayout::nvidia_discrete();
    let limit = layout.max_memory_allocation_count;
    let sim = Sim::new(layout);
    let device = sim.memory_device();
    let allocator = StandardMemoryAllocator::new_default(device.clone());
    // The driver "prefers" a dedicated allocation for every buffer: the allocator must stop
    // making them before it runs out of memory objects, and suballocate instead.
    sim.state
        .prefers_dedicated
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let mut live = Vec::with_capacity(10_000);
    for i in 0..10_000u64 {
        let usage = if i % 2 == 0 {
            MemoryUsage::DeviceOnly
        } else {
            MemoryUsage::Upload
        };
        let info = AllocationCreateInfo {
            usage,
            ..Default::default()
        };
        // SAFETY: a valid create info; destroyed below before its memory.
        let (buffer, alloc) = unsafe {
            allocator.create_buffer(
                &buffer_info(256 + 64 * (i % 8), vk::BufferUsageFlags::UNIFORM_BUFFER),
                &info,
            )
        }
        .unwrap_or_else(|e| panic!("allocation {i} failed: {e}"));
        live.push((buffer, alloc));
    }
    assert!(sim.state.max_live_objects() <= limit);
    assert!(device.live_memory_objects() <= limit);
    assert!(
        sim.state
            .calls()
            .iter()
            .all(|c| c.result != vk::Result::ERROR_TOO_MANY_OBJECTS),
        "the allocator let the driver hit maxMemoryAllocationCount"
    );
    // Made dedicated while there was room, suballocated after.
    assert!(live.iter().any(|(_, a)| a.is_dedicated()));
    assert!(live.iter().any(|(_, a)| !a.is_dedicated()));
    // SAFETY: the buffers are unused; destroyed before their memory.
    unsafe {
        for (buffer, _) in &live {
            sim.device.destroy_buffer(*buffer, None);
        }
    }
    drop(live);
    // Forced dedicated allocations stop at the limit with a clear error.
    let always = AllocationCreateInfo {
        allocate_preference: MemoryAllocatePreference::AlwaysAllocate,
        ..Default::default()
    };
    let mut dedicated = Vec::new();
    let err = loop {
        match allocator.allocate_dedicated(0, 256, None, &always) {
            Ok(a) => dedicated.push(a),
            Err(e) => break e,
        }
    };
    assert!(
        matches!(err, AllocationError::TooManyObjects { max } if max == limit),
        "{err}"
    );
    assert!(err.to_string().contains(&limit.to_string()), "{err}");
    assert_eq!(device.live_memory_objects(), limit);
    assert!(sim.state.max_live_objects() <= limit);
    drop((dedicated, allocator));
    sim.assert_nothing_allocated();
}

#[test]
fn flush_and_invalidate_ranges_are_atom_aligned_on_non_coherent_memory() {
    let layout = GpuLayout::mobile();
    let atom = layout.non_coherent_atom_size;
    let sim = Sim::new(layout);
    let allocator = StandardMemoryAllocator::new_default(sim.memory_device());
    let mut rng = support::Rng(3);
    let mut allocs = Vec::new();
    for i in 0..64 {
        let size = rng.range(1, 5000);
        let pref = if i % 4 == 0 {
            MemoryAllocatePreference::AlwaysAllocate
        } else {
            MemoryAllocatePreference::Auto
        };
        let info = AllocationCreateInfo {
            usage: MemoryUsage::Download,
            allocate_preference: pref,
            ..Default::default()
        };
        let reqs = AllocationRequirements {
            layout: DeviceLayout::from_size_alignment(size, 1 << rng.range(0, 8)).unwrap(),
            memory_type_bits: 0b11,
            prefers_dedicated_allocation: false,
            requires_dedicated_allocation: false,
        };
        let a = allocator
            .allocate(reqs, AllocationType::Linear, &info, None)
            .unwrap();
        assert_eq!(a.memory_type_index(), 1, "readback goes to the cached type");
        allocs.push(a);
    }
    for (i, a) in allocs.iter_mut().enumerate() {
        let offset = rng.range(0, a.size());
        let len = rng.range(1, a.size() - offset + 1);
        sim.state.reset_counters();
        a.write(offset, &support::pattern(i as u64, len as usize))
            .unwrap();
        let mut back = vec![0; len as usize];
        a.read(offset, &mut back).unwrap();
        assert_eq!(back, support::pattern(i as u64, len as usize));
        let syncs = sim.state.syncs();
        let covers = |flush: bool| {
            syncs.iter().any(|&(m, o, s, f)| {
                f == flush
                    && m == a.memory()
                    && o <= a.offset() + offset
                    && a.offset() + offset + len <= o + s
            })
        };
        assert!(
            covers(true),
            "write {offset}+{len} was not flushed: {syncs:?}"
        );
        assert!(covers(false), "read {offset}+{len} was not invalidated");
        for &(_, o, _, _) in &syncs {
            assert_eq!(o % atom, 0);
        }
    }
    // Coherent memory needs neither.
    let upload = AllocationCreateInfo {
        usage: MemoryUsage::Upload,
        ..Default::default()
    };
    let layout = DeviceLayout::from_size_alignment(1000, 4).unwrap();
    let mut coherent = allocator
        .allocate_from_type(0, layout, AllocationType::Linear, &upload)
        .unwrap();
    sim.state.reset_counters();
    coherent.write(3, &[1; 500]).unwrap();
    coherent.read(3, &mut [0; 500]).unwrap();
    assert!(sim.state.syncs().is_empty(), "coherent memory was flushed");
}

#[test]
fn a_64k_granularity_keeps_buffers_and_images_on_separate_pages() {
    let layout = GpuLayout::large_granularity();
    let granularity = layout.buffer_image_granularity;
    let sim = Sim::new(layout);
    let allocator = StandardMemoryAllocator::new_default(sim.memory_device());
    let mut buffers = Vec::new();
    let mut images = Vec::new();
    for i in 0..48u32 {
        if i % 2 == 0 {
            // SAFETY: a valid create info; destroyed below before its memory.
            let (b, a) = unsafe {
                allocator.create_buffer(
                    &buffer_info(
                        1000 + 64 * u64::from(i),
                        vk::BufferUsageFlags::STORAGE_BUFFER,
                    ),
                    &AllocationCreateInfo::default(),
                )
            }
            .unwrap();
            buffers.push((b, a));
        } else {
            // SAFETY: as above.
            let (im, a) = unsafe {
                allocator.create_image(
                    &image_info(
                        16 << (i % 3),
                        vk::Format::R8G8B8A8_UNORM,
                        vk::ImageTiling::OPTIMAL,
                    ),
                    &AllocationCreateInfo::default(),
                )
            }
            .unwrap();
            images.push((im, a));
        }
    }
    let all: Vec<_> = buffers
        .iter()
        .map(|(_, a)| (a, 1))
        .chain(images.iter().map(|(_, a)| (a, 1)))
        .collect();
    support::check_triples(&all, &sim.state, granularity);
    // The test means something only if buffers and images share a block.
    let shared = buffers
        .iter()
        .any(|(_, b)| images.iter().any(|(_, i)| i.memory() == b.memory()));
    assert!(shared, "buffers and images never shared a memory object");
    // SAFETY: unused; destroyed before their memory.
    unsafe {
        for (b, _) in &buffers {
            sim.device.destroy_buffer(*b, None);
        }
        for (i, _) in &images {
            sim.device.destroy_image(*i, None);
        }
    }
}
