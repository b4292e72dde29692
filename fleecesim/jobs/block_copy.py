"""QEMU's block-copy (block/block-copy.c) in miniature.

One ``BlockCopy`` copies clusters from one source node to one target node and
owns the copy bitmap and the list of copies in flight. Everyone who copies
between that pair shares it — the backup job's workers and the CBW path — so
a cluster is copied once, by whoever claims it first, and anyone who needs a
cluster that is in flight waits for that copy instead of copying it again.
As in QEMU, a claim clears the cluster's bit at once; a failed copy sets it
back.

Granularity: node arrays are kept per *unit* (``cluster_size``, the finest
copy granularity in the graph); a BlockCopy copies whole clusters of its own
``granularity`` (a power-of-two multiple of the unit, k units), as QEMU's
block-copy takes its cluster size from its own target
(block/block-copy.c: block_copy_calculate_cluster_size). Its bitmap stays per
unit but is kept uniform within each of its clusters: the initial bitmap is
widened to whole clusters (a coarse bit is set if any fine bit is, as merging
a finer dirty bitmap into block-copy's does) and claims are widened likewise.
"""
from __future__ import annotations

from itertools import repeat

import numpy as np

from ..metrics import (A_CACHE_WRITE, A_CBW_READ, A_FULL, A_INFLIGHT, A_TARGET_WRITE,
                       PATH_ERROR, Level)
from ..bitmap import count_nonzero, widen
from ..nodes.base import REQ_CBW, REQ_ZERO, Timer, call_at, drive

BLOCK_COPY_MAX_MEM = 128 * 2**20  # QEMU: in-flight copy buffers are capped at 128 MiB

# np.count_nonzero: ~6x cheaper than .any()/.all()/.sum() on a request's few
# clusters (no ufunc reduction machinery); the same answers.
cnz = count_nonzero


# why copy_range fails (devices/host.py: copy_method), for the event log
_WHY = {"EXDEV": "source and target are on different filesystems",
        "ENOTSUP": "the target or source is not a local file (NBD has no copy_range)"}


def _all(m) -> bool:
    return cnz(m) == len(m)


class CopyTask:
    """A claimed copy in flight (the 4th element of a claimed task tuple).
    Its completion event is made only when someone waits for it: most copies
    nobody waits on, and an event nobody waits on still costs a scheduling.
    Asked for after the copy ended, it is an event already processed, as the
    event made at claim time would be by then."""

    __slots__ = ("env", "ev", "urgent", "result", "read_end", "end", "room", "read_failed")

    def __init__(self, env):
        self.env = env
        self.ev = None
        self.urgent = False  # a guest write waits for it: its target write goes as REQ_CBW
        self.result = None   # True/False once it ended
        # for the latency attribution of the guest write that made it (copy())
        self.read_end = None  # when its data was read (None: not yet)
        self.end = None       # when it ended
        self.room = 0.0       # seconds its write waited for room in the fleecing image
        # it failed on its read (the source's error), not on its write (the
        # target's): block/block-copy.c block_copy_do_copy's *error_is_read,
        # which picks on-source-error or on-target-error (error_policy.py)
        self.read_failed = False

    def event(self):
        if self.ev is None:
            self.ev = ev = self.env.event()
            if self.result is not None:
                ev._ok = True
                ev._value = self.result
                ev.callbacks = None  # processed
        return self.ev

    def fire(self, ok: bool) -> None:
        self.result = ok
        if self.ev is not None:
            self.ev.succeed(ok)


class _Copy:
    """One task of the analytic copy engine (BlockCopy.start_task), from its
    read to its write's completion: run_task's steps, each device completion
    one timer callback (nodes' read_at / write_at). A slotted object with
    bound methods rather than a closure per step: the job makes one per chunk."""

    __slots__ = ("bc", "a", "b", "zero", "ev", "flags", "done", "sized", "off", "ln", "fin")

    def mem_granted(self, _ev) -> None:
        self.read()

    def read(self) -> None:
        bc = self.bc
        bc.inflight_level.add(self.ln)
        src = bc.source
        if self.zero:
            self.write(src.peek(self.a, self.b), False)
        elif bc.copy_range and bc.offload_method():
            drive(src.copy_range(self.off, self.ln, bc.target, bc.method), self._offloaded)
        else:
            r = src.read_at(self.off, self.ln)
            if r is None:
                if not src.read_cb(self.off, self.ln, self._read):
                    drive(src.read(self.off, self.ln), self._read)
            else:
                end, self.fin = r
                call_at(bc.env, end, self._read_end)

    def _read_end(self, _ev) -> None:
        self.write(self.fin(), False)

    def _read(self, data) -> None:
        self.write(data, False)

    def _offloaded(self, data) -> None:
        self.bc._offloaded()
        self.write(data, True)

    def write(self, data, offloaded: bool) -> None:
        bc = self.bc
        self.ev.read_end = bc.env._now  # latency attribution (copy(): _attribute)
        ok, flags = bc._after_read(self.a, self.b, self.zero, data, self.ln, self.flags,
                                   self.ev.urgent)
        if not ok:
            self.ev.read_failed = True
        if ok and not offloaded:
            tgt = bc.target
            w = tgt.write_at(self.off, self.ln, data, flags)
            if w is None:
                drive(tgt.write(self.off, self.ln, data, flags), self._written)
            else:
                end, self.fin = w
                call_at(bc.env, end, self._write_end)
            return
        self.end(ok)

    def _write_end(self, _ev) -> None:
        self.end(self.fin() != PATH_ERROR)

    def _written(self, res) -> None:
        self.bc._room(self.ev, self.off)  # the generator path may have waited for room
        self.end(res != PATH_ERROR)

    def end(self, ok: bool) -> None:
        self.bc._task_end(self.a, self.b, self.ev, self.ln, ok)
        if self.sized:
            self.done(self.ln if ok else None)
        else:
            self.done(ok)


class _Join:
    """``copy``'s join of parallel tasks (one event per task, ``env.all_of``
    of them) without the events: each task's end is a Timer scheduled as its
    event's ``succeed`` would be, counted in that Timer's callback as AllOf
    counts; the last schedules one more, as AllOf's own ``succeed``; its
    callback is the join's. So the order of events is the same."""

    __slots__ = ("env", "left", "ok", "done", "copied")

    def __init__(self, env, n, done, copied):
        self.env = env
        self.left = n
        self.ok = True
        self.done = done
        self.copied = copied

    def task_end(self, ok) -> None:
        self.ok = self.ok and ok
        t = Timer()
        t.callbacks = [self._counted]
        self.env.schedule(t)

    def _counted(self, _ev) -> None:
        self.left -= 1
        if not self.left:
            t = Timer()
            t.callbacks = [self._joined]
            self.env.schedule(t)

    def _joined(self, _ev) -> None:
        self.done(self.ok, self.copied)


class BlockCopy:
    def __init__(self, env, name: str, source, target, needed: np.ndarray, cluster_size: int,
                 disk_size: int, max_chunk: int, stats, *, zero_detect: str = "block-status",
                 mem_limit: int = BLOCK_COPY_MAX_MEM, count_source_reads: bool = True,
                 parallel: bool = True, granularity: int | None = None,
                 copy_range: bool = False, copy_range_chunk: int | None = None):
        self.env = env
        self.name = name
        self.source = source
        self.target = target
        self.cs = cluster_size
        self.k = max(1, (granularity or cluster_size) // cluster_size)  # units per cluster
        if self.k > 1:
            needed[:] = widen(needed, self.k)
        self.needed = needed            # bool per unit: still to be copied (not claimed)
        self.disk_size = disk_size
        self.n = len(needed)
        self.chunk = max(self.k, max_chunk // cluster_size // self.k * self.k)
        self.stats = stats
        self.zero_detect = zero_detect  # "block-status": skip reading zeroes; "buffer": read, then detect
        self.count_source_reads = count_source_reads
        # block-copy runs a request's tasks concurrently (aio task pool); 2018's
        # backup_do_cow copied one cluster after the other.
        self.parallel = parallel
        # x-perf.use-copy-range: a data chunk is one copy_range request of the
        # source node into the target (block_copy_do_copy: bdrv_co_copy_range)
        # instead of a read into a bounce buffer and a write from it. QEMU
        # starts at COPY_RANGE_SMALL (chunks of BLOCK_COPY_MAX_BUFFER, 1 MiB:
        # block_copy_chunk_size), moves to COPY_RANGE_FULL (chunks up to
        # BLOCK_COPY_MAX_COPY_RANGE, 16 MiB: ``copy_range_chunk``) when a
        # copy_range succeeds, and on a failure copies that chunk by read +
        # write and every later one too (COPY_READ_WRITE; block_copy_task_entry
        # stores the method). Where offload fails is the source node's answer
        # (ActiveDisk.copy_method), asked at the first copy.
        self.copy_range = copy_range
        self.method = None  # splice / reflink once known; copy_range False on fallback
        self.full_chunk = None if copy_range_chunk is None else \
            max(self.k, copy_range_chunk // cluster_size // self.k * self.k)
        # the analytic engine: copies as callbacks on device completions (start_task)
        # instead of processes; the run chooses (run.py: simulate(analytic=))
        self.analytic = getattr(env, "analytic", True)
        self.remaining = int(needed.sum())
        self.inflight: dict[int, CopyTask] = {}   # cluster -> its copy in flight
        self.inflight_level = Level(env, f"{name}.inflight_bytes")
        self.mem_limit = mem_limit
        self.mem_used = 0
        self._mem_waiters: list = []
        self._idle_waiters: list = []
        self.copied_bytes = 0
        self.copies = 0
        # a guest write's time in this copy's target write: the backup target's,
        # or a local image's (fleecing cache, overlay, a 2018 scratch image)
        self.write_part = A_TARGET_WRITE if getattr(target, "is_target", False) \
            else A_CACHE_WRITE
        # fn(bytes): a rate-limited job on this copy state (BackupJob.charge);
        # copy() charges its tasks without waiting, as QEMU charges a CBW's
        self.rate_charge = None
        self.bulk = None  # jobs/bulk.py: a task longer than a chunk is a bulk of zeroes
        # the first copy that failed since the job's block-copy call began (its
        # CopyTask; the job resets it): block_copy_call_status reports the
        # first failed task's error. A copy-before-write sharing this state
        # writes the same target, so its failure has the same errno.
        self.first_error = None

    # ------------------------------------------------------------ queries
    def pending(self, c0: int, c1: int) -> bool:
        """Is anything in [c0, c1) still to copy or being copied?"""
        nd = self.needed
        if c1 - c0 == 1:
            if nd[c0]:
                return True
        elif cnz(nd[c0:c1]):
            return True
        infl = self.inflight
        if infl:  # a plain loop: a generator for any() costs more than a request's few clusters
            for c in range(c0, c1):
                if c in infl:
                    return True
        return False

    def next_needed(self, start: int, window: int = 65536) -> int:
        """First cluster >= start whose bit is set, or -1."""
        nd = self.needed
        n = self.n
        if start < n and nd[start]:
            return start
        if type(nd) is not np.ndarray:  # sparse state: page by page (sparse.py)
            return nd.first(start, n) if start < n else -1
        while start < n:
            seg = nd[start:start + window]
            i = int(seg.argmax())
            if seg[i]:
                return start + i
            start += window
            window = min(window * 4, 1 << 24)
        return -1

    def run_end(self, c0: int, max_clusters: int) -> int:
        """End of the run of set bits starting at c0, at most max_clusters long."""
        if max_clusters == 1 and c0 < self.n:  # 2018's backup: one cluster a copy
            return c0 + 1 if self.needed[c0] else c0
        seg = self.needed[c0:c0 + max_clusters]
        if cnz(seg) == len(seg):
            return c0 + len(seg)
        return c0 + int(seg.argmin())

    # ------------------------------------------------------------ claiming
    def claim(self, c0: int, c1: int) -> list[tuple[int, int, bool, object]]:
        """Claim the set bits in [c0, c1) as copy tasks: contiguous runs, each all
        zero or all data (as block-status splits them), at most one chunk long."""
        k = self.k
        if k > 1:  # whole clusters of this copy's granularity
            c0 = c0 // k * k
            c1 = min(self.n, -(-c1 // k) * k)
        elif c1 - c0 == 1:  # the common CBW case, without numpy's per-call overhead
            if not self.needed[c0]:
                return []
            z = bool(self.source.zero_map(c0, c1)[0]) if self.zero_detect == "block-status" \
                else False
            ev = CopyTask(self.env)
            self.inflight[c0] = ev
            self.needed[c0] = False
            self.remaining -= 1
            return [(c0, c1, z, ev)]
        sub = self.needed[c0:c1]
        if k == 1 and c1 - c0 <= self.chunk and len(sub) == c1 - c0 and cnz(sub) == c1 - c0:
            # The job's common case: a whole run of needed clusters, one chunk
            # at most (split only where block status changes).
            return self._claim_run(c0, c1)
        if k == 1 and len(sub) <= 16:
            return self._claim_few(c0, sub)
        idx = np.flatnonzero(sub)
        if idx.size == 0:
            return []
        if self.zero_detect == "block-status":
            zm = self.source.zero_map(c0, c1)
            if k > 1:  # block status at cluster granularity: zero only if all of it is
                zm = widen(zm, k, all_=True)
            zero = zm[idx]
        else:
            zero = np.zeros(idx.size, dtype=bool)
        idx += c0
        tasks = []
        start = 0
        brk = np.flatnonzero((np.diff(idx) != 1) | (zero[1:] != zero[:-1])) + 1
        bounds = list(brk) + [idx.size]
        for end in bounds:
            a = int(idx[start])
            last = int(idx[end - 1]) + 1
            z = bool(zero[start])
            while a < last:
                b = min(a + self.chunk, last)
                ev = CopyTask(self.env)
                for c in range(a, b):
                    self.inflight[c] = ev
                tasks.append((a, b, z, ev))
                a = b
            start = end
        self.needed[idx] = False
        self.remaining -= idx.size
        return tasks

    def _claim_few(self, c0: int, sub) -> list:
        """claim() of a few units (k == 1) in plain Python: a guest write's two
        or three clusters cost less this way than through numpy's calls."""
        zl = self.source.zero_map(c0, c0 + len(sub)).tolist() \
            if self.zero_detect == "block-status" else None
        runs = []  # [a, b, zero]: needed, contiguous, one kind
        for i, need in enumerate(sub.tolist()):
            if need:
                c = c0 + i
                z = bool(zl[i]) if zl is not None else False
                if runs and runs[-1][1] == c and runs[-1][2] == z:
                    runs[-1][1] = c + 1
                else:
                    runs.append([c, c + 1, z])
        tasks = []
        infl = self.inflight
        env = self.env
        chunk = self.chunk
        nd = self.needed
        for a, last, z in runs:
            nd[a:last] = False
            self.remaining -= last - a
            while a < last:
                b = min(a + chunk, last)
                ev = CopyTask(env)
                for c in range(a, b):
                    infl[c] = ev
                tasks.append((a, b, z, ev))
                a = b
        return tasks

    def tasks_in(self, c0: int, c1: int, mine=()) -> list:
        """Copies in flight in [c0, c1) that this caller did not start."""
        if not self.inflight:
            return []
        ts = []
        get = self.inflight.get
        for c in range(c0, c1):
            t = get(c)
            if t is not None and t not in mine and t not in ts:
                ts.append(t)
        return ts

    def _claim_run(self, c0: int, c1: int) -> list:
        """claim() of [c0, c1), all needed, at most one chunk long."""
        if self.zero_detect == "block-status":
            zm = self.source.zero_map(c0, c1)
            z0 = bool(zm[0])
            nz = cnz(zm)
            mixed = 0 < nz < len(zm)
        else:
            z0, mixed = False, False
        if mixed:  # runs of one kind each, as claim() splits them
            brk = [0] + (np.flatnonzero(zm[1:] != zm[:-1]) + 1).tolist() + [c1 - c0]
            runs = [(c0 + a, c0 + b, bool(zm[a])) for a, b in zip(brk, brk[1:])]
        else:
            runs = [(c0, c1, z0)]
        tasks = []
        infl = self.inflight
        env = self.env
        for a, b, z in runs:
            ev = CopyTask(env)
            infl.update(dict.fromkeys(range(a, b), ev))  # one C loop, not a Python one
            tasks.append((a, b, z, ev))
        self.needed[c0:c1] = False
        self.remaining -= c1 - c0
        return tasks

    def waits_in(self, c0: int, c1: int, mine=()) -> list:
        """Events of copies in flight in [c0, c1) that this caller did not start."""
        return [t.event() for t in self.tasks_in(c0, c1, mine)]

    # ------------------------------------------------------------ copying
    def run_task(self, a: int, b: int, zero: bool, ev, flags: int = 0):
        """Copy clusters [a, b) (already claimed). Returns True on success.
        ``flags`` go with the target write (REQ_CBW for a copy-before-write)."""
        if b - a > self.chunk:  # a bulk of write-zeroes (jobs/bulk.py)
            return (yield from self.bulk.run(a, b, ev))
        env = self.env
        cs = self.cs
        off = a * cs
        ln = min(b * cs, self.disk_size) - off
        if self.mem_used + ln > self.mem_limit and self.mem_used:
            wait = env.event()
            self._mem_waiters.append((ln, wait))
            yield wait
        else:
            self.mem_used += ln
        self.inflight_level.add(ln)
        offloaded = False
        if zero:
            data = self.source.peek(a, b)
        elif self.copy_range and self.offload_method():
            # the source stores the data in the target itself (no write below)
            data = yield from self.source.copy_range(off, ln, self.target, self.method)
            offloaded = True
            self._offloaded()
        else:
            data = yield from self.source.read(off, ln)
        ev.read_end = env.now
        ok, flags = self._after_read(a, b, zero, data, ln, flags, ev.urgent)
        if not ok:
            ev.read_failed = True
        if ok and not offloaded:
            res = yield from self.target.write(off, ln, data, flags)
            ok = res != PATH_ERROR
            self._room(ev, off)
        self._task_end(a, b, ev, ln, ok)
        return ok

    def offload_method(self) -> str | None:
        """The copy offload method, or None once block-copy fell back to read
        + write: decided at the first copy, from the source node's answer."""
        if self.method is None:
            m = self.source.copy_method(self.target)
            if m in ("splice", "reflink"):
                self.method = m
                self.stats.copy_range_method = m
                self.stats.copy_range_fallback = False
            else:
                # block_copy_do_copy: copy_range failed -> COPY_READ_WRITE for good
                self.copy_range = False
                self.stats.copy_range_method = "read-write"
                self.stats.copy_range_fallback = True
                self.stats.events.append(
                    (self.env.now, f"{self.name}: copy offload failed ({m}: "
                                   f"{_WHY.get(m, m)}); block-copy copies by read + write"))
                return None
        return self.method

    def _offloaded(self) -> None:
        """A copy_range succeeded: COPY_RANGE_FULL from now on (larger chunks
        for the tasks claimed next)."""
        if self.full_chunk is not None and self.chunk != self.full_chunk:
            self.chunk = self.full_chunk

    def _after_read(self, a, b, zero, data, ln, flags, urgent):
        """A task's data is read (None: the read failed): count it, find zeroes,
        and give the flags of its target write. Returns (ok, flags)."""
        ok = zero or data is not None
        if ok and not zero and self.count_source_reads:
            self.stats.source_read_bytes += ln
        if ok and (zero or (self.zero_detect == "buffer"
                            and cnz(zm := self.source.zero_map(a, b)) == len(zm))):  # _all
            flags |= REQ_ZERO
        if urgent:
            flags |= REQ_CBW
        return ok, flags

    def _room(self, ev, off) -> None:
        """Take what the target reports its write of ``off`` waited for room."""
        st = getattr(self.target, "stalled", None)
        if st:
            ev.room = st.pop(off, 0.0)

    def _task_end(self, a, b, ev, ln, ok) -> None:
        ev.end = self.env._now
        self.inflight_level.add(-ln)
        if self._mem_waiters:
            self._mem_release(ln)
        else:  # _mem_release without a call when nobody waits for memory
            self.mem_used -= ln
        infl = self.inflight
        if b - a == 1:
            if infl.get(a) is ev:
                del infl[a]
        else:  # all entries popped in one C loop; any not ours go back (in
            # the same order as popping and re-adding them one by one would)
            got = list(map(infl.pop, range(a, b), repeat(None, b - a)))
            if got.count(ev) != b - a:
                for c, t in zip(range(a, b), got):
                    if t is not ev and t is not None:
                        infl[c] = t
        if ok:
            self.copied_bytes += ln
            self.copies += 1
        else:
            self.needed[a:b] = True
            self.remaining += b - a
            if self.first_error is None:
                self.first_error = ev
        ev.result = ok  # ev.fire(ok), inlined
        if ev.ev is not None:
            ev.ev.succeed(ok)
        if not infl and self._idle_waiters:
            ws, self._idle_waiters = self._idle_waiters, []
            for w in ws:
                w.succeed()

    # ------------------------------------------------------------ analytic copying
    # Issue 12: the same steps as run_task / run_tasks, but each device
    # completion is one timer callback (nodes' read_at / write_at) instead of a
    # process resumed through nested generators. A node that cannot submit
    # analytically right now (a full cache, a target queue, a partly cached
    # snapshot read, ...) runs its generator without a process (nodes.base.drive).
    def start_task(self, a: int, b: int, zero: bool, ev, flags: int, done,
                   sized: bool = False) -> None:
        """Copy claimed clusters [a, b); ``done(ok)`` is called when it ends
        (``sized``: ``done(bytes copied)`` on success, ``done(None)`` on failure)."""
        if b - a > self.chunk:  # a bulk of write-zeroes (jobs/bulk.py): done(ok)
            if sized:
                n = min(b * self.cs, self.disk_size) - a * self.cs
                self.bulk.start(a, b, ev, lambda ok: done(n if ok else None))
            else:
                self.bulk.start(a, b, ev, done)
            return
        t = _Copy()
        t.bc = self
        t.a = a
        t.b = b
        t.zero = zero
        t.ev = ev
        t.flags = flags
        t.done = done
        t.sized = sized
        t.off = off = a * self.cs
        t.ln = ln = min(b * self.cs, self.disk_size) - off
        if self.mem_used + ln > self.mem_limit and self.mem_used:
            wait = self.env.event()
            self._mem_waiters.append((ln, wait))
            wait.callbacks.append(t.mem_granted)
            return
        self.mem_used += ln
        t.read()

    def start_tasks(self, tasks, done, after=None, flags: int = 0) -> None:
        """``run_tasks`` without a process: the tasks one after the other,
        ``after(a, b)`` (a generator) after each; ``done(bytes copied or None)``."""
        if len(tasks) == 1 and after is None:  # the job's common case: no closures
            a, b, z, ev = tasks[0]
            self.start_task(a, b, z, ev, flags, done, True)
            return
        cs, size = self.cs, self.disk_size

        def step(i, copied):
            if i == len(tasks):
                done(copied)
                return
            a, b, z, ev = tasks[i]

            def finished(ok):
                if not ok:
                    self.abandon(tasks[i + 1:])
                    done(None)
                    return
                c = copied + min(b * cs, size) - a * cs
                if after is not None:
                    drive(after(a, b), lambda _v: step(i + 1, c))
                else:
                    step(i + 1, c)
            self.start_task(a, b, z, ev, flags, finished)
        step(0, 0)

    def run_tasks(self, tasks, after=None, flags: int = 0):
        """Run claimed tasks one after the other; on a failure give back the
        rest. ``after(a, b)``: a generator run after each task that succeeded.
        Returns the bytes copied, or None if a task failed."""
        copied = 0
        for i, (a, b, zero, ev) in enumerate(tasks):
            ok = yield from self.run_task(a, b, zero, ev, flags)
            if not ok:
                self.abandon(tasks[i + 1:])
                return None
            copied += min(b * self.cs, self.disk_size) - a * self.cs
            if after is not None:
                yield from after(a, b)
        return copied

    def abandon(self, tasks) -> None:
        """Give back claimed tasks that will not run (their bits are set again)."""
        for a, b, _z, ev in tasks:
            for c in range(a, b):
                if self.inflight.get(c) is ev:
                    del self.inflight[c]
            self.needed[a:b] = True
            self.remaining += b - a
            ev.fire(False)

    def _mem_release(self, n: int) -> None:
        self.mem_used -= n
        while self._mem_waiters:
            need, w = self._mem_waiters[0]
            if self.mem_used + need > self.mem_limit and self.mem_used:
                break
            self._mem_waiters.pop(0)
            self.mem_used += need
            w.succeed()

    def copy(self, c0: int, c1: int, att=None):
        """Make sure [c0, c1) is copied: claim what is unclaimed, wait for what
        others have in flight. Returns (ok, bytes this call copied, waited).
        This is the copy-before-write path (block/copy-before-write.c:
        cbw_do_copy_before_write -> block_copy), so its writes carry REQ_CBW;
        the job's copies (run_tasks from BackupJob) do not. ``att``
        (metrics.Attr): the guest write's time here, by phase (_attribute)."""
        env = self.env
        copied = 0
        waited = False
        while True:
            tasks = self.claim(c0, c1)
            mine = [t[3] for t in tasks]
            waits = self.tasks_in(c0, c1, mine)
            ok = True
            t_own = env.now
            if tasks and self.rate_charge is not None:
                self.rate_charge(sum((t[1] - t[0]) * self.cs for t in tasks))
            if len(tasks) == 1 or (tasks and not self.parallel):
                ok = (yield from self.run_tasks(tasks, flags=REQ_CBW)) is not None
            elif tasks and self.analytic:
                # No process per task; each task's end is one event, joined as
                # the processes' ends would be (the same order of events).
                evs = [env.event() for _ in tasks]
                join = env.all_of(evs)
                for t, e in zip(tasks, evs):
                    self.start_task(*t, REQ_CBW, e.succeed)
                res = yield join
                ok = all(res.values())
            elif tasks:
                procs = [env.process(self.run_task(*t, REQ_CBW)) for t in tasks]
                res = yield env.all_of(procs)
                ok = all(res.values())
            if tasks:
                copied += sum(min(t[1] * self.cs, self.disk_size) - t[0] * self.cs for t in tasks)
                if att is not None:
                    self._attribute(att.c, mine, t_own)
            if not ok:
                return False, copied, waited
            if waits:
                waited = True
                # The copies we wait for now hold up a guest write: those not yet
                # at the target will go as REQ_CBW, those queued there move up.
                for t in waits:
                    t.urgent = True
                self.target.promote(c0 * self.cs, (c1 - c0) * self.cs)
                t_wait = env.now
                yield env.all_of([t.event() for t in waits])
                if att is not None:
                    att.c[A_INFLIGHT] += env.now - t_wait
                if not self.pending(c0, c1):
                    return True, copied, waited
                continue  # a copy we waited for failed: try ourselves
            return True, copied, waited

    def _attribute(self, c, tasks, t0) -> None:
        """Split [t0, now], the time a guest write spent on its own copies
        ``tasks`` (CopyTasks), into the source read, the wait for fleecing room
        and the write (``write_part``). Run in parallel, the reads' part lasts
        until the last read ended; run one after the other, each task's own."""
        now = self.env.now
        w = self.write_part
        if self.parallel and len(tasks) > 1:
            rd = max((t.read_end for t in tasks if t.read_end is not None), default=t0)
            rest = now - rd
            room = min(max(t.room for t in tasks), rest)
            c[A_CBW_READ] += rd - t0
            c[A_FULL] += room
            c[w] += rest - room
            return
        start = t0
        for t in tasks:
            if t.end is None:  # given back after an earlier one failed
                break
            rd = t.read_end if t.read_end is not None else start
            c[A_CBW_READ] += rd - start
            c[A_FULL] += t.room
            c[w] += t.end - rd - t.room
            start = t.end
        c[w] += now - start  # nothing, unless an after-step ran (not on this path)

    def start_copy(self, c0: int, c1: int, done, att=None) -> None:
        """Analytic twin of ``copy`` for a range with no copy in
        flight (the caller checked: nothing to wait for): claim, run the tasks
        as ``copy`` does -- one after the other, or all at once joined by one
        event -- and call ``done(ok, bytes copied)`` at their end. ``att``:
        as ``copy``'s (the guest write's time here, by phase)."""
        tasks = self.claim(c0, c1)
        cs, size = self.cs, self.disk_size
        if len(tasks) == 1:
            copied = min(tasks[0][1] * cs, size) - tasks[0][0] * cs
        else:
            copied = sum(min(t[1] * cs, size) - t[0] * cs for t in tasks)
        if tasks and self.rate_charge is not None:  # as copy(): charged, never delayed
            self.rate_charge(sum((t[1] - t[0]) * cs for t in tasks))
        if att is not None and tasks:
            t0, mine, inner = self.env._now, [t[3] for t in tasks], done

            def done(ok, nbytes):
                self._attribute(att.c, mine, t0)
                inner(ok, nbytes)
        if len(tasks) == 1 or (tasks and not self.parallel):
            self.start_tasks(tasks, lambda c: done(c is not None, copied), flags=REQ_CBW)
        elif tasks:
            join = _Join(self.env, len(tasks), done, copied)
            for t in tasks:
                self.start_task(*t, REQ_CBW, join.task_end)
        else:
            done(True, 0)

    def wait_idle(self):
        """Wait until no copy is in flight."""
        while self.inflight:
            ev = self.env.event()
            self._idle_waiters.append(ev)
            yield ev

