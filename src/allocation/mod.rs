//! [`MemoryAlloc`]: what the user holds, and gives back by dropping it.
//!
//! An allocation is a range `[offset, offset + size)` of a `VkDeviceMemory` object, either a
//! block shared with other allocations or a dedicated object of its own. When the memory is
//! host-visible the range is reachable through the block's persistent mapping, and
//! [`write`](MemoryAlloc::write) / [`read`](MemoryAlloc::read) copy through it with bounds
//! checks, flushing or invalidating the touched bytes when the memory is not host-coherent
//! (widened to `nonCoherentAtomSize`, clamped to the memory object).
//!
//! Dropping a `MemoryAlloc` returns its range to its block (from any thread) or frees its
//! dedicated memory object.
//!
//! # Names and user data
//!
//! An allocation can carry a name ([`AllocationCreateInfo::name`](crate::AllocationCreateInfo::name),
//! [`MemoryAlloc::set_name`]), user data of the user's choosing (any `Debug + Send + Sync`
//! value: [`MemoryAlloc::set_user_data`]) and, when the allocator captures them, the
//! backtrace of where it was made. They live in one shared record that the allocation and
//! its block both point to, so that statistics snapshots, the JSON dump, the SVG memory map
//! and the leak report show them; an allocation that has none of them costs nothing extra.
//!
//! # Size
//!
//! A `MemoryAlloc` is four words (32 bytes; `Option<MemoryAlloc>` too): where its memory
//! comes from, the suballocator's handle, the offset and the size. Users keep many of them,
//! and each allocation moves one through every layer of the allocate path: an array of them
//! holds two in a cache line. The first word is a tagged pointer: for a range of a block
//! without a record above, the block (one word, see `BlockRef`) with the allocation type in
//! its low bits; for anything else (a dedicated memory object, or a range with a record), a
//! box with the rest. A record so costs one more heap object, made when the record is.

mod meta;
mod owner;

use self::meta::name_suffix;
pub use self::meta::UserData;
pub(crate) use self::meta::{AllocationMeta, Identity, MetaMap};
pub(crate) use self::owner::{
    ArenaLink, BlockOwner, BlockRef, Dedicated, DedicatedRegister, FreedMemoryKeeper, Registration,
};
use self::owner::{Extended, Owner, OwnerView, Place};
use crate::corruption;
use crate::device_memory::{MemoryObject, SyncDirection};
use crate::layout::DeviceSize;
use crate::suballocator::{AllocationType, Suballocation, SuballocationHandle};
use ash::vk;
use std::any::Any;
use std::backtrace::Backtrace;
use std::fmt::Debug;
use std::ptr::NonNull;
use std::sync::Arc;

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

/// A range of device memory owned by the user. Dropping it frees the range.
// Four words, no padding: users keep many allocations, and every layer of the allocate path
// moves one. The owner word is never null: the niche of `Option<MemoryAlloc>`.
#[repr(C)]
pub struct MemoryAlloc {
    /// The block (and, for a plain block range, the allocation type), or the boxed rest.
    owner: Owner,
    /// The block suballocator's handle (unused for a dedicated allocation).
    handle: SuballocationHandle,
    offset: DeviceSize,
    size: DeviceSize,
}

// `MemoryAlloc` is `Send + Sync` through its fields: `Owner` (`unsafe impl`s: a `BlockRef`, a
// shared reference to a `BlockOwner: Send + Sync`, or a box of `Send + Sync` parts). Through
// `&self` the mapping is only read; writing requires `&mut self`.

impl std::fmt::Debug for MemoryAlloc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryAlloc")
            .field("memory", &self.memory())
            .field("offset", &self.offset)
            .field("size", &self.size)
            .field("memory_type_index", &self.memory_type_index())
            .field("dedicated", &self.is_dedicated())
            .field("allocation_type", &self.allocation_type())
            .field("name", &self.name())
            .field("user_data", &self.user_data())
            .finish()
    }
}

impl MemoryAlloc {
    /// An allocation of `size` bytes at `offset` of `block`'s memory, suballocated with
    /// `handle`.
    #[inline]
    pub(crate) fn in_block(
        block: BlockRef,
        handle: SuballocationHandle,
        offset: DeviceSize,
        size: DeviceSize,
        allocation_type: AllocationType,
        meta: Option<Arc<AllocationMeta>>,
    ) -> Self {
        let owner = match meta {
            None => Owner::plain(block, allocation_type),
            meta => Owner::extended(Place::Block(block), allocation_type, meta),
        };
        Self {
            owner,
            handle,
            offset,
            size,
        }
    }

    /// An allocation of the whole of a dedicated memory object of `size` bytes.
    pub(crate) fn dedicated(
        dedicated: Dedicated,
        size: DeviceSize,
        allocation_type: AllocationType,
        meta: Option<Arc<AllocationMeta>>,
    ) -> Self {
        Self {
            owner: Owner::extended(Place::Dedicated(dedicated), allocation_type, meta),
            handle: SuballocationHandle::new(0),
            offset: 0,
            size,
        }
    }

    /// The metadata record, if the allocation has one.
    #[inline]
    fn meta(&self) -> Option<&Arc<AllocationMeta>> {
        match self.owner.view() {
            OwnerView::Plain(..) => None,
            OwnerView::Extended(e) => e.meta.as_ref(),
        }
    }

    /// A copy of the metadata record, or an empty one: the base of a changed record.
    fn meta_copy(&self) -> AllocationMeta {
        self.meta().map(Arc::as_ref).cloned().unwrap_or_default()
    }

    pub(crate) fn device_memory(&self) -> &MemoryObject {
        match self.owner.place() {
            Ok(block) => block.memory(),
            Err(dedicated) => &dedicated.memory,
        }
    }

    /// The `VkDeviceMemory` the range lives in.
    pub fn memory(&self) -> vk::DeviceMemory {
        self.device_memory().handle()
    }

    /// The offset of the range in [`memory`](Self::memory).
    pub fn offset(&self) -> DeviceSize {
        self.offset
    }

    /// The size of the range: the bytes the allocation may use, as requested (in memory that
    /// is not host-coherent, rounded up to whole `nonCoherentAtomSize` atoms, see
    /// [non-coherent memory](crate::allocator#non-coherent-memory), except with debug
    /// margins: then the margins lie around exactly the size requested, and the atoms are
    /// whole around the margins).
    ///
    /// The [statistics](crate::stats) count what the block holds for the allocation, which
    /// can be more: alignment padding, a buddy order rounded up to a power of two, or a whole
    /// slot of a [`SlotAllocator`](crate::SlotAllocator) (a 64-byte request in a
    /// `SlotAllocator<256>` has `size()` 64 and counts 256 in the statistics).
    pub fn size(&self) -> DeviceSize {
        self.size
    }

    /// The memory type the range was allocated from.
    pub fn memory_type_index(&self) -> u32 {
        self.device_memory().memory_type_index()
    }

    /// The property flags of that memory type.
    pub fn memory_property_flags(&self) -> vk::MemoryPropertyFlags {
        self.device_memory().property_flags()
    }

    /// Whether the allocation has a memory object of its own.
    pub fn is_dedicated(&self) -> bool {
        self.owner.place().is_err()
    }

    /// The resource kind the range was requested for.
    pub fn allocation_type(&self) -> AllocationType {
        match self.owner.view() {
            OwnerView::Plain(_, allocation_type) => allocation_type,
            OwnerView::Extended(e) => e.allocation_type,
        }
    }

    /// The allocation's name (from `AllocationCreateInfo::name` or [`set_name`](Self::set_name)),
    /// if any.
    pub fn name(&self) -> Option<&str> {
        self.meta()?.name.as_deref()
    }

    /// The user data (from `AllocationCreateInfo::user_data` or
    /// [`set_user_data`](Self::set_user_data)), if any.
    pub fn user_data(&self) -> Option<&Arc<dyn UserData>> {
        self.meta()?.user_data.as_ref()
    }

    /// The user data, if there is some of type `T`.
    pub fn user_data_as<T: Any>(&self) -> Option<&T> {
        // Through the `dyn UserData` itself: the `Arc` is `UserData` too.
        let data: &dyn UserData = &**self.user_data()?;
        data.as_any().downcast_ref()
    }

    /// Where the allocation was made, when the allocator captures backtraces.
    pub fn backtrace(&self) -> Option<&Backtrace> {
        self.meta()?.backtrace.as_deref()
    }

    /// Renames the allocation (`None` removes the name); statistics, dumps and leak reports
    /// show the new name.
    pub fn set_name(&mut self, name: Option<Arc<str>>) {
        let old = self.meta_copy();
        self.replace_meta(AllocationMeta { name, ..old }.shared());
    }

    /// Attaches user data (`None` removes it); statistics, dumps and leak reports show its
    /// `Debug` text.
    pub fn set_user_data(&mut self, user_data: Option<Arc<dyn UserData>>) {
        let old = self.meta_copy();
        self.replace_meta(AllocationMeta { user_data, ..old }.shared());
    }

    /// The allocation's [identity](AllocationMeta::identity), given to it now if it has none.
    pub(crate) fn identity(&mut self) -> Identity {
        if let Some(identity) = self.meta().and_then(|m| m.identity) {
            return identity;
        }
        let identity = Identity::new();
        let old = self.meta_copy();
        self.replace_meta(
            AllocationMeta {
                identity: Some(identity),
                ..old
            }
            .shared(),
        );
        identity
    }

    /// Its block's count of removed metadata records (see [`BlockOwner::removals`]); `None`
    /// for a dedicated allocation.
    pub(crate) fn block_removals(&self) -> Option<u64> {
        self.owner.place().ok().map(|block| block.removals())
    }

    /// The allocation's [identity](AllocationMeta::identity), if it was given one.
    pub(crate) fn identity_if_any(&self) -> Option<Identity> {
        self.meta()?.identity
    }

    /// Makes this new allocation (a defragmentation's destination) carry what `source`
    /// carries now (name, user data, backtrace, identity, debug flags), keeping its own
    /// margins: the allocation `source` stood for goes on here.
    pub(crate) fn carry_over(&mut self, source: &MemoryAlloc) {
        let guard = self.meta().and_then(|m| m.guard);
        let carried = source.meta_copy();
        self.replace_meta(AllocationMeta { guard, ..carried }.shared());
    }

    /// Applies the debug aids of a new allocation: fills its margins with the magic pattern
    /// and the allocation with the new-memory pattern (host-visible memory only), and logs it.
    pub(crate) fn arm_debug(&self) {
        let Some(meta) = self.meta() else {
            return;
        };
        let memory = self.device_memory();
        if let Some(guard) = meta.guard {
            for (start, end) in guard.margins(self.offset) {
                // SAFETY: the margins belong to this new allocation's suballocation, which
                // nothing else uses.
                unsafe { memory.write_mapped(start, end - start, corruption::fill_margin) };
            }
        }
        if meta.fill {
            // SAFETY: the allocation is new and owned by the caller; nothing uses it yet.
            unsafe {
                memory.write_mapped(self.offset, self.size, |b| b.fill(corruption::NEW_BYTE))
            };
        }
        if meta.log {
            log::trace!(
                target: corruption::ALLOCATIONS_LOG_TARGET,
                "allocate {} bytes ({}), memory type {}, {} {:#x} at offset {}{}",
                self.size,
                self.allocation_type().name(),
                memory.memory_type_index(),
                if self.is_dedicated() { "dedicated memory" } else { "block" },
                ash::vk::Handle::as_raw(memory.handle()),
                self.offset,
                name_suffix(meta)
            );
        }
    }

    /// The debug aids of a free: checks the margins (logging damage at the `error` level),
    /// fills the freed bytes with the freed-memory pattern, logs the free. Returns the
    /// suballocation's offset and size.
    fn disarm_debug(&self, meta: &AllocationMeta) -> (DeviceSize, DeviceSize) {
        let memory = self.device_memory();
        if meta.log {
            log::trace!(
                target: corruption::ALLOCATIONS_LOG_TARGET,
                "free {} bytes, memory type {}, {:#x} at offset {}{}",
                self.size,
                memory.memory_type_index(),
                ash::vk::Handle::as_raw(memory.handle()),
                self.offset,
                name_suffix(meta)
            );
        }
        let Some(guard) = meta.guard else {
            if meta.fill && !self.is_dedicated() {
                // SAFETY: the allocation is being dropped by its owner: nothing uses it.
                unsafe {
                    memory.write_mapped(self.offset, self.size, |b| b.fill(corruption::FREED_BYTE))
                };
            }
            return (self.offset, self.size);
        };
        for (i, (start, end)) in guard.margins(self.offset).into_iter().enumerate() {
            // The allocation is being freed: every byte of its suballocation's atoms is the
            // dropper's to lose, so the margins are read after an invalidate of their atoms.
            let damage = memory.scan_mapped(
                start,
                end - start,
                crate::device_memory::ScanInvalidate::Widened,
                corruption::first_damage,
            );
            if let Some(at) = damage {
                log::error!(
                    target: corruption::LOG_TARGET,
                    "freed {}",
                    corruption::DamagedMargin {
                        memory_type_index: memory.memory_type_index(),
                        memory: ash::vk::Handle::as_raw(memory.handle()),
                        offset: start + at,
                        after: i == 1,
                        allocation_offset: self.offset,
                        allocation_size: self.size,
                        name: meta.name.clone(),
                        pool: None,
                    }
                );
            }
        }
        let start = self.offset - guard.front;
        if meta.fill {
            // SAFETY: as above, the whole suballocation.
            unsafe { memory.write_mapped(start, guard.held, |b| b.fill(corruption::FREED_BYTE)) };
        }
        (start, guard.held)
    }

    /// Installs new metadata here and where the block (or register) keeps it.
    fn replace_meta(&mut self, meta: Option<Arc<AllocationMeta>>) {
        if self.meta().is_none() && meta.is_none() {
            return;
        }
        match self.owner.view() {
            OwnerView::Plain(block, allocation_type) => {
                block.get().set_meta(self.offset, meta.clone());
                // Plain no longer: the record goes to the heap with the rest.
                self.owner = Owner::extended(Place::Block(block), allocation_type, meta);
                return;
            }
            OwnerView::Extended(e) => match &e.place {
                Place::Block(block) => block.get().set_meta(self.offset, meta.clone()),
                Place::Dedicated(d) => d
                    .registration
                    .register
                    .set_meta(d.registration.id, meta.clone()),
            },
        }
        if let Some(e) = self.owner.extended_mut() {
            e.meta = meta;
        }
    }

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
        if offset.checked_add(len64).is_none_or(|end| end > self.size) {
            return Err(MemoryAccessError::OutOfBounds {
                offset,
                len: len64,
                size: self.size,
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
        if offset.checked_add(len).is_none_or(|end| end > self.size) {
            return Err(MemoryAccessError::OutOfBounds {
                offset,
                len,
                size: self.size,
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
            size: self.size,
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

impl MemoryAlloc {
    /// Returns the suballocation at `offset` of `size` bytes to `block`, and the allocations'
    /// shared reference to it when that was its last live allocation.
    #[inline]
    fn free_in_block(
        &self,
        block: BlockRef,
        offset: DeviceSize,
        size: DeviceSize,
        allocation_type: AllocationType,
    ) {
        let suballocation = Suballocation {
            offset,
            size,
            allocation_type,
            handle: self.handle,
        };
        // SAFETY: these are the fields of the suballocation this block handed out for this
        // allocation, unchanged, and this is the only place that returns it, once, when the
        // allocation dies.
        if unsafe { block.get().free(suballocation) } {
            // SAFETY: that was the owner's last live allocation, and this one is dead:
            // `block` is not used again.
            unsafe { block.release() };
        }
    }

    /// The drop of an allocation that is not a plain block range: its metadata record (debug
    /// aids) first, then its range; a dedicated memory object goes with the owner word.
    #[cold]
    fn drop_extended(&self, extended: &Extended) {
        let (offset, size) = match &extended.meta {
            None => (self.offset, self.size),
            Some(meta) => {
                if let Place::Block(block) = &extended.place {
                    block.get().set_meta(self.offset, None);
                }
                self.disarm_debug(meta)
            }
        };
        if let Place::Block(block) = &extended.place {
            self.free_in_block(*block, offset, size, extended.allocation_type);
        }
    }
}

impl Drop for MemoryAlloc {
    // Inline: the caller's drop glue calls the block's `free` straight away.
    #[inline]
    fn drop(&mut self) {
        match self.owner.view() {
            OwnerView::Plain(block, allocation_type) => {
                self.free_in_block(block, self.offset, self.size, allocation_type)
            }
            // A dedicated `MemoryObject` frees itself when `owner` is dropped.
            OwnerView::Extended(extended) => self.drop_extended(extended),
        }
    }
}
