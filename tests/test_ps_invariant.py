"""No device moves more than its bandwidth over any interval (devices/base.py).

A request's work is the pipe time it holds, ``max(length/bandwidth, 1/iops)``
in its direction. The invariant, for every interval [t1, t2]: the requests
whose transfer lies inside it (ready at t1 or later — after its slot and
access latency — and complete by t2) hold at most t2 - t1 of work. With one
bandwidth and no IOPS cap that is "bytes delivered in [t1, t2] <=
bandwidth x (t2 - t1)", and with t1 = 0 the issue's "delivered by t <=
bandwidth x t". It is also exactly the condition for a schedule at one
bandwidth to exist that moves each request inside [ready, end] (Horn 1974,
the demand criterion of preemptive scheduling with release times and
deadlines), so it checks the completions from outside, whatever ``submit``
keeps inside.

For ``ps`` also: each completion is the earliest one that keeps the
invariant given the completions returned before it — some interval ending at
it is full (so no earlier time would do)."""
import heapq

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fleecesim.devices import Device

MiB = 2**20


def _run(dev_kw, reqs):
    """Submit ``reqs`` ((gap, length, write), ...) in order; return per request
    ready time, completion, work and length (arrays). Ready time: the FIFO
    slot it takes (the earliest free of ``slots``, as ``submit`` defines
    queue depth) plus its direction's latency."""
    d = Device("d", **dev_kw)
    slots = [0.0] * dev_kw["slots"]
    now = 0.0
    ready, ends, work, lens = [], [], [], []
    for gap, length, write in reqs:
        now = max(0.0, now + gap)
        start = max(now, slots[0])
        lat = d.write_latency if write else d.latency
        per_byte = d.inv_wbw if write else d.inv_bw
        floor = d.min_write if write else d.min_read
        end = d.submit(now, 0, length, write)
        heapq.heapreplace(slots, end)
        ready.append(start + lat)
        ends.append(end)
        work.append(max(length * per_byte, floor) if length else 0.0)
        lens.append(length)
    return np.array(ready), np.array(ends), np.array(work), np.array(lens, dtype=float)


def _worst_excess(ready, ends, amount, rate):
    """max over t1 in {0} + ready times and t2 in completions of
    (amount of the requests inside [t1, t2]) - rate * (t2 - t1)."""
    t1 = np.concatenate(([0.0], ready))[:, None, None]
    t2 = ends[None, :, None]
    inside = (ready[None, None, :] >= t1) & (ends[None, None, :] <= t2)
    demand = (inside * amount[None, None, :]).sum(axis=2)
    span = (t2 - t1)[:, :, 0]
    ok = span >= 0
    return float(np.max(np.where(ok, demand - rate * span, -np.inf)))


def _tol(ends):
    return 1e-9 * (float(ends.max()) + 1e-3)


sizes = st.one_of(st.sampled_from([512, 4096, 65536, MiB, 16 * MiB]),
                  st.integers(512, 16 * MiB))


@st.composite
def mixes(draw):
    bw = draw(st.sampled_from([1 * MiB, 200 * MiB, 3500e6]))
    same_bw = draw(st.booleans())
    iops = draw(st.sampled_from([(0, 0), (600_000, 550_000), (2_000, 500)]))
    kw = dict(latency=draw(st.sampled_from([0.0, 51e-6, 2e-3])), bandwidth=bw,
              slots=draw(st.sampled_from([1, 2, 4, 32, 256])),
              write_latency=draw(st.sampled_from([0.0, 15e-6, 5e-3])),
              write_bandwidth=bw if same_bw else bw / 3,
              read_iops=iops[0], write_iops=iops[1])
    # arrival gaps of the order of a 4 KiB .. 16 MiB transfer, bursts (0)
    # too; sometimes ``now`` steps back (a remote device's backend is
    # submitted at each request's arrival over its connection, and one
    # connection's window can hold a request back past a later one's)
    scale = draw(st.sampled_from([4096, 65536, MiB, 16 * MiB])) / bw
    back = draw(st.booleans())
    gap = st.one_of(st.just(0.0), st.floats(-scale if back else 0.0, 2 * scale))
    reqs = draw(st.lists(st.tuples(gap, sizes, st.booleans()), min_size=1, max_size=80))
    return kw, reqs


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mix=mixes(), sharing=st.sampled_from(["ps", "fifo"]))
def test_no_interval_holds_more_than_its_length_of_work(mix, sharing):
    kw, reqs = mix
    ready, ends, work, lens = _run({**kw, "sharing": sharing}, reqs)
    assert _worst_excess(ready, ends, work, 1.0) <= _tol(ends)
    if kw["write_bandwidth"] == kw["bandwidth"] and not kw["read_iops"]:
        # the same, in bytes
        assert _worst_excess(ready, ends, lens, kw["bandwidth"]) <= \
            kw["bandwidth"] * _tol(ends)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mix=mixes())
def test_ps_completion_is_the_earliest_the_invariant_allows(mix):
    # Among the requests submitted up to i, some interval ending at request
    # i's completion, starting no later than it was ready, is full: an
    # earlier completion would break the invariant.
    kw, reqs = mix
    ready, ends, work, _ = _run({**kw, "sharing": "ps"}, reqs)
    tol = _tol(ends)
    for i in range(len(reqs)):
        r, e, w = ready[:i + 1], ends[:i + 1], work[:i + 1]
        t1 = r[r <= r[i]]
        inside = (r[None, :] >= t1[:, None]) & (e[None, :] <= e[i])
        slack = (e[i] - t1) - (inside * w[None, :]).sum(axis=1)
        assert slack.min() <= tol, i


def test_large_request_then_small_ones_deliver_at_most_bandwidth():
    # The case: one 8 MiB request, then 2,000 x 4 KiB, on a 1 MiB/s
    # device. Everything ready at 0, so by t at most t MiB can be complete:
    # the 8 MiB transfer ends at 8 s and the small ones after it, one each
    # 4 KiB / (1 MiB/s) (they cannot use capacity it holds).
    d = Device("d", 0.0, 1 * MiB, 4096, sharing="ps")
    big = d.submit(0.0, 0, 8 * MiB)
    small = np.array([d.submit(0.0, 0, 4096) for _ in range(2000)])
    assert big == 8.0
    for t in (2.0, 8.0, 12.0, big + 2000 * 4096 / MiB):
        done = 8 * MiB * (big <= t) + 4096 * (small <= t + 1e-12).sum()
        assert done <= MiB * t + 1e-6
    assert small.max() == pytest.approx(8.0 + 2000 * 4096 / MiB)


def test_ps_keeps_committed_capacity_when_now_steps_back():
    # A 1 MiB transfer holds [0, 1 s]; a request at 2 s finds the device idle;
    # then one submitted at 0.5 s (as a remote backend can be, its requests
    # arriving over connections of their own) must still go around [0, 1 s]:
    # it is ready at 0.5 s and moves in [1, 2 s).
    d = Device("d", 0.0, 1 * MiB, 8, sharing="ps")
    assert d.submit(0.0, 0, MiB) == 1.0
    assert d.submit(2.0, 0, 4096) == 2.0 + 4096 / MiB
    assert d.submit(0.5, 0, MiB) == 2.0


def recording_submit(jobs: dict):
    """``Device.submit`` that also records each request of a device without
    positioning time as (ready, completion, pipe time) under (id, name, ps):
    ready = slot free + access latency, pipe time max(length/bandwidth, 1/iops),
    the jobs ``_edf_lateness`` checks. (HDDs are left out: their ready time,
    after the seek, is not visible from outside.)"""
    submit = Device.submit

    def recorded(self, now, offset, length, write=False):
        ready = max(now, self._free[0]) + (self.write_latency if write else self.latency)
        work = max(length * (self.inv_wbw if write else self.inv_bw),
                   self.min_write if write else self.min_read) if length else 0.0
        end = submit(self, now, offset, length, write)
        if not self._positions:
            jobs.setdefault((id(self), self.name, self.ps), []).append((ready, end, work))
        return end
    return recorded


def _edf_lateness(jobs):
    """The largest lateness of earliest-deadline-first on a machine of rate 1
    for ``jobs`` (ready, deadline, work): <= 0 exactly when the interval
    condition holds for them (EDF is optimal: Horn 1974)."""
    jobs = sorted(jobs)
    h, t, worst, i, n = [], 0.0, -np.inf, 0, len(jobs)
    while i < n or h:
        if not h:
            t = max(t, jobs[i][0])
        while i < n and jobs[i][0] <= t:
            heapq.heappush(h, [jobs[i][1], jobs[i][2]])
            i += 1
        nxt = jobs[i][0] if i < n else np.inf
        d, rem = h[0]
        if t + rem <= nxt:
            t += rem
            heapq.heappop(h)
            worst = max(worst, t - d)
        else:
            h[0][1] = rem - (nxt - t)
            t = nxt
    return worst


@pytest.mark.parametrize("config,over", [
    ("fleecing-vs-legacy.yaml", ["backup.scheme=fleecing-push", "disk.size=256MiB"]),
    # several VMs on one local device, each behind its own host queue: the
    # device's callers' ``now`` is not in order across them
    ("fleet.yaml", ["disk.size=1GiB"]),
])
def test_every_device_of_a_run_keeps_the_invariant(monkeypatch, config, over):
    from pathlib import Path

    from fleecesim.config import load_config
    from fleecesim.devices import RAM, SSD
    from fleecesim.run import simulate

    jobs = {}
    # the device kinds a run builds without positioning time, patched on
    # their own classes (Device itself is an immutable type when compiled);
    # a HostDevice over a patched kind takes its two-call path, through it
    for kind in (RAM, SSD):
        monkeypatch.setattr(kind, "submit", recording_submit(jobs))
    cfg = load_config(Path(__file__).parents[1] / "configs" / config,
                      [*over, "run.max-time=120s"])
    simulate(cfg)
    assert {name for _, name, _ps in jobs} >= {"local", "target.backend"}
    for (_, name, _ps), js in jobs.items():
        assert _edf_lateness(js) <= 1e-9 * max(e for _, e, _ in js), name
