//! Defragmentation on the driver: GPU copies verified byte by byte under the validation
//! layer, allocations from other threads during a pass, destinations that fail mid-pass,
//! skipped and abandoned moves, custom pools, and what cannot move.

mod common;
mod support;

use ash::vk;
use ash_memory::allocator::defrag::{record_buffer_copies, BufferMove, DefragmentationError};
use ash_memory::*;
use std::sync::atomic::{AtomicU64, Ordering};
use support::{buffer_info, fill, verify, Faults, GpuLayout, Rng, Sim, KIB, MIB};

fn reqs(device: &Device, size: u64, alignment: u64) -> MemoryRequirements {
    MemoryRequirements {
        layout: DeviceLayout::from_size_alignment(size, alignment).unwrap(),
        memory_type_bits: device.memory_properties().all_types_mask(),
        prefers_dedicated_allocation: false,
        requires_dedicated_allocation: false,
    }
}

const ALIGN: u64 = 256;

fn align() -> DeviceAlignment {
    DeviceAlignment::new(ALIGN).unwrap()
}

fn small_blocks(arenas: usize) -> GenericMemoryAllocatorCreateInfo {
    GenericMemoryAllocatorCreateInfo {
        block_sizes: BlockSizeThresholds::uniform(MIB).unwrap(),
        block_arenas: Some(arenas),
        ..Default::default()
    }
}

fn upload() -> AllocationCreateInfo {
    AllocationCreateInfo {
        usage: MemoryUsage::Upload,
        ..Default::default()
    }
}

/// `count` host-visible allocations of assorted sizes with patterns; every second one of
/// three is freed so that blocks are sparse. Returns the survivors with their seeds.
fn sparse(
    allocator: &dyn MemoryAllocator,
    device: &Device,
    count: u64,
) -> Vec<(MemoryAlloc, u64, u64)> {
    let mut rng = Rng(count);
    let mut all = Vec::new();
    for i in 0..count {
        let size = 1 + rng.below(60 * KIB);
        let mut a = allocator
            .allocate(
                reqs(device, size, ALIGN),
                AllocationType::Linear,
                &upload(),
                None,
            )
            .unwrap();
        fill(&mut a, i, size);
        all.push((a, i, size));
    }
    all.into_iter()
        .enumerate()
        .filter(|(i, _)| i % 3 == 0)
        .map(|(_, x)| x)
        .collect()
}

/// Runs a whole defragmentation with host copies (the memory is host-visible) and completes
/// every move; fails if the passes do not end.
fn defragment_with_host_copies(
    defrag: &mut Defragmentation<FreeListAllocator>,
    live: &mut [(MemoryAlloc, u64, u64)],
) {
    let mut passes = 0;
    while let Some(mut pass) = defrag.next_pass() {
        passes += 1;
        assert!(passes <= 1000, "the passes never end");
        let n = pass.moves().len();
        for i in 0..n {
            let id = pass.moves()[i].id();
            let (src, _, size) = &live[id];
            let mut bytes = vec![0; *size as usize];
            src.read(0, &mut bytes).unwrap();
            // The destination is new and owned by the pass until completed; writing through
            // a mapped pointer is how a host copy goes.
            let dst = pass.moves()[i].destination();
            let ptr = dst.mapped_ptr().unwrap();
            // SAFETY: `size` bytes inside the destination, which nothing else uses.
            unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), ptr.as_ptr(), bytes.len()) };
            dst.flush(0, *size).unwrap();
            pass.complete(i, &mut live[id].0).unwrap();
        }
        pass.end();
    }
}

/// How many of the allocator's blocks (not dedicated allocations) hold allocations, and how
/// many are empty.
fn occupied_and_empty(allocator: &StandardMemoryAllocator) -> (usize, usize) {
    let blocks: Vec<_> = allocator
        .statistics()
        .blocks
        .into_iter()
        .filter(|b| !b.dedicated)
        .collect();
    let empty = blocks
        .iter()
        .filter(|b| b.statistics.allocation_count == 0)
        .count();
    (blocks.len() - empty, empty)
}

#[test]
fn a_defragmentation_keeps_at_most_one_empty_block_and_terminates() {
    // Two sparse blocks: emptying one into the other frees nothing (the emptied block is the
    // one empty block kept), and later passes must not move the data back into it.
    let sim = Sim::new(GpuLayout::amd_discrete_bar());
    let device = sim.memory_device();
    let allocator = StandardMemoryAllocator::new(device.clone(), small_blocks(1)).unwrap();
    let mut live = sparse(&allocator, &device, 300);
    let (occupied_before, empty_before) = occupied_and_empty(&allocator);
    assert!(occupied_before >= 2);
    let mut defrag = allocator.defragmentation(&DefragmentationInfo {
        algorithm: DefragmentationAlgorithm::Full,
        max_moves_per_pass: 10,
        ..Default::default()
    });
    for (a, _, _) in &live {
        defrag.add(a, align()).unwrap();
    }
    defragment_with_host_copies(&mut defrag, &mut live);
    let stats = defrag.finish();
    let (occupied_after, empty_after) = occupied_and_empty(&allocator);
    assert!(occupied_after < occupied_before, "{stats:?}");
    assert!(empty_after <= 1, "{empty_after} empty blocks kept");
    assert_eq!(
        stats.memory_objects_freed,
        occupied_before + empty_before - occupied_after - empty_after
    );
    for (a, seed, size) in &live {
        verify(a, *seed, *size, "after the moves");
    }
}

#[test]
fn blocks_empty_out_and_every_byte_survives_host_copies() {
    let sim = Sim::new(GpuLayout::amd_discrete_bar());
    let device = sim.memory_device();
    let allocator = StandardMemoryAllocator::new(device.clone(), small_blocks(1)).unwrap();
    for algorithm in [
        DefragmentationAlgorithm::Fast,
        DefragmentationAlgorithm::Full,
    ] {
        let mut live = sparse(&allocator, &device, 300);
        let before = allocator.statistics().total;
        let mut defrag = allocator.defragmentation(&DefragmentationInfo {
            algorithm,
            ..Default::default()
        });
        for (a, _, _) in &live {
            defrag.add(a, align()).unwrap();
        }
        let calls = sim.state.allocate_calls();
        defragment_with_host_copies(&mut defrag, &mut live);
        let stats = defrag.finish();
        assert_eq!(
            sim.state.allocate_calls(),
            calls,
            "a defragmentation never allocates memory"
        );
        let after = allocator.statistics().total;
        assert!(stats.memory_objects_freed > 0, "{algorithm:?}: {stats:?}");
        assert_eq!(
            before.block_count - after.block_count,
            stats.memory_objects_freed as u64
        );
        assert!(after.reserved_bytes < before.reserved_bytes);
        assert_eq!(after.allocation_count, live.len() as u64);
        for (a, seed, size) in &live {
            verify(a, *seed, *size, "after the moves");
            assert_eq!(a.offset() % ALIGN, 0, "destinations keep the alignment");
        }
        let triples: Vec<_> = live.iter().map(|(a, _, _)| (a, ALIGN)).collect();
        support::check_triples(
            &triples,
            &sim.state,
            sim.state.layout.buffer_image_granularity,
        );
        drop(live);
    }
    drop(allocator);
    sim.assert_nothing_allocated();
}

/// GPU copies of buffers through `record_buffer_copies`, under the validation layer.
#[test]
fn gpu_copies_of_buffers_move_every_byte() {
    let ctx = common::TestContext::new();
    let device = ctx.memory_device();
    let allocator = StandardMemoryAllocator::new(device.clone(), small_blocks(2)).unwrap();
    let usage = vk::BufferUsageFlags::TRANSFER_SRC | vk::BufferUsageFlags::TRANSFER_DST;
    let mut live: Vec<(vk::Buffer, MemoryAlloc, u64, u64)> = Vec::new();
    let mut rng = Rng(9);
    for i in 0..200u64 {
        let size = 16 + rng.below(40 * KIB);
        // SAFETY: a valid create info; destroyed before its allocation below.
        let (buffer, mut alloc) = unsafe {
            allocator.create_buffer(&buffer_info(size, usage), &AllocationCreateInfo::default())
        }
        .unwrap();
        fill(&mut alloc, i, size);
        if i % 3 == 0 {
            live.push((buffer, alloc, i, size));
        } else {
            // SAFETY: idle, destroyed before its memory.
            unsafe { ctx.device.destroy_buffer(buffer, None) };
        }
    }
    let (occupied_before, empty_before) = occupied_and_empty(&allocator);
    let mut defrag = allocator.defragmentation(&DefragmentationInfo {
        algorithm: DefragmentationAlgorithm::Full,
        max_moves_per_pass: 6,
        ..Default::default()
    });
    for (buffer, alloc, _, _) in &live {
        // SAFETY: a valid buffer.
        let a = unsafe { ctx.device.get_buffer_memory_requirements(*buffer) }.alignment;
        defrag.add(alloc, DeviceAlignment::new(a).unwrap()).unwrap();
    }
    let mut passes = 0;
    while let Some(mut pass) = defrag.next_pass() {
        passes += 1;
        assert!(pass.moves().len() <= 6);
        let mut copies = Vec::new();
        for m in pass.moves() {
            let (old, _, _, size) = live[m.id()];
            // SAFETY: a valid create info; bound to the destination made for these
            // requirements.
            let new = unsafe { ctx.device.create_buffer(&buffer_info(size, usage), None) }.unwrap();
            // SAFETY: as above.
            unsafe { m.destination().bind_buffer(new) }.unwrap();
            copies.push(BufferMove {
                src: old,
                dst: new,
                size,
            });
        }
        // SAFETY: the buffers are bound, idle and live until the submission is done.
        ctx.submit(|d, cmd| unsafe { record_buffer_copies(d, cmd, &copies) });
        for (i, copy) in copies.iter().enumerate() {
            let id = pass.moves()[i].id();
            let entry = &mut live[id];
            // SAFETY: the copy is done; the old buffer goes before its memory.
            unsafe { ctx.device.destroy_buffer(entry.0, None) };
            entry.0 = copy.dst;
            pass.complete(i, &mut entry.1).unwrap();
        }
        pass.end();
    }
    assert!(passes > 1, "the moves were spread over passes");
    let stats = defrag.finish();
    // Fewer blocks hold allocations; of those emptied, one may stay (the usual hysteresis).
    let (occupied_after, empty_after) = occupied_and_empty(&allocator);
    assert!(occupied_after < occupied_before, "{stats:?}");
    assert!(empty_after <= 1, "{empty_after} empty blocks kept");
    assert_eq!(
        stats.memory_objects_freed,
        occupied_before + empty_before - occupied_after - empty_after
    );
    for (_, alloc, seed, size) in &live {
        verify(alloc, *seed, *size, "after the GPU copies");
    }
    for (buffer, _, _, _) in live.drain(..) {
        // SAFETY: idle; destroyed before its memory.
        unsafe { ctx.device.destroy_buffer(buffer, None) };
    }
}

#[test]
fn other_threads_allocate_and_free_during_a_pass_but_never_in_blocks_being_emptied() {
    let sim = Sim::new(GpuLayout::amd_discrete_bar());
    let device = sim.memory_device();
    let allocator = StandardMemoryAllocator::new(device.clone(), small_blocks(2)).unwrap();
    let mut live = sparse(&allocator, &device, 400);
    let mut defrag = allocator.defragmentation(&Default::default());
    for (a, _, _) in &live {
        defrag.add(a, align()).unwrap();
    }
    let mut pass = defrag.next_pass().expect("something to move");
    let emptying = pass.emptying();
    assert!(!emptying.is_empty());
    std::thread::scope(|s| {
        for t in 0..3u64 {
            let (allocator, device, emptying) = (&allocator, &device, &emptying);
            s.spawn(move || {
                let mut rng = Rng(t + 100);
                let mut mine = Vec::new();
                for i in 0..300 {
                    let size = 1 + rng.below(8 * KIB);
                    let mut a = allocator
                        .allocate(
                            reqs(device, size, 16),
                            AllocationType::Linear,
                            &upload(),
                            None,
                        )
                        .unwrap();
                    assert!(
                        !emptying.contains(&a.memory()),
                        "a new allocation landed in a block being emptied"
                    );
                    fill(&mut a, t * 1000 + i, size);
                    if rng.below(2) == 0 {
                        mine.push((a, t * 1000 + i, size));
                    }
                }
                for (a, seed, size) in &mine {
                    verify(a, *seed, *size, "a concurrent allocation");
                }
            });
        }
    });
    // Complete every move with host copies.
    for i in 0..pass.moves().len() {
        let id = pass.moves()[i].id();
        let (src, _, size) = &live[id];
        let mut bytes = vec![0; *size as usize];
        src.read(0, &mut bytes).unwrap();
        let dst = pass.moves()[i].destination();
        // SAFETY: inside the destination, which nothing else uses.
        unsafe {
            std::ptr::copy_nonoverlapping(
                bytes.as_ptr(),
                dst.mapped_ptr().unwrap().as_ptr(),
                bytes.len(),
            )
        };
        dst.flush(0, *size).unwrap();
        pass.complete(i, &mut live[id].0).unwrap();
    }
    let report = pass.end();
    assert!(report.memory_objects_freed > 0, "{report:?}");
    for (a, seed, size) in &live {
        verify(a, *seed, *size, "moved data");
        assert!(!emptying.contains(&a.memory()));
    }
    drop(defrag);
    drop(live);
    drop(allocator);
    sim.assert_nothing_allocated();
}

#[test]
fn skipped_and_abandoned_moves_leave_the_sources_intact() {
    let sim = Sim::new(GpuLayout::amd_discrete_bar());
    let device = sim.memory_device();
    let allocator = StandardMemoryAllocator::new(device.clone(), small_blocks(1)).unwrap();
    let mut live = sparse(&allocator, &device, 200);
    let places: Vec<_> = live
        .iter()
        .map(|(a, _, _)| (a.memory(), a.offset()))
        .collect();
    let count = allocator.statistics().total.allocation_count;
    let blocks = allocator.statistics().total.block_count;
    let mut defrag = allocator.defragmentation(&Default::default());
    for (a, _, _) in &live {
        defrag.add(a, align()).unwrap();
    }
    {
        let mut pass = defrag.next_pass().unwrap();
        let n = pass.moves().len();
        assert!(n >= 2);
        // The destinations exist while the pass is open.
        assert_eq!(
            allocator.statistics().total.allocation_count,
            count + n as u64
        );
        pass.skip(0).unwrap();
        assert_eq!(pass.skip(0), Err(DefragmentationError::NoSuchMove(0)));
        // Completing with the wrong allocation is refused, and changes nothing.
        let id1 = pass.moves()[1].id();
        let w = (0..live.len()).find(|&j| j != id1).unwrap();
        assert_eq!(
            pass.complete(1, &mut live[w].0),
            Err(DefragmentationError::NotTheSource)
        );
        // The rest: abandoned by dropping the pass.
    }
    assert_eq!(
        allocator.statistics().total.allocation_count,
        count,
        "destinations freed"
    );
    assert_eq!(
        allocator.statistics().total.block_count,
        blocks,
        "nothing released"
    );
    for ((a, seed, size), place) in live.iter().zip(&places) {
        assert_eq!((a.memory(), a.offset()), *place, "the source did not move");
        verify(a, *seed, *size, "a skipped or abandoned move's source");
    }
    // What cannot take part.
    let dedicated = allocator
        .allocate(
            reqs(&device, 4096, 16),
            AllocationType::Linear,
            &AllocationCreateInfo {
                allocate_preference: MemoryAllocatePreference::AlwaysAllocate,
                ..upload()
            },
            None,
        )
        .unwrap();
    assert_eq!(
        defrag.add(&dedicated, align()),
        Err(DefragmentationError::Dedicated)
    );
    let other = StandardMemoryAllocator::new_default(device.clone());
    let foreign = other
        .allocate(
            reqs(&device, 4096, 16),
            AllocationType::Linear,
            &upload(),
            None,
        )
        .unwrap();
    assert_eq!(
        defrag.add(&foreign, align()),
        Err(DefragmentationError::NotHere)
    );
    drop((dedicated, foreign, other, defrag));
    // After all that, a full defragmentation still works.
    let mut defrag = allocator.defragmentation(&Default::default());
    for (a, _, _) in &live {
        defrag.add(a, align()).unwrap();
    }
    defragment_with_host_copies(&mut defrag, &mut live);
    for (a, seed, size) in &live {
        verify(a, *seed, *size, "after the defragmentation");
    }
    defrag.finish();
    drop(live);
    drop(allocator);
    sim.assert_nothing_allocated();
}

/// A suballocator that fails on demand: destinations that cannot be made mid-pass.
struct Flaky(FreeListAllocator);

static FAIL_AFTER: AtomicU64 = AtomicU64::new(u64::MAX);

// SAFETY: forwards to `FreeListAllocator`, whose guarantees it keeps; it only fails more.
unsafe impl Suballocator for Flaky {
    fn new(region_size: DeviceSize) -> Self {
        Self(FreeListAllocator::new(region_size))
    }
    fn region_size(&self) -> DeviceSize {
        self.0.region_size()
    }
    fn allocate(
        &mut self,
        layout: DeviceLayout,
        allocation_type: AllocationType,
        g: DeviceAlignment,
    ) -> Result<Suballocation, SuballocatorError> {
        let left = FAIL_AFTER.load(Ordering::SeqCst);
        if left == 0 {
            return Err(SuballocatorError::FragmentedRegion);
        }
        FAIL_AFTER.store(left.saturating_sub(1), Ordering::SeqCst);
        self.0.allocate(layout, allocation_type, g)
    }
    unsafe fn deallocate(&mut self, s: Suballocation) {
        // SAFETY: forwarded.
        unsafe { self.0.deallocate(s) }
    }
    fn free_size(&self) -> DeviceSize {
        self.0.free_size()
    }
    fn largest_free_range(&self) -> DeviceSize {
        self.0.largest_free_range()
    }
    fn allocation_count(&self) -> usize {
        self.0.allocation_count()
    }
    fn reset(&mut self) {
        self.0.reset()
    }
    fn for_each_range(&self, f: &mut dyn FnMut(RangeInfo)) {
        self.0.for_each_range(f)
    }
}

#[test]
fn destinations_failing_mid_pass_lose_nothing_and_driver_faults_cannot_reach_a_pass() {
    let sim = Sim::new(GpuLayout::amd_discrete_bar());
    let device = sim.memory_device();
    let allocator = GenericMemoryAllocator::<Flaky>::new(device.clone(), small_blocks(1)).unwrap();
    let mut live = sparse(&allocator, &device, 200);
    let count = allocator.statistics().total.allocation_count;
    for fail_after in [0, 1, 3, 7] {
        let mut defrag = allocator.defragmentation(&Default::default());
        for (a, _, _) in &live {
            defrag.add(a, align()).unwrap();
        }
        // Every vkAllocateMemory would fail: a pass makes none.
        sim.state.set_faults(Faults {
            allocate_at: Some((1, vk::Result::ERROR_OUT_OF_DEVICE_MEMORY)),
            allocate_more: u64::MAX / 2,
            ..Default::default()
        });
        sim.state.reset_counters();
        FAIL_AFTER.store(fail_after, Ordering::SeqCst);
        let pass = defrag.next_pass();
        FAIL_AFTER.store(u64::MAX, Ordering::SeqCst);
        assert_eq!(sim.state.allocate_calls(), 0);
        if let Some(mut pass) = pass {
            // Blocks whose destinations failed were given up whole: every move offered
            // still completes.
            for i in 0..pass.moves().len() {
                let id = pass.moves()[i].id();
                let (src, _, size) = &live[id];
                let mut bytes = vec![0; *size as usize];
                src.read(0, &mut bytes).unwrap();
                let dst = pass.moves()[i].destination();
                // SAFETY: inside the destination, which nothing else uses.
                unsafe {
                    std::ptr::copy_nonoverlapping(
                        bytes.as_ptr(),
                        dst.mapped_ptr().unwrap().as_ptr(),
                        bytes.len(),
                    )
                };
                dst.flush(0, *size).unwrap();
                pass.complete(i, &mut live[id].0).unwrap();
            }
            pass.end();
        }
        sim.state.set_faults(Faults::default());
        assert_eq!(
            allocator.statistics().total.allocation_count,
            count,
            "{fail_after}"
        );
        for (a, seed, size) in &live {
            verify(a, *seed, *size, "after a pass with failing destinations");
        }
    }
    drop(live);
    drop(allocator);
    sim.assert_nothing_allocated();
}

#[test]
fn custom_pools_defragment_on_their_own() {
    let sim = Sim::new(GpuLayout::amd_discrete_bar());
    let device = sim.memory_device();
    let allocator = StandardMemoryAllocator::new_default(device.clone());
    let pool = allocator
        .create_pool::<FreeListAllocator>(&PoolCreateInfo {
            name: Some("streaming".into()),
            memory_type: PoolMemoryType::Find {
                memory_type_bits: u32::MAX,
                usage: MemoryUsage::Upload,
            },
            block_size: MIB,
            min_block_count: 1,
            ..Default::default()
        })
        .unwrap();
    let mut live = sparse(&pool, &device, 200);
    let before = pool.statistics().total;
    let mut defrag = pool.defragmentation(&DefragmentationInfo {
        algorithm: DefragmentationAlgorithm::Full,
        ..Default::default()
    });
    for (a, _, _) in &live {
        defrag.add(a, align()).unwrap();
    }
    // Allocations of the default pools are not this defragmentation's.
    let outside = allocator
        .allocate(
            reqs(&device, 100, 16),
            AllocationType::Linear,
            &upload(),
            None,
        )
        .unwrap();
    assert_eq!(
        defrag.add(&outside, align()),
        Err(DefragmentationError::NotHere)
    );
    defragment_with_host_copies(&mut defrag, &mut live);
    let stats = defrag.finish();
    let after = pool.statistics().total;
    assert!(stats.memory_objects_freed > 0);
    assert!(after.block_count < before.block_count);
    assert!(after.block_count >= 1, "the pool's minimum stays");
    for (a, seed, size) in &live {
        verify(a, *seed, *size, "pool data after the moves");
    }
    drop((live, outside, pool, allocator));
    sim.assert_nothing_allocated();
}
