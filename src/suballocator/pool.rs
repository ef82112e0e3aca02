//! Placeholder, replaced by the real implementation.
use super::*;

/// Placeholder.
#[derive(Debug)]
pub struct PoolAllocator<const BLOCK_SIZE: u64> {
    region_size: DeviceSize,
}

impl<const BLOCK_SIZE: u64> Suballocator for PoolAllocator<BLOCK_SIZE> {
    fn new(region_size: DeviceSize) -> Self {
        Self { region_size }
    }
    fn region_size(&self) -> DeviceSize {
        self.region_size
    }
    fn allocate(
        &mut self,
        _layout: DeviceLayout,
        _allocation_type: AllocationType,
        _buffer_image_granularity: DeviceAlignment,
    ) -> Result<Suballocation, SuballocatorError> {
        todo!()
    }
    #[allow(unsafe_code)] // The trait's contract; nothing unsafe happens inside.
    unsafe fn deallocate(&mut self, _suballocation: Suballocation) {
        todo!()
    }
    fn free_size(&self) -> DeviceSize {
        todo!()
    }
    fn largest_free_range(&self) -> DeviceSize {
        todo!()
    }
    fn allocation_count(&self) -> usize {
        todo!()
    }
    fn reset(&mut self) {
        todo!()
    }
    fn for_each_range(&self, _f: &mut dyn FnMut(RangeInfo)) {
        todo!()
    }
}
