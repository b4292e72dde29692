"""``workload:``: the guest's requests (synthetic or a trace)."""
from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field, model_validator

from ..units import parse_size
from .core import Model, Seconds, Size, _is_pow2
from .rules import needs


class Mix(Model):
    read: float = Field(0.5, ge=0)
    write: float = Field(0.5, ge=0)
    discard: float = Field(0.0, ge=0)

    @model_validator(mode="after")
    def _nonzero(self):
        if self.read + self.write + self.discard <= 0:
            raise ValueError("read + write + discard must be > 0")
        return self


# a trace replay's own keys (workloads/traces: open_trace's arguments), and a
# synthetic workload's (workloads/synthetic.py: synthetic): each does nothing
# for the other source
_TRACE_KEYS = ("format", "device", "time-scale", "start", "duration", "map", "loop", "events")
_SYNTHETIC_KEYS = ("mix", "size", "pattern", "streams", "zipf-s", "align", "span")


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

    # keys that act only for one request source or pattern (config/rules.py)
    ACTS: ClassVar = (
        needs(_TRACE_KEYS, lambda w: w.trace is not None,
              "only for a trace replay (workload.trace); this workload is synthetic"),
        needs(_SYNTHETIC_KEYS, lambda w: w.trace is None,
              "not used with a trace (a replay takes each request's kind, offset and size "
              "from the trace)"),
        needs(("max-inflight",), lambda w: w.iodepth is None,
              "only for open loop (iodepth already bounds a closed loop)"),
        needs(("streams",), lambda w: w.pattern == "sequential",
              lambda w: f"only for pattern sequential (parallel sequential streams), "
                        f"not {w.pattern}"),
        needs(("zipf-s",), lambda w: w.pattern == "zipf",
              lambda w: f"only for pattern zipf (the skew of its offsets), not {w.pattern}"),
    )

    @model_validator(mode="after")
    def _mode(self):
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
            if s % 512:
                # a guest request is whole 512-byte sectors (the smallest logical
                # block size, BDRV_SECTOR_SIZE in include/block/block-common.h)
                raise ValueError(f"size: expected a multiple of 512 bytes, got {s} bytes"
                                 f"{_binary_hint(s)}")
        return self

    def size_weights(self) -> list[tuple[int, float]]:
        if isinstance(self.size, int):
            return [(self.size, 1.0)]
        return [(parse_size(k), float(w)) for k, w in self.size.items()]



# Where a workload's requests come from: giving one of these (a VM's workload,
# --set, a variant's set) drops the keys it cannot stand with from the config
# it overrides. A trace replays open loop (no iops) or closed loop (iodepth),
# taking each request from the trace (no synthetic keys); a synthetic workload
# has either iops or iodepth (iops: no trace keys).
SOURCE_REPLACES = {"trace": {"iops", *_SYNTHETIC_KEYS},
                   "iops": {"trace", "iodepth", *_TRACE_KEYS}, "iodepth": {"iops"}}


# A pattern's own keys: a new pattern given drops the other patterns' keys.
PATTERN_KEYS = {"uniform": set(), "sequential": {"streams"}, "zipf": {"zipf-s"}}


def _drop_replaced(workload: dict, given) -> dict:
    """``workload`` without the source keys that keys ``given`` replace (and,
    when ``given`` is a mapping naming a pattern, the keys of the others)."""
    gone = set().union(*(SOURCE_REPLACES.get(k, set()) for k in given))
    if isinstance(given, dict) and given.get("pattern") in PATTERN_KEYS:
        gone |= set().union(*PATTERN_KEYS.values()) - PATTERN_KEYS[given["pattern"]]
    gone -= set(given)
    return {k: v for k, v in workload.items() if k not in gone}


def _binary_hint(n: int) -> str:
    """' (4000 = 4KB, decimal: did you mean 4KiB?)' for a decimal-unit size."""
    for k, unit in ((3, "GiB"), (2, "MiB"), (1, "KiB")):
        if n % 1000 ** k == 0:
            m = n // 1000 ** k
            return f" ({n} = {m}{unit[0]}B, decimal: did you mean {m}{unit}?)"
    return ""
