"""A storage device reached over NBD/TCP: connections, request slots, TCP window.

Timing only, analytic like ``Device``. A request goes through four stages:

1. **A request slot on one connection.** Each connection has ``slots``
   request slots (QEMU's NBD client: block/nbd.c ``MAX_NBD_REQUESTS = 16``;
   nbd_co_send_request waits on the ``free_sema`` CoQueue while
   ``s->in_flight == MAX_NBD_REQUESTS``, and nbd_reply_chunk_iter_receive frees
   the slot with ``in_flight--`` / ``qemu_co_queue_next(&s->free_sema)`` only
   once the reply's last chunk is read). So a slot is held from submission
   until the backend has served the request and the reply is back: a slow
   backend pushes back on the client. A request takes the connection whose
   slot frees first (ties: round robin), FIFO per connection.
2. **The network round trip and the shared link.** ``link`` is a Device
   (latency = RTT, bandwidth = the link's TCP payload rate, FIFO), shared by
   all connections. Each request carries ``overhead`` extra bytes: the NBD
   request header (28 bytes) and simple reply header (16 bytes), NBD protocol
   spec (NetworkBlockDevice/nbd doc/proto.md, "Transmission"; the same sizes
   appear as ``Buffer.alloc(28)`` / ``#read(16)`` in Xen Orchestra's
   @vates/nbd-client). TCP/IP/Ethernet framing is *not* added here: the
   link bandwidth is already a payload rate (1448 payload bytes per 1538-byte
   wire frame at MTU 1500 = 94.1 % of line rate: 941 Mbit/s on 1 GbE, which is
   how the presets are written).
3. **The TCP window.** A connection may have at most ``window`` bytes sent
   and not yet acknowledged, so it moves at most ``window`` bytes per round
   trip: each connection's bytes also pass a pipe of rate ``window / RTT``,
   in parallel with their round trip. A lone request no larger than the
   window is not slowed (its bytes clear that pipe within one RTT); a stream
   on one connection is held to ``window / RTT``; N connections to
   ``min(link, N * window / RTT)`` — the bandwidth-delay limit.
4. **The backend** (a Device) serves the request after it crossed the link.

With ``connections = 1``, no window and no overhead this is exactly the
model before issue 11 (link then backend, slot held until the reply).
Requests must be submitted in non-decreasing ``now`` order; start times are
then non-decreasing too, so the link and the backend see time order.
"""
from __future__ import annotations

import heapq

from .base import LAST, Device

# NBD protocol (doc/proto.md): request header 28 bytes, simple reply 16 bytes.
NBD_REQUEST_HEADER = 28
NBD_REPLY_HEADER = 16
NBD_HEADERS = NBD_REQUEST_HEADER + NBD_REPLY_HEADER


class _Connection:
    __slots__ = ("free", "pipe_free", "last_start")

    def __init__(self, slots: int):
        self.free = [0.0] * slots  # heap: when each request slot is released
        self.pipe_free = 0.0       # window pipe: when this connection's bytes clear it
        self.last_start = 0.0      # FIFO per connection


class RemoteDevice:
    """``connections`` NBD connections of ``slots`` request slots each, over a
    shared ``link``, to a ``backend``; ``window`` bytes (None: unlimited) per
    connection; ``overhead`` bytes of protocol headers per request."""

    kind = "remote"

    def __init__(self, name: str, link: Device, backend, *, connections: int = 1,
                 window: float | None = None, overhead: int = 0):
        if connections < 1:
            raise ValueError(f"{name}: connections must be >= 1")
        if window is not None and window <= 0:
            raise ValueError(f"{name}: window must be > 0")
        self.name = name
        self.link = link
        self.backend = backend
        self.latency = link.latency + backend.latency
        self.bandwidth = min(link.bandwidth, backend.bandwidth)
        # per connection: the link has a slot for every request that can be in
        # flight, ``connections`` x queue-depth (build_remote)
        self.slots = max(1, link.slots // connections)
        self.connections = connections
        self.window = window
        self.overhead = int(overhead)
        rtt = link.latency
        # seconds per byte through the window pipe (0: the window never binds)
        self._win_s_per_byte = rtt / window if window and rtt > 0 else 0.0
        self._conns = [_Connection(self.slots) for _ in range(connections)]
        self._rr = 0
        self.window_limited = 0  # requests whose arrival the window delayed
        # seconds per byte to copy a request's data to or from the socket once
        # it has its slot (set by devices/host.py: with_host); a delay of the
        # sending coroutine, not a shared queue
        self.copy_s_per_byte = 0.0
        self.link_shared = False  # another client uses the link too (client())

    def client(self, name: str | None = None) -> "RemoteDevice":
        """Another NBD client of the same server: its own connections (slots,
        TCP window) over the same link and backend. Each VM's QEMU has its own
        NBD client (block/nbd.c: one BDRVNBDState per blockdev, its own
        socket), so VMs backing up to one server share the wire and the
        server's disks, not their request slots. The link gets room for the
        new client's requests in flight."""
        other = RemoteDevice(name or self.name, self.link, self.backend,
                             connections=self.connections, window=self.window,
                             overhead=self.overhead)
        other.copy_s_per_byte = self.copy_s_per_byte
        link = self.link
        for _ in range(self.slots * self.connections):
            heapq.heappush(link._free, 0.0)
        link.slots += self.slots * self.connections
        other.slots = self.slots  # not the grown link's share
        other._conns = [_Connection(self.slots) for _ in range(self.connections)]
        self.link_shared = other.link_shared = True  # nodes/target.py: its own queue
        return other

    @property
    def ops(self) -> int:
        return self.backend.ops

    @property
    def bytes(self) -> int:
        return self.backend.bytes

    @property
    def busy(self) -> float:
        return max(self.link.busy, self.backend.busy)

    def _pick(self, now: float) -> tuple[_Connection, float]:
        """The connection where this request can start first (ties: round robin)."""
        conns = self._conns
        n = len(conns)
        best = None
        best_t = 0.0
        for k in range(n):
            c = conns[(self._rr + k) % n]
            t = c.free[0]
            if t < c.last_start:
                t = c.last_start
            if t < now:
                t = now
            if best is None or t < best_t:
                best, best_t = c, t
                if t == now:
                    break
        self._rr = (conns.index(best) + 1) % n
        return best, best_t

    def submit(self, now: float, offset: int, length: int, write: bool = False) -> float:
        if self.connections == 1:
            conn = self._conns[0]
            start = conn.free[0] if conn.free[0] > now else now
        else:
            conn, start = self._pick(now)
        conn.last_start = start
        wire = length + self.overhead
        if self.copy_s_per_byte:
            start += length * self.copy_s_per_byte
        arrive = self.link.submit(start, offset, wire, write)
        s_link = LAST.service + length * self.copy_s_per_byte  # unloaded: link + socket copy
        if self._win_s_per_byte:
            win_end = (start if start > conn.pipe_free else conn.pipe_free) \
                + wire * self._win_s_per_byte
            conn.pipe_free = win_end
            if win_end > arrive:
                arrive = win_end
                self.window_limited += 1
        end = self.backend.submit(arrive, offset, length, write)
        LAST.service += s_link
        heapq.heapreplace(conn.free, end)  # the slot is released when the reply arrives
        return end

    def describe(self) -> str:
        win = f", window {self.window / 2**10:.0f}KiB" if self.window else ""
        return (f"remote {self.name}: rtt {self.link.latency * 1e3:.2f}ms, link "
                f"{self.link.bandwidth / 2**20:.0f}MiB/s, {self.connections} x qd "
                f"{self.slots}{win} -> {self.backend.describe()}")


def build_remote(name: str, spec, build_device) -> RemoteDevice:
    """A RemoteDevice from a resolved ``DeviceSpec`` of kind ``remote``. The
    link gets a slot per request that can be outstanding, so only the
    connections' own slots bound what is in flight."""
    link = Device(f"{name}.link", spec.rtt, spec.link_bandwidth,
                  spec.queue_depth * spec.connections)
    return RemoteDevice(name, link, build_device(f"{name}.backend", spec.backend),
                        connections=spec.connections, window=spec.window or None,
                        overhead=spec.request_overhead)
