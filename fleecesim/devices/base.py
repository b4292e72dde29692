"""Analytic FIFO device models: RAM, SSD, HDD (seek-aware). Remote: remote.py."""
from __future__ import annotations

import heapq


class Device:
    """``slots`` parallel request slots in front of one shared bandwidth.

    A request takes the earliest free slot (FIFO) and spends ``latency`` there
    (access time, overlapped across slots); then its bytes move at the device's
    bandwidth, shared one of two ways:

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

    Either way a lone request takes ``latency + length/bandwidth``, a saturated
    device delivers ``bandwidth``, and with one slot it is a FIFO single server
    with service ``latency + length/bandwidth``. Requests must be submitted in
    non-decreasing ``now`` order.
    """

    kind = "device"

    def __init__(self, name: str, latency: float, bandwidth: float, slots: int = 1,
                 sharing: str = "fifo"):
        if bandwidth <= 0:
            raise ValueError(f"{name}: bandwidth must be > 0")
        if slots < 1:
            raise ValueError(f"{name}: queue depth must be >= 1")
        self.name = name
        self.latency = float(latency)
        self.bandwidth = float(bandwidth)
        self.inv_bw = 1.0 / self.bandwidth
        self.slots = slots
        self._free = [0.0] * slots  # heap of times each slot becomes free
        self._pipe_free = 0.0
        self.ps = sharing == "ps"
        self._active: list[float] = []  # ps: end times of transfers in progress
        self.ops = 0
        self.bytes = 0
        self.busy = 0.0  # seconds the pipe moved data

    def positioning(self, offset: int, length: int) -> float:
        """Extra access time before the transfer (seek + rotation on an HDD)."""
        return 0.0

    def submit(self, now: float, offset: int, length: int, write: bool = False) -> float:
        """Queue a request at ``now``; return its completion time."""
        free = self._free
        start = free[0] if free[0] > now else now
        xfer = start + self.latency + self.positioning(offset, length)
        dur = length * self.inv_bw
        # The pipe keeps the FIFO schedule of all bytes (work conservation).
        fifo_end = (xfer if xfer > self._pipe_free else self._pipe_free) + dur
        self._pipe_free = fifo_end
        end = fifo_end
        if self.ps:
            act = self._active
            while act and act[0] <= xfer:
                heapq.heappop(act)
            ps_end = xfer + dur * (1 + len(act))
            if ps_end < end:
                end = ps_end
            heapq.heappush(act, end)
        heapq.heapreplace(free, end)
        self.ops += 1
        self.bytes += length
        self.busy += dur
        return end

    def describe(self) -> str:
        return (f"{self.kind} {self.name}: latency {self.latency * 1e6:.0f}us, "
                f"{self.bandwidth / 2**20:.0f}MiB/s, qd {self.slots}")


class HDD(Device):
    """One head: a request that continues the previous one skips the seek;
    any other pays the average seek plus half a rotation."""

    kind = "hdd"

    def __init__(self, name: str, latency: float, bandwidth: float, seek: float, rpm: float):
        super().__init__(name, latency, bandwidth, slots=1)
        self.seek = float(seek)
        self.half_rotation = 30.0 / rpm if rpm else 0.0
        self._head = -1
        self.seeks = 0

    def positioning(self, offset: int, length: int) -> float:
        if length == 0:
            return 0.0  # write-zeroes / discard: metadata, the head does not move
        sequential = offset == self._head
        self._head = offset + length
        if sequential:
            return 0.0
        self.seeks += 1
        return self.seek + self.half_rotation


def build_device(name: str, spec):
    """Build a device from a resolved ``DeviceSpec`` (see config.py)."""
    if spec.kind == "hdd":
        return HDD(name, spec.latency, spec.bandwidth, spec.seek, spec.rpm)
    if spec.kind == "remote":
        from .remote import build_remote  # remote.py imports Device from here
        return build_remote(name, spec, build_device)
    dev = Device(name, spec.latency, spec.bandwidth, spec.queue_depth,
                 sharing=spec.sharing or ("ps" if spec.kind in ("ssd", "ram") else "fifo"))
    dev.kind = spec.kind
    return dev
