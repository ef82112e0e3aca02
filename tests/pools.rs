//! Custom pools on the simulated layouts: block counts, exhaustion, non-coherent memory,
//! every suballocator, threads, fault injection, statistics and the leak report.

mod common;
mod support;

use ash::vk;
use ash_memory::*;
use support::{
    buffer_info, check_triples, fill, image_info, pattern, verify, verify_each, Faults, GpuLayout,
    Rng, Sim, KIB, MIB,
};

fn reqs(device: &MemoryDevice, size: u64, alignment: u64) -> AllocationRequirements {
    AllocationRequirements {
        layout: DeviceLayout::from_size_alignment(size, alignment).unwrap(),
        memory_type_bits: device.memory_properties().all_types_mask(),
        prefers_dedicated_allocation: false,
        requires_dedicated_allocation: false,
    }
}

const LINEAR: AllocationType = AllocationType::Linear;

fn pool_info(name: &str, memory_type: u32, block_size: u64) -> PoolCreateInfo {
    PoolCreateInfo {
        name: Some(name.into()),
        memory_type: PoolMemoryType::Index(memory_type),
        block_size,
        ..Default::default()
    }
}

/// A pool at its block limit keeps its larger free ranges whole: a request that its first
/// block cannot take goes to the block in use with the least room that fits, so a later
/// request twice as large still finds room (first fit over the blocks in their order split
/// the larger range, and the pool was full).
#[test]
fn a_full_pool_keeps_its_larger_free_ranges_for_larger_requests() {
    let sim = Sim::new(GpuLayout::nvidia_discrete());
    let device = sim.memory_device();
    let allocator = StandardMemoryAllocator::new_default(device.clone());
    let pool = allocator
        .create_pool::<FreeListAllocator>(&PoolCreateInfo {
            min_block_count: 3,
            max_block_count: 3,
            block_arenas: Some(1),
            ..pool_info("packed", 0, 16 * MIB)
        })
        .unwrap();
    let info = AllocationCreateInfo::default();
    let allocate = |size| pool.allocate(reqs(&device, size, 256), LINEAR, &info, None);
    // Three blocks of 64 allocations of 256 KiB each: full.
    let mut live: Vec<MemoryAlloc> = (0..192).map(|_| allocate(256 * KIB).unwrap()).collect();
    let blocks: Vec<vk::DeviceMemory> = [0, 64, 128].map(|i| live[i].memory()).to_vec();
    assert!(live[..64].iter().all(|a| a.memory() == blocks[0]));
    assert_eq!(
        allocate(256 * KIB).unwrap_err(),
        AllocationError::PoolFull { max_blocks: 3 }
    );
    // The second block gets a free range of 512 KiB, the third one of 256 KiB.
    for i in [150, 81, 80] {
        live.remove(i);
    }
    let small = allocate(256 * KIB).unwrap();
    assert_eq!(small.memory(), blocks[2], "the tightest block in use");
    let large = allocate(512 * KIB).expect("the 512 KiB range stayed whole");
    assert_eq!(large.memory(), blocks[1]);
    drop((small, large, live));
}

/// A nearly full block of many allocations keeps its larger free range whole: a request that
/// a free range of its own size class holds takes that range (step 0 of the free list's
/// search), not the front of the larger range, so a later request twice as large still
/// fits (the good-fit search alone cut the larger range, and the pool was full).
#[test]
fn a_nearly_full_block_gives_a_request_the_snug_range_and_keeps_the_larger_one() {
    let sim = Sim::new(GpuLayout::nvidia_discrete());
    let device = sim.memory_device();
    let allocator = StandardMemoryAllocator::new_default(device.clone());
    let pool = allocator
        .create_pool::<FreeListAllocator>(&PoolCreateInfo {
            min_block_count: 1,
            max_block_count: 1,
            block_arenas: Some(1),
            ..pool_info("snug", 0, 16 * MIB)
        })
        .unwrap();
    let info = AllocationCreateInfo::default();
    let allocate = |size| pool.allocate(reqs(&device, size, 256), LINEAR, &info, None);
    // 64 allocations of 256 KiB: full.
    let mut live: Vec<Option<MemoryAlloc>> = (0..64)
        .map(|_| Some(allocate(256 * KIB).unwrap()))
        .collect();
    assert_eq!(
        allocate(256 * KIB).unwrap_err(),
        AllocationError::PoolFull { max_blocks: 1 }
    );
    // A free range of 512 KiB, then one of 256 KiB (freed last: the newest free range).
    let pair = live[40].as_ref().unwrap().offset();
    let hole = live[10].as_ref().unwrap().offset();
    for i in [40, 41, 10] {
        live[i] = None;
    }
    let small = allocate(256 * KIB).unwrap();
    assert_eq!(small.offset(), hole, "the range of the request's own size");
    let large = allocate(512 * KIB).expect("the 512 KiB range stayed whole");
    assert_eq!(large.offset(), pair);
    drop((small, large, live));
}

#[test]
fn minimum_blocks_are_made_up_front_and_kept_maximum_blocks_are_a_hard_limit() {
    let sim = Sim::new(GpuLayout::nvidia_discrete());
    let device = sim.memory_device();
    let allocator = StandardMemoryAllocator::new_default(device.clone());
    sim.state.reset_counters();
    let pool = allocator
        .create_pool::<FreeListAllocator>(&PoolCreateInfo {
            min_block_count: 2,
            max_block_count: 3,
            ..pool_info("textures", 0, 4 * MIB)
        })
        .unwrap();
    assert_eq!(pool.block_count(), 2, "minimum blocks exist up front");
    let calls = sim.state.calls();
    assert_eq!(calls.len(), 2);
    assert!(calls
        .iter()
        .all(|c| c.size == 4 * MIB && c.memory_type == 0));
    let info = AllocationCreateInfo::default();
    let mut live = Vec::new();
    for _ in 0..6 {
        live.push(
            pool.allocate(reqs(&device, 2 * MIB, 256), LINEAR, &info, None)
                .unwrap(),
        );
    }
    assert_eq!(pool.block_count(), 3);
    assert!(live
        .iter()
        .all(|a| !a.is_dedicated() && a.memory_type_index() == 0));
    let calls = sim.state.allocate_calls();
    let err = pool
        .allocate(reqs(&device, 2 * MIB, 256), LINEAR, &info, None)
        .unwrap_err();
    assert_eq!(err, AllocationError::PoolFull { max_blocks: 3 });
    assert!(err.to_string().contains("maximum of 3 blocks"), "{err}");
    assert_eq!(
        sim.state.allocate_calls(),
        calls,
        "no driver call when full"
    );
    // Larger than a block: an error, never a dedicated allocation.
    let err = pool
        .allocate(reqs(&device, 4 * MIB + 1, 1), LINEAR, &info, None)
        .unwrap_err();
    assert!(
        matches!(err, AllocationError::BlockSizeExceeded { .. }),
        "{err:?}"
    );
    // The pool's type must be allowed.
    let mut host_only = reqs(&device, 256, 1);
    host_only.memory_type_bits = 0b110;
    let err = pool.allocate(host_only, LINEAR, &info, None).unwrap_err();
    assert_eq!(
        err,
        AllocationError::PoolMemoryTypeNotAllowed {
            memory_type_index: 0,
            bits: 0b110
        }
    );
    assert_eq!(
        pool.find_memory_type_index(0b110, MemoryUsage::DeviceOnly.into()),
        None
    );
    assert_eq!(
        pool.find_memory_type_index(0b111, MemoryUsage::DeviceOnly.into()),
        Some(0)
    );
    drop(live);
    assert_eq!(pool.block_count(), 2, "down to the minimum, never below");
    drop(pool);
    drop(allocator);
    sim.assert_nothing_allocated();
}

#[test]
fn bad_pool_configurations_are_errors() {
    let sim = Sim::new(GpuLayout::mobile());
    let allocator = StandardMemoryAllocator::new_default(sim.memory_device());
    let cases: Vec<(PoolCreateInfo, &str)> = vec![
        (pool_info("x", 9, MIB), "out of range"),
        (pool_info("x", 2, MIB), "lazily allocated"),
        (
            pool_info("x", 0, 8 << 30),
            "larger than the memory type's heap",
        ),
        (
            PoolCreateInfo {
                max_block_count: 0,
                ..pool_info("x", 0, MIB)
            },
            "max_block_count",
        ),
        (
            PoolCreateInfo {
                min_block_count: 3,
                max_block_count: 2,
                ..pool_info("x", 0, MIB)
            },
            "max_block_count",
        ),
        (
            PoolCreateInfo {
                priority: f32::NAN,
                ..pool_info("x", 0, MIB)
            },
            "priority",
        ),
        (
            PoolCreateInfo {
                block_arenas: Some(0),
                ..pool_info("x", 0, MIB)
            },
            "block_arenas",
        ),
        (
            PoolCreateInfo {
                memory_type: PoolMemoryType::Find {
                    memory_type_bits: 0b100,
                    usage: MemoryUsage::Upload,
                },
                ..Default::default()
            },
            "no memory type",
        ),
    ];
    for (info, words) in cases {
        let err = allocator
            .create_pool::<FreeListAllocator>(&info)
            .expect_err(words);
        assert!(err.to_string().contains(words), "{words}: {err}");
    }
    assert_eq!(sim.state.allocate_calls(), 0);
}

#[test]
fn a_pool_in_non_coherent_memory_keeps_every_allocation_on_whole_atoms() {
    let sim = Sim::new(GpuLayout::mobile());
    let device = sim.memory_device();
    let allocator = StandardMemoryAllocator::new_default(device.clone());
    // Type 1 is cached and not coherent; the atom is 128 bytes.
    let pool = allocator
        .create_pool::<FreeListAllocator>(&pool_info("readback", 1, MIB))
        .unwrap();
    let mut rng = Rng(3);
    let mut live = Vec::new();
    for _ in 0..200 {
        let size = 1 + rng.below(1000);
        let mut a = pool
            .allocate(reqs(&device, size, 4), LINEAR, &Default::default(), None)
            .unwrap();
        assert_eq!(a.offset() % 128, 0);
        assert_eq!(a.size() % 128, 0);
        sim.state.reset_counters();
        fill(&mut a, size, size);
        for (memory, offset, len, _) in sim.state.syncs() {
            assert_eq!(memory, a.memory());
            assert!(a.offset() <= offset && offset + len <= a.offset() + a.size());
        }
        live.push((a, size));
    }
    for (a, size) in &live {
        verify(a, *size, *size, "readback pool");
    }
    drop(live);
    drop((pool, allocator));
    sim.assert_nothing_allocated();
}

/// Every suballocator backs a pool; a ring pool serves frames of uploads.
#[test]
fn pools_with_every_suballocator() {
    let sim = Sim::new(GpuLayout::amd_discrete_bar());
    let device = sim.memory_device();
    let allocator = StandardMemoryAllocator::new_default(device.clone());
    let upload = PoolMemoryType::Find {
        memory_type_bits: u32::MAX,
        usage: MemoryUsage::Upload,
    };
    let info = |name: &str| PoolCreateInfo {
        name: Some(name.into()),
        memory_type: upload,
        block_size: 2 * MIB,
        block_arenas: Some(1),
        ..Default::default()
    };
    let ring = allocator
        .create_pool::<RingAllocator>(&PoolCreateInfo {
            min_block_count: 1,
            max_block_count: 1,
            ..info("ring")
        })
        .unwrap();
    let bump = allocator
        .create_pool::<BumpAllocator>(&info("bump"))
        .unwrap();
    let slots = allocator
        .create_pool::<SlotAllocator<{ 4 * 1024 }>>(&info("slots"))
        .unwrap();
    let buddy = allocator
        .create_pool::<BuddyAllocator>(&info("buddy"))
        .unwrap();
    let ci = AllocationCreateInfo::default();
    // Frames of uploads through the ring, two frames in flight.
    let mut frames: std::collections::VecDeque<Vec<MemoryAlloc>> = Default::default();
    let mut rng = Rng(11);
    for frame in 0..50u64 {
        if frames.len() == 2 {
            frames.pop_front();
        }
        let mut this = Vec::new();
        for i in 0..20 {
            let size = 256 + rng.below(16 * KIB);
            let mut a = ring
                .allocate(reqs(&device, size, 256), LINEAR, &ci, None)
                .unwrap();
            fill(&mut a, frame * 100 + i, size);
            this.push(a);
        }
        frames.push_back(this);
        for (j, f) in frames.iter().enumerate() {
            for (i, a) in f.iter().enumerate() {
                let seed = (frame + j as u64 + 1 - frames.len() as u64) * 100 + i as u64;
                let mut back = vec![0; a.size() as usize];
                a.read(0, &mut back).unwrap();
                assert!(back == pattern(seed, back.len()), "ring data");
            }
        }
    }
    assert_eq!(ring.block_count(), 1, "the ring never grows");
    let mut all = Vec::new();
    for pool in [
        &bump as &dyn MemoryAllocator,
        &slots as &dyn MemoryAllocator,
        &buddy as &dyn MemoryAllocator,
    ] {
        for i in 0..40 {
            let mut a = pool
                .allocate(reqs(&device, 100 + i * 37, 64), LINEAR, &ci, None)
                .unwrap();
            fill(&mut a, i, 100 + i * 37);
            all.push((a, i, 100 + i * 37));
        }
    }
    verify_each(&all, "pool data");
    let triples: Vec<_> = all.iter().map(|(a, _, _)| (a, 64)).collect();
    check_triples(
        &triples,
        &sim.state,
        sim.state.layout.buffer_image_granularity,
    );
    // Each pool shows up by name in the allocator's statistics.
    let stats = allocator.statistics();
    for name in ["ring", "bump", "slots", "buddy"] {
        let p = stats.pools.iter().find(|p| &*p.name == name).unwrap();
        assert!(p.statistics.block_count >= 1, "{name}");
    }
    assert_eq!(
        stats
            .pools
            .iter()
            .find(|p| &*p.name == "slots")
            .unwrap()
            .statistics
            .allocation_count,
        40
    );
    drop((all, frames));
    drop((ring, bump, slots, buddy));
    assert!(
        allocator.statistics().pools.is_empty(),
        "dropped pools are gone"
    );
    drop(allocator);
    sim.assert_nothing_allocated();
}

#[test]
fn buffers_and_images_through_a_pool_and_required_dedicated_allocations() {
    let sim = Sim::new(GpuLayout::nvidia_discrete());
    let device = sim.memory_device();
    let allocator = StandardMemoryAllocator::new_default(device.clone());
    let pool = allocator
        .create_pool::<FreeListAllocator>(&pool_info("images", 0, 16 * MIB))
        .unwrap();
    let ci = AllocationCreateInfo {
        name: Some("albedo".into()),
        ..Default::default()
    };
    // SAFETY: valid create infos for this device; destroyed before their memory.
    let (buffer, b) = unsafe {
        pool.create_buffer(
            &buffer_info(64 * KIB, vk::BufferUsageFlags::TRANSFER_DST),
            &ci,
        )
    }
    .unwrap();
    // SAFETY: as above.
    let (image, i) = unsafe {
        pool.create_image(
            &image_info(256, vk::Format::R8G8B8A8_UNORM, vk::ImageTiling::OPTIMAL),
            &ci,
        )
    }
    .unwrap();
    assert_eq!((b.memory_type_index(), i.memory_type_index()), (0, 0));
    assert_eq!(b.memory(), i.memory(), "both in the pool's block");
    // A resource that requires its own memory object still gets one, of the pool's type,
    // and counts in the pool.
    sim.state
        .requires_dedicated
        .store(true, std::sync::atomic::Ordering::SeqCst);
    // SAFETY: as above.
    let (dedicated_buffer, d) = unsafe {
        pool.create_buffer(
            &buffer_info(4 * KIB, vk::BufferUsageFlags::TRANSFER_DST),
            &ci,
        )
    }
    .unwrap();
    assert!(d.is_dedicated());
    assert_eq!(d.memory_type_index(), 0);
    let stats = pool.statistics();
    assert_eq!(stats.total.dedicated_count, 1);
    assert_eq!(stats.total.block_count, 1);
    assert_eq!(stats.pools.len(), 1);
    // SAFETY: the resources are unused; destroyed before their memory is freed.
    unsafe {
        sim.device.destroy_buffer(buffer, None);
        sim.device.destroy_image(image, None);
        sim.device.destroy_buffer(dedicated_buffer, None);
    }
    drop((b, i, d, pool, allocator));
    sim.assert_nothing_allocated();
}

#[test]
fn pools_show_in_dumps_and_a_dropped_pool_reports_and_keeps_its_live_allocations() {
    common::log_capture::install();
    let sim = Sim::new(GpuLayout::nvidia_discrete());
    let device = sim.memory_device();
    let allocator = StandardMemoryAllocator::new(
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
    let pool = allocator
        .create_pool::<FreeListAllocator>(&pool_info("long-lived \"meshes\"", 1, 4 * MIB))
        .unwrap();
    let unnamed = allocator
        .create_pool::<FreeListAllocator>(&PoolCreateInfo::default())
        .unwrap();
    assert!(unnamed.name().starts_with("pool "), "{}", unnamed.name());
    let ci = AllocationCreateInfo {
        name: Some("terrain".into()),
        ..Default::default()
    };
    let mut a = pool
        .allocate(reqs(&device, 1000, 16), LINEAR, &ci, None)
        .unwrap();
    fill(&mut a, 9, 1000);
    let snap = allocator.snapshot();
    let json: serde_json::Value = serde_json::from_str(&snap.to_json()).unwrap();
    let pools = json["pools"].as_array().unwrap();
    assert!(
        pools.iter().any(|p| p["name"] == "long-lived \"meshes\""),
        "{pools:?}"
    );
    let block = json["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["pool"] == "long-lived \"meshes\"")
        .expect("the pool's block in the dump");
    assert!(block["ranges"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["name"] == "terrain"));
    assert!(snap.to_svg().contains("long-lived &quot;meshes&quot;"));
    let leaks = allocator.report_leaks();
    assert!(leaks.iter().any(|l| l.name.as_deref() == Some("terrain")
        && l.pool.as_deref() == Some("long-lived \"meshes\"")));
    // Dropping the pool with `a` alive: reported, and `a` keeps its memory.
    drop(pool);
    let logged: Vec<String> = common::log_capture::records_mentioning("")
        .into_iter()
        .map(|(_, _, m)| m)
        .collect();
    assert!(
        logged
            .iter()
            .any(|m| m.contains("MemoryPool dropped while allocations are alive")),
        "{logged:?}"
    );
    assert!(
        logged.iter().any(|m| m.contains("\"terrain\"")),
        "{logged:?}"
    );
    verify(&a, 9, 1000, "an allocation of a dropped pool");
    assert!(sim.state.live_objects() >= 1);
    drop(a);
    drop((unnamed, allocator));
    sim.assert_nothing_allocated();
}

/// Threads allocate from one pool and from several pools at once; nothing overlaps.
#[test]
fn threads_share_one_pool_and_use_several_pools_at_once() {
    let sim = Sim::new(GpuLayout::intel_integrated());
    let device = sim.memory_device();
    let allocator = StandardMemoryAllocator::new_default(device.clone());
    let shared = allocator
        .create_pool::<FreeListAllocator>(&pool_info("shared", 2, 8 * MIB))
        .unwrap();
    let own: Vec<_> = (0..4)
        .map(|i| {
            allocator
                .create_pool::<FreeListAllocator>(&pool_info(&format!("own {i}"), 1, 4 * MIB))
                .unwrap()
        })
        .collect();
    let results: Vec<Vec<(MemoryAlloc, u64, u64)>> = std::thread::scope(|s| {
        let handles: Vec<_> = own
            .iter()
            .enumerate()
            .map(|(t, mine)| {
                let (shared, device) = (&shared, &device);
                s.spawn(move || {
                    let mut rng = Rng(t as u64 + 1);
                    let mut kept = Vec::new();
                    for i in 0..300u64 {
                        let pool: &dyn MemoryAllocator = if i % 2 == 0 { shared } else { mine };
                        let size = 1 + rng.below(20 * KIB);
                        let mut a = pool
                            .allocate(reqs(device, size, 64), LINEAR, &Default::default(), None)
                            .unwrap();
                        let seed = t as u64 * 10_000 + i;
                        fill(&mut a, seed, size);
                        if rng.below(3) == 0 {
                            verify(&a, seed, size, "own data");
                        } else {
                            kept.push((a, seed, size));
                        }
                    }
                    kept
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let all: Vec<_> = results.iter().flatten().collect();
    verify_each(all.iter().copied(), "after the threads");
    let triples: Vec<_> = all.iter().map(|(a, _, _)| (a, 64)).collect();
    check_triples(
        &triples,
        &sim.state,
        sim.state.layout.buffer_image_granularity,
    );
    drop(results);
    drop((shared, own, allocator));
    sim.assert_nothing_allocated();
}

/// Every `vkAllocateMemory` of a pool scenario fails in turn: the error is clear, nothing
/// leaks, and the requests the fault did not reach succeed.
#[test]
fn every_allocate_call_of_a_pool_scenario_can_fail() {
    let sim = Sim::new(GpuLayout::nvidia_discrete());
    let run = |faults: Faults| -> (Vec<Result<(), AllocationError>>, u64) {
        let device = sim.memory_device();
        let allocator = StandardMemoryAllocator::new_default(device.clone());
        sim.state.reset_counters();
        sim.state.set_faults(faults);
        let mut outcomes = Vec::new();
        let pool = allocator.create_pool::<FreeListAllocator>(&PoolCreateInfo {
            min_block_count: 2,
            max_block_count: 8,
            ..pool_info("faulty", 1, MIB)
        });
        let mut live = Vec::new();
        match pool {
            Err(e) => outcomes.push(Err(e)),
            Ok(pool) => {
                outcomes.push(Ok(()));
                for i in 0..7u64 {
                    let r = if i == 5 {
                        pool.allocate_dedicated(1, 64 * KIB, None, &Default::default())
                    } else {
                        pool.allocate(
                            reqs(&device, 700 * KIB, 256),
                            LINEAR,
                            &Default::default(),
                            None,
                        )
                    };
                    outcomes.push(r.map(|a| live.push(a)));
                }
                drop(live);
                drop(pool);
            }
        }
        let calls = sim.state.allocate_calls();
        sim.state.set_faults(Faults::default());
        drop(allocator);
        sim.assert_nothing_allocated();
        (outcomes, calls)
    };
    let (baseline, calls) = run(Faults::default());
    assert!(baseline.iter().all(Result::is_ok), "{baseline:?}");
    assert!(calls >= 5, "{calls} calls");
    for result in [
        vk::Result::ERROR_OUT_OF_DEVICE_MEMORY,
        vk::Result::ERROR_OUT_OF_HOST_MEMORY,
        vk::Result::ERROR_TOO_MANY_OBJECTS,
    ] {
        for at in 1..=calls {
            let (outcomes, _) = run(Faults {
                allocate_at: Some((at, result)),
                ..Default::default()
            });
            let errors: Vec<_> = outcomes.iter().filter_map(|o| o.as_ref().err()).collect();
            assert_eq!(errors.len(), 1, "fault at {at} ({result}): {outcomes:?}");
            let expected = match result {
                vk::Result::ERROR_OUT_OF_DEVICE_MEMORY => AllocationError::OutOfDeviceMemory,
                vk::Result::ERROR_OUT_OF_HOST_MEMORY => AllocationError::OutOfHostMemory,
                _ => AllocationError::TooManyObjects {
                    max: sim.state.layout.max_memory_allocation_count,
                },
            };
            assert_eq!(errors[0], &expected, "fault at {at}");
        }
    }
}

/// Pools and the default pools share the device's memory-object limit and heap budget.
#[test]
fn pools_share_the_object_limit_and_the_budget_with_the_default_pools() {
    let sim = Sim::new(GpuLayout {
        max_memory_allocation_count: 3,
        ..GpuLayout::small_heaps(256 * MIB, 256 * MIB)
    });
    let device = sim.memory_device();
    let allocator = StandardMemoryAllocator::new_default(device.clone());
    let pool = allocator
        .create_pool::<FreeListAllocator>(&pool_info("limited", 0, MIB))
        .unwrap();
    let always = AllocationCreateInfo {
        allocate_preference: MemoryAllocatePreference::AlwaysAllocate,
        ..Default::default()
    };
    let a = allocator
        .allocate(reqs(&device, 4096, 1), LINEAR, &always, None)
        .unwrap();
    let b = allocator
        .allocate(reqs(&device, 4096, 1), LINEAR, &always, None)
        .unwrap();
    let c = pool
        .allocate(reqs(&device, 4096, 1), LINEAR, &Default::default(), None)
        .unwrap();
    let calls = sim.state.allocate_calls();
    let err = pool
        .allocate(reqs(&device, MIB, 1), LINEAR, &Default::default(), None)
        .unwrap_err();
    assert_eq!(err, AllocationError::TooManyObjects { max: 3 });
    assert_eq!(
        sim.state.allocate_calls(),
        calls,
        "refused before the driver"
    );
    drop((a, b, c));

    // The budget (estimated: 80 % of the heap) counts the pool's blocks and the default
    // pools' memory together.
    let heap = 0;
    let budget = device.heap_budgets()[heap].budget;
    let within = AllocationCreateInfo {
        within_budget: true,
        allocate_preference: MemoryAllocatePreference::AlwaysAllocate,
        ..Default::default()
    };
    let big_pool = allocator
        .create_pool::<FreeListAllocator>(&pool_info("big", 0, budget / 2))
        .unwrap();
    let in_pool = big_pool
        .allocate(
            reqs(&device, 4096, 1),
            LINEAR,
            &AllocationCreateInfo {
                within_budget: true,
                ..Default::default()
            },
            None,
        )
        .unwrap();
    let err = allocator
        .allocate_dedicated(0, budget / 2 + 1, None, &within)
        .unwrap_err();
    assert!(matches!(err, AllocationError::BudgetExceeded(_)), "{err:?}");
    drop((in_pool, big_pool, pool, allocator));
    sim.assert_nothing_allocated();
}

#[test]
fn a_pool_renamed_after_creation_shows_its_new_name_everywhere() {
    // VMA's vmaSetPoolName: the name of the pool, of its blocks and dedicated allocations in
    // the statistics, and in the leak report, from the rename on.
    let sim = Sim::new(GpuLayout::nvidia_discrete());
    let device = sim.memory_device();
    let allocator = StandardMemoryAllocator::new_default(device.clone());
    let pool = allocator
        .create_pool::<FreeListAllocator>(&pool_info("before", 0, 4 * MIB))
        .unwrap();
    let info = AllocationCreateInfo::default();
    let block = pool
        .allocate(reqs(&device, 64 * KIB, 256), LINEAR, &info, None)
        .unwrap();
    let dedicated = pool
        .allocate_dedicated(0, MIB, None, &AllocationCreateInfo::default())
        .unwrap();
    let pool_names = || -> Vec<Option<String>> {
        allocator
            .snapshot()
            .blocks
            .iter()
            .map(|b| b.pool.as_deref().map(String::from))
            .collect()
    };
    assert!(pool_names().iter().all(|n| n.as_deref() == Some("before")));
    pool.set_name(Some("after".into()));
    assert_eq!(&*pool.name(), "after");
    let names = pool_names();
    assert_eq!(
        names.len(),
        2,
        "a block and a dedicated allocation: {names:?}"
    );
    assert!(
        names.iter().all(|n| n.as_deref() == Some("after")),
        "{names:?}"
    );
    assert!(pool
        .report_leaks()
        .iter()
        .all(|l| l.pool.as_deref() == Some("after")));
    // No name: one like those given at creation.
    pool.set_name(None);
    assert!(pool.name().starts_with("pool "), "{}", pool.name());
    drop((block, dedicated, pool, allocator));
    sim.assert_nothing_allocated();
}
