"""Read a generated 1,000,000-request trace through open_trace: requests/s and peak RSS.

Usage: python benchmarks/bench_trace.py [--requests N] [--format fio|disksim|msr|alibaba|blkparse]
"""
from __future__ import annotations

import argparse
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fleecesim.workloads.traces import open_trace  # noqa: E402


def write_trace(path: Path, fmt: str, n: int, seed: int = 1) -> None:
    rng = np.random.default_rng(seed)
    t_us = np.cumsum(rng.integers(1, 200, n))
    off = rng.integers(0, 1 << 24, n) * 4096
    ln = 4096 << rng.integers(0, 5, n)
    wr = rng.random(n) < 0.4
    with open(path, "w") as f:
        for i in range(0, n, 100_000):
            s = slice(i, i + 100_000)
            if fmt == "fio":
                if i == 0:
                    f.write("fio version 3 iolog\n0 /dev/vdb add\n0 /dev/vdb open\n")
                acts = np.where(wr[s], "write", "read")
                f.writelines(f"{t} /dev/vdb {a} {o} {l}\n" for t, a, o, l in zip(t_us[s], acts, off[s], ln[s]))
            elif fmt == "disksim":
                f.writelines(f"{t * 1000} 0 {o // 512} {l // 512} {0 if w else 1}\n"
                             for t, o, l, w in zip(t_us[s], off[s], ln[s], wr[s]))
            elif fmt == "msr":
                f.writelines(f"{128166372000000000 + t * 10},hm,1,{'Write' if w else 'Read'},{o},{l},100\n"
                             for t, o, l, w in zip(t_us[s], off[s], ln[s], wr[s]))
            elif fmt == "alibaba":
                f.writelines(f"3,{'W' if w else 'R'},{o},{l},{t}\n" for t, o, l, w in zip(t_us[s], off[s], ln[s], wr[s]))
            elif fmt == "blkparse":
                f.writelines(f"  8,16   1 {i + j + 1:8d} {t / 1e6:14.9f}  4242  C  {'W' if w else 'R'}S {o // 512} + {l // 512} [0]\n"
                             for j, (t, o, l, w) in enumerate(zip(t_us[s], off[s], ln[s], wr[s])))
        if fmt == "fio":
            f.write(f"{int(t_us[-1]) + 1} /dev/vdb close\n")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=1_000_000)
    ap.add_argument("--format", default="fio", choices=["fio", "disksim", "msr", "alibaba", "blkparse"])
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / f"bench.{a.format}"
        t0 = time.perf_counter()
        write_trace(path, a.format, a.requests)
        print(f"generated {a.requests:,} {a.format} requests ({path.stat().st_size / 2**20:.1f} MiB) "
              f"in {time.perf_counter() - t0:.1f} s")
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        times = []
        for _ in range(a.repeat):
            t0 = time.perf_counter()
            n = sum(len(c) for c in open_trace(path))
            times.append(time.perf_counter() - t0)
            assert n == a.requests, n
        med = statistics.median(times)
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB -> MiB
        print(f"read: median {med:.3f} s of {a.repeat} -> {a.requests / med:,.0f} requests/s")
        print(f"peak RSS: {rss:.1f} MiB (before reading: {rss_before:.1f} MiB); limit 300 MiB")
        return 0 if rss < 300 else 1


if __name__ == "__main__":
    sys.exit(main())
