//! VMA's defragmentation scenarios not retold in `vma_defrag_scenarios.rs`, on lavapipe with
//! the validation layer (every moved resource is recreated and bound at its destination):
//!
//! - `TestDefragmentationAlgorithms`: a custom pool (of each suballocator here) of buffers
//!   and linear images of random sizes, most of them freed, defragmented with each
//!   algorithm, once with every
//!   allocation movable and once with a fifth of them kept in place by skipping their moves;
//!   the bytes are copied on the host and every byte is checked afterwards. VMA has four
//!   algorithms (Fast, Balanced, Full, Extensive); this crate has two, `Fast` (empty whole
//!   blocks) and `Full` (then gather), which are the ends of VMA's range.
//! - `TestDefragmentationFull`, `TestDefragmentationGpu` and
//!   `TestDefragmentationIncrementalComplex`: the allocator's default pools (not a custom
//!   pool) holding optimal images and buffers filled through the GPU, a few of them not
//!   movable, defragmented in bounded passes with GPU copies while the application makes new
//!   buffers before, during and after each pass; moves happen, memory objects are freed, and
//!   every texel and byte (of the moved, the unmoved and the new resources) is read back
//!   through the GPU.

mod common;
mod support;

use ash::vk;
use ash_memory::*;
use common::{Resource, TestContext};
use support::defrag::copy_and_complete;
use support::{fill, verify, GpuLayout, Rng, Sim, KIB, MIB};

fn buffer_usage() -> vk::BufferUsageFlags {
    vk::BufferUsageFlags::TRANSFER_SRC | vk::BufferUsageFlags::TRANSFER_DST
}

/// VMA's linear `R8_UNORM` image, written by the host (`PREINITIALIZED`).
fn linear_image_info(side: u32) -> vk::ImageCreateInfo<'static> {
    let mut info = common::image_info(side, vk::Format::R8_UNORM, vk::ImageTiling::LINEAR);
    info.usage |= vk::ImageUsageFlags::TRANSFER_SRC;
    info.initial_layout = vk::ImageLayout::PREINITIALIZED;
    info
}

impl Resource {
    /// A new, unbound resource like this one (`linear` picks the kind of image).
    fn recreate(self, d: &ash::Device, linear: bool) -> Self {
        // SAFETY: valid create infos for this device.
        unsafe {
            match self {
                Self::Buffer(_, size) => Self::Buffer(
                    d.create_buffer(&common::buffer_info(size, buffer_usage()), None)
                        .unwrap(),
                    size,
                ),
                Self::Image(_, side) => {
                    let info = if linear {
                        linear_image_info(side)
                    } else {
                        common::texture_info(side)
                    };
                    Self::Image(d.create_image(&info, None).unwrap(), side)
                }
            }
        }
    }

    /// What it requires of its memory.
    fn requirements(self, d: &ash::Device) -> vk::MemoryRequirements {
        // SAFETY: a valid resource of this device.
        unsafe {
            match self {
                Self::Buffer(b, _) => d.get_buffer_memory_requirements(b),
                Self::Image(i, _) => d.get_image_memory_requirements(i),
            }
        }
    }

    /// Binds it at `alloc`.
    fn bind(self, alloc: &MemoryAlloc) {
        // SAFETY: the resource is unbound and `alloc` was made for its requirements.
        unsafe {
            match self {
                Self::Buffer(b, _) => alloc.bind_buffer(b),
                Self::Image(i, _) => alloc.bind_image(i),
            }
        }
        .unwrap();
    }

    fn destroy(self, d: &ash::Device) {
        // SAFETY: idle; destroyed before its memory.
        unsafe {
            match self {
                Self::Buffer(b, _) => d.destroy_buffer(b, None),
                Self::Image(i, _) => d.destroy_image(i, None),
            }
        }
    }
}

/// A live resource with its allocation and the seed of the pattern it holds.
struct Live {
    resource: Resource,
    alloc: MemoryAlloc,
    seed: u64,
}

/// `TestDefragmentationAlgorithms`, for one algorithm and with or without a fifth of the
/// allocations kept in place.
fn algorithm_case<S: Suballocator + Send + Sync + 'static>(
    ctx: &TestContext,
    name: &str,
    algorithm: DefragmentationAlgorithm,
    pinned_share: u64,
    reuses_holes: bool,
) {
    let what = format!("{name}, {algorithm:?}, {pinned_share}% not movable");
    let device = ctx.memory_device();
    let allocator = StandardMemoryAllocator::new_default(device.clone());
    let pool = allocator
        .create_pool::<S>(&PoolCreateInfo {
            memory_type: PoolMemoryType::Find {
                memory_type_bits: u32::MAX,
                usage: MemoryUsage::Auto(HostAccess::Random),
            },
            block_size: 4 * MIB,
            // Whole blocks: the same layout whichever thread runs the case.
            block_arenas: Some(1),
            ..Default::default()
        })
        .unwrap();
    let info = AllocationCreateInfo {
        usage: MemoryUsage::Auto(HostAccess::Random),
        ..Default::default()
    };
    let mut rng = Rng(669 + pinned_share);
    let mut live: Vec<Live> = Vec::new();
    for seed in 0..250u64 {
        let (resource, mut alloc) = if seed % 5 == 4 {
            let side = rng.range(128, 513).next_multiple_of(64) as u32;
            // SAFETY: a valid image info; destroyed before its allocation.
            let (image, alloc) = unsafe { pool.create_image(&linear_image_info(side), &info) }
                .unwrap_or_else(|e| panic!("{what}: image {side}: {e}"));
            (Resource::Image(image, side), alloc)
        } else {
            let size = rng.range(2 * KIB, 256 * KIB + 1).next_multiple_of(64);
            // SAFETY: a valid buffer info; destroyed before its allocation.
            let (buffer, alloc) =
                unsafe { pool.create_buffer(&common::buffer_info(size, buffer_usage()), &info) }
                    .unwrap_or_else(|e| panic!("{what}: buffer {size}: {e}"));
            (Resource::Buffer(buffer, size), alloc)
        };
        let size = alloc.size();
        fill(&mut alloc, seed, size);
        live.push(Live {
            resource,
            alloc,
            seed,
        });
    }
    for _ in 0..live.len() * 55 / 100 {
        let gone = live.swap_remove(rng.below(live.len() as u64) as usize);
        gone.resource.destroy(&ctx.device);
    }
    let pinned = live.len() * pinned_share as usize / 100;
    let places: Vec<(vk::DeviceMemory, u64)> = live
        .iter()
        .map(|l| (l.alloc.memory(), l.alloc.offset()))
        .collect();
    let blocks_before = pool.block_count();

    let mut defrag = pool.defragmentation(&DefragmentationInfo {
        algorithm,
        ..Default::default()
    });
    // Every allocation is registered, as VMA's scenario does with the whole pool; the first
    // `pinned` are kept in place by skipping their moves (VMA's `MOVE_OPERATION_IGNORE`).
    for (id, l) in live.iter_mut().enumerate() {
        let alignment = l.resource.requirements(&ctx.device).alignment;
        let got = defrag.add(&mut l.alloc, DeviceAlignment::new(alignment).unwrap());
        assert_eq!(got, Ok(id), "{what}");
    }
    let mut passes = 0;
    while let Some(mut pass) = defrag.next_pass() {
        passes += 1;
        assert!(passes < 1000, "{what}: the passes never end");
        let moves: Vec<(usize, usize)> = pass.moves().map(|m| (m.index(), m.id())).collect();
        for (index, id) in moves {
            if id < pinned {
                pass.skip(index).unwrap();
                continue;
            }
            let l = &mut live[id];
            let new = l.resource.recreate(&ctx.device, true);
            new.bind(pass.get(index).unwrap().destination());
            copy_and_complete(&mut pass, index, &mut l.alloc)
                .unwrap_or_else(|e| panic!("{what}: completing move {id}: {e}"));
            l.resource.destroy(&ctx.device);
            l.resource = new;
        }
        pass.end();
    }
    let stats = defrag.finish();
    // A bump or ring block has room only past its newest allocation (its holes come back
    // when the block, or the run around them, empties), so nothing may be worth moving.
    if reuses_holes {
        assert!(
            stats.moves > 0 && stats.bytes_moved > 0,
            "{what}: {stats:?}"
        );
    }
    if pinned_share == 0 && reuses_holes {
        // With skipped moves a block may keep an allocation that was to leave it: then the
        // moves made still leave it in use (VMA asserts nothing on blocks there either).
        assert!(stats.memory_objects_freed > 0, "{what}: {stats:?}");
    }
    assert_eq!(
        pool.block_count(),
        blocks_before - stats.memory_objects_freed,
        "{what}: {stats:?}"
    );
    for (id, l) in live.iter().enumerate() {
        verify(&l.alloc, l.seed, l.alloc.size(), &what);
        if id < pinned {
            assert_eq!(
                (l.alloc.memory(), l.alloc.offset()),
                places[id],
                "{what}: a skipped allocation stays where it was"
            );
        }
    }
    let mut ranges: Vec<_> = live
        .iter()
        .map(|l| (l.alloc.memory(), l.alloc.offset(), l.alloc.size()))
        .collect();
    ranges.sort_unstable();
    for w in ranges.windows(2) {
        assert!(
            w[0].0 != w[1].0 || w[0].1 + w[0].2 <= w[1].1,
            "{what}: {w:?} overlap"
        );
    }
    for l in live {
        l.resource.destroy(&ctx.device);
    }
}

/// `TestDefragmentationAlgorithms`: both algorithms, with every allocation movable and with
/// a fifth of them kept in place.
#[test]
fn each_algorithm_moves_buffers_and_linear_images_and_keeps_their_bytes() {
    let ctx = TestContext::new();
    for algorithm in [
        DefragmentationAlgorithm::Fast,
        DefragmentationAlgorithm::Full,
    ] {
        for pinned_share in [0, 20] {
            let (a, p) = (algorithm, pinned_share);
            algorithm_case::<FreeListAllocator>(&ctx, "free list", a, p, true);
            algorithm_case::<BuddyAllocator>(&ctx, "buddy", a, p, true);
            algorithm_case::<SlotAllocator<{ 256 * KIB }>>(&ctx, "slots", a, p, true);
            algorithm_case::<BumpAllocator>(&ctx, "bump", a, p, false);
            algorithm_case::<RingAllocator>(&ctx, "ring", a, p, false);
        }
    }
    assert!(ctx.messages().is_empty(), "{:?}", ctx.messages());
}

/// Copies `from` into `to` (an image from `TRANSFER_SRC_OPTIMAL`, left there) on the GPU.
///
/// # Safety
///
/// `cmd` is recording; both resources are bound, alike, and not in use elsewhere; an image
/// `from` is in `TRANSFER_SRC_OPTIMAL` and an image `to` is new.
unsafe fn record_move(d: &ash::Device, cmd: vk::CommandBuffer, from: Resource, to: Resource) {
    // SAFETY: the caller's contract.
    unsafe {
        match (from, to) {
            (Resource::Buffer(src, size), Resource::Buffer(dst, _)) => {
                d.cmd_copy_buffer(cmd, src, dst, &[vk::BufferCopy::default().size(size)])
            }
            (Resource::Image(src, side), Resource::Image(dst, _)) => {
                use vk::ImageLayout as L;
                common::transition(d, cmd, dst, L::UNDEFINED, L::TRANSFER_DST_OPTIMAL);
                let layers = common::image_copy(side, side).image_subresource;
                let region = vk::ImageCopy::default()
                    .src_subresource(layers)
                    .dst_subresource(layers)
                    .extent(vk::Extent3D {
                        width: side,
                        height: side,
                        depth: 1,
                    });
                let (src_layout, dst_layout) = (L::TRANSFER_SRC_OPTIMAL, L::TRANSFER_DST_OPTIMAL);
                d.cmd_copy_image(cmd, src, src_layout, dst, dst_layout, &[region]);
                common::transition(d, cmd, dst, dst_layout, src_layout);
            }
            _ => unreachable!("a resource is recreated as its own kind"),
        }
    }
}

/// One host-visible buffer of `bytes` bytes per resource, from `staging`.
fn staging_buffers(
    staging: &StandardMemoryAllocator,
    sizes: impl Iterator<Item = u64>,
) -> Vec<(vk::Buffer, MemoryAlloc)> {
    let info = AllocationCreateInfo {
        usage: MemoryUsage::Auto(HostAccess::Random),
        ..Default::default()
    };
    sizes
        .map(|size| {
            let buffer_info = common::buffer_info(size, buffer_usage());
            // SAFETY: a valid buffer info; destroyed before its allocation.
            unsafe { staging.create_buffer(&buffer_info, &info) }.unwrap()
        })
        .collect()
}

/// Fills every resource of `live` with its pattern through the GPU (images end in
/// `TRANSFER_SRC_OPTIMAL`).
fn upload(ctx: &TestContext, staging: &StandardMemoryAllocator, live: &[Live]) {
    let mut uploads = staging_buffers(staging, live.iter().map(|l| l.resource.bytes()));
    for (l, (_, alloc)) in live.iter().zip(&mut uploads) {
        fill(alloc, l.seed, l.resource.bytes());
    }
    ctx.submit(|d, cmd| {
        for (l, (src, _)) in live.iter().zip(&uploads) {
            // SAFETY: the resources are bound and idle; new images are in UNDEFINED.
            unsafe {
                match l.resource {
                    Resource::Buffer(b, size) => {
                        d.cmd_copy_buffer(cmd, *src, b, &[vk::BufferCopy::default().size(size)])
                    }
                    Resource::Image(image, side) => {
                        use vk::ImageLayout as L;
                        common::transition(d, cmd, image, L::UNDEFINED, L::TRANSFER_DST_OPTIMAL);
                        let region = common::image_copy(side, side);
                        d.cmd_copy_buffer_to_image(
                            cmd,
                            *src,
                            image,
                            L::TRANSFER_DST_OPTIMAL,
                            &[region],
                        );
                        common::transition(
                            d,
                            cmd,
                            image,
                            L::TRANSFER_DST_OPTIMAL,
                            L::TRANSFER_SRC_OPTIMAL,
                        );
                    }
                }
            }
        }
    });
    for (b, a) in uploads {
        // SAFETY: the upload is done.
        unsafe { staging.destroy_buffer(b, a) };
    }
}

/// Reads every resource of `live` back through the GPU and checks its pattern.
fn read_back(ctx: &TestContext, staging: &StandardMemoryAllocator, live: &[Live], what: &str) {
    let readbacks = staging_buffers(staging, live.iter().map(|l| l.resource.bytes()));
    ctx.submit(|d, cmd| {
        for (l, (dst, _)) in live.iter().zip(&readbacks) {
            // SAFETY: bound and idle; images are in TRANSFER_SRC_OPTIMAL; `dst` holds them.
            unsafe { l.resource.cmd_copy_to(d, cmd, *dst) };
        }
        TestContext::transfer_barrier(d, cmd);
    });
    for (l, (_, back)) in live.iter().zip(&readbacks) {
        verify(back, l.seed, l.resource.bytes(), what);
    }
    for (b, a) in readbacks {
        // SAFETY: the readback is done.
        unsafe { staging.destroy_buffer(b, a) };
    }
}

/// `TestDefragmentationIncrementalComplex` with `TestDefragmentationGpu`'s unmovable
/// buffers: the allocator's default pools of 4 MiB blocks hold textures and buffers, 70%
/// freed; the rest, all but a few, are defragmented with Full in passes of at most 1 MiB,
/// moved by GPU copies, while up to 100 new buffers are made before, during and after each
/// pass. Moves happen, memory objects are freed, the unmoved stay where they were, and
/// every texel and byte reads back through the GPU.
#[test]
fn default_pools_defragmented_in_passes_while_new_buffers_arrive() {
    default_pools_case(GpuLayout::lavapipe(), DefragmentationAlgorithm::Full);
}

/// The same with the Fast algorithm, on a discrete GPU with resizable BAR (buffers and
/// textures in its host-visible VRAM type).
#[test]
fn default_pools_defragmented_fast_on_a_discrete_layout() {
    default_pools_case(
        GpuLayout::amd_discrete_rebar(),
        DefragmentationAlgorithm::Fast,
    );
}

/// The same on an integrated GPU with a 64 KiB `bufferImageGranularity`: every destination
/// keeps textures and buffers on separate pages (the simulated driver checks every bind).
#[test]
fn default_pools_defragmented_on_64_kib_granularity() {
    let layout = GpuLayout {
        name: "integrated-64k-granularity",
        buffer_image_granularity: 64 * KIB,
        ..GpuLayout::intel_integrated()
    };
    default_pools_case(layout, DefragmentationAlgorithm::Full);
}

fn default_pools_case(layout: GpuLayout, algorithm: DefragmentationAlgorithm) {
    let sim = Sim::new(layout);
    let ctx = &sim.ctx;
    let device = sim.memory_device();
    let d = device.ash();
    let allocator = StandardMemoryAllocator::new(
        device.clone(),
        GenericMemoryAllocatorCreateInfo {
            block_sizes: BlockSizeThresholds::uniform(4 * MIB).unwrap(),
            block_arenas: Some(1),
            ..Default::default()
        },
    )
    .unwrap();
    // Staging memory from an allocator of its own, so that the blocks under test hold only
    // the scenario's resources.
    let staging = StandardMemoryAllocator::new_default(device.clone());
    let info = AllocationCreateInfo {
        // Host-visible, so that new buffers get their bytes at once (lavapipe's one type is
        // anyway; on the integrated layout this is its cached device-local type).
        usage: MemoryUsage::AutoPreferDevice(HostAccess::Random),
        ..Default::default()
    };
    let mut rng = Rng(234522);
    let mut seed = 0;
    let mut make_buffer = |rng: &mut Rng| {
        seed += 1;
        let size = rng.range(80 * KIB, 160 * KIB).next_multiple_of(16);
        let buffer_info = common::buffer_info(size, buffer_usage());
        // SAFETY: a valid buffer info; destroyed before its allocation.
        let (buffer, mut alloc) = unsafe { allocator.create_buffer(&buffer_info, &info) }.unwrap();
        // lavapipe's one memory type is host-visible: the pattern is there from the start,
        // so a move that lands on a new buffer shows in its bytes.
        fill(&mut alloc, seed, size);
        Live {
            resource: Resource::Buffer(buffer, size),
            alloc,
            seed,
        }
    };
    let mut live: Vec<Live> = (0..60).map(|_| make_buffer(&mut rng)).collect();
    for i in 0..240u64 {
        let side = *rng.pick(&[32, 64, 128]);
        // SAFETY: a valid image info; destroyed before its allocation.
        let (image, alloc) =
            unsafe { allocator.create_image(&common::texture_info(side), &info) }.unwrap();
        live.push(Live {
            resource: Resource::Image(image, side),
            alloc,
            seed: 10_000 + i,
        });
    }
    for _ in 0..live.len() * 7 / 10 {
        let gone = live.swap_remove(rng.below(live.len() as u64) as usize);
        gone.resource.destroy(d);
    }
    upload(ctx, &staging, &live);
    let blocks_before = allocator.statistics().total.block_count;

    let mut defrag = allocator.defragmentation(&DefragmentationInfo {
        algorithm,
        max_bytes_per_pass: MIB,
        ..Default::default()
    });
    // One in twenty-five stays out of the defragmentation (VMA's 3% not movable); `movable`
    // maps a move's id to its entry of `live`.
    let mut movable = Vec::new();
    let mut places = Vec::new();
    for (i, l) in live.iter_mut().enumerate() {
        if i % 25 == 0 {
            places.push((i, l.alloc.memory(), l.alloc.offset()));
            continue;
        }
        let alignment = l.resource.requirements(d).alignment;
        let id = defrag
            .add(&mut l.alloc, DeviceAlignment::new(alignment).unwrap())
            .unwrap();
        assert_eq!(id, movable.len());
        movable.push(i);
    }
    let mut added: Vec<Live> = Vec::new();
    let mut add = |rng: &mut Rng, added: &mut Vec<Live>| {
        if added.len() < 100 {
            added.push(make_buffer(rng));
        }
    };
    add(&mut rng, &mut added);
    let mut passes = 0;
    while let Some(mut pass) = defrag.next_pass() {
        passes += 1;
        assert!(passes < 1000, "the passes never end");
        add(&mut rng, &mut added);
        let mut moves = Vec::new();
        for m in pass.moves() {
            let old = live[movable[m.id()]].resource;
            let new = old.recreate(d, false);
            new.bind(m.destination());
            moves.push((m.index(), movable[m.id()], old, new));
        }
        ctx.submit(|d, cmd| {
            for &(_, _, old, new) in &moves {
                // SAFETY: both bound and idle; old images are in TRANSFER_SRC_OPTIMAL.
                unsafe { record_move(d, cmd, old, new) };
            }
        });
        add(&mut rng, &mut added);
        for (index, i, old, new) in moves {
            old.destroy(d);
            live[i].resource = new;
            pass.complete(index, &mut live[i].alloc).unwrap();
        }
        pass.end();
        add(&mut rng, &mut added);
    }
    let stats = defrag.finish();
    assert!(stats.moves > 0 && stats.bytes_moved > 0, "{stats:?}");
    assert!(stats.memory_objects_freed > 0, "{stats:?}");
    assert!(passes > 1, "bounded passes: {passes}");
    for &(i, memory, offset) in &places {
        let a = &live[i].alloc;
        assert_eq!((a.memory(), a.offset()), (memory, offset), "not movable");
    }
    let blocks_after = allocator.statistics().total.block_count;
    assert!(
        blocks_after < blocks_before + added.len() as u64,
        "blocks {blocks_before} -> {blocks_after} with {} new buffers",
        added.len()
    );
    read_back(ctx, &staging, &live, "after the defragmentation");
    read_back(ctx, &staging, &added, "made during the defragmentation");
    for l in live.into_iter().chain(added) {
        l.resource.destroy(d);
    }
    drop(allocator);
    drop(staging);
    assert!(ctx.messages().is_empty(), "{:?}", ctx.messages());
    sim.assert_nothing_allocated();
}
