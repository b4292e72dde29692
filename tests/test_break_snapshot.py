"""A broken snapshot is never a good backup.

QEMU: copy-before-write's on-cbw-error/cbw-timeout exist only on a filter the
user creates with blockdev-add (fleecing); blockdev-backup's internal filter
(bdrv_cbw_append) and 2018's write notifier always fail the guest write.
Once the snapshot breaks, every snapshot-access read fails (snapshot_error).
"""
import pytest

from fleecesim.cli import why_not_ok
from fleecesim.errors import ConfigError
from fleecesim.run import simulate
from fleecesim.schemes import SCHEMES, register
from tests.conftest import small

DIRECT = ["backup", "legacy-backup", "fleecing-pull-2018", "fleecing-push-2018", "overlay-cor",
          "overlay-commit"]


@pytest.mark.parametrize("scheme", DIRECT)
def test_schemes_without_cbw_options_reject_them(scheme):
    # the reported mistake: break-snapshot + a 1ms timeout under `backup`
    with pytest.raises(ConfigError, match=r"^backup\.on-cbw-error: not used by") as e:
        small(**{"backup.scheme": scheme, "backup.on-cbw-error": "break-snapshot"})
    assert "\n" not in str(e.value)
    with pytest.raises(ConfigError, match=r"^backup\.on-cbw-error"):
        small(**{"backup.scheme": scheme, "backup.on-cbw-error": "wait"})
    with pytest.raises(ConfigError, match=r"^backup\.cbw-timeout: not used by"):
        small(**{"backup.scheme": scheme, "backup.cbw-timeout": "1ms"})


def _slow_cbw(scheme, **kw):
    """CBW into a fleecing image on a slow disk with a 1 ms timeout: it times out."""
    return small(**{"backup.scheme": scheme, "devices.slow": {"preset": "hdd-7200"},
                    "backup.cache.device": "slow", "backup.cbw-timeout": "1ms",
                    "disk.size": "64MiB", **kw})


@pytest.mark.parametrize("scheme", ["fleecing-push", "fleecing-pull"])
def test_break_snapshot_fails_the_backup_and_keeps_the_target_clean(scheme):
    s = simulate(_slow_cbw(scheme, **{"backup.on-cbw-error": "break-snapshot"})).summary
    assert s["snapshot_broken"] and s["cbw_errors"] > 0
    assert s["backup_outcome"] == "snapshot-broken"
    assert not s["backup_completed"] and s["backup_failed"] and not s["oracle_ok"]
    assert s["oracle_violations"] > 0  # clusters never copied count against it
    assert s["target_wrong_clusters"] == 0  # nothing post-t0 reached the target
    assert s["snapshot_read_errors"] > 0  # the job's next snapshot read failed
    assert s["guest_errors"] == 0  # the guest goes on
    assert "FAILED" in why_not_ok(s) and "snapshot broke" in why_not_ok(s)


def test_break_guest_write_keeps_the_snapshot_good():
    s = simulate(_slow_cbw("fleecing-push")).summary
    assert s["guest_errors"] > 0 and not s["snapshot_broken"]
    assert s["backup_outcome"] == "complete" and s["oracle_ok"]


@pytest.fixture
def backup_that_breaks():
    """``backup`` whose filter breaks the snapshot mid-run (bypassing the config
    check): the model itself must still never call that a good backup."""
    name = "test-backup-broken-mid-run"

    def build(ctx):
        g = SCHEMES["backup"](ctx)
        inner = g._start

        def start(graph, needed):
            inner(graph, needed)

            def later():
                yield ctx.env.timeout(0.05)
                graph.filter.break_snapshot()
            ctx.env.process(later())

        g._start = start
        return g

    register(name)(build)
    yield name
    del SCHEMES[name]


def test_a_broken_snapshot_is_never_reported_good(backup_that_breaks):
    s = simulate(small(**{"backup.scheme": backup_that_breaks, "disk.size": "64MiB"})).summary
    assert s["snapshot_broken"]
    assert not s["backup_completed"] and s["backup_failed"] and not s["oracle_ok"]
    assert s["backup_outcome"] == "snapshot-broken"


def test_unfinished_backup_is_reported_unfinished_not_wrong():
    s = simulate(small(**{"backup.scheme": "legacy-backup", "run.max-time": "0.5s"})).summary
    assert s["backup_outcome"] == "unfinished"
    assert not s["backup_completed"] and not s["backup_failed"] and not s["oracle_ok"]
    assert "unfinished" in why_not_ok(s) and "NOT the point-in-time" not in why_not_ok(s)
