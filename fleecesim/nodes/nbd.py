"""An NBD export seen from the client's side of a network link.

Its one child is the exported node (the snapshot view for pull fleecing); the
``link`` is a device with timing only (RTT as latency, link bandwidth, requests
in flight as slots). A read is served by the child and its data then crosses
the link; a discard (TRIM) is one round trip, then reaches the child. Block
status (``zero_map``, ``peek``) is passed through at no cost: NBD_CMD_BLOCK_STATUS
answers for a whole chunk in one round trip that a client overlaps with its
reads, so we do not charge it.
"""
from __future__ import annotations

from .base import Node


class NBDExport(Node):
    def __init__(self, env, child, link, cluster_size: int, stats=None):
        super().__init__(env, "nbd-export", cluster_size)
        self.child = child
        self.link = link
        self.stats = stats
        self.read_bytes = 0
        self.discards = 0

    def zero_map(self, c0, c1):
        return self.child.zero_map(c0, c1)

    def peek(self, c0, c1):
        return self.child.peek(c0, c1)

    def zero_state(self):
        return self.child.zero_state()

    def peek_state(self):
        return self.child.peek_state()

    def peek_extent(self, c0, c1):
        return self.child.peek_extent(c0, c1)

    def read(self, offset, length, flags=0, att=None):
        env = self.env
        data = yield from self.child.read(offset, length, flags)
        if data is None:
            return None
        end = self.link.submit(env.now, offset, length)
        yield env.timeout(end - env.now)
        self.read_bytes += length
        return data

    def discard(self, offset, length, flags=0, att=None):
        env = self.env
        end = self.link.submit(env.now, offset, 0, True)
        yield env.timeout(end - env.now)
        self.discards += 1
        return (yield from self.child.discard(offset, length, flags))
