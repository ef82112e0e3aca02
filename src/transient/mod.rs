//! Transient memory planned from a frame graph's resource lifetimes.
//!
//! A renderer describes a frame as passes in execution order. Most of its images and buffers
//! (a G-buffer, shadow maps, a bloom chain, intermediate compute buffers) are *transient*:
//! written by one pass, read by a few, dead before the frame ends. Two resources never alive
//! in the same pass can share memory, and a frame that plans for it needs far less memory
//! than one that gives each resource its own range.
//!
//! [`plan`](fn@plan) takes each resource's memory requirements and the interval of passes it is alive
//! in, and returns a [`TransientPlan`]: the memory objects to allocate, the offset of each
//! resource in one of them, and for each resource the earlier resources whose memory it takes
//! over, where an *aliasing barrier* is needed. It is pure (no Vulkan calls) and fast enough
//! to run every frame; [`TransientPlanner`] keeps the last plan and returns it again when the
//! graph did not change. [`TransientMemory`] allocates a plan's memory and binds resources at
//! their offsets, and [`record_aliasing_barriers`] records the barriers before a pass.
//!
//! ```
//! use ash_memory::transient::{plan, PlanInfo, TransientResource};
//! use ash_memory::{AllocationType, DeviceLayout};
//!
//! let mib = |n: u64| DeviceLayout::from_size_alignment(n << 20, 64 << 10).unwrap();
//! let resources = [
//!     // A G-buffer target written in pass 0 and read in pass 1 ...
//!     TransientResource::new(mib(32), !0, AllocationType::NonLinear, 0, 1),
//!     // ... the lighting result, written in pass 1 and read in pass 2 ...
//!     TransientResource::new(mib(64), !0, AllocationType::NonLinear, 1, 2),
//!     // ... and a post-processing buffer of pass 2, which can take the G-buffer's memory.
//!     TransientResource::new(mib(16), !0, AllocationType::Linear, 2, 2),
//! ];
//! let plan = plan(&resources, &PlanInfo::default())?;
//! assert_eq!(plan.total_size(), 96 << 20); // the lower bound: passes 1 and 2 need 96 MiB
//! assert_eq!(plan.takes_over_from(2), &[0]); // a barrier between resources 0 and 2
//! # Ok::<(), ash_memory::transient::PlanError>(())
//! ```
//!
//! # Quality
//!
//! No plan can use less memory than the largest sum of aligned sizes alive in one pass (the
//! *lower bound*, [`TransientPlan::lower_bound`]), but for the padding after the highest
//! resource. The planner runs several greedy heuristics
//! and keeps the best (see [`plan`](fn@plan)); on the sample frame graphs of [`graphs`] it reaches the
//! bound, and it is never above TFLite's greedy-by-size planner, one of the heuristics it runs.
//!
//! # Aliasing barriers
//!
//! When a resource takes over memory that another used earlier in the frame, the GPU must be
//! done with the old one before the new one is written (a write-after-read or
//! write-after-write hazard on the same bytes), and an image starting its life in aliased
//! memory is transitioned from `VK_IMAGE_LAYOUT_UNDEFINED`: its contents are garbage.
//! [`TransientPlan::takes_over_from`] lists exactly the resources each resource needs such a
//! barrier against: those that were the last to be alive in some byte of its range, and, for
//! the rest of its first and last `bufferImageGranularity` pages, the last of a conflicting
//! kind (linear against optimal) alive in some byte there: Vulkan counts such resources in
//! one page as aliasing even when their bytes are apart.
//!
//! # Memory on the device
//!
//! Each memory object of a plan is a *dedicated* allocation of exactly the planned size,
//! through [`MemoryAllocator::allocate_dedicated`](crate::MemoryAllocator::allocate_dedicated).
//! A plan's memory object is one large range (hundreds of MiB for a 4K frame) that the plan
//! fills by itself and that lives for many frames: a block of a custom pool would add a
//! suballocator around a single range and round it up to a block size, and the offsets of the
//! plan assume a start aligned to every resource's alignment, which the start of a memory
//! object is by definition.
//!
//! # From frame to frame
//!
//! [`TransientMemory::prepare`] keeps, per memory type, the memory object of the last plans
//! and reuses it whenever it is large enough. It grows it (a new object of the planned size
//! replaces the old one) only when a plan needs more. It shrinks in two ways, both after
//! [`release_after`](TransientMemoryCreateInfo::release_after) consecutive plans: a memory
//! object that no plan used is released, and one more than twice as large as the plans
//! needed is replaced by one of the needed size; [`TransientMemory::trim`] releases unused
//! ones at once. With a graph identical to the previous frame's, [`TransientPlanner`] gives
//! back the same plan and `prepare` the same memory: the resources bound at its offsets can
//! stay.
//!
//! With several frames in flight, use one `TransientMemory` per frame slot: a slot's memory
//! is only touched once the GPU finished the frame that last used the slot.

mod barriers;
mod memory;
mod plan;

pub use self::barriers::{record_aliasing_barriers, StageAccess, TransientHandle, TransientUse};
pub use self::memory::{TransientError, TransientMemory, TransientMemoryCreateInfo};
pub use self::plan::graphs;
pub use self::plan::TransientPlanner;
pub use self::plan::{
    plan, plan_greedy_by_size, Placement, PlanError, PlanInfo, PlannedMemory, TransientPlan,
    TransientResource,
};
