//! The aliasing barriers of a pass, recorded from a plan. See the
//! [module docs](super#aliasing-barriers).

use super::memory::TransientError;
use super::plan::TransientPlan;
use ash::vk;

/// A resource of a plan as the barriers see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransientHandle {
    /// A buffer: its aliasing barrier is a memory barrier.
    Buffer(vk::Buffer),
    /// An image: its aliasing barrier is a layout transition from `UNDEFINED` to `layout`, on
    /// every mip level and layer of `aspect_mask`.
    Image {
        /// The image.
        image: vk::Image,
        /// Its aspects.
        aspect_mask: vk::ImageAspectFlags,
        /// The layout its first pass uses.
        layout: vk::ImageLayout,
    },
}

/// How a pass uses a resource: the stages and accesses of the barriers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StageAccess {
    /// The pipeline stages.
    pub stages: vk::PipelineStageFlags,
    /// The accesses.
    pub access: vk::AccessFlags,
}

/// One resource of a plan for [`record_aliasing_barriers`]: its handle, how its first pass
/// uses it and how its last pass does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TransientUse {
    /// The resource.
    pub handle: TransientHandle,
    /// How its first pass uses it (the destination of its aliasing barrier).
    pub first_use: StageAccess,
    /// How its last pass uses it (the source of the barrier of those that take it over).
    pub last_use: StageAccess,
}

/// Records, before pass `pass`, the aliasing barriers of the resources whose first pass it is:
/// one `vkCmdPipelineBarrier` whose source is the last use of every resource they take over
/// ([`TransientPlan::takes_over_from`]) and whose destination is their first use, with a
/// memory barrier when a buffer takes over memory, and a transition from `UNDEFINED` for each
/// image (taking over memory or not: its contents are undefined either way). Records nothing
/// when no resource starts in `pass`.
///
/// # Safety
///
/// `command_buffer` is in the recording state, outside a render pass, on a queue that supports
/// the stages given; `uses[r]` describes resource `r` of `plan`, whose handles are bound as
/// the plan says.
pub unsafe fn record_aliasing_barriers(
    device: &ash::Device,
    command_buffer: vk::CommandBuffer,
    plan: &TransientPlan,
    pass: u32,
    uses: &[TransientUse],
) -> Result<(), TransientError> {
    if uses.len() != plan.placements().len() {
        return Err(TransientError::UseCountMismatch {
            uses: uses.len(),
            resources: plan.placements().len(),
        });
    }
    let (mut src_stages, mut dst_stages) = (
        vk::PipelineStageFlags::empty(),
        vk::PipelineStageFlags::empty(),
    );
    let mut memory = vk::MemoryBarrier::default();
    let mut buffers_take_over = false;
    let mut images = Vec::new();
    for r in plan.resources_starting_in(pass) {
        let mut src = StageAccess {
            stages: vk::PipelineStageFlags::empty(),
            access: vk::AccessFlags::empty(),
        };
        for &q in plan.takes_over_from(r) {
            src.stages |= uses[q].last_use.stages;
            src.access |= uses[q].last_use.access;
        }
        let first = uses[r].first_use;
        match uses[r].handle {
            TransientHandle::Buffer(_) => {
                if src.stages.is_empty() {
                    continue;
                }
                buffers_take_over = true;
                memory.src_access_mask |= src.access;
                memory.dst_access_mask |= first.access;
            }
            TransientHandle::Image {
                image,
                aspect_mask,
                layout,
            } => images.push(
                vk::ImageMemoryBarrier::default()
                    .src_access_mask(src.access)
                    .dst_access_mask(first.access)
                    .old_layout(vk::ImageLayout::UNDEFINED)
                    .new_layout(layout)
                    .src_queue_family_index(vk::QUEUE_FAMILY_IGNORED)
                    .dst_queue_family_index(vk::QUEUE_FAMILY_IGNORED)
                    .image(image)
                    .subresource_range(vk::ImageSubresourceRange {
                        aspect_mask,
                        base_mip_level: 0,
                        level_count: vk::REMAINING_MIP_LEVELS,
                        base_array_layer: 0,
                        layer_count: vk::REMAINING_ARRAY_LAYERS,
                    }),
            ),
        }
        src_stages |= src.stages;
        dst_stages |= first.stages;
    }
    if !buffers_take_over && images.is_empty() {
        return Ok(());
    }
    if src_stages.is_empty() {
        src_stages = vk::PipelineStageFlags::TOP_OF_PIPE;
    }
    if dst_stages.is_empty() {
        dst_stages = vk::PipelineStageFlags::ALL_COMMANDS;
    }
    let memory_barriers = if buffers_take_over {
        std::slice::from_ref(&memory)
    } else {
        &[]
    };
    // SAFETY: the caller's contract: a recording command buffer outside a render pass, and
    // handles bound as the plan says; the barrier structures live through the call.
    unsafe {
        device.cmd_pipeline_barrier(
            command_buffer,
            src_stages,
            dst_stages,
            vk::DependencyFlags::empty(),
            memory_barriers,
            &[],
            &images,
        );
    }
    Ok(())
}
