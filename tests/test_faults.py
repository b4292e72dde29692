"""Faults (issue 13 item 3): closed forms and QEMU's policies.

An idle guest's backup is a deterministic stream of target writes, so a
target whose clock stops for d seconds ends exactly d later, and one that runs
f times slower for w seconds loses w (1 - 1/f) seconds of work.
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


def outage(at, d, requests="wait"):
    return [{"kind": "outage", "at": at, "duration": d, "requests": requests}]


@pytest.mark.parametrize("scheme", ["fleecing-push", "backup", "legacy-backup"])
@pytest.mark.parametrize("at", ["0.1s", "0.1001s", "0.33s"])
def test_outage_with_waiting_requests_lengthens_an_idle_backup_by_its_duration(scheme, at):
    # Exactly d when the job is waiting on the target as the outage begins;
    # if a worker is reading its next chunk from the (healthy) local disk then,
    # that read overlaps the outage: d minus at most one chunk's local read.
    base = run(**IDLE, **{"backup.scheme": scheme})
    for d in (0.5, 3.0):
        s = run(**IDLE, **{"backup.scheme": scheme, "faults.target": outage(at, d)})
        gained = base["backup_duration_s"] + d - s["backup_duration_s"]
        assert -1e-9 <= gained <= 1e-3  # 1 MiB read from the NVMe: ~0.5 ms
        assert s["backup_outcome"] == "complete" and s["oracle_ok"]
        assert s["target_errors"] == 0
        assert any("target down" in e for e in s["events"])


def test_slow_target_costs_the_work_it_could_not_do():
    base = run(**IDLE)["backup_duration_s"]
    w, f = 0.2, 4
    s = run(**IDLE, **{"faults.target": [{"kind": "slow", "at": "0.1s", "duration": w,
                                          "factor": f}]})
    assert s["backup_duration_s"] == pytest.approx(base + w * (1 - 1 / f), abs=1e-9)
    assert s["oracle_ok"]


@pytest.mark.parametrize("fault", [outage("0.2s", "2s", "fail"),
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
    s = run(**IDLE, **{"faults.target": outage("5s", "1s", "fail")})
    assert s["backup_duration_s"] == base["backup_duration_s"] and s["oracle_ok"]


def test_outage_stalls_guest_writes_only_where_cbw_goes_to_the_target():
    # backup: CBW copies to the target, so a guest write waits out the outage
    # (blockdev-backup's filter has no cbw-timeout); fleecing: CBW is local
    over = {**WRITER, "faults.target": outage("0.2s", "70s")}
    direct = run(**over, **{"backup.scheme": "backup"})
    fleece = run(**over)
    assert direct["longest_stall_s"] >= 69.5
    # issued before the outage ended: it waited for the target (its own CBW
    # copy, or queued behind the job's copies there)
    assert 0.5 <= direct["longest_stall_at_s"] <= 0.5 + 0.2 + 70
    assert direct["guest_requests_over_60s"] > 0 and direct["guest_requests_over_1s"] > 0
    assert fleece["longest_stall_s"] < 0.1 and fleece["guest_requests_over_1s"] == 0
    for s in (direct, fleece):
        assert s["backup_outcome"] == "complete" and s["oracle_ok"]
        assert s["guest_requests_unfinished"] == 0


def test_failed_cbw_to_the_target_fails_the_guest_write():
    # blockdev-backup's filter: on-cbw-error's default break-guest-write
    s = run(**WRITER, **{"backup.scheme": "backup", "faults.target": outage("0.2s", "1s", "fail")})
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
    assert again.faults.target[0].requests == "wait"
    assert again.faults.fleecing_device.thin.extend_time == (2.2, 6.2)
