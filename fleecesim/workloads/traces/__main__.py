"""``python -m fleecesim.workloads.traces FILE``: trace stats without the main CLI."""
from __future__ import annotations

import argparse
import sys

from ...errors import UserError
from .cli import add_stats_arguments


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m fleecesim.workloads.traces", description="Summarise a block I/O trace.")
    add_stats_arguments(p)
    args = p.parse_args(argv)
    try:
        return args.func(args)
    except UserError as e:
        print(f"fleecesim: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
