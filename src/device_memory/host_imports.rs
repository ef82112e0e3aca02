//! The host ranges imported as memory objects that are alive, process-wide.
//!
//! A memory object imported from a host allocation (`VK_EXT_external_memory_host`) is mapped
//! like any host-visible object, and its mapping shows the host allocation's bytes. Two live
//! imports of the same bytes, whole or in part, would give two allocations that map them:
//! a write through one would land in the other's bytes, and their
//! [`mapped_slice_mut`](crate::MemoryAlloc::mapped_slice_mut)s would be two `&mut [u8]` over
//! the same memory, all through the safe API (an [`ExternalMemoryImport`] is `Copy`, and
//! importing it is safe). So every host-pointer import claims its range here before the
//! driver is called, an import that overlaps a live claim is refused with
//! [`MemoryObjectError::ImportOverlaps`], and the claim is given back when the memory object
//! is freed (or the import fails). The registry is global because host addresses are: an
//! import into another device maps the same bytes too.
//!
//! [`ExternalMemoryImport`]: super::external::ExternalMemoryImport

use super::MemoryObjectError;
use crate::layout::DeviceSize;
use parking_lot::Mutex;

/// `[start, end)` of every live host-pointer import.
static LIVE: Mutex<Vec<(usize, usize)>> = Mutex::new(Vec::new());

/// A live import's claim on `[start, end)` of the host address space; given back on drop.
#[derive(Debug)]
pub(crate) struct HostImportClaim {
    start: usize,
    end: usize,
}

impl HostImportClaim {
    /// Claims the `size` bytes at `address`, or fails with
    /// [`ImportOverlaps`](MemoryObjectError::ImportOverlaps) when a live import holds any of
    /// them. A range that passes the end of the address space claims up to its end.
    pub(crate) fn claim(address: usize, size: DeviceSize) -> Result<Self, MemoryObjectError> {
        let end = usize::try_from(size)
            .ok()
            .and_then(|size| address.checked_add(size))
            .unwrap_or(usize::MAX);
        let mut live = LIVE.lock();
        if live.iter().any(|&(s, e)| s < end && address < e) {
            return Err(MemoryObjectError::ImportOverlaps { address, size });
        }
        live.push((address, end));
        Ok(Self {
            start: address,
            end,
        })
    }
}

impl Drop for HostImportClaim {
    fn drop(&mut self) {
        let mut live = LIVE.lock();
        if let Some(i) = live.iter().position(|&r| r == (self.start, self.end)) {
            live.swap_remove(i);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Addresses no real import uses (the top of the address space), so that the crate's
    // other tests importing host memory meanwhile never meet these claims.
    const BASE: usize = usize::MAX - (1 << 20);

    #[test]
    fn overlapping_claims_are_refused_until_given_back() {
        let a = HostImportClaim::claim(BASE, 4096).unwrap();
        let overlaps = |address, size| {
            matches!(
                HostImportClaim::claim(address, size),
                Err(MemoryObjectError::ImportOverlaps { .. })
            )
        };
        assert!(overlaps(BASE, 4096), "the same range");
        assert!(overlaps(BASE + 4095, 1), "its last byte");
        assert!(overlaps(BASE - 4096, 4097), "reaching its first byte");
        assert!(overlaps(BASE - 4096, 3 * 4096), "around it");
        // Next to it on either side.
        let before = HostImportClaim::claim(BASE - 4096, 4096).unwrap();
        let after = HostImportClaim::claim(BASE + 4096, 4096).unwrap();
        // Past the end of the address space: claims up to it.
        assert!(overlaps(BASE + 8191, u64::MAX), "from after's last byte on");
        drop((a, before));
        let again = HostImportClaim::claim(BASE, 4096).unwrap();
        drop((again, after));
        let tail = HostImportClaim::claim(BASE + 4096, u64::MAX).unwrap();
        assert!(overlaps(usize::MAX - 1, 1));
        drop(tail);
        HostImportClaim::claim(usize::MAX - 1, 1).unwrap();
    }
}
