"""fleecing-push-2018: the seed's "two backups, one with sync=none" push."""
import pytest

from fleecesim.run import simulate
from tests.conftest import small


def busy(scheme, seed=1, **kw):
    o = {"disk.size": "64MiB", "disk.allocated": 0.7, "backup.scheme": scheme,
         "workload.iops": 3000, "workload.mix": {"read": 0.4, "write": 0.5, "discard": 0.1},
         "workload.size": {"4KiB": 0.6, "64KiB": 0.3, "256KiB": 0.1},
         "workload.pattern": "zipf", "run.seed": seed, "run.warmup": "0.2s"}
    o.update(kw)
    return small(**o)


def test_push_2018_yields_the_t0_image_under_a_busy_guest():
    for seed in range(1, 6):
        s = simulate(busy("fleecing-push-2018", seed)).summary
        assert s.get("error") is None, s.get("traceback")
        assert s["oracle_ok"], (seed, s["oracle_violations"])
        assert s["clusters_copied_twice"] == 0 and s["clusters_copied_outside_mask"] == 0
        assert s["cbw_count"] > 0 and s["local_write_bytes"] > 0


def test_push_2018_guest_writes_wait_for_the_remote_target_like_legacy():
    """Job 2's write notifier sits on the scratch image that job 1 writes: a CBW
    of a cluster job 2 has not copied yet first goes to the remote target, so
    the local cache does not decouple the guest from the target's speed
    (unlike fleecing-push), and the same engine as legacy-backup copies."""
    def p99(scheme, bw):
        s = simulate(busy(scheme, **{"devices.target.link-bandwidth": bw})).summary
        assert s["oracle_ok"]
        return s
    slow, fast = "20MiB/s", "1GiB/s"
    old_slow, old_fast = p99("fleecing-push-2018", slow), p99("fleecing-push-2018", fast)
    new_slow, new_fast = p99("fleecing-push", slow), p99("fleecing-push", fast)
    leg_slow = p99("legacy-backup", slow)
    assert old_slow["write_p99_s"] > 5 * old_fast["write_p99_s"]
    assert new_slow["write_p99_s"] < 2 * new_fast["write_p99_s"]
    assert old_slow["write_p99_s"] > 10 * new_slow["write_p99_s"]
    assert old_slow["write_p99_s"] == pytest.approx(leg_slow["write_p99_s"], rel=0.5)
    # same engine, same clusters: as long as legacy-backup
    assert old_slow["backup_duration_s"] == pytest.approx(leg_slow["backup_duration_s"],
                                                          rel=0.1)


def test_push_2018_saves_overwritten_clusters_even_after_the_job_copied_them():
    """Job 1 (sync=none) has no bitmap: every first overwrite of a cluster during
    the backup is saved locally, also of clusters job 2 already sent; the
    modern CBW filter saves only clusters still needed."""
    for seed in (1, 2):
        old = simulate(busy("fleecing-push-2018", seed)).summary
        new = simulate(busy("fleecing-push", seed)).summary
        assert old["oracle_ok"] and new["oracle_ok"]
        assert old["target_write_bytes"] == new["target_write_bytes"]
        assert old["local_write_bytes"] > new["local_write_bytes"]
        # ... and never read back: job 2's notifier sent every cluster job 1 saves
        # to the target before the save, so job 2 never needs the scratch image
        assert old["local_read_bytes"] == 0 and new["local_read_bytes"] > 0


@pytest.mark.parametrize("fast_path", [True, False])
def test_push_2018_remote_waits_are_attributed_to_the_target_write(fast_path):
    """The guest's wait for job 2's notifier (a copy to the remote target) is
    ``target_write``, not a write to the local scratch image: on a slow target
    it is most of the CBW time, and it grows with the remote's slowness while
    the scratch-image part does not. The components still add up (moved, not
    added: the total is the same with either label)."""
    def att(bw):
        r = simulate(busy("fleecing-push-2018", **{"devices.target.link-bandwidth": bw}),
                     analytic=fast_path)
        w = r.requests[(r.requests["op"] == "write") & (r.requests["phase"] == "backup")]
        a = r.summary["write_attribution_s"]
        assert sum(a.values()) == pytest.approx(float(w["latency"].astype("f8").mean()),
                                                rel=1e-5)
        return a
    slow, fast = att("20MiB/s"), att("1GiB/s")
    assert slow["target_write"] > 20 * slow["cache_write"]
    assert slow["target_write"] > 50 * fast["target_write"]
    assert fast["target_write"] > 0  # the notifier copies to the remote at any speed
