"""A long run of zero clusters copied as one bulk of write-zeroes.

What QEMU does (7.2; block/backup.c, block/block-copy.c): a full backup sets
every bit of the copy bitmap (backup_init_bcs_bitmap: only sync=top skips
unallocated areas, through block_copy_set_skip_unallocated) and hands the
whole disk to block_copy_async with ``max-workers`` and ``max-chunk``
(backup_loop). block_copy_dirty_clusters then creates one task per dirty area
of at most one chunk (block_copy_task_create: 1 MiB, BLOCK_COPY_MAX_BUFFER,
unless max-chunk is smaller), asks block status for that task only
(block_copy_block_status) and shrinks it to the first extent; a zero extent
makes the task COPY_WRITE_ZEROES: one bdrv_co_pwrite_zeroes of at most one
chunk (block_copy_do_copy), i.e. one NBD_CMD_WRITE_ZEROES round trip per MiB.
So 64 TiB of zeroes is 64 Mi requests, ``max-workers`` of them in flight:
with QEMU's 16 NBD request slots (block/nbd.c MAX_NBD_REQUESTS) and a 2 ms
round trip, ~2.5 hours of backup for no data. The model keeps that cost.

What it does not keep is one Python task per request. When the job's next
run starts ``BULK_MIN_REQUESTS`` (64) or more chunks of clusters that are
still needed and zero at t0 (the snapshot of a cluster still needed *is* its t0
content: every write to it copied it first), one worker claims the whole
run and its write-zeroes go to the target at once (devices/bulk.py:
``submit_many``, the schedule of that many submits). The run stands for as
many of the job's workers as it has requests, as in QEMU they all take its
tasks: the others of them wait (``hold``) and are released one by one at
the completion times of the bulk's last requests, as each QEMU worker
finishes its last task of the run and moves on. Differences from per-task
copying: its requests enter the target's queue at its start (a worker's other
write submitted meanwhile queues behind all of them, not behind
``max-workers``); they pay the host's per-request cost without taking the
host's queue from the guest (devices/bulk.py); the copy memory they would
hold is not charged. Measured against per-task copying (``run.bulk-zeroes:
false``): equal bytes and requests, backup duration within ~0.1 %.

Only where nothing else writes the target meanwhile: one VM (no fleet), the
job's own copier (not shared with a copy-before-write, as ``backup`` and
``legacy-backup`` share it), no target faults or CBW priority queue, no
``speed`` limit and no read-once discard after each chunk; and only with
``run.bulk-zeroes`` (default on). Test: tests/test_bulk_zeroes.py compares
bulk and per-task runs.
"""
from __future__ import annotations

from heapq import heappop, heappush

from ..devices.bulk import submit_many
from ..nodes.base import at
from ..sparse import first
from .block_copy import CopyTask

BULK_MIN_REQUESTS = 64  # chunks: shorter zero runs go task by task


class ZeroBulk:
    """The bulk-of-zeroes path of one BackupJob (module doc)."""

    def __init__(self, job, zero0):
        self.job = job
        self.copier = job.copier
        self.env = job.env
        self.zero0 = zero0  # the source's zero map at t0
        self.chunk_bytes = self.copier.chunk * self.copier.cs
        self.held: list[float] = []  # when waiting workers may claim again
        self.bulks = 0
        self.requests = 0

    # ------------------------------------------------------------ the job's side
    def hold(self, now: float) -> float | None:
        """A worker asks for work: the time it must wait until (it is one of
        the workers a bulk in flight stands for: ``release`` then), or None."""
        h = self.held
        if h:
            t = heappop(h)
            if t > now:  # in QEMU it would be copying a chunk of the run until then
                self.copier.inflight_level.add(self.chunk_bytes)
                return t
        return None  # no bulk in flight, or this worker's release time has passed

    def release(self) -> None:
        """A held worker's wait is over: its last task of the run has ended."""
        self.copier.inflight_level.add(-self.chunk_bytes)

    def claim(self, run) -> list | None:
        """The policy's next run as one bulk task if a long zero run starts there."""
        c0, c1 = run
        cp = self.copier
        ch = cp.chunk
        if c1 - c0 < ch or cp.zero_detect != "block-status" or not self.zero0[c0]:
            return None
        n = cp.n
        least = BULK_MIN_REQUESTS
        e = first(self.zero0, c0, min(n, c0 + least * ch), nz=False)
        if e >= 0:  # too short (the usual case: checked within ``least`` chunks)
            return None
        e = first(self.zero0, c0, n, nz=False)
        e = n if e < 0 else e
        en = first(cp.needed, c0, e, nz=False)
        if en >= 0:
            e = en
        if e < n:
            e = e // cp.k * cp.k
        if -(-(e - c0) // ch) < least:
            return None
        cp.needed[c0:e] = False
        cp.remaining -= e - c0
        return [(c0, e, True, CopyTask(self.env))]

    # ------------------------------------------------------------ the copy
    def _submit(self, a: int, b: int):
        """Send the bulk's write-zeroes now; (end, finish)."""
        cp, env = self.copier, self.env
        cs, ch = cp.cs, cp.chunk
        off = a * cs
        ln = min(b * cs, cp.disk_size) - off
        m = -(-(b - a) // ch)
        data = cp.source.peek_extent(a, b)  # the content the copy carries (its t0 content)
        workers = max(1, self.job.workers)
        ends = submit_many(cp.target.device, env.now, m, off, ch * cs, 0, True, keep=workers)
        self.held = [t for t in self.held if t > env.now]
        for t in ends[:-1][-(workers - 1):] if workers > 1 else []:
            heappush(self.held, t)
        self.bulks += 1
        self.requests += m
        flight = min(ln, ch * cs)  # this worker's task in flight; held ones add theirs
        cp.inflight_level.add(flight)

        def finish(ev) -> bool:
            cp.inflight_level.add(-flight)
            cp.target.store(off, ln, data, True)
            cp.copied_bytes += ln
            cp.copies += m
            ev.fire(True)
            return True
        return ends[-1], finish

    def run(self, a: int, b: int, ev):
        """BlockCopy.run_task of a bulk (the process engine)."""
        end, finish = self._submit(a, b)
        yield self.env.timeout(end - self.env.now)
        return finish(ev)

    def start(self, a: int, b: int, ev, done) -> None:
        """BlockCopy.start_task of a bulk (callbacks)."""
        end, finish = self._submit(a, b)
        at(self.env, end, lambda: done(finish(ev)))


def attach(graph, env, cfg) -> ZeroBulk | None:
    """Give the graph's backup job a bulk path if nothing else writes its target
    (module doc); returns it, or None."""
    job = getattr(graph, "job", None)
    if job is None or not getattr(env, "bulk_zeroes", False) or not cfg.run.bulk_zeroes:
        return None
    cp = getattr(job, "copier", None)
    if cp is None or cp.source is None or not hasattr(cp.source, "peek_extent"):
        return None
    flt = getattr(graph, "filter", None)
    if flt is not None and getattr(flt, "copier", None) is cp:
        return None  # copy-before-write shares the copier: it writes the target too
    tgt = cp.target
    dev = getattr(tgt, "device", None)
    if (dev is None or getattr(tgt, "cbw_priority", False) or getattr(dev, "faulty", False)
            or job.speed or job.after_copy is not None or not hasattr(tgt, "store")):
        return None
    from ..policies._passes import zero_state
    bulk = ZeroBulk(job, zero_state(cp.source, cp.n))
    job.bulk = bulk
    cp.bulk = bulk
    return bulk
