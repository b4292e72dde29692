"""Simulator speed: simulated guest I/Os per wall second vs bare SimPy timeouts.

Prints, for the reference config (configs/fleecing-vs-legacy.yaml, shortened to
``--size``, default 16 GiB) under fleecing-push and legacy-backup, and for the
guest alone (scheme none, 50k IOPS), guest requests per wall second, bare
`env.timeout` events per second measured in the same process, and their ratio
(the engine's target: >= 0.3). Repeats and quotes medians.

    python benchmarks/bench_sim.py [--repeat 5] [--size 64GiB] [--engine reference]
    python benchmarks/bench_sim.py --events     # SimPy events per guest I/O, by kind
    python benchmarks/bench_sim.py --profile    # where the time goes (cProfile, by layer)

``--size 64GiB`` is the reference config unshortened (wall time
per scheme). ``--engine reference`` measures the process-per-task engine
(``fast_path=False``) for comparison. ``--profile`` runs each scheme once
under cProfile and prints its self time by layer (SimPy, devices, nodes, jobs,
guest driver, numpy, C builtins such as heapq and array appends) and the
hottest functions; cProfile inflates small calls, so take shares, not
seconds, from it. On the compiled build, cProfile sees the compiled functions
only in a profiling build (``FLEECESIM_PROFILE=1 pip install -e .``: Cython's
``profile`` directive, setup.py); it says which build it profiles.

The machine is shared and noisy: compare ratios (each run's rate over the
bare SimPy rate measured in the same process), not wall times across runs.
"""
from __future__ import annotations

import argparse
import collections
import statistics
import time
from pathlib import Path

import simpy

from fleecesim.config import load_config
from fleecesim.run import simulate

REF = Path(__file__).resolve().parents[1] / "configs" / "fleecing-vs-legacy.yaml"


def bare_timeouts(n: int = 1_000_000) -> float:
    env = simpy.Environment()

    def loop():
        for _ in range(n):
            yield env.timeout(0.001)

    env.process(loop())
    t = time.perf_counter()
    env.run()
    return n / (time.perf_counter() - t)


def guest_rate(scheme: str, size: str, extra=(), fast: bool = True,
               progress=False) -> tuple[float, int, float]:
    cfg = load_config(REF, [f"backup.scheme={scheme}", f"disk.size={size}", "run.warmup=5s",
                            *extra])
    t = time.perf_counter()
    s = simulate(cfg, fast_path=fast, progress=progress).summary
    wall = time.perf_counter() - t
    assert s["oracle_ok"] or scheme == "none", s.get("error")
    return s["guest_ios"] / wall, s["guest_ios"], wall


def count_events(scheme: str, size: str, fast: bool) -> None:
    """Processed SimPy events by kind for one run, and per guest I/O (the hot
    paths push onto SimPy's heap without ``schedule``, and the fast engine's
    loop inlines ``step``: counted here through SimPy's own loop and ``step``,
    which process the same events in the same order)."""
    from fleecesim.nodes.base import Environment
    counts = collections.Counter()
    orig_step, orig_run = simpy.Environment.step, Environment.run

    def step(self):
        if self._queue:
            counts[type(self._queue[0][3]).__name__] += 1
        return orig_step(self)
    simpy.Environment.step = step
    Environment.run = simpy.Environment.run
    try:
        cfg = load_config(REF, [f"backup.scheme={scheme}", f"disk.size={size}"])
        s = simulate(cfg, fast_path=fast).summary
    finally:
        simpy.Environment.step = orig_step
        Environment.run = orig_run
    n = sum(counts.values())
    kinds = ", ".join(f"{k} {v:,}" for k, v in counts.most_common())
    print(f"{scheme:14s} {'fast' if fast else 'reference':9s} {size}: {n:,} events for "
          f"{s['guest_ios']:,} guest I/Os = {n / s['guest_ios']:.2f} per I/O ({kinds})")


LAYERS = (("simpy", "SimPy"), ("fleecesim/devices", "devices"), ("fleecesim/nodes", "nodes"),
          ("fleecesim/jobs", "jobs"), ("fleecesim/policies", "jobs"),
          ("fleecesim/workloads", "guest driver"), ("fleecesim/metrics", "metrics"),
          ("numpy", "numpy"))


def profile(scheme: str, size: str, fast: bool, top: int = 12) -> None:
    """Self time of one run by layer, and the hottest functions."""
    import cProfile
    import pstats
    cfg = load_config(REF, [f"backup.scheme={scheme}", f"disk.size={size}"])
    pr = cProfile.Profile()
    pr.enable()
    simulate(cfg, fast_path=fast)
    pr.disable()
    st = pstats.Stats(pr)
    by = collections.Counter()
    rows = []
    for (path, line, func), (_cc, _nc, tt, _ct, _callers) in st.stats.items():
        layer = "builtins" if path == "~" else \
            next((name for key, name in LAYERS if key in path), "other")
        by[layer] += tt
        rows.append((tt, f"{path.split('/')[-1]}:{func}"))
    total = sum(by.values())
    print(f"{scheme} {size}: {total:.1f}s profiled; self time by layer: " + ", ".join(
        f"{k} {v / total:.0%}" for k, v in by.most_common()))
    for tt, name in sorted(rows, reverse=True)[:top]:
        print(f"    {tt / total:5.1%}  {name}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--size", default="16GiB", help="disk size of the reference run")
    ap.add_argument("--engine", choices=("fast", "reference"), default="fast")
    ap.add_argument("--events", action="store_true", help="count events instead of timing")
    ap.add_argument("--profile", action="store_true", help="where the time goes (cProfile)")
    ap.add_argument("--progress", choices=("lines", "bar"), default=None,
                    help="also time each run with progress on (fleecesim/progress.py), "
                         "alternating with it off, and print the ratio of the medians")
    args = ap.parse_args()
    fast = args.engine == "fast"
    if args.events:
        for scheme in ("fleecing-push", "legacy-backup"):
            count_events(scheme, args.size, fast)
        return
    if args.profile:
        from fleecesim import _compiled
        print(f"fleecesim build: {_compiled.BUILD} {' '.join(_compiled.COMPILED)}".rstrip())
        if _compiled.BUILD == "compiled" and not _compiled.profiled():
            print("  (built without FLEECESIM_PROFILE=1: cProfile cannot see the compiled "
                  "functions; their time counts in their callers. Profile them with "
                  "FLEECESIM_PROFILE=1 pip install -e .)")
        for scheme in ("fleecing-push", "legacy-backup"):
            profile(scheme, args.size, fast)
        return
    bare = [bare_timeouts() for _ in range(args.repeat)]
    b = statistics.median(bare)
    print(f"bare SimPy timeouts/s: median {b:,.0f}  (runs: {', '.join(f'{x:,.0f}' for x in bare)})")
    cases = [("fleecing-push", "reference workload", ()),
             ("legacy-backup", "reference workload", ()),
             # The guest path alone: no backup events to interleave with.
             ("none", "50k IOPS, 20 s", ("workload.iops=50000", "run.warmup=20s"))]
    for scheme, what, extra in cases:
        rates, walls, with_progress = [], [], []
        for _ in range(args.repeat):
            r, n, w = guest_rate(scheme, args.size, extra, fast)
            rates.append(r)
            walls.append(w)
            if args.progress:  # alternating: the machine's load drifts alike for both
                with_progress.append(guest_rate(scheme, args.size, extra, fast,
                                                args.progress)[2])
        if with_progress:
            print(f"{scheme:14s} progress={args.progress}: wall median "
                  f"{statistics.median(with_progress):.2f}s vs {statistics.median(walls):.2f}s "
                  f"off -> {statistics.median(with_progress) / statistics.median(walls):.3f}x")
        m = statistics.median(rates)
        print(f"{scheme:14s} {what:20s} guest I/Os per wall s: median {m:,.0f} over {n:,} I/Os "
              f"-> ratio {m / b:.3f}; wall median {statistics.median(walls):.2f}s  "
              f"(runs: {', '.join(f'{x:,.0f}' for x in rates)})")


if __name__ == "__main__":
    main()
