//! How a [`GenericMemoryAllocator`](super::GenericMemoryAllocator) is set up: its create info,
//! the block-size table and the configuration errors.

use crate::device_memory::ExportHandleTypes;
use crate::layout::DeviceSize;

const MIB: DeviceSize = 1 << 20;
const GIB: DeviceSize = 1 << 30;

/// Block sizes by heap size: a heap uses the block size of the largest threshold not above
/// its size (and never a block larger than the heap).
///
/// A checked table: built by [`new`](Self::new) from `(heap size threshold, block size)`
/// pairs, which must start at a threshold of 0, be sorted by threshold without duplicates,
/// and have no zero block size.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockSizeThresholds(Vec<(DeviceSize, DeviceSize)>);

impl Default for BlockSizeThresholds {
    /// `[(0, 64 MiB), (1 GiB, 256 MiB)]`: 64 MiB blocks on heaps smaller than 1 GiB (a BAR
    /// window, a small integrated heap), 256 MiB blocks on the others.
    fn default() -> Self {
        Self(vec![(0, 64 * MIB), (GIB, 256 * MIB)])
    }
}

impl BlockSizeThresholds {
    /// Checks and wraps a table of `(heap size threshold, block size)` pairs.
    pub fn new(table: Vec<(DeviceSize, DeviceSize)>) -> Result<Self, ConfigError> {
        if table.first().map(|&(t, _)| t) != Some(0) {
            return Err(ConfigError::BlockSizes(
                "the table must start with a threshold of 0",
            ));
        }
        if table.windows(2).any(|w| w[0].0 >= w[1].0) {
            return Err(ConfigError::BlockSizes(
                "thresholds must be sorted and distinct",
            ));
        }
        if table.iter().any(|&(_, size)| size == 0) {
            return Err(ConfigError::BlockSizes("block sizes must not be zero"));
        }
        Ok(Self(table))
    }

    /// One block size for every heap (never larger than the heap), or an error for 0.
    pub fn uniform(block_size: DeviceSize) -> Result<Self, ConfigError> {
        Self::new(vec![(0, block_size)])
    }

    /// The pairs.
    pub fn as_slice(&self) -> &[(DeviceSize, DeviceSize)] {
        &self.0
    }

    /// The block size for a heap of `heap_size` bytes, never above the heap size.
    pub fn block_size_for_heap(&self, heap_size: DeviceSize) -> DeviceSize {
        let i = self
            .0
            .partition_point(|&(t, _)| t <= heap_size)
            .saturating_sub(1);
        self.0
            .get(i)
            .map_or(heap_size, |&(_, size)| size)
            .min(heap_size.max(1))
    }
}

/// Why an allocator (or pool) configuration was rejected.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The block-size table is invalid.
    #[error("invalid block_sizes: {0}")]
    BlockSizes(&'static str),
    /// `block_arenas` is 0 or above [`MAX_BLOCK_ARENAS`].
    #[error("block_arenas must be between 1 and {MAX_BLOCK_ARENAS}, not {0}")]
    BlockArenas(usize),
    /// The per-type export table does not have one entry per memory type.
    #[error("export_handle_types has {given} entries, the device has {types} memory types")]
    ExportHandleTypes {
        /// Entries given.
        given: usize,
        /// Memory types of the device.
        types: usize,
    },
    /// A priority that is NaN or outside 0.0 ..= 1.0.
    #[error("priority {0} is not within 0.0 ..= 1.0")]
    Priority(f32),
    /// A custom pool's block counts or size are inconsistent.
    #[error("invalid pool configuration: {0}")]
    Pool(&'static str),
    /// The debug options are invalid.
    #[error("invalid debug options: {0}")]
    Debug(&'static str),
    /// A custom pool's [`memory_allocate_next`](super::PoolCreateInfo::memory_allocate_next)
    /// holds an import structure: a pool makes many memory objects, and each would import
    /// the same handle again (see [`external_memory`](crate::external_memory)).
    #[error("a pool's memory_allocate_next holds an import structure ({0:?}); a pool makes many memory objects: import with import_memory instead")]
    PoolImport(ash::vk::StructureType),
}

/// How a [`GenericMemoryAllocator`](super::GenericMemoryAllocator) is set up.
///
/// Build it with `..Default::default()`: new fields may be added.
#[derive(Clone, Debug, PartialEq)]
pub struct GenericMemoryAllocatorCreateInfo {
    /// Block size per heap, by heap-size threshold. The default value is
    /// [`BlockSizeThresholds::default`]: 64 MiB blocks, 256 MiB on heaps of 1 GiB or more.
    pub block_sizes: BlockSizeThresholds,
    /// Pass `VkMemoryDedicatedAllocateInfo` for dedicated allocations the driver prefers
    /// (`prefersDedicatedAllocation`) or the caller asks for
    /// ([`MemoryAllocatePreference::AlwaysAllocate`](crate::MemoryAllocatePreference::AlwaysAllocate)).
    /// Allocations the driver *requires* to be dedicated always get it when the device
    /// supports it. A request the allocator makes dedicated for its size alone never names
    /// its resource: its memory object is made as a block's would be, so that it stays as
    /// an empty block for the next large request when the allocation is freed (see
    /// [kept blocks for large requests](crate::allocator::placement#kept-blocks-for-large-requests)).
    /// The default value is `true`.
    pub dedicated_allocation: bool,
    /// External memory handle types to export, one entry per memory type, or empty for none.
    /// The default value is empty.
    pub export_handle_types: Vec<ExportHandleTypes>,
    /// Allocate memory with `VK_MEMORY_ALLOCATE_DEVICE_ADDRESS_BIT` when the
    /// `bufferDeviceAddress` feature is enabled. The default value is `true`.
    pub device_address: bool,
    /// Start pools with smaller blocks (see
    /// [block sizes](crate::allocator::placement#block-sizes)) before using full-size
    /// blocks. The default value is `true`.
    pub grow_blocks: bool,
    /// Priority of blocks' memory for `VK_EXT_memory_priority`, 0.0 ..= 1.0 (anything else,
    /// NaN included, is rejected). The default value is 0.5, the specification's default.
    pub block_priority: f32,
    /// How many arenas a block is cut into at most, so that threads allocating at the same
    /// time do not queue on one lock (see [threads](crate::allocator#threads)). `None`, the
    /// default, takes the number of CPUs the process may use, at most
    /// [`MAX_AUTO_BLOCK_ARENAS`]; `Some(1)` keeps blocks whole, which is a little faster
    /// (single-digit percent) when only one thread allocates. Counts are rounded down to a
    /// power of two, and arenas are only cut when each is at least
    /// [`MIN_ARENA_SIZE`](crate::allocator::placement::MIN_ARENA_SIZE). `Some(0)` and values
    /// above [`MAX_BLOCK_ARENAS`] are rejected. The default value is `None`.
    pub block_arenas: Option<usize>,
    /// Debug aids: margins, fill patterns, logging, backtraces (see
    /// [`corruption`](crate::corruption)). The default value is every option off, which costs
    /// nothing.
    pub debug: DebugOptions,
    #[doc(hidden)]
    pub _ne: crate::non_exhaustive::NonExhaustive,
}

/// Debug aids, all off by default except the [leak check](LeakCheck) of debug builds (see
/// [`corruption`](crate::corruption)). Custom pools use their allocator's.
///
/// Build it with `..Default::default()`: new fields may be added.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DebugOptions {
    /// Bytes of margin before and after every suballocation, filled with a magic pattern in
    /// host-visible memory and checked when the allocation is freed and by
    /// [`check_corruption`](super::GenericMemoryAllocator::check_corruption). A multiple of 4,
    /// at most 1 MiB. The default value is 0: no margins.
    pub margin: DeviceSize,
    /// Fill new allocations in host-visible memory with
    /// [`NEW_BYTE`](crate::corruption::NEW_BYTE) and freed ones with
    /// [`FREED_BYTE`](crate::corruption::FREED_BYTE); imported memory
    /// ([`import_memory`](super::GenericMemoryAllocator::import_memory)) is never filled, its
    /// bytes are the payload. The default value is `false`.
    pub fill_patterns: bool,
    /// Log every allocation and free at the `trace` level (target
    /// [`ALLOCATIONS_LOG_TARGET`](crate::corruption::ALLOCATIONS_LOG_TARGET)). Whether an
    /// allocation is logged is decided when it is made: one made while that level is off for
    /// the target (no logger, or a coarser filter) costs nothing and is not logged, nor is its
    /// free. The default value is `false`.
    pub log_allocations: bool,
    /// Capture a backtrace of where each allocation is made, for the leak report (slow: use
    /// it to hunt a leak). The default value is `false`.
    pub capture_backtraces: bool,
    /// What happens when the allocator, or a custom pool, is dropped while allocations of its
    /// memory are alive. The default value is [`LeakCheck::Panic`] in debug builds (with
    /// `debug_assertions`, like VMA's assert) and [`LeakCheck::Log`] in release builds.
    pub leak_check: LeakCheck,
    #[doc(hidden)]
    pub _ne: crate::non_exhaustive::NonExhaustive,
}

impl Default for DebugOptions {
    fn default() -> Self {
        Self {
            margin: 0,
            fill_patterns: false,
            log_allocations: false,
            capture_backtraces: false,
            leak_check: LeakCheck::default(),
            _ne: crate::non_exhaustive::NonExhaustive(()),
        }
    }
}

/// What dropping an allocator or a custom pool does about allocations still alive.
///
/// Allocations may outlive their allocator: each keeps its memory alive and frees it when
/// dropped, so nothing is unsound. But an allocation still alive at that point is usually a
/// leak (a buffer never destroyed, a handle kept in a cache), so in debug builds the default
/// makes it impossible to miss: the leak report (each allocation's name, size, memory type,
/// user data and, with [`capture_backtraces`](DebugOptions::capture_backtraces), where it was
/// made) goes to the `log` facade (target [`ash_memory::leaks`](crate::stats::LOG_TARGET),
/// level `warn`) or, when no logger takes that target, to standard error, and then the drop
/// panics (unless the thread is already panicking).
///
/// To opt out, for an allocator whose allocations are meant to outlive it, set
/// `debug: DebugOptions { leak_check: LeakCheck::Log, ..Default::default() }` in its create
/// info (or [`Off`](Self::Off) for silence). [`report_leaks`](crate::GenericMemoryAllocator::report_leaks)
/// lists the live allocations at any time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LeakCheck {
    /// Say nothing.
    Off,
    /// Log the leak report at the `warn` level, when a logger takes it. The default in
    /// release builds.
    Log,
    /// Log it, or print it to standard error when no logger takes it.
    Print,
    /// As [`Print`](Self::Print), then panic. The default in debug builds.
    Panic,
}

impl Default for LeakCheck {
    fn default() -> Self {
        if cfg!(debug_assertions) {
            Self::Panic
        } else {
            Self::Log
        }
    }
}

/// The largest debug margin accepted.
pub const MAX_DEBUG_MARGIN: DeviceSize = 1 << 20;

impl DebugOptions {
    /// Whether any option is on.
    #[inline]
    pub(crate) fn any(&self) -> bool {
        self.margin != 0 || self.fill_patterns || self.log_allocations || self.capture_backtraces
    }

    /// Checks the options.
    pub(crate) fn check(&self) -> Result<(), ConfigError> {
        if self.margin % 4 != 0 || self.margin > MAX_DEBUG_MARGIN {
            return Err(ConfigError::Debug(
                "margin must be a multiple of 4 and at most 1 MiB",
            ));
        }
        Ok(())
    }
}

/// The most arenas per block that `block_arenas: None` picks.
pub const MAX_AUTO_BLOCK_ARENAS: usize = 4;

pub use super::placement::MAX_BLOCK_ARENAS;

impl Default for GenericMemoryAllocatorCreateInfo {
    fn default() -> Self {
        Self {
            block_sizes: BlockSizeThresholds::default(),
            dedicated_allocation: true,
            export_handle_types: Vec::new(),
            device_address: true,
            grow_blocks: true,
            block_priority: 0.5,
            block_arenas: None,
            debug: DebugOptions::default(),
            _ne: crate::non_exhaustive::NonExhaustive(()),
        }
    }
}

/// The number of arenas per block that `block_arenas` asks for, rounded down to a power of
/// two, or why it is invalid.
pub(crate) fn arenas_per_block(block_arenas: Option<usize>) -> Result<usize, ConfigError> {
    let floor_pow2 = |n: usize| 1 << n.ilog2();
    match block_arenas {
        None => Ok(floor_pow2(
            std::thread::available_parallelism()
                .map_or(1, |n| n.get())
                .min(MAX_AUTO_BLOCK_ARENAS),
        )),
        Some(n @ 1..=MAX_BLOCK_ARENAS) => Ok(floor_pow2(n)),
        Some(n) => Err(ConfigError::BlockArenas(n)),
    }
}

/// Checks a priority: finite and within 0.0 ..= 1.0.
pub(crate) fn check_priority(priority: f32) -> Result<f32, ConfigError> {
    if crate::device_memory::is_valid_priority(priority) {
        Ok(priority)
    } else {
        Err(ConfigError::Priority(priority))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_size_table() {
        let t = BlockSizeThresholds::default();
        assert_eq!(t.block_size_for_heap(512 * MIB), 64 * MIB);
        assert_eq!(t.block_size_for_heap(GIB - 1), 64 * MIB);
        assert_eq!(t.block_size_for_heap(GIB), 256 * MIB);
        assert_eq!(t.block_size_for_heap(16 * GIB), 256 * MIB);
        assert_eq!(t.block_size_for_heap(32 * MIB), 32 * MIB);
        assert_eq!(t.block_size_for_heap(0), 1);
        assert!(BlockSizeThresholds::new(vec![]).is_err());
        assert!(BlockSizeThresholds::new(vec![(1, 4)]).is_err());
        assert!(BlockSizeThresholds::new(vec![(0, 4), (8, 4), (8, 16)]).is_err());
        assert!(BlockSizeThresholds::new(vec![(0, 4), (8, 4), (4, 16)]).is_err());
        assert!(BlockSizeThresholds::new(vec![(0, 0)]).is_err());
        assert!(BlockSizeThresholds::uniform(0).is_err());
        assert_eq!(
            BlockSizeThresholds::uniform(MIB)
                .unwrap()
                .block_size_for_heap(GIB),
            MIB
        );
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
        assert_eq!(arenas_per_block(Some(0)), Err(ConfigError::BlockArenas(0)));
        assert!(arenas_per_block(Some(MAX_BLOCK_ARENAS + 1)).is_err());
    }

    #[test]
    fn debug_options() {
        assert!(!DebugOptions::default().any());
        assert!(DebugOptions::default().check().is_ok());
        let margin = |margin| DebugOptions {
            margin,
            ..Default::default()
        };
        assert!(margin(16).any());
        assert!(margin(16).check().is_ok());
        assert!(margin(MAX_DEBUG_MARGIN).check().is_ok());
        assert!(margin(6).check().is_err());
        assert!(margin(MAX_DEBUG_MARGIN + 4).check().is_err());
    }

    #[test]
    fn priorities() {
        assert_eq!(check_priority(0.0), Ok(0.0));
        assert_eq!(check_priority(1.0), Ok(1.0));
        assert!(check_priority(f32::NAN).is_err());
        assert!(check_priority(-0.1).is_err());
        assert!(check_priority(1.1).is_err());
        assert!(check_priority(f32::INFINITY).is_err());
    }
}
