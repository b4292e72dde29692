"""backup.cbw-priority: copy-before-write writes overtake the job's queued
target writes (the seed's postscript); off, one FIFO as QEMU's NBD client."""
import pytest
import simpy

from fleecesim.devices import Device
from fleecesim.errors import ConfigError
from fleecesim.metrics import Stats
from fleecesim.nodes import REQ_CBW, BackupTarget
from fleecesim.run import simulate
from tests.conftest import small
from tests.test_schemes_oracle import busy


def _writes(priority):
    """One slot, 10 ms per write: job writes A and B at t=0 (A goes on the wire,
    B queues), a CBW write C at t=1 ms. Returns completion times."""
    env = simpy.Environment()
    dev = Device("t", latency=10e-3, bandwidth=1e15, slots=1)
    tgt = BackupTarget(env, dev, 8, 65536, Stats(), cbw_priority=priority)
    done = {}

    def w(name, at, offset, flags):
        yield env.timeout(at)
        yield from tgt.write(offset, 65536, 1, flags)
        done[name] = env.now

    env.process(w("A", 0.0, 0, 0))
    env.process(w("B", 0.0, 65536, 0))
    env.process(w("C", 1e-3, 2 * 65536, REQ_CBW))
    env.run()
    return done


def test_cbw_overtakes_queued_job_writes_but_not_one_in_flight():
    fifo = _writes(False)
    assert fifo == pytest.approx({"A": 10e-3, "B": 20e-3, "C": 30e-3})
    prio = _writes(True)
    assert prio == pytest.approx({"A": 10e-3, "C": 20e-3, "B": 30e-3})


def _backup(priority, seed=1):
    # 1 GbE NBD target (the default preset), the backup scheme's 64 x 1 MiB job
    return simulate(small(**{"backup.scheme": "backup", "backup.cbw-priority": priority,
                             "run.seed": seed}))


def test_priority_cuts_the_guest_write_tail_on_1gbe():
    off, on = _backup(False), _backup(True)
    for r in (off, on):
        assert r.summary["oracle_ok"] and r.summary.get("error") is None
    # the same guest requests either way
    assert on.summary["guest_ios_during_backup"] == off.summary["guest_ios_during_backup"]
    assert on.summary["write_p99_s"] < 0.8 * off.summary["write_p99_s"]

    def cbw_median(r):
        df = r.requests
        w = df[(df.op == "write") & (df.phase == "backup") & (df.path == "cbw")]
        return float(w.latency.median())
    assert cbw_median(on) < 0.6 * cbw_median(off)


@pytest.mark.parametrize("scheme,sync", [("backup", "full"), ("backup", "incremental"),
                                         ("backup", "none")])
def test_oracle_holds_with_priority(scheme, sync):
    for workers in (4, 64):
        s = simulate(busy(scheme, sync, workers, 1, **{"backup.cbw-priority": True})).summary
        assert s.get("error") is None, s.get("traceback")
        assert s["oracle_ok"], s["oracle_violations"]
        assert s["clusters_copied_twice"] == 0
        assert s["cbw_count"] + s["cbw_waits"] > 0


def test_fast_path_agrees_with_priority():
    cfg = busy("backup", "full", 8, 3, **{"backup.cbw-priority": True})
    a = simulate(cfg, fast_path=True).summary
    b = simulate(cfg, fast_path=False).summary
    for k in ("backup_duration_s", "cbw_count", "write_p99_s"):
        assert a[k] == pytest.approx(b[k], rel=1e-9), k


@pytest.mark.parametrize("scheme", ["fleecing-push", "legacy-backup",
                                    ["fleecing-push", "fleecing-pull"]])
def test_rejected_where_cbw_does_not_write_the_target(scheme):
    with pytest.raises(ConfigError) as e:
        small(**{"backup.scheme": scheme, "backup.cbw-priority": True})
    msg = str(e.value)
    assert "backup.cbw-priority" in msg and "\n" not in msg


def test_in_a_scheme_list_only_backup_runs_with_it():
    """A list with `backup` takes the key (a key is in use when any listed
    scheme acts on it); the other schemes' runs leave it out."""
    from fleecesim.config import variants
    runs = dict(variants(small(**{"backup.scheme": ["backup", "fleecing-pull"],
                                  "backup.cbw-priority": True})))
    assert runs["backup"].backup.cbw_priority is True
    assert runs["fleecing-pull"].backup.cbw_priority is False


def test_default_is_off():
    assert small(**{"backup.scheme": "backup"}).backup.cbw_priority is False
