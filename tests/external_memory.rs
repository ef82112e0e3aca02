//! External memory on the driver (lavapipe implements `VK_KHR_external_memory_fd` and
//! `VK_EXT_external_memory_host`): memory exported from one `VkDevice` as an opaque fd and
//! imported into a second one, with the data checked through the second device's GPU; a host
//! allocation imported, written on the host and read through the GPU; a pool's user `pNext`
//! chain reaching `vkAllocateMemory` of its blocks and dedicated allocations; and every import
//! rule refused before the driver is called.

mod common;

use ash::vk;
use ash_memory::external_memory::min_imported_host_pointer_alignment;
use ash_memory::*;
use common::{buffer_info, TestContext};
use std::os::fd::IntoRawFd;
use std::ptr::NonNull;
use std::sync::Arc;

const OPAQUE_FD: vk::ExternalMemoryHandleTypeFlags = vk::ExternalMemoryHandleTypeFlags::OPAQUE_FD;
const HOST: vk::ExternalMemoryHandleTypeFlags =
    vk::ExternalMemoryHandleTypeFlags::HOST_ALLOCATION_EXT;

fn context() -> TestContext {
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

fn host_visible() -> AllocationCreateInfo {
    AllocationCreateInfo {
        usage: MemoryUsage::Auto(HostAccess::Random),
        ..Default::default()
    }
}

fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(29).wrapping_add(seed))
        .collect()
}

/// Creates a transfer-source buffer made for external memory of `handle_type`, binds it at
/// `offset` of `alloc`, copies `len` bytes of it to a readback buffer on the same device and
/// returns them.
fn read_through_gpu(
    ctx: &TestContext,
    allocator: &StandardMemoryAllocator,
    alloc: &MemoryAlloc,
    offset: u64,
    len: u64,
    handle_type: vk::ExternalMemoryHandleTypeFlags,
) -> Vec<u8> {
    let mut external = vk::ExternalMemoryBufferCreateInfo::default().handle_types(handle_type);
    let info = buffer_info(len, vk::BufferUsageFlags::TRANSFER_SRC).push_next(&mut external);
    // SAFETY: a valid create info; the buffer is bound before use and destroyed below.
    let src = unsafe { alloc.create_aliasing_buffer(&info, offset) }.unwrap();
    // SAFETY: a valid create info.
    let (dst, dst_alloc) = unsafe {
        allocator.create_buffer(
            &buffer_info(len, vk::BufferUsageFlags::TRANSFER_DST),
            &host_visible(),
        )
    }
    .unwrap();
    ctx.submit(|d, cmd| {
        let region = vk::BufferCopy {
            src_offset: 0,
            dst_offset: 0,
            size: len,
        };
        // SAFETY: recording; both buffers are bound.
        unsafe { d.cmd_copy_buffer(cmd, src, dst, &[region]) };
        TestContext::transfer_barrier(d, cmd);
    });
    let mut out = vec![0; len as usize];
    dst_alloc.read(0, &mut out).unwrap();
    // SAFETY: the copy is done.
    unsafe {
        ctx.device.destroy_buffer(src, None);
        ctx.device.destroy_buffer(dst, None);
    }
    out
}

#[test]
fn memory_exported_from_one_device_is_read_by_another() {
    let exporter = context();
    let importer = context();
    {
        let device1 = exporter.memory_device_with(external_features());
        let device2 = importer.memory_device_with(external_features());
        let allocator1 = StandardMemoryAllocator::new_default(device1.clone());
        let allocator2 = StandardMemoryAllocator::new_default(device2.clone());
        // A pool of exportable blocks.
        // SAFETY: lavapipe exports and imports opaque fds for buffers, and every buffer bound
        // to this memory below is made with `VkExternalMemoryBufferCreateInfo` of this type.
        let export = unsafe { ExportHandleTypes::new(OPAQUE_FD) };
        let pool = allocator1
            .create_pool::<FreeListAllocator>(&PoolCreateInfo {
                memory_type: PoolMemoryType::Find {
                    memory_type_bits: u32::MAX,
                    usage: MemoryUsage::Auto(HostAccess::Random),
                },
                block_size: 1 << 20,
                export_handle_types: export,
                ..Default::default()
            })
            .unwrap();
        let mut external = vk::ExternalMemoryBufferCreateInfo::default().handle_types(OPAQUE_FD);
        let info =
            buffer_info(64 << 10, vk::BufferUsageFlags::TRANSFER_SRC).push_next(&mut external);
        // Two buffers, so that the second one lies at a non-zero offset of the block.
        // SAFETY: a valid create info.
        let (first, _first_alloc) =
            unsafe { pool.create_buffer(&info, &Default::default()) }.unwrap();
        // SAFETY: as above.
        let (second, mut alloc) =
            unsafe { pool.create_buffer(&info, &Default::default()) }.unwrap();
        assert!(alloc.offset() > 0);
        let data = pattern(7, 64 << 10);
        alloc.write(0, &data).unwrap();

        let exported = alloc.export_fd(OPAQUE_FD).unwrap();
        assert_eq!(exported.memory_size, 1 << 20);
        assert_eq!(exported.offset, alloc.offset());
        // A handle type it was not made exportable as is refused.
        assert!(matches!(
            alloc.export_fd(vk::ExternalMemoryHandleTypeFlags::DMA_BUF_EXT),
            Err(MemoryObjectError::NotExportable { .. })
        ));

        // SAFETY: an opaque fd of this physical device, imported once with the exporter's
        // memory type and size.
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
        assert!(imported.is_dedicated());
        assert_eq!(allocator2.statistics().total.dedicated_count, 1);
        // The second device's GPU reads what the first device's host wrote.
        let read = read_through_gpu(
            &importer,
            &allocator2,
            &imported,
            exported.offset,
            64 << 10,
            OPAQUE_FD,
        );
        assert!(read == data, "imported data differs");
        // And its host, through the imported memory's own mapping.
        let mut host_read = vec![0; 64 << 10];
        imported.read(exported.offset, &mut host_read).unwrap();
        assert!(host_read == data);

        // SAFETY: unused; destroyed before their memory is freed.
        unsafe {
            exporter.device.destroy_buffer(first, None);
            exporter.device.destroy_buffer(second, None);
        }
        drop((imported, allocator2));
        assert_eq!(device2.live_memory_objects(), 0);
    }
}

/// Host memory aligned for an import, freed on drop.
struct HostBlock {
    ptr: NonNull<u8>,
    layout: std::alloc::Layout,
}

impl HostBlock {
    /// Zeroed host memory that `device` can import: aligned to its minimum imported host
    /// pointer alignment, and of that size or 64 KiB, whichever is larger.
    fn for_import(device: &MemoryDevice) -> Self {
        let alignment = min_imported_host_pointer_alignment(device)
            .unwrap()
            .as_devicesize() as usize;
        let layout =
            std::alloc::Layout::from_size_align(alignment.max(64 << 10), alignment).unwrap();
        // SAFETY: a non-zero size.
        let ptr = NonNull::new(unsafe { std::alloc::alloc_zeroed(layout) }).unwrap();
        Self { ptr, layout }
    }
}

impl Drop for HostBlock {
    fn drop(&mut self) {
        // SAFETY: allocated with this layout.
        unsafe { std::alloc::dealloc(self.ptr.as_ptr(), self.layout) };
    }
}

#[test]
fn a_host_allocation_is_imported_written_on_the_host_and_read_by_the_gpu() {
    let ctx = context();
    {
        let device = ctx.memory_device_with(external_features());
        let allocator = StandardMemoryAllocator::new_default(device.clone());
        let host = HostBlock::for_import(&device);
        let (size, alignment) = (host.layout.size(), host.layout.align());
        // SAFETY: `host` is a live host allocation of `size` bytes that outlives the import.
        let import = unsafe { ExternalMemoryImport::host_pointer(host.ptr.cast()) };
        let bits = import.memory_type_bits(&device).unwrap();
        assert_ne!(bits, 0);
        let memory_type = bits.trailing_zeros();

        // The rules, refused before the driver.
        let misaligned_ptr = NonNull::new(host.ptr.as_ptr().wrapping_add(1)).unwrap();
        // SAFETY: refused before any use (misaligned).
        let misaligned = unsafe { ExternalMemoryImport::host_pointer(misaligned_ptr.cast()) };
        let expect = |r: Result<MemoryAlloc, AllocationError>, e: MemoryObjectError| {
            assert_eq!(r.err(), Some(AllocationError::Memory(e)))
        };
        expect(
            allocator.import_memory(
                misaligned,
                memory_type,
                size as u64,
                None,
                &Default::default(),
            ),
            MemoryObjectError::ImportMisaligned {
                alignment: alignment as u64,
            },
        );
        expect(
            allocator.import_memory(
                import,
                memory_type,
                size as u64 - 1,
                None,
                &Default::default(),
            ),
            MemoryObjectError::ImportMisaligned {
                alignment: alignment as u64,
            },
        );
        let dummy = vk::Buffer::null();
        // SAFETY: refused before any use (a host import cannot be dedicated).
        let dedicated = unsafe { DedicatedAllocation::buffer(dummy) };
        expect(
            allocator.import_memory(
                import,
                memory_type,
                size as u64,
                Some(dedicated),
                &Default::default(),
            ),
            MemoryObjectError::ImportDedicated,
        );
        // Without the extension claimed.
        let plain = ctx.memory_device();
        let plain_allocator = StandardMemoryAllocator::new_default(plain);
        expect(
            plain_allocator.import_memory(
                import,
                memory_type,
                size as u64,
                None,
                &Default::default(),
            ),
            MemoryObjectError::ExtensionNotEnabled("VK_EXT_external_memory_host"),
        );
        assert_eq!(device.live_memory_objects(), 0, "nothing was allocated");

        let imported = allocator
            .import_memory(
                import,
                memory_type,
                size as u64,
                None,
                &AllocationCreateInfo {
                    name: Some("host upload".into()),
                    ..Default::default()
                },
            )
            .unwrap();
        assert_eq!(imported.name(), Some("host upload"));
        // Written on the host, straight into the application's own memory.
        let data = pattern(3, size);
        // SAFETY: the host block is ours, and the GPU does not use it yet.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), host.ptr.as_ptr(), size) };
        imported.flush(0, size as u64).unwrap();
        let read = read_through_gpu(&ctx, &allocator, &imported, 0, size as u64, HOST);
        assert!(read == data, "the GPU read other bytes than the host wrote");
        drop(imported);
        drop(host);
    }
}

#[test]
fn a_pool_user_chain_reaches_its_blocks_and_dedicated_allocations() {
    let ctx = context();
    {
        let device = ctx.memory_device_with(external_features());
        let allocator = StandardMemoryAllocator::new_default(device.clone());
        // The user's chain makes the memory exportable; the crate chains no export itself.
        let export = vk::ExportMemoryAllocateInfo::default().handle_types(OPAQUE_FD);
        // SAFETY: a valid chain for every memory object of the pool, living to the end of the
        // test (after the pool).
        let next = unsafe { AllocateNext::new(&export as *const _ as *const _) };
        let usage = MemoryUsage::Auto(HostAccess::Random);
        let pool = allocator
            .create_pool::<FreeListAllocator>(&PoolCreateInfo {
                memory_type: PoolMemoryType::Find {
                    memory_type_bits: u32::MAX,
                    usage,
                },
                block_size: 1 << 20,
                memory_allocate_next: next,
                ..Default::default()
            })
            .unwrap();
        let layout = DeviceLayout::from_size_alignment(4096, 256).unwrap();
        let requirements = AllocationRequirements {
            layout,
            memory_type_bits: u32::MAX,
            prefers_dedicated_allocation: false,
            requires_dedicated_allocation: false,
        };
        let block = pool
            .allocate(
                requirements,
                AllocationType::Linear,
                &Default::default(),
                None,
            )
            .unwrap();
        assert!(!block.is_dedicated());
        let dedicated = pool
            .allocate(
                requirements,
                AllocationType::Linear,
                &AllocationCreateInfo {
                    allocate_preference: MemoryAllocatePreference::AlwaysAllocate,
                    ..Default::default()
                },
                None,
            )
            .unwrap();
        assert!(dedicated.is_dedicated());
        // Exportable only because the user's structure reached vkAllocateMemory (exporting
        // memory that is not would be a validation error).
        for a in [&block, &dedicated] {
            let fd = a.export_fd(OPAQUE_FD).unwrap();
            assert_eq!(fd.handle_type, OPAQUE_FD);
        }

        // The same structure from the crate and from the user: refused.
        // SAFETY: as for `ExportHandleTypes::new` above.
        let crate_export = unsafe { ExportHandleTypes::new(OPAQUE_FD) };
        let twice = allocator
            .create_pool::<FreeListAllocator>(&PoolCreateInfo {
                memory_type: PoolMemoryType::Find {
                    memory_type_bits: u32::MAX,
                    usage,
                },
                block_size: 1 << 20,
                export_handle_types: crate_export,
                memory_allocate_next: next,
                ..Default::default()
            })
            .unwrap();
        let refused = twice.allocate(
            requirements,
            AllocationType::Linear,
            &Default::default(),
            None,
        );
        assert_eq!(
            refused.err(),
            Some(AllocationError::Memory(
                MemoryObjectError::DuplicateChainStructure(
                    vk::StructureType::EXPORT_MEMORY_ALLOCATE_INFO
                )
            ))
        );
        drop((block, dedicated, pool, twice, allocator));
        assert_eq!(device.live_memory_objects(), 0);
        let _: Arc<MemoryDevice> = device;
    }
}

thread_local! {
    static REAL_ALLOCATE: std::cell::Cell<Option<vk::PFN_vkAllocateMemory>> =
        const { std::cell::Cell::new(None) };
    static FAIL_ALLOCATE: std::cell::Cell<Option<vk::Result>> = const { std::cell::Cell::new(None) };
}

unsafe extern "system" fn failing_allocate_memory(
    device: vk::Device,
    info: *const vk::MemoryAllocateInfo<'_>,
    allocator: *const vk::AllocationCallbacks<'_>,
    memory: *mut vk::DeviceMemory,
) -> vk::Result {
    if let Some(e) = FAIL_ALLOCATE.take() {
        return e;
    }
    let real = REAL_ALLOCATE.get().expect("real vkAllocateMemory");
    // SAFETY: forwarded unchanged.
    unsafe { real(device, info, allocator, memory) }
}

#[test]
fn a_failing_import_gives_everything_back() {
    let ctx = context();
    {
        let device = ctx.memory_device_with_v1_0(
            |v1_0| {
                REAL_ALLOCATE.set(Some(v1_0.allocate_memory));
                v1_0.allocate_memory = failing_allocate_memory;
            },
            external_features(),
        );
        let allocator = StandardMemoryAllocator::new_default(device.clone());
        let host = HostBlock::for_import(&device);
        let size = host.layout.size();
        // SAFETY: a live host allocation that outlives the import.
        let import = unsafe { ExternalMemoryImport::host_pointer(host.ptr.cast()) };
        let memory_type = import.memory_type_bits(&device).unwrap().trailing_zeros();
        for fault in [
            vk::Result::ERROR_OUT_OF_DEVICE_MEMORY,
            vk::Result::ERROR_INVALID_EXTERNAL_HANDLE,
        ] {
            FAIL_ALLOCATE.set(Some(fault));
            let result = allocator.import_memory(
                import,
                memory_type,
                size as u64,
                None,
                &Default::default(),
            );
            let expected = match fault {
                vk::Result::ERROR_OUT_OF_DEVICE_MEMORY => AllocationError::OutOfDeviceMemory,
                other => AllocationError::Vulkan(other),
            };
            assert_eq!(result.err(), Some(expected));
            assert_eq!(device.live_memory_objects(), 0);
            assert_eq!(device.live_memory_bytes(), 0);
            assert_eq!(allocator.statistics().total.dedicated_count, 0);
        }
        // The same import then succeeds.
        let imported = allocator
            .import_memory(import, memory_type, size as u64, None, &Default::default())
            .unwrap();
        assert_eq!(device.live_memory_bytes(), size as u64);
        drop((imported, allocator));
        drop(host);
    }
}
