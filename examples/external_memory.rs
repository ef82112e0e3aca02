//! External memory: a buffer's memory exported from one Vulkan device as an opaque file
//! descriptor and imported into a second device, which reads it with its GPU.
//!
//! 1. Device A makes a custom pool whose blocks are exportable (`OPAQUE_FD`), creates a
//!    buffer in it and writes a pattern through the mapping.
//! 2. The allocation's memory object is exported with `MemoryAlloc::export_fd`; the result
//!    carries what the importer must repeat (memory type, object size, the allocation's
//!    offset in it).
//! 3. Device B imports the descriptor with `GenericMemoryAllocator::import_memory`, binds a
//!    buffer at the allocation's offset, copies it into a readback buffer with its GPU and
//!    checks every byte.
//!
//! The last line is
//! `external memory: exported <n> bytes as an fd, imported into a second device, data verified`.
//!
//! Run it with `cargo run --example external_memory` (lavapipe implements
//! `VK_KHR_external_memory_fd`).

mod common;

use ash::vk;
use ash_memory::*;
use common::{buffer_info, Gpu, API_VERSION};
use std::error::Error;
use std::os::fd::IntoRawFd;
use std::sync::Arc;

const OPAQUE_FD: vk::ExternalMemoryHandleTypeFlags = vk::ExternalMemoryHandleTypeFlags::OPAQUE_FD;
const SIZE: u64 = 256 << 10;

fn gpu() -> Result<Gpu, Box<dyn Error>> {
    Gpu::with_device_extensions(
        c"ash-memory external_memory",
        &[ash::khr::external_memory_fd::NAME],
    )
}

fn memory_device(gpu: &Gpu) -> Result<Arc<MemoryDevice>, Box<dyn Error>> {
    // SAFETY: the handles are valid, belong together and outlive the allocator and every
    // allocation (dropped before `gpu`); the instance was created for `API_VERSION`;
    // `VK_KHR_external_memory_fd` was enabled on the device.
    Ok(unsafe {
        MemoryDevice::new(
            &gpu.entry,
            &gpu.instance,
            gpu.physical_device,
            gpu.device.clone(),
            API_VERSION,
            EnabledMemoryFeatures {
                external_memory_fd: true,
                ..Default::default()
            },
        )?
    })
}

fn external_buffer_info<'a>(
    usage: vk::BufferUsageFlags,
    external: &'a mut vk::ExternalMemoryBufferCreateInfo<'_>,
) -> vk::BufferCreateInfo<'a> {
    buffer_info(SIZE, usage).push_next(external)
}

fn main() -> Result<(), Box<dyn Error>> {
    let gpu_a = gpu()?;
    let gpu_b = gpu()?;
    println!("device A and device B: {}", gpu_a.name());
    let data: Vec<u8> = (0..SIZE).map(|i| (i * 7 % 251) as u8).collect();
    let exported_bytes;
    {
        let allocator_a = StandardMemoryAllocator::new_default(memory_device(&gpu_a)?);
        let allocator_b = StandardMemoryAllocator::new_default(memory_device(&gpu_b)?);
        // SAFETY: lavapipe exports opaque fds for buffers, and every buffer bound to this
        // memory is made with `VkExternalMemoryBufferCreateInfo` of that type.
        let export = unsafe { ExportHandleTypes::new(OPAQUE_FD) };
        let pool = allocator_a.create_pool::<FreeListAllocator>(&PoolCreateInfo {
            name: Some("exported".into()),
            memory_type: PoolMemoryType::Find {
                memory_type_bits: u32::MAX,
                usage: MemoryUsage::Auto(HostAccess::SequentialWrite),
            },
            block_size: 4 << 20,
            export_handle_types: export,
            ..Default::default()
        })?;
        let mut external = vk::ExternalMemoryBufferCreateInfo::default().handle_types(OPAQUE_FD);
        let info = external_buffer_info(vk::BufferUsageFlags::TRANSFER_SRC, &mut external);
        // SAFETY: a valid create info.
        let (buffer_a, mut alloc_a) = unsafe { pool.create_buffer(&info, &Default::default())? };
        alloc_a.write(0, &data)?;
        let exported = alloc_a.export_fd(OPAQUE_FD)?;
        exported_bytes = exported.size;
        println!(
            "exported memory type {}, object of {} bytes, allocation at offset {}",
            exported.memory_type_index, exported.memory_size, exported.offset
        );

        // SAFETY: an opaque fd of the same physical device, imported once with the
        // exporter's memory type and size.
        let import = unsafe { ExternalMemoryImport::fd(OPAQUE_FD, exported.fd.into_raw_fd()) };
        let imported = allocator_b.import_memory(
            import,
            exported.memory_type_index,
            exported.memory_size,
            None,
            &AllocationCreateInfo {
                name: Some("imported".into()),
                ..Default::default()
            },
        )?;
        let mut external = vk::ExternalMemoryBufferCreateInfo::default().handle_types(OPAQUE_FD);
        let info = external_buffer_info(vk::BufferUsageFlags::TRANSFER_SRC, &mut external);
        // SAFETY: a valid create info; destroyed before `imported`.
        let buffer_b = unsafe { imported.create_aliasing_buffer(&info, exported.offset)? };
        let readback_info = AllocationCreateInfo {
            usage: MemoryUsage::Download,
            ..Default::default()
        };
        // SAFETY: a valid create info.
        let (readback, readback_alloc) = unsafe {
            allocator_b.create_buffer(
                &buffer_info(SIZE, vk::BufferUsageFlags::TRANSFER_DST),
                &readback_info,
            )?
        };
        // SAFETY: both buffers are bound and live through the submission.
        unsafe {
            gpu_b.submit(|d, cmd| {
                let region = vk::BufferCopy {
                    src_offset: 0,
                    dst_offset: 0,
                    size: SIZE,
                };
                d.cmd_copy_buffer(cmd, buffer_b, readback, &[region]);
                let barrier = vk::MemoryBarrier::default()
                    .src_access_mask(vk::AccessFlags::TRANSFER_WRITE)
                    .dst_access_mask(vk::AccessFlags::HOST_READ);
                d.cmd_pipeline_barrier(
                    cmd,
                    vk::PipelineStageFlags::TRANSFER,
                    vk::PipelineStageFlags::HOST,
                    vk::DependencyFlags::empty(),
                    &[barrier],
                    &[],
                    &[],
                );
            })?;
        }
        let mut read = vec![0; SIZE as usize];
        readback_alloc.read(0, &mut read)?;
        if read != data {
            return Err("device B read other bytes than device A wrote".into());
        }
        // SAFETY: the GPUs are done with them; destroyed before their memory is freed.
        unsafe {
            gpu_b.device.destroy_buffer(buffer_b, None);
            gpu_b.device.destroy_buffer(readback, None);
            gpu_a.device.destroy_buffer(buffer_a, None);
        }
    }
    println!(
        "external memory: exported {exported_bytes} bytes as an fd, imported into a second device, data verified"
    );
    Ok(())
}
