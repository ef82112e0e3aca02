//! Table-driven tests of the placement policy on the memory layouts of real GPUs (the same
//! layouts the driver tests simulate), with no driver at all.

use super::*;
use crate::allocator::config::BlockSizeThresholds;
use crate::device::MemoryProperties;
use MemoryAllocatePreference::{AlwaysAllocate, Auto, NeverAllocate};

use crate::simulated_layouts::GpuLayout;

const KIB: DeviceSize = 1 << 10;
const MIB: DeviceSize = 1 << 20;

fn props(layout: &GpuLayout) -> MemoryProperties {
    MemoryProperties::from_vk(&layout.to_vk()).unwrap()
}

/// The facts of every memory type of `layout` with the default block sizes.
fn facts(layout: &GpuLayout) -> Vec<TypeFacts> {
    let p = props(layout);
    let table = BlockSizeThresholds::default();
    let atom = DeviceAlignment::new(layout.non_coherent_atom_size).unwrap();
    (0..layout.type_count())
        .map(|i| {
            let heap = p.heap_size_of_type(i).unwrap();
            TypeFacts::of_type(&p, i, table.block_size_for_heap(heap), atom).unwrap()
        })
        .collect()
}

fn request(size: DeviceSize, alignment: DeviceSize) -> Request {
    Request {
        layout: DeviceLayout::from_size_alignment(size, alignment).unwrap(),
        preference: Auto,
        prefers_dedicated: false,
        requires_dedicated: false,
    }
}

const ROOMY: ObjectCount = ObjectCount { live: 0, max: 4096 };

/// Which kind of plan, without the details.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Sub {
        grow: bool,
        dedicated_fallback: bool,
    },
    Ded {
        blocks_fallback: bool,
    },
    Err(PlacementError),
}

fn kind(r: Result<Plan, PlacementError>) -> Kind {
    match r {
        Ok(Plan::Suballocate {
            grow,
            dedicated_fallback,
            ..
        }) => Kind::Sub {
            grow,
            dedicated_fallback,
        },
        Ok(Plan::Dedicated {
            blocks_fallback, ..
        }) => Kind::Ded { blocks_fallback },
        Err(e) => Kind::Err(e),
    }
}

const SUB: Kind = Kind::Sub {
    grow: true,
    dedicated_fallback: true,
};
const DED_THEN_BLOCKS: Kind = Kind::Ded {
    blocks_fallback: true,
};
const DED_ONLY: Kind = Kind::Ded {
    blocks_fallback: false,
};

#[test]
fn every_boundary_of_the_plan_on_every_layout() {
    for layout in GpuLayout::all().into_iter().chain([GpuLayout::lavapipe()]) {
        for (index, f) in facts(&layout).iter().enumerate() {
            let ctx = format!("{} type {index}", layout.name);
            let half = f.block_size / 2;
            let eighth = f.block_size / 8;
            let crowded_at = ObjectCount {
                live: 3072,
                max: 4096,
            };
            let crowded = ObjectCount {
                live: 3073,
                max: 4096,
            };
            assert!(!crowded_at.is_crowded() && crowded.is_crowded());
            let with = |r: Request| r;
            let mut prefers = request(4 * KIB, 256);
            prefers.prefers_dedicated = true;
            let mut requires = request(4 * KIB, 256);
            requires.requires_dedicated = true;
            let mut never = request(4 * KIB, 256);
            never.preference = NeverAllocate;
            let mut never_requires = requires;
            never_requires.preference = NeverAllocate;
            let mut never_large = request(f.block_size + 1, 1);
            never_large.preference = NeverAllocate;
            let mut always = request(4 * KIB, 256);
            always.preference = AlwaysAllocate;
            // (request, object count, expected on a suballocatable type)
            let table: Vec<(Request, ObjectCount, Kind)> = vec![
                (request(1, 1), ROOMY, SUB),
                (request(eighth, 1), ROOMY, SUB),
                // Sizable: suballocated too; its new block is its own size (see
                // `sizable_requests_get_blocks_of_their_size`).
                (request(eighth + 1, 1), ROOMY, SUB),
                (request(eighth + 1, 1), crowded_at, SUB),
                (request(eighth + 1, 1), crowded, SUB),
                (request(half, 1), ROOMY, SUB),
                (request(half, 1), crowded, SUB),
                (request(half + 1, 1), ROOMY, DED_THEN_BLOCKS),
                (request(half + 1, 1), crowded_at, DED_THEN_BLOCKS),
                (request(half + 1, 1), crowded, SUB),
                (request(f.block_size, 1), crowded, SUB),
                (request(f.block_size + 1, 1), crowded, DED_ONLY),
                (request(f.block_size + 1, 1), ROOMY, DED_ONLY),
                (with(prefers), ROOMY, DED_THEN_BLOCKS),
                (with(prefers), crowded_at, DED_THEN_BLOCKS),
                (with(prefers), crowded, SUB),
                (with(requires), crowded, DED_ONLY),
                (with(always), ROOMY, DED_ONLY),
                (
                    with(never),
                    crowded,
                    Kind::Sub {
                        grow: false,
                        dedicated_fallback: false,
                    },
                ),
                (
                    with(never_requires),
                    ROOMY,
                    Kind::Err(PlacementError::DedicatedRequired),
                ),
                (
                    with(never_large),
                    ROOMY,
                    Kind::Err(PlacementError::LargerThanBlock),
                ),
                (
                    request(f.heap_size + 1, 1),
                    ROOMY,
                    Kind::Err(PlacementError::SizeExceedsHeap),
                ),
                // The whole heap is still a valid (dedicated) request.
                (request(f.heap_size, 1), ROOMY, DED_ONLY),
            ];
            for (req, objects, expected) in table {
                let got = kind(plan(&req, f, objects));
                let expected = if f.suballocatable {
                    expected
                } else {
                    // Lazily allocated memory: dedicated only, whatever the request.
                    match expected {
                        Kind::Err(PlacementError::SizeExceedsHeap) => expected,
                        Kind::Err(PlacementError::DedicatedRequired) => expected,
                        _ if req.preference == NeverAllocate => {
                            Kind::Err(PlacementError::NotSuballocatable)
                        }
                        _ => DED_ONLY,
                    }
                };
                assert_eq!(got, expected, "{ctx}: {req:?} with {objects:?}");
            }
        }
    }
}

#[test]
fn non_coherent_types_pad_every_suballocation_to_whole_atoms() {
    let layout = GpuLayout::mobile();
    let f = facts(&layout);
    // Type 1 is host-visible and cached, not coherent; atom 128.
    assert_eq!(f[1].atom, DeviceAlignment::new(128));
    assert_eq!(f[0].atom, None, "coherent");
    assert_eq!(f[2].atom, None, "not host-visible");
    for (size, alignment, want_size, want_alignment) in [
        (1, 1, 128, 128),
        (64, 64, 128, 128),
        (128, 16, 128, 128),
        (129, 4, 256, 128),
        (300, 1024, 384, 1024),
    ] {
        let Ok(Plan::Suballocate { layout, .. }) = plan(&request(size, alignment), &f[1], ROOMY)
        else {
            panic!("small requests are suballocated");
        };
        assert_eq!(
            (layout.size(), layout.alignment().as_devicesize()),
            (want_size, want_alignment),
            "{size} bytes at {alignment}"
        );
        // The coherent type keeps the request as it is.
        let Ok(Plan::Suballocate { layout, .. }) = plan(&request(size, alignment), &f[0], ROOMY)
        else {
            panic!("small requests are suballocated");
        };
        assert_eq!(layout.size(), size);
    }
    // Padding that makes a request larger than a block makes it dedicated.
    let b = f[1].block_size;
    assert_eq!(
        kind(plan(&request(b - 1, 1), &f[1], ROOMY)),
        DED_THEN_BLOCKS,
        "large"
    );
    // A request that is only large may take a kept block first; the driver's preference
    // gets a memory object of its own.
    assert!(matches!(
        plan(&request(b - 1, 1), &f[1], ROOMY),
        Ok(Plan::Dedicated {
            kept_first: true,
            ..
        })
    ));
    let mut crowded = request(b - 1, 1);
    crowded.prefers_dedicated = true;
    assert!(matches!(
        plan(&crowded, &f[1], ROOMY),
        Ok(Plan::Dedicated {
            kept_first: false,
            ..
        })
    ));
    let c = ObjectCount {
        live: 4000,
        max: 4096,
    };
    assert_eq!(kind(plan(&crowded, &f[1], c)), SUB, "fits the block padded");
}

/// Runs a ladder where every step fails with the failure the table gives for it.
fn unfold(p: Plan, fail: impl Fn(Step) -> Failure) -> Vec<Step> {
    let mut ladder = Ladder::new(p);
    let mut steps = Vec::new();
    let mut failure = None;
    while let Some(step) = ladder.next(failure) {
        steps.push(step);
        failure = Some(fail(step));
        assert!(steps.len() < 20, "the ladder does not end");
    }
    steps
}

fn sub(grow: bool, dedicated_fallback: bool) -> Plan {
    Plan::Suballocate {
        layout: DeviceLayout::from_size_alignment(1, 1).unwrap(),
        grow,
        dedicated_fallback,
    }
}

fn ded(blocks_fallback: bool) -> Plan {
    Plan::Dedicated {
        layout: DeviceLayout::from_size_alignment(1, 1).unwrap(),
        blocks_fallback,
        kept_first: false,
    }
}

fn ded_kept_first() -> Plan {
    Plan::Dedicated {
        layout: DeviceLayout::from_size_alignment(1, 1).unwrap(),
        blocks_fallback: true,
        kept_first: true,
    }
}

#[test]
fn the_fallback_ladder_step_by_step() {
    use Failure::*;
    use Step::*;
    let nb = |attempt| NewBlock { attempt };
    let oom = |s: Step| match s {
        ExistingBlocks => NoRoom,
        _ => OutOfMemory,
    };
    assert_eq!(
        unfold(sub(true, true), oom),
        [ExistingBlocks, nb(0), nb(1), nb(2), nb(3), Dedicated]
    );
    assert_eq!(
        unfold(sub(true, false), oom),
        [ExistingBlocks, nb(0), nb(1), nb(2), nb(3)]
    );
    assert_eq!(unfold(sub(false, false), oom), [ExistingBlocks]);
    assert_eq!(unfold(sub(false, true), oom), [ExistingBlocks, Dedicated]);
    // No more memory objects: neither a smaller block nor a dedicated allocation helps.
    let objects = |s: Step| match s {
        ExistingBlocks => NoRoom,
        _ => NoMoreObjects,
    };
    assert_eq!(unfold(sub(true, true), objects), [ExistingBlocks, nb(0)]);
    // The suballocator can never serve it: dedicated at once.
    assert_eq!(
        unfold(sub(true, true), |_| DoesNotFitBlocks),
        [ExistingBlocks, Dedicated]
    );
    let new_block_refuses = |s: Step| match s {
        ExistingBlocks => NoRoom,
        _ => DoesNotFitBlocks,
    };
    assert_eq!(
        unfold(sub(true, true), new_block_refuses),
        [ExistingBlocks, nb(0), Dedicated]
    );
    // A fatal error stops everything, at any step.
    assert_eq!(unfold(sub(true, true), |_| Fatal), [ExistingBlocks]);
    let fatal_block = |s: Step| match s {
        ExistingBlocks => NoRoom,
        _ => Fatal,
    };
    assert_eq!(
        unfold(sub(true, true), fatal_block),
        [ExistingBlocks, nb(0)]
    );
    // Dedicated first: existing blocks only after running out.
    assert_eq!(unfold(ded(true), oom), [Dedicated, ExistingBlocks]);
    assert_eq!(unfold(ded(true), objects), [Dedicated, ExistingBlocks]);
    assert_eq!(unfold(ded(false), oom), [Dedicated]);
    assert_eq!(unfold(ded(true), |_| Fatal), [Dedicated]);
    // A request that is only large tries a kept block first, then the same ladder.
    assert_eq!(
        unfold(ded_kept_first(), oom),
        [KeptBlock, Dedicated, ExistingBlocks]
    );
    assert_eq!(
        unfold(ded_kept_first(), objects),
        [KeptBlock, Dedicated, ExistingBlocks]
    );
    assert_eq!(unfold(ded_kept_first(), |_| Fatal), [KeptBlock]);
    let dedicated_refused = |s: Step| match s {
        KeptBlock => NoRoom,
        _ => Fatal,
    };
    assert_eq!(
        unfold(ded_kept_first(), dedicated_refused),
        [KeptBlock, Dedicated]
    );
    assert!(Failure::OutOfMemory.tries_next_type());
    assert!(Failure::NoRoom.tries_next_type());
    assert!(Failure::NoMoreObjects.tries_next_type());
    assert!(Failure::DoesNotFitBlocks.tries_next_type());
    assert!(!Failure::Fatal.tries_next_type());
}

#[test]
fn new_blocks_grow_then_halve_on_retries() {
    let p = 256 * MIB;
    // Growing: 1/8, 1/4, 1/2, then the preferred size.
    let sizes: Vec<_> = (0..5)
        .map(|held| new_block_size(p, true, held, 0, 4 * KIB, 4 * KIB, 0).unwrap())
        .collect();
    assert_eq!(sizes, [32 * MIB, 64 * MIB, 128 * MIB, p, p]);
    // Not growing: always the preferred size.
    assert_eq!(new_block_size(p, false, 0, 0, 4 * KIB, 4 * KIB, 0), Some(p));
    // At least twice the request while growing, never above the preferred size.
    assert_eq!(
        new_block_size(p, true, 0, 0, 20 * MIB, 20 * MIB, 0),
        Some(40 * MIB)
    );
    // Larger than the preferred size when the request needs it (a pool slot).
    assert_eq!(
        new_block_size(p, false, 0, 0, 300 * MIB, 300 * MIB, 0),
        Some(300 * MIB)
    );
    // Retries halve, while the request still fits.
    assert_eq!(new_block_size(p, false, 5, 1, MIB, MIB, 0), Some(128 * MIB));
    assert_eq!(new_block_size(p, false, 5, 3, MIB, MIB, 0), Some(32 * MIB));
    assert_eq!(
        new_block_size(p, false, 5, 1, 128 * MIB, 128 * MIB, 0),
        Some(128 * MIB)
    );
    assert_eq!(
        new_block_size(p, false, 5, 1, 128 * MIB + 1, 128 * MIB + 1, 0),
        None
    );
    assert_eq!(new_block_size(p, false, 5, 64, 1, 1, 0), None);
    assert_eq!(new_block_size(1, false, 0, 0, 1, 1, 0), Some(1));
    // Never a block of zero bytes, even for a request of none.
    assert_eq!(new_block_size(p, false, 0, 64, 0, 0, 0), None);
    assert_eq!(new_block_size(0, false, 0, 0, 0, 0, 0), None);
}

/// An empty block is a good fit for a request of at least 2/3 of its size.
#[test]
fn empty_blocks_fit_requests_of_about_their_size() {
    assert!(fits_empty_block_well(48 * MIB, 32 * MIB));
    assert!(!fits_empty_block_well(48 * MIB, 32 * MIB - 1));
    assert!(fits_empty_block_well(48 * MIB, 48 * MIB));
    assert!(fits_empty_block_well(MIB, 100 * MIB));
    assert!(!fits_empty_block_well(DeviceSize::MAX, 1));
    assert!(fits_empty_block_well(DeviceSize::MAX, DeviceSize::MAX));
}

#[test]
fn sizable_requests_get_blocks_of_their_size() {
    let p = 256 * MIB;
    let granule = p / SIZABLE_BLOCK_GRANULE_DIVISOR;
    assert_eq!(granule, 2 * MIB);
    // Up to an eighth of the block: the growing sizes (twice the request at least).
    assert_eq!(
        new_block_size(p, true, 0, 0, 32 * MIB, 32 * MIB, 0),
        Some(64 * MIB)
    );
    assert_eq!(
        new_block_size(p, true, 5, 0, 32 * MIB, 32 * MIB, 0),
        Some(p)
    );
    // Above it: the request rounded up to the granule, however many blocks are held.
    for held in [0, 1, 3, 9] {
        assert_eq!(
            new_block_size(p, true, held, 0, 32 * MIB + 1, 32 * MIB + 1, 0),
            Some(34 * MIB)
        );
        assert_eq!(
            new_block_size(p, true, held, 0, 40 * MIB, 40 * MIB, 0),
            Some(40 * MIB)
        );
        assert_eq!(
            new_block_size(p, true, held, 0, 200 * MIB, 200 * MIB, 0),
            Some(200 * MIB)
        );
        assert_eq!(
            new_block_size(p, true, held, 0, 250 * MIB, 250 * MIB, 0),
            Some(250 * MIB)
        );
        assert_eq!(
            new_block_size(p, true, held, 0, 251 * MIB, 251 * MIB, 0),
            Some(252 * MIB)
        );
    }
    // Larger than the preferred size when the request needs it.
    assert_eq!(
        new_block_size(p, true, 3, 0, 301 * MIB, 301 * MIB, 0),
        Some(302 * MIB)
    );
    assert_eq!(
        new_block_size(p, true, 0, 0, 300 * MIB, 300 * MIB, 0),
        Some(300 * MIB)
    );
    // Retries have no smaller size to give.
    assert_eq!(new_block_size(p, true, 3, 1, 40 * MIB, 40 * MIB, 0), None);
    // Without growth (custom pools, `grow_blocks` off): the preferred size.
    assert_eq!(
        new_block_size(p, false, 0, 0, 40 * MIB, 40 * MIB, 0),
        Some(p)
    );
    // Sizable is the request's own size, not its region's: a small request in a 64 MiB
    // slot gets the growing sizes (twice the slot at least), a sizable one its slot.
    assert_eq!(
        new_block_size(p, true, 0, 0, 64 * MIB, 64, 0),
        Some(128 * MIB)
    );
    assert_eq!(new_block_size(p, true, 5, 0, 64 * MIB, MIB, 0), Some(p));
    assert_eq!(
        new_block_size(p, true, 5, 0, 64 * MIB, 40 * MIB, 0),
        Some(64 * MIB)
    );
    // Never overflows.
    assert_eq!(
        new_block_size(u64::MAX, true, 3, 0, u64::MAX - 1, u64::MAX - 1, 0),
        Some(u64::MAX)
    );
}

#[test]
fn a_pool_of_sizable_resources_alone_gets_full_blocks_at_eight_blocks_in_use() {
    let p = 64 * MIB;
    let at = |sizable_in_use| new_block_size(p, true, 0, 0, 20 * MIB, 20 * MIB, sizable_in_use);
    // Below eight preferred blocks in use: the request's own size.
    assert_eq!(at(0), Some(20 * MIB));
    assert_eq!(at(8 * p - 1), Some(20 * MIB));
    // From eight on: a full block, whatever the growth (no block of the growing sizes held).
    assert_eq!(at(8 * p), Some(p));
    assert_eq!(at(100 * p), Some(p));
    // A request larger than the preferred size still gets what it needs.
    assert_eq!(
        new_block_size(p, true, 0, 0, 70 * MIB, 70 * MIB, 8 * p),
        Some(70 * MIB)
    );
    // Small requests keep the growing sizes.
    assert_eq!(
        new_block_size(p, true, 0, 0, MIB, MIB, 8 * p),
        Some(8 * MIB)
    );
    // Without growth: the preferred size as ever.
    assert_eq!(
        new_block_size(p, false, 0, 0, 20 * MIB, 20 * MIB, 8 * p),
        Some(p)
    );
}

proptest::proptest! {
    /// A sizable request's block holds it, exceeds it by less than a granule, and is a
    /// multiple of the granule unless that overflows.
    #[test]
    fn sizable_block_sizes_are_tight(p in 1u64..=1 << 40, min in 1u64..=1 << 41) {
        let size = new_block_size(p, true, GROW_STEPS as usize, 0, min, min, 0);
        if min > p / SIZABLE_REQUEST_DIVISOR {
            let granule = (p / SIZABLE_BLOCK_GRANULE_DIVISOR).max(1);
            let size = size.unwrap();
            proptest::prop_assert!(size >= min && size - min < granule);
            proptest::prop_assert_eq!(size % granule, 0);
        }
    }
}

#[test]
fn arenas_are_cut_only_when_each_is_large_enough() {
    let choose = |block, request, granularity, wanted| {
        ArenaLayout::choose(
            block,
            request,
            0,
            DeviceAlignment::new(granularity).unwrap(),
            wanted,
        )
    };
    let l = |count, size| ArenaLayout { count, size };
    assert_eq!(choose(256 * MIB, 4096, 1, 4), l(4, 64 * MIB));
    assert_eq!(choose(32 * MIB, 4096, 1, 4), l(2, 16 * MIB));
    assert_eq!(choose(16 * MIB, 4096, 1, 4).count, 1, "below the minimum");
    assert_eq!(
        choose(256 * MIB, 100 * MIB, 1, 4),
        l(2, 128 * MIB),
        "as large as the request"
    );
    assert_eq!(choose(256 * MIB, 200 * MIB, 1, 4).count, 1);
    assert_eq!(choose(256 * MIB, 4096, 1, 1).count, 1, "one wanted");
    assert_eq!(choose(256 * MIB, 4096, 1, 0).count, 1, "none wanted");
    assert_eq!(
        choose(2, 1, 1, 8),
        l(1, 2),
        "fewer bytes than arenas wanted"
    );
    assert_eq!(
        choose(256 * MIB, 4096, 128 * MIB, 4).count,
        2,
        "granularity"
    );
    // 100 MiB in 4: arenas of 16 MiB at 0, 16 and 32 MiB; the last one takes the other 52.
    let layout = choose(100 * MIB, 1, 1, 4);
    assert_eq!(layout, l(4, 16 * MIB));
    let ranges: Vec<_> = (0..4).map(|i| layout.range(i, 100 * MIB)).collect();
    assert_eq!(
        ranges,
        [
            (0, 16 * MIB),
            (16 * MIB, 16 * MIB),
            (32 * MIB, 16 * MIB),
            (48 * MIB, 52 * MIB)
        ]
    );
    assert_eq!(
        choose(100 * MIB, 1, 1, 3),
        l(2, 32 * MIB),
        "3 wanted gives 2"
    );
    let whole = choose(100 * MIB, 60 * MIB, 1, 3);
    assert_eq!(whole, l(1, 100 * MIB), "one arena is the whole block");
    assert_eq!(whole.range(0, 100 * MIB), (0, 100 * MIB));
    // Arenas are at least ARENA_REQUEST_FACTOR times the largest request seen.
    let g = DeviceAlignment::MIN;
    let seen = |largest| ArenaLayout::choose(256 * MIB, 4096, largest, g, 4);
    assert_eq!(seen(4 * MIB), l(4, 64 * MIB));
    assert_eq!(seen(16 * MIB), l(4, 64 * MIB), "exactly 4 times");
    assert_eq!(seen(16 * MIB + 1), l(2, 128 * MIB));
    assert_eq!(seen(32 * MIB), l(2, 128 * MIB));
    assert_eq!(seen(32 * MIB + 1).count, 1, "large resources: whole blocks");
}

#[test]
fn large_requests_look_for_the_best_fit() {
    let f = TypeFacts {
        suballocatable: true,
        block_size: 256 * MIB,
        heap_size: 1 << 40,
        atom: None,
    };
    assert!(!f.best_fit(4 * MIB));
    assert!(f.best_fit(4 * MIB + 1));
    assert!(f.best_fit(100 * MIB));
}

#[test]
fn custom_pools_suballocate_or_fail_and_are_dedicated_only_when_required() {
    let f = TypeFacts {
        suballocatable: true,
        block_size: 16 * MIB,
        heap_size: 1 << 30,
        atom: None,
    };
    let pool = |r: Request| kind(plan_in_pool(&r, &f));
    let sub = |grow| Kind::Sub {
        grow,
        dedicated_fallback: false,
    };
    // Large requests stay in the pool's blocks; no dedicated fallback.
    assert_eq!(pool(request(1, 1)), sub(true));
    assert_eq!(pool(request(16 * MIB, 1)), sub(true));
    let mut prefers = request(15 * MIB, 1);
    prefers.prefers_dedicated = true;
    assert_eq!(pool(prefers), sub(true));
    assert_eq!(
        pool(request(16 * MIB + 1, 1)),
        Kind::Err(PlacementError::LargerThanBlock)
    );
    let mut never = request(4 * KIB, 1);
    never.preference = NeverAllocate;
    assert_eq!(pool(never), sub(false));
    let mut requires = request(4 * KIB, 1);
    requires.requires_dedicated = true;
    assert_eq!(pool(requires), DED_ONLY);
    let mut always = request(4 * KIB, 1);
    always.preference = AlwaysAllocate;
    assert_eq!(pool(always), DED_ONLY);
    requires.preference = NeverAllocate;
    assert_eq!(pool(requires), Kind::Err(PlacementError::DedicatedRequired));
    assert_eq!(
        pool(request((1 << 30) + 1, 1)),
        Kind::Err(PlacementError::SizeExceedsHeap)
    );
    // The whole heap: not an error of the heap, but larger than the pool's blocks (or its
    // own memory object when the driver requires one).
    assert_eq!(
        pool(request(1 << 30, 1)),
        Kind::Err(PlacementError::LargerThanBlock)
    );
    let mut whole_heap = request(1 << 30, 1);
    whole_heap.requires_dedicated = true;
    assert_eq!(pool(whole_heap), DED_ONLY);
    let lazy = TypeFacts {
        suballocatable: false,
        ..f
    };
    assert_eq!(
        kind(plan_in_pool(&request(1, 1), &lazy)),
        Kind::Err(PlacementError::NotSuballocatable)
    );
}

proptest::proptest! {
    /// The hot path's plan agrees with the plan: a plain request it suballocates is one the
    /// plan suballocates with the same in-block layout whatever the memory-object count, and
    /// a plain request it leaves to the plan is one the plan does not suballocate on a roomy
    /// device, or a large one.
    #[test]
    fn the_plain_suballocation_is_the_plan_of_a_plain_request(
        layout_index in 0usize..16,
        type_index in 0u32..32,
        small in 1u64..=1 << 12,
        // Sizes around the boundaries: k/64 of the block size, give or take a byte.
        k in 0u64..=160,
        jitter in 0u64..=2,
        huge in (1u64 << 40)..=u64::MAX >> 1,
        shape in 0u8..3,
        alignment_log2 in 0u32..=16,
        crowded in proptest::bool::ANY,
    ) {
        let layouts: Vec<_> = GpuLayout::all().into_iter().chain([GpuLayout::lavapipe()]).collect();
        let gpu = &layouts[layout_index % layouts.len()];
        let all = facts(gpu);
        let f = &all[type_index as usize % all.len()];
        let size = match shape {
            0 => small,
            1 => (f.block_size / 64 * k + jitter).saturating_sub(1).max(1),
            _ => huge,
        };
        let Ok(layout) = DeviceLayout::from_size_alignment(size, 1 << alignment_log2) else {
            return Ok(());
        };
        let r = Request { layout, ..request(1, 1) };
        let objects = if crowded { ObjectCount { live: 4000, max: 4096 } } else { ROOMY };
        match plain_suballocation(layout, f) {
            Some(l) => proptest::prop_assert_eq!(
                plan(&r, f, objects),
                Ok(Plan::Suballocate { layout: l, grow: true, dedicated_fallback: true })
            ),
            None => proptest::prop_assert!(
                size > f.large_request_threshold()
                    || !matches!(plan(&r, f, ROOMY), Ok(Plan::Suballocate { .. })),
                "{}: {size} bytes left to the plan, which suballocates it",
                gpu.name
            ),
        }
    }
}

#[test]
fn a_kept_object_a_large_request_left_takes_only_a_snug_request() {
    let block = 64 * MIB;
    // A kept block: any request it is large for (more than half).
    assert_eq!(kept_block_threshold(block, false), 32 * MIB);
    // A kept memory object of its own: a request that leaves at most a sixteenth unused.
    assert_eq!(kept_block_threshold(block, true), 60 * MIB);
    assert_eq!(kept_block_threshold(7, true), 7);
    assert_eq!(kept_block_threshold(0, true), 0);
}
