"""Read-once (fleecing-pull, backup.client.discard) simulated and on real QEMU,
with the same guest writes, side by side: the fleecing image's peak, and what
it holds once the client has read (and TRIMmed) everything.

Real: qemu-storage-daemon, `fleecesim qmp`'s sequence for the config (with
and without read-once); the guest overwrites N clusters after t0, before the
client reads them; the fleecing image's allocated size (st_blocks, what
qemu-img info calls disk size) is taken after the writes and after the
client's read + TRIM, less its size before the writes.

Sim: the same config, the same writes as a trace right after t0 to clusters
the client reaches last (a slow client link), so every one is copied before
it is read, as on the real run.

    PYTHONPATH=. python benchmarks/readonce_real_vs_sim.py
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fleecesim.config import resolve  # noqa: E402
from fleecesim.run import simulate  # noqa: E402
from tests.test_qmp_realqemu import CL, SIZE, Qsd, allocated, guest_writes  # noqa: E402
from tests.test_qmp_realqemu import VERSION  # noqa: E402
from fleecesim.qmp_export import qmp_steps, run_steps  # noqa: E402

N = 24
CLUSTERS = [SIZE // CL - 1 - 2 * i for i in range(N)]  # the top of the disk, every other


def cfg(discard: bool, trace: Path | None = None):
    raw = {"name": "readonce", "disk": {"size": SIZE},
           "devices": {"local": {"preset": "nvme"},
                       "target": {"kind": "remote", "rtt": "0.05ms", "link-bandwidth": "2MiB/s",
                                  "queue-depth": 16, "backend": {"preset": "nvme"}}},
           "workload": {"iops": 10} if trace is None else
                       {"trace": str(trace), "format": "disksim"},
           "backup": {"scheme": "fleecing-pull", "client": {"discard": discard}},
           "run": {"seed": 1, "warmup": "0.5s", "tail": "0.1s"},
           "qemu": {"version": f"{VERSION[0]}.{VERSION[1]}"}}
    return resolve(raw)


def sim(discard: bool, tmp: Path) -> dict:
    trace = tmp / "w.trace"
    # DiskSim: arrival_ns devno lba sectors type(0 = write); t0 = warm-up = 0.5 s
    # (a trace starts at its first record: a 4 KiB read at 0 s anchors it)
    trace.write_text("0 0 0 8 1\n" + "".join(f"{int((0.51 + i * 1e-3) * 1e9)} 0 "
                                              f"{c * CL // 512} {CL // 512} 0\n"
                                              for i, c in enumerate(CLUSTERS)))
    r = simulate(cfg(discard, trace))
    s = r.summary
    tl = r.timeline
    name = "fleecing_bytes"  # the fleecing image level (nodes/cache.py)
    lv = tl[tl["level"] == name]
    # what the image holds when the client has read everything: just before
    # the backup's end deletes it
    end = int(lv[lv["time"] < 0.5 + s["backup_duration_s"]]["value"].iloc[-1])
    return {"peak": s["fleecing_peak_bytes"], "end": end, "ok": s["oracle_ok"],
            "cbw": s["cbw_count"]}


def real(discard: bool, tmp: Path) -> dict:
    with Qsd(tmp) as q:
        fleece = q.file("f.qcow2", "qcow2")
        plan = qmp_steps(cfg(discard), q.ends(fleece=str(fleece)), VERSION)
        seen = {}

        def on_pause(_step):
            base = allocated(fleece)
            guest_writes(q, CLUSTERS)
            seen["peak"] = allocated(fleece) - base
            subprocess.run(["qemu-img", "convert", "-q", "-f", "raw", "-O", "raw",
                            q.snapshot_uri(), str(tmp / "pulled.raw")], check=True, timeout=60)
            if discard:  # the client's read-once: TRIM what it has stored
                q.io(f"discard 0 {SIZE}\n", export="fleecing")
            seen["end"] = allocated(fleece) - base
        run_steps(q.client, plan.steps, timeout=60, on_pause=on_pause)
        return seen


def main():
    rows = []
    for discard in (True, False):
        tmp = Path(tempfile.mkdtemp(prefix="ro"))
        try:
            rows.append((discard, sim(discard, tmp), real(discard, tmp)))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"{N} guest writes of 64 KiB after t0 on a {SIZE >> 20} MiB disk "
          f"(QEMU {VERSION[0]}.{VERSION[1]}; real sizes less the image's size before them)")
    print(f"{'read-once':>10} | {'sim peak':>10} | {'real peak':>10} | {'sim end':>10} | "
          f"{'real end':>10}")
    for discard, s, r in rows:
        print(f"{str(discard):>10} | {s['peak']:>10} | {r['peak']:>10} | {s['end']!s:>10} | "
              f"{r['end']:>10}")


if __name__ == "__main__":
    main()
