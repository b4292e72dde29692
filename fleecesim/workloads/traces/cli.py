"""``fleecesim trace stats FILE``: the CLI hook."""
from __future__ import annotations

import argparse
import json

from .detect import FORMATS


def add_stats_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", metavar="FILE", help="trace file")
    p.add_argument("--format", default="auto", help=f"auto (default) or one of: {', '.join(FORMATS)}")
    p.add_argument("--device", default=None, help="device/volume/host of a multi-device trace")
    p.add_argument("--events", default="C", help="blkparse action to keep: C (default), Q or D")
    p.add_argument("--start", default=0.0, help="window start, seconds after the first request")
    p.add_argument("--duration", default=None, help="window length in seconds")
    p.add_argument("--time-scale", type=float, default=1.0, help="multiply times (0.5 = twice as fast)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_trace_stats)


def add_trace_subcommand(subparsers) -> argparse.ArgumentParser:
    """Add ``trace stats FILE [--format F] [--device D] [--json]`` to an argparse subparsers object."""
    trace = subparsers.add_parser("trace", help="inspect block I/O traces")
    sub = trace.add_subparsers(dest="trace_command", metavar="COMMAND", required=True)
    add_stats_arguments(sub.add_parser("stats", help="summarise a trace file"))
    return trace


def cmd_trace_stats(args) -> int:
    """Print stats of args.file; raises TraceError/ConfigError (UserError) on bad input."""
    from .stats import format_stats_table, trace_stats  # numpy: not for ``trace --help``
    stats = trace_stats(args.file, args.format, device=args.device, events=args.events,
                        start=args.start, duration=args.duration, time_scale=args.time_scale)
    print(json.dumps(stats, indent=2) if args.json else format_stats_table(stats))
    return 0
