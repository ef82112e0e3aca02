//! Peer benchmark for ash-memory: identical seeded traces replayed through ash-memory,
//! AMD VMA (vk-mem 0.5) and gpu-allocator 0.28 on one Vulkan device, in one process.
//!
//! ```text
//! cargo run --release --manifest-path benches/peers/Cargo.toml -- [--threads 1,2] [--quick]
//!     [--runs N] [--workloads churn,burst,frame,mixed,large,tiny]
//!     [--allocators ash-memory,vma,gpu-allocator,vulkano,null,offset-allocator,free-list]
//!     [--seed S] [--ash-block-arenas N] [--block-mib M] [--ash-debug margin=16,fill,log,backtrace,all]
//!     [--ash-strategy min-memory,min-time,min-offset] [--custom SPEC]...
//! cargo run --release --manifest-path benches/peers/Cargo.toml -- --defrag [--runs N] [--seed S]
//!     [--defrag-count N] [--defrag-block-mib M] [--defrag-max-bytes B] [--defrag-max-moves N]
//!     [--defrag-sizes MIN..MAX] [--defrag-free-percent P]
//!     [--defrag-algorithms ash-fast,ash-full,vma-fast,vma-balanced,vma-full,vma-extensive]
//! ```
//!
//! `offset-allocator` is the bare algorithm, one per thread (no Vulkan, no alignment, no
//! lock). `null` (the harness alone) and `free-list` (ash-memory's `FreeListAllocator` alone,
//! one per thread on a 32 GiB region, alignment as requested, no Vulkan, no lock) run only
//! when listed: with `ash-memory` in the same run they split its time into the harness, the
//! suballocator, and what the allocator adds around it.
//!
//! `--ash-debug` adds one ash-memory row per listed `DebugOptions` setting (`margin[=N]`,
//! 16 bytes by default; `fill`; `log`; `backtrace`; `all[=N]`), each compared with the plain
//! ash-memory row of the same run. `log` runs with no logger installed: it measures the
//! cost of the check and the bookkeeping, not of writing log records.
//!
//! `--custom SPEC` (repeatable) adds one workload row per spec, named by its spec text; see
//! `custom.rs` for the syntax (`live=100k,steps=200k,sizes=16..4k,align=16..256,order=fifo`).
//! With `--custom` and no `--workloads`, only the custom rows run.
//!
//! `--defrag` replaces the workloads: it fragments ash-memory and VMA with the same trace of
//! host-visible buffers, runs each defragmentation algorithm on that state with the moves
//! copied by memcpy, verifies every surviving buffer, and prints the moves, the memory given
//! back and the planning time (see `defrag.rs`). `--defrag-max-bytes` / `--defrag-max-moves`
//! bound each pass of both allocators (0, the default: unlimited); `--defrag-block-mib` is
//! the block size of both (8 by default). `--defrag-sizes MIN..MAX` sets the buffers' sizes
//! in bytes (log-uniform, 256..262144 by default) and `--defrag-free-percent` the share freed
//! (70 by default). `--runs` defaults to 5 there.

mod backends;
mod custom;
mod debug_cost;
mod defrag;
mod trace;
mod vulkan;

use backends::{Backend, DebugVariant};
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering::{Acquire, Relaxed};
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use trace::{ImageShape, Op, Trace, TraceParams, Workload};
use vulkan::Vulkan;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Peer {
    AshMemory,
    Vma,
    GpuAllocator,
    Vulkano,
    /// No allocator at all: the harness's own cost and its thread-scaling ceiling.
    Null,
    /// The bare `offset-allocator` algorithm, one per thread: no Vulkan, no alignment, no lock.
    OffsetAllocator,
    /// ash-memory's free list alone, one per thread (`--allocators free-list`).
    FreeList,
    /// ash-memory with one `DebugOptions` setting (`--ash-debug`).
    AshDebug(DebugVariant),
    /// ash-memory with every allocation made with one `AllocationStrategy` (`--ash-strategy`).
    AshStrategy(ash_memory::AllocationStrategy),
}

impl Peer {
    const ALL: [Peer; 5] = [
        Peer::AshMemory,
        Peer::Vma,
        Peer::GpuAllocator,
        Peer::Vulkano,
        Peer::OffsetAllocator,
    ];
    fn name(self) -> String {
        match self {
            Peer::AshMemory => "ash-memory".into(),
            Peer::Vma => "VMA (vk-mem 0.5)".into(),
            Peer::GpuAllocator => "gpu-allocator 0.28".into(),
            Peer::Vulkano => "vulkano 0.35".into(),
            Peer::Null => "null (harness only)".into(),
            Peer::OffsetAllocator => "offset-allocator (bare)".into(),
            Peer::FreeList => "free list (bare)".into(),
            Peer::AshDebug(v) => v.label(),
            Peer::AshStrategy(st) => format!("ash-memory {st:?}"),
        }
    }
    fn key(self) -> &'static str {
        match self {
            Peer::AshMemory => "ash-memory",
            Peer::Vma => "vma",
            Peer::GpuAllocator => "gpu-allocator",
            Peer::Vulkano => "vulkano",
            Peer::Null => "null",
            Peer::OffsetAllocator => "offset-allocator",
            Peer::FreeList => "free-list",
            Peer::AshDebug(_) => "ash-debug",
            Peer::AshStrategy(_) => "ash-strategy",
        }
    }
    /// One measured replay of `traces` (one per thread) on a freshly created allocator.
    fn run_once(
        self,
        vk: &Vulkan,
        vulkano: &OnceLock<backends::VulkanoDevice>,
        traces: &[Trace],
    ) -> RunResult {
        match self {
            Peer::AshMemory => run_once(backends::AshMemory::new(vk, Default::default()), traces),
            Peer::AshDebug(v) => run_once(backends::AshMemory::new(vk, v.options()), traces),
            Peer::AshStrategy(st) => run_once(
                backends::AshMemory::with_strategy(vk, Default::default(), st),
                traces,
            ),
            Peer::Vma => run_once(backends::Vma::new(vk), traces),
            Peer::GpuAllocator => run_once(backends::GpuAllocator::new(vk), traces),
            Peer::Vulkano => {
                let device = vulkano.get_or_init(|| backends::VulkanoDevice::new(vk));
                run_once(backends::Vulkano::new(device), traces)
            }
            Peer::Null => run_once(backends::Null, traces),
            Peer::OffsetAllocator => run_once(backends::OffsetAllocator::new(traces.len()), traces),
            Peer::FreeList => run_once(backends::BareFreeList::new(traces.len()), traces),
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct RunResult {
    wall: Duration,
    /// CPU time of the replay threads, summed.
    cpu: Duration,
    allocate_calls: u64,
    peak_reserved: u64,
    leaked_reserved: u64,
}

fn replay<B: Backend>(b: &B, t: &Trace) {
    let mut slots: Vec<Option<B::Handle>> = (0..t.slots).map(|_| None).collect();
    for op in &t.ops {
        match *op {
            Op::Alloc { slot, req } => slots[slot as usize] = Some(b.allocate(&req)),
            Op::Free { slot } => b.free(slots[slot as usize].take().expect("free of empty slot")),
        }
    }
}

fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid out-pointer; CLOCK_THREAD_CPUTIME_ID is always available on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Pins the calling thread to CPU `i` (modulo the CPUs this process may use), so that replay
/// threads run on different cores from their first operation. Left to itself, the kernel
/// starts new threads next to their parent and moves them apart only at its next load
/// balance, milliseconds later: long enough, in runs of 10 to 30 ms, to serialize a good part
/// of a multi-thread run whatever the allocator.
fn pin_to_cpu(i: usize) {
    // SAFETY: plain libc calls on a zeroed `cpu_set_t` owned here; failure is ignored (the
    // thread then runs wherever the kernel puts it).
    unsafe {
        let mut allowed: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut allowed) != 0 {
            return;
        }
        let cpus: Vec<usize> = (0..libc::CPU_SETSIZE as usize)
            .filter(|&c| libc::CPU_ISSET(c, &allowed))
            .collect();
        if cpus.is_empty() {
            return;
        }
        let mut one: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpus[i % cpus.len()], &mut one);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &one);
    }
}

/// A barrier that spins: the threads leave it at the same moment, each already running on
/// its core, instead of waking one by one from a futex.
struct SpinBarrier {
    arrived: AtomicUsize,
    count: usize,
}

impl SpinBarrier {
    fn wait(&self) {
        self.arrived.fetch_add(1, Relaxed);
        while self.arrived.load(Acquire) < self.count {
            std::hint::spin_loop();
        }
    }
}

fn run_once<B: Backend>(backend: B, traces: &[Trace]) -> RunResult {
    let before = vulkan::counters();
    vulkan::reset_peak();
    let barrier = SpinBarrier {
        arrived: AtomicUsize::new(0),
        count: traces.len(),
    };
    let spans: Vec<(Instant, Instant, Duration)> = std::thread::scope(|s| {
        let handles: Vec<_> = traces
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let (b, barrier) = (&backend, &barrier);
                s.spawn(move || {
                    pin_to_cpu(i);
                    b.bind_thread(i);
                    barrier.wait();
                    let cpu0 = thread_cpu_time();
                    let start = Instant::now();
                    replay(b, t);
                    let end = Instant::now();
                    (start, end, thread_cpu_time() - cpu0)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("replay thread panicked"))
            .collect()
    });
    let start = spans.iter().map(|s| s.0).min().unwrap();
    let end = spans.iter().map(|s| s.1).max().unwrap();
    let after = vulkan::counters();
    let peak_reserved = vulkan::peak_reserved() - before.reserved;
    drop(backend);
    let leaked_reserved = vulkan::counters().reserved.saturating_sub(before.reserved);
    RunResult {
        wall: end - start,
        cpu: spans.iter().map(|s| s.2).sum(),
        allocate_calls: after.allocate_calls - before.allocate_calls,
        peak_reserved,
        leaked_reserved,
    }
}

struct Cell {
    workload: Workload,
    threads: usize,
    peer: Peer,
    ns_per_op: f64,
    cpu_ns_per_op: f64,
    best_ns_per_op: f64,
    runs: usize,
    allocate_calls: u64,
    /// Allocations in the run (all threads).
    allocs: u64,
    peak_reserved: u64,
    peak_live: u64,
    /// Median over runs of peak reserved / peak live (the cell's `peak_live`).
    waste: f64,
}

/// What the modelled time charges for each `vkAllocateMemory` call: 100 us, a mid-range
/// figure for a real driver (tens of microseconds to milliseconds; lavapipe's is an mmap).
/// The matching `vkFreeMemory` is not charged.
const DRIVER_CALL_NS: f64 = 100_000.0;

impl Cell {
    /// `vkAllocateMemory` calls per 1,000 allocate+free pairs.
    fn calls_per_k(&self) -> f64 {
        self.allocate_calls as f64 * 1000.0 / self.allocs as f64
    }
    /// The measured time plus [`DRIVER_CALL_NS`] per `vkAllocateMemory`, per allocate+free.
    fn modelled_ns(&self) -> f64 {
        self.ns_per_op + self.allocate_calls as f64 * DRIVER_CALL_NS / self.allocs as f64
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn median_u64(v: &mut [u64]) -> u64 {
    v.sort_unstable();
    v[v.len() / 2]
}

struct Args {
    threads: Vec<usize>,
    quick: bool,
    runs: usize,
    workloads: Vec<Workload>,
    peers: Vec<Peer>,
    seed: u64,
    /// Stop repeating a slow allocator once its runs for one cell took this long.
    cell_budget: Duration,
    /// `--ash-debug`: extra ash-memory rows.
    ash_debug: Vec<DebugVariant>,
    /// `--ash-strategy`: extra ash-memory rows, one per allocation strategy.
    ash_strategy: Vec<ash_memory::AllocationStrategy>,
    /// `--defrag`: the defragmentation comparison instead of the workloads.
    defrag: Option<defrag::DefragArgs>,
    /// `--custom SPEC`, in the order given.
    custom: Vec<custom::CustomSpec>,
}

fn parse_args() -> Args {
    let mut a = Args {
        threads: vec![1, 2],
        quick: false,
        runs: 0,
        workloads: Workload::ALL.to_vec(),
        peers: Peer::ALL.to_vec(),
        seed: 0x5EED_A11C,
        cell_budget: Duration::from_secs(25),
        ash_debug: Vec::new(),
        ash_strategy: Vec::new(),
        defrag: None,
        custom: Vec::new(),
    };
    let mut workloads_given = false;
    let mut defrag = defrag::DefragArgs::default();
    let mut it = std::env::args().skip(1);
    let usage =
        "usage: peers [--threads 1,2] [--quick] [--runs N] [--workloads churn,burst,frame,mixed,large,tiny] \
                 [--allocators ash-memory,vma,gpu-allocator,vulkano,null,offset-allocator,free-list] [--seed S] [--ash-block-arenas N] \
                 [--block-mib M] [--ash-debug margin=16,fill,log,backtrace,all]\n                 [--ash-strategy min-memory,min-time,min-offset] [--custom SPEC]...\n       \
                 peers --defrag [--runs N] [--seed S] [--defrag-count N] [--defrag-block-mib M] \
                 [--defrag-max-bytes B] [--defrag-max-moves N] [--defrag-sizes MIN..MAX] \
                 [--defrag-free-percent P] [--defrag-algorithms ash-fast,ash-full,vma-fast,vma-balanced,vma-full,vma-extensive]";
    while let Some(arg) = it.next() {
        let mut val = || {
            it.next()
                .unwrap_or_else(|| panic!("{arg} needs a value\n{usage}"))
        };
        match arg.as_str() {
            "--threads" => {
                a.threads = val()
                    .split(',')
                    .map(|s| s.parse().expect("--threads N[,M]"))
                    .collect()
            }
            "--quick" => a.quick = true,
            "--ash-block-arenas" => backends::ASH_BLOCK_ARENAS
                .set(val().parse().expect("--ash-block-arenas N"))
                .expect("--ash-block-arenas given twice"),
            "--block-mib" => backends::BLOCK_SIZE
                .set(val().parse::<u64>().expect("--block-mib M") << 20)
                .expect("--block-mib given twice"),
            "--runs" => a.runs = val().parse().expect("--runs N"),
            "--seed" => a.seed = val().parse().expect("--seed S"),
            "--custom" => a.custom.push(
                custom::CustomSpec::parse(&val())
                    .unwrap_or_else(|e| panic!("--custom: {e}\n{}", custom::HELP)),
            ),
            "--workloads" => {
                workloads_given = true;
                a.workloads = val()
                    .split(',')
                    .map(|s| Workload::parse(s).unwrap_or_else(|| panic!("unknown workload {s}")))
                    .collect()
            }
            "--allocators" => {
                a.peers = val()
                    .split(',')
                    .map(|s| {
                        Peer::ALL
                            .into_iter()
                            .chain([Peer::Null, Peer::FreeList])
                            .find(|p| p.key() == s)
                            .unwrap_or_else(|| panic!("unknown allocator {s}"))
                    })
                    .collect()
            }
            "--ash-debug" => {
                a.ash_debug = val()
                    .split(',')
                    .map(|s| {
                        DebugVariant::parse(s).unwrap_or_else(|| panic!("unknown debug option {s}"))
                    })
                    .collect()
            }
            "--ash-strategy" => {
                a.ash_strategy = val()
                    .split(',')
                    .map(|s| {
                        backends::parse_strategy(s)
                            .unwrap_or_else(|| panic!("unknown strategy {s}"))
                    })
                    .collect()
            }
            "--defrag" => a.defrag = Some(defrag::DefragArgs::default()),
            "--defrag-count" => defrag.count = val().parse().expect("--defrag-count N"),
            "--defrag-block-mib" => {
                defrag.block_size = val().parse::<u64>().expect("--defrag-block-mib M") << 20
            }
            "--defrag-max-bytes" => defrag.max_bytes = val().parse().expect("--defrag-max-bytes B"),
            "--defrag-max-moves" => defrag.max_moves = val().parse().expect("--defrag-max-moves N"),
            "--defrag-sizes" => {
                let v = val();
                let (lo, hi) = v.split_once("..").expect("--defrag-sizes MIN..MAX");
                defrag.sizes = (
                    lo.parse().expect("--defrag-sizes MIN..MAX"),
                    hi.parse().expect("--defrag-sizes MIN..MAX"),
                )
            }
            "--defrag-free-percent" => {
                defrag.free_percent = val().parse().expect("--defrag-free-percent P")
            }
            "--defrag-algorithms" => {
                defrag.algorithms = val()
                    .split(',')
                    .map(|s| {
                        defrag::Algo::parse(s).unwrap_or_else(|| panic!("unknown algorithm {s}"))
                    })
                    .collect()
            }
            "-h" | "--help" => {
                println!("{usage}\n\n{}", custom::HELP);
                std::process::exit(0);
            }
            _ => panic!("unknown argument {arg}\n{usage}"),
        }
    }
    if !a.custom.is_empty() {
        if !workloads_given {
            a.workloads.clear();
        }
        a.workloads
            .extend((0..a.custom.len()).map(Workload::Custom));
        custom::SPECS
            .set(std::mem::take(&mut a.custom))
            .expect("specs registered once");
    }
    if a.runs == 0 {
        a.runs = if a.quick { 3 } else { 5 };
    }
    if a.defrag.is_some() {
        a.defrag = Some(defrag);
    }
    // The debug rows go right after the plain ash-memory row, their baseline.
    if !a.ash_debug.is_empty() {
        let at = match a.peers.iter().position(|&p| p == Peer::AshMemory) {
            Some(i) => i + 1,
            None => {
                a.peers.insert(0, Peer::AshMemory);
                1
            }
        };
        for (k, &v) in a.ash_debug.iter().enumerate() {
            a.peers.insert(at + k, Peer::AshDebug(v));
        }
    }
    // The strategy rows likewise, after the plain ash-memory row (and its debug rows).
    if !a.ash_strategy.is_empty() {
        let at = match a
            .peers
            .iter()
            .rposition(|&p| matches!(p, Peer::AshMemory | Peer::AshDebug(_)))
        {
            Some(i) => i + 1,
            None => {
                a.peers.insert(0, Peer::AshMemory);
                1
            }
        };
        for (k, &st) in a.ash_strategy.iter().enumerate() {
            a.peers.insert(at + k, Peer::AshStrategy(st));
        }
    }
    if a.quick {
        a.cell_budget = Duration::from_secs(3);
    }
    a
}

fn image_shapes(vk: &Vulkan) -> Vec<ImageShape> {
    use ash::vk::{Format, ImageUsageFlags as U};
    let kinds = [
        (Format::R8G8B8A8_UNORM, U::SAMPLED | U::TRANSFER_DST, true),
        (
            Format::R16G16B16A16_SFLOAT,
            U::SAMPLED | U::COLOR_ATTACHMENT,
            false,
        ),
        (
            Format::D32_SFLOAT,
            U::SAMPLED | U::DEPTH_STENCIL_ATTACHMENT,
            false,
        ),
        (Format::R32_SFLOAT, U::SAMPLED | U::STORAGE, false),
    ];
    let mut shapes = Vec::new();
    for (format, usage, mipped) in kinds {
        for k in 0..8u32 {
            let extent = 16u32 << k; // 16 .. 2048
            let mips = if mipped {
                32 - extent.leading_zeros()
            } else {
                1
            };
            shapes.push(ImageShape {
                reqs: vk.image_requirements(format, extent, mips, usage),
                // Small images are common, big ones rare: weight halves per doubling.
                weight: 1.0 / f64::from(1u32 << k),
            });
        }
    }
    shapes
}

/// How much faster 2 threads finish 2 units of pure CPU work than 1 thread finishes 1: about
/// 2.0 on an idle 2-core machine, about 1.0 when other processes leave only one core.
fn parallelism_probe() -> f64 {
    fn work() -> u64 {
        let mut x = 0x1234_5678_9abc_def0u64;
        for _ in 0..30_000_000u32 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
        }
        x
    }
    let t = Instant::now();
    std::hint::black_box(work());
    let one = t.elapsed();
    let t = Instant::now();
    std::thread::scope(|s| {
        let a = s.spawn(work);
        let b = s.spawn(work);
        std::hint::black_box((a.join().unwrap(), b.join().unwrap()));
    });
    let two = t.elapsed();
    2.0 * one.as_secs_f64() / two.as_secs_f64()
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "n/a".into())
}

pub(crate) fn mib(b: u64) -> f64 {
    b as f64 / (1 << 20) as f64
}

fn main() {
    let args = parse_args();
    let vk = Vulkan::new();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let buffer_bits = vk.buffer_memory_type_bits();
    let images = image_shapes(&vk);
    println!(
        "# ash-memory peer benchmark\n\ndevice: {} (Vulkan {}.{}.{}), {} memory type(s), {} heap(s); {} CPU core(s); runs: {}{}\n",
        vk.device_name,
        ash::vk::api_version_major(vk.properties.api_version),
        ash::vk::api_version_minor(vk.properties.api_version),
        ash::vk::api_version_patch(vk.properties.api_version),
        vk.memory_properties.memory_type_count,
        vk.memory_properties.memory_heap_count,
        cores,
        args.runs,
        if args.quick { " (--quick: counts / 4)" } else { "" },
    );
    if let Some(d) = &args.defrag {
        println!("load average before: {}", load_average());
        defrag::main(&vk, d, args.runs, args.seed);
        println!("\nload average after: {}", load_average());
        return;
    }
    let probe_before = parallelism_probe();
    println!(
        "before the run: load average {}, 2-thread parallelism probe {:.2}x (2.0 = two free cores)",
        load_average(),
        probe_before
    );
    let base_divisor = if args.quick { 4 } else { 1 };
    let mut cells: Vec<Cell> = Vec::new();
    let vulkano = OnceLock::new();
    for &w in &args.workloads {
        // N threads share the workload: each replays its own seeded trace with every count
        // divided by N, so the total work and live footprint match the 1-thread run.
        let traces: Vec<Vec<Trace>> = args
            .threads
            .iter()
            .map(|&threads| {
                let params = TraceParams {
                    buffer_bits,
                    images: &images,
                    divisor: base_divisor * threads as u64,
                };
                (0..threads)
                    .map(|i| trace::generate(w, args.seed.wrapping_add(i as u64 * 7919), &params))
                    .collect()
            })
            .collect();
        let cells_here = args.threads.len() * args.peers.len();
        let mut results: Vec<Vec<RunResult>> = vec![Vec::new(); cells_here];
        let mut spent = vec![Duration::ZERO; cells_here];
        // Round-robin over thread counts and allocators so that machine noise (other
        // processes on the shared cores) hits all of them alike.
        for _run in 0..args.runs {
            for (ti, &threads) in args.threads.iter().enumerate() {
                for (pi, &peer) in args.peers.iter().enumerate() {
                    let k = ti * args.peers.len() + pi;
                    if !results[k].is_empty() && spent[k] > args.cell_budget {
                        continue;
                    }
                    let r = peer.run_once(&vk, &vulkano, &traces[ti]);
                    if r.leaked_reserved != 0 {
                        eprintln!(
                            "warning: {} kept {} bytes reserved after being dropped ({} {}t)",
                            peer.name(),
                            r.leaked_reserved,
                            w.name(),
                            threads
                        );
                    }
                    spent[k] += r.wall;
                    results[k].push(r);
                }
            }
        }
        for (ti, &threads) in args.threads.iter().enumerate() {
            let allocs: u64 = traces[ti].iter().map(|t| t.allocs).sum();
            // Peak live bytes, from the traces alone, so every allocator is divided by the same
            // number and the replay threads share nothing but the allocator: exact for 1
            // thread; with N threads, the peak of the summed live bytes with the threads in
            // lockstep (after each one's k-th operation).
            let common_live = trace::lockstep_peak_live(&traces[ti]);
            for (pi, &peer) in args.peers.iter().enumerate() {
                let rs = &results[ti * args.peers.len() + pi];
                let per_op = |d: Duration| d.as_nanos() as f64 / allocs as f64;
                let cell = Cell {
                    workload: w,
                    threads,
                    peer,
                    ns_per_op: median(&mut rs.iter().map(|r| per_op(r.wall)).collect::<Vec<_>>()),
                    cpu_ns_per_op: median(
                        &mut rs.iter().map(|r| per_op(r.cpu)).collect::<Vec<_>>(),
                    ),
                    best_ns_per_op: rs
                        .iter()
                        .map(|r| per_op(r.wall))
                        .fold(f64::INFINITY, f64::min),
                    runs: rs.len(),
                    allocate_calls: median_u64(
                        &mut rs.iter().map(|r| r.allocate_calls).collect::<Vec<_>>(),
                    ),
                    peak_reserved: median_u64(
                        &mut rs.iter().map(|r| r.peak_reserved).collect::<Vec<_>>(),
                    ),
                    allocs,
                    peak_live: common_live,
                    waste: median(
                        &mut rs
                            .iter()
                            .map(|r| r.peak_reserved as f64 / common_live as f64)
                            .collect::<Vec<_>>(),
                    ),
                };
                eprintln!(
                    "{:>5} {}t {:<20} {:>9.1} ns (best {:>9.1}, cpu {:>9.1})  {:>4} vkAllocateMemory  {:>7.1} MiB reserved / {:>7.1} MiB live  ({} runs)",
                    w.name(),
                    threads,
                    peer.name(),
                    cell.ns_per_op,
                    cell.best_ns_per_op,
                    cell.cpu_ns_per_op,
                    cell.allocate_calls,
                    mib(cell.peak_reserved),
                    mib(cell.peak_live),
                    cell.runs
                );
                cells.push(cell);
            }
        }
    }
    let probe_after = parallelism_probe();
    println!(
        "\nafter the run: load average {}, 2-thread parallelism probe {:.2}x (2.0 = two free cores)",
        load_average(),
        probe_after
    );
    report(&args, &cells, (probe_before + probe_after) / 2.0);
    debug_cost::print(&args, &cells, &vk);
}

fn find(cells: &[Cell], w: Workload, threads: usize, p: Peer) -> Option<&Cell> {
    cells
        .iter()
        .find(|c| c.workload == w && c.threads == threads && c.peer == p)
}

fn report(args: &Args, cells: &[Cell], probe: f64) {
    for &threads in &args.threads {
        println!("\n## {threads} thread(s)\n");
        if threads > 1 {
            println!(
                "Peak live with several threads: the peak of the summed live bytes with the threads in lockstep (after each one's k-th operation), the same divisor for every allocator.\n"
            );
        }
        println!(
            "| workload | allocator | ns / alloc+free (median) | time vs ash-memory | CPU ns / alloc+free | vkAllocateMemory | per 1k ops | modelled ns (100 us / call) | peak reserved MiB | peak live MiB | reserved / live | reserved/live vs ash-memory | runs |"
        );
        println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        for &w in &args.workloads {
            let base = find(cells, w, threads, Peer::AshMemory);
            for &p in &args.peers {
                let Some(c) = find(cells, w, threads, p) else {
                    continue;
                };
                let waste = c.waste;
                let (tr, wr) = match base {
                    Some(b) => (
                        format!("{:.2}x", c.ns_per_op / b.ns_per_op),
                        format!("{:.2}x", waste / b.waste),
                    ),
                    None => ("-".into(), "-".into()),
                };
                println!(
                    "| {} | {} | {:.0} | {} | {:.0} | {} | {:.2} | {:.0} | {:.1} | {:.1} | {:.3} | {} | {} |",
                    w.name(),
                    p.name(),
                    c.ns_per_op,
                    tr,
                    c.cpu_ns_per_op,
                    c.allocate_calls,
                    c.calls_per_k(),
                    c.modelled_ns(),
                    mib(c.peak_reserved),
                    mib(c.peak_live),
                    waste,
                    wr,
                    c.runs
                );
            }
        }
    }
    // Compact summary for the README: everything relative to ash-memory.
    if args.peers.contains(&Peer::AshMemory) {
        let others: Vec<Peer> = args
            .peers
            .iter()
            .copied()
            .filter(|&p| {
                p != Peer::AshMemory && !matches!(p, Peer::AshDebug(_) | Peer::AshStrategy(_))
            })
            .collect();
        println!("\n## Summary: peers relative to ash-memory (time = peer ns / ash-memory ns; waste = reserved/live)\n");
        println!("calls: `vkAllocateMemory` per run (per 1,000 allocate+free); modelled: the time with 100 us charged per `vkAllocateMemory`, as a ratio to ash-memory's modelled time.\n");
        print!("| workload | threads | ash-memory ns | ash-memory waste | ash-memory calls | ash-memory modelled ns |");
        for p in &others {
            print!(
                " {} time | {} waste | {} calls | {} modelled |",
                p.name(),
                p.name(),
                p.name(),
                p.name()
            );
        }
        println!();
        print!("|---|---:|---:|---:|---:|---:|");
        for _ in &others {
            print!("---:|---:|---:|---:|");
        }
        println!();
        for &threads in &args.threads {
            for &w in &args.workloads {
                let Some(a) = find(cells, w, threads, Peer::AshMemory) else {
                    continue;
                };
                print!(
                    "| {} | {} | {:.0} | {:.2} | {} ({:.2}) | {:.0} |",
                    w.name(),
                    threads,
                    a.ns_per_op,
                    a.waste,
                    a.allocate_calls,
                    a.calls_per_k(),
                    a.modelled_ns()
                );
                for &p in &others {
                    match find(cells, w, threads, p) {
                        Some(c) => print!(
                            " {:.2}x | {:.2} ({:.2}x) | {} ({:.2}) | {:.2}x |",
                            c.ns_per_op / a.ns_per_op,
                            c.waste,
                            c.waste / a.waste,
                            c.allocate_calls,
                            c.calls_per_k(),
                            c.modelled_ns() / a.modelled_ns()
                        ),
                        None => print!(" - | - | - | - |"),
                    }
                }
                println!();
            }
        }
    }
    // Thread scaling: throughput at N threads over throughput at the first thread count.
    if args.threads.len() > 1 {
        let t0 = args.threads[0];
        println!("\n## Throughput scaling (vs {t0} thread(s); same total work)\n");
        println!(
            "The machine's own ceiling during this run (pure CPU work, 2 threads vs 1): {probe:.2}x.\n"
        );
        print!("| workload |");
        for &p in &args.peers {
            for &t in &args.threads[1..] {
                print!(" {} {t}t |", p.name());
            }
        }
        println!();
        print!("|---|");
        for _ in 0..args.peers.len() * (args.threads.len() - 1) {
            print!("---:|");
        }
        println!();
        for &w in &args.workloads {
            print!("| {} |", w.name());
            for &p in &args.peers {
                for &t in &args.threads[1..] {
                    match (find(cells, w, t0, p), find(cells, w, t, p)) {
                        (Some(a), Some(b)) => print!(" {:.2}x |", a.ns_per_op / b.ns_per_op),
                        _ => print!(" - |"),
                    }
                }
            }
            println!();
        }
    }
    // The issue's targets, where ash-memory and the peer were both measured.
    let any_target = args
        .peers
        .iter()
        .any(|p| matches!(p, Peer::Vma | Peer::GpuAllocator | Peer::OffsetAllocator))
        || args.threads.len() > 1;
    if args.peers.contains(&Peer::AshMemory) && any_target {
        println!("\n## Targets\n");
        for &threads in &args.threads {
            for &w in &args.workloads {
                let Some(a) = find(cells, w, threads, Peer::AshMemory) else {
                    continue;
                };
                let aw = a.waste;
                if matches!(w, Workload::Churn | Workload::Burst) {
                    for (p, limit) in [(Peer::Vma, 0.5), (Peer::GpuAllocator, 0.2)] {
                        if let Some(c) = find(cells, w, threads, p) {
                            let r = a.ns_per_op / c.ns_per_op;
                            println!(
                                "- {} {}t: ash-memory time = {:.2}x {} (target <= {limit}x): {}",
                                w.name(),
                                threads,
                                r,
                                p.name(),
                                if r <= limit { "MET" } else { "NOT MET" }
                            );
                        }
                    }
                }
                if let Some(v) = find(cells, w, threads, Peer::Vma) {
                    println!(
                        "- {} {}t: vkAllocateMemory ash-memory {} vs VMA {} (target <= VMA): {}",
                        w.name(),
                        threads,
                        a.allocate_calls,
                        v.allocate_calls,
                        if a.allocate_calls <= v.allocate_calls {
                            "MET"
                        } else {
                            "NOT MET"
                        }
                    );
                    let limit = match w {
                        Workload::Large => Some(0.5),
                        Workload::Frame => Some(0.35),
                        _ => None,
                    };
                    if let Some(limit) = limit.filter(|_| threads == 1) {
                        let r = a.ns_per_op / v.ns_per_op;
                        println!(
                            "- {} {}t: ash-memory time = {:.2}x VMA (target <= {limit}x): {}",
                            w.name(),
                            threads,
                            r,
                            if r <= limit { "MET" } else { "NOT MET" }
                        );
                    }
                }
                if matches!(w, Workload::Churn | Workload::Frame | Workload::Tiny) {
                    if let Some(o) = find(cells, w, threads, Peer::OffsetAllocator) {
                        let r = a.ns_per_op / o.ns_per_op;
                        println!(
                            "- {} {}t: ash-memory time = {:.2}x bare offset-allocator (target <= 2x): {}",
                            w.name(),
                            threads,
                            r,
                            if r <= 2.0 { "MET" } else { "NOT MET" }
                        );
                    }
                }
                if let Some(v) = find(cells, w, threads, Peer::Vma) {
                    let vw = v.waste;
                    println!(
                        "- {} {}t: reserved/live ash-memory {:.3} vs VMA {:.3} (target <= VMA): {}",
                        w.name(),
                        threads,
                        aw,
                        vw,
                        if aw <= vw { "MET" } else { "NOT MET" }
                    );
                }
            }
        }
        if let (Some(&t0), Some(&t1)) = (args.threads.first(), args.threads.get(1)) {
            for &w in &args.workloads {
                if let (Some(a), Some(b)) = (
                    find(cells, w, t0, Peer::AshMemory),
                    find(cells, w, t1, Peer::AshMemory),
                ) {
                    let s = a.ns_per_op / b.ns_per_op;
                    println!(
                        "- {} ash-memory {t1}-thread throughput = {:.2}x {t0}-thread (target >= 1.6x): {} (machine ceiling this run: {probe:.2}x)",
                        w.name(),
                        s,
                        if s >= 1.6 { "MET" } else { "NOT MET" }
                    );
                }
            }
        }
    }
}
