//! The VMA side of `--defrag`, through vk-mem 0.5.

use super::{check_released, note_plan, reserved_since, DefragArgs, Fragmented, Outcome};
use crate::thread_cpu_time;
use crate::vulkan::{self, Vulkan};
use std::mem::ManuallyDrop;

/// A zeroed `VmaDefragmentationInfo`: vk-mem 0.5 takes one in `begin_defragmentation` but
/// does not export its type, so it is named here through that function's signature.
fn zeroed_vma_defrag_info<'a, I>(
    _begin: unsafe fn(
        &'a vk_mem::Allocator,
        &I,
    ) -> ash::prelude::VkResult<vk_mem::DefragmentationContext<'a>>,
) -> I {
    // SAFETY: `I` can only be `VmaDefragmentationInfo`, a C struct of integers, raw pointers
    // and an `Option` of a function pointer, for all of which zero is valid (0 / null /
    // `None`): VMA's documented "zero-initialize, then set" idiom.
    unsafe { std::mem::zeroed() }
}

pub fn run(vk: &Vulkan, f: &Fragmented, flags: u32, a: &DefragArgs) -> Outcome {
    use vk_mem::Alloc;
    let base = vulkan::counters();
    let allocator = crate::backends::Vma::allocator(vk, a.block_size);
    #[allow(deprecated)] // CpuToGpu: a usage vmaAllocateMemory accepts without a buffer create info
    let create_info = vk_mem::AllocationCreateInfo {
        usage: vk_mem::MemoryUsage::CpuToGpu,
        flags: vk_mem::AllocationCreateFlags::MAPPED,
        ..Default::default()
    };
    let mut buf = Vec::new();
    let mut slots: Vec<Option<vk_mem::Allocation>> = (0..f.items.len())
        .map(|i| {
            // The buffer's index as user data: moves name their buffer by it.
            let create_info = vk_mem::AllocationCreateInfo {
                user_data: i,
                ..create_info.clone()
            };
            // SAFETY: valid requirements; every allocation is freed below, before the allocator.
            let alloc = unsafe { allocator.allocate_memory(&f.requirements(i), &create_info) }
                .expect("vmaAllocateMemory");
            let info = allocator.get_allocation_info(&alloc);
            assert!(
                !info.mapped_data.is_null(),
                "VMA: MAPPED allocation without a pointer"
            );
            f.pattern(i, &mut buf);
            // SAFETY: `mapped_data` points at the allocation's `size` (>= the pattern's length)
            // bytes of host-coherent mapped memory, which nothing else accesses.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    buf.as_ptr(),
                    info.mapped_data.cast::<u8>(),
                    buf.len(),
                )
            };
            Some(alloc)
        })
        .collect();
    for &i in &f.freed {
        let mut alloc = slots[i].take().unwrap();
        // SAFETY: allocated by this allocator, freed once.
        unsafe { allocator.free_memory(&mut alloc) };
    }
    let mut survivors: Vec<vk_mem::Allocation> = f
        .survivors
        .iter()
        .map(|&i| slots[i].take().unwrap())
        .collect();
    let mut o = Outcome::default();
    (o.blocks_before, o.reserved_before) = reserved_since(base);
    o.sizes_before = vulkan::live_object_sizes();
    let before = vulkan::counters();

    let t = thread_cpu_time();
    let mut info = zeroed_vma_defrag_info(vk_mem::Allocator::begin_defragmentation);
    info.flags = flags;
    info.maxBytesPerPass = a.max_bytes;
    info.maxAllocationsPerPass = a.max_moves;
    // SAFETY: a valid info for the default pools; no allocation is used by the GPU.
    let context =
        unsafe { allocator.begin_defragmentation(&info) }.expect("vmaBeginDefragmentation");
    o.setup = thread_cpu_time() - t;
    let (mut counted_bytes, mut requested) = (0, 0);
    loop {
        let start = thread_cpu_time();
        let mut copies_done = None;
        let more = context.begin_pass(|moves| {
            // `begin_pass` calls this right after vmaBeginDefragmentationPass returned.
            let planned = thread_cpu_time();
            for m in moves.iter() {
                // SAFETY: `vk_mem::Allocation` is a struct whose only field is a raw
                // `VmaAllocation` and has no `Drop`: `transmute` checks the sizes are equal,
                // so that field fills the struct. The handles are VMA's, valid during the pass.
                // (The source type, vk-mem's private `ffi::VmaAllocation`, cannot be named here.)
                #[allow(clippy::missing_transmute_annotations)]
                let (src, mut dst) = unsafe {
                    (
                        ManuallyDrop::new(std::mem::transmute::<_, vk_mem::Allocation>(
                            m.srcAllocation,
                        )),
                        ManuallyDrop::new(std::mem::transmute::<_, vk_mem::Allocation>(
                            m.dstTmpAllocation,
                        )),
                    )
                };
                let (s, d) = (
                    allocator.get_allocation_info(&src),
                    allocator.get_allocation_info(&dst),
                );
                let map_here = d.mapped_data.is_null();
                let dst_ptr = if map_here {
                    // SAFETY: a host-visible temporary allocation of this allocator, unmapped below.
                    unsafe { allocator.map_memory(&mut dst) }.expect("vmaMapMemory")
                } else {
                    d.mapped_data.cast::<u8>()
                };
                // The buffer's bytes: its requested size (VMA's allocation sizes, source's and
                // destination's, may each be rounded up differently, never down).
                let len = f.items[s.user_data].0;
                assert!(
                    s.size >= len && d.size >= len,
                    "VMA: a move smaller than its buffer"
                );
                // SAFETY: source (a MAPPED allocation) and destination hold at least `len`
                // bytes of host-coherent mapped memory each, in two different live
                // allocations, untouched by anything else.
                unsafe {
                    std::ptr::copy_nonoverlapping(s.mapped_data.cast::<u8>(), dst_ptr, len as usize)
                };
                if map_here {
                    // SAFETY: mapped just above.
                    unsafe { allocator.unmap_memory(&mut dst) };
                }
                counted_bytes += s.size;
                requested += len;
            }
            copies_done = Some((planned, thread_cpu_time(), moves.len()));
        });
        let end = thread_cpu_time();
        match copies_done {
            Some((planned, copied, n)) => {
                note_plan(&mut o, planned - start);
                o.copy += copied - planned;
                o.settle += end - copied;
                o.passes += 1;
                o.moves += n;
            }
            None => note_plan(&mut o, end - start),
        }
        if !more {
            break;
        }
    }
    let t = thread_cpu_time();
    let stats = context.end();
    o.settle += thread_cpu_time() - t;
    (o.bytes_moved, o.requested_moved) = (stats.bytesMoved, requested);
    if stats.bytesMoved != counted_bytes || stats.allocationsMoved as usize != o.moves {
        eprintln!(
            "warning: VMA reports {} bytes in {} moves, the passes copied {} bytes in {} moves",
            stats.bytesMoved, stats.allocationsMoved, counted_bytes, o.moves
        );
    }
    o.objects_freed = vulkan::counters().free_calls - before.free_calls;
    if u64::from(stats.deviceMemoryBlocksFreed) != o.objects_freed {
        eprintln!(
            "warning: VMA reports {} memory objects freed, the counting wrapper saw {}",
            stats.deviceMemoryBlocksFreed, o.objects_freed
        );
    }
    (o.blocks_after, o.reserved_after) = reserved_since(base);
    o.sizes_after = vulkan::live_object_sizes();
    for (alloc, &i) in survivors.iter().zip(&f.survivors) {
        let info = allocator.get_allocation_info(alloc);
        assert_eq!(info.user_data, i, "VMA: a buffer's user data changed");
        assert!(info.size >= f.items[i].0, "VMA: an allocation shrank");
        // SAFETY: a live MAPPED allocation: `size` (>= the requested size) bytes of
        // host-coherent memory at `mapped_data`.
        let bytes = unsafe {
            std::slice::from_raw_parts(info.mapped_data.cast::<u8>(), f.items[i].0 as usize)
        };
        f.check("VMA", i, bytes, &mut buf);
        o.verified += 1;
    }
    for alloc in &mut survivors {
        // SAFETY: allocated by this allocator, freed once.
        unsafe { allocator.free_memory(alloc) };
    }
    drop(allocator);
    check_released("VMA", base);
    o
}
