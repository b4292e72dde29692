"""``disk-cached-first`` (seed 7d): RAM-cached first, then disk-cached, then ascending.

When local disk space is the limit, copying (and, with ``discard-source``,
freeing) what the disk tier holds right after unloading RAM keeps the fleecing
image small, at the price of copying clusters that can no longer cost a CBW.
"""
from __future__ import annotations

from . import register_ordering
from ._passes import Ascending, InTier, Passes, cache_view


@register_ordering("disk-cached-first")
class DiskCachedFirst(Passes):
    needs = frozenset({"tier"})  # what it must know per cluster (policies/__init__.py)

    def make_passes(self, copier, graph):
        view = cache_view(graph)
        return [InTier(view, "ram"), InTier(view, "disk"), Ascending()]
