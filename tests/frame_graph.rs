//! Transient memory on the driver: random frame graphs planned, bound at their offsets and
//! executed under the validation layer with synchronization validation. Each resource gets its
//! own pattern at its first pass (a fill or a clear) and is copied to a readback buffer at its
//! last; a byte that another resource overwrote while this one was alive is a corruption, and a
//! missing or wrong aliasing barrier is a synchronization-validation message. Both fail the
//! test.

mod common;

use ash::vk;
use ash_memory::transient::{
    plan, record_aliasing_barriers, PlanInfo, StageAccess, TransientError, TransientHandle,
    TransientMemory, TransientMemoryCreateInfo, TransientPlan, TransientPlanner, TransientResource,
    TransientUse,
};
use ash_memory::{
    AllocationCreateInfo, AllocationRequirements, AllocationType, HostAccess, MemoryAlloc,
    MemoryAllocator, MemoryUsage, StandardMemoryAllocator,
};
use common::{color_range, image_barrier, image_copy, transfer_dependency, Rng, TestContext};
use std::sync::Arc;

/// What a graph resource is, before it is created.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Desc {
    Buffer { size: u64 },
    Image { width: u32, height: u32 },
}

impl Desc {
    /// The bytes its readback takes: the buffer, or the image's R32_UINT texels.
    fn bytes(self) -> u64 {
        match self {
            Desc::Buffer { size } => size,
            Desc::Image { width, height } => u64::from(width) * u64::from(height) * 4,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
struct GraphResource {
    desc: Desc,
    first: u32,
    last: u32,
}

fn random_graph(rng: &mut Rng) -> (u32, Vec<GraphResource>) {
    let passes = rng.range(3, 10) as u32;
    let count = rng.range(6, 28);
    let resources = (0..count)
        .map(|_| {
            let first = rng.below(u64::from(passes)) as u32;
            let last = (first + rng.below(4) as u32).min(passes - 1);
            let desc = if rng.below(2) == 0 {
                Desc::Buffer {
                    size: rng.range(1, 64) * 1024 + 4 * rng.below(256),
                }
            } else {
                Desc::Image {
                    width: rng.range(4, 96) as u32,
                    height: rng.range(4, 96) as u32,
                }
            };
            GraphResource { desc, first, last }
        })
        .collect();
    (passes, resources)
}

/// The Vulkan objects of one graph's resources.
struct Created {
    handles: Vec<TransientHandle>,
    resources: Vec<TransientResource>,
}

fn create(
    ctx: &TestContext,
    memory_device: &ash_memory::MemoryDevice,
    graph: &[GraphResource],
) -> Created {
    let d = &ctx.device;
    let mut handles = Vec::new();
    let mut resources = Vec::new();
    for g in graph {
        // SAFETY: valid create infos for this device; the objects are destroyed by `destroy`.
        let (handle, requirements, kind) = unsafe {
            match g.desc {
                Desc::Buffer { size } => {
                    let buffer = d
                        .create_buffer(
                            &common::buffer_info(
                                size,
                                vk::BufferUsageFlags::TRANSFER_SRC
                                    | vk::BufferUsageFlags::TRANSFER_DST,
                            ),
                            None,
                        )
                        .unwrap();
                    (
                        TransientHandle::Buffer(buffer),
                        AllocationRequirements::for_buffer(memory_device, buffer).unwrap(),
                        AllocationType::Linear,
                    )
                }
                Desc::Image { width, height } => {
                    let info =
                        common::image_info(width, vk::Format::R32_UINT, vk::ImageTiling::OPTIMAL)
                            .extent(vk::Extent3D {
                                width,
                                height,
                                depth: 1,
                            })
                            .usage(
                                vk::ImageUsageFlags::TRANSFER_SRC
                                    | vk::ImageUsageFlags::TRANSFER_DST,
                            );
                    let image = d.create_image(&info, None).unwrap();
                    (
                        TransientHandle::Image {
                            image,
                            aspect_mask: vk::ImageAspectFlags::COLOR,
                            layout: vk::ImageLayout::TRANSFER_DST_OPTIMAL,
                        },
                        AllocationRequirements::for_image(memory_device, image).unwrap(),
                        AllocationType::NonLinear,
                    )
                }
            }
        };
        handles.push(handle);
        resources.push(TransientResource::new(
            requirements.layout,
            requirements.memory_type_bits,
            kind,
            g.first,
            g.last,
        ));
    }
    Created { handles, resources }
}

fn destroy(ctx: &TestContext, created: &Created) {
    for h in &created.handles {
        // SAFETY: created by `create`, no longer in use (every submission was waited for).
        unsafe {
            match *h {
                TransientHandle::Buffer(b) => ctx.device.destroy_buffer(b, None),
                TransientHandle::Image { image, .. } => ctx.device.destroy_image(image, None),
            }
        }
    }
}

fn bind<A: MemoryAllocator>(memory: &TransientMemory<A>, plan: &TransientPlan, created: &Created) {
    for (r, h) in created.handles.iter().enumerate() {
        // SAFETY: each handle is unbound, was planned with its own requirements, and is
        // destroyed before the memory is released.
        unsafe {
            match *h {
                TransientHandle::Buffer(b) => memory.bind_buffer(plan, r, b),
                TransientHandle::Image { image, .. } => memory.bind_image(plan, r, image),
            }
        }
        .unwrap();
    }
}

fn pattern(frame: u64, resource: usize) -> u32 {
    0x5A00_0000 ^ ((frame as u32) << 12) ^ (resource as u32 * 0x9E37)
}

/// Runs one frame: each resource written at its first pass with its pattern and copied to
/// `readback` at its last; returns the number of resources whose copy differs.
fn run_frame(
    ctx: &TestContext,
    plan: &TransientPlan,
    passes: u32,
    graph: &[GraphResource],
    created: &Created,
    (readback_buffer, readback): &(vk::Buffer, MemoryAlloc),
    frame: u64,
) -> usize {
    let readback_buffer = *readback_buffer;
    let transfer = |access| StageAccess {
        stages: vk::PipelineStageFlags::TRANSFER,
        access,
    };
    let uses: Vec<TransientUse> = created
        .handles
        .iter()
        .map(|&handle| TransientUse {
            handle,
            first_use: transfer(vk::AccessFlags::TRANSFER_WRITE),
            last_use: transfer(vk::AccessFlags::TRANSFER_READ),
        })
        .collect();
    let mut offsets = Vec::new();
    let mut at = 0;
    for g in graph {
        offsets.push(at);
        at += g.desc.bytes();
    }
    ctx.submit(|d, cmd| {
        for pass in 0..passes {
            // SAFETY: recording, outside a render pass; the handles are bound as planned.
            unsafe { record_aliasing_barriers(d, cmd, plan, pass, &uses) }.unwrap();
            for (r, g) in graph.iter().enumerate() {
                if g.first != pass {
                    continue;
                }
                let value = pattern(frame, r);
                // SAFETY: recording; the resource is bound and in the GENERAL layout after the
                // aliasing barrier.
                unsafe {
                    match created.handles[r] {
                        TransientHandle::Buffer(b) => {
                            d.cmd_fill_buffer(cmd, b, 0, vk::WHOLE_SIZE, value)
                        }
                        TransientHandle::Image { image, .. } => d.cmd_clear_color_image(
                            cmd,
                            image,
                            vk::ImageLayout::TRANSFER_DST_OPTIMAL,
                            &vk::ClearColorValue { uint32: [value; 4] },
                            &[color_range()],
                        ),
                    }
                }
            }
            // The pass's writes before any later transfer reads or writes, and its images
            // ready to be copied from.
            let barrier = vk::MemoryBarrier::default()
                .src_access_mask(vk::AccessFlags::TRANSFER_WRITE)
                .dst_access_mask(vk::AccessFlags::TRANSFER_READ | vk::AccessFlags::TRANSFER_WRITE);
            let images: Vec<vk::ImageMemoryBarrier<'_>> = graph
                .iter()
                .zip(&created.handles)
                .filter(|(g, _)| g.first == pass)
                .filter_map(|(_, h)| match *h {
                    TransientHandle::Image { image, .. } => Some(image_barrier(
                        image,
                        vk::ImageLayout::TRANSFER_DST_OPTIMAL,
                        vk::ImageLayout::TRANSFER_SRC_OPTIMAL,
                        vk::AccessFlags::TRANSFER_WRITE,
                        vk::AccessFlags::TRANSFER_READ,
                    )),
                    TransientHandle::Buffer(_) => None,
                })
                .collect();
            // SAFETY: recording, outside a render pass; the images are valid.
            unsafe { transfer_dependency(d, cmd, &[barrier], &images) };
            for (r, g) in graph.iter().enumerate() {
                if g.last != pass {
                    continue;
                }
                // SAFETY: recording; the readback regions of the resources are disjoint.
                unsafe {
                    match (created.handles[r], g.desc) {
                        (TransientHandle::Buffer(b), Desc::Buffer { size }) => d.cmd_copy_buffer(
                            cmd,
                            b,
                            readback_buffer,
                            &[vk::BufferCopy {
                                src_offset: 0,
                                dst_offset: offsets[r],
                                size,
                            }],
                        ),
                        (TransientHandle::Image { image, .. }, Desc::Image { width, height }) => d
                            .cmd_copy_image_to_buffer(
                                cmd,
                                image,
                                vk::ImageLayout::TRANSFER_SRC_OPTIMAL,
                                readback_buffer,
                                &[image_copy(width, height).buffer_offset(offsets[r])],
                            ),
                        _ => unreachable!("handles follow the graph"),
                    }
                }
            }
        }
        TestContext::transfer_barrier(d, cmd);
    });
    readback.invalidate(0, at).unwrap();
    let mut corrupted = 0;
    for (r, g) in graph.iter().enumerate() {
        let mut bytes = vec![0u8; g.desc.bytes() as usize];
        readback.read(offsets[r], &mut bytes).unwrap();
        let value = pattern(frame, r);
        let bad = bytes
            .chunks_exact(4)
            .filter(|c| u32::from_ne_bytes([c[0], c[1], c[2], c[3]]) != value)
            .count();
        if bad != 0 {
            eprintln!(
                "frame {frame}: resource {r} ({:?}): {bad} words overwritten",
                g
            );
            corrupted += 1;
        }
    }
    corrupted
}

fn readback_for(allocator: &StandardMemoryAllocator, bytes: u64) -> (vk::Buffer, MemoryAlloc) {
    let info = AllocationCreateInfo {
        usage: MemoryUsage::Auto(HostAccess::Random),
        ..Default::default()
    };
    // SAFETY: a valid buffer create info.
    unsafe {
        allocator.create_buffer(
            &common::buffer_info(bytes, vk::BufferUsageFlags::TRANSFER_DST),
            &info,
        )
    }
    .unwrap()
}

/// Runs one frame of `graph` in new transient memory prepared for `plan`, with the resources
/// of `created` bound as planned, then destroys them; returns the number of resources whose
/// copy differs from their pattern.
fn run_in_new_memory(
    ctx: &TestContext,
    allocator: &Arc<StandardMemoryAllocator>,
    plan: &TransientPlan,
    passes: u32,
    graph: &[GraphResource],
    created: Created,
    frame: u64,
) -> usize {
    let mut memory = TransientMemory::new(allocator.clone(), TransientMemoryCreateInfo::default());
    // SAFETY: nothing was bound to this memory before.
    unsafe { memory.prepare(plan) }.unwrap();
    bind(&memory, plan, &created);
    let bytes = graph.iter().map(|g| g.desc.bytes()).sum();
    let readback = readback_for(allocator, bytes);
    let corrupted = run_frame(ctx, plan, passes, graph, &created, &readback, frame);
    destroy(ctx, &created);
    // SAFETY: the buffer is idle (the submission was waited for).
    unsafe { ctx.device.destroy_buffer(readback.0, None) };
    corrupted
}

#[test]
fn random_graphs_alias_memory_without_corruption_or_hazard() {
    let ctx = TestContext::with_sync_validation();
    let memory_device = ctx.memory_device();
    let allocator = Arc::new(StandardMemoryAllocator::new_default(memory_device.clone()));
    let info = PlanInfo::for_device(&memory_device);
    let mut rng = Rng(26);
    let (mut aliased_graphs, mut pairs) = (0, 0);
    for seed in 0..16u64 {
        let (passes, graph) = random_graph(&mut rng);
        let created = create(&ctx, &memory_device, &graph);
        let plan = plan(&created.resources, &info).unwrap();
        pairs += plan.aliasing_pairs().count();
        aliased_graphs += usize::from(plan.total_size() < plan.unaliased_size());
        let corrupted = run_in_new_memory(&ctx, &allocator, &plan, passes, &graph, created, seed);
        assert_eq!(
            corrupted, 0,
            "graph {seed}: {corrupted} resources corrupted"
        );
    }
    assert!(
        aliased_graphs >= 12,
        "only {aliased_graphs} of 16 graphs aliased memory"
    );
    assert!(pairs > 16, "only {pairs} aliasing pairs in all");
    assert!(ctx.messages().is_empty(), "{:?}", ctx.messages());
}

#[test]
fn an_unchanged_graph_reuses_its_plan_memory_and_resources_and_memory_grows_only_when_needed() {
    let ctx = TestContext::with_sync_validation();
    let memory_device = ctx.memory_device();
    let allocator = Arc::new(StandardMemoryAllocator::new_default(memory_device.clone()));
    let info = PlanInfo::for_device(&memory_device);
    let mut rng = Rng(2026);
    let (passes, graph) = random_graph(&mut rng);
    let mut planner = TransientPlanner::new();
    let mut memory = TransientMemory::new(
        allocator.clone(),
        TransientMemoryCreateInfo {
            release_after: 2,
            ..Default::default()
        },
    );
    let bytes: u64 = graph.iter().map(|g| g.desc.bytes()).sum();
    let readback = readback_for(&allocator, bytes * 2);
    let mut created = create(&ctx, &memory_device, &graph);
    let objects_before = memory_device.live_memory_objects();
    for frame in 0..4u64 {
        let plan = planner.plan(&created.resources, &info).unwrap().clone();
        // SAFETY: the previous frame finished (each submission is waited for); when memory
        // changes, the resources are recreated below before use.
        let changed = unsafe { memory.prepare(&plan) }.unwrap();
        if frame == 0 {
            assert!(changed);
            bind(&memory, &plan, &created);
        } else {
            assert!(planner.last_was_reused(), "frame {frame} replanned");
            assert!(!changed, "frame {frame} reallocated");
        }
        let corrupted = run_frame(&ctx, &plan, passes, &graph, &created, &readback, frame);
        assert_eq!(corrupted, 0);
    }
    assert_eq!(planner.plans_made(), 1);
    assert_eq!(
        memory_device.live_memory_objects(),
        objects_before + memory.kept_memory().len() as u32
    );
    // A larger graph: the plan needs more, the memory grows (a new object replaces the old).
    let mut bigger = graph.clone();
    for g in &mut bigger {
        g.first = 0;
        g.last = passes - 1;
    }
    destroy(&ctx, &created);
    created = create(&ctx, &memory_device, &bigger);
    let plan = planner.plan(&created.resources, &info).unwrap().clone();
    let before: u64 = memory.kept_memory().iter().map(|k| k.1).sum();
    // SAFETY: the old resources are destroyed.
    assert!(unsafe { memory.prepare(&plan) }.unwrap());
    let after: u64 = memory.kept_memory().iter().map(|k| k.1).sum();
    assert!(after > before, "grown: {before} -> {after}");
    bind(&memory, &plan, &created);
    assert_eq!(
        run_frame(&ctx, &plan, passes, &bigger, &created, &readback, 9),
        0
    );
    // Back to the small graph: the memory is kept (large enough) ...
    destroy(&ctx, &created);
    created = create(&ctx, &memory_device, &graph);
    let plan = planner.plan(&created.resources, &info).unwrap().clone();
    // SAFETY: the old resources are destroyed.
    let changed = unsafe { memory.prepare(&plan) }.unwrap();
    bind(&memory, &plan, &created);
    assert!(!changed, "kept while large enough");
    assert_eq!(memory.kept_memory().iter().map(|k| k.1).sum::<u64>(), after);
    // ... and shrinks to the plan's size once it was more than twice too large for
    // `release_after` plans in a row.
    let mut shrunk = false;
    for frame in 10..14u64 {
        // SAFETY: the previous frame finished; on a change the resources are recreated.
        if unsafe { memory.prepare(&plan) }.unwrap() {
            shrunk = true;
            destroy(&ctx, &created);
            created = create(&ctx, &memory_device, &graph);
            bind(&memory, &plan, &created);
        }
        assert_eq!(
            run_frame(&ctx, &plan, passes, &graph, &created, &readback, frame),
            0
        );
    }
    let planned: u64 = plan.memory().iter().map(|m| m.size).sum();
    let kept: u64 = memory.kept_memory().iter().map(|k| k.1).sum();
    if after / 2 > planned {
        assert!(
            shrunk && kept == planned,
            "shrunk to {kept}, planned {planned}"
        );
    }
    destroy(&ctx, &created);
    drop(memory);
    assert_eq!(memory_device.live_memory_objects(), objects_before);
    // SAFETY: idle.
    unsafe { ctx.device.destroy_buffer(readback.0, None) };
    drop(readback);
    assert!(ctx.messages().is_empty(), "{:?}", ctx.messages());
}

#[test]
fn misuse_of_the_driver_side_is_an_error_and_trim_releases_unused_memory() {
    let ctx = TestContext::new();
    let memory_device = ctx.memory_device();
    let allocator = Arc::new(StandardMemoryAllocator::new_default(memory_device.clone()));
    let info = PlanInfo::for_device(&memory_device);
    let (_, graph) = random_graph(&mut Rng(7));
    let created = create(&ctx, &memory_device, &graph);
    let plan = plan(&created.resources, &info).unwrap();
    let mut memory = TransientMemory::new(allocator.clone(), TransientMemoryCreateInfo::default());
    // SAFETY: the handles are valid and every bind below fails before binding; the extra
    // buffer is created with a valid create info and destroyed unused.
    unsafe {
        // Not prepared yet.
        assert_eq!(
            bind_first(&memory, &plan, &created, 0),
            Err(TransientError::NotPrepared)
        );
        memory.prepare(&plan).unwrap();
        assert_eq!(
            bind_first(&memory, &plan, &created, created.handles.len()),
            Err(TransientError::NoSuchResource {
                resource: created.handles.len(),
                count: created.handles.len()
            })
        );
        // A buffer larger than the planned memory (and than its planned range) is refused
        // before the bind.
        let too_large = plan.total_size() + (1 << 20);
        let buffer = ctx
            .device
            .create_buffer(
                &common::buffer_info(too_large, vk::BufferUsageFlags::TRANSFER_DST),
                None,
            )
            .unwrap();
        let result = memory.bind_buffer(&plan, 0, buffer);
        ctx.device.destroy_buffer(buffer, None);
        assert!(
            matches!(
                result,
                Err(TransientError::LargerThanPlanned { resource: 0, required, .. })
                    if required >= too_large
            ),
            "{result:?}"
        );
    }
    ctx.submit(|d, cmd| {
        // SAFETY: recording; nothing is recorded on error.
        let result = unsafe { record_aliasing_barriers(d, cmd, &plan, 0, &[]) };
        assert_eq!(
            result,
            Err(TransientError::UseCountMismatch {
                uses: 0,
                resources: created.handles.len()
            })
        );
    });
    // An empty plan needs no memory: trim releases what the last plan left.
    let live = memory_device.live_memory_objects();
    let empty = plan_empty(&info);
    // SAFETY: nothing was bound.
    unsafe {
        assert!(!memory.prepare(&empty).unwrap());
        assert_eq!(memory.kept_memory().len(), 1);
        memory.trim();
    }
    assert!(memory.kept_memory().is_empty());
    assert_eq!(memory_device.live_memory_objects(), live - 1);
    destroy(&ctx, &created);
}

fn plan_empty(info: &PlanInfo) -> TransientPlan {
    plan(&[], info).unwrap()
}

/// Binds resource `resource`'s handle of `created` (resource 0's handle when out of range).
///
/// # Safety
///
/// As for `TransientMemory::bind_buffer`.
unsafe fn bind_first<A: MemoryAllocator>(
    memory: &TransientMemory<A>,
    plan: &TransientPlan,
    created: &Created,
    resource: usize,
) -> Result<(), TransientError> {
    let handle = created.handles.get(resource).unwrap_or(&created.handles[0]);
    // SAFETY: the caller's contract.
    unsafe {
        match *handle {
            TransientHandle::Buffer(b) => memory.bind_buffer(plan, resource, b),
            TransientHandle::Image { image, .. } => memory.bind_image(plan, resource, image),
        }
    }
}

/// The sample graphs' resources at their lifetimes, with images as R32_UINT images of the same
/// extent (layers stacked in height) so that clears write known patterns.
fn from_sample(graph: &ash_memory::transient::graphs::FrameGraph) -> Vec<GraphResource> {
    use ash_memory::transient::graphs::ResourceKind;
    graph
        .resources
        .iter()
        .map(|r| GraphResource {
            desc: match r.kind {
                ResourceKind::Buffer { size } => Desc::Buffer { size },
                ResourceKind::Image {
                    width,
                    height,
                    layers,
                    ..
                } => Desc::Image {
                    width,
                    height: height * layers,
                },
            },
            first: r.first_pass,
            last: r.last_pass,
        })
        .collect()
}

#[test]
fn the_sample_renderers_at_small_extents_run_without_corruption_or_hazard() {
    use ash_memory::transient::graphs;
    let ctx = TestContext::with_sync_validation();
    let memory_device = ctx.memory_device();
    let allocator = Arc::new(StandardMemoryAllocator::new_default(memory_device.clone()));
    let info = PlanInfo::for_device(&memory_device);
    for (frame, sample) in [graphs::deferred(320, 180), graphs::forward_plus(320, 180)]
        .into_iter()
        .enumerate()
    {
        let graph = from_sample(&sample);
        let created = create(&ctx, &memory_device, &graph);
        let plan = plan(&created.resources, &info).unwrap();
        assert!(
            plan.total_size() < plan.unaliased_size(),
            "{}: aliasing saves memory",
            sample.name
        );
        let corrupted = run_in_new_memory(
            &ctx,
            &allocator,
            &plan,
            sample.passes,
            &graph,
            created,
            frame as u64,
        );
        assert_eq!(corrupted, 0, "{}", sample.name);
    }
    assert!(ctx.messages().is_empty(), "{:?}", ctx.messages());
}
