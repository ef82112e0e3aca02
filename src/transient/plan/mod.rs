//! The planner's input and output, and [`plan`], which turns resources and their lifetimes into
//! memory objects, offsets and aliasing pairs. Pure: no Vulkan calls.

#![deny(unsafe_code)]

mod aliasing;
pub mod graphs;
mod groups;
mod pack;
mod reuse;
#[cfg(test)]
mod tests;

pub use self::reuse::TransientPlanner;

use crate::layout::{DeviceAlignment, DeviceLayout, DeviceSize};
use crate::suballocator::AllocationType;

/// One transient resource of a frame: what its memory must satisfy and in which passes it is
/// alive.
///
/// Passes are numbered in the frame's execution order. A resource is alive from the start of
/// its first pass to the end of its last one (both included): two resources whose intervals
/// share a pass are alive together and never share memory.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TransientResource {
    /// Size and alignment, from `vkGet*MemoryRequirements`.
    pub layout: DeviceLayout,
    /// The memory types the resource may live in (bit `i` for type `i`).
    pub memory_type_bits: u32,
    /// [`Linear`](AllocationType::Linear) for buffers and linear images,
    /// [`NonLinear`](AllocationType::NonLinear) for optimal images;
    /// [`Unknown`](AllocationType::Unknown) conflicts with both.
    pub allocation_type: AllocationType,
    /// The first pass that uses the resource.
    pub first_pass: u32,
    /// The last pass that uses the resource (at least `first_pass`).
    pub last_pass: u32,
}

impl TransientResource {
    /// A resource needing `layout` in one of `memory_type_bits`, alive from `first_pass` to
    /// `last_pass` included. [`plan`] rejects `last_pass < first_pass`.
    pub const fn new(
        layout: DeviceLayout,
        memory_type_bits: u32,
        allocation_type: AllocationType,
        first_pass: u32,
        last_pass: u32,
    ) -> Self {
        Self {
            layout,
            memory_type_bits,
            allocation_type,
            first_pass,
            last_pass,
        }
    }

    /// Whether the two resources are alive in a common pass.
    #[inline]
    pub const fn alive_together(&self, other: &Self) -> bool {
        self.first_pass <= other.last_pass && other.first_pass <= self.last_pass
    }

    /// The size rounded up to the alignment: the least memory the resource takes in any plan
    /// when others are alive beside it.
    #[inline]
    pub const fn aligned_size(&self) -> DeviceSize {
        self.layout.pad_to_alignment().size()
    }
}

/// What the planner needs to know about the device.
///
/// Build it with `..Default::default()`: new fields may be added.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlanInfo {
    /// The device's `bufferImageGranularity`. The default value is 1 (no constraint).
    pub buffer_image_granularity: DeviceAlignment,
    /// The memory types the plan may use, bit `i` for type `i`, typically the device-local
    /// ones; each resource's `memory_type_bits` is narrowed to them. The default value is
    /// `u32::MAX` (any type).
    pub memory_types: u32,
    /// Among [`memory_types`](Self::memory_types), the ones to use whenever a resource
    /// accepts one of them, bit `i` for type `i`: a group of resources goes to another
    /// allowed type only when none of them accepts a preferred one. For device-local
    /// transient memory these are the types that are not host-visible, so that a small BAR
    /// window (`DEVICE_LOCAL | HOST_VISIBLE`) is never taken while plain VRAM would do, as
    /// [`MemoryUsage::DeviceOnly`](crate::MemoryUsage::DeviceOnly) avoids it. The default
    /// value is `u32::MAX` (no preference).
    pub preferred_memory_types: u32,
    #[doc(hidden)]
    pub _ne: crate::non_exhaustive::NonExhaustive,
}

impl Default for PlanInfo {
    fn default() -> Self {
        Self {
            buffer_image_granularity: DeviceAlignment::MIN,
            memory_types: u32::MAX,
            preferred_memory_types: u32::MAX,
            _ne: crate::non_exhaustive::NonExhaustive(()),
        }
    }
}

/// Why a plan could not be made.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PlanError {
    /// A resource's last pass comes before its first.
    #[error("resource {resource}: last pass {last_pass} is before first pass {first_pass}")]
    InvalidLifetime {
        /// Index of the resource.
        resource: usize,
        /// Its first pass.
        first_pass: u32,
        /// Its last pass.
        last_pass: u32,
    },
    /// None of the resource's memory types is among [`PlanInfo::memory_types`].
    #[error("resource {resource}: no allowed memory type (bits {memory_type_bits:#x})")]
    NoMemoryType {
        /// Index of the resource.
        resource: usize,
        /// Its `memory_type_bits`.
        memory_type_bits: u32,
    },
    /// The sizes add up to more than a device size can express.
    #[error("the resources' sizes add up to more than 2^63 bytes")]
    TooLarge,
}

/// One memory object the plan needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PlannedMemory {
    /// Its memory type.
    pub memory_type_index: u32,
    /// Its size in bytes: the end of the highest resource placed in it.
    pub size: DeviceSize,
    /// The largest sum of aligned sizes of its resources alive in one pass (the lower
    /// bound): no plan can use less memory for them, but for the padding of the highest
    /// resource, which needs none after its end (`size` may be below the bound by less than
    /// that resource's alignment).
    pub lower_bound: DeviceSize,
    /// The sum of its resources' aligned sizes: the memory they would take with no aliasing,
    /// leaving out the gaps of `bufferImageGranularity` pages between linear and optimal
    /// neighbours (a plan can exceed it by those, and by alignment padding).
    pub unaliased_size: DeviceSize,
}

/// Where one resource goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Placement {
    /// Index of its memory object in [`TransientPlan::memory`].
    pub memory: usize,
    /// Its offset in that memory object, a multiple of its alignment.
    pub offset: DeviceSize,
}

/// A plan: the memory objects to make, where each resource goes, and which earlier resources'
/// memory each one takes over.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransientPlan {
    pub(crate) memory: Vec<PlannedMemory>,
    pub(crate) placements: Vec<Placement>,
    /// `takes_over[takes_over_start[r]..takes_over_start[r + 1]]`, sorted.
    pub(crate) takes_over: Vec<usize>,
    pub(crate) takes_over_start: Vec<usize>,
    /// Each resource's first pass.
    pub(crate) first_passes: Vec<u32>,
    /// Each resource's planned size: a resource bound in its place may need no more.
    pub(crate) sizes: Vec<DeviceSize>,
}

impl TransientPlan {
    /// The memory objects to allocate.
    pub fn memory(&self) -> &[PlannedMemory] {
        &self.memory
    }

    /// Where each resource goes, in the order of the planner's input.
    pub fn placements(&self) -> &[Placement] {
        &self.placements
    }

    /// The earlier resources whose memory `resource` takes over, sorted: each one that was the
    /// last, before `resource`'s first pass, to be alive in some byte of `resource`'s range,
    /// or, in the other bytes of its first and last `bufferImageGranularity` pages, the last
    /// of a kind that conflicts with it (linear against optimal: Vulkan counts them as
    /// aliasing when they share a page).
    /// Between each of them and `resource` an aliasing barrier is needed (for an image, its
    /// layout transition from `UNDEFINED`). Resources further back in the same bytes are not
    /// listed: the barrier before the listed one already orders them. Empty for a resource
    /// whose memory nothing used before it, and for an index out of range.
    pub fn takes_over_from(&self, resource: usize) -> &[usize] {
        // `usize::MAX` is out of range too: its end index would overflow.
        let end = resource
            .checked_add(1)
            .and_then(|next| self.takes_over_start.get(next));
        match (self.takes_over_start.get(resource), end) {
            (Some(&start), Some(&end)) => &self.takes_over[start..end],
            _ => &[],
        }
    }

    /// The resources whose first pass is `pass`, in input order: those whose aliasing
    /// barriers go before the pass.
    pub fn resources_starting_in(&self, pass: u32) -> impl Iterator<Item = usize> + '_ {
        self.first_passes
            .iter()
            .enumerate()
            .filter(move |&(_, &first)| first == pass)
            .map(|(r, _)| r)
    }

    /// Every aliasing pair `(earlier, later)`, sorted by `later` then `earlier`.
    pub fn aliasing_pairs(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        (0..self.placements.len())
            .flat_map(move |r| self.takes_over_from(r).iter().map(move |&q| (q, r)))
    }

    /// The bytes of all memory objects.
    pub fn total_size(&self) -> DeviceSize {
        self.memory.iter().map(|m| m.size).sum()
    }

    /// The sum of the memory objects' lower bounds.
    pub fn lower_bound(&self) -> DeviceSize {
        self.memory.iter().map(|m| m.lower_bound).sum()
    }

    /// The bytes the resources would take with no aliasing (each its own aligned range; see
    /// [`PlannedMemory::unaliased_size`] for what it leaves out).
    pub fn unaliased_size(&self) -> DeviceSize {
        self.memory.iter().map(|m| m.unaliased_size).sum()
    }
}

/// Which orderings and fits to try (see [`pack`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Strategy {
    /// Every heuristic, the smallest result kept.
    Best,
    /// Greedy by size with best fit only: TFLite's offset planner, the baseline.
    GreedyBySize,
}

/// Plans memory for `resources`: groups them by memory type, places each in its group's
/// memory object so that no two resources alive together overlap (honouring alignment, and
/// `bufferImageGranularity` between linear and optimal resources alive together), and lists
/// the aliasing pairs.
///
/// # Memory types
///
/// Putting two groups of resources in one memory object never takes more memory than keeping
/// them apart (one can always be stacked on the other), so the planner makes as few groups as
/// it can: while resources are left, it takes the allowed memory type that the most bytes
/// (sum of aligned sizes) of the remaining resources accept, lowest index on a tie (Vulkan
/// lists cheaper types first), and gives it every remaining resource that accepts it. Types of
/// [`PlanInfo::preferred_memory_types`] come first: another type is taken only when no
/// remaining resource accepts a preferred one. When
/// all resources share a type, which is the case for device-local resources on every known
/// GPU, that is one memory object.
///
/// # Placing
///
/// Four greedy heuristics run (by size with best fit, which is TFLite's greedy by size, and
/// with first fit; by the fullest pass a resource is alive in, with best fit; by size ×
/// lifetime, with first fit) and the smallest result is kept; the
/// search stops early when a heuristic reaches the lower bound. One of them is the
/// greedy-by-size baseline, so the plan is never larger than that baseline.
pub fn plan(resources: &[TransientResource], info: &PlanInfo) -> Result<TransientPlan, PlanError> {
    plan_with(resources, info, Strategy::Best)
}

/// The baseline of the bench: greedy by size with best fit, the offset planner of TFLite.
#[doc(hidden)]
pub fn plan_greedy_by_size(
    resources: &[TransientResource],
    info: &PlanInfo,
) -> Result<TransientPlan, PlanError> {
    plan_with(resources, info, Strategy::GreedyBySize)
}

pub(crate) fn plan_with(
    resources: &[TransientResource],
    info: &PlanInfo,
    strategy: Strategy,
) -> Result<TransientPlan, PlanError> {
    validate(resources, info)?;
    let granularity = info.buffer_image_granularity;
    let groups = groups::by_memory_type(
        resources,
        info.memory_types,
        info.memory_types & info.preferred_memory_types,
    );
    let mut memory = Vec::with_capacity(groups.len());
    let mut placements = vec![
        Placement {
            memory: 0,
            offset: 0
        };
        resources.len()
    ];
    let mut packer = pack::Packer::default();
    for (memory_index, group) in groups.iter().enumerate() {
        let lower_bound = groups::lower_bound(resources, &group.members);
        let unaliased_size = group
            .members
            .iter()
            .map(|&r| resources[r].aligned_size())
            .sum();
        let (offsets, size) = packer.pack(
            resources,
            &group.members,
            granularity,
            lower_bound,
            strategy,
        );
        for (&r, &offset) in group.members.iter().zip(&offsets) {
            placements[r] = Placement {
                memory: memory_index,
                offset,
            };
        }
        memory.push(PlannedMemory {
            memory_type_index: group.memory_type_index,
            size,
            lower_bound,
            unaliased_size,
        });
    }
    let (takes_over, takes_over_start) =
        aliasing::takes_over(resources, &placements, memory.len(), granularity);
    Ok(TransientPlan {
        memory,
        placements,
        takes_over,
        takes_over_start,
        first_passes: resources.iter().map(|r| r.first_pass).collect(),
        sizes: resources.iter().map(|r| r.layout.size()).collect(),
    })
}

/// Checks lifetimes and memory types, and that no offset the planner can compute overflows:
/// every offset is at most the sum, over the resources, of size, alignment and two
/// granularity pages.
fn validate(resources: &[TransientResource], info: &PlanInfo) -> Result<(), PlanError> {
    let granularity = info.buffer_image_granularity.as_devicesize();
    let mut bound: DeviceSize = 0;
    for (resource, r) in resources.iter().enumerate() {
        if r.last_pass < r.first_pass {
            return Err(PlanError::InvalidLifetime {
                resource,
                first_pass: r.first_pass,
                last_pass: r.last_pass,
            });
        }
        if r.memory_type_bits & info.memory_types == 0 {
            return Err(PlanError::NoMemoryType {
                resource,
                memory_type_bits: r.memory_type_bits,
            });
        }
        bound = [
            r.aligned_size(),
            r.layout.alignment().as_devicesize(),
            granularity,
            granularity,
        ]
        .iter()
        .try_fold(bound, |sum, &x| sum.checked_add(x))
        .ok_or(PlanError::TooLarge)?;
    }
    if bound <= DeviceLayout::MAX_SIZE {
        Ok(())
    } else {
        Err(PlanError::TooLarge)
    }
}
