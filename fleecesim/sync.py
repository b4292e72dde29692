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


def dirty_bitmap(n: int, cluster_size: int, dirty: float, extent: int, seed: int) -> np.ndarray:
    """A seeded dirty bitmap of ``round(dirty * n)`` clusters in extents of mean ``extent``."""
    want = int(round(dirty * n))
    bm = np.zeros(n, dtype=bool)
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
            new = int(e - s - seg.sum())
            if have + new > want:  # trim the last extent to the exact fraction
                free = np.flatnonzero(~seg)[:want - have]
                seg[free] = True
                have = want
                break
            seg[:] = True
            have += new
            if have >= want:
                break
    return bm


def needed_at_t0(cfg, n: int, cluster_size: int) -> np.ndarray:
    """The copy bitmap the backup starts with (bool per cluster of ``cluster_size``,
    the model's unit). An incremental bitmap is drawn at its own granularity."""
    b = cfg.backup
    if b.sync == "incremental":
        g = b.incremental.granularity
        k = max(1, g // cluster_size)
        bm = dirty_bitmap(-(-n // k), g, b.incremental.dirty, b.incremental.extent,
                          cfg.run.seed)
        return np.repeat(bm, k)[:n] if k > 1 else bm
    return np.ones(n, dtype=bool)  # full; none: CBW guards everything, the job idles


def changed_mask(t0_gen: np.ndarray, gen_at_end: np.ndarray) -> np.ndarray:
    """sync=none: the clusters the guest changed during the window."""
    return gen_at_end != t0_gen
