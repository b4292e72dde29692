"""An NBD export seen from the client's side of the NBD transport.

Its one child is the exported node (the snapshot view for pull fleecing),
the server side; ``transport`` is a remote device (devices/remote.py) whose
connections, request slots, TCP window, headers and full-duplex link the
requests cross — its backend is not used, the child serves them. A read:

1. takes a request slot (``transport.open``; none free: it waits, FIFO, for
   a ``close``). The server is QEMU's own NBD export, which reads at most 16
   requests of a client at a time (nbd/server.c nbd_client_receive_next_request,
   ``MAX_NBD_REQUESTS``), the slot's bound whatever the client's depth;
2. sends its request header client -> server (``transport.request``);
3. is served by the child at the server (nbd_do_cmd_read -> blk_co_pread);
4. sends the reply header and data server -> client (``transport.reply``,
   nbd_co_send_simple_reply), then frees the slot.

A discard (NBD_CMD_TRIM) crosses up, reaches the child, and its reply comes
back (nbd_handle_request: blk_co_pdiscard, then nbd_send_generic_reply).
Block status (``zero_map``, ``peek``) is passed through at no cost:
NBD_CMD_BLOCK_STATUS answers for a whole chunk in one round trip that a
client overlaps with its reads, so we do not charge it.
"""
from __future__ import annotations

from collections import deque

from .base import Node


class NBDExport(Node):
    def __init__(self, env, child, transport, cluster_size: int, stats=None):
        super().__init__(env, "nbd-export", cluster_size)
        self.child = child
        self.transport = transport
        self.stats = stats
        self.read_bytes = 0
        self.discards = 0
        self._waiting: deque = deque()  # requests waiting for a slot, FIFO

    def zero_map(self, c0, c1):
        return self.child.zero_map(c0, c1)

    def peek(self, c0, c1):
        return self.child.peek(c0, c1)

    def zero_state(self):
        return self.child.zero_state()

    def peek_state(self):
        return self.child.peek_state()

    def peek_extent(self, c0, c1):
        return self.child.peek_extent(c0, c1)

    def _open(self):
        conn = self.transport.open(self.env.now) if not self._waiting else None
        if conn is None:
            ev = self.env.event()
            self._waiting.append(ev)
            conn = yield ev  # a finished request handed us its slot
        return conn

    def _close(self, conn) -> None:
        if self._waiting:  # the slot goes straight to the oldest waiter
            self._waiting.popleft().succeed(conn)
        else:
            self.transport.close(conn)

    def read(self, offset, length, flags=0, att=None):
        env = self.env
        t = self.transport
        conn = yield from self._open()
        at = t.request(conn, env.now, length)
        yield env.timeout(at - env.now)
        data = yield from self.child.read(offset, length, flags)
        if data is None:
            self._close(conn)
            return None
        end = t.reply(conn, env.now, length)
        yield env.timeout(end - env.now)
        self._close(conn)
        self.read_bytes += length
        return data

    def discard(self, offset, length, flags=0, att=None):
        env = self.env
        t = self.transport
        conn = yield from self._open()
        at = t.request(conn, env.now, 0, True)
        yield env.timeout(at - env.now)
        res = yield from self.child.discard(offset, length, flags)
        end = t.reply(conn, env.now, 0, True)
        yield env.timeout(end - env.now)
        self._close(conn)
        self.discards += 1
        return res
