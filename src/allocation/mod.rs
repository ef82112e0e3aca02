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
//! A `MemoryAlloc` is three words (24 bytes; `Option<MemoryAlloc>` too): where its memory
//! comes from, the offset, and the size and the suballocator's handle in 32 bits each. Users
//! keep many of them, and each allocation moves one through every layer of the allocate path:
//! an array of 50,000 of them is 1.2 MB instead of 1.6 MB, and leaves more of a core's second
//! level cache to the allocator's own lines. The first word is a tagged pointer: for a range of
//! a block without a record above, the block (one word, see `BlockRef`) with the allocation
//! type in its low bits; for anything else (a dedicated memory object, or a range with a
//! record), a box with the rest. A record so costs one more heap object, made when the record
//! is. So does a size or a handle that does not fit in 32 bits (a range of 4 GiB or more, or a
//! custom suballocator's handle above `u32::MAX`): the box keeps both whole, and the third word
//! says so.

mod access;
mod meta;
mod owner;

pub use self::access::MemoryAccessError;
use self::meta::name_suffix;
pub use self::meta::UserData;
pub(crate) use self::meta::{AllocationMeta, Identity, MetaMap};
pub(crate) use self::owner::{
    ArenaLink, BlockOwner, BlockRef, Dedicated, DedicatedRegister, FreedMemoryKeeper, Registration,
};
use self::owner::{Extended, Owner, OwnerView, Place};
use crate::corruption;
use crate::device_memory::MemoryObject;
use crate::layout::DeviceSize;
use crate::suballocator::{AllocationType, Suballocation, SuballocationHandle};
use ash::vk;
use std::any::Any;
use std::backtrace::Backtrace;
use std::sync::Arc;

/// A range of device memory owned by the user. Dropping it frees the range.
// Three words, no padding: users keep many allocations, and every layer of the allocate path
// moves one. The owner word is never null: the niche of `Option<MemoryAlloc>`.
#[repr(C)]
pub struct MemoryAlloc {
    /// The block (and, for a plain block range, the allocation type), or the boxed rest.
    owner: Owner,
    offset: DeviceSize,
    /// The size and the block suballocator's handle, or [`Short::WIDE`]: then the owner is
    /// boxed, and the box holds both ([`Extended`]).
    short: Short,
}

/// An allocation's size (low 32 bits) and its block suballocator's handle (high 32 bits; 0
/// for a dedicated allocation) in one word, written and read whole: two 32-bit fields would
/// be written by two stores and copied by one 64-bit load, which the processor cannot
/// forward from the stores and waits for, on every move of a fresh allocation.
#[derive(Clone, Copy)]
struct Short(u64);

impl Short {
    /// The low half that no short size takes: the size and the handle are in the box.
    const WIDE: Self = Self(u32::MAX as u64);

    /// The two in one word, or `None` when either does not fit (the size `u32::MAX` is
    /// [`WIDE`](Self::WIDE)'s).
    #[inline]
    fn new(size: DeviceSize, handle: SuballocationHandle) -> Option<Self> {
        let handle = handle.get();
        (size < u64::from(u32::MAX) && handle >> 32 == 0).then_some(Self(size | handle << 32))
    }

    #[inline]
    fn is_wide(self) -> bool {
        self.0 as u32 == u32::MAX
    }

    #[inline]
    fn size(self) -> DeviceSize {
        self.0 & u64::from(u32::MAX)
    }

    #[inline]
    fn handle(self) -> SuballocationHandle {
        SuballocationHandle::new(self.0 >> 32)
    }
}

// `MemoryAlloc` is `Send + Sync` through its fields: `Owner` (`unsafe impl`s: a `BlockRef`, a
// shared reference to a `BlockOwner: Send + Sync`, or a box of `Send + Sync` parts). Through
// `&self` the mapping is only read; writing requires `&mut self`.

impl std::fmt::Debug for MemoryAlloc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryAlloc")
            .field("memory", &self.memory())
            .field("offset", &self.offset)
            .field("size", &self.size())
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
    #[inline(always)]
    pub(crate) fn in_block(
        block: BlockRef,
        handle: SuballocationHandle,
        offset: DeviceSize,
        size: DeviceSize,
        allocation_type: AllocationType,
        meta: Option<Arc<AllocationMeta>>,
    ) -> Self {
        match (Short::new(size, handle), meta) {
            (Some(short), None) => Self {
                owner: Owner::plain(block, allocation_type),
                offset,
                short,
            },
            (_, meta) => Self::boxed(
                Place::Block(block),
                allocation_type,
                meta,
                (offset, size, handle),
            ),
        }
    }

    /// An allocation whose owner is boxed: its range `(offset, size, handle)`, the size and
    /// handle in the short word too when they fit.
    #[cold]
    fn boxed(
        place: Place,
        allocation_type: AllocationType,
        meta: Option<Arc<AllocationMeta>>,
        (offset, size, handle): (DeviceSize, DeviceSize, SuballocationHandle),
    ) -> Self {
        Self {
            owner: Owner::extended(place, allocation_type, meta, size, handle),
            offset,
            short: Short::new(size, handle).unwrap_or(Short::WIDE),
        }
    }

    /// An allocation of the whole of a dedicated memory object of `size` bytes.
    pub(crate) fn dedicated(
        dedicated: Dedicated,
        size: DeviceSize,
        allocation_type: AllocationType,
        meta: Option<Arc<AllocationMeta>>,
    ) -> Self {
        Self::boxed(
            Place::Dedicated(dedicated),
            allocation_type,
            meta,
            (0, size, SuballocationHandle::new(0)),
        )
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
    #[inline]
    pub fn size(&self) -> DeviceSize {
        if !self.short.is_wide() {
            return self.short.size();
        }
        self.wide().0
    }

    /// The block suballocator's handle (0 for a dedicated allocation).
    #[inline]
    fn handle(&self) -> SuballocationHandle {
        if !self.short.is_wide() {
            return self.short.handle();
        }
        self.wide().1
    }

    /// The size and the handle kept in the box (`short` is [`Short::WIDE`]).
    #[cold]
    fn wide(&self) -> (DeviceSize, SuballocationHandle) {
        match self.owner.view() {
            OwnerView::Extended(e) => (e.size, e.handle),
            // `Short::WIDE` is only ever written with a boxed owner (`boxed`), which stays
            // boxed.
            OwnerView::Plain(..) => unreachable!("a plain owner word with a wide size"),
        }
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
                memory.write_mapped(self.offset, self.size(), |b| b.fill(corruption::NEW_BYTE))
            };
        }
        if meta.log {
            log::trace!(
                target: corruption::ALLOCATIONS_LOG_TARGET,
                "allocate {} bytes ({}), memory type {}, {} {:#x} at offset {}{}",
                self.size(),
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
                self.size(),
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
                    memory
                        .write_mapped(self.offset, self.size(), |b| b.fill(corruption::FREED_BYTE))
                };
            }
            return (self.offset, self.size());
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
                        allocation_size: self.size(),
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
                self.owner = Owner::extended(
                    Place::Block(block),
                    allocation_type,
                    meta,
                    self.size(),
                    self.handle(),
                );
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
        handle: SuballocationHandle,
        allocation_type: AllocationType,
    ) {
        let suballocation = Suballocation {
            offset,
            size,
            allocation_type,
            handle,
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
            None => (self.offset, self.size()),
            Some(meta) => {
                if let Place::Block(block) = &extended.place {
                    block.get().set_meta(self.offset, None);
                }
                self.disarm_debug(meta)
            }
        };
        if let Place::Block(block) = &extended.place {
            self.free_in_block(
                *block,
                offset,
                size,
                extended.handle,
                extended.allocation_type,
            );
        }
    }
}

impl Drop for MemoryAlloc {
    // Inline: the caller's drop glue calls the block's `free` straight away.
    #[inline]
    fn drop(&mut self) {
        match self.owner.view() {
            // A plain owner word never goes with `Short::WIDE` (see `in_block`): the short
            // size and handle are the range's.
            OwnerView::Plain(block, allocation_type) => self.free_in_block(
                block,
                self.offset,
                self.short.size(),
                self.short.handle(),
                allocation_type,
            ),
            // A dedicated `MemoryObject` frees itself when `owner` is dropped.
            OwnerView::Extended(extended) => self.drop_extended(extended),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_word_holds_what_fits_in_32_bits_and_leaves_the_rest_to_the_box() {
        let h = SuballocationHandle::new;
        let parts = |size, handle| Short::new(size, h(handle)).map(|s| (s.size(), s.handle()));
        assert_eq!(parts(0, 0), Some((0, h(0))));
        let (max_size, max_handle) = (u64::from(u32::MAX) - 1, u64::from(u32::MAX));
        assert_eq!(parts(max_size, max_handle), Some((max_size, h(max_handle))));
        assert!(!Short::new(max_size, h(max_handle)).unwrap().is_wide());
        // The size `u32::MAX` itself (the wide mark), any larger size and any larger handle go
        // to the box.
        assert_eq!(parts(u64::from(u32::MAX), 0), None);
        assert_eq!(parts(1 << 32, 0), None);
        assert_eq!(parts(64, 1 << 32), None);
        assert!(Short::WIDE.is_wide());
    }
}
