//! Random walks over custom pools of every suballocator: allocations made and freed at random
//! with defragmentations (Fast and Full, bounded and not) in between, with debug margins,
//! non-coherent memory and a 64 KiB granularity. After every step the data, the ranges, the
//! pool's block count limits and its statistics are checked against the live allocations;
//! at the end every memory object is gone.

mod common;
mod support;

use ash_memory::*;
use support::{check_triples, fill, verify, GpuLayout, Rng, Sim, KIB, MIB};

const MIN_BLOCKS: usize = 1;
const MAX_BLOCKS: usize = 4;

/// One live allocation of the walk: the allocation, its pattern seed and its size.
type Live = Option<(MemoryAlloc, u64, u64)>;

/// How a walk goes.
struct Walk {
    layout: GpuLayout,
    /// `Some` picks this memory type (the non-coherent one), else host-visible `Upload`.
    memory_type: Option<u32>,
    margin: u64,
    /// The pool's block size.
    block: u64,
    /// The largest request.
    max_size: u64,
    /// A slot pool's slot size: larger requests (margins included) are errors.
    slot: Option<u64>,
    steps: u64,
    seed: u64,
}

fn request(device: &MemoryDevice, size: u64, alignment: u64) -> AllocationRequirements {
    AllocationRequirements {
        layout: DeviceLayout::from_size_alignment(size, alignment).unwrap(),
        memory_type_bits: device.memory_properties().all_types_mask(),
        prefers_dedicated_allocation: false,
        requires_dedicated_allocation: false,
    }
}

fn walk<S: Suballocator + Send + Sync + 'static>(walk: Walk) {
    let sim = Sim::new(walk.layout.clone());
    let device = sim.memory_device();
    let allocator = StandardMemoryAllocator::new(
        device.clone(),
        GenericMemoryAllocatorCreateInfo {
            debug: DebugOptions {
                margin: walk.margin,
                ..Default::default()
            },
            ..Default::default()
        },
    )
    .unwrap();
    let pool = allocator
        .create_pool::<S>(&PoolCreateInfo {
            name: Some("walk".into()),
            memory_type: match walk.memory_type {
                Some(index) => PoolMemoryType::Index(index),
                None => PoolMemoryType::Find {
                    memory_type_bits: u32::MAX,
                    usage: MemoryUsage::Upload,
                },
            },
            block_size: walk.block,
            min_block_count: MIN_BLOCKS,
            max_block_count: MAX_BLOCKS,
            block_arenas: Some(1),
            ..Default::default()
        })
        .unwrap();
    let info = AllocationCreateInfo {
        usage: MemoryUsage::Upload,
        ..Default::default()
    };
    let granularity = walk.layout.buffer_image_granularity;
    let mut rng = Rng(walk.seed);
    let mut live: Vec<Live> = Vec::new();
    let mut next_seed = walk.seed << 20;
    for step in 0..walk.steps {
        let roll = rng.below(100);
        if roll < 55 {
            let size = 1 + rng.below(walk.max_size);
            let alignment = 1 << rng.below(9);
            let ty = if rng.below(4) == 0 {
                AllocationType::NonLinear
            } else {
                AllocationType::Linear
            };
            match pool.allocate(request(&device, size, alignment), ty, &info, None) {
                Ok(mut a) => {
                    assert!(!a.is_dedicated(), "a pool never makes dedicated memory");
                    // As requested; on non-coherent memory, rounded up to whole atoms.
                    let atom = walk.layout.non_coherent_atom_size;
                    let expected = match walk.memory_type {
                        Some(_) => size.div_ceil(atom) * atom,
                        None => size,
                    };
                    assert_eq!(a.size(), expected);
                    next_seed += 1;
                    fill(&mut a, next_seed, size);
                    live.push(Some((a, next_seed, size)));
                }
                Err(AllocationError::PoolFull { max_blocks }) => {
                    assert_eq!(max_blocks, MAX_BLOCKS);
                    assert_eq!(pool.block_count(), MAX_BLOCKS, "full with room for blocks");
                }
                Err(
                    AllocationError::SuballocatorBlockSizeExceeded
                    | AllocationError::BlockSizeExceeded { .. },
                ) if walk.slot.is_some_and(|slot| {
                    // The allocation starts past the margin, aligned, in a slot.
                    walk.margin.next_multiple_of(alignment) + size + walk.margin > slot
                }) => {}
                Err(e) => panic!(
                    "{} margin {}: step {step}: {size} bytes at {alignment}: {e}",
                    walk.layout.name, walk.margin
                ),
            }
        } else if roll < 95 {
            let held: Vec<usize> = (0..live.len()).filter(|&i| live[i].is_some()).collect();
            if !held.is_empty() {
                let i = held[rng.below(held.len() as u64) as usize];
                live[i] = None;
            }
        } else {
            defragment(&pool, &mut live, &mut rng);
        }
        check(&pool, &live, &sim, walk.block, granularity, step);
        if step % 25 == 0 {
            for (a, seed, size) in live.iter().flatten() {
                verify(a, *seed, *size, &format!("step {step}"));
            }
        }
    }
    for (a, seed, size) in live.iter().flatten() {
        verify(a, *seed, *size, "the end");
    }
    drop(live);
    assert!(
        pool.block_count() <= MIN_BLOCKS + 1,
        "{} blocks kept empty",
        pool.block_count()
    );
    drop(pool);
    drop(allocator);
    sim.assert_nothing_allocated();
}

/// The pool against the live allocations: block counts within the limits, statistics that
/// count them, ranges inside live memory without overlap or granularity conflicts.
fn check<S: Suballocator + Send + Sync + 'static>(
    pool: &MemoryPool<S>,
    live: &[Live],
    sim: &Sim,
    block: u64,
    granularity: u64,
    step: u64,
) {
    let blocks = pool.block_count();
    assert!(
        (MIN_BLOCKS..=MAX_BLOCKS).contains(&blocks),
        "step {step}: {blocks} blocks"
    );
    let stats = pool.statistics().total;
    let count = live.iter().flatten().count() as u64;
    assert_eq!(stats.allocation_count, count, "step {step}: {stats:?}");
    assert_eq!(stats.block_count, blocks as u64, "step {step}: {stats:?}");
    assert_eq!(stats.dedicated_count, 0);
    assert_eq!(stats.reserved_bytes, blocks as u64 * block, "step {step}");
    assert!(stats.allocations.total <= stats.reserved_bytes);
    let triples: Vec<_> = live.iter().flatten().map(|(a, _, _)| (a, 1)).collect();
    check_triples(&triples, &sim.state, granularity);
}

/// A whole defragmentation of every live allocation, with a random algorithm and bounds;
/// moves are copied on the host, a few skipped, and a few allocations freed between passes.
fn defragment<S: Suballocator + Send + Sync + 'static>(
    pool: &MemoryPool<S>,
    live: &mut [Live],
    rng: &mut Rng,
) {
    let info = DefragmentationInfo {
        algorithm: if rng.below(2) == 0 {
            DefragmentationAlgorithm::Fast
        } else {
            DefragmentationAlgorithm::Full
        },
        max_bytes_per_pass: if rng.below(2) == 0 {
            DeviceSize::MAX
        } else {
            64 * KIB + rng.below(256 * KIB)
        },
        max_moves_per_pass: if rng.below(2) == 0 {
            usize::MAX
        } else {
            1 + rng.below(8) as usize
        },
        ..Default::default()
    };
    let mut defrag = pool.defragmentation(&info);
    // The registration ids are the order of `add`.
    let mut ids = Vec::new();
    for (i, slot) in live.iter_mut().enumerate() {
        if let Some((a, _, _)) = slot {
            defrag.add(a, DeviceAlignment::MIN).unwrap();
            ids.push(i);
        }
    }
    let registered = ids.len();
    let mut passes = 0;
    while let Some(mut pass) = defrag.next_pass() {
        passes += 1;
        assert!(
            passes <= (allocator::defrag::MAX_MOVES_PER_ALLOCATION + 1) * registered.max(1),
            "the passes never end ({info:?})"
        );
        let open: Vec<usize> = pass.moves().map(|m| m.index()).collect();
        for index in open {
            let id = pass.get(index).unwrap().id();
            let slot = &mut live[ids[id]];
            let (src, _, _) = slot.as_mut().expect("a move of a freed allocation");
            if rng.below(8) == 0 {
                pass.skip(index).unwrap();
                continue;
            }
            support::defrag::copy_and_complete(&mut pass, index, src).unwrap();
        }
        pass.end();
        // The application frees some between passes.
        if rng.below(3) == 0 {
            let held: Vec<usize> = (0..live.len()).filter(|&i| live[i].is_some()).collect();
            if !held.is_empty() {
                live[held[rng.below(held.len() as u64) as usize]] = None;
            }
        }
    }
    defrag.finish();
}

/// Sizes up to 96 KiB in 1 MiB blocks (at most 4 of them).
fn walks(seed: u64) -> impl Iterator<Item = Walk> {
    [
        (GpuLayout::nvidia_discrete(), None, 0),
        (GpuLayout::nvidia_discrete(), None, 64),
        (GpuLayout::mobile(), Some(1), 0),
        (GpuLayout::large_granularity(), None, 16),
    ]
    .into_iter()
    .enumerate()
    .map(move |(i, (layout, memory_type, margin))| Walk {
        layout,
        memory_type,
        margin,
        block: MIB,
        max_size: 96 * KIB,
        slot: None,
        steps: 300,
        seed: seed + i as u64,
    })
}

#[test]
fn free_list_pools_walk() {
    walks(1).for_each(walk::<FreeListAllocator>);
}

#[test]
fn buddy_pools_walk() {
    walks(2).for_each(walk::<BuddyAllocator>);
}

#[test]
fn bump_pools_walk() {
    walks(3).for_each(walk::<BumpAllocator>);
}

#[test]
fn ring_pools_walk() {
    walks(4).for_each(walk::<RingAllocator>);
}

#[test]
fn slot_pools_walk() {
    // Requests up to the slot (margins included) and past it, 16 slots a block.
    walks(5)
        .map(|w| Walk {
            block: 64 * KIB,
            max_size: 5 * KIB,
            slot: Some(4 * KIB),
            ..w
        })
        .for_each(walk::<SlotAllocator<{ 4 * 1024 }>>);
}
