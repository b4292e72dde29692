"""snapshot-access's access bitmap and discard alignment.

QEMU (block/copy-before-write.c): the access bitmap starts as the CBW
bitmap; cbw_co_pdiscard_snapshot clears it for whole clusters only (start
aligned up, end aligned down); cbw_snapshot_read_lock refuses a read that
touches any inaccessible byte (-EACCES).
"""
import numpy as np
import simpy

from fleecesim.devices.base import Device
from fleecesim.devices.remote import RemoteDevice
from fleecesim.jobs import BlockCopy
from fleecesim.metrics import Stats
from fleecesim.nodes import ActiveDisk, CBWFilter, FleecingCache, SnapshotView, Tier
from fleecesim.nodes.nbd import NBDExport
from fleecesim.run import simulate
from tests.conftest import small

CS = 64 * 1024


def rig(n=16, k=1, needed=None):
    env = simpy.Environment()
    stats = Stats()
    active = ActiveDisk(env, Device("d", 1e-4, 2**30, 8), n, CS, np.zeros(n, dtype=bool))
    cache = FleecingCache(env, [Tier(env, "disk", Device("c", 1e-4, 2**30, 8), n * CS)],
                          n, CS, stats)
    nd = np.ones(n, dtype=bool) if needed is None else needed
    copier = BlockCopy(env, "cbw", active, cache, nd.copy(), CS, n * CS, max_chunk=k * CS,
                       stats=stats, granularity=k * CS)
    f = CBWFilter(env, active, copier, stats, CS, cache=cache, access=copier.needed)
    snap = SnapshotView(env, f, CS)
    return env, stats, f, snap, copier


def _read(env, node, off, ln):
    p = env.process(node.read(off, ln))
    env.run()
    return p.value


def test_read_after_discard_fails_and_is_counted():
    env, stats, f, snap, copier = rig()
    assert _read(env, snap, 2 * CS, CS) is not None
    env.process(snap.discard(2 * CS, CS))
    env.run()
    assert not copier.needed[2]  # read-once: CBW no longer guards it
    assert _read(env, snap, 2 * CS, CS) is None
    assert _read(env, snap, CS, 3 * CS) is None  # any overlap is refused
    assert stats.snapshot_read_errors == 2
    assert _read(env, snap, 3 * CS, CS) is not None  # the neighbours are untouched


def test_pull_client_rereading_a_trimmed_range_gets_an_error():
    env, stats, f, snap, _ = rig()
    transport = RemoteDevice("nbd", Device("link", 2e-4, 1e8, 16), Device("unused", 0, 1e9))
    export = NBDExport(env, snap, transport, CS, stats)
    env.process(export.discard(4 * CS, 2 * CS))
    env.run()
    assert _read(env, export, 4 * CS, CS) is None and stats.snapshot_read_errors == 1


def test_discard_rounds_inward_to_whole_cbw_clusters():
    env, stats, f, snap, copier = rig()
    env.process(snap.discard(3 * CS + 4096, 4096))  # inside one cluster: nothing
    env.process(snap.discard(5 * CS + 4096, 2 * CS))  # covers cluster 6 only
    env.run()
    assert copier.needed[3] and f.access[3] and copier.needed[5] and copier.needed[7]
    assert not copier.needed[6] and not f.access[6]
    # with 256 KiB CBW clusters a 64 KiB-aligned discard of 3 units frees nothing
    env, stats, f, snap, copier = rig(k=4)
    env.process(snap.discard(4 * CS, 3 * CS))
    env.process(snap.discard(8 * CS, 4 * CS))
    env.run()
    assert copier.needed[4:8].all() and not copier.needed[8:12].any()


def test_outside_the_sync_bitmap_is_not_readable():
    needed = np.zeros(16, dtype=bool)
    needed[:8] = True
    env, stats, f, snap, _ = rig(needed=needed)
    assert _read(env, snap, 0, 8 * CS) is not None
    assert _read(env, snap, 7 * CS, 2 * CS) is None


def test_read_once_backups_stay_correct_with_the_access_bitmap():
    for scheme, key in (("fleecing-push", "backup.discard-source"),
                        ("fleecing-pull", "backup.client.discard")):
        s = simulate(small(**{"backup.scheme": scheme, key: True, "disk.size": "64MiB"})).summary
        assert s["oracle_ok"] and s["snapshot_read_errors"] == 0, scheme
