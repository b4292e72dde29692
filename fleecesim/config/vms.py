"""``vms:``, ``fleet:`` and ``variants:``: one config becoming several VMs or runs."""
from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator

from .core import Model, Seconds, _folder_name


class Variant(Model):
    name: str
    set: dict[str, Any] = {}

    @field_validator("name")
    @classmethod
    def _name(cls, v):
        return _folder_name(v, nested=True)


# --- many VMs, one target (fleet.py) ----------------------------------------
VM_SECTIONS = ("disk", "workload", "backup")

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
