"""Typed, validated scenario configs (YAML -> pydantic models).

One place for defaults. Keys use QEMU's spelling with hyphens (``max-workers``,
``min-cluster-size``); unknown keys are errors; sizes, rates and times accept
units ("64KiB", "100MiB/s", "2ms"). ``load_config`` returns the scenario and its
variants (one per scheme or per ``variants`` entry), each fully resolved.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError,
                      field_validator, model_validator)

from .devices.presets import PRESETS
from .devices.remote import NBD_REPLY_HEADER, NBD_REQUEST_HEADER
from .errors import ConfigError
from .units import parse_rate, parse_size, parse_time

Size = Annotated[int, BeforeValidator(parse_size)]
Rate = Annotated[float, BeforeValidator(parse_rate)]
Seconds = Annotated[float, BeforeValidator(parse_time)]


def _resume_after(v):
    from .error_policy import parse_resume_after
    return parse_resume_after(v)


# ``resume-after``: seconds after a stop until management resumes, or None (never)
ResumeAfter = Annotated[float | None, BeforeValidator(_resume_after)]
# BlockdevOnError (qapi/block-core.json); what each does: fleecesim/error_policy.py
OnError = Literal["report", "ignore", "stop", "enospc"]


def _pow2_block(v: int) -> int:
    if v < 512 or v & (v - 1):
        raise ValueError(f"expected a power of two >= 512, got {v}")
    return v


# a cluster or extent size: a power of two of at least one 512-byte sector
BlockSize = Annotated[int, BeforeValidator(parse_size), AfterValidator(_pow2_block)]


class Model(BaseModel):
    # allow_inf_nan=False: ".inf" IOPS would never end, ".nan" latencies poison
    # every sum; a number in a config is finite.
    model_config = ConfigDict(extra="forbid", populate_by_name=True,
                              alias_generator=lambda s: s.replace("_", "-"),
                              validate_assignment=True, allow_inf_nan=False)

    def dump(self) -> dict:
        return self.model_dump(by_alias=True, mode="json")


DEFAULT_TCP_WINDOW = 3 * 2**20  # see DeviceSpec.window


def _is_pow2(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


# ---------------------------------------------------------------- devices
class SeekSpec(Model):
    """A seek curve from a datasheet's three numbers (devices/hdd.py, SeekCurve)."""
    track_to_track: Seconds
    average: Seconds
    full_stroke: Seconds

    @model_validator(mode="after")
    def _curve(self):
        from .devices.hdd import SeekCurve
        SeekCurve(self.average, self.track_to_track, self.full_stroke)  # ValueError names the key
        return self


def _seek_value(v):
    """A seek: seconds (every seek costs that) or {track-to-track, average, full-stroke}."""
    if isinstance(v, (SeekSpec, type(None))):
        return v
    if isinstance(v, dict):
        try:
            return SeekSpec.model_validate(v)
        except ValidationError as e:
            err = e.errors()[0]
            msg = err["msg"].removeprefix("Value error, ")
            loc = ".".join(str(p) for p in err["loc"])
            raise ValueError(f"{loc}: {msg}" if loc else msg) from None
    t = parse_time(v)
    if t < 0:
        raise ValueError("times must be >= 0")
    return t


Seek = Annotated[float | SeekSpec, BeforeValidator(_seek_value)]


# shorthand key -> the per-direction keys it sets (unless those are given)
DIRECTIONAL = {"latency": ("read-latency", "write-latency"),
               "bandwidth": ("read-bandwidth", "write-bandwidth"),
               "iops": ("read-iops", "write-iops"),
               "seek": ("seek", "write-seek")}


def _split_directions(v: dict) -> dict:
    """``latency``/``bandwidth``/``iops``/``seek`` set both directions; a
    per-direction key given beside them wins for its direction."""
    v = dict(v)
    for short, (r, w) in DIRECTIONAL.items():
        if short in v and short != r:
            v.setdefault(r, v[short])
        if r in v:
            v.setdefault(w, v[r])
        if short != r:
            v.pop(short, None)
    return v


class DeviceSpec(Model):
    kind: Literal["ram", "ssd", "hdd", "remote"]
    read_latency: Seconds = 0.0
    write_latency: Seconds = 0.0
    read_bandwidth: Rate | None = None
    write_bandwidth: Rate | None = None
    read_iops: float = Field(0.0, ge=0)   # controller cap (0 = none)
    write_iops: float = Field(0.0, ge=0)
    queue_depth: int = Field(1, ge=1)
    sharing: Literal["fifo", "ps"] | None = None  # default: ps for ssd/ram, fifo otherwise
    # hdd
    seek: Seek = 0.0                      # average seek, or a curve; also the write curve
    write_seek: Seek | None = None
    rpm: float = Field(0.0, ge=0)
    capacity: Size | None = None          # the drive's size: seek distance / full stroke
    scheduler: Literal["fifo", "ncq"] | None = None  # hdd: ncq reorders within queue-depth
    read_ahead: bool = False
    read_ahead_segments: int = Field(1, ge=1)
    read_ahead_segment_size: Size = Field(0, ge=0)
    write_cache: Size = Field(0, ge=0)    # bytes of write-back cache, 0 = off (WCE cleared)
    interface_bandwidth: Rate | None = None  # cache hits and cached writes
    # zoned recording: the media rate at the last LBA (``bandwidth`` is the
    # outer zone's, at LBA 0); writes scale by the same ratio. devices/hdd.py.
    inner_bandwidth: Rate | None = None
    # remote
    rtt: Seconds = 0.0
    link_bandwidth: Rate | None = None
    backend: "DeviceSpec | None" = None
    # --- issue 11: NBD transport (kind remote; see devices/remote.py) ---
    # NBD connections, each with queue-depth request slots (QEMU's own NBD
    # client opens one; nbdkit/libnbd clients and Xen Orchestra open several).
    connections: int | None = Field(None, ge=1)
    # Bytes in flight per connection (TCP window). Default: Linux's autotuning
    # ceiling, tcp_rmem max 6 MiB (Documentation/networking/ip-sysctl.rst:
    # "between 131072 and 6MB, depending on RAM size") of which
    # tcp_adv_win_scale = 1 (the default) advertises half: 3 MiB.
    window: Size | None = None
    # Protocol bytes per request, per direction (devices/remote.py): the NBD
    # request header goes client -> server (28), the simple reply header
    # server -> client (16).
    request_overhead: Size | None = None
    reply_overhead: Size | None = None
    # The NBD client's options (qapi/block-core.json, BlockdevOptionsNbd, whole
    # seconds, default 0): how long requests wait for a reconnect after the
    # connection is lost, and how long opening keeps trying (faults.py).
    reconnect_delay: Seconds | None = None
    open_timeout: Seconds | None = None
    # Copy offload (backup.x-perf.use-copy-range): the filesystem on this
    # device clones extents instead of copying (btrfs, XFS with reflink=1:
    # fs/read_write.c vfs_copy_file_range -> ->remap_file_range). ssd/hdd only.
    reflink: bool = False

    @model_validator(mode="before")
    @classmethod
    def _apply_preset(cls, v: Any):
        v = expand_preset(v)
        return _split_directions(v) if isinstance(v, dict) else v

    @model_validator(mode="after")
    def _check(self):
        if self.reflink and self.kind in ("remote", "ram"):
            raise ValueError(f"reflink: only a filesystem on a local disk (kind ssd or hdd: "
                             f"btrfs, XFS with reflink=1) clones extents, not kind {self.kind!r}")
        for key in ("read_latency", "write_latency", "rtt"):
            if getattr(self, key) < 0:
                raise ValueError(f"{key.replace('_', '-')}: times must be >= 0")
        if self.kind == "remote":
            if self.connections is None:
                self.connections = 1
            if self.window is None:
                self.window = DEFAULT_TCP_WINDOW
            if self.request_overhead is None:
                self.request_overhead = NBD_REQUEST_HEADER
            if self.reply_overhead is None:
                self.reply_overhead = NBD_REPLY_HEADER
            for key in ("reconnect_delay", "open_timeout"):
                v = getattr(self, key)
                if v is None:
                    setattr(self, key, 0.0)
                elif v < 0 or v != int(v) or v >= 2**32:
                    raise ValueError(f"{key.replace('_', '-')}: QEMU takes whole seconds "
                                     f"(uint32) like '30s', got {v:g}")
            if self.window <= 0:
                raise ValueError("window: expected a size > 0 like '3MiB'")
            if self.backend is None:
                raise ValueError("a remote device needs 'backend' (a device or {preset: ...})")
            if self.link_bandwidth is None or self.link_bandwidth <= 0:
                raise ValueError("link-bandwidth: expected a rate > 0 like '112MiB/s'")
            return self
        for key in ("connections", "window", "request_overhead", "reply_overhead",
                    "reconnect_delay", "open_timeout"):
            if getattr(self, key) is not None:
                raise ValueError(f"{key.replace('_', '-')}: only for a device of "
                                 f"kind remote (an NBD target), not {self.kind!r}")
        for key in ("read_bandwidth", "write_bandwidth"):
            bw = getattr(self, key)
            if bw is None or bw <= 0:
                raise ValueError(f"{key.replace('_', '-')}: expected a rate > 0 like '500MiB/s'")
        if self.kind == "hdd" and self.capacity is None and (
                isinstance(self.seek, SeekSpec) or isinstance(self.write_seek, SeekSpec)):
            raise ValueError("capacity: a seek curve needs the drive's capacity")
        if self.inner_bandwidth is not None:
            ib = self.inner_bandwidth
            if self.kind != "hdd":
                raise ValueError(f"inner-bandwidth: only for a device of kind hdd (zoned "
                                 f"recording), not {self.kind!r}")
            if not 0 < ib <= self.read_bandwidth:
                raise ValueError(f"inner-bandwidth: expected a rate > 0 and <= the outer "
                                 f"read-bandwidth ({self.read_bandwidth / 1e6:g}MB/s), "
                                 f"got {ib / 1e6:g}MB/s (a preset's outer and inner "
                                 f"rates change together: set both)")
            if ib < self.read_bandwidth and not self.capacity:
                raise ValueError("capacity: zoned recording (inner-bandwidth) needs the "
                                 "drive's capacity")
        if self.read_ahead and self.read_ahead_segment_size <= 0:
            raise ValueError("read-ahead-segment-size: read-ahead needs a segment size > 0")
        return self

    # the shorthand, read direction (what most callers mean by "the" latency/bandwidth)
    @property
    def latency(self) -> float:
        return self.read_latency

    @property
    def bandwidth(self) -> float | None:
        return self.read_bandwidth


def expand_preset(v: Any):
    """Merge ``{preset: name, ...overrides}`` over the preset's values. A
    shorthand override (``bandwidth``) replaces both of the preset's
    per-direction values."""
    if isinstance(v, str):
        v = {"preset": v}
    if isinstance(v, dict) and "preset" in v:
        name = v["preset"]
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; expected one of {', '.join(PRESETS)}")
        merged = copy.deepcopy(PRESETS[name])
        over = {k: val for k, val in v.items() if k != "preset"}
        for short, pair in DIRECTIONAL.items():
            if short in over:
                for k in pair:
                    if k not in over and k != short:
                        merged.pop(k, None)
        merged.update(over)
        return merged
    return v


# ---------------------------------------------------------------- disk
class DiskSpec(Model):
    size: Size = 64 * 2**30
    cluster_size: None = Field(None, exclude=True)  # removed key, kept to say so
    allocated: float = Field(1.0, ge=0.0, le=1.0)
    allocation_granularity: BlockSize = 4 * 2**20  # zero/allocated extents at t0 come in this size
    device: str = "local"

    @field_validator("size")
    @classmethod
    def _size(cls, v):
        if v <= 0 or v % 512:
            raise ValueError(f"expected a positive multiple of 512 bytes, got {v}")
        return v

    @field_validator("cluster_size", mode="before")
    @classmethod
    def _removed(cls, v):
        if v is None:
            return v
        raise ValueError("removed (it was read nowhere): the copy granularity comes from "
                         "the copy's target, as in QEMU — set backup.target.cluster-size, "
                         "backup.cache.cluster-size or backup.min-cluster-size")


# ---------------------------------------------------------------- workload
class Mix(Model):
    read: float = Field(0.5, ge=0)
    write: float = Field(0.5, ge=0)
    discard: float = Field(0.0, ge=0)

    @model_validator(mode="after")
    def _nonzero(self):
        if self.read + self.write + self.discard <= 0:
            raise ValueError("read + write + discard must be > 0")
        return self


class WorkloadSpec(Model):
    iops: float | None = Field(None, ge=0)  # 0: an idle guest
    iodepth: int | None = Field(None, ge=1)
    # Trace replay (fleecesim/workloads/traces): open loop on the trace's
    # timestamps, or closed loop in trace order when iodepth is given.
    trace: str | None = None
    format: Literal["auto", "fio", "blkparse", "msr", "disksim", "vscsi", "alibaba"] = "auto"
    device: str | int | None = None     # which traced device/volume/host to replay
    time_scale: float = Field(1.0, gt=0)  # times are multiplied: 0.5 = twice as fast
    start: Seconds = 0.0
    duration: Seconds | None = None
    map: Literal["error", "wrap", "scale"] = "error"
    loop: bool = False
    events: Literal["C", "Q", "D"] = "C"
    mix: Mix = Mix()
    size: Size | dict[str, float] = 4096
    pattern: Literal["uniform", "sequential", "zipf"] = "uniform"
    streams: int = Field(1, ge=1)
    zipf_s: float = Field(1.1, gt=0)
    align: Size = 4096
    span: float = Field(1.0, gt=0, le=1.0)
    # Open loop: at most this many requests outstanding (later arrivals wait
    # FIFO; latency counts from arrival). None: unlimited. E.g. 16 = QEMU's NBD
    # client limit, the most a qemu-io guest over NBD has in flight.
    max_inflight: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _mode(self):
        if self.max_inflight is not None and self.iodepth is not None:
            raise ValueError("max-inflight: only for open loop (iodepth already bounds "
                             "a closed loop)")
        if self.trace is not None:
            if self.iops is not None:
                raise ValueError("iops: not used with a trace (replay follows its timestamps)")
            if not Path(self.trace).is_file():
                raise ValueError(f"trace: no such file {self.trace!r}")
            return self
        if (self.iops is None) == (self.iodepth is None):
            raise ValueError("give exactly one of 'iops' (open loop) or 'iodepth' (closed loop)")
        if not _is_pow2(self.align):
            raise ValueError("align: expected a power of two")
        for s, w in self.size_weights():
            if s <= 0 or w < 0:
                raise ValueError(f"size: expected sizes > 0 and weights >= 0, got {s}: {w}")
        return self

    def size_weights(self) -> list[tuple[int, float]]:
        if isinstance(self.size, int):
            return [(self.size, 1.0)]
        return [(parse_size(k), float(w)) for k, w in self.size.items()]


# ---------------------------------------------------------------- backup
def known_schemes() -> list[str]:
    """Scheme names come from the scheme registry (fleecesim/schemes/)."""
    from .schemes import SCHEMES
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


# --- tiered fleecing cache (issue 3) -------------------------------------
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
    # issue 3: RAM tier, flush watermarks, seed benefits 1 (cor) and 2 (serve reads)
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
    # issue 10 item 6: what the client knows per cluster (policies.CLIENT_HINTS):
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
    # --- issue 3: read-once, lazy discards, copy order (fleecing-push) ---
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

    @field_validator("order")
    @classmethod
    def _order(cls, v):
        from .policies import ORDERING
        if v not in ORDERING:
            raise ValueError(f"unknown copy-ordering policy {v!r}; expected one of "
                             f"{', '.join(sorted(ORDERING))}")
        return v
    # --- end issue 3 ---

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


class QemuSpec(Model):
    """The QEMU the user runs (fleecesim/qemu/versions.py: what changes between
    versions). Default: the newest behaviour modelled."""
    version: str = "10.1"

    @field_validator("version", mode="before")
    @classmethod
    def _version(cls, v):
        from .qemu.versions import fmt, parse
        return fmt(parse(v))  # 9.2 (a YAML float), "7.2.22" -> "7.2"

    @property
    def v(self) -> tuple[int, int]:
        from .qemu.versions import parse
        return parse(self.version)


class GuestSpec(Model):
    """The guest drive's error policy (``-drive werror=,rerror=``; QEMU's
    defaults: werror=enospc, rerror=report, block/block-backend.c: blk_new).
    A policy that stops the VM holds it until management sends ``cont``,
    ``resume-after`` seconds after each stop (never: it stays paused).
    fleecesim/error_policy.py."""
    werror: OnError = "enospc"
    rerror: OnError = "report"
    resume_after: ResumeAfter = None


class RunSpec(Model):
    seed: int = Field(1, ge=0)  # numpy's SeedSequence takes non-negative integers
    warmup: Seconds = 2.0
    tail: Seconds = 1.0
    max_time: Seconds = 3600.0
    # Per-cluster state (fleecesim/sparse.py): numpy arrays (dense), or pages
    # allocated on first touch (sparse); auto: sparse beyond 2^24 clusters. Both
    # give the same results; sparse makes multi-TiB disks fit.
    state: Literal["auto", "dense", "sparse"] = "auto"
    # A long run of zero clusters as one bulk of write-zeroes standing for all
    # the job's workers (jobs/bulk.py) instead of one task per chunk.
    bulk_zeroes: bool = True

    @field_validator("warmup", "tail", "max_time")
    @classmethod
    def _nonneg(cls, v):
        if v < 0:
            raise ValueError("expected a time >= 0")
        return v

    @field_validator("max_time")
    @classmethod
    def _positive(cls, v):
        # the backup's own time limit (after warm-up): 0 would stop every run
        # before the job copies anything
        if v <= 0:
            raise ValueError("expected a time > 0 like '1h' (the backup's time limit)")
        return v


class HostSpec(Model):
    """The host's software cost per I/O request (devices/host.py), paid by every
    request a QEMU node sends to a device: guest requests once, a block-copy
    chunk once for its read and once for its write.

    request-cost: CPU per request in the disk's AioContext (one thread, so a
    FIFO server): 8 us = 1 / 123k IOPS, QEMU virtio-blk on a host RAM disk,
    fio 4k randread iodepth 128, one vCPU/queue (A. Zhadchenko, "[RFC PATCH
    0/1] block: add vhost-blk backend", qemu-devel, 2022-07-25: virtio 123k
    IOPS vs host 95.8k on the SSD where QEMU virtio reached 57.5k).
    memcpy-bandwidth: the copy of each request's bytes between page cache (or
    socket) and QEMU's buffer; 8 GiB/s as the ``ram`` preset (one thread's
    memcpy class). 0: no copy (cache.direct=on)."""
    request_cost: Seconds = 8e-6
    memcpy_bandwidth: Rate = 8 * 2**30

    @field_validator("request_cost", "memcpy_bandwidth")
    @classmethod
    def _nonneg(cls, v):
        if v < 0:
            raise ValueError("expected a value >= 0")
        return v


# --- faults (issue 13 item 3; the model is fleecesim/faults.py) -----------
class TargetFault(Model):
    """One fault of the backup target's device, ``at`` seconds after the backup
    starts: ``outage`` (the NBD server unreachable for ``duration``; what the
    client does then is its ``reconnect-delay``, a key of the remote target
    device; at 0 the server is down as the target is opened: ``open-timeout``),
    ``slow`` (``factor`` x slower for ``duration``) or ``reset`` (the
    connection drops, the server stays up). An outage is ``silent`` when no
    RST reaches the client (network or host gone): it notices only when TCP
    gives up, ``detect`` seconds after the first unanswered request (default
    Linux's tcp_retries2 = 15: 924.6 s; giving ``detect`` implies silent)."""
    kind: Literal["outage", "slow", "reset"]
    at: Seconds
    duration: Seconds = 0.0
    factor: float | None = None
    silent: bool = False
    detect: Seconds | None = None

    @model_validator(mode="before")
    @classmethod
    def _removed_requests(cls, v):
        if isinstance(v, dict) and "requests" in v:
            raise ValueError("requests: removed; whether requests wait or fail is the NBD "
                             "client's reconnect-delay on the target device "
                             "(devices.<target>.reconnect-delay: 30s waits up to 30 s, "
                             "0 (the default) fails), with open-timeout for an outage at 0 "
                             "and silent/detect on the outage for a loss without RST")
        return v

    @model_validator(mode="after")
    def _check(self):
        if self.at < 0:
            raise ValueError("at: expected a time >= 0 (seconds after the backup starts)")
        if self.kind == "reset":
            if self.duration:
                raise ValueError("duration: a reset is an instant (use kind: outage)")
        elif self.duration <= 0:
            raise ValueError(f"duration: kind {self.kind} needs a duration > 0")
        if self.kind != "outage":
            for key in ("silent", "detect"):
                if getattr(self, key) not in (False, None):
                    raise ValueError(f"{key}: only for kind outage, not {self.kind}")
        if self.detect is not None:
            if self.detect <= 0:
                raise ValueError("detect: expected a time > 0 (TCP's time to give up)")
            if not self.silent:
                self.silent = True
        if self.kind == "slow":
            if self.factor is None or self.factor <= 1:
                raise ValueError("factor: a slow target needs a factor > 1 (4 = 4x slower)")
        elif self.factor is not None:
            raise ValueError(f"factor: only for kind slow, not {self.kind}")
        return self


def _time_range(v):
    """``extend-time``: one time (fixed) or [low, high] (uniform, seeded)."""
    if isinstance(v, (list, tuple)):
        if len(v) != 2:
            raise ValueError("expected a time or [low, high]")
        lo, hi = parse_time(v[0]), parse_time(v[1])
    else:
        lo = hi = parse_time(v)
    if lo < 0 or hi < lo:
        raise ValueError(f"expected 0 <= low <= high, got [{lo}, {hi}]")
    return (lo, hi)


class ThinSpec(Model):
    """The fleecing image on a thin volume that grows by ``extent``. Defaults:
    oVirt's 1 GiB chunk (vdsm volume_utilization_chunk_mb = 1024) and its
    measured 2.2-6.2 s per extension."""
    extent: Size = 2**30
    allocated: Size | None = None  # at the start; default one extent
    extend_time: Annotated[tuple[float, float], BeforeValidator(_time_range)] = (2.2, 6.2)
    beyond: Literal["wait", "fail"] = "wait"  # a write beyond the allocation

    @model_validator(mode="after")
    def _check(self):
        if self.extent <= 0:
            raise ValueError("extent: expected a size > 0 like '1GiB'")
        if self.allocated is not None and self.allocated < 0:
            raise ValueError("allocated: expected a size >= 0")
        return self


class FleecingDeviceFaults(Model):
    free: Size | None = None    # bytes free on the fleecing image's device (ENOSPC beyond)
    thin: ThinSpec | None = None


class FaultsSpec(Model):
    target: list[TargetFault] = []
    fleecing_device: FleecingDeviceFaults = FleecingDeviceFaults()
# --- end faults ---


def _folder_name(v: str, nested: bool = False) -> str:
    """A name that becomes a results folder: no separator, not '.' or '..'
    (which would write beside or above results/), no control character (a
    newline in a folder name breaks every listing), not starting with '-'
    (it would read as an option to the shell tools that list it). ``nested``
    (a variant's name): '/' between such names makes sub-folders
    ("ssd-nbd/w4"), still inside the config's results folder."""
    parts = v.split("/") if nested and v else [v]
    for p in parts:
        if (not p or p in (".", "..") or "/" in p or "\\" in p or p.startswith("-")
                or any(ord(c) < 32 or ord(c) == 127 for c in p)):
            what = ("plain names joined by '/'" if nested else "a plain name")
            raise ValueError(f"expected {what} (it names the results folder), got {v!r}")
    return v


class Variant(Model):
    name: str
    set: dict[str, Any] = {}

    @field_validator("name")
    @classmethod
    def _name(cls, v):
        return _folder_name(v, nested=True)


# --- issue 13 item 4: many VMs, one target ---------------------------------
VM_SECTIONS = ("disk", "workload", "backup")
# Where a workload's requests come from: giving one of these (a VM's workload,
# --set, a variant's set) drops the keys it cannot stand with from the config
# it overrides. A trace replays open loop (no iops) or closed loop (iodepth);
# a synthetic workload has either iops or iodepth.
SOURCE_REPLACES = {"trace": {"iops"}, "iops": {"trace", "iodepth"}, "iodepth": {"iops"}}


def _drop_replaced(workload: dict, given) -> dict:
    """``workload`` without the source keys that keys ``given`` replace."""
    gone = set().union(*(SOURCE_REPLACES.get(k, set()) for k in given)) - set(given)
    return {k: v for k, v in workload.items() if k not in gone}


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
    # fleet.vzdump: the node whose vzdump backs this VM up (None: the one node),
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


DEFAULT_DEVICES = {"local": {"preset": "nvme"}, "target": {"preset": "nbd-1gbe"},
                   "ram": {"preset": "ram"}}


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
    vms: list[VMSpec] = []          # issue 13 item 4: several VMs on shared devices
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
        """Each VM's node under fleet.vzdump (in the order of ``vms``)."""
        return [vm.node or "node" for vm in self.vms]

    def vm_configs(self) -> list[tuple[str, float, "Config"]]:
        """(name, start delay after warm-up, resolved Config) per VM: the shared
        sections with the VM's keys over them, devices/run/host shared, and a
        seed of the VM's own (run.seed and the VM's name), so adding a VM does
        not change another's requests."""
        from .rng import vm_seed
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
        """issue 3: the RAM tier's device and size."""
        ram = self.backup.cache.ram
        if ram.size:
            if ram.device not in self.devices:
                raise ValueError(f"backup.cache.ram.device: no device named {ram.device!r}; "
                                 f"defined: {', '.join(self.devices) or 'none'}")
            if ram.size < self.cbw_cluster_size:
                raise ValueError(f"backup.cache.ram.size: {ram.size} bytes is smaller than "
                                 f"one cluster ({self.cbw_cluster_size} bytes)")
        elif self.backup.cache.flush.high is not None:
            raise ValueError("backup.cache.flush.high: needs a RAM tier (backup.cache.ram.size)")
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
        from .schemes import option_error
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

    # --- issue 10 items 6, 7: options a scheme does not act on are errors --------
    @model_validator(mode="after")
    def _options_per_scheme(self):
        """Reject a non-default ``backup.*`` key that a listed scheme does not act
        on (the table: each scheme's ``register(options=...)`` in fleecesim/schemes/),
        and a pull client's ``backup.order`` that its ``backup.client.hints`` cannot serve."""
        from .policies import hint_error
        from .schemes import option_error
        b = self.backup
        changed = _changed_keys(b.dump(), BackupSpec().dump())
        changed.discard("scheme")
        schemes = [b.scheme] if isinstance(b.scheme, str) else b.scheme
        for key in sorted(changed):
            # in a scheme list a key is in use when any listed scheme acts on it;
            # each scheme's own run leaves out the keys it does not (variants())
            errs = [option_error(s, key) for s in schemes]
            if all(errs):
                if len(schemes) == 1:
                    raise ValueError(errs[0])
                raise ValueError(f"backup.{key}: not used by any listed scheme "
                                 f"({', '.join(schemes)}): {errs[0].split(': ', 2)[-1]}")
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
    def _resume_needs_a_stop(self):
        """resume-after acts only where a policy can stop (error_policy.py)."""
        g, b = self.guest, self.backup
        if g.resume_after is not None and not {g.werror, g.rerror} & {"stop", "enospc"}:
            raise ValueError("guest.resume-after: only acts when guest.werror or guest.rerror "
                             "is stop or enospc (they stop the VM); both are "
                             f"{g.werror}/{g.rerror}")
        if b.resume_after is not None and \
                not {b.on_source_error, b.on_target_error} & {"stop", "enospc"}:
            raise ValueError("backup.resume-after: only acts when backup.on-source-error or "
                             "backup.on-target-error is stop or enospc (they pause the job)")
        return self

    @model_validator(mode="after")
    def _faults(self):
        """issue 13: faults only where the scheme has what they act on."""
        from .faults import FLEECING_FAULT_SCHEMES, TARGET_FAULT_SCHEMES
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
        from .qemu.versions import config_errors
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
        from .schemes import option_error
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


def _changed_keys(d: dict, default: dict, prefix: str = "") -> set[str]:
    """Dotted keys whose value differs from the default (issue 10 item 7)."""
    out = set()
    for k, v in d.items():
        dv = default.get(k)
        if isinstance(v, dict) and isinstance(dv, dict):
            out |= _changed_keys(v, dv, f"{prefix}{k}.")
        elif v != dv:
            out.add(prefix + k)
    return out


# ---------------------------------------------------------------- loading
def _fmt_loc(loc) -> str:
    parts = []
    for p in loc:
        if isinstance(p, int):
            parts.append(f"[{p}]")
        elif p in ("function-after", "function-before") or "[" in str(p):
            continue
        else:
            parts.append(("." if parts else "") + str(p))
    return "".join(parts)


def _format_error(e: ValidationError) -> str:
    err = e.errors()[0]
    loc = _fmt_loc([p for p in err["loc"] if not str(p).startswith(("str", "int", "float",
                                                                      "dict", "list"))])
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        msg = "unknown key"
    extra = f" (and {len(e.errors()) - 1} more)" if len(e.errors()) > 1 else ""
    return f"{loc}: {msg}{extra}" if loc else f"{msg}{extra}"


def parse_value(text: str) -> Any:
    """A --set value: YAML scalar/list/dict ("4", "true", "[a, b]", "64KiB")."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def set_dotted(d: dict, key: str, value: Any) -> None:
    parts = key.split(".")
    cur = d
    for p in parts[:-1]:
        nxt = cur.get(p)
        if nxt is None:
            nxt = cur[p] = {}
        if not isinstance(nxt, dict):
            raise ConfigError(f"{key}: {p!r} is not a section")
        cur = nxt
    key_ = parts[-1]
    if key_ in DIRECTIONAL and len(parts) > 1:  # e.g. devices.x.bandwidth: both directions
        for k in DIRECTIONAL[key_]:
            if k != key_:
                cur.pop(k, None)
    cur[key_] = value


def validate(raw: dict) -> Config:
    try:
        return Config.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(_format_error(e)) from None


class _UniqueKeyLoader(yaml.SafeLoader):
    """safe_load that refuses a key given twice in one mapping (YAML's "last
    one wins" would silently drop the first)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for k, _v in node.value:
            key = self.construct_object(k, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", k.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


def read_yaml(path: str | Path) -> dict:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{path}: no such config file")
    try:
        raw = yaml.load(p.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text (byte {e.start}); save the config as "
                          f"UTF-8") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f":{mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}{where}: not valid YAML ({getattr(e, 'problem', e)})") from None
    if raw is None:  # an empty file is a mistake, not "run the defaults"
        raise ConfigError(f"{path}: the config is empty (write at least one section, e.g. "
                          f"'backup: {{scheme: fleecing-push}}')")
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level")
    return raw


def resolve(raw: dict, overrides: list[str] | dict | None = None) -> Config:
    """Validate a raw config dict after applying ``key=value`` overrides."""
    raw = copy.deepcopy(raw)
    items = list(overrides.items() if isinstance(overrides, dict) else (
        _split_override(o) for o in (overrides or [])))
    if isinstance(raw.get("workload"), dict):  # a new request source replaces the old
        raw["workload"] = _drop_replaced(raw["workload"], [
            k.removeprefix("workload.") for k, _v in items if k.startswith("workload.")])
    for k, v in items:
        parts = k.split(".")
        if len(parts) == 3 and parts[0] == "devices" and parts[2] == "preset" \
                and isinstance(raw.get("devices"), dict):
            # swapping a device's preset replaces the device (its expanded values
            # from the base config would otherwise override the new preset)
            raw["devices"][parts[1]] = {"preset": v}
            continue
        set_dotted(raw, k, v)
    return validate(raw)


def _split_override(o: str) -> tuple[str, Any]:
    k, eq, v = o.partition("=")
    k = k.strip()
    if not eq or not k or any(not p for p in k.split(".")):
        raise ConfigError(f"--set {o}: expected dotted.key=value, e.g. backup.max-workers=8")
    return k, parse_value(v)


def variants(cfg: Config) -> list[tuple[str, Config]]:
    """One fully resolved config per variant: explicit ``variants``, else one per
    scheme. With both a scheme list and variants, a variant that sets no scheme
    runs under each listed scheme (named ``variant/scheme``)."""
    base = cfg.dump()
    base.pop("variants", None)
    out: list[tuple[str, Config]] = []
    if cfg.variants:
        names = set()
        for v in cfg.variants:
            if v.name in names:
                raise ConfigError(f"variants: the name {v.name!r} is used twice")
            names.add(v.name)
            try:
                c = resolve(base, v.set)
            except ConfigError as e:
                raise ConfigError(f"variants: {v.name!r}: {e}") from None
            if isinstance(c.backup.scheme, str):
                out.append((v.name, c))
                continue
            for sch in c.backup.scheme:
                sets = {k: x for k, x in v.set.items() if _acts(sch, k)}
                out.append((f"{v.name}/{sch}",
                            resolve(_for_scheme(base, sch), {**sets, "backup.scheme": sch})))
        return out
    if isinstance(cfg.backup.scheme, str):
        return [(cfg.backup.scheme, resolve(base, {"backup.scheme": cfg.backup.scheme}))]
    for s in cfg.backup.scheme:
        out.append((s, resolve(_for_scheme(base, s), {"backup.scheme": s})))
    return out


def _acts(scheme: str, key: str) -> bool:
    """Whether a dotted override acts under ``scheme`` (only ``backup.*`` keys
    can fail to: a scheme list accepts a key any listed scheme acts on)."""
    from .schemes import option_error
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


def _relative_to(base: Path, value):
    """A trace path as written in a config file: relative to that file."""
    if not isinstance(value, str):
        return value
    t = Path(value).expanduser()
    return value if t.is_absolute() else str((base / t).resolve())


def load_config(path: str | Path, overrides: list[str] | None = None) -> Config:
    raw = read_yaml(path)
    # A trace path in a config file is relative to that file: the workload's,
    # each VM's (vms[i].workload.trace) and each variant's (set: workload.trace).
    base = Path(path).parent

    def listed(key):  # anything but a list is left to the validator's one line
        v = raw.get(key)
        return v if isinstance(v, list) else []
    for wl in [raw.get("workload")] + [vm.get("workload") for vm in listed("vms")
                                       if isinstance(vm, dict)]:
        if isinstance(wl, dict) and "trace" in wl:
            wl["trace"] = _relative_to(base, wl["trace"])
    for v in listed("variants"):
        st = v.get("set") if isinstance(v, dict) else None
        if isinstance(st, dict) and "workload.trace" in st:
            st["workload.trace"] = _relative_to(base, st["workload.trace"])
    return resolve(raw, overrides)
