//! The memory types and granularity of the simulated GPUs: which type a plan takes, and real
//! resources bound pass by pass under the simulated driver's checks.

use super::{bar_listed_first, check_aliasing};
use crate::{common, support};
use ash_memory::transient::{plan, PlanInfo, TransientResource};
use ash_memory::{AllocationType, DeviceLayout};

/// On every simulated layout, the memory a plan chooses for render targets and storage
/// buffers is the type the allocator gives device-only memory for the same resources: never
/// the small BAR window (or another host-visible type) while plain VRAM accepts them.
#[test]
fn plans_choose_the_device_only_memory_type_of_the_allocator_on_every_layout() {
    use ash::vk;
    use ash_memory::allocator::memory_type::find_memory_type_index;
    use ash_memory::{EnabledMemoryFeatures, MemoryUsage};
    let mut layouts = support::GpuLayout::all();
    layouts.push(bar_listed_first());
    for layout in layouts {
        let buffer_bits = layout.buffer_bits();
        let image_bits = layout.image_bits(
            vk::ImageTiling::OPTIMAL,
            vk::ImageUsageFlags::COLOR_ATTACHMENT | vk::ImageUsageFlags::SAMPLED,
        );
        let sim = support::Sim::new(layout.clone());
        let device = sim.memory_device();
        let info = PlanInfo::for_device(&device);
        let mib = |n: u64| DeviceLayout::from_size_alignment(n << 20, 64 << 10).unwrap();
        let resources = [
            TransientResource::new(mib(32), image_bits, AllocationType::NonLinear, 0, 1),
            TransientResource::new(mib(16), buffer_bits, AllocationType::Linear, 1, 2),
            TransientResource::new(mib(8), image_bits, AllocationType::NonLinear, 2, 3),
        ];
        let p = plan(&resources, &info).unwrap();
        let device_only = |bits| {
            find_memory_type_index(
                device.memory_properties(),
                &EnabledMemoryFeatures::default(),
                bits,
                &MemoryUsage::DeviceOnly.into(),
            )
            .unwrap()
        };
        for (r, resource) in resources.iter().enumerate() {
            let chosen = p.memory()[p.placements()[r].memory].memory_type_index;
            let expected = device_only(resource.memory_type_bits);
            assert_eq!(
                chosen,
                expected,
                "{}: resource {r} in type {chosen} ({:?}), device-only memory is type {expected} ({:?})",
                layout.name,
                layout.flags(chosen),
                layout.flags(expected),
            );
        }
    }
}
/// A buffer or an image of a test graph, before it is created.
#[derive(Clone, Copy)]
enum Desc {
    Buffer(u64),
    Image(u32, ash::vk::ImageTiling),
}
/// Creates `desc` on `d`: the handle (buffer or image) and its memory requirements.
fn make(
    d: &ash::Device,
    desc: Desc,
) -> (
    Result<ash::vk::Buffer, ash::vk::Image>,
    ash::vk::MemoryRequirements,
) {
    use ash::vk;
    match desc {
        Desc::Buffer(size) => {
            let create = common::buffer_info(size, vk::BufferUsageFlags::STORAGE_BUFFER);
            // SAFETY: a valid create info.
            let b = unsafe { d.create_buffer(&create, None) }.unwrap();
            // SAFETY: a valid buffer.
            (Ok(b), unsafe { d.get_buffer_memory_requirements(b) })
        }
        Desc::Image(extent, tiling) => {
            let create = common::image_info(extent, vk::Format::R8G8B8A8_UNORM, tiling);
            // SAFETY: a valid create info.
            let image = unsafe { d.create_image(&create, None) }.unwrap();
            // SAFETY: a valid image.
            (Err(image), unsafe {
                d.get_image_memory_requirements(image)
            })
        }
    }
}
/// Destroys what [`make`] created.
fn unmake(d: &ash::Device, handle: Result<ash::vk::Buffer, ash::vk::Image>) {
    match handle {
        // SAFETY: unused by the device.
        Ok(b) => unsafe { d.destroy_buffer(b, None) },
        // SAFETY: unused by the device.
        Err(image) => unsafe { d.destroy_image(image, None) },
    }
}
/// Real buffers and optimal and linear images with the requirements the simulated GPUs give
/// them, planned with the device's own plan info and prepared on every simulated layout (64
/// KiB granularity included). For each pass, new handles of the resources alive in it are
/// bound where the plan says: the simulated driver, which knows nothing of lifetimes, checks
/// that no two of them share a byte, nor a granularity page between linear and optimal, and
/// that each bind is aligned, inside the memory and in an accepted type. No validation
/// message; the memory is one object of a device-only type; nothing is left after.
#[test]
fn resources_alive_together_bind_apart_on_every_simulated_layout() {
    use ash::vk;
    use ash_memory::transient::{TransientMemory, TransientMemoryCreateInfo};
    use ash_memory::StandardMemoryAllocator;
    use std::sync::Arc;
    let mut layouts = support::GpuLayout::all();
    layouts.push(bar_listed_first());
    for layout in layouts {
        let sim = support::Sim::new(layout.clone());
        {
            let device = sim.memory_device();
            let allocator = Arc::new(StandardMemoryAllocator::new_default(device.clone()));
            let info = PlanInfo::for_device(&device);
            let d = &sim.device;
            let mut rng = common::Rng(layout.type_count().into());
            let mut graph = Vec::new();
            for i in 0..30u32 {
                let first = rng.below(8) as u32;
                let last = first + rng.below(3) as u32;
                let desc = match i % 3 {
                    0 => Desc::Buffer(rng.range(1, 300_000)),
                    1 => Desc::Image(1 << rng.range(2, 9), vk::ImageTiling::OPTIMAL),
                    _ => Desc::Image(1 << rng.range(2, 9), vk::ImageTiling::LINEAR),
                };
                let kind = match desc {
                    Desc::Image(_, vk::ImageTiling::OPTIMAL) => AllocationType::NonLinear,
                    _ => AllocationType::Linear,
                };
                let (handle, req) = make(d, desc);
                unmake(d, handle);
                let layout = DeviceLayout::from_size_alignment(req.size, req.alignment).unwrap();
                let resource =
                    TransientResource::new(layout, req.memory_type_bits, kind, first, last);
                graph.push((desc, resource));
            }
            let resources: Vec<TransientResource> = graph.iter().map(|g| g.1).collect();
            let p = plan(&resources, &info).unwrap();
            check_aliasing(&resources, &info, &p);
            assert_eq!(p.memory().len(), 1, "{}", layout.name);
            let t = p.memory()[0].memory_type_index;
            let plain_vram = (0..layout.type_count()).any(|u| {
                let f = layout.flags(u);
                f.contains(vk::MemoryPropertyFlags::DEVICE_LOCAL)
                    && !f.intersects(
                        vk::MemoryPropertyFlags::HOST_VISIBLE
                            | vk::MemoryPropertyFlags::LAZILY_ALLOCATED
                            | vk::MemoryPropertyFlags::PROTECTED,
                    )
            });
            assert!(
                !plain_vram
                    || !layout
                        .flags(t)
                        .contains(vk::MemoryPropertyFlags::HOST_VISIBLE),
                "{}: transient memory in host-visible type {t}",
                layout.name
            );
            let mut memory =
                TransientMemory::new(allocator.clone(), TransientMemoryCreateInfo::default());
            // SAFETY: nothing is bound yet.
            assert!(unsafe { memory.prepare(&p) }.unwrap());
            assert_eq!(memory.kept_memory(), vec![(t, p.memory()[0].size)]);
            for pass in 0..10 {
                let mut alive = Vec::new();
                for (r, &(desc, resource)) in graph.iter().enumerate() {
                    if resource.first_pass <= pass && pass <= resource.last_pass {
                        let (handle, _) = make(d, desc);
                        // SAFETY: a new resource with the planned requirements, destroyed
                        // below, before the memory is released; never used by the device.
                        let bound = unsafe {
                            match handle {
                                Ok(b) => memory.bind_buffer(&p, r, b),
                                Err(image) => memory.bind_image(&p, r, image),
                            }
                        };
                        bound.unwrap_or_else(|e| panic!("{}: resource {r}: {e}", layout.name));
                        alive.push(handle);
                    }
                }
                for handle in alive {
                    unmake(d, handle);
                }
                let violations = sim.state.violations();
                assert!(
                    violations.is_empty(),
                    "{} pass {pass}: {violations:#?}",
                    layout.name
                );
            }
            drop(memory);
            assert_eq!(allocator.statistics().total.allocation_count, 0);
        }
        sim.assert_nothing_allocated();
        assert!(sim.ctx.messages().is_empty(), "{:?}", sim.ctx.messages());
    }
}
/// `PlanInfo::for_device` leaves out every memory type the allocator keeps for opt-in uses
/// (lazily allocated, protected, AMD device-coherent or -uncached, RDMA-capable), even listed
/// before plain VRAM; prefers the device-local types that are not host-visible; and on a device
/// whose every device-local type is host-visible (mobile, integrated) prefers none.
#[test]
fn plan_info_for_device_leaves_out_opt_in_types_and_prefers_plain_vram() {
    use ash::vk::MemoryPropertyFlags as F;
    let dl = F::DEVICE_LOCAL;
    let host = F::HOST_VISIBLE | F::HOST_COHERENT;
    let opt_in_first = support::GpuLayout {
        name: "opt-in-types-first",
        types: vec![
            (dl | F::RDMA_CAPABLE_NV, 0),
            (dl | F::DEVICE_COHERENT_AMD | F::DEVICE_UNCACHED_AMD, 0),
            (dl | F::PROTECTED, 0),
            (dl | F::LAZILY_ALLOCATED, 0),
            (dl | host, 0),
            (dl, 0),
            (host, 1),
        ],
        ..support::GpuLayout::nvidia_discrete()
    };
    let cases = [
        (opt_in_first, 0b11_0000, 0b10_0000),
        (support::GpuLayout::amd_discrete_bar(), 0b101, 0b001),
        (bar_listed_first(), 0b11, 0b10),
        (support::GpuLayout::mobile(), 0b011, 0),
        (support::GpuLayout::lavapipe(), 0b1, 0),
    ];
    for (layout, memory_types, preferred) in cases {
        let sim = support::Sim::new(layout.clone());
        let info = PlanInfo::for_device(&sim.memory_device());
        assert_eq!(
            (info.memory_types, info.preferred_memory_types),
            (memory_types, preferred),
            "{}",
            layout.name
        );
        assert_eq!(
            info.buffer_image_granularity.as_devicesize(),
            layout.buffer_image_granularity
        );
        // Resources accepting every type land in the preferred one, or the lowest allowed.
        let r = TransientResource::new(
            DeviceLayout::from_size_alignment(4096, 256).unwrap(),
            !0,
            AllocationType::NonLinear,
            0,
            0,
        );
        let p = plan(&[r], &info).unwrap();
        let expected = if preferred != 0 {
            preferred
        } else {
            memory_types
        };
        assert_eq!(
            p.memory()[0].memory_type_index,
            expected.trailing_zeros(),
            "{}",
            layout.name
        );
    }
}
