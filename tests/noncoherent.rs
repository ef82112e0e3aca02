//! Host-visible memory that is not host-coherent: no flush or invalidate issued for one
//! allocation ever touches a byte of another, on every simulated layout with such a type.
//!
//! The simulated driver logs every `vkFlushMappedMemoryRanges` / `vkInvalidateMappedMemoryRanges`
//! range, and keeps a device copy of non-coherent memory (see `support::coherence`), so an
//! invalidate that reaches into a neighbour really destroys the neighbour's unflushed writes.

mod common;
mod support;

use ash::vk;
use ash_memory::*;
use support::{pattern, GpuLayout, Rng, Sim, MIB};

/// Every simulated layout with a host-visible, non-coherent memory type, with variations of
/// the atom size and granularity.
fn layouts() -> Vec<GpuLayout> {
    let mut out: Vec<GpuLayout> = GpuLayout::all()
        .into_iter()
        .filter(|l| !non_coherent_types(l).is_empty())
        .collect();
    assert!(
        !out.is_empty(),
        "no simulated layout has non-coherent memory"
    );
    out.push(GpuLayout {
        name: "mobile-atom-256-granularity-4k",
        non_coherent_atom_size: 256,
        buffer_image_granularity: 4096,
        ..GpuLayout::mobile()
    });
    // A desktop GPU whose cached host memory is not coherent.
    let mut desktop = GpuLayout::nvidia_discrete();
    desktop.name = "desktop-cached-non-coherent";
    desktop.types[2].0 =
        vk::MemoryPropertyFlags::HOST_VISIBLE | vk::MemoryPropertyFlags::HOST_CACHED;
    out.push(desktop);
    out
}

fn non_coherent_types(layout: &GpuLayout) -> Vec<u32> {
    (0..layout.type_count())
        .filter(|&i| {
            let f = layout.flags(i);
            f.contains(vk::MemoryPropertyFlags::HOST_VISIBLE)
                && !f.contains(vk::MemoryPropertyFlags::HOST_COHERENT)
        })
        .collect()
}

/// Asserts that every flush and invalidate logged since the last reset lies inside
/// `alloc`'s range of its memory object.
fn assert_syncs_inside(sim: &Sim, alloc: &MemoryAlloc, what: &str) {
    let (start, end) = (alloc.offset(), alloc.offset() + alloc.size());
    let syncs = sim.state.syncs();
    assert!(
        !syncs.is_empty(),
        "{what}: nothing was flushed or invalidated"
    );
    for (memory, offset, size, flush) in syncs {
        assert_eq!(
            memory,
            alloc.memory(),
            "{what}: a sync of another memory object"
        );
        assert!(
            start <= offset && offset + size <= end,
            "{what}: {} of {offset}+{size} leaves the allocation at {start}..{end}",
            if flush { "flush" } else { "invalidate" },
        );
    }
}

#[test]
fn no_flush_or_invalidate_of_one_allocation_touches_another() {
    for layout in layouts() {
        let name = layout.name;
        let atom = layout.non_coherent_atom_size;
        let types = non_coherent_types(&layout);
        let sim = Sim::new(layout);
        let device = sim.memory_device();
        let allocator = StandardMemoryAllocator::new(
            device.clone(),
            GenericMemoryAllocatorCreateInfo {
                block_sizes: BlockSizeThresholds::uniform(4 * MIB).unwrap(),
                ..Default::default()
            },
        )
        .unwrap();
        let mut rng = Rng(0x5eed ^ atom);
        let mut live: Vec<(MemoryAlloc, u64, u64)> = Vec::new();
        for step in 0..600 {
            if live.len() > 40 || (!live.is_empty() && rng.below(3) == 0) {
                let i = rng.below(live.len() as u64) as usize;
                live.swap_remove(i);
                continue;
            }
            let size = 1 << rng.below(13);
            let size = size + rng.below(size);
            let alignment = 1 << rng.below(11);
            let layout = DeviceLayout::from_size_alignment(size, alignment).unwrap();
            let info = AllocationCreateInfo::default();
            // Through the memory type directly, and through the type choice (Download prefers
            // the cached type, which is the non-coherent one on these layouts).
            let alloc = if step % 2 == 0 {
                let t = *rng.pick(&types);
                allocator
                    .allocate_from_type(t, layout, AllocationType::Linear, &info)
                    .unwrap()
            } else {
                let reqs = AllocationRequirements {
                    layout,
                    memory_type_bits: types.iter().fold(0, |m, t| m | 1 << t),
                    prefers_dedicated_allocation: false,
                    requires_dedicated_allocation: false,
                };
                let download = AllocationCreateInfo {
                    usage: MemoryUsage::Download,
                    ..Default::default()
                };
                allocator
                    .allocate(reqs, AllocationType::Linear, &download, None)
                    .unwrap()
            };
            assert!(alloc.size() >= size);
            if !alloc.is_dedicated() {
                assert_eq!(alloc.offset() % atom, 0, "{name}: offset not on an atom");
                assert_eq!(alloc.size() % atom, 0, "{name}: size not whole atoms");
            }
            let mut alloc = alloc;
            let seed = rng.next();
            sim.state.reset_counters();
            alloc.write(0, &pattern(seed, size as usize)).unwrap();
            assert_syncs_inside(&sim, &alloc, &format!("{name}: write of {size} bytes"));
            sim.state.reset_counters();
            let mut back = vec![0; size as usize];
            alloc.read(0, &mut back).unwrap();
            assert_syncs_inside(&sim, &alloc, &format!("{name}: read of {size} bytes"));
            assert_eq!(back, pattern(seed, size as usize), "{name}: data");
            // A partial flush and invalidate in the middle, too.
            if size > 2 {
                sim.state.reset_counters();
                alloc.flush(1, size - 2).unwrap();
                alloc.invalidate(size / 2, 1).unwrap();
                assert_syncs_inside(&sim, &alloc, &format!("{name}: partial sync"));
            }
            live.push((alloc, seed, size));
        }
        // Nothing was overwritten by a neighbour's sync.
        for (alloc, seed, size) in &live {
            let mut back = vec![0; *size as usize];
            alloc.read(0, &mut back).unwrap();
            assert!(
                back == pattern(*seed, *size as usize),
                "{name}: data of a live allocation changed"
            );
        }
        drop(live);
        drop(allocator);
        sim.assert_nothing_allocated();
    }
}

/// Another allocation's invalidate must not throw away bytes written to a neighbour and not
/// yet flushed: two 64-byte `Download` allocations on the mobile layout (atom 128) used to
/// land at 0 and 64 of one block.
#[test]
fn an_invalidate_never_discards_a_neighbours_unflushed_writes() {
    let sim = Sim::new(GpuLayout::mobile());
    let allocator = StandardMemoryAllocator::new_default(sim.memory_device());
    let reqs = AllocationRequirements {
        layout: DeviceLayout::from_size_alignment(64, 16).unwrap(),
        memory_type_bits: 0b011,
        prefers_dedicated_allocation: false,
        requires_dedicated_allocation: false,
    };
    let download = AllocationCreateInfo {
        usage: MemoryUsage::Download,
        ..Default::default()
    };
    let a = allocator
        .allocate(reqs, AllocationType::Linear, &download, None)
        .unwrap();
    let mut b = allocator
        .allocate(reqs, AllocationType::Linear, &download, None)
        .unwrap();
    assert_eq!(a.memory_type_index(), 1, "the cached, non-coherent type");
    assert_eq!(a.memory(), b.memory(), "neighbours in one block");
    // `b` is written through its pointer and flushed only later (a thread that has not
    // finished yet); meanwhile `a` is read, which invalidates `a`'s bytes.
    let ptr = b.mapped_ptr().unwrap();
    // SAFETY: 64 bytes inside `b`'s own range; nothing else accesses them now.
    unsafe { std::ptr::write_bytes(ptr.as_ptr(), 0xab, 64) };
    let mut out = [0u8; 64];
    a.read(0, &mut out).unwrap();
    b.flush(0, 64).unwrap();
    let mut back = [0u8; 64];
    b.read(0, &mut back).unwrap();
    assert_eq!(
        back, [0xab; 64],
        "b's unflushed writes were discarded by a's invalidate"
    );
    drop((a, &mut b));
}

/// Threads write, flush and read back neighbouring allocations of one non-coherent block at
/// the same time; every thread always reads back exactly what it wrote.
#[test]
fn threads_flush_and_invalidate_neighbours_without_losing_data() {
    for layout in layouts() {
        let name = layout.name;
        let types = non_coherent_types(&layout);
        let sim = Sim::new(layout);
        let allocator = StandardMemoryAllocator::new(
            sim.memory_device(),
            GenericMemoryAllocatorCreateInfo {
                block_arenas: Some(1),
                ..Default::default()
            },
        )
        .unwrap();
        let t = types[0];
        let threads = 4;
        // Small neighbours, allocated interleaved so that threads' allocations alternate.
        let mut per_thread: Vec<Vec<MemoryAlloc>> = (0..threads).map(|_| Vec::new()).collect();
        let mut rng = Rng(7);
        for i in 0..threads * 16 {
            let size = 1 + rng.below(200);
            let layout = DeviceLayout::from_size_alignment(size, 4).unwrap();
            let a = allocator
                .allocate_from_type(t, layout, AllocationType::Linear, &Default::default())
                .unwrap();
            per_thread[i as usize % threads as usize].push(a);
        }
        let memory = per_thread[0][0].memory();
        assert!(
            per_thread.iter().flatten().all(|a| a.memory() == memory),
            "{name}: one block"
        );
        std::thread::scope(|s| {
            for (id, allocs) in per_thread.iter_mut().enumerate() {
                s.spawn(move || {
                    let mut rng = Rng(id as u64 * 977 + 1);
                    for round in 0..300 {
                        for a in allocs.iter_mut() {
                            let len = a.size() as usize;
                            let data = pattern(rng.next(), len);
                            // Written through the pointer, then flushed: the window between
                            // the two is when a neighbour's invalidate could destroy it.
                            let ptr = a.mapped_ptr().unwrap();
                            // SAFETY: `len` bytes inside this thread's own allocation.
                            unsafe {
                                std::ptr::copy_nonoverlapping(data.as_ptr(), ptr.as_ptr(), len)
                            };
                            std::thread::yield_now();
                            a.flush(0, len as u64).unwrap();
                            let mut back = vec![0; len];
                            a.read(0, &mut back).unwrap();
                            assert!(
                                back == data,
                                "{name}: thread {id} round {round}: data lost at offset {}",
                                a.offset()
                            );
                        }
                    }
                });
            }
        });
        drop(per_thread);
        drop(allocator);
        sim.assert_nothing_allocated();
    }
}

#[test]
fn allocations_in_coherent_memory_keep_their_size() {
    // The atom rule costs nothing where memory is coherent.
    let sim = Sim::new(GpuLayout::mobile());
    let allocator = StandardMemoryAllocator::new_default(sim.memory_device());
    let layout = DeviceLayout::from_size_alignment(100, 4).unwrap();
    let a = allocator
        .allocate_from_type(0, layout, AllocationType::Linear, &Default::default())
        .unwrap();
    assert_eq!(a.size(), 100);
    let b = allocator
        .allocate_from_type(1, layout, AllocationType::Linear, &Default::default())
        .unwrap();
    assert_eq!(b.size(), 128, "whole atoms in non-coherent memory");
}

/// Puts `byte` at offset `at` of `alloc`'s block in the device's copy: writes it through the
/// mapping and flushes the atom that holds it. Unless `host_too`, the old host byte is put
/// back then, as after a GPU write that a stale cache line does not show yet.
///
/// # Safety
///
/// The atom holding `at` lies in `alloc`'s margins only, inside the mapped block.
unsafe fn poke_atom(device: &MemoryDevice, alloc: &MemoryAlloc, at: u64, byte: u8, host_too: bool) {
    let atom = device.non_coherent_atom_size().as_devicesize();
    let base = alloc
        .mapped_ptr()
        .unwrap()
        .as_ptr()
        .wrapping_sub(alloc.offset() as usize);
    // SAFETY: the caller's contract: the byte is in the mapped block, in a margin.
    let host = unsafe { &mut *base.add(at as usize) };
    let old = std::mem::replace(host, byte);
    let range = vk::MappedMemoryRange::default()
        .memory(alloc.memory())
        .offset(at / atom * atom)
        .size(atom);
    // SAFETY: the block is mapped; the range is one whole atom inside it.
    unsafe { device.ash().flush_mapped_memory_ranges(&[range]).unwrap() };
    if !host_too {
        *host = old;
    }
}

/// A corruption check never throws away a byte the application owns (issue 23, item 1): in
/// host-visible, non-coherent memory, bytes written through `mapped_ptr` and not flushed yet
/// survive `check_corruption`, on every simulated layout with such a type, with margins
/// smaller than an atom and larger than one. The check still sees a damaged margin: written
/// by the host (not flushed), or by the device in a margin atom that holds no byte of the
/// allocation.
#[test]
fn a_corruption_check_keeps_unflushed_writes_and_still_finds_damage() {
    for layout in layouts() {
        let name = layout.name;
        let atom = layout.non_coherent_atom_size;
        let types = non_coherent_types(&layout);
        let sim = Sim::new(layout);
        let device = sim.memory_device();
        let all = device.memory_properties().all_types_mask();
        for margin in [16, atom + 16] {
            let allocator = StandardMemoryAllocator::new(
                device.clone(),
                GenericMemoryAllocatorCreateInfo {
                    debug: DebugOptions {
                        margin,
                        ..Default::default()
                    },
                    ..Default::default()
                },
            )
            .unwrap();
            let what = format!("{name}, margin {margin}");
            // Neighbours of odd sizes in each non-coherent type, written through their
            // pointers and not flushed.
            let mut live = Vec::new();
            for (i, &t) in types.iter().enumerate() {
                for (j, size) in [100u64, 1, 300, 4].into_iter().enumerate() {
                    let layout = DeviceLayout::from_size_alignment(size, 4).unwrap();
                    let a = allocator
                        .allocate_from_type(t, layout, AllocationType::Linear, &Default::default())
                        .unwrap();
                    let data = pattern((i * 16 + j) as u64 + margin, size as usize);
                    // SAFETY: `size` bytes inside `a`'s own range; nothing else uses them.
                    unsafe {
                        std::ptr::copy_nonoverlapping(
                            data.as_ptr(),
                            a.mapped_ptr().unwrap().as_ptr(),
                            data.len(),
                        )
                    };
                    live.push((a, data));
                }
            }
            let report = allocator.check_corruption(all).unwrap();
            assert_eq!(report.checked_allocations, live.len() as u64, "{what}");
            for (a, data) in &mut live {
                let mut host = vec![0; data.len()];
                // SAFETY: the allocation's own bytes, read through its pointer.
                unsafe {
                    std::ptr::copy_nonoverlapping(
                        a.mapped_ptr().unwrap().as_ptr(),
                        host.as_mut_ptr(),
                        host.len(),
                    )
                };
                assert!(
                    host == *data,
                    "{what}: unflushed writes of {a:?} lost by check_corruption"
                );
                // And they reach the device once flushed.
                a.flush(0, a.size()).unwrap();
                let mut back = vec![0; data.len()];
                a.read(0, &mut back).unwrap();
                assert!(back == *data, "{what}: {a:?} after a flush");
            }
            // Damage is still found: a host write past the end, not flushed.
            let (a, _) = &live[0];
            let past_end = a.offset() + a.size();
            let base = a.mapped_ptr().unwrap().as_ptr();
            // SAFETY: the byte after the allocation is in its back margin.
            unsafe { *base.add(a.size() as usize) ^= 0xff };
            let damaged = match allocator.check_corruption(all) {
                Err(corruption::CorruptionError::Damaged { damaged, .. }) => damaged,
                other => panic!("{what}: host damage not found: {other:?}"),
            };
            assert_eq!(damaged.len(), 1, "{what}");
            assert_eq!((damaged[0].offset, damaged[0].after), (past_end, true));
            // SAFETY: as above; the margin is whole again.
            unsafe { *base.add(a.size() as usize) ^= 0xff };
            allocator.check_corruption(all).unwrap();
            if margin > atom {
                // A margin atom that holds no byte of the allocation is invalidated before it
                // is read: a device write there is found, at either end.
                let (b, _) = &live[1];
                let front_start = b.offset() - margin;
                let back_end = (b.offset() + b.size() + margin).next_multiple_of(atom);
                let base = b
                    .mapped_ptr()
                    .unwrap()
                    .as_ptr()
                    .wrapping_sub(b.offset() as usize);
                for (at, after) in [(front_start, false), (back_end - 1, true)] {
                    // SAFETY: the atom at `at` lies in `b`'s margins (each is more than an atom).
                    let pattern_byte = unsafe { *base.add(at as usize) };
                    // SAFETY: as above.
                    unsafe { poke_atom(&device, b, at, !pattern_byte, false) };
                    let damaged = match allocator.check_corruption(all) {
                        Err(corruption::CorruptionError::Damaged { damaged, .. }) => damaged,
                        other => panic!("{what}: device damage at {at} not found: {other:?}"),
                    };
                    assert_eq!(damaged.len(), 1, "{what}");
                    assert_eq!((damaged[0].offset, damaged[0].after), (at, after), "{what}");
                    // SAFETY: as above; the pattern goes back to both copies.
                    unsafe { poke_atom(&device, b, at, pattern_byte, true) };
                    allocator.check_corruption(all).unwrap();
                    // A host write there that is not flushed yet is found too: the margin is
                    // read as the host sees it before the invalidate discards the write.
                    // SAFETY: as above.
                    unsafe { *base.add(at as usize) = !pattern_byte };
                    let damaged = match allocator.check_corruption(all) {
                        Err(corruption::CorruptionError::Damaged { damaged, .. }) => damaged,
                        other => panic!("{what}: host damage at {at} not found: {other:?}"),
                    };
                    assert_eq!((damaged[0].offset, damaged[0].after), (at, after), "{what}");
                    // SAFETY: as above.
                    unsafe { poke_atom(&device, b, at, pattern_byte, true) };
                    allocator.check_corruption(all).unwrap();
                }
            }
            drop(live);
            drop(allocator);
        }
        sim.assert_nothing_allocated();
    }
}
