//! Aliasing: several buffers and images bound to one allocation, at offsets of your choosing.
//!
//! A frame graph (or any renderer with short-lived attachments) saves memory by letting
//! resources whose lifetimes do not overlap share bytes: allocate once for the largest of
//! them (the union of their `memoryTypeBits`, the largest alignment), then bind each to the
//! same allocation with [`MemoryAlloc::bind_buffer_at`] / [`MemoryAlloc::bind_image_at`], or
//! create and bind in one call with [`MemoryAlloc::create_aliasing_buffer`] /
//! [`MemoryAlloc::create_aliasing_image`] (VMA's `vmaBindBufferMemory2` with
//! `allocationLocalOffset`, and `vmaCreateAliasingBuffer2` / `vmaCreateAliasingImage2`).
//!
//! Every bind is checked before it reaches the driver, and a clear
//! [`MemoryAccessError`] comes back instead of an out-of-bounds or invalid bind:
//!
//! - the resource's size from `local_offset` stays inside the allocation
//!   ([`ResourceOutOfBounds`](MemoryAccessError::ResourceOutOfBounds));
//! - `allocation.offset() + local_offset` is a multiple of the resource's alignment
//!   ([`MisalignedBind`](MemoryAccessError::MisalignedBind));
//! - the resource's `memoryTypeBits` contains the allocation's memory type
//!   ([`IncompatibleMemoryType`](MemoryAccessError::IncompatibleMemoryType));
//! - in exportable or imported memory, the resource's create info names its external handle
//!   types ([`NotCreatedForExternalMemory`](MemoryAccessError::NotCreatedForExternalMemory);
//!   checked by `create_aliasing_*`, which see the create info, and the `bind_*_at` callers'
//!   duty otherwise);
//! - a buffer with `SHADER_DEVICE_ADDRESS` usage needs memory allocated with device
//!   addresses when the device has the `bufferDeviceAddress` feature
//!   ([`NoDeviceAddressMemory`](MemoryAccessError::NoDeviceAddressMemory); checked by
//!   `create_aliasing_buffer`, which sees the usage, and the `bind_buffer_at*` callers' duty
//!   otherwise: a buffer handle does not tell its usage);
//! - a resource the driver says *requires* a memory object of its own, or memory that was
//!   allocated as dedicated to another resource, is refused
//!   ([`RequiresDedicatedAllocation`](MemoryAccessError::RequiresDedicatedAllocation),
//!   [`DedicatedToAnotherResource`](MemoryAccessError::DedicatedToAnotherResource));
//! - in a block shared with other allocations, the resource kind must match what the
//!   allocation was made for, so that the allocator's `bufferImageGranularity` padding still
//!   protects the neighbours ([`GranularityConflict`](MemoryAccessError::GranularityConflict)):
//!   a buffer in a [`Linear`](AllocationType::Linear) allocation, an image in a
//!   [`NonLinear`](AllocationType::NonLinear) one, anything in an
//!   [`Unknown`](AllocationType::Unknown) one (padded to whole pages on both sides) or in a
//!   memory object of its own. Allocate with `AllocationType::Unknown` to alias buffers and
//!   images together. An image handle does not say its tiling, so an image is taken to be
//!   optimal; alias a `LINEAR`-tiled image in an `Unknown` allocation.
//!
//! # Synchronization and layouts
//!
//! Aliasing resources share bytes, not contents. Vulkan's rules (the specification's
//! "Memory Aliasing" section) that apply:
//!
//! - **Barriers.** Before the GPU uses a resource whose bytes another resource used last, the
//!   previous use must be finished: a pipeline barrier (or an event, or a semaphore between
//!   queues) from the stages of the last use of the old resource to the stages of the first
//!   use of the new one. When the old resource was *written*, its writes must be made
//!   available (`srcAccessMask` with the write access) even though nobody reads them, so that
//!   they cannot land on top of the new resource's writes later. A global `VkMemoryBarrier`
//!   or a barrier on the new resource both work.
//! - **`UNDEFINED` initial layout.** The first use of an aliased image must transition it
//!   from `VK_IMAGE_LAYOUT_UNDEFINED` (its contents are whatever the last resource left, and
//!   are discarded): do that in the same barrier that waits for the previous user. Images
//!   bound to aliased memory must themselves be created with `initialLayout = UNDEFINED` (or
//!   `PREINITIALIZED` for linear images whose bytes you wrote on purpose).
//! - **Contents.** Data written through one resource is not defined when read through
//!   another, except for linear buffers and `LINEAR` images whose subresource layouts the
//!   application knows (and even then only with the barrier above). Clear or fully write a
//!   resource before reading it.
//! - **Host access.** Writing the allocation through its mapping while the GPU uses any of
//!   the aliased resources is a data race like any other.
//!
//! Destroy every aliasing resource before the allocation is dropped (the allocation does not
//! know them).
//!
//! # Defragmentation
//!
//! A [defragmentation](crate::allocator::defrag) moves an allocation, not the resources bound
//! to it, and it knows none of them. Before [`add`](crate::Defragmentation::add)ing an
//! allocation that several resources alias, give it the largest alignment among them; for
//! each move, create every resource again at the
//! [destination](crate::allocator::defrag::Move::destination) (which has the allocation's
//! [`AllocationType`], so the same binds are accepted there), copy what must survive, and
//! destroy or stop using *all* the old ones before
//! [`complete`](crate::DefragmentationPass::complete) frees the source: a resource still
//! bound to the source afterwards points at bytes that the next allocation may be given.
//! [`skip`](crate::DefragmentationPass::skip) a move instead when that is not possible (it
//! frees the destination: destroy what was bound there first).

use crate::allocation::{MemoryAccessError, MemoryAlloc};
use crate::device::Resource;
use crate::layout::DeviceSize;
use crate::suballocator::AllocationType;
use ash::vk;
use std::ffi::c_void;

/// What [`check_alias_bind`] needs to know about the allocation, as plain data.
#[derive(Clone, Copy, Debug)]
pub(crate) struct AliasTarget {
    /// The allocation's offset in its memory object.
    pub(crate) offset: DeviceSize,
    /// The allocation's size.
    pub(crate) size: DeviceSize,
    pub(crate) memory_type_index: u32,
    /// The allocation has the memory object to itself (no neighbours).
    pub(crate) whole_object: bool,
    pub(crate) allocation_type: AllocationType,
    /// `bufferImageGranularity`.
    pub(crate) granularity: DeviceSize,
    /// The memory was allocated with `VkMemoryDedicatedAllocateInfo` for this resource
    /// (`Some(true)`), for another one (`Some(false)`), or without it (`None`).
    pub(crate) dedicated_to_resource: Option<bool>,
}

/// The resource side of a bind: its requirements and kind.
#[derive(Clone, Copy, Debug)]
pub(crate) struct AliasResource {
    pub(crate) requirements: vk::MemoryRequirements,
    pub(crate) requires_dedicated: bool,
    pub(crate) is_image: bool,
}

/// Checks a bind of `resource` at `local_offset` of `target`; returns the offset in the
/// memory object to bind at. Pure, so every rule is tested without a driver.
pub(crate) fn check_alias_bind(
    target: AliasTarget,
    resource: AliasResource,
    local_offset: DeviceSize,
) -> Result<DeviceSize, MemoryAccessError> {
    let required = resource.requirements.size;
    let out_of_bounds = MemoryAccessError::ResourceOutOfBounds {
        local_offset,
        required,
        size: target.size,
    };
    if local_offset
        .checked_add(required)
        .is_none_or(|end| end > target.size)
    {
        return Err(out_of_bounds);
    }
    let offset = target
        .offset
        .checked_add(local_offset)
        .ok_or(out_of_bounds)?;
    let alignment = resource.requirements.alignment.max(1);
    if offset % alignment != 0 {
        return Err(MemoryAccessError::MisalignedBind { offset, alignment });
    }
    let bits = resource.requirements.memory_type_bits;
    if target.memory_type_index >= 32 || bits & (1 << target.memory_type_index) == 0 {
        return Err(MemoryAccessError::IncompatibleMemoryType {
            memory_type_index: target.memory_type_index,
            memory_type_bits: bits,
        });
    }
    match target.dedicated_to_resource {
        Some(false) => return Err(MemoryAccessError::DedicatedToAnotherResource),
        // Vulkan: memory dedicated to a resource is bound to it at offset 0, whole.
        Some(true) if offset != 0 => return Err(MemoryAccessError::DedicatedToAnotherResource),
        Some(true) => {}
        None if resource.requires_dedicated => {
            return Err(MemoryAccessError::RequiresDedicatedAllocation)
        }
        None => {}
    }
    let kind_fits = match target.allocation_type {
        AllocationType::Unknown => true,
        AllocationType::Linear => !resource.is_image,
        AllocationType::NonLinear => resource.is_image,
    };
    if !kind_fits && !target.whole_object && target.granularity > 1 {
        return Err(MemoryAccessError::GranularityConflict {
            allocation_type: target.allocation_type,
        });
    }
    Ok(offset)
}

impl MemoryAlloc {
    /// Binds `buffer` at `local_offset` bytes into this allocation (VMA's
    /// `vmaBindBufferMemory2` with `allocationLocalOffset`), after checking the buffer's
    /// memory requirements against the allocation (see the [module docs](crate::aliasing)).
    /// Several resources may be bound to overlapping ranges of one allocation: that is
    /// aliasing, with the synchronization rules of the [module docs](crate::aliasing#synchronization-and-layouts).
    ///
    /// # Safety
    ///
    /// `buffer` is a valid buffer of the allocator's device with no memory bound, not used by
    /// anything else during the call; when the memory is exportable or imported
    /// ([`MemoryObject::export_types`](crate::MemoryObject::export_types),
    /// [`import_type`](crate::MemoryObject::import_type)), it was created with a
    /// `VkExternalMemoryBufferCreateInfo` naming one of the export types and the import type;
    /// it is destroyed before this allocation is dropped (or never used afterwards); its uses
    /// and those of every resource aliasing the same bytes are synchronized as the module
    /// docs describe. When it was created with `SHADER_DEVICE_ADDRESS` usage on a device with
    /// the `bufferDeviceAddress` feature, the memory was allocated with device addresses (the
    /// allocator's or pool's `device_address` setting, on by default;
    /// VUID-vkBindBufferMemory-bufferDeviceAddress-03339): a buffer handle does not tell its
    /// usage, so this is not checked here ([`create_aliasing_buffer`](Self::create_aliasing_buffer)
    /// checks it).
    pub unsafe fn bind_buffer_at(
        &self,
        buffer: vk::Buffer,
        local_offset: DeviceSize,
    ) -> Result<(), MemoryAccessError> {
        // SAFETY: the caller's contract.
        unsafe { self.bind_at(Resource::Buffer(buffer), local_offset, std::ptr::null()) }
    }

    /// Binds `image` at `local_offset` bytes into this allocation, like
    /// [`bind_buffer_at`](Self::bind_buffer_at).
    ///
    /// # Safety
    ///
    /// As for [`bind_buffer_at`](Self::bind_buffer_at), for an image that is not `DISJOINT`
    /// (made with `VkExternalMemoryImageCreateInfo` for external memory);
    /// the image's first use transitions it from `UNDEFINED` (see the module docs).
    pub unsafe fn bind_image_at(
        &self,
        image: vk::Image,
        local_offset: DeviceSize,
    ) -> Result<(), MemoryAccessError> {
        // SAFETY: the caller's contract.
        unsafe { self.bind_at(Resource::Image(image), local_offset, std::ptr::null()) }
    }

    /// Binds `buffer` at `local_offset` like [`bind_buffer_at`](Self::bind_buffer_at), through
    /// `vkBindBufferMemory2` with the `pNext` chain of `chain` (VMA's `vmaBindBufferMemory2`
    /// with `pNext`). Build
    /// `chain` with `vk::BindBufferMemoryInfo::default().push_next(..)`: only its `pNext` is
    /// read; the buffer, memory and offset are the call's. A chain needs
    /// [`EnabledMemoryFeatures::bind_memory2`](crate::EnabledMemoryFeatures::bind_memory2)
    /// (Vulkan 1.1 implies it), or the call fails with
    /// [`BindMemory2Unavailable`](MemoryAccessError::BindMemory2Unavailable); an empty chain
    /// is a plain `vkBindBufferMemory`.
    ///
    /// # Safety
    ///
    /// As for [`bind_buffer_at`](Self::bind_buffer_at); every structure in the chain is valid
    /// for this bind and its extension or feature is enabled on the device.
    pub unsafe fn bind_buffer_at_with_next(
        &self,
        buffer: vk::Buffer,
        local_offset: DeviceSize,
        chain: &vk::BindBufferMemoryInfo<'_>,
    ) -> Result<(), MemoryAccessError> {
        // SAFETY: the caller's contract.
        unsafe { self.bind_at(Resource::Buffer(buffer), local_offset, chain.p_next) }
    }

    /// Binds `image` at `local_offset` through `vkBindImageMemory2` with the `pNext` chain
    /// of `chain`, like [`bind_buffer_at_with_next`](Self::bind_buffer_at_with_next).
    ///
    /// # Safety
    ///
    /// As for [`bind_image_at`](Self::bind_image_at); every structure in the chain is valid
    /// for this bind and its extension or feature is enabled on the device.
    pub unsafe fn bind_image_at_with_next(
        &self,
        image: vk::Image,
        local_offset: DeviceSize,
        chain: &vk::BindImageMemoryInfo<'_>,
    ) -> Result<(), MemoryAccessError> {
        // SAFETY: the caller's contract.
        unsafe { self.bind_at(Resource::Image(image), local_offset, chain.p_next) }
    }

    /// Creates a buffer and binds it at `local_offset` of this allocation, in one call (VMA's
    /// `vmaCreateAliasingBuffer2`). When the bind is refused or fails, the buffer is destroyed
    /// again and the error returned. The caller destroys the buffer before dropping the
    /// allocation. In exportable or imported memory, a create info that does not name its
    /// handle types is refused before the buffer is made
    /// ([`NotCreatedForExternalMemory`](MemoryAccessError::NotCreatedForExternalMemory)),
    /// and so is a `SHADER_DEVICE_ADDRESS` usage (in `usage` or a chained
    /// `VkBufferUsageFlags2CreateInfoKHR`) when the memory was allocated without device
    /// addresses on a device with the `bufferDeviceAddress` feature
    /// ([`NoDeviceAddressMemory`](MemoryAccessError::NoDeviceAddressMemory)).
    ///
    /// # Safety
    ///
    /// `buffer_info` is a valid `VkBufferCreateInfo` for the allocator's device; the uses of
    /// the buffer and of the resources aliasing it are synchronized as the
    /// [module docs](crate::aliasing#synchronization-and-layouts) describe.
    pub unsafe fn create_aliasing_buffer(
        &self,
        buffer_info: &vk::BufferCreateInfo<'_>,
        local_offset: DeviceSize,
    ) -> Result<vk::Buffer, MemoryAccessError> {
        // SAFETY: a valid create info (the caller's contract).
        unsafe { self.check_external(buffer_info.p_next, false) }?;
        self.check_buffer_usage(crate::device_requirements::buffer_usage(buffer_info))?;
        let ash = self.device_memory().device().ash();
        // SAFETY: the caller guarantees `buffer_info` is valid for this device.
        let buffer =
            unsafe { ash.create_buffer(buffer_info, None) }.map_err(MemoryAccessError::Vulkan)?;
        // SAFETY: `buffer` was just created from this device, is unbound and ours.
        match unsafe { self.bind_buffer_at(buffer, local_offset) } {
            Ok(()) => Ok(buffer),
            Err(e) => {
                // SAFETY: the buffer is ours and was never used.
                unsafe { ash.destroy_buffer(buffer, None) };
                Err(e)
            }
        }
    }

    /// Creates an image and binds it at `local_offset` of this allocation, in one call (VMA's
    /// `vmaCreateAliasingImage2`), like [`create_aliasing_buffer`](Self::create_aliasing_buffer)
    /// (external memory included).
    ///
    /// # Safety
    ///
    /// `image_info` is a valid `VkImageCreateInfo` for the allocator's device, without the
    /// `DISJOINT` flag, with an `UNDEFINED` initial layout (or `PREINITIALIZED`); the uses
    /// are synchronized as the module docs describe.
    pub unsafe fn create_aliasing_image(
        &self,
        image_info: &vk::ImageCreateInfo<'_>,
        local_offset: DeviceSize,
    ) -> Result<vk::Image, MemoryAccessError> {
        // SAFETY: a valid create info (the caller's contract).
        unsafe { self.check_external(image_info.p_next, true) }?;
        let ash = self.device_memory().device().ash();
        // SAFETY: the caller guarantees `image_info` is valid for this device.
        let image =
            unsafe { ash.create_image(image_info, None) }.map_err(MemoryAccessError::Vulkan)?;
        // SAFETY: `image` was just created from this device, is unbound, ours, not disjoint.
        match unsafe { self.bind_image_at(image, local_offset) } {
            Ok(()) => Ok(image),
            Err(e) => {
                // SAFETY: the image is ours and was never used.
                unsafe { ash.destroy_image(image, None) };
                Err(e)
            }
        }
    }

    /// Checks that a resource whose create info's chain starts at `next` may be bound to
    /// this allocation's memory when that is external (see [`external`]).
    ///
    /// # Safety
    ///
    /// `next` is null or a valid chain extending `VkImageCreateInfo` (`for_image`) or
    /// `VkBufferCreateInfo`.
    pub(crate) unsafe fn check_external(
        &self,
        next: *const c_void,
        for_image: bool,
    ) -> Result<(), MemoryAccessError> {
        let memory = self.device_memory();
        let (export, import) = (memory.export_types(), memory.import_type());
        if export.is_empty() && import.is_empty() {
            return Ok(());
        }
        // SAFETY: the caller's contract.
        let resource = unsafe { external::created_for(next, for_image) };
        external::check_external(export, import, resource)
    }

    /// Checks that a buffer of `usage` may be bound to this allocation's memory: a
    /// `SHADER_DEVICE_ADDRESS` buffer needs memory allocated with device addresses on a
    /// device with the `bufferDeviceAddress` feature
    /// (VUID-vkBindBufferMemory-bufferDeviceAddress-03339). The one check for every path
    /// that knows the usage (`create_buffer`, `create_aliasing_buffer`).
    pub(crate) fn check_buffer_usage(
        &self,
        usage: vk::BufferUsageFlags,
    ) -> Result<(), MemoryAccessError> {
        if usage.contains(vk::BufferUsageFlags::SHADER_DEVICE_ADDRESS)
            && self.device_memory().lacks_device_address()
        {
            Err(MemoryAccessError::NoDeviceAddressMemory)
        } else {
            Ok(())
        }
    }

    /// Checks a bind of `resource` at `local_offset`, then binds it, with `next` as the bind
    /// info's `pNext` when it is not null.
    ///
    /// # Safety
    ///
    /// `resource` is a valid, unbound buffer or non-disjoint image of the allocator's device;
    /// `next` is null or a valid chain for its bind info.
    unsafe fn bind_at(
        &self,
        resource: Resource,
        local_offset: DeviceSize,
        next: *const c_void,
    ) -> Result<(), MemoryAccessError> {
        // SAFETY: the caller's contract.
        let offset = unsafe { self.check_bind_at(resource, local_offset) }?;
        // SAFETY: the checks above: the range lies inside this allocation, is aligned, the
        // memory type is allowed and no dedicated-allocation rule is broken; the resource is
        // valid and unbound, and the chain valid (the caller's contract).
        unsafe { self.bind_resource(resource, offset, next) }
    }

    /// Binds `resource` at `offset` of the memory object: `vkBind*Memory`, or
    /// `vkBind*Memory2` when `next` is not null.
    ///
    /// # Safety
    ///
    /// The bind is valid (the resource's requirements hold at `offset`, which lies in this
    /// allocation); `next` is null or a valid chain for the bind info.
    pub(crate) unsafe fn bind_resource(
        &self,
        resource: Resource,
        offset: DeviceSize,
        next: *const c_void,
    ) -> Result<(), MemoryAccessError> {
        let memory = self.device_memory();
        let device = memory.device();
        if !next.is_null() && !device.has_bind_memory2() {
            return Err(MemoryAccessError::BindMemory2Unavailable);
        }
        let ash = device.ash();
        let handle = memory.handle();
        // SAFETY: the caller's contract; `vkBind*Memory2` only with the feature (checked).
        unsafe {
            match (resource, next.is_null()) {
                (Resource::Buffer(b), true) => ash.bind_buffer_memory(b, handle, offset),
                (Resource::Image(i), true) => ash.bind_image_memory(i, handle, offset),
                (Resource::Buffer(b), false) => device.bind_buffer_memory2(b, handle, offset, next),
                (Resource::Image(i), false) => device.bind_image_memory2(i, handle, offset, next),
            }
        }
        .map_err(MemoryAccessError::Vulkan)
    }

    /// Queries `resource`'s requirements and checks a bind at `local_offset`; returns the
    /// offset in the memory object.
    ///
    /// # Safety
    ///
    /// `resource` is a valid buffer or non-disjoint image of the allocator's device.
    pub(crate) unsafe fn check_bind_at(
        &self,
        resource: Resource,
        local_offset: DeviceSize,
    ) -> Result<DeviceSize, MemoryAccessError> {
        let memory = self.device_memory();
        let device = memory.device();
        // SAFETY: the caller's contract.
        let (requirements, dedicated) = unsafe { device.raw_requirements(resource) };
        let target = AliasTarget {
            offset: self.offset(),
            size: self.size(),
            memory_type_index: memory.memory_type_index(),
            whole_object: self.is_dedicated(),
            allocation_type: self.allocation_type(),
            granularity: device.buffer_image_granularity().as_devicesize(),
            dedicated_to_resource: memory.dedicated_resource().map(|d| d.is(resource)),
        };
        let resource = AliasResource {
            requirements,
            requires_dedicated: dedicated.requires_dedicated_allocation != 0,
            is_image: matches!(resource, Resource::Image(_)),
        };
        check_alias_bind(target, resource, local_offset)
    }
}

mod external;
#[cfg(test)]
mod tests;
