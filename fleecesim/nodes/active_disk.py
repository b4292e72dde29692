"""The VM's disk: per-cluster generation numbers and zero map over one device."""
from __future__ import annotations

import numpy as np

from ..workloads.records import OP_DISCARD, OP_READ, OP_WRITE
from ..devices.base import LAST
from ..devices.host import copy_file_range, copy_method
from ..metrics import PATH_DIRECT
from ..sparse import env_sparse, full
from .base import Node


class ActiveDisk(Node):
    """Leaf node. A guest write bumps the generation of every cluster it touches;
    a discard zeroes the clusters it fully covers (and bumps them too: their
    content changed). Reads return the generations as of completion."""

    def __init__(self, env, device, n_clusters: int, cluster_size: int, zero: np.ndarray):
        super().__init__(env, "active-disk", cluster_size)
        self.device = device
        self.n = n_clusters
        self.gen = full(n_clusters, np.uint32, 0, env_sparse(env))
        self.zero = zero  # bool per cluster: reads as zeroes (unallocated)

    def _written(self, offset, length):
        cs = self.cs
        c0 = offset // cs
        c1 = (offset + length + cs - 1) // cs
        if c1 - c0 == 1:
            self.gen[c0] += 1
            self.zero[c0] = False
        else:
            self.gen[c0:c1] += 1
            self.zero[c0:c1] = False

    def _discarded(self, offset, length):
        cs = self.cs
        c0, c1 = self.clusters(offset, length)
        self.gen[c0:c1] += 1
        full0 = -(-offset // cs)
        full1 = (offset + length) // cs
        if full1 > full0:
            self.zero[full0:full1] = True

    def zero_map(self, c0: int, c1: int):
        """Block status: which clusters in [c0, c1) read as zeroes."""
        return self.zero[c0:c1]

    def peek(self, c0: int, c1: int):
        """Content identity without I/O (used for zero clusters, which need no read)."""
        return self.gen[c0:c1].copy()

    def zero_state(self):
        """The whole zero map (a copy: numpy or sparse, as the run keeps state)."""
        return self.zero.copy()

    def peek_state(self):
        """The whole content (a copy: numpy or sparse)."""
        return self.gen.copy()

    def peek_extent(self, c0: int, c1: int):
        """``peek`` of a range of any length: sparse state gives a Segment
        (sparse.py) instead of an array as long as the range."""
        if isinstance(self.gen, np.ndarray):
            return self.gen[c0:c1].copy()
        return self.gen.segment(c0, c1)

    def fast(self, op, offset, length, now):
        if op == OP_READ:
            return self.device.submit(now, offset, length)
        if op == OP_WRITE:
            self._written(offset, length)
            return self.device.submit(now, offset, length, True)
        if op == OP_DISCARD:
            self._discarded(offset, length)
            return self.device.submit(now, offset, 0, True)
        return now  # flush: the model keeps no volatile cache

    def read(self, offset, length, flags=0, att=None):
        env = self.env
        end = self.device.submit(env.now, offset, length)
        if att is not None:
            att.svc = LAST.service
        yield env.timeout(end - env.now)
        c0, c1 = self.clusters(offset, length)
        return self.gen[c0:c1].copy()

    def read_at(self, offset, length):
        end = self.device.submit(self.env._now, offset, length)
        c0, c1 = self.clusters(offset, length)
        return end, lambda: self.gen[c0:c1].copy()  # as of completion, as ``read``

    def copy_method(self, target) -> str:
        """How copy offload into ``target`` (a node over a device) would go:
        ``splice``/``reflink``, or the error (``EXDEV``, ``ENOTSUP``) on which
        block-copy falls back to read + write (devices/host.py: copy_method)."""
        dev = getattr(target, "device", None)
        return copy_method(self.device, dev) if dev is not None else "ENOTSUP"

    def copy_range(self, offset, length, target, method="splice"):
        """Copy offload into ``target``: one copy_file_range through both
        devices (devices/host.py: copy_file_range; ``method`` from
        ``copy_method``). Returns the generations copied, as ``read`` would."""
        env = self.env
        size = self.n * self.cs
        yield from copy_file_range(env, self.device, target.device, offset, length,
                                   size, method)
        c0, c1 = self.clusters(offset, length)
        data = self.gen[c0:c1].copy()
        target.store(offset, length, data)
        return data

    def write(self, offset, length, data=None, flags=0, att=None):
        env = self.env
        self._written(offset, length)
        end = self.device.submit(env.now, offset, length, True)
        if att is not None:
            att.svc = LAST.service
        yield env.timeout(end - env.now)
        return PATH_DIRECT

    def write_at(self, offset, length, data=None, flags=0):
        """Analytic twin of ``write`` (nodes/base.py)."""
        self._written(offset, length)
        return self.device.submit(self.env._now, offset, length, True), _direct

    def discard(self, offset, length, flags=0, att=None):
        env = self.env
        self._discarded(offset, length)
        end = self.device.submit(env.now, offset, 0, True)
        if att is not None:
            att.svc = LAST.service
        yield env.timeout(end - env.now)
        return PATH_DIRECT


def _direct():
    return PATH_DIRECT
