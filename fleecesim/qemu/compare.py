"""The model against real QEMU: translate a simulator config into a
QEMU setup and back, run both on the same request list, compare.

    scenario_from_config(cfg, scheme) -> QemuScenario   what QEMU can run of cfg
    sim_config(sc, local) -> Config                     the simulator twin of sc
    compare(cfg, schemes) -> dict                       run both, side by side

Pairing: ``guest_requests(sc)`` is the exact request list; QEMU's guest
(qemu-io) replays it and so does the simulator (``simulate(cfg, source=[req])``).

The simulator twin of the real setup (``sim_config``):

* local devices — active.raw, the fleecing qcow2, the pull client's copy —
  are files on this machine's disk behind the page cache, reached by
  qemu-storage-daemon's thread pool (64 threads): one ``ssd`` device (PS
  sharing), queue depth 64, whose latency and bandwidth come from
  ``calibrate_local`` (``qemu-img bench``, 4 KiB and 1 MiB writeback writes;
  fallback LOCAL_ESTIMATE when it cannot run);
* the backup target is a remote device: link bandwidth = the throttle's
  ``bps-write`` (push) or the pull throttle's ``bps-read`` (pull), RTT 50 us
  (a unix socket round trip), queue depth 16 (QEMU's NBD client), the same
  page-cache device behind it;
* the guest is open loop with ``max-inflight`` 16 (qemu-io's requests go
  through QEMU's NBD client, 16 in flight; the rest queue, and qemu-io's
  latency counts from submission);
* block-copy as in QEMU 7.2: 64 workers of up to 1 MiB (``backup``); with the
  snapshot-read workaround (``snapshot_read_max``) the fleecing-push job's
  block-copy sees the snapshot's max-transfer and copies one cluster a task,
  and the pull client (qemu-img convert: 8 coroutines) reads one cluster a
  request (the NBD export advertises the max-transfer): ``max-chunk`` = one
  cluster.

What the simulator does not model is the guest's own hop: qemu-io -> NBD over
a unix socket -> the daemon's coroutine and back, a few hundred microseconds on
a quiet machine, milliseconds with a long tail on a loaded one. It is measured
beside the run and added per request (``hop_model``):

* ``probe`` (default): the real run carries a hop probe (``probe_rate``
  4 KiB writes/s from a second qemu-io on a separate export of the same
  daemon, both phases; runner.py). Its latency minus the simulator's lone
  4 KiB page-cache write is the hop *at that moment* without the backup or
  copy-before-write — it excludes what is compared, and sees the machine's
  load of the same seconds. Each simulated guest write gets a hop drawn
  (seeded) from its scheme's and phase's probe samples, so p50 and p99 both
  carry the real path's spread.
* ``constant`` (no probe data): ``guest_hop_s`` = median real write latency
  before the backup (all schemes pooled) minus the simulator's, added to every
  simulated latency. On a loaded machine this constant measures the load of
  the pre-backup second, not of the backup (17-93 ms measured under load).

``hop_calibration`` reports the constant, its spread across schemes and
within the pre-backup writes, and flags noise either way. Raw simulator
latencies are kept under ``*_raw``.
"""
from __future__ import annotations

import math
import shutil
import subprocess
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from fleecesim.config import Config, resolve
from fleecesim.errors import UserError
from fleecesim.qemu.scenario import (
    ALIGN, BLOCK_COPY_CLUSTER, SCHEMES, QemuScenario, distinct_clusters_written,
    guest_requests)

KiB, MiB, GiB = 1024, 1024**2, 1024**3

# Documented fallback for the local page-cache device, measured on the dev VM
# (2 vCPU, virtio disk; 2026-11-25) with
#   qemu-img bench -w -c 2000 -d 1 -s {4k,1M} -t writeback -i threads -f raw F
# 4 KiB: 56 us a request, 1 MiB: 106 us -> latency ~55 us, ~20 GiB/s memcpy.
LOCAL_ESTIMATE = {"latency": 55e-6, "bandwidth": 20.0 * GiB, "source": "estimate"}
UNIX_SOCKET_RTT = 50e-6      # NBD round trip over a unix socket, excluding data
NBD_INFLIGHT = 16            # QEMU's NBD client: MAX_NBD_REQUESTS
DAEMON_THREADS = 64          # thread-pool size of qemu-storage-daemon's aio=threads
QEMU_IMG_CONVERT_COROUTINES = 8  # qemu-img convert -m default
QEMU_IMG_CONVERT_BUF = 2 * MiB   # qemu-img convert's request size without the workaround
GUEST_HOP_ESTIMATE = 1.5e-3  # median qemu-io write latency over NBD on the dev VM
UNTHROTTLED_LINK = 1.0 * GiB  # pull_bps=0: a unix-socket NBD export, unthrottled
PROBE_RATE = 50.0            # hop probe writes/s: ~1/4 of qemu-small's guest, 100+ samples a phase
PROBE_MIN = 20               # fewer probe samples in a phase: fall back to the constant hop

# metrics compared per scheme: (key, label, kind)
METRICS = [
    ("backup_duration_s", "backup duration", "time"),
    ("write_p50_s", "write p50 (backup)", "time"),
    ("write_p99_s", "write p99 (backup)", "time"),
    ("pre_write_p50_s", "write p50 (before)", "time"),
    ("pre_write_p99_s", "write p99 (before)", "time"),
    ("writes_done", "writes (after t0)", "count"),
    ("target_write_bytes", "target bytes", "size"),
    ("fleecing_clusters_written", "fleecing clusters", "count"),
    ("guest_clusters", "clusters guest wrote", "count"),
]


# ---------------------------------------------------------------- config -> QEMU

def _device_bandwidth(cfg: Config, name: str) -> float:
    """Bytes/s a device moves: a remote device's min(link, backend)."""
    spec = cfg.devices[name]
    if spec.kind == "remote":
        back = spec.backend
        bb = back.bandwidth if back.kind != "remote" else min(back.link_bandwidth, back.backend.bandwidth)
        return float(min(spec.link_bandwidth, bb))
    return float(spec.bandwidth)


def _link_bandwidth(cfg: Config, name: str) -> float:
    spec = cfg.devices[name]
    return float(spec.link_bandwidth if spec.kind == "remote" else spec.bandwidth)


def qemu_schemes(cfg: Config) -> list[str]:
    """The config's schemes that real QEMU can run, in config order."""
    s = cfg.backup.scheme
    return [x for x in ([s] if isinstance(s, str) else s) if x in SCHEMES]


def scenario_from_config(cfg: Config, scheme: str | None = None, *,
                         duration_s: float | None = None, as_is: bool = False,
                         workdir: str | None = None,
                         probe_rate: float = PROBE_RATE) -> QemuScenario:
    """The QemuScenario that runs ``cfg`` (one scheme) on real QEMU.

    Only what QEMU can run: an open-loop synthetic guest of writes (and
    optional reads), uniform offsets, 4 KiB-aligned sizes; a fully allocated
    disk; a full backup with QEMU 7.2's fixed block-copy parameters. Anything
    else is a UserError naming the key. Mapping:

    disk.size -> disk_size; cfg.cluster_size -> cluster_size; workload.iops x
    mix -> write_rate / read_rate, workload.size -> write_sizes = read_sizes;
    the target device's bandwidth (a remote device: min(link, backend)) ->
    target_bps; fleecing-pull: backup.client.link's link bandwidth -> pull_bps;
    run.warmup -> pre_backup_s; run.seed -> seed. The guest runs for
    ``duration_s`` after the backup starts (default 3/4 of the ideal copy time,
    so every guest write falls inside the backup window in both worlds).
    ``as_is``: no snapshot-read splitting (QEMU 7.2's fleecing read bug shows).
    ``probe_rate``: the hop probe's writes/s (0: none; see the module doc).
    """
    scheme = scheme or (cfg.scheme if isinstance(cfg.backup.scheme, str) else None)
    if scheme not in SCHEMES:
        raise UserError(f"scheme {scheme!r} has no real-QEMU counterpart; "
                        f"expected one of {', '.join(SCHEMES)}")
    w, b, d = cfg.workload, cfg.backup, cfg.disk
    bad = []
    if w.trace is not None:
        bad.append("workload.trace (only synthetic workloads)")
    if w.iodepth is not None or w.iops is None:
        bad.append("workload.iodepth (only open loop: workload.iops)")
    if w.mix.discard:
        bad.append("workload.mix.discard (qemu-io guest: reads and writes only)")
    if w.pattern != "uniform":
        bad.append("workload.pattern (only uniform)")
    if w.span != 1.0:
        bad.append("workload.span (only 1.0)")
    if w.align % ALIGN:
        bad.append("workload.align (a multiple of 4KiB)")
    if any(s % ALIGN for s, _ in w.size_weights()):
        bad.append("workload.size (multiples of 4KiB)")
    if d.allocated != 1.0:
        bad.append("disk.allocated (the real disk is fully written: 1.0)")
    if b.sync != "full":
        bad.append("backup.sync (only full)")
    if b.speed:
        bad.append("backup.speed (not set on the real job)")
    if b.max_workers != 64:
        bad.append("backup.max-workers (QEMU 7.2: 64)")
    if b.max_chunk:
        bad.append("backup.max-chunk (QEMU 7.2: 1 MiB; the harness sets it)")
    if b.discard_source or b.lazy_discard or b.cache.ram.size or b.cache.size is not None:
        bad.append("backup.discard-source/lazy-discard/cache.ram/cache.size (not in QEMU 7.2)")
    if b.client.discard:
        bad.append("backup.client.discard (qemu-img convert does not trim)")
    if bad:
        raise UserError("cannot run on real QEMU: " + "; ".join(bad))
    if d.size % BLOCK_COPY_CLUSTER:
        raise UserError(f"disk.size must be a multiple of 64 KiB for real QEMU, got {d.size}")
    cs = cfg.cluster_size
    if scheme == "backup" and cs != BLOCK_COPY_CLUSTER:
        raise UserError(f"scheme 'backup' on QEMU 7.2 copies 64 KiB clusters; this config's "
                        f"cluster size is {cs}")
    mix = w.mix
    rw = mix.read + mix.write
    iops = float(w.iops)
    sizes = [(int(s), float(x)) for s, x in w.size_weights()]
    target_bps = _device_bandwidth(cfg, b.target.device)
    pull_bps = None
    if scheme == "fleecing-pull" and b.client.link:
        pull_bps = _link_bandwidth(cfg, b.client.link)
    copy_bps = pull_bps if pull_bps else target_bps
    if duration_s is None:
        duration_s = round(0.75 * d.size / copy_bps, 1)
    sc = QemuScenario(
        disk_size=int(d.size), cluster_size=int(cs), target_bps=target_bps,
        write_rate=iops * mix.write / rw, write_sizes=sizes,
        read_rate=iops * mix.read / rw, read_sizes=sizes,
        pre_backup_s=float(cfg.run.warmup), duration_s=float(duration_s),
        seed=int(cfg.run.seed), scheme=scheme, workdir=workdir, pull_bps=pull_bps,
        probe_rate=float(probe_rate),
        snapshot_read_max=None if as_is or scheme == "backup" else min(cs, BLOCK_COPY_CLUSTER))
    sc.validate()
    return sc


# ---------------------------------------------------------------- QEMU -> config

def calibrate_local(timeout: float = 30.0) -> dict:
    """Latency and bandwidth of this machine's page cache as qemu-storage-daemon
    sees it: ``qemu-img bench`` of 4 KiB and 1 MiB writeback writes (queue
    depth 1, thread pool), fitted to latency + size/bandwidth. Falls back to
    LOCAL_ESTIMATE (with the reason) when qemu-img is missing or fails."""
    if shutil.which("qemu-img") is None:
        return {**LOCAL_ESTIMATE, "why": "qemu-img not found"}
    n = 2000
    tmp = Path(tempfile.mkdtemp(prefix="fleecesim-bench-"))
    try:
        f = tmp / "bench.raw"
        subprocess.run(["qemu-img", "create", "-q", "-f", "raw", str(f), "64M"], check=True,
                       capture_output=True, timeout=timeout)
        per = {}
        for size in (4 * KiB, 1 * MiB):
            best = math.inf
            for _ in range(3):  # best of 3: the VM's other load only adds time
                p = subprocess.run(
                    ["qemu-img", "bench", "-w", "-c", str(n), "-d", "1", "-s", str(size),
                     "-S", str(size), "-t", "writeback", "-i", "threads", "-f", "raw", str(f)],
                    check=True, capture_output=True, text=True, timeout=timeout)
                secs = float(p.stdout.strip().splitlines()[-1].split()[3])
                best = min(best, secs / n)
            per[size] = best
        dt = per[MiB] - per[4 * KiB]
        bw = (MiB - 4 * KiB) / dt if dt > 0 else LOCAL_ESTIMATE["bandwidth"]
        lat = max(per[4 * KiB] - 4 * KiB / bw, 1e-6)
        return {"latency": lat, "bandwidth": bw, "source": "qemu-img bench",
                "t_4k_s": per[4 * KiB], "t_1m_s": per[MiB]}
    except (OSError, subprocess.SubprocessError, ValueError, IndexError) as e:
        return {**LOCAL_ESTIMATE, "why": f"qemu-img bench failed: {e}"}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def sim_config(sc: QemuScenario, local: dict | None = None, *, name: str = "qemu-twin") -> Config:
    """The simulator config matching the real setup of ``sc`` (see module doc)."""
    sc.validate()
    local = local or LOCAL_ESTIMATE
    page_cache = {"kind": "ssd", "latency": float(local["latency"]),
                  "bandwidth": float(local["bandwidth"]), "queue-depth": DAEMON_THREADS,
                  "sharing": "ps"}
    if sc.scheme == "fleecing-pull":
        pull = sc.target_bps if sc.pull_bps is None else sc.pull_bps
        link_bw = pull if pull > 0 else UNTHROTTLED_LINK
    else:
        link_bw = sc.target_bps
    target = {"kind": "remote", "rtt": UNIX_SOCKET_RTT, "link-bandwidth": float(link_bw),
              "queue-depth": NBD_INFLIGHT, "backend": dict(page_cache)}
    fleecing = sc.scheme.startswith("fleecing")
    if fleecing and sc.snapshot_read_max:
        max_chunk = sc.cluster_size  # block-copy / NBD client limited by the snapshot's max-transfer
    elif sc.scheme == "fleecing-pull":
        max_chunk = QEMU_IMG_CONVERT_BUF
    else:
        max_chunk = 0  # block-copy default: 1 MiB
    wr, rr = float(sc.write_rate), float(sc.read_rate)
    iops = wr + rr
    backup = {"scheme": sc.scheme, "max-chunk": max_chunk,
              "max-workers": QEMU_IMG_CONVERT_COROUTINES if sc.scheme == "fleecing-pull" else 64,
              "min-cluster-size": sc.cluster_size}
    if sc.scheme == "fleecing-pull":
        # qemu-img convert reads the throttled export and writes pulled.raw on this machine
        backup["client"] = {"link": "target", "storage": "local", "block-status": True}
    copy_s = sc.disk_size / link_bw
    raw = {
        "name": name,
        "disk": {"size": sc.disk_size, "allocated": 1.0, "device": "local"},
        "devices": {"local": page_cache, "target": target},
        "workload": {
            "iops": iops,
            "mix": {"read": rr / iops if iops else 0.0, "write": wr / iops if iops else 1.0},
            "size": {f"{int(s)}": float(x) for s, x in sc.write_sizes},
            "pattern": "uniform", "align": ALIGN, "max-inflight": NBD_INFLIGHT,
        },
        "backup": backup,
        "run": {"seed": sc.seed, "warmup": float(sc.pre_backup_s),
                "tail": max(2.0, float(sc.duration_s)),
                "max-time": 60.0 + 4 * copy_s + 2 * float(sc.duration_s)},
    }
    return resolve(raw)


# ---------------------------------------------------------------- measuring

def _pctl(a: np.ndarray, q: float) -> float:
    a = a[np.isfinite(a)]
    return float(np.percentile(a, q)) if len(a) else math.nan


def sim_measure(sc: QemuScenario, cfg: Config, req: np.ndarray | None = None) -> dict:
    """Run the simulator twin on the exact request list; the same metrics as
    the real run (latencies raw: the guest hop is added by ``compare``)."""
    from fleecesim.run import simulate
    req = guest_requests(sc) if req is None else req
    res = simulate(cfg, sc.scheme, source=[req])
    s = res.summary
    if "error" in s:
        raise RuntimeError(f"simulator ({sc.scheme}): {s['error']}")
    df = res.requests
    t0 = s["backup_start_s"]
    writes = df[df["op"] == "write"]
    after = writes[writes["time"] >= t0]["latency"].to_numpy()
    before = writes[writes["time"] < t0]["latency"].to_numpy()
    cs = s["cluster_size"]
    fleecing = sc.scheme.startswith("fleecing")
    # what the hop probe's request costs in the model: a lone 4 KiB page-cache write
    small = writes[(writes["time"] < t0) & (writes["length"] == 4096)]["latency"].to_numpy()
    loc = cfg.devices[cfg.disk.device]
    lone = _pctl(small, 50) if len(small) else (
        loc.write_latency + 4096 / loc.write_bandwidth + cfg.host.request_cost
        + (4096 / cfg.host.memcpy_bandwidth if cfg.host.memcpy_bandwidth else 0.0))
    return {
        "lone_4k_write_s": float(lone),
        "backup_duration_s": float(s["backup_duration_s"]),
        "write_lat": after,
        "pre_write_lat": before,
        "writes_done": int(len(after)),
        "write_p50_s": _pctl(after, 50), "write_p99_s": _pctl(after, 99),
        "pre_write_p50_s": _pctl(before, 50), "pre_write_p99_s": _pctl(before, 99),
        "write_max_s": float(after.max()) if len(after) else math.nan,
        "target_write_bytes": int(s["target_write_bytes"]),
        # no discard-source: the fleecing image only grows until teardown
        "fleecing_clusters_written": int(s["fleecing_peak_bytes"] // cs) if fleecing else None,
        # CBW guards the clusters while the backup runs: writes in [t0, end)
        "guest_clusters": distinct_clusters_written(req, cs, t_from=t0, t_to=s["backup_end_s"]),
        "oracle_ok": bool(s["oracle_ok"]),
        "backup_end_s": float(s["backup_end_s"]),
        "summary": {k: v for k, v in s.items() if k not in ("config", "traceback", "events")},
    }


def _real_view(r: dict) -> dict:
    return {
        "backup_duration_s": r["backup_duration_s"],
        "write_p50_s": r["write_p50_s"], "write_p99_s": r["write_p99_s"],
        "write_max_s": r["write_max_s"],
        "pre_write_p50_s": _pctl(np.asarray(r.get("pre_write_lat") or [], float), 50),
        "pre_write_p99_s": _pctl(np.asarray(r.get("pre_write_lat") or [], float), 99),
        "writes_done": r["writes_done"],
        "target_write_bytes": r["target_write_bytes"],
        "fleecing_clusters_written": r["fleecing_clusters_written"],
        # the real CBW filter stays until the daemon quits: every write after t0
        "guest_clusters": r["distinct_clusters_written_by_guest"],
    }


def _ratio(sim, real):
    if sim is None or real is None:
        return None
    try:
        if real == 0 or math.isnan(real) or math.isnan(sim):
            return None
    except TypeError:
        return None
    return sim / real


TIE = 0.05  # ratios within 5% of 1 are a tie (equal within run-to-run noise)


def _order(ratio: float) -> int:
    """-1 / 0 / +1: a below, tied with, above b (a/b = ratio)."""
    return 0 if abs(ratio - 1.0) <= TIE else (1 if ratio > 1 else -1)


def compare(cfg: Config, schemes: list[str] | None = None, *, as_is: bool = False,
            duration_s: float | None = None, workdir: str | None = None,
            local: dict | None = None, progress=None, run_real=None) -> dict:
    """Run every scheme on real QEMU, then its simulator twin on the same
    request list; return the comparison: ``schemes[s]`` holds ``metrics``
    (key -> real, sim, ratio = sim/real; METRICS), ``structural`` (exact
    agreements), ``content_ok`` (the real backup is the disk at t0) and the
    scenario and simulator config; ``between`` holds backup/fleecing ratios
    in both worlds and whether they order the same way (ratios within TIE of 1
    are ties); ``calibration`` the local device and the guest hop; ``real``
    the full run_qemu results; ``sim`` the simulator's.

    ``run_real``: the real runner (default ``run_qemu``; tests may inject).
    ``local``: the local-device calibration (default ``calibrate_local()``)."""
    from fleecesim.qemu.runner import qemu_available, run_qemu
    run_real = run_real or run_qemu
    say = progress or (lambda msg: None)
    schemes = schemes or qemu_schemes(cfg)
    if not schemes:
        raise UserError(f"the config names no scheme real QEMU runs ({', '.join(SCHEMES)}); "
                        "pick one with --scheme")
    scs = {s: scenario_from_config(cfg, s, duration_s=duration_s, as_is=as_is, workdir=workdir)
           for s in schemes}
    if run_real is run_qemu:
        ok, why = qemu_available()
        if not ok:
            raise UserError(f"real QEMU is not available: {why}")
    real = {}
    for s in schemes:
        say(f"real QEMU: {s} ...")
        real[s] = run_real(scs[s])
    say("calibrating the local device (qemu-img bench) ...")
    local = local or calibrate_local()
    sim = {}
    for s in schemes:
        say(f"simulator: {s} ...")
        sim[s] = sim_measure(scs[s], sim_config(scs[s], local, name=cfg.name))

    # the guest hop (qemu-io -> NBD -> daemon), calibrated on the pre-backup writes
    hc = hop_calibration({s: real[s].get("pre_write_lat") or [] for s in schemes},
                         {s: sim[s]["pre_write_lat"] for s in schemes})
    hop, hop_src = hc["guest_hop_s"], hc["guest_hop_source"]
    probe = probe_hops(real, sim, schemes)
    for i, s in enumerate(schemes):
        m = sim[s]
        m["write_p50_s_raw"], m["write_p99_s_raw"] = m["write_p50_s"], m["write_p99_s"]
        rng = np.random.default_rng([int(scs[s].seed), 0x40B, i])  # paired, reproducible
        for phase, key in (("pre", "pre_write"), ("dur", "write")):
            lat = np.asarray(m[f"{key}_lat"], float)
            samples = probe[s][phase] if probe[s] else None
            if samples is not None:
                lat = lat + rng.choice(samples, size=len(lat))
            else:
                lat = lat + hop
            m[f"{key}_p50_s"], m[f"{key}_p99_s"] = _pctl(lat, 50), _pctl(lat, 99)
            if key == "write":
                m["write_max_s"] = float(lat.max()) if len(lat) else math.nan
    hop_model = "probe" if all(probe[s] for s in schemes) else (
        "constant" if not any(probe[s] for s in schemes) else "probe+constant")
    hc["hop_model"] = hop_model
    if hc["noisy"] and hop_model != "probe":
        say(f"WARNING: {hc['noisy_why']}")
    hc["probe"] = {s: ({ph: {"n": int(len(v)), "p50_s": _pctl(v, 50), "p90_s": _pctl(v, 90),
                             "p99_s": _pctl(v, 99)} for ph, v in probe[s].items()}
                       if probe[s] else None) for s in schemes}

    out_schemes = {}
    for s in schemes:
        rv, sv = _real_view(real[s]), sim[s]
        rows = {}
        for key, _, _ in METRICS:
            rows[key] = {"real": rv[key], "sim": sv[key], "ratio": _ratio(sv[key], rv[key])}
        fleecing = s.startswith("fleecing")
        structural = {
            "real_fleecing_eq_guest": (rv["fleecing_clusters_written"] == rv["guest_clusters"])
            if fleecing else None,
            "sim_fleecing_eq_guest": (sv["fleecing_clusters_written"] == sv["guest_clusters"])
            if fleecing else None,
            "real_target_eq_disk": rv["target_write_bytes"] == scs[s].disk_size,
            "sim_target_eq_disk": sv["target_write_bytes"] == scs[s].disk_size,
        }
        out_schemes[s] = {
            "metrics": rows,
            "structural": structural,
            "structural_ok": all(v for v in structural.values() if v is not None),
            "content_ok": bool(real[s]["content_ok"]),
            "content_detail": real[s]["content_detail"],
            "sim_oracle_ok": sv["oracle_ok"],
            "write_p50_s_raw": sv["write_p50_s_raw"], "write_p99_s_raw": sv["write_p99_s_raw"],
            "scenario": {k: v for k, v in asdict(scs[s]).items() if k not in ("workdir",)},
            "sim_config": sim_config(scs[s], local, name=cfg.name).dump(),
        }

    between = []
    nofl = "backup" if "backup" in schemes else None
    for s in schemes:
        if nofl is None or s == nofl:
            continue
        for key in ("write_p99_s", "write_p50_s", "backup_duration_s"):
            r_ratio = _ratio(out_schemes[nofl]["metrics"][key]["real"],
                             out_schemes[s]["metrics"][key]["real"])
            s_ratio = _ratio(out_schemes[nofl]["metrics"][key]["sim"],
                             out_schemes[s]["metrics"][key]["sim"])
            between.append({
                "metric": key, "a": nofl, "b": s, "real": r_ratio, "sim": s_ratio,
                "ordering_match": (None if r_ratio is None or s_ratio is None
                                   else _order(r_ratio) == _order(s_ratio)),
            })
    return {
        "name": cfg.name,
        "qemu_version": next(iter(real.values()))["qemu_version"],
        "schemes": out_schemes,
        "between": between,
        "calibration": {"local": local, **hc},
        "content_ok": all(v["content_ok"] for v in out_schemes.values()),
        "structural_ok": all(v["structural_ok"] for v in out_schemes.values()),
        "real": real,
        "sim": {s: {k: v for k, v in sim[s].items() if k not in ("write_lat", "pre_write_lat")}
                for s in schemes},
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def probe_hops(real: dict, sim: dict, schemes: list[str]) -> dict:
    """scheme -> {"pre": hops, "dur": hops} (s, >= 0) from the real hop
    probe: each probe write's latency minus the simulator's lone 4 KiB
    page-cache write; None for a scheme whose run had too few probe writes
    (then the constant hop applies). The pre-backup phase falls back to the
    during-backup samples when it has too few, and vice versa."""
    out = {}
    for s in schemes:
        base = float(sim[s]["lone_4k_write_s"])
        ph = {}
        for phase, key in (("pre", "probe_pre_lat"), ("dur", "probe_lat")):
            v = np.asarray(real[s].get(key) or [], float)
            v = v[np.isfinite(v)]
            ph[phase] = np.maximum(v - base, 0.0) if v.size >= PROBE_MIN else None
        if ph["pre"] is None and ph["dur"] is None:
            out[s] = None
            continue
        ph["pre"] = ph["dur"] if ph["pre"] is None else ph["pre"]
        ph["dur"] = ph["pre"] if ph["dur"] is None else ph["dur"]
        out[s] = ph
    return out


# A calibration whose per-scheme hops differ by more than this factor, or whose
# real pre-backup writes spread wider (p90/p10), measured the machine's load,
# not QEMU: the sim/real latency ratios are then not trustworthy.
HOP_SPREAD_MAX = 2.0
PRE_SPREAD_MAX = 10.0


def hop_calibration(real_pre: dict, sim_pre: dict) -> dict:
    """The guest hop (median real pre-backup write minus the simulator's), its
    spread across schemes and within the real writes, and whether it is too
    noisy to trust. ``real_pre``/``sim_pre``: scheme -> latencies (s)."""
    allr = np.concatenate([np.asarray(v, float) for v in real_pre.values()] or [np.zeros(0)])
    alls = np.concatenate([np.asarray(v, float) for v in sim_pre.values()] or [np.zeros(0)])
    allr = allr[np.isfinite(allr)]
    if allr.size < 20 or not alls.size:
        return {"guest_hop_s": GUEST_HOP_ESTIMATE, "noisy": False, "noisy_why": "",
                "guest_hop_source": "estimate (no pre-backup phase: set run.warmup to calibrate)",
                "per_scheme_s": {}, "real_pre_p10_s": math.nan, "real_pre_p90_s": math.nan}
    hop = max(0.0, _pctl(allr, 50) - _pctl(alls, 50))
    per = {}
    for s, r in real_pre.items():
        r = np.asarray(r, float)
        r = r[np.isfinite(r)]
        if r.size >= 10 and len(sim_pre.get(s, ())):
            per[s] = max(0.0, _pctl(r, 50) - _pctl(np.asarray(sim_pre[s], float), 50))
    p10, p90 = _pctl(allr, 10), _pctl(allr, 90)
    why = []
    if len(per) > 1 and min(per.values()) > 0 and max(per.values()) / min(per.values()) > HOP_SPREAD_MAX:
        why.append(f"the guest hop differs {max(per.values()) / min(per.values()):.1f}x between "
                   f"schemes")
    if p10 > 0 and p90 / p10 > PRE_SPREAD_MAX:
        why.append(f"real pre-backup writes spread {p90 / p10:.0f}x (p90/p10)")
    noisy_why = ("the calibration is noisy: " + "; ".join(why) + " -- this machine is loaded; "
                 "sim/real latency ratios are not trustworthy now") if why else ""
    return {"guest_hop_s": hop,
            "guest_hop_source": f"median of {allr.size} real pre-backup writes minus the "
                                f"simulator's",
            "per_scheme_s": per, "real_pre_p10_s": p10, "real_pre_p90_s": p90,
            "noisy": bool(why), "noisy_why": noisy_why}


# ---------------------------------------------------------------- table

def _fmt(kind: str, v) -> str:
    from fleecesim.units import fmt_size, fmt_time
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if kind == "time":
        return fmt_time(v)
    if kind == "size":
        return fmt_size(v)
    return str(int(v))


def table(cmp: dict) -> str:
    """real | sim | sim/real per metric per scheme, then between schemes."""
    rows = [["scheme", "metric", "real", "sim", "sim/real"]]
    for s, d in cmp["schemes"].items():
        for key, label, kind in METRICS:
            m = d["metrics"][key]
            if m["real"] is None and m["sim"] is None:
                continue
            ratio = "-" if m["ratio"] is None else f"{m['ratio']:.2f}"
            rows.append([s, label, _fmt(kind, m["real"]), _fmt(kind, m["sim"]), ratio])
        rows.append([s, "backup = disk at t0", "ok" if d["content_ok"] else "MISMATCH",
                     "ok" if d["sim_oracle_ok"] else "FAIL", ""])
        rows.append(None)
    rows = rows[:-1] if rows and rows[-1] is None else rows
    lines = _grid(rows, left=2)
    if cmp["between"]:
        lines.append("")
        brows = [["ratio", "real", "sim", "ordering"]]
        for b in cmp["between"]:
            label = f"{b['metric'].removesuffix('_s')} {b['a']} / {b['b']}"
            f = (lambda v: "-" if v is None else f"{v:.3g}")
            brows.append([label, f(b["real"]), f(b["sim"]),
                          "-" if b["ordering_match"] is None else
                          ("same" if b["ordering_match"] else "DIFFERENT")])
        lines += _grid(brows, left=1)
    cal = cmp["calibration"]
    loc = cal["local"]
    lines.append("")
    model = cal.get("hop_model", "constant")
    if model == "constant":
        lines.append(f"local device: {loc['latency'] * 1e6:.0f}us + {loc['bandwidth'] / GiB:.1f}GiB/s "
                     f"({loc['source']}); guest hop {cal['guest_hop_s'] * 1e3:.2f}ms added to sim "
                     f"latencies ({cal['guest_hop_source']})")
    else:
        per = ", ".join(f"{k} {v['dur']['p50_s'] * 1e3:.2f}/{v['dur']['p99_s'] * 1e3:.2f}ms"
                        for k, v in cal["probe"].items() if v)
        lines.append(f"local device: {loc['latency'] * 1e6:.0f}us + {loc['bandwidth'] / GiB:.1f}GiB/s "
                     f"({loc['source']}); guest hop drawn per request from the hop probe "
                     f"measured beside each run (p50/p99 during the backup: {per})")
    if cal.get("per_scheme_s"):
        per = ", ".join(f"{k} {v * 1e3:.2f}ms" for k, v in cal["per_scheme_s"].items())
        lines.append(f"{'constant ' if model != 'constant' else ''}guest hop per scheme "
                     f"(pre-backup): {per}; real pre-backup writes p10-p90 "
                     f"{cal['real_pre_p10_s'] * 1e3:.2f}-{cal['real_pre_p90_s'] * 1e3:.2f}ms")
    if cal.get("noisy"):
        if model == "constant":
            lines.append(f"WARNING: {cal['noisy_why']}")
        else:
            lines.append("note: the machine is loaded (" + cal["noisy_why"].split(": ", 1)[-1]
                         .split(" -- ")[0] + "); a constant hop would not be trustworthy, the "
                         "probe's, measured in the same seconds, is used")
    return "\n".join(lines)


def _grid(rows: list, left: int) -> list[str]:
    real_rows = [r for r in rows if r is not None]
    widths = [max(len(r[i]) for r in real_rows) for i in range(len(real_rows[0]))]
    out = []
    for k, r in enumerate(rows):
        if r is None:
            out.append("")
            continue
        out.append("  ".join(c.ljust(w) if i < left else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))))
        if k == 0:
            out.append("  ".join("-" * w for w in widths))
    return out
