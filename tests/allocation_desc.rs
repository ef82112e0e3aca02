//! `allocate_desc` with an [`AllocationDesc`]: the same allocation as the positional
//! `allocate`, and naming a dedicated resource alone does not make an allocation dedicated.

mod common;
mod support;

use ash::vk;
use ash_memory::*;
use common::buffer_info;
use support::{GpuLayout, Sim, KIB};

/// Creates a buffer of `size` bytes on the simulated device with its requirements.
fn buffer(sim: &Sim, device: &MemoryDevice, size: u64) -> (vk::Buffer, AllocationRequirements) {
    // SAFETY: a valid create info; the tests destroy the buffer before its memory.
    let buffer = unsafe {
        sim.device.create_buffer(
            &buffer_info(size, vk::BufferUsageFlags::STORAGE_BUFFER),
            None,
        )
    }
    .unwrap();
    // SAFETY: the buffer was just created from this device.
    let reqs = unsafe { AllocationRequirements::for_buffer(device, buffer) }.unwrap();
    (buffer, reqs)
}

#[test]
fn a_desc_allocates_like_the_positional_call() {
    let sim = Sim::new(GpuLayout::nvidia_discrete());
    let device = sim.memory_device();
    let allocator = StandardMemoryAllocator::new_default(device.clone());
    let info = AllocationCreateInfo {
        usage: MemoryUsage::Auto(HostAccess::SequentialWrite),
        resource_usage: ResourceUsage::Buffer(vk::BufferUsageFlags::UNIFORM_BUFFER),
        name: Some("uniforms".into()),
        ..Default::default()
    };
    let (b, reqs) = buffer(&sim, &device, 4 * KIB);
    let by_desc = allocator
        .allocate_desc(&AllocationDesc {
            allocation_type: AllocationType::Linear,
            create_info: info.clone(),
            ..AllocationDesc::new(reqs)
        })
        .unwrap();
    let positional = allocator
        .allocate(reqs, AllocationType::Linear, &info, None)
        .unwrap();
    assert_eq!(by_desc.memory_type_index(), positional.memory_type_index());
    assert_eq!(by_desc.allocation_type(), AllocationType::Linear);
    assert_eq!(by_desc.name(), Some("uniforms"));
    assert_eq!(by_desc.size(), positional.size());
    // The defaults: unknown allocation type, default create info, no resource.
    let d = AllocationDesc::new(reqs);
    assert_eq!(d.allocation_type, AllocationType::Unknown);
    assert_eq!(d.create_info, AllocationCreateInfo::default());
    assert_eq!(d.dedicated, None);
    let default_alloc = allocator.allocate_desc(&d).unwrap();
    assert_eq!(default_alloc.allocation_type(), AllocationType::Unknown);
    // SAFETY: made for this buffer's requirements; the buffer is unbound.
    unsafe { by_desc.bind_buffer(b) }.unwrap();
    // SAFETY: unused; destroyed before its memory.
    unsafe { allocator.destroy_buffer(b, by_desc) };
    drop((positional, default_alloc, allocator));
    sim.assert_nothing_allocated();
}

#[test]
fn naming_the_resource_alone_does_not_make_it_dedicated() {
    let sim = Sim::new(GpuLayout::nvidia_discrete());
    let device = sim.memory_device();
    let allocator = StandardMemoryAllocator::new_default(device.clone());
    for preference in [
        MemoryAllocatePreference::Auto,
        MemoryAllocatePreference::AlwaysAllocate,
    ] {
        let (b, reqs) = buffer(&sim, &device, 64 * KIB);
        assert!(!reqs.prefers_dedicated_allocation && !reqs.requires_dedicated_allocation);
        sim.state.reset_counters();
        let alloc = allocator
            .allocate_desc(&AllocationDesc {
                allocation_type: AllocationType::Linear,
                create_info: AllocationCreateInfo {
                    allocate_preference: preference,
                    ..Default::default()
                },
                // SAFETY: the buffer is valid and unbound; the allocation is bound to it only.
                dedicated: Some(unsafe { DedicatedAllocation::buffer(b) }),
                ..AllocationDesc::new(reqs)
            })
            .unwrap();
        let always = preference == MemoryAllocatePreference::AlwaysAllocate;
        assert_eq!(alloc.is_dedicated(), always, "{preference:?}");
        let calls = sim.state.calls();
        if always {
            // Dedicated because the preference asked, and then the resource is named.
            let call = calls
                .iter()
                .find(|c| c.memory == alloc.memory())
                .expect("the dedicated allocation's vkAllocateMemory");
            assert_eq!(
                call.chain.dedicated.map(|d| d.buffer),
                Some(b),
                "VkMemoryDedicatedAllocateInfo names the buffer"
            );
        } else {
            // Suballocated from a block whose memory names no resource.
            assert!(calls.iter().all(|c| !c.dedicated()), "{calls:?}");
        }
        // SAFETY: made for this buffer; unbound.
        unsafe { alloc.bind_buffer(b) }.unwrap();
        // SAFETY: unused; destroyed before its memory.
        unsafe { allocator.destroy_buffer(b, alloc) };
    }
    drop(allocator);
    sim.assert_nothing_allocated();
}
