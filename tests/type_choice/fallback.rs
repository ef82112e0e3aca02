//! The fallback to the next memory type when the best one's heap is full, over budget or out
//! of lazily allocated memory, and the errors of requests no allowed type can serve.

use super::rule::*;
use super::{common, requirements, support};
use ash::vk;
use ash::vk::MemoryPropertyFlags as F;
use ash_memory::*;
use support::{buffer_info, fill, verify, GpuLayout, Sim, KIB, MIB};
use vk::BufferUsageFlags as B;
use vk::ImageUsageFlags as I;

/// The memory types of `layout` on heap `heap`, as a mask.
fn types_on_heap(layout: &GpuLayout, heap: u32) -> u32 {
    (0..layout.type_count())
        .filter(|&i| layout.heap_of(i) == heap)
        .fold(0, |m, i| m | 1 << i)
}

/// An AMD-like discrete GPU with small heaps, for tests that fill them for real: 64 MiB of
/// VRAM, 512 MiB of host memory, a 12 MiB BAR window.
fn amd_small_heaps() -> GpuLayout {
    GpuLayout {
        name: "amd-small-heaps",
        heaps: vec![(64 * MIB, true), (512 * MIB, false), (12 * MIB, true)],
        ..GpuLayout::amd_discrete_bar()
    }
}

/// Allocates `size`-byte buffers of `usage` until one lands outside the heap of the first, and
/// returns the live buffers (buffer, allocation, seed) and the type of that one.
fn fill_until_spill(
    sim: &Sim,
    allocator: &StandardMemoryAllocator,
    info: &AllocationCreateInfo,
    usage_flags: vk::BufferUsageFlags,
    size: u64,
    what: &str,
) -> (Vec<(vk::Buffer, MemoryAlloc)>, u32, u32) {
    let mut live = Vec::new();
    let mut first_heap = None;
    for seed in 0..1000u64 {
        // SAFETY: a valid create info; the caller destroys the buffer before its memory.
        let (buffer, mut alloc) =
            unsafe { allocator.create_buffer(&buffer_info(size, usage_flags), info) }
                .unwrap_or_else(|e| panic!("{what}: buffer {seed}: {e}"));
        let t = alloc.memory_type_index();
        assert_eq!(sim.state.memory_type_of(alloc.memory()), Some(t), "{what}");
        if alloc
            .memory_property_flags()
            .contains(vk::MemoryPropertyFlags::HOST_VISIBLE)
        {
            fill(&mut alloc, seed, 4 * KIB);
            verify(&alloc, seed, 4 * KIB, what);
        }
        let heap = sim.state.layout.heap_of(t);
        live.push((buffer, alloc));
        match first_heap {
            None => first_heap = Some((t, heap)),
            Some((_, h)) if h != heap => return (live, first_heap.unwrap().0, t),
            Some(_) => {}
        }
    }
    panic!("{what}: 1000 buffers and the first heap never filled");
}

fn destroy_all(sim: &Sim, live: Vec<(vk::Buffer, MemoryAlloc)>) {
    for (buffer, alloc) in live {
        // SAFETY: the buffer is unused; destroyed before its memory.
        unsafe { sim.device.destroy_buffer(buffer, None) };
        drop(alloc);
    }
}

/// When the heap of the best type is full, the allocation goes on in the next type of VMA's
/// order (its `AllocateMemory` loop: leave the failed type out of the bits, choose again),
/// never failing while another allowed type has room.
#[test]
fn a_full_heap_falls_back_to_the_next_type_in_vmas_order() {
    let layout = amd_small_heaps();
    let c = Config {
        layout: layout.clone(),
        protected: false,
        device_coherent: false,
        integrated_type: false,
    };
    use HostAccess::*;
    for (usage, flags, why) in [
        (MemoryUsage::DeviceOnly, B::STORAGE_BUFFER, "GPU_ONLY"),
        (
            MemoryUsage::Auto(NoAccess),
            B::VERTEX_BUFFER,
            "AUTO, device",
        ),
        (MemoryUsage::Upload, B::UNIFORM_BUFFER, "CPU_TO_GPU, BAR"),
        (
            MemoryUsage::Auto(SequentialWriteOrTransfer),
            B::VERTEX_BUFFER,
            "AUTO, write or transfer: VRAM",
        ),
    ] {
        let what = format!("{} {usage:?} ({why})", layout.name);
        let sim = Sim::new(layout.clone());
        let allocator = StandardMemoryAllocator::new_default(sim.memory_device());
        let info = AllocationCreateInfo {
            usage,
            ..Default::default()
        };
        let resource = ResourceUsage::Buffer(flags);
        let bits = layout.buffer_bits();
        let size = 2 * MIB;
        let (live, first, spilled) = fill_until_spill(&sim, &allocator, &info, flags, size, &what);
        let full_heap = layout.heap_of(first);
        // Documented (`intent`, rationing a small BAR heap): an automatic usage may not take
        // the 12 MiB BAR window for a 2 MiB request (over 1/32 of it): its types fall behind
        // every other type. VMA has no such rule and would take it.
        let rationed_out = match usage {
            MemoryUsage::Auto(_) => types_on_heap(&layout, 2),
            _ => 0,
        };
        let expected = |bits| {
            ours(&c, bits & !rationed_out, usage, resource).or(ours(&c, bits, usage, resource))
        };
        assert_eq!(Some(first), expected(bits), "{what}: first");
        // Full: the last buffer could not fit it.
        let heap_size = layout.heaps[full_heap as usize].0;
        assert!(
            sim.state.heap_used(full_heap) + size > heap_size,
            "{what}: spilled with {} of {heap_size} bytes used",
            sim.state.heap_used(full_heap)
        );
        let rest = bits & !types_on_heap(&layout, full_heap);
        assert_eq!(Some(spilled), expected(rest), "{what}: next");
        if rationed_out == 0 {
            assert_eq!(
                Some(first),
                vma(&c, bits, usage, resource),
                "{what}: VMA's first"
            );
            assert_eq!(
                Some(spilled),
                vma(&c, rest, usage, resource),
                "{what}: VMA's next"
            );
        }
        for (_, alloc) in &live {
            assert!(alloc.memory_type_index() == first || alloc.memory_type_index() == spilled);
        }
        destroy_all(&sim, live);
        drop(allocator);
        sim.assert_nothing_allocated();
    }
}

/// With `within_budget` (VMA's `WITHIN_BUDGET`), a heap over its reported budget sends the
/// allocation to the next type instead of failing; without it the budget is advisory and the
/// best type is kept, as in VMA.
#[test]
fn a_heap_over_budget_falls_back_to_the_next_type_within_budget() {
    let layout = GpuLayout::nvidia_discrete();
    let sim = Sim::with_features(
        layout.clone(),
        support::SimFeatures {
            memory_budget: true,
            ..Default::default()
        },
    );
    sim.state.set_heap_budget(0, 48 * MIB);
    sim.state.set_other_usage(0, 16 * MIB);
    let allocator = StandardMemoryAllocator::new_default(sim.memory_device_claimed());
    let within = AllocationCreateInfo {
        usage: MemoryUsage::Auto(HostAccess::NoAccess),
        within_budget: true,
        ..Default::default()
    };
    let what = "nvidia-discrete, VRAM budget 48 MiB, 16 MiB used elsewhere";
    let (live, first, spilled) =
        fill_until_spill(&sim, &allocator, &within, B::STORAGE_BUFFER, 2 * MIB, what);
    assert_eq!((first, spilled), (0, 1), "{what}: VRAM, then host memory");
    let own = sim.state.heap_used(0);
    assert!(
        own <= 32 * MIB,
        "{what}: {own} bytes of VRAM taken, past the 32 MiB left in the budget"
    );
    // Without `within_budget` the best type is kept past the budget (the heap has room).
    let advisory = AllocationCreateInfo {
        within_budget: false,
        ..within.clone()
    };
    let requirements = requirements(2 * MIB, layout.buffer_bits());
    let alloc = allocator
        .allocate(requirements, AllocationType::Linear, &advisory, None)
        .unwrap();
    assert_eq!(
        alloc.memory_type_index(),
        0,
        "{what}: over budget, not within_budget"
    );
    drop(alloc);
    destroy_all(&sim, live);
    drop(allocator);
    sim.assert_nothing_allocated();
}

/// A request no allowed type can serve fails with `NoSuitableMemoryType`, naming the bits and
/// the required flags, allocates nothing, and leaves the resource to the caller.
#[test]
fn required_flags_no_allowed_type_has_are_a_clear_error() {
    for (layout, protected, filter_required, bits, why) in [
        (
            GpuLayout::nvidia_discrete(),
            false,
            DL | HV,
            None,
            "no BAR type",
        ),
        (
            GpuLayout::amd_discrete_bar(),
            false,
            DL | HV,
            Some(0b1011),
            "the BAR type is not in memoryTypeBits",
        ),
        (
            GpuLayout::intel_integrated(),
            false,
            LAZY,
            None,
            "no lazily allocated type",
        ),
        (
            GpuLayout::with_protected(),
            false,
            PROT,
            None,
            "protected without protectedMemory",
        ),
        (
            GpuLayout::mobile(),
            false,
            CACHED | HC,
            None,
            "the cached type is not coherent",
        ),
    ] {
        let what = format!("{}: {why}", layout.name);
        let sim = Sim::with_features(
            layout.clone(),
            support::SimFeatures {
                protected_memory: protected,
                ..Default::default()
            },
        );
        let allocator = StandardMemoryAllocator::new_default(sim.memory_device_claimed());
        let bits = bits.unwrap_or_else(|| layout.buffer_bits());
        let info = AllocationCreateInfo {
            usage: custom(filter_required, F::empty(), F::empty()),
            ..Default::default()
        };
        let requirements = requirements(4 * KIB, bits);
        assert_eq!(
            allocator.memory_type_for(&requirements, &info),
            None,
            "{what}"
        );
        let err = allocator
            .allocate(requirements, AllocationType::Linear, &info, None)
            .expect_err(&what);
        match &err {
            AllocationError::NoSuitableMemoryType { bits: b, required } => {
                assert_eq!((*b, *required), (bits, filter_required), "{what}");
            }
            other => panic!("{what}: {other:?}"),
        }
        let text = err.to_string();
        assert!(text.contains(&format!("{bits:#x}")), "{what}: {text}");
        // Through `create_buffer` too (where the buffer's own bits are the ones tested): an
        // error, no buffer left behind, nothing allocated.
        if bits == layout.buffer_bits() {
            let buffer = buffer_info(4 * KIB, B::STORAGE_BUFFER);
            // SAFETY: a valid create info.
            let result = unsafe { allocator.create_buffer(&buffer, &info) };
            assert!(
                matches!(result, Err(AllocationError::NoSuitableMemoryType { .. })),
                "{what}: {result:?}"
            );
        }
        assert_eq!(
            sim.state.allocate_calls(),
            0,
            "{what}: memory was allocated"
        );
        drop(allocator);
        sim.assert_nothing_allocated();
    }
}
/// A transient attachment whose lazily allocated memory cannot be had (the driver is out of
/// it) falls back to the next type of the rule, committed device memory, and is usable.
#[test]
fn a_transient_attachment_falls_back_from_lazily_allocated_memory() {
    for layout in [GpuLayout::mobile(), mobile_lazy_first()] {
        let c = Config {
            layout: layout.clone(),
            protected: false,
            device_coherent: false,
            integrated_type: false,
        };
        let sim = Sim::new(layout.clone());
        let allocator = StandardMemoryAllocator::new_default(sim.memory_device());
        let usage = I::COLOR_ATTACHMENT | I::TRANSIENT_ATTACHMENT;
        let resource = ResourceUsage::Image(usage);
        let info = AllocationCreateInfo {
            usage: MemoryUsage::Auto(HostAccess::NoAccess),
            ..Default::default()
        };
        let bits = layout.image_bits(vk::ImageTiling::OPTIMAL, usage);
        let lazy = (0..layout.type_count())
            .filter(|&i| layout.flags(i).contains(LAZY))
            .fold(0, |m, i| m | 1 << i);
        let first = ours(&c, bits, info.usage, resource).unwrap();
        assert!(layout.flags(first).contains(LAZY), "{}", layout.name);
        let next = ours(&c, bits & !lazy, info.usage, resource).unwrap();
        assert!(!layout.flags(next).contains(LAZY), "{}", layout.name);
        sim.state.set_faults(support::Faults {
            allocate_at: Some((1, vk::Result::ERROR_OUT_OF_DEVICE_MEMORY)),
            ..Default::default()
        });
        let image_info =
            support::image_info(256, vk::Format::R8G8B8A8_UNORM, vk::ImageTiling::OPTIMAL)
                .usage(usage);
        // SAFETY: a valid create info; the image is destroyed before its memory.
        let (image, alloc) = unsafe { allocator.create_image(&image_info, &info) }
            .unwrap_or_else(|e| panic!("{}: {e}", layout.name));
        assert_eq!(alloc.memory_type_index(), next, "{}", layout.name);
        assert_eq!(sim.state.memory_type_of(alloc.memory()), Some(next));
        let calls = sim.state.calls();
        assert_eq!(calls.len(), 2, "{}: lazy, then committed", layout.name);
        assert_eq!(calls[0].memory_type, first);
        // SAFETY: the image is unused; destroyed before its memory.
        unsafe { sim.device.destroy_image(image, None) };
        drop(alloc);
        drop(allocator);
        sim.assert_nothing_allocated();
    }
}

/// VMA's `vmaFindMemoryTypeIndexForBufferInfo` (on lavapipe at Vulkan 1.3, where the
/// requirements of a create info are core): a request no type can serve fails with
/// `NoSuitableMemoryType` naming the flags that were required (it named none).
#[test]
fn find_memory_type_index_for_buffer_info_names_the_required_flags() {
    let ctx = common::TestContext::with_api_version(vk::API_VERSION_1_3, &[]);
    // SAFETY: the context's handles, which outlive the allocator; the instance was made for
    // Vulkan 1.3, which has `maintenance4` in core.
    let device = unsafe {
        MemoryDevice::new(
            &ctx.entry,
            &ctx.instance,
            ctx.physical_device,
            ctx.device.clone(),
            vk::API_VERSION_1_3,
            EnabledMemoryFeatures::default(),
        )
    }
    .unwrap();
    let allocator = StandardMemoryAllocator::new_default(device);
    let buffer = buffer_info(4 * KIB, B::STORAGE_BUFFER);
    for required in [F::LAZILY_ALLOCATED, F::PROTECTED, F::DEVICE_COHERENT_AMD] {
        let info = AllocationCreateInfo {
            usage: custom(required, F::empty(), F::empty()),
            ..Default::default()
        };
        // SAFETY: a valid create info for the device.
        let found = unsafe { allocator.find_memory_type_index_for_buffer_info(&buffer, &info) };
        match found {
            Err(AllocationError::NoSuitableMemoryType { required: r, .. }) => {
                assert_eq!(r, required)
            }
            other => panic!("{required:?}: {other:?}"),
        }
    }
    // A request lavapipe's one type serves finds it.
    let info = AllocationCreateInfo {
        usage: MemoryUsage::Auto(HostAccess::Random),
        ..Default::default()
    };
    // SAFETY: as above.
    let found = unsafe { allocator.find_memory_type_index_for_buffer_info(&buffer, &info) };
    assert_eq!(found.unwrap(), 0);
}
