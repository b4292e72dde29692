"""The node interface.

Every node offers ``read``, ``write`` and ``discard`` as SimPy generator
methods taking byte ``offset``/``length`` and ``flags``. ``read`` returns the
data it read: the generation number of every cluster in the (cluster-aligned)
range, which is how copies carry content for the data oracle. ``write`` takes
such data (``None`` for new guest data); ``write`` and ``discard`` return the
path the request took (metrics.PATH_*): PATH_ERROR means it failed.

``att`` (metrics.Attr, or None): a guest request's latency attribution
(metrics.py: where a request's time went). The node that submits the guest's own device request sets
``att.svc`` from devices.base.LAST right after the submit; the copy-before-
write filter adds its phases (copy, waits). Other nodes pass it on or ignore it.

``fast`` is the optional synchronous path: when a request needs nothing but
device time, a node can apply it at once and return its completion time, so
the guest driver records it without a SimPy process. It returns None when the
request must take the general (generator) path. Both paths must agree; tests
run scenarios with the fast path off and compare.
"""
from __future__ import annotations

from heapq import heappop, heappush

import simpy
from simpy.core import EmptySchedule, StopSimulation
from simpy.events import NORMAL, URGENT, Event

REQ_ZERO = 1          # write zeroes: no data moves
REQ_UNNECESSARY = 2   # the seed's BDRV_REQ_UNNECESSARY: drop rather than wait
REQ_CBW = 4           # a copy-before-write's copy (someone's guest write waits on it);
                      # only a target with cbw-priority treats it differently


class Node:
    def __init__(self, env, name: str, cluster_size: int):
        self.env = env
        self.name = name
        self.cs = cluster_size

    def clusters(self, offset: int, length: int) -> tuple[int, int]:
        """Cluster index range [c0, c1) touched by a byte range."""
        cs = self.cs
        return offset // cs, (offset + max(length, 1) + cs - 1) // cs

    def fast(self, op: int, offset: int, length: int, now: float) -> float | None:
        return None

    def read(self, offset: int, length: int, flags: int = 0, att=None):
        raise NotImplementedError
        yield  # pragma: no cover

    def write(self, offset: int, length: int, data=None, flags: int = 0, att=None):
        raise NotImplementedError
        yield  # pragma: no cover

    def discard(self, offset: int, length: int, flags: int = 0, att=None):
        raise NotImplementedError
        yield  # pragma: no cover

    def read_at(self, offset: int, length: int):
        """Analytic twin of ``read`` (see the end of this module), or None."""
        return None

    def write_at(self, offset: int, length: int, data=None, flags: int = 0):
        """Analytic twin of ``write`` (see the end of this module), or None."""
        return None

    def read_cb(self, offset: int, length: int, done) -> bool:
        """Analytic twin of a ``read`` that takes several device steps where
        ``read_at`` returned None: ``done(data)`` at its end; False (nothing
        done) if it needs the generator."""
        return False

    def promote(self, offset: int, length: int) -> None:
        """Hint: someone now waits for writes queued here in this range. Only a
        node that keeps its own priority queue acts on it (BackupTarget)."""


# --- analytic submission: completions as callbacks, no process per request ---
# (Hot paths read ``env._now``, SimPy's attribute behind the ``now`` property:
# the property's call costs more than the arithmetic around it.)
# A node may also offer ``read_at(offset, length)`` and ``write_at(offset,
# length, data, flags)``: submit now, without a generator, and return
# ``(end, finish)`` — ``finish()`` must be called at time ``end`` (or at once,
# if ``end`` is None: the request took no time and the generator twin would not
# have yielded) and returns what ``read``/``write`` would have returned. They
# return None when the request needs the general (generator) path now (it may
# wait on something other than a device). Copies that nobody waits on run
# through these with one timer callback per completion instead of a process.

class Timer:
    """A Timeout without Timeout's constructor: what ``env.step`` and
    ``drive`` need of a triggered event (``callbacks``, ``_ok``, ``_value``),
    scheduled as a Timeout is (``env.schedule``, NORMAL priority). The timer
    callbacks and the analytic guest driver make one per device completion."""

    __slots__ = ("callbacks",)
    _ok = True
    _value = None


# ``env.schedule`` inlined below (the same heap entry: time ``now + delay``,
# priority, the next event id): one call less per event, and the events are
# most of a run's calls.

def timer(env, delay: float) -> Timer:
    """``env.timeout(delay)`` for ``drive``-run generators and callbacks."""
    t = Timer()
    t.callbacks = []
    heappush(env._queue, (env._now + delay, NORMAL, next(env._eid), t))
    return t


def at(env, end, fn) -> None:
    """Call ``fn()`` at time ``end`` (now, synchronously, if ``end`` is None)."""
    if end is None:
        fn()
    else:
        t = Timer()
        t.callbacks = [lambda _ev: fn()]
        now = env._now
        heappush(env._queue, (now + (end - now), NORMAL, next(env._eid), t))


def call_at(env, end, cb) -> None:
    """``at`` for a callback that takes the event (a bound method: no wrapper
    made per call); ``cb(None)`` at once if ``end`` is None."""
    if end is None:
        cb(None)
    else:
        t = Timer()
        t.callbacks = [cb]
        now = env._now
        heappush(env._queue, (now + (end - now), NORMAL, next(env._eid), t))


def drive(gen, done, ev=None) -> None:
    """Run generator ``gen`` as a SimPy process would (resumed in the callbacks
    of the events it yields), but without a process: no Initialize event, no
    process event at its end; ``done(value)`` is called with its return value."""
    while True:
        try:
            if ev is None:
                nxt = next(gen)
            elif ev._ok:
                nxt = gen.send(ev._value)
            else:
                ev._defused = True
                nxt = gen.throw(ev._value)
        except StopIteration as e:
            done(e.value)
            return
        if nxt.callbacks is not None:  # not yet processed: continue when it is
            nxt.callbacks.append(lambda e: drive(gen, done, e))
            return
        ev = nxt


class Environment(simpy.Environment):
    """SimPy's environment with ``step`` inlined into ``run`` (the analytic
    engine's; the reference engine keeps SimPy's own loop). The same events in
    the same order — the heap is SimPy's, popped the same way — but one Python
    call less per event: with a few events per guest request, ``step``'s call
    was a tenth of a run. ``run`` is SimPy's, with the loop body of ``step``
    (its StopSimulation and failed-event handling included) in place of the
    call."""

    def run(self, until=None):
        if until is not None:
            if not isinstance(until, Event):
                at_ = until if isinstance(until, int) else float(until)
                if at_ <= self.now:
                    raise ValueError(
                        f'until ({at_}) must be greater than the current simulation time')
                until = Event(self)
                until._ok = True
                until._value = None
                self.schedule(until, URGENT, at_ - self.now)
            elif until.callbacks is None:
                return until.value
            until.callbacks.append(StopSimulation.callback)
        queue = self._queue
        try:
            while True:
                try:
                    self._now, _, _, event = heappop(queue)
                except IndexError:
                    raise EmptySchedule from None
                callbacks, event.callbacks = event.callbacks, None
                try:
                    for callback in callbacks:
                        callback(event)
                except StopSimulation:
                    event.callbacks = callbacks[callbacks.index(callback) + 1:]
                    self.schedule(event, simpy.core.EventPriority(-1))
                    raise
                if not event._ok and not hasattr(event, '_defused'):
                    exc = type(event._value)(*event._value.args)
                    exc.__cause__ = event._value
                    raise exc
        except StopSimulation as exc:
            return exc.args[0]
        except EmptySchedule:
            if until is not None:
                assert not until.triggered
                raise RuntimeError(
                    f'No scheduled events left but "until" event was not '
                    f'triggered: {until}') from None
        return None
