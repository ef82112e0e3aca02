//! One `VkDeviceMemory` object, owned: allocated with its `pNext` chain, persistently mapped
//! when host-visible, freed on drop.
//!
//! Mapping a memory object costs a system call and an address-space reservation, and Vulkan
//! allows only one mapping per object at a time. Blocks are therefore mapped once, whole, when
//! they are created, and every allocation inside shares that mapping: there is never a second
//! map of the same object, so there is nothing to unmap twice either.

use crate::allocator::AllocationError;
use crate::device::Device;
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
}

/// What to put in one `vkAllocateMemory` call.
#[derive(Clone, Copy, Debug)]
pub(crate) struct MemoryAllocateInfo {
    pub size: DeviceSize,
    pub memory_type_index: u32,
    pub dedicated: Option<DedicatedAllocation>,
    pub export_handle_types: vk::ExternalMemoryHandleTypeFlags,
    pub device_address: bool,
    pub priority: Option<f32>,
}

/// An owned `VkDeviceMemory`.
pub struct DeviceMemory {
    device: Arc<Device>,
    handle: vk::DeviceMemory,
    size: DeviceSize,
    memory_type_index: u32,
    property_flags: vk::MemoryPropertyFlags,
    heap_index: u32,
    mapped: Option<NonNull<u8>>,
    dedicated: bool,
}

// SAFETY: a `VkDeviceMemory` handle may be used from any thread; the mapping pointer is only
// read (never written through) by `DeviceMemory` itself, and the allocations that write
// through it each own a disjoint range.
unsafe impl Send for DeviceMemory {}
// SAFETY: see `Send`; no method of `DeviceMemory` mutates through `&self`.
unsafe impl Sync for DeviceMemory {}

impl std::fmt::Debug for DeviceMemory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceMemory")
            .field("handle", &self.handle)
            .field("size", &self.size)
            .field("memory_type_index", &self.memory_type_index)
            .field("mapped", &self.mapped.is_some())
            .field("dedicated", &self.dedicated)
            .finish()
    }
}

impl DeviceMemory {
    /// Allocates and, for host-visible types, maps the memory.
    ///
    /// The caller has checked that `memory_type_index` exists and that `size` is not zero.
    pub(crate) fn allocate(
        device: Arc<Device>,
        info: MemoryAllocateInfo,
    ) -> Result<Self, AllocationError> {
        let memory_type = device.memory_properties().memory_types[info.memory_type_index as usize];
        let property_flags = memory_type.property_flags;
        let features = *device.features();
        if !device.reserve_memory_object() {
            return Err(AllocationError::TooManyObjects {
                max: device.max_memory_allocation_count(),
            });
        }
        let mut dedicated_info = vk::MemoryDedicatedAllocateInfo::default();
        let mut export_info = vk::ExportMemoryAllocateInfo::default();
        let mut flags_info = vk::MemoryAllocateFlagsInfo::default();
        let mut priority_info = vk::MemoryPriorityAllocateInfoEXT::default();
        let mut allocate_info = vk::MemoryAllocateInfo::default()
            .allocation_size(info.size)
            .memory_type_index(info.memory_type_index);
        if let (Some(d), true) = (info.dedicated, features.dedicated_allocation) {
            dedicated_info = dedicated_info.buffer(d.buffer).image(d.image);
            allocate_info = allocate_info.push_next(&mut dedicated_info);
        }
        if !info.export_handle_types.is_empty() && features.external_memory {
            export_info = export_info.handle_types(info.export_handle_types);
            allocate_info = allocate_info.push_next(&mut export_info);
        }
        if info.device_address && features.buffer_device_address {
            flags_info = flags_info.flags(vk::MemoryAllocateFlags::DEVICE_ADDRESS);
            allocate_info = allocate_info.push_next(&mut flags_info);
        }
        if let (Some(p), true) = (info.priority, features.memory_priority) {
            priority_info = priority_info.priority(p.clamp(0.0, 1.0));
            allocate_info = allocate_info.push_next(&mut priority_info);
        }
        let ash = device.ash();
        // SAFETY: the chain above only holds structures whose extensions or features the user
        // declared enabled (`Device::new` contract); the memory type exists (checked by the
        // caller); a dedicated resource is valid (`DedicatedAllocation` contract).
        let handle = match unsafe { ash.allocate_memory(&allocate_info, None) } {
            Ok(handle) => handle,
            Err(e) => {
                device.release_memory_object();
                return Err(match AllocationError::from_vk(e) {
                    // The driver's own limit: report the device's real maximum, not 0.
                    AllocationError::TooManyObjects { .. } => AllocationError::TooManyObjects {
                        max: device.max_memory_allocation_count(),
                    },
                    other => other,
                });
            }
        };
        device.record_memory_allocated(memory_type.heap_index, info.size);
        let mut memory = Self {
            device,
            handle,
            size: info.size,
            memory_type_index: info.memory_type_index,
            property_flags,
            heap_index: memory_type.heap_index,
            mapped: None,
            dedicated: info.dedicated.is_some(),
        };
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
            .map_err(AllocationError::from_vk)?;
            // On failure `memory` is dropped here, which frees it.
            memory.mapped = NonNull::new(ptr.cast());
        }
        Ok(memory)
    }

    /// The device.
    pub fn device(&self) -> &Arc<Device> {
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

    /// The memory type's property flags.
    pub fn property_flags(&self) -> vk::MemoryPropertyFlags {
        self.property_flags
    }

    /// Whether this object was allocated for one resource.
    pub fn is_dedicated(&self) -> bool {
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
    pub(crate) fn sync_range(
        &self,
        offset: DeviceSize,
        size: DeviceSize,
        direction: SyncDirection,
    ) -> Result<(), vk::Result> {
        if !self.needs_flush() || size == 0 {
            return Ok(());
        }
        let atom = self.device.non_coherent_atom_size();
        let start = crate::layout::align_down(offset, atom);
        let end = offset.saturating_add(size).min(self.size);
        let end = crate::layout::align_up(end, atom).map_or(self.size, |e| e.min(self.size));
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

/// Which way [`DeviceMemory::sync_range`] makes writes visible.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SyncDirection {
    /// Host writes to the device.
    Flush,
    /// Device writes to the host.
    Invalidate,
}

impl Drop for DeviceMemory {
    fn drop(&mut self) {
        let ash = self.device.ash();
        // SAFETY: we own the handle; every allocation inside it holds an `Arc` to its block
        // (or owns this object), so none is alive. Freeing also unmaps.
        unsafe { ash.free_memory(self.handle, None) };
        self.device.record_memory_freed(self.heap_index, self.size);
        self.device.release_memory_object();
    }
}
