//! Unit tests of the module.

use super::*;
use proptest::prelude::*;

fn target(offset: DeviceSize, size: DeviceSize) -> AliasTarget {
    AliasTarget {
        offset,
        size,
        memory_type_index: 2,
        whole_object: false,
        allocation_type: AllocationType::Unknown,
        granularity: 1024,
        dedicated_to_resource: None,
    }
}

fn resource(size: DeviceSize, alignment: DeviceSize) -> AliasResource {
    AliasResource {
        requirements: vk::MemoryRequirements {
            size,
            alignment,
            memory_type_bits: 0b100,
        },
        requires_dedicated: false,
        is_image: false,
    }
}

#[test]
fn each_rule_has_its_error() {
    let t = target(256, 4096);
    assert_eq!(check_alias_bind(t, resource(4096, 256), 0), Ok(256));
    assert_eq!(check_alias_bind(t, resource(1024, 256), 3072), Ok(3328));
    assert_eq!(
        check_alias_bind(t, resource(1024, 256), 3073),
        Err(MemoryAccessError::ResourceOutOfBounds {
            local_offset: 3073,
            required: 1024,
            size: 4096
        })
    );
    assert_eq!(
        check_alias_bind(t, resource(1, 1), u64::MAX),
        Err(MemoryAccessError::ResourceOutOfBounds {
            local_offset: u64::MAX,
            required: 1,
            size: 4096
        })
    );
    assert_eq!(
        check_alias_bind(t, resource(64, 512), 0),
        Err(MemoryAccessError::MisalignedBind {
            offset: 256,
            alignment: 512
        })
    );
    let mut r = resource(64, 1);
    r.requirements.memory_type_bits = 0b011;
    assert_eq!(
        check_alias_bind(t, r, 0),
        Err(MemoryAccessError::IncompatibleMemoryType {
            memory_type_index: 2,
            memory_type_bits: 0b011
        })
    );
    let mut r = resource(64, 1);
    r.requires_dedicated = true;
    assert_eq!(
        check_alias_bind(t, r, 0),
        Err(MemoryAccessError::RequiresDedicatedAllocation)
    );
    let dedicated = |to: bool| AliasTarget {
        offset: 0,
        whole_object: true,
        dedicated_to_resource: Some(to),
        ..t
    };
    assert_eq!(check_alias_bind(dedicated(true), r, 0), Ok(0));
    assert_eq!(
        check_alias_bind(dedicated(true), r, 64),
        Err(MemoryAccessError::DedicatedToAnotherResource)
    );
    assert_eq!(
        check_alias_bind(dedicated(false), resource(64, 1), 0),
        Err(MemoryAccessError::DedicatedToAnotherResource)
    );
}

#[test]
fn kinds_must_match_the_allocation_in_a_shared_block() {
    let image = AliasResource {
        is_image: true,
        ..resource(64, 1)
    };
    let buffer = resource(64, 1);
    for (ty, image_ok, buffer_ok) in [
        (AllocationType::Unknown, true, true),
        (AllocationType::Linear, false, true),
        (AllocationType::NonLinear, true, false),
    ] {
        let t = AliasTarget {
            allocation_type: ty,
            ..target(0, 4096)
        };
        assert_eq!(check_alias_bind(t, image, 0).is_ok(), image_ok, "{ty:?}");
        assert_eq!(check_alias_bind(t, buffer, 0).is_ok(), buffer_ok, "{ty:?}");
        if !image_ok {
            assert_eq!(
                check_alias_bind(t, image, 0),
                Err(MemoryAccessError::GranularityConflict {
                    allocation_type: ty
                })
            );
        }
        // A memory object of its own has no neighbours; a granularity of 1 no pages.
        let alone = AliasTarget {
            whole_object: true,
            ..t
        };
        let fine = AliasTarget {
            granularity: 1,
            ..t
        };
        for t in [alone, fine] {
            assert!(check_alias_bind(t, image, 0).is_ok());
            assert!(check_alias_bind(t, buffer, 0).is_ok());
        }
    }
}

proptest! {
    /// An accepted bind lies inside the allocation, is aligned, and names an allowed type.
    #[test]
    fn accepted_binds_are_in_bounds_and_aligned(
        offset in 0u64..1 << 20,
        size in 1u64..1 << 20,
        req_size in 1u64..1 << 20,
        align_log in 0u32..12,
        local in 0u64..1 << 21,
        type_index in 0u32..34,
        bits in any::<u32>(),
    ) {
        let t = AliasTarget { memory_type_index: type_index, ..target(offset, size) };
        let r = AliasResource {
            requirements: vk::MemoryRequirements {
                size: req_size,
                alignment: 1 << align_log,
                memory_type_bits: bits,
            },
            requires_dedicated: false,
            is_image: false,
        };
        if let Ok(at) = check_alias_bind(t, r, local) {
            prop_assert_eq!(at, offset + local);
            prop_assert!(local + req_size <= size);
            prop_assert_eq!(at % (1 << align_log), 0);
            prop_assert!(type_index < 32 && bits & (1 << type_index) != 0);
        } else {
            let fits = local + req_size <= size
                && (offset + local) % (1 << align_log) == 0
                && type_index < 32
                && bits & (1 << type_index) != 0;
            prop_assert!(!fits);
        }
    }
}
