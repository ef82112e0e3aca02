//! A `MemoryAlloc` keeps its size and its suballocator's handle in 32 bits each, and moves
//! both to its boxed part when either does not fit. A suballocator whose handles all lie above
//! `u32::MAX` (the free list's, shifted up by 2^40) takes that path for every allocation: each
//! range must come back to the suballocator with its handle whole, keep its size, its data and
//! its name, and leave the statistics and the memory objects exact.

mod common;

use ash_memory::*;
use common::TestContext;

const KIB: DeviceSize = 1024;
/// Added to every handle of the wrapped free list: no handle fits in 32 bits.
const HIGH: u64 = 1 << 40;

/// The free list, with every handle shifted above `u32::MAX`; a handle that comes back cut
/// to 32 bits (or otherwise changed) is refused with a panic before the free list sees it.
struct WideHandles(FreeListAllocator);

// SAFETY: every range comes from the wrapped `FreeListAllocator`, which upholds the contract;
// the handles are shifted on the way out and back on the way in, unchanged otherwise.
unsafe impl Suballocator for WideHandles {
    common::forward::forward_to_free_list!(
        new,
        region_size,
        free_size,
        largest_free_range,
        allocation_count,
        reset,
        for_each_range,
    );
    fn allocate(
        &mut self,
        layout: DeviceLayout,
        allocation_type: AllocationType,
        granularity: DeviceAlignment,
    ) -> Result<Suballocation, SuballocatorError> {
        let mut s = self.0.allocate(layout, allocation_type, granularity)?;
        s.handle = SuballocationHandle::new(s.handle.get() + HIGH);
        Ok(s)
    }
    unsafe fn deallocate(&mut self, mut suballocation: Suballocation) {
        let handle = suballocation.handle.get();
        assert!(handle >= HIGH, "handle {handle:#x} came back cut");
        suballocation.handle = SuballocationHandle::new(handle - HIGH);
        // SAFETY: forwarded contract, with the wrapped allocator's own handle.
        unsafe { self.0.deallocate(suballocation) }
    }
}

#[test]
fn handles_above_32_bits_come_back_whole_with_sizes_data_and_names() {
    let ctx = TestContext::new();
    let device = ctx.memory_device();
    let allocator =
        GenericMemoryAllocator::<WideHandles>::new(device.clone(), Default::default()).unwrap();
    let info = AllocationCreateInfo {
        usage: MemoryUsage::Upload,
        ..Default::default()
    };
    let ty = allocator
        .find_memory_type_index(u32::MAX, MemoryUsage::Upload.into())
        .unwrap();
    // Sizes that are not multiples of anything, so that a size read from the wrong place
    // shows.
    let sizes = |i: u64| 64 + (i * 977) % (48 * KIB);
    let mut live: Vec<(u64, MemoryAlloc)> = Vec::new();
    let fill = |a: &mut MemoryAlloc, i: u64| {
        let bytes: Vec<u8> = (0..a.size()).map(|k| (k as u8) ^ (i as u8)).collect();
        a.write(0, &bytes).unwrap();
    };
    for i in 0..300 {
        let layout = DeviceLayout::from_size_alignment(sizes(i), 64).unwrap();
        // Through the plain path (the hot path serves it) and through the typed one.
        let mut a = if i % 2 == 0 {
            let requirements = AllocationRequirements::from_vk(ash::vk::MemoryRequirements {
                size: sizes(i),
                alignment: 64,
                memory_type_bits: 1 << ty,
            })
            .unwrap();
            allocator
                .allocate(requirements, AllocationType::Linear, &info, None)
                .unwrap()
        } else {
            allocator
                .allocate_from_type(ty, layout, AllocationType::Linear, &info)
                .unwrap()
        };
        assert_eq!(a.size(), sizes(i));
        fill(&mut a, i);
        if i % 7 == 0 {
            a.set_name(Some(format!("wide {i}").into()));
        }
        live.push((i, a));
        // Free every third one as we go: the free list merges and reuses the ranges.
        if i % 3 == 2 {
            live.remove(live.len() / 2);
        }
    }
    let stats = allocator.statistics();
    assert_eq!(stats.total.allocation_count, live.len() as u64);
    let live_bytes: DeviceSize = live.iter().map(|(_, a)| a.size()).sum();
    // The free list holds exactly the requested bytes (no margins are on).
    assert_eq!(stats.total.allocations.total, live_bytes);
    for (i, a) in &live {
        assert_eq!(a.size(), sizes(*i));
        assert_eq!(a.allocation_type(), AllocationType::Linear);
        if i % 7 == 0 {
            assert_eq!(a.name(), Some(format!("wide {i}").as_str()));
        }
        let mut back = vec![0u8; a.size() as usize];
        a.read(0, &mut back).unwrap();
        assert!(
            back.iter()
                .enumerate()
                .all(|(k, &b)| b == (k as u8) ^ (*i as u8)),
            "allocation {i} was overwritten"
        );
    }
    drop(live);
    let stats = allocator.statistics();
    assert_eq!(stats.total.allocation_count, 0);
    assert_eq!(stats.total.allocations.total, 0);
    drop(allocator);
    assert_eq!(device.live_memory_objects(), 0);
}
