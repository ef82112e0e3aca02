//! The tables of `--defrag`.

use super::{Algo, DefragArgs, Fragmented, Outcome, VMA_FAST, VMA_FULL};
use crate::mib;
use ash_memory::DefragmentationAlgorithm as Alg;
use std::time::Duration;

fn median_duration(rs: &[Outcome], f: impl Fn(&Outcome) -> Duration) -> Duration {
    let mut v: Vec<Duration> = rs.iter().map(f).collect();
    v.sort_unstable();
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2
    }
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// The medians of one algorithm's runs (the counts come from the first run; the runs of one
/// algorithm on one trace are expected to agree, and a warning says when they do not).
struct Row {
    algo: Algo,
    first: Outcome,
    setup: Duration,
    planning: Duration,
    planning_max: Duration,
    settle: Duration,
    copy: Duration,
    runs: usize,
    /// Every run's outcome, for measures taken against another allocator's result.
    all: Vec<Outcome>,
}

impl Row {
    fn new(algo: Algo, rs: &[Outcome]) -> Row {
        let first = rs[0].clone();
        let key = |o: &Outcome| {
            (
                o.reserved_before,
                o.reserved_after,
                o.moves,
                o.bytes_moved,
                o.passes,
            )
        };
        if rs.iter().any(|o| key(o) != key(&first)) {
            eprintln!(
                "warning: {} {}: the runs disagree on the result: {:?}",
                algo.allocator(),
                algo.name(),
                rs.iter().map(key).collect::<Vec<_>>()
            );
        }
        Row {
            algo,
            first,
            setup: median_duration(rs, |o| o.setup),
            planning: median_duration(rs, |o| o.planning),
            planning_max: median_duration(rs, |o| o.planning_max),
            settle: median_duration(rs, |o| o.settle),
            copy: median_duration(rs, |o| o.copy),
            runs: rs.len(),
            all: rs.to_vec(),
        }
    }

    /// The median planning time of the passes it took to hold no more than `reserved` bytes
    /// (every pass up to the first that leaves that much or less); `None` when it never did.
    fn planning_to_reach(&self, reserved: u64) -> Option<Duration> {
        let reach = |o: &Outcome| o.pass_points.iter().find(|p| p.1 <= reserved).map(|p| p.0);
        if self.all.iter().any(|o| reach(o).is_none()) {
            return None;
        }
        Some(median_duration(&self.all, |o| reach(o).unwrap_or_default()))
    }
    fn ratio_after(&self, live: u64) -> f64 {
        self.first.reserved_after as f64 / live as f64
    }
}

pub fn print(a: &DefragArgs, f: &Fragmented, runs: usize, results: &[Vec<Outcome>]) {
    let live = f.live_bytes();
    let limit = |v: u64, unit: &str| {
        if v == 0 {
            format!("unlimited {unit}")
        } else {
            format!("{v} {unit}")
        }
    };
    println!("\n## Defragmentation: ash-memory vs VMA\n");
    println!(
        "Trace: {} host-visible buffers (ash-memory `Upload`, VMA `CpuToGpu` + `MAPPED`), log-uniform {} .. {} bytes, alignments 16 .. 256, each written with its own pattern; then a random {} % freed (seeded), leaving {} buffers, {:.2} MiB live. Block size {} MiB for both (VMA `preferredLargeHeapBlockSize`, ash-memory `BlockSizeThresholds::uniform`; both start with smaller first blocks as they do by default). Limits per pass: {}, {}. Moves copied with memcpy between the mapped source and destination (no GPU work); every surviving buffer's bytes checked afterwards.\n",
        f.items.len(),
        a.sizes.0,
        a.sizes.1,
        a.free_percent,
        f.survivors.len(),
        mib(live),
        a.block_size >> 20,
        limit(a.max_bytes, "bytes"),
        limit(u64::from(a.max_moves), "moves"),
    );
    println!(
        "Reserved = bytes of the live memory objects (counting `vkAllocateMemory`/`vkFreeMemory` wrappers); live = the surviving buffers' requested bytes. MiB moved (requested): the requested sizes of the buffers moved, the same measure for both; the allocator's count: ash-memory's `bytes_moved` (requested sizes too), VMA's `bytesMoved` (its allocations' sizes, which TLSF may round up).\n"
    );
    let rows: Vec<Row> = a
        .algorithms
        .iter()
        .zip(results)
        .filter(|(_, rs)| !rs.is_empty())
        .map(|(&algo, rs)| Row::new(algo, rs))
        .collect();
    println!(
        "| allocator | algorithm | blocks before | reserved MiB before | reserved/live before | passes | moves | MiB moved (requested) | MiB moved (allocator's count) | memory objects freed | blocks after | reserved MiB after | reserved/live after | requested bytes moved / bytes freed | data |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    for r in &rows {
        let o = &r.first;
        let freed = o.reserved_before.saturating_sub(o.reserved_after);
        println!(
            "| {} | {} | {} | {:.1} | {:.3} | {} | {} | {:.2} | {:.2} | {} | {} | {:.1} | {:.3} | {} | {} buffers verified |",
            r.algo.allocator(),
            r.algo.name(),
            o.blocks_before,
            mib(o.reserved_before),
            o.reserved_before as f64 / live as f64,
            o.passes,
            o.moves,
            mib(o.requested_moved),
            mib(o.bytes_moved),
            o.objects_freed,
            o.blocks_after,
            mib(o.reserved_after),
            r.ratio_after(live),
            if freed == 0 {
                "-".to_string()
            } else {
                format!("{:.3}", o.requested_moved as f64 / freed as f64)
            },
            o.verified
        );
    }
    println!(
        "\nCPU time of the defragmenting thread, median of {runs} run(s), in µs. Planning: ash-memory `next_pass()`, VMA `vmaBeginDefragmentationPass`, every call including the last one that finds nothing to move; settle: ash-memory `complete` + `end`, VMA `vmaEndDefragmentationPass` + `vmaEndDefragmentation`; setup: ash-memory `defragmentation()` + one `add` per buffer, VMA `vmaBeginDefragmentation`.\n"
    );
    println!(
        "| allocator | algorithm | setup | planning (all passes) | planning calls | planning / pass | longest planning call | settle | copies (memcpy) | runs |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in &rows {
        println!(
            "| {} | {} | {:.1} | {:.1} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {} |",
            r.algo.allocator(),
            r.algo.name(),
            us(r.setup),
            us(r.planning),
            r.first.planning_calls,
            us(r.planning) / r.first.passes.max(1) as f64,
            us(r.planning_max),
            us(r.settle),
            us(r.copy),
            r.runs
        );
    }
    println!("\nMemory objects alive before and after, in MiB (ascending):\n");
    println!("| allocator | algorithm | before | after |");
    println!("|---|---|---|---|");
    let list = |v: &[u64]| {
        v.iter()
            .map(|&b| format!("{}", mib(b)))
            .collect::<Vec<_>>()
            .join(" ")
    };
    for r in &rows {
        println!(
            "| {} | {} | {} | {} |",
            r.algo.allocator(),
            r.algo.name(),
            list(&r.first.sizes_before),
            list(&r.first.sizes_after)
        );
    }
    targets(&rows, live);
}

fn targets(rows: &[Row], live: u64) {
    let find = |algo: Algo| rows.iter().find(|r| r.algo == algo);
    let met = |ok: bool| if ok { "MET" } else { "NOT MET" };
    println!("\n## Defragmentation targets\n");
    let vma_full = find(Algo::Vma(VMA_FULL));
    for (alg, peer) in [(Alg::Fast, VMA_FAST), (Alg::Full, VMA_FULL)] {
        let Some(ash) = find(Algo::Ash(alg)) else {
            continue;
        };
        let name = ash.algo.name();
        let ar = ash.ratio_after(live);
        println!(
            "- ash-memory {name}: reserved/live after = {ar:.3} (target <= 1.15): {}",
            met(ar <= 1.15)
        );
        if let Some(v) = vma_full {
            let vr = v.ratio_after(live);
            println!(
                "- ash-memory {name}: reserved/live after = {ar:.3} vs VMA FULL {vr:.3} (target <= VMA FULL): {}",
                met(ar <= vr)
            );
        }
        let Some(v) = find(Algo::Vma(peer)) else {
            continue;
        };
        let vname = v.algo.name();
        let (ab, vb) = (ash.first.requested_moved, v.first.requested_moved);
        let (aa, va) = (ash.first.reserved_after, v.first.reserved_after);
        let same = if aa == va {
            "the same reserved after".to_string()
        } else if aa < va {
            format!("ash-memory ends {:.1} MiB lower", mib(va - aa))
        } else {
            format!(
                "ash-memory ends {:.1} MiB higher: not the same result",
                mib(aa - va)
            )
        };
        let per_freed = |r: &Row| {
            let freed = r
                .first
                .reserved_before
                .saturating_sub(r.first.reserved_after);
            r.first.requested_moved as f64 / freed.max(1) as f64
        };
        // The bytes ash-memory had moved when it first held no more than VMA ends with: what
        // VMA's result cost it.
        let reach = if ash.first.reserved_before <= va {
            Some(0)
        } else {
            ash.first
                .trajectory
                .iter()
                .find(|&&(_, reserved)| reserved <= va)
                .map(|&(moved, _)| moved)
        };
        // The least any defragmentation of ash-memory's state could move for VMA's result:
        // the live bytes of the blocks it would have to empty, chosen at best.
        let least = least_to_free(
            &ash.first.block_live_before,
            ash.first.reserved_before.saturating_sub(va),
        );
        let least = match least {
            Some(l) => format!(
                ", the least any defragmentation of its state could move for it {:.2} MiB",
                mib(l)
            ),
            None => String::new(),
        };
        let reached = match reach {
            Some(r) if aa < va => format!(
                "; VMA's result ({:.1} MiB reserved) reached after {:.2} MiB{least}",
                mib(va),
                mib(r)
            ),
            _ => String::new(),
        };
        println!(
            "- ash-memory {name} moved {:.2} MiB vs VMA {vname} {:.2} MiB, requested bytes ({same}; per byte freed {:.3} vs {:.3}{reached}) (target: ash-memory <= VMA for the same or a better result): {}",
            mib(ab),
            mib(vb),
            per_freed(ash),
            per_freed(v),
            met(aa <= va && (ab <= vb || reach.is_some_and(|r| r <= vb)))
        );
        // For the same result: the passes ash-memory took to reach VMA's, when it goes
        // further.
        let to_reach = if aa < va {
            ash.planning_to_reach(va)
        } else {
            None
        };
        let reached = match to_reach {
            Some(d) => format!("; to reach VMA's result {:.1} µs", us(d)),
            None => String::new(),
        };
        println!(
            "- ash-memory {name} planning {:.1} µs vs VMA {vname} {:.1} µs, all passes{reached} (target <= VMA for the same or a better result): {}",
            us(ash.planning),
            us(v.planning),
            met(aa <= va
                && (ash.planning <= v.planning || to_reach.is_some_and(|d| d <= v.planning)))
        );
    }
}

/// The fewest live bytes of `blocks` (`(size, live bytes)` each) whose emptying frees at least
/// `free` bytes of them: a knapsack over the blocks' sizes in units of their greatest common
/// divisor. `None` when all of them do not free that much.
fn least_to_free(blocks: &[(u64, u64)], free: u64) -> Option<u64> {
    fn gcd(a: u64, b: u64) -> u64 {
        if b == 0 {
            a
        } else {
            gcd(b, a % b)
        }
    }
    if free == 0 {
        return Some(0);
    }
    let unit = blocks.iter().fold(0, |g, &(s, _)| gcd(g, s)).max(1);
    let target = free.div_ceil(unit) as usize;
    // least[w]: the fewest live bytes that free at least `w` units.
    let mut least = vec![u64::MAX; target + 1];
    least[0] = 0;
    for &(size, live) in blocks {
        let units = (size / unit) as usize;
        for w in (0..=target).rev() {
            if least[w] != u64::MAX {
                let to = (w + units).min(target);
                least[to] = least[to].min(least[w] + live);
            }
        }
    }
    (least[target] != u64::MAX).then_some(least[target])
}
