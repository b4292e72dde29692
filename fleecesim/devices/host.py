"""The host's software cost of an I/O request in QEMU (timing only).

Every request a QEMU block node sends to a device costs CPU on the way:
coroutine creation and completion, the block layer (block/io.c:
bdrv_co_preadv_part / bdrv_co_pwritev_part), and the hand-off to the thread
pool and back (block/file-posix.c: raw_co_prw -> raw_thread_pool_submit;
util/thread-pool.c: thread_pool_submit_co). That work runs in one AioContext
— one thread, the main loop or the disk's iothread — so it is a FIFO
single server shared by the guest's requests and the backup's: at most
``1 / request_cost`` requests per second whatever the devices can do.

The data also crosses the user/kernel boundary once per request: with
``cache.direct=off`` (blockdev-add's default) a read copies page cache ->
QEMU's buffer (copy_to_user) and a write copies back (copy_from_user); an
NBD request copies to or from the socket. So a block-copy chunk moved with
read + write (block/block-copy.c: block_copy_do_copy, COPY_READ_WRITE: a
``bounce_buffer`` filled by bdrv_co_pread, emptied by bdrv_co_pwrite) is
copied twice. Those copies run in the thread-pool workers (up to 64,
util/thread-pool.c ``max_threads``), in parallel, so they share the
memory bandwidth: a FIFO pipe of ``memcpy_bandwidth``. Set it to 0 for
``cache.direct=on`` images (O_DIRECT: the device DMAs into QEMU's buffer).
(An NBD request's socket copy is the exception: see ``with_host``.)

Both are charged *before* the device, so every analytic queue still sees
its submissions in time order; for a read the copy really happens after the
device, which matters only when the memory pipe itself queues.

``copy_range`` is block-copy with ``x-perf.use-copy-range`` (QEMU >= 6.0):
one request (bdrv_co_copy_range -> file-posix raw_co_copy_range_to ->
handle_aiocb_copy_range, a copy_file_range(2) loop in a thread-pool worker)
instead of two, and no copy through QEMU's buffer. Linux serves
copy_file_range between two files without a reflink in the kernel
(fs/read_write.c: vfs_copy_file_range -> splice_file_range /
do_splice_direct): the source pages are spliced, not copied, and written to
the target's page cache, one in-kernel copy; both devices work at once. A
reflink (XFS/Btrfs, same filesystem) would move no data at all — not
modelled: source and target here are different devices.
"""
from __future__ import annotations

from bisect import bisect_right
from heapq import heapreplace

from . import base
from .base import Device


class Host:
    """The per-request CPU server and the shared memory-copy pipe."""

    def __init__(self, request_cost: float = 0.0, memcpy_bandwidth: float = 0.0):
        if request_cost < 0 or memcpy_bandwidth < 0:
            raise ValueError("host: request-cost and memcpy-bandwidth must be >= 0")
        self.request_cost = float(request_cost)
        self.memcpy_bandwidth = float(memcpy_bandwidth)
        # the AioContext thread: one slot, service = request_cost
        self.cpu = Device("host.cpu", request_cost, 1e300, 1) if request_cost else None
        # thread-pool workers copying in parallel over one memory bandwidth
        self.memcpy = Device("host.memcpy", 0.0, memcpy_bandwidth, 64) \
            if memcpy_bandwidth else None
        self._cpu_free = 0.0
        self.requests = 0
        self.copied = 0

    def charge(self, now: float, nbytes: int) -> float:
        """One request submitted at ``now`` whose ``nbytes`` are copied once
        through memory: when it can reach the device."""
        # Both queues are Device.submit's arithmetic, reduced: the CPU has one
        # slot; the memory pipe is FIFO, so a copy starts at max(now, pipe):
        # its 64 slots never bind (every slot frees no later than the pipe).
        # Only their clocks are kept (requests and copied are the counters).
        self.requests += 1
        if self.cpu is not None:
            t = self._cpu_free if self._cpu_free > now else now
            t += self.request_cost
            self._cpu_free = t
        else:
            t = now
        if nbytes and self.memcpy is not None:
            self.copied += nbytes
            mc = self.memcpy
            pipe = mc._pipe_free
            t = (t if t > pipe else pipe) + nbytes * mc.inv_bw
            mc._pipe_free = t
        return t


class HostDevice:
    """A device as a QEMU node sees it: every request pays the host's cost
    first (``copy``: its bytes are copied through memory once; False for a
    RAM device, whose bandwidth already is a memory copy). Everything else
    (slots, link, backend, counters) is the wrapped device's."""

    def __init__(self, device, host: Host, copy: bool = True):
        self.device = device
        self.host = host
        self.copy = copy
        if type(device).submit is Device.submit:
            # a plain analytic queue (RAM, SSD): the host's charge and the
            # device's queue in one call (an instance attribute wins over the
            # class's method)
            self.submit = self._submit_queue

    def _submit_queue(self, now: float, offset: int, length: int, write: bool = False) -> float:
        # ``submit`` below with Device.submit inlined, statement for statement
        # (the same float operations in the same order, so the same bits): the
        # hottest function of a run, one Python call per request instead of two.
        host = self.host
        host.requests += 1
        if host.cpu is not None:
            t = host._cpu_free
            if not t > now:
                t = now
            t += host.request_cost
            host._cpu_free = t
        else:
            t = now
        # the request's own host time (LAST.service below): its CPU cost plus
        # its copy's duration (the same product as the pipe's, made once)
        hs = host.request_cost
        if length and self.copy:
            mc = host.memcpy
            if mc is not None:
                host.copied += length
                pipe = mc._pipe_free
                cp = length * mc.inv_bw
                t = (t if t > pipe else pipe) + cp
                mc._pipe_free = t
                hs = hs + cp
            else:
                hs = hs + 0.0
        else:
            hs = hs + 0.0
        dev = self.device
        free = dev._free
        start = free[0] if free[0] > t else t
        if write:
            xfer = start + dev.write_latency
            dur = length * dev.inv_wbw
            if dur < dev.min_write and length:
                dur = dev.min_write
        else:
            xfer = start + dev.latency
            dur = length * dev.inv_bw
            if dur < dev.min_read and length:
                dur = dev.min_read
        if dev._positions:
            xfer += dev.positioning(offset, length)
        if dev.ps:
            if dur:
                b = dev._busy
                if xfer >= b[-2]:
                    last = b[-1]
                    if xfer <= last:
                        end = last + dur
                        b[-1] = end
                    else:
                        end = xfer + dur
                        if last <= free[0]:
                            dev._busy = [xfer, end]
                        else:
                            b += (xfer, end)
                            if len(b) > dev._prune_at:  # drop what no later request can reach
                                del b[:bisect_right(b, free[0]) & -2]
                elif xfer + dur < b[-2] and (len(b) == 2 or xfer > b[-3]):
                    # ready, and done, in the gap before the last interval
                    end = xfer + dur
                    b[-2:-2] = (xfer, end)
                else:
                    end = dev._backfill(xfer, dur, free[0])
            else:
                end = xfer
        else:
            pipe = dev._pipe_free
            end = (xfer if xfer > pipe else pipe) + dur
            dev._pipe_free = end
        heapreplace(free, end)
        dev.ops += 1
        dev.bytes += length
        dev.busy += dur
        # LAST.service: the device's service, then the host's time added (as
        # ``submit`` does: Device.submit sets it, then ``+=``)
        base.LAST.service = (xfer - start + dur) + hs
        return end

    def __getattr__(self, name):
        return getattr(self.device, name)

    def submit(self, now: float, offset: int, length: int, write: bool = False) -> float:
        # Host.charge inlined, then the device: the hottest path of a run
        # (every guest request and every copy); the same arithmetic.
        host = self.host
        host.requests += 1
        if host.cpu is not None:
            t = host._cpu_free
            if not t > now:
                t = now
            t += host.request_cost
            host._cpu_free = t
        else:
            t = now
        if length and self.copy:
            mc = host.memcpy
            if mc is not None:
                host.copied += length
                pipe = mc._pipe_free
                t = (t if t > pipe else pipe) + length * mc.inv_bw
                mc._pipe_free = t
        end = self.device.submit(t, offset, length, write)
        # the request's own host time (latency attribution): its CPU cost and
        # its memory copy
        base.LAST.service += host.request_cost + (length * host.memcpy.inv_bw
                                                  if length and self.copy
                                                  and host.memcpy is not None else 0.0)
        return end

    def describe(self) -> str:
        return self.device.describe()


def with_host(device, host: Host | None, kind: str):
    """``device`` behind the host's software cost (unchanged without a host).

    An NBD device copies a request's bytes to or from the socket only once
    the request has one of the connection's slots (block/nbd.c:
    nbd_co_send_request waits on ``free_sema`` first), so that copy is the
    remote device's own delay after the slot (RemoteDevice.copy_s_per_byte),
    not a place in the shared memory pipe taken while still waiting for a
    slot: charged at submission, writes queued for NBD slots would hold the
    pipe ahead of reads that could run."""
    if host is None or (host.cpu is None and host.memcpy is None):
        return device
    if kind == "remote":
        if host.memcpy_bandwidth:
            device.copy_s_per_byte = 1.0 / host.memcpy_bandwidth
        return HostDevice(device, host, copy=False)
    return HostDevice(device, host, copy=kind != "ram")


def copy_range(src, dst, now: float, offset: int, length: int) -> float:
    """copy_file_range of ``length`` bytes from ``src`` to ``dst`` (two local
    devices), submitted at ``now``: one request's CPU cost, one in-kernel copy,
    then both devices at once (splice moves the data in pipe-buffer pieces, so
    reading and writing overlap). Returns when both are done."""
    host = getattr(src, "host", None)
    t = host.charge(now, length) if host is not None else now
    s = getattr(src, "device", src)
    d = getattr(dst, "device", dst)
    a = s.submit(t, offset, length)
    b = d.submit(t, offset, length, True)
    return a if a > b else b
