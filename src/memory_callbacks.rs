//! Device-memory callbacks (VMA's `VmaDeviceMemoryCallbacks`): told of every `VkDeviceMemory`
//! this crate allocates or frees on a device, for an engine's own tracking or residency
//! management.
//!
//! [`MemoryDevice::set_memory_callbacks`](crate::MemoryDevice::set_memory_callbacks) installs a [`DeviceMemoryCallbacks`] for every memory
//! object made through the device from then on: blocks of the allocators and pools, dedicated
//! allocations, imports, and [`MemoryObject`](crate::MemoryObject) objects made directly.
//! [`allocated`](DeviceMemoryCallbacks::allocated) runs right after each successful
//! `vkAllocateMemory` (before the object is mapped or used; a failed call reports nothing),
//! [`freeing`](DeviceMemoryCallbacks::freeing) right before each `vkFreeMemory`.
//!
//! # Locks and what a callback must not do
//!
//! A callback runs on the thread that allocates or frees, possibly while the crate holds its
//! own locks: the write lock of the memory type's (or pool's) block list when a block is made
//! or released, the lock of a block's arena when the last allocation of a released block is
//! freed, and the lock of the device's callback slot (a read lock). Therefore a callback must
//! not
//!
//! - call into an allocator or pool of this device (allocate, create resources, drop a
//!   [`MemoryAlloc`](crate::MemoryAlloc), make or drop a pool, take statistics or
//!   snapshots, defragment) or wait for a thread that does: that can deadlock;
//! - call [`MemoryDevice::set_memory_callbacks`](crate::MemoryDevice::set_memory_callbacks) (deadlock on the slot's lock);
//! - free, map or unmap the memory object, or bind resources to it;
//! - panic (it would unwind through the allocator's locks and its `Drop` code).
//!
//! It may record, log, count, and call Vulkan functions that leave the memory object as it
//! is (`vkSetDeviceMemoryPriorityEXT`, debug names with `vkSetDebugUtilsObjectNameEXT`). Keep
//! it short: allocations of other threads may wait for it.

use crate::layout::DeviceSize;
use ash::vk;
use std::sync::Arc;

/// Called for every memory object of a device (see the [module docs](self) for what a
/// callback may do). Both methods do nothing by default.
pub trait DeviceMemoryCallbacks: Send + Sync {
    /// `memory` of `size` bytes of `memory_type_index` was just allocated.
    fn allocated(&self, memory_type_index: u32, memory: vk::DeviceMemory, size: DeviceSize) {
        let _ = (memory_type_index, memory, size);
    }

    /// `memory` of `size` bytes of `memory_type_index` is about to be freed.
    fn freeing(&self, memory_type_index: u32, memory: vk::DeviceMemory, size: DeviceSize) {
        let _ = (memory_type_index, memory, size);
    }
}

/// The device's callback slot.
pub(crate) type CallbackSlot = parking_lot::RwLock<Option<Arc<dyn DeviceMemoryCallbacks>>>;
