"""Many VMs, one target.

A config with ``vms:`` runs every VM in one SimPy environment on the same
device objects: their guests and backups contend for the shared devices (the
backup server's link, the local fleecing device). Each VM is ``vm.VM``, the
same object a one-VM run uses; its backup starts ``start`` (plus
``i x fleet.stagger``) seconds after the common warm-up. Each VM gets its own
summary and data oracle; the fleet's summary adds totals.

With ``fleet.vzdump`` the order is Proxmox VE's instead (config.VzdumpSpec):
each node backs its VMs up one at a time in list order, the nodes side by
side; the summary adds one row per node (``nodes``).
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import simpy

from . import __version__
from .devices import build_device
from .devices.remote import RemoteDevice
from .vm import VM, Result, check_fits, state_is_sparse, timeline_frame

# per-VM keys copied into the fleet's summary as vm_<name>_<key> (sweep columns)
PER_VM_KEYS = ("backup_start_s", "backup_duration_s", "write_p99_s", "read_p99_s",
               "fleecing_peak_bytes", "oracle_ok")
SUM_KEYS = ("guest_ios", "guest_ios_during_backup", "cbw_count", "cbw_bytes",
            "source_read_bytes", "target_write_bytes", "target_zero_bytes",
            "local_write_bytes", "local_read_bytes", "job_copied_bytes", "writes_failed",
            "oracle_violations", "commit_violations", "clusters_to_copy")
MAX_KEYS = ("read_p50_s", "read_p99_s", "read_max_s", "write_p50_s", "write_p99_s",
            "write_max_s", "write_p99_baseline_s")


# per-node keys copied into the fleet's summary as node_<name>_<key> (sweep columns)
PER_NODE_KEYS = ("backup_window_s", "fleecing_peak_bytes", "vm_count")


def node_summaries(per: list[dict], vms, nodes: list[str]) -> list[dict]:
    """Per node under vzdump's schedule: its VMs in backup order, its window
    (its first VM's start to its last VM's end) and the peak of its VMs'
    fleecing images at once (one at a time, so the largest VM's peak)."""
    out = {}
    for s, vm, node in zip(per, vms, nodes):
        out.setdefault(node, []).append((s, vm))
    rows = []
    for node, members in out.items():
        start = min(s["backup_start_s"] for s, _vm in members)
        end = max(s["backup_end_s"] for s, _vm in members)
        rows.append({"name": node, "vms": [s["name"] for s, _vm in members],
                     "vm_count": len(members), "backup_start_s": start, "backup_end_s": end,
                     "backup_window_s": end - start,
                     "fleecing_peak_bytes": int(combined_peak([vm.fleecing_level
                                                               for _s, vm in members]))})
    return rows


def combined_peak(levels) -> float:
    """Peak of the sum of several step-function levels (their shared device's
    fleecing space at its fullest, not the sum of each VM's own peak)."""
    levels = [lv for lv in levels if lv is not None]
    if not levels:
        return 0.0
    times = np.unique(np.concatenate([np.frombuffer(lv.times) for lv in levels]))
    total = np.zeros(times.size)
    for lv in levels:
        t, v = np.frombuffer(lv.times), np.frombuffer(lv.values)
        i = np.searchsorted(t, times, side="right") - 1
        total += np.where(i >= 0, v[np.maximum(i, 0)], 0.0)
    return float(total.max())


def own_clients(devices: dict, i: int) -> dict:
    """VM ``i``'s view of the shared devices: the same objects, except that a
    remote (NBD) device gets a client of its own — each VM's QEMU opens its
    own NBD connection(s) to the server (devices/remote.py: client), sharing
    the link and the server's disks but not the request slots."""
    if i == 0:
        return devices
    return {k: d.client(f"{k}@vm{i}") if isinstance(d, RemoteDevice) else d
            for k, d in devices.items()}


def simulate_fleet(cfg, name, summary, fast_path: bool = True, analytic: bool = True,
                   bar=None) -> Result:
    """``bar``: a progress.RunProgress, or None."""
    vm_cfgs = cfg.vm_configs()
    for _n, _s, c in vm_cfgs:
        check_fits(c)
    env = simpy.Environment()
    env.analytic = analytic
    env.sparse = all(state_is_sparse(c) for _n, _s, c in vm_cfgs)  # one kind per environment
    devices = {k: build_device(k, spec) for k, spec in cfg.devices.items()}  # shared
    views = [own_clients(devices, i) for i in range(len(vm_cfgs))]  # all before any VM
    vms = [VM(env, c, views[i], fast_path=fast_path, analytic=analytic, bar=bar)
           for i, (_n, _s, c) in enumerate(vm_cfgs)]
    if bar is not None:
        bar.started(env)
    if cfg.run.warmup > 0:
        env.run(until=cfg.run.warmup)

    def life(vm, start):
        if start > 0:
            yield env.timeout(start)
        vm.begin()
        yield vm.until_done()
        vm.end()

    def node_life(group):
        """One node's vzdump: its VMs' backups one after another, in order
        (pve-manager PVE/VZDump.pm: exec_backup's loop over the task list); a
        VM whose backup fails or runs out of time does not stop the next."""
        for vm in group:
            vm.begin()
            yield vm.until_done()
            vm.end()

    nodes = cfg.vm_nodes() if cfg.fleet.vzdump is not None else None
    if nodes is None:
        procs = [env.process(life(vm, s)) for vm, (_n, s, _c) in zip(vms, vm_cfgs)]
    else:
        groups = {}
        for vm, node in zip(vms, nodes):
            groups.setdefault(node, []).append(vm)
        procs = [env.process(node_life(g)) for g in groups.values()]
    env.run(until=simpy.AllOf(env, procs))
    t_last = env.now
    if bar is not None:
        bar.tail()
    if cfg.run.tail > 0:
        env.run(until=t_last + cfg.run.tail)
    for vm in vms:
        vm.guest.stopped = True
    t_stop = env.now
    if bar is not None:
        bar.finishing()

    results = []
    for i, (vm, (vname, start, c)) in enumerate(zip(vms, vm_cfgs)):
        s = {"name": vname, "scheme": c.scheme, "seed": c.run.seed,
             "fleecesim_version": __version__, "start_delay_s": start}
        if nodes is not None:  # vzdump decided the start
            s["node"] = nodes[i]
            s["start_delay_s"] = vm.t0 - cfg.run.warmup
        results.append(vm.result(vname, s, t_stop))
    per = [r.summary for r in results]

    starts = [s["backup_start_s"] for s in per]
    ends = [s["backup_end_s"] for s in per]
    schemes = sorted({s["scheme"] for s in per})
    summary["scheme"] = "+".join(schemes)
    summary.update({
        "vm_count": len(per),
        "sim_time_s": t_stop,
        "backup_start_s": min(starts),
        "backup_end_s": max(ends),
        # the fleet's backup window: first VM's start to last VM's end
        "backup_duration_s": max(ends) - min(starts),
        "backup_window_s": max(ends) - min(starts),
        "backup_completed": all(s["backup_completed"] for s in per),
        "backup_outcome": next((s["backup_outcome"] for s in per
                                if s["backup_outcome"] != "complete"), "complete"),
        "oracle_ok": all(s["oracle_ok"] for s in per),
    })
    for k in SUM_KEYS:
        summary[k] = int(sum(s.get(k, 0) or 0 for s in per))
    for k in MAX_KEYS:
        vals = [s[k] for s in per if isinstance(s.get(k), float) and not math.isnan(s[k])]
        summary[k] = max(vals) if vals else math.nan
    summary["fleecing_peak_bytes"] = int(combined_peak([vm.fleecing_level for vm in vms]))
    summary["device_util"] = {k: (d.busy / t_stop if t_stop else 0.0)
                              for k, d in devices.items()}
    for s in per:
        for k in PER_VM_KEYS:
            summary[f"vm_{s['name']}_{k}"] = s[k]
    if nodes is not None:
        summary["nodes"] = node_summaries(per, vms, nodes)
        for n in summary["nodes"]:
            for k in PER_NODE_KEYS:
                summary[f"node_{n['name']}_{k}"] = n[k]
    summary["events"] = sorted((f"{e.split(' ', 1)[0]} {s['name']}: {e.split(' ', 1)[1]}"
                                for s in per for e in s.get("events", ())),
                               key=lambda e: float(e.split("s ", 1)[0]))
    summary["warnings"] = [f"{s['name']}: {w}" for s in per for w in s.get("warnings", ())]
    summary["vms"] = per

    def requests_frame():
        frames = [r.requests.assign(vm=r.name) for r in results]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    levels = [lv for vm in vms for lv in vm.graph.levels]
    tl = timeline_frame(levels)
    if len(tl):  # each level named after its VM
        cats = [f"{r.name}.{lv.name}" for r, vm in zip(results, vms) for lv in vm.graph.levels]
        if len(set(cats)) == len(cats):
            tl["level"] = tl["level"].cat.rename_categories(cats)
    return Result(name, summary, requests_frame, tl)
