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
    ``extent`` (a SparseArray with ``sparse``: the same bits)."""
    want = int(round(dirty * n))
    bm = full(n, bool, False, sparse)
    if want <= 0:
        return bm
    if want >= n:
        bm[:] = True
        return bm
    rng = stream(seed, "backup.dirty-bitmap")
    mean = max(1.0, extent / cluster_size)
    p = 1.0 / mean
    have = 0
    while have < want:
        k = max(16, int((want - have) / mean) + 16)
        starts = rng.integers(0, n, size=k)
        lens = rng.geometric(p, size=k)
        for s, ln in zip(starts.tolist(), lens.tolist()):
            e = min(n, s + ln)
            seg = bm[s:e]
            new = int(e - s - np.count_nonzero(seg))
            if have + new > want:  # trim the last extent to the exact fraction
                free = np.flatnonzero(~seg)[:want - have]
                bm[free + s] = True
                have = want
                break
            bm[s:e] = True
            have += new
            if have >= want:
                break
    return bm


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
