//! The leak report: the allocations still alive, and how they are logged.

use super::snapshot::BlockSnapshot;
use crate::layout::DeviceSize;
use crate::suballocator::{AllocationType, RangeKind};
use std::fmt;
use std::sync::Arc;

/// An allocation that is still alive when it should not be (see
/// [`GenericMemoryAllocator::report_leaks`](crate::GenericMemoryAllocator::report_leaks)).
///
/// Suballocated allocations are found from their block's ranges, so the `size` and `offset` are
/// those of the allocated range (including padding the suballocator gave it), and a
/// suballocator that reports several allocations as one range shows them as one entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeakedAllocation {
    /// The allocation's name, if it was given one in `AllocationCreateInfo::name`.
    pub name: Option<Arc<str>>,
    /// The size of the allocated range.
    pub size: DeviceSize,
    /// The offset of the range in its memory object.
    pub offset: DeviceSize,
    /// The memory type.
    pub memory_type_index: u32,
    /// The heap of that memory type.
    pub heap_index: u32,
    /// The raw `VkDeviceMemory` handle.
    pub memory: u64,
    /// Whether the allocation is dedicated.
    pub dedicated: bool,
    /// The resource kind it was made for.
    pub allocation_type: AllocationType,
    /// The custom pool it was made in, if any.
    pub pool: Option<Arc<str>>,
    /// The `Debug` text of its user data, if any.
    pub user_data: Option<Arc<str>>,
    /// Where it was made, when the allocator captures backtraces.
    pub backtrace: Option<Arc<str>>,
}

impl fmt::Display for LeakedAllocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.name {
            Some(name) => write!(f, "allocation {name:?}")?,
            None => f.write_str("unnamed allocation")?,
        }
        write!(
            f,
            " of {} bytes ({}), memory type {}, heap {}, {} {:#x} at offset {}",
            self.size,
            self.allocation_type.name(),
            self.memory_type_index,
            self.heap_index,
            if self.dedicated {
                "dedicated memory"
            } else {
                "block"
            },
            self.memory,
            self.offset
        )?;
        if let Some(pool) = &self.pool {
            write!(f, ", pool {pool:?}")?;
        }
        if let Some(data) = &self.user_data {
            write!(f, ", user data {data}")?;
        }
        if let Some(backtrace) = &self.backtrace {
            write!(f, ", allocated at:\n{backtrace}")?;
        }
        Ok(())
    }
}

/// Every allocated range of `blocks`, as leaks.
pub fn leaks_in(blocks: &[BlockSnapshot]) -> Vec<LeakedAllocation> {
    let mut leaks = Vec::new();
    for b in blocks {
        for r in &b.ranges {
            if let RangeKind::Allocated(allocation_type) = r.kind {
                leaks.push(LeakedAllocation {
                    name: r.name.clone(),
                    size: r.size,
                    offset: r.offset,
                    memory_type_index: b.memory_type_index,
                    heap_index: b.heap_index,
                    memory: b.memory,
                    dedicated: b.dedicated,
                    allocation_type,
                    pool: b.pool.clone(),
                    user_data: r.user_data.clone(),
                    backtrace: r.backtrace.clone(),
                });
            }
        }
    }
    leaks
}

/// Logs `leaks` through the `log` facade at `level`, one record each and a summary first.
/// `context` says when the report was made.
pub(crate) fn log_leaks(leaks: &[LeakedAllocation], level: log::Level, context: &str) {
    if leaks.is_empty() || !log::log_enabled!(target: LOG_TARGET, level) {
        return;
    }
    let bytes: DeviceSize = leaks.iter().map(|l| l.size).sum();
    log::log!(
        target: LOG_TARGET,
        level,
        "{context}: {} allocation(s) still alive, {bytes} bytes",
        leaks.len()
    );
    for leak in leaks {
        log::log!(target: LOG_TARGET, level, "leaked {leak}");
    }
}

/// The `log` target of leak reports.
pub const LOG_TARGET: &str = "ash_memory::leaks";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::RangeSnapshot;

    #[test]
    fn allocated_ranges_become_leaks() {
        let block = BlockSnapshot {
            memory_type_index: 2,
            heap_index: 1,
            memory: 0xabc,
            size: 300,
            dedicated: false,
            pool: Some("meshes".into()),
            allocation_count: 2,
            ranges: vec![
                RangeSnapshot {
                    name: Some("vertices".into()),
                    user_data: Some("Mesh(7)".into()),
                    backtrace: Some("0: main".into()),
                    ..RangeSnapshot::new(0, 100, RangeKind::Allocated(AllocationType::Linear))
                },
                RangeSnapshot::new(100, 100, RangeKind::Free),
                RangeSnapshot::new(200, 100, RangeKind::Allocated(AllocationType::NonLinear)),
            ],
        };
        let leaks = leaks_in(&[block]);
        assert_eq!(leaks.len(), 2);
        assert_eq!(leaks[0].name.as_deref(), Some("vertices"));
        assert_eq!(leaks[1].offset, 200);
        let text = leaks[0].to_string();
        assert!(text.contains("\"vertices\""), "{text}");
        assert!(text.contains("100 bytes"), "{text}");
        assert!(text.contains("memory type 2"), "{text}");
        assert!(text.contains("pool \"meshes\""), "{text}");
        assert!(text.contains("user data Mesh(7)"), "{text}");
        assert!(text.contains("allocated at:\n0: main"), "{text}");
        assert!(leaks[1].to_string().starts_with("unnamed allocation"));
        assert!(!leaks[1].to_string().contains("user data"));
    }
}
