//! Names in snapshots taken while other threads allocate, rename and free, on the real driver.
//!
//! A snapshot reads a block's allocation names (its metadata, under the block's metadata
//! lock) and its ranges (under each arena's lock) separately. It must never show a name on
//! the wrong range: a freed or renamed allocation's old name, or a name on a range that a
//! new allocation took over at the same offset. Every name here says where its allocation
//! lies (`serial@memory+offset+size`); a checker thread takes snapshots all the while and
//! checks that each name sits on an allocated range of its own memory object that holds its
//! allocation, and that no name retired (its allocation freed, or renamed) before the
//! snapshot began is shown.

mod common;

use ash::vk::Handle;
use ash_memory::*;
use common::{Rng, TestContext};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

const WORKERS: u64 = 3;
/// Each worker takes at least this many steps, and goes on until the checker has taken
/// [`SNAPSHOTS`] snapshots and seen some name in one, up to [`MAX_STEPS`] (on a loaded
/// machine the checker may take its snapshots before the workers start, or not run while
/// they work).
const STEPS: u64 = 5_000;
const SNAPSHOTS: u64 = 300;
const MAX_STEPS: u64 = 200_000;
/// A worker takes at most this many steps per snapshot the checker took (plus one), so that
/// it never runs far ahead of a checker that gets little time on a loaded machine.
const PACE: u64 = 500;

/// What the workers share with the checker.
struct Shared {
    serial: AtomicU64,
    /// Counts retirements: a name is retired when its allocation was freed or renamed.
    retirements: AtomicU64,
    /// For each serial, the retirement count at which its name was retired (0: not yet),
    /// stored only after the free or rename returned.
    retired: Vec<AtomicU64>,
    /// Snapshots checked so far.
    snapshots: AtomicU64,
    /// Names seen in them so far.
    named: AtomicU64,
    done: AtomicBool,
}

impl Shared {
    fn retire(&self, serial: u64) {
        let at = self.retirements.fetch_add(1, Ordering::AcqRel) + 1;
        self.retired[serial as usize].store(at, Ordering::Release);
    }

    /// Whether `serial`'s name was retired by the time the counter read `before`.
    fn retired_by(&self, serial: u64, before: u64) -> bool {
        let at = self.retired[serial as usize].load(Ordering::Acquire);
        at != 0 && at <= before
    }
}

struct Live {
    alloc: MemoryAlloc,
    serial: u64,
}

/// Names `alloc` after where it lies, under a new serial; returns the serial.
fn name(alloc: &mut MemoryAlloc, shared: &Shared) -> u64 {
    let serial = shared.serial.fetch_add(1, Ordering::Relaxed);
    let text = format!(
        "{serial}@{:x}+{}+{}",
        alloc.memory().as_raw(),
        alloc.offset(),
        alloc.size()
    );
    alloc.set_name(Some(text.into()));
    serial
}

fn work(target: &dyn MemoryAllocator, shared: &Shared, seed: u64) {
    let mut rng = Rng(seed);
    let types = target.device().memory_properties().memory_types.len();
    let memory_type_bits = u32::MAX >> (32 - types);
    let mut live: Vec<Live> = Vec::new();
    let mut step = 0;
    while step < MAX_STEPS {
        let snapshots = shared.snapshots.load(Ordering::Relaxed);
        if step >= STEPS && snapshots >= SNAPSHOTS && shared.named.load(Ordering::Relaxed) > 0 {
            break;
        }
        if step >= (snapshots + 1) * PACE {
            std::thread::yield_now();
            continue;
        }
        step += 1;
        match rng.below(4) {
            0 | 1 if live.len() < 64 => {
                let size = 64 * rng.range(1, 64);
                let requirements = AllocationRequirements {
                    layout: DeviceLayout::from_size_alignment(size, 64).unwrap(),
                    memory_type_bits,
                    prefers_dedicated_allocation: false,
                    requires_dedicated_allocation: false,
                };
                let mut alloc = target
                    .allocate(
                        requirements,
                        AllocationType::Linear,
                        &Default::default(),
                        None,
                    )
                    .unwrap();
                let serial = name(&mut alloc, shared);
                live.push(Live { alloc, serial });
            }
            2 if !live.is_empty() => {
                let i = rng.below(live.len() as u64) as usize;
                let old = live[i].serial;
                live[i].serial = name(&mut live[i].alloc, shared);
                shared.retire(old);
            }
            _ if !live.is_empty() => {
                let i = rng.below(live.len() as u64) as usize;
                let gone = live.swap_remove(i);
                drop(gone.alloc);
                shared.retire(gone.serial);
            }
            _ => {}
        }
    }
    for l in live {
        drop(l.alloc);
        shared.retire(l.serial);
    }
}

/// Checks one snapshot against the names retired before it began (by the time the
/// retirement counter read `before`); returns the names seen.
fn check(snapshot: &MemorySnapshot, shared: &Shared, before: u64) -> usize {
    let mut seen = 0;
    for b in &snapshot.blocks {
        for r in &b.ranges {
            let Some(names) = &r.name else { continue };
            assert!(
                matches!(r.kind, RangeKind::Allocated(_)),
                "a name on a free range: {names}"
            );
            for text in names.split(", ") {
                let (serial, place) = text.split_once('@').expect("serial@place");
                let serial: u64 = serial.parse().unwrap();
                let mut parts = place.split('+');
                let memory = u64::from_str_radix(parts.next().unwrap(), 16).unwrap();
                let offset: u64 = parts.next().unwrap().parse().unwrap();
                let size: u64 = parts.next().unwrap().parse().unwrap();
                assert!(
                    !shared.retired_by(serial, before),
                    "the retired name {text} is shown on {}+{} of {:#x}",
                    r.offset,
                    r.size,
                    b.memory
                );
                assert_eq!(memory, b.memory, "{text} shown in another memory object");
                assert!(
                    r.offset <= offset && offset + size <= r.offset + r.size,
                    "{text} shown on the range {}+{}, which does not hold it",
                    r.offset,
                    r.size
                );
                seen += 1;
            }
        }
    }
    seen
}

#[test]
fn snapshots_taken_while_threads_rename_and_free_show_each_name_on_its_own_range() {
    let ctx = TestContext::new();
    let allocator = StandardMemoryAllocator::new_default(ctx.memory_device());
    let pool = allocator
        .create_pool::<BuddyAllocator>(&PoolCreateInfo {
            name: Some("buddies".into()),
            block_size: 1 << 20,
            ..Default::default()
        })
        .unwrap();
    let shared = Shared {
        serial: AtomicU64::new(0),
        retirements: AtomicU64::new(0),
        // Each step names at most one allocation.
        retired: (0..WORKERS * MAX_STEPS)
            .map(|_| AtomicU64::new(0))
            .collect(),
        snapshots: AtomicU64::new(0),
        named: AtomicU64::new(0),
        done: AtomicBool::new(false),
    };
    let (snapshots, names) = std::thread::scope(|s| {
        let checker = s.spawn(|| {
            let mut names = 0;
            loop {
                let finished = shared.done.load(Ordering::Acquire);
                let before = shared.retirements.load(Ordering::Acquire);
                let seen = check(&allocator.snapshot(), &shared, before);
                names += seen;
                shared.named.fetch_add(seen as u64, Ordering::Relaxed);
                let snapshots = shared.snapshots.fetch_add(1, Ordering::Relaxed) + 1;
                // Let the workers in on a machine with few cores.
                std::thread::yield_now();
                if finished {
                    return (snapshots, names);
                }
            }
        });
        let workers: Vec<_> = (0..WORKERS)
            .map(|w| {
                let (allocator, pool, shared) = (&allocator, &pool, &shared);
                s.spawn(move || {
                    let target: &dyn MemoryAllocator = if w % 2 == 0 { allocator } else { pool };
                    work(target, shared, 0x5eed_0000 + w);
                })
            })
            .collect();
        // Every worker is joined before the checker is told to stop, even one that failed.
        let results: Vec<_> = workers.into_iter().map(|w| w.join()).collect();
        shared.done.store(true, Ordering::Release);
        let checked = checker.join().unwrap();
        for r in results {
            r.unwrap();
        }
        checked
    });
    assert!(snapshots >= SNAPSHOTS, "{snapshots} snapshots");
    assert!(names > 0, "no name was ever seen in {snapshots} snapshots");
    // Everything was freed: no name is left, and the last snapshot shows none.
    assert_eq!(check(&allocator.snapshot(), &shared, 0), 0);
    drop(pool);
    assert_eq!(allocator.statistics().total.allocation_count, 0);
}
