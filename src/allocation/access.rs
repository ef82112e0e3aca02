//! Host access and binding: reading and writing an allocation through its block's
//! persistent mapping (bounds-checked, flushed and invalidated as the memory needs), exporting
//! its memory object, binding a buffer or an image to it, and why any of these fails.

use super::MemoryAlloc;
use crate::device_memory::SyncDirection;
use crate::layout::DeviceSize;
use crate::suballocator::AllocationType;
use ash::vk;
use std::ptr::NonNull;

/// Why reading, writing, flushing or binding an allocation failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MemoryAccessError {
    /// The allocation's memory type is not `HOST_VISIBLE`, so it has no mapping.
    #[error(
        "memory type {memory_type_index} is not host-visible: the allocation cannot be mapped"
    )]
    NotHostVisible {
        /// The allocation's memory type.
        memory_type_index: u32,
    },
    /// The range lies (partly) outside the allocation.
    #[error("range at offset {offset} of {len} bytes is outside the allocation of {size} bytes")]
    OutOfBounds {
        /// Offset within the allocation.
        offset: DeviceSize,
        /// Length of the range.
        len: DeviceSize,
        /// Size of the allocation.
        size: DeviceSize,
    },
    /// The allocation's mapped address is not aligned for the type asked for (see
    /// [`MemoryAlloc::mapped_slice_of`]).
    #[error("mapped address {address:#x} is not aligned to {alignment} bytes")]
    Misaligned {
        /// The address of the allocation's first byte in the mapping.
        address: usize,
        /// The alignment the type needs.
        alignment: usize,
    },
    /// A Vulkan call failed.
    #[error("Vulkan error: {0}")]
    Vulkan(vk::Result),
    /// A resource bound at `local_offset` would reach past the allocation's end (see
    /// [`aliasing`](crate::aliasing)).
    #[error(
        "a resource of {required} bytes at local offset {local_offset} does not fit the \
         allocation of {size} bytes"
    )]
    ResourceOutOfBounds {
        /// The offset in the allocation.
        local_offset: DeviceSize,
        /// The resource's required size.
        required: DeviceSize,
        /// The allocation's size.
        size: DeviceSize,
    },
    /// The offset in the memory object is not a multiple of the resource's alignment.
    #[error("memory offset {offset} is not a multiple of the resource's alignment {alignment}")]
    MisalignedBind {
        /// The offset in the memory object (allocation offset + local offset).
        offset: DeviceSize,
        /// The resource's required alignment.
        alignment: DeviceSize,
    },
    /// The resource's `memoryTypeBits` does not contain the allocation's memory type.
    #[error(
        "the resource allows memory types {memory_type_bits:#b}, not the allocation's type \
         {memory_type_index}"
    )]
    IncompatibleMemoryType {
        /// The allocation's memory type.
        memory_type_index: u32,
        /// The resource's `memoryTypeBits`.
        memory_type_bits: u32,
    },
    /// The driver requires a memory object of its own for this resource
    /// (`requiresDedicatedAllocation`); allocate one for it instead of aliasing.
    #[error("the resource requires a dedicated allocation of its own")]
    RequiresDedicatedAllocation,
    /// The memory was allocated dedicated to another resource (or the bind is not at offset 0
    /// of memory dedicated to this one).
    #[error("the memory is dedicated to another resource")]
    DedicatedToAnotherResource,
    /// A resource of the other kind than the allocation was made for could share a
    /// `bufferImageGranularity` page with a neighbouring allocation; allocate with
    /// [`AllocationType::Unknown`] to alias buffers and images.
    #[error(
        "binding this resource kind into a {allocation_type:?} allocation of a shared block \
         could break bufferImageGranularity; allocate with AllocationType::Unknown"
    )]
    GranularityConflict {
        /// The type the allocation was made for.
        allocation_type: AllocationType,
    },
    /// The memory is exportable or imported, and the resource's create info does not name
    /// its external handle types (`VkExternalMemoryBufferCreateInfo` /
    /// `VkExternalMemoryImageCreateInfo`: one of the export types, and the import type; see
    /// [`aliasing`](crate::aliasing)).
    #[error(
        "the memory is external (exportable as {export:?}, imported as {import:?}) and the \
         resource was created for {resource:?}"
    )]
    NotCreatedForExternalMemory {
        /// The handle types the memory is exportable as.
        export: vk::ExternalMemoryHandleTypeFlags,
        /// The handle type the memory was imported as.
        import: vk::ExternalMemoryHandleTypeFlags,
        /// The handle types the resource was created for.
        resource: vk::ExternalMemoryHandleTypeFlags,
    },
    /// A bind with a `pNext` chain needs `vkBind*Memory2`: Vulkan 1.1, or
    /// `VK_KHR_bind_memory2` claimed in
    /// [`EnabledMemoryFeatures::bind_memory2`](crate::EnabledMemoryFeatures::bind_memory2).
    #[error("a bind pNext chain needs Vulkan 1.1 or VK_KHR_bind_memory2 (bind_memory2)")]
    BindMemory2Unavailable,
    /// A buffer with `SHADER_DEVICE_ADDRESS` usage, on a device with the `bufferDeviceAddress`
    /// feature, needs memory allocated with `VK_MEMORY_ALLOCATE_DEVICE_ADDRESS_BIT`
    /// (VUID-vkBindBufferMemory-bufferDeviceAddress-03339); this memory was allocated without
    /// it (the allocator's or pool's `device_address` setting is off).
    #[error("a SHADER_DEVICE_ADDRESS buffer needs memory allocated with device addresses (device_address is off)")]
    NoDeviceAddressMemory,
    /// `create_buffer` / `create_image` bind a resource whole, to one allocation; a sparse
    /// resource (`SPARSE_*` create flags) is bound with `vkQueueBindSparse`, and a `DISJOINT`
    /// image plane by plane (VUID-vkBindBufferMemory-buffer-01030,
    /// VUID-vkBindImageMemory-image-01608). Refused before the resource is created.
    #[error("a {0} resource cannot be bound whole to one allocation: bind it by hand")]
    NotBindableWhole(&'static str),
}

impl MemoryAlloc {
    /// A pointer to the start of the range in host address space, when the memory is
    /// host-visible. Writing through it is `unsafe` and up to the caller; prefer
    /// [`write`](Self::write) and [`read`](Self::read), which check bounds and flush.
    pub fn mapped_ptr(&self) -> Option<NonNull<u8>> {
        let base = self.device_memory().mapped_ptr()?;
        // SAFETY: the mapping covers the whole memory object and the range lies inside it.
        Some(unsafe { base.add(self.offset as usize) })
    }

    pub(crate) fn checked_range(
        &self,
        offset: DeviceSize,
        len: usize,
    ) -> Result<NonNull<u8>, MemoryAccessError> {
        let len64 = len as DeviceSize;
        if offset
            .checked_add(len64)
            .is_none_or(|end| end > self.size())
        {
            return Err(MemoryAccessError::OutOfBounds {
                offset,
                len: len64,
                size: self.size(),
            });
        }
        let base = self.mapped_ptr().ok_or(MemoryAccessError::NotHostVisible {
            memory_type_index: self.memory_type_index(),
        })?;
        // SAFETY: `offset + len <= size`, so the pointer stays inside the range.
        Ok(unsafe { base.add(offset as usize) })
    }

    /// Copies `data` into the range at `offset` through the mapping, then flushes the written
    /// bytes if the memory is not host-coherent.
    ///
    /// The GPU must not be accessing these bytes meanwhile (synchronize as for any host write).
    pub fn write(&mut self, offset: DeviceSize, data: &[u8]) -> Result<(), MemoryAccessError> {
        let dst = self.checked_range(offset, data.len())?;
        // SAFETY: `dst .. dst + len` lies inside this allocation's mapped range, which no other
        // allocation overlaps, and `&mut self` excludes concurrent host access to it.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), dst.as_ptr(), data.len()) };
        self.flush(offset, data.len() as DeviceSize)
    }

    /// Invalidates the bytes if the memory is not host-coherent, then copies them from the
    /// range at `offset` into `out`.
    pub fn read(&self, offset: DeviceSize, out: &mut [u8]) -> Result<(), MemoryAccessError> {
        let src = self.checked_range(offset, out.len())?;
        self.invalidate(offset, out.len() as DeviceSize)?;
        // SAFETY: `src .. src + len` lies inside this allocation's mapped range; host writes to
        // it need `&mut self`, which cannot coexist with this `&self`.
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), out.as_mut_ptr(), out.len()) };
        Ok(())
    }

    fn sync(
        &self,
        offset: DeviceSize,
        len: DeviceSize,
        direction: SyncDirection,
    ) -> Result<(), MemoryAccessError> {
        if offset.checked_add(len).is_none_or(|end| end > self.size()) {
            return Err(MemoryAccessError::OutOfBounds {
                offset,
                len,
                size: self.size(),
            });
        }
        self.device_memory()
            .sync_range(self.offset + offset, len, direction)
            .map_err(MemoryAccessError::Vulkan)
    }

    /// Makes host writes to `[offset, offset + len)` of the range visible to the device. A
    /// no-op for host-coherent memory.
    pub fn flush(&self, offset: DeviceSize, len: DeviceSize) -> Result<(), MemoryAccessError> {
        self.sync(offset, len, SyncDirection::Flush)
    }

    /// Makes device writes to `[offset, offset + len)` of the range visible to the host. A
    /// no-op for host-coherent memory.
    pub fn invalidate(&self, offset: DeviceSize, len: DeviceSize) -> Result<(), MemoryAccessError> {
        self.sync(offset, len, SyncDirection::Invalidate)
    }

    /// Exports the allocation's memory object as a file descriptor of `handle_type` (see
    /// [`external_memory`](crate::external_memory)): the descriptor stands for the whole
    /// object, in which this allocation starts at [`offset`](Self::offset). For an allocation
    /// in a block, that is every allocation of the block, those made after this one is freed
    /// included, for as long as an import of the descriptor lives: export a dedicated
    /// allocation to share exactly one resource's bytes.
    #[cfg(unix)]
    pub fn export_fd(
        &self,
        handle_type: vk::ExternalMemoryHandleTypeFlags,
    ) -> Result<crate::device_memory::external::ExportedFd, crate::device_memory::MemoryObjectError>
    {
        let memory = self.device_memory();
        Ok(crate::device_memory::external::ExportedFd {
            fd: memory.export_fd(handle_type)?,
            handle_type,
            memory_size: memory.size(),
            memory_type_index: memory.memory_type_index(),
            offset: self.offset,
            size: self.size(),
        })
    }

    /// Binds `buffer` to this range (`vkBindBufferMemory`).
    ///
    /// # Safety
    ///
    /// `buffer` is a valid buffer of the allocator's device with no memory bound, whose
    /// memory requirements this allocation was made for; it must be destroyed before this
    /// allocation is dropped (or not used afterwards). When it was created with
    /// `SHADER_DEVICE_ADDRESS` usage on a device with the `bufferDeviceAddress` feature, the
    /// memory was allocated with device addresses (the allocator's or pool's `device_address`
    /// setting, on by default; VUID-vkBindBufferMemory-bufferDeviceAddress-03339).
    pub unsafe fn bind_buffer(&self, buffer: vk::Buffer) -> Result<(), MemoryAccessError> {
        let memory = self.device_memory();
        // SAFETY: the caller's contract; the range satisfies the buffer's requirements.
        unsafe {
            memory
                .device()
                .ash()
                .bind_buffer_memory(buffer, memory.handle(), self.offset)
        }
        .map_err(MemoryAccessError::Vulkan)
    }

    /// Binds `image` to this range (`vkBindImageMemory`).
    ///
    /// # Safety
    ///
    /// As for [`bind_buffer`](Self::bind_buffer), for an image.
    pub unsafe fn bind_image(&self, image: vk::Image) -> Result<(), MemoryAccessError> {
        let memory = self.device_memory();
        // SAFETY: the caller's contract; the range satisfies the image's requirements.
        unsafe {
            memory
                .device()
                .ash()
                .bind_image_memory(image, memory.handle(), self.offset)
        }
        .map_err(MemoryAccessError::Vulkan)
    }
}
