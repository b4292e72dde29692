"""The snapshot view (QEMU's snapshot-access): the point-in-time image.

Its one child is the CBW filter, whose snapshot API it calls: a cluster is
read from the fleecing cache if CBW saved it there, else from the active disk.
Push backups copy from it; pull clients read it over NBD.
"""
from __future__ import annotations

import errno

from .base import Node


class SnapshotView(Node):
    # a read it refuses (broken snapshot, outside the access bitmap):
    # block/copy-before-write.c cbw_snapshot_read_lock's -EACCES
    errno = errno.EACCES

    def __init__(self, env, cbw, cluster_size: int):
        super().__init__(env, "snapshot-access", cluster_size)
        self.cbw = cbw
        # The per-copy calls go straight to the filter's methods (instance
        # attributes win over the forwarding methods below): a call less each.
        self.zero_map = cbw.snapshot_zero_map
        self.read_at = cbw.snapshot_read_at
        self.read_cb = cbw.snapshot_read_cb

    def zero_map(self, c0, c1):
        return self.cbw.snapshot_zero_map(c0, c1)

    def peek(self, c0, c1):
        return self.cbw.snapshot_peek(c0, c1)

    def zero_state(self):
        return self.cbw.snapshot_zero_state()

    def peek_state(self):
        return self.cbw.snapshot_peek_state()

    def peek_extent(self, c0, c1):
        return self.cbw.snapshot_peek_extent(c0, c1)

    def read(self, offset, length, flags=0, att=None):
        return (yield from self.cbw.snapshot_read(offset, length))

    def read_at(self, offset, length):
        return self.cbw.snapshot_read_at(offset, length)

    def read_cb(self, offset, length, done):
        return self.cbw.snapshot_read_cb(offset, length, done)

    def discard(self, offset, length, flags=0, att=None):
        return (yield from self.cbw.snapshot_discard(offset, length))
