//! Transient-memory planner benchmarks.
//!
//! - `plan/random_500`: planning a random frame graph of 500 resources over 100 passes
//!   (`graphs::random(500, 1)`: lifetimes of 1 to 16 passes, 4 KiB to 32 MiB, half images and
//!   half buffers), the full planner (every heuristic, aliasing pairs included); the target
//!   is at most 1 ms.
//! - `plan/greedy_by_size_500`: the same graph with the baseline alone: greedy by size with
//!   best fit, the offset planner of TFLite (`plan_greedy_by_size`).
//! - `plan/reuse_500`: the same graph again through a `TransientPlanner`, which compares it
//!   with the previous frame's and gives back the previous plan.
//!
//! Before measuring, the bench prints for each sample graph (the 4K deferred renderer, the
//! forward+ renderer, the compute chain, and the random graph) the planned bytes against the
//! lower bound, against no aliasing, and against the greedy-by-size baseline. Requirements are
//! the estimates of `graphs` (64 KiB-aligned images, 256-byte-aligned buffers, a 1 KiB
//! `bufferImageGranularity`).

// `criterion_group!` generates an undocumented public function.
#![allow(missing_docs)]

use ash_memory::transient::{graphs, plan, plan_greedy_by_size, PlanInfo, TransientPlanner};
use ash_memory::DeviceAlignment;
use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;
use std::time::Duration;

fn info() -> PlanInfo {
    PlanInfo {
        buffer_image_granularity: DeviceAlignment::new(graphs::ESTIMATED_GRANULARITY).unwrap(),
        ..Default::default()
    }
}

fn print_quality() {
    let mut all = graphs::samples();
    all.push(graphs::random(500, 1));
    eprintln!(
        "{:<14} {:>9} {:>14} {:>14} {:>10} {:>12} {:>13}",
        "graph",
        "resources",
        "planned bytes",
        "lower bound",
        "/ bound",
        "/ no alias",
        "/ greedy size"
    );
    for graph in all {
        let resources = graph.estimated_resources().expect("known formats");
        let planned = plan(&resources, &info()).expect("plan");
        let greedy = plan_greedy_by_size(&resources, &info()).expect("baseline");
        let bytes = planned.total_size() as f64;
        eprintln!(
            "{:<14} {:>9} {:>14} {:>14} {:>10.3} {:>12.3} {:>13.3}",
            graph.name,
            resources.len(),
            planned.total_size(),
            planned.lower_bound(),
            bytes / planned.lower_bound() as f64,
            bytes / planned.unaliased_size() as f64,
            bytes / greedy.total_size() as f64,
        );
    }
}

fn bench_plan(c: &mut Criterion) {
    print_quality();
    let resources = graphs::random(500, 1)
        .estimated_resources()
        .expect("known formats");
    let info = info();
    let mut group = c.benchmark_group("plan");
    group.bench_function("random_500", |b| {
        b.iter(|| plan(black_box(&resources), &info).expect("plan"))
    });
    group.bench_function("greedy_by_size_500", |b| {
        b.iter(|| plan_greedy_by_size(black_box(&resources), &info).expect("plan"))
    });
    let mut planner = TransientPlanner::new();
    planner.plan(&resources, &info).expect("plan");
    group.bench_function("reuse_500", |b| {
        b.iter(|| {
            planner
                .plan(black_box(&resources), &info)
                .expect("plan")
                .total_size()
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = bench_plan
}
criterion_main!(benches);
