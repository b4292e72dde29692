"""Sweep planning: axes, order, stable ids, replication seeds (no simulation)."""
import subprocess
import sys

import pytest

from fleecesim.errors import ConfigError
from fleecesim.sweep import canonical_hash, plan, replication_seed
from fleecesim.sweep.spec import spec_from_dict

BASE = {
    "disk": {"size": "64MiB"},
    "workload": {"iops": 1000},
    "backup": {"scheme": ["fleecing-pull", "fleecing-push"]},
    "run": {"seed": 7, "warmup": "0.2s", "tail": "0.1s"},
}


def _plan(**sweep):
    spec, base = spec_from_dict({"name": "t", "base": BASE, **sweep})
    return plan(spec, base)


def test_grid_zip_points_multiply_in_a_fixed_order():
    runs = _plan(grid={"backup.max-workers": [1, 4], "backup.max-chunk": ["1MiB", "4MiB"]},
                 zip={"devices.target.rtt": ["1ms", "5ms"], "devices.target.queue-depth": [1, 8]},
                 points=[{"disk.allocated": 0.5}, {"disk.allocated": 1.0}],
                 replications=3)
    # 2x2 grid x 2 zip rows x 2 points x 2 schemes (base variants) x 3 replications
    assert len(runs) == 2 * 2 * 2 * 2 * 2 * 3
    assert [r.index for r in runs] == list(range(len(runs)))
    first = runs[0]
    assert first.axes == {"backup.max-workers": 1, "backup.max-chunk": 2**20,
                          "devices.target.rtt": 0.001, "devices.target.queue-depth": 1,
                          "disk.allocated": 0.5}
    assert (first.variant, first.replication) == ("fleecing-pull", 0)
    assert [r.replication for r in runs[:6]] == [0, 1, 2, 0, 1, 2]
    assert [r.variant for r in runs[:6]] == ["fleecing-pull"] * 3 + ["fleecing-push"] * 3
    # zip is lock-step: rtt and queue depth move together
    assert {(r.axes["devices.target.rtt"], r.axes["devices.target.queue-depth"])
            for r in runs} == {(0.001, 1), (0.005, 8)}
    assert len({r.run_id for r in runs}) == len(runs)


def test_seeds_depend_only_on_base_seed_and_replication():
    runs = _plan(grid={"backup.max-workers": [1, 4]}, replications=3)
    for r in runs:
        assert r.seed == replication_seed(7, r.replication) == r.config["run"]["seed"]
    assert len({replication_seed(7, i) for i in range(3)}) == 3
    assert replication_seed(8, 0) != replication_seed(7, 0)
    # replications of one point share a point id; different points do not
    by_point = {}
    for r in runs:
        by_point.setdefault((r.point, r.variant), set()).add(r.point_id)
    assert all(len(v) == 1 for v in by_point.values())
    assert len({next(iter(v)) for v in by_point.values()}) == len(by_point)


def test_run_ids_are_stable_across_processes():
    runs = _plan(grid={"backup.max-workers": [1, 4]}, replications=2)
    code = ("from tests.test_sweep_plan import _plan;"
            "print(' '.join(r.run_id for r in _plan(grid={'backup.max-workers': [1, 4]},"
            " replications=2)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env={"PYTHONHASHSEED": "123", "PATH": ""}).stdout.split()
    assert out == [r.run_id for r in runs]
    assert canonical_hash({"b": 1, "a": [1.5, "x"]}) == canonical_hash({"a": [1.5, "x"], "b": 1})


def test_an_invalid_point_is_kept_with_its_error():
    runs = _plan(points=[{"backup.cache.size": "64KiB"}, {"backup.cache.size": "1KiB"}])
    bad = [r for r in runs if r.error]
    assert len(bad) == 1 and "smaller than one cluster" in bad[0].error
    assert bad[0].config is None and bad[0].axes == {"backup.cache.size": "1KiB"}


@pytest.mark.parametrize("sweep, msg", [
    ({"zip": {"backup.max-workers": [1, 2], "backup.speed": [0]}}, "equal lengths"),
    ({"grid": {"run.seed": [1, 2]}}, "replications"),
    ({"grid": {"backup.max-workers": [1]}, "zip": {"backup.max-workers": [2]}}, "already"),
    ({"grid": {"backup.max-workers": []}}, "non-empty"),
    ({"grid": {"backup.no-such-key": [1, 2]}}, "every point"),
    ({"points": [{"backup.max-workers": 2}, {"backup.max-workers": 2}]}, "same config"),
    ({"grid": {"backup.max-workers": [1]}, "colour": 1}, "colour: unknown key"),
])
def test_bad_sweeps_are_one_clear_error(sweep, msg):
    with pytest.raises(ConfigError, match=msg):
        _plan(**sweep)


def test_a_device_shorthand_axis_is_a_number():
    """`bandwidth` sets both directions; its axis column is the resolved number
    (read direction), so `plot --kind metric` can use it as x (it could not,
    after devices became direction-aware, until lookup learnt the shorthand)."""
    runs = _plan(grid={"devices.local.bandwidth": ["100MiB/s", "1GiB/s"]})
    assert sorted({r.axes["devices.local.bandwidth"] for r in runs}) == [100 * 2**20, 2**30]
