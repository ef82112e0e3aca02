//! Binding memory with a `pNext` chain: `vkBindBufferMemory2` / `vkBindImageMemory2` (core in
//! Vulkan 1.1, or `VK_KHR_bind_memory2`).
//!
//! The chain carries what a plain `vkBind*Memory` cannot say: the device indices of a device
//! group (`VkBindBufferMemoryDeviceGroupInfo`, `VkBindImageMemoryDeviceGroupInfo`), the plane
//! of a disjoint multi-planar image (`VkBindImagePlaneMemoryInfo`), a swapchain image
//! (`VkBindImageMemorySwapchainInfoKHR`), a per-bind result (`VkBindMemoryStatusKHR`). The
//! crate uses these entry points only when a chain is given (a bind without one stays a plain
//! `vkBind*Memory`), and only when [`EnabledMemoryFeatures::bind_memory2`] is set (implied by
//! Vulkan 1.1).
//!
//! [`EnabledMemoryFeatures::bind_memory2`]: crate::EnabledMemoryFeatures::bind_memory2

use crate::device::MemoryDevice;
use crate::layout::DeviceSize;
use ash::vk;
use std::ffi::c_void;

impl MemoryDevice {
    /// Whether binds with a `pNext` chain are available.
    pub(crate) fn has_bind_memory2(&self) -> bool {
        self.features().bind_memory2
    }

    /// Binds `buffer` to `memory` at `offset` through `vkBindBufferMemory2[KHR]` with `next`
    /// as the `pNext` of its `VkBindBufferMemoryInfo`.
    ///
    /// # Safety
    ///
    /// [`has_bind_memory2`](Self::has_bind_memory2) is true; the bind is valid for
    /// `vkBindBufferMemory`; `next` is null or a valid chain of structures extending
    /// `VkBindBufferMemoryInfo` whose extensions are enabled.
    pub(crate) unsafe fn bind_buffer_memory2(
        &self,
        buffer: vk::Buffer,
        memory: vk::DeviceMemory,
        offset: DeviceSize,
        next: *const c_void,
    ) -> Result<(), vk::Result> {
        let mut info = vk::BindBufferMemoryInfo::default()
            .buffer(buffer)
            .memory(memory)
            .memory_offset(offset);
        info.p_next = next;
        let infos = std::slice::from_ref(&info);
        // SAFETY: the caller's contract; the function is core in the device's API version, or
        // the extension was claimed (the `MemoryDevice::new` contract) and its table loaded.
        unsafe {
            match self.bind_memory2_khr() {
                Some(khr) => {
                    (khr.fp().bind_buffer_memory2_khr)(khr.device(), 1, infos.as_ptr()).result()
                }
                None => self.ash().bind_buffer_memory2(infos),
            }
        }
    }

    /// Binds `image` like [`bind_buffer_memory2`](Self::bind_buffer_memory2).
    ///
    /// # Safety
    ///
    /// As for `bind_buffer_memory2`, for an image and `VkBindImageMemoryInfo`.
    pub(crate) unsafe fn bind_image_memory2(
        &self,
        image: vk::Image,
        memory: vk::DeviceMemory,
        offset: DeviceSize,
        next: *const c_void,
    ) -> Result<(), vk::Result> {
        let mut info = vk::BindImageMemoryInfo::default()
            .image(image)
            .memory(memory)
            .memory_offset(offset);
        info.p_next = next;
        let infos = std::slice::from_ref(&info);
        // SAFETY: as in `bind_buffer_memory2`.
        unsafe {
            match self.bind_memory2_khr() {
                Some(khr) => {
                    (khr.fp().bind_image_memory2_khr)(khr.device(), 1, infos.as_ptr()).result()
                }
                None => self.ash().bind_image_memory2(infos),
            }
        }
    }
}
