//! Host access across defragmentation moves on simulated non-coherent memory: every byte of
//! an allocation's `size()` (its atom padding included) is where it was after its move, and
//! host access through the moved allocation flushes and invalidates its new place.

use crate::support::defrag::copy_and_complete;
use crate::support::{pattern, Sim, KIB};
use crate::{mobile, request, NON_COHERENT};
use ash_memory::*;

/// Allocations of odd sizes filled over their whole `size()`, half of them freed, the rest
/// moved by host copies; after each pass every survivor holds its bytes (read after an
/// invalidate, which would bring back what a missing flush left behind), and writes
/// through the moved allocations reach its new memory.
fn moves_keep_every_byte<S: Suballocator + Send + Sync + 'static>(margin: u64) {
    let atom = 256;
    let sim = Sim::new(mobile(atom));
    let device = sim.memory_device();
    let allocator = StandardMemoryAllocator::new(
        device.clone(),
        GenericMemoryAllocatorCreateInfo {
            debug: DebugOptions {
                margin,
                ..Default::default()
            },
            ..Default::default()
        },
    )
    .unwrap();
    let pool = allocator
        .create_pool::<S>(&PoolCreateInfo {
            memory_type: PoolMemoryType::Index(NON_COHERENT),
            block_size: 64 * KIB,
            max_block_count: 8,
            ..Default::default()
        })
        .unwrap();
    let mut live: Vec<(MemoryAlloc, Vec<u8>)> = Vec::new();
    for i in 0..60u64 {
        let size = 100 + i * 37 % 3000;
        let mut a = pool
            .allocate(
                request(&device, size, 16),
                AllocationType::Linear,
                &Default::default(),
                None,
            )
            .unwrap();
        let bytes = pattern(i, a.size() as usize);
        a.write(0, &bytes).unwrap();
        live.push((a, bytes));
    }
    let mut i = 0;
    live.retain(|_| {
        i += 1;
        i % 2 == 0
    });
    let blocks_before = pool.block_count();
    let mut defrag = pool.defragmentation(&DefragmentationInfo {
        algorithm: DefragmentationAlgorithm::Full,
        max_moves_per_pass: 7,
        ..Default::default()
    });
    let ids: Vec<usize> = live
        .iter_mut()
        .map(|(a, _)| defrag.add(a, DeviceAlignment::new(16).unwrap()).unwrap())
        .collect();
    let mut moves = 0;
    while let Some(mut pass) = defrag.next_pass() {
        let open: Vec<(usize, usize)> = pass.moves().map(|m| (m.index(), m.id())).collect();
        for (index, id) in open {
            let k = ids.iter().position(|&x| x == id).unwrap();
            let m = pass.get(index).unwrap();
            let source = &mut live[k].0;
            assert_eq!(
                m.size(),
                source.size(),
                "a move copies the whole allocation"
            );
            assert_eq!(m.destination().size(), source.size(), "the same size");
            copy_and_complete(&mut pass, index, source).unwrap();
            moves += 1;
        }
        pass.end();
        for (k, (a, bytes)) in live.iter_mut().enumerate() {
            a.invalidate(0, a.size()).unwrap();
            assert!(
                a.mapped_slice().unwrap() == &bytes[..],
                "allocation {k} lost bytes in its move"
            );
            // Its last byte, through the new place.
            let last = a.size() - 1;
            bytes[last as usize] ^= 0xFF;
            a.write(last, &bytes[last as usize..]).unwrap();
        }
    }
    defrag.finish();
    assert!(moves > 0, "nothing moved");
    assert!(pool.block_count() < blocks_before, "no block was emptied");
    for (k, (a, bytes)) in live.iter().enumerate() {
        a.invalidate(0, a.size()).unwrap();
        assert!(
            a.mapped_slice().unwrap() == &bytes[..],
            "allocation {k} at the end"
        );
    }
    assert!(
        sim.state.violations().is_empty(),
        "{:?}",
        sim.state.violations()
    );
}

#[test]
fn free_list_moves_keep_every_byte() {
    moves_keep_every_byte::<FreeListAllocator>(0);
    moves_keep_every_byte::<FreeListAllocator>(20);
}

#[test]
fn buddy_moves_keep_every_byte() {
    moves_keep_every_byte::<BuddyAllocator>(0);
    moves_keep_every_byte::<BuddyAllocator>(20);
}

#[test]
fn bump_and_ring_moves_keep_every_byte() {
    moves_keep_every_byte::<BumpAllocator>(0);
    moves_keep_every_byte::<RingAllocator>(20);
}
