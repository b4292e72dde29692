"""nodes.base.Environment (the analytic engine's loop, SimPy's ``run`` with
``step`` inlined) behaves as SimPy's own: the same events in the same order,
the same ``until`` handling, the same errors."""
import random

import pytest
import simpy

from fleecesim.nodes.base import Environment, Timer, call_at, timer


def _scenario(env, log, seed):
    """Processes, bare events, conditions, ties at equal times and priorities,
    and the engine's Timers pushed onto the heap without ``schedule``."""
    rnd = random.Random(seed)
    shared = env.event()

    def proc(i):
        for k in range(20):
            d = rnd.choice([0, 0.5, 1.0, 1.0, 2.5])
            yield env.timeout(d)
            log.append((env.now, "p", i, k))
            if k == 7 and i == 0:
                shared.succeed(i)
            if k == 9:
                v = yield shared
                log.append((env.now, "shared", i, v))
            if k == 12:
                yield env.all_of([env.timeout(1.0), env.timeout(0.5)])
                log.append((env.now, "all", i))

    def cb(i):
        return lambda _ev: log.append((env.now, "cb", i))

    for i in range(4):
        env.process(proc(i))
    for i in range(30):
        t = rnd.choice([0.5, 1.0, 2.0, 3.0, 7.5])
        if i % 3 == 0:
            timer(env, t).callbacks.append(cb(i))
        elif i % 3 == 1:
            call_at(env, t, cb(i))
        else:
            ev = Timer()
            ev.callbacks = [cb(i)]
            env.schedule(ev, simpy.events.URGENT if i % 2 else simpy.events.NORMAL, t)


@pytest.mark.parametrize("seed", range(5))
def test_same_order_as_simpy(seed):
    logs = []
    for cls in (simpy.Environment, Environment):
        env = cls()
        log = []
        _scenario(env, log, seed)
        env.run(until=4.0)          # stops at a time, events left queued
        log.append((env.now, "pause"))
        env.run()                   # then runs to the end
        log.append((env.now, "end"))
        logs.append(log)
    assert len(logs[0]) > 100
    assert logs[0] == logs[1]


def test_until_event_and_resume():
    for cls in (simpy.Environment, Environment):
        env = cls()
        ev = env.event()
        seen = []
        env.process(_setter(env, ev, seen))
        assert env.run(until=ev) == "v"
        assert env.now == 3.0
        # the other callbacks of the stopping event still run when resumed
        env.run(until=10)
        assert seen == [3.0, 5.0]
        assert env.run(until=ev) == "v"  # already processed


def _setter(env, ev, seen):
    yield env.timeout(3)
    ev.callbacks.append(lambda e: seen.append(env.now))
    ev.succeed("v")
    yield env.timeout(2)
    seen.append(env.now)


def test_until_in_the_past():
    env = Environment()
    env.run(until=2)
    with pytest.raises(ValueError):
        env.run(until=1)


def test_failed_event_crashes_the_run():
    env = Environment()
    ev = env.event()
    ev.fail(KeyError("boom"))
    with pytest.raises(KeyError):
        env.run()


def test_empty_schedule_before_until_event():
    env = Environment()
    env.timeout(1)
    with pytest.raises(RuntimeError):
        env.run(until=env.event())
