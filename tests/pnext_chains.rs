//! The exact `pNext` chain of every `vkAllocateMemory`, as the simulated driver received it:
//! dedicated-allocation info (required vs preferred), `DEVICE_ADDRESS` flags, export handle
//! types, memory priority, and protected memory types. Each optional structure is checked both
//! ways: present exactly when the feature is claimed and asked for, absent otherwise. The
//! simulated driver also records a violation for any structure of a feature it does not claim
//! (failing the test when the `Sim` is dropped), and lavapipe only ever sees the dedicated info.

mod common;
mod support;

use ash::vk;
use ash::vk::StructureType as S;
use ash_memory::*;
use std::sync::atomic::Ordering;
use support::{buffer_info, image_info, AllocCall, DedicatedTo, GpuLayout, Sim, SimFeatures, KIB};

const DEDICATED: S = S::MEMORY_DEDICATED_ALLOCATE_INFO;
const FLAGS: S = S::MEMORY_ALLOCATE_FLAGS_INFO;
const EXPORT: S = S::EXPORT_MEMORY_ALLOCATE_INFO;
const PRIORITY: S = S::MEMORY_PRIORITY_ALLOCATE_INFO_EXT;

/// The `vkAllocateMemory` call that made the memory object of `alloc`.
fn call_of(sim: &Sim, alloc: &MemoryAlloc) -> AllocCall {
    sim.state
        .call_of(alloc.memory())
        .unwrap_or_else(|| panic!("no successful vkAllocateMemory made {:?}", alloc.memory()))
}

fn assert_chain(call: &AllocCall, s_types: &[S], what: &str) {
    assert!(
        call.chain.is_exactly(s_types),
        "{what}: expected exactly {s_types:?}, the driver got {:?}",
        call.chain
    );
}

fn buffer(
    allocator: &StandardMemoryAllocator,
    size: u64,
    info: &AllocationCreateInfo,
) -> (vk::Buffer, MemoryAlloc) {
    // SAFETY: a valid create info for this device; the tests destroy the buffer before its
    // memory.
    unsafe { allocator.create_buffer(&buffer_info(size, vk::BufferUsageFlags::TRANSFER_DST), info) }
        .unwrap_or_else(|e| panic!("create_buffer({size}): {e}"))
}

fn destroy_buffers(sim: &Sim, buffers: &[vk::Buffer]) {
    // SAFETY: the buffers are unused; destroyed before their memory.
    unsafe {
        for &b in buffers {
            sim.device.destroy_buffer(b, None);
        }
    }
}

fn always_allocate() -> AllocationCreateInfo {
    AllocationCreateInfo {
        allocate_preference: MemoryAllocatePreference::AlwaysAllocate,
        ..Default::default()
    }
}

fn raw_requirements(size: u64, bits: u32) -> AllocationRequirements {
    AllocationRequirements {
        layout: DeviceLayout::from_size_alignment(size, 256).unwrap(),
        memory_type_bits: bits,
        prefers_dedicated_allocation: false,
        requires_dedicated_allocation: false,
    }
}

#[test]
fn a_required_dedicated_allocation_names_its_resource_even_with_dedicated_allocation_off() {
    let sim = Sim::new(GpuLayout::nvidia_discrete());
    sim.state.requires_dedicated.store(true, Ordering::SeqCst);
    let device = sim.memory_device();
    let allocator = StandardMemoryAllocator::new(
        device,
        GenericMemoryAllocatorCreateInfo {
            dedicated_allocation: false,
            ..Default::default()
        },
    )
    .unwrap();
    // Small buffers, which would be suballocated if the driver did not require otherwise.
    let (b1, a1) = buffer(&allocator, 4 * KIB, &AllocationCreateInfo::default());
    let (b2, a2) = buffer(&allocator, 4 * KIB, &AllocationCreateInfo::default());
    for (b, a) in [(b1, &a1), (b2, &a2)] {
        assert!(a.is_dedicated());
        assert_eq!(a.offset(), 0);
        let call = call_of(&sim, a);
        assert_chain(&call, &[DEDICATED], "required dedicated buffer");
        assert_eq!(
            call.chain.dedicated,
            Some(DedicatedTo {
                buffer: b,
                image: vk::Image::null(),
            })
        );
        assert_eq!(call.size, a.size());
    }
    assert_ne!(a1.memory(), a2.memory(), "one memory object each");
    // An image, through `create_image`.
    // SAFETY: a valid create info; the image is destroyed below before its memory.
    let (image, ia) = unsafe {
        allocator.create_image(
            &image_info(64, vk::Format::R8G8B8A8_UNORM, vk::ImageTiling::OPTIMAL),
            &AllocationCreateInfo::default(),
        )
    }
    .unwrap();
    assert!(ia.is_dedicated());
    let call = call_of(&sim, &ia);
    assert_chain(&call, &[DEDICATED], "required dedicated image");
    assert_eq!(
        call.chain.dedicated,
        Some(DedicatedTo {
            buffer: vk::Buffer::null(),
            image,
        })
    );
    // Every allocation was one call with the resource named: nothing went into a block.
    assert!(sim.state.calls().iter().all(AllocCall::dedicated));
    destroy_buffers(&sim, &[b1, b2]);
    // SAFETY: unused; destroyed before its memory.
    unsafe { sim.device.destroy_image(image, None) };
    drop((a1, a2, ia, allocator));
    sim.assert_nothing_allocated();
}

#[test]
fn a_preferred_dedicated_allocation_carries_the_resource_only_when_dedicated_allocation_is_on() {
    let sim = Sim::new(GpuLayout::nvidia_discrete());
    sim.state.prefers_dedicated.store(true, Ordering::SeqCst);
    let device = sim.memory_device();
    let off = StandardMemoryAllocator::new(
        device.clone(),
        GenericMemoryAllocatorCreateInfo {
            dedicated_allocation: false,
            ..Default::default()
        },
    )
    .unwrap();
    let on = StandardMemoryAllocator::new_default(device);
    // Preferred, not required: with the option off the allocator may still give the buffer a
    // memory object of its own, but must not name it in the chain.
    let (b_off, a_off) = buffer(&off, 4 * KIB, &AllocationCreateInfo::default());
    let call = call_of(&sim, &a_off);
    assert_chain(
        &call,
        &[],
        "preferred dedicated, dedicated_allocation: false",
    );
    assert_eq!(call.chain.dedicated, None);
    // With it on (the default), the preferred dedicated allocation names its buffer.
    let (b_on, a_on) = buffer(&on, 4 * KIB, &AllocationCreateInfo::default());
    assert!(a_on.is_dedicated());
    let call = call_of(&sim, &a_on);
    assert_chain(
        &call,
        &[DEDICATED],
        "preferred dedicated, dedicated_allocation: true",
    );
    assert_eq!(call.chain.dedicated.map(|d| d.buffer), Some(b_on));
    destroy_buffers(&sim, &[b_off, b_on]);
    drop((a_off, a_on, off, on));
    sim.assert_nothing_allocated();
}

#[test]
fn device_address_flags_reach_blocks_and_dedicated_allocations_only_when_claimed_and_asked() {
    let sim = Sim::with_features(
        GpuLayout::nvidia_discrete(),
        SimFeatures {
            buffer_device_address: true,
            ..Default::default()
        },
    );
    let claimed = sim.memory_device_claimed();
    assert!(claimed.features().buffer_device_address);
    let with = StandardMemoryAllocator::new_default(claimed.clone());
    let (b1, block) = buffer(&with, 4 * KIB, &AllocationCreateInfo::default());
    assert!(!block.is_dedicated());
    let call = call_of(&sim, &block);
    assert_chain(&call, &[FLAGS], "block with bufferDeviceAddress");
    assert_eq!(
        call.chain.allocate_flags,
        Some((vk::MemoryAllocateFlags::DEVICE_ADDRESS, 0))
    );
    let (b2, dedicated) = buffer(&with, 4 * KIB, &always_allocate());
    assert!(dedicated.is_dedicated());
    let call = call_of(&sim, &dedicated);
    assert_chain(
        &call,
        &[DEDICATED, FLAGS],
        "dedicated with bufferDeviceAddress",
    );
    assert_eq!(
        call.chain.allocate_flags,
        Some((vk::MemoryAllocateFlags::DEVICE_ADDRESS, 0))
    );
    // Also on a raw dedicated allocation without a resource.
    let raw = with
        .allocate_dedicated(0, 64 * KIB, None, &AllocationCreateInfo::default())
        .unwrap();
    assert_chain(&call_of(&sim, &raw), &[FLAGS], "raw dedicated");
    // The feature not told to the crate, or `device_address: false`: no flags structure.
    let without_feature = StandardMemoryAllocator::new_default(sim.memory_device());
    let opted_out = StandardMemoryAllocator::new(
        claimed,
        GenericMemoryAllocatorCreateInfo {
            device_address: false,
            ..Default::default()
        },
    )
    .unwrap();
    let mut buffers = vec![b1, b2];
    let mut allocs = vec![block, dedicated, raw];
    for (what, allocator) in [
        ("feature not claimed", &without_feature),
        ("device_address: false", &opted_out),
    ] {
        let (b, a) = buffer(allocator, 4 * KIB, &AllocationCreateInfo::default());
        assert!(!a.is_dedicated());
        assert_chain(&call_of(&sim, &a), &[], &format!("block, {what}"));
        let (bd, ad) = buffer(allocator, 4 * KIB, &always_allocate());
        assert_chain(
            &call_of(&sim, &ad),
            &[DEDICATED],
            &format!("dedicated, {what}"),
        );
        buffers.extend([b, bd]);
        allocs.extend([a, ad]);
    }
    destroy_buffers(&sim, &buffers);
    drop((allocs, with, without_feature, opted_out));
    sim.assert_nothing_allocated();
}

#[test]
fn export_handle_types_are_chained_for_their_memory_type_only() {
    let layout = GpuLayout::nvidia_discrete();
    let opaque_fd = vk::ExternalMemoryHandleTypeFlags::OPAQUE_FD;
    let table = |types: u32| {
        (0..types)
            .map(|i| {
                if i == 0 {
                    // SAFETY: the simulated driver claims external memory and accepts every
                    // handle type for every resource; nothing is exported for real (lavapipe
                    // never sees the structure).
                    unsafe { ExportHandleTypes::new(opaque_fd) }
                } else {
                    ExportHandleTypes::NONE
                }
            })
            .collect::<Vec<_>>()
    };
    /// The buffers are created for the opaque fds (exportable memory takes only such
    /// resources, VUID-vkBindBufferMemory-memory-02726; plain memory takes them too).
    fn buffer(
        allocator: &StandardMemoryAllocator,
        size: u64,
        info: &AllocationCreateInfo,
    ) -> (vk::Buffer, MemoryAlloc) {
        let mut external = vk::ExternalMemoryBufferCreateInfo::default()
            .handle_types(vk::ExternalMemoryHandleTypeFlags::OPAQUE_FD);
        let create = buffer_info(size, vk::BufferUsageFlags::TRANSFER_DST).push_next(&mut external);
        // SAFETY: a valid create info for this device (external memory is core in Vulkan 1.1,
        // and lavapipe supports opaque fds for buffers); the test destroys the buffer before
        // its memory.
        unsafe { allocator.create_buffer(&create, info) }
            .unwrap_or_else(|e| panic!("create_buffer({size}): {e}"))
    }
    let sim = Sim::with_features(
        layout.clone(),
        SimFeatures {
            external_memory: true,
            ..Default::default()
        },
    );
    // A table that does not have one entry per memory type is rejected.
    let err = StandardMemoryAllocator::new(
        sim.memory_device(),
        GenericMemoryAllocatorCreateInfo {
            export_handle_types: table(layout.type_count() - 1),
            ..Default::default()
        },
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            AllocationError::Config(ConfigError::ExportHandleTypes { .. })
        ),
        "{err:?}"
    );
    // Vulkan 1.2: external memory is core, so the table is used as is.
    let allocator = StandardMemoryAllocator::new(
        sim.memory_device(),
        GenericMemoryAllocatorCreateInfo {
            export_handle_types: table(layout.type_count()),
            ..Default::default()
        },
    )
    .unwrap();
    let (b1, block) = buffer(&allocator, 4 * KIB, &AllocationCreateInfo::default());
    assert_eq!(block.memory_type_index(), 0);
    let call = call_of(&sim, &block);
    assert_chain(&call, &[EXPORT], "block of the exported type");
    assert_eq!(call.chain.export_handle_types, Some(opaque_fd));
    let (b2, dedicated) = buffer(&allocator, 4 * KIB, &always_allocate());
    assert_eq!(dedicated.memory_type_index(), 0);
    let call = call_of(&sim, &dedicated);
    assert_chain(
        &call,
        &[DEDICATED, EXPORT],
        "dedicated of the exported type",
    );
    assert_eq!(call.chain.export_handle_types, Some(opaque_fd));
    let upload = AllocationCreateInfo {
        usage: MemoryUsage::Upload,
        ..Default::default()
    };
    let (b3, other) = buffer(&allocator, 4 * KIB, &upload);
    assert_eq!(other.memory_type_index(), 1);
    assert_chain(
        &call_of(&sim, &other),
        &[],
        "block of a type without export",
    );
    destroy_buffers(&sim, &[b1, b2, b3]);
    drop((block, dedicated, other, allocator));
    sim.assert_nothing_allocated();

    // Vulkan 1.0 without `external_memory` (not implied there): nothing is chained, not even
    // with the table set. With it claimed explicitly, the table is used again.
    let sim = Sim::new(layout.clone());
    let allocator = StandardMemoryAllocator::new(
        sim.memory_device_with(vk::API_VERSION_1_0, EnabledMemoryFeatures::default()),
        GenericMemoryAllocatorCreateInfo {
            export_handle_types: table(layout.type_count()),
            ..Default::default()
        },
    )
    .unwrap();
    let (b1, a1) = buffer(&allocator, 4 * KIB, &AllocationCreateInfo::default());
    let (b2, a2) = buffer(&allocator, 4 * KIB, &always_allocate());
    for a in [&a1, &a2] {
        assert_eq!(a.memory_type_index(), 0);
        assert_chain(&call_of(&sim, a), &[], "Vulkan 1.0 without external memory");
    }
    destroy_buffers(&sim, &[b1, b2]);
    drop((a1, a2, allocator));
    sim.assert_nothing_allocated();

    let sim = Sim::with_features(
        layout.clone(),
        SimFeatures {
            external_memory: true,
            ..Default::default()
        },
    );
    let allocator = StandardMemoryAllocator::new(
        sim.memory_device_with(
            vk::API_VERSION_1_0,
            EnabledMemoryFeatures {
                external_memory: true,
                ..Default::default()
            },
        ),
        GenericMemoryAllocatorCreateInfo {
            export_handle_types: table(layout.type_count()),
            ..Default::default()
        },
    )
    .unwrap();
    let (b, a) = buffer(&allocator, 4 * KIB, &AllocationCreateInfo::default());
    let call = call_of(&sim, &a);
    // No dedicated info on 1.0 (no VK_KHR_dedicated_allocation), the export info only.
    assert_chain(&call, &[EXPORT], "Vulkan 1.0 with VK_KHR_external_memory");
    assert_eq!(call.chain.export_handle_types, Some(opaque_fd));
    destroy_buffers(&sim, &[b]);
    drop((a, allocator));
    sim.assert_nothing_allocated();
}

#[test]
fn memory_priority_is_the_block_priority_for_blocks_and_the_requested_one_for_dedicated() {
    let sim = Sim::with_features(
        GpuLayout::nvidia_discrete(),
        SimFeatures {
            memory_priority: true,
            ..Default::default()
        },
    );
    let allocator = StandardMemoryAllocator::new(
        sim.memory_device_claimed(),
        GenericMemoryAllocatorCreateInfo {
            block_priority: 0.25,
            ..Default::default()
        },
    )
    .unwrap();
    let priority_of = |a: &MemoryAlloc, chain: &[S], what: &str| {
        let call = call_of(&sim, a);
        assert_chain(&call, chain, what);
        call.chain.priority
    };
    let (b1, block) = buffer(&allocator, 4 * KIB, &AllocationCreateInfo::default());
    assert!(!block.is_dedicated());
    assert_eq!(priority_of(&block, &[PRIORITY], "block"), Some(0.25));
    // A dedicated allocation without a priority of its own gets the block priority.
    let (b2, d_default) = buffer(&allocator, 4 * KIB, &always_allocate());
    assert_eq!(
        priority_of(&d_default, &[DEDICATED, PRIORITY], "dedicated, no priority"),
        Some(0.25)
    );
    // With one, exactly that one, the bounds included.
    let mut allocs = vec![block, d_default];
    let mut buffers = vec![b1, b2];
    for p in [0.9, 0.0, 1.0] {
        let info = AllocationCreateInfo {
            priority: Some(p),
            ..always_allocate()
        };
        let (b, a) = buffer(&allocator, 4 * KIB, &info);
        assert_eq!(
            priority_of(&a, &[DEDICATED, PRIORITY], "dedicated with priority"),
            Some(p)
        );
        let raw = allocator
            .allocate_dedicated(
                0,
                64 * KIB,
                None,
                &AllocationCreateInfo {
                    priority: Some(p),
                    ..Default::default()
                },
            )
            .unwrap();
        assert_eq!(priority_of(&raw, &[PRIORITY], "raw dedicated"), Some(p));
        buffers.push(b);
        allocs.extend([a, raw]);
    }
    // A suballocation's priority does not make its block's: the new block of another memory
    // type still gets the block priority.
    let download = AllocationCreateInfo {
        usage: MemoryUsage::Download,
        priority: Some(0.9),
        ..Default::default()
    };
    let (b, new_block) = buffer(&allocator, 4 * KIB, &download);
    assert!(!new_block.is_dedicated());
    assert_eq!(new_block.memory_type_index(), 2);
    assert_eq!(
        priority_of(&new_block, &[PRIORITY], "new block"),
        Some(0.25)
    );
    buffers.push(b);
    allocs.push(new_block);
    // Not claimed: no priority structure at all, whatever the create infos say.
    let unclaimed = StandardMemoryAllocator::new(
        sim.memory_device(),
        GenericMemoryAllocatorCreateInfo {
            block_priority: 0.25,
            ..Default::default()
        },
    )
    .unwrap();
    let (b, a) = buffer(&unclaimed, 4 * KIB, &AllocationCreateInfo::default());
    assert_chain(
        &call_of(&sim, &a),
        &[],
        "block, memory priority not claimed",
    );
    let info = AllocationCreateInfo {
        priority: Some(0.9),
        ..always_allocate()
    };
    let (bd, ad) = buffer(&unclaimed, 4 * KIB, &info);
    assert_chain(
        &call_of(&sim, &ad),
        &[DEDICATED],
        "dedicated, memory priority not claimed",
    );
    buffers.extend([b, bd]);
    allocs.extend([a, ad]);
    destroy_buffers(&sim, &buffers);
    drop((allocs, allocator, unclaimed));
    sim.assert_nothing_allocated();
}

#[test]
fn invalid_priorities_are_rejected_before_the_driver_is_called() {
    let sim = Sim::with_features(
        GpuLayout::nvidia_discrete(),
        SimFeatures {
            memory_priority: true,
            ..Default::default()
        },
    );
    let device = sim.memory_device_claimed();
    let allocator = StandardMemoryAllocator::new_default(device.clone());
    let same = |e: &AllocationError, p: f32| matches!(e, AllocationError::InvalidPriority(q) if q.to_bits() == p.to_bits());
    for p in [
        f32::NAN,
        -0.01,
        1.0001,
        f32::INFINITY,
        f32::NEG_INFINITY,
        -f32::NAN,
    ] {
        let calls = sim.state.allocate_calls();
        for preference in [
            MemoryAllocatePreference::Auto,
            MemoryAllocatePreference::AlwaysAllocate,
        ] {
            let info = AllocationCreateInfo {
                priority: Some(p),
                allocate_preference: preference,
                ..Default::default()
            };
            let layout = DeviceLayout::from_size_alignment(4 * KIB, 256).unwrap();
            let errors = [
                allocator
                    .allocate(
                        raw_requirements(4 * KIB, 0b111),
                        AllocationType::Linear,
                        &info,
                        None,
                    )
                    .unwrap_err(),
                allocator
                    .allocate_from_type(0, layout, AllocationType::Linear, &info)
                    .unwrap_err(),
                allocator
                    .allocate_dedicated(0, 4 * KIB, None, &info)
                    .unwrap_err(),
                // SAFETY: a valid create info; the buffer is destroyed by `create_buffer`
                // when the allocation fails.
                unsafe {
                    allocator.create_buffer(
                        &buffer_info(4 * KIB, vk::BufferUsageFlags::TRANSFER_DST),
                        &info,
                    )
                }
                .unwrap_err(),
            ];
            for (i, e) in errors.iter().enumerate() {
                assert!(same(e, p), "priority {p} ({preference:?}, call {i}): {e:?}");
            }
        }
        // The raw memory object API too.
        let err = MemoryObject::allocate(
            device.clone(),
            &MemoryObjectCreateInfo {
                size: 4 * KIB,
                priority: Some(p),
                ..Default::default()
            },
        )
        .unwrap_err();
        assert!(
            matches!(err, MemoryObjectError::InvalidPriority(q) if q.to_bits() == p.to_bits()),
            "{err:?}"
        );
        // And as a block priority.
        let err = StandardMemoryAllocator::new(
            device.clone(),
            GenericMemoryAllocatorCreateInfo {
                block_priority: p,
                ..Default::default()
            },
        )
        .unwrap_err();
        assert!(
            matches!(err, AllocationError::Config(ConfigError::Priority(_))),
            "{err:?}"
        );
        assert_eq!(
            sim.state.allocate_calls(),
            calls,
            "priority {p} reached the driver"
        );
    }
    assert_eq!(sim.state.allocate_calls(), 0);
    assert_eq!(device.live_memory_objects(), 0);
    drop(allocator);
    sim.assert_nothing_allocated();
}

#[test]
fn protected_memory_types_are_used_only_when_required_and_claimed() {
    use ash::vk::MemoryPropertyFlags as F;
    let layout = GpuLayout::with_protected();
    let protected_type = 0;
    assert!(layout.flags(protected_type).contains(F::PROTECTED));
    let all_types = (1 << layout.type_count()) - 1;
    let protected = AllocationCreateInfo {
        usage: MemoryUsage::Custom(MemoryTypeFilter {
            required_flags: F::PROTECTED,
            ..Default::default()
        }),
        ..Default::default()
    };
    let layout_4k = DeviceLayout::from_size_alignment(4 * KIB, 256).unwrap();

    // Claimed: a filter that requires PROTECTED gets the protected type, blocks and dedicated
    // allocations alike; ordinary requests never do.
    let sim = Sim::with_features(
        layout.clone(),
        SimFeatures {
            protected_memory: true,
            ..Default::default()
        },
    );
    let device = sim.memory_device_claimed();
    assert!(device.features().protected_memory);
    let allocator = StandardMemoryAllocator::new_default(device.clone());
    let block = allocator
        .allocate(
            raw_requirements(4 * KIB, all_types),
            AllocationType::Linear,
            &protected,
            None,
        )
        .unwrap();
    assert_eq!(block.memory_type_index(), protected_type);
    assert!(!block.is_dedicated());
    let call = call_of(&sim, &block);
    assert_eq!(call.memory_type, protected_type);
    assert_chain(&call, &[], "protected block");
    let dedicated = allocator
        .allocate_dedicated(protected_type, 64 * KIB, None, &protected)
        .unwrap();
    assert_eq!(call_of(&sim, &dedicated).memory_type, protected_type);
    let from_type = allocator
        .allocate_from_type(
            protected_type,
            layout_4k,
            AllocationType::Linear,
            &AllocationCreateInfo::default(),
        )
        .unwrap();
    assert_eq!(from_type.memory_type_index(), protected_type);
    let ordinary = allocator
        .allocate(
            raw_requirements(4 * KIB, all_types),
            AllocationType::Linear,
            &AllocationCreateInfo::default(),
            None,
        )
        .unwrap();
    assert_eq!(
        ordinary.memory_type_index(),
        1,
        "an ordinary request took the protected type"
    );
    drop((block, dedicated, from_type, ordinary, allocator));
    sim.assert_nothing_allocated();

    // Not claimed: no protected memory, and the driver is never asked.
    let sim = Sim::new(layout);
    let allocator = StandardMemoryAllocator::new_default(sim.memory_device());
    let err = allocator
        .allocate(
            raw_requirements(4 * KIB, all_types),
            AllocationType::Linear,
            &protected,
            None,
        )
        .unwrap_err();
    assert_eq!(
        err,
        AllocationError::NoSuitableMemoryType {
            bits: all_types,
            required: F::PROTECTED,
        }
    );
    let err = allocator
        .allocate_from_type(
            protected_type,
            layout_4k,
            AllocationType::Linear,
            &AllocationCreateInfo::default(),
        )
        .unwrap_err();
    assert!(
        matches!(err, AllocationError::MemoryTypeNotUsable { index: 0, .. }),
        "{err:?}"
    );
    let err = allocator
        .allocate_dedicated(protected_type, 64 * KIB, None, &protected)
        .unwrap_err();
    assert!(
        matches!(err, AllocationError::MemoryTypeNotUsable { index: 0, .. }),
        "{err:?}"
    );
    assert_eq!(sim.state.allocate_calls(), 0);
    let ordinary = allocator
        .allocate(
            raw_requirements(4 * KIB, all_types),
            AllocationType::Linear,
            &AllocationCreateInfo::default(),
            None,
        )
        .unwrap();
    assert_eq!(ordinary.memory_type_index(), 1);
    drop((ordinary, allocator));
    sim.assert_nothing_allocated();
}
