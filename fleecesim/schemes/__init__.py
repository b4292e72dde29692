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

# --- which backup.* options each scheme honours --------------------------------
# Every scheme declares, in its own file, the ``backup.*`` keys it acts on
# (``register(name, options=...)``; a section name such as ``cache`` covers all
# its keys) and, for keys it does not act on, why (``why={key: reason}``; else
# the key's default reason below). A config that sets any other key to a
# non-default value is rejected (fleecesim/config/rules.py, ``BackupSpec.ACTS``):
# a user must never believe they measured an option that did nothing.
OPTIONS: dict[str, frozenset] = {}
WHY: dict[str, dict[str, str]] = {}

# Shared option groups. ``COPY``: what every scheme that copies t0 data has.
COPY = ("target", "min-cluster-size", "sync", "incremental")
BLOCK_COPY = ("max-workers", "max-chunk", "speed")  # QEMU >= 6 BackupPerf / job speed
TIERED_CACHE = ("cache", "lazy-discard")  # the seed's fleecing image (fleecing_push.tiered_cache)
CLIENT = ("client",)
# copy-before-write's own options (qapi BlockdevOptionsCbw, QEMU >= 7.1): only
# where the user creates the copy-before-write node (fleecing). blockdev-backup's
# internal filter gets neither (block/copy-before-write.c: bdrv_cbw_append), and
# 2018's write notifier failed the guest write (backup_before_write_notify).
CBW_OPTIONS = ("on-cbw-error", "cbw-timeout")
# blockdev-backup's job error policy (qapi BlockdevBackup on-source-error,
# on-target-error; fleecesim/error_policy.py): every scheme whose copier is a
# QEMU backup job. on-source-error only where the job's source can refuse a
# read: fleecing-push's snapshot view (a broken snapshot, EACCES).
JOB_ERROR = ("on-target-error", "resume-after")

DEFAULT_WHY = {
    "order": "its job copies in ascending order (QEMU's blockdev-backup has no ordering "
             "option); copy-ordering policies are for fleecing schemes",
    "discard-source": "read-once (QEMU's discard-source) frees copied clusters of the "
                      "job's source, which only fleecing-push's snapshot view can spare",
    "lazy-discard": "deferred guest discards are a property of the seed's fleecing image",
    "cache": "it has no fleecing cache",
    "client": "it has no external NBD client (only fleecing-pull and fleecing-pull-2018)",
    "overlay": "it has no overlay image (only overlay-cor and overlay-commit)",
    "window": "only sync=none uses it, and only legacy-backup and backup have sync=none",
    "max-workers": "its copy engine has no worker count",
    "max-chunk": "its copy engine has no chunk size",
    "min-cluster-size": "its copy engine has no min-cluster-size",
    "on-cbw-error": "its copy-before-write is blockdev-backup's internal filter "
                    "(bdrv_cbw_append passes no on-cbw-error: a failed copy fails the guest "
                    "write); on-cbw-error is for fleecing-push and fleecing-pull",
    "cbw-timeout": "its copy-before-write is blockdev-backup's internal filter, which has "
                   "no timeout; cbw-timeout is for fleecing-push and fleecing-pull",
    "x-perf": "x-perf (use-copy-range) is blockdev-backup's (QEMU >= 6.0): only the "
              "'backup' scheme",
    "on-source-error": "its job's reads never fail in this model (only fleecing-push's "
                       "snapshot view refuses reads, once the snapshot is broken: EACCES)",
    "on-target-error": "its copier is not a QEMU backup job (a pull scheme's is the external "
                       "NBD client, whose error handling is its own)",
    "resume-after": "its copier is not a QEMU backup job, so nothing pauses it on an error",
    "cbw-priority": "only for 'backup', where CBW and up to max-workers job copies share "
                    "one target queue (legacy-backup's job has one copy in flight: nothing "
                    "for CBW to overtake; fleecing CBW writes a local image)",
}


def register(name: str, *, options=(), why: dict[str, str] | None = None):
    """Register a scheme builder with the ``backup.*`` keys it honours."""
    def deco(fn):
        SCHEMES[name] = fn
        OPTIONS[name] = frozenset(options)
        WHY[name] = dict(why or {})
        return fn
    return deco


def option_error(scheme: str, key: str) -> str | None:
    """None if ``scheme`` honours ``backup.<key>`` (dotted), else one line saying why not."""
    parts = key.split(".")
    prefixes = [".".join(parts[:i]) for i in range(len(parts), 0, -1)]
    if any(p in OPTIONS[scheme] for p in prefixes):
        return None
    reason = next((d[p] for d in (WHY[scheme], DEFAULT_WHY) for p in prefixes if p in d),
                  "it does not use this option")
    return f"backup.{key}: not used by the {scheme!r} scheme: {reason}"
# --- end options ---------------------------------------------------------------


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
    _commit_check: Callable | None = None
    done: Any = None

    def __post_init__(self):
        self.base = self.top  # the node the guest talked to before the backup

    def start(self, needed: np.ndarray) -> None:
        if self._start:
            self._start(self, needed)

    def commit_check(self) -> int | None:
        """For schemes that commit an overlay down into the image below it: how
        many clusters that image does not hold as the overlay had them (data a
        commit lost). None: the scheme commits nothing."""
        return self._commit_check(self) if self._commit_check else None

    def finish(self) -> None:
        if self._finish:
            self._finish(self)
        if self.filter is not None:
            self.filter.deactivate()
        self.top = self.base


def build(name: str, ctx: BuildContext) -> Graph:
    return SCHEMES[name](ctx)


def backup_target(ctx: BuildContext, **kw):
    """The job's target node as ``backup.target.kind`` says: an image over NBD
    (nodes/target.py) or a Proxmox Backup Server (nodes/pbs.py)."""
    from ..nodes import BackupTarget
    t = ctx.cfg.backup.target
    dev = ctx.devices[t.device]
    if t.kind == "pbs":
        from ..nodes.pbs import PBSTarget
        return PBSTarget(ctx.env, dev, ctx.n_clusters, ctx.cluster_size, ctx.stats, t.pbs,
                         ctx.seed)
    return BackupTarget(ctx.env, dev, ctx.n_clusters, ctx.cluster_size, ctx.stats, **kw)


def target_done(target, done):
    """The event that ends the backup: ``done`` (the job's end), and for a
    target that finishes after the job (a PBS session's uploads and close)
    that target's own end."""
    finished = getattr(target, "finished", None)
    return finished(done) if finished is not None else done


from . import none, legacy, fleecing_push  # noqa: E402,F401  (register)
from . import backup, fleecing_pull, fleecing_pull_2018, overlay_cor, overlay_commit  # noqa: E402,F401,E501
from . import fleecing_push_2018  # noqa: E402,F401
