"""One Proxmox VE node's backup night under vzdump's schedule, by max-workers.

Runs a fleet config (default configs/pve-pbs.yaml) with vzdump's order
(fleet.vzdump: one VM at a time, in list order) once per
``performance: max-workers`` value, and prints one table per value: for each
VM its backup duration and bottleneck stage (a pbs target's busiest stage,
nodes/pbs.py), for the node its window and fleecing peak.

    python benchmarks/pve_night.py [CONFIG] [--workers 1,16,64] [--set KEY=VALUE ...]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fleecesim.config import load_config, variants
from fleecesim.report import _render
from fleecesim.run import simulate
from fleecesim.units import fmt_size

ROOT = Path(__file__).resolve().parents[1]


def night(path, workers: int, sets: list[str]) -> dict:
    """The fleet's summary with vzdump's max-workers = ``workers``."""
    cfg = load_config(path, [*sets, f"fleet.vzdump.performance.max-workers={workers}"])
    if cfg.fleet.vzdump is None:
        raise SystemExit(f"{path}: not a vzdump fleet (give fleet.vzdump, or "
                         f"--set fleet.vzdump.fleecing.enabled=true)")
    (name, c), = variants(cfg)
    s = simulate(c, name).summary
    if s.get("error"):
        raise SystemExit(f"{name}: {s['error']}")
    return s


def rows(s: dict, workers: int) -> list[list[str]]:
    out = []
    for n in s["nodes"]:
        for name in n["vms"]:
            v = next(x for x in s["vms"] if x["name"] == name)
            out.append([str(workers), n["name"], name, f"{v['backup_duration_s']:.1f}s",
                        str(v.get("pbs_bottleneck") or "-"),
                        fmt_size(v.get("fleecing_peak_bytes") or 0),
                        "ok" if v["oracle_ok"] else v["backup_outcome"]])
        out.append([str(workers), n["name"], "(node window)", f"{n['backup_window_s']:.1f}s",
                    "", fmt_size(n["fleecing_peak_bytes"]), ""])
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("config", nargs="?", default=str(ROOT / "configs/pve-pbs.yaml"))
    ap.add_argument("--workers", default="1,16,64")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    a = ap.parse_args(argv)
    body = []
    for w in [int(x) for x in a.workers.split(",")]:
        body += rows(night(a.config, w, a.set), w)
    print(_render(["max-workers", "node", "vm", "duration", "bottleneck", "fleecing peak",
                   "oracle"], body))
    return 0


if __name__ == "__main__":
    sys.exit(main())
