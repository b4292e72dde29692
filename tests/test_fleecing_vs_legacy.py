"""The bundled comparison: fleecing spares the guest the slow target."""
import pytest

from fleecesim.config import load_config, variants
from fleecesim.run import simulate
from tests.conftest import REPO


def _compare(overrides):
    cfg = load_config(REPO / "configs" / "fleecing-vs-legacy.yaml", overrides)
    res = {name: simulate(c, name).summary for name, c in variants(cfg)}
    leg, fl = res["legacy-backup"], res["fleecing-push"]
    assert leg["oracle_ok"] and fl["oracle_ok"]
    assert leg["write_p99_s"] >= 5 * fl["write_p99_s"]
    # fleecing's CBW path stays local: read old data + write the cache + the write
    # itself; it must cost more than the bare write and far less than the target.
    assert fl["write_p99_baseline_s"] < fl["write_p99_s"] < leg["write_p99_s"]


def test_bundled_comparison_on_a_4gib_disk():
    """The same claim on a smaller disk (the default test run stays short)."""
    _compare(["disk.size=4GiB"])


@pytest.mark.slow
def test_bundled_comparison_legacy_p99_at_least_5x_fleecing():
    """The README's main command as it ships (64 GiB; ~45 s)."""
    _compare([])
