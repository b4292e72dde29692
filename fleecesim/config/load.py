"""Reading a config: YAML, ``--set`` overrides, validation into ``Config``, variants."""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from ..errors import ConfigError
from .backup import _acts, _for_scheme  # noqa: F401 (re-exported)
from .core import _format_error
from .devices import DIRECTIONAL
from .scenario import Config
from .workload import _drop_replaced


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
        raw["workload"] = _drop_replaced(raw["workload"], {
            k.removeprefix("workload."): v for k, v in items if k.startswith("workload.")})
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
