"""The simple tabular formats: DiskSim/MQSim ASCII, MSR Cambridge CSV, Alibaba CSV."""
from __future__ import annotations

import numpy as np

from ..records import OP_READ, OP_WRITE
from ._text import TextReader, loadtxt, row_lines, to_int, show

SECTOR = 512


def _arrays(T, O, OFF, L, N, tdtype=np.int64):
    return (np.asarray(T, dtype=tdtype), np.asarray(O, dtype=np.uint8),
            np.asarray(OFF, dtype=np.int64), np.asarray(L, dtype=np.int64),
            np.asarray(N, dtype=np.int64))


def _nonneg(*cols):
    for c in cols:
        if (c < 0).any():
            raise ValueError("negative")


def _csv_header(line: bytes) -> bool:
    """A header row is one whose first field is not a number."""
    first = line.split(b",", 1)[0].strip()
    return bool(first) and not first.lstrip(b"-").isdigit() and not first.startswith(b"#")


class DiskSimReader(TextReader):
    """``arrival_time_ns devno start_lba_512B size_sectors type`` (type 0 write, 1 read).

    Times are parsed as float ns (exact for integers below 2**53 ns = 104 days)
    so both MQSim's integer ns and fractional values load. ``device`` is devno.
    """

    unit = 1e-9
    EXPECT = "ARRIVAL_NS DEVNO LBA SECTORS TYPE(0=write,1=read)"
    DT = [("t", "f8"), ("dev", "i8"), ("lba", "i8"), ("n", "i8"), ("type", "i8")]

    def __init__(self, path, device, counters):
        super().__init__(path, device, counters)
        self.dev = None if device is None else _int_device(device, "DiskSim devno")

    def fast(self, block, first):
        a = loadtxt(block, self.DT)
        _nonneg(a["t"], a["lba"], a["n"])
        if ((a["type"] != 0) & (a["type"] != 1)).any():
            raise ValueError("type")
        lines = row_lines(block, first, len(a))
        keep = slice(None) if self.dev is None else a["dev"] == self.dev
        op = np.where(a["type"] == 1, OP_READ, OP_WRITE).astype(np.uint8)
        return (a["t"][keep], op[keep], a["lba"][keep] * SECTOR, a["n"][keep] * SECTOR, lines[keep])

    def slow(self, lines, first):
        T, O, OFF, L, N = [], [], [], [], []
        for i, line in enumerate(lines):
            n = first + i
            f = line.split()
            if not f or f[0].startswith(b"#"):
                continue
            if len(f) != 5:
                raise self.err(n, f"expected {self.EXPECT!r}, got {show(line)!r}")
            try:
                t = float(f[0])
            except ValueError:
                raise self.err(n, f"arrival time must be a number; expected {self.EXPECT!r}, got {show(line)!r}") from None
            if not t >= 0:
                raise self.err(n, f"negative arrival time in {show(line)!r}")
            dev = to_int(f[1], self.path, n, "devno", line, self.EXPECT, None)
            lba = to_int(f[2], self.path, n, "start LBA", line, self.EXPECT)
            cnt = to_int(f[3], self.path, n, "size", line, self.EXPECT)
            typ = to_int(f[4], self.path, n, "type", line, self.EXPECT, None)
            if typ not in (0, 1):
                raise self.err(n, f"unknown request type {typ} (0 = write, 1 = read) in {show(line)!r}")
            if self.dev is not None and dev != self.dev:
                continue
            T.append(t); O.append(OP_READ if typ == 1 else OP_WRITE)
            OFF.append(lba * SECTOR); L.append(cnt * SECTOR); N.append(n)
        return _arrays(T, O, OFF, L, N, np.float64)


class MSRReader(TextReader):
    """MSR Cambridge: ``Timestamp,Hostname,DiskNumber,Type,Offset,Size,ResponseTime``.

    Timestamp is a Windows FILETIME (100 ns ticks). ``device`` is ``HOST``,
    ``HOST:DISK`` (also ``HOST_DISK``, the MSR file naming) or a bare disk number.
    """

    unit = 1e-7
    first_line = staticmethod(_csv_header)
    EXPECT = "Timestamp,Hostname,DiskNumber,Read|Write,Offset,Size,ResponseTime"

    def __init__(self, path, device, counters):
        super().__init__(path, device, counters)
        self.host = self.disk = None
        if device is not None:
            s = str(device).strip()
            for sep in (":", "_", ","):
                if sep in s:
                    h, d = s.rsplit(sep, 1)
                    self.host, self.disk = h, _int_device(d, "MSR disk number")
                    break
            else:
                if s.isdigit():
                    self.disk = int(s)
                else:
                    self.host = s
        self.hb = self.host.encode() if self.host is not None else None
        self.dt = [("ts", "i8"), ("h", f"S{len(self.hb) + 1}" if self.hb else "S1"), ("d", "i8"),
                   ("type", "S6"), ("off", "i8"), ("len", "i8"), ("rt", "f8")]

    def fast(self, block, first):
        a = loadtxt(block, self.dt, delimiter=",")
        _nonneg(a["off"], a["len"])
        isr, isw = a["type"] == b"Read", a["type"] == b"Write"
        if not (isr | isw).all():
            raise ValueError("type")
        lines = row_lines(block, first, len(a))
        keep = np.ones(len(a), dtype=bool)
        if self.hb is not None:
            keep &= a["h"] == self.hb
        if self.disk is not None:
            keep &= a["d"] == self.disk
        op = np.where(isr, OP_READ, OP_WRITE).astype(np.uint8)
        return a["ts"][keep], op[keep], a["off"][keep], a["len"][keep], lines[keep]

    def slow(self, lines, first):
        T, O, OFF, L, N = [], [], [], [], []
        for i, line in enumerate(lines):
            n = first + i
            if not line.strip() or line.lstrip().startswith(b"#"):
                continue
            f = [x.strip() for x in line.split(b",")]
            if len(f) != 7:
                raise self.err(n, f"expected {self.EXPECT!r}, got {show(line)!r}")
            ts = to_int(f[0], self.path, n, "timestamp", line, self.EXPECT)
            disk = to_int(f[2], self.path, n, "disk number", line, self.EXPECT)
            typ = f[3].lower()
            if typ not in (b"read", b"write"):
                raise self.err(n, f"unknown request type {f[3].decode(errors='replace')!r} (Read|Write) in {show(line)!r}")
            off = to_int(f[4], self.path, n, "offset", line, self.EXPECT)
            ln = to_int(f[5], self.path, n, "size", line, self.EXPECT)
            if (self.hb is not None and f[1] != self.hb) or (self.disk is not None and disk != self.disk):
                continue
            T.append(ts); O.append(OP_READ if typ == b"read" else OP_WRITE)
            OFF.append(off); L.append(ln); N.append(n)
        return _arrays(T, O, OFF, L, N)


class AlibabaReader(TextReader):
    """Alibaba block traces: ``device_id,opcode,offset,length,timestamp_us`` (opcode R/W, bytes)."""

    unit = 1e-6
    first_line = staticmethod(_csv_header)
    EXPECT = "device_id,R|W,offset,length,timestamp_us"
    DT = [("dev", "i8"), ("op", "S2"), ("off", "i8"), ("len", "i8"), ("ts", "i8")]

    def __init__(self, path, device, counters):
        super().__init__(path, device, counters)
        self.dev = None if device is None else _int_device(device, "Alibaba device_id")

    def fast(self, block, first):
        a = loadtxt(block, self.DT, delimiter=",")
        _nonneg(a["off"], a["len"], a["ts"])
        isr, isw = a["op"] == b"R", a["op"] == b"W"
        if not (isr | isw).all():
            raise ValueError("op")
        lines = row_lines(block, first, len(a))
        keep = slice(None) if self.dev is None else a["dev"] == self.dev
        op = np.where(isr, OP_READ, OP_WRITE).astype(np.uint8)
        return a["ts"][keep], op[keep], a["off"][keep], a["len"][keep], lines[keep]

    def slow(self, lines, first):
        T, O, OFF, L, N = [], [], [], [], []
        for i, line in enumerate(lines):
            n = first + i
            if not line.strip() or line.lstrip().startswith(b"#"):
                continue
            f = [x.strip() for x in line.split(b",")]
            if len(f) != 5:
                raise self.err(n, f"expected {self.EXPECT!r}, got {show(line)!r}")
            dev = to_int(f[0], self.path, n, "device_id", line, self.EXPECT, None)
            opc = f[1].upper()
            if opc not in (b"R", b"W"):
                raise self.err(n, f"unknown opcode {f[1].decode(errors='replace')!r} (R|W) in {show(line)!r}")
            off = to_int(f[2], self.path, n, "offset", line, self.EXPECT)
            ln = to_int(f[3], self.path, n, "length", line, self.EXPECT)
            ts = to_int(f[4], self.path, n, "timestamp", line, self.EXPECT)
            if self.dev is not None and dev != self.dev:
                continue
            T.append(ts); O.append(OP_READ if opc == b"R" else OP_WRITE)
            OFF.append(off); L.append(ln); N.append(n)
        return _arrays(T, O, OFF, L, N)


def _int_device(d, what: str) -> int:
    from ...errors import ConfigError
    try:
        return int(str(d).strip())
    except ValueError:
        raise ConfigError(f"device: {what} must be an integer, got {d!r}") from None
