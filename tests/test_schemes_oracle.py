"""The data oracle holds for every scheme, sync mode and worker count."""
import pytest

from fleecesim.config import SYNC_NONE_SCHEMES
from fleecesim.run import simulate
from tests.conftest import honoured, small

SCHEMES = ["legacy-backup", "backup", "fleecing-push", "fleecing-pull",
           "fleecing-pull-2018", "overlay-cor", "overlay-commit", "fleecing-push-2018"]
CASES = [(sc, sy) for sc in SCHEMES for sy in ("full", "incremental")] + \
        [(sc, "none") for sc in SYNC_NONE_SCHEMES]


def busy(scheme, sync, workers, seed, **kw):
    """A 64 MiB disk under a heavy mixed guest (writes of 4 KiB to 256 KiB, some
    discards), so CBW, in-flight waits and frozen reads all happen."""
    o = {"disk.size": "64MiB", "disk.allocated": 0.7, "disk.allocation-granularity": "1MiB",
         "backup.scheme": scheme, "backup.sync": sync, "backup.max-workers": workers,
         "backup.incremental": {"dirty": 0.3, "extent": "512KiB"},
         "backup.window": "1s", "backup.client.discard": True,
         "workload.iops": 3000, "workload.mix": {"read": 0.4, "write": 0.5, "discard": 0.1},
         "workload.size": {"4KiB": 0.6, "64KiB": 0.3, "256KiB": 0.1},
         "workload.pattern": "zipf", "run.seed": seed, "run.warmup": "0.2s"}
    o.update(kw)
    return small(**honoured(scheme, o))


@pytest.mark.parametrize("workers", [1, 4, 64])
@pytest.mark.parametrize("scheme,sync", CASES)
def test_oracle(scheme, sync, workers):
    for seed in (1, 2):
        s = simulate(busy(scheme, sync, workers, seed)).summary
        assert s.get("error") is None, s.get("traceback")
        assert s["oracle_ok"], (seed, s["oracle_violations"])
        assert s["clusters_copied_twice"] == 0
        if sync != "none":  # sync=none: a write in flight at the end may add one
            assert s["clusters_copied_outside_mask"] == 0
        assert s["guest_ios_during_backup"] > 0
        # the guest really overwrote clusters still to copy (64 workers x 1 MiB claim
        # the whole 64 MiB disk at t0, so there it waits instead of copying)
        assert s["cbw_count"] + s["cbw_waits"] > 0


@pytest.mark.parametrize("scheme", ["backup", "fleecing-pull", "fleecing-pull-2018",
                                    "fleecing-push-2018", "overlay-cor", "overlay-commit"])
def test_fast_path_agrees_with_the_general_path(scheme):
    cfg = busy(scheme, "full", 8, 3)
    a = simulate(cfg, fast_path=True).summary
    b = simulate(cfg, fast_path=False).summary
    for k in ("backup_duration_s", "cbw_count", "local_write_bytes", "local_read_bytes",
              "source_read_bytes", "target_write_bytes", "write_p99_s", "read_p99_s"):
        assert a[k] == pytest.approx(b[k], rel=1e-9), k
