"""Max Reitz's alternatives: overlay-commit and overlay-cor; and backup vs legacy."""
import pytest

from fleecesim.run import simulate
from tests.conftest import honoured, small

MiB = 2**20


def idle(scheme, **kw):
    o = {"disk.size": "256MiB", "disk.allocated": 0.75, "workload.iops": 0,
         "backup.scheme": scheme}
    o.update(kw)
    return small(**honoured(scheme, o))  # shared keys only where the scheme acts on them


def test_overlay_commit_moves_every_cluster_through_the_overlay():
    s = simulate(idle("overlay-commit")).summary
    f = simulate(idle("fleecing-push")).summary
    assert s["oracle_ok"] and f["oracle_ok"]
    data = s["target_write_bytes"]
    assert 0 < data < 256 * MiB
    assert s["local_write_bytes"] == data and s["local_read_bytes"] == data
    assert f["local_write_bytes"] == 0 and f["local_read_bytes"] == 0  # nothing overwritten
    # the commit runs alongside: it ends about when the link has carried the data
    assert s["backup_duration_s"] == pytest.approx(data / (112 * MiB), rel=0.03)


def busy(scheme, **kw):
    o = {"backup.scheme": scheme, "workload.iops": 2000,
         "workload.mix": {"read": 0.5, "write": 0.5}, "backup.max-workers": 4}
    o.update(kw)
    return small(**honoured(scheme, o))  # shared keys only where the scheme acts on them


def test_overlay_commit_guest_writes_wait_for_local_copies_only():
    oc = simulate(busy("overlay-commit")).summary
    bk = simulate(busy("backup")).summary
    assert oc["oracle_ok"] and bk["oracle_ok"]
    assert oc["cbw_count"] > 0 and bk["cbw_count"] > 0
    assert oc["write_p99_s"] < 0.2 * bk["write_p99_s"]


def test_overlay_cor_serves_guest_read_clusters_from_the_fast_overlay():
    # slow HDD source, fast NVMe overlay, zipf reads: clusters the guest read
    # are copied into the overlay, and the backup reads them from there
    kw = {"devices.slow": {"preset": "hdd-7200"}, "disk.device": "slow",
          "backup.overlay.device": "local", "workload.mix": {"read": 0.9, "write": 0.1},
          "workload.pattern": "zipf", "workload.iops": 30, "disk.size": "128MiB"}
    cor = simulate(busy("overlay-cor", **kw)).summary
    plain = simulate(busy("backup", **kw)).summary
    assert cor["oracle_ok"] and plain["oracle_ok"]
    assert cor["local_read_bytes"] > 0  # backup reads served by the overlay
    assert cor["source_read_bytes"] < plain["source_read_bytes"]
    assert cor["source_read_bytes"] + cor["local_read_bytes"] >= plain["source_read_bytes"]
    assert cor["local_write_bytes"] > 0  # COR fills + the commit afterwards


def test_overlay_cor_commits_and_drops_the_overlay():
    r = simulate(busy("overlay-cor"))
    s = r.summary
    assert s["oracle_ok"]
    tl = r.timeline
    ov = tl[tl.level == "overlay_bytes"]
    assert ov.value.max() > 0 and ov.value.iloc[-1] == 0
    # the guest wrote into the overlay during the backup: the commit wrote it back
    assert s["local_write_bytes"] >= s["guest_write_bytes_during_backup"] * 0.5


def test_modern_backup_beats_legacy_on_the_same_config():
    # a 2 ms RTT target: 2018's one cluster at a time pays it per cluster (guest
    # CBW copies run beside the job, so less than 4096 times)
    far = {"devices.target.rtt": "2ms"}
    new = simulate(busy("backup", **{"backup.max-workers": 64}, **far)).summary
    old = simulate(busy("legacy-backup", **far)).summary
    assert new["oracle_ok"] and old["oracle_ok"]
    assert new["backup_duration_s"] < 0.5 * old["backup_duration_s"]
    assert new["target_write_bytes"] == old["target_write_bytes"]


def test_overlay_cor_commit_converges_under_heavy_writes_only_when_write_blocking():
    """A guest rewriting the disk faster than the commit drains it: mirror's
    background copy-mode chases it forever; write-blocking always converges."""
    heavy = {"backup.scheme": "overlay-cor", "disk.size": "40MiB", "workload.iops": 20000,
             "workload.mix": {"read": 0.3, "write": 0.7}, "workload.pattern": "sequential",
             "workload.size": {"4KiB": 1, "128KiB": 1}, "backup.max-workers": 15,
             "devices.target.link-bandwidth": "1GiB/s", "run.max-time": "20s",
             "run.seed": 495}
    wb = simulate(small(**heavy, **{"backup.overlay.copy-mode": "write-blocking"})).summary
    bg = simulate(small(**heavy, **{"backup.overlay.copy-mode": "background"})).summary
    assert wb["backup_completed"] and wb["oracle_ok"]
    assert wb["backup_duration_s"] < 20
    assert not bg["backup_completed"] and bg["backup_duration_s"] == 20.0
