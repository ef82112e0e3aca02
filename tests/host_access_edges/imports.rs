//! Imported host memory: the same bytes are never imported twice at a time.

use crate::common::TestContext;
use ash::vk;
use ash_memory::*;

/// Page-aligned, zeroed host memory to import (`minImportedHostPointerAlignment`).
struct HostPages {
    ptr: std::ptr::NonNull<u8>,
    layout: std::alloc::Layout,
}

impl HostPages {
    fn new(device: &MemoryDevice, pages: usize) -> Self {
        let alignment = ash_memory::external_memory::min_imported_host_pointer_alignment(device)
            .unwrap()
            .as_devicesize() as usize;
        let layout = std::alloc::Layout::from_size_align(alignment * pages, alignment).unwrap();
        // SAFETY: a non-zero size.
        let ptr = std::ptr::NonNull::new(unsafe { std::alloc::alloc_zeroed(layout) }).unwrap();
        Self { ptr, layout }
    }
}

impl Drop for HostPages {
    fn drop(&mut self) {
        // SAFETY: allocated with this layout.
        unsafe { std::alloc::dealloc(self.ptr.as_ptr(), self.layout) };
    }
}

/// One host allocation imported twice would give two allocations that map the same bytes,
/// whose mutable slices alias: the second import of bytes already imported is refused,
/// whole or in part, until the first allocation is gone.
#[test]
fn host_memory_is_imported_once_at_a_time() {
    let ctx = TestContext::with_device_extensions(&[ash::ext::external_memory_host::NAME]);
    {
        let device = ctx.memory_device_with(EnabledMemoryFeatures {
            external_memory_host: true,
            ..Default::default()
        });
        let allocator = StandardMemoryAllocator::new_default(device.clone());
        let host = HostPages::new(&device, 4);
        let size = host.layout.size() as u64;
        let page = size / 4;
        // SAFETY: `host` is a live host allocation of `size` bytes that outlives the imports.
        let whole = unsafe { ExternalMemoryImport::host_pointer(host.ptr.cast()) };
        let memory_type = whole.memory_type_bits(&device).unwrap().trailing_zeros();
        let info = AllocationCreateInfo::default();
        let mut first = allocator
            .import_memory(whole, memory_type, size, None, &info)
            .unwrap();
        let second = allocator.import_memory(whole, memory_type, size, None, &info);
        let third = {
            // The last page only.
            let tail = host.ptr.as_ptr().wrapping_add(3 * page as usize);
            // SAFETY: inside `host`, page-aligned.
            let tail = unsafe {
                ExternalMemoryImport::host_pointer(std::ptr::NonNull::new(tail).unwrap().cast())
            };
            allocator.import_memory(tail, memory_type, page, None, &info)
        };
        if let (Ok(second), _) | (_, Ok(second)) = (&second, &third) {
            // Show what the aliasing does.
            first.write(size - 1, &[7]).unwrap();
            let mut b = [0];
            second.read(second.size() - 1, &mut b).unwrap();
            panic!(
                "host memory imported twice: a write through one allocation reads back {} \
                 through the other",
                b[0]
            );
        }
        for r in [second, third] {
            assert!(
                matches!(
                    r,
                    Err(AllocationError::Memory(
                        MemoryObjectError::ImportOverlaps { .. }
                    ))
                ),
                "{r:?}"
            );
        }
        first.write(0, &[1, 2, 3]).unwrap();
        drop(first);
        // Once the first is gone, the bytes may be imported again.
        let again = allocator
            .import_memory(whole, memory_type, size, None, &info)
            .unwrap();
        let mut back = [0; 3];
        again.read(0, &mut back).unwrap();
        assert_eq!(back, [1, 2, 3]);
        drop((again, allocator));

        // The same import in the user's own chain (as a pool would chain it for every
        // block): the second memory object is refused as well.
        let chained = vk::ImportMemoryHostPointerInfoEXT::default()
            .handle_type(vk::ExternalMemoryHandleTypeFlags::HOST_ALLOCATION_EXT)
            .host_pointer(host.ptr.as_ptr().cast());
        // SAFETY: a valid chain of one structure (its extension claimed, the pointer and
        // size aligned, the type allowed), alive until the objects below are freed.
        let next = unsafe { AllocateNext::new(std::ptr::from_ref(&chained).cast()) };
        let info = MemoryObjectCreateInfo {
            size,
            memory_type_index: memory_type,
            next,
            ..Default::default()
        };
        let one = MemoryObject::allocate(device.clone(), &info).unwrap();
        assert!(matches!(
            MemoryObject::allocate(device.clone(), &info),
            Err(MemoryObjectError::ImportOverlaps { .. })
        ));
        drop(one);
        drop(MemoryObject::allocate(device.clone(), &info).unwrap());
    }
    assert!(ctx.messages().is_empty(), "{:?}", ctx.messages());
}
