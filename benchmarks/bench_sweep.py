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


def _spin(n: int = 6_000_000) -> float:
    x = 0
    for i in range(n):
        x += i
    return float(x)


def machine_parallelism() -> float:
    """What 2 processes can get right now: time of 2 fixed CPU loops one after
    the other / the same 2 loops in 2 processes at once (2.0 on an idle
    2-core machine; less when other work shares the cores)."""
    import multiprocessing
    t = time.perf_counter()
    _spin(), _spin()
    serial = time.perf_counter() - t
    with multiprocessing.get_context("fork").Pool(2) as pool:
        pool.map(_spin, [10, 10])  # start-up outside the timing
        t = time.perf_counter()
        pool.map(_spin, [6_000_000, 6_000_000], chunksize=1)
        parallel = time.perf_counter() - t
    return serial / parallel


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
    par = []
    for rep in range(a.repeat):
        par.append(machine_parallelism())
        print(f"  repeat {rep + 1}: 2 CPU loops in 2 processes: {par[-1]:.2f}x", flush=True)
        for m, kw in modes.items():
            wall, n, work = timed(spec, **kw)
            res[m].append(wall)
            # share of the workers' time spent inside runs (1.0: no sweep overhead)
            busy[m].append(work / (wall * kw["jobs"]))
            print(f"  repeat {rep + 1}: {m:30s} {wall:6.2f} s   (load avg "
                  f"{os.getloadavg()[0]:.2f})", flush=True)
    base = statistics.median(res["1 worker (in process)"])
    print(f"\n{n} runs per sweep; medians over {a.repeat} repeats; the machine gave 2 "
          f"processes {statistics.median(par):.2f}x (2.00 = two idle cores)")
    for m, ws in res.items():
        med = statistics.median(ws)
        print(f"{m:30s} {med:6.2f} s  {n / med:5.2f} runs/s  speed-up {base / med:4.2f}x  "
              f"workers busy {statistics.median(busy[m]):4.0%}")


if __name__ == "__main__":
    main()
