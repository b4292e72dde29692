"""Command line: thin wrappers over run / sweep / plots.

Bad input -> one line on stderr and exit status 2. A run whose backup fails
the data oracle -> exit status 1.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .errors import UserError

JSON_KEYS = ("scheme", "seed", "sim_time_s", "wall_time_s", "backup_duration_s", "guest_ios",
             "read_p50_s", "read_p99_s", "write_p50_s", "write_p99_s", "write_p99_baseline_s",
             "write_max_s", "cbw_count", "cbw_bytes", "source_read_bytes",
             "target_write_bytes", "fleecing_peak_bytes", "oracle_ok", "oracle_violations")


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UserError(message)


def cmd_run(args) -> int:
    from .config import load_config, variants
    from .report import table
    from .run import simulate, want_progress
    from .store import to_json, write_run

    from .run import check_fits
    cfg = load_config(args.config, args.set)
    outdir = Path(args.out) / cfg.name if args.out else Path("results") / cfg.name
    runs = variants(cfg)
    for _name, c in runs:
        check_fits(c)  # before any run: a long run must not end in an OOM kill
    if not args.no_save:
        writable_dir(outdir, "--out" if args.out else "results folder")
    results = []
    for name, c in runs:
        if not args.json and not args.quiet:
            print(f"running {name} ...", file=sys.stderr, flush=True)
        r = simulate(c, name, fast_path=not args.no_fast_path,
                     progress=not args.json and not args.quiet and want_progress())
        if r.summary.get("input_error"):
            raise UserError(r.summary["error"])  # before anything is written
        results.append(r)
    summaries = [r.summary for r in results]
    if not args.no_save:
        from .store import atomic_write_text
        for r in results:
            write_run(outdir, r)
        atomic_write_text(outdir / "summary.json", to_json(
            [{k: v for k, v in s.items() if k != "traceback"} for s in summaries], indent=2))
    if args.json:
        out = []
        for s in summaries:
            d = {k: s.get(k) for k in JSON_KEYS}
            d.update({k: v for k, v in s.items() if k not in d and k not in ("config", "traceback")})
            out.append(d)
        print(to_json(out))
    else:
        if any(s.get("vms") for s in summaries):  # a fleet: one column per VM + totals
            shown = []
            for s in summaries:
                pre = f"{s['name']}/" if len(summaries) > 1 else ""
                shown += [{**v, "name": pre + v["name"]} for v in s.get("vms") or ()]
                shown.append({**s, "name": pre + "total"} if s.get("vms") else s)
            print(table(shown))
            print("total: backup duration = first VM's backup start to last VM's end; "
                  "bytes summed; latencies the worst VM's; fleecing peak of all VMs at once")
        else:
            print(table(summaries))
        logs = [s for s in summaries if s.get("events")]
        if logs:  # issue 13: what happened, and which policy fired
            print("\nevents (seconds of simulated time):")
            for s in logs:
                print(f"  {s['name']}:")
                for e in s["events"]:
                    print(f"    {e}")
        if not args.no_save:
            print(f"\nresults in {outdir}/")
    for s in summaries:
        for w in s.get("warnings") or ():
            print(f"fleecesim: warning: {s['name']}: {w}", file=sys.stderr)
    bad = [s for s in summaries if not s.get("oracle_ok")]
    for s in bad:
        print(f"fleecesim: {s['name']}: {why_not_ok(s)}", file=sys.stderr)
    return 1 if bad else 0


def writable_dir(path: Path, what: str) -> None:
    """Make sure results can be written under ``path`` before simulating."""
    import tempfile
    created = []
    try:
        p = path
        while not p.exists():
            created.append(p)
            p = p.parent
        for d in reversed(created):
            d.mkdir()
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as e:
        raise UserError(f"{what} {path}: cannot write results there "
                        f"({e.strerror or e})") from None
    finally:  # leave nothing behind: the results are written after the runs
        for d in created:
            try:
                d.rmdir()
            except OSError:
                pass


def why_not_ok(s: dict) -> str:
    """One line: why a run's backup is not a good point-in-time image."""
    if s.get("error"):
        return f"backup is NOT the point-in-time image: {s['error']}"
    outcome = s.get("backup_outcome")
    if outcome == "snapshot-broken":
        return (f"backup FAILED: the snapshot broke at {s.get('snapshot_broken_at', 0):.6f}s "
                f"(on-cbw-error=break-snapshot); the target is not a usable backup")
    if outcome == "unfinished" and s.get("job_paused_at_end"):
        return ("backup unfinished: the job paused on an error (on-source-error/"
                "on-target-error stop) and backup.resume-after is never: no point-in-time "
                "image yet")
    if outcome == "unfinished":
        return (f"backup unfinished at run.max-time ({s.get('sim_time_s', 0):.6g}s): "
                f"no point-in-time image yet")
    if outcome == "failed":
        return "backup FAILED: the job ended with an error; the target is not a usable backup"
    return (f"backup is NOT the point-in-time image: {s.get('oracle_violations')} clusters "
            f"do not hold their t0 content")


RUN_EPILOG = """\
exit status: 0 every backup is the point-in-time image; 1 one is not (wrong
content, job failed, snapshot broken, or unfinished at run.max-time); 2 bad input.

QEMU's option names and values are used where QEMU has them. The model's own:
  backup.on-cbw-error: wait   (a full fleecing image makes CBW wait for room;
                               QEMU has break-guest-write and break-snapshot)
  backup.cbw-timeout: 1.5s    (QEMU takes whole seconds; fractions are the model's)
  the seed's tiered cache: backup.cache.ram/flush/cor/serve-reads-from-ram,
  backup.lazy-discard, backup.order (copy-ordering policies).
on-cbw-error and cbw-timeout exist only for fleecing-push and fleecing-pull (a
copy-before-write node of the user's); other schemes fail the guest write."""


def build_parser() -> argparse.ArgumentParser:
    from . import __version__, _compiled
    p = _Parser(prog="fleecesim", description="Simulate QEMU backup and fleecing schemes.")
    p.add_argument("--version", action="version",
                   version=f"fleecesim {__version__} ({_compiled.BUILD} build)")
    sub = p.add_subparsers(dest="cmd", required=True, parser_class=_Parser)
    r = sub.add_parser("run", help="run a scenario config (every scheme/variant it lists)",
                       epilog=RUN_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    r.add_argument("config", help="scenario YAML (see configs/ and README 'Configs')")
    r.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set backup.max-workers=8")
    r.add_argument("--out", metavar="DIR",
                   help="results go to DIR/<config name>/ (default DIR: results)")
    r.add_argument("--json", action="store_true", help="print only a JSON list of summaries")
    r.add_argument("--quiet", action="store_true", help="no progress lines or bar on stderr")
    r.add_argument("--no-save", action="store_true", help="do not write results files")
    r.add_argument("--no-fast-path", action="store_true",
                   help="the reference engine: every guest request through the generator "
                        "path, a process per slow request and per copy task")
    r.set_defaults(func=cmd_run)
    _optional_subcommands(sub)
    return p


def _optional_subcommands(sub) -> None:
    """Subcommands that live in their own modules register themselves here."""
    try:
        from .workloads.traces import add_trace_subcommand
    except ImportError:
        add_trace_subcommand = None
    if add_trace_subcommand:
        add_trace_subcommand(sub)
    from .sweep.cli import add_sweep_subcommands  # sweep, summarize, plot (issue 5)
    add_sweep_subcommands(sub)
    from .qemu.cli import add_qemu_subcommand  # real QEMU vs the model (issue 7)
    add_qemu_subcommand(sub)
    from .calibrate import add_calibrate_subcommand  # measure a disk, fit a device (issue 11)
    add_calibrate_subcommand(sub)
    from .qmp_export import add_qmp_subcommand  # the scheme as QMP (issue 13 item 5)
    add_qmp_subcommand(sub)
    from .advise.cli import add_advise_subcommand  # space and workers (issue 13 item 1)
    add_advise_subcommand(sub)


def main(argv=None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return args.func(args)
    except UserError as e:
        print(f"fleecesim: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fleecesim: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader went away (`fleecesim ... | head`): stop quietly, as CLI tools do
        import os
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
