#!/usr/bin/env python3
"""Hunts over random `--custom` traces for those where ash-memory does worse than VMA.

Draws COUNT random trace specs (live counts, size ranges, a bimodal share of big objects,
alignments, free orders, shrinking phases, usages, images) from SEED, runs each at one
thread with ash-memory and VMA in the same run (3 runs, medians), and prints one line per
trace: the summary table's row, marked `!!` with what is worse than VMA's:

- `SLOWx`: VMA's time over ash-memory's is below 1 (ash-memory is slower);
- `WASTEx`: VMA's reserved/live over ash-memory's is below 1 (ash-memory reserves more);
- `CALLSa>v`: ash-memory made more `vkAllocateMemory` calls.

Read a `WASTE` mark with the calls next to it: where VMA made many more calls, it freed and
remade memory objects (or gave big resources exact dedicated ones) to reserve less.

usage: hunt.py SEED COUNT [PEERS_BINARY] [--before BINARY] [--class any|sizable]
  (build the bench first: cargo build --release --manifest-path benches/peers/Cargo.toml;
   the binary defaults to benches/peers/target/release/peers)

--before BINARY: also run ash-memory alone with BINARY (a build of the code before a
change) on every spec, mark the rows where its calls or its peak reserved differ
(`BEFORE calls/waste`), and end with how many changed for better and for worse: a change
meant for one class shows what it does to the others.

--class sizable: draw only sizable resources among small ones (1-20 % of the requests of
16-256 MiB among requests of 64 B to 4 MiB; live bytes may reach lavapipe's budget), the
class of docs/benchmarks.md, "Sizable resources among small ones".
"""
import argparse
import os
import random
import re
import subprocess


def size_text(b):
    for unit, m in (("g", 1 << 30), ("m", 1 << 20), ("k", 1 << 10)):
        if b >= m and b % m == 0:
            return f"{b // m}{unit}"
    return str(b)


def random_spec(rng):
    live = rng.choice([50, 200, 1000, 3000, 10000, 30000])
    steps = max(2000, min(100000, live * rng.choice([2, 5, 10])))
    lo = 2 ** rng.randint(4, 24)
    hi = min(lo * 2 ** rng.randint(0, 10), 256 << 20)
    # Live bytes stay well under lavapipe's 2 GiB heap (see "Custom traces" in
    # docs/benchmarks.md): near its budget VMA trades memory objects for waste.
    if live * hi > (1 << 30):
        hi = max(lo, (1 << 30) // live)
        lo = min(lo, hi)
    spec = [f"live={live}", f"steps={steps}", f"sizes={size_text(lo)}..{size_text(hi)}"]
    if rng.random() < 0.3:
        big = 2 ** rng.randint(20, 26)
        share = rng.choice([1, 2, 5, 10])
        if live * share // 100 * big * 4 <= (1 << 30):
            spec.append(f"big={share}:{size_text(big)}..{size_text(big * 4)}")
    a = rng.randint(0, 16)
    b = rng.randint(a, 16)
    spec.append(f"align={size_text(2 ** a)}..{size_text(2 ** b)}")
    order = rng.choice(["random", "fifo", "lifo", "frame"])
    spec.append("order=" + (f"frame:{rng.choice([10, 100, 1000])}" if order == "frame" else order))
    if order != "frame" and rng.random() < 0.3:
        spec.append(f"shrink={rng.choice([10, 30, 60])}")
    spec.append("usage=" + rng.choice(["device", "upload", "download", "mixed"]))
    if rng.random() < 0.4:
        spec.append(f"images={rng.choice([0.2, 0.5, 1])}")
    return ",".join(spec)


def sizable_spec(rng):
    """A spec of sizable resources among small ones (see --class sizable)."""
    live = rng.choice([50, 200, 1000, 3000])
    steps = live * rng.choice([5, 10, 20])
    lo = 2 ** rng.randint(6, 16)
    hi = lo * 2 ** rng.randint(0, 6)
    big_lo = 2 ** rng.randint(24, 26)
    big_hi = big_lo * rng.choice([1, 2, 4])
    share = rng.choice([1, 2, 5, 10, 20])
    while share > 1 and live * share / 100 * (big_lo + big_hi) / 2 > 900 << 20:
        share //= 2
    order = rng.choice(["random", "fifo", "lifo"])
    spec = [f"live={live}", f"steps={steps}", f"sizes={size_text(lo)}..{size_text(hi)}",
            f"big={share}:{size_text(big_lo)}..{size_text(big_hi)}", f"order={order}"]
    if rng.random() < 0.3:
        spec.append(f"shrink={rng.choice([10, 30, 60])}")
    return ",".join(spec)


def summary_row(out, spec):
    """The cells of the summary row of `spec` in the bench's output, or None."""
    row = next((l for l in out.splitlines() if l.startswith(f"| {spec} | 1 |")), None)
    return None if row is None else (row, [c.strip() for c in row.strip("|").split("|")])


def run(binary, spec, allocators, runs):
    command = [binary, "--threads", "1", "--runs", str(runs), "--allocators", allocators]
    return subprocess.run(
        command + ["--custom", spec], capture_output=True, text=True, timeout=600
    ).stdout


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("seed", type=int)
    parser.add_argument("count", type=int)
    parser.add_argument("binary", nargs="?")
    parser.add_argument("--before")
    parser.add_argument("--class", dest="kind", choices=["any", "sizable"], default="any")
    args = parser.parse_args()
    here = os.path.dirname(os.path.abspath(__file__))
    binary = args.binary or os.path.join(here, "target/release/peers")
    rng = random.Random(args.seed)
    draw = sizable_spec if args.kind == "sizable" else random_spec
    better = worse = 0
    for spec in [draw(rng) for _ in range(args.count)]:
        try:
            out = run(binary, spec, "ash-memory,vma", 3)
            before = run(args.before, spec, "ash-memory", 1) if args.before else None
        except subprocess.TimeoutExpired:
            print("TIMEOUT", spec, flush=True)
            continue
        # The summary row: workload, threads, ash-memory ns, waste, calls, modelled ns, then
        # VMA's time ratio, waste (and its ratio), calls, modelled ratio.
        found = summary_row(out, spec)
        if found is None:
            print("NO ROW", spec, flush=True)
            continue
        row, cells = found
        ash_calls, vma_calls = int(cells[4].split()[0]), int(cells[8].split()[0])
        time = float(cells[6].rstrip("x"))
        waste = float(re.search(r"\(([\d.]+)x\)", cells[7]).group(1))
        marks = []
        if time < 1.0:
            marks.append(f"SLOW{time}")
        if waste < 1.0:
            marks.append(f"WASTE{waste}")
        if ash_calls > vma_calls:
            marks.append(f"CALLS{ash_calls}>{vma_calls}")
        if before is not None:
            was = summary_row(before, spec)
            if was is not None:
                was_calls, was_waste = int(was[1][4].split()[0]), float(was[1][3])
                now_waste = float(cells[3])
                if (was_calls, was_waste) != (ash_calls, now_waste):
                    marks.append(f"BEFORE{was_calls}/{was_waste}")
                    # Waste first (peak memory is what a user sees), then calls.
                    if (now_waste, ash_calls) < (was_waste, was_calls):
                        better += 1
                    else:
                        worse += 1
        print(("!! " if marks else "   ") + " ".join(marks), row, flush=True)
    if args.before:
        print(f"changed against --before: {better} better, {worse} worse", flush=True)


if __name__ == "__main__":
    main()
