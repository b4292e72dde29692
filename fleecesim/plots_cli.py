"""``fleecesim plot DIR``'s parser. The drawing is in fleecesim/plots.py,
imported when the command runs: matplotlib, pandas and numpy take seconds to
import, and ``fleecesim plot --help`` needs none of them."""
from __future__ import annotations

KINDS = ("cdf", "occupancy", "metric", "bars", "attribution")


def cmd_plot(args) -> int:
    from .plots import cmd_plot as run
    return run(args)


def add_plot_subcommand(sub) -> None:
    p = sub.add_parser("plot", help="plot sweep (or run) results to PNG and SVG")
    p.add_argument("dir", help="results/<sweep-name> (or a `fleecesim run` results dir "
                               "for --kind cdf/occupancy/attribution)")
    p.add_argument("--kind", choices=KINDS, required=True,
                   help="cdf: write-latency CDF; occupancy: cache bytes over time; "
                        "metric: --metric(s) vs --x with CI bands, a panel each; "
                        "bars: --metric(s) per --by; "
                        "attribution: where a guest write's time goes, per scheme")
    p.add_argument("--metric", action="append",
                   help="summary key (repeat for several panels: metric, bars)")
    p.add_argument("--x", help="swept parameter for --kind metric (default: first numeric axis)")
    p.add_argument("--by", help="comma-separated columns, one line/bar each "
                                "(default: variant and other varying axes)")
    p.add_argument("--where", action="append", default=[], metavar="COL=VALUE",
                   help="keep only runs with this axis value, e.g. backup.scheme=fleecing-push")
    p.add_argument("--replication", type=int, default=None,
                   help="occupancy: draw only this replication (default: every one, a line each)")
    p.add_argument("--title", help="override the title")
    p.add_argument("--out", help="output path without extension (default: DIR/plots/<kind>"
                                 "[-<metrics>][-<where>...]: each option in the name)")
    p.add_argument("--format", default="png,svg", help="comma-separated (default: png,svg)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_plot)
