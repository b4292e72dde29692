"""The backup job: ``max-workers`` coroutines copying chunks in policy order."""
from __future__ import annotations

from ..error_policy import IGNORE, REPORT, STOP, action, errname, node_errno
from ..nodes.base import at

_PENDING = object()  # _work: the tasks it started have not ended yet


def job_errors(backup) -> dict:
    """BackupJob's error-policy arguments from a config's ``backup`` section."""
    return {"on_source_error": backup.on_source_error,
            "on_target_error": backup.on_target_error,
            "resume_after": backup.resume_after}


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
    state of its own (to the fleecing image) and charges nothing here.

    A failed copy ends this round of copying (QEMU's block-copy call: no new
    task starts once one failed, block/block-copy.c block_copy_dirty_clusters;
    the failed clusters' bits are set back); then the error policy of the
    failed side (``on_source_error`` for a failed read, ``on_target_error``
    for a failed write; fleecesim/error_policy.py) decides, as block/backup.c
    backup_loop does: ``report`` ends the job with the error; ``stop``
    pauses it until ``resume_after`` seconds later (management's
    block-job-resume; None: never, the job stays paused and ``halted``
    fires); ``ignore`` starts the next round at once. Either way the next
    round copies what is left, the failed chunks included."""

    def __init__(self, env, copier, policy, workers: int, stats, speed: float = 0.0,
                 name: str = "backup", after_copy=None, on_source_error: str = "report",
                 on_target_error: str = "report", resume_after: float | None = None):
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
        self.on_source_error = on_source_error
        self.on_target_error = on_target_error
        self.resume_after = resume_after
        self.halted = env.event()  # paused for good (stop, never resumed)
        self.paused_since = None   # the job is paused (a stop) since then
        self.error_policy = None   # (key, policy, errno) of the last error
        self._retries = 0          # ignore: failed rounds in a row
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
            self.copier.first_error = None
            t_round = env.now
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
            if self.failed:
                act = self._error_action()
                if act == REPORT:
                    break
                self.failed = False
                if act == STOP:
                    resumed = yield from self._pause()
                    if not resumed:
                        return  # paused for good: the job never ends
                elif env.now == t_round:
                    # ignore: QEMU retries at once, again and again while the
                    # cause lasts. A round that took no simulated time would
                    # fail again until something happens: the retry waits for
                    # the next scheduled event (nothing changes before it).
                    yield env.timeout(env.peek() - env.now)
            elif self.copier.remaining == 0:
                break
            elif self._retries:
                self._recovered(t_round)
            self.policy.rewind()  # a copy failed and set bits back behind us
        if self._retries and not self.failed:
            self._recovered(t_round)
        self.t_end = env.now
        self.done.succeed(not self.failed)

    # --- the error policy (block/backup.c: backup_loop; blockjob.c:
    # block_job_error_action) ---
    def _error_action(self) -> str:
        """A round failed: BLOCK_JOB_ERROR, and what the failed side's policy does."""
        env, stats, copier = self.env, self.stats, self.copier
        first = copier.first_error
        is_read = first is not None and first.read_failed
        err = node_errno(copier.source if is_read else copier.target)
        key = "on-source-error" if is_read else "on-target-error"
        pol = self.on_source_error if is_read else self.on_target_error
        act = action(pol, err)
        stats.job_errors += 1
        self.error_policy = (key, pol, err)  # the last error's (faults.job_failed_event)
        if is_read and stats.snapshot_broken and (
                act == IGNORE or (act == STOP and self.resume_after is not None)):
            # copy-before-write's snapshot_error is never cleared: every read
            # of the snapshot fails from now on, so QEMU's job would retry (or
            # pause and be resumed) until cancelled. The run ends it here. (A
            # stop never resumed is a plain pause: the job stays paused.)
            stats.events.append((env.now, f"BLOCK_JOB_ERROR (read, {errname(err)}, action "
                                          f"{act}): the snapshot is broken for good; every "
                                          f"retry fails: the job ends here (QEMU's would "
                                          f"retry until cancelled)"))
            return REPORT
        if act == IGNORE:
            self._retries += 1
            if self._retries > 1:
                return act  # one entry per run of retries (QEMU: one event each)
            what = "the job retries at once (a new block-copy call)"
        elif act == STOP:
            what = "the job pauses until block-job-resume"
        else:
            what = "the job ends with the error"
        stats.events.append((env.now, f"BLOCK_JOB_ERROR ({'read' if is_read else 'write'}, "
                                      f"{errname(err)}): {key}={pol} -> {act}: {what}"))
        return act

    def _recovered(self, t_round: float) -> None:
        """The round begun at ``t_round`` did not fail: the retries are over."""
        self.stats.events.append((t_round, f"backup job copying again: {self._retries} failed "
                                           f"rounds retried at once (on-*-error=ignore)"))
        self._retries = 0

    def _pause(self):
        """A stop: paused until block-job-resume ``resume_after`` later.
        Returns True once resumed; False (at once) if it never is."""
        env, stats = self.env, self.stats
        stats.job_stops += 1
        self.paused_since = t = env.now
        if self.resume_after is None:
            stats.events.append((t, "backup job paused; resume-after=never: it stays paused"))
            self.halted.succeed()
            return False
        yield env.timeout(self.resume_after)
        stats.job_paused_s += env.now - t
        self.paused_since = None
        stats.events.append((env.now, f"block-job-resume after {self.resume_after:g}s: "
                                      f"the job copies what is left, the failed chunks "
                                      f"included"))
        return True

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

    # --- the analytic worker: _worker's loop, resumed by device-completion callbacks
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
