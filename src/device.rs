//! The device the allocator works for: the user's `ash` handles plus the facts it needs.
//!
//! Vulkan cannot be asked which API version an instance was created for, nor which
//! extensions and features an `ash::Device` was created with, so the user states them:
//! the instance's `apiVersion` is a required argument of [`MemoryDevice::new`] (forgetting it
//! would silently turn off the Vulkan 1.1 paths, among them the driver's "this resource
//! requires a memory object of its own"), and the memory-related extensions and features go
//! in [`EnabledMemoryFeatures`]. Everything else the allocator needs (memory types and heaps,
//! `bufferImageGranularity`, `nonCoherentAtomSize`, `maxMemoryAllocationCount`) is queried
//! once, in [`MemoryDevice::new`], and cached in plain data ([`MemoryProperties`]) that the pure
//! policy layers read.
//!
//! [`MemoryDevice`] also counts the `VkDeviceMemory` objects alive on it, because the driver's
//! `maxMemoryAllocationCount` is a hard limit shared by every allocator of the device, and
//! the bytes each heap holds, for the [budget](crate::budget).

use crate::layout::{DeviceAlignment, DeviceSize};
use ash::vk;
use smallvec::SmallVec;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

/// Memory-related extensions and features the user enabled on the `ash::Device`.
///
/// Every field defaults to `false`. Set a field only when the extension or feature really was
/// enabled (or is core in the API version given to [`MemoryDevice::new`]): the allocator then uses
/// it. New fields may be added; build the value with `..Default::default()`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EnabledMemoryFeatures {
    /// `VK_KHR_dedicated_allocation` (core in Vulkan 1.1). Implied by an API version of 1.1 or
    /// more. The default value is `false`.
    pub dedicated_allocation: bool,
    /// `VK_KHR_get_memory_requirements2` (core in 1.1). Implied by an API version of 1.1 or
    /// more. The default value is `false`.
    pub get_memory_requirements2: bool,
    /// `VK_EXT_memory_budget`: per-heap usage and budget. On a Vulkan 1.0 instance it needs
    /// `VK_KHR_get_physical_device_properties2`, whose entry point is then used. The default
    /// value is `false`.
    pub memory_budget: bool,
    /// `VK_EXT_memory_priority` with its `memoryPriority` feature. The default value is
    /// `false`.
    pub memory_priority: bool,
    /// The `bufferDeviceAddress` feature (core in 1.2, or `VK_KHR_buffer_device_address`).
    /// The default value is `false`.
    pub buffer_device_address: bool,
    /// `VK_KHR_external_memory` (core in 1.1). Implied by an API version of 1.1 or more. The
    /// default value is `false`.
    pub external_memory: bool,
    /// The `protectedMemory` feature. The default value is `false`.
    pub protected_memory: bool,
    /// `VK_KHR_bind_memory2` (core in 1.1): binds with a `pNext` chain
    /// (`vkBindBufferMemory2` / `vkBindImageMemory2`). Implied by an API version of 1.1 or
    /// more. The default value is `false`.
    pub bind_memory2: bool,
    /// `VK_KHR_external_memory_fd`: export and import of memory as POSIX file descriptors
    /// (see [`external_memory`](crate::external_memory)). The default value is `false`.
    pub external_memory_fd: bool,
    /// `VK_EXT_external_memory_host`: import of host allocations. The default value is
    /// `false`.
    pub external_memory_host: bool,
    /// `VK_KHR_maintenance4` (core in 1.3): memory requirements of a create info, without a
    /// resource. Implied by an API version of 1.3 or more. The default value is `false`.
    pub maintenance4: bool,
    /// `VK_AMD_device_coherent_memory` with its `deviceCoherentMemory` feature. The default
    /// value is `false`.
    pub device_coherent_memory: bool,
    #[doc(hidden)]
    pub _ne: crate::non_exhaustive::NonExhaustive,
}

impl EnabledMemoryFeatures {
    /// The feature that Vulkan requires before memory of a type with `flags` may be allocated
    /// at all, when it is not enabled: `protectedMemory` for a `PROTECTED` type,
    /// `deviceCoherentMemory` for a `DEVICE_COHERENT_AMD` or `DEVICE_UNCACHED_AMD` one
    /// (`vkAllocateMemory`'s valid usage).
    pub(crate) fn missing_for(&self, flags: vk::MemoryPropertyFlags) -> Option<&'static str> {
        use vk::MemoryPropertyFlags as F;
        if flags.contains(F::PROTECTED) && !self.protected_memory {
            Some("protectedMemory")
        } else if flags.intersects(F::DEVICE_COHERENT_AMD | F::DEVICE_UNCACHED_AMD)
            && !self.device_coherent_memory
        {
            Some("deviceCoherentMemory")
        } else {
            None
        }
    }
}

/// A plain copy of a device's memory types and heaps.
#[derive(Clone, Debug, Default)]
pub struct MemoryProperties {
    /// The memory types, indexed by memory type index.
    pub memory_types: SmallVec<[vk::MemoryType; 8]>,
    /// The memory heaps, indexed by heap index.
    pub memory_heaps: SmallVec<[vk::MemoryHeap; 4]>,
}

/// Why a set of memory properties was rejected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MemoryPropertiesError {
    /// More types or heaps than Vulkan allows (32 and 16).
    #[error("{types} memory types and {heaps} heaps exceed Vulkan's limits of 32 and 16")]
    TooMany {
        /// The reported type count.
        types: u32,
        /// The reported heap count.
        heaps: u32,
    },
    /// A memory type names a heap that does not exist.
    #[error("memory type {memory_type} names heap {heap}, but there are only {heap_count} heaps")]
    HeapOutOfRange {
        /// The memory type index.
        memory_type: u32,
        /// The heap it names.
        heap: u32,
        /// The number of heaps.
        heap_count: u32,
    },
}

impl MemoryProperties {
    /// Copies and checks the properties Vulkan reported.
    pub fn from_vk(p: &vk::PhysicalDeviceMemoryProperties) -> Result<Self, MemoryPropertiesError> {
        if p.memory_type_count as usize > vk::MAX_MEMORY_TYPES
            || p.memory_heap_count as usize > vk::MAX_MEMORY_HEAPS
        {
            return Err(MemoryPropertiesError::TooMany {
                types: p.memory_type_count,
                heaps: p.memory_heap_count,
            });
        }
        let props = Self {
            memory_types: p.memory_types[..p.memory_type_count as usize].into(),
            memory_heaps: p.memory_heaps[..p.memory_heap_count as usize].into(),
        };
        for (i, t) in props.memory_types.iter().enumerate() {
            if t.heap_index >= p.memory_heap_count {
                return Err(MemoryPropertiesError::HeapOutOfRange {
                    memory_type: i as u32,
                    heap: t.heap_index,
                    heap_count: p.memory_heap_count,
                });
            }
        }
        Ok(props)
    }

    /// A mask with one bit per existing memory type.
    pub fn all_types_mask(&self) -> u32 {
        mask_of_count(self.memory_types.len())
    }

    /// Memory type `index`, or `None` when there is no such type.
    pub fn memory_type(&self, index: u32) -> Option<vk::MemoryType> {
        self.memory_types.get(index as usize).copied()
    }

    /// The heap that memory type `index` lives in, or `None` when there is no such type (or
    /// its heap index is out of range, which [`from_vk`](Self::from_vk) rules out).
    pub fn heap_of_type(&self, index: u32) -> Option<vk::MemoryHeap> {
        let t = self.memory_type(index)?;
        self.memory_heaps.get(t.heap_index as usize).copied()
    }

    /// The size of the heap that memory type `index` lives in, or `None` when there is no
    /// such type.
    pub fn heap_size_of_type(&self, index: u32) -> Option<DeviceSize> {
        self.heap_of_type(index).map(|h| h.size)
    }
}

/// A mask with the lowest `count` bits set (all 32 from 32 on).
pub(crate) fn mask_of_count(count: usize) -> u32 {
    if count >= 32 {
        u32::MAX
    } else {
        (1u32 << count) - 1
    }
}

/// The old name of [`MemoryDevice`] (it clashed with `ash::Device`).
#[deprecated(since = "0.2.0", note = "renamed to `MemoryDevice`")]
pub type Device = MemoryDevice;

/// Why a [`MemoryDevice`] could not be created.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
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
    /// A heap size limit for a heap the device does not have, or of zero bytes.
    #[error("invalid size limit {limit} for heap {heap} (the device has {count} heaps)")]
    InvalidHeapSizeLimit {
        /// The heap index.
        heap: u32,
        /// The limit given.
        limit: DeviceSize,
        /// The device's heap count.
        count: u32,
    },
    /// A function that a claimed extension provides could not be loaded.
    #[error("{0} could not be loaded, although the extension that provides it was claimed")]
    MissingFunction(&'static str),
}

/// The device the allocator works for. Cheap to share as `Arc<Device>`.
pub struct MemoryDevice {
    instance: ash::Instance,
    physical_device: vk::PhysicalDevice,
    device: ash::Device,
    api_version: u32,
    memory_properties: MemoryProperties,
    /// Bit `i` set when heap `i`'s size is a user's limit (a hard cap).
    heap_limited: u32,
    /// The user's device-memory callbacks.
    memory_callbacks: crate::memory_callbacks::CallbackSlot,
    buffer_image_granularity: DeviceAlignment,
    non_coherent_atom_size: DeviceAlignment,
    max_memory_allocation_count: u32,
    features: EnabledMemoryFeatures,
    get_memory_requirements2_khr: Option<ash::khr::get_memory_requirements2::Device>,
    /// `vkBind*Memory2KHR`, when `VK_KHR_bind_memory2` is claimed below Vulkan 1.1.
    bind_memory2_khr: Option<ash::khr::bind_memory2::Device>,
    /// `vkGetPhysicalDeviceMemoryProperties2KHR`, on a Vulkan 1.0 instance with
    /// `VK_EXT_memory_budget` (which requires `VK_KHR_get_physical_device_properties2`).
    memory_properties2_khr: Option<vk::PFN_vkGetPhysicalDeviceMemoryProperties2>,
    live_memory_objects: AtomicU32,
    memory_allocation_calls: AtomicU64,
    live_memory_bytes: AtomicU64,
    /// Per heap: bytes of live memory objects made through this crate plus bytes reserved by
    /// `vkAllocateMemory` calls in flight (see [`crate::budget`]).
    heap_reserved: [AtomicU64; vk::MAX_MEMORY_HEAPS],
    /// Per heap: bytes of live memory objects made through this crate.
    heap_usage: [AtomicU64; vk::MAX_MEMORY_HEAPS],
}

impl std::fmt::Debug for MemoryDevice {
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

/// Caps the heaps of `props` at `limits`; returns the mask of the heaps capped.
fn limit_heaps(
    props: &mut MemoryProperties,
    limits: &[Option<DeviceSize>],
) -> Result<u32, DeviceError> {
    let count = props.memory_heaps.len() as u32;
    let mut limited = 0;
    for (i, limit) in limits.iter().enumerate() {
        let Some(limit) = *limit else { continue };
        let heap = props.memory_heaps.get_mut(i).filter(|_| limit > 0).ok_or(
            DeviceError::InvalidHeapSizeLimit {
                heap: i as u32,
                limit,
                count,
            },
        )?;
        if limit < heap.size {
            heap.size = limit;
            limited |= 1 << i;
        }
    }
    Ok(limited)
}

/// Whether `version` is Vulkan 1.1 or later (0 counts as 1.0, as in `VkApplicationInfo`).
fn is_1_1(version: u32) -> bool {
    vk::api_version_major(version) > 1 || vk::api_version_minor(version) >= 1
}

impl MemoryDevice {
    /// Wraps the user's handles and queries the facts the allocator needs.
    ///
    /// `instance_api_version` is the `apiVersion` the instance was created with
    /// (`VkApplicationInfo::apiVersion`, 0 meaning 1.0): the device's functions of a Vulkan
    /// version are only used when both it and the physical device's version reach that
    /// version. `entry` is the loader the instance came from; it is only used to load
    /// `vkGetPhysicalDeviceMemoryProperties2KHR` when `memory_budget` is claimed on a
    /// Vulkan 1.0 instance. The handles are cloned, never destroyed: the user keeps ownership.
    ///
    /// # Safety
    ///
    /// - `instance` was created from `entry` with `instance_api_version`; `device` was
    ///   created from `physical_device`, which belongs to `instance`;
    /// - both handles stay valid (not destroyed) until this `MemoryDevice` and every allocation made
    ///   through it have been dropped;
    /// - every field set in `features` names an extension or feature that was really enabled
    ///   (or is core in the API version); `memory_budget` on a 1.0 instance also means that
    ///   `VK_KHR_get_physical_device_properties2` was enabled on the instance.
    pub unsafe fn new(
        entry: &ash::Entry,
        instance: &ash::Instance,
        physical_device: vk::PhysicalDevice,
        device: ash::Device,
        instance_api_version: u32,
        features: EnabledMemoryFeatures,
    ) -> Result<Arc<Self>, DeviceError> {
        // SAFETY: the caller's contract.
        unsafe {
            Self::new_with_heap_size_limits(
                entry,
                instance,
                physical_device,
                device,
                instance_api_version,
                features,
                &[],
            )
        }
    }

    /// [`new`](Self::new), with a hard limit on the bytes taken from some heaps (VMA's
    /// `pHeapSizeLimit`): `heap_size_limits[i]`, when `Some` and smaller than heap `i`'s
    /// size, becomes that heap's size for everything the crate does with this device: block
    /// sizes, the largest memory object, the [budget](crate::budget) (its estimate, and the
    /// extension's figure capped at the limit), and a hard cap: the memory objects of the
    /// heap made through this crate never total more than the limit, and a
    /// `vkAllocateMemory` that would pass it fails with
    /// [`MemoryObjectError::OutOfDeviceMemory`](crate::MemoryObjectError::OutOfDeviceMemory)
    /// before the driver is called, so that the allocator's fallbacks (smaller blocks, other
    /// memory types) run as on a smaller GPU. Entries past the device's heap count, and
    /// limits of zero, are rejected with [`DeviceError::InvalidHeapSizeLimit`].
    ///
    /// Used to cap VRAM for an application that shares the GPU, and to test low-memory
    /// behaviour on a big one.
    ///
    /// # Safety
    ///
    /// As for [`new`](Self::new).
    pub unsafe fn new_with_heap_size_limits(
        entry: &ash::Entry,
        instance: &ash::Instance,
        physical_device: vk::PhysicalDevice,
        device: ash::Device,
        instance_api_version: u32,
        features: EnabledMemoryFeatures,
        heap_size_limits: &[Option<DeviceSize>],
    ) -> Result<Arc<Self>, DeviceError> {
        // SAFETY: the caller guarantees that `physical_device` belongs to `instance`.
        let properties = unsafe { instance.get_physical_device_properties(physical_device) };
        // SAFETY: as above.
        let raw_memory = unsafe { instance.get_physical_device_memory_properties(physical_device) };
        let mut memory_properties = MemoryProperties::from_vk(&raw_memory)?;
        let heap_limited = limit_heaps(&mut memory_properties, heap_size_limits)?;
        let limit = |name, value| {
            DeviceAlignment::new(value).ok_or(DeviceError::InvalidLimit { name, value })
        };
        let limits = &properties.limits;
        let buffer_image_granularity =
            limit("bufferImageGranularity", limits.buffer_image_granularity)?;
        let non_coherent_atom_size = limit("nonCoherentAtomSize", limits.non_coherent_atom_size)?;
        let instance_api_version = instance_api_version.max(vk::API_VERSION_1_0);
        let api_version = properties.api_version.min(instance_api_version);
        let core_1_1 = is_1_1(api_version);
        let mut features = features;
        if core_1_1 {
            features.dedicated_allocation = true;
            features.get_memory_requirements2 = true;
            features.external_memory = true;
            features.bind_memory2 = true;
        }
        if vk::api_version_major(api_version) > 1 || vk::api_version_minor(api_version) >= 3 {
            features.maintenance4 = true;
        }
        let bind_memory2_khr = (!core_1_1 && features.bind_memory2)
            .then(|| ash::khr::bind_memory2::Device::new(instance, &device));
        let get_memory_requirements2_khr = (!core_1_1 && features.get_memory_requirements2)
            .then(|| ash::khr::get_memory_requirements2::Device::new(instance, &device));
        let memory_properties2_khr = if features.memory_budget && !is_1_1(instance_api_version) {
            const NAME: &std::ffi::CStr = c"vkGetPhysicalDeviceMemoryProperties2KHR";
            // SAFETY: `instance` was created from `entry` (the caller's contract); the name is
            // a valid C string.
            let f = unsafe { entry.get_instance_proc_addr(instance.handle(), NAME.as_ptr()) };
            let f = f.ok_or(DeviceError::MissingFunction(
                "vkGetPhysicalDeviceMemoryProperties2KHR",
            ))?;
            // SAFETY: the loader returned the entry point of that name, whose signature is
            // that of `vkGetPhysicalDeviceMemoryProperties2` (the KHR function was promoted
            // unchanged).
            Some(unsafe {
                std::mem::transmute::<
                    unsafe extern "system" fn(),
                    vk::PFN_vkGetPhysicalDeviceMemoryProperties2,
                >(f)
            })
        } else {
            None
        };
        Ok(Arc::new(Self {
            instance: instance.clone(),
            physical_device,
            device,
            api_version,
            memory_properties,
            heap_limited,
            memory_callbacks: Default::default(),
            buffer_image_granularity,
            non_coherent_atom_size,
            max_memory_allocation_count: limits.max_memory_allocation_count,
            features,
            get_memory_requirements2_khr,
            bind_memory2_khr,
            memory_properties2_khr,
            live_memory_objects: AtomicU32::new(0),
            memory_allocation_calls: AtomicU64::new(0),
            live_memory_bytes: AtomicU64::new(0),
            heap_reserved: std::array::from_fn(|_| AtomicU64::new(0)),
            heap_usage: std::array::from_fn(|_| AtomicU64::new(0)),
        }))
    }

    /// The device-memory callbacks' slot.
    pub(crate) fn memory_callbacks(&self) -> &crate::memory_callbacks::CallbackSlot {
        &self.memory_callbacks
    }

    /// Whether heap `heap`'s size is a limit set with
    /// [`new_with_heap_size_limits`](Self::new_with_heap_size_limits).
    pub fn is_heap_size_limited(&self, heap: u32) -> bool {
        heap < 32 && self.heap_limited & (1 << heap) != 0
    }

    /// The `VK_KHR_bind_memory2` functions, below Vulkan 1.1.
    pub(crate) fn bind_memory2_khr(&self) -> Option<&ash::khr::bind_memory2::Device> {
        self.bind_memory2_khr.as_ref()
    }

    /// The user's `ash::Instance`.
    pub fn instance(&self) -> &ash::Instance {
        &self.instance
    }

    /// The physical device.
    pub fn physical_device(&self) -> vk::PhysicalDevice {
        self.physical_device
    }

    /// The physical device's properties (`vkGetPhysicalDeviceProperties`): its name, type,
    /// version and limits.
    pub fn physical_device_properties(&self) -> vk::PhysicalDeviceProperties {
        // SAFETY: `MemoryDevice::new`'s contract: the instance and physical device are valid while
        // this `MemoryDevice` lives.
        unsafe {
            self.instance
                .get_physical_device_properties(self.physical_device)
        }
    }

    /// The user's `ash::Device`.
    pub fn ash(&self) -> &ash::Device {
        &self.device
    }

    /// The API version the allocator uses: the smaller of the physical device's and the
    /// instance's (given to [`MemoryDevice::new`]).
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
    #[inline]
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

    /// The bytes of live `VkDeviceMemory` objects made through this crate in heap `heap`
    /// (0 for a heap that does not exist).
    pub fn heap_usage_by_crate(&self, heap: u32) -> DeviceSize {
        self.heap_usage
            .get(heap as usize)
            .map_or(0, |u| u.load(Ordering::Relaxed))
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

    /// The bytes of heap `heap` held or reserved through this crate.
    pub(crate) fn heap_reserved(&self, heap: u32) -> &AtomicU64 {
        &self.heap_reserved[heap as usize]
    }

    /// Records a memory object of `size` bytes in `heap` whose bytes were reserved.
    pub(crate) fn record_memory_allocated(&self, heap: u32, size: DeviceSize) {
        self.memory_allocation_calls.fetch_add(1, Ordering::Relaxed);
        self.live_memory_bytes.fetch_add(size, Ordering::Relaxed);
        self.heap_usage[heap as usize].fetch_add(size, Ordering::Relaxed);
    }

    /// Records that a memory object of `size` bytes in `heap` was freed, and gives back its
    /// reservation.
    pub(crate) fn record_memory_freed(&self, heap: u32, size: DeviceSize) {
        self.live_memory_bytes.fetch_sub(size, Ordering::Relaxed);
        self.heap_usage[heap as usize].fetch_sub(size, Ordering::Relaxed);
        self.heap_reserved[heap as usize].fetch_sub(size, Ordering::AcqRel);
    }

    /// Fills `props` (and its chain) through `vkGetPhysicalDeviceMemoryProperties2`, or its
    /// KHR alias on a Vulkan 1.0 instance.
    ///
    /// # Safety
    ///
    /// Every structure chained to `props` is allowed by an extension the user claimed.
    pub(crate) unsafe fn memory_properties2(
        &self,
        props: &mut vk::PhysicalDeviceMemoryProperties2<'_>,
    ) {
        match self.memory_properties2_khr {
            // SAFETY: loaded for this instance in `new`; the physical device belongs to it;
            // the chain is the caller's.
            Some(f) => unsafe { f(self.physical_device, props) },
            // SAFETY: the instance is Vulkan 1.1 or later (otherwise the KHR pointer would be
            // set whenever this is called, see `crate::budget`); the rest as above.
            None => unsafe {
                self.instance
                    .get_physical_device_memory_properties2(self.physical_device, props)
            },
        }
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
        // extension was enabled (the `MemoryDevice::new` contract) when `khr` is set.
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

impl MemoryDevice {
    /// Installs (`Some`) or removes (`None`) the callbacks told of every memory object this
    /// crate allocates or frees on the device from now on (see
    /// [`memory_callbacks`](crate::memory_callbacks)). An object allocated before the
    /// callbacks were installed is still reported when it is freed.
    pub fn set_memory_callbacks(
        &self,
        callbacks: Option<Arc<dyn crate::memory_callbacks::DeviceMemoryCallbacks>>,
    ) {
        *self.memory_callbacks().write() = callbacks;
    }

    /// Tells the callbacks of a new memory object.
    pub(crate) fn notify_allocated(
        &self,
        memory_type_index: u32,
        memory: vk::DeviceMemory,
        size: DeviceSize,
    ) {
        if let Some(c) = &*self.memory_callbacks().read() {
            c.allocated(memory_type_index, memory, size);
        }
    }

    /// Tells the callbacks of a memory object about to be freed.
    pub(crate) fn notify_freeing(
        &self,
        memory_type_index: u32,
        memory: vk::DeviceMemory,
        size: DeviceSize,
    ) {
        if let Some(c) = &*self.memory_callbacks().read() {
            c.freeing(memory_type_index, memory, size);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_properties_lookups_never_panic() {
        let mut raw = vk::PhysicalDeviceMemoryProperties {
            memory_type_count: 1,
            memory_heap_count: 1,
            ..Default::default()
        };
        raw.memory_heaps[0].size = 1 << 30;
        let p = MemoryProperties::from_vk(&raw).unwrap();
        assert_eq!(p.heap_size_of_type(0), Some(1 << 30));
        assert_eq!(p.heap_size_of_type(1), None);
        assert_eq!(p.heap_size_of_type(u32::MAX), None);
        assert_eq!(p.all_types_mask(), 1);
        raw.memory_types[0].heap_index = 3;
        assert!(matches!(
            MemoryProperties::from_vk(&raw),
            Err(MemoryPropertiesError::HeapOutOfRange { heap: 3, .. })
        ));
        raw.memory_type_count = 40;
        assert!(matches!(
            MemoryProperties::from_vk(&raw),
            Err(MemoryPropertiesError::TooMany { .. })
        ));
        assert_eq!(mask_of_count(32), u32::MAX);
        assert_eq!(mask_of_count(3), 0b111);
        assert_eq!(mask_of_count(0), 0);
    }

    #[test]
    fn api_versions() {
        assert!(!is_1_1(0));
        assert!(!is_1_1(vk::API_VERSION_1_0));
        assert!(is_1_1(vk::API_VERSION_1_1));
        assert!(is_1_1(vk::API_VERSION_1_3));
        assert!(is_1_1(vk::make_api_version(0, 2, 0, 0)));
    }
}
