"""``fleecesim summarize DIR``'s parser. The work is in fleecesim/summarize.py,
imported when the command runs: pandas and numpy take a second or more to
import, and ``fleecesim summarize --help`` needs neither."""
from __future__ import annotations


def cmd_summarize(args) -> int:
    from .summarize import cmd_summarize as run
    return run(args)


def add_summarize_subcommand(sub) -> None:
    s = sub.add_parser("summarize", help="mean and 95 %% CI per sweep point")
    s.add_argument("dir", help="a sweep results directory (results/<sweep-name>)")
    s.add_argument("--metrics", help="comma-separated summary keys (default: headline metrics)")
    s.add_argument("--csv", nargs="?", const="-", metavar="FILE",
                   help="write the tidy table as CSV to FILE (or stdout with no FILE)")
    s.set_defaults(func=cmd_summarize)
