//! Transient memory for a 4K deferred renderer, planned from the frame graph and verified on
//! the GPU.
//!
//! The frame is [`graphs::deferred`] at 3840 × 2160: four shadow cascades, a depth prepass, a
//! five-target G-buffer, a depth pyramid, SSAO and its blur, clustered light lists, lighting
//! into HDR, a six-level bloom chain down and up, a luminance histogram, tone mapping and
//! anti-aliasing: 25 passes, 32 transient resources. Each resource is created (at its real
//! extent; images with an integer colour format of the same texel size as the renderer's, so
//! that a clear writes a known pattern), its memory requirements are queried, and the planner
//! packs them into memory where resources never alive together share bytes. The memory is
//! allocated (one dedicated allocation per memory type), every resource is bound at its
//! offset, and the frame runs on the GPU: before each pass, the aliasing barriers of the
//! resources it starts ([`record_aliasing_barriers`]); in the pass, each resource starting
//! there gets its own pattern (a buffer fill or an image clear), and each resource ending
//! there is copied to a readback buffer. Any byte that another resource overwrote while this
//! one was alive shows in the readback. A second frame with the same graph reuses the plan
//! and the memory, with new patterns.
//!
//! When the Khronos validation layer is installed, the example enables it with
//! synchronization validation (`VK_EXT_validation_features`) and fails on any message: a
//! missing or wrong aliasing barrier is a hazard it reports.
//!
//! The last line reads `frame graph: <n> transient resources in <k> allocations, <bytes> bytes
//! = <x> of the lower bound, <y> of no aliasing, data verified`.
//!
//! Run it with `cargo run --release --example frame_graph` (about a second in release, a few in
//! debug, on lavapipe).

use ash::vk;
use ash_memory::transient::graphs::{self, ResourceKind};
use ash_memory::transient::{
    record_aliasing_barriers, PlanInfo, StageAccess, TransientHandle, TransientMemory,
    TransientMemoryCreateInfo, TransientPlan, TransientPlanner, TransientResource, TransientUse,
};
use ash_memory::{
    AllocationCreateInfo, AllocationRequirements, AllocationType, HostAccess, MemoryAlloc,
    MemoryAllocator, MemoryUsage, StandardMemoryAllocator,
};
use std::error::Error;
use std::sync::Arc;

mod common;
use common::{
    buffer_info, image_copy, image_info, transfer_to_host, validation_messages, Gpu, COLOR,
};

/// The integer colour format with the renderer's texel size: a clear to a known value then
/// writes known bytes.
fn checkable_format(format: vk::Format) -> Result<vk::Format, Box<dyn Error>> {
    Ok(
        match graphs::bytes_per_texel(format).ok_or("unknown format")? {
            1 => vk::Format::R8_UINT,
            2 => vk::Format::R16_UINT,
            4 => vk::Format::R32_UINT,
            8 => vk::Format::R32G32_UINT,
            16 => vk::Format::R32G32B32A32_UINT,
            other => return Err(format!("no checkable format of {other} bytes").into()),
        },
    )
}

/// A created resource: its handle and the bytes its readback takes.
struct Created {
    handle: TransientHandle,
    /// For images: the extent and layers of the copy.
    image: Option<(u32, u32, u32)>,
    bytes: u64,
}

fn create(
    gpu: &Gpu,
    device: &ash_memory::MemoryDevice,
    graph: &graphs::FrameGraph,
) -> Result<(Vec<Created>, Vec<TransientResource>), Box<dyn Error>> {
    let d = &gpu.device;
    let mut created = Vec::new();
    let mut resources = Vec::new();
    for g in &graph.resources {
        let (handle, requirements, kind, image, bytes) = match g.kind {
            ResourceKind::Buffer { size } => {
                let info = buffer_info(
                    size,
                    vk::BufferUsageFlags::TRANSFER_SRC
                        | vk::BufferUsageFlags::TRANSFER_DST
                        | vk::BufferUsageFlags::STORAGE_BUFFER,
                );
                // SAFETY: a valid create info; destroyed at the end of `main`.
                let buffer = unsafe { d.create_buffer(&info, None)? };
                // SAFETY: a buffer of this device.
                let requirements = unsafe { AllocationRequirements::for_buffer(device, buffer)? };
                (
                    TransientHandle::Buffer(buffer),
                    requirements,
                    AllocationType::Linear,
                    None,
                    size,
                )
            }
            ResourceKind::Image {
                format,
                width,
                height,
                layers,
            } => {
                let format = checkable_format(format)?;
                let info = image_info(width, height)
                    .format(format)
                    .array_layers(layers);
                // SAFETY: a valid create info; destroyed at the end of `main`.
                let image = unsafe { d.create_image(&info, None)? };
                // SAFETY: a non-disjoint image of this device.
                let requirements = unsafe { AllocationRequirements::for_image(device, image)? };
                let texel = graphs::bytes_per_texel(format).ok_or("unknown format")?;
                (
                    TransientHandle::Image {
                        image,
                        aspect_mask: vk::ImageAspectFlags::COLOR,
                        layout: vk::ImageLayout::TRANSFER_DST_OPTIMAL,
                    },
                    requirements,
                    AllocationType::NonLinear,
                    Some((width, height, layers)),
                    u64::from(width) * u64::from(height) * u64::from(layers) * texel,
                )
            }
        };
        created.push(Created {
            handle,
            image,
            bytes,
        });
        resources.push(TransientResource::new(
            requirements.layout,
            requirements.memory_type_bits,
            kind,
            g.first_pass,
            g.last_pass,
        ));
    }
    Ok((created, resources))
}

/// Every layer of a color image.
const ALL_LAYERS: vk::ImageSubresourceRange = vk::ImageSubresourceRange {
    layer_count: vk::REMAINING_ARRAY_LAYERS,
    ..COLOR
};

/// The byte every resource `r` is filled with in `frame`: distinct for each resource of a
/// frame, and from one frame to the next.
fn pattern(frame: u32, resource: usize) -> u8 {
    (1 + resource as u32 + 64 * frame) as u8
}

/// Runs one frame on the GPU and checks every resource's readback; returns the number of
/// resources whose bytes differ from their pattern.
fn run_frame(
    gpu: &Gpu,
    plan: &TransientPlan,
    passes: u32,
    graph: &graphs::FrameGraph,
    created: &[Created],
    (readback_buffer, readback): &(vk::Buffer, MemoryAlloc),
    frame: u32,
) -> Result<usize, Box<dyn Error>> {
    let transfer = |access| StageAccess {
        stages: vk::PipelineStageFlags::TRANSFER,
        access,
    };
    let uses: Vec<TransientUse> = created
        .iter()
        .map(|c| TransientUse {
            handle: c.handle,
            first_use: transfer(vk::AccessFlags::TRANSFER_WRITE),
            last_use: transfer(vk::AccessFlags::TRANSFER_READ),
        })
        .collect();
    let mut offsets = Vec::new();
    let mut total = 0;
    for c in created {
        offsets.push(total);
        total += c.bytes;
    }
    let record = |d: &ash::Device, cmd| -> Result<(), Box<dyn Error>> {
        for pass in 0..passes {
            // SAFETY: recording, outside a render pass; every handle is bound as planned.
            unsafe { record_aliasing_barriers(d, cmd, plan, pass, &uses)? };
            let mut transitions = Vec::new();
            for (r, g) in graph.resources.iter().enumerate() {
                if g.first_pass != pass {
                    continue;
                }
                let value = u32::from_ne_bytes([pattern(frame, r); 4]);
                match created[r].handle {
                    // SAFETY: recording; the buffer is bound.
                    TransientHandle::Buffer(b) => unsafe {
                        d.cmd_fill_buffer(cmd, b, 0, vk::WHOLE_SIZE, value)
                    },
                    TransientHandle::Image { image, .. } => {
                        // SAFETY: recording; the aliasing barrier put the image in
                        // TRANSFER_DST_OPTIMAL.
                        unsafe {
                            d.cmd_clear_color_image(
                                cmd,
                                image,
                                vk::ImageLayout::TRANSFER_DST_OPTIMAL,
                                &vk::ClearColorValue {
                                    uint32: [value & texel_mask(created[r].bytes, created[r].image);
                                        4],
                                },
                                &[ALL_LAYERS],
                            )
                        };
                        transitions.push(
                            vk::ImageMemoryBarrier::default()
                                .src_access_mask(vk::AccessFlags::TRANSFER_WRITE)
                                .dst_access_mask(vk::AccessFlags::TRANSFER_READ)
                                .old_layout(vk::ImageLayout::TRANSFER_DST_OPTIMAL)
                                .new_layout(vk::ImageLayout::TRANSFER_SRC_OPTIMAL)
                                .src_queue_family_index(vk::QUEUE_FAMILY_IGNORED)
                                .dst_queue_family_index(vk::QUEUE_FAMILY_IGNORED)
                                .image(image)
                                .subresource_range(ALL_LAYERS),
                        );
                    }
                }
            }
            // The pass's writes before later reads and writes; its images ready to copy from.
            let writes = vk::MemoryBarrier::default()
                .src_access_mask(vk::AccessFlags::TRANSFER_WRITE)
                .dst_access_mask(vk::AccessFlags::TRANSFER_READ | vk::AccessFlags::TRANSFER_WRITE);
            // SAFETY: recording, outside a render pass.
            unsafe {
                d.cmd_pipeline_barrier(
                    cmd,
                    vk::PipelineStageFlags::TRANSFER,
                    vk::PipelineStageFlags::TRANSFER,
                    vk::DependencyFlags::empty(),
                    &[writes],
                    &[],
                    &transitions,
                )
            };
            for (r, g) in graph.resources.iter().enumerate() {
                if g.last_pass != pass {
                    continue;
                }
                match (created[r].handle, created[r].image) {
                    // SAFETY: recording; the readback regions are disjoint.
                    (TransientHandle::Buffer(b), _) => unsafe {
                        d.cmd_copy_buffer(
                            cmd,
                            b,
                            *readback_buffer,
                            &[vk::BufferCopy {
                                src_offset: 0,
                                dst_offset: offsets[r],
                                size: created[r].bytes,
                            }],
                        )
                    },
                    (TransientHandle::Image { image, .. }, Some((width, height, layers))) => {
                        let mut region = image_copy(width, height).buffer_offset(offsets[r]);
                        region.image_subresource.layer_count = layers;
                        // SAFETY: as above; the image is in TRANSFER_SRC_OPTIMAL since its
                        // first pass.
                        unsafe {
                            d.cmd_copy_image_to_buffer(
                                cmd,
                                image,
                                vk::ImageLayout::TRANSFER_SRC_OPTIMAL,
                                *readback_buffer,
                                &[region],
                            )
                        }
                    }
                    (TransientHandle::Image { .. }, None) => {
                        return Err("an image without extent".into())
                    }
                }
            }
        }
        // SAFETY: recording, outside a render pass.
        unsafe { transfer_to_host(d, cmd) };
        Ok(())
    };
    // SAFETY: every command is valid, and every resource it uses outlives the submission,
    // which is waited for.
    unsafe { gpu.try_submit(record)? };
    readback.invalidate(0, total)?;
    let mut corrupted = 0;
    let mut bytes = Vec::new();
    for (r, c) in created.iter().enumerate() {
        bytes.resize(c.bytes as usize, 0);
        readback.read(offsets[r], &mut bytes)?;
        let expected = pattern(frame, r);
        let bad = bytes.iter().filter(|&&b| b != expected).count();
        if bad != 0 {
            println!("{}: {bad} bytes overwritten", graph.resources[r].name);
            corrupted += 1;
        }
    }
    Ok(corrupted)
}

/// The clear value's mask for an image's channel width (1, 2 or 4 bytes per channel): the
/// value must fit the channel.
fn texel_mask(bytes: u64, image: Option<(u32, u32, u32)>) -> u32 {
    match image {
        Some((w, h, l)) => match bytes / (u64::from(w) * u64::from(h) * u64::from(l)) {
            1 => 0xFF,
            2 => 0xFFFF,
            _ => u32::MAX,
        },
        None => u32::MAX,
    }
}

fn main() -> Result<(), Box<dyn Error>> {
    let gpu = Gpu::with_synchronization_validation(c"frame_graph")?;
    let device = gpu.memory_device()?;
    let allocator = Arc::new(StandardMemoryAllocator::new_default(device.clone()));
    let graph = graphs::deferred(3840, 2160);
    let (created, resources) = create(&gpu, &device, &graph)?;
    let info = PlanInfo::for_device(&device);
    let mut planner = TransientPlanner::new();
    let plan = planner.plan(&resources, &info)?.clone();
    for (r, g) in graph.resources.iter().enumerate() {
        let p = plan.placements()[r];
        let over: Vec<&str> = plan
            .takes_over_from(r)
            .iter()
            .map(|&q| graph.resources[q].name.as_str())
            .collect();
        println!(
            "{:<20} passes {:>2}-{:<2} memory {} offset {:>10} size {:>9}{}",
            g.name,
            g.first_pass,
            g.last_pass,
            p.memory,
            p.offset,
            resources[r].layout.size(),
            if over.is_empty() {
                String::new()
            } else {
                format!("  takes over {}", over.join(", "))
            }
        );
    }
    let mut memory = TransientMemory::new(allocator.clone(), TransientMemoryCreateInfo::default());
    // SAFETY: nothing was bound to this memory before.
    unsafe { memory.prepare(&plan)? };
    for (r, c) in created.iter().enumerate() {
        // SAFETY: each handle is unbound, planned with its own requirements, and destroyed
        // before the memory is dropped.
        unsafe {
            match c.handle {
                TransientHandle::Buffer(b) => memory.bind_buffer(&plan, r, b)?,
                TransientHandle::Image { image, .. } => memory.bind_image(&plan, r, image)?,
            }
        }
    }
    let total: u64 = created.iter().map(|c| c.bytes).sum();
    let readback_info = buffer_info(total, vk::BufferUsageFlags::TRANSFER_DST);
    let host = AllocationCreateInfo {
        usage: MemoryUsage::Auto(HostAccess::Random),
        ..Default::default()
    };
    // SAFETY: a valid create info.
    let readback = unsafe { allocator.create_buffer(&readback_info, &host)? };
    let mut corrupted = run_frame(&gpu, &plan, graph.passes, &graph, &created, &readback, 0)?;
    // The next frame has the same graph: same plan, same memory, same resources.
    let again = planner.plan(&resources, &info)?.clone();
    // SAFETY: the previous frame finished (submissions are waited for).
    let changed = unsafe { memory.prepare(&again)? };
    if !planner.last_was_reused() || changed {
        return Err("an unchanged graph was planned or allocated again".into());
    }
    println!("frame 2: plan reused, memory kept");
    corrupted += run_frame(&gpu, &again, graph.passes, &graph, &created, &readback, 1)?;
    // SAFETY: the device is idle (submissions are waited for); the buffers and images are
    // destroyed before their memory is dropped.
    unsafe {
        gpu.device.destroy_buffer(readback.0, None);
        for c in &created {
            match c.handle {
                TransientHandle::Buffer(b) => gpu.device.destroy_buffer(b, None),
                TransientHandle::Image { image, .. } => gpu.device.destroy_image(image, None),
            }
        }
    }
    drop(readback);
    drop(memory);
    drop(allocator);
    drop(device);
    drop(gpu);
    let messages = validation_messages();
    if corrupted != 0 || messages != 0 {
        return Err(
            format!("{corrupted} resources corrupted, {messages} validation messages").into(),
        );
    }
    println!(
        "frame graph: {} transient resources in {} allocations, {} bytes = {:.2} of the lower bound, {:.2} of no aliasing, data verified",
        resources.len(),
        plan.memory().len(),
        plan.total_size(),
        plan.total_size() as f64 / plan.lower_bound() as f64,
        plan.total_size() as f64 / plan.unaliased_size() as f64,
    );
    Ok(())
}
