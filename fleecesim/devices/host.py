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

Copy offload (``x-perf.use-copy-range``) is modelled at the end of this
module: ``copy_method`` (can the kernel offload between two devices, and how)
and ``copy_file_range`` (the kernel's copy loop, request by request).
"""
from __future__ import annotations

from bisect import bisect_right
from heapq import heappush, heapreplace

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
        f0 = free[0]
        start = f0 if f0 > t else t
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
                b2 = b[-2]
                if xfer >= b2:
                    last = b[-1]
                    if xfer <= last:
                        end = last + dur
                        b[-1] = end
                    else:
                        end = xfer + dur
                        if last <= f0:
                            dev._busy = [xfer, end]
                        else:
                            b += (xfer, end)
                            if len(b) > dev._prune_at:  # drop what no later request can reach
                                del b[:bisect_right(b, free[0]) & -2]
                elif xfer + dur < b2 and (len(b) == 2 or xfer > b[-3]):
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
        if dev._unused:  # a never-used slot (Device.__init__: the lazy heap)
            heappush(free, end)
            dev._unused -= 1
        else:
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



# ---------------------------------------------------------------- copy offload
#
# QEMU: block-copy with x-perf.use-copy-range calls bdrv_co_copy_range
# (block/block-copy.c: block_copy_do_copy) -> file-posix raw_co_copy_range_to
# -> handle_aiocb_copy_range, a loop of copy_file_range(2) calls in one
# thread-pool worker; any error but ENOSYS/EINTR is returned as is, and
# block_copy_do_copy then falls back to read + write (COPY_READ_WRITE) for
# that chunk and, through block_copy_task_entry, for every later one. A
# driver without copy_range callbacks (NBD) fails before any system call
# (block/io.c: bdrv_co_copy_range_internal, -ENOTSUP).
#
# Linux (fs/read_write.c: vfs_copy_file_range, generic_copy_file_checks,
# >= 5.19): files on two different filesystems whose driver has no
# ->copy_file_range of its own (ext4, XFS, btrfs, tmpfs) get -EXDEV. On one
# filesystem, a driver with ->remap_file_range (XFS with reflink=1, btrfs)
# clones the extents (REMAP_FILE_CAN_SHORTEN); otherwise, or when the clone is
# refused, the data is copied by do_splice_direct -> splice_direct_to_actor
# (fs/splice.c): a loop, each turn do_splice_read of at most the free room of
# the task's internal pipe (alloc_pipe_info: PIPE_DEF_BUFFERS = 16 pages,
# include/linux/pipe_fs_i.h) from the source's page cache
# (filemap_splice_read), then the actor writes the pipe out to the target.
# One piece at a time, read then write: one worker copies at QD1.
#
# In the model a simulator device is one filesystem (both images on one device
# = one filesystem; two devices = two filesystems).

PAGE_SIZE = 4096
PIPE_DEF_BUFFERS = 16
SPLICE_PIECE = PIPE_DEF_BUFFERS * PAGE_SIZE  # 64 KiB per turn of the splice loop
# include/linux/mm.h: VM_READAHEAD_PAGES = SZ_128K / PAGE_SIZE, a block
# device's default read-ahead (its bdi ra_pages; /sys/block/*/queue/read_ahead_kb).
READ_AHEAD = 128 * 1024


def bare(device):
    """The device under any wrappers (HostDevice, a fault wrapper)."""
    while True:
        inner = vars(device).get("device")
        if inner is None:
            return device
        device = inner


def copy_method(src, dst) -> str:
    """What copy_file_range does between a file on ``src`` and one on ``dst``:
    ``reflink`` (the filesystem clones extents), ``splice`` (the kernel copies
    through the page cache), or the error that makes QEMU fall back to
    read + write: ``ENOTSUP`` (a remote device: NBD has no copy_range) or
    ``EXDEV`` (two filesystems)."""
    if getattr(src, "kind", "") == "remote" or getattr(dst, "kind", "") == "remote":
        return "ENOTSUP"
    s, d = bare(src), bare(dst)
    if s is not d:
        return "EXDEV"
    return "reflink" if getattr(s, "reflink", False) else "splice"


class PageCache:
    """What the copy loop needs of the source file's page cache, as timing
    state (no data): read-ahead a stream issued past the end of its own copy
    (``ahead``: window start -> when its read completes), the offsets where
    copies started (``starts``: their first pages are cached or in flight, so
    a read-ahead running into them reads nothing), and where the last read of
    the file ended (the shared ``f_ra.prev_pos`` of mm/readahead.c)."""

    __slots__ = ("ahead", "starts", "prev_pos")

    def __init__(self):
        self.ahead: dict[int, float] = {}
        self.starts: set[int] = set()
        self.prev_pos = -1

    @staticmethod
    def of(device) -> "PageCache":
        d = bare(device)
        pc = vars(d).get("page_cache")
        if pc is None:
            pc = d.page_cache = PageCache()
        return pc


def copy_file_range(env, src, dst, offset: int, length: int, size: int, method: str):
    """One copy_file_range(2) of [offset, offset + length) from the file on
    ``src`` to the same offsets of the file on ``dst`` (a generator: the loop
    runs request by request, each submitted when the kernel would). ``size``:
    the source file's size (read-ahead stops there). ``method``: ``splice``
    or ``reflink`` (copy_method).

    QEMU's side, once per call: one request's CPU cost (the thread-pool
    hand-off), and for ``splice`` one copy of the bytes through memory (the
    pipe's page references are copied into the target's page cache by the
    splice write; the read side only takes references).

    ``reflink``: one metadata write on the device (a zero-length write, as a
    discard is; the clone's transaction) per call. Chosen, not measured: a
    chunk of a contiguous image is one source extent (XFS: up to 2^21 blocks,
    XFS_MAX_BMBT_EXTLEN; btrfs: BTRFS_MAX_EXTENT_SIZE = 128 MiB), so one
    remap per chunk; no data moves.

    ``splice``: the loop of splice_direct_to_actor, pieces of SPLICE_PIECE,
    each read from the page cache, then written to ``dst`` and waited for.
    The page cache's read-ahead (mm/readahead.c) reads the source in windows
    of READ_AHEAD:

    * where the copy starts (page_cache_sync_ra): at offset 0 or where the
      file's last read ended (f_ra.prev_pos) it is a sequential stream: an
      initial window at once (get_init_ra_size: 16 pages asked, 32 max -> 32),
      marked PG_readahead one piece in (async_size = size - req_count);
      where an earlier copy's read-ahead already reached, that window;
      elsewhere a "standalone, small random read": no read-ahead history
      (contig_count <= req_count), so the first two pieces are read as asked,
      and the third opens a window (ra->size = min(contig_count + req_count,
      max) = 32 pages, async_size 1: marked on its last page);
    * a piece that reaches a marked page (page_cache_async_ra, the expected
      index) submits the next window at once, marked on its first page
      (async_size = size), before the reader waits for its own pages: the
      device works one window ahead of the copy, and the last window of a
      copy reads past its end (it does not know where the copy stops): the
      next copy starting there finds it, and a window whose start another
      copy already read is not read again.

    Simplifications: each copy keeps its own read-ahead state (the kernel's
    f_ra is one per open file, shared by QEMU's workers; interleaved streams
    recover their window through the PG_readahead marks, which is what is
    kept); windows are counted from where each copy started."""
    host = getattr(src, "host", None)
    if method == "reflink":
        t = host.charge(env.now, 0) if host is not None else env.now
        if t > env.now:
            yield env.timeout(t - env.now)
        end = bare(dst).submit(env.now, offset, 0, True)
        yield env.timeout(end - env.now)
        return
    t = host.charge(env.now, length) if host is not None else env.now
    if t > env.now:
        yield env.timeout(t - env.now)
    s, d = bare(src), bare(dst)
    pc = PageCache.of(s)
    P, W = SPLICE_PIECE, READ_AHEAD
    end = offset + length
    win: dict[int, float] = {}   # this copy's windows: start -> read complete
    marks: set[int] = set()      # offsets of PG_readahead pages
    nxt = 0                      # where the next window starts (0: no window yet)
    plain = offset               # pieces before this are read as asked (random start)
    ahead = pc.ahead.pop(offset, None)
    if ahead is not None:        # an earlier copy's read-ahead reached here
        win[offset] = ahead
        marks.add(offset)
        nxt = offset + W
    else:
        if offset != 0 and offset != pc.prev_pos:
            plain = min(end, offset + 2 * P)
        if length > 2 * P:  # a copy that opens read-ahead windows (a chunk, not a CBW's cluster)
            pc.starts.add(offset)
    o = offset
    while o < end:
        pe = min(o + P, end)
        now = env.now
        if o < plain:
            ready = s.submit(now, o, pe - o)
        else:
            if nxt <= o:  # no window covers o: read one now (page_cache_sync_ra)
                wend = min(o + W, size)
                win[o] = s.submit(now, o, wend - o)
                marks.add(o + P if o == offset else wend - PAGE_SIZE)
                nxt = o + W
            hit = [m for m in marks if o <= m < pe]
            if hit and nxt < size:  # page_cache_async_ra: the next window, at once
                marks.difference_update(hit)
                if nxt >= end and nxt in pc.starts:
                    pc.starts.discard(nxt)  # another copy read it already
                else:
                    ws, we = nxt, min(nxt + W, size)
                    r = s.submit(now, ws, we - ws)
                    if ws >= end:
                        pc.ahead[ws] = r  # for the copy that starts there
                    else:
                        win[ws] = r
                        marks.add(ws)
                nxt += W
            ws = offset + (o - offset) // W * W if o >= plain else o
            ready = win.get(ws, now)
        pc.prev_pos = pe
        if ready > now:
            yield env.timeout(ready - now)
        done = d.submit(env.now, o, pe - o, True)
        yield env.timeout(done - env.now)
        o = pe
