"""One VM's model: its disk, scheme graph and guest on an environment and
devices it may share (``VM``), the run's result (``Result``) and the checks
before a run (``check_fits``: the per-cluster state fits in memory).
``run.simulate`` runs one VM, ``fleet.simulate_fleet`` several."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import simpy

from .config import Config
from .devices.host import Host, with_host
from . import faults
from .deadlines import deadline_stats
from .errors import UserError
from .metrics import PATH_CBW, PATH_ERROR, PATH_IGNORED, PATH_WAIT, Recorder, Stats
from .bitmap import widen
from .jobs.bulk import attach as attach_bulk
from .nodes import ActiveDisk
from . import sparse
from .rng import stream
from .schemes import BuildContext, build
from .sync import changed_mask, needed_at_t0
from .workloads.driver import GuestDriver
from .workloads.records import OP_DISCARD, OP_READ, OP_WRITE
from .workloads.synthetic import synthetic


@dataclass
class Result:
    """One run: its summary dict, the per-request records and the levels timeline.

    ``requests`` is built on first access from the compact recorder columns,
    so a caller that needs only the summary (sweeps) never pays for a frame."""
    name: str
    summary: dict
    _requests: object = field(repr=False, default=None)  # DataFrame or a builder
    timeline: pd.DataFrame = field(repr=False, default=None)

    @property
    def requests(self) -> pd.DataFrame:
        if callable(self._requests):
            self._requests = self._requests()
        return self._requests


def _pct(a: np.ndarray, q: float) -> float:
    return float(np.percentile(a, q)) if a.size else math.nan


def _window_stats(prefix: str, lat: np.ndarray) -> dict:
    return {f"{prefix}_p50_s": _pct(lat, 50), f"{prefix}_p99_s": _pct(lat, 99),
            f"{prefix}_mean_s": float(lat.mean()) if lat.size else math.nan,
            f"{prefix}_max_s": float(lat.max()) if lat.size else math.nan}


def timeline_frame(levels) -> pd.DataFrame:
    """All levels in one long frame (time, level, value); ``level`` is categorical
    so millions of change points cost 17 bytes each."""
    names = []
    for lv in levels:  # categories must be unique
        n, k = lv.name, 2
        while n in names:
            n, k = f"{lv.name}#{k}", k + 1
        names.append(n)
    times = [np.frombuffer(lv.times) for lv in levels]
    codes = np.concatenate([np.full(len(t), i, dtype=np.int16) for i, t in enumerate(times)]) \
        if levels else np.zeros(0, dtype=np.int16)
    return pd.DataFrame({
        "time": np.concatenate(times) if levels else np.zeros(0),
        "level": pd.Categorical.from_codes(codes, categories=names),
        "value": np.concatenate([np.frombuffer(lv.values) for lv in levels]) if levels
        else np.zeros(0),
    })


def guest_overload(t: np.ndarray, lat: np.ndarray) -> tuple[float, float] | None:
    """Before the backup the guest is alone; if its requests' latency grows
    through that window (median of the last tenth > 3x the first tenth's plus
    10 ms) the devices cannot serve its offered load and every latency depends
    on how long the run is. Returns (first, last) medians, or None."""
    if t.size < 50:
        return None
    order = np.argsort(t, kind="stable")
    k = max(5, t.size // 10)
    first = float(np.median(lat[order[:k]]))
    last = float(np.median(lat[order[-k:]]))
    return (first, last) if last > 3 * first + 0.010 else None


def oracle_counts(target_gen, copies, t0_gen, mask, block: int = 1 << 22):
    """The data oracle, block by block (bounded temporaries on multi-TiB disks):
    clusters asked for whose target content is not their t0 content; clusters
    copied more than once; clusters copied though not asked for; clusters
    written with anything but their t0 content."""
    if sparse.is_sparse(t0_gen):  # page by page (sparse.py)
        return sparse.oracle_pages(target_gen, copies, t0_gen, mask)
    violations = multi = outside = wrong = 0
    for i in range(0, len(t0_gen), block):
        sl = slice(i, i + block)
        differs = target_gen[sl] != t0_gen[sl]
        m = mask[sl]
        c = copies[sl]
        violations += int(np.count_nonzero(differs & m))
        multi += int(np.count_nonzero(c > 1))
        outside += int(np.count_nonzero((c > 0) & ~m))
        wrong += int(np.count_nonzero(differs & (c > 0)))
    return violations, multi, outside, wrong


def initial_zero_map(cfg: Config, n: int, cs: int, sparse_state: bool = False):
    """Which clusters read as zeroes at start: whole extents of
    ``allocation-granularity`` are allocated with probability ``allocated``."""
    per = max(1, cfg.disk.allocation_granularity // cs)
    extents = -(-n // per)
    rng = stream(cfg.run.seed, "disk.layout")
    if sparse_state:  # pages of whole extents (sparse.py): no array per cluster
        # the same draws in pieces (a stream's doubles do not depend on how many
        # are asked for at once): no 8 bytes a extent of temporary floats
        # (>= for the complement of < : the zero extents without a second array)
        zero = np.empty(extents, dtype=bool)
        for i in range(0, extents, 1 << 20):
            k = min(1 << 20, extents - i)
            zero[i:i + k] = rng.random(k) >= cfg.disk.allocated
        return sparse.zero_map_from_extents(n, per, zero)
    alloc = rng.random(extents) < cfg.disk.allocated
    return np.repeat(~alloc, per)[:n].copy()


def make_source(cfg: Config):
    w = cfg.workload
    if w.trace:
        from .workloads.traces import open_trace
        return open_trace(w.trace, w.format, device=w.device, time_scale=w.time_scale,
                          start=w.start, duration=w.duration, disk_size=cfg.disk.size,
                          map=w.map, loop=w.loop, events=w.events)
    return synthetic(w, cfg.disk.size, cfg.run.seed)


# Bytes of per-cluster state a run keeps (numpy arrays: generations, zero map,
# copy/access bitmaps, cache state, the target's copy and the oracle's t0
# copy), measured in benchmarks/bench_memory.py as ~22 B; with headroom.
STATE_BYTES_PER_CLUSTER = 32
# Sparse state (sparse.py): per page of PAGE clusters, each of ~12 arrays keeps a
# list slot and a value; an exception (a cluster that differs from its page,
# e.g. one a guest wrote) ~50 B in each of the ~6 arrays that follow it.
SPARSE_PAGE_BYTES = 12 * 16
SPARSE_EXCEPTION_BYTES = 6 * 50
# Schemes whose nodes keep dense arrays of their own (nodes/overlay.py).
DENSE_ONLY_SCHEMES = frozenset({"overlay-cor", "overlay-commit"})


def state_is_sparse(cfg: Config) -> bool:
    """Does this config run on sparse per-cluster state (``run.state``)?"""
    n = -(-cfg.disk.size // cfg.unit)
    if cfg.scheme in DENSE_ONLY_SCHEMES:
        if cfg.run.state == "sparse":
            raise UserError(f"run.state: sparse is not supported by the {cfg.scheme!r} scheme "
                            f"(its overlay keeps dense per-cluster arrays); use auto or dense")
        return False
    return sparse.state_mode(cfg.run.state, n) == "sparse"


def state_estimate(cfg: Config) -> int:
    """Bytes of per-cluster state a run starts with: dense arrays, or for sparse
    state its pages plus what the layout and the sync bitmap make non-uniform
    (what the guest touches later adds ~SPARSE_EXCEPTION_BYTES per cluster)."""
    n = -(-cfg.disk.size // cfg.unit)
    if not state_is_sparse(cfg):
        return n * STATE_BYTES_PER_CLUSTER
    npg = -(-n // sparse.PAGE)
    per = max(1, cfg.disk.allocation_granularity // cfg.unit)
    a = cfg.disk.allocated
    mixed = 0.0
    if per < sparse.PAGE:  # pages holding both zero and data extents: coarse pages
        epp = sparse.PAGE // per
        mixed = npg * (1 - a ** epp - (1 - a) ** epp) * (epp + 112) * 3  # zero map, t0, job's
    dirty = 0.0
    if cfg.backup.sync == "incremental":  # dirty clusters: bits in ~5 bitmaps
        dirty = min(n, cfg.backup.incremental.dirty * n) * 5 * 50
    return int(npg * SPARSE_PAGE_BYTES + mixed + dirty)


def check_fits(cfg: Config) -> None:
    """Refuse up front a scenario whose per-cluster state would not fit in this
    machine's available memory (one line, with the estimate)."""
    n = -(-cfg.disk.size // cfg.unit)
    need = state_estimate(cfg)
    avail = _available_memory()
    if avail is not None and need > 0.8 * avail:
        from .units import fmt_size
        how = "sparse" if state_is_sparse(cfg) else "dense"
        raise UserError(f"disk.size: {fmt_size(cfg.disk.size)} in {fmt_size(cfg.unit)} "
                        f"clusters is {n:,} clusters, ~{fmt_size(need)} of {how} per-cluster "
                        f"state; this machine has {fmt_size(avail)} available")


def _available_memory() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


class VM:
    """One VM's life on an environment and devices it may share with others:
    disk, scheme graph and guest (built and started on creation), the backup
    (``begin``, ``until_done``, ``end``), then the oracle and its summary
    (``result``). ``run._simulate`` runs one; ``fleet.simulate_fleet`` runs several."""

    def __init__(self, env, cfg: Config, raw_devices: dict, *, fast_path: bool = True,
                 analytic: bool = True, source=None, bar=None):
        self.env, self.cfg = env, cfg
        self.cs = cs = cfg.unit  # per-cluster arrays; each copy has its own granularity
        self.size = size = cfg.disk.size
        self.n = n = -(-size // cs)
        self.host = host = Host(cfg.host.request_cost, cfg.host.memcpy_bandwidth)
        self.stats = stats = Stats()
        devices = dict(raw_devices)
        faults.wrap_target(cfg, devices, stats, cfg.run.warmup)  # faults (t0 = warm-up's end)
        self.devices = devices = {k: with_host(d, host, cfg.devices[k].kind)
                                  for k, d in devices.items()}
        self.sparse = sparse.env_sparse(env)  # vm.py: state_is_sparse (sparse.py)
        self.bar = bar
        if bar is not None:  # a multi-TiB disk's layout takes seconds to draw
            from .units import fmt_size
            bar.set_up(f"drawing the layout of {n:,} {fmt_size(cs)} clusters")
        zero = initial_zero_map(cfg, n, cs, self.sparse)
        if bar is not None:
            bar.set_up("building the graph")
        self.active = active = ActiveDisk(env, devices[cfg.disk.device], n, cs, zero)
        ctx = BuildContext(env, cfg, devices, active, stats, n, cs, size, cfg.run.seed,
                           job_cluster_size=cfg.cluster_size,
                           cbw_cluster_size=cfg.cbw_cluster_size, host=host)
        self.graph = graph = build(cfg.scheme, ctx)
        faults.attach_fleecing(cfg, graph, env, stats)
        faults.log_windows(env, cfg, stats, cfg.run.warmup)
        self.rec = Recorder()
        self.guest_source = source if source is not None else make_source(cfg)
        self.guest = GuestDriver(env, graph, self.guest_source, self.rec,
                                 iodepth=cfg.workload.iodepth, fast_path=fast_path,
                                 max_inflight=cfg.workload.max_inflight,
                                 processes=not analytic, werror=cfg.guest.werror,
                                 rerror=cfg.guest.rerror,
                                 resume_after=cfg.guest.resume_after, stats=stats)
        self.guest.start()

    def begin(self) -> None:
        """t0: the point in time the backup must capture; the job starts."""
        cfg, n, cs = self.cfg, self.n, self.cs
        if self.bar is not None:  # seconds on a multi-TiB disk, before the job's first copy
            self.bar.taking_t0(f"the t0 state and copy bitmap of {n:,} clusters")
        self.t0 = self.env.now
        self.t0_gen = self.active.gen.copy()
        # The job's bitmap in whole clusters of its granularity (block-copy merges a
        # finer bitmap into its own: a cluster is copied if any part is dirty).
        needed = widen(needed_at_t0(cfg, n, cs, self.sparse), cfg.cluster_size // cs)
        self.mask = needed.copy()
        self.graph.start(needed)
        attach_bulk(self.graph, self.env, cfg)  # long zero runs as one bulk (jobs/bulk.py)
        if self.bar is not None:
            self.bar.backup_began(getattr(self.graph.job, "copier", None))

    def until_done(self):
        """The event that ends the backup: the job's end or run.max-time."""
        env = self.env
        ends = [self.graph.done, env.timeout(self.cfg.run.max_time)]
        halted = getattr(self.graph.job, "halted", None)
        if halted is not None:  # the job paused for good (on-*-error stop, never resumed)
            ends.append(halted)
        return simpy.AnyOf(env, ends)

    def end(self) -> None:
        graph, stats, cfg = self.graph, self.stats, self.cfg
        self.completed = completed = graph.done.triggered
        # A broken snapshot fails the backup whatever the job says (QEMU: every
        # snapshot-access read fails once copy-before-write's snapshot_error is set).
        self.job_ok = job_ok = (bool(graph.done.value) if completed else False) \
            and not stats.snapshot_broken
        self.t_end = t_end = self.env.now
        # an overlay scheme's commit, as of now: done, or still running after
        # the backup reached the target (None: no commit)
        commit, job = getattr(graph, "commit", None), getattr(graph, "job", None)
        self.commit_converged = None if commit is None else commit.done.triggered
        self.job_end = job.t_end if job is not None else None
        if completed and not job_ok:
            faults.job_failed_event(stats, graph, t_end)
        if cfg.backup.sync == "none":
            self.mask = changed_mask(self.t0_gen, self.active.gen)  # what CBW had to save
        # Measure fleecing space before teardown deletes the image.
        self.fleecing_peak = graph.cache.level.peak if graph.cache is not None else 0
        self.fleecing_level = graph.cache.level if graph.cache is not None else None
        # A scheme that commits an overlay down: did the image below get all of it?
        self.commit_violations = graph.commit_check()
        graph.finish()

    def result(self, name: str, summary: dict, t_stop: float, keep_arrays: bool = False):
        """The data oracle and the summary, once the guest has stopped at ``t_stop``."""
        cfg, graph, stats, guest = self.cfg, self.graph, self.stats, self.guest
        rec, host, devices, guest_source = self.rec, self.host, self.devices, self.guest_source
        n, cs, mask, t0_gen = self.n, self.cs, self.mask, self.t0_gen
        t0, t_end = self.t0, self.t_end
        completed, job_ok = self.completed, self.job_ok
        fleecing_peak, commit_violations = self.fleecing_peak, self.commit_violations

        # ---------------------------------------------------------------- oracle
        if graph.target is not None:
            violations, multi, outside, wrong = oracle_counts(graph.target.gen, graph.target.copies,
                                                              t0_gen, mask)
        else:
            violations, multi, outside, wrong = 0, 0, 0, 0
        oracle_ok = violations == 0 and completed and job_ok and not stats.snapshot_broken \
            and not commit_violations

        # ---------------------------------------------------------------- metrics
        a = rec.arrays()
        t, op, lat, path = a["time"], a["op"], a["latency"], a["path"]
        base = t < t0
        during = (t >= t0) & (t < t_end)
        summary.update({
            "sim_time_s": t_stop,
            "backup_start_s": t0,
            "backup_end_s": t_end,
            "backup_duration_s": t_end - t0,
            # completed: the backup ended and is the point-in-time image it claims;
            # failed: it ended without one (job error or broken snapshot); neither:
            # still running at run.max-time.
            "backup_completed": completed and job_ok,
            "backup_failed": (completed and not job_ok) or stats.snapshot_broken,
            "backup_outcome": ("snapshot-broken" if stats.snapshot_broken else
                               "complete" if completed and job_ok else
                               "failed" if completed else "unfinished"),
            "guest_ios": int(t.size),
            "guest_ios_during_backup": int(during.sum()),
            "guest_iops_during_backup": float(during.sum() / (t_end - t0)) if t_end > t0 else math.nan,
            "guest_iops_baseline": float(base.sum() / t0) if t0 > 0 else math.nan,
        })
        w, r = op == OP_WRITE, op == OP_READ
        summary.update(_window_stats("read", lat[r & during]))
        summary.update(_window_stats("write", lat[w & during]))
        summary.update(_window_stats("discard", lat[(op == OP_DISCARD) & during]))
        # where a guest write's time went during the backup (metrics.py):
        # mean seconds per component, over all writes and over the slowest 1 %
        att = rec.attribution_summary(np.flatnonzero(w & during))
        summary["write_attribution_s"] = att.get("all", {})
        summary["write_tail_attribution_s"] = att.get("p99+", {})
        bl = _window_stats("write", lat[w & base])
        summary["write_p50_baseline_s"] = bl["write_p50_s"]
        summary["write_p99_baseline_s"] = bl["write_p99_s"]
        rb = _window_stats("read", lat[r & base])
        summary["read_p50_baseline_s"] = rb["read_p50_s"]
        summary["read_p99_baseline_s"] = rb["read_p99_s"]
        summary["write_p99_ratio_vs_baseline"] = (summary["write_p99_s"] / bl["write_p99_s"]
                                                  if bl["write_p99_s"] else math.nan)
        summary["guest_write_bytes_during_backup"] = int(a["length"][w & during].sum())
        summary["writes_cbw"] = int(((path == PATH_CBW) & during).sum())
        summary["writes_waited"] = int(((path == PATH_WAIT) & during).sum())
        summary["writes_failed"] = int(((path == PATH_ERROR) & (op != OP_READ)).sum())
        summary["reads_failed"] = int(((path == PATH_ERROR) & (op == OP_READ)).sum())
        summary["errors_ignored"] = int((path == PATH_IGNORED).sum())
        s = stats.as_dict()
        summary.update({k: s[k] for k in (
            "cbw_count", "cbw_bytes", "cbw_waits", "cbw_errors", "guest_errors",
            "source_read_bytes", "target_write_bytes", "target_zero_bytes",
            "local_write_bytes", "local_read_bytes", "job_copied_bytes",
            "snapshot_broken", "snapshot_broken_at", "snapshot_read_errors")})
        if cfg.backup.x_perf.use_copy_range:  # how the copies went (jobs/block_copy.py)
            summary["copy_range_method"] = s["copy_range_method"]
            summary["copy_range_fallback"] = s["copy_range_fallback"]
        summary["events"] = [f"{tt:.6f}s {what}" for tt, what in sorted(stats.events,
                                                                        key=lambda e: e[0])
                             if tt <= t_stop]
        summary.update(faults.summary(stats, guest, int(t.size)))
        summary.update(error_policy_summary(guest, graph.job, stats, t_stop))
        # requests still held by a stopped VM count with the age they have
        # reached: at least that long, so over every deadline it passed
        pend = np.asarray(guest.pending(t_stop), dtype=np.float64)
        if pend.size:
            summary.update(deadline_stats(np.concatenate([t, pend]),
                                          np.concatenate([lat, t_stop - pend]), t0, t_end))
        else:
            summary.update(deadline_stats(t, lat, t0, t_end))
        # the warm-up's arrivals still unanswered at the end count with the age
        # they reached (at least that long): a guest whose requests are never
        # answered is the most overloaded, not one with too few to judge
        late = np.asarray(guest.unanswered(t_stop, t0), dtype=np.float64)
        over = guest_overload(np.concatenate([t[base], late]),
                              np.concatenate([lat[base], t_stop - late]))
        summary["guest_overloaded"] = over is not None
        if over is not None:
            from .units import fmt_time
            also = (f"; {late.size:,} requests that arrived in the warm-up were still "
                    f"unanswered when the run ended at {t_stop:.3g}s" if late.size else "")
            stats.warnings.append(
                f"the guest's offered load exceeds what the devices deliver: its latency grew "
                f"from {fmt_time(over[0])} to {fmt_time(over[1])} over the {t0:.3g}s "
                f"warm-up (a queue that grows with run length: not a steady state){also}")
        summary["commit_converged"] = self.commit_converged
        if self.commit_converged is False and self.job_end is not None:
            # mirror in background copy mode becomes ready only when nothing is
            # dirty (block/mirror.c: mirror_run); a guest that dirties the
            # overlay faster than the commit drains it never lets it complete
            stats.warnings.append(
                f"the backup reached the target at {self.job_end - t0:.3g}s, but the overlay's "
                f"commit had not converged by run.max-time (copy-mode background: the "
                f"guest dirties the overlay faster than the commit drains it; QEMU's mirror "
                f"would not become ready either; copy-mode write-blocking converges)")
        stats.warnings.extend(faults.unfired(
            cfg, t0, self.job_end if self.job_end is not None else t_stop))
        counters = getattr(guest_source, "counters", None)
        if counters and counters.get("ignored"):
            from .workloads.traces.stats import ignored_text
            stats.warnings.append(
                f"trace: {counters['ignored']:,} records skipped, not read/write/discard/flush "
                f"({ignored_text(counters.get('ignored_kinds', {})) or 'see trace stats'})")
        summary["warnings"] = list(stats.warnings)
        summary["fleecing_peak_bytes"] = int(fleecing_peak)
        # --- tiered fleecing cache (RAM tier, spill, flush) ---
        tiers = {t.kind: t for t in getattr(graph.cache, "tiers", ())}
        summary["ram_peak_bytes"] = int(tiers["ram"].level.peak) if "ram" in tiers else 0
        disk_tier = next((t for k, t in tiers.items() if k != "ram"), None)
        summary["disk_cache_peak_bytes"] = int(disk_tier.level.peak) if disk_tier else 0
        summary.update({k: s[k] for k in (
            "spill_bytes", "flush_bytes", "ram_evicted_bytes", "cor_admitted", "cor_dropped",
            "ram_read_hits", "cbw_absorbed", "deferred_discards", "deferred_discards_applied",
            "cbw_room_waits")})
        # What a failed or broken backup holds must still be right: every cluster the
        # target was written holds its t0 content (0 even when oracle_ok is False).
        summary["target_wrong_clusters"] = wrong
        # --- end tiered fleecing cache ---
        for lv in graph.levels:
            summary[f"{lv.name.replace('.', '_')}_mean"] = lv.mean(t0, t_end)
            summary[f"{lv.name.replace('.', '_')}_peak"] = lv.peak
        summary.update({
            "clusters": n, "unit_size": cs,
            "cluster_size": cfg.cluster_size, "cbw_cluster_size": cfg.cbw_cluster_size,
            "clusters_to_copy": sparse.count(mask),
            "oracle_ok": bool(oracle_ok),
            "oracle_violations": violations,
            # overlay schemes: clusters the commit should have carried into the image
            # below the overlay (the active disk's image / the target) that it lacks
            "commit_violations": int(commit_violations or 0),
            "clusters_copied_twice": multi,
            "clusters_copied_outside_mask": outside,
            "device_util": {k: (d.busy / t_stop if t_stop else 0.0) for k, d in devices.items()},
            "host_requests": host.requests,
            "host_memcpy_bytes": host.copied,
        })
        pbs = getattr(graph.target, "summary", None)
        if pbs is not None:  # a pbs target's chunks, bytes and stages (nodes/pbs.py)
            summary.update(pbs(t0, t_end))

        # ---------------------------------------------------------------- frames
        def requests_frame():
            req = rec.frame()
            phase = np.full(len(req), 2, dtype=np.int8)
            phase[req["time"].to_numpy() < t_end] = 1
            phase[req["time"].to_numpy() < t0] = 0
            req["phase"] = pd.Categorical.from_codes(phase, categories=["baseline", "backup", "tail"])
            return req

        result = Result(name, summary, requests_frame, timeline_frame(graph.levels))
        if keep_arrays:
            result.arrays = {"t0_gen": t0_gen, "target_gen": graph.target.gen if graph.target else None,
                             "copies": graph.target.copies if graph.target else None}
        return result



def error_policy_summary(guest, job, stats, t_stop: float) -> dict:
    """The error policies' costs (fleecesim/error_policy.py): the VM's stops
    (werror/rerror stop, enospc on ENOSPC) and the job's (on-*-error)."""
    paused = guest.paused_s + (t_stop - guest.paused_since if guest.paused else 0.0)
    job_since = getattr(job, "paused_since", None)
    return {
        "vm_stops": guest.stops,
        "vm_paused_s": paused,
        "vm_paused_at_end": guest.paused,
        # arrivals held while the VM was stopped (issued at cont, or still held)
        "guest_requests_held": guest.held + guest.arrivals_held(t_stop),
        # failed requests held and resubmitted at cont (each try after the first)
        "guest_requests_retried": guest.retried,
        # failed requests still held when the run ended (the VM still stopped)
        "guest_requests_awaiting_cont": guest.awaiting(),
        "job_errors": stats.job_errors,
        "job_stops": stats.job_stops,
        "job_paused_s": stats.job_paused_s + (t_stop - job_since if job_since is not None
                                              else 0.0),
        "job_paused_at_end": job_since is not None,
    }
