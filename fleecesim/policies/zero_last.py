"""``zero-last`` (seed 7b): copy data clusters first, zero clusters last.

A zero (unallocated) cluster costs the backup no read (block status tells it,
so it becomes a write-zeroes on the target) and a CBW of it stores only a
"zero" mark, no data. So copying it early buys nothing, while each data
cluster copied early can spare a CBW (with ``discard-source``) and its cache
space. The zero map is the snapshot's at t0 (it cannot change for clusters the
backup still needs).
"""
from __future__ import annotations

from . import register_ordering
from ._passes import Ascending, Passes, zero_state


@register_ordering("zero-last")
class ZeroLast(Passes):
    needs = frozenset({"zero"})  # what it must know per cluster (policies/__init__.py)

    def make_passes(self, copier, graph):
        zero0 = zero_state(copier.source, copier.n)
        return [Ascending(lambda a, b: ~zero0[a:b]), Ascending()]
