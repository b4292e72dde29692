"""Faults: closed forms and QEMU's policies.

An idle guest's backup is a deterministic stream of target writes, so a
target whose clock stops from a loss to the reconnect ends exactly that much
later, and one that runs f times slower for w seconds loses w (1 - 1/f)
seconds of work. The NBD client's reconnect: faults.py (block/nbd.c,
nbd/client-connection.c).
"""
import math

import numpy as np
import pytest

from fleecesim.config import resolve
from fleecesim.deadlines import deadline_stats
from fleecesim.errors import ConfigError
from fleecesim.run import simulate
from tests.conftest import small

IDLE = {"workload.iops": 0, "disk.size": "64MiB", "run.warmup": "0.5s"}
WRITER = {"workload.iops": 300, "workload.mix": {"read": 0, "write": 1},
          "workload.size": "64KiB", "disk.size": "64MiB", "run.warmup": "0.5s"}


def run(**over):
    s = simulate(small(**over)).summary
    assert s.get("error") is None, s.get("traceback")
    return s


WAIT = {"devices.target.reconnect-delay": "30s"}  # requests wait up to 30 s
RTT = 0.2e-3  # the nbd-1gbe preset's
CONNECT = 5 * RTT  # TCP handshake, greeting, three NBD options


def outage(at, d, **kw):
    return [{"kind": "outage", "at": at, "duration": d, **kw}]


def backoff_reconnect(d):
    """Seconds from the loss to the connect thread's first attempt at or after
    the server's return d later: attempts at 0, 1, 3, 7, 15, 31, 47, ... with
    each refused one costing a round trip (nbd/client-connection.c)."""
    t, sleep = 0.0, 1.0
    while t < d:
        t += RTT + sleep
        sleep = min(2 * sleep, 16.0)
    return t


@pytest.mark.parametrize("scheme", ["fleecing-push", "backup", "legacy-backup"])
@pytest.mark.parametrize("at", ["0.1s", "0.1001s", "0.33s"])
def test_outage_within_reconnect_delay_lengthens_an_idle_backup_to_the_reconnect(scheme, at):
    # The clock stands still from the loss to the reconnect: exactly that when
    # the job is waiting on the target as the server goes; if a worker is
    # reading its next chunk from the (healthy) local disk then, that read
    # overlaps the outage: minus at most one chunk's local read.
    base = run(**IDLE, **{"backup.scheme": scheme})
    for d, attempt in ((0.5, 1), (2.5, 3), (5.05, 7)):
        s = run(**IDLE, **WAIT, **{"backup.scheme": scheme, "faults.target": outage(at, d)})
        lost = backoff_reconnect(d) + CONNECT
        assert lost == pytest.approx(attempt, abs=0.01)  # a retry, not the outage's end
        gained = base["backup_duration_s"] + lost - s["backup_duration_s"]
        assert -1e-9 <= gained <= 1e-3  # 1 MiB read from the NVMe: ~0.5 ms
        assert s["backup_outcome"] == "complete" and s["oracle_ok"]
        assert s["target_errors"] == 0
        assert any("target NBD server down" in e for e in s["events"])
        assert any("reconnected" in e for e in s["events"])


# Measured on QEMU 7.2, NBD client reconnect-delay=30, the server killed and
# restarted: a 5.05 s outage -> the waiting write completed 7.31 s after the
# loss; a 20.05 s outage -> it failed (EIO) at 30.34 s, the server back for
# 10 s. (tests/test_qemu_reconnect.py measures the same on this machine.)
@pytest.mark.parametrize("scheme", ["fleecing-push", "backup"])
def test_the_two_measured_qemu_reconnects(scheme):
    over = {**IDLE, **WAIT, "backup.scheme": scheme}
    base = run(**over)["backup_duration_s"]
    # the job is writing when the server goes at 0.1 s: its write waits for
    # the attempt at +7 s and then finishes its service
    s = run(**over, **{"faults.target": outage("0.1s", 5.05)})
    waited = s["backup_duration_s"] - base
    assert waited == pytest.approx(7.0 + 3 * RTT + CONNECT, abs=1e-3)
    assert abs(waited - 7.31) < 1.0
    assert s["backup_outcome"] == "complete" and s["target_errors"] == 0
    # attempts at +15 s (down) and +31 s (past the delay): EIO at +30 s
    s = run(**over, **{"faults.target": outage("0.1s", 20.05)})
    assert s["backup_outcome"] == "failed" and s["target_errors"] > 0
    failed = s["backup_duration_s"] - 0.1
    assert failed == pytest.approx(30.0, abs=1e-9)
    assert abs(failed - 30.34) < 1.0
    assert any("reconnect-delay 30s ran out" in e for e in s["events"])


def _device(outages, **kw):
    from fleecesim.devices import build_device
    from fleecesim.faults import FaultyDevice
    spec = small().devices["target"]
    return FaultyDevice(build_device("target", spec), (), outages, rtt=spec.rtt, **kw)


def test_after_the_delay_requests_fail_at_once_until_the_thread_reconnects():
    # NBD_CLIENT_CONNECTING_WAIT for 30 s from the loss at 1 s; the connect
    # thread's attempts at 1, 2, 4, 8, 16 s are refused, the one at 32 s gets
    # through. Then NBD_CLIENT_CONNECTING_NOWAIT: a request's reconnect attempt
    # does not block, so from 31 s to the reconnect requests fail at once.
    from fleecesim.faults import Outage
    dev = _device([Outage(1.0, 21.05)], reconnect_delay=30)
    assert dev.submit(0.9999, 0, 2**20, True) == 31.0 and dev.failed  # in flight
    assert dev.submit(1.5, 0, 4096, True) == 31.0 and dev.failed      # waiting
    reconnect = 32.0 + 5 * RTT + CONNECT
    for t in (31.0, 31.5, reconnect - 1e-6):
        assert dev.submit(t, 0, 4096, True) == t and dev.failed
    end = dev.submit(reconnect + 1e-6, 0, 4096, True)
    assert not dev.failed and end < reconnect + 0.01
    assert dev.errors == 5


def test_reconnect_delay_0_fails_at_detection_and_the_next_request_starts_the_thread():
    from fleecesim.faults import Outage
    dev = _device([Outage(1.0, 1.0)])  # a reset: the server stays up
    assert dev.submit(0.995, 0, 2**20, True) == 1.0  # in flight at the reset
    assert dev.failed
    # idle afterwards: the next request starts the connect thread and fails
    # at once (non-blocking attempt); after the handshake requests go through
    assert dev.submit(5.0, 0, 4096, True) == 5.0 and dev.failed
    dev.submit(5.0 + CONNECT + 1e-9, 0, 4096, True)
    assert not dev.failed


def test_a_loss_on_an_idle_connection_is_found_by_the_next_request():
    # the server restarted while nothing was in flight; the next request's
    # send or reply fails then, even long after the server is back
    from fleecesim.faults import Outage
    dev = _device([Outage(1.0, 2.0)], reconnect_delay=5)
    free = _device([])
    end = dev.submit(10.0, 0, 4096, True)
    assert not dev.failed
    assert end == pytest.approx(free.submit(10.0, 0, 4096, True) + CONNECT, abs=1e-9)
    dev = _device([Outage(1.0, 2.0)])  # reconnect-delay 0: that request fails
    assert dev.submit(10.0, 0, 4096, True) == 10.0 and dev.failed


def test_a_silent_loss_shorter_than_tcps_patience_loses_nothing():
    # no RST: TCP retransmits at 0.2, 0.6, 1.4, ... 25.4 s after the loss; the
    # connection survives a 20 s partition even with reconnect-delay 0
    from fleecesim.faults import tcp_retransmits
    t = tcp_retransmits()
    assert t[-1] == pytest.approx(924.6)  # ip-sysctl.rst, tcp_retries2 = 15
    s = run(**IDLE, **{"faults.target": outage("0.1s", 20, silent=True)})
    base = run(**IDLE)["backup_duration_s"]
    assert s["backup_outcome"] == "complete" and s["target_errors"] == 0
    back = next(x for x in t if x >= 20)
    assert back == pytest.approx(25.4)
    assert s["backup_duration_s"] - base == pytest.approx(back, abs=1e-3)
    assert any("connection survived" in e for e in s["events"])


def test_a_silent_loss_is_detected_when_tcp_gives_up():
    # detect: TCP gives up 15 s after the first unanswered request; the
    # client then reconnects with its backoff, the network back at 40 s: the
    # SYN sent at 0, 1, 3, ... 63 s after the attempt gets through
    s = run(**IDLE, **WAIT, **{"faults.target": outage("0.1s", 40, detect="15s")})
    assert s["backup_outcome"] == "failed"  # 15 + 30 s of delay: the SYN at 15 + 31 > 45
    failed = s["backup_duration_s"] - 0.1
    assert failed == pytest.approx(15 + 30, abs=1e-9)
    s = run(**IDLE, **WAIT, **{"faults.target": outage("0.1s", 29.5, detect="15s")})
    base = run(**IDLE)["backup_duration_s"]
    assert s["backup_outcome"] == "complete" and s["target_errors"] == 0
    # detected at 15 s, the attempt's SYNs at 15 + 0, 1, 3, 7, 15: 30 s gets through
    assert s["backup_duration_s"] - base == pytest.approx(30 + CONNECT, abs=1e-3)


@pytest.mark.parametrize("timeout, outcome", [(0, "failed"), (5, "complete"), (2, "failed")])
def test_open_timeout_decides_an_outage_at_the_start(timeout, outcome):
    # nbd_open: open-timeout 0 = one attempt; else the backoff until it runs out
    s = run(**IDLE, **{"devices.target.open-timeout": timeout,
                       "faults.target": outage(0, 2.5)})
    assert s["backup_outcome"] == outcome
    if outcome == "complete":
        base = run(**IDLE)["backup_duration_s"]
        assert s["backup_duration_s"] - base == pytest.approx(3.0 + 2 * RTT + CONNECT,
                                                              abs=1e-3)
    else:
        # open-timeout 0: the job's first write fails at once (after the
        # workers' first reads); else it waits for the open until that fails
        if timeout:
            assert s["backup_duration_s"] == pytest.approx(timeout, abs=1e-9)
        else:
            assert s["backup_duration_s"] < 0.1
        assert s["target_write_bytes"] == 0 and s["target_errors"] > 0
        assert any("open failed" in e for e in s["events"])


def test_slow_target_costs_the_work_it_could_not_do():
    base = run(**IDLE)["backup_duration_s"]
    w, f = 0.2, 4
    s = run(**IDLE, **{"faults.target": [{"kind": "slow", "at": "0.1s", "duration": w,
                                          "factor": f}]})
    assert s["backup_duration_s"] == pytest.approx(base + w * (1 - 1 / f), abs=1e-9)
    assert s["oracle_ok"]


@pytest.mark.parametrize("fault", [outage("0.2s", "2s"),
                                   [{"kind": "reset", "at": "0.2s"}]])
def test_a_failed_target_fails_the_job_and_the_target_holds_nothing_wrong(fault):
    # blockdev-backup's on-target-error defaults to report: the job ends with the error
    s = run(**IDLE, **{"faults.target": fault})
    assert s["backup_outcome"] == "failed" and not s["oracle_ok"] and s["backup_failed"]
    assert s["target_errors"] > 0 and s["oracle_violations"] > 0
    assert s["target_wrong_clusters"] == 0 and s["clusters_copied_twice"] == 0
    # the job fails when its first error comes back: 0.2 s into the backup
    assert s["backup_duration_s"] == pytest.approx(0.2, abs=1e-9)
    assert any("on-target-error=report" in e for e in s["events"])


def test_a_fault_after_the_backup_changes_nothing():
    base = run(**IDLE)
    s = run(**IDLE, **{"faults.target": outage("5s", "1s")})
    assert s["backup_duration_s"] == base["backup_duration_s"] and s["oracle_ok"]


def test_outage_stalls_guest_writes_only_where_cbw_goes_to_the_target():
    # backup: CBW copies to the target, so a guest write waits out the outage
    # (blockdev-backup's filter has no cbw-timeout); fleecing: CBW is local
    over = {**WRITER, "devices.target.reconnect-delay": "100s",
            "faults.target": outage("0.2s", "70s")}
    direct = run(**over, **{"backup.scheme": "backup"})
    fleece = run(**over)
    # the reconnect comes at the attempt at +79 s (0, 1, 3, ... 63, 79)
    assert direct["longest_stall_s"] >= 78.5
    # issued before the reconnect: it waited for the target (its own CBW
    # copy, or queued behind the job's copies there)
    assert 0.5 <= direct["longest_stall_at_s"] <= 0.5 + 0.2 + 79.1
    assert direct["guest_requests_over_60s"] > 0 and direct["guest_requests_over_1s"] > 0
    assert fleece["longest_stall_s"] < 0.1 and fleece["guest_requests_over_1s"] == 0
    for s in (direct, fleece):
        assert s["backup_outcome"] == "complete" and s["oracle_ok"]
        assert s["guest_requests_unfinished"] == 0


def test_failed_cbw_to_the_target_fails_the_guest_write():
    # blockdev-backup's filter: on-cbw-error's default break-guest-write
    s = run(**WRITER, **{"backup.scheme": "backup", "faults.target": outage("0.2s", "1s")})
    assert s["writes_failed"] > 0 and s["writes_failed"] == s["guest_errors"]
    assert s["backup_outcome"] == "failed" and s["target_wrong_clusters"] == 0
    assert any("on-cbw-error=break-guest-write" in e for e in s["events"])


def test_fleecing_device_full_follows_on_cbw_error():
    full = {**WRITER, "faults.fleecing-device.free": "1MiB"}
    # break-guest-write with werror=report: the guest is told, the backup is good
    # (the default werror=enospc stops the VM instead: tests/test_error_policy.py)
    s = run(**full, **{"guest.werror": "report"})
    assert s["cache_full_errors"] > 0 and s["guest_errors"] == s["writes_failed"] > 0
    assert s["backup_outcome"] == "complete" and s["oracle_ok"]
    assert s["fleecing_peak_bytes"] <= 2**20
    s = run(**full, **{"backup.on-cbw-error": "break-snapshot"})
    assert s["backup_outcome"] == "snapshot-broken" and not s["oracle_ok"]
    assert s["guest_errors"] == 0 and s["target_wrong_clusters"] == 0
    assert [e.split(" ", 1)[1].split(" (")[0] for e in s["events"]] == [
        "fleecing image full", "snapshot broken"]


@pytest.mark.parametrize("T", [0.05, 0.1])
def test_thin_volume_delays_the_first_write_beyond_each_extent_by_the_extension(T):
    # 8 MiB extents fill in ~0.45 s at 300 new 64 KiB clusters a second, longer
    # than an extension: each extension ends before the next is needed, so the
    # write that asked for it waits exactly T (plus its own I/O), and no write
    # waits longer. A 10 MiB/s target keeps the backup going ~6 s.
    E = 8 * 2**20
    cfg = small(**WRITER, **{"faults.fleecing-device.thin": {"extent": E, "extend-time": T},
                             "devices.target.link-bandwidth": "10MiB/s"})
    res = simulate(cfg)
    s, r = res.summary, res.requests
    assert s.get("error") is None, s.get("traceback")
    assert s["backup_outcome"] == "complete" and s["oracle_ok"] and s["guest_errors"] == 0
    k = s["thin_extensions"]
    assert k >= 3
    # the image starts with one extent and grows only when a write needs room
    need = math.ceil(s["local_write_bytes"] / E) - 1
    assert need <= k <= need + 1
    ext = [e for e in s["events"] if "extended" in e]
    assert len(ext) == k and all(f"took {T:g}s" in e for e in ext)
    w = r[(r.op == "write") & (r.phase == "backup")]
    assert w.latency.max() == pytest.approx(T, abs=0.002)
    assert (w.latency > T * 0.99).sum() >= k - 1  # one first-writer per extension


def test_thin_extension_times_are_seeded_and_in_range():
    over = {**WRITER, "faults.fleecing-device.thin": {"extent": "1MiB",
                                                      "extend-time": ["0.1s", "0.3s"]}}
    a, b = run(**over), run(**over)
    assert a["events"] == b["events"]
    took = [float(e.rsplit("took ", 1)[1].rstrip("s)")) for e in a["events"] if "took" in e]
    assert took and all(0.1 <= x <= 0.3 for x in took)


def test_thin_with_cbw_timeout_breaks_the_snapshot_at_the_timeout():
    s = run(**WRITER, **{"faults.fleecing-device.thin": {"extent": "1MiB",
                                                         "extend-time": "0.5s"},
                         "backup.cbw-timeout": "0.2s", "backup.on-cbw-error": "break-snapshot"})
    assert s["backup_outcome"] == "snapshot-broken" and s["cbw_timeouts"] > 0
    assert s["longest_stall_s"] == pytest.approx(0.2, abs=0.01)  # no write waits longer
    broke = next(float(e.split("s ", 1)[0]) for e in s["events"] if "snapshot broken" in e)
    first_wait = next(float(e.split("s ", 1)[0]) for e in s["events"]
                      if "extension requested" in e)
    assert broke == pytest.approx(first_wait + 0.2, abs=1e-3)


def test_deadline_counts_and_longest_stall():
    t = np.array([0.0, 1.0, 2.0, 3.0, 4.0])
    lat = np.array([0.5, 31.0, 61.0, 121.0, 2.0], dtype=np.float32)
    d = deadline_stats(t, lat, t0=1.0, t_end=3.5)
    assert [d[f"guest_requests_over_{x}s"] for x in (1, 30, 60, 120)] == [3, 3, 2, 1]
    assert [d[f"guest_requests_over_{x}s_overall"] for x in (1, 30, 60, 120)] == [4, 3, 2, 1]
    assert d["longest_stall_s"] == 121.0 and d["longest_stall_at_s"] == 3.0
    d = deadline_stats(t, lat, t0=10.0, t_end=11.0)
    assert math.isnan(d["longest_stall_s"]) and d["guest_requests_over_1s"] == 0


@pytest.mark.parametrize("over,key", [
    ({"faults.target": [{"kind": "outage", "at": "1s"}]}, "faults.target[0]"),
    ({"faults.target": [{"kind": "slow", "at": "1s", "duration": "1s", "factor": 0.5}]},
     "faults.target[0]"),
    ({"faults.target": [{"kind": "reset", "at": "-1s"}]}, "faults.target[0]"),
    ({"faults.target": [{"kind": "flood", "at": "1s"}]}, "faults.target[0].kind"),
    ({"faults.target": outage("1s", "2s") + outage("2s", "1s")}, "faults.target[1].at"),
    ({"faults.target": outage("1s", "2s", requests="wait")}, "faults.target[0]"),
    ({"faults.target": [{"kind": "reset", "at": "1s", "silent": True}]}, "faults.target[0]"),
    ({"faults.target": outage("1s", "2s", detect="0s")}, "faults.target[0]"),
    ({"devices.target.reconnect-delay": "2.5s"}, "devices.target"),
    ({"devices.target.open-timeout": "-1s"}, "devices.target"),
    ({"devices.local.reconnect-delay": "30s"}, "devices.local"),
    ({"faults.target": outage("1s", "2s"), "devices.target": {"preset": "sata-ssd"}},
     "faults.target[0].kind"),
    ({"faults.target": outage("1s", "2s"), "backup.scheme": "fleecing-pull"}, "faults.target"),
    ({"faults.fleecing-device.free": "1KiB"}, "faults.fleecing-device.free"),
    ({"faults.fleecing-device.free": "1MiB", "backup.scheme": "backup"},
     "faults.fleecing-device"),
    ({"faults.fleecing-device.thin": {"extend-time": ["3s", "1s"]}},
     "faults.fleecing-device.thin.extend-time"),
    ({"faults.fleecing-device.thin": {"size": "1GiB"}}, "faults.fleecing-device.thin.size"),
])
def test_bad_faults_are_one_line_naming_the_key(over, key):
    with pytest.raises(ConfigError) as e:
        small(**over)
    msg = str(e.value)
    assert msg.startswith(key) and "\n" not in msg, msg


def test_faults_round_trip_through_the_resolved_config():
    c = small(**{"faults.target": outage("1s", "2s"),
                 "faults.fleecing-device.thin": {"extent": "1MiB"}})
    again = resolve(c.dump())
    assert again.faults == c.faults
    assert again.faults.target[0].silent is False and again.faults.target[0].detect is None
    assert again.faults.fleecing_device.thin.extend_time == (2.2, 6.2)
    c = small(**{"faults.target": outage("1s", "2s", detect="15s"),
                 "devices.target.reconnect-delay": "30s"})
    again = resolve(c.dump())
    assert again.faults == c.faults and again.faults.target[0].silent
    assert again.devices["target"].reconnect_delay == 30.0


def test_a_reset_with_reconnect_delay_costs_one_handshake():
    # the server is up: the connect thread's first attempt, made at once,
    # succeeds; the requests that saw the reset are rerun, nothing fails
    base = run(**IDLE)["backup_duration_s"]
    s = run(**IDLE, **WAIT, **{"faults.target": [{"kind": "reset", "at": "0.1s"}]})
    assert s["backup_outcome"] == "complete" and s["target_errors"] == 0
    assert s["backup_duration_s"] - base == pytest.approx(CONNECT, abs=1e-6)


def test_a_fault_after_the_backup_ended_is_said_to_have_never_acted():
    """A fault scheduled after the backup's end was accepted and silently never
    fired; the summary now warns, naming the fault and when the backup ended."""
    late = small(**{"faults.target": [{"kind": "slow", "at": "500s", "duration": "5s",
                                       "factor": 2}]})
    s = simulate(late).summary
    assert s["backup_outcome"] == "complete"
    warn = [w for w in s["warnings"] if "never acted" in w]
    assert len(warn) == 1 and warn[0].startswith("faults.target[0] (slow at 500s) never acted")
    assert f"ended at {s['backup_duration_s']:.4g}s" in warn[0]
    # a fault inside the backup acts and is not warned about
    early = small(**{"faults.target": [{"kind": "slow", "at": "0.1s", "duration": "0.5s",
                                        "factor": 2}]})
    e = simulate(early).summary
    assert not [w for w in e["warnings"] if "never acted" in w]
    assert e["backup_duration_s"] > s["backup_duration_s"]
