"""Building blocks for copy-ordering policies: *passes*, each yielding runs of
needed clusters of one class, tried in priority order by ``Passes``.

Per-cluster state comes as numpy arrays (the copy bitmap, the cache's ``where``
array, a t0 zero map); nothing here walks nodes or keeps per-cluster objects.
A pass returns ``(c0, c1)`` (clusters all needed, at most ``max_clusters``) or
None when it has nothing right now.
"""
from __future__ import annotations

import numpy as np

from ..nodes.cache import NOT_CACHED


def zero_state(node, n: int):
    """``node``'s whole zero map now (a copy, of the run's array kind)."""
    f = getattr(node, "zero_state", None)
    return f() if f is not None else node.zero_map(0, n).copy()


def peek_state(node, n: int):
    """``node``'s whole content (generations) now (a copy, of the run's array kind)."""
    f = getattr(node, "peek_state", None)
    return f() if f is not None else node.peek(0, n)


def cache_view(graph):
    """The fleecing cache's state for policies (``where``, tier codes, version), or None."""
    cache = getattr(graph, "cache", None)
    view = getattr(cache, "view", None)
    return view() if view else None


def _run(nd, cls, c, max_clusters):
    """End of the run from ``c`` of clusters needed and in the class."""
    e = min(c + max_clusters, len(nd))
    r = nd[c:e] if cls is None else nd[c:e] & cls(c, e)
    return c + (len(r) if r.all() else int(r.argmin()))


class Ascending:
    """Ascending order over needed clusters in a class (``cls(a, b)`` -> bool
    mask of [a, b), or None for all). A class clusters can only leave: one sweep."""

    def __init__(self, cls=None):
        self.cls = cls
        self.cursor = 0

    def rewind(self):
        self.cursor = 0

    def next_run(self, copier, max_clusters):
        nd, n, start, window = copier.needed, copier.n, self.cursor, 65536
        if self.cls is None and type(nd) is not np.ndarray:  # sparse state (sparse.py)
            start = nd.first(start, n) if start < n else -1
            if start < 0:
                self.cursor = n
                return None
        while start < n:
            end = min(start + window, n)
            seg = nd[start:end] if self.cls is None else nd[start:end] & self.cls(start, end)
            i = int(seg.argmax())
            if seg[i]:
                c = start + i
                c1 = _run(nd, self.cls, c, max_clusters)
                self.cursor = c1
                return c, c1
            start = end
            window = min(window * 4, 1 << 24)
        self.cursor = n
        return None


class InTier:
    """Needed clusters cached in one tier, ascending. Clusters enter a tier at
    any time, so the candidate list is rebuilt (one vectorised scan) when it is
    used up and the cache has placed clusters since the last scan."""

    def __init__(self, view, tier: str):
        self.where = view["where"] if view else None
        self.code = view[tier] if view else None
        self.version = view["version"] if view else None
        self.seen = -1
        self.q = np.empty(0, dtype=np.int64)
        self.qi = 0

    def rewind(self):
        self.seen = -1
        self.qi = len(self.q)

    def next_run(self, copier, max_clusters):
        if self.code is None:
            return None
        nd, where, code = copier.needed, self.where, self.code
        while True:
            q = self.q
            while self.qi < len(q):
                c = int(q[self.qi])
                self.qi += 1
                if nd[c] and where[c] == code:
                    c1 = _run(nd, lambda a, b: where[a:b] == code, c, max_clusters)
                    self.qi = int(np.searchsorted(q, c1))
                    return c, c1
            v = self.version()
            if v == self.seen:
                return None
            self.seen = v
            if isinstance(where, np.ndarray):
                self.q = np.flatnonzero(nd & (where == code))
            else:  # sparse state: only cached clusters differ from NOT_CACHED
                q = where.nonfill(0, len(where), NOT_CACHED)
                self.q = q[(where[q] == code) & nd[q]]
            self.qi = 0
            if not self.q.size:
                return None


class Passes:
    """A policy made of passes tried in order on every call; the last is usually
    plain ascending over everything still needed."""

    passes: list

    def bind(self, copier, graph=None) -> None:
        self.passes = self.make_passes(copier, graph)

    def make_passes(self, copier, graph):
        raise NotImplementedError

    def rewind(self) -> None:
        for p in self.passes:
            p.rewind()

    def next_run(self, copier, max_clusters):
        for p in self.passes:
            r = p.next_run(copier, max_clusters)
            if r is not None:
                return r
        return None
