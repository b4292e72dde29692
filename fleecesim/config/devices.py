"""``devices:``: each device's spec, its presets and per-direction shorthands."""
from __future__ import annotations

import copy
from types import SimpleNamespace
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BeforeValidator, Field, ValidationError, model_validator

from ..devices.presets import PRESETS
from ..devices.remote import NBD_REPLY_HEADER, NBD_REQUEST_HEADER
from ..units import parse_time
from .core import Model, Rate, Seconds, Size
from .rules import by_value, inert

DEFAULT_TCP_WINDOW = 3 * 2**20  # see DeviceSpec.window


# ---------------------------------------------------------------- devices
class SeekSpec(Model):
    """A seek curve from a datasheet's three numbers (devices/hdd.py, SeekCurve)."""
    track_to_track: Seconds
    average: Seconds
    full_stroke: Seconds

    @model_validator(mode="after")
    def _curve(self):
        from ..devices.hdd import SeekCurve
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


# what every local device (ram, ssd, hdd) acts on, and the controller's IOPS
# cap and bandwidth sharing (ram and ssd: devices/base.py Device; an HDD
# serves one request at a time, in order: devices/hdd.py)
_LOCAL = ("latency", "read-latency", "write-latency", "bandwidth", "read-bandwidth",
          "write-bandwidth", "queue-depth")
_CONTROLLER = ("iops", "read-iops", "write-iops", "sharing")
_KINDS = ("ram", "ssd", "hdd", "remote")
_NBD = "only for a device of kind remote (an NBD target), not {kind!r}"
_KIND_WHY = {
    **{k: _NBD for k in ("connections", "window", "request-overhead", "reply-overhead",
                         "reconnect-delay", "open-timeout")},
    "inner-bandwidth": "only for a device of kind hdd (zoned recording), not {kind!r}",
    "reflink": ("only a filesystem on a local disk (kind ssd or hdd: btrfs, XFS with "
                "reflink=1) clones extents, not kind {kind!r}"),
    **{(k, "remote"): ("a remote device's latency is its rtt plus its backend's "
                       "(give latency under backend)")
       for k in ("latency", "read-latency", "write-latency")},
    **{(k, "remote"): ("a remote device's rate is its link-bandwidth and its backend's "
                       "(give bandwidth under backend)")
       for k in ("bandwidth", "read-bandwidth", "write-bandwidth")},
    **{(k, "remote"): ("a remote device has no IOPS cap of its own: its backend serves its "
                       "requests (give iops under backend)")
       for k in ("iops", "read-iops", "write-iops")},
    **{(k, "remote"): ("a remote device serves its requests through its link and backend, "
                       "not a sharing policy of its own")
       for k in ("sharing",)},
}


def _given(v: Any) -> dict | None:
    """The keys the user wrote for a device (not its preset's, not its kind),
    each at a value other than the field's default."""
    if not isinstance(v, dict):
        return None
    fields = DeviceSpec.model_fields
    v = {str(k).replace("_", "-"): val for k, val in v.items()}
    out = {}
    for k, val in v.items():
        if k in ("kind", "preset"):
            continue
        f = fields.get(DIRECTIONAL.get(k, (k,))[0].replace("-", "_"))
        if f is not None and val == f.default:
            continue
        read = _READ_OF.get(k)  # a write-side key defaults to its read side's value
        if read is not None and val == v.get(read, fields[read.replace("-", "_")].default):
            continue
        out[k] = val
    return out


_READ_OF = {w: r for r, w in DIRECTIONAL.values() if r != w}


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
    # --- NBD transport (kind remote; see devices/remote.py) ---
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

    # The keys each kind acts on (what its ``from_spec`` reads: devices/base.py
    # Device.from_spec for ram and ssd, devices/hdd.py HDD.from_spec,
    # devices/remote.py build_remote); any other key the user gives is an error.
    ACTS: ClassVar = (by_value("kind", {
        "ram": _LOCAL + _CONTROLLER,
        "ssd": _LOCAL + _CONTROLLER + ("reflink",),
        "hdd": _LOCAL + ("seek", "write-seek", "rpm", "capacity", "scheduler", "read-ahead",
                         "read-ahead-segments", "read-ahead-segment-size", "write-cache",
                         "interface-bandwidth", "inner-bandwidth", "reflink"),
        "remote": ("rtt", "link-bandwidth", "backend", "queue-depth", "connections", "window",
                   "request-overhead", "reply-overhead", "reconnect-delay", "open-timeout"),
    }, lambda d, key, kinds: (_KIND_WHY.get((key, d.kind)) or _KIND_WHY.get(key)
                              or "only for a device of kind {kinds}, not {kind!r}").format(
        kind=d.kind, kinds=" or ".join(kinds))),)

    @model_validator(mode="before")
    @classmethod
    def _apply_preset(cls, v: Any):
        given = _given(v)
        v = expand_preset(v)
        if given and isinstance(v, dict) and v.get("kind") in _KINDS:  # the user's keys
            bad = inert(cls.ACTS, SimpleNamespace(kind=v.get("kind")), given)
            if bad:
                raise ValueError(f"{bad[0]}: {bad[1]}")
        return _split_directions(v) if isinstance(v, dict) else v

    @model_validator(mode="after")
    def _check(self):
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
        for key in ("read_bandwidth", "write_bandwidth"):
            bw = getattr(self, key)
            if bw is None or bw <= 0:
                raise ValueError(f"{key.replace('_', '-')}: expected a rate > 0 like '500MiB/s'")
        if self.kind == "hdd" and self.capacity is None and (
                isinstance(self.seek, SeekSpec) or isinstance(self.write_seek, SeekSpec)):
            raise ValueError("capacity: a seek curve needs the drive's capacity")
        if self.inner_bandwidth is not None:
            ib = self.inner_bandwidth
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



DEFAULT_DEVICES = {"local": {"preset": "nvme"}, "target": {"preset": "nbd-1gbe"},
                   "ram": {"preset": "ram"}}

