//! Unit tests of the roll-ups and range naming of [`super`].

use super::*;
use crate::suballocator::AllocationType;

fn range(offset: u64, size: u64, kind: RangeKind) -> RangeSnapshot {
    RangeSnapshot::new(offset, size, kind)
}

#[test]
fn names_and_user_data_are_found_inside_ranges_and_joined() {
    let meta = |name: &str, data: Option<u32>| {
        AllocationMeta::of(
            Some(name.into()),
            data.map(|d| Arc::new(d) as Arc<dyn crate::UserData>),
            None,
        )
        .unwrap()
    };
    let mut metas = MetaMap::new();
    metas.insert(16, meta("a", Some(7)));
    metas.insert(32, meta("b", None));
    metas.insert(100, meta("c", Some(9)));
    let linear = RangeKind::Allocated(AllocationType::Linear);
    let walk = |ranges: Vec<(u64, u64)>| {
        BlockSnapshot::ranges_from(
            |f| {
                for (offset, size) in ranges {
                    f(RangeInfo {
                        offset,
                        size,
                        kind: linear,
                    })
                }
            },
            &metas,
        )
    };
    let r = walk(vec![
        (0, 16),
        (0, 17),
        (10, 40),
        (100, 1),
        (u64::MAX - 1, 1),
    ]);
    assert_eq!(r[0].name, None);
    assert_eq!(r[1].name.as_deref(), Some("a"));
    assert_eq!(r[1].user_data.as_deref(), Some("7"));
    assert_eq!(r[2].name.as_deref(), Some("a, b"));
    assert_eq!(r[2].user_data.as_deref(), Some("7"));
    assert_eq!(r[3].name.as_deref(), Some("c"));
    assert_eq!(r[3].user_data.as_deref(), Some("9"));
    assert_eq!(r[4].name, None);
    // Free ranges carry nothing.
    let free = BlockSnapshot::ranges_from(
        |f| {
            f(RangeInfo {
                offset: 0,
                size: 200,
                kind: RangeKind::Free,
            })
        },
        &metas,
    );
    assert_eq!(free[0].name, None);
}

#[test]
fn listed_pools_without_blocks_get_zero_entries_and_pools_with_blocks_keep_theirs() {
    let linear = RangeKind::Allocated(AllocationType::Linear);
    let types = (0..2)
        .map(|index| MemoryTypeStatistics {
            index,
            ..Default::default()
        })
        .collect();
    let heaps = vec![HeapStatistics::default()];
    let busy = BlockSnapshot {
        memory_type_index: 1,
        heap_index: 0,
        memory: 7,
        size: 100,
        dedicated: false,
        pool: Some(Arc::from("busy")),
        allocation_count: 1,
        ranges: vec![range(0, 100, linear)],
    };
    let snap = MemorySnapshot::new(heaps, types, vec![busy]).list_pools(vec![
        (Arc::from("empty"), 0),
        (Arc::from("busy"), 1),
        // The same name in another memory type is another pool.
        (Arc::from("busy"), 0),
    ]);
    let s = &snap.statistics;
    assert_eq!(snap.blocks.len(), 1);
    assert_eq!(s.blocks.len(), 1);
    assert_eq!(s.total.block_count, 1);
    assert_eq!(s.total.reserved_bytes, 100);
    let pools: Vec<_> = s
        .pools
        .iter()
        .map(|p| (&*p.name, p.memory_type_index, p.statistics.reserved_bytes))
        .collect();
    assert_eq!(pools, [("busy", 1, 100), ("empty", 0, 0), ("busy", 0, 0)]);
}

#[test]
fn roll_up_by_type_and_heap() {
    let linear = RangeKind::Allocated(AllocationType::Linear);
    let block = |t, h, dedicated, ranges: Vec<RangeSnapshot>| BlockSnapshot {
        memory_type_index: t,
        heap_index: h,
        memory: 1,
        size: ranges.iter().map(|r| r.size).sum(),
        dedicated,
        pool: (t == 2).then(|| Arc::from("staging pool")),
        allocation_count: ranges.iter().filter(|r| r.kind != RangeKind::Free).count() as u64,
        ranges,
    };
    let heaps = (0..2)
        .map(|index| HeapStatistics {
            index,
            ..Default::default()
        })
        .collect();
    let types = [(0, 0), (1, 1), (2, 1)]
        .into_iter()
        .map(|(index, heap_index)| MemoryTypeStatistics {
            index,
            heap_index,
            ..Default::default()
        })
        .collect();
    let snap = MemorySnapshot::new(
        heaps,
        types,
        vec![
            block(
                0,
                0,
                false,
                vec![range(0, 10, linear), range(10, 90, RangeKind::Free)],
            ),
            block(1, 1, true, vec![range(0, 50, linear)]),
            block(2, 1, true, vec![range(0, 70, linear)]),
            // Unknown type and heap: counted in the total only.
            block(9, 9, true, vec![range(0, 5, linear)]),
        ],
    );
    let s = &snap.statistics;
    assert_eq!(s.total.block_count, 1);
    assert_eq!(s.total.dedicated_count, 3);
    assert_eq!(s.total.allocation_count, 4);
    assert_eq!(s.total.reserved_bytes, 225);
    assert_eq!(s.total.allocated_bytes(), 135);
    assert_eq!(s.heaps[1].statistics.dedicated_count, 2);
    assert_eq!(s.heaps[1].statistics.allocations.max, 70);
    assert_eq!(s.heaps[0].statistics.free_bytes(), 90);
    assert_eq!(s.memory_types[2].statistics.reserved_bytes, 70);
    assert_eq!(s.blocks.len(), 4);
    assert_eq!(s.pools.len(), 1);
    assert_eq!(&*s.pools[0].name, "staging pool");
    assert_eq!(s.pools[0].memory_type_index, 2);
    assert_eq!(s.pools[0].statistics.reserved_bytes, 70);
}
