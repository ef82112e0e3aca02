//! Threads sharing one allocator: random allocate / write / verify / free, then every live
//! allocation's data is checked, the survivors are freed from other threads than the ones
//! that made them, and nothing is left allocated.

mod common;
mod support;

use ash_memory::*;
use std::sync::{Arc, Barrier};
use support::{fill, pattern, verify, GpuLayout, Rng, Sim, KIB, MIB};

/// The types a shared allocator needs to be shareable, checked at compile time. They hold
/// through the auto traits (the only `unsafe impl`s are on `MemoryObject`, for its mapping
/// pointer).
#[allow(dead_code)]
fn bounds() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<StandardMemoryAllocator>();
    send_sync::<GenericMemoryAllocator<BuddyAllocator>>();
    send_sync::<GenericMemoryAllocator<SlotAllocator<{ 64 * 1024 }>>>();
    send_sync::<GenericMemoryAllocator<BumpAllocator>>();
    send_sync::<MemoryAlloc>();
    send_sync::<MemoryDevice>();
    send::<FreeListAllocator>();
    send::<BuddyAllocator>();
    send::<BumpAllocator>();
    send::<SlotAllocator<256>>();
}

fn soak() -> u64 {
    if std::env::var_os("ASH_MEMORY_SOAK").is_some() {
        20
    } else {
        1
    }
}

struct Live {
    alloc: MemoryAlloc,
    seed: u64,
    len: u64,
}

fn worker(allocator: &StandardMemoryAllocator, seed: u64, ops: u64) -> Vec<Live> {
    let mut rng = Rng(seed);
    let mut live: Vec<Live> = Vec::new();
    for op in 0..ops {
        match rng.range(0, 10) {
            0..=4 => {
                let size = if rng.range(0, 20) == 0 {
                    rng.range(MIB, 3 * MIB)
                } else {
                    rng.range(1, 64 * KIB)
                };
                let usage = *rng.pick(&[MemoryUsage::Upload, MemoryUsage::Download]);
                let pref = if rng.range(0, 10) == 0 {
                    MemoryAllocatePreference::AlwaysAllocate
                } else {
                    MemoryAllocatePreference::Auto
                };
                let info = AllocationCreateInfo {
                    usage,
                    allocate_preference: pref,
                    ..Default::default()
                };
                let reqs = AllocationRequirements {
                    layout: DeviceLayout::from_size_alignment(size, 1 << rng.range(0, 9)).unwrap(),
                    memory_type_bits: u32::MAX >> (32 - 4),
                    prefers_dedicated_allocation: false,
                    requires_dedicated_allocation: false,
                };
                let kind = *rng.pick(&[AllocationType::Linear, AllocationType::NonLinear]);
                let mut alloc = allocator
                    .allocate(reqs, kind, &info, None)
                    .unwrap_or_else(|e| panic!("thread {seed} op {op}: {e}"));
                let len = size.min(4 * KIB);
                let s = seed << 32 | op;
                fill(&mut alloc, s, len);
                live.push(Live {
                    alloc,
                    seed: s,
                    len,
                });
            }
            5..=6 if !live.is_empty() => {
                let i = rng.range(0, live.len() as u64) as usize;
                let l = &live[i];
                verify(&l.alloc, l.seed, l.len, "verify");
            }
            _ if !live.is_empty() => {
                let i = rng.range(0, live.len() as u64) as usize;
                let l = live.swap_remove(i);
                verify(&l.alloc, l.seed, l.len, "before free");
                // Overwrite before freeing: a range still in use elsewhere would show it.
                let mut a = l.alloc;
                a.write(0, &pattern(!l.seed, l.len as usize)).unwrap();
            }
            _ => {}
        }
    }
    live
}

fn run_threads(threads: u64) {
    let sim = Sim::new(GpuLayout::amd_discrete_bar());
    let device = sim.memory_device();
    // Four arenas per block whatever the machine's CPU count, so that threads share blocks
    // but mostly not arenas, and allocations are freed in other threads' arenas below.
    let allocator = Arc::new(
        StandardMemoryAllocator::new(
            device.clone(),
            GenericMemoryAllocatorCreateInfo {
                block_arenas: Some(4),
                ..Default::default()
            },
        )
        .unwrap(),
    );
    let barrier = Arc::new(Barrier::new(threads as usize));
    let ops = 4000 / threads * soak();
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let allocator = allocator.clone();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                worker(&allocator, 1000 + t, ops)
            })
        })
        .collect();
    let mut survivors: Vec<Live> = handles
        .into_iter()
        .flat_map(|h| h.join().expect("worker panicked"))
        .collect();
    assert!(!survivors.is_empty());
    for l in &survivors {
        verify(&l.alloc, l.seed, l.len, "survivor");
    }
    let all: Vec<_> = survivors.iter().map(|l| (&l.alloc, 1)).collect();
    support::check_triples(&all, &sim.state, sim.state.layout.buffer_image_granularity);
    // Free the survivors from other threads, concurrently.
    let mut rng = Rng(threads);
    for i in (1..survivors.len()).rev() {
        survivors.swap(i, rng.range(0, i as u64 + 1) as usize);
    }
    let chunk = survivors.len().div_ceil(threads as usize);
    let mut chunks = Vec::new();
    while !survivors.is_empty() {
        let rest = survivors.split_off(survivors.len().saturating_sub(chunk));
        chunks.push(rest);
    }
    let handles: Vec<_> = chunks
        .into_iter()
        .map(|c| std::thread::spawn(move || drop(c)))
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    // Empty blocks stay around under the high-water mark, up to four times the largest
    // block's size per memory type, then none.
    assert!(device.live_memory_objects() <= 8);
    drop(allocator);
    assert_eq!(device.live_memory_objects(), 0);
    sim.assert_nothing_allocated();
}

#[test]
fn two_threads_share_an_allocator() {
    run_threads(2);
}

#[test]
fn four_threads_share_an_allocator() {
    run_threads(4);
}

#[test]
fn eight_threads_share_an_allocator() {
    run_threads(8);
}
