//! Bad input, table-driven: every public constructor and allocate path is given invalid
//! arguments and must return an error value whose message says what was wrong, never panic.

mod common;
mod support;

use ash::vk;
use ash_memory::*;
use std::panic::{catch_unwind, AssertUnwindSafe};
use support::{GpuLayout, Sim, GIB, MIB};

/// One case: a name, the call (returning its error's message, or `None` if it wrongly
/// succeeded), and words the message must contain.
type Case<'a> = (
    &'static str,
    Box<dyn Fn() -> Option<String> + 'a>,
    &'static [&'static str],
);

fn err<T, E: std::fmt::Display>(r: Result<T, E>) -> Option<String> {
    r.err().map(|e| e.to_string())
}

fn run_cases(cases: Vec<Case<'_>>) {
    let mut failures = Vec::new();
    for (name, call, words) in &cases {
        match catch_unwind(AssertUnwindSafe(call)) {
            Err(_) => failures.push(format!("{name}: panicked")),
            Ok(None) => failures.push(format!("{name}: no error")),
            Ok(Some(message)) => {
                let lower = message.to_lowercase();
                if let Some(w) = words.iter().find(|w| !lower.contains(&w.to_lowercase())) {
                    failures.push(format!("{name}: message {message:?} does not say {w:?}"));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} case(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

fn reqs(size: u64, bits: u32) -> AllocationRequirements {
    AllocationRequirements {
        layout: DeviceLayout::from_size_alignment(size, 16).unwrap(),
        memory_type_bits: bits,
        prefers_dedicated_allocation: false,
        requires_dedicated_allocation: false,
    }
}

#[test]
fn layouts_and_requirements() {
    let vk_reqs = |size, alignment| vk::MemoryRequirements {
        size,
        alignment,
        memory_type_bits: 1,
    };
    let max = DeviceLayout::MAX_SIZE;
    run_cases(vec![
        (
            "layout of size 0",
            Box::new(|| err(DeviceLayout::from_size_alignment(0, 1))),
            &["zero"],
        ),
        (
            "alignment 3",
            Box::new(|| err(DeviceLayout::from_size_alignment(64, 3))),
            &["3", "power of two"],
        ),
        (
            "alignment 0",
            Box::new(|| err(DeviceLayout::from_size_alignment(64, 0))),
            &["power of two"],
        ),
        (
            "size past the maximum",
            Box::new(move || err(DeviceLayout::from_size_alignment(max + 1, 1))),
            &["exceeds"],
        ),
        (
            "size that overflows when aligned",
            Box::new(move || err(DeviceLayout::from_size_alignment(max, 1 << 20))),
            &["exceeds"],
        ),
        (
            "DeviceAlignment 6",
            Box::new(|| err(DeviceAlignment::try_new(6))),
            &["power of two"],
        ),
        (
            "requirements of size 0",
            Box::new(move || err(AllocationRequirements::from_vk(vk_reqs(0, 16)))),
            &["zero"],
        ),
        (
            "requirements with alignment 48",
            Box::new(move || err(AllocationRequirements::from_vk(vk_reqs(64, 48)))),
            &["48", "power of two"],
        ),
        (
            "requirements past the maximum size",
            Box::new(move || err(AllocationRequirements::from_vk(vk_reqs(u64::MAX, 1)))),
            &["exceeds"],
        ),
    ]);
}

#[test]
fn suballocator_constructors_and_requests() {
    let layout = |size| DeviceLayout::from_size_alignment(size, 16).unwrap();
    let g = DeviceAlignment::MIN;
    run_cases(vec![
        (
            "free list over an empty region",
            Box::new(move || {
                err(FreeListAllocator::new(0).allocate(layout(16), AllocationType::Linear, g))
            }),
            &["out of region memory"],
        ),
        (
            "free list request larger than the region",
            Box::new(move || {
                err(FreeListAllocator::new(1000).allocate(layout(1024), AllocationType::Linear, g))
            }),
            &["out of region memory"],
        ),
        (
            "free list request of the largest layout",
            Box::new(move || {
                let huge = DeviceLayout::from_size_alignment(DeviceLayout::MAX_SIZE, 1).unwrap();
                err(FreeListAllocator::new(1 << 40).allocate(huge, AllocationType::Linear, g))
            }),
            &["out of region memory"],
        ),
    ]);
}

#[test]
fn allocator_configuration() {
    let sim = Sim::new(GpuLayout::nvidia_discrete());
    let device = sim.memory_device();
    let with = |f: &dyn Fn(&mut GenericMemoryAllocatorCreateInfo)| {
        let mut info = GenericMemoryAllocatorCreateInfo::default();
        f(&mut info);
        err(StandardMemoryAllocator::new(device.clone(), info))
    };
    run_cases(vec![
        (
            "empty block-size table",
            Box::new(|| err(BlockSizeThresholds::new(vec![]))),
            &["threshold of 0"],
        ),
        (
            "block-size table without threshold 0",
            Box::new(|| err(BlockSizeThresholds::new(vec![(MIB, 64 * MIB)]))),
            &["threshold of 0"],
        ),
        (
            "unsorted block-size table",
            Box::new(|| {
                err(BlockSizeThresholds::new(vec![
                    (0, MIB),
                    (GIB, MIB),
                    (MIB, MIB),
                ]))
            }),
            &["sorted"],
        ),
        (
            "duplicated threshold",
            Box::new(|| {
                err(BlockSizeThresholds::new(vec![
                    (0, MIB),
                    (GIB, MIB),
                    (GIB, 2 * MIB),
                ]))
            }),
            &["distinct"],
        ),
        (
            "block size 0",
            Box::new(|| err(BlockSizeThresholds::new(vec![(0, 0)]))),
            &["must not be zero"],
        ),
        (
            "uniform block size 0",
            Box::new(|| err(BlockSizeThresholds::uniform(0))),
            &["must not be zero"],
        ),
        (
            "export types for the wrong number of memory types",
            Box::new(|| with(&|i| i.export_handle_types = vec![ExportHandleTypes::NONE])),
            &["1 entries", "3 memory types"],
        ),
        (
            "block priority 2",
            Box::new(|| with(&|i| i.block_priority = 2.0)),
            &["priority"],
        ),
        (
            "block priority NaN",
            Box::new(|| with(&|i| i.block_priority = f32::NAN)),
            &["priority"],
        ),
    ]);
}

#[test]
fn allocate_paths() {
    let sim = Sim::new(GpuLayout::nvidia_discrete());
    let device = sim.memory_device();
    let a = StandardMemoryAllocator::new_default(device.clone());
    let info = AllocationCreateInfo::default();
    let upload = AllocationCreateInfo {
        usage: MemoryUsage::Upload,
        ..Default::default()
    };
    let never = AllocationCreateInfo {
        allocate_preference: MemoryAllocatePreference::NeverAllocate,
        ..Default::default()
    };
    let nan = &AllocationCreateInfo {
        priority: Some(f32::NAN),
        ..Default::default()
    };
    let high = &AllocationCreateInfo {
        priority: Some(1.5),
        ..Default::default()
    };
    let memory = |memory_type_index, size, priority| MemoryObjectCreateInfo {
        size,
        memory_type_index,
        priority,
        ..Default::default()
    };
    let lin = AllocationType::Linear;
    let small = DeviceLayout::from_size_alignment(256, 16).unwrap();
    let vram = 8 * GIB;
    let a = &a;
    let info = &info;
    let upload = &upload;
    let never = &never;
    run_cases(vec![
        (
            "memory_type_bits 0",
            Box::new(|| err(a.allocate(reqs(256, 0), lin, info, None))),
            &["memory_type_bits is 0"],
        ),
        (
            "memory_type_bits naming types that do not exist",
            Box::new(|| err(a.allocate(reqs(256, 0b1000), lin, info, None))),
            &["0x8", "do not exist", "3"],
        ),
        (
            "all 32 bits",
            Box::new(|| err(a.allocate(reqs(256, u32::MAX), lin, info, None))),
            &["do not exist"],
        ),
        (
            "upload with only a device-local type allowed",
            Box::new(|| err(a.allocate(reqs(256, 0b001), lin, upload, None))),
            &["no memory type", "HOST_VISIBLE"],
        ),
        (
            "larger than every heap",
            Box::new(|| err(a.allocate(reqs(32 * GIB, 0b111), lin, info, None))),
            &["heap"],
        ),
        (
            "never allocate with no block",
            Box::new(|| err(a.allocate(reqs(256, 0b111), lin, never, None))),
            &["no existing block"],
        ),
        (
            "never allocate when a dedicated allocation is required",
            Box::new(|| {
                let r = AllocationRequirements {
                    requires_dedicated_allocation: true,
                    ..reqs(256, 0b111)
                };
                err(a.allocate(r, lin, never, None))
            }),
            &["requires a dedicated allocation"],
        ),
        (
            "allocate_from_type: index out of range",
            Box::new(|| err(a.allocate_from_type(3, small, lin, info))),
            &["3", "out of range"],
        ),
        (
            "allocate_from_type: index u32::MAX",
            Box::new(|| err(a.allocate_from_type(u32::MAX, small, lin, info))),
            &["out of range"],
        ),
        (
            "allocate_from_type: larger than the heap",
            Box::new(move || {
                let l = DeviceLayout::from_size_alignment(vram + 1, 1).unwrap();
                err(a.allocate_from_type(0, l, lin, info))
            }),
            &["heap 0", "8589934592"],
        ),
        (
            "allocate_dedicated: size 0",
            Box::new(|| err(a.allocate_dedicated(0, 0, None, info))),
            &["zero"],
        ),
        (
            "allocate_dedicated: index out of range",
            Box::new(|| err(a.allocate_dedicated(7, 256, None, info))),
            &["7", "out of range"],
        ),
        (
            "allocate_dedicated: larger than the heap",
            Box::new(move || err(a.allocate_dedicated(0, vram + 1, None, info))),
            &["heap 0"],
        ),
        (
            "allocate_dedicated: past the largest layout",
            Box::new(|| err(a.allocate_dedicated(0, u64::MAX, None, info))),
            &["exceeds"],
        ),
        (
            "allocate: NaN priority",
            Box::new(|| err(a.allocate(reqs(256, 0b111), lin, nan, None))),
            &["priority", "NaN"],
        ),
        (
            "allocate: priority above 1",
            Box::new(|| err(a.allocate(reqs(256, 0b111), lin, high, None))),
            &["priority", "1.5"],
        ),
        (
            "allocate_from_type: NaN priority",
            Box::new(|| err(a.allocate_from_type(0, small, lin, nan))),
            &["priority"],
        ),
        (
            "allocate_dedicated: NaN priority",
            Box::new(|| err(a.allocate_dedicated(0, 256, None, nan))),
            &["priority"],
        ),
        (
            "DeviceMemory::allocate: size 0",
            Box::new(|| err(MemoryObject::allocate(device.clone(), &memory(0, 0, None)))),
            &["size 0"],
        ),
        (
            "DeviceMemory::allocate: type out of range",
            Box::new(|| {
                err(MemoryObject::allocate(
                    device.clone(),
                    &memory(3, 256, None),
                ))
            }),
            &["3", "out of range"],
        ),
        (
            "DeviceMemory::allocate: larger than the heap",
            Box::new(|| {
                err(MemoryObject::allocate(
                    device.clone(),
                    &memory(0, vram + 1, None),
                ))
            }),
            &["heap 0"],
        ),
        (
            "DeviceMemory::allocate: NaN priority",
            Box::new(|| {
                err(MemoryObject::allocate(
                    device.clone(),
                    &memory(0, 256, Some(f32::NAN)),
                ))
            }),
            &["priority"],
        ),
        (
            "DeviceMemory::allocate: negative priority",
            Box::new(|| {
                err(MemoryObject::allocate(
                    device.clone(),
                    &memory(0, 256, Some(-0.5)),
                ))
            }),
            &["priority", "-0.5"],
        ),
    ]);
    // Nothing was allocated by any of them.
    assert_eq!(sim.state.allocate_calls(), 0);
}

#[test]
fn mapped_access() {
    let sim = Sim::new(GpuLayout::nvidia_discrete());
    let a = StandardMemoryAllocator::new_default(sim.memory_device());
    let upload = AllocationCreateInfo {
        usage: MemoryUsage::Upload,
        ..Default::default()
    };
    let host = std::cell::RefCell::new(
        a.allocate(reqs(256, 0b111), AllocationType::Linear, &upload, None)
            .unwrap(),
    );
    let vram = std::cell::RefCell::new(
        a.allocate(
            reqs(256, 0b111),
            AllocationType::Linear,
            &Default::default(),
            None,
        )
        .unwrap(),
    );
    assert_eq!(vram.borrow().memory_type_index(), 0);
    let host = &host;
    let vram = &vram;
    run_cases(vec![
        (
            "write past the end",
            Box::new(|| err(host.borrow_mut().write(200, &[0; 57]))),
            &["offset 200", "57 bytes", "256"],
        ),
        (
            "write at an offset that overflows",
            Box::new(|| err(host.borrow_mut().write(u64::MAX, &[0; 2]))),
            &["outside the allocation"],
        ),
        (
            "read past the end",
            Box::new(|| err(host.borrow().read(256, &mut [0; 1]))),
            &["outside the allocation"],
        ),
        (
            "flush past the end",
            Box::new(|| err(host.borrow().flush(0, 257))),
            &["outside the allocation"],
        ),
        (
            "invalidate at an offset that overflows",
            Box::new(|| err(host.borrow().invalidate(u64::MAX, u64::MAX))),
            &["outside the allocation"],
        ),
        (
            "write to memory that is not host-visible",
            Box::new(|| err(vram.borrow_mut().write(0, &[1; 4]))),
            &["not host-visible", "memory type 0"],
        ),
        (
            "read from memory that is not host-visible",
            Box::new(|| err(vram.borrow().read(0, &mut [0; 4]))),
            &["not host-visible"],
        ),
    ]);
    // A write of zero bytes at the end is fine.
    host.borrow_mut().write(256, &[]).unwrap();
}

#[test]
fn devices_reporting_invalid_properties() {
    let cases = [
        (
            GpuLayout {
                buffer_image_granularity: 1000,
                ..GpuLayout::nvidia_discrete()
            },
            "bufferImageGranularity = 1000",
        ),
        (
            GpuLayout {
                non_coherent_atom_size: 0,
                ..GpuLayout::nvidia_discrete()
            },
            "nonCoherentAtomSize = 0",
        ),
        (
            GpuLayout {
                types: vec![(vk::MemoryPropertyFlags::DEVICE_LOCAL, 4)],
                ..GpuLayout::nvidia_discrete()
            },
            "names heap 4",
        ),
    ];
    for (layout, words) in cases {
        let sim = Sim::new(layout);
        // SAFETY: the wrapped handles forward to a live instance and device.
        let result = catch_unwind(AssertUnwindSafe(|| unsafe {
            MemoryDevice::new(
                &sim.ctx.entry,
                &sim.instance,
                sim.ctx.physical_device,
                sim.device.clone(),
                vk::API_VERSION_1_2,
                EnabledMemoryFeatures::default(),
            )
        }));
        let e = result
            .expect("Device::new panicked")
            .expect_err("Device::new accepted invalid properties");
        assert!(e.to_string().contains(words), "{e}");
    }
}

#[test]
fn hand_built_memory_properties() {
    // Public plain data can be anything: lookups and the type choice answer, never panic.
    let t = vk::MemoryType {
        property_flags: vk::MemoryPropertyFlags::DEVICE_LOCAL,
        heap_index: 9,
    };
    let props = MemoryProperties {
        memory_types: std::iter::repeat_n(t, 40).collect(),
        memory_heaps: Default::default(),
    };
    let features = EnabledMemoryFeatures::default();
    let result = catch_unwind(AssertUnwindSafe(|| {
        (
            props.heap_size_of_type(0),
            props.heap_size_of_type(u32::MAX),
            props.memory_type(39).is_some(),
            props.memory_type(40).is_none(),
            props.all_types_mask(),
            allocator::memory_type::find_memory_type_index(
                &props,
                &features,
                u32::MAX,
                &MemoryUsage::DeviceOnly.into(),
            ),
        )
    }))
    .expect("a lookup panicked");
    assert_eq!(
        result,
        (None, None, true, true, u32::MAX, Some(0)),
        "heap 9 does not exist; type 39 does"
    );
}
