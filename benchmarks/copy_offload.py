"""Backup duration with and without copy offload (x-perf.use-copy-range), by medium.

1000 MiB, fully allocated, no guest, the ``backup`` scheme, bundled presets.
Rows: source->target; hdd:hdd and ssd:ssd put both images on one device (one
filesystem: the kernel can offload), ssd->hdd and hdd->ssd are two devices
(two filesystems: copy_file_range returns EXDEV and block-copy falls back to
read + write, as QEMU does). Columns: ``backup`` with 64 workers (QEMU's
default), with 64 workers + copy-range, with 1 worker + copy-range, and the
same on a reflink filesystem where offload happens; each with its ratio to
the default. The figures are findings of the model (devices/host.py:
copy_file_range), not tuned to anything.

    PYTHONPATH=. python benchmarks/copy_offload.py [--size 1000MiB]
"""
from __future__ import annotations

import argparse

from fleecesim.config import resolve
from fleecesim.run import simulate

PAIRS = [("hdd", "hdd"), ("ssd", "ssd"), ("ssd", "hdd"), ("hdd", "ssd")]
PRESET = {"hdd": "hdd-7200", "ssd": "sata-ssd"}
COLUMNS = [("backup w64", 64, False, False), ("w64+copy-range", 64, True, False),
           ("w1+copy-range", 1, True, False), ("w64+reflink", 64, True, True)]


def run(src: str, dst: str, workers: int, copy_range: bool, reflink: bool, size: str) -> dict:
    """One backup's summary; two devices unless source and target are one."""
    one = src == dst
    s_name, d_name = (src, src) if one else (f"{src}-a", f"{dst}-b")
    devices = {s_name: {"preset": PRESET[src], "reflink": reflink}}
    if not one:
        devices[d_name] = {"preset": PRESET[dst], "reflink": reflink}
    raw = {"disk": {"size": size, "device": s_name, "allocated": 1.0},
           "devices": devices, "workload": {"iops": 0},
           "backup": {"scheme": "backup", "target": {"device": d_name},
                      "max-workers": workers, "x-perf": {"use-copy-range": copy_range}},
           "run": {"warmup": 0, "tail": 0}}
    s = simulate(resolve(raw)).summary
    if not s.get("oracle_ok"):
        raise SystemExit(f"{src}->{dst}: backup not ok: {s.get('error')}")
    return s


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="1000MiB")
    a = ap.parse_args()
    head = f"{'source->target':16}" + "".join(f"{c[0]:>24}" for c in COLUMNS)
    print(f"backup of {a.size}, no guest (seconds; x = ratio to 'backup w64'; "
          f"method: splice / reflink / read-write = fell back)")
    print(head)
    for src, dst in PAIRS:
        pair = f"{src}:{dst}" if src == dst else f"{src}->{dst}"
        cells, base = [], None
        for _label, w, cr, rl in COLUMNS:
            s = run(src, dst, w, cr, rl, a.size)
            d = s["backup_duration_s"]
            base = d if base is None else base
            how = s.get("copy_range_method") or "-"
            cells.append(f"{d:9.4g}s {d / base:6.3g}x {how:>7}")
        print(f"{pair:16}" + "".join(f"{c:>24}" for c in cells))


if __name__ == "__main__":
    main()
