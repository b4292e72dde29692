"""The backup job: ``max-workers`` coroutines copying chunks in policy order."""
from __future__ import annotations


class BackupJob:
    """Copies every set bit of a BlockCopy's bitmap, in the order a copy-ordering
    policy gives, with ``workers`` concurrent tasks of up to one chunk each and
    an optional ``speed`` limit (bytes/s) that, as in QEMU, throttles only this
    background copying, never CBW."""

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
        self.failed = False
        self.t_start = None
        self.t_end = None
        self._next_slot = 0.0

    def start(self):
        self.t_start = self.env.now
        self._next_slot = self.env.now
        self.env.process(self._run())

    def _run(self):
        env = self.env
        while True:
            procs = [env.process(self._worker()) for _ in range(self.workers)]
            yield env.all_of(procs)
            yield from self.copier.wait_idle()
            if self.failed or self.copier.remaining == 0:
                break
            self.policy.rewind()  # a copy failed and set bits back behind us
        self.t_end = env.now
        self.done.succeed(not self.failed)

    def _worker(self):
        env = self.env
        copier = self.copier
        while not self.failed:
            if self.speed and self._next_slot > env.now:
                # As QEMU's block_copy_dirty_clusters: a rate-limited job sleeps
                # *before* claiming, so clusters it has not started stay unclaimed
                # and a guest write to them copies them itself (CBW is not limited).
                yield env.timeout(self._next_slot - env.now)
                continue
            run = self.policy.next_run(copier, copier.chunk)
            if run is None:
                return
            c0, c1 = run
            tasks = copier.claim(c0, c1)
            if self.speed:  # QEMU charges every task's bytes, write-zeroes included
                nbytes = sum((b - a) * copier.cs for a, b, _z, _e in tasks)
                self._next_slot = max(env.now, self._next_slot) + nbytes / self.speed
            copied = yield from copier.run_tasks(tasks, self.after_copy)
            if copied is None:
                self.failed = True
                return
            self.stats.job_copied_bytes += copied
