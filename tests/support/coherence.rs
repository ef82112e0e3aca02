//! Non-coherent memory, simulated: lavapipe's memory is coherent, so on its own it would hide
//! every missing or misplaced flush and invalidate.
//!
//! For each mapped memory object of a simulated type that is host-visible but not
//! host-coherent, the simulated driver keeps a *device copy* of its bytes. Host writes land
//! in the mapping only; `vkFlushMappedMemoryRanges` copies the flushed range from the mapping
//! to the device copy, and `vkInvalidateMappedMemoryRanges` copies the invalidated range from
//! the device copy back over the mapping, throwing away host writes in that range that were
//! not flushed yet, as a real non-coherent cache would. An invalidate issued for one
//! allocation that reaches into a neighbour's bytes thus destroys the neighbour's unflushed
//! writes, which a test can see.

use std::collections::HashMap;
use std::sync::Mutex;

use ash::vk;

/// One mapped non-coherent memory object.
struct Shadow {
    /// Where the mapping starts in host memory, and the object offset it maps.
    host: usize,
    map_offset: u64,
    /// The bytes the device sees.
    device: Vec<u8>,
}

/// The device copies of the mapped non-coherent memory objects of one simulated device.
#[derive(Default)]
pub struct Coherence {
    shadows: Mutex<HashMap<vk::DeviceMemory, Shadow>>,
}

impl Coherence {
    /// A non-coherent object of `size` bytes was mapped at `host` from `map_offset` on.
    ///
    /// # Safety
    ///
    /// `host` points to the mapping of `[map_offset, size)` of the object, valid until
    /// [`unmapped`](Self::unmapped) is called for it.
    pub unsafe fn mapped(
        &self,
        memory: vk::DeviceMemory,
        host: *mut u8,
        map_offset: u64,
        size: u64,
    ) {
        let len = (size - map_offset) as usize;
        let mut device = vec![0u8; len];
        // SAFETY: the caller's contract: `len` bytes are mapped at `host`.
        unsafe { std::ptr::copy_nonoverlapping(host, device.as_mut_ptr(), len) };
        self.shadows.lock().unwrap().insert(
            memory,
            Shadow {
                host: host as usize,
                map_offset,
                device,
            },
        );
    }

    /// The object was unmapped or freed.
    pub fn unmapped(&self, memory: vk::DeviceMemory) {
        self.shadows.lock().unwrap().remove(&memory);
    }

    /// Copies `[offset, offset + size)` between the mapping and the device copy: to the device
    /// on a flush, to the host on an invalidate. Ranges are clamped to the mapping.
    pub fn sync(&self, memory: vk::DeviceMemory, offset: u64, size: u64, flush: bool) {
        let mut shadows = self.shadows.lock().unwrap();
        let Some(s) = shadows.get_mut(&memory) else {
            return;
        };
        let start = offset.saturating_sub(s.map_offset) as usize;
        let end =
            (offset.saturating_add(size).saturating_sub(s.map_offset) as usize).min(s.device.len());
        if start >= end {
            return;
        }
        let host = (s.host + start) as *mut u8;
        let device = &mut s.device[start..end];
        // SAFETY: `[start, end)` lies inside the live mapping (`mapped`'s contract) and inside
        // the device copy. Host threads may write other bytes of the mapping meanwhile;
        // overlapping writes are exactly the misuse the tests look for.
        unsafe {
            if flush {
                std::ptr::copy_nonoverlapping(host, device.as_mut_ptr(), end - start);
            } else {
                std::ptr::copy_nonoverlapping(device.as_ptr(), host, end - start);
            }
        }
    }
}
