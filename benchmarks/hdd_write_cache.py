"""Backup to and from the default HDD (hdd-7200): the drive's write cache and
its zones, in backup durations. 1000 MiB, fully allocated, no guest.

    python benchmarks/hdd_write_cache.py

Table 1: legacy-backup vs backup (64 workers), source SSD or NVMe, target
hdd-7200 with its write cache on (the preset) and off (write-cache: 0). The
job ends when its last write is acknowledged; "drained" is when a FLUSH CACHE
sent then would complete (the cache's last write-out: QEMU flushes a target
node when it closes it, block.c bdrv_close; blockdev-backup to a node that
stays open sends none).

Table 2: a disk filling a 2 GiB zoned drive backed up to NVMe: the first half
(the outer zones) against the second half, beside the closed form of
devices/hdd.py (the zone integral; the first half also pays the first seek).
"""
from __future__ import annotations

import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's fleecesim

import fleecesim.run as run_mod  # noqa: E402
from fleecesim.config import resolve  # noqa: E402
from fleecesim.run import simulate  # noqa: E402

MiB = 2**20


def backup(src: str, tgt: dict, scheme: str, size=1000 * MiB, workers=64):
    """(duration, drained-at) of one backup; ``drained`` is the target HDD's
    flush time at the job's end (None when the target is not an HDD)."""
    built = {}
    orig = run_mod.build_device

    def spy(name, spec):
        built[name] = orig(name, spec)
        return built[name]

    raw = {"disk": {"size": size, "device": "src", "allocated": 1.0},
           "devices": {"src": {"preset": src} if isinstance(src, str) else src, "dst": tgt},
           "workload": {"iops": 0},
           "backup": {"scheme": scheme, "target": {"device": "dst"}},
           "run": {"seed": 1, "warmup": "0s", "tail": "0s", "max-time": "900s"}}
    extra = {"backup.max-workers": workers} if scheme == "backup" else {}
    run_mod.build_device = spy
    try:
        s = simulate(resolve(raw, extra)).summary
    finally:
        run_mod.build_device = orig
    if not s.get("oracle_ok"):
        raise SystemExit(f"{src}->{tgt} {scheme}: not ok: {s.get('error')}")
    end = s["backup_end_s"]
    dst = built["dst"]
    drained = dst.flush(end) - s["backup_start_s"] if hasattr(dst, "flush") else None
    return s["backup_duration_s"], drained


def table1(out=sys.stdout):
    print(f"{'source -> target':32} {'legacy':>8} {'drained':>8} {'backup64':>9} "
          f"{'drained':>8} {'legacy/backup':>14} {'(drained)':>10}", file=out)
    for src in ("sata-ssd", "nvme"):
        for label, tgt in (("hdd-7200", {"preset": "hdd-7200"}),
                           ("hdd-7200 write-cache 0", {"preset": "hdd-7200", "write-cache": 0})):
            lg, lgd = backup(src, tgt, "legacy-backup")
            bk, bkd = backup(src, tgt, "backup")
            print(f"{src + ' -> ' + label:32} {lg:7.2f}s {lgd:7.2f}s {bk:8.2f}s {bkd:7.2f}s "
                  f"{lg / bk:13.2f}x {lgd / bkd:9.2f}x", file=out)


def table2(out=sys.stdout):
    from fleecesim.config import DeviceSpec
    from fleecesim.devices import build_device
    C = 2 * 2**30
    d = build_device("h", DeviceSpec.model_validate({"preset": "hdd-7200", "capacity": C}))
    bo, bi = d.bandwidth, d.inner_bandwidth
    bm = math.sqrt((bo**2 + bi**2) / 2)
    k = 2 * C / (bo**2 - bi**2)
    first_cf = k * (bo - bm) + d.seek_read.average + d.half_rotation
    second_cf = k * (bm - bi)
    print(f"\n{'2 GiB zoned drive -> nvme':32} {'1st half':>9} {'2nd half':>9} {'ratio':>7}", file=out)
    print(f"{'closed form':32} {first_cf:8.3f}s {second_cf:8.3f}s {second_cf / first_cf:7.4f}",
          file=out)
    src = {"preset": "hdd-7200", "capacity": C}
    for scheme in ("legacy-backup", "backup"):
        half, _ = backup(src, {"preset": "nvme"}, scheme, size=C // 2)
        full, _ = backup(src, {"preset": "nvme"}, scheme, size=C)
        print(f"{scheme:32} {half:8.3f}s {full - half:8.3f}s {(full - half) / half:7.4f}", file=out)


if __name__ == "__main__":
    table1()
    table2()
