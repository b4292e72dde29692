"""No device moves more than its bandwidth over any interval (devices/base.py).

1. One 8 MiB request then 2,000 x 4 KiB on a 1 MiB/s device, all at t = 0:
   bytes of the requests complete by t, under ``ps`` and ``fifo``.
2. Every scenario of ``same_results.py``'s corpus (each bundled config's
   variants, shortened; sparse state, incremental, the reference engine): each
   device's requests (ready = slot + access latency, completion, pipe time
   ``max(length/bandwidth, 1/iops)``) checked against the interval bound by
   earliest-deadline-first — lateness <= 0 exactly when, over every interval,
   the requests inside it hold at most its length of pipe time (devices with
   positioning time, HDDs, are left out: their ready time is not visible).

    python benchmarks/ps_bound.py [--only SUBSTR]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from fleecesim.devices.base import Device  # noqa: E402
from fleecesim.devices import RAM, SSD  # noqa: E402
from tests.test_ps_invariant import _edf_lateness, recording_submit  # noqa: E402

MiB = 2**20


def example() -> None:
    print("8 MiB then 2,000 x 4 KiB at t=0 on 1 MiB/s (bound: t MiB by t)")
    for sharing in ("ps", "fifo"):
        d = Device("d", 0.0, 1 * MiB, 4096, sharing=sharing)
        ends = [(d.submit(0.0, 0, 8 * MiB), 8 * MiB)]
        ends += [(d.submit(0.0, 0, 4096), 4096) for _ in range(2000)]
        row = []
        for t in (2.0, 4.0, 8.0, 12.0, 16.0):
            done = sum(n for e, n in ends if e <= t + 1e-12) / MiB
            row.append(f"t={t:g}s {done:6.3f}")
        print(f"  {sharing:4s} " + "  ".join(row) + " MiB")


def corpus_check(only: str) -> int:
    from fleecesim.run import simulate
    from same_results import corpus

    jobs: dict = {}
    # on the kinds' own classes (Device is an immutable type when compiled);
    # a HostDevice over a patched kind takes its two-call path, through it
    for kind in (RAM, SSD):
        kind.submit = recording_submit(jobs)
    bad = 0
    for name, cfg, fast in corpus():
        if only not in name:
            continue
        jobs.clear()
        simulate(cfg, name, fast_path=fast)
        worst = []
        for (_, dev, ps), js in jobs.items():
            late = _edf_lateness(js)
            scale = max(e for _, e, _ in js)
            flag = "" if late <= 1e-9 * scale else " OVER"
            bad += bool(flag)
            worst.append(f"{dev}({'ps' if ps else 'fifo'}) {late:+.1e}s{flag}")
        print(f"{name:45s} " + "  ".join(worst), flush=True)
    print("every device within its bandwidth" if not bad else f"{bad} devices over")
    return 1 if bad else 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", default="", help="corpus scenarios whose name contains this")
    a = ap.parse_args(argv)
    example()
    return corpus_check(a.only)


if __name__ == "__main__":
    sys.exit(main())
