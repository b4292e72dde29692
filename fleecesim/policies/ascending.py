"""``ascending``: QEMU's order — the next set bit at or after a cursor."""
from __future__ import annotations

from . import register_ordering


@register_ordering("ascending")
class Ascending:
    needs = frozenset()  # what it must know per cluster (policies/__init__.py)

    def __init__(self):
        self.cursor = 0

    def bind(self, copier, graph=None) -> None:
        """Called once when the job is built (policies that need cache state use it)."""

    def rewind(self) -> None:
        self.cursor = 0

    def next_run(self, copier, max_clusters: int):
        c = copier.next_needed(self.cursor)
        if c < 0:
            return None
        c1 = copier.run_end(c, max_clusters)
        self.cursor = c1
        return c, c1
