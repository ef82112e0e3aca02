//! Consistency after failures: every `vkAllocateMemory` (and `vkMapMemory`) an operation makes
//! fails in turn, once or for good, on the simulated driver (validation on). After each
//! failure the allocator must have returned a clear error or served the request through a
//! fallback, and its books must match the driver's: statistics (allocations, memory objects,
//! reserved bytes), the leak report, the crate's heap usage and budget, and the mapped objects
//! equal what the live allocations hold; every live allocation keeps its data; and once memory
//! is back the same operation succeeds. Dropping everything leaves nothing allocated.

mod common;
mod support;

use ash::vk;
use ash_memory::*;
use std::sync::Arc;
use support::{buffer_info, fill, image_info, verify, Faults, GpuLayout, Sim, KIB, MIB};

/// What an operation made: allocations (with the pattern written into the host-visible ones)
/// and the resources bound to some of them, destroyed before their memory.
#[derive(Default)]
struct Made {
    allocs: Vec<(MemoryAlloc, Option<u64>)>,
    buffers: Vec<vk::Buffer>,
    images: Vec<vk::Image>,
    pools: Vec<MemoryPool<FreeListAllocator>>,
}

impl Made {
    fn push(&mut self, mut alloc: MemoryAlloc, seed: u64) {
        let check = alloc.mapped_ptr().is_some().then(|| {
            let len = alloc.size().min(4 * KIB);
            fill(&mut alloc, seed, len);
            seed
        });
        self.allocs.push((alloc, check));
    }

    fn verify(&self, what: &str) {
        for (a, seed) in &self.allocs {
            if let Some(seed) = seed {
                verify(a, *seed, a.size().min(4 * KIB), what);
            }
        }
    }

    fn destroy(self, device: &ash::Device) {
        for b in self.buffers {
            // SAFETY: unused; destroyed before its memory.
            unsafe { device.destroy_buffer(b, None) };
        }
        for i in self.images {
            // SAFETY: as above.
            unsafe { device.destroy_image(i, None) };
        }
        drop(self.allocs);
        drop(self.pools);
    }
}

type Op = fn(&Sim, &StandardMemoryAllocator, &mut Made) -> Result<(), AllocationError>;

fn reqs(size: u64, bits: u32, prefers_dedicated: bool) -> AllocationRequirements {
    AllocationRequirements {
        layout: DeviceLayout::from_size_alignment(size, 256).unwrap(),
        memory_type_bits: bits,
        prefers_dedicated_allocation: prefers_dedicated,
        requires_dedicated_allocation: false,
    }
}

fn usage(usage: MemoryUsage) -> AllocationCreateInfo {
    AllocationCreateInfo {
        usage,
        ..Default::default()
    }
}

fn raw(
    a: &dyn MemoryAllocator,
    made: &mut Made,
    r: AllocationRequirements,
    info: &AllocationCreateInfo,
) -> Result<(), AllocationError> {
    let alloc = a.allocate(r, AllocationType::Linear, info, None)?;
    made.push(alloc, 0xA11C + made.allocs.len() as u64);
    Ok(())
}

/// The operations probed, by name.
fn operations() -> Vec<(&'static str, Op)> {
    vec![
        ("a first block of a memory type", |_, a, m| {
            raw(
                a,
                m,
                reqs(64 * KIB, 0b0111, false),
                &usage(MemoryUsage::Download),
            )
        }),
        ("a dedicated allocation the driver prefers", |_, a, m| {
            raw(a, m, reqs(MIB, 0b0111, true), &usage(MemoryUsage::Upload))
        }),
        ("an allocation larger than half a block", |_, a, m| {
            raw(
                a,
                m,
                reqs(40 * MIB, 0b0010, false),
                &usage(MemoryUsage::Upload),
            )
        }),
        ("an always-dedicated allocation", |_, a, m| {
            let info = AllocationCreateInfo {
                usage: MemoryUsage::Upload,
                allocate_preference: MemoryAllocatePreference::AlwaysAllocate,
                ..Default::default()
            };
            raw(a, m, reqs(256 * KIB, 0b0111, false), &info)
        }),
        ("an explicit dedicated allocation", |_, a, m| {
            let alloc = a.allocate_dedicated(1, 512 * KIB, None, &usage(MemoryUsage::Upload))?;
            m.push(alloc, 77);
            Ok(())
        }),
        ("dedicated pages", |_, a, m| {
            let info = AllocationCreateInfo {
                usage: MemoryUsage::Upload,
                allocate_preference: MemoryAllocatePreference::AlwaysAllocate,
                ..Default::default()
            };
            let pages = a.allocate_pages(
                reqs(64 * KIB, 0b0010, false),
                AllocationType::Linear,
                &info,
                5,
            )?;
            for (i, p) in pages.into_iter().enumerate() {
                m.push(p, 900 + i as u64);
            }
            Ok(())
        }),
        ("pages in new blocks", |_, a, m| {
            let pages = a.allocate_pages(
                reqs(24 * MIB, 0b0001, false),
                AllocationType::Linear,
                &usage(MemoryUsage::DeviceOnly),
                6,
            )?;
            for (i, p) in pages.into_iter().enumerate() {
                m.push(p, 1900 + i as u64);
            }
            Ok(())
        }),
        ("a pool with minimum blocks", |_, a, m| {
            let pool = a.create_pool::<FreeListAllocator>(&PoolCreateInfo {
                memory_type: PoolMemoryType::Index(2),
                block_size: MIB,
                min_block_count: 3,
                ..Default::default()
            })?;
            m.pools.push(pool.clone());
            let alloc = pool.allocate(
                reqs(4 * KIB, 0b0100, false),
                AllocationType::Linear,
                &usage(MemoryUsage::Download),
                None,
            )?;
            m.push(alloc, 31);
            Ok(())
        }),
        ("allocations in a pool that grows", |_, a, m| {
            let pool = a.create_pool::<FreeListAllocator>(&PoolCreateInfo {
                memory_type: PoolMemoryType::Index(1),
                block_size: MIB,
                max_block_count: 4,
                ..Default::default()
            })?;
            // Kept before its allocations, so that it outlives them however far this gets.
            m.pools.push(pool.clone());
            for i in 0..3 {
                let alloc = pool.allocate(
                    reqs(700 * KIB, 0b0010, false),
                    AllocationType::Linear,
                    &usage(MemoryUsage::Upload),
                    None,
                )?;
                m.push(alloc, 40 + i);
            }
            Ok(())
        }),
        ("a new block while an empty one is kept", |_, a, m| {
            let info = usage(MemoryUsage::Download);
            // A first block of the type, emptied again: kept for reuse.
            drop(a.allocate(
                reqs(3 * MIB, 0b100, false),
                AllocationType::Linear,
                &info,
                None,
            )?);
            raw(a, m, reqs(20 * MIB, 0b100, false), &info)?;
            raw(a, m, reqs(20 * MIB, 0b100, false), &info)
        }),
        ("a buffer through create_buffer", |_, a, m| {
            let info = buffer_info(96 * KIB, vk::BufferUsageFlags::TRANSFER_SRC);
            // SAFETY: a valid create info; the buffer is destroyed before its memory.
            let (b, alloc) = unsafe { a.create_buffer(&info, &usage(MemoryUsage::Download)) }?;
            m.buffers.push(b);
            m.push(alloc, 55);
            Ok(())
        }),
        ("a dedicated image through create_image", |_, a, m| {
            let info = image_info(64, vk::Format::R8G8B8A8_UNORM, vk::ImageTiling::OPTIMAL);
            // SAFETY: a valid create info; the image is destroyed before its memory.
            let (i, alloc) = unsafe {
                a.create_image(
                    &info,
                    &AllocationCreateInfo {
                        allocate_preference: MemoryAllocatePreference::AlwaysAllocate,
                        ..Default::default()
                    },
                )
            }?;
            m.images.push(i);
            m.push(alloc, 56);
            Ok(())
        }),
    ]
}

/// What the allocator holds before each operation: allocations in blocks of two memory types,
/// patterned, and one dedicated allocation.
fn setup(a: &StandardMemoryAllocator, made: &mut Made) {
    for i in 0..4 {
        raw(
            a,
            made,
            reqs(8 * KIB * (i + 1), 0b0111, false),
            &usage(MemoryUsage::Upload),
        )
        .unwrap();
    }
    raw(
        a,
        made,
        reqs(MIB, 0b0111, false),
        &usage(MemoryUsage::DeviceOnly),
    )
    .unwrap();
    raw(
        a,
        made,
        reqs(64 * KIB, 0b0111, true),
        &usage(MemoryUsage::Upload),
    )
    .unwrap();
}

/// Checks the allocator's books against the simulated driver and the live allocations.
fn books_balance(
    sim: &Sim,
    device: &MemoryDevice,
    a: &StandardMemoryAllocator,
    live: &Made,
    what: &str,
) {
    let stats = a.statistics();
    let allocs: Vec<&MemoryAlloc> = live.allocs.iter().map(|(a, _)| a).collect();
    assert_eq!(
        stats.total.allocation_count,
        allocs.len() as u64,
        "{what}: allocations counted"
    );
    let asked: u64 = allocs.iter().map(|a| a.size()).sum();
    if a.create_info().debug.margin == 0 {
        assert_eq!(
            stats.total.allocations.total, asked,
            "{what}: allocated bytes"
        );
    } else {
        // Margins count with the ranges that hold them; no damaged margin.
        assert!(
            stats.total.allocations.total >= asked,
            "{what}: allocated bytes"
        );
        a.check_corruption(u32::MAX)
            .unwrap_or_else(|e| panic!("{what}: corruption check: {e}"));
    }
    // The driver's side, taken before the crate is asked anything (a budget query goes
    // through the simulated driver, which takes the same lock).
    let (objects, reserved, heap_used, mapped) = {
        let inner = sim.state.inner();
        let mapped: Vec<(vk::DeviceMemory, u32, bool)> = inner
            .live
            .iter()
            .map(|(memory, m)| (*memory, m.memory_type, m.mapped))
            .collect();
        (
            inner.live.len() as u64,
            inner.live.values().map(|m| m.size).sum::<u64>(),
            inner.heap_used.clone(),
            mapped,
        )
    };
    assert_eq!(
        stats.total.block_count + stats.total.dedicated_count,
        objects,
        "{what}: memory objects in the statistics vs the driver's"
    );
    assert_eq!(
        stats.total.reserved_bytes, reserved,
        "{what}: reserved bytes"
    );
    assert_eq!(
        device.live_memory_objects() as u64,
        objects,
        "{what}: live objects"
    );
    assert_eq!(device.live_memory_bytes(), reserved, "{what}: live bytes");
    let budgets = device.heap_budgets();
    for (h, used) in heap_used.iter().enumerate() {
        assert_eq!(
            device.heap_usage_by_crate(h as u32),
            *used,
            "{what}: heap {h} usage"
        );
        assert_eq!(
            budgets[h].crate_usage, *used,
            "{what}: heap {h} budget usage"
        );
        if budgets[h].from_extension {
            // The simulated extension reports the driver's live bytes (no other usage set).
            assert_eq!(
                budgets[h].usage, *used,
                "{what}: heap {h} usage by the extension"
            );
        }
    }
    let host_visible = |t: u32| {
        device
            .memory_properties()
            .memory_type(t)
            .unwrap()
            .property_flags
            .contains(vk::MemoryPropertyFlags::HOST_VISIBLE)
    };
    for (memory, memory_type, is_mapped) in mapped {
        assert_eq!(
            is_mapped,
            host_visible(memory_type),
            "{what}: mapping of {memory:?}"
        );
    }
    for alloc in &allocs {
        assert!(
            sim.state.inner().live.contains_key(&alloc.memory()),
            "{what}: an allocation in freed memory"
        );
    }
    assert_eq!(a.report_leaks().len(), allocs.len(), "{what}: leak report");
    live.verify(what);
}

/// Whether `e` is the clear error of a driver that failed with `result`.
fn clear_error(e: &AllocationError, result: vk::Result) -> bool {
    match result {
        vk::Result::ERROR_OUT_OF_DEVICE_MEMORY => *e == AllocationError::OutOfDeviceMemory,
        vk::Result::ERROR_OUT_OF_HOST_MEMORY => *e == AllocationError::OutOfHostMemory,
        vk::Result::ERROR_TOO_MANY_OBJECTS => matches!(e, AllocationError::TooManyObjects { .. }),
        vk::Result::ERROR_MEMORY_MAP_FAILED => *e == AllocationError::MapFailed(result),
        _ => false,
    }
}

/// Runs `op` on a fresh allocator holding the setup's allocations, with `faults` set during
/// the operation only. Returns the operation's result and how many allocate and map calls it
/// made; checks the books after the operation, after running it again with memory back, and
/// after dropping everything.
fn run(sim: &Sim, name: &str, op: Op, faults: Faults) -> (Result<(), AllocationError>, u64, u64) {
    run_with(sim, &Default::default(), name, op, faults)
}

/// [`run`] on an allocator made with `config`.
fn run_with(
    sim: &Sim,
    config: &GenericMemoryAllocatorCreateInfo,
    name: &str,
    op: Op,
    faults: Faults,
) -> (Result<(), AllocationError>, u64, u64) {
    // Every optional feature the simulated device claims (none, or all: priorities, device
    // addresses, export types and the budget extension in the chains).
    let device = sim.memory_device_claimed();
    let a = StandardMemoryAllocator::new(device.clone(), config.clone()).unwrap();
    let mut made = Made::default();
    setup(&a, &mut made);
    sim.state.reset_counters();
    sim.state.set_faults(faults);
    let result = op(sim, &a, &mut made);
    sim.state.set_faults(Faults::default());
    let calls = sim.state.allocate_calls();
    let maps = sim
        .state
        .map_calls
        .load(std::sync::atomic::Ordering::SeqCst);
    let what = format!("{name} with {faults:?}");
    books_balance(
        sim,
        &device,
        &a,
        &made,
        &format!("{what}, after the operation"),
    );
    // Memory is back: the operation succeeds.
    op(sim, &a, &mut made).unwrap_or_else(|e| panic!("{what}: once memory is back: {e}"));
    books_balance(
        sim,
        &device,
        &a,
        &made,
        &format!("{what}, once memory is back"),
    );
    made.destroy(&sim.device);
    drop(a);
    assert_eq!(device.live_memory_objects(), 0, "{what}");
    sim.assert_nothing_allocated();
    (result, calls, maps)
}

#[test]
fn every_allocate_call_of_every_operation_can_fail() {
    every_allocate_call_can_fail(&Sim::new(GpuLayout::small_heaps(512 * MIB, 512 * MIB)));
}

#[test]
fn every_allocate_call_can_fail_with_every_feature_claimed() {
    every_allocate_call_can_fail(&Sim::with_features(
        GpuLayout::small_heaps(512 * MIB, 512 * MIB),
        support::SimFeatures::all(),
    ));
}

fn every_allocate_call_can_fail(sim: &Sim) {
    for (name, op) in operations() {
        let (baseline, k, _) = run(sim, name, op, Faults::default());
        baseline.unwrap_or_else(|e| panic!("{name}: baseline: {e}"));
        assert!(k >= 1, "{name} makes no vkAllocateMemory call");
        println!("{name}: {k} vkAllocateMemory calls");
        for result in [
            vk::Result::ERROR_OUT_OF_DEVICE_MEMORY,
            vk::Result::ERROR_OUT_OF_HOST_MEMORY,
            vk::Result::ERROR_TOO_MANY_OBJECTS,
        ] {
            for at in 1..=k {
                for more in [0, 1000] {
                    let faults = Faults {
                        allocate_at: Some((at, result)),
                        allocate_more: more,
                        ..Default::default()
                    };
                    let (r, _, _) = run(sim, name, op, faults);
                    // Served through a fallback (another memory type, say), or a clear error.
                    if let Err(e) = r {
                        assert!(
                            clear_error(&e, result),
                            "{name} {faults:?}: unclear error {e:?}"
                        );
                    }
                }
            }
        }
    }
}

/// The allocator's other configurations (debug margins with fill patterns; whole blocks of a
/// fixed size) through every failing call, with the driver out of device memory.
#[test]
fn every_allocate_call_can_fail_in_other_configurations() {
    let sim = Sim::new(GpuLayout::small_heaps(512 * MIB, 512 * MIB));
    let configs = [
        GenericMemoryAllocatorCreateInfo {
            debug: DebugOptions {
                margin: 256,
                fill_patterns: true,
                ..Default::default()
            },
            ..Default::default()
        },
        GenericMemoryAllocatorCreateInfo {
            block_arenas: Some(1),
            grow_blocks: false,
            dedicated_allocation: false,
            ..Default::default()
        },
    ];
    for config in &configs {
        for (name, op) in operations() {
            let (baseline, k, _) = run_with(&sim, config, name, op, Faults::default());
            baseline.unwrap_or_else(|e| panic!("{name}: baseline: {e}"));
            for at in 1..=k {
                for more in [0, 1000] {
                    let faults = Faults {
                        allocate_at: Some((at, vk::Result::ERROR_OUT_OF_DEVICE_MEMORY)),
                        allocate_more: more,
                        ..Default::default()
                    };
                    if let (Err(e), _, _) = run_with(&sim, config, name, op, faults) {
                        assert_eq!(e, AllocationError::OutOfDeviceMemory, "{name} {faults:?}");
                    }
                }
            }
        }
    }
}

#[test]
fn every_map_call_of_every_operation_can_fail() {
    let sim = Sim::new(GpuLayout::small_heaps(512 * MIB, 512 * MIB));
    let mut probed = 0;
    for (name, op) in operations() {
        let (_, _, m) = run(&sim, name, op, Faults::default());
        for at in 1..=m {
            let faults = Faults {
                map_at: Some(at),
                ..Default::default()
            };
            if let (Err(e), _, _) = run(&sim, name, op, faults) {
                assert!(
                    clear_error(&e, vk::Result::ERROR_MEMORY_MAP_FAILED),
                    "{name} {faults:?}: unclear error {e:?}"
                );
            }
            probed += 1;
        }
    }
    assert!(probed >= 5, "only {probed} maps probed");
}

/// A transient plan's resources: one of `size` bytes in memory type 0 and, when `bar` is
/// some, one of that many bytes in the BAR type (2), alive together.
fn transient_plan(device: &MemoryDevice, size: u64, bar: Option<u64>) -> TransientPlan {
    use ash_memory::transient::{plan, PlanInfo};
    let layout = |size| DeviceLayout::from_size_alignment(size, 256).unwrap();
    let mut resources = vec![TransientResource::new(
        layout(size),
        0b001,
        AllocationType::Linear,
        0,
        1,
    )];
    if let Some(bar) = bar {
        resources.push(TransientResource::new(
            layout(bar),
            0b100,
            AllocationType::Linear,
            0,
            1,
        ));
    }
    plan(&resources, &PlanInfo::for_device(device)).unwrap()
}

#[test]
fn a_failed_transient_prepare_keeps_the_memory_of_the_last_plan() {
    let sim = Sim::new(GpuLayout::amd_discrete_bar());
    {
        let device = sim.memory_device();
        let allocator = Arc::new(StandardMemoryAllocator::new_default(device.clone()));
        let mut memory = TransientMemory::new(
            allocator.clone(),
            TransientMemoryCreateInfo {
                release_after: 0,
                ..Default::default()
            },
        );
        // Plan A: 4 MiB of type 0. Plan B shrinks type 0 to 1 MiB (release_after 0) and
        // needs the BAR type too; plan C grows type 0 to 8 MiB and needs the BAR type.
        let a = transient_plan(&device, 4 * MIB, None);
        let b = transient_plan(&device, MIB, Some(MIB));
        let c = transient_plan(&device, 8 * MIB, Some(MIB));
        // SAFETY: nothing is bound to the memory in this test.
        assert!(unsafe { memory.prepare(&a) }.unwrap());
        for next in [&b, &c] {
            let kept = memory.kept_memory();
            let handles = sim.state.inner().live.keys().copied().collect::<Vec<_>>();
            for at in 1..=2 {
                sim.state.reset_counters();
                sim.state.set_faults(Faults {
                    allocate_at: Some((at, vk::Result::ERROR_OUT_OF_DEVICE_MEMORY)),
                    ..Default::default()
                });
                // SAFETY: as above.
                let result = unsafe { memory.prepare(next) };
                sim.state.set_faults(Faults::default());
                assert_eq!(
                    result,
                    Err(TransientError::Allocation(
                        AllocationError::OutOfDeviceMemory
                    )),
                    "call {at} failed"
                );
                // All or nothing: the memory of plan A, as it was.
                assert_eq!(memory.kept_memory(), kept, "call {at} failed");
                let live = sim.state.inner().live.keys().copied().collect::<Vec<_>>();
                assert_eq!(live, handles, "call {at} failed");
                assert_eq!(allocator.statistics().total.allocation_count, 1);
                // Plan A is still the one prepared, and its resources fit its memory.
                let info = buffer_info(4 * MIB, vk::BufferUsageFlags::TRANSFER_DST);
                // SAFETY: a valid create info.
                let buffer = unsafe { sim.device.create_buffer(&info, None) }.unwrap();
                // SAFETY: a new buffer, destroyed before the memory is released.
                let bound = unsafe { memory.bind_buffer(&a, 0, buffer) };
                // SAFETY: unused.
                unsafe { sim.device.destroy_buffer(buffer, None) };
                assert_eq!(bound, Ok(()), "call {at} failed");
            }
            // Memory is back: the plan is prepared.
            // SAFETY: nothing is bound to the memory any more.
            assert!(unsafe { memory.prepare(next) }.unwrap());
            assert_eq!(memory.kept_memory().len(), 2);
            // SAFETY: as above.
            assert!(unsafe { memory.prepare(&a) }.unwrap());
            // SAFETY: as above.
            unsafe { memory.trim() };
            let back = memory.kept_memory();
            assert!(
                back.len() == 1 && back[0].0 == 0 && back[0].1 >= 4 * MIB,
                "{back:?}"
            );
        }
        drop(memory);
        drop(allocator);
    }
    sim.assert_nothing_allocated();
}

/// Threads that all fail at once (the driver is out of memory for every call), then all
/// succeed once memory is back; the books balance after each round.
#[test]
fn threads_failing_together_leave_balanced_books() {
    let sim = Sim::new(GpuLayout::small_heaps(512 * MIB, 512 * MIB));
    let device = sim.memory_device();
    let a = StandardMemoryAllocator::new_default(device.clone());
    let mut held = Made::default();
    setup(&a, &mut held);
    sim.state
        .set_allocate_delay(std::time::Duration::from_millis(2));
    let ops = operations();
    for round in 0..2 {
        let failing = round == 0;
        sim.state.reset_counters();
        if failing {
            sim.state.set_faults(Faults {
                allocate_at: Some((1, vk::Result::ERROR_OUT_OF_DEVICE_MEMORY)),
                allocate_more: u64::MAX / 2,
                ..Default::default()
            });
        }
        let results: Vec<(Made, Result<(), AllocationError>)> = std::thread::scope(|s| {
            let threads: Vec<_> = ops
                .iter()
                .map(|(_, op)| {
                    let (sim, a) = (&sim, &a);
                    s.spawn(move || {
                        let mut made = Made::default();
                        let r = op(sim, a, &mut made);
                        (made, r)
                    })
                })
                .collect();
            threads.into_iter().map(|t| t.join().unwrap()).collect()
        });
        sim.state.set_faults(Faults::default());
        for ((name, _), (made, r)) in ops.iter().zip(results) {
            if let Err(e) = r {
                assert!(failing, "{name} failed with memory back: {e}");
                assert_eq!(e, AllocationError::OutOfDeviceMemory, "{name}");
            }
            // What a failed operation made before failing stays alive too, as it would in
            // an application.
            held.allocs.extend(made.allocs);
            held.buffers.extend(made.buffers);
            held.images.extend(made.images);
            held.pools.extend(made.pools);
        }
        books_balance(&sim, &device, &a, &held, &format!("round {round}"));
    }
    sim.state.set_allocate_delay(std::time::Duration::ZERO);
    held.destroy(&sim.device);
    drop(a);
    sim.assert_nothing_allocated();
}

/// A heap size limit is reached exactly: an allocation of the bytes left succeeds, one byte
/// more fails before the driver, and the books balance on both sides of the boundary.
#[test]
fn a_heap_size_limit_holds_exactly_at_the_boundary() {
    let sim = Sim::new(GpuLayout::small_heaps(512 * MIB, 512 * MIB));
    {
        let limit = 24 * MIB;
        // SAFETY: as in `Sim::memory_device_with`; no feature claimed.
        let device = unsafe {
            MemoryDevice::new_with_heap_size_limits(
                sim.entry(),
                &sim.instance,
                sim.ctx.physical_device,
                sim.device.clone(),
                common::API_VERSION,
                Default::default(),
                &[None, Some(limit)],
            )
        }
        .unwrap();
        let a = StandardMemoryAllocator::new_default(device.clone());
        let mut held = Made::default();
        raw(
            &a,
            &mut held,
            reqs(64 * KIB, 0b010, false),
            &usage(MemoryUsage::Upload),
        )
        .unwrap();
        let left = limit - device.heap_usage_by_crate(1);
        assert!(left > MIB, "{left} bytes left");
        let calls = sim.state.allocate_calls();
        let over = a.allocate_dedicated(1, left + 1, None, &usage(MemoryUsage::Upload));
        assert_eq!(over.err(), Some(AllocationError::OutOfDeviceMemory));
        assert_eq!(
            sim.state.allocate_calls(),
            calls,
            "refused before the driver"
        );
        books_balance(&sim, &device, &a, &held, "one byte past the limit");
        let exact = a.allocate_dedicated(1, left, None, &usage(MemoryUsage::Upload));
        held.push(exact.unwrap(), 5);
        assert_eq!(device.heap_usage_by_crate(1), limit);
        books_balance(&sim, &device, &a, &held, "exactly at the limit");
        // Full: a block request fails too, with nothing left behind.
        let more = a.allocate(
            reqs(256, 0b010, false),
            AllocationType::Linear,
            &usage(MemoryUsage::Upload),
            None,
        );
        if let Ok(alloc) = more {
            // Served from the existing block.
            held.push(alloc, 6);
        }
        let big = a.allocate(
            reqs(MIB, 0b010, false),
            AllocationType::Linear,
            &AllocationCreateInfo {
                usage: MemoryUsage::Upload,
                allocate_preference: MemoryAllocatePreference::AlwaysAllocate,
                ..Default::default()
            },
            None,
        );
        assert_eq!(big.err(), Some(AllocationError::OutOfDeviceMemory));
        books_balance(&sim, &device, &a, &held, "past a full limit");
        // Freed memory is usable again, up to the limit exactly.
        let (dedicated, _) = held.allocs.remove(1);
        drop(dedicated);
        held.push(
            a.allocate_dedicated(1, left, None, &usage(MemoryUsage::Upload))
                .unwrap(),
            7,
        );
        books_balance(&sim, &device, &a, &held, "at the limit again");
        held.destroy(&sim.device);
        drop(a);
        assert_eq!(device.heap_usage_by_crate(1), 0);
    }
    sim.assert_nothing_allocated();
}

/// Host memory aligned for an import, freed on drop.
struct HostBlock {
    ptr: std::ptr::NonNull<u8>,
    layout: std::alloc::Layout,
}

impl HostBlock {
    fn for_import(device: &MemoryDevice) -> Self {
        let alignment =
            ash_memory::external_memory::min_imported_host_pointer_alignment(device).unwrap();
        let alignment = alignment.as_devicesize() as usize;
        let layout =
            std::alloc::Layout::from_size_align(alignment.max(64 * KIB as usize), alignment)
                .unwrap();
        // SAFETY: a non-zero size.
        let ptr = std::ptr::NonNull::new(unsafe { std::alloc::alloc_zeroed(layout) }).unwrap();
        Self { ptr, layout }
    }
}

impl Drop for HostBlock {
    fn drop(&mut self) {
        // SAFETY: allocated with this layout.
        unsafe { std::alloc::dealloc(self.ptr.as_ptr(), self.layout) };
    }
}

/// An import into a heap whose limit is reached while the allocator keeps an empty block
/// there: as for every other allocation, the kept block gives its memory back, and the
/// import succeeds (kept memory never makes an allocation fail).
#[test]
fn an_import_gets_the_memory_that_an_empty_block_kept() {
    let ctx = common::TestContext::with_device_extensions(&[
        ash::khr::external_memory_fd::NAME,
        ash::ext::external_memory_host::NAME,
    ]);
    {
        let features = EnabledMemoryFeatures {
            external_memory_fd: true,
            external_memory_host: true,
            ..Default::default()
        };
        let limit = 16 * MIB;
        // SAFETY: the context's handles, which outlive every allocator of the test; the
        // claimed features are the extensions the context enabled.
        let device = unsafe {
            MemoryDevice::new_with_heap_size_limits(
                &ctx.entry,
                &ctx.instance,
                ctx.physical_device,
                ctx.device.clone(),
                common::API_VERSION,
                features,
                &[Some(limit)],
            )
        }
        .unwrap();
        let host = HostBlock::for_import(&device);
        let size = host.layout.size() as u64;
        // SAFETY: a live host allocation of `size` bytes that outlives every import below.
        let import = unsafe { ExternalMemoryImport::host_pointer(host.ptr.cast()) };
        let memory_type = import.memory_type_bits(&device).unwrap().trailing_zeros();
        let heap = device.memory_properties().memory_types[memory_type as usize].heap_index;
        assert_eq!(heap, 0);
        let a = StandardMemoryAllocator::new_default(device.clone());
        let r = reqs(64 * KIB, 1 << memory_type, false);
        let block = || {
            drop(
                a.allocate(r, AllocationType::Linear, &Default::default(), None)
                    .unwrap(),
            );
            assert_eq!(a.block_count(memory_type), 1, "the empty block is kept");
        };
        for import_it in [false, true] {
            // An empty block kept for reuse, and the rest of the heap taken. (A kept block
            // gives way to a dedicated allocation of its memory type that would raise the
            // type's peak, as to a new block: then it is made again, beside the filler.)
            block();
            let left = limit - device.heap_usage_by_crate(heap);
            let filler = a
                .allocate_dedicated(memory_type, left, None, &Default::default())
                .unwrap();
            if a.block_count(memory_type) == 0 {
                block();
            }
            assert_eq!(device.heap_usage_by_crate(heap), limit);
            let made = if import_it {
                a.import_memory(import, memory_type, size, None, &Default::default())
            } else {
                a.allocate_dedicated(memory_type, size, None, &Default::default())
            };
            let made = made.unwrap_or_else(|e| {
                panic!("import {import_it}: failed with an empty block kept: {e}")
            });
            assert_eq!(a.block_count(memory_type), 0, "the kept block was released");
            assert!(device.heap_usage_by_crate(heap) <= limit);
            let stats = a.statistics().total;
            assert_eq!(stats.dedicated_count, 2);
            assert_eq!(stats.reserved_bytes, device.live_memory_bytes());
            drop((made, filler));
        }
        drop(a);
        assert_eq!(device.live_memory_objects(), 0);
        drop(host);
    }
}

/// Allocations that fail while a defragmentation pass holds blocks aside (the driver out of
/// memory for every call, the pool full): clear errors, nothing left behind, and the pass,
/// which allocates no memory itself, moves every allocation with its data.
#[test]
fn allocations_failing_during_a_defragmentation_pass_leave_balanced_books() {
    let sim = Sim::new(GpuLayout::small_heaps(512 * MIB, 512 * MIB));
    let device = sim.memory_device();
    let a = StandardMemoryAllocator::new_default(device.clone());
    let pool = support::defrag::pool(&a, 4);
    let mut live = Made::default();
    live.pools.push(pool.clone());
    let r = support::defrag::reqs(&device, 100 * KIB);
    let info = support::defrag::upload();
    for i in 0..36 {
        let alloc = pool
            .allocate(r, AllocationType::Linear, &info, None)
            .unwrap();
        live.push(alloc, 3000 + i);
    }
    // Every second one freed: four sparse blocks.
    let mut i = 0;
    live.allocs.retain(|_| {
        i += 1;
        i % 2 == 0
    });
    books_balance(&sim, &device, &a, &live, "before the defragmentation");
    let mut defrag = pool.defragmentation(&Default::default());
    let ids: Vec<_> = live
        .allocs
        .iter_mut()
        .map(|(alloc, _)| defrag.add(alloc, support::defrag::align()).unwrap())
        .collect();
    sim.state.reset_counters();
    sim.state.set_faults(Faults {
        allocate_at: Some((1, vk::Result::ERROR_OUT_OF_DEVICE_MEMORY)),
        allocate_more: u64::MAX / 2,
        ..Default::default()
    });
    let mut pass = defrag.next_pass().expect("sparse blocks to empty");
    // The pool cannot grow (full), the allocator cannot get memory.
    let pages = pool.allocate_pages(
        support::defrag::reqs(&device, 900 * KIB),
        AllocationType::Linear,
        &info,
        3,
    );
    assert!(
        matches!(pages, Err(AllocationError::PoolFull { max_blocks: 4 })),
        "{pages:?}"
    );
    let elsewhere = a.allocate(
        reqs(64 * KIB, 0b100, false),
        AllocationType::Linear,
        &usage(MemoryUsage::Download),
        None,
    );
    assert_eq!(elsewhere.err(), Some(AllocationError::OutOfDeviceMemory));
    let calls = sim.state.allocate_calls();
    for index in support::defrag::open(&pass) {
        let id = pass.get(index).unwrap().id();
        let at = ids.iter().position(|&i| i == id).unwrap();
        support::defrag::copy_and_complete(&mut pass, index, &mut live.allocs[at].0).unwrap();
    }
    pass.end();
    while let Some(mut pass) = defrag.next_pass() {
        for index in support::defrag::open(&pass) {
            let id = pass.get(index).unwrap().id();
            let at = ids.iter().position(|&i| i == id).unwrap();
            support::defrag::copy_and_complete(&mut pass, index, &mut live.allocs[at].0).unwrap();
        }
        pass.end();
    }
    let stats = defrag.finish();
    assert_eq!(
        sim.state.allocate_calls(),
        calls,
        "the passes allocate nothing"
    );
    sim.state.set_faults(Faults::default());
    assert!(stats.memory_objects_freed > 0, "{stats:?}");
    books_balance(&sim, &device, &a, &live, "after the defragmentation");
    // Memory is back, and the pool has room again.
    let pages = pool
        .allocate_pages(
            support::defrag::reqs(&device, 900 * KIB),
            AllocationType::Linear,
            &info,
            2,
        )
        .unwrap();
    for (i, p) in pages.into_iter().enumerate() {
        live.push(p, 4000 + i as u64);
    }
    books_balance(&sim, &device, &a, &live, "once memory is back");
    live.destroy(&sim.device);
    drop(pool);
    drop(a);
    sim.assert_nothing_allocated();
}

/// A custom pool's dedicated allocation in a full heap while the pool keeps an empty block:
/// the kept block gives its memory back (kept memory never makes an allocation fail).
#[test]
fn a_pool_dedicated_allocation_gets_the_memory_of_the_pools_kept_block() {
    let sim = Sim::new(GpuLayout::small_heaps(512 * MIB, 32 * MIB));
    {
        let device = sim.memory_device();
        let a = StandardMemoryAllocator::new_default(device.clone());
        let pool = a
            .create_pool::<FreeListAllocator>(&PoolCreateInfo {
                memory_type: PoolMemoryType::Index(1),
                block_size: 4 * MIB,
                ..Default::default()
            })
            .unwrap();
        let info = usage(MemoryUsage::Upload);
        drop(
            pool.allocate(reqs(MIB, 0b010, false), AllocationType::Linear, &info, None)
                .unwrap(),
        );
        assert_eq!(pool.block_count(), 1, "the empty block is kept");
        // All of the heap but 2 MiB taken, with the pool's 4 MiB kept block.
        let filler = a.allocate_dedicated(1, 26 * MIB, None, &info).unwrap();
        assert_eq!(sim.state.heap_used(1), 30 * MIB);
        let always = AllocationCreateInfo {
            allocate_preference: MemoryAllocatePreference::AlwaysAllocate,
            ..info.clone()
        };
        let big = pool
            .allocate(
                reqs(3 * MIB, 0b010, false),
                AllocationType::Linear,
                &always,
                None,
            )
            .expect("the kept block gives the dedicated allocation room");
        assert!(big.is_dedicated());
        assert_eq!(pool.block_count(), 0, "the kept block was released");
        let mut held = Made::default();
        held.pools.push(pool);
        held.push(filler, 1);
        held.push(big, 2);
        books_balance(&sim, &device, &a, &held, "after the dedicated allocation");
        held.destroy(&sim.device);
    }
    sim.assert_nothing_allocated();
}

/// The allocator's own allocation in a full heap while a custom pool of that heap keeps an
/// empty block: the kept block gives its memory back.
#[test]
fn an_allocation_gets_the_memory_of_a_pools_kept_block() {
    let sim = Sim::new(GpuLayout::small_heaps(512 * MIB, 32 * MIB));
    {
        let device = sim.memory_device();
        let a = StandardMemoryAllocator::new_default(device.clone());
        let pool = a
            .create_pool::<FreeListAllocator>(&PoolCreateInfo {
                memory_type: PoolMemoryType::Index(2),
                block_size: 4 * MIB,
                ..Default::default()
            })
            .unwrap();
        let info = usage(MemoryUsage::Upload);
        let one = pool
            .allocate(reqs(MIB, 0b100, false), AllocationType::Linear, &info, None)
            .unwrap();
        drop(one);
        assert_eq!(pool.block_count(), 1, "the empty block is kept");
        let filler = a.allocate_dedicated(1, 26 * MIB, None, &info).unwrap();
        assert_eq!(sim.state.heap_used(1), 30 * MIB);
        let big = a
            .allocate_dedicated(1, 3 * MIB, None, &info)
            .expect("the pool's kept block gives the allocation room");
        assert_eq!(pool.block_count(), 0, "the kept block was released");
        let mut held = Made::default();
        held.pools.push(pool);
        held.push(filler, 1);
        held.push(big, 2);
        books_balance(&sim, &device, &a, &held, "after the allocation");
        held.destroy(&sim.device);
    }
    sim.assert_nothing_allocated();
}
