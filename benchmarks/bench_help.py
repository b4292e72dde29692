"""How long ``fleecesim --help`` and each subcommand's ``--help`` take, as a
user starting a fresh process feels it (interpreter start included).

    python benchmarks/bench_help.py [--repeat 5] [--commands run,sweep] [--repo DIR]

Prints the median of ``--repeat`` wall times per command, and the bare
interpreter start (``python -c pass``) for comparison. The CLI imports a
subcommand's module only when that subcommand is parsed (fleecesim/cli.py:
SUBCOMMANDS), so ``--help`` and ``run --help`` load no numpy, pandas, SimPy or
matplotlib; a subcommand's own help loads what its module imports.
``--repo`` times another checkout's CLI (e.g. the main branch, for a before
and after). The
machine is shared and noisy: compare rows of one run, not runs.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
COMMANDS = ["", "run", "sweep", "summarize", "plot", "advise", "qmp", "qemu", "calibrate",
            "trace"]


def wall(argv, repeat: int, repo: Path = REPO) -> float:
    env = dict(os.environ, PYTHONPATH=str(repo) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        subprocess.run([sys.executable, *argv], cwd=repo, env=env, check=True,
                       stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--commands", default=",".join(c or "top" for c in COMMANDS),
                    help="comma-separated subcommands ('top': the top-level help)")
    ap.add_argument("--repo", type=Path, default=REPO, help="the checkout to time")
    a = ap.parse_args()
    print(f"{'command':<28} median of {a.repeat}")
    print(f"{'python -c pass':<28} {wall(['-c', 'pass'], a.repeat, a.repo):.3f}s")
    for c in a.commands.split(","):
        argv = ["-m", "fleecesim"] + ([] if c in ("", "top") else [c]) + ["--help"]
        label = "fleecesim " + " ".join(argv[2:])
        print(f"{label:<28} {wall(argv, a.repeat, a.repo):.3f}s", flush=True)


if __name__ == "__main__":
    main()
