//! Host access at its edges: random writes and reads of random ranges through the safe API
//! (`write`, `read`, the typed copies, the mapped slices with `flush` / `invalidate`) into
//! neighbouring allocations of pools of every suballocator, of the default allocator and of
//! dedicated memory, on simulated non-coherent memory (whose device copy throws away every
//! byte a missing flush left behind, see `support::coherence`) and on the real driver with
//! GPU round trips.
//!
//! After every step each allocation holds exactly what was written to it (never a
//! neighbour's bytes), every flush and invalidate covers exactly the atoms the access
//! touched (clamped to the memory object) and nothing of another allocation, and every
//! range that leaves the allocation (offset + length overflow included) is an error that
//! changes nothing.
//!
//! - `walks`: the random walks on simulated non-coherent memory (pools of every
//!   suballocator, blocks, dedicated memory, debug margins), and allocations outliving
//!   their allocator;
//! - `gpu`: neighbouring buffers on the real driver, through host writes, GPU fills, updates
//!   and copies, and a GPU-copied defragmentation;
//! - `defrag`: every byte of a moved allocation, on simulated non-coherent memory;
//! - `imports`: host memory is never imported twice at a time;
//! - `typed`: the alignment and length rules of typed slices.

mod common;
mod support;

#[path = "host_access_edges/defrag.rs"]
mod defrag;
#[path = "host_access_edges/gpu.rs"]
mod gpu;
#[path = "host_access_edges/imports.rs"]
mod imports;
#[path = "host_access_edges/typed.rs"]
mod typed;
#[path = "host_access_edges/walks.rs"]
mod walks;

use ash_memory::*;
use proptest::prelude::*;
use support::GpuLayout;

/// Mobile's cached type, which is not host-coherent.
const NON_COHERENT: u32 = 1;

/// The mobile layout with `atom`-byte non-coherent atoms.
fn mobile(atom: u64) -> GpuLayout {
    GpuLayout {
        name: "mobile-atoms",
        non_coherent_atom_size: atom,
        ..GpuLayout::mobile()
    }
}

fn request(device: &MemoryDevice, size: u64, alignment: u64) -> AllocationRequirements {
    AllocationRequirements {
        layout: DeviceLayout::from_size_alignment(size, alignment).unwrap(),
        memory_type_bits: device.memory_properties().all_types_mask(),
        prefers_dedicated_allocation: false,
        requires_dedicated_allocation: false,
    }
}

/// A range inside an allocation of `size` bytes drawn from two numbers: `(offset, len)`,
/// reaching the last byte (and zero lengths) often.
fn range_in(size: u64, at: u64, len: u64) -> (u64, u64) {
    let offset = match at % 4 {
        0 => 0,
        1 => size - (len % (size + 1)).min(size),
        _ => (at >> 2) % (size + 1),
    };
    let room = size - offset;
    let len = match len % 5 {
        0 => room,
        1 => 0,
        _ => (len >> 3) % (room + 1),
    };
    (offset, len)
}

/// 12 cases (`PROPTEST_CASES` for more).
fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(12);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}
