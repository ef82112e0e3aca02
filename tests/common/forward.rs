//! [`forward_to_free_list!`]: the methods of a test's `Suballocator` wrapper around a
//! `FreeListAllocator` (its field `0`) that only forward, so that the wrapper writes out just
//! the methods its test changes.

/// Forwards the named `Suballocator` methods (`new`, `region_size`, `allocate`, `deallocate`,
/// `free_size`, `largest_free_range`, `allocation_count`, `reset`, `for_each_range`) of a
/// wrapper `struct W(FreeListAllocator)` to the free list. Used inside the wrapper's
/// `unsafe impl Suballocator`, whose `SAFETY` comment covers the forwarded methods as well.
// Not every test binary that includes `common` wraps a suballocator.
#[allow(unused_macros)]
macro_rules! forward_to_free_list {
    ($($method:ident),* $(,)?) => {
        $( $crate::common::forward::forward_to_free_list!(@ $method); )*
    };
    (@ new) => {
        fn new(region_size: DeviceSize) -> Self {
            Self(FreeListAllocator::new(region_size))
        }
    };
    (@ region_size) => {
        fn region_size(&self) -> DeviceSize {
            self.0.region_size()
        }
    };
    (@ allocate) => {
        fn allocate(
            &mut self,
            layout: DeviceLayout,
            allocation_type: AllocationType,
            granularity: DeviceAlignment,
        ) -> Result<Suballocation, SuballocatorError> {
            self.0.allocate(layout, allocation_type, granularity)
        }
    };
    (@ deallocate) => {
        unsafe fn deallocate(&mut self, suballocation: Suballocation) {
            // SAFETY: the caller's contract, forwarded.
            unsafe { self.0.deallocate(suballocation) }
        }
    };
    (@ free_size) => {
        fn free_size(&self) -> DeviceSize {
            self.0.free_size()
        }
    };
    (@ largest_free_range) => {
        fn largest_free_range(&self) -> DeviceSize {
            self.0.largest_free_range()
        }
    };
    (@ allocation_count) => {
        fn allocation_count(&self) -> usize {
            self.0.allocation_count()
        }
    };
    (@ reset) => {
        fn reset(&mut self) {
            self.0.reset()
        }
    };
    (@ for_each_range) => {
        fn for_each_range(&self, f: &mut dyn FnMut(RangeInfo)) {
            self.0.for_each_range(f)
        }
    };
}

#[allow(unused_imports)]
pub(crate) use forward_to_free_list;
