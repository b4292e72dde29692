"""The HDD's zoned media rate and its write-back cache against their closed
forms (devices/hdd.py), and the presets' keys for them."""
import math

import pytest

from fleecesim.cli import main
from fleecesim.config import DeviceSpec, resolve
from fleecesim.devices import HDD, build_device
from fleecesim.run import simulate

L = 65536


def hdd(preset="hdd-7200", **over):
    return build_device(preset, DeviceSpec.model_validate({"preset": preset, **over}))


def zone_time(dev, a, b, write=False):
    """Closed form: time to stream [a, b) at rate(x) = B*sqrt(1 - x*k)
    (the integral of 1/rate): 2C/(B_o^2 - B_i^2) * (rate(a) - rate(b))."""
    bo = dev.write_bandwidth if write else dev.bandwidth
    bi = bo * dev.inner_bandwidth / dev.bandwidth
    rate = lambda x: math.sqrt(bo * bo - x / dev.capacity * (bo * bo - bi * bi))  # noqa: E731
    return 2 * dev.capacity / (bo * bo - bi * bi) * (rate(a) - rate(b))


# ------------------------------------------------------------------ zones
def test_zone_rate_outer_inner_and_midpoint():
    d = hdd()
    bo, bi = d.bandwidth, d.inner_bandwidth
    assert d.media_rate(0) == bo
    assert d.media_rate(d.capacity) == pytest.approx(bi, rel=1e-12)
    # half the bytes lie outside the radius where r^2 = (r_o^2 + r_i^2)/2
    assert d.media_rate(d.capacity // 2) == pytest.approx(math.sqrt((bo**2 + bi**2) / 2),
                                                          rel=1e-9)
    assert d.media_rate(2 * d.capacity) == pytest.approx(bi, rel=1e-12)  # past the end: inner
    # writes scale by the same zone factor
    assert d.media_rate(d.capacity, write=True) == pytest.approx(
        d.write_bandwidth * bi / bo, rel=1e-12)


def test_flat_drive_has_one_rate():
    d = HDD("h", 0.0, 100e6, seek=8e-3, rpm=7200, capacity=10**9)
    assert not d.zoned and d.media_rate(0) == d.media_rate(10**9 - 1) == 100e6


@pytest.mark.parametrize("a,b", [(0, 1 / 2), (1 / 2, 1), (0, 1), (1 / 4, 3 / 4)])
def test_sequential_read_of_a_range_takes_the_zone_integral(a, b):
    C = 2 * 2**30
    d = hdd(capacity=C, **{"read-ahead": False, "scheduler": "fifo"})
    bs = 2**20
    lo, hi = int(a * C) // bs * bs, int(b * C) // bs * bs
    t = d.submit(0.0, lo, bs)  # the first request pays the seek from nowhere
    start = t - bs / d.media_rate(lo)
    for off in range(lo + bs, hi, bs):
        t = d.submit(t, off, bs)  # QD1, back to back: no seek, no rotation
    assert t - start == pytest.approx(zone_time(d, lo, hi), rel=1e-3)


def test_backup_of_the_first_half_of_a_disk_is_faster_than_the_second():
    """A disk filling the whole (zoned) drive, backed up to NVMe with no guest:
    the backup is bound by the drive's media rate, so backing up the first
    half (the outer zones) takes the zone integral over [0, C/2) plus the
    first seek from nowhere, and the second half (the whole disk minus the
    first half) the integral over [C/2, C). Closed-form ratio
    (B_m - B_i)/(B_o - B_m), B_m = sqrt((B_o^2 + B_i^2)/2)."""
    C = 2 * 2**30
    dur = {}
    for size in (C // 2, C):
        cfg = resolve({"disk": {"size": size, "device": "src", "allocated": 1.0},
                       "devices": {"src": {"preset": "hdd-7200", "capacity": C},
                                   "dst": {"preset": "nvme"}},
                       "workload": {"iops": 0},
                       "backup": {"scheme": "legacy-backup", "target": {"device": "dst"}},
                       "run": {"seed": 1, "warmup": "0s", "tail": "0s", "max-time": "300s"}})
        s = simulate(cfg).summary
        assert s["oracle_ok"]
        dur[size] = s["backup_duration_s"]
    d = hdd(capacity=C)
    first, second = dur[C // 2], dur[C] - dur[C // 2]
    assert first == pytest.approx(zone_time(d, 0, C // 2) + d.seek_read.average
                                  + d.half_rotation, rel=2e-3)
    assert second == pytest.approx(zone_time(d, C // 2, C), rel=2e-3)
    bo, bi = d.bandwidth, d.inner_bandwidth
    bm = math.sqrt((bo**2 + bi**2) / 2)
    assert second / first == pytest.approx((bm - bi) / (bo - bm), rel=5e-3)
    assert first < second


# ------------------------------------------------------------ write cache
def _qd1_writes(dev, n, gap=0.0, bs=L):
    """One sequential write at a time, the next ``gap`` after the last one
    completed (a legacy backup job writing cluster after cluster)."""
    t, ends = 0.0, []
    for i in range(n):
        e = dev.submit(t, i * bs, bs, True)
        ends.append(e)
        t = e + gap
    return ends


def test_qd1_write_stream_acked_at_interface_speed_until_the_buffer_fills():
    """Cache W bytes, 64 KiB writes at QD1: write i (0-based) is acknowledged
    at (i+1) * L/iface while the buffer has room; once full, write i waits for
    write i - W/L to be on the platter, so the acknowledgements come at the
    destage rate: one per L/rate(offset) (zone rate, the head streams)."""
    W = 8 * 2**20
    d = hdd(**{"write-cache": W})
    iface = 1 / d.iface_inv
    n_fit = W // L
    n = 4 * n_fit
    ends = _qd1_writes(d, n)
    for i in range(n_fit):
        assert ends[i] == pytest.approx((i + 1) * L / iface, rel=1e-9)
    # full: write i completes when write j = i - W/L has been written out,
    # the head streaming from the first seek from nowhere
    head0 = d.seek_write.average + d.half_rotation
    for i in range(2 * n_fit, n):
        j = i - n_fit
        destaged = head0 + sum(L / d.media_rate(k * L, True) for k in range(j + 1))
        assert ends[i] == pytest.approx(destaged, rel=1e-9)
        assert ends[i] - ends[i - 1] == pytest.approx(L / d.media_rate(j * L, True), rel=1e-6)


def test_write_cache_off_each_write_waits_for_the_platter():
    """write-cache: 0 (WCE off): a QD1 stream with the host taking ``gap``
    between writes pays the rest of a rotation before each (its sector has
    just passed): per write gap + (T - gap) + L/rate."""
    gap = 0.2e-3
    d = hdd(**{"write-cache": 0})
    ends = _qd1_writes(d, 200, gap)
    assert ends[0] == pytest.approx(d.seek_write.average + d.half_rotation
                                    + L / d.media_rate(0, True), rel=1e-9)
    T = d.rotation
    for i in range(1, 200):
        assert ends[i] - ends[i - 1] == pytest.approx(T + L / d.media_rate(i * L, True), rel=1e-6)


def test_cached_stream_with_host_gaps_destages_without_lost_rotations():
    """With the cache on the same stream is acknowledged at the interface and
    destaged in one run (write coalescing): the head's last write-out ends at
    first seek + sum(L/rate) as long as the host keeps ahead of the head,
    or at the host's pace when it does not — never a rotation per write."""
    d = hdd()
    gap = 0.2e-3
    n = 400
    ends = _qd1_writes(d, n, gap)
    iface = 1 / d.iface_inv
    for i in range(1, n):
        assert ends[i] - ends[i - 1] == pytest.approx(gap + L / iface, rel=1e-9)
    head = d.seek_write.average + d.half_rotation + sum(
        L / d.media_rate(k * L, True) for k in range(n))
    host = ends[-1] - L / iface + L / d.media_rate((n - 1) * L, True)
    assert d.flush(ends[-1]) == pytest.approx(max(head, host), rel=1e-9)


def test_flush_drains_the_cache():
    d = hdd()
    n = 256
    ends = [d.submit(0.0, i * L, L, True) for i in range(n)]  # a burst, all fit
    iface = 1 / d.iface_inv
    assert ends[-1] == pytest.approx(n * L / iface, rel=1e-9)  # all acked from the buffer
    drained = d.seek_write.average + d.half_rotation + sum(
        L / d.media_rate(i * L, True) for i in range(n))
    assert d.flush(ends[-1]) == pytest.approx(drained, rel=1e-9)
    assert d.flush(drained + 1.0) == drained + 1.0  # nothing dirty: at once
    # write-cache 0: nothing is ever dirty
    off = hdd(**{"write-cache": 0})
    e = off.submit(0.0, 0, L, True)
    assert off.flush(e) == e


def test_a_read_queues_behind_the_destage():
    d = hdd()
    n = 64
    for i in range(n):
        d.submit(0.0, i * L, L, True)
    drained = d.flush(0.0)
    r = d.submit(0.0, 10 * 2**40, 4096)  # far away: a seek after the write-outs
    assert r > drained


# ------------------------------------------------------------------ config
@pytest.mark.parametrize("dev,msg", [
    ("{preset: hdd-7200, inner-bandwidth: 300MB/s}",
     "devices.local: inner-bandwidth: expected a rate > 0 and <= the outer "
     "read-bandwidth (255MB/s), got 300MB/s"),
    ("{preset: hdd-7200, inner-bandwidth: fast}",
     "devices.local.inner-bandwidth: expected a rate like '100MiB/s'"),
    ("{preset: nvme, inner-bandwidth: 100MB/s}",
     "devices.local: inner-bandwidth: only for a device of kind hdd"),
    ("{kind: hdd, bandwidth: 200MB/s, inner-bandwidth: 100MB/s, seek: 8ms, rpm: 7200}",
     "devices.local: capacity: zoned recording (inner-bandwidth) needs the drive's capacity"),
    ("{preset: hdd-7200, write-cache: -1}", "devices.local.write-cache:"),
])
def test_bad_hdd_keys_are_one_line(tmp_path, capsys, dev, msg):
    p = tmp_path / "c.yaml"
    p.write_text(f"disk: {{size: 64MiB}}\nrun: {{warmup: 0.1s, tail: 0s}}\n"
                 f"devices: {{local: {dev}}}\n")
    code = main(["run", str(p), "--quiet", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert msg in err[0], err


def test_presets_are_zoned_with_the_write_cache_on():
    for name in ("hdd-7200", "hdd-hc310", "hdd-7k320"):
        d = hdd(name)
        assert d.zoned and d.write_cache > 0, name
    assert hdd("hdd-7200").describe().replace("hdd-7200", "x") == \
        hdd("hdd-hc310").describe().replace("hdd-hc310", "x")
