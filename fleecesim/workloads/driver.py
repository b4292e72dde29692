"""The guest: replays the request stream against the graph's top node.

Open loop: one process waits for each arrival and issues it. Closed loop:
``iodepth`` processes each issue their next request when the last completes.
A request that needs only device time completes on the fast path (no process);
otherwise it gets a process of its own.
"""
from __future__ import annotations

from functools import partial
from heapq import heappop, heappush

from simpy.events import NORMAL, URGENT

from ..devices.base import LAST
from ..metrics import A_ERROR, PATH_DIRECT, PATH_ERROR, Attr
from ..nodes.base import Timer, drive, timer
from .records import OP_DISCARD, OP_READ, OP_WRITE


class GuestDriver:
    def __init__(self, env, graph, source, recorder, *, iodepth: int | None = None,
                 fast_path: bool = True, max_inflight: int | None = None,
                 processes: bool = False):
        self.env = env
        self.graph = graph      # has .top: the guest-facing node (schemes swap it)
        self.source = source
        self.rec = recorder
        self.iodepth = iodepth
        self.fast_path = fast_path
        # a slow-path request in a process of its own (the reference engine),
        # or its generator driven without one (nodes/base.py: drive)
        self.processes = processes
        self.issued = 0
        self.stopped = False
        self.max_inflight = max_inflight  # open loop: cap on requests outstanding
        self.slow_inflight = 0  # max_inflight: slow-path requests holding a slot
        self._ends: list[float] = []  # max_inflight: end times of fast-path ones
        self._freed = None  # max_inflight: fires when a slow-path request ends
        # progress(now): called every PROGRESS_EVERY requests (a progress bar);
        # no events of its own, so it cannot change what the run does
        self.progress = None

    def start(self):
        if self.iodepth:
            it = self._records()
            for _ in range(self.iodepth):
                self.env.process(self._closed(it))
        elif self.max_inflight:
            self.env.process(self._open_limited())
        elif self.processes:
            self.env.process(self._open())
        else:  # the analytic engine: callbacks, started as a process is
            # ``_records`` unrolled (a generator's resume per request saved):
            # the current chunk's records, the next chunk fetched when it ends
            self._chunks = iter(self.source)
            self._it = iter(())
            self._held = None
            rec = self.rec  # the recorder's column appends, bound once
            self._app = (rec.t.append, rec.op.append, rec.off.append, rec.len.append,
                         rec.lat.append, rec.path.append, rec.svc.append)
            kick = Timer()  # (Process's Initialize: an URGENT event now)
            kick.callbacks = [self._resume]
            self.env.schedule(kick, URGENT)

    def _records(self):
        for chunk in self.source:
            if self.progress is not None:
                self.progress(self.env.now)
            yield from zip(chunk["time"].tolist(), chunk["op"].tolist(),
                           chunk["offset"].tolist(), chunk["length"].tolist())

    def _open(self):
        env = self.env
        # a Timeout for a process (the reference engine), else a bare Timer
        wait = env.timeout if self.processes else partial(timer, env)
        fast_path = self.fast_path
        graph = self.graph
        queue = env._queue  # env.peek() and env.now without their calls (hot loop)
        rec = self.rec
        at, aop, aoff, aln, alat, apath, asvc = (
            rec.t.append, rec.op.append, rec.off.append, rec.len.append, rec.lat.append,
            rec.path.append, rec.svc.append)
        last = LAST  # the service time of the fast path's device request (attribution)
        for t, op, off, ln in self._records():
            if self.stopped:
                return
            # An arrival before the next scheduled event needs no timeout of its
            # own: nothing can change the graph's state in between, so the fast
            # path may act at time t directly (devices take the time as an
            # argument). Only a request that needs a process waits for its time.
            if t > env._now and (not fast_path or (queue and t >= queue[0][0])):
                yield wait(t - env._now)
            now = t if t > env._now else env._now
            self.issued += 1
            last.service = 0.0
            end = graph.top.fast(op, off, ln, now) if fast_path else None
            if end is not None:
                at(now)
                aop(op)
                aoff(off)
                aln(ln)
                alat(end - now)
                apath(PATH_DIRECT)
                asvc(last.service)
            else:
                if now > env._now:
                    yield wait(now - env._now)
                if self.processes:
                    env.process(self._slow(op, off, ln))
                elif op != OP_WRITE or not self._write_now(op, off, ln):
                    # the same generator, without a process (nodes/base.py)
                    drive(self._slow(op, off, ln), _ignore)

    # ``_open`` as callbacks (the analytic engine): the same statements, but a
    # wait is a Timer whose callback is ``_resume`` itself, where the generator
    # took a Timer, a closure, ``drive`` and a ``send`` per wait (a wait for
    # every other guest request when a backup keeps an event queued). The
    # arrival waiting is held in ``_held`` with the point it waits at (1:
    # its arrival, 2: its issue on the slow path); the Timers are made and
    # scheduled where the generator's ``timer`` calls were, so every event
    # gets the same time and id: the same order.
    def _resume(self, _ev=None):
        env = self.env
        fast_path = self.fast_path
        graph = self.graph
        queue = env._queue
        at, aop, aoff, aln, alat, apath, asvc = self._app
        last = LAST
        it = self._it
        held = self._held
        self._held = None
        issue = False  # the held arrival's time has come: issue it
        if held is not None:
            t, op, off, ln, stage = held
            if stage == 2:
                self._slow_now(op, off, ln)
            else:
                issue = True
        while True:
            if issue:
                issue = False
            else:
                for t, op, off, ln in it:
                    break
                else:
                    it = self._next_chunk()
                    if it is None:
                        return
                    continue
                if self.stopped:
                    return
                if t > env._now and (not fast_path or (queue and t >= queue[0][0])):
                    # self._wait(t - env._now, (t, op, off, ln, 1)), inlined
                    self._held = (t, op, off, ln, 1)
                    w = Timer()
                    w.callbacks = [self._resume]
                    heappush(queue, (env._now + (t - env._now), NORMAL, next(env._eid), w))
                    return
            now = t if t > env._now else env._now
            self.issued += 1
            last.service = 0.0
            end = graph.top.fast(op, off, ln, now) if fast_path else None
            if end is not None:
                at(now)
                aop(op)
                aoff(off)
                aln(ln)
                alat(end - now)
                apath(PATH_DIRECT)
                asvc(last.service)
            else:
                if now > env._now:
                    self._wait(now - env._now, (t, op, off, ln, 2))
                    return
                self._slow_now(op, off, ln)

    def _next_chunk(self):
        """The next chunk's records (``_records``' next ``zip``), or None."""
        for chunk in self._chunks:
            if self.progress is not None:
                self.progress(self.env.now)
            self._it = it = zip(chunk["time"].tolist(), chunk["op"].tolist(),
                                chunk["offset"].tolist(), chunk["length"].tolist())
            return it
        return None

    def _wait(self, delay, held):
        """``_resume`` again after ``delay`` (nodes/base.py ``timer``)."""
        self._held = held
        t = Timer()
        t.callbacks = [self._resume]
        env = self.env
        heappush(env._queue, (env._now + delay, NORMAL, next(env._eid), t))

    def _slow_now(self, op, off, ln):
        if op != OP_WRITE or not self._write_now(op, off, ln):
            # the same generator, without a process (nodes/base.py)
            drive(self._slow(op, off, ln), _ignore)

    def _write_now(self, op, off, ln) -> bool:
        """A slow-path guest write as callbacks (the top node's ``write_now``,
        e.g. a copy-before-write), recorded at its completion as ``_slow``
        does; False if the top node cannot (the generator path runs)."""
        write_now = getattr(self.graph.top, "write_now", None)
        if write_now is None:
            return False
        t = self.env.now
        att = Attr()
        return write_now(off, ln, lambda path: self._record(t, op, off, ln, path, att), att)

    def _closed(self, it):
        env = self.env
        graph = self.graph
        rec_fast = self.rec.add_fast
        last = LAST
        for _t, op, off, ln in it:
            if self.stopped:
                return
            now = env.now
            self.issued += 1
            last.service = 0.0
            end = graph.top.fast(op, off, ln, now) if self.fast_path else None
            if end is not None:
                rec_fast(now, op, off, ln, end - now, last.service)
                yield env.timeout(end - now)
            else:
                yield from self._slow(op, off, ln)

    def _dispatch(self, op, off, ln, att):
        """The general path: the request through the top node's generators;
        ``att`` (metrics.Attr) collects where its time goes."""
        top = self.graph.top
        if op == OP_READ:
            yield from top.read(off, ln, att=att)
            return PATH_DIRECT
        if op == OP_WRITE:
            return (yield from top.write(off, ln, att=att))
        if op == OP_DISCARD:
            return (yield from top.discard(off, ln, att=att))
        return PATH_DIRECT

    def _record(self, t, op, off, ln, path, att):
        lat = self.env.now - t
        if path == PATH_ERROR:  # a failed request: all its time is the error's
            att.c = [0.0] * len(att.c)
            att.c[A_ERROR] = lat
        self.rec.add(t, op, off, ln, lat, path, att)

    def _slow(self, op, off, ln):
        t = self.env.now
        att = Attr()
        path = yield from self._dispatch(op, off, ln, att)
        self._record(t, op, off, ln, path, att)

    # --- open loop with at most ``max_inflight`` requests outstanding ---------
    # A separate path so the unlimited one above keeps its speed. One process
    # issues arrivals in order (so waiting arrivals are served FIFO); a slot
    # held by a fast-path request frees at its known end time (a heap, no
    # process), one held by a slow-path request when its process ends. As in
    # ``_open``, a request whose issue time comes before the next scheduled
    # event is issued at that time without a timeout.
    def _open_limited(self):
        env = self.env
        limit = self.max_inflight
        fast_path = self.fast_path
        graph = self.graph
        peek = env.peek
        rec_fast = self.rec.add_fast
        last = LAST
        ends = self._ends           # heap: end times of fast-path requests in flight
        now = env.now               # issue time of the last request (>= env.now)
        for t, op, off, ln in self._records():
            if self.stopped:
                return
            if t > now:
                if t >= peek():
                    yield env.timeout(t - env.now)
                now = t if t > env.now else env.now
            while ends and ends[0] <= now:
                heappop(ends)
            while len(ends) + self.slow_inflight >= limit:
                if ends and ends[0] < peek():
                    now = heappop(ends)  # nothing happens before it: that slot frees first
                    continue
                self._freed = env.event()
                waits = [self._freed]
                if ends:
                    waits.append(env.timeout(ends[0] - env.now))
                yield env.any_of(waits)
                now = env.now
                while ends and ends[0] <= now:
                    heappop(ends)
            self.issued += 1
            last.service = 0.0
            end = graph.top.fast(op, off, ln, now) if fast_path else None
            if end is not None:
                rec_fast(t, op, off, ln, end - t, last.service)
                heappush(ends, end)
            else:
                if now > env.now:
                    yield env.timeout(now - env.now)
                self.slow_inflight += 1
                if self.processes:
                    env.process(self._slow_limited(t, op, off, ln))
                else:
                    drive(self._slow_limited(t, op, off, ln), _ignore)

    def _slow_limited(self, arrival, op, off, ln):
        """A slow-path request holding a slot; latency counts from ``arrival``
        (as qemu-io counts from submission), not from the issue."""
        att = Attr()
        path = yield from self._dispatch(op, off, ln, att)
        self._record(arrival, op, off, ln, path, att)
        self.slow_inflight -= 1
        if self._freed is not None and not self._freed.triggered:
            self._freed.succeed()


def _ignore(_value):
    pass
