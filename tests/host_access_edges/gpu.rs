//! Host access and GPU work on the real driver: neighbouring buffers written and read
//! through every host-access method, filled, updated and copied by the GPU, and moved by a
//! GPU-copied defragmentation.

use crate::common::{buffer_info, Rng, TestContext};
use crate::range_in;
use crate::support::{pattern, KIB};
use ash::vk;
use ash_memory::allocator::defrag::{record_buffer_copies, BufferMove};
use ash_memory::*;

/// A buffer of the real driver, its host-visible allocation and the bytes it must hold (its
/// buffer's `size` first bytes).
struct GpuBuffer {
    buffer: vk::Buffer,
    alloc: MemoryAlloc,
    size: u64,
    model: Vec<u8>,
}

const TRANSFER: vk::BufferUsageFlags = vk::BufferUsageFlags::from_raw(
    vk::BufferUsageFlags::TRANSFER_SRC.as_raw() | vk::BufferUsageFlags::TRANSFER_DST.as_raw(),
);

fn host_random() -> AllocationCreateInfo {
    AllocationCreateInfo {
        usage: MemoryUsage::Auto(HostAccess::Random),
        ..Default::default()
    }
}

/// Writes a random range of `b` through a random one of the host-access methods.
fn host_write(b: &mut GpuBuffer, rng: &mut Rng) {
    let (offset, len) = range_in(b.size, rng.next(), rng.next());
    let data = pattern(rng.next(), len as usize);
    let range = offset as usize..(offset + len) as usize;
    match rng.below(4) {
        0 => b.alloc.write(offset, &data).unwrap(),
        1 => {
            let n = len as usize / 2;
            let halves: Vec<u16> = data
                .chunks_exact(2)
                .map(|c| u16::from_ne_bytes([c[0], c[1]]))
                .collect();
            b.alloc.write_slice(offset, &halves).unwrap();
            b.model[offset as usize..offset as usize + 2 * n].copy_from_slice(&data[..2 * n]);
            return;
        }
        2 => {
            b.alloc.mapped_slice_mut().unwrap()[range.clone()].copy_from_slice(&data);
            b.alloc.flush(offset, len).unwrap();
        }
        _ => {
            if len >= 8 {
                let v = u64::from_ne_bytes(data[..8].try_into().unwrap());
                b.alloc.write_value(offset, v).unwrap();
                b.model[offset as usize..offset as usize + 8].copy_from_slice(&data[..8]);
            }
            return;
        }
    }
    b.model[range].copy_from_slice(&data);
}

/// Reads every buffer back through a random one of the host-access methods and compares it
/// with its model.
fn assert_gpu_buffers_hold(buffers: &[GpuBuffer], rng: &mut Rng, what: &str) {
    for (i, b) in buffers.iter().enumerate() {
        let size = b.size as usize;
        let back = match rng.below(3) {
            0 => {
                let mut out = vec![0; size];
                b.alloc.read(0, &mut out).unwrap();
                out
            }
            1 => {
                b.alloc.invalidate(0, b.size).unwrap();
                b.alloc.mapped_slice().unwrap()[..size].to_vec()
            }
            _ => {
                let mut out = vec![0u8; size];
                b.alloc.read_slice(0, &mut out).unwrap();
                out
            }
        };
        if let Some(at) = back.iter().zip(&b.model).position(|(a, m)| a != m) {
            panic!(
                "{what}: buffer {i} ({} bytes at {:?}+{}) differs at byte {at}",
                b.size,
                b.alloc.memory(),
                b.alloc.offset()
            );
        }
    }
}

/// Records one command (and its barrier) into a command buffer.
type Recorder = Box<dyn FnOnce(&ash::Device, vk::CommandBuffer)>;

/// One submission of random GPU work: fills and updates of ranges, and copies between
/// buffers (never overlapping ranges of one buffer), followed by a barrier to the host.
fn gpu_work(ctx: &TestContext, buffers: &mut [GpuBuffer], rng: &mut Rng) {
    let mut record: Vec<Recorder> = Vec::new();
    for _ in 0..12 {
        let n = buffers.len() as u64;
        let (a, c) = (rng.below(n) as usize, rng.below(n) as usize);
        match rng.below(3) {
            0 => {
                // Fill: 4-byte multiples.
                let b = &mut buffers[a];
                let words = b.size / 4;
                if words == 0 {
                    continue;
                }
                let first = rng.below(words);
                let count = 1 + rng.below(words - first);
                let value = rng.next() as u32;
                for w in first..first + count {
                    let at = (w * 4) as usize;
                    b.model[at..at + 4].copy_from_slice(&value.to_ne_bytes());
                }
                let buffer = b.buffer;
                record.push(Box::new(move |d, cmd| {
                    // SAFETY: the range lies inside the buffer, on 4-byte multiples.
                    unsafe { d.cmd_fill_buffer(cmd, buffer, first * 4, count * 4, value) };
                    TestContext::transfer_barrier(d, cmd);
                }));
            }
            1 => {
                // Update: at most 65536 bytes, 4-byte multiples.
                let b = &mut buffers[a];
                let words = (b.size / 4).min(1024);
                if words == 0 {
                    continue;
                }
                let first = rng.below(b.size / 4 - words + 1);
                let data = pattern(rng.next(), (words * 4) as usize);
                let at = (first * 4) as usize;
                b.model[at..at + data.len()].copy_from_slice(&data);
                let buffer = b.buffer;
                record.push(Box::new(move |d, cmd| {
                    // SAFETY: as above, at most 65536 bytes.
                    unsafe { d.cmd_update_buffer(cmd, buffer, first * 4, &data) };
                    TestContext::transfer_barrier(d, cmd);
                }));
            }
            _ => {
                if a == c {
                    continue;
                }
                let len = 1 + rng.below(buffers[a].size.min(buffers[c].size));
                let src_at = rng.below(buffers[a].size - len + 1);
                let dst_at = rng.below(buffers[c].size - len + 1);
                let bytes = buffers[a].model[src_at as usize..(src_at + len) as usize].to_vec();
                buffers[c].model[dst_at as usize..(dst_at + len) as usize].copy_from_slice(&bytes);
                let (src, dst) = (buffers[a].buffer, buffers[c].buffer);
                record.push(Box::new(move |d, cmd| {
                    let region = [vk::BufferCopy::default()
                        .src_offset(src_at)
                        .dst_offset(dst_at)
                        .size(len)];
                    // SAFETY: both ranges lie inside their (distinct) buffers.
                    unsafe { d.cmd_copy_buffer(cmd, src, dst, &region) };
                    TestContext::transfer_barrier(d, cmd);
                }));
            }
        }
    }
    ctx.submit(|d, cmd| {
        for r in record {
            r(d, cmd);
        }
    });
}

/// Neighbouring host-visible buffers on the real driver: host writes of random ranges
/// through every host-access method, then GPU fills, updates and copies between the
/// buffers, then host reads; each buffer holds exactly what was written to it, by the host
/// or by the GPU. Then the buffers are moved by a defragmentation (GPU copies into new
/// buffers bound to the destinations) and the same goes on in their new places.
#[test]
fn neighbours_keep_their_bytes_through_host_writes_gpu_work_and_defragmentation() {
    let ctx = TestContext::new();
    // Small blocks: several of them, which the defragmentation empties.
    let allocator = StandardMemoryAllocator::new(
        ctx.memory_device(),
        GenericMemoryAllocatorCreateInfo {
            block_sizes: BlockSizeThresholds::uniform(128 * KIB).unwrap(),
            ..Default::default()
        },
    )
    .unwrap();
    let mut rng = Rng(0xb0f5);
    let mut buffers: Vec<GpuBuffer> = Vec::new();
    for i in 0..48 {
        let size = 1 + rng.below(if i % 8 == 0 { 40_000 } else { 3000 });
        // SAFETY: a valid create info; every buffer is destroyed before its allocation drops.
        let (buffer, mut alloc) =
            unsafe { allocator.create_buffer(&buffer_info(size, TRANSFER), &host_random()) }
                .unwrap();
        assert!(alloc.size() >= size);
        let model = pattern(i, size as usize);
        alloc.write(0, &model).unwrap();
        buffers.push(GpuBuffer {
            buffer,
            alloc,
            size,
            model,
        });
    }
    let blocks: std::collections::HashSet<_> = buffers.iter().map(|b| b.alloc.memory()).collect();
    assert!(
        blocks.len() < buffers.len() / 4,
        "the buffers are neighbours in a few blocks"
    );
    for round in 0..6 {
        for _ in 0..40 {
            let i = rng.below(buffers.len() as u64) as usize;
            host_write(&mut buffers[i], &mut rng);
        }
        assert_gpu_buffers_hold(&buffers, &mut rng, &format!("round {round}, host writes"));
        gpu_work(&ctx, &mut buffers, &mut rng);
        assert_gpu_buffers_hold(&buffers, &mut rng, &format!("round {round}, GPU work"));
        if round == 2 {
            // Free every other buffer, then move the rest.
            let mut kept = Vec::new();
            for (i, b) in buffers.into_iter().enumerate() {
                if i % 2 == 0 {
                    // SAFETY: idle (`submit` waits), destroyed before its memory is freed.
                    unsafe { ctx.device.destroy_buffer(b.buffer, None) };
                } else {
                    kept.push(b);
                }
            }
            buffers = kept;
            defragment(&ctx, &allocator, &mut buffers);
            assert_gpu_buffers_hold(&buffers, &mut rng, "after the defragmentation");
        }
    }
    for b in buffers {
        // SAFETY: idle; destroyed before its memory is freed.
        unsafe { ctx.device.destroy_buffer(b.buffer, None) };
    }
    drop(allocator);
    assert!(ctx.messages().is_empty(), "{:?}", ctx.messages());
}

/// Moves `buffers` with a Full defragmentation, copying on the GPU.
fn defragment(ctx: &TestContext, allocator: &StandardMemoryAllocator, buffers: &mut [GpuBuffer]) {
    let mut defrag = allocator.defragmentation(&DefragmentationInfo {
        algorithm: DefragmentationAlgorithm::Full,
        ..Default::default()
    });
    let ids: Vec<usize> = buffers
        .iter_mut()
        .map(|b| {
            // SAFETY: as above.
            let reqs = unsafe { ctx.device.get_buffer_memory_requirements(b.buffer) };
            defrag
                .add(&mut b.alloc, DeviceAlignment::new(reqs.alignment).unwrap())
                .unwrap()
        })
        .collect();
    let mut moved = 0;
    while let Some(mut pass) = defrag.next_pass() {
        let mut new = Vec::new();
        for m in pass.moves() {
            let k = ids.iter().position(|&id| id == m.id()).unwrap();
            let b = &buffers[k];
            assert_eq!(
                m.size(),
                b.alloc.size(),
                "a move copies the whole allocation"
            );
            // SAFETY: a valid create info; bound to the destination made for the same
            // requirements.
            let buffer = unsafe {
                ctx.device
                    .create_buffer(&buffer_info(b.size, TRANSFER), None)
            }
            .unwrap();
            // SAFETY: a fresh buffer, destroyed before the destination (then the buffer's
            // allocation) is freed.
            unsafe { m.destination().bind_buffer(buffer) }.unwrap();
            new.push((m.index(), k, buffer));
        }
        let copies: Vec<BufferMove> = new
            .iter()
            .map(|&(_, k, dst)| BufferMove {
                src: buffers[k].buffer,
                dst,
                size: buffers[k].size,
            })
            .collect();
        // SAFETY: every buffer is bound and idle; `submit` waits.
        ctx.submit(|d, cmd| unsafe { record_buffer_copies(d, cmd, &copies) });
        for (index, k, buffer) in new {
            let b = &mut buffers[k];
            // SAFETY: the copy is done; the old buffer goes before its memory.
            unsafe { ctx.device.destroy_buffer(b.buffer, None) };
            b.buffer = buffer;
            pass.complete(index, &mut b.alloc).unwrap();
            moved += 1;
        }
        pass.end();
    }
    defrag.finish();
    assert!(moved > 0, "the defragmentation moved nothing");
}
