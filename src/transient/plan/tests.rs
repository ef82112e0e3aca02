//! Property tests of the planner: every plan is checked against a brute-force model.

use super::graphs;
use super::*;
use crate::layout::{on_same_page, DeviceAlignment, DeviceLayout, DeviceSize};
use crate::suballocator::AllocationType;
use proptest::prelude::*;
use proptest::strategy::Strategy;
use std::collections::BTreeSet;

/// Checks everything a plan promises, with brute force; panics with the first violation.
pub(crate) fn check_plan(resources: &[TransientResource], info: &PlanInfo, plan: &TransientPlan) {
    let n = resources.len();
    let g = info.buffer_image_granularity;
    // Every resource placed, in bounds, aligned, in a memory type it accepts.
    assert_eq!(plan.placements().len(), n, "every resource placed");
    for (i, (r, p)) in resources.iter().zip(plan.placements()).enumerate() {
        let memory = plan
            .memory()
            .get(p.memory)
            .expect("placement in a planned memory");
        assert!(
            p.offset + r.layout.size() <= memory.size,
            "resource {i} ends past its memory"
        );
        assert!(
            r.layout.alignment().is_aligned(p.offset),
            "resource {i} at {} not aligned to {:?}",
            p.offset,
            r.layout.alignment()
        );
        let bit = 1 << memory.memory_type_index;
        assert!(
            r.memory_type_bits & info.memory_types & bit != 0,
            "resource {i} in a memory type it does not accept"
        );
        let preferred = info.memory_types & info.preferred_memory_types;
        if r.memory_type_bits & preferred != 0 {
            assert!(
                preferred & bit != 0,
                "resource {i} accepts a preferred type but is in type {}",
                memory.memory_type_index
            );
        }
    }
    let types: BTreeSet<u32> = plan.memory().iter().map(|m| m.memory_type_index).collect();
    assert_eq!(
        types.len(),
        plan.memory().len(),
        "one memory object per type"
    );
    let range = |i: usize| {
        let p = plan.placements()[i];
        (p.memory, p.offset, p.offset + resources[i].layout.size())
    };
    let overlap = |a: usize, b: usize| {
        let ((ma, sa, ea), (mb, sb, eb)) = (range(a), range(b));
        ma == mb && sa < eb && sb < ea
    };
    // No live overlap; granularity between kinds alive together.
    for a in 0..n {
        for b in a + 1..n {
            if !resources[a].alive_together(&resources[b]) {
                continue;
            }
            assert!(
                !overlap(a, b),
                "resources {a} and {b} alive together overlap"
            );
            let ((ma, sa, ea), (mb, sb, eb)) = (range(a), range(b));
            if ma == mb
                && resources[a]
                    .allocation_type
                    .conflicts_with(resources[b].allocation_type)
            {
                let shared = if sa < sb {
                    on_same_page(ea - 1, sb, g)
                } else {
                    on_same_page(eb - 1, sa, g)
                };
                assert!(!shared, "resources {a} and {b} share a granularity page");
            }
        }
    }
    // Aliasing as Vulkan defines it: a shared byte, or a shared granularity page between
    // resources of conflicting kinds.
    let page = |x: DeviceSize| x / g.as_devicesize();
    let alias = |a: usize, b: usize| {
        let ((ma, sa, ea), (mb, sb, eb)) = (range(a), range(b));
        overlap(a, b)
            || (ma == mb
                && resources[a]
                    .allocation_type
                    .conflicts_with(resources[b].allocation_type)
                && page(sa) <= page(eb - 1)
                && page(sb) <= page(ea - 1))
    };
    // The aliasing list, against the model: for each byte of `r`, the resource that covered
    // it last before `r` began; for each other byte of `r`'s first and last pages, the one of
    // a conflicting kind that covered it last.
    let mut listed = BTreeSet::new();
    for r in 0..n {
        let (m, s, e) = range(r);
        let mask = g.as_devicesize() - 1;
        let (ps, pe) = (s & !mask, (e + mask) & !mask);
        let mut cuts: Vec<DeviceSize> = vec![ps, s, e, pe];
        for q in 0..n {
            let (mq, sq, eq) = range(q);
            if mq == m {
                cuts.extend([sq, eq].into_iter().filter(|&c| c > ps && c < pe));
            }
        }
        cuts.sort_unstable();
        cuts.dedup();
        let mut expected = BTreeSet::new();
        for w in cuts.windows(2) {
            let (lo, hi) = (w[0], w[1]);
            let in_range = s <= lo && hi <= e;
            let last = (0..n)
                .filter(|&q| {
                    let (mq, sq, eq) = range(q);
                    mq == m
                        && sq < hi
                        && lo < eq
                        && resources[q].last_pass < resources[r].first_pass
                        && (in_range
                            || resources[q]
                                .allocation_type
                                .conflicts_with(resources[r].allocation_type))
                })
                .max_by_key(|&q| resources[q].last_pass);
            expected.extend(last);
        }
        let got: BTreeSet<usize> = plan.takes_over_from(r).iter().copied().collect();
        assert_eq!(
            got.len(),
            plan.takes_over_from(r).len(),
            "duplicates in the list of {r}"
        );
        for &q in &got {
            assert!(alias(q, r), "{q} listed for {r} but they do not alias");
            assert!(
                resources[q].last_pass < resources[r].first_pass,
                "{q} listed for {r} but is not before it"
            );
        }
        assert_eq!(got, expected, "aliasing list of resource {r}");
        listed.extend(got.into_iter().map(|q| (q, r)));
    }
    // No pair missing: every earlier resource aliasing `r` (byte or page) is ordered before
    // it by a chain of listed pairs (barriers).
    for r in 0..n {
        let mut reach: BTreeSet<usize> = BTreeSet::from([r]);
        let mut stack = vec![r];
        while let Some(x) = stack.pop() {
            for &q in plan.takes_over_from(x) {
                if reach.insert(q) {
                    stack.push(q);
                }
            }
        }
        for q in 0..n {
            if alias(q, r) && resources[q].last_pass < resources[r].first_pass {
                assert!(reach.contains(&q), "no barrier chain from {q} to {r}");
            }
        }
    }
    assert_eq!(plan.aliasing_pairs().collect::<BTreeSet<_>>(), listed);
    // The lower bound of each memory, by brute force over the passes; and the memory is at
    // least the raw bytes alive in its busiest pass.
    for (mi, memory) in plan.memory().iter().enumerate() {
        let members: Vec<usize> = (0..n)
            .filter(|&i| plan.placements()[i].memory == mi)
            .collect();
        let passes: BTreeSet<u32> = members.iter().map(|&i| resources[i].first_pass).collect();
        let alive = |p: u32, f: &dyn Fn(usize) -> DeviceSize| -> DeviceSize {
            members
                .iter()
                .filter(|&&i| resources[i].first_pass <= p && p <= resources[i].last_pass)
                .map(|&i| f(i))
                .sum()
        };
        let bound = passes
            .iter()
            .map(|&p| alive(p, &|i| resources[i].aligned_size()))
            .max()
            .unwrap_or(0);
        assert_eq!(memory.lower_bound, bound, "lower bound of memory {mi}");
        let raw = passes
            .iter()
            .map(|&p| alive(p, &|i| resources[i].layout.size()))
            .max()
            .unwrap_or(0);
        assert!(memory.size >= raw);
        let end = members
            .iter()
            .map(|&i| plan.placements()[i].offset + resources[i].layout.size())
            .max()
            .unwrap_or(0);
        assert_eq!(
            memory.size, end,
            "memory {mi} ends where its highest resource ends"
        );
        let unaliased: DeviceSize = members.iter().map(|&i| resources[i].aligned_size()).sum();
        assert_eq!(memory.unaliased_size, unaliased);
    }
}

fn arb_resource() -> impl Strategy<Value = TransientResource> {
    (
        1u64..=20_000,
        0u32..=12,
        prop_oneof![
            Just(0b1u32),
            Just(0b11),
            Just(0b110),
            Just(0b100),
            Just(u32::MAX)
        ],
        prop_oneof![
            4 => Just(AllocationType::Linear),
            4 => Just(AllocationType::NonLinear),
            1 => Just(AllocationType::Unknown),
        ],
        0u32..24,
        0u32..8,
    )
        .prop_map(|(size, log_align, bits, kind, first, len)| {
            let layout =
                DeviceLayout::new(size, DeviceAlignment::from_log2(log_align).unwrap()).unwrap();
            TransientResource::new(layout, bits, kind, first, first + len)
        })
}

fn arb_info() -> impl Strategy<Value = PlanInfo> {
    (
        0u32..=12,
        prop_oneof![Just(u32::MAX), Just(0b110)],
        prop_oneof![Just(u32::MAX), Just(0b10), Just(0b101), Just(0)],
    )
        .prop_map(|(log_g, memory_types, preferred_memory_types)| PlanInfo {
            buffer_image_granularity: DeviceAlignment::from_log2(log_g).unwrap(),
            memory_types,
            preferred_memory_types,
            ..Default::default()
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn random_plans_keep_every_promise(
        resources in prop::collection::vec(arb_resource(), 0..40),
        info in arb_info(),
    ) {
        match plan(&resources, &info) {
            Ok(p) => {
                check_plan(&resources, &info, &p);
                let baseline = plan_greedy_by_size(&resources, &info).unwrap();
                check_plan(&resources, &info, &baseline);
                prop_assert!(p.total_size() <= baseline.total_size());
            }
            Err(PlanError::NoMemoryType { resource, .. }) => {
                prop_assert_eq!(resources[resource].memory_type_bits & info.memory_types, 0);
            }
            Err(e) => prop_assert!(false, "unexpected error {e}"),
        }
    }

    /// Many resources alive in few passes, all of one type: the granularity and overlap rules
    /// under pressure.
    #[test]
    fn crowded_plans_keep_every_promise(
        resources in prop::collection::vec(arb_resource(), 40..80),
        log_g in 0u32..=12,
    ) {
        let resources: Vec<_> = resources
            .into_iter()
            .map(|mut r| {
                r.memory_type_bits = 1;
                r.first_pass %= 6;
                r.last_pass = r.first_pass + (r.last_pass - r.first_pass) % 3;
                r
            })
            .collect();
        let info = PlanInfo {
            buffer_image_granularity: DeviceAlignment::from_log2(log_g).unwrap(),
            ..Default::default()
        };
        let p = plan(&resources, &info).unwrap();
        check_plan(&resources, &info, &p);
        prop_assert_eq!(p.memory().len(), 1);
    }
}

fn res(
    size: DeviceSize,
    align: DeviceSize,
    kind: AllocationType,
    first: u32,
    last: u32,
) -> TransientResource {
    TransientResource::new(
        DeviceLayout::from_size_alignment(size, align).unwrap(),
        1,
        kind,
        first,
        last,
    )
}

#[test]
fn resources_never_alive_together_share_memory_with_a_barrier() {
    let resources = [
        res(1000, 256, AllocationType::Linear, 0, 1),
        res(1000, 256, AllocationType::NonLinear, 2, 3),
    ];
    let info = PlanInfo {
        buffer_image_granularity: DeviceAlignment::new(4096).unwrap(),
        ..Default::default()
    };
    let p = plan(&resources, &info).unwrap();
    check_plan(&resources, &info, &p);
    assert_eq!(p.total_size(), 1000, "one range, reused");
    assert_eq!(p.takes_over_from(1), &[0]);
    assert_eq!(p.takes_over_from(0), &[] as &[usize]);
}

#[test]
fn linear_and_optimal_alive_together_are_a_page_apart() {
    let resources = [
        res(1000, 256, AllocationType::Linear, 0, 1),
        res(1000, 256, AllocationType::NonLinear, 1, 2),
    ];
    let info = PlanInfo {
        buffer_image_granularity: DeviceAlignment::new(4096).unwrap(),
        ..Default::default()
    };
    let p = plan(&resources, &info).unwrap();
    check_plan(&resources, &info, &p);
    assert_eq!(p.total_size(), 4096 + 1000);
    assert_eq!(p.aliasing_pairs().count(), 0);
}

#[test]
fn only_the_last_owner_of_each_byte_is_listed() {
    // 0 then 1 then 2 in the same bytes: 2 takes over from 1 only.
    let resources = [
        res(512, 256, AllocationType::Linear, 0, 0),
        res(512, 256, AllocationType::Linear, 1, 1),
        res(512, 256, AllocationType::Linear, 2, 2),
    ];
    let p = plan(&resources, &PlanInfo::default()).unwrap();
    check_plan(&resources, &PlanInfo::default(), &p);
    assert_eq!(p.aliasing_pairs().collect::<Vec<_>>(), [(0, 1), (1, 2)]);
}

#[test]
fn bad_input_is_an_error() {
    let mut r = res(16, 16, AllocationType::Linear, 3, 2);
    assert_eq!(
        plan(&[r], &PlanInfo::default()),
        Err(PlanError::InvalidLifetime {
            resource: 0,
            first_pass: 3,
            last_pass: 2
        })
    );
    r.last_pass = 3;
    r.memory_type_bits = 0b1000;
    let info = PlanInfo {
        memory_types: 0b0111,
        ..Default::default()
    };
    assert!(matches!(
        plan(&[r], &info),
        Err(PlanError::NoMemoryType { resource: 0, .. })
    ));
    let huge = res(DeviceLayout::MAX_SIZE / 2, 1, AllocationType::Linear, 0, 0);
    assert_eq!(
        plan(&[huge, huge, huge], &PlanInfo::default()),
        Err(PlanError::TooLarge)
    );
    assert_eq!(plan(&[], &PlanInfo::default()).unwrap().total_size(), 0);
}

#[test]
fn differing_memory_type_bits_share_a_type_when_they_can() {
    let mut a = res(4096, 256, AllocationType::Linear, 0, 0);
    let mut b = res(4096, 256, AllocationType::Linear, 1, 1);
    let mut c = res(4096, 256, AllocationType::Linear, 2, 2);
    a.memory_type_bits = 0b011;
    b.memory_type_bits = 0b110;
    c.memory_type_bits = 0b010;
    let p = plan(&[a, b, c], &PlanInfo::default()).unwrap();
    check_plan(&[a, b, c], &PlanInfo::default(), &p);
    assert_eq!(p.memory().len(), 1);
    assert_eq!(p.memory()[0].memory_type_index, 1);
    assert_eq!(p.total_size(), 4096);
    // No common type: two memory objects, the one more bytes accept first.
    b.memory_type_bits = 0b100;
    c.memory_type_bits = 0b100;
    let p = plan(&[a, b, c], &PlanInfo::default()).unwrap();
    check_plan(&[a, b, c], &PlanInfo::default(), &p);
    let types: Vec<u32> = p.memory().iter().map(|m| m.memory_type_index).collect();
    assert_eq!(types, [2, 0]);
}

#[test]
fn preferred_memory_types_come_first_whenever_a_resource_accepts_one() {
    // Type 0 a BAR window, type 1 plain VRAM: a resource that accepts both goes to VRAM even
    // when more bytes accept the BAR type; one that accepts only the BAR type goes there.
    let mut a = res(4096, 256, AllocationType::Linear, 0, 0);
    let mut b = res(1 << 20, 256, AllocationType::Linear, 1, 1);
    a.memory_type_bits = 0b11;
    b.memory_type_bits = 0b01;
    let info = PlanInfo {
        preferred_memory_types: 0b10,
        ..Default::default()
    };
    let p = plan(&[a, b], &info).unwrap();
    check_plan(&[a, b], &info, &p);
    let type_of = |r: usize| p.memory()[p.placements()[r].memory].memory_type_index;
    assert_eq!((type_of(0), type_of(1)), (1, 0));
    // Without a preference, the fewest memory objects: both in type 0.
    let p = plan(&[a, b], &PlanInfo::default()).unwrap();
    assert_eq!(p.memory().len(), 1);
    assert_eq!(p.memory()[0].memory_type_index, 0);
    // A preference no resource accepts changes nothing.
    let none = PlanInfo {
        preferred_memory_types: 0b100,
        ..Default::default()
    };
    assert_eq!(plan(&[a, b], &none).unwrap(), p);
}

fn estimated_info() -> PlanInfo {
    PlanInfo {
        buffer_image_granularity: DeviceAlignment::new(graphs::ESTIMATED_GRANULARITY).unwrap(),
        ..Default::default()
    }
}

#[test]
fn sample_graphs_are_within_five_percent_of_the_bound_and_never_above_greedy() {
    for graph in graphs::samples() {
        let resources = graph.estimated_resources().unwrap();
        let info = estimated_info();
        let p = plan(&resources, &info).unwrap();
        check_plan(&resources, &info, &p);
        let greedy = plan_greedy_by_size(&resources, &info).unwrap();
        let ratio = p.total_size() as f64 / p.lower_bound() as f64;
        assert!(
            ratio <= 1.05,
            "{}: {ratio:.3} of the lower bound",
            graph.name
        );
        assert!(p.total_size() <= greedy.total_size(), "{}", graph.name);
        assert!(p.total_size() < p.unaliased_size(), "{}", graph.name);
    }
    assert!(graphs::compute_chain(60).resources.len() >= 50);
}

#[test]
fn a_random_graph_of_500_resources_plans_and_keeps_its_promises() {
    let graph = graphs::random(500, 7);
    let resources = graph.estimated_resources().unwrap();
    let p = plan(&resources, &estimated_info()).unwrap();
    check_plan(&resources, &estimated_info(), &p);
}

#[test]
fn the_planner_reuses_an_identical_graph_and_replans_a_changed_one() {
    let resources = graphs::deferred(1280, 720).estimated_resources().unwrap();
    let info = estimated_info();
    let mut planner = TransientPlanner::new();
    let first = planner.plan(&resources, &info).unwrap().clone();
    assert!(!planner.last_was_reused());
    let again = planner.plan(&resources, &info).unwrap().clone();
    assert!(planner.last_was_reused());
    assert_eq!(first, again);
    assert_eq!(planner.plans_made(), 1);
    let mut changed = resources.clone();
    changed[0].last_pass += 1;
    planner.plan(&changed, &info).unwrap();
    assert!(!planner.last_was_reused());
    assert_eq!(planner.plans_made(), 2);
    // A bad graph keeps the previous plan.
    changed[1].last_pass = 0;
    changed[1].first_pass = 1;
    assert!(planner.plan(&changed, &info).is_err());
    assert!(planner.current().is_some());
}
