"""The NBD transport's figures: direction, full duplex, pull over the transport.

Prints three tables (no guest I/O, default host cost):

1. ``backup`` (64 workers) of a 1000 MiB disk, ssd -> nbd (target an
   ``nbd-1gbe`` device) against nbd -> ssd (the disk on an ``nbd-1gbe``
   device, the target a local ``sata-ssd``); and the same at QD1
   (``legacy-backup``), where each request's own time shows;
2. ``fleecing-push`` against ``fleecing-pull`` of 1 GiB over one 20 ms,
   1.1 GiB/s link (16 requests in flight, the default 3 MiB TCP window),
   with the bandwidth-delay bound ``window / rtt``;
3. one device: a 1 MiB read submitted just after a 100 MiB write on a
   100 MiB/s link (0.2 ms RTT), on the same connection and on another one;
   and 50 MiB read + 50 MiB written at once (1 MiB requests, 16 in flight).

Run from a checkout (``PYTHONPATH=.``); pointing PYTHONPATH at another
checkout gives that code's figures (the "before" of a change).
"""
from __future__ import annotations

from fleecesim.config import resolve
from fleecesim.devices import build_device
from fleecesim.run import simulate

MiB = 2**20


def _run(raw):
    s = simulate(resolve(raw)).summary
    assert s["oracle_ok"], s.get("error")
    return s["backup_duration_s"]


def direction(scheme: str, workers: int | None) -> tuple[float, float]:
    base = {"disk": {"size": "1000MiB", "allocated": 1.0},
            "devices": {"ssd": {"preset": "sata-ssd"}, "nbd": {"preset": "nbd-1gbe"}},
            "workload": {"iops": 0}, "run": {"warmup": 0, "tail": 0, "seed": 1}}
    b = {"scheme": scheme} | ({"max-workers": workers} if workers else {})
    to_nbd = _run(base | {"disk": base["disk"] | {"device": "ssd"},
                          "backup": b | {"target": {"device": "nbd"}}})
    from_nbd = _run(base | {"disk": base["disk"] | {"device": "nbd"},
                            "backup": b | {"target": {"device": "ssd"}}})
    return to_nbd, from_nbd


def push_pull() -> dict:
    link = {"kind": "remote", "rtt": "20ms", "link-bandwidth": "1.1GiB/s", "queue-depth": 16,
            "backend": {"preset": "nvme"}}
    out = {}
    for scheme in ("fleecing-push", "fleecing-pull"):
        raw = {"disk": {"size": "1GiB", "allocated": 1.0},
               "devices": {"local": {"preset": "nvme"}, "target": link},
               "workload": {"iops": 0}, "backup": {"scheme": scheme},
               "run": {"warmup": 0, "tail": 0, "seed": 1, "max-time": "600s"}}
        out[scheme] = 2**30 / _run(raw) / MiB
    cfg = resolve({"devices": {"target": link}})
    out["bound"] = cfg.devices["target"].window / cfg.devices["target"].rtt / MiB
    return out


def read_behind_write() -> dict:
    out = {}
    for label, conns in (("same connection", 1), ("another connection", 2)):
        spec = resolve({"devices": {"target": {
            "kind": "remote", "rtt": "0.2ms", "link-bandwidth": "100MiB/s", "queue-depth": 16,
            "connections": conns, "backend": {"kind": "ssd", "latency": "0us",
                                              "bandwidth": "100GiB/s", "queue-depth": 64}}}})
        dev = build_device("t", spec.devices["target"])
        dev.submit(0.0, 0, 100 * MiB, True)
        out[label] = dev.submit(0.0, 200 * MiB, MiB, False)
    return out


def mixed_streams() -> float:
    """50 MiB of reads and 50 MiB of writes in 1 MiB requests, alternating,
    16 kept in flight on one connection: when the last completes."""
    import heapq
    spec = resolve({"devices": {"target": {
        "kind": "remote", "rtt": "0.2ms", "link-bandwidth": "100MiB/s", "queue-depth": 16,
        "backend": {"kind": "ssd", "latency": "0us", "bandwidth": "100GiB/s",
                    "queue-depth": 64}}}})
    dev = build_device("t", spec.devices["target"])
    ends = [0.0] * 16
    last = 0.0
    for i in range(100):
        t = heapq.heappop(ends)
        e = dev.submit(t, i * MiB, MiB, bool(i % 2))
        heapq.heappush(ends, e)
        last = max(last, e)
    return last


def main() -> None:
    print("1000 MiB, no guest: seconds")
    print(f"{'':28s}{'ssd->nbd':>10s}{'nbd->ssd':>10s}")
    for scheme, workers, label in (("backup", 64, "backup, 64 workers"),
                                   ("legacy-backup", None, "legacy-backup (QD1)")):
        a, b = direction(scheme, workers)
        print(f"{label:28s}{a:10.5f}{b:10.5f}")
    pp = push_pull()
    print(f"\n20 ms, 1.1 GiB/s link, 1 GiB: MiB/s (window/rtt = {pp['bound']:.1f})")
    for k in ("fleecing-push", "fleecing-pull"):
        print(f"  {k:16s}{pp[k]:8.1f}  ({pp[k] / pp['bound']:.3f} of window/rtt)")
    rw = read_behind_write()
    print("\n1 MiB read just after a 100 MiB write, 100 MiB/s link: read completes at")
    for k, v in rw.items():
        print(f"  {k:20s}{v:8.4f} s")
    print(f"\n50 MiB read + 50 MiB written at once, 100 MiB/s link: {mixed_streams():.4f} s")


if __name__ == "__main__":
    main()
