"""Simulator speed: simulated guest I/Os per wall second vs bare SimPy timeouts.

Prints, for the reference config (configs/fleecing-vs-legacy.yaml, fleecing-push,
shortened), guest requests per wall second, bare `env.timeout` events per second
measured in the same process, and their ratio (target >= 0.3). Repeats and
quotes medians.

    python benchmarks/bench_sim.py [--repeat 5]
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import simpy

from fleecesim.config import load_config
from fleecesim.run import simulate

REF = Path(__file__).resolve().parents[1] / "configs" / "fleecing-vs-legacy.yaml"


def bare_timeouts(n: int = 1_000_000) -> float:
    env = simpy.Environment()

    def loop():
        for _ in range(n):
            yield env.timeout(0.001)

    env.process(loop())
    t = time.perf_counter()
    env.run()
    return n / (time.perf_counter() - t)


def guest_rate(scheme: str, size: str, extra=()) -> tuple[float, int]:
    cfg = load_config(REF, [f"backup.scheme={scheme}", f"disk.size={size}", "run.warmup=5s",
                            *extra])
    t = time.perf_counter()
    s = simulate(cfg).summary
    wall = time.perf_counter() - t
    return s["guest_ios"] / wall, s["guest_ios"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--size", default="16GiB", help="disk size of the reference run")
    args = ap.parse_args()
    bare = [bare_timeouts() for _ in range(args.repeat)]
    b = statistics.median(bare)
    print(f"bare SimPy timeouts/s: median {b:,.0f}  (runs: {', '.join(f'{x:,.0f}' for x in bare)})")
    cases = [("fleecing-push", "reference workload", ()),
             ("legacy-backup", "reference workload", ()),
             # The guest path alone: no backup events to interleave with.
             ("none", "50k IOPS, 20 s", ("workload.iops=50000", "run.warmup=20s"))]
    for scheme, what, extra in cases:
        rates = []
        for _ in range(args.repeat):
            r, n = guest_rate(scheme, args.size, extra)
            rates.append(r)
        m = statistics.median(rates)
        print(f"{scheme:14s} {what:20s} guest I/Os per wall s: median {m:,.0f} over {n:,} I/Os "
              f"-> ratio {m / b:.2f}  (runs: {', '.join(f'{x:,.0f}' for x in rates)})")


if __name__ == "__main__":
    main()
