"""``vms:``, ``fleet:`` and ``variants:``: one config becoming several VMs or runs."""
from __future__ import annotations

from typing import Annotated, Any

from pydantic import BeforeValidator, Field, field_validator

from ..units import parse_rate
from .core import Model, Seconds, _folder_name


class Variant(Model):
    name: str
    set: dict[str, Any] = {}

    @field_validator("name")
    @classmethod
    def _name(cls, v):
        return _folder_name(v, nested=True)


# --- vzdump's schedule (Proxmox VE) -----------------------------------------
def _vzdump_bwlimit(v):
    """KiB/s, vzdump's unit for --bwlimit (pve-guest-common PVE/VZDump/Common.pm:
    bwlimit, "Limit I/O bandwidth (in KiB/s)", 0 = unlimited): a bare number is
    KiB/s, a rate with a unit ("100MiB/s") is converted. Kept in KiB/s so that
    a dumped config reads back the same."""
    if isinstance(v, bool):
        raise ValueError(f"expected KiB/s (vzdump's unit) or a rate like '100MiB/s', got {v!r}")
    if isinstance(v, (int, float)):
        return parse_rate(v)
    return parse_rate(v) / 1024


class VzdumpFleecing(Model):
    """vzdump's ``fleecing: enabled=<bool>,storage=<id>`` (PVE >= 8.2;
    pve-guest-common PVE/VZDump/Common.pm: backup-fleecing, off by default).
    On: each disk gets a fleecing image on ``storage`` for the backup's
    length (qemu-server PVE/VZDump/QemuServer.pm: allocate_fleecing_images,
    removed again after the VM's backup): the fleecing-push scheme. Off:
    QEMU's backup job's copy-before-write copies straight to the target: the
    backup scheme."""
    enabled: bool = False
    storage: str | None = None  # a name in devices:; None: backup.cache.device


class VzdumpPerformance(Model):
    """vzdump's ``performance: max-workers=N`` (PVE >= 8.2; pve-guest-common
    PVE/VZDump/Common.pm: backup-performance, 1..256, default 16). qemu-server
    (PVE/VZDump/QemuServer.pm: add_backup_performance_options) passes it to the
    QMP ``backup`` command, and pve-qemu's backup patch (debian/patches/pve/
    0029-PVE-Backup-Proxmox-backup-patches-for-QEMU.patch: qmp_backup) makes it
    the job's BackupPerf max-workers, 16 when not given."""
    max_workers: int = Field(16, ge=1, le=256)


class VzdumpSpec(Model):
    """One vzdump job's options, for every node of the fleet. vzdump backs up
    a node's guests one at a time, in order (pve-manager PVE/VZDump.pm:
    exec_backup loops over the sorted VMIDs calling exec_backup_task), one
    vzdump per node (getlock on /var/run/vzdump.lock); each node runs its own
    for its local guests (PVE/API2/VZDump.pm: vzdump keeps the local VMIDs of
    get_included_guests), so nodes run side by side."""
    # QemuServer.pm archive_pbs / archive_vma: speed = bwlimit * 1024 on the
    # QMP backup command; pve-qemu's patch gives every drive's job that speed
    # (backup_job_create(..., backup_state.speed, ...)).
    bwlimit: Annotated[float, BeforeValidator(_vzdump_bwlimit)] = 0.0  # KiB/s

    @property
    def speed(self) -> float:
        """The backup job's speed in bytes/s (0: unlimited)."""
        return self.bwlimit * 1024
    performance: VzdumpPerformance = VzdumpPerformance()
    fleecing: VzdumpFleecing = VzdumpFleecing()

    @field_validator("bwlimit")
    @classmethod
    def _bw(cls, v):
        if v < 0:
            raise ValueError("expected a rate >= 0 (0: unlimited)")
        return v


# backup keys vzdump sets on each VM's job (the key to use instead)
VZDUMP_SETS = {"scheme": "fleet.vzdump.fleecing.enabled",
               "max-workers": "fleet.vzdump.performance.max-workers",
               "speed": "fleet.vzdump.bwlimit"}
# --- end vzdump's schedule ---------------------------------------------------


# --- many VMs, one target (fleet.py) ----------------------------------------
VM_SECTIONS = ("disk", "workload", "backup")
# The node of a VM under fleet.vzdump that names none: a Proxmox VE node's
# name, so its summary columns read node_pve_backup_window_s and its rows in
# the night's table "pve" (a name such as "node" read node_node_...).
DEFAULT_NODE = "pve"

class VMSpec(Model):
    """One VM of a fleet: its own disk, workload and backup (each key given
    replaces the shared section's key; a workload naming its own trace, iops or
    iodepth replaces the shared one's source: SOURCE_REPLACES), its backup starting ``start``
    seconds after the common warm-up. A trace path is relative to the config."""
    name: str
    start: Seconds = Field(0.0, ge=0)
    disk: dict[str, Any] = {}
    workload: dict[str, Any] = {}
    backup: dict[str, Any] = {}
    # fleet.vzdump: the node whose vzdump backs this VM up (None: DEFAULT_NODE),
    # and this VM's own fleecing option (as if in a job of its own: that job
    # waits for the node's vzdump lock, so still one VM at a time per node)
    node: str | None = None
    fleecing: VzdumpFleecing | None = None

    @field_validator("name")
    @classmethod
    def _plain(cls, v):
        import re
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]*", v or ""):
            raise ValueError(f"expected a plain name (letters, digits, '-', '_'), got {v!r}")
        return v


class FleetSpec(Model):
    # VM i's backup starts i x stagger (plus its own start) after the warm-up
    stagger: Seconds = Field(0.0, ge=0)
    # vzdump's order instead: one VM at a time per node, nodes side by side
    vzdump: VzdumpSpec | None = None
