"""Replay a generated 1,000,000-request trace through the simulator.

Prints simulated guest requests per wall second and peak RSS (target < 300 MiB)
for a fio v3 iolog replayed open loop (its own timestamps) on a 64 GiB disk,
with no backup and under fleecing-push.

    python benchmarks/bench_trace_replay.py [--requests N] [--scheme none]
"""
from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_trace import write_trace  # noqa: E402

from fleecesim.config import resolve  # noqa: E402
from fleecesim.run import simulate  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=1_000_000)
    ap.add_argument("--scheme", default="none")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "bench.fio"
        write_trace(path, "fio", a.requests)  # ~100 s of I/O at ~10k IOPS, offsets < 64 GiB
        cfg = resolve({
            "disk": {"size": "64GiB"},
            "workload": {"trace": str(path), "format": "fio", "map": "wrap"},
            "backup": {"scheme": a.scheme},
            "run": {"warmup": "40s", "tail": "200s"},
        })
        t = time.perf_counter()
        s = simulate(cfg).summary
        wall = time.perf_counter() - t
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if s.get("error"):
        print("error:", s["error"])
        return 1
    print(f"{a.scheme}: replayed {s['guest_ios']:,} requests in {wall:.1f}s wall "
          f"-> {s['guest_ios'] / wall:,.0f} requests/s; peak RSS {rss:.0f} MiB; "
          f"oracle_ok={s['oracle_ok']} error={s.get('error')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
