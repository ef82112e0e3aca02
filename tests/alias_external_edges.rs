//! Misuse hunt over aliasing binds and external memory, on the real driver (lavapipe has
//! `VK_KHR_external_memory_fd` and `VK_EXT_external_memory_host`) under the validation layer:
//! any validation message fails the test, and a memory object left alive is reported when
//! the test context destroys the device.
//!
//! - Every pool suballocator keeps an `Unknown` allocation on granularity pages of its own,
//!   so that a buffer and an image aliased in it never share a page with a neighbour of the
//!   other kind, while the kind-checked binds refuse the rest.
//! - A `VkMemoryDedicatedAllocateInfo` in the user's `pNext` chain makes the memory
//!   dedicated exactly as the crate's own would: aliasing binds of any other resource are
//!   refused before the driver sees them.
//! - Host imports: adjacent ranges import side by side and keep their bytes apart, any
//!   overlap (across a page, through the user's chain, into another device) is refused while
//!   the first import lives and accepted once it is gone.
//! - Exports: a block allocation and a dedicated one say where they are in the exported
//!   object; exporting twice gives two descriptors of the same payload; export misuse is a
//!   clear error; statistics and budgets count every import once and nothing after.

mod common;
mod support;

use ash::vk;
use ash_memory::external_memory::min_imported_host_pointer_alignment;
use ash_memory::*;
use common::{buffer_info, image_info, TestContext};
use std::os::fd::IntoRawFd;
use std::ptr::NonNull;

const OPAQUE_FD: vk::ExternalMemoryHandleTypeFlags = vk::ExternalMemoryHandleTypeFlags::OPAQUE_FD;

fn external_context() -> TestContext {
    TestContext::with_device_extensions(&[
        ash::khr::external_memory_fd::NAME,
        ash::ext::external_memory_host::NAME,
    ])
}

fn external_features() -> EnabledMemoryFeatures {
    EnabledMemoryFeatures {
        external_memory_fd: true,
        external_memory_host: true,
        ..Default::default()
    }
}

fn host_visible_type(device: &MemoryDevice) -> u32 {
    let properties = device.memory_properties();
    (0..properties.memory_types.len() as u32)
        .find(|&t| {
            properties.memory_type(t).is_some_and(|m| {
                m.property_flags
                    .contains(vk::MemoryPropertyFlags::HOST_VISIBLE)
            })
        })
        .expect("a host-visible memory type")
}

fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(37).wrapping_add(seed) ^ (i >> 8) as u8)
        .collect()
}

/// `[start, end)` of the granularity pages `[offset, offset + size)` touches.
fn pages(offset: u64, size: u64, page: u64) -> (u64, u64) {
    (offset / page, (offset + size - 1) / page + 1)
}

/// Allocates Linear, Unknown and NonLinear neighbours in one pool of `S`, checks that no two
/// allocations of conflicting kinds share a granularity page, aliases a buffer and an image
/// in each `Unknown` one, and checks the kind rules on the others.
fn unknown_allocations_alias_in<S: Suballocator + Send + 'static>(
    ctx: &TestContext,
    device: &std::sync::Arc<MemoryDevice>,
    what: &str,
) {
    let d = &ctx.device;
    let allocator = StandardMemoryAllocator::new_default(device.clone());
    let page = device.buffer_image_granularity().as_devicesize();
    assert!(page > 1, "lavapipe has a granularity above 1");
    let usage = vk::BufferUsageFlags::TRANSFER_DST;
    let image = image_info(4, vk::Format::R8G8B8A8_UNORM, vk::ImageTiling::OPTIMAL);
    // SAFETY: valid create infos; probes destroyed below, never bound.
    let (probe_buffer, probe_image) = unsafe {
        (
            d.create_buffer(&buffer_info(64, usage), None).unwrap(),
            d.create_image(&image, None).unwrap(),
        )
    };
    // SAFETY: valid, unbound resources of this device.
    let (buffer_req, image_req) = unsafe {
        (
            AllocationRequirements::for_buffer(device, probe_buffer).unwrap(),
            AllocationRequirements::for_image(device, probe_image).unwrap(),
        )
    };
    let bits = buffer_req.memory_type_bits & image_req.memory_type_bits;
    let pool = allocator
        .create_pool::<S>(&PoolCreateInfo {
            memory_type: PoolMemoryType::Find {
                memory_type_bits: bits,
                usage: MemoryUsage::Auto(HostAccess::NoAccess),
            },
            block_size: 1 << 20,
            ..Default::default()
        })
        .unwrap();
    let unknown_layout = DeviceLayout::from_size_alignment(
        buffer_req
            .layout
            .size()
            .max(image_req.layout.size())
            .max(3 * page / 2),
        buffer_req
            .layout
            .alignment()
            .as_devicesize()
            .max(image_req.layout.alignment().as_devicesize()),
    )
    .unwrap();
    // Neighbours at a small alignment, whose ends share pages with whatever follows unless
    // something keeps them apart; large enough for either probe at an aligned offset.
    let small =
        DeviceLayout::from_size_alignment(unknown_layout.size() + 2 * page + 8, 16).unwrap();
    let fit = |alloc: &MemoryAlloc, alignment: u64| {
        alloc.offset().next_multiple_of(alignment) - alloc.offset()
    };
    let buffer_align = buffer_req.layout.alignment().as_devicesize();
    let image_align = image_req.layout.alignment().as_devicesize();
    let kinds = [
        AllocationType::Linear,
        AllocationType::Unknown,
        AllocationType::NonLinear,
        AllocationType::Unknown,
        AllocationType::Linear,
        AllocationType::Unknown,
        AllocationType::Unknown,
        AllocationType::NonLinear,
    ];
    let mut allocs = Vec::new();
    for kind in kinds {
        let layout = if kind == AllocationType::Unknown {
            unknown_layout
        } else {
            small
        };
        let requirements = AllocationRequirements {
            layout,
            memory_type_bits: bits,
            prefers_dedicated_allocation: false,
            requires_dedicated_allocation: false,
        };
        let alloc = pool
            .allocate(requirements, kind, &Default::default(), None)
            .unwrap_or_else(|e| panic!("{what}: {kind:?}: {e}"));
        assert_eq!(alloc.allocation_type(), kind, "{what}");
        allocs.push(alloc);
    }
    for (i, a) in allocs.iter().enumerate() {
        for b in &allocs[i + 1..] {
            if a.memory() != b.memory() {
                continue;
            }
            let (a0, a1) = (a.offset(), a.offset() + a.size());
            let (b0, b1) = (b.offset(), b.offset() + b.size());
            assert!(a1 <= b0 || b1 <= a0, "{what}: {a:?} overlaps {b:?}");
            if a.allocation_type().conflicts_with(b.allocation_type()) {
                let (pa0, pa1) = pages(a.offset(), a.size(), page);
                let (pb0, pb1) = pages(b.offset(), b.size(), page);
                assert!(
                    pa1 <= pb0 || pb1 <= pa0,
                    "{what}: {a:?} and {b:?} share a granularity page of {page} bytes"
                );
            }
        }
    }
    let mut made = Vec::new();
    for alloc in &allocs {
        // SAFETY: valid create infos; every resource made is destroyed before the pool.
        let (buffer, image) = unsafe {
            (
                alloc.create_aliasing_buffer(&buffer_info(64, usage), fit(alloc, buffer_align)),
                alloc.create_aliasing_image(&image, fit(alloc, image_align)),
            )
        };
        match alloc.allocation_type() {
            AllocationType::Unknown => {
                made.push((Some(buffer.unwrap()), Some(image.unwrap())));
            }
            AllocationType::Linear => {
                assert_eq!(
                    image,
                    Err(MemoryAccessError::GranularityConflict {
                        allocation_type: AllocationType::Linear
                    }),
                    "{what}"
                );
                made.push((Some(buffer.unwrap()), None));
            }
            AllocationType::NonLinear => {
                assert_eq!(
                    buffer,
                    Err(MemoryAccessError::GranularityConflict {
                        allocation_type: AllocationType::NonLinear
                    }),
                    "{what}"
                );
                made.push((None, Some(image.unwrap())));
            }
        }
    }
    // SAFETY: nothing uses them; destroyed before their memory is freed.
    unsafe {
        for (buffer, image) in made {
            if let Some(b) = buffer {
                d.destroy_buffer(b, None);
            }
            if let Some(i) = image {
                d.destroy_image(i, None);
            }
        }
        d.destroy_buffer(probe_buffer, None);
        d.destroy_image(probe_image, None);
    }
    drop(allocs);
    assert_eq!(pool.statistics().total.allocation_count, 0, "{what}");
    drop((pool, allocator));
    assert_eq!(device.live_memory_objects(), 0, "{what}");
}

#[test]
fn every_pool_suballocator_keeps_unknown_allocations_on_pages_of_their_own() {
    let ctx = TestContext::new();
    let device = ctx.memory_device();
    unknown_allocations_alias_in::<FreeListAllocator>(&ctx, &device, "free list");
    unknown_allocations_alias_in::<BuddyAllocator>(&ctx, &device, "buddy");
    unknown_allocations_alias_in::<BumpAllocator>(&ctx, &device, "bump");
    unknown_allocations_alias_in::<RingAllocator>(&ctx, &device, "ring");
    unknown_allocations_alias_in::<SlotAllocator<4096>>(&ctx, &device, "slots of 4 KiB");
    unknown_allocations_alias_in::<SlotAllocator<1000>>(&ctx, &device, "slots of 1000 B");
}

#[test]
fn a_dedicated_structure_in_the_user_chain_makes_the_memory_dedicated() {
    let ctx = TestContext::new();
    let d = &ctx.device;
    {
        let device = ctx.memory_device();
        let allocator = StandardMemoryAllocator::new_default(device.clone());
        let usage = vk::BufferUsageFlags::TRANSFER_DST;
        // SAFETY: valid create infos; destroyed at the end, after their memory's last use.
        let (owner, other) = unsafe {
            (
                d.create_buffer(&buffer_info(4096, usage), None).unwrap(),
                d.create_buffer(&buffer_info(4096, usage), None).unwrap(),
            )
        };
        // SAFETY: a valid, unbound buffer.
        let req = unsafe { AllocationRequirements::for_buffer(&device, owner) }.unwrap();
        let dedicated_info = vk::MemoryDedicatedAllocateInfo::default().buffer(owner);
        // SAFETY: a valid chain for the one memory object of this pool that is made below
        // (a dedicated allocation of the buffer's size, in a type the buffer allows); it
        // outlives the pool.
        let next = unsafe { AllocateNext::new(&dedicated_info as *const _ as *const _) };
        let pool = allocator
            .create_pool::<FreeListAllocator>(&PoolCreateInfo {
                memory_type: PoolMemoryType::Find {
                    memory_type_bits: req.memory_type_bits,
                    usage: MemoryUsage::Auto(HostAccess::NoAccess),
                },
                block_size: 1 << 20,
                memory_allocate_next: next,
                ..Default::default()
            })
            .unwrap();
        let alloc = pool
            .allocate(
                req,
                AllocationType::Linear,
                &AllocationCreateInfo {
                    allocate_preference: MemoryAllocatePreference::AlwaysAllocate,
                    ..Default::default()
                },
                None,
            )
            .unwrap();
        assert!(alloc.is_dedicated());
        // Another buffer in memory dedicated to `owner`: refused before the driver (it
        // would be VUID-vkBindBufferMemory-memory-01508).
        // SAFETY: `other` is valid and unbound; a refused bind does not reach the driver.
        let refused = unsafe { alloc.bind_buffer_at(other, 0) };
        assert_eq!(refused, Err(MemoryAccessError::DedicatedToAnotherResource));
        // SAFETY: as above.
        let refused = unsafe { alloc.create_aliasing_buffer(&buffer_info(4096, usage), 0) };
        assert_eq!(refused, Err(MemoryAccessError::DedicatedToAnotherResource));
        // The owner binds, at offset 0 only.
        // SAFETY: `owner` is valid and unbound.
        unsafe {
            assert_eq!(
                alloc.bind_buffer_at(owner, 64),
                Err(MemoryAccessError::ResourceOutOfBounds {
                    local_offset: 64,
                    required: req.layout.size(),
                    size: alloc.size()
                })
            );
            alloc.bind_buffer_at(owner, 0).unwrap();
        }
        // SAFETY: nothing uses them; destroyed before their memory is freed.
        unsafe {
            d.destroy_buffer(owner, None);
            d.destroy_buffer(other, None);
        }
        drop((alloc, pool, allocator));
        assert_eq!(device.live_memory_objects(), 0);
    }
}

/// Host memory aligned for an import, freed on drop.
struct HostBlock {
    ptr: NonNull<u8>,
    layout: std::alloc::Layout,
}

impl HostBlock {
    fn new(size: usize, alignment: usize) -> Self {
        let layout = std::alloc::Layout::from_size_align(size, alignment).unwrap();
        // SAFETY: a non-zero size.
        let ptr = NonNull::new(unsafe { std::alloc::alloc_zeroed(layout) }).unwrap();
        Self { ptr, layout }
    }

    /// The host pointer `offset` bytes in.
    fn at(&self, offset: usize) -> NonNull<std::ffi::c_void> {
        assert!(offset < self.layout.size());
        // SAFETY: inside the allocation.
        NonNull::new(unsafe { self.ptr.as_ptr().add(offset) })
            .unwrap()
            .cast()
    }
}

impl Drop for HostBlock {
    fn drop(&mut self) {
        // SAFETY: allocated with this layout.
        unsafe { std::alloc::dealloc(self.ptr.as_ptr(), self.layout) };
    }
}

#[test]
fn host_imports_side_by_side_keep_their_bytes_and_overlaps_are_refused() {
    let first = external_context();
    let second = external_context();
    {
        let device = first.memory_device_with(external_features());
        let other_device = second.memory_device_with(external_features());
        let allocator = StandardMemoryAllocator::new_default(device.clone());
        let other = StandardMemoryAllocator::new_default(other_device.clone());
        let page = min_imported_host_pointer_alignment(&device)
            .unwrap()
            .as_devicesize() as usize;
        let host = HostBlock::new(8 * page, page);
        let import_at = |offset: usize| {
            // SAFETY: (every import below) `host` is a live host allocation of 8 pages that
            // outlives every import of it, and the host reaches imported bytes only through
            // the imports while they live.
            unsafe { ExternalMemoryImport::host_pointer(host.at(offset)) }
        };
        let memory_type = import_at(0)
            .memory_type_bits(&device)
            .unwrap()
            .trailing_zeros();
        let import = |a: &StandardMemoryAllocator, offset: usize, pages: usize| {
            a.import_memory(
                import_at(offset),
                memory_type,
                (pages * page) as u64,
                None,
                &Default::default(),
            )
        };
        let overlaps = |r: Result<MemoryAlloc, AllocationError>| {
            matches!(
                r,
                Err(AllocationError::Memory(
                    MemoryObjectError::ImportOverlaps { .. }
                ))
            )
        };
        // Pages [2, 4) and [4, 6): side by side.
        let mut left = import(&allocator, 2 * page, 2).unwrap();
        let mut right = import(&allocator, 4 * page, 2).unwrap();
        assert_eq!(allocator.statistics().total.dedicated_count, 2);
        assert_eq!(device.live_memory_bytes(), 4 * page as u64);
        let (l, r) = (pattern(1, 2 * page), pattern(2, 2 * page));
        left.write(0, &l).unwrap();
        right.write(0, &r).unwrap();
        let mut back = vec![0u8; 2 * page];
        left.read(0, &mut back).unwrap();
        assert!(back == l, "the left import lost bytes to its neighbour");
        right.read(0, &mut back).unwrap();
        assert!(back == r, "the right import lost bytes to its neighbour");
        // Any overlap, by one page across the boundary, or around both, or from another
        // device, is refused while they live; nothing is allocated for it.
        assert!(overlaps(import(&allocator, 3 * page, 2)));
        assert!(overlaps(import(&allocator, page, 2)));
        assert!(overlaps(import(&allocator, 5 * page, 1)));
        assert!(overlaps(import(&allocator, 0, 8)));
        assert!(overlaps(import(&other, 2 * page, 2)));
        // Through the user's own chain too.
        let chained = vk::ImportMemoryHostPointerInfoEXT::default()
            .handle_type(vk::ExternalMemoryHandleTypeFlags::HOST_ALLOCATION_EXT)
            .host_pointer(host.at(3 * page).as_ptr());
        let refused = MemoryObject::allocate(
            device.clone(),
            &MemoryObjectCreateInfo {
                size: page as u64,
                memory_type_index: memory_type,
                // SAFETY: a valid chain for this one call (refused before the driver).
                next: unsafe { AllocateNext::new(&chained as *const _ as *const _) },
                ..Default::default()
            },
        );
        assert!(
            matches!(refused, Err(MemoryObjectError::ImportOverlaps { .. })),
            "{refused:?}"
        );
        assert_eq!(device.live_memory_objects(), 2);
        assert_eq!(other_device.live_memory_objects(), 0);
        // The pages next to them are free to import.
        let head = import(&allocator, 0, 2).unwrap();
        let tail = import(&other, 6 * page, 2).unwrap();
        drop(left);
        // Once the left import is gone, its pages import again (on the other device too),
        // and show what was written through the first import.
        let again = import(&other, 2 * page, 2).unwrap();
        again.read(0, &mut back).unwrap();
        assert!(
            back == l,
            "the host memory lost what the first import wrote"
        );
        assert!(overlaps(import(&allocator, 3 * page, 2)));
        drop((right, head, tail, again));
        for a in [&allocator, &other] {
            let total = a.statistics().total;
            assert_eq!((total.allocation_count, total.dedicated_count), (0, 0));
        }
        assert_eq!(device.live_memory_bytes(), 0);
        assert_eq!(other_device.live_memory_bytes(), 0);
        // All of it again, in one import.
        drop(import(&allocator, 0, 8).unwrap());
        drop((allocator, other));
    }
}

#[test]
fn exports_of_block_and_dedicated_allocations_say_where_the_bytes_are() {
    let exporter = external_context();
    let importer = external_context();
    {
        let device1 = exporter.memory_device_with(external_features());
        let device2 = importer.memory_device_with(external_features());
        let types = device1.memory_properties().memory_types.len();
        // SAFETY: lavapipe exports opaque fds; no resource is bound to this memory.
        let export = unsafe { ExportHandleTypes::new(OPAQUE_FD) };
        let allocator1 = StandardMemoryAllocator::new(
            device1.clone(),
            GenericMemoryAllocatorCreateInfo {
                export_handle_types: vec![export; types],
                ..Default::default()
            },
        )
        .unwrap();
        let allocator2 = StandardMemoryAllocator::new_default(device2.clone());
        let memory_type = host_visible_type(&device1);
        let layout = DeviceLayout::from_size_alignment(4096, 256).unwrap();
        let mut first = allocator1
            .allocate_from_type(
                memory_type,
                layout,
                AllocationType::Linear,
                &Default::default(),
            )
            .unwrap();
        let mut second = allocator1
            .allocate_from_type(
                memory_type,
                layout,
                AllocationType::Linear,
                &Default::default(),
            )
            .unwrap();
        assert_eq!(first.memory(), second.memory(), "one block");
        assert!(!second.is_dedicated());
        let (a, b) = (pattern(7, 4096), pattern(8, 4096));
        first.write(0, &a).unwrap();
        second.write(0, &b).unwrap();
        let before = allocator1.statistics().total;
        // Exported twice: two descriptors of the one block, each naming the allocation.
        let x = second.export_fd(OPAQUE_FD).unwrap();
        let y = second.export_fd(OPAQUE_FD).unwrap();
        assert_eq!(
            allocator1.statistics().total,
            before,
            "exports change no statistics"
        );
        for e in [&x, &y] {
            assert_eq!(e.offset, second.offset());
            assert_eq!(e.size, second.size());
            assert_eq!(e.memory_type_index, memory_type);
            assert!(e.memory_size >= e.offset + e.size);
        }
        let import = |e: ExportedFd| {
            // SAFETY: an opaque fd of this physical device, imported once with the
            // exporter's memory type and size; the bytes it shares are only read below
            // while nothing writes them.
            let import = unsafe { ExternalMemoryImport::fd(OPAQUE_FD, e.fd.into_raw_fd()) };
            allocator2
                .import_memory(
                    import,
                    e.memory_type_index,
                    e.memory_size,
                    None,
                    &Default::default(),
                )
                .unwrap()
        };
        let (x_offset, y_offset) = (x.offset, y.offset);
        let ix = import(x);
        let iy = import(y);
        assert_ne!(
            ix.memory(),
            iy.memory(),
            "each import is a memory object of its own"
        );
        assert_eq!(allocator2.statistics().total.dedicated_count, 2);
        let mut read = vec![0u8; 4096];
        for (i, offset) in [(&ix, x_offset), (&iy, y_offset)] {
            i.read(offset, &mut read).unwrap();
            assert!(
                read == b,
                "the import does not show the exported allocation"
            );
            // The whole block came along: the neighbour's bytes too (the documented promise).
            i.read(first.offset(), &mut read).unwrap();
            assert!(read == a);
        }
        // A dedicated allocation is exported from offset 0, with the object's size.
        let dedicated = allocator1
            .allocate_dedicated(memory_type, 8192, None, &Default::default())
            .unwrap();
        let z = dedicated.export_fd(OPAQUE_FD).unwrap();
        assert_eq!((z.offset, z.size, z.memory_size), (0, 8192, 8192));
        drop(z);

        // Misuse is a clear error: several handle types at once, a type not exportable,
        // and an allocator that claims no export.
        let both = OPAQUE_FD | vk::ExternalMemoryHandleTypeFlags::DMA_BUF_EXT;
        assert!(matches!(
            second.export_fd(both),
            Err(MemoryObjectError::NotExportable { .. })
        ));
        assert!(matches!(
            second.export_fd(vk::ExternalMemoryHandleTypeFlags::DMA_BUF_EXT),
            Err(MemoryObjectError::NotExportable { .. })
        ));
        assert!(matches!(
            second.export_fd(vk::ExternalMemoryHandleTypeFlags::empty()),
            Err(MemoryObjectError::NotExportable { .. })
        ));
        assert!(matches!(
            ix.export_fd(OPAQUE_FD),
            Err(MemoryObjectError::NotExportable { .. })
        ));
        let plain = StandardMemoryAllocator::new_default(exporter.memory_device());
        let unexported = plain
            .allocate_from_type(
                memory_type,
                layout,
                AllocationType::Linear,
                &Default::default(),
            )
            .unwrap();
        assert_eq!(
            unexported.export_fd(OPAQUE_FD).err(),
            Some(MemoryObjectError::ExtensionNotEnabled(
                "VK_KHR_external_memory_fd"
            ))
        );
        drop((unexported, plain));

        // Freed on the exporter: the imports keep the payload.
        drop((first, second, dedicated, allocator1));
        assert_eq!(device1.live_memory_objects(), 0);
        iy.read(y_offset, &mut read).unwrap();
        assert!(read == b);
        drop((ix, iy));
        let total = allocator2.statistics().total;
        assert_eq!((total.allocation_count, total.dedicated_count), (0, 0));
        assert_eq!(device2.live_memory_bytes(), 0);
        drop(allocator2);
        assert_eq!(device2.live_memory_objects(), 0);
    }
}

#[test]
fn user_chains_that_repeat_loop_or_import_twice_are_refused_before_the_driver() {
    let ctx = external_context();
    {
        let device = ctx.memory_device_with(external_features());
        let allocator = StandardMemoryAllocator::new_default(device.clone());
        let memory_type = host_visible_type(&device);
        let allocate = |next: *const std::ffi::c_void, import: Option<ExternalMemoryImport>| {
            MemoryObject::allocate(
                device.clone(),
                &MemoryObjectCreateInfo {
                    size: 1 << 16,
                    memory_type_index: memory_type,
                    import,
                    // SAFETY: every chain below is refused before any structure reaches the
                    // driver (the walk reads the chain only), and outlives the call.
                    next: unsafe { AllocateNext::new(next) },
                    ..Default::default()
                },
            )
        };
        let repeated = |s| Some(MemoryObjectError::RepeatedChainStructure(s));
        let export_s = vk::StructureType::EXPORT_MEMORY_ALLOCATE_INFO;

        // A structure that points at itself: the walk ends (it used to loop forever).
        let mut looped = vk::ExportMemoryAllocateInfo::default().handle_types(OPAQUE_FD);
        looped.p_next = &looped as *const _ as *const _;
        let r = allocate(&looped as *const _ as *const _, None);
        assert_eq!(r.err(), repeated(export_s));
        // A loop of two.
        let mut a = vk::ExportMemoryAllocateInfo::default().handle_types(OPAQUE_FD);
        let b = vk::MemoryAllocateFlagsInfo {
            p_next: &a as *const _ as *const _,
            ..Default::default()
        };
        a.p_next = &b as *const _ as *const _;
        let r = allocate(&a as *const _ as *const _, None);
        assert_eq!(r.err(), repeated(export_s));
        // A loop of the one structure type Vulkan lets a chain hold several of (Metal object
        // exports): caught by the structures it meets again.
        let mut metal_a = vk::ExportMetalObjectCreateInfoEXT::default();
        let metal_b = vk::ExportMetalObjectCreateInfoEXT {
            p_next: &metal_a as *const _ as *const _,
            ..Default::default()
        };
        metal_a.p_next = &metal_b as *const _ as *const _;
        let r = allocate(&metal_a as *const _ as *const _, None);
        let metal_s = vk::StructureType::EXPORT_METAL_OBJECT_CREATE_INFO_EXT;
        assert_eq!(r.err(), repeated(metal_s));
        // The same structure type twice (Vulkan forbids it), another one between them.
        let second = vk::ExportMemoryAllocateInfo::default().handle_types(OPAQUE_FD);
        let flags = vk::MemoryAllocateFlagsInfo {
            p_next: &second as *const _ as *const _,
            ..Default::default()
        };
        let first = vk::ExportMemoryAllocateInfo {
            p_next: &flags as *const _ as *const _,
            ..Default::default()
        }
        .handle_types(OPAQUE_FD);
        let r = allocate(&first as *const _ as *const _, None);
        assert_eq!(r.err(), repeated(export_s));
        // Through a pool, for its blocks: the same error, and nothing is left.
        let pool = allocator
            .create_pool::<FreeListAllocator>(&PoolCreateInfo {
                memory_type: PoolMemoryType::Index(memory_type),
                block_size: 1 << 20,
                // SAFETY: refused before the driver, as above; `looped` outlives the pool.
                memory_allocate_next: unsafe { AllocateNext::new(&looped as *const _ as *const _) },
                ..Default::default()
            })
            .unwrap();
        let requirements = AllocationRequirements {
            layout: DeviceLayout::from_size_alignment(256, 16).unwrap(),
            memory_type_bits: 1 << memory_type,
            prefers_dedicated_allocation: false,
            requires_dedicated_allocation: false,
        };
        let r = pool.allocate(
            requirements,
            AllocationType::Linear,
            &Default::default(),
            None,
        );
        assert_eq!(
            r.err(),
            Some(AllocationError::Memory(
                MemoryObjectError::RepeatedChainStructure(export_s)
            ))
        );

        // An import by the crate and another in the user's chain: two imports in one call
        // (VUID-VkMemoryAllocateInfo-None-06657), of either kind.
        let page = min_imported_host_pointer_alignment(&device)
            .unwrap()
            .as_devicesize() as usize;
        let host = HostBlock::new(1 << 16, page);
        // SAFETY: a live host allocation of 64 KiB; refused before the driver.
        let host_import = unsafe { ExternalMemoryImport::host_pointer(host.at(0)) };
        let host_type = host_import
            .memory_type_bits(&device)
            .unwrap()
            .trailing_zeros();
        let user_fd = vk::ImportMemoryFdInfoKHR::default()
            .handle_type(OPAQUE_FD)
            .fd(-1);
        let r = MemoryObject::allocate(
            device.clone(),
            &MemoryObjectCreateInfo {
                size: 1 << 16,
                memory_type_index: host_type,
                import: Some(host_import),
                // SAFETY: refused before the driver; outlives the call.
                next: unsafe { AllocateNext::new(&user_fd as *const _ as *const _) },
                ..Default::default()
            },
        );
        assert_eq!(
            r.err(),
            Some(MemoryObjectError::DuplicateChainStructure(
                vk::StructureType::IMPORT_MEMORY_FD_INFO_KHR
            ))
        );
        let user_host = vk::ImportMemoryHostPointerInfoEXT::default()
            .handle_type(vk::ExternalMemoryHandleTypeFlags::HOST_ALLOCATION_EXT)
            .host_pointer(host.at(0).as_ptr());
        // SAFETY: a number that is no open descriptor; refused before the driver.
        let fd_import = unsafe { ExternalMemoryImport::fd(OPAQUE_FD, -1) };
        let r = MemoryObject::allocate(
            device.clone(),
            &MemoryObjectCreateInfo {
                size: 1 << 16,
                memory_type_index: host_type,
                import: Some(fd_import),
                // SAFETY: refused before the driver; outlives the call.
                next: unsafe { AllocateNext::new(&user_host as *const _ as *const _) },
                ..Default::default()
            },
        );
        assert_eq!(
            r.err(),
            Some(MemoryObjectError::DuplicateChainStructure(
                vk::StructureType::IMPORT_MEMORY_HOST_POINTER_INFO_EXT
            ))
        );
        // The crate's dedicated structure and the user's: refused too.
        let usage = vk::BufferUsageFlags::TRANSFER_DST;
        // SAFETY: a valid create info; destroyed below, never bound.
        let buffer = unsafe { ctx.device.create_buffer(&buffer_info(4096, usage), None) }.unwrap();
        let user_dedicated = vk::MemoryDedicatedAllocateInfo::default().buffer(buffer);
        let r = MemoryObject::allocate(
            device.clone(),
            &MemoryObjectCreateInfo {
                size: 1 << 16,
                memory_type_index: memory_type,
                // SAFETY: refused before the driver.
                dedicated: Some(unsafe { DedicatedAllocation::buffer(buffer) }),
                // SAFETY: refused before the driver; outlives the call.
                next: unsafe { AllocateNext::new(&user_dedicated as *const _ as *const _) },
                ..Default::default()
            },
        );
        assert_eq!(
            r.err(),
            Some(MemoryObjectError::DuplicateChainStructure(
                vk::StructureType::MEMORY_DEDICATED_ALLOCATE_INFO
            ))
        );
        // SAFETY: never bound nor used.
        unsafe { ctx.device.destroy_buffer(buffer, None) };

        // Nothing of it was allocated or counted, and the host range is free to import.
        assert_eq!(device.live_memory_objects(), 0);
        assert_eq!(device.live_memory_bytes(), 0);
        assert_eq!(pool.statistics().total.block_count, 0);
        let imported = allocator
            .import_memory(host_import, host_type, 1 << 16, None, &Default::default())
            .unwrap();
        drop((imported, pool, allocator));
        assert_eq!(device.live_memory_objects(), 0);
    }
}

#[test]
fn a_moved_aliasing_allocation_keeps_its_kind_alignment_and_pages() {
    let ctx = TestContext::new();
    let d = &ctx.device;
    {
        let device = ctx.memory_device();
        let allocator = StandardMemoryAllocator::new_default(device.clone());
        let page = device.buffer_image_granularity().as_devicesize();
        let pool = allocator
            .create_pool::<FreeListAllocator>(&PoolCreateInfo {
                memory_type: PoolMemoryType::Find {
                    memory_type_bits: u32::MAX,
                    usage: MemoryUsage::Upload,
                },
                block_size: 1 << 20,
                block_arenas: Some(1),
                ..Default::default()
            })
            .unwrap();
        let upload = AllocationCreateInfo {
            usage: MemoryUsage::Upload,
            ..Default::default()
        };
        let usage = vk::BufferUsageFlags::TRANSFER_DST;
        let image = image_info(16, vk::Format::R8G8B8A8_UNORM, vk::ImageTiling::OPTIMAL);
        // SAFETY: a valid create info; a probe, destroyed below, never bound.
        let probe = unsafe { d.create_image(&image, None) }.unwrap();
        // SAFETY: a valid, unbound image.
        let image_req = unsafe { AllocationRequirements::for_image(&device, probe) }.unwrap();
        // SAFETY: unused.
        unsafe { d.destroy_image(probe, None) };
        let alignment = image_req
            .layout
            .alignment()
            .max(DeviceAlignment::new(256).unwrap());
        let requirements = |size: u64, align: DeviceAlignment| AllocationRequirements {
            layout: DeviceLayout::new(size, align).unwrap(),
            memory_type_bits: u32::MAX,
            prefers_dedicated_allocation: false,
            requires_dedicated_allocation: false,
        };
        // Block 1: Linear fillers at a small alignment, sizes off the page.
        let filler = 64 * 1024 - 40;
        let mut fillers: Vec<MemoryAlloc> = (0..16)
            .map(|_| {
                pool.allocate(
                    requirements(filler, DeviceAlignment::new(8).unwrap()),
                    AllocationType::Linear,
                    &upload,
                    None,
                )
                .unwrap()
            })
            .collect();
        let block1 = fillers[0].memory();
        assert!(fillers.iter().all(|f| f.memory() == block1));
        // Block 2: the aliasing allocation, alone once its neighbour goes.
        let size = image_req.layout.size().max(4096) + 100;
        let spacer = pool
            .allocate(
                requirements(1 << 19, alignment),
                AllocationType::Linear,
                &upload,
                None,
            )
            .unwrap();
        let mut x = pool
            .allocate(
                requirements(size, alignment),
                AllocationType::Unknown,
                &upload,
                None,
            )
            .unwrap();
        assert_ne!(x.memory(), block1);
        drop(spacer);
        // Room in block 1, between Linear neighbours.
        fillers.remove(7);
        fillers.remove(7);
        let data = pattern(5, size as usize);
        x.write(0, &data).unwrap();
        // SAFETY: valid create infos; destroyed before the move completes.
        let (old_buffer, old_image) = unsafe {
            (
                x.create_aliasing_buffer(&buffer_info(4096, usage), 0)
                    .unwrap(),
                x.create_aliasing_image(&image, 0).unwrap(),
            )
        };
        let mut defrag = pool.defragmentation(&Default::default());
        defrag.add(&mut x, alignment).unwrap();
        let mut pass = defrag.next_pass().expect("the lone allocation moves");
        let index = pass.moves().next().unwrap().index();
        let dst = pass.get(index).unwrap().destination();
        assert_eq!(
            dst.memory(),
            block1,
            "moved into the room between the fillers"
        );
        assert_eq!(dst.allocation_type(), AllocationType::Unknown);
        assert_eq!(dst.offset() % alignment.as_devicesize(), 0);
        for f in &fillers {
            let (a0, a1) = pages(dst.offset(), dst.size(), page);
            let (b0, b1) = pages(f.offset(), f.size(), page);
            assert!(
                a1 <= b0 || b1 <= a0,
                "the destination shares a page with {f:?}"
            );
        }
        // New resources alias at the destination, both kinds.
        // SAFETY: valid create infos; destroyed before the allocation is dropped.
        let (new_buffer, new_image) = unsafe {
            (
                dst.create_aliasing_buffer(&buffer_info(4096, usage), 0)
                    .unwrap(),
                dst.create_aliasing_image(&image, 0).unwrap(),
            )
        };
        // The old resources are done with before the source is freed.
        // SAFETY: never used.
        unsafe {
            d.destroy_buffer(old_buffer, None);
            d.destroy_image(old_image, None);
        }
        let dst_ptr = dst.mapped_ptr().unwrap();
        // SAFETY: `size` bytes of the destination, which nothing else uses until completed.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), dst_ptr.as_ptr(), data.len()) };
        pass.complete(index, &mut x).unwrap();
        drop(pass);
        defrag.finish();
        assert_eq!(x.memory(), block1);
        assert_eq!(x.allocation_type(), AllocationType::Unknown);
        let mut back = vec![0u8; size as usize];
        x.read(0, &mut back).unwrap();
        assert!(back == data);
        // SAFETY: never used; destroyed before their memory is freed.
        unsafe {
            d.destroy_buffer(new_buffer, None);
            d.destroy_image(new_image, None);
        }
        drop((x, fillers));
        assert_eq!(pool.statistics().total.allocation_count, 0);
        drop((pool, allocator));
        assert_eq!(device.live_memory_objects(), 0);
    }
}

#[test]
fn debug_fill_patterns_never_overwrite_imported_memory() {
    let exporter = external_context();
    let importer = external_context();
    {
        let device1 = exporter.memory_device_with(external_features());
        let device2 = importer.memory_device_with(external_features());
        // The importing allocator fills new allocations with a pattern (and margins are on):
        // an import's bytes are the payload, not a new allocation's garbage.
        let debug = GenericMemoryAllocatorCreateInfo {
            debug: DebugOptions {
                fill_patterns: true,
                margin: 64,
                ..Default::default()
            },
            ..Default::default()
        };
        let allocator2 = StandardMemoryAllocator::new(device2.clone(), debug.clone()).unwrap();

        // A host allocation the application filled.
        let page = min_imported_host_pointer_alignment(&device2)
            .unwrap()
            .as_devicesize() as usize;
        let size = page.max(1 << 16);
        let host = HostBlock::new(size, page);
        let data = pattern(9, size);
        // SAFETY: the host block is ours and nothing imports it yet.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), host.ptr.as_ptr(), size) };
        // SAFETY: a live host allocation of `size` bytes that outlives the import.
        let import = unsafe { ExternalMemoryImport::host_pointer(host.at(0)) };
        let host_type = import.memory_type_bits(&device2).unwrap().trailing_zeros();
        let imported = allocator2
            .import_memory(import, host_type, size as u64, None, &Default::default())
            .unwrap();
        let mut back = vec![0u8; size];
        imported.read(0, &mut back).unwrap();
        assert!(back == data, "the import overwrote the host's data");
        drop(imported);
        // SAFETY: the import is gone; the block is ours again.
        let after = unsafe { std::slice::from_raw_parts(host.ptr.as_ptr(), size) };
        assert!(
            after == data.as_slice(),
            "freeing the import overwrote the host's data"
        );

        // Memory exported by another device.
        let types = device1.memory_properties().memory_types.len();
        // SAFETY: lavapipe exports opaque fds; no resource is bound to this memory.
        let export = unsafe { ExportHandleTypes::new(OPAQUE_FD) };
        let allocator1 = StandardMemoryAllocator::new(
            device1.clone(),
            GenericMemoryAllocatorCreateInfo {
                export_handle_types: vec![export; types],
                ..Default::default()
            },
        )
        .unwrap();
        let mut source = allocator1
            .allocate_dedicated(
                host_visible_type(&device1),
                1 << 16,
                None,
                &Default::default(),
            )
            .unwrap();
        let payload = pattern(10, 1 << 16);
        source.write(0, &payload).unwrap();
        let exported = source.export_fd(OPAQUE_FD).unwrap();
        // SAFETY: an opaque fd of this physical device, imported once with the exporter's
        // memory type and size; the exporter does not touch the bytes meanwhile.
        let import = unsafe { ExternalMemoryImport::fd(OPAQUE_FD, exported.fd.into_raw_fd()) };
        let imported = allocator2
            .import_memory(
                import,
                exported.memory_type_index,
                exported.memory_size,
                None,
                &Default::default(),
            )
            .unwrap();
        let mut back = vec![0u8; 1 << 16];
        imported.read(0, &mut back).unwrap();
        assert!(back == payload, "the import overwrote the exported payload");
        drop(imported);
        source.read(0, &mut back).unwrap();
        assert!(
            back == payload,
            "freeing the import overwrote the exporter's bytes"
        );
        drop((source, allocator1, allocator2));
        assert_eq!(device1.live_memory_objects(), 0);
        assert_eq!(device2.live_memory_objects(), 0);
    }
}

thread_local! {
    static REAL_MAP: std::cell::Cell<Option<vk::PFN_vkMapMemory>> =
        const { std::cell::Cell::new(None) };
    static FAIL_MAP: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

unsafe extern "system" fn failing_map_memory(
    device: vk::Device,
    memory: vk::DeviceMemory,
    offset: vk::DeviceSize,
    size: vk::DeviceSize,
    flags: vk::MemoryMapFlags,
    data: *mut *mut std::ffi::c_void,
) -> vk::Result {
    if FAIL_MAP.take() {
        return vk::Result::ERROR_MEMORY_MAP_FAILED;
    }
    let real = REAL_MAP.get().expect("real vkMapMemory");
    // SAFETY: forwarded unchanged.
    unsafe { real(device, memory, offset, size, flags, data) }
}

/// The file `fd` stands for in this process (device and inode), if it is open.
fn open_file(fd: i32) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(format!("/proc/self/fd/{fd}")).ok()?;
    Some((m.dev(), m.ino()))
}

#[test]
fn an_import_whose_mapping_fails_has_consumed_its_fd_and_gives_back_the_rest() {
    let exporter = external_context();
    let importer = external_context();
    {
        let device1 = exporter.memory_device_with(external_features());
        let device2 = importer.memory_device_with_v1_0(
            |v1_0| {
                REAL_MAP.set(Some(v1_0.map_memory));
                v1_0.map_memory = failing_map_memory;
            },
            external_features(),
        );
        let allocator2 = StandardMemoryAllocator::new_default(device2.clone());
        let types = device1.memory_properties().memory_types.len();
        // SAFETY: lavapipe exports opaque fds; no resource is bound to this memory.
        let export = unsafe { ExportHandleTypes::new(OPAQUE_FD) };
        let allocator1 = StandardMemoryAllocator::new(
            device1.clone(),
            GenericMemoryAllocatorCreateInfo {
                export_handle_types: vec![export; types],
                ..Default::default()
            },
        )
        .unwrap();
        let source = allocator1
            .allocate_dedicated(
                host_visible_type(&device1),
                1 << 16,
                None,
                &Default::default(),
            )
            .unwrap();
        let exported = source.export_fd(OPAQUE_FD).unwrap();
        let (memory_type, memory_size) = (exported.memory_type_index, exported.memory_size);
        let fd = exported.fd.into_raw_fd();
        let file = open_file(fd).expect("the exported fd is open");
        FAIL_MAP.set(true);
        // SAFETY: an opaque fd of this physical device, with the exporter's type and size.
        let import = unsafe { ExternalMemoryImport::fd(OPAQUE_FD, fd) };
        let result =
            allocator2.import_memory(import, memory_type, memory_size, None, &Default::default());
        assert_eq!(
            result.err(),
            Some(AllocationError::MapFailed(
                vk::Result::ERROR_MEMORY_MAP_FAILED
            ))
        );
        // The import itself succeeded: the driver took the descriptor and closed it with the
        // memory object (the documented exception to "on failure it is still the caller's").
        assert_ne!(open_file(fd), Some(file), "the fd is still the caller's");
        assert_eq!(device2.live_memory_objects(), 0);
        assert_eq!(device2.live_memory_bytes(), 0);
        assert_eq!(allocator2.statistics().total.dedicated_count, 0);

        // A host import: the host memory stays the application's, and its claim is given
        // back, so the same range imports at once.
        let page = min_imported_host_pointer_alignment(&device2)
            .unwrap()
            .as_devicesize() as usize;
        let host = HostBlock::new(page.max(1 << 16), page);
        // SAFETY: a live host allocation that outlives the imports.
        let import = unsafe { ExternalMemoryImport::host_pointer(host.at(0)) };
        let host_type = import.memory_type_bits(&device2).unwrap().trailing_zeros();
        let size = host.layout.size() as u64;
        FAIL_MAP.set(true);
        let result = allocator2.import_memory(import, host_type, size, None, &Default::default());
        assert_eq!(
            result.err(),
            Some(AllocationError::MapFailed(
                vk::Result::ERROR_MEMORY_MAP_FAILED
            ))
        );
        assert_eq!(device2.live_memory_objects(), 0);
        let imported = allocator2
            .import_memory(import, host_type, size, None, &Default::default())
            .unwrap();
        drop((imported, source, allocator1, allocator2));
        assert_eq!(device1.live_memory_objects(), 0);
        assert_eq!(device2.live_memory_objects(), 0);
    }
}

/// Panics in `allocated` once, when armed; counts `freeing`.
#[derive(Default)]
struct PanickyCallbacks {
    armed: std::sync::atomic::AtomicBool,
    freed: std::sync::atomic::AtomicU32,
}

impl DeviceMemoryCallbacks for PanickyCallbacks {
    fn allocated(&self, _: u32, _: vk::DeviceMemory, _: DeviceSize) {
        if self.armed.swap(false, std::sync::atomic::Ordering::SeqCst) {
            panic!("a misbehaving callback");
        }
    }

    fn freeing(&self, _: u32, _: vk::DeviceMemory, _: DeviceSize) {
        self.freed.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

#[test]
fn a_panicking_callback_leaks_no_import_and_keeps_its_host_range_claimed_until_freed() {
    let ctx = external_context();
    {
        let device = ctx.memory_device_with(external_features());
        let callbacks = std::sync::Arc::new(PanickyCallbacks::default());
        device.set_memory_callbacks(Some(callbacks.clone()));
        let allocator = StandardMemoryAllocator::new_default(device.clone());
        let page = min_imported_host_pointer_alignment(&device)
            .unwrap()
            .as_devicesize() as usize;
        let host = HostBlock::new(page.max(1 << 16), page);
        let size = host.layout.size() as u64;
        // SAFETY: a live host allocation that outlives the imports.
        let import = unsafe { ExternalMemoryImport::host_pointer(host.at(0)) };
        let host_type = import.memory_type_bits(&device).unwrap().trailing_zeros();
        callbacks
            .armed
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            allocator.import_memory(import, host_type, size, None, &Default::default())
        }));
        assert!(unwound.is_err(), "the callback panicked");
        // The memory object went with the unwinding: nothing is counted or alive, and the
        // host range is free again because no import of it lives.
        assert_eq!(device.live_memory_objects(), 0, "the import leaked");
        assert_eq!(device.live_memory_bytes(), 0);
        assert_eq!(callbacks.freed.load(std::sync::atomic::Ordering::SeqCst), 1);
        let imported = allocator
            .import_memory(import, host_type, size, None, &Default::default())
            .unwrap();
        assert!(matches!(
            allocator.import_memory(import, host_type, size, None, &Default::default()),
            Err(AllocationError::Memory(
                MemoryObjectError::ImportOverlaps { .. }
            ))
        ));
        drop((imported, allocator));
        device.set_memory_callbacks(None);
        assert_eq!(device.live_memory_objects(), 0);
    }
}

#[test]
fn bad_import_arguments_are_errors_before_the_driver() {
    let ctx = external_context();
    {
        let device = ctx.memory_device_with(external_features());
        let allocator = StandardMemoryAllocator::new_default(device.clone());
        let page = min_imported_host_pointer_alignment(&device)
            .unwrap()
            .as_devicesize() as usize;
        let host = HostBlock::new(page.max(1 << 16), page);
        let size = host.layout.size() as u64;
        // SAFETY: a live host allocation that outlives every import below.
        let host_import = unsafe { ExternalMemoryImport::host_pointer(host.at(0)) };
        // SAFETY: a number that is no open descriptor; every call below is refused before
        // the driver sees it.
        let fd_import = unsafe { ExternalMemoryImport::fd(OPAQUE_FD, -1) };
        let host_type = host_import
            .memory_type_bits(&device)
            .unwrap()
            .trailing_zeros();
        let types = device.memory_properties().memory_types.len() as u32;
        let heap_size = device
            .memory_properties()
            .heap_size_of_type(host_type)
            .unwrap();
        for import in [host_import, fd_import] {
            let r = allocator.import_memory(import, types, size, None, &Default::default());
            assert!(
                matches!(r, Err(AllocationError::MemoryTypeIndexOutOfRange { .. })),
                "{r:?}"
            );
            let r = allocator.import_memory(import, u32::MAX, size, None, &Default::default());
            assert!(
                matches!(r, Err(AllocationError::MemoryTypeIndexOutOfRange { .. })),
                "{r:?}"
            );
            let r = allocator.import_memory(import, host_type, 0, None, &Default::default());
            assert_eq!(
                r.err(),
                Some(AllocationError::Layout(LayoutError::ZeroSize))
            );
            for huge in [heap_size + page as u64, u64::MAX - page as u64 + 1] {
                let r = allocator.import_memory(import, host_type, huge, None, &Default::default());
                assert!(
                    matches!(r, Err(AllocationError::SizeExceedsHeap { .. })),
                    "{huge}: {r:?}"
                );
            }
            for priority in [f32::NAN, -1.0, 2.0] {
                let r = allocator.import_memory(
                    import,
                    host_type,
                    size,
                    None,
                    &AllocationCreateInfo {
                        priority: Some(priority),
                        ..Default::default()
                    },
                );
                assert!(
                    matches!(r, Err(AllocationError::InvalidPriority(_))),
                    "{r:?}"
                );
            }
        }
        // A host import of a type the pointer does not allow.
        let allowed = host_import.memory_type_bits(&device).unwrap();
        if let Some(other) = (0..types).find(|t| allowed & (1 << t) == 0) {
            let r = allocator.import_memory(host_import, other, size, None, &Default::default());
            assert_eq!(
                r.err(),
                Some(AllocationError::Memory(
                    MemoryObjectError::ImportMemoryType {
                        index: other,
                        allowed
                    }
                ))
            );
        }
        assert_eq!(device.live_memory_objects(), 0);
        assert_eq!(device.live_memory_bytes(), 0);
        let total = allocator.statistics().total;
        assert_eq!((total.allocation_count, total.dedicated_count), (0, 0));
        // And the range still imports.
        drop(
            allocator
                .import_memory(host_import, host_type, size, None, &Default::default())
                .unwrap(),
        );
    }
}

#[test]
fn the_default_pools_keep_conflicting_kinds_off_shared_pages_under_a_64k_granularity() {
    // Random allocations and frees of the three kinds in the default block vectors (hot
    // path, arenas, kept blocks) of a GPU with a 64 KiB granularity: the kind checks of the
    // aliasing binds rely on no two live allocations of conflicting kinds sharing a page.
    let sim = support::Sim::new(support::GpuLayout::large_granularity());
    {
        let device = sim.memory_device();
        let page = device.buffer_image_granularity().as_devicesize();
        assert_eq!(page, 1 << 16);
        let allocator = StandardMemoryAllocator::new_default(device.clone());
        let kinds = [
            AllocationType::Unknown,
            AllocationType::Linear,
            AllocationType::NonLinear,
        ];
        let mut rng = common::Rng(0x5eed_a11a5);
        let mut live: Vec<MemoryAlloc> = Vec::new();
        for step in 0..600 {
            if !live.is_empty() && rng.below(3) == 0 {
                let i = rng.below(live.len() as u64) as usize;
                live.swap_remove(i);
                continue;
            }
            let kind = *rng.pick(&kinds);
            let size = rng.range(1, 3 * page);
            let alignment = 1 << rng.range(0, 13);
            let requirements = AllocationRequirements {
                layout: DeviceLayout::from_size_alignment(size, alignment).unwrap(),
                memory_type_bits: 1,
                prefers_dedicated_allocation: false,
                requires_dedicated_allocation: false,
            };
            let alloc = allocator
                .allocate(requirements, kind, &Default::default(), None)
                .unwrap();
            for other in &live {
                if other.memory() != alloc.memory() || !other.allocation_type().conflicts_with(kind)
                {
                    continue;
                }
                let (a0, a1) = pages(alloc.offset(), alloc.size(), page);
                let (b0, b1) = pages(other.offset(), other.size(), page);
                assert!(
                    a1 <= b0 || b1 <= a0,
                    "step {step}: {alloc:?} shares a page with {other:?}"
                );
            }
            live.push(alloc);
        }
        drop(live);
        assert_eq!(allocator.statistics().total.allocation_count, 0);
        drop((allocator, device));
        sim.assert_nothing_allocated();
    }
}

#[test]
fn aliasing_in_external_memory_takes_only_resources_made_for_it() {
    let ctx = external_context();
    let d = &ctx.device;
    {
        let device = ctx.memory_device_with(external_features());
        let types = device.memory_properties().memory_types.len();
        // SAFETY: lavapipe exports opaque fds for buffers and images; every resource bound
        // below is made with the external create info of this type (the refused ones are
        // never made).
        let export = unsafe { ExportHandleTypes::new(OPAQUE_FD) };
        let allocator = StandardMemoryAllocator::new(
            device.clone(),
            GenericMemoryAllocatorCreateInfo {
                export_handle_types: vec![export; types],
                ..Default::default()
            },
        )
        .unwrap();
        let usage = vk::BufferUsageFlags::TRANSFER_DST;
        let exportable = allocator
            .allocate_dedicated(
                host_visible_type(&device),
                1 << 16,
                None,
                &Default::default(),
            )
            .unwrap();
        let not_made_for = |resource| MemoryAccessError::NotCreatedForExternalMemory {
            export: OPAQUE_FD,
            import: vk::ExternalMemoryHandleTypeFlags::empty(),
            resource,
        };
        // A plain buffer and a plain image: refused before they are made (a bind would be
        // VUID-vkBindBufferMemory-memory-02726).
        let plain = buffer_info(4096, usage);
        // SAFETY: valid create infos; refused before anything is created.
        let refused = unsafe { exportable.create_aliasing_buffer(&plain, 0) };
        assert_eq!(
            refused,
            Err(not_made_for(vk::ExternalMemoryHandleTypeFlags::empty()))
        );
        let image = image_info(16, vk::Format::R8G8B8A8_UNORM, vk::ImageTiling::OPTIMAL);
        // SAFETY: as above.
        let refused = unsafe { exportable.create_aliasing_image(&image, 0) };
        assert_eq!(
            refused,
            Err(not_made_for(vk::ExternalMemoryHandleTypeFlags::empty()))
        );
        // Made for another handle type: refused too.
        let mut dma = vk::ExternalMemoryBufferCreateInfo::default()
            .handle_types(vk::ExternalMemoryHandleTypeFlags::DMA_BUF_EXT);
        let info = buffer_info(4096, usage).push_next(&mut dma);
        // SAFETY: as above.
        let refused = unsafe { exportable.create_aliasing_buffer(&info, 0) };
        assert_eq!(
            refused,
            Err(not_made_for(vk::ExternalMemoryHandleTypeFlags::DMA_BUF_EXT))
        );
        // Made for it: bound, both kinds (a dedicated allocation has no neighbours).
        let mut external = vk::ExternalMemoryBufferCreateInfo::default().handle_types(OPAQUE_FD);
        let info = buffer_info(4096, usage).push_next(&mut external);
        let mut external_image =
            vk::ExternalMemoryImageCreateInfo::default().handle_types(OPAQUE_FD);
        let image_ok = image.push_next(&mut external_image);
        // SAFETY: valid create infos; destroyed before the allocation is dropped.
        let (buffer, img) = unsafe {
            (
                exportable.create_aliasing_buffer(&info, 0).unwrap(),
                exportable.create_aliasing_image(&image_ok, 0).unwrap(),
            )
        };

        // Imported host memory: a resource made for host allocations only.
        let page = min_imported_host_pointer_alignment(&device)
            .unwrap()
            .as_devicesize() as usize;
        let host = HostBlock::new(page.max(1 << 16), page);
        // SAFETY: a live host allocation that outlives the import.
        let import = unsafe { ExternalMemoryImport::host_pointer(host.at(0)) };
        let host_type = import.memory_type_bits(&device).unwrap().trailing_zeros();
        let imported = allocator
            .import_memory(
                import,
                host_type,
                host.layout.size() as u64,
                None,
                &Default::default(),
            )
            .unwrap();
        assert_eq!(imported.memory_type_index(), host_type);
        let mut opaque = vk::ExternalMemoryBufferCreateInfo::default().handle_types(OPAQUE_FD);
        let info = buffer_info(4096, usage).push_next(&mut opaque);
        // SAFETY: as above.
        let refused = unsafe { imported.create_aliasing_buffer(&info, 0) };
        assert_eq!(
            refused,
            Err(MemoryAccessError::NotCreatedForExternalMemory {
                export: vk::ExternalMemoryHandleTypeFlags::empty(),
                import: vk::ExternalMemoryHandleTypeFlags::HOST_ALLOCATION_EXT,
                resource: OPAQUE_FD,
            })
        );
        let mut host_made = vk::ExternalMemoryBufferCreateInfo::default()
            .handle_types(vk::ExternalMemoryHandleTypeFlags::HOST_ALLOCATION_EXT);
        let info = buffer_info(4096, usage).push_next(&mut host_made);
        // SAFETY: a valid create info; destroyed before the import is dropped.
        let host_buffer = unsafe { imported.create_aliasing_buffer(&info, 0) }.unwrap();
        // SAFETY: never used; destroyed before their memory is freed.
        unsafe {
            d.destroy_buffer(buffer, None);
            d.destroy_image(img, None);
            d.destroy_buffer(host_buffer, None);
        }
        drop((exportable, imported, allocator));
        assert_eq!(device.live_memory_objects(), 0);
    }
}
