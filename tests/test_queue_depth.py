"""A device's request slots are kept lazily (devices/base.py Device, remote.py
_Connection): a queue-depth far above what is ever outstanding costs memory
for the requests submitted, not 8 bytes a slot up front, and gives the same
schedule as the full heap of ``queue-depth`` free times."""
from __future__ import annotations

import numpy as np
import pytest

from fleecesim.config import load_config
from fleecesim.devices import Device, RemoteDevice
from fleecesim.devices.remote import Link
from fleecesim.run import simulate
from tests.conftest import REPO

MiB = 2**20


def _requests(seed: int, n: int = 3000):
    rng = np.random.default_rng(seed)
    now = np.cumsum(rng.exponential(20e-6, n))
    length = rng.choice([0, 4096, 65536, MiB], n, p=[0.05, 0.6, 0.3, 0.05])
    write = rng.random(n) < 0.5
    return list(zip(now.tolist(), length.tolist(), write.tolist()))


def _eager(dev):
    """The same device with every slot in its heap from the start."""
    dev._free = [0.0] * dev.slots
    dev._unused = 0
    return dev


@pytest.mark.parametrize("sharing", ["ps", "fifo"])
@pytest.mark.parametrize("slots", [1, 3, 8, 64])
def test_lazy_slots_give_the_schedule_of_the_full_heap(sharing, slots):
    def make():
        return Device("d", 50e-6, 500 * MiB, slots, sharing=sharing, write_latency=20e-6,
                      write_bandwidth=300 * MiB, read_iops=100_000)
    lazy, full = make(), _eager(make())
    for i, (now, ln, w) in enumerate(_requests(slots)):
        assert lazy.submit(now, i * 4096, ln, w) == full.submit(now, i * 4096, ln, w)
    assert len(lazy._free) <= slots
    assert sorted(lazy._free) == sorted(x for x in full._free if x > 0.0) + \
        [0.0] * (len(lazy._free) - sum(x > 0.0 for x in full._free))


def test_remote_lazy_slots_give_the_schedule_of_the_full_heap():
    def make():
        backend = Device("b", 100e-6, 400 * MiB, 32, sharing="ps")
        return RemoteDevice("r", Link("l", 0.5e-3, 100 * MiB), backend, connections=2,
                            slots=16)
    lazy, full = make(), make()
    for c in full._conns:
        c.free, c.unused = [0.0] * 16, 0
    full.backend = _eager(full.backend)
    for i, (now, ln, w) in enumerate(_requests(7)):
        assert lazy.submit(now, i * 4096, ln, w) == full.submit(now, i * 4096, ln, w)


def test_a_huge_queue_depth_allocates_nothing_per_slot():
    dev = Device("d", 1e-3, 100 * MiB, 10**7)
    remote = RemoteDevice("r", Link("l", 1e-3, 100 * MiB), Device("b", 1e-4, 100 * MiB, 10**7),
                          slots=10**7)
    for i, (now, ln, w) in enumerate(_requests(1, 200)):
        dev.submit(now, 0, ln, w)
        remote.submit(now, 0, ln, w)
    # the slots used (each request took a fresh one: all were free) and one 0.0
    assert len(dev._free) == 201 and dev._unused == 10**7 - 201
    assert len(remote._conns[0].free) == 201 and len(remote.backend._free) == 201


def test_queue_depth_a_billion_runs_as_one_of_a_thousand():
    """More slots than requests ever outstanding change nothing: 1e9 slots on a
    256 MiB disk took 35 s and 8 GB before the first request."""
    base = ["backup.scheme=fleecing-push", "run.warmup=0.2s", "run.tail=0s"]
    conf = REPO / "configs" / "qemu-small.yaml"
    ss = [simulate(load_config(conf, base + [f"devices.local.queue-depth={q}",
                                             f"devices.target.backend.queue-depth={q}"]))
          .summary for q in (1000, 10**9)]
    for k in ("backup_duration_s", "write_p50_s", "write_p99_s", "guest_ios", "cbw_count"):
        assert ss[0][k] == ss[1][k], k
    assert ss[1]["oracle_ok"]
