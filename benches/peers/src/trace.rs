//! Deterministic, seeded operation traces. Every allocator replays the very same `Vec<Op>`.

use ash::vk;

/// Where the memory should live (mapped onto each allocator's own vocabulary).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Usage {
    DeviceLocal,
    Upload,
    Download,
}

#[derive(Clone, Copy, Debug)]
pub struct Request {
    pub size: u64,
    pub alignment: u64,
    pub memory_type_bits: u32,
    pub usage: Usage,
    /// Buffer (linear) vs optimal-tiling image.
    pub linear: bool,
}

impl Request {
    pub fn vk(&self) -> vk::MemoryRequirements {
        vk::MemoryRequirements {
            size: self.size,
            alignment: self.alignment,
            memory_type_bits: self.memory_type_bits,
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub enum Op {
    Alloc { slot: u32, req: Request },
    Free { slot: u32 },
}

pub struct Trace {
    pub ops: Vec<Op>,
    pub slots: usize,
    pub allocs: u64,
}

/// The peak of the live bytes summed over `traces` replayed in lockstep: after the k-th
/// operation of each (a finished trace keeps its final live bytes). For one trace, its peak.
pub fn lockstep_peak_live(traces: &[Trace]) -> u64 {
    let mut sizes: Vec<Vec<u64>> = traces.iter().map(|t| vec![0; t.slots]).collect();
    let mut live = vec![0u64; traces.len()];
    let longest = traces.iter().map(|t| t.ops.len()).max().unwrap_or(0);
    let mut peak = 0;
    for k in 0..longest {
        for (i, t) in traces.iter().enumerate() {
            match t.ops.get(k) {
                Some(&Op::Alloc { slot, req }) => {
                    sizes[i][slot as usize] = req.size;
                    live[i] += req.size;
                }
                Some(&Op::Free { slot }) => live[i] -= sizes[i][slot as usize],
                None => {}
            }
        }
        peak = peak.max(live.iter().sum());
    }
    peak
}

/// splitmix64: tiny, seedable, good enough for traces.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, n).
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Log-uniform integer in [lo, hi].
    pub fn log_uniform(&mut self, lo: u64, hi: u64) -> u64 {
        let (a, b) = ((lo as f64).ln(), (hi as f64).ln());
        ((a + (b - a) * self.unit()).exp().round() as u64).clamp(lo, hi)
    }
    /// Power of two in [lo, hi] (both powers of two), uniform in the exponent.
    pub fn pow2(&mut self, lo: u64, hi: u64) -> u64 {
        let (a, b) = (lo.trailing_zeros() as u64, hi.trailing_zeros() as u64);
        1 << (a + self.below(b - a + 1))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workload {
    Churn,
    Burst,
    Frame,
    Mixed,
    Large,
    Tiny,
    /// `--custom SPEC`: the spec at this index of [`crate::custom::SPECS`].
    Custom(usize),
}

impl Workload {
    pub const ALL: [Workload; 6] = [
        Workload::Churn,
        Workload::Burst,
        Workload::Frame,
        Workload::Mixed,
        Workload::Large,
        Workload::Tiny,
    ];
    pub fn name(self) -> &'static str {
        match self {
            Workload::Churn => "churn",
            Workload::Burst => "burst",
            Workload::Frame => "frame",
            Workload::Mixed => "mixed",
            Workload::Large => "large",
            Workload::Tiny => "tiny",
            Workload::Custom(i) => crate::custom::spec(i).text.as_str(),
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|w| w.name() == s)
    }
}

/// Real image requirements for the mixed workload, with a selection weight.
pub struct ImageShape {
    pub reqs: vk::MemoryRequirements,
    pub weight: f64,
}

pub struct TraceParams<'a> {
    pub buffer_bits: u32,
    pub images: &'a [ImageShape],
    /// 1 = the counts; larger values divide every count (per-thread share, --quick).
    pub divisor: u64,
}

pub(crate) struct Builder {
    ops: Vec<Op>,
    sizes: Vec<u64>,
    live: u64,
    allocs: u64,
}

impl Builder {
    pub(crate) fn new(slots: usize) -> Self {
        Builder {
            ops: Vec::new(),
            sizes: vec![0; slots],
            live: 0,
            allocs: 0,
        }
    }
    pub(crate) fn alloc(&mut self, slot: usize, req: Request) {
        debug_assert_eq!(self.sizes[slot], 0);
        self.ops.push(Op::Alloc {
            slot: slot as u32,
            req,
        });
        self.sizes[slot] = req.size;
        self.live += req.size;
        self.allocs += 1;
    }
    pub(crate) fn free(&mut self, slot: usize) {
        self.ops.push(Op::Free { slot: slot as u32 });
        self.live -= self.sizes[slot];
        self.sizes[slot] = 0;
    }
    pub(crate) fn finish(self) -> Trace {
        assert_eq!(self.live, 0, "trace must end with everything freed");
        Trace {
            slots: self.sizes.len(),
            ops: self.ops,
            allocs: self.allocs,
        }
    }
}

fn shuffle<T>(rng: &mut Rng, v: &mut [T]) {
    for i in (1..v.len()).rev() {
        v.swap(i, rng.below(i as u64 + 1) as usize);
    }
}

/// Fills `live` slots, then replaces a random one `steps` times, then frees everything.
fn steady_state(
    rng: &mut Rng,
    live: usize,
    steps: u64,
    mut req: impl FnMut(&mut Rng) -> Request,
) -> Trace {
    let mut b = Builder::new(live);
    for slot in 0..live {
        let r = req(rng);
        b.alloc(slot, r);
    }
    for _ in 0..steps {
        let slot = rng.below(live as u64) as usize;
        b.free(slot);
        let r = req(rng);
        b.alloc(slot, r);
    }
    for slot in 0..live {
        b.free(slot);
    }
    b.finish()
}

pub fn generate(w: Workload, seed: u64, p: &TraceParams<'_>) -> Trace {
    let index = match w {
        Workload::Custom(i) => return crate::custom::generate(crate::custom::spec(i), seed, p),
        _ => Workload::ALL.iter().position(|&a| a == w).unwrap() as u64,
    };
    let mut rng = Rng::new(seed ^ (index + 1).wrapping_mul(0xA076_1D64_78BD_642F));
    let d = p.divisor.max(1);
    let buffer = |size, alignment, usage| Request {
        size,
        alignment,
        memory_type_bits: p.buffer_bits,
        usage,
        linear: true,
    };
    match w {
        // 10,000 live, log-uniform 256 B .. 1 MiB, alignments 16 .. 4096,
        // 200,000 random free+allocate steps, device-local.
        Workload::Churn => {
            let live = (10_000 / d) as usize;
            let steps = 200_000 / d;
            let req = |rng: &mut Rng| {
                buffer(
                    rng.log_uniform(256, 1 << 20),
                    rng.pow2(16, 4096),
                    Usage::DeviceLocal,
                )
            };
            steady_state(&mut rng, live, steps, req)
        }
        // 100,000 allocations of 64 B .. 64 KiB (log-uniform, alignments 16 .. 256),
        // then all freed in random order.
        Workload::Burst => {
            let n = (100_000 / d) as usize;
            let mut b = Builder::new(n);
            for slot in 0..n {
                let r = buffer(
                    rng.log_uniform(64, 64 << 10),
                    rng.pow2(16, 256),
                    Usage::DeviceLocal,
                );
                b.alloc(slot, r);
            }
            let mut order: Vec<usize> = (0..n).collect();
            shuffle(&mut rng, &mut order);
            for slot in order {
                b.free(slot);
            }
            b.finish()
        }
        // 2,000 frames of 500 transient allocations (64 B .. 256 KiB log-uniform, alignments
        // 16 .. 256; 80 % upload, 20 % device-local), all freed at frame end in allocation order.
        Workload::Frame => {
            let per_frame = (500 / d) as usize;
            let mut b = Builder::new(per_frame);
            for _ in 0..2_000 {
                for slot in 0..per_frame {
                    let usage = if rng.below(10) < 8 {
                        Usage::Upload
                    } else {
                        Usage::DeviceLocal
                    };
                    let r = buffer(rng.log_uniform(64, 256 << 10), rng.pow2(16, 256), usage);
                    b.alloc(slot, r);
                }
                for slot in 0..per_frame {
                    b.free(slot);
                }
            }
            b.finish()
        }
        // 4,000 live resources, 100,000 random free+allocate steps: 40 % optimal images (real
        // requirements, device-local), 35 % device-local buffers, 15 % upload buffers, 10 %
        // download buffers; buffers log-uniform 256 B .. 2 MiB, alignments 16 .. 256.
        Workload::Mixed => {
            let live = (4_000 / d) as usize;
            let steps = 100_000 / d;
            let total_weight: f64 = p.images.iter().map(|s| s.weight).sum();
            let req = |rng: &mut Rng| {
                let k = rng.below(100);
                if k < 40 {
                    let mut x = rng.unit() * total_weight;
                    let shape = p
                        .images
                        .iter()
                        .find(|s| {
                            x -= s.weight;
                            x < 0.0
                        })
                        .unwrap_or(p.images.last().unwrap());
                    Request {
                        size: shape.reqs.size,
                        alignment: shape.reqs.alignment,
                        memory_type_bits: shape.reqs.memory_type_bits,
                        usage: Usage::DeviceLocal,
                        linear: false,
                    }
                } else {
                    let usage = match k {
                        40..=74 => Usage::DeviceLocal,
                        75..=89 => Usage::Upload,
                        _ => Usage::Download,
                    };
                    buffer(rng.log_uniform(256, 2 << 20), rng.pow2(16, 256), usage)
                }
            };
            steady_state(&mut rng, live, steps, req)
        }
        // 40 live device-local resources of 1 MiB .. a third of a 256 MiB block (85 MiB),
        // log-uniform, alignments 4 KiB .. 64 KiB; 20,000 random free+allocate steps. Large
        // textures, meshes and streaming buffers: where block and arena boundaries cost memory.
        Workload::Large => {
            let live = (40 / d).max(1) as usize;
            let steps = 20_000 / d;
            let req = |rng: &mut Rng| {
                buffer(
                    rng.log_uniform(1 << 20, 85 << 20),
                    rng.pow2(4096, 65536),
                    Usage::DeviceLocal,
                )
            };
            steady_state(&mut rng, live, steps, req)
        }
        // 50,000 live device-local objects of 16 B .. 256 B (log-uniform, alignment 16):
        // uniform and constant buffers, small descriptors' data; 200,000 random free+allocate
        // steps. Where the cost of the allocator around the suballocator shows most.
        Workload::Tiny => {
            let live = (50_000 / d) as usize;
            let steps = 200_000 / d;
            let req = |rng: &mut Rng| buffer(rng.log_uniform(16, 256), 16, Usage::DeviceLocal);
            steady_state(&mut rng, live, steps, req)
        }
        Workload::Custom(_) => unreachable!("generated above"),
    }
}
