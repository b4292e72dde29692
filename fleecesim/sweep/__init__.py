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
import signal
import sys
import threading
from pathlib import Path

from ..errors import UserError

# These load with their module on first use (PEP 562 __getattr__; the functions
# below import what they call): the sweep's parser (sweep/cli.py) imports this
# package, and ``fleecesim sweep --help`` needs none of pandas, pyarrow, pydantic.
from .._lazy import lazy_attributes

_LAZY = {**dict.fromkeys(("clean_temp", "clear", "load_latency", "load_runs", "load_timelines",
                          "read_manifest", "write_manifest", "write_output"), "dataset"),
         "default_jobs": "execute",
         **dict.fromkeys(("Run", "SweepSpec", "canonical_hash", "load_sweep", "plan",
                          "replication_seed", "spec_from_dict"), "spec")}


__getattr__ = lazy_attributes(__name__, _LAZY, globals())

__all__ = ["Run", "SweepInterrupted", "SweepSpec", "canonical_hash", "load_latency",
           "load_runs", "load_sweep", "load_timelines", "plan", "read_manifest",
           "replication_seed", "run_sweep"]


# On Ctrl-C or SIGTERM, runs already in worker processes get this long to
# finish (and be stored) before their workers are ended; a second signal ends
# them at once.
INTERRUPT_GRACE_S = 10.0


class SweepInterrupted(KeyboardInterrupt):
    """A sweep stopped by SIGINT or SIGTERM after storing what had finished."""

    def __init__(self, signum: int, outdir: Path | None = None, stored: int = 0,
                 total: int = 0):
        super().__init__(signum)
        self.signum, self.outdir, self.stored, self.total = signum, outdir, stored, total


def _check_outdir(d: Path, name: str, flag: str) -> None:
    """Refuse, before anything runs, a results directory that cannot be one."""
    from .dataset import read_manifest
    if d.exists() and not d.is_dir():
        raise UserError(f"{flag} {d}: not a directory; expected a directory for the results")
    if d.is_dir():
        manifest = d / "sweep.json"
        if manifest.is_file():
            try:
                other = read_manifest(d).get("name")
            except (OSError, ValueError):
                other = None
            if other != name:
                raise UserError(f"{flag} {d}: holds the results of sweep {other!r}, not "
                                f"{name!r}; expected a new directory or this sweep's")
        elif any(d.iterdir()):
            raise UserError(f"{flag} {d}: not empty and not a sweep's results (no "
                            f"sweep.json); expected a new or empty directory")
        probe = d
    else:
        probe = next(p for p in d.absolute().parents if p.exists())
        if not probe.is_dir():
            raise UserError(f"{flag} {d}: {probe} is not a directory")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise UserError(f"{flag} {d}: {probe} is not writable")


def _stored(outdir: Path) -> dict[str, bool]:
    """run id -> whether its stored row finished without error."""
    import pyarrow.parquet as pq
    out = {}
    for p in (outdir / "runs").glob("*.parquet"):
        try:
            err = pq.read_table(p, columns=["error"]).column("error").to_pylist()
        except Exception:  # unreadable or foreign: not a result
            continue
        out[p.stem] = bool(err) and err[0] is None
    return out


def run_sweep(sweep: str | Path | dict, *, out: str | Path | None = None,
              results_dir: str | Path | None = None, jobs: int | None = None,
              scheduler: str | None = None, dask_local: bool = False, resume: bool = False,
              quiet: bool = False, overrides: list[str] | dict | None = None,
              replications: int | None = None, warn: bool = True) -> Path:
    """Run a sweep file (or an already-parsed dict) and return its results
    directory: ``results_dir`` if given (what ``sweep --out DIR`` passes), else
    ``<out>/<sweep name>`` (``out`` defaults to ``results``).

    ``resume`` keeps the runs already stored without error and runs the rest,
    failed ones included. On SIGINT/SIGTERM, runs in flight get
    ``INTERRUPT_GRACE_S`` to finish and be stored; then ``SweepInterrupted``.
    ``warn``: print, before the first run, what a huge or implausible point
    will cost (cost.plan_warnings; a point that cannot fit is refused either way)."""
    from .execute import default_jobs
    from .spec import load_sweep, plan, spec_from_dict
    if isinstance(sweep, dict):
        spec, base_raw = spec_from_dict(sweep)
        source = None
    else:
        spec, base_raw, _ = load_sweep(sweep)
        source = str(sweep)
    runs = plan(spec, base_raw, overrides, replications)
    if results_dir is not None:
        outdir, flag = Path(results_dir), "--out"
    else:
        outdir, flag = Path(out or "results") / spec.name, "out"
    _check_outdir(outdir, spec.name, flag)
    jobs = jobs or default_jobs()
    stored = _stored(outdir) if resume and outdir.is_dir() else {}
    todo = [r for r in runs if not stored.get(r.run_id)] if resume else runs
    _warn_before(todo, warn)
    previous = _on_sigterm_raise()
    it = None
    try:
        # connect (Dask) before touching the results directory
        if scheduler or dask_local:
            from .execute import dask
            it = dask(todo, scheduler=scheduler, jobs=jobs)
        elif jobs == 1 or len(todo) <= 1:
            from .execute import serial
            it = serial(todo)
        else:
            from .execute import processes
            it = processes(todo, min(jobs, len(todo)))
        _execute(it, spec, runs, todo, outdir, flag, source, resume, stored, quiet)
    finally:
        # no signal may cut the ending of workers short: hold them until done
        held = {signal.SIGINT, signal.SIGTERM}
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, held) if previous is not None else None
        try:
            if it is not None and hasattr(it, "close"):
                it.close()
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
                signal.pthread_sigmask(signal.SIG_SETMASK, mask)
    return outdir


def _warn_before(todo, warn: bool) -> None:
    """``run``'s pre-run checks and warnings (fleecesim/cost.py), once per
    distinct point of the runs about to start, before any of them does."""
    from ..config import Config
    from ..cost import plan_warnings
    points, seen = [], set()
    for r in todo:
        if r.config is None or (r.point_id, r.variant) in seen:
            continue  # an invalid point is a recorded failure; replications cost alike
        seen.add((r.point_id, r.variant))
        try:
            cfg = Config.model_validate(r.config)
        except Exception:  # the worker records why (worker.run_one)
            continue
        what = ", ".join([r.variant] * bool(r.variant) + [
            f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in r.axes.items()])
        points.append((f"point {r.point}" + (f" ({what})" if what else ""), cfg))
    lines = plan_warnings(points)
    if warn:
        for line in lines:
            print(f"fleecesim: warning: {line}", file=sys.stderr, flush=True)


def _execute(it, spec, runs, todo, outdir, flag, source, resume, stored, quiet) -> None:
    from .dataset import clean_temp, clear, write_manifest, write_output
    try:
        outdir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"{flag} {outdir}: cannot create it ({e.strerror or e})") from None
    if resume:
        clean_temp(outdir)
        ids = {r.run_id for r in runs}
        failed = sum(1 for rid, ok in stored.items() if rid in ids and not ok)
        if not quiet:
            print(f"resume: {len(runs) - len(todo)} of {len(runs)} runs already stored; "
                  f"running {len(todo)}" + (f", {failed} of them failed before" if failed
                                            else ""), file=sys.stderr)
    else:
        clear(outdir)
    write_manifest(outdir, spec, runs, source)

    # a bar at a terminal; off one (a log, CI, | tee) a line every few seconds
    # with the runs stored, the time elapsed and an estimate of what is left
    from ..progress import RunsProgress, mode
    bar = RunsProgress(spec.name, len(runs), len(runs) - len(todo), mode(quiet))
    stored_now = len(runs) - len(todo)

    def store(output):
        nonlocal stored_now
        write_output(outdir, output)
        stored_now += 1
        bar.stored(output["row"].get("error") is not None)

    try:
        try:
            for _run, output in it:
                store(output)
        except KeyboardInterrupt as e:
            signum = e.signum if isinstance(e, SweepInterrupted) else signal.SIGINT
            drain = getattr(it, "drain", None)
            if drain and getattr(it, "inflight", None):
                bar.clear()
                print(f"fleecesim: {signal.Signals(signum).name}: waiting up to "
                      f"{INTERRUPT_GRACE_S:g} s for {len(it.inflight)} running run(s) "
                      f"(again to stop now)", file=sys.stderr)
                try:
                    for _run, output in drain(INTERRUPT_GRACE_S):
                        store(output)
                except KeyboardInterrupt:
                    pass
            raise SweepInterrupted(signum, outdir, stored_now, len(runs)) from None
    except BaseException:
        bar.close(ok=False)
        raise
    bar.close()


def _raise_interrupted(signum, _frame):
    raise SweepInterrupted(signum)


def _on_sigterm_raise():
    """SIGTERM is handled like Ctrl-C while the sweep runs (only the main
    thread may set handlers). Returns the handler to restore, or None."""
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, _raise_interrupted)
