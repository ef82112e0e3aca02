//! Carrying out a plan: the steps of the [placement](super::placement) ladder run against one
//! block vector, the memory objects it may make, and a dedicated allocation.
//!
//! The default pools of a [`GenericMemoryAllocator`](super::GenericMemoryAllocator) and custom
//! [`MemoryPool`](super::MemoryPool)s differ only in their plan and in how they make memory;
//! both run their plans here.

use super::block_vec::{block_ref, Arena, BlockVec, Fit, NewBlockError, Placed};
use super::placement::{self, ArenaLayout, Failure, Ladder, Plan, Step, TypeFacts};
use super::AllocationError;
use crate::allocation::{AllocationMeta, MemoryAlloc, Owner};
use crate::device_memory::DeviceMemory;
use crate::layout::{DeviceAlignment, DeviceSize};
use crate::suballocator::{AllocationType, Suballocator};
use std::sync::Arc;

/// The block vector of one memory type or pool.
pub(crate) type TypeBlocks<S> = BlockVec<S, DeviceMemory>;

/// Where a plan is carried out.
pub(crate) struct Target<'a, S> {
    /// The memory type's (or pool's) facts.
    pub facts: TypeFacts,
    pub blocks: &'a Arc<TypeBlocks<S>>,
    /// Whether new blocks start smaller (see
    /// [block sizes](super::placement#block-sizes)).
    pub grow: bool,
    pub granularity: DeviceAlignment,
    /// Makes the memory of a new block of the given size.
    pub block_memory: &'a dyn Fn(DeviceSize) -> Result<DeviceMemory, AllocationError>,
    /// Makes the dedicated allocation of the request.
    pub dedicated: &'a dyn Fn() -> Result<MemoryAlloc, AllocationError>,
}

/// Wraps a suballocation made in `arena` into what the user holds.
#[inline]
pub(crate) fn wrap_block<S: Suballocator + Send + 'static>(
    arena: &Arc<Arena<S, DeviceMemory>>,
    placed: Placed,
    meta: &Option<Arc<AllocationMeta>>,
) -> MemoryAlloc {
    let s = placed.suballocation;
    if meta.is_some() {
        arena.set_meta(s.offset, meta.clone());
    }
    MemoryAlloc::new(
        Owner::block(block_ref(arena, placed.first), s.handle),
        s.offset,
        s.size,
        s.allocation_type,
        meta.clone(),
    )
}

/// The request of a plan's suballocation in `facts`' blocks.
#[inline]
pub(crate) fn fit_of(
    plan: &Plan,
    facts: &TypeFacts,
    allocation_type: AllocationType,
    granularity: DeviceAlignment,
) -> Fit {
    let layout = match *plan {
        Plan::Suballocate { layout, .. } | Plan::Dedicated { layout, .. } => layout,
    };
    Fit {
        layout,
        allocation_type,
        granularity,
        best_fit: facts.best_fit(layout.size()),
    }
}

/// Suballocates `fit` in an existing block of `blocks`, or `None`: the fast path.
#[inline]
pub(crate) fn try_existing<S: Suballocator + Send + 'static>(
    blocks: &TypeBlocks<S>,
    fit: &Fit,
    meta: &Option<Arc<AllocationMeta>>,
) -> Option<MemoryAlloc> {
    let wrap = |arena: &Arc<Arena<S, DeviceMemory>>, placed| wrap_block(arena, placed, meta);
    blocks.allocate_existing(fit, &wrap).ok().flatten()
}

/// Runs `plan`'s ladder in `target`: each step in turn, the next chosen by how the last one
/// failed. Returns the allocation, or the most telling error the ladder met.
pub(crate) fn run<S: Suballocator + Send + 'static>(
    target: &Target<'_, S>,
    plan: Plan,
    allocation_type: AllocationType,
    meta: &Option<Arc<AllocationMeta>>,
) -> Result<MemoryAlloc, AllocationError> {
    let facts = target.facts;
    let grow = target.grow && matches!(plan, Plan::Suballocate { grow: true, .. });
    let fit = fit_of(&plan, &facts, allocation_type, target.granularity);
    let vec = target.blocks;
    let wrap = |arena: &Arc<Arena<S, DeviceMemory>>, placed| wrap_block(arena, placed, meta);
    // The smallest region that holds the request: new blocks and their arenas are at least
    // this large (a pool slot, say); `None` when no block could ever hold it.
    let min_region = S::region_size_for(fit.layout, allocation_type, target.granularity);
    let mut ladder = Ladder::new(plan);
    let mut failure = None;
    let mut error: Option<AllocationError> = None;
    while let Some(step) = ladder.next(failure) {
        let result = match step {
            Step::ExistingBlocks => match vec.allocate_existing(&fit, &wrap) {
                Ok(Some(a)) => Ok(a),
                Ok(None) => Err(AllocationError::OutOfPoolMemory),
                Err(_) => Err(AllocationError::SuballocatorBlockSizeExceeded),
            },
            Step::NewBlock { attempt } => match min_region {
                None => Err(AllocationError::SuballocatorBlockSizeExceeded),
                Some(min_region) => vec
                    .allocate_in_new_block(
                        &fit,
                        |held| {
                            placement::new_block_size(
                                facts.block_size,
                                grow,
                                held,
                                attempt,
                                min_region,
                            )
                        },
                        |block, largest| {
                            ArenaLayout::choose(
                                block,
                                min_region,
                                largest,
                                target.granularity,
                                vec.home_slots(),
                            )
                        },
                        target.block_memory,
                        &wrap,
                    )
                    .map_err(|e| match e {
                        NewBlockError::Memory(e) => e,
                        // No smaller block left: the previous attempt's error stands.
                        NewBlockError::NoSize => {
                            error.clone().unwrap_or(AllocationError::OutOfDeviceMemory)
                        }
                        NewBlockError::Full { max_blocks } => {
                            AllocationError::PoolFull { max_blocks }
                        }
                        NewBlockError::DoesNotFit => AllocationError::SuballocatorBlockSizeExceeded,
                    }),
            },
            Step::Dedicated => (target.dedicated)(),
        };
        match result {
            Ok(a) => return Ok(a),
            Err(e) => {
                let f = e.failure();
                failure = Some(f);
                // "No room in existing blocks" is the least telling error: report any other
                // one the ladder met.
                if error.is_none() || f != Failure::NoRoom {
                    error = Some(e);
                }
            }
        }
    }
    Err(error.unwrap_or(AllocationError::OutOfPoolMemory))
}
