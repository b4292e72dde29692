"""Real QEMU vs the simulator, quiet and with a CPU hog beside it.

Run: python benchmarks/qemu_hop_load.py [--full] [--reps N] [--hogs K]

Each repetition runs ``fleecesim.qemu.compare`` (backup, fleecing-push,
fleecing-pull) once on a quiet machine and once with K busy loops
(``python -c "while True: pass"``, started here and killed by pid after the
run), and prints write latency during the backup, sim/real, under the two
guest-hop models: ``probe`` (the hop measured beside the run by a second
qemu-io on its own export, drawn per request; the default) and ``constant``
(median pre-backup real write minus the simulator's, added to every write).
Default scenario: configs/qemu-small.yaml with a 64 MiB disk and 0.5 s of
pre-backup guest (as tests/test_qemu_compare.py); --full: as shipped (256 MiB).
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # this checkout's fleecesim

from fleecesim.config import load_config, resolve  # noqa: E402
from fleecesim.qemu.compare import compare  # noqa: E402

MiB = 2**20


def scenario(full: bool):
    cfg = load_config(REPO / "configs" / "qemu-small.yaml")
    if full:
        return cfg
    raw = cfg.dump()
    raw["disk"]["size"] = 64 * MiB
    raw["run"]["warmup"] = 0.5
    return resolve(raw)


def rows(cmp: dict, load: str, rep: int) -> list[dict]:
    out = []
    hop = cmp["calibration"]["guest_hop_s"]
    for s, d in cmp["schemes"].items():
        m = d["metrics"]
        for q in ("p50", "p99"):
            real = m[f"write_{q}_s"]["real"]
            out.append({"rep": rep, "load": load, "scheme": s, "q": q, "real": real,
                        "probe": m[f"write_{q}_s"]["sim"] / real,
                        "constant": (d[f"write_{q}_s_raw"] + hop) / real})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--full", action="store_true")
    ap.add_argument("--reps", type=int, default=1)
    ap.add_argument("--hogs", type=int, default=2)
    a = ap.parse_args()
    cfg = scenario(a.full)
    table = []
    for rep in range(a.reps):
        for load in ("quiet", f"{a.hogs} hogs"):
            hogs = []
            if load != "quiet":
                hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
                        for _ in range(a.hogs)]
            try:
                cmp = compare(cfg, ["backup", "fleecing-push", "fleecing-pull"])
            finally:
                for h in hogs:
                    h.kill()
                    h.wait()
            table += rows(cmp, load, rep)
            print(f"rep {rep} {load}: constant hop {cmp['calibration']['guest_hop_s'] * 1e3:.2f}ms"
                  f"{' (noisy)' if cmp['calibration']['noisy'] else ''}", file=sys.stderr,
                  flush=True)
    print(f"{'rep':>3}  {'load':8} {'scheme':14} {'q':3} {'real':>9}  {'sim/real probe':>14}  "
          f"{'sim/real constant':>17}")
    for r in table:
        print(f"{r['rep']:>3}  {r['load']:8} {r['scheme']:14} {r['q']:3} "
              f"{r['real'] * 1e3:8.2f}ms  {r['probe']:14.2f}  {r['constant']:17.2f}")


if __name__ == "__main__":
    main()
