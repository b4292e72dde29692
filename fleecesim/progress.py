"""Progress on stderr while a long command runs: a bar at a terminal, plain
lines in a log (nohup, CI, a notebook cell, ``| tee``).

A daemon thread of its own samples the run's state (the simulated clock, the
backup job's clusters still to copy) and writes; nothing here schedules an
event or touches the simulation's hot path, so progress cannot change a run
(tests/test_progress.py compares the results with and without it).

Off a terminal a line comes every ``FLEECESIM_PROGRESS_EVERY`` seconds of
wall time (default ``EVERY_S``), without carriage returns or colours; at a
terminal a tqdm bar is redrawn every ``BAR_REFRESH_S``.
"""
from __future__ import annotations

import os
import sys
import threading
import time

from .errors import UserError

EVERY_S = 10.0        # a progress line this often (wall seconds) off a terminal
BAR_REFRESH_S = 0.5   # the bar's redraw at a terminal
ENV_EVERY = "FLEECESIM_PROGRESS_EVERY"


def mode(quiet: bool = False, stream=None) -> str:
    """"off" (``--quiet``), "bar" (a person at a terminal) or "lines"
    (stderr is a file or pipe, or CI, or a terminal that cannot redraw)."""
    if quiet:
        return "off"
    s = stream or sys.stderr
    try:
        tty = s.isatty()
    except (AttributeError, ValueError):
        tty = False
    if tty and not os.environ.get("CI") and os.environ.get("TERM") != "dumb":
        return "bar"
    every_s()  # a bad FLEECESIM_PROGRESS_EVERY is an error before any work
    return "lines"


def every_s() -> float:
    """Seconds between progress lines: ``FLEECESIM_PROGRESS_EVERY`` (e.g. "30s",
    "2") or ``EVERY_S``."""
    v = os.environ.get(ENV_EVERY)
    if v is None or v == "":
        return EVERY_S
    from .units import parse_time
    try:
        s = parse_time(v)
    except ValueError:
        s = -1.0
    if not s > 0:
        raise UserError(f"{ENV_EVERY}={v}: expected a time above 0 such as '10s' (the wall "
                        f"time between progress lines)")
    return s


def clock(s: float) -> str:
    """Wall seconds as a log reads them: 7s, 3m05s, 2h04m."""
    s = int(round(max(0.0, s)))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else \
        (f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s")


def percent(f: float) -> str:
    """A share as a log reads it: 37.2%, and 0.004% for the first clusters
    of a multi-TiB disk (not a 0.0% that seems stuck)."""
    p = 100.0 * f
    return f"{p:.1f}%" if p >= 1 or p == 0 else f"{p:.3f}%"


class Ticker:
    """Calls ``tick()`` every ``every`` seconds from a daemon thread until
    ``stop()``; ``tick`` only reads what the main thread writes."""

    def __init__(self, every: float, tick):
        self.every, self.tick = every, tick
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True,
                                        name="fleecesim-progress")
        self._thread.start()

    def _loop(self):
        while not self._stop.wait(self.every):
            try:
                self.tick()
            except Exception:  # a progress line must never end a run
                pass

    def stop(self):
        self._stop.set()
        self._thread.join()


class RunProgress:
    """One run's progress: its phase (set-up, warm-up, t0, backup, tail,
    finishing), simulated time, the share of the backup copied, and an estimate
    of the wall time left. The run calls ``phase_*``; the ticker reads."""

    def __init__(self, name: str, cfg, how: str = "lines", stream=None,
                 every: float | None = None):
        self.name, self.how = name, how
        self.stream = stream or sys.stderr
        self.warmup, self.tail_s = cfg.run.warmup, cfg.run.tail
        self.max_time = cfg.run.max_time
        self.env = None
        self.copiers: list = []   # (copier, clusters to copy at its start)
        self.t0 = None            # simulated time the (first) backup began
        self.t_end = None         # simulated time the backup ended
        self.phase, self.detail = "set-up", ""
        self.wall0 = self.wall_phase = time.monotonic()
        self.bar = None
        if how == "bar":
            from tqdm import tqdm
            self.bar = tqdm(total=100.0, desc=name, leave=False, file=self.stream,
                            dynamic_ncols=True,
                            bar_format="{desc}: {percentage:3.0f}% copied |{bar}| {postfix}")
            self.ticker = Ticker(BAR_REFRESH_S, self._draw)
            self._draw()
        else:
            self.ticker = Ticker(every or every_s(), self._print)

    # ------------------------------------------------------------ the run's side
    def set_up(self, detail: str) -> None:
        """A named step before the first event (e.g. drawing the disk's layout)."""
        self.detail = detail

    def started(self, env) -> None:
        self.env = env
        self._phase("warm-up")

    def taking_t0(self, detail: str) -> None:
        """The backup's start (t0), before its job runs: the point-in-time
        copy of the per-cluster state and the job's bitmap."""
        if self.t0 is None:
            self._phase("t0", detail)

    def backup_began(self, copier) -> None:
        """A VM's backup began (t0); ``copier``: its job's BlockCopy, or None."""
        if self.t0 is None:
            self.t0 = self.env.now
        if self.phase != "backup":
            self._phase("backup")
        if copier is not None:
            self.copiers.append((copier, int(copier.remaining)))

    def tail(self) -> None:
        self.t_end = self.env.now
        self._phase("tail")

    def finishing(self) -> None:
        self._phase("finishing", "checking the image, summarising")

    def _phase(self, name: str, detail: str = "") -> None:
        self.phase, self.detail = name, detail
        self.wall_phase = time.monotonic()

    def close(self, ok: bool = True) -> None:
        self.ticker.stop()
        if self.bar is not None:
            self.bar.close()
        elif ok:
            now = self.env.now if self.env is not None else 0.0
            pct = self.copied()
            self._write(f"{self.name}: done in {clock(time.monotonic() - self.wall0)}, "
                        f"{now:.1f} simulated s"
                        + (f", {percent(pct)} copied" if pct is not None else ""))

    # --------------------------------------------------------- the ticker's side
    def copied(self) -> float | None:
        """Share of the clusters asked for that are copied (None: no copy job)."""
        if not self.copiers:
            return None if self.t0 is not None else 0.0
        total = sum(t for _c, t in self.copiers)
        if not total:
            return 1.0
        left = sum(max(0, min(t, int(c.remaining))) for c, t in self.copiers)
        return 1.0 - left / total

    def left_s(self) -> float | None:
        """Wall seconds left, from this phase's pace so far (None: not yet)."""
        now = self.env.now if self.env is not None else 0.0
        el = time.monotonic() - self.wall_phase
        if self.phase == "warm-up":
            if now <= 0 or el <= 0:
                return None
            return (self.warmup - now) * el / now  # to the backup's start
        if self.phase == "backup":
            sim = now - self.t0
            if sim <= 0 or el <= 0:
                return None
            wall_per_sim = el / sim
            by_clock = (self.t0 + self.max_time - now) * wall_per_sim  # run.max-time
            f = self.copied()
            by_copy = el * (1 - f) / f if f else None
            left = by_clock if by_copy is None else min(by_copy, by_clock)
            return left + self.tail_s * wall_per_sim
        if self.phase == "tail":
            sim = now - self.t_end
            if sim <= 0 or el <= 0:
                return None
            return (self.tail_s - sim) * el / sim
        return None

    def fields(self) -> str:
        now = self.env.now if self.env is not None else 0.0
        f = self.copied()
        left = self.left_s()
        parts = [f"{self.phase}" + (f" ({self.detail})" if self.detail else ""),
                 f"{now:.1f} simulated s",
                 "no copy job" if f is None else f"{percent(f)} copied",
                 f"{clock(time.monotonic() - self.wall0)} elapsed",
                 "remaining: estimating" if left is None else
                 f"~{clock(left)} left" + (" of the warm-up" if self.phase == "warm-up"
                                           else "")]
        return ", ".join(parts)

    def _print(self):
        self._write(f"{self.name}: {self.fields()}")

    def _write(self, line: str):
        print(line, file=self.stream, flush=True)

    def _draw(self):
        f = self.copied()
        self.bar.n = 100.0 * (f or 0.0)
        self.bar.set_postfix_str(self.fields(), refresh=False)
        self.bar.refresh()


class RunsProgress:
    """A sweep's progress: runs stored of those planned, elapsed, and an
    estimate of what is left from the pace of this invocation's runs. Lines
    off a terminal; at a terminal, tqdm's bar (which has its own estimate)."""

    def __init__(self, name: str, total: int, stored: int, how: str, stream=None,
                 every: float | None = None):
        self.name, self.total, self.start = name, total, stored
        self.n, self.failed, self.how = stored, 0, how
        self.stream = stream or sys.stderr
        self.wall0 = time.monotonic()
        self.bar = self.ticker = None
        if how == "bar":
            from tqdm import tqdm
            self.bar = tqdm(total=total, initial=stored, unit="run", desc=name,
                            file=self.stream, dynamic_ncols=True)
        elif how == "lines":
            self._print()  # a log shows at once what is planned
            self.ticker = Ticker(every or every_s(), self._print)

    def stored(self, failed: bool) -> None:
        self.n += 1
        self.failed += bool(failed)
        if self.bar is not None:
            self.bar.update(1)
            if self.failed:
                self.bar.set_postfix(failed=self.failed, refresh=False)

    def clear(self) -> None:
        if self.bar is not None:
            self.bar.clear()

    def line(self) -> str:
        el = time.monotonic() - self.wall0
        new = self.n - self.start
        left = "done" if self.n >= self.total else \
            (f"~{clock((self.total - self.n) * el / new)} left" if new > 0 else
             "remaining: estimating")
        failed = f" ({self.failed} failed)" if self.failed else ""
        return f"{self.name}: {self.n}/{self.total} runs{failed}, {clock(el)} elapsed, {left}"

    def _print(self):
        print(self.line(), file=self.stream, flush=True)

    def close(self, ok: bool = True) -> None:
        if self.ticker is not None:
            self.ticker.stop()
            if ok:
                self._print()
        if self.bar is not None:
            self.bar.close()
