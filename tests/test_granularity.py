"""Each block-copy has its own granularity.

QEMU's block-copy takes its cluster size from its own target
(block/block-copy.c: block_copy_calculate_cluster_size): the CBW filter of a
fleecing scheme from the fleecing image, the backup job from the backup
target; both at least 64 KiB and ``min-cluster-size``.
"""
import numpy as np
import pytest
import simpy

from fleecesim.bitmap import widen
from fleecesim.errors import ConfigError
from fleecesim.jobs import BlockCopy
from fleecesim.metrics import Stats
from fleecesim.nodes import ActiveDisk
from fleecesim.devices.base import Device
from fleecesim.run import simulate
from tests.conftest import small

KiB, MiB = 1024, 2**20


def _writes_4k(**kw):
    """Only 4 KiB writes, 4 KiB aligned: each touches exactly one copy cluster."""
    return small(**{"disk.size": "64MiB", "workload.mix": {"read": 0.2, "write": 0.8},
                    "workload.size": 4096, **kw})


def test_config_gives_cbw_and_job_their_own_cluster_size():
    c = small(**{"backup.target.cluster-size": "1MiB"})
    assert (c.cluster_size, c.cbw_cluster_size, c.unit) == (MiB, 64 * KiB, 64 * KiB)
    c = small(**{"backup.cache.cluster-size": "1MiB"})
    assert (c.cluster_size, c.cbw_cluster_size, c.unit) == (64 * KiB, MiB, 64 * KiB)
    c = small(**{"backup.cache.cluster-size": "1MiB", "backup.min-cluster-size": "2MiB"})
    assert (c.cluster_size, c.cbw_cluster_size) == (2 * MiB, 2 * MiB)
    # without a fleecing image the CBW shares the job's block-copy
    c = small(**{"backup.scheme": "backup", "backup.target.cluster-size": "1MiB"})
    assert (c.cluster_size, c.cbw_cluster_size) == (MiB, MiB)


def test_removed_and_misplaced_keys_are_rejected_by_name():
    with pytest.raises(ConfigError, match=r"^disk\.cluster-size: removed"):
        small(**{"disk.cluster-size": "64KiB"})
    with pytest.raises(ConfigError, match=r"^backup\.cache\.cluster-size: not used by the 'backup' scheme"):
        small(**{"backup.scheme": "backup", "backup.cache.cluster-size": "1MiB"})


@pytest.mark.parametrize("scheme", ["fleecing-push", "fleecing-pull"])
def test_a_coarse_target_does_not_coarsen_cbw(scheme):
    """Once, target cluster-size 1 MiB made every 4 KiB guest
    write copy 1 MiB into the fleecing image. Now CBW copies one 64 KiB
    cluster per write, and the job still writes the target in 1 MiB clusters."""
    base = simulate(_writes_4k(**{"backup.scheme": scheme})).summary
    s = simulate(_writes_4k(**{"backup.scheme": scheme,
                               "backup.target.cluster-size": "1MiB"})).summary
    for r in (base, s):
        assert r["oracle_ok"] and r["clusters_copied_twice"] == 0
        assert r["cbw_count"] > 0 and r["cbw_bytes"] == r["cbw_count"] * 64 * KiB
    assert s["cluster_size"] == MiB and s["cbw_cluster_size"] == 64 * KiB
    # same guest, same CBW work: fleecing space within a few clusters of the 64 KiB case
    assert abs(s["fleecing_peak_bytes"] - base["fleecing_peak_bytes"]) <= 0.2 * base[
        "fleecing_peak_bytes"]


@pytest.mark.parametrize("scheme", ["fleecing-push", "fleecing-pull", "fleecing-pull-2018"])
def test_a_coarse_fleecing_image_coarsens_cbw_only(scheme):
    s = simulate(_writes_4k(**{"backup.scheme": scheme,
                               "backup.cache.cluster-size": "1MiB"})).summary
    assert s["oracle_ok"] and s["clusters_copied_twice"] == 0
    assert s["cbw_count"] > 0 and s["cbw_bytes"] == s["cbw_count"] * MiB
    assert s["cluster_size"] == 64 * KiB
    # the fleecing image fills in whole 1 MiB clusters
    assert s["fleecing_peak_bytes"] % MiB == 0


@pytest.mark.parametrize("scheme", ["backup", "legacy-backup"])
def test_direct_schemes_copy_at_the_target_granularity(scheme):
    s = simulate(_writes_4k(**{"backup.scheme": scheme,
                               "backup.target.cluster-size": "256KiB"})).summary
    assert s["oracle_ok"] and s["clusters_copied_twice"] == 0
    assert s["cbw_bytes"] == s["cbw_count"] * 256 * KiB


def test_incremental_bitmap_is_widened_to_the_job_cluster():
    """A 64 KiB-granular dirty bitmap merged into a 1 MiB block-copy bitmap:
    every 1 MiB cluster with any dirty part is copied whole."""
    fine = simulate(small(**{"backup.sync": "incremental", "backup.scheme": "backup",
                             "backup.incremental.dirty": 0.05, "disk.size": "64MiB",
                             "workload.iops": 0})).summary
    coarse = simulate(small(**{"backup.sync": "incremental", "backup.scheme": "backup",
                               "backup.incremental.dirty": 0.05, "disk.size": "64MiB",
                               "backup.target.cluster-size": "1MiB",
                               "workload.iops": 0})).summary
    assert fine["oracle_ok"] and coarse["oracle_ok"]
    assert coarse["clusters_to_copy"] % 16 == 0  # whole 1 MiB clusters of 64 KiB units
    assert coarse["clusters_to_copy"] > fine["clusters_to_copy"]


def test_widen():
    m = np.array([0, 1, 0, 0, 0, 0, 1, 1, 0, 1], dtype=bool)
    assert widen(m, 4).tolist() == [1] * 4 + [1] * 4 + [1, 1]
    assert widen(m, 4, all_=True).tolist() == [0] * 8 + [0, 0]
    assert widen(np.ones(6, dtype=bool), 4, all_=True).all()  # short last group


def test_claims_are_whole_clusters_of_the_copy_granularity():
    env = simpy.Environment()
    n = 32
    active = ActiveDisk(env, Device("d", 1e-4, 2**30), n, 64 * KiB, np.zeros(n, dtype=bool))
    needed = np.zeros(n, dtype=bool)
    needed[5] = True  # one 64 KiB bit inside the second 256 KiB cluster
    bc = BlockCopy(env, "t", active, None, needed, 64 * KiB, n * 64 * KiB, max_chunk=MiB,
                   stats=Stats(), granularity=256 * KiB)
    assert needed[4:8].all() and bc.remaining == 4 and bc.chunk == 16
    tasks = bc.claim(6, 7)  # a 64 KiB request inside it claims the whole cluster
    assert [(a, b) for a, b, _z, _e in tasks] == [(4, 8)]
    assert not needed.any()
