//! Kept empty blocks given back when a heap runs out of memory (see
//! [releasing](super::super::block_vec#releasing)): the default block vectors of a heap, the
//! custom pools' vectors, and what a custom pool calls to release the allocator's.

use super::GenericMemoryAllocator;
use crate::allocator::block_memory::{DeviceBlockVec, ReleaseKept};
use crate::suballocator::Suballocator;
use std::sync::Arc;

impl<S: Suballocator + Send + 'static> GenericMemoryAllocator<S> {
    /// Releases the empty blocks that the default block vectors of `memory_type_index`'s heap
    /// keep for reuse (see [releasing](super::super::block_vec#releasing)), each once the threads
    /// reading its list give it back (see `try_release_empty`). Returns how many were
    /// released. With `skip_own`, the caller holds `memory_type_index`'s list itself (it
    /// makes a block there, and gives back that vector's kept blocks itself): that vector
    /// is left out, as waiting for its own list could only time out.
    pub(super) fn release_kept_empty_blocks(
        &self,
        memory_type_index: u32,
        skip_own: bool,
    ) -> usize {
        let own = self
            .block_vecs
            .get(memory_type_index as usize)
            .filter(|_| skip_own);
        let released: usize = self
            .block_vecs_of_heap(memory_type_index)
            .filter(|vec| !own.is_some_and(|own| Arc::ptr_eq(vec, own)))
            .map(|vec| vec.try_release_empty())
            .sum();
        // The custom pools' kept blocks in the heap too (each pool keeps one block's worth).
        let heap = self
            .device
            .memory_properties()
            .memory_type(memory_type_index)
            .map(|t| t.heap_index);
        released + heap.map_or(0, |heap| self.observer.release_pools_kept(heap))
    }

    /// The default block vectors of the memory types of `memory_type_index`'s heap (none for
    /// an index out of range: a custom pool's configuration is checked after this).
    fn block_vecs_of_heap(
        &self,
        memory_type_index: u32,
    ) -> impl Iterator<Item = &Arc<DeviceBlockVec<S>>> {
        let types = &self.device.memory_properties().memory_types;
        let heap = self
            .block_vecs
            .get(memory_type_index as usize)
            .map(|_| types[memory_type_index as usize].heap_index);
        self.block_vecs
            .iter()
            .zip(types)
            .filter(move |(_, t)| Some(t.heap_index) == heap)
            .map(|(vec, _)| vec)
    }

    /// What releases the kept empty blocks of `memory_type_index`'s heap for a custom pool
    /// of that heap: the pool holds the vectors weakly (it may outlive the allocator).
    pub(super) fn kept_releaser(&self, memory_type_index: u32) -> ReleaseKept {
        let vecs: Vec<_> = self
            .block_vecs_of_heap(memory_type_index)
            .map(Arc::downgrade)
            .collect();
        Box::new(move || {
            vecs.iter()
                .filter_map(std::sync::Weak::upgrade)
                .map(|vec| vec.try_release_empty())
                .sum()
        })
    }
}
