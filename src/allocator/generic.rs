//! [`GenericMemoryAllocator`]: one pool of blocks per memory type, suballocated by `S`.

use super::memory_type::{
    find_memory_type_index, is_suballocatable, is_type_allowed, mask_of_count,
};
use super::pool::{Block, NewBlock, Pool};
use super::{
    AllocationCreateInfo, AllocationError, MemoryAllocatePreference, MemoryAllocator,
    MemoryRequirements, MemoryTypeFilter,
};
use crate::allocation::{MemoryAlloc, Owner};
use crate::device::Device;
use crate::device_memory::{DedicatedAllocation, DeviceMemory, MemoryAllocateInfo};
use crate::layout::{DeviceAlignment, DeviceLayout, DeviceSize};
use crate::suballocator::{AllocationType, FreeListAllocator, Suballocator};
use ash::vk;
use std::sync::Arc;

pub(super) mod observe;

use super::config::{arenas_per_block, block_size_for_heap, validate_block_sizes};
pub use super::config::{
    BlockSizeThresholds, GenericMemoryAllocatorCreateInfo, MAX_AUTO_BLOCK_ARENAS, MAX_BLOCK_ARENAS,
};
use super::type_cache::TypeCache;

/// A memory allocator with one pool of `VkDeviceMemory` blocks per memory type, each block
/// carved by a suballocator `S`. See the [module docs](super) for its policy.
pub struct GenericMemoryAllocator<S> {
    device: Arc<Device>,
    pools: Vec<Arc<Pool<S>>>,
    /// Block size per heap.
    block_sizes: Vec<DeviceSize>,
    create_info: GenericMemoryAllocatorCreateInfo,
    /// Above this many live memory objects, small allocations are not made dedicated.
    dedicated_soft_limit: u32,
    /// Dedicated-allocation register and leak report on drop.
    observer: observe::Observer,
    /// Per memory type: the largest request that is suballocated without further policy
    /// checks (half the block size), or 0 for types that are never suballocated.
    fast_path_limit: Vec<DeviceSize>,
    /// The memory type chosen for the last `memory_type_bits` of each standard usage.
    type_cache: TypeCache,
}

/// The allocator most applications want: [`FreeListAllocator`] blocks.
pub type StandardMemoryAllocator = GenericMemoryAllocator<FreeListAllocator>;

impl StandardMemoryAllocator {
    /// An allocator with the default configuration.
    pub fn new_default(device: Arc<Device>) -> Self {
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
            .field("block_sizes", &self.block_sizes)
            .field("create_info", &self.create_info)
            .finish_non_exhaustive()
    }
}

impl<S: Suballocator + Send + 'static> GenericMemoryAllocator<S> {
    /// Creates an allocator; no memory is allocated until it is needed.
    pub fn new(
        device: Arc<Device>,
        create_info: GenericMemoryAllocatorCreateInfo,
    ) -> Result<Self, AllocationError> {
        validate_block_sizes(&create_info.block_sizes)
            .map_err(AllocationError::InvalidConfiguration)?;
        let arenas_per_block = arenas_per_block(create_info.block_arenas)
            .map_err(AllocationError::InvalidConfiguration)?;
        let props = device.memory_properties();
        let type_count = props.memory_types.len();
        if !create_info.export_handle_types.is_empty()
            && create_info.export_handle_types.len() != type_count
        {
            return Err(AllocationError::InvalidConfiguration(format!(
                "export_handle_types has {} entries, the device has {type_count} memory types",
                create_info.export_handle_types.len()
            )));
        }
        if !(0.0..=1.0).contains(&create_info.block_priority) {
            return Err(AllocationError::InvalidConfiguration(format!(
                "block_priority {} is outside 0.0 ..= 1.0",
                create_info.block_priority
            )));
        }
        let block_sizes: Vec<DeviceSize> = props
            .memory_heaps
            .iter()
            .map(|h| block_size_for_heap(&create_info.block_sizes, h.size))
            .collect();
        let pools: Vec<_> = (0..type_count as u32)
            .map(|i| Pool::new(i, arenas_per_block))
            .collect();
        let dedicated_soft_limit = device.max_memory_allocation_count() / 4 * 3;
        let observer = observe::Observer::new(&device, &pools);
        let fast_path_limit = props
            .memory_types
            .iter()
            .map(|t| {
                if is_suballocatable(t.property_flags) {
                    block_sizes[t.heap_index as usize] / 2
                } else {
                    0
                }
            })
            .collect();
        Ok(Self {
            device,
            pools,
            block_sizes,
            create_info,
            dedicated_soft_limit,
            observer,
            fast_path_limit,
            type_cache: TypeCache::default(),
        })
    }

    /// The configuration.
    pub fn create_info(&self) -> &GenericMemoryAllocatorCreateInfo {
        &self.create_info
    }

    /// The preferred block size of memory type `memory_type_index`'s heap.
    pub fn block_size(&self, memory_type_index: u32) -> Option<DeviceSize> {
        let t = self
            .device
            .memory_properties()
            .memory_types
            .get(memory_type_index as usize)?;
        Some(self.block_sizes[t.heap_index as usize])
    }

    /// The number of blocks currently held for memory type `memory_type_index`.
    pub fn block_count(&self, memory_type_index: u32) -> usize {
        self.pools
            .get(memory_type_index as usize)
            .map_or(0, |p| p.block_count())
    }

    /// Runs `f` for each block, with its memory type index.
    pub(crate) fn for_each_block(&self, mut f: impl FnMut(u32, &Block<S>)) {
        for pool in &self.pools {
            pool.for_each_block(|b| f(pool.memory_type_index, b));
        }
    }

    fn check_type(&self, index: u32) -> Result<vk::MemoryType, AllocationError> {
        let types = &self.device.memory_properties().memory_types;
        types
            .get(index as usize)
            .copied()
            .ok_or(AllocationError::MemoryTypeIndexOutOfRange {
                index,
                count: types.len() as u32,
            })
    }

    /// A memory type named by the caller: it must exist and its special flags must be
    /// usable on this device.
    fn check_explicit_type(&self, index: u32) -> Result<vk::MemoryType, AllocationError> {
        let t = self.check_type(index)?;
        let filter = MemoryTypeFilter {
            required_flags: t.property_flags,
            ..Default::default()
        };
        if !is_type_allowed(t.property_flags, &filter, self.device.features()) {
            return Err(AllocationError::MemoryTypeNotUsable {
                index,
                reason: "it needs a device feature that is not enabled",
            });
        }
        Ok(t)
    }

    fn check_heap(&self, t: vk::MemoryType, size: DeviceSize) -> Result<(), AllocationError> {
        let heap_size = self.device.memory_properties().memory_heaps[t.heap_index as usize].size;
        if size > heap_size {
            return Err(AllocationError::SizeExceedsHeap {
                size,
                heap: t.heap_index,
                heap_size,
            });
        }
        Ok(())
    }

    fn export_types(&self, memory_type_index: u32) -> vk::ExternalMemoryHandleTypeFlags {
        self.create_info
            .export_handle_types
            .get(memory_type_index as usize)
            .copied()
            .unwrap_or_default()
    }

    fn suballocate(
        &self,
        memory_type_index: u32,
        t: vk::MemoryType,
        layout: DeviceLayout,
        allocation_type: AllocationType,
        create_info: &AllocationCreateInfo,
        never_allocate: bool,
    ) -> Result<MemoryAlloc, AllocationError> {
        if !is_suballocatable(t.property_flags) {
            return Err(AllocationError::MemoryTypeNotUsable {
                index: memory_type_index,
                reason:
                    "lazily allocated and RDMA memory is only given out as dedicated allocations",
            });
        }
        let block_size = self.block_sizes[t.heap_index as usize];
        if layout.size() > block_size {
            return Err(AllocationError::BlockSizeExceeded {
                size: layout.size(),
                block_size,
            });
        }
        let allocate_memory = |size: DeviceSize| {
            self.allocate_memory(
                memory_type_index,
                size,
                None,
                Some(self.create_info.block_priority),
                create_info,
            )
        };
        let new_block = NewBlock {
            preferred_size: block_size,
            grow: self.create_info.grow_blocks,
            allocate_memory: &allocate_memory,
        };
        let granularity: DeviceAlignment = self.device.buffer_image_granularity();
        self.pools[memory_type_index as usize].allocate(
            layout,
            allocation_type,
            granularity,
            &create_info.name,
            never_allocate,
            &new_block,
        )
    }

    /// One `vkAllocateMemory`, honouring the budget option.
    fn allocate_memory(
        &self,
        memory_type_index: u32,
        size: DeviceSize,
        dedicated: Option<DedicatedAllocation>,
        priority: Option<f32>,
        create_info: &AllocationCreateInfo,
    ) -> Result<DeviceMemory, AllocationError> {
        if create_info.within_budget {
            crate::budget::check_within_budget(&self.device, memory_type_index, size)?;
        }
        DeviceMemory::allocate(
            self.device.clone(),
            MemoryAllocateInfo {
                size,
                memory_type_index,
                dedicated,
                export_handle_types: self.export_types(memory_type_index),
                device_address: self.create_info.device_address,
                priority,
            },
        )
    }

    fn dedicated(
        &self,
        memory_type_index: u32,
        size: DeviceSize,
        allocation_type: AllocationType,
        dedicated: Option<DedicatedAllocation>,
        create_info: &AllocationCreateInfo,
    ) -> Result<MemoryAlloc, AllocationError> {
        let priority = create_info
            .priority
            .or(Some(self.create_info.block_priority));
        let memory =
            self.allocate_memory(memory_type_index, size, dedicated, priority, create_info)?;
        let ticket =
            self.observer
                .register_dedicated(&memory, allocation_type, create_info.name.clone());
        Ok(MemoryAlloc::new(
            Owner::dedicated(memory, ticket),
            0,
            size,
            allocation_type,
            create_info.name.clone(),
        ))
    }

    /// Allocates from one memory type, following the preference and the dedicated policy.
    #[allow(clippy::too_many_arguments)]
    fn allocate_in_type(
        &self,
        memory_type_index: u32,
        layout: DeviceLayout,
        allocation_type: AllocationType,
        create_info: &AllocationCreateInfo,
        dedicated: Option<DedicatedAllocation>,
        prefers_dedicated: bool,
        requires_dedicated: bool,
    ) -> Result<MemoryAlloc, AllocationError> {
        let t = self.check_type(memory_type_index)?;
        let size = layout.size();
        self.check_heap(t, size)?;
        let block_size = self.block_sizes[t.heap_index as usize];
        // The resource is passed to `VkMemoryDedicatedAllocateInfo` when the driver requires
        // it, or when the configuration allows it for the allocator's own choices.
        let hinted = if requires_dedicated || self.create_info.dedicated_allocation {
            dedicated
        } else {
            None
        };
        let make_dedicated = || {
            self.dedicated(
                memory_type_index,
                size,
                allocation_type,
                hinted,
                create_info,
            )
        };
        // `never_allocate`: existing blocks only.
        let suballocate = |never_allocate| {
            self.suballocate(
                memory_type_index,
                t,
                layout,
                allocation_type,
                create_info,
                never_allocate,
            )
        };
        match create_info.allocate_preference {
            MemoryAllocatePreference::NeverAllocate => {
                if requires_dedicated {
                    return Err(AllocationError::DedicatedAllocationRequired);
                }
                suballocate(true)
            }
            MemoryAllocatePreference::AlwaysAllocate => make_dedicated(),
            MemoryAllocatePreference::Unknown => {
                if requires_dedicated || !is_suballocatable(t.property_flags) {
                    return make_dedicated();
                }
                let crowded = self.device.live_memory_objects() > self.dedicated_soft_limit
                    && size <= block_size;
                let prefer = (prefers_dedicated || size > block_size / 2) && !crowded;
                if prefer {
                    make_dedicated().or_else(|err| {
                        if size <= block_size && err.is_recoverable() {
                            suballocate(true).map_err(|_| err)
                        } else {
                            Err(err)
                        }
                    })
                } else {
                    suballocate(false).or_else(|err| {
                        if err.is_recoverable() {
                            // A smaller dedicated object may still fit where a block did not.
                            make_dedicated().map_err(|_| err)
                        } else {
                            Err(err)
                        }
                    })
                }
            }
        }
    }

    fn usable_bits(&self, memory_type_bits: u32) -> Result<u32, AllocationError> {
        let count = self.device.memory_properties().memory_types.len() as u32;
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
    fn device(&self) -> &Arc<Device> {
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
        let _ = self.check_explicit_type(memory_type_index)?;
        self.allocate_in_type(
            memory_type_index,
            layout,
            allocation_type,
            create_info,
            None,
            false,
            false,
        )
    }

    fn allocate(
        &self,
        requirements: MemoryRequirements,
        allocation_type: AllocationType,
        create_info: &AllocationCreateInfo,
        dedicated: Option<DedicatedAllocation>,
    ) -> Result<MemoryAlloc, AllocationError> {
        let mut bits = self.usable_bits(requirements.memory_type_bits)?;
        let filter: MemoryTypeFilter = create_info.usage.into();
        // The common case first: a small request that fits an existing block of the first
        // memory type the policy would choose. Anything else takes the full path below, which
        // makes the same choices.
        let first = self.type_cache.get_or(bits, create_info.usage, || {
            self.find_memory_type_index(bits, filter)
        });
        if let Some(index) = first {
            if create_info.allocate_preference == MemoryAllocatePreference::Unknown
                && !requirements.prefers_dedicated_allocation
                && !requirements.requires_dedicated_allocation
                && requirements.layout.size() <= self.fast_path_limit[index as usize]
            {
                if let Some(alloc) = self.pools[index as usize].allocate_existing(
                    requirements.layout,
                    allocation_type,
                    self.device.buffer_image_granularity(),
                    &create_info.name,
                ) {
                    return Ok(alloc);
                }
            }
        }
        let mut last_error = None;
        loop {
            let Some(index) = self.find_memory_type_index(bits, filter) else {
                return Err(last_error.unwrap_or(AllocationError::NoSuitableMemoryType {
                    bits: requirements.memory_type_bits,
                    required: filter.required_flags,
                }));
            };
            match self.allocate_in_type(
                index,
                requirements.layout,
                allocation_type,
                create_info,
                dedicated,
                requirements.prefers_dedicated_allocation,
                requirements.requires_dedicated_allocation,
            ) {
                Ok(a) => return Ok(a),
                Err(e) if e.is_recoverable() => {
                    bits &= !(1 << index);
                    last_error = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn allocate_dedicated(
        &self,
        memory_type_index: u32,
        size: DeviceSize,
        dedicated: Option<DedicatedAllocation>,
        create_info: &AllocationCreateInfo,
    ) -> Result<MemoryAlloc, AllocationError> {
        let layout = DeviceLayout::new(size, DeviceAlignment::MIN)?;
        let t = self.check_explicit_type(memory_type_index)?;
        self.check_heap(t, layout.size())?;
        self.dedicated(
            memory_type_index,
            size,
            AllocationType::Unknown,
            dedicated,
            create_info,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_allocation_fits_one_cache_line() {
        // Users keep many of them; each allocation moves one.
        assert!(std::mem::size_of::<MemoryAlloc>() <= 64);
    }
}
