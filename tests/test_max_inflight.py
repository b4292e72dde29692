"""workload.max-inflight: an open-loop guest with at most N requests
outstanding (QEMU's NBD client allows 16); checked against closed forms."""
from __future__ import annotations

import numpy as np
import pytest

from fleecesim.config import resolve
from fleecesim.errors import ConfigError
from fleecesim.run import simulate
from fleecesim.workloads.records import OP_WRITE, RECORD_DTYPE

S = 0.001  # service time of the test device: 1 ms latency, bandwidth ~infinite


def cfg(max_inflight=None, queue_depth=64, **extra):
    raw = {
        "disk": {"size": "64MiB"},
        "devices": {"local": {"kind": "ssd", "latency": "1ms", "bandwidth": "1000TiB/s",
                              "queue-depth": queue_depth}},
        "workload": {"iops": 100, "mix": {"read": 0, "write": 1}},
        "backup": {"scheme": "none"},
        "run": {"seed": 1, "warmup": "1s", "tail": "0s"},
        "host": {"request-cost": 0, "memcpy-bandwidth": 0},  # device closed forms only
    }
    if max_inflight is not None:
        raw["workload"]["max-inflight"] = max_inflight
    return resolve(raw, extra)


def burst(times, length=4096):
    req = np.zeros(len(times), dtype=RECORD_DTYPE)
    req["time"] = times
    req["op"] = OP_WRITE
    req["offset"] = np.arange(len(times)) * 65536
    req["length"] = length
    return req


def latencies(c, req, **kw):
    r = simulate(c, source=[req], **kw)
    assert "error" not in r.summary, r.summary.get("error")
    df = r.requests.sort_values(["time", "latency"], kind="stable")
    return df["latency"].to_numpy(), df["time"].to_numpy()


@pytest.mark.parametrize("fast_path", [True, False])
def test_one_in_flight_burst_is_served_one_after_another(fast_path):
    k = 6
    lat, t = latencies(cfg(max_inflight=1), burst([0.5] * k), fast_path=fast_path)
    assert np.allclose(lat, S * np.arange(1, k + 1), rtol=0, atol=1e-9)
    assert np.allclose(t, 0.5)  # arrival time is recorded, not the issue time


def test_n_in_flight_burst_completes_in_waves():
    # N=3, k=7 simultaneous requests on a device that could serve all at once:
    # waves of 3 -> latencies S,S,S, 2S,2S,2S, 3S
    lat, _ = latencies(cfg(max_inflight=3), burst([0.2] * 7))
    assert np.allclose(np.sort(lat), S * np.array([1, 1, 1, 2, 2, 2, 3]))


def test_limit_not_reached_is_the_unlimited_result():
    rng = np.random.default_rng(3)
    times = np.sort(rng.uniform(0.0, 0.9, 300))
    req = burst(times)
    unlimited, _ = latencies(cfg(), req)
    roomy, _ = latencies(cfg(max_inflight=64), req)
    assert np.allclose(unlimited, roomy)
    # spaced arrivals (gap > S) never queue even with N = 1
    spaced = burst(np.arange(50) * 0.01)
    lat, _ = latencies(cfg(max_inflight=1), spaced)
    assert np.allclose(lat, S)


def test_queue_on_a_one_slot_device_matches_fifo_queue():
    """Arrivals 0.4 ms apart on a 1 ms device: with the device's own FIFO queue
    or with max-inflight=1 in front of a roomy device the waits are the same
    (Lindley recursion W_{i+1} = max(0, W_i + S - gap))."""
    gap = 0.0004
    times = 0.1 + np.arange(20) * gap
    want = np.empty(20)
    w = 0.0
    for i in range(20):
        want[i] = w + S
        w = max(0.0, w + S - gap)
    lat_dev, _ = latencies(cfg(queue_depth=1), burst(times))
    lat_lim, _ = latencies(cfg(max_inflight=1), burst(times))
    assert np.allclose(lat_dev, want) and np.allclose(lat_lim, want)


def test_config_validation():
    assert cfg().workload.max_inflight is None
    assert cfg(max_inflight=16).workload.max_inflight == 16
    with pytest.raises(ConfigError, match="max-inflight"):
        cfg(max_inflight=0)
    with pytest.raises(ConfigError, match="max-inflight"):
        resolve({"workload": {"iodepth": 4, "max-inflight": 2}})


@pytest.mark.parametrize("scheme", ["backup", "fleecing-push"])
def test_fast_path_and_reference_path_agree_under_a_limit(scheme):
    """With a backup running, writes mix the fast path (device time only) and
    the slow path (CBW): the slot accounting of both must give the same
    latencies as routing every request through a process."""
    c = resolve({
        "disk": {"size": "32MiB"},
        "devices": {"local": {"preset": "nvme"},
                    "target": {"kind": "remote", "rtt": "50us", "link-bandwidth": "40MiB/s",
                               "queue-depth": 16, "backend": {"preset": "nvme"}}},
        "workload": {"iops": 2000, "mix": {"read": 0.3, "write": 0.7},
                     "size": {"4KiB": 3, "64KiB": 1}, "max-inflight": 1},
        "backup": {"scheme": scheme},
        "run": {"seed": 5, "warmup": "0.2s", "tail": "0.3s"},
    })
    a = simulate(c, fast_path=True)
    b = simulate(c, fast_path=False)
    assert a.summary["oracle_ok"] and b.summary["oracle_ok"]
    ka = a.requests.sort_values(["time", "offset", "op"], kind="stable")
    kb = b.requests.sort_values(["time", "offset", "op"], kind="stable")
    assert len(ka) == len(kb) > 500
    assert np.allclose(ka["latency"].to_numpy(), kb["latency"].to_numpy(), rtol=0, atol=1e-9)
    # the limit binds: requests waited for a slot, so latencies grew
    raw = c.dump()
    raw["workload"]["max-inflight"] = None
    free = simulate(resolve(raw), fast_path=True)
    assert len(free.requests) == len(ka)
    assert a.requests["latency"].sum() > 1.05 * free.requests["latency"].sum()
