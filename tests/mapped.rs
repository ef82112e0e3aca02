//! Typed mapped access ([`ash_memory::mapped`]): slices and plain-old-data copies, on the real
//! driver (a GPU round trip) and on simulated non-coherent memory (flush and invalidate).

mod common;
mod support;

use ash::vk;
use ash_memory::*;
use common::{buffer_info, Rng, TestContext};
use support::{GpuLayout, Sim};

#[derive(Clone, Copy, Debug, PartialEq)]
#[repr(C)]
struct Vertex {
    position: [f32; 3],
    color: u32,
}
// SAFETY: `repr(C)`, four 4-byte fields, no padding, every bit pattern valid.
unsafe impl Pod for Vertex {}

fn vertices(n: usize, seed: u64) -> Vec<Vertex> {
    let mut rng = Rng(seed);
    (0..n)
        .map(|_| Vertex {
            position: [
                rng.next() as u32 as f32,
                rng.below(1000) as f32 * 0.5,
                -(rng.below(77) as f32),
            ],
            color: rng.next() as u32,
        })
        .collect()
}

/// Vertices written with `write_slice` into an upload buffer, copied by the GPU into a
/// download buffer, read back with `read_slice`, `read_value` and `mapped_slice_of`; then the
/// other way round through `mapped_slice_of_mut` and `mapped_slice`.
#[test]
fn typed_data_survives_a_gpu_round_trip() {
    let ctx = TestContext::new();
    let allocator = StandardMemoryAllocator::new_default(ctx.memory_device());
    let n = 1000;
    let bytes = (n * size_of::<Vertex>()) as u64;
    let upload = AllocationCreateInfo {
        usage: MemoryUsage::Auto(HostAccess::SequentialWrite),
        ..Default::default()
    };
    let download = AllocationCreateInfo {
        usage: MemoryUsage::Auto(HostAccess::Random),
        ..Default::default()
    };
    // SAFETY: valid create infos; both buffers are destroyed before their allocations drop.
    let (src, mut src_alloc) = unsafe {
        allocator.create_buffer(
            &buffer_info(bytes, vk::BufferUsageFlags::TRANSFER_SRC),
            &upload,
        )
    }
    .unwrap();
    // SAFETY: as above.
    let (dst, dst_alloc) = unsafe {
        allocator.create_buffer(
            &buffer_info(bytes, vk::BufferUsageFlags::TRANSFER_DST),
            &download,
        )
    }
    .unwrap();
    let copy = |ctx: &TestContext| {
        ctx.submit(|d, cmd| {
            let region = [vk::BufferCopy::default().size(bytes)];
            // SAFETY: both buffers are bound and at least `bytes` long.
            unsafe { d.cmd_copy_buffer(cmd, src, dst, &region) };
            TestContext::transfer_barrier(d, cmd);
        })
    };

    let data = vertices(n, 1);
    src_alloc.write_slice(0, &data).unwrap();
    copy(&ctx);
    let mut back = vec![Vertex::read_default(); n];
    dst_alloc.read_slice(0, &mut back).unwrap();
    assert_eq!(back, data, "read_slice");
    let v: Vertex = dst_alloc
        .read_value((7 * size_of::<Vertex>()) as u64)
        .unwrap();
    assert_eq!(v, data[7], "read_value");
    assert_eq!(
        &dst_alloc.mapped_slice_of::<Vertex>().unwrap()[..n],
        &data[..],
        "mapped_slice_of"
    );

    // In place, then flushed (a no-op on coherent memory, required on non-coherent memory).
    let data = vertices(n, 2);
    src_alloc.mapped_slice_of_mut::<Vertex>().unwrap()[..n].copy_from_slice(&data);
    src_alloc.flush(0, bytes).unwrap();
    copy(&ctx);
    dst_alloc.invalidate(0, bytes).unwrap();
    let raw = dst_alloc.mapped_slice().unwrap();
    assert!(raw.len() as u64 >= bytes);
    for (i, v) in data.iter().enumerate() {
        let at = i * size_of::<Vertex>();
        assert_eq!(
            u32::from_ne_bytes(raw[at + 12..at + 16].try_into().unwrap()),
            v.color,
            "mapped_slice, vertex {i}"
        );
    }
    assert_eq!(
        src_alloc.mapped_slice_mut().unwrap().len() as u64,
        src_alloc.size()
    );

    // SAFETY: the GPU work is finished (`submit` waits), the buffers are unused.
    unsafe {
        ctx.device.destroy_buffer(src, None);
        ctx.device.destroy_buffer(dst, None);
    }
    drop((src_alloc, dst_alloc, allocator));
    assert!(ctx.messages().is_empty(), "{:?}", ctx.messages());
}

impl Vertex {
    fn read_default() -> Self {
        Self {
            position: [0.0; 3],
            color: 0,
        }
    }
}

/// Values at every offset of a small window, unaligned ones included, round-trip; ranges
/// that leave the allocation are errors, not panics; memory that is not host-visible has no
/// slices.
#[test]
fn values_at_any_offset_and_clear_errors() {
    let ctx = TestContext::new();
    let allocator = StandardMemoryAllocator::new_default(ctx.memory_device());
    let host = allocator
        .find_memory_type_index(u32::MAX, MemoryTypeFilter::from(MemoryUsage::Download))
        .unwrap();
    let layout = DeviceLayout::from_size_alignment(256, 16).unwrap();
    let mut alloc = allocator
        .allocate_from_type(host, layout, AllocationType::Linear, &Default::default())
        .unwrap();
    for offset in 0..=(256 - 8) {
        let value = 0x0123_4567_89ab_cdefu64.rotate_left(offset as u32);
        alloc.write_value(offset, value).unwrap();
        assert_eq!(alloc.read_value::<u64>(offset).unwrap(), value);
        assert_eq!(
            alloc.mapped_slice().unwrap()[offset as usize..][..8],
            value.to_ne_bytes(),
            "offset {offset}"
        );
    }
    // Arrays are `Pod` too.
    alloc.write_value(100, [1u16, 2, 3]).unwrap();
    assert_eq!(alloc.read_value::<[u16; 3]>(100).unwrap(), [1, 2, 3]);

    let size = alloc.size();
    assert_eq!(
        alloc.write_value(size - 3, 0u32),
        Err(MemoryAccessError::OutOfBounds {
            offset: size - 3,
            len: 4,
            size
        })
    );
    assert!(matches!(
        alloc.read_value::<u64>(u64::MAX),
        Err(MemoryAccessError::OutOfBounds { .. })
    ));
    let mut out = [0u32; 65];
    assert!(matches!(
        alloc.read_slice(0, &mut out),
        Err(MemoryAccessError::OutOfBounds { .. })
    ));
    // Whole `T`s only: a 256-byte allocation (or larger) holds size / 12 `[u32; 3]`.
    assert_eq!(
        alloc.mapped_slice_of::<[u32; 3]>().unwrap().len() as u64,
        size / 12
    );

    let flags = allocator.device().memory_properties();
    let device_only = (0..flags.memory_types.len() as u32).find(|&i| {
        !flags.memory_types[i as usize]
            .property_flags
            .contains(vk::MemoryPropertyFlags::HOST_VISIBLE)
    });
    if let Some(t) = device_only {
        let mut a = allocator
            .allocate_from_type(t, layout, AllocationType::Linear, &Default::default())
            .unwrap();
        assert!(a.mapped_slice().is_none());
        assert!(a.mapped_slice_mut().is_none());
        assert_eq!(
            a.write_value(0, 1u8),
            Err(MemoryAccessError::NotHostVisible {
                memory_type_index: t
            })
        );
        assert!(matches!(
            a.mapped_slice_of::<u32>(),
            Err(MemoryAccessError::NotHostVisible { .. })
        ));
    }
    drop((alloc, allocator));
    assert!(ctx.messages().is_empty(), "{:?}", ctx.messages());
}

/// A typed slice of an allocation whose address does not suit the type is an error.
#[test]
fn a_misaligned_typed_slice_is_an_error() {
    let ctx = TestContext::new();
    let allocator = StandardMemoryAllocator::new_default(ctx.memory_device());
    let host = allocator
        .find_memory_type_index(u32::MAX, MemoryTypeFilter::from(MemoryUsage::Download))
        .unwrap();
    let layout = DeviceLayout::from_size_alignment(3, 1).unwrap();
    let mut held = Vec::new();
    let odd = loop {
        let a = allocator
            .allocate_from_type(host, layout, AllocationType::Linear, &Default::default())
            .unwrap();
        if a.mapped_slice().unwrap().as_ptr() as usize % 2 == 1 {
            break a;
        }
        held.push(a);
        assert!(held.len() < 64, "no allocation at an odd address");
    };
    assert!(matches!(
        odd.mapped_slice_of::<u16>(),
        Err(MemoryAccessError::Misaligned { alignment: 2, .. })
    ));
    // Bytes and unaligned copies still work.
    assert_eq!(odd.mapped_slice_of::<u8>().unwrap().len(), 3);
    let mut odd = odd;
    odd.write_value(1, 0xbeefu16).unwrap();
    assert_eq!(odd.read_value::<u16>(1).unwrap(), 0xbeef);
    drop((odd, held, allocator));
    assert!(ctx.messages().is_empty(), "{:?}", ctx.messages());
}

/// On simulated non-coherent memory (an invalidate copies the device's bytes over the
/// host's): the typed copies flush and invalidate by themselves, so data survives; writes
/// through a mutable slice survive an invalidate only when flushed, as documented.
#[test]
fn non_coherent_memory_follows_the_documented_flush_rules() {
    for layout in [GpuLayout::mobile(), GpuLayout::nvidia_discrete()] {
        let name = layout.name;
        let mut layout = layout;
        // Make every host-visible type non-coherent.
        for t in layout.types.iter_mut() {
            t.0 &= !vk::MemoryPropertyFlags::HOST_COHERENT;
        }
        let sim = Sim::new(layout);
        let allocator = StandardMemoryAllocator::new_default(sim.memory_device());
        let host = allocator
            .find_memory_type_index(u32::MAX, MemoryTypeFilter::from(MemoryUsage::Download))
            .unwrap();
        let flags = allocator.device().memory_properties().memory_types[host as usize];
        assert!(
            !flags
                .property_flags
                .contains(vk::MemoryPropertyFlags::HOST_COHERENT),
            "{name}: the type is non-coherent"
        );
        let layout = DeviceLayout::from_size_alignment(4096, 16).unwrap();
        let mut a = allocator
            .allocate_from_type(host, layout, AllocationType::Linear, &Default::default())
            .unwrap();
        let mut b = allocator
            .allocate_from_type(host, layout, AllocationType::Linear, &Default::default())
            .unwrap();

        // Typed copies: flushed on write, invalidated on read.
        let data = vertices(100, 3);
        a.write_slice(12, &data).unwrap();
        let mut back = vec![Vertex::read_default(); 100];
        a.read_slice(12, &mut back).unwrap();
        assert_eq!(back, data, "{name}: write_slice/read_slice");
        b.write_value(4000, 77u64).unwrap();
        assert_eq!(b.read_value::<u64>(4000).unwrap(), 77, "{name}: values");

        // A mutable slice without a flush: the invalidate throws the writes away (what a
        // non-coherent cache does), which is why the docs ask for a flush.
        a.mapped_slice_of_mut::<u32>().unwrap()[..8].fill(0xdead_beef);
        a.invalidate(0, 32).unwrap();
        assert_ne!(
            a.mapped_slice_of::<u32>().unwrap()[0],
            0xdead_beef,
            "{name}: the simulation discards unflushed writes"
        );
        // With the flush, they survive.
        a.mapped_slice_of_mut::<u32>().unwrap()[..8].fill(0xdead_beef);
        a.flush(0, 32).unwrap();
        a.invalidate(0, 32).unwrap();
        assert_eq!(
            a.mapped_slice_of::<u32>().unwrap()[..8],
            [0xdead_beef; 8],
            "{name}: flushed slice writes"
        );
        // b's bytes were never touched by a's syncs.
        assert_eq!(b.read_value::<u64>(4000).unwrap(), 77, "{name}: neighbour");
        drop((a, b, allocator));
        sim.assert_nothing_allocated();
    }
}
