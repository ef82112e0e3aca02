//! External memory, both ways, and the user's own `vkAllocateMemory` `pNext` chain.
//!
//! - **Export.** Memory allocated with export handle types
//!   ([`MemoryObjectCreateInfo::export_handle_types`],
//!   [`PoolCreateInfo::export_handle_types`](crate::PoolCreateInfo::export_handle_types) or the
//!   allocator's per-type setting) can be exported as a POSIX file descriptor with
//!   [`MemoryObject::export_fd`] / [`MemoryAlloc::export_fd`](crate::MemoryAlloc::export_fd)
//!   (`vkGetMemoryFdKHR`, `VK_KHR_external_memory_fd`). The descriptor stands for the whole
//!   memory object: an allocation inside a block is found at its
//!   [`offset`](crate::MemoryAlloc::offset) in it, so export a dedicated allocation to share
//!   exactly one resource. Win32 handles are not wrapped; the raw handle of
//!   [`MemoryObject::handle`] with `VK_KHR_external_memory_win32` is the extension point.
//! - **Import.** [`ExternalMemoryImport`] names what to import, a file descriptor
//!   (`VkImportMemoryFdInfoKHR`) or a host allocation (`VkImportMemoryHostPointerInfoEXT`,
//!   `VK_EXT_external_memory_host`: zero-copy upload of data the application already has);
//!   put it in [`MemoryObjectCreateInfo::import`], or import as an allocation with
//!   [`GenericMemoryAllocator::import_memory`](crate::GenericMemoryAllocator::import_memory).
//!   The rules checked before the driver is called: an fd import names exactly one handle
//!   type, `OPAQUE_FD` or `DMA_BUF_EXT`
//!   ([`InvalidImportHandleType`](MemoryObjectError::InvalidImportHandleType); also for a
//!   `VkImportMemoryFdInfoKHR` in the user's chain); the extension is claimed
//!   ([`EnabledMemoryFeatures::external_memory_fd`](crate::EnabledMemoryFeatures::external_memory_fd),
//!   [`external_memory_host`](crate::EnabledMemoryFeatures::external_memory_host)); a host
//!   pointer and the size are multiples of `minImportedHostPointerAlignment`, the memory type
//!   is one `vkGetMemoryHostPointerPropertiesEXT` allows, the import is not dedicated, and no
//!   live import holds any of its bytes (two allocations would map them,
//!   [`MemoryObjectError::ImportOverlaps`]); an
//!   fd of a non-opaque handle type goes to a memory type `vkGetMemoryFdPropertiesKHR`
//!   allows. For an *opaque* fd Vulkan offers no query: the memory type and size must be
//!   those of the exported object (what [`ExportedFd`] carries), and memory exported as
//!   dedicated to a resource must be imported dedicated to a resource made with the same
//!   parameters. Imported memory is mapped like any other when its type is host-visible.
//! - **A user `pNext` chain** ([`AllocateNext`], VMA's `pMemoryAllocateNext`): appended after
//!   the structures the crate chains itself (dedicated, export, allocate flags, priority,
//!   import), for a custom pool's blocks and dedicated allocations
//!   ([`PoolCreateInfo::memory_allocate_next`](crate::PoolCreateInfo::memory_allocate_next))
//!   or one memory object ([`MemoryObjectCreateInfo::next`]). A pool's chain holds no import
//!   structure (`VkImportMemoryFdInfoKHR`, `VkImportMemoryHostPointerInfoEXT` or any other
//!   kind): a pool makes many memory objects, and each would import the same handle again
//!   (an fd is consumed by the first); such a pool is refused when it is made
//!   ([`ConfigError::PoolImport`](crate::ConfigError::PoolImport)). Import with
//!   [`import_memory`](crate::GenericMemoryAllocator::import_memory), and carve the imported
//!   allocation with a [suballocator](crate::suballocator) of your own. A chain holding a structure the
//!   crate adds to the same call is refused
//!   ([`MemoryObjectError::DuplicateChainStructure`]): Vulkan forbids two of a kind (and two
//!   imports: with the crate's import, an import structure of either kind is refused). So is
//!   a chain that holds one structure type twice (Metal object exports aside), or loops back
//!   on itself
//!   ([`MemoryObjectError::RepeatedChainStructure`]): the walk stops there. What the
//!   chain says about the memory is what the crate knows of it: its export handle types
//!   ([`MemoryObject::export_types`]), its host import (claimed like the crate's own), and
//!   the resource a `VkMemoryDedicatedAllocateInfo` in it dedicates the memory to
//!   ([`MemoryObject::is_dedicated`]; the [aliasing](crate::aliasing) binds refuse any
//!   other resource).

use crate::device::MemoryDevice;
use crate::device_memory::{
    DedicatedAllocation, MemoryObject, MemoryObjectCreateInfo, MemoryObjectError,
};
use crate::layout::{DeviceAlignment, DeviceSize};
use ash::vk;
use std::ffi::c_void;
use std::ptr::NonNull;

/// What a memory object is imported from (see the [module docs](self)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExternalMemoryImport {
    kind: ImportKind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ImportKind {
    Fd {
        handle_type: vk::ExternalMemoryHandleTypeFlags,
        fd: i32,
    },
    HostPointer {
        handle_type: vk::ExternalMemoryHandleTypeFlags,
        pointer: NonNull<c_void>,
    },
}

// SAFETY: the host pointer is only passed to the driver, never dereferenced by the crate; the
// constructor's contract makes the memory valid for the import from any thread.
unsafe impl Send for ExternalMemoryImport {}
// SAFETY: as above; the value is never mutated.
unsafe impl Sync for ExternalMemoryImport {}

impl ExternalMemoryImport {
    /// An import of file descriptor `fd` of `handle_type` (`VkImportMemoryFdInfoKHR`).
    /// `handle_type` is one handle type, `OPAQUE_FD` or `DMA_BUF_EXT`; anything else (a set
    /// of several, or none) is refused with
    /// [`InvalidImportHandleType`](MemoryObjectError::InvalidImportHandleType) before the
    /// driver sees it.
    ///
    /// # Safety
    ///
    /// `fd` is an open descriptor of that handle type, exported by a compatible device (same
    /// driver and device UUIDs for the opaque type); it is used for one successful import
    /// only: on success the driver owns and closes it, on failure it is still the caller's,
    /// except after [`MapFailed`](MemoryObjectError::MapFailed): then the import itself
    /// succeeded and the memory object was freed again, which closed the descriptor (do not
    /// close or import it again).
    /// If the memory it stands for is mapped elsewhere in this process (exported from a
    /// host-visible memory object here, e.g. with
    /// [`MemoryAlloc::export_fd`](crate::MemoryAlloc::export_fd)), the imported allocation
    /// maps the same bytes: the application accesses them through one of the two at a time
    /// (no slice of one lives while the other is written or sliced).
    /// For an opaque fd, the memory type and size given with it are those of the exported
    /// memory object, and memory exported dedicated is imported dedicated to an equal
    /// resource.
    pub unsafe fn fd(handle_type: vk::ExternalMemoryHandleTypeFlags, fd: i32) -> Self {
        Self {
            kind: ImportKind::Fd { handle_type, fd },
        }
    }

    /// An import of the host allocation at `pointer` (`VkImportMemoryHostPointerInfoEXT`,
    /// `HOST_ALLOCATION` handle type).
    ///
    /// # Safety
    ///
    /// `pointer` starts a host allocation of at least the size given with the import,
    /// readable and writable, that stays allocated until the memory object is freed; the
    /// host and the GPU access it only as Vulkan allows for host-visible memory, and while
    /// the memory object lives the application reaches those bytes through the allocation
    /// only (its mapping shows them: a write through the original pointer while a slice of
    /// the allocation lives would break that slice's borrow).
    ///
    /// The same bytes cannot be imported twice at a time: an import that overlaps a live
    /// import of host memory (into any device) is refused with
    /// [`ImportOverlaps`](MemoryObjectError::ImportOverlaps), since two allocations would map
    /// the same bytes.
    pub unsafe fn host_pointer(pointer: NonNull<c_void>) -> Self {
        Self {
            kind: ImportKind::HostPointer {
                handle_type: vk::ExternalMemoryHandleTypeFlags::HOST_ALLOCATION_EXT,
                pointer,
            },
        }
    }

    /// The host pointer of a host-allocation import.
    pub(crate) fn host_address(self) -> Option<NonNull<c_void>> {
        match self.kind {
            ImportKind::HostPointer { pointer, .. } => Some(pointer),
            ImportKind::Fd { .. } => None,
        }
    }

    /// The handle type.
    pub fn handle_type(&self) -> vk::ExternalMemoryHandleTypeFlags {
        match self.kind {
            ImportKind::Fd { handle_type, .. } | ImportKind::HostPointer { handle_type, .. } => {
                handle_type
            }
        }
    }

    /// The memory types this import may go to: from `vkGetMemoryHostPointerPropertiesEXT`
    /// for a host pointer, `vkGetMemoryFdPropertiesKHR` for a non-opaque fd, and every type
    /// for an opaque fd (use the exporter's type). Fails with
    /// [`ExtensionNotEnabled`](MemoryObjectError::ExtensionNotEnabled) when the import's
    /// extension is not claimed, and with
    /// [`ImportMisaligned`](MemoryObjectError::ImportMisaligned) for a host pointer that is
    /// not a multiple of `minImportedHostPointerAlignment` (the query takes no other).
    pub fn memory_type_bits(&self, device: &MemoryDevice) -> Result<u32, MemoryObjectError> {
        let all = device.memory_properties().all_types_mask();
        match self.kind {
            ImportKind::Fd { handle_type, fd } => {
                if !device.features().external_memory_fd {
                    return Err(MemoryObjectError::ExtensionNotEnabled(
                        "VK_KHR_external_memory_fd",
                    ));
                }
                check_fd_handle_type(handle_type)?;
                if handle_type == vk::ExternalMemoryHandleTypeFlags::OPAQUE_FD {
                    return Ok(all);
                }
                let fns =
                    ash::khr::external_memory_fd::Device::new(device.instance(), device.ash());
                let mut props = vk::MemoryFdPropertiesKHR::default();
                // SAFETY: the extension is enabled (claimed); the fd and handle type are
                // valid by `fd`'s contract, and not opaque.
                unsafe { fns.get_memory_fd_properties(handle_type, fd, &mut props) }
                    .map_err(MemoryObjectError::Vulkan)?;
                Ok(props.memory_type_bits & all)
            }
            ImportKind::HostPointer {
                handle_type,
                pointer,
            } => {
                require_external_memory_host(device)?;
                // `vkGetMemoryHostPointerPropertiesEXT` takes only aligned pointers.
                let alignment = min_imported_host_pointer_alignment(device)?;
                if !alignment.is_aligned(pointer.as_ptr() as DeviceSize) {
                    return Err(MemoryObjectError::ImportMisaligned {
                        alignment: alignment.as_devicesize(),
                    });
                }
                let fns = ash::ext::external_memory_host::DeviceFn::load(|name| {
                    // SAFETY: a valid device and function name.
                    unsafe {
                        std::mem::transmute::<vk::PFN_vkVoidFunction, *const c_void>(
                            device
                                .instance()
                                .get_device_proc_addr(device.ash().handle(), name.as_ptr()),
                        )
                    }
                });
                let mut props = vk::MemoryHostPointerPropertiesEXT::default();
                // SAFETY: the extension is enabled (claimed); the pointer is a host
                // allocation by `host_pointer`'s contract, aligned to
                // `minImportedHostPointerAlignment` (checked above).
                unsafe {
                    (fns.get_memory_host_pointer_properties_ext)(
                        device.ash().handle(),
                        handle_type,
                        pointer.as_ptr(),
                        &mut props,
                    )
                }
                .result()
                .map_err(MemoryObjectError::Vulkan)?;
                Ok(props.memory_type_bits & all)
            }
        }
    }
}

/// The handle types a file descriptor is imported as (VUID-VkImportMemoryFdInfoKHR-handleType-00669).
const FD_HANDLE_TYPES: [vk::ExternalMemoryHandleTypeFlags; 2] = [
    vk::ExternalMemoryHandleTypeFlags::OPAQUE_FD,
    vk::ExternalMemoryHandleTypeFlags::DMA_BUF_EXT,
];

/// Refuses an fd import's handle type unless it is exactly one of [`FD_HANDLE_TYPES`]: an
/// import takes one handle type, a single bit (`VkExternalMemoryHandleTypeFlagBits`), never
/// a set such as `OPAQUE_FD | DMA_BUF_EXT`, and not none (that would import nothing and
/// leave the descriptor open).
fn check_fd_handle_type(
    handle_type: vk::ExternalMemoryHandleTypeFlags,
) -> Result<(), MemoryObjectError> {
    if FD_HANDLE_TYPES.contains(&handle_type) {
        Ok(())
    } else {
        Err(MemoryObjectError::InvalidImportHandleType(handle_type))
    }
}

/// `ExtensionNotEnabled` unless `VK_EXT_external_memory_host` is claimed.
fn require_external_memory_host(device: &MemoryDevice) -> Result<(), MemoryObjectError> {
    if device.features().external_memory_host {
        Ok(())
    } else {
        Err(MemoryObjectError::ExtensionNotEnabled(
            "VK_EXT_external_memory_host",
        ))
    }
}

/// The user's `pNext` chain for `vkAllocateMemory` (VMA's `pMemoryAllocateNext`), appended
/// after the structures the crate chains (see the [module docs](self)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AllocateNext(NonNull<c_void>);

// SAFETY: the chain is only read, and only by `vkAllocateMemory` calls; `new`'s contract
// keeps it valid and unchanged while it may be used, from any thread.
unsafe impl Send for AllocateNext {}
// SAFETY: as above.
unsafe impl Sync for AllocateNext {}

impl AllocateNext {
    /// The chain starting at `chain`; `None` for a null pointer.
    ///
    /// # Safety
    ///
    /// `chain` is null or a valid chain of structures extending `VkMemoryAllocateInfo`, whose
    /// extensions and features are enabled, with valid contents for every memory object it
    /// will be used for (its memory type, size and dedicated resource); it stays valid and
    /// unchanged for as long as this value, or a pool or create info holding it, may
    /// allocate memory.
    pub unsafe fn new(chain: *const c_void) -> Option<Self> {
        NonNull::new(chain.cast_mut()).map(Self)
    }

    /// The first structure of the chain.
    pub fn as_ptr(self) -> *const c_void {
        self.0.as_ptr()
    }

    /// The first structure of the chain that imports memory (of any handle type Vulkan
    /// defines, not only those the crate imports), if one does. A chain that loops or
    /// repeats a structure is walked up to the repeat.
    pub(crate) fn import_structure(self) -> Option<vk::StructureType> {
        self.walk()
            .types
            .into_iter()
            .find(|t| MEMORY_IMPORT_TYPES.contains(t))
    }

    /// The structure types of the chain, in order, the handle types of a
    /// `VkExportMemoryAllocateInfo` in it, the host pointer of a
    /// `VkImportMemoryHostPointerInfoEXT` in it, and the resource of a
    /// `VkMemoryDedicatedAllocateInfo` (or its NV forerunner) in it.
    fn walk(self) -> ChainWalk {
        let mut walk = ChainWalk {
            types: Vec::new(),
            export: vk::ExternalMemoryHandleTypeFlags::empty(),
            import: vk::ExternalMemoryHandleTypeFlags::empty(),
            host_pointer: None,
            dedicated: None,
            repeated: None,
            bad_import: None,
            structures: Vec::new(),
        };
        let mut next = self.0.as_ptr().cast_const();
        while !next.is_null() {
            // SAFETY: a valid chain (`new`'s contract): each structure starts with a
            // `VkBaseInStructure`.
            let base = unsafe { &*next.cast::<vk::BaseInStructure<'_>>() };
            // Vulkan forbids two structures of a kind in one chain (Metal object exports
            // aside); a chain that loops back on itself meets one of its structures again.
            // Either ends the walk here.
            let twice = base.s_type != vk::StructureType::EXPORT_METAL_OBJECT_CREATE_INFO_EXT
                && walk.types.contains(&base.s_type);
            if twice || walk.structures.contains(&next) {
                walk.repeated = Some(base.s_type);
                break;
            }
            if base.s_type == vk::StructureType::EXPORT_MEMORY_ALLOCATE_INFO {
                // SAFETY: the structure type says what the structure is.
                let info = unsafe { &*next.cast::<vk::ExportMemoryAllocateInfo<'_>>() };
                walk.export |= info.handle_types;
            }
            if base.s_type == vk::StructureType::IMPORT_MEMORY_HOST_POINTER_INFO_EXT {
                // SAFETY: as above.
                let info = unsafe { &*next.cast::<vk::ImportMemoryHostPointerInfoEXT<'_>>() };
                walk.host_pointer = NonNull::new(info.p_host_pointer);
                walk.import |= info.handle_type;
            }
            if base.s_type == vk::StructureType::IMPORT_MEMORY_FD_INFO_KHR {
                // SAFETY: as above.
                let info = unsafe { &*next.cast::<vk::ImportMemoryFdInfoKHR<'_>>() };
                walk.import |= info.handle_type;
                // A zero handle type imports nothing (Vulkan allows it); any other must be
                // one handle type an fd is imported as.
                if !info.handle_type.is_empty() && walk.bad_import.is_none() {
                    walk.bad_import = check_fd_handle_type(info.handle_type).err();
                }
            }
            if base.s_type == vk::StructureType::MEMORY_DEDICATED_ALLOCATE_INFO {
                // SAFETY: as above.
                let info = unsafe { &*next.cast::<vk::MemoryDedicatedAllocateInfo<'_>>() };
                walk.dedicated = DedicatedAllocation::named(info.buffer, info.image);
            }
            if base.s_type == vk::StructureType::DEDICATED_ALLOCATION_MEMORY_ALLOCATE_INFO_NV {
                // SAFETY: as above.
                let info =
                    unsafe { &*next.cast::<vk::DedicatedAllocationMemoryAllocateInfoNV<'_>>() };
                walk.dedicated = DedicatedAllocation::named(info.buffer, info.image);
            }
            walk.types.push(base.s_type);
            walk.structures.push(next);
            next = base.p_next.cast();
        }
        walk
    }
}

/// What [`AllocateNext::walk`] finds in a user chain.
struct ChainWalk {
    types: Vec<vk::StructureType>,
    export: vk::ExternalMemoryHandleTypeFlags,
    /// The handle type of an import structure in it.
    import: vk::ExternalMemoryHandleTypeFlags,
    host_pointer: Option<NonNull<c_void>>,
    dedicated: Option<DedicatedAllocation>,
    /// The first structure type met twice (or the structure met again by a chain that
    /// loops); the walk stopped there.
    repeated: Option<vk::StructureType>,
    /// Why an import structure in it names no valid handle type.
    bad_import: Option<MemoryObjectError>,
    /// The structures walked, in order.
    structures: Vec<*const c_void>,
}

/// What one `vkAllocateMemory` chains, decided before the call.
pub(crate) struct ChainPlan {
    /// The handle types the memory object is exportable as.
    pub(crate) export_types: vk::ExternalMemoryHandleTypeFlags,
    /// The handle type it is imported as (by the crate's import or the user's chain); empty
    /// when it is not imported.
    pub(crate) import_type: vk::ExternalMemoryHandleTypeFlags,
    /// The host allocation it is imported from, by the crate's import or the user's chain.
    pub(crate) host_pointer: Option<NonNull<c_void>>,
    /// The resource the user's chain dedicates the memory to (the crate's own dedicated
    /// structure is not chained then: it would be a duplicate).
    pub(crate) chain_dedicated: Option<DedicatedAllocation>,
}

/// Checks the import and the user chain of `info` against the device and against the
/// structures the crate itself chains (`crate_types`), before anything is reserved.
pub(crate) fn check(
    device: &MemoryDevice,
    info: &MemoryObjectCreateInfo,
    crate_types: &[vk::StructureType],
    crate_export: vk::ExternalMemoryHandleTypeFlags,
) -> Result<ChainPlan, MemoryObjectError> {
    let mut own = crate_types.to_vec();
    if let Some(import) = &info.import {
        // One import per call (VUID-VkMemoryAllocateInfo-None-06657): an import structure of
        // either kind in the user's chain conflicts with the crate's.
        own.extend(IMPORT_TYPES);
        match import.kind {
            ImportKind::Fd { .. } => {}
            ImportKind::HostPointer { pointer, .. } => {
                // First, so that a device without the extension says so, whatever the pointer.
                require_external_memory_host(device)?;
                if info.dedicated.is_some() {
                    return Err(MemoryObjectError::ImportDedicated);
                }
                let alignment = min_imported_host_pointer_alignment(device)?;
                if !alignment.is_aligned(pointer.as_ptr() as DeviceSize)
                    || !alignment.is_aligned(info.size)
                {
                    return Err(MemoryObjectError::ImportMisaligned {
                        alignment: alignment.as_devicesize(),
                    });
                }
            }
        }
        let allowed = import.memory_type_bits(device)?;
        if allowed & (1 << info.memory_type_index) == 0 {
            return Err(MemoryObjectError::ImportMemoryType {
                index: info.memory_type_index,
                allowed,
            });
        }
    }
    let mut export_types = crate_export;
    let mut host_pointer = info.import.and_then(|i| i.host_address());
    let mut import_type = info
        .import
        .map_or(vk::ExternalMemoryHandleTypeFlags::empty(), |i| {
            i.handle_type()
        });
    let mut chain_dedicated = None;
    if let Some(next) = info.next {
        let walk = next.walk();
        if let Some(&dup) = walk.types.iter().find(|t| own.contains(t)) {
            return Err(MemoryObjectError::DuplicateChainStructure(dup));
        }
        if let Some(repeated) = walk.repeated {
            return Err(MemoryObjectError::RepeatedChainStructure(repeated));
        }
        if let Some(bad) = walk.bad_import {
            return Err(bad);
        }
        export_types |= walk.export;
        host_pointer = host_pointer.or(walk.host_pointer);
        import_type |= walk.import;
        chain_dedicated = walk.dedicated;
    }
    Ok(ChainPlan {
        export_types,
        import_type,
        host_pointer,
        chain_dedicated,
    })
}

/// The structures that make a `vkAllocateMemory` an import, of the kinds the crate imports.
const IMPORT_TYPES: [vk::StructureType; 2] = [
    vk::StructureType::IMPORT_MEMORY_FD_INFO_KHR,
    vk::StructureType::IMPORT_MEMORY_HOST_POINTER_INFO_EXT,
];

/// Every structure that makes a `vkAllocateMemory` an import (each consumes or claims its
/// handle for the one memory object it makes).
const MEMORY_IMPORT_TYPES: [vk::StructureType; 9] = [
    vk::StructureType::IMPORT_MEMORY_FD_INFO_KHR,
    vk::StructureType::IMPORT_MEMORY_HOST_POINTER_INFO_EXT,
    vk::StructureType::IMPORT_MEMORY_WIN32_HANDLE_INFO_KHR,
    vk::StructureType::IMPORT_MEMORY_WIN32_HANDLE_INFO_NV,
    vk::StructureType::IMPORT_ANDROID_HARDWARE_BUFFER_INFO_ANDROID,
    vk::StructureType::IMPORT_MEMORY_ZIRCON_HANDLE_INFO_FUCHSIA,
    vk::StructureType::IMPORT_MEMORY_BUFFER_COLLECTION_FUCHSIA,
    vk::StructureType::IMPORT_METAL_BUFFER_INFO_EXT,
    vk::StructureType::IMPORT_SCREEN_BUFFER_INFO_QNX,
];

/// The import structures of one `vkAllocateMemory`, kept alive across the call.
#[derive(Default)]
pub(crate) struct ImportStructs {
    fd: vk::ImportMemoryFdInfoKHR<'static>,
    host: vk::ImportMemoryHostPointerInfoEXT<'static>,
}

impl ImportStructs {
    /// Fills the structure `import` needs and returns it, to be pushed on the chain.
    pub(crate) fn fill(&mut self, import: ExternalMemoryImport) -> ImportRef<'_> {
        match import.kind {
            ImportKind::Fd { handle_type, fd } => {
                self.fd = self.fd.handle_type(handle_type).fd(fd);
                ImportRef::Fd(&mut self.fd)
            }
            ImportKind::HostPointer {
                handle_type,
                pointer,
            } => {
                self.host = self
                    .host
                    .handle_type(handle_type)
                    .host_pointer(pointer.as_ptr());
                ImportRef::Host(&mut self.host)
            }
        }
    }
}

/// The filled import structure.
pub(crate) enum ImportRef<'a> {
    Fd(&'a mut vk::ImportMemoryFdInfoKHR<'static>),
    Host(&'a mut vk::ImportMemoryHostPointerInfoEXT<'static>),
}

/// The device's `minImportedHostPointerAlignment`. Needs
/// [`EnabledMemoryFeatures::external_memory_host`](crate::EnabledMemoryFeatures::external_memory_host)
/// (its properties structure is only valid on a device that has the extension) and Vulkan
/// 1.1's `vkGetPhysicalDeviceProperties2`; fails with
/// [`ExtensionNotEnabled`](MemoryObjectError::ExtensionNotEnabled) otherwise.
pub fn min_imported_host_pointer_alignment(
    device: &MemoryDevice,
) -> Result<DeviceAlignment, MemoryObjectError> {
    require_external_memory_host(device)?;
    if vk::api_version_minor(device.api_version()) < 1
        && vk::api_version_major(device.api_version()) <= 1
    {
        return Err(MemoryObjectError::ExtensionNotEnabled(
            "Vulkan 1.1 (vkGetPhysicalDeviceProperties2)",
        ));
    }
    let mut host = vk::PhysicalDeviceExternalMemoryHostPropertiesEXT::default();
    let mut props = vk::PhysicalDeviceProperties2::default().push_next(&mut host);
    // SAFETY: a valid physical device of the instance, at API version 1.1 or more.
    unsafe {
        device
            .instance()
            .get_physical_device_properties2(device.physical_device(), &mut props)
    };
    let value = host.min_imported_host_pointer_alignment;
    DeviceAlignment::new(value).ok_or(MemoryObjectError::ImportMisaligned { alignment: value })
}

/// An exported memory object: its file descriptor and what an importer must repeat.
#[cfg(unix)]
#[derive(Debug)]
pub struct ExportedFd {
    /// The descriptor (closed on drop unless imported; an import takes ownership on
    /// success).
    pub fd: std::os::fd::OwnedFd,
    /// The handle type it was exported as.
    pub handle_type: vk::ExternalMemoryHandleTypeFlags,
    /// The memory object's size: the `allocationSize` an opaque import must use.
    pub memory_size: DeviceSize,
    /// The exporter's memory type index (an opaque import uses a type of the same
    /// properties on the same physical device).
    pub memory_type_index: u32,
    /// Where the exported allocation starts in the memory object (0 for a dedicated one).
    pub offset: DeviceSize,
    /// The exported allocation's size.
    pub size: DeviceSize,
}

#[cfg(unix)]
impl MemoryObject {
    /// Exports the memory object as a file descriptor of `handle_type`
    /// (`vkGetMemoryFdKHR`). The object must have been allocated exportable as that type;
    /// `VK_KHR_external_memory_fd` must be claimed.
    pub fn export_fd(
        &self,
        handle_type: vk::ExternalMemoryHandleTypeFlags,
    ) -> Result<std::os::fd::OwnedFd, MemoryObjectError> {
        use std::os::fd::FromRawFd;
        let device = self.device();
        if !device.features().external_memory_fd {
            return Err(MemoryObjectError::ExtensionNotEnabled(
                "VK_KHR_external_memory_fd",
            ));
        }
        if handle_type.as_raw().count_ones() != 1 || !self.export_types().contains(handle_type) {
            return Err(MemoryObjectError::NotExportable {
                handle_type,
                exportable: self.export_types(),
            });
        }
        let fns = ash::khr::external_memory_fd::Device::new(device.instance(), device.ash());
        let info = vk::MemoryGetFdInfoKHR::default()
            .memory(self.handle())
            .handle_type(handle_type);
        // SAFETY: the extension is enabled (claimed); the memory is ours and was allocated
        // exportable as exactly this one handle type (checked above).
        let fd = unsafe { fns.get_memory_fd(&info) }.map_err(MemoryObjectError::Vulkan)?;
        // SAFETY: a successful vkGetMemoryFdKHR hands the caller a new descriptor it owns.
        Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
    }
}
