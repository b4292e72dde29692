"""``faults:``: faults of the target device and the fleecing image's device."""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BeforeValidator, model_validator

from ..units import parse_time
from .core import Model, Seconds, Size


# --- faults (the model is fleecesim/faults.py) ------------------------------
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
