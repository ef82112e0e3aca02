//! Corruption detection: debug margins catch a write past the end of an allocation.
//!
//! Makes an allocator with 64-byte debug margins and fill patterns, allocates three buffers
//! in host-visible memory, checks the margins (`no corruption`), then writes 8 bytes past
//! the end of one buffer through its raw mapped pointer, as a buggy upload loop or shader
//! would, and checks again. The last line begins with `corruption detected:` and names the
//! damaged allocation.
//!
//! Run it with `cargo run --example corruption`.

mod common;

use ash::vk;
use ash_memory::corruption::{self, CorruptionError};
use ash_memory::*;
use common::{buffer_info, Gpu};
use std::error::Error;

fn main() -> Result<(), Box<dyn Error>> {
    let gpu = Gpu::new(c"ash-memory corruption")?;
    println!("device: {}", gpu.name());
    let allocator = StandardMemoryAllocator::new(
        gpu.memory_device()?,
        GenericMemoryAllocatorCreateInfo {
            debug: DebugOptions {
                margin: 64,
                fill_patterns: true,
                ..Default::default()
            },
            ..Default::default()
        },
    )?;
    let message = run(&gpu, &allocator)?;
    drop(allocator);
    println!("{message}");
    Ok(())
}

fn run(gpu: &Gpu, allocator: &StandardMemoryAllocator) -> Result<String, Box<dyn Error>> {
    let mut buffers = Vec::new();
    for (name, size) in [("vertices", 4096), ("indices", 1000), ("uniforms", 256)] {
        let info = AllocationCreateInfo {
            usage: MemoryUsage::Upload,
            name: Some(name.into()),
            ..Default::default()
        };
        // SAFETY: a valid create info; the buffer is destroyed before its allocation.
        let (buffer, mut alloc) = unsafe {
            allocator.create_buffer(
                &buffer_info(size, vk::BufferUsageFlags::VERTEX_BUFFER),
                &info,
            )?
        };
        // Fill patterns: a new allocation reads back as 0xDC everywhere.
        let mut first = [0u8; 4];
        alloc.read(0, &mut first)?;
        assert_eq!(first, [corruption::NEW_BYTE; 4]);
        alloc.write(0, &vec![7u8; size as usize])?;
        buffers.push((buffer, alloc, size));
    }
    let all = gpu.memory_device()?.memory_properties().all_types_mask();
    let report = allocator.check_corruption(all)?;
    println!(
        "no corruption ({} allocations checked, memory types skipped: {:?})",
        report.checked_allocations, report.skipped_memory_types
    );
    let (_, indices, size) = &buffers[1];
    let ptr = indices
        .mapped_ptr()
        .ok_or("upload memory is host-visible")?;
    // SAFETY: deliberately wrong, to show the detection: the 8 bytes after the allocation are
    // its own back margin (64 bytes of it, held by the allocation and used by nothing else),
    // so this corrupts no other data, and it stays inside the mapped memory object.
    unsafe { std::ptr::write_bytes(ptr.as_ptr().add(*size as usize), 0xFF, 8) };
    let message = match allocator.check_corruption(all) {
        Err(e @ CorruptionError::Damaged { .. }) => e.to_string(),
        Err(e) => return Err(e.into()),
        Ok(_) => return Err("the overrun was not detected".into()),
    };
    // SAFETY: nothing uses the buffers; each goes before its allocation.
    unsafe {
        for (buffer, _, _) in &buffers {
            gpu.device.destroy_buffer(*buffer, None);
        }
    }
    Ok(message)
}
