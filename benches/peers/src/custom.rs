//! `--custom SPEC`: a parametric workload, for traces the built-in six do not cover.
//!
//! A spec is a comma-separated list of `key=value` settings; every key is optional:
//!
//! | key | value | default |
//! |---|---|---|
//! | `live` | objects live at the plateau (a count: `250000`, `250k`, `3m`) | `10k` |
//! | `steps` | allocations after the first fill (frames: transient allocations) | `100k` |
//! | `sizes` | `LO..HI` bytes, log-uniform (`16..4k`, `1m..64m`; k/m/g = KiB/MiB/GiB) | `256..1m` |
//! | `big` | `PCT:LO..HI`: PCT % of the allocations take their size from this range instead (bimodal) | none |
//! | `align` | `LO..HI` powers of two, uniform in the exponent, or one power of two | `16..256` |
//! | `order` | which live object goes at each step: `random`, `fifo` (the oldest), `lifo` (the newest), or `frame:N` (below) | `random` |
//! | `shrink` | `P`: phases instead of a steady state: free down to P % of `live`, allocate back up to `live`, repeat | none |
//! | `usage` | `device`, `upload`, `download`, or `mixed` (60 % device, 25 % upload, 15 % download) | `device` |
//! | `images` | the fraction (0 .. 1) of allocations that are optimal-tiling images (device-local; sizes and alignments from `sizes`/`align`) | `0` |
//!
//! Without `shrink` the trace is a steady state: fill `live` objects, then `steps` times free
//! one (chosen by `order`) and allocate one, then free the rest in the same order. With
//! `order=frame:N`, `live` objects are allocated first and live through the whole trace,
//! then `steps` transient allocations come in frames of N, each frame freed at its end in
//! allocation order. With `--threads T` (and `--quick`), `live`, `steps` and N are divided
//! among the threads like the built-in counts.

use crate::trace::{Request, Rng, Trace, TraceParams, Usage};
use std::collections::VecDeque;
use std::sync::OnceLock;

/// The `--custom` syntax, for `--help` and parse errors.
pub const HELP: &str = "\
--custom SPEC (repeatable): one more workload row per spec, named by the spec. With --custom
and no --workloads, only the custom rows run. SPEC is key=value[,key=value...], all optional:
  live=N            objects live at the plateau (counts take k = 1,000, m = 1,000,000)  [10k]
  steps=N           allocations after the first fill (frames: transient allocations)     [100k]
  sizes=LO..HI      bytes, log-uniform (k/m/g = KiB/MiB/GiB)                            [256..1m]
  big=PCT:LO..HI    PCT % of the allocations take their size from LO..HI (bimodal)      [none]
  align=LO..HI      powers of two, uniform in the exponent (or one power of two)        [16..256]
  order=random|fifo|lifo|frame:N   which live object is freed at each step: a random one,
                    the oldest, the newest; frame:N: `live` objects live throughout, and
                    `steps` transient ones come in frames of N, freed at frame end      [random]
  shrink=P          phases: free down to P % of live, allocate back up to live, repeat  [none]
  usage=device|upload|download|mixed   (mixed: 60 % device, 25 % upload, 15 % download) [device]
  images=F          fraction 0..1 of allocations that are optimal-tiling images         [0]
example: --custom live=100k,steps=200k,sizes=16..4k,align=16..256,order=fifo,usage=mixed,images=0.4";

/// The `--custom` specs of this run, in the order given; `Workload::Custom(i)` is the i-th.
pub static SPECS: OnceLock<Vec<CustomSpec>> = OnceLock::new();

pub fn spec(i: usize) -> &'static CustomSpec {
    &SPECS.get().expect("--custom specs registered")[i]
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Order {
    Random,
    Fifo,
    Lifo,
    /// Transient frames of this many allocations over `live` long-lived objects.
    Frame(u64),
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum UsageMix {
    One(Usage),
    Mixed,
}

#[derive(Clone, Debug, PartialEq)]
pub struct CustomSpec {
    /// The spec as given: the workload's name in the tables.
    pub text: String,
    pub live: u64,
    pub steps: u64,
    pub sizes: (u64, u64),
    /// (fraction of allocations, size range)
    pub big: Option<(f64, (u64, u64))>,
    pub align: (u64, u64),
    pub order: Order,
    /// Shrink to this fraction of `live`, then grow back (phases).
    pub shrink: Option<f64>,
    pub usage: UsageMix,
    pub images: f64,
}

/// A count: digits, then an optional `k` (x 1,000) or `m` (x 1,000,000).
fn count(s: &str) -> Result<u64, String> {
    let (num, mul) = match s.as_bytes().last() {
        Some(b'k' | b'K') => (&s[..s.len() - 1], 1_000),
        Some(b'm' | b'M') => (&s[..s.len() - 1], 1_000_000),
        _ => (s, 1),
    };
    num.parse::<u64>()
        .map(|n| n * mul)
        .map_err(|_| format!("bad count {s:?}"))
}

/// Bytes: digits, then an optional `k`, `m` or `g` (KiB, MiB, GiB).
fn bytes(s: &str) -> Result<u64, String> {
    let (num, shift) = match s.as_bytes().last() {
        Some(b'k' | b'K') => (&s[..s.len() - 1], 10),
        Some(b'm' | b'M') => (&s[..s.len() - 1], 20),
        Some(b'g' | b'G') => (&s[..s.len() - 1], 30),
        _ => (s, 0),
    };
    num.parse::<u64>()
        .ok()
        .filter(|&n| n > 0)
        .map(|n| n << shift)
        .ok_or_else(|| format!("bad byte count {s:?}"))
}

/// `LO..HI` (or one value, for both).
fn range(s: &str) -> Result<(u64, u64), String> {
    let (lo, hi) = match s.split_once("..") {
        Some((a, b)) => (bytes(a)?, bytes(b)?),
        None => (bytes(s)?, bytes(s)?),
    };
    if lo > hi {
        return Err(format!("empty range {s:?}"));
    }
    Ok((lo, hi))
}

fn fraction(s: &str) -> Result<f64, String> {
    s.parse::<f64>()
        .ok()
        .filter(|f| (0.0..=1.0).contains(f))
        .ok_or_else(|| format!("bad fraction {s:?} (0 .. 1)"))
}

impl CustomSpec {
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut s = CustomSpec {
            text: text.to_owned(),
            live: 10_000,
            steps: 100_000,
            sizes: (256, 1 << 20),
            big: None,
            align: (16, 256),
            order: Order::Random,
            shrink: None,
            usage: UsageMix::One(Usage::DeviceLocal),
            images: 0.0,
        };
        for kv in text.split(',').filter(|kv| !kv.is_empty()) {
            let (k, v) = kv
                .split_once('=')
                .ok_or_else(|| format!("{kv:?} is not key=value"))?;
            match k {
                "live" => s.live = count(v)?,
                "steps" => s.steps = count(v)?,
                "sizes" => s.sizes = range(v)?,
                "big" => {
                    let (pct, r) = v
                        .split_once(':')
                        .ok_or_else(|| format!("big={v}: want PCT:LO..HI"))?;
                    let pct = pct
                        .parse::<f64>()
                        .ok()
                        .filter(|p| (0.0..=100.0).contains(p))
                        .ok_or_else(|| format!("bad percentage {pct:?}"))?;
                    s.big = Some((pct / 100.0, range(r)?));
                }
                "align" => {
                    s.align = range(v)?;
                    if !s.align.0.is_power_of_two() || !s.align.1.is_power_of_two() {
                        return Err(format!("align={v}: powers of two only"));
                    }
                }
                "order" => {
                    s.order = match v {
                        "random" => Order::Random,
                        "fifo" => Order::Fifo,
                        "lifo" => Order::Lifo,
                        _ => match v.strip_prefix("frame:") {
                            Some(n) => Order::Frame(count(n)?.max(1)),
                            None => return Err(format!("unknown order {v:?}")),
                        },
                    }
                }
                "shrink" => {
                    let p = v
                        .parse::<f64>()
                        .ok()
                        .filter(|p| (0.0..100.0).contains(p))
                        .ok_or_else(|| format!("shrink={v}: a percentage below 100"))?;
                    s.shrink = Some(p / 100.0);
                }
                "usage" => {
                    s.usage = match v {
                        "device" => UsageMix::One(Usage::DeviceLocal),
                        "upload" => UsageMix::One(Usage::Upload),
                        "download" => UsageMix::One(Usage::Download),
                        "mixed" => UsageMix::Mixed,
                        _ => return Err(format!("unknown usage {v:?}")),
                    }
                }
                "images" => s.images = fraction(v)?,
                _ => return Err(format!("unknown key {k:?}")),
            }
        }
        if s.shrink.is_some() && matches!(s.order, Order::Frame(_)) {
            return Err("shrink does not combine with order=frame".into());
        }
        if s.live == 0 && !matches!(s.order, Order::Frame(_)) {
            return Err("live must be at least 1".into());
        }
        Ok(s)
    }
}

/// The live objects, in the order `Order` takes them from.
struct LiveSet {
    order: Order,
    slots: VecDeque<usize>,
}

impl LiveSet {
    fn push(&mut self, slot: usize) {
        self.slots.push_back(slot);
    }
    fn take(&mut self, rng: &mut Rng) -> Option<usize> {
        match self.order {
            Order::Fifo | Order::Frame(_) => self.slots.pop_front(),
            Order::Lifo => self.slots.pop_back(),
            Order::Random => {
                let n = self.slots.len() as u64;
                if n == 0 {
                    return None;
                }
                self.slots.swap_remove_back(rng.below(n) as usize)
            }
        }
    }
}

pub fn generate(spec: &CustomSpec, seed: u64, p: &TraceParams<'_>) -> Trace {
    let mut rng = Rng::new(seed ^ 0xC057_0A11_5EED_0001);
    let d = p.divisor.max(1);
    let live = (spec.live / d) as usize;
    let steps = spec.steps / d;
    let image_bits = p
        .images
        .first()
        .map_or(p.buffer_bits, |s| s.reqs.memory_type_bits);
    let req = |rng: &mut Rng| {
        let (lo, hi) = match spec.big {
            Some((f, r)) if rng.unit() < f => r,
            _ => spec.sizes,
        };
        let size = rng.log_uniform(lo, hi);
        let alignment = rng.pow2(spec.align.0, spec.align.1);
        let image = spec.images > 0.0 && rng.unit() < spec.images;
        let usage = match spec.usage {
            _ if image => Usage::DeviceLocal,
            UsageMix::One(u) => u,
            UsageMix::Mixed => match rng.below(100) {
                0..=59 => Usage::DeviceLocal,
                60..=84 => Usage::Upload,
                _ => Usage::Download,
            },
        };
        Request {
            size,
            alignment,
            memory_type_bits: if image { image_bits } else { p.buffer_bits },
            usage,
            linear: !image,
        }
    };
    let frame = match spec.order {
        Order::Frame(n) => (n / d).max(1) as usize,
        _ => 0,
    };
    let mut g = Gen {
        b: crate::trace::Builder::new(live + frame),
        free: (0..live + frame).rev().collect(),
    };
    let mut set = LiveSet {
        order: spec.order,
        slots: VecDeque::with_capacity(live),
    };
    for _ in 0..live {
        g.alloc(&mut set, req(&mut rng));
    }
    match (spec.order, spec.shrink) {
        (Order::Frame(_), _) => {
            let mut transient = LiveSet {
                order: Order::Fifo,
                slots: VecDeque::with_capacity(frame),
            };
            let mut done = 0;
            while done < steps {
                let n = (frame as u64).min(steps - done);
                for _ in 0..n {
                    g.alloc(&mut transient, req(&mut rng));
                }
                while let Some(slot) = transient.take(&mut rng) {
                    g.free(slot);
                }
                done += n;
            }
        }
        (_, None) => {
            for _ in 0..steps {
                let slot = set.take(&mut rng).expect("live object");
                g.free(slot);
                g.alloc(&mut set, req(&mut rng));
            }
        }
        (_, Some(f)) => {
            let floor = ((live as f64 * f) as usize).min(live.saturating_sub(1));
            let mut done = 0;
            while done < steps {
                while set.slots.len() > floor {
                    let slot = set.take(&mut rng).expect("live object");
                    g.free(slot);
                }
                while set.slots.len() < live && done < steps {
                    g.alloc(&mut set, req(&mut rng));
                    done += 1;
                }
            }
        }
    }
    while let Some(slot) = set.take(&mut rng) {
        g.free(slot);
    }
    g.b.finish()
}

/// The trace being built and its unused slot numbers (the last freed reused first).
struct Gen {
    b: crate::trace::Builder,
    free: Vec<usize>,
}

impl Gen {
    fn alloc(&mut self, set: &mut LiveSet, r: Request) {
        let slot = self.free.pop().expect("a free slot");
        self.b.alloc(slot, r);
        set.push(slot);
    }
    fn free(&mut self, slot: usize) {
        self.b.free(slot);
        self.free.push(slot);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::Op;

    fn params() -> TraceParams<'static> {
        TraceParams {
            buffer_bits: 1,
            images: &[],
            divisor: 1,
        }
    }

    /// The live count after each operation, and the slots in the order they were freed.
    fn replay(t: &Trace) -> (Vec<usize>, Vec<u32>) {
        let (mut live, mut counts, mut freed) = (0usize, Vec::new(), Vec::new());
        for op in &t.ops {
            match *op {
                Op::Alloc { .. } => live += 1,
                Op::Free { slot } => {
                    live -= 1;
                    freed.push(slot);
                }
            }
            counts.push(live);
        }
        (counts, freed)
    }

    #[test]
    fn parses_every_key_and_rejects_bad_specs() {
        let s = CustomSpec::parse(
            "live=3m,steps=2k,sizes=16..64m,big=0.5:1m..2m,align=1..64k,order=frame:500,usage=mixed,images=0.4",
        )
        .unwrap();
        assert_eq!((s.live, s.steps), (3_000_000, 2_000));
        assert_eq!(s.sizes, (16, 64 << 20));
        assert_eq!(s.big, Some((0.005, (1 << 20, 2 << 20))));
        assert_eq!(s.align, (1, 65536));
        assert_eq!(s.order, Order::Frame(500));
        assert_eq!(s.usage, UsageMix::Mixed);
        for bad in [
            "live",
            "size=1..2",
            "sizes=9..3",
            "align=3..8",
            "order=stack",
            "images=2",
            "shrink=100",
            "order=frame:5,shrink=10",
            "live=0",
        ] {
            assert!(CustomSpec::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn requests_stay_in_their_ranges() {
        let s =
            CustomSpec::parse("live=2k,steps=5k,sizes=100..200,align=4..64,images=0.5").unwrap();
        let t = generate(&s, 1, &params());
        let mut images = 0;
        for op in &t.ops {
            if let Op::Alloc { req, .. } = op {
                assert!((100..=200).contains(&req.size));
                assert!(req.alignment.is_power_of_two() && (4..=64).contains(&req.alignment));
                images += usize::from(!req.linear);
            }
        }
        assert_eq!(t.allocs, 7_000);
        assert!((2_800..4_200).contains(&images), "{images} images of 7000");
    }

    #[test]
    fn steady_orders_hold_live_and_free_the_right_end() {
        for (order, oldest_first) in [("fifo", true), ("lifo", false)] {
            let s = CustomSpec::parse(&format!("live=100,steps=1000,order={order}")).unwrap();
            let t = generate(&s, 7, &params());
            let (counts, _) = replay(&t);
            assert_eq!(*counts.iter().max().unwrap(), 100);
            assert_eq!(*counts.last().unwrap(), 0);
            // The first step frees the first (fifo) or the last (lifo) object of the fill.
            let Op::Free { slot } = t.ops[100] else {
                panic!("step 1 starts with a free")
            };
            let Op::Alloc { slot: first, .. } = t.ops[if oldest_first { 0 } else { 99 }] else {
                panic!("the fill allocates")
            };
            assert_eq!(slot, first, "{order}");
        }
    }

    #[test]
    fn frames_and_phases_shape_the_live_count() {
        let s = CustomSpec::parse("live=50,steps=1000,order=frame:100").unwrap();
        let (counts, _) = replay(&generate(&s, 3, &params()));
        assert_eq!(*counts.iter().max().unwrap(), 150);
        // Between frames, only the long-lived objects remain.
        assert_eq!(counts.iter().filter(|&&c| c == 50).count(), 1 + 10);

        let s = CustomSpec::parse("live=100,steps=1000,shrink=25").unwrap();
        let (counts, _) = replay(&generate(&s, 3, &params()));
        assert_eq!(*counts.iter().max().unwrap(), 100);
        // Each phase falls to 25 and climbs back: 1000 allocations past the fill, 75 a phase;
        // the final teardown passes 25 once more.
        let lows = counts
            .windows(2)
            .filter(|w| w[1] == 25 && w[0] == 26)
            .count();
        assert_eq!(lows, 1000usize.div_ceil(75) + 1);
    }
}
