"""Backup durations on real-hardware presets: does the answer a user acts on
(which scheme, how many workers, copy offload or not) come out as it would on
their drives and network?

Prints, for a 1000 MiB fully allocated disk and no guest:

1. a table of backup durations, rows source->target over {hdd, sata-ssd,
   nbd-1gbe} (hdd:hdd, ssd:ssd and nbd:nbd mean both images on one device),
   columns {legacy-backup, backup 64 workers, backup 64 workers + copy-range,
   backup 1 worker + copy-range}, each with its ratio to the default
   ``backup`` (64 workers); a copy-range run that fell back to read+write is
   marked ``*`` (QEMU's block_copy_do_copy does the same when copy_range
   fails), one the config rejects says so;
2. the checks the hardware model is held to, each printed with its figures:
   legacy ssd->hdd against backup ssd->hdd, copy-range from an HDD source
   against plain read+write, ssd->nbd against nbd->ssd, push and pull over
   one 20 ms link against window/RTT.

Every figure is a finding of the presets as cited in
fleecesim/devices/presets.py; nothing here is tuned to come out.

    python benchmarks/bench_hardware.py [--size 1000MiB] [--json F]
"""
from __future__ import annotations

import argparse
import json
import sys
import time

from fleecesim.config import resolve
from fleecesim.errors import ConfigError
from fleecesim.run import simulate
from fleecesim.units import parse_size

MEDIA = {"hdd": "hdd-7200", "ssd": "sata-ssd", "nbd": "nbd-1gbe"}
COLUMNS = [
    ("legacy", {"backup.scheme": "legacy-backup"}),
    ("backup w64", {"backup.scheme": "backup", "backup.max-workers": 64}),
    ("w64+copy-range", {"backup.scheme": "backup", "backup.max-workers": 64,
                        "backup.x-perf.use-copy-range": True}),
    ("w1+copy-range", {"backup.scheme": "backup", "backup.max-workers": 1,
                       "backup.x-perf.use-copy-range": True}),
]
BASE_COLUMN = "backup w64"


def base(size: str, src: str, dst: str) -> dict:
    """Source on device ``a``; the target on ``a`` too when both are of one
    medium (both images on one device), else on ``b``."""
    devices = {"a": {"preset": MEDIA[src]}}
    target = "a"
    if dst != src:
        devices["b"] = {"preset": MEDIA[dst]}
        target = "b"
    return {"name": f"{src}-{dst}", "disk": {"size": size, "device": "a", "allocated": 1.0},
            "devices": devices, "workload": {"iops": 0},
            "backup": {"scheme": "backup", "target": {"device": target}},
            "run": {"seed": 1, "warmup": "0s", "tail": "0s", "max-time": "3h"}}


def run(raw: dict, overrides: dict) -> dict:
    """One run's summary, or {'rejected': message} for a config it refuses."""
    try:
        cfg = resolve(raw, overrides)
    except (ConfigError, ValueError) as e:
        return {"rejected": str(e).splitlines()[0]}
    t = time.perf_counter()
    s = simulate(cfg).summary
    s["_wall"] = time.perf_counter() - t
    if not s.get("oracle_ok"):
        raise SystemExit(f"{raw['name']} {overrides}: not the point-in-time image: "
                         f"{s.get('error') or s.get('backup_outcome')}")
    return s


def duration_table(size: str) -> tuple[str, dict]:
    res: dict = {}
    for src in MEDIA:
        for dst in MEDIA:
            raw = base(size, src, dst)
            res[f"{src}->{dst}" if src != dst else f"{src}:{dst}"] = {
                col: run(raw, ov) for col, ov in COLUMNS}
    head = ["source->target"] + [c for c, _ in COLUMNS]
    rows = []
    for pair, cols in res.items():
        ref = cols[BASE_COLUMN].get("backup_duration_s")
        row = [pair]
        for col, _ in COLUMNS:
            s = cols[col]
            if "rejected" in s:
                row.append("rejected")
                continue
            d = s["backup_duration_s"]
            mark = "*" if s.get("copy_range_fallback") else ""
            row.append(f"{d:8.2f}s{mark} ({d / ref:5.2f}x)")
        rows.append(row)
    width = [max(len(r[i]) for r in [head] + rows) for i in range(len(head))]
    fmt = lambda r: "  ".join(c.ljust(width[i]) if i == 0 else c.rjust(width[i])  # noqa: E731
                              for i, c in enumerate(r))
    lines = [fmt(head), "  ".join("-" * w for w in width)] + [fmt(r) for r in rows]
    return "\n".join(lines), res


def link_20ms(size: str) -> dict:
    """Push and pull over one 20 ms, 1.1 GiB/s NBD link; each bounded by the
    TCP window per round trip."""
    out = {}
    dev = {"kind": "remote", "rtt": "20ms", "link-bandwidth": "1.1GiB/s", "queue-depth": 16,
           "backend": {"preset": "nvme"}}
    for scheme in ("fleecing-push", "fleecing-pull"):
        raw = {"name": "link-20ms", "disk": {"size": size, "device": "local", "allocated": 1.0},
               "devices": {"local": {"preset": "nvme"}, "wan": dev},
               "workload": {"iops": 0},
               "backup": {"scheme": scheme, "target": {"device": "wan"},
                          "cache": {"device": "local"}},
               "run": {"seed": 1, "warmup": "0s", "tail": "0s", "max-time": "3h"}}
        out[scheme] = run(raw, {})
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="1000MiB")
    ap.add_argument("--json", help="also write every summary's key figures here")
    a = ap.parse_args(argv)
    t0 = time.perf_counter()
    text, res = duration_table(a.size)
    print(f"backup duration, {a.size}, no guest (ratio to `backup` 64 workers; "
          "* = copy-range fell back to read+write)\n")
    print(text)
    print()
    d = lambda pair, col: res[pair][col].get("backup_duration_s")  # noqa: E731
    checks = []
    lg, bk = d("ssd->hdd", "legacy"), d("ssd->hdd", BASE_COLUMN)
    checks.append(f"legacy ssd->hdd {lg:.2f}s vs backup {bk:.2f}s: {lg / bk:.2f}x (issue: <= 1.5x)")
    for pair in ("hdd:hdd", "hdd->ssd"):
        cr, rw = d(pair, "w64+copy-range"), d(pair, BASE_COLUMN)
        if cr is not None:
            checks.append(f"{pair} w64 copy-range {cr:.2f}s vs read+write {rw:.2f}s: "
                          f"{cr / rw:.2f}x (issue: > 1, slower)")
    sn, ns = d("ssd->nbd", BASE_COLUMN), d("nbd->ssd", BASE_COLUMN)
    checks.append(f"ssd->nbd {sn:.2f}s vs nbd->ssd {ns:.2f}s: {sn / ns:.3f}x (issue: > 1)")
    size = parse_size(a.size)
    bound = 3 * 2**20 / 0.020  # Linux's default window (3 MiB) per 20 ms round trip
    for scheme, s in link_20ms(a.size).items():
        rate = size / s["backup_duration_s"]
        checks.append(f"{scheme} over 20 ms: {rate / 2**20:.1f} MiB/s vs window/RTT "
                      f"{bound / 2**20:.1f} MiB/s: {rate / bound:.3f}x (issue: within 10 %)")
    print("\n".join(checks))
    print(f"\n({time.perf_counter() - t0:.1f}s)")
    if a.json:
        keep = ("backup_duration_s", "copy_range_fallback", "rejected")
        with open(a.json, "w") as fh:
            json.dump({p: {c: {k: s[k] for k in keep if k in s} for c, s in cols.items()}
                       for p, cols in res.items()}, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
