"""A scenario to run on real QEMU, and the exact guest request list it replays.

The request list is a numpy array of ``fleecesim.workloads.records.RECORD_DTYPE``
(time, op, offset, length), generated deterministically from the seed, so the
simulator can replay exactly the requests QEMU saw: that pairs the comparison.

Time 0 is the start of guest activity. Requests with ``time < pre_backup_s``
run before the backup starts; the backup (or fleecing snapshot) starts at
``pre_backup_s``, and requests after that run while it is going on. Times are
whole milliseconds because qemu-io's ``sleep`` takes whole milliseconds.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from fleecesim.errors import UserError
from fleecesim.workloads.records import OP_READ, OP_WRITE, RECORD_DTYPE

KiB = 1024
MiB = 1024 * 1024
ALIGN = 4 * KiB  # guest request offsets and sizes are multiples of this
SCHEMES = ("backup", "fleecing-push", "fleecing-pull")
BLOCK_COPY_CLUSTER = 64 * KiB  # QEMU 7.2 BLOCK_COPY_CLUSTER_SIZE_DEFAULT


@dataclass
class QemuScenario:
    """What to run on real QEMU.

    disk_size     bytes of the active disk (and of the backup target)
    cluster_size  copy granularity. For the fleecing schemes it is the qcow2
                  cluster size of the fleecing image, which is what
                  copy-before-write copies in (max(64 KiB, this)); for "backup"
                  QEMU 7.2 has no knob (the NBD target reports no cluster size),
                  so it must be 64 KiB.
    target_bps    bytes/s: ``bps-write`` of the throttle group in front of the
                  backup target (push), or ``bps-read`` of the throttle in front
                  of the fleecing export (pull).
    write_rate    guest writes/s (Poisson), write_sizes [(bytes, weight), ...]
    read_rate     guest reads/s (Poisson, 0 = none), read_sizes likewise
    pre_backup_s  seconds of guest activity before the backup starts
    duration_s    seconds of guest activity after the backup starts
    seed          seed of the guest request list
    scheme        "backup" | "fleecing-push" | "fleecing-pull"
    workdir       parent directory of the run's temporary directory (None: system temp)
    timeout_s     hard bound on the whole run (None: derived from sizes and rates)
    keep_workdir  leave the temporary directory behind (for debugging)
    pull_bps      fleecing-pull only: bps-read of the throttle in front of the
                  fleecing export (None: target_bps; 0: export snapshot-access
                  directly, unthrottled)
    probe_rate    writes/s (Poisson, 4 KiB) of the hop probe: a second qemu-io
                  on a separate export (``probe``, a PROBE_SIZE raw file) of the
                  same daemon, in both phases beside the guest. Its latency is
                  the guest's own path (qemu-io -> NBD -> daemon -> page
                  cache) under the load of that moment, without the backup
                  or copy-before-write (0: no probe).
    snapshot_read_max  fleecing schemes: split every read of the snapshot into
                  requests of at most this many bytes (a ``blkdebug`` filter
                  with ``max-transfer`` over the snapshot-access node). This
                  works around QEMU < 8.0's hbitmap_status() bug, by which a
                  snapshot read that starts in a cluster already copied to the
                  fleecing image and runs on into a not-yet-copied one is read
                  whole from the ACTIVE disk (new data leaks into the backup).
                  None: QEMU as is.
    """

    disk_size: int = 128 * MiB
    cluster_size: int = 64 * KiB
    target_bps: float = 20 * MiB
    write_rate: float = 200.0
    write_sizes: list[tuple[int, float]] = field(
        default_factory=lambda: [(4 * KiB, 3.0), (64 * KiB, 1.0)])
    read_rate: float = 0.0
    read_sizes: list[tuple[int, float]] = field(default_factory=lambda: [(4 * KiB, 1.0)])
    pre_backup_s: float = 0.0
    duration_s: float = 3.0
    seed: int = 0
    scheme: str = "backup"
    workdir: str | None = None
    timeout_s: float | None = None
    keep_workdir: bool = False
    pull_bps: float | None = None
    snapshot_read_max: int | None = None
    probe_rate: float = 0.0

    def validate(self) -> None:
        """UserError with one line on the first bad field."""
        if self.scheme not in SCHEMES:
            raise UserError(f"scheme must be one of {', '.join(SCHEMES)}, got {self.scheme!r}")
        if not isinstance(self.disk_size, int) or self.disk_size <= 0 or self.disk_size % BLOCK_COPY_CLUSTER:
            raise UserError(f"disk_size must be a positive multiple of 64 KiB, got {self.disk_size!r}")
        cs = self.cluster_size
        if not isinstance(cs, int) or cs < BLOCK_COPY_CLUSTER or cs > 2 * MiB or cs & (cs - 1):
            raise UserError(f"cluster_size must be a power of two from 64 KiB to 2 MiB, got {cs!r}")
        if self.scheme == "backup" and cs != BLOCK_COPY_CLUSTER:
            raise UserError("scheme 'backup' copies in 64 KiB clusters in QEMU 7.2 "
                            f"(no knob for it); set cluster_size to 65536, not {cs}")
        srm = self.snapshot_read_max
        if srm is not None and (not isinstance(srm, int) or srm < ALIGN or srm > cs or srm & (srm - 1)):
            raise UserError(f"snapshot_read_max must be a power of two from 4 KiB to cluster_size, got {srm!r}")
        if self.disk_size % cs:
            raise UserError(f"disk_size {self.disk_size} is not a multiple of cluster_size {cs}")
        if not self.target_bps > 0:
            raise UserError(f"target_bps must be > 0, got {self.target_bps!r}")
        for name in ("write_rate", "read_rate", "pre_backup_s", "duration_s", "probe_rate"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and v >= 0 and np.isfinite(v)):
                raise UserError(f"{name} must be a number >= 0, got {v!r}")
        for name in ("write_sizes", "read_sizes"):
            sizes = getattr(self, name)
            rate = self.write_rate if name == "write_sizes" else self.read_rate
            if rate == 0:
                continue
            if not sizes:
                raise UserError(f"{name} is empty but its rate is {rate}")
            for item in sizes:
                try:
                    size, weight = item
                except (TypeError, ValueError):
                    raise UserError(f"{name} entries must be (bytes, weight), got {item!r}") from None
                if not isinstance(size, (int, np.integer)) or size <= 0 or size % ALIGN or size > self.disk_size:
                    raise UserError(f"{name}: size must be a positive multiple of 4 KiB "
                                    f"no larger than the disk, got {size!r}")
                if not weight >= 0:
                    raise UserError(f"{name}: weight must be >= 0, got {weight!r}")
            if sum(w for _, w in sizes) <= 0:
                raise UserError(f"{name}: weights sum to 0")

    @property
    def backup_start_s(self) -> float:
        """Time (on the request list's clock) at which the backup starts."""
        return float(self.pre_backup_s)


def _poisson_times(rng: np.random.Generator, rate: float, t0: float, t1: float) -> np.ndarray:
    """Event times of a Poisson process of ``rate`` on [t0, t1)."""
    if rate <= 0 or t1 <= t0:
        return np.empty(0)
    n = rng.poisson(rate * (t1 - t0))
    return np.sort(rng.uniform(t0, t1, n))


def _draw(rng: np.random.Generator, times: np.ndarray, op: int,
          sizes: list[tuple[int, float]], disk_size: int) -> np.ndarray:
    n = len(times)
    out = np.zeros(n, dtype=RECORD_DTYPE)
    if n == 0:
        return out
    lens = np.array([int(s) for s, _ in sizes], dtype=np.int64)
    w = np.array([float(x) for _, x in sizes], dtype=float)
    length = lens[rng.choice(len(lens), size=n, p=w / w.sum())]
    # offset uniform over the 4 KiB-aligned positions where the request fits
    slots = (disk_size - length) // ALIGN + 1
    offset = (rng.random(n) * slots).astype(np.int64) * ALIGN
    out["time"] = np.floor(times * 1000.0) / 1000.0  # whole ms: qemu-io's sleep unit
    out["op"] = op
    out["offset"] = offset
    out["length"] = length
    return out


def guest_requests(sc: QemuScenario) -> np.ndarray:
    """The guest request list of ``sc``: RECORD_DTYPE sorted by time (stable).

    Deterministic in ``sc.seed`` (numpy ``default_rng``) and the workload fields;
    the same list drives qemu-io and can be replayed by the simulator.
    Each phase (before / after the backup start) is drawn separately so
    changing one phase's length does not reshuffle the other.
    """
    sc.validate()
    rng = np.random.default_rng(sc.seed)
    t_start = sc.backup_start_s
    t_end = t_start + sc.duration_s
    parts = []
    for t0, t1 in ((0.0, t_start), (t_start, t_end)):
        wt = _poisson_times(rng, sc.write_rate, t0, t1)
        rt = _poisson_times(rng, sc.read_rate, t0, t1)
        parts.append(_draw(rng, wt, OP_WRITE, sc.write_sizes, sc.disk_size))
        parts.append(_draw(rng, rt, OP_READ, sc.read_sizes, sc.disk_size))
    req = np.concatenate(parts)
    return req[np.argsort(req["time"], kind="stable")]


PROBE_SIZE = 16 * MiB  # the probe's own disk
PROBE_SIZE_REQ = 4 * KiB


def probe_requests(sc: QemuScenario) -> np.ndarray:
    """The hop probe's writes (RECORD_DTYPE, sorted): Poisson ``probe_rate``
    4 KiB writes over both phases, uniform on PROBE_SIZE, from their own seeded
    stream (the guest's request list does not change with the probe)."""
    sc.validate()
    rng = np.random.default_rng([sc.seed, 0x9B0BE])
    parts = []
    t_start = sc.backup_start_s
    for t0, t1 in ((0.0, t_start), (t_start, t_start + sc.duration_s)):
        parts.append(_draw(rng, _poisson_times(rng, sc.probe_rate, t0, t1), OP_WRITE,
                           [(PROBE_SIZE_REQ, 1.0)], PROBE_SIZE))
    req = np.concatenate(parts)
    return req[np.argsort(req["time"], kind="stable")]


def write_pattern(index: int) -> int:
    """The qemu-io ``-P`` byte of request ``index`` (never 0, so no write is a
    zero write)."""
    return index % 255 + 1


def clusters_touched(req: np.ndarray, cluster_size: int) -> np.ndarray:
    """Sorted distinct cluster indices covered by the requests in ``req``."""
    if len(req) == 0:
        return np.empty(0, dtype=np.int64)
    first = req["offset"] // cluster_size
    last = (req["offset"] + req["length"] - 1) // cluster_size
    span = last - first + 1
    idx = np.repeat(first, span) + (np.arange(span.sum()) - np.repeat(np.cumsum(span) - span, span))
    return np.unique(idx)


def distinct_clusters_written(req: np.ndarray, cluster_size: int,
                              t_from: float = -np.inf, t_to: float = np.inf) -> int:
    """Number of distinct clusters written by guest writes with t_from <= time < t_to."""
    sel = req[(req["op"] == OP_WRITE) & (req["time"] >= t_from) & (req["time"] < t_to)]
    return int(len(clusters_touched(sel, cluster_size)))


def qemu_io_script(req: np.ndarray, indices: np.ndarray, t0: float) -> str:
    """qemu-io commands replaying ``req[indices]`` with ``sleep``s so that request
    i is issued at ``req[i].time - t0`` (ms; sleeps are relative, so qemu-io's
    own per-command overhead adds a small drift), then ``aio_flush``."""
    lines = []
    now_ms = 0
    for i in indices:
        r = req[i]
        at_ms = int(round((float(r["time"]) - t0) * 1000.0))
        if at_ms > now_ms:
            lines.append(f"sleep {at_ms - now_ms}")
            now_ms = at_ms
        if r["op"] == OP_WRITE:
            lines.append(f"aio_write -P 0x{write_pattern(int(i)):02x} {int(r['offset'])} {int(r['length'])}")
        elif r["op"] == OP_READ:
            lines.append(f"aio_read {int(r['offset'])} {int(r['length'])}")
        else:
            raise UserError(f"request {i}: op {int(r['op'])} is not supported on real QEMU")
    lines.append("aio_flush")
    return "\n".join(lines) + "\n"
