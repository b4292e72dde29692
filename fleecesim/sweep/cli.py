"""`fleecesim sweep`, registered into the main CLI (fleecesim/cli.py: SUBCOMMANDS)."""
from __future__ import annotations

import sys

from ..errors import UserError


def cmd_sweep(args) -> int:
    from . import SweepInterrupted, load_runs, run_sweep
    if args.jobs is not None and args.jobs < 1:
        raise UserError(f"--jobs {args.jobs}: expected a whole number >= 1")
    if args.replications is not None and args.replications < 1:
        raise UserError(f"--replications {args.replications}: expected a whole number >= 1")
    try:
        out = run_sweep(args.sweep, results_dir=args.out, jobs=args.jobs,
                        scheduler=args.scheduler, dask_local=args.dask_local,
                        resume=args.resume, quiet=args.quiet, overrides=args.set,
                        replications=args.replications)
    except SweepInterrupted as e:
        import signal
        name = signal.Signals(e.signum).name
        if e.outdir is None:  # before the results directory was touched
            print(f"fleecesim: stopped by {name} before any run started", file=sys.stderr)
        else:
            print(f"fleecesim: stopped by {name}: {e.stored} of {e.total} runs stored in "
                  f"{e.outdir}/; --resume runs the rest", file=sys.stderr)
        return 128 + e.signum
    from ..report import sweep_saved_line
    from .dataset import read_manifest
    runs = load_runs(out)
    failed = int(runs["error"].notna().sum()) if len(runs) else 0
    if not args.quiet or failed:  # what was run, and what it wrote where
        ids = [r["run_id"] for r in read_manifest(out)["runs"]]
        print(f"{len(runs)} runs ({failed} failed); {sweep_saved_line(out, ids)}",
              file=sys.stderr)
    if failed:
        print("(--resume runs the failed ones again)", file=sys.stderr)
    if not args.quiet:
        print(f"next: fleecesim summarize {out}", file=sys.stderr)
    # Failed runs are recorded rows, not a crash -- but a script should notice them.
    return 1 if failed else 0


def add_sweep_subcommand(sub) -> None:
    s = sub.add_parser("sweep", help="run a sweep file: points x replications, in parallel")
    s.add_argument("sweep", help="a sweep YAML (see configs/sweeps/)")
    s.add_argument("--jobs", "-j", type=int, default=None,
                   help="local worker processes (default: all cores; 1 = in this process)")
    where = s.add_mutually_exclusive_group()
    where.add_argument("--scheduler", metavar="ADDRESS",
                       help="run on an existing Dask cluster, e.g. tcp://host:8786")
    where.add_argument("--dask-local", action="store_true",
                       help="start a Dask LocalCluster of --jobs workers (default: all cores)")
    s.add_argument("--out", metavar="DIR",
                   help="the sweep's results directory (default: results/<sweep name>/); "
                        "new, empty, or this sweep's")
    s.add_argument("--resume", action="store_true",
                   help="keep the runs already stored without error; run the rest "
                        "(failed runs included)")
    s.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a base-config value for every point")
    s.add_argument("--replications", type=int, default=None, help="override 'replications'")
    s.add_argument("--quiet", "-q", action="store_true", help="no progress (a bar at a terminal, else a line "
                   "every FLEECESIM_PROGRESS_EVERY, default 10s) or messages")
    s.set_defaults(func=cmd_sweep)
