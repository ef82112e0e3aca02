//! VMA's `TestBufferDeviceAddress`, retold: on a device with the `bufferDeviceAddress`
//! feature enabled (Vulkan 1.2), an allocator claiming it makes every block and dedicated
//! allocation with `VK_MEMORY_ALLOCATE_DEVICE_ADDRESS_BIT`, so buffers with
//! `SHADER_DEVICE_ADDRESS` usage bind (the validation layer checks the flag) and have
//! addresses. Buffers in one block lie as far apart in the address space as their offsets.

mod common;

use ash::vk;
use ash_memory::*;
use common::TestContext;

/// A second device on the context's physical device, with `bufferDeviceAddress` enabled.
fn device_with_addresses(ctx: &TestContext) -> ash::Device {
    let priorities = [1.0];
    let queues = [vk::DeviceQueueCreateInfo::default()
        .queue_family_index(ctx.queue_family)
        .queue_priorities(&priorities)];
    let mut features12 = vk::PhysicalDeviceVulkan12Features::default().buffer_device_address(true);
    let info = vk::DeviceCreateInfo::default()
        .queue_create_infos(&queues)
        .push_next(&mut features12);
    // SAFETY: a valid create info for the context's physical device (lavapipe supports the
    // feature); the device is destroyed at the end of the test, after its allocator.
    unsafe { ctx.instance.create_device(ctx.physical_device, &info, None) }
        .expect("a Vulkan 1.2 device with bufferDeviceAddress")
}

#[test]
fn buffers_with_device_addresses_bind_in_blocks_and_their_own_memory() {
    let ctx = TestContext::new();
    let device = device_with_addresses(&ctx);
    {
        // SAFETY: the handles are valid and outlive the allocator (dropped at the end of this
        // scope); the claimed feature is enabled on `device`.
        let memory_device = unsafe {
            MemoryDevice::new(
                &ctx.entry,
                &ctx.instance,
                ctx.physical_device,
                device.clone(),
                common::API_VERSION,
                EnabledMemoryFeatures {
                    buffer_device_address: true,
                    ..Default::default()
                },
            )
        }
        .unwrap();
        let allocator = StandardMemoryAllocator::new(
            memory_device,
            GenericMemoryAllocatorCreateInfo {
                device_address: true,
                ..Default::default()
            },
        )
        .unwrap();
        let usage = vk::BufferUsageFlags::SHADER_DEVICE_ADDRESS
            | vk::BufferUsageFlags::STORAGE_BUFFER
            | vk::BufferUsageFlags::TRANSFER_DST;
        let mut made = Vec::new();
        for (size, preference) in [
            (64 * 1024, MemoryAllocatePreference::Auto),
            (64 * 1024, MemoryAllocatePreference::Auto),
            (4 * 1024, MemoryAllocatePreference::Auto),
            (64 * 1024, MemoryAllocatePreference::AlwaysAllocate),
        ] {
            let info = AllocationCreateInfo {
                allocate_preference: preference,
                ..Default::default()
            };
            // SAFETY: a valid buffer info for this device.
            let (buffer, alloc) =
                unsafe { allocator.create_buffer(&common::buffer_info(size, usage), &info) }
                    .unwrap_or_else(|e| panic!("{size} bytes, {preference:?}: {e}"));
            assert_eq!(
                alloc.is_dedicated(),
                preference == MemoryAllocatePreference::AlwaysAllocate
            );
            // SAFETY: the buffer has the usage and is bound to memory allocated with the
            // device-address flag.
            let address = unsafe {
                device.get_buffer_device_address(
                    &vk::BufferDeviceAddressInfo::default().buffer(buffer),
                )
            };
            assert_ne!(address, 0);
            made.push((buffer, alloc, address));
        }
        let (_, a0, x0) = &made[0];
        for (_, a, x) in &made[1..] {
            if a.memory() == a0.memory() {
                assert_eq!(
                    x.wrapping_sub(*x0),
                    a.offset().wrapping_sub(a0.offset()),
                    "addresses in one block follow the offsets"
                );
            }
        }
        assert!(
            made[1].1.memory() == a0.memory(),
            "two buffers share a block"
        );

        // A custom pool's blocks carry the flag too.
        let pool = allocator
            .create_pool::<FreeListAllocator>(&PoolCreateInfo {
                block_size: 1 << 20,
                ..Default::default()
            })
            .unwrap();
        // SAFETY: a valid buffer info for this device.
        let (buffer, alloc) = unsafe {
            pool.create_buffer(
                &common::buffer_info(4096, usage),
                &AllocationCreateInfo::default(),
            )
        }
        .unwrap();
        // SAFETY: as above.
        let address = unsafe {
            device.get_buffer_device_address(&vk::BufferDeviceAddressInfo::default().buffer(buffer))
        };
        assert_ne!(address, 0);
        made.push((buffer, alloc, address));
        for (buffer, alloc, _) in made {
            // SAFETY: never used by the GPU.
            unsafe { allocator.destroy_buffer(buffer, alloc) };
        }
        drop(pool);
    }
    // SAFETY: everything made on the device is gone.
    unsafe { device.destroy_device(None) };
    assert!(ctx.messages().is_empty(), "{:?}", ctx.messages());
}
