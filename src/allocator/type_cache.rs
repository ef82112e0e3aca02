//! A cache of memory-type choices for the allocation hot path.

use super::MemoryUsage;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Remembers the memory type picked for the most recent `memory_type_bits` of each of the
/// three standard [`MemoryUsage`]s. The choice is a pure function of the bits, the usage and
/// the device, so a stale or racing entry is never wrong, only missed.
#[derive(Default)]
pub(crate) struct TypeCache([AtomicU64; 3]);

impl TypeCache {
    fn slot(usage: MemoryUsage) -> Option<usize> {
        match usage {
            MemoryUsage::DeviceOnly => Some(0),
            MemoryUsage::Upload => Some(1),
            MemoryUsage::Download => Some(2),
            MemoryUsage::Custom(_) => None,
        }
    }

    #[inline]
    pub(crate) fn get_or(
        &self,
        bits: u32,
        usage: MemoryUsage,
        find: impl FnOnce() -> Option<u32>,
    ) -> Option<u32> {
        let Some(slot) = Self::slot(usage) else {
            return find();
        };
        let entry = self.0[slot].load(Relaxed);
        if entry != 0 && entry as u32 == bits {
            return Some((entry >> 32) as u32 - 1);
        }
        let index = find()?;
        self.0[slot].store(bits as u64 | (index as u64 + 1) << 32, Relaxed);
        Some(index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemoryTypeFilter;
    use std::cell::Cell;

    #[test]
    fn type_cache_remembers_per_usage_and_bits() {
        let cache = TypeCache::default();
        let calls = Cell::new(0);
        let find = |answer| {
            calls.set(calls.get() + 1);
            Some(answer)
        };
        assert_eq!(
            cache.get_or(0b101, MemoryUsage::DeviceOnly, || find(2)),
            Some(2)
        );
        assert_eq!(
            cache.get_or(0b101, MemoryUsage::DeviceOnly, || find(7)),
            Some(2)
        );
        assert_eq!(calls.get(), 1, "a hit must not search");
        // Other bits or another usage search again.
        assert_eq!(
            cache.get_or(0b111, MemoryUsage::DeviceOnly, || find(1)),
            Some(1)
        );
        assert_eq!(
            cache.get_or(0b111, MemoryUsage::Upload, || find(0)),
            Some(0)
        );
        assert_eq!(calls.get(), 3);
        // Custom filters are never cached, and a failed search is not remembered.
        let custom = MemoryUsage::Custom(MemoryTypeFilter::default());
        assert_eq!(cache.get_or(0b1, custom, || find(0)), Some(0));
        assert_eq!(cache.get_or(0b1, custom, || find(0)), Some(0));
        assert_eq!(calls.get(), 5);
        assert_eq!(cache.get_or(0b10, MemoryUsage::Download, || None), None);
        assert_eq!(
            cache.get_or(0b10, MemoryUsage::Download, || find(1)),
            Some(1)
        );
    }
}
