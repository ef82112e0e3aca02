//! Unit tests of the module.

use super::*;

fn a(v: u64) -> DeviceAlignment {
    DeviceAlignment::new(v).unwrap()
}

#[test]
fn alignment_accepts_only_powers_of_two() {
    assert_eq!(DeviceAlignment::new(0), None);
    assert_eq!(DeviceAlignment::new(3), None);
    assert_eq!(DeviceAlignment::new(u64::MAX), None);
    assert_eq!(a(1), DeviceAlignment::MIN);
    assert_eq!(a(1 << 63), DeviceAlignment::MAX);
    assert_eq!(a(4096).log2(), 12);
    assert_eq!(
        DeviceAlignment::try_new(12),
        Err(LayoutError::AlignmentNotPowerOfTwo(12))
    );
    assert_eq!(DeviceAlignment::from_log2(64), None);
    assert_eq!(DeviceAlignment::of_offset(96), Some(a(32)));
    assert_eq!(DeviceAlignment::of_offset(0), None);
}

#[test]
fn rounding() {
    assert_eq!(align_up(0, a(256)), Some(0));
    assert_eq!(align_up(1, a(256)), Some(256));
    assert_eq!(align_up(256, a(256)), Some(256));
    assert_eq!(align_up(u64::MAX, a(2)), None);
    assert_eq!(align_up(u64::MAX, a(1)), Some(u64::MAX));
    assert_eq!(align_down(511, a(256)), 256);
    assert_eq!(padding_needed(5, a(8)), 3);
    assert_eq!(padding_needed(8, a(8)), 0);
    assert!(a(64).is_aligned(128));
    assert!(!a(64).is_aligned(96));
}

#[test]
fn layout_rejects_bad_input() {
    assert_eq!(DeviceLayout::new(0, a(1)), Err(LayoutError::ZeroSize));
    assert_eq!(
        DeviceLayout::from_size_alignment(16, 24),
        Err(LayoutError::AlignmentNotPowerOfTwo(24))
    );
    assert!(matches!(
        DeviceLayout::new(DeviceLayout::MAX_SIZE + 1, a(1)),
        Err(LayoutError::SizeTooLarge { .. })
    ));
    // Fits unpadded, but not once padded to its alignment.
    assert!(matches!(
        DeviceLayout::new(DeviceLayout::MAX_SIZE, a(2)),
        Err(LayoutError::SizeTooLarge { .. })
    ));
    assert!(DeviceLayout::new(DeviceLayout::MAX_SIZE, a(1)).is_ok());
    let msg = DeviceLayout::from_size_alignment(16, 24)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("24") && msg.contains("power of two"), "{msg}");
}

#[test]
fn layout_arithmetic() {
    let l = DeviceLayout::new(10, a(8)).unwrap();
    assert_eq!(l.pad_to_alignment().size(), 16);
    assert_eq!(l.padding_needed_for(9), 7);
    assert_eq!(l.align_to(a(64)).unwrap().alignment(), a(64));
    let next = DeviceLayout::new(4, a(32)).unwrap();
    let (combined, off) = l.extend(next).unwrap();
    assert_eq!(off, 32);
    assert_eq!(combined.size(), 36);
    assert_eq!(combined.alignment(), a(32));
    let (arr, stride) = l.repeat(NonZeroU64::new(3).unwrap()).unwrap();
    assert_eq!(stride, 16);
    assert_eq!(arr.size(), 48);
    let huge = DeviceLayout::new(1 << 62, a(1)).unwrap();
    assert!(huge.repeat(NonZeroU64::new(4).unwrap()).is_err());
    assert!(huge.extend(huge).is_err());
}

#[test]
fn conversions_and_debug() {
    assert_eq!(DeviceAlignment::try_from(64), Ok(a(64)));
    assert_eq!(
        DeviceAlignment::try_from(48),
        Err(LayoutError::AlignmentNotPowerOfTwo(48))
    );
    assert_eq!(DeviceSize::from(a(4096)), 4096);
    assert_eq!(format!("{:?}", a(256)), "256 (1 << 8)");
}

/// `atom_range` against the definition, byte by byte: the smallest run of whole atoms
/// that covers every byte of the range inside the object, clamped to the object.
#[test]
fn atoms_inside_matches_its_definition() {
    for atom in [1u64, 4, 16, 64] {
        for object_size in 1..=100u64 {
            for offset in 0..=object_size + 2 {
                for size in [0, 1, 2, 5, 16, 63, 64, 65, 200, u64::MAX - offset] {
                    let (start, end) = atoms_inside(offset, size, a(atom), object_size);
                    // Brute force: the bytes of the range inside the object whose whole
                    // atom (clamped to the object) lies inside the range.
                    let last = offset.saturating_add(size).min(object_size);
                    let inside: Vec<u64> = (offset..last)
                        .filter(|&b| {
                            let first = b / atom * atom;
                            let end = (first + atom).min(object_size);
                            offset <= first && end <= last
                        })
                        .collect();
                    let got: Vec<u64> = (start..end).collect();
                    assert_eq!(
                        got, inside,
                        "offset {offset} size {size} atom {atom} object {object_size}"
                    );
                    assert!(start <= end && end <= object_size);
                    assert!(start == end || start % atom == 0);
                    assert!(start == end || end % atom == 0 || end == object_size);
                }
            }
        }
    }
}

#[test]
fn atom_range_matches_its_definition() {
    for atom in [1u64, 4, 16, 64] {
        for object_size in 1..=100u64 {
            for offset in 0..=object_size + 20 {
                for size in [0, 1, 2, 5, 16, 63, 64, 65, 200, u64::MAX - offset] {
                    let (start, end) = atom_range(offset, size, a(atom), object_size);
                    let last = offset.saturating_add(size).min(object_size);
                    let (want_start, want_end) = if offset >= last {
                        // Nothing of the range is inside the object (or it is empty): an
                        // empty result, no further than the object's end.
                        let end = (last.div_ceil(atom) * atom).min(object_size);
                        ((offset / atom * atom).min(end), end)
                    } else {
                        let first_atom = offset / atom;
                        let end_atom = (last - 1) / atom + 1;
                        (first_atom * atom, (end_atom * atom).min(object_size))
                    };
                    assert_eq!(
                        (start, end),
                        (want_start, want_end),
                        "offset {offset} size {size} atom {atom} object {object_size}"
                    );
                    assert!(start <= end && end <= object_size);
                    assert!(start % atom == 0 || start == end);
                    assert!(end % atom == 0 || end == object_size);
                }
            }
        }
    }
}
