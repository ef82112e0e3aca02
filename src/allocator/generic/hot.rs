//! The allocator's hot path: a plain request in an existing block of the memory type already
//! chosen for its class, with none of the steps that cannot matter to it.
//!
//! Most requests of a running application are small, plain (no name, user data, priority or
//! dedicated preference, no debug aid) and of a memory-type class the allocator has chosen a
//! type for before. For such a request the full sequence would check the create info, resolve
//! the usage, look the type up, weigh the small-heap ration, make a metadata record, add
//! margins, prepare the plan and search the type's existing blocks; only the look-up, the plan
//! and the search can change its outcome. [`allocate_hot`](GenericMemoryAllocator::allocate_hot)
//! runs those three and nothing else, and hands any request it does not serve to the full
//! sequence, which starts over: it serves exactly what the full sequence would have served
//! first, at the cost of one more search of the existing blocks for the requests that need a
//! new block (rare, and the search skips full arenas on their hints).
//!
//! Its plan is the plan's rule for a plain request in a few comparisons
//! ([`plain_suballocation`](crate::allocator::placement::plain_suballocation)): suballocate
//! what is not large and fits a block. A large request, which the plan suballocates only
//! when the device is crowded with memory objects (reading two counters), takes the full
//! path.

use super::GenericMemoryAllocator;
use crate::allocation::MemoryAlloc;
use crate::allocator::block_vec::Fit;
use crate::allocator::config::DebugOptions;
use crate::allocator::execute;
use crate::allocator::intent::{self, HeapFacts};
use crate::allocator::placement;
use crate::allocator::{AllocationCreateInfo, AllocationRequirements, MemoryAllocatePreference};
use crate::device::{mask_of_count, MemoryProperties};
use crate::suballocator::{AllocationStrategy, AllocationType, Suballocator};

/// The allocator's settings that decide whether a request may take the
/// [hot path](GenericMemoryAllocator::allocate_hot), worked out when it is made.
#[derive(Clone, Copy, Debug)]
pub(super) struct HotFacts {
    /// No debug aid is on: no margins, no metadata record for a plain request.
    plain_debug: bool,
    /// The memory types on a small BAR heap (whose requests may be rationed), as a mask.
    small_heap_types: u32,
    /// The valid `memory_type_bits`: one bit per memory type.
    type_mask: u32,
}

impl HotFacts {
    /// The facts of an allocator on a device with `props` and `heap_facts`, with `debug`.
    pub(super) fn of(
        props: &MemoryProperties,
        heap_facts: &HeapFacts,
        debug: &DebugOptions,
    ) -> Self {
        let small_heap_types = props
            .memory_types
            .iter()
            .enumerate()
            .take(32)
            .filter(|(_, t)| heap_facts.is_small(t.heap_index))
            .fold(0, |mask, (i, _)| mask | 1 << i);
        Self {
            plain_debug: !debug.any(),
            small_heap_types,
            type_mask: mask_of_count(props.memory_types.len()),
        }
    }
}

impl<S: Suballocator + Send + 'static> GenericMemoryAllocator<S> {
    /// The hot path: a plain request (no name, user data, priority, dedicated preference or
    /// debug aid; the default placement and search) of a memory-type class already chosen
    /// once for these `memory_type_bits`, suballocated in an existing block of that type.
    /// `None` sends the request down the full path, which starts over: this is the first two
    /// steps of the full path (the type choice and the existing blocks of the first type)
    /// without the steps that cannot matter to such a request (rationing, a metadata record,
    /// margins), and serves exactly what those steps would, the best-fit search of larger
    /// requests included.
    #[inline]
    pub(super) fn allocate_hot(
        &self,
        requirements: &AllocationRequirements,
        allocation_type: AllocationType,
        create_info: &AllocationCreateInfo,
    ) -> Option<MemoryAlloc> {
        let bits = requirements.memory_type_bits;
        if !self.hot.plain_debug
            || bits == 0
            || bits & !self.hot.type_mask != 0
            || requirements.prefers_dedicated_allocation
            || requirements.requires_dedicated_allocation
            || create_info.name.is_some()
            || create_info.user_data.is_some()
            || create_info.priority.is_some()
            || create_info.allocate_preference != MemoryAllocatePreference::Auto
            || !matches!(
                create_info.strategy,
                AllocationStrategy::Default | AllocationStrategy::MinTime
            )
        {
            return None;
        }
        let class = intent::class_of(create_info.usage, create_info.resource_usage)?;
        let index = self.type_cache.get(bits, class)?;
        // A type on a small heap may be rationed away from this request: the full path
        // decides.
        if self.hot.small_heap_types & (1 << index) != 0 {
            return None;
        }
        let requested = requirements
            .layout
            .align_to(create_info.min_alignment)
            .ok()?;
        let facts = self.types.get(index as usize)?;
        // The plan of a plain request that is not large, without the plan: a large one (which
        // the plan suballocates only on a crowded device) takes the full path.
        let layout = placement::plain_suballocation(requested, facts)?;
        // The search the full path would make: best fit for the larger requests.
        let fit = Fit {
            layout,
            allocation_type,
            granularity: self.device.buffer_image_granularity(),
            best_fit: facts.best_fit(layout.size()),
            strategy: create_info.strategy,
        };
        self.block_vecs[index as usize]
            .allocate_existing(&fit, &execute::PlainWrap)
            .ok()
            .flatten()
    }
}
