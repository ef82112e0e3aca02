//! Edges of the resource helpers (`create_buffer` / `create_image`, `OwnedBuffer` /
//! `OwnedImage`), on the real driver under the validation layer (any validation message fails
//! the test, and a buffer, image or memory object left alive is reported when the test context
//! destroys the device):
//!
//! - an allocator whose memory is exportable binds through `create_buffer` / `create_image`
//!   only resources created for one of its handle types; others are refused before the bind
//!   (VUID-vkBindBufferMemory-memory-02726), destroyed, and nothing stays allocated;
//! - on a device with `bufferDeviceAddress`, an allocator with `device_address` off refuses a
//!   `SHADER_DEVICE_ADDRESS` buffer before binding it to memory without device addresses
//!   (VUID-vkBindBufferMemory-bufferDeviceAddress-03339), and still binds other buffers;
//!   `create_aliasing_buffer` refuses it the same way, before the buffer is created, and so
//!   does `allocate_for_buffer_info` (the allocation is freed again);
//! - sparse buffers and images and `DISJOINT` images are refused before the driver sees
//!   them (`create_*`, `Owned*::new`, `allocate_for_image_info`,
//!   `find_memory_type_index_for_image_info`);
//! - `CONCURRENT` sharing with one queue family, a missing index array, an index of no queue
//!   family or one given twice is refused before the driver sees it (also without a resource);
//! - a buffer too large for any heap is destroyed again, in a block or dedicated;
//! - owned resources drop in any order with their allocator, and `into_raw` / `from_raw`
//!   round trips keep the pair intact.

mod common;

use ash::vk;
use ash_memory::*;
use common::TestContext;

const OPAQUE_FD: vk::ExternalMemoryHandleTypeFlags = vk::ExternalMemoryHandleTypeFlags::OPAQUE_FD;

fn buffer_info(size: u64) -> vk::BufferCreateInfo<'static> {
    vk::BufferCreateInfo::default()
        .size(size)
        .usage(vk::BufferUsageFlags::TRANSFER_SRC | vk::BufferUsageFlags::TRANSFER_DST)
}

fn image_info() -> vk::ImageCreateInfo<'static> {
    vk::ImageCreateInfo::default()
        .image_type(vk::ImageType::TYPE_2D)
        .format(vk::Format::R8G8B8A8_UNORM)
        .extent(vk::Extent3D {
            width: 32,
            height: 32,
            depth: 1,
        })
        .mip_levels(1)
        .array_layers(1)
        .samples(vk::SampleCountFlags::TYPE_1)
        .tiling(vk::ImageTiling::OPTIMAL)
        .usage(vk::ImageUsageFlags::SAMPLED | vk::ImageUsageFlags::TRANSFER_DST)
}

/// An allocator of `device` whose memory (every type) is exportable as an opaque fd.
fn exporting_allocator(device: &std::sync::Arc<MemoryDevice>) -> StandardMemoryAllocator {
    let types = device.memory_properties().memory_types.len();
    // SAFETY: lavapipe exports opaque fds for buffers and optimal images; the test binds only
    // resources created for them (the others are refused by the allocator, which is tested).
    let export = unsafe { ExportHandleTypes::new(OPAQUE_FD) };
    StandardMemoryAllocator::new(
        device.clone(),
        GenericMemoryAllocatorCreateInfo {
            export_handle_types: vec![export; types],
            ..Default::default()
        },
    )
    .unwrap()
}

fn assert_empty(allocator: &StandardMemoryAllocator) {
    let total = allocator.statistics().total;
    assert_eq!(total.allocation_count, 0, "{total:?}");
    assert_eq!(total.dedicated_count, 0, "{total:?}");
}

#[test]
fn exportable_memory_binds_only_resources_created_for_it() {
    let ctx = TestContext::with_device_extensions(&[ash::khr::external_memory_fd::NAME]);
    let device = ctx.memory_device_with(EnabledMemoryFeatures {
        external_memory_fd: true,
        ..Default::default()
    });
    let allocator = exporting_allocator(&device);
    let dedicated = AllocationCreateInfo {
        allocate_preference: MemoryAllocatePreference::AlwaysAllocate,
        ..Default::default()
    };
    for create_info in [AllocationCreateInfo::default(), dedicated] {
        // A plain buffer and image: refused, destroyed, nothing left allocated.
        // SAFETY: valid create infos; on error the resource is destroyed by the call.
        let result = unsafe { allocator.create_buffer(&buffer_info(4096), &create_info) };
        assert!(
            matches!(
                result,
                Err(AllocationError::Bind(
                    MemoryAccessError::NotCreatedForExternalMemory { .. }
                ))
            ),
            "{result:?}"
        );
        // SAFETY: as above.
        let result = unsafe { OwnedImage::new(&allocator, &image_info(), &create_info) };
        assert!(
            matches!(
                result,
                Err(AllocationError::Bind(
                    MemoryAccessError::NotCreatedForExternalMemory { .. }
                ))
            ),
            "{result:?}"
        );
        assert_empty(&allocator);
        // Created for the handle type: bound.
        let mut ext_buffer = vk::ExternalMemoryBufferCreateInfo::default().handle_types(OPAQUE_FD);
        let info = buffer_info(4096).push_next(&mut ext_buffer);
        // SAFETY: a valid create info; nothing is submitted.
        let buffer = unsafe { OwnedBuffer::new(&allocator, &info, &create_info) }.unwrap();
        let mut ext_image = vk::ExternalMemoryImageCreateInfo::default().handle_types(OPAQUE_FD);
        let info = image_info().push_next(&mut ext_image);
        // SAFETY: as above.
        let (image, alloc) = unsafe { allocator.create_image(&info, &create_info) }.unwrap();
        // SAFETY: the image is ours and unused.
        unsafe { allocator.destroy_image(image, alloc) };
        drop(buffer);
        assert_empty(&allocator);
    }
    drop(allocator);
    assert_eq!(device.live_memory_objects(), 0);
}

#[test]
fn owned_resources_drop_in_any_order_and_round_trip_through_raw() {
    let ctx = TestContext::new();
    let device = ctx.memory_device();
    // Dropping the allocator first is the point: log the live allocations, do not panic.
    let allocator = StandardMemoryAllocator::new(
        device.clone(),
        GenericMemoryAllocatorCreateInfo {
            debug: DebugOptions {
                leak_check: LeakCheck::Log,
                ..Default::default()
            },
            ..Default::default()
        },
    )
    .unwrap();
    let host = AllocationCreateInfo {
        usage: MemoryUsage::Auto(HostAccess::SequentialWrite),
        ..Default::default()
    };
    // SAFETY: valid create infos; nothing is submitted.
    let (mut buffer, image) = unsafe {
        (
            OwnedBuffer::new(&allocator, &buffer_info(256), &host).unwrap(),
            OwnedImage::new(&allocator, &image_info(), &Default::default()).unwrap(),
        )
    };
    buffer
        .allocation_mut()
        .write_value(0, 0x1234_5678u32)
        .unwrap();
    // Round trip through the raw pair keeps handle and allocation.
    let (raw, alloc) = buffer.into_raw();
    let offset = alloc.offset();
    // SAFETY: the pair came from `into_raw` of the same device.
    let buffer = unsafe { OwnedBuffer::from_raw(device.clone(), raw, alloc) };
    assert_eq!(buffer.handle(), raw);
    assert_eq!(buffer.allocation().offset(), offset);
    assert_eq!(
        buffer.allocation().read_value::<u32>(0).unwrap(),
        0x1234_5678
    );
    // The allocator goes first; the resources still free their memory when dropped.
    drop(allocator);
    assert!(device.live_memory_objects() > 0);
    drop(image);
    drop(buffer);
    assert_eq!(device.live_memory_objects(), 0);
}

/// A second device on the context's physical device, with `bufferDeviceAddress` enabled
/// (and `VK_KHR_maintenance4`, for requirements without a resource).
fn device_with_addresses(ctx: &TestContext) -> ash::Device {
    let priorities = [1.0];
    let queues = [vk::DeviceQueueCreateInfo::default()
        .queue_family_index(ctx.queue_family)
        .queue_priorities(&priorities)];
    let mut features12 = vk::PhysicalDeviceVulkan12Features::default().buffer_device_address(true);
    let extensions = [ash::khr::maintenance4::NAME.as_ptr()];
    let info = vk::DeviceCreateInfo::default()
        .queue_create_infos(&queues)
        .enabled_extension_names(&extensions)
        .push_next(&mut features12);
    // SAFETY: a valid create info for the context's physical device (lavapipe supports the
    // feature); the device is destroyed at the end of the test, after its allocator.
    unsafe { ctx.instance.create_device(ctx.physical_device, &info, None) }
        .expect("a Vulkan 1.2 device with bufferDeviceAddress")
}

#[test]
fn a_device_address_buffer_is_refused_by_memory_without_device_addresses() {
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
            memory_device.clone(),
            GenericMemoryAllocatorCreateInfo {
                device_address: false,
                ..Default::default()
            },
        )
        .unwrap();
        let with_address = buffer_info(4096).usage(
            vk::BufferUsageFlags::SHADER_DEVICE_ADDRESS | vk::BufferUsageFlags::STORAGE_BUFFER,
        );
        let dedicated = AllocationCreateInfo {
            allocate_preference: MemoryAllocatePreference::AlwaysAllocate,
            ..Default::default()
        };
        for create_info in [AllocationCreateInfo::default(), dedicated] {
            // SAFETY: a valid create info (the feature is enabled); on error the buffer is
            // destroyed by the call.
            let result = unsafe { allocator.create_buffer(&with_address, &create_info) };
            assert!(
                matches!(
                    result,
                    Err(AllocationError::Bind(
                        MemoryAccessError::NoDeviceAddressMemory
                    ))
                ),
                "{result:?}"
            );
            assert_empty(&allocator);
            // A buffer without the usage still binds to the same memory.
            // SAFETY: as above; nothing is submitted.
            let plain = unsafe { OwnedBuffer::new(&allocator, &buffer_info(4096), &create_info) };
            drop(plain.unwrap());
            assert_empty(&allocator);
        }
        drop(allocator);
        assert_eq!(memory_device.live_memory_objects(), 0);
    }
    // SAFETY: everything made on the device is gone.
    unsafe { device.destroy_device(None) };
}

#[test]
fn an_aliasing_device_address_buffer_is_refused_by_memory_without_device_addresses() {
    let ctx = TestContext::new();
    let device = device_with_addresses(&ctx);
    {
        // SAFETY: the handles are valid and outlive the allocators (dropped at the end of
        // this scope); the claimed feature is enabled on `device`.
        let memory_device = unsafe {
            MemoryDevice::new(
                &ctx.entry,
                &ctx.instance,
                ctx.physical_device,
                device.clone(),
                common::API_VERSION,
                EnabledMemoryFeatures {
                    buffer_device_address: true,
                    maintenance4: true,
                    ..Default::default()
                },
            )
        }
        .unwrap();
        let with_address = buffer_info(4096).usage(
            vk::BufferUsageFlags::SHADER_DEVICE_ADDRESS | vk::BufferUsageFlags::STORAGE_BUFFER,
        );
        let dedicated = AllocationCreateInfo {
            allocate_preference: MemoryAllocatePreference::AlwaysAllocate,
            ..Default::default()
        };
        // SAFETY: a valid create info; the probe is destroyed right after the query.
        let requirements = unsafe {
            let probe = device.create_buffer(&with_address, None).unwrap();
            let r = AllocationRequirements::for_buffer(&memory_device, probe);
            device.destroy_buffer(probe, None);
            r.unwrap()
        };
        for device_address in [false, true] {
            let allocator = StandardMemoryAllocator::new(
                memory_device.clone(),
                GenericMemoryAllocatorCreateInfo {
                    device_address,
                    ..Default::default()
                },
            )
            .unwrap();
            for create_info in [AllocationCreateInfo::default(), dedicated.clone()] {
                // In a block, or a memory object of its own dedicated to no resource.
                let alloc = allocator
                    .allocate(requirements, AllocationType::Linear, &create_info, None)
                    .unwrap();
                // SAFETY: a valid create info (the feature is enabled); a refused buffer is
                // never created.
                let result = unsafe { alloc.create_aliasing_buffer(&with_address, 0) };
                if device_address {
                    let buffer = result.unwrap();
                    // SAFETY: ours, never used.
                    unsafe { device.destroy_buffer(buffer, None) };
                } else {
                    assert_eq!(result, Err(MemoryAccessError::NoDeviceAddressMemory));
                }
                // A buffer without the usage aliases the same memory either way.
                // SAFETY: as above.
                let plain = unsafe { alloc.create_aliasing_buffer(&buffer_info(4096), 0) };
                // SAFETY: ours, never used.
                unsafe { device.destroy_buffer(plain.unwrap(), None) };
                drop(alloc);
                assert_empty(&allocator);
                // Memory allocated ahead of the buffer (to be bound by hand): refused the
                // same way, and nothing stays allocated.
                // SAFETY: a valid create info (maintenance4 is enabled and claimed).
                let ahead =
                    unsafe { allocator.allocate_for_buffer_info(&with_address, &create_info) };
                if device_address {
                    drop(ahead.unwrap());
                } else {
                    assert_eq!(
                        ahead.err(),
                        Some(AllocationError::Bind(
                            MemoryAccessError::NoDeviceAddressMemory
                        ))
                    );
                }
                assert_empty(&allocator);
            }
            drop(allocator);
            assert_eq!(memory_device.live_memory_objects(), 0);
        }
    }
    // SAFETY: everything made on the device is gone (a buffer left alive would be reported
    // by the validation layer here).
    unsafe { device.destroy_device(None) };
}

#[test]
fn sparse_and_disjoint_resources_are_refused_before_the_driver_sees_them() {
    let ctx = TestContext::new();
    let device = ctx.memory_device();
    let allocator = StandardMemoryAllocator::new_default(device.clone());
    let refused = |result: Result<(), AllocationError>, what: &str| {
        assert!(
            matches!(
                result,
                Err(AllocationError::Bind(MemoryAccessError::NotBindableWhole(w))) if w == what
            ),
            "{result:?}"
        );
    };
    // Neither the sparse features nor a DISJOINT-capable format are enabled: had the driver
    // seen these create infos, the validation layer would have reported them.
    for flags in [
        vk::BufferCreateFlags::SPARSE_BINDING,
        vk::BufferCreateFlags::SPARSE_BINDING | vk::BufferCreateFlags::SPARSE_RESIDENCY,
    ] {
        let info = buffer_info(65536).flags(flags);
        // SAFETY: refused before anything is created.
        refused(
            unsafe { allocator.create_buffer(&info, &Default::default()) }.map(drop),
            "sparse",
        );
        // SAFETY: as above.
        refused(
            unsafe { OwnedBuffer::new(&allocator, &info, &Default::default()) }.map(drop),
            "sparse",
        );
    }
    let sparse_image = image_info().flags(vk::ImageCreateFlags::SPARSE_BINDING);
    // SAFETY: as above.
    refused(
        unsafe { allocator.create_image(&sparse_image, &Default::default()) }.map(drop),
        "sparse",
    );
    let disjoint = image_info()
        .format(vk::Format::G8_B8R8_2PLANE_420_UNORM)
        .usage(vk::ImageUsageFlags::SAMPLED)
        .flags(vk::ImageCreateFlags::DISJOINT);
    // SAFETY: as above.
    refused(
        unsafe { OwnedImage::new(&allocator, &disjoint, &Default::default()) }.map(drop),
        "DISJOINT",
    );
    // Without a resource: refused before the feature check and the driver's query.
    // SAFETY: as above.
    refused(
        unsafe { allocator.allocate_for_image_info(&disjoint, &Default::default()) }.map(drop),
        "DISJOINT",
    );
    // SAFETY: as above.
    refused(
        unsafe { allocator.find_memory_type_index_for_image_info(&disjoint, &Default::default()) }
            .map(drop),
        "DISJOINT",
    );
    assert_empty(&allocator);
    drop(allocator);
    assert_eq!(device.live_memory_objects(), 0);
}

#[test]
fn a_buffer_too_large_for_any_heap_is_destroyed_and_leaves_nothing() {
    let ctx = TestContext::new();
    let device = ctx.memory_device();
    let allocator = StandardMemoryAllocator::new_default(device.clone());
    let dedicated = AllocationCreateInfo {
        allocate_preference: MemoryAllocatePreference::AlwaysAllocate,
        ..Default::default()
    };
    for create_info in [AllocationCreateInfo::default(), dedicated] {
        for size in [1 << 50, u64::MAX / 2] {
            // SAFETY: a valid create info (no maximum buffer size without maintenance4); on
            // error the buffer is destroyed by the call.
            let result = unsafe { allocator.create_buffer(&buffer_info(size), &create_info) };
            assert!(result.is_err(), "{size}: {result:?}");
            assert_empty(&allocator);
        }
    }
    drop(allocator);
    assert_eq!(device.live_memory_objects(), 0);
}

#[test]
fn concurrent_sharing_without_two_real_queue_families_is_refused() {
    let ctx = TestContext::new();
    let device = ctx.memory_device();
    let allocator = StandardMemoryAllocator::new_default(device.clone());
    // SAFETY: a plain query.
    let families = unsafe {
        ctx.instance
            .get_physical_device_queue_family_properties(ctx.physical_device)
    }
    .len() as u32;
    let one = [ctx.queue_family];
    let missing = [ctx.queue_family, families];
    let twice = [ctx.queue_family, ctx.queue_family];
    let bad: [(&[u32], bool); 4] = [
        (&one, false),
        (&missing, false),
        (&twice, false),
        (&one, true),
    ];
    for (indices, null) in bad {
        let mut buffer = buffer_info(4096)
            .sharing_mode(vk::SharingMode::CONCURRENT)
            .queue_family_indices(indices);
        let mut image = image_info()
            .sharing_mode(vk::SharingMode::CONCURRENT)
            .queue_family_indices(indices);
        if null {
            // Two indices claimed, no array.
            buffer.queue_family_index_count = 2;
            buffer.p_queue_family_indices = std::ptr::null();
            image.queue_family_index_count = 2;
            image.p_queue_family_indices = std::ptr::null();
        }
        let check = |result: Result<(), AllocationError>| {
            assert!(
                matches!(result, Err(AllocationError::InvalidCreateInfo(_))),
                "{indices:?} null {null}: {result:?}"
            );
        };
        // SAFETY: refused before anything is created (the validation layer would report the
        // create info had the driver seen it).
        unsafe {
            check(
                allocator
                    .create_buffer(&buffer, &Default::default())
                    .map(drop),
            );
            check(OwnedImage::new(&allocator, &image, &Default::default()).map(drop));
            check(
                allocator
                    .allocate_for_buffer_info(&buffer, &Default::default())
                    .map(drop),
            );
            check(
                allocator
                    .find_memory_type_index_for_image_info(&image, &Default::default())
                    .map(drop),
            );
        }
    }
    assert_empty(&allocator);
    drop(allocator);
    assert_eq!(device.live_memory_objects(), 0);
}
