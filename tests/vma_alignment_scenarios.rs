//! VMA's `TestPool_MinAllocationAlignment` and `TestAllocationWithAlignment`, retold for
//! every suballocator (`tests/min_alignment.rs` covers the free list), on the real driver
//! (lavapipe's layout, simulated so that every bind is checked, validation layer on):
//!
//! - a pool of 1 MiB blocks with a least alignment of 64 KiB places 32-byte buffers at
//!   multiples of 64 KiB only, whatever its suballocator;
//! - a least alignment of 64 KiB per allocation does the same in the default pools, in pools
//!   of every suballocator, through `allocate`, `create_buffer`, `allocate_from_type` and
//!   `allocate_pages`;
//!
//! and in every case the mapping of each allocation is its block's mapping at its offset,
//! no two allocations overlap, and each keeps the bytes written to it.

mod common;
mod support;

use ash::vk;
use ash_memory::*;
use support::{check_triples, fill, verify, GpuLayout, Sim, KIB, MIB};

const ALIGN: u64 = 64 * KIB;
const BLOCK: u64 = MIB;
const SIZE: u64 = 32;

fn align() -> DeviceAlignment {
    DeviceAlignment::new(ALIGN).unwrap()
}

/// Every memory type of lavapipe's layout (one).
fn on_device_types() -> u32 {
    (1 << GpuLayout::lavapipe().type_count()) - 1
}

fn host_info() -> AllocationCreateInfo {
    AllocationCreateInfo {
        usage: MemoryUsage::AutoPreferHost(HostAccess::Random),
        ..Default::default()
    }
}

/// Checks that every allocation is at a multiple of [`ALIGN`], mapped at its block's mapping
/// plus its offset, disjoint from the others (on the driver's books), and holding its bytes.
fn check(sim: &Sim, live: &[(MemoryAlloc, u64)], what: &str) {
    for (a, seed) in live {
        assert_eq!(a.offset() % ALIGN, 0, "{what}: offset {}", a.offset());
        verify(a, *seed, a.size().min(SIZE), what);
    }
    for (a, _) in live {
        for (b, _) in live.iter().filter(|(b, _)| b.memory() == a.memory()) {
            let pa = a.mapped_ptr().unwrap().as_ptr() as u64;
            let pb = b.mapped_ptr().unwrap().as_ptr() as u64;
            assert_eq!(
                pa.wrapping_sub(pb),
                a.offset().wrapping_sub(b.offset()),
                "{what}: the mapping follows the offsets"
            );
        }
    }
    let pairs: Vec<(&MemoryAlloc, u64)> = live.iter().map(|(a, _)| (a, ALIGN)).collect();
    check_triples(
        &pairs,
        &sim.state,
        sim.state.layout.buffer_image_granularity,
    );
}

/// A 32-byte transfer buffer, made by `on` with `info`, written with its pattern.
fn buffer(
    on: &dyn MemoryAllocator,
    info: &AllocationCreateInfo,
    seed: u64,
    what: &str,
) -> (vk::Buffer, MemoryAlloc) {
    let usage = vk::BufferUsageFlags::TRANSFER_SRC | vk::BufferUsageFlags::TRANSFER_DST;
    // SAFETY: a valid buffer info for the allocator's device.
    let (buffer, mut alloc) = unsafe { on.create_buffer(&common::buffer_info(SIZE, usage), info) }
        .unwrap_or_else(|e| panic!("{what}: buffer {seed}: {e}"));
    fill(&mut alloc, seed, SIZE);
    (buffer, alloc)
}

/// `TestPool_MinAllocationAlignment` in a one-block pool of `S`: the block takes exactly
/// `BLOCK / ALIGN` buffers of 32 bytes, each at a multiple of 64 KiB; with 16 of them it is
/// full.
fn pool_alignment<S: Suballocator + Send + Sync + 'static>(name: &str) {
    let sim = Sim::new(GpuLayout::lavapipe());
    let device = sim.memory_device();
    let allocator = StandardMemoryAllocator::new_default(device.clone());
    let pool = allocator
        .create_pool::<S>(&PoolCreateInfo {
            memory_type: PoolMemoryType::Find {
                memory_type_bits: u32::MAX,
                usage: MemoryUsage::AutoPreferHost(HostAccess::Random),
            },
            block_size: BLOCK,
            min_block_count: 1,
            max_block_count: 1,
            min_alignment: align(),
            block_arenas: Some(1),
            ..Default::default()
        })
        .unwrap();
    let info = AllocationCreateInfo {
        allocate_preference: MemoryAllocatePreference::NeverAllocate,
        ..host_info()
    };
    let mut made = Vec::new();
    for seed in 0..BLOCK / ALIGN {
        made.push(buffer(&pool, &info, seed, name));
    }
    let live: Vec<(MemoryAlloc, u64)> = made
        .into_iter()
        .enumerate()
        .map(|(i, (b, a))| {
            // SAFETY: never used by the GPU; the allocation outlives it here only as memory.
            unsafe { device.ash().destroy_buffer(b, None) };
            (a, i as u64)
        })
        .collect();
    check(&sim, &live, name);
    let mut offsets: Vec<u64> = live.iter().map(|(a, _)| a.offset()).collect();
    offsets.sort_unstable();
    let expected: Vec<u64> = (0..BLOCK / ALIGN).map(|i| i * ALIGN).collect();
    assert_eq!(
        offsets, expected,
        "{name}: the block is full of aligned buffers"
    );
    let requirements = AllocationRequirements {
        layout: DeviceLayout::from_size_alignment(SIZE, 4).unwrap(),
        memory_type_bits: on_device_types(),
        prefers_dedicated_allocation: false,
        requires_dedicated_allocation: false,
    };
    let more = pool.allocate(requirements, AllocationType::Linear, &info, None);
    assert!(
        matches!(
            more,
            Err(AllocationError::OutOfPoolMemory | AllocationError::PoolFull { .. })
        ),
        "{name}: {more:?}"
    );
    drop(live);
    drop(pool);
    drop(allocator);
    sim.assert_nothing_allocated();
}

#[test]
fn a_pools_least_alignment_holds_for_every_suballocator() {
    pool_alignment::<FreeListAllocator>("free list");
    pool_alignment::<BuddyAllocator>("buddy");
    pool_alignment::<SlotAllocator<ALIGN>>("64 KiB slots");
    pool_alignment::<BumpAllocator>("bump");
    pool_alignment::<RingAllocator>("ring");
}

/// `TestAllocationWithAlignment` on one allocator: allocations asking for 64 KiB through
/// every entry point.
fn allocation_alignment(on: &dyn MemoryAllocator, sim: &Sim, name: &str) {
    let info = AllocationCreateInfo {
        min_alignment: align(),
        ..host_info()
    };
    let mut live = Vec::new();
    let mut buffers = Vec::new();
    for seed in 0..2 {
        let (b, a) = buffer(on, &info, seed, name);
        buffers.push(b);
        live.push((a, seed));
    }
    let requirements = AllocationRequirements {
        layout: DeviceLayout::from_size_alignment(SIZE, 16).unwrap(),
        memory_type_bits: on_device_types(),
        prefers_dedicated_allocation: false,
        requires_dedicated_allocation: false,
    };
    for seed in 2..4 {
        let mut a = on
            .allocate(requirements, AllocationType::Linear, &info, None)
            .unwrap_or_else(|e| panic!("{name}: allocate: {e}"));
        fill(&mut a, seed, SIZE);
        live.push((a, seed));
    }
    let memory_type = live[0].0.memory_type_index();
    let mut a = on
        .allocate_from_type(
            memory_type,
            requirements.layout,
            AllocationType::Linear,
            &info,
        )
        .unwrap_or_else(|e| panic!("{name}: allocate_from_type: {e}"));
    fill(&mut a, 4, SIZE);
    live.push((a, 4));
    let pages = on
        .allocate_pages(requirements, AllocationType::Linear, &info, 3)
        .unwrap_or_else(|e| panic!("{name}: allocate_pages: {e}"));
    for (i, mut a) in pages.into_iter().enumerate() {
        let seed = 5 + i as u64;
        fill(&mut a, seed, SIZE);
        live.push((a, seed));
    }
    check(sim, &live, name);
    for b in buffers {
        // SAFETY: never used by the GPU; destroyed before its memory.
        unsafe { on.device().ash().destroy_buffer(b, None) };
    }
}

#[test]
fn an_allocations_least_alignment_holds_everywhere() {
    let sim = Sim::new(GpuLayout::lavapipe());
    let device = sim.memory_device();
    let allocator = StandardMemoryAllocator::new_default(device.clone());
    allocation_alignment(&allocator, &sim, "default pools");
    fn pool<S: Suballocator + Send + Sync + 'static>(
        allocator: &StandardMemoryAllocator,
    ) -> MemoryPool<S> {
        allocator
            .create_pool::<S>(&PoolCreateInfo {
                memory_type: PoolMemoryType::Find {
                    memory_type_bits: u32::MAX,
                    usage: MemoryUsage::AutoPreferHost(HostAccess::Random),
                },
                block_size: BLOCK,
                ..Default::default()
            })
            .unwrap()
    }
    allocation_alignment(&pool::<FreeListAllocator>(&allocator), &sim, "free list");
    allocation_alignment(&pool::<BuddyAllocator>(&allocator), &sim, "buddy");
    allocation_alignment(
        &pool::<SlotAllocator<ALIGN>>(&allocator),
        &sim,
        "64 KiB slots",
    );
    allocation_alignment(&pool::<BumpAllocator>(&allocator), &sim, "bump");
    allocation_alignment(&pool::<RingAllocator>(&allocator), &sim, "ring");
    drop(allocator);
    sim.assert_nothing_allocated();
}

/// Where this crate goes past VMA (which has no slot pools): 4 KiB slots can never hold an
/// allocation aligned to 64 KiB. Whether the alignment comes from the pool or from the
/// allocation, and whether the preference allows new blocks or not, the error says so
/// (`SuballocatorBlockSizeExceeded`), never "no room in the existing blocks"
/// (`OutOfPoolMemory`), which a free could cure. The default pools of an allocator of such
/// slots fall back to a dedicated allocation, unless new memory is forbidden.
#[test]
fn an_alignment_no_slot_can_hold_is_refused_as_never_fitting() {
    type Slots = SlotAllocator<{ 4 * KIB }>;
    let sim = Sim::new(GpuLayout::lavapipe());
    let device = sim.memory_device();
    let allocator = StandardMemoryAllocator::new_default(device.clone());
    let requirements = AllocationRequirements {
        layout: DeviceLayout::from_size_alignment(SIZE, 16).unwrap(),
        memory_type_bits: on_device_types(),
        prefers_dedicated_allocation: false,
        requires_dedicated_allocation: false,
    };
    let aligned = AllocationCreateInfo {
        min_alignment: align(),
        ..host_info()
    };
    for pool_alignment in [DeviceAlignment::MIN, align()] {
        let pool = allocator
            .create_pool::<Slots>(&PoolCreateInfo {
                memory_type: PoolMemoryType::Find {
                    memory_type_bits: u32::MAX,
                    usage: MemoryUsage::AutoPreferHost(HostAccess::Random),
                },
                block_size: BLOCK,
                min_block_count: 1,
                min_alignment: pool_alignment,
                ..Default::default()
            })
            .unwrap();
        // An allocation that fits, so the pool's block is in use.
        let fits = pool.allocate(requirements, AllocationType::Linear, &host_info(), None);
        assert_eq!(fits.is_ok(), pool_alignment == DeviceAlignment::MIN);
        for preference in [
            MemoryAllocatePreference::Auto,
            MemoryAllocatePreference::NeverAllocate,
        ] {
            let info = AllocationCreateInfo {
                allocate_preference: preference,
                ..aligned.clone()
            };
            let got = pool.allocate(requirements, AllocationType::Linear, &info, None);
            assert_eq!(
                got.err(),
                Some(AllocationError::SuballocatorBlockSizeExceeded),
                "pool alignment {pool_alignment:?}, {preference:?}"
            );
        }
        drop(fits);
    }
    drop(allocator);

    let slots = GenericMemoryAllocator::<Slots>::new(device.clone(), Default::default()).unwrap();
    let never = AllocationCreateInfo {
        allocate_preference: MemoryAllocatePreference::NeverAllocate,
        ..aligned.clone()
    };
    for existing_block in [false, true] {
        let held = existing_block.then(|| {
            slots
                .allocate(requirements, AllocationType::Linear, &host_info(), None)
                .unwrap()
        });
        let got = slots.allocate(requirements, AllocationType::Linear, &never, None);
        assert_eq!(
            got.err(),
            Some(AllocationError::SuballocatorBlockSizeExceeded),
            "a block exists: {existing_block}"
        );
        drop(held);
    }
    let dedicated = slots
        .allocate(requirements, AllocationType::Linear, &aligned, None)
        .unwrap();
    assert!(dedicated.is_dedicated());
    drop(dedicated);
    drop(slots);
    sim.assert_nothing_allocated();
}
