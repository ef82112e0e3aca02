//! The one allocate sequence: a request served from one block vector.
//!
//! As in VMA, a custom [`MemoryPool`](super::MemoryPool) is a block vector with its
//! configuration, and the default block vectors of a
//! [`GenericMemoryAllocator`](super::GenericMemoryAllocator) (one per memory type) are the
//! same thing: both describe theirs as a [`Vector`] and allocate through it, in the same
//! steps:
//!
//! 1. [`prepare`](Vector::prepare): the request with its debug margins, and its
//!    [placement] plan (the allocator's policy, or a pool's rule);
//! 2. [`existing`](Vector::existing): the fast path, a suballocation in an existing block;
//! 3. [`rest`](Vector::rest): the rest of the plan's ladder (new blocks, a dedicated memory
//!    object), each step chosen by how the last one failed.
//!
//! [`allocate`](Vector::allocate) runs the three. The generic allocator runs the first two
//! for its first-choice memory type before anything else (most requests end there), and if
//! they do not serve it, continues that type with step 3 rather than starting over. What a
//! vector's owner provides, new blocks' memory and dedicated allocations, comes through
//! [`MemorySource`].

use super::block_memory::{block_ref, DeviceBlockVec};
use super::block_vec::{Arena, Fit, NewBlockError, Placed, Wrap};
use super::dedicated::DedicatedRegistry;
use super::placement::{
    self, ArenaLayout, Failure, Ladder, ObjectCount, Plan, Request, Step, TypeFacts,
};
use super::request::AllocationCreateInfo;
use super::AllocationError;
use super::MemoryAllocatePreference;
use crate::allocation::{AllocationMeta, Dedicated, FreedMemoryKeeper, MemoryAlloc};
use crate::corruption::{self, Guard};
use crate::device::MemoryDevice;
use crate::device_memory::DedicatedAllocation;
use crate::device_memory::MemoryObject;
use crate::layout::{DeviceAlignment, DeviceLayout, DeviceSize};
use crate::suballocator::{AllocationStrategy, AllocationType, Suballocator};
use std::sync::{Arc, Weak};

/// What a block vector's owner provides to the allocate sequence: the memory objects it may
/// make, with its own settings (priority, export types, user chains, budget).
pub(crate) trait MemorySource {
    /// The memory of a new block of `size` bytes.
    fn block_memory(
        &self,
        size: DeviceSize,
        create_info: &AllocationCreateInfo,
    ) -> Result<MemoryObject, AllocationError>;

    /// A dedicated allocation of `size` bytes (for `dedicated`'s resource, when given).
    fn dedicated(
        &self,
        size: DeviceSize,
        allocation_type: AllocationType,
        dedicated: Option<DedicatedAllocation>,
        create_info: &AllocationCreateInfo,
    ) -> Result<MemoryAlloc, AllocationError>;

    /// The metadata record of a new allocation (name, user data, debug aids).
    fn meta(&self, create_info: &AllocationCreateInfo) -> Option<Arc<AllocationMeta>>;
}

/// How a vector places requests.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Placing {
    /// The allocator's [policy](placement::plan), with the device's memory objects counted.
    Policy(ObjectCount),
    /// A custom pool's rule ([`placement::plan_in_pool`]): its blocks, or a dedicated
    /// allocation of its memory type.
    Pool,
}

/// A block vector with what allocating in it needs (see the [module docs](self)).
pub(crate) struct Vector<'a, S> {
    pub device: &'a MemoryDevice,
    pub memory_type_index: u32,
    /// The memory type's (or pool's) facts.
    pub facts: TypeFacts,
    pub blocks: &'a Arc<DeviceBlockVec<S>>,
    pub placing: Placing,
    /// Whether new blocks start smaller (see
    /// [block sizes](super::placement#block-sizes)).
    pub grow: bool,
    pub granularity: DeviceAlignment,
    /// Debug margins (0 for none).
    pub margin: DeviceSize,
    /// Whether a dedicated allocation names its resource even when the driver does not require
    /// it (the allocator's `dedicated_allocation` setting).
    pub name_resource: bool,
    pub source: &'a dyn MemorySource,
}

/// A request made ready for one vector: its plan, what the blocks are asked for, and what the
/// new allocation carries ([`Vector::prepare`]).
pub(crate) struct Prepared {
    plan: Plan,
    fit: Fit,
    guard: Option<(DeviceSize, DeviceSize)>,
    meta: Option<Arc<AllocationMeta>>,
}

impl<S: Suballocator + Send + 'static> Vector<'_, S> {
    /// Step 1: the request with its margins, and its plan.
    #[inline]
    pub(crate) fn prepare(
        &self,
        request: &Request,
        allocation_type: AllocationType,
        strategy: AllocationStrategy,
        create_info: &AllocationCreateInfo,
    ) -> Result<Prepared, AllocationError> {
        let (plan, guard) = match guarded(request, self.margin) {
            Some((block_request, guard))
                if block_request.layout.size() <= self.facts.heap_size
                    || request.layout.size() > self.facts.heap_size =>
            {
                let plan = match self.placing {
                    Placing::Policy(objects) => {
                        placement::plan(&block_request, &self.facts, objects)
                    }
                    Placing::Pool => placement::plan_in_pool(&block_request, &self.facts),
                }
                .map_err(|e| self.placement_error(e, request.layout.size(), &block_request))?;
                (plan, guard)
            }
            // The margins, not the request, are more than the heap holds (or than the largest
            // layout): no block holds the request with them, so only a dedicated allocation,
            // which has none, serves it, as for any request larger than a block.
            margins_too_large => (
                self.dedicated_only(request, margins_too_large.map(|(r, _)| r))?,
                None,
            ),
        };
        let fit = fit_of(
            &plan,
            &self.facts,
            allocation_type,
            self.granularity,
            strategy,
        );
        Ok(Prepared {
            plan,
            fit,
            guard,
            meta: self.source.meta(create_info),
        })
    }

    /// Step 2, the fast path: a suballocation in an existing block, when the plan says
    /// "suballocate".
    #[inline]
    pub(crate) fn existing(&self, p: &Prepared) -> Option<MemoryAlloc> {
        match p.plan {
            Plan::Suballocate { .. } => try_existing(self.blocks, &p.fit, p.made()),
            Plan::Dedicated { .. } => None,
        }
    }

    /// Steps 1 to 3.
    pub(crate) fn allocate(
        &self,
        request: &Request,
        allocation_type: AllocationType,
        strategy: AllocationStrategy,
        create_info: &AllocationCreateInfo,
        dedicated: Option<DedicatedAllocation>,
    ) -> Result<MemoryAlloc, AllocationError> {
        let p = self.prepare(request, allocation_type, strategy, create_info)?;
        if let Some(alloc) = self.existing(&p) {
            return Ok(alloc);
        }
        self.rest(&p, request, allocation_type, create_info, dedicated)
    }

    /// The plan of a request whose margins no block of this vector's heap can hold
    /// (`block_request`, `None` when its layout overflows), though the request itself fits the
    /// heap: a dedicated allocation where the placement rule allows one for a request larger
    /// than a block, [`BlockSizeExceeded`](AllocationError::BlockSizeExceeded) otherwise.
    fn dedicated_only(
        &self,
        request: &Request,
        block_request: Option<Request>,
    ) -> Result<Plan, AllocationError> {
        let allowed = match (self.placing, request.preference) {
            (_, MemoryAllocatePreference::NeverAllocate) => false,
            (Placing::Policy(_), _) => true,
            (Placing::Pool, preference) => {
                request.requires_dedicated || preference == MemoryAllocatePreference::AlwaysAllocate
            }
        };
        if !allowed {
            return Err(AllocationError::BlockSizeExceeded {
                size: block_request
                    .and_then(|r| self.facts.block_layout(r.layout))
                    .map_or(DeviceSize::MAX, |l| l.size()),
                block_size: self.facts.block_size,
            });
        }
        Ok(Plan::Dedicated {
            layout: self
                .facts
                .block_layout(request.layout)
                .unwrap_or(request.layout),
            blocks_fallback: false,
            kept_first: false,
        })
    }

    /// The error of a request of `size` bytes the placement refused; `block_request` is the
    /// request with its debug margins, whose in-block size (padded to whole atoms in
    /// non-coherent memory) is what a block too small is compared with.
    fn placement_error(
        &self,
        e: placement::PlacementError,
        size: DeviceSize,
        block_request: &Request,
    ) -> AllocationError {
        let size = match e {
            // What did not fit is the request as it lies in a block, not its bare size: a
            // 1000-byte request with 1 MiB margins does not fit a 1 MiB block.
            placement::PlacementError::LargerThanBlock => self
                .facts
                .block_layout(block_request.layout)
                .map_or(DeviceSize::MAX, |l| l.size()),
            _ => size,
        };
        let heap = self
            .device
            .memory_properties()
            .memory_type(self.memory_type_index)
            .map_or(0, |t| t.heap_index);
        AllocationError::from_placement(
            e,
            self.memory_type_index,
            size,
            heap,
            self.facts.heap_size,
            self.facts.block_size,
        )
    }
}

impl Prepared {
    fn made(&self) -> Made<'_> {
        Made {
            meta: &self.meta,
            guard: self.guard,
        }
    }
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
    arena: &Arc<Arena<S, MemoryObject>>,
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
    let alloc = MemoryAlloc::in_block(
        block_ref(arena, placed.first),
        s.handle,
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

/// Wraps a suballocation made in an arena for a request with no metadata record and no
/// margins (the [hot path](super::GenericMemoryAllocator)): what [`wrap_block`] does for such
/// a request, with nothing to check. A type of its own rather than a function, so that the
/// wrapping is inlined always where the block vector calls it (see [`Wrap`]): out of line, the
/// allocation would come back through memory and be copied once more, on every allocation.
pub(crate) struct PlainWrap;

impl<S: Suballocator + Send + 'static> Wrap<S, MemoryObject> for PlainWrap {
    type Out = MemoryAlloc;
    #[inline(always)]
    fn wrap(&self, arena: &Arc<Arena<S, MemoryObject>>, placed: Placed) -> MemoryAlloc {
        let s = placed.suballocation;
        MemoryAlloc::in_block(
            block_ref(arena, placed.first),
            s.handle,
            s.offset,
            s.size,
            s.allocation_type,
            None,
        )
    }
}

/// Wraps a dedicated allocation's `memory` into what the user holds, registered in
/// `registry` (for statistics and the leak report), and applies the debug aids. `keeper` is
/// offered the memory object when the allocation is dropped.
pub(crate) fn wrap_dedicated(
    registry: &Arc<DedicatedRegistry>,
    memory: MemoryObject,
    allocation_type: AllocationType,
    meta: Option<Arc<AllocationMeta>>,
    keeper: Option<Weak<dyn FreedMemoryKeeper>>,
) -> MemoryAlloc {
    let size = memory.size();
    let registration = registry.register(&memory, allocation_type, meta.clone());
    let alloc = MemoryAlloc::dedicated(
        Dedicated::new(memory, registration, keeper),
        size,
        allocation_type,
        meta,
    );
    alloc.arm_debug();
    alloc
}

/// Whether a memory object of its own made for `request` passes its resource to
/// `VkMemoryDedicatedAllocateInfo`: always when the driver requires it; when the driver
/// prefers it or the caller asked for a memory object of its own
/// ([`AlwaysAllocate`](MemoryAllocatePreference::AlwaysAllocate)), if the configuration
/// allows (`name_resource`). A request the allocator gives a memory object of its own for its
/// size alone is not tied to its resource: the object is made as a block's would be, and is
/// kept as an empty block when the allocation is freed (see the block vectors' docs,
/// "Releasing").
pub(crate) fn names_resource(request: &Request, name_resource: bool) -> bool {
    request.requires_dedicated
        || name_resource
            && (request.prefers_dedicated
                || request.preference == MemoryAllocatePreference::AlwaysAllocate)
}

/// Checks a dedicated allocation of `size` bytes asked for in memory type
/// `memory_type_index` by the caller (not chosen by a plan): a valid size that fits the
/// type's heap of `heap_size` bytes.
pub(crate) fn check_explicit_dedicated(
    device: &MemoryDevice,
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
///
/// `None` when the margins cannot be laid out (front margin, size and back margin, padded to
/// the alignment, past [`DeviceLayout::MAX_SIZE`]): no block can hold the request with them,
/// and it must never be placed in one without them (damage around it would go unseen).
#[inline]
pub(crate) fn guarded(
    request: &Request,
    margin: DeviceSize,
) -> Option<(Request, Option<(DeviceSize, DeviceSize)>)> {
    if margin == 0 {
        return Some((*request, None));
    }
    let (layout, front) = corruption::guarded_layout(request.layout, margin)?;
    Some((
        Request { layout, ..*request },
        Some((front, request.layout.size())),
    ))
}

/// Suballocates `fit` in an existing block of `blocks`, or `None`: the fast path.
#[inline]
pub(crate) fn try_existing<S: Suballocator + Send + 'static>(
    blocks: &DeviceBlockVec<S>,
    fit: &Fit,
    made: Made<'_>,
) -> Option<MemoryAlloc> {
    let wrap = |arena: &Arc<Arena<S, MemoryObject>>, placed| wrap_block(arena, placed, made);
    blocks.allocate_existing(fit, &wrap).ok().flatten()
}

impl<S: Suballocator + Send + 'static> Vector<'_, S> {
    /// Step 3: the rest of `p`'s ladder, its first step (existing blocks) tried already by
    /// [`existing`](Self::existing): each step in turn, the next chosen by how the last one
    /// failed. Returns the allocation, or the most telling error the ladder met. `request` is
    /// the request as asked (a dedicated allocation is of its size), `dedicated` its resource.
    pub(crate) fn rest(
        &self,
        p: &Prepared,
        request: &Request,
        allocation_type: AllocationType,
        create_info: &AllocationCreateInfo,
        dedicated: Option<DedicatedAllocation>,
    ) -> Result<MemoryAlloc, AllocationError> {
        let made = p.made();
        let plan = p.plan;
        let fit = p.fit;
        let hinted = dedicated.filter(|_| names_resource(request, self.name_resource));
        let size = request.layout.size();
        let facts = self.facts;
        let grow = self.grow && matches!(plan, Plan::Suballocate { grow: true, .. });
        let vec = self.blocks;
        let wrap = |arena: &Arc<Arena<S, MemoryObject>>, placed| wrap_block(arena, placed, made);
        // The smallest region that holds the request: new blocks and their arenas are at least
        // this large (a pool slot, say); `None` when no block could ever hold it.
        let min_region = S::region_size_for(fit.layout, allocation_type, self.granularity);
        let mut ladder = Ladder::new(plan);
        let mut failure = None;
        let mut error: Option<AllocationError> = None;
        while let Some(step) = ladder.next(failure) {
            if matches!(step, Step::ExistingBlocks) && failure.is_none() {
                // Tried by `existing`, which only says that it found no place: when no block
                // could ever hold the request, that is the failure (and the error, should the
                // ladder end here), not a lack of room that a free could cure.
                if min_region.is_none() {
                    failure = Some(Failure::DoesNotFitBlocks);
                    error = Some(AllocationError::SuballocatorBlockSizeExceeded);
                } else {
                    failure = Some(Failure::NoRoom);
                }
                continue;
            }
            let result = match step {
                Step::KeptBlock => vec
                    .allocate_in_kept(&fit, &wrap)
                    .ok_or(AllocationError::OutOfPoolMemory),
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
                            placement::makes_block_for_sizable(facts.block_size, grow, size),
                            |held, sizable_in_use| {
                                placement::new_block_size(
                                    facts.block_size,
                                    grow,
                                    held,
                                    attempt,
                                    min_region,
                                    size,
                                    sizable_in_use,
                                )
                            },
                            |block, largest| {
                                ArenaLayout::choose(
                                    block,
                                    min_region,
                                    largest,
                                    self.granularity,
                                    vec.home_slots(),
                                )
                            },
                            |size| self.source.block_memory(size, create_info),
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
                            NewBlockError::DoesNotFit => {
                                AllocationError::SuballocatorBlockSizeExceeded
                            }
                        }),
                },
                Step::Dedicated => {
                    self.source
                        .dedicated(size, allocation_type, hinted, create_info)
                }
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
}
