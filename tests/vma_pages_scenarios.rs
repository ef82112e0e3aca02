//! VMA's `BasicTestAllocatePages`, retold for every suballocator (`tests/pages.rs` covers
//! the free list under injected failures), on lavapipe's layout (simulated so that every call
//! is checked, validation layer on):
//!
//! a one-block pool of 1 MiB takes 100 pages of 4 KiB at once, all in its block and mapped;
//! 100 pages of 100 KiB, and 100 pages of 4 KiB aligned to 128 KiB, do not fit and leave
//! nothing behind (all or nothing), after which the block still takes 100 pages, and with an
//! older allocation alive the failed pages give all their room back; and 100 pages of memory
//! of their own are each a whole memory object at offset 0.

mod common;
mod support;

use ash_memory::*;
use support::{fill, verify, GpuLayout, Sim, KIB, MIB};

const COUNT: usize = 100;

fn requirements(size: u64, alignment: u64) -> AllocationRequirements {
    AllocationRequirements {
        layout: DeviceLayout::from_size_alignment(size, alignment).unwrap(),
        memory_type_bits: (1 << GpuLayout::lavapipe().type_count()) - 1,
        prefers_dedicated_allocation: false,
        requires_dedicated_allocation: false,
    }
}

fn info() -> AllocationCreateInfo {
    AllocationCreateInfo {
        usage: MemoryUsage::Auto(HostAccess::SequentialWrite),
        ..Default::default()
    }
}

/// 100 pages of 4 KiB from `on`, each mapped, aligned, written and read back after all of
/// them were written.
fn hundred_small_pages(on: &dyn MemoryAllocator, what: &str) -> Vec<MemoryAlloc> {
    let mut pages = on
        .allocate_pages(
            requirements(4 * KIB, 4 * KIB),
            AllocationType::Linear,
            &info(),
            COUNT,
        )
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_eq!(pages.len(), COUNT, "{what}");
    for (i, p) in pages.iter_mut().enumerate() {
        assert!(p.mapped_ptr().is_some(), "{what}");
        assert_eq!(p.offset() % (4 * KIB), 0, "{what}");
        fill(p, i as u64, 4 * KIB);
    }
    for (i, p) in pages.iter().enumerate() {
        verify(p, i as u64, 4 * KIB, what);
    }
    pages
}

fn pool_pages<S: Suballocator + Send + Sync + 'static>(name: &str, bump: bool) {
    let sim = Sim::new(GpuLayout::lavapipe());
    let device = sim.memory_device();
    let allocator = StandardMemoryAllocator::new_default(device.clone());
    let pool = allocator
        .create_pool::<S>(&PoolCreateInfo {
            memory_type: PoolMemoryType::Find {
                memory_type_bits: u32::MAX,
                usage: MemoryUsage::Auto(HostAccess::SequentialWrite),
            },
            block_size: MIB,
            min_block_count: 1,
            max_block_count: 1,
            block_arenas: Some(1),
            ..Default::default()
        })
        .unwrap();
    let pool_stats = || {
        let stats = allocator.statistics();
        stats.pools[0].statistics
    };
    let pages = hundred_small_pages(&pool, name);
    let block = pages[0].memory();
    assert!(
        pages.iter().all(|p| p.memory() == block),
        "{name}: one block"
    );
    let mut ranges: Vec<(u64, u64)> = pages.iter().map(|p| (p.offset(), p.size())).collect();
    ranges.sort_unstable();
    for w in ranges.windows(2) {
        assert!(w[0].0 + w[0].1 <= w[1].0, "{name}: pages {w:?} overlap");
    }
    drop(pages);
    assert_eq!(pool_stats().allocation_count, 0, "{name}");

    for (size, alignment) in [(100 * KIB, 4 * KIB), (4 * KIB, 128 * KIB)] {
        let what = format!("{name}: {COUNT} pages of {size} bytes at {alignment}");
        let got = pool.allocate_pages(
            requirements(size, alignment),
            AllocationType::Linear,
            &info(),
            COUNT,
        );
        assert!(got.is_err(), "{what}");
        let stats = pool_stats();
        assert_eq!(stats.allocation_count, 0, "{what}: nothing left behind");
        assert_eq!(stats.block_count, 1, "{what}");
        assert_eq!(stats.free_bytes(), stats.reserved_bytes, "{what}: all free");
    }
    // The block is whole again.
    let pages = hundred_small_pages(&pool, &format!("{name}, after the failures"));
    drop(pages);

    // The same failure with an older allocation alive in the block: the pages taken before
    // the failure give their room back (a bump block only once it empties, by design).
    let mut older = pool
        .allocate(
            requirements(4 * KIB, 4 * KIB),
            AllocationType::Linear,
            &info(),
            None,
        )
        .unwrap();
    fill(&mut older, 999, 4 * KIB);
    let before = pool_stats();
    let got = pool.allocate_pages(
        requirements(100 * KIB, 4 * KIB),
        AllocationType::Linear,
        &info(),
        COUNT,
    );
    assert!(got.is_err(), "{name}");
    let after = pool_stats();
    assert_eq!(after.allocation_count, 1, "{name}: only the older one");
    if !bump {
        assert_eq!(
            after.free_bytes(),
            before.free_bytes(),
            "{name}: room given back"
        );
        let largest = after.free_ranges.max;
        assert_eq!(largest, before.free_ranges.max, "{name}: in one piece");
    }
    verify(&older, 999, 4 * KIB, name);
    drop(older);
    assert_eq!(
        pool_stats().free_bytes(),
        pool_stats().reserved_bytes,
        "{name}"
    );

    let dedicated = AllocationCreateInfo {
        allocate_preference: MemoryAllocatePreference::AlwaysAllocate,
        ..info()
    };
    let pages = allocator
        .allocate_pages(
            requirements(4 * KIB, 4 * KIB),
            AllocationType::Linear,
            &dedicated,
            COUNT,
        )
        .unwrap();
    let mut memories: Vec<_> = pages.iter().map(|p| p.memory()).collect();
    memories.sort_unstable();
    memories.dedup();
    assert_eq!(memories.len(), COUNT, "{name}: one memory object each");
    for p in &pages {
        assert!(p.is_dedicated() && p.offset() == 0 && p.mapped_ptr().is_some());
        assert_eq!(p.memory_type_index(), pages[0].memory_type_index());
    }
    drop(pages);
    drop(pool);
    drop(allocator);
    sim.assert_nothing_allocated();
}

#[test]
fn pages_are_all_or_nothing_in_a_one_block_pool_of_every_suballocator() {
    pool_pages::<FreeListAllocator>("free list", false);
    pool_pages::<BuddyAllocator>("buddy", false);
    pool_pages::<SlotAllocator<{ 4 * KIB }>>("4 KiB slots", false);
    pool_pages::<BumpAllocator>("bump", true);
    pool_pages::<RingAllocator>("ring", false);
}
