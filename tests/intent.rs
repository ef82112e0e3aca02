//! The automatic usages on the driver, on the simulated memory layouts of real GPUs: buffers
//! and images made with `create_buffer` / `create_image` and their real usage flags land in
//! the types of the rule (`ash_memory::allocator::intent`), a plain `allocate` follows its
//! resource hint, lazily allocated memory backs transient attachments, and an upload-heavy
//! program on a 256 MiB BAR heap never exhausts it.

mod common;
mod support;

use ash::vk;
use ash_memory::*;
use support::{buffer_info, fill, image_info, verify, GpuLayout, Sim, KIB, MIB};
use vk::BufferUsageFlags as B;
use vk::ImageUsageFlags as I;

#[derive(Clone, Copy, Debug)]
enum Resource {
    Buffer(vk::BufferUsageFlags),
    Image(vk::ImageUsageFlags),
}

/// What each case makes, and with which usage.
fn cases() -> [(&'static str, Resource, MemoryUsage); 6] {
    use HostAccess::*;
    [
        (
            "render target",
            Resource::Image(I::COLOR_ATTACHMENT | I::SAMPLED | I::TRANSFER_DST),
            MemoryUsage::Auto(NoAccess),
        ),
        (
            "staging buffer",
            Resource::Buffer(B::TRANSFER_SRC),
            MemoryUsage::Auto(SequentialWrite),
        ),
        (
            "dynamic uniform buffer",
            Resource::Buffer(B::UNIFORM_BUFFER),
            MemoryUsage::Auto(SequentialWrite),
        ),
        (
            "read-back buffer",
            Resource::Buffer(B::TRANSFER_DST),
            MemoryUsage::Auto(Random),
        ),
        (
            "vertex buffer, written or staged",
            Resource::Buffer(B::VERTEX_BUFFER | B::TRANSFER_DST),
            MemoryUsage::Auto(SequentialWriteOrTransfer),
        ),
        (
            "storage buffer, read or staged",
            Resource::Buffer(B::STORAGE_BUFFER),
            MemoryUsage::Auto(RandomOrTransfer),
        ),
    ]
}

/// The type of each case on each layout (the reasons are in the unit tests' table).
fn expected() -> Vec<(GpuLayout, [u32; 6])> {
    vec![
        (GpuLayout::nvidia_discrete(), [0, 1, 1, 2, 0, 0]),
        (GpuLayout::amd_discrete_bar(), [0, 1, 2, 3, 2, 0]),
        (GpuLayout::amd_discrete_rebar(), [0, 1, 2, 3, 2, 0]),
        (GpuLayout::intel_integrated(), [0, 2, 2, 1, 2, 1]),
        (GpuLayout::mobile(), [0, 0, 0, 1, 0, 1]),
        (GpuLayout::large_granularity(), [0, 1, 1, 2, 0, 0]),
    ]
}

#[test]
fn create_buffer_and_create_image_choose_from_the_usage_flags_on_every_layout() {
    for (layout, types) in expected() {
        let sim = Sim::new(layout.clone());
        let device = sim.memory_device();
        let allocator = StandardMemoryAllocator::new_default(device.clone());
        for ((name, resource, usage), expected) in cases().into_iter().zip(types) {
            let what = format!("{} / {name}", layout.name);
            let info = AllocationCreateInfo {
                usage,
                ..Default::default()
            };
            let (handle, mut alloc, requirements, resource_usage) = match resource {
                Resource::Buffer(flags) => {
                    // SAFETY: a valid create info; the buffer is destroyed below.
                    let (buffer, alloc) =
                        unsafe { allocator.create_buffer(&buffer_info(64 * KIB, flags), &info) }
                            .unwrap_or_else(|e| panic!("{what}: {e}"));
                    // SAFETY: the buffer is valid.
                    let reqs =
                        unsafe { AllocationRequirements::for_buffer(&device, buffer) }.unwrap();
                    (Ok(buffer), alloc, reqs, ResourceUsage::Buffer(flags))
                }
                Resource::Image(flags) => {
                    let image_info =
                        image_info(64, vk::Format::R8G8B8A8_UNORM, vk::ImageTiling::OPTIMAL)
                            .usage(flags);
                    // SAFETY: a valid create info; the image is destroyed below.
                    let (image, alloc) = unsafe { allocator.create_image(&image_info, &info) }
                        .unwrap_or_else(|e| panic!("{what}: {e}"));
                    // SAFETY: the image is valid and not disjoint.
                    let reqs =
                        unsafe { AllocationRequirements::for_image(&device, image) }.unwrap();
                    (Err(image), alloc, reqs, ResourceUsage::Image(flags))
                }
            };
            assert_eq!(alloc.memory_type_index(), expected, "{what}");
            assert_eq!(
                sim.state.memory_type_of(alloc.memory()),
                Some(expected),
                "{what}: the driver saw another type"
            );
            // The choice `create_*` made is the one the allocator reports for the resource.
            let hinted = AllocationCreateInfo {
                resource_usage,
                ..info.clone()
            };
            assert_eq!(
                allocator.memory_type_for(&requirements, &hinted),
                Some(expected),
                "{what}"
            );
            let host_visible = alloc
                .memory_property_flags()
                .contains(vk::MemoryPropertyFlags::HOST_VISIBLE);
            if host_visible {
                fill(&mut alloc, expected as u64, 4 * KIB);
                verify(&alloc, expected as u64, 4 * KIB, &what);
            } else {
                // "Or transfer" memory the host cannot map says so, and refuses access.
                assert!(alloc.mapped_ptr().is_none(), "{what}");
                assert!(
                    matches!(
                        alloc.write(0, &[1]),
                        Err(MemoryAccessError::NotHostVisible { .. })
                    ),
                    "{what}"
                );
            }
            // SAFETY: the resource is unused; destroyed before its memory.
            unsafe {
                match handle {
                    Ok(buffer) => sim.device.destroy_buffer(buffer, Option::None),
                    Err(image) => sim.device.destroy_image(image, Option::None),
                }
            }
        }
        drop(allocator);
        sim.assert_nothing_allocated();
    }
}

#[test]
fn allocate_follows_its_resource_hint() {
    let layout = GpuLayout::amd_discrete_bar();
    let sim = Sim::new(layout.clone());
    let allocator = StandardMemoryAllocator::new_default(sim.memory_device());
    let requirements = AllocationRequirements {
        layout: DeviceLayout::from_size_alignment(64 * KIB, 256).unwrap(),
        memory_type_bits: layout.buffer_bits(),
        prefers_dedicated_allocation: false,
        requires_dedicated_allocation: false,
    };
    let usage = MemoryUsage::Auto(HostAccess::SequentialWrite);
    for (resource_usage, expected, why) in [
        (
            ResourceUsage::Unknown,
            2,
            "unknown: the GPU reads it in place, BAR",
        ),
        (
            ResourceUsage::Buffer(B::TRANSFER_SRC),
            1,
            "staging: host memory",
        ),
        (ResourceUsage::Buffer(B::UNIFORM_BUFFER), 2, "uniform: BAR"),
    ] {
        let info = AllocationCreateInfo {
            usage,
            resource_usage,
            ..Default::default()
        };
        let mut alloc = allocator
            .allocate(requirements, AllocationType::Linear, &info, None)
            .unwrap();
        assert_eq!(alloc.memory_type_index(), expected, "{why}");
        fill(&mut alloc, 7, 4 * KIB);
        verify(&alloc, 7, 4 * KIB, why);
    }
}

#[test]
fn transient_attachments_get_lazily_allocated_memory_by_themselves() {
    let sim = Sim::new(GpuLayout::mobile());
    let allocator = StandardMemoryAllocator::new_default(sim.memory_device());
    let info = AllocationCreateInfo {
        usage: MemoryUsage::Auto(HostAccess::NoAccess),
        ..Default::default()
    };
    let transient = image_info(256, vk::Format::R8G8B8A8_UNORM, vk::ImageTiling::OPTIMAL)
        .usage(I::COLOR_ATTACHMENT | I::TRANSIENT_ATTACHMENT);
    let attachment = image_info(256, vk::Format::R8G8B8A8_UNORM, vk::ImageTiling::OPTIMAL)
        .usage(I::COLOR_ATTACHMENT | I::SAMPLED);
    // SAFETY: valid create infos; the images are destroyed before their memory.
    let (lazy_image, lazy) = unsafe { allocator.create_image(&transient, &info) }.unwrap();
    // SAFETY: as above.
    let (image, plain) = unsafe { allocator.create_image(&attachment, &info) }.unwrap();
    assert_eq!(lazy.memory_type_index(), 2, "the lazily allocated type");
    assert!(
        lazy.is_dedicated(),
        "lazily allocated memory is never suballocated"
    );
    assert_eq!(
        plain.memory_type_index(),
        0,
        "a sampled attachment is committed memory"
    );
    // SAFETY: the images are unused; destroyed before their memory.
    unsafe {
        sim.device.destroy_image(lazy_image, None);
        sim.device.destroy_image(image, None);
    }
}

#[test]
fn an_upload_heavy_program_never_exhausts_a_256_mib_bar_heap() {
    let layout = GpuLayout::amd_discrete_bar();
    let sim = Sim::new(layout.clone());
    let allocator = StandardMemoryAllocator::new_default(sim.memory_device());
    let (bar_type, host_type, bar_heap) = (2u32, 1u32, 2u32);
    let bar_size = layout.heaps[bar_heap as usize].0;
    // Without `VK_EXT_memory_budget`, a heap's budget is 80 % of it; the automatic usages
    // fill a small BAR heap up to half of that (plus the block being filled).
    let ration = bar_size / 10 * 8 / ash_memory::allocator::intent::SMALL_HEAP_FILL_DIVISOR;
    let block = allocator.block_size(bar_type).unwrap();
    let info = AllocationCreateInfo {
        usage: MemoryUsage::Auto(HostAccess::SequentialWrite),
        ..Default::default()
    };
    let mut live = Vec::new();
    let mut make = |size: u64, usage: vk::BufferUsageFlags, seed: u64| {
        // SAFETY: a valid create info; destroyed below before its memory.
        let (buffer, mut alloc) =
            unsafe { allocator.create_buffer(&buffer_info(size, usage), &info) }
                .unwrap_or_else(|e| panic!("buffer {seed} of {size} bytes: {e}"));
        fill(&mut alloc, seed, 4 * KIB);
        let memory_type = alloc.memory_type_index();
        live.push((buffer, alloc, seed));
        memory_type
    };
    // 320 MiB of staging buffers, live at once: all in host memory, none in the BAR heap.
    for seed in 0..160 {
        assert_eq!(
            make(2 * MIB, B::TRANSFER_SRC, seed),
            host_type,
            "staging {seed}"
        );
    }
    assert_eq!(sim.state.heap_used(bar_heap), 0, "staging took BAR space");
    // 190 MiB of small dynamic uniform buffers: the BAR heap until its ration, then host
    // memory; every one succeeds.
    let mut in_bar = 0;
    let mut spilled = false;
    for seed in 1000..4040 {
        match make(64 * KIB, B::UNIFORM_BUFFER, seed) {
            t if t == bar_type => {
                assert!(
                    !spilled,
                    "uniform {seed} back in the BAR heap after spilling"
                );
                in_bar += 1;
            }
            t => {
                assert_eq!(t, host_type, "uniform {seed}");
                spilled = true;
            }
        }
    }
    assert!(spilled, "190 MiB of uniforms cannot all fit the ration");
    assert!(
        in_bar as u64 * 64 * KIB >= ration - block,
        "only {in_bar} uniforms in the BAR heap: the ration is {ration} bytes"
    );
    let peak = sim.state.heap_peak(bar_heap);
    assert!(
        peak <= ration + block,
        "BAR heap peaked at {peak} bytes, past its ration {ration} + one block {block}"
    );
    // A large dynamic buffer never goes there, and the BAR heap still has room for the
    // driver and the rest of the process.
    assert_eq!(make(16 * MIB, B::UNIFORM_BUFFER, 9999), host_type);
    assert!(sim.state.heap_used(bar_heap) < bar_size / 2);
    for (_, alloc, seed) in &live {
        verify(alloc, *seed, 4 * KIB, "upload-heavy");
    }
    // SAFETY: the buffers are unused; destroyed before their memory.
    unsafe {
        for (buffer, ..) in &live {
            sim.device.destroy_buffer(*buffer, None);
        }
    }
    drop(live);
    drop(allocator);
    sim.assert_nothing_allocated();
}

#[test]
fn a_pool_for_an_automatic_usage_takes_the_rules_type() {
    let sim = Sim::new(GpuLayout::amd_discrete_rebar());
    let allocator = StandardMemoryAllocator::new_default(sim.memory_device());
    let pool = allocator
        .create_pool::<FreeListAllocator>(&PoolCreateInfo {
            memory_type: PoolMemoryType::Find {
                memory_type_bits: u32::MAX,
                usage: MemoryUsage::Auto(HostAccess::SequentialWrite),
            },
            block_size: 4 * MIB,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(
        pool.memory_type_index(),
        2,
        "host-visible VRAM on resizable BAR"
    );
}

#[test]
fn the_bar_ration_follows_the_reported_budget_and_other_processes() {
    let layout = GpuLayout::amd_discrete_bar();
    let sim = Sim::with_features(
        layout,
        support::SimFeatures {
            memory_budget: true,
            ..Default::default()
        },
    );
    let bar_heap = 2;
    // The driver reports a 64 MiB budget on the BAR heap, 20 MiB of it used by another
    // process: this process may fill it up to 32 MiB in all, 12 MiB of it its own.
    sim.state.set_heap_budget(bar_heap, 64 * MIB);
    sim.state.set_other_usage(bar_heap, 20 * MIB);
    let allocator = StandardMemoryAllocator::new_default(sim.memory_device_claimed());
    let info = AllocationCreateInfo {
        usage: MemoryUsage::Auto(HostAccess::SequentialWrite),
        resource_usage: ResourceUsage::Buffer(B::UNIFORM_BUFFER),
        ..Default::default()
    };
    let requirements = AllocationRequirements {
        layout: DeviceLayout::from_size_alignment(256 * KIB, 256).unwrap(),
        memory_type_bits: GpuLayout::amd_discrete_bar().buffer_bits(),
        prefers_dedicated_allocation: false,
        requires_dedicated_allocation: false,
    };
    let mut live = Vec::new();
    let mut first_spill = None;
    for i in 0..200 {
        let alloc = allocator
            .allocate(requirements, AllocationType::Linear, &info, None)
            .unwrap();
        if alloc.memory_type_index() != 2 && first_spill.is_none() {
            first_spill = Some(i);
        }
        live.push(alloc);
    }
    let own = sim.state.heap_used(bar_heap);
    let block = allocator.block_size(2).unwrap();
    assert!(
        first_spill.is_some(),
        "50 MiB of uniforms cannot fit a 12 MiB share"
    );
    assert!(
        own <= 12 * MIB + block,
        "this process holds {own} bytes of the BAR heap, past its share + one block"
    );
    // When the other process lets go, the ration grows again.
    sim.state.set_other_usage(bar_heap, 0);
    let alloc = allocator
        .allocate(requirements, AllocationType::Linear, &info, None)
        .unwrap();
    assert_eq!(alloc.memory_type_index(), 2, "room again in the BAR heap");
}

/// `HostAccess::None` was renamed `NoAccess`; the old name still compiles (deprecated), in
/// expressions and patterns, and is the same value.
#[test]
#[allow(deprecated)]
fn the_old_name_of_no_host_access_still_works() {
    assert_eq!(HostAccess::None, HostAccess::NoAccess);
    assert_eq!(HostAccess::default(), HostAccess::NoAccess);
    assert!(matches!(HostAccess::NoAccess, HostAccess::None));
    assert_eq!(
        MemoryUsage::Auto(HostAccess::None),
        MemoryUsage::Auto(HostAccess::NoAccess)
    );
}
