"""The bundled comparison: fleecing spares the guest the slow target."""
from fleecesim.config import load_config, variants
from fleecesim.run import simulate
from tests.conftest import REPO


def test_bundled_comparison_legacy_p99_at_least_5x_fleecing():
    cfg = load_config(REPO / "configs" / "fleecing-vs-legacy.yaml")
    res = {name: simulate(c, name).summary for name, c in variants(cfg)}
    leg, fl = res["legacy-backup"], res["fleecing-push"]
    assert leg["oracle_ok"] and fl["oracle_ok"]
    assert leg["write_p99_s"] >= 5 * fl["write_p99_s"]
    # fleecing's CBW path stays local: read old data + write the cache + the write
    # itself; it must cost more than the bare write and far less than the target.
    assert fl["write_p99_baseline_s"] < fl["write_p99_s"] < leg["write_p99_s"]
