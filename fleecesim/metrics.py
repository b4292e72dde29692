"""Per-request records, time-weighted levels, and run counters."""
from __future__ import annotations

from array import array

import numpy as np
import pandas as pd

from .workloads.records import OP_NAMES

PATH_DIRECT = 0   # went straight to the disk (or a cache hit)
PATH_CBW = 1      # copied old data before writing
PATH_WAIT = 2     # waited for a copy someone else had in flight
PATH_ERROR = 3    # failed (on-cbw-error=break-guest-write): the guest was told
PATH_IGNORED = 4  # failed, but werror/rerror=ignore told the guest it succeeded
PATH_NAMES = ("direct", "cbw", "wait", "error", "error-ignored")


# Where a guest request's time went: ``requests.parquet``
# has one ``lat_<component>`` column each, and they add up to ``latency``.
# ``queue`` and ``service`` split the time on the request's own device request
# (service: what it would take on an idle device, devices/base.py: LAST; queue:
# the rest, behind other requests — the guest's own or the backup's — and
# behind the host's CPU); the others are the copy-before-write's phases.
ATTR_NAMES = ("cbw_read",         # the CBW's source read (its own copy of old data)
              "cache_write",      # the CBW's write to the fleecing image (or overlay)
              "target_write",     # the CBW's write to the backup target (backup, legacy)
              "inflight_wait",    # waiting for a copy someone else had in flight
              "frozen_wait",      # waiting for a snapshot read of its clusters
              "cache_full_wait",  # the CBW's write waiting for fleecing room
              "error")            # a failed request: all its time; a request the VM
                                  # held, stopped on an error (werror=stop/enospc):
                                  # the failed tries and the time held
COMPONENTS = ("queue", "service") + ATTR_NAMES
A_CBW_READ, A_CACHE_WRITE, A_TARGET_WRITE, A_INFLIGHT, A_FROZEN, A_FULL, A_ERROR = \
    range(len(ATTR_NAMES))


class Attr:
    """A slow-path guest request's attribution while it runs: the service time
    of its own device request (``svc``, set by the leaf node) and seconds per
    component of ATTR_NAMES (``c``). Whatever is not attributed was time on
    its device: ``service`` up to ``svc``, the rest ``queue``. ``err``: the
    errno of a failed request (0: not known, EIO; error_policy.py)."""

    __slots__ = ("svc", "c", "err")

    def __init__(self):
        self.svc = 0.0
        self.c = [0.0] * len(ATTR_NAMES)
        self.err = 0


#: this module runs compiled (metrics.pxd): Recorder.add_fast is then a C
#: call storing into typed row buffers, cheaper than the seven bound
#: ``array.append`` calls the guest driver makes when interpreted
COMPILED = not __file__.endswith(".py")
#: rows the compiled Recorder buffers before moving them to its columns
#: (one ``frombytes`` copy per column)
CHUNK = 4096


class Recorder:
    """Guest request records as typed column arrays: cheap appends on the hot
    path and ~30 bytes a request (Python lists of floats would cost ~200).
    Attribution beyond queue/service is kept only for the requests that have
    some (copy-before-write, waits, errors): a row index and its components.

    Compiled, ``add_fast`` stores a row into CHUNK-row buffers of the
    columns' own types (the same conversions ``array.append`` makes: a
    C double to float for ``lat``/``svc``) and moves them to the columns
    when full and before any read (``_flush``); the columns are the same."""

    __slots__ = ("t", "op", "off", "len", "lat", "path", "svc", "x_i", "x_c",
                 "_n", "_bt", "_bop", "_boff", "_blen", "_blat", "_bpath", "_bsvc")

    def __init__(self):
        self.t = array("d")
        self.op = array("B")
        self.off = array("q")
        self.len = array("I")   # request lengths fit 32 bits
        self.lat = array("f")   # latency: float32 keeps 7 significant digits
        self.path = array("B")
        self.svc = array("f")   # service time of the request's own device request
        self.x_i = array("q")   # rows with attribution beyond queue/service ...
        self.x_c = array("f")   # ... and their ATTR_NAMES components, row-major
        self._n = 0             # rows in the buffers (compiled), not yet in the columns
        if COMPILED:
            self._bt = memoryview(array("d", bytes(8 * CHUNK)))
            self._bop = memoryview(array("B", bytes(CHUNK)))
            self._boff = memoryview(array("q", bytes(8 * CHUNK)))
            self._blen = memoryview(array("I", bytes(4 * CHUNK)))
            self._blat = memoryview(array("f", bytes(4 * CHUNK)))
            self._bpath = memoryview(array("B", bytes(CHUNK)))
            self._bsvc = memoryview(array("f", bytes(4 * CHUNK)))

    def add(self, t, op, off, ln, lat, path, att=None):
        svc = 0.0
        if att is not None:
            c = att.c
            if any(c):
                self.x_i.append(len(self.t) + self._n)
                self.x_c.extend(c)
            svc = att.svc
        self.add_fast(t, op, off, ln, lat, svc, path)

    def _flush(self):
        """The buffered rows to the columns (compiled; nothing buffered otherwise)."""
        n = self._n
        if n:
            self._n = 0
            self.t.frombytes(memoryview(self._bt)[:n].cast("B"))
            self.op.frombytes(memoryview(self._bop)[:n].cast("B"))
            self.off.frombytes(memoryview(self._boff)[:n].cast("B"))
            self.len.frombytes(memoryview(self._blen)[:n].cast("B"))
            self.lat.frombytes(memoryview(self._blat)[:n].cast("B"))
            self.path.frombytes(memoryview(self._bpath)[:n].cast("B"))
            self.svc.frombytes(memoryview(self._bsvc)[:n].cast("B"))

    def add_fast(self, t, op, off, ln, lat, svc, path=PATH_DIRECT):
        """A request with no attribution beyond its device request (the fast
        path's: all its time was there)."""
        if COMPILED:
            i = self._n
            self._bt[i] = t
            self._bop[i] = op
            self._boff[i] = off
            self._blen[i] = ln
            self._blat[i] = lat
            self._bpath[i] = path
            self._bsvc[i] = svc
            self._n = i + 1
            if i + 1 == CHUNK:
                self._flush()
            return
        self.t.append(t)
        self.op.append(op)
        self.off.append(off)
        self.len.append(ln)
        self.lat.append(lat)
        self.path.append(path)
        self.svc.append(svc)

    def arrays(self) -> dict[str, np.ndarray]:
        """Zero-copy numpy views of the columns."""
        self._flush()
        return {
            "time": np.frombuffer(self.t, dtype=np.float64),
            "op": np.frombuffer(self.op, dtype=np.uint8),
            "offset": np.frombuffer(self.off, dtype=np.int64),
            "length": np.frombuffer(self.len, dtype=np.uint32),
            "latency": np.frombuffer(self.lat, dtype=np.float32),
            "path": np.frombuffer(self.path, dtype=np.uint8),
        }

    def attribution(self, rows: np.ndarray | None = None) -> np.ndarray:
        """Seconds per request (all, or those of the index array ``rows``) and
        component (COMPONENTS), float32, rows adding up to the latency (to
        float32 rounding)."""
        self._flush()
        lat = np.frombuffer(self.lat, dtype=np.float32)
        svc = np.frombuffer(self.svc, dtype=np.float32)
        if rows is not None:
            lat, svc = lat[rows], svc[rows]
        out = np.zeros((lat.size, len(COMPONENTS)), dtype=np.float32)
        if self.x_i and lat.size:
            xi = np.frombuffer(self.x_i, dtype=np.int64)  # ascending: rows as recorded
            xc = np.frombuffer(self.x_c, dtype=np.float32).reshape(-1, len(ATTR_NAMES))
            if rows is None:
                out[xi, 2:] = xc
            else:
                pos = np.minimum(np.searchsorted(xi, rows), xi.size - 1)
                hit = xi[pos] == rows
                out[hit, 2:] = xc[pos[hit]]
        dev = np.maximum(lat - out[:, 2:].sum(axis=1), 0)  # time on its own device request
        out[:, 1] = np.minimum(svc, dev)
        out[:, 0] = dev - out[:, 1]
        return out

    def attribution_summary(self, rows: np.ndarray) -> dict:
        """Where the time of requests ``rows`` went: the mean seconds per
        component over all of them (``all``) and over the slowest 1 % (``p99+``:
        latency at or above their 99th percentile)."""
        self._flush()
        if not rows.size:
            return {}
        att = self.attribution(rows).astype(np.float64)
        lat = np.frombuffer(self.lat, dtype=np.float32)[rows]
        tail = lat >= np.quantile(lat, 0.99)
        return {"all": dict(zip(COMPONENTS, att.mean(axis=0).tolist())),
                "p99+": dict(zip(COMPONENTS, att[tail].mean(axis=0).tolist()))}

    def frame(self) -> pd.DataFrame:
        a = self.arrays()
        df = pd.DataFrame({"time": a["time"], "offset": a["offset"], "length": a["length"],
                           "latency": a["latency"]}, copy=False)
        df.insert(1, "op", pd.Categorical.from_codes(a["op"], categories=list(OP_NAMES)))
        df["path"] = pd.Categorical.from_codes(a["path"], categories=list(PATH_NAMES))
        att = self.attribution()
        for i, name in enumerate(COMPONENTS):
            df[f"lat_{name}"] = att[:, i]
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
        # --- tiered fleecing cache (RAM tier, spill, flush) ---
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
        # --- faults (fleecesim/faults.py) ---
        self.target_errors = 0      # target requests that failed (outage, reset)
        self.cache_full_errors = 0  # CBW writes refused by a full fleecing image (ENOSPC)
        self.thin_extensions = 0    # thin fleecing volume extensions
        self.thin_waits = 0         # CBW writes that waited for an extension
        self.cbw_timeouts = 0       # CBWs that exceeded cbw-timeout (counted as failed)
        # --- copy offload (backup.x-perf.use-copy-range; jobs/block_copy.py) ---
        self.copy_range_method = None    # splice / reflink / read-write (fell back); None: unused
        self.copy_range_fallback = None  # True: copy_range failed, block-copy read + wrote
        # --- error policies (fleecesim/error_policy.py) ---
        self.job_errors = 0         # BLOCK_JOB_ERROR events: failed block-copy calls of the job
        self.job_stops = 0          # job paused by on-*-error stop/enospc
        self.job_paused_s = 0.0     # seconds the job was paused

    def as_dict(self) -> dict:
        d = dict(vars(self))
        d.pop("events")
        d.pop("warnings")
        return d
