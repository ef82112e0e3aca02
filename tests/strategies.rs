//! Allocation strategies on the driver: in a block with two holes, a 128 KiB one at a low
//! offset and a snug 64 KiB one higher up, a 64 KiB request goes to the snug hole with
//! `MinMemory` and to the low one with `MinOffset`, per allocation and per pool (the
//! allocation's strategy winning over the pool's), with the data of every allocation intact.

mod common;

use ash_memory::*;
use common::TestContext;

const KIB: u64 = 1024;
const PAGE: u64 = 64 * KIB;

fn page() -> AllocationRequirements {
    AllocationRequirements {
        layout: DeviceLayout::from_size_alignment(PAGE, 256).unwrap(),
        memory_type_bits: 1,
        prefers_dedicated_allocation: false,
        requires_dedicated_allocation: false,
    }
}

fn info(strategy: AllocationStrategy) -> AllocationCreateInfo {
    AllocationCreateInfo {
        usage: MemoryUsage::Auto(HostAccess::Random),
        strategy,
        ..Default::default()
    }
}

/// A pool of one 1 MiB block, uncut, filled with 16 pages, then holes punched at pages 2-3
/// (128 KiB at offset 128 KiB) and page 8 (64 KiB at offset 512 KiB).
fn holed_pool(
    allocator: &StandardMemoryAllocator,
    strategy: AllocationStrategy,
) -> (MemoryPool, Vec<Option<MemoryAlloc>>) {
    let pool = allocator
        .create_pool::<FreeListAllocator>(&PoolCreateInfo {
            memory_type: PoolMemoryType::Index(0),
            block_size: 16 * PAGE,
            max_block_count: 1,
            block_arenas: Some(1),
            strategy,
            ..Default::default()
        })
        .unwrap();
    let mut pages: Vec<_> = (0..16u8)
        .map(|i| {
            let mut a = pool
                .allocate(
                    page(),
                    AllocationType::Linear,
                    &info(AllocationStrategy::MinOffset),
                    None,
                )
                .unwrap();
            a.write(0, &[i; 256]).unwrap();
            Some(a)
        })
        .collect();
    for (i, p) in pages.iter().enumerate() {
        assert_eq!(p.as_ref().unwrap().offset(), i as u64 * PAGE);
    }
    for i in [2, 3, 8] {
        pages[i] = None;
    }
    (pool, pages)
}

fn check_intact(pages: &[Option<MemoryAlloc>]) {
    for (i, p) in pages.iter().enumerate() {
        if let Some(p) = p {
            let mut b = [0u8; 256];
            p.read(0, &mut b).unwrap();
            assert_eq!(b, [i as u8; 256]);
        }
    }
}

#[test]
fn min_memory_takes_the_snug_hole_and_min_offset_the_lowest() {
    let ctx = TestContext::new();
    {
        let allocator = StandardMemoryAllocator::new_default(ctx.memory_device());
        let (pool, pages) = holed_pool(&allocator, AllocationStrategy::Default);
        for (strategy, offset) in [
            (AllocationStrategy::MinMemory, 8 * PAGE),
            (AllocationStrategy::MinOffset, 2 * PAGE),
        ] {
            let a = pool
                .allocate(page(), AllocationType::Linear, &info(strategy), None)
                .unwrap();
            assert_eq!(a.offset(), offset, "{strategy:?}");
            drop(a);
        }
        // MinTime (and Default) take a hole that surely fits: any of the two, quickly.
        let a = pool
            .allocate(
                page(),
                AllocationType::Linear,
                &info(AllocationStrategy::MinTime),
                None,
            )
            .unwrap();
        assert!([2 * PAGE, 3 * PAGE, 8 * PAGE].contains(&a.offset()));
        drop(a);
        check_intact(&pages);
    }
}

#[test]
fn a_pool_strategy_applies_unless_the_allocation_names_one() {
    let ctx = TestContext::new();
    {
        let allocator = StandardMemoryAllocator::new_default(ctx.memory_device());
        let (pool, pages) = holed_pool(&allocator, AllocationStrategy::MinMemory);
        let a = pool
            .allocate(
                page(),
                AllocationType::Linear,
                &info(AllocationStrategy::Default),
                None,
            )
            .unwrap();
        assert_eq!(a.offset(), 8 * PAGE, "the pool's MinMemory");
        drop(a);
        let b = pool
            .allocate(
                page(),
                AllocationType::Linear,
                &info(AllocationStrategy::MinOffset),
                None,
            )
            .unwrap();
        assert_eq!(b.offset(), 2 * PAGE, "the allocation's MinOffset wins");
        // The two holes left are one page each: the pool fills both, then is full.
        let c = pool
            .allocate(
                page(),
                AllocationType::Linear,
                &info(AllocationStrategy::Default),
                None,
            )
            .unwrap();
        let d = pool
            .allocate(
                page(),
                AllocationType::Linear,
                &info(AllocationStrategy::Default),
                None,
            )
            .unwrap();
        let mut got = [c.offset(), d.offset()];
        got.sort_unstable();
        assert_eq!(got, [3 * PAGE, 8 * PAGE]);
        assert_eq!(
            pool.allocate(
                page(),
                AllocationType::Linear,
                &info(AllocationStrategy::Default),
                None
            )
            .err(),
            Some(AllocationError::PoolFull { max_blocks: 1 })
        );
        check_intact(&pages);
    }
}
