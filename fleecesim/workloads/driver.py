"""The guest: replays the request stream against the graph's top node.

Open loop: one process waits for each arrival and issues it. Closed loop:
``iodepth`` processes each issue their next request when the last completes.
A request that needs only device time completes on the fast path (no process);
otherwise it gets a process of its own.
"""
from __future__ import annotations

from collections import deque

from ..metrics import PATH_DIRECT
from .records import OP_DISCARD, OP_FLUSH, OP_READ, OP_WRITE


class GuestDriver:
    def __init__(self, env, graph, source, recorder, *, iodepth: int | None = None,
                 fast_path: bool = True, queue_limit: int | None = None,
                 max_inflight: int | None = None):
        self.env = env
        self.graph = graph      # has .top: the guest-facing node (schemes swap it)
        self.source = source
        self.rec = recorder
        self.iodepth = iodepth
        self.fast_path = fast_path
        self.issued = 0
        self.stopped = False
        self.max_inflight = max_inflight  # open loop: cap on requests outstanding
        self.inflight = 0
        self.waiting = deque()  # arrivals over the cap: (arrival, op, off, ln), FIFO

    def start(self):
        if self.iodepth:
            it = self._records()
            for _ in range(self.iodepth):
                self.env.process(self._closed(it))
        elif self.max_inflight:
            self.env.process(self._open_limited())
        else:
            self.env.process(self._open())

    def _records(self):
        for chunk in self.source:
            yield from zip(chunk["time"].tolist(), chunk["op"].tolist(),
                           chunk["offset"].tolist(), chunk["length"].tolist())

    def _open(self):
        env = self.env
        fast_path = self.fast_path
        graph = self.graph
        peek = env.peek
        rec = self.rec
        at, aop, aoff, aln, alat, apath = (rec.t.append, rec.op.append, rec.off.append,
                                           rec.len.append, rec.lat.append, rec.path.append)
        for t, op, off, ln in self._records():
            if self.stopped:
                return
            # An arrival before the next scheduled event needs no timeout of its
            # own: nothing can change the graph's state in between, so the fast
            # path may act at time t directly (devices take the time as an
            # argument). Only a request that needs a process waits for its time.
            if t > env.now and (not fast_path or t >= peek()):
                yield env.timeout(t - env.now)
            now = t if t > env.now else env.now
            self.issued += 1
            end = graph.top.fast(op, off, ln, now) if fast_path else None
            if end is not None:
                at(now)
                aop(op)
                aoff(off)
                aln(ln)
                alat(end - now)
                apath(PATH_DIRECT)
            else:
                if now > env.now:
                    yield env.timeout(now - env.now)
                env.process(self._slow(op, off, ln))

    def _closed(self, it):
        env = self.env
        graph = self.graph
        rec_add = self.rec.add
        for _t, op, off, ln in it:
            if self.stopped:
                return
            now = env.now
            self.issued += 1
            end = graph.top.fast(op, off, ln, now) if self.fast_path else None
            if end is not None:
                rec_add(now, op, off, ln, end - now, PATH_DIRECT)
                yield env.timeout(end - now)
            else:
                yield from self._slow(op, off, ln)

    def _slow(self, op, off, ln):
        env = self.env
        t = env.now
        top = self.graph.top
        if op == OP_READ:
            yield from top.read(off, ln)
            path = PATH_DIRECT
        elif op == OP_WRITE:
            path = yield from top.write(off, ln)
        elif op == OP_DISCARD:
            path = yield from top.discard(off, ln)
        else:
            path = PATH_DIRECT
        self.rec.add(t, op, off, ln, env.now - t, path)

    # --- open loop with at most ``max_inflight`` requests outstanding ---------
    # (a separate path so the unlimited one above keeps its speed)
    def _open_limited(self):
        env = self.env
        waiting = self.waiting
        limit = self.max_inflight
        for t, op, off, ln in self._records():
            if self.stopped:
                return
            if t > env.now:
                yield env.timeout(t - env.now)
            if self.inflight < limit:
                self.inflight += 1
                self.issued += 1
                env.process(self._limited(t, op, off, ln))
            else:
                waiting.append((t, op, off, ln))

    def _limited(self, arrival, op, off, ln):
        """Serve one request holding a slot; latency counts from ``arrival``
        (as qemu-io counts from submission); then hand the slot to the oldest
        waiting arrival."""
        env = self.env
        while True:
            now = env.now
            end = self.graph.top.fast(op, off, ln, now) if self.fast_path else None
            if end is not None:
                self.rec.add(arrival, op, off, ln, end - arrival, PATH_DIRECT)
                if end > now:
                    yield env.timeout(end - now)
            else:
                top = self.graph.top
                if op == OP_READ:
                    yield from top.read(off, ln)
                    path = PATH_DIRECT
                elif op == OP_WRITE:
                    path = yield from top.write(off, ln)
                elif op == OP_DISCARD:
                    path = yield from top.discard(off, ln)
                else:
                    path = PATH_DIRECT
                self.rec.add(arrival, op, off, ln, env.now - arrival, path)
            if not self.waiting or self.stopped:
                self.inflight -= 1
                return
            arrival, op, off, ln = self.waiting.popleft()
            self.issued += 1
