//! Recording the copies of a pass's buffer moves.

use crate::layout::DeviceSize;
use ash::vk;

/// One buffer move for [`record_buffer_copies`]: the old buffer (bound to the move's source)
/// and the new one (bound to its destination), and how many bytes to copy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BufferMove {
    /// The buffer bound to the source.
    pub src: vk::Buffer,
    /// The buffer bound to the destination.
    pub dst: vk::Buffer,
    /// Bytes to copy.
    pub size: DeviceSize,
}

/// Records the copies of a pass's buffer moves into `cmd`, followed by a barrier that makes
/// them visible to every later transfer, shader and host access. Submit it, wait, then
/// [`complete`](super::DefragmentationPass::complete) the moves.
///
/// # Safety
///
/// `cmd` is a command buffer of `device` in the recording state; every buffer is valid,
/// bound to its move's source or destination, at least `size` bytes long, with
/// `TRANSFER_SRC` or `TRANSFER_DST` usage; nothing else accesses them until the commands
/// are done.
pub unsafe fn record_buffer_copies(
    device: &ash::Device,
    cmd: vk::CommandBuffer,
    moves: &[BufferMove],
) {
    for m in moves {
        let region = vk::BufferCopy {
            src_offset: 0,
            dst_offset: 0,
            size: m.size,
        };
        // SAFETY: the caller's contract.
        unsafe { device.cmd_copy_buffer(cmd, m.src, m.dst, &[region]) };
    }
    let barrier = vk::MemoryBarrier::default()
        .src_access_mask(vk::AccessFlags::TRANSFER_WRITE)
        .dst_access_mask(vk::AccessFlags::MEMORY_READ | vk::AccessFlags::MEMORY_WRITE);
    // SAFETY: the caller's contract.
    unsafe {
        device.cmd_pipeline_barrier(
            cmd,
            vk::PipelineStageFlags::TRANSFER,
            vk::PipelineStageFlags::ALL_COMMANDS | vk::PipelineStageFlags::HOST,
            vk::DependencyFlags::empty(),
            &[barrier],
            &[],
            &[],
        )
    };
}
