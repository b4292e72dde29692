"""The data oracle: proven, not assumed — and it catches a broken scheme."""
import pytest

from fleecesim.run import simulate
from fleecesim.schemes import SCHEMES, register
from tests.conftest import small


@pytest.fixture
def broken_scheme():
    """fleecing-push with the CBW filter switched off: guest writes land before
    the old data is saved, so the backup copies new data."""
    name = "test-broken-no-cbw"

    def build(ctx):
        g = SCHEMES["fleecing-push"](ctx)
        inner = g._start

        def start(graph, needed):
            inner(graph, needed)
            graph.filter.deactivate()

        g._start = start
        return g

    register(name)(build)
    yield name
    del SCHEMES[name]


@pytest.mark.parametrize("scheme", ["legacy-backup", "fleecing-push"])
def test_schemes_pass_the_oracle(scheme):
    s = simulate(small(**{"backup.scheme": scheme})).summary
    assert s["oracle_ok"] and s["oracle_violations"] == 0
    assert s["cbw_count"] > 0  # the guest really wrote into clusters not yet copied
    assert s["clusters_copied_twice"] == 0


def test_oracle_catches_disabled_cbw(broken_scheme):
    s = simulate(small(**{"backup.scheme": broken_scheme})).summary
    assert not s["oracle_ok"]
    assert s["oracle_violations"] > 0
    assert s["cbw_count"] == 0


def test_incomplete_backup_is_not_ok():
    s = simulate(small(**{"backup.scheme": "legacy-backup", "run.max-time": "0.5s"})).summary
    assert not s["backup_completed"]
    assert not s["oracle_ok"] and s["oracle_violations"] > 0


def test_full_cache_break_snapshot_is_reported_broken():
    s = simulate(small(**{"backup.cache.size": "1MiB",
                          "backup.on-cbw-error": "break-snapshot"})).summary
    assert s["snapshot_broken"] and s["snapshot_broken_at"] is not None
    assert not s["oracle_ok"]
    assert s["guest_errors"] == 0


def test_full_cache_break_guest_write_fails_writes_keeps_snapshot():
    # werror=report: the failed write reaches the guest (the default enospc
    # stops the VM on this ENOSPC: tests/test_error_policy.py)
    s = simulate(small(**{"backup.cache.size": "1MiB", "guest.werror": "report",
                          "backup.on-cbw-error": "break-guest-write"})).summary
    assert s["guest_errors"] > 0 and s["writes_failed"] == s["guest_errors"]
    assert not s["snapshot_broken"]
    assert s["oracle_ok"]  # failed writes never reached the disk: the snapshot holds
