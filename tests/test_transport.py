"""The NBD transport (devices/remote.py): closed forms and a published anchor."""
import heapq

import pytest

from fleecesim.config import resolve
from fleecesim.devices import Device, RemoteDevice
from fleecesim.errors import ConfigError

MB = 1e6


def _remote(rtt, *, link_bw, connections=1, window=None, qd=16, overhead=0,
            reply_overhead=0, backend=None):
    link = Device("l", rtt, link_bw, qd * connections)
    backend = backend or Device("b", 0.0, 1e13, 1024)  # never the bottleneck
    return RemoteDevice("r", link, backend, connections=connections, window=window,
                        overhead=overhead, reply_overhead=reply_overhead)


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
    dev = _remote(rtt, link_bw=XO_B, connections=connections, window=XO_W, overhead=28,
                  reply_overhead=16)
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


def _write_stream(dev, size, depth, n):
    ends = [0.0] * depth
    last = 0.0
    for i in range(n):
        t = heapq.heappop(ends)
        e = dev.submit(t, i * size, size, True)
        heapq.heappush(ends, e)
        last = max(last, e)
    return n * size / last


def test_headers_cost_link_time_in_their_direction():
    # A saturated link: a read's data goes down with the 16-byte reply header
    # (its 28-byte request header goes up, the idle direction); a write's
    # data goes up with the request header.
    B, s = 100 * MB, 4096
    dev = _remote(0.0, link_bw=B, overhead=28, reply_overhead=16)
    assert _stream(dev, s, 16, 20000) == pytest.approx(B * s / (s + 16), rel=0.002)
    dev = _remote(0.0, link_bw=B, overhead=28, reply_overhead=16)
    assert _write_stream(dev, s, 16, 20000) == pytest.approx(B * s / (s + 28), rel=0.002)
    # every header is on the wire it crosses
    assert dev.link.up.bytes == 20000 * (s + 28) and dev.link.down.bytes == 20000 * 16


def test_remote_defaults_from_config():
    d = resolve({}).devices["target"]
    assert (d.connections, d.window, d.request_overhead, d.reply_overhead) == \
        (1, 3 * 2**20, 28, 16)


@pytest.mark.parametrize("key,value,needle", [
    ("devices.target.connections", 0, "devices.target.connections:"),
    ("devices.target.window", 0, "window:"),
    ("devices.local.connections", 4, "connections: only for a device of kind remote"),
    ("devices.local.window", "1MiB", "window: only for a device of kind remote"),
    ("devices.local.reply-overhead", 16, "reply-overhead: only for a device of kind remote"),
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


# ------------------------------------------------ one pipe per direction
RTT, B = 0.002, 100 * MB
L = 2**20
LAT_R, LAT_W, BW_R, BW_W = 80e-6, 20e-6, 500 * MB, 300 * MB


def _fifo_backend():
    return Device("b", LAT_R, BW_R, 1, write_latency=LAT_W, write_bandwidth=BW_W)


def _instant():
    return Device("b", 0.0, 1e18, 1024, sharing="ps")  # serves at once


def test_a_lone_write_closed_form():
    # copy, header + data up, the backend's write, the reply header down
    from fleecesim.devices.base import LAST
    dev = _remote(RTT, link_bw=B, overhead=28, reply_overhead=16, backend=_fifo_backend())
    dev.copy_s_per_byte = 1e-10
    want = 1e-10 * L + RTT + (L + 28 + 16) / B + LAT_W + L / BW_W
    assert dev.submit(1.0, 0, L, True) - 1.0 == pytest.approx(want, rel=1e-12)
    assert LAST.service == pytest.approx(want, rel=1e-12)


def test_a_lone_read_closed_form():
    # header up, the backend's read, the reply header + data down, copy out
    from fleecesim.devices.base import LAST
    dev = _remote(RTT, link_bw=B, overhead=28, reply_overhead=16, backend=_fifo_backend())
    dev.copy_s_per_byte = 1e-10
    want = RTT + (28 + L + 16) / B + LAT_R + L / BW_R + 1e-10 * L
    assert dev.submit(1.0, 0, L, False) - 1.0 == pytest.approx(want, rel=1e-12)
    assert LAST.service == pytest.approx(want, rel=1e-12)


def test_a_read_and_a_long_write_cross_at_once():
    # A 1 MiB read, then a 100 MiB write on the same connection: the read's
    # data comes down while the write's goes up. One shared pipe would make
    # the write wait for the read's megabyte (10 ms at 100 MB/s).
    dev = _remote(RTT, link_bw=B, overhead=28, reply_overhead=16, backend=_instant())
    r = dev.submit(0.0, 0, L)
    w = dev.submit(0.0, L, 100 * L, True)
    assert r == pytest.approx(RTT + (28 + L + 16) / B, rel=1e-9)  # as if alone
    # behind the read's 28-byte header only
    assert w == pytest.approx(RTT + (28 + 100 * L + 28 + 16) / B, rel=1e-9)


def test_a_read_waits_for_a_long_writes_payload_on_its_connection_only_up():
    # One TCP byte stream per connection (QEMU sends header and payload under
    # send_mutex): a read's header follows the write's payload up; its reply
    # then comes down an idle direction.
    dev = _remote(RTT, link_bw=B, overhead=28, reply_overhead=16, backend=_instant())
    dev.submit(0.0, 0, 100 * L, True)
    r = dev.submit(0.0, 200 * L, L)
    assert r == pytest.approx((100 * L + 28 + 28) / B + RTT + (L + 16) / B, rel=1e-9)


def test_reading_and_writing_at_once_use_both_directions():
    # 50 MiB read and 50 MiB written, alternating 1 MiB requests, 16 in
    # flight: each direction carries half, so twice one pipe's rate.
    dev = _remote(0.0002, link_bw=B, overhead=28, reply_overhead=16)
    ends, last = [0.0] * 16, 0.0
    for i in range(100):
        t = heapq.heappop(ends)
        e = dev.submit(t, i * L, L, bool(i % 2))
        heapq.heappush(ends, e)
        last = max(last, e)
    assert last == pytest.approx(50 * L / B, rel=0.01)


def test_a_reply_ready_early_does_not_queue_behind_one_ready_later():
    # Replies leave the server when the backend is done, not in submission
    # order: a write to a backend that takes 0.5 s to write, then a read it
    # serves at once: the read's data takes the down direction's idle time
    # before the write's reply (a FIFO in submission order would hold it
    # until after 0.5 s).
    back = Device("b", 0.0, 1e18, 4, sharing="ps", write_latency=0.5)
    dev = _remote(RTT, link_bw=B, overhead=28, reply_overhead=16, backend=back)
    w = dev.submit(0.0, 0, 4096, True)
    r = dev.submit(0.0, 8192, L)
    assert w == pytest.approx(RTT + (4096 + 44) / B + 0.5, rel=1e-9)
    # its header behind the write's 4096 + 28 bytes up, then as if alone
    assert r == pytest.approx(RTT + (4096 + 28 + 28 + L + 16) / B, rel=1e-9)


def test_a_direction_never_works_faster_than_its_bandwidth():
    # Out-of-order readiness (a ps backend) fills idle time only: over any
    # interval a direction moves at most bandwidth x time.
    import numpy as np
    rng = np.random.default_rng(7)
    back = Device("b", 1e-4, 2e8, 8, sharing="ps")
    dev = _remote(0.001, link_bw=B, overhead=28, reply_overhead=16, backend=back)
    t = 0.0
    for i in range(3000):
        t += rng.exponential(2e-4)
        dev.submit(t, i * L, int(rng.choice([4096, 65536, L])), bool(rng.random() < 0.5))
    for w in (dev.link.up, dev.link.down):
        s, e = w.pipe.s, w.pipe.e
        assert all(a < b for a, b in zip(s, e)) and all(b <= a for b, a in zip(e, s[1:]))
        assert sum(b - a for a, b in zip(s, e)) <= w.busy * (1 + 1e-9)


def test_a_request_served_by_a_node_crosses_the_same_transport():
    # pull: open a slot, the header up, the server's own time, reply + data down
    from fleecesim.devices.remote import NBD_SERVER_MAX_REQUESTS
    dev = _remote(RTT, link_bw=B, overhead=28, reply_overhead=16, qd=64)
    conns = [dev.open(0.0) for _ in range(NBD_SERVER_MAX_REQUESTS)]
    assert all(c is not None for c in conns)
    assert dev.open(0.0) is None  # QEMU's server reads 16 of a client's at a time
    at = dev.request(conns[0], 0.0, L)
    assert at == pytest.approx(RTT / 2 + 28 / B, rel=1e-12)
    end = dev.reply(conns[0], at + 0.003, L)  # the server took 3 ms
    assert end == pytest.approx(RTT + (28 + L + 16) / B + 0.003, rel=1e-12)
    assert (dev.link.up.bytes, dev.link.down.bytes) == (28, L + 16)
    dev.close(conns[0])
    assert dev.open(end) is not None


def test_a_window_that_cannot_bind_changes_nothing():
    # window >= bandwidth x rtt: RemoteDevice skips the window pipes, as they
    # never delay an arrival; run them anyway and get the same schedule
    import numpy as np
    runs = []
    window = 0.002 * B * 1.0001
    for forced in (False, True):
        rng = np.random.default_rng(3)
        dev = _remote(0.002, link_bw=B, window=window, overhead=28, reply_overhead=16,
                      backend=Device("b", 1e-4, 3e8, 8, sharing="ps"))
        assert dev._win_s_per_byte == 0.0
        if forced:
            dev._win_s_per_byte = 0.002 / window
        t, out = 0.0, []
        for i in range(2000):
            t += rng.exponential(1e-4)
            out.append(dev.submit(t, i * L, int(rng.choice([4096, L])), bool(rng.random() < .5)))
        runs.append(out)
    assert runs[0] == runs[1] and dev.window_limited == 0
