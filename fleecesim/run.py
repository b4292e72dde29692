"""Run one scenario: build devices, disk, workload and scheme; run warm-up,
backup and tail; check the data oracle; summarise.

``run(cfg)`` returns a Result for a config with one scheme; ``run_all(cfg)``
runs every variant of a config on the same guest workload (same seed).
"""
from __future__ import annotations

import time
import traceback

import pandas as pd
import simpy

from . import __version__
from .config import Config, variants
from .devices import build_device
from .errors import UserError
from .nodes.base import Environment
# one VM's model (vm.py), re-exported: callers import them from here
from .vm import (VM, Result, check_fits, error_policy_summary, guest_overload,  # noqa: F401
                 initial_zero_map, make_source, oracle_counts, state_estimate, state_is_sparse,
                 timeline_frame)


def simulate(cfg: Config, name: str | None = None, *, fast_path: bool = True,
             keep_arrays: bool = False, source=None, analytic: bool | None = None,
             progress: bool = False) -> Result:
    """Run a config that names one scheme. Never raises for model errors: the
    exception text goes into the summary. ``source``: an iterable of
    RECORD_DTYPE chunks to replay instead of the config's workload (e.g. the
    exact request list a real-QEMU run used).

    ``fast_path=False`` is the reference engine: every guest request through
    the nodes' generators in a process of its own, every copy task a process.
    ``analytic`` (default: ``fast_path``) chooses the copy engine alone:
    copies and slow guest requests as callbacks on device completions
    (the analytic engine) or as processes. ``progress``: progress on stderr (progress.py):
    True (a bar at a terminal, else lines), "bar", "lines", or False.
    """
    wall0 = time.perf_counter()
    name = name or (cfg.name if cfg.vms else cfg.scheme)
    summary = {"name": name, "scheme": cfg.backup.scheme if cfg.vms else cfg.scheme,
               "seed": cfg.run.seed, "fleecesim_version": __version__}
    bar = None
    if progress:
        from .progress import RunProgress, mode
        bar = RunProgress(name, cfg, mode() if progress is True else progress)
    try:
        if cfg.vms:  # several VMs on shared devices (fleet.py)
            from .fleet import simulate_fleet
            res = simulate_fleet(cfg, name, summary, fast_path,
                                 fast_path if analytic is None else analytic, bar)
        else:
            res = _simulate(cfg, name, summary, fast_path, keep_arrays, source,
                            fast_path if analytic is None else analytic, bar)
    except UserError as e:  # bad input (e.g. a malformed trace line): one clear line
        summary["error"] = str(e)
        summary["input_error"] = True
        summary["oracle_ok"] = False
        res = Result(name, summary, pd.DataFrame(), pd.DataFrame())
    except Exception as e:  # a failed run is a recorded result, not a crash
        summary["error"] = f"{type(e).__name__}: {e}"
        summary["traceback"] = traceback.format_exc()
        summary["oracle_ok"] = False
        res = Result(name, summary, pd.DataFrame(), pd.DataFrame())
    finally:
        if bar is not None:
            bar.close(ok="error" not in summary)
    res.summary["wall_time_s"] = time.perf_counter() - wall0
    res.summary["config"] = cfg.dump()
    return res


def _simulate(cfg, name, summary, fast_path, keep_arrays, source, analytic, bar) -> Result:
    check_fits(cfg)
    # SimPy's loop with ``step`` inlined (nodes/base.py); the reference engine
    # (neither fast path nor analytic copies) keeps SimPy's own.
    env = Environment() if fast_path or analytic else simpy.Environment()
    env.sparse = state_is_sparse(cfg)  # per-cluster state: numpy arrays or sparse pages
    env.bulk_zeroes = True  # one VM: its backup job is its target's only writer (jobs/bulk.py)
    # The copy engine (read by BlockCopy and the guest driver): copies and slow
    # guest requests as callbacks on device completions, or as processes.
    env.analytic = analytic
    devices = {k: build_device(k, spec) for k, spec in cfg.devices.items()}
    vm = VM(env, cfg, devices, fast_path=fast_path, analytic=analytic, source=source, bar=bar)
    if bar is not None:
        bar.started(env)
    if cfg.run.warmup > 0:
        env.run(until=cfg.run.warmup)
    vm.begin()
    env.run(until=vm.until_done())
    vm.end()
    if bar is not None:
        bar.tail()
    if cfg.run.tail > 0:
        env.run(until=vm.t_end + cfg.run.tail)
    vm.guest.stopped = True
    if bar is not None:
        bar.finishing()
    return vm.result(name, summary, env.now, keep_arrays)


def run(cfg: Config, **kw) -> Result:
    return simulate(cfg, **kw)


def run_all(cfg: Config, **kw) -> list[Result]:
    return [simulate(c, name, **kw) for name, c in variants(cfg)]
