//! Carrying out a plan: the steps of the [placement](super::placement) ladder run against one
//! block vector, the memory objects it may make, and a dedicated allocation.
//!
//! The default pools of a [`GenericMemoryAllocator`](super::GenericMemoryAllocator) and custom
//! [`MemoryPool`](super::MemoryPool)s differ only in their plan and in how they make memory;
//! both run their plans here.

use super::block_vec::{block_ref, Arena, BlockVec, Fit, NewBlockError, Placed};
use super::dedicated::DedicatedRegistry;
use super::placement::{self, ArenaLayout, Failure, Ladder, Plan, Request, Step, TypeFacts};
use super::AllocationError;
use crate::allocation::{AllocationMeta, MemoryAlloc, Owner};
use crate::corruption::{self, Guard};
use crate::device::Device;
use crate::device_memory::DeviceMemory;
use crate::layout::{DeviceAlignment, DeviceLayout, DeviceSize};
use crate::suballocator::{AllocationStrategy, AllocationType, Suballocator};
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
    /// How suballocations choose among the free ranges that fit.
    pub strategy: AllocationStrategy,
    /// Makes the memory of a new block of the given size.
    pub block_memory: &'a dyn Fn(DeviceSize) -> Result<DeviceMemory, AllocationError>,
    /// Makes the dedicated allocation of the request.
    pub dedicated: &'a dyn Fn() -> Result<MemoryAlloc, AllocationError>,
}

/// What a new allocation carries: its metadata record, and with debug margins where the
/// allocation lies in its suballocation.
#[derive(Clone, Copy)]
pub(crate) struct Made<'a> {
    pub meta: &'a Option<Arc<AllocationMeta>>,
    /// With margins: the front margin and the size asked for.
    pub guard: Option<(DeviceSize, DeviceSize)>,
}

/// Wraps a suballocation made in `arena` into what the user holds (inside its margins, when
/// it has some), and applies the debug aids.
#[inline]
pub(crate) fn wrap_block<S: Suballocator + Send + 'static>(
    arena: &Arc<Arena<S, DeviceMemory>>,
    placed: Placed,
    made: Made<'_>,
) -> MemoryAlloc {
    let s = placed.suballocation;
    let (offset, size, meta) = match made.guard {
        None => (s.offset, s.size, made.meta.clone()),
        Some((front, size)) => {
            let base = made.meta.as_deref().cloned().unwrap_or_default();
            let guard = Some(Guard {
                front,
                size,
                held: s.size,
            });
            (
                s.offset + front,
                size,
                AllocationMeta { guard, ..base }.shared(),
            )
        }
    };
    let armed = meta
        .as_deref()
        .is_some_and(|m| m.guard.is_some() || m.fill || m.log);
    let alloc = MemoryAlloc::new(
        Owner::block(block_ref(arena, placed.first), s.handle),
        offset,
        size,
        s.allocation_type,
        meta.clone(),
    );
    if armed {
        alloc.arm_debug();
    }
    // Published only now that its margins hold their pattern: a corruption check on another
    // thread reads the margins of every published record, and would find an unfilled one
    // damaged.
    if meta.is_some() {
        arena.set_meta(offset, meta);
    }
    alloc
}

/// Wraps a dedicated allocation's `memory` into what the user holds, registered in
/// `registry` (for statistics and the leak report), and applies the debug aids.
pub(crate) fn wrap_dedicated(
    registry: &Arc<DedicatedRegistry>,
    memory: DeviceMemory,
    allocation_type: AllocationType,
    meta: Option<Arc<AllocationMeta>>,
) -> MemoryAlloc {
    let size = memory.size();
    let registration = registry.register(&memory, allocation_type, meta.clone());
    let alloc = MemoryAlloc::new(
        Owner::dedicated(memory, registration),
        0,
        size,
        allocation_type,
        meta,
    );
    alloc.arm_debug();
    alloc
}

/// Checks a dedicated allocation of `size` bytes asked for in memory type
/// `memory_type_index` by the caller (not chosen by a plan): a valid size that fits the
/// type's heap of `heap_size` bytes.
pub(crate) fn check_explicit_dedicated(
    device: &Device,
    memory_type_index: u32,
    size: DeviceSize,
    heap_size: DeviceSize,
) -> Result<(), AllocationError> {
    let layout = DeviceLayout::new(size, DeviceAlignment::MIN)?;
    if layout.size() > heap_size {
        let heap = device
            .memory_properties()
            .memory_type(memory_type_index)
            .map_or(0, |t| t.heap_index);
        return Err(AllocationError::SizeExceedsHeap {
            size,
            heap,
            heap_size,
        });
    }
    Ok(())
}

/// The request of a plan's suballocation in `facts`' blocks.
#[inline]
pub(crate) fn fit_of(
    plan: &Plan,
    facts: &TypeFacts,
    allocation_type: AllocationType,
    granularity: DeviceAlignment,
    strategy: AllocationStrategy,
) -> Fit {
    let layout = match *plan {
        Plan::Suballocate { layout, .. } | Plan::Dedicated { layout, .. } => layout,
    };
    Fit {
        layout,
        allocation_type,
        granularity,
        best_fit: facts.best_fit(layout.size()),
        strategy,
    }
}

/// The request as blocks see it with debug margins of `margin` bytes (see
/// [`crate::corruption`]), and where the allocation lies in that: its front margin and its
/// own size. Without margins (0), the request itself.
#[inline]
pub(crate) fn guarded(
    request: &Request,
    margin: DeviceSize,
) -> (Request, Option<(DeviceSize, DeviceSize)>) {
    if margin == 0 {
        return (*request, None);
    }
    match corruption::guarded_layout(request.layout, margin) {
        Some((layout, front)) => (
            Request { layout, ..*request },
            Some((front, request.layout.size())),
        ),
        None => (*request, None),
    }
}

/// Suballocates `fit` in an existing block of `blocks`, or `None`: the fast path.
#[inline]
pub(crate) fn try_existing<S: Suballocator + Send + 'static>(
    blocks: &TypeBlocks<S>,
    fit: &Fit,
    made: Made<'_>,
) -> Option<MemoryAlloc> {
    let wrap = |arena: &Arc<Arena<S, DeviceMemory>>, placed| wrap_block(arena, placed, made);
    blocks.allocate_existing(fit, &wrap).ok().flatten()
}

/// Runs `plan`'s ladder in `target`: each step in turn, the next chosen by how the last one
/// failed. Returns the allocation, or the most telling error the ladder met.
pub(crate) fn run<S: Suballocator + Send + 'static>(
    target: &Target<'_, S>,
    plan: Plan,
    allocation_type: AllocationType,
    made: Made<'_>,
) -> Result<MemoryAlloc, AllocationError> {
    let facts = target.facts;
    let grow = target.grow && matches!(plan, Plan::Suballocate { grow: true, .. });
    let fit = fit_of(
        &plan,
        &facts,
        allocation_type,
        target.granularity,
        target.strategy,
    );
    let vec = target.blocks;
    let wrap = |arena: &Arc<Arena<S, DeviceMemory>>, placed| wrap_block(arena, placed, made);
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
