"""The compiled core against the interpreted build: the speed figures, side by side.

For each build (the interpreted .py files, forced with FLEECESIM_PURE=1; the
compiled extensions setup.py built beside them; with ``--before DIR`` also
another checkout, e.g. the main branch before a change, interpreted) prints:

* P1: guest I/Os per wall second of fleecing-push and legacy-backup on
  configs/fleecing-vs-legacy.yaml (shortened to ``--p1-size``, 16 GiB as
  bench_sim.py does) over bare SimPy ``env.timeout`` events per second
  measured in the same process (bench_sim.py: bare_timeouts, guest_rate);
  medians of ``--repeat``;
* P2: wall seconds per scheme on the whole reference config (64 GiB), and
  CPU seconds (less disturbed by the other load of a shared machine);
* P3: a 1 TiB full fleecing-push backup with a 1k IOPS guest
  (bench_scale.py's ``full`` scenario): wall, CPU and peak RSS, each run in a
  process of its own;
* instructions (valgrind --tool=callgrind, only while ``simulate`` runs:
  instrumentation is switched on and off around it through callgrind's
  client requests, so imports and config parsing are not counted) of one
  short run per scheme (``--instr-size``, 1 GiB): exact and repeatable where
  wall time is noisy.

Each build runs in child processes of its own (the choice of build is made
at import). The machine is shared: compare ratios and instruction counts,
not wall times across runs.

    python benchmarks/bench_compiled.py [--repeat 3] [--only P1,P2,P3,instr]
                                        [--before /path/to/main]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
REF = ROOT / "configs" / "fleecing-vs-legacy.yaml"
SCHEMES = ("fleecing-push", "legacy-backup")
TIB = 2**40

# callgrind's client requests (valgrind/callgrind.h), callable through ctypes
_CG_SRC = """#include <valgrind/callgrind.h>
void cg_start(void) { CALLGRIND_START_INSTRUMENTATION; }
void cg_stop(void) { CALLGRIND_STOP_INSTRUMENTATION; }
"""


def _build_of(expect_pure: bool) -> str:
    try:
        import fleecesim._compiled as c
    except ImportError:  # a checkout from before the compiled core
        return "interpreted (no compiled core)"
    if not expect_pure and c.BUILD != "compiled":
        sys.exit(f"bench_compiled: expected the compiled build, got {c.BUILD}")
    return f"{c.BUILD} {' '.join(c.COMPILED)}".strip()


def child(args) -> None:
    """One measurement in this process; prints one JSON line."""
    sys.path.insert(0, str(HERE))
    import bench_sim
    from fleecesim.config import load_config
    from fleecesim.run import simulate
    out = {"build": _build_of(os.environ.get("FLEECESIM_PURE") == "1")}
    if args.child == "p1":
        out["bare"] = [bench_sim.bare_timeouts() for _ in range(args.repeat)]
        for s in SCHEMES:
            out[s] = [bench_sim.guest_rate(s, args.p1_size)[0] for _ in range(args.repeat)]
    elif args.child == "p2":
        for s in SCHEMES:
            out[s], out[f"{s} cpu"] = [], []
            for _ in range(args.repeat):
                c = time.process_time()
                out[s].append(bench_sim.guest_rate(s, "64GiB")[2])
                out[f"{s} cpu"].append(time.process_time() - c)
    elif args.child == "p3":
        import resource
        import bench_scale
        cfg = load_config(REF, bench_scale.overrides("full", TIB))
        t, c = time.perf_counter(), time.process_time()
        s = simulate(cfg).summary
        out["wall"] = time.perf_counter() - t
        out["cpu"] = time.process_time() - c
        out["rss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        out["ok"] = bool(s["oracle_ok"])
        out["error"] = s.get("error")
    elif args.child == "instr":
        import ctypes
        cfg = load_config(REF, [f"backup.scheme={args.scheme}", f"disk.size={args.instr_size}",
                                "run.warmup=5s"])
        cg = ctypes.CDLL(args.cg_lib)
        cg.cg_start()
        s = simulate(cfg).summary
        cg.cg_stop()
        out["ios"] = s["guest_ios"]
        out["ok"] = bool(s["oracle_ok"])
    print(json.dumps(out))


def _run(build, argv: list[str], timeout: float = 3600, prefix=()) -> tuple[dict, str]:
    label, path, pure = build
    env = {k: v for k, v in os.environ.items() if k != "FLEECESIM_PURE"}
    env["PYTHONPATH"] = str(path)
    env["PYTHONHASHSEED"] = "0"
    if pure:
        env["FLEECESIM_PURE"] = "1"
    p = subprocess.run([*prefix, sys.executable, str(Path(__file__).resolve()), *argv],
                       capture_output=True, text=True, env=env, cwd=path, timeout=timeout)
    if p.returncode:
        raise RuntimeError(f"{label}: {' '.join(argv)} failed:\n{p.stderr[-2000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1]), p.stderr


def _cg_lib(tmp: Path) -> str | None:
    if shutil.which("valgrind") is None or not Path("/usr/include/valgrind/callgrind.h").exists():
        return None
    lib = tmp / "cg.so"
    src = tmp / "cg.c"
    src.write_text(_CG_SRC)
    subprocess.run(["cc", "-O2", "-shared", "-fPIC", "-o", str(lib), str(src)], check=True)
    return str(lib)


def fmt(x: float) -> str:
    return f"{x:,.3f}" if x < 1 else f"{x:,.2f}" if x < 100 else f"{x:,.0f}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--only", default="P1,P2,P3,instr")
    ap.add_argument("--before", help="another checkout to measure interpreted (e.g. main)")
    ap.add_argument("--p1-size", default="16GiB")
    ap.add_argument("--instr-size", default="1GiB")
    ap.add_argument("--child", choices=("p1", "p2", "p3", "instr"), help=argparse.SUPPRESS)
    ap.add_argument("--scheme", help=argparse.SUPPRESS)
    ap.add_argument("--cg-lib", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args)
    only = {x.strip().lower() for x in args.only.split(",")}
    sys.path.insert(0, str(ROOT))
    import fleecesim._compiled as c
    exts, why = c.stale(ROOT / "fleecesim")
    builds = []
    if args.before:
        builds.append(("before (interpreted)", Path(args.before).resolve(), True))
    builds.append(("interpreted", ROOT, True))
    if exts and not why:
        builds.append(("compiled", ROOT, False))
    else:
        print("bench_compiled: no usable compiled build here ("
              + ("; ".join(why) if why else "pip install -e . with a C compiler") + ")")
    rows: dict[str, dict[str, str]] = {}
    goal: dict[str, str] = {}

    def put(name, label, value, target=""):
        rows.setdefault(name, {})[label] = value
        if target:
            goal[name] = target

    rep = ["--repeat", str(args.repeat)]
    tmp = Path(tempfile.mkdtemp(prefix="bench_compiled."))
    try:
        cg_lib = _cg_lib(tmp) if "instr" in only else None
        for b in builds:
            label = b[0]
            print(f"[{label}] ...", flush=True)
            if "p1" in only:
                r, _ = _run(b, ["--child", "p1", "--p1-size", args.p1_size, *rep])
                bare = statistics.median(r["bare"])
                put("bare SimPy timeouts/s", label, f"{bare:,.0f}")
                for s in SCHEMES:
                    put(f"P1 {s} ({args.p1_size})", label,
                        fmt(statistics.median(r[s]) / bare), ">= 0.3")
                    put(f"  {s} guest I/Os per wall s", label,
                        f"{statistics.median(r[s]):,.0f}")
            if "p2" in only:
                r, _ = _run(b, ["--child", "p2", *rep])
                for s in SCHEMES:
                    put(f"P2 {s} 64GiB wall s", label, fmt(statistics.median(r[s])), "<= 3.3")
                    put(f"  {s} CPU s", label, fmt(statistics.median(r[f"{s} cpu"])))
            if "p3" in only:
                runs = [_run(b, ["--child", "p3"])[0] for _ in range(args.repeat)]
                bad = [x for x in runs if x["error"] or not x["ok"]]
                put("P3 1TiB full, 1k IOPS: wall s", label,
                    "failed" if bad else fmt(statistics.median(x["wall"] for x in runs)),
                    "<= 30")
                put("  P3 CPU s", label, "failed" if bad else
                    fmt(statistics.median(x["cpu"] for x in runs)))
                put("P3 peak RSS MiB", label,
                    f"{max(x['rss'] for x in runs) / 2**20:,.0f}", "<= 1024")
            if "instr" in only and cg_lib:
                for s in SCHEMES:
                    r, err = _run(b, ["--child", "instr", "--scheme", s, "--instr-size",
                                      args.instr_size, "--cg-lib", cg_lib],
                                  prefix=("valgrind", "--tool=callgrind", "--instr-atstart=no",
                                          f"--callgrind-out-file={tmp}/cg.out.%p"))
                    m = re.search(r"Collected : (\d+)", err)
                    n = int(m.group(1)) if m else float("nan")
                    put(f"instructions {s} {args.instr_size} (M)", label, f"{n / 1e6:,.0f}")
                    put(f"  {s} instructions per guest I/O", label, f"{n / r['ios']:,.0f}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    labels = [b[0] for b in builds]
    w = max(len(k) for k in rows) if rows else 10
    print()
    print(f"{'':{w}s}  " + "  ".join(f"{x:>20s}" for x in labels) + f"  {'goal':>8s}")
    for name, vals in rows.items():
        print(f"{name:{w}s}  " + "  ".join(f"{vals.get(x, '-'):>20s}" for x in labels)
              + f"  {goal.get(name, ''):>8s}")
    print(f"(medians of {args.repeat}; builds: " + "; ".join(
        f"{b[0]} = {b[1]}" + (" FLEECESIM_PURE=1" if b[2] else "") for b in builds) + ")")


if __name__ == "__main__":
    main()
