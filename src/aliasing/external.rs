//! Resources aliased in external memory: Vulkan binds a buffer or image to memory that is
//! exportable or imported only when the resource was created for that external memory
//! (`VkExternalMemoryBufferCreateInfo` / `VkExternalMemoryImageCreateInfo`):
//!
//! - memory allocated exportable (`VkExportMemoryAllocateInfo`) takes a resource created with
//!   at least one of its handle types (VUID-vkBindBufferMemory-memory-02726);
//! - imported memory takes a resource created with the handle type it was imported as
//!   (VUID-vkBindBufferMemory-memory-02985).
//!
//! [`MemoryAlloc::create_aliasing_buffer`](crate::MemoryAlloc::create_aliasing_buffer) and
//! [`create_aliasing_image`](crate::MemoryAlloc::create_aliasing_image) see the create info,
//! so they check this before anything is created; a bind of a resource handle cannot be
//! checked (its create info is gone), which the binds' safety contracts say.

use crate::allocation::MemoryAccessError;
use ash::vk;
use std::ffi::c_void;

type HandleTypes = vk::ExternalMemoryHandleTypeFlags;

/// The handle types of the `VkExternalMemoryBufferCreateInfo` (`for_image` false) or
/// `VkExternalMemoryImageCreateInfo` (`for_image` true) in the create-info chain starting at
/// `next`; empty when there is none. A chain that loops ends the walk.
///
/// # Safety
///
/// `next` is null or a valid chain of structures extending `VkBufferCreateInfo` or
/// `VkImageCreateInfo`.
pub(crate) unsafe fn created_for(next: *const c_void, for_image: bool) -> HandleTypes {
    let wanted = if for_image {
        vk::StructureType::EXTERNAL_MEMORY_IMAGE_CREATE_INFO
    } else {
        vk::StructureType::EXTERNAL_MEMORY_BUFFER_CREATE_INFO
    };
    let mut seen = Vec::new();
    let mut next = next;
    while !next.is_null() && !seen.contains(&next) {
        seen.push(next);
        // SAFETY: a valid chain (the caller's contract): each structure starts with a
        // `VkBaseInStructure`.
        let base = unsafe { &*next.cast::<vk::BaseInStructure<'_>>() };
        if base.s_type == wanted {
            // SAFETY: the structure type says what the structure is; both structures hold
            // their handle types right after the base.
            return unsafe {
                if for_image {
                    (*next.cast::<vk::ExternalMemoryImageCreateInfo<'_>>()).handle_types
                } else {
                    (*next.cast::<vk::ExternalMemoryBufferCreateInfo<'_>>()).handle_types
                }
            };
        }
        next = base.p_next.cast();
    }
    HandleTypes::empty()
}

/// Checks that a resource created for the external handle types `resource` may be bound to
/// memory exportable as `export` and imported as `import` (see the [module docs](self)).
pub(crate) fn check_external(
    export: HandleTypes,
    import: HandleTypes,
    resource: HandleTypes,
) -> Result<(), MemoryAccessError> {
    let export_ok = export.is_empty() || export.intersects(resource);
    let import_ok = resource.contains(import);
    if export_ok && import_ok {
        Ok(())
    } else {
        Err(MemoryAccessError::NotCreatedForExternalMemory {
            export,
            import,
            resource,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPAQUE: HandleTypes = HandleTypes::OPAQUE_FD;
    const DMA_BUF: HandleTypes = HandleTypes::DMA_BUF_EXT;
    const HOST: HandleTypes = HandleTypes::HOST_ALLOCATION_EXT;
    const NONE: HandleTypes = HandleTypes::empty();

    #[test]
    fn external_memory_takes_only_resources_made_for_it() {
        // Plain memory takes anything.
        assert!(check_external(NONE, NONE, NONE).is_ok());
        assert!(check_external(NONE, NONE, OPAQUE).is_ok());
        // Exportable memory: one of its handle types at least.
        assert!(check_external(OPAQUE, NONE, NONE).is_err());
        assert!(check_external(OPAQUE, NONE, DMA_BUF).is_err());
        assert!(check_external(OPAQUE | DMA_BUF, NONE, DMA_BUF).is_ok());
        assert!(check_external(OPAQUE, NONE, OPAQUE | HOST).is_ok());
        // Imported memory: its handle type.
        assert!(check_external(NONE, HOST, NONE).is_err());
        assert!(check_external(NONE, HOST, OPAQUE).is_err());
        assert!(check_external(NONE, HOST, HOST | OPAQUE).is_ok());
        assert_eq!(
            check_external(NONE, OPAQUE, DMA_BUF),
            Err(MemoryAccessError::NotCreatedForExternalMemory {
                export: NONE,
                import: OPAQUE,
                resource: DMA_BUF
            })
        );
    }

    #[test]
    fn the_create_info_chain_is_searched_and_a_loop_ends_the_walk() {
        let mut buffer = vk::ExternalMemoryBufferCreateInfo::default().handle_types(OPAQUE);
        let image = vk::ExternalMemoryImageCreateInfo::default().handle_types(HOST);
        let info = vk::BufferCreateInfo::default().push_next(&mut buffer);
        // SAFETY: (every walk below) valid chains of live structures.
        unsafe {
            assert_eq!(created_for(info.p_next, false), OPAQUE);
            assert_eq!(created_for(info.p_next, true), NONE);
            assert_eq!(created_for(std::ptr::null(), false), NONE);
            let mut looped = vk::ExternalMemoryImageCreateInfo::default().handle_types(DMA_BUF);
            looped.p_next = &looped as *const _ as *const c_void;
            assert_eq!(
                created_for(&looped as *const _ as *const c_void, false),
                NONE
            );
            assert_eq!(created_for(&image as *const _ as *const c_void, true), HOST);
        }
    }
}
