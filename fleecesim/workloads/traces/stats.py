"""Summary statistics of a trace, computed in one streaming pass.

Distinct 64 KiB clusters are kept as a union of disjoint cluster runs
(``_Extents``), not as a set of clusters: memory is 16 bytes per disjoint run,
so a sequential scan of a whole disk costs one run. The worst case is scattered
single-cluster requests: one run per request, e.g. 100 M random requests ->
~1.6 GB. Per-minute and per-second counts keep only the current minute/second
(the stream is time-ordered), so they are O(1) in memory apart from the
per-minute list itself (one int per minute of trace).
"""
from __future__ import annotations

import math
import os

import numpy as np

from ...errors import ConfigError
from ...units import fmt_size
from ..records import OP_DISCARD, OP_FLUSH, OP_NAMES, OP_READ, OP_WRITE
from .stream import TraceOptions, TraceStream

CLUSTER = 64 * 1024
PLURAL = {"read": "reads", "write": "writes", "discard": "discards", "flush": "flushes"}


class _Extents:
    """Union of half-open integer intervals [s, e), merged lazily in batches."""

    def __init__(self):
        self.s = np.zeros(0, np.int64)
        self.e = np.zeros(0, np.int64)
        self._ps: list[np.ndarray] = []
        self._pe: list[np.ndarray] = []
        self._np = 0

    def add(self, s: np.ndarray, e: np.ndarray):
        if len(s):
            self._ps.append(s)
            self._pe.append(e)
            self._np += len(s)
            # amortised: merge when the pending part is as big as the merged part
            if self._np > max(len(self.s), 1 << 18):
                self._merge()

    def _merge(self):
        if not self._np:
            return
        s = np.concatenate([self.s, *self._ps])
        e = np.concatenate([self.e, *self._pe])
        self._ps, self._pe, self._np = [], [], 0
        o = np.argsort(s, kind="stable")
        s, e = s[o], e[o]
        m = np.maximum.accumulate(e)
        brk = np.ones(len(s), dtype=bool)
        brk[1:] = s[1:] > m[:-1]  # a run starts where it neither overlaps nor touches the previous
        idx = np.flatnonzero(brk)
        self.s = s[idx]
        self.e = m[np.r_[idx[1:] - 1, len(s) - 1]]

    def total(self) -> int:
        self._merge()
        return int((self.e - self.s).sum())


def _clusters(off: np.ndarray, ln: np.ndarray):
    return off // CLUSTER, (off + ln - 1) // CLUSTER + 1


def size_label(n: int) -> str:
    for unit, f in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= f:
            return f"{n // f}{unit}"
    return f"{n}B"


def trace_stats(path, format: str = "auto", **options) -> dict:
    """Summarise a trace; takes the keyword options of ``open_trace`` (not loop)."""
    opts = TraceOptions.make(format, **options)
    if opts.loop:
        raise ConfigError("trace stats: loop=True would never end; drop it")
    stream = TraceStream(path, opts)
    n = 0
    ops = np.zeros(4, np.int64)
    nbytes = np.zeros(4, np.int64)
    hist = np.zeros(64, np.int64)
    touched, written = _Extents(), _Extents()
    first = last = None
    # 1 s windows aligned at the first request: the current one and its count,
    # the last finished one (it may absorb a short trailing window) and the
    # peak of those before it
    sec, sec_n, prev, prev_n, peak = None, 0, None, 0, 0
    minute, minute_ext = None, _Extents()  # current minute's written clusters
    per_minute: list[int] = []

    for c in stream:
        t, op, off, ln = c["time"], c["op"], c["offset"], c["length"]
        n += len(c)
        if first is None:
            first = float(t[0])
        last = float(t[-1])
        ops += np.bincount(op, minlength=4)[:4]
        nbytes += np.bincount(op, weights=ln, minlength=4)[:4].astype(np.int64)
        data = op != OP_FLUSH
        if data.any():
            hist += np.bincount(np.log2(ln[data]).astype(np.int64), minlength=64)[:64]
            touched.add(*_clusters(off[data], ln[data]))
        w = op == OP_WRITE
        if w.any():
            written.add(*_clusters(off[w], ln[w]))

        # requests per 1 s window: the stream is sorted, so windows arrive in order
        secs, counts = np.unique(np.floor(t - first).astype(np.int64), return_counts=True)
        if sec is not None and secs[0] == sec:
            counts[0] += sec_n
        elif sec is not None:
            secs, counts = np.r_[sec, secs], np.r_[sec_n, counts]
        for win, k in zip(secs[:-1].tolist(), counts[:-1].tolist()):  # windows now finished
            if prev is not None:
                peak = max(peak, prev_n)
            prev, prev_n = win, k
        sec, sec_n = int(secs[-1]), int(counts[-1])

        # written clusters per minute
        mins = np.floor(t / 60.0).astype(np.int64)
        bounds = np.flatnonzero(np.diff(mins)) + 1
        for lo, hi in zip(np.r_[0, bounds], np.r_[bounds, len(c)]):
            m = int(mins[lo])
            if minute is None:
                per_minute.extend([0] * m)  # the window starts at 0; leading idle minutes count
                minute = m
            elif m != minute:
                per_minute.append(minute_ext.total())
                per_minute.extend([0] * (m - minute - 1))
                minute, minute_ext = m, _Extents()
            ww = w[lo:hi]
            if ww.any():
                minute_ext.add(*_clusters(off[lo:hi][ww], ln[lo:hi][ww]))
    if minute is not None:
        per_minute.append(minute_ext.total())
    duration = (last - first) if n else 0.0
    # The peak is the busiest window's rate. The trailing window is shorter than
    # 1 s, so it is merged with the one before it (1-2 s long): every window is
    # then at least 1 s and the mean (their time-weighted average) <= the peak.
    # A trace shorter than 1 s has one window, the whole trace: peak = mean.
    if not n or duration <= 0:
        peak_rate = None
    elif duration < 1.0:
        peak_rate = n / duration
    else:
        if prev is not None and prev == sec - 1:
            tail_n, tail_len = prev_n + sec_n, 1.0 + (duration - sec)
        else:
            if prev is not None:
                peak = max(peak, prev_n)
            tail_n, tail_len = sec_n, 1.0 + (duration - sec)  # window sec-1 was empty
        peak_rate = max(float(peak), tail_n / tail_len)
    out = {
        "file": os.fspath(path),
        "format": stream.counters["format"],
        "device": opts.device,
        "requests": n,
        "duration_s": duration,
        "iops_mean": n / duration if duration > 0 else None,
        "iops_peak_1s": peak_rate,
        "shorter_than_1s": bool(n) and duration < 1.0,
    }
    for code, name in enumerate(OP_NAMES):
        out[PLURAL[name]] = int(ops[code])
    for code, name in enumerate(OP_NAMES):
        out[f"{name}_fraction"] = float(ops[code] / n) if n else 0.0
    out["bytes_read"] = int(nbytes[OP_READ])
    out["bytes_written"] = int(nbytes[OP_WRITE])
    out["bytes_discarded"] = int(nbytes[OP_DISCARD])
    out["size_histogram"] = {size_label(1 << k): int(v) for k, v in enumerate(hist) if v}
    out["cluster_size"] = CLUSTER
    out["written_clusters_per_minute"] = per_minute
    out["written_clusters_per_minute_mean"] = float(np.mean(per_minute)) if per_minute else 0.0
    out["written_clusters_per_minute_max"] = int(max(per_minute)) if per_minute else 0
    out["working_set_bytes"] = touched.total() * CLUSTER
    out["written_set_bytes"] = written.total() * CLUSTER
    for k in ("zero_length", "clamped", "ignored", "skipped_lines"):
        out[k] = int(stream.counters.get(k, 0))
    out["ignored_kinds"] = dict(stream.counters.get("ignored_kinds", {}))
    return out


def ignored_text(kinds: dict) -> str:
    """'opcode 0x99 x1, rwbs X x2': records that are not read/write/discard/flush."""
    return ", ".join(f"{k} x{v:,}" for k, v in sorted(kinds.items()))


def format_stats_table(stats: dict) -> str:
    """Human-readable two-column table of ``trace_stats`` output."""
    def num(v):
        return "-" if v is None else (f"{v:,.1f}" if isinstance(v, float) else f"{v:,}")

    n = stats["requests"]
    rows = [("file", stats["file"]), ("format", stats["format"])]
    if stats.get("device") is not None:
        rows.append(("device", str(stats["device"])))
    rows += [
        ("requests", num(n)),
        ("duration", f"{stats['duration_s']:.6g} s"),
        ("IOPS mean", num(stats["iops_mean"])),
        ("IOPS peak (1 s)", num(stats["iops_peak_1s"]) + (
            f" (the trace is {stats['duration_s'] * 1e3:.0f} ms long, shorter than 1 s: "
            f"peak = mean)" if stats.get("shorter_than_1s") else "")),
    ]
    for name in OP_NAMES:
        rows.append((PLURAL[name], f"{stats[PLURAL[name]]:,} ({100 * stats[name + '_fraction']:.1f} %)"))
    rows += [
        ("bytes read", fmt_size(stats["bytes_read"])),
        ("bytes written", fmt_size(stats["bytes_written"])),
        ("bytes discarded", fmt_size(stats["bytes_discarded"])),
        ("working set (64KiB clusters)", fmt_size(stats["working_set_bytes"])),
        ("written set (64KiB clusters)", fmt_size(stats["written_set_bytes"])),
        ("written clusters/min mean", f"{stats['written_clusters_per_minute_mean']:,.1f}"),
        ("written clusters/min max", num(stats["written_clusters_per_minute_max"])),
    ]
    dropped = [f"{k.replace('_', ' ')} {stats[k]:,}" for k in ("zero_length", "clamped", "ignored", "skipped_lines") if stats.get(k)]
    if dropped:
        rows.append(("dropped/fixed", ", ".join(dropped)))
    if stats.get("ignored_kinds"):
        rows.append(("ignored records", ignored_text(stats["ignored_kinds"])))
    width = max(len(k) for k, _ in rows)
    lines = [f"{k:<{width}}  {v}" for k, v in rows]
    total = sum(stats["size_histogram"].values()) or 1
    lines.append("request sizes (bucket X holds [X, 2X)):")
    for label, v in stats["size_histogram"].items():
        bar = "#" * max(1, math.ceil(40 * v / total)) if v else ""
        lines.append(f"  {label:>7}  {v:>12,}  {100 * v / total:5.1f} %  {bar}")
    return "\n".join(lines)
