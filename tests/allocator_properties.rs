//! A long random run of the whole allocator (not only the suballocators) on every simulated
//! layout: random buffers and images across usages, tilings and dedicated preferences are
//! created and freed, and at every checkpoint the real `(memory, offset, size)` triples are
//! checked: inside their memory object, aligned, never overlapping, linear and non-linear
//! neighbours on separate granularity pages, and the crate's counts equal the driver's. The
//! simulated driver checks every bind on its own as well (memory type allowed, alignment,
//! overlap, granularity).
//!
//! `ASH_MEMORY_SOAK=1` runs twenty times as many operations.

mod common;
mod support;

use ash::vk;
use ash_memory::*;
use support::{buffer_info, fill, image_info, verify, GpuLayout, Rng, Sim, KIB, MIB};

enum Resource {
    Buffer(vk::Buffer),
    Image(vk::Image),
}

struct Live {
    resource: Resource,
    alloc: MemoryAlloc,
    alignment: u64,
    data: Option<(u64, u64)>,
}

fn ops() -> u64 {
    let base = 1500;
    if std::env::var_os("ASH_MEMORY_SOAK").is_some() {
        base * 20
    } else {
        base
    }
}

fn random_run<S: Suballocator + Send + 'static>(
    layout: GpuLayout,
    seed: u64,
    create_info: GenericMemoryAllocatorCreateInfo,
) {
    let name = layout.name;
    let granularity = layout.buffer_image_granularity;
    let sim = Sim::new(layout);
    let device = sim.memory_device();
    let allocator = GenericMemoryAllocator::<S>::new(device.clone(), create_info).unwrap();
    let mut rng = Rng(seed);
    let mut live: Vec<Live> = Vec::new();
    let formats = [
        vk::Format::R8G8B8A8_UNORM,
        vk::Format::R32_SFLOAT,
        vk::Format::R16G16B16A16_SFLOAT,
    ];
    let check = |live: &Vec<Live>, op: u64| {
        let triples: Vec<_> = live.iter().map(|l| (&l.alloc, l.alignment)).collect();
        support::check_triples(&triples, &sim.state, granularity);
        assert_eq!(
            device.live_memory_objects(),
            sim.state.live_objects(),
            "{name} seed {seed} op {op}: the crate's count differs from the driver's"
        );
        for heap in 0..sim.state.layout.heaps.len() as u32 {
            assert_eq!(device.heap_usage_by_crate(heap), sim.state.heap_used(heap));
        }
        for l in live {
            if let Some((s, len)) = l.data {
                verify(&l.alloc, s, len, name);
            }
        }
    };
    for op in 0..ops() {
        if live.is_empty() || rng.range(0, 100) < 60 {
            let usage = *rng.pick(&[
                MemoryUsage::DeviceOnly,
                MemoryUsage::Upload,
                MemoryUsage::Download,
            ]);
            let allocate_preference = if rng.range(0, 12) == 0 {
                MemoryAllocatePreference::AlwaysAllocate
            } else {
                MemoryAllocatePreference::Auto
            };
            let info = AllocationCreateInfo {
                usage,
                allocate_preference,
                ..Default::default()
            };
            let kind = rng.range(0, 10);
            let (resource, alloc, alignment) = if kind < 6 {
                let size = match rng.range(0, 20) {
                    0 => rng.range(MIB, 6 * MIB),
                    1..=5 => rng.range(KIB, 256 * KIB),
                    _ => rng.range(1, 4 * KIB),
                };
                let usage_flags = *rng.pick(&[
                    vk::BufferUsageFlags::TRANSFER_SRC,
                    vk::BufferUsageFlags::UNIFORM_BUFFER,
                    vk::BufferUsageFlags::STORAGE_BUFFER | vk::BufferUsageFlags::VERTEX_BUFFER,
                ]);
                // SAFETY: a valid create info; destroyed before its memory.
                let (b, a) =
                    unsafe { allocator.create_buffer(&buffer_info(size, usage_flags), &info) }
                        .unwrap_or_else(|e| panic!("{name} seed {seed} op {op}: buffer: {e}"));
                // SAFETY: a buffer of this device.
                let r = unsafe { sim.device.get_buffer_memory_requirements(b) };
                (Resource::Buffer(b), a, r.alignment)
            } else {
                let tiling = if kind < 9 {
                    vk::ImageTiling::OPTIMAL
                } else {
                    vk::ImageTiling::LINEAR
                };
                // Optimal images are for the GPU only on layouts that say so.
                let info = if tiling == vk::ImageTiling::OPTIMAL
                    && sim.state.layout.optimal_images_device_local_only
                {
                    AllocationCreateInfo {
                        usage: MemoryUsage::DeviceOnly,
                        ..info
                    }
                } else {
                    info
                };
                let extent = 1 << rng.range(2, 10);
                let ii = image_info(extent, *rng.pick(&formats), tiling);
                // SAFETY: a valid create info (2D, sampled, transfer dst); destroyed before
                // its memory.
                let (i, a) = unsafe { allocator.create_image(&ii, &info) }
                    .unwrap_or_else(|e| panic!("{name} seed {seed} op {op}: image: {e}"));
                // SAFETY: an image of this device.
                let r = unsafe { sim.device.get_image_memory_requirements(i) };
                (Resource::Image(i), a, r.alignment)
            };
            let mut alloc = alloc;
            let data = (alloc.mapped_ptr().is_some() && matches!(resource, Resource::Buffer(_)))
                .then(|| {
                    let len = alloc.size().min(2 * KIB);
                    fill(&mut alloc, seed ^ op, len);
                    (seed ^ op, len)
                });
            live.push(Live {
                resource,
                alloc,
                alignment,
                data,
            });
        } else {
            let i = rng.range(0, live.len() as u64) as usize;
            let l = live.swap_remove(i);
            if let Some((s, len)) = l.data {
                verify(&l.alloc, s, len, name);
            }
            // SAFETY: the resource is unused; destroyed before its memory.
            unsafe {
                match l.resource {
                    Resource::Buffer(b) => sim.device.destroy_buffer(b, None),
                    Resource::Image(i) => sim.device.destroy_image(i, None),
                }
            }
        }
        if op % 50 == 49 {
            check(&live, op);
        }
    }
    check(&live, ops());
    for l in live.drain(..) {
        // SAFETY: as above.
        unsafe {
            match l.resource {
                Resource::Buffer(b) => sim.device.destroy_buffer(b, None),
                Resource::Image(i) => sim.device.destroy_image(i, None),
            }
        }
    }
    drop(allocator);
    assert_eq!(device.live_memory_objects(), 0);
    sim.assert_nothing_allocated();
}

#[test]
fn random_buffers_and_images_on_every_layout() {
    for (i, layout) in GpuLayout::all().into_iter().enumerate() {
        random_run::<FreeListAllocator>(
            layout,
            0xA11C + i as u64,
            GenericMemoryAllocatorCreateInfo::default(),
        );
    }
}

#[test]
fn random_buffers_and_images_in_small_blocks() {
    // Small blocks force many blocks, block release and dedicated allocations.
    for (i, layout) in [GpuLayout::large_granularity(), GpuLayout::mobile()]
        .into_iter()
        .enumerate()
    {
        let create_info = GenericMemoryAllocatorCreateInfo {
            block_sizes: ash_memory::BlockSizeThresholds::uniform(2 * MIB).unwrap(),
            ..Default::default()
        };
        random_run::<FreeListAllocator>(layout, 0xB10C + i as u64, create_info);
    }
}

#[test]
fn random_buffers_and_images_with_every_suballocator() {
    // The same invariants hold whichever suballocator carves the blocks; requests a pool
    // slot cannot hold become dedicated allocations.
    for (i, layout) in [GpuLayout::nvidia_discrete(), GpuLayout::large_granularity()]
        .into_iter()
        .enumerate()
    {
        let seed = 0x5B + i as u64;
        let create_info = || GenericMemoryAllocatorCreateInfo {
            block_sizes: ash_memory::BlockSizeThresholds::uniform(8 * MIB).unwrap(),
            ..Default::default()
        };
        random_run::<BuddyAllocator>(layout.clone(), seed, create_info());
        random_run::<SlotAllocator<{ 256 * KIB }>>(layout.clone(), seed, create_info());
        random_run::<BumpAllocator>(layout, seed, create_info());
    }
}

#[test]
fn random_buffers_and_images_in_arenas() {
    // Blocks cut into four arenas: the same invariants, whichever thread count the machine
    // has, across arena boundaries too.
    for (i, layout) in GpuLayout::all().into_iter().enumerate() {
        let create_info = GenericMemoryAllocatorCreateInfo {
            block_sizes: ash_memory::BlockSizeThresholds::uniform(64 * MIB).unwrap(),
            block_arenas: Some(4),
            ..Default::default()
        };
        random_run::<FreeListAllocator>(layout, 0xA4E4A + i as u64, create_info);
    }
    let layout = GpuLayout::large_granularity();
    let create_info = || GenericMemoryAllocatorCreateInfo {
        block_sizes: ash_memory::BlockSizeThresholds::uniform(64 * MIB).unwrap(),
        block_arenas: Some(4),
        ..Default::default()
    };
    random_run::<BuddyAllocator>(layout.clone(), 0xA4E4B, create_info());
    random_run::<SlotAllocator<{ 256 * KIB }>>(layout.clone(), 0xA4E4B, create_info());
    random_run::<BumpAllocator>(layout, 0xA4E4B, create_info());
}
