//! The full allocate sequence of the default block vectors: any request, in every memory
//! type that may serve it, in the policy's order.
//!
//! The first memory type the policy would choose is found without the budget and rationing
//! work of a full choice, then prepared and tried in its existing blocks (the first two steps
//! of its vector's sequence, see [`execute`](crate::allocator::execute)). If they do not serve
//! the request, that type continues with the rest of its ladder (new blocks, a dedicated
//! memory object) rather than starting over, and the next types follow while the failure
//! says another type may help. The [hot path](super::hot) serves most requests before this
//! runs.

use super::GenericMemoryAllocator;
use crate::allocation::MemoryAlloc;
use crate::allocator::placement::Request;
use crate::allocator::request::check_create_info;
use crate::allocator::{AllocationCreateInfo, AllocationError, AllocationRequirements};
use crate::device_memory::DedicatedAllocation;
use crate::suballocator::{AllocationType, Suballocator};

impl<S: Suballocator + Send + 'static> GenericMemoryAllocator<S> {
    /// The full allocate sequence (see [`allocate`](crate::MemoryAllocator::allocate)): any request,
    /// in any memory type that may serve it. Out of line: the hot path serves most requests.
    #[inline(never)]
    pub(super) fn allocate_full(
        &self,
        requirements: AllocationRequirements,
        allocation_type: AllocationType,
        create_info: &AllocationCreateInfo,
        dedicated: Option<DedicatedAllocation>,
    ) -> Result<MemoryAlloc, AllocationError> {
        let mut bits = self.usable_bits(requirements.memory_type_bits)?;
        check_create_info(create_info)?;
        let requirements = AllocationRequirements {
            layout: requirements.layout.align_to(create_info.min_alignment)?,
            ..requirements
        };
        let resolved = self.resolve(create_info);
        let size = requirements.layout.size();
        let request = Request {
            layout: requirements.layout,
            preference: create_info.allocate_preference,
            prefers_dedicated: requirements.prefers_dedicated_allocation,
            requires_dedicated: requirements.requires_dedicated_allocation,
        };
        // The common case first: the first memory type the policy would choose, found without
        // the budget and rationing work of a full choice, prepared and tried in its existing
        // blocks (the first two steps of its vector's sequence). Anything else takes the full
        // path below, which continues that type from there.
        let mut demoted = None;
        let mut first = None;
        if let Some(index) = self.first_choice(bits, create_info, &resolved, size, &mut demoted) {
            let source = self.source(index);
            let vector = self.vector(index, &source);
            if let Ok(p) =
                vector.prepare(&request, allocation_type, create_info.strategy, create_info)
            {
                if let Some(alloc) = vector.existing(&p) {
                    return Ok(alloc);
                }
                first = Some((index, p));
            }
        }
        let demoted = demoted.unwrap_or_else(|| self.rationed_out(bits, &resolved, size));
        let mut last_error = None;
        loop {
            let Some(index) = self.choose(bits, &resolved, demoted) else {
                return Err(last_error.unwrap_or(AllocationError::NoSuitableMemoryType {
                    bits: requirements.memory_type_bits,
                    required: resolved.filter.required_flags,
                }));
            };
            let result = match first.take_if(|(i, _)| *i == index) {
                Some((_, p)) => {
                    let source = self.source(index);
                    let vector = self.vector(index, &source);
                    vector.rest(&p, &request, allocation_type, create_info, dedicated)
                }
                None => {
                    self.allocate_in_type(index, &request, allocation_type, create_info, dedicated)
                }
            };
            match result {
                Ok(a) => return Ok(a),
                Err(e) if e.failure().tries_next_type() => {
                    bits &= !(1 << index);
                    last_error = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
    }
}
