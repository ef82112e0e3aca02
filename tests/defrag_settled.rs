//! Sources that [`Full`]'s gathering passes over (see the planner's `settle` module): a block
//! none of whose allocations found room in the last plan is not tried again while no block
//! it may gather into gains room. Room the application frees between passes in such a block
//! must count: the next pass tries the source again and moves what fits now.
//!
//! [`Full`]: ash_memory::DefragmentationAlgorithm::Full

mod common;
mod support;

use ash_memory::*;
use support::{patterned_upload, verify, GpuLayout, Sim, KIB, MIB};

/// The blocks of the test, each 1 MiB:
/// - `b`: 16 KiB, a 96 KiB hole, 64 KiB (`c`, freed by the application between the passes),
///   848 KiB: no 64 KiB range aligned to 64 KiB is free in it until `c` is freed;
/// - `e`: 864 KiB, then a 160 KiB hole;
/// - `a`: `x` (64 KiB, aligned to 64 KiB, may move) and 8 KiB that may not (not added);
/// - `d`: `y` (128 KiB, may move).
///
/// Full's first pass empties `d` into `e` (the only block with room for `y`), and its
/// gathering tries `a`: `x` fits no block holding more (`e` keeps 32 KiB, `b` has no aligned
/// range), so `a` is passed over in the next plan unless a block it may gather into gained
/// room. Returns whether the second pass moved `x`.
fn second_pass_moves_x(free_c_between_passes: bool) -> bool {
    let sim = Sim::new(GpuLayout::amd_discrete_bar());
    let device = sim.memory_device();
    let allocator = StandardMemoryAllocator::new_default(device.clone());
    // Blocks of 1 MiB, each one arena: the places below are the free list's first fits.
    let pool = allocator
        .create_pool::<FreeListAllocator>(&PoolCreateInfo {
            memory_type: PoolMemoryType::Find {
                memory_type_bits: u32::MAX,
                usage: MemoryUsage::Upload,
            },
            block_size: MIB,
            block_arenas: Some(1),
            ..Default::default()
        })
        .unwrap();
    let up = |size: u64, align: u64, seed: u64| patterned_upload(&pool, &device, size, align, seed);
    let b1 = up(16 * KIB, 256, 1);
    let h = up(96 * KIB, 256, 2);
    let c = up(64 * KIB, 256, 3);
    let b2 = up(848 * KIB, 256, 4);
    let e0 = up(16 * KIB, 256, 5);
    let e1 = up(848 * KIB, 256, 6);
    let te = up(160 * KIB, 256, 7);
    let mut x = up(64 * KIB, 64 * KIB, 8);
    let u = up(8 * KIB, 256, 9);
    let ta = up(952 * KIB, 256, 10);
    let mut y = up(128 * KIB, 256, 11);

    // The setup is what the test means: each in its block, in order.
    let place = |a: &MemoryAlloc| (a.memory(), a.offset());
    let b = b1.memory();
    assert_eq!(
        [place(&b1), place(&h), place(&c), place(&b2)],
        [(b, 0), (b, 16 * KIB), (b, 112 * KIB), (b, 176 * KIB)],
        "block b"
    );
    let e = e0.memory();
    assert_eq!(
        [place(&e0), place(&e1), place(&te)],
        [(e, 0), (e, 16 * KIB), (e, 864 * KIB)],
        "block e"
    );
    let a = x.memory();
    assert_eq!(
        [place(&x), place(&u), place(&ta)],
        [(a, 0), (a, 64 * KIB), (a, 72 * KIB)],
        "block a"
    );
    let d = y.memory();
    assert!(![b, e, a].contains(&d), "y in a block of its own");
    drop((h, te, ta));

    let mut defrag = pool.defragmentation(&DefragmentationInfo {
        algorithm: DefragmentationAlgorithm::Full,
        ..Default::default()
    });
    let x_id = defrag
        .add(&mut x, DeviceAlignment::new(64 * KIB).unwrap())
        .unwrap();
    let y_id = defrag
        .add(&mut y, DeviceAlignment::new(256).unwrap())
        .unwrap();

    // The first pass: `y` into `e`, and nothing else.
    let mut pass = defrag.next_pass().expect("a first pass");
    let moves: Vec<(usize, usize, ash::vk::DeviceMemory)> = pass
        .moves()
        .map(|m| (m.index(), m.id(), m.destination().memory()))
        .collect();
    assert_eq!(
        moves.iter().map(|m| (m.1, m.2)).collect::<Vec<_>>(),
        [(y_id, e)],
        "the first pass empties d into e"
    );
    copy(&pass, moves[0].0, &y);
    pass.complete(moves[0].0, &mut y).unwrap();
    pass.end();

    // The application frees `c`: `b` now has a free range aligned for `x`.
    let mut c = Some(c);
    if free_c_between_passes {
        c = None;
    }
    let mut moved = false;
    while let Some(mut pass) = defrag.next_pass() {
        let open: Vec<(usize, usize)> = pass.moves().map(|m| (m.index(), m.id())).collect();
        for (i, id) in open {
            assert_eq!(id, x_id, "only x may move now");
            assert_eq!(pass.get(i).unwrap().destination().memory(), b);
            copy(&pass, i, &x);
            pass.complete(i, &mut x).unwrap();
            moved = true;
        }
        pass.end();
    }
    drop(defrag);
    verify(&x, 8, 64 * KIB, "x");
    verify(&y, 11, 128 * KIB, "y");
    drop((b1, b2, c, e0, e1, x, u, y));
    drop((pool, allocator));
    sim.assert_nothing_allocated();
    moved
}

/// Copies the bytes of move `index`'s source `from` to its destination (host-visible).
fn copy<S: Suballocator + Send + 'static>(
    pass: &DefragmentationPass<'_, S>,
    index: usize,
    from: &MemoryAlloc,
) {
    let m = pass.get(index).unwrap();
    let mut bytes = vec![0; m.size() as usize];
    from.read(0, &mut bytes).unwrap();
    let dst = m.destination();
    let ptr = dst.mapped_ptr().unwrap();
    // SAFETY: `size` bytes inside the destination, which is new and owned by the pass until
    // completed: nothing else uses it.
    unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), ptr.as_ptr(), bytes.len()) };
    dst.flush(0, m.size()).unwrap();
}

#[test]
fn a_source_passed_over_is_tried_again_once_the_application_frees_room_where_it_may_go() {
    assert!(
        second_pass_moves_x(true),
        "x stayed in a although b has room for it since the application freed c"
    );
}

#[test]
fn a_source_with_nowhere_to_go_stays_where_it_is() {
    assert!(!second_pass_moves_x(false), "x moved with no room for it");
}
