//! # ash-memory
//!
//! A Vulkan device-memory allocator built on [`ash`].
//!
//! ```no_run
//! # fn demo(entry: ash::Entry, instance: ash::Instance, physical_device: ash::vk::PhysicalDevice,
//! #     device: ash::Device) -> Result<(), Box<dyn std::error::Error>> {
//! use ash::vk;
//! use ash_memory::{
//!     AllocationCreateInfo, HostAccess, MemoryAllocator, MemoryUsage, StandardMemoryAllocator,
//! };
//!
//! // `entry`, `instance`, `physical_device` and `device` are your ash handles.
//! // SAFETY: the handles are valid, belong together and outlive the allocator; the instance
//! // was created for Vulkan 1.2; no memory-related extension is claimed.
//! let memory_device = unsafe {
//!     ash_memory::MemoryDevice::new(
//!         &entry,
//!         &instance,
//!         physical_device,
//!         device.clone(),
//!         vk::API_VERSION_1_2,
//!         Default::default(),
//!     )?
//! };
//! let allocator = StandardMemoryAllocator::new_default(memory_device);
//! let buffer_info = vk::BufferCreateInfo::default()
//!     .size(1024)
//!     .usage(vk::BufferUsageFlags::VERTEX_BUFFER);
//! // A vertex buffer the CPU fills once: the allocator picks the memory type from the
//! // buffer's usage, the host access and the device's heaps.
//! let info = AllocationCreateInfo {
//!     usage: MemoryUsage::Auto(HostAccess::SequentialWrite),
//!     ..Default::default()
//! };
//! // SAFETY: `buffer_info` is a valid create info.
//! let (buffer, mut alloc) = unsafe { allocator.create_buffer(&buffer_info, &info)? };
//! alloc.write_slice(0, &[0.0f32, 1.0, 0.5, 1.0])?;
//! // ... use the buffer, then destroy it and free its memory, in that order.
//! // SAFETY: the GPU no longer uses the buffer.
//! unsafe { allocator.destroy_buffer(buffer, alloc) };
//! // (Or let `ash_memory::OwnedBuffer` do that when it is dropped.)
//! # Ok(()) }
//! ```
//!
//! The crate is layered, each layer usable on its own:
//!
//! - [`layout`]: sizes and power-of-two alignments with checked arithmetic;
//! - [`suballocator`]: pure offset allocators over a region (free list, buddy, pool, bump,
//!   ring), with no Vulkan calls, usable as "virtual blocks";
//! - [`MemoryDevice`] and [`MemoryObject`]: the user's `ash` handles with the facts the allocator
//!   needs, and one owned `VkDeviceMemory`;
//! - [`allocator`]: the [`MemoryAllocator`] trait and [`GenericMemoryAllocator`], one pool of
//!   blocks per memory type;
//! - [`MemoryAlloc`]: what the user holds, binds and maps;
//! - [`stats`]: statistics, a JSON dump, an SVG memory map and the leak report;
//! - [`transient`]: a frame graph's transient resources packed into the least memory from
//!   their lifetimes, with the aliasing barriers they need.

pub mod aliasing;
pub mod allocation;
pub mod allocator;
pub mod budget;
pub mod corruption;
pub mod device;
mod device_bind;
pub mod device_memory;
mod device_requirements;
#[doc(inline)]
pub use device_memory::external as external_memory;
pub mod layout;
pub mod mapped;
pub mod memory_callbacks;
mod non_exhaustive;
#[cfg(test)]
mod simulated_layouts;
pub mod stats;
pub mod suballocator;
pub mod transient;

pub use allocation::{MemoryAccessError, MemoryAlloc, UserData};
#[allow(deprecated)]
pub use allocator::MemoryRequirements;
pub use allocator::{
    AllocationCreateInfo, AllocationDesc, AllocationError, AllocationRequirements,
    BlockSizeThresholds, ConfigError, DebugOptions, Defragmentation, DefragmentationAlgorithm,
    DefragmentationInfo, DefragmentationPass, GenericMemoryAllocator,
    GenericMemoryAllocatorCreateInfo, HostAccess, LeakCheck, MemoryAllocatePreference,
    MemoryAllocator, MemoryPool, MemoryTypeFilter, MemoryUsage, OwnedBuffer, OwnedImage,
    PoolCreateInfo, PoolMemoryType, ResourceUsage, StandardMemoryAllocator, MAX_AUTO_BLOCK_ARENAS,
    MAX_BLOCK_ARENAS, MAX_DEBUG_MARGIN,
};
pub use budget::{BudgetError, HeapBudget};
#[allow(deprecated)]
pub use device::Device;
pub use device::{
    DeviceError, EnabledMemoryFeatures, MemoryDevice, MemoryProperties, MemoryPropertiesError,
};
pub use device_memory::{
    DedicatedAllocation, ExportHandleTypes, MemoryObject, MemoryObjectCreateInfo, MemoryObjectError,
};
#[allow(deprecated)]
pub use device_memory::{DeviceMemory, DeviceMemoryCreateInfo, DeviceMemoryError};
#[cfg(unix)]
pub use external_memory::ExportedFd;
pub use external_memory::{AllocateNext, ExternalMemoryImport};
pub use layout::{DeviceAlignment, DeviceLayout, DeviceSize, LayoutError};
pub use mapped::Pod;
pub use memory_callbacks::DeviceMemoryCallbacks;
#[doc(hidden)]
pub use non_exhaustive::NonExhaustive;
pub use stats::{AllocatorStatistics, LeakedAllocation, MemorySnapshot, Statistics};
#[allow(deprecated)]
pub use suballocator::PoolAllocator;

/// The migration guides (`docs/`), included here so that `cargo test` compiles their code.
#[cfg(doctest)]
mod migration_guides {
    #[doc = include_str!("../docs/from-gpu-allocator.md")]
    mod from_gpu_allocator {}
    #[doc = include_str!("../docs/migrating-from-vk-mem.md")]
    mod from_vk_mem {}
}

pub use suballocator::{
    AllocationStrategy, AllocationType, BuddyAllocator, BumpAllocator, FreeListAllocator,
    RangeInfo, RangeKind, RingAllocator, SlotAllocator, Suballocation, SuballocationHandle,
    Suballocator, SuballocatorError,
};
pub use transient::{
    TransientError, TransientMemory, TransientMemoryCreateInfo, TransientPlan, TransientPlanner,
    TransientResource,
};
