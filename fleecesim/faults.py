"""Faults: what goes wrong during a backup, and which of
QEMU's policies decides what it costs.

Config: the top-level ``faults:`` section (config.py, ``FaultsSpec``). Times
(``at``) count from the backup's start (t0 = the end of ``run.warmup``).

* **Target outage** (``kind: outage``): the NBD server is unreachable for
  ``duration`` seconds (killed and restarted: its connections reset; with
  ``silent: true`` / ``detect``: no RST reaches the client, a partition or a
  lost host). What the backup feels is the NBD client's, set on the remote
  target device: ``reconnect-delay`` (qapi/block-core.json,
  BlockdevOptionsNbd: "During the first @reconnect-delay seconds, all
  requests are paused and will be rerun on a successful reconnect. After that
  time, any delayed requests and all future requests before a successful
  reconnect will immediately fail"; default 0) and, for an outage at 0 (the
  server down as the target is opened), ``open-timeout``. The client's
  connect thread retries 1, 2, 4, 8, 16, 16 ... s apart, so it reconnects at
  its first attempt after the server is back, not at the outage's end, and
  requests fail when the delay runs out even if the server is back by then.
  The state machine: FaultyDevice. While requests wait, the device's clock
  stands still (work in progress resumes, new requests queue); whoever waits
  on the target waits (the job; under ``backup``/``legacy-backup`` also every
  guest write whose copy-before-write goes to the target — those filters have
  no cbw-timeout).
* **Connection reset** (``kind: reset``): the connection drops, the server
  stays up: with reconnect-delay > 0 the client reconnects at once (one
  handshake) and reruns the requests; with 0 they fail (EIO).
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


# --- the NBD client's connection (block/nbd.c, nbd/client-connection.c) ---
# nbd/client-connection.c: connect_thread_func: the first attempt at once;
# after a failed one, sleep(timeout) with timeout = 1 s, doubled after each
# failure up to max_timeout = 16 s: attempts at +0, 1, 3, 7, 15, 31, 47, ... s.
BACKOFF_FIRST = 1.0
BACKOFF_MAX = 16.0
# Round trips from connect() to a connection requests can use: the TCP
# handshake, the server's greeting (nbd/server.c sends it on accept), and the
# three options QEMU 7.2's nbd/client.c sends one after the other
# (nbd_start_negotiate: NBD_OPT_STRUCTURED_REPLY; nbd_receive_negotiate:
# nbd_negotiate_simple_meta_context's NBD_OPT_SET_META_CONTEXT, then
# NBD_OPT_GO; 8.2+ asks NBD_OPT_EXTENDED_HEADERS first, one more round trip
# where the server declines it).
CONNECT_RTTS = 5
# Linux TCP (include/net/tcp.h): TCP_RTO_MIN 200 ms, TCP_RTO_MAX 120 s,
# TCP_TIMEOUT_INIT 1 s (a SYN's first timeout); Documentation/networking/
# ip-sysctl.rst: tcp_retries2 = 15 ("a hypothetical timeout of 924.6
# seconds"), tcp_syn_retries = 6 ("the final timeout for an active TCP
# connection attempt will happen after 127seconds").
TCP_RTO_MIN = 0.2
TCP_RTO_MAX = 120.0
TCP_TIMEOUT_INIT = 1.0
TCP_RETRIES2 = 15
TCP_SYN_RETRIES = 6


def tcp_retransmits(retries: int = TCP_RETRIES2) -> list[float]:
    """Seconds after an unanswered segment was sent at which TCP sends it
    again; the last entry is when it gives up the connection instead.
    net/ipv4/tcp_timer.c: tcp_retransmit_timer doubles the RTO (from about
    TCP_RTO_MIN on a LAN) up to TCP_RTO_MAX; retransmits_timed_out ends the
    connection once tcp_model_timeout(retries) has passed: 924.6 s for 15."""
    t, rto, out = 0.0, TCP_RTO_MIN, []
    for _ in range(retries + 1):
        t += rto
        out.append(t)
        rto = min(2 * rto, TCP_RTO_MAX)
    return out


TCP_GIVE_UP = tcp_retransmits()[-1]  # 924.6 s
# a SYN's sends: at 0, then after 1, 2, 4, ... s (TCP_TIMEOUT_INIT doubled);
# connect() fails at the last timeout, 127 s
SYN_SENDS = [TCP_TIMEOUT_INIT * (2 ** k - 1) for k in range(TCP_SYN_RETRIES + 1)]
SYN_GIVE_UP = TCP_TIMEOUT_INIT * (2 ** (TCP_SYN_RETRIES + 1) - 1)


class Outage:
    """The NBD server unreachable from ``start`` to ``end`` (``end == start``: a
    connection reset with the server up). ``silent``: no RST or FIN reaches the
    client (the network or the server's host is gone), so the loss shows only
    when TCP gives up, ``detect`` seconds after the first unanswered request
    (default: tcp_retries2's 924.6 s). ``opening``: the server is down when the
    target is opened (blockdev-add, block/nbd.c: nbd_open), where
    ``open-timeout`` decides instead of ``reconnect-delay``."""

    def __init__(self, start: float, end: float, *, silent: bool = False,
                 detect: float | None = None, opening: bool = False):
        self.start, self.end = start, end
        self.silent = silent or detect is not None
        self.detect = detect if detect is not None else (TCP_GIVE_UP if self.silent else 0.0)
        self.opening = opening
        # what the loss does once resolved: requests issued in [start, fail_at)
        # (or in flight at start) fail at fail_at; those issued in
        # [fail_at, fail_until) fail at once; fail_until: reconnected (None:
        # not known yet, the connect thread has not started)
        self.fail_at = self.fail_until = None
        self.detector = False  # reconnect-delay 0, idle link: the request that found the loss
        self.logged = False


class FaultyDevice:
    """A device behind an NBD connection that can be lost (``outages``:
    QEMU's reconnect model below) and whose clock slows down in given windows
    (``clock_windows``: ``(start, end, rate)``).

    The wrapped device is analytic (``submit(now, ...) -> end``), so the
    wrapper maps real time T to the device's own time tau, piecewise linearly
    (rate 0 while requests wait for a reconnect, 1/f when slow, 1 otherwise),
    submits at tau(now) and maps the completion back. Submissions come in time
    order, which lets each loss be resolved when the first request it concerns
    arrives. After each ``submit``, ``failed`` says whether that request
    failed (EIO); its returned time is then when it failed.

    A loss, as QEMU's NBD client lives it (block/nbd.c):

    * Detection: a request in flight at the loss sees it then (the socket's
      EOF/RST; ``silent``: when TCP gives up, ``detect`` later); on an idle
      connection, the next request finds it (its send or reply fails).
      nbd_channel_error_locked then sets NBD_CLIENT_CONNECTING_WAIT if
      ``reconnect-delay`` > 0, else NBD_CLIENT_CONNECTING_NOWAIT.
    * A silent loss shorter than TCP's patience is no loss: the connection
      survives and the link resumes at TCP's next retransmission after the
      network is back (tcp_retransmits).
    * WAIT: the failed requests are rerun (nbd_co_request loops while
      nbd_client_will_reconnect); the first does nbd_reconnect_attempt, which
      arms reconnect_delay_timer (detection + reconnect-delay) and waits
      (blocking nbd_co_establish_connection) for the connect thread, whose
      attempts come at the backoff above. Success within the delay: every
      waiting request goes on (the device's clock stood still from the loss
      to the reconnect: work in flight resumes, the rest queued). Otherwise
      reconnect_delay_timer_cb sets NOWAIT and cancels the wait: every waiting
      request fails (EIO) then, even if the server is back meanwhile.
    * NOWAIT: a request's nbd_reconnect_attempt does not block: it fails at
      once while the connect thread is still trying (it is started by the
      first such request), and reconnects when the thread has succeeded.
      With reconnect-delay 0 the requests waiting at detection fail then.
    * A connect attempt: refused at once (one RTT) by a host whose server is
      down; on a silent outage it is a SYN sent at 0, 1, 3, ... 63 s that
      gets through once the network is back, or fails after 127 s; success
      costs CONNECT_RTTS round trips.
    * Opening (``opening``): nbd_open makes one attempt if open-timeout is 0,
      else retries with the same backoff until open_timer_cb (open-timeout)
      cancels; if the open fails, every request fails (no target node).

    Requests in flight at the loss are rerun whole by QEMU; here the clock
    stop keeps their progress (at most one TCP window's transfer time)."""

    faulty = True

    def __init__(self, device, clock_windows=(), outages=(), stats=None, env=None, *,
                 reconnect_delay: float = 0.0, open_timeout: float = 0.0, rtt: float = 0.0):
        self.__dict__["device"] = device
        self.failed = False
        self.stats = stats
        self.errors = 0
        self.reconnect_delay = reconnect_delay
        self.open_timeout = open_timeout
        self.rtt = rtt
        self.outages = sorted(outages, key=lambda o: o.start)
        self._pending = list(self.outages)  # not resolved yet, in time order
        self._losses = []                   # resolved losses that fail requests
        self._busy_until = float("-inf")    # the last end (real time) handed out
        self._recovered = float("-inf")     # when the last loss was reconnected
        self._slow = sorted(clock_windows)
        self._stops = []
        self._build_clock()

    # ---------------------------------------------------------------- clock
    def _build_clock(self) -> None:
        Ts, taus, rates = [0.0], [0.0], [1.0]
        last = float("-inf")
        for s, e, rate in sorted(self._stops + self._slow):
            s = max(s, last)  # a stop that outlasts its outage cuts into what follows
            if e <= s:
                continue
            tau_s = taus[-1] + (s - Ts[-1]) * rates[-1]
            Ts += [s, e]
            taus += [tau_s, tau_s + (e - s) * rate]
            rates += [rate, 1.0]
            last = e
        self._Ts, self._taus, self._rates = Ts, taus, rates
        self._plain = len(Ts) == 1

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
        while self._pending and self._pending[0].start <= now:
            o = self._pending.pop(0)
            # in flight at the loss: it sees it then; else this request finds it
            if self._busy_until > o.start:
                self._resolve(o, o.start)
            else:
                self._resolve(o, now, found=True)
        for o in self._losses:
            if o.start <= now and (o.fail_until is None or now < o.fail_until):
                if now < o.fail_at or o.detector:  # waiting, or the one that found it
                    o.detector = False
                    return self._fail(o.fail_at, o)
                if o.fail_until is None:
                    # NOWAIT, no connect thread yet: this request's non-blocking
                    # nbd_co_establish_connection starts it and fails at once
                    self._reconnected(o, self._connect(now))
                return self._fail(now, o)
        if self._plain:
            end = tau_end = self.device.submit(now, offset, length, write)
        else:
            tau_end = self.device.submit(self.tau(now), offset, length, write)
            end = self.real(tau_end)
        while self._pending and self._pending[0].start < end:
            o = self._pending.pop(0)
            self._resolve(o, o.start)  # this request is in flight at the loss
            # a clock stop from the loss on leaves tau(now) as it was
            end = tau_end if self._plain else self.real(tau_end)
        for o in self._losses:
            if now < o.start < end:  # in flight at the loss
                return self._fail(o.fail_at, o)
        self._busy_until = max(self._busy_until, end)
        return end

    # ---------------------------------------------------------------- losses
    def _up(self, t: float) -> bool:
        return not any(o.start <= t < o.end for o in self.outages)

    def _silent_at(self, t: float) -> bool:
        return any(o.start <= t < o.end and o.silent for o in self.outages)

    def _connect(self, t: float, retry: bool = True) -> float:
        """When the connect thread started at ``t`` has a connection
        (nbd/client-connection.c: connect_thread_func); inf if it gives up."""
        sleep = BACKOFF_FIRST
        while True:
            if self._up(t):
                return t + CONNECT_RTTS * self.rtt
            if self._silent_at(t):  # no answer to the SYN: its retransmissions
                for k in SYN_SENDS[1:]:
                    if self._up(t + k):
                        return t + k + CONNECT_RTTS * self.rtt
                t += SYN_GIVE_UP
            else:  # refused: RST in one round trip
                t += self.rtt
            if not retry:
                return float("inf")
            t += sleep
            sleep = min(2 * sleep, BACKOFF_MAX)

    def _resolve(self, o: Outage, anchor: float, found: bool = False) -> None:
        """What loss ``o`` does; ``anchor``: when its first unanswered request
        was sent (the loss itself if one was in flight then; ``found``: the
        link was idle and the request at ``anchor`` is the first to try it)."""
        if o.start < self._recovered or any(x.fail_until is None for x in self._losses):
            return  # the link was not back from the previous loss: nothing more to lose
        ev = self.stats.events if self.stats is not None else []
        if o.opening:
            if self.open_timeout > 0:
                at = self._connect(o.start)
                if at <= o.start + self.open_timeout:
                    ev.append((at, f"target NBD server reachable: opened after "
                                   f"{at - o.start:.3g}s (open-timeout {self.open_timeout:g}s)"))
                    return self._stop(o, at)
                o.fail_at = o.start + self.open_timeout
            else:
                o.fail_at = o.start  # nbd_open: one attempt, refused
            o.fail_until = float("inf")
            ev.append((o.fail_at, f"target NBD open failed: server unreachable "
                                  f"(open-timeout {self.open_timeout:g}s): no target"))
            self._losses.append(o)
            return
        if o.silent:
            if anchor >= o.end:
                return  # nothing was sent while the link was down: nothing lost
            give_up = anchor + o.detect
            back = next((anchor + t for t in tcp_retransmits()[:-1]
                         if o.end <= anchor + t < give_up), None)
            if back is not None:
                ev.append((back, f"target link back: TCP retransmission "
                                 f"{back - anchor:.3g}s after the first unanswered request "
                                 f"got through; the NBD connection survived"))
                return self._stop(o, back)
            detected = give_up
            how = f"TCP gave up {o.detect:g}s after the first unanswered request"
        else:
            detected = anchor
            how = "EOF/RST, found by the next request" if found else "EOF/RST"
        if self.reconnect_delay > 0:  # NBD_CLIENT_CONNECTING_WAIT
            at = self._connect(detected)
            if at <= detected + self.reconnect_delay:
                ev.append((detected, f"target NBD connection lost ({how}): requests wait "
                                     f"(reconnect-delay {self.reconnect_delay:g}s)"))
                ev.append((at, f"target NBD client reconnected {at - detected:.3g}s after "
                               f"the loss was detected (connect backoff 1, 2, 4 ... 16s): "
                               f"waiting requests rerun"))
                return self._stop(o, at)
            o.fail_at = detected + self.reconnect_delay
            ev.append((detected, f"target NBD connection lost ({how}): requests wait "
                                 f"(reconnect-delay {self.reconnect_delay:g}s)"))
            ev.append((o.fail_at, f"target NBD reconnect-delay {self.reconnect_delay:g}s ran "
                                  f"out: waiting requests fail (EIO), later ones at once "
                                  f"until reconnected"))
            self._reconnected(o, at)
        else:  # NBD_CLIENT_CONNECTING_NOWAIT
            o.fail_at = detected
            o.detector = found and not o.silent
            ev.append((detected, f"target NBD connection lost ({how}), reconnect-delay 0: "
                                 f"requests fail (EIO) until reconnected"))
        self._losses.append(o)

    def _reconnected(self, o: Outage, at: float) -> None:
        o.fail_until = at
        self._recovered = at
        if self.stats is not None and at < float("inf"):
            self.stats.events.append((at, "target NBD client reconnected: requests go "
                                          "through again"))

    def _stop(self, o: Outage, until: float) -> None:
        self._recovered = until
        self._stops.append((o.start, until, 0.0))
        self._build_clock()

    def _fail(self, at: float, o: Outage) -> float:
        self.failed = True
        self.errors += 1
        self._busy_until = max(self._busy_until, at)
        if self.stats is not None:
            self.stats.target_errors += 1
            if not o.logged:  # the first failure of each loss
                o.logged = True
                self.stats.events.append((at, "target request failed (EIO: NBD connection "
                                              "lost)"))
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
    cost wraps it: the host's CPU queue stays in real time). The NBD client's
    ``reconnect-delay`` and ``open-timeout`` come from the target device."""
    f = cfg.faults
    if not f.target:
        return
    clock, outages = [], []
    for w in f.target:
        s = t0 + w.at
        if w.kind == "slow":
            clock.append((s, s + w.duration, 1.0 / w.factor))
        else:  # outage, or reset (the server stays up: duration 0)
            # at 0 the server is down as the backup starts: the target's open meets it
            outages.append(Outage(s, s + w.duration, silent=w.silent, detect=w.detect,
                                  opening=w.kind == "outage" and w.at == 0))
    name = cfg.backup.target.device
    spec = cfg.devices[name]
    devices[name] = FaultyDevice(devices[name], clock, outages, stats,
                                 reconnect_delay=spec.reconnect_delay or 0.0,
                                 open_timeout=spec.open_timeout or 0.0, rtt=spec.rtt)


def log_windows(env, cfg, stats, t0: float) -> None:
    """Event-log entries at the start and end of each target fault window."""
    spec = cfg.devices[cfg.backup.target.device]
    for w in cfg.faults.target:
        s = t0 + w.at
        if w.kind == "reset":
            _at(env, s, stats, "target NBD connection reset (server up)")
        elif w.kind == "slow":
            _at(env, s, stats, f"target slow: {w.factor:g}x for {w.duration:g}s")
            _at(env, s + w.duration, stats, "target back to normal speed")
        else:
            how = (f"silent (no RST), TCP gives up after {w.detect:g}s"
                   if w.detect is not None else
                   f"silent (no RST), TCP gives up after tcp_retries2's {TCP_GIVE_UP:g}s"
                   if w.silent else "its connections reset")
            _at(env, s, stats, f"target NBD server down for {w.duration:g}s ({how}; "
                               f"reconnect-delay {spec.reconnect_delay or 0:g}s"
                               f"{f', open-timeout {spec.open_timeout or 0:g}s' if w.at == 0 else ''})")
            _at(env, s + w.duration, stats, "target NBD server reachable again")


def unfired(cfg, t0: float, end: float) -> list[str]:
    """A warning for each target fault that starts after the backup ended
    (``end``: the job's end, or where the run stopped): it never acted, so the
    run says so rather than reading as if the fault were survived."""
    out = []
    for i, w in enumerate(cfg.faults.target):
        if t0 + w.at > end:  # at the same instant it may be what ended it
            out.append(f"faults.target[{i}] ({w.kind} at {w.at:g}s) never acted: the backup "
                       f"{'ended' if end else 'stopped'} at {end - t0:.4g}s, before it")
    return out


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
