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
from pydantic import (BaseModel, BeforeValidator, ConfigDict, Field, ValidationError,
                      field_validator, model_validator)

from .devices.presets import PRESETS
from .errors import ConfigError
from .units import parse_rate, parse_size, parse_time

Size = Annotated[int, BeforeValidator(parse_size)]
Rate = Annotated[float, BeforeValidator(parse_rate)]
Seconds = Annotated[float, BeforeValidator(parse_time)]


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True,
                              alias_generator=lambda s: s.replace("_", "-"),
                              validate_assignment=True)

    def dump(self) -> dict:
        return self.model_dump(by_alias=True, mode="json")


def _is_pow2(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


# ---------------------------------------------------------------- devices
class DeviceSpec(Model):
    kind: Literal["ram", "ssd", "hdd", "remote"]
    latency: Seconds = 0.0
    bandwidth: Rate | None = None
    queue_depth: int = Field(1, ge=1)
    seek: Seconds = 0.0
    rpm: float = Field(0.0, ge=0)
    rtt: Seconds = 0.0
    link_bandwidth: Rate | None = None
    backend: "DeviceSpec | None" = None

    @model_validator(mode="before")
    @classmethod
    def _apply_preset(cls, v: Any):
        return expand_preset(v)

    @model_validator(mode="after")
    def _check(self):
        if self.latency < 0 or self.seek < 0 or self.rtt < 0:
            raise ValueError("times must be >= 0")
        if self.kind == "remote":
            if self.backend is None:
                raise ValueError("a remote device needs 'backend' (a device or {preset: ...})")
            if self.link_bandwidth is None or self.link_bandwidth <= 0:
                raise ValueError("link-bandwidth: expected a rate > 0 like '112MiB/s'")
        elif self.bandwidth is None or self.bandwidth <= 0:
            raise ValueError("bandwidth: expected a rate > 0 like '500MiB/s'")
        return self


def expand_preset(v: Any):
    """Merge ``{preset: name, ...overrides}`` over the preset's values."""
    if isinstance(v, str):
        v = {"preset": v}
    if isinstance(v, dict) and "preset" in v:
        name = v["preset"]
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; expected one of {', '.join(PRESETS)}")
        merged = copy.deepcopy(PRESETS[name])
        merged.update({k: val for k, val in v.items() if k != "preset"})
        return merged
    return v


# ---------------------------------------------------------------- disk
class DiskSpec(Model):
    size: Size = 64 * 2**30
    cluster_size: Size = 64 * 2**10
    allocated: float = Field(1.0, ge=0.0, le=1.0)
    allocation_granularity: Size = 4 * 2**20  # zero/allocated extents at t0 come in this size
    device: str = "local"

    @field_validator("size")
    @classmethod
    def _size(cls, v):
        if v <= 0 or v % 512:
            raise ValueError(f"expected a positive multiple of 512 bytes, got {v}")
        return v

    @field_validator("cluster_size", "allocation_granularity")
    @classmethod
    def _cs(cls, v):
        if not _is_pow2(v) or v < 512:
            raise ValueError(f"expected a power of two >= 512, got {v}")
        return v


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
    mix: Mix = Mix()
    size: Size | dict[str, float] = 4096
    pattern: Literal["uniform", "sequential", "zipf"] = "uniform"
    streams: int = Field(1, ge=1)
    zipf_s: float = Field(1.1, gt=0)
    align: Size = 4096
    span: float = Field(1.0, gt=0, le=1.0)

    @model_validator(mode="after")
    def _mode(self):
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


class TargetSpec(Model):
    device: str = "target"
    cluster_size: Size = 64 * 2**10

    @field_validator("cluster_size")
    @classmethod
    def _cs(cls, v):
        if not _is_pow2(v):
            raise ValueError(f"expected a power of two, got {v}")
        return v


class CacheSpec(Model):
    device: str = "local"
    size: Size | None = None  # None: as large as the disk


class BackupSpec(Model):
    scheme: str | list[str] = "fleecing-push"
    target: TargetSpec = TargetSpec()
    cache: CacheSpec = CacheSpec()
    max_workers: int = Field(64, ge=1)
    max_chunk: Size = 0  # 0: QEMU's default (1 MiB, at least one cluster)
    min_cluster_size: Size = 0
    speed: Rate = 0.0  # 0: unlimited
    on_cbw_error: Literal["break-guest-write", "break-snapshot"] = "break-guest-write"
    cbw_timeout: Seconds = 0.0  # 0: no timeout

    @field_validator("scheme")
    @classmethod
    def _scheme(cls, v):
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


class RunSpec(Model):
    seed: int = 1
    warmup: Seconds = 2.0
    tail: Seconds = 1.0
    max_time: Seconds = 3600.0

    @field_validator("warmup", "tail", "max_time")
    @classmethod
    def _nonneg(cls, v):
        if v < 0:
            raise ValueError("expected a time >= 0")
        return v


class Variant(Model):
    name: str
    set: dict[str, Any] = {}


DEFAULT_DEVICES = {"local": {"preset": "nvme"}, "target": {"preset": "nbd-1gbe"},
                   "ram": {"preset": "ram"}}


class Config(Model):
    name: str = "scenario"
    disk: DiskSpec = DiskSpec()
    devices: dict[str, DeviceSpec] = {k: DeviceSpec.model_validate(v)
                                      for k, v in DEFAULT_DEVICES.items()}
    workload: WorkloadSpec = WorkloadSpec(iops=2000)
    backup: BackupSpec = BackupSpec()
    run: RunSpec = RunSpec()
    variants: list[Variant] = []

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
        cs = self.cluster_size
        cache = self.backup.cache.size
        if cache is not None and cache < cs:
            raise ValueError(f"backup.cache.size: {cache} bytes is smaller than one "
                             f"cluster ({cs} bytes)")
        if self.disk.size < cs:
            raise ValueError(f"disk.size: smaller than one cluster ({cs} bytes)")
        return self

    @property
    def cluster_size(self) -> int:
        """QEMU's block-copy granularity: max(64 KiB, target cluster, min-cluster-size)."""
        return max(64 * 1024, self.backup.target.cluster_size, self.backup.min_cluster_size)

    @property
    def max_chunk(self) -> int:
        """Bytes one copy task moves: 1 MiB by default, never less than a cluster."""
        chunk = self.backup.max_chunk or 2**20
        return max(chunk, self.cluster_size)

    @property
    def scheme(self) -> str:
        s = self.backup.scheme
        if not isinstance(s, str):
            raise ValueError("config lists several schemes; use variants()")
        return s


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
    cur[parts[-1]] = value


def validate(raw: dict) -> Config:
    try:
        return Config.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(_format_error(e)) from None


def read_yaml(path: str | Path) -> dict:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{path}: no such config file")
    try:
        raw = yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f":{mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}{where}: not valid YAML ({getattr(e, 'problem', e)})") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level")
    return raw


def resolve(raw: dict, overrides: list[str] | dict | None = None) -> Config:
    """Validate a raw config dict after applying ``key=value`` overrides."""
    raw = copy.deepcopy(raw)
    items = overrides.items() if isinstance(overrides, dict) else (
        _split_override(o) for o in (overrides or []))
    for k, v in items:
        set_dotted(raw, k, v)
    return validate(raw)


def _split_override(o: str) -> tuple[str, Any]:
    if "=" not in o:
        raise ConfigError(f"--set {o}: expected dotted.key=value")
    k, v = o.split("=", 1)
    return k.strip(), parse_value(v)


def variants(cfg: Config) -> list[tuple[str, Config]]:
    """One fully resolved config per variant: explicit ``variants``, else one per scheme."""
    base = cfg.dump()
    base.pop("variants", None)
    out: list[tuple[str, Config]] = []
    if cfg.variants:
        for v in cfg.variants:
            c = resolve(base, v.set)
            if not isinstance(c.backup.scheme, str):
                raise ConfigError(f"variants[{v.name}]: set one backup.scheme per variant")
            out.append((v.name, c))
        return out
    schemes = [cfg.backup.scheme] if isinstance(cfg.backup.scheme, str) else cfg.backup.scheme
    for s in schemes:
        out.append((s, resolve(base, {"backup.scheme": s})))
    return out


def load_config(path: str | Path, overrides: list[str] | None = None) -> Config:
    return resolve(read_yaml(path), overrides)
