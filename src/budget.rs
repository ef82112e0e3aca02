//! Memory budget: how much of each heap the process may use, and how much it does.
//!
//! A heap's *size* is what the hardware has; its *budget* is what the operating system is
//! willing to give this process right now, which shrinks when other applications use the GPU.
//! Going past the budget does not fail at once: the driver starts paging memory out, and
//! frame times collapse. `VK_EXT_memory_budget` reports the budget and the process's current
//! usage per heap. Without it, the estimate follows VMA: usage is what this crate allocated
//! on the heap, and the budget is 80 % of the heap's size.
//!
//! [`AllocationCreateInfo::within_budget`](crate::AllocationCreateInfo::within_budget) makes an
//! allocation fail with [`AllocationError::BudgetExceeded`] instead of creating a memory
//! object that would take its heap past the budget (VMA's `WITHIN_BUDGET` flag).

use crate::allocator::AllocationError;
use crate::device::Device;
use crate::layout::DeviceSize;
use ash::vk;

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

impl Device {
    /// The usage and budget of every heap.
    pub fn heap_budgets(&self) -> Vec<HeapBudget> {
        let heaps = &self.memory_properties().memory_heaps;
        let estimated = |i: usize, h: &vk::MemoryHeap| HeapBudget {
            heap_size: h.size,
            usage: self.heap_usage_by_crate(i as u32),
            budget: h.size / 10 * 8,
            crate_usage: self.heap_usage_by_crate(i as u32),
            from_extension: false,
        };
        if !self.features().memory_budget {
            return heaps
                .iter()
                .enumerate()
                .map(|(i, h)| estimated(i, h))
                .collect();
        }
        let mut budget = vk::PhysicalDeviceMemoryBudgetPropertiesEXT::default();
        let mut props = vk::PhysicalDeviceMemoryProperties2::default().push_next(&mut budget);
        // SAFETY: the physical device belongs to the instance (`Device::new` contract) and
        // `VK_EXT_memory_budget` is enabled, so the chained structure is allowed; the function
        // is core in Vulkan 1.1, which the extension requires.
        unsafe {
            self.instance()
                .get_physical_device_memory_properties2(self.physical_device(), &mut props)
        };
        let _ = props;
        heaps
            .iter()
            .enumerate()
            .map(|(i, h)| HeapBudget {
                heap_size: h.size,
                usage: budget.heap_usage[i],
                budget: budget.heap_budget[i],
                crate_usage: self.heap_usage_by_crate(i as u32),
                from_extension: true,
            })
            .collect()
    }
}

/// Fails if a new memory object of `size` bytes in `memory_type_index` would take its heap past
/// its budget.
pub(crate) fn check_within_budget(
    device: &Device,
    memory_type_index: u32,
    size: DeviceSize,
) -> Result<(), AllocationError> {
    let heap = device.memory_properties().memory_types[memory_type_index as usize].heap_index;
    let b = device.heap_budgets()[heap as usize];
    if b.usage.saturating_add(size) > b.budget {
        return Err(AllocationError::BudgetExceeded {
            heap,
            usage: b.usage,
            size,
            budget: b.budget,
        });
    }
    Ok(())
}
