"""Where runs execute: in this process, in local worker processes, or on a
Dask distributed cluster. Each yields (run, output) as runs finish; output
order does not matter (the dataset is read back in the sweep's order), and a
run's output is the same whichever executor ran it.
"""
from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import time
from collections import Counter, deque
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool

from ..errors import UserError
from .spec import Run
from .worker import failed_output, run_one


def default_jobs() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def serial(runs: list[Run]) -> Iterator[tuple[Run, dict]]:
    for r in runs:
        yield r, run_one(r)


# A run whose worker process dies (SIGKILL, out of memory) goes back in the
# queue; after this many losses it is recorded as failed instead: a run that
# kills its worker every time must not stall the sweep.
MAX_LOST = 3
CONNECT_TIMEOUT_S = 5  # --scheduler: an unreachable address fails this fast


def _ignore_sigint() -> None:
    # Ctrl-C on a terminal reaches every process in the foreground group: the
    # workers leave it to the sweep (which waits a grace period, then ends them)
    # instead of failing their running runs with KeyboardInterrupt.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class Processes:
    """Local worker processes. forkserver with the simulator preloaded: workers
    start in milliseconds and never inherit this process's threads.

    At most ``jobs`` runs are submitted at a time, so every submitted run is
    one a worker may be running: when a worker dies the pool breaks, and
    exactly those runs are re-queued (up to ``MAX_LOST`` losses each) on a new
    pool. Iterate for (run, output) pairs; on an interrupt, ``drain(grace)``
    yields what finishes within ``grace`` seconds; ``close()`` ends every
    worker (always call it)."""

    def __init__(self, runs: list[Run], jobs: int):
        self.todo = deque(runs)
        self.jobs = jobs
        self.inflight: dict = {}
        self.lost: Counter = Counter()
        self.requeued = 0
        self.pool: ProcessPoolExecutor | None = None

    def _start(self) -> None:
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(["fleecesim.sweep.worker", "fleecesim.run"])
        self.pool = ProcessPoolExecutor(max_workers=self.jobs, mp_context=ctx,
                                        initializer=_ignore_sigint)

    def _fill(self) -> None:
        while self.todo and len(self.inflight) < self.jobs:
            try:
                f = self.pool.submit(run_one, self.todo[0])
            except BrokenProcessPool:  # a worker died since the last look
                if self.inflight:
                    return  # __iter__ sees it through them and restarts
                self.pool.shutdown(wait=True)
                self._start()
                continue
            self.inflight[f] = self.todo.popleft()

    def _collect(self, f) -> tuple[Run, dict] | None:
        """The output of a finished future, or None if its run was re-queued."""
        r = self.inflight.pop(f)
        try:
            return r, f.result()
        except BrokenProcessPool:
            self.lost[r.run_id] += 1
            n = self.lost[r.run_id]
            if n >= MAX_LOST:
                return r, failed_output(r, f"WorkerLost: the worker process running it died "
                                           f"{n} times (killed, or out of memory)")
            self.todo.appendleft(r)
            self.requeued += 1
            return None
        except Exception as e:  # e.g. the output did not pickle: still a row
            return r, failed_output(r, f"{type(e).__name__}: {e}")

    def __iter__(self) -> Iterator[tuple[Run, dict]]:
        if self.pool is None:
            self._start()
        self._fill()
        while self.inflight:
            done, _ = wait(self.inflight, return_when=FIRST_COMPLETED)
            if any(isinstance(f.exception(), BrokenProcessPool) for f in done):
                # the pool is gone: every other in-flight run ends now too
                done, _ = wait(self.inflight)
                outs = [self._collect(f) for f in list(done)]
                self.pool.shutdown(wait=True)
                self._start()
            else:
                outs = [self._collect(f) for f in done]
            for o in outs:
                if o is not None:
                    yield o
            self._fill()

    def drain(self, grace: float) -> Iterator[tuple[Run, dict]]:
        """Start nothing new; yield the runs in flight that finish within
        ``grace`` seconds (the rest are dropped by ``close``)."""
        self.todo.clear()
        deadline = time.monotonic() + grace
        while self.inflight and (left := deadline - time.monotonic()) > 0:
            done, _ = wait(self.inflight, timeout=left, return_when=FIRST_COMPLETED)
            for f in done:
                if isinstance(f.exception(), BrokenProcessPool):
                    self.inflight.pop(f)
                    continue
                o = self._collect(f)
                if o is not None:
                    yield o

    def close(self) -> None:
        """End every worker: gracefully when nothing is running, else at once."""
        pool, self.pool = self.pool, None
        if pool is None:
            return
        if self.inflight:
            # ProcessPoolExecutor has no public way to end running workers
            # before Python 3.14 (terminate_workers): its process table it is.
            procs = list((getattr(pool, "_processes", None) or {}).values())
            pool.shutdown(wait=False, cancel_futures=True)
            for p in procs:
                if p.is_alive():
                    p.terminate()
            for p in procs:
                p.join(5)
                if p.is_alive():
                    p.kill()
                    p.join()
            self.inflight.clear()
        pool.shutdown(wait=True, cancel_futures=True)


def processes(runs: list[Run], jobs: int) -> Processes:
    """(run, output) pairs from local worker processes; call ``close()``."""
    return Processes(runs, jobs)


def dask(runs: list[Run], *, scheduler: str | None = None,
         jobs: int | None = None) -> "_DaskResults":
    """An existing cluster (``scheduler`` address) or, without one, a LocalCluster
    of ``jobs`` single-threaded worker processes, closed when done. Connects
    now (an unreachable scheduler is a UserError before anything is written);
    returns the iterator of (run, output)."""
    from distributed import Client, LocalCluster

    cluster = None
    if scheduler:
        try:
            client = Client(scheduler, timeout=f"{CONNECT_TIMEOUT_S}s")
        except (OSError, TimeoutError, ValueError, TypeError) as e:
            why = str(e).splitlines()[0] if str(e) else type(e).__name__
            if "Timed out" in why or isinstance(e, TimeoutError):
                why = f"no answer within {CONNECT_TIMEOUT_S} s"
            raise UserError(f"--scheduler {scheduler}: cannot connect to a Dask scheduler "
                            f"there ({why})") from None
    else:
        cluster = LocalCluster(n_workers=jobs or 2, threads_per_worker=1, processes=True,
                               dashboard_address=None, silence_logs=logging.ERROR)
        client = Client(cluster)
    return _DaskResults(runs, client, cluster)


class _DaskResults:
    """(run, output) pairs as Dask finishes them; ``close()`` releases the
    client (and the LocalCluster) whether or not iteration started."""

    def __init__(self, runs, client, cluster):
        self.runs, self.client, self.cluster = runs, client, cluster

    def __iter__(self) -> Iterator[tuple[Run, dict]]:
        from distributed import as_completed as dask_completed
        futs = [self.client.submit(run_one, r, key=f"fleecesim-run-{r.run_id}")
                for r in self.runs]
        by_key = {f.key: r for f, r in zip(futs, self.runs)}
        for f in dask_completed(futs):
            r = by_key[f.key]
            try:
                out = f.result()
            except Exception as e:  # the worker died or the task was lost
                out = failed_output(r, f"{type(e).__name__}: {e}")
            f.release()
            yield r, out

    def close(self) -> None:
        client, self.client = self.client, None
        if client is not None:
            client.close(timeout=10)
            if self.cluster is not None:
                self.cluster.close(timeout=10)
