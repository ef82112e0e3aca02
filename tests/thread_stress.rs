//! Threads racing on everything at once, under heap pressure: the allocator's default block
//! vectors (small blocks cut into arenas, made and released all the time), a custom pool that
//! is dropped while other threads still hold and free its allocations, dedicated allocations,
//! names (block metadata), `within_budget` requests against a small simulated budget, reads
//! and writes, frees of other threads' allocations, and statistics and snapshots taken while
//! others allocate.
//!
//! Checked between rounds (all threads paused) and at the end: no two live allocations of one
//! memory object overlap, every allocation still holds its pattern, the statistics count
//! exactly the live allocations and the live memory objects, and once everything is dropped
//! no memory object is left. A watchdog fails the test if the threads do not finish (a
//! deadlock).

mod common;
mod support;

use ash::vk::Handle;
use ash_memory::*;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::{check_triples, fill, verify, GpuLayout, Rng, Sim, SimFeatures, KIB, MIB};

const THREADS: u64 = 6;
const ROUNDS: u64 = 3;
const OPS: u64 = 600;
/// The whole test must end well within this (it takes about a second on lavapipe).
const DEADLOCK_TIMEOUT: Duration = Duration::from_secs(60);

struct Live {
    alloc: MemoryAlloc,
    seed: u64,
    len: u64,
    alignment: u64,
    from_pool: bool,
}

/// What the threads share: the allocator, the round's pool (dropped by one thread during the
/// round) and allocations handed over for other threads to check and free.
struct Shared {
    allocator: StandardMemoryAllocator,
    pool: Mutex<Option<MemoryPool>>,
    handed_over: Mutex<Vec<Live>>,
}

/// Errors a request may meet under heap, budget and pool pressure; anything else fails.
fn expected_failure(e: &AllocationError) -> bool {
    matches!(
        e,
        AllocationError::OutOfDeviceMemory
            | AllocationError::BudgetExceeded(_)
            | AllocationError::PoolFull { .. }
            | AllocationError::OutOfPoolMemory
            | AllocationError::TooManyObjects { .. }
    )
}

fn allocate_one(shared: &Shared, rng: &mut Rng, seed: u64) -> Option<Live> {
    let pool = if rng.range(0, 3) == 0 {
        shared.pool.lock().unwrap().clone()
    } else {
        None
    };
    let size = match rng.range(0, 20) {
        // Up to half a pool block in a pool; past a block in the allocator (dedicated).
        0 if pool.is_some() => rng.range(512 * KIB, MIB),
        0 => rng.range(MIB, 5 * MIB),
        1..=4 => rng.range(64 * KIB, 512 * KIB),
        _ => rng.range(1, 16 * KIB),
    };
    let alignment = 1 << rng.range(0, 10);
    let requirements = AllocationRequirements {
        layout: DeviceLayout::from_size_alignment(size, alignment).unwrap(),
        memory_type_bits: shared
            .allocator
            .device()
            .memory_properties()
            .all_types_mask(),
        prefers_dedicated_allocation: rng.range(0, 25) == 0,
        requires_dedicated_allocation: false,
    };
    let info = AllocationCreateInfo {
        usage: *rng.pick(&[MemoryUsage::Upload, MemoryUsage::Download]),
        allocate_preference: if rng.range(0, 30) == 0 {
            MemoryAllocatePreference::AlwaysAllocate
        } else {
            MemoryAllocatePreference::Auto
        },
        within_budget: rng.range(0, 3) == 0,
        name: (rng.range(0, 4) == 0).then(|| format!("a{seed}").into()),
        ..Default::default()
    };
    let kind = *rng.pick(&[AllocationType::Linear, AllocationType::NonLinear]);
    let result = match &pool {
        Some(pool) => pool.allocate(requirements, kind, &info, None),
        None => shared.allocator.allocate(requirements, kind, &info, None),
    };
    let mut alloc = match result {
        Ok(alloc) => alloc,
        Err(e) if expected_failure(&e) => return None,
        Err(e) => panic!("allocation of {size} bytes failed: {e}"),
    };
    let len = size.min(8 * KIB);
    fill(&mut alloc, seed, len);
    Some(Live {
        alloc,
        seed,
        len,
        alignment,
        from_pool: pool.is_some(),
    })
}

/// Checks and frees `live`, overwriting it first: a range that another allocation also
/// holds shows up there as a broken pattern.
fn check_and_free(live: Live, what: &str) {
    verify(&live.alloc, live.seed, live.len, what);
    let mut alloc = live.alloc;
    alloc
        .write(0, &support::pattern(!live.seed, live.len as usize))
        .unwrap();
}

fn worker(shared: &Shared, thread: u64, round: u64, mut live: Vec<Live>) -> Vec<Live> {
    let mut rng = Rng(thread << 8 | round);
    for op in 0..OPS {
        let seed = (round << 48) | (thread << 32) | op;
        match rng.range(0, 20) {
            0..=8 => {
                if let Some(l) = allocate_one(shared, &mut rng, seed) {
                    live.push(l);
                }
            }
            9..=10 if !live.is_empty() => {
                let l = &live[rng.range(0, live.len() as u64) as usize];
                verify(&l.alloc, l.seed, l.len, "verify");
            }
            11..=14 if !live.is_empty() => {
                let l = live.swap_remove(rng.range(0, live.len() as u64) as usize);
                check_and_free(l, "own free");
            }
            19 if !live.is_empty() && rng.range(0, 2) == 0 => {
                // Renamed (or named) while others allocate and free in its block.
                let i = rng.range(0, live.len() as u64) as usize;
                let name = format!("r{}", live[i].seed);
                live[i].alloc.set_name(Some(name.into()));
            }
            15 if !live.is_empty() => {
                let l = live.swap_remove(rng.range(0, live.len() as u64) as usize);
                shared.handed_over.lock().unwrap().push(l);
            }
            16..=17 => {
                let taken = shared.handed_over.lock().unwrap().pop();
                if let Some(l) = taken {
                    check_and_free(l, "free of another thread's allocation");
                }
            }
            18 => {
                let stats = shared.allocator.statistics();
                let types: u64 = stats
                    .memory_types
                    .iter()
                    .map(|t| t.statistics.allocation_count)
                    .sum();
                let heaps: u64 = stats
                    .heaps
                    .iter()
                    .map(|h| h.statistics.allocation_count)
                    .sum();
                assert_eq!(stats.total.allocation_count, types);
                assert_eq!(stats.total.allocation_count, heaps);
                if rng.range(0, 4) == 0 {
                    let json = shared.allocator.snapshot().to_json();
                    assert!(json.starts_with('{'));
                }
            }
            19 if thread == round % THREADS && op > OPS / 2 => {
                // The round's pool goes while other threads hold (and free) its allocations.
                drop(shared.pool.lock().unwrap().take());
            }
            _ => {}
        }
        // Heap pressure: never more than a few dozen allocations per thread.
        if live.len() > 24 {
            let l = live.swap_remove(0);
            check_and_free(l, "trim");
        }
    }
    live
}

/// Pauses between rounds: every allocation (the threads' and the handed-over ones) is
/// checked for overlap and data, and the statistics against them and the simulated driver.
fn check_quiescent(sim: &Sim, shared: &Shared, lives: &[Vec<Live>]) {
    let handed = shared.handed_over.lock().unwrap();
    let all: Vec<&Live> = lives.iter().flatten().chain(handed.iter()).collect();
    for l in &all {
        verify(&l.alloc, l.seed, l.len, "between rounds");
    }
    let triples: Vec<_> = all.iter().map(|l| (&l.alloc, l.alignment)).collect();
    check_triples(
        &triples,
        &sim.state,
        sim.state.layout.buffer_image_granularity,
    );
    // Every round's pool is dropped by now: its allocations live on, and the allocator's
    // statistics and snapshot go on showing them (under the pool's name) until they are freed.
    let stats = shared.allocator.statistics();
    let in_pools: Vec<&&Live> = all.iter().filter(|l| l.from_pool).collect();
    let pooled: u64 = stats
        .pools
        .iter()
        .map(|p| p.statistics.allocation_count)
        .sum();
    assert_eq!(
        pooled,
        in_pools.len() as u64,
        "a dropped pool's live allocations are not listed"
    );
    assert_eq!(
        stats.total.allocation_count,
        all.len() as u64,
        "the statistics do not count the live allocations"
    );
    assert_eq!(
        stats.total.block_count + stats.total.dedicated_count,
        sim.state.live_objects() as u64,
        "statistics and the driver disagree on the memory objects"
    );
    // Every live allocation's name is where it lies, and no freed one's is left.
    let mut named: Vec<(u64, u64, String)> = all
        .iter()
        .filter_map(|l| {
            let name = l.alloc.name()?.to_owned();
            Some((l.alloc.memory().as_raw(), l.alloc.offset(), name))
        })
        .collect();
    let mut shown: Vec<(u64, u64, String)> = shared
        .allocator
        .snapshot()
        .blocks
        .iter()
        .flat_map(|b| {
            b.ranges
                .iter()
                .filter_map(move |r| Some((b.memory, r.offset, r.name.as_deref()?.to_owned())))
        })
        .collect();
    named.sort();
    shown.sort();
    assert_eq!(
        shown, named,
        "the snapshot's names are not the live allocations'"
    );
    // The dropped pools' memory included.
    let heap_used: u64 = (0..sim.state.layout.heaps.len() as u32)
        .map(|h| sim.state.heap_used(h))
        .sum();
    assert_eq!(stats.total.reserved_bytes, heap_used);
}

fn run(sim: &Sim) {
    let device = sim.memory_device_claimed();
    let allocator = StandardMemoryAllocator::new(
        device.clone(),
        GenericMemoryAllocatorCreateInfo {
            block_sizes: BlockSizeThresholds::uniform(4 * MIB).unwrap(),
            block_arenas: Some(4),
            debug: DebugOptions {
                leak_check: LeakCheck::Off,
                ..Default::default()
            },
            ..Default::default()
        },
    )
    .unwrap();
    let shared = Arc::new(Shared {
        allocator,
        pool: Mutex::new(None),
        handed_over: Mutex::new(Vec::new()),
    });
    let mut lives: Vec<Vec<Live>> = (0..THREADS).map(|_| Vec::new()).collect();
    for round in 0..ROUNDS {
        let made = shared
            .allocator
            .create_pool::<FreeListAllocator>(&PoolCreateInfo {
                memory_type: PoolMemoryType::Find {
                    memory_type_bits: u32::MAX,
                    usage: MemoryUsage::Upload,
                },
                block_size: 2 * MIB,
                min_block_count: 1,
                max_block_count: 3,
                ..Default::default()
            });
        // The heap may be full of the live allocations: then this round has no pool.
        let pool = match made {
            Ok(pool) => Some(pool),
            Err(e) if expected_failure(&e) => None,
            Err(e) => panic!("creating the round's pool: {e}"),
        };
        *shared.pool.lock().unwrap() = pool;
        let handles: Vec<_> = std::mem::take(&mut lives)
            .into_iter()
            .enumerate()
            .map(|(t, live)| {
                let shared = shared.clone();
                std::thread::spawn(move || worker(&shared, t as u64, round, live))
            })
            .collect();
        lives = handles
            .into_iter()
            .map(|h| h.join().expect("worker panicked"))
            .collect();
        drop(shared.pool.lock().unwrap().take());
        check_quiescent(sim, &shared, &lives);
    }
    // Everything is freed from other threads than the ones that made it, at once.
    let mut rest: Vec<Live> = lives.into_iter().flatten().collect();
    rest.append(&mut shared.handed_over.lock().unwrap());
    let mut chunks: Vec<Vec<Live>> = (0..THREADS).map(|_| Vec::new()).collect();
    for (i, l) in rest.into_iter().enumerate() {
        chunks[i % THREADS as usize].push(l);
    }
    let handles: Vec<_> = chunks
        .into_iter()
        .map(|c| {
            std::thread::spawn(move || {
                for l in c {
                    check_and_free(l, "final free");
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("freeing thread panicked");
    }
    let stats = shared.allocator.statistics();
    assert_eq!(stats.total.allocation_count, 0);
    assert_eq!(stats.total.dedicated_count, 0);
    assert!(stats.pools.is_empty(), "a dropped pool is still listed");
    assert_eq!(
        stats.total.block_count,
        sim.state.live_objects() as u64,
        "only kept empty blocks are left"
    );
    drop(shared);
    assert_eq!(device.live_memory_objects(), 0);
}

/// Runs `f` on a thread of its own and fails if it does not end within the timeout.
fn with_watchdog(f: impl FnOnce() + Send + 'static) {
    let (done, finished) = mpsc::channel();
    let worker = std::thread::spawn(move || {
        f();
        let _ = done.send(());
    });
    match finished.recv_timeout(DEADLOCK_TIMEOUT) {
        Ok(()) => worker.join().unwrap(),
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            // The closure panicked: report its panic.
            if let Err(panic) = worker.join() {
                std::panic::resume_unwind(panic);
            }
        }
        Err(mpsc::RecvTimeoutError::Timeout) => {
            panic!("threads did not finish within {DEADLOCK_TIMEOUT:?}: a deadlock")
        }
    }
}

#[test]
fn threads_race_on_blocks_pools_dedicated_budget_and_statistics() {
    with_watchdog(|| {
        let sim = Sim::with_features(
            GpuLayout::small_heaps(48 * MIB, 64 * MIB),
            SimFeatures {
                memory_budget: true,
                ..Default::default()
            },
        );
        // A budget well under the host heap: `within_budget` requests fail at times, and
        // kept empty blocks are given back past it.
        sim.state.set_heap_budget(1, 28 * MIB);
        sim.state.set_heap_budget(0, 36 * MIB);
        run(&sim);
        sim.assert_nothing_allocated();
    });
}

/// The empty blocks an allocator keeps give their memory back when a heap runs out, even
/// while other threads look at the same block lists (here: statistics taken in a loop, which
/// hold a copy of every list in turn): a dedicated allocation that fits only once they are
/// released must not fail.
#[test]
fn kept_blocks_are_released_for_a_full_heap_while_other_threads_read_the_lists() {
    with_watchdog(|| {
        let sim = Sim::new(GpuLayout::small_heaps(64 * MIB, 32 * MIB));
        let device = sim.memory_device();
        let allocator = Arc::new(
            StandardMemoryAllocator::new(
                device.clone(),
                GenericMemoryAllocatorCreateInfo {
                    block_sizes: BlockSizeThresholds::uniform(4 * MIB).unwrap(),
                    grow_blocks: false,
                    block_arenas: Some(1),
                    ..Default::default()
                },
            )
            .unwrap(),
        );
        let stop = Arc::new(AtomicBool::new(false));
        let walks = Arc::new(AtomicU64::new(0));
        let readers: Vec<_> = (0..3)
            .map(|_| {
                let allocator = allocator.clone();
                let stop = stop.clone();
                let walks = walks.clone();
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::hint::black_box(allocator.statistics());
                        walks.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        // Until the readers are at work.
        let readers_at_work = |since: u64| {
            while walks.load(Ordering::Relaxed) < since + 3 {
                std::thread::yield_now();
            }
        };
        let request = |usage: MemoryUsage, size: u64, pref: MemoryAllocatePreference| {
            let requirements = AllocationRequirements {
                layout: DeviceLayout::from_size_alignment(size, 256).unwrap(),
                memory_type_bits: device.memory_properties().all_types_mask(),
                prefers_dedicated_allocation: false,
                requires_dedicated_allocation: false,
            };
            let info = AllocationCreateInfo {
                usage,
                allocate_preference: pref,
                ..Default::default()
            };
            allocator.allocate(requirements, AllocationType::Linear, &info, None)
        };
        let upload = allocator
            .find_memory_type_index(u32::MAX, MemoryUsage::Upload.into())
            .unwrap();
        // Many small allocations in the uploads' first block: each statistics walk of the
        // uploads' list takes a while, so the readers hold a copy of it most of the time.
        let small: Vec<_> = (0..2000)
            .map(|_| request(MemoryUsage::Upload, 256, MemoryAllocatePreference::Auto))
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(allocator.block_count(upload), 1);
        for round in 0..12 {
            // Four blocks of uploads, all freed: their blocks are kept for reuse.
            let uploads: Vec<_> = (0..8)
                .map(|_| request(MemoryUsage::Upload, 2 * MIB, MemoryAllocatePreference::Auto))
                .collect::<Result<_, _>>()
                .unwrap();
            drop(uploads);
            readers_at_work(walks.load(Ordering::Relaxed));
            let kept = allocator.block_count(upload) as u64 - 1;
            assert!(kept >= 2, "round {round}: {kept} blocks kept");
            // Only fits once at least one kept block is given back.
            let size = 32 * MIB - (kept + 1) * 4 * MIB + 4 * MIB;
            let big = request(
                MemoryUsage::Download,
                size,
                MemoryAllocatePreference::AlwaysAllocate,
            )
            .unwrap_or_else(|e| {
                panic!("round {round}: {size} bytes with {kept} empty blocks kept: {e}")
            });
            drop(big);
        }
        drop(small);
        stop.store(true, Ordering::Relaxed);
        for r in readers {
            r.join().unwrap();
        }
        drop(allocator);
        sim.assert_nothing_allocated();
    });
}
