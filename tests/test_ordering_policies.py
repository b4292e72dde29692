"""Copy-ordering policies (seed item 7): the exact order each one gives on a
hand-made cache state, that each copies every needed cluster once, and the
effect each is for, on a small scenario over seeds."""
from types import SimpleNamespace

import numpy as np
import pytest
import simpy

from fleecesim.config import resolve
from fleecesim.errors import ConfigError
from fleecesim.jobs import BlockCopy
from fleecesim.metrics import Stats
from fleecesim.policies import ORDERING, make_ordering
from fleecesim.run import simulate
from tests.conftest import small

N = 32
RAM, DISK = 0, 1


def state(n=N, ram=(10, 11, 20), disk=(3, 4, 25), zero=(0, 1, 2, 28, 29, 30, 31),
          heat=None):
    """A BlockCopy over a fake snapshot (zero map, t0 generations) and a cache view."""
    where = np.full(n, -1, dtype=np.int8)
    where[list(ram)] = RAM
    where[list(disk)] = DISK
    z = np.zeros(n, dtype=bool)
    z[list(zero)] = True
    gen = np.zeros(n, dtype=np.uint32)
    for c, h in (heat or {7: 5, 15: 2, 16: 2}).items():
        gen[c] = h
    version = [0]
    src = SimpleNamespace(zero_map=lambda a, b: z[a:b], peek=lambda a, b: gen[a:b].copy())
    copier = BlockCopy(simpy.Environment(), "t", src, None, np.ones(n, dtype=bool), 65536,
                       n * 65536, 4 * 65536, Stats())
    view = {"where": where, "ram": RAM, "disk": DISK, "version": lambda: version[0]}
    graph = SimpleNamespace(cache=SimpleNamespace(view=lambda: view))
    return copier, graph, where, version


def drain(name, copier, graph, max_clusters=4, on_run=None):
    p = make_ordering(name)
    p.bind(copier, graph)
    runs = []
    while (r := p.next_run(copier, max_clusters)) is not None:
        assert copier.needed[r[0]:r[1]].all() and 0 < r[1] - r[0] <= max_clusters
        copier.needed[r[0]:r[1]] = False  # as a claim does
        runs.append(r)
        if on_run:
            on_run(len(runs))
    return runs


EXPECTED = {
    "ascending": [(0, 4), (4, 8), (8, 12), (12, 16), (16, 20), (20, 24), (24, 28), (28, 32)],
    # 7a: RAM-cached (10, 11, 20) first, then ascending over the rest
    "ram-first": [(10, 12), (20, 21), (0, 4), (4, 8), (8, 10), (12, 16), (16, 20), (21, 25),
                  (25, 29), (29, 32)],
    # 7b: zero clusters (0-2, 28-31) last
    "zero-last": [(3, 7), (7, 11), (11, 15), (15, 19), (19, 23), (23, 27), (27, 28), (0, 3),
                  (28, 32)],
    # 7c: disk-cached (3, 4, 25) last
    "disk-cached-last": [(0, 3), (5, 9), (9, 13), (13, 17), (17, 21), (21, 25), (26, 30),
                         (30, 32), (3, 5), (25, 26)],
    # 7d: RAM-cached, then disk-cached, then ascending
    "disk-cached-first": [(10, 12), (20, 21), (3, 5), (25, 26), (0, 3), (5, 9), (9, 10),
                          (12, 16), (16, 20), (21, 25), (26, 30), (30, 32)],
    # ours: hottest first (7: 5 writes; 15, 16: 2 each, one run), then ascending
    "hot-first": [(7, 8), (15, 17), (0, 4), (4, 7), (8, 12), (12, 15), (17, 21), (21, 25),
                  (25, 29), (29, 32)],
}


def test_every_registered_policy_has_an_expected_order():
    assert set(EXPECTED) == set(ORDERING)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_policy_order(name):
    copier, graph, _, _ = state()
    assert drain(name, copier, graph) == EXPECTED[name]


@pytest.mark.parametrize("name", sorted(EXPECTED))
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_policy_copies_every_needed_cluster_once(name, seed):
    rng = np.random.default_rng(seed)
    n = 500
    idx = rng.permutation(n)
    copier, graph, _, _ = state(n, ram=idx[:40], disk=idx[40:90], zero=idx[90:200],
                                heat={int(c): int(rng.integers(1, 9)) for c in idx[150:260]})
    copier.needed[rng.random(n) < 0.3] = False  # an incremental bitmap
    want = copier.needed.copy()
    runs = drain(name, copier, graph, max_clusters=16)
    got = np.zeros(n, dtype=int)
    for a, b in runs:
        got[a:b] += 1
    assert np.array_equal(got, want.astype(int))


def test_ram_first_sees_clusters_that_enter_ram_later():
    copier, graph, where, version = state()

    def cache_more(k):
        if k == 1:  # after the first run, cluster 30 is stored in RAM
            where[30] = RAM
            version[0] += 1

    runs = drain("ram-first", copier, graph, on_run=cache_more)
    assert runs[:3] == [(10, 12), (20, 21), (30, 31)]


@pytest.mark.parametrize("name", ["ram-first", "disk-cached-last", "disk-cached-first"])
def test_cache_policies_without_a_cache_are_ascending(name):
    copier, _, _, _ = state()
    assert drain(name, copier, SimpleNamespace(cache=None)) == EXPECTED["ascending"]


def test_unknown_policy_is_a_one_line_config_error_naming_the_key():
    with pytest.raises(ConfigError) as e:
        resolve({"backup": {"order": "random"}})
    msg = str(e.value)
    assert msg.startswith("backup.order:") and "\n" not in msg
    assert all(name in msg for name in ORDERING)


# ------------------------------------------------------------------ scenarios
SCEN = {"backup.cache.ram.size": "8MiB", "backup.cache.cor": True,
        "backup.discard-source": True, "disk.allocated": 0.7, "workload.pattern": "zipf",
        "workload.iops": 4000, "backup.max-workers": 16}


def _run(order, seed):
    s = simulate(small(**SCEN, **{"backup.order": order, "run.seed": seed})).summary
    assert s["oracle_ok"], order
    return s


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_policies_do_what_they_are_for(seed):
    asc = _run("ascending", seed)
    ram = _run("ram-first", seed)
    dcl = _run("disk-cached-last", seed)
    hot = _run("hot-first", seed)
    assert asc["spill_bytes"] > 0  # the RAM tier is too small under ascending order
    # 7a unloads RAM: lower time-weighted RAM occupancy, less spill to disk
    assert ram["cache_ram_bytes_mean"] < asc["cache_ram_bytes_mean"]
    assert ram["spill_bytes"] < asc["spill_bytes"]
    # 7c and ours copy CBW-exposed clusters first: fewer CBWs
    assert dcl["cbw_count"] <= asc["cbw_count"]
    assert hot["cbw_count"] < asc["cbw_count"]
