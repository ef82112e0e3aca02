//! The device the allocator works for: the user's `ash` handles plus the facts it needs.
//!
//! Vulkan cannot be asked which extensions and features an `ash::Device` was created with, so
//! the user states the memory-related ones in [`EnabledMemoryFeatures`]. Everything else the
//! allocator needs (memory types and heaps, `bufferImageGranularity`, `nonCoherentAtomSize`,
//! `maxMemoryAllocationCount`, the API version) is queried once, in [`Device::new`], and cached.
//!
//! [`Device`] also counts the `VkDeviceMemory` objects alive on it, because the driver's
//! `maxMemoryAllocationCount` is a hard limit shared by every allocator of the device.

use crate::allocator::memory_type::{MemoryProperties, MemoryPropertiesError};
use crate::layout::{DeviceAlignment, DeviceSize};
use ash::vk;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

/// Memory-related extensions and features the user enabled on the `ash::Device`.
///
/// Every field defaults to `false`. Set a field only when the extension or feature really was
/// enabled (or is core in the device's API version): the allocator then uses it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EnabledMemoryFeatures {
    /// The `apiVersion` the instance was created with (`VkApplicationInfo::apiVersion`). The
    /// device's functions of a Vulkan version are only used when both this and the physical
    /// device's version reach it. The default value is 0, which counts as Vulkan 1.0.
    pub instance_api_version: u32,
    /// `VK_KHR_dedicated_allocation` (core in Vulkan 1.1). Implied by an API version of 1.1 or
    /// more.
    pub dedicated_allocation: bool,
    /// `VK_KHR_get_memory_requirements2` (core in 1.1). Implied by an API version of 1.1 or
    /// more.
    pub get_memory_requirements2: bool,
    /// `VK_EXT_memory_budget`: per-heap usage and budget.
    pub memory_budget: bool,
    /// `VK_EXT_memory_priority` with its `memoryPriority` feature.
    pub memory_priority: bool,
    /// The `bufferDeviceAddress` feature (core in 1.2, or `VK_KHR_buffer_device_address`).
    pub buffer_device_address: bool,
    /// `VK_KHR_external_memory` (core in 1.1). Implied by an API version of 1.1 or more.
    pub external_memory: bool,
    /// The `protectedMemory` feature.
    pub protected_memory: bool,
    /// `VK_AMD_device_coherent_memory` with its `deviceCoherentMemory` feature.
    pub device_coherent_memory: bool,
}

/// Why a [`Device`] could not be created.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DeviceError {
    /// The memory properties the driver reported are inconsistent.
    #[error("invalid memory properties: {0}")]
    MemoryProperties(#[from] MemoryPropertiesError),
    /// A device limit that must be a power of two is not.
    #[error("device limit {name} = {value} is not a power of two")]
    InvalidLimit {
        /// The limit's name in the specification.
        name: &'static str,
        /// The reported value.
        value: u64,
    },
}

/// The device the allocator works for. Cheap to share as `Arc<Device>`.
pub struct Device {
    instance: ash::Instance,
    physical_device: vk::PhysicalDevice,
    device: ash::Device,
    api_version: u32,
    memory_properties: MemoryProperties,
    buffer_image_granularity: DeviceAlignment,
    non_coherent_atom_size: DeviceAlignment,
    max_memory_allocation_count: u32,
    features: EnabledMemoryFeatures,
    get_memory_requirements2_khr: Option<ash::khr::get_memory_requirements2::Device>,
    live_memory_objects: AtomicU32,
    memory_allocation_calls: AtomicU64,
    live_memory_bytes: AtomicU64,
    heap_usage: [AtomicU64; vk::MAX_MEMORY_HEAPS],
}

impl std::fmt::Debug for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Device")
            .field("device", &self.device.handle())
            .field("api_version", &self.api_version)
            .field("memory_properties", &self.memory_properties)
            .field("buffer_image_granularity", &self.buffer_image_granularity)
            .field("non_coherent_atom_size", &self.non_coherent_atom_size)
            .field(
                "max_memory_allocation_count",
                &self.max_memory_allocation_count,
            )
            .field("features", &self.features)
            .field("live_memory_objects", &self.live_memory_objects())
            .finish()
    }
}

impl Device {
    /// Wraps the user's handles and queries the facts the allocator needs.
    ///
    /// The handles are cloned, never destroyed: the user keeps ownership.
    ///
    /// # Safety
    ///
    /// - `device` was created from `physical_device`, which belongs to `instance`;
    /// - both handles stay valid (not destroyed) until this `Device` and every allocation made
    ///   through it have been dropped;
    /// - every field set in `features` names an extension or feature that was really enabled
    ///   on `device` (or is core in its API version).
    pub unsafe fn new(
        instance: &ash::Instance,
        physical_device: vk::PhysicalDevice,
        device: ash::Device,
        features: EnabledMemoryFeatures,
    ) -> Result<Arc<Self>, DeviceError> {
        // SAFETY: the caller guarantees that `physical_device` belongs to `instance`.
        let properties = unsafe { instance.get_physical_device_properties(physical_device) };
        // SAFETY: as above.
        let raw_memory = unsafe { instance.get_physical_device_memory_properties(physical_device) };
        let memory_properties = MemoryProperties::from_vk(&raw_memory)?;
        let limit = |name, value| {
            DeviceAlignment::new(value).ok_or(DeviceError::InvalidLimit { name, value })
        };
        let limits = &properties.limits;
        let buffer_image_granularity =
            limit("bufferImageGranularity", limits.buffer_image_granularity)?;
        let non_coherent_atom_size = limit("nonCoherentAtomSize", limits.non_coherent_atom_size)?;
        let api_version = properties.api_version.min(features.instance_api_version);
        let core_1_1 =
            vk::api_version_major(api_version) > 1 || vk::api_version_minor(api_version) >= 1;
        let mut features = features;
        if core_1_1 {
            features.dedicated_allocation = true;
            features.get_memory_requirements2 = true;
            features.external_memory = true;
        }
        let get_memory_requirements2_khr = (!core_1_1 && features.get_memory_requirements2)
            .then(|| ash::khr::get_memory_requirements2::Device::new(instance, &device));
        Ok(Arc::new(Self {
            instance: instance.clone(),
            physical_device,
            device,
            api_version,
            memory_properties,
            buffer_image_granularity,
            non_coherent_atom_size,
            max_memory_allocation_count: limits.max_memory_allocation_count,
            features,
            get_memory_requirements2_khr,
            live_memory_objects: AtomicU32::new(0),
            memory_allocation_calls: AtomicU64::new(0),
            live_memory_bytes: AtomicU64::new(0),
            heap_usage: std::array::from_fn(|_| AtomicU64::new(0)),
        }))
    }

    /// The user's `ash::Instance`.
    pub fn instance(&self) -> &ash::Instance {
        &self.instance
    }

    /// The physical device.
    pub fn physical_device(&self) -> vk::PhysicalDevice {
        self.physical_device
    }

    /// The user's `ash::Device`.
    pub fn ash(&self) -> &ash::Device {
        &self.device
    }

    /// The API version the allocator uses: the smaller of the physical device's and
    /// [`EnabledMemoryFeatures::instance_api_version`].
    pub fn api_version(&self) -> u32 {
        self.api_version
    }

    /// The memory types and heaps.
    pub fn memory_properties(&self) -> &MemoryProperties {
        &self.memory_properties
    }

    /// `bufferImageGranularity`.
    pub fn buffer_image_granularity(&self) -> DeviceAlignment {
        self.buffer_image_granularity
    }

    /// `nonCoherentAtomSize`.
    pub fn non_coherent_atom_size(&self) -> DeviceAlignment {
        self.non_coherent_atom_size
    }

    /// `maxMemoryAllocationCount`.
    pub fn max_memory_allocation_count(&self) -> u32 {
        self.max_memory_allocation_count
    }

    /// The enabled memory-related features, with those implied by the API version set.
    pub fn features(&self) -> &EnabledMemoryFeatures {
        &self.features
    }

    /// The number of `VkDeviceMemory` objects made through this crate that are alive now.
    pub fn live_memory_objects(&self) -> u32 {
        self.live_memory_objects.load(Ordering::Relaxed)
    }

    /// The number of successful `vkAllocateMemory` calls made through this crate so far.
    pub fn memory_allocation_calls(&self) -> u64 {
        self.memory_allocation_calls.load(Ordering::Relaxed)
    }

    /// The bytes of all live `VkDeviceMemory` objects made through this crate.
    pub fn live_memory_bytes(&self) -> DeviceSize {
        self.live_memory_bytes.load(Ordering::Relaxed)
    }

    /// Reserves one slot of `maxMemoryAllocationCount`, or returns `false` when all are used.
    pub(crate) fn reserve_memory_object(&self) -> bool {
        let max = self.max_memory_allocation_count;
        self.live_memory_objects
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| {
                (n < max).then_some(n + 1)
            })
            .is_ok()
    }

    /// Returns a slot taken by [`reserve_memory_object`](Self::reserve_memory_object).
    pub(crate) fn release_memory_object(&self) {
        self.live_memory_objects.fetch_sub(1, Ordering::AcqRel);
    }

    pub(crate) fn record_memory_allocated(&self, heap: u32, size: DeviceSize) {
        self.memory_allocation_calls.fetch_add(1, Ordering::Relaxed);
        self.live_memory_bytes.fetch_add(size, Ordering::Relaxed);
        self.heap_usage[heap as usize].fetch_add(size, Ordering::Relaxed);
    }

    pub(crate) fn record_memory_freed(&self, heap: u32, size: DeviceSize) {
        self.live_memory_bytes.fetch_sub(size, Ordering::Relaxed);
        self.heap_usage[heap as usize].fetch_sub(size, Ordering::Relaxed);
    }

    /// The bytes of live `VkDeviceMemory` objects made through this crate in heap `heap`
    /// (0 for a heap that does not exist).
    pub fn heap_usage_by_crate(&self, heap: u32) -> DeviceSize {
        self.heap_usage
            .get(heap as usize)
            .map_or(0, |u| u.load(Ordering::Relaxed))
    }

    /// Queries a buffer's or image's memory requirements, with the dedicated-allocation
    /// preference when `vkGet*MemoryRequirements2` is available.
    ///
    /// # Safety
    ///
    /// The resource is a valid buffer or non-disjoint image created from this device.
    pub(crate) unsafe fn raw_requirements(
        &self,
        resource: Resource,
    ) -> (
        vk::MemoryRequirements,
        vk::MemoryDedicatedRequirements<'static>,
    ) {
        let ash = &self.device;
        if !self.features.get_memory_requirements2 {
            // SAFETY: the caller guarantees the resource is valid and from this device.
            let reqs = unsafe {
                match resource {
                    Resource::Buffer(b) => ash.get_buffer_memory_requirements(b),
                    Resource::Image(i) => ash.get_image_memory_requirements(i),
                }
            };
            return (reqs, vk::MemoryDedicatedRequirements::default());
        }
        let mut dedicated = vk::MemoryDedicatedRequirements::default();
        let mut out = vk::MemoryRequirements2::default().push_next(&mut dedicated);
        let khr = self.get_memory_requirements2_khr.as_ref();
        // SAFETY: as above; the functions are core in the device's API version, or the
        // extension was enabled (the `Device::new` contract) when `khr` is set.
        unsafe {
            match resource {
                Resource::Buffer(buffer) => {
                    let info = vk::BufferMemoryRequirementsInfo2::default().buffer(buffer);
                    match khr {
                        Some(khr) => khr.get_buffer_memory_requirements2(&info, &mut out),
                        None => ash.get_buffer_memory_requirements2(&info, &mut out),
                    }
                }
                Resource::Image(image) => {
                    let info = vk::ImageMemoryRequirementsInfo2::default().image(image);
                    match khr {
                        Some(khr) => khr.get_image_memory_requirements2(&info, &mut out),
                        None => ash.get_image_memory_requirements2(&info, &mut out),
                    }
                }
            }
        }
        let reqs = out.memory_requirements;
        (reqs, strip(dedicated))
    }
}

/// A resource whose memory requirements are queried.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Resource {
    Buffer(vk::Buffer),
    Image(vk::Image),
}

/// Detaches a returned `VkMemoryDedicatedRequirements` from the chain it was filled through.
fn strip(d: vk::MemoryDedicatedRequirements<'_>) -> vk::MemoryDedicatedRequirements<'static> {
    vk::MemoryDedicatedRequirements::default()
        .prefers_dedicated_allocation(d.prefers_dedicated_allocation != 0)
        .requires_dedicated_allocation(d.requires_dedicated_allocation != 0)
}
