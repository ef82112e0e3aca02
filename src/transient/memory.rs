//! The memory of plans on the device, kept from frame to frame, and resources bound at their
//! planned offsets.
//!
//! See the [module docs](super#memory-on-the-device).

use super::plan::{PlanInfo, TransientPlan};
use crate::allocation::{MemoryAccessError, MemoryAlloc};
use crate::allocator::{AllocationCreateInfo, AllocationError, MemoryAllocator};
use crate::device::{MemoryDevice, Resource};
use crate::layout::DeviceSize;
use ash::vk;
use std::sync::Arc;

/// How a [`TransientMemory`] keeps its memory.
///
/// Build it with `..Default::default()`: new fields may be added.
#[derive(Clone, Debug, PartialEq)]
pub struct TransientMemoryCreateInfo {
    /// After how many consecutive [`prepare`](TransientMemory::prepare) calls a memory object
    /// that no plan used is released, and one more than twice as large as the plans needed is
    /// replaced by one of the needed size. The default value is 60 (a second at 60 frames per
    /// second).
    pub release_after: u32,
    /// The name of the memory objects in statistics and leak reports. The default value is
    /// `"transient memory"`.
    pub name: Arc<str>,
    #[doc(hidden)]
    pub _ne: crate::NonExhaustive,
}

impl Default for TransientMemoryCreateInfo {
    fn default() -> Self {
        Self {
            release_after: 60,
            name: Arc::from("transient memory"),
            _ne: crate::NonExhaustive(()),
        }
    }
}

/// Why binding a resource or recording barriers failed.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum TransientError {
    /// Allocating a plan's memory failed.
    #[error("allocating transient memory failed: {0}")]
    Allocation(#[from] AllocationError),
    /// Binding failed.
    #[error("binding a transient resource failed: {0}")]
    Bind(#[from] MemoryAccessError),
    /// The resource index is not one of the plan's.
    #[error("resource {resource} is not in the plan ({count} resources)")]
    NoSuchResource {
        /// The index given.
        resource: usize,
        /// The plan's resource count.
        count: usize,
    },
    /// The plan's memory objects are not those of the plan last given to
    /// [`TransientMemory::prepare`].
    #[error("the plan's memory was not prepared: call prepare with this plan first")]
    NotPrepared,
    /// The resource needs more memory than the plan gave it: bound in its place, it would
    /// overlap the resources placed after it. Its requirements are not the ones it was
    /// planned with (for example a plan made from estimated sizes).
    #[error("resource {resource} needs {required} bytes, the plan gave it {planned}")]
    LargerThanPlanned {
        /// The resource index.
        resource: usize,
        /// The size it was planned with.
        planned: DeviceSize,
        /// The size its memory requirements ask for.
        required: DeviceSize,
    },
    /// The list of uses does not have one entry per resource of the plan.
    #[error("{uses} uses given for a plan of {resources} resources")]
    UseCountMismatch {
        /// The number of uses given.
        uses: usize,
        /// The plan's resource count.
        resources: usize,
    },
}

#[derive(Debug)]
struct Kept {
    alloc: MemoryAlloc,
    memory_type_index: u32,
    /// Consecutive plans that did not use it.
    idle: u32,
    /// Consecutive plans that needed less than half of it.
    oversized: u32,
}

/// The memory of transient plans, kept from frame to frame (see the [module docs](crate::transient#memory-on-the-device)).
#[derive(Debug)]
pub struct TransientMemory<A: MemoryAllocator> {
    allocator: Arc<A>,
    info: TransientMemoryCreateInfo,
    kept: Vec<Kept>,
    /// For each memory object of the prepared plan, its index in `kept`.
    prepared: Vec<usize>,
    /// The memory objects of the prepared plan, as `(type, size)`, to recognize it.
    prepared_for: Vec<(u32, DeviceSize)>,
}

impl<A: MemoryAllocator> TransientMemory<A> {
    /// Memory of plans, allocated from `allocator`.
    pub fn new(allocator: Arc<A>, info: TransientMemoryCreateInfo) -> Self {
        Self {
            allocator,
            info,
            kept: Vec::new(),
            prepared: Vec::new(),
            prepared_for: Vec::new(),
        }
    }

    /// Makes sure the memory of `plan` exists: reuses each kept memory object of the right
    /// type that is large enough, allocates the others, and releases or shrinks unused and
    /// oversized ones (see the [module docs](crate::transient#from-frame-to-frame)). Returns `true` when a
    /// memory object was allocated, replaced or released: resources bound before the call
    /// must then be created and bound again.
    ///
    /// All or nothing: when an allocation fails, what the call allocated is freed again and
    /// the kept memory stays as it was, with the last plan prepared still the one bound
    /// against. Replaced memory objects are therefore released after their replacements
    /// were made.
    ///
    /// # Safety
    ///
    /// The device no longer uses any resource bound through this `TransientMemory` before the
    /// call (the frame that used them has finished), and when the call returns `true` (or an
    /// error) no such resource is used again.
    pub unsafe fn prepare(&mut self, plan: &TransientPlan) -> Result<bool, TransientError> {
        let mut changed = false;
        let mut taken = vec![false; self.kept.len()];
        let mut prepared = Vec::with_capacity(plan.memory().len());
        // What the plan changes in the kept memory is applied only once every memory object
        // it needs was allocated: a failure leaves the kept memory as it was, and the last
        // prepared plan usable (all or nothing, as `allocate_pages`). Replaced objects are
        // therefore released after their replacements are made.
        let mut updates: Vec<(usize, u32, Option<MemoryAlloc>)> = Vec::new();
        let mut fresh: Vec<Kept> = Vec::new();
        for planned in plan.memory() {
            let found = (0..self.kept.len()).find(|&k| {
                !taken[k] && self.kept[k].memory_type_index == planned.memory_type_index
            });
            let k = match found {
                Some(k) => {
                    let kept = &self.kept[k];
                    let size = kept.alloc.size();
                    let mut oversized = if size / 2 > planned.size {
                        kept.oversized.saturating_add(1)
                    } else {
                        0
                    };
                    let mut replacement = None;
                    if size < planned.size || oversized > self.info.release_after {
                        // On failure `updates` and `fresh` are dropped: what this call
                        // allocated so far is freed, and nothing kept was touched.
                        replacement = Some(self.allocate(planned.memory_type_index, planned.size)?);
                        oversized = 0;
                    }
                    updates.push((k, oversized, replacement));
                    taken[k] = true;
                    k
                }
                None => {
                    let alloc = self.allocate(planned.memory_type_index, planned.size)?;
                    fresh.push(Kept {
                        alloc,
                        memory_type_index: planned.memory_type_index,
                        idle: 0,
                        oversized: 0,
                    });
                    self.kept.len() + fresh.len() - 1
                }
            };
            prepared.push(k);
        }
        // Every memory object was made: the plan takes over.
        for (k, oversized, replacement) in updates {
            let kept = &mut self.kept[k];
            kept.idle = 0;
            kept.oversized = oversized;
            if let Some(alloc) = replacement {
                kept.alloc = alloc;
                changed = true;
            }
        }
        changed |= !fresh.is_empty();
        taken.resize(self.kept.len() + fresh.len(), true);
        self.kept.extend(fresh);
        // Release what no plan used for long enough; indices of `prepared` are remapped.
        let mut remap: Vec<usize> = Vec::with_capacity(self.kept.len());
        let mut kept = Vec::with_capacity(self.kept.len());
        for (k, mut entry) in std::mem::take(&mut self.kept).into_iter().enumerate() {
            if !taken[k] {
                entry.idle = entry.idle.saturating_add(1);
                if entry.idle > self.info.release_after {
                    changed = true;
                    remap.push(usize::MAX);
                    continue;
                }
            }
            remap.push(kept.len());
            kept.push(entry);
        }
        self.kept = kept;
        self.prepared = prepared.into_iter().map(|k| remap[k]).collect();
        self.prepared_for = plan
            .memory()
            .iter()
            .map(|m| (m.memory_type_index, m.size))
            .collect();
        Ok(changed)
    }

    fn allocate(
        &self,
        memory_type_index: u32,
        size: DeviceSize,
    ) -> Result<MemoryAlloc, AllocationError> {
        let create_info = AllocationCreateInfo {
            name: Some(self.info.name.clone()),
            ..Default::default()
        };
        self.allocator
            .allocate_dedicated(memory_type_index, size, None, &create_info)
    }

    /// The memory objects kept now, as `(memory type, size)`.
    pub fn kept_memory(&self) -> Vec<(u32, DeviceSize)> {
        self.kept
            .iter()
            .map(|k| (k.memory_type_index, k.alloc.size()))
            .collect()
    }

    /// Releases every kept memory object that the last prepared plan does not use.
    ///
    /// # Safety
    ///
    /// As for [`prepare`](Self::prepare) returning `true`, for the resources of earlier plans.
    pub unsafe fn trim(&mut self) {
        let mut keep = vec![false; self.kept.len()];
        for &k in &self.prepared {
            keep[k] = true;
        }
        let mut remap = Vec::with_capacity(self.kept.len());
        let mut n = 0;
        for &used in &keep {
            remap.push(n);
            n += usize::from(used);
        }
        let mut k = 0;
        self.kept.retain(|_| {
            k += 1;
            keep[k - 1]
        });
        for p in &mut self.prepared {
            *p = remap[*p];
        }
    }

    /// The memory and offset of a resource of the prepared plan.
    fn place(
        &self,
        plan: &TransientPlan,
        resource: usize,
    ) -> Result<(&MemoryAlloc, DeviceSize), TransientError> {
        let same_plan = plan.memory().len() == self.prepared_for.len()
            && plan
                .memory()
                .iter()
                .zip(&self.prepared_for)
                .all(|(m, &(t, s))| m.memory_type_index == t && m.size == s);
        if !same_plan {
            return Err(TransientError::NotPrepared);
        }
        let placement = plan
            .placements()
            .get(resource)
            .ok_or(TransientError::NoSuchResource {
                resource,
                count: plan.placements().len(),
            })?;
        let kept = &self.kept[self.prepared[placement.memory]];
        Ok((&kept.alloc, placement.offset))
    }

    /// Checks that `handle` needs no more bytes than `plan` gave resource `resource` (an
    /// index the caller checked).
    ///
    /// # Safety
    ///
    /// `handle` is a valid buffer or non-disjoint image of the allocator's device.
    unsafe fn check_planned_size(
        &self,
        plan: &TransientPlan,
        resource: usize,
        handle: Resource,
    ) -> Result<(), TransientError> {
        // SAFETY: the caller's contract.
        let (requirements, _) = unsafe { self.allocator.device().raw_requirements(handle) };
        let planned = plan.sizes.get(resource).copied().unwrap_or(0);
        if requirements.size > planned {
            return Err(TransientError::LargerThanPlanned {
                resource,
                planned,
                required: requirements.size,
            });
        }
        Ok(())
    }

    /// Binds `buffer` as resource `resource` of `plan`, at its offset
    /// ([`MemoryAlloc::bind_buffer_at`], which checks the buffer's size, alignment and memory
    /// types against the memory and returns a [`TransientError::Bind`] on a mismatch). A buffer
    /// that needs more bytes than the plan gave the resource is a
    /// [`TransientError::LargerThanPlanned`]: bound, it would overlap its neighbours.
    ///
    /// # Safety
    ///
    /// `buffer` is a valid buffer of the allocator's device with no memory bound, whose memory
    /// requirements are the ones `resource` was planned with; it is destroyed before this
    /// memory is released (see [`prepare`](Self::prepare)); its first use waits for the last
    /// use of the resources it takes over ([`record_aliasing_barriers`](super::record_aliasing_barriers)
    /// records those barriers); when it was created with `SHADER_DEVICE_ADDRESS` usage on a
    /// device with the `bufferDeviceAddress` feature, the allocator allocates with device
    /// addresses (its `device_address` setting, on by default), as for
    /// [`MemoryAlloc::bind_buffer_at`] (a buffer handle does not tell its usage, so this is
    /// not checked).
    pub unsafe fn bind_buffer(
        &self,
        plan: &TransientPlan,
        resource: usize,
        buffer: vk::Buffer,
    ) -> Result<(), TransientError> {
        let (alloc, offset) = self.place(plan, resource)?;
        // SAFETY: the caller's contract: a valid buffer of the allocator's device.
        unsafe { self.check_planned_size(plan, resource, Resource::Buffer(buffer)) }?;
        // SAFETY: the caller's contract; the plan puts the resource inside the memory object,
        // and the bind checks it again against the buffer's requirements.
        Ok(unsafe { alloc.bind_buffer_at(buffer, offset) }?)
    }

    /// Binds `image` as resource `resource` of `plan`, at its offset
    /// ([`MemoryAlloc::bind_image_at`]), with the checks of
    /// [`bind_buffer`](Self::bind_buffer).
    ///
    /// # Safety
    ///
    /// As for [`bind_buffer`](Self::bind_buffer), for a non-disjoint image.
    pub unsafe fn bind_image(
        &self,
        plan: &TransientPlan,
        resource: usize,
        image: vk::Image,
    ) -> Result<(), TransientError> {
        let (alloc, offset) = self.place(plan, resource)?;
        // SAFETY: the caller's contract: a valid, non-disjoint image of the allocator's device.
        unsafe { self.check_planned_size(plan, resource, Resource::Image(image)) }?;
        // SAFETY: the caller's contract; the plan puts the resource inside the memory object,
        // and the bind checks it again against the image's requirements (an image's first use
        // transitions it from UNDEFINED: `record_aliasing_barriers` does).
        Ok(unsafe { alloc.bind_image_at(image, offset) }?)
    }
}

impl PlanInfo {
    /// The plan info for `device`: its `bufferImageGranularity`, and the device-local memory
    /// types that are not lazily allocated, protected, AMD device-coherent or -uncached, or
    /// RDMA-capable (or, on a device with none, every type that is none of those), preferring those that are not host-visible (as
    /// [`MemoryUsage::DeviceOnly`](crate::MemoryUsage::DeviceOnly) does: a small BAR window
    /// is not taken while plain VRAM accepts the resources).
    pub fn for_device(device: &MemoryDevice) -> Self {
        let properties = device.memory_properties();
        let excluded = vk::MemoryPropertyFlags::LAZILY_ALLOCATED
            | vk::MemoryPropertyFlags::PROTECTED
            | vk::MemoryPropertyFlags::DEVICE_COHERENT_AMD
            | vk::MemoryPropertyFlags::DEVICE_UNCACHED_AMD
            | vk::MemoryPropertyFlags::RDMA_CAPABLE_NV;
        let mask = |wanted: vk::MemoryPropertyFlags| {
            (0..32u32)
                .filter(|&t| {
                    properties.memory_type(t).is_some_and(|m| {
                        m.property_flags.contains(wanted) && !m.property_flags.intersects(excluded)
                    })
                })
                .fold(0u32, |bits, t| bits | 1 << t)
        };
        let local = mask(vk::MemoryPropertyFlags::DEVICE_LOCAL);
        let memory_types = if local != 0 {
            local
        } else {
            mask(vk::MemoryPropertyFlags::empty())
        };
        let host_visible = mask(vk::MemoryPropertyFlags::HOST_VISIBLE);
        Self {
            buffer_image_granularity: device.buffer_image_granularity(),
            memory_types,
            preferred_memory_types: memory_types & !host_visible,
            ..Default::default()
        }
    }
}
