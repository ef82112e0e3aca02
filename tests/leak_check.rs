//! The leak check of debug builds: dropping an allocator or a custom pool while allocations
//! are alive panics by default (with the report on stderr or in the log), and the create info
//! opts out.

mod common;

use ash_memory::*;
use common::TestContext;
use std::panic::{catch_unwind, AssertUnwindSafe};

fn named(name: &str) -> AllocationCreateInfo {
    AllocationCreateInfo {
        name: Some(name.into()),
        ..Default::default()
    }
}

fn layout() -> DeviceLayout {
    DeviceLayout::from_size_alignment(4096, 256).unwrap()
}

fn panic_text(e: Box<dyn std::any::Any + Send>) -> String {
    e.downcast_ref::<String>()
        .cloned()
        .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

#[test]
fn the_default_is_a_panic_in_debug_builds() {
    let expected = if cfg!(debug_assertions) {
        LeakCheck::Panic
    } else {
        LeakCheck::Log
    };
    assert_eq!(DebugOptions::default().leak_check, expected);
    assert_eq!(
        GenericMemoryAllocatorCreateInfo::default().debug.leak_check,
        expected
    );
}

/// An allocator with the debug builds' default leak check (also in a release test run).
fn panicking(device: std::sync::Arc<MemoryDevice>) -> StandardMemoryAllocator {
    StandardMemoryAllocator::new(
        device,
        GenericMemoryAllocatorCreateInfo {
            debug: DebugOptions {
                leak_check: LeakCheck::Panic,
                ..Default::default()
            },
            ..Default::default()
        },
    )
    .unwrap()
}

#[test]
fn dropping_an_allocator_with_live_allocations_panics() {
    let ctx = TestContext::new();
    let device = ctx.memory_device();
    let allocator = panicking(device.clone());
    let mut leaked = allocator
        .allocate_from_type(0, layout(), AllocationType::Linear, &named("kept"))
        .unwrap();
    let freed = allocator
        .allocate_from_type(0, layout(), AllocationType::Linear, &named("freed"))
        .unwrap();
    drop(freed);
    let e = catch_unwind(AssertUnwindSafe(|| drop(allocator))).expect_err("a leak panics");
    let text = panic_text(e);
    assert!(text.contains("1 leaked allocation"), "{text}");
    assert!(
        text.contains("LeakCheck::Log"),
        "says how to opt out: {text}"
    );
    // The allocation still works, and frees its memory when dropped.
    if leaked.mapped_ptr().is_some() {
        leaked.write_value(0, 5u32).unwrap();
    }
    drop(leaked);
    assert_eq!(device.live_memory_objects(), 0);
}

#[test]
fn no_panic_without_leaks_or_when_opted_out() {
    let ctx = TestContext::new();
    let device = ctx.memory_device();
    // No leak: no panic.
    let allocator = panicking(device.clone());
    drop(
        allocator
            .allocate_from_type(0, layout(), AllocationType::Linear, &named("a"))
            .unwrap(),
    );
    drop(allocator);
    // Opted out: allocations may outlive the allocator.
    for leak_check in [LeakCheck::Log, LeakCheck::Print, LeakCheck::Off] {
        let allocator = StandardMemoryAllocator::new(
            device.clone(),
            GenericMemoryAllocatorCreateInfo {
                debug: DebugOptions {
                    leak_check,
                    ..Default::default()
                },
                ..Default::default()
            },
        )
        .unwrap();
        let alloc = allocator
            .allocate_from_type(0, layout(), AllocationType::Linear, &named("outlives"))
            .unwrap();
        drop(allocator);
        drop(alloc);
    }
    assert_eq!(device.live_memory_objects(), 0);
}

#[test]
fn dropping_a_pool_with_live_allocations_panics() {
    let ctx = TestContext::new();
    let allocator = panicking(ctx.memory_device());
    let pool = allocator
        .create_pool::<FreeListAllocator>(&PoolCreateInfo {
            name: Some("terrain".into()),
            memory_type: PoolMemoryType::Index(0),
            ..Default::default()
        })
        .unwrap();
    let alloc = pool
        .allocate_from_type(0, layout(), AllocationType::Linear, &named("tile"))
        .unwrap();
    let e = catch_unwind(AssertUnwindSafe(|| drop(pool))).expect_err("a leak panics");
    assert!(panic_text(e).contains("MemoryPool"));
    drop(alloc);
}
