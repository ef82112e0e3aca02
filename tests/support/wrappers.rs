//! The `extern "system"` entry points of the simulated driver. Each finds its [`SimState`] in
//! the registry by the dispatchable handle it is called with, checks and records the call,
//! and forwards it to the real function (lavapipe, below the validation layer).
//!
//! A panic here would cross an `extern "system"` boundary and abort, so problems are recorded
//! as violations (failing the test when the `Sim` is dropped) instead of asserted.

use super::{
    registry, AllocCall, AllocChain, Bound, DedicatedTo, EntryPoint, LiveMemory, Properties2Call,
    SimState,
};
use ash::vk;
use std::ffi::{c_char, c_void, CStr};
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// The name the crate looks up on a Vulkan 1.0 instance with `VK_EXT_memory_budget`.
const MEMORY_PROPERTIES2_KHR: &CStr = c"vkGetPhysicalDeviceMemoryProperties2KHR";

/// The most structures a chain is followed for (a longer one is taken for a loop).
const MAX_CHAIN: usize = 64;

/// The real loader, loaded once for the process and never unloaded, so that the
/// `vkGetInstanceProcAddr` of every [`entry`] can forward to it at any time.
static REAL_LOADER: OnceLock<ash::Entry> = OnceLock::new();

fn device_state(device: vk::Device) -> Arc<SimState> {
    registry()
        .devices
        .get(&device)
        .cloned()
        .expect("simulated driver called with a device that is not registered")
}

fn physical_device_state(physical_device: vk::PhysicalDevice) -> Arc<SimState> {
    registry()
        .physical_devices
        .get(&physical_device)
        .cloned()
        .expect("simulated driver called with a physical device that is not registered")
}

/// Copies the real function tables, replacing the memory-related entry points.
pub(super) fn wrap(instance: &ash::Instance, device: &ash::Device) -> (ash::Instance, ash::Device) {
    let mut i0 = instance.fp_v1_0().clone();
    i0.get_physical_device_properties = get_physical_device_properties;
    i0.get_physical_device_memory_properties = get_physical_device_memory_properties;
    let mut i1 = instance.fp_v1_1().clone();
    i1.get_physical_device_properties2 = get_physical_device_properties2;
    i1.get_physical_device_memory_properties2 = get_physical_device_memory_properties2;
    let instance =
        ash::Instance::from_parts_1_3(instance.handle(), i0, i1, instance.fp_v1_3().clone());
    let mut d0 = device.fp_v1_0().clone();
    d0.allocate_memory = allocate_memory;
    d0.free_memory = free_memory;
    d0.map_memory = map_memory;
    d0.unmap_memory = unmap_memory;
    d0.flush_mapped_memory_ranges = flush_mapped_memory_ranges;
    d0.invalidate_mapped_memory_ranges = invalidate_mapped_memory_ranges;
    d0.get_buffer_memory_requirements = get_buffer_memory_requirements;
    d0.get_image_memory_requirements = get_image_memory_requirements;
    d0.bind_buffer_memory = bind_buffer_memory;
    d0.bind_image_memory = bind_image_memory;
    d0.create_image = create_image;
    d0.destroy_image = destroy_image;
    d0.destroy_buffer = destroy_buffer;
    let mut d1 = device.fp_v1_1().clone();
    d1.get_buffer_memory_requirements2 = get_buffer_memory_requirements2;
    d1.get_image_memory_requirements2 = get_image_memory_requirements2;
    let device = ash::Device::from_parts_1_3(
        device.handle(),
        d0,
        d1,
        device.fp_v1_2().clone(),
        device.fp_v1_3().clone(),
    );
    (instance, device)
}

fn patch_limits(state: &SimState, limits: &mut vk::PhysicalDeviceLimits) {
    limits.buffer_image_granularity = state.layout.buffer_image_granularity;
    limits.non_coherent_atom_size = state.layout.non_coherent_atom_size;
    limits.max_memory_allocation_count = state.layout.max_memory_allocation_count;
}

unsafe extern "system" fn get_physical_device_properties(
    physical_device: vk::PhysicalDevice,
    p_properties: *mut vk::PhysicalDeviceProperties,
) {
    let state = physical_device_state(physical_device);
    // SAFETY: forwarded with the caller's valid arguments; afterwards `p_properties` points to
    // the filled structure.
    unsafe {
        (state.real_instance.fp_v1_0().get_physical_device_properties)(
            physical_device,
            p_properties,
        );
        patch_limits(&state, &mut (*p_properties).limits);
    }
}

unsafe extern "system" fn get_physical_device_properties2(
    physical_device: vk::PhysicalDevice,
    p_properties: *mut vk::PhysicalDeviceProperties2<'_>,
) {
    let state = physical_device_state(physical_device);
    // SAFETY: as in `get_physical_device_properties`.
    unsafe {
        (state
            .real_instance
            .fp_v1_1()
            .get_physical_device_properties2)(physical_device, p_properties);
        patch_limits(&state, &mut (*p_properties).properties.limits);
    }
}

unsafe extern "system" fn get_physical_device_memory_properties(
    physical_device: vk::PhysicalDevice,
    p_properties: *mut vk::PhysicalDeviceMemoryProperties,
) {
    let state = physical_device_state(physical_device);
    // SAFETY: the caller passes a valid pointer to write the properties to.
    unsafe { *p_properties = state.layout.to_vk() };
}

unsafe extern "system" fn get_physical_device_memory_properties2(
    physical_device: vk::PhysicalDevice,
    p_properties: *mut vk::PhysicalDeviceMemoryProperties2<'_>,
) {
    // SAFETY: the caller's arguments, valid for the core entry point.
    unsafe { memory_properties2(physical_device, p_properties, EntryPoint::Core) }
}

/// The simulated `vkGetPhysicalDeviceMemoryProperties2KHR`, handed out by [`entry`].
unsafe extern "system" fn get_physical_device_memory_properties2_khr(
    physical_device: vk::PhysicalDevice,
    p_properties: *mut vk::PhysicalDeviceMemoryProperties2<'_>,
) {
    // SAFETY: the caller's arguments; the KHR function has the core one's signature.
    unsafe { memory_properties2(physical_device, p_properties, EntryPoint::Khr) }
}

/// Both entry points of `vkGetPhysicalDeviceMemoryProperties2`: a chained
/// `VkPhysicalDeviceMemoryBudgetPropertiesEXT` is unlinked while the real driver (which does not
/// support the extension) fills the rest, then relinked and filled from the simulated numbers
/// when the simulated device claims the extension; the core part is the simulated layout.
///
/// # Safety
///
/// `p_properties` is a valid, writable output structure with a valid chain.
unsafe fn memory_properties2(
    physical_device: vk::PhysicalDevice,
    p_properties: *mut vk::PhysicalDeviceMemoryProperties2<'_>,
    entry: EntryPoint,
) {
    let state = physical_device_state(physical_device);
    // SAFETY: `p_properties` is valid (the caller's contract); every element of an output
    // chain starts like `VkBaseOutStructure`, and the links are only rewritten to skip the
    // budget structure while the real driver runs, then restored.
    unsafe {
        let mut link: *mut *mut vk::BaseOutStructure<'_> =
            std::ptr::addr_of_mut!((*p_properties).p_next).cast();
        let mut budget = None;
        let mut steps = 0;
        while !(*link).is_null() && steps < MAX_CHAIN {
            let s = *link;
            if (*s).s_type == vk::StructureType::PHYSICAL_DEVICE_MEMORY_BUDGET_PROPERTIES_EXT {
                *link = (*s).p_next;
                budget = Some((link, s));
                break;
            }
            link = std::ptr::addr_of_mut!((*s).p_next);
            steps += 1;
        }
        (state
            .real_instance
            .fp_v1_1()
            .get_physical_device_memory_properties2)(physical_device, p_properties);
        (*p_properties).memory_properties = state.layout.to_vk();
        let Some((link, s)) = budget else {
            state.inner().properties2_calls.push(Properties2Call {
                entry,
                budget: false,
            });
            return;
        };
        *link = s;
        {
            let mut inner = state.inner();
            inner.properties2_calls.push(Properties2Call {
                entry,
                budget: true,
            });
            if state.features.memory_budget {
                let b = &mut *s.cast::<vk::PhysicalDeviceMemoryBudgetPropertiesEXT<'_>>();
                for i in 0..vk::MAX_MEMORY_HEAPS {
                    let (usage, budget) = match inner.heap_used.get(i) {
                        Some(&used) => (
                            used.saturating_add(inner.heap_other[i]),
                            inner.heap_budget[i],
                        ),
                        None => (0, 0),
                    };
                    b.heap_usage[i] = usage;
                    b.heap_budget[i] = budget;
                }
            } else {
                inner.violations.push(
                    "VkPhysicalDeviceMemoryBudgetPropertiesEXT chained, but the simulated device \
                     does not claim VK_EXT_memory_budget"
                        .into(),
                );
            }
        }
    }
    let hook = state
        .budget_hook
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    if let Some(hook) = hook {
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| hook())).is_err() {
            state.violation("the budget hook panicked".into());
        }
    }
}

/// The loader entry of a [`Sim`](super::Sim): its `vkGetInstanceProcAddr` is
/// [`get_instance_proc_addr`].
pub(super) fn entry() -> ash::Entry {
    if REAL_LOADER.get().is_none() {
        // SAFETY: loading the system's Vulkan loader; it is kept for the whole process.
        let loaded = unsafe { ash::Entry::load() }.unwrap_or_else(|e| {
            panic!(
                "the Vulkan loader could not be loaded ({e}): {}",
                crate::common::INSTALL_HINT
            )
        });
        let _ = REAL_LOADER.set(loaded);
    }
    // SAFETY: `get_instance_proc_addr` follows Vulkan 1.0's semantics: it forwards to the
    // real loader (kept loaded for the process), except for one name it answers with a
    // function of the right signature.
    unsafe {
        ash::Entry::from_static_fn(ash::StaticFn {
            get_instance_proc_addr,
        })
    }
}

/// `vkGetInstanceProcAddr` of [`entry`]: `vkGetPhysicalDeviceMemoryProperties2KHR` of a
/// simulated instance is the simulated one; everything else is the real loader's.
unsafe extern "system" fn get_instance_proc_addr(
    instance: vk::Instance,
    p_name: *const c_char,
) -> vk::PFN_vkVoidFunction {
    if p_name.is_null() {
        return None;
    }
    // SAFETY: the caller passes a NUL-terminated name.
    let name = unsafe { CStr::from_ptr(p_name) };
    if instance != vk::Instance::null() && name == MEMORY_PROPERTIES2_KHR {
        let state = registry().instances.get(&instance).cloned();
        if let Some(state) = state {
            state.inner().khr_lookups += 1;
            let f: vk::PFN_vkGetPhysicalDeviceMemoryProperties2 =
                get_physical_device_memory_properties2_khr;
            // SAFETY: a function pointer cast to the untyped `PFN_vkVoidFunction`, as
            // `vkGetInstanceProcAddr` returns them; the caller casts it back to the type of
            // the name it asked for, which is this one's.
            return Some(unsafe {
                std::mem::transmute::<
                    vk::PFN_vkGetPhysicalDeviceMemoryProperties2,
                    unsafe extern "system" fn(),
                >(f)
            });
        }
    }
    let real = REAL_LOADER.get()?;
    // SAFETY: the caller's arguments, forwarded to the real loader.
    unsafe { (real.static_fn().get_instance_proc_addr)(instance, p_name) }
}

/// Whether the `pNext` chain starting at `p_next` holds a structure of type `s_type`.
///
/// # Safety
///
/// `p_next` is null or a valid Vulkan structure chain.
unsafe fn chain_find(p_next: *const c_void, s_type: vk::StructureType) -> *const c_void {
    let mut p = p_next.cast::<vk::BaseInStructure<'_>>();
    while !p.is_null() {
        // SAFETY: the caller guarantees a valid chain; every element starts like
        // `VkBaseInStructure`.
        let base = unsafe { &*p };
        if base.s_type == s_type {
            return p.cast();
        }
        p = base.p_next;
    }
    std::ptr::null()
}

/// Reads the `pNext` chain of a `VkMemoryAllocateInfo`.
///
/// # Safety
///
/// `p_next` is null or a valid Vulkan structure chain.
unsafe fn parse_alloc_chain(p_next: *const c_void, problems: &mut Vec<String>) -> AllocChain {
    let mut chain = AllocChain::default();
    let mut p = p_next.cast::<vk::BaseInStructure<'_>>();
    while !p.is_null() {
        if chain.s_types.len() == MAX_CHAIN {
            problems.push(format!(
                "vkAllocateMemory chain longer than {MAX_CHAIN} structures (a loop?)"
            ));
            break;
        }
        // SAFETY: the caller guarantees a valid chain: every element starts like
        // `VkBaseInStructure`, and its `sType` says which structure it is.
        unsafe {
            let base = &*p;
            chain.s_types.push(base.s_type);
            match base.s_type {
                vk::StructureType::MEMORY_DEDICATED_ALLOCATE_INFO => {
                    let d = &*p.cast::<vk::MemoryDedicatedAllocateInfo<'_>>();
                    chain.dedicated = Some(DedicatedTo {
                        buffer: d.buffer,
                        image: d.image,
                    });
                }
                vk::StructureType::EXPORT_MEMORY_ALLOCATE_INFO => {
                    let e = &*p.cast::<vk::ExportMemoryAllocateInfo<'_>>();
                    chain.export_handle_types = Some(e.handle_types);
                }
                vk::StructureType::MEMORY_ALLOCATE_FLAGS_INFO => {
                    let f = &*p.cast::<vk::MemoryAllocateFlagsInfo<'_>>();
                    chain.allocate_flags = Some((f.flags, f.device_mask));
                }
                vk::StructureType::MEMORY_PRIORITY_ALLOCATE_INFO_EXT => {
                    let q = &*p.cast::<vk::MemoryPriorityAllocateInfoEXT<'_>>();
                    chain.priority = Some(q.priority);
                }
                _ => {}
            }
            p = base.p_next;
        }
    }
    chain
}

/// Checks a `vkAllocateMemory` call against what the simulated device claims, the way the
/// validation layer would check it against a real device with those features.
fn check_alloc_chain(
    state: &SimState,
    chain: &AllocChain,
    memory_type: u32,
    problems: &mut Vec<String>,
) {
    let f = state.features;
    for (i, s) in chain.s_types.iter().enumerate() {
        if chain.s_types[..i].contains(s) {
            problems.push(format!("vkAllocateMemory chain holds {s:?} twice"));
        }
        let known = [
            vk::StructureType::MEMORY_DEDICATED_ALLOCATE_INFO,
            vk::StructureType::EXPORT_MEMORY_ALLOCATE_INFO,
            vk::StructureType::MEMORY_ALLOCATE_FLAGS_INFO,
            vk::StructureType::MEMORY_PRIORITY_ALLOCATE_INFO_EXT,
        ];
        if !known.contains(s) {
            problems.push(format!(
                "vkAllocateMemory chain holds {s:?}, which the simulated driver does not know"
            ));
        }
    }
    if let Some(d) = chain.dedicated {
        if d.buffer != vk::Buffer::null() && d.image != vk::Image::null() {
            problems.push(format!(
                "VkMemoryDedicatedAllocateInfo names both a buffer and an image: {d:?}"
            ));
        }
    }
    if chain.export_handle_types.is_some() && !f.external_memory {
        problems.push(
            "VkExportMemoryAllocateInfo chained, but the simulated device does not claim \
             external memory"
                .into(),
        );
    }
    if let Some((flags, mask)) = chain.allocate_flags {
        if flags.contains(vk::MemoryAllocateFlags::DEVICE_ADDRESS) && !f.buffer_device_address {
            problems.push(
                "VK_MEMORY_ALLOCATE_DEVICE_ADDRESS_BIT, but the simulated device does not claim \
                 bufferDeviceAddress"
                    .into(),
            );
        }
        if flags.intersects(
            vk::MemoryAllocateFlags::DEVICE_MASK
                | vk::MemoryAllocateFlags::DEVICE_ADDRESS_CAPTURE_REPLAY,
        ) {
            problems.push(format!(
                "VkMemoryAllocateFlagsInfo flags {flags:?} (device mask {mask:#x}) on a \
                 single-device simulated driver without capture replay"
            ));
        }
    }
    if let Some(p) = chain.priority {
        if !f.memory_priority {
            problems.push(
                "VkMemoryPriorityAllocateInfoEXT chained, but the simulated device does not \
                 claim VK_EXT_memory_priority"
                    .into(),
            );
        }
        if !(0.0..=1.0).contains(&p) {
            problems.push(format!("memory priority {p} outside 0.0 ..= 1.0"));
        }
    }
    if state
        .layout
        .flags(memory_type)
        .contains(vk::MemoryPropertyFlags::PROTECTED)
        && !f.protected_memory
    {
        problems.push(format!(
            "vkAllocateMemory from protected memory type {memory_type}, but the simulated \
             device does not claim protectedMemory"
        ));
    }
}

unsafe extern "system" fn allocate_memory(
    device: vk::Device,
    p_allocate_info: *const vk::MemoryAllocateInfo<'_>,
    p_allocator: *const vk::AllocationCallbacks<'_>,
    p_memory: *mut vk::DeviceMemory,
) -> vk::Result {
    let state = device_state(device);
    let delay = state.allocate_delay_us.load(Ordering::SeqCst);
    if delay > 0 {
        std::thread::sleep(Duration::from_micros(delay));
    }
    let index = state.allocate_calls.fetch_add(1, Ordering::SeqCst) + 1;
    // SAFETY: the caller passes a valid allocate info.
    let info = unsafe { &*p_allocate_info };
    let memory_type = info.memory_type_index;
    let size = info.allocation_size;
    let mut problems = Vec::new();
    // SAFETY: the allocate info's chain is valid.
    let chain = unsafe { parse_alloc_chain(info.p_next, &mut problems) };
    let faults = *state.faults.lock().unwrap_or_else(|e| e.into_inner());
    let fault = faults
        .allocate_at
        .filter(|&(at, _)| index >= at && index <= at.saturating_add(faults.allocate_more));
    let layout = &state.layout;
    if memory_type < layout.type_count() {
        check_alloc_chain(&state, &chain, memory_type, &mut problems);
    }
    let mut inner = state.inner();
    inner.violations.extend(problems);
    let mut memory = vk::DeviceMemory::null();
    let result = if memory_type >= layout.type_count() {
        inner.violations.push(format!(
            "vkAllocateMemory with memory type {memory_type}, the device has {}",
            layout.type_count()
        ));
        vk::Result::ERROR_UNKNOWN
    } else if let Some((_, r)) = fault {
        r
    } else if size == 0 {
        inner
            .violations
            .push("vkAllocateMemory with allocationSize 0".into());
        vk::Result::ERROR_UNKNOWN
    } else {
        let heap = layout.heap_of(memory_type) as usize;
        if inner.heap_used[heap].saturating_add(size) > layout.heaps[heap].0 {
            vk::Result::ERROR_OUT_OF_DEVICE_MEMORY
        } else if inner.live.len() as u64 >= u64::from(layout.max_memory_allocation_count) {
            vk::Result::ERROR_TOO_MANY_OBJECTS
        } else {
            // Every simulated type is backed by lavapipe's memory type 0, and lavapipe gets
            // only the dedicated-allocation info: the other structures are of extensions and
            // features the test device does not have, which the simulated driver implements
            // by recording them.
            let dedicated = chain
                .dedicated
                .filter(|d| (d.buffer == vk::Buffer::null()) != (d.image == vk::Image::null()));
            let mut dedicated_info = vk::MemoryDedicatedAllocateInfo::default();
            let mut real_info = vk::MemoryAllocateInfo::default()
                .allocation_size(size)
                .memory_type_index(0);
            if let Some(d) = dedicated {
                dedicated_info = dedicated_info.buffer(d.buffer).image(d.image);
                real_info = real_info.push_next(&mut dedicated_info);
            }
            // SAFETY: the caller's size and output pointer, a memory type that exists on
            // lavapipe, and a chain with at most the caller's (valid) dedicated resource.
            let r = unsafe {
                (state.real_device.fp_v1_0().allocate_memory)(
                    device,
                    &real_info,
                    p_allocator,
                    p_memory,
                )
            };
            if r == vk::Result::SUCCESS {
                // SAFETY: on success the driver wrote the handle.
                memory = unsafe { *p_memory };
                inner.live.insert(
                    memory,
                    LiveMemory {
                        memory_type,
                        heap: heap as u32,
                        size,
                        mapped: false,
                        dedicated_to: dedicated.map(DedicatedTo::resource),
                    },
                );
                inner.heap_used[heap] += size;
                inner.heap_peak[heap] = inner.heap_peak[heap].max(inner.heap_used[heap]);
                inner.max_live = inner.max_live.max(inner.live.len() as u32);
            }
            r
        }
    };
    inner.calls.push(AllocCall {
        index,
        memory_type,
        size,
        chain,
        result,
        memory,
    });
    result
}

unsafe extern "system" fn free_memory(
    device: vk::Device,
    memory: vk::DeviceMemory,
    p_allocator: *const vk::AllocationCallbacks<'_>,
) {
    let state = device_state(device);
    {
        let mut inner = state.inner();
        state.coherence.unmapped(memory);
        match inner.live.remove(&memory) {
            Some(m) => inner.heap_used[m.heap as usize] -= m.size,
            None if memory != vk::DeviceMemory::null() => inner
                .violations
                .push(format!("vkFreeMemory of {memory:?}, which is not alive")),
            None => {}
        }
        if let Some(bound) = inner.bound.remove(&memory) {
            for b in bound {
                inner.bound_to.remove(&b.resource);
            }
        }
    }
    // SAFETY: the caller's arguments.
    unsafe { (state.real_device.fp_v1_0().free_memory)(device, memory, p_allocator) };
}

unsafe extern "system" fn map_memory(
    device: vk::Device,
    memory: vk::DeviceMemory,
    offset: vk::DeviceSize,
    size: vk::DeviceSize,
    flags: vk::MemoryMapFlags,
    pp_data: *mut *mut c_void,
) -> vk::Result {
    let state = device_state(device);
    let index = state.map_calls.fetch_add(1, Ordering::SeqCst) + 1;
    let fail = state.faults.lock().unwrap().map_at == Some(index);
    let mut inner = state.inner();
    let Some(live) = inner.live.get(&memory).copied() else {
        inner
            .violations
            .push(format!("vkMapMemory of {memory:?}, which is not alive"));
        return vk::Result::ERROR_MEMORY_MAP_FAILED;
    };
    if !state
        .layout
        .flags(live.memory_type)
        .contains(vk::MemoryPropertyFlags::HOST_VISIBLE)
    {
        inner.violations.push(format!(
            "vkMapMemory of memory type {}, which is not host-visible",
            live.memory_type
        ));
        return vk::Result::ERROR_MEMORY_MAP_FAILED;
    }
    if live.mapped {
        inner.violations.push(format!(
            "vkMapMemory of {memory:?}, which is already mapped"
        ));
        return vk::Result::ERROR_MEMORY_MAP_FAILED;
    }
    if fail {
        return vk::Result::ERROR_MEMORY_MAP_FAILED;
    }
    // SAFETY: the caller's arguments, checked above against double mapping.
    let r = unsafe {
        (state.real_device.fp_v1_0().map_memory)(device, memory, offset, size, flags, pp_data)
    };
    if r == vk::Result::SUCCESS {
        if let Some(m) = inner.live.get_mut(&memory) {
            m.mapped = true;
        }
        let flags = state.layout.flags(live.memory_type);
        if !flags.contains(vk::MemoryPropertyFlags::HOST_COHERENT) {
            // SAFETY: on success the driver wrote the mapping of `[offset, size)` (or to the
            // end) to `pp_data`; it stays valid until unmapped or freed, when the shadow goes.
            unsafe {
                let end = if size == vk::WHOLE_SIZE {
                    live.size
                } else {
                    offset + size
                };
                state
                    .coherence
                    .mapped(memory, (*pp_data).cast(), offset, end);
            }
        }
        let mapped = inner.live.values().filter(|m| m.mapped).count() as u32;
        inner.max_mapped = inner.max_mapped.max(mapped);
    }
    r
}

unsafe extern "system" fn unmap_memory(device: vk::Device, memory: vk::DeviceMemory) {
    let state = device_state(device);
    {
        let mut inner = state.inner();
        state.coherence.unmapped(memory);
        match inner.live.get_mut(&memory) {
            Some(m) if m.mapped => m.mapped = false,
            _ => inner
                .violations
                .push(format!("vkUnmapMemory of {memory:?}, which is not mapped")),
        }
    }
    // SAFETY: the caller's arguments.
    unsafe { (state.real_device.fp_v1_0().unmap_memory)(device, memory) };
}

/// Checks and records mapped-memory ranges against the simulated `nonCoherentAtomSize`.
///
/// # Safety
///
/// `p_ranges` points to `count` valid ranges.
unsafe fn check_ranges(
    state: &SimState,
    count: u32,
    p_ranges: *const vk::MappedMemoryRange<'_>,
    flush: bool,
) {
    // SAFETY: the caller's contract.
    let ranges = unsafe { std::slice::from_raw_parts(p_ranges, count as usize) };
    let atom = state.layout.non_coherent_atom_size;
    let what = if flush { "flush" } else { "invalidate" };
    let mut inner = state.inner();
    for r in ranges {
        let Some(live) = inner.live.get(&r.memory).copied() else {
            inner
                .violations
                .push(format!("{what} of {:?}, which is not alive", r.memory));
            continue;
        };
        if !live.mapped {
            inner
                .violations
                .push(format!("{what} of {:?}, which is not mapped", r.memory));
        }
        let size = if r.size == vk::WHOLE_SIZE {
            live.size - r.offset.min(live.size)
        } else {
            r.size
        };
        let end = r.offset.saturating_add(size);
        let end_ok = r.size == vk::WHOLE_SIZE || size % atom == 0 || end == live.size;
        if r.offset % atom != 0 || !end_ok || end > live.size {
            inner.violations.push(format!(
                "{what} range {}+{} of a {}-byte memory object is not aligned to \
                 nonCoherentAtomSize {atom}",
                r.offset, r.size, live.size
            ));
        }
        inner.syncs.push((r.memory, r.offset, size, flush));
        state.coherence.sync(r.memory, r.offset, size, flush);
    }
}

unsafe extern "system" fn flush_mapped_memory_ranges(
    device: vk::Device,
    count: u32,
    p_ranges: *const vk::MappedMemoryRange<'_>,
) -> vk::Result {
    let state = device_state(device);
    // SAFETY: the caller passes `count` valid ranges; then forwarded unchanged.
    unsafe {
        check_ranges(&state, count, p_ranges, true);
        (state.real_device.fp_v1_0().flush_mapped_memory_ranges)(device, count, p_ranges)
    }
}

unsafe extern "system" fn invalidate_mapped_memory_ranges(
    device: vk::Device,
    count: u32,
    p_ranges: *const vk::MappedMemoryRange<'_>,
) -> vk::Result {
    let state = device_state(device);
    // SAFETY: as for `flush_mapped_memory_ranges`.
    unsafe {
        check_ranges(&state, count, p_ranges, false);
        (state.real_device.fp_v1_0().invalidate_mapped_memory_ranges)(device, count, p_ranges)
    }
}

fn image_bits(state: &SimState, image: vk::Image) -> u32 {
    let tiling_usage = state.inner().images.get(&image).copied();
    match tiling_usage {
        Some((tiling, usage)) => state.layout.image_bits(tiling, usage),
        None => {
            state.violation(format!("memory requirements of unknown image {image:?}"));
            0
        }
    }
}

/// Sets `prefersDedicatedAllocation` (and `requiresDedicatedAllocation`) in an output chain
/// when the test asks for it, and remembers the resources that require a dedicated
/// allocation (whatever said so), for the bind checks.
///
/// # Safety
///
/// `p_next` is null or a valid output structure chain.
unsafe fn patch_dedicated(state: &SimState, p_next: *mut c_void, resource: u64) {
    // SAFETY: the caller's contract.
    let found = unsafe { chain_find(p_next, vk::StructureType::MEMORY_DEDICATED_REQUIREMENTS) };
    if found.is_null() {
        return;
    }
    let d = found as *mut vk::MemoryDedicatedRequirements<'_>;
    let requires = state.requires_dedicated.load(Ordering::SeqCst);
    // SAFETY: the structure of that type in the caller's writable output chain.
    let required = unsafe {
        if requires || state.prefers_dedicated.load(Ordering::SeqCst) {
            (*d).prefers_dedicated_allocation = vk::TRUE;
        }
        if requires {
            (*d).requires_dedicated_allocation = vk::TRUE;
        }
        (*d).requires_dedicated_allocation == vk::TRUE
    };
    if required {
        state.inner().dedicated_required.insert(resource);
    }
}

unsafe extern "system" fn get_buffer_memory_requirements(
    device: vk::Device,
    buffer: vk::Buffer,
    p_requirements: *mut vk::MemoryRequirements,
) {
    let state = device_state(device);
    // SAFETY: forwarded with the caller's valid arguments; then the output is patched.
    unsafe {
        (state.real_device.fp_v1_0().get_buffer_memory_requirements)(
            device,
            buffer,
            p_requirements,
        );
        (*p_requirements).memory_type_bits = state.layout.buffer_bits();
    }
}

unsafe extern "system" fn get_buffer_memory_requirements2(
    device: vk::Device,
    p_info: *const vk::BufferMemoryRequirementsInfo2<'_>,
    p_requirements: *mut vk::MemoryRequirements2<'_>,
) {
    let state = device_state(device);
    // SAFETY: as for `get_buffer_memory_requirements`.
    unsafe {
        (state.real_device.fp_v1_1().get_buffer_memory_requirements2)(
            device,
            p_info,
            p_requirements,
        );
        (*p_requirements).memory_requirements.memory_type_bits = state.layout.buffer_bits();
        patch_dedicated(
            &state,
            (*p_requirements).p_next,
            vk::Handle::as_raw((*p_info).buffer),
        );
    }
}

unsafe extern "system" fn get_image_memory_requirements(
    device: vk::Device,
    image: vk::Image,
    p_requirements: *mut vk::MemoryRequirements,
) {
    let state = device_state(device);
    let bits = image_bits(&state, image);
    // SAFETY: as for `get_buffer_memory_requirements`.
    unsafe {
        (state.real_device.fp_v1_0().get_image_memory_requirements)(device, image, p_requirements);
        (*p_requirements).memory_type_bits = bits;
    }
}

unsafe extern "system" fn get_image_memory_requirements2(
    device: vk::Device,
    p_info: *const vk::ImageMemoryRequirementsInfo2<'_>,
    p_requirements: *mut vk::MemoryRequirements2<'_>,
) {
    let state = device_state(device);
    // SAFETY: the caller passes a valid info structure.
    let bits = image_bits(&state, unsafe { (*p_info).image });
    // SAFETY: as for `get_buffer_memory_requirements`.
    unsafe {
        (state.real_device.fp_v1_1().get_image_memory_requirements2)(
            device,
            p_info,
            p_requirements,
        );
        (*p_requirements).memory_requirements.memory_type_bits = bits;
        patch_dedicated(
            &state,
            (*p_requirements).p_next,
            vk::Handle::as_raw((*p_info).image),
        );
    }
}

unsafe extern "system" fn create_image(
    device: vk::Device,
    p_create_info: *const vk::ImageCreateInfo<'_>,
    p_allocator: *const vk::AllocationCallbacks<'_>,
    p_image: *mut vk::Image,
) -> vk::Result {
    let state = device_state(device);
    // SAFETY: forwarded with the caller's valid arguments; on success the image is written.
    unsafe {
        let r =
            (state.real_device.fp_v1_0().create_image)(device, p_create_info, p_allocator, p_image);
        if r == vk::Result::SUCCESS {
            let info = &*p_create_info;
            state
                .inner()
                .images
                .insert(*p_image, (info.tiling, info.usage));
        }
        r
    }
}

fn unbind(state: &SimState, resource: u64) {
    let mut inner = state.inner();
    inner.dedicated_required.remove(&resource);
    if let Some(memory) = inner.bound_to.remove(&resource) {
        if let Some(list) = inner.bound.get_mut(&memory) {
            list.retain(|b| b.resource != resource);
        }
    }
}

unsafe extern "system" fn destroy_image(
    device: vk::Device,
    image: vk::Image,
    p_allocator: *const vk::AllocationCallbacks<'_>,
) {
    let state = device_state(device);
    state.inner().images.remove(&image);
    unbind(&state, vk::Handle::as_raw(image));
    // SAFETY: the caller's arguments.
    unsafe { (state.real_device.fp_v1_0().destroy_image)(device, image, p_allocator) };
}

unsafe extern "system" fn destroy_buffer(
    device: vk::Device,
    buffer: vk::Buffer,
    p_allocator: *const vk::AllocationCallbacks<'_>,
) {
    let state = device_state(device);
    unbind(&state, vk::Handle::as_raw(buffer));
    // SAFETY: the caller's arguments.
    unsafe { (state.real_device.fp_v1_0().destroy_buffer)(device, buffer, p_allocator) };
}

/// Checks a bind against the simulated layout and the resources already bound.
fn check_bind(
    state: &SimState,
    what: &str,
    bound: Bound,
    memory: vk::DeviceMemory,
    requirements: vk::MemoryRequirements,
    allowed_bits: u32,
) {
    let granularity = state.layout.buffer_image_granularity;
    let mut inner = state.inner();
    let Some(live) = inner.live.get(&memory).copied() else {
        inner
            .violations
            .push(format!("{what} bound to {memory:?}, which is not alive"));
        return;
    };
    let mut problems = Vec::new();
    if let Some(owner) = live.dedicated_to {
        if owner != bound.resource {
            problems.push(format!(
                "{what} {:#x} bound to {memory:?}, which is dedicated to resource {owner:#x}",
                bound.resource
            ));
        } else if bound.offset != 0 {
            problems.push(format!(
                "{what} bound to its dedicated memory at offset {}, not 0",
                bound.offset
            ));
        }
    }
    if inner.dedicated_required.contains(&bound.resource)
        && live.dedicated_to != Some(bound.resource)
    {
        problems.push(format!(
            "{what} {:#x} requires a dedicated allocation, but {memory:?} was not allocated \
             with VkMemoryDedicatedAllocateInfo naming it",
            bound.resource
        ));
    }
    if allowed_bits & (1 << live.memory_type) == 0 {
        problems.push(format!(
            "{what} bound to memory type {}, outside its memoryTypeBits {allowed_bits:#b}",
            live.memory_type
        ));
    }
    if bound.offset % requirements.alignment.max(1) != 0 {
        problems.push(format!(
            "{what} bound at offset {}, not aligned to {}",
            bound.offset, requirements.alignment
        ));
    }
    if bound.offset.saturating_add(bound.size) > live.size {
        problems.push(format!(
            "{what} bound at {}+{} past the end of a {}-byte memory object",
            bound.offset, bound.size, live.size
        ));
    }
    let pages = |b: &Bound| {
        (
            b.offset / granularity,
            (b.offset.saturating_add(b.size).saturating_sub(1)) / granularity,
        )
    };
    for other in inner.bound.get(&memory).into_iter().flatten() {
        if bound.offset < other.offset.saturating_add(other.size)
            && other.offset < bound.offset.saturating_add(bound.size)
        {
            problems.push(format!(
                "{what} at {}+{} overlaps a resource at {}+{}",
                bound.offset, bound.size, other.offset, other.size
            ));
        } else if bound.linear != other.linear {
            let (a0, a1) = pages(&bound);
            let (b0, b1) = pages(other);
            if a0 <= b1 && b0 <= a1 {
                problems.push(format!(
                    "{what} at {}+{} shares a {granularity}-byte granularity page with a {} \
                     resource at {}+{}",
                    bound.offset,
                    bound.size,
                    if other.linear { "linear" } else { "non-linear" },
                    other.offset,
                    other.size
                ));
            }
        }
    }
    inner.violations.extend(problems);
    inner.bound.entry(memory).or_default().push(bound);
    inner.bound_to.insert(bound.resource, memory);
}

unsafe extern "system" fn bind_buffer_memory(
    device: vk::Device,
    buffer: vk::Buffer,
    memory: vk::DeviceMemory,
    offset: vk::DeviceSize,
) -> vk::Result {
    let state = device_state(device);
    // SAFETY: `buffer` is a valid buffer of this device (the caller's contract).
    let requirements = unsafe { state.real_device.get_buffer_memory_requirements(buffer) };
    let bound = Bound {
        resource: vk::Handle::as_raw(buffer),
        offset,
        size: requirements.size,
        linear: true,
    };
    let bits = state.layout.buffer_bits();
    check_bind(&state, "buffer", bound, memory, requirements, bits);
    // SAFETY: the caller's arguments.
    unsafe { (state.real_device.fp_v1_0().bind_buffer_memory)(device, buffer, memory, offset) }
}

unsafe extern "system" fn bind_image_memory(
    device: vk::Device,
    image: vk::Image,
    memory: vk::DeviceMemory,
    offset: vk::DeviceSize,
) -> vk::Result {
    let state = device_state(device);
    // SAFETY: `image` is a valid image of this device (the caller's contract).
    let requirements = unsafe { state.real_device.get_image_memory_requirements(image) };
    let tiling = state.inner().images.get(&image).map(|&(t, _)| t);
    let bound = Bound {
        resource: vk::Handle::as_raw(image),
        offset,
        size: requirements.size,
        linear: tiling == Some(vk::ImageTiling::LINEAR),
    };
    let bits = image_bits(&state, image);
    check_bind(&state, "image", bound, memory, requirements, bits);
    // SAFETY: the caller's arguments.
    unsafe { (state.real_device.fp_v1_0().bind_image_memory)(device, image, memory, offset) }
}
