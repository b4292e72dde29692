"""A configured scheme as the QMP commands that realise it on real QEMU.

``qmp_steps(cfg, Endpoints(...), version)`` -> ``Plan``: the ordered steps
(QMP commands, waits for an event, pauses for the user) and the list of
configured features QEMU has no command for. ``render(plan)`` prints them as
JSON lines (one ``{"execute": ...}`` per line) with ``#`` comment lines;
``run_steps(client, plan.steps)`` feeds them to a live QMP socket.

Every command and option below is QEMU's own, cited where it is emitted:

* ``blockdev-backup`` (qapi/block-core.json ``BackupCommon``): ``sync``,
  ``speed``, ``bitmap``, ``auto-finalize``/``auto-dismiss`` (2.12),
  ``x-perf`` = ``BackupPerf`` {use-copy-range, max-workers, max-chunk}
  (6.0, unstable), ``min-cluster-size`` in ``BackupPerf`` (9.2),
  ``discard-source`` (9.1).
* ``copy-before-write`` (``BlockdevOptionsCbw``, 6.2; block/copy-before-write.c):
  ``file``, ``target``, ``bitmap`` (7.0), ``on-cbw-error`` and ``cbw-timeout``
  (7.1; ``cbw-timeout`` is a ``uint32`` of seconds: cbw_open multiplies it by
  NANOSECONDS_PER_SECOND), ``min-cluster-size`` (9.2).
* ``snapshot-access`` (7.0; block/snapshot-access.c, which also takes discards).
* the fleecing graph and its clean-up order follow
  tests/qemu-iotests/tests/image-fleecing: blockdev-add copy-before-write,
  re-point the guest's device at it (``qom-set ... drive``), blockdev-add
  snapshot-access, nbd-server-start / export, and at the end blockdev-del
  snapshot-access, re-point the guest back, blockdev-del the filter and the
  fleecing image. The 2018 form (``blockdev-backup sync=none`` into a qcow2
  backed by the disk) is the same test's "backup(sync=none) based fleecing".
* ``block-export-add`` (5.2) / ``nbd-server-add`` (older), ``nbd-server-start``,
  ``block-export-del`` + event ``BLOCK_EXPORT_DELETED``, ``nbd-server-stop``,
  ``job-dismiss`` (2.12), ``block-job-cancel``, ``blockdev-reopen`` (6.1),
  ``block-dirty-bitmap-add`` in a ``transaction``.
"""
from __future__ import annotations

import json
import math
import re
import time
from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import parse_qs, urlparse

from .errors import UserError
from .qemu import versions
from .qemu.versions import fmt as _vs
from .qemu.versions import has
from .units import fmt_size

# Schemes QEMU cannot express, each with its one-line reason.
REFUSED = {
    "none": "it runs no backup: there is nothing to send",
    "fleecing-push-2018": "the seed's two-job push (sync=none into a scratch image, a second "
                          "backup from it) was a proposal, never a QEMU recipe; its modern "
                          "form is fleecing-push (copy-before-write + snapshot-access, "
                          "QEMU >= 7.0)",
    "overlay-cor": "QEMU has no node that puts a fast overlay under a slow source only for "
                   "the guest's reads while a backup copies the source beneath it "
                   "(copy-on-read copies into the image it sits on, for every reader)",
    "overlay-commit": "blockdev-backup cannot write into an overlay whose backing file is "
                      "being committed into at the same time (block-commit needs the "
                      "overlay's top layer idle); QEMU has no such recipe",
}
SCHEMES = ("backup", "legacy-backup", "fleecing-push", "fleecing-pull", "fleecing-pull-2018")
FLEECING = ("fleecing-push", "fleecing-pull")  # a copy-before-write node of the user's

# What changes between QEMU versions (which command, which option, which bug):
# fleecesim/qemu/versions.py, the one table the simulator reads too.


@dataclass
class Step:
    kind: str                   # cmd | wait | pause | note
    execute: str = ""
    arguments: dict | None = None
    event: str = ""             # wait: the QMP event
    match: dict | None = None   # wait: fields of its data that must match
    text: str = ""              # note / pause: what it says
    seconds: float | None = None  # pause: how long (None: until the user says)

    def line(self) -> str:
        if self.kind == "cmd":
            msg: dict[str, Any] = {"execute": self.execute}
            if self.arguments:
                msg["arguments"] = self.arguments
            return json.dumps(msg)
        if self.kind == "wait":
            return f"# wait for event {self.event} {json.dumps(self.match or {})}"
        if self.kind == "pause":
            return f"# pause: {self.text}"
        return f"# {self.text}"


@dataclass
class Plan:
    scheme: str
    version: tuple[int, int]
    steps: list[Step] = field(default_factory=list)
    unsupported: list[str] = field(default_factory=list)  # configured, no QEMU command
    # run instead of the rest when the job ends in error (BLOCK_JOB_COMPLETED
    # with an error): the same clean-up, and the bitmap kept for the next backup
    on_error: list[Step] = field(default_factory=list)

    def commands(self) -> list[dict]:
        return [{"execute": s.execute, **({"arguments": s.arguments} if s.arguments else {})}
                for s in self.steps if s.kind == "cmd"]


@dataclass
class Endpoints:
    """Where things are on the user's host (the config says nothing about paths)."""
    disk_node: str = "disk0"            # the VM's disk node (exists already)
    attach: str = "qdev:virtio-disk0"   # qdev:ID (the guest's device) | node:NAME (a raw parent node)
    fleece: str = "fleece.qcow2"        # the fleecing image (created beforehand)
    target: str = "target.qcow2"        # a file, or nbd://HOST[:PORT]/EXPORT, nbd+unix:///EXPORT?socket=PATH
    nbd_server: str = "inet:0.0.0.0:10809"  # pull: where the snapshot is exported
    export: str = "fleecing"            # pull: the NBD export name
    job_id: str = "fs-backup"
    bitmap: str | None = None           # sync=incremental: the dirty bitmap; sync=full: start a new one
    # --attach node:NAME: the node's options as blockdev-add takes them
    # (blockdev-reopen resets every option it is not given); read from a
    # running QEMU by node_options(), or given by the user
    attach_options: dict | None = None
    # the disk node's driver (query-named-block-nodes with --socket); a
    # persistent bitmap needs qcow2 (a raw node's bitmap lives until QEMU exits)
    disk_driver: str | None = None
    # more disks of the same VM (node, target), backed up with the first in one
    # transaction (completion-mode grouped: one fails, all are cancelled)
    more_disks: list[tuple[str, str]] = field(default_factory=list)


def parse_version(text: str) -> tuple[int, int]:
    try:
        return versions.parse(text, "--qemu-version")
    except ValueError as e:
        raise UserError(str(e)) from None


def with_version(cfg, version: tuple[int, int]):
    """``cfg`` with qemu.version = ``version``, validated again: a feature that
    version lacks is the config's one-line error (qemu/versions.py)."""
    if cfg.qemu.v == version:
        return cfg
    from .config import validate
    raw = cfg.dump()
    raw["qemu"] = {"version": _vs(version)}
    return validate(raw)


# What query-named-block-nodes (BlockDeviceInfo) reports of a node's options,
# as blockdev-add names them. blockdev-reopen resets every option it is not
# given (qapi/block-core.json blockdev-reopen), so these are carried over.
def node_options(client, name: str) -> dict:
    """The options of node ``name`` of a running QEMU, for blockdev-reopen."""
    nodes = client.execute("query-named-block-nodes", {"flat": True})
    info = next((n for n in nodes if n.get("node-name") == name), None)
    if info is None:
        raise UserError(f"node {name!r}: not on that QEMU (its nodes: "
                        f"{', '.join(n['node-name'] for n in nodes if n.get('node-name'))})")
    opts: dict[str, Any] = {"driver": info["drv"], "node-name": name,
                            "read-only": bool(info.get("ro", False))}
    if info.get("detect_zeroes", "off") != "off":
        opts["detect-zeroes"] = info["detect_zeroes"]
    cache = info.get("cache") or {}
    if cache.get("direct") or cache.get("no-flush"):
        opts["cache"] = {"direct": bool(cache.get("direct")),
                         "no-flush": bool(cache.get("no-flush"))}
    fn = info.get("file", "")
    if fn.startswith("json:"):  # the node's strong options (e.g. raw offset / size)
        j = json.loads(fn[5:])
        for k, v in j.items():
            if k not in ("driver", "file", "node-name") and not isinstance(v, dict):
                opts.setdefault(k, v)
    return opts


def _target_node(spec: str, node: str) -> tuple[dict, str]:
    """blockdev-add arguments for the backup target, and a note on creating it."""
    if spec.startswith(("nbd://", "nbd+tcp://")):
        u = urlparse(spec)
        if not u.hostname or not u.path.strip("/"):
            raise UserError(f"--target {spec}: expected nbd://HOST[:PORT]/EXPORT")
        return ({"driver": "nbd", "node-name": node,
                 "server": {"type": "inet", "host": u.hostname, "port": str(u.port or 10809)},
                 "export": u.path.strip("/")},
                f"the target is NBD export {u.path.strip('/')!r} on {u.hostname}:"
                f"{u.port or 10809}, writable and at least as large as the disk")
    if spec.startswith("nbd+unix://"):
        u = urlparse(spec)
        sock = parse_qs(u.query).get("socket", [None])[0]
        if not sock or not u.path.strip("/"):
            raise UserError(f"--target {spec}: expected nbd+unix:///EXPORT?socket=PATH")
        return ({"driver": "nbd", "node-name": node,
                 "server": {"type": "unix", "path": sock}, "export": u.path.strip("/")},
                f"the target is NBD export {u.path.strip('/')!r} on {sock}, writable and at "
                f"least as large as the disk")
    if spec.startswith("nbd"):
        raise UserError(f"--target {spec}: expected nbd://HOST[:PORT]/EXPORT or "
                        f"nbd+unix:///EXPORT?socket=PATH or a file path")
    uri = re.match(r"([A-Za-z][A-Za-z0-9+.-]*)://", spec)
    if uri:  # a URI, but not one this recipe builds a node for: never a file of that name
        raise UserError(f"--target {spec}: unknown URI scheme {uri.group(1)!r}; expected "
                        f"nbd://HOST[:PORT]/EXPORT, nbd+unix:///EXPORT?socket=PATH or a "
                        f"file path")
    fmt = "qcow2" if spec.endswith(".qcow2") else "raw"
    return ({"driver": fmt, "node-name": node, "file": {"driver": "file", "filename": spec}},
            "")


def _nbd_addr(spec: str) -> dict:
    kind, _, rest = spec.partition(":")
    if kind == "unix" and rest:
        return {"type": "unix", "data": {"path": rest}}
    if kind == "inet":
        host, _, port = rest.rpartition(":")
        if host and port.isdigit():
            return {"type": "inet", "data": {"host": host, "port": port}}
    raise UserError(f"--nbd-server {spec}: expected unix:PATH, inet:HOST:PORT or existing")


def unsupported_features(cfg, version: tuple[int, int]) -> list[str]:
    """Configured features QEMU (at ``version``) has no command or option for."""
    b = cfg.backup
    out = []
    if b.cache.ram.size:
        out.append(f"backup.cache.ram.size={fmt_size(b.cache.ram.size)} (the seed's RAM tier): "
                   f"QEMU's fleecing image is one node with no RAM tier in front; the nearest "
                   f"is to put the whole fleecing image on tmpfs")
        if b.cache.serve_reads_from_ram:
            out.append("backup.cache.serve-reads-from-ram: no QEMU node serves guest reads "
                       "from the fleecing image")
    if b.cache.flush.high is not None:
        out.append("backup.cache.flush (RAM -> disk watermarks): no tiers, nothing to flush")
    if b.cache.cor:
        out.append("backup.cache.cor (copy-on-read into the fleecing cache with "
                   "BDRV_REQ_UNNECESSARY): QEMU has no such write flag, and its copy-on-read "
                   "filter copies into the image it sits on, not into the fleecing image")
    if b.cache.size is not None:
        out.append(f"backup.cache.size={fmt_size(b.cache.size)}: no option caps the fleecing "
                   f"image; put it on a filesystem of that size (a full one fails the "
                   f"copy-before-write, which on-cbw-error then handles)")
    if b.lazy_discard:
        out.append("backup.lazy-discard: guest discards of needed clusters are "
                   "copied-before-written at once (block/copy-before-write.c: "
                   "cbw_co_pdiscard), never deferred")
    if b.order != "ascending":
        out.append(f"backup.order={b.order}: block-copy always copies in ascending offset "
                   f"order; blockdev-backup has no ordering option")
    if b.on_cbw_error == "wait":
        out.append("backup.on-cbw-error=wait: QEMU's OnCbwError has break-guest-write and "
                   "break-snapshot only; QEMU's default break-guest-write is emitted")
    if b.cbw_timeout and b.cbw_timeout != math.ceil(b.cbw_timeout):
        out.append(f"backup.cbw-timeout={b.cbw_timeout:g}s: QEMU takes whole seconds "
                   f"(uint32); emitted rounded UP to {math.ceil(b.cbw_timeout)} s, so a copy "
                   f"the model let finish is never failed by QEMU (and 0 stays 'no limit')")
    eff = versions.cbw_timeout_seconds(version, b.cbw_timeout)
    if b.cbw_timeout and eff != b.cbw_timeout:
        out.append(f"backup.cbw-timeout={b.cbw_timeout:g}s: QEMU {_vs(version)} stores it in "
                   f"a uint32 of nanoseconds, so the filter gives up after "
                   f"{'no limit' if not eff else f'{eff:.3g} s'} (qemu/versions.py: "
                   f"cbw-timeout-overflow; the simulation used the same)")
    if b.cbw_priority:
        out.append("backup.cbw-priority: QEMU's NBD client serves all requests FIFO "
                   "(block/nbd.c); there is no priority for copy-before-write")
    if b.client.hints == "cache-tier":
        out.append("backup.client.hints=cache-tier: a hypothetical NBD metadata context; QEMU "
                   "exports base:allocation and qemu:dirty-bitmap only")
    if b.speed and cfg.scheme in ("fleecing-pull", "fleecing-pull-2018"):
        out.append("backup.speed: the pull client's own rate; QEMU has no job to limit")
    return out


def qmp_steps(cfg, ends: Endpoints | None = None,
              version: tuple[int, int] | None = None) -> Plan:
    """The QMP steps that realise ``cfg``'s (single) scheme on QEMU ``version``
    (default: the config's qemu.version). UserError (one line) for a scheme
    QEMU cannot express, or a feature the version lacks."""
    ends = ends or Endpoints()
    scheme = cfg.scheme
    if scheme in REFUSED:
        raise UserError(f"scheme {scheme!r} cannot be expressed in QMP: {REFUSED[scheme]}")
    if scheme not in SCHEMES:
        raise UserError(f"scheme {scheme!r}: no QMP translation (expected one of "
                        f"{', '.join(SCHEMES)})")
    if version is not None:
        cfg = with_version(cfg, version)
    version = cfg.qemu.v
    b = cfg.backup
    if scheme == "fleecing-push" and b.sync == "incremental":
        raise UserError("fleecing-push with sync=incremental: not emitted — blockdev-backup "
                        "looks the bitmap up on its source (the snapshot-access node, which "
                        "has none), and a copy-before-write bitmap makes the rest of the "
                        "snapshot unreadable (cbw_snapshot_read_lock: EACCES), which fails a "
                        "sync=full job; use fleecing-pull (its client reads the exported "
                        "bitmap) or backup")
    if ends.more_disks and (scheme not in ("backup", "legacy-backup") or b.sync == "none"):
        raise UserError(f"several --disk-node: one grouped transaction of blockdev-backup jobs "
                        f"is for backup / legacy-backup with sync full or incremental, not "
                        f"{scheme} sync={b.sync} (fleecing's blockdev-add and re-attach are "
                        f"no transaction actions, so the disks' t0 would differ)")
    if b.sync == "incremental" and not ends.bitmap:
        raise UserError("sync=incremental needs --bitmap NAME (the dirty bitmap on the disk "
                        "node that the previous backup left)")
    kind, _, attach_name = ends.attach.partition(":")
    if kind not in ("qdev", "node") or not attach_name:
        raise UserError(f"--attach {ends.attach}: expected qdev:DEVICE-ID or node:NODE")
    if scheme in FLEECING and kind == "node" and ends.attach_options is None:
        raise UserError(f"--attach {ends.attach}: blockdev-reopen resets every option of "
                        f"node {attach_name!r} it is not given; give --socket (its options "
                        f"are read with query-named-block-nodes) or use qdev:DEVICE-ID")
    plan = Plan(scheme, version, unsupported=unsupported_features(cfg, version))
    S = plan.steps
    E = plan.on_error

    def cmd(name, args=None, note=None, where=None):
        where = S if where is None else where
        if note:
            where.append(Step("note", text=note))
        where.append(Step("cmd", name, args))

    def note(text, where=None):
        (S if where is None else where).append(Step("note", text=text))

    disk, job = ends.disk_node, ends.job_id
    size = cfg.disk.size
    note(f"fleecesim: scheme {scheme} of config {cfg.name!r} on QEMU {_vs(version)}; "
         f"the VM's disk is node {disk!r} ({fmt_size(size)})")
    if scheme == "legacy-backup":
        note("legacy-backup is QEMU < 6.0's blockdev-backup (write notifier, one cluster at a "
             "time): the same command as below; on QEMU >= 6.0 it runs block-copy with "
             "x-perf max-workers=64, i.e. the 'backup' scheme")

    def attach(node: str, what: str, where=None):
        """Re-point the guest at ``node`` (image-fleecing: qom-set of the device's drive;
        or blockdev-reopen of the guest's node with all its options and a new file)."""
        if kind == "qdev":
            cmd("qom-set", {"path": f"/machine/peripheral/{attach_name}", "property": "drive",
                            "value": node}, note=what, where=where)
            return
        opts = dict(ends.attach_options)
        opts.update({"node-name": attach_name, "file": node})
        if has(version, "blockdev-reopen"):
            cmd("blockdev-reopen", {"options": [opts]}, note=what, where=where)
        else:
            cmd("x-blockdev-reopen", opts, note=what, where=where)

    def x_perf() -> dict:
        if not has(version, "x-perf"):
            return {}
        perf = {}
        if b.max_workers != 64:
            perf["max-workers"] = b.max_workers
        if b.max_chunk:
            perf["max-chunk"] = b.max_chunk
        if b.x_perf.use_copy_range:
            perf["use-copy-range"] = True
        if b.min_cluster_size:
            perf["min-cluster-size"] = b.min_cluster_size
        return perf

    def add_target():
        args, how = _target_node(ends.target, "fs-target")
        if not how:
            fmt = args["driver"]
            opt = f" -o cluster_size={b.target.cluster_size}" if fmt == "qcow2" else ""
            how = (f"create the target first: qemu-img create -f {fmt}{opt} {ends.target} "
                   f"{size}")
        cmd("blockdev-add", args, note=how)

    # read-once: the fleecing image frees what is read, and the node the
    # discard enters passes it on: bdrv_co_pdiscard returns at once on a node
    # without BDRV_O_UNMAP (block/io.c), and blockdev-add's default is
    # discard=ignore; tests/qemu-iotests/tests/backup-discard-source sets
    # "discard": "unmap" on the fleecing image and on snapshot-access.
    read_once = (scheme == "fleecing-push" and b.discard_source) or \
                (scheme == "fleecing-pull" and b.client.discard)
    unmap = {"discard": "unmap"} if read_once else {}

    def add_fleece(backing: str | None = None):
        cs = b.cache.cluster_size
        note(f"create the fleecing image first (on fast local storage): qemu-img create "
             f"-f qcow2 -o cluster_size={cs} {ends.fleece} {size}")
        args = {"driver": "qcow2", "node-name": "fs-fleece", **unmap,
                "file": {"driver": "file", "filename": ends.fleece, **unmap}}
        if backing:
            args["backing"] = backing
        cmd("blockdev-add", args, note="read-once: discard=unmap, so a discarded cluster "
                                       "leaves the image" if unmap else None)

    # --- the dirty bitmap's life cycle (block-dirty-bitmap-*, qapi/block-core.json) ---
    snap_bitmap = f"{ends.bitmap}.t0" if ends.bitmap else None
    persistent = (ends.disk_driver or "qcow2") == "qcow2"
    if ends.bitmap and b.sync == "full" and ends.disk_driver is None:
        note("the new bitmap is persistent (kept in the image across restarts), which needs "
             "a qcow2 disk node; on a raw disk set \"persistent\": false")

    def bitmap_at_t0():
        """sync=full: start --bitmap so the next backup can be incremental; a
        fleecing scheme adds it before the attach (t0), so every write from
        t0 on is in it (a write before t0 too: the next backup copies it again,
        never misses it). sync=incremental (pull): freeze what changed up to t0
        in NAME.t0 and clear NAME, in one transaction; NAME records from t0."""
        if not ends.bitmap:
            return
        if b.sync == "incremental":
            note(f"t0 for the bitmap: the guest must not write from here to the attach "
                 f"(fsfreeze or stop the VM), so NAME.t0 is exactly what changed up to t0; "
                 f"copy-before-write copies its bitmap when it is added (BlockdevOptionsCbw "
                 f"@bitmap)")
            cmd("transaction", {"actions": [
                {"type": "block-dirty-bitmap-add",
                 "data": {"node": disk, "name": snap_bitmap, "disabled": True}},
                {"type": "block-dirty-bitmap-merge",
                 "data": {"node": disk, "target": snap_bitmap, "bitmaps": [ends.bitmap]}},
                {"type": "block-dirty-bitmap-clear",
                 "data": {"node": disk, "name": ends.bitmap}}]})
        else:
            cmd("block-dirty-bitmap-add", {"node": disk, "name": ends.bitmap,
                                           "persistent": persistent},
                note=f"start dirty bitmap {ends.bitmap!r} before t0, so the next backup can "
                     f"be sync=incremental with it")

    def bitmap_end(where, ok: bool):
        if not ends.bitmap or b.sync != "incremental":
            if ends.bitmap and not ok:
                cmd("block-dirty-bitmap-remove", {"node": disk, "name": ends.bitmap},
                    note="the backup failed: the new bitmap has no full backup under it",
                    where=where)
            return
        if ok:
            cmd("block-dirty-bitmap-remove", {"node": disk, "name": snap_bitmap},
                note=f"the backup holds NAME.t0's changes: drop it; {ends.bitmap!r} "
                     f"(changes since t0) is the next backup's bitmap", where=where)
        else:
            cmd("block-dirty-bitmap-merge", {"node": disk, "target": ends.bitmap,
                                             "bitmaps": [snap_bitmap]},
                note=f"the backup failed: give NAME.t0's changes back to {ends.bitmap!r}, so "
                     f"the next incremental backup copies them", where=where)
            cmd("block-dirty-bitmap-remove", {"node": disk, "name": snap_bitmap}, where=where)

    def backup_cmd(device: str, sync: str, extra: dict | None = None, what: str = ""):
        args: dict[str, Any] = {"job-id": job, "device": device, "target": "fs-target",
                                "sync": sync, "auto-finalize": True, "auto-dismiss": False}
        if b.speed and scheme not in ("fleecing-pull-2018",):
            args["speed"] = int(b.speed)
        args.update(extra or {})
        if sync == "incremental":
            args["bitmap"] = ends.bitmap
        if sync == "full" and ends.bitmap and device == disk:
            note(f"t0: start dirty bitmap {ends.bitmap!r} and the backup in one transaction, "
                 f"so the next backup can be sync=incremental")
            cmd("transaction", {"actions": [
                {"type": "block-dirty-bitmap-add",
                 "data": {"node": disk, "name": ends.bitmap, "persistent": persistent}},
                {"type": "blockdev-backup", "data": args}]})
        else:
            cmd("blockdev-backup", args, note=what or None)
        if sync == "incremental" and device == disk:
            note(f"blockdev-backup sync=incremental (bitmap-mode on-success, the default) "
                 f"clears {ends.bitmap!r} when the job succeeds and keeps it when it fails "
                 f"(block/backup.c backup_cleanup_sync_bitmap)")

    def finish_job(cancel=False):
        if cancel:
            cmd("block-job-cancel", {"device": job})
            S.append(Step("wait", event="BLOCK_JOB_CANCELLED", match={"device": job}))
        else:
            S.append(Step("wait", event="BLOCK_JOB_COMPLETED", match={"device": job}))
            note("a BLOCK_JOB_COMPLETED with an 'error' field means the backup is NOT "
                 "usable: run the on-error steps instead of the rest")
        cmd("job-dismiss", {"id": job})
        if not cancel:
            cmd("job-dismiss", {"id": job}, where=E)

    def finish(cleanup: Callable[[list], None]):
        """The clean-up, on success (the rest of ``steps``) and on error (``on_error``)."""
        note("clean-up")
        cleanup(S)
        bitmap_end(S, ok=True)
        note("on error: the same clean-up; the target is not a backup", where=E)
        cleanup(E)
        bitmap_end(E, ok=False)

    if scheme in ("backup", "legacy-backup") and ends.more_disks:
        _grouped_backups(plan, cfg, ends, x_perf() if scheme == "backup" else {})
        return plan

    if scheme in ("backup", "legacy-backup"):
        add_target()
        sync = b.sync
        extra = {}
        perf = x_perf() if scheme == "backup" else {}
        if perf:
            extra["x-perf"] = perf
        backup_cmd(disk, sync, extra, what="t0: the backup starts (blockdev-backup inserts its "
                                           "own copy-before-write filter above the disk)")
        if sync == "none":
            S.append(Step("pause", text=f"backup.window: let the job guard writes for "
                                        f"{b.window:g} s", seconds=b.window))
            finish_job(cancel=True)
        else:
            finish_job()

        def clean(where):
            cmd("blockdev-del", {"node-name": "fs-target"}, where=where)
        note("clean-up")
        clean(S)
        if sync != "none":
            note("on error: the same clean-up; the target is not a backup", where=E)
            clean(E)
            if ends.bitmap and sync == "full":
                cmd("block-dirty-bitmap-remove", {"node": disk, "name": ends.bitmap},
                    note="the backup failed: the new bitmap has no full backup under it",
                    where=E)
        return plan

    if scheme == "fleecing-pull-2018":
        add_fleece(backing=disk)
        if ends.bitmap and b.sync == "full":
            bitmap_at_t0()
        backup_cmd(disk, "none", {"target": "fs-fleece"},
                   what="t0: backup sync=none into the scratch image (image-fleecing's "
                        "'backup(sync=none) based fleecing')")
        if b.sync == "incremental":
            note("fleecing-pull-2018 with sync=incremental: the client reads only the "
                 f"regions in {ends.bitmap!r}, exported with the snapshot")
        _export(plan, ends, "fs-fleece", version, writable=False,
                bitmap={"node": disk, "name": ends.bitmap} if b.sync == "incremental"
                else None)
        finish_job(cancel=True)
        note("clean-up")
        cmd("blockdev-del", {"node-name": "fs-fleece"})
        return plan

    # fleecing-push / fleecing-pull: copy-before-write + snapshot-access
    add_fleece()
    bitmap_at_t0()
    cbw: dict[str, Any] = {"driver": "copy-before-write", "node-name": "fs-cbw",
                           "file": disk, "target": "fs-fleece"}
    if b.on_cbw_error == "break-snapshot":
        cbw["on-cbw-error"] = "break-snapshot"
    if b.cbw_timeout:
        cbw["cbw-timeout"] = int(math.ceil(b.cbw_timeout))
    if b.min_cluster_size:
        cbw["min-cluster-size"] = b.min_cluster_size
    if b.sync == "incremental":
        cbw["bitmap"] = {"node": disk, "name": snap_bitmap}
    cmd("blockdev-add", cbw, note="the copy-before-write filter: old data of clusters the "
                                  "guest overwrites goes to the fleecing image")
    attach("fs-cbw", "t0: the guest now writes through the filter")
    cmd("blockdev-add", {"driver": "snapshot-access", "node-name": "fs-access", **unmap,
                         "file": "fs-cbw"}, note="the point-in-time view")
    if scheme == "fleecing-push":
        add_target()
        perf = x_perf()
        cluster = cfg.cluster_size
        chunk = versions.job_chunk(version, scheme, perf.get("max-chunk", 1 << 20), cluster)
        if chunk != perf.get("max-chunk", 1 << 20):
            perf["max-chunk"] = chunk
            note(f"QEMU < 8.0: snapshot-access reads spanning a saved and an unsaved cluster "
                 f"return new data (hbitmap_status() bug, fixed in 8.0): x-perf max-chunk = "
                 f"one cluster ({cluster}) keeps every read inside one cluster")
        extra = {"x-perf": perf} if perf else {}
        if b.discard_source:
            extra["discard-source"] = True
        backup_cmd("fs-access", "full", extra, what="the backup job copies the snapshot view")
        finish_job()
    else:
        node = "fs-access"
        if has(version, "hbitmap-status"):
            cmd("blockdev-add", {"driver": "blkdebug", "node-name": "fs-split",
                                 "image": "fs-access", "max-transfer": cfg.cbw_cluster_size,
                                 **unmap},
                note="QEMU < 8.0: split client reads at fleecing clusters (hbitmap_status() "
                     "bug, fixed in 8.0), as fleecesim/qemu/runner.py does")
            node = "fs-split"
        bm = None
        if b.sync == "incremental":
            bm = {"node": disk, "name": snap_bitmap} if has(version, "export-bitmap-node") \
                else snap_bitmap
        _export(plan, ends, node, version, writable=b.client.discard, bitmap=bm)

    def clean(where):
        if scheme == "fleecing-push":
            cmd("blockdev-del", {"node-name": "fs-target"}, where=where)
        if scheme == "fleecing-pull" and has(version, "hbitmap-status"):
            cmd("blockdev-del", {"node-name": "fs-split"}, where=where)
        cmd("blockdev-del", {"node-name": "fs-access"}, where=where)
        attach(disk, "the guest back on its disk", where=where)
        cmd("blockdev-del", {"node-name": "fs-cbw"}, where=where)
        cmd("blockdev-del", {"node-name": "fs-fleece"}, where=where)
        note(f"then delete {ends.fleece}", where=where)
    finish(clean)
    return plan


def _grouped_backups(plan: Plan, cfg, ends: Endpoints, perf: dict) -> None:
    """Several disks of one VM: their blockdev-backup jobs in one transaction
    with completion-mode grouped (qapi/transaction.json TransactionProperties,
    since 2.5: if one job fails, the others are cancelled, so either every disk
    has its t0 backup or none does). Each job ends concluded (completed or
    cancelled): the steps wait for that, and run_steps asks query-jobs whether
    any ended in error."""
    b = cfg.backup
    S, E = plan.steps, plan.on_error
    disks = [(ends.disk_node, ends.target)] + list(ends.more_disks)
    actions = []
    for i, (node, target) in enumerate(disks):
        args, how = _target_node(target, f"fs-target-{i}")
        S.append(Step("note", text=how or f"create the target first: qemu-img create -f "
                                          f"{args['driver']} {target} (the size of {node})"))
        S.append(Step("cmd", "blockdev-add", args))
        job = {"job-id": f"{ends.job_id}-{i}", "device": node, "target": f"fs-target-{i}",
               "sync": b.sync, "auto-finalize": True, "auto-dismiss": False}
        if b.speed:
            job["speed"] = int(b.speed)
        if perf:
            job["x-perf"] = perf
        if b.sync == "incremental":
            job["bitmap"] = ends.bitmap
        elif ends.bitmap:
            actions.append({"type": "block-dirty-bitmap-add",
                            "data": {"node": node, "name": ends.bitmap,
                                     "persistent": (ends.disk_driver or "qcow2") == "qcow2"}})
        actions.append({"type": "blockdev-backup", "data": job})
    S.append(Step("note", text=f"t0 of all {len(disks)} disks: one transaction, "
                               f"completion-mode grouped"))
    S.append(Step("cmd", "transaction", {"actions": actions,
                                         "properties": {"completion-mode": "grouped"}}))
    for i in range(len(disks)):
        S.append(Step("wait", event="JOB_STATUS_CHANGE",
                      match={"id": f"{ends.job_id}-{i}", "status": "concluded"}))
    S.append(Step("note", text="query-jobs: a job with an 'error' (or cancelled by the group) "
                               "means no disk has a usable backup: run the on-error steps"))
    for where in (S, E):
        for i in range(len(disks)):
            where.append(Step("cmd", "job-dismiss", {"id": f"{ends.job_id}-{i}"}))
        for i in range(len(disks)):
            where.append(Step("cmd", "blockdev-del", {"node-name": f"fs-target-{i}"}))
    if ends.bitmap and b.sync == "full":
        for node, _t in disks:
            E.append(Step("cmd", "block-dirty-bitmap-remove", {"node": node,
                                                                "name": ends.bitmap}))


def _export(plan: Plan, ends: Endpoints, node: str, version, writable: bool,
            bitmap=None) -> None:
    """nbd-server-start, the export (with ``bitmap`` as the qemu:dirty-bitmap:NAME
    metadata context, for an incremental pull), the client's pause, its removal."""
    S = plan.steps
    running = ends.nbd_server == "existing"  # QEMU has one NBD server: reuse it
    if not running:
        S.append(Step("cmd", "nbd-server-start", {"addr": _nbd_addr(ends.nbd_server)}))
    if has(version, "block-export-add"):
        args = {"type": "nbd", "id": "fs-export", "node-name": node, "name": ends.export,
                "writable": writable}
        if bitmap is not None:
            args["bitmaps"] = [bitmap]
        if writable:
            S.append(Step("note", text="writable only so the client's TRIM reaches "
                                       "snapshot-access (read-once: backup.client.discard); "
                                       "snapshot-access refuses writes"))
        S.append(Step("cmd", "block-export-add", args))
    else:
        args = {"device": node, "name": ends.export, "writable": writable}
        if bitmap is not None:
            args["bitmap"] = bitmap["name"] if isinstance(bitmap, dict) else bitmap
        S.append(Step("cmd", "nbd-server-add", args))
    name = bitmap["name"] if isinstance(bitmap, dict) else bitmap
    how = (f"; read only what qemu:dirty-bitmap:{name} marks (e.g. qemu-img map "
           f"--image-opts with x-dirty-bitmap, as QEMU's iotests do), a read outside it "
           f"fails (EACCES)" if bitmap is not None else "")
    S.append(Step("pause", text=f"the backup client reads export {ends.export!r} from "
                                f"{ends.nbd_server} (e.g. qemu-img convert -f raw "
                                f"nbd://HOST/{ends.export} backup.raw){how}; continue when "
                                f"it is done"))
    if has(version, "block-export-add"):
        S.append(Step("cmd", "block-export-del", {"id": "fs-export"}))
        S.append(Step("wait", event="BLOCK_EXPORT_DELETED", match={"id": "fs-export"}))
    if not running:
        S.append(Step("cmd", "nbd-server-stop"))


def render(plan: Plan) -> str:
    lines = [s.line() for s in plan.steps]
    if plan.on_error:
        lines.append("# ---- on error (BLOCK_JOB_COMPLETED with an 'error'), instead of the "
                     "steps after that wait:")
        lines += [s.line() if s.kind != "cmd" else "#! " + s.line() for s in plan.on_error]
    if plan.unsupported:
        lines.append(f"# configured, but QEMU {_vs(plan.version)} has no command for "
                     f"({len(plan.unsupported)}):")
        lines += [f"#   - {u}" for u in plan.unsupported]
    else:
        lines.append("# every configured feature has a QEMU equivalent above")
    return "\n".join(lines)


def run_steps(client, steps: list[Step], *, timeout: float = 600.0,
              on_command: Callable[[Step, Any], None] | None = None,
              on_pause: Callable[[Step], None] | None = None,
              on_error: list[Step] | None = None) -> list[dict]:
    """Feed ``steps`` to a connected ``fleecesim.qemu.QMPClient``: commands in
    order, waits for their event, pauses by sleeping (or ``on_pause`` for a
    pause with no duration). A BLOCK_JOB_COMPLETED with an error ends the
    steps there and runs ``on_error`` (the plan's error clean-up) instead.
    Returns the events waited for."""
    seen = []
    for s in steps:
        if s.kind == "cmd":
            ret = client.execute(s.execute, s.arguments, timeout=60)
            if on_command:
                on_command(s, ret)
        elif s.kind == "wait":
            match = s.match or {}
            ev = client.wait_event(s.event, lambda d: all(d.get(k) == v
                                                          for k, v in match.items()),
                                   timeout=timeout)
            seen.append(ev)
            failed = ev["event"] == "BLOCK_JOB_COMPLETED" and ev["data"].get("error")
            if ev["event"] == "JOB_STATUS_CHANGE" and match.get("status") == "concluded":
                # a grouped job: completed or cancelled, QEMU's query-jobs says which
                job = next((j for j in client.execute("query-jobs")
                            if j["id"] == match.get("id")), {})
                if job.get("error"):
                    ev["data"]["error"] = job["error"]
                    failed = True
            if failed and on_error is not None:
                # the rest of a grouped transaction's jobs concluded too (cancelled)
                for w in steps[steps.index(s) + 1:]:
                    if w.kind == "wait" and w.event == "JOB_STATUS_CHANGE":
                        wm = w.match or {}
                        client.wait_event(w.event, lambda d, wm=wm: all(
                            d.get(k) == v for k, v in wm.items()), timeout=timeout)
                run_steps(client, on_error, timeout=timeout, on_command=on_command)
                return seen
        elif s.kind == "pause":
            if s.seconds is not None:
                time.sleep(s.seconds)
            elif on_pause:
                on_pause(s)
    return seen


# ---------------------------------------------------------------- command line
def add_qmp_subcommand(sub) -> None:
    q = sub.add_parser(
        "qmp", help="print the QMP commands that realise a config's scheme on real QEMU",
        description="Print, as JSON lines a QMP socket accepts, the commands that set up the "
                    "configured scheme on a running QEMU (the config's qemu.version), run it and clean "
                    "up, with '#' comment lines for waits, pauses and the configured features "
                    "QEMU has no command for. Strip comments before piping: grep -v '^#'.")
    q.add_argument("config")
    q.add_argument("--variant", metavar="NAME", help="which variant / scheme (when the config "
                                                     "lists several)")
    q.add_argument("--qemu-version", default=None, metavar="X.Y",
                   help="the QEMU to emit for (default: the config's qemu.version); the "
                        "same as --set qemu.version=X.Y")
    q.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    e = Endpoints()
    q.add_argument("--disk-node", default=e.disk_node,
                   help="the VM disk's node name; several, comma-separated (with as many "
                        "--target): one grouped transaction (backup, legacy-backup)")
    q.add_argument("--attach", default=e.attach,
                   help="how the guest reaches the disk: qdev:DEVICE-ID (qom-set drive) or "
                        "node:NODE (a raw node re-pointed by blockdev-reopen)")
    q.add_argument("--fleece", default=e.fleece, help="fleecing image path")
    q.add_argument("--target", default=e.target,
                   help="backup target: a file (.qcow2 or raw), nbd://HOST[:PORT]/EXPORT or "
                        "nbd+unix:///EXPORT?socket=PATH")
    q.add_argument("--nbd-server", default=e.nbd_server,
                   help="pull: unix:PATH or inet:HOST:PORT, or 'existing' (QEMU's NBD server "
                        "is already running: add the export to it, leave it running)")
    q.add_argument("--export", default=e.export, help="pull: NBD export name")
    q.add_argument("--job-id", default=e.job_id)
    q.add_argument("--bitmap", default=None,
                   help="sync=incremental: the dirty bitmap to use; sync=full: start this "
                        "bitmap at t0 for the next incremental backup")
    q.add_argument("--socket", metavar="PATH",
                   help="send the commands to this QMP socket instead of printing them")
    q.set_defaults(func=cmd_qmp)


def _check_socket(path: str) -> None:
    """A QMP socket given by the user is a running QEMU's: one that is not
    there is an error now, not ten seconds of connection retries (those are
    for a daemon fleecesim has just started, qemu/qmp.py QMPClient)."""
    import os
    import stat
    hint = "expected the QMP socket of a running QEMU (-qmp unix:PATH,server=on,wait=off)"
    try:
        st = os.stat(path)
    except OSError as e:
        raise UserError(f"--socket {path}: {e.strerror}; {hint}") from None
    if not stat.S_ISSOCK(st.st_mode):
        raise UserError(f"--socket {path}: not a socket; {hint}")


def pick_variant(cfg, name: str | None):
    from .config import variants
    vs = variants(cfg)
    if name is None:
        if len(vs) > 1:
            raise UserError(f"the config has {len(vs)} variants ({', '.join(n for n, _ in vs)}); "
                            f"pick one with --variant")
        return vs[0]
    for n, c in vs:
        if n == name:
            return n, c
    raise UserError(f"--variant {name}: expected one of {', '.join(n for n, _ in vs)}")


def cmd_qmp(args) -> int:
    from .config import load_config
    if args.socket:
        _check_socket(args.socket)
    sets = list(args.set)
    if args.qemu_version is not None:
        sets.append(f"qemu.version={_vs(parse_version(args.qemu_version))}")
    cfg = load_config(args.config, sets)
    _name, c = pick_variant(cfg, args.variant)
    nodes, targets = args.disk_node.split(","), args.target.split(",")
    if len(nodes) != len(targets):
        raise UserError(f"--disk-node lists {len(nodes)} disks, --target {len(targets)}: "
                        f"expected one target per disk")
    ends = Endpoints(disk_node=nodes[0], attach=args.attach, fleece=args.fleece,
                     target=targets[0], nbd_server=args.nbd_server, export=args.export,
                     job_id=args.job_id, bitmap=args.bitmap,
                     more_disks=list(zip(nodes[1:], targets[1:])))
    if not args.socket:
        print(render(qmp_steps(c, ends)))
        return 0
    import sys
    from .qemu.qmp import QMPClient, QMPError
    try:
        client = QMPClient(args.socket)
    except QMPError as e:
        raise UserError(f"--socket {args.socket}: {e}") from None
    with client:
        kind, _, name = ends.attach.partition(":")
        if kind == "node" and name:
            ends.attach_options = node_options(client, name)
        ends.disk_driver = node_options(client, ends.disk_node)["driver"]
        plan = qmp_steps(c, ends)

        def pause(s):
            print(f"fleecesim: {s.text} — press Enter", file=sys.stderr)
            sys.stdin.readline()
        try:
            events = run_steps(client, plan.steps, on_pause=pause, on_error=plan.on_error,
                               on_command=lambda s, _r: print(s.line(), file=sys.stderr))
        except QMPError as e:
            print(f"fleecesim: QEMU refused: {e}", file=sys.stderr)
            return 1
    bad = [e for e in events if e["data"].get("error")]
    for e in bad:
        print(f"fleecesim: {e['event']}: {e['data']['error']}", file=sys.stderr)
    return 1 if bad else 0
