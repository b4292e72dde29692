"""The backup target: the remote image the backup writes (reached over NBD)."""
from __future__ import annotations

import errno
from collections import deque

import numpy as np

from ..metrics import PATH_DIRECT, PATH_ERROR
from ..sparse import env_sparse, full
from .base import REQ_CBW, REQ_ZERO, Node

UNWRITTEN = np.uint32(0xFFFFFFFF)


class BackupTarget(Node):
    """Stores the generation each copy carried, and counts copies per cluster
    (a cluster copied twice is a bug the tests look for).

    ``cbw_priority`` (``backup.cbw-priority``; off = what QEMU does): the
    seed's postscript — Vladimir's parallel backup "creates queues of requests
    with different priority, to handle CBW requests in common pipeline". In
    QEMU the CBW's copies and the job's share one FIFO: block-copy writes both
    through the same target (block/block-copy.c: block_copy_do_copy ->
    bdrv_co_pwrite) and the NBD client hands out its MAX_NBD_REQUESTS slots in
    arrival order (block/nbd.c: nbd_co_send_request waits on the ``free_sema``
    CoQueue; nbd_reply_chunk_iter_receive wakes the next waiter). With the
    option on, this node keeps that queue itself, in two classes: it lets at
    most ``device.slots`` of its writes be outstanding at the device and,
    when one completes, hands the slot to the oldest waiting copy-before-write
    (REQ_CBW) before any waiting job write. A write already submitted (on the
    wire or at the server) is never pre-empted; only queued ones are
    overtaken. A guest write that waits for a job copy already claimed (a
    cluster in flight) waits on a job write, so BlockCopy.copy calls
    ``promote`` for its range (queued job writes move to the CBW queue) and
    marks that copy's later target write REQ_CBW — else the option would
    only move the delay from CBW writes to these waiting ones. Because the
    node never has more writes at the device than it has slots, the device's
    analytic completion time computed at submission stays exact (nothing
    submitted later can be ahead of it), and the device stays timing-only.
    If other nodes share the device, their requests are not in this queue
    and are served by the device FIFO as before.
    """

    is_target = True  # a copy written here is a target write (latency attribution)
    errno = errno.EIO  # a failed request (outage, reset): the NBD client's EIO

    def __init__(self, env, device, n_clusters: int, cluster_size: int, stats,
                 cbw_priority: bool = False):
        super().__init__(env, "target", cluster_size)
        self.device = device
        self.stats = stats
        sp = env_sparse(env)
        self.gen = full(n_clusters, np.uint32, UNWRITTEN, sp)
        self.copies = full(n_clusters, np.uint8, 0, sp)  # > 1 is a bug; counts wrap at 256
        self.cbw_priority = cbw_priority
        # Several NBD clients on one link (VMs backing up to one server,
        # fleet.py): a write waiting for one of this client's slots is not on
        # the wire yet, so it must reach the shared link only when it has one
        # (else its reserved place in the link's FIFO would hold up the other
        # clients' writes that could go now). This node keeps that queue.
        self.queued = cbw_priority or bool(getattr(device, "link_shared", False))
        self._slots = device.slots * getattr(device, "connections", 1)
        self._outstanding = 0
        self._waiting = (deque(), deque())  # copy-before-write first, then the job
        # faults.py: a FaultyDevice says whether each request failed (EIO)
        self._faulty = getattr(device, "faulty", False)

    def write(self, offset, length, data=None, flags=0, att=None):
        env = self.env
        zero = bool(flags & REQ_ZERO)
        if self.queued:
            yield from self._take_slot(self.cbw_priority and bool(flags & REQ_CBW),
                                       offset, length)
        end = self.device.submit(env.now, offset, 0 if zero else length, True)
        failed = self._faulty and self.device.failed
        yield env.timeout(end - env.now)
        if self.queued:
            self._release_slot()
        if failed:
            return PATH_ERROR  # nothing landed
        self.store(offset, length, data, zero)
        return PATH_DIRECT

    def write_at(self, offset, length, data=None, flags=0):
        if self.queued or self._faulty:  # may wait for a slot in this node's own
            return None  # queue, or fail (faults.py): the generator path handles both
        zero = bool(flags & REQ_ZERO)
        end = self.device.submit(self.env._now, offset, 0 if zero else length, True)

        def finish():
            self.store(offset, length, data, zero)
            return PATH_DIRECT
        return end, finish

    def store(self, offset, length, data, zero: bool = False) -> None:
        """Record what landed (also called by a source that copied here by
        copy offload, which used this node's device itself)."""
        c0, c1 = self.clusters(offset, length)
        if c1 - c0 == 1 and isinstance(data, np.ndarray) and data.shape == (1,):
            self.gen[c0] = data[0]
            self.copies[c0] += 1
        else:
            self.gen[c0:c1] = data
            if isinstance(self.copies, np.ndarray):
                self.copies[c0:c1] += 1
            else:  # sparse state: page by page, whatever the length (a bulk of zeroes)
                self.copies.add(c0, c1, 1)
        if zero:
            self.stats.target_zero_bytes += length
        else:
            self.stats.target_write_bytes += length

    def _take_slot(self, cbw: bool, offset: int, length: int):
        if self._outstanding < self._slots:
            self._outstanding += 1
            return
        ev = self.env.event()
        self._waiting[0 if cbw else 1].append((offset, length, ev))
        yield ev  # _release_slot handed us its slot

    def _release_slot(self) -> None:
        cbw, job = self._waiting
        q = cbw or job
        if q:
            q.popleft()[2].succeed()  # the slot passes on; _outstanding is unchanged
        else:
            self._outstanding -= 1

    def promote(self, offset: int, length: int) -> None:
        """A guest write now waits for queued job writes in this range: serve
        them with the copy-before-writes (only with cbw-priority)."""
        job = self._waiting[1]
        if not job:
            return
        end = offset + length
        hit = [w for w in job if w[0] < end and offset < w[0] + w[1]]
        for w in hit:
            job.remove(w)
            self._waiting[0].append(w)
