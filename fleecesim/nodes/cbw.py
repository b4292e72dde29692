"""The copy-before-write filter (QEMU's copy-before-write node).

Sits on top of the active disk (``file``). Before a guest write or discard
lands on a cluster the backup still needs, the old data is copied through a
shared BlockCopy (to the fleecing cache for fleecing; straight to the backup
target for the legacy write-notifier backup, which is the same filter with a
different copy target). It also serves the snapshot API that the snapshot view
calls: read a cluster from the cache if saved, else from the active disk —
and a guest write waits for such reads of its clusters ("frozen" reads).
"""
from __future__ import annotations

import numpy as np

from ..metrics import PATH_CBW, PATH_DIRECT, PATH_ERROR, PATH_WAIT
from ..workloads.records import OP_DISCARD, OP_READ
from .base import Node


class CBWFilter(Node):
    def __init__(self, env, file, copier, stats, cluster_size: int, *, cache=None,
                 on_cbw_error: str = "break-guest-write", cbw_timeout: float = 0.0):
        super().__init__(env, "copy-before-write", cluster_size)
        self.file = file
        self.copier = copier
        self.cache = cache  # the copy target when it is a fleecing cache (snapshot API)
        self.stats = stats
        self.on_cbw_error = on_cbw_error
        self.cbw_timeout = cbw_timeout
        self.active = True
        self.broken = False
        self.frozen: dict[int, int] = {}
        self._unfrozen = env.event()

    # ------------------------------------------------------------ guest side
    def fast(self, op, offset, length, now):
        if op == OP_READ or not self.active:
            return self.file.fast(op, offset, length, now)
        cs = self.cs
        c0 = offset // cs
        c1 = (offset + max(length, 1) + cs - 1) // cs
        if self.copier.pending(c0, c1) or (self.frozen and self._is_frozen(c0, c1)):
            return None
        return self.file.fast(op, offset, length, now)

    def read(self, offset, length, flags=0):
        return (yield from self.file.read(offset, length, flags))

    def write(self, offset, length, data=None, flags=0):
        return (yield from self._guarded(False, offset, length, data, flags))

    def discard(self, offset, length, flags=0):
        return (yield from self._guarded(True, offset, length, None, flags))

    def _guarded(self, discard, offset, length, data, flags):
        path = PATH_DIRECT
        if self.active:
            c0, c1 = self.clusters(offset, length)
            if self.copier.pending(c0, c1):
                ok, copied, waited = yield from self._copy_before_write(c0, c1)
                if copied:
                    path = PATH_CBW
                    self.stats.cbw_count += 1
                    self.stats.cbw_bytes += copied
                elif waited:
                    path = PATH_WAIT
                    self.stats.cbw_waits += 1
                if not ok:
                    self.stats.cbw_errors += 1
                    if self.on_cbw_error == "break-guest-write":
                        self.stats.guest_errors += 1
                        return PATH_ERROR
                    self.break_snapshot()
            while self.frozen and self._is_frozen(c0, c1):
                yield self._unfrozen
        if discard:
            yield from self.file.discard(offset, length, flags)
        else:
            yield from self.file.write(offset, length, data, flags)
        return path

    def _copy_before_write(self, c0, c1):
        if not self.cbw_timeout:
            return (yield from self.copier.copy(c0, c1))
        env = self.env
        proc = env.process(self.copier.copy(c0, c1))
        timer = env.timeout(self.cbw_timeout)
        yield proc | timer
        if proc.triggered:
            return proc.value
        return False, 0, False  # the copy goes on in the background; the write gives up

    def break_snapshot(self) -> None:
        """on-cbw-error=break-snapshot: stop CBW, the guest goes on, snapshot reads fail."""
        if not self.broken:
            self.broken = True
            self.active = False
            self.stats.snapshot_broken = True
            self.stats.snapshot_broken_at = self.env.now
            self.stats.events.append((self.env.now, "snapshot broken"))

    def deactivate(self) -> None:
        """The filter is removed from the graph (the backup ended)."""
        self.active = False

    # ------------------------------------------------------------ snapshot API
    def _is_frozen(self, c0, c1) -> bool:
        fr = self.frozen
        return any(c in fr for c in range(c0, c1))

    def _freeze(self, cl) -> None:
        fr = self.frozen
        for c in cl:
            fr[c] = fr.get(c, 0) + 1

    def _thaw(self, cl) -> None:
        fr = self.frozen
        for c in cl:
            k = fr[c] - 1
            if k:
                fr[c] = k
            else:
                del fr[c]
        ev, self._unfrozen = self._unfrozen, self.env.event()
        ev.succeed()

    def _cached(self, c0, c1) -> np.ndarray:
        if self.cache is None:
            return np.zeros(c1 - c0, dtype=bool)
        return self.cache.cached_mask(c0, c1)

    def snapshot_zero_map(self, c0, c1):
        cached = self._cached(c0, c1)
        z = self.file.zero_map(c0, c1).copy()
        if cached.any():
            z[cached] = self.cache.zero_map(c0, c1)[cached]
        return z

    def snapshot_peek(self, c0, c1):
        cached = self._cached(c0, c1)
        g = self.file.peek(c0, c1)
        if cached.any():
            g[cached] = self.cache.peek(c0, c1)[cached]
        return g

    def snapshot_read(self, offset, length):
        """Read the point-in-time content; None if the snapshot is broken."""
        if self.broken:
            return None
        c0, c1 = self.clusters(offset, length)
        cs = self.cs
        cached = self._cached(c0, c1)
        if not cached.any():
            cl = range(c0, c1)
            self._freeze(cl)
            data = yield from self.file.read(offset, length)
            self._thaw(cl)
            self.stats.source_read_bytes += length
        elif cached.all():
            data = yield from self.cache.read(offset, length)
        else:
            data = np.empty(c1 - c0, dtype=np.uint32)
            unc = np.flatnonzero(~cached) + c0
            self._freeze(unc.tolist())
            for a, b in _runs(unc):
                data[a - c0:b - c0] = yield from self.file.read(a * cs, (b - a) * cs)
                self.stats.source_read_bytes += (b - a) * cs
            self._thaw(unc.tolist())
            for a, b in _runs(np.flatnonzero(cached) + c0):
                data[a - c0:b - c0] = yield from self.cache.read(a * cs, (b - a) * cs)
        if self.broken:
            return None
        return data

    def snapshot_discard(self, offset, length):
        """The reader is done with these clusters: drop them from the cache and
        from the copy bitmap, so later guest writes need no CBW (read-once)."""
        c0, c1 = self.clusters(offset, length)
        nd = self.copier.needed[c0:c1]
        k = int(nd.sum())
        if k:
            nd[:] = False
            self.copier.remaining -= k
        if self.cache is not None:
            self.cache.drop(c0, c1)
        return PATH_DIRECT
        yield  # metadata only


def _runs(idx: np.ndarray):
    """Contiguous runs [a, b) of a sorted index array."""
    if idx.size == 0:
        return []
    brk = np.flatnonzero(np.diff(idx) != 1) + 1
    starts = np.concatenate(([0], brk))
    ends = np.concatenate((brk, [idx.size]))
    return [(int(idx[s]), int(idx[e - 1]) + 1) for s, e in zip(starts, ends)]
