//! The allocator: the [`MemoryAllocator`] trait and the requests it serves.
//!
//! # Asking for memory
//!
//! A request is three things. [`AllocationRequirements`] say what the resource needs: size,
//! alignment, the memory types it can live in, and whether the driver prefers or requires a
//! dedicated memory object (from `vkGet*MemoryRequirements2` with
//! `VkMemoryDedicatedRequirements`). [`AllocationType`](crate::AllocationType) says whether the resource is linear
//! (buffers, linear images) or not (optimal images), for buffer-image granularity.
//! [`AllocationCreateInfo`] says what the user intends: [`MemoryUsage`] picks the memory
//! type (best as an automatic usage, which takes the resource's usage flags and the host
//! access into account, see [`intent`]), [`MemoryAllocatePreference`] governs dedicated
//! allocations, and an optional name shows up in leak reports. [`AllocationDesc`] holds all
//! three (and the resource, for a dedicated allocation) for
//! [`MemoryAllocator::allocate_desc`].
//!
//! # Where an allocation goes
//!
//! Most allocations are ranges of a shared block; some get a memory object of their own (a
//! *dedicated* allocation): when the driver requires or prefers it, when the request is
//! large, or when the preference says so. When the driver runs out of memory, the allocator
//! retries with smaller blocks, then a dedicated allocation, then the next-best memory type.
//! All of these rules, and their thresholds, are in one place: the
//! [placement policy](placement). Dedicated allocations carry
//! `VkMemoryDedicatedAllocateInfo` when the resource is known.
//!
//! # Non-coherent memory
//!
//! In memory that is host-visible but not host-coherent, writes by the host must be flushed
//! and writes by the device invalidated, in whole `nonCoherentAtomSize` atoms. Every
//! suballocation in such memory therefore starts and ends on an atom boundary
//! ([placement](placement#non-coherent-memory)), so that the widened flush or invalidate of
//! one allocation ([`MemoryAlloc::write`](crate::MemoryAlloc::write), [`MemoryAlloc::read`](crate::MemoryAlloc::read), [`MemoryAlloc::flush`](crate::MemoryAlloc::flush),
//! [`MemoryAlloc::invalidate`](crate::MemoryAlloc::invalidate)) never touches the bytes of another, which the GPU or another
//! thread may be writing at that moment. The allocation's [`size`](crate::MemoryAlloc::size) is
//! then the padded size (with debug margins, the size requested: the margins, inside the
//! suballocation, take up the padding). (VMA does the same.)
//!
//! # Threads
//!
//! An allocator is `Send + Sync` and meant to be shared: allocating and freeing take `&self`.
//! Threads that allocate at the same time would queue on a block's lock, so each block is
//! cut into a few arenas (up to
//! [`block_arenas`](GenericMemoryAllocatorCreateInfo::block_arenas), by default one per CPU,
//! at most four, none smaller than [`placement::MIN_ARENA_SIZE`]) with a lock each. A thread
//! tries its own arena of every block first and the others before a new block is made:
//! threads share the blocks, and no memory is set aside per thread.

mod bind_next;
mod block_memory;
mod block_vec;
mod config;
mod dedicated;
pub mod defrag;
pub mod desc;
mod error;
mod execute;
mod generic;
mod import;
pub mod intent;
mod memory_allocator;
pub mod memory_pool;
pub mod memory_type;
mod observe;
mod pages;
pub mod placement;
mod pool_name;
mod request;
mod requirements;
pub mod resources;
mod type_cache;

pub use self::config::{
    BlockSizeThresholds, ConfigError, DebugOptions, GenericMemoryAllocatorCreateInfo, LeakCheck,
    MAX_AUTO_BLOCK_ARENAS, MAX_BLOCK_ARENAS, MAX_DEBUG_MARGIN,
};
pub use self::defrag::{
    Defragmentation, DefragmentationAlgorithm, DefragmentationInfo, DefragmentationPass,
};
pub use self::desc::AllocationDesc;
pub use self::error::AllocationError;
pub use self::generic::{GenericMemoryAllocator, StandardMemoryAllocator};
pub use self::intent::{HostAccess, ResourceUsage};
pub use self::memory_allocator::MemoryAllocator;
pub use self::memory_pool::{MemoryPool, PoolCreateInfo, PoolMemoryType};
pub use self::memory_type::{MemoryTypeFilter, MemoryUsage};
pub use self::placement::MemoryAllocatePreference;
#[allow(deprecated)]
pub use self::request::MemoryRequirements;
pub use self::request::{AllocationCreateInfo, AllocationRequirements};
pub use self::resources::{OwnedBuffer, OwnedImage};
