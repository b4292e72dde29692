"""A live commit job: copies an overlay's dirty clusters down into its backing.

Mirror-style (QEMU's commit of an active layer uses the mirror job): a bitmap
of dirty clusters, ``workers`` tasks of up to one chunk each through a
BlockCopy, and clusters written again while the commit runs are marked dirty
and copied again. It runs "on the side" while something still writes the
overlay (``source_done`` not yet fired): idle workers sleep until new clusters
become dirty. It ends when that writer is done and nothing is dirty or in
flight.
"""
from __future__ import annotations


class CommitJob:
    def __init__(self, env, copier, policy, workers: int, stats, source_done=None,
                 name: str = "commit", drain=None, on_complete=None):
        self.env = env
        self.copier = copier      # BlockCopy(overlay -> backing); its ``needed`` is the dirty map
        self.policy = policy
        self.workers = workers
        self.stats = stats
        self.name = name
        self.source_done = source_done  # event: the writer of the overlay is done (None: already)
        self.done = env.event()
        self.failed = False
        self.t_start = None
        self.t_end = None
        self._wake = env.event()
        self.copied_bytes = 0
        # Completing an active commit (block/mirror.c: mirror_run) drains the
        # source first (bdrv_drained_begin: no guest request in flight), then
        # checks that nothing is dirty, and changes the graph before anything
        # else runs. ``drain``: a generator fn that waits until the overlay's
        # writer has no request in flight; ``on_complete(ok)``: that graph
        # change, called in the same instant the commit decides it is done.
        self.drain = drain
        self.on_complete = on_complete

    def mark_dirty(self, c0: int, c1: int) -> None:
        """The overlay got a write on [c0, c1): copy it (again)."""
        nd = self.copier.needed[c0:c1]
        new = int((~nd).sum())
        if new:
            self.copier.needed[c0:c1] = True
            self.copier.remaining += new
            self._kick()

    def _kick(self) -> None:
        if not self._wake.triggered:
            self._wake.succeed()

    def _sleep(self):
        if self._wake.triggered:
            self._wake = self.env.event()
        return self._wake

    def start(self):
        self.t_start = self.env.now
        if self.source_done is not None:
            self.source_done.callbacks.append(lambda _ev: self._kick())
        self.env.process(self._run())

    def _writer_done(self) -> bool:
        return self.source_done is None or self.source_done.triggered

    def _run(self):
        env = self.env
        copier = self.copier
        while True:
            yield env.all_of([env.process(self._worker()) for _ in range(self.workers)])
            if self.failed:
                break
            yield from copier.wait_idle()
            if copier.remaining == 0 and self._writer_done():
                if self.drain is not None:
                    yield from self.drain()
                    if copier.remaining or copier.inflight:
                        continue  # what was in flight dirtied clusters: copy them
                break
        self.t_end = env.now
        if self.on_complete is not None:
            self.on_complete(not self.failed)
        self.done.succeed(not self.failed)

    def _worker(self):
        copier = self.copier
        while not self.failed:
            run = self.policy.next_run(copier, copier.chunk)
            if run is None:
                if copier.remaining:
                    self.policy.rewind()  # dirtied behind the cursor
                    continue
                if self._writer_done():
                    return
                yield self._sleep()
                continue
            waits = copier.waits_in(*run)
            if waits:
                # a copy of these clusters is still in flight (they were
                # dirtied again meanwhile): a second copy must not overtake it
                # (block/mirror.c: mirror_iteration -> mirror_wait_on_conflicts)
                yield self.env.all_of(waits)
                continue
            copied = yield from copier.run_tasks(copier.claim(*run))
            if copied is None:
                self.failed = True
                return
            self.copied_bytes += copied
