"""vzdump's schedule (fleet.vzdump): one VM at a time per node in list order,
nodes side by side against one target (pve-manager PVE/VZDump.pm exec_backup,
PVE/API2/VZDump.pm vzdump), bwlimit as the job's speed, performance
max-workers as the job's max-workers, fleecing per job or per VM."""
import pytest

from fleecesim.cli import main
from fleecesim.config import ConfigError, resolve
from fleecesim.run import simulate

MiB = 2**20
DISK = 128 * MiB
LINK = 112 * MiB  # the nbd-1gbe preset's link-bandwidth
BASE = {
    "disk": {"size": "128MiB"},
    "devices": {"local": {"preset": "nvme"}, "target": {"preset": "nbd-1gbe"}},
    "workload": {"iops": 400, "mix": {"read": 0.5, "write": 0.5}},
    "backup": {"target": {"device": "target"}, "cache": {"device": "local"}},
    "run": {"seed": 5, "warmup": "0.5s", "tail": "0.2s"},
}
ON = {"fleecing": {"enabled": True}}


def vz(vms, vzdump=None, **kw):
    return resolve({**BASE, "vms": vms, "fleet": {"vzdump": vzdump or ON}, **kw})


def run(cfg, **kw):
    s = simulate(cfg, **kw).summary
    assert not s.get("error"), s.get("traceback")
    return s


def by_name(s):
    return {v["name"]: v for v in s["vms"]}


def test_one_node_backs_up_its_vms_one_after_another_in_list_order():
    names = ["c", "a", "b"]  # list order, not name order
    cfg = vz([{"name": n} for n in names])
    s = run(cfg)
    v = by_name(s)
    assert [n["vms"] for n in s["nodes"]] == [names]
    for first, nxt in zip(names, names[1:]):  # each starts when the one before ends
        assert v[nxt]["backup_start_s"] == pytest.approx(v[first]["backup_end_s"], abs=1e-9)
    node = s["nodes"][0]
    assert node["backup_window_s"] == pytest.approx(sum(x["backup_duration_s"]
                                                        for x in s["vms"]), rel=1e-9)
    # no contention (one backup at a time on the link): N x one VM's duration
    alone = simulate(cfg.vm_configs()[0][2]).summary["backup_duration_s"]
    assert node["backup_window_s"] == pytest.approx(3 * alone, rel=0.02)
    assert s["backup_window_s"] == node["backup_window_s"]
    # one fleecing image at a time: the node's peak is the largest VM's, not the sum
    peaks = [x["fleecing_peak_bytes"] for x in s["vms"]]
    assert min(peaks) > 0
    assert node["fleecing_peak_bytes"] == max(peaks)
    # a VM naming no node is on "pve" (config/vms.py DEFAULT_NODE): its columns
    # read node_pve_<key>, as a Proxmox admin names a node
    assert node["name"] == "pve" and {x["node"] for x in s["vms"]} == {"pve"}
    assert s["node_pve_fleecing_peak_bytes"] == max(peaks)
    assert all(x["oracle_ok"] for x in s["vms"]) and s["oracle_ok"]


def test_the_same_vms_all_at_once_need_more_fleecing_space_than_vzdump():
    vms = [{"name": n} for n in "abc"]
    seq = run(vz(vms))
    par = run(resolve({**BASE, "vms": vms,
                       "backup": {**BASE["backup"], "max-workers": 16}}))
    assert par["fleecing_peak_bytes"] > 1.5 * seq["nodes"][0]["fleecing_peak_bytes"]
    assert par["backup_window_s"] < seq["backup_window_s"] * 1.1  # one link either way


def test_bwlimit_caps_each_vms_copy_rate():
    # fleecing-push: the job reads every cluster of the snapshot view through
    # the limiter, so a VM's backup takes disk / bwlimit
    bw_kib = 20 * 1024  # vzdump --bwlimit 20480 (KiB/s) = 20 MiB/s
    s = run(vz([{"name": "a"}, {"name": "b"}], {**ON, "bwlimit": bw_kib}))
    for v in s["vms"]:
        assert v["backup_duration_s"] == pytest.approx(DISK / (bw_kib * 1024), rel=0.01)
    assert s["backup_window_s"] == pytest.approx(2 * DISK / (bw_kib * 1024), rel=0.01)
    # the same limit written as a rate
    same = vz([{"name": "a"}], {**ON, "bwlimit": "20MiB/s"})
    assert same.vm_configs()[0][2].backup.speed == 20 * MiB


def test_two_nodes_run_side_by_side_and_share_the_target_link():
    one = vz([{"name": "a"}, {"name": "b"}])
    two = vz([{"name": "a", "node": "pve1"}, {"name": "b", "node": "pve2"}])
    s1, s2 = run(one), run(two)
    alone = [simulate(two.vm_configs()[i][2]).summary["backup_duration_s"] for i in (0, 1)]
    v = by_name(s2)
    assert [n["name"] for n in s2["nodes"]] == ["pve1", "pve2"]
    assert v["a"]["backup_start_s"] == v["b"]["backup_start_s"] == pytest.approx(0.5)
    # the link carries both: bytes over the window never beat its bandwidth
    assert s2["target_write_bytes"] / s2["backup_window_s"] <= LINK
    for name, t in zip("ab", alone):
        assert v[name]["backup_duration_s"] > 1.6 * t
    # link-bound either way: two nodes side by side take about as long as one
    # node doing both in turn
    assert s2["backup_window_s"] == pytest.approx(s1["backup_window_s"], rel=0.1)
    for n in s2["nodes"]:
        assert n["vm_count"] == 1
        assert n["fleecing_peak_bytes"] == v[n["vms"][0]]["fleecing_peak_bytes"]


def test_max_workers_and_fleecing_reach_each_vms_job():
    cfg = vz([{"name": "a"}, {"name": "b", "fleecing": {"enabled": True, "storage": "fast"}},
              {"name": "c", "fleecing": {"enabled": False}}],
             {**ON, "performance": {"max-workers": 4}},
             devices={**BASE["devices"], "fast": {"preset": "nvme"}})
    c = {n: x for n, _s, x in cfg.vm_configs()}
    assert [c[n].backup.max_workers for n in "abc"] == [4, 4, 4]
    assert (c["a"].scheme, c["a"].backup.cache.device) == ("fleecing-push", "local")
    assert (c["b"].scheme, c["b"].backup.cache.device) == ("fleecing-push", "fast")
    assert c["c"].scheme == "backup"
    # PVE's default when performance is not given: 16 (pve-qemu's qmp_backup)
    assert vz([{"name": "a"}]).vm_configs()[0][2].backup.max_workers == 16
    s = run(cfg)
    v = by_name(s)
    assert v["c"]["fleecing_peak_bytes"] == 0 and v["c"]["cbw_count"] > 0
    assert s["device_util"]["fast"] > 0  # b's fleecing image was on it


def test_fewer_workers_take_longer_over_the_links_rtt():
    d = {}
    for w in (1, 16):
        s = run(vz([{"name": "a"}], {**ON, "performance": {"max-workers": w}}))
        d[w] = s["backup_window_s"]
    # 16 workers fill the 1 GbE link: disk / link bandwidth
    assert d[16] == pytest.approx(DISK / LINK, rel=0.03)
    # one worker waits a round trip (0.2 ms) per 1 MiB chunk on top of the wire
    assert d[1] > DISK / LINK + (DISK // MiB) * 0.2e-3


def test_the_same_config_and_seed_give_the_same_night():
    cfg = vz([{"name": "a"}, {"name": "b"}, {"name": "c", "node": "pve2"}])
    skip = {"wall_time_s"}
    a, b = run(cfg), run(cfg)
    assert {k: x for k, x in a.items() if k not in skip} == \
        {k: x for k, x in b.items() if k not in skip}


def test_a_dumped_vzdump_config_reads_back_the_same():
    cfg = vz([{"name": "a", "node": "n1"}], {**ON, "bwlimit": "100MiB/s"})
    again = resolve(cfg.dump())
    assert again.fleet.vzdump.speed == 100 * MiB
    assert again.dump() == cfg.dump()
    plain = resolve({**BASE, "vms": [{"name": "a"}]}).dump()
    assert "vzdump" not in plain["fleet"] and "node" not in plain["vms"][0]


@pytest.mark.parametrize("extra, needle", [
    ({"vms": [{"name": "a", "node": "x"}], "fleet": {}}, "vms[0].node: needs fleet.vzdump"),
    ({"fleet": {"vzdump": {}, "stagger": "1s"}}, "fleet.stagger: not with fleet.vzdump"),
    ({"vms": [{"name": "a", "start": "1s"}]}, "vms[0].start: not with fleet.vzdump"),
    ({"vms": [{"name": "a", "backup": {"max-workers": 8}}]},
     "vms[0].backup.max-workers: vzdump sets it; use fleet.vzdump.performance.max-workers"),
    ({"backup": {**BASE["backup"], "speed": "10MiB/s"}},
     "backup.speed: vzdump sets it; use fleet.vzdump.bwlimit"),
    ({"backup": {**BASE["backup"], "scheme": "legacy-backup"}},
     "backup.scheme: vzdump sets it; use fleet.vzdump.fleecing.enabled"),
    ({"fleet": {"vzdump": {"performance": {"max-workers": 300}}}},
     "fleet.vzdump.performance.max-workers"),
    ({"fleet": {"vzdump": {"bwlimit": -1}}}, "fleet.vzdump.bwlimit: expected a rate >= 0"),
    ({"fleet": {"vzdump": {"bwlimit": "fast"}}}, "fleet.vzdump.bwlimit"),
    ({"fleet": {"vzdump": {"fleecing": {"enabled": True, "storage": "nowhere"}}}},
     "fleet.vzdump.fleecing.storage: no device named 'nowhere'"),
    ({"vms": [{"name": "a", "fleecing": {"storage": "nowhere"}}]},
     "vms[0].fleecing.storage: no device named 'nowhere'"),
])
def test_bad_vzdump_input_is_one_clear_error(extra, needle):
    raw = {**BASE, "vms": [{"name": "a"}], "fleet": {"vzdump": {}}, **extra}
    with pytest.raises(ConfigError) as e:
        resolve(raw)
    assert needle in str(e.value) and "\n" not in str(e.value), str(e.value)


def test_run_prints_the_night_per_node(tmp_path, capsys):
    import yaml
    p = tmp_path / "n.yaml"
    p.write_text(yaml.safe_dump({**BASE, "name": "n", "fleet": {"vzdump": ON},
                                 "vms": [{"name": "a"}, {"name": "b"},
                                         {"name": "c", "node": "pve2"}]}))
    assert main(["run", str(p), "--quiet", "--no-save"]) == 0
    out = capsys.readouterr().out
    tail = out[out.index("vzdump"):].splitlines()
    assert tail[1].split()[:3] == ["node", "vm", "start"]
    rows = [line.split() for line in tail[3:] if line.strip()]
    assert [r[:2] for r in rows] == [["pve", "a"], ["pve", "b"], ["pve", "(node)"],
                                     ["pve2", "c"], ["pve2", "(node)"]]


def test_the_reference_engine_gives_the_same_night():
    from tests.test_engine_equivalence import assert_same
    cfg = vz([{"name": "a"}, {"name": "b", "node": "pve2"}, {"name": "c"}])
    fast, ref = run(cfg, analytic=True), run(cfg, analytic=False)
    for a, b in zip(fast["vms"], ref["vms"]):
        assert_same(a, b)
    for a, b in zip(fast["nodes"], ref["nodes"]):
        assert_same(a, b)
    assert_same({k: v for k, v in fast.items() if k not in ("vms", "nodes", "events")},
                {k: v for k, v in ref.items() if k not in ("vms", "nodes", "events")})


def test_fleecing_only_keys_of_the_shared_section_leave_a_vm_without_fleecing():
    # pve-qemu sets cbw-timeout and discard-source only on a fleecing setup
    # (debian/patches/pve/0038-PVE-backup-add-fleecing-option.patch): a VM whose
    # job fleeces keeps them, one that does not runs the plain backup job
    cfg = vz([{"name": "a"}, {"name": "b", "fleecing": {"enabled": False}}],
             backup={**BASE["backup"], "cbw-timeout": "45s", "discard-source": True})
    (_a, _s, a), (_b, _t, b) = cfg.vm_configs()
    assert (a.scheme, a.backup.cbw_timeout, a.backup.discard_source) == \
        ("fleecing-push", 45.0, True)
    assert (b.scheme, b.backup.cbw_timeout, b.backup.discard_source) == ("backup", 0.0, False)
    with pytest.raises(ConfigError, match="vms.0..backup.cbw-timeout: not used by the 'backup'"):
        vz([{"name": "a", "backup": {"cbw-timeout": "5s"}}], {"fleecing": {"enabled": False}})
