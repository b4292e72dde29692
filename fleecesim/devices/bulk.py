"""Many equal requests at once: the write-zeroes of a long zero run.

A full backup of a sparse disk sends the target one write-zeroes per task of
at most ``max-chunk`` (jobs/bulk.py has the QEMU reference): 64 Mi requests
for 64 TiB of zeroes. ``submit_many`` gives the device the same schedule as
that many ``submit`` calls, without that many calls: requests are submitted
one by one (exactly, as ``submit``) until the device's state repeats itself
shifted in time — every slot, pipe and transfer time later by the same
``delta`` after each wave of ``slots`` requests (equal requests on a device
whose queue never empties) — then whole waves are skipped by adding
``k * delta`` to every time and ``k`` waves' worth to every counter, and the
last requests are submitted one by one again. The jump is checked, not
assumed: a state that does not repeat within ``TOL`` is never skipped (a
device with positioning time, e.g. an HDD, always runs the exact loop).
Skipping changes the floating-point rounding of the sums (times differ from
the loop's by a few ulps per wave skipped), nothing else.
"""
from __future__ import annotations

from bisect import bisect_right
from collections import deque

from .base import Device
from .remote import RemoteDevice

TOL = 1e-9          # seconds: how exactly a wave must repeat to be skipped
HEAD_WAVES = 64     # exact waves tried before giving up on skipping


def unwrap(dev):
    """(the raw device, the Host whose request cost it pays, or None)."""
    host = getattr(dev, "host", None)
    return (dev.device, host) if host is not None and hasattr(dev, "device") else (dev, None)


def _wave(dev) -> int | None:
    """Requests per repeat of the state, or None if the device cannot be skipped."""
    if isinstance(dev, RemoteDevice):
        # other clients on the link place bytes on it too: their state is not here
        if dev.link.users > 1 or dev._served or _wave(dev.backend) is None:
            return None
        return dev.slots * dev.connections
    if isinstance(dev, Device) and type(dev).submit is Device.submit and not dev._positions:
        return dev.slots
    return None


def _committed(d: Device) -> list:
    """A ps device's committed intervals from its earliest free slot on: no
    later request starts before that, so what lies earlier cannot matter
    (and would not shift with the waves)."""
    lo = d._free[0]
    b = d._busy
    b = b[bisect_right(b, lo) & -2:]
    if b and b[0] < lo:
        b[0] = lo
    return b


def _dev_state(d: Device, times: list, shape: list, counts: list) -> None:
    times += sorted(d._free)
    if d.ps:
        b = _committed(d)
        times += b
        shape.append(len(b))
    else:
        times.append(d._pipe_free)
    counts += [d.ops, d.bytes, d.busy]


def _pipes(dev) -> list:
    """A remote device's byte schedules (devices/remote.py _Pipe): the link's
    two directions, then each connection's two window pipes."""
    out = [dev.link.up.pipe, dev.link.down.pipe]
    if dev._win_s_per_byte:
        for c in dev._conns:
            out += [c.win_up, c.win_down]
    return out


def _state(dev):
    times, shape, counts = [], [], []
    if isinstance(dev, RemoteDevice):
        dev.settle()  # only what later requests can reach is state
        for c in dev._conns:
            times += sorted(c.free)
            times.append(c.last_start)
        for p in _pipes(dev):
            times += p.s
            times += p.e
            shape.append(len(p.e))
        shape.append(dev._rr)
        counts.append(dev.window_limited)
        for w in (dev.link.up, dev.link.down):
            counts += [w.busy, w.bytes]
        _dev_state(dev.backend, times, shape, counts)
    else:
        _dev_state(dev, times, shape, counts)
    return times, shape, counts


def _set_dev(d: Device, times: list, i: int, counts: list, j: int) -> tuple[int, int]:
    k = len(d._free)
    kb = len(_committed(d)) if d.ps else 0  # as in the state being shifted
    d._free = times[i:i + k]  # ascending: a valid heap
    lo = times[i]
    i += k
    if d.ps:
        d._busy = times[i:i + kb] if kb else [lo, lo]
        i += kb
    else:
        d._pipe_free = times[i]
        i += 1
    d.ops, d.bytes, d.busy = counts[j], counts[j + 1], counts[j + 2]
    return i, j + 3


def _set_state(dev, times: list, counts: list) -> None:
    if isinstance(dev, RemoteDevice):
        i = 0
        for c in dev._conns:
            k = len(c.free)
            c.free = times[i:i + k]
            i += k
            c.last_start = times[i]
            i += 1
        for p in _pipes(dev):
            k = len(p.e)
            p.s[:] = times[i:i + k]  # in place: RemoteDevice holds these lists
            p.e[:] = times[i + k:i + 2 * k]
            i += 2 * k
        dev.window_limited = counts[0]
        j = 1
        for w in (dev.link.up, dev.link.down):
            w.busy, w.bytes = counts[j], counts[j + 1]
            j += 2
        _set_dev(dev.backend, times, i, counts, j)
    else:
        _set_dev(dev, times, 0, counts, 0)


def _repeat(s0, s1) -> float | None:
    """``delta`` if state ``s1`` is ``s0`` with every time later by one delta."""
    t0, sh0, _c0 = s0
    t1, sh1, _c1 = s1
    if sh0 != sh1 or len(t0) != len(t1) or not t0:
        return None
    delta = t1[0] - t0[0]
    if delta <= 0:
        return None
    for a, b in zip(t0, t1):
        if abs(b - a - delta) > TOL:
            return None
    return delta


def submit_many(dev, now: float, m: int, offset: int, step: int, length: int,
                write: bool = True, keep: int = 1) -> list[float]:
    """Submit ``m`` equal requests of ``length`` bytes at ``now`` (the i-th at
    ``offset + i * step``) as ``m`` calls of ``dev.submit`` would, and return
    the completion times of the last ``keep`` of them, in request order.

    Behind the host's software cost (devices/host.py: HostDevice) each request
    is counted in ``host.requests`` and reaches the device ``request_cost``
    after the previous one (the AioContext serves them one after the other,
    after what it has queued now), but does not take the host's FIFO queue
    from later requests: those that really interleave with the stream (the
    guest's) would have waited behind some of them (one request's cost each
    at most)."""
    raw, host = unwrap(dev)
    cost = 0.0
    if host is not None:
        host.requests += m
        if host.cpu is not None:  # the i-th is through the CPU (i+1) costs after it is free
            host.cpu.ops += m
            cost = host.request_cost
            now = max(now, host._cpu_free) + cost
        if length and host.memcpy is not None and getattr(dev, "copy", False):
            raise ValueError("submit_many: requests that move data through memory "
                             "are not supported")
    keep = max(1, keep)
    ends: deque = deque(maxlen=keep)
    submit = raw.submit
    i = 0
    wave = _wave(raw)
    if wave is not None and m > 4 * wave:
        tried = 0
        while i + 2 * wave <= m and tried < HEAD_WAVES:
            s0 = _state(raw)
            last = []
            for _ in range(wave):
                last.append(submit(now + i * cost, offset + i * step, length, write))
                i += 1
            ends.extend(last)
            s1 = _state(raw)
            tried += 1
            delta = _repeat(s0, s1)
            if delta is None or delta < wave * cost - TOL:
                continue  # not (yet) a repeating state: go on one by one
            k = (m - i) // wave
            if k > 0:
                counts = [c1 + k * (c1 - c0) for c0, c1 in zip(s0[2], s1[2])]
                _set_state(raw, [t + k * delta for t in s1[0]], counts)
                i += k * wave
                # the skipped waves end as the last one did, j deltas later
                for j in range(max(1, k - keep // wave), k + 1):
                    ends.extend(t + j * delta for t in last)
            break
    while i < m:
        ends.append(submit(now + i * cost, offset + i * step, length, write))
        i += 1
    return list(ends)
