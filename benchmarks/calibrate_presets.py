"""fio-like micro-benchmarks on each device preset, beside the cited figures.

Run: python benchmarks/calibrate_presets.py

Each job drives one device built from a preset with a closed loop of ``qd``
outstanding requests (as fio's ``iodepth``): sequential 1 MiB read and write
and random 4 KiB read and write at QD1 and QD32 (on an HDD the write jobs
with its write cache off), and on the HDD k interleaved
sequential 1 MiB readers (k fio jobs at QD1, each in its own k-th of the
drive). The cited figures are the ones presets.py gives with their sources;
tests/test_calibration.py holds each within 10 %.
"""
from __future__ import annotations

import heapq
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's fleecesim

from fleecesim.config import DeviceSpec
from fleecesim.devices import build_device

MB = 1e6
SPAN_SSD = 16 * 2**30  # fio's span on an SSD (any span costs the same there)

# (preset, job) -> (value, unit, source). Units: MB/s for sequential, IOPS for random.
CITED = {
    ("sata-ssd", "seq-read-qd32"): (560, "MB/s", "Samsung 870 EVO spec (KitGuru: 561 measured)"),
    ("sata-ssd", "seq-write-qd32"): (530, "MB/s", "Samsung 870 EVO spec (KitGuru: 531 measured)"),
    ("sata-ssd", "rand-read-qd1"): (13000, "IOPS", "Samsung 870 EVO spec, QD1"),
    ("sata-ssd", "rand-write-qd1"): (36000, "IOPS", "Samsung 870 EVO spec, QD1"),
    ("sata-ssd", "rand-read-qd32"): (98000, "IOPS", "Samsung 870 EVO spec, QD32"),
    ("sata-ssd", "rand-write-qd32"): (88000, "IOPS", "Samsung 870 EVO spec, QD32"),
    ("nvme", "seq-read-qd32"): (3500, "MB/s", "Samsung 970 EVO Plus 1TB spec"),
    ("nvme", "seq-write-qd32"): (3300, "MB/s", "Samsung 970 EVO Plus 1TB spec (TurboWrite)"),
    ("nvme", "rand-read-qd1"): (19000, "IOPS", "Samsung 970 EVO Plus 1TB spec, QD1"),
    ("nvme", "rand-write-qd1"): (60000, "IOPS", "Samsung 970 EVO Plus 1TB spec, QD1"),
    ("nvme", "rand-read-qd32"): (600000, "IOPS", "Samsung 970 EVO Plus 1TB spec, QD32"),
    ("nvme", "rand-write-qd32"): (550000, "IOPS", "Samsung 970 EVO Plus 1TB spec, QD32"),
    # HDD: the datasheet's mechanics in the textbook closed form
    # 1/(average seek + average latency + transfer); with zoned recording the
    # mean 4 KiB transfer over uniform LBAs is 4KiB * 2/(B_o + B_i) (the mean
    # of 1/rate(f), rate = sqrt(B_o^2 - f(B_o^2 - B_i^2))). Write jobs run
    # with write-cache 0 (WCE_OFF below): the datasheet's figures are media
    # figures; the cache has its closed-form tests (tests/test_hdd_zones_cache.py).
    ("hdd-7200", "rand-read-qd1"): (1 / (7.4e-3 + 4.16e-3 + 4096 * 2 / (255e6 + 127.5e6)), "IOPS",
                                    "HC310 spec: 1/(7.4ms avg seek + 4.16ms avg latency + xfer)"),
    ("hdd-7200", "rand-write-qd1"): (1 / (8.2e-3 + 4.16e-3 + 4096 * 2 / (255e6 + 127.5e6)), "IOPS",
                                     "HC310 spec: 1/(8.2ms avg write seek + 4.16ms + xfer)"),
    ("hdd-7200", "seq-read-qd1"): (255, "MB/s", "HC310 data sheet, 255 MB/s sustained (not re-read)"),
    ("hdd-7200", "seq-write-qd1"): (255, "MB/s", "HC310 data sheet, 255 MB/s sustained (not re-read)"),
    ("hdd-7k320", "rand-read-qd1"): (1 / (12e-3 + 4.2e-3 + 4096 * 2 / (180 * 2**20 + 90 * 2**20)),
                                     "IOPS", "7K320 spec: 1/(12ms avg seek + 4.2ms avg latency + xfer)"),
    ("hdd-7k320", "rand-write-qd1"): (1 / (12e-3 + 4.2e-3 + 4096 * 2 / (180 * 2**20 + 90 * 2**20)),
                                      "IOPS", "7K320 spec: 1/(12ms avg seek + 4.2ms avg latency + xfer)"),
    ("hdd-7k320", "seq-read-qd1"): (180 * 2**20 / MB, "MB/s", "media rate (NOT sourced, see presets.py)"),
    ("hdd-7k320", "seq-write-qd1"): (180 * 2**20 / MB, "MB/s", "media rate (NOT sourced, see presets.py)"),
    ("ceph-rbd", "rand-read-qd1"): (1 / 0.57e-3, "IOPS",
                                    "Ceph on SATA SSD, 0.57 ms QD1 read (yourcmc.ru Ceph_performance)"),
    ("ceph-rbd", "rand-write-qd1"): (1 / 1.0e-3, "IOPS",
                                     "Ceph on SATA SSD, 1 ms QD1 write (yourcmc.ru Ceph_performance)"),
}

JOBS = [(f"{pat}-{rw}-qd{qd}", pat, rw, qd) for pat in ("seq", "rand")
        for rw in ("read", "write") for qd in (1, 32)]


def device(preset: str, **over):
    return build_device(preset, DeviceSpec.model_validate({"preset": preset, **over}))


# the write jobs on a disk run with its write cache off (the cited figures are
# the media's; a cached write is acknowledged at the interface rate)
WCE_OFF = {"write-cache": 0}


def job_device(preset: str, rw: str):
    """The device a calibration job runs on."""
    if rw == "write" and preset.startswith("hdd"):
        return device(preset, **WCE_OFF)
    return device(preset)


def span_of(dev) -> int:
    return getattr(dev, "capacity", 0) or SPAN_SSD


def fio(dev, pattern: str, write: bool, qd: int, n: int, bs: int | None = None,
        seed: int = 1) -> tuple[float, float]:
    """Closed loop of ``qd`` outstanding requests, ``n`` in all. Returns
    (MB/s, IOPS)."""
    bs = bs or (2**20 if pattern == "seq" else 4096)
    span = span_of(dev)
    rng = np.random.default_rng(seed)
    offs = (rng.integers(0, span // bs, n) * bs).tolist() if pattern == "rand" else None
    heap = [0.0] * qd
    t_end = 0.0
    for i in range(n):
        now = heapq.heappop(heap)
        off = offs[i] if offs is not None else i * bs
        end = dev.submit(now, off, bs, write)
        heapq.heappush(heap, end)
        t_end = max(t_end, end)
    return n * bs / t_end / MB, n / t_end


def k_streams(dev, k: int, n_per: int = 200, bs: int = 2**20) -> float:
    """k sequential readers at QD1 each, stream i in the i-th k-th of the
    drive; returns total MB/s."""
    region = span_of(dev) // k // bs * bs
    heap = [(0.0, i) for i in range(k)]   # (time, stream): FIFO among equal times
    pos = [i * region for i in range(k)]
    done = [0] * k
    t_end = 0.0
    while heap:
        now, i = heapq.heappop(heap)
        end = dev.submit(now, pos[i], bs)
        pos[i] += bs
        done[i] += 1
        t_end = max(t_end, end)
        if done[i] < n_per:
            heapq.heappush(heap, (end, i))
    return k * n_per * bs / t_end / MB


def n_for(preset: str, pattern: str) -> int:
    if preset.startswith("hdd"):
        return 400 if pattern == "seq" else 1500
    return 2000 if pattern == "seq" else 20000


def calibrate(presets=("hdd-7200", "hdd-7k320", "sata-ssd", "nvme", "ceph-rbd")) -> list[dict]:
    rows = []
    for p in presets:
        for name, pat, rw, qd in JOBS:
            mbs, iops = fio(job_device(p, rw), pat, rw == "write", qd, n_for(p, pat))
            val, unit = (mbs, "MB/s") if pat == "seq" else (iops, "IOPS")
            cited = CITED.get((p, name))
            rows.append({"preset": p, "job": name, "sim": val, "unit": unit,
                         "cited": cited[0] if cited else None,
                         "source": cited[2] if cited else "-"})
    for k in (1, 2, 4, 8):
        for ra in (True, False):
            v = k_streams(device("hdd-7200", **{"read-ahead": ra, "scheduler": "fifo"}), k)
            rows.append({"preset": "hdd-7200", "job": f"{k}-streams-seq-read ra={'on' if ra else 'off'}",
                         "sim": v, "unit": "MB/s", "cited": None,
                         "source": "closed form (tests/test_calibration.py)"})
    return rows


def main(out=sys.stdout) -> None:
    rows = calibrate()
    print(f"{'preset':10} {'job':28} {'sim':>10} {'cited':>10} {'diff':>7}  unit  source", file=out)
    for r in rows:
        c = r["cited"]
        diff = f"{(r['sim'] / c - 1) * 100:+.1f}%" if c else "-"
        cs = f"{c:10.1f}" if c else f"{'-':>10}"
        print(f"{r['preset']:10} {r['job']:28} {r['sim']:10.1f} {cs} {diff:>7}  {r['unit']:4}  "
              f"{r['source']}", file=out)


if __name__ == "__main__":
    main()
