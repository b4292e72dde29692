"""``fleecesim advise CONFIG``: the smallest fleecing space and the worker count
that meet the user's constraints (see fleecesim/advise/__init__.py).

Exit status: 0 advice given; 1 no worker count meets the constraints (said
which, with the best any count got) or runs failed; 2 bad input.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import UserError


def add_advise_subcommand(sub) -> None:
    a = sub.add_parser(
        "advise", help="smallest fleecing space and worker count meeting your constraints",
        description="Run CONFIG (one VM, one scheme; or a fleet under vzdump's schedule, "
                    "sizing one node's fleecing storage) over max-workers candidates x "
                    "replications with an unbounded fleecing image, and answer: how many "
                    "workers, how much RAM tier and disk tier, as distribution-free upper "
                    "confidence bounds on the chosen percentile (the k-th largest of N runs).")
    a.add_argument("config")
    a.add_argument("--variant", metavar="NAME", help="which variant / scheme of CONFIG")
    a.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    a.add_argument("--no-spill", action="store_true",
                   help="the RAM tier must hold the whole fleecing peak")
    a.add_argument("--write-p99", metavar="TIME", help="guest write p99 during the backup, e.g. 2ms")
    a.add_argument("--max-stall", metavar="TIME", help="longest guest request, e.g. 30s")
    a.add_argument("--window", metavar="TIME", help="the backup must finish within, e.g. 1h")
    a.add_argument("--percentile", default="95", metavar="P",
                   help="the share of backups that must meet them, in percent (default 95)")
    a.add_argument("--confidence", default="0.9", metavar="C",
                   help="confidence of the upper bounds on that percentile (default 0.9)")
    a.add_argument("--replications", type=int, default=None, metavar="K",
                   help="runs per worker count (default and minimum: the fewest for the "
                        "bound, e.g. 45 for p95 at 0.9)")
    a.add_argument("--max-replications", type=int, default=None, metavar="K",
                   help="the most runs per worker count advise may plan (default "
                        "100)")
    a.add_argument("--workers", default=None, metavar="LIST",
                   help="max-workers candidates (default 1,2,4,8,16,32,64)")
    a.add_argument("--node", metavar="NAME",
                   help="a fleet under vzdump's schedule (fleet.vzdump): the node whose "
                        "fleecing storage to size (default: the only node)")
    a.add_argument("--jobs", "-j", type=int, default=None,
                   help="local worker processes (default: all cores; 1 = in this process)")
    where = a.add_mutually_exclusive_group()
    where.add_argument("--scheduler", metavar="ADDRESS", help="an existing Dask cluster")
    where.add_argument("--dask-local", action="store_true", help="a Dask LocalCluster")
    a.add_argument("--out", metavar="DIR",
                   help="results directory (default results/advise-<config name>/)")
    a.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True,
                   help="keep the runs of the same question already stored in the results "
                        "directory (default; --no-resume runs them all again)")
    a.add_argument("--quiet", "-q", action="store_true",
                   help="no progress (a bar at a terminal, else a line every "
                        "FLEECESIM_PROGRESS_EVERY, default 10s) or messages")
    a.set_defaults(func=cmd_advise)


def cmd_advise(args) -> int:
    from ..config import load_config
    from ..plots import save
    from ..qmp_export import pick_variant
    from ..store import atomic_write_text, to_json
    from . import MAX_REPLICATIONS, Constraints, advise_config, plot

    if args.jobs is not None and args.jobs < 1:
        raise UserError(f"--jobs {args.jobs}: expected a whole number >= 1")
    cons = Constraints.parse(no_spill=args.no_spill, write_p99=args.write_p99,
                             max_stall=args.max_stall, window=args.window,
                             percentile=args.percentile, replications=args.replications,
                             workers=args.workers, confidence=args.confidence,
                             max_replications=(MAX_REPLICATIONS if args.max_replications is None
                                               else args.max_replications),
                             node=args.node)
    cfg = load_config(args.config, args.set)
    _name, c = pick_variant(cfg, args.variant)
    out = Path(args.out) if args.out else Path("results") / f"advise-{c.name}"
    advice, runs, out = advise_config(c, cons, results_dir=out, jobs=args.jobs,
                                      scheduler=args.scheduler, dask_local=args.dask_local,
                                      resume=args.resume, quiet=args.quiet,
                                      say=None if args.quiet else
                                      (lambda m: print(m, file=sys.stderr, flush=True)))
    print(advice.question)
    print(advice.text())
    print()
    print(advice.table_text())
    fig = plot(advice, runs)
    paths = save(fig, out / "plots" / "advise", formats=("png",))
    atomic_write_text(out / "advice.json", to_json({
        "question": advice.question, "met": advice.met, "workers": advice.workers,
        "space_bytes": advice.space_bytes, "ram_bytes": advice.ram_bytes,
        "disk_bytes": advice.disk_bytes, "data_bytes": advice.data_bytes,
        "qcow2_metadata_bytes": advice.metadata_bytes,
        "percentile": advice.constraints.percentile,
        "confidence": advice.constraints.confidence, "runs": advice.runs,
        "rank": advice.rank, "min_runs": advice.constraints.needed,
        "assumptions": advice.assumptions, "unmet": advice.unmet,
        "table": advice.table.to_dict(orient="records")}, indent=1))
    if not args.quiet:
        print(f"\nplot: {paths[0]}\nruns: {out}/", file=sys.stderr)
    failed = int(runs["error"].notna().sum())
    if failed:
        print(f"fleecesim: {failed} runs failed (see {out}/; --resume runs them again)",
              file=sys.stderr)
    return 0 if advice.met and not failed else 1
