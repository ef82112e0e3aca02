//! Importing external memory as an allocation (see [`crate::external_memory`]).

use super::{AllocationCreateInfo, AllocationError, GenericMemoryAllocator};
use crate::allocation::MemoryAlloc;
use crate::device_memory::external::ExternalMemoryImport;
use crate::device_memory::{DedicatedAllocation, MemoryObjectCreateInfo};
use crate::layout::DeviceSize;
use crate::suballocator::Suballocator;

impl<S: Suballocator + Send + 'static> GenericMemoryAllocator<S> {
    /// Imports external memory (a file descriptor or a host allocation) as an allocation of
    /// its own memory object, of `size` bytes of memory type `memory_type_index`, optionally
    /// dedicated to a resource. The allocator's statistics, budget accounting and leak
    /// report count it like a dedicated allocation; dropping it frees the memory object
    /// (for a host allocation the host memory stays the application's, and must outlive
    /// the allocation).
    ///
    /// The import's rules (see [`crate::external_memory`]) are checked first:
    /// [`ExternalMemoryImport::memory_type_bits`] lists the types it may go to; for an opaque
    /// fd, use the exporter's memory type and size ([`ExportedFd`](crate::ExportedFd)).
    /// `create_info`'s name, user data, priority and `within_budget` apply; its usage and
    /// preference do not.
    pub fn import_memory(
        &self,
        import: ExternalMemoryImport,
        memory_type_index: u32,
        size: DeviceSize,
        dedicated: Option<DedicatedAllocation>,
        create_info: &AllocationCreateInfo,
    ) -> Result<MemoryAlloc, AllocationError> {
        self.dedicated_from(
            MemoryObjectCreateInfo {
                size,
                memory_type_index,
                dedicated,
                import: Some(import),
                ..Default::default()
            },
            create_info,
        )
    }
}
