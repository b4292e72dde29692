"""The guest's and the backup job's error policies (fleecesim/error_policy.py):
werror/rerror and on-source-error/on-target-error, as QEMU's block backend
and backup job define them."""
import math
from pathlib import Path

import numpy as np
import pytest

from fleecesim.config import ConfigError, load_config, variants
from fleecesim.error_policy import EIO, ENOSPC, action
from fleecesim.faults import BACKOFF_FIRST, BACKOFF_MAX, CONNECT_RTTS
from fleecesim.run import make_source, simulate
from tests.conftest import small
from tests.test_engine_equivalence import assert_same

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
WRITER = {"workload.iops": 400, "workload.mix": {"read": 0.2, "write": 0.8}}


def target_outage(at: str, duration: str) -> list:
    """The one place the target-outage fault is spelled: an NBD target whose
    server is down for ``duration`` from ``at`` after t0; with the NBD
    client's reconnect-delay at QEMU's default 0 its requests fail at once
    (EIO) until the client has reconnected (faults.py: 1, 2, 4 ... s apart)."""
    return [{"kind": "outage", "at": at, "duration": duration}]


def run(cfg, **kw):
    s = simulate(cfg, **kw).summary
    assert s.get("error") is None, s.get("traceback")
    return s


def _event_time(s, text) -> float:
    return next(float(e.split("s ", 1)[0]) for e in s["events"] if text in e)


def _faults_variant(name, *over):
    cfg = load_config(CONFIGS / "faults.yaml", list(over))
    return dict(variants(cfg))[name]


def _arrivals(cfg, lo, hi) -> int:
    """Guest arrivals in [lo, hi] of the config's own request stream."""
    n = 0
    for chunk in make_source(cfg):  # an open-loop stream never ends by itself
        t = chunk["time"]
        n += int(((t >= lo) & (t <= hi)).sum())
        if t.size == 0 or t[-1] > hi:
            break
    return n


def test_action_table_is_qemus():
    # blk_get_error_action / block_job_error_action
    assert action("enospc", ENOSPC) == "stop" and action("enospc", EIO) == "report"
    for pol in ("report", "ignore", "stop"):
        assert action(pol, ENOSPC) == action(pol, EIO) == pol


# ---------------------------------------------------------------- the guest
def test_bundled_cache_full_case_pauses_the_vm_by_default():
    cfg = _faults_variant("cache-full-guest")
    s = run(cfg)
    stop = _event_time(s, "BLOCK_IO_ERROR (write, ENOSPC): werror=enospc -> stop")
    assert s["vm_stops"] == 1 and s["vm_paused_at_end"]  # resume-after: never
    assert s["vm_paused_s"] == pytest.approx(s["sim_time_s"] - stop, abs=1e-6)  # log: µs
    assert s["writes_failed"] == 0 and s["guest_errors"] >= 1
    # every arrival from the stop to the end of the run is held (none issued)
    assert s["guest_requests_held"] == _arrivals(cfg, stop, s["sim_time_s"])
    # and each of them counts with the age it reached
    assert s["longest_stall_overall_s"] == pytest.approx(s["sim_time_s"] - stop, abs=1e-3)
    # (and the write that failed, held since before the stop)
    assert s["guest_requests_over_1s_overall"] == \
        _arrivals(cfg, stop, s["sim_time_s"] - 1) + s["guest_requests_awaiting_cont"]
    # the job does not stop with the VM: the backup is the t0 image
    assert s["backup_outcome"] == "complete" and s["oracle_ok"]


def test_bundled_cache_full_case_with_werror_report_fails_the_writes():
    s = run(_faults_variant("cache-full-guest", "guest.werror=report"))
    assert s["vm_stops"] == 0 and s["vm_paused_s"] == 0
    assert s["writes_failed"] > 0 and s["writes_failed"] == s["guest_errors"]
    assert s["backup_outcome"] == "complete" and s["oracle_ok"]


def test_resumed_vm_retries_and_every_request_completes():
    R = 0.5
    # a tail longer than R: a stop in the backup's last moments has its cont
    cfg = small(**WRITER, **{"faults.fleecing-device.free": "1MiB", "guest.resume-after": R,
                             "run.tail": "1s"})
    s = run(cfg)
    assert s["vm_stops"] >= 1 and not s["vm_paused_at_end"]
    # every stop lasted exactly resume-after
    assert s["vm_paused_s"] == pytest.approx(s["vm_stops"] * R, rel=1e-9)
    assert s["guest_requests_retried"] >= s["vm_stops"] and s["guest_requests_held"] > 0
    assert s["guest_requests_unfinished"] == 0 and s["guest_requests_awaiting_cont"] == 0
    assert s["writes_failed"] == 0
    # a held request waited at least until cont
    assert s["longest_stall_s"] >= R
    assert s["guest_errors"] == s["guest_requests_retried"]
    assert s["backup_outcome"] == "complete" and s["oracle_ok"]
    stops = [e for e in s["events"] if "the VM pauses" in e]
    conts = [e for e in s["events"] if e.split(" ", 1)[1].startswith("cont after")]
    assert len(stops) == len(conts) == s["vm_stops"]


def test_werror_ignore_tells_the_guest_it_succeeded():
    base = {**WRITER, "faults.fleecing-device.free": "1MiB"}
    rep = run(small(**base, **{"guest.werror": "report"}))
    ign = run(small(**base, **{"guest.werror": "ignore"}))
    # the same requests fail, at the same times: only what the guest is told differs
    assert ign["errors_ignored"] == rep["writes_failed"] > 0
    assert ign["writes_failed"] == 0 and ign["vm_stops"] == 0
    # the ignored writes never reached the disk, so their clusters keep their
    # t0 content and bit, and the job copies them: the backup is still t0
    assert ign["oracle_ok"] and ign["target_wrong_clusters"] == 0


def test_werror_enospc_reports_eio_stop_stops_on_it():
    # blockdev-backup's filter copies before write to the target: a target
    # that is down fails the guest write with EIO
    over = {**WRITER, "backup.scheme": "backup", "faults.target": target_outage("0.2s", "1s")}
    s = run(small(**over))
    assert s["vm_stops"] == 0 and s["writes_failed"] > 0  # EIO: not ENOSPC
    s = run(small(**over, **{"guest.werror": "stop", "guest.resume-after": "2s"}))
    assert s["vm_stops"] >= 1 and s["writes_failed"] == 0
    assert any("BLOCK_IO_ERROR (write, EIO): werror=stop" in e for e in s["events"])


def test_cbw_timeout_is_etimedout_not_enospc():
    # a thin volume slower to grow than cbw-timeout: the CBW gives up
    # (-ETIMEDOUT), so werror=enospc reports it
    over = {**WRITER, "faults.fleecing-device.thin": {"extent": "1MiB", "extend-time": "0.5s"},
            "backup.cbw-timeout": "0.1s"}
    s = run(small(**over))
    assert s["cbw_timeouts"] > 0 and s["vm_stops"] == 0 and s["writes_failed"] > 0


def test_closed_loop_guest_waits_while_stopped():
    cfg = small(**{"workload.iops": None, "workload.iodepth": 4,
                   "workload.mix": {"read": 0.2, "write": 0.8},
                   "faults.fleecing-device.free": "1MiB", "guest.resume-after": "0.3s"})
    s = run(cfg)
    assert s["vm_stops"] >= 1 and s["guest_requests_held"] == 0  # nothing arrives: it waits
    assert s["guest_requests_unfinished"] == 0 and s["oracle_ok"]


# ---------------------------------------------------------------- the job
OUTAGE_AT, OUTAGE = 1.0, 2.5


def _job(policy, resume="never", scheme="fleecing-push", **kw):
    return small(**{"backup.scheme": scheme, "workload.iops": 300,
                    "devices.target.link-bandwidth": "20MiB/s",
                    "faults.target": target_outage(f"{OUTAGE_AT}s", f"{OUTAGE}s"),
                    "backup.on-target-error": policy, "backup.resume-after": resume, **kw})


def test_on_target_error_stop_pauses_resumes_and_completes():
    R = 1.0
    s = run(_job("stop", f"{R}s"))
    assert s["backup_outcome"] == "complete" and s["oracle_ok"]
    assert s["clusters_copied_twice"] == 0
    # each resume before the NBD client has reconnected fails at once and stops
    # again. The client's connect thread tries at the loss and then 1, 2, 4 ...
    # s apart (faults.py); the first try after the server is back at OUTAGE
    # succeeds, plus the handshake's round trips: the stops are the resumes
    # i*R (i = 0, 1, ...) after the loss before that.
    tries = [0.0]
    while tries[-1] < OUTAGE:
        tries.append(tries[-1] + min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** (len(tries) - 1)))
    back = tries[-1] + CONNECT_RTTS * 0.2e-3  # the small() target: nbd-1gbe, rtt 0.2 ms
    k = math.floor(back / R) + 1
    assert back == pytest.approx(3.001) and k == 4
    assert s["job_stops"] == s["job_errors"] == k
    assert s["job_paused_s"] == pytest.approx(k * R, rel=1e-9)
    assert not s["job_paused_at_end"]
    ok = run(small(**{"backup.scheme": "fleecing-push", "workload.iops": 300,
                      "devices.target.link-bandwidth": "20MiB/s"}))
    # nothing moves while paused
    assert s["backup_duration_s"] >= ok["backup_duration_s"] + (k - 1) * R
    kinds = [e.split(" ", 1)[1].split(":")[0] for e in s["events"]
             if "BLOCK_JOB_ERROR" in e or "block-job-resume" in e]
    assert kinds == ["BLOCK_JOB_ERROR (write, EIO)", "block-job-resume after 1s"] * k


def test_on_target_error_stop_never_resumed_ends_paused():
    s = run(_job("stop"))
    assert s["backup_outcome"] == "unfinished" and not s["oracle_ok"]
    assert s["job_paused_at_end"] and s["job_stops"] == 1
    assert s["target_wrong_clusters"] == 0


def test_on_target_error_ignore_retries_through_the_outage():
    s = run(_job("ignore"))
    assert s["backup_outcome"] == "complete" and s["oracle_ok"]
    assert s["job_stops"] == 0 and s["job_errors"] > 1
    # a round fails once all its tasks ended (block_copy_dirty_clusters waits
    # for the task pool): the round begun before the target came back ends
    # when its queued writes have drained, and the next one, begun once the
    # server is back (the NBD client's reconnect is then under way), does not fail
    back = _event_time(s, "NBD server reachable again")
    assert _event_time(s, "backup job copying again") >= back
    assert s["clusters_copied_twice"] == 0


def test_on_target_error_enospc_is_report_for_eio():
    # every job error in the model is EIO (target) or EACCES (snapshot), so
    # enospc reports them all: the same run as report
    a, b = run(_job("enospc")), run(_job("report"))
    assert a["backup_outcome"] == "failed"
    for k in ("backup_end_s", "job_errors", "target_errors", "writes_cbw", "guest_ios"):
        assert a[k] == b[k], k


def test_backup_scheme_target_error_fails_guest_writes_while_the_job_waits():
    # scheme backup: the copy-before-write goes to the target too and has no
    # job policy (on-cbw-error break-guest-write): EIO reaches the guest
    s = run(_job("stop", "1s", scheme="backup", **{"workload.mix": {"read": 0.2, "write": 0.8}}))
    assert s["backup_outcome"] == "complete" and s["oracle_ok"]
    assert s["writes_failed"] > 0 and s["job_stops"] >= 1


def test_broken_snapshot_with_on_source_error_ignore_ends():
    s = run(small(**WRITER, **{"faults.fleecing-device.free": "1MiB",
                               "backup.on-cbw-error": "break-snapshot",
                               "backup.on-source-error": "ignore"}))
    assert s["backup_outcome"] == "snapshot-broken"
    assert any("broken for good" in e for e in s["events"])


# ---------------------------------------------------------------- engines
@pytest.mark.parametrize("over", [
    {**WRITER, "faults.fleecing-device.free": "1MiB", "guest.resume-after": "0.5s"},
    {**WRITER, "faults.fleecing-device.free": "1MiB", "guest.werror": "ignore"},
    {"backup.scheme": "backup", **WRITER, "faults.target": target_outage("0.2s", "1s"),
     "guest.werror": "stop", "guest.resume-after": "0.4s",
     "backup.on-target-error": "stop", "backup.resume-after": "0.7s"},
    {"workload.iops": 300, "faults.target": target_outage("0.3s", "1s"),
     "backup.on-target-error": "ignore"},
])
def test_engines_agree_on_error_policies(over):
    cfg = small(**over)
    assert_same(run(cfg, analytic=True), run(cfg, analytic=False))


# ---------------------------------------------------------------- config
@pytest.mark.parametrize("key,value,msg", [
    ("guest.werror", "pause", "guest.werror"),
    ("guest.resume-after", "0s", "guest.resume-after"),
    ("guest.resume-after", "soon", "guest.resume-after"),
    ("backup.on-target-error", "retry", "backup.on-target-error"),
])
def test_bad_policy_values_name_the_key(key, value, msg):
    with pytest.raises(ConfigError) as e:
        small(**{key: value})
    assert msg in str(e.value)


def test_pull_client_has_no_job_policy():
    with pytest.raises(ConfigError) as e:
        small(**{"backup.scheme": "fleecing-pull", "backup.on-target-error": "stop"})
    assert "backup.on-target-error: not used by the 'fleecing-pull' scheme" in str(e.value)


def test_default_policies_dump_as_before():
    d = small().dump()
    assert "guest" not in d and "on-target-error" not in d["backup"]
    assert small(**{"guest.werror": "report"}).dump()["guest"]["werror"] == "report"


def test_broken_snapshot_with_on_source_error_stop_stays_paused():
    s = run(small(**WRITER, **{"faults.fleecing-device.free": "1MiB",
                               "backup.on-cbw-error": "break-snapshot",
                               "backup.on-source-error": "stop"}))
    assert s["backup_outcome"] == "snapshot-broken" and s["job_paused_at_end"]
    assert any("BLOCK_JOB_ERROR (read, EACCES): on-source-error=stop" in e for e in s["events"])


@pytest.mark.parametrize("over,key", [
    ({"guest.werror": "report", "guest.resume-after": "1s"}, "guest.resume-after"),
    ({"backup.resume-after": "1s"}, "backup.resume-after"),
    ({"backup.scheme": "backup", "backup.on-source-error": "stop"}, "backup.on-source-error"),
])
def test_options_that_would_do_nothing_are_refused(over, key):
    with pytest.raises(ConfigError) as e:
        small(**over)
    assert str(e.value).startswith(key) and "\n" not in str(e.value)
