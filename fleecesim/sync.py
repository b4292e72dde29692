"""Sync modes: which clusters a backup is asked to copy (the ``needed`` bitmap at t0).

- ``full``: every cluster.
- ``incremental``: the dirty bitmap a previous backup left behind. Dirty
  extents start at uniform random clusters and have geometric lengths with
  mean ``backup.incremental.extent`` (at least one cluster); extents are added
  until ``backup.incremental.dirty`` of the clusters are dirty (the last one is
  trimmed to hit the fraction exactly). The oracle checks only these clusters.
- ``none``: the job copies nothing and idles for ``backup.window`` seconds; CBW
  copies to the target the t0 content of every cluster the guest overwrites
  (or discards) in that window. So what the backup was "asked to copy" is only
  known at the end: every cluster whose content changed between t0 and the end
  of the window, and the oracle checks exactly those (``changed_mask``).
"""
from __future__ import annotations

import numpy as np

from .rng import stream
from .sparse import SparseArray, differs, full


def dirty_bitmap(n: int, cluster_size: int, dirty: float, extent: int, seed: int,
                 sparse: bool = False):
    """A seeded dirty bitmap of ``round(dirty * n)`` clusters in extents of mean
    ``extent`` (a SparseArray with ``sparse``: the same bits).

    Extents are drawn in batches and taken in order until the count is
    reached, the last one trimmed to its first free clusters (``_take``). The
    bits are set at the end, all at once: on a 64 TiB disk that is 65 k
    extents, which one by one through a SparseArray cost seconds."""
    want = int(round(dirty * n))
    bm = full(n, bool, False, sparse)
    if want <= 0:
        return bm
    if want >= n:
        bm[:] = True
        return bm
    starts, ends, single = _take(n, want, max(1.0, extent / cluster_size),
                                 stream(seed, "backup.dirty-bitmap"))
    if sparse:
        bm.set_runs(starts, ends)
        bm[single] = True
        return bm
    delta = np.zeros(n + 1, dtype=np.int32)  # +1 where an extent starts, -1 past its end
    np.add.at(delta, starts, 1)
    np.add.at(delta, ends, -1)
    np.cumsum(delta, out=delta)  # in place: no second temporary as long as the disk
    bm = delta[:n] > 0
    bm[single] = True
    return bm


def _merge(starts: np.ndarray, ends: np.ndarray):
    """Disjoint sorted runs covering the union of [starts, ends)."""
    o = np.argsort(starts, kind="stable")
    s, e = starts[o], ends[o]
    reach = np.maximum.accumulate(e)
    new = np.concatenate(([True], s[1:] > reach[:-1]))  # a gap before it
    first = np.flatnonzero(new)
    return s[first], np.maximum.reduceat(e, first) if first.size else e[:0]


def _take(n: int, want: int, mean: float, rng):
    """The extents the sequential draw takes: extent j (start uniform, length
    geometric) adds the clusters of it no earlier extent covers, and extents
    are taken until ``want`` clusters are covered; the one that would pass
    ``want`` adds only its first free clusters. Returns (starts, ends) of the
    whole extents taken and the clusters of the trimmed one.

    Most extents of a large disk overlap nothing: each adds its length, so
    the running count is a cumulative sum; only the few that overlap another
    (or an earlier batch's) are counted cluster by cluster, in order."""
    p = 1.0 / mean
    have = 0
    taken_s, taken_e = [], []
    single = np.zeros(0, dtype=np.int64)
    cov_s = cov_e = np.zeros(0, dtype=np.int64)  # earlier batches, merged
    while have < want:
        k = max(16, int((want - have) / mean) + 16)
        s = rng.integers(0, n, size=k)
        e = np.minimum(n, s + rng.geometric(p, size=k))
        # which extents overlap another of this batch, or what earlier batches took
        o = np.argsort(s, kind="stable")
        ss, ee = s[o], e[o]
        ov = np.zeros(k, dtype=bool)
        reach = np.maximum.accumulate(ee)
        ov[1:] |= ss[1:] < reach[:-1]
        ov[:-1] |= ss[1:] < ee[:-1]
        shared = np.zeros(k, dtype=bool)
        shared[o] = ov
        if cov_s.size:
            i = np.searchsorted(cov_s, e, "left") - 1
            shared |= (i >= 0) & (cov_e[np.maximum(i, 0)] > s)
        new = e - s
        free = {}  # extent -> its free clusters, for the overlapping ones
        seen = set()
        for j in np.flatnonzero(shared).tolist():
            a, b = int(s[j]), int(e[j])
            f = [c for c in range(a, b) if c not in seen]
            if cov_s.size:
                lo = max(0, int(np.searchsorted(cov_e, a, "right")))
                hi = int(np.searchsorted(cov_s, b, "left"))
                for x, y in zip(cov_s[lo:hi].tolist(), cov_e[lo:hi].tolist()):
                    f = [c for c in f if not x <= c < y]
            free[j] = f
            new[j] = len(f)
            seen.update(range(a, b))
        cum = have + np.cumsum(new)
        j = int(np.searchsorted(cum, want, "left"))  # the first to reach want
        if j == k:  # not yet: take them all, draw another batch
            taken_s.append(s)
            taken_e.append(e)
            have = int(cum[-1])
            cov_s, cov_e = _merge(np.concatenate(taken_s), np.concatenate(taken_e))
            continue
        before = int(cum[j - 1]) if j else have
        taken_s.append(s[:j])
        taken_e.append(e[:j])
        if before + int(new[j]) > want:  # trim: its first free clusters
            f = free[j] if j in free else range(int(s[j]), int(e[j]))
            single = np.asarray(list(f)[:want - before], dtype=np.int64)
        else:
            taken_s.append(s[j:j + 1])
            taken_e.append(e[j:j + 1])
        have = want
    return np.concatenate(taken_s), np.concatenate(taken_e), single


def needed_at_t0(cfg, n: int, cluster_size: int, sparse: bool = False):
    """The copy bitmap the backup starts with (bool per cluster of ``cluster_size``,
    the model's unit). An incremental bitmap is drawn at its own granularity."""
    b = cfg.backup
    if b.sync == "incremental":
        g = b.incremental.granularity
        k = max(1, g // cluster_size)
        bm = dirty_bitmap(-(-n // k), g, b.incremental.dirty, b.incremental.extent,
                          cfg.run.seed, sparse)
        if k == 1:
            return bm
        if isinstance(bm, SparseArray):  # each run of dirty granules, k units each
            out = SparseArray(n, bool, False)
            for s, e in bm.runs():
                out[s * k:min(n, e * k)] = True
            return out
        return np.repeat(bm, k)[:n]
    return full(n, bool, True, sparse)  # full; none: CBW guards everything, the job idles


def changed_mask(t0_gen, gen_at_end):
    """sync=none: the clusters the guest changed during the window."""
    return differs(gen_at_end, t0_gen)
