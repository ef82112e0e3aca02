//! The errors of the allocator layer.

use crate::layout::{DeviceSize, LayoutError};
use ash::vk;

/// Why an allocation (or an allocator) could not be made.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum AllocationError {
    /// The driver is out of device memory (`VK_ERROR_OUT_OF_DEVICE_MEMORY`), after every
    /// fallback was tried.
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
    /// Another Vulkan error.
    #[error("Vulkan error: {0}")]
    Vulkan(vk::Result),
    /// The requirements' `memory_type_bits` is 0: the resource allows no memory type.
    #[error("memory_type_bits is 0: the requirements allow no memory type")]
    NoMemoryTypeBits,
    /// `memory_type_bits` names memory types that do not exist on this device.
    #[error(
        "memory_type_bits {bits:#x} names memory types that do not exist (the device has {count})"
    )]
    MemoryTypeBitsOutOfRange {
        /// The bits given.
        bits: u32,
        /// The number of memory types.
        count: u32,
    },
    /// A memory type index that does not exist.
    #[error("memory type index {index} is out of range (the device has {count} memory types)")]
    MemoryTypeIndexOutOfRange {
        /// The index given.
        index: u32,
        /// The number of memory types.
        count: u32,
    },
    /// No allowed memory type has the required flags.
    #[error("no memory type in {bits:#x} has the required flags {required:?} and is usable")]
    NoSuitableMemoryType {
        /// The memory types that were allowed.
        bits: u32,
        /// The flags that were required.
        required: vk::MemoryPropertyFlags,
    },
    /// The memory type cannot be used as asked: it is protected without the `protectedMemory`
    /// feature, needs a feature that is not enabled, or cannot be suballocated.
    #[error("memory type {index} cannot be used here: {reason}")]
    MemoryTypeNotUsable {
        /// The memory type index.
        index: u32,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The request is larger than the heap its memory type lives in.
    #[error("{size} bytes requested, but heap {heap} only has {heap_size} bytes")]
    SizeExceedsHeap {
        /// The requested size.
        size: DeviceSize,
        /// The heap index.
        heap: u32,
        /// The heap's size.
        heap_size: DeviceSize,
    },
    /// `NeverAllocate` was asked for and no existing block had room.
    #[error("no existing block has room and the preference forbids allocating a new one")]
    OutOfPoolMemory,
    /// The driver requires a dedicated allocation, but `NeverAllocate` forbids creating one.
    #[error(
        "the resource requires a dedicated allocation, but the preference forbids allocating one"
    )]
    DedicatedAllocationRequired,
    /// The request is larger than the pool's block size and may not be a dedicated allocation.
    #[error("{size} bytes requested, larger than the block size of {block_size} bytes")]
    BlockSizeExceeded {
        /// The requested size.
        size: DeviceSize,
        /// The block size of the memory type's heap.
        block_size: DeviceSize,
    },
    /// The suballocator is a `PoolAllocator` whose slots are smaller than the request (with
    /// the [`Unknown`](crate::MemoryAllocatePreference::Unknown) preference the allocator
    /// falls back to a dedicated allocation first).
    #[error("the request does not fit the pool suballocator's slot size")]
    SuballocatorBlockSizeExceeded,
    /// Size or alignment are invalid.
    #[error("invalid memory layout: {0}")]
    Layout(#[from] LayoutError),
    /// The allocator's creation parameters are invalid.
    #[error("invalid allocator configuration: {0}")]
    InvalidConfiguration(String),
    /// Allocating would take the heap's usage past its budget, and the request asked to stay
    /// within it.
    #[error("heap {heap} would exceed its budget: {usage} bytes used + {size} requested > {budget} budget")]
    BudgetExceeded {
        /// The heap index.
        heap: u32,
        /// The heap's usage before the request.
        usage: DeviceSize,
        /// The requested size.
        size: DeviceSize,
        /// The heap's budget.
        budget: DeviceSize,
    },
}

impl AllocationError {
    pub(crate) fn from_vk(result: vk::Result) -> Self {
        match result {
            vk::Result::ERROR_OUT_OF_DEVICE_MEMORY => Self::OutOfDeviceMemory,
            vk::Result::ERROR_OUT_OF_HOST_MEMORY => Self::OutOfHostMemory,
            vk::Result::ERROR_TOO_MANY_OBJECTS => Self::TooManyObjects { max: 0 },
            other => Self::Vulkan(other),
        }
    }

    /// Whether another memory type, a smaller block or a dedicated allocation might still
    /// succeed after this error.
    pub(crate) fn is_recoverable(&self) -> bool {
        matches!(
            self,
            Self::OutOfDeviceMemory
                | Self::OutOfHostMemory
                | Self::TooManyObjects { .. }
                | Self::SizeExceedsHeap { .. }
                | Self::OutOfPoolMemory
                | Self::BlockSizeExceeded { .. }
                | Self::SuballocatorBlockSizeExceeded
                | Self::BudgetExceeded { .. }
                | Self::MemoryTypeNotUsable { .. }
        )
    }
}

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
    /// A Vulkan call failed.
    #[error("Vulkan error: {0}")]
    Vulkan(vk::Result),
}
