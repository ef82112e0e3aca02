//! A cache of memory-type choices for the allocation hot path.

use super::intent::CLASSES;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Remembers the memory type picked for the most recent `memory_type_bits` of each intent
/// class ([`class_of`](super::intent::class_of): the simple usages, and each automatic usage
/// with each host access and kind of resource). The cached choice is the one before any
/// rationing of small heaps ([caching](super::intent#caching-the-choice)), a pure function of
/// the bits, the class and the device, so a stale or racing entry is never wrong, only missed.
pub(crate) struct TypeCache([AtomicU64; CLASSES]);

impl Default for TypeCache {
    fn default() -> Self {
        Self(std::array::from_fn(|_| AtomicU64::new(0)))
    }
}

impl TypeCache {
    /// The type cached for `bits` in `class`, if any (the hot path's look-up: a miss takes the
    /// full path, which fills the entry).
    #[inline]
    pub(crate) fn get(&self, bits: u32, class: usize) -> Option<u32> {
        let entry = self.0.get(class)?.load(Relaxed);
        (entry != 0 && entry as u32 == bits).then(|| (entry >> 32) as u32 - 1)
    }

    /// The type for `bits` in `class` (`None`: not cached), from the cache or from `find`.
    #[inline]
    pub(crate) fn get_or(
        &self,
        bits: u32,
        class: Option<usize>,
        find: impl FnOnce() -> Option<u32>,
    ) -> Option<u32> {
        let Some(slot) = class.and_then(|c| self.0.get(c)) else {
            return find();
        };
        let entry = slot.load(Relaxed);
        if entry != 0 && entry as u32 == bits {
            return Some((entry >> 32) as u32 - 1);
        }
        let index = find()?;
        slot.store(bits as u64 | (index as u64 + 1) << 32, Relaxed);
        Some(index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::allocator::intent::{class_of, HostAccess, ResourceUsage};
    use crate::{MemoryTypeFilter, MemoryUsage};
    use std::cell::Cell;

    fn class(usage: MemoryUsage) -> Option<usize> {
        class_of(usage, ResourceUsage::Unknown)
    }

    #[test]
    fn type_cache_remembers_per_class_and_bits() {
        let cache = TypeCache::default();
        let calls = Cell::new(0);
        let find = |answer| {
            calls.set(calls.get() + 1);
            Some(answer)
        };
        let device = class(MemoryUsage::DeviceOnly);
        assert_eq!(cache.get_or(0b101, device, || find(2)), Some(2));
        assert_eq!(cache.get_or(0b101, device, || find(7)), Some(2));
        assert_eq!(calls.get(), 1, "a hit must not search");
        assert_eq!(cache.get(0b101, device.unwrap()), Some(2));
        assert_eq!(cache.get(0b100, device.unwrap()), None, "other bits miss");
        // Other bits or another class search again.
        assert_eq!(cache.get_or(0b111, device, || find(1)), Some(1));
        assert_eq!(
            cache.get_or(0b111, class(MemoryUsage::Upload), || find(0)),
            Some(0)
        );
        assert_eq!(calls.get(), 3);
        // Custom filters are never cached, and a failed search is not remembered.
        let custom = class(MemoryUsage::Custom(MemoryTypeFilter::default()));
        assert_eq!(custom, None);
        assert_eq!(cache.get_or(0b1, custom, || find(0)), Some(0));
        assert_eq!(cache.get_or(0b1, custom, || find(0)), Some(0));
        assert_eq!(calls.get(), 5);
        let download = class(MemoryUsage::Download);
        assert_eq!(cache.get_or(0b10, download, || None), None);
        assert_eq!(cache.get_or(0b10, download, || find(1)), Some(1));
        // Automatic usages have a slot per host access and kind of resource.
        let auto = class(MemoryUsage::Auto(HostAccess::SequentialWrite));
        let staging = class_of(
            MemoryUsage::Auto(HostAccess::SequentialWrite),
            ResourceUsage::Buffer(ash::vk::BufferUsageFlags::TRANSFER_SRC),
        );
        assert_ne!(auto, staging);
        assert_eq!(cache.get_or(0b11, auto, || find(1)), Some(1));
        assert_eq!(cache.get_or(0b11, staging, || find(0)), Some(0));
        assert_eq!(cache.get_or(0b11, auto, || find(9)), Some(1));
    }
}
