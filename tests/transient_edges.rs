//! Edges of transient (frame-graph) memory, through the public API: random graphs checked
//! against a brute-force model of what a plan must keep apart and what it must order by
//! barriers (bytes *and* `bufferImageGranularity` pages), inputs at the limits of the types,
//! and the memory a plan gets on simulated GPUs.
//!
//! - `plans`: the planner alone: random graphs against the model, edge inputs, thousands of
//!   resources;
//! - `layouts`: the memory types and granularity of the simulated GPUs, with real resources
//!   bound pass by pass under the simulated driver's overlap checks;
//! - `memory`: `TransientMemory` on the driver: changing graphs round-tripped through reused
//!   memory, and plans larger than their heap.

mod common;
mod support;

#[path = "transient_edges/layouts.rs"]
mod layouts;
#[path = "transient_edges/memory.rs"]
mod memory;
#[path = "transient_edges/plans.rs"]
mod plans;

use ash_memory::transient::{PlanInfo, TransientPlan, TransientResource};
use ash_memory::{AllocationType, DeviceAlignment, DeviceLayout};
use std::collections::BTreeSet;

/// A resource of `size` bytes aligned to `align`, in memory type 0, alive in `first..=last`.
fn res(size: u64, align: u64, kind: AllocationType, first: u32, last: u32) -> TransientResource {
    TransientResource::new(
        DeviceLayout::from_size_alignment(size, align).unwrap(),
        1,
        kind,
        first,
        last,
    )
}
fn info_with_granularity(granularity: u64) -> PlanInfo {
    PlanInfo {
        buffer_image_granularity: DeviceAlignment::new(granularity).unwrap(),
        ..Default::default()
    }
}
/// `(memory, start, end)` of resource `r`.
fn range(resources: &[TransientResource], p: &TransientPlan, r: usize) -> (usize, u64, u64) {
    let placement = p.placements()[r];
    (
        placement.memory,
        placement.offset,
        placement.offset + resources[r].layout.size(),
    )
}
/// Whether `a` and `b` alias in memory as Vulkan defines it: they share a byte, or one is
/// linear and the other optimal (or either is of unknown kind) and they share a
/// `bufferImageGranularity` page.
fn alias(
    resources: &[TransientResource],
    p: &TransientPlan,
    granularity: u64,
    a: usize,
    b: usize,
) -> bool {
    let ((ma, sa, ea), (mb, sb, eb)) = (range(resources, p, a), range(resources, p, b));
    if ma != mb {
        return false;
    }
    if sa < eb && sb < ea {
        return true;
    }
    let conflicting = resources[a]
        .allocation_type
        .conflicts_with(resources[b].allocation_type);
    let page = |x: u64| x / granularity;
    conflicting && page(sa) <= page(eb - 1) && page(sb) <= page(ea - 1)
}
/// The resources that `r` waits for through chains of aliasing barriers.
fn ordered_before(p: &TransientPlan, r: usize) -> BTreeSet<usize> {
    let mut reach = BTreeSet::new();
    let mut stack = vec![r];
    while let Some(x) = stack.pop() {
        for &q in p.takes_over_from(x) {
            if reach.insert(q) {
                stack.push(q);
            }
        }
    }
    reach
}
/// What every plan must keep: resources alive together never alias (bytes or pages), each
/// placement is aligned and inside its memory, and every earlier resource that aliases a later
/// one is ordered before it by a chain of aliasing barriers.
fn check_aliasing(resources: &[TransientResource], info: &PlanInfo, p: &TransientPlan) {
    let g = info.buffer_image_granularity.as_devicesize();
    let n = resources.len();
    for r in 0..n {
        let (m, s, e) = range(resources, p, r);
        assert!(e <= p.memory()[m].size, "resource {r} ends past its memory");
        assert!(resources[r].layout.alignment().is_aligned(s));
    }
    for r in 0..n {
        let before = ordered_before(p, r);
        for q in 0..n {
            if q == r || !alias(resources, p, g, q, r) {
                continue;
            }
            assert!(
                !resources[q].alive_together(&resources[r]),
                "{q} and {r} alive together alias"
            );
            if resources[q].last_pass < resources[r].first_pass {
                assert!(
                    before.contains(&q),
                    "{q} ({:?}, {:?}) aliases {r} ({:?}, {:?}) before it with no barrier chain",
                    resources[q].allocation_type,
                    range(resources, p, q),
                    resources[r].allocation_type,
                    range(resources, p, r),
                );
            }
        }
    }
}
/// An AMD-like layout that lists its 256 MiB BAR type (`DEVICE_LOCAL | HOST_VISIBLE`) before
/// plain VRAM, as some drivers have.
fn bar_listed_first() -> support::GpuLayout {
    use ash::vk::MemoryPropertyFlags as F;
    let dl = F::DEVICE_LOCAL;
    let host = F::HOST_VISIBLE | F::HOST_COHERENT;
    support::GpuLayout {
        name: "amd-bar-listed-first",
        types: vec![
            (dl | host, 2),
            (dl, 0),
            (host, 1),
            (host | F::HOST_CACHED, 1),
        ],
        ..support::GpuLayout::amd_discrete_bar()
    }
}
