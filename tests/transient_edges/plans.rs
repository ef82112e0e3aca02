//! The planner alone: random graphs against the aliasing model (bytes and granularity pages),
//! the size of a plan against no aliasing at all, and inputs at the limits of the types.

use super::{alias, check_aliasing, info_with_granularity, range, res};
use crate::common;
use ash_memory::transient::{plan, PlanError, PlanInfo, TransientResource};
use ash_memory::{AllocationType, DeviceAlignment, DeviceLayout};
use proptest::prelude::*;

fn arb_resource() -> impl Strategy<Value = TransientResource> {
    (
        1u64..=9_000,
        0u32..=10,
        prop_oneof![
            Just(AllocationType::Linear),
            Just(AllocationType::NonLinear),
            Just(AllocationType::Unknown),
        ],
        0u32..12,
        0u32..4,
    )
        .prop_map(|(size, log_align, kind, first, len)| {
            let layout =
                DeviceLayout::new(size, DeviceAlignment::from_log2(log_align).unwrap()).unwrap();
            TransientResource::new(layout, 1, kind, first, first + len)
        })
}
proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Random graphs of buffers and images on devices with granularity pages from 1 byte to
    /// 64 KiB: nothing alive together aliases, and every alias in time is ordered.
    #[test]
    fn every_alias_in_time_is_ordered_by_barriers_including_granularity_pages(
        resources in prop::collection::vec(arb_resource(), 0..30),
        log_g in 0u32..=16,
    ) {
        let info = PlanInfo {
            buffer_image_granularity: DeviceAlignment::from_log2(log_g).unwrap(),
            ..Default::default()
        };
        let p = plan(&resources, &info).unwrap();
        check_aliasing(&resources, &info, &p);
    }

    /// A plan never needs much more memory than giving every resource its own range with no
    /// aliasing at all: every resource stacked on whole granularity pages (larger alignments
    /// first) is one such layout. The greedy placement may lose up to an alignment's padding
    /// per resource against it (a large resource placed first at 0 pushes a small, more
    /// aligned one to its next multiple), never more.
    #[test]
    fn a_plan_is_never_larger_than_no_aliasing_at_all_but_for_padding(
        resources in prop::collection::vec(arb_resource(), 0..30),
        log_g in 0u32..=16,
    ) {
        let info = PlanInfo {
            buffer_image_granularity: DeviceAlignment::from_log2(log_g).unwrap(),
            ..Default::default()
        };
        let p = plan(&resources, &info).unwrap();
        check_aliasing(&resources, &info, &p);
        let g = info.buffer_image_granularity;
        let stacked: u64 = resources
            .iter()
            .map(|r| {
                let a = r.layout.alignment().max(g);
                r.layout.align_to(a).unwrap().pad_to_alignment().size()
            })
            .sum();
        let padding: u64 = resources
            .iter()
            .map(|r| r.layout.alignment().as_devicesize() - 1)
            .sum();
        prop_assert!(
            p.total_size() <= stacked + padding,
            "plan {} above {stacked} + {padding}", p.total_size()
        );
    }
}
#[test]
fn a_buffer_and_an_image_sharing_a_page_one_after_the_other_are_ordered() {
    // A buffer of passes 0..=1 and an image of pass 2 that fits in the buffer's page but not
    // in its bytes: they may share the page (never alive together), but they alias.
    let resources = [
        res(100, 64, AllocationType::Linear, 0, 1),
        res(200, 64, AllocationType::Linear, 0, 0),
        res(100, 64, AllocationType::NonLinear, 2, 2),
    ];
    let info = info_with_granularity(4096);
    let p = plan(&resources, &info).unwrap();
    check_aliasing(&resources, &info, &p);
    // The plan does put the image in the buffer's page, beside its bytes: the case at hand.
    let ((_, s0, e0), (_, s2, e2)) = (range(&resources, &p, 0), range(&resources, &p, 2));
    assert!(e2 <= s0 || e0 <= s2, "no shared byte");
    assert!(alias(&resources, &p, 4096, 0, 2), "a shared page");
    assert!(
        p.takes_over_from(2).contains(&0),
        "{:?}",
        p.takes_over_from(2)
    );
}
#[test]
fn edge_inputs_are_errors_or_plans_never_panics() {
    let info = PlanInfo::default();
    let p = plan(&[], &info).unwrap();
    assert!(p.memory().is_empty() && p.placements().is_empty());
    assert_eq!(p.takes_over_from(0), &[] as &[usize]);
    assert_eq!(p.takes_over_from(usize::MAX), &[] as &[usize]);
    assert_eq!(p.total_size(), 0);

    let bad = [res(64, 1, AllocationType::Linear, 5, 4)];
    assert_eq!(
        plan(&bad, &info),
        Err(PlanError::InvalidLifetime {
            resource: 0,
            first_pass: 5,
            last_pass: 4
        })
    );
    // Passes at the top of u32.
    let top = [
        res(64, 1, AllocationType::Linear, u32::MAX, u32::MAX),
        res(64, 1, AllocationType::Linear, u32::MAX - 1, u32::MAX),
        res(64, 1, AllocationType::NonLinear, 0, u32::MAX),
        res(64, 1, AllocationType::Linear, 0, u32::MAX - 2),
    ];
    let p = plan(&top, &info_with_granularity(1024)).unwrap();
    check_aliasing(&top, &info_with_granularity(1024), &p);
    assert_eq!(p.takes_over_from(0), &[3]);
    // No common memory type.
    let mut none = res(64, 1, AllocationType::Linear, 0, 0);
    none.memory_type_bits = 0b100;
    let only_type_0 = PlanInfo {
        memory_types: 0b1,
        ..Default::default()
    };
    assert_eq!(
        plan(&[none], &only_type_0),
        Err(PlanError::NoMemoryType {
            resource: 0,
            memory_type_bits: 0b100
        })
    );
    none.memory_type_bits = 0;
    assert!(matches!(
        plan(&[none], &info),
        Err(PlanError::NoMemoryType { .. })
    ));
    // Sizes that cannot add up.
    let huge = DeviceLayout::MAX_SIZE / 2 + 1;
    let two = [
        res(huge, 1, AllocationType::Linear, 0, 0),
        res(huge, 1, AllocationType::Linear, 0, 0),
    ];
    assert_eq!(plan(&two, &info), Err(PlanError::TooLarge));
    // The largest layouts: a clear error where the planner's offset bound (size, alignment
    // and two pages per resource) does not fit, a plan where it does.
    let one = [res(DeviceLayout::MAX_SIZE, 1, AllocationType::Linear, 0, 0)];
    assert_eq!(plan(&one, &info), Err(PlanError::TooLarge));
    let half = [res(
        DeviceLayout::MAX_SIZE / 2,
        1,
        AllocationType::Linear,
        0,
        0,
    )];
    assert_eq!(
        plan(&half, &info).unwrap().total_size(),
        DeviceLayout::MAX_SIZE / 2
    );
    let giant_pages = PlanInfo {
        buffer_image_granularity: DeviceAlignment::MAX,
        ..Default::default()
    };
    assert_eq!(plan(&one, &giant_pages), Err(PlanError::TooLarge));
    let small = [res(64, 1, AllocationType::Linear, 0, 0)];
    assert_eq!(plan(&small, &giant_pages), Err(PlanError::TooLarge));
    // Duplicates: the same resource many times, alive together, never shares a byte.
    let dup = vec![res(1000, 256, AllocationType::NonLinear, 3, 7); 50];
    let p = plan(&dup, &info_with_granularity(4096)).unwrap();
    check_aliasing(&dup, &info_with_granularity(4096), &p);
    assert_eq!(p.total_size(), 49 * 1024 + 1000);
}
#[test]
fn thousands_of_resources_plan_and_keep_their_promises() {
    let mut rng = common::Rng(7);
    let kinds = [AllocationType::Linear, AllocationType::NonLinear];
    let resources: Vec<_> = (0..3000)
        .map(|_| {
            let first = rng.below(200) as u32;
            res(
                rng.range(1, 1 << 20),
                1 << rng.below(16),
                *rng.pick(&kinds),
                first,
                first + rng.below(10) as u32,
            )
        })
        .collect();
    let info = info_with_granularity(1024);
    let p = plan(&resources, &info).unwrap();
    // The brute-force check is quadratic with a chain walk per resource: check a sample.
    check_aliasing(
        &resources[..600],
        &info,
        &plan(&resources[..600], &info).unwrap(),
    );
    assert!(p.total_size() <= p.unaliased_size());
    assert!(
        p.total_size() * 100 <= p.lower_bound() * 110,
        "within 10% of the bound"
    );
}

/// The sample graphs at extreme extents and counts: building them never panics, and their
/// estimated resources are either `None` (a zero or unrepresentable size) or plan, or fail
/// with `TooLarge`.
#[test]
fn sample_graphs_at_extreme_sizes_never_panic() {
    use ash_memory::transient::graphs;
    let info = info_with_granularity(graphs::ESTIMATED_GRANULARITY);
    let extents = [0, 1, 2, 3, 4095, 1 << 20, u32::MAX - 1, u32::MAX];
    let mut made = Vec::new();
    for &w in &extents {
        for &h in &extents {
            made.push(graphs::deferred(w, h));
            made.push(graphs::forward_plus(w, h));
        }
    }
    for stages in [0, 1, 2, 3, 4, 5, 9, 1000] {
        made.push(graphs::compute_chain(stages));
    }
    for count in [0, 1, 4, 5, 6, 2000] {
        made.push(graphs::random(count, u64::from(count)));
    }
    let (mut planned, mut too_large, mut no_size) = (0, 0, 0);
    for graph in &made {
        assert!(graph
            .resources
            .iter()
            .all(|r| r.first_pass <= r.last_pass && r.last_pass < graph.passes.max(1)));
        let Some(resources) = graph.estimated_resources() else {
            no_size += 1;
            continue;
        };
        match plan(&resources, &info) {
            Ok(p) => {
                planned += 1;
                if resources.len() <= 300 {
                    check_aliasing(&resources, &info, &p);
                }
            }
            Err(PlanError::TooLarge) => too_large += 1,
            Err(e) => panic!("{}: {e}", graph.name),
        }
    }
    assert!(
        planned > 20 && no_size > 0,
        "{planned} planned, {too_large} too large, {no_size} without a size"
    );
}
