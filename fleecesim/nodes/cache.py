"""The fleecing cache: where CBW puts old data (QEMU: the fleecing image).

Shaped as an ordered list of tiers, each a device with a capacity; data goes to
the first tier with room. (The RAM + disk tiering of the seed adds tiers and
policies on this shape.) Per cluster it keeps which tier holds it (or that it
was saved as zeroes) and the generation it holds.
"""
from __future__ import annotations

import numpy as np

from ..metrics import PATH_DIRECT, PATH_ERROR, Level
from .base import REQ_ZERO, Node

NOT_CACHED = -1
ZERO = 127  # saved as zeroes: metadata only, no space, no data I/O


class Tier:
    def __init__(self, env, name: str, device, capacity: int):
        self.name = name
        self.device = device
        self.capacity = capacity
        self.used = 0
        self.level = Level(env, f"cache.{name}_bytes")

    def room(self) -> int:
        return self.capacity - self.used


class FleecingCache(Node):
    def __init__(self, env, tiers: list[Tier], n_clusters: int, cluster_size: int, stats):
        super().__init__(env, "fleecing-cache", cluster_size)
        self.tiers = tiers
        self.stats = stats
        self.where = np.full(n_clusters, NOT_CACHED, dtype=np.int8)
        self.gen = np.zeros(n_clusters, dtype=np.uint32)
        self.level = Level(env, "fleecing_bytes")

    # -------------------------------------------------------------- queries
    def cached_mask(self, c0: int, c1: int) -> np.ndarray:
        return self.where[c0:c1] != NOT_CACHED

    def zero_map(self, c0: int, c1: int) -> np.ndarray:
        return self.where[c0:c1] == ZERO

    def peek(self, c0: int, c1: int) -> np.ndarray:
        return self.gen[c0:c1].copy()

    # -------------------------------------------------------------- I/O
    def write(self, offset, length, data=None, flags=0):
        env = self.env
        c0, c1 = self.clusters(offset, length)
        if flags & REQ_ZERO:
            self.where[c0:c1] = ZERO
            self.gen[c0:c1] = data
            return PATH_DIRECT
        need = (c1 - c0) * self.cs
        for i, tier in enumerate(self.tiers):
            if tier.room() >= need:
                break
        else:
            return PATH_ERROR
        tier.used += need
        tier.level.add(need)
        self.level.add(need)
        end = tier.device.submit(env.now, offset, length, True)
        yield env.timeout(end - env.now)
        self.where[c0:c1] = i
        self.gen[c0:c1] = data
        self.stats.local_write_bytes += length
        return PATH_DIRECT

    def read(self, offset, length, flags=0):
        env = self.env
        c0, c1 = self.clusters(offset, length)
        w = self.where[c0:c1]
        end = env.now
        for i, tier in enumerate(self.tiers):
            k = int((w == i).sum())
            if k:
                end = max(end, tier.device.submit(env.now, offset, min(length, k * self.cs)))
        if end > env.now:
            yield env.timeout(end - env.now)
        self.stats.local_read_bytes += int((w != ZERO).sum()) * self.cs
        return self.gen[c0:c1].copy()

    def discard(self, offset, length, flags=0):
        self.drop(*self.clusters(offset, length))
        return PATH_DIRECT
        yield  # a generator like every node method; freeing is metadata only

    def drop(self, c0: int, c1: int) -> int:
        """Free clusters [c0, c1); returns bytes freed."""
        w = self.where[c0:c1]
        freed = 0
        for i, tier in enumerate(self.tiers):
            k = int((w == i).sum()) * self.cs
            if k:
                tier.used -= k
                tier.level.add(-k)
                freed += k
        if freed:
            self.level.add(-freed)
        self.where[c0:c1] = NOT_CACHED
        return freed

    def clear(self) -> None:
        """Drop everything (the fleecing image is deleted when the backup ends)."""
        for tier in self.tiers:
            tier.used = 0
            tier.level.set(0)
        self.level.set(0)
        self.where[:] = NOT_CACHED
