//! Transient memory planned from a frame graph's resource lifetimes.
//!
//! A renderer describes a frame as passes in execution order. Most of its images and buffers
//! (a G-buffer, shadow maps, a bloom chain, intermediate compute buffers) are *transient*:
//! written by one pass, read by a few, dead before the frame ends. Two resources never alive
//! in the same pass can share memory, and a frame that plans for it needs far less memory
//! than one that gives each resource its own range.
//!
//! [`plan`] takes each resource's memory requirements and the interval of passes it is alive
//! in, and returns a [`TransientPlan`]: the memory objects to allocate, the offset of each
//! resource in one of them, and for each resource the earlier resources whose memory it takes
//! over, where an *aliasing barrier* is needed. It is pure (no Vulkan calls) and fast enough
//! to run every frame; [`TransientPlanner`] keeps the last plan and returns it again when the
//! graph did not change.
//!
//! # Quality
//!
//! No plan can use less memory than the largest sum of aligned sizes alive in one pass (the
//! *lower bound*, [`TransientPlan::lower_bound`]). The planner tries several greedy
//! heuristics and keeps the best (see [`plan`]); on the sample frame graphs of [`graphs`] it
//! is within a few percent of the bound and never above TFLite's greedy-by-size planner.
//!
//! # Aliasing barriers
//!
//! When a resource takes over memory that another used earlier in the frame, the GPU must
//! finish with the old one before the new one is written (a write-after-read or
//! write-after-write hazard on the same bytes), and an image starting its life in aliased
//! memory must be transitioned from `VK_IMAGE_LAYOUT_UNDEFINED`: its contents are garbage.
//! [`TransientPlan::takes_over_from`] lists exactly the resources each resource needs such a
//! barrier against.

mod aliasing;
mod driver;
pub mod graphs;
mod groups;
mod pack;
mod plan;
mod reuse;
#[cfg(test)]
mod tests;

pub use self::driver::{
    record_aliasing_barriers, StageAccess, TransientError, TransientHandle, TransientMemory,
    TransientMemoryCreateInfo, TransientUse,
};
pub use self::plan::{
    plan, plan_greedy_by_size, Placement, PlanError, PlanInfo, PlannedMemory, TransientPlan,
    TransientResource,
};
pub use self::reuse::TransientPlanner;
