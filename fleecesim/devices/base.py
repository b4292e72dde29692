"""The shared analytic queue (``Device``), a device reached over a link
(``RemoteDevice``) and ``build_device``. Each local device kind has its own
module: ram.py, ssd.py, hdd.py."""
from __future__ import annotations

import heapq


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

    def positioning(self, offset: int, length: int) -> float:
        """Extra access time before the transfer (none on a solid-state device)."""
        return 0.0

    def submit(self, now: float, offset: int, length: int, write: bool = False) -> float:
        """Queue a request at ``now``; return its completion time."""
        free = self._free
        start = free[0] if free[0] > now else now
        if write:
            xfer = start + self.write_latency + self.positioning(offset, length)
            dur = length * self.inv_wbw
            if dur < self.min_write and length:
                dur = self.min_write
        else:
            xfer = start + self.latency + self.positioning(offset, length)
            dur = length * self.inv_bw
            if dur < self.min_read and length:
                dur = self.min_read
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
        rw = ""
        if self.write_latency != self.latency or self.write_bandwidth != self.bandwidth:
            rw = (f" (write {self.write_latency * 1e6:.0f}us, "
                  f"{self.write_bandwidth / 2**20:.0f}MiB/s)")
        return (f"{self.kind} {self.name}: latency {self.latency * 1e6:.0f}us, "
                f"{self.bandwidth / 2**20:.0f}MiB/s{rw}, qd {self.slots}")


class RemoteDevice:
    """A storage device reached over a network link (how NBD targets are reached).

    The link is itself a Device (latency = RTT, bandwidth = link rate); the
    request crosses it and then queues on the backend. ``slots`` (the link's
    queue depth) bounds requests outstanding *end to end*: a request holds its
    slot from submission until the backend has served it, as QEMU's NBD client
    holds a request slot until the reply arrives (block/nbd.c:
    MAX_NBD_REQUESTS = 16; nbd_co_send_request waits on the ``free_sema``
    CoQueue while ``s->in_flight == MAX_NBD_REQUESTS``, and only
    nbd_reply_chunk_iter_receive, once the reply's last chunk is read, does
    ``in_flight--`` and ``qemu_co_queue_next(&s->free_sema)``). So a
    slow backend pushes back on the client instead of piling up unbounded
    requests at the server. Analytic like Device: a heap of the times each
    slot is released (= completion times); a request starts at
    ``max(now, earliest release)``. Start times are then non-decreasing, so
    the link and the backend still see submissions in time order.
    """

    kind = "remote"

    def __init__(self, name: str, link: Device, backend: Device):
        self.name = name
        self.link = link
        self.backend = backend
        self.latency = link.latency + backend.latency
        self.bandwidth = min(link.bandwidth, backend.bandwidth)
        self.slots = link.slots
        # release time of each request slot (reply received). With at most
        # ``slots`` outstanding end to end the link's own slot heap never delays
        # a request (a link slot frees no later than the reply), so the link
        # models only RTT and the shared bandwidth.
        self._free = [0.0] * self.slots

    @property
    def ops(self) -> int:
        return self.backend.ops

    @property
    def bytes(self) -> int:
        return self.backend.bytes

    @property
    def busy(self) -> float:
        return max(self.link.busy, self.backend.busy)

    def submit(self, now: float, offset: int, length: int, write: bool = False) -> float:
        free = self._free
        start = free[0] if free[0] > now else now  # wait for a free request slot
        arrive = self.link.submit(start, offset, length, write)
        end = self.backend.submit(arrive, offset, length, write)
        heapq.heapreplace(free, end)  # the slot is released when the reply arrives
        return end

    def describe(self) -> str:
        return (f"remote {self.name}: rtt {self.link.latency * 1e3:.2f}ms, link "
                f"{self.link.bandwidth / 2**20:.0f}MiB/s -> {self.backend.describe()}")


def build_device(name: str, spec) -> Device | RemoteDevice:
    """Build a device from a resolved ``DeviceSpec`` (see config.py)."""
    if spec.kind == "remote":
        link = Device(f"{name}.link", spec.rtt, spec.link_bandwidth, spec.queue_depth)
        return RemoteDevice(name, link, build_device(f"{name}.backend", spec.backend))
    from . import KINDS  # one module per device kind (ram.py, ssd.py, hdd.py)
    return KINDS[spec.kind].from_spec(name, spec)
