//! Shared test harness: a Vulkan instance with the Khronos validation layer, a device on the
//! first physical device, a queue, and helpers to record and submit commands.
//!
//! Every validation message of severity WARNING or ERROR is collected, and dropping the
//! [`TestContext`] fails the test if there was any. A missing Vulkan loader, driver or
//! validation layer is a test failure with a message naming the packages to install, never a
//! silent skip.
#![allow(dead_code)]

pub mod failing_bind;
pub mod forward;
pub mod log_capture;

use ash::vk;
use std::ffi::{c_void, CStr};
use std::sync::{Arc, Mutex};

pub const INSTALL_HINT: &str = "install a Vulkan driver and the validation layer; on Debian or \
Ubuntu without a GPU: apt-get install mesa-vulkan-drivers libvulkan1 vulkan-validationlayers";

/// The Vulkan version the test instance asks for.
pub const API_VERSION: u32 = vk::API_VERSION_1_2;

const VALIDATION_LAYER: &CStr = c"VK_LAYER_KHRONOS_validation";

/// The Vulkan contexts of one test process take turns: with the loader and validation layer
/// of Debian 12, a thread creating a device while another calls into a device of its own can
/// crash in the layer (seen: `vkAllocateMemory` of one test during another test's
/// `vkCreateDevice`, a segmentation fault about once in 200 runs of a test binary). A test
/// holds its turn from the creation of its context until the context is destroyed; it is
/// re-entrant, so one test may hold several contexts. Tests without the driver still run in
/// parallel.
static ONE_AT_A_TIME: parking_lot::ReentrantMutex<()> = parking_lot::const_reentrant_mutex(());

/// Validation messages collected by the debug messenger.
pub type Messages = Mutex<Vec<String>>;

unsafe extern "system" fn debug_callback(
    severity: vk::DebugUtilsMessageSeverityFlagsEXT,
    _types: vk::DebugUtilsMessageTypeFlagsEXT,
    data: *const vk::DebugUtilsMessengerCallbackDataEXT<'_>,
    user: *mut c_void,
) -> vk::Bool32 {
    // SAFETY: the loader passes a valid callback data pointer for the duration of the call,
    // and `user` is the `Messages` boxed in the `TestContext`, which outlives the messenger.
    let (messages, text) = unsafe {
        let messages = &*(user as *const Messages);
        let data = &*data;
        let text = if data.p_message.is_null() {
            String::from("(no message)")
        } else {
            CStr::from_ptr(data.p_message)
                .to_string_lossy()
                .into_owned()
        };
        (messages, text)
    };
    if severity.intersects(
        vk::DebugUtilsMessageSeverityFlagsEXT::ERROR
            | vk::DebugUtilsMessageSeverityFlagsEXT::WARNING,
    ) {
        eprintln!("validation {severity:?}: {text}");
        messages
            .lock()
            .unwrap()
            .push(format!("{severity:?}: {text}"));
    }
    vk::FALSE
}

/// A Vulkan instance and device for tests.
pub struct TestContext {
    pub entry: ash::Entry,
    pub instance: ash::Instance,
    pub physical_device: vk::PhysicalDevice,
    pub device: ash::Device,
    pub queue_family: u32,
    pub queue: vk::Queue,
    pub command_pool: vk::CommandPool,
    debug_utils: ash::ext::debug_utils::Instance,
    messenger: vk::DebugUtilsMessengerEXT,
    messages: Box<Messages>,
    /// Dropped last, after the device and instance are destroyed (see [`ONE_AT_A_TIME`]).
    _turn: parking_lot::ReentrantMutexGuard<'static, ()>,
}

impl TestContext {
    /// Creates the context, panicking with an installation hint if Vulkan is unavailable.
    pub fn new() -> Self {
        Self::with_device_extensions(&[])
    }

    /// Like [`new`](Self::new), with the validation layer's synchronization validation on
    /// (`VK_EXT_validation_features`): a missing barrier is a validation message.
    pub fn with_sync_validation() -> Self {
        Self::with_options(
            API_VERSION,
            &[],
            &[vk::ValidationFeatureEnableEXT::SYNCHRONIZATION_VALIDATION],
        )
    }

    /// Creates the context with these device extensions enabled (a missing one fails the
    /// test with the driver's error).
    pub fn with_device_extensions(device_extensions: &[&CStr]) -> Self {
        Self::with_api_version(API_VERSION, device_extensions)
    }

    /// Creates the context with an instance for `api_version` and these device extensions.
    pub fn with_api_version(api_version: u32, device_extensions: &[&CStr]) -> Self {
        Self::with_options(api_version, device_extensions, &[])
    }

    /// Like [`new`](Self::new), with the validation layer's handle wrapping off
    /// (`VK_VALIDATION_FEATURE_DISABLE_UNIQUE_HANDLES_EXT`): the handles are the driver's
    /// own, and a freed memory object's handle is soon given to a new one, as drivers do
    /// (the layer's wrapped handles never come back).
    #[allow(dead_code)]
    pub fn with_reused_handles() -> Self {
        Self::with_validation_features(
            API_VERSION,
            &[],
            &[],
            &[vk::ValidationFeatureDisableEXT::UNIQUE_HANDLES],
        )
    }

    /// Creates the context with an instance for `api_version`, these device extensions, and
    /// these validation features enabled (`VK_EXT_validation_features`).
    pub fn with_options(
        api_version: u32,
        device_extensions: &[&CStr],
        features: &[vk::ValidationFeatureEnableEXT],
    ) -> Self {
        Self::with_validation_features(api_version, device_extensions, features, &[])
    }

    /// Creates the context with an instance for `api_version`, these device extensions, and
    /// these validation features enabled and `disabled` (`VK_EXT_validation_features`).
    pub fn with_validation_features(
        api_version: u32,
        device_extensions: &[&CStr],
        features: &[vk::ValidationFeatureEnableEXT],
        disabled: &[vk::ValidationFeatureDisableEXT],
    ) -> Self {
        let turn = ONE_AT_A_TIME.lock();
        // SAFETY: loading the system's Vulkan loader; no other code runs during the load.
        let entry = unsafe { ash::Entry::load() }.unwrap_or_else(|e| {
            panic!("the Vulkan loader could not be loaded ({e}): {INSTALL_HINT}")
        });
        // SAFETY: a plain query on a loaded entry.
        let layers = unsafe { entry.enumerate_instance_layer_properties() }
            .expect("vkEnumerateInstanceLayerProperties failed");
        assert!(
            layers
                .iter()
                .any(|l| l.layer_name_as_c_str() == Ok(VALIDATION_LAYER)),
            "the Khronos validation layer is not installed: {INSTALL_HINT}"
        );
        let messages: Box<Messages> = Box::default();
        let mut messenger_info = vk::DebugUtilsMessengerCreateInfoEXT::default()
            .message_severity(
                vk::DebugUtilsMessageSeverityFlagsEXT::ERROR
                    | vk::DebugUtilsMessageSeverityFlagsEXT::WARNING,
            )
            .message_type(
                vk::DebugUtilsMessageTypeFlagsEXT::GENERAL
                    | vk::DebugUtilsMessageTypeFlagsEXT::VALIDATION
                    | vk::DebugUtilsMessageTypeFlagsEXT::PERFORMANCE,
            )
            .pfn_user_callback(Some(debug_callback))
            .user_data(&*messages as *const Messages as *mut c_void);
        let app = vk::ApplicationInfo::default()
            .application_name(c"ash-memory tests")
            .api_version(api_version);
        let layer_names = [VALIDATION_LAYER.as_ptr()];
        let mut extension_names = vec![ash::ext::debug_utils::NAME.as_ptr()];
        let mut validation_features = vk::ValidationFeaturesEXT::default()
            .enabled_validation_features(features)
            .disabled_validation_features(disabled);
        let mut instance_info = vk::InstanceCreateInfo::default()
            .application_info(&app)
            .enabled_layer_names(&layer_names)
            .push_next(&mut messenger_info);
        if !features.is_empty() || !disabled.is_empty() {
            extension_names.push(ash::ext::validation_features::NAME.as_ptr());
            instance_info = instance_info.push_next(&mut validation_features);
        }
        let instance_info = instance_info.enabled_extension_names(&extension_names);
        // SAFETY: the create info and everything it points to live until the call returns.
        let instance = unsafe { entry.create_instance(&instance_info, None) }
            .unwrap_or_else(|e| panic!("vkCreateInstance failed ({e}): {INSTALL_HINT}"));
        let debug_utils = ash::ext::debug_utils::Instance::new(&entry, &instance);
        // SAFETY: the messenger's user data (`messages`) is boxed and outlives the messenger.
        let messenger = unsafe { debug_utils.create_debug_utils_messenger(&messenger_info, None) }
            .expect("vkCreateDebugUtilsMessengerEXT failed");
        // SAFETY: plain queries on a valid instance.
        let physical_device = unsafe { instance.enumerate_physical_devices() }
            .expect("vkEnumeratePhysicalDevices failed")
            .into_iter()
            .next()
            .unwrap_or_else(|| panic!("no Vulkan physical device found: {INSTALL_HINT}"));
        // SAFETY: as above.
        let families =
            unsafe { instance.get_physical_device_queue_family_properties(physical_device) };
        let queue_family = families
            .iter()
            .position(|f| {
                f.queue_flags
                    .intersects(vk::QueueFlags::GRAPHICS | vk::QueueFlags::COMPUTE)
            })
            .expect("no graphics or compute queue family") as u32;
        let priorities = [1.0];
        let queue_info = [vk::DeviceQueueCreateInfo::default()
            .queue_family_index(queue_family)
            .queue_priorities(&priorities)];
        let device_extension_names: Vec<_> = device_extensions.iter().map(|e| e.as_ptr()).collect();
        let device_info = vk::DeviceCreateInfo::default()
            .queue_create_infos(&queue_info)
            .enabled_extension_names(&device_extension_names);
        // SAFETY: the create info is valid and lives until the call returns.
        let device = unsafe { instance.create_device(physical_device, &device_info, None) }
            .unwrap_or_else(|e| panic!("vkCreateDevice with {device_extensions:?} failed: {e}"));
        // SAFETY: queue 0 of a family we created one queue in.
        let queue = unsafe { device.get_device_queue(queue_family, 0) };
        let pool_info = vk::CommandPoolCreateInfo::default()
            .queue_family_index(queue_family)
            .flags(vk::CommandPoolCreateFlags::RESET_COMMAND_BUFFER);
        // SAFETY: valid create info for this device.
        let command_pool = unsafe { device.create_command_pool(&pool_info, None) }
            .expect("vkCreateCommandPool failed");
        Self {
            entry,
            instance,
            physical_device,
            device,
            queue_family,
            queue,
            command_pool,
            debug_utils,
            messenger,
            messages,
            _turn: turn,
        }
    }

    /// The allocator's view of the device, with no optional features claimed.
    pub fn memory_device(&self) -> Arc<ash_memory::MemoryDevice> {
        self.memory_device_with(ash_memory::EnabledMemoryFeatures::default())
    }

    /// The allocator's view of the device with the given features claimed.
    pub fn memory_device_with(
        &self,
        features: ash_memory::EnabledMemoryFeatures,
    ) -> Arc<ash_memory::MemoryDevice> {
        // SAFETY: the handles are valid and outlive every allocator of a test (tests drop
        // their allocators before the context); the claimed features are only those the
        // test enabled.
        unsafe {
            ash_memory::MemoryDevice::new(
                &self.entry,
                &self.instance,
                self.physical_device,
                self.device.clone(),
                API_VERSION,
                features,
            )
        }
        .expect("ash_memory::MemoryDevice::new failed")
    }

    /// The allocator's view of a copy of the device whose Vulkan 1.0 functions `patch`
    /// changed (a test puts in a wrapper that fails on demand and otherwise calls the real
    /// function), with `features` claimed.
    pub fn memory_device_with_v1_0(
        &self,
        patch: impl FnOnce(&mut ash::DeviceFnV1_0),
        features: ash_memory::EnabledMemoryFeatures,
    ) -> Arc<ash_memory::MemoryDevice> {
        let d = &self.device;
        let mut v1_0 = d.fp_v1_0().clone();
        patch(&mut v1_0);
        let patched = ash::Device::from_parts_1_3(
            d.handle(),
            v1_0,
            d.fp_v1_1().clone(),
            d.fp_v1_2().clone(),
            d.fp_v1_3().clone(),
        );
        // SAFETY: the patched device is this context's device with some functions replaced
        // by the test's, which forward to the real ones; the handles outlive every allocator
        // of a test; the claimed features are only those the test enabled.
        unsafe {
            ash_memory::MemoryDevice::new(
                &self.entry,
                &self.instance,
                self.physical_device,
                patched,
                API_VERSION,
                features,
            )
        }
        .expect("ash_memory::MemoryDevice::new failed")
    }

    /// The validation messages so far.
    pub fn messages(&self) -> Vec<String> {
        self.messages.lock().unwrap().clone()
    }

    /// Records commands with `record`, submits them and waits for completion.
    pub fn submit(&self, record: impl FnOnce(&ash::Device, vk::CommandBuffer)) {
        let d = &self.device;
        let alloc_info = vk::CommandBufferAllocateInfo::default()
            .command_pool(self.command_pool)
            .level(vk::CommandBufferLevel::PRIMARY)
            .command_buffer_count(1);
        // SAFETY: the pool belongs to this device; commands are recorded and submitted from
        // this thread only and waited for before the buffer is freed.
        unsafe {
            let cmd = d
                .allocate_command_buffers(&alloc_info)
                .expect("allocate command buffer")[0];
            d.begin_command_buffer(
                cmd,
                &vk::CommandBufferBeginInfo::default()
                    .flags(vk::CommandBufferUsageFlags::ONE_TIME_SUBMIT),
            )
            .expect("begin command buffer");
            record(d, cmd);
            d.end_command_buffer(cmd).expect("end command buffer");
            let fence = d
                .create_fence(&vk::FenceCreateInfo::default(), None)
                .expect("create fence");
            let cmds = [cmd];
            let submit = [vk::SubmitInfo::default().command_buffers(&cmds)];
            d.queue_submit(self.queue, &submit, fence)
                .expect("queue submit");
            d.wait_for_fences(&[fence], true, u64::MAX)
                .expect("wait for fence");
            d.destroy_fence(fence, None);
            d.free_command_buffers(self.command_pool, &cmds);
        }
    }

    /// A full memory barrier between transfer writes and transfer/host reads.
    pub fn transfer_barrier(d: &ash::Device, cmd: vk::CommandBuffer) {
        let barrier = vk::MemoryBarrier::default()
            .src_access_mask(vk::AccessFlags::TRANSFER_WRITE)
            .dst_access_mask(
                vk::AccessFlags::TRANSFER_READ
                    | vk::AccessFlags::TRANSFER_WRITE
                    | vk::AccessFlags::HOST_READ,
            );
        // SAFETY: `cmd` is in the recording state (called from inside `submit`).
        unsafe {
            d.cmd_pipeline_barrier(
                cmd,
                vk::PipelineStageFlags::TRANSFER,
                vk::PipelineStageFlags::TRANSFER | vk::PipelineStageFlags::HOST,
                vk::DependencyFlags::empty(),
                &[barrier],
                &[],
                &[],
            )
        };
    }
}

impl Drop for TestContext {
    fn drop(&mut self) {
        // SAFETY: every object below was created by this context; tests have dropped their
        // allocators and resources, and the device is idle before it is destroyed.
        unsafe {
            let _ = self.device.device_wait_idle();
            self.device.destroy_command_pool(self.command_pool, None);
            self.device.destroy_device(None);
            self.debug_utils
                .destroy_debug_utils_messenger(self.messenger, None);
            self.instance.destroy_instance(None);
        }
        let messages = self.messages();
        if !messages.is_empty() && !std::thread::panicking() {
            panic!(
                "{} validation message(s):\n{}",
                messages.len(),
                messages.join("\n")
            );
        }
    }
}

/// SplitMix64: a tiny seeded generator, so test sequences are reproducible.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A value in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// A value in `lo..hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo)
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.range(0, items.len() as u64) as usize]
    }
}

/// An exclusive buffer create info.
pub fn buffer_info(size: u64, usage: vk::BufferUsageFlags) -> vk::BufferCreateInfo<'static> {
    vk::BufferCreateInfo::default()
        .size(size)
        .usage(usage)
        .sharing_mode(vk::SharingMode::EXCLUSIVE)
}

/// A 2D single-mip image create info, usable for transfers and sampling.
pub fn image_info(
    extent: u32,
    format: vk::Format,
    tiling: vk::ImageTiling,
) -> vk::ImageCreateInfo<'static> {
    vk::ImageCreateInfo::default()
        .image_type(vk::ImageType::TYPE_2D)
        .format(format)
        .extent(vk::Extent3D {
            width: extent,
            height: extent,
            depth: 1,
        })
        .mip_levels(1)
        .array_layers(1)
        .samples(vk::SampleCountFlags::TYPE_1)
        .tiling(tiling)
        .usage(vk::ImageUsageFlags::TRANSFER_DST | vk::ImageUsageFlags::SAMPLED)
        .initial_layout(vk::ImageLayout::UNDEFINED)
}

/// The whole color image: one mip level, one layer.
pub fn color_range() -> vk::ImageSubresourceRange {
    vk::ImageSubresourceRange {
        aspect_mask: vk::ImageAspectFlags::COLOR,
        base_mip_level: 0,
        level_count: 1,
        base_array_layer: 0,
        layer_count: 1,
    }
}

/// An image barrier on the whole color image, on one queue family.
pub fn image_barrier(
    image: vk::Image,
    old: vk::ImageLayout,
    new: vk::ImageLayout,
    src: vk::AccessFlags,
    dst: vk::AccessFlags,
) -> vk::ImageMemoryBarrier<'static> {
    vk::ImageMemoryBarrier::default()
        .image(image)
        .old_layout(old)
        .new_layout(new)
        .src_access_mask(src)
        .dst_access_mask(dst)
        .src_queue_family_index(vk::QUEUE_FAMILY_IGNORED)
        .dst_queue_family_index(vk::QUEUE_FAMILY_IGNORED)
        .subresource_range(color_range())
}

/// Records a dependency from earlier transfers to later ones, with these memory and image
/// barriers.
///
/// # Safety
///
/// `cmd` is recording, outside a render pass, and the barriers name valid objects of `d`.
pub unsafe fn transfer_dependency(
    d: &ash::Device,
    cmd: vk::CommandBuffer,
    memory: &[vk::MemoryBarrier<'_>],
    images: &[vk::ImageMemoryBarrier<'_>],
) {
    // SAFETY: the caller's contract.
    unsafe {
        d.cmd_pipeline_barrier(
            cmd,
            vk::PipelineStageFlags::TRANSFER,
            vk::PipelineStageFlags::TRANSFER,
            vk::DependencyFlags::empty(),
            memory,
            &[],
            images,
        )
    };
}

/// An optimal `R8G8B8A8_UNORM` texture that transfers can fill and read.
pub fn texture_info(side: u32) -> vk::ImageCreateInfo<'static> {
    let mut info = image_info(side, vk::Format::R8G8B8A8_UNORM, vk::ImageTiling::OPTIMAL);
    info.usage |= vk::ImageUsageFlags::TRANSFER_SRC;
    info
}

/// Records a transition of the whole color image `image` from `old` to `new`, after earlier
/// transfers and before later ones.
///
/// # Safety
///
/// `cmd` is recording, outside a render pass, and `image` is a valid color image of `d` in
/// layout `old`.
pub unsafe fn transition(
    d: &ash::Device,
    cmd: vk::CommandBuffer,
    image: vk::Image,
    old: vk::ImageLayout,
    new: vk::ImageLayout,
) {
    let barrier = image_barrier(
        image,
        old,
        new,
        vk::AccessFlags::TRANSFER_WRITE,
        vk::AccessFlags::TRANSFER_READ | vk::AccessFlags::TRANSFER_WRITE,
    );
    // SAFETY: the caller's contract.
    unsafe { transfer_dependency(d, cmd, &[], &[barrier]) };
}

/// A resource of the scenarios that read their data back: a buffer of a size, or a square
/// RGBA8 image of a side.
#[derive(Clone, Copy, Debug)]
pub enum Resource {
    Buffer(vk::Buffer, u64),
    Image(vk::Image, u32),
}

impl Resource {
    /// The bytes the GPU copies of it (its texels, tightly packed).
    pub fn bytes(self) -> u64 {
        match self {
            Self::Buffer(_, size) => size,
            Self::Image(_, side) => u64::from(side) * u64::from(side) * 4,
        }
    }

    /// Records the copy of all of it into `dst` at offset 0.
    ///
    /// # Safety
    ///
    /// `cmd` is recording on `d`; the resource is bound, and an image is in
    /// `TRANSFER_SRC_OPTIMAL`; `dst` is a bound buffer of at least [`bytes`](Self::bytes).
    pub unsafe fn cmd_copy_to(self, d: &ash::Device, cmd: vk::CommandBuffer, dst: vk::Buffer) {
        // SAFETY: the caller's contract.
        unsafe {
            match self {
                Self::Buffer(b, size) => {
                    d.cmd_copy_buffer(cmd, b, dst, &[vk::BufferCopy::default().size(size)])
                }
                Self::Image(image, side) => d.cmd_copy_image_to_buffer(
                    cmd,
                    image,
                    vk::ImageLayout::TRANSFER_SRC_OPTIMAL,
                    dst,
                    &[image_copy(side, side)],
                ),
            }
        }
    }
}

/// The copy of a whole `width` x `height` color image to or from a tightly packed buffer at
/// offset 0.
pub fn image_copy(width: u32, height: u32) -> vk::BufferImageCopy {
    vk::BufferImageCopy::default()
        .image_subresource(vk::ImageSubresourceLayers {
            aspect_mask: vk::ImageAspectFlags::COLOR,
            mip_level: 0,
            base_array_layer: 0,
            layer_count: 1,
        })
        .image_extent(vk::Extent3D {
            width,
            height,
            depth: 1,
        })
}
