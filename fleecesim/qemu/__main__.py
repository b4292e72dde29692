"""``python -m fleecesim.qemu``: run the small scenario on real QEMU for each
scheme and print a table (optionally the full results as JSON)."""
from __future__ import annotations

import argparse
import json
import math
import sys

from fleecesim.errors import UserError
from fleecesim.qemu.runner import qemu_available, run_qemu
from fleecesim.qemu.scenario import SCHEMES, QemuScenario
from fleecesim.units import fmt_size, fmt_time, parse_rate, parse_size

COLUMNS = [
    ("scheme", "scheme", str),
    ("backup", "backup_duration_s", fmt_time),
    ("w p50", "write_p50_s", fmt_time),
    ("w p99", "write_p99_s", fmt_time),
    ("w max", "write_max_s", fmt_time),
    ("writes", "writes_done", str),
    ("target bytes", "target_write_bytes", lambda v: fmt_size(v)),
    ("fleece cl", "fleecing_clusters_written", lambda v: "-" if v is None else str(v)),
    ("guest cl", "distinct_clusters_written_by_guest", str),
    ("content", "content_ok", lambda v: "ok" if v else "MISMATCH"),
    ("wall", "wall_time_s", fmt_time),
]


def table(results: list[dict]) -> str:
    rows = [[name for name, _, _ in COLUMNS]]
    for r in results:
        rows.append([fmt(r[key]) if not (isinstance(r[key], float) and math.isnan(r[key])) else "-"
                     for _, key, fmt in COLUMNS])
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    lines = ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths)))
             for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m fleecesim.qemu", description=__doc__)
    ap.add_argument("--schemes", default=",".join(SCHEMES), help="comma-separated, default all")
    ap.add_argument("--disk-size", default="64MiB")
    ap.add_argument("--cluster-size", default="64KiB")
    ap.add_argument("--target-bps", default="20MiB/s")
    ap.add_argument("--write-rate", type=float, default=200.0)
    ap.add_argument("--duration", type=float, default=2.0, help="guest seconds after backup start")
    ap.add_argument("--pre", type=float, default=0.0, help="guest seconds before backup start")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--as-is", action="store_true",
                    help="no snapshot read splitting (shows QEMU < 8.0's fleecing read bug)")
    ap.add_argument("--json", metavar="FILE", help="write all results (with latency lists) here")
    a = ap.parse_args(argv)
    try:
        ok, why = qemu_available()
        if not ok:
            raise UserError(f"real QEMU is not available: {why}")
        results = []
        for scheme in [s.strip() for s in a.schemes.split(",") if s.strip()]:
            cs = parse_size(a.cluster_size)
            sc = QemuScenario(
                disk_size=parse_size(a.disk_size), cluster_size=cs,
                target_bps=parse_rate(a.target_bps), write_rate=a.write_rate,
                duration_s=a.duration, pre_backup_s=a.pre, seed=a.seed, scheme=scheme,
                snapshot_read_max=None if a.as_is or scheme == "backup" else min(cs, 64 * 1024))
            print(f"running {scheme} ...", file=sys.stderr, flush=True)
            results.append(run_qemu(sc))
    except (UserError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(results[0]["qemu_version"] if results else "")
    print(table(results))
    for r in results:
        if not r["content_ok"]:
            print(f"CONTENT MISMATCH ({r['scheme']}): {r['content_detail']}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0 if all(r["content_ok"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
