//! Names and user data: given at creation or changed afterwards, on block and dedicated
//! allocations, and shown in snapshots, the JSON dump, the SVG tooltip and the leak report.

mod common;

use ash_memory::stats::RangeSnapshot;
use ash_memory::*;
use common::TestContext;
use std::sync::Arc;

#[derive(Debug, PartialEq)]
struct Tag {
    frame: u32,
    what: &'static str,
}

fn requirements(device: &MemoryDevice, size: u64) -> AllocationRequirements {
    AllocationRequirements {
        layout: DeviceLayout::from_size_alignment(size, 256).unwrap(),
        memory_type_bits: device.memory_properties().all_types_mask(),
        prefers_dedicated_allocation: false,
        requires_dedicated_allocation: false,
    }
}

/// The range of `alloc` in a snapshot.
fn range_of(snapshot: &MemorySnapshot, alloc: &MemoryAlloc) -> RangeSnapshot {
    use ash::vk::Handle;
    let block = snapshot
        .blocks
        .iter()
        .find(|b| b.memory == alloc.memory().as_raw())
        .expect("the allocation's memory is in the snapshot");
    block
        .ranges
        .iter()
        .find(|r| r.offset <= alloc.offset() && alloc.offset() < r.offset + r.size)
        .expect("a range holds the allocation")
        .clone()
}

#[test]
fn user_data_and_names_round_trip_and_show_everywhere() {
    let ctx = TestContext::new();
    let device = ctx.memory_device();
    let allocator = StandardMemoryAllocator::new_default(device.clone());
    for preference in [
        MemoryAllocatePreference::Auto,
        MemoryAllocatePreference::AlwaysAllocate,
    ] {
        let data: Arc<dyn UserData> = Arc::new(Tag {
            frame: 7,
            what: "shadow map",
        });
        let info = AllocationCreateInfo {
            name: Some("shadows".into()),
            user_data: Some(data.clone()),
            allocate_preference: preference,
            ..Default::default()
        };
        let mut alloc = allocator
            .allocate(
                requirements(&device, 4096),
                AllocationType::Linear,
                &info,
                None,
            )
            .unwrap();
        let plain = allocator
            .allocate(
                requirements(&device, 4096),
                AllocationType::Linear,
                &AllocationCreateInfo::default(),
                None,
            )
            .unwrap();
        assert_eq!(
            alloc.is_dedicated(),
            preference == MemoryAllocatePreference::AlwaysAllocate
        );
        assert_eq!(alloc.name(), Some("shadows"));
        assert!(Arc::ptr_eq(alloc.user_data().unwrap(), &data));
        assert_eq!(
            alloc.user_data_as::<Tag>(),
            Some(&Tag {
                frame: 7,
                what: "shadow map"
            })
        );
        assert_eq!(alloc.user_data_as::<u32>(), None, "another type");
        assert!(plain.user_data().is_none() && plain.name().is_none());

        let text = "Tag { frame: 7, what: \"shadow map\" }";
        let snap = allocator.snapshot();
        let r = range_of(&snap, &alloc);
        assert_eq!(r.name.as_deref(), Some("shadows"));
        assert_eq!(r.user_data.as_deref(), Some(text));
        assert_eq!(range_of(&snap, &plain).user_data, None);
        let json: serde_json::Value = serde_json::from_str(&snap.to_json()).unwrap();
        let found = json["blocks"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|b| b["ranges"].as_array().unwrap())
            .any(|r| r["name"] == "shadows" && r["user_data"] == text);
        assert!(found, "the JSON dump has the name and user data");
        assert!(snap
            .to_svg()
            .contains("user data: Tag { frame: 7, what: &quot;shadow map&quot; }"));
        let leaks = allocator.report_leaks();
        let leak = leaks.iter().find(|l| l.name.as_deref() == Some("shadows"));
        assert_eq!(leak.unwrap().user_data.as_deref(), Some(text));

        // Renamed and re-tagged after creation.
        alloc.set_name(Some("cascades".into()));
        alloc.set_user_data(Some(Arc::new(42u64)));
        assert_eq!(alloc.name(), Some("cascades"));
        assert_eq!(alloc.user_data_as::<u64>(), Some(&42));
        let r = range_of(&allocator.snapshot(), &alloc);
        assert_eq!(r.name.as_deref(), Some("cascades"));
        assert_eq!(r.user_data.as_deref(), Some("42"));
        // A name can be given later to an allocation made without one, and taken away.
        let mut plain = plain;
        plain.set_user_data(Some(Arc::new("late")));
        assert_eq!(
            range_of(&allocator.snapshot(), &plain).user_data.as_deref(),
            Some("\"late\"")
        );
        alloc.set_name(None);
        alloc.set_user_data(None);
        let r = range_of(&allocator.snapshot(), &alloc);
        assert_eq!((r.name, r.user_data), (None, None));
        assert!(alloc.name().is_none() && alloc.user_data().is_none());
        drop((alloc, plain));
        assert!(allocator.report_leaks().is_empty());
    }
}

/// An allocation without a record keeps its block and its type in one word, and moves them
/// to the heap when it is given a record: its place, size and type stay what they were
/// through every change, and dropping it returns its range in either form.
#[test]
fn a_record_given_and_taken_away_keeps_the_place_and_type() {
    let ctx = TestContext::new();
    let device = ctx.memory_device();
    let allocator = StandardMemoryAllocator::new_default(device.clone());
    let types = [
        AllocationType::Unknown,
        AllocationType::Linear,
        AllocationType::NonLinear,
    ];
    let mut allocs: Vec<MemoryAlloc> = types
        .iter()
        .map(|&ty| {
            allocator
                .allocate(
                    requirements(&device, 4096),
                    ty,
                    &AllocationCreateInfo::default(),
                    None,
                )
                .unwrap()
        })
        .collect();
    let place = |a: &MemoryAlloc| (a.memory(), a.offset(), a.size(), a.allocation_type());
    let before: Vec<_> = allocs.iter().map(place).collect();
    for (alloc, ty) in allocs.iter().zip(types) {
        assert_eq!(alloc.allocation_type(), ty);
        assert!(!alloc.is_dedicated() && alloc.name().is_none());
    }
    for (i, alloc) in allocs.iter_mut().enumerate() {
        alloc.set_name(Some(format!("range {i}").into()));
    }
    assert_eq!(allocs.iter().map(place).collect::<Vec<_>>(), before);
    assert_eq!(allocs[2].name(), Some("range 2"));
    let named = allocator.snapshot();
    for (i, alloc) in allocs.iter().enumerate() {
        assert_eq!(
            range_of(&named, alloc).name.as_deref(),
            Some(format!("range {i}").as_str())
        );
    }
    allocs[1].set_name(None);
    assert_eq!(allocs.iter().map(place).collect::<Vec<_>>(), before);
    assert_eq!(allocator.statistics().total.allocation_count, 3);
    // Dropped in both forms: a range with a record (0, 2) and one whose record was taken
    // away (1); then the block holds nothing.
    drop(allocs);
    let stats = allocator.statistics().total;
    assert_eq!(stats.allocation_count, 0);
    assert_eq!(stats.allocations.count, 0);
    assert!(allocator.report_leaks().is_empty());
}
