"""Shared machinery for the text trace formats.

Each text format parses a block of whole lines in two ways: a fast path
(``numpy.loadtxt`` on the block, ~8M lines/s) that raises ``ValueError`` on
anything unusual, and a per-line slow path that is the authority: it accepts the
odd lines the format allows (headers, file actions, comments) and raises a
``TraceError`` naming the exact line for anything else. So the fast path only
ever has to be right on the plain case.
"""
from __future__ import annotations

import io
import os
import warnings
from typing import Iterator

import numpy as np

from ...errors import TraceError
from .. import records as R

BLOCK_BYTES = 2 << 20  # ~60k lines of a typical trace per block
MAX_LINE = 1 << 20     # a "line" longer than this means the file is not text

# Internal record: the public fields plus the source line/record number, which
# is carried to the end so late checks (map="error") can name the line.
RAW_DTYPE = np.dtype(R.RECORD_DTYPE.descr + [("line", "i8")])


def raw(n: int) -> np.ndarray:
    return np.zeros(n, dtype=RAW_DTYPE)


def where(path, line: int, binary: bool = False) -> str:
    return f"{os.fspath(path)}: record {line}" if binary else f"{os.fspath(path)}:{line}"


def text_blocks(path, block_bytes: int = BLOCK_BYTES) -> Iterator[tuple[int, bytes]]:
    """Yield (number of the first line, block of whole lines) without loading the file."""
    with open(path, "rb") as f:
        lineno, tail = 1, b""
        while True:
            data = f.read(block_bytes)
            if not data:
                if tail.strip():
                    yield lineno, tail
                return
            data = tail + data
            cut = data.rfind(b"\n") + 1
            if cut == 0:
                if len(data) > MAX_LINE:
                    raise TraceError(f"{where(path, lineno)}: line longer than {MAX_LINE} bytes; not a text trace")
                tail = data
                continue
            block, tail = data[:cut], data[cut:]
            yield lineno, block
            lineno += block.count(b"\n")


def block_lines(block: bytes) -> list[bytes]:
    lines = block.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return lines


def is_skippable(line: bytes) -> bool:
    s = line.strip()
    return not s or s.startswith(b"#")


def loadtxt(block: bytes, dtype, delimiter=None) -> np.ndarray:
    """numpy's C parser on one block; ValueError on any malformed row."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "input contained no data" for all-blank blocks
        a = np.loadtxt(io.BytesIO(block), dtype=dtype, delimiter=delimiter,
                       comments="#", ndmin=1, encoding=None)
    return a


def row_lines(block: bytes, first: int, nrows: int) -> np.ndarray:
    """Line number of each data row loadtxt returned (it skips blanks and comments)."""
    n = block.count(b"\n") + (0 if block.endswith(b"\n") else 1)
    if nrows == n:
        return np.arange(first, first + n, dtype=np.int64)
    idx = [i for i, ln in enumerate(block_lines(block)) if not is_skippable(ln)]
    if len(idx) != nrows:
        raise ValueError("row/line mismatch")
    return np.asarray(idx, dtype=np.int64) + first


def to_int(tok: bytes, path, lineno: int, what: str, line: bytes, expect: str, minimum=0) -> int:
    try:
        v = int(tok)
    except ValueError:
        raise TraceError(f"{where(path, lineno)}: {what} must be an integer; expected {expect!r}, got {show(line)!r}") from None
    if minimum is not None and v < minimum:
        raise TraceError(f"{where(path, lineno)}: negative {what} {v} in {show(line)!r}")
    return v


def show(line: bytes) -> str:
    s = line.strip().decode("utf-8", "replace")
    return s if len(s) <= 80 else s[:77] + "..."




def pack(time, op, offset, length, line) -> np.ndarray:
    a = raw(len(time))
    a["time"], a["op"], a["offset"], a["length"], a["line"] = time, op, offset, length, line
    return a


class TextReader:
    """Drive fast/slow parsing of blocks; subclasses implement ``fast`` and ``slow``.

    ``fast(block, first)`` and ``slow(lines, first)`` return
    (raw_time, op, offset, length, line) with raw_time in the format's native unit
    (int64 where the unit is an integer count, so big epochs stay exact).
    """

    unit = 1.0  # seconds per native time unit
    block_bytes = BLOCK_BYTES

    def __init__(self, path, device, counters: dict):
        self.path = path
        self.device = device
        self.counters = counters
        self.base = None

    def err(self, lineno: int, msg: str) -> TraceError:
        return TraceError(f"{where(self.path, lineno)}: {msg}")

    def __iter__(self) -> Iterator[np.ndarray]:
        for first, block in text_blocks(self.path, self.block_bytes):
            if first == 1:
                nl = block.find(b"\n")
                head = block if nl < 0 else block[:nl]
                if self.first_line(head):
                    block, first = (b"" if nl < 0 else block[nl + 1:]), 2
                    if not block:
                        continue
            try:
                cols = self.fast(block, first)
            except ValueError:
                cols = self.slow(block_lines(block), first)
            if cols is None:
                continue
            t, op, off, ln, lines = cols
            if len(t) == 0:
                continue
            if self.base is None:
                self.base = t[0]
            # integer subtraction first: FILETIME epochs do not fit a double exactly
            tsec = (np.asarray(t) - self.base).astype(np.float64) * self.unit
            yield pack(tsec, op, off, ln, lines)

    def first_line(self, line: bytes) -> bool:
        """True if line 1 is a header to drop (may raise if a header is required)."""
        return False

    def fast(self, block: bytes, first: int):
        raise ValueError("no fast path")

    def slow(self, lines: list[bytes], first: int):
        raise NotImplementedError
