//! One Vulkan instance + device, with `vkAllocateMemory` / `vkFreeMemory` routed through
//! counting wrappers so every allocator's driver traffic is measured the same way.
//!
//! VMA (vk-mem 0.5, `loaded` feature), gpu-allocator and ash-memory all take their
//! `vkAllocateMemory` / `vkFreeMemory` pointers from the `ash::Device` they are given, so
//! building that `ash::Device` from a function table whose two entries are our wrappers
//! counts all of them uniformly.

use ash::vk;
use std::collections::HashMap;
use std::ffi::{c_void, CStr};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Mutex, OnceLock};

static REAL_ALLOCATE: OnceLock<vk::PFN_vkAllocateMemory> = OnceLock::new();
static REAL_FREE: OnceLock<vk::PFN_vkFreeMemory> = OnceLock::new();
static REAL_GET_DEVICE_PROC_ADDR: OnceLock<vk::PFN_vkGetDeviceProcAddr> = OnceLock::new();
static REAL_GET_INSTANCE_PROC_ADDR: OnceLock<vk::PFN_vkGetInstanceProcAddr> = OnceLock::new();

static ALLOCATE_CALLS: AtomicU64 = AtomicU64::new(0);
static FREE_CALLS: AtomicU64 = AtomicU64::new(0);
static RESERVED: AtomicU64 = AtomicU64::new(0);
static PEAK_RESERVED: AtomicU64 = AtomicU64::new(0);
static SIZES: Mutex<Option<HashMap<u64, u64>>> = Mutex::new(None);

unsafe extern "system" fn counting_allocate_memory(
    device: vk::Device,
    p_allocate_info: *const vk::MemoryAllocateInfo<'_>,
    p_allocator: *const vk::AllocationCallbacks<'_>,
    p_memory: *mut vk::DeviceMemory,
) -> vk::Result {
    let real = REAL_ALLOCATE.get().expect("real vkAllocateMemory");
    // SAFETY: forwarded verbatim to the driver's entry point.
    let result = unsafe { real(device, p_allocate_info, p_allocator, p_memory) };
    if result == vk::Result::SUCCESS {
        // SAFETY: the caller passed a valid create info and output pointer.
        let (size, handle) = unsafe { ((*p_allocate_info).allocation_size, *p_memory) };
        ALLOCATE_CALLS.fetch_add(1, Relaxed);
        let now = RESERVED.fetch_add(size, Relaxed) + size;
        PEAK_RESERVED.fetch_max(now, Relaxed);
        SIZES
            .lock()
            .unwrap()
            .get_or_insert_with(HashMap::new)
            .insert(vk::Handle::as_raw(handle), size);
    }
    result
}

unsafe extern "system" fn counting_free_memory(
    device: vk::Device,
    memory: vk::DeviceMemory,
    p_allocator: *const vk::AllocationCallbacks<'_>,
) {
    if memory != vk::DeviceMemory::null() {
        // Forget the handle before the driver may hand it out again.
        let size = SIZES
            .lock()
            .unwrap()
            .as_mut()
            .and_then(|m| m.remove(&vk::Handle::as_raw(memory)));
        if let Some(size) = size {
            RESERVED.fetch_sub(size, Relaxed);
        }
        FREE_CALLS.fetch_add(1, Relaxed);
    }
    let real = REAL_FREE.get().expect("real vkFreeMemory");
    // SAFETY: forwarded verbatim to the driver's entry point.
    unsafe { real(device, memory, p_allocator) }
}

/// `vkGetDeviceProcAddr` that hands out the counting wrappers (for vulkano, which loads its
/// own device function table).
pub unsafe extern "system" fn counting_get_device_proc_addr(
    device: vk::Device,
    p_name: *const std::ffi::c_char,
) -> vk::PFN_vkVoidFunction {
    // SAFETY: `p_name` is a NUL-terminated string per the Vulkan contract.
    let name = unsafe { CStr::from_ptr(p_name) };
    // SAFETY: same signature shapes; the function pointers are only ever called through their
    // real types by the loader's caller.
    unsafe {
        if name == c"vkAllocateMemory" {
            Some(std::mem::transmute::<
                vk::PFN_vkAllocateMemory,
                unsafe extern "system" fn(),
            >(counting_allocate_memory))
        } else if name == c"vkFreeMemory" {
            Some(std::mem::transmute::<
                vk::PFN_vkFreeMemory,
                unsafe extern "system" fn(),
            >(counting_free_memory))
        } else if name == c"vkGetDeviceProcAddr" {
            Some(std::mem::transmute::<
                vk::PFN_vkGetDeviceProcAddr,
                unsafe extern "system" fn(),
            >(counting_get_device_proc_addr))
        } else {
            (REAL_GET_DEVICE_PROC_ADDR
                .get()
                .expect("real vkGetDeviceProcAddr"))(device, p_name)
        }
    }
}

/// `vkGetInstanceProcAddr` that routes device-level lookups through the counting wrappers.
pub unsafe extern "system" fn counting_get_instance_proc_addr(
    instance: vk::Instance,
    p_name: *const std::ffi::c_char,
) -> vk::PFN_vkVoidFunction {
    // SAFETY: `p_name` is a NUL-terminated string per the Vulkan contract.
    let name = unsafe { CStr::from_ptr(p_name) };
    if name == c"vkAllocateMemory" || name == c"vkFreeMemory" || name == c"vkGetDeviceProcAddr" {
        // SAFETY: as above.
        unsafe { counting_get_device_proc_addr(vk::Device::null(), p_name) }
    } else {
        // SAFETY: forwarded verbatim.
        unsafe {
            (REAL_GET_INSTANCE_PROC_ADDR
                .get()
                .expect("real vkGetInstanceProcAddr"))(instance, p_name)
        }
    }
}

/// Driver-traffic counters at one instant.
#[derive(Clone, Copy, Debug, Default)]
pub struct Counters {
    pub allocate_calls: u64,
    #[allow(dead_code)] // read in debugging sessions
    pub free_calls: u64,
    pub reserved: u64,
}

pub fn counters() -> Counters {
    Counters {
        allocate_calls: ALLOCATE_CALLS.load(Relaxed),
        free_calls: FREE_CALLS.load(Relaxed),
        reserved: RESERVED.load(Relaxed),
    }
}

/// The sizes of the memory objects alive now (allocated through the counting wrapper), in
/// ascending order.
pub fn live_object_sizes() -> Vec<u64> {
    let mut v: Vec<u64> = SIZES
        .lock()
        .unwrap()
        .as_ref()
        .map(|m| m.values().copied().collect())
        .unwrap_or_default();
    v.sort_unstable();
    v
}

/// Restart the peak-reserved high-water mark from the current reservation.
pub fn reset_peak() {
    PEAK_RESERVED.store(RESERVED.load(Relaxed), Relaxed);
}

pub fn peak_reserved() -> u64 {
    PEAK_RESERVED.load(Relaxed)
}

pub struct Vulkan {
    /// The Vulkan loader (also keeps its library loaded).
    pub entry: ash::Entry,
    pub instance: ash::Instance,
    pub physical_device: vk::PhysicalDevice,
    /// The device whose allocate/free entries are the counting wrappers.
    pub device: ash::Device,
    pub device_name: String,
    pub api_version: u32,
    pub properties: vk::PhysicalDeviceProperties,
    pub memory_properties: vk::PhysicalDeviceMemoryProperties,
}

impl Vulkan {
    pub fn new() -> Self {
        // SAFETY: plain Vulkan bring-up with valid create infos; handles live until Drop.
        unsafe {
            let entry = ash::Entry::load().expect("load the Vulkan loader");
            let app = vk::ApplicationInfo::default()
                .application_name(c"ash-memory-peers")
                .api_version(vk::API_VERSION_1_3);
            let instance = entry
                .create_instance(
                    &vk::InstanceCreateInfo::default().application_info(&app),
                    None,
                )
                .expect("vkCreateInstance");
            let physical_device = *instance
                .enumerate_physical_devices()
                .expect("enumerate physical devices")
                .first()
                .expect("no Vulkan physical device");
            let properties = instance.get_physical_device_properties(physical_device);
            let memory_properties = instance.get_physical_device_memory_properties(physical_device);
            let device_name = CStr::from_ptr(properties.device_name.as_ptr())
                .to_string_lossy()
                .into_owned();
            let api_version = properties.api_version.min(vk::API_VERSION_1_3);
            let priorities = [1.0f32];
            let queue = [vk::DeviceQueueCreateInfo::default()
                .queue_family_index(0)
                .queue_priorities(&priorities)];
            // No extensions or optional features: gpu-allocator's buffer_device_address stays off.
            let raw = instance
                .create_device(
                    physical_device,
                    &vk::DeviceCreateInfo::default().queue_create_infos(&queue),
                    None,
                )
                .expect("vkCreateDevice");
            let handle = raw.handle();
            let gdpa = instance.fp_v1_0().get_device_proc_addr;
            REAL_ALLOCATE.get_or_init(|| raw.fp_v1_0().allocate_memory);
            REAL_FREE.get_or_init(|| raw.fp_v1_0().free_memory);
            REAL_GET_DEVICE_PROC_ADDR.get_or_init(|| gdpa);
            REAL_GET_INSTANCE_PROC_ADDR.get_or_init(|| entry.static_fn().get_instance_proc_addr);
            let device = ash::Device::load_with(
                |name| {
                    if name == c"vkAllocateMemory" {
                        counting_allocate_memory as vk::PFN_vkAllocateMemory as *const c_void
                    } else if name == c"vkFreeMemory" {
                        counting_free_memory as vk::PFN_vkFreeMemory as *const c_void
                    } else {
                        std::mem::transmute::<vk::PFN_vkVoidFunction, *const c_void>(gdpa(
                            handle,
                            name.as_ptr(),
                        ))
                    }
                },
                handle,
            );
            Vulkan {
                entry,
                instance,
                physical_device,
                device,
                device_name,
                api_version,
                properties,
                memory_properties,
            }
        }
    }

    /// `memoryTypeBits` of a real buffer with the usual buffer usages.
    pub fn buffer_memory_type_bits(&self) -> u32 {
        // SAFETY: valid create info; the buffer is destroyed right away.
        unsafe {
            let info = vk::BufferCreateInfo::default().size(65536).usage(
                vk::BufferUsageFlags::TRANSFER_SRC
                    | vk::BufferUsageFlags::TRANSFER_DST
                    | vk::BufferUsageFlags::UNIFORM_BUFFER
                    | vk::BufferUsageFlags::STORAGE_BUFFER
                    | vk::BufferUsageFlags::VERTEX_BUFFER
                    | vk::BufferUsageFlags::INDEX_BUFFER,
            );
            let buffer = self
                .device
                .create_buffer(&info, None)
                .expect("vkCreateBuffer");
            let reqs = self.device.get_buffer_memory_requirements(buffer);
            self.device.destroy_buffer(buffer, None);
            reqs.memory_type_bits
        }
    }

    /// Real requirements of an optimal-tiling 2D image (created once, up front).
    pub fn image_requirements(
        &self,
        format: vk::Format,
        extent: u32,
        mips: u32,
        usage: vk::ImageUsageFlags,
    ) -> vk::MemoryRequirements {
        // SAFETY: valid create info; the image is destroyed right away.
        unsafe {
            let info = vk::ImageCreateInfo::default()
                .image_type(vk::ImageType::TYPE_2D)
                .format(format)
                .extent(vk::Extent3D {
                    width: extent,
                    height: extent,
                    depth: 1,
                })
                .mip_levels(mips)
                .array_layers(1)
                .samples(vk::SampleCountFlags::TYPE_1)
                .tiling(vk::ImageTiling::OPTIMAL)
                .usage(usage)
                .sharing_mode(vk::SharingMode::EXCLUSIVE)
                .initial_layout(vk::ImageLayout::UNDEFINED);
            let image = self
                .device
                .create_image(&info, None)
                .expect("vkCreateImage");
            let reqs = self.device.get_image_memory_requirements(image);
            self.device.destroy_image(image, None);
            reqs
        }
    }
}

impl Drop for Vulkan {
    fn drop(&mut self) {
        // SAFETY: every allocator built on this device has been dropped by now.
        unsafe {
            self.device.destroy_device(None);
            self.instance.destroy_instance(None);
        }
    }
}
