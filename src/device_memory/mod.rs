//! One `VkDeviceMemory` object, owned: allocated with its `pNext` chain, persistently mapped
//! when host-visible, freed on drop.
//!
//! Mapping a memory object costs a system call and an address-space reservation, and Vulkan
//! allows only one mapping per object at a time. Blocks are therefore mapped once, whole, when
//! they are created, and every allocation inside shares that mapping: there is never a second
//! map of the same object, so there is nothing to unmap twice either.
//!
//! [`MemoryObject::allocate`] is usable on its own, for a memory object the allocator does not
//! manage: it checks its arguments, respects `maxMemoryAllocationCount` and the heap budget
//! like the allocator does, and counts the object in the [`MemoryDevice`]'s totals.

pub mod external;
mod host_imports;

use self::external::{AllocateNext, ExternalMemoryImport, ImportRef, ImportStructs};
use crate::budget::BudgetError;
use crate::device::MemoryDevice;
use crate::layout::DeviceSize;
use ash::vk;
use std::ptr::NonNull;
use std::sync::Arc;

/// The resource a dedicated allocation is made for (`VkMemoryDedicatedAllocateInfo`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DedicatedAllocation {
    buffer: vk::Buffer,
    image: vk::Image,
}

impl DedicatedAllocation {
    /// A dedicated allocation for `buffer`.
    ///
    /// # Safety
    ///
    /// `buffer` is a valid buffer of the allocator's device with no memory bound, it stays
    /// valid while this value is used, and the allocation made with it is the size the buffer
    /// requires and is bound to this buffer only.
    pub unsafe fn buffer(buffer: vk::Buffer) -> Self {
        Self {
            buffer,
            image: vk::Image::null(),
        }
    }

    /// A dedicated allocation for `image`.
    ///
    /// # Safety
    ///
    /// As for [`buffer`](Self::buffer), for an image.
    pub unsafe fn image(image: vk::Image) -> Self {
        Self {
            buffer: vk::Buffer::null(),
            image,
        }
    }

    /// The resource of a dedicated-allocation structure found in a user's chain; `None` when
    /// it names none (both handles null: the memory is not dedicated).
    pub(crate) fn named(buffer: vk::Buffer, image: vk::Image) -> Option<Self> {
        (buffer != vk::Buffer::null() || image != vk::Image::null())
            .then_some(Self { buffer, image })
    }

    /// Whether this names `resource`.
    pub(crate) fn is(self, resource: crate::device::Resource) -> bool {
        match resource {
            crate::device::Resource::Buffer(b) => self.buffer == b && b != vk::Buffer::null(),
            crate::device::Resource::Image(i) => self.image == i && i != vk::Image::null(),
        }
    }
}

/// External memory handle types to export a memory object as (`VkExportMemoryAllocateInfo`).
///
/// Building one is `unsafe`: Vulkan requires the handle types to be supported and compatible
/// for every resource bound to the memory, which only the application can know (from
/// `vkGetPhysicalDeviceExternalBufferProperties` / `...ImageFormatProperties2`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExportHandleTypes(vk::ExternalMemoryHandleTypeFlags);

impl ExportHandleTypes {
    /// No export: the default.
    pub const NONE: Self = Self(vk::ExternalMemoryHandleTypeFlags::empty());

    /// Exports as `handle_types`.
    ///
    /// # Safety
    ///
    /// `VK_KHR_external_memory` (or Vulkan 1.1) is enabled, and the handle types are
    /// supported and compatible, as reported by `VkExternalBufferProperties` or
    /// `VkExternalImageFormatProperties`, for every buffer and image that will be bound to
    /// memory allocated with them, and each of those is created with a
    /// `VkExternalMemoryBufferCreateInfo` / `VkExternalMemoryImageCreateInfo` naming at least
    /// one of them (VUID-vkBindBufferMemory-memory-02726).
    pub const unsafe fn new(handle_types: vk::ExternalMemoryHandleTypeFlags) -> Self {
        Self(handle_types)
    }

    /// The handle types.
    pub const fn flags(self) -> vk::ExternalMemoryHandleTypeFlags {
        self.0
    }

    /// Whether no handle type is set.
    pub const fn is_empty(self) -> bool {
        self.0.is_empty()
    }
}

/// The old name of [`MemoryObject`] (it clashed with `vk::DeviceMemory`, the handle that
/// [`MemoryObject::handle`] returns).
#[deprecated(since = "0.2.0", note = "renamed to `MemoryObject`")]
pub type DeviceMemory = MemoryObject;

/// The old name of [`MemoryObjectCreateInfo`].
#[deprecated(since = "0.2.0", note = "renamed to `MemoryObjectCreateInfo`")]
pub type DeviceMemoryCreateInfo = MemoryObjectCreateInfo;

/// The old name of [`MemoryObjectError`].
#[deprecated(since = "0.2.0", note = "renamed to `MemoryObjectError`")]
pub type DeviceMemoryError = MemoryObjectError;

/// What to put in one `vkAllocateMemory` call.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MemoryObjectCreateInfo {
    /// The size in bytes; not zero, not above the heap's size. The default value is 0, which
    /// is rejected: set it.
    pub size: DeviceSize,
    /// The memory type index. The default value is 0.
    pub memory_type_index: u32,
    /// The resource of a dedicated allocation (`VkMemoryDedicatedAllocateInfo`), passed when
    /// `VK_KHR_dedicated_allocation` (or Vulkan 1.1) is available. The default value is `None`.
    pub dedicated: Option<DedicatedAllocation>,
    /// Export handle types, passed when external memory is available. The default value is
    /// none.
    pub export_handle_types: ExportHandleTypes,
    /// Set `VK_MEMORY_ALLOCATE_DEVICE_ADDRESS_BIT` when the `bufferDeviceAddress` feature is
    /// enabled. The default value is `false`.
    pub device_address: bool,
    /// `VK_EXT_memory_priority` priority, 0.0 ..= 1.0 (anything else, NaN included, is
    /// rejected), passed when the extension is enabled. The default value is `None` (the
    /// driver's default, 0.5).
    pub priority: Option<f32>,
    /// Fail with [`MemoryObjectError::Budget`] instead of taking the heap past its
    /// [budget](crate::budget). The check and the reservation of the bytes are one atomic
    /// step, so threads cannot pass the budget together. The default value is `false`.
    pub within_budget: bool,
    /// Import the memory instead of allocating it (see [`crate::external_memory`]). The
    /// default value is `None`.
    pub import: Option<ExternalMemoryImport>,
    /// The user's own `pNext` chain, appended after the crate's structures (see
    /// [`crate::external_memory`]). The default value is `None`.
    pub next: Option<AllocateNext>,
    #[doc(hidden)]
    pub _ne: crate::non_exhaustive::NonExhaustive,
}

impl Default for MemoryObjectCreateInfo {
    fn default() -> Self {
        Self {
            size: 0,
            memory_type_index: 0,
            dedicated: None,
            export_handle_types: ExportHandleTypes::NONE,
            device_address: false,
            priority: None,
            within_budget: false,
            import: None,
            next: None,
            _ne: crate::non_exhaustive::NonExhaustive(()),
        }
    }
}

/// Whether `priority` is a valid memory priority: finite and within 0.0 ..= 1.0.
pub(crate) fn is_valid_priority(priority: f32) -> bool {
    (0.0..=1.0).contains(&priority)
}

/// Why a memory object could not be allocated or mapped.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum MemoryObjectError {
    /// The driver is out of device memory (`VK_ERROR_OUT_OF_DEVICE_MEMORY`).
    #[error("out of device memory")]
    OutOfDeviceMemory,
    /// The driver is out of host memory (`VK_ERROR_OUT_OF_HOST_MEMORY`).
    #[error("out of host memory")]
    OutOfHostMemory,
    /// `maxMemoryAllocationCount` memory objects are alive, or the driver said
    /// `VK_ERROR_TOO_MANY_OBJECTS`.
    #[error("too many device memory objects (the device allows {max})")]
    TooManyObjects {
        /// The device's `maxMemoryAllocationCount`.
        max: u32,
    },
    /// The heap would pass its budget, and the request asked to stay within it.
    #[error(transparent)]
    Budget(#[from] BudgetError),
    /// Mapping the host-visible memory failed (the memory was freed again). For an import
    /// the import had succeeded: an imported file descriptor is consumed (closed), not the
    /// caller's any more.
    #[error("vkMapMemory failed: {0}")]
    MapFailed(vk::Result),
    /// Another Vulkan error.
    #[error("Vulkan error: {0}")]
    Vulkan(vk::Result),
    /// A memory type index that does not exist.
    #[error("memory type index {index} is out of range (the device has {count} memory types)")]
    MemoryTypeIndexOutOfRange {
        /// The index given.
        index: u32,
        /// The number of memory types.
        count: u32,
    },
    /// The memory type needs a device feature that was not claimed in
    /// [`EnabledMemoryFeatures`](crate::EnabledMemoryFeatures): `protectedMemory` for a
    /// `PROTECTED` type, `deviceCoherentMemory` for an AMD device-coherent or uncached one.
    #[error("memory type {index} needs the {feature} feature, which was not claimed")]
    MemoryTypeNeedsFeature {
        /// The memory type given.
        index: u32,
        /// The feature's name.
        feature: &'static str,
    },
    /// The size is zero or larger than the heap.
    #[error("invalid memory object size {size} (heap {heap} has {heap_size} bytes)")]
    InvalidSize {
        /// The size given.
        size: DeviceSize,
        /// The heap of the memory type.
        heap: u32,
        /// The heap's size.
        heap_size: DeviceSize,
    },
    /// A priority that is NaN or outside 0.0 ..= 1.0.
    #[error("memory priority {0} is not within 0.0 ..= 1.0")]
    InvalidPriority(f32),
    /// The call needs an extension (or API version) that was not claimed in
    /// [`EnabledMemoryFeatures`](crate::EnabledMemoryFeatures).
    #[error("{0} is needed and was not claimed")]
    ExtensionNotEnabled(&'static str),
    /// The memory type is not one the imported handle may go to.
    #[error("memory type {index} is not among the types the import allows ({allowed:#b})")]
    ImportMemoryType {
        /// The memory type given.
        index: u32,
        /// The types the driver allows for this handle.
        allowed: u32,
    },
    /// A host-pointer import cannot be a dedicated allocation.
    #[error("a host-pointer import cannot be dedicated to a resource")]
    ImportDedicated,
    /// A host pointer or the size is not a multiple of `minImportedHostPointerAlignment`.
    #[error(
        "host pointer and size must be multiples of minImportedHostPointerAlignment {alignment}"
    )]
    ImportMisaligned {
        /// The device's `minImportedHostPointerAlignment`.
        alignment: DeviceSize,
    },
    /// The user's `pNext` chain holds a structure the crate chains to the same call (for an
    /// import, any import structure).
    #[error("the user pNext chain repeats {0:?}, which the allocator chains itself")]
    DuplicateChainStructure(vk::StructureType),
    /// The user's `pNext` chain holds this structure type twice (Vulkan allows that for
    /// `VkExportMetalObjectCreateInfoEXT` only), or loops back on itself (which meets a
    /// structure again).
    #[error("the user pNext chain holds {0:?} twice, or loops back on itself")]
    RepeatedChainStructure(vk::StructureType),
    /// The host memory of a host-pointer import is (partly) imported already, by a memory
    /// object that is still alive: both would map the same bytes (see
    /// [`ExternalMemoryImport::host_pointer`](external::ExternalMemoryImport::host_pointer)).
    #[error("host memory at {address:#x} ({size} bytes) overlaps a live import of host memory")]
    ImportOverlaps {
        /// The host pointer given.
        address: usize,
        /// The size given.
        size: DeviceSize,
    },
    /// An fd import's handle type is not exactly one of `OPAQUE_FD` and `DMA_BUF_EXT` (one
    /// bit: not a set, not none; VUID-VkImportMemoryFdInfoKHR-handleType-00669).
    #[error("an fd import takes one handle type, OPAQUE_FD or DMA_BUF_EXT, not {0:?}")]
    InvalidImportHandleType(vk::ExternalMemoryHandleTypeFlags),
    /// The memory object was not allocated exportable as this (single) handle type.
    #[error("the memory is exportable as {exportable:?}, not {handle_type:?}")]
    NotExportable {
        /// The handle type asked for.
        handle_type: vk::ExternalMemoryHandleTypeFlags,
        /// The handle types it was allocated exportable as.
        exportable: vk::ExternalMemoryHandleTypeFlags,
    },
}

impl MemoryObjectError {
    fn from_vk(result: vk::Result, device: &MemoryDevice) -> Self {
        match result {
            vk::Result::ERROR_OUT_OF_DEVICE_MEMORY => Self::OutOfDeviceMemory,
            vk::Result::ERROR_OUT_OF_HOST_MEMORY => Self::OutOfHostMemory,
            // The driver's own limit: report the device's real maximum.
            vk::Result::ERROR_TOO_MANY_OBJECTS => Self::TooManyObjects {
                max: device.max_memory_allocation_count(),
            },
            other => Self::Vulkan(other),
        }
    }
}

/// An owned `VkDeviceMemory`.
pub struct MemoryObject {
    device: Arc<MemoryDevice>,
    handle: vk::DeviceMemory,
    size: DeviceSize,
    memory_type_index: u32,
    property_flags: vk::MemoryPropertyFlags,
    heap_index: u32,
    mapped: Option<NonNull<u8>>,
    /// The resource of its `VkMemoryDedicatedAllocateInfo`, if one was chained.
    dedicated: Option<DedicatedAllocation>,
    /// The handle types it is exportable as.
    export_types: vk::ExternalMemoryHandleTypeFlags,
    /// The handle type it was imported as; empty when it was allocated.
    import_type: vk::ExternalMemoryHandleTypeFlags,
    /// Whether it may lack `VK_MEMORY_ALLOCATE_DEVICE_ADDRESS_BIT` on a device with the
    /// `bufferDeviceAddress` feature: the crate did not set the flag and the user chained
    /// nothing that could have (a user chain is trusted to).
    lacks_device_address: bool,
    /// The host range it was imported from, claimed while it lives (dropped after `drop`
    /// frees the object).
    _host_import: Option<host_imports::HostImportClaim>,
}

// SAFETY: a `VkDeviceMemory` handle may be used from any thread; the mapping pointer is only
// read (never written through) by `MemoryObject` itself, and the allocations that write
// through it each own a disjoint range.
unsafe impl Send for MemoryObject {}
// SAFETY: see `Send`; no method of `MemoryObject` mutates through `&self`.
unsafe impl Sync for MemoryObject {}

impl std::fmt::Debug for MemoryObject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceMemory")
            .field("handle", &self.handle)
            .field("size", &self.size)
            .field("memory_type_index", &self.memory_type_index)
            .field("mapped", &self.mapped.is_some())
            .field("dedicated", &self.dedicated.is_some())
            .finish()
    }
}

/// Gives back the memory-object slot and the heap bytes of a failed allocation.
struct Reservation<'a> {
    device: &'a MemoryDevice,
    heap: u32,
    size: DeviceSize,
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        crate::budget::release(self.device, self.heap, self.size);
        self.device.release_memory_object();
    }
}

impl MemoryObject {
    /// Allocates and, for host-visible types, maps a memory object.
    ///
    /// Checks the arguments first (the memory type exists and needs no feature that was not
    /// claimed, the size is not zero and fits the heap, the priority is valid), then reserves
    /// one of the device's `maxMemoryAllocationCount` objects and the bytes of the heap
    /// (checking the budget when `within_budget` is set), and only then calls the driver; on
    /// any failure everything is given back.
    pub fn allocate(
        device: Arc<MemoryDevice>,
        info: &MemoryObjectCreateInfo,
    ) -> Result<Self, MemoryObjectError> {
        let props = device.memory_properties();
        let memory_type = props.memory_type(info.memory_type_index).ok_or(
            MemoryObjectError::MemoryTypeIndexOutOfRange {
                index: info.memory_type_index,
                count: props.memory_types.len() as u32,
            },
        )?;
        if let Some(feature) = device.features().missing_for(memory_type.property_flags) {
            return Err(MemoryObjectError::MemoryTypeNeedsFeature {
                index: info.memory_type_index,
                feature,
            });
        }
        let heap = memory_type.heap_index;
        let heap_size = props.heap_size_of_type(info.memory_type_index).unwrap_or(0);
        if info.size == 0 || info.size > heap_size {
            return Err(MemoryObjectError::InvalidSize {
                size: info.size,
                heap,
                heap_size,
            });
        }
        if let Some(p) = info.priority.filter(|&p| !is_valid_priority(p)) {
            return Err(MemoryObjectError::InvalidPriority(p));
        }
        let property_flags = memory_type.property_flags;
        let features = *device.features();
        let dedicated = info.dedicated.filter(|_| features.dedicated_allocation);
        let export = !info.export_handle_types.is_empty() && features.external_memory;
        let flags = info.device_address && features.buffer_device_address;
        let priority = info.priority.filter(|_| features.memory_priority);
        let mut crate_types = smallvec::SmallVec::<[vk::StructureType; 4]>::new();
        for (chained, s_type) in [
            (
                dedicated.is_some(),
                vk::StructureType::MEMORY_DEDICATED_ALLOCATE_INFO,
            ),
            (export, vk::StructureType::EXPORT_MEMORY_ALLOCATE_INFO),
            (flags, vk::StructureType::MEMORY_ALLOCATE_FLAGS_INFO),
            (
                priority.is_some(),
                vk::StructureType::MEMORY_PRIORITY_ALLOCATE_INFO_EXT,
            ),
        ] {
            if chained {
                crate_types.push(s_type);
            }
        }
        let crate_export = if export {
            info.export_handle_types.flags()
        } else {
            vk::ExternalMemoryHandleTypeFlags::empty()
        };
        let plan =
            crate::device_memory::external::check(&device, info, &crate_types, crate_export)?;
        // Before anything else is reserved, so that no two live objects map the same host
        // bytes (the crate's import or one in the user's chain, which a pool would repeat for
        // every block); given back when the object is freed or this call fails.
        let host_import = match plan.host_pointer {
            Some(pointer) => Some(host_imports::HostImportClaim::claim(
                pointer.as_ptr() as usize,
                info.size,
            )?),
            None => None,
        };
        if !device.reserve_memory_object() {
            return Err(MemoryObjectError::TooManyObjects {
                max: device.max_memory_allocation_count(),
            });
        }
        if let Err(e) = crate::budget::reserve(&device, heap, info.size, info.within_budget) {
            device.release_memory_object();
            return Err(match e {
                crate::budget::ReserveError::Budget(b) => b.into(),
                // The user's heap size limit: as a driver out of memory.
                crate::budget::ReserveError::HeapSizeLimit => MemoryObjectError::OutOfDeviceMemory,
            });
        }
        let reservation = Reservation {
            device: &device,
            heap,
            size: info.size,
        };
        let mut dedicated_info = vk::MemoryDedicatedAllocateInfo::default();
        let mut export_info = vk::ExportMemoryAllocateInfo::default();
        let mut flags_info = vk::MemoryAllocateFlagsInfo::default();
        let mut priority_info = vk::MemoryPriorityAllocateInfoEXT::default();
        let mut import_structs = ImportStructs::default();
        let mut allocate_info = vk::MemoryAllocateInfo::default()
            .allocation_size(info.size)
            .memory_type_index(info.memory_type_index);
        // The user's chain goes first here: `push_next` inserts the crate's structures
        // before it, so it ends the chain.
        if let Some(next) = info.next {
            allocate_info.p_next = next.as_ptr();
        }
        if let Some(d) = dedicated {
            dedicated_info = dedicated_info.buffer(d.buffer).image(d.image);
            allocate_info = allocate_info.push_next(&mut dedicated_info);
        }
        if export {
            export_info = export_info.handle_types(info.export_handle_types.flags());
            allocate_info = allocate_info.push_next(&mut export_info);
        }
        if flags {
            flags_info = flags_info.flags(vk::MemoryAllocateFlags::DEVICE_ADDRESS);
            allocate_info = allocate_info.push_next(&mut flags_info);
        }
        if let Some(p) = priority {
            priority_info = priority_info.priority(p);
            allocate_info = allocate_info.push_next(&mut priority_info);
        }
        if let Some(import) = info.import {
            allocate_info = match import_structs.fill(import) {
                ImportRef::Fd(s) => allocate_info.push_next(s),
                ImportRef::Host(s) => allocate_info.push_next(s),
            };
        }
        let ash = device.ash();
        // SAFETY: the chain above only holds structures whose extensions or features the user
        // declared enabled (`MemoryDevice::new` contract) with valid values (a priority in range,
        // export types vouched for by `ExportHandleTypes::new`'s contract, a valid dedicated
        // resource by `DedicatedAllocation`'s, an import by `ExternalMemoryImport`'s and
        // checked against the driver's rules, a user chain by `AllocateNext::new`'s, with no
        // structure twice); the memory type exists and the size is within its heap (checked
        // above).
        let handle = unsafe { ash.allocate_memory(&allocate_info, None) }
            .map_err(|e| MemoryObjectError::from_vk(e, &device))?;
        std::mem::forget(reservation);
        device.record_memory_allocated(heap, info.size);
        let mut memory = Self {
            device,
            handle,
            size: info.size,
            memory_type_index: info.memory_type_index,
            property_flags,
            heap_index: heap,
            mapped: None,
            // The user's dedicated structure binds the memory to its resource just as the
            // crate's would: the aliasing checks must know it.
            dedicated: dedicated.or(plan.chain_dedicated),
            export_types: plan.export_types,
            import_type: plan.import_type,
            lacks_device_address: features.buffer_device_address && !flags && info.next.is_none(),
            _host_import: host_import,
        };
        // Once the object owns the handle: a callback that panics (which it must not) unwinds
        // through `memory`'s drop, which frees the memory, its accounting and its host claim
        // together, instead of leaking an import whose host range would be claimable again.
        memory
            .device
            .notify_allocated(info.memory_type_index, handle, info.size);
        if property_flags.contains(vk::MemoryPropertyFlags::HOST_VISIBLE) {
            // SAFETY: the memory is host-visible, owned by us and not mapped yet.
            let ptr = unsafe {
                memory.device.ash().map_memory(
                    handle,
                    0,
                    vk::WHOLE_SIZE,
                    vk::MemoryMapFlags::empty(),
                )
            }
            .map_err(MemoryObjectError::MapFailed)?;
            // On failure `memory` is dropped here, which frees it.
            memory.mapped = NonNull::new(ptr.cast());
        }
        Ok(memory)
    }

    /// The device.
    pub fn device(&self) -> &Arc<MemoryDevice> {
        &self.device
    }

    /// The Vulkan handle.
    pub fn handle(&self) -> vk::DeviceMemory {
        self.handle
    }

    /// The size in bytes.
    pub fn size(&self) -> DeviceSize {
        self.size
    }

    /// The memory type index.
    pub fn memory_type_index(&self) -> u32 {
        self.memory_type_index
    }

    /// The heap the memory type lives in.
    pub fn heap_index(&self) -> u32 {
        self.heap_index
    }

    /// The memory type's property flags.
    pub fn property_flags(&self) -> vk::MemoryPropertyFlags {
        self.property_flags
    }

    /// Whether this object was allocated for one resource with
    /// `VkMemoryDedicatedAllocateInfo`.
    pub fn is_dedicated(&self) -> bool {
        self.dedicated.is_some()
    }

    /// The external handle types the object was allocated exportable as (by the crate's
    /// `VkExportMemoryAllocateInfo` or one in the user's chain).
    pub fn export_types(&self) -> vk::ExternalMemoryHandleTypeFlags {
        self.export_types
    }

    /// Whether a buffer with `SHADER_DEVICE_ADDRESS` usage must not be bound to it: the
    /// device has the `bufferDeviceAddress` feature and the object was allocated without
    /// `VK_MEMORY_ALLOCATE_DEVICE_ADDRESS_BIT` (VUID-vkBindBufferMemory-bufferDeviceAddress-03339).
    pub(crate) fn lacks_device_address(&self) -> bool {
        self.lacks_device_address
    }

    /// The external handle type the object was imported as (by
    /// [`MemoryObjectCreateInfo::import`] or an import structure in the user's chain); empty
    /// when it was allocated, not imported.
    pub fn import_type(&self) -> vk::ExternalMemoryHandleTypeFlags {
        self.import_type
    }

    /// The resource this object was allocated for with `VkMemoryDedicatedAllocateInfo`.
    pub(crate) fn dedicated_resource(&self) -> Option<DedicatedAllocation> {
        self.dedicated
    }

    /// The start of the persistent mapping, if the memory is host-visible.
    pub fn mapped_ptr(&self) -> Option<NonNull<u8>> {
        self.mapped
    }

    /// Whether host writes need flushing and device writes need invalidating.
    pub fn needs_flush(&self) -> bool {
        self.mapped.is_some()
            && !self
                .property_flags
                .contains(vk::MemoryPropertyFlags::HOST_COHERENT)
    }

    /// Flushes (or invalidates) `[offset, offset + size)` of this object, widened to
    /// `nonCoherentAtomSize` and clamped to the object, when the memory is not host-coherent.
    ///
    /// The allocator lays out non-coherent memory so that the widened range of an
    /// allocation never leaves it (see [`crate::allocator#non-coherent-memory`]).
    pub(crate) fn sync_range(
        &self,
        offset: DeviceSize,
        size: DeviceSize,
        direction: SyncDirection,
    ) -> Result<(), vk::Result> {
        if !self.needs_flush() || size == 0 {
            return Ok(());
        }
        let (start, end) = crate::layout::atom_range(
            offset,
            size,
            self.device.non_coherent_atom_size(),
            self.size,
        );
        let range = vk::MappedMemoryRange::default()
            .memory(self.handle)
            .offset(start)
            .size(end - start);
        let ash = self.device.ash();
        // SAFETY: the memory is mapped whole for its lifetime; the range lies inside it, starts
        // on an atom boundary and either ends on one or at the end of the object.
        unsafe {
            match direction {
                SyncDirection::Flush => ash.flush_mapped_memory_ranges(&[range]),
                SyncDirection::Invalidate => ash.invalidate_mapped_memory_ranges(&[range]),
            }
        }
    }
}

impl MemoryObject {
    /// Looks through `[offset, offset + len)` of the mapping for the first byte `find` picks
    /// out: the range is copied onto the stack a piece at a time (pieces of [`SCAN_PIECE`]
    /// bytes, the last one shorter) and `find` returns the index of the byte it wants in a
    /// piece, or `None`. Returns that byte's index in the range; `None` when nothing is found,
    /// the memory is not host-visible or the range leaves the object.
    ///
    /// In non-coherent memory the range is read twice: as the host sees it (which shows host
    /// writes not flushed yet), then, if nothing was found, after invalidating the atoms that
    /// `invalidate` allows (which shows device writes). [`ScanInvalidate::Inside`] never
    /// touches a byte outside the range, so a scan of one allocation's margins cannot throw
    /// away the unflushed writes of the allocation that shares an atom with them.
    pub(crate) fn scan_mapped(
        &self,
        offset: DeviceSize,
        len: DeviceSize,
        invalidate: ScanInvalidate,
        mut find: impl FnMut(&[u8]) -> Option<usize>,
    ) -> Option<DeviceSize> {
        let base = self.mapped?;
        if offset.checked_add(len)? > self.size {
            return None;
        }
        let mut scan = || {
            let mut piece = [0u8; SCAN_PIECE];
            let mut done = 0;
            while done < len {
                let n = (len - done).min(SCAN_PIECE as DeviceSize) as usize;
                // SAFETY: the piece lies inside the object (checked above), which is mapped
                // whole for its lifetime. The bytes may be written meanwhile (by the GPU, or
                // the misbehaving writer a margin check is looking for); they are copied,
                // never referenced.
                unsafe {
                    std::ptr::copy_nonoverlapping(
                        base.as_ptr().add((offset + done) as usize),
                        piece.as_mut_ptr(),
                        n,
                    )
                };
                if let Some(at) = find(&piece[..n]) {
                    return Some(done + at as DeviceSize);
                }
                done += n as DeviceSize;
            }
            None
        };
        if let Some(found) = scan() {
            return Some(found);
        }
        if !self.needs_flush() {
            return None;
        }
        let (start, end) = match invalidate {
            ScanInvalidate::Inside => crate::layout::atoms_inside(
                offset,
                len,
                self.device.non_coherent_atom_size(),
                self.size,
            ),
            ScanInvalidate::Widened => crate::layout::atom_range(
                offset,
                len,
                self.device.non_coherent_atom_size(),
                self.size,
            ),
        };
        if start == end {
            return None;
        }
        // The range is already on atoms (or ends at the object's end): `sync_range` keeps it.
        self.sync_range(start, end - start, SyncDirection::Invalidate)
            .ok()?;
        scan()
    }

    /// Lets `write` fill `[offset, offset + len)` of the mapping, then flushes it; does
    /// nothing when the memory is not host-visible or the range leaves the object.
    ///
    /// # Safety
    ///
    /// Nothing else reads or writes these bytes meanwhile (they belong to an allocation the
    /// caller owns, and the GPU is not using them).
    pub(crate) unsafe fn write_mapped(
        &self,
        offset: DeviceSize,
        len: DeviceSize,
        write: impl FnOnce(&mut [u8]),
    ) {
        let Some(base) = self.mapped else {
            return;
        };
        if offset.checked_add(len).is_none_or(|end| end > self.size) {
            return;
        }
        // SAFETY: the range lies inside the mapped object, and the caller guarantees that
        // nothing else accesses it while the slice lives.
        let bytes = unsafe {
            std::slice::from_raw_parts_mut(base.as_ptr().add(offset as usize), len as usize)
        };
        write(bytes);
        let _ = self.sync_range(offset, len, SyncDirection::Flush);
    }
}

/// The bytes [`MemoryObject::scan_mapped`] copies at a time: a multiple of the margins'
/// chunk, so that every piece starts at the same phase of the magic word.
pub(crate) const SCAN_PIECE: usize = 8 * crate::corruption::CHUNK;

/// Which atoms [`MemoryObject::scan_mapped`] may invalidate in non-coherent memory before it
/// reads the range a second time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ScanInvalidate {
    /// Only the atoms wholly inside the range: the bytes of an atom it shares with its
    /// neighbours are read as the host sees them. For ranges next to bytes that someone else
    /// owns (a live allocation's margins, checked while the application writes it).
    Inside,
    /// The range widened to whole atoms. Only when every byte of those atoms is the
    /// caller's to lose (the margins of an allocation being freed: its suballocation starts
    /// and ends on atoms).
    Widened,
}

/// Which way [`MemoryObject::sync_range`] makes writes visible.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SyncDirection {
    /// Host writes to the device.
    Flush,
    /// Device writes to the host.
    Invalidate,
}

impl Drop for MemoryObject {
    fn drop(&mut self) {
        self.device
            .notify_freeing(self.memory_type_index, self.handle, self.size);
        let ash = self.device.ash();
        // SAFETY: we own the handle; every allocation inside it holds a reference to its
        // block (or owns this object), so none is alive. Freeing also unmaps.
        unsafe { ash.free_memory(self.handle, None) };
        self.device.record_memory_freed(self.heap_index, self.size);
        self.device.release_memory_object();
    }
}
