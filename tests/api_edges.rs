//! Edges of the safe API that a hunt for panics and wrong results turned up: each test pins
//! a fixed bug (a contradictory error, an inconsistent check, an arithmetic overflow) or an
//! extreme input that no other test gives, on the real driver under the validation layer
//! where the call reaches it. `tests/bad_input.rs` holds the plain bad-argument table.

mod common;
mod support;

use ash::vk;
use ash_memory::transient::graphs::{self, GraphResource, ResourceKind};
use ash_memory::*;
use std::sync::Arc;
use support::{GpuLayout, Sim, MIB};

fn reqs(size: u64, alignment: u64, bits: u32) -> AllocationRequirements {
    AllocationRequirements {
        layout: DeviceLayout::from_size_alignment(size, alignment).unwrap(),
        memory_type_bits: bits,
        prefers_dedicated_allocation: false,
        requires_dedicated_allocation: false,
    }
}

fn upload() -> AllocationCreateInfo {
    AllocationCreateInfo {
        usage: MemoryUsage::Upload,
        ..Default::default()
    }
}

/// An allocator whose drop does not panic on the allocations a test keeps on purpose.
fn allocator_with(device: Arc<MemoryDevice>, margin: DeviceSize) -> StandardMemoryAllocator {
    StandardMemoryAllocator::new(
        device,
        GenericMemoryAllocatorCreateInfo {
            debug: DebugOptions {
                margin,
                leak_check: LeakCheck::Off,
                ..Default::default()
            },
            ..Default::default()
        },
    )
    .unwrap()
}

/// A pool's "larger than the block" error used to name the bare request size: a 1000-byte
/// request in a 1 MiB block with 1 MiB debug margins failed with "1000 bytes requested,
/// larger than the block size of 1048576 bytes". The error now names what the request takes
/// in a block (margins included), which is indeed more than the block.
#[test]
fn a_pool_block_too_small_for_the_margins_says_what_the_request_needed() {
    let sim = Sim::new(GpuLayout::nvidia_discrete());
    let margin = MAX_DEBUG_MARGIN;
    let a = allocator_with(sim.memory_device(), margin);
    let pool = |block_size| {
        a.create_pool::<FreeListAllocator>(&PoolCreateInfo {
            memory_type: PoolMemoryType::Index(1),
            block_size,
            ..Default::default()
        })
        .unwrap()
    };
    let small = pool(MIB);
    let err = small
        .allocate(
            reqs(1000, 16, 0b010),
            AllocationType::Linear,
            &upload(),
            None,
        )
        .unwrap_err();
    let AllocationError::BlockSizeExceeded { size, block_size } = err else {
        panic!("expected BlockSizeExceeded, got {err:?}");
    };
    assert_eq!(block_size, MIB);
    assert!(
        size >= 1000 + 2 * margin && size > block_size,
        "the error names {size} bytes for a 1000-byte request with two {margin}-byte margins"
    );
    let message = err.to_string();
    assert!(
        message.contains(&size.to_string())
            && message.contains(&block_size.to_string())
            && message.contains("margins"),
        "{message}"
    );
    // A block that holds the margins takes the same request, with the margins around it.
    let large = pool(4 * MIB);
    let alloc = large
        .allocate(
            reqs(1000, 16, 0b010),
            AllocationType::Linear,
            &upload(),
            None,
        )
        .unwrap();
    assert!(alloc.offset() >= margin && alloc.offset() + 1000 + margin <= 4 * MIB);
    drop((alloc, small, large, a));
    sim.assert_nothing_allocated();
}

/// In memory that is not host-coherent a suballocation is padded to whole atoms, so a
/// 999-byte request does not fit a 1000-byte block when the atom is 128 bytes; the error used
/// to say "999 bytes requested, larger than the block size of 1000 bytes". It now names the
/// padded 1024 bytes.
#[test]
fn a_non_coherent_pool_names_the_padded_size_it_could_not_fit() {
    let layout = GpuLayout::mobile();
    assert_eq!(layout.non_coherent_atom_size, 128);
    let sim = Sim::new(layout);
    let a = allocator_with(sim.memory_device(), 0);
    // Memory type 1 of the mobile layout is host-visible and not host-coherent.
    let pool = a
        .create_pool::<FreeListAllocator>(&PoolCreateInfo {
            memory_type: PoolMemoryType::Index(1),
            block_size: 1000,
            ..Default::default()
        })
        .unwrap();
    let err = pool
        .allocate(reqs(999, 1, 0b010), AllocationType::Linear, &upload(), None)
        .unwrap_err();
    assert_eq!(
        err,
        AllocationError::BlockSizeExceeded {
            size: 1024,
            block_size: 1000
        }
    );
    // What fits in whole atoms is served, padded, and written end to end.
    let mut alloc = pool
        .allocate(reqs(800, 1, 0b010), AllocationType::Linear, &upload(), None)
        .unwrap();
    assert_eq!((alloc.offset(), alloc.size()), (0, 896));
    alloc.write(0, &[0x5A; 896]).unwrap();
    let mut back = [0; 896];
    alloc.read(0, &mut back).unwrap();
    assert!(back.iter().all(|&b| b == 0x5A));
    assert_eq!(sim.state.violations(), Vec::<String>::new());
    drop((alloc, pool, a));
    sim.assert_nothing_allocated();
}

/// `GraphResource::estimated_resource` multiplied three `u32` extents in `u64` unchecked:
/// `u32::MAX` texels on each side panicked with an overflow. Such a resource has no estimate.
#[test]
fn graph_estimates_of_images_too_large_for_a_device_size_are_none() {
    let image = |width, height, layers| GraphResource {
        name: "huge".into(),
        kind: ResourceKind::Image {
            format: vk::Format::R32G32B32A32_SFLOAT,
            width,
            height,
            layers,
        },
        first_pass: 0,
        last_pass: 0,
    };
    for (w, h, l) in [
        (u32::MAX, u32::MAX, u32::MAX),
        (u32::MAX, u32::MAX, 2),
        (u32::MAX, u32::MAX, 1),
        (1 << 31, 1 << 31, 1),
    ] {
        assert_eq!(image(w, h, l).estimated_resource(), None, "{w}x{h}x{l}");
    }
    // An ordinary image still has one: 16 bytes a texel, padded to 64 KiB.
    let estimate = image(64, 64, 1).estimated_resource().unwrap();
    assert_eq!(estimate.layout.size(), 64 << 10);
    // The sample graphs at extreme sizes: built without panicking, and the estimates say
    // `None` where the sizes no longer fit.
    for graph in [
        graphs::deferred(u32::MAX, u32::MAX),
        graphs::forward_plus(u32::MAX, u32::MAX),
        graphs::deferred(0, 0),
        graphs::compute_chain(0),
        graphs::compute_chain(1),
        graphs::random(0, 7),
    ] {
        let estimates = graph.estimated_resources();
        if let Some(resources) = estimates {
            assert_eq!(resources.len(), graph.resources.len(), "{}", graph.name);
        }
    }
    assert!(graphs::deferred(u32::MAX, u32::MAX)
        .estimated_resources()
        .is_none());
}

/// `TransientPlan::takes_over_from` is documented to return nothing for an index out of
/// range, but computed `resource + 1` first: `usize::MAX` panicked with an overflow.
#[test]
fn takes_over_from_any_index_out_of_range_is_empty() {
    let layout = DeviceLayout::from_size_alignment(MIB, 256).unwrap();
    let resources = [
        TransientResource::new(layout, 1, AllocationType::Linear, 0, 0),
        TransientResource::new(layout, 1, AllocationType::Linear, 1, 1),
    ];
    let plan = transient::plan(&resources, &Default::default()).unwrap();
    assert_eq!(
        plan.takes_over_from(1),
        &[0],
        "the second takes over the first"
    );
    for index in [2, usize::MAX - 1, usize::MAX] {
        assert!(plan.takes_over_from(index).is_empty(), "{index}");
    }
}

/// Requests at the limits of the types, through every allocate path: each gets an error
/// value naming the problem, and nothing reaches the driver.
#[test]
fn extreme_alignments_and_counts_are_refused_without_a_driver_call() {
    let sim = Sim::new(GpuLayout::nvidia_discrete());
    let a = allocator_with(sim.memory_device(), 0);
    let lin = AllocationType::Linear;
    let huge_min_alignment = AllocationCreateInfo {
        min_alignment: DeviceAlignment::MAX,
        ..Default::default()
    };
    let too_large = |e: AllocationError| {
        assert!(
            matches!(e, AllocationError::Layout(LayoutError::SizeTooLarge { .. })),
            "{e:?}"
        );
        assert!(e.to_string().contains("exceeds"), "{e}");
    };
    // A 2^63 minimum alignment pads any size past the largest layout.
    too_large(
        a.allocate(reqs(256, 16, 0b111), lin, &huge_min_alignment, None)
            .unwrap_err(),
    );
    too_large(
        a.allocate_from_type(0, reqs(16, 1, 1).layout, lin, &huge_min_alignment)
            .unwrap_err(),
    );
    let pool = a
        .create_pool::<FreeListAllocator>(&PoolCreateInfo {
            memory_type: PoolMemoryType::Index(1),
            block_size: MIB,
            ..Default::default()
        })
        .unwrap();
    too_large(
        pool.allocate(reqs(256, 16, 0b010), lin, &huge_min_alignment, None)
            .unwrap_err(),
    );
    // A memory type index past the device's types, given to the pool: said as such (it used
    // to read "the pool's memory type 1 is not among the allowed types 0x0").
    for index in [3, 40, u32::MAX] {
        let expected = AllocationError::MemoryTypeIndexOutOfRange { index, count: 3 };
        let layout = reqs(16, 1, 1).layout;
        let info = AllocationCreateInfo::default();
        assert_eq!(
            pool.allocate_from_type(index, layout, lin, &info)
                .unwrap_err(),
            expected
        );
        assert_eq!(
            pool.allocate_dedicated(index, 16, None, &info).unwrap_err(),
            expected
        );
    }
    // Page counts whose pages add up to more than the heaps they may go to (24 GiB here) are
    // refused before the first page; they used to be allocated until the heaps were full.
    let calls = sim.state.allocate_calls();
    for (size, count) in [(256, usize::MAX), (256, 1 << 40), (MIB, 24 * 1024 + 1)] {
        assert_eq!(
            a.allocate_pages(reqs(size, 16, 0b111), lin, &upload(), count)
                .unwrap_err(),
            AllocationError::OutOfDeviceMemory,
            "{count} pages of {size} bytes"
        );
        assert_eq!(
            pool.allocate_pages(reqs(size, 16, 0b010), lin, &upload(), count)
                .unwrap_err(),
            AllocationError::OutOfDeviceMemory,
            "{count} pages of {size} bytes in the pool"
        );
    }
    assert_eq!(sim.state.allocate_calls(), calls, "no page was allocated");
    // Bits that name no memory type still say so.
    assert_eq!(
        a.allocate_pages(reqs(256, 16, 0), lin, &upload(), 1 << 40)
            .unwrap_err(),
        AllocationError::NoMemoryTypeBits
    );
    // Zero pages are no pages.
    assert!(a
        .allocate_pages(reqs(256, 16, 0b111), lin, &upload(), 0)
        .unwrap()
        .is_empty());
    // A block size past every heap.
    let err = a
        .create_pool::<FreeListAllocator>(&PoolCreateInfo {
            block_size: u64::MAX,
            ..Default::default()
        })
        .unwrap_err();
    assert!(err.to_string().contains("heap"), "{err}");
    assert_eq!(sim.state.allocate_calls(), 0);
    drop((pool, a));
    sim.assert_nothing_allocated();
}

/// Names, pool names and user data with quotes, backslashes, every control character, the
/// JavaScript line separators, non-BMP characters and 100 000 characters: both JSON dumps
/// stay valid JSON and give every string back exactly.
#[test]
fn json_dumps_carry_any_name_exactly() {
    #[derive(Debug)]
    #[allow(dead_code)] // Read through `Debug` only.
    struct Tag(&'static str);
    let sim = Sim::new(GpuLayout::nvidia_discrete());
    let a = allocator_with(sim.memory_device(), 0);
    let controls: String = (0u8..0x20).map(char::from).chain(['\u{7f}']).collect();
    let names: Vec<Arc<str>> = vec![
        "q\"u\\o/te".into(),
        format!("ctl{controls}end").into(),
        "\u{2028}\u{2029}\u{fffe}😀".into(),
        "x".repeat(100_000).into(),
    ];
    let pool_name: Arc<str> = format!("pool \"{controls}\"").into();
    let pool = a
        .create_pool::<FreeListAllocator>(&PoolCreateInfo {
            name: Some(pool_name.clone()),
            memory_type: PoolMemoryType::Index(1),
            block_size: MIB,
            ..Default::default()
        })
        .unwrap();
    let mut live = Vec::new();
    for name in &names {
        let info = AllocationCreateInfo {
            name: Some(name.clone()),
            user_data: Some(Arc::new(Tag("\"\\\n"))),
            ..upload()
        };
        let lin = AllocationType::Linear;
        live.push(a.allocate(reqs(256, 16, 0b110), lin, &info, None).unwrap());
        live.push(a.allocate_dedicated(0, 256, None, &info).unwrap());
        live.push(
            pool.allocate(reqs(256, 16, 0b010), lin, &info, None)
                .unwrap(),
        );
    }
    let collect = |v: &serde_json::Value, key: &str, out: &mut Vec<String>| {
        fn walk(v: &serde_json::Value, key: &str, out: &mut Vec<String>) {
            match v {
                serde_json::Value::Object(m) => {
                    for (k, x) in m {
                        if k == key {
                            if let Some(s) = x.as_str() {
                                out.push(s.to_owned());
                            }
                        }
                        walk(x, key, out);
                    }
                }
                serde_json::Value::Array(a) => a.iter().for_each(|x| walk(x, key, out)),
                _ => {}
            }
        }
        walk(v, key, out)
    };
    let dump: serde_json::Value =
        serde_json::from_str(&a.snapshot().to_json()).expect("the JSON dump is valid JSON");
    let vma: serde_json::Value =
        serde_json::from_str(&a.to_vma_json()).expect("the VMA dump is valid JSON");
    for (v, key) in [(&dump, "name"), (&vma, "Name")] {
        let mut found = Vec::new();
        collect(v, key, &mut found);
        for name in &names {
            let n = found.iter().filter(|f| f.as_str() == &**name).count();
            assert_eq!(
                n,
                3,
                "{key} {:?}: found {n} times",
                &name[..name.len().min(20)]
            );
        }
        assert!(
            found.iter().any(|f| f.as_str() == &*pool_name),
            "{key}: the pool's name"
        );
    }
    let mut data = Vec::new();
    collect(&dump, "user_data", &mut data);
    assert_eq!(data.len(), 3 * names.len());
    assert!(data.iter().all(|d| d == "Tag(\"\\\"\\\\\\n\")"), "{data:?}");
    drop((live, pool, a));
    sim.assert_nothing_allocated();
}

/// `MemoryObject::allocate` checked the type index, size and priority but not the features a
/// memory type needs: a `PROTECTED` type without `protectedMemory` reached `vkAllocateMemory`
/// (invalid usage, which the simulated driver records). It is now refused first, as the
/// allocator's paths refuse it; with the feature claimed the same call succeeds.
#[test]
fn a_memory_object_of_a_protected_type_needs_the_feature() {
    let sim = Sim::with_features(GpuLayout::with_protected(), support::SimFeatures::all());
    let info = MemoryObjectCreateInfo {
        size: 4096,
        memory_type_index: 0,
        ..Default::default()
    };
    assert!(sim
        .state
        .layout
        .flags(0)
        .contains(vk::MemoryPropertyFlags::PROTECTED));
    let without = sim.memory_device();
    let err = MemoryObject::allocate(without.clone(), &info).unwrap_err();
    assert_eq!(
        err,
        MemoryObjectError::MemoryTypeNeedsFeature {
            index: 0,
            feature: "protectedMemory"
        }
    );
    assert!(err.to_string().contains("protectedMemory"), "{err}");
    // The allocator's explicit-type paths say the same.
    let a = allocator_with(without, 0);
    let refused = |e: AllocationError| {
        assert!(
            matches!(e, AllocationError::MemoryTypeNotUsable { index: 0, .. }),
            "{e:?}"
        );
    };
    refused(
        a.allocate_dedicated(0, 4096, None, &Default::default())
            .unwrap_err(),
    );
    let layout = reqs(4096, 16, 1).layout;
    refused(
        a.allocate_from_type(0, layout, AllocationType::Linear, &Default::default())
            .unwrap_err(),
    );
    // Only the protected type allowed, nothing required: the message says so in words (the
    // empty flags' `Debug` text used to leave "the required flags  and").
    let err = a
        .allocate(
            reqs(256, 16, 1),
            AllocationType::Linear,
            &Default::default(),
            None,
        )
        .unwrap_err();
    assert_eq!(
        err,
        AllocationError::NoSuitableMemoryType {
            bits: 1,
            required: vk::MemoryPropertyFlags::empty()
        }
    );
    assert!(
        err.to_string().contains("required flags (none) and"),
        "{err}"
    );
    assert_eq!(sim.state.allocate_calls(), 0, "nothing reached the driver");
    drop(a);
    // Claimed: allocated.
    let with = sim.memory_device_claimed();
    assert!(with.features().protected_memory);
    let memory = MemoryObject::allocate(with, &info).unwrap();
    assert_eq!(memory.memory_type_index(), 0);
    drop(memory);
    assert_eq!(sim.state.violations(), Vec::<String>::new());
    sim.assert_nothing_allocated();
}

/// Random allocations and frees in a custom pool of each suballocator, on non-coherent memory
/// (atoms of 128 bytes) and on a 64 KiB granularity, with debug margins, blocks of an odd size
/// and a four-block cap: every allocation is aligned, keeps the bytes written to it while
/// others come and go (no overlap, no flush or invalidate that reaches a neighbour), the
/// margins stay intact, and nothing is left allocated.
#[test]
fn every_suballocator_in_a_pool_keeps_its_data_on_awkward_memory() {
    fn churn<S: Suballocator + Send + 'static>(layout: GpuLayout) {
        let what = format!("{} {}", layout.name, std::any::type_name::<S>());
        let sim = Sim::new(layout);
        let a = allocator_with(sim.memory_device(), 64);
        let pool = a
            .create_pool::<S>(&PoolCreateInfo {
                memory_type: PoolMemoryType::Index(1),
                block_size: 100_000,
                block_arenas: Some(1),
                max_block_count: 4,
                ..Default::default()
            })
            .unwrap();
        let mut rng = support::Rng(42);
        let mut live: Vec<(MemoryAlloc, u8)> = Vec::new();
        let mut served = 0;
        let check = |live: &[(MemoryAlloc, u8)]| {
            for (m, tag) in live {
                let mut back = vec![0; m.size() as usize];
                m.read(0, &mut back).unwrap();
                assert!(
                    back.iter().all(|b| b == tag),
                    "{what}: allocation {tag} changed"
                );
            }
        };
        for step in 0..200u32 {
            if rng.below(3) != 0 || live.is_empty() {
                let size = rng.range(1, 3000);
                let alignment = 1 << rng.below(9);
                let ty = if rng.below(2) == 0 {
                    AllocationType::Linear
                } else {
                    AllocationType::NonLinear
                };
                match pool.allocate(reqs(size, alignment, 0b010), ty, &upload(), None) {
                    Ok(mut m) => {
                        assert_eq!(m.offset() % alignment, 0, "{what}");
                        assert!(m.size() >= size, "{what}");
                        let tag = (step % 251) as u8;
                        m.write(0, &vec![tag; m.size() as usize]).unwrap();
                        live.push((m, tag));
                        served += 1;
                    }
                    Err(AllocationError::PoolFull { max_blocks: 4 }) => {}
                    Err(e) => panic!("{what}: {e}"),
                }
            } else {
                let i = rng.below(live.len() as u64) as usize;
                live.swap_remove(i);
            }
            if step % 20 == 19 {
                check(&live);
            }
        }
        check(&live);
        assert!(served >= 10, "{what}: only {served} allocations served");
        let report = a.check_corruption(u32::MAX).unwrap();
        assert_eq!(report.checked_allocations, live.len() as u64, "{what}");
        drop((live, pool, a));
        assert_eq!(sim.state.violations(), Vec::<String>::new(), "{what}");
        sim.assert_nothing_allocated();
    }
    for layout in [GpuLayout::mobile(), GpuLayout::large_granularity()] {
        churn::<FreeListAllocator>(layout.clone());
        churn::<BuddyAllocator>(layout.clone());
        churn::<BumpAllocator>(layout.clone());
        churn::<RingAllocator>(layout.clone());
        churn::<SlotAllocator<4096>>(layout);
    }
}

/// Imports with a size of 0 (whose error used to say the size exceeded the heap), a memory
/// type that does not exist, or a size past the heap are refused before the import reaches
/// the driver (the validation layer would report the
/// call), for a host allocation and for a file descriptor, and nothing is allocated.
#[test]
fn imports_of_size_zero_or_a_missing_type_are_refused_before_the_driver() {
    let ctx = common::TestContext::with_device_extensions(&[
        ash::khr::external_memory_fd::NAME,
        ash::ext::external_memory_host::NAME,
    ]);
    {
        let device = ctx.memory_device_with(EnabledMemoryFeatures {
            external_memory_fd: true,
            external_memory_host: true,
            ..Default::default()
        });
        let a = allocator_with(device.clone(), 0);
        let alignment = external_memory::min_imported_host_pointer_alignment(&device)
            .unwrap()
            .as_devicesize() as usize;
        let layout = std::alloc::Layout::from_size_align(alignment, alignment).unwrap();
        // SAFETY: a non-zero size.
        let host = std::ptr::NonNull::new(unsafe { std::alloc::alloc_zeroed(layout) }).unwrap();
        // SAFETY: every import below is refused before the pointer or the descriptor is
        // used (the descriptor -1 is never given to the driver).
        let imports = unsafe {
            [
                ExternalMemoryImport::host_pointer(host.cast()),
                ExternalMemoryImport::fd(vk::ExternalMemoryHandleTypeFlags::OPAQUE_FD, -1),
            ]
        };
        let types = device.memory_properties().memory_types.len() as u32;
        let heap = device.memory_properties().memory_heaps[0].size;
        for import in imports {
            let what = format!("{:?}", import.handle_type());
            let info = AllocationCreateInfo::default();
            // The size-0 error used to read "0 bytes requested, but heap 0 only has ... bytes".
            let err = a.import_memory(import, 0, 0, None, &info).unwrap_err();
            assert_eq!(
                err,
                AllocationError::Layout(LayoutError::ZeroSize),
                "{what}"
            );
            assert!(
                err.to_string().contains("must not be zero"),
                "{what}: {err}"
            );
            for index in [types, u32::MAX] {
                let err = a
                    .import_memory(import, index, alignment as u64, None, &info)
                    .unwrap_err();
                assert_eq!(
                    err,
                    AllocationError::MemoryTypeIndexOutOfRange {
                        index,
                        count: types
                    },
                    "{what}"
                );
            }
            let err = a
                .import_memory(import, 0, u64::MAX, None, &info)
                .unwrap_err();
            assert!(
                matches!(err, AllocationError::SizeExceedsHeap { heap_size, .. } if heap_size == heap),
                "{what}: {err:?}"
            );
        }
        assert_eq!(device.live_memory_objects(), 0, "nothing was allocated");
        assert_eq!(device.memory_allocation_calls(), 0);
        drop(a);
        // SAFETY: allocated above with this layout; no import holds it.
        unsafe { std::alloc::dealloc(host.as_ptr(), layout) };
    }
}
