//! On lavapipe's own memory and device writes: GPU fills and overruns, non-coherent device
//! writes found at free, failed binds and pages, aliasing binds at offsets.

use super::*;

/// Buffers and images made by `create_buffer`/`create_image` with margins, on the real
/// driver (lavapipe's own memory types) under the validation layer: the binds are valid
/// (the allocation is aligned as the driver requires), a GPU fill of each whole buffer damages
/// no margin, and a GPU write through a buffer aliasing one byte-word of a back margin (a
/// device overrun) is reported at its offset.
#[test]
fn gpu_writes_fill_buffers_without_damage_and_a_device_overrun_is_found() {
    use ash::vk;
    let ctx = common::TestContext::new();
    let device = ctx.memory_device();
    let d = &ctx.device;
    let margin = 4100;
    let allocator = allocator(&device, margin, true);
    let usage = vk::BufferUsageFlags::TRANSFER_DST | vk::BufferUsageFlags::TRANSFER_SRC;
    let upload = info("gpu");
    let mut buffers = Vec::new();
    let mut images = Vec::new();
    for (i, size) in [4u64, 100, 1028, 65540, 4096].into_iter().enumerate() {
        // SAFETY: a valid buffer create info.
        let (buffer, alloc) =
            unsafe { allocator.create_buffer(&common::buffer_info(size, usage), &upload) }.unwrap();
        assert_eq!(alloc.size(), size);
        buffers.push((buffer, alloc, size, 0x0101_0101u32 * (i as u32 + 1)));
        let tiling = if i % 2 == 0 {
            vk::ImageTiling::OPTIMAL
        } else {
            vk::ImageTiling::LINEAR
        };
        let image_info = common::image_info(16 << i, vk::Format::R8G8B8A8_UNORM, tiling);
        let create = AllocationCreateInfo {
            usage: MemoryUsage::DeviceOnly,
            ..info("image")
        };
        // SAFETY: a valid image create info.
        let (image, alloc) = unsafe { allocator.create_image(&image_info, &create) }.unwrap();
        images.push((image, alloc));
    }
    ctx.submit(|d, cmd| {
        for (buffer, _, _, word) in &buffers {
            // SAFETY: the buffer is alive and bound, made with TRANSFER_DST.
            unsafe { d.cmd_fill_buffer(cmd, *buffer, 0, vk::WHOLE_SIZE, *word) };
        }
        common::TestContext::transfer_barrier(d, cmd);
    });
    for (_, alloc, size, word) in &buffers {
        let mut back = vec![0u8; *size as usize];
        alloc.invalidate(0, *size).unwrap();
        alloc.read(0, &mut back).unwrap();
        assert!(back.iter().all(|&b| b == word.to_le_bytes()[0]), "GPU fill");
    }
    let report = allocator.check_corruption(u32::MAX).unwrap();
    assert_eq!(
        report.checked_allocations,
        (buffers.iter().filter(|b| !b.1.is_dedicated()).count()
            + images.iter().filter(|i| !i.1.is_dedicated()).count()) as u64
    );
    // A device overrun: a 4-byte buffer aliasing the back margin of the 100-byte buffer.
    let victim = &buffers[1].1;
    // SAFETY: a valid buffer create info.
    let spy = unsafe { d.create_buffer(&common::buffer_info(4, usage), None) }.unwrap();
    // SAFETY: `spy` is alive.
    let requirements = unsafe { d.get_buffer_memory_requirements(spy) };
    let at = (victim.offset() + victim.size()).next_multiple_of(requirements.alignment);
    assert!(
        at + 4 <= victim.offset() + victim.size() + margin,
        "inside the back margin"
    );
    assert!(requirements.memory_type_bits & (1 << victim.memory_type_index()) != 0);
    // SAFETY: `at` is aligned as required and the 4 bytes lie in the victim's block (in its
    // back margin): aliasing memory is valid.
    unsafe { d.bind_buffer_memory(spy, victim.memory(), at) }.unwrap();
    ctx.submit(|d, cmd| {
        // SAFETY: `spy` is alive and bound.
        unsafe { d.cmd_fill_buffer(cmd, spy, 0, 4, 0) };
        common::TestContext::transfer_barrier(d, cmd);
    });
    let found = damaged(allocator.check_corruption(u32::MAX));
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(
        (found[0].offset, found[0].after, found[0].allocation_offset),
        (at, true, victim.offset())
    );
    // SAFETY: the GPU is done with every resource.
    unsafe {
        d.destroy_buffer(spy, None);
        for (buffer, ..) in &buffers {
            d.destroy_buffer(*buffer, None);
        }
        for (image, _) in &images {
            d.destroy_image(*image, None);
        }
    }
    drop((buffers, images, allocator));
    assert!(ctx.messages().is_empty(), "{:?}", ctx.messages());
}

/// Puts `byte` at `at` of `alloc`'s block in the device's view only (a GPU write that the
/// host's view does not show yet): written through the mapping, its atom flushed, and the
/// host byte put back.
///
/// # Safety
///
/// `at` lies in one of `alloc`'s margins inside the mapped block, and the allocation's own
/// bytes in that atom were flushed already.
unsafe fn device_poke(device: &MemoryDevice, alloc: &MemoryAlloc, at: u64, byte: u8) {
    let atom = device.non_coherent_atom_size().as_devicesize();
    let base = alloc
        .mapped_ptr()
        .unwrap()
        .as_ptr()
        .wrapping_sub(alloc.offset() as usize);
    // SAFETY: the caller's contract.
    let host = unsafe { &mut *base.add(at as usize) };
    let old = std::mem::replace(host, byte);
    let range = ash::vk::MappedMemoryRange::default()
        .memory(alloc.memory())
        .offset(at / atom * atom)
        .size(atom);
    // SAFETY: the block is mapped; the range is one whole atom inside it.
    unsafe { device.ash().flush_mapped_memory_ranges(&[range]).unwrap() };
    *host = old;
}

/// Damage found when the allocation is freed, as documented: logged at `error` (target
/// `LOG_TARGET`) with the allocation's name, the free goes on, and nothing of it stays: the
/// next check is clean, the neighbours' data and margins are intact, and an allocation made
/// in the same place gets margins of its own. In non-coherent memory a device write into the
/// back margin's atom shared with the allocation is not seen by a live check, is seen once
/// the application invalidates its range, and is always seen at the free.
#[test]
fn damage_at_free_is_logged_and_leaves_a_clean_place() {
    common::log_capture::install();
    for (layout, device_write) in [
        (GpuLayout::nvidia_discrete(), false),
        (GpuLayout::mobile(), false),
        (GpuLayout::mobile(), true),
    ] {
        let sim = Sim::new(layout);
        let device = sim.memory_device();
        let allocator = allocator(&device, 12, true);
        for round in 0..2 {
            let name = format!("{} victim {device_write} {round}", sim.state.layout.name);
            let mut before = allocator
                .allocate(
                    reqs(1, 300, 4),
                    AllocationType::Linear,
                    &info("before"),
                    None,
                )
                .unwrap();
            let mut victim = allocator
                .allocate(reqs(1, 200, 4), AllocationType::Linear, &info(&name), None)
                .unwrap();
            let mut after = allocator
                .allocate(
                    reqs(1, 300, 4),
                    AllocationType::Linear,
                    &info("after"),
                    None,
                )
                .unwrap();
            fill(&mut before, 1, 300);
            fill(&mut victim, 2, 200);
            fill(&mut after, 3, 300);
            let at = victim.offset() + 200;
            if device_write {
                // SAFETY: `at` is in the victim's back margin; its data is flushed.
                unsafe { device_poke(&device, &victim, at, 0) };
                assert!(
                    allocator.check_corruption(u32::MAX).is_ok(),
                    "a live check does not invalidate an atom the allocation shares"
                );
                victim.invalidate(0, 200).unwrap();
            } else {
                // SAFETY: as above.
                unsafe { poke(&victim, at, 0) };
            }
            let d = damaged(allocator.check_corruption(u32::MAX));
            assert_eq!((d.len(), d[0].offset, d[0].after), (1, at, true), "{d:?}");
            drop(victim);
            let logged = common::log_capture::records_mentioning(&name);
            assert_eq!(logged.len(), 1, "{logged:?}");
            assert_eq!(
                (logged[0].0, logged[0].1.as_str()),
                (log::Level::Error, corruption::LOG_TARGET)
            );
            assert!(logged[0].2.contains(&format!("offset {at}")), "{logged:?}");
            assert!(
                allocator.check_corruption(u32::MAX).is_ok(),
                "nothing stays"
            );
            verify(&before, 1, 300, "before");
            verify(&after, 3, 300, "after");
            let mut again = allocator
                .allocate(
                    reqs(1, 200, 4),
                    AllocationType::Linear,
                    &info("again"),
                    None,
                )
                .unwrap();
            probe(
                &allocator,
                &mut again,
                (200, 4, 4),
                true,
                "in the damaged place",
            );
            drop(again);
            verify(&before, 1, 300, "before, after the place was freed again");
            verify(&after, 3, 300, "after, after the place was freed again");
            assert!(allocator.check_corruption(u32::MAX).is_ok());
        }
        drop(allocator);
        sim.assert_nothing_allocated();
    }
}

/// Failed allocations with fill patterns and margins: a `create_buffer` whose bind fails
/// frees its allocation (the freed fill lands in its own range only), and `allocate_pages`
/// that runs out of room part way frees the pages made; the neighbours' data and margins are
/// intact and the books count only them.
#[test]
fn failed_allocations_fill_only_their_own_bytes() {
    use ash::vk;
    let ctx = common::TestContext::new();
    let device = ctx.memory_device_with_v1_0(common::failing_bind::hook, Default::default());
    let allocator = allocator(&device, 20, true);
    let all = device.memory_properties().all_types_mask();
    let r = |size, alignment| AllocationRequirements {
        memory_type_bits: all,
        ..reqs(0, size, alignment)
    };
    let mut neighbours = Vec::new();
    for (i, size) in [100u64, 4096, 333, 64 * KIB].into_iter().enumerate() {
        let mut a = allocator
            .allocate(
                r(size, 64),
                AllocationType::Linear,
                &info("neighbour"),
                None,
            )
            .unwrap();
        fill(&mut a, i as u64, size);
        neighbours.push((a, i as u64, size));
    }
    let usage = vk::BufferUsageFlags::TRANSFER_DST;
    for fault in [
        vk::Result::ERROR_OUT_OF_DEVICE_MEMORY,
        vk::Result::ERROR_OUT_OF_HOST_MEMORY,
    ] {
        common::failing_bind::fail_next(fault);
        // SAFETY: a valid buffer create info.
        let e =
            unsafe { allocator.create_buffer(&common::buffer_info(1000, usage), &info("failed")) }
                .unwrap_err();
        assert!(!common::failing_bind::pending(), "{e}");
        for (a, seed, size) in &neighbours {
            verify(a, *seed, *size, "after a failed bind");
        }
        assert!(allocator.check_corruption(u32::MAX).is_ok());
        assert_eq!(
            allocator.statistics().total.allocation_count,
            neighbours.len() as u64
        );
    }
    // Pages in a pool of one block: the neighbour and three pages fit, the fourth does not.
    let pool = allocator
        .create_pool::<FreeListAllocator>(&PoolCreateInfo {
            memory_type: PoolMemoryType::Index(neighbours[0].0.memory_type_index()),
            block_size: MIB,
            max_block_count: 1,
            block_arenas: Some(1),
            ..Default::default()
        })
        .unwrap();
    let mut pooled = pool
        .allocate(
            r(100 * KIB, 256),
            AllocationType::Linear,
            &info("pooled"),
            None,
        )
        .unwrap();
    fill(&mut pooled, 9, 100 * KIB);
    let e = pool
        .allocate_pages(r(256 * KIB, 256), AllocationType::Linear, &info("pages"), 4)
        .unwrap_err();
    assert!(matches!(e, AllocationError::PoolFull { .. }), "{e}");
    verify(&pooled, 9, 100 * KIB, "after the failed pages");
    let pages = pool
        .allocate_pages(r(256 * KIB, 256), AllocationType::Linear, &info("pages"), 3)
        .unwrap();
    assert!(allocator.check_corruption(u32::MAX).is_ok());
    for (a, seed, size) in &neighbours {
        verify(a, *seed, *size, "after the pages");
    }
    verify(&pooled, 9, 100 * KIB, "after the pages");
    drop((pages, pooled, pool, neighbours, allocator));
    assert!(ctx.messages().is_empty(), "{:?}", ctx.messages());
}

/// Aliasing binds at offsets inside an allocation with margins (lavapipe, validation on):
/// a buffer bound at the allocation's last bytes and filled by the GPU leaves the back margin
/// whole, one at offset 0 leaves the front margin whole, and a bind that would reach into a
/// margin is refused before the driver sees it.
#[test]
fn aliasing_binds_at_offsets_stay_inside_the_margins() {
    use ash::vk;
    let ctx = common::TestContext::new();
    let device = ctx.memory_device();
    let d = &ctx.device;
    let margin = 36;
    let allocator = allocator(&device, margin, true);
    let usage = vk::BufferUsageFlags::TRANSFER_DST;
    let info_of = |size| common::buffer_info(size, usage);
    // SAFETY: a valid create info (used for its requirements only).
    let probe_buffer = unsafe { d.create_buffer(&info_of(256), None) }.unwrap();
    // SAFETY: `probe_buffer` is alive.
    let mr = unsafe { d.get_buffer_memory_requirements(probe_buffer) };
    // SAFETY: never bound or used.
    unsafe { d.destroy_buffer(probe_buffer, None) };
    let size = 16 * KIB;
    let a = allocator
        .allocate(
            AllocationRequirements {
                layout: DeviceLayout::from_size_alignment(size, mr.alignment).unwrap(),
                memory_type_bits: mr.memory_type_bits,
                prefers_dedicated_allocation: false,
                requires_dedicated_allocation: false,
            },
            AllocationType::Unknown,
            &info("aliased"),
            None,
        )
        .unwrap();
    assert!(!a.is_dedicated());
    let last = size - 256;
    // SAFETY: valid create infos; the buffers are destroyed before the allocation drops.
    let (head, tail) = unsafe {
        (
            a.create_aliasing_buffer(&info_of(256), 0).unwrap(),
            a.create_aliasing_buffer(&info_of(256), last).unwrap(),
        )
    };
    // One byte-word past the end would reach the back margin: refused.
    // SAFETY: as above.
    let past = unsafe { a.create_aliasing_buffer(&info_of(256), last + mr.alignment) };
    assert!(
        matches!(past, Err(MemoryAccessError::ResourceOutOfBounds { .. })),
        "{past:?}"
    );
    ctx.submit(|d, cmd| {
        // SAFETY: both buffers are alive and bound.
        unsafe {
            d.cmd_fill_buffer(cmd, head, 0, vk::WHOLE_SIZE, 0);
            d.cmd_fill_buffer(cmd, tail, 0, vk::WHOLE_SIZE, 0);
        }
        common::TestContext::transfer_barrier(d, cmd);
    });
    assert_eq!(
        allocator
            .check_corruption(u32::MAX)
            .unwrap()
            .checked_allocations,
        1,
        "GPU writes at both ends damage no margin"
    );
    // SAFETY: the GPU is done with them.
    unsafe {
        d.destroy_buffer(head, None);
        d.destroy_buffer(tail, None);
    }
    drop((a, allocator));
    assert!(ctx.messages().is_empty(), "{:?}", ctx.messages());
}
