//! Memory budget: how much of each heap the process may use, and how much it does.
//!
//! A heap's *size* is what the hardware has; its *budget* is what the operating system is
//! willing to give this process right now, which shrinks when other applications use the GPU.
//! Going past the budget does not fail at once: the driver starts paging memory out, and
//! frame times collapse. `VK_EXT_memory_budget` reports the budget and the process's current
//! usage per heap. Without it, the estimate follows VMA: usage is what this crate allocated
//! on the heap, and the budget is 80 % of the heap's size.
//!
//! # Staying within the budget
//!
//! [`AllocationCreateInfo::within_budget`](crate::AllocationCreateInfo::within_budget) (and
//! [`MemoryObjectCreateInfo::within_budget`](crate::device_memory::DeviceMemoryCreateInfo))
//! makes an allocation fail with [`BudgetError`] instead of creating a memory object that
//! would take its heap past the budget (VMA's `WITHIN_BUDGET` flag). Checking first and
//! allocating afterwards would let threads pass the check together and then the budget, so
//! every memory object's bytes are *reserved* on its heap before the driver is called, in one
//! atomic step with the check, and given back if the call fails: the sum of what is live and
//! in flight never exceeds the budget. With the extension, the usage it reports (which already
//! counts this crate's live memory objects) is corrected by the bytes reserved since: the
//! estimate is `usage + reserved now - this crate's usage at the query`, where the crate's
//! usage is the smaller of its values just before and just after the query (so that an object
//! made during the query is never taken for another process's memory).

use crate::device::MemoryDevice;
use crate::layout::DeviceSize;
use ash::vk;
use std::sync::atomic::Ordering;

/// Usage and budget of one heap.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HeapBudget {
    /// The heap's size.
    pub heap_size: DeviceSize,
    /// Bytes of the heap the process uses (the extension's figure, which counts every
    /// allocation of the process; otherwise this crate's own memory objects).
    pub usage: DeviceSize,
    /// Bytes of the heap the process may use.
    pub budget: DeviceSize,
    /// Bytes of the heap held by memory objects made through this crate.
    pub crate_usage: DeviceSize,
    /// Whether `usage` and `budget` come from `VK_EXT_memory_budget` (otherwise estimated).
    pub from_extension: bool,
}

/// A memory object would take its heap past the heap's budget.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "heap {heap} would exceed its budget: {usage} bytes used + {size} requested > {budget} budget"
)]
pub struct BudgetError {
    /// The heap index.
    pub heap: u32,
    /// The heap's usage (live and reserved) before the request.
    pub usage: DeviceSize,
    /// The requested size.
    pub size: DeviceSize,
    /// The heap's budget.
    pub budget: DeviceSize,
}

/// The budget every heap gets without the extension: 80 % of its size.
fn estimated_budget(heap_size: DeviceSize) -> DeviceSize {
    heap_size / 10 * 8
}

impl MemoryDevice {
    /// The usage and budget of every heap.
    pub fn heap_budgets(&self) -> Vec<HeapBudget> {
        let heaps = &self.memory_properties().memory_heaps;
        if !self.features().memory_budget {
            return heaps
                .iter()
                .enumerate()
                .map(|(i, h)| HeapBudget {
                    heap_size: h.size,
                    usage: self.heap_usage_by_crate(i as u32),
                    budget: estimated_budget(h.size),
                    crate_usage: self.heap_usage_by_crate(i as u32),
                    from_extension: false,
                })
                .collect();
        }
        let budget = self.query_budget();
        heaps
            .iter()
            .enumerate()
            .map(|(i, h)| HeapBudget {
                heap_size: h.size,
                usage: budget.heap_usage[i],
                budget: capped(self, i as u32, budget.heap_budget[i]),
                crate_usage: self.heap_usage_by_crate(i as u32),
                from_extension: true,
            })
            .collect()
    }

    /// `VkPhysicalDeviceMemoryBudgetPropertiesEXT`, through the core or the KHR entry point.
    fn query_budget(&self) -> vk::PhysicalDeviceMemoryBudgetPropertiesEXT<'static> {
        let mut budget = vk::PhysicalDeviceMemoryBudgetPropertiesEXT::default();
        let mut props = vk::PhysicalDeviceMemoryProperties2::default().push_next(&mut budget);
        // SAFETY: `VK_EXT_memory_budget` is enabled (the caller checked the claimed feature,
        // `MemoryDevice::new` contract), so the chained structure is allowed.
        unsafe { self.memory_properties2(&mut props) };
        let _ = props;
        vk::PhysicalDeviceMemoryBudgetPropertiesEXT {
            heap_budget: budget.heap_budget,
            heap_usage: budget.heap_usage,
            ..Default::default()
        }
    }
}

/// The extension's budget of `heap`, at most the heap's size limit when it has one.
fn capped(device: &MemoryDevice, heap: u32, budget: DeviceSize) -> DeviceSize {
    if device.is_heap_size_limited(heap) {
        budget.min(heap_size(device, heap))
    } else {
        budget
    }
}

/// Reserves `size` bytes of `heap` for a memory object about to be allocated; with `check`,
/// fails instead if live plus reserved bytes would pass the heap's budget. A heap with a size
/// limit never has more than the limit reserved, checked or not. The check and the
/// reservation are one atomic step.
pub(crate) fn reserve(
    device: &MemoryDevice,
    heap: u32,
    size: DeviceSize,
    check: bool,
) -> Result<(), ReserveError> {
    let reserved = device.heap_reserved(heap);
    // A heap size limit is a hard cap on what this crate holds of the heap.
    let cap = if device.is_heap_size_limited(heap) {
        heap_size(device, heap)
    } else {
        DeviceSize::MAX
    };
    let (others, budget) = if check {
        others_and_budget(device, heap)
    } else {
        (0, DeviceSize::MAX)
    };
    reserved
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |r| {
            let after = r.checked_add(size)?;
            let fits_budget = others.saturating_add(after) <= budget;
            (after <= cap && fits_budget).then_some(after)
        })
        .map(|_| ())
        .map_err(|r| {
            if r.saturating_add(size) > cap {
                ReserveError::HeapSizeLimit
            } else {
                ReserveError::Budget(BudgetError {
                    heap,
                    usage: others.saturating_add(r),
                    size,
                    budget,
                })
            }
        })
}

/// Why [`reserve`] refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ReserveError {
    /// The heap's budget would be passed (only checked when asked).
    Budget(BudgetError),
    /// The heap's size limit would be passed: as out of device memory.
    HeapSizeLimit,
}

/// Heap `heap`'s size (its limit, when it has one).
fn heap_size(device: &MemoryDevice, heap: u32) -> DeviceSize {
    device
        .memory_properties()
        .memory_heaps
        .get(heap as usize)
        .map_or(0, |h| h.size)
}

/// What the process uses of `heap` besides this crate's reservations, and the heap's budget:
/// from `VK_EXT_memory_budget` when it is enabled (one query), otherwise nothing and 80 % of
/// the heap's size.
fn others_and_budget(device: &MemoryDevice, heap: u32) -> (DeviceSize, DeviceSize) {
    let heap_size = device
        .memory_properties()
        .memory_heaps
        .get(heap as usize)
        .map_or(0, |h| h.size);
    if device.features().memory_budget {
        // The crate's usage is read before and after the query, and the smaller one taken:
        // a memory object made (or freed) around the query may or may not be in the usage
        // it reports, and taking the smaller figure never counts it as someone else's.
        let before = device.heap_usage_by_crate(heap);
        let b = device.query_budget();
        let crate_usage = before.min(device.heap_usage_by_crate(heap));
        let usage = b.heap_usage.get(heap as usize).copied().unwrap_or(0);
        let budget = b.heap_budget.get(heap as usize).copied().unwrap_or(0);
        (
            usage.saturating_sub(crate_usage),
            capped(device, heap, budget),
        )
    } else {
        (0, estimated_budget(heap_size))
    }
}

/// The usage of `heap` (the process's other memory and this crate's live and reserved bytes)
/// and its budget, as [`reserve`] checks them.
pub(crate) fn heap_load(device: &MemoryDevice, heap: u32) -> (DeviceSize, DeviceSize) {
    let (others, budget) = others_and_budget(device, heap);
    let reserved = device.heap_reserved(heap).load(Ordering::Acquire);
    (others.saturating_add(reserved), budget)
}

/// Gives back a reservation of [`reserve`] whose memory object was not made.
pub(crate) fn release(device: &MemoryDevice, heap: u32, size: DeviceSize) {
    device.heap_reserved(heap).fetch_sub(size, Ordering::AcqRel);
}
