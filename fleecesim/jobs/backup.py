"""The backup job: ``max-workers`` coroutines copying chunks in policy order."""
from __future__ import annotations

from ..nodes.base import at

_PENDING = object()  # _work: the tasks it started have not ended yet


class BackupJob:
    """Copies every set bit of a BlockCopy's bitmap, in the order a copy-ordering
    policy gives, with ``workers`` concurrent tasks of up to one chunk each and
    an optional ``speed`` limit (bytes/s) that, as in QEMU, delays only this
    background copying, never a CBW.

    A CBW that shares the job's BlockCopy (backup, legacy-backup, overlay-cor:
    the filter copies through the job's own copy state) still uses up the
    job's quota: block/block-copy.c block_copy_dirty_clusters skips the wait
    for a call with ``ignore_ratelimit`` (the CBW's) but charges every task,
    ``ratelimit_calculate_delay(&s->rate_limit, task->req.bytes)``; and 2018's
    block/backup.c backup_do_cow added the notifier's copies to the
    ``bytes_read`` that yield_and_check rate-limits. So there the job ends at
    about (job + CBW bytes) / speed. A fleecing CBW copies through a block-copy
    state of its own (to the fleecing image) and charges nothing here."""

    def __init__(self, env, copier, policy, workers: int, stats, speed: float = 0.0,
                 name: str = "backup", after_copy=None):
        self.env = env
        self.copier = copier
        self.policy = policy
        self.workers = workers
        self.stats = stats
        self.speed = speed
        self.name = name
        # optional generator fn(c0, c1) run by a worker after each successful copy
        # (a pull client's read-once TRIM)
        self.after_copy = after_copy
        self.done = env.event()
        self.bulk = None  # jobs/bulk.py: long zero runs as one bulk (set at t0 by run.py)
        self.failed = False
        self.t_start = None
        self.t_end = None
        self._next_slot = 0.0
        self._starting = False
        self._sync = _PENDING
        if speed:  # the CBW copies of this copy state charge the quota too
            copier.rate_charge = self.charge

    def charge(self, nbytes: int) -> None:
        """``nbytes`` more against the speed limit: the job's next claim waits
        until they would have passed at ``speed``."""
        self._next_slot = max(self.env.now, self._next_slot) + nbytes / self.speed

    def start(self):
        self.t_start = self.env.now
        self._next_slot = self.env.now
        self.env.process(self._run())

    def _run(self):
        env = self.env
        while True:
            if self.copier.analytic:
                # Issue 12: workers as callbacks on their copies' completions
                # (BlockCopy.start_tasks); each worker's stop is one event,
                # joined as the processes' ends would be.
                self._stops = [env.event() for _ in range(self.workers)]
                self._active = 0
                for _ in range(self.workers):
                    self._work()
                yield env.all_of(self._stops)
            else:
                procs = [env.process(self._worker()) for _ in range(self.workers)]
                yield env.all_of(procs)
            yield from self.copier.wait_idle()
            if self.failed or self.copier.remaining == 0:
                break
            self.policy.rewind()  # a copy failed and set bits back behind us
        self.t_end = env.now
        self.done.succeed(not self.failed)

    def _claim_next(self, released: bool = False):
        """Claim the policy's next run as copy tasks (None: nothing left) and
        charge ``speed`` for them: QEMU charges every task's bytes, write-zeroes
        included. A float: wait until then, a bulk of zeroes in flight stands
        for this worker too (jobs/bulk.py; ``released``: it has waited)."""
        copier = self.copier
        bulk = self.bulk
        if bulk is not None:
            if released:
                bulk.release()
            else:
                t = bulk.hold(self.env.now)
                if t is not None:
                    return t
        run = self.policy.next_run(copier, copier.chunk)
        if run is None:
            return None
        tasks = bulk.claim(run) if bulk is not None else None
        if tasks is None:
            tasks = copier.claim(*run)
        if self.speed:
            self.charge(sum((b - a) * copier.cs for a, b, _z, _e in tasks))
        return tasks

    def _worker(self):
        env = self.env
        copier = self.copier
        released = False
        while not self.failed:
            if self.speed and self._next_slot > env.now:
                # As QEMU's block_copy_dirty_clusters: a rate-limited job sleeps
                # *before* claiming, so clusters it has not started stay unclaimed
                # and a guest write to them copies them itself (CBW is not limited).
                yield env.timeout(self._next_slot - env.now)
                continue
            tasks = self._claim_next(released)
            released = False
            if tasks is None:
                return
            if type(tasks) is float:  # held by a bulk of zeroes (jobs/bulk.py)
                yield env.timeout(tasks - env.now)
                released = True
                continue
            copied = yield from copier.run_tasks(tasks, self.after_copy)
            if copied is None:
                self.failed = True
                return
            self.stats.job_copied_bytes += copied

    # --- the analytic worker (issue 12): _worker's loop, resumed by callbacks
    def _work(self, released: bool = False):
        env = self.env
        copier = self.copier
        while not self.failed:
            if self.speed and self._next_slot > env.now:
                at(env, self._next_slot, self._work)
                return
            tasks = self._claim_next(released)
            released = False
            if tasks is None:
                break
            if type(tasks) is float:  # held by a bulk of zeroes (jobs/bulk.py)
                at(env, tasks, lambda: self._work(True))
                return
            # Trampoline: tasks that end at once (nothing to wait for) return
            # here (through _copied, which sees _starting) instead of recursing
            # into the next iteration. Only this call's tasks can end while it
            # runs: other copies end in event callbacks, never inside a call.
            self._sync = _PENDING
            self._starting = True
            if len(tasks) == 1 and self.after_copy is None:
                # start_tasks' own shortcut for one task, without its call
                a, b, z, ev = tasks[0]
                copier.start_task(a, b, z, ev, 0, self._copied, True)
            else:
                copier.start_tasks(tasks, self._copied, self.after_copy)
            self._starting = False
            copied = self._sync
            if copied is _PENDING:
                return  # continues in _copied()
            if not self._account(copied):
                break
        self._worker_stop()

    def _copied(self, copied) -> None:
        """A worker's tasks ended (``copied``: bytes, or None if one failed)."""
        if self._starting:
            self._sync = copied
        elif self._account(copied):
            self._work()
        else:
            self._worker_stop()

    def _account(self, copied) -> bool:
        if copied is None:
            self.failed = True
            return False
        self.stats.job_copied_bytes += copied
        return True

    def _worker_stop(self):
        self._stops[self._active].succeed()
        self._active += 1
