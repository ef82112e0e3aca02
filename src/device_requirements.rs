//! Memory requirements without a resource: `vkGetDeviceBufferMemoryRequirements` /
//! `vkGetDeviceImageMemoryRequirements` (core in Vulkan 1.3, or `VK_KHR_maintenance4`).
//!
//! They answer "what would a buffer (image) made with this create info need" without
//! creating one, so that the memory type can be chosen and the memory allocated first (VMA's
//! `vmaFindMemoryTypeIndexForBufferInfo`, and allocating ahead of the resource; see
//! [`AllocationRequirements::for_buffer_info`](crate::AllocationRequirements::for_buffer_info)).

use crate::device::MemoryDevice;
use ash::vk;

/// The create info whose requirements are asked for.
#[derive(Clone, Copy)]
pub(crate) enum CreateInfo<'a> {
    Buffer(&'a vk::BufferCreateInfo<'a>),
    Image(&'a vk::ImageCreateInfo<'a>),
}

impl MemoryDevice {
    /// Whether requirements can be queried from create infos.
    pub(crate) fn has_device_requirements(&self) -> bool {
        self.features().maintenance4
    }

    /// The requirements (with the dedicated-allocation hints) a resource made from `info`
    /// would have.
    ///
    /// # Safety
    ///
    /// [`has_device_requirements`](Self::has_device_requirements) is true; `info` is a valid
    /// create info for this device (an image one not `DISJOINT`).
    pub(crate) unsafe fn requirements_of_info(
        &self,
        info: CreateInfo<'_>,
    ) -> (
        vk::MemoryRequirements,
        vk::MemoryDedicatedRequirements<'static>,
    ) {
        let mut dedicated = vk::MemoryDedicatedRequirements::default();
        let mut out = vk::MemoryRequirements2::default().push_next(&mut dedicated);
        let core = vk::api_version_major(self.api_version()) > 1
            || vk::api_version_minor(self.api_version()) >= 3;
        let khr = (!core).then(|| ash::khr::maintenance4::Device::new(self.instance(), self.ash()));
        // SAFETY: the caller's contract; the functions are core in the device's API version,
        // or `VK_KHR_maintenance4` was claimed (the `MemoryDevice::new` contract) when `khr` is set.
        unsafe {
            match info {
                CreateInfo::Buffer(b) => {
                    let q = vk::DeviceBufferMemoryRequirements::default().create_info(b);
                    match &khr {
                        Some(khr) => khr.get_device_buffer_memory_requirements(&q, &mut out),
                        None => self
                            .ash()
                            .get_device_buffer_memory_requirements(&q, &mut out),
                    }
                }
                CreateInfo::Image(i) => {
                    let q = vk::DeviceImageMemoryRequirements::default().create_info(i);
                    match &khr {
                        Some(khr) => khr.get_device_image_memory_requirements(&q, &mut out),
                        None => self
                            .ash()
                            .get_device_image_memory_requirements(&q, &mut out),
                    }
                }
            }
        }
        let reqs = out.memory_requirements;
        let hints = vk::MemoryDedicatedRequirements::default()
            .prefers_dedicated_allocation(dedicated.prefers_dedicated_allocation != 0)
            .requires_dedicated_allocation(dedicated.requires_dedicated_allocation != 0);
        (reqs, hints)
    }
}

/// A buffer create info's usage: that of a `VkBufferUsageFlags2CreateInfoKHR` in its chain
/// (`VK_KHR_maintenance5`, which then replaces `usage`), else `usage`. Only the flags that
/// `VkBufferUsageFlags` can hold are kept (the memory policy reads no other).
pub(crate) fn buffer_usage(info: &vk::BufferCreateInfo<'_>) -> vk::BufferUsageFlags {
    let mut next = info.p_next;
    while !next.is_null() {
        // SAFETY: a valid create info's chain (every caller's contract): each structure
        // starts with a `VkBaseInStructure`.
        let base = unsafe { &*next.cast::<vk::BaseInStructure<'_>>() };
        if base.s_type == vk::StructureType::BUFFER_USAGE_FLAGS_2_CREATE_INFO_KHR {
            // SAFETY: the structure type says what the structure is.
            let flags2 = unsafe { &*next.cast::<vk::BufferUsageFlags2CreateInfoKHR<'_>>() };
            return vk::BufferUsageFlags::from_raw(flags2.usage.as_raw() as u32);
        }
        next = base.p_next.cast();
    }
    info.usage
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_flags_2_replace_usage() {
        let plain = vk::BufferCreateInfo::default().usage(vk::BufferUsageFlags::VERTEX_BUFFER);
        assert_eq!(buffer_usage(&plain), vk::BufferUsageFlags::VERTEX_BUFFER);
        let mut flags2 = vk::BufferUsageFlags2CreateInfoKHR::default().usage(
            vk::BufferUsageFlags2KHR::TRANSFER_SRC
                | vk::BufferUsageFlags2KHR::STORAGE_BUFFER
                | vk::BufferUsageFlags2KHR::from_raw(1 << 40),
        );
        let mut other = vk::ExternalMemoryBufferCreateInfo::default();
        let chained = vk::BufferCreateInfo::default()
            .usage(vk::BufferUsageFlags::VERTEX_BUFFER)
            .push_next(&mut other)
            .push_next(&mut flags2);
        assert_eq!(
            buffer_usage(&chained),
            vk::BufferUsageFlags::TRANSFER_SRC | vk::BufferUsageFlags::STORAGE_BUFFER
        );
    }
}
