"""`fleecesim advise` on a fleet under vzdump's schedule: how much fleecing
storage one node needs and which performance max-workers, with the same
order-statistic bounds as for one VM (fleecesim/advise)."""
from __future__ import annotations

import pytest

from fleecesim.advise import (FLEET_AXIS, Constraints, advise_config, sweep_dict,
                              upper_bound)
from fleecesim.config import resolve
from fleecesim.errors import UserError

BASE = {
    "name": "node",
    "disk": {"size": "64MiB"},
    "devices": {"local": {"preset": "nvme"}, "target": {"preset": "nbd-1gbe"}},
    "workload": {"iops": 1500, "mix": {"read": 0.5, "write": 0.5}},
    "backup": {"target": {"device": "target"}, "cache": {"device": "local"}},
    "run": {"seed": 3, "warmup": "0.3s", "tail": "0.1s"},
    "fleet": {"vzdump": {"fleecing": {"enabled": True}}},
}


def node(vms, **kw):
    return resolve({**BASE, "vms": vms, **kw})


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    cfg = node([{"name": "a"}, {"name": "b", "disk": {"size": "32MiB"}}])
    cons = Constraints.parse(workers="1,16", percentile=75)
    out = tmp_path_factory.mktemp("advz") / "r"
    advice, runs, _ = advise_config(cfg, cons, results_dir=out, jobs=1)
    return cfg, cons, advice, runs


def test_the_sweep_sets_vzdumps_max_workers_for_every_vm():
    from fleecesim.sweep.spec import plan, spec_from_dict
    cfg = node([{"name": "a"}, {"name": "b"}])
    sw = sweep_dict(cfg, Constraints.parse(workers="2,32", percentile=75))
    assert sw["grid"] == {FLEET_AXIS: [2, 32]}
    spec, base = spec_from_dict(sw)
    for r in plan(spec, base)[:2]:
        c = resolve(r.config)
        assert {x.backup.max_workers for _n, _s, x in c.vm_configs()} == \
            {r.axes[FLEET_AXIS]}
        assert all(x.backup.cache.size is None for _n, _s, x in c.vm_configs())


def test_space_is_the_bound_on_the_nodes_peak(swept):
    cfg, cons, advice, runs = swept
    ok = runs[runs["error"].isna()]
    # one VM at a time: each run's node peak is its largest VM's peak
    vm_max = ok[["vm_a_fleecing_peak_bytes", "vm_b_fleecing_peak_bytes"]].max(axis=1)
    assert (ok["node_pve_fleecing_peak_bytes"] == vm_max).all()
    for w in (1, 16):
        g = ok[ok[FLEET_AXIS] == w]
        want = upper_bound(g["node_pve_fleecing_peak_bytes"], cons.p, cons.confidence)[0]
        row = advice.table.set_index("workers").loc[w]
        assert row.space_bytes == want and row.disk_bytes == want and row.ram_bytes == 0
        assert row.duration_s == upper_bound(g["node_pve_backup_window_s"], cons.p,
                                             cons.confidence)[0]
    assert advice.met and advice.workers in (1, 16)
    assert advice.space_bytes == advice.data_bytes + advice.metadata_bytes
    assert "node 'pve'" in advice.question and "vzdump" in advice.question


def test_a_window_shorter_than_one_worker_needs_picks_more_workers(swept):
    cfg, cons, advice, runs = swept
    from fleecesim.advise import analyse
    from dataclasses import replace
    t = advice.table.set_index("workers")
    cut = (t.loc[1].duration_s + t.loc[16].duration_s) / 2  # between the two
    assert t.loc[16].duration_s < t.loc[1].duration_s
    adv = analyse(runs, replace(cons, window=cut), cfg)
    assert adv.workers == 16


def test_which_node_is_asked():
    two = node([{"name": "a", "node": "pve1"}, {"name": "b", "node": "pve2"}])
    with pytest.raises(UserError, match="has nodes pve1, pve2; say which one with --node"):
        sweep_dict(two, Constraints.parse(percentile=75))
    with pytest.raises(UserError, match="--node pve9: no such node"):
        sweep_dict(two, Constraints.parse(percentile=75, node="pve9"))
    assert sweep_dict(two, Constraints.parse(percentile=75, node="pve2"))
    with pytest.raises(UserError, match="no RAM tier"):
        sweep_dict(node([{"name": "a"}]), Constraints.parse(percentile=75, no_spill=True))


def test_two_nodes_the_space_is_the_asked_nodes_own(tmp_path):
    # pve1's two VMs fleece on its own NVMe; pve2's one VM on another
    cfg = node([{"name": "a", "node": "pve1"}, {"name": "b", "node": "pve1"},
                {"name": "c", "node": "pve2", "fleecing": {"enabled": True,
                                                          "storage": "nvme2"}}],
               devices={**BASE["devices"], "nvme2": {"preset": "nvme"}})
    cons = Constraints.parse(workers="16", percentile=75, node="pve2")
    advice, runs, _ = advise_config(cfg, cons, results_dir=tmp_path / "r", jobs=1)
    ok = runs[runs["error"].isna()]
    want = upper_bound(ok["vm_c_fleecing_peak_bytes"], cons.p, cons.confidence)[0]
    assert advice.data_bytes == want
    assert upper_bound(runs["node_pve2_backup_window_s"], cons.p, cons.confidence)[0] \
        == advice.table.iloc[0].duration_s
