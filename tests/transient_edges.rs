//! Edges of transient (frame-graph) memory, through the public API: random graphs checked
//! against a brute-force model of what a plan must keep apart and what it must order by
//! barriers (bytes *and* `bufferImageGranularity` pages), inputs at the limits of the types,
//! and the memory a plan gets on simulated GPUs.

mod common;
mod support;

use ash_memory::transient::{plan, PlanError, PlanInfo, TransientPlan, TransientResource};
use ash_memory::{AllocationType, DeviceAlignment, DeviceLayout};
use proptest::prelude::*;
use std::collections::BTreeSet;

/// A resource of `size` bytes aligned to `align`, in memory type 0, alive in `first..=last`.
fn res(size: u64, align: u64, kind: AllocationType, first: u32, last: u32) -> TransientResource {
    TransientResource::new(
        DeviceLayout::from_size_alignment(size, align).unwrap(),
        1,
        kind,
        first,
        last,
    )
}

fn info_with_granularity(granularity: u64) -> PlanInfo {
    PlanInfo {
        buffer_image_granularity: DeviceAlignment::new(granularity).unwrap(),
        ..Default::default()
    }
}

/// `(memory, start, end)` of resource `r`.
fn range(resources: &[TransientResource], p: &TransientPlan, r: usize) -> (usize, u64, u64) {
    let placement = p.placements()[r];
    (
        placement.memory,
        placement.offset,
        placement.offset + resources[r].layout.size(),
    )
}

/// Whether `a` and `b` alias in memory as Vulkan defines it: they share a byte, or one is
/// linear and the other optimal (or either is of unknown kind) and they share a
/// `bufferImageGranularity` page.
fn alias(
    resources: &[TransientResource],
    p: &TransientPlan,
    granularity: u64,
    a: usize,
    b: usize,
) -> bool {
    let ((ma, sa, ea), (mb, sb, eb)) = (range(resources, p, a), range(resources, p, b));
    if ma != mb {
        return false;
    }
    if sa < eb && sb < ea {
        return true;
    }
    let conflicting = resources[a]
        .allocation_type
        .conflicts_with(resources[b].allocation_type);
    let page = |x: u64| x / granularity;
    conflicting && page(sa) <= page(eb - 1) && page(sb) <= page(ea - 1)
}

/// The resources that `r` waits for through chains of aliasing barriers.
fn ordered_before(p: &TransientPlan, r: usize) -> BTreeSet<usize> {
    let mut reach = BTreeSet::new();
    let mut stack = vec![r];
    while let Some(x) = stack.pop() {
        for &q in p.takes_over_from(x) {
            if reach.insert(q) {
                stack.push(q);
            }
        }
    }
    reach
}

/// What every plan must keep: resources alive together never alias (bytes or pages), each
/// placement is aligned and inside its memory, and every earlier resource that aliases a later
/// one is ordered before it by a chain of aliasing barriers.
fn check_aliasing(resources: &[TransientResource], info: &PlanInfo, p: &TransientPlan) {
    let g = info.buffer_image_granularity.as_devicesize();
    let n = resources.len();
    for r in 0..n {
        let (m, s, e) = range(resources, p, r);
        assert!(e <= p.memory()[m].size, "resource {r} ends past its memory");
        assert!(resources[r].layout.alignment().is_aligned(s));
    }
    for r in 0..n {
        let before = ordered_before(p, r);
        for q in 0..n {
            if q == r || !alias(resources, p, g, q, r) {
                continue;
            }
            assert!(
                !resources[q].alive_together(&resources[r]),
                "{q} and {r} alive together alias"
            );
            if resources[q].last_pass < resources[r].first_pass {
                assert!(
                    before.contains(&q),
                    "{q} ({:?}, {:?}) aliases {r} ({:?}, {:?}) before it with no barrier chain",
                    resources[q].allocation_type,
                    range(resources, p, q),
                    resources[r].allocation_type,
                    range(resources, p, r),
                );
            }
        }
    }
}

fn arb_resource() -> impl Strategy<Value = TransientResource> {
    (
        1u64..=9_000,
        0u32..=10,
        prop_oneof![
            Just(AllocationType::Linear),
            Just(AllocationType::NonLinear),
            Just(AllocationType::Unknown),
        ],
        0u32..12,
        0u32..4,
    )
        .prop_map(|(size, log_align, kind, first, len)| {
            let layout =
                DeviceLayout::new(size, DeviceAlignment::from_log2(log_align).unwrap()).unwrap();
            TransientResource::new(layout, 1, kind, first, first + len)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Random graphs of buffers and images on devices with granularity pages from 1 byte to
    /// 64 KiB: nothing alive together aliases, and every alias in time is ordered.
    #[test]
    fn every_alias_in_time_is_ordered_by_barriers_including_granularity_pages(
        resources in prop::collection::vec(arb_resource(), 0..30),
        log_g in 0u32..=16,
    ) {
        let info = PlanInfo {
            buffer_image_granularity: DeviceAlignment::from_log2(log_g).unwrap(),
            ..Default::default()
        };
        let p = plan(&resources, &info).unwrap();
        check_aliasing(&resources, &info, &p);
    }

    /// A plan never needs much more memory than giving every resource its own range with no
    /// aliasing at all: every resource stacked on whole granularity pages (larger alignments
    /// first) is one such layout. The greedy placement may lose up to an alignment's padding
    /// per resource against it (a large resource placed first at 0 pushes a small, more
    /// aligned one to its next multiple), never more.
    #[test]
    fn a_plan_is_never_larger_than_no_aliasing_at_all_but_for_padding(
        resources in prop::collection::vec(arb_resource(), 0..30),
        log_g in 0u32..=16,
    ) {
        let info = PlanInfo {
            buffer_image_granularity: DeviceAlignment::from_log2(log_g).unwrap(),
            ..Default::default()
        };
        let p = plan(&resources, &info).unwrap();
        check_aliasing(&resources, &info, &p);
        let g = info.buffer_image_granularity;
        let stacked: u64 = resources
            .iter()
            .map(|r| {
                let a = r.layout.alignment().max(g);
                r.layout.align_to(a).unwrap().pad_to_alignment().size()
            })
            .sum();
        let padding: u64 = resources
            .iter()
            .map(|r| r.layout.alignment().as_devicesize() - 1)
            .sum();
        prop_assert!(
            p.total_size() <= stacked + padding,
            "plan {} above {stacked} + {padding}", p.total_size()
        );
    }
}

#[test]
fn a_buffer_and_an_image_sharing_a_page_one_after_the_other_are_ordered() {
    // A buffer of passes 0..=1 and an image of pass 2 that fits in the buffer's page but not
    // in its bytes: they may share the page (never alive together), but they alias.
    let resources = [
        res(100, 64, AllocationType::Linear, 0, 1),
        res(200, 64, AllocationType::Linear, 0, 0),
        res(100, 64, AllocationType::NonLinear, 2, 2),
    ];
    let info = info_with_granularity(4096);
    let p = plan(&resources, &info).unwrap();
    check_aliasing(&resources, &info, &p);
    // The plan does put the image in the buffer's page, beside its bytes: the case at hand.
    let ((_, s0, e0), (_, s2, e2)) = (range(&resources, &p, 0), range(&resources, &p, 2));
    assert!(e2 <= s0 || e0 <= s2, "no shared byte");
    assert!(alias(&resources, &p, 4096, 0, 2), "a shared page");
    assert!(
        p.takes_over_from(2).contains(&0),
        "{:?}",
        p.takes_over_from(2)
    );
}

#[test]
fn edge_inputs_are_errors_or_plans_never_panics() {
    let info = PlanInfo::default();
    let p = plan(&[], &info).unwrap();
    assert!(p.memory().is_empty() && p.placements().is_empty());
    assert_eq!(p.takes_over_from(0), &[] as &[usize]);
    assert_eq!(p.takes_over_from(usize::MAX), &[] as &[usize]);
    assert_eq!(p.total_size(), 0);

    let bad = [res(64, 1, AllocationType::Linear, 5, 4)];
    assert_eq!(
        plan(&bad, &info),
        Err(PlanError::InvalidLifetime {
            resource: 0,
            first_pass: 5,
            last_pass: 4
        })
    );
    // Passes at the top of u32.
    let top = [
        res(64, 1, AllocationType::Linear, u32::MAX, u32::MAX),
        res(64, 1, AllocationType::Linear, u32::MAX - 1, u32::MAX),
        res(64, 1, AllocationType::NonLinear, 0, u32::MAX),
        res(64, 1, AllocationType::Linear, 0, u32::MAX - 2),
    ];
    let p = plan(&top, &info_with_granularity(1024)).unwrap();
    check_aliasing(&top, &info_with_granularity(1024), &p);
    assert_eq!(p.takes_over_from(0), &[3]);
    // No common memory type.
    let mut none = res(64, 1, AllocationType::Linear, 0, 0);
    none.memory_type_bits = 0b100;
    let only_type_0 = PlanInfo {
        memory_types: 0b1,
        ..Default::default()
    };
    assert_eq!(
        plan(&[none], &only_type_0),
        Err(PlanError::NoMemoryType {
            resource: 0,
            memory_type_bits: 0b100
        })
    );
    none.memory_type_bits = 0;
    assert!(matches!(
        plan(&[none], &info),
        Err(PlanError::NoMemoryType { .. })
    ));
    // Sizes that cannot add up.
    let huge = DeviceLayout::MAX_SIZE / 2 + 1;
    let two = [
        res(huge, 1, AllocationType::Linear, 0, 0),
        res(huge, 1, AllocationType::Linear, 0, 0),
    ];
    assert_eq!(plan(&two, &info), Err(PlanError::TooLarge));
    // The largest layouts: a clear error where the planner's offset bound (size, alignment
    // and two pages per resource) does not fit, a plan where it does.
    let one = [res(DeviceLayout::MAX_SIZE, 1, AllocationType::Linear, 0, 0)];
    assert_eq!(plan(&one, &info), Err(PlanError::TooLarge));
    let half = [res(
        DeviceLayout::MAX_SIZE / 2,
        1,
        AllocationType::Linear,
        0,
        0,
    )];
    assert_eq!(
        plan(&half, &info).unwrap().total_size(),
        DeviceLayout::MAX_SIZE / 2
    );
    let giant_pages = PlanInfo {
        buffer_image_granularity: DeviceAlignment::MAX,
        ..Default::default()
    };
    assert_eq!(plan(&one, &giant_pages), Err(PlanError::TooLarge));
    let small = [res(64, 1, AllocationType::Linear, 0, 0)];
    assert_eq!(plan(&small, &giant_pages), Err(PlanError::TooLarge));
    // Duplicates: the same resource many times, alive together, never shares a byte.
    let dup = vec![res(1000, 256, AllocationType::NonLinear, 3, 7); 50];
    let p = plan(&dup, &info_with_granularity(4096)).unwrap();
    check_aliasing(&dup, &info_with_granularity(4096), &p);
    assert_eq!(p.total_size(), 49 * 1024 + 1000);
}

#[test]
fn thousands_of_resources_plan_and_keep_their_promises() {
    let mut rng = common::Rng(7);
    let kinds = [AllocationType::Linear, AllocationType::NonLinear];
    let resources: Vec<_> = (0..3000)
        .map(|_| {
            let first = rng.below(200) as u32;
            res(
                rng.range(1, 1 << 20),
                1 << rng.below(16),
                *rng.pick(&kinds),
                first,
                first + rng.below(10) as u32,
            )
        })
        .collect();
    let info = info_with_granularity(1024);
    let p = plan(&resources, &info).unwrap();
    // The brute-force check is quadratic with a chain walk per resource: check a sample.
    check_aliasing(
        &resources[..600],
        &info,
        &plan(&resources[..600], &info).unwrap(),
    );
    assert!(p.total_size() <= p.unaliased_size());
    assert!(
        p.total_size() * 100 <= p.lower_bound() * 110,
        "within 10% of the bound"
    );
}

/// An AMD-like layout that lists its 256 MiB BAR type (`DEVICE_LOCAL | HOST_VISIBLE`) before
/// plain VRAM, as some drivers have.
fn bar_listed_first() -> support::GpuLayout {
    use ash::vk::MemoryPropertyFlags as F;
    let dl = F::DEVICE_LOCAL;
    let host = F::HOST_VISIBLE | F::HOST_COHERENT;
    support::GpuLayout {
        name: "amd-bar-listed-first",
        types: vec![
            (dl | host, 2),
            (dl, 0),
            (host, 1),
            (host | F::HOST_CACHED, 1),
        ],
        ..support::GpuLayout::amd_discrete_bar()
    }
}

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

/// A random frame of buffers: `(passes, [(size, first, last)])`.
fn random_buffer_frame(rng: &mut common::Rng) -> (u32, Vec<(u64, u32, u32)>) {
    let passes = rng.range(1, 9) as u32;
    let count = rng.range(1, 24);
    let frame = (0..count)
        .map(|_| {
            let first = rng.below(u64::from(passes)) as u32;
            let last = first + rng.below(u64::from(passes - first)) as u32;
            (rng.range(1, 40_000) & !3, first, last)
        })
        .map(|(size, first, last)| (size.max(4), first, last))
        .collect();
    (passes, frame)
}

/// Each frame a new random graph of buffers in one `TransientMemory`, from an allocator with
/// debug margins and fill patterns: the memory is reused, grown, shrunk and released from
/// frame to frame, the buffers are bound where the plan says, and a GPU round trip in pass
/// order (a fill when a buffer's lifetime starts, a copy to a readback at its end, a full
/// barrier between passes) finds every buffer's pattern intact. The memory kept is exactly
/// what the plans asked for, and everything is freed at the end.
#[test]
fn changing_graphs_round_trip_through_reused_memory_with_debug_margins() {
    use ash::vk;
    use ash_memory::transient::{TransientMemory, TransientMemoryCreateInfo, TransientPlanner};
    use ash_memory::{
        AllocationCreateInfo, DebugOptions, GenericMemoryAllocatorCreateInfo, HostAccess,
        MemoryAllocator, MemoryUsage, StandardMemoryAllocator,
    };
    use std::sync::Arc;
    let ctx = common::TestContext::new();
    let device = ctx.memory_device();
    let allocator = Arc::new(
        StandardMemoryAllocator::new(
            device.clone(),
            GenericMemoryAllocatorCreateInfo {
                debug: DebugOptions {
                    margin: 64,
                    fill_patterns: true,
                    ..Default::default()
                },
                ..Default::default()
            },
        )
        .unwrap(),
    );
    let objects_before = device.live_memory_objects();
    let info = PlanInfo::for_device(&device);
    let mut planner = TransientPlanner::new();
    let mut memory = TransientMemory::new(
        allocator.clone(),
        TransientMemoryCreateInfo {
            release_after: 1,
            ..Default::default()
        },
    );
    let readback_bytes = 24 * 40_000;
    // SAFETY: a valid create info.
    let (readback, readback_alloc) = unsafe {
        allocator.create_buffer(
            &common::buffer_info(readback_bytes, vk::BufferUsageFlags::TRANSFER_DST),
            &AllocationCreateInfo {
                usage: MemoryUsage::Auto(HostAccess::Random),
                ..Default::default()
            },
        )
    }
    .unwrap();
    let mut rng = common::Rng(0x7a5e);
    let mut changes = 0;
    for frame in 0..24u32 {
        let (passes, graph) = random_buffer_frame(&mut rng);
        let usage = vk::BufferUsageFlags::TRANSFER_SRC | vk::BufferUsageFlags::TRANSFER_DST;
        let buffers: Vec<vk::Buffer> = graph
            .iter()
            .map(|&(size, ..)| {
                // SAFETY: a valid create info.
                unsafe {
                    ctx.device
                        .create_buffer(&common::buffer_info(size, usage), None)
                }
                .unwrap()
            })
            .collect();
        let resources: Vec<TransientResource> = buffers
            .iter()
            .zip(&graph)
            .map(|(&b, &(_, first, last))| {
                // SAFETY: a valid buffer.
                let req = unsafe { ctx.device.get_buffer_memory_requirements(b) };
                TransientResource::new(
                    DeviceLayout::from_size_alignment(req.size, req.alignment).unwrap(),
                    req.memory_type_bits,
                    AllocationType::Linear,
                    first,
                    last,
                )
            })
            .collect();
        let p = planner.plan(&resources, &info).unwrap().clone();
        // SAFETY: the previous frame's buffers are destroyed and its submission waited for.
        changes += usize::from(unsafe { memory.prepare(&p) }.unwrap());
        let kept = memory.kept_memory();
        // Every planned object is kept, of its type and at least its size (larger only while
        // a previous plan needed more, for at most `release_after` plans).
        for m in p.memory() {
            assert!(
                kept.iter()
                    .any(|&(t, size)| t == m.memory_type_index && size >= m.size),
                "frame {frame}: {m:?} not in {kept:?}"
            );
        }
        assert!(
            kept.len() <= p.memory().len() + 1,
            "frame {frame}: {kept:?}"
        );
        for (r, &b) in buffers.iter().enumerate() {
            // SAFETY: a new buffer with the planned requirements, destroyed below before the
            // memory is prepared again; the passes are ordered by full barriers.
            unsafe { memory.bind_buffer(&p, r, b) }.unwrap();
        }
        let word = |r: usize| 0x0100_0000 * (frame + 1) + r as u32;
        ctx.submit(|d, cmd| {
            for pass in 0..passes {
                for (r, &(size, first, _)) in graph.iter().enumerate() {
                    if first == pass {
                        // SAFETY: recording; the buffer is bound and large enough.
                        unsafe { d.cmd_fill_buffer(cmd, buffers[r], 0, size, word(r)) };
                    }
                }
                common::TestContext::transfer_barrier(d, cmd);
                for (r, &(size, _, last)) in graph.iter().enumerate() {
                    if last == pass {
                        let region = vk::BufferCopy {
                            src_offset: 0,
                            dst_offset: r as u64 * 40_000,
                            size,
                        };
                        // SAFETY: recording; both buffers are bound and large enough.
                        unsafe { d.cmd_copy_buffer(cmd, buffers[r], readback, &[region]) };
                    }
                }
                common::TestContext::transfer_barrier(d, cmd);
            }
        });
        let mut bytes = vec![0u8; readback_bytes as usize];
        readback_alloc.read(0, &mut bytes).unwrap();
        for (r, &(size, first, last)) in graph.iter().enumerate() {
            let at = r * 40_000;
            let got = &bytes[at..at + size as usize];
            let want = word(r).to_le_bytes();
            let bad = got.chunks(4).position(|w| w != want);
            assert_eq!(
                bad, None,
                "frame {frame}: buffer {r} ({size} bytes, passes {first}..={last}) at {:?} overwritten",
                p.placements()[r]
            );
        }
        for &b in &buffers {
            // SAFETY: the submission was waited for.
            unsafe { ctx.device.destroy_buffer(b, None) };
        }
    }
    assert!(changes > 2, "memory changed {changes} times");
    drop(memory);
    // SAFETY: idle.
    unsafe { ctx.device.destroy_buffer(readback, None) };
    drop(readback_alloc);
    assert_eq!(allocator.statistics().total.allocation_count, 0);
    assert_eq!(
        device.live_memory_objects(),
        objects_before + allocator.statistics().total.block_count as u32
    );
    drop(allocator);
    assert_eq!(device.live_memory_objects(), objects_before);
    assert!(ctx.messages().is_empty(), "{:?}", ctx.messages());
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

/// A plan larger than its heap, or than what is left of it: `prepare` fails with an
/// allocation error, keeps nothing and leaks nothing; the last plan stays prepared.
#[test]
fn a_plan_larger_than_its_heap_is_a_clear_error() {
    use ash_memory::transient::{TransientError, TransientMemory, TransientMemoryCreateInfo};
    use ash_memory::StandardMemoryAllocator;
    use std::sync::Arc;
    let sim = support::Sim::new(support::GpuLayout::small_heaps(64 << 20, 64 << 20));
    {
        let device = sim.memory_device();
        let allocator = Arc::new(StandardMemoryAllocator::new_default(device.clone()));
        let info = PlanInfo::for_device(&device);
        let mib = |n: u64| DeviceLayout::from_size_alignment(n << 20, 256).unwrap();
        let small = plan(
            &[TransientResource::new(
                mib(8),
                !0,
                AllocationType::Linear,
                0,
                0,
            )],
            &info,
        )
        .unwrap();
        let too_large = plan(
            &[
                TransientResource::new(mib(40), !0, AllocationType::Linear, 0, 1),
                TransientResource::new(mib(40), !0, AllocationType::NonLinear, 1, 2),
            ],
            &info,
        )
        .unwrap();
        assert_eq!(too_large.total_size(), 80 << 20);
        let mut memory =
            TransientMemory::new(allocator.clone(), TransientMemoryCreateInfo::default());
        // SAFETY: nothing is bound to the memory in this test.
        assert!(unsafe { memory.prepare(&small) }.unwrap());
        let kept = memory.kept_memory();
        // SAFETY: as above.
        let result = unsafe { memory.prepare(&too_large) };
        assert!(
            matches!(result, Err(TransientError::Allocation(_))),
            "{result:?}"
        );
        assert_eq!(memory.kept_memory(), kept);
        assert_eq!(sim.state.live_objects(), 1);
        // The last plan prepared is still the one bound against.
        let create = common::buffer_info(8 << 20, ash::vk::BufferUsageFlags::TRANSFER_DST);
        // SAFETY: a valid create info.
        let buffer = unsafe { sim.device.create_buffer(&create, None) }.unwrap();
        // SAFETY: a new buffer, destroyed before the memory is released.
        let bound = unsafe { memory.bind_buffer(&small, 0, buffer) };
        // SAFETY: unused.
        unsafe { sim.device.destroy_buffer(buffer, None) };
        assert_eq!(bound, Ok(()));
        drop(memory);
        drop(allocator);
    }
    sim.assert_nothing_allocated();
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
