//! Memory budget on the simulated driver: `VK_EXT_memory_budget` numbers set by the test
//! (through the core and the KHR entry point), `within_budget` exactly at the boundary, and
//! threads that must not pass the budget together, with the extension and with the estimate.

mod common;
mod support;

use ash::vk;
use ash_memory::*;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::{EntryPoint, GpuLayout, Properties2Call, Rng, Sim, SimFeatures, KIB, MIB};

const BUDGET: SimFeatures = SimFeatures {
    memory_budget: true,
    memory_priority: false,
    buffer_device_address: false,
    external_memory: false,
    protected_memory: false,
};

/// 64 MiB of VRAM (heap 0, memory type 0) and 64 MiB of host memory.
fn small() -> GpuLayout {
    GpuLayout::small_heaps(64 * MIB, 64 * MIB)
}

fn within() -> AllocationCreateInfo {
    AllocationCreateInfo {
        within_budget: true,
        ..Default::default()
    }
}

fn requirements(size: u64, bits: u32) -> AllocationRequirements {
    AllocationRequirements {
        layout: DeviceLayout::from_size_alignment(size, 256).unwrap(),
        memory_type_bits: bits,
        prefers_dedicated_allocation: false,
        requires_dedicated_allocation: false,
    }
}

#[test]
fn heap_budgets_are_the_simulated_extension_numbers() {
    let sim = Sim::with_features(small(), BUDGET);
    let device = sim.memory_device_claimed();
    let allocator = StandardMemoryAllocator::new_default(device.clone());
    sim.state.set_heap_budget(0, 48 * MIB);
    sim.state.set_other_usage(0, 5 * MIB);
    sim.state.set_heap_budget(1, 40 * MIB);
    let dedicated = allocator
        .allocate_dedicated(0, 3 * MIB, None, &AllocationCreateInfo::default())
        .unwrap();
    let upload = AllocationCreateInfo {
        usage: MemoryUsage::Upload,
        ..Default::default()
    };
    let block = allocator
        .allocate(
            requirements(4 * KIB, 0b111),
            AllocationType::Linear,
            &upload,
            None,
        )
        .unwrap();
    assert!(!block.is_dedicated());
    let host_block = sim.state.heap_used(1);
    assert!(host_block > 0);
    sim.state.reset_counters();
    let b = device.heap_budgets();
    assert_eq!(
        b,
        vec![
            HeapBudget {
                heap_size: 64 * MIB,
                usage: 3 * MIB + 5 * MIB,
                budget: 48 * MIB,
                crate_usage: 3 * MIB,
                from_extension: true,
            },
            HeapBudget {
                heap_size: 64 * MIB,
                usage: host_block,
                budget: 40 * MIB,
                crate_usage: host_block,
                from_extension: true,
            },
        ]
    );
    assert_eq!(
        sim.state.properties2_calls(),
        [Properties2Call {
            entry: EntryPoint::Core,
            budget: true,
        }]
    );
    // Queried every time, not cached.
    sim.state.set_other_usage(0, 7 * MIB);
    sim.state.set_heap_budget(0, 30 * MIB);
    let b0 = device.heap_budgets()[0];
    assert_eq!((b0.usage, b0.budget), (10 * MIB, 30 * MIB));
    assert_eq!(sim.state.properties2_calls().len(), 2);
    // The statistics show the same numbers.
    assert_eq!(
        allocator.statistics().heaps[0].budget,
        device.heap_budgets()[0]
    );
    // The extension not told to the crate: the estimate, and no query at all.
    sim.state.reset_counters();
    let unclaimed = sim.memory_device();
    let e = unclaimed.heap_budgets()[0];
    assert!(!e.from_extension);
    assert_eq!((e.usage, e.budget), (0, 64 * MIB / 10 * 8));
    assert!(sim.state.properties2_calls().is_empty());
    drop((dedicated, block, allocator));
    sim.assert_nothing_allocated();
}

/// `within_budget` fails one byte past the budget and succeeds exactly at it, with no driver
/// call on refusal; `usage_budget` gives the heap's usage and budget as the test knows them.
fn boundary(sim: &Sim, device: &Arc<MemoryDevice>, usage_budget: &dyn Fn() -> (u64, u64)) {
    let allocator = StandardMemoryAllocator::new_default(device.clone());
    let existing = allocator
        .allocate_dedicated(0, MIB, None, &AllocationCreateInfo::default())
        .unwrap();
    let (usage, budget) = usage_budget();
    assert!(usage >= MIB && budget > usage + 4 * MIB, "{usage} {budget}");
    let room = budget - usage;
    let calls = sim.state.allocate_calls();
    let err = allocator
        .allocate_dedicated(0, room + 1, None, &within())
        .unwrap_err();
    assert_eq!(
        err,
        AllocationError::BudgetExceeded(BudgetError {
            heap: 0,
            usage,
            size: room + 1,
            budget,
        })
    );
    // Through the memory type choice too: every block size and the dedicated fallback are
    // refused (memory type 0 only, so no other heap can take it).
    let err = allocator
        .allocate(
            requirements(room + 1, 0b001),
            AllocationType::Linear,
            &within(),
            None,
        )
        .unwrap_err();
    assert!(matches!(err, AllocationError::BudgetExceeded(_)), "{err:?}");
    assert_eq!(
        sim.state.allocate_calls(),
        calls,
        "a refusal reached the driver"
    );
    // Exactly at the budget.
    let full = allocator
        .allocate_dedicated(0, room, None, &within())
        .unwrap_or_else(|e| panic!("{room} bytes, exactly the room left: {e}"));
    assert_eq!(usage_budget(), (budget, budget));
    // Not one byte more, by any path; the driver is not asked.
    let calls = sim.state.allocate_calls();
    let err = allocator
        .allocate_dedicated(0, 1, None, &within())
        .unwrap_err();
    assert!(matches!(err, AllocationError::BudgetExceeded(_)), "{err:?}");
    let err = allocator
        .allocate(
            requirements(256, 0b001),
            AllocationType::Linear,
            &within(),
            None,
        )
        .unwrap_err();
    assert!(matches!(err, AllocationError::BudgetExceeded(_)), "{err:?}");
    assert_eq!(sim.state.allocate_calls(), calls);
    // Without `within_budget` the budget is only advice.
    let over = allocator
        .allocate_dedicated(0, MIB, None, &AllocationCreateInfo::default())
        .unwrap();
    drop(full);
    // Room again after a free: a block of the allocator's choice is made within the budget.
    let small = allocator
        .allocate(
            requirements(256, 0b001),
            AllocationType::Linear,
            &within(),
            None,
        )
        .unwrap();
    assert!(usage_budget().0 <= budget);
    drop((existing, over, small, allocator));
    sim.assert_nothing_allocated();
}

#[test]
fn within_budget_holds_exactly_at_the_boundary_with_the_extension() {
    let sim = Sim::with_features(small(), BUDGET);
    sim.state.set_heap_budget(0, 40 * MIB);
    sim.state.set_other_usage(0, 6 * MIB);
    let device = sim.memory_device_claimed();
    let state = sim.state.clone();
    boundary(&sim, &device, &|| state.budget_of(0));
    // The crate's own view agrees with the driver's numbers.
    assert_eq!(device.heap_budgets()[0].usage, 6 * MIB);
}

#[test]
fn within_budget_holds_exactly_at_the_boundary_of_the_estimate() {
    let sim = Sim::new(small());
    let device = sim.memory_device();
    assert!(!device.heap_budgets()[0].from_extension);
    let state = sim.state.clone();
    // Without the extension: 80 % of the heap; usage is the crate's live memory, which is all
    // the simulated heap holds.
    boundary(&sim, &device, &|| (state.heap_used(0), 64 * MIB / 10 * 8));
    assert!(sim.state.properties2_calls().is_empty());
}

#[test]
fn vulkan_1_0_budget_goes_through_the_khr_entry_point() {
    let sim = Sim::with_features(small(), BUDGET);
    sim.state.set_heap_budget(0, 20 * MIB);
    sim.state.set_other_usage(0, 2 * MIB);
    // SAFETY: the wrapped instance and device outlive the `MemoryDevice` (dropped before `sim`);
    // the simulated driver claims VK_EXT_memory_budget and serves
    // vkGetPhysicalDeviceMemoryProperties2KHR through `sim.entry()`, as
    // VK_KHR_get_physical_device_properties2 would.
    let device = unsafe {
        MemoryDevice::new(
            sim.entry(),
            &sim.instance,
            sim.ctx.physical_device,
            sim.device.clone(),
            vk::API_VERSION_1_0,
            EnabledMemoryFeatures {
                memory_budget: true,
                ..Default::default()
            },
        )
    }
    .unwrap();
    assert_eq!(device.api_version(), vk::API_VERSION_1_0);
    assert_eq!(sim.state.khr_lookups(), 1, "loaded once, through the entry");
    let b = device.heap_budgets();
    assert_eq!((b[0].usage, b[0].budget), (2 * MIB, 20 * MIB));
    assert!(b.iter().all(|h| h.from_extension));
    // The budget checks of `within_budget` go the same way.
    let allocator = StandardMemoryAllocator::new_default(device.clone());
    let a = allocator
        .allocate_dedicated(0, 18 * MIB, None, &within())
        .unwrap();
    let err = allocator
        .allocate_dedicated(0, 1, None, &within())
        .unwrap_err();
    assert!(matches!(err, AllocationError::BudgetExceeded(_)), "{err:?}");
    let calls = sim.state.properties2_calls();
    assert!(calls.len() >= 3, "{calls:?}");
    assert!(
        calls.iter().all(|c| *c
            == Properties2Call {
                entry: EntryPoint::Khr,
                budget: true,
            }),
        "the core entry point was used on a Vulkan 1.0 instance: {calls:?}"
    );
    // On Vulkan 1.2 the core entry point is used and nothing is looked up.
    sim.state.reset_counters();
    let core = sim.memory_device_claimed();
    assert_eq!(core.heap_budgets()[0].usage, 20 * MIB);
    assert_eq!(sim.state.khr_lookups(), 1);
    assert_eq!(
        sim.state.properties2_calls(),
        [Properties2Call {
            entry: EntryPoint::Core,
            budget: true,
        }]
    );
    drop((a, allocator));
    sim.assert_nothing_allocated();
}

/// Eight threads allocate and free blocks and dedicated memory with `within_budget` on heap 0
/// of `sim`, whose budget (besides `other` bytes used by the rest of the process) is `budget`.
/// Returns `(successes, refusals)`; panics on any other error.
fn hammer(sim: &Sim, device: &Arc<MemoryDevice>, budget: u64, other: u64) -> (u64, u64) {
    let allocator = StandardMemoryAllocator::new(
        device.clone(),
        GenericMemoryAllocatorCreateInfo {
            block_sizes: BlockSizeThresholds::uniform(4 * MIB).unwrap(),
            ..Default::default()
        },
    )
    .unwrap();
    // Every driver call takes a while, so that threads overlap between their budget check
    // and their memory object.
    sim.state.set_allocate_delay(Duration::from_micros(300));
    sim.state.reset_peaks();
    let successes = AtomicU64::new(0);
    let refusals = AtomicU64::new(0);
    std::thread::scope(|s| {
        for t in 0..8u64 {
            let allocator = &allocator;
            let (successes, refusals) = (&successes, &refusals);
            s.spawn(move || {
                let mut rng = Rng(0xB0D6E7 + t);
                let mut live = Vec::new();
                for _ in 0..120 {
                    // Up to six live each: enough that the threads together press on the budget
                    // (blocks made for sizable requests reserve little beyond them).
                    if live.len() >= 6 || (!live.is_empty() && rng.below(3) == 0) {
                        let i = rng.below(live.len() as u64) as usize;
                        live.swap_remove(i);
                        continue;
                    }
                    let (size, preference) = match rng.below(4) {
                        // Suballocated in 4 MiB blocks.
                        0 | 1 => (rng.range(64 * KIB, MIB), MemoryAllocatePreference::Auto),
                        // Larger than half a block: dedicated.
                        2 => (
                            rng.range(2 * MIB + 1, 6 * MIB),
                            MemoryAllocatePreference::Auto,
                        ),
                        _ => (
                            rng.range(256 * KIB, 3 * MIB),
                            MemoryAllocatePreference::AlwaysAllocate,
                        ),
                    };
                    let info = AllocationCreateInfo {
                        allocate_preference: preference,
                        ..within()
                    };
                    match allocator.allocate(
                        requirements(size, 0b001),
                        AllocationType::Linear,
                        &info,
                        None,
                    ) {
                        Ok(a) => {
                            successes.fetch_add(1, Ordering::Relaxed);
                            live.push(a);
                        }
                        Err(AllocationError::BudgetExceeded(e)) => {
                            assert_eq!(e.heap, 0);
                            assert!(e.usage + e.size > e.budget, "{e:?}");
                            refusals.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => panic!("thread {t}: {size} bytes: unexpected {e:?}"),
                    }
                }
            });
        }
    });
    sim.state.set_allocate_delay(Duration::ZERO);
    let peak = sim.state.heap_peak(0);
    println!(
        "peak {peak} + other {other} vs budget {budget}; {} ok, {} refused",
        successes.load(Ordering::Relaxed),
        refusals.load(Ordering::Relaxed)
    );
    assert!(
        peak + other <= budget,
        "threads passed the budget together: peak {peak} + other {other} > budget {budget}"
    );
    drop(allocator);
    sim.assert_nothing_allocated();
    (successes.into_inner(), refusals.into_inner())
}

#[test]
fn threads_cannot_pass_the_estimated_budget_together() {
    let sim = Sim::new(small());
    let device = sim.memory_device();
    let (ok, refused) = hammer(&sim, &device, 64 * MIB / 10 * 8, 0);
    assert!(
        ok > 100 && refused > 10,
        "{ok} successes, {refused} refusals"
    );
}

#[test]
fn threads_cannot_pass_the_extension_budget_together() {
    let sim = Sim::with_features(small(), BUDGET);
    // The rest of the process uses nothing: see the next test for why.
    sim.state.set_heap_budget(0, 30 * MIB);
    let device = sim.memory_device_claimed();
    let (ok, refused) = hammer(&sim, &device, 30 * MIB, 0);
    assert!(
        ok > 100 && refused > 10,
        "{ok} successes, {refused} refusals"
    );
}

#[test]
fn threads_cannot_pass_the_extension_budget_together_with_other_usage() {
    let sim = Sim::with_features(small(), BUDGET);
    sim.state.set_heap_budget(0, 36 * MIB);
    sim.state.set_other_usage(0, 6 * MIB);
    let device = sim.memory_device_claimed();
    let (ok, refused) = hammer(&sim, &device, 36 * MIB, 6 * MIB);
    assert!(
        ok > 100 && refused > 10,
        "{ok} successes, {refused} refusals"
    );
}

/// Another thread's memory object, made between a budget query and the crate's reading of
/// its own usage, must still count: here it is made *inside* the query (by the simulated
/// driver's budget hook), after the numbers were taken, which is where a concurrent
/// allocation lands when it overtakes the query.
///
/// Failed when `reserve` read this crate's heap usage only *after*
/// `vkGetPhysicalDeviceMemoryProperties2`: an allocation recorded in between was subtracted
/// from the reported usage (which did not hold it) while its reservation was also counted, so
/// the other processes' usage came out too low by its size and the budget could be passed.
#[test]
fn an_allocation_that_overtakes_a_budget_query_still_counts() {
    let sim = Sim::with_features(small(), BUDGET);
    sim.state.set_heap_budget(0, 32 * MIB);
    sim.state.set_other_usage(0, 8 * MIB);
    let device = sim.memory_device_claimed();
    let overtaker: Arc<Mutex<Option<MemoryObject>>> = Arc::default();
    let fired = Arc::new(AtomicBool::new(false));
    {
        let (device, overtaker, fired) = (device.clone(), overtaker.clone(), fired.clone());
        sim.state.set_budget_hook(Some(Arc::new(move || {
            if fired.swap(true, Ordering::SeqCst) {
                return;
            }
            // Another thread's allocation, without a budget check of its own.
            let m = MemoryObject::allocate(
                device.clone(),
                &MemoryObjectCreateInfo {
                    size: 8 * MIB,
                    memory_type_index: 0,
                    ..Default::default()
                },
            )
            .expect("the overtaking allocation");
            *overtaker.lock().unwrap() = Some(m);
        })));
    }
    // 8 MiB others + 8 MiB overtaker + 20 MiB = 36 MiB > 32 MiB: must be refused.
    let result = MemoryObject::allocate(
        device.clone(),
        &MemoryObjectCreateInfo {
            size: 20 * MIB,
            memory_type_index: 0,
            within_budget: true,
            ..Default::default()
        },
    );
    sim.state.set_budget_hook(None);
    assert!(fired.load(Ordering::SeqCst), "the budget was not queried");
    assert!(overtaker.lock().unwrap().is_some());
    let (usage, budget) = sim.state.budget_of(0);
    let granted = result.is_ok();
    drop((result, overtaker.lock().unwrap().take()));
    assert!(
        !granted,
        "20 MiB granted with 16 MiB of a 32 MiB budget used: usage became {usage} > {budget}"
    );
    sim.assert_nothing_allocated();
}
