//! Typed slices: the alignment and length rules, on neighbouring allocations.

use crate::config;
use crate::support::{pattern, Sim};
use crate::GpuLayout;
use ash_memory::*;
use proptest::prelude::*;

/// A plain-old-data type aligned to 16 bytes.
#[derive(Clone, Copy, Debug, PartialEq)]
#[repr(C, align(16))]
struct Aligned16([u32; 4]);
// SAFETY: `repr(C)`, 16 bytes of `u32`s at alignment 16: no padding, every bit pattern valid.
unsafe impl Pod for Aligned16 {}

/// Checks the typed slices of `T` of `alloc`: `Ok` exactly when its mapped address suits
/// `T`'s alignment, as many whole `T`s as fit in `size()`, starting at the mapped address.
fn assert_typed<T: Pod>(alloc: &mut MemoryAlloc, what: &str) {
    let address = alloc.mapped_ptr().unwrap().as_ptr() as usize;
    let align = std::mem::align_of::<T>();
    let len = match std::mem::size_of::<T>() {
        0 => 0,
        n => alloc.size() as usize / n,
    };
    let name = std::any::type_name::<T>();
    match alloc.mapped_slice_of::<T>() {
        Ok(s) => {
            assert_eq!(address % align, 0, "{what}: {name} at {address:#x}");
            assert_eq!(
                (s.as_ptr() as usize, s.len()),
                (address, len),
                "{what}: {name}"
            );
        }
        Err(e) => {
            assert_ne!(address % align, 0, "{what}: {name}: {e}");
            assert_eq!(
                e,
                MemoryAccessError::Misaligned {
                    address,
                    alignment: align
                },
                "{what}"
            );
        }
    }
    let mutable = alloc
        .mapped_slice_of_mut::<T>()
        .map(|s| (s.as_ptr() as usize, s.len()));
    let shared = alloc
        .mapped_slice_of::<T>()
        .map(|s| (s.as_ptr() as usize, s.len()));
    assert_eq!(mutable, shared, "{what}: {name} mutable and shared");
}

proptest! {
    #![proptest_config(config())]

    /// Typed slices of neighbouring allocations of random sizes and alignments: the
    /// alignment and length rules for several types, and writes through a typed mutable
    /// slice change that allocation's bytes only.
    #[test]
    fn typed_slices_follow_the_alignment_and_length_rules(
        requests in prop::collection::vec((1u64..300, 0u32..6, any::<u64>()), 1..40),
    ) {
        let sim = Sim::new(GpuLayout::mobile());
        let device = sim.memory_device();
        let allocator = StandardMemoryAllocator::new_default(device.clone());
        let mut held: Vec<(MemoryAlloc, Vec<u8>)> = Vec::new();
        for (n, &(size, alignment_log2, seed)) in requests.iter().enumerate() {
            let layout = DeviceLayout::from_size_alignment(size, 1 << alignment_log2).unwrap();
            // The coherent host-visible type: placements at any byte.
            let mut alloc = allocator
                .allocate_from_type(0, layout, AllocationType::Linear, &Default::default())
                .unwrap();
            let bytes = pattern(seed, alloc.size() as usize);
            alloc.write(0, &bytes).unwrap();
            held.push((alloc, bytes));
            let what = format!("allocation {n} ({size} bytes at {})", 1 << alignment_log2);
            let (alloc, model) = held.last_mut().unwrap();
            assert_typed::<u8>(alloc, &what);
            assert_typed::<u16>(alloc, &what);
            assert_typed::<u64>(alloc, &what);
            assert_typed::<[u8; 3]>(alloc, &what);
            assert_typed::<Aligned16>(alloc, &what);
            assert_typed::<[u64; 0]>(alloc, &what);
            if let Ok(words) = alloc.mapped_slice_of_mut::<u32>() {
                for (i, w) in words.iter_mut().enumerate() {
                    *w = (seed as u32).wrapping_add(i as u32);
                    model[i * 4..i * 4 + 4].copy_from_slice(&w.to_ne_bytes());
                }
            }
        }
        for (i, (alloc, model)) in held.iter().enumerate() {
            prop_assert!(alloc.mapped_slice().unwrap() == &model[..], "allocation {}", i);
        }
    }
}
