"""A storage device reached over NBD/TCP: a full-duplex link, connections,
request slots, TCP window per direction.

Timing only, analytic like ``Device``. Each direction of the link is its own
pipe (Ethernet and TCP are full duplex): ``up`` carries client -> server
bytes, ``down`` server -> client bytes. A request goes through these stages:

1. **A request slot on one connection.** Each connection has ``slots``
   request slots (QEMU's NBD client: block/nbd.c ``MAX_NBD_REQUESTS = 16``;
   nbd_co_send_request waits on the ``free_sema`` CoQueue while
   ``s->in_flight == MAX_NBD_REQUESTS``, and nbd_reply_chunk_iter_receive frees
   the slot with ``in_flight--`` / ``qemu_co_queue_next(&s->free_sema)`` only
   once the reply's last chunk is read). So a slot is held from submission
   until the reply is back: a slow backend pushes back on the client. A
   request takes the connection whose slot frees first (ties: round robin),
   FIFO per connection. (QEMU's NBD server also reads at most
   ``MAX_NBD_REQUESTS = 16`` requests of a client at a time, nbd/server.c
   nbd_client_receive_next_request: ``client->nb_requests < MAX_NBD_REQUESTS``
   — the bound a pull client meets, ``NBD_SERVER_MAX_REQUESTS``.)
2. **The request crosses up.** Its header (``request_overhead``, 28 bytes:
   NBD protocol, NetworkBlockDevice/nbd doc/proto.md "Transmission") and,
   for a write, its data: nbd/server.c nbd_trip -> nbd_co_receive_request
   reads the header and, for NBD_CMD_WRITE, the whole payload
   (``nbd_read(... "CMD_WRITE data")``) before the request is handled.
3. **The backend** (a Device) serves it: nbd_handle_request ->
   ``blk_co_pwrite`` for a write, nbd_do_cmd_read -> ``blk_co_pread`` for a
   read, each *before* the reply is sent.
4. **The reply crosses down.** Its header (``reply_overhead``, 16 bytes:
   the simple reply, nbd_send_generic_reply -> nbd_co_send_simple_reply) and,
   for a read, the data (nbd_co_send_simple_reply / nbd_co_send_chunk_read
   with ``data``). QEMU's client negotiates structured replies, whose read
   chunk header is 20 + 8 bytes: 12 bytes a read more, not modelled.

Each direction's bytes are serialised at ``link_bandwidth`` (the TCP payload
rate: 1448 payload bytes per 1538-byte wire frame at MTU 1500 = 94.1 % of
line rate, 941 Mbit/s on 1 GbE, as the presets are written; TCP/IP/Ethernet
framing is not added again) and arrive ``rtt / 2`` later. A direction is a
work-conserving FIFO byte schedule shared by every connection and client of
the link (``_Pipe``): bytes ready earlier than bytes already scheduled take
the idle time before them, so replies (ready when the backend is done, not
in submission order) never queue behind replies that are ready later.

**The TCP window.** Per connection and direction, the sender may have at
most ``window`` bytes sent and not yet acknowledged; an ACK comes back one
half round trip after the bytes arrived. So a connection's bytes in one
direction also pass a pipe of rate ``window / rtt`` and arrive no earlier
than that pipe's end less ``rtt / 2``: a lone transfer no larger than the
window is not slowed, a stream on one connection is held to
``window / rtt`` per direction, N connections to ``min(link, N * window /
rtt)`` — the bandwidth-delay limit.

**Closed forms** (an idle device, ``B`` = link_bandwidth, ``h_q``/``h_r`` =
request/reply header, ``c`` = the socket copy's seconds per byte, set by
devices/host.py with_host; ``S_w``/``S_r`` = the backend's lone-request
service):

* write of L bytes: ``c*L + rtt + (L + h_q + h_r) / B + S_w(L)``
  (copy, header + data up, backend write, reply header down);
* read of L bytes: ``rtt + (h_q + L + h_r) / B + S_r(L) + c*L``
  (header up, backend read, reply header + data down, copy out of the socket).

Under load the directions are independent: a stream of writes saturates
``up`` and a stream of reads ``down``, so reading from and writing to one
server at once moves up to ``2 * B``; a read's reply never waits for write
data. On one connection a request's header still follows the connection's
earlier bytes up (one TCP byte stream; QEMU's client sends header and
payload under ``send_mutex``, nbd_co_send_request), so a read queued behind
a long write's payload on the same connection waits for it.

Requests must be submitted in non-decreasing ``now`` order.
"""
from __future__ import annotations

import heapq
from bisect import bisect_right

from .base import LAST, Device

# NBD protocol (doc/proto.md): request header 28 bytes, simple reply 16 bytes.
NBD_REQUEST_HEADER = 28
NBD_REPLY_HEADER = 16
NBD_HEADERS = NBD_REQUEST_HEADER + NBD_REPLY_HEADER
# QEMU's NBD server: at most this many requests of one client in progress
# (nbd/server.c: nbd_client_receive_next_request, MAX_NBD_REQUESTS).
NBD_SERVER_MAX_REQUESTS = 16
# booked intervals a pipe keeps before the ones no request can reach are dropped
PRUNE_AT = 32


class _Pipe:
    """A work-conserving FIFO schedule of one resource's time: sorted,
    disjoint busy intervals ``[s[i], e[i])``. ``place(x, d)`` books ``d``
    seconds at or after ``x`` in the earliest idle time (across gaps if need
    be) and returns when they end; what was booked before never moves, so
    completion times stay fixed at submission and the resource never works
    faster than real time. In submission-time order (the usual case) this is
    ``end = max(x, busy_until) + d``, an append or an extension of the last
    interval."""

    __slots__ = ("s", "e")

    def __init__(self):
        self.s: list[float] = []
        self.e: list[float] = []

    def place(self, x: float, d: float) -> float:
        s, e = self.s, self.e
        if not e or x > e[-1]:
            s.append(x)
            e.append(x + d)
            return x + d
        if x >= s[-1]:  # inside the last busy interval: after it
            end = e[-1] + d
            e[-1] = end
            return end
        i = bisect_right(e, x)  # the first interval ending after x
        n = len(e)
        lo = s[i] if s[i] < x else x
        cur, rem, j = x, d, i
        while True:
            if j < n and cur >= s[j]:
                cur = e[j]
                j += 1
                continue
            gap = (s[j] - cur) if j < n else rem
            if gap >= rem:
                end = cur + rem
                break
            rem -= gap
            cur = s[j]
        hi = end
        if j < n and s[j] <= end:
            hi = e[j]
            j += 1
        s[i:j] = [lo]
        e[i:j] = [hi]
        return end

    def prune(self, t: float) -> None:
        """Forget the intervals that end by ``t`` (nothing is placed before ``t`` again)."""
        e = self.e
        if e and e[0] <= t:
            k = bisect_right(e, t)
            del e[:k]
            del self.s[:k]


class Wire:
    """One direction of the link: bytes serialised at ``bandwidth`` through
    a FIFO byte schedule, then ``delay`` (half the round trip) of propagation."""

    __slots__ = ("pipe", "inv_bw", "delay", "busy", "bytes")

    def __init__(self, bandwidth: float, delay: float):
        self.pipe = _Pipe()
        self.inv_bw = 1.0 / bandwidth
        self.delay = delay
        self.busy = 0.0   # seconds this direction moved bytes
        self.bytes = 0

    def send(self, x: float, nbytes: int) -> float:
        """Bytes ready to go at ``x``: when they have arrived at the far end."""
        d = nbytes * self.inv_bw
        self.busy += d
        self.bytes += nbytes
        return self.pipe.place(x, d) + self.delay


class Link:
    """A full-duplex network link: ``up`` (client -> server) and ``down``
    (server -> client), each ``bandwidth`` bytes/s, ``rtt`` round trip.
    Shared by every connection and every client (RemoteDevice.client)."""

    def __init__(self, name: str, rtt: float, bandwidth: float):
        if bandwidth <= 0:
            raise ValueError(f"{name}: link bandwidth must be > 0")
        if rtt < 0:
            raise ValueError(f"{name}: rtt must be >= 0")
        self.name = name
        self.rtt = float(rtt)
        self.latency = self.rtt  # the shorthand other devices have
        self.bandwidth = float(bandwidth)
        self.up = Wire(self.bandwidth, self.rtt / 2)
        self.down = Wire(self.bandwidth, self.rtt / 2)
        self.users = 0  # RemoteDevices on this link (clients)

    @property
    def busy(self) -> float:
        return max(self.up.busy, self.down.busy)

    def prune(self, t: float) -> None:
        self.up.pipe.prune(t)
        self.down.pipe.prune(t)


class _Connection:
    __slots__ = ("free", "unused", "last_start", "win_up", "win_down", "open")

    def __init__(self, slots: int):
        # heap: when each request slot is released, kept lazily as Device's
        # (devices/base.py): the used slots and one 0.0 for the ``unused``
        self.free = [0.0]
        self.unused = slots - 1
        self.last_start = 0.0      # FIFO per connection
        self.win_up = _Pipe()      # the client's TCP send window (writes' data)
        self.win_down = _Pipe()    # the server's TCP send window (reads' data)
        self.open = 0              # requests open by open()/close() (pull)


class RemoteDevice:
    """``connections`` NBD connections of ``slots`` request slots each, over a
    full-duplex ``link``, to a ``backend``; ``window`` bytes (None: unlimited)
    per connection and direction; ``overhead`` bytes of request header (up)
    and ``reply_overhead`` bytes of reply header (down) per request.

    ``link`` is a Link, or a Device standing for one (its latency the round
    trip, its bandwidth the link's, its slots ``connections`` x the slots per
    connection) as configs built by hand pass it."""

    kind = "remote"

    def __init__(self, name: str, link, backend, *, connections: int = 1,
                 window: float | None = None, overhead: int = 0, reply_overhead: int = 0,
                 slots: int | None = None):
        if connections < 1:
            raise ValueError(f"{name}: connections must be >= 1")
        if window is not None and window <= 0:
            raise ValueError(f"{name}: window must be > 0")
        if isinstance(link, Device):
            if slots is None:
                slots = max(1, link.slots // connections)
            link = Link(link.name, link.latency, link.bandwidth)
        self.name = name
        self.link = link
        link.users += 1
        self.backend = backend
        self.latency = link.rtt + backend.latency
        self.bandwidth = min(link.bandwidth, backend.bandwidth)
        self.slots = slots if slots is not None else 16
        if self.slots < 1:
            raise ValueError(f"{name}: queue depth must be >= 1")
        self.connections = connections
        self.window = window
        self.overhead = int(overhead)
        self.reply_overhead = int(reply_overhead)
        rtt = link.rtt
        # seconds per byte through a window pipe; 0 when the window never
        # binds: if window >= bandwidth x rtt, a connection's bytes clear
        # its window pipe no later than they clear the link, which carries
        # them and more at a rate no higher than window / rtt
        self._win_s_per_byte = rtt / window if (
            window and rtt > 0 and window < link.bandwidth * rtt) else 0.0
        self._conns = [_Connection(self.slots) for _ in range(connections)]
        self._rr = 0
        # read once per request (submit): the link's constants and its two
        # directions' booking lists (only ever changed in place)
        self._rtt = link.rtt
        self._half_rtt = link.up.delay
        self._inv_bw = link.up.inv_bw
        self._up_s, self._up_e = link.up.pipe.s, link.up.pipe.e
        self._down_s, self._down_e = link.down.pipe.s, link.down.pipe.e
        self.window_limited = 0  # transfers whose arrival the window delayed
        # seconds per byte to copy a request's data to or from the socket once
        # it has its slot (set by devices/host.py: with_host); a delay of the
        # sending or receiving coroutine, not a shared queue
        self.copy_s_per_byte = 0.0
        self.link_shared = False  # another client uses the link too (client())
        self._served = False  # open() used: requests at their own times (no look-ahead)
        self._seen = 0.0  # the last submission's now

    def client(self, name: str | None = None) -> "RemoteDevice":
        """Another NBD client of the same server: its own connections (slots,
        TCP window) over the same link and backend. Each VM's QEMU has its own
        NBD client (block/nbd.c: one BDRVNBDState per blockdev, its own
        socket), so VMs backing up to one server share the wire and the
        server's disks, not their request slots."""
        other = RemoteDevice(name or self.name, self.link, self.backend,
                             connections=self.connections, window=self.window,
                             overhead=self.overhead, reply_overhead=self.reply_overhead,
                             slots=self.slots)
        other.copy_s_per_byte = self.copy_s_per_byte
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

    # ------------------------------------------------------------ stages
    def _up(self, conn: _Connection, x: float, nbytes: int) -> float:
        """Bytes leaving the client at ``x`` on ``conn``: arrival at the server."""
        link = self.link
        arrive = link.up.send(x, nbytes)
        if self._win_s_per_byte:
            w = conn.win_up.place(x, nbytes * self._win_s_per_byte) - link.up.delay
            if w > arrive:
                arrive = w
                self.window_limited += 1
        return arrive

    def _down(self, conn: _Connection, x: float, nbytes: int) -> float:
        """Bytes leaving the server at ``x`` on ``conn``: arrival at the client."""
        link = self.link
        arrive = link.down.send(x, nbytes)
        if self._win_s_per_byte:
            w = conn.win_down.place(x, nbytes * self._win_s_per_byte) - link.down.delay
            if w > arrive:
                arrive = w
                self.window_limited += 1
        return arrive

    def _prune(self, t: float) -> None:
        """Nothing is placed before ``t`` again: forget what ended by then."""
        self.link.prune(t)
        if self._win_s_per_byte:
            for c in self._conns:
                c.win_up.prune(t)
                c.win_down.prune(t)

    def _maybe_prune(self, conn: _Connection, now: float) -> None:
        link = self.link
        if len(link.up.pipe.e) > PRUNE_AT or len(link.down.pipe.e) > PRUNE_AT or (
                self._win_s_per_byte and len(conn.win_up.e) + len(conn.win_down.e) > PRUNE_AT):
            self._prune(now)

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

    def _horizon(self, now: float, start: float) -> float:
        """No byte is placed on this device's pipes before this time again:
        every later request starts no earlier than its connection's last
        start, and no earlier than ``now``; with other clients on the link,
        only ``now`` is known."""
        if self.link.users > 1 or self._served:
            return now
        if self.connections == 1:
            return start
        h = min(c.last_start for c in self._conns)
        return h if h > now else now

    def settle(self) -> None:
        """Forget every booked interval no later request can reach (bulk.py
        compares states; placing never looks at them either way)."""
        c = self._conns
        self._prune(self._horizon(self._seen, c[0].last_start if len(c) == 1 else 0.0))

    def submit(self, now: float, offset: int, length: int, write: bool = False) -> float:
        # The hot path of every config with an NBD target: the single
        # connection's slot, and each direction's in-order booking (the
        # common case of _Pipe.place, an append or an extension) inlined.
        if self.connections == 1:
            conn = self._conns[0]
            start = conn.free[0]
            if start < now:
                start = now
        else:
            conn, start = self._pick(now)
        conn.last_start = start
        self._seen = now
        s, e = self._up_s, self._up_e
        ds, de = self._down_s, self._down_e
        win = self._win_s_per_byte
        if len(e) > PRUNE_AT or len(de) > PRUNE_AT or (
                win and len(conn.win_up.e) + len(conn.win_down.e) > PRUNE_AT):
            self._prune(self._horizon(now, start))
        inv_bw = self._inv_bw
        half = self._half_rtt
        if write:
            copy = length * self.copy_s_per_byte
            x = start + copy
            nbytes = length + self.overhead
        else:
            x = start
            nbytes = self.overhead
        d = nbytes * inv_bw
        if not e or x > e[-1]:
            s.append(x)
            arrive = x + d
            e.append(arrive)
        elif x >= s[-1]:
            arrive = e[-1] + d
            e[-1] = arrive
        else:
            arrive = self.link.up.pipe.place(x, d)
        arrive += half
        if win:
            w = conn.win_up.place(x, nbytes * win) - half
            if w > arrive:
                arrive = w
                self.window_limited += 1
        up_bytes = nbytes
        done = self.backend.submit(arrive, offset, length, write)
        s_back = LAST.service
        nbytes = self.reply_overhead if write else length + self.reply_overhead
        d2 = nbytes * inv_bw
        if not de or done > de[-1]:
            ds.append(done)
            end = done + d2
            de.append(end)
        elif done >= ds[-1]:
            end = de[-1] + d2
            de[-1] = end
        else:
            end = self.link.down.pipe.place(done, d2)
        end += half
        if win:
            w = conn.win_down.place(done, nbytes * win) - half
            if w > end:
                end = w
                self.window_limited += 1
        link = self.link
        up = link.up
        up.busy += d
        up.bytes += up_bytes
        down = link.down
        down.busy += d2
        down.bytes += nbytes
        if write:
            # unloaded: the round trip, both directions' bytes, the backend, the copy
            LAST.service = self._rtt + d + d2 + s_back + copy
        else:
            copy = length * self.copy_s_per_byte
            end += copy
            LAST.service = self._rtt + d + d2 + s_back + copy
        if conn.unused:  # the slot is released when the reply arrives
            heapq.heappush(conn.free, end)
            conn.unused -= 1
        else:
            heapq.heapreplace(conn.free, end)
        return end

    # ----------------------------------------- requests whose server is a node
    def open(self, now: float):
        """A request slot for a request whose server side is not a Device
        (pull: the snapshot view serves it): a connection with a free slot
        (its open requests below ``slots``), or None when all are taken
        (the caller waits for a ``close``). Round robin over connections.
        The server is QEMU's own NBD export, so a connection serves at most
        ``NBD_SERVER_MAX_REQUESTS`` of them whatever the client's depth."""
        self._served = True
        limit = min(self.slots, NBD_SERVER_MAX_REQUESTS)
        conns = self._conns
        n = len(conns)
        for k in range(n):
            c = conns[(self._rr + k) % n]
            if c.open < limit:
                self._rr = (self._rr + k + 1) % n
                c.open += 1
                return c
        return None

    def close(self, conn: _Connection) -> None:
        conn.open -= 1

    def request(self, conn: _Connection, now: float, length: int, write: bool = False) -> float:
        """The request (header, and a write's data) leaves the client at
        ``now`` on ``conn``: when it has arrived at the server."""
        self._maybe_prune(conn, now)
        if write:
            return self._up(conn, now + length * self.copy_s_per_byte, length + self.overhead)
        return self._up(conn, now, self.overhead)

    def reply(self, conn: _Connection, now: float, length: int, write: bool = False) -> float:
        """The server has served the request at ``now``: when its reply (and a
        read's data, copied out of the socket) is at the client."""
        self._maybe_prune(conn, now)
        if write:
            return self._down(conn, now, self.reply_overhead)
        return self._down(conn, now, length + self.reply_overhead) \
            + length * self.copy_s_per_byte

    def describe(self) -> str:
        win = f", window {self.window / 2**10:.0f}KiB" if self.window else ""
        return (f"remote {self.name}: rtt {self.link.rtt * 1e3:.2f}ms, link "
                f"{self.link.bandwidth / 2**20:.0f}MiB/s each way, {self.connections} x qd "
                f"{self.slots}{win} -> {self.backend.describe()}")


def build_remote(name: str, spec, build_device) -> RemoteDevice:
    """A RemoteDevice from a resolved ``DeviceSpec`` of kind ``remote``."""
    link = Link(f"{name}.link", spec.rtt, spec.link_bandwidth)
    return RemoteDevice(name, link, build_device(f"{name}.backend", spec.backend),
                        connections=spec.connections, window=spec.window or None,
                        overhead=spec.request_overhead, reply_overhead=spec.reply_overhead,
                        slots=spec.queue_depth)
