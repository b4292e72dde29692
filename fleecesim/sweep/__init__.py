"""Parameter sweeps: many runs of one base config, in parallel, to Parquet.

    out = run_sweep("configs/sweeps/bandwidth-x-scheme.yaml", jobs=2)
    runs = load_runs(out)            # one row per run, axis values as columns

The full list of runs is planned up front (``plan``); each has a stable id and
its replication's seed. Runs execute in this process (jobs=1), in local worker
processes (default: one per core), or on Dask (``scheduler`` address or
``dask_local``); the stored results are identical either way.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

from .dataset import (clean_temp, clear, done_ids, load_latency, load_runs, load_timelines,
                      read_manifest, write_manifest, write_output)
from .execute import default_jobs
from .spec import Run, SweepSpec, canonical_hash, load_sweep, plan, replication_seed, spec_from_dict

__all__ = ["Run", "SweepSpec", "canonical_hash", "load_latency", "load_runs", "load_sweep",
           "load_timelines", "plan", "read_manifest", "replication_seed", "run_sweep"]


def _progress_enabled(quiet: bool) -> bool:
    return not quiet and not os.environ.get("CI") and sys.stderr.isatty()


def run_sweep(sweep: str | Path | dict, *, out: str | Path | None = None, jobs: int | None = None,
              scheduler: str | None = None, dask_local: bool = False, resume: bool = False,
              quiet: bool = False, overrides: list[str] | dict | None = None,
              replications: int | None = None) -> Path:
    """Run a sweep file (or an already-parsed dict) and return its results
    directory, ``<out>/<sweep name>`` (``out`` defaults to ``results``)."""
    if isinstance(sweep, dict):
        spec, base_raw = spec_from_dict(sweep)
        source = None
    else:
        spec, base_raw, _ = load_sweep(sweep)
        source = str(sweep)
    runs = plan(spec, base_raw, overrides, replications)
    outdir = Path(out or "results") / spec.name
    outdir.mkdir(parents=True, exist_ok=True)
    if resume:
        clean_temp(outdir)
        have = done_ids(outdir)
        todo = [r for r in runs if r.run_id not in have]
    else:
        clear(outdir)
        todo = runs
    write_manifest(outdir, spec, runs, source)
    jobs = jobs or default_jobs()
    if scheduler or dask_local:
        from .execute import dask
        it = dask(todo, scheduler=scheduler, jobs=jobs)
    elif jobs == 1 or len(todo) <= 1:
        from .execute import serial
        it = serial(todo)
    else:
        from .execute import processes
        it = processes(todo, min(jobs, len(todo)))

    from tqdm import tqdm
    bar = tqdm(total=len(runs), initial=len(runs) - len(todo), unit="run",
               desc=spec.name, disable=not _progress_enabled(quiet), file=sys.stderr,
               dynamic_ncols=True)
    failed = 0
    try:
        for _run, output in it:
            write_output(outdir, output)
            failed += output["row"].get("error") is not None
            bar.update(1)
            if failed:
                bar.set_postfix(failed=failed, refresh=False)
    finally:
        bar.close()
        close = getattr(it, "close", None)
        if close:
            close()
    return outdir
