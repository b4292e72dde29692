"""Sync modes: full, incremental (a seeded dirty bitmap) and none."""
import numpy as np
import pytest

from fleecesim.config import resolve
from fleecesim.errors import ConfigError
from fleecesim.nodes.target import UNWRITTEN
from fleecesim.run import simulate
from fleecesim.sync import dirty_bitmap
from tests.conftest import small

MiB = 2**20
CS = 65536


def _runs(bm):
    d = np.diff(np.concatenate(([0], bm.astype(np.int8), [0])))
    return np.flatnonzero(d == -1) - np.flatnonzero(d == 1)


@pytest.mark.parametrize("dirty,extent", [(0.05, MiB), (0.2, 4 * MiB), (0.5, CS)])
def test_dirty_bitmap_fraction_is_exact_and_extents_have_the_mean_length(dirty, extent):
    n = 16384
    bm = dirty_bitmap(n, CS, dirty, extent, seed=7)
    assert int(bm.sum()) == round(dirty * n)
    mean = _runs(bm).mean()
    # overlapping extents merge (longer), the last is trimmed (shorter)
    assert 0.6 * extent / CS <= mean <= 1.6 * max(extent / CS, 1) + 1
    assert (dirty_bitmap(n, CS, dirty, extent, seed=7) == bm).all()
    assert not (dirty_bitmap(n, CS, dirty, extent, seed=8) == bm).all()


def test_extent_length_is_a_locality_knob():
    n = 16384
    short = len(_runs(dirty_bitmap(n, CS, 0.1, CS, 1)))
    long = len(_runs(dirty_bitmap(n, CS, 0.1, 8 * MiB, 1)))
    assert long * 20 < short


@pytest.mark.parametrize("scheme", ["backup", "legacy-backup", "fleecing-push",
                                    "fleecing-pull"])
def test_incremental_copies_exactly_the_dirty_clusters(scheme):
    cfg = small(**{"backup.scheme": scheme, "backup.sync": "incremental",
                   "backup.incremental": {"dirty": 0.1, "extent": "1MiB"}})
    r = simulate(cfg, keep_arrays=True)
    s = r.summary
    n = s["clusters"]
    assert s["oracle_ok"], s.get("error")
    assert s["clusters_to_copy"] == round(0.1 * n)
    assert s["clusters_copied_outside_mask"] == 0
    assert int((r.arrays["target_gen"] != UNWRITTEN).sum()) == round(0.1 * n)
    full = simulate(small(**{"backup.scheme": scheme})).summary
    assert s["backup_duration_s"] < 0.2 * full["backup_duration_s"]


def test_incremental_cbw_guards_only_dirty_clusters():
    # fleecing-push's CBW takes the sync bitmap: writes elsewhere need no copy
    inc = simulate(small(**{"backup.sync": "incremental",
                            "backup.incremental.dirty": 0.1})).summary
    full = simulate(small()).summary
    assert inc["oracle_ok"] and full["oracle_ok"]
    assert inc["cbw_count"] < 0.3 * full["cbw_count"]


@pytest.mark.parametrize("scheme", ["backup", "legacy-backup"])
def test_sync_none_saves_what_the_guest_overwrote(scheme):
    cfg = small(**{"backup.scheme": scheme, "backup.sync": "none", "backup.window": "2s"})
    r = simulate(cfg, keep_arrays=True)
    s = r.summary
    assert s["oracle_ok"], s.get("error")
    assert s["backup_duration_s"] == pytest.approx(2.0)
    assert s["job_copied_bytes"] == 0
    assert 0 < s["clusters_to_copy"] < s["clusters"] // 2
    # every copy was a copy-before-write of a cluster the guest changed
    assert s["target_write_bytes"] + s["target_zero_bytes"] == s["cbw_bytes"]
    copied = r.arrays["target_gen"] != UNWRITTEN
    assert copied.sum() >= s["clusters_to_copy"]


def test_sync_none_is_rejected_where_it_means_nothing():
    for scheme in ("fleecing-push", "fleecing-pull", "overlay-commit"):
        with pytest.raises(ConfigError, match=r"^backup\.sync: 'none'"):
            resolve({"backup": {"scheme": scheme, "sync": "none"}})


def test_sync_key_errors_are_one_line():
    with pytest.raises(ConfigError) as e:
        resolve({"backup": {"sync": "differential"}})
    assert str(e.value).startswith("backup.sync:") and "\n" not in str(e.value)
    with pytest.raises(ConfigError, match=r"^backup\.incremental\.dirty:"):
        resolve({"backup": {"incremental": {"dirty": 1.5}}})
    with pytest.raises(ConfigError, match=r"^backup\.client\.storage: no device named"):
        resolve({"backup": {"client": {"storage": "nas"}}})
    with pytest.raises(ConfigError, match=r"^backup\.overlay\.device: no device named"):
        resolve({"backup": {"overlay": {"device": "nas"}}})


def _dirty_bitmap_one_by_one(n, cluster_size, dirty, extent, seed):
    """The dirty bitmap drawn and set extent by extent (what sync.dirty_bitmap
    computes in bulk): the reference for its bits."""
    from fleecesim.rng import stream
    want = int(round(dirty * n))
    bm = np.zeros(n, dtype=bool)
    if want <= 0:
        return bm
    if want >= n:
        bm[:] = True
        return bm
    rng = stream(seed, "backup.dirty-bitmap")
    mean = max(1.0, extent / cluster_size)
    have = 0
    while have < want:
        k = max(16, int((want - have) / mean) + 16)
        starts = rng.integers(0, n, size=k)
        lens = rng.geometric(1.0 / mean, size=k)
        for s, ln in zip(starts.tolist(), lens.tolist()):
            e = min(n, s + ln)
            seg = bm[s:e]
            new = int(e - s - np.count_nonzero(seg))
            if have + new > want:
                bm[np.flatnonzero(~seg)[:want - have] + s] = True
                have = want
                break
            bm[s:e] = True
            have += new
            if have >= want:
                break
    return bm


@pytest.mark.parametrize("n,dirty,extent", [
    (3000, 0.3, 16 * CS),  # many overlaps, several batches
    (3000, 0.9, 64 * CS),  # most of the disk: overlaps everywhere
    (50_000, 0.01, CS),  # single clusters
    (50_000, 0.05, 300 * CS),  # extents across pages
    (200_000, 0.002, MiB),  # sparse: few overlaps
    (17, 0.5, 4 * CS),  # tiny disk
])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_dirty_bitmap_in_bulk_equals_one_by_one(n, dirty, extent, seed):
    want = _dirty_bitmap_one_by_one(n, CS, dirty, extent, seed)
    assert np.array_equal(dirty_bitmap(n, CS, dirty, extent, seed), want)
    assert np.array_equal(dirty_bitmap(n, CS, dirty, extent, seed, sparse=True).to_dense(), want)
