//! Aliasing on the driver: two optimal images and a buffer bound to the same bytes of one
//! allocation, used one after the other with the barriers the crate's docs prescribe, every
//! result read back and checked; and every refused bind refused before it reaches the driver
//! (the validation layer, which fails the test on any message, would see a bad one).

mod common;
mod support;

use ash::vk;
use ash_memory::*;
use common::{
    buffer_info, color_range, image_barrier, image_copy, image_info, transfer_dependency,
    TestContext,
};
use support::{GpuLayout, Sim};

const EXTENT: u32 = 64;
/// Bytes of a 64x64 image of 4-byte texels, and of the aliased buffer.
const IMAGE_BYTES: u64 = (EXTENT * EXTENT * 4) as u64;
const A_TEXEL: [u32; 4] = [0x11, 0x22, 0x33, 0x44];
const B_TEXEL: u32 = 0xDEAD_BEEF;
const FILL: u32 = 0x5A5A_5A5A;

fn transfer_image(format: vk::Format) -> vk::ImageCreateInfo<'static> {
    image_info(EXTENT, format, vk::ImageTiling::OPTIMAL)
        .usage(vk::ImageUsageFlags::TRANSFER_DST | vk::ImageUsageFlags::TRANSFER_SRC)
}

/// Clears `image` (first use: from `UNDEFINED`, after the previous user of the bytes) and
/// copies it to `readback` at `at`.
///
/// # Safety
/// `cmd` is recording; the handles are valid and bound.
unsafe fn clear_and_read(
    d: &ash::Device,
    cmd: vk::CommandBuffer,
    image: vk::Image,
    color: vk::ClearColorValue,
    readback: vk::Buffer,
    at: u64,
) {
    // SAFETY: the caller's contract.
    unsafe {
        // The previous user of these bytes (another image, read by a copy) must be done
        // before the clear writes them: the barrier waits for all transfers, and its
        // `UNDEFINED` old layout discards whatever the bytes hold.
        transfer_dependency(
            d,
            cmd,
            &[],
            &[image_barrier(
                image,
                vk::ImageLayout::UNDEFINED,
                vk::ImageLayout::TRANSFER_DST_OPTIMAL,
                vk::AccessFlags::TRANSFER_WRITE,
                vk::AccessFlags::TRANSFER_WRITE,
            )],
        );
        d.cmd_clear_color_image(
            cmd,
            image,
            vk::ImageLayout::TRANSFER_DST_OPTIMAL,
            &color,
            &[color_range()],
        );
        transfer_dependency(
            d,
            cmd,
            &[],
            &[image_barrier(
                image,
                vk::ImageLayout::TRANSFER_DST_OPTIMAL,
                vk::ImageLayout::TRANSFER_SRC_OPTIMAL,
                vk::AccessFlags::TRANSFER_WRITE,
                vk::AccessFlags::TRANSFER_READ,
            )],
        );
        d.cmd_copy_image_to_buffer(
            cmd,
            image,
            vk::ImageLayout::TRANSFER_SRC_OPTIMAL,
            readback,
            &[image_copy(EXTENT, EXTENT).buffer_offset(at)],
        );
    }
}

#[test]
fn two_images_and_a_buffer_take_turns_in_one_allocation() {
    let ctx = TestContext::new();
    let d = &ctx.device;
    {
        let device = ctx.memory_device();
        let allocator = StandardMemoryAllocator::new_default(device.clone());
        // SAFETY: valid create infos; each image is bound below before any use.
        let (image_a, image_b) = unsafe {
            (
                d.create_image(&transfer_image(vk::Format::R8G8B8A8_UINT), None)
                    .unwrap(),
                d.create_image(&transfer_image(vk::Format::R32_UINT), None)
                    .unwrap(),
            )
        };
        // SAFETY: valid, unbound images of this device.
        let (req_a, req_b) = unsafe {
            (
                AllocationRequirements::for_image(&device, image_a).unwrap(),
                AllocationRequirements::for_image(&device, image_b).unwrap(),
            )
        };
        // One allocation for the largest, allowed by both; `Unknown` so that buffers and
        // images may share it.
        let size = req_a
            .layout
            .size()
            .max(req_b.layout.size())
            .max(IMAGE_BYTES);
        let alignment = req_a.layout.alignment().max(req_b.layout.alignment());
        let requirements = AllocationRequirements {
            layout: DeviceLayout::new(size, alignment).unwrap(),
            memory_type_bits: req_a.memory_type_bits & req_b.memory_type_bits,
            prefers_dedicated_allocation: false,
            requires_dedicated_allocation: false,
        };
        let shared = allocator
            .allocate(
                requirements,
                AllocationType::Unknown,
                &AllocationCreateInfo::default(),
                None,
            )
            .unwrap();
        // SAFETY: unbound images; they are destroyed before `shared` is dropped; their uses
        // are ordered by the barriers recorded below.
        unsafe {
            shared.bind_image_at(image_a, 0).unwrap();
            shared.bind_image_at(image_b, 0).unwrap();
        }
        let usage = vk::BufferUsageFlags::TRANSFER_DST | vk::BufferUsageFlags::TRANSFER_SRC;
        // SAFETY: a valid create info; destroyed before `shared` is dropped.
        let buffer =
            unsafe { shared.create_aliasing_buffer(&buffer_info(IMAGE_BYTES, usage), 0) }.unwrap();

        let readback_info = AllocationCreateInfo {
            usage: MemoryUsage::Auto(HostAccess::Random),
            ..Default::default()
        };
        // SAFETY: a valid create info.
        let (readback, readback_alloc) = unsafe {
            allocator.create_buffer(
                &buffer_info(3 * IMAGE_BYTES, vk::BufferUsageFlags::TRANSFER_DST),
                &readback_info,
            )
        }
        .unwrap();

        ctx.submit(|d, cmd| {
            // SAFETY: recording; every handle is valid and bound.
            unsafe {
                clear_and_read(
                    d,
                    cmd,
                    image_a,
                    vk::ClearColorValue { uint32: A_TEXEL },
                    readback,
                    0,
                );
                clear_and_read(
                    d,
                    cmd,
                    image_b,
                    vk::ClearColorValue {
                        uint32: [B_TEXEL, 0, 0, 0],
                    },
                    readback,
                    IMAGE_BYTES,
                );
                // The buffer's turn: wait for image B's clear and copy.
                let all_transfers = vk::MemoryBarrier::default()
                    .src_access_mask(vk::AccessFlags::TRANSFER_WRITE)
                    .dst_access_mask(
                        vk::AccessFlags::TRANSFER_WRITE | vk::AccessFlags::TRANSFER_READ,
                    );
                transfer_dependency(d, cmd, &[all_transfers], &[]);
                d.cmd_fill_buffer(cmd, buffer, 0, IMAGE_BYTES, FILL);
                transfer_dependency(d, cmd, &[all_transfers], &[]);
                let region = vk::BufferCopy {
                    src_offset: 0,
                    dst_offset: 2 * IMAGE_BYTES,
                    size: IMAGE_BYTES,
                };
                d.cmd_copy_buffer(cmd, buffer, readback, &[region]);
            }
            TestContext::transfer_barrier(d, cmd);
        });

        let mut bytes = vec![0u8; 3 * IMAGE_BYTES as usize];
        readback_alloc.read(0, &mut bytes).unwrap();
        let (a, rest) = bytes.split_at(IMAGE_BYTES as usize);
        let (b, c) = rest.split_at(IMAGE_BYTES as usize);
        let a_texel = A_TEXEL.map(|v| v as u8);
        assert!(a.chunks(4).all(|t| t == a_texel), "image A read back wrong");
        let b_texel = B_TEXEL.to_le_bytes();
        assert!(b.chunks(4).all(|t| t == b_texel), "image B read back wrong");
        assert!(c.iter().all(|&x| x == 0x5A), "buffer read back wrong");

        // SAFETY: the GPU is done (submit waits); destroyed before their memory is freed.
        unsafe {
            d.destroy_buffer(buffer, None);
            d.destroy_image(image_a, None);
            d.destroy_image(image_b, None);
            d.destroy_buffer(readback, None);
        }
        drop((shared, readback_alloc, allocator));
        assert_eq!(device.live_memory_objects(), 0);
    }
}

#[test]
fn bad_binds_are_refused_before_the_driver_and_leak_nothing() {
    let ctx = TestContext::new();
    let d = &ctx.device;
    {
        let device = ctx.memory_device();
        let allocator = StandardMemoryAllocator::new_default(device.clone());
        let usage = vk::BufferUsageFlags::STORAGE_BUFFER | vk::BufferUsageFlags::TRANSFER_DST;
        // SAFETY: a valid create info.
        let probe = unsafe { d.create_buffer(&buffer_info(4096, usage), None) }.unwrap();
        // SAFETY: a valid, unbound buffer.
        let req = unsafe { AllocationRequirements::for_buffer(&device, probe) }.unwrap();
        let alloc = allocator
            .allocate(
                req,
                AllocationType::Linear,
                &AllocationCreateInfo::default(),
                None,
            )
            .unwrap();
        let size = alloc.size();
        // SAFETY: (every bind below) `probe` is valid and unbound; the refused binds never
        // reach the driver, so it stays unbound until the good bind at the end.
        unsafe {
            assert_eq!(
                alloc.bind_buffer_at(probe, 1),
                Err(MemoryAccessError::ResourceOutOfBounds {
                    local_offset: 1,
                    required: req.layout.size(),
                    size
                })
            );
            assert_eq!(
                alloc.bind_buffer_at(probe, u64::MAX),
                Err(MemoryAccessError::ResourceOutOfBounds {
                    local_offset: u64::MAX,
                    required: req.layout.size(),
                    size
                })
            );
        }
        // A smaller buffer, bound at an offset that breaks its alignment.
        // SAFETY: a valid create info.
        let small = unsafe { d.create_buffer(&buffer_info(64, usage), None) }.unwrap();
        // SAFETY: valid and unbound.
        let small_req = unsafe { AllocationRequirements::for_buffer(&device, small) }.unwrap();
        let align = small_req.layout.alignment().as_devicesize();
        assert!(align > 1, "lavapipe aligns storage buffers");
        // SAFETY: as above.
        unsafe {
            assert_eq!(
                alloc.bind_buffer_at(small, 1),
                Err(MemoryAccessError::MisalignedBind {
                    offset: alloc.offset() + 1,
                    alignment: align
                })
            );
            alloc.bind_buffer_at(small, align).unwrap();
            alloc.bind_buffer_at(probe, 0).unwrap();
        }
        // An image in a buffer's (Linear) block allocation: its page could touch a linear
        // neighbour's, and lavapipe's granularity is above 1.
        assert!(device.buffer_image_granularity().as_devicesize() > 1);
        let info = transfer_image(vk::Format::R8G8B8A8_UINT).extent(vk::Extent3D {
            width: 4,
            height: 4,
            depth: 1,
        });
        // SAFETY: a valid create info; a refused image is destroyed by the call itself
        // (the validation layer reports any object left at device destruction).
        let refused = unsafe { alloc.create_aliasing_image(&info, 0) };
        assert_eq!(
            refused,
            Err(MemoryAccessError::GranularityConflict {
                allocation_type: AllocationType::Linear
            })
        );
        // SAFETY: as above.
        let refused = unsafe { alloc.create_aliasing_buffer(&buffer_info(size + 1, usage), 0) };
        assert!(matches!(
            refused,
            Err(MemoryAccessError::ResourceOutOfBounds { .. })
        ));
        // SAFETY: nothing uses them; destroyed before their memory is freed.
        unsafe {
            d.destroy_buffer(probe, None);
            d.destroy_buffer(small, None);
        }
    }
}

#[test]
fn memory_type_and_dedicated_rules_are_checked() {
    // NVIDIA: optimal images only in DEVICE_LOCAL memory (type 0).
    let sim = Sim::new(GpuLayout::nvidia_discrete());
    {
        let device = sim.memory_device();
        let allocator = StandardMemoryAllocator::new_default(device.clone());
        let host = allocator
            .allocate_from_type(
                1,
                DeviceLayout::from_size_alignment(1 << 20, 4096).unwrap(),
                AllocationType::Unknown,
                &AllocationCreateInfo::default(),
            )
            .unwrap();
        let info = transfer_image(vk::Format::R8G8B8A8_UINT);
        // SAFETY: a valid create info; a refused image is destroyed by the call.
        let refused = unsafe { host.create_aliasing_image(&info, 0) };
        assert_eq!(
            refused,
            Err(MemoryAccessError::IncompatibleMemoryType {
                memory_type_index: 1,
                memory_type_bits: 0b001
            })
        );
        // A resource the driver says requires its own memory object.
        sim.state
            .requires_dedicated
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let usage = vk::BufferUsageFlags::TRANSFER_DST;
        // SAFETY: as above.
        let refused = unsafe { host.create_aliasing_buffer(&buffer_info(256, usage), 0) };
        assert_eq!(refused, Err(MemoryAccessError::RequiresDedicatedAllocation));
        // ... and memory dedicated to one buffer takes no other.
        // SAFETY: a valid create info.
        let (owner, dedicated) = unsafe {
            allocator.create_buffer(&buffer_info(256, usage), &AllocationCreateInfo::default())
        }
        .unwrap();
        assert!(dedicated.is_dedicated());
        // SAFETY: as above.
        let refused = unsafe { dedicated.create_aliasing_buffer(&buffer_info(256, usage), 0) };
        assert_eq!(refused, Err(MemoryAccessError::DedicatedToAnotherResource));
        // SAFETY: unused; destroyed before its memory.
        unsafe { sim.device.destroy_buffer(owner, None) };
        drop((host, dedicated, allocator, device));
        sim.assert_nothing_allocated();
    }
}

#[test]
fn a_failing_bind_destroys_the_aliasing_resource() {
    let ctx = TestContext::new();
    {
        let device = ctx.memory_device_with_v1_0(common::failing_bind::hook, Default::default());
        let allocator = StandardMemoryAllocator::new_default(device);
        let requirements = AllocationRequirements {
            layout: DeviceLayout::from_size_alignment(1 << 20, 4096).unwrap(),
            memory_type_bits: 1,
            prefers_dedicated_allocation: false,
            requires_dedicated_allocation: false,
        };
        let alloc = allocator
            .allocate(
                requirements,
                AllocationType::Unknown,
                &AllocationCreateInfo::default(),
                None,
            )
            .unwrap();
        let buffer = buffer_info(4096, vk::BufferUsageFlags::TRANSFER_DST);
        let image = transfer_image(vk::Format::R8G8B8A8_UINT);
        for fault in [
            vk::Result::ERROR_OUT_OF_DEVICE_MEMORY,
            vk::Result::ERROR_OUT_OF_HOST_MEMORY,
        ] {
            common::failing_bind::fail_next(fault);
            // SAFETY: a valid create info; the failed resource is destroyed by the call (the
            // validation layer reports any left at device destruction).
            let result = unsafe { alloc.create_aliasing_buffer(&buffer, 0) };
            assert_eq!(result, Err(MemoryAccessError::Vulkan(fault)));
            common::failing_bind::fail_next(fault);
            // SAFETY: as above.
            let result = unsafe { alloc.create_aliasing_image(&image, 0) };
            assert_eq!(result, Err(MemoryAccessError::Vulkan(fault)));
        }
        // Without a fault both work.
        // SAFETY: valid create infos; destroyed before `alloc`.
        unsafe {
            let b = alloc.create_aliasing_buffer(&buffer, 0).unwrap();
            let i = alloc.create_aliasing_image(&image, 0).unwrap();
            ctx.device.destroy_buffer(b, None);
            ctx.device.destroy_image(i, None);
        }
    }
}
