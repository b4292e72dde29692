"""Sweep throughput: runs per wall second with 1 and 2 local worker processes,
and on a Dask LocalCluster (2 single-threaded worker processes).

Each point is a ~0.5-2 s fleecing-vs-legacy run (4 GiB disk, legacy-backup and
fleecing-push, the target's backend bandwidth swept), so process start-up does
not dominate. Times the whole `run_sweep` call (planning, workers, Parquet
writes, cluster start and shutdown), repeats, and prints medians.

    python benchmarks/bench_sweep.py [--repeat 3] [--points 6]
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from fleecesim.sweep import load_runs, run_sweep

ROOT = Path(__file__).resolve().parents[1]


def sweep(points: int) -> dict:
    bws = [f"{100 + 50 * i}MiB/s" for i in range(points)]
    return {"name": "bench", "base": str(ROOT / "configs" / "fleecing-vs-legacy.yaml"),
            "set": {"disk.size": "4GiB"}, "replications": 1,
            "grid": {"devices.target.backend.bandwidth": bws}}


def timed(spec: dict, **kw) -> tuple[float, int, float]:
    """(sweep wall time, runs, seconds the runs themselves took, summed)."""
    with tempfile.TemporaryDirectory() as d:
        t = time.perf_counter()
        out = run_sweep(spec, out=d, quiet=True, **kw)
        wall = time.perf_counter() - t
        runs = load_runs(out)
        assert runs["error"].isna().all(), runs["error"].dropna().tolist()
        return wall, len(runs), float(runs["wall_time_s"].sum())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--points", type=int, default=6, help="bandwidths (x 2 schemes = runs)")
    a = ap.parse_args()
    spec = sweep(a.points)
    modes = {"1 worker (in process)": {"jobs": 1},
             "2 local worker processes": {"jobs": 2},
             "dask LocalCluster, 2 workers": {"dask_local": True, "jobs": 2}}
    res: dict[str, list[float]] = {m: [] for m in modes}
    busy: dict[str, list[float]] = {m: [] for m in modes}
    n = 0
    for rep in range(a.repeat):
        for m, kw in modes.items():
            wall, n, work = timed(spec, **kw)
            res[m].append(wall)
            # share of the workers' time spent inside runs (1.0: no sweep overhead)
            busy[m].append(work / (wall * kw["jobs"]))
            print(f"  repeat {rep + 1}: {m:30s} {wall:6.2f} s   (load avg {os.getloadavg()[0]:.2f}:"
                  f" other work on the machine skews the ratios)", flush=True)
    base = statistics.median(res["1 worker (in process)"])
    print(f"\n{n} runs per sweep; medians over {a.repeat} repeats")
    for m, ws in res.items():
        med = statistics.median(ws)
        print(f"{m:30s} {med:6.2f} s  {n / med:5.2f} runs/s  speed-up {base / med:4.2f}x  "
              f"workers busy {statistics.median(busy[m]):4.0%}")


if __name__ == "__main__":
    main()
