"""fio iolog v2 and v3 (``read_iolog``/``write_iolog`` text logs).

Layout, checked against fio's iolog.c and HOWTO ("Trace file format"):

* v2: header ``fio version 2 iolog``; ``FILE add|open|close``;
  ``FILE read|write|trim|sync|datasync OFFSET LENGTH``; ``FILE wait USEC``.
  Time advances only through ``wait`` (microseconds, cumulative: HOWTO says a
  wait is relative to the previous one). fio's replay code reads the value as
  absolute ms since start; we follow the documented meaning. A 3-field
  ``FILE wait USEC`` is accepted as well as fio's 4-field form.
* v3 (fio >= 3.31): header ``fio version 3 iolog``; every line starts with a
  timestamp in **microseconds** since the start of the run (fio writes
  ``utime_since_now(&td->io_log_start_time)``): ``TS FILE add|open|close`` and
  ``TS FILE ACTION OFFSET LENGTH``. fio ignores ``wait`` in v3; so do we (counted).

sync/datasync become flushes; trim becomes discard. ``device`` selects a FILE.
"""
from __future__ import annotations

import numpy as np

from ..records import OP_DISCARD, OP_FLUSH, OP_READ, OP_WRITE
from ._text import TextReader, loadtxt, row_lines, to_int, show

IO_OPS = {b"read": OP_READ, b"write": OP_WRITE, b"trim": OP_DISCARD,
          b"sync": OP_FLUSH, b"datasync": OP_FLUSH}
FILE_ACTS = {b"add", b"open", b"close"}
WAIT = -1  # internal op code for v2 waits


def _codes(acts: np.ndarray, allow_wait: bool) -> np.ndarray:
    code = np.full(len(acts), -2, dtype=np.int16)
    for name, op in IO_OPS.items():
        code[acts == name] = op
    if allow_wait:
        code[acts == b"wait"] = WAIT
    if (code == -2).any():
        raise ValueError("unknown action")
    return code


class FioReader(TextReader):
    unit = 1e-6  # both versions count microseconds

    def __init__(self, path, device, counters, version: int):
        super().__init__(path, device, counters)
        self.version = version
        self.clock = 0  # v2: accumulated waits, us
        self.fname_dt = f"S{len(device.encode()) + 1}" if device is not None else "S1"
        self.dev = device.encode() if device is not None else None

    def _expect(self) -> str:
        if self.version == 2:
            return "FILE read|write|trim|sync OFFSET LENGTH, FILE wait USEC or FILE add|open|close"
        return "TIMESTAMP_US FILE read|write|trim|sync OFFSET LENGTH or TIMESTAMP_US FILE add|open|close"

    def first_line(self, line):
        if line.strip() != f"fio version {self.version} iolog".encode():
            raise self.err(1, f"expected header 'fio version {self.version} iolog', got {show(line)!r}")
        return True

    def fast(self, block, first):
        if self.version == 3:
            dt = [("ts", "i8"), ("f", self.fname_dt), ("act", "S9"), ("off", "i8"), ("len", "i8")]
        else:
            dt = [("f", self.fname_dt), ("act", "S9"), ("off", "i8"), ("len", "i8")]
        a = loadtxt(block, dt)
        if (a["off"] < 0).any() or (a["len"] < 0).any():
            raise ValueError("negative")
        code = _codes(a["act"], self.version == 2)
        lines = row_lines(block, first, len(a))
        if self.version == 2:
            wait = np.where(code == WAIT, a["off"], 0)
            t = np.cumsum(wait) + self.clock
            if len(t):
                self.clock = int(t[-1])
        else:
            t = a["ts"]
            if (t < 0).any():
                raise ValueError("negative")
        keep = code >= 0
        if self.dev is not None:
            keep &= a["f"] == self.dev
        return t[keep], code[keep].astype(np.uint8), a["off"][keep], a["len"][keep], lines[keep]

    def slow(self, lines, first):
        T, O, OFF, L, N = [], [], [], [], []
        v3 = self.version == 3
        for i, line in enumerate(lines):
            n = first + i
            f = line.split()
            if not f or f[0].startswith(b"#"):
                continue
            if v3:
                ts = to_int(f[0], self.path, n, "timestamp", line, self._expect())
                f = f[1:]
            if len(f) == 2 and f[1] in FILE_ACTS:
                continue
            if len(f) in (3, 4) and f[1] == b"wait":
                if v3:
                    self.counters["ignored"] = self.counters.get("ignored", 0) + 1
                    continue
                self.clock += to_int(f[2], self.path, n, "wait", line, self._expect())
                continue
            if len(f) != 4 or f[1] not in IO_OPS:
                raise self.err(n, f"expected {self._expect()!r}, got {show(line)!r}")
            off = to_int(f[2], self.path, n, "offset", line, self._expect())
            ln = to_int(f[3], self.path, n, "length", line, self._expect())
            if self.dev is not None and f[0] != self.dev:
                continue
            T.append(ts if v3 else self.clock)
            O.append(IO_OPS[f[1]])
            OFF.append(off)
            L.append(ln)
            N.append(n)
        return (np.asarray(T, dtype=np.int64), np.asarray(O, dtype=np.uint8),
                np.asarray(OFF, dtype=np.int64), np.asarray(L, dtype=np.int64),
                np.asarray(N, dtype=np.int64))
