"""Property: in any small random scenario, every scheme yields the t0 image."""
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fleecesim.config import FLEECING_IMAGE_SCHEMES
from fleecesim.run import simulate
from tests.conftest import honoured, small

scenario = st.fixed_dictionaries({
    "disk.size": st.sampled_from(["16MiB", "40MiB", "64MiB"]),
    "backup.min-cluster-size": st.sampled_from([0, "128KiB", "1MiB"]),
    "backup.max-workers": st.integers(1, 16),
    "backup.max-chunk": st.sampled_from([0, "64KiB", "256KiB"]),
    "backup.scheme": st.sampled_from(["legacy-backup", "backup", "fleecing-push",
                                      "fleecing-pull", "fleecing-pull-2018", "overlay-cor",
                                      "overlay-commit", "fleecing-push-2018"]),
    "backup.overlay.copy-mode": st.sampled_from(["write-blocking", "background"]),
    "backup.order": st.sampled_from(["ascending", "ram-first", "zero-last", "hot-first"]),
    "backup.cache.ram.size": st.sampled_from([0, "1MiB", "8MiB"]),
    "backup.cache.cor": st.booleans(),
    "backup.discard-source": st.booleans(),
    "backup.client.discard": st.booleans(),
    "workload.iops": st.sampled_from([500, 3000, 20000]),
    "workload.mix": st.fixed_dictionaries({"read": st.floats(0, 1), "write": st.floats(0.1, 1),
                                           "discard": st.floats(0, 0.3)}),
    "workload.size": st.sampled_from(["4KiB", "64KiB", {"4KiB": 1, "128KiB": 1}]),
    "workload.pattern": st.sampled_from(["uniform", "sequential", "zipf"]),
    "disk.allocated": st.floats(0, 1),
    "devices.target.link-bandwidth": st.sampled_from(["20MiB/s", "112MiB/s", "1GiB/s"]),
    "run.seed": st.integers(0, 2**31),
    "backup.target.cluster-size": st.sampled_from(["64KiB", "64KiB", "1MiB"]),
    # fleecing schemes only (others reject them): the image's own granularity,
    # and a small fleecing image that fills up, under each on-cbw-error policy
    "fleecing": st.fixed_dictionaries({
        "backup.cache.cluster-size": st.sampled_from(["64KiB", "256KiB", "1MiB"]),
        "fault": st.sampled_from([None, None, "break-guest-write", "break-snapshot"]),
    }),
})


def chunk_at_least_a_cluster(over: dict) -> dict:
    """max-chunk below the job's cluster size is refused (as QEMU's
    backup_job_create does); a drawn one is raised to the cluster, which is
    what the model ran with before it was refused."""
    from fleecesim.units import parse_size
    chunk = parse_size(over.get("backup.max-chunk") or 0)
    cluster = max(64 * 1024, parse_size(over.get("backup.min-cluster-size") or 0),
                  parse_size(over.get("backup.target.cluster-size") or 0))
    if chunk and chunk < cluster:
        over = {**over, "backup.max-chunk": cluster}
    return over


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenario)
def test_oracle_holds_in_random_scenarios(over):
    over = honoured(over["backup.scheme"], chunk_at_least_a_cluster(over))  # keys it acts on
    if over["backup.scheme"].startswith("fleecing-pull"):
        over["backup.client.hints"] = "cache-tier"  # the client may follow any tier policy
        if over.get("backup.order") == "hot-first":  # no NBD client knows write counts
            over["backup.order"] = "ascending"
    over = dict(over)
    fl = over.pop("fleecing")
    fault = None
    if over["backup.scheme"] in FLEECING_IMAGE_SCHEMES:
        over["backup.cache.cluster-size"] = fl["backup.cache.cluster-size"]
    if over["backup.scheme"] in ("fleecing-push", "fleecing-pull") and fl["fault"]:
        fault = fl["fault"]
        over.update({"backup.on-cbw-error": fault, "backup.cache.size": "2MiB"})
    s = simulate(small(**over)).summary
    assert s.get("error") is None, s.get("traceback")
    # Safety, always: nothing on the target is anything but its t0 content, and
    # nothing was copied twice -- even when the run ended before the backup did.
    assert s["target_wrong_clusters"] == 0
    assert s["clusters_copied_twice"] == 0
    # Liveness, when the guest leaves the devices room (20k IOPS of 128 KiB
    # writes can saturate the local NVMe, and then nothing need finish).
    if over["workload.iops"] <= 3000 and fault is None:
        if s["commit_converged"] is False and over.get("backup.overlay.copy-mode") \
                == "background":
            # a faithful non-convergence (mirror's background mode: the guest
            # dirties the overlay faster than the commit drains it), said so
            assert any("not converged" in w for w in s["warnings"])
            assert s["backup_outcome"] == "unfinished" and not s["oracle_ok"]
        else:
            assert s["backup_completed"]
    if s["backup_completed"]:
        assert s["oracle_violations"] == 0 and s["oracle_ok"]
        # overlay schemes: the commit carried everything down (the active disk's
        # image holds the guest's latest data / the target holds the overlay's)
        assert s["commit_violations"] == 0
    # A broken snapshot is never a good backup.
    if s["snapshot_broken"]:
        assert not s["oracle_ok"] and not s["backup_completed"] and s["backup_failed"]
        assert s["backup_outcome"] == "snapshot-broken"


# --- faults (fleecesim/faults.py) ---------------------------------------------
fault_scenario = st.fixed_dictionaries({
    "backup.scheme": st.sampled_from(["backup", "legacy-backup", "fleecing-push"]),
    "workload.iops": st.sampled_from([0, 500, 3000]),
    "disk.size": st.sampled_from(["16MiB", "40MiB"]),
    "run.seed": st.integers(0, 2**31),
    "target": st.lists(st.fixed_dictionaries({
        "kind": st.sampled_from(["outage", "slow", "reset"]),
        "at": st.floats(0, 0.4), "duration": st.floats(0.01, 2)}), max_size=2),
    # the NBD client's reconnect-delay and open-timeout (0: requests fail)
    "reconnect": st.sampled_from([0, 30]),
    "free": st.sampled_from([None, "1MiB", "4MiB"]),
    "thin": st.sampled_from([None, {"extent": "1MiB", "extend-time": ["0.01s", "0.3s"]},
                             {"extent": "2MiB", "extend-time": "0.1s", "beyond": "fail"}]),
    "on-cbw-error": st.sampled_from(["break-guest-write", "break-snapshot"]),
    "cbw-timeout": st.sampled_from([0, "0.05s"]),
    # the error policies (fleecesim/error_policy.py)
    "guest.werror": st.sampled_from(["enospc", "report", "stop", "ignore"]),
    "guest.resume-after": st.sampled_from(["never", "0.3s"]),
    "backup.on-target-error": st.sampled_from(["report", "stop", "ignore", "enospc"]),
    "backup.resume-after": st.sampled_from(["never", "0.5s"]),
})


def _target_faults(ws):
    out, end = [], -1.0
    for w in sorted(ws, key=lambda w: w["at"]):
        if w["at"] <= end:  # windows may not overlap
            continue
        f = {"kind": w["kind"], "at": w["at"]}
        if w["kind"] == "outage":
            f.update(duration=w["duration"])
        elif w["kind"] == "slow":
            f.update(duration=w["duration"], factor=3)
        out.append(f)
        end = w["at"] + f.get("duration", 0)
    return out


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fault_scenario)
def test_faults_never_pass_off_a_bad_backup_as_good(f):
    over = {k: f[k] for k in ("backup.scheme", "workload.iops", "disk.size", "run.seed",
                              "guest.werror", "guest.resume-after", "backup.on-target-error",
                              "backup.resume-after")}
    # resume-after only with a policy that stops (else the config is refused)
    if over["backup.on-target-error"] in ("report", "ignore"):
        del over["backup.resume-after"]
    if over["guest.werror"] in ("report", "ignore"):
        del over["guest.resume-after"]
    over["faults.target"] = _target_faults(f["target"])
    over["devices.target.reconnect-delay"] = f["reconnect"]
    over["devices.target.open-timeout"] = f["reconnect"]
    if f["backup.scheme"] == "fleecing-push":
        over["faults.fleecing-device.free"] = f["free"]
        over["faults.fleecing-device.thin"] = f["thin"]
        over["backup.on-cbw-error"] = f["on-cbw-error"]
        over["backup.cbw-timeout"] = f["cbw-timeout"]
    s = simulate(small(**over)).summary
    assert s.get("error") is None, s.get("traceback")
    # Safety: whatever failed, the target holds only t0 content, copied once.
    assert s["target_wrong_clusters"] == 0 and s["clusters_copied_twice"] == 0
    # Nothing is lost silently: every failed guest write is counted and logged,
    # and ends reported, ignored (told it succeeded), or held by a stopped VM
    # (then resubmitted at cont, or still held when the run ended).
    assert s["writes_failed"] + s["errors_ignored"] + s["guest_requests_retried"] \
        + s["guest_requests_awaiting_cont"] == s["guest_errors"]
    assert (s["vm_stops"] > 0) == (s["guest_requests_retried"]
                                   + s["guest_requests_awaiting_cont"] > 0)
    if s["guest_errors"]:
        assert any("guest write failed" in e for e in s["events"])
    if s["target_errors"]:
        assert any("target request failed" in e for e in s["events"])
    # A good backup is the t0 image; anything else is not called one.
    if s["backup_completed"]:
        assert s["backup_outcome"] == "complete" and s["oracle_ok"]
        assert s["oracle_violations"] == 0
    else:
        assert not s["oracle_ok"]
        assert s["backup_outcome"] in ("failed", "snapshot-broken", "unfinished")
    if s["backup_outcome"] == "failed":
        assert any("backup job failed" in e for e in s["events"])
    if s["snapshot_broken"]:
        assert s["backup_outcome"] == "snapshot-broken" and not s["backup_completed"]
        assert any("snapshot broken" in e for e in s["events"])
    # Without a failing fault the backup completes (the guest leaves room).
    # (with reconnect-delay 30 s every outage here, at most 2 s, reconnects in time)
    failing = f["reconnect"] == 0 and any(w["kind"] != "slow" for w in over["faults.target"])
    if not failing and s["cbw_errors"] == 0 and f["workload.iops"] <= 3000:
        assert s["backup_completed"]
