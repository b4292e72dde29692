"""Schemes: named recipes that wire nodes and jobs into a backup graph.

A scheme is the only place that knows the wiring. Each is one module that
registers a builder ``build(ctx) -> Graph``; ``ctx`` carries the environment,
the resolved config, the built devices, the active disk and the run counters.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

SCHEMES: dict[str, Callable] = {}


def register(name: str):
    def deco(fn):
        SCHEMES[name] = fn
        return fn
    return deco


@dataclass
class BuildContext:
    env: Any
    cfg: Any
    devices: dict
    active: Any
    stats: Any
    n_clusters: int
    cluster_size: int   # the unit of every node's per-cluster arrays
    disk_size: int
    seed: int
    job_cluster_size: int = 0  # the backup job's copy granularity (0: the unit)
    cbw_cluster_size: int = 0  # the CBW filter's copy granularity (0: the unit)
    host: Any = None  # devices/host.py: the software cost devices are wrapped in


@dataclass
class Graph:
    """A wired scheme. ``top`` is what the guest talks to; ``start`` begins the
    backup at t0 with the clusters it must copy; ``done`` fires when it ends;
    ``finish`` runs the scheme's own teardown, then removes the filter it put
    on top and gives the guest its disk back."""
    top: Any
    target: Any = None
    job: Any = None
    cache: Any = None
    filter: Any = None
    levels: list = field(default_factory=list)
    _start: Callable | None = None
    _finish: Callable | None = None
    done: Any = None

    def __post_init__(self):
        self.base = self.top  # the node the guest talked to before the backup

    def start(self, needed: np.ndarray) -> None:
        if self._start:
            self._start(self, needed)

    def finish(self) -> None:
        if self._finish:
            self._finish(self)
        if self.filter is not None:
            self.filter.deactivate()
        self.top = self.base


def build(name: str, ctx: BuildContext) -> Graph:
    return SCHEMES[name](ctx)


from . import none, legacy, fleecing_push  # noqa: E402,F401  (register)
from . import backup, fleecing_pull, fleecing_pull_2018, overlay_cor, overlay_commit  # noqa: E402,F401,E501
