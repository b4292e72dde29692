"""The constants of the pre-run cost estimate (fleecesim/cost.py), measured.

Each figure from its own run in a fresh process (peak RSS is per process):

* wall seconds per guest request: the guest alone (scheme none) at 50k IOPS,
  open loop, on the bundled reference devices, wall time over requests;
* wall seconds per copy task: an idle guest (iops 0) and a full backup of a
  fully allocated disk, wall time over tasks (disk / max-chunk);
* bytes per guest request: peak RSS of two guest-alone runs, the difference
  over the difference of their requests (the recorder's columns, the
  summary's arrays and the results frame, all per request);
* open loop with max-inflight 16: wall seconds per request (one process
  issues them, a timeout each: workloads/driver.py _open_limited);
* closed loop (iodepth): wall seconds per request at iodepth 32, and bytes
  per iodepth slot (one SimPy process each: workloads/driver.py _closed),
  peak RSS at iodepth 100000 against 1000 over a short run, less the
  requests' own bytes.

    python benchmarks/bench_cost.py [--repeat 3]

The machine is shared and noisy: quote medians, and compare with what
fleecesim/cost.py holds before changing it.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

REF = Path(__file__).resolve().parents[1] / "configs" / "fleecing-vs-legacy.yaml"

CHILD = r"""
import json, resource, sys, time
from fleecesim.config import load_config
from fleecesim.run import simulate
cfg = load_config(sys.argv[1], sys.argv[2:])
t = time.perf_counter()
r = simulate(cfg)
r.requests  # the results frame, as a saved run builds it
wall = time.perf_counter() - t
s = r.summary
print(json.dumps({"wall": wall, "ios": s["guest_ios"], "rss": resource.getrusage(
    resource.RUSAGE_SELF).ru_maxrss * 1024, "chunk": cfg.max_chunk, "size": cfg.disk.size,
    "ok": s["oracle_ok"]}))
"""


def child(*sets: str) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, str(REF), *sets], check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    guest = ("backup.scheme=none", "workload.iops=50000", "disk.size=1GiB", "run.tail=0s")
    per_req, per_copy, per_byte, per_closed, per_slot, per_limited = [], [], [], [], [], []
    load0 = os.getloadavg()[0]
    for _ in range(args.repeat):
        a = child(*guest, "run.warmup=4s")
        b = child(*guest, "run.warmup=16s")
        per_req.append((b["wall"] - a["wall"]) / (b["ios"] - a["ios"]))
        per_byte.append((b["rss"] - a["rss"]) / (b["ios"] - a["ios"]))
        c = child("backup.scheme=fleecing-push", "workload.iops=0", "disk.size=8GiB",
                  "disk.allocated=1.0", "run.warmup=0s", "run.tail=0s")
        d = child("backup.scheme=fleecing-push", "workload.iops=0", "disk.size=32GiB",
                  "disk.allocated=1.0", "run.warmup=0s", "run.tail=0s")
        assert c["ok"] and d["ok"]
        per_copy.append((d["wall"] - c["wall"]) / ((d["size"] - c["size"]) / d["chunk"]))
        lim = ("backup.scheme=none", "workload.iops=50000", "workload.max-inflight=16",
               "disk.size=1GiB", "run.tail=0s")
        la, lb = child(*lim, "run.warmup=2s"), child(*lim, "run.warmup=8s")
        per_limited.append((lb["wall"] - la["wall"]) / (lb["ios"] - la["ios"]))
        closed = ("backup.scheme=none", "workload.iops=null", "disk.size=1GiB", "run.tail=0s")
        e = child(*closed, "workload.iodepth=32", "run.warmup=1s")
        f = child(*closed, "workload.iodepth=32", "run.warmup=4s")
        per_closed.append((f["wall"] - e["wall"]) / (f["ios"] - e["ios"]))
        g = child(*closed, "workload.iodepth=1000", "run.warmup=0.05s")
        h = child(*closed, "workload.iodepth=100000", "run.warmup=0.05s")
        per_slot.append((h["rss"] - g["rss"] - per_byte[-1] * (h["ios"] - g["ios"]))
                        / (100000 - 1000))
    print(f"wall per guest request: median {statistics.median(per_req) * 1e6:.2f} us "
          f"(runs: {', '.join(f'{x * 1e6:.2f}' for x in per_req)})")
    print(f"wall per copy task (1 MiB): median {statistics.median(per_copy) * 1e6:.1f} us "
          f"(runs: {', '.join(f'{x * 1e6:.1f}' for x in per_copy)})")
    print(f"peak memory per guest request: median {statistics.median(per_byte):.0f} B "
          f"(runs: {', '.join(f'{x:.0f}' for x in per_byte)})")
    print(f"wall per open-loop request with max-inflight 16: median "
          f"{statistics.median(per_limited) * 1e6:.2f} us "
          f"(runs: {', '.join(f'{x * 1e6:.2f}' for x in per_limited)})")
    print(f"wall per closed-loop request (iodepth 32): median "
          f"{statistics.median(per_closed) * 1e6:.2f} us "
          f"(runs: {', '.join(f'{x * 1e6:.2f}' for x in per_closed)})")
    print(f"load average (1 min) at start and end: {load0:.1f}, {os.getloadavg()[0]:.1f} "
          f"on {os.cpu_count()} CPUs")
    print(f"peak memory per iodepth slot: median {statistics.median(per_slot):.0f} B "
          f"(runs: {', '.join(f'{x:.0f}' for x in per_slot)})")


if __name__ == "__main__":
    main()
