"""Copy offload (backup.x-perf.use-copy-range) as the kernel does it
(devices/host.py: copy_file_range): a serial splice loop of 64 KiB pieces
behind 128 KiB read-ahead windows, a reflink as one metadata request, and
QEMU's fallback to read + write where copy_range fails."""
import pytest
import simpy

from fleecesim.config import resolve
from fleecesim.devices.base import Device
from fleecesim.devices.host import (READ_AHEAD, SPLICE_PIECE, PageCache, copy_file_range,
                                    copy_method)
from fleecesim.errors import ConfigError
from fleecesim.run import simulate

KiB, MiB = 2**10, 2**20
P, W = SPLICE_PIECE, READ_AHEAD


def test_kernel_sizes():
    # PIPE_DEF_BUFFERS (16) pages of 4 KiB; VM_READAHEAD_PAGES = 128 KiB
    assert (P, W) == (64 * KiB, 128 * KiB)


def _fifo(name, lat, bw, wlat=None, wbw=None):
    return Device(name, lat, bw, 1, "fifo", write_latency=wlat, write_bandwidth=wbw)


def _loop(src, dst, offset, length, size):
    env = simpy.Environment()
    env.process(copy_file_range(env, src, dst, offset, length, size, "splice"))
    env.run()
    return env.now


@pytest.mark.parametrize("wbw", [400 * MiB, 50 * MiB])  # write-bound and read-bound
def test_one_call_pipelines_one_window_ahead(wbw):
    # Source and target on their own one-slot FIFO devices. The reader waits
    # for window k only; window k+1 is submitted when it enters window k (the
    # first window's mark is one piece in). With r = one window's read and
    # w = one piece's write, the writes of window k start at
    #   s_0 = r, s_1 = r + w + max(w, r), s_k = s_1 + (k-1) max(2w, r),
    # and the call ends two writes after s_{m-1}.
    src = _fifo("s", 100e-6, 100 * MiB)
    dst = _fifo("t", 0.0, wbw, 20e-6, wbw)
    length = 4 * MiB
    end = _loop(src, dst, 0, length, 64 * MiB)
    r = 100e-6 + W / (100 * MiB)
    w = 20e-6 + P / wbw
    m = length // W
    want = r + w + max(w, r) + (m - 2) * max(2 * w, r) + 2 * w
    assert end == pytest.approx(want, rel=1e-9)
    # not the serial m r + n w of a loop without read-ahead pipelining
    assert abs(end - (m * r + 2 * m * w)) > 0.05 * end
    # m windows and one more past the end of the call (read-ahead does not
    # know where the copy stops); one write per piece
    assert (src.ops, src.bytes) == (m + 1, (m + 1) * W)
    assert (dst.ops, dst.bytes) == (length // P, length)


def test_a_sequential_next_call_continues_the_read_ahead():
    src, dst = _fifo("s", 50e-6, 200 * MiB), _fifo("t", 50e-6, 200 * MiB)
    size = 64 * MiB
    env = simpy.Environment()

    def two():
        yield from copy_file_range(env, src, dst, 0, 1 * MiB, size, "splice")
        yield from copy_file_range(env, src, dst, 1 * MiB, 2 * MiB, size, "splice")
    env.process(two())
    env.run()
    # the second call's first window is the first call's read past its end:
    # 8 + 1 windows, then 16 - 1 + 1 more; never a window read twice
    assert src.ops == 8 + 1 + 16
    assert src.bytes == 3 * MiB + W
    assert PageCache.of(src).ahead == {3 * MiB: pytest.approx(PageCache.of(src).ahead[3 * MiB])}


def test_a_random_start_reads_two_pieces_as_asked_then_windows():
    # page_cache_sync_ra with no history before the offset: "standalone, small
    # random read" twice (contig_count <= req_count), then a window
    src, dst = _fifo("s", 50e-6, 200 * MiB), _fifo("t", 50e-6, 200 * MiB)
    _loop(src, dst, 8 * MiB, 1 * MiB, 64 * MiB)
    assert src.ops == 2 + (1 * MiB - 2 * P) // W + 1
    assert src.bytes == 2 * P + (1 * MiB - 2 * P) + W


NO_HOST = {"host.request-cost": 0, "host.memcpy-bandwidth": 0}


def _run(workers=1, target="a", size="32MiB", cr=True, devices=None, **over):
    devs = devices or {"a": {"kind": "ssd", "read-latency": "100us", "write-latency": "50us",
                             "read-bandwidth": "200MiB/s", "write-bandwidth": "100MiB/s",
                             "queue-depth": 1, "sharing": "fifo"}}
    raw = {"disk": {"size": size, "device": "a", "allocated": 1.0},
           "devices": devs, "workload": {"iops": 0},
           "backup": {"scheme": "backup", "target": {"device": target},
                      "max-workers": workers, "x-perf": {"use-copy-range": cr}},
           "run": {"warmup": 0, "tail": 0}}
    return simulate(resolve(raw, over)).summary


def test_one_worker_on_one_fifo_device_is_the_sum_of_its_requests():
    # Both images on one one-slot FIFO device: the read-ahead is always
    # submitted before the piece's write, so the device never idles and the
    # backup lasts size/W window reads plus size/P piece writes. One
    # sequential stream across chunks (each call continues the last's
    # read-ahead), so no window is read twice.
    s = _run(**NO_HOST)
    assert s["oracle_ok"] and s["copy_range_method"] == "splice"
    assert s["copy_range_fallback"] is False
    size = 32 * MiB
    r = 100e-6 + W / (200 * MiB)
    w = 50e-6 + P / (100 * MiB)
    assert s["backup_duration_s"] == pytest.approx(size // W * r + size // P * w, rel=1e-9)
    assert s["source_read_bytes"] == s["target_write_bytes"] == size


def test_reflink_is_one_metadata_request_per_chunk():
    # 1 MiB first (COPY_RANGE_SMALL), then 16 MiB chunks (COPY_RANGE_FULL):
    # 64 MiB = 1 + 16 + 16 + 16 + 15 MiB, five clones, each the host's 8 us
    # request (no bytes through memory) then one zero-length write of 50 us on
    # the one-slot device; no data moves.
    dev = {"a": {"kind": "ssd", "read-latency": "100us", "write-latency": "50us",
                 "bandwidth": "200MiB/s", "queue-depth": 1, "sharing": "fifo",
                 "reflink": True}}
    s = _run(size="64MiB", devices=dev, **{"host.request-cost": "8us"})
    assert s["oracle_ok"] and s["copy_range_method"] == "reflink"
    assert s["backup_duration_s"] == pytest.approx(5 * (8e-6 + 50e-6), rel=1e-9)
    assert s["host_memcpy_bytes"] == 0
    splice = _run(size="64MiB", devices={"a": {**dev["a"], "reflink": False}})
    assert s["backup_duration_s"] < 1e-3 * splice["backup_duration_s"]


def test_two_devices_fall_back_to_read_write():
    # two filesystems: copy_file_range returns EXDEV (Linux >= 5.19), QEMU
    # copies that chunk and every later one by read + write: the same run as
    # without the option
    devs = {"a": {"preset": "sata-ssd"}, "b": {"preset": "sata-ssd"}}
    s = _run(workers=64, target="b", devices=devs)
    plain = _run(workers=64, target="b", devices=devs, cr=False)
    assert s["oracle_ok"] and s["copy_range_fallback"] is True
    assert s["copy_range_method"] == "read-write"
    assert any("copy offload failed (EXDEV" in e for e in s["events"])
    assert s["backup_duration_s"] == plain["backup_duration_s"]
    assert "copy_range_fallback" not in plain  # the keys come with the option


def test_nbd_target_falls_back_and_the_backup_is_whole():
    devs = {"a": {"preset": "nvme"}, "t": {"preset": "nbd-1gbe"}}
    raw_guest = {"workload.iops": 2000, "workload.mix": {"read": 0.5, "write": 0.5},
                 "run.warmup": "0.2s"}
    s = _run(workers=64, target="t", devices=devs, size="128MiB", **raw_guest)
    plain = _run(workers=64, target="t", devices=devs, size="128MiB", cr=False, **raw_guest)
    assert s["oracle_ok"] and s["clusters_copied_twice"] == 0
    assert s["copy_range_fallback"] is True
    assert any("copy offload failed (ENOTSUP" in e for e in s["events"])
    assert s["backup_duration_s"] == plain["backup_duration_s"]
    assert s["cbw_count"] > 0


def test_copy_method():
    a, b = Device("a", 0, 1), Device("b", 0, 1)
    assert copy_method(a, a) == "splice" and copy_method(a, b) == "EXDEV"
    a.reflink = True
    assert copy_method(a, a) == "reflink"


@pytest.mark.parametrize("over,needle", [
    ({"devices.r": {"kind": "ram", "latency": "1us", "bandwidth": "8GiB/s",
                    "reflink": True}}, "reflink: only a filesystem on a local disk"),
    ({"devices.n": {"preset": "nbd-1gbe", "reflink": True}}, "reflink: only"),
    ({"backup.target.device": "local",
      "faults.target": [{"kind": "slow", "at": "1s", "duration": "1s", "factor": 2}]},
     "faults.target: not with backup.x-perf"),
])
def test_still_invalid_configs_are_one_line_errors(over, needle):
    raw = {"backup": {"scheme": "backup", "x-perf": {"use-copy-range": True}}}
    with pytest.raises(ConfigError) as e:
        resolve(raw, over)
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_faults_apply_where_the_copy_falls_back():
    # the default target is NBD: block-copy reads and writes, the fault acts
    raw = {"backup": {"scheme": "backup", "x-perf": {"use-copy-range": True}}}
    resolve(raw, {"faults.target": [{"kind": "reset", "at": "1s"}]})


@pytest.mark.parametrize("target,reflink", [("local", False), ("local", True), ("target", False)])
def test_engines_agree_on_offloaded_and_fallback_copies(target, reflink):
    # the kernel loop is a generator: the analytic engine drives it as the
    # reference engine's process would (tests/test_engine_equivalence.py)
    from tests.conftest import small
    from tests.test_engine_equivalence import assert_same
    cfg = small(**{"backup.scheme": "backup", "backup.target.device": target,
                   "backup.x-perf.use-copy-range": True, "backup.max-workers": 8,
                   "devices.local": {"preset": "nvme", "reflink": reflink}})
    a = simulate(cfg).summary
    b = simulate(cfg, analytic=False).summary
    assert a["oracle_ok"] and b["oracle_ok"]
    assert_same(a, b)
    assert a["copy_range_fallback"] is (target != "local")
