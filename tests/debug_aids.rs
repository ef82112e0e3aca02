//! Debug aids on the driver and the simulated layouts: margins (every byte of them, every
//! suballocator, alignment, granularity, non-coherent memory, arenas, custom pools, a long
//! random run with no false positive), fill patterns, the allocation log and backtraces.

mod common;
mod support;

use ash::vk::{self, Handle};
use ash_memory::corruption::{CorruptionError, FREED_BYTE, NEW_BYTE};
use ash_memory::*;
use support::{check_triples, fill, pattern, verify, GpuLayout, Rng, Sim, KIB, MIB};

fn reqs(device: &MemoryDevice, size: u64, alignment: u64) -> AllocationRequirements {
    AllocationRequirements {
        layout: DeviceLayout::from_size_alignment(size, alignment).unwrap(),
        memory_type_bits: device.memory_properties().all_types_mask(),
        prefers_dedicated_allocation: false,
        requires_dedicated_allocation: false,
    }
}

fn debug(margin: u64, fill_patterns: bool) -> GenericMemoryAllocatorCreateInfo {
    GenericMemoryAllocatorCreateInfo {
        debug: DebugOptions {
            margin,
            fill_patterns,
            ..Default::default()
        },
        ..Default::default()
    }
}

const UPLOAD: MemoryUsage = MemoryUsage::Upload;

fn named(name: &str) -> AllocationCreateInfo {
    AllocationCreateInfo {
        usage: UPLOAD,
        name: Some(name.into()),
        ..Default::default()
    }
}

/// Writes `bytes` at `offset` of the block `alloc` lives in (outside the allocation).
///
/// # Safety
///
/// The bytes lie in a margin of `alloc` (its own memory) inside the mapped block.
unsafe fn poke(alloc: &MemoryAlloc, offset_in_block: u64, byte: u8) {
    // SAFETY: the caller's contract.
    unsafe { support::poke(alloc, offset_in_block, byte) };
    alloc.flush(0, alloc.size()).unwrap();
}

fn damaged(
    result: Result<corruption::CorruptionReport, CorruptionError>,
) -> Vec<corruption::DamagedMargin> {
    match result {
        Err(CorruptionError::Damaged { damaged, .. }) => damaged,
        other => panic!("expected damage, got {other:?}"),
    }
}

#[test]
fn every_byte_of_every_margin_is_detected_and_named() {
    let sim = Sim::new(GpuLayout::nvidia_discrete());
    let device = sim.memory_device();
    let allocator = StandardMemoryAllocator::new(device.clone(), debug(16, false)).unwrap();
    let all = device.memory_properties().all_types_mask();
    for alignment in [1, 4, 256, 1024] {
        let mut victim = allocator
            .allocate(
                reqs(&device, 100, alignment),
                AllocationType::Linear,
                &named("victim"),
                None,
            )
            .unwrap();
        let neighbour = allocator
            .allocate(
                reqs(&device, 100, alignment),
                AllocationType::Linear,
                &named("next"),
                None,
            )
            .unwrap();
        fill(&mut victim, 1, 100);
        assert_eq!(victim.offset() % alignment, 0);
        assert!(allocator.check_corruption(all).is_ok());
        let front = 16u64.next_multiple_of(alignment);
        let o = victim.offset();
        let positions = (o - front..o).chain(o + 100..o + 116);
        for at in positions {
            // SAFETY: `at` is in one of `victim`'s margins.
            unsafe { poke(&victim, at, 0x00) };
            let d = damaged(allocator.check_corruption(all));
            assert_eq!(d.len(), 1, "byte {at}");
            assert_eq!(d[0].offset, at);
            assert_eq!(d[0].after, at >= o + 100);
            assert_eq!(d[0].allocation_offset, o);
            assert_eq!(d[0].allocation_size, 100);
            assert_eq!(d[0].name.as_deref(), Some("victim"));
            assert_eq!(d[0].memory, victim.memory().as_raw());
            assert_eq!(d[0].memory_type_index, victim.memory_type_index());
            // Restore the pattern byte.
            let magic = corruption::MARGIN_MAGIC.to_le_bytes();
            let start = if at < o { o - front } else { o + 100 };
            // SAFETY: as above.
            unsafe { poke(&victim, at, magic[((at - start) % 4) as usize]) };
            assert!(
                allocator.check_corruption(all).is_ok(),
                "byte {at} restored"
            );
        }
        verify(&victim, 1, 100, "the victim's own data");
        drop((victim, neighbour));
    }
    // Not host-visible memory is skipped, and the report says so.
    let local = allocator
        .allocate(
            reqs(&device, 100, 1),
            AllocationType::Linear,
            &AllocationCreateInfo::default(),
            None,
        )
        .unwrap();
    assert_eq!(local.memory_type_index(), 0);
    let report = allocator.check_corruption(all).unwrap();
    assert_eq!(report.skipped_memory_types, [0]);
    drop(local);
    // Without margins there is nothing to check.
    let plain = StandardMemoryAllocator::new_default(device.clone());
    assert_eq!(
        plain.check_corruption(all),
        Err(CorruptionError::MarginsOff)
    );
    drop((allocator, plain));
    sim.assert_nothing_allocated();
}

/// A random run with margins on every layout and every suballocator: every allocation's data
/// stays intact, no margin is ever reported damaged (no false positive), and the allocations
/// with their margins never overlap, whatever the alignment and granularity.
fn random_run<S: Suballocator + Send + 'static>(sim: &Sim, arenas: usize, steps: u64) {
    let device = sim.memory_device();
    let allocator = GenericMemoryAllocator::<S>::new(
        device.clone(),
        GenericMemoryAllocatorCreateInfo {
            block_arenas: Some(arenas),
            block_sizes: BlockSizeThresholds::uniform(32 * MIB).unwrap(),
            ..debug(32, true)
        },
    )
    .unwrap();
    let all = device.memory_properties().all_types_mask();
    let mut rng = Rng(arenas as u64 * 31 + steps);
    let mut live: Vec<(MemoryAlloc, u64, u64, u64)> = Vec::new();
    for step in 0..steps {
        if live.len() > 60 || (!live.is_empty() && rng.below(3) == 0) {
            let (a, seed, len, _) = live.swap_remove(rng.below(live.len() as u64) as usize);
            verify(&a, seed, len, "before the free");
            continue;
        }
        let size = 1 + rng.below(8 * KIB);
        let alignment = 1 << rng.below(10);
        let ty = if rng.below(4) == 0 {
            AllocationType::NonLinear
        } else {
            AllocationType::Linear
        };
        let usage = *rng.pick(&[MemoryUsage::Upload, MemoryUsage::Download]);
        let info = AllocationCreateInfo {
            usage,
            ..Default::default()
        };
        let mut a = allocator
            .allocate(reqs(&device, size, alignment), ty, &info, None)
            .unwrap();
        if !a.is_dedicated() {
            let mut head = [0u8; 1];
            a.read(0, &mut head).unwrap();
            assert_eq!(head[0], NEW_BYTE, "fill pattern of a new allocation");
        }
        fill(&mut a, step, size);
        live.push((a, step, size, alignment));
        if step % 50 == 0 {
            assert!(
                allocator.check_corruption(all).is_ok(),
                "false positive at step {step}"
            );
        }
    }
    let triples: Vec<_> = live.iter().map(|(a, _, _, al)| (a, *al)).collect();
    check_triples(
        &triples,
        &sim.state,
        sim.state.layout.buffer_image_granularity,
    );
    for (a, seed, len, _) in &live {
        verify(a, *seed, *len, "after the run");
    }
    let report = allocator.check_corruption(all).unwrap();
    assert_eq!(
        report.checked_allocations,
        live.iter().filter(|(a, ..)| !a.is_dedicated()).count() as u64
    );
    drop(live);
    drop(allocator);
}

#[test]
fn margins_with_every_suballocator_alignment_granularity_and_arenas() {
    for layout in [
        GpuLayout::nvidia_discrete(),
        GpuLayout::large_granularity(),
        GpuLayout::mobile(),
        GpuLayout::amd_discrete_bar(),
    ] {
        let sim = Sim::new(layout);
        random_run::<FreeListAllocator>(&sim, 1, 400);
        random_run::<FreeListAllocator>(&sim, 2, 400);
        random_run::<BuddyAllocator>(&sim, 1, 300);
        random_run::<SlotAllocator<{ 16 * 1024 }>>(&sim, 1, 300);
        random_run::<BumpAllocator>(&sim, 1, 200);
        random_run::<RingAllocator>(&sim, 1, 200);
        sim.assert_nothing_allocated();
    }
}

/// Non-coherent memory: the flushes of one allocation's writes never touch another
/// allocation's bytes, margins or not.
#[test]
fn margins_keep_the_atom_rule_in_non_coherent_memory() {
    let sim = Sim::new(GpuLayout::mobile());
    let device = sim.memory_device();
    let allocator = StandardMemoryAllocator::new(device.clone(), debug(16, true)).unwrap();
    let layout = |size| DeviceLayout::from_size_alignment(size, 4).unwrap();
    let info = AllocationCreateInfo::default();
    let mut rng = Rng(5);
    let mut live: Vec<MemoryAlloc> = Vec::new();
    for _ in 0..100 {
        let size = 1 + rng.below(300);
        // Type 1: cached, not coherent, atom 128.
        let mut a = allocator
            .allocate_from_type(1, layout(size), AllocationType::Linear, &info)
            .unwrap();
        sim.state.reset_counters();
        a.write(0, &pattern(size, size as usize)).unwrap();
        for (memory, offset, len, _) in sim.state.syncs() {
            for other in &live {
                let overlaps = other.memory() == memory
                    && offset < other.offset() + other.size()
                    && other.offset() < offset + len;
                assert!(!overlaps, "a flush of {a:?} touches {other:?}");
            }
        }
        live.push(a);
    }
    let all = device.memory_properties().all_types_mask();
    assert_eq!(
        allocator.check_corruption(all).unwrap().checked_allocations,
        100
    );
    drop(live);
    drop(allocator);
    sim.assert_nothing_allocated();
}

#[test]
fn custom_pools_have_margins_and_are_checked_with_their_allocator() {
    let sim = Sim::new(GpuLayout::amd_discrete_bar());
    let device = sim.memory_device();
    let allocator = StandardMemoryAllocator::new(device.clone(), debug(64, false)).unwrap();
    let pool = allocator
        .create_pool::<RingAllocator>(&PoolCreateInfo {
            name: Some("ring".into()),
            memory_type: PoolMemoryType::Find {
                memory_type_bits: u32::MAX,
                usage: UPLOAD,
            },
            block_size: MIB,
            block_arenas: Some(1),
            ..Default::default()
        })
        .unwrap();
    let a = pool
        .allocate(
            reqs(&device, 1000, 16),
            AllocationType::Linear,
            &named("staged"),
            None,
        )
        .unwrap();
    assert!(pool.check_corruption().is_ok());
    // SAFETY: the byte right after `a` is its own back margin.
    unsafe { poke(&a, a.offset() + 1000, 1) };
    let d = damaged(allocator.check_corruption(u32::MAX));
    assert_eq!(d[0].pool.as_deref(), Some("ring"));
    assert_eq!(d[0].name.as_deref(), Some("staged"));
    assert!(d[0].after);
    assert_eq!(
        damaged(pool.check_corruption())[0].offset,
        a.offset() + 1000
    );
    let message = CorruptionError::Damaged {
        damaged: d,
        report: Default::default(),
    }
    .to_string();
    assert!(message.starts_with("corruption detected:"), "{message}");
    assert!(
        message.contains("\"staged\"") && message.contains("pool \"ring\""),
        "{message}"
    );
    drop((a, pool, allocator));
    sim.assert_nothing_allocated();
}

#[test]
fn damage_found_at_free_is_logged_and_the_free_goes_on() {
    common::log_capture::install();
    let sim = Sim::new(GpuLayout::nvidia_discrete());
    let device = sim.memory_device();
    let allocator = StandardMemoryAllocator::new(device.clone(), debug(16, false)).unwrap();
    let a = allocator
        .allocate(
            reqs(&device, 64, 16),
            AllocationType::Linear,
            &named("overrun at free"),
            None,
        )
        .unwrap();
    // SAFETY: the byte before `a` is its own front margin.
    unsafe { poke(&a, a.offset() - 1, 0) };
    drop(a);
    let logged = common::log_capture::records_mentioning("overrun at free");
    assert_eq!(logged.len(), 1, "{logged:?}");
    assert_eq!(logged[0].0, log::Level::Error);
    assert_eq!(logged[0].1, corruption::LOG_TARGET);
    assert!(logged[0].2.contains("margin before it"), "{logged:?}");
    assert_eq!(
        allocator.statistics().total.allocation_count,
        0,
        "freed all the same"
    );
    drop(allocator);
    sim.assert_nothing_allocated();
}

#[test]
fn fill_patterns_log_lines_and_backtraces() {
    common::log_capture::install();
    let sim = Sim::new(GpuLayout::nvidia_discrete());
    let device = sim.memory_device();
    let allocator = StandardMemoryAllocator::new(
        device.clone(),
        GenericMemoryAllocatorCreateInfo {
            debug: DebugOptions {
                fill_patterns: true,
                log_allocations: true,
                capture_backtraces: true,
                ..Default::default()
            },
            ..Default::default()
        },
    )
    .unwrap();
    let keep = allocator
        .allocate(
            reqs(&device, 4096, 256),
            AllocationType::Linear,
            &named("keeper"),
            None,
        )
        .unwrap();
    let mut a = allocator
        .allocate(
            reqs(&device, 4096, 256),
            AllocationType::Linear,
            &named("logged one"),
            None,
        )
        .unwrap();
    assert_eq!(a.memory(), keep.memory(), "one block");
    let mut back = vec![0u8; 4096];
    a.read(0, &mut back).unwrap();
    assert!(
        back.iter().all(|&b| b == NEW_BYTE),
        "new memory reads as the pattern"
    );
    a.write(0, &[1u8; 4096]).unwrap();
    assert!(a.backtrace().is_some());
    let leaks = allocator.report_leaks();
    let leak = leaks
        .iter()
        .find(|l| l.name.as_deref() == Some("logged one"))
        .unwrap();
    let backtrace = leak
        .backtrace
        .as_deref()
        .expect("the leak report has the backtrace");
    assert!(!backtrace.is_empty());
    assert!(leak.to_string().contains("allocated at:"), "{leak}");
    let ptr = a.mapped_ptr().unwrap().as_ptr() as usize;
    let (offset, memory) = (a.offset(), a.memory().as_raw());
    drop(a);
    // The freed bytes now read as the freed pattern (the block stays mapped: `keep` lives).
    let mut freed = vec![0u8; 4096];
    // SAFETY: the block is alive and mapped, and nothing uses these freed bytes now.
    unsafe { std::ptr::copy_nonoverlapping(ptr as *const u8, freed.as_mut_ptr(), 4096) };
    assert!(
        freed.iter().all(|&b| b == FREED_BYTE),
        "freed memory reads as the pattern"
    );
    let lines = common::log_capture::records_mentioning("\"logged one\"");
    let allocs: Vec<_> = lines
        .iter()
        .filter(|l| l.2.starts_with("allocate "))
        .collect();
    let frees: Vec<_> = lines.iter().filter(|l| l.2.starts_with("free ")).collect();
    assert_eq!((allocs.len(), frees.len()), (1, 1), "{lines:?}");
    for (level, target, text) in [allocs[0], frees[0]] {
        assert_eq!(*level, log::Level::Trace);
        assert_eq!(target, corruption::ALLOCATIONS_LOG_TARGET);
        assert!(text.contains("4096 bytes"), "{text}");
        assert!(
            text.contains(&format!("{memory:#x} at offset {offset}")),
            "{text}"
        );
        assert!(text.contains("memory type"), "{text}");
    }
    drop((keep, allocator));
    sim.assert_nothing_allocated();
}

#[test]
fn bad_debug_options_are_rejected() {
    let sim = Sim::new(GpuLayout::nvidia_discrete());
    for margin in [3, 6, MAX_DEBUG_MARGIN + 4] {
        let err =
            StandardMemoryAllocator::new(sim.memory_device(), debug(margin, false)).unwrap_err();
        assert!(err.to_string().contains("margin"), "{err}");
    }
    let _ = vk::Result::SUCCESS;
}

/// A check on one thread never reports damage that nobody caused while another thread
/// allocates and frees (issue 23, item 2): a new allocation's margins are looked at only once
/// they hold their pattern. 1 MiB margins make the window between placing an allocation and
/// filling its margins long; the run is bounded to about two seconds.
#[test]
fn a_check_during_allocations_on_another_thread_reports_no_false_damage() {
    let sim = Sim::new(GpuLayout::nvidia_discrete());
    let device = sim.memory_device();
    let allocator = StandardMemoryAllocator::new(device.clone(), debug(MIB, false)).unwrap();
    let all = device.memory_properties().all_types_mask();
    // One allocation lives throughout, so that the block stays and every check has work.
    let keep = allocator
        .allocate(
            reqs(&device, 256, 16),
            AllocationType::Linear,
            &named("kept"),
            None,
        )
        .unwrap();
    let stop = std::sync::atomic::AtomicBool::new(false);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    let (checks, made) = std::thread::scope(|s| {
        let checker = s.spawn(|| {
            let mut checks = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if let Err(e) = allocator.check_corruption(all) {
                    stop.store(true, std::sync::atomic::Ordering::Relaxed);
                    panic!("false damage after {checks} clean checks: {e}");
                }
                checks += 1;
            }
            checks
        });
        let mut made = 0u64;
        let mut rng = Rng(23);
        while !stop.load(std::sync::atomic::Ordering::Relaxed)
            && std::time::Instant::now() < deadline
        {
            let size = 1 + rng.below(4 * KIB);
            let a = allocator
                .allocate(
                    reqs(&device, size, 4),
                    AllocationType::Linear,
                    &named("churn"),
                    None,
                )
                .unwrap();
            assert!(!a.is_dedicated());
            made += 1;
            drop(a);
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        (
            checker.join().expect("the checking thread reported damage"),
            made,
        )
    });
    assert!(
        checks > 0 && made > 0,
        "{checks} checks, {made} allocations"
    );
    drop(keep);
    drop(allocator);
    sim.assert_nothing_allocated();
}
