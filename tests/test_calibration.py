"""Presets against their cited figures (benchmarks/calibrate_presets.py) and the
HDD model against its closed forms."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from calibrate_presets import CITED, JOBS, device, fio, job_device, k_streams, n_for  # noqa: E402

from fleecesim.devices import HDD, SeekCurve  # noqa: E402


@pytest.mark.parametrize("preset,job", sorted(CITED))
def test_preset_within_10_percent_of_its_source(preset, job):
    _name, pat, rw, qd = next(j for j in JOBS if j[0] == job)
    mbs, iops = fio(job_device(preset, rw), pat, rw == "write", qd, n_for(preset, pat))
    assert (mbs if pat == "seq" else iops) == pytest.approx(CITED[preset, job][0], rel=0.10)


def test_seek_curve_mean_is_the_datasheet_average():
    c = SeekCurve(12e-3, 1e-3, 20e-3)
    assert c.mean() == pytest.approx(12e-3, rel=1e-3)
    assert c(1.0) == pytest.approx(20e-3)
    xs = [i / 100 for i in range(1, 101)]
    assert all(c(a) < c(b) for a, b in zip(xs, xs[1:]))


def test_hdd_random_qd1_iops_closed_form():
    # constant seek: every random request pays avg seek + half a rotation + transfer
    h = HDD("h", 0.0, 180 * 2**20, seek=12e-3, rpm=7200, capacity=320 * 10**9)
    _mbs, iops = fio(h, "rand", False, 1, 500)
    assert iops == pytest.approx(1 / (12e-3 + 30 / 7200 + 4096 / (180 * 2**20)), rel=1e-3)


@pytest.mark.parametrize("k", [2, 4, 8])
@pytest.mark.parametrize("ra", [True, False])
def test_k_interleaved_streams_closed_form(k, ra):
    """k sequential 1 MiB readers at QD1 each, stream i in the i-th k-th of the
    drive, fifo: the drive always has the other k-1 requests queued, so it
    never idles and reads nothing ahead (same with read-ahead on or off); it
    serves them round robin, each after a seek of (R - L) from the previous
    stream's end, once per round a seek back of (k-1)R, plus half a rotation
    and the transfer each at its zone's rate (each stream reads 300 MiB of a
    6 TB drive: one zone rate per stream to 1e-4)."""
    dev = device("hdd-7200", **{"read-ahead": ra, "scheduler": "fifo"})
    L, C = 2**20, dev.capacity
    R = C // k // L * L
    rot = 30 / 7200
    xfer = sum(L / dev.media_rate(i * R) for i in range(k))
    cycle = ((k - 1) * dev.seek_read((R - L) / C) + dev.seek_read((k - 1) * R / C)
             + k * rot + xfer)
    assert k_streams(dev, k, n_per=300) == pytest.approx(k * L / cycle / 1e6, rel=0.01)


def _sync_reader(dev, gap, n=4000, bs=65536):
    """One cluster at a time with ``gap`` seconds between a read's completion and
    the next read (legacy backup writing each cluster to its target)."""
    t = 0.0
    for i in range(n):
        t = dev.submit(t, i * bs, bs) + gap
    return n * bs / t


def test_read_ahead_serves_a_synchronous_reader_near_streaming_speed():
    gap = 0.4e-3  # e.g. a 64 KiB write to a SATA SSD
    on = _sync_reader(device("hdd-7200"), gap)
    off = _sync_reader(device("hdd-7200", **{"read-ahead": False}), gap)
    bw = device("hdd-7200").media_rate(0)  # 250 MiB of a 6 TB drive: the outer zone
    # on: the drive reads the next cluster during the gap; the host sees the
    # interface transfer (SATA 6 Gb/s: 600 MB/s) plus the gap
    assert on == pytest.approx(65536 / (65536 / 600e6 + gap), rel=0.02)
    # off: each read waits for its sector to come round: rotation - gap
    assert off == pytest.approx(65536 / (30 / 3600 + 65536 / bw), rel=0.02)
    assert on > 10 * off


def test_write_cache_acknowledges_at_interface_speed_and_flushes_at_media_rate():
    """32 x 1 MiB writes queued at once into an 8 MiB cache: they cross the
    600 MB/s link one after another; the first 8 fit, the rest wait for the
    head to write out earlier ones at the zone rate (the head starts with a
    seek from nowhere: average write seek + half a rotation)."""
    wc = device("hdd-7200", **{"write-cache": "8MiB"})
    M = 2**20
    ends = [wc.submit(0.0, i * M, M, True) for i in range(32)]
    assert ends[0] == pytest.approx(M / 600e6)
    assert ends[7] == pytest.approx(8 * M / 600e6)
    head = 8.2e-3 + 30 / 7200
    out = [head + sum(M / wc.media_rate(j * M, True) for j in range(i + 1)) for i in range(32)]
    # write i >= 8 is acknowledged when write i - 8 is on the platter
    assert ends[-1] == pytest.approx(out[32 - 8 - 1])
    assert wc.flush(ends[-1]) == pytest.approx(out[-1])


def test_write_seek_differs_from_read_seek():
    h = device("hdd-7k320")  # its spec gives both full-stroke figures
    assert h.seek_write(1.0) == pytest.approx(22e-3)
    assert h.seek_read(1.0) == pytest.approx(20e-3)
