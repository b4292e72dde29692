"""Per-request records, time-weighted levels, and run counters."""
from __future__ import annotations

from array import array

import numpy as np
import pandas as pd

from .workloads.records import OP_NAMES

PATH_DIRECT = 0   # went straight to the disk (or a cache hit)
PATH_CBW = 1      # copied old data before writing
PATH_WAIT = 2     # waited for a copy someone else had in flight
PATH_ERROR = 3    # failed (on-cbw-error=break-guest-write)
PATH_NAMES = ("direct", "cbw", "wait", "error")


class Recorder:
    """Guest request records as typed column arrays: cheap appends on the hot
    path and ~26 bytes a request (Python lists of floats would cost ~200)."""

    __slots__ = ("t", "op", "off", "len", "lat", "path")

    def __init__(self):
        self.t = array("d")
        self.op = array("B")
        self.off = array("q")
        self.len = array("I")   # request lengths fit 32 bits
        self.lat = array("f")   # latency: float32 keeps 7 significant digits
        self.path = array("B")

    def add(self, t, op, off, ln, lat, path):
        self.t.append(t)
        self.op.append(op)
        self.off.append(off)
        self.len.append(ln)
        self.lat.append(lat)
        self.path.append(path)

    def arrays(self) -> dict[str, np.ndarray]:
        """Zero-copy numpy views of the columns."""
        return {
            "time": np.frombuffer(self.t, dtype=np.float64),
            "op": np.frombuffer(self.op, dtype=np.uint8),
            "offset": np.frombuffer(self.off, dtype=np.int64),
            "length": np.frombuffer(self.len, dtype=np.uint32),
            "latency": np.frombuffer(self.lat, dtype=np.float32),
            "path": np.frombuffer(self.path, dtype=np.uint8),
        }

    def frame(self) -> pd.DataFrame:
        a = self.arrays()
        df = pd.DataFrame({"time": a["time"], "offset": a["offset"], "length": a["length"],
                           "latency": a["latency"]}, copy=False)
        df.insert(1, "op", pd.Categorical.from_codes(a["op"], categories=list(OP_NAMES)))
        df["path"] = pd.Categorical.from_codes(a["path"], categories=list(PATH_NAMES))
        return df


class Level:
    """A quantity that changes at events (cache bytes, copies in flight).

    Keeps the change points; peak and time-weighted mean come from them, as in
    desmod's pools and pydesrap's monitored resources.
    """

    def __init__(self, env, name: str, value: float = 0.0):
        self.env = env
        self.name = name
        self.value = value
        self.peak = value
        self.times = array("d", [env.now])   # compact: 16 bytes a change
        self.values = array("d", [value])

    def add(self, delta: float, at: float | None = None) -> None:
        # set(self.value + delta, at), inlined: every copy adds twice
        self.value = value = self.value + delta
        if value > self.peak:
            self.peak = value
        now = self.env._now if at is None else at
        times = self.times
        if times[-1] == now:
            self.values[-1] = value
        else:
            times.append(now)
            self.values.append(value)

    def set(self, value: float, at: float | None = None) -> None:
        """``at``: the time of a change made on the guest fast path, which may
        run ahead of ``env.now`` (see workloads/driver.py)."""
        self.value = value
        if value > self.peak:
            self.peak = value
        now = self.env._now if at is None else at
        if self.times[-1] == now:
            self.values[-1] = value
        else:
            self.times.append(now)
            self.values.append(value)

    def mean(self, t0: float, t1: float) -> float:
        """Time-weighted mean over [t0, t1]."""
        if t1 <= t0:
            return float(self.value)
        t = np.append(np.frombuffer(self.times), t1)
        v = np.frombuffer(self.values)
        lo = np.clip(t[:-1], t0, t1)
        hi = np.clip(t[1:], t0, t1)
        return float(np.sum(v * (hi - lo)) / (t1 - t0))

    def peak_between(self, t0: float, t1: float) -> float:
        t = np.frombuffer(self.times)
        v = np.frombuffer(self.values)
        i0 = max(int(np.searchsorted(t, t0, side="right")) - 1, 0)
        i1 = int(np.searchsorted(t, t1, side="right"))
        return float(v[i0:max(i1, i0 + 1)].max())


class Stats:
    """Counters a run reports; nodes and jobs add to them (bytes, copies, errors)."""

    def __init__(self):
        self.cbw_count = 0          # guest requests that copied before writing
        self.cbw_bytes = 0          # bytes copied on behalf of guest requests
        self.cbw_waits = 0          # guest requests that waited for an in-flight copy
        self.cbw_errors = 0         # copies before write that failed
        self.guest_errors = 0       # guest writes failed (break-guest-write)
        self.source_read_bytes = 0  # backup-caused reads of the active disk
        self.target_write_bytes = 0  # data bytes written to the backup target
        self.target_zero_bytes = 0  # bytes written to the target as write-zeroes
        self.local_write_bytes = 0  # backup-caused writes on local devices (cache, overlay)
        self.local_read_bytes = 0   # backup-caused reads on local devices
        self.job_copied_bytes = 0   # bytes the background job copied
        self.snapshot_broken = False
        self.snapshot_broken_at = None
        self.snapshot_read_errors = 0  # snapshot reads refused (EACCES: broken, or not accessible)
        self.events: list[tuple[float, str]] = []
        self.warnings: list[str] = []  # what the user should know about this run's numbers
        # --- tiered fleecing cache (issue 3) ---
        self.spill_bytes = 0        # CBW data written to the disk tier (RAM tier full or absent)
        self.flush_bytes = 0        # bytes moved RAM -> disk tier by the background flush
        self.ram_evicted_bytes = 0  # unchanged RAM-cached clusters dropped to make room
        self.cor_admitted = 0       # clusters stored by copy-on-read (BDRV_REQ_UNNECESSARY)
        self.cor_dropped = 0        # clusters COR did not store: RAM tier full
        self.ram_read_hits = 0      # guest reads served from the RAM tier
        self.cbw_absorbed = 0       # guest writes to cached unchanged clusters: no copy
        self.deferred_discards = 0  # guest discards deferred past the backup (lazy)
        self.deferred_discards_applied = 0  # cluster runs discarded when the backup ended
        self.cbw_room_waits = 0     # CBW stores that waited for cache room (on-cbw-error=wait)
        # --- faults (issue 13 item 3; fleecesim/faults.py) ---
        self.target_errors = 0      # target requests that failed (outage, reset)
        self.cache_full_errors = 0  # CBW writes refused by a full fleecing image (ENOSPC)
        self.thin_extensions = 0    # thin fleecing volume extensions
        self.thin_waits = 0         # CBW writes that waited for an extension
        self.cbw_timeouts = 0       # CBWs that exceeded cbw-timeout (counted as failed)

    def as_dict(self) -> dict:
        d = dict(vars(self))
        d.pop("events")
        d.pop("warnings")
        return d
