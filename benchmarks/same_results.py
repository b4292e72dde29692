"""Are the results bit-identical to before a change? ("everything
else unchanged", checked in one command while optimising the engine.)

Runs a corpus of scenarios — every bundled config's variants, shortened to a
small disk, plus sparse state, incremental sync, the reference engine and a
tiered cache — and prints one digest per run: a hash of its summary (all
keys but wall time) and of every per-request column (times, latencies,
attribution). Save the digests before a change, check them after:

    python benchmarks/same_results.py --save /tmp/before.json
    ... change the engine ...
    python benchmarks/same_results.py --check /tmp/before.json

``--check`` exits 1 and names each run whose digest moved (and the first
summary keys that differ). ``--only SUBSTR`` runs the scenarios whose name
contains SUBSTR. ``--progress`` runs each with progress lines on stderr
(fleecesim/progress.py; FLEECESIM_PROGRESS_EVERY=0.05s samples the runs
often): the digests must not move.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"

# (name, config file, overrides, engine): the shortened bundled configs first
SMALL = ["disk.size=1GiB", "run.max-time=120s"]
EXTRA = [
    ("ref/fleecing-push/sparse-state", "fleecing-vs-legacy.yaml",
     ["backup.scheme=fleecing-push", "run.state=sparse", *SMALL], True),
    ("ref/legacy/sparse-state", "fleecing-vs-legacy.yaml",
     ["backup.scheme=legacy-backup", "run.state=sparse", *SMALL], True),
    ("ref/incremental", "fleecing-vs-legacy.yaml",
     ["backup.scheme=fleecing-push", "backup.sync=incremental",
      "backup.incremental.dirty=0.3", *SMALL], True),
    ("ref/incremental/sparse-state", "fleecing-vs-legacy.yaml",
     ["backup.scheme=fleecing-push", "backup.sync=incremental",
      "backup.incremental.dirty=0.3", "run.state=sparse", *SMALL], True),
    ("ref/sparse-disk/bulk-zeroes", "fleecing-vs-legacy.yaml",
     ["backup.scheme=fleecing-push", "disk.allocated=0.2", *SMALL], True),
    ("ref/fleecing-push/reference-engine", "fleecing-vs-legacy.yaml",
     ["backup.scheme=fleecing-push", "disk.size=256MiB"], False),
    ("ref/legacy/reference-engine", "fleecing-vs-legacy.yaml",
     ["backup.scheme=legacy-backup", "disk.size=256MiB"], False),
    ("ref/backup/write-heavy", "fleecing-vs-legacy.yaml",
     ["backup.scheme=backup", "workload.iops=6000", "workload.mix.write=0.9",
      "workload.mix.read=0.1", *SMALL], True),
]


def _digest(res) -> tuple[str, dict]:
    s = {k: v for k, v in res.summary.items()
         if k not in ("wall_time_s", "config", "traceback", "fleecesim_version")}
    text = json.dumps(s, sort_keys=True, default=repr,
                      allow_nan=True).encode()
    h = hashlib.sha256(text)
    req = res.requests
    if req is not None and len(req):
        for col in sorted(req.columns):
            h.update(col.encode())
            a = req[col].to_numpy()
            # an object column's bytes are pointers: hash its values' text
            h.update("\x00".join(map(str, a)).encode() if a.dtype == object else a.tobytes())
    flat = {k: v for k, v in s.items() if isinstance(v, (int, float, str, bool)) or v is None}
    return h.hexdigest()[:16], flat


def corpus():
    from fleecesim.config import load_config, variants
    for path in sorted(CONFIGS.glob("*.yaml")):
        try:
            cfg = load_config(path, SMALL)
        except SystemExit:
            continue
        except Exception:  # a config that cannot be shortened this way
            cfg = load_config(path)
        for name, vcfg in variants(cfg):
            yield f"{path.stem}/{name}", vcfg, True
    for name, file, over, fast in EXTRA:
        yield name, load_config(CONFIGS / file, over), fast


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--save", metavar="FILE", help="write the digests to FILE")
    g.add_argument("--check", metavar="FILE", help="compare with digests saved in FILE")
    ap.add_argument("--only", default="", help="run only scenarios whose name contains this")
    ap.add_argument("--progress", action="store_true",
                    help="each run with progress lines on stderr (must change nothing)")
    a = ap.parse_args(argv)

    from fleecesim.run import simulate
    before = json.loads(Path(a.check).read_text()) if a.check else {}
    out, moved = {}, []
    t0 = time.perf_counter()
    for name, cfg, fast in corpus():
        if a.only not in name:
            continue
        t = time.perf_counter()
        res = simulate(cfg, name, fast_path=fast, progress="lines" if a.progress else False)
        dig, flat = _digest(res)
        out[name] = {"digest": dig, "summary": flat}
        mark = ""
        if a.check:
            old = before.get(name)
            if old is None:
                mark = "  (new)"
            elif old["digest"] != dig:
                diff = [k for k in sorted(set(flat) | set(old["summary"]))
                        if not _same(flat.get(k), old["summary"].get(k))]
                mark = "  MOVED" + (f": {', '.join(diff[:6])}" if diff else
                                    " (per-request columns only)")
                moved.append(name)
        print(f"{name:55s} {dig}  {time.perf_counter() - t:6.2f}s{mark}", flush=True)
    print(f"{len(out)} runs in {time.perf_counter() - t0:.1f}s")
    if a.save:
        Path(a.save).write_text(json.dumps(out, indent=1, default=repr))
    if a.check:
        if moved:
            print(f"{len(moved)} of {len(out)} runs moved")
            return 1
        print("all identical")
    return 0


def _same(x, y) -> bool:
    if isinstance(x, float) and isinstance(y, float) and math.isnan(x) and math.isnan(y):
        return True
    return x == y


if __name__ == "__main__":
    sys.exit(main())
