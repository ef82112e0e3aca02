//! # ash-memory
//!
//! A Vulkan device-memory allocator built on [`ash`].
//!
//! The crate is layered, each layer usable on its own:
//!
//! - [`layout`]: sizes and power-of-two alignments with checked arithmetic;
//! - [`suballocator`]: pure offset allocators over a region (free list, buddy, pool, bump),
//!   with no Vulkan calls, usable as "virtual blocks".
#![warn(missing_docs)]

pub mod layout;
pub mod suballocator;

pub use layout::{DeviceAlignment, DeviceLayout, DeviceSize, LayoutError};
pub use suballocator::{
    AllocationType, BuddyAllocator, BumpAllocator, FreeListAllocator, PoolAllocator, RangeInfo,
    RangeKind, Suballocation, SuballocationHandle, Suballocator, SuballocatorError,
};
