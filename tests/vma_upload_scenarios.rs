//! VMA's data-uploading and device-coherent scenarios (`src/Tests.cpp`), retold on simulated
//! GPU layouts over the real driver (lavapipe, validation layer on):
//!
//! - `TestDataUploadingWithStagingBuffer`: 64 KiB of random bytes written to a mapped staging
//!   buffer and copied by the GPU into a uniform buffer in device memory;
//! - `TestDataUploadingWithMappedMemory`: the same bytes written straight into a uniform
//!   buffer in host-visible memory;
//! - `TestAdvancedDataUploading`: a uniform buffer that may land in memory the host cannot
//!   map (`HostAccess::SequentialWriteOrTransfer`, VMA's `ALLOW_TRANSFER_INSTEAD`): written in
//!   place when it is mapped, through a staging buffer when it is not;
//! - `TestDeviceCoherentMemory`: AMD's device-coherent memory types serve allocations and
//!   pools exactly when `deviceCoherentMemory` is enabled, and are refused with errors (never
//!   a panic, never a driver call) when it is not.
//!
//! VMA only records the copies; here every byte of the uniform buffer is copied back to a
//! readback buffer by the GPU and compared with what was uploaded. The GPU paths run on the
//! layouts whose host-visible types are coherent (the simulated non-coherent memory keeps a
//! device copy that real GPU copies would bypass, see `support::coherence`).

mod common;
mod support;

use ash::vk;
use ash_memory::*;
use support::{pattern, GpuLayout, Sim, KIB};

const SIZE: u64 = 64 * KIB;

/// The layouts with coherent host-visible memory: lavapipe's own, discrete GPUs with and
/// without a BAR window or resizable BAR, and an integrated one.
fn layouts() -> Vec<GpuLayout> {
    vec![
        GpuLayout::lavapipe(),
        GpuLayout::nvidia_discrete(),
        GpuLayout::amd_discrete_bar(),
        GpuLayout::amd_discrete_rebar(),
        GpuLayout::intel_integrated(),
    ]
}

/// A buffer of [`SIZE`] bytes with `usage`, made by `allocator` for `usage_of_memory`.
fn buffer(
    allocator: &StandardMemoryAllocator,
    usage: vk::BufferUsageFlags,
    usage_of_memory: MemoryUsage,
) -> (vk::Buffer, MemoryAlloc) {
    let info = AllocationCreateInfo {
        usage: usage_of_memory,
        ..Default::default()
    };
    // SAFETY: a valid buffer info for the allocator's device.
    unsafe { allocator.create_buffer(&common::buffer_info(SIZE, usage), &info) }
        .unwrap_or_else(|e| panic!("{usage:?} buffer for {usage_of_memory:?}: {e}"))
}

/// A barrier from host writes to transfer reads (VMA's `HOST_WRITE` → `TRANSFER_READ`).
///
/// # Safety
///
/// `cmd` is recording outside a render pass.
unsafe fn host_to_transfer(d: &ash::Device, cmd: vk::CommandBuffer) {
    let barrier = vk::MemoryBarrier::default()
        .src_access_mask(vk::AccessFlags::HOST_WRITE)
        .dst_access_mask(vk::AccessFlags::TRANSFER_READ);
    // SAFETY: the caller's contract.
    unsafe {
        d.cmd_pipeline_barrier(
            cmd,
            vk::PipelineStageFlags::HOST,
            vk::PipelineStageFlags::TRANSFER,
            vk::DependencyFlags::empty(),
            &[barrier],
            &[],
            &[],
        )
    };
}

/// Copies the whole of `uniform` into a new readback buffer on the GPU (after `staging`, when
/// given, was copied into it) and checks that it holds `data`, every byte.
fn copy_and_check(
    sim: &Sim,
    allocator: &StandardMemoryAllocator,
    staging: Option<vk::Buffer>,
    uniform: vk::Buffer,
    data: &[u8],
    what: &str,
) {
    let (readback, back) = buffer(
        allocator,
        vk::BufferUsageFlags::TRANSFER_DST,
        MemoryUsage::Auto(HostAccess::Random),
    );
    let region = [vk::BufferCopy::default().size(SIZE)];
    sim.ctx.submit(|d, cmd| {
        // SAFETY: every buffer is bound and idle; the copies are ordered by the barriers.
        unsafe {
            host_to_transfer(d, cmd);
            if let Some(staging) = staging {
                d.cmd_copy_buffer(cmd, staging, uniform, &region);
                common::transfer_dependency(
                    d,
                    cmd,
                    &[vk::MemoryBarrier::default()
                        .src_access_mask(vk::AccessFlags::TRANSFER_WRITE)
                        .dst_access_mask(vk::AccessFlags::TRANSFER_READ)],
                    &[],
                );
            }
            d.cmd_copy_buffer(cmd, uniform, readback, &region);
        }
        common::TestContext::transfer_barrier(d, cmd);
    });
    let mut got = vec![0u8; SIZE as usize];
    back.read(0, &mut got).unwrap();
    assert!(got == data, "{what}: the uniform buffer holds other bytes");
    // SAFETY: the copy is done.
    unsafe { allocator.destroy_buffer(readback, back) };
}

/// The three ways of VMA's uploading scenarios, on every layout with coherent host memory.
#[test]
fn uploads_reach_the_uniform_buffer_every_byte() {
    use vk::BufferUsageFlags as B;
    let uniform_usage = B::UNIFORM_BUFFER | B::TRANSFER_DST | B::TRANSFER_SRC;
    // Which ways the advanced upload took: in place, through a staging buffer.
    let mut ways = [false; 2];
    for (n, layout) in layouts().into_iter().enumerate() {
        let name = layout.name;
        let sim = Sim::new(layout);
        let device = sim.memory_device();
        let allocator = StandardMemoryAllocator::new_default(device.clone());
        let data = pattern(n as u64 + 1, SIZE as usize);

        // TestDataUploadingWithStagingBuffer.
        let what = format!("{name}, through a staging buffer");
        let (uniform, uniform_alloc) = buffer(
            &allocator,
            uniform_usage,
            MemoryUsage::Auto(HostAccess::NoAccess),
        );
        let (staging, mut staging_alloc) = buffer(
            &allocator,
            B::TRANSFER_SRC,
            MemoryUsage::Auto(HostAccess::SequentialWrite),
        );
        assert!(staging_alloc.mapped_ptr().is_some(), "{what}");
        staging_alloc.write(0, &data).unwrap();
        copy_and_check(&sim, &allocator, Some(staging), uniform, &data, &what);
        // SAFETY: the copies are done.
        unsafe {
            allocator.destroy_buffer(staging, staging_alloc);
            allocator.destroy_buffer(uniform, uniform_alloc);
        }

        // TestDataUploadingWithMappedMemory.
        let what = format!("{name}, written in place");
        let (uniform, mut uniform_alloc) = buffer(
            &allocator,
            uniform_usage,
            MemoryUsage::Auto(HostAccess::SequentialWrite),
        );
        let flags = uniform_alloc.memory_property_flags();
        assert!(
            flags.contains(vk::MemoryPropertyFlags::HOST_VISIBLE),
            "{what}"
        );
        assert!(uniform_alloc.mapped_ptr().is_some(), "{what}");
        uniform_alloc.write(0, &data).unwrap();
        copy_and_check(&sim, &allocator, None, uniform, &data, &what);
        // SAFETY: the copy is done.
        unsafe { allocator.destroy_buffer(uniform, uniform_alloc) };

        // TestAdvancedDataUploading.
        let what = format!("{name}, in place or through a staging buffer");
        let (uniform, mut uniform_alloc) = buffer(
            &allocator,
            uniform_usage,
            MemoryUsage::Auto(HostAccess::SequentialWriteOrTransfer),
        );
        let flags = uniform_alloc.memory_property_flags();
        let in_place = flags.contains(vk::MemoryPropertyFlags::HOST_VISIBLE);
        ways[usize::from(!in_place)] = true;
        if in_place {
            assert!(uniform_alloc.mapped_ptr().is_some(), "{what}");
            uniform_alloc.write(0, &data).unwrap();
            copy_and_check(&sim, &allocator, None, uniform, &data, &what);
        } else {
            assert!(uniform_alloc.mapped_ptr().is_none(), "{what}");
            assert_eq!(
                uniform_alloc.write(0, &data),
                Err(MemoryAccessError::NotHostVisible {
                    memory_type_index: uniform_alloc.memory_type_index()
                }),
                "{what}"
            );
            let (staging, mut staging_alloc) = buffer(
                &allocator,
                B::TRANSFER_SRC,
                MemoryUsage::Auto(HostAccess::SequentialWrite),
            );
            staging_alloc.write(0, &data).unwrap();
            copy_and_check(&sim, &allocator, Some(staging), uniform, &data, &what);
            // SAFETY: the copies are done.
            unsafe { allocator.destroy_buffer(staging, staging_alloc) };
        }
        // SAFETY: the copies are done.
        unsafe { allocator.destroy_buffer(uniform, uniform_alloc) };
        drop(allocator);
        sim.assert_nothing_allocated();
    }
    assert_eq!(
        ways,
        [true, true],
        "both ways of the advanced upload were taken"
    );
}

/// An AMD discrete GPU with `VK_AMD_device_coherent_memory`: the four ordinary types of a
/// 256 MiB BAR device, then the same four with `DEVICE_COHERENT | DEVICE_UNCACHED`.
fn amd_device_coherent() -> GpuLayout {
    use vk::MemoryPropertyFlags as F;
    let base = GpuLayout::amd_discrete_bar();
    let mut types = base.types.clone();
    for &(flags, heap) in &base.types {
        types.push((
            flags | F::DEVICE_COHERENT_AMD | F::DEVICE_UNCACHED_AMD,
            heap,
        ));
    }
    GpuLayout {
        name: "amd-device-coherent",
        types,
        ..base
    }
}

/// `TestDeviceCoherentMemory`: with `deviceCoherentMemory` a buffer that requires
/// `DEVICE_COHERENT_AMD` gets memory of its own of such a type, the type is found and a
/// pool of it serves allocations; without the feature every way to that memory is an error
/// and no buffer or memory is left behind.
#[test]
fn device_coherent_memory_is_served_exactly_when_the_feature_is_on() {
    let coherent = vk::MemoryPropertyFlags::DEVICE_COHERENT_AMD;
    let layout = amd_device_coherent();
    let coherent_bits = (0..layout.type_count())
        .filter(|&i| layout.flags(i).contains(coherent))
        .fold(0u32, |bits, i| bits | 1 << i);
    let usage = MemoryUsage::Custom(MemoryTypeFilter {
        required_flags: coherent,
        ..Default::default()
    });
    let info = AllocationCreateInfo {
        usage,
        allocate_preference: MemoryAllocatePreference::AlwaysAllocate,
        ..Default::default()
    };
    let buffer_info = common::buffer_info(
        SIZE,
        vk::BufferUsageFlags::TRANSFER_SRC | vk::BufferUsageFlags::TRANSFER_DST,
    );
    let sim = Sim::new(layout);
    for enabled in [true, false] {
        let features = EnabledMemoryFeatures {
            device_coherent_memory: enabled,
            ..Default::default()
        };
        let device = sim.memory_device_with(common::API_VERSION, features);
        let allocator = StandardMemoryAllocator::new_default(device.clone());
        let filter = MemoryTypeFilter::from(usage);
        let found = allocator.find_memory_type_index(u32::MAX, filter);
        // SAFETY: a valid buffer info for this device.
        let made = unsafe { allocator.create_buffer(&buffer_info, &info) };
        let pool_of_found = allocator.create_pool::<FreeListAllocator>(&PoolCreateInfo {
            memory_type: PoolMemoryType::Find {
                memory_type_bits: u32::MAX,
                usage,
            },
            min_block_count: 1,
            ..Default::default()
        });
        let first_coherent = coherent_bits.trailing_zeros();
        let pool_of_index = allocator.create_pool::<FreeListAllocator>(&PoolCreateInfo {
            memory_type: PoolMemoryType::Index(first_coherent),
            ..Default::default()
        });
        let layout = DeviceLayout::from_size_alignment(SIZE, 256).unwrap();
        let from_type = allocator.allocate_from_type(
            first_coherent,
            layout,
            AllocationType::Linear,
            &AllocationCreateInfo::default(),
        );
        let dedicated =
            allocator.allocate_dedicated(first_coherent, SIZE, None, &Default::default());
        if enabled {
            let found = found.expect("a device-coherent type is found");
            assert_ne!(coherent_bits & 1 << found, 0);
            let (buffer, alloc) = made.unwrap();
            assert!(alloc.is_dedicated());
            assert_ne!(coherent_bits & 1 << alloc.memory_type_index(), 0);
            // SAFETY: made above, never used by the GPU.
            unsafe { allocator.destroy_buffer(buffer, alloc) };
            for pool in [pool_of_found.unwrap(), pool_of_index.unwrap()] {
                assert_ne!(coherent_bits & 1 << pool.memory_type_index(), 0);
                let a = pool
                    .allocate_from_type(
                        pool.memory_type_index(),
                        layout,
                        AllocationType::Linear,
                        &AllocationCreateInfo::default(),
                    )
                    .unwrap();
                assert!(!a.is_dedicated());
            }
            assert_eq!(from_type.unwrap().memory_type_index(), first_coherent);
            assert_eq!(dedicated.unwrap().memory_type_index(), first_coherent);
        } else {
            assert_eq!(found, None, "no device-coherent type without the feature");
            assert!(
                matches!(made, Err(AllocationError::NoSuitableMemoryType { .. })),
                "{made:?}"
            );
            assert!(
                matches!(
                    pool_of_found,
                    Err(AllocationError::NoSuitableMemoryType { .. })
                ),
                "{:?}",
                pool_of_found.err()
            );
            assert!(
                matches!(
                    pool_of_index,
                    Err(AllocationError::MemoryTypeNotUsable { .. })
                ),
                "{:?}",
                pool_of_index.err()
            );
            assert!(from_type.is_err(), "{from_type:?}");
            assert!(dedicated.is_err(), "{dedicated:?}");
            assert_eq!(allocator.statistics().total, Statistics::default());
        }
        drop(allocator);
        sim.assert_nothing_allocated();
    }
}
