"""Faults (issue 13 item 3): what goes wrong during a backup, and which of
QEMU's policies decides what it costs.

Config: the top-level ``faults:`` section (config.py, ``FaultsSpec``). Times
(``at``) count from the backup's start (t0 = the end of ``run.warmup``).

* **Target outage, requests wait** (``kind: outage, requests: wait``): the
  backup target's device stops for ``duration`` seconds. This is QEMU's NBD
  client with a ``reconnect-delay`` longer than the outage (qapi/block-core.json,
  BlockdevOptionsNbd: "During the first @reconnect-delay seconds, all requests
  are paused and will be rerun on a successful reconnect"). Modelled as the
  device's clock standing still: work in progress at the start resumes at the
  end, new requests queue. Nothing fails; whoever waits on the target waits
  (the job; under ``backup``/``legacy-backup`` also every guest write whose
  copy-before-write goes to the target — those filters have no cbw-timeout).
* **Target outage, requests fail** (``requests: fail``): ``reconnect-delay``
  shorter than the outage (its default is 0): "any delayed requests and all
  future requests before a successful reconnect will immediately fail".
  Requests in flight at the start fail then; requests issued during the
  outage fail at once (EIO).
* **Connection reset** (``kind: reset``): the requests in flight at that
  instant fail (EIO); the client reconnects at once.
* **Slow target** (``kind: slow, factor: f``): for ``duration`` seconds the
  device's clock runs ``f`` times slower (latency and bandwidth alike).

  A failed target write fails the copy. Its consequence is QEMU's: a *job*
  copy fails the backup job — blockdev-backup's ``on-target-error`` defaults to
  ``report`` (blockdev.c: do_backup_common) and block/backup.c:
  backup_error_action -> blockjob.c: block_job_error_action turns ``report``
  into BLOCK_ERROR_ACTION_REPORT, so the job completes with the error
  (``backup_outcome: failed``). A *copy-before-write* to the target (the
  ``backup``/``legacy-backup`` schemes) fails the guest write: blockdev-backup's
  filter has on-cbw-error's default ``break-guest-write``
  (block/copy-before-write.c: cbw_open; cbw_do_copy_before_write returns the
  error to cbw_co_pwritev).
* **Fleecing device full** (``fleecing-device.free``): the device holding the
  fleecing image has that many bytes free; a CBW write beyond it gets ENOSPC.
  block/copy-before-write.c: cbw_do_copy_before_write then applies
  ``on-cbw-error``: ``break-guest-write`` fails the guest write,
  ``break-snapshot`` sets snapshot_error (every later snapshot read fails:
  the backup fails, the guest goes on). ``cbw-timeout`` bounds how long a CBW
  may take (block_copy(..., s->cbw_timeout_ns, ...): on timeout the copy goes
  on in the background and the CBW counts as failed).
* **Thin-provisioned fleecing volume** (``fleecing-device.thin``): the image
  sits on a thin volume (oVirt: a qcow2 scratch disk on a block-storage LV)
  that has ``allocated`` bytes and grows by ``extent`` bytes; each extension
  takes a time drawn uniformly from ``extend-time`` (seeded stream
  ``faults.thin``; oVirt measured 2.2-6.2 s, mean 3.7 s). One extension runs
  at a time and it starts when a write needs room beyond the allocation.
  ``beyond: wait`` (default): that write waits for the extension — the
  management layer's pause-and-extend, as oVirt does for a VM paused on
  ENOSPC; ``beyond: fail``: it gets ENOSPC now (QEMU itself never waits for
  space) and on-cbw-error decides, while the extension goes on.

Every fault and every policy it fired is an entry in ``Stats.events``
(summary["events"]); counts: ``target_errors``, ``thin_extensions``,
``thin_waits``, ``cbw_errors``, ``guest_errors``, ``writes_failed``.
"""
from __future__ import annotations

from bisect import bisect_right

from .rng import stream

# Schemes whose target node writes devices[backup.target.device] itself. The
# pull schemes' client writes its own storage over its own link
# (schemes/fleecing_pull.py: client_devices), so a target fault there would
# do nothing.
TARGET_FAULT_SCHEMES = ("legacy-backup", "backup", "fleecing-push", "fleecing-push-2018",
                        "overlay-cor", "overlay-commit")
# Schemes with the fleecing image and copy-before-write's on-cbw-error /
# cbw-timeout (the option table, schemes/__init__.py: CBW_OPTIONS).
FLEECING_FAULT_SCHEMES = ("fleecing-push", "fleecing-pull")


class FaultyDevice:
    """A device whose clock stops (outage, requests wait) or slows down
    (slow) in given windows of real time, and whose requests fail in others.

    The wrapped device is analytic (``submit(now, ...) -> end``), so the
    wrapper maps real time T to the device's own time tau, piecewise
    linearly (rate 0 in an outage, 1/f when slow, 1 otherwise), submits at
    tau(now) and maps the completion back. Submissions stay in time order.
    After each ``submit``, ``failed`` says whether that request failed (EIO);
    its returned time is then when it failed."""

    faulty = True

    def __init__(self, device, clock_windows=(), fail_windows=(), stats=None, env=None):
        self.__dict__["device"] = device
        self.failed = False
        self.fail_windows = sorted(fail_windows)  # (start, end); end == start: a reset
        self.stats = stats
        self.errors = 0
        self._logged = set()
        Ts, taus, rates = [0.0], [0.0], [1.0]
        for s, e, rate in sorted(clock_windows):
            tau_s = taus[-1] + (s - Ts[-1]) * rates[-1]
            Ts += [s, e]
            taus += [tau_s, tau_s + (e - s) * rate]
            rates += [rate, 1.0]
        self._Ts, self._taus, self._rates = Ts, taus, rates
        self._plain = len(Ts) == 1

    # ---------------------------------------------------------------- clock
    def tau(self, T: float) -> float:
        i = bisect_right(self._Ts, T) - 1
        return self._taus[i] + (T - self._Ts[i]) * self._rates[i]

    def real(self, tau: float) -> float:
        # the last breakpoint at or before tau never starts a stopped segment
        # (its end has the same tau), so its rate is > 0
        i = bisect_right(self._taus, tau) - 1
        return self._Ts[i] + (tau - self._taus[i]) / self._rates[i]

    # ---------------------------------------------------------------- device
    def submit(self, now: float, offset: int, length: int, write: bool = False) -> float:
        self.failed = False
        for s, e in self.fail_windows:
            if s <= now < e:  # down: fails at once
                return self._fail(now, s, e)
        if self._plain:
            end = self.device.submit(now, offset, length, write)
        else:
            end = self.real(self.device.submit(self.tau(now), offset, length, write))
        for s, e in self.fail_windows:
            if now < s < end:  # in flight when the connection went: fails then
                return self._fail(s, s, e)
        return end

    def _fail(self, at: float, s: float, e: float) -> float:
        self.failed = True
        self.errors += 1
        if self.stats is not None:
            self.stats.target_errors += 1
            if (s, e) not in self._logged:  # the first failure of each window
                self._logged.add((s, e))
                self.stats.events.append(
                    (at, f"target request failed (EIO: NBD connection lost"
                         f"{', reconnect-delay shorter than the outage' if e > s else ''})"))
        return at

    def __getattr__(self, name):
        return getattr(self.__dict__["device"], name)

    def __setattr__(self, name, value):
        # devices/host.py: with_host sets copy_s_per_byte on a remote device
        if name == "copy_s_per_byte":
            setattr(self.device, name, value)
        else:
            self.__dict__[name] = value

    def describe(self) -> str:
        return self.device.describe() + " (with faults)"


class ThinVolume:
    """A thin volume under the fleecing image: ``allocated`` bytes now, grown
    ``extent`` bytes at a time, each extension taking ``draw()`` seconds;
    one extension at a time."""

    def __init__(self, env, extent: int, allocated: int, draw, stats, *, wait: bool = True,
                 limit: int | None = None):
        self.env = env
        self.extent = extent
        self.allocated = allocated
        self.draw = draw
        self.stats = stats
        self.wait = wait
        self.limit = limit  # the device's free space: no extension beyond it
        self.want = 0
        self.extending = False
        self.refused = False  # beyond: fail -- the first refusal is in the event log
        self.closed = False
        self._done = env.event()

    def room_for(self, used: int) -> bool:
        """Can ``used`` bytes be written now? If not, an extension starts (if
        none is running and the device has room for one)."""
        if used <= self.allocated or self.closed:
            return True
        self.want = max(self.want, used)
        if not self.extending:
            self.extending = True
            self.env.process(self._extend())
        return False

    def grow_to(self, used: int):
        """Wait until ``used`` bytes fit the allocation (``beyond: wait``)."""
        first = True
        while not self.room_for(used):
            if first:
                self.stats.thin_waits += 1
                first = False
            yield self._done

    def release(self) -> None:
        """The fleecing image is deleted: nobody waits for room any more."""
        self.closed = True
        ev, self._done = self._done, self.env.event()
        ev.succeed()

    def _extend(self):
        env = self.env
        while self.want > self.allocated and not self.closed:
            if self.limit is not None and self.allocated >= self.limit:
                break  # the device itself is full: writes get ENOSPC (FleecingCache)
            dt = self.draw()
            self.stats.events.append(
                (env.now, f"thin fleecing volume full at {self.allocated / 2**20:.0f}MiB: "
                          f"extension requested"))
            yield env.timeout(dt)
            if self.closed:
                break
            self.allocated += self.extent
            self.stats.thin_extensions += 1
            self.stats.events.append(
                (env.now, f"thin fleecing volume extended to {self.allocated / 2**20:.0f}MiB "
                          f"(took {dt:.3g}s)"))
            ev, self._done = self._done, env.event()
            ev.succeed()
        self.extending = False


def wrap_target(cfg, devices: dict, stats, t0: float) -> None:
    """Put ``faults.target`` on the backup target device (before the host
    cost wraps it: the host's CPU queue stays in real time)."""
    f = cfg.faults
    if not f.target:
        return
    clock, fail = [], []
    for w in f.target:
        s, e = t0 + w.at, t0 + w.at + w.duration
        if w.kind == "outage" and w.requests == "wait":
            clock.append((s, e, 0.0))
        elif w.kind == "slow":
            clock.append((s, e, 1.0 / w.factor))
        else:  # outage with requests: fail, or reset (duration 0)
            fail.append((s, e))
    name = cfg.backup.target.device
    devices[name] = FaultyDevice(devices[name], clock, fail, stats)


def log_windows(env, cfg, stats, t0: float) -> None:
    """Event-log entries at the start and end of each target fault window."""
    for w in cfg.faults.target:
        s = t0 + w.at
        if w.kind == "reset":
            _at(env, s, stats, "target NBD connection reset: requests in flight fail (EIO)")
        elif w.kind == "slow":
            _at(env, s, stats, f"target slow: {w.factor:g}x for {w.duration:g}s")
            _at(env, s + w.duration, stats, "target back to normal speed")
        else:
            how = ("requests paused (NBD reconnect-delay >= outage)" if w.requests == "wait"
                   else "requests fail (NBD reconnect-delay < outage)")
            _at(env, s, stats, f"target down for {w.duration:g}s: {how}")
            _at(env, s + w.duration, stats, "target reachable again")


def _at(env, t, stats, what):
    # logged now, so at equal times a window's start precedes what it caused
    # (run.py sorts the log by time, stably, and drops entries after the run)
    stats.events.append((t, what))


def attach_fleecing(cfg, graph, env, stats) -> None:
    """Put ``faults.fleecing-device`` on the fleecing image's disk tier."""
    fd = cfg.faults.fleecing_device
    if (fd.free is None and fd.thin is None) or graph.cache is None:
        return
    tier = next(t for t in graph.cache.tiers if t.kind != "ram")
    if fd.free is not None and fd.free < tier.capacity:
        tier.capacity = fd.free
        tier.enospc = True  # a full tier is the device's ENOSPC, not the image's size
    if fd.thin is not None:
        th = fd.thin
        lo, hi = th.extend_time
        rng = stream(cfg.run.seed, "faults.thin")
        draw = (lambda: lo) if lo == hi else (lambda: float(rng.uniform(lo, hi)))
        tier.thin = ThinVolume(env, th.extent, th.allocated if th.allocated is not None
                               else th.extent, draw, stats, wait=th.beyond == "wait",
                               limit=tier.capacity)


def job_failed_event(stats, graph, now: float) -> None:
    """The job ended with an error: say which policy made it fail."""
    if stats.snapshot_broken:
        return
    key, pol, err = getattr(graph.job, "error_policy", None) or ("on-target-error", "report", 0)
    why = " (the default)" if pol == "report" else " (stops on ENOSPC only)" \
        if pol == "enospc" else ""
    stats.events.append((now, f"backup job failed: {key}={pol}{why} completes the job with "
                              f"the error; no backup"))


def summary(stats, guest, recorded: int) -> dict:
    return {"target_errors": stats.target_errors,
            "cache_full_errors": stats.cache_full_errors,
            "cbw_timeouts": stats.cbw_timeouts,
            "thin_extensions": stats.thin_extensions,
            "thin_waits": stats.thin_waits,
            # issued but not answered when the run stopped (still waiting: an
            # outage or an extension that had not ended); never silently dropped
            "guest_requests_unfinished": int(guest.issued - recorded)}
