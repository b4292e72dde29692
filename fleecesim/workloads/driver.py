"""The guest: replays the request stream against the graph's top node.

Open loop: one process waits for each arrival and issues it. Closed loop:
``iodepth`` processes each issue their next request when the last completes.
A request that needs only device time completes on the fast path (no process);
otherwise it gets a process of its own.

Error policy (``guest.werror`` / ``guest.rerror``, fleecesim/error_policy.py):
a request that fails is reported to the guest (PATH_ERROR), completed as if
it had succeeded (``ignore``: PATH_IGNORED, its data never written), or held
(``stop``, and ``enospc`` for ENOSPC): the VM stops at once and the request
waits on the device's restart list (hw/block/virtio-blk.c:
virtio_blk_handle_rw_error); requests already in flight finish (vm_stop
drains them, and any of them that fails is held too); an open-loop arrival
while the VM is stopped is held (the guest runs nothing); a closed-loop
guest issues nothing. ``resume_after`` seconds after the stop management
sends ``cont``: the held failed requests are resubmitted first
(virtio_blk_dma_restart_cb), then the held arrivals, in order. Every held
request's latency counts from its arrival, the time held included (its
``error`` component).
"""
from __future__ import annotations

from functools import partial
from heapq import heappop, heappush

from simpy.events import NORMAL, URGENT

from ..devices.base import LAST
from ..error_policy import EIO, IGNORE, STOP, action, errname
from ..metrics import A_ERROR, COMPILED, PATH_DIRECT, PATH_ERROR, PATH_IGNORED, Attr
from ..nodes.base import Timer, drive, timer
from .records import OP_DISCARD, OP_READ, OP_WRITE


class GuestDriver:
    def __init__(self, env, graph, source, recorder, *, iodepth: int | None = None,
                 fast_path: bool = True, max_inflight: int | None = None,
                 processes: bool = False, werror: str = "report", rerror: str = "report",
                 resume_after: float | None = None, stats=None):
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
        # --- the error policy (module doc) ---
        self.werror, self.rerror = werror, rerror
        self.resume_after = resume_after
        self.stats = stats
        self.paused = False
        self.stops = 0              # times the VM stopped on an error
        self.paused_s = 0.0         # seconds paused, stops that ended
        self.paused_since = None    # paused now, since then
        self.held = 0               # arrivals held while the VM was stopped
        self.retried = 0            # failed requests held and resubmitted at cont
        self.ignored = 0            # failed requests completed as successful (ignore)
        self._held_arrivals: list = []  # (t, op, off, ln) arrived while stopped
        self._awaiting: dict = {}   # id -> arrival time of a failed request held
        # arrivals not answered yet, for ``unanswered`` at the end: slow-path
        # requests in flight (id -> arrival), and under max_inflight the
        # arrival waiting for a slot and the stream of those after it
        self._in_flight: dict = {}
        self._blocked = None
        self._arrivals = None
        self._resume_ev = env.event()
        self._stop_at = self._cont_at = -1.0  # the last stop and cont

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
            rec = self.rec  # the recorder's column appends, bound once (interpreted;
            # compiled, one add_fast call is cheaper: metrics.py COMPILED)
            self._app = None if COMPILED else (
                rec.t.append, rec.op.append, rec.off.append, rec.len.append,
                rec.lat.append, rec.path.append, rec.svc.append)
            kick = Timer()  # (Process's Initialize: an URGENT event now)
            kick.callbacks = [self._resume]
            self.env.schedule(kick, URGENT)

    def _records(self):
        for chunk in self.source:
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
        # the recorder's column appends (interpreted; compiled, its add_fast,
        # which keeps the rows of every path in one order: metrics.py COMPILED)
        app = None if COMPILED else (
            rec.t.append, rec.op.append, rec.off.append, rec.len.append, rec.lat.append,
            rec.path.append, rec.svc.append)
        if app is not None:
            at, aop, aoff, aln, alat, apath, asvc = app
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
            if self.paused:
                self._held_arrivals.append((t, op, off, ln))
                continue
            now = t if t > env._now else env._now
            self.issued += 1
            last.service = 0.0
            end = graph.top.fast(op, off, ln, now) if fast_path else None
            if end is not None:
                if app is None:
                    rec.add_fast(now, op, off, ln, end - now, last.service, PATH_DIRECT)
                else:
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
                    if self.paused:  # stopped while it waited for its issue time
                        self.issued -= 1
                        self._held_arrivals.append((t, op, off, ln))
                        continue
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
        rec = self.rec
        app = self._app
        if app is not None:
            at, aop, aoff, aln, alat, apath, asvc = app
        last = LAST
        it = self._it
        held = self._held
        self._held = None
        issue = False  # the held arrival's time has come: issue it
        if held is not None:
            t, op, off, ln, stage = held
            if stage == 2:
                if self.paused:  # stopped while it waited for its issue time
                    self.issued -= 1
                    self._held_arrivals.append((t, op, off, ln))
                else:
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
            if self.paused:
                self._held_arrivals.append((t, op, off, ln))
                continue
            now = t if t > env._now else env._now
            self.issued += 1
            last.service = 0.0
            end = graph.top.fast(op, off, ln, now) if fast_path else None
            if end is not None:
                if app is None:
                    rec.add_fast(now, op, off, ln, end - now, last.service, PATH_DIRECT)
                else:
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
        return write_now(off, ln, lambda path: self._written_now(t, op, off, ln, path, att),
                         att)

    def _written_now(self, t, op, off, ln, path, att) -> None:
        """``_write_now``'s completion: recorded, or held for a retry (a stop)."""
        if path == PATH_ERROR and self._action(op, att) == STOP:
            drive(self._retried(t, op, off, ln, att), _ignore)
            return
        self._record(t, op, off, ln, path, att)

    def _retried(self, t, op, off, ln, att):
        path, att = yield from self._hold(t, op, off, ln, att)
        self._record(t, op, off, ln, path, att)

    def _closed(self, it):
        env = self.env
        graph = self.graph
        rec_fast = self.rec.add_fast
        last = LAST
        for _t, op, off, ln in it:
            if self.stopped:
                return
            while self.paused:  # a stopped VM's guest issues nothing
                yield self._resume_ev
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
            if self._action(op, att) == IGNORE:  # the guest is told it succeeded
                path = PATH_IGNORED
                self.ignored += 1
            att.c = [0.0] * len(att.c)
            att.c[A_ERROR] = lat
        self.rec.add(t, op, off, ln, lat, path, att)

    def _slow(self, op, off, ln, t=None):
        """A request on the general path; ``t``: its arrival, if it was held."""
        t_issue = self.env.now
        if t is None:
            t = t_issue
        att = Attr()
        key = object()
        self._in_flight[key] = t
        path = yield from self._dispatch(op, off, ln, att)
        if path == PATH_ERROR and self._action(op, att) == STOP:
            path, att = yield from self._hold(t, op, off, ln, att)
        elif t < t_issue:  # held before its issue: that time is the error's
            att.c[A_ERROR] += t_issue - t
        del self._in_flight[key]
        self._record(t, op, off, ln, path, att)

    # --- the error policy (module doc; fleecesim/error_policy.py) -------------
    def _action(self, op, att) -> str:
        """What the drive's policy does with this failed request."""
        return action(self.rerror if op == OP_READ else self.werror, att.err or EIO)

    def _hold(self, t, op, off, ln, att):
        """A failed request the policy stops on: the VM stops (if it runs),
        the request waits for ``cont`` and is resubmitted, as often as it
        fails so. Returns its final (path, attribution): the time before
        its last try is the error's."""
        env = self.env
        key = object()
        while True:
            self._stop(op, att.err or EIO)
            self._awaiting[key] = t
            while self.paused:
                yield self._resume_ev
            del self._awaiting[key]
            self.retried += 1
            t_try = env.now
            att = Attr()
            path = yield from self._dispatch(op, off, ln, att)
            if path != PATH_ERROR or self._action(op, att) != STOP:
                if path != PATH_ERROR:
                    att.c[A_ERROR] += t_try - t
                return path, att

    def _stop(self, op, err) -> None:
        """The VM stops on an error (blk_error_action: BLOCK_IO_ERROR, then
        qemu_system_vmstop_request), unless it is stopped already."""
        if self.paused:
            return
        env = self.env
        self.paused = True
        self.stops += 1
        self.paused_since = self._stop_at = env.now
        if self.stats is not None:
            pol, key = (self.rerror, "rerror") if op == OP_READ else (self.werror, "werror")
            self.stats.events.append(
                (env.now, f"BLOCK_IO_ERROR ({'read' if op == OP_READ else 'write'}, "
                          f"{errname(err)}): {key}={pol} -> stop: the VM pauses"
                          + ("" if self.resume_after is not None else
                             " (resume-after=never: it stays paused)")))
        if self.resume_after is not None:
            tm = env.timeout(self.resume_after)
            tm.callbacks.append(self._cont)

    def _cont(self, _ev=None) -> None:
        """Management's ``cont``: the held failed requests are resubmitted
        (they wait on ``_resume_ev``), then the held arrivals are issued."""
        env = self.env
        self.paused = False
        self.paused_s += env.now - self.paused_since
        self.paused_since = None
        self._cont_at = env.now
        if self.stats is not None:
            self.stats.events.append(
                (env.now, f"cont after {self.resume_after:g}s: {len(self._awaiting)} failed "
                          f"requests resubmitted, {len(self._held_arrivals)} held arrivals "
                          f"issued"))
        ev, self._resume_ev = self._resume_ev, env.event()
        ev.callbacks.append(self._release)  # after the resubmitted ones
        ev.succeed()

    def _release(self, _ev) -> None:
        held, self._held_arrivals = self._held_arrivals, []
        for i, (t, op, off, ln) in enumerate(held):
            if self.paused:  # stopped again: the rest stay held
                self._held_arrivals = held[i:] + self._held_arrivals
                return
            self._issue_held(t, op, off, ln)

    def _issue_held(self, t, op, off, ln) -> None:
        """An arrival held while the VM was stopped, issued now; its latency
        counts from its arrival ``t``."""
        env = self.env
        now = env.now
        self.issued += 1
        self.held += 1
        LAST.service = 0.0
        end = self.graph.top.fast(op, off, ln, now) if self.fast_path else None
        if end is not None:
            att = Attr()
            att.svc = LAST.service
            att.c[A_ERROR] = now - t
            self.rec.add(t, op, off, ln, end - t, PATH_DIRECT, att)
        else:  # both engines alike: the generator without a process
            drive(self._slow(op, off, ln, t), _ignore)

    def unanswered(self, now: float, before: float) -> list[float]:
        """Arrival times (earlier than ``before``) of the requests that had
        arrived when the run stopped at ``now`` but were not answered: on the
        general path still, held by a stopped VM, or (max_inflight) not even
        issued, waiting for a slot. Read once the guest has stopped: it
        takes the rest of the arrival stream up to ``before``."""
        cut = min(now, before)
        out = [t for t in self._in_flight.values() if t < cut]
        out += [t for t in self._awaiting.values() if t < cut]  # failed, held for cont
        out += [t for t, *_ in self._held_arrivals if t < cut]
        if self._blocked is not None and self._blocked < cut:
            out.append(self._blocked)
            self.progress = None  # the run is over: no progress to show
            for t, *_ in self._arrivals:  # those after it, in arrival order
                if t >= cut:
                    break
                out.append(t)
        return out

    def awaiting(self) -> int:
        """Failed requests held for ``cont`` right now."""
        return len(self._awaiting)

    def arrivals_held(self, now: float) -> int:
        """Arrivals still held (not issued) when the run stopped at ``now``."""
        return sum(1 for t, *_ in self._held_arrivals if t <= now)

    def pending(self, now: float) -> list[float]:
        """Arrival times of the requests held when the run stopped at ``now``
        (failed ones awaiting ``cont``, and arrivals while stopped)."""
        return list(self._awaiting.values()) + [t for t, *_ in self._held_arrivals if t <= now]

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
        self._arrivals = arrivals = self._records()
        for t, op, off, ln in arrivals:
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
                self._blocked = t  # arrived, waits for a slot (``unanswered``)
                self._freed = env.event()
                waits = [self._freed]
                if ends:
                    waits.append(env.timeout(ends[0] - env.now))
                yield env.any_of(waits)
                now = env.now
                while ends and ends[0] <= now:
                    heappop(ends)
            while self.paused:  # the VM is stopped: arrivals queue (FIFO) until cont
                self._blocked = t
                yield self._resume_ev
                now = env.now
            self._blocked = None
            if self._stop_at <= t < self._cont_at:
                self.held += 1
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
        key = object()
        self._in_flight[key] = arrival
        path = yield from self._dispatch(op, off, ln, att)
        if path == PATH_ERROR and self._action(op, att) == STOP:
            path, att = yield from self._hold(arrival, op, off, ln, att)
        del self._in_flight[key]
        self._record(arrival, op, off, ln, path, att)
        self.slow_inflight -= 1
        if self._freed is not None and not self._freed.triggered:
            self._freed.succeed()


def _ignore(_value):
    pass
