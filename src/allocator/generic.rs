//! [`GenericMemoryAllocator`]: one block vector per memory type, suballocated by `S`, placed
//! by the [placement policy](super::placement).

use self::hot::HotFacts;
use super::block_memory::DeviceBlockVec;
use super::block_vec::{BlockLimits, BlockVec};
use super::config::{arenas_per_block, check_priority, ConfigError};
use super::dedicated::DedicatedRegistry;
use super::defrag::{DefragVec, Defragmentation, DefragmentationInfo};
use super::execute::{self, MemorySource, Placing, Vector};
use super::intent::{self, HeapFacts, Resolved};
use super::memory_pool::{MemoryPool, PoolCreateInfo, PoolMemoryType, PoolParent};
use super::memory_type::{find_memory_type_index, is_type_allowed};
use super::observe::{Held, Observer};
use super::placement::{ObjectCount, Request, TypeFacts};
use super::request::{check_create_info, meta_of};
use super::type_cache::TypeCache;
use super::{
    AllocationCreateInfo, AllocationError, AllocationRequirements,
    GenericMemoryAllocatorCreateInfo, MemoryAllocator, MemoryTypeFilter,
};
use crate::allocation::{AllocationMeta, MemoryAlloc};
use crate::corruption::{CorruptionError, CorruptionReport};
use crate::device::{mask_of_count, MemoryDevice};
use crate::device_memory::{
    DedicatedAllocation, ExportHandleTypes, MemoryObject, MemoryObjectCreateInfo,
};
use crate::layout::{DeviceLayout, DeviceSize};
use crate::stats::{AllocatorStatistics, LeakedAllocation, MemorySnapshot, VmaDumpInfo};
use crate::suballocator::{AllocationType, FreeListAllocator, Suballocator};
use std::sync::Arc;

mod full;
mod hot;
mod kept;
mod own_memory;
mod peak;

use self::peak::PeakState;

/// A memory allocator with one block vector of `VkDeviceMemory` blocks per memory type, each
/// block carved by a suballocator `S`. See the [module docs](super) for its policy.
pub struct GenericMemoryAllocator<S> {
    device: Arc<MemoryDevice>,
    block_vecs: Vec<Arc<DeviceBlockVec<S>>>,
    /// What the placement knows of each memory type.
    types: Vec<TypeFacts>,
    create_info: GenericMemoryAllocatorCreateInfo,
    /// Dedicated allocations.
    dedicated: Arc<DedicatedRegistry>,
    /// Statistics, snapshots and the leak report on drop, of the default and custom pools.
    /// Shared with the allocator's defragmentations, so that the leak report runs once the
    /// allocator and all of them are gone: until then the destinations a defragmentation
    /// holds between passes are allocations, but not the application's.
    observer: Arc<Observer>,
    /// The memory type chosen for the last `memory_type_bits` of each intent class.
    type_cache: TypeCache,
    /// The shape of the device's heaps, for the automatic usages.
    heap_facts: HeapFacts,
    /// What the [hot path](Self::allocate_hot) needs, worked out once.
    hot: HotFacts,
    /// The most memory the allocator reserved: kept empty blocks never take it higher (see
    /// [`PeakState`]).
    peak: Arc<PeakState<S>>,
}

/// The allocator most applications want: [`FreeListAllocator`] blocks.
pub type StandardMemoryAllocator = GenericMemoryAllocator<FreeListAllocator>;

impl StandardMemoryAllocator {
    /// An allocator with the default configuration.
    pub fn new_default(device: Arc<MemoryDevice>) -> Self {
        match Self::new(device, GenericMemoryAllocatorCreateInfo::default()) {
            Ok(a) => a,
            // The default configuration is valid by construction (tested).
            Err(e) => unreachable!("default allocator configuration rejected: {e}"),
        }
    }
}

impl<S> std::fmt::Debug for GenericMemoryAllocator<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GenericMemoryAllocator")
            .field("device", &self.device)
            .field("types", &self.types)
            .field("create_info", &self.create_info)
            .finish_non_exhaustive()
    }
}

impl<S: Suballocator + Send + 'static> GenericMemoryAllocator<S> {
    /// Creates an allocator; no memory is allocated until it is needed.
    pub fn new(
        device: Arc<MemoryDevice>,
        create_info: GenericMemoryAllocatorCreateInfo,
    ) -> Result<Self, AllocationError> {
        let arenas_per_block = arenas_per_block(create_info.block_arenas)?;
        let props = device.memory_properties();
        let type_count = props.memory_types.len();
        if !create_info.export_handle_types.is_empty()
            && create_info.export_handle_types.len() != type_count
        {
            return Err(ConfigError::ExportHandleTypes {
                given: create_info.export_handle_types.len(),
                types: type_count,
            }
            .into());
        }
        check_priority(create_info.block_priority)?;
        create_info.debug.check()?;
        let atom = device.non_coherent_atom_size();
        let types: Vec<TypeFacts> = (0..type_count as u32)
            .map(|i| {
                let heap = props.heap_size_of_type(i).unwrap_or(0);
                let block_size = create_info.block_sizes.block_size_for_heap(heap);
                // Every type has a heap (`MemoryProperties::from_vk` checks it).
                TypeFacts::of_type(props, i, block_size, atom).unwrap_or(TypeFacts {
                    suballocatable: false,
                    block_size,
                    heap_size: 0,
                    atom: None,
                })
            })
            .collect();
        let dedicated = Arc::<DedicatedRegistry>::default();
        // Each vector counts the dedicated allocations of its type as memory in use: they
        // share its peak (see the block vectors' "Releasing").
        let block_vecs: Vec<_> = types
            .iter()
            .enumerate()
            .map(|(i, facts)| {
                let outside = dedicated.bytes_of_type(i as u32);
                let limits = BlockLimits::default_vector(facts.block_size);
                BlockVec::new_counting(arenas_per_block, limits, outside)
            })
            .collect();
        let held = Held {
            device: device.clone(),
            vecs: block_vecs
                .iter()
                .enumerate()
                .map(|(i, v)| (i as u32, v.clone()))
                .collect(),
            dedicated: dedicated.clone(),
            pool: None,
        };
        let peak = PeakState::install(&device, &block_vecs);
        let observer = Arc::new(Observer::new(
            Arc::new(held),
            "GenericMemoryAllocator",
            create_info.debug.leak_check,
        ));
        let heap_facts =
            HeapFacts::of_device(props, device.physical_device_properties().device_type);
        let hot = HotFacts::of(props, &heap_facts, &create_info.debug);
        Ok(Self {
            device,
            block_vecs,
            types,
            create_info,
            dedicated,
            observer,
            type_cache: TypeCache::default(),
            heap_facts,
            hot,
            peak,
        })
    }

    /// The configuration.
    pub fn create_info(&self) -> &GenericMemoryAllocatorCreateInfo {
        &self.create_info
    }

    /// The memory type [`allocate`](MemoryAllocator::allocate) tries first for a resource
    /// with `requirements` and `create_info` (its usage, resource usage and, for the
    /// automatic usages, the size and the heaps' budgets now: see
    /// [`intent`]), or `None` when no type fits.
    pub fn memory_type_for(
        &self,
        requirements: &AllocationRequirements,
        create_info: &AllocationCreateInfo,
    ) -> Option<u32> {
        let bits = self.usable_bits(requirements.memory_type_bits).ok()?;
        let resolved = self.resolve(create_info);
        self.first_choice(
            bits,
            create_info,
            &resolved,
            requirements.layout.size(),
            &mut None,
        )
    }

    /// The memory type of a pool made for `usage` among `bits`: the automatic usages are
    /// resolved for a resource of unknown usage, without rationing (a pool's blocks are the
    /// application's explicit budget).
    pub(crate) fn pool_memory_type(&self, bits: u32, usage: super::MemoryUsage) -> Option<u32> {
        let resolved = intent::resolve(usage, intent::ResourceUsage::Unknown, self.heap_facts);
        self.choose(bits, &resolved, 0)
    }

    /// The memory type `allocate` would try first for `bits` and `create_info` (no small
    /// heap rationed).
    pub(super) fn type_for(&self, bits: u32, create_info: &AllocationCreateInfo) -> Option<u32> {
        self.choose(bits, &self.resolve(create_info), 0)
    }

    /// The flags `create_info`'s usage requires on this device (for errors).
    pub(super) fn required_flags(
        &self,
        create_info: &AllocationCreateInfo,
    ) -> ash::vk::MemoryPropertyFlags {
        self.resolve(create_info).filter.required_flags
    }

    /// The flags of `create_info`'s usage on this device.
    #[inline]
    fn resolve(&self, create_info: &AllocationCreateInfo) -> Resolved {
        intent::resolve(
            create_info.usage,
            create_info.resource_usage,
            self.heap_facts,
        )
    }

    /// The best type among `bits` for `resolved`, with `demoted` types behind the others.
    fn choose(&self, bits: u32, resolved: &Resolved, demoted: u32) -> Option<u32> {
        intent::choose(
            self.device.memory_properties(),
            self.device.features(),
            bits,
            resolved,
            demoted,
        )
    }

    /// The first type to try: the cached choice of the intent's class, unless the small-heap
    /// ration turns this request away from it ([caching](super::intent#caching-the-choice)).
    /// `demoted` caches the rationed-out types for the rest of the request, so that the
    /// heaps' budgets are read at most once per request.
    #[inline]
    fn first_choice(
        &self,
        bits: u32,
        create_info: &AllocationCreateInfo,
        resolved: &Resolved,
        size: DeviceSize,
        demoted: &mut Option<u32>,
    ) -> Option<u32> {
        let class = intent::class_of(create_info.usage, create_info.resource_usage);
        let first = self
            .type_cache
            .get_or(bits, class, || self.choose(bits, resolved, 0))?;
        if !resolved.rationed || !self.on_small_heap(first) {
            return Some(first);
        }
        let out = *demoted.get_or_insert_with(|| self.rationed_out(bits, resolved, size));
        if out & (1 << first) == 0 {
            Some(first)
        } else {
            self.choose(bits, resolved, out)
        }
    }

    /// Whether memory type `index` lives on a small BAR heap.
    #[inline]
    fn on_small_heap(&self, index: u32) -> bool {
        self.heap_facts.small_heaps != 0
            && self
                .device
                .memory_properties()
                .memory_type(index)
                .is_some_and(|t| self.heap_facts.is_small(t.heap_index))
    }

    /// The types among `bits` on a small BAR heap that a request of `size` bytes may not take
    /// now ([rationing](super::intent#rationing-a-small-bar-heap)), as a mask.
    #[inline]
    fn rationed_out(&self, bits: u32, resolved: &Resolved, size: DeviceSize) -> u32 {
        if !resolved.rationed || self.heap_facts.small_heaps == 0 {
            return 0;
        }
        let props = self.device.memory_properties();
        let mut out = 0;
        for (i, t) in props.memory_types.iter().enumerate().take(32) {
            if bits & (1 << i) == 0 || !self.heap_facts.is_small(t.heap_index) {
                continue;
            }
            let heap_size = props
                .memory_heaps
                .get(t.heap_index as usize)
                .map_or(0, |h| h.size);
            let (used, budget) = crate::budget::heap_load(&self.device, t.heap_index);
            if !intent::small_heap_admits(size, heap_size, used, budget) {
                out |= 1 << i;
            }
        }
        out
    }

    /// The preferred block size of memory type `memory_type_index`'s heap.
    pub fn block_size(&self, memory_type_index: u32) -> Option<DeviceSize> {
        self.types
            .get(memory_type_index as usize)
            .map(|t| t.block_size)
    }

    /// What VMA's JSON dump says beyond a snapshot: the device's name, type, version and
    /// limits, and the default block vectors' block sizes (see [`VmaDumpInfo`]).
    pub fn vma_dump_info(&self) -> VmaDumpInfo {
        let properties = self.device.physical_device_properties();
        VmaDumpInfo {
            gpu: properties
                .device_name_as_c_str()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            api_version: properties.api_version,
            device_type: properties.device_type.as_raw(),
            max_memory_allocation_count: self.device.max_memory_allocation_count(),
            buffer_image_granularity: self.device.buffer_image_granularity().as_devicesize(),
            non_coherent_atom_size: self.device.non_coherent_atom_size().as_devicesize(),
            preferred_block_sizes: self.types.iter().map(|t| t.block_size).collect(),
            ..Default::default()
        }
    }

    /// The allocator's memory, custom pools included, in VMA's JSON dump format (what
    /// `vmaBuildStatsString` writes with the detailed map), for the tools that read it, such
    /// as VMA's `GpuMemDumpVis.py`. See [`stats::vma_json`](crate::stats::vma_json).
    pub fn to_vma_json(&self) -> String {
        self.snapshot().to_vma_json(&self.vma_dump_info())
    }

    /// The number of blocks currently held for memory type `memory_type_index`.
    pub fn block_count(&self, memory_type_index: u32) -> usize {
        self.block_vecs
            .get(memory_type_index as usize)
            .map_or(0, |p| p.block_count())
    }

    fn check_type(&self, index: u32) -> Result<(), AllocationError> {
        if (index as usize) < self.types.len() {
            Ok(())
        } else {
            Err(AllocationError::MemoryTypeIndexOutOfRange {
                index,
                count: self.types.len() as u32,
            })
        }
    }

    /// A memory type named by the caller: it must exist and its special flags must be
    /// usable on this device.
    fn check_explicit_type(&self, index: u32) -> Result<(), AllocationError> {
        self.check_type(index)?;
        let flags = self
            .device
            .memory_properties()
            .memory_type(index)
            .map(|t| t.property_flags)
            .unwrap_or_default();
        let filter = MemoryTypeFilter {
            required_flags: flags,
            ..Default::default()
        };
        if !is_type_allowed(flags, &filter, self.device.features()) {
            return Err(AllocationError::MemoryTypeNotUsable {
                index,
                reason: "it needs a device feature that is not enabled",
            });
        }
        Ok(())
    }

    fn export_types(&self, memory_type_index: u32) -> ExportHandleTypes {
        self.create_info
            .export_handle_types
            .get(memory_type_index as usize)
            .copied()
            .unwrap_or_default()
    }

    fn objects(&self) -> ObjectCount {
        ObjectCount {
            live: self.device.live_memory_objects(),
            max: self.device.max_memory_allocation_count(),
        }
    }

    /// One `vkAllocateMemory`; `for_block`: a block of `memory_type_index`'s default vector,
    /// whose list the caller holds (and whose kept blocks it releases itself).
    fn allocate_memory(
        &self,
        memory_type_index: u32,
        size: DeviceSize,
        dedicated: Option<DedicatedAllocation>,
        priority: f32,
        create_info: &AllocationCreateInfo,
        for_block: bool,
    ) -> Result<MemoryObject, AllocationError> {
        let info = MemoryObjectCreateInfo {
            size,
            memory_type_index,
            dedicated,
            export_handle_types: self.export_types(memory_type_index),
            device_address: self.create_info.device_address,
            priority: Some(priority),
            within_budget: create_info.within_budget,
            ..Default::default()
        };
        self.make_memory(&info, for_block)
    }

    /// Makes a custom pool whose blocks are carved by `S` (see
    /// [`memory_pool`](super::memory_pool)), with its minimum blocks.
    ///
    /// Fails on an invalid configuration (no such or no usable memory type, memory that
    /// cannot be suballocated, a block size of more than the heap, block counts that do not
    /// fit together, an invalid priority) or when the minimum blocks cannot be allocated.
    pub fn create_pool<P: Suballocator + Send + 'static>(
        &self,
        info: &PoolCreateInfo,
    ) -> Result<MemoryPool<P>, AllocationError> {
        let memory_type_index = match info.memory_type {
            PoolMemoryType::Index(i) => i,
            PoolMemoryType::Find {
                memory_type_bits,
                usage,
            } => self.pool_memory_type(memory_type_bits, usage).ok_or(
                AllocationError::NoSuitableMemoryType {
                    bits: memory_type_bits,
                    required: MemoryTypeFilter::from(usage).required_flags,
                },
            )?,
        };
        let parent = PoolParent {
            device: self.device.clone(),
            create_info: &self.create_info,
            observer: &self.observer,
            memory_type_index,
            block_size: self.block_size(memory_type_index),
            release_kept: self.kept_releaser(memory_type_index),
            peak: self.peak.clone(),
        };
        MemoryPool::new(parent, info)
    }

    /// The default block vector of memory type `memory_type_index`, with `source` making its
    /// memory.
    fn vector<'a>(
        &'a self,
        memory_type_index: u32,
        source: &'a TypeSource<'a, S>,
    ) -> Vector<'a, S> {
        Vector {
            device: &self.device,
            memory_type_index,
            facts: self.types[memory_type_index as usize],
            blocks: &self.block_vecs[memory_type_index as usize],
            placing: Placing::Policy(self.objects()),
            grow: self.create_info.grow_blocks,
            granularity: self.device.buffer_image_granularity(),
            margin: self.create_info.debug.margin,
            name_resource: self.create_info.dedicated_allocation,
            source,
        }
    }

    /// What makes the memory of memory type `memory_type_index`'s blocks and dedicated
    /// allocations.
    fn source(&self, memory_type_index: u32) -> TypeSource<'_, S> {
        TypeSource {
            allocator: self,
            memory_type_index,
        }
    }

    /// Allocates from one memory type: the whole sequence of its vector.
    fn allocate_in_type(
        &self,
        memory_type_index: u32,
        request: &Request,
        allocation_type: AllocationType,
        create_info: &AllocationCreateInfo,
        dedicated: Option<DedicatedAllocation>,
    ) -> Result<MemoryAlloc, AllocationError> {
        self.check_type(memory_type_index)?;
        let source = self.source(memory_type_index);
        self.vector(memory_type_index, &source).allocate(
            request,
            allocation_type,
            create_info.strategy,
            create_info,
            dedicated,
        )
    }

    /// The metadata record of a new allocation: its name and user data.
    #[inline]
    fn meta(&self, create_info: &AllocationCreateInfo) -> Option<Arc<AllocationMeta>> {
        meta_of(create_info, &self.create_info.debug)
    }

    /// Statistics of the allocator's memory, its custom pools' included: in total, per heap
    /// (with the heap's budget), per memory type, per pool, and per block and dedicated
    /// allocation. Walks every range of every block (see [`stats`](crate::stats)).
    pub fn statistics(&self) -> AllocatorStatistics {
        AllocatorStatistics::of_device(&self.device, self.observer.all_statistics())
            .list_pools(self.observer.live_pool_list())
    }

    /// The full state: statistics and every range of every block and dedicated allocation,
    /// custom pools' included, with the names and user data of the allocations that have
    /// them. Render it with [`MemorySnapshot::to_json`] or [`MemorySnapshot::to_svg`].
    pub fn snapshot(&self) -> MemorySnapshot {
        MemorySnapshot::of_device(&self.device, self.observer.all_snapshots())
            .list_pools(self.observer.live_pool_list())
    }

    /// Starts a [defragmentation](super::defrag) of the allocator's default block vectors (custom
    /// pools defragment on their own: [`MemoryPool::defragmentation`](super::MemoryPool::defragmentation)).
    pub fn defragmentation(&self, info: &DefragmentationInfo) -> Defragmentation<S> {
        let targets = self
            .block_vecs
            .iter()
            .zip(&self.types)
            .map(|(blocks, &facts)| DefragVec {
                facts,
                blocks: blocks.clone(),
                granularity: self.device.buffer_image_granularity(),
                margin: self.create_info.debug.margin,
                strategy: crate::AllocationStrategy::Default,
            })
            .collect();
        // The leak report waits for the defragmentation too (see `observer`).
        Defragmentation::new(*info, targets).keeping(self.observer.clone())
    }

    /// Checks the [debug margins](crate::corruption#margins) of every live allocation in the
    /// memory types of `memory_type_bits` (custom pools' included): `Ok` with what was looked
    /// at (and which memory types were skipped for not being host-visible), or an error
    /// naming every damaged margin's memory type, block, offset and allocation.
    /// [`MarginsOff`](CorruptionError::MarginsOff) when the allocator has no margins.
    pub fn check_corruption(
        &self,
        memory_type_bits: u32,
    ) -> Result<CorruptionReport, CorruptionError> {
        if self.create_info.debug.margin == 0 {
            return Err(CorruptionError::MarginsOff);
        }
        self.observer.check_corruption(memory_type_bits)
    }

    /// Lists every allocation still alive (custom pools' included) and logs each one through
    /// the `log` facade at the `warn` level (target [`LOG_TARGET`](crate::stats::LOG_TARGET)).
    /// The allocations of the default block vectors are reported the same way when the allocator is
    /// dropped while they are alive; a custom pool reports its own when it is dropped. In
    /// debug builds that drop also prints the report when no logger takes it, and panics
    /// (see [`LeakCheck`](crate::LeakCheck)).
    pub fn report_leaks(&self) -> Vec<LeakedAllocation> {
        self.observer.report_leaks()
    }

    fn usable_bits(&self, memory_type_bits: u32) -> Result<u32, AllocationError> {
        let count = self.types.len() as u32;
        if memory_type_bits == 0 {
            return Err(AllocationError::NoMemoryTypeBits);
        }
        if memory_type_bits & !mask_of_count(count as usize) != 0 {
            return Err(AllocationError::MemoryTypeBitsOutOfRange {
                bits: memory_type_bits,
                count,
            });
        }
        Ok(memory_type_bits)
    }
}

impl<S: Suballocator + Send + 'static> MemoryAllocator for GenericMemoryAllocator<S> {
    fn device(&self) -> &Arc<MemoryDevice> {
        &self.device
    }

    fn statistics(&self) -> crate::stats::AllocatorStatistics {
        GenericMemoryAllocator::statistics(self)
    }

    fn snapshot(&self) -> crate::stats::MemorySnapshot {
        GenericMemoryAllocator::snapshot(self)
    }

    fn find_memory_type_index(
        &self,
        memory_type_bits: u32,
        filter: MemoryTypeFilter,
    ) -> Option<u32> {
        find_memory_type_index(
            self.device.memory_properties(),
            self.device.features(),
            memory_type_bits,
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
        check_create_info(create_info)?;
        self.check_explicit_type(memory_type_index)?;
        let request = Request {
            layout: layout.align_to(create_info.min_alignment)?,
            preference: create_info.allocate_preference,
            prefers_dedicated: false,
            requires_dedicated: false,
        };
        self.allocate_in_type(
            memory_type_index,
            &request,
            allocation_type,
            create_info,
            None,
        )
    }

    // Inline: the hot path then runs in the caller, with no call of its own (the full
    // sequence stays out of line).
    #[inline]
    fn allocate(
        &self,
        requirements: AllocationRequirements,
        allocation_type: AllocationType,
        create_info: &AllocationCreateInfo,
        dedicated: Option<DedicatedAllocation>,
    ) -> Result<MemoryAlloc, AllocationError> {
        if let Some(alloc) = self.allocate_hot(&requirements, allocation_type, create_info) {
            return Ok(alloc);
        }
        self.allocate_full(requirements, allocation_type, create_info, dedicated)
    }

    fn allocate_dedicated(
        &self,
        memory_type_index: u32,
        size: DeviceSize,
        dedicated: Option<DedicatedAllocation>,
        create_info: &AllocationCreateInfo,
    ) -> Result<MemoryAlloc, AllocationError> {
        check_create_info(create_info)?;
        self.check_explicit_type(memory_type_index)?;
        let facts = self.types[memory_type_index as usize];
        execute::check_explicit_dedicated(&self.device, memory_type_index, size, facts.heap_size)?;
        self.dedicated(
            memory_type_index,
            size,
            AllocationType::Unknown,
            dedicated,
            create_info,
            false,
        )
    }
}

/// The memory of one memory type's default block vector: blocks at the allocator's block
/// priority, dedicated allocations at the request's.
struct TypeSource<'a, S> {
    allocator: &'a GenericMemoryAllocator<S>,
    memory_type_index: u32,
}

impl<S: Suballocator + Send + 'static> MemorySource for TypeSource<'_, S> {
    fn block_memory(
        &self,
        size: DeviceSize,
        create_info: &AllocationCreateInfo,
    ) -> Result<MemoryObject, AllocationError> {
        let a = self.allocator;
        a.allocate_memory(
            self.memory_type_index,
            size,
            None,
            a.create_info.block_priority,
            create_info,
            true,
        )
    }

    fn dedicated(
        &self,
        size: DeviceSize,
        allocation_type: AllocationType,
        dedicated: Option<DedicatedAllocation>,
        create_info: &AllocationCreateInfo,
    ) -> Result<MemoryAlloc, AllocationError> {
        self.allocator.dedicated(
            self.memory_type_index,
            size,
            allocation_type,
            dedicated,
            create_info,
            true,
        )
    }

    fn meta(&self, create_info: &AllocationCreateInfo) -> Option<Arc<AllocationMeta>> {
        self.allocator.meta(create_info)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::allocator::config::DebugOptions;

    #[test]
    fn the_allocation_log_records_nothing_while_no_one_listens() {
        // No logger in the unit tests: trace level is off for every target.
        assert!(!log::log_enabled!(log::Level::Trace));
        let log_only = DebugOptions {
            log_allocations: true,
            ..Default::default()
        };
        assert!(meta_of(&AllocationCreateInfo::default(), &log_only).is_none());
        // Other aids still make a record, without the log.
        let named = AllocationCreateInfo {
            name: Some("n".into()),
            ..Default::default()
        };
        let meta = meta_of(&named, &log_only).unwrap();
        assert!(!meta.log);
        let fill = DebugOptions {
            fill_patterns: true,
            ..log_only
        };
        assert!(
            meta_of(&AllocationCreateInfo::default(), &fill)
                .unwrap()
                .fill
        );
    }

    #[test]
    fn an_allocation_is_three_words() {
        // Users keep many of them; each allocation moves one. Three words (owner, offset, and
        // the size and handle in 32 bits each).
        assert_eq!(std::mem::size_of::<MemoryAlloc>(), 24);
        // An `Option` costs nothing more (the owner word is never null), nor does a `Result`
        // beyond the error.
        assert_eq!(
            std::mem::size_of::<Option<MemoryAlloc>>(),
            std::mem::size_of::<MemoryAlloc>()
        );
        assert_eq!(
            std::mem::size_of::<Result<MemoryAlloc, AllocationError>>(),
            std::mem::size_of::<AllocationError>().max(std::mem::size_of::<MemoryAlloc>())
        );
    }
}
