"""The data oracle holds for every combination of the tiered-cache options and
every copy-ordering policy, over several seeds; when both tiers are full, a
broken snapshot is reported broken and what the target holds is still t0 data."""
import itertools

import pytest

from fleecesim.policies import ORDERING
from fleecesim.run import simulate
from tests.conftest import small

BASE = {"disk.size": "128MiB", "disk.allocated": 0.7, "workload.iops": 3000,
        "workload.mix": {"read": 0.5, "write": 0.45, "discard": 0.05},
        "backup.max-workers": 8, "run.warmup": "0.3s", "run.tail": "0.05s"}

COMBOS = []
for ram, cor, serve, ds, lazy, flush in itertools.product(
        (0, "2MiB"), (False, True), (False, True), (False, True), (False, True),
        (False, True)):
    if not ram and (cor or serve or flush):
        continue  # these need a RAM tier
    c = {"backup.cache.ram.size": ram, "backup.discard-source": ds, "backup.lazy-discard": lazy}
    if ram:  # without a RAM tier these cannot act (and are refused)
        c.update({"backup.cache.cor": cor, "backup.cache.serve-reads-from-ram": serve})
    if flush:
        c["backup.cache.flush"] = {"high": 0.75, "low": 0.25}
    COMBOS.append(pytest.param(c, id="-".join(
        k for k, on in (("ram", ram), ("cor", cor), ("serve", serve), ("ds", ds),
                        ("lazy", lazy), ("flush", flush)) if on) or "plain"))


@pytest.mark.parametrize("opts", COMBOS)
def test_oracle_holds_for_every_option_and_policy(opts):
    for order in sorted(ORDERING):
        for seed in (1, 2):
            s = simulate(small(**BASE, **opts, **{"backup.order": order,
                                                  "run.seed": seed})).summary
            where = f"{order} seed {seed}"
            assert s.get("error") is None, (where, s.get("error"))
            assert s["oracle_ok"] and s["oracle_violations"] == 0, where
            assert s["clusters_copied_twice"] == 0, where
            assert s["target_wrong_clusters"] == 0, where
            assert s["cbw_count"] > 0, where  # not vacuous: the guest raced the backup
            if opts.get("backup.cache.cor"):
                assert s["cor_admitted"] > 0, where
            if "backup.cache.flush" in opts:
                assert s["flush_bytes"] > 0, where


@pytest.mark.parametrize("mode", ["break-guest-write", "break-snapshot", "wait"])
def test_full_tiers_every_policy(mode):
    for order in sorted(ORDERING):
        for seed in (1, 2):
            s = simulate(small(**BASE, **{
                "backup.cache.ram.size": "512KiB", "backup.cache.size": "512KiB",
                "backup.cache.cor": True, "backup.discard-source": mode == "wait",
                "backup.on-cbw-error": mode, "backup.order": order,
                "run.seed": seed})).summary
            where = f"{order} seed {seed}"
            assert s["target_wrong_clusters"] == 0, where
            if mode == "break-snapshot":
                assert s["snapshot_broken"] and not s["oracle_ok"], where
                assert s["guest_errors"] == 0, where
            else:
                assert s["oracle_ok"] and not s["snapshot_broken"], where
                assert (s["guest_errors"] > 0) == (mode == "break-guest-write"), where
                assert (s["cbw_room_waits"] > 0) == (mode == "wait"), where
