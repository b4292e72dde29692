"""Memory per simulated cluster: peak RSS of a 1 TiB disk under the bundled workload.

    python benchmarks/bench_memory.py [--size 1TiB] [--scheme fleecing-push]
"""
from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

from fleecesim.config import load_config
from fleecesim.run import simulate

REF = Path(__file__).resolve().parents[1] / "configs" / "fleecing-vs-legacy.yaml"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", default="1TiB")
    ap.add_argument("--scheme", default="fleecing-push")
    args = ap.parse_args()
    cfg = load_config(REF, [f"disk.size={args.size}", f"backup.scheme={args.scheme}",
                            "run.max-time=100000s"])
    t = time.perf_counter()
    s = simulate(cfg).summary
    wall = time.perf_counter() - t
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{args.size} {args.scheme}: clusters {s['clusters']:,}, guest I/Os {s['guest_ios']:,}, "
          f"backup {s['backup_duration_s']:.0f}s simulated, oracle_ok={s['oracle_ok']}, "
          f"wall {wall:.1f}s, peak RSS {rss:.0f} MiB ({rss * 2**20 / s['clusters']:.1f} B/cluster)")


if __name__ == "__main__":
    main()
