"""Block-trace readers: real I/O traces as the normalised record stream.

Formats: fio iolog v2/v3, blkparse text, MSR Cambridge CSV, DiskSim/MQSim
ASCII, CloudPhysics vscsi binary, Alibaba block CSV. ``open_trace`` streams
RECORD_DTYPE chunks; ``trace_stats`` summarises a trace; ``add_trace_subcommand``
plugs ``trace stats`` into the CLI.
"""
from .detect import FORMATS, detect_format
from .stream import REORDER_WINDOW, TraceOptions, TraceStream, open_trace
from .stats import format_stats_table, trace_stats
from .cli import add_trace_subcommand, cmd_trace_stats

__all__ = ["FORMATS", "REORDER_WINDOW", "TraceOptions", "TraceStream", "add_trace_subcommand",
           "cmd_trace_stats", "detect_format", "format_stats_table", "open_trace", "trace_stats"]
