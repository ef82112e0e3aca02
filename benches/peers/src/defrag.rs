//! `--defrag`: ash-memory's defragmentation against VMA's, from the same fragmented state.
//!
//! Both allocators replay one seeded trace: `count` host-visible buffers (ash-memory
//! `Upload`, VMA `CpuToGpu` + `MAPPED`), log-uniform 256 B .. 256 KiB (`--defrag-sizes`),
//! alignments 16 .. 256, each filled with its own pattern; then a random 70 % of them is
//! freed (`--defrag-free-percent`). Each algorithm then
//! runs on a fresh allocator in that state, every move copied on the CPU between the mapped
//! source and destination (no GPU work), and every surviving allocation is checked byte by
//! byte afterwards. Timings are the thread's CPU time: *planning* is `next_pass()` for
//! ash-memory and `vmaBeginDefragmentationPass` for VMA, the copies excluded.
//!
//! `ASH_DEFRAG_PER_CALL=1` also prints each planning call's median, call by call, and
//! `ASH_PERF_CTL` lets `perf record` sample ash-memory's planning only (see [`perf_ctl`]).

use crate::thread_cpu_time;
use crate::trace::Rng;
use crate::vulkan::{self, Vulkan};
use ash_memory::{DefragmentationAlgorithm, MemoryAlloc, MemoryAllocator};
use std::time::Duration;

mod report;
mod vma;

/// One defragmentation to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algo {
    Ash(DefragmentationAlgorithm),
    /// A `VMA_DEFRAGMENTATION_FLAG_ALGORITHM_*_BIT` value.
    Vma(u32),
}

/// `VMA_DEFRAGMENTATION_FLAG_ALGORITHM_{FAST,BALANCED,FULL,EXTENSIVE}_BIT` (VMA's header;
/// vk-mem 0.5 does not export the enum). 0, VMA's default, means BALANCED.
pub const VMA_FAST: u32 = 1;
pub const VMA_BALANCED: u32 = 2;
pub const VMA_FULL: u32 = 4;
pub const VMA_EXTENSIVE: u32 = 8;

impl Algo {
    pub const DEFAULT: [Algo; 5] = [
        Algo::Ash(DefragmentationAlgorithm::Fast),
        Algo::Ash(DefragmentationAlgorithm::Full),
        Algo::Vma(VMA_FAST),
        Algo::Vma(VMA_BALANCED),
        Algo::Vma(VMA_FULL),
    ];
    const KEYS: [(&'static str, Algo); 6] = [
        ("ash-fast", Algo::Ash(DefragmentationAlgorithm::Fast)),
        ("ash-full", Algo::Ash(DefragmentationAlgorithm::Full)),
        ("vma-fast", Algo::Vma(VMA_FAST)),
        ("vma-balanced", Algo::Vma(VMA_BALANCED)),
        ("vma-full", Algo::Vma(VMA_FULL)),
        ("vma-extensive", Algo::Vma(VMA_EXTENSIVE)),
    ];
    pub fn parse(s: &str) -> Option<Algo> {
        Self::KEYS.iter().find(|k| k.0 == s).map(|k| k.1)
    }
    pub fn allocator(self) -> &'static str {
        match self {
            Algo::Ash(_) => "ash-memory",
            Algo::Vma(_) => "VMA (vk-mem 0.5)",
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Algo::Ash(DefragmentationAlgorithm::Fast) => "Fast",
            Algo::Ash(_) => "Full",
            Algo::Vma(VMA_FAST) => "FAST",
            Algo::Vma(VMA_BALANCED) => "BALANCED (default)",
            Algo::Vma(VMA_FULL) => "FULL",
            Algo::Vma(_) => "EXTENSIVE",
        }
    }
}

/// The options of `--defrag`.
#[derive(Clone, Debug)]
pub struct DefragArgs {
    /// Buffers allocated before the frees (`--defrag-count`).
    pub count: usize,
    /// Block size of both allocators (`--defrag-block-mib`).
    pub block_size: u64,
    /// Bytes per pass, 0 = unlimited (`--defrag-max-bytes`).
    pub max_bytes: u64,
    /// Moves per pass, 0 = unlimited (`--defrag-max-moves`).
    pub max_moves: u32,
    /// `--defrag-algorithms ash-fast,ash-full,vma-fast,vma-balanced,vma-full,vma-extensive`.
    pub algorithms: Vec<Algo>,
    /// The buffers' sizes, log-uniform between these bytes (`--defrag-sizes MIN..MAX`).
    pub sizes: (u64, u64),
    /// The percentage of the buffers freed (`--defrag-free-percent P`).
    pub free_percent: usize,
}

impl Default for DefragArgs {
    fn default() -> Self {
        DefragArgs {
            count: 4000,
            block_size: 8 << 20,
            max_bytes: 0,
            max_moves: 0,
            algorithms: Algo::DEFAULT.to_vec(),
            sizes: (256, 256 << 10),
            free_percent: 70,
        }
    }
}

/// The same fragmented state for every allocator.
pub struct Fragmented {
    /// `(size, alignment)` of every buffer, in allocation order.
    pub items: Vec<(u64, u64)>,
    /// The buffers freed, in the order they are freed.
    pub freed: Vec<usize>,
    /// The surviving buffers, ascending.
    pub survivors: Vec<usize>,
    pub memory_type_bits: u32,
    pub seed: u64,
}

impl Fragmented {
    /// `count` buffers of `sizes` (log-uniform), `free_percent` % of them freed.
    pub fn generate(
        count: usize,
        sizes: (u64, u64),
        free_percent: usize,
        seed: u64,
        memory_type_bits: u32,
    ) -> Self {
        let mut rng = Rng::new(seed ^ 0xDEF2_A9F0_0D15_EA5E);
        let items: Vec<(u64, u64)> = (0..count)
            .map(|_| (rng.log_uniform(sizes.0, sizes.1), rng.pow2(16, 256)))
            .collect();
        let mut order: Vec<usize> = (0..count).collect();
        for i in (1..count).rev() {
            order.swap(i, rng.below(i as u64 + 1) as usize);
        }
        let cut = count * free_percent.min(100) / 100;
        let freed = order[..cut].to_vec();
        let mut survivors = order[cut..].to_vec();
        survivors.sort_unstable();
        Fragmented {
            items,
            freed,
            survivors,
            memory_type_bits,
            seed,
        }
    }
    pub fn live_bytes(&self) -> u64 {
        self.survivors.iter().map(|&i| self.items[i].0).sum()
    }
    pub(crate) fn requirements(&self, i: usize) -> ash::vk::MemoryRequirements {
        ash::vk::MemoryRequirements {
            size: self.items[i].0,
            alignment: self.items[i].1,
            memory_type_bits: self.memory_type_bits,
        }
    }
    /// Buffer `i`'s contents.
    pub(crate) fn pattern(&self, i: usize, out: &mut Vec<u8>) {
        out.clear();
        let mut rng = Rng::new(self.seed.wrapping_add(i as u64).wrapping_mul(0x9E37));
        let size = self.items[i].0 as usize;
        while out.len() < size {
            out.extend_from_slice(&rng.next_u64().to_le_bytes());
        }
        out.truncate(size);
    }
    /// Panics, naming the allocator and buffer, unless `bytes` is buffer `i`'s pattern.
    pub(crate) fn check(&self, who: &str, i: usize, bytes: &[u8], expected: &mut Vec<u8>) {
        self.pattern(i, expected);
        if bytes != expected.as_slice() {
            let at = bytes.iter().zip(expected.iter()).position(|(a, b)| a != b);
            panic!(
                "{who}: DATA CORRUPTED after defragmentation: buffer {i} ({} bytes) differs at byte {at:?}",
                bytes.len()
            );
        }
    }
}

/// What one defragmentation did.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    /// The sizes of the memory objects alive before and after (ascending).
    pub sizes_before: Vec<u64>,
    pub sizes_after: Vec<u64>,
    pub blocks_before: u64,
    pub reserved_before: u64,
    pub blocks_after: u64,
    pub reserved_after: u64,
    pub passes: usize,
    pub moves: usize,
    /// Bytes moved as the allocator counts them (VMA: its allocations' sizes, which may be
    /// larger than requested).
    pub bytes_moved: u64,
    /// The requested sizes of the buffers moved, summed (the same measure for both).
    pub requested_moved: u64,
    /// ash-memory: each block's size and the requested bytes of the survivors in it, before
    /// the defragmentation (for the least any defragmentation of that state could move to
    /// reach a given result).
    pub block_live_before: Vec<(u64, u64)>,
    /// ash-memory: after each completed move, in order, the requested bytes moved so far and
    /// the bytes that would stay reserved had the defragmentation stopped there (every block
    /// all of whose allocations had left counted as freed, as the end of the
    /// defragmentation frees it): how many bytes it took to reach a given result.
    pub trajectory: Vec<(u64, u64)>,
    /// ash-memory: after each pass, the planning time so far (that pass's call included) and
    /// the bytes that would stay reserved had the defragmentation stopped there, as in
    /// `trajectory`.
    pub pass_points: Vec<(Duration, u64)>,
    /// `vkFreeMemory` calls during the defragmentation (counted).
    pub objects_freed: u64,
    /// ash-memory: `defragmentation()` and the `add`s; VMA: `vmaBeginDefragmentation`.
    pub setup: Duration,
    /// Every planning call, the last (which finds nothing) included.
    pub planning: Duration,
    pub planning_calls: usize,
    /// The longest planning call.
    pub planning_max: Duration,
    /// Each planning call, in order.
    pub planning_each: Vec<Duration>,
    /// ash-memory: `complete` + `end`; VMA: `vmaEndDefragmentationPass` (and `vmaEndDefragmentation`).
    pub settle: Duration,
    pub copy: Duration,
    pub verified: usize,
}

/// Blocks and bytes reserved since `base`.
pub(crate) fn reserved_since(base: vulkan::Counters) -> (u64, u64) {
    let now = vulkan::counters();
    (
        (now.allocate_calls - base.allocate_calls) - (now.free_calls - base.free_calls),
        now.reserved - base.reserved,
    )
}

pub(crate) fn note_plan(o: &mut Outcome, d: Duration) {
    o.planning += d;
    o.planning_calls += 1;
    o.planning_max = o.planning_max.max(d);
    o.planning_each.push(d);
}

pub fn run_ash(
    vk: &Vulkan,
    f: &Fragmented,
    algorithm: DefragmentationAlgorithm,
    a: &DefragArgs,
) -> Outcome {
    let base = vulkan::counters();
    let allocator = crate::backends::AshMemory::allocator(
        vk,
        ash_memory::GenericMemoryAllocatorCreateInfo {
            block_sizes: ash_memory::BlockSizeThresholds::uniform(a.block_size)
                .expect("block size"),
            block_arenas: crate::backends::ASH_BLOCK_ARENAS.get().copied(),
            ..Default::default()
        },
    );
    let create_info = ash_memory::AllocationCreateInfo {
        usage: ash_memory::MemoryUsage::Upload,
        ..Default::default()
    };
    let mut buf = Vec::new();
    let mut slots: Vec<Option<MemoryAlloc>> = (0..f.items.len())
        .map(|i| {
            let reqs = ash_memory::AllocationRequirements::from_vk(f.requirements(i))
                .expect("requirements");
            let mut alloc = allocator
                .allocate(reqs, ash_memory::AllocationType::Linear, &create_info, None)
                .expect("ash-memory allocate");
            f.pattern(i, &mut buf);
            alloc.write(0, &buf).expect("write the pattern");
            Some(alloc)
        })
        .collect();
    for &i in &f.freed {
        slots[i] = None;
    }
    let mut survivors: Vec<MemoryAlloc> = f
        .survivors
        .iter()
        .map(|&i| slots[i].take().unwrap())
        .collect();
    let mut o = Outcome::default();
    (o.blocks_before, o.reserved_before) = reserved_since(base);
    o.sizes_before = vulkan::live_object_sizes();
    let before = vulkan::counters();
    // Allocations and size of each block, for the trajectory.
    let mut held: std::collections::HashMap<u64, (u64, u64)> = allocator
        .statistics()
        .blocks
        .iter()
        .filter(|b| !b.dedicated)
        .map(|b| (b.memory, (b.statistics.allocation_count, b.size)))
        .collect();
    let mut live_in: std::collections::HashMap<u64, u64> = std::collections::HashMap::new();
    for (alloc, &i) in survivors.iter().zip(&f.survivors) {
        *live_in
            .entry(ash::vk::Handle::as_raw(alloc.memory()))
            .or_default() += f.items[i].0;
    }
    o.block_live_before = held
        .iter()
        .map(|(m, &(_, size))| (size, live_in.get(m).copied().unwrap_or(0)))
        .collect();
    let mut reserved_now = o.reserved_before;
    let mut moved_now = 0;

    let t = thread_cpu_time();
    let info = ash_memory::DefragmentationInfo {
        algorithm,
        max_bytes_per_pass: if a.max_bytes == 0 {
            u64::MAX
        } else {
            a.max_bytes
        },
        max_moves_per_pass: if a.max_moves == 0 {
            usize::MAX
        } else {
            a.max_moves as usize
        },
        ..Default::default()
    };
    let mut defrag = allocator.defragmentation(&info);
    for (k, (alloc, &i)) in survivors.iter_mut().zip(&f.survivors).enumerate() {
        let alignment = ash_memory::DeviceAlignment::new(f.items[i].1).expect("alignment");
        let id = defrag.add(alloc, alignment).expect("add");
        assert_eq!(id, k, "ids follow the order of add");
    }
    o.setup = thread_cpu_time() - t;
    loop {
        perf_ctl(true);
        let t = thread_cpu_time();
        let pass = defrag.next_pass();
        note_plan(&mut o, thread_cpu_time() - t);
        perf_ctl(false);
        let Some(mut pass) = pass else { break };
        let t = thread_cpu_time();
        let mut ids = Vec::new();
        for m in pass.moves() {
            let (src, dst) = (&survivors[m.id()], m.destination());
            let len = m.size() as usize;
            src.invalidate(0, m.size()).expect("invalidate");
            let (s, d) = (
                src.mapped_ptr().expect("mapped source"),
                dst.mapped_ptr().expect("mapped destination"),
            );
            // SAFETY: both ranges are `len` bytes of host-visible mapped memory (the move's
            // size is the source allocation's), in two live allocations that do not overlap
            // (the destination is a new suballocation made while the source is still held),
            // and nothing else touches them (one thread, no GPU work).
            unsafe { std::ptr::copy_nonoverlapping(s.as_ptr(), d.as_ptr(), len) };
            dst.flush(0, m.size()).expect("flush");
            ids.push((m.index(), m.id()));
        }
        o.copy += thread_cpu_time() - t;
        let t = thread_cpu_time();
        for (k, id) in ids {
            let from = ash::vk::Handle::as_raw(survivors[id].memory());
            pass.complete(k, &mut survivors[id]).expect("complete");
            let to = ash::vk::Handle::as_raw(survivors[id].memory());
            if let Some(h) = held.get_mut(&from) {
                h.0 -= 1;
                if h.0 == 0 {
                    reserved_now -= h.1;
                }
            }
            if let Some(h) = held.get_mut(&to) {
                if h.0 == 0 {
                    reserved_now += h.1;
                }
                h.0 += 1;
            }
            moved_now += survivors[id].size();
            o.trajectory.push((moved_now, reserved_now));
        }
        pass.end();
        o.settle += thread_cpu_time() - t;
        o.pass_points.push((o.planning, reserved_now));
    }
    let stats = defrag.finish();
    (o.passes, o.moves, o.bytes_moved) = (stats.passes, stats.moves, stats.bytes_moved);
    // `Move::size` is the allocation's requested size.
    o.requested_moved = stats.bytes_moved;
    o.objects_freed = vulkan::counters().free_calls - before.free_calls;
    if stats.memory_objects_freed as u64 != o.objects_freed {
        eprintln!(
            "warning: ash-memory reports {} memory objects freed, the counting wrapper saw {}",
            stats.memory_objects_freed, o.objects_freed
        );
    }
    (o.blocks_after, o.reserved_after) = reserved_since(base);
    o.sizes_after = vulkan::live_object_sizes();
    for (alloc, &i) in survivors.iter().zip(&f.survivors) {
        let mut bytes = vec![0; alloc.size() as usize];
        alloc.read(0, &mut bytes).expect("read back");
        f.check("ash-memory", i, &bytes, &mut buf);
        o.verified += 1;
    }
    drop(survivors);
    drop(allocator);
    check_released("ash-memory", base);
    o
}

pub(crate) fn check_released(who: &str, base: vulkan::Counters) {
    let (blocks, bytes) = reserved_since(base);
    if blocks != 0 || bytes != 0 {
        eprintln!(
            "warning: {who} kept {blocks} memory objects ({bytes} bytes) after being dropped"
        );
    }
}

/// Runs `--defrag` and prints its tables.
pub fn main(vk: &Vulkan, a: &DefragArgs, runs: usize, seed: u64) {
    let f = Fragmented::generate(
        a.count,
        a.sizes,
        a.free_percent,
        seed,
        vk.buffer_memory_type_bits(),
    );
    let mut results: Vec<Vec<Outcome>> = vec![Vec::new(); a.algorithms.len()];
    // Round-robin over the algorithms, so that machine noise hits them alike.
    for _ in 0..runs {
        for (k, &algo) in a.algorithms.iter().enumerate() {
            let o = match algo {
                Algo::Ash(alg) => run_ash(vk, &f, alg, a),
                Algo::Vma(flags) => vma::run(vk, &f, flags, a),
            };
            eprintln!(
                "defrag {:<10} {:<18} {:>3} -> {:>3} blocks, {:>5} moves, {:>8.2} MiB moved, planning {:>9.1} us in {} calls",
                algo.allocator(),
                algo.name(),
                o.blocks_before,
                o.blocks_after,
                o.moves,
                crate::mib(o.bytes_moved),
                o.planning.as_secs_f64() * 1e6,
                o.planning_calls
            );
            results[k].push(o);
        }
    }
    if std::env::var_os("ASH_DEFRAG_PER_CALL").is_some() {
        for (k, algo) in a.algorithms.iter().enumerate() {
            let calls = results[k]
                .iter()
                .map(|o| o.planning_each.len())
                .max()
                .unwrap_or(0);
            let each: Vec<String> = (0..calls)
                .map(|c| {
                    let mut v: Vec<f64> = results[k]
                        .iter()
                        .filter_map(|o| o.planning_each.get(c))
                        .map(|d| d.as_secs_f64() * 1e6)
                        .collect();
                    v.sort_by(f64::total_cmp);
                    format!("{:.0}", v[v.len() / 2])
                })
                .collect();
            eprintln!(
                "per call {} {}: {}",
                algo.allocator(),
                algo.name(),
                each.join(" ")
            );
        }
    }
    report::print(a, &f, runs, &results);
}

/// Profiling hook: with `ASH_PERF_CTL=<control fifo>,<ack fifo>` (the fifos of `perf record
/// -D -1 --control fifo:<control>,<ack>`), sampling runs only while ash-memory plans a pass.
fn perf_ctl(on: bool) {
    use std::fs::{File, OpenOptions};
    use std::io::{Read, Write};
    fn open() -> Option<(File, File)> {
        let v = std::env::var("ASH_PERF_CTL").ok()?;
        let (control, ack) = v.split_once(',').expect("ASH_PERF_CTL=<control>,<ack>");
        let control = OpenOptions::new()
            .write(true)
            .open(control)
            .expect("control fifo");
        Some((control, File::open(ack).expect("ack fifo")))
    }
    thread_local! {
        static CTL: Option<(File, File)> = open();
    }
    CTL.with(|ctl| {
        if let Some((mut control, mut ack)) = ctl.as_ref().map(|(c, a)| (c, a)) {
            let command: &[u8] = if on { b"enable\n" } else { b"disable\n" };
            control.write_all(command).expect("perf control");
            let mut reply = [0u8; 5];
            let _ = ack.read(&mut reply);
        }
    });
}
