//! Custom pools: blocks of one memory type set aside for one kind of resource (VMA's
//! `VmaPool`).
//!
//! One shared set of blocks per memory type mixes resources of every lifetime: a long-lived
//! 1 KiB buffer between freed per-frame ones pins its block. A [`MemoryPool`] keeps its own
//! blocks, of one memory type and one block size, carved by a suballocator of its own choice
//! (a [`RingAllocator`](crate::RingAllocator) for per-frame uploads, a
//! [`SlotAllocator`](crate::SlotAllocator) for same-sized objects, the default
//! [`FreeListAllocator`] for long-lived textures), between a minimum number of blocks made up
//! front and never released, and a maximum beyond which allocating fails with
//! [`AllocationError::PoolFull`] without calling the driver.
//!
//! # Allocating from a pool
//!
//! A pool is a [`MemoryAllocator`] itself: allocate from it with the same entry points as
//! from the allocator, [`allocate`](MemoryAllocator::allocate),
//! [`create_buffer`](MemoryAllocator::create_buffer) and
//! [`create_image`](MemoryAllocator::create_image), called on the pool. The requirements must
//! allow the pool's memory type; `AllocationCreateInfo::usage` is not consulted (the pool's
//! memory type was chosen when it was made). Where a pool's request goes is decided by the
//! [placement rules for pools](super::placement#custom-pools).
//!
//! # Sharing
//!
//! A pool is a cheap handle (`Clone`, `Send`, `Sync`): threads allocate from it at the same
//! time, and its blocks are cut into arenas as the allocator's are
//! ([`PoolCreateInfo::block_arenas`]). It shares the device's memory-object count, the
//! `maxMemoryAllocationCount` guard and the heap budget with the allocator's default block vectors
//! and with every other pool. The allocator's [statistics](super::GenericMemoryAllocator::statistics),
//! [snapshots](super::GenericMemoryAllocator::snapshot) and leak report show each live pool by name.
//!
//! # Dropping a pool
//!
//! Dropping the last handle of a pool while allocations from it are alive is memory-safe: the
//! allocations keep their blocks alive and free them when they are dropped. The drop logs
//! them, like the allocator's leak report (target [`LOG_TARGET`](crate::stats::LOG_TARGET)).
//! The allocator's statistics, snapshots, leak report and corruption checks go on showing
//! them (under the pool's name) until they are freed: the memory they hold is still the
//! allocator's.

use super::block_memory::{allocate_releasing_kept, DeviceBlockVec, ReleaseKept};
use super::block_vec::{BlockLimits, BlockVec, LeftBlock, NewBlockError};
use super::config::GenericMemoryAllocatorCreateInfo;
use super::config::{arenas_per_block, check_priority, ConfigError, DebugOptions};
use super::dedicated::DedicatedRegistry;
use super::defrag::{DefragVec, Defragmentation, DefragmentationInfo};
use super::execute::{self, MemorySource, Placing, Vector};
use super::memory_type::{find_memory_type_index, is_type_allowed};
use super::observe::{Held, Left, Observe, Observer};
use super::placement::{ArenaLayout, Request, TypeFacts};
use super::pool_name::PoolName;
use super::request::{check_create_info, meta_of};
use super::{
    AllocationCreateInfo, AllocationError, AllocationRequirements, MemoryAllocator,
    MemoryTypeFilter, MemoryUsage,
};
use crate::allocation::MemoryAlloc;
use crate::corruption::{CorruptionError, CorruptionReport};
use crate::device::MemoryDevice;
use crate::device_memory::{
    DedicatedAllocation, ExportHandleTypes, MemoryObject, MemoryObjectCreateInfo,
};
use crate::layout::{DeviceLayout, DeviceSize};
use crate::stats::{AllocatorStatistics, LeakedAllocation, MemorySnapshot};
use crate::suballocator::{AllocationType, FreeListAllocator, Suballocator};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

/// Which memory type a pool allocates from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolMemoryType {
    /// This memory type index.
    Index(u32),
    /// The best type for `usage` among `memory_type_bits` (from the requirements of an
    /// example resource), as [`MemoryAllocator::find_memory_type_index`] picks it; an
    /// automatic usage is resolved for a resource of unknown usage (the GPU uses it in
    /// place), with the device's heaps in mind, and no small heap is rationed.
    Find {
        /// The memory types the pool's resources allow.
        memory_type_bits: u32,
        /// What the memory is for.
        usage: MemoryUsage,
    },
}

/// How a [`MemoryPool`] is set up.
///
/// Build it with `..Default::default()`: new fields may be added.
#[derive(Clone, Debug, PartialEq)]
pub struct PoolCreateInfo {
    /// The name statistics, dumps and leak reports show. The default value is `None`: the
    /// pool is then called `pool N`, N counting the pools of the process.
    pub name: Option<Arc<str>>,
    /// The memory type. The default value is the best `DeviceOnly` type of all.
    pub memory_type: PoolMemoryType,
    /// The size of every block, at most the heap's size. The default value is 0: the
    /// allocator's block size for the heap.
    pub block_size: DeviceSize,
    /// Blocks made when the pool is made and never released. The default value is 0.
    pub min_block_count: usize,
    /// The most blocks the pool holds; past them, allocating fails with
    /// [`AllocationError::PoolFull`] without calling the driver. At least 1 and at least
    /// `min_block_count`. The default value is `usize::MAX`.
    pub max_block_count: usize,
    /// Priority of the blocks' memory for `VK_EXT_memory_priority`, 0.0 ..= 1.0. The default
    /// value is 0.5.
    pub priority: f32,
    /// External memory handle types of the blocks. The default value is none.
    pub export_handle_types: ExportHandleTypes,
    /// How many arenas a block is cut into at most, as
    /// [`GenericMemoryAllocatorCreateInfo::block_arenas`](super::GenericMemoryAllocatorCreateInfo::block_arenas)
    /// (`Some(1)` keeps blocks whole, which a ring-buffer pool wants). The default value is
    /// `None`: the allocator's setting.
    pub block_arenas: Option<usize>,
    /// A `pNext` chain of your own for the `vkAllocateMemory` of every block and dedicated
    /// allocation of the pool (VMA's `pMemoryAllocateNext`), appended after the crate's
    /// structures (see [`external_memory`](crate::external_memory)). It holds no import
    /// structure (each of the pool's memory objects would import the same handle): the pool
    /// is refused with [`ConfigError::PoolImport`]. The
    /// default value is `None`.
    pub memory_allocate_next: Option<crate::AllocateNext>,
    /// The least alignment of every allocation's offset in the pool (VMA's
    /// `minAllocationAlignment`), on top of what each resource requires and of
    /// [`AllocationCreateInfo::min_alignment`]. The default value is 1.
    pub min_alignment: crate::DeviceAlignment,
    /// Which free range the pool's allocations take when several fit (VMA's pool
    /// algorithm and strategy flags; see [`strategy`](crate::suballocator::strategy)); an
    /// allocation's own [`AllocationCreateInfo::strategy`] wins. The default value is
    /// [`AllocationStrategy::Default`](crate::AllocationStrategy::Default).
    pub strategy: crate::AllocationStrategy,
    #[doc(hidden)]
    pub _ne: crate::non_exhaustive::NonExhaustive,
}

impl Default for PoolCreateInfo {
    fn default() -> Self {
        Self {
            name: None,
            memory_type: PoolMemoryType::Find {
                memory_type_bits: u32::MAX,
                usage: MemoryUsage::DeviceOnly,
            },
            block_size: 0,
            min_block_count: 0,
            max_block_count: usize::MAX,
            priority: 0.5,
            export_handle_types: ExportHandleTypes::NONE,
            block_arenas: None,
            memory_allocate_next: None,
            min_alignment: crate::DeviceAlignment::MIN,
            strategy: crate::AllocationStrategy::Default,
            _ne: crate::non_exhaustive::NonExhaustive(()),
        }
    }
}

/// What every handle of one pool shares.
struct PoolInner<S> {
    device: Arc<MemoryDevice>,
    name: Arc<PoolName>,
    memory_type_index: u32,
    facts: TypeFacts,
    blocks: Arc<DeviceBlockVec<S>>,
    min_block_count: usize,
    max_block_count: usize,
    priority: f32,
    export_handle_types: ExportHandleTypes,
    /// The user's `vkAllocateMemory` chain.
    memory_allocate_next: Option<crate::AllocateNext>,
    /// The pool's least alignment.
    min_alignment: crate::DeviceAlignment,
    /// How its allocations choose among free ranges, unless they say.
    strategy: crate::AllocationStrategy,
    /// The allocator's `device_address` and `dedicated_allocation` settings.
    device_address: bool,
    dedicated_allocation: bool,
    /// The allocator's debug aids.
    debug: DebugOptions,
    /// Releases the empty blocks the allocator keeps in the pool's heap, when the heap runs
    /// out (see [releasing](super::block_vec#releasing)).
    release_kept: ReleaseKept,
    /// Keeps the allocator's kept blocks from raising its peak as the pool makes memory.
    peak: Arc<dyn AllocatorPeak>,
    dedicated: Arc<DedicatedRegistry>,
    /// The pool's own memory, for its statistics and the leak report on drop.
    observer: Observer,
    /// The allocator's observer, which is handed what the pool leaves behind when it is
    /// dropped while allocations in it live on.
    allocator_observer: Weak<Observer>,
    /// [`PoolInner::leave`], run on drop (a `Drop` impl cannot ask for `S`'s bounds).
    on_drop: fn(&PoolInner<S>),
}

impl<S> Drop for PoolInner<S> {
    fn drop(&mut self) {
        (self.on_drop)(self)
    }
}

impl<S: Suballocator + Send + 'static> PoolInner<S> {
    /// Hands the blocks that still hold allocations, and the register of the live dedicated
    /// allocations, to the allocator's observer: its statistics, snapshots and leak report
    /// go on showing them until they are freed.
    fn leave(&self) {
        let Some(allocator) = self.allocator_observer.upgrade() else {
            return;
        };
        let mut blocks = Vec::new();
        self.blocks.for_each_block(|b| {
            if !b.is_empty() {
                blocks.push(LeftBlock::of(b));
            }
        });
        if blocks.is_empty() && self.dedicated.is_empty() {
            return;
        }
        // The allocator stops seeing the pool as it starts seeing what the pool left.
        allocator.replace_pool(
            &self.observer.own_weak(),
            Arc::new(Left {
                device: self.device.clone(),
                memory_type_index: self.memory_type_index,
                blocks,
                dedicated: self.dedicated.clone(),
                pool: self.name.clone(),
            }),
        );
    }
}

/// A custom pool of blocks of one memory type, suballocated by `S` (see the
/// [module docs](self)). Made by [`GenericMemoryAllocator::create_pool`](super::GenericMemoryAllocator::create_pool).
pub struct MemoryPool<S = FreeListAllocator> {
    inner: Arc<PoolInner<S>>,
}

impl<S> Clone for MemoryPool<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<S> std::fmt::Debug for MemoryPool<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryPool")
            .field("name", &self.inner.name)
            .field("memory_type_index", &self.inner.memory_type_index)
            .field("block_size", &self.inner.facts.block_size)
            .field("min_block_count", &self.inner.min_block_count)
            .field("max_block_count", &self.inner.max_block_count)
            .finish_non_exhaustive()
    }
}

/// Names of pools made without one.
fn pool_name(name: &Option<Arc<str>>) -> Arc<str> {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    name.clone()
        .unwrap_or_else(|| format!("pool {}", NEXT.fetch_add(1, Ordering::Relaxed)).into())
}

/// What a custom pool of the allocator calls around each memory object it makes, so that
/// the allocator's kept empty blocks do not raise its peak either (see the block vectors' "Releasing").
pub(crate) trait AllocatorPeak: Send + Sync {
    /// Before a memory object of `size` bytes is made: the default vectors give back their
    /// kept blocks as far as the allocator's peak needs.
    fn make_way(&self, size: DeviceSize);
    /// After one was made.
    fn made(&self);
}

/// What a custom pool takes from the allocator that makes it
/// ([`GenericMemoryAllocator::create_pool`](super::GenericMemoryAllocator::create_pool)).
pub(crate) struct PoolParent<'a> {
    pub device: Arc<MemoryDevice>,
    pub create_info: &'a GenericMemoryAllocatorCreateInfo,
    pub observer: &'a Arc<Observer>,
    /// The pool's memory type, as the allocator resolved [`PoolCreateInfo::memory_type`].
    pub memory_type_index: u32,
    /// The allocator's block size for that memory type, when it has one.
    pub block_size: Option<DeviceSize>,
    /// Releases the empty blocks the allocator keeps in the pool's heap.
    pub release_kept: ReleaseKept,
    /// Keeps the allocator's kept blocks from raising its peak as the pool makes memory.
    pub peak: Arc<dyn AllocatorPeak>,
}

impl<S: Suballocator + Send + 'static> MemoryPool<S> {
    /// A custom pool of `parent`'s device (what
    /// [`GenericMemoryAllocator::create_pool`](super::GenericMemoryAllocator::create_pool)
    /// makes).
    pub(crate) fn new(
        parent: PoolParent<'_>,
        info: &PoolCreateInfo,
    ) -> Result<Self, AllocationError> {
        let device = parent.device.clone();
        let props = device.memory_properties();
        let memory_type_index = parent.memory_type_index;
        let memory_type = props.memory_type(memory_type_index).ok_or(
            AllocationError::MemoryTypeIndexOutOfRange {
                index: memory_type_index,
                count: props.memory_types.len() as u32,
            },
        )?;
        let flags = memory_type.property_flags;
        let required = MemoryTypeFilter {
            required_flags: flags,
            ..Default::default()
        };
        if !is_type_allowed(flags, &required, device.features()) {
            return Err(AllocationError::MemoryTypeNotUsable {
                index: memory_type_index,
                reason: "it needs a device feature that is not enabled",
            });
        }
        let heap_size = props.heap_size_of_type(memory_type_index).unwrap_or(0);
        let block_size = match info.block_size {
            0 => parent.block_size.unwrap_or(heap_size),
            size => size,
        };
        if block_size > heap_size {
            return Err(
                ConfigError::Pool("block_size is larger than the memory type's heap").into(),
            );
        }
        if info.max_block_count == 0 || info.min_block_count > info.max_block_count {
            return Err(ConfigError::Pool(
                "max_block_count must be at least 1 and at least min_block_count",
            )
            .into());
        }
        check_priority(info.priority)?;
        if let Some(import) = info.memory_allocate_next.and_then(|n| n.import_structure()) {
            return Err(ConfigError::PoolImport(import).into());
        }
        let facts = TypeFacts::of_type(
            props,
            memory_type_index,
            block_size,
            device.non_coherent_atom_size(),
        )
        .ok_or(AllocationError::MemoryTypeIndexOutOfRange {
            index: memory_type_index,
            count: props.memory_types.len() as u32,
        })?;
        if !facts.suballocatable {
            return Err(AllocationError::MemoryTypeNotUsable {
                index: memory_type_index,
                reason: "lazily allocated and RDMA memory cannot back a pool of blocks",
            });
        }
        let arenas = arenas_per_block(info.block_arenas.or(parent.create_info.block_arenas))?;
        let name = PoolName::new(pool_name(&info.name));
        let blocks = BlockVec::new(
            arenas,
            BlockLimits::pool(info.min_block_count, info.max_block_count),
        );
        let dedicated = Arc::new(DedicatedRegistry::of_pool(name.clone()));
        let held: Arc<dyn Observe> = Arc::new(Held {
            device: device.clone(),
            vecs: vec![(memory_type_index, blocks.clone())],
            dedicated: dedicated.clone(),
            pool: Some(name.clone()),
        });
        parent.observer.add_pool(Arc::downgrade(&held));
        let pool = MemoryPool {
            inner: Arc::new(PoolInner {
                device,
                name,
                memory_type_index,
                facts,
                blocks,
                min_block_count: info.min_block_count,
                max_block_count: info.max_block_count,
                priority: info.priority,
                export_handle_types: info.export_handle_types,
                memory_allocate_next: info.memory_allocate_next,
                min_alignment: info.min_alignment,
                strategy: info.strategy,
                device_address: parent.create_info.device_address,
                dedicated_allocation: parent.create_info.dedicated_allocation,
                debug: parent.create_info.debug,
                release_kept: parent.release_kept,
                peak: parent.peak,
                dedicated,
                observer: Observer::new(held, "MemoryPool", parent.create_info.debug.leak_check),
                allocator_observer: Arc::downgrade(parent.observer),
                on_drop: PoolInner::leave,
            }),
        };
        let inner = &pool.inner;
        let g = inner.device.buffer_image_granularity();
        for _ in 0..info.min_block_count {
            inner
                .blocks
                .add_empty_block(
                    block_size,
                    |size, largest| ArenaLayout::choose(size, 1, largest, g, arenas),
                    |size| inner.block_memory(size, false),
                )
                .map_err(|e| match e {
                    NewBlockError::Memory(e) => e,
                    NewBlockError::Full { max_blocks } => AllocationError::PoolFull { max_blocks },
                    NewBlockError::NoSize | NewBlockError::DoesNotFit => {
                        AllocationError::OutOfDeviceMemory
                    }
                })?;
        }
        Ok(pool)
    }
}

impl<S: Suballocator + Send + 'static> PoolInner<S> {
    /// The memory of a new block of `size` bytes.
    fn block_memory(
        &self,
        size: DeviceSize,
        within_budget: bool,
    ) -> Result<MemoryObject, AllocationError> {
        self.peak.make_way(size);
        let memory = allocate_releasing_kept(
            &self.device,
            &MemoryObjectCreateInfo {
                size,
                memory_type_index: self.memory_type_index,
                export_handle_types: self.export_handle_types,
                device_address: self.device_address,
                priority: Some(self.priority),
                within_budget,
                next: self.memory_allocate_next,
                ..Default::default()
            },
            &self.release_kept,
        )?;
        self.peak.made();
        Ok(memory)
    }

    /// A dedicated allocation of the pool's memory type.
    fn dedicated(
        &self,
        size: DeviceSize,
        allocation_type: AllocationType,
        dedicated: Option<DedicatedAllocation>,
        create_info: &AllocationCreateInfo,
    ) -> Result<MemoryAlloc, AllocationError> {
        self.peak.make_way(size);
        let memory = allocate_releasing_kept(
            &self.device,
            &MemoryObjectCreateInfo {
                size,
                memory_type_index: self.memory_type_index,
                dedicated,
                export_handle_types: self.export_handle_types,
                device_address: self.device_address,
                priority: Some(create_info.priority.unwrap_or(self.priority)),
                within_budget: create_info.within_budget,
                next: self.memory_allocate_next,
                ..Default::default()
            },
            // The heap's kept blocks, and the pool's own beyond its minimum: nothing holds
            // the pool's list here (a dedicated allocation is made outside it), so kept
            // memory never makes a dedicated allocation of the pool fail either.
            || (self.release_kept)() + self.blocks.try_release_empty(),
        )?;
        self.peak.made();
        Ok(execute::wrap_dedicated(
            &self.dedicated,
            memory,
            allocation_type,
            meta_of(create_info, &self.debug),
            None,
        ))
    }

    fn allocate(
        &self,
        request: &Request,
        allocation_type: AllocationType,
        create_info: &AllocationCreateInfo,
        dedicated: Option<DedicatedAllocation>,
    ) -> Result<MemoryAlloc, AllocationError> {
        check_create_info(create_info)?;
        // The allocation's own strategy wins over the pool's.
        let strategy = match create_info.strategy {
            crate::AllocationStrategy::Default => self.strategy,
            s => s,
        };
        let request = &Request {
            layout: request
                .layout
                .align_to(self.min_alignment.max(create_info.min_alignment))?,
            ..*request
        };
        let vector = Vector {
            device: &self.device,
            memory_type_index: self.memory_type_index,
            facts: self.facts,
            blocks: &self.blocks,
            placing: Placing::Pool,
            grow: false,
            granularity: self.device.buffer_image_granularity(),
            margin: self.debug.margin,
            name_resource: self.dedicated_allocation,
            source: self,
        };
        vector.allocate(request, allocation_type, strategy, create_info, dedicated)
    }
}

impl<S: Suballocator + Send + 'static> MemorySource for PoolInner<S> {
    fn block_memory(
        &self,
        size: DeviceSize,
        create_info: &AllocationCreateInfo,
    ) -> Result<MemoryObject, AllocationError> {
        PoolInner::block_memory(self, size, create_info.within_budget)
    }

    fn dedicated(
        &self,
        size: DeviceSize,
        allocation_type: AllocationType,
        dedicated: Option<DedicatedAllocation>,
        create_info: &AllocationCreateInfo,
    ) -> Result<MemoryAlloc, AllocationError> {
        PoolInner::dedicated(self, size, allocation_type, dedicated, create_info)
    }

    fn meta(
        &self,
        create_info: &AllocationCreateInfo,
    ) -> Option<Arc<crate::allocation::AllocationMeta>> {
        meta_of(create_info, &self.debug)
    }
}

impl<S: Suballocator + Send + 'static> MemoryPool<S> {
    /// The pool's name.
    pub fn name(&self) -> Arc<str> {
        self.inner.name.get()
    }

    /// Renames the pool (VMA's `vmaSetPoolName`): statistics, dumps and leak reports show
    /// `name` from now on; `None` gives it a name of the form `pool N`, as at creation.
    pub fn set_name(&self, name: Option<Arc<str>>) {
        self.inner.name.set(pool_name(&name));
    }

    /// The memory type the pool allocates from.
    pub fn memory_type_index(&self) -> u32 {
        self.inner.memory_type_index
    }

    /// The size of the pool's blocks.
    pub fn block_size(&self) -> DeviceSize {
        self.inner.facts.block_size
    }

    /// The number of blocks the pool holds now.
    pub fn block_count(&self) -> usize {
        self.inner.blocks.block_count()
    }

    /// The pool's least and most blocks.
    pub fn block_count_limits(&self) -> (usize, usize) {
        (self.inner.min_block_count, self.inner.max_block_count)
    }

    /// Lists the allocations of the pool still alive and logs them at the `warn` level, as
    /// the drop of the pool's last handle does.
    pub fn report_leaks(&self) -> Vec<LeakedAllocation> {
        self.inner.observer.report_leaks()
    }

    /// Starts a [defragmentation](super::defrag) of the pool's blocks.
    pub fn defragmentation(&self, info: &DefragmentationInfo) -> Defragmentation<S> {
        let target = DefragVec {
            facts: self.inner.facts,
            blocks: self.inner.blocks.clone(),
            granularity: self.inner.device.buffer_image_granularity(),
            margin: self.inner.debug.margin,
            strategy: self.inner.strategy,
        };
        // The pool lives as long as the defragmentation: dropping the pool's last handle
        // first would otherwise report the destinations it holds as leaks.
        Defragmentation::new(*info, vec![target]).keeping(self.inner.clone())
    }

    /// Checks the [debug margins](crate::corruption#margins) of the pool's live allocations,
    /// as [`GenericMemoryAllocator::check_corruption`](super::GenericMemoryAllocator::check_corruption) does for its allocator.
    pub fn check_corruption(&self) -> Result<CorruptionReport, CorruptionError> {
        if self.inner.debug.margin == 0 {
            return Err(CorruptionError::MarginsOff);
        }
        self.inner.observer.check_corruption(u32::MAX)
    }

    fn check_bits(&self, memory_type_bits: u32) -> Result<(), AllocationError> {
        if memory_type_bits & (1u32.checked_shl(self.inner.memory_type_index).unwrap_or(0)) == 0 {
            return Err(AllocationError::PoolMemoryTypeNotAllowed {
                memory_type_index: self.inner.memory_type_index,
                bits: memory_type_bits,
            });
        }
        Ok(())
    }

    fn check_index(&self, memory_type_index: u32) -> Result<(), AllocationError> {
        // An index past the device's types is that, not a type the pool does not allow (whose
        // bit, past 31, would read as an empty mask).
        let count = self.inner.device.memory_properties().memory_types.len() as u32;
        if memory_type_index >= count {
            return Err(AllocationError::MemoryTypeIndexOutOfRange {
                index: memory_type_index,
                count,
            });
        }
        if memory_type_index != self.inner.memory_type_index {
            return Err(AllocationError::PoolMemoryTypeNotAllowed {
                memory_type_index: self.inner.memory_type_index,
                bits: 1u32.checked_shl(memory_type_index).unwrap_or(0),
            });
        }
        Ok(())
    }
}

impl<S: Suballocator + Send + 'static> MemoryAllocator for MemoryPool<S> {
    fn device(&self) -> &Arc<MemoryDevice> {
        &self.inner.device
    }

    /// The pool's memory type, if `memory_type_bits` allows it and it satisfies `filter`.
    fn find_memory_type_index(
        &self,
        memory_type_bits: u32,
        filter: MemoryTypeFilter,
    ) -> Option<u32> {
        let only = 1u32.checked_shl(self.inner.memory_type_index).unwrap_or(0);
        find_memory_type_index(
            self.inner.device.memory_properties(),
            self.inner.device.features(),
            memory_type_bits & only,
            &filter,
        )
    }

    fn allocate_from_type(
        &self,
        memory_type_index: u32,
        layout: DeviceLayout,
        allocation_type: AllocationType,
        create_info: &AllocationCreateInfo,
    ) -> Result<MemoryAlloc, AllocationError> {
        self.check_index(memory_type_index)?;
        let request = Request {
            layout,
            preference: create_info.allocate_preference,
            prefers_dedicated: false,
            requires_dedicated: false,
        };
        self.inner
            .allocate(&request, allocation_type, create_info, None)
    }

    fn allocate(
        &self,
        requirements: AllocationRequirements,
        allocation_type: AllocationType,
        create_info: &AllocationCreateInfo,
        dedicated: Option<DedicatedAllocation>,
    ) -> Result<MemoryAlloc, AllocationError> {
        self.check_bits(requirements.memory_type_bits)?;
        let request = Request {
            layout: requirements.layout,
            preference: create_info.allocate_preference,
            prefers_dedicated: requirements.prefers_dedicated_allocation,
            requires_dedicated: requirements.requires_dedicated_allocation,
        };
        self.inner
            .allocate(&request, allocation_type, create_info, dedicated)
    }

    fn allocate_dedicated(
        &self,
        memory_type_index: u32,
        size: DeviceSize,
        dedicated: Option<DedicatedAllocation>,
        create_info: &AllocationCreateInfo,
    ) -> Result<MemoryAlloc, AllocationError> {
        check_create_info(create_info)?;
        self.check_index(memory_type_index)?;
        execute::check_explicit_dedicated(
            &self.inner.device,
            memory_type_index,
            size,
            self.inner.facts.heap_size,
        )?;
        self.inner
            .dedicated(size, AllocationType::Unknown, dedicated, create_info)
    }

    fn statistics(&self) -> AllocatorStatistics {
        AllocatorStatistics::of_device(&self.inner.device, self.inner.observer.all_statistics())
            .list_pools(self.inner.observer.live_pool_list())
    }

    fn snapshot(&self) -> MemorySnapshot {
        MemorySnapshot::of_device(&self.inner.device, self.inner.observer.all_snapshots())
            .list_pools(self.inner.observer.live_pool_list())
    }
}
