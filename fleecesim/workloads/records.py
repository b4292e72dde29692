"""The one normalized guest request stream every workload source produces.

A source yields chunks: numpy structured arrays of ``RECORD_DTYPE``, ordered by
``time`` (seconds from the start of the guest run). Offsets and lengths are bytes.
Chunked arrays keep memory flat for multi-GB traces and let generation be
vectorised.
"""
from __future__ import annotations

import numpy as np

OP_READ = 0
OP_WRITE = 1
OP_DISCARD = 2
OP_FLUSH = 3
OP_NAMES = ("read", "write", "discard", "flush")

RECORD_DTYPE = np.dtype(
    [("time", "f8"), ("op", "u1"), ("offset", "i8"), ("length", "i8")]
)

CHUNK = 65536  # records per chunk: large enough to amortise numpy, small for memory


def empty(n: int = 0) -> np.ndarray:
    return np.zeros(n, dtype=RECORD_DTYPE)
