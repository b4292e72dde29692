"""``hot-first`` (our own): copy first the clusters the guest wrote most before t0.

Rationale: a guest that rewrote a cluster often in the recent past is likely
to write it again soon. Every cluster the backup copies before the guest's
next write to it is a CBW that never happens (with ``discard-source``, which
drops it from the CBW bitmap), so neither the guest's write latency nor the
fleecing cache pays for it. The heat signal is what QEMU would have as a dirty
bitmap / write counter over the time before the backup; here it is the
snapshot's generation at t0 (how many times the guest wrote each cluster since
the run began, i.e. during warm-up). Hot clusters go hottest first, ties
ascending; a run extends over contiguous hot clusters only; then ascending.

Cost: hot clusters are scattered, so the first pass copies small runs (more
requests per byte on the target) — the table shows whether the CBWs saved pay
for that.
"""
from __future__ import annotations

import numpy as np

from . import register_ordering
from ._passes import Ascending, Passes, peek_state


class _Hot:
    def __init__(self, heat):
        if isinstance(heat, np.ndarray):
            heat = heat.astype(np.int64)
            hot = np.flatnonzero(heat)
        else:  # sparse state: the clusters written before t0 are its exceptions
            hot = heat.nonfill(0, len(heat), 0)
        self.order = hot[np.argsort(-heat[hot].astype(np.int64), kind="stable")]
        self.heat = heat
        self.i = 0

    def rewind(self):
        self.i = 0

    def next_run(self, copier, max_clusters):
        nd, order, heat = copier.needed, self.order, self.heat
        while self.i < len(order):
            c = int(order[self.i])
            self.i += 1
            if nd[c]:
                e = min(c + max_clusters, copier.n)
                r = nd[c:e] & (heat[c:e] > 0)
                return c, c + (len(r) if r.all() else int(r.argmin()))
        return None


@register_ordering("hot-first")
class HotFirst(Passes):
    needs = frozenset({"heat"})  # what it must know per cluster (policies/__init__.py)

    def make_passes(self, copier, graph):
        if getattr(copier.source, "peek", None) is None:
            return [Ascending()]
        return [_Hot(peek_state(copier.source, copier.n)), Ascending()]
