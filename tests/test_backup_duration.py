"""With no guest I/O a backup runs at its bottleneck's bandwidth."""
import pytest

from fleecesim.run import simulate
from tests.conftest import small


@pytest.mark.parametrize("target,bw", [
    ({"preset": "nbd-1gbe"}, 112 * 2**20),  # link-bound
    ({"kind": "remote", "rtt": "0.5ms", "link-bandwidth": "1.1GiB/s", "queue-depth": 16,
      "backend": {"kind": "ssd", "latency": "0.1ms", "bandwidth": "300MiB/s",
                  "queue-depth": 32}}, 300 * 2**20),  # backend-bound
])
def test_idle_guest_full_backup_is_size_over_bottleneck(target, bw):
    cfg = small(**{"disk.size": "2GiB", "workload.iops": 0, "devices.target": target})
    s = simulate(cfg).summary
    assert s["oracle_ok"]
    assert s["backup_duration_s"] == pytest.approx(2 * 2**30 / bw, rel=0.02)


def test_source_bound_when_source_is_slowest():
    cfg = small(**{"disk.size": "1GiB", "workload.iops": 0,
                   "devices.local": {"kind": "ssd", "latency": "0.1ms",
                                     "bandwidth": "50MiB/s", "queue-depth": 32}})
    s = simulate(cfg).summary
    assert s["backup_duration_s"] == pytest.approx(2**30 / (50 * 2**20), rel=0.02)


def test_zero_clusters_cost_no_read():
    cfg = small(**{"disk.size": "1GiB", "disk.allocated": 0.0, "workload.iops": 0})
    s = simulate(cfg).summary
    assert s["source_read_bytes"] == 0 and s["target_write_bytes"] == 0
    assert s["target_zero_bytes"] == 2**30
    assert s["oracle_ok"]


def test_no_warmup_no_tail():
    s = simulate(small(**{"run.warmup": 0, "run.tail": 0})).summary
    assert s.get("error") is None and s["backup_start_s"] == 0.0
    assert s["sim_time_s"] == s["backup_end_s"] and s["oracle_ok"]
