"""Typed, validated scenario configs (YAML -> pydantic models).

One place for defaults. Keys use QEMU's spelling with hyphens (``max-workers``,
``min-cluster-size``); unknown keys are errors; sizes, rates and times accept
units ("64KiB", "100MiB/s", "2ms"). ``load_config`` returns the scenario and its
variants (one per scheme or per ``variants`` entry), each fully resolved.

One module per top-level section of the YAML (devices, disk, workload,
backup, faults, vms, run), ``core`` for what they share, ``scenario`` for the
whole ``Config`` and ``load`` for reading it; this module re-exports them.
"""
from ..errors import ConfigError
from .backup import (FLEECING_IMAGE_SCHEMES, PBS_SCHEMES, SYNC_NONE_SCHEMES, BackupSpec, CacheSpec,
                     ClientSpec, FlushSpec, IncrementalSpec, OverlaySpec, PbsSpec, RamTierSpec,
                     TargetSpec, XPerfSpec, known_schemes)
from .core import (BlockSize, Model, OnError, Rate, ResumeAfter, Seconds, Size, _changed_keys,
                   _fmt_loc, _folder_name, _format_error, _is_pow2, _pow2_block, _resume_after)
from .devices import (DEFAULT_DEVICES, DEFAULT_TCP_WINDOW, DIRECTIONAL, DeviceSpec, Seek, SeekSpec,
                      _seek_value, _split_directions, expand_preset)
from .disk import DiskSpec
from .faults import FaultsSpec, FleecingDeviceFaults, TargetFault, ThinSpec, _time_range
from .load import (_acts, _for_scheme, _relative_to, _split_override, _UniqueKeyLoader, load_config,
                   parse_value, read_yaml, resolve, set_dotted, validate, variants)
from .run import GuestSpec, HostSpec, QemuSpec, RunSpec
from .scenario import Config
from .vms import (VM_SECTIONS, VZDUMP_SETS, FleetSpec, Variant, VMSpec, VzdumpFleecing,
                  VzdumpPerformance, VzdumpSpec)
from .workload import SOURCE_REPLACES, Mix, WorkloadSpec, _drop_replaced

__all__ = [n for n in dir() if not n.startswith("__")]
