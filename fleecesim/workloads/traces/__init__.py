"""Block-trace readers: real I/O traces as the normalised record stream.

Formats: fio iolog v2/v3, blkparse text, MSR Cambridge CSV, DiskSim/MQSim
ASCII, CloudPhysics vscsi binary, Alibaba block CSV. ``open_trace`` streams
RECORD_DTYPE chunks; ``trace_stats`` summarises a trace; ``add_trace_subcommand``
plugs ``trace stats`` into the CLI.
"""
# These load with their module on first use (PEP 562 __getattr__): the readers
# import numpy, and ``fleecesim trace --help`` (cli.py) needs none of it.
from ..._lazy import lazy_attributes

_LAZY = {**dict.fromkeys(("FORMATS", "detect_format"), "detect"),
         **dict.fromkeys(("REORDER_WINDOW", "TraceOptions", "TraceStream", "open_trace"),
                         "stream"),
         **dict.fromkeys(("format_stats_table", "trace_stats"), "stats"),
         **dict.fromkeys(("add_trace_subcommand", "cmd_trace_stats"), "cli")}


__getattr__ = lazy_attributes(__name__, _LAZY, globals())


__all__ = ["FORMATS", "REORDER_WINDOW", "TraceOptions", "TraceStream", "add_trace_subcommand",
           "cmd_trace_stats", "detect_format", "format_stats_table", "open_trace", "trace_stats"]
