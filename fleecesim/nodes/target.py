"""The backup target: the remote image the backup writes (reached over NBD)."""
from __future__ import annotations

import numpy as np

from ..metrics import PATH_DIRECT
from .base import REQ_ZERO, Node

UNWRITTEN = np.uint32(0xFFFFFFFF)


class BackupTarget(Node):
    """Stores the generation each copy carried, and counts copies per cluster
    (a cluster copied twice is a bug the tests look for)."""

    def __init__(self, env, device, n_clusters: int, cluster_size: int, stats):
        super().__init__(env, "target", cluster_size)
        self.device = device
        self.stats = stats
        self.gen = np.full(n_clusters, UNWRITTEN, dtype=np.uint32)
        self.copies = np.zeros(n_clusters, dtype=np.uint8)  # > 1 is a bug; counts wrap at 256

    def write(self, offset, length, data=None, flags=0):
        env = self.env
        zero = bool(flags & REQ_ZERO)
        end = self.device.submit(env.now, offset, 0 if zero else length, True)
        yield env.timeout(end - env.now)
        c0, c1 = self.clusters(offset, length)
        self.gen[c0:c1] = data
        self.copies[c0:c1] += 1
        if zero:
            self.stats.target_zero_bytes += length
        else:
            self.stats.target_write_bytes += length
        return PATH_DIRECT
