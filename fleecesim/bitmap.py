"""Per-unit bitmaps at a coarser copy granularity."""
from __future__ import annotations

import numpy as np

try:  # numpy's C function itself: np.count_nonzero's Python wrapper costs more
    from numpy._core.multiarray import count_nonzero  # than counting a chunk's few clusters
except ImportError:  # numpy < 2
    try:
        from numpy.core.multiarray import count_nonzero
    except ImportError:
        count_nonzero = np.count_nonzero


def widen(mask: np.ndarray, k: int, all_: bool = False) -> np.ndarray:
    """A per-unit mask made uniform over aligned groups of ``k`` units (the last
    group may be short): a group is set if any unit is set, or with ``all_`` if
    every unit is. ``mask`` must start at a group boundary."""
    if not isinstance(mask, np.ndarray):  # a SparseArray (sparse.py): page by page
        return mask.widen(k, all_)
    n = len(mask)
    if k <= 1 or n == 0:
        return mask.copy()
    pad = -n % k
    m = np.concatenate([mask, np.full(pad, all_, dtype=bool)]) if pad else mask
    g = m.reshape(-1, k)
    g = g.all(axis=1) if all_ else g.any(axis=1)
    return np.repeat(g, k)[:n]
