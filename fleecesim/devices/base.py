"""The shared analytic queue (``Device``) and ``build_device``. Each device
kind has its own module: ram.py, ssd.py, hdd.py, remote.py (NBD over TCP)."""
from __future__ import annotations

from bisect import bisect_right
from heapq import heappush, heapreplace


class _Last:
    """The service time of the request submitted last, on any device: what
    that request would have taken on an idle device (access time, positioning,
    transfer; plus the host's per-request cost and memory copy behind a
    HostDevice). The rest of its time on the device was queueing. Read at once
    after the synchronous submit that set it (the guest's latency attribution,
    metrics.py: workloads/driver.py and the leaf nodes); a device kind
    that does not set it leaves the request all queue."""

    __slots__ = ("service",)

    def __init__(self):
        self.service = 0.0


LAST = _Last()


class Device:
    """``slots`` parallel request slots in front of one shared bandwidth.

    A request takes the earliest free slot (FIFO) and spends its direction's
    latency there (access time, overlapped across slots); then its bytes move
    at the direction's bandwidth through one pipe shared by reads and writes,
    one of two ways:

    * ``fifo`` — one pipe, transfers in arrival order (a network link: NBD
      runs over one TCP stream; an HDD's single head).
    * ``ps`` — out of order into free capacity, as an SSD serves requests
      (NVM Express 1.2, 7 "Controller Architecture": no ordering
      restrictions for processing of commands within or across submission
      queues, nor for their completions). At submission a request's transfer
      is placed into the capacity that no earlier request holds, from the
      moment it is ready (after its latency), at the full rate: it runs in
      any gap the committed transfers leave, is interrupted by them and
      continues after them, and ends with its last byte. That is the
      earliest completion any schedule can give it while keeping every
      completion already returned (the queue is analytic: callers chain on
      them) and never moving more than the bandwidth over any interval. So a
      request ready while committed transfers hold the pipe waits for them,
      as a 4 KiB read on a real SSD waits for the pages that a striped large
      read has queued on its flash chip (MQSim, Tavakkol et al., FAST 2018:
      src/ssd/TSU_OutofOrder.h keeps user reads in one transaction queue per
      chip; FLIN, ISCA 2018, measured on four real NVMe SSDs that a flow
      issuing many requests slows the others down significantly); but one
      ready before a transfer submitted ahead of it (a write's short access
      beside a read's long one) moves in the gap first. A running transfer
      is never slowed by a later request: its completion has been returned.

    The bound ``ps`` keeps, over every interval ``[t1, t2]``: the requests
    whose transfer lies inside it (ready at ``t1`` or later, complete by
    ``t2``) hold at most ``t2 - t1`` seconds of the pipe, each
    ``max(length/bandwidth, 1/iops)``; so with one bandwidth their bytes are
    at most ``bandwidth * (t2 - t1)``, and fluidly the pipe moves at most
    ``bandwidth * t`` by any ``t``. (The committed capacity is a set of
    disjoint full-rate intervals, each request's share inside its own
    ``[ready, end]``. Conversely the interval condition is exactly when such
    a schedule exists, earliest deadline first being optimal for it: Horn,
    "Some simple scheduling algorithms", Naval Res. Logist. Q. 21, 1974.)
    ``fifo`` keeps it too (one request at a time, in order).

    Reads and writes have their own latency and bandwidth (``write_latency``,
    ``write_bandwidth`` default to the read values) and an optional IOPS cap
    each (``read_iops``/``write_iops``, 0 = none): a request holds the pipe for
    ``max(length/bandwidth, 1/iops)``, so a saturated device completes at most
    ``iops`` requests a second (an SSD's controller limit at QD32).

    Either way a lone request takes ``latency + length/bandwidth``, a saturated
    device delivers ``bandwidth``, and with one slot it is a FIFO single server
    with service ``latency + length/bandwidth``. Requests must be submitted in
    non-decreasing ``now`` order.
    """

    kind = "device"

    def __init__(self, name: str, latency: float, bandwidth: float, slots: int = 1,
                 sharing: str = "fifo", *, write_latency: float | None = None,
                 write_bandwidth: float | None = None, read_iops: float = 0.0,
                 write_iops: float = 0.0):
        wbw = bandwidth if write_bandwidth is None else write_bandwidth
        if bandwidth <= 0 or wbw <= 0:
            raise ValueError(f"{name}: bandwidth must be > 0")
        if slots < 1:
            raise ValueError(f"{name}: queue depth must be >= 1")
        self.name = name
        self.latency = float(latency)  # read latency (and the shorthand for both)
        self.bandwidth = float(bandwidth)
        self.write_latency = self.latency if write_latency is None else float(write_latency)
        self.write_bandwidth = float(wbw)
        self.inv_bw = 1.0 / self.bandwidth
        self.inv_wbw = 1.0 / self.write_bandwidth
        self.min_read = 1.0 / read_iops if read_iops else 0.0
        self.min_write = 1.0 / write_iops if write_iops else 0.0
        self.slots = slots
        # heap of times each slot becomes free, kept lazily: the slots never
        # used yet are all free at 0.0, so the heap holds the used ones plus
        # one 0.0 standing for the ``_unused`` others (while there are any).
        # Its least entry is what a heap of all ``slots`` would give, so a
        # queue-depth far beyond what is ever outstanding costs memory only
        # for the requests actually submitted, not 8 bytes a slot up front.
        self._free = [0.0]
        self._unused = slots - 1
        self._pipe_free = 0.0
        self.ps = sharing == "ps"
        # ps: the committed capacity, disjoint full-rate intervals as sorted
        # boundaries [start0, end0, start1, end1, ...] (gaps between them are
        # free). Those that end before the earliest free slot can be dropped:
        # a request starts no earlier (that slot time never decreases, even
        # if a caller's ``now`` does), so at most ``slots`` + 1 are kept;
        # they are dropped in bulk, once the list is twice that long
        self._busy = [0.0, 0.0]
        self._prune_at = 4 * slots + 8
        self.ops = 0
        self.bytes = 0
        self.busy = 0.0  # seconds the pipe moved data
        # a kind with positioning time (HDD seeks) overrides ``positioning``
        self._positions = type(self).positioning is not Device.positioning

    def positioning(self, offset: int, length: int) -> float:
        """Extra access time before the transfer (none on a solid-state device)."""
        return 0.0

    def submit(self, now: float, offset: int, length: int, write: bool = False) -> float:
        """Queue a request at ``now``; return its completion time."""
        # The hottest function of a run: attributes read once, no call for a
        # device without positioning time (adding its 0.0 changes no bit).
        free = self._free
        f0 = free[0]
        start = f0 if f0 > now else now
        if write:
            xfer = start + self.write_latency
            dur = length * self.inv_wbw
            if dur < self.min_write and length:
                dur = self.min_write
        else:
            xfer = start + self.latency
            dur = length * self.inv_bw
            if dur < self.min_read and length:
                dur = self.min_read
        if self._positions:
            xfer += self.positioning(offset, length)
        if self.ps:
            if dur:
                b = self._busy
                b2 = b[-2]
                if xfer >= b2:
                    # in or after the last committed interval: nothing later
                    # to go around (the common case, a FIFO pipe's step)
                    last = b[-1]
                    if xfer <= last:
                        end = last + dur
                        b[-1] = end
                    else:
                        end = xfer + dur
                        if last <= f0:
                            self._busy = [xfer, end]
                        else:
                            b += (xfer, end)
                            if len(b) > self._prune_at:  # drop what no later request can reach
                                del b[:bisect_right(b, free[0]) & -2]
                elif xfer + dur < b2 and (len(b) == 2 or xfer > b[-3]):
                    # ready, and done, in the gap before the last interval
                    end = xfer + dur
                    b[-2:-2] = (xfer, end)
                else:
                    end = self._backfill(xfer, dur, free[0])
            else:
                end = xfer  # nothing to move: done when ready
        else:
            # one pipe, transfers in submission order
            pipe = self._pipe_free
            end = (xfer if xfer > pipe else pipe) + dur
            self._pipe_free = end
        if self._unused:  # a never-used slot: the 0.0 entry stays for the rest
            heappush(free, end)
            self._unused -= 1
        else:
            heapreplace(free, end)
        self.ops += 1
        self.bytes += length
        self.busy += dur
        LAST.service = xfer - start + dur
        return end

    def _backfill(self, xfer: float, dur: float, lo: float) -> float:
        """ps: place ``dur`` seconds of transfer ready at ``xfer`` into the
        free capacity before and between the committed intervals (``xfer``
        lies before the start of the last one); return when it is done. Each
        gap it fills wholly merges two intervals, so a request walks past at
        most one more interval than it removes (amortised O(1) besides the
        bisection). Intervals that end by ``lo`` (the earliest a slot frees)
        are dropped: no later request starts before it."""
        b = self._busy
        if b[1] <= lo:
            del b[:bisect_right(b, lo) & -2]
        i = bisect_right(b, xfer)
        if i & 1:  # inside a committed interval: continue at its end
            t = b[i]
            i += 1
        else:
            t = xfer
        rem = dur
        n = len(b)
        while i < n:
            nxt = b[i]  # the next committed interval starts here
            end = t + rem
            if end <= nxt:  # done in this gap
                if i and t == b[i - 1]:
                    if end == nxt:
                        del b[i - 1:i + 1]
                    else:
                        b[i - 1] = end
                elif end == nxt:
                    b[i] = t
                else:
                    b[i:i] = (t, end)
                return end
            rem -= nxt - t  # the gap [t, nxt) is filled; go on after it
            if i and t == b[i - 1]:
                del b[i - 1:i + 1]
                n -= 2
                t = b[i - 1]
            else:
                b[i] = t
                t = b[i + 1]
                i += 2
            if rem <= 0.0:  # rounding: it filled the gap exactly
                return nxt
        end = t + rem  # t is the end of the last interval
        b[-1] = end
        return end

    @classmethod
    def from_spec(cls, name: str, spec) -> "Device":
        """A device of this kind from a resolved ``DeviceSpec`` (RAM and SSD use
        it as is; HDD and remote devices have their own)."""
        return cls(name, spec.read_latency, spec.read_bandwidth, spec.queue_depth,
                   sharing=spec.sharing or "ps", write_latency=spec.write_latency,
                   write_bandwidth=spec.write_bandwidth, read_iops=spec.read_iops,
                   write_iops=spec.write_iops)

    def describe(self) -> str:
        rw = ""
        if self.write_latency != self.latency or self.write_bandwidth != self.bandwidth:
            rw = (f" (write {self.write_latency * 1e6:.0f}us, "
                  f"{self.write_bandwidth / 2**20:.0f}MiB/s)")
        return (f"{self.kind} {self.name}: latency {self.latency * 1e6:.0f}us, "
                f"{self.bandwidth / 2**20:.0f}MiB/s{rw}, qd {self.slots}")
