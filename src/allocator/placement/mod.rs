//! Placement: where a request goes, decided by pure functions over plain data.
//!
//! Every allocation of a [`GenericMemoryAllocator`](crate::GenericMemoryAllocator) (and of a
//! custom pool) is placed by the rules of this module, in this order, and by nothing else:
//! the allocator's fast path and its full path both ask the same function for the plan, so
//! they cannot disagree.
//!
//! # Per memory type: the plan
//!
//! A request names its size and alignment, the driver's dedicated-allocation hints and the
//! user's [`MemoryAllocatePreference`]. For one memory type the plan is:
//!
//! - **error** when the request is larger than the type's heap, or the preference forbids
//!   what the request needs (`NeverAllocate` for a resource that requires a dedicated
//!   allocation, or for memory that cannot be suballocated, or for a request larger than a
//!   block);
//! - **dedicated**, with no fallback, when the driver requires it, the preference is
//!   `AlwaysAllocate`, or the memory type cannot be suballocated (lazily allocated and RDMA
//!   memory: see [`memory_type::is_suballocatable`](super::memory_type::is_suballocatable));
//! - **dedicated, then existing blocks**, when the driver prefers it or the request is
//!   *large* (more than 1/[`LARGE_REQUEST_DIVISOR`] of the block size), unless the device is
//!   *crowded* (more than [`CROWDED_NUMERATOR`]/[`CROWDED_DENOMINATOR`] of
//!   `maxMemoryAllocationCount` memory objects live) and the request fits a block; a request
//!   that is large but not preferred dedicated by the driver first tries an empty block kept
//!   for reuse (see [kept blocks](self#kept-blocks-for-large-requests));
//! - otherwise **suballocate**: existing blocks, then a new block, then a dedicated
//!   allocation (or only existing blocks with `NeverAllocate`). A *sizable* request (more
//!   than 1/[`SIZABLE_REQUEST_DIVISOR`] of the block size) gets a new block of its own size
//!   (see [block sizes](self#block-sizes)).
//!
//! # Custom pools
//!
//! A [`MemoryPool`](crate::MemoryPool) keeps its memory to itself and its size to what was
//! asked, so its plan is simpler: a request the driver requires to be dedicated, or asked
//! with `AlwaysAllocate`, gets a memory object of its own (of the pool's memory type);
//! everything else is suballocated in the pool's blocks, then in a new block while the pool
//! holds fewer than its maximum (never with `NeverAllocate`), and never falls back to a
//! dedicated allocation. A request larger than the pool's blocks is an error, as is one in
//! memory that cannot be suballocated. All of a pool's blocks have its block size.
//!
//! # The fallback ladder
//!
//! A plan unfolds into steps, and what failed decides the next one:
//!
//! | step | failure | next step |
//! |---|---|---|
//! | kept block (a large request) | none kept that it is large for | a dedicated allocation |
//! | existing blocks | no room | a new block (attempt 0), or a dedicated allocation when no block may be made |
//! | new block, attempt *k* | out of memory or over budget | a new block, attempt *k* + 1, up to [`SMALLER_BLOCK_RETRIES`]; then a dedicated allocation |
//! | new block | no more memory objects | none: the memory type is exhausted |
//! | existing or new block | the suballocator can never serve it (e.g. larger than a pool slot) | a dedicated allocation |
//! | dedicated (large or preferred) | out of memory, over budget, no more objects | existing blocks |
//!
//! Attempt *k* of a new block halves the block size *k* times as long as
//! the request still fits. When a memory type's ladder runs out, the allocator tries the
//! next-best memory type the requirements allow; only an error that no other type can cure
//! (an invalid argument, an unexpected Vulkan error) ends the search at once.
//!
//! # Block sizes
//!
//! The first blocks of a pool are smaller than the preferred size: while it holds fewer than
//! [`GROW_STEPS`] blocks, a new block is the preferred size divided by 2 for each block it
//! lacks (1/8, 1/4, 1/2 with three steps), but at least twice the smallest region that holds
//! the request, so a small application does not reserve 256 MiB up front. Blocks made for
//! sizable requests (below) hold one resource each and are no steps of this growth: an
//! application that makes a few large render targets first still gets 1/8 of a block for
//! its first small buffers, not a whole block. On two draws of random traces of large
//! resources among small ones, mean peak reserved / peak live went 1.308 → 1.278 and 1.124 →
//! 1.129 (VMA 1.288 and 1.235), for 5-7 % more `vkAllocateMemory` calls, still fewer than
//! VMA's (docs/benchmarks.md, "Sizable resources among small ones").
//!
//! A block made for a *sizable* request (more than 1/[`SIZABLE_REQUEST_DIVISOR`] of the
//! block size) is the request rounded up to a multiple of
//! 1/[`SIZABLE_BLOCK_GRANULE_DIVISOR`] of the block size (2 MiB for 256 MiB blocks), when
//! blocks grow (the default pools with `grow_blocks`; a custom pool's blocks all have its
//! size). Whether a request is sizable is judged on its own size, not on the region that
//! holds it: with a pool suballocator whose slots are larger than an eighth of a block, a
//! small request still gets a block of several slots. Such a request arrives when no block
//! has room, that is when the type's memory is at its fullest, and a full block made for it
//! would reserve up to eight times its size right then. Unlike a dedicated allocation, the
//! block stays in the vector when it empties, as a cache of memory objects (a default block
//! vector keeps empty blocks under the recent high-water mark of its memory in use, up to
//! four preferred blocks' worth while its heap is under budget, and gives them back as far
//! as a new block needs to stay under the mark, or when the heap runs out: see the block
//! vectors' module docs, "Releasing"): the next requests of about its size reuse it
//! without a `vkAllocateMemory`. History, on the peer benchmark's `large` workload (40 live
//! resources of 1-85 MiB, 256 MiB blocks, lavapipe), `vkAllocateMemory` calls per run and
//! peak reserved / peak live at one thread on its default trace: full blocks 68 and 1.37; a
//! dedicated allocation for a sizable request that no block has room for 260 and 1.24 (VMA:
//! 239 and 1.33); blocks of the request's size (8 MiB granule) and two blocks' worth of
//! empty blocks kept 71 and 1.22; the high-water mark and a 2 MiB granule 18 and 1.25 (over
//! 30 traces of the class: 85 → 25 calls on average, waste 1.245 → 1.237, VMA 1.29).
//!
//! The rule is for sizable resources among smaller ones. A vector that serves sizable
//! requests alone (every block it holds was made for one) and has at least
//! [`SIZABLE_REQUEST_DIVISOR`] preferred blocks' worth of memory in use gets a full block for
//! the next one instead: the block adds at most an eighth to the memory in use, and the
//! requests after it fill it, as VMA's blocks fill, where blocks of each request's size meant
//! a `vkAllocateMemory` whenever none of the few kept blocks was large enough. 50 live
//! resources of 8-20 MiB replaced 2,000 times (oldest or random first, 64 MiB blocks): 129-157
//! calls before against VMA's 33-43, now 46-53, peak reserved / peak live 1.17-1.30 (before
//! 1.20-1.27, VMA 1.18-1.37); the same at 256 MiB blocks with resources of 32-82 MiB: 512-523
//! calls, now 51-60 (VMA 1,064), waste 1.19-1.20 → 1.22-1.23 (VMA 1.04-1.08). A single block
//! for small requests keeps the rule above (`large` and the sizable classes of
//! docs/benchmarks.md do not move).
//!
//! # Kept blocks for large requests
//!
//! A default block vector keeps the blocks that empty as a cache of memory objects (see the
//! block vectors' docs, "Releasing"). A large request whose memory object would be its own
//! takes the smallest kept empty block that it is large for (more than
//! 1/[`LARGE_REQUEST_DIVISOR`] of that block, so at most half of it is left over, as in a
//! block that a large request would not be suballocated in) and that one of whose arenas
//! holds, before it asks for a memory object. The kept block is reserved already, so this
//! raises no peak. The driver's preference for a dedicated allocation still gets a memory
//! object of its own.
//!
//! Before, a large request always got a memory object of its own, and making it gave back
//! the kept blocks that no longer fitted under the type's high-water mark beside it; the
//! request after it, of the usual size, then made a block again: two `vkAllocateMemory`
//! calls for each large resource in a stream of them. A stream of one-off resources of
//! 2-20 MiB (5 % of 16-64 MiB) freed newest first, with 64 MiB blocks (what heaps below
//! 1 GiB get), made 117, 174 and 144 calls in 2,000 steps on three seeds where VMA made 44,
//! 67 and 84; now 19, 29 and 22, reserving the same (docs/benchmarks.md, "Kept blocks for
//! large requests").
//!
//! A large request that finds no kept block gets a memory object of its own, made as a
//! block's would be: it names no resource in `VkMemoryDedicatedAllocateInfo` (the driver did
//! not ask for that) and has the blocks' priority. When its allocation is freed, the object
//! stays as an empty block of the memory type, one arena, under the same rule as a block that
//! just emptied. Such a block is kept for large requests alone: it publishes no free range,
//! so no other request is placed in it (small ones would keep it from emptying), and a large
//! request takes it only when it leaves at most 1/[`KEPT_OBJECT_SLACK_DIVISOR`] of it unused,
//! since no one else can use the rest. When kept memory must shrink, these blocks go first.
//! The memory objects that the driver prefers or requires for their resource, that the
//! caller asked for ([`AlwaysAllocate`](MemoryAllocatePreference::AlwaysAllocate),
//! [`allocate_dedicated`](crate::MemoryAllocator::allocate_dedicated)), that have another
//! priority, that belong to a custom pool or to memory that is never carved into blocks
//! (lazily allocated) are freed with their allocation, as in VMA. Resources of one large size
//! made and freed in turn, as streamed textures and resized targets are, no longer cost a
//! `vkAllocateMemory` each: 200 live objects with 5 % of 64 MiB at 64 MiB blocks made 195
//! calls, now 47 (VMA 195); twelve traces of sizable and large resources among small ones
//! all made fewer calls with the same waste or less (docs/benchmarks.md, "Freed large objects
//! kept"). Letting a large request take any kept object it is large for (up to half of it
//! unused), open to every request, saved more calls, but small requests settled in the unused
//! parts, the objects never emptied again, and the peak reserved rose by up to 0.22 on traces
//! with shrinking phases.
//!
//! # Which block
//!
//! Requests up to 1/[`BEST_FIT_DIVISOR`] of the block size (the vast majority) take
//! the thread's home arena of the first block when it has room: the common case costs one
//! arena. A request it cannot take goes to the arena that holds allocations and whose largest
//! free range is the smallest that may hold the request (by the arenas' published hints),
//! passing over arenas that another thread allocated in last; only when no arena in use has
//! room does the walk go on to the empty arenas, the thread's home arena of each block first
//! and then the others. Filling the fullest arenas first, as VMA fills its fullest blocks
//! first, keeps the large free ranges of the others whole: near capacity, random frees leave
//! ranges of every size in every block, and a first fit over the blocks in their order cut
//! the large ones for small requests until a large request found no range and made a block.
//! The peers bench's random traces whose live memory peaks at 91 % of six blocks (objects of
//! 8-40, 16-53 or 64-192 KiB, freed at random) needed a seventh block that way, where VMA
//! fits six (reserved/live 1.38 against 1.10); now they fit six too (objects of 4-12 KiB
//! need seven with either). Steady churn over many blocks pays for the ranking: 7.9 % more
//! instructions on the peers bench's `churn`, 4.1 % on `mixed`. Inside an arena near
//! capacity, the free list does the same for ranges: a request tries a range of its own
//! size class before it cuts a larger one (step 0 of the
//! [free list's search](crate::suballocator::FreeListAllocator)).
//! Larger requests are few and are what fragments memory, so they look at every arena and
//! take the one whose largest free range is the smallest that holds them (best fit), so that
//! the large free ranges stay whole for the next large request. An empty block (kept for
//! reuse) that is more than [`EMPTY_BLOCK_FIT_PERCENT`] of the request ranks after all the
//! others: a block made for an 80 MiB request waits for the next request of about its size
//! instead of holding a 10 MiB one that leaves the rest of it to smaller pieces.
//!
//! # Arenas
//!
//! A new block is cut into arenas for threads: a power of two of them, each at least
//! [`MIN_ARENA_SIZE`], large enough for the request that made the block, and at least
//! [`ARENA_REQUEST_FACTOR`] times the largest request the block vector has seen (blocks of a
//! vector that serves large resources stay whole: arena boundaries would cut their free
//! space into pieces too small for them).
//!
//! # Non-coherent memory
//!
//! In memory types that are `HOST_VISIBLE` but not `HOST_COHERENT`, the range of every
//! suballocation starts and ends on a multiple of `nonCoherentAtomSize`
//! (the layout is padded before it reaches the suballocator): a flush or invalidate of one allocation, widened to whole
//! atoms as Vulkan requires, then never touches a byte of another allocation.

#![deny(unsafe_code)]

use super::memory_type::is_suballocatable;
use crate::device::MemoryProperties;
use crate::layout::{align_up, DeviceAlignment, DeviceLayout, DeviceSize};
use ash::vk;

/// A request is *sizable* when it is more than `block size / SIZABLE_REQUEST_DIVISOR` bytes
/// (and not large): it never makes a new block (see [the plan](self#per-memory-type-the-plan)).
pub const SIZABLE_REQUEST_DIVISOR: DeviceSize = 8;

/// A request is *large* when it is more than `block size / LARGE_REQUEST_DIVISOR` bytes: it
/// prefers a dedicated allocation (VMA uses the same half-block rule).
pub const LARGE_REQUEST_DIVISOR: DeviceSize = 2;

/// The device is *crowded* when more than `maxMemoryAllocationCount * CROWDED_NUMERATOR /
/// CROWDED_DENOMINATOR` memory objects live: requests that fit a block are then suballocated
/// even when they are large or the driver prefers a dedicated allocation, to keep objects for
/// what needs them.
pub const CROWDED_NUMERATOR: u32 = 3;
/// See [`CROWDED_NUMERATOR`].
pub const CROWDED_DENOMINATOR: u32 = 4;

/// While a pool holds fewer than this many blocks, new blocks start smaller (halved once per
/// missing block), if the allocator's `grow_blocks` is on.
pub const GROW_STEPS: u32 = 3;

/// How many times a new block is retried at half the size after the driver runs out of
/// memory (or the budget refuses it).
pub const SMALLER_BLOCK_RETRIES: u32 = 3;

/// The smallest arena a block is cut into.
pub const MIN_ARENA_SIZE: DeviceSize = 16 << 20;

/// The most arenas a block is cut into (and the most `block_arenas` accepts): threads get
/// their home arena from one of this many thread shards, so more arenas would never be
/// anyone's home.
pub const MAX_BLOCK_ARENAS: usize = 8;

/// An arena is at least this many times as large as the largest request its block vector has
/// seen, so that free space split at arena boundaries still holds typical requests.
pub const ARENA_REQUEST_FACTOR: DeviceSize = 4;

/// Requests of more than `block size / BEST_FIT_DIVISOR` bytes search every arena of every
/// block and take the one whose largest free range is the smallest that fits (best fit),
/// keeping large free ranges for large requests; smaller ones take the first fit.
pub const BEST_FIT_DIVISOR: DeviceSize = 64;

/// Whether an allocation may, must or must not get a memory object of its own.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum MemoryAllocatePreference {
    /// The allocator decides, by the rules of [the plan](self#per-memory-type-the-plan). The
    /// default.
    #[default]
    Auto,
    /// Never call `vkAllocateMemory`: use existing blocks only, fail otherwise.
    NeverAllocate,
    /// Always make a dedicated allocation.
    AlwaysAllocate,
}

/// The request size above which a request is sizable, for blocks of `block_size` bytes.
#[inline]
fn sizable_threshold(block_size: DeviceSize) -> DeviceSize {
    block_size / SIZABLE_REQUEST_DIVISOR
}

/// What the placement knows about one memory type: plain data, computed once per allocator
/// (or pool).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TypeFacts {
    /// Whether blocks of this type may be carved up.
    pub suballocatable: bool,
    /// The preferred block size.
    pub block_size: DeviceSize,
    /// The size of the type's heap.
    pub heap_size: DeviceSize,
    /// `nonCoherentAtomSize` when the type is host-visible and not host-coherent.
    pub atom: Option<DeviceAlignment>,
}

impl TypeFacts {
    /// The facts of memory type `index` of `props`, with `block_size` for its heap and the
    /// device's `atom`.
    pub(crate) fn of_type(
        props: &MemoryProperties,
        index: u32,
        block_size: DeviceSize,
        atom: DeviceAlignment,
    ) -> Option<Self> {
        let t = props.memory_type(index)?;
        let flags = t.property_flags;
        let non_coherent = flags.contains(vk::MemoryPropertyFlags::HOST_VISIBLE)
            && !flags.contains(vk::MemoryPropertyFlags::HOST_COHERENT);
        Some(Self {
            suballocatable: is_suballocatable(flags),
            block_size,
            heap_size: props.heap_size_of_type(index)?,
            atom: non_coherent.then_some(atom),
        })
    }

    /// The layout a suballocation of `layout` takes in a block of this type: in non-coherent
    /// memory, aligned to the atom and padded to a whole number of atoms (see
    /// [non-coherent memory](self#non-coherent-memory)); `None` when that overflows.
    #[inline(always)]
    pub(crate) fn block_layout(&self, layout: DeviceLayout) -> Option<DeviceLayout> {
        match self.atom {
            None => Some(layout),
            Some(atom) => {
                let size = align_up(layout.size(), atom)?;
                DeviceLayout::new(size, layout.alignment().max(atom)).ok()
            }
        }
    }

    /// Whether a suballocation of `size` bytes searches for the best fit (see
    /// [which block](self#which-block)).
    #[inline]
    pub(crate) fn best_fit(&self, size: DeviceSize) -> bool {
        size > self.block_size / BEST_FIT_DIVISOR
    }

    /// The request size above which a request is large.
    #[inline]
    pub(crate) fn large_request_threshold(&self) -> DeviceSize {
        large_threshold(self.block_size)
    }
}

/// The request size above which a request is large for blocks of `block_size` bytes.
#[inline]
pub(crate) fn large_threshold(block_size: DeviceSize) -> DeviceSize {
    block_size / LARGE_REQUEST_DIVISOR
}

/// A kept memory object of its own that a large request left, kept for large requests
/// alone, serves a request that leaves at most 1/`KEPT_OBJECT_SLACK_DIVISOR` of it unused
/// (the rest of it serves no other request): see
/// [kept blocks](self#kept-blocks-for-large-requests).
pub const KEPT_OBJECT_SLACK_DIVISOR: DeviceSize = 16;

/// The request size above which a request may take a kept empty block of `block_size`
/// bytes: any request it is large for, or, for a memory object of its own that a large
/// request left (`for_large`), one that leaves at most
/// 1/[`KEPT_OBJECT_SLACK_DIVISOR`] of it unused.
pub(crate) fn kept_block_threshold(block_size: DeviceSize, for_large: bool) -> DeviceSize {
    if for_large {
        block_size - block_size / KEPT_OBJECT_SLACK_DIVISOR
    } else {
        large_threshold(block_size)
    }
}

/// One request, as the placement sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Request {
    /// Size and alignment, as asked.
    pub layout: DeviceLayout,
    /// The user's preference.
    pub preference: MemoryAllocatePreference,
    /// The driver would rather give the resource a memory object of its own.
    pub prefers_dedicated: bool,
    /// The driver insists on it.
    pub requires_dedicated: bool,
}

/// The device's memory-object count, when the plan is made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ObjectCount {
    /// Memory objects alive now.
    pub live: u32,
    /// `maxMemoryAllocationCount`.
    pub max: u32,
}

impl ObjectCount {
    /// Whether more than [`CROWDED_NUMERATOR`]/[`CROWDED_DENOMINATOR`] of the memory objects
    /// the device allows are alive.
    #[inline]
    pub(crate) fn is_crowded(self) -> bool {
        u64::from(self.live) * u64::from(CROWDED_DENOMINATOR)
            > u64::from(self.max) * u64::from(CROWDED_NUMERATOR)
    }
}

/// What to do with a request in one memory type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Plan {
    /// Suballocate `layout` (the request's, adjusted for the memory type: see
    /// [`TypeFacts::block_layout`]) in existing blocks; then, if `grow`, in a new block; then,
    /// if `dedicated_fallback`, in a dedicated memory object.
    Suballocate {
        layout: DeviceLayout,
        grow: bool,
        dedicated_fallback: bool,
    },
    /// A dedicated memory object; then, if `blocks_fallback`, suballocate `layout` in
    /// existing blocks. With `kept_first`, an empty block kept for reuse that the request is
    /// large for is tried before the dedicated object (see
    /// [kept blocks](self#kept-blocks-for-large-requests)).
    Dedicated {
        layout: DeviceLayout,
        blocks_fallback: bool,
        kept_first: bool,
    },
}

/// Why a request cannot be served by a memory type at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PlacementError {
    /// Larger than the type's heap.
    SizeExceedsHeap,
    /// `NeverAllocate`, and the driver requires a dedicated allocation.
    DedicatedRequired,
    /// `NeverAllocate`, and the type is only given out as dedicated allocations.
    NotSuballocatable,
    /// `NeverAllocate`, and the request is larger than a block.
    LargerThanBlock,
}

/// The plan for `request` in a memory type with `facts`, with `objects` memory objects alive
/// (see the [module docs](self)).
#[inline]
pub(crate) fn plan(
    request: &Request,
    facts: &TypeFacts,
    objects: ObjectCount,
) -> Result<Plan, PlacementError> {
    let size = request.layout.size();
    if size > facts.heap_size {
        return Err(PlacementError::SizeExceedsHeap);
    }
    // In-block layout; a request whose padded size overflows cannot be suballocated.
    let block_layout = facts.block_layout(request.layout);
    let fits_block = block_layout.is_some_and(|l| l.size() <= facts.block_size);
    let layout = block_layout.unwrap_or(request.layout);
    match request.preference {
        MemoryAllocatePreference::NeverAllocate => {
            if request.requires_dedicated {
                Err(PlacementError::DedicatedRequired)
            } else if !facts.suballocatable {
                Err(PlacementError::NotSuballocatable)
            } else if !fits_block {
                Err(PlacementError::LargerThanBlock)
            } else {
                Ok(Plan::Suballocate {
                    layout,
                    grow: false,
                    dedicated_fallback: false,
                })
            }
        }
        MemoryAllocatePreference::AlwaysAllocate => Ok(Plan::Dedicated {
            layout,
            blocks_fallback: false,
            kept_first: false,
        }),
        MemoryAllocatePreference::Auto => {
            if request.requires_dedicated || !facts.suballocatable || !fits_block {
                return Ok(Plan::Dedicated {
                    layout,
                    blocks_fallback: false,
                    kept_first: false,
                });
            }
            let large = size > facts.large_request_threshold();
            if (request.prefers_dedicated || large) && !objects.is_crowded() {
                Ok(Plan::Dedicated {
                    layout,
                    blocks_fallback: true,
                    // The driver's preference gets a memory object of its own; a request that
                    // is only large may take a kept one.
                    kept_first: !request.prefers_dedicated,
                })
            } else {
                Ok(Plan::Suballocate {
                    layout,
                    grow: true,
                    dedicated_fallback: true,
                })
            }
        }
    }
}

/// The in-block layout of a plain request of `layout` (the default preference, no dedicated
/// preference or requirement) that [`plan`] suballocates in this memory type whatever the
/// memory-object count: it fits the heap and a block, the type is suballocatable, and the
/// request is not large. `None` for any other request, which only [`plan`] decides (a large
/// request is suballocated too, when the device is crowded). The hot path's plan, in a few
/// comparisons.
#[inline(always)]
pub(crate) fn plain_suballocation(layout: DeviceLayout, facts: &TypeFacts) -> Option<DeviceLayout> {
    let size = layout.size();
    if !facts.suballocatable || size > facts.heap_size || size > facts.large_request_threshold() {
        return None;
    }
    let block_layout = facts.block_layout(layout)?;
    (block_layout.size() <= facts.block_size).then_some(block_layout)
}

/// The plan for `request` in a custom pool whose blocks have `facts` (see
/// [custom pools](self#custom-pools)).
#[inline]
pub(crate) fn plan_in_pool(request: &Request, facts: &TypeFacts) -> Result<Plan, PlacementError> {
    if request.layout.size() > facts.heap_size {
        return Err(PlacementError::SizeExceedsHeap);
    }
    let block_layout = facts.block_layout(request.layout);
    let layout = block_layout.unwrap_or(request.layout);
    let never = request.preference == MemoryAllocatePreference::NeverAllocate;
    if request.requires_dedicated || request.preference == MemoryAllocatePreference::AlwaysAllocate
    {
        return if never {
            Err(PlacementError::DedicatedRequired)
        } else {
            Ok(Plan::Dedicated {
                layout,
                blocks_fallback: false,
                kept_first: false,
            })
        };
    }
    if !facts.suballocatable {
        return Err(PlacementError::NotSuballocatable);
    }
    if block_layout.is_none_or(|l| l.size() > facts.block_size) {
        return Err(PlacementError::LargerThanBlock);
    }
    Ok(Plan::Suballocate {
        layout,
        grow: !never,
        dedicated_fallback: false,
    })
}

/// One thing to try for a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// Suballocate in an empty block kept for reuse that the request is large for (see
    /// [kept blocks](self#kept-blocks-for-large-requests)).
    KeptBlock,
    /// Suballocate in an existing block.
    ExistingBlocks,
    /// Make a new block and suballocate in it; attempt `k` halves the size `k` times (see
    /// [`new_block_size`]).
    NewBlock { attempt: u32 },
    /// Make a dedicated memory object.
    Dedicated,
}

/// How a step failed, as far as the ladder cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Failure {
    /// No existing block has room.
    NoRoom,
    /// The driver is out of memory, or the budget refused: something smaller may succeed.
    OutOfMemory,
    /// No memory object may be made (`maxMemoryAllocationCount`, a pool's block limit).
    NoMoreObjects,
    /// The blocks' suballocator can never serve the request (e.g. a pool slot too small).
    DoesNotFitBlocks,
    /// Anything else: stop.
    Fatal,
}

impl Failure {
    /// Whether another memory type may still succeed after a ladder ended in this failure.
    pub(crate) fn tries_next_type(self) -> bool {
        !matches!(self, Failure::Fatal)
    }
}

/// The steps of a plan, unfolded one at a time according to what failed.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ladder {
    plan: Plan,
    last: Option<Step>,
}

impl Ladder {
    /// The ladder of `plan`.
    pub(crate) fn new(plan: Plan) -> Self {
        Self { plan, last: None }
    }

    /// The next step after the last one failed with `failure` (`None` before the first
    /// step), or `None` when the memory type has nothing left to try.
    pub(crate) fn next(&mut self, failure: Option<Failure>) -> Option<Step> {
        use Failure::*;
        let next = match (self.plan, self.last, failure) {
            (Plan::Suballocate { .. }, None, _) => Some(Step::ExistingBlocks),
            (
                Plan::Dedicated {
                    kept_first: true, ..
                },
                None,
                _,
            ) => Some(Step::KeptBlock),
            (Plan::Dedicated { .. }, None, _) => Some(Step::Dedicated),
            (_, Some(_), None | Some(Fatal)) => None,
            (
                Plan::Suballocate {
                    grow,
                    dedicated_fallback,
                    ..
                },
                Some(last),
                Some(f),
            ) => match (last, f) {
                (Step::ExistingBlocks, NoRoom) if grow => Some(Step::NewBlock { attempt: 0 }),
                (Step::ExistingBlocks, NoRoom | DoesNotFitBlocks) => {
                    dedicated_fallback.then_some(Step::Dedicated)
                }
                (Step::NewBlock { attempt }, OutOfMemory) if attempt < SMALLER_BLOCK_RETRIES => {
                    Some(Step::NewBlock {
                        attempt: attempt + 1,
                    })
                }
                (Step::NewBlock { .. }, OutOfMemory | DoesNotFitBlocks) => {
                    dedicated_fallback.then_some(Step::Dedicated)
                }
                _ => None,
            },
            (
                Plan::Dedicated {
                    blocks_fallback, ..
                },
                Some(Step::Dedicated),
                Some(OutOfMemory | NoMoreObjects),
            ) => blocks_fallback.then_some(Step::ExistingBlocks),
            (Plan::Dedicated { .. }, Some(Step::KeptBlock), Some(_)) => Some(Step::Dedicated),
            (Plan::Dedicated { .. }, Some(_), Some(_)) => None,
        };
        self.last = next;
        next
    }
}

/// The size of a new block: attempt `attempt` (see [`Step::NewBlock`]) for a pool that holds
/// `held` blocks (of the growing sizes: blocks made for sizable requests do not count), with
/// `preferred` bytes as its block size, growing when `grow` is set; the block must be at
/// least `min_size` bytes (the smallest region that holds the request of `request` bytes:
/// more than the request with a pool suballocator's slots, say). `None` when halving would
/// go below `min_size`.
///
/// Whether the request is sizable is the request's own size: a suballocator whose regions
/// are larger than an eighth of a block still gets full blocks for small requests. A sizable
/// request gets a block of about its own size, unless the pool serves only sizable requests
/// (every block it holds was made for one) and has `sizable_in_use` bytes in use, at least
/// [`SIZABLE_REQUEST_DIVISOR`] preferred blocks: then a full block, which adds at most an
/// eighth to the memory in use, and which the next sizable requests fill (see
/// [block sizes](self#block-sizes)). Pass 0 for `sizable_in_use` when the pool holds any
/// other block.
pub(crate) fn new_block_size(
    preferred: DeviceSize,
    grow: bool,
    held: usize,
    attempt: u32,
    min_size: DeviceSize,
    request: DeviceSize,
    sizable_in_use: DeviceSize,
) -> Option<DeviceSize> {
    let mut size = preferred.max(min_size);
    if makes_block_for_sizable(preferred, grow, request) {
        if sizable_in_use < preferred.saturating_mul(SIZABLE_REQUEST_DIVISOR) {
            size = sizable_block_size(preferred, min_size);
        }
    } else if grow {
        let shift = (GROW_STEPS as usize).saturating_sub(held) as u32;
        size = (preferred >> shift)
            .max(min_size.saturating_mul(2))
            .min(size);
    }
    let size = size.checked_shr(attempt).unwrap_or(0);
    (size >= min_size && size > 0).then_some(size)
}

/// Whether a new block for a request of `request` bytes is made for it: the request is
/// sizable and blocks grow (see [block sizes](self#block-sizes)). Such a block has about the
/// request's size (or, in a pool of sizable requests alone, the preferred size: see
/// [`new_block_size`]) and is no step of the growing block sizes: `held` in
/// [`new_block_size`] does not count it.
pub(crate) fn makes_block_for_sizable(
    preferred: DeviceSize,
    grow: bool,
    request: DeviceSize,
) -> bool {
    grow && request > sizable_threshold(preferred)
}

/// The size of a new block made for a sizable request of `min_size` bytes: `min_size`
/// rounded up to a multiple of `preferred / SIZABLE_BLOCK_GRANULE_DIVISOR`.
fn sizable_block_size(preferred: DeviceSize, min_size: DeviceSize) -> DeviceSize {
    let granule = (preferred / SIZABLE_BLOCK_GRANULE_DIVISOR).max(1);
    min_size
        .div_ceil(granule)
        .saturating_mul(granule)
        .max(min_size)
}

/// A block made for a sizable request is the request rounded up to a multiple of
/// `block size / SIZABLE_BLOCK_GRANULE_DIVISOR` (2 MiB for 256 MiB blocks): see
/// [block sizes](self#block-sizes).
pub const SIZABLE_BLOCK_GRANULE_DIVISOR: DeviceSize = 128;

/// A best-fit request takes an empty block more than this percentage of its size only when
/// no block in use and no empty block nearer its size has room: see
/// [which block](self#which-block).
pub const EMPTY_BLOCK_FIT_PERCENT: DeviceSize = 150;

/// Whether a request of `request` bytes fits an empty block of `block` bytes well: the block
/// is at most [`EMPTY_BLOCK_FIT_PERCENT`] of the request.
pub(crate) fn fits_empty_block_well(block: DeviceSize, request: DeviceSize) -> bool {
    block.saturating_mul(100) <= request.saturating_mul(EMPTY_BLOCK_FIT_PERCENT)
}

/// How a block is cut: `count` arenas at multiples of `size`, the last one taking the rest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ArenaLayout {
    /// A power of two.
    pub count: usize,
    /// A power of two, unless `count` is 1 (then the block size).
    pub size: DeviceSize,
}

impl ArenaLayout {
    /// The most arenas, a power of two up to `wanted`, that a block of `block_size` bytes can
    /// be cut into such that each holds at least [`MIN_ARENA_SIZE`], `min_region` bytes (the
    /// smallest region that holds the request that made the block) and
    /// [`ARENA_REQUEST_FACTOR`] times `largest_request` (the largest request the vector has
    /// seen), and starts on a multiple of `granularity`. One arena (the whole block) when no cut qualifies. A power
    /// of two, so that a thread finds its home arena with a mask; arena sizes are powers of
    /// two too, so that offsets that are multiples of them keep every power-of-two alignment
    /// up to them, and the granularity when they are at least that.
    pub(crate) fn choose(
        block_size: DeviceSize,
        min_region: DeviceSize,
        largest_request: DeviceSize,
        granularity: DeviceAlignment,
        wanted: usize,
    ) -> Self {
        let floor = MIN_ARENA_SIZE
            .max(min_region)
            .max(largest_request.saturating_mul(ARENA_REQUEST_FACTOR))
            .max(granularity.as_devicesize());
        let mut count = if wanted == 0 { 1 } else { 1 << wanted.ilog2() };
        while count > 1 {
            let quotient = block_size / count as DeviceSize;
            if quotient > 0 {
                let size = 1 << quotient.ilog2();
                if size >= floor {
                    return Self { count, size };
                }
            }
            count /= 2;
        }
        Self {
            count: 1,
            size: block_size,
        }
    }

    /// Offset and size of arena `i` in a block of `block_size` bytes.
    pub(crate) fn range(self, i: usize, block_size: DeviceSize) -> (DeviceSize, DeviceSize) {
        let base = i as DeviceSize * self.size;
        let end = if i + 1 == self.count {
            block_size
        } else {
            base + self.size
        };
        (base, end - base)
    }
}

#[cfg(test)]
mod tests;
