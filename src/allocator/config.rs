//! How a [`GenericMemoryAllocator`](super::GenericMemoryAllocator) is set up: its create info
//! and the block-size table.

use crate::layout::DeviceSize;
use ash::vk;

const MIB: DeviceSize = 1 << 20;
const GIB: DeviceSize = 1 << 30;

/// `(heap size threshold, block size)` pairs: a heap uses the block size of the largest
/// threshold not above its size. Sorted by threshold, without duplicates, starting at 0.
pub type BlockSizeThresholds = Vec<(DeviceSize, DeviceSize)>;

/// How a [`GenericMemoryAllocator`](super::GenericMemoryAllocator) is set up.
#[derive(Clone, Debug, PartialEq)]
pub struct GenericMemoryAllocatorCreateInfo {
    /// Block size per heap, by heap-size threshold. The default value is
    /// `[(0, 64 MiB), (1 GiB, 256 MiB)]`. A block is never larger than its heap.
    pub block_sizes: BlockSizeThresholds,
    /// Pass `VkMemoryDedicatedAllocateInfo` for allocations the allocator decides to make
    /// dedicated (large or driver-preferred ones). Allocations the driver *requires* to be
    /// dedicated always get it when the device supports it. The default value is `true`.
    pub dedicated_allocation: bool,
    /// External memory handle types to export, one entry per memory type, or empty for none.
    /// The default value is empty.
    pub export_handle_types: Vec<vk::ExternalMemoryHandleTypeFlags>,
    /// Allocate memory with `VK_MEMORY_ALLOCATE_DEVICE_ADDRESS_BIT` when the
    /// `bufferDeviceAddress` feature is enabled. The default value is `true`.
    pub device_address: bool,
    /// Start pools with blocks of 1/8, 1/4 and 1/2 of the block size before using full-size
    /// blocks. The default value is `true`.
    pub grow_blocks: bool,
    /// Priority of blocks' memory for `VK_EXT_memory_priority`, 0.0 ..= 1.0. The default
    /// value is 0.5, the specification's default.
    pub block_priority: f32,
    /// How many arenas a block is cut into at most, so that threads allocating at the same
    /// time do not queue on one lock (see [threads](crate::allocator#threads)). `None`, the
    /// default, takes the number of CPUs the process may use, at most
    /// [`MAX_AUTO_BLOCK_ARENAS`]; `Some(1)` keeps blocks whole, which is a little faster
    /// (single-digit percent) when only one thread allocates. Counts are rounded down to a
    /// power of two, and arenas are only cut when each is at least 16 MiB. `Some(0)` and
    /// values above [`MAX_BLOCK_ARENAS`] are rejected.
    pub block_arenas: Option<usize>,
}

/// The most arenas per block that `block_arenas: None` picks.
pub const MAX_AUTO_BLOCK_ARENAS: usize = 4;

/// The most arenas per block that `block_arenas` accepts: threads get their home arena from
/// one of this many thread shards, so more arenas would never be anyone's home.
pub const MAX_BLOCK_ARENAS: usize = 8;

impl Default for GenericMemoryAllocatorCreateInfo {
    fn default() -> Self {
        Self {
            block_sizes: vec![(0, 64 * MIB), (GIB, 256 * MIB)],
            dedicated_allocation: true,
            export_handle_types: Vec::new(),
            device_address: true,
            grow_blocks: true,
            block_priority: 0.5,
            block_arenas: None,
        }
    }
}

/// Checks a block-size table: sorted, no duplicate thresholds, a threshold of 0, no zero
/// block size.
pub(crate) fn validate_block_sizes(table: &[(DeviceSize, DeviceSize)]) -> Result<(), String> {
    if table.first().map(|&(t, _)| t) != Some(0) {
        return Err("block_sizes must start with a threshold of 0".into());
    }
    if let Some(w) = table.windows(2).find(|w| w[0].0 >= w[1].0) {
        return Err(format!(
            "block_sizes must be sorted by threshold without duplicates ({} then {})",
            w[0].0, w[1].0
        ));
    }
    if table.iter().any(|&(_, size)| size == 0) {
        return Err("block sizes must not be zero".into());
    }
    Ok(())
}

/// The number of arenas per block that `block_arenas` asks for, rounded down to a power of
/// two, or why it is invalid.
pub(crate) fn arenas_per_block(block_arenas: Option<usize>) -> Result<usize, String> {
    let floor_pow2 = |n: usize| 1 << n.ilog2();
    match block_arenas {
        None => Ok(floor_pow2(
            std::thread::available_parallelism()
                .map_or(1, |n| n.get())
                .min(MAX_AUTO_BLOCK_ARENAS),
        )),
        Some(n @ 1..=MAX_BLOCK_ARENAS) => Ok(floor_pow2(n)),
        Some(n) => Err(format!(
            "block_arenas must be between 1 and {MAX_BLOCK_ARENAS}, not {n}"
        )),
    }
}

/// The block size for a heap of `heap_size` bytes, never above the heap size.
pub(crate) fn block_size_for_heap(
    table: &[(DeviceSize, DeviceSize)],
    heap_size: DeviceSize,
) -> DeviceSize {
    let i = table
        .partition_point(|&(t, _)| t <= heap_size)
        .saturating_sub(1);
    table[i].1.min(heap_size.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_size_table() {
        let t = GenericMemoryAllocatorCreateInfo::default().block_sizes;
        assert!(validate_block_sizes(&t).is_ok());
        assert_eq!(block_size_for_heap(&t, 512 * MIB), 64 * MIB);
        assert_eq!(block_size_for_heap(&t, GIB), 256 * MIB);
        assert_eq!(block_size_for_heap(&t, 16 * GIB), 256 * MIB);
        assert_eq!(block_size_for_heap(&t, 32 * MIB), 32 * MIB);
        assert!(validate_block_sizes(&[]).is_err());
        assert!(validate_block_sizes(&[(1, 4)]).is_err());
        assert!(validate_block_sizes(&[(0, 4), (8, 4), (8, 16)]).is_err());
        assert!(validate_block_sizes(&[(0, 4), (8, 4), (4, 16)]).is_err());
        assert!(validate_block_sizes(&[(0, 0)]).is_err());
    }

    #[test]
    fn block_arenas() {
        let auto = arenas_per_block(None).unwrap();
        assert!((1..=MAX_AUTO_BLOCK_ARENAS).contains(&auto));
        assert!(auto.is_power_of_two());
        assert_eq!(arenas_per_block(Some(1)), Ok(1));
        assert_eq!(arenas_per_block(Some(3)), Ok(2));
        assert_eq!(arenas_per_block(Some(7)), Ok(4));
        assert_eq!(
            arenas_per_block(Some(MAX_BLOCK_ARENAS)),
            Ok(MAX_BLOCK_ARENAS)
        );
        assert!(arenas_per_block(Some(0)).is_err());
        assert!(arenas_per_block(Some(MAX_BLOCK_ARENAS + 1)).is_err());
    }
}
