"""``backup:``: the scheme and the job's, cache's, client's and overlay's options."""
from __future__ import annotations

import copy
from typing import ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from .core import _changed_keys, BlockSize, Model, OnError, Rate, ResumeAfter, Seconds, Size, _is_pow2
from .rules import Rule, needs


def known_schemes() -> list[str]:
    """Scheme names come from the scheme registry (fleecesim/schemes/)."""
    from ..schemes import SCHEMES
    return sorted(SCHEMES)


# Schemes whose job copies straight to the target, so sync=none means something
# (the job idles for backup.window; CBW copies what the guest overwrites).
SYNC_NONE_SCHEMES = ("legacy-backup", "backup")
PBS_SCHEMES = ("backup", "fleecing-push")  # schemes whose job can write a pbs target
# Schemes whose CBW filter copies into a local fleecing (scratch) image, so
# backup.cache.cluster-size sets the CBW granularity.
FLEECING_IMAGE_SCHEMES = ("fleecing-push", "fleecing-pull", "fleecing-pull-2018",
                          "fleecing-push-2018")


# --- pbs target: a Proxmox Backup Server (nodes/pbs.py, devices/pbs.py) ----
class PbsSpec(Model):
    """``backup.target.pbs``: what PVE's backup does per chunk on the way to a
    PBS datastore. CPU figures: ``proxmox-backup-client benchmark``'s
    reference machine, an AMD Ryzen 7 2700X (devices/pbs.py RYZEN_2700X)."""
    # PROXMOX_BACKUP_DEFAULT_CHUNK_SIZE; the chunk store accepts 64 KiB-4 MiB
    # (pbs-datastore chunk_store.rs verify_chunk_size); PVE always uses 4 MiB
    chunk_size: BlockSize = 4 * 2**20
    # the data's zstd level-1 ratio (uncompressed / compressed, >= 1): an input
    # per workload, 1 = incompressible
    compression_ratio: float = Field(1.0, ge=1.0)
    # share of the data chunks reaching the client whose digest the previous
    # snapshot's index has (not uploaded); 0 = a first backup
    known_fraction: float = Field(0.0, ge=0.0, le=1.0)
    # share of the uploaded chunks the datastore already stores (another group's)
    stored_fraction: float = Field(0.0, ge=0.0, le=1.0)
    compress: bool = True   # pve-backup.c qmp_backup: has_compress ? compress : true
    encrypt: bool = False   # a key file configured for the storage
    sha256_speed: Rate = 2022e6
    compress_speed: Rate = 752e6
    aes_speed: Rate = 3645e6
    tls_speed: Rate = 1235e6
    verify_speed: Rate = 758e6
    server_threads: int = Field(16, ge=1)  # the proxy's tokio workers: a 2700X's 16 threads
    in_flight: int = Field(100, ge=1)      # upload_queue.rs mpsc::channel(100)
    h2_window: Size = 32 * 2**20           # the server's HTTP/2 connection window
    sync_level: Literal["none", "filesystem", "file"] = "filesystem"  # datastore sync-level
    create_writes: int = Field(1, ge=0)    # 4 KiB metadata writes per new chunk file (NOT sourced)

    @field_validator("chunk_size")
    @classmethod
    def _chunk(cls, v):
        if not 64 * 2**10 <= v <= 4 * 2**20:
            raise ValueError(f"expected a power of two from 64KiB to 4MiB (the chunk store's "
                             f"sizes), got {v}")
        return v

    @field_validator("sha256_speed", "compress_speed", "aes_speed", "tls_speed",
                     "verify_speed", "h2_window")
    @classmethod
    def _positive(cls, v):
        if v <= 0:
            raise ValueError("expected a value > 0")
        return v


class TargetSpec(Model):
    device: str = "target"
    cluster_size: BlockSize = 64 * 2**10
    # nbd: an image over NBD (BackupTarget); pbs: a Proxmox Backup Server
    # (PBSTarget), whose chunk size is the job's cluster size (PVE's
    # backup-dump node reports it as its cluster size)
    kind: Literal["nbd", "pbs"] = "nbd"
    pbs: PbsSpec = PbsSpec()
# --- end pbs target ----------------------------------------------------------


# --- tiered fleecing cache: a RAM tier in front of the disk tier -----------
class RamTierSpec(Model):
    """The RAM tier of the fleecing cache: CBW data goes here while it has room."""
    size: Size = 0          # 0: no RAM tier (single disk tier, as before)
    device: str = "ram"     # a name in ``devices:`` (the default set has a ``ram`` preset)


class FlushSpec(Model):
    """Background flush RAM -> disk tier: starts above ``high`` x RAM size and
    stops at ``low`` x RAM size. Off unless ``high`` is given."""
    high: float | None = Field(None, gt=0.0, le=1.0)
    low: float = Field(0.5, ge=0.0, lt=1.0)

    @model_validator(mode="after")
    def _order(self):
        if self.high is not None and self.low >= self.high:
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")
        return self


class CacheSpec(Model):
    device: str = "local"     # the disk tier's device
    size: Size | None = None  # the disk tier's size; None: as large as the disk
    # The fleecing (scratch) image's qcow2 cluster size: the CBW filter's copy
    # granularity is max(64 KiB, this, min-cluster-size), as block-copy computes
    # it from its own target (block/block-copy.c: block_copy_calculate_cluster_size).
    cluster_size: BlockSize = 64 * 2**10
    # the RAM tier, its flush watermarks, copy-on-read into it and guest reads served from it
    ram: RamTierSpec = RamTierSpec()
    flush: FlushSpec = FlushSpec()
    serve_reads_from_ram: bool = True  # guest reads of unchanged RAM-cached clusters
    cor: bool = False  # copy-on-read into the RAM tier with BDRV_REQ_UNNECESSARY
# --- end tiered fleecing cache -------------------------------------------


class IncrementalSpec(Model):
    """sync=incremental: the dirty bitmap a previous backup left (seeded, made at t0)."""
    dirty: float = Field(0.1, ge=0.0, le=1.0)  # fraction of clusters dirty
    extent: Size = 2**20  # mean length of a dirty extent (geometric in clusters)
    # The dirty bitmap's own granularity (block-dirty-bitmap-add; QEMU's default
    # is the image's cluster size, 64 KiB for qcow2). Block-copy widens it to
    # its cluster size; finer than 64 KiB would change nothing that is copied.
    granularity: Size = 64 * 2**10

    @field_validator("extent")
    @classmethod
    def _ext(cls, v):
        if v <= 0:
            raise ValueError(f"expected a size > 0, got {v}")
        return v

    @field_validator("granularity")
    @classmethod
    def _gran(cls, v):
        if not _is_pow2(v) or v < 64 * 2**10:
            raise ValueError(f"expected a power of two >= 64KiB, got {v}")
        return v


class ClientSpec(Model):
    """Pull schemes: the external NBD client that reads the snapshot export."""
    # the NBD transport the client reads over: a remote device (its rtt,
    # link-bandwidth, queue-depth, connections, window, overheads; not its
    # backend: the server here is the VM's snapshot export). Default: the target's.
    link: str | None = None
    storage: str | None = None  # the client's own storage: default the target's backend
    discard: bool = False       # read-once: TRIM each range after reading it
    # what the client knows per cluster (policies.CLIENT_HINTS):
    # none | block-status (NBD base:allocation) | cache-tier (hypothetical, the seed's)
    hints: Literal["none", "block-status", "cache-tier"] = "block-status"
    # write zero ranges as zeroes without reading them; None: when hints give zeroes
    block_status: bool | None = None


class OverlaySpec(Model):
    """overlay-cor / overlay-commit: the fast local overlay image."""
    device: str | None = None   # default: backup.cache.device
    # overlay-cor's live commit (QEMU mirror's copy-mode): background copies
    # what the guest dirties and may never converge under heavy writes;
    # write-blocking also writes guest data to the backing synchronously.
    copy_mode: Literal["background", "write-blocking"] = "write-blocking"


class XPerfSpec(Model):
    """blockdev-backup's ``x-perf`` (qapi/block-core.json: BackupPerf, QEMU >=
    6.0). max-workers and max-chunk are kept at backup level, as before."""
    # block/block-copy.c: block_copy_set_copy_opts starts at COPY_RANGE_SMALL
    # (1 MiB chunks); block_copy_do_copy calls bdrv_co_copy_range and, on
    # success, moves to COPY_RANGE_FULL (chunks up to BLOCK_COPY_MAX_COPY_RANGE
    # = 16 MiB), on failure (NBD: ENOTSUP; two filesystems: EXDEV) falls back
    # to read + write for good. The kernel's copy: devices/host.py.
    use_copy_range: bool = False


class BackupSpec(Model):
    scheme: str | list[str] = "fleecing-push"
    target: TargetSpec = TargetSpec()
    cache: CacheSpec = CacheSpec()
    max_workers: int = Field(64, ge=1)
    max_chunk: Size = 0  # 0: QEMU's default (1 MiB, at least one cluster)
    min_cluster_size: Size = 0
    speed: Rate = 0.0  # 0: unlimited
    # QEMU's values are break-guest-write and break-snapshot; "wait" (a full
    # fleecing cache makes CBW wait for room) is this model's own.
    on_cbw_error: Literal["break-guest-write", "break-snapshot", "wait"] = "break-guest-write"
    # 0: no timeout. QEMU's cbw-timeout is whole seconds (uint32); fractions
    # of a second are a model extension.
    cbw_timeout: Seconds = 0.0
    sync: Literal["full", "incremental", "none"] = "full"
    incremental: IncrementalSpec = IncrementalSpec()
    window: Seconds = Field(10.0, gt=0)  # sync=none: the job idles this long, then stops
    client: ClientSpec = ClientSpec()
    overlay: OverlaySpec = OverlaySpec()
    # --- read-once, lazy discards, copy order (fleecing-push) ---
    discard_source: bool = False  # QEMU's discard-source: free copied clusters (read-once)
    lazy_discard: bool = False    # defer guest discards of needed clusters to the end
    order: str = "ascending"      # copy-ordering policy (fleecesim/policies/)
    # CBW copies overtake the job's queued target writes (the seed's postscript);
    # off: one FIFO, as QEMU's NBD client (see nodes/target.py)
    cbw_priority: bool = False
    x_perf: XPerfSpec = XPerfSpec()
    # blockdev-backup's job error policy (default report: blockdev.c
    # do_backup_common); stop pauses the job until ``block-job-resume``,
    # sent ``resume-after`` seconds after each stop (never: the job stays
    # paused). fleecesim/error_policy.py.
    on_source_error: OnError = "report"
    on_target_error: OnError = "report"
    resume_after: ResumeAfter = None

    # keys that act only under some schemes, sync modes or cache tiers (config/rules.py)
    ACTS: ClassVar = (
        Rule(("*",), lambda b, key: _scheme_why_not(b, key)),
        needs(("incremental",), lambda b: b.sync == "incremental",
              lambda b: f"only for sync incremental (the dirty bitmap a previous backup "
                        f"left), not sync {b.sync}"),
        needs(("window",), lambda b: b.sync == "none",
              lambda b: f"only for sync none (the job idles this long, then stops), "
                        f"not sync {b.sync}"),
        needs(("cache.cor", "cache.serve-reads-from-ram", "cache.flush"),
              lambda b: b.cache.ram.size > 0, "needs a RAM tier (backup.cache.ram.size)"),
        needs(("cache.ram.device",), lambda b: b.cache.ram.size > 0,
              "with backup.cache.ram.size 0 there is no RAM tier to put on a device"),
        needs(("cache.flush.low",), lambda b: b.cache.flush.high is not None,
              "the flush starts above backup.cache.flush.high and stops at low: without "
              "high there is no flush"),
        needs(("resume-after",),
              lambda b: bool({b.on_source_error, b.on_target_error} & {"stop", "enospc"}),
              "only acts when backup.on-source-error or backup.on-target-error is stop or "
              "enospc (they pause the job)"),
    )

    @field_validator("order")
    @classmethod
    def _order(cls, v):
        from ..policies import ORDERING
        if v not in ORDERING:
            raise ValueError(f"unknown copy-ordering policy {v!r}; expected one of "
                             f"{', '.join(sorted(ORDERING))}")
        return v
    # --- end read-once, lazy discards, copy order ---

    @field_validator("scheme")
    @classmethod
    def _scheme(cls, v):
        if not isinstance(v, str) and not v:
            raise ValueError("expected a scheme or a non-empty list of schemes")
        for s in [v] if isinstance(v, str) else v:
            if s not in known_schemes():
                raise ValueError(f"unknown scheme {s!r}; expected one of "
                                 f"{', '.join(known_schemes())}")
        return v

    @field_validator("min_cluster_size", "max_chunk")
    @classmethod
    def _pow2_or_zero(cls, v):
        if v and not _is_pow2(v):
            raise ValueError(f"expected 0 or a power of two, got {v}")
        return v

    @field_validator("speed", "cbw_timeout")
    @classmethod
    def _nonneg(cls, v):
        if v < 0:
            raise ValueError("expected a value >= 0")
        return v


def _scheme_why_not(b: BackupSpec, key: str) -> str | None:
    """Whether a listed scheme acts on ``backup.<key>`` (each scheme's
    ``register(options=...)`` in fleecesim/schemes/): in a scheme list a key
    is in use when any listed scheme acts on it (each scheme's own run then
    leaves out the keys it does not: config/load.py, variants)."""
    from ..schemes import option_error
    schemes = [b.scheme] if isinstance(b.scheme, str) else b.scheme
    errs = [option_error(s, key) for s in schemes]
    if not all(errs):
        return None
    if len(schemes) == 1:
        return errs[0].split(": ", 1)[1]
    return (f"not used by any listed scheme ({', '.join(schemes)}): "
            f"{errs[0].split(': ', 2)[-1]}")


def _acts(scheme: str, key: str) -> bool:
    """Whether a dotted override acts under ``scheme`` (only ``backup.*`` keys
    can fail to: a scheme list accepts a key any listed scheme acts on)."""
    from ..schemes import option_error
    return not key.startswith("backup.") or key == "backup.scheme" \
        or option_error(scheme, key.removeprefix("backup.")) is None


def _for_scheme(base: dict, scheme: str) -> dict:
    """``base`` (a dumped config) without the ``backup.*`` values ``scheme``
    does not act on, so that one scheme of a list runs with what it uses."""
    out = copy.deepcopy(base)
    b = out.get("backup", {})
    for key in _changed_keys(b, BackupSpec().dump()):
        if key != "scheme" and not _acts(scheme, "backup." + key):
            parts = key.split(".")
            d = b
            for p in parts[:-1]:
                d = d.get(p, {})
            d.pop(parts[-1], None)
    return out
