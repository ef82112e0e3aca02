//! VMA's mapping scenarios (`src/Tests.cpp`), retold for this crate's persistent mappings and
//! run on simulated layouts over the real driver (lavapipe, validation layer on):
//!
//! - `TestMapping`: buffers in the default pools, in a custom pool (here: of every
//!   suballocator) and in memory of their own, reached through their mappings at the first
//!   and the last byte;
//! - `TestMappingMultithreaded`: the same from 16 threads at once, each buffer written,
//!   touched at its ends or left alone, and every byte checked once all of them live;
//! - `TestDeviceLocalMapped`: memory that must be `DEVICE_LOCAL` is mapped exactly when its
//!   type is also host-visible;
//! - `TestAllocationMemoryCopy`: copies to and from an allocation, whole and at an offset
//!   (`vmaCopyMemoryToAllocation` / `vmaCopyAllocationToMemory` are `write` / `read` here).
//!
//! Where the crate differs from VMA on purpose: VMA maps an allocation on request
//! (`vmaMapMemory`, counted, `VMA_ALLOCATION_CREATE_MAPPED_BIT` for a persistent mapping) and
//! keeps a block mapped while any of its allocations is (`TestMappingHysteresis` checks when
//! it unmaps). This crate maps every host-visible memory object once, whole, when it is made,
//! and unmaps it when it is freed (see `device_memory`): every host-visible allocation has a
//! pointer from its birth, and there is no map count to get wrong. So where VMA asserts
//! "mapped twice gives the same pointer" and "unmapped gives null", these tests assert that the
//! pointer is there from the start, is the block's mapping at the allocation's offset, never
//! overlaps another live allocation's, and that the simulated driver saw exactly one
//! `vkMapMemory` per live host-visible memory object (it records a second map of an object as
//! a violation, which fails the test).

mod common;
mod support;

use ash::vk;
use ash_memory::*;
use std::sync::{Barrier, Mutex};
use support::{pattern, GpuLayout, Rng, Sim, KIB};

/// VMA's buffer size in these scenarios.
const SIZE: u64 = 0x10000;

/// Where the scenarios put their buffers: VMA's `TEST_NORMAL`, `TEST_POOL` (here one pool of
/// each suballocator) and `TEST_DEDICATED`.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Target {
    Default,
    FreeList,
    Buddy,
    Slots,
    Bump,
    Ring,
    Dedicated,
}

const TARGETS: [Target; 7] = [
    Target::Default,
    Target::FreeList,
    Target::Buddy,
    Target::Slots,
    Target::Bump,
    Target::Ring,
    Target::Dedicated,
];

/// Random host access (VMA's `HOST_ACCESS_RANDOM`), in memory of its own for `Dedicated`.
fn random_access(target: Target) -> AllocationCreateInfo {
    AllocationCreateInfo {
        usage: MemoryUsage::Auto(HostAccess::Random),
        allocate_preference: if target == Target::Dedicated {
            MemoryAllocatePreference::AlwaysAllocate
        } else {
            MemoryAllocatePreference::Auto
        },
        ..Default::default()
    }
}

/// The allocator the buffers of `target` come from: `allocator` itself, or a new custom pool
/// of the memory type `allocator` picks for `info` (VMA's pool of `memTypeIndex`).
fn target_of(
    allocator: &StandardMemoryAllocator,
    target: Target,
    memory_type: u32,
) -> Option<Box<dyn MemoryAllocator>> {
    // A slot holds an allocation with its debug margins: with margins, slots of twice the
    // buffer.
    let margins = allocator.create_info().debug.margin > 0;
    fn pool<S: Suballocator + Send + Sync + 'static>(
        allocator: &StandardMemoryAllocator,
        memory_type: u32,
    ) -> Box<dyn MemoryAllocator> {
        Box::new(
            allocator
                .create_pool::<S>(&PoolCreateInfo {
                    memory_type: PoolMemoryType::Index(memory_type),
                    block_size: 16 * SIZE,
                    ..Default::default()
                })
                .unwrap(),
        )
    }
    Some(match target {
        Target::Default | Target::Dedicated => return None,
        Target::FreeList => pool::<FreeListAllocator>(allocator, memory_type),
        Target::Buddy => pool::<BuddyAllocator>(allocator, memory_type),
        Target::Slots if margins => pool::<SlotAllocator<{ 2 * SIZE }>>(allocator, memory_type),
        Target::Slots => pool::<SlotAllocator<SIZE>>(allocator, memory_type),
        Target::Bump => pool::<BumpAllocator>(allocator, memory_type),
        Target::Ring => pool::<RingAllocator>(allocator, memory_type),
    })
}

/// A buffer of [`SIZE`] bytes for transfers out, created, allocated and bound by `on`.
fn buffer(on: &dyn MemoryAllocator, info: &AllocationCreateInfo) -> (vk::Buffer, MemoryAlloc) {
    let buffer_info = common::buffer_info(SIZE, vk::BufferUsageFlags::TRANSFER_SRC);
    // SAFETY: a valid buffer info for the allocator's device.
    unsafe { on.create_buffer(&buffer_info, info) }.unwrap_or_else(|e| panic!("buffer: {e}"))
}

/// The memory type of a buffer with random host access (VMA's `memTypeIndex` of the first
/// round, which its pool round takes).
fn random_access_type(allocator: &StandardMemoryAllocator) -> u32 {
    let (buffer, alloc) = buffer(allocator, &random_access(Target::Default));
    let memory_type = alloc.memory_type_index();
    // SAFETY: made above, never used by the GPU.
    unsafe { allocator.destroy_buffer(buffer, alloc) };
    memory_type
}

/// VMA's `data[0xFFFF] = data[0]`: the first and the last byte through the mapping, written
/// and read back.
fn touch_ends(alloc: &mut MemoryAlloc, byte: u8) {
    let last = SIZE - 1;
    let slice = alloc
        .mapped_slice_mut()
        .expect("a host-visible allocation is mapped");
    assert!(slice.len() as u64 >= SIZE, "the mapping covers the buffer");
    slice[last as usize] = slice[0] ^ byte;
    slice[0] = byte;
    let want = slice[last as usize];
    alloc.flush(0, alloc.size()).unwrap();
    let mut back = [0u8; 1];
    alloc.read(0, &mut back).unwrap();
    assert_eq!(back[0], byte);
    alloc.read(last, &mut back).unwrap();
    assert_eq!(back[0], want);
}

/// The host address ranges of `allocs` never overlap, and two allocations in one memory
/// object lie as far apart in it as in the mapping.
fn check_host_ranges<'a>(allocs: impl IntoIterator<Item = &'a MemoryAlloc>, what: &str) {
    let mut ranges: Vec<(usize, usize, vk::DeviceMemory, u64)> = allocs
        .into_iter()
        .map(|a| {
            let ptr = a.mapped_ptr().expect("mapped").as_ptr() as usize;
            (ptr, ptr + a.size() as usize, a.memory(), a.offset())
        })
        .collect();
    ranges.sort_unstable();
    for w in ranges.windows(2) {
        assert!(w[0].1 <= w[1].0, "{what}: mappings {w:?} overlap");
    }
    for a in &ranges {
        for b in ranges.iter().filter(|b| b.2 == a.2) {
            assert_eq!(
                a.0.wrapping_sub(b.0) as u64,
                a.3.wrapping_sub(b.3),
                "{what}: two allocations of one memory object are apart in the mapping as in the memory"
            );
        }
    }
}

/// Every live memory object of the simulated device is host-visible here, so each is mapped
/// exactly once.
fn check_one_mapping_each(sim: &Sim, what: &str) {
    assert_eq!(
        sim.state.mapped_objects(),
        sim.state.live_objects(),
        "{what}: mapped memory objects"
    );
}

/// `TestMapping` on lavapipe's layout and on a non-coherent mobile one (whose cached type is
/// what random host access picks): two buffers and a third one, in every target.
#[test]
fn buffers_are_mapped_from_birth_in_every_kind_of_memory() {
    for layout in [GpuLayout::lavapipe(), GpuLayout::mobile()] {
        let name = layout.name;
        let sim = Sim::new(layout);
        let device = sim.memory_device();
        let allocator = StandardMemoryAllocator::new_default(device.clone());
        let memory_type = random_access_type(&allocator);
        for target in TARGETS {
            let what = format!("{name} {target:?}");
            let info = random_access(target);
            let pool = target_of(&allocator, target, memory_type);
            let on: &dyn MemoryAllocator = pool.as_deref().unwrap_or(&allocator);
            let mut made: Vec<_> = (0..3).map(|_| buffer(on, &info)).collect();
            for (i, (_, alloc)) in made.iter_mut().enumerate() {
                assert_eq!(alloc.memory_type_index(), memory_type, "{what}");
                assert_eq!(alloc.is_dedicated(), target == Target::Dedicated, "{what}");
                touch_ends(alloc, 0x5a + i as u8);
            }
            check_host_ranges(made.iter().map(|(_, a)| a), &what);
            check_one_mapping_each(&sim, &what);
            // The first two still hold what was written, after the third was made and touched.
            for (i, (_, alloc)) in made.iter().enumerate() {
                let mut back = [0u8; 1];
                alloc.read(0, &mut back).unwrap();
                assert_eq!(back[0], 0x5a + i as u8, "{what}: buffer {i}");
            }
            for (buffer, alloc) in made.into_iter().rev() {
                // SAFETY: made above, never used by the GPU.
                unsafe { on.destroy_buffer(buffer, alloc) };
            }
            drop(pool);
            check_one_mapping_each(&sim, &what);
        }
        drop(allocator);
        sim.assert_nothing_allocated();
    }
}

/// What a thread of `TestMappingMultithreaded` does with one buffer.
#[derive(Clone, Copy, Debug)]
enum Mode {
    /// Never touched (VMA's `DONT_MAP`).
    Untouched,
    /// The first and last byte, right away (VMA's `MAP_FOR_MOMENT` and `MAP_TWO_TIMES`).
    Ends,
    /// Every byte, through `write` (VMA's `MAP_FOR_LONGER` and `PERSISTENTLY_MAPPED`).
    Whole,
    /// Every byte, through the mapped slice and a flush.
    Slice,
}

/// One buffer of a thread: its handle, allocation, mode and pattern seed.
type Made = (vk::Buffer, MemoryAlloc, Mode, u64);

/// The body of one thread: `count` buffers, made, written as their mode says, with yields in
/// between; then, once every thread is there, every byte written checked; then freed newest
/// first.
fn mapping_thread(
    on: &dyn MemoryAllocator,
    info: &AllocationCreateInfo,
    thread: u64,
    count: usize,
    all_made: &Barrier,
    ranges: &Mutex<Vec<(usize, usize)>>,
) {
    use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
    // A failure must not leave the other threads waiting at the barrier forever: each phase
    // catches it, the barriers are always reached, and it is raised again at the end.
    let made = catch_unwind(AssertUnwindSafe(|| make_and_write(on, info, thread, count)));
    if let Ok(made) = &made {
        let mut r = ranges.lock().unwrap();
        for (_, a, _, _) in made {
            let p = a.mapped_ptr().unwrap().as_ptr() as usize;
            r.push((p, p + a.size() as usize));
        }
    }
    all_made.wait();
    let checked = match &made {
        Ok(made) => catch_unwind(AssertUnwindSafe(|| check_written(made, thread))),
        Err(_) => Ok(()),
    };
    // Every thread has checked its data before any frees (a free could hide an overlap).
    all_made.wait();
    match made {
        Ok(made) => {
            for (buffer, alloc, _, _) in made.into_iter().rev() {
                // SAFETY: made above, never used by the GPU.
                unsafe { on.destroy_buffer(buffer, alloc) };
            }
        }
        Err(e) => resume_unwind(e),
    }
    if let Err(e) = checked {
        resume_unwind(e);
    }
}

/// A thread's `count` buffers, each written as its random mode says.
fn make_and_write(
    on: &dyn MemoryAllocator,
    info: &AllocationCreateInfo,
    thread: u64,
    count: usize,
) -> Vec<Made> {
    let mut rng = Rng(thread * 7919 + 1);
    let mut made: Vec<Made> = Vec::with_capacity(count);
    for i in 0..count {
        let (buffer, mut alloc) = buffer(on, info);
        let seed = thread * 100_000 + i as u64;
        let mode = *rng.pick(&[Mode::Untouched, Mode::Ends, Mode::Whole, Mode::Slice]);
        match mode {
            Mode::Untouched => {}
            Mode::Ends => touch_ends(&mut alloc, seed as u8),
            Mode::Whole => alloc.write(0, &pattern(seed, SIZE as usize)).unwrap(),
            Mode::Slice => {
                let slice = alloc.mapped_slice_mut().unwrap();
                slice[..SIZE as usize].copy_from_slice(&pattern(seed, SIZE as usize));
                alloc.flush(0, SIZE).unwrap();
            }
        }
        if rng.below(3) == 0 {
            std::thread::yield_now();
        }
        made.push((buffer, alloc, mode, seed));
    }
    made
}

/// Every byte a thread wrote is still there.
fn check_written(made: &[Made], thread: u64) {
    for (_, alloc, mode, seed) in made {
        let what = format!("thread {thread}, buffer {seed}, {mode:?}");
        match mode {
            Mode::Untouched => {}
            Mode::Ends => {
                let mut back = [0u8; 1];
                alloc.read(0, &mut back).unwrap();
                assert_eq!(back[0], *seed as u8, "{what}");
            }
            Mode::Whole | Mode::Slice => support::verify(alloc, *seed, SIZE, &what),
        }
    }
}

/// `TestMappingMultithreaded`: 16 threads make buffers in the same target at once, write
/// them (whole, at their ends, or not at all) and check them once all of them live: no two
/// live mappings overlap, no thread's bytes are another's, and every memory object is mapped
/// once, in every target.
#[test]
fn sixteen_threads_map_and_write_their_buffers_in_every_kind_of_memory() {
    threads_on(GpuLayout::lavapipe(), DebugOptions::default());
}

/// The same with debug margins and fill patterns (VMA's `VMA_DEBUG_MARGIN` and
/// `VMA_DEBUG_INITIALIZE_ALLOCATIONS` builds), on non-coherent memory: once every buffer is
/// written, the margins of all of them are intact.
#[test]
fn sixteen_threads_write_between_debug_margins() {
    let debug = DebugOptions {
        margin: 256,
        fill_patterns: true,
        ..Default::default()
    };
    threads_on(GpuLayout::mobile(), debug);
}

/// The same on non-coherent memory (the mobile layout's cached type, which random host access
/// picks), whose flushes and invalidates are widened to 128-byte atoms: no thread's
/// invalidate may throw away a neighbour's bytes written but not flushed yet.
#[test]
fn sixteen_threads_map_and_write_their_buffers_in_non_coherent_memory() {
    let flags = threads_on(GpuLayout::mobile(), DebugOptions::default());
    assert!(!flags.contains(vk::MemoryPropertyFlags::HOST_COHERENT));
}

/// The multithreaded scenario on `layout`; returns the flags of the memory type used.
fn threads_on(layout: GpuLayout, debug: DebugOptions) -> vk::MemoryPropertyFlags {
    const THREADS: u64 = 16;
    let sim = Sim::new(layout);
    let device = sim.memory_device();
    let allocator = StandardMemoryAllocator::new(
        device.clone(),
        GenericMemoryAllocatorCreateInfo {
            debug,
            ..Default::default()
        },
    )
    .unwrap();
    let memory_type = random_access_type(&allocator);
    let flags = sim.state.layout.flags(memory_type);
    for target in TARGETS {
        let info = random_access(target);
        let pool = target_of(&allocator, target, memory_type);
        let on: &dyn MemoryAllocator = pool.as_deref().unwrap_or(&allocator);
        // VMA makes 64 a thread; dedicated memory objects are fewer to keep the run short.
        let count = if target == Target::Dedicated { 8 } else { 64 };
        let all_made = Barrier::new(THREADS as usize + 1);
        let ranges = Mutex::new(Vec::new());
        std::thread::scope(|s| {
            for thread in 0..THREADS {
                let (info, all_made, ranges) = (&info, &all_made, &ranges);
                s.spawn(move || mapping_thread(on, info, thread, count, all_made, ranges));
            }
            all_made.wait();
            let checked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let mut r = ranges.lock().unwrap().clone();
                assert_eq!(r.len(), THREADS as usize * count, "{target:?}");
                r.sort_unstable();
                for w in r.windows(2) {
                    assert!(w[0].1 <= w[1].0, "{target:?}: mappings {w:?} overlap");
                }
                check_one_mapping_each(&sim, &format!("{target:?}, all live"));
                if debug.margin > 0 {
                    let report = allocator.check_corruption(u32::MAX);
                    let report = report.unwrap_or_else(|e| panic!("{target:?}: {e}"));
                    // Dedicated allocations have no margins.
                    if target != Target::Dedicated {
                        assert_eq!(
                            report.checked_allocations,
                            THREADS * count as u64,
                            "{target:?}"
                        );
                    }
                }
            }));
            all_made.wait();
            if let Err(e) = checked {
                std::panic::resume_unwind(e);
            }
        });
        drop(pool);
        check_one_mapping_each(&sim, &format!("{target:?}, all freed"));
    }
    drop(allocator);
    sim.assert_nothing_allocated();
    flags
}

/// `TestDeviceLocalMapped`: memory that must be `DEVICE_LOCAL`, from the default pools and
/// from a custom pool of the type found for it, is mapped exactly when that type is also
/// host-visible (lavapipe's is, NVIDIA's VRAM is not). Unmapped memory refuses host access
/// with an error, never a panic.
#[test]
fn device_local_memory_is_mapped_exactly_when_host_visible() {
    let device_local = MemoryUsage::Custom(MemoryTypeFilter {
        required_flags: vk::MemoryPropertyFlags::DEVICE_LOCAL,
        ..Default::default()
    });
    for layout in [GpuLayout::lavapipe(), GpuLayout::nvidia_discrete()] {
        let name = layout.name;
        let sim = Sim::new(layout);
        let device = sim.memory_device();
        let allocator = StandardMemoryAllocator::new_default(device.clone());
        let pool = allocator
            .create_pool::<FreeListAllocator>(&PoolCreateInfo {
                memory_type: PoolMemoryType::Find {
                    memory_type_bits: u32::MAX,
                    usage: device_local,
                },
                ..Default::default()
            })
            .unwrap();
        let info = AllocationCreateInfo {
            usage: device_local,
            ..Default::default()
        };
        let buffer_info = common::buffer_info(4 * KIB, vk::BufferUsageFlags::TRANSFER_DST);
        for on in [&allocator as &dyn MemoryAllocator, &pool] {
            // SAFETY: a valid buffer info for this device.
            let (buffer, mut alloc) = unsafe { on.create_buffer(&buffer_info, &info) }.unwrap();
            let flags = alloc.memory_property_flags();
            assert!(
                flags.contains(vk::MemoryPropertyFlags::DEVICE_LOCAL),
                "{name}"
            );
            let host_visible = flags.contains(vk::MemoryPropertyFlags::HOST_VISIBLE);
            assert_eq!(alloc.mapped_ptr().is_some(), host_visible, "{name}");
            assert_eq!(alloc.mapped_slice().is_some(), host_visible, "{name}");
            let written = alloc.write(0, &[1, 2, 3]);
            let mut back = [0u8; 3];
            let read = alloc.read(0, &mut back);
            if host_visible {
                written.unwrap();
                read.unwrap();
                assert_eq!(back, [1, 2, 3], "{name}");
            } else {
                let refused = MemoryAccessError::NotHostVisible {
                    memory_type_index: alloc.memory_type_index(),
                };
                assert_eq!(written, Err(refused.clone()), "{name}");
                assert_eq!(read, Err(refused), "{name}");
            }
            // SAFETY: made above, never used by the GPU.
            unsafe { on.destroy_buffer(buffer, alloc) };
        }
        drop(pool);
        drop(allocator);
        sim.assert_nothing_allocated();
    }
}

/// `TestAllocationMemoryCopy`: 128 KiB written whole and read back, then 1792 bytes written
/// at offset 14080 and read back, with sequential and random host access, in blocks and in
/// memory of their own, on coherent and non-coherent memory. The bytes around the fragment
/// keep the whole write's values, and a copy past the end is an error that changes nothing.
#[test]
fn copies_to_and_from_an_allocation_whole_and_in_part() {
    const LEN: u64 = 128 * KIB;
    const FRAGMENT_OFFSET: u64 = 14080;
    const FRAGMENT_LEN: usize = 1792;
    let whole: Vec<u8> = (0..LEN).map(|i| (i * 13 + 7) as u8).collect();
    let fragment = pattern(99, FRAGMENT_LEN);
    let mut expected = whole.clone();
    let at = FRAGMENT_OFFSET as usize;
    expected[at..at + FRAGMENT_LEN].copy_from_slice(&fragment);
    for layout in [GpuLayout::lavapipe(), GpuLayout::mobile()] {
        let name = layout.name;
        let sim = Sim::new(layout);
        let device = sim.memory_device();
        let allocator = StandardMemoryAllocator::new_default(device.clone());
        let buffer_info = common::buffer_info(
            LEN,
            vk::BufferUsageFlags::TRANSFER_SRC | vk::BufferUsageFlags::TRANSFER_DST,
        );
        for access in [HostAccess::SequentialWrite, HostAccess::Random] {
            for preference in [
                MemoryAllocatePreference::Auto,
                MemoryAllocatePreference::AlwaysAllocate,
            ] {
                let what = format!("{name} {access:?} {preference:?}");
                let info = AllocationCreateInfo {
                    usage: MemoryUsage::Auto(access),
                    allocate_preference: preference,
                    ..Default::default()
                };
                // SAFETY: a valid buffer info for this device.
                let (buffer, mut alloc) =
                    unsafe { allocator.create_buffer(&buffer_info, &info) }.unwrap();
                alloc.write(0, &whole).unwrap();
                let mut back = vec![0u8; LEN as usize];
                alloc.read(0, &mut back).unwrap();
                assert!(back == whole, "{what}: the whole copy");
                alloc.write(FRAGMENT_OFFSET, &fragment).unwrap();
                let mut part = vec![0u8; FRAGMENT_LEN];
                alloc.read(FRAGMENT_OFFSET, &mut part).unwrap();
                assert!(part == fragment, "{what}: the fragment");
                let size = alloc.size();
                let past = alloc.write(size - 8, &[0xee; 16]);
                assert_eq!(
                    past,
                    Err(MemoryAccessError::OutOfBounds {
                        offset: size - 8,
                        len: 16,
                        size
                    }),
                    "{what}"
                );
                let past = alloc.read(u64::MAX, &mut part);
                assert!(
                    matches!(past, Err(MemoryAccessError::OutOfBounds { .. })),
                    "{what}: {past:?}"
                );
                alloc.read(0, &mut back).unwrap();
                assert!(back == expected, "{what}: the fragment in the whole");
                // SAFETY: made above, never used by the GPU.
                unsafe { allocator.destroy_buffer(buffer, alloc) };
            }
        }
        drop(allocator);
        sim.assert_nothing_allocated();
    }
}
