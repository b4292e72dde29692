"""Sweep files: a base config, axes over dotted keys, replications.

``plan(spec)`` turns a sweep into the full, ordered list of runs (points x
variants x replications) before anything runs. Each run carries its resolved
config, its seed and a stable id (sha256 of canonical JSON of the config, which
holds the seed), so a resumed or re-run sweep recognises its own results.

Seeds come from the base ``run.seed`` and the replication index only, never
from the axis values: every scheme and policy at replication r sees the same
guest requests (common random numbers, paired comparisons).
"""
from __future__ import annotations

import copy
import hashlib
import itertools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from pydantic import (BaseModel, ConfigDict, Field, ValidationError, field_validator,
                      model_validator)

from ..config import read_yaml, set_dotted, validate, variants
from ..errors import ConfigError


NAME_RE = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*")


class SweepSpec(BaseModel):
    """A sweep file, validated. Axes multiply: grid x each zip group x points."""
    model_config = ConfigDict(extra="forbid")

    name: str
    description: str = ""
    base: str | dict            # a config file (relative to the sweep file) or inline
    set: dict[str, Any] = {}    # fixed overrides on the base
    grid: dict[str, list] = {}  # Cartesian product, last key varies fastest
    zip: dict[str, list] | list[dict[str, list]] = []  # lock-step groups
    points: list[dict[str, Any]] = []  # an explicit list of override sets
    replications: int = Field(1, ge=1)

    @field_validator("name")
    @classmethod
    def _plain_name(cls, v: str) -> str:
        # the name becomes results/<name>/: a name, never a path out of results/
        if not NAME_RE.fullmatch(v):
            raise ValueError(f"expected a plain name (letters, digits, '.', '_', '-'; "
                             f"not starting with '.'), not a path; got {v!r}")
        return v

    @model_validator(mode="after")
    def _axes(self):
        if not self.grid and not self.zip_groups() and not self.points:
            raise ValueError("grid, zip and points are all empty: a sweep needs at least "
                             "one axis (for replications of the base alone, write "
                             "'points: [{}]'; for one run, use `fleecesim run`)")
        seen: dict[str, str] = {}
        for where, keys in [("grid", self.grid)] + [
                (f"zip[{i}]", g) for i, g in enumerate(self.zip_groups())]:
            for k, vals in keys.items():
                if not vals:
                    raise ValueError(f"{where}.{k}: expected a non-empty list of values")
                if k in seen:
                    raise ValueError(f"{where}.{k}: key is already an axis in {seen[k]}")
                seen[k] = where
        for i, g in enumerate(self.zip_groups()):
            lens = {k: len(v) for k, v in g.items()}
            if len(set(lens.values())) > 1:
                raise ValueError(f"zip[{i}]: lists must have equal lengths, got {lens}")
        for i, p in enumerate(self.points):
            for k in p:
                if k in seen:
                    raise ValueError(f"points[{i}].{k}: key is already an axis in {seen[k]}")
        for k in self.axis_keys():
            if k.replace("_", "-") == "run.seed":
                raise ValueError("run.seed cannot be an axis: use 'replications' "
                                 "(seeds come from run.seed and the replication index)")
        return self

    def zip_groups(self) -> list[dict[str, list]]:
        return [self.zip] if isinstance(self.zip, dict) and self.zip else (
            [] if isinstance(self.zip, dict) else list(self.zip))

    def axis_keys(self) -> list[str]:
        keys = list(self.grid)
        for g in self.zip_groups():
            keys += list(g)
        for p in self.points:
            keys += [k for k in p if k not in keys]
        return keys

    def combos(self) -> list[dict[str, Any]]:
        """Every point's axis overrides, in a fixed order."""
        grid = [dict(zip(self.grid, vals)) for vals in itertools.product(*self.grid.values())]
        parts = [grid]
        for g in self.zip_groups():
            n = len(next(iter(g.values())))
            parts.append([{k: v[i] for k, v in g.items()} for i in range(n)])
        if self.points:
            parts.append([dict(p) for p in self.points])
        out = []
        for combo in itertools.product(*parts):
            d: dict[str, Any] = {}
            for c in combo:
                d.update(c)
            out.append(d)
        return out


@dataclass(frozen=True)
class Run:
    """One simulation of a sweep: a point, a variant of the base, a replication."""
    index: int          # position in the full list (the output order)
    point: int          # which axis combination
    replication: int
    seed: int
    run_id: str         # hash of the resolved config (seed included)
    point_id: str       # the same without the seed: groups replications
    variant: str        # the base config's variant (scheme or named variant)
    axes: dict = field(default_factory=dict)    # axis column -> value
    config: dict | None = None  # resolved config (Config.dump()); None if invalid
    error: str | None = None    # why the config is invalid (recorded, not raised)


def canonical_hash(obj: Any) -> str:
    """Stable across processes and machines (unlike hash())."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def replication_seed(base_seed: int, replication: int) -> int:
    """Independent seed for replication r: SeedSequence(base) child r. Depends
    on nothing else, so every scheme/policy at replication r is paired."""
    ss = np.random.SeedSequence(base_seed).spawn(replication + 1)[replication]
    hi, lo = (int(x) for x in ss.generate_state(2, dtype=np.uint32))
    return ((hi << 32) | lo) & (2**63 - 1)  # fits Parquet int64


def load_sweep(path: str | Path) -> tuple[SweepSpec, dict, Path]:
    """Read a sweep file: (spec, base raw config, directory it lives in)."""
    path = Path(path)
    raw = read_yaml(path)
    try:
        spec = SweepSpec.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(f"{path}: {_message(e)}") from None
    return spec, _base_raw(spec, path.parent), path.parent


def _message(e: ValidationError) -> str:
    err = e.errors()[0]
    loc = ".".join(str(p) for p in err["loc"] if not str(p).startswith(("dict[", "list[")))
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        msg = f"unknown key; expected one of {', '.join(SweepSpec.model_fields)}"
    return f"{loc}: {msg}" if loc else msg


def spec_from_dict(raw: dict, where: str | Path = ".") -> tuple[SweepSpec, dict]:
    try:
        spec = SweepSpec.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(f"sweep: {_message(e)}") from None
    return spec, _base_raw(spec, Path(where))


def _base_raw(spec: SweepSpec, where: Path) -> dict:
    if isinstance(spec.base, dict):
        return copy.deepcopy(spec.base)
    p = Path(spec.base).expanduser()
    if not p.is_absolute():
        p = where / p
    raw = read_yaml(p)
    wl = raw.get("workload")  # a trace path in a config is relative to that config
    if isinstance(wl, dict) and isinstance(wl.get("trace"), str):
        t = Path(wl["trace"]).expanduser()
        if not t.is_absolute():
            wl["trace"] = str((p.parent / t).resolve())
    return raw


def lookup(d: dict, dotted: str, default=None):
    """A dotted key in a dumped config, tolerant of '-' vs '_'. A device's
    shorthand (``latency``, ``bandwidth``, ``iops``) reads its read-direction
    value, as the shorthand set both."""
    cur: Any = d
    for part in dotted.split("."):
        if not isinstance(cur, dict):
            return default
        for cand in (part, part.replace("_", "-"), part.replace("-", "_"), f"read-{part}",
                     f"read_{part}"):
            if cand in cur:
                cur = cur[cand]
                break
        else:
            return default
    return cur


def plan(spec: SweepSpec, base_raw: dict, overrides: list[str] | dict | None = None,
         replications: int | None = None) -> list[Run]:
    """The full ordered list of runs. Overrides apply after the sweep's ``set``
    and before the axes. Points whose config is invalid are kept, with their
    error; if every point is invalid the sweep itself is wrong (ConfigError)."""
    if replications is not None and (isinstance(replications, bool) or
                                     not isinstance(replications, int) or replications < 1):
        raise ConfigError(f"replications: expected a whole number >= 1, got {replications!r}")
    k = replications or spec.replications
    raw0 = copy.deepcopy(base_raw)
    for key, v in spec.set.items():
        set_dotted(raw0, key, v)
    if overrides:
        items = overrides.items() if isinstance(overrides, dict) else (
            _split(o) for o in overrides)
        for key, v in items:
            set_dotted(raw0, key, v)
    runs: list[Run] = []
    errors = []
    for pi, combo in enumerate(spec.combos()):
        raw = copy.deepcopy(raw0)
        try:
            for key, v in combo.items():
                set_dotted(raw, key, v)
            vs = variants(validate(raw))
        except ConfigError as e:
            errors.append(str(e))
            seed0 = int(lookup(raw, "run.seed", 1) or 1)
            for r in range(k):
                seed = replication_seed(seed0, r)
                pid = canonical_hash({"invalid": raw, "axes": combo})
                runs.append(Run(len(runs), pi, r, seed, canonical_hash([pid, seed]), pid, "",
                                {key: _col(v) for key, v in combo.items()}, None, str(e)))
            continue
        for vname, cfg in vs:
            d = cfg.dump()
            d.pop("variants", None)
            seed0 = cfg.run.seed
            axes = {key: _col(lookup(d, key, v)) for key, v in combo.items()}
            d["run"]["seed"] = 0
            pid = canonical_hash(d)
            for r in range(k):
                seed = replication_seed(seed0, r)
                c = copy.deepcopy(d)
                c["run"]["seed"] = seed
                runs.append(Run(len(runs), pi, r, seed, canonical_hash(c), pid, vname, axes, c))
    if runs and len(errors) * k == len(runs):
        raise ConfigError(f"every point of sweep {spec.name!r} is invalid; first: {errors[0]}")
    seen: dict[str, Run] = {}
    for r in runs:
        if r.run_id in seen:
            o = seen[r.run_id]
            raise ConfigError(f"sweep {spec.name!r}: points {o.point} ({o.variant} {o.axes}) "
                              f"and {r.point} ({r.variant} {r.axes}) resolve to the same config")
        seen[r.run_id] = r
    return runs


def _split(o: str) -> tuple[str, Any]:
    if "=" not in o:
        raise ConfigError(f"--set {o}: expected dotted.key=value")
    key, v = o.split("=", 1)
    return key.strip(), yaml.safe_load(v)


def _col(v: Any) -> Any:
    """Axis values become Parquet columns: scalars stay, the rest become JSON."""
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    return json.dumps(v, sort_keys=True, default=str)
