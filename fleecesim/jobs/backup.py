"""The backup job: ``max-workers`` coroutines copying chunks in policy order."""
from __future__ import annotations


class BackupJob:
    """Copies every set bit of a BlockCopy's bitmap, in the order a copy-ordering
    policy gives, with ``workers`` concurrent tasks of up to one chunk each and
    an optional ``speed`` limit (bytes/s) that, as in QEMU, throttles only this
    background copying, never CBW."""

    def __init__(self, env, copier, policy, workers: int, stats, speed: float = 0.0,
                 name: str = "backup"):
        self.env = env
        self.copier = copier
        self.policy = policy
        self.workers = workers
        self.stats = stats
        self.speed = speed
        self.name = name
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
            run = self.policy.next_run(copier, copier.chunk)
            if run is None:
                return
            c0, c1 = run
            tasks = copier.claim(c0, c1)
            for i, (a, b, zero, ev) in enumerate(tasks):
                if self.speed and not zero:
                    nbytes = (b - a) * copier.cs
                    start = max(env.now, self._next_slot)
                    self._next_slot = start + nbytes / self.speed
                    if start > env.now:
                        yield env.timeout(start - env.now)
                ok = yield from copier.run_task(a, b, zero, ev)
                if not ok:
                    self.failed = True
                    copier.abandon(tasks[i + 1:])
                    return
                self.stats.job_copied_bytes += min(b * copier.cs, copier.disk_size) - a * copier.cs
