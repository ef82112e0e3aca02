//! The request vocabulary: what a resource needs from its memory
//! ([`AllocationRequirements`]) and what the user intends with an allocation
//! ([`AllocationCreateInfo`]).

use super::config::{check_priority, DebugOptions};
use super::error::AllocationError;
use super::intent::ResourceUsage;
use super::memory_type::MemoryUsage;
use super::placement::MemoryAllocatePreference;
use crate::allocation::AllocationMeta;
use crate::allocation::UserData;
use crate::device::{MemoryDevice, Resource};
use crate::layout::DeviceLayout;
use ash::vk;
use std::sync::Arc;

/// What the user intends with an allocation.
///
/// Build it with `..Default::default()`: new fields may be added.
#[derive(Clone, Debug)]
pub struct AllocationCreateInfo {
    /// Which kind of memory type to choose. The default value is [`MemoryUsage::DeviceOnly`];
    /// [`MemoryUsage::Auto`] chooses from the resource and the host access.
    pub usage: MemoryUsage,
    /// What the memory is for, for the automatic usages (the simple ones ignore it).
    /// [`MemoryAllocator::create_buffer`](super::MemoryAllocator::create_buffer) and [`MemoryAllocator::create_image`](super::MemoryAllocator::create_image) fill it in from
    /// the resource's usage flags when it is left [`ResourceUsage::Unknown`]; give it when
    /// allocating for a resource with [`MemoryAllocator::allocate`](super::MemoryAllocator::allocate). The default value is
    /// `Unknown` (the GPU is assumed to use the memory directly).
    pub resource_usage: ResourceUsage,
    /// Dedicated-allocation policy. The default value is [`MemoryAllocatePreference::Auto`].
    pub allocate_preference: MemoryAllocatePreference,
    /// A name for statistics and leak reports. The default value is `None`.
    pub name: Option<Arc<str>>,
    /// Priority of a dedicated allocation's memory, 0.0 ..= 1.0 (anything else, NaN
    /// included, is an [`InvalidPriority`](AllocationError::InvalidPriority) error), passed
    /// to `VK_EXT_memory_priority` when it is enabled. The default value is `None` (the
    /// allocator's block priority).
    pub priority: Option<f32>,
    /// Refuse to allocate a new memory object that would take its heap past the heap's budget
    /// (VMA's `WITHIN_BUDGET`; see [`budget`](crate::budget)). The default value is `false`.
    pub within_budget: bool,
    /// Data of your choosing, shown (by its `Debug` text) in statistics snapshots, the JSON
    /// dump, the SVG memory map and the leak report, and readable from the allocation
    /// ([`MemoryAlloc::user_data`](super::super::MemoryAlloc::user_data)). The default value is `None`.
    pub user_data: Option<Arc<dyn UserData>>,
    /// The least alignment of the allocation's offset, on top of what the resource requires
    /// (VMA's `vmaCreateBufferWithAlignment`; a custom pool adds its own
    /// [`PoolCreateInfo::min_alignment`](super::PoolCreateInfo::min_alignment)). Raises the alignment only, not the size. The
    /// default value is 1 (the resource's alignment).
    pub min_alignment: crate::DeviceAlignment,
    /// Which free range to take when several fit (VMA's `STRATEGY_MIN_MEMORY` /
    /// `MIN_TIME` / `MIN_OFFSET` flags; see [`strategy`](crate::suballocator::strategy)). It
    /// wins over a custom pool's [`PoolCreateInfo::strategy`](super::PoolCreateInfo::strategy). The default value is
    /// [`AllocationStrategy::Default`](crate::AllocationStrategy::Default): the pool's
    /// strategy, else the allocator's (a quick good fit, a best fit for large requests).
    pub strategy: crate::AllocationStrategy,
    #[doc(hidden)]
    pub _ne: crate::non_exhaustive::NonExhaustive,
}

impl PartialEq for AllocationCreateInfo {
    /// User data compares by identity (the same `Arc`).
    fn eq(&self, other: &Self) -> bool {
        self.usage == other.usage
            && self.resource_usage == other.resource_usage
            && self.allocate_preference == other.allocate_preference
            && self.name == other.name
            && self.priority == other.priority
            && self.within_budget == other.within_budget
            && self.min_alignment == other.min_alignment
            && self.strategy == other.strategy
            && match (&self.user_data, &other.user_data) {
                (None, None) => true,
                (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                _ => false,
            }
    }
}

impl Default for AllocationCreateInfo {
    fn default() -> Self {
        Self {
            usage: MemoryUsage::DeviceOnly,
            resource_usage: ResourceUsage::Unknown,
            allocate_preference: MemoryAllocatePreference::Auto,
            name: None,
            priority: None,
            within_budget: false,
            user_data: None,
            min_alignment: crate::DeviceAlignment::MIN,
            strategy: crate::AllocationStrategy::Default,
            _ne: crate::non_exhaustive::NonExhaustive(()),
        }
    }
}

/// The old name of [`AllocationRequirements`] (it read like `vk::MemoryRequirements`).
#[deprecated(since = "0.2.0", note = "renamed to `AllocationRequirements`")]
pub type MemoryRequirements = AllocationRequirements;

/// What a resource needs from its memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AllocationRequirements {
    /// Size and alignment.
    pub layout: DeviceLayout,
    /// Bit `i` set when memory type `i` is allowed.
    pub memory_type_bits: u32,
    /// The driver would rather give the resource its own memory object.
    pub prefers_dedicated_allocation: bool,
    /// The driver insists on a memory object of its own.
    pub requires_dedicated_allocation: bool,
}

impl AllocationRequirements {
    /// Checks and converts the plain `VkMemoryRequirements`.
    #[inline]
    pub fn from_vk(requirements: vk::MemoryRequirements) -> Result<Self, AllocationError> {
        Ok(Self {
            layout: DeviceLayout::from_size_alignment(requirements.size, requirements.alignment)?,
            memory_type_bits: requirements.memory_type_bits,
            prefers_dedicated_allocation: false,
            requires_dedicated_allocation: false,
        })
    }

    /// Queries a buffer's requirements, including the dedicated-allocation hints when
    /// `vkGetBufferMemoryRequirements2` is available.
    ///
    /// # Safety
    ///
    /// `buffer` is a valid buffer created from `device`.
    pub unsafe fn for_buffer(
        device: &MemoryDevice,
        buffer: vk::Buffer,
    ) -> Result<Self, AllocationError> {
        // SAFETY: the caller's contract.
        let (reqs, dedicated) = unsafe { device.raw_requirements(Resource::Buffer(buffer)) };
        Self::with_hints(reqs, dedicated)
    }

    /// Queries a (non-disjoint) image's requirements, including the dedicated-allocation hints
    /// when `vkGetImageMemoryRequirements2` is available.
    ///
    /// # Safety
    ///
    /// `image` is a valid, non-disjoint image created from `device`.
    pub unsafe fn for_image(
        device: &MemoryDevice,
        image: vk::Image,
    ) -> Result<Self, AllocationError> {
        // SAFETY: the caller's contract.
        let (reqs, dedicated) = unsafe { device.raw_requirements(Resource::Image(image)) };
        Self::with_hints(reqs, dedicated)
    }

    pub(crate) fn with_hints(
        reqs: vk::MemoryRequirements,
        dedicated: vk::MemoryDedicatedRequirements<'_>,
    ) -> Result<Self, AllocationError> {
        let mut out = Self::from_vk(reqs)?;
        out.prefers_dedicated_allocation = dedicated.prefers_dedicated_allocation != 0;
        out.requires_dedicated_allocation = dedicated.requires_dedicated_allocation != 0;
        Ok(out)
    }
}

/// The metadata record of an allocation made with `create_info` under the debug options
/// `debug` (margins come later, with the allocation's place), or `None` when it has nothing
/// to record.
#[inline]
pub(crate) fn meta_of(
    create_info: &AllocationCreateInfo,
    debug: &DebugOptions,
) -> Option<Arc<AllocationMeta>> {
    if create_info.name.is_none() && create_info.user_data.is_none() && !debug.any() {
        return None;
    }
    // The allocation log costs a record per allocation only while someone listens: an
    // allocation made while trace level is off for the target is not logged, nor its free.
    let log = debug.log_allocations
        && log::log_enabled!(target: crate::corruption::ALLOCATIONS_LOG_TARGET, log::Level::Trace);
    AllocationMeta {
        name: create_info.name.clone(),
        user_data: create_info.user_data.clone(),
        backtrace: debug
            .capture_backtraces
            .then(|| Arc::new(std::backtrace::Backtrace::force_capture())),
        guard: None,
        fill: debug.fill_patterns,
        log,
        identity: None,
    }
    .shared()
}

/// Checks the parts of a create info that no memory type can cure.
pub(crate) fn check_create_info(create_info: &AllocationCreateInfo) -> Result<(), AllocationError> {
    match create_info.priority {
        Some(p) if check_priority(p).is_err() => Err(AllocationError::InvalidPriority(p)),
        _ => Ok(()),
    }
}
