//! Host access at its edges: random writes and reads of random ranges through the safe API
//! (`write`, `read`, the typed copies, the mapped slices with `flush` / `invalidate`) into
//! neighbouring allocations of pools of every suballocator, of the default allocator and of
//! dedicated memory, on simulated non-coherent memory (whose device copy throws away every
//! byte a missing flush left behind, see `support::coherence`) and on the real driver with
//! GPU round trips.
//!
//! After every step each allocation holds exactly what was written to it (never a
//! neighbour's bytes), every flush and invalidate covers exactly the atoms the access
//! touched (clamped to the memory object) and nothing of another allocation, and every
//! range that leaves the allocation (offset + length overflow included) is an error that
//! changes nothing.

mod common;
mod support;

use ash::vk;
use ash_memory::allocator::defrag::{record_buffer_copies, BufferMove};
use ash_memory::*;
use common::{buffer_info, Rng, TestContext};
use proptest::prelude::*;
use support::{pattern, GpuLayout, Sim, KIB};

/// Mobile's cached type, which is not host-coherent.
const NON_COHERENT: u32 = 1;

/// The mobile layout with `atom`-byte non-coherent atoms.
fn mobile(atom: u64) -> GpuLayout {
    GpuLayout {
        name: "mobile-atoms",
        non_coherent_atom_size: atom,
        ..GpuLayout::mobile()
    }
}

fn request(device: &MemoryDevice, size: u64, alignment: u64) -> AllocationRequirements {
    AllocationRequirements {
        layout: DeviceLayout::from_size_alignment(size, alignment).unwrap(),
        memory_type_bits: device.memory_properties().all_types_mask(),
        prefers_dedicated_allocation: false,
        requires_dedicated_allocation: false,
    }
}

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
        2 => (which, 0u8..8, 0u64..64).prop_map(|(which, kind, len)| Step::Edge { which, kind, len }),
    ]
}

/// A range inside an allocation of `size` bytes drawn from two numbers: `(offset, len)`,
/// reaching the last byte (and zero lengths) often.
fn range_in(size: u64, at: u64, len: u64) -> (u64, u64) {
    let offset = match at % 4 {
        0 => 0,
        1 => size - (len % (size + 1)).min(size),
        _ => (at >> 2) % (size + 1),
    };
    let room = size - offset;
    let len = match len % 5 {
        0 => room,
        1 => 0,
        _ => (len >> 3) % (room + 1),
    };
    (offset, len)
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
                if !alloc.is_dedicated() && !margins {
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
/// always a whole number of atoms), with `margin` bytes of debug margins (and fill patterns) checked after every step.
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

/// 12 cases (`PROPTEST_CASES` for more).
fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(12);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn free_list_pool_host_access(steps in prop::collection::vec(step(), 1..120), atom_log2 in 6u32..9, margin in 1u64..40) {
        pool_walk::<FreeListAllocator>(1 << atom_log2, 64 * KIB, 0, &steps);
        pool_walk::<FreeListAllocator>(1 << atom_log2, 64 * KIB + 100, margin * 4, &steps);
    }

    #[test]
    fn buddy_pool_host_access(steps in prop::collection::vec(step(), 1..120), atom_log2 in 6u32..9, margin in 1u64..40) {
        pool_walk::<BuddyAllocator>(1 << atom_log2, 64 * KIB, 0, &steps);
        pool_walk::<BuddyAllocator>(1 << atom_log2, 64 * KIB - 100, margin * 4, &steps);
    }

    #[test]
    fn slot_pool_host_access(steps in prop::collection::vec(step(), 1..120), atom_log2 in 6u32..9, margin in 1u64..40) {
        pool_walk::<SlotAllocator<{ 8 * 1024 }>>(1 << atom_log2, 64 * KIB, 0, &steps);
        // Slots that do not start on atoms.
        pool_walk::<SlotAllocator<7000>>(1 << atom_log2, 9 * 7000, margin * 4, &steps);
    }

    #[test]
    fn bump_pool_host_access(steps in prop::collection::vec(step(), 1..120), atom_log2 in 6u32..9, margin in 1u64..40) {
        pool_walk::<BumpAllocator>(1 << atom_log2, 64 * KIB, 0, &steps);
        pool_walk::<BumpAllocator>(1 << atom_log2, 64 * KIB - 100, margin * 4, &steps);
    }

    #[test]
    fn ring_pool_host_access(steps in prop::collection::vec(step(), 1..120), atom_log2 in 6u32..9, margin in 1u64..40) {
        pool_walk::<RingAllocator>(1 << atom_log2, 64 * KIB, 0, &steps);
        pool_walk::<RingAllocator>(1 << atom_log2, 64 * KIB - 100, margin * 4, &steps);
    }

    #[test]
    fn default_allocator_and_dedicated_host_access(steps in prop::collection::vec(step(), 1..120), atom_log2 in 6u32..9) {
        default_walk(1 << atom_log2, 0, &steps);
    }

    #[test]
    fn host_access_keeps_debug_margins_intact(steps in prop::collection::vec(step(), 1..120), atom_log2 in 6u32..9, margin in 1u64..40) {
        default_walk(1 << atom_log2, margin * 4, &steps);
    }
}

/// A buffer of the real driver, its host-visible allocation and the bytes it must hold (its
/// buffer's `size` first bytes).
struct GpuBuffer {
    buffer: vk::Buffer,
    alloc: MemoryAlloc,
    size: u64,
    model: Vec<u8>,
}

const TRANSFER: vk::BufferUsageFlags = vk::BufferUsageFlags::from_raw(
    vk::BufferUsageFlags::TRANSFER_SRC.as_raw() | vk::BufferUsageFlags::TRANSFER_DST.as_raw(),
);

fn host_random() -> AllocationCreateInfo {
    AllocationCreateInfo {
        usage: MemoryUsage::Auto(HostAccess::Random),
        ..Default::default()
    }
}

/// Writes a random range of `b` through a random one of the host-access methods.
fn host_write(b: &mut GpuBuffer, rng: &mut Rng) {
    let (offset, len) = range_in(b.size, rng.next(), rng.next());
    let data = pattern(rng.next(), len as usize);
    let range = offset as usize..(offset + len) as usize;
    match rng.below(4) {
        0 => b.alloc.write(offset, &data).unwrap(),
        1 => {
            let n = len as usize / 2;
            let halves: Vec<u16> = data
                .chunks_exact(2)
                .map(|c| u16::from_ne_bytes([c[0], c[1]]))
                .collect();
            b.alloc.write_slice(offset, &halves).unwrap();
            b.model[offset as usize..offset as usize + 2 * n].copy_from_slice(&data[..2 * n]);
            return;
        }
        2 => {
            b.alloc.mapped_slice_mut().unwrap()[range.clone()].copy_from_slice(&data);
            b.alloc.flush(offset, len).unwrap();
        }
        _ => {
            if len >= 8 {
                let v = u64::from_ne_bytes(data[..8].try_into().unwrap());
                b.alloc.write_value(offset, v).unwrap();
                b.model[offset as usize..offset as usize + 8].copy_from_slice(&data[..8]);
            }
            return;
        }
    }
    b.model[range].copy_from_slice(&data);
}

/// Reads every buffer back through a random one of the host-access methods and compares it
/// with its model.
fn assert_gpu_buffers_hold(buffers: &[GpuBuffer], rng: &mut Rng, what: &str) {
    for (i, b) in buffers.iter().enumerate() {
        let size = b.size as usize;
        let back = match rng.below(3) {
            0 => {
                let mut out = vec![0; size];
                b.alloc.read(0, &mut out).unwrap();
                out
            }
            1 => {
                b.alloc.invalidate(0, b.size).unwrap();
                b.alloc.mapped_slice().unwrap()[..size].to_vec()
            }
            _ => {
                let mut out = vec![0u8; size];
                b.alloc.read_slice(0, &mut out).unwrap();
                out
            }
        };
        if let Some(at) = back.iter().zip(&b.model).position(|(a, m)| a != m) {
            panic!(
                "{what}: buffer {i} ({} bytes at {:?}+{}) differs at byte {at}",
                b.size,
                b.alloc.memory(),
                b.alloc.offset()
            );
        }
    }
}

/// Records one command (and its barrier) into a command buffer.
type Recorder = Box<dyn FnOnce(&ash::Device, vk::CommandBuffer)>;

/// One submission of random GPU work: fills and updates of ranges, and copies between
/// buffers (never overlapping ranges of one buffer), followed by a barrier to the host.
fn gpu_work(ctx: &TestContext, buffers: &mut [GpuBuffer], rng: &mut Rng) {
    let mut record: Vec<Recorder> = Vec::new();
    for _ in 0..12 {
        let n = buffers.len() as u64;
        let (a, c) = (rng.below(n) as usize, rng.below(n) as usize);
        match rng.below(3) {
            0 => {
                // Fill: 4-byte multiples.
                let b = &mut buffers[a];
                let words = b.size / 4;
                if words == 0 {
                    continue;
                }
                let first = rng.below(words);
                let count = 1 + rng.below(words - first);
                let value = rng.next() as u32;
                for w in first..first + count {
                    let at = (w * 4) as usize;
                    b.model[at..at + 4].copy_from_slice(&value.to_ne_bytes());
                }
                let buffer = b.buffer;
                record.push(Box::new(move |d, cmd| {
                    // SAFETY: the range lies inside the buffer, on 4-byte multiples.
                    unsafe { d.cmd_fill_buffer(cmd, buffer, first * 4, count * 4, value) };
                    TestContext::transfer_barrier(d, cmd);
                }));
            }
            1 => {
                // Update: at most 65536 bytes, 4-byte multiples.
                let b = &mut buffers[a];
                let words = (b.size / 4).min(1024);
                if words == 0 {
                    continue;
                }
                let first = rng.below(b.size / 4 - words + 1);
                let data = pattern(rng.next(), (words * 4) as usize);
                let at = (first * 4) as usize;
                b.model[at..at + data.len()].copy_from_slice(&data);
                let buffer = b.buffer;
                record.push(Box::new(move |d, cmd| {
                    // SAFETY: as above, at most 65536 bytes.
                    unsafe { d.cmd_update_buffer(cmd, buffer, first * 4, &data) };
                    TestContext::transfer_barrier(d, cmd);
                }));
            }
            _ => {
                if a == c {
                    continue;
                }
                let len = 1 + rng.below(buffers[a].size.min(buffers[c].size));
                let src_at = rng.below(buffers[a].size - len + 1);
                let dst_at = rng.below(buffers[c].size - len + 1);
                let bytes = buffers[a].model[src_at as usize..(src_at + len) as usize].to_vec();
                buffers[c].model[dst_at as usize..(dst_at + len) as usize].copy_from_slice(&bytes);
                let (src, dst) = (buffers[a].buffer, buffers[c].buffer);
                record.push(Box::new(move |d, cmd| {
                    let region = [vk::BufferCopy::default()
                        .src_offset(src_at)
                        .dst_offset(dst_at)
                        .size(len)];
                    // SAFETY: both ranges lie inside their (distinct) buffers.
                    unsafe { d.cmd_copy_buffer(cmd, src, dst, &region) };
                    TestContext::transfer_barrier(d, cmd);
                }));
            }
        }
    }
    ctx.submit(|d, cmd| {
        for r in record {
            r(d, cmd);
        }
    });
}

/// Neighbouring host-visible buffers on the real driver: host writes of random ranges
/// through every host-access method, then GPU fills, updates and copies between the
/// buffers, then host reads; each buffer holds exactly what was written to it, by the host
/// or by the GPU. Then the buffers are moved by a defragmentation (GPU copies into new
/// buffers bound to the destinations) and the same goes on in their new places.
#[test]
fn neighbours_keep_their_bytes_through_host_writes_gpu_work_and_defragmentation() {
    let ctx = TestContext::new();
    // Small blocks: several of them, which the defragmentation empties.
    let allocator = StandardMemoryAllocator::new(
        ctx.memory_device(),
        GenericMemoryAllocatorCreateInfo {
            block_sizes: BlockSizeThresholds::uniform(128 * KIB).unwrap(),
            ..Default::default()
        },
    )
    .unwrap();
    let mut rng = Rng(0xb0f5);
    let mut buffers: Vec<GpuBuffer> = Vec::new();
    for i in 0..48 {
        let size = 1 + rng.below(if i % 8 == 0 { 40_000 } else { 3000 });
        // SAFETY: a valid create info; every buffer is destroyed before its allocation drops.
        let (buffer, mut alloc) =
            unsafe { allocator.create_buffer(&buffer_info(size, TRANSFER), &host_random()) }
                .unwrap();
        assert!(alloc.size() >= size);
        let model = pattern(i, size as usize);
        alloc.write(0, &model).unwrap();
        buffers.push(GpuBuffer {
            buffer,
            alloc,
            size,
            model,
        });
    }
    let blocks: std::collections::HashSet<_> = buffers.iter().map(|b| b.alloc.memory()).collect();
    assert!(
        blocks.len() < buffers.len() / 4,
        "the buffers are neighbours in a few blocks"
    );
    for round in 0..6 {
        for _ in 0..40 {
            let i = rng.below(buffers.len() as u64) as usize;
            host_write(&mut buffers[i], &mut rng);
        }
        assert_gpu_buffers_hold(&buffers, &mut rng, &format!("round {round}, host writes"));
        gpu_work(&ctx, &mut buffers, &mut rng);
        assert_gpu_buffers_hold(&buffers, &mut rng, &format!("round {round}, GPU work"));
        if round == 2 {
            // Free every other buffer, then move the rest.
            let mut kept = Vec::new();
            for (i, b) in buffers.into_iter().enumerate() {
                if i % 2 == 0 {
                    // SAFETY: idle (`submit` waits), destroyed before its memory is freed.
                    unsafe { ctx.device.destroy_buffer(b.buffer, None) };
                } else {
                    kept.push(b);
                }
            }
            buffers = kept;
            defragment(&ctx, &allocator, &mut buffers);
            assert_gpu_buffers_hold(&buffers, &mut rng, "after the defragmentation");
        }
    }
    for b in buffers {
        // SAFETY: idle; destroyed before its memory is freed.
        unsafe { ctx.device.destroy_buffer(b.buffer, None) };
    }
    drop(allocator);
    assert!(ctx.messages().is_empty(), "{:?}", ctx.messages());
}

/// Moves `buffers` with a Full defragmentation, copying on the GPU.
fn defragment(ctx: &TestContext, allocator: &StandardMemoryAllocator, buffers: &mut [GpuBuffer]) {
    let mut defrag = allocator.defragmentation(&DefragmentationInfo {
        algorithm: DefragmentationAlgorithm::Full,
        ..Default::default()
    });
    let ids: Vec<usize> = buffers
        .iter_mut()
        .map(|b| {
            // SAFETY: as above.
            let reqs = unsafe { ctx.device.get_buffer_memory_requirements(b.buffer) };
            defrag
                .add(&mut b.alloc, DeviceAlignment::new(reqs.alignment).unwrap())
                .unwrap()
        })
        .collect();
    let mut moved = 0;
    while let Some(mut pass) = defrag.next_pass() {
        let mut new = Vec::new();
        for m in pass.moves() {
            let k = ids.iter().position(|&id| id == m.id()).unwrap();
            let b = &buffers[k];
            assert_eq!(
                m.size(),
                b.alloc.size(),
                "a move copies the whole allocation"
            );
            // SAFETY: a valid create info; bound to the destination made for the same
            // requirements.
            let buffer = unsafe {
                ctx.device
                    .create_buffer(&buffer_info(b.size, TRANSFER), None)
            }
            .unwrap();
            // SAFETY: a fresh buffer, destroyed before the destination (then the buffer's
            // allocation) is freed.
            unsafe { m.destination().bind_buffer(buffer) }.unwrap();
            new.push((m.index(), k, buffer));
        }
        let copies: Vec<BufferMove> = new
            .iter()
            .map(|&(_, k, dst)| BufferMove {
                src: buffers[k].buffer,
                dst,
                size: buffers[k].size,
            })
            .collect();
        // SAFETY: every buffer is bound and idle; `submit` waits.
        ctx.submit(|d, cmd| unsafe { record_buffer_copies(d, cmd, &copies) });
        for (index, k, buffer) in new {
            let b = &mut buffers[k];
            // SAFETY: the copy is done; the old buffer goes before its memory.
            unsafe { ctx.device.destroy_buffer(b.buffer, None) };
            b.buffer = buffer;
            pass.complete(index, &mut b.alloc).unwrap();
            moved += 1;
        }
        pass.end();
    }
    defrag.finish();
    assert!(moved > 0, "the defragmentation moved nothing");
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

/// Page-aligned, zeroed host memory to import (`minImportedHostPointerAlignment`).
struct HostPages {
    ptr: std::ptr::NonNull<u8>,
    layout: std::alloc::Layout,
}

impl HostPages {
    fn new(device: &MemoryDevice, pages: usize) -> Self {
        let alignment = ash_memory::external_memory::min_imported_host_pointer_alignment(device)
            .unwrap()
            .as_devicesize() as usize;
        let layout = std::alloc::Layout::from_size_align(alignment * pages, alignment).unwrap();
        // SAFETY: a non-zero size.
        let ptr = std::ptr::NonNull::new(unsafe { std::alloc::alloc_zeroed(layout) }).unwrap();
        Self { ptr, layout }
    }
}

impl Drop for HostPages {
    fn drop(&mut self) {
        // SAFETY: allocated with this layout.
        unsafe { std::alloc::dealloc(self.ptr.as_ptr(), self.layout) };
    }
}

/// One host allocation imported twice would give two allocations that map the same bytes,
/// whose mutable slices alias: the second import of bytes already imported is refused,
/// whole or in part, until the first allocation is gone.
#[test]
fn host_memory_is_imported_once_at_a_time() {
    let ctx = TestContext::with_device_extensions(&[ash::ext::external_memory_host::NAME]);
    {
        let device = ctx.memory_device_with(EnabledMemoryFeatures {
            external_memory_host: true,
            ..Default::default()
        });
        let allocator = StandardMemoryAllocator::new_default(device.clone());
        let host = HostPages::new(&device, 4);
        let size = host.layout.size() as u64;
        let page = size / 4;
        // SAFETY: `host` is a live host allocation of `size` bytes that outlives the imports.
        let whole = unsafe { ExternalMemoryImport::host_pointer(host.ptr.cast()) };
        let memory_type = whole.memory_type_bits(&device).unwrap().trailing_zeros();
        let info = AllocationCreateInfo::default();
        let mut first = allocator
            .import_memory(whole, memory_type, size, None, &info)
            .unwrap();
        let second = allocator.import_memory(whole, memory_type, size, None, &info);
        let third = {
            // The last page only.
            let tail = host.ptr.as_ptr().wrapping_add(3 * page as usize);
            // SAFETY: inside `host`, page-aligned.
            let tail = unsafe {
                ExternalMemoryImport::host_pointer(std::ptr::NonNull::new(tail).unwrap().cast())
            };
            allocator.import_memory(tail, memory_type, page, None, &info)
        };
        if let (Ok(second), _) | (_, Ok(second)) = (&second, &third) {
            // Show what the aliasing does.
            first.write(size - 1, &[7]).unwrap();
            let mut b = [0];
            second.read(second.size() - 1, &mut b).unwrap();
            panic!(
                "host memory imported twice: a write through one allocation reads back {} \
                 through the other",
                b[0]
            );
        }
        for r in [second, third] {
            assert!(
                matches!(
                    r,
                    Err(AllocationError::Memory(
                        MemoryObjectError::ImportOverlaps { .. }
                    ))
                ),
                "{r:?}"
            );
        }
        first.write(0, &[1, 2, 3]).unwrap();
        drop(first);
        // Once the first is gone, the bytes may be imported again.
        let again = allocator
            .import_memory(whole, memory_type, size, None, &info)
            .unwrap();
        let mut back = [0; 3];
        again.read(0, &mut back).unwrap();
        assert_eq!(back, [1, 2, 3]);
        drop((again, allocator));

        // The same import in the user's own chain (as a pool would chain it for every
        // block): the second memory object is refused as well.
        let chained = vk::ImportMemoryHostPointerInfoEXT::default()
            .handle_type(vk::ExternalMemoryHandleTypeFlags::HOST_ALLOCATION_EXT)
            .host_pointer(host.ptr.as_ptr().cast());
        // SAFETY: a valid chain of one structure (its extension claimed, the pointer and
        // size aligned, the type allowed), alive until the objects below are freed.
        let next = unsafe { AllocateNext::new(std::ptr::from_ref(&chained).cast()) };
        let info = MemoryObjectCreateInfo {
            size,
            memory_type_index: memory_type,
            next,
            ..Default::default()
        };
        let one = MemoryObject::allocate(device.clone(), &info).unwrap();
        assert!(matches!(
            MemoryObject::allocate(device.clone(), &info),
            Err(MemoryObjectError::ImportOverlaps { .. })
        ));
        drop(one);
        drop(MemoryObject::allocate(device.clone(), &info).unwrap());
    }
    assert!(ctx.messages().is_empty(), "{:?}", ctx.messages());
}

/// A plain-old-data type aligned to 16 bytes.
#[derive(Clone, Copy, Debug, PartialEq)]
#[repr(C, align(16))]
struct Aligned16([u32; 4]);
// SAFETY: `repr(C)`, 16 bytes of `u32`s at alignment 16: no padding, every bit pattern valid.
unsafe impl Pod for Aligned16 {}

/// Checks the typed slices of `T` of `alloc`: `Ok` exactly when its mapped address suits
/// `T`'s alignment, as many whole `T`s as fit in `size()`, starting at the mapped address.
fn assert_typed<T: Pod>(alloc: &mut MemoryAlloc, what: &str) {
    let address = alloc.mapped_ptr().unwrap().as_ptr() as usize;
    let align = std::mem::align_of::<T>();
    let len = match std::mem::size_of::<T>() {
        0 => 0,
        n => alloc.size() as usize / n,
    };
    let name = std::any::type_name::<T>();
    match alloc.mapped_slice_of::<T>() {
        Ok(s) => {
            assert_eq!(address % align, 0, "{what}: {name} at {address:#x}");
            assert_eq!(
                (s.as_ptr() as usize, s.len()),
                (address, len),
                "{what}: {name}"
            );
        }
        Err(e) => {
            assert_ne!(address % align, 0, "{what}: {name}: {e}");
            assert_eq!(
                e,
                MemoryAccessError::Misaligned {
                    address,
                    alignment: align
                },
                "{what}"
            );
        }
    }
    let mutable = alloc
        .mapped_slice_of_mut::<T>()
        .map(|s| (s.as_ptr() as usize, s.len()));
    let shared = alloc
        .mapped_slice_of::<T>()
        .map(|s| (s.as_ptr() as usize, s.len()));
    assert_eq!(mutable, shared, "{what}: {name} mutable and shared");
}

proptest! {
    #![proptest_config(config())]

    /// Typed slices of neighbouring allocations of random sizes and alignments: the
    /// alignment and length rules for several types, and writes through a typed mutable
    /// slice change that allocation's bytes only.
    #[test]
    fn typed_slices_follow_the_alignment_and_length_rules(
        requests in prop::collection::vec((1u64..300, 0u32..6, any::<u64>()), 1..40),
    ) {
        let sim = Sim::new(GpuLayout::mobile());
        let device = sim.memory_device();
        let allocator = StandardMemoryAllocator::new_default(device.clone());
        let mut held: Vec<(MemoryAlloc, Vec<u8>)> = Vec::new();
        for (n, &(size, alignment_log2, seed)) in requests.iter().enumerate() {
            let layout = DeviceLayout::from_size_alignment(size, 1 << alignment_log2).unwrap();
            // The coherent host-visible type: placements at any byte.
            let mut alloc = allocator
                .allocate_from_type(0, layout, AllocationType::Linear, &Default::default())
                .unwrap();
            let bytes = pattern(seed, alloc.size() as usize);
            alloc.write(0, &bytes).unwrap();
            held.push((alloc, bytes));
            let what = format!("allocation {n} ({size} bytes at {})", 1 << alignment_log2);
            let (alloc, model) = held.last_mut().unwrap();
            assert_typed::<u8>(alloc, &what);
            assert_typed::<u16>(alloc, &what);
            assert_typed::<u64>(alloc, &what);
            assert_typed::<[u8; 3]>(alloc, &what);
            assert_typed::<Aligned16>(alloc, &what);
            assert_typed::<[u64; 0]>(alloc, &what);
            if let Ok(words) = alloc.mapped_slice_of_mut::<u32>() {
                for (i, w) in words.iter_mut().enumerate() {
                    *w = (seed as u32).wrapping_add(i as u32);
                    model[i * 4..i * 4 + 4].copy_from_slice(&w.to_ne_bytes());
                }
            }
        }
        for (i, (alloc, model)) in held.iter().enumerate() {
            prop_assert!(alloc.mapped_slice().unwrap() == &model[..], "allocation {}", i);
        }
    }
}
