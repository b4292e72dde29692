"""blkparse default text output.

``maj,min cpu seq time pid action rwbs [sector + nblocks] [process]``. Only lines
of one action are kept (``events="C"`` completions, or ``"Q"`` queued; ``"D"``
issued also works); everything else (other actions, ``CPU0 (8,0):`` summary
blocks, remaps) is skipped and counted. rwbs: D -> discard, W -> write,
R -> read; a line with no data payload and F in rwbs (a pure flush, e.g.
``Q FWS [jbd2]``) -> flush. A preflush+write line (``FWS 100 + 8``) becomes one
write: the data dominates what the simulator cares about. Sectors are 512 B.
``device`` is ``maj,min``.
"""
from __future__ import annotations

import re

import numpy as np

from ...errors import ConfigError
from ..records import OP_DISCARD, OP_FLUSH, OP_READ, OP_WRITE
from ._text import TextReader, pack, show, text_blocks

SECTOR = 512
EVENT = re.compile(rb"^[ \t]*(\d+,\d+)[ \t]+\d+[ \t]+\d+[ \t]+(\d+\.\d+)[ \t]+\d+[ \t]+(\S+)[ \t]+([A-Z]+)(.*?)\r?$", re.M)
PAYLOAD = re.compile(rb"[ \t]+(\d+)[ \t]+\+[ \t]+(\d+)(?:[ \t]|$)")


class BlkparseReader(TextReader):
    def __init__(self, path, device, counters, events: str = "C"):
        super().__init__(path, device, counters)
        if events not in ("C", "Q", "D"):
            raise ConfigError(f"events: expected 'C' (completed), 'Q' (queued) or 'D' (issued), got {events!r}")
        self.events = events.encode()
        self.dev = None
        if device is not None:
            d = str(device).replace(" ", "")
            if not re.fullmatch(r"\d+,\d+", d):
                raise ConfigError(f"device: blkparse device must be 'MAJ,MIN' like '8,0', got {device!r}")
            self.dev = d.encode()

    def __iter__(self):
        # One regex pass per block (C speed) finds event lines; Python touches
        # only the matches, so chatter lines cost almost nothing.
        for first, block in text_blocks(self.path, self.block_bytes):
            T, O, OFF, L, N = [], [], [], [], []
            pos, lineno = 0, first
            skipped = 0
            for m in EVENT.finditer(block):
                lineno += block.count(b"\n", pos, m.start())
                pos = m.start()
                dev, ts, act, rwbs, rest = m.groups()
                if act != self.events or (self.dev is not None and dev != self.dev):
                    skipped += 1
                    continue
                p = PAYLOAD.match(rest)
                if p:
                    off, n = int(p.group(1)) * SECTOR, int(p.group(2)) * SECTOR
                    if b"D" in rwbs:
                        op = OP_DISCARD
                    elif b"W" in rwbs:
                        op = OP_WRITE
                    elif b"R" in rwbs:
                        op = OP_READ
                    elif b"F" in rwbs:
                        op, off, n = OP_FLUSH, 0, 0
                    else:  # no R/W/D/F (e.g. N, or an unknown letter): counted by kind
                        hist = self.counters.setdefault("ignored_kinds", {})
                        k = f"rwbs {rwbs.decode(errors='replace')}"
                        hist[k] = hist.get(k, 0) + 1
                        self.counters["ignored"] = self.counters.get("ignored", 0) + 1
                        continue
                else:
                    r = rest.strip()
                    if r and not r.startswith(b"["):
                        raise self.err(lineno, f"expected 'SECTOR + NBLOCKS [process]' after {rwbs.decode()!r}, got {show(m.group(0))!r}")
                    if b"F" not in rwbs:
                        skipped += 1
                        continue
                    op, off, n = OP_FLUSH, 0, 0
                T.append(float(ts)); O.append(op); OFF.append(off); L.append(n); N.append(lineno)
            self.counters["skipped_lines"] = self.counters.get("skipped_lines", 0) + skipped
            if not T:
                continue
            t = np.asarray(T)
            if self.base is None:
                self.base = t[0]
            yield pack(t - self.base, np.asarray(O, np.uint8), np.asarray(OFF, np.int64),
                       np.asarray(L, np.int64), np.asarray(N, np.int64))
