"""Wall time and peak RSS against disk size.

Three scenarios on the reference devices (configs/fleecing-vs-legacy.yaml,
fleecing-push, NVMe + NBD target), each with a 1k IOPS guest:

* ``full``: a full backup of a disk that is 90 % allocated (the config's own
  layout): the yardstick, at 64 GiB only by default (its simulated time
  grows with the disk);
* ``sparse``: a full backup of a disk holding 64 GiB of data, the rest zero
  (block status finds it; QEMU still sends one write-zeroes per MiB of it:
  jobs/bulk.py);
* ``incremental``: an incremental backup with 64 GiB dirty.

Each point runs in a subprocess of its own (its peak RSS is its own), on
``run.state: auto`` (sparse per-cluster state beyond 2^24 clusters:
fleecesim/sparse.py). ``--repeat N`` runs each point N times and reports the
median wall and CPU time (and the largest RSS). The last columns compare with
P3's goal, wall time against the 64 GiB full backup's (<= 2x, RSS <= 2 GiB);
CPU time is the same comparison without the other load of a shared machine.

    python benchmarks/bench_scale.py [--sizes 64GiB,1TiB,64TiB] [--repeat 3]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REF = ROOT / "configs" / "fleecing-vs-legacy.yaml"
DATA = 64 * 2**30  # the data of the sparse disk and the dirty bytes of the incremental

CHILD = r"""
import json, resource, sys, time
sys.path.insert(0, sys.argv[1])
from fleecesim.config import load_config
from fleecesim.run import simulate
cfg = load_config(sys.argv[2], json.loads(sys.argv[3]))
t, c = time.perf_counter(), time.process_time()
s = simulate(cfg).summary
wall, cpu = time.perf_counter() - t, time.process_time() - c
if s.get("error"):
    print(json.dumps({"error": s["error"]}))
    sys.exit(0)
ru = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"wall": wall, "rss": ru.ru_maxrss * 1024, "cpu": cpu,
                  "ios": s["guest_ios"], "clusters": s["clusters"], "sim": s["backup_duration_s"],
                  "ok": s["oracle_ok"], "error": s.get("error")}))
"""


def parse_size(text: str) -> int:
    from fleecesim.units import parse_size as ps
    return ps(text)


def overrides(scenario: str, size: int) -> list[str]:
    o = ["backup.scheme=fleecing-push", f"disk.size={size}", "workload.iops=1000",
         "run.max-time=1000000s"]
    if scenario == "sparse":
        o.append(f"disk.allocated={min(1.0, DATA / size)}")
    elif scenario == "incremental":
        o += ["backup.sync=incremental", f"backup.incremental.dirty={min(1.0, DATA / size)}"]
    return o


def run_point(scenario: str, size: int, timeout: float) -> dict:
    cmd = [sys.executable, "-c", CHILD, str(ROOT), str(REF), json.dumps(overrides(scenario, size))]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"over {timeout:.0f}s"}
    if out.returncode:
        return {"error": out.stderr.strip().splitlines()[-1] if out.stderr else "failed"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    import statistics
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="64GiB,256GiB,1TiB,4TiB,16TiB,64TiB")
    ap.add_argument("--scenarios", default="full,sparse,incremental")
    ap.add_argument("--full-sizes", default="64GiB",
                    help="sizes the full scenario runs at (its simulated time grows with size)")
    ap.add_argument("--repeat", type=int, default=1, help="runs per point (median wall)")
    ap.add_argument("--timeout", type=float, default=3600.0, help="seconds per run")
    args = ap.parse_args()
    from fleecesim.units import fmt_size
    print(f"{'scenario':12s} {'disk':>7s} {'clusters':>13s} {'guest I/Os':>11s} "
          f"{'backup (sim)':>13s} {'wall':>8s} {'CPU':>8s} {'peak RSS':>10s}  oracle  "
          f"{'wall/full64':>11s} {'CPU/full64':>10s}")
    ref = cref = None
    full_sizes = {parse_size(t) for t in args.full_sizes.split(",")}
    for scenario in args.scenarios.split(","):
        for text in args.sizes.split(","):
            size = parse_size(text)
            if scenario == "full" and size not in full_sizes:
                continue
            runs = [run_point(scenario, size, args.timeout) for _ in range(args.repeat)]
            bad = [r for r in runs if r.get("error")]
            if bad:
                print(f"{scenario:12s} {fmt_size(size):>7s}  -- {bad[0]['error']}", flush=True)
                continue
            r = runs[0]
            wall = statistics.median(x["wall"] for x in runs)
            cpu = statistics.median(x["cpu"] for x in runs)  # what other load cannot inflate
            rss = max(x["rss"] for x in runs)
            if scenario == "full" and size == 64 * 2**30:
                ref, cref = wall, cpu
            ratio = f"{wall / ref:10.2f}x" if ref else f"{'':>11s}"
            cratio = f"{cpu / cref:9.2f}x" if cref else f"{'':>10s}"
            walls = "" if len(runs) == 1 else "  (" + ", ".join(f"{x['wall']:.1f}" for x in runs) + ")"
            print(f"{scenario:12s} {fmt_size(size):>7s} {r['clusters']:>13,} {r['ios']:>11,} "
                  f"{r['sim']:>12.0f}s {wall:>7.1f}s {cpu:>7.1f}s {fmt_size(rss):>10s}  "
                  f"{str(r['ok']):6s}  {ratio} {cratio}{walls}", flush=True)


if __name__ == "__main__":
    main()
