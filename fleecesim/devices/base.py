"""The shared analytic queue (``Device``) and ``build_device``. Each device
kind has its own module: ram.py, ssd.py, hdd.py, remote.py (NBD over TCP)."""
from __future__ import annotations

import heapq
from heapq import heappop, heappush, heapreplace


class _Last:
    """The service time of the request submitted last, on any device: what
    that request would have taken on an idle device (access time, positioning,
    transfer; plus the host's per-request cost and memory copy behind a
    HostDevice). The rest of its time on the device was queueing. Read at once
    after the synchronous submit that set it (the guest's latency attribution,
    issue 13 item 2: workloads/driver.py and the leaf nodes); a device kind
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
    * ``ps`` — approximate processor sharing, as an SSD's internal
      parallelism serves a small read alongside large transfers: a transfer
      that starts while ``k`` others are in progress ends after at most
      ``(k+1) * length/bandwidth``, or at its FIFO time if that is sooner. The
      FIFO schedule of all bytes is kept, so the device never delivers more
      than its bandwidth over time; completion times are fixed at submission
      (exact for equal sizes; small requests among large ones are served as
      under PS).

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
        self._free = [0.0] * slots  # heap of times each slot becomes free
        self._pipe_free = 0.0
        self.ps = sharing == "ps"
        self._active: list[float] = []  # ps: end times of transfers in progress
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
        start = free[0] if free[0] > now else now
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
        # The pipe keeps the FIFO schedule of all bytes (work conservation).
        pipe = self._pipe_free
        end = (xfer if xfer > pipe else pipe) + dur
        self._pipe_free = end
        if self.ps:
            act = self._active
            while act and act[0] <= xfer:
                heappop(act)
            ps_end = xfer + dur * (1 + len(act))
            if ps_end < end:
                end = ps_end
            heappush(act, end)
        heapreplace(free, end)
        self.ops += 1
        self.bytes += length
        self.busy += dur
        LAST.service = xfer - start + dur
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


def build_device(name: str, spec):
    """Build a device from a resolved ``DeviceSpec`` (see config.py)."""
    if spec.kind == "remote":
        from .remote import build_remote  # remote.py imports Device from here
        return build_remote(name, spec, build_device)
    from . import KINDS  # one module per device kind (ram.py, ssd.py, hdd.py)
    return KINDS[spec.kind].from_spec(name, spec)
