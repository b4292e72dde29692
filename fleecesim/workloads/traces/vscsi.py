"""CloudPhysics vscsi binary traces: 32-byte little-endian records.

``sn u32, length u32 (bytes), nSG u32, opcode u16, version u16, lbn u64 (512 B
sectors), timestamp u64 (us)``. SCSI READ/WRITE opcodes (6/10/12/16-byte CDBs)
map to read/write; other opcodes are skipped and counted in ``ignored``.
"""
from __future__ import annotations

import numpy as np

from ...errors import ConfigError, TraceError
from ..records import CHUNK, OP_READ, OP_WRITE
from ._text import pack, where

VSCSI_DTYPE = np.dtype([("sn", "<u4"), ("length", "<u4"), ("nsg", "<u4"), ("opcode", "<u2"),
                        ("version", "<u2"), ("lbn", "<u8"), ("ts", "<u8")])
assert VSCSI_DTYPE.itemsize == 32
READ_OPS = (0x08, 0x28, 0xA8, 0x88)
WRITE_OPS = (0x0A, 0x2A, 0xAA, 0x8A)
SECTOR = 512


class VscsiReader:
    def __init__(self, path, device, counters):
        if device is not None:
            raise ConfigError("device: vscsi traces hold a single device; drop 'device'")
        self.path, self.counters, self.base = path, counters, None

    def __iter__(self):
        size = VSCSI_DTYPE.itemsize
        recno = 1
        with open(self.path, "rb") as f:
            while True:
                data = f.read(CHUNK * size)
                if not data:
                    return
                whole = len(data) // size
                if len(data) % size:
                    raise TraceError(f"{where(self.path, recno + whole, True)}: truncated record "
                                     f"({len(data) % size} of {size} bytes at end of file)")
                a = np.frombuffer(data, dtype=VSCSI_DTYPE)
                nums = np.arange(recno, recno + whole, dtype=np.int64)
                recno += whole
                isr, isw = np.isin(a["opcode"], READ_OPS), np.isin(a["opcode"], WRITE_OPS)
                keep = isr | isw
                self.counters["ignored"] = self.counters.get("ignored", 0) + int((~keep).sum())
                if not keep.all():  # which commands were skipped (a trace holds INQUIRY,
                    # TEST UNIT READY, SYNCHRONIZE CACHE ... besides reads and writes)
                    ops, cnt = np.unique(a["opcode"][~keep], return_counts=True)
                    hist = self.counters.setdefault("ignored_kinds", {})
                    for o, c in zip(ops.tolist(), cnt.tolist()):
                        hist[f"opcode 0x{o:02x}"] = hist.get(f"opcode 0x{o:02x}", 0) + c
                if not keep.any():
                    continue
                a, isr, nums = a[keep], isr[keep], nums[keep]
                if (a["lbn"] > (1 << 54)).any():  # would overflow int64 bytes
                    bad = int(nums[np.argmax(a["lbn"] > (1 << 54))])
                    raise TraceError(f"{where(self.path, bad, True)}: LBN out of range")
                ts = a["ts"].astype(np.int64)
                if self.base is None:
                    self.base = ts[0]
                yield pack((ts - self.base) * 1e-6, np.where(isr, OP_READ, OP_WRITE).astype(np.uint8),
                           a["lbn"].astype(np.int64) * SECTOR, a["length"].astype(np.int64), nums)
