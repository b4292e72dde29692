"""The host's per-request software cost and copy offload (devices/host.py)."""
import pytest

from fleecesim.config import resolve
from fleecesim.devices import Device
from fleecesim.devices.host import Host, HostDevice
from fleecesim.errors import ConfigError
from fleecesim.run import simulate

MiB = 2**20


def test_n_requests_cost_n_times_request_cost():
    # One AioContext thread: N requests submitted at once finish N x cost
    # later, whatever the (infinitely fast) device could do.
    host = Host(request_cost=20e-6, memcpy_bandwidth=0)
    dev = HostDevice(Device("d", 0.0, 1e15, 1024), host)
    ends = [dev.submit(0.0, i * 4096, 4096) for i in range(1000)]
    assert max(ends) == pytest.approx(1000 * 20e-6)
    assert host.requests == 1000


def test_memcpy_bandwidth_binds_a_fast_device():
    # Each request's bytes cross memory once: 1 GiB through an 8 GiB/s copy.
    host = Host(request_cost=0.0, memcpy_bandwidth=8 * 2**30)
    dev = HostDevice(Device("d", 0.0, 1e15, 1024), host)
    end = max(dev.submit(0.0, i * MiB, MiB) for i in range(1024))
    assert end == pytest.approx(2**30 / (8 * 2**30))


def test_host_queues_are_the_devices_they_reduce():
    # Host.charge keeps only the clocks of its two queues: bit for bit what a
    # one-slot CPU Device and a 64-slot FIFO memory Device would give (the
    # memory pipe's slots never bind: each frees no later than the pipe).
    import random
    rnd = random.Random(7)
    host = Host(request_cost=8e-6, memcpy_bandwidth=8 * 2**30)
    cpu = Device("cpu", 8e-6, 1e300, 1)
    mem = Device("mem", 0.0, 8 * 2**30, 64)
    now = 0.0
    for _ in range(20000):
        now += rnd.expovariate(1 / 5e-6)
        n = rnd.choice((0, 4096, 65536, MiB, 16 * MiB))
        t = cpu.submit(now, 0, 0)
        if n:
            t = mem.submit(t, 0, n)
        assert host.charge(now, n) == t


@pytest.mark.parametrize("sharing", ["ps", "fifo"])
@pytest.mark.parametrize("cost,mem,copy", [(8e-6, 8 * 2**30, True), (8e-6, 8 * 2**30, False),
                                           (0.0, 8 * 2**30, True), (8e-6, 0.0, True)])
def test_fused_submit_is_host_then_device_bit_for_bit(sharing, cost, mem, copy):
    # HostDevice._submit_queue is Host.charge and Device.submit inlined into one
    # call (a near-copy kept for speed on the hottest path): every completion
    # time, LAST.service and counter must equal the two-call path's, so a
    # change to either original that is not made in the copy fails here.
    import random
    from fleecesim.devices import base
    rnd = random.Random(11)

    def pair():
        host = Host(request_cost=cost, memcpy_bandwidth=mem)
        dev = Device("d", 80e-6, 2.5 * 2**30, 32, sharing=sharing, write_latency=20e-6,
                     write_bandwidth=2 * 2**30, write_iops=400_000)
        return HostDevice(dev, host, copy=copy)

    fused, plain = pair(), pair()
    assert fused.submit == fused._submit_queue  # a plain queue takes the fused path
    plain.submit = HostDevice.submit.__get__(plain)  # the two-call path
    now = 0.0
    for _ in range(20000):
        now += rnd.expovariate(1 / 4e-6)
        n = rnd.choice((0, 4096, 65536, MiB))
        w = rnd.random() < 0.4
        a = fused.submit(now, 0, n, w)
        sa = base.LAST.service
        b = plain.submit(now, 0, n, w)
        assert (a, sa) == (b, base.LAST.service)
    for attr in ("ops", "bytes", "busy", "_pipe_free", "_busy"):
        assert getattr(fused.device, attr) == getattr(plain.device, attr), attr
    assert (fused.host.requests, fused.host.copied) == (plain.host.requests, plain.host.copied)


def test_ram_device_pays_no_copy():
    host = Host(request_cost=1e-6, memcpy_bandwidth=1 * 2**30)
    from fleecesim.devices.host import with_host
    ram = with_host(Device("r", 0.0, 8 * 2**30, 64), host, "ram")
    assert ram.submit(0.0, 0, MiB) == pytest.approx(1e-6 + MiB / (8 * 2**30))


def _idle_backup(chunk, target="b", **over):
    raw = {"disk": {"size": "256MiB", "device": "a", "allocated": 1.0},
           "devices": {"a": {"kind": "ssd", "latency": "20us", "bandwidth": "20GiB/s",
                             "queue-depth": 64},
                       "b": {"kind": "ssd", "latency": "20us", "bandwidth": "20GiB/s",
                             "queue-depth": 64}},
           "workload": {"iops": 0},
           "backup": {"scheme": "backup", "target": {"device": target}, "max-chunk": chunk},
           "run": {"warmup": 0, "tail": 0}}
    return simulate(resolve(raw, over)).summary


def test_chunk_size_matters_where_the_host_binds():
    # Devices far faster than the host: duration ~ requests x cost (64 KiB
    # chunks: 2 x 4096 requests) or bytes x 2 / memcpy-bandwidth (1 MiB).
    over = {"host.request-cost": "20us", "host.memcpy-bandwidth": "10GiB/s"}
    small = _idle_backup("64KiB", **over)
    big = _idle_backup("1MiB", **over)
    assert small["oracle_ok"] and big["oracle_ok"]
    assert small["backup_duration_s"] == pytest.approx(2 * 4096 * 20e-6, rel=0.05)
    assert big["backup_duration_s"] == pytest.approx(2 * 256 * MiB / (10 * 2**30), rel=0.05)


def test_copy_offload_copies_once_through_memory():
    # Both images on device a (one filesystem): the kernel's splice loop, one
    # in-kernel copy per byte instead of two through QEMU's buffer. (The loop's
    # own timing: tests/test_copy_offload.py.)
    over = {"host.request-cost": "20us", "host.memcpy-bandwidth": "10GiB/s"}
    bounce = _idle_backup(0, target="a", **over)
    offload = _idle_backup(0, target="a", **over, **{"backup.x-perf.use-copy-range": True})
    assert bounce["oracle_ok"] and offload["oracle_ok"]
    assert offload["copy_range_method"] == "splice" and offload["copy_range_fallback"] is False
    assert offload["target_write_bytes"] == bounce["target_write_bytes"] == 256 * MiB
    assert offload["host_memcpy_bytes"] * 2 == bounce["host_memcpy_bytes"]
    # where memory binds (2 x 256 MiB at 10 GiB/s against 1 x 256 MiB and the
    # devices' small requests), the one copy wins
    assert offload["backup_duration_s"] < bounce["backup_duration_s"]


@pytest.mark.parametrize("chunk", [0, "64KiB"])
def test_copy_offload_oracle_under_guest_writes(chunk):
    # Guest writes meet offloaded copies in flight (they wait) and, with
    # small chunks, clusters not yet claimed (CBW copies them by copy_range).
    raw = {"disk": {"size": "512MiB", "device": "a"},
           "devices": {"a": {"preset": "nvme"}},
           "workload": {"iops": 3000, "mix": {"read": 0.3, "write": 0.7}, "size": "64KiB"},
           "backup": {"scheme": "backup", "target": {"device": "a"},
                      "x-perf": {"use-copy-range": True}, "max-chunk": chunk,
                      "max-workers": 4},
           "run": {"warmup": 0.2, "tail": 0.1}}
    s = simulate(resolve(raw)).summary
    assert s["oracle_ok"], s.get("error")
    assert s["copy_range_method"] == "splice"
    assert s["clusters_copied_twice"] == 0
    assert (s["cbw_count"] if chunk else s["writes_waited"]) > 0


@pytest.mark.parametrize("over,needle", [
    ({"backup.x-perf.use-copy-range": True, "backup.cbw-priority": True,
      "backup.target.device": "local"}, "backup.x-perf.use-copy-range: not with backup.cbw"),
    ({"backup.x-perf.use-copy-range": True, "backup.scheme": "legacy-backup",
      "backup.target.device": "local"}, "not used by the 'legacy-backup' scheme"),
    ({"host.request-cost": "-1us"}, "host.request-cost:"),
    ({"backup.x-perf.bogus": 1}, "backup.x-perf.bogus: unknown key"),
])
def test_bad_host_and_offload_keys_are_one_line_errors(over, needle):
    raw = {"backup": {"scheme": "backup"}}
    with pytest.raises(ConfigError) as e:
        resolve(raw, over)
    assert needle in str(e.value) and "\n" not in str(e.value)
