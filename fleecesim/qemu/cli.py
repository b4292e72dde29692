"""``fleecesim qemu CONFIG``: run a scenario on real QEMU and in the simulator,
print both side by side (see fleecesim/qemu/compare.py).

Exit status: 0 agree structurally and every real backup holds the t0 image;
1 a real backup's content differs from the disk at t0 (printed loudly), or a
structural count disagrees, or the simulator's oracle fails; 2 bad input or
QEMU missing (one line saying what to install).
"""
from __future__ import annotations

import sys
from pathlib import Path

from fleecesim.errors import UserError


def add_qemu_subcommand(subparsers) -> None:
    q = subparsers.add_parser(
        "qemu", help="run a scenario on real QEMU and in the simulator, side by side",
        description="Translate CONFIG into a real QEMU 7.2 setup (qemu-storage-daemon, "
                    "qemu-io guest over NBD, throttled NBD target), run it, run the "
                    "simulator on the exact same request list, and compare.")
    q.add_argument("config")
    q.add_argument("--scheme", action="append", default=[], metavar="S",
                   help="backup | fleecing-push | fleecing-pull (repeatable; default: "
                        "the config's schemes that QEMU can run)")
    q.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set workload.iops=100")
    q.add_argument("--duration", type=float, default=None, metavar="SECONDS",
                   help="guest activity after the backup starts (default: 3/4 of the copy time)")
    q.add_argument("--as-is", action="store_true",
                   help="no snapshot-read splitting: QEMU 7.2's fleecing read bug shows")
    q.add_argument("--out", help="results directory (default: results/); files go to "
                                 "OUT/<name>/qemu/")
    q.add_argument("--no-save", action="store_true", help="do not write results files")
    q.add_argument("--json", action="store_true", help="print the comparison as JSON")
    q.set_defaults(func=cmd_qemu)


def cmd_qemu(args) -> int:
    from fleecesim.config import load_config
    from fleecesim.qemu.compare import compare, table
    from fleecesim.qemu.runner import qemu_available
    from fleecesim.qemu.scenario import SCHEMES
    from fleecesim.store import atomic_write_text, to_json

    cfg = load_config(args.config, args.set)
    for s in args.scheme:
        if s not in SCHEMES:
            raise UserError(f"--scheme {s}: expected one of {', '.join(SCHEMES)}")
    if not args.no_save:  # before ~20 s of real QEMU: the results must have a place
        from fleecesim.cli import writable_dir
        writable_dir((Path(args.out) if args.out else Path("results")) / cfg.name / "qemu",
                     "--out" if args.out else "results folder")
    ok, why = qemu_available()
    if not ok:
        raise UserError(f"real QEMU is not available: {why}")
    quiet = args.json
    cmp = compare(cfg, args.scheme or None, as_is=args.as_is, duration_s=args.duration,
                  progress=None if quiet else (lambda m: print(m, file=sys.stderr, flush=True)))
    text = f"{cmp['qemu_version']}\n{table(cmp)}"
    outdir = None
    if not args.no_save:
        outdir = (Path(args.out) if args.out else Path("results")) / cfg.name / "qemu"
        atomic_write_text(outdir / "comparison.json", to_json(
            {k: v for k, v in cmp.items() if k != "real"}, indent=2))
        for s, r in cmp["real"].items():
            atomic_write_text(outdir / f"real-{s}.json", to_json(r, indent=1))
        atomic_write_text(outdir / "table.txt", text + "\n")
    if args.json:
        print(to_json({k: v for k, v in cmp.items() if k != "real"}, indent=2))
    else:
        print(text)
        if outdir:
            print(f"\nresults in {outdir}/")
    status = 0
    for s, d in cmp["schemes"].items():
        if not d["content_ok"]:
            status = 1
            msg = (f"!!! CONTENT MISMATCH ({s}): the real backup is NOT the disk at t0: "
                   f"{d['content_detail']}")
            if not args.as_is or not s.startswith("fleecing"):
                print(msg, file=sys.stderr)
            else:
                print(msg + " (--as-is: QEMU < 8.0's hbitmap_status() bug)", file=sys.stderr)
        if not d["structural_ok"]:
            status = 1
            bad = ", ".join(k for k, v in d["structural"].items() if v is False)
            print(f"!!! STRUCTURAL MISMATCH ({s}): {bad}", file=sys.stderr)
        if not d["sim_oracle_ok"]:
            status = 1
            print(f"!!! simulator oracle failed ({s})", file=sys.stderr)
    return status
