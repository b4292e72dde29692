"""The copy-before-write filter (QEMU's copy-before-write node).

Sits on top of the active disk (``file``). Before a guest write or discard
lands on a cluster the backup still needs, the old data is copied through a
shared BlockCopy (to the fleecing cache for fleecing; straight to the backup
target for the legacy write-notifier backup, which is the same filter with a
different copy target). It also serves the snapshot API that the snapshot view
calls: read a cluster from the cache if saved, else from the active disk —
and a guest write waits for such reads of its clusters ("frozen" reads).

Granularity: the filter copies whole clusters of its copier's granularity
(``copier.k`` units): a guest request is widened to them first, as
block/copy-before-write.c: cbw_do_copy_before_write aligns to
block_copy_cluster_size(). A snapshot discard is narrowed to whole clusters
(cbw_co_pdiscard_snapshot aligns the start up and the end down).

Access bitmap (``access``, fleecing schemes): the snapshot is readable only
where the sync bitmap had a bit and the reader has not discarded it; any
other read fails (cbw_snapshot_read_lock: -EACCES), as do all snapshot reads
once the snapshot is broken (``snapshot_error``).
"""
from __future__ import annotations

import numpy as np

from ..bitmap import count_nonzero, widen
from ..error_policy import ETIMEDOUT, node_errno
from ..devices.base import LAST
from ..metrics import (A_CACHE_WRITE, A_CBW_READ, A_FROZEN, PATH_CBW, PATH_DIRECT, PATH_ERROR,
                       PATH_WAIT, Attr)
from ..workloads.records import OP_DISCARD, OP_READ
from .base import Node, at, call_at, drive
from .cache import NOT_CACHED, ZERO

# np.count_nonzero: ~6x cheaper than .any()/.all()/.sum() on a request's few
# clusters (no ufunc reduction machinery); the same answers.
cnz = count_nonzero


def _all(m) -> bool:
    return cnz(m) == len(m)


class CBWFilter(Node):
    def __init__(self, env, file, copier, stats, cluster_size: int, *, cache=None,
                 on_cbw_error: str = "break-guest-write", cbw_timeout: float = 0.0,
                 cor: bool = False, serve_reads: bool = False, lazy_discard: bool = False,
                 wanted=None, access=None, nested: bool = False):
        super().__init__(env, "copy-before-write", cluster_size)
        self.file = file
        self.copier = copier
        self.cache = cache  # the copy target when it is a fleecing cache (snapshot API)
        self.stats = stats
        self.on_cbw_error = on_cbw_error
        self.cbw_timeout = cbw_timeout
        self.active = True
        self.broken = False
        self.frozen: list[tuple[int, int]] = []  # cluster ranges being read from the file (a multiset)
        self._unfrozen = env.event()
        # --- tiered fleecing cache: RAM tier, copy-on-read, reads served from RAM ---
        has_ram = cache is not None and getattr(cache, "ram", None) is not None
        self.cor = cor and has_ram                  # copy-on-read, BDRV_REQ_UNNECESSARY
        self.serve_reads = serve_reads and has_ram  # guest reads of unchanged RAM clusters
        self._plain_reads = not (self.cor or self.serve_reads)
        self.lazy_discard = lazy_discard
        self.wanted = wanted  # the snapshot reader's bitmap (still to be read), if known
        self.deferred: list = []  # (offset, length, generations when deferred)
        self.k = copier.k          # units per CBW cluster
        self.n = copier.n
        # snapshot-access's access bitmap (None: no snapshot API limits, as 2018)
        self.access = access.copy() if access is not None else None
        # ``nested``: this filter guards an image another filter copies into
        # (fleecing-push-2018: job 2's write notifier on the scratch image,
        # passed by job 1's copy-before-write writes, block/io.c
        # bdrv_aligned_pwritev -> before-write notifiers). Where the time of its
        # own copy went (job 2's copy to the remote target), per write offset,
        # for the guest write whose copy wrote here: that part of the guest's
        # wait is the remote's, not the scratch image's (_take_nested).
        self.nested_att: dict[int, list] | None = {} if nested else None
        self._below = getattr(copier.target, "nested_att", None)  # my copies' target's

    # ------------------------------------------------------------ guest side
    def fast(self, op, offset, length, now):
        if not self.active or (op == OP_READ and self._plain_reads):
            return self.file.fast(op, offset, length, now)
        cs = self.cs
        c0 = offset // cs
        c1 = (offset + max(length, 1) + cs - 1) // cs
        if self.k > 1:
            c0, c1 = self._widen(c0, c1)
        if op == OP_READ:
            return self._fast_read(offset, length, c0, c1, now)
        if self.cache is not None and self.cache.clean:
            self._absorb(c0, c1)
        if self.copier.pending(c0, c1):
            if op == OP_DISCARD and self.lazy_discard:
                self._defer(offset, length, c0, c1)
                return now
            return None
        if self.frozen and self._is_frozen(c0, c1):
            return None
        return self.file.fast(op, offset, length, now)

    def read(self, offset, length, flags=0, att=None):
        if self.active and not self._plain_reads:
            c0, c1 = self.span(offset, length)
            if self.serve_reads and self.cache.ram_clean_all(c0, c1):
                self.stats.ram_read_hits += 1
                return (yield from self.cache.serve(offset, length, att=att))
            if self.cor and self._cor_mask(c0, c1) is not None:
                data = yield from self.file.read(offset, length, flags, att=att)
                self._cor(c0, c1)  # stored once the guest's read has it, never before
                return data
        return (yield from self.file.read(offset, length, flags, att=att))

    def span(self, offset, length) -> tuple[int, int]:
        """Units of the whole CBW clusters a byte range touches."""
        c0, c1 = self.clusters(offset, length)
        return self._widen(c0, c1) if self.k > 1 else (c0, c1)

    def _widen(self, c0, c1) -> tuple[int, int]:
        k = self.k
        return c0 // k * k, min(self.n, -(-c1 // k) * k)

    # ------------------------------------------------------------ tiered-cache helpers
    def _fast_read(self, offset, length, c0, c1, now):
        if self.serve_reads and self.cache.ram_clean_all(c0, c1):
            self.stats.ram_read_hits += 1
            return self.cache.fast(OP_READ, offset, length, now)
        end = self.file.fast(OP_READ, offset, length, now)
        if end is not None and self.cor and self._cor_mask(c0, c1) is not None:
            # stored when the read completes: the data is not there before
            ev = self.env.timeout(end - self.env.now)
            ev.callbacks.append(lambda _ev: self._cor(c0, c1))
        return end

    def _cor_mask(self, c0, c1):
        """Clusters of [c0, c1) copy-on-read would store now (needed, not cached,
        not zero, still wanted by the reader; whole CBW clusters), or None."""
        nd = self.copier.needed
        if c1 - c0 == 1:
            if not nd[c0] or (self.wanted is not None and not self.wanted[c0]):
                return None
        elif not cnz(nd[c0:c1]):
            return None
        m = nd[c0:c1] & ~self.cache.cached_mask(c0, c1) & ~self.file.zero_map(c0, c1)
        if self.wanted is not None:
            m &= self.wanted[c0:c1]
        if self.k > 1:
            m = widen(m, self.k, all_=True)
        return m if m.any() else None

    def _cor(self, c0, c1) -> None:
        """Seed 1: a guest read of needed, uncached clusters also stores them in
        the RAM tier if it has room (dropped otherwise; the read never waits).
        Called when the read has completed, so nothing is visible early; bits
        still set in the copy bitmap then mean the guest has not written the
        cluster since t0, so the data read is its t0 content."""
        if not self.active:
            return
        m = self._cor_mask(c0, c1)
        if m is not None:
            self.cache.admit(c0, c1, m, self.file.peek(c0, c1))

    def _absorb(self, c0, c1) -> None:
        """Seed 4: a guest write to clusters cached unchanged needs no copy; they
        leave the copy bitmap and are marked changed."""
        m = self.cache.clean_mask(c0, c1)
        if c1 - c0 == 1:
            if not m[0]:
                return
        elif not m.any():
            return
        nd = self.copier.needed[c0:c1]
        m &= nd
        if self.k > 1:  # a whole CBW cluster or nothing
            m = widen(m, self.k, all_=True)
        k = int(m.sum())
        if k:
            self.copier.needed[c0:c1] = nd & ~m  # a slice of sparse state is a copy
            self.copier.remaining -= k
            self.cache.mark_changed(c0, c1, m)
            self.stats.cbw_absorbed += 1

    def _defer(self, offset, length, c0, c1) -> None:
        """Seed 5: a discard of clusters the backup still needs is deferred (the
        guest is told it is done; discard is advisory) instead of costing a CBW."""
        self.deferred.append((offset, length, self.file.peek(c0, c1)))
        self.stats.deferred_discards += 1

    def apply_deferred_discards(self) -> int:
        """The backup is over: apply the deferred discards whose clusters the
        guest has not rewritten since (a later write supersedes the discard).
        Returns how many were applied."""
        env = self.env
        applied = 0
        valid = [(o, ln) for o, ln, gens in self.deferred  # checked before any is applied
                 if np.array_equal(self.file.peek(*self.clusters(o, ln)), gens)]
        for offset, length in valid:
            if self.file.fast(OP_DISCARD, offset, length, env.now) is None:
                env.process(self.file.discard(offset, length))
            applied += 1
        self.deferred = []
        self.stats.deferred_discards_applied += applied
        return applied

    def write(self, offset, length, data=None, flags=0, att=None):
        return (yield from self._guarded(False, offset, length, data, flags, att))

    def discard(self, offset, length, flags=0, att=None):
        return (yield from self._guarded(True, offset, length, None, flags, att))

    def _guarded(self, discard, offset, length, data, flags, att=None):
        """A guest write or discard: copy before it, then let it through.
        ``att`` (metrics.Attr): where its time goes — the copy's phases
        (BlockCopy.copy), the frozen wait, then its own device request."""
        path = PATH_DIRECT
        if self.active:
            c0, c1 = self.span(offset, length)
            if self.cache is not None and self.cache.clean:
                self._absorb(c0, c1)
            if discard and self.lazy_discard and self.copier.pending(c0, c1):
                self._defer(offset, length, c0, c1)
                return PATH_DIRECT
            mine = att  # nested under another filter's copy: my own record of the time
            if self.nested_att is not None and att is None:
                mine = Attr()
            if self.copier.pending(c0, c1):
                ok, copied, waited = yield from self._copy_before_write(c0, c1, mine)
                if self._below is not None and copied:
                    self._take_nested(c0, c1, att)
                path = self._cbw_path(ok, copied, waited, att)
                if path == PATH_ERROR:
                    return PATH_ERROR
            if self.frozen and self._is_frozen(c0, c1):
                t = self.env.now
                while self.frozen and self._is_frozen(c0, c1):
                    yield self._unfrozen
                if mine is not None:
                    mine.c[A_FROZEN] += self.env.now - t
            if mine is not att and any(mine.c):
                self.nested_att[offset] = mine.c
        if discard:
            yield from self.file.discard(offset, length, flags, att=att)
        else:
            yield from self.file.write(offset, length, data, flags, att=att)
        return path

    def _cbw_path(self, ok, copied, waited, att=None) -> int:
        """Count a finished copy-before-write; the guest request's path
        (PATH_ERROR: the write fails, on-cbw-error break-guest-write, with
        the copy's errno in ``att.err``: cbw_do_copy_before_write returns
        block_copy's error -- the copy target's, or ETIMEDOUT if set before)."""
        path = PATH_DIRECT
        if copied:
            path = PATH_CBW
            self.stats.cbw_count += 1
            self.stats.cbw_bytes += copied
        elif waited:
            path = PATH_WAIT
            self.stats.cbw_waits += 1
        if not ok:
            self.stats.cbw_errors += 1
            if self.on_cbw_error in ("break-guest-write", "wait"):  # wait: timed out
                if att is not None and not att.err:
                    att.err = node_errno(self.copier.target)
                self.stats.guest_errors += 1
                if self.stats.guest_errors == 1:  # the summary says when it began
                    self.stats.events.append(
                        (self.env.now, f"first guest write failed (CBW error, "
                                       f"on-cbw-error={self.on_cbw_error})"))
                return PATH_ERROR
            self.break_snapshot()
        return path

    # ------------------------------------------------------------ analytic guest write
    def write_now(self, offset, length, done, att=None) -> bool:
        """Analytic twin of ``write`` for the guest driver: the same
        steps as ``_guarded``, each device completion one timer callback
        instead of a generator resumed through five frames; ``done(path)`` at
        the write's completion. Only when no copy of the range is in flight
        elsewhere (nothing to wait for) and there is no cbw-timeout; otherwise
        returns False having done nothing, and the generator path runs.
        ``att``: the request's latency attribution, as ``write``'s."""
        if not self.active or self.cbw_timeout:
            return False
        c0, c1 = self.span(offset, length)
        copier = self.copier
        if copier.inflight and copier.tasks_in(c0, c1):
            return False
        if self.cache is not None and self.cache.clean:
            self._absorb(c0, c1)
        if copier.pending(c0, c1):
            def copied(ok, nbytes):
                if self._below is not None and nbytes:
                    self._take_nested(c0, c1, att)
                self._land_at(offset, length, c0, c1, self._cbw_path(ok, nbytes, False, att),
                              done, att)
            copier.start_copy(c0, c1, copied, att)
        else:
            self._land_at(offset, length, c0, c1, PATH_DIRECT, done, att)
        return True

    def _take_nested(self, c0, c1, att) -> None:
        """My copies of [c0, c1) wrote into a nested filter (``nested_att``):
        move the part of the guest's wait that was that filter's own copy
        (cbw_read, target_write, inflight_wait of the remote copy) out of
        ``cache_write``, where BlockCopy._attribute put the whole write. Called
        only by a write that copied something itself (a write that only waited
        for another's copy has that time as inflight_wait already). Moved, never
        more than ``cache_write`` holds, so the components still add up to the
        latency; a write that both copied and waited on the same range may take
        the other's record (then both keep correct totals, one label off)."""
        below = self._below
        lo, hi = c0 * self.cs, c1 * self.cs
        for off in [o for o in below if lo <= o < hi]:
            parts = below.pop(off)
            if att is None:
                continue
            c = att.c
            total = sum(parts)
            share = min(1.0, c[A_CACHE_WRITE] / total) if total > 0 else 0.0
            c[A_CACHE_WRITE] -= total * share
            for i, v in enumerate(parts):
                c[i] += v * share

    def _land_at(self, offset, length, c0, c1, path, done, att=None) -> None:
        """The guest write itself once its copy is done (``write_now``)."""
        if path == PATH_ERROR:
            done(path)
            return
        if self.frozen and self._is_frozen(c0, c1):
            drive(self._land(offset, length, c0, c1, path, att), done)
            return
        w = self.file.write_at(offset, length)
        if w is None:
            drive(self.file.write(offset, length, att=att), lambda _r: done(path))
            return
        if att is not None:  # the submit just made was the guest's own request
            att.svc = LAST.service
        end, _fin = w
        at(self.env, end, lambda: done(path))

    def _land(self, offset, length, c0, c1, path, att=None):
        t = self.env.now
        while self.frozen and self._is_frozen(c0, c1):
            yield self._unfrozen
        if att is not None:
            att.c[A_FROZEN] += self.env.now - t
        yield from self.file.write(offset, length, att=att)
        return path

    def _copy_before_write(self, c0, c1, att=None):
        if not self.cbw_timeout:
            return (yield from self.copier.copy(c0, c1, att))
        env = self.env
        t0 = env.now
        mine = Attr() if att is not None else None  # the copy may outlive the request
        proc = env.process(self.copier.copy(c0, c1, mine))
        timer = env.timeout(self.cbw_timeout)
        yield proc | timer
        if att is not None:
            c = mine.c
            if not proc.triggered:  # the rest is in the phase the copy is in
                part = A_CBW_READ if not c[A_CBW_READ] else self.copier.write_part
                c[part] += env.now - t0 - sum(c)
            for i, v in enumerate(c):
                att.c[i] += v
        if proc.triggered:
            return proc.value
        self.stats.cbw_timeouts += 1
        if att is not None:
            att.err = ETIMEDOUT  # block_copy: qemu_co_timeout's -ETIMEDOUT
        if self.stats.cbw_timeouts == 1:
            self.stats.events.append((env.now, f"CBW exceeded cbw-timeout={self.cbw_timeout:g}s: "
                                               f"it fails (the copy goes on in the background)"))
        return False, 0, False  # the copy goes on in the background; the write gives up

    def break_snapshot(self) -> None:
        """on-cbw-error=break-snapshot: stop CBW, the guest goes on, snapshot reads fail."""
        if not self.broken:
            self.broken = True
            self.active = False
            self.stats.snapshot_broken = True
            self.stats.snapshot_broken_at = self.env.now
            self.stats.events.append((self.env.now, "snapshot broken (on-cbw-error=break-snapshot):"
                                                     " the guest goes on, the backup fails"))

    def deactivate(self) -> None:
        """The filter is removed from the graph (the backup ended)."""
        self.active = False

    # ------------------------------------------------------------ snapshot API
    def _is_frozen(self, c0, c1) -> bool:
        # a few snapshot reads in flight at most: ranges, not a dict per cluster
        for a, b in self.frozen:
            if a < c1 and c0 < b:
                return True
        return False

    def _freeze(self, runs) -> None:
        """Snapshot reads of the file over cluster ranges ``runs`` [(a, b), ...] start."""
        self.frozen += runs

    def _thaw(self, runs) -> None:
        fr = self.frozen
        for r in runs:
            fr.remove(r)
        if self._unfrozen.callbacks:  # someone waits (an event nobody waits on is a cost)
            ev, self._unfrozen = self._unfrozen, self.env.event()
            ev.succeed()

    def _cached(self, c0, c1) -> np.ndarray:
        if self.cache is None:
            return np.zeros(c1 - c0, dtype=bool)
        return self.cache.cached_mask(c0, c1)

    def snapshot_zero_map(self, c0, c1):
        cached = self._cached(c0, c1)
        z = self.file.zero_map(c0, c1).copy()
        if cnz(cached):
            z[cached] = self.cache.zero_map(c0, c1)[cached]
        return z

    def snapshot_peek(self, c0, c1):
        cached = self._cached(c0, c1)
        g = self.file.peek(c0, c1)
        if cnz(cached):
            g[cached] = self.cache.peek(c0, c1)[cached]
        return g

    # The whole snapshot at once (policies at t0, a bulk of write-zeroes): the
    # active disk's state with the cache's clusters over it; sparse state stays
    # sparse (only cached clusters are visited).
    def _cached_idx(self, c0: int, c1: int) -> np.ndarray:
        if self.cache is None:
            return np.zeros(0, dtype=np.int64)
        where = self.cache.where
        if isinstance(where, np.ndarray):
            return np.flatnonzero(where[c0:c1] != NOT_CACHED) + c0
        return where.nonfill(c0, c1, NOT_CACHED)

    def snapshot_zero_state(self):
        z = self.file.zero_state()
        idx = self._cached_idx(0, self.n)
        if idx.size:
            z[idx] = self.cache.where[idx] == ZERO
        return z

    def snapshot_peek_state(self):
        g = self.file.peek_state()
        idx = self._cached_idx(0, self.n)
        if idx.size:
            g[idx] = self.cache.gen[idx]
        return g

    def snapshot_peek_extent(self, c0, c1):
        g = self.file.peek_extent(c0, c1)
        idx = self._cached_idx(c0, c1)
        if idx.size:
            if isinstance(g, np.ndarray):
                g[idx - c0] = self.cache.gen[idx]
            else:
                g.put(idx, self.cache.gen[idx])
        return g

    def snapshot_read(self, offset, length):
        """Read the point-in-time content; None (EACCES) if the snapshot is
        broken or any of the range is not accessible (outside the sync bitmap,
        or discarded by the reader)."""
        c0, c1 = self.clusters(offset, length)
        if self.broken or (self.access is not None and not _all(self.access[c0:c1])):
            self.stats.snapshot_read_errors += 1
            return None
        cs = self.cs
        cached = self._cached(c0, c1)
        if not cnz(cached):
            cl = [(c0, c1)]
            self._freeze(cl)
            data = yield from self.file.read(offset, length)
            self._thaw(cl)
            self.stats.source_read_bytes += length
        elif cnz(cached) == len(cached):
            data = yield from self.cache.read(offset, length)
        else:
            data = np.empty(c1 - c0, dtype=np.uint32)
            unc = _runs(np.flatnonzero(~cached) + c0)
            self._freeze(unc)
            for a, b in unc:
                data[a - c0:b - c0] = yield from self.file.read(a * cs, (b - a) * cs)
                self.stats.source_read_bytes += (b - a) * cs
            self._thaw(unc)
            for a, b in _runs(np.flatnonzero(cached) + c0):
                data[a - c0:b - c0] = yield from self.cache.read(a * cs, (b - a) * cs)
        if self.broken:  # broke while we read: in-flight snapshot requests fail too
            self.stats.snapshot_read_errors += 1
            return None
        return data

    def snapshot_read_at(self, offset, length):
        """Analytic twin of ``snapshot_read`` (nodes/base.py: read_at) when the
        range is all on the active disk or all in the cache; else None."""
        c0, c1 = self.clusters(offset, length)
        if self.broken or (self.access is not None and not _all(self.access[c0:c1])):
            return None  # the generator counts the refusal
        cached = self._cached(c0, c1)
        if not cnz(cached):
            r = self.file.read_at(offset, length)
            if r is None:
                return None
            end, fin = r
            cl = [(c0, c1)]
            self._freeze(cl)

            def finish():
                data = fin()
                self._thaw(cl)
                self.stats.source_read_bytes += length
                return self._unless_broken(data)
            return end, finish
        if cnz(cached) == len(cached):
            r = self.cache.read_at(offset, length)
            if r is None:
                return None
            end, fin = r
            return end, lambda: self._unless_broken(fin())
        return None

    def snapshot_read_cb(self, offset, length, done) -> bool:
        """Analytic twin of ``snapshot_read``'s mixed case (part of the range
        cached, part on the active disk; nodes/base.py: read_cb): the same
        reads one after the other, each completion a timer callback;
        ``done(data)`` at the end. False (nothing done) for any other case."""
        c0, c1 = self.clusters(offset, length)
        if self.broken or (self.access is not None and not _all(self.access[c0:c1])):
            return False  # the generator counts the refusal
        cached = self._cached(c0, c1)
        k = cnz(cached)
        if not k or k == len(cached):
            return False
        _MixedRead(self, c0, cached, done).next_uncached()
        return True

    def _unless_broken(self, data):
        if self.broken:
            self.stats.snapshot_read_errors += 1
            return None
        return data

    def snapshot_discard(self, offset, length):
        """The reader is done with these clusters: drop them from the cache and
        from the copy bitmap, so later guest writes need no CBW (read-once).
        Only whole CBW clusters inside the range count (QEMU aligns inward)."""
        kb = self.k * self.cs
        c0 = -(-offset // kb) * self.k
        c1 = min(self.n, (offset + length) // kb * self.k)
        if c1 <= c0:
            return PATH_DIRECT
        if self.access is not None:
            self.access[c0:c1] = False
        k = int(cnz(self.copier.needed[c0:c1]))
        if k:
            self.copier.needed[c0:c1] = False
            self.copier.remaining -= k
        if self.cache is not None:
            self.cache.drop(c0, c1)
        return PATH_DIRECT
        yield  # metadata only


class _MixedRead:
    """``snapshot_read``'s mixed case as callbacks (CBWFilter.snapshot_read_cb):
    the uncached runs from the active disk one after the other (frozen while
    read), then the cached runs from the cache."""

    __slots__ = ("cbw", "c0", "cached", "data", "runs", "i", "fin", "done")

    def __init__(self, cbw, c0, cached, done):
        self.cbw = cbw
        self.c0 = c0
        self.cached = cached
        self.done = done
        self.data = np.empty(len(cached), dtype=np.uint32)
        self.runs = _runs(np.flatnonzero(~cached) + c0)
        cbw._freeze(self.runs)
        self.i = 0

    def next_uncached(self) -> None:
        cbw = self.cbw
        if self.i < len(self.runs):
            a, b = self.runs[self.i]
            cs = cbw.cs
            r = cbw.file.read_at(a * cs, (b - a) * cs)
            if r is None:
                drive(cbw.file.read(a * cs, (b - a) * cs), self._uncached)
            else:
                end, self.fin = r
                call_at(cbw.env, end, self._uncached_end)
            return
        cbw._thaw(self.runs)
        self.runs = _runs(np.flatnonzero(self.cached) + self.c0)
        self.i = 0
        self.next_cached()

    def _uncached_end(self, _ev) -> None:
        self._uncached(self.fin())

    def _uncached(self, d) -> None:
        a, b = self.runs[self.i]
        self.data[a - self.c0:b - self.c0] = d
        self.cbw.stats.source_read_bytes += (b - a) * self.cbw.cs
        self.i += 1
        self.next_uncached()

    def next_cached(self) -> None:
        cbw = self.cbw
        if self.i < len(self.runs):
            a, b = self.runs[self.i]
            cs = cbw.cs
            r = cbw.cache.read_at(a * cs, (b - a) * cs)
            if r is None:
                drive(cbw.cache.read(a * cs, (b - a) * cs), self._cached)
            else:
                end, self.fin = r
                call_at(cbw.env, end, self._cached_end)
            return
        self.done(cbw._unless_broken(self.data))

    def _cached_end(self, _ev) -> None:
        self._cached(self.fin())

    def _cached(self, d) -> None:
        a, b = self.runs[self.i]
        self.data[a - self.c0:b - self.c0] = d
        self.i += 1
        self.next_cached()


def _runs(idx: np.ndarray):
    """Contiguous runs [a, b) of a sorted index array (a chunk's few clusters:
    a plain loop is cheaper than numpy's per-call cost here)."""
    lst = idx.tolist()
    if not lst:
        return []
    runs = []
    a = prev = lst[0]
    for c in lst[1:]:
        if c != prev + 1:
            runs.append((a, prev + 1))
            a = c
        prev = c
    runs.append((a, prev + 1))
    return runs
