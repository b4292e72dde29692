"""Overlay images on a fast local device (Max Reitz's alternatives in the seed).

``TargetOverlay`` (overlay-commit): the backup writes into a local overlay whose
backing is the slow remote target; a live commit copies what was written down
into the target. It stores the content (generation per cluster) each write
carried, like any backup target, and tells its listener (the commit job) which
clusters became dirty.

``Overlay`` (overlay-cor): a local overlay put on top of the active disk at t0:
"slow source --> fast overlay --> COR node". Guest writes land in the overlay
(a partial write to an unallocated cluster first fills the rest of the cluster
from the backing, as qcow2 does); guest reads of unallocated clusters are
copied into the overlay on read (QEMU's copy-on-read filter only sets
BDRV_REQ_COPY_ON_READ on its reads, so it is folded in here as ``cor``). The
active disk node stays the authority on *content* (its generations are what
the guest sees through overlay + backing); the overlay only decides which
device serves a cluster. ``layer()`` is the overlay image alone (what a commit
reads) and ``no_cor()`` the same chain without copy-on-read (what the backup
job and CBW read).
"""
from __future__ import annotations

import numpy as np

from ..devices.base import LAST
from ..metrics import PATH_DIRECT, Level
from ..workloads.records import OP_DISCARD, OP_READ, OP_WRITE
from .base import REQ_ZERO, Node
from .target import UNWRITTEN


class TargetOverlay(Node):
    def __init__(self, env, device, n_clusters: int, cluster_size: int, stats):
        super().__init__(env, "target-overlay", cluster_size)
        self.device = device
        self.stats = stats
        self.gen = np.full(n_clusters, UNWRITTEN, dtype=np.uint32)
        self.zero = np.zeros(n_clusters, dtype=bool)
        self.alloc = np.zeros(n_clusters, dtype=bool)
        self.level = Level(env, "overlay_bytes")
        self.on_dirty = None  # callback(c0, c1), set by the scheme (the commit job)

    def zero_map(self, c0, c1):
        return self.zero[c0:c1]

    def peek(self, c0, c1):
        return self.gen[c0:c1].copy()

    def write(self, offset, length, data=None, flags=0, att=None):
        env = self.env
        zero = bool(flags & REQ_ZERO)
        end = self.device.submit(env.now, offset, 0 if zero else length, True)
        yield env.timeout(end - env.now)
        c0, c1 = self.clusters(offset, length)
        self.gen[c0:c1] = data
        self.zero[c0:c1] = zero
        if not zero:
            new = int((~self.alloc[c0:c1]).sum())
            self.alloc[c0:c1] = True
            self.level.add(new * self.cs)
            self.stats.local_write_bytes += length
        if self.on_dirty is not None:
            self.on_dirty(c0, c1)
        return PATH_DIRECT

    def read(self, offset, length, flags=0, att=None):
        env = self.env
        c0, c1 = self.clusters(offset, length)
        if not self.zero[c0:c1].all():
            end = self.device.submit(env.now, offset, length)
            yield env.timeout(end - env.now)
            self.stats.local_read_bytes += length
        return self.gen[c0:c1].copy()

    def clear(self) -> None:
        """The overlay is dropped once committed."""
        self.alloc[:] = False
        self.level.set(0)


class Overlay(Node):
    def __init__(self, env, device, backing, n_clusters: int, cluster_size: int, stats,
                 cor: bool = True):
        super().__init__(env, "overlay", cluster_size)
        self.device = device
        self.backing = backing  # the active disk (content authority, slow device)
        self.stats = stats
        self.cor = cor
        self.alloc = np.zeros(n_clusters, dtype=bool)
        self.level = Level(env, "overlay_bytes")
        self.on_write = None  # callback(c0, c1) while a commit runs
        # mirror's copy-mode=write-blocking while a commit runs: a guest write
        # also goes to the backing, synchronously, and dirties nothing, so the
        # commit converges whatever the guest does
        self.write_through = False
        self.image = None  # the backing's image (a DeviceWriter) that write-through writes
        # callable(c0, c1) -> events of the commit's copies in flight there: a
        # write-through write waits for them first (mirror's active_write_prepare ->
        # mirror_wait_on_conflicts), or a copy that read older data lands after it
        self.conflicts = None
        self.cor_bytes = 0
        self.cow_bytes = 0
        self.writes = 0          # guest writes and discards in flight here
        self._quiet_ev = None    # fires when ``writes`` drops to 0 (quiet())

    # ------------------------------------------------------------ content
    def zero_map(self, c0, c1):
        return self.backing.zero_map(c0, c1)

    def peek(self, c0, c1):
        return self.backing.peek(c0, c1)

    def _alloc(self, c0, c1) -> int:
        new = int((~self.alloc[c0:c1]).sum())
        if new:
            self.alloc[c0:c1] = True
            self.level.add(new * self.cs)
        return new

    # ------------------------------------------------------------ guest side
    def fast(self, op, offset, length, now):
        cs = self.cs
        c0 = offset // cs
        c1 = (offset + max(length, 1) + cs - 1) // cs
        if op == OP_READ:
            if self.alloc[c0:c1].all():
                return self.device.submit(now, offset, length)
            if not self.cor and not self.alloc[c0:c1].any():
                return self.backing.device.submit(now, offset, length)
            return None
        if op == OP_WRITE:
            if self.on_write is None and self.alloc[c0:c1].all():
                self.backing._written(offset, length)
                return self.device.submit(now, offset, length, True)
            return None
        if op == OP_DISCARD:
            return None
        return now

    def read(self, offset, length, flags=0, cor=None, att=None):
        env = self.env
        cs = self.cs
        cor = self.cor if cor is None else cor
        c0, c1 = self.clusters(offset, length)
        al = self.alloc[c0:c1]
        end = env.now
        if al.any():
            end = max(end, self.device.submit(env.now, offset, min(length, int(al.sum()) * cs)))
        if not al.all():
            zero = self.backing.zero_map(c0, c1)[~al]
            nbytes = int((~zero).sum()) * cs  # zero clusters need no read
            if nbytes:
                end = max(end, self.backing.device.submit(env.now, c0 * cs, nbytes))
            if cor:
                if nbytes:
                    # copy-on-read: the read waits for the overlay write, as in QEMU
                    yield env.timeout(end - env.now)
                    end = self.device.submit(env.now, c0 * cs, nbytes, True)
                    self.cor_bytes += nbytes
                    self.stats.local_write_bytes += nbytes
                self._alloc_unallocated(c0, c1, al)  # zero clusters: metadata only
        if att is not None:  # the last device request's (the other ran alongside)
            att.svc = LAST.service
        if end > env.now:
            yield env.timeout(end - env.now)
        return self.backing.peek(c0, c1)

    def _alloc_unallocated(self, c0, c1, al):
        idx = np.flatnonzero(~al) + c0
        new = idx.size
        self.alloc[idx] = True
        self.level.add(new * self.cs)

    def write(self, offset, length, data=None, flags=0, att=None):
        self.writes += 1
        path = yield from self._write(offset, length, att)
        self._written_out()
        return path

    def _written_out(self) -> None:
        self.writes -= 1
        if not self.writes and self._quiet_ev is not None:
            ev, self._quiet_ev = self._quiet_ev, None
            ev.succeed()

    def quiet(self):
        """Wait until no guest write or discard is in flight here (a drain)."""
        while self.writes:
            if self._quiet_ev is None:
                self._quiet_ev = self.env.event()
            yield self._quiet_ev

    def _write(self, offset, length, att):
        env = self.env
        cs = self.cs
        c0, c1 = self.clusters(offset, length)
        # a request keeps the mode it entered with (the commit may end meanwhile)
        through, image = self.write_through, self.image
        al = self.alloc[c0:c1]
        fill = 0  # bytes of partially written, unallocated clusters to fill from the backing
        if not al.all():
            for c in {c0, c1 - 1}:
                if not self.alloc[c]:
                    lo, hi = max(offset, c * cs), min(offset + length, (c + 1) * cs)
                    if hi - lo < cs and not self.backing.zero[c]:
                        fill += cs - (hi - lo)
        if fill:
            end = self.backing.device.submit(env.now, c0 * cs, fill)
            yield env.timeout(end - env.now)
            self.stats.local_read_bytes += fill
            self.stats.local_write_bytes += fill
            self.cow_bytes += fill
        if through:
            yield from self._wait_conflicts(c0, c1)
        # the content changes now (generation bumped): a running commit learns it now
        self.backing._written(offset, length)
        self._alloc(c0, c1)
        if through:
            if image is not None:
                image.record(c0, c1, self.backing.gen[c0:c1])
        elif self.on_write is not None:
            self.on_write(c0, c1)
        end = self.device.submit(env.now, offset, length + fill, True)
        if att is not None:
            att.svc = LAST.service
        if through:
            end = max(end, self.backing.device.submit(env.now, offset, length, True))
            self.stats.local_write_bytes += length
            if att is not None:  # both at once: the slower one's service
                att.svc = max(att.svc, LAST.service)
        yield env.timeout(end - env.now)
        return PATH_DIRECT

    def _wait_conflicts(self, c0, c1):
        while self.conflicts is not None:
            evs = self.conflicts(c0, c1)
            if not evs:
                return
            yield self.env.all_of(evs)

    def discard(self, offset, length, flags=0, att=None):
        self.writes += 1
        path = yield from self._discard(offset, length, att)
        self._written_out()
        return path

    def _discard(self, offset, length, att):
        """The active disk node bumps the generation of every cluster a discard
        touches (partly covered ones too: their content is taken to change), so
        the overlay takes all of them (zero clusters, metadata only) and a
        running commit copies them all; with write-blocking the discard is
        mirrored to the backing at once, as mirror does (bdrv_mirror_top_pdiscard
        -> bdrv_mirror_top_do_write, MIRROR_METHOD_DISCARD)."""
        env = self.env
        through, image = self.write_through, self.image
        c0, c1 = self.clusters(offset, length)
        if through:
            yield from self._wait_conflicts(c0, c1)
        self.backing._discarded(offset, length)
        self._alloc(c0, c1)
        end = self.device.submit(env.now, offset, 0, True)
        if att is not None:
            att.svc = LAST.service
        if through:
            if image is not None:
                image.record(c0, c1, self.backing.gen[c0:c1])
            end = max(end, self.backing.device.submit(env.now, offset, 0, True))
        elif self.on_write is not None:
            self.on_write(c0, c1)
        yield env.timeout(end - env.now)
        return PATH_DIRECT

    # ------------------------------------------------------------ views
    def no_cor(self) -> "Node":
        return _NoCOR(self)

    def layer(self) -> "Node":
        return _Layer(self)

    def clear(self) -> None:
        self.alloc[:] = False
        self.level.set(0)


class _NoCOR(Node):
    """The overlay chain without copy-on-read (the backup job's and CBW's reads);
    reads served by the overlay device count as local reads."""

    def __init__(self, ov: Overlay):
        super().__init__(ov.env, "overlay(no-cor)", ov.cs)
        self.ov = ov

    def zero_map(self, c0, c1):
        return self.ov.zero_map(c0, c1)

    def peek(self, c0, c1):
        return self.ov.peek(c0, c1)

    def read(self, offset, length, flags=0, att=None):
        ov = self.ov
        c0, c1 = self.clusters(offset, length)
        k = int(ov.alloc[c0:c1].sum()) * self.cs
        ov.stats.local_read_bytes += min(k, length)
        ov.stats.source_read_bytes += length - min(k, length)
        return (yield from ov.read(offset, length, cor=False))


class _Layer(Node):
    """The overlay image alone: what a commit job reads."""

    def __init__(self, ov: Overlay):
        super().__init__(ov.env, "overlay-layer", ov.cs)
        self.ov = ov

    def zero_map(self, c0, c1):
        return np.zeros(c1 - c0, dtype=bool)  # a commit copies what is allocated

    def peek(self, c0, c1):
        return self.ov.peek(c0, c1)

    def read(self, offset, length, flags=0, att=None):
        env = self.env
        ov = self.ov
        end = ov.device.submit(env.now, offset, length)
        yield env.timeout(end - env.now)
        ov.stats.local_read_bytes += length
        c0, c1 = self.clusters(offset, length)
        return ov.peek(c0, c1)


class DeviceWriter(Node):
    """Writes to a device and records the generation each write carried: the
    active disk's *image* while an overlay sits on top of it (overlay-cor).
    There the active disk node's generations are what the guest sees through
    overlay + backing; ``gen`` is what is really on the disk image, so after
    the commit the scheme can check that the image holds every guest write
    (``gen``: the image content at t0, owned by the scheme)."""

    def __init__(self, env, device, cluster_size: int, stats, gen=None):
        super().__init__(env, "device-writer", cluster_size)
        self.device = device
        self.stats = stats
        self.gen = gen

    def record(self, c0: int, c1: int, data) -> None:
        if self.gen is not None:
            self.gen[c0:c1] = data

    def write(self, offset, length, data=None, flags=0, att=None):
        env = self.env
        zero = bool(flags & REQ_ZERO)
        end = self.device.submit(env.now, offset, 0 if zero else length, True)
        yield env.timeout(end - env.now)
        self.record(*self.clusters(offset, length), data)
        if not zero:
            self.stats.local_write_bytes += length
        return PATH_DIRECT
