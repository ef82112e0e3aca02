//! Binds that fail on demand: `vkBindBufferMemory` / `vkBindImageMemory` hooks that return a
//! chosen error once ([`fail_next`]) and otherwise forward to the driver. Install them with
//! [`hook`] in `TestContext::memory_device_with_v1_0`.

use ash::vk;
use std::cell::Cell;

thread_local! {
    static REAL_BIND_BUFFER: Cell<Option<vk::PFN_vkBindBufferMemory>> = const { Cell::new(None) };
    static REAL_BIND_IMAGE: Cell<Option<vk::PFN_vkBindImageMemory>> = const { Cell::new(None) };
    /// The next bind fails with this result instead of reaching the driver.
    static FAIL_BIND: Cell<Option<vk::Result>> = const { Cell::new(None) };
}

/// Replaces the device's bind functions with the failing ones (on this thread).
pub fn hook(v1_0: &mut ash::DeviceFnV1_0) {
    REAL_BIND_BUFFER.set(Some(v1_0.bind_buffer_memory));
    REAL_BIND_IMAGE.set(Some(v1_0.bind_image_memory));
    v1_0.bind_buffer_memory = failing_bind_buffer;
    v1_0.bind_image_memory = failing_bind_image;
}

/// The next bind on this thread fails with `result`.
pub fn fail_next(result: vk::Result) {
    FAIL_BIND.set(Some(result));
}

/// Whether a failure set by [`fail_next`] still waits for a bind.
pub fn pending() -> bool {
    FAIL_BIND.get().is_some()
}

unsafe extern "system" fn failing_bind_buffer(
    device: vk::Device,
    buffer: vk::Buffer,
    memory: vk::DeviceMemory,
    offset: vk::DeviceSize,
) -> vk::Result {
    if let Some(e) = FAIL_BIND.take() {
        return e;
    }
    let real = REAL_BIND_BUFFER.get().expect("real vkBindBufferMemory");
    // SAFETY: forwarded unchanged.
    unsafe { real(device, buffer, memory, offset) }
}

unsafe extern "system" fn failing_bind_image(
    device: vk::Device,
    image: vk::Image,
    memory: vk::DeviceMemory,
    offset: vk::DeviceSize,
) -> vk::Result {
    if let Some(e) = FAIL_BIND.take() {
        return e;
    }
    let real = REAL_BIND_IMAGE.get().expect("real vkBindImageMemory");
    // SAFETY: forwarded unchanged.
    unsafe { real(device, image, memory, offset) }
}
