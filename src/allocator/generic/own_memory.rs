//! Memory objects of their own: the allocator's dedicated allocations (its own choice or the
//! caller's) and imports, registered for statistics and the leak report. A dedicated
//! allocation the allocator chose to make, with its memory object made as a block's would be,
//! leaves that object to its memory type's block vector when it is dropped (see
//! [kept blocks for large requests](crate::allocator::placement#kept-blocks-for-large-requests)).

use super::GenericMemoryAllocator;
use crate::allocation::{AllocationMeta, FreedMemoryKeeper, MemoryAlloc};
use crate::allocator::execute;
use crate::allocator::request::check_create_info;
use crate::allocator::{AllocationCreateInfo, AllocationError, MemoryAllocatePreference};
use crate::device_memory::{DedicatedAllocation, MemoryObjectCreateInfo};
use crate::layout::DeviceSize;
use crate::suballocator::{AllocationType, Suballocator};
use std::sync::{Arc, Weak};

impl<S: Suballocator + Send + 'static> GenericMemoryAllocator<S> {
    /// A memory object of its own made from `info` (an import, a user chain) with the
    /// allocator's device-address, priority and budget settings, registered like the
    /// allocator's dedicated allocations.
    pub(in crate::allocator) fn dedicated_from(
        &self,
        info: MemoryObjectCreateInfo,
        create_info: &AllocationCreateInfo,
    ) -> Result<MemoryAlloc, AllocationError> {
        check_create_info(create_info)?;
        let info = MemoryObjectCreateInfo {
            device_address: self.create_info.device_address,
            priority: Some(
                create_info
                    .priority
                    .unwrap_or(self.create_info.block_priority),
            ),
            within_budget: create_info.within_budget,
            ..info
        };
        // Out of memory with empty blocks kept in the heap: they give their memory back and
        // the import is tried once more, as every other allocation is (a failed import leaves
        // its handle the application's, so it may be given again).
        self.outside_blocks(info.memory_type_index, info.size, || {
            let memory = self.make_memory(&info, false)?;
            // An import's bytes are its payload (the host's data, another device's), not a
            // new allocation's garbage: the debug fill pattern never lands on them.
            let meta = self.meta(create_info).and_then(|meta| {
                AllocationMeta {
                    fill: false,
                    ..AllocationMeta::clone(&meta)
                }
                .shared()
            });
            Ok(execute::wrap_dedicated(
                &self.dedicated,
                memory,
                AllocationType::Unknown,
                meta,
                None,
            ))
        })
    }

    /// A dedicated allocation of `size` bytes of `memory_type_index`. `chosen`: the plan's
    /// dedicated step made it, not [`allocate_dedicated`](crate::MemoryAllocator::allocate_dedicated).
    /// When the allocator chose it by itself and its memory object is made exactly as a
    /// block's would be (a type that is carved into blocks, no resource named, the blocks'
    /// priority, no [`AlwaysAllocate`](MemoryAllocatePreference::AlwaysAllocate) from the
    /// caller), the type's block vector may keep the object as an empty block once the
    /// allocation is dropped (see
    /// [kept blocks for large requests](crate::allocator::placement#kept-blocks-for-large-requests)).
    pub(super) fn dedicated(
        &self,
        memory_type_index: u32,
        size: DeviceSize,
        allocation_type: AllocationType,
        dedicated: Option<DedicatedAllocation>,
        create_info: &AllocationCreateInfo,
        chosen: bool,
    ) -> Result<MemoryAlloc, AllocationError> {
        let priority = create_info
            .priority
            .unwrap_or(self.create_info.block_priority);
        let keeper = if chosen
            && dedicated.is_none()
            && self
                .types
                .get(memory_type_index as usize)
                .is_some_and(|t| t.suballocatable)
            && priority == self.create_info.block_priority
            && create_info.allocate_preference == MemoryAllocatePreference::Auto
        {
            self.block_vecs
                .get(memory_type_index as usize)
                .map(|vec| Arc::downgrade(vec) as Weak<dyn FreedMemoryKeeper>)
        } else {
            None
        };
        self.outside_blocks(memory_type_index, size, || {
            let memory = self.allocate_memory(
                memory_type_index,
                size,
                dedicated,
                priority,
                create_info,
                false,
            )?;
            Ok(execute::wrap_dedicated(
                &self.dedicated,
                memory,
                allocation_type,
                self.meta(create_info),
                keeper,
            ))
        })
    }
}
