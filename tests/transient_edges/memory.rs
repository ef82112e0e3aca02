//! `TransientMemory` on the driver: changing graphs round-tripped through reused memory, and
//! plans larger than their heap.

use crate::{common, support};
use ash_memory::transient::{plan, PlanInfo, TransientResource};
use ash_memory::{AllocationType, DeviceLayout};

/// A random frame of buffers: `(passes, [(size, first, last)])`.
fn random_buffer_frame(rng: &mut common::Rng) -> (u32, Vec<(u64, u32, u32)>) {
    let passes = rng.range(1, 9) as u32;
    let count = rng.range(1, 24);
    let frame = (0..count)
        .map(|_| {
            let first = rng.below(u64::from(passes)) as u32;
            let last = first + rng.below(u64::from(passes - first)) as u32;
            (rng.range(1, 40_000) & !3, first, last)
        })
        .map(|(size, first, last)| (size.max(4), first, last))
        .collect();
    (passes, frame)
}
/// Each frame a new random graph of buffers in one `TransientMemory`, from an allocator with
/// debug margins and fill patterns: the memory is reused, grown, shrunk and released from
/// frame to frame, the buffers are bound where the plan says, and a GPU round trip in pass
/// order (a fill when a buffer's lifetime starts, a copy to a readback at its end, a full
/// barrier between passes) finds every buffer's pattern intact. The memory kept is exactly
/// what the plans asked for, and everything is freed at the end.
#[test]
fn changing_graphs_round_trip_through_reused_memory_with_debug_margins() {
    use ash::vk;
    use ash_memory::transient::{TransientMemory, TransientMemoryCreateInfo, TransientPlanner};
    use ash_memory::{
        AllocationCreateInfo, DebugOptions, GenericMemoryAllocatorCreateInfo, HostAccess,
        MemoryAllocator, MemoryUsage, StandardMemoryAllocator,
    };
    use std::sync::Arc;
    let ctx = common::TestContext::new();
    let device = ctx.memory_device();
    let allocator = Arc::new(
        StandardMemoryAllocator::new(
            device.clone(),
            GenericMemoryAllocatorCreateInfo {
                debug: DebugOptions {
                    margin: 64,
                    fill_patterns: true,
                    ..Default::default()
                },
                ..Default::default()
            },
        )
        .unwrap(),
    );
    let objects_before = device.live_memory_objects();
    let info = PlanInfo::for_device(&device);
    let mut planner = TransientPlanner::new();
    let mut memory = TransientMemory::new(
        allocator.clone(),
        TransientMemoryCreateInfo {
            release_after: 1,
            ..Default::default()
        },
    );
    let readback_bytes = 24 * 40_000;
    // SAFETY: a valid create info.
    let (readback, readback_alloc) = unsafe {
        allocator.create_buffer(
            &common::buffer_info(readback_bytes, vk::BufferUsageFlags::TRANSFER_DST),
            &AllocationCreateInfo {
                usage: MemoryUsage::Auto(HostAccess::Random),
                ..Default::default()
            },
        )
    }
    .unwrap();
    let mut rng = common::Rng(0x7a5e);
    let mut changes = 0;
    for frame in 0..24u32 {
        let (passes, graph) = random_buffer_frame(&mut rng);
        let usage = vk::BufferUsageFlags::TRANSFER_SRC | vk::BufferUsageFlags::TRANSFER_DST;
        let buffers: Vec<vk::Buffer> = graph
            .iter()
            .map(|&(size, ..)| {
                // SAFETY: a valid create info.
                unsafe {
                    ctx.device
                        .create_buffer(&common::buffer_info(size, usage), None)
                }
                .unwrap()
            })
            .collect();
        let resources: Vec<TransientResource> = buffers
            .iter()
            .zip(&graph)
            .map(|(&b, &(_, first, last))| {
                // SAFETY: a valid buffer.
                let req = unsafe { ctx.device.get_buffer_memory_requirements(b) };
                TransientResource::new(
                    DeviceLayout::from_size_alignment(req.size, req.alignment).unwrap(),
                    req.memory_type_bits,
                    AllocationType::Linear,
                    first,
                    last,
                )
            })
            .collect();
        let p = planner.plan(&resources, &info).unwrap().clone();
        // SAFETY: the previous frame's buffers are destroyed and its submission waited for.
        changes += usize::from(unsafe { memory.prepare(&p) }.unwrap());
        let kept = memory.kept_memory();
        // Every planned object is kept, of its type and at least its size (larger only while
        // a previous plan needed more, for at most `release_after` plans).
        for m in p.memory() {
            assert!(
                kept.iter()
                    .any(|&(t, size)| t == m.memory_type_index && size >= m.size),
                "frame {frame}: {m:?} not in {kept:?}"
            );
        }
        assert!(
            kept.len() <= p.memory().len() + 1,
            "frame {frame}: {kept:?}"
        );
        for (r, &b) in buffers.iter().enumerate() {
            // SAFETY: a new buffer with the planned requirements, destroyed below before the
            // memory is prepared again; the passes are ordered by full barriers.
            unsafe { memory.bind_buffer(&p, r, b) }.unwrap();
        }
        let word = |r: usize| 0x0100_0000 * (frame + 1) + r as u32;
        ctx.submit(|d, cmd| {
            for pass in 0..passes {
                for (r, &(size, first, _)) in graph.iter().enumerate() {
                    if first == pass {
                        // SAFETY: recording; the buffer is bound and large enough.
                        unsafe { d.cmd_fill_buffer(cmd, buffers[r], 0, size, word(r)) };
                    }
                }
                common::TestContext::transfer_barrier(d, cmd);
                for (r, &(size, _, last)) in graph.iter().enumerate() {
                    if last == pass {
                        let region = vk::BufferCopy {
                            src_offset: 0,
                            dst_offset: r as u64 * 40_000,
                            size,
                        };
                        // SAFETY: recording; both buffers are bound and large enough.
                        unsafe { d.cmd_copy_buffer(cmd, buffers[r], readback, &[region]) };
                    }
                }
                common::TestContext::transfer_barrier(d, cmd);
            }
        });
        let mut bytes = vec![0u8; readback_bytes as usize];
        readback_alloc.read(0, &mut bytes).unwrap();
        for (r, &(size, first, last)) in graph.iter().enumerate() {
            let at = r * 40_000;
            let got = &bytes[at..at + size as usize];
            let want = word(r).to_le_bytes();
            let bad = got.chunks(4).position(|w| w != want);
            assert_eq!(
                bad, None,
                "frame {frame}: buffer {r} ({size} bytes, passes {first}..={last}) at {:?} overwritten",
                p.placements()[r]
            );
        }
        for &b in &buffers {
            // SAFETY: the submission was waited for.
            unsafe { ctx.device.destroy_buffer(b, None) };
        }
    }
    assert!(changes > 2, "memory changed {changes} times");
    drop(memory);
    // SAFETY: idle.
    unsafe { ctx.device.destroy_buffer(readback, None) };
    drop(readback_alloc);
    assert_eq!(allocator.statistics().total.allocation_count, 0);
    assert_eq!(
        device.live_memory_objects(),
        objects_before + allocator.statistics().total.block_count as u32
    );
    drop(allocator);
    assert_eq!(device.live_memory_objects(), objects_before);
    assert!(ctx.messages().is_empty(), "{:?}", ctx.messages());
}
/// A plan larger than its heap, or than what is left of it: `prepare` fails with an
/// allocation error, keeps nothing and leaks nothing; the last plan stays prepared.
#[test]
fn a_plan_larger_than_its_heap_is_a_clear_error() {
    use ash_memory::transient::{TransientError, TransientMemory, TransientMemoryCreateInfo};
    use ash_memory::StandardMemoryAllocator;
    use std::sync::Arc;
    let sim = support::Sim::new(support::GpuLayout::small_heaps(64 << 20, 64 << 20));
    {
        let device = sim.memory_device();
        let allocator = Arc::new(StandardMemoryAllocator::new_default(device.clone()));
        let info = PlanInfo::for_device(&device);
        let mib = |n: u64| DeviceLayout::from_size_alignment(n << 20, 256).unwrap();
        let small = plan(
            &[TransientResource::new(
                mib(8),
                !0,
                AllocationType::Linear,
                0,
                0,
            )],
            &info,
        )
        .unwrap();
        let too_large = plan(
            &[
                TransientResource::new(mib(40), !0, AllocationType::Linear, 0, 1),
                TransientResource::new(mib(40), !0, AllocationType::NonLinear, 1, 2),
            ],
            &info,
        )
        .unwrap();
        assert_eq!(too_large.total_size(), 80 << 20);
        let mut memory =
            TransientMemory::new(allocator.clone(), TransientMemoryCreateInfo::default());
        // SAFETY: nothing is bound to the memory in this test.
        assert!(unsafe { memory.prepare(&small) }.unwrap());
        let kept = memory.kept_memory();
        // SAFETY: as above.
        let result = unsafe { memory.prepare(&too_large) };
        assert!(
            matches!(result, Err(TransientError::Allocation(_))),
            "{result:?}"
        );
        assert_eq!(memory.kept_memory(), kept);
        assert_eq!(sim.state.live_objects(), 1);
        // The last plan prepared is still the one bound against.
        let create = common::buffer_info(8 << 20, ash::vk::BufferUsageFlags::TRANSFER_DST);
        // SAFETY: a valid create info.
        let buffer = unsafe { sim.device.create_buffer(&create, None) }.unwrap();
        // SAFETY: a new buffer, destroyed before the memory is released.
        let bound = unsafe { memory.bind_buffer(&small, 0, buffer) };
        // SAFETY: unused.
        unsafe { sim.device.destroy_buffer(buffer, None) };
        assert_eq!(bound, Ok(()));
        drop(memory);
        drop(allocator);
    }
    sim.assert_nothing_allocated();
}

/// The driver memory behind a prepared plan is exactly the plan's size, with and without the
/// allocator's debug margins (which belong to suballocations, not to a plan's memory object):
/// after growing, the replaced object is gone, and the peak is the old and new objects
/// together (the replacement is made before the old one goes, for all or nothing).
#[test]
fn the_memory_behind_a_plan_is_exactly_its_size() {
    use ash_memory::transient::{TransientMemory, TransientMemoryCreateInfo};
    use ash_memory::{DebugOptions, GenericMemoryAllocatorCreateInfo, StandardMemoryAllocator};
    use std::sync::Arc;
    for margin in [0, 256] {
        let sim = support::Sim::new(support::GpuLayout::nvidia_discrete());
        {
            let device = sim.memory_device();
            let create_info = GenericMemoryAllocatorCreateInfo {
                debug: DebugOptions {
                    margin,
                    ..Default::default()
                },
                ..Default::default()
            };
            let allocator =
                Arc::new(StandardMemoryAllocator::new(device.clone(), create_info).unwrap());
            let info = PlanInfo::for_device(&device);
            let one = |size: u64| {
                let layout = DeviceLayout::from_size_alignment(size, 1024).unwrap();
                let r = TransientResource::new(layout, !0, AllocationType::NonLinear, 0, 0);
                plan(&[r, r], &info).unwrap()
            };
            let (small, large) = (one(3 << 20), one(5 << 20));
            let mut memory =
                TransientMemory::new(allocator.clone(), TransientMemoryCreateInfo::default());
            // SAFETY: nothing is bound to the memory in this test.
            assert!(unsafe { memory.prepare(&small) }.unwrap());
            assert_eq!(sim.state.heap_used(0), 6 << 20, "margin {margin}");
            assert_eq!(sim.state.live_objects(), 1);
            sim.state.reset_peaks();
            // SAFETY: as above.
            assert!(unsafe { memory.prepare(&large) }.unwrap());
            assert_eq!(sim.state.heap_used(0), 10 << 20, "margin {margin}");
            assert_eq!(sim.state.heap_peak(0), 16 << 20, "margin {margin}");
            // Smaller again: kept, not replaced (less than twice as large).
            // SAFETY: as above.
            assert!(!unsafe { memory.prepare(&small) }.unwrap());
            assert_eq!(sim.state.heap_used(0), 10 << 20);
            assert_eq!(allocator.statistics().total.allocation_count, 1);
            drop(memory);
            assert_eq!(sim.state.heap_used(0), 0);
            drop(allocator);
        }
        sim.assert_nothing_allocated();
    }
}

/// A resource whose real requirements are larger than the size it was planned with (a plan
/// made from estimates, or the wrong handle) would overlap its neighbour while both are alive,
/// inside the memory object where the bind's own bounds check cannot see it: binding it is a
/// `LargerThanPlanned` error, for buffers and images; a resource of its planned size binds.
#[test]
fn a_resource_larger_than_planned_is_refused_before_it_overlaps_a_neighbour() {
    use ash::vk;
    use ash_memory::transient::{TransientError, TransientMemory, TransientMemoryCreateInfo};
    use ash_memory::StandardMemoryAllocator;
    use std::sync::Arc;
    let ctx = common::TestContext::new();
    let device = ctx.memory_device();
    let allocator = Arc::new(StandardMemoryAllocator::new_default(device.clone()));
    let info = PlanInfo::for_device(&device);
    let d = &ctx.device;
    let usage = vk::BufferUsageFlags::TRANSFER_DST;
    // SAFETY: valid create infos.
    let (exact, larger) = unsafe {
        (
            d.create_buffer(&common::buffer_info(64 << 10, usage), None)
                .unwrap(),
            d.create_buffer(&common::buffer_info(128 << 10, usage), None)
                .unwrap(),
        )
    };
    let image_create =
        common::image_info(128, vk::Format::R8G8B8A8_UNORM, vk::ImageTiling::OPTIMAL);
    // SAFETY: a valid create info.
    let image = unsafe { d.create_image(&image_create, None) }.unwrap();
    // SAFETY: valid handles.
    let (buffer_req, image_req) = unsafe {
        (
            d.get_buffer_memory_requirements(exact),
            d.get_image_memory_requirements(image),
        )
    };
    let planned = |size: u64, alignment: u64, bits, kind| {
        let layout = DeviceLayout::from_size_alignment(size, alignment).unwrap();
        TransientResource::new(layout, bits, kind, 0, 0)
    };
    // Three resources alive together, each planned at 64 KiB: the image's real size is 64
    // KiB plus whatever the driver adds, the larger buffer twice that.
    let resources = [
        planned(
            64 << 10,
            buffer_req.alignment,
            buffer_req.memory_type_bits,
            AllocationType::Linear,
        ),
        planned(
            64 << 10,
            image_req.alignment.max(buffer_req.alignment),
            image_req.memory_type_bits,
            AllocationType::NonLinear,
        ),
        planned(
            64 << 10,
            buffer_req.alignment,
            buffer_req.memory_type_bits,
            AllocationType::Linear,
        ),
    ];
    let p = plan(&resources, &info).unwrap();
    assert!(p.total_size() >= 3 * (64 << 10));
    let mut memory = TransientMemory::new(allocator.clone(), TransientMemoryCreateInfo::default());
    // The larger buffer goes in the lower of the two buffer places: there it still ends
    // inside the memory object (the bind's bounds check passes) but runs into a neighbour.
    let (low, high) = if p.placements()[0].offset < p.placements()[2].offset {
        (0, 2)
    } else {
        (2, 0)
    };
    // SAFETY: a valid buffer.
    let required = unsafe { d.get_buffer_memory_requirements(larger) }.size;
    assert!(p.placements()[low].offset + required <= p.total_size());
    // SAFETY: nothing is bound yet; every handle below is destroyed before the memory.
    unsafe {
        memory.prepare(&p).unwrap();
        assert_eq!(memory.bind_buffer(&p, high, exact), Ok(()));
        let result = memory.bind_buffer(&p, low, larger);
        assert_eq!(
            result,
            Err(TransientError::LargerThanPlanned {
                resource: low,
                planned: 64 << 10,
                required,
            })
        );
        let result = memory.bind_image(&p, 1, image);
        if image_req.size > 64 << 10 {
            assert_eq!(
                result,
                Err(TransientError::LargerThanPlanned {
                    resource: 1,
                    planned: 64 << 10,
                    required: image_req.size,
                })
            );
        } else {
            assert_eq!(result, Ok(()));
        }
        d.destroy_buffer(exact, None);
        d.destroy_buffer(larger, None);
        d.destroy_image(image, None);
    }
    drop(memory);
    assert_eq!(allocator.statistics().total.allocation_count, 0);
    assert!(ctx.messages().is_empty(), "{:?}", ctx.messages());
}

/// A plan over four memory types (two kept objects grown, one kept as is, one new) whose
/// `prepare` fails at every one of its driver allocations in turn: each failure leaves the
/// kept memory, the live memory objects and the allocator's books as they were, and the last
/// plan still binds; once memory is back the plan is prepared in full.
#[test]
fn prepare_is_all_or_nothing_at_every_allocation() {
    use ash::vk;
    use ash_memory::transient::{TransientError, TransientMemory, TransientMemoryCreateInfo};
    use ash_memory::{AllocationError, StandardMemoryAllocator};
    use std::sync::Arc;
    let sim = support::Sim::new(support::GpuLayout::amd_discrete_bar());
    {
        let device = sim.memory_device();
        let allocator = Arc::new(StandardMemoryAllocator::new_default(device.clone()));
        // Every type allowed: four memory objects when each resource accepts one type.
        let info = PlanInfo::default();
        let graph = |sizes: [u64; 4]| {
            let resources: Vec<_> = sizes
                .iter()
                .enumerate()
                .filter(|(_, &s)| s != 0)
                .map(|(t, &s)| {
                    let layout = DeviceLayout::from_size_alignment(s << 20, 256).unwrap();
                    TransientResource::new(layout, 1 << t, AllocationType::Linear, 0, 0)
                })
                .collect();
            plan(&resources, &info).unwrap()
        };
        let first = graph([2, 2, 2, 0]);
        // Types 0 and 1 grow, type 2 is kept as is, type 3 is new: three allocations.
        let next = graph([4, 3, 1, 1]);
        let mut memory =
            TransientMemory::new(allocator.clone(), TransientMemoryCreateInfo::default());
        // SAFETY: nothing is bound to the memory except the buffer below, destroyed at once.
        unsafe {
            assert!(memory.prepare(&first).unwrap());
            let kept = memory.kept_memory();
            let handles = {
                let mut h: Vec<_> = sim.state.inner().live.keys().copied().collect();
                h.sort();
                h
            };
            for at in 1..=3 {
                sim.state.reset_counters();
                sim.state.set_faults(support::Faults {
                    allocate_at: Some((at, vk::Result::ERROR_OUT_OF_DEVICE_MEMORY)),
                    ..Default::default()
                });
                let result = memory.prepare(&next);
                sim.state.set_faults(support::Faults::default());
                assert_eq!(
                    result,
                    Err(TransientError::Allocation(
                        AllocationError::OutOfDeviceMemory
                    )),
                    "allocation {at} failed"
                );
                assert_eq!(memory.kept_memory(), kept, "allocation {at} failed");
                let mut live: Vec<_> = sim.state.inner().live.keys().copied().collect();
                live.sort();
                assert_eq!(live, handles, "allocation {at} failed");
                assert_eq!(allocator.statistics().total.allocation_count, 3);
                let create = common::buffer_info(2 << 20, vk::BufferUsageFlags::TRANSFER_DST);
                let buffer = sim.device.create_buffer(&create, None).unwrap();
                let bound = memory.bind_buffer(&first, 0, buffer);
                sim.device.destroy_buffer(buffer, None);
                assert_eq!(bound, Ok(()), "allocation {at} failed");
            }
            assert_eq!(
                sim.state.allocate_calls(),
                3,
                "three allocations, the last failed"
            );
            assert!(memory.prepare(&next).unwrap());
            let mut kept = memory.kept_memory();
            kept.sort();
            assert_eq!(
                kept,
                vec![(0, 4 << 20), (1, 3 << 20), (2, 2 << 20), (3, 1 << 20)]
            );
        }
        drop(memory);
        drop(allocator);
    }
    sim.assert_nothing_allocated();
}
