"""Where runs execute: in this process, in local worker processes, or on a
Dask distributed cluster. Each yields (run, output) as runs finish; output
order does not matter (the dataset is read back in the sweep's order), and a
run's output is the same whichever executor ran it.
"""
from __future__ import annotations

import logging
import multiprocessing
import os
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed

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


def processes(runs: list[Run], jobs: int) -> Iterator[tuple[Run, dict]]:
    """Local worker processes. forkserver with the simulator preloaded: workers
    start in milliseconds and never inherit this process's threads."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["fleecesim.sweep.worker", "fleecesim.run"])
    pool = ProcessPoolExecutor(max_workers=jobs, mp_context=ctx)
    try:
        futs = {pool.submit(run_one, r): r for r in runs}
        for f in as_completed(futs):
            r = futs[f]
            try:
                yield r, f.result()
            except Exception as e:  # the worker died (killed, out of memory): still a row
                yield r, failed_output(r, f"{type(e).__name__}: {e}")
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def dask(runs: list[Run], *, scheduler: str | None = None,
         jobs: int | None = None) -> Iterator[tuple[Run, dict]]:
    """An existing cluster (``scheduler`` address) or, without one, a LocalCluster
    of ``jobs`` single-threaded worker processes, closed when done."""
    from distributed import Client, LocalCluster
    from distributed import as_completed as dask_completed

    cluster = None
    if scheduler:
        client = Client(scheduler, timeout="30s")
    else:
        cluster = LocalCluster(n_workers=jobs or 2, threads_per_worker=1, processes=True,
                               dashboard_address=None, silence_logs=logging.ERROR)
        client = Client(cluster)
    try:
        futs = [client.submit(run_one, r, key=f"fleecesim-run-{r.run_id}") for r in runs]
        by_key = {f.key: r for f, r in zip(futs, runs)}
        for f in dask_completed(futs):
            r = by_key[f.key]
            try:
                out = f.result()
            except Exception as e:  # the worker died or the task was lost
                out = failed_output(r, f"{type(e).__name__}: {e}")
            f.release()
            yield r, out
    finally:
        client.close(timeout=10)
        if cluster is not None:
            cluster.close(timeout=10)
