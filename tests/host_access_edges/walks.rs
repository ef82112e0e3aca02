//! Random walks of host accesses on simulated non-coherent memory: pools of every
//! suballocator, the default allocator's blocks and dedicated memory, with and without debug
//! margins; and allocations that outlive their allocator.

use crate::support::{pattern, Sim, KIB};
use crate::{config, mobile, range_in, request, NON_COHERENT};
use ash_memory::*;
use proptest::prelude::*;

/// One live allocation and what it must hold.
struct Held {
    alloc: MemoryAlloc,
    /// The bytes written to it, all `size()` of them.
    model: Vec<u8>,
    /// The size of its memory object.
    object_size: u64,
}

/// One step of a walk; the numbers are folded into the allocation's bounds.
#[derive(Clone, Debug)]
enum Step {
    Allocate {
        size: u64,
        alignment_log2: u32,
    },
    Free {
        which: usize,
    },
    Write {
        which: usize,
        at: u64,
        len: u64,
        seed: u64,
    },
    WriteValue {
        which: usize,
        at: u64,
        value: u64,
    },
    WriteSlice {
        which: usize,
        at: u64,
        len: u64,
        seed: u64,
    },
    ThroughSlice {
        which: usize,
        at: u64,
        len: u64,
        seed: u64,
    },
    Read {
        which: usize,
        at: u64,
        len: u64,
    },
    ReadValue {
        which: usize,
        at: u64,
    },
    Edge {
        which: usize,
        kind: u8,
        len: u64,
    },
}

fn step() -> impl Strategy<Value = Step> {
    let which = any::<usize>();
    prop_oneof![
        3 => (1u64..6 * KIB, 0u32..9)
            .prop_map(|(size, alignment_log2)| Step::Allocate { size, alignment_log2 }),
        1 => which.prop_map(|which| Step::Free { which }),
        3 => (which, any::<u64>(), any::<u64>(), any::<u64>())
            .prop_map(|(which, at, len, seed)| Step::Write { which, at, len, seed }),
        1 => (which, any::<u64>(), any::<u64>())
            .prop_map(|(which, at, value)| Step::WriteValue { which, at, value }),
        1 => (which, any::<u64>(), any::<u64>(), any::<u64>())
            .prop_map(|(which, at, len, seed)| Step::WriteSlice { which, at, len, seed }),
        2 => (which, any::<u64>(), any::<u64>(), any::<u64>())
            .prop_map(|(which, at, len, seed)| Step::ThroughSlice { which, at, len, seed }),
        3 => (which, any::<u64>(), any::<u64>())
            .prop_map(|(which, at, len)| Step::Read { which, at, len }),
        1 => (which, any::<u64>()).prop_map(|(which, at)| Step::ReadValue { which, at }),
        2 => (which, 0u8..8, 0u64..64)
            .prop_map(|(which, kind, len)| Step::Edge { which, kind, len }),
    ]
}

/// The whole atoms of `[offset, offset + len)` of `held`'s allocation, in its memory object:
/// what a flush or invalidate of the range must cover, `(memory offset, size)`.
fn atoms_of(held: &Held, offset: u64, len: u64, atom: u64) -> (u64, u64) {
    let start = held.alloc.offset() + offset;
    let first = start / atom * atom;
    let end = (start + len).div_ceil(atom) * atom;
    let end = end.min(held.object_size);
    (first, end - first)
}

/// Checks that the syncs logged from `from` on are exactly `expected` (`(offset, size,
/// is_flush)` of `held`'s memory), and that none leaves the allocation's atoms.
fn assert_syncs(
    sim: &Sim,
    from: usize,
    held: &Held,
    expected: &[(u64, u64, bool)],
    atom: u64,
    what: &str,
) {
    let syncs = sim.state.syncs();
    let got: Vec<(u64, u64, bool)> = syncs[from..]
        .iter()
        .map(|&(memory, offset, size, flush)| {
            assert_eq!(
                memory,
                held.alloc.memory(),
                "{what}: a sync of another object"
            );
            (offset, size, flush)
        })
        .collect();
    assert_eq!(
        got, expected,
        "{what}: flushes / invalidates (offset, size, flush)"
    );
    let (lo, len) = atoms_of(held, 0, held.alloc.size(), atom);
    for (offset, size, _) in got {
        assert!(
            lo <= offset && offset + size <= lo + len,
            "{what}: sync {offset}+{size} leaves the allocation's atoms {lo}+{len}"
        );
    }
}

/// Invalidates every allocation whole (the device copy replaces the host's bytes) and checks
/// that each still holds its model: every write reached the device, and no access of one
/// allocation changed another's bytes.
fn assert_all_hold(held: &[Held], what: &str) {
    for (i, h) in held.iter().enumerate() {
        h.alloc.invalidate(0, h.alloc.size()).unwrap();
        let slice = h.alloc.mapped_slice().unwrap();
        if let Some(at) = slice.iter().zip(&h.model).position(|(a, b)| a != b) {
            panic!(
                "{what}: allocation {i} ({:?}+{}, {} bytes) lost byte {at}",
                h.alloc.memory(),
                h.alloc.offset(),
                h.alloc.size()
            );
        }
    }
}

/// Runs `steps` on allocations made by `allocate(size, alignment)` in non-coherent memory of
/// atom size `atom` (with debug margins: not on atoms themselves), calling `after_step`
/// after each.
fn run_walk(
    sim: &Sim,
    atom: u64,
    steps: &[Step],
    margins: bool,
    mut allocate: impl FnMut(u64, u64) -> Option<MemoryAlloc>,
    mut after_step: impl FnMut(&str),
) {
    let mut held: Vec<Held> = Vec::new();
    for (n, step) in steps.iter().enumerate() {
        let what = format!("step {n} {step:?}");
        let pick = |which: usize, held: &[Held]| (!held.is_empty()).then(|| which % held.len());
        let from = sim.state.syncs().len();
        match *step {
            Step::Allocate {
                size,
                alignment_log2,
            } => {
                if held.len() >= 24 {
                    continue;
                }
                let Some(mut alloc) = allocate(size, 1 << alignment_log2) else {
                    continue;
                };
                assert_eq!(alloc.memory_type_index(), NON_COHERENT);
                assert!(alloc.size() >= size, "{what}: size {}", alloc.size());
                if alloc.is_dedicated() {
                    // Nothing to round: no neighbour.
                } else if margins {
                    // The margins lie around exactly the size asked for.
                    assert_eq!(alloc.size(), size, "{what}: size with margins");
                } else {
                    assert_eq!(alloc.offset() % atom, 0, "{what}: offset on an atom");
                    assert_eq!(alloc.size() % atom, 0, "{what}: size in whole atoms");
                }
                let object_size = sim
                    .state
                    .calls()
                    .iter()
                    .rev()
                    .find(|c| c.memory == alloc.memory())
                    .map(|c| c.size)
                    .expect("the allocation's memory object was allocated");
                let model = pattern(n as u64, alloc.size() as usize);
                let from = sim.state.syncs().len();
                alloc.write(0, &model).unwrap();
                let h = Held {
                    alloc,
                    model,
                    object_size,
                };
                let whole = atoms_of(&h, 0, h.alloc.size(), atom);
                assert_syncs(sim, from, &h, &[(whole.0, whole.1, true)], atom, &what);
                held.push(h);
            }
            Step::Free { which } => {
                if let Some(i) = pick(which, &held) {
                    held.swap_remove(i);
                }
            }
            Step::Write {
                which,
                at,
                len,
                seed,
            } => {
                let Some(i) = pick(which, &held) else {
                    continue;
                };
                let h = &mut held[i];
                let (offset, len) = range_in(h.alloc.size(), at, len);
                let data = pattern(seed, len as usize);
                h.alloc.write(offset, &data).unwrap();
                h.model[offset as usize..(offset + len) as usize].copy_from_slice(&data);
                let expected = expected_one(h, offset, len, atom, true);
                assert_syncs(sim, from, h, &expected, atom, &what);
            }
            Step::WriteValue { which, at, value } => {
                let Some(i) = pick(which, &held) else {
                    continue;
                };
                let h = &mut held[i];
                let size = h.alloc.size();
                let offset = at % (size + 1);
                let r = h.alloc.write_value(offset, value);
                if offset + 8 > size {
                    assert!(
                        matches!(r, Err(MemoryAccessError::OutOfBounds { .. })),
                        "{what}: {r:?}"
                    );
                    assert_syncs(sim, from, h, &[], atom, &what);
                } else {
                    r.unwrap();
                    h.model[offset as usize..offset as usize + 8]
                        .copy_from_slice(&value.to_ne_bytes());
                    let expected = expected_one(h, offset, 8, atom, true);
                    assert_syncs(sim, from, h, &expected, atom, &what);
                }
            }
            Step::WriteSlice {
                which,
                at,
                len,
                seed,
            } => {
                let Some(i) = pick(which, &held) else {
                    continue;
                };
                let h = &mut held[i];
                let (offset, len) = range_in(h.alloc.size(), at, len);
                let words: Vec<u32> = pattern(seed, (len / 4 * 4) as usize)
                    .chunks_exact(4)
                    .map(|c| u32::from_ne_bytes(c.try_into().unwrap()))
                    .collect();
                h.alloc.write_slice(offset, &words).unwrap();
                let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_ne_bytes()).collect();
                h.model[offset as usize..offset as usize + bytes.len()].copy_from_slice(&bytes);
                let expected = expected_one(h, offset, bytes.len() as u64, atom, true);
                assert_syncs(sim, from, h, &expected, atom, &what);
            }
            Step::ThroughSlice {
                which,
                at,
                len,
                seed,
            } => {
                let Some(i) = pick(which, &held) else {
                    continue;
                };
                let h = &mut held[i];
                let (offset, len) = range_in(h.alloc.size(), at, len);
                let data = pattern(seed, len as usize);
                let range = offset as usize..(offset + len) as usize;
                h.alloc.mapped_slice_mut().unwrap()[range.clone()].copy_from_slice(&data);
                assert_syncs(sim, from, h, &[], atom, &format!("{what} (no flush yet)"));
                h.alloc.flush(offset, len).unwrap();
                h.model[range].copy_from_slice(&data);
                let expected = expected_one(h, offset, len, atom, true);
                assert_syncs(sim, from, h, &expected, atom, &what);
            }
            Step::Read { which, at, len } => {
                let Some(i) = pick(which, &held) else {
                    continue;
                };
                let h = &held[i];
                let (offset, len) = range_in(h.alloc.size(), at, len);
                let mut out = vec![0xA5; len as usize];
                h.alloc.read(offset, &mut out).unwrap();
                assert!(
                    out == h.model[offset as usize..(offset + len) as usize],
                    "{what}: read back other bytes than written"
                );
                let expected = expected_one(h, offset, len, atom, false);
                assert_syncs(sim, from, h, &expected, atom, &what);
            }
            Step::ReadValue { which, at } => {
                let Some(i) = pick(which, &held) else {
                    continue;
                };
                let h = &held[i];
                let size = h.alloc.size();
                let offset = at % (size + 1);
                let r = h.alloc.read_value::<u32>(offset);
                if offset + 4 > size {
                    assert!(
                        matches!(r, Err(MemoryAccessError::OutOfBounds { .. })),
                        "{what}: {r:?}"
                    );
                    assert_syncs(sim, from, h, &[], atom, &what);
                } else {
                    let o = offset as usize;
                    let want = u32::from_ne_bytes(h.model[o..o + 4].try_into().unwrap());
                    assert_eq!(r.unwrap(), want, "{what}");
                    let expected = expected_one(h, offset, 4, atom, false);
                    assert_syncs(sim, from, h, &expected, atom, &what);
                }
            }
            Step::Edge { which, kind, len } => {
                let Some(i) = pick(which, &held) else {
                    continue;
                };
                edge(&mut held[i], kind, len, &what);
                assert_syncs(sim, from, &held[i], &[], atom, &what);
            }
        }
        assert!(
            sim.state.violations().is_empty(),
            "{what}: {:?}",
            sim.state.violations()
        );
        if n % 16 == 15 {
            assert_all_hold(&held, &what);
        }
        after_step(&what);
    }
    assert_all_hold(&held, "at the end");
}

/// The one flush (or invalidate) an access of `[offset, offset + len)` must make: none for
/// zero bytes.
fn expected_one(h: &Held, offset: u64, len: u64, atom: u64, flush: bool) -> Vec<(u64, u64, bool)> {
    if len == 0 {
        return Vec::new();
    }
    let (o, s) = atoms_of(h, offset, len, atom);
    vec![(o, s, flush)]
}

/// An access that leaves the allocation (`kind` picks which, `len` bytes long, 1 at least
/// where a length of zero would fit): an `OutOfBounds` error naming it, and nothing changed.
fn edge(h: &mut Held, kind: u8, len: u64, what: &str) {
    let size = h.alloc.size();
    let len = len.max(1);
    let data = vec![0xEE; len as usize];
    let mut out = vec![0; len as usize];
    let oob = |r: Result<(), MemoryAccessError>, offset: u64, len: u64| {
        assert_eq!(
            r,
            Err(MemoryAccessError::OutOfBounds { offset, len, size }),
            "{what}: kind {kind}"
        );
    };
    match kind {
        // One byte past the end.
        0 => oob(
            h.alloc.write(size - len.min(size) + 1, &data),
            size - len.min(size) + 1,
            len,
        ),
        1 => oob(
            h.alloc.read(size + 1 - len.min(size), &mut out),
            size + 1 - len.min(size),
            len,
        ),
        // Offset + length overflows.
        2 => oob(
            h.alloc.write(u64::MAX - len + 1, &data),
            u64::MAX - len + 1,
            len,
        ),
        3 => oob(h.alloc.read(u64::MAX, &mut out), u64::MAX, len),
        4 => oob(h.alloc.flush(u64::MAX, len + 1), u64::MAX, len + 1),
        5 => oob(h.alloc.invalidate(size, 1), size, 1),
        // Zero bytes: fine at the end, an error past it.
        6 => {
            h.alloc.write(size, &[]).unwrap();
            h.alloc.read(size, &mut []).unwrap();
            h.alloc.flush(size, 0).unwrap();
            oob(h.alloc.write(size + 1, &[]), size + 1, 0);
            oob(h.alloc.invalidate(size + 1, 0), size + 1, 0);
        }
        _ => {
            let r = h.alloc.write_value::<u16>(size - 1, 7);
            assert_eq!(
                r,
                Err(MemoryAccessError::OutOfBounds {
                    offset: size - 1,
                    len: 2,
                    size
                }),
                "{what}"
            );
            let r = h.alloc.read_value::<u64>(u64::MAX - 3);
            assert!(
                matches!(r, Err(MemoryAccessError::OutOfBounds { .. })),
                "{what}: {r:?}"
            );
        }
    }
}

/// A walk in a pool of `S` on the non-coherent type, blocks of `block_size` bytes (not
/// always a whole number of atoms), with `margin` bytes of debug margins (and fill
/// patterns) checked after every step.
fn pool_walk<S: Suballocator + Send + Sync + 'static>(
    atom: u64,
    block_size: u64,
    margin: u64,
    steps: &[Step],
) {
    let sim = Sim::new(mobile(atom));
    let device = sim.memory_device();
    let allocator = StandardMemoryAllocator::new(
        device.clone(),
        GenericMemoryAllocatorCreateInfo {
            debug: DebugOptions {
                margin,
                fill_patterns: margin > 0,
                ..Default::default()
            },
            ..Default::default()
        },
    )
    .unwrap();
    let pool = allocator
        .create_pool::<S>(&PoolCreateInfo {
            memory_type: PoolMemoryType::Index(NON_COHERENT),
            block_size,
            max_block_count: 4,
            ..Default::default()
        })
        .unwrap();
    let info = AllocationCreateInfo::default();
    let check = |what: &str| {
        if margin > 0 {
            if let Err(e) = pool.check_corruption() {
                panic!("{what}: {e}");
            }
        }
    };
    run_walk(
        &sim,
        atom,
        steps,
        margin > 0,
        |size, alignment| match pool.allocate(
            request(&device, size, alignment),
            AllocationType::Linear,
            &info,
            None,
        ) {
            Ok(a) => Some(a),
            Err(
                AllocationError::PoolFull { .. }
                | AllocationError::SuballocatorBlockSizeExceeded
                | AllocationError::BlockSizeExceeded { .. }
                | AllocationError::OutOfPoolMemory,
            ) => None,
            Err(e) => panic!("{size} bytes at {alignment}: {e}"),
        },
        check,
    );
}

/// A walk of the default allocator's blocks and dedicated memory of sizes that are not
/// multiples of the atom, on the non-coherent type.
///
/// With `margin` bytes of debug margins (and the fill patterns), the margins are checked
/// after every step: no access of an allocation, nor a flush or invalidate of its atoms,
/// touches them.
fn default_walk(atom: u64, margin: u64, steps: &[Step]) {
    let sim = Sim::new(mobile(atom));
    let device = sim.memory_device();
    let allocator = StandardMemoryAllocator::new(
        device.clone(),
        GenericMemoryAllocatorCreateInfo {
            debug: DebugOptions {
                margin,
                fill_patterns: margin > 0,
                ..Default::default()
            },
            ..Default::default()
        },
    )
    .unwrap();
    let info = AllocationCreateInfo::default();
    let mut dedicated = false;
    let check = |what: &str| {
        if margin > 0 {
            if let Err(e) = allocator.check_corruption(u32::MAX) {
                panic!("{what}: {e}");
            }
        }
    };
    run_walk(
        &sim,
        atom,
        steps,
        margin > 0,
        |size, alignment| {
            dedicated = !dedicated;
            Some(if dedicated {
                // Dedicated memory is exactly the size asked for: its last atom is cut short.
                let a = allocator
                    .allocate_dedicated(NON_COHERENT, size, None, &info)
                    .unwrap();
                assert_eq!((a.offset(), a.size()), (0, size));
                a
            } else {
                allocator
                    .allocate_from_type(
                        NON_COHERENT,
                        DeviceLayout::from_size_alignment(size, alignment).unwrap(),
                        AllocationType::Linear,
                        &info,
                    )
                    .unwrap()
            })
        },
        check,
    );
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn free_list_pool_host_access(
        steps in prop::collection::vec(step(), 1..120),
        atom_log2 in 6u32..9,
        margin in 1u64..40,
    ) {
        pool_walk::<FreeListAllocator>(1 << atom_log2, 64 * KIB, 0, &steps);
        pool_walk::<FreeListAllocator>(1 << atom_log2, 64 * KIB + 100, margin * 4, &steps);
    }

    #[test]
    fn buddy_pool_host_access(
        steps in prop::collection::vec(step(), 1..120),
        atom_log2 in 6u32..9,
        margin in 1u64..40,
    ) {
        pool_walk::<BuddyAllocator>(1 << atom_log2, 64 * KIB, 0, &steps);
        pool_walk::<BuddyAllocator>(1 << atom_log2, 64 * KIB - 100, margin * 4, &steps);
    }

    #[test]
    fn slot_pool_host_access(
        steps in prop::collection::vec(step(), 1..120),
        atom_log2 in 6u32..9,
        margin in 1u64..40,
    ) {
        pool_walk::<SlotAllocator<{ 8 * 1024 }>>(1 << atom_log2, 64 * KIB, 0, &steps);
        // Slots that do not start on atoms.
        pool_walk::<SlotAllocator<7000>>(1 << atom_log2, 9 * 7000, margin * 4, &steps);
    }

    #[test]
    fn bump_pool_host_access(
        steps in prop::collection::vec(step(), 1..120),
        atom_log2 in 6u32..9,
        margin in 1u64..40,
    ) {
        pool_walk::<BumpAllocator>(1 << atom_log2, 64 * KIB, 0, &steps);
        pool_walk::<BumpAllocator>(1 << atom_log2, 64 * KIB - 100, margin * 4, &steps);
    }

    #[test]
    fn ring_pool_host_access(
        steps in prop::collection::vec(step(), 1..120),
        atom_log2 in 6u32..9,
        margin in 1u64..40,
    ) {
        pool_walk::<RingAllocator>(1 << atom_log2, 64 * KIB, 0, &steps);
        pool_walk::<RingAllocator>(1 << atom_log2, 64 * KIB - 100, margin * 4, &steps);
    }

    #[test]
    fn default_allocator_and_dedicated_host_access(
        steps in prop::collection::vec(step(), 1..120),
        atom_log2 in 6u32..9,
    ) {
        default_walk(1 << atom_log2, 0, &steps);
    }

    #[test]
    fn host_access_keeps_debug_margins_intact(
        steps in prop::collection::vec(step(), 1..120),
        atom_log2 in 6u32..9,
        margin in 1u64..40,
    ) {
        default_walk(1 << atom_log2, margin * 4, &steps);
    }
}

/// Allocations outlive their allocator and their pool (leak check off): each keeps its
/// memory object alive and mapped, host access through it works as before (flushes and
/// invalidates of live objects only), and the memory goes when the last allocation does.
#[test]
fn host_access_outlives_the_allocator_and_the_pool() {
    let atom = 128;
    let sim = Sim::new(mobile(atom));
    let device = sim.memory_device();
    let quiet = DebugOptions {
        leak_check: LeakCheck::Off,
        margin: 16,
        fill_patterns: true,
        ..Default::default()
    };
    let allocator = StandardMemoryAllocator::new(
        device.clone(),
        GenericMemoryAllocatorCreateInfo {
            debug: quiet,
            ..Default::default()
        },
    )
    .unwrap();
    let pool = allocator
        .create_pool::<BuddyAllocator>(&PoolCreateInfo {
            memory_type: PoolMemoryType::Index(NON_COHERENT),
            block_size: 64 * KIB,
            ..Default::default()
        })
        .unwrap();
    let info = AllocationCreateInfo::default();
    let layout = |size| DeviceLayout::from_size_alignment(size, 4).unwrap();
    let mut allocs = vec![
        allocator
            .allocate_from_type(NON_COHERENT, layout(1000), AllocationType::Linear, &info)
            .unwrap(),
        allocator
            .allocate_from_type(NON_COHERENT, layout(333), AllocationType::Linear, &info)
            .unwrap(),
        allocator
            .allocate_dedicated(NON_COHERENT, 1001, None, &info)
            .unwrap(),
        pool.allocate(
            request(&device, 700, 16),
            AllocationType::Linear,
            &info,
            None,
        )
        .unwrap(),
        pool.allocate(
            request(&device, 70, 16),
            AllocationType::Linear,
            &info,
            None,
        )
        .unwrap(),
    ];
    for (i, a) in allocs.iter_mut().enumerate() {
        a.write(0, &pattern(i as u64, a.size() as usize)).unwrap();
    }
    drop(pool);
    drop(allocator);
    assert!(
        sim.state.live_objects() >= 3,
        "the allocations keep their memory"
    );
    for (i, a) in allocs.iter_mut().enumerate() {
        a.invalidate(0, a.size()).unwrap();
        let held = a.mapped_slice().unwrap().to_vec();
        assert!(
            held == pattern(i as u64, a.size() as usize),
            "allocation {i}"
        );
        let new = pattern(100 + i as u64, a.size() as usize);
        a.write(0, &new).unwrap();
        let mut back = vec![0; new.len()];
        a.read(0, &mut back).unwrap();
        assert!(back == new, "allocation {i} after the allocator went");
    }
    drop(allocs);
    assert!(
        sim.state.violations().is_empty(),
        "{:?}",
        sim.state.violations()
    );
    sim.assert_nothing_allocated();
}
