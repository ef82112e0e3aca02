//! Edges of external memory, on the real driver under the validation layer (any validation
//! message fails the test, and a memory object left alive is reported when the test context
//! destroys the device):
//!
//! - exported memory outlives its exporter: the file descriptor keeps the payload, whether
//!   the exporting allocation (and its allocator) is dropped before the import or after it,
//!   and both sides see each other's writes while both live;
//! - a host pointer that is not aligned to `minImportedHostPointerAlignment` is refused
//!   before it reaches `vkGetMemoryHostPointerPropertiesEXT` (whose pointer must be aligned),
//!   and a host import on a device that did not claim the extension says so first;
//! - an fd import names exactly one handle type, `OPAQUE_FD` or `DMA_BUF_EXT`: a set of
//!   several, none, or a handle type of another kind is refused before the driver sees it
//!   (through `import_memory`, `MemoryObject::allocate`, `memory_type_bits` and a
//!   `VkImportMemoryFdInfoKHR` in the user's chain), and the descriptor stays the caller's;
//! - a custom pool whose user chain holds an import structure (of an fd or a host pointer,
//!   anywhere in the chain) is refused when it is made: each of its memory objects would
//!   import the same handle, and the first would consume the descriptor.

mod common;

use ash::vk;
use ash_memory::external_memory::min_imported_host_pointer_alignment;
use ash_memory::*;
use common::TestContext;
use std::os::fd::IntoRawFd;

const OPAQUE_FD: vk::ExternalMemoryHandleTypeFlags = vk::ExternalMemoryHandleTypeFlags::OPAQUE_FD;

fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 8) as u8)
        .collect()
}

fn external_context() -> TestContext {
    TestContext::with_device_extensions(&[ash::khr::external_memory_fd::NAME])
}

fn external_features() -> EnabledMemoryFeatures {
    EnabledMemoryFeatures {
        external_memory_fd: true,
        ..Default::default()
    }
}

/// An allocator of `device` whose memory is exportable as an opaque fd.
fn exporting_allocator(device: &std::sync::Arc<MemoryDevice>) -> StandardMemoryAllocator {
    let types = device.memory_properties().memory_types.len();
    // SAFETY: lavapipe exports opaque fds; nothing bound to this memory needs external
    // resource create infos here (no resource is bound at all).
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

/// Exports a dedicated, host-visible allocation of `allocator` filled with `data`; returns the
/// allocation and what was exported.
fn export(allocator: &StandardMemoryAllocator, data: &[u8]) -> (MemoryAlloc, ExportedFd) {
    let properties = allocator.device().memory_properties();
    let type_index = (0..properties.memory_types.len() as u32)
        .find(|&t| {
            properties.memory_type(t).is_some_and(|m| {
                m.property_flags
                    .contains(vk::MemoryPropertyFlags::HOST_VISIBLE)
            })
        })
        .expect("a host-visible memory type");
    let mut alloc = allocator
        .allocate_dedicated(type_index, data.len() as u64, None, &Default::default())
        .unwrap();
    alloc.write(0, data).unwrap();
    let exported = alloc.export_fd(OPAQUE_FD).unwrap();
    assert_eq!(exported.memory_size, data.len() as u64);
    assert_eq!(exported.offset, 0);
    (alloc, exported)
}

fn import(allocator: &StandardMemoryAllocator, exported: ExportedFd) -> MemoryAlloc {
    // SAFETY: an opaque fd of this physical device, imported once with the exporter's memory
    // type and size.
    let import = unsafe { ExternalMemoryImport::fd(OPAQUE_FD, exported.fd.into_raw_fd()) };
    allocator
        .import_memory(
            import,
            exported.memory_type_index,
            exported.memory_size,
            None,
            &Default::default(),
        )
        .unwrap()
}

#[test]
fn exported_memory_outlives_its_exporter_in_either_drop_order() {
    const SIZE: usize = 64 << 10;
    let exporter = external_context();
    let importer = external_context();
    let device1 = exporter.memory_device_with(external_features());
    let device2 = importer.memory_device_with(external_features());
    let allocator2 = StandardMemoryAllocator::new_default(device2.clone());

    // The exporter is gone (memory freed, allocator dropped) before the import.
    let data = pattern(11, SIZE);
    let allocator1 = exporting_allocator(&device1);
    let (alloc, exported) = export(&allocator1, &data);
    drop((alloc, allocator1));
    assert_eq!(device1.live_memory_objects(), 0);
    let imported = import(&allocator2, exported);
    let mut read = vec![0u8; SIZE];
    imported.read(0, &mut read).unwrap();
    assert!(read == data, "the payload did not outlive its exporter");

    // Imported first; the exporter drops while the import lives, and both sides still see
    // each other's writes until then.
    let data2 = pattern(12, SIZE);
    let allocator1 = exporting_allocator(&device1);
    let (mut alloc, exported) = export(&allocator1, &data2);
    let mut imported2 = import(&allocator2, exported);
    imported2.read(0, &mut read).unwrap();
    assert!(read == data2);
    imported2.write(SIZE as u64 - 8, &[0xEE; 8]).unwrap();
    let mut tail = [0u8; 8];
    alloc.read(SIZE as u64 - 8, &mut tail).unwrap();
    assert_eq!(
        tail, [0xEE; 8],
        "the exporter does not see the importer's write"
    );
    alloc.write(0, &[0x55; 8]).unwrap();
    drop((alloc, allocator1));
    assert_eq!(device1.live_memory_objects(), 0);
    let mut head = [0u8; 8];
    imported2.read(0, &mut head).unwrap();
    assert_eq!(head, [0x55; 8]);

    // Dropped in reverse order of import, and nothing is left on either device.
    drop(imported2);
    drop(imported);
    assert_eq!(allocator2.statistics().total.allocation_count, 0);
    drop(allocator2);
    assert_eq!(device2.live_memory_objects(), 0);
}

#[test]
fn a_misaligned_host_pointer_is_refused_before_the_driver_sees_it() {
    let ctx = TestContext::with_device_extensions(&[ash::ext::external_memory_host::NAME]);
    let features = EnabledMemoryFeatures {
        external_memory_host: true,
        ..Default::default()
    };
    let device = ctx.memory_device_with(features);
    let alignment = min_imported_host_pointer_alignment(&device)
        .unwrap()
        .as_devicesize() as usize;
    assert!(alignment > 1, "lavapipe needs aligned host pointers");
    let layout = std::alloc::Layout::from_size_align(4 * alignment, alignment).unwrap();
    // SAFETY: a non-zero size.
    let base = std::ptr::NonNull::new(unsafe { std::alloc::alloc_zeroed(layout) }).unwrap();
    {
        let allocator = StandardMemoryAllocator::new_default(device.clone());
        // SAFETY: a live host allocation of `3 * alignment` bytes from `misaligned` on, freed
        // after the allocator (nothing is imported).
        let misaligned = unsafe {
            ExternalMemoryImport::host_pointer(
                std::ptr::NonNull::new(base.as_ptr().add(alignment / 2))
                    .unwrap()
                    .cast(),
            )
        };
        let expected = MemoryObjectError::ImportMisaligned {
            alignment: alignment as u64,
        };
        assert_eq!(misaligned.memory_type_bits(&device), Err(expected.clone()));
        let result = allocator.import_memory(
            misaligned,
            0,
            2 * alignment as u64,
            None,
            &Default::default(),
        );
        assert!(
            matches!(&result, Err(AllocationError::Memory(e)) if *e == expected),
            "{result:?}"
        );
        // Without the extension claimed, that is the error, whatever the pointer.
        let plain = ctx.memory_device();
        let not_enabled = MemoryObjectError::ExtensionNotEnabled("VK_EXT_external_memory_host");
        assert_eq!(
            misaligned.memory_type_bits(&plain),
            Err(not_enabled.clone())
        );
        assert_eq!(
            min_imported_host_pointer_alignment(&plain),
            Err(not_enabled.clone())
        );
        let result = StandardMemoryAllocator::new_default(plain).import_memory(
            misaligned,
            0,
            2 * alignment as u64,
            None,
            &Default::default(),
        );
        assert!(
            matches!(&result, Err(AllocationError::Memory(e)) if *e == not_enabled),
            "{result:?}"
        );
        assert_eq!(device.live_memory_objects(), 0);
    }
    // SAFETY: allocated with this layout; nothing imported it.
    unsafe { std::alloc::dealloc(base.as_ptr(), layout) };
}

#[test]
fn an_fd_import_takes_exactly_one_fd_handle_type() {
    const SIZE: usize = 64 << 10;
    let exporter = external_context();
    let importer = external_context();
    let device1 = exporter.memory_device_with(external_features());
    let device2 = importer.memory_device_with(external_features());
    let allocator1 = exporting_allocator(&device1);
    let allocator2 = StandardMemoryAllocator::new_default(device2.clone());
    let data = pattern(21, SIZE);
    let (alloc, exported) = export(&allocator1, &data);
    let fd = exported.fd.into_raw_fd();
    let dma_buf = vk::ExternalMemoryHandleTypeFlags::DMA_BUF_EXT;
    let bad = [
        OPAQUE_FD | dma_buf,
        vk::ExternalMemoryHandleTypeFlags::empty(),
        vk::ExternalMemoryHandleTypeFlags::HOST_ALLOCATION_EXT,
        vk::ExternalMemoryHandleTypeFlags::OPAQUE_WIN32,
    ];
    for handle_type in bad {
        let refused = Some(MemoryObjectError::InvalidImportHandleType(handle_type));
        // SAFETY: an open opaque fd of this physical device; every call below is refused
        // before the driver, so the descriptor stays ours.
        let import = unsafe { ExternalMemoryImport::fd(handle_type, fd) };
        assert_eq!(import.memory_type_bits(&device2).err(), refused);
        let r = allocator2.import_memory(
            import,
            exported.memory_type_index,
            exported.memory_size,
            None,
            &Default::default(),
        );
        assert_eq!(
            r.err(),
            refused.clone().map(AllocationError::Memory),
            "{handle_type:?}"
        );
        let r = MemoryObject::allocate(
            device2.clone(),
            &MemoryObjectCreateInfo {
                size: exported.memory_size,
                memory_type_index: exported.memory_type_index,
                import: Some(import),
                ..Default::default()
            },
        );
        assert_eq!(r.err(), refused, "{handle_type:?}");
    }
    // The same in the user's own chain (a zero handle type there imports nothing, which
    // Vulkan allows; it is not tried here, as it would leave a plain allocation).
    let chained = vk::ImportMemoryFdInfoKHR::default()
        .handle_type(OPAQUE_FD | dma_buf)
        .fd(fd);
    let r = MemoryObject::allocate(
        device2.clone(),
        &MemoryObjectCreateInfo {
            size: exported.memory_size,
            memory_type_index: exported.memory_type_index,
            // SAFETY: refused before the driver; outlives the call.
            next: unsafe { AllocateNext::new(std::ptr::from_ref(&chained).cast()) },
            ..Default::default()
        },
    );
    assert_eq!(
        r.err(),
        Some(MemoryObjectError::InvalidImportHandleType(
            OPAQUE_FD | dma_buf
        ))
    );
    assert_eq!(device2.live_memory_objects(), 0);
    // The descriptor was never consumed: it still imports, once, with its one handle type.
    // SAFETY: as above, imported once with the exporter's memory type and size.
    let import = unsafe { ExternalMemoryImport::fd(OPAQUE_FD, fd) };
    let imported = allocator2
        .import_memory(
            import,
            exported.memory_type_index,
            exported.memory_size,
            None,
            &Default::default(),
        )
        .unwrap();
    let mut read = vec![0u8; SIZE];
    imported.read(0, &mut read).unwrap();
    assert!(read == data, "the import does not show the exported bytes");
    drop((imported, alloc, allocator1, allocator2));
    assert_eq!(device1.live_memory_objects(), 0);
    assert_eq!(device2.live_memory_objects(), 0);
}

#[test]
fn a_pool_whose_chain_imports_is_refused_when_it_is_made() {
    const SIZE: usize = 64 << 10;
    let exporter = external_context();
    let importer = external_context();
    let device1 = exporter.memory_device_with(external_features());
    let device2 = importer.memory_device_with(external_features());
    let allocator1 = exporting_allocator(&device1);
    let allocator2 = StandardMemoryAllocator::new_default(device2.clone());
    let data = pattern(31, SIZE);
    let (alloc, exported) = export(&allocator1, &data);
    let fd = exported.fd.into_raw_fd();
    let pool_info = |next, min_block_count| PoolCreateInfo {
        memory_type: PoolMemoryType::Index(exported.memory_type_index),
        block_size: exported.memory_size,
        min_block_count,
        memory_allocate_next: next,
        ..Default::default()
    };
    let fd_import = vk::ImportMemoryFdInfoKHR::default()
        .handle_type(OPAQUE_FD)
        .fd(fd);
    // SAFETY: a valid import of the exported memory object (its type and size), refused
    // before any memory is allocated with it; it outlives every use.
    let next = unsafe { AllocateNext::new(std::ptr::from_ref(&fd_import).cast()) };
    for min_block_count in [0, 2] {
        let r = allocator2.create_pool::<FreeListAllocator>(&pool_info(next, min_block_count));
        assert_eq!(
            r.err(),
            Some(AllocationError::Config(ConfigError::PoolImport(
                vk::StructureType::IMPORT_MEMORY_FD_INFO_KHR
            )))
        );
        assert_eq!(device2.live_memory_objects(), 0);
    }
    // A host-pointer import behind another structure: found and refused too.
    let page = vec![0u8; 2 * SIZE];
    let host_import = vk::ImportMemoryHostPointerInfoEXT::default()
        .handle_type(vk::ExternalMemoryHandleTypeFlags::HOST_ALLOCATION_EXT)
        .host_pointer(page.as_ptr().cast_mut().cast());
    let priority = vk::MemoryPriorityAllocateInfoEXT {
        p_next: std::ptr::from_ref(&host_import).cast(),
        ..Default::default()
    };
    // SAFETY: refused before any memory is allocated with it; it outlives every use.
    let next = unsafe { AllocateNext::new(std::ptr::from_ref(&priority).cast()) };
    let r = allocator2.create_pool::<FreeListAllocator>(&pool_info(next, 1));
    assert_eq!(
        r.err(),
        Some(AllocationError::Config(ConfigError::PoolImport(
            vk::StructureType::IMPORT_MEMORY_HOST_POINTER_INFO_EXT
        )))
    );
    assert_eq!(device2.live_memory_objects(), 0);
    // The descriptor was never consumed: it imports once, with the exported bytes.
    // SAFETY: imported once with the exporter's memory type and size.
    let import = unsafe { ExternalMemoryImport::fd(OPAQUE_FD, fd) };
    let imported = allocator2
        .import_memory(
            import,
            exported.memory_type_index,
            exported.memory_size,
            None,
            &Default::default(),
        )
        .unwrap();
    let mut read = vec![0u8; SIZE];
    imported.read(0, &mut read).unwrap();
    assert!(read == data, "the import does not show the exported bytes");
    drop((imported, alloc, allocator1, allocator2));
    assert_eq!(device1.live_memory_objects(), 0);
    assert_eq!(device2.live_memory_objects(), 0);
}
