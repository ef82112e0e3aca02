//! Margins on every allocation path and pool suballocator: sizes, odd and huge margins,
//! alignments too large for margins, slots too small for them, renamed allocations.

use super::*;

/// Every allocation path, with its margins probed.
fn every_path(sim: &Sim, ty: u32, margin: u64) {
    let device = sim.memory_device();
    let allocator = allocator(&device, margin, true);
    let what = |path: &str| {
        format!(
            "{} type {ty}, margin {margin}, {path}",
            sim.state.layout.name
        )
    };
    let mut live: Vec<(MemoryAlloc, u64, u64, u64)> = Vec::new();
    let mut seed = 0;
    for (size, alignment) in SHAPES {
        seed += 1;
        let r = reqs(ty, size, alignment);
        let mut made = vec![
            (
                "allocate",
                allocator
                    .allocate(r, AllocationType::Linear, &info("allocate"), None)
                    .unwrap(),
            ),
            (
                "allocate_desc",
                allocator
                    .allocate_desc(&AllocationDesc {
                        create_info: info("desc"),
                        allocation_type: AllocationType::NonLinear,
                        ..AllocationDesc::new(r)
                    })
                    .unwrap(),
            ),
            (
                "allocate_from_type",
                allocator
                    .allocate_from_type(ty, r.layout, AllocationType::Linear, &info("typed"))
                    .unwrap(),
            ),
        ];
        for page in allocator
            .allocate_pages(r, AllocationType::Linear, &info("page"), 3)
            .unwrap()
        {
            made.push(("allocate_pages", page));
        }
        for (path, mut a) in made {
            probe(
                &allocator,
                &mut a,
                (size, alignment, seed),
                true,
                &what(path),
            );
            live.push((a, alignment, size, seed));
        }
    }
    assert_margins_apart(&live, margin, &what("all paths"));
    let triples: Vec<_> = live.iter().map(|(a, al, ..)| (a, *al)).collect();
    check_triples(
        &triples,
        &sim.state,
        sim.state.layout.buffer_image_granularity,
    );
    for (a, _, size, seed) in &live {
        verify(a, *seed, *size, &what("after all probes"));
    }
    let report = allocator.check_corruption(u32::MAX).unwrap();
    assert_eq!(report.checked_allocations, live.len() as u64);
    drop(live);
    drop(allocator);
}

fn pool_paths<S: Suballocator + Send + 'static>(sim: &Sim, ty: u32, margin: u64, name: &str) {
    let device = sim.memory_device();
    let allocator = allocator(&device, margin, true);
    let pool = allocator
        .create_pool::<S>(&PoolCreateInfo {
            name: Some(name.into()),
            memory_type: PoolMemoryType::Index(ty),
            block_size: MIB,
            block_arenas: Some(1),
            ..Default::default()
        })
        .unwrap();
    let what = |s: &str| {
        format!(
            "{} pool {name}, margin {margin}, {s}",
            sim.state.layout.name
        )
    };
    let mut live: Vec<(MemoryAlloc, u64, u64, u64)> = Vec::new();
    for (i, (size, alignment)) in SHAPES.into_iter().enumerate() {
        let seed = 100 + i as u64;
        let mut a = pool
            .allocate(
                reqs(ty, size, alignment),
                AllocationType::Linear,
                &info(name),
                None,
            )
            .unwrap();
        probe(
            &allocator,
            &mut a,
            (size, alignment, seed),
            true,
            &what("allocate"),
        );
        let d = {
            // SAFETY: the byte before `a` is its front margin.
            unsafe { poke(&a, a.offset() - 1, 0x5A) };
            let d = damaged(pool.check_corruption());
            // SAFETY: as above, restored.
            unsafe { poke(&a, a.offset() - 1, MARGIN_MAGIC.to_le_bytes()[3]) };
            d
        };
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].pool.as_deref(), Some(name), "{}", what("pool named"));
        live.push((a, alignment, size, seed));
    }
    assert_margins_apart(&live, margin, &what("pool"));
    for (a, _, size, seed) in &live {
        verify(a, *seed, *size, &what("after all probes"));
    }
    assert!(pool.check_corruption().is_ok());
    drop(live);
    drop(pool);
    drop(allocator);
}

/// Margins of several sizes (odd multiples of 4, larger than the alignment, larger than an
/// atom) on every path, in coherent memory (NVIDIA-like type 1) and non-coherent memory with
/// a 128-byte atom (the mobile layout's type 1).
#[test]
fn margins_on_every_path_keep_the_range_and_catch_one_byte_either_side() {
    for (layout, ty) in [(GpuLayout::nvidia_discrete(), 1), (GpuLayout::mobile(), 1)] {
        let sim = Sim::new(layout);
        for margin in [4, 12, 36, 260, 4100] {
            every_path(&sim, ty, margin);
            pool_paths::<FreeListAllocator>(&sim, ty, margin, "free list");
            pool_paths::<BuddyAllocator>(&sim, ty, margin, "buddy");
            pool_paths::<SlotAllocator<{ 32 * 1024 }>>(&sim, ty, margin, "slot");
            pool_paths::<BumpAllocator>(&sim, ty, margin, "bump");
            pool_paths::<RingAllocator>(&sim, ty, margin, "ring");
        }
        sim.assert_nothing_allocated();
    }
}

/// Margins that make a request not fit a block: a pool request whose margins exactly fill a
/// block is suballocated with both margins intact; one byte more, and it is refused or made
/// dedicated (no margins), never truncated and never a panic; the allocator's own blocks
/// move such a request to a dedicated allocation of the size asked.
#[test]
fn huge_margins_never_shrink_a_request() {
    let sim = Sim::new(GpuLayout::nvidia_discrete());
    let device = sim.memory_device();
    let margin = 256 * KIB;
    let allocator = allocator(&device, margin, true);
    let pool = allocator
        .create_pool::<FreeListAllocator>(&PoolCreateInfo {
            memory_type: PoolMemoryType::Index(1),
            block_size: MIB,
            block_arenas: Some(1),
            ..Default::default()
        })
        .unwrap();
    // 256 KiB + 512 KiB + 256 KiB: exactly one block.
    let mut exact = pool
        .allocate(
            reqs(1, 512 * KIB, 1),
            AllocationType::Linear,
            &info("exact"),
            None,
        )
        .unwrap();
    probe(
        &allocator,
        &mut exact,
        (512 * KIB, 1, 7),
        true,
        "exactly one block",
    );
    assert_eq!(exact.offset(), margin);
    for size in [512 * KIB + 1, MIB - 4, MIB] {
        match pool.allocate(
            reqs(1, size, 1),
            AllocationType::Linear,
            &info("over"),
            None,
        ) {
            Ok(mut a) => {
                assert_eq!(a.size(), size, "never shrunk");
                assert!(a.is_dedicated(), "{size} bytes and margins are no block's");
                fill(&mut a, 8, size);
                verify(&a, 8, size, "over");
            }
            Err(e) => {
                let text = e.to_string();
                assert!(!text.is_empty());
            }
        }
    }
    for size in [512 * KIB + 4, 3 * MIB + 512 * KIB, 4 * MIB] {
        let mut a = allocator
            .allocate(reqs(1, size, 4), AllocationType::Linear, &info("big"), None)
            .unwrap();
        assert_eq!(a.size(), size, "never shrunk");
        fill(&mut a, size, size);
        verify(&a, size, size, "big");
        if !a.is_dedicated() {
            probe(&allocator, &mut a, (size, 4, 9), false, "big in a block");
        }
    }
    // The largest margin with the largest alignment: front margin of the alignment.
    let mut a = allocator
        .allocate(
            reqs(1, 4, 64 * KIB),
            AllocationType::Linear,
            &info("aligned"),
            None,
        )
        .unwrap();
    probe(&allocator, &mut a, (4, 64 * KIB, 10), true, "aligned");
    drop((a, exact, pool, allocator));
    sim.assert_nothing_allocated();
}

/// Alignments so large that the margins cannot be laid out around the request in any block
/// (or at all: 2^62 overflows the largest layout): the allocation is never made in a block
/// without its margins (where damage around it would go unseen); it is dedicated (no
/// margins, as documented), as a request larger than a block is, whatever the alignment.
#[test]
fn alignments_too_large_for_margins_never_lose_them_silently() {
    let sim = Sim::new(GpuLayout::nvidia_discrete());
    let device = sim.memory_device();
    let allocator = allocator(&device, 16, false);
    for shift in [20u32, 32, 48, 61, 62] {
        let alignment = 1u64 << shift;
        let mut a = allocator
            .allocate(
                reqs(1, 100, alignment),
                AllocationType::Linear,
                &info("aligned far"),
                None,
            )
            .unwrap_or_else(|e| panic!("2^{shift}: {e}"));
        assert_eq!(a.offset() % alignment, 0);
        assert_eq!(a.size(), 100);
        if a.is_dedicated() {
            assert!(shift > 20, "2^{shift} fits a block with its margins");
            fill(&mut a, 5, 100);
            verify(&a, 5, 100, "dedicated");
        } else {
            probe(
                &allocator,
                &mut a,
                (100, alignment, 5),
                false,
                &format!("2^{shift}"),
            );
        }
    }
    drop(allocator);
    sim.assert_nothing_allocated();
}

/// A request that fits its heap but not with its margins (the AMD layout's 256 MiB BAR heap,
/// 1 MiB margins): served as a dedicated allocation of exactly its size, as a request larger
/// than a block is, not refused as larger than the heap; refused with `BlockSizeExceeded`
/// (naming the size with margins) where a request larger than a block is refused
/// (`NeverAllocate`, a custom pool without a dedicated preference); a request larger than
/// the heap itself is still refused as such.
#[test]
fn margins_that_exceed_the_heap_leave_a_request_that_fits_it_served() {
    let sim = Sim::new(GpuLayout::amd_discrete_bar());
    let device = sim.memory_device();
    let allocator = allocator(&device, MAX_DEBUG_MARGIN, false);
    let bar = 2;
    let size = 256 * MIB - 64 * KIB;
    let layout = DeviceLayout::from_size_alignment(size, 256).unwrap();
    let mut a = allocator
        .allocate_from_type(bar, layout, AllocationType::Linear, &info("bar"))
        .unwrap();
    assert!(a.is_dedicated());
    assert_eq!((a.size(), a.memory_type_index()), (size, bar));
    a.write(size - 4, &[1, 2, 3, 4]).unwrap();
    drop(a);
    let never = AllocationCreateInfo {
        allocate_preference: MemoryAllocatePreference::NeverAllocate,
        ..info("never")
    };
    let e = allocator
        .allocate_from_type(bar, layout, AllocationType::Linear, &never)
        .unwrap_err();
    assert!(
        matches!(e, AllocationError::BlockSizeExceeded { size: s, .. } if s >= size + 2 * MIB),
        "{e}"
    );
    let pool = allocator
        .create_pool::<FreeListAllocator>(&PoolCreateInfo {
            memory_type: PoolMemoryType::Index(bar),
            block_size: 64 * MIB,
            ..Default::default()
        })
        .unwrap();
    let r = reqs(bar, size, 256);
    let e = pool
        .allocate(r, AllocationType::Linear, &info("pooled"), None)
        .unwrap_err();
    assert!(
        matches!(e, AllocationError::BlockSizeExceeded { .. }),
        "{e}"
    );
    let always = AllocationCreateInfo {
        allocate_preference: MemoryAllocatePreference::AlwaysAllocate,
        ..info("always")
    };
    let a = pool
        .allocate(r, AllocationType::Linear, &always, None)
        .unwrap();
    assert!(a.is_dedicated() && a.size() == size);
    drop(a);
    let e = allocator
        .allocate_from_type(
            bar,
            DeviceLayout::from_size_alignment(256 * MIB + 4, 4).unwrap(),
            AllocationType::Linear,
            &info("too large"),
        )
        .unwrap_err();
    assert!(matches!(e, AllocationError::SizeExceedsHeap { .. }), "{e}");
    drop((pool, allocator));
    sim.assert_nothing_allocated();
}

/// Margins that push a request past a pool slot: a `SlotAllocator<256>` pool serves a
/// 200-byte request with 36-byte margins (272 bytes held) without shrinking it (dedicated, or
/// a clear error), and a request that fits with its margins keeps them. Renaming an
/// allocation (or giving it user data) keeps its margins checked under the new name.
#[test]
fn slots_too_small_for_margins_and_renamed_allocations() {
    let sim = Sim::new(GpuLayout::nvidia_discrete());
    let device = sim.memory_device();
    let allocator = allocator(&device, 36, true);
    let pool = allocator
        .create_pool::<SlotAllocator<256>>(&PoolCreateInfo {
            memory_type: PoolMemoryType::Index(1),
            block_size: 64 * KIB,
            block_arenas: Some(1),
            ..Default::default()
        })
        .unwrap();
    let mut fits = pool
        .allocate(reqs(1, 184, 4), AllocationType::Linear, &info("fits"), None)
        .unwrap();
    probe(
        &allocator,
        &mut fits,
        (184, 4, 1),
        true,
        "184 + 2 x 36 in a 256-byte slot",
    );
    match pool.allocate(reqs(1, 200, 4), AllocationType::Linear, &info("over"), None) {
        Ok(mut a) => {
            assert_eq!(a.size(), 200);
            assert!(a.is_dedicated(), "272 bytes are no 256-byte slot's");
            fill(&mut a, 2, 200);
            verify(&a, 2, 200, "over");
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
    fits.set_name(Some("renamed".into()));
    fits.set_user_data(Some(std::sync::Arc::new(7u32)));
    // SAFETY: the byte after `fits` is its back margin.
    unsafe { poke(&fits, fits.offset() + 184, 0) };
    let d = damaged(allocator.check_corruption(u32::MAX));
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].name.as_deref(), Some("renamed"));
    // SAFETY: as above, restored.
    unsafe { poke(&fits, fits.offset() + 184, MARGIN_MAGIC.to_le_bytes()[0]) };
    probe(&allocator, &mut fits, (184, 4, 3), false, "renamed");
    drop((fits, pool, allocator));
    sim.assert_nothing_allocated();
}
