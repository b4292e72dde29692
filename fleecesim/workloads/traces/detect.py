"""Guess a trace's format from its first bytes."""
from __future__ import annotations

import os

from ...errors import TraceError

FORMATS = ("fio", "blkparse", "msr", "disksim", "vscsi", "alibaba")
ALIASES = {"fio2": "fio", "fio3": "fio", "iolog": "fio", "mqsim": "disksim",
           "msrc": "msr", "cloudphysics": "vscsi", "ali": "alibaba"}
PROBE = 64 * 1024


def canonical(fmt: str) -> str:
    f = str(fmt).strip().lower()
    f = ALIASES.get(f, f)
    if f != "auto" and f not in FORMATS:
        raise TraceError(f"unknown trace format {fmt!r}; expected auto or one of {', '.join(FORMATS)}")
    return f


def _is_binary(head: bytes) -> bool:
    if b"\0" in head:
        return True
    text = bytes(range(32, 127)) + b"\t\n\r\f\v"
    odd = len(head.translate(None, text))
    return len(head) > 0 and odd > len(head) // 10


def _vscsi_like(head: bytes) -> bool:
    import numpy as np  # here, not at the top: ``fleecesim trace --help`` reads FORMATS

    from .vscsi import READ_OPS, VSCSI_DTYPE, WRITE_OPS
    n = len(head) // VSCSI_DTYPE.itemsize
    if n == 0:
        return False
    a = np.frombuffer(head[: n * VSCSI_DTYPE.itemsize], dtype=VSCSI_DTYPE)
    return bool(np.isin(a["opcode"], READ_OPS + WRITE_OPS).mean() > 0.5)


def _csv_kind(line: bytes) -> str | None:
    f = [x.strip() for x in line.split(b",")]
    if len(f) == 7 and f[3].lower() in (b"read", b"write") and f[0].isdigit():
        return "msr"
    if len(f) == 5 and f[1].upper() in (b"R", b"W") and f[0].lstrip(b"-").isdigit():
        return "alibaba"
    low = line.lower().replace(b" ", b"")
    if low.startswith(b"timestamp,hostname,disknumber"):
        return "msr"
    if low.startswith(b"device_id,opcode,offset,length"):
        return "alibaba"
    return None


def fio_version(first_line: bytes) -> int | None:
    s = first_line.strip()
    return {b"fio version 2 iolog": 2, b"fio version 3 iolog": 3}.get(s)


def detect_format(path) -> str:
    """Return one of FORMATS, or raise TraceError saying why it cannot tell."""
    try:
        with open(path, "rb") as f:
            head = f.read(PROBE)
    except OSError as e:
        raise TraceError(f"{os.fspath(path)}: cannot read trace: {e.strerror}") from None
    name = os.fspath(path)
    if not head.strip():
        raise TraceError(f"{name}: empty trace file")
    if _is_binary(head):
        if _vscsi_like(head):
            return "vscsi"
        raise TraceError(f"{name}: binary file that is not a vscsi trace; give format: one of {', '.join(FORMATS)}")
    lines = head.split(b"\n")
    if len(head) == PROBE:
        lines = lines[:-1]  # last one may be cut
    if lines and fio_version(lines[0]):
        return "fio"
    from .blkparse import EVENT  # its module reads with numpy: not for ``trace --help``
    if any(EVENT.match(ln) for ln in lines[:200]):
        return "blkparse"
    data = [ln for ln in lines if ln.strip() and not ln.lstrip().startswith(b"#")][:20]
    for ln in data[:2]:
        kind = _csv_kind(ln)
        if kind:
            return kind
    # judged on the first data line only, so a bad later line is reported by the reader
    if data and len(data[0].split()) == 5 and all(_num(x) for x in data[0].split()):
        return "disksim"
    first = data[0].strip().decode("utf-8", "replace")[:60] if data else ""
    raise TraceError(f"{name}:1: cannot tell the trace format from {first!r}; "
                     f"give format: one of {', '.join(FORMATS)}")


def _num(tok: bytes) -> bool:
    try:
        float(tok)
        return True
    except ValueError:
        return False
