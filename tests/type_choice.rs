//! The memory type the allocator picks, against VMA's rule, through the safe public API.
//!
//! `rule::vma` is VMA 3's rule written out from `vk_mem_alloc.h` (`FindMemoryPreferences` and
//! `FindMemoryTypeIndex`): the usage (legacy `GPU_ONLY` / `CPU_TO_GPU` / `GPU_TO_CPU`, the
//! `AUTO*` usages with the host-access and allow-transfer-instead flags, or explicit
//! required and preferred flags) becomes required, preferred and not-preferred flags;
//! `DEVICE_UNCACHED_AMD` is not preferred unless asked for; `DEVICE_COHERENT_AMD` types are
//! left out unless the feature is enabled; the lowest cost (missing preferred plus present
//! not-preferred flags) wins, ties to the lowest index. `rule::ours` is that rule with the
//! differences the crate documents (`allocator::intent` and `allocator::memory_type`), each
//! named where it is applied. On every simulated layout, for every usage and kind of resource
//! and **every subset** of the memory types as `memoryTypeBits`, the allocator's choice must
//! equal `rule::ours`: a type outside the bits, a special type picked by accident, or any other
//! choice that neither VMA's rule nor a documented difference explains fails.
//!
//! A table of choices worked out by hand from VMA's rules checks the rule as written here.
//! Pools, gpu-allocator's `MemoryLocation`s and a pure property test (explicit filters on
//! random layouts, no driver) are held to the same rule. `type_choice/fallback.rs` fills a
//! heap or its budget for real and checks the fallback to the next type in VMA's order, and
//! the errors of requests no allowed type can serve.

mod common;
mod support;

use ash::vk;
use ash::vk::MemoryPropertyFlags as F;
use ash_memory::allocator::memory_type::find_memory_type_index;
use ash_memory::*;
use proptest::prelude::*;
use support::{GpuLayout, Sim, KIB, MIB};

#[path = "type_choice/fallback.rs"]
mod fallback;
#[path = "type_choice/rule.rs"]
mod rule;

use rule::*;

fn requirements(size: u64, bits: u32) -> AllocationRequirements {
    AllocationRequirements {
        layout: DeviceLayout::from_size_alignment(size, 256).unwrap(),
        memory_type_bits: bits,
        prefers_dedicated_allocation: false,
        requires_dedicated_allocation: false,
    }
}

fn allocator_for(sim: &Sim, c: &Config) -> StandardMemoryAllocator {
    let features = EnabledMemoryFeatures {
        protected_memory: c.protected,
        device_coherent_memory: c.device_coherent,
        ..Default::default()
    };
    StandardMemoryAllocator::new_default(sim.memory_device_with(common::API_VERSION, features))
}

fn sim_for(c: &Config) -> Sim {
    Sim::with_features(
        c.layout.clone(),
        support::SimFeatures {
            protected_memory: c.protected,
            ..Default::default()
        },
    )
}

/// Every layout, usage, resource and subset of the memory types: the allocator picks what
/// VMA's rule with the crate's documented differences picks, and never a type outside the
/// bits or a special type it was not asked for.
#[test]
fn every_choice_on_every_layout_and_memory_type_bits_follows_vmas_rule() {
    let mut failures = Vec::new();
    let mut checked = 0u64;
    for c in configs() {
        let sim = sim_for(&c);
        let allocator = allocator_for(&sim, &c);
        let c = Config {
            integrated_type: allocator.device().physical_device_properties().device_type
                == vk::PhysicalDeviceType::INTEGRATED_GPU,
            ..c
        };
        let count = c.layout.type_count();
        for usage in usages() {
            for resource in resources() {
                let info = AllocationCreateInfo {
                    usage,
                    resource_usage: resource,
                    ..Default::default()
                };
                for bits in 1..(1u32 << count) {
                    let got = allocator.memory_type_for(&requirements(4 * KIB, bits), &info);
                    let want = ours(&c, bits, usage, resource);
                    checked += 1;
                    if let Some(t) = got {
                        assert!(bits & (1 << t) != 0, "type {t} outside {bits:#b}");
                    }
                    if got != want {
                        let key = format!("{} {} {usage:?}", c.layout.name, c.device_coherent);
                        failures.push((
                            key,
                            format!(
                                "{} (protected {}, device coherent {}) {usage:?} {resource:?} \
                             bits {bits:#b}: got {got:?}, VMA's rule {want:?} (plain VMA {:?})",
                                c.layout.name,
                                c.protected,
                                c.device_coherent,
                                vma(&c, bits, usage, resource),
                            ),
                        ));
                    }
                }
            }
        }
    }
    assert!(checked > 100_000, "only {checked} choices checked");
    // One line per layout and usage: the first difference and how many there are.
    let mut first: Vec<(String, String, usize)> = Vec::new();
    for (key, line) in &failures {
        match first.iter_mut().find(|(k, ..)| k == key) {
            Some(entry) => entry.2 += 1,
            None => first.push((key.clone(), line.clone(), 1)),
        }
    }
    let report: Vec<String> = first
        .iter()
        .map(|(_, line, n)| format!("{line} (and {} more)", n - 1))
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {checked} choices differ:\n{}",
        failures.len(),
        report.join("\n")
    );
}

/// A pool that finds its type for a usage takes the type of the rule for a resource of
/// unknown usage (documented: no rationing, the pool's blocks are the application's own
/// budget), for every usage and with each type left out of the bits in turn.
#[test]
fn a_pool_finds_the_type_of_the_rule_for_every_usage() {
    for c in configs() {
        let sim = sim_for(&c);
        let allocator = allocator_for(&sim, &c);
        let all = (1u32 << c.layout.type_count()) - 1;
        for usage in usages() {
            for bits in
                std::iter::once(all).chain((0..c.layout.type_count()).map(|i| all & !(1 << i)))
            {
                let what = format!("{} {usage:?} bits {bits:#b}", c.layout.name);
                let want = ours(&c, bits, usage, ResourceUsage::Unknown);
                let created = allocator.create_pool::<FreeListAllocator>(&PoolCreateInfo {
                    memory_type: PoolMemoryType::Find {
                        memory_type_bits: bits,
                        usage,
                    },
                    block_size: MIB,
                    ..Default::default()
                });
                match (created, want) {
                    (Ok(pool), Some(t)) => assert_eq!(pool.memory_type_index(), t, "{what}"),
                    // Lazily allocated memory is never carved into blocks.
                    (Err(_), Some(t)) if c.layout.flags(t).contains(LAZY) => {}
                    (Err(e), None) => assert!(
                        matches!(e, AllocationError::NoSuitableMemoryType { .. }),
                        "{what}: {e:?}"
                    ),
                    (got, want) => panic!("{what}: {got:?}, VMA's rule {want:?}"),
                }
            }
        }
        drop(allocator);
        sim.assert_nothing_allocated();
    }
}

/// The flags a random memory type is made of.
const RANDOM_FLAGS: [F; 8] = [DL, HV, HC, CACHED, LAZY, PROT, DC, DU];

fn flags_of(mask: u8) -> F {
    RANDOM_FLAGS
        .iter()
        .enumerate()
        .filter(|(i, _)| mask & (1 << i) != 0)
        .fold(F::empty(), |f, (_, &flag)| f | flag)
}

/// Random flags, each of [`RANDOM_FLAGS`] present with probability 2^-`sparseness`: dense
/// flags would leave most requests without any type.
fn sparse_flags(sparseness: u32) -> impl Strategy<Value = u8> {
    proptest::collection::vec(any::<u8>(), sparseness as usize)
        .prop_map(|masks| masks.into_iter().fold(u8::MAX, |m, x| m & x))
}

proptest! {
    /// The choice for an explicit filter is a pure function of the types, the bits, the
    /// filter and the features: on random layouts it is VMA's (lowest cost, ties to the lowest
    /// index, `DEVICE_UNCACHED` avoided unless asked for) among the types the opt-in rules
    /// allow, and never a type outside the bits or without a required flag.
    #[test]
    fn an_explicit_filter_chooses_as_vma_on_random_layouts(
        types in proptest::collection::vec((sparse_flags(2), 0u32..2), 1..12),
        bits in any::<u32>(),
        (req, pref, not) in (sparse_flags(3), sparse_flags(2), sparse_flags(2)),
        (protected, device_coherent) in (any::<bool>(), any::<bool>()),
    ) {
        let layout = GpuLayout {
            name: "random",
            types: types.iter().map(|&(f, h)| (flags_of(f), h)).collect(),
            heaps: vec![(1 << 30, true), (1 << 30, false)],
            ..GpuLayout::nvidia_discrete()
        };
        let props = MemoryProperties::from_vk(&layout.to_vk()).unwrap();
        let features = EnabledMemoryFeatures {
            protected_memory: protected,
            device_coherent_memory: device_coherent,
            ..Default::default()
        };
        let usage = custom(flags_of(req), flags_of(pref), flags_of(not));
        let MemoryUsage::Custom(filter) = usage else { unreachable!() };
        let c = Config { layout: layout.clone(), protected, device_coherent, integrated_type: false };
        let got = find_memory_type_index(&props, &features, bits, &filter);
        let want = ours(&c, bits, usage, ResourceUsage::Unknown);
        prop_assert_eq!(got, want);
        if let Some(t) = got {
            prop_assert!(bits & (1 << t) != 0);
            prop_assert!(layout.flags(t).contains(filter.required_flags));
        }
    }
}

/// gpu-allocator's `MemoryLocation`s against the usages its migration guide maps them to
/// (`docs/from-gpu-allocator.md`: `Auto(NoAccess)` or `DeviceOnly`, `Auto(SequentialWrite)` or
/// `Upload`, `Auto(Random)` or `Download`), for a buffer of unknown use, on every layout. They
/// agree except where VMA's rule and gpu-allocator's disagree and the crate documents that it
/// follows VMA's, listed here with the reason.
#[test]
fn gpu_allocator_locations_land_where_gpu_allocator_puts_them_or_differ_as_documented() {
    use HostAccess::*;
    // (layout, location, why the crate follows VMA there).
    let differs = |layout: &str, location: &str| match (layout, location) {
        // `MemoryUsage::Upload` and the rule's sequential-write row avoid HOST_CACHED:
        // gpu-allocator takes the first host-visible device-local type, the cached one.
        ("intel-integrated", "CpuToGpu") => Some("uploads avoid HOST_CACHED"),
        // gpu-allocator requires HOST_COHERENT and so reads back from uncached memory; the
        // crate takes the cached non-coherent type and pads to whole atoms (`intent`).
        ("mobile-noncoherent" | "mobile-lazy-first", "GpuToCpu") => {
            Some("readback wants HOST_CACHED, coherent or not")
        }
        _ => None,
    };
    let mut checked = 0;
    for c in configs() {
        let sim = sim_for(&c);
        let allocator = allocator_for(&sim, &c);
        let bits = c.layout.buffer_bits();
        for (location, usages, preferred, required) in [
            (
                "GpuOnly",
                [MemoryUsage::Auto(NoAccess), MemoryUsage::DeviceOnly],
                DL,
                DL,
            ),
            (
                "CpuToGpu",
                [MemoryUsage::Auto(SequentialWrite), MemoryUsage::Upload],
                HV | HC | DL,
                HV | HC,
            ),
            (
                "GpuToCpu",
                [MemoryUsage::Auto(Random), MemoryUsage::Download],
                HV | HC | CACHED,
                HV | HC,
            ),
        ] {
            let theirs = gpu_allocator_pick(&c.layout, bits, preferred, required);
            for usage in usages {
                let what = format!("{} {location} as {usage:?}", c.layout.name);
                let info = AllocationCreateInfo {
                    usage,
                    ..Default::default()
                };
                let got = allocator.memory_type_for(&requirements(4 * KIB, bits), &info);
                checked += 1;
                match differs(c.layout.name, location) {
                    None => assert_eq!(got, theirs, "{what}"),
                    Some(why) => {
                        assert_ne!(got, theirs, "{what}: listed as different ({why})");
                        // VMA 3's automatic usages agree with the crate (its legacy
                        // CPU_TO_GPU does not avoid HOST_CACHED: `tests/simulated_gpus.rs`).
                        if auto_parts(usage).is_some() {
                            let vma = vma(&c, bits, usage, ResourceUsage::Unknown);
                            assert_eq!(got, vma, "{what}: {why}, as VMA");
                        }
                    }
                }
            }
        }
    }
    assert_eq!(checked, configs().len() * 6);
}

/// Choices worked out by hand from VMA's rules (`FindMemoryPreferences` and the cost), not
/// from the crate: each row is checked against the rule as written in `rule::vma`, and, where
/// the simulated driver can present the device (not an integrated device type), against the
/// allocator. The AMD rows with device-coherent types are the ones the crate got wrong
/// before it avoided `DEVICE_UNCACHED_AMD`.
#[test]
fn hand_derived_vma_choices() {
    use vk::BufferUsageFlags as B;
    use HostAccess::*;
    use MemoryUsage::{Auto, AutoPreferHost, DeviceOnly, Download};
    let storage = ResourceUsage::Buffer(B::STORAGE_BUFFER);
    let staging = ResourceUsage::Buffer(B::TRANSFER_SRC);
    let unknown = ResourceUsage::Unknown;
    let plain = |layout| Config {
        layout,
        protected: false,
        device_coherent: false,
        integrated_type: false,
    };
    let coherent = || Config {
        device_coherent: true,
        ..plain(amd_device_coherent())
    };
    // AMD with device-coherent types: 0 DL, 1 HV|HC, 2 DL|HV|HC (BAR), 3 HV|HC|CACHED, then
    // 4..=7 the same with DEVICE_COHERENT | DEVICE_UNCACHED.
    let rows: Vec<(Config, u32, MemoryUsage, ResourceUsage, u32, &str)> = vec![
        (coherent(), 0xff, Auto(NoAccess), storage, 0, "DL, cost 0"),
        (
            coherent(),
            0b1_0100,
            DeviceOnly,
            unknown,
            2,
            "GPU_ONLY: the BAR type costs 0, uncached VRAM 1 (DEVICE_UNCACHED)",
        ),
        (
            coherent(),
            0b1000_0010,
            Download,
            unknown,
            1,
            "GPU_TO_CPU: 1 misses CACHED, 7 has DEVICE_UNCACHED: a tie, the lower index",
        ),
        (
            coherent(),
            0b10_1000,
            Auto(SequentialWrite),
            unknown,
            3,
            "3 misses DL and has CACHED, 5 misses DL and has DEVICE_UNCACHED: a tie",
        ),
        (
            coherent(),
            0b1_0010,
            Auto(RandomOrTransfer),
            storage,
            1,
            "prefers CACHED and DL: 1 misses both, 4 misses CACHED and has DEVICE_UNCACHED",
        ),
        (
            coherent(),
            0b10_0001,
            AutoPreferHost(NoAccess),
            storage,
            0,
            "avoids DL: 0 has it, 5 has DEVICE_UNCACHED: a tie",
        ),
        (
            plain(amd_device_coherent()),
            0xf0,
            Auto(NoAccess),
            storage,
            u32::MAX,
            "without the feature the device-coherent types are left out: nothing",
        ),
        (
            plain(GpuLayout::nvidia_discrete()),
            0b111,
            Auto(SequentialWrite),
            staging,
            1,
            "staging avoids DL and CACHED: write-combined host memory",
        ),
        (
            plain(GpuLayout::amd_discrete_bar()),
            0b1111,
            Auto(SequentialWriteOrTransfer),
            ResourceUsage::Buffer(B::VERTEX_BUFFER | B::TRANSFER_DST),
            2,
            "discrete, GPU reads it: prefers DL and HV, the BAR type has both",
        ),
        (
            plain(GpuLayout::amd_discrete_bar()),
            0b1111,
            Auto(RandomOrTransfer),
            storage,
            0,
            "prefers CACHED and DL: 0, 2 and 3 each miss one, the lowest index",
        ),
        (
            plain(GpuLayout::mobile()),
            0b011,
            Auto(Random),
            ResourceUsage::Buffer(B::TRANSFER_DST),
            1,
            "requires HV, prefers CACHED: the cached type, though not coherent",
        ),
        (
            Config {
                integrated_type: true,
                ..plain(apu_carve_out())
            },
            0b1111,
            Auto(RandomOrTransfer),
            storage,
            3,
            "integrated: prefers CACHED and HV, cached host memory (no staging)",
        ),
        (
            plain(apu_carve_out()),
            0b1111,
            Auto(RandomOrTransfer),
            storage,
            0,
            "reported discrete: prefers CACHED and DL, the carve-out's VRAM type",
        ),
    ];
    for (c, bits, usage, resource, expected, why) in rows {
        let expected = (expected != u32::MAX).then_some(expected);
        let what = format!(
            "{} {usage:?} {resource:?} bits {bits:#b}: {why}",
            c.layout.name
        );
        assert_eq!(
            vma(&c, bits, usage, resource),
            expected,
            "VMA's rule: {what}"
        );
        if c.integrated_type {
            continue;
        }
        let sim = sim_for(&c);
        let allocator = allocator_for(&sim, &c);
        let info = AllocationCreateInfo {
            usage,
            resource_usage: resource,
            ..Default::default()
        };
        let got = allocator.memory_type_for(&requirements(4 * KIB, bits), &info);
        assert_eq!(got, expected, "allocator: {what}");
    }
}
