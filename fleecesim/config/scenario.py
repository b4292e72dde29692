"""The whole scenario: the top-level ``Config`` and its checks across sections."""
from __future__ import annotations

import copy

from pydantic import ValidationError, field_validator, model_validator

from .backup import (FLEECING_IMAGE_SCHEMES, PBS_SCHEMES, SYNC_NONE_SCHEMES, BackupSpec, PbsSpec,
                     TargetSpec, _for_scheme)
from .core import Model, _changed_keys, _folder_name, _format_error
from .devices import DEFAULT_DEVICES, DeviceSpec
from .disk import DiskSpec
from .faults import FaultsSpec
from .rules import inert
from .run import GuestSpec, HostSpec, QemuSpec, RunSpec
from .vms import DEFAULT_NODE, VM_SECTIONS, VZDUMP_SETS, FleetSpec, Variant, VMSpec
from .workload import WorkloadSpec, _drop_replaced


class Config(Model):
    name: str = "scenario"  # results go to results/<name>/: a name, not a path

    @field_validator("name")
    @classmethod
    def _name(cls, v):
        return _folder_name(v)

    @model_validator(mode="after")
    def _workload_fits(self):
        w = self.workload
        if w.trace is None:
            big = max(s for s, _w in w.size_weights())
            if big > self.disk.size:
                raise ValueError(f"workload.size: a {big}-byte request does not fit the "
                                 f"{self.disk.size}-byte disk")
            if sum(wt for _s, wt in w.size_weights()) <= 0:
                raise ValueError("workload.size: the weights must not all be 0")
        return self
    disk: DiskSpec = DiskSpec()
    devices: dict[str, DeviceSpec] = {k: DeviceSpec.model_validate(v)
                                      for k, v in DEFAULT_DEVICES.items()}
    workload: WorkloadSpec = WorkloadSpec(iops=2000)
    backup: BackupSpec = BackupSpec()
    run: RunSpec = RunSpec()
    host: HostSpec = HostSpec()
    guest: GuestSpec = GuestSpec()
    faults: FaultsSpec = FaultsSpec()
    variants: list[Variant] = []
    vms: list[VMSpec] = []          # several VMs on shared devices (fleet.py)
    fleet: FleetSpec = FleetSpec()
    qemu: QemuSpec = QemuSpec()

    def dump(self) -> dict:
        d = super().dump()
        if not self.vms and self.fleet == FleetSpec():
            # a one-VM config dumps (and hashes) as before fleets
            d.pop("vms", None)
            d.pop("fleet", None)
        if self.run.state == "auto":  # results do not depend on it: dumps (and hashes) as before
            d["run"].pop("state", None)
        if self.run.bulk_zeroes:  # the default: configs dump (and hash) as before it existed
            d["run"].pop("bulk-zeroes", None)
        if self.qemu == QemuSpec():  # the newest behaviour: dumps (and hashes) as before
            d.pop("qemu", None)
        # vzdump's schedule unused: fleets dump (and hash) as before it existed
        if "fleet" in d and d["fleet"].get("vzdump") is None:
            d["fleet"].pop("vzdump", None)
        for vm in d.get("vms", ()):
            for k in ("node", "fleecing"):
                if vm.get(k) is None:
                    vm.pop(k, None)
        # the error policies at their defaults: configs dump (and hash) as before them
        if self.guest == GuestSpec():
            d.pop("guest", None)
        for k, v in (("on-source-error", "report"), ("on-target-error", "report"),
                     ("resume-after", None)):
            if d["backup"].get(k, v) == v:
                d["backup"].pop(k, None)
        return d

    @model_validator(mode="after")
    def _vms(self):
        if not self.vms:
            if self.fleet != FleetSpec():
                raise ValueError("fleet.stagger: needs a list of vms")
            return self
        names = set()
        for i, vm in enumerate(self.vms):
            if vm.name in names:
                raise ValueError(f"vms[{i}].name: {vm.name!r} is used twice")
            names.add(vm.name)
        if self.faults != FaultsSpec():
            raise ValueError("faults: not supported with vms (a fault is one VM's)")
        self._vzdump_check()
        self.vm_configs()  # each VM must be a valid config of its own
        return self

    def _vzdump_check(self) -> None:
        """fleet.vzdump orders the backups and sets each job's scheme,
        max-workers and speed: a key that would say otherwise is an error."""
        vz = self.fleet.vzdump
        if vz is None:
            for i, vm in enumerate(self.vms):
                for k in ("node", "fleecing"):
                    if getattr(vm, k) is not None:
                        raise ValueError(f"vms[{i}].{k}: needs fleet.vzdump (vzdump's schedule)")
            return
        if self.fleet.stagger:
            raise ValueError("fleet.stagger: not with fleet.vzdump (vzdump starts each VM "
                             "when the one before it on its node ends)")
        # The shared section's values (a dumped config carries every default,
        # so what was typed is not known): each at BackupSpec's default or at
        # vzdump's own value for the job, else it says otherwise.
        b, dflt = self.backup, BackupSpec()
        vz_sets = {"scheme": "fleecing-push" if vz.fleecing.enabled else "backup",
                   "max-workers": vz.performance.max_workers, "speed": vz.speed}
        for k, instead in VZDUMP_SETS.items():
            v = getattr(b, k.replace("-", "_"))
            if v != getattr(dflt, k.replace("-", "_")) and v != vz_sets[k]:
                raise ValueError(f"backup.{k}: vzdump sets it; use {instead}")
        for i, vm in enumerate(self.vms):
            if vm.start:
                raise ValueError(f"vms[{i}].start: not with fleet.vzdump (vzdump starts each "
                                 f"VM when the one before it on its node ends)")
            for k, instead in VZDUMP_SETS.items():
                if k in vm.backup or k.replace("-", "_") in vm.backup:
                    raise ValueError(f"vms[{i}].backup.{k}: vzdump sets it; use {instead}"
                                     + (" or vms[i].fleecing" if k == "scheme" else ""))
            fl = vm.fleecing or vz.fleecing
            if fl.storage is not None and fl.storage not in self.devices:
                where = f"vms[{i}].fleecing" if vm.fleecing else "fleet.vzdump.fleecing"
                raise ValueError(f"{where}.storage: no device named {fl.storage!r} (expected "
                                 f"one of {', '.join(sorted(self.devices))})")

    def vm_nodes(self) -> list[str]:
        """Each VM's node under fleet.vzdump (in the order of ``vms``;
        ``DEFAULT_NODE`` for a VM that names none)."""
        return [vm.node or DEFAULT_NODE for vm in self.vms]

    def vm_configs(self) -> list[tuple[str, float, "Config"]]:
        """(name, start delay after warm-up, resolved Config) per VM: the shared
        sections with the VM's keys over them, devices/run/host shared, and a
        seed of the VM's own (run.seed and the VM's name), so adding a VM does
        not change another's requests."""
        from ..rng import vm_seed
        base = self.dump()
        for k in ("vms", "fleet", "variants"):
            base.pop(k, None)
        out = []
        for i, vm in enumerate(self.vms):
            raw = copy.deepcopy(base)
            vz = self.fleet.vzdump
            if vz is not None:  # the shared backup keys the VM's scheme acts on
                fl = vm.fleecing or vz.fleecing
                raw = _for_scheme(raw, "fleecing-push" if fl.enabled else "backup")
            for sec in VM_SECTIONS:
                own = getattr(vm, sec)
                shared = raw[sec]
                if sec == "workload":  # the VM's own request source replaces the shared one
                    shared = _drop_replaced(shared, own)
                raw[sec] = {**shared, **own}
            raw["run"]["seed"] = vm_seed(self.run.seed, vm.name)
            if vz is not None:  # what vzdump passes to this VM's backup job (VzdumpSpec)
                raw["backup"]["scheme"] = "fleecing-push" if fl.enabled else "backup"
                raw["backup"]["max-workers"] = vz.performance.max_workers
                raw["backup"]["speed"] = vz.speed
                if fl.storage is not None:
                    raw["backup"]["cache"] = {**raw["backup"]["cache"], "device": fl.storage}
            if isinstance(raw["backup"].get("scheme"), list):
                raise ValueError(f"vms[{i}].backup.scheme: one scheme per VM (use variants "
                                 f"to compare schemes)")
            try:
                c = Config.model_validate(raw)
            except ValidationError as e:
                raise ValueError(f"vms[{i}].{_format_error(e)}") from None
            out.append((vm.name, vm.start + i * self.fleet.stagger, c))
        return out

    @model_validator(mode="before")
    @classmethod
    def _default_devices(cls, v):
        """User devices add to the defaults; a partial entry for a default name
        (e.g. ``--set devices.local.queue-depth=4``) refines that default."""
        if isinstance(v, dict) and isinstance(v.get("devices"), dict):
            merged = copy.deepcopy(DEFAULT_DEVICES)
            for name, spec in v["devices"].items():
                if (isinstance(spec, dict) and name in merged and "kind" not in spec
                        and "preset" not in spec):
                    merged[name] = {**merged[name], **spec}
                else:
                    merged[name] = spec
            v = {**v, "devices": merged}
        return v

    @model_validator(mode="after")
    def _refs(self):
        for where, name in (("disk.device", self.disk.device),
                            ("backup.target.device", self.backup.target.device),
                            ("backup.cache.device", self.backup.cache.device)):
            if name not in self.devices:
                raise ValueError(f"{where}: no device named {name!r}; "
                                 f"defined: {', '.join(self.devices) or 'none'}")
        cs = self.cbw_cluster_size
        cache = self.backup.cache.size
        if cache is not None and cache < cs:
            raise ValueError(f"backup.cache.size: {cache} bytes is smaller than one "
                             f"cluster ({cs} bytes)")
        cs = max(cs, self.cluster_size)
        if self.disk.size < cs:
            raise ValueError(f"disk.size: smaller than one cluster ({cs} bytes)")
        return self

    @model_validator(mode="after")
    def _tiered_cache(self):
        """The tiered fleecing cache's RAM tier: its device and size."""
        ram = self.backup.cache.ram
        if ram.size:
            if ram.device not in self.devices:
                raise ValueError(f"backup.cache.ram.device: no device named {ram.device!r}; "
                                 f"defined: {', '.join(self.devices) or 'none'}")
            if ram.size < self.cbw_cluster_size:
                raise ValueError(f"backup.cache.ram.size: {ram.size} bytes is smaller than "
                                 f"one cluster ({self.cbw_cluster_size} bytes)")
        return self

    @model_validator(mode="after")
    def _backup_modes(self):
        """Device names and sync modes of the scheme-specific backup sections."""
        b = self.backup
        for where, name in (("backup.client.link", b.client.link),
                            ("backup.client.storage", b.client.storage),
                            ("backup.overlay.device", b.overlay.device)):
            if name is not None and name not in self.devices:
                raise ValueError(f"{where}: no device named {name!r}; "
                                 f"defined: {', '.join(self.devices) or 'none'}")
        self._client_link()
        if b.sync == "none":
            for s in [b.scheme] if isinstance(b.scheme, str) else b.scheme:
                if s not in SYNC_NONE_SCHEMES:
                    raise ValueError(f"backup.sync: 'none' (the job idles, CBW copies to the "
                                     f"target) needs one of {', '.join(SYNC_NONE_SCHEMES)}, "
                                     f"not {s!r}")
        return self

    def _client_link(self) -> None:
        """A pull client reads over an NBD transport: ``backup.client.link``
        (default: the target device) must be a remote device."""
        from ..schemes import option_error
        b = self.backup
        pulls = [s for s in ([b.scheme] if isinstance(b.scheme, str) else b.scheme)
                 if option_error(s, "client.link") is None]
        if not pulls:
            return
        name = b.client.link or b.target.device
        spec = self.devices.get(name)
        if spec is not None and spec.kind != "remote":
            key = "backup.client.link" if b.client.link else "backup.target.device"
            raise ValueError(f"{key}: {name!r} is a {spec.kind} device; the {pulls[0]} "
                             f"client reads over NBD: name a device of kind remote "
                             f"(rtt, link-bandwidth, queue-depth, connections, window)")

    # --- options that cannot act are errors (config/rules.py) -------------------
    @model_validator(mode="after")
    def _inert_options(self):
        """Reject a non-default ``workload.*``, ``backup.*`` or ``guest.*`` key that
        cannot act in this config (the rules each section declares, read by
        config/rules.py: ``WorkloadSpec.ACTS``, ``BackupSpec.ACTS``,
        ``GuestSpec.ACTS``; a device's keys are checked by kind as it is read,
        ``DeviceSpec.ACTS``), and a pull client's ``backup.order`` that its
        ``backup.client.hints`` cannot serve."""
        from ..policies import hint_error
        from ..schemes import option_error
        b = self.backup
        for name in ("workload", "backup", "guest"):
            section = getattr(self, name)
            changed = _changed_keys(section.dump(), type(section).model_construct().dump())
            changed.discard("scheme")
            bad = inert(type(section).ACTS, section, changed)
            if bad:
                raise ValueError(f"{name}.{bad[0]}: {bad[1]}")
        schemes = [b.scheme] if isinstance(b.scheme, str) else b.scheme
        for s in schemes:
            if option_error(s, "client.hints") is None:  # an external NBD client
                err = hint_error(b.order, b.client.hints)
                if err:
                    raise ValueError(err)
        if b.client.block_status and b.client.hints == "none":
            raise ValueError("backup.client.block-status: true needs block status from NBD; "
                             "backup.client.hints: none says the client has none")
        return self
    # --- end options ---

    @model_validator(mode="after")
    def _faults(self):
        """Faults only where the scheme has what they act on (faults.py)."""
        from ..faults import FLEECING_FAULT_SCHEMES, TARGET_FAULT_SCHEMES
        f = self.faults
        schemes = [self.backup.scheme] if isinstance(self.backup.scheme, str) \
            else self.backup.scheme
        if f.target:
            for s in schemes:
                if s not in TARGET_FAULT_SCHEMES:
                    raise ValueError(f"faults.target: the {s!r} scheme does not write the "
                                     f"target device itself; target faults are for "
                                     f"{', '.join(TARGET_FAULT_SCHEMES)}")
            tname = self.backup.target.device
            tdev = self.devices.get(tname)
            for i, w in enumerate(f.target):
                if w.kind != "slow" and tdev is not None and tdev.kind != "remote":
                    raise ValueError(f"faults.target[{i}].kind: {w.kind} is the NBD "
                                     f"connection's; devices.{tname} is kind {tdev.kind!r}, "
                                     f"not remote (kind slow fits any device)")
            wins = sorted((w.at, w.at + w.duration, i) for i, w in enumerate(f.target))
            for (a0, a1, i), (b0, _b1, j) in zip(wins, wins[1:]):
                if b0 < a1 or (b0 == a1 == a0):
                    raise ValueError(f"faults.target[{j}].at: overlaps faults.target[{i}] "
                                     f"({a0:g}s-{a1:g}s)")
        fd = f.fleecing_device
        if fd.free is not None or fd.thin is not None:
            for s in schemes:
                if s not in FLEECING_FAULT_SCHEMES:
                    raise ValueError(f"faults.fleecing-device: the {s!r} scheme has no "
                                     f"fleecing image with on-cbw-error; only "
                                     f"{', '.join(FLEECING_FAULT_SCHEMES)}")
            if fd.free is not None and fd.free < self.cbw_cluster_size:
                raise ValueError(f"faults.fleecing-device.free: {fd.free} bytes is smaller "
                                 f"than one cluster ({self.cbw_cluster_size} bytes)")
            if fd.thin is not None and fd.thin.extent < self.cbw_cluster_size:
                raise ValueError(f"faults.fleecing-device.thin.extent: smaller than one "
                                 f"cluster ({self.cbw_cluster_size} bytes)")
        return self

    @model_validator(mode="after")
    def _qemu_version(self):
        """A feature the configured QEMU lacks (fleecesim/qemu/versions.py)."""
        from ..qemu.versions import config_errors
        err = config_errors(self)
        if err:
            raise ValueError(err)
        return self

    @model_validator(mode="after")
    def _copy_range(self):
        """x-perf.use-copy-range: where the kernel can offload (both images on
        one local device, i.e. one filesystem), an offloaded copy has no QEMU
        target write, so nothing a target fault or cbw-priority could act on.
        Elsewhere block-copy falls back to read + write (jobs/block_copy.py)
        and both apply as without the option."""
        b = self.backup
        if not b.x_perf.use_copy_range:
            return self
        src, dst = self.disk.device, b.target.device
        if src != dst or self.devices[src].kind == "remote":
            return self  # falls back to read + write: a plain backup
        if self.faults.target:
            raise ValueError("faults.target: not with backup.x-perf.use-copy-range when "
                             "the kernel offloads the copy (disk and target on one device: "
                             "an offloaded copy has no target write to fail)")
        if b.cbw_priority:
            raise ValueError("backup.x-perf.use-copy-range: not with backup.cbw-priority "
                             "when the kernel offloads the copy (disk and target on one "
                             "device: an offloaded copy has no target write to queue)")
        return self

    @model_validator(mode="after")
    def _chunk_and_speed(self):
        """A max-chunk below the job's cluster size is refused, as QEMU does
        (block/backup.c backup_job_create: "Required max-chunk (%li) is less
        than backup cluster size (%li)"): a copy task moves whole clusters.
        A speed limit under which a full backup cannot end within
        run.max-time is a config problem, not an unfinished backup: the job
        charges every task's bytes, write-zeroes included (jobs/backup.py
        BackupJob._claim_next), and each claim waits until the bytes claimed
        before it would have passed at ``speed``, so the last claim of a
        full backup comes at least (disk - max-chunk) / speed after the start."""
        from ..units import fmt_size
        b = self.backup
        if b.max_chunk and b.max_chunk < self.cluster_size:
            raise ValueError(f"backup.max-chunk: {fmt_size(b.max_chunk)} is less than the "
                             f"backup cluster size {fmt_size(self.cluster_size)} (QEMU refuses "
                             f"it: a copy task moves whole clusters); expected 0 (QEMU's "
                             f"default, 1MiB) or at least {fmt_size(self.cluster_size)}")
        if b.speed and b.sync == "full" and not self.vms:
            need = max(0, self.disk.size - self.max_chunk) / b.speed
            if need > self.run.max_time:
                raise ValueError(
                    f"backup.speed: at {fmt_size(b.speed)}/s a full backup of the "
                    f"{fmt_size(self.disk.size)} disk needs at least {_long_time(need)} after "
                    f"its start, more than run.max-time {_long_time(self.run.max_time)} (the "
                    f"backup's own limit, counted from its start); expected backup.speed "
                    f">= {fmt_size(max(1, self.disk.size - self.max_chunk) / self.run.max_time)}/s "
                    f"or a longer "
                    f"run.max-time")
        return self

    # --- pbs target (nodes/pbs.py) ---
    @model_validator(mode="after")
    def _pbs_target(self):
        """A pbs target: PVE's backup job (``backup``, or ``fleecing-push`` with
        PVE 8.2's fleecing) writing through the backup-dump node, to a remote
        device (its link, and the datastore as its backend)."""
        b = self.backup
        t = b.target
        if t.kind != "pbs":
            changed = sorted(_changed_keys(t.pbs.dump(), PbsSpec().dump()))
            if changed:
                raise ValueError(f"backup.target.pbs.{changed[0]}: only for a pbs target "
                                 f"(backup.target.kind: pbs)")
            return self
        if t.cluster_size not in (TargetSpec().cluster_size, t.pbs.chunk_size):
            raise ValueError(f"backup.target.cluster-size: a pbs target's cluster size is "
                             f"its pbs.chunk-size ({t.pbs.chunk_size} bytes); leave it unset")
        p, dp = t.pbs, PbsSpec()
        for key, on, why in (("aes_speed", p.encrypt, "encrypt: true"),
                             ("compress_speed", p.compress, "compress: true"),
                             ("compression_ratio", p.compress, "compress: true")):
            if not on and getattr(p, key) != getattr(dp, key):
                raise ValueError(f"backup.target.pbs.{key.replace('_', '-')}: only acts "
                                 f"with {why}")
        from ..schemes import option_error
        schemes = [b.scheme] if isinstance(b.scheme, str) else b.scheme
        for s in schemes:  # a scheme with no target (none) leaves it out (variants)
            if s not in PBS_SCHEMES and option_error(s, "target") is None:
                raise ValueError(f"backup.target.kind: pbs is written by QEMU's backup job "
                                 f"(PVE's pve-backup.c); scheme {s!r} is not one of "
                                 f"{', '.join(PBS_SCHEMES)}")
        dev = self.devices.get(b.target.device)
        if dev is not None and dev.kind != "remote":
            raise ValueError(f"backup.target.device: a pbs target needs a device of kind "
                             f"remote (rtt, link-bandwidth, window; the datastore as its "
                             f"backend), not {dev.kind!r}")
        if self.faults.target:
            raise ValueError("faults.target: not modelled for a pbs target (its connection "
                             "is HTTP/2, not the NBD client the faults act on)")
        if b.x_perf.use_copy_range:
            raise ValueError("backup.x-perf.use-copy-range: PVE's backup-dump node has no "
                             "copy_range (pve-qemu's backup patch: not exposed)")
        if b.cbw_priority:
            raise ValueError("backup.cbw-priority: a pbs target serves chunks in the dump "
                             "callback's order (one mutex), there is no queue to reorder")
        return self
    # --- end pbs target ---

    @property
    def cluster_size(self) -> int:
        """The backup job's copy granularity, as QEMU's block-copy computes it from
        its target (block/block-copy.c: block_copy_calculate_cluster_size):
        max(64 KiB, target cluster size, min-cluster-size). Under ``backup`` and
        ``legacy-backup`` the CBW filter shares the job's block-copy, so it is
        the CBW granularity too."""
        t = self.backup.target
        # a pbs target: the backup-dump node reports the chunk size as its cluster size
        tcs = t.pbs.chunk_size if t.kind == "pbs" else t.cluster_size
        return max(64 * 1024, tcs, self.backup.min_cluster_size)

    @property
    def cbw_cluster_size(self) -> int:
        """The CBW filter's copy granularity. Fleecing schemes copy into a local
        fleecing (scratch) image, whose own block-copy takes its granularity
        from that image: max(64 KiB, backup.cache.cluster-size, min-cluster-size).
        Other schemes copy straight to the job's target (the job's granularity)."""
        schemes = [self.backup.scheme] if isinstance(self.backup.scheme, str) \
            else self.backup.scheme
        if any(s in FLEECING_IMAGE_SCHEMES for s in schemes):
            return max(64 * 1024, self.backup.cache.cluster_size, self.backup.min_cluster_size)
        return self.cluster_size

    @property
    def unit(self) -> int:
        """The model's bookkeeping granularity (per-cluster arrays): the finer of
        the two copy granularities (both powers of two, so each is a multiple)."""
        unit = min(self.cluster_size, self.cbw_cluster_size)
        if self.backup.sync == "incremental":
            unit = min(unit, self.backup.incremental.granularity)
        return unit

    @property
    def max_chunk(self) -> int:
        """Bytes one copy task moves: 1 MiB by default (BLOCK_COPY_MAX_BUFFER;
        block/block-copy.c: block_copy_chunk_size, also COPY_RANGE_SMALL's
        until a copy offload succeeded), never less than a cluster."""
        return max(self.backup.max_chunk or 2**20, self.cluster_size)

    @property
    def copy_range_chunk(self) -> int:
        """Bytes one copy task moves once a copy offload succeeded
        (COPY_RANGE_FULL: BLOCK_COPY_MAX_COPY_RANGE, 16 MiB), unless max-chunk
        says otherwise; never less than a cluster."""
        return max(self.backup.max_chunk or 16 * 2**20, self.cluster_size)

    @property
    def scheme(self) -> str:
        s = self.backup.scheme
        if not isinstance(s, str):
            raise ValueError("config lists several schemes; use variants()")
        return s


def _long_time(s: float) -> str:
    """'2,684,355s (~31 days)' past a day, else units.fmt_time ('255s', '1,910s')."""
    from ..units import fmt_time
    if s >= 86400:
        return f"{s:,.0f}s (~{s / 86400:.3g} days)"
    return fmt_time(s)
