"""The fleecing cache: where CBW puts old data (QEMU: the fleecing image).

Shaped as an ordered list of tiers, each a device with a capacity; data goes to
the first tier with room. Per cluster it keeps which tier holds it (or that it
was saved as zeroes) and the generation it holds.

The seed's tiered cache is this shape with a RAM tier in front of the
disk tier. Per cluster (numpy arrays, never per-cluster Python objects):

- ``where``: not cached / RAM tier / disk tier / saved as zeroes;
- ``changed``: the active disk's cluster changed since t0 (meaningful for
  cached clusters). CBW data is changed at once (a guest write follows it);
  copy-on-read data (``admit``, BDRV_REQ_UNNECESSARY) is *unchanged* until the
  guest writes the cluster, and while unchanged it can be dropped when room is
  needed (seed 3: it is still on the active disk) or serve guest reads (seed 2);
- "needed" lives in the CBW filter's copy bitmap (the filter owns it).

RAM-tier placements go into a FIFO ring (cluster, stamp), invalidated lazily,
which gives the oldest RAM clusters for the background flush and the oldest
unchanged ones for eviction without scanning the whole disk.
"""
from __future__ import annotations

import errno

import numpy as np

from ..bitmap import count_nonzero
from ..devices.base import LAST
from ..metrics import PATH_DIRECT, PATH_ERROR, Level
from ..sparse import env_sparse, full
from ..workloads.records import OP_READ
from .base import REQ_UNNECESSARY, REQ_ZERO, Node

NOT_CACHED = -1
ZERO = 127  # saved as zeroes: metadata only, no space, no data I/O
FLUSH_BATCH = 16  # clusters the flush moves per step

# np.count_nonzero: ~6x cheaper than .any()/.all()/.sum() on a request's few
# clusters (no ufunc reduction machinery); the same answers.
cnz = count_nonzero


class Tier:
    def __init__(self, env, name: str, device, capacity: int, kind: str | None = None):
        self.name = name
        self.kind = kind or name  # "ram" marks the RAM tier; anything else is a disk tier
        self.device = device
        self.capacity = capacity
        self.used = 0
        self.level = Level(env, f"cache.{name}_bytes")
        self.thin = None      # faults.py: ThinVolume under this tier (thin provisioning)
        self.enospc = False   # faults.py: capacity is the device's free space

    def room(self) -> int:
        return self.capacity - self.used


class FleecingCache(Node):
    # a write it refuses found no room (a full device or volume, a full tier):
    # the errno the copy-before-write hands on (fleecesim/error_policy.py)
    errno = errno.ENOSPC

    def __init__(self, env, tiers: list[Tier], n_clusters: int, cluster_size: int, stats, *,
                 wait_for_room: bool = False, flush_high: float | None = None,
                 flush_low: float = 0.5):
        super().__init__(env, "fleecing-cache", cluster_size)
        self.tiers = tiers
        self.stats = stats
        self.n = n_clusters
        sp = env_sparse(env)
        self.where = full(n_clusters, np.int8, NOT_CACHED, sp)
        self.gen = full(n_clusters, np.uint32, 0, sp)
        self.changed = full(n_clusters, bool, False, sp)
        self.level = Level(env, "fleecing_bytes")
        self.ram = next((i for i, t in enumerate(tiers) if t.kind == "ram"), None)
        self.disk = next((i for i, t in enumerate(tiers) if t.kind != "ram"), None)
        self.clean = 0          # clusters in the RAM tier, unchanged since t0
        self.version = 0        # bumped whenever clusters are placed (policies re-scan)
        self.wait_for_room = wait_for_room  # on-cbw-error=wait: a full cache blocks CBW
        self.flush_high = flush_high
        self.flush_low = flush_low
        self.closed = False
        self._flushing = False
        self._room_ev = env.event()
        # offset -> seconds a write waited for room (full image, thin volume),
        # taken by the copy that made it (its guest's cache-full wait)
        self.stalled: dict[int, float] = {}
        if self.ram is not None:
            cap = tiers[self.ram].capacity // cluster_size
            self.stamp = full(n_clusters, np.uint32, 0, sp)
            self._rc = np.empty(2 * cap + 64, dtype=np.int64)
            self._rs = np.empty(2 * cap + 64, dtype=np.uint32)
            self._rh = self._rt = 0
            self._next_stamp = 1

    # -------------------------------------------------------------- queries
    def cached_mask(self, c0: int, c1: int) -> np.ndarray:
        return self.where[c0:c1] != NOT_CACHED

    def zero_map(self, c0: int, c1: int) -> np.ndarray:
        return self.where[c0:c1] == ZERO

    def peek(self, c0: int, c1: int) -> np.ndarray:
        return self.gen[c0:c1].copy()

    def clean_mask(self, c0: int, c1: int) -> np.ndarray:
        """Clusters held in RAM and unchanged since t0 (copy-on-read data)."""
        return (self.where[c0:c1] == self.ram) & ~self.changed[c0:c1]

    def ram_clean_all(self, c0: int, c1: int) -> bool:
        """Can a guest read of [c0, c1) be served from RAM (seed benefit 2)?"""
        if not self.clean:
            return False
        if c1 - c0 == 1:
            return self.where[c0] == self.ram and not self.changed[c0]
        return bool(self.clean_mask(c0, c1).all())

    def view(self) -> dict:
        """Cache state for copy-ordering policies: arrays, tier codes, a version."""
        return {"where": self.where, "ram": self.ram, "disk": self.disk,
                "version": lambda: self.version}

    # -------------------------------------------------------------- accounting
    def _adjust(self, i: int, delta: int, at: float | None = None) -> None:
        t = self.tiers[i]
        t.used += delta
        t.level.add(delta, at)
        self.level.add(delta, at)

    def _wake_room(self) -> None:
        if self._room_ev.callbacks:
            ev, self._room_ev = self._room_ev, self.env.event()
            ev.succeed()

    def _place(self, need: int) -> int | None:
        """The tier that takes ``need`` bytes of CBW data: RAM while it has room
        (dropping unchanged RAM clusters if that makes room), else the next tier."""
        for i, t in enumerate(self.tiers):
            if t.room() >= need:
                return i
            if i == self.ram and self.clean and t.room() + self.clean * self.cs >= need:
                self._evict_clean(need - t.room())
                return i
        return None

    # -------------------------------------------------------------- RAM ring
    def _ring_push(self, idx: np.ndarray) -> None:
        k = idx.size
        if self._rt + k > self._rc.size:
            self._ring_compact(k)
        s = np.arange(self._next_stamp, self._next_stamp + k, dtype=np.uint32)
        self._next_stamp += k
        self.stamp[idx] = s
        self._rc[self._rt:self._rt + k] = idx
        self._rs[self._rt:self._rt + k] = s
        self._rt += k

    def _ring_live(self):
        c = self._rc[self._rh:self._rt]
        s = self._rs[self._rh:self._rt]
        ok = (self.where[c] == self.ram) & (self.stamp[c] == s)
        return c, ok

    def _ring_compact(self, extra: int) -> None:
        c, ok = self._ring_live()
        c = c[ok]
        s = self._rs[self._rh:self._rt][ok]
        size = self._rc.size
        while c.size + extra > size // 2:
            size *= 2
        if size != self._rc.size:
            self._rc = np.empty(size, dtype=np.int64)
            self._rs = np.empty(size, dtype=np.uint32)
        self._rc[:c.size] = c
        self._rs[:c.size] = s
        self._rh, self._rt = 0, c.size

    def _ram_oldest(self, k: int, clean_only: bool) -> np.ndarray:
        c, ok = self._ring_live()
        if clean_only:
            ok &= ~self.changed[c]
        pos = np.flatnonzero(ok)
        if pos.size and not clean_only:
            self._rh += int(pos[0])  # entries before the first live one are dead
            pos -= int(pos[0])
            c = self._rc[self._rh:self._rt]
        return c[pos[:k]]

    def _evict_clean(self, nbytes: int) -> None:
        """Drop the oldest unchanged RAM clusters (seed 3: the active disk still has them)."""
        k = -(-nbytes // self.cs)
        idx = self._ram_oldest(k, clean_only=True)
        self._drop_ram_idx(idx)
        self.stats.ram_evicted_bytes += idx.size * self.cs

    def _drop_ram_idx(self, idx: np.ndarray) -> None:
        if idx.size:
            self.where[idx] = NOT_CACHED
            self.clean -= int((~self.changed[idx]).sum())
            self.changed[idx] = False
            self._adjust(self.ram, -idx.size * self.cs)

    # -------------------------------------------------------------- I/O
    def fast(self, op, offset, length, now):
        """A guest read served from the RAM tier (the filter checked it is there)."""
        if op == OP_READ and self.ram is not None:
            return self.tiers[self.ram].device.submit(now, offset, length)
        return None

    def serve(self, offset, length, att=None):
        """Generator twin of ``fast``: a guest read from the RAM tier."""
        env = self.env
        end = self.tiers[self.ram].device.submit(env.now, offset, length)
        if att is not None:
            att.svc = LAST.service
        yield env.timeout(end - env.now)
        return True

    def admit(self, c0: int, c1: int, mask: np.ndarray, gens: np.ndarray,
              now: float | None = None) -> int:
        """Copy-on-read with BDRV_REQ_UNNECESSARY: store the clusters of [c0, c1)
        in ``mask`` (unchanged t0 data, generations ``gens``) in the RAM tier as
        far as it has room; the rest are dropped. Never waits: the RAM write is
        queued on the RAM device and nobody waits for it. ``now``: the guest
        fast path's time (may be ahead of env.now). Returns clusters stored."""
        idx = np.flatnonzero(mask)
        k = idx.size
        if not k or self.ram is None or self.closed:
            return 0
        tier = self.tiers[self.ram]
        take = min(k, max(tier.room(), 0) // self.cs)
        self.stats.cor_dropped += k - take
        if not take:
            return 0
        idx = idx[:take]
        cl = idx + c0
        now = self.env.now if now is None else now
        self._adjust(self.ram, take * self.cs, now)
        tier.device.submit(now, c0 * self.cs, take * self.cs, True)
        self.where[cl] = self.ram
        self.gen[cl] = gens[idx]
        self.changed[cl] = False
        self.clean += take
        self._ring_push(cl)
        self.version += 1
        self.stats.cor_admitted += take
        self._maybe_flush(now)
        return take

    def write(self, offset, length, data=None, flags=0, att=None):
        env = self.env
        c0, c1 = self.clusters(offset, length)
        if flags & REQ_UNNECESSARY:
            self.admit(c0, c1, np.ones(c1 - c0, dtype=bool), np.broadcast_to(
                np.asarray(data if data is not None else 0, dtype=np.uint32), (c1 - c0,)))
            return PATH_DIRECT
        if cnz(self.where[c0:c1] != NOT_CACHED):
            self.drop(c0, c1)  # overwritten (not expected for CBW: bits are claimed once)
        if flags & REQ_ZERO:
            self.where[c0:c1] = ZERO
            self.gen[c0:c1] = data
            self.changed[c0:c1] = True
            return PATH_DIRECT
        need = (c1 - c0) * self.cs
        t_in = env.now
        while True:
            if self.closed:
                return PATH_DIRECT  # the image is gone: nothing to keep
            i = self._place(need)
            if i is not None:
                break
            if not self.wait_for_room:
                self.stats.cache_full_errors += 1
                if self.stats.cache_full_errors == 1:
                    self.stats.events.append((env.now, "fleecing image full (ENOSPC): CBW fails"))
                return PATH_ERROR
            self.stats.cbw_room_waits += 1
            if self.stats.cbw_room_waits == 1:
                self.stats.events.append((env.now, "fleecing cache full: CBW waits for room"))
            yield self._room_ev
        tier = self.tiers[i]
        self._adjust(i, need)
        if tier.thin is not None and not tier.thin.room_for(tier.used):  # thin volume full
            if not tier.thin.wait:  # beyond: fail -- ENOSPC now, the volume still grows
                self._adjust(i, -need)
                self.stats.cache_full_errors += 1
                if not tier.thin.refused:
                    tier.thin.refused = True
                    self.stats.events.append((env.now, "thin fleecing volume: write beyond "
                                                       "the allocation (ENOSPC): CBW fails"))
                return PATH_ERROR
            yield from tier.thin.grow_to(tier.used)
            if self.closed:
                return PATH_DIRECT
        if self.ram is not None and i != self.ram:  # spilled: RAM had no room
            self.stats.spill_bytes += need
        if env.now > t_in:  # waited for room or for the volume to grow: the copier asks
            self.stalled[offset] = env.now - t_in
        end = tier.device.submit(env.now, offset, length, True)
        yield env.timeout(end - env.now)
        if not self.closed:
            self._stored(c0, c1, i, data, length)
        return PATH_DIRECT

    def write_at(self, offset, length, data=None, flags=0):
        env = self.env
        c0, c1 = self.clusters(offset, length)
        if flags & REQ_UNNECESSARY:
            return None
        if cnz(self.where[c0:c1] != NOT_CACHED):
            self.drop(c0, c1)
        if flags & REQ_ZERO:
            self.where[c0:c1] = ZERO
            self.gen[c0:c1] = data
            self.changed[c0:c1] = True
            return None, lambda: PATH_DIRECT
        if self.closed:
            return None, lambda: PATH_DIRECT
        need = (c1 - c0) * self.cs
        i = self._place(need)  # evicts only when it returns a tier
        if i is None or self.tiers[i].thin is not None:
            # full (wait for room, or ENOSPC with its event) or a thin volume
            # that may need to grow: the generator path does all of that
            return None
        tier = self.tiers[i]
        self._adjust(i, need)
        if self.ram is not None and i != self.ram:
            self.stats.spill_bytes += need
        end = tier.device.submit(env._now, offset, length, True)

        def finish():
            if self.closed:
                return PATH_DIRECT
            self._stored(c0, c1, i, data, length)
            return PATH_DIRECT
        return end, finish

    def _stored(self, c0, c1, i, data, length) -> None:
        """CBW data has landed in tier ``i``."""
        if c1 - c0 == 1:
            self.where[c0] = i
            self.gen[c0] = data[0] if data is not None else 0
            self.changed[c0] = True
        else:
            self.where[c0:c1] = i
            self.gen[c0:c1] = data
            self.changed[c0:c1] = True
        if i == self.ram:
            self._ring_push(np.arange(c0, c1, dtype=np.int64))
            self._maybe_flush()
        self.version += 1
        self.stats.local_write_bytes += length

    def read_at(self, offset, length):
        env = self.env
        c0, c1 = self.clusters(offset, length)
        w = self.where[c0:c1]
        data = self.gen[c0:c1].copy()
        end = env._now
        for i, tier in enumerate(self.tiers):
            k = int(cnz(w == i))
            if k:
                end = max(end, tier.device.submit(env._now, offset, min(length, k * self.cs)))
        self.stats.local_read_bytes += int(cnz((w != ZERO) & (w != NOT_CACHED))) * self.cs
        return (end if end > env._now else None), lambda: data

    def read(self, offset, length, flags=0, att=None):
        end, data = self.read_at(offset, length)  # the content is captured at submission
        if end is not None:
            yield self.env.timeout(end - self.env.now)
        return data()

    def discard(self, offset, length, flags=0, att=None):
        self.drop(*self.clusters(offset, length))
        return PATH_DIRECT
        yield  # a generator like every node method; freeing is metadata only

    def mark_changed(self, c0: int, c1: int, mask: np.ndarray) -> None:
        """The guest wrote clusters that are cached unchanged (seed 4): no copy,
        only the state changes (and they can no longer be dropped or serve reads)."""
        self.clean -= int((mask & (self.where[c0:c1] == self.ram)).sum())
        self.changed[c0:c1] |= mask

    def drop(self, c0: int, c1: int) -> int:
        """Free clusters [c0, c1); returns bytes freed."""
        w = self.where[c0:c1]
        freed = 0
        for i, tier in enumerate(self.tiers):
            m = w == i
            k = int(m.sum())
            if k:
                if i == self.ram:
                    self.clean -= int((m & ~self.changed[c0:c1]).sum())
                self._adjust(i, -k * self.cs)
                freed += k * self.cs
        self.where[c0:c1] = NOT_CACHED
        self.changed[c0:c1] = False
        if freed:
            self._wake_room()
        return freed

    def clear(self) -> None:
        """Drop everything (the fleecing image is deleted when the backup ends)."""
        self.closed = True
        for tier in self.tiers:
            tier.used = 0
            tier.level.set(0)
        self.level.set(0)
        self.where[:] = NOT_CACHED
        self.changed[:] = False
        self.clean = 0
        ev, self._room_ev = self._room_ev, self.env.event()
        ev.succeed()
        for tier in self.tiers:
            if tier.thin is not None:
                tier.thin.release()  # writes waiting for an extension: the image is gone

    # -------------------------------------------------------------- flush
    def _maybe_flush(self, now: float | None = None) -> None:
        if (self.flush_high is not None and not self._flushing and self.disk is not None
                and self.tiers[self.ram].used > self.flush_high * self.tiers[self.ram].capacity):
            self._flushing = True
            self.env.process(self._flush(now))

    def _flush(self, start: float | None = None):
        """Background flush: move the oldest RAM clusters to the disk tier (changed
        ones; unchanged ones are just dropped) until the low watermark."""
        env, cs = self.env, self.cs
        ram, disk = self.tiers[self.ram], self.tiers[self.disk]
        low = self.flush_low * ram.capacity
        try:
            if start is not None and start > env.now:  # triggered on the guest fast path
                yield env.timeout(start - env.now)
            while ram.used > low and not self.closed:
                want = min(FLUSH_BATCH, -(-int(ram.used - low) // cs))  # stop at low
                idx = self._ram_oldest(want, clean_only=False)
                if idx.size == 0:
                    break
                clean = ~self.changed[idx]
                if clean.any():
                    self._drop_ram_idx(idx[clean])
                    self.stats.ram_evicted_bytes += int(clean.sum()) * cs
                    self._wake_room()
                dirty = idx[~clean][:max(disk.room(), 0) // cs]
                if dirty.size == 0:
                    if clean.any():
                        continue
                    break  # the disk tier is full: nothing to flush into
                nbytes = dirty.size * cs
                stamps = self.stamp[dirty].copy()
                self._adjust(self.disk, nbytes)
                now = env.now
                end = max(ram.device.submit(now, int(dirty[0]) * cs, nbytes),
                          disk.device.submit(now, int(dirty[0]) * cs, nbytes, True))
                yield env.timeout(end - now)
                if self.closed:
                    break
                ok = (self.where[dirty] == self.ram) & (self.stamp[dirty] == stamps)
                moved = dirty[ok]
                self.where[moved] = self.disk
                if moved.size:
                    self._adjust(self.ram, -moved.size * cs)
                    self.stats.flush_bytes += moved.size * cs
                    self.stats.local_write_bytes += moved.size * cs
                if moved.size < dirty.size:  # dropped (read-once) while in flight
                    self._adjust(self.disk, -(dirty.size - moved.size) * cs)
                self.version += 1
                self._wake_room()
        finally:
            self._flushing = False
