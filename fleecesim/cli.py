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
    from .progress import mode
    from .run import check_fits, simulate
    from .store import to_json, write_run

    cfg = load_config(args.config, args.set)
    outdir = Path(args.out) / cfg.name if args.out else Path("results") / cfg.name
    runs = variants(cfg)
    for _name, c in runs:
        check_fits(c)  # before any run: a long run must not end in an OOM kill
    from .cost import warnings as cost_warnings
    for name, c in runs:  # a huge or implausible run says so before it starts
        for w in cost_warnings(c):
            print(f"fleecesim: warning: {name}: {w}", file=sys.stderr, flush=True)
    if not args.no_save:
        writable_dir(outdir, "--out" if args.out else "results folder")
    results = []
    # a bar at a terminal, else a line every few seconds (progress.py); --json
    # is for scripts, which read stdout and want stderr for errors only
    how = mode(quiet=args.quiet or args.json)
    for name, c in runs:
        if how != "off":
            print(f"running {name} ...", file=sys.stderr, flush=True)
        r = simulate(c, name, fast_path=not args.no_fast_path,
                     progress=False if how == "off" else how)
        if r.summary.get("input_error"):
            raise UserError(r.summary["error"])  # before anything is written
        results.append(r)
    summaries = [r.summary for r in results]
    if not args.no_save:
        from .store import atomic_write_text
        saved = [write_run(outdir, r) for r in results]
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
            for s in summaries:
                if s.get("nodes"):  # vzdump's schedule: the night per node
                    from .report import vzdump_table
                    print(f"\nvzdump{' ' + s['name'] if len(summaries) > 1 else ''}: one VM "
                          f"at a time per node (times after the warm-up)")
                    print(vzdump_table(s))
        else:
            print(table(summaries))
        logs = [s for s in summaries if s.get("events")]
        if logs:  # the run's fault and error-policy log: what happened, which policy fired
            print("\nevents (seconds of simulated time):")
            for s in logs:
                print(f"  {s['name']}:")
                for e in s["events"]:
                    print(f"    {e}")
        if not args.no_save:
            from .report import saved_line
            print("\n" + saved_line(outdir, saved))
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
        # run.max-time counts from the backup's start (after the warm-up); the
        # run's simulated time adds the warm-up and the tail
        limit = ((s.get("config") or {}).get("run") or {}).get("max-time")
        t0 = s.get("backup_start_s", 0.0)
        cut = f"{limit:.6g}s " if limit is not None else ""
        return (f"backup unfinished at run.max-time {cut}(counted from the backup's start at "
                f"{t0:.6g}s of simulated time; the run ended at {s.get('sim_time_s', 0):.6g}s "
                f"of simulated time): no point-in-time image yet")
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
copy-before-write node of the user's); other schemes fail the guest write.

progress on stderr: at a terminal a bar (share copied, simulated time, time
left); elsewhere (a log, CI, | tee) a plain line every 10 s of wall time, or
every FLEECESIM_PROGRESS_EVERY (e.g. 30s). --quiet and --json print none."""


# The subcommands besides ``run``: name -> (module, the function there that
# adds its parser, the line ``fleecesim --help`` shows for it). A subcommand's
# module is imported only when that subcommand is parsed (run or asked for its
# help): numpy, pandas, pyarrow, SimPy and matplotlib take 1-3 s to import, and
# ``fleecesim --help`` needs none of them. tests/test_cli_lazy.py checks that
# these lines are the ones each module's parser declares.
SUBCOMMANDS = {
    "trace": ("fleecesim.workloads.traces.cli", "add_trace_subcommand",
              "inspect block I/O traces"),
    "sweep": ("fleecesim.sweep.cli", "add_sweep_subcommand",
              "run a sweep file: points x replications, in parallel"),
    "summarize": ("fleecesim.summarize_cli", "add_summarize_subcommand",
                  "mean and 95 %% CI per sweep point"),
    "plot": ("fleecesim.plots_cli", "add_plot_subcommand",
             "plot sweep (or run) results to PNG and SVG"),
    "qemu": ("fleecesim.qemu.cli", "add_qemu_subcommand",
             "run a scenario on real QEMU and in the simulator, side by side"),
    "calibrate": ("fleecesim.calibrate", "add_calibrate_subcommand",
                  "measure a disk (fio or qemu-img bench) and write a device entry"),
    "qmp": ("fleecesim.qmp_export", "add_qmp_subcommand",
            "print the QMP commands that realise a config's scheme on real QEMU"),
    "advise": ("fleecesim.advise.cli", "add_advise_subcommand",
               "smallest fleecing space and worker count meeting your constraints"),
}


def chosen_command(argv) -> str | None:
    """The subcommand ``argv`` names: its first word that is not an option
    (the top-level parser's options, -h and --version, take no value)."""
    for a in argv:
        if a != "--" and not a.startswith("-"):
            return a
    return None


def build_parser(argv=None, *, load=None) -> argparse.ArgumentParser:
    """The parser for ``argv`` (default: sys.argv[1:]): every subcommand is
    listed, but only the one ``argv`` names gets its full parser (its module
    imported). ``load``: the subcommands to build in full instead (``"all"``)."""
    from . import __version__, _compiled
    if load is None:
        load = {chosen_command(sys.argv[1:] if argv is None else argv)}
    elif load == "all":
        load = {"run", *SUBCOMMANDS}
    p = _Parser(prog="fleecesim", description="Simulate QEMU backup and fleecing schemes.")
    p.add_argument("--version", action="version",
                   version=f"fleecesim {__version__} ({_compiled.BUILD} build)")
    sub = p.add_subparsers(dest="cmd", required=True, parser_class=_Parser)
    add_run_subcommand(sub)
    for name, (module, adder, help_line) in SUBCOMMANDS.items():
        if name in load:
            import importlib
            getattr(importlib.import_module(module), adder)(sub)
        else:  # listed with its help line; never parsed in this invocation
            sub.add_parser(name, help=help_line)
    return p


def add_run_subcommand(sub) -> None:
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


def main(argv=None) -> int:
    try:
        args = build_parser(argv).parse_args(argv)
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
