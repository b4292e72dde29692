"""Before a run: what it will cost, and settings no device of that kind has.

``estimate(cfg)`` turns the resolved config into an estimate of the run's
wall time and memory on this kind of machine: the guest requests it will
simulate (open loop: ``iops`` x simulated time; closed loop: ``iodepth``
requests kept at the disk, at the rate its device serves them), the copy
tasks of the backup (allocated bytes / max-chunk), and the bytes each of
them keeps. ``warnings(cfg)`` gives one line when the estimate is over
``WALL_WARN_S`` or ``MEMORY_WARN``, naming the keys that drive it, and one
line per device latency far beyond any device of its kind. Neither refuses
anything: a huge run is legal, it should just not start in silence.

The per-item costs are measured by ``benchmarks/bench_cost.py`` (medians of
3 runs on the 2-vCPU CPython 3.11 machine this was written on, loaded by
other work; 2026-12). They are orders of magnitude, not predictions: the
machine's load moves them by 2-3x.
"""
from __future__ import annotations

from dataclasses import dataclass, field

# Wall seconds per item. benchmarks/bench_cost.py: an open-loop guest request
# (the guest alone at 50k IOPS; runs 8-25 us) and a 1 MiB copy task (an idle
# guest, a full backup of a fully allocated disk; runs 113-281 us). Whole runs
# of configs/qemu-small.yaml (fleecing-push, 1.82-2.04 M guest requests, load
# average ~14 on the 2 CPUs): max-inflight 16 at iops 1e6, 89.4 s (49 us a
# request: one process, a timeout each); iodepth 16, 31.8 s (17.5 us);
# iodepth 100000, 193.8 s (95 us: a process per slot, and SimPy's heap that
# many events deep), so a closed loop's cost grows as (iodepth/16)^0.194,
# the power through those two points.
WALL_PER_REQUEST_S = 17e-6
WALL_PER_LIMITED_REQUEST_S = 49e-6
WALL_PER_CLOSED_REQUEST_S = 17.5e-6
CLOSED_DEPTH_EXPONENT = 0.194
WALL_PER_COPY_S = 200e-6
# Bytes of peak memory per guest request (recorder columns, summary arrays,
# the results frame; bench_cost.py, runs 102-109), and per iodepth slot (its
# process and generator: the iodepth 100000 run's 829 MB peak, less its
# requests' bytes and the 150 MB of an idle run, over its slots)
BYTES_PER_REQUEST = 105
BYTES_PER_IODEPTH_SLOT = 4600

WALL_WARN_S = 120.0
MEMORY_WARN = 2 * 2**30

# How far beyond the slowest bundled preset of its kind (devices/presets.py,
# each sourced there) a device's access time must be to be called implausible.
IMPLAUSIBLE_FACTOR = 1000


@dataclass
class Estimate:
    sim_s: float            # simulated seconds: warm-up + backup + tail
    backup_s: float         # of which the backup (at most run.max-time)
    requests: float         # guest requests
    copies: float           # copy tasks of the backup job
    wall_s: float
    memory: float           # bytes
    drivers: list[str] = field(default_factory=list)  # the keys behind the size


def _rates(spec) -> tuple[float, float, float]:
    """(read latency, read bandwidth, write bandwidth) of a device, a remote
    one through its link to its backend."""
    if spec.kind == "remote":
        lat, rbw, wbw = _rates(spec.backend)
        return spec.rtt + lat, min(spec.link_bandwidth, rbw), min(spec.link_bandwidth, wbw)
    return spec.read_latency, spec.read_bandwidth, spec.write_bandwidth


def _guest_rate(cfg) -> tuple[float, str]:
    """Guest requests per simulated second, and the key that sets it."""
    w = cfg.workload
    if w.trace is not None:
        return 0.0, ""
    if w.iops is not None:
        if w.max_inflight is None:
            return float(w.iops), "workload.iops"
        # at most max-inflight outstanding: arrivals beyond what they serve wait
        return min(float(w.iops), _served(cfg, w.max_inflight)), "workload.iops"
    return _served(cfg, w.iodepth), "workload.iodepth"


def overloaded(cfg) -> str | None:
    """A line when an open-loop guest offers more than its disk's device can
    serve at all: more bytes a second than its bandwidth, or more requests
    than its IOPS cap (both hard limits of the device model, devices/base.py
    Device). Its queue then grows for the whole run, and so do latency and
    the memory held by the requests waiting (beyond the estimate)."""
    w = cfg.workload
    if cfg.vms or w.trace is not None or w.iops is None or not w.iops:
        return None
    spec = cfg.devices[cfg.disk.device]
    mean, wf = _mean_size_and_write_share(w)
    _l, rbw, wbw = _rates(spec)
    cap = 1.0 / ((1 - wf) / rbw + wf / wbw) / mean  # requests/s the bandwidth allows
    if spec.kind != "remote":
        caps = [(1 - wf, spec.read_iops), (wf, spec.write_iops)]
        if all(c for f, c in caps if f):
            cap = min(cap, 1.0 / sum(f / c for f, c in caps if f))
    if w.iops <= cap:
        return None
    return (f"workload.iops: {w.iops:,.6g} requests/s is more than devices.{cfg.disk.device} "
            f"can serve at all (~{cap:,.0f}/s by its bandwidth and IOPS cap): the guest is "
            f"overloaded from the start, its latency grows for the whole run")


def _mean_size_and_write_share(w) -> tuple[float, float]:
    """The workload's mean request size (bytes) and the share of its requests
    that write (writes and discards)."""
    sizes = w.size_weights()
    total = sum(wt for _s, wt in sizes) or 1.0
    mix = w.mix
    return (sum(sz * wt for sz, wt in sizes) / total,
            (mix.write + mix.discard) / ((mix.read + mix.write + mix.discard) or 1.0))


def _served(cfg, inflight: int) -> float:
    """Requests per second the disk's device serves with ``inflight`` of the
    workload's requests kept at it."""
    w = cfg.workload
    spec = cfg.devices[cfg.disk.device]
    mean, wf = _mean_size_and_write_share(w)
    lat, rbw, wbw = _rates(spec)
    if spec.kind != "remote":
        lat = (1 - wf) * spec.read_latency + wf * spec.write_latency
    bw = 1.0 / ((1 - wf) / rbw + wf / wbw)
    service = lat + mean / bw
    # the disk serves at most queue-depth of them at once, and its bandwidth in all
    inflight = min(inflight, spec.queue_depth)
    return min(inflight / service if service > 0 else float("inf"), bw / mean)


def estimate(cfg) -> Estimate | None:
    """The run's cost, or None for what this does not estimate (a fleet)."""
    if cfg.vms:
        return None
    from .vm import state_estimate
    b = cfg.backup
    run = cfg.run
    drivers = []
    # the backup's simulated time: its bytes at the slowest of source read,
    # target write and the speed limit; never past run.max-time
    data = cfg.disk.size * cfg.disk.allocated
    if b.sync == "incremental":
        data *= b.incremental.dirty
    if cfg.scheme == "none":
        backup_s, copies = 0.0, 0.0
    elif b.sync == "none":
        backup_s, copies = min(b.window, run.max_time), 0.0
    else:
        _l, src_bw, _w = _rates(cfg.devices[cfg.disk.device])
        tgt = cfg.devices.get(b.target.device)
        rate = src_bw if tgt is None else min(src_bw, _rates(tgt)[2])
        if b.speed:
            rate = min(rate, b.speed)
        backup_s = min(run.max_time, data / rate)
        copies = data / cfg.max_chunk * (backup_s / (data / rate) if data else 0.0)
    sim_s = run.warmup + backup_s + run.tail
    rate, key = _guest_rate(cfg)
    requests = rate * sim_s
    closed = cfg.workload.iodepth is not None and cfg.workload.trace is None
    if closed:
        per = WALL_PER_CLOSED_REQUEST_S * max(1.0, cfg.workload.iodepth / 16) \
            ** CLOSED_DEPTH_EXPONENT
    elif cfg.workload.max_inflight is not None:
        per = WALL_PER_LIMITED_REQUEST_S
    else:
        per = WALL_PER_REQUEST_S
    wall = requests * per + copies * WALL_PER_COPY_S
    memory = requests * BYTES_PER_REQUEST + state_estimate(cfg)
    if closed:
        memory += cfg.workload.iodepth * BYTES_PER_IODEPTH_SLOT
    # which keys make it big: each part that is at least a third of the total
    parts = [(requests * per, f"{key} ({rate:,.0f} requests/s simulated)"),
             (copies * WALL_PER_COPY_S, f"disk.size / backup.max-chunk ({copies:,.0f} "
                                        f"copy tasks)")]
    if closed and cfg.workload.iodepth * BYTES_PER_IODEPTH_SLOT > memory / 3:
        drivers.append(f"workload.iodepth ({cfg.workload.iodepth:,} in flight, one process "
                       f"each)")
    for part, what in parts:
        if wall and part >= wall / 3:
            drivers.append(what)
    if sim_s and (run.warmup + run.tail) / sim_s > 0.5 and requests * per >= wall / 3:
        drivers.append(f"run.warmup + run.tail ({run.warmup + run.tail:g}s simulated)")
    elif backup_s >= run.max_time and requests * per >= wall / 3:
        drivers.append(f"run.max-time ({run.max_time:g}s: the backup is not done before)")
    return Estimate(sim_s, backup_s, requests, copies, wall, memory, drivers)


def _slowest_presets() -> dict[str, tuple[float, str]]:
    """Per device kind, the longest access time of a bundled preset (ssd and
    hdd: latency, plus an hdd's average seek and half a turn; remote: rtt),
    and which preset has it. A remote preset's backend counts for its kind."""
    from .config import DeviceSpec
    from .devices.presets import PRESETS
    out: dict[str, tuple[float, str]] = {}

    def visit(spec, name):
        t = _access(spec)
        if t > out.get(spec.kind, (-1.0, ""))[0]:
            out[spec.kind] = (t, name)
        if spec.kind == "remote":
            visit(spec.backend, f"{name}'s backend")
    for name in PRESETS:
        visit(DeviceSpec.model_validate({"preset": name}), name)
    return out


def _access(spec) -> float:
    """A device's time to reach a request's data, without transfer."""
    if spec.kind == "remote":
        return spec.rtt
    t = max(spec.read_latency, spec.write_latency)
    if spec.kind == "hdd":
        seek = spec.seek if isinstance(spec.seek, (int, float)) else spec.seek.average
        t += seek + (30.0 / spec.rpm if spec.rpm else 0.0)
    return t


def implausible(cfg) -> list[str]:
    """A line per device whose access time is more than IMPLAUSIBLE_FACTOR
    times the slowest bundled preset of its kind (a bare number is seconds:
    ``latency: 2`` on an ssd is two seconds a request)."""
    from .units import fmt_time
    slowest = _slowest_presets()
    lines = []

    def check(spec, where):
        ref, name = slowest.get(spec.kind, (0.0, ""))
        keys = ("rtt",) if spec.kind == "remote" else ("read-latency", "write-latency")
        for k in keys:
            v = getattr(spec, k.replace("-", "_"))
            if ref and v > IMPLAUSIBLE_FACTOR * ref:
                lines.append(f"{where}.{k}: {fmt_time(v)} a request on a {spec.kind} device "
                             f"is {v / ref:,.0f}x the slowest bundled {spec.kind} preset "
                             f"({name}: {fmt_time(ref)}); a bare number is seconds (did you "
                             f"mean {v:g}ms or {v:g}us?)")
        if spec.kind == "remote":
            check(spec.backend, f"{where}.backend")
    for dev, spec in cfg.devices.items():
        check(spec, f"devices.{dev}")
    return lines


# The recorder's columns (metrics.py Recorder: float64 time, uint8 op, int64
# offset, uint32 length, float32 latency, uint8 path, float32 service): bytes
# every recorded guest request keeps until the run ends, whatever else it costs.
RECORD_BYTES = 8 + 1 + 8 + 4 + 4 + 1 + 4


def check(cfg) -> None:
    """Refuse a run that certainly cannot fit: an open-loop guest without a
    max-inflight cap issues, and records, every arrival, at least ``iops`` x
    (warm-up + tail) of them, whatever the backup does."""
    from .errors import UserError
    from .vm import _available_memory
    from .units import fmt_size
    w = cfg.workload
    if cfg.vms or w.trace is not None or w.iops is None or w.max_inflight is not None:
        return
    n = w.iops * (cfg.run.warmup + cfg.run.tail)
    avail = _available_memory()
    if avail is not None and n * RECORD_BYTES > avail:
        raise UserError(f"workload.iops: {w.iops:,.6g} requests/s over run.warmup + run.tail "
                        f"({cfg.run.warmup + cfg.run.tail:g}s) is at least {n:,.0f} guest "
                        f"requests, whose records alone ({RECORD_BYTES} B each) need "
                        f"{fmt_size(n * RECORD_BYTES)}; this machine has {fmt_size(avail)} "
                        f"available")


def warnings(cfg) -> list[str]:
    """One line for a run over the cost thresholds, one per implausible device
    (after ``check``: a run that cannot fit is refused)."""
    from .units import fmt_size, fmt_time
    check(cfg)
    out = implausible(cfg)
    over = overloaded(cfg)
    if over:
        out.append(over)
    e = estimate(cfg)
    if e is not None and (e.wall_s > WALL_WARN_S or e.memory > MEMORY_WARN):
        out.append(f"estimated ~{fmt_time(e.wall_s) if e.wall_s < 3600 else f'{e.wall_s / 3600:.3g}h'} "
                   f"of wall time and ~{fmt_size(e.memory)} of memory for {e.requests:,.0f} guest "
                   f"requests and {e.copies:,.0f} copy tasks over ~{e.sim_s:,.4g}s simulated "
                   f"(driven by {'; '.join(e.drivers) or 'the whole config'}); "
                   f"it starts now (Ctrl-C stops it)")
    return out


# A sweep or advise warns for at most this many of its planned points (the
# largest first) and counts the rest: a 200-point sweep of huge runs says so in
# a few lines, not 200.
PLAN_SHOWN = 3


def plan_warnings(points) -> list[str]:
    """The lines a sweep prints before its first run. ``points``: (label,
    Config) per distinct planned config (replications differ only in their
    seed and cost the same). Refuses, as ``run`` does, a point that cannot fit
    (``vm.check_fits``, ``check``), naming the point; then every warning of the
    ``PLAN_SHOWN`` points estimated largest, and how many more points warn."""
    from .errors import UserError
    from .vm import check_fits
    warned = []
    for label, cfg in points:
        try:
            check_fits(cfg)
            ws = warnings(cfg)
        except UserError as e:
            raise UserError(f"{label}: {e}") from None
        if ws:
            e = estimate(cfg)
            warned.append((-(e.wall_s if e is not None else 0.0), len(warned), label, ws))
    warned.sort()
    lines = [f"{label}: {w}" for _k, _i, label, ws in warned[:PLAN_SHOWN] for w in ws]
    if len(warned) > PLAN_SHOWN:
        lines.append(f"{len(warned) - PLAN_SHOWN} more of the {len(points)} points warn "
                     f"likewise (the {PLAN_SHOWN} estimated largest are shown)")
    return lines
