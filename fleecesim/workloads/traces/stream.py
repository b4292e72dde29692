"""``open_trace``: a trace file as a stream of RECORD_DTYPE chunks.

Pipeline: format reader (device filter, native time -> seconds) -> drop
zero-length data requests -> reorder -> start/duration window and re-base ->
time_scale -> offset mapping -> chunks of at most CHUNK records -> loop.

Unsorted timestamps: every chunk is stable-sorted, then merged with a buffer of
the last REORDER_WINDOW records, which are held back until newer data arrives.
So a request may arrive up to REORDER_WINDOW records late and still be put in
its place; one arriving later than that is clamped to the last emitted time
(counted in ``counters["clamped"]``). The output is always monotone.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from ...errors import ConfigError, TraceError
from ...units import parse_size, parse_time
from ..records import CHUNK, OP_FLUSH, RECORD_DTYPE
from ._text import RAW_DTYPE, where
from .detect import canonical, detect_format, fio_version

REORDER_WINDOW = 4096
LOOP_CACHE = 1 << 20  # records kept in memory for loop=True (~25 MiB); above that, re-read the file
SECTOR = 512
MAPS = ("error", "wrap", "scale")


@dataclass(frozen=True)
class TraceOptions:
    """Validated options of ``open_trace`` (same names, normalised units)."""

    format: str = "auto"
    device: str | int | None = None
    time_scale: float = 1.0
    start: float = 0.0
    duration: float | None = None
    disk_size: int | None = None
    map: str = "error"
    loop: bool = False
    events: str = "C"

    @classmethod
    def make(cls, format="auto", device=None, time_scale=1.0, start=0.0, duration=None,
             disk_size=None, map="error", loop=False, events="C") -> "TraceOptions":
        try:
            ts = float(time_scale)
            st = parse_time(start)
            du = None if duration is None else parse_time(duration)
            ds = None if disk_size is None else parse_size(disk_size)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"trace options: {e}") from None
        if not (ts > 0 and np.isfinite(ts)):
            raise ConfigError(f"time_scale: expected a positive number, got {time_scale!r}")
        if st < 0:
            raise ConfigError(f"start: expected >= 0 seconds, got {start!r}")
        if du is not None and du <= 0:
            raise ConfigError(f"duration: expected > 0 seconds, got {duration!r}")
        if ds is not None and ds < SECTOR:
            raise ConfigError(f"disk_size: expected at least 512 bytes, got {disk_size!r}")
        if map not in MAPS:
            raise ConfigError(f"map: expected one of {', '.join(MAPS)}, got {map!r}")
        if events not in ("C", "Q", "D"):
            raise ConfigError(f"events: expected 'C' (completed), 'Q' (queued) or 'D' (issued), got {events!r}")
        fmt = canonical(format)
        dev = None if device is None or device == "" else device
        return cls(fmt, dev, ts, st, du, ds, map, bool(loop), events)


def raw_reader(path, fmt: str, device, events: str, counters: dict):
    """The format reader: RAW_DTYPE chunks, seconds since the first record, any order."""
    if fmt == "auto":
        fmt = detect_format(path)
    counters["format"] = fmt
    if fmt == "fio":
        from .fio import FioReader
        with open(path, "rb") as f:
            head = f.readline()
        ver = fio_version(head)
        if ver is None:
            raise TraceError(f"{where(path, 1)}: expected header 'fio version 2 iolog' or "
                             f"'fio version 3 iolog', got {head.strip()[:60].decode('utf-8', 'replace')!r}")
        counters["format"] = f"fio{ver}"
        return FioReader(path, None if device is None else str(device), counters, ver)
    if fmt == "blkparse":
        from .blkparse import BlkparseReader
        return BlkparseReader(path, device, counters, events)
    if fmt == "vscsi":
        from .vscsi import VscsiReader
        return VscsiReader(path, device, counters)
    from .csvfmt import AlibabaReader, DiskSimReader, MSRReader
    cls = {"msr": MSRReader, "disksim": DiskSimReader, "alibaba": AlibabaReader}[fmt]
    return cls(path, device, counters)


def _ordered(chunks, counters: dict, window: int = REORDER_WINDOW) -> Iterator[np.ndarray]:
    """Drop zero-length data requests and make time monotone (see module doc)."""
    pend = np.zeros(0, dtype=RAW_DTYPE)
    last = -np.inf
    for c in chunks:
        zero = (c["length"] == 0) & (c["op"] != OP_FLUSH)
        if zero.any():
            counters["zero_length"] += int(zero.sum())
            c = c[~zero]
        if len(c) == 0:
            continue
        c = c[np.argsort(c["time"], kind="stable")]
        late = c["time"] < last
        if late.any():
            counters["clamped"] += int(late.sum())
            c["time"][late] = last  # they sorted to the front, so order still holds
        m = np.concatenate([pend, c])
        m = m[np.argsort(m["time"], kind="stable")]  # pending first: stable keeps file order on ties
        if len(m) > window:
            out, pend = m[:-window], m[-window:]
            last = out["time"][-1]
            yield out
        else:
            pend = m
    if len(pend):
        yield pend


class TraceStream:
    """Iterator of RECORD_DTYPE chunks; ``counters`` reports what was dropped or fixed."""

    def __init__(self, path, opts: TraceOptions):
        if not os.path.exists(path):
            raise TraceError(f"{os.fspath(path)}: no such trace file")
        self.path = path
        self.opts = opts
        self.counters = {"format": opts.format, "zero_length": 0, "clamped": 0, "ignored": 0,
                         "skipped_lines": 0, "loops": 0}
        self.binary = False
        self._scale = None
        self.format = detect_format(path) if opts.format == "auto" else opts.format
        self._gen = self._run()

    def __iter__(self):
        return self

    def __next__(self) -> np.ndarray:
        return next(self._gen)

    def close(self):
        self._gen.close()

    # -- pipeline -----------------------------------------------------------
    def _reader(self, counters):
        r = raw_reader(self.path, self.format, self.opts.device, self.opts.events, counters)
        self.binary = counters["format"] == "vscsi"
        return r

    def _max_extent(self) -> int:
        """First pass for map="scale": largest offset+length of the selected device."""
        mx = 0
        for c in self._reader({"zero_length": 0, "clamped": 0, "ignored": 0, "skipped_lines": 0}):
            if len(c):
                mx = max(mx, int((c["offset"] + c["length"]).max()))
        return mx

    def _map(self, c: np.ndarray) -> np.ndarray:
        size, how = self.opts.disk_size, self.opts.map
        if size is None:
            return c
        data = c["op"] != OP_FLUSH
        off, ln = c["offset"], c["length"]
        if how == "error":
            bad = data & (off + ln > size)
            if bad.any():
                i = int(np.argmax(bad))
                raise TraceError(f"{where(self.path, int(c['line'][i]), self.binary)}: request at offset "
                                 f"{int(off[i])} + length {int(ln[i])} is beyond the disk size {size} "
                                 f"(use map: wrap or scale)")
            return c
        ln = np.minimum(ln, size)
        if how == "wrap":
            new = (off % size) // SECTOR * SECTOR
            ln = np.minimum(ln, size - new)  # clip at the end of the disk
        else:  # scale: spread the trace's extent over the disk, keep request sizes
            new = np.floor(off * self._scale / SECTOR).astype(np.int64) * SECTOR
            new = np.minimum(new, (size - ln) // SECTOR * SECTOR)
            new = np.maximum(new, 0)
            ln = np.minimum(ln, size - new)
        c["offset"] = np.where(data, new, off)
        c["length"] = np.where(data, ln, c["length"])
        return c

    def _one_pass(self, counters) -> Iterator[np.ndarray]:
        o = self.opts
        lo = hi = None
        for c in _ordered(iter(self._reader(counters)), counters):
            if lo is None:
                lo = c["time"][0] + o.start  # window is relative to the first request
                hi = np.inf if o.duration is None else lo + o.duration
            t = c["time"]
            a, b = np.searchsorted(t, lo, "left"), np.searchsorted(t, hi, "left")
            done = b < len(c)
            c = c[a:b]
            if len(c):
                c["time"] = (c["time"] - lo) * o.time_scale
                yield self._map(c)
            if done:
                return  # monotone: nothing later can fall in the window

    def _run(self) -> Iterator[np.ndarray]:
        o = self.opts
        if o.disk_size is not None and o.map == "scale":
            ext = self._max_extent()
            self._scale = o.disk_size / ext if ext > 0 else 1.0
        cache: list[np.ndarray] | None = [] if o.loop else None
        n, first, last = 0, None, None
        for c in self._one_pass(self.counters):
            if first is None:
                first = float(c["time"][0])
            n += len(c)
            last = float(c["time"][-1])
            if cache is not None:
                cache.append(c)
                if n > LOOP_CACHE:
                    cache = None  # too big to keep: re-read the file on each repetition
            yield from _public(c)
        if n == 0:
            what = [f"device {o.device!r}" if o.device is not None else "",
                    f"start {o.start}s" if o.start else "", f"duration {o.duration}s" if o.duration else ""]
            sel = ", ".join(w for w in what if w)
            raise TraceError(f"{os.fspath(self.path)}: no requests in the trace" + (f" ({sel})" if sel else ""))
        if not o.loop:
            return
        span = last - first
        period = span + (span / (n - 1) if n > 1 else 0.0)
        if period <= 0:
            period = 1.0 * o.time_scale  # a single instant: repeat once per (scaled) second
        k = 0
        while True:
            k += 1
            self.counters["loops"] = k
            shift = k * period
            src = cache if cache is not None else self._one_pass({"zero_length": 0, "clamped": 0, "ignored": 0, "skipped_lines": 0})
            for c in src:
                c = c.copy()
                c["time"] += shift
                yield from _public(c)


def _public(c: np.ndarray) -> Iterator[np.ndarray]:
    """RAW -> RECORD_DTYPE, in chunks of at most CHUNK records."""
    for i in range(0, len(c), CHUNK):
        part = c[i:i + CHUNK]
        out = np.empty(len(part), dtype=RECORD_DTYPE)
        for name in RECORD_DTYPE.names:
            out[name] = part[name]
        yield out


def open_trace(path, format: str = "auto", *, device=None, time_scale: float = 1.0,
               start=0.0, duration=None, disk_size=None, map: str = "error",
               loop: bool = False, events: str = "C") -> TraceStream:
    """Stream a block trace as RECORD_DTYPE chunks (times in seconds from the window start).

    format: auto | fio | blkparse | msr | disksim | vscsi | alibaba.
    device: which device of a multi-device trace (fio FILE, blkparse 'MAJ,MIN',
      MSR 'HOST', 'HOST:DISK' or disk number, DiskSim devno, Alibaba device_id).
    time_scale: every time is multiplied by it, so 0.5 replays twice as fast.
    start, duration: window in seconds (or '2ms'-style strings) relative to the
      first request; output times are re-based so the window starts at 0.
    disk_size: bytes (or '10GiB') of the simulated disk; map says what to do with
      requests beyond it: 'error' (TraceError naming the line), 'wrap' (offset
      modulo disk size, 512 B aligned, length clipped at the end) or 'scale'
      (offsets times disk_size / largest extent in the trace; costs a first pass).
    loop: repeat forever, each repetition shifted by the trace duration plus the
      mean inter-arrival gap; the consumer stops pulling.
    events: blkparse action to keep: 'C' completed (default), 'Q' queued, 'D' issued.

    Zero-length reads/writes/discards are dropped (``counters['zero_length']``).
    Raises TraceError for unreadable or malformed traces, ConfigError for bad options;
    errors inside the file surface while iterating.
    """
    opts = TraceOptions.make(format, device, time_scale, start, duration, disk_size, map, loop, events)
    return TraceStream(path, opts)
