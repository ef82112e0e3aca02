//! The errors of the allocator layer.

use super::config::ConfigError;
use super::placement::{Failure, PlacementError};
use crate::budget::BudgetError;
use crate::device_memory::MemoryObjectError;
use crate::layout::{DeviceSize, LayoutError};
use ash::vk;

/// Why an allocation (or an allocator, or a pool) could not be made.
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
    /// Mapping a new host-visible memory object failed (it was freed again; an imported file
    /// descriptor was consumed by the import, see
    /// [`ExternalMemoryImport::fd`](crate::ExternalMemoryImport::fd)).
    #[error("vkMapMemory failed: {0}")]
    MapFailed(vk::Result),
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
    #[error(
        "no memory type in {bits:#x} has the required flags {} and is usable",
        flags_text(*.required)
    )]
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
    /// The request, as it lies in a block, is larger than the pool's block size and may not be
    /// a dedicated allocation.
    #[error(
        "the request takes {size} bytes in a block (its size with any debug margins, padded to \
         whole nonCoherentAtomSize atoms in non-coherent memory), more than the block size of \
         {block_size} bytes"
    )]
    BlockSizeExceeded {
        /// The bytes the request takes in a block: its size, plus the
        /// [debug margins](crate::DebugOptions::margin) before and after it, padded to whole
        /// `nonCoherentAtomSize` atoms in memory that is not host-coherent
        /// ([`u64::MAX`] when that overflows).
        size: DeviceSize,
        /// The block size of the memory type's heap (or of the custom pool).
        block_size: DeviceSize,
    },
    /// The blocks' suballocator can never serve the request (a `SlotAllocator` whose slots
    /// are smaller than it); with the [`Auto`](crate::MemoryAllocatePreference::Auto)
    /// preference the allocator falls back to a dedicated allocation first.
    #[error("the request does not fit the suballocator of the blocks (e.g. a pool slot)")]
    SuballocatorBlockSizeExceeded,
    /// A custom pool's memory type is not among the memory types the request allows.
    #[error("the pool's memory type {memory_type_index} is not among the allowed types {bits:#x}")]
    PoolMemoryTypeNotAllowed {
        /// The pool's memory type.
        memory_type_index: u32,
        /// The memory types the request allows.
        bits: u32,
    },
    /// A custom pool already holds its maximum number of blocks and none has room.
    #[error("the pool holds its maximum of {max_blocks} blocks and none has room")]
    PoolFull {
        /// The pool's `max_block_count`.
        max_blocks: usize,
    },
    /// Size or alignment are invalid.
    #[error("invalid memory layout: {0}")]
    Layout(#[from] LayoutError),
    /// The allocator's or pool's configuration is invalid.
    #[error("invalid configuration: {0}")]
    Config(#[from] ConfigError),
    /// A memory priority that is NaN or outside 0.0 ..= 1.0.
    #[error("memory priority {0} is not within 0.0 ..= 1.0")]
    InvalidPriority(f32),
    /// Allocating would take the heap's usage past its budget, and the request asked to stay
    /// within it.
    #[error(transparent)]
    BudgetExceeded(#[from] BudgetError),
    /// Binding the new resource was refused before the driver (for example a bind `pNext`
    /// chain without `vkBind*Memory2`); the resource was destroyed again.
    #[error("bind refused: {0}")]
    Bind(crate::allocation::MemoryAccessError),
    /// The memory object's import, export or `pNext` chain was refused (see
    /// [`external_memory`](crate::external_memory)).
    #[error(transparent)]
    Memory(MemoryObjectError),
    /// The call needs an extension or API version that was not claimed in
    /// [`EnabledMemoryFeatures`](crate::EnabledMemoryFeatures).
    #[error("{0} is needed and was not claimed")]
    FeatureNotEnabled(&'static str),
    /// A resource create info that Vulkan forbids, refused before the driver sees it (such
    /// as `CONCURRENT` sharing without two distinct, existing queue families).
    #[error("invalid create info: {0}")]
    InvalidCreateInfo(&'static str),
}

impl From<MemoryObjectError> for AllocationError {
    fn from(e: MemoryObjectError) -> Self {
        match e {
            MemoryObjectError::OutOfDeviceMemory => Self::OutOfDeviceMemory,
            MemoryObjectError::OutOfHostMemory => Self::OutOfHostMemory,
            MemoryObjectError::TooManyObjects { max } => Self::TooManyObjects { max },
            MemoryObjectError::Budget(b) => Self::BudgetExceeded(b),
            MemoryObjectError::MapFailed(r) => Self::MapFailed(r),
            MemoryObjectError::Vulkan(r) => Self::Vulkan(r),
            MemoryObjectError::MemoryTypeIndexOutOfRange { index, count } => {
                Self::MemoryTypeIndexOutOfRange { index, count }
            }
            // A zero size is not "more than the heap": say what it is (an import or a memory
            // object of size 0 reaches here without a layout check).
            MemoryObjectError::InvalidSize { size: 0, .. } => Self::Layout(LayoutError::ZeroSize),
            MemoryObjectError::InvalidSize {
                size,
                heap,
                heap_size,
            } => Self::SizeExceedsHeap {
                size,
                heap,
                heap_size,
            },
            MemoryObjectError::InvalidPriority(p) => Self::InvalidPriority(p),
            MemoryObjectError::MemoryTypeNeedsFeature { index, .. } => Self::MemoryTypeNotUsable {
                index,
                reason: "it needs a device feature that is not enabled",
            },
            e @ (MemoryObjectError::ExtensionNotEnabled(_)
            | MemoryObjectError::ImportMemoryType { .. }
            | MemoryObjectError::ImportDedicated
            | MemoryObjectError::ImportMisaligned { .. }
            | MemoryObjectError::ImportOverlaps { .. }
            | MemoryObjectError::DuplicateChainStructure(_)
            | MemoryObjectError::RepeatedChainStructure(_)
            | MemoryObjectError::NotExportable { .. }
            | MemoryObjectError::InvalidImportHandleType(_)) => Self::Memory(e),
            // `MemoryObjectError` is non-exhaustive for users, not for this crate.
        }
    }
}

impl AllocationError {
    /// The error of a Vulkan call.
    pub(crate) fn from_vk(result: vk::Result) -> Self {
        match result {
            vk::Result::ERROR_OUT_OF_DEVICE_MEMORY => Self::OutOfDeviceMemory,
            vk::Result::ERROR_OUT_OF_HOST_MEMORY => Self::OutOfHostMemory,
            other => Self::Vulkan(other),
        }
    }

    /// The error for a plan that cannot be made for `size` bytes in a memory type.
    pub(crate) fn from_placement(
        e: PlacementError,
        memory_type_index: u32,
        size: DeviceSize,
        heap: u32,
        heap_size: DeviceSize,
        block_size: DeviceSize,
    ) -> Self {
        match e {
            PlacementError::SizeExceedsHeap => Self::SizeExceedsHeap {
                size,
                heap,
                heap_size,
            },
            PlacementError::DedicatedRequired => Self::DedicatedAllocationRequired,
            PlacementError::NotSuballocatable => Self::MemoryTypeNotUsable {
                index: memory_type_index,
                reason: "lazily allocated and RDMA memory is only given out as dedicated \
                         allocations",
            },
            PlacementError::LargerThanBlock => Self::BlockSizeExceeded { size, block_size },
        }
    }

    /// What this error means for the [fallback ladder](super::placement#the-fallback-ladder)
    /// and the search over memory types.
    pub(crate) fn failure(&self) -> Failure {
        match self {
            Self::OutOfDeviceMemory
            | Self::OutOfHostMemory
            | Self::BudgetExceeded(_)
            | Self::MapFailed(_) => Failure::OutOfMemory,
            Self::TooManyObjects { .. } | Self::PoolFull { .. } => Failure::NoMoreObjects,
            Self::OutOfPoolMemory => Failure::NoRoom,
            Self::SuballocatorBlockSizeExceeded => Failure::DoesNotFitBlocks,
            // Another memory type (another heap, larger blocks, other flags) may serve it.
            Self::SizeExceedsHeap { .. }
            | Self::MemoryTypeNotUsable { .. }
            | Self::BlockSizeExceeded { .. } => Failure::DoesNotFitBlocks,
            Self::Vulkan(_)
            | Self::NoMemoryTypeBits
            | Self::MemoryTypeBitsOutOfRange { .. }
            | Self::MemoryTypeIndexOutOfRange { .. }
            | Self::NoSuitableMemoryType { .. }
            | Self::DedicatedAllocationRequired
            | Self::Layout(_)
            | Self::Config(_)
            | Self::InvalidPriority(_)
            | Self::PoolMemoryTypeNotAllowed { .. }
            | Self::Bind(_)
            | Self::Memory(_)
            | Self::FeatureNotEnabled(_)
            | Self::InvalidCreateInfo(_) => Failure::Fatal,
        }
    }
}

/// Memory property flags for a message: `(none)` when empty (their `Debug` text is then
/// empty, which left a gap in the sentence).
fn flags_text(flags: vk::MemoryPropertyFlags) -> String {
    if flags.is_empty() {
        "(none)".to_owned()
    } else {
        format!("{flags:?}")
    }
}
