"""``ram-first`` (seed 7a): copy RAM-cached clusters first, then ascending.

Copying what sits in the RAM tier first unloads it (with ``discard-source``
each copied cluster is freed at once), so later CBW data finds room in RAM
instead of spilling to the disk tier, and those copies read from RAM, not from
a device. Without a RAM tier it is ``ascending``.
"""
from __future__ import annotations

from . import register_ordering
from ._passes import Ascending, InTier, Passes, cache_view


@register_ordering("ram-first")
class RamFirst(Passes):
    needs = frozenset({"tier"})  # what it must know per cluster (policies/__init__.py)

    def make_passes(self, copier, graph):
        return [InTier(cache_view(graph), "ram"), Ascending()]
