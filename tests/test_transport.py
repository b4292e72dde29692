"""The NBD transport (devices/remote.py): closed forms and a published anchor."""
import heapq

import pytest

from fleecesim.config import resolve
from fleecesim.devices import Device, RemoteDevice
from fleecesim.errors import ConfigError

MB = 1e6


def _remote(rtt, *, link_bw, connections=1, window=None, qd=16, overhead=0):
    link = Device("l", rtt, link_bw, qd * connections)
    backend = Device("b", 0.0, 1e13, 1024)  # never the bottleneck
    return RemoteDevice("r", link, backend, connections=connections, window=window,
                        overhead=overhead)


def _stream(dev, size, depth, n):
    """A reader keeping ``depth`` requests of ``size`` outstanding (as Xen
    Orchestra's MultiNbdClient.readBlocks keeps ``readAhead`` reads in flight);
    returns bytes/s."""
    ends = [0.0] * depth
    last = 0.0
    for i in range(n):
        t = heapq.heappop(ends)
        e = dev.submit(t, i * size, size)
        heapq.heappush(ends, e)
        last = max(last, e)
    return n * size / last


# Xen Orchestra's published NBD measurements (MB/s): one connection at 0, 10,
# 20, 50 ms RTT and eight connections at 10, 20, 50 ms. Two numbers are taken
# from them, the rest is checked: the link rate B is the 0 ms figure (260
# MB/s: what client, server and network move with no delay) and the window W
# is the in-flight bytes of the 10 ms figure (42 MB/s x 10 ms = 420 kB).
# Reads of 2 MiB, 16 outstanding (@vates/nbd-client multi.mjs: readAhead = 16).
XO_B = 260 * MB
XO_W = 420e3
XO_POINTS = [(1, 0.0, 260), (1, 0.010, 42), (1, 0.020, 23), (1, 0.050, 11),
             (8, 0.010, 230), (8, 0.020, 145), (8, 0.050, 80)]


@pytest.mark.parametrize("connections,rtt,measured", XO_POINTS)
def test_xen_orchestra_anchor_within_25_percent(connections, rtt, measured):
    dev = _remote(rtt, link_bw=XO_B, connections=connections, window=XO_W, overhead=44)
    sim = _stream(dev, 2 * 2**20, 16, 300) / MB
    assert sim == pytest.approx(measured, rel=0.25)


@pytest.mark.parametrize("rtt", [0.005, 0.02, 0.08])
def test_bandwidth_delay_closed_form(rtt):
    # One connection, window W: a long stream moves min(B, W / RTT).
    B, W = 1e9, 2**20
    dev = _remote(rtt, link_bw=B, window=W)
    assert _stream(dev, 256 * 1024, 16, 2000) == pytest.approx(min(B, W / rtt), rel=0.02)


def test_window_does_not_slow_a_lone_request():
    # A request no larger than the window needs one round trip, as before.
    dev = _remote(0.01, link_bw=100 * MB, window=2**20)
    assert dev.submit(0.0, 0, 65536) == pytest.approx(0.01 + 65536 / (100 * MB))
    assert dev.window_limited == 0


def test_request_slots_bound_a_connection():
    # 16 slots of 64 KiB and no window: at most 16 x 64 KiB per round trip
    # (QEMU's MAX_NBD_REQUESTS; Little's law with service RTT + size/B).
    B, rtt, s = 1e10, 0.01, 65536
    dev = _remote(rtt, link_bw=B)
    assert _stream(dev, s, 64, 4000) == pytest.approx(16 * s / (rtt + s / B), rel=0.01)


@pytest.mark.parametrize("n", [1, 2, 4, 8])
def test_connections_scale_until_the_link_binds(n):
    B, W, rtt = 400 * MB, 512 * 1024, 0.02
    dev = _remote(rtt, link_bw=B, connections=n, window=W)
    assert _stream(dev, 2**20, 64, 1500) == pytest.approx(min(B, n * W / rtt), rel=0.03)


def test_header_overhead_costs_link_time():
    # 44 bytes of NBD headers per request on a saturated link.
    B, s = 100 * MB, 4096
    dev = _remote(0.0, link_bw=B, overhead=44)
    assert _stream(dev, s, 16, 20000) == pytest.approx(B * s / (s + 44), rel=0.01)


def test_remote_defaults_from_config():
    d = resolve({}).devices["target"]
    assert (d.connections, d.window, d.request_overhead) == (1, 3 * 2**20, 44)


@pytest.mark.parametrize("key,value,needle", [
    ("devices.target.connections", 0, "devices.target.connections:"),
    ("devices.target.window", 0, "window:"),
    ("devices.local.connections", 4, "connections: only for a device of kind remote"),
    ("devices.local.window", "1MiB", "window: only for a device of kind remote"),
])
def test_bad_transport_keys_are_one_line_errors(key, value, needle):
    with pytest.raises(ConfigError) as e:
        resolve({}, {key: value})
    msg = str(e.value)
    assert needle in msg and "\n" not in msg


def test_backup_from_a_remote_disk_passes_the_oracle():
    # nbd -> ssd: the VM's disk is an NBD export; the active disk only submits
    # to its device, so a remote device serves it like any other.
    from fleecesim.run import simulate
    raw = {"disk": {"size": "64MiB", "device": "nbd"},
           "devices": {"nbd": {"preset": "nbd-1gbe"}, "ssd": {"preset": "sata-ssd"}},
           "workload": {"iops": 500, "mix": {"read": 0.5, "write": 0.5}},
           "backup": {"scheme": "backup", "target": {"device": "ssd"}},
           "run": {"warmup": 0.2, "tail": 0.1}}
    s = simulate(resolve(raw)).summary
    assert s["oracle_ok"], s.get("error")
    assert s["cbw_count"] + s["writes_waited"] > 0  # guest writes met the backup
