"""A hard disk: one head, a distance-dependent seek, rotation, zoned
recording, an optional read-ahead cache and an optional write-back cache.

Timing only: the drive knows byte offsets (for the head position and the
zone) but no data. Analytic like ``Device``: every request's completion is
fixed when it is submitted; the head is one FIFO server (``_free_t`` = when it
is next free).

* **Seek** (``SeekCurve``): the Ruemmler & Wilkes form (C. Ruemmler, J. Wilkes,
  "An introduction to disk drive modeling", IEEE Computer 27(3), 1994, §
  "Seek time"): ``a + b*sqrt(x)`` for short seeks, ``c + e*x`` for long ones,
  x = seek distance / full stroke. Its four coefficients come from the three
  numbers a datasheet gives (track-to-track, average, full stroke): a =
  track-to-track, the long part ends at the full-stroke time, the two parts
  meet at the knee, and the curve's mean over the datasheet's weighting of
  seek lengths — weight (max+1-n) for an n-track seek, i.e. density 2(1-x) —
  is the average. The knee is fixed where Ruemmler & Wilkes's fitted HP 97560
  curve switches form (383 of 1962 cylinders, x = 0.195). Distance is in
  bytes over ``capacity`` (the zones, which put more bytes on outer tracks,
  are not folded into the seek distance).
* **Zoned recording** (``inner_bandwidth``): the media rate falls from the
  outer tracks (LBA 0, ``bandwidth``) to the inner ones (LBA ``capacity``,
  ``inner_bandwidth``). Zoned bit recording keeps the linear bit density
  about constant, so the rate is proportional to the track radius r, and the
  bytes from the outer edge to radius r grow as (r_o² - r²). At LBA fraction
  f = offset/capacity that gives
  ``rate(f) = sqrt(B_o² - f * (B_o² - B_i²))`` (B_o, B_i the outer and inner
  rates) — the continuous limit of a zone table. A request moves at the rate
  of the zone it starts in (one multiply and a sqrt per request). Reading the
  range [a, b] sequentially takes ``2C/(B_o²-B_i²) * (rate(a) - rate(b))``
  (the integral of 1/rate). Writes scale by the same factor from
  ``write_bandwidth``.
* **Rotation**: after a seek, half a rotation (the mean; deterministic, so
  runs are reproducible without a random stream). A request that continues
  exactly where the head stopped pays no seek, and waits for its sector to
  come round again: ``(-gap) mod T`` after an idle gap (0 if it was queued
  behind the previous request) — a synchronous one-cluster-at-a-time reader
  without read-ahead loses part of a rotation per request.
* **Scheduler** ``fifo``: requests are served in arrival order. ``ncq``: the
  drive may serve a request next to any of the other ``queue-depth`` - 1
  requests outstanding when it arrives (SATA NCQ: 32 tags), so it is charged
  the seek from the nearest of them (nearest-neighbour insertion, the
  shortest-seek-first family of Worthington, Ganger & Patt, "Scheduling
  algorithms for modern disk drives", SIGMETRICS 1994; with q requests
  spread uniformly the nearest lies ~1/(q+1) of the span away). Rotation is
  still charged at half a turn (SSTF, not the rotation-aware SPTF), and the
  completion order stays FIFO: only the cost is reordered.
* **Read-ahead** (``read_ahead``): after a read miss the drive keeps reading
  on into a cache segment while the head is idle, up to ``segment_size``
  beyond what the host has read; ``segments`` streams keep a segment each
  (LRU). A read inside a segment is served from the drive's buffer at the
  interface rate without the head; a read that starts inside the segment the
  head is still filling goes on streaming, with neither seek nor rotation.
  A busy drive reads nothing ahead, so k streams that keep the head busy get
  no help from it.
* **Write-back cache** (``write_cache`` bytes, 0 = off = WCE cleared). SATA
  and SAS drives ship with their volatile write cache enabled (ATA IDENTIFY
  word 85 bit 5 "volatile write cache enabled", SET FEATURES 02h/82h to
  change it; SCSI Caching mode page 08h, WCE bit; Linux shows it in
  /sys/block/sdX/queue/write_cache as "write back", see
  Documentation/block/writeback_cache_control.rst). O_DIRECT bypasses the
  host's page cache, not the drive's: only a FUA write or a FLUSH CACHE
  reaches the media before completing. The drive's own words (WD Ultrastar
  DC HC310 OEM spec §9.8 "Write Cache Function"): it "reports as completing
  the write command ... as soon as the device has received all of the data
  into its buffer", and Flush Cache "during writing the cached data [is]
  executed after the completion of writing to media"; §11.46.2: the
  current state is in IDENTIFY word 85 or 129. A cached write is
  acknowledged once it is in the buffer (command latency + interface transfer; transfers to
  and from the buffer share one host link, so a burst of queued writes fills
  it at the interface rate, not all at once); the head
  writes it out later in arrival order at its own cost (seek, rotation, zone
  rate) — the destage rate. With ``scheduler: ncq`` the write-outs pending in
  the buffer are reordered as queued commands are (each charged the seek
  from the nearest of the last queue-depth - 1 pending ones). A write that does not fit waits until enough has
  been written out. Data already in the buffer when the head reaches it is
  written as one run with the contiguous data before it (write coalescing),
  so a sequential stream destages at the media rate without a rotation lost
  per host command. Reads queue behind pending write-outs (FIFO head; drive
  firmware may favour reads, which is not modelled: no published figure for
  it was found). ``flush`` (FLUSH CACHE / SYNCHRONIZE CACHE) completes when
  every write accepted before it is on the media. Nothing in the simulated
  QEMU sends FUA or a flush during a backup: block-copy's writes carry only
  BDRV_REQ_SERIALISING (fleecing) and BDRV_REQ_WRITE_COMPRESSED
  (block/block-copy.c ``block_copy_state_new``, ``.write_flags``), never
  BDRV_REQ_FUA (the 2013 block/backup.c ``backup_run`` enabled the target's
  write cache outright), and the job sends no flush of its own; a flush
  comes only when the last reference to the target node is dropped (block.c
  ``bdrv_close`` calls ``bdrv_flush``), e.g. a drive-backup target QEMU
  opened itself. So the backup's duration ends at the last acknowledged
  write, with up to ``write_cache`` bytes still to go to the platter
  (benchmarks/hdd_write_cache.py prints both).
"""
from __future__ import annotations

import math
from collections import deque

from .base import LAST, Device

# Ruemmler & Wilkes 1994, HP 97560: short-seek form below 383 of 1962 cylinders.
KNEE = 383 / 1962


class SeekCurve:
    """Seek time as a function of x = distance / full stroke, in [0, 1]."""

    def __init__(self, average: float, track: float | None = None, full: float | None = None,
                 knee: float = KNEE):
        self.average = float(average)
        if average < 0:
            raise ValueError("average: must be >= 0")
        self.constant = track is None and full is None
        if self.constant:
            return
        if track is None or full is None:
            raise ValueError("a seek curve needs track-to-track, average and full-stroke")
        if track < 0:
            raise ValueError("track-to-track: must be >= 0")
        if not track < average < full:
            raise ValueError("average: track-to-track < average < full-stroke must hold "
                             f"(got {track * 1e3:g}ms, {average * 1e3:g}ms, {full * 1e3:g}ms)")
        k = knee
        r = (average - track) / (full - track)
        # mean of the normalised curve under density 2(1-x) is m0 + u*(m1 - m0),
        # u = the normalised height at the knee
        m0 = (1 - k) ** 2 / 3
        m1 = 2 * (2 / 3 * k - 2 / 5 * k * k) + (1 - k) ** 2
        u = (r - m0) / (m1 - m0)
        if not 0 < u <= 1:
            raise ValueError(f"average: {average * 1e3:g}ms cannot be the mean of a "
                             "Ruemmler-Wilkes curve from this track-to-track and full-stroke "
                             f"(needs {track + m0 * (full - track):.4g}.."
                             f"{track + m1 * (full - track):.4g}s)")
        self.track, self.full, self.knee = float(track), float(full), k
        span = full - track
        self.b = span * u / math.sqrt(k)                 # a + b*sqrt(x), x <= knee
        self.e = span * (1 - u) / (1 - k)                # c + e*x, x > knee
        self.c = full - self.e

    def __call__(self, x: float) -> float:
        if self.constant:
            return self.average
        if x <= 0:
            return 0.0
        if x <= self.knee:
            return self.track + self.b * math.sqrt(x)
        return self.c + self.e * min(x, 1.0)

    def mean(self, n: int = 20000) -> float:
        """Numerical mean under the datasheet weighting (density 2(1-x))."""
        h = 1.0 / n
        return sum(self((i + 0.5) * h) * 2 * (1 - (i + 0.5) * h) * h for i in range(n))


class _Segment:
    __slots__ = ("start", "host", "filled")

    def __init__(self, start: int, host: int):
        self.start = start     # first byte held
        self.host = host       # end of what the host has read from it
        self.filled = host     # end of what the head has read into it


class HDD(Device):
    """One head; see the module docstring for the model."""

    kind = "hdd"

    def __init__(self, name: str, latency: float, bandwidth: float, seek, rpm: float, *,
                 write_latency: float | None = None, write_bandwidth: float | None = None,
                 write_seek=None, capacity: int = 0, scheduler: str = "fifo",
                 queue_depth: int = 1, read_ahead: bool = False, segments: int = 1,
                 segment_size: int = 0, write_cache: int = 0,
                 interface_bandwidth: float | None = None,
                 inner_bandwidth: float | None = None):
        super().__init__(name, latency, bandwidth, slots=1, write_latency=write_latency,
                         write_bandwidth=write_bandwidth)
        self.seek_read = seek if isinstance(seek, SeekCurve) else SeekCurve(seek)
        self.seek_write = (self.seek_read if write_seek is None else
                           write_seek if isinstance(write_seek, SeekCurve) else
                           SeekCurve(write_seek))
        self.seek = self.seek_read.average
        self.rotation = 60.0 / rpm if rpm else 0.0
        self.half_rotation = self.rotation / 2
        self.capacity = int(capacity)
        # zoned recording: rate(offset) = bandwidth * sqrt(1 - offset * zone_k)
        self.inner_bandwidth = float(inner_bandwidth or self.bandwidth)
        if self.inner_bandwidth <= 0 or self.inner_bandwidth > self.bandwidth:
            raise ValueError(f"{name}: inner-bandwidth must be > 0 and <= the outer bandwidth")
        self.zoned = self.inner_bandwidth < self.bandwidth
        if self.zoned and not self.capacity:
            raise ValueError(f"{name}: inner-bandwidth needs the drive's capacity")
        rho = self.inner_bandwidth / self.bandwidth
        self._rho2 = rho * rho
        self.zone_k = (1.0 - self._rho2) / self.capacity if self.zoned else 0.0
        self.ncq = scheduler == "ncq"
        self.window = max(1, int(queue_depth))
        self._free_t = 0.0       # the head is free from
        self._head = -1          # byte offset where the head stopped
        self._head_t = 0.0       # when it stopped there
        self._queue: deque = deque()  # (end time, end offset) of head ops, for ncq
        self.read_ahead = bool(read_ahead) and segment_size > 0
        self.n_segments = max(1, int(segments))
        self.segment_size = int(segment_size)
        self._segs: list[_Segment] = []   # LRU order, most recent last
        self._ra: _Segment | None = None  # the segment the idle head is filling
        self._idle_from = 0.0
        self.write_cache = int(write_cache)
        self._dirty: deque = deque()      # (written-out time, bytes), in time order
        self._dirty_bytes = 0
        self.flushes = 0
        ibw = interface_bandwidth or max(self.bandwidth, self.write_bandwidth)
        self.iface_inv = 1.0 / ibw
        self._link_free = 0.0    # the host link is free from (buffer transfers)
        self.seeks = 0
        self.cache_hits = 0

    @classmethod
    def from_spec(cls, name: str, spec) -> "HDD":
        return cls(name, spec.read_latency, spec.read_bandwidth, _curve(spec.seek), spec.rpm,
                   write_latency=spec.write_latency, write_bandwidth=spec.write_bandwidth,
                   write_seek=_curve(spec.seek if spec.write_seek is None else spec.write_seek), capacity=spec.capacity or 0,
                   scheduler=spec.scheduler or "fifo", queue_depth=spec.queue_depth,
                   read_ahead=spec.read_ahead, segments=spec.read_ahead_segments,
                   segment_size=spec.read_ahead_segment_size, write_cache=spec.write_cache,
                   interface_bandwidth=spec.interface_bandwidth,
                   inner_bandwidth=spec.inner_bandwidth)

    # ------------------------------------------------------------ helpers
    def zone_factor(self, offset: int) -> float:
        """The media rate at ``offset`` over the outer-zone rate (1 at LBA 0)."""
        if not self.zoned:
            return 1.0
        f = 1.0 - offset * self.zone_k
        return math.sqrt(f if f > self._rho2 else self._rho2)  # past capacity: the inner zone

    def media_rate(self, offset: int, write: bool = False) -> float:
        """Bytes/s the head reads (or writes) at ``offset``."""
        return (self.write_bandwidth if write else self.bandwidth) * self.zone_factor(offset)

    def _advance_read_ahead(self, t: float) -> None:
        """The idle head has read ahead into the active segment until ``t``."""
        ra = self._ra
        if ra is None or t <= self._idle_from:
            return
        limit = ra.host + self.segment_size
        if self.capacity:
            limit = min(limit, self.capacity)
        if ra.filled < limit:
            rate = self.bandwidth * self.zone_factor(ra.filled) if self.zoned else self.bandwidth
            ra.filled = min(limit, ra.filled + int((t - self._idle_from) * rate))
            self._head = ra.filled
        self._idle_from = t

    def _find_segment(self, offset: int) -> _Segment | None:
        for seg in reversed(self._segs):
            if seg.start <= offset < seg.filled or (seg is self._ra and offset == seg.filled):
                return seg
        return None

    def _positioning(self, now: float, start: float, offset: int, write: bool,
                     coalesce: bool = False) -> float:
        """Seek + rotation before a head operation starting at ``start``.
        ``coalesce``: a cached write, in the buffer before the head gets to
        it, goes out in one run with the contiguous data before it."""
        curve = self.seek_write if write else self.seek_read
        if offset == self._head:  # continues where the head stopped
            if not self.rotation or start <= self._head_t or coalesce:
                return 0.0
            r = (self._head_t - start) % self.rotation
            return 0.0 if r > self.rotation - 1e-12 else r
        dist = abs(offset - self._head) if self._head >= 0 else None
        if self.ncq:
            q = self._queue
            while q and q[0][0] <= now:
                q.popleft()
            k = self.window - 1  # the newest window - 1 outstanding (same minimum in any order)
            for _t, end_off in reversed(q):
                if not k:
                    break
                k -= 1
                d = abs(offset - end_off)
                if dist is None or d < dist:
                    dist = d
            if dist == 0:
                return 0.0  # served right behind a queued request it continues
        self.seeks += 1
        if dist is None or not self.capacity:
            seek = curve.average
        else:
            seek = curve(dist / self.capacity)
        return seek + self.half_rotation

    def _head_op(self, now: float, offset: int, length: int, write: bool,
                 coalesce: bool = False) -> float:
        start = self._free_t if self._free_t > now else now
        if self.read_ahead:
            self._advance_read_ahead(start)
        lat = self.write_latency if write else self.latency
        dur = length * (self.inv_wbw if write else self.inv_bw)
        if self.zoned:
            dur /= self.zone_factor(offset)
        end = start + lat + self._positioning(now, start, offset, write, coalesce) + dur
        LAST.service = end - start  # the rest of end - now waited for the head
        self._free_t = end
        self._head = offset + length
        self._head_t = end
        if self.ncq:
            self._queue.append((end, offset + length))
            if len(self._queue) > 4 * self.window:
                self._queue.popleft()
        self.busy += dur
        return end

    # ------------------------------------------------------------ submit
    def submit(self, now: float, offset: int, length: int, write: bool = False) -> float:
        self.ops += 1
        self.bytes += length
        lat = self.write_latency if write else self.latency
        if length == 0:  # write-zeroes / discard: metadata, the head does not move
            end = (self._free_t if self._free_t > now else now) + lat
            self._free_t = end
            LAST.service = lat
            return end
        if write:
            if self._segs:  # the written range is no longer what the cache holds
                self._segs = [s for s in self._segs
                              if s.filled <= offset or s.start >= offset + length]
                if self._ra is not None and self._ra not in self._segs:
                    self._ra = None
            if self.read_ahead and self._free_t <= now:
                self._advance_read_ahead(now)
            self._ra = None  # the head leaves whatever it was reading ahead
            if not self.write_cache or length > self.write_cache:
                return self._head_op(now, offset, length, True)
            head_end = self._head_op(now, offset, length, True, True)
            return self._cached_write(now, lat, length, head_end)
        if self.read_ahead:
            if self._free_t <= now:
                self._advance_read_ahead(now)
            seg = self._find_segment(offset)
            if seg is not None:
                self._segs.remove(seg)
                self._segs.append(seg)
                if offset + length <= seg.filled:  # all in the buffer
                    self.cache_hits += 1
                    seg.host = max(seg.host, offset + length)
                    LAST.service = lat + length * self.iface_inv
                    return self._link(now + lat, length)
                if seg is self._ra and self._free_t <= now:
                    # the head is still streaming this segment: it reads on
                    rest = offset + length - seg.filled
                    xfer = rest * self.inv_bw
                    if self.zoned:
                        xfer /= self.zone_factor(seg.filled)
                    end = now + lat + xfer
                    self.busy += xfer
                    self._free_t = self._head_t = self._idle_from = end
                    seg.filled = seg.host = self._head = offset + length
                    end = max(end, now + lat + length * self.iface_inv)
                    LAST.service = end - now  # the head streams on: no queue
                    return end
        end = self._head_op(now, offset, length, False)
        if self.read_ahead:
            seg = _Segment(offset, offset + length)
            self._segs.append(seg)
            if len(self._segs) > self.n_segments:
                self._segs.pop(0)
            self._ra = seg
            self._idle_from = end
        return end

    def _link(self, t: float, length: int) -> float:
        """A transfer between the host and the drive's buffer, from ``t``: one
        link (SATA / a SAS port) moves one command's data at a time."""
        start = self._link_free if self._link_free > t else t
        end = start + length * self.iface_inv
        self._link_free = end
        return end

    def _cached_write(self, now: float, lat: float, length: int, head_end: float) -> float:
        dq = self._dirty
        while dq and dq[0][0] <= now:
            self._dirty_bytes -= dq.popleft()[1]
        t = self._link(now + lat, length)
        d = self._dirty_bytes
        for end_t, n in dq:  # in time order: what is still dirty at t
            if end_t <= t or d + length > self.write_cache:
                t = max(t, end_t)
                d -= n
            else:
                break
        dq.append((head_end, length))
        self._dirty_bytes += length
        LAST.service = lat + length * self.iface_inv  # into the cache; the rest waited for room
        return t

    def flush(self, now: float) -> float:
        """FLUSH CACHE (ATA E7h/EAh) / SYNCHRONIZE CACHE (SCSI): completes once
        every write accepted before it is on the media, i.e. when the head has
        written out the last dirty write (at once if nothing is dirty). The
        destage schedule is already fixed, so the flush only waits for it."""
        self.flushes += 1
        dq = self._dirty
        while dq and dq[0][0] <= now:
            self._dirty_bytes -= dq.popleft()[1]
        return dq[-1][0] if dq else now

    def describe(self) -> str:
        extra = []
        if self.zoned:
            extra.append(f"zoned {self.bandwidth / 2**20:.0f}->{self.inner_bandwidth / 2**20:.0f}MiB/s")
        if self.ncq:
            extra.append(f"ncq {self.window}")
        if self.read_ahead:
            extra.append(f"read-ahead {self.n_segments}x{self.segment_size // 2**10}KiB")
        if self.write_cache:
            extra.append(f"write-cache {self.write_cache / 2**20:g}MiB")
        return (f"hdd {self.name}: seek {self.seek * 1e3:.1f}ms avg, {60 / self.rotation if self.rotation else 0:.0f}rpm, "
                f"{self.bandwidth / 2**20:.0f}MiB/s" + (", " + ", ".join(extra) if extra else ""))


def _curve(seek) -> SeekCurve:
    """A SeekCurve from a config value: seconds (constant) or a SeekSpec."""
    if seek is None:
        return SeekCurve(0.0)
    if isinstance(seek, (int, float)):
        return SeekCurve(float(seek))
    return SeekCurve(seek.average, seek.track_to_track, seek.full_stroke)
