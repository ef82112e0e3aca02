//! Vulkan bring-up shared by the examples: an instance, the first physical device, a device
//! with one queue, a command pool, one-shot submissions and image layout transitions.
//! Nothing here is specific to the allocator.
//!
//! Most examples rely on `VK_INSTANCE_LAYERS` to load the validation layer, which then prints
//! its findings itself. [`Gpu::with_synchronization_validation`] enables the layer on its own
//! (when it is installed) with synchronization validation, and counts its findings in
//! [`validation_messages`] for an example that checks its barriers.
#![allow(dead_code)] // Each example uses what it needs.

use ash::vk;
use std::error::Error;
use std::ffi::{c_void, CStr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// The Vulkan version the examples ask for.
pub const API_VERSION: u32 = vk::API_VERSION_1_2;

const VALIDATION_LAYER: &CStr = c"VK_LAYER_KHRONOS_validation";

/// Validation and performance messages of severity warning or error seen so far by the
/// messengers of [`Gpu::with_synchronization_validation`].
static VALIDATION_MESSAGES: AtomicUsize = AtomicUsize::new(0);

/// How many validation and performance messages of severity warning or error the messengers
/// of [`Gpu::with_synchronization_validation`] have seen so far (those of an instance's
/// destruction included, once the `Gpu` is dropped).
pub fn validation_messages() -> usize {
    VALIDATION_MESSAGES.load(Ordering::Relaxed)
}

unsafe extern "system" fn count_message(
    _severity: vk::DebugUtilsMessageSeverityFlagsEXT,
    types: vk::DebugUtilsMessageTypeFlagsEXT,
    data: *const vk::DebugUtilsMessengerCallbackDataEXT<'_>,
    _user: *mut c_void,
) -> vk::Bool32 {
    // SAFETY: the loader passes valid callback data for the duration of the call.
    let message = unsafe {
        let data = &*data;
        if data.p_message.is_null() {
            "(no message)".into()
        } else {
            CStr::from_ptr(data.p_message).to_string_lossy()
        }
    };
    // General messages come from the loader (for example, that `VK_INSTANCE_LAYERS` added
    // the layer); validation and performance messages are the layer's findings.
    if types.intersects(
        vk::DebugUtilsMessageTypeFlagsEXT::VALIDATION
            | vk::DebugUtilsMessageTypeFlagsEXT::PERFORMANCE,
    ) {
        VALIDATION_MESSAGES.fetch_add(1, Ordering::Relaxed);
        eprintln!("validation: {message}");
    } else {
        eprintln!("loader: {message}");
    }
    vk::FALSE
}

/// A messenger for warnings and errors of every type, counted by [`count_message`].
fn messenger_info() -> vk::DebugUtilsMessengerCreateInfoEXT<'static> {
    vk::DebugUtilsMessengerCreateInfoEXT::default()
        .message_severity(
            vk::DebugUtilsMessageSeverityFlagsEXT::WARNING
                | vk::DebugUtilsMessageSeverityFlagsEXT::ERROR,
        )
        .message_type(
            vk::DebugUtilsMessageTypeFlagsEXT::GENERAL
                | vk::DebugUtilsMessageTypeFlagsEXT::VALIDATION
                | vk::DebugUtilsMessageTypeFlagsEXT::PERFORMANCE,
        )
        .pfn_user_callback(Some(count_message))
}

/// Creates the instance: a plain one, or with the validation layer, synchronization
/// validation and a counting messenger (one chained to the create info, for the instance's
/// creation and destruction, and one returned).
fn create_instance(
    entry: &ash::Entry,
    application: &CStr,
    validation: bool,
) -> Result<(ash::Instance, Option<Messenger>), Box<dyn Error>> {
    let app = vk::ApplicationInfo::default()
        .application_name(application)
        .api_version(API_VERSION);
    let layers = [VALIDATION_LAYER.as_ptr()];
    let extensions = [
        ash::ext::debug_utils::NAME.as_ptr(),
        ash::ext::validation_features::NAME.as_ptr(),
    ];
    let enables = [vk::ValidationFeatureEnableEXT::SYNCHRONIZATION_VALIDATION];
    let mut features = vk::ValidationFeaturesEXT::default().enabled_validation_features(&enables);
    let mut messenger = messenger_info();
    let mut info = vk::InstanceCreateInfo::default().application_info(&app);
    if validation {
        info = info
            .enabled_layer_names(&layers)
            .enabled_extension_names(&extensions)
            .push_next(&mut features)
            .push_next(&mut messenger);
    }
    // SAFETY: a valid create info whose pointers live through the call.
    let instance = unsafe { entry.create_instance(&info, None)? };
    if !validation {
        return Ok((instance, None));
    }
    let utils = ash::ext::debug_utils::Instance::new(entry, &instance);
    // SAFETY: a valid create info; the callback has no user data.
    let handle = unsafe { utils.create_debug_utils_messenger(&messenger_info(), None)? };
    Ok((instance, Some((utils, handle))))
}

/// A debug messenger and the extension's functions that destroy it.
type Messenger = (ash::ext::debug_utils::Instance, vk::DebugUtilsMessengerEXT);

/// An instance, a device with one graphics or compute queue, and a command pool.
pub struct Gpu {
    pub entry: ash::Entry,
    pub instance: ash::Instance,
    pub physical_device: vk::PhysicalDevice,
    pub device: ash::Device,
    pub queue_family: u32,
    pub queue: vk::Queue,
    pub command_pool: vk::CommandPool,
    /// The counting messenger of [`Gpu::with_synchronization_validation`].
    messenger: Option<Messenger>,
}

impl Gpu {
    /// Brings up the first Vulkan device (lavapipe on a machine without a GPU).
    pub fn new(application: &CStr) -> Result<Self, Box<dyn Error>> {
        Self::with_device_extensions(application, &[])
    }

    /// Brings up the first Vulkan device with these device extensions enabled.
    pub fn with_device_extensions(
        application: &CStr,
        extensions: &[&CStr],
    ) -> Result<Self, Box<dyn Error>> {
        Self::create(application, extensions, false)
    }

    /// Brings up the first Vulkan device with the Khronos validation layer and its
    /// synchronization validation (`VK_EXT_validation_features`) when the layer is installed,
    /// and a messenger that counts the layer's findings in [`validation_messages`] and prints
    /// them to stderr. Without the layer, it says so on stdout and runs unvalidated.
    pub fn with_synchronization_validation(application: &CStr) -> Result<Self, Box<dyn Error>> {
        Self::create(application, &[], true)
    }

    fn create(
        application: &CStr,
        extensions: &[&CStr],
        synchronization_validation: bool,
    ) -> Result<Self, Box<dyn Error>> {
        // SAFETY: loading the system's Vulkan loader.
        let entry = unsafe { ash::Entry::load() }.map_err(|e| {
            format!(
                "no Vulkan loader ({e}); on Debian/Ubuntu without a GPU: \
                 apt-get install mesa-vulkan-drivers libvulkan1"
            )
        })?;
        let validation = synchronization_validation
            && {
                // SAFETY: a plain query.
                let installed = unsafe { entry.enumerate_instance_layer_properties()? }
                    .iter()
                    .any(|l| l.layer_name_as_c_str() == Ok(VALIDATION_LAYER));
                if !installed {
                    println!(
                    "the validation layer is not installed: running without synchronization validation"
                );
                }
                installed
            };
        let (instance, messenger) = create_instance(&entry, application, validation)?;
        // SAFETY: plain queries on a valid instance.
        let physical_device = unsafe { instance.enumerate_physical_devices()? }
            .into_iter()
            .next()
            .ok_or("no Vulkan device found; install mesa-vulkan-drivers for a software one")?;
        // SAFETY: as above.
        let queue_family =
            unsafe { instance.get_physical_device_queue_family_properties(physical_device) }
                .iter()
                .position(|f| {
                    f.queue_flags
                        .intersects(vk::QueueFlags::GRAPHICS | vk::QueueFlags::COMPUTE)
                })
                .ok_or("no graphics or compute queue")? as u32;
        let priorities = [1.0];
        let queues = [vk::DeviceQueueCreateInfo::default()
            .queue_family_index(queue_family)
            .queue_priorities(&priorities)];
        let extension_names: Vec<_> = extensions.iter().map(|e| e.as_ptr()).collect();
        // SAFETY: a valid create info.
        let device = unsafe {
            instance.create_device(
                physical_device,
                &vk::DeviceCreateInfo::default()
                    .queue_create_infos(&queues)
                    .enabled_extension_names(&extension_names),
                None,
            )?
        };
        // SAFETY: queue 0 of the family the device was created with one queue of; a valid
        // create info for the pool.
        let (queue, command_pool) = unsafe {
            (
                device.get_device_queue(queue_family, 0),
                device.create_command_pool(
                    &vk::CommandPoolCreateInfo::default().queue_family_index(queue_family),
                    None,
                )?,
            )
        };
        Ok(Self {
            entry,
            instance,
            physical_device,
            device,
            queue_family,
            queue,
            command_pool,
            messenger,
        })
    }

    /// The device's name.
    pub fn name(&self) -> String {
        // SAFETY: a plain query on a valid physical device.
        let props = unsafe {
            self.instance
                .get_physical_device_properties(self.physical_device)
        };
        props
            .device_name_as_c_str()
            .unwrap_or(c"?")
            .to_string_lossy()
            .into_owned()
    }

    /// The allocator's view of the device: Vulkan 1.2, no optional feature claimed.
    pub fn memory_device(&self) -> Result<Arc<ash_memory::MemoryDevice>, Box<dyn Error>> {
        // SAFETY: the handles are valid, belong together and outlive the allocator and every
        // allocation (the examples drop them before `Gpu`); the instance was created from
        // `entry` for `API_VERSION`; no optional extension or feature is claimed.
        Ok(unsafe {
            ash_memory::MemoryDevice::new(
                &self.entry,
                &self.instance,
                self.physical_device,
                self.device.clone(),
                API_VERSION,
                Default::default(),
            )?
        })
    }

    /// Records commands with `record`, submits them and waits until they are done.
    ///
    /// # Safety
    ///
    /// Every command `record` records is valid, and every object it uses lives until this
    /// returns.
    pub unsafe fn submit(
        &self,
        record: impl FnOnce(&ash::Device, vk::CommandBuffer),
    ) -> Result<(), Box<dyn Error>> {
        // SAFETY: the caller's contract.
        unsafe {
            self.try_submit(|d, cmd| {
                record(d, cmd);
                Ok(())
            })
        }
    }

    /// Like [`submit`](Self::submit), with a `record` that may fail: then nothing is
    /// submitted and its error is returned.
    ///
    /// # Safety
    ///
    /// As for [`submit`](Self::submit).
    pub unsafe fn try_submit(
        &self,
        record: impl FnOnce(&ash::Device, vk::CommandBuffer) -> Result<(), Box<dyn Error>>,
    ) -> Result<(), Box<dyn Error>> {
        let d = &self.device;
        // SAFETY: the pool belongs to this device and is used from this thread only; the
        // command buffer is waited for (or never submitted) before it is freed; the commands
        // are the caller's.
        unsafe {
            let cmd = d.allocate_command_buffers(
                &vk::CommandBufferAllocateInfo::default()
                    .command_pool(self.command_pool)
                    .level(vk::CommandBufferLevel::PRIMARY)
                    .command_buffer_count(1),
            )?[0];
            d.begin_command_buffer(
                cmd,
                &vk::CommandBufferBeginInfo::default()
                    .flags(vk::CommandBufferUsageFlags::ONE_TIME_SUBMIT),
            )?;
            if let Err(e) = record(d, cmd) {
                d.free_command_buffers(self.command_pool, &[cmd]);
                return Err(e);
            }
            d.end_command_buffer(cmd)?;
            let fence = d.create_fence(&vk::FenceCreateInfo::default(), None)?;
            let cmds = [cmd];
            d.queue_submit(
                self.queue,
                &[vk::SubmitInfo::default().command_buffers(&cmds)],
                fence,
            )?;
            d.wait_for_fences(&[fence], true, u64::MAX)?;
            d.destroy_fence(fence, None);
            d.free_command_buffers(self.command_pool, &cmds);
        }
        Ok(())
    }
}

impl Drop for Gpu {
    fn drop(&mut self) {
        // SAFETY: the examples drop every allocator, allocation and resource first; the
        // device is idle before it is destroyed; the messenger is the instance's and goes
        // before it.
        unsafe {
            let _ = self.device.device_wait_idle();
            self.device.destroy_command_pool(self.command_pool, None);
            self.device.destroy_device(None);
            if let Some((utils, messenger)) = &self.messenger {
                utils.destroy_debug_utils_messenger(*messenger, None);
            }
            self.instance.destroy_instance(None);
        }
    }
}

/// The whole color image, one mip level, one layer.
pub const COLOR: vk::ImageSubresourceRange = vk::ImageSubresourceRange {
    aspect_mask: vk::ImageAspectFlags::COLOR,
    base_mip_level: 0,
    level_count: 1,
    base_array_layer: 0,
    layer_count: 1,
};

/// Records a layout transition of a whole color image, with a full transfer dependency.
///
/// # Safety
///
/// `cmd` is recording and `image` is a valid color image of `device` in layout `from`.
pub unsafe fn transition(
    device: &ash::Device,
    cmd: vk::CommandBuffer,
    image: vk::Image,
    from: vk::ImageLayout,
    to: vk::ImageLayout,
) {
    let barrier = vk::ImageMemoryBarrier::default()
        .image(image)
        .subresource_range(COLOR)
        .old_layout(from)
        .new_layout(to)
        .src_access_mask(vk::AccessFlags::TRANSFER_WRITE)
        .dst_access_mask(vk::AccessFlags::TRANSFER_READ | vk::AccessFlags::TRANSFER_WRITE);
    // SAFETY: the caller's contract.
    unsafe {
        device.cmd_pipeline_barrier(
            cmd,
            vk::PipelineStageFlags::TRANSFER | vk::PipelineStageFlags::TOP_OF_PIPE,
            vk::PipelineStageFlags::TRANSFER,
            vk::DependencyFlags::empty(),
            &[],
            &[],
            &[barrier],
        )
    };
}

/// Records the upload of a fresh image: `UNDEFINED` to `TRANSFER_DST_OPTIMAL`, the copy of
/// `region` from `buffer`, then `TRANSFER_SRC_OPTIMAL` (ready to be copied from, as the
/// examples do to read it back or move it).
///
/// # Safety
///
/// `cmd` is recording; `buffer` and `image` are valid resources of `device`, `image` a color
/// image whose contents may be discarded, and `region` lies inside both.
pub unsafe fn upload_to_image(
    device: &ash::Device,
    cmd: vk::CommandBuffer,
    buffer: vk::Buffer,
    image: vk::Image,
    region: vk::BufferImageCopy,
) {
    // SAFETY: the caller's contract; each step leaves the layout the next one names.
    unsafe {
        transition(
            device,
            cmd,
            image,
            vk::ImageLayout::UNDEFINED,
            vk::ImageLayout::TRANSFER_DST_OPTIMAL,
        );
        device.cmd_copy_buffer_to_image(
            cmd,
            buffer,
            image,
            vk::ImageLayout::TRANSFER_DST_OPTIMAL,
            &[region],
        );
        transition(
            device,
            cmd,
            image,
            vk::ImageLayout::TRANSFER_DST_OPTIMAL,
            vk::ImageLayout::TRANSFER_SRC_OPTIMAL,
        );
    }
}

/// Records a barrier that makes transfer writes visible to later transfers and the host.
///
/// # Safety
///
/// `cmd` is recording.
pub unsafe fn transfer_to_host(device: &ash::Device, cmd: vk::CommandBuffer) {
    let barrier = vk::MemoryBarrier::default()
        .src_access_mask(vk::AccessFlags::TRANSFER_WRITE)
        .dst_access_mask(
            vk::AccessFlags::HOST_READ
                | vk::AccessFlags::TRANSFER_READ
                | vk::AccessFlags::TRANSFER_WRITE,
        );
    // SAFETY: the caller's contract.
    unsafe {
        device.cmd_pipeline_barrier(
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

/// A buffer create info of `size` bytes.
pub fn buffer_info(size: u64, usage: vk::BufferUsageFlags) -> vk::BufferCreateInfo<'static> {
    vk::BufferCreateInfo::default()
        .size(size)
        .usage(usage)
        .sharing_mode(vk::SharingMode::EXCLUSIVE)
}

/// A 2D RGBA8 optimal-tiling image of `width` x `height`, for transfers and sampling.
pub fn image_info(width: u32, height: u32) -> vk::ImageCreateInfo<'static> {
    vk::ImageCreateInfo::default()
        .image_type(vk::ImageType::TYPE_2D)
        .format(vk::Format::R8G8B8A8_UNORM)
        .extent(vk::Extent3D {
            width,
            height,
            depth: 1,
        })
        .mip_levels(1)
        .array_layers(1)
        .samples(vk::SampleCountFlags::TYPE_1)
        .tiling(vk::ImageTiling::OPTIMAL)
        .usage(
            vk::ImageUsageFlags::TRANSFER_DST
                | vk::ImageUsageFlags::TRANSFER_SRC
                | vk::ImageUsageFlags::SAMPLED,
        )
        .initial_layout(vk::ImageLayout::UNDEFINED)
}

/// The copy region of a whole `width` x `height` color image from or to a tightly packed
/// buffer.
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

/// A reproducible byte pattern of `len` bytes (SplitMix64 from `seed`).
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out.truncate(len);
    out
}
