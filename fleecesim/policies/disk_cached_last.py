"""``disk-cached-last`` (seed 7c): copy clusters not on the disk tier first.

A cluster already saved on the disk tier has cost all the I/O it can (CBW
read + local write); one still only on the active disk can still cost a CBW.
Copying the latter first (ascending), and the disk-cached ones at the end,
cuts CBW when disk space is not the concern. RAM-cached clusters count as
"not disk-cached" (the seed's wording).
"""
from __future__ import annotations

from . import register_ordering
from ._passes import Ascending, Passes, cache_view


@register_ordering("disk-cached-last")
class DiskCachedLast(Passes):
    needs = frozenset({"tier"})  # what it must know per cluster (policies/__init__.py)

    def make_passes(self, copier, graph):
        view = cache_view(graph)
        if view is None or view["disk"] is None:
            return [Ascending()]
        where, disk = view["where"], view["disk"]
        return [Ascending(lambda a, b: where[a:b] != disk), Ascending()]
