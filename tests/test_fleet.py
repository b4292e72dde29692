"""Many VMs, one target: VMs sharing devices in one run."""
import math

import pytest

from fleecesim.cli import main
from fleecesim.config import ConfigError, resolve
from fleecesim.run import simulate

BASE = {
    "disk": {"size": "128MiB"},
    "devices": {"local": {"preset": "nvme"}, "target": {"preset": "nbd-1gbe"}},
    "workload": {"iops": 400, "mix": {"read": 0.5, "write": 0.5}},
    "backup": {"scheme": "fleecing-push", "target": {"device": "target"},
               "cache": {"device": "local"}},
    "run": {"seed": 5, "warmup": "0.5s", "tail": "0.2s"},
}


def fleet(vms, **kw):
    return resolve({**BASE, "vms": vms, **kw})


def solo(cfg, i):
    """VM i of a fleet run alone (same config, same seed: the same requests)."""
    return simulate(cfg.vm_configs()[i][2]).summary


def test_each_vm_passes_its_own_oracle_under_different_schemes():
    cfg = fleet([{"name": "a"}, {"name": "b", "backup": {"scheme": "backup"}},
                 {"name": "c", "backup": {"scheme": "legacy-backup"}, "start": "0.3s"}])
    s = simulate(cfg).summary
    assert not s.get("error"), s.get("traceback")
    assert [v["name"] for v in s["vms"]] == ["a", "b", "c"]
    assert [v["scheme"] for v in s["vms"]] == ["fleecing-push", "backup", "legacy-backup"]
    for v in s["vms"]:
        assert v["oracle_ok"] and v["oracle_violations"] == 0 and v["backup_completed"]
        assert v["clusters_to_copy"] == 128 * 16  # 128 MiB in 64 KiB clusters
    assert s["oracle_ok"] and s["vm_count"] == 3
    assert s["vms"][2]["backup_start_s"] == pytest.approx(0.8)
    assert s["backup_window_s"] == pytest.approx(max(v["backup_end_s"] for v in s["vms"]) - 0.5)
    assert s["target_write_bytes"] == sum(v["target_write_bytes"] for v in s["vms"])
    assert s["write_p99_s"] == max(v["write_p99_s"] for v in s["vms"])


def test_two_vms_sharing_the_target_take_longer_than_alone():
    cfg = fleet([{"name": "a"}, {"name": "b"}])
    s = simulate(cfg).summary
    for i, v in enumerate(s["vms"]):
        alone = solo(cfg, i)["backup_duration_s"]
        # one 1 GbE link for two (not shared evenly: the first VM's copies get
        # ahead in the NBD queue, and it finishes first)
        assert v["backup_duration_s"] > 1.3 * alone, (v["name"], v["backup_duration_s"], alone)
    # the link is the bottleneck: two disks' worth of bytes take twice as long
    assert s["backup_window_s"] > 1.9 * max(solo(cfg, i)["backup_duration_s"] for i in (0, 1))


def test_with_a_large_stagger_each_vm_backs_up_as_if_alone():
    probe = fleet([{"name": "a"}, {"name": "b"}])
    alone = [solo(probe, i)["backup_duration_s"] for i in (0, 1)]
    cfg = fleet([{"name": "a"}, {"name": "b"}], fleet={"stagger": max(alone) + 0.5})
    s = simulate(cfg).summary
    assert s["oracle_ok"]
    for v, t in zip(s["vms"], alone):
        assert v["backup_duration_s"] == pytest.approx(t, rel=0.03), (v["name"], t)
    assert s["vms"][1]["backup_start_s"] == pytest.approx(0.5 + max(alone) + 0.5)


def test_a_one_vm_fleet_is_the_one_vm_run():
    cfg = fleet([{"name": "a", "workload": {"iops": 300}}])
    s = simulate(cfg).summary["vms"][0]
    ref = solo(cfg, 0)
    skip = {"name", "start_delay_s", "wall_time_s", "config"}
    assert {k: v for k, v in s.items() if k not in skip} == \
        {k: v for k, v in ref.items() if k not in skip}


def test_a_config_without_vms_dumps_and_runs_as_before():
    cfg = resolve(BASE)
    assert "vms" not in cfg.dump() and "fleet" not in cfg.dump()
    s = simulate(cfg).summary
    assert "vms" not in s and s["name"] == "fleecing-push" and s["oracle_ok"]


def test_adding_a_vm_does_not_change_another_vms_requests():
    one = fleet([{"name": "a"}, {"name": "b"}])
    two = fleet([{"name": "a"}, {"name": "c"}, {"name": "b"}])
    assert one.vm_configs()[0][2].run.seed == two.vm_configs()[0][2].run.seed
    assert one.vm_configs()[1][2].run.seed == two.vm_configs()[2][2].run.seed
    assert one.vm_configs()[0][2].run.seed != one.vm_configs()[1][2].run.seed
    r1, r2 = simulate(one), simulate(two)
    # the same arrivals and offsets (recorded in completion order, which
    # contention changes)
    a1 = r1.requests[r1.requests.vm == "a"].sort_values(["time", "offset"])
    a2 = r2.requests[r2.requests.vm == "a"].sort_values(["time", "offset"])
    n = min(len(a1), len(a2))
    assert n > 100
    assert (a1["offset"].to_numpy()[:n] == a2["offset"].to_numpy()[:n]).all()
    assert (a1["time"].to_numpy()[:n] == a2["time"].to_numpy()[:n]).all()


@pytest.mark.parametrize("vms, needle", [
    ("[{name: a}, {name: a}]", "vms[1].name: 'a' is used twice"),
    ("[{name: a, start: -1s}]", "vms[0].start:"),
    ("[{name: a, workload: {iops: -5}}]", "vms[0].workload.iops:"),
    ("[{name: a, backup: {scheme: nope}}]", "vms[0].backup.scheme:"),
    ("[{name: a, disk: {device: nowhere}}]", "vms[0].disk.device: no device named 'nowhere'"),
    ("[{name: a, colour: red}]", "vms[0].colour: unknown key"),
    ("[{name: 'a/b'}]", "vms[0].name: expected a plain name"),
])
def test_bad_vms_input_is_one_line_and_exit_2(tmp_path, capsys, vms, needle):
    p = tmp_path / "f.yaml"
    p.write_text(f"disk: {{size: 64MiB}}\nrun: {{warmup: 0.1s, tail: 0s}}\nvms: {vms}\n")
    out = tmp_path / "out"
    assert main(["run", str(p), "--quiet", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("fleecesim: error: ") and needle in err[0], err
    assert not out.exists()


def test_stagger_needs_vms():
    with pytest.raises(ConfigError, match="fleet.stagger: needs a list of vms"):
        resolve({**BASE, "fleet": {"stagger": "1min"}})


def test_run_prints_a_column_per_vm_and_totals_and_saves_them(tmp_path, capsys):
    import json
    import yaml
    p = tmp_path / "f.yaml"
    p.write_text(yaml.safe_dump({**BASE, "name": "f", "vms": [{"name": "a"}, {"name": "b"}]}))
    assert main(["run", str(p), "--quiet", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    head = out.splitlines()[0].split()
    assert head == ["a", "b", "total"]
    saved = json.loads((tmp_path / "f" / "summary.json").read_text())
    assert [v["name"] for v in saved[0]["vms"]] == ["a", "b"]
    assert all(v["oracle_ok"] for v in saved[0]["vms"])


def test_the_stagger_sweep_plans_one_point_per_stagger():
    from pathlib import Path
    from fleecesim.sweep.spec import load_sweep, plan
    spec, base, _where = load_sweep(Path(__file__).parents[1] / "configs/sweeps/stagger.yaml")
    runs = plan(spec, base)
    assert [r.axes["fleet.stagger"] for r in runs] == [0.0, 60.0, 120.0, 300.0]
    assert all(r.error is None and len(r.config["vms"]) == 4 for r in runs)


def test_a_fleet_runs_as_a_sweep_point():
    from fleecesim.sweep.spec import spec_from_dict, plan
    from fleecesim.sweep.worker import run_one
    spec, base = spec_from_dict({"name": "st", "base": {**BASE, "vms": [{"name": "a"},
                                                                         {"name": "b"}]},
                                 "grid": {"fleet.stagger": [0, "10s"]}})
    rows = [run_one(r)["row"] for r in plan(spec, base)]
    assert all(r["oracle_ok"] and r["error"] is None for r in rows)
    assert rows[1]["vm_b_backup_start_s"] == pytest.approx(10.5)
    assert rows[0]["backup_window_s"] > rows[1]["vm_a_backup_duration_s"]
    assert not math.isnan(rows[0]["write_p99_s"])


def test_a_vms_trace_path_is_relative_to_the_config_file(tmp_path, monkeypatch):
    """vms[i].workload.trace and a variant's workload.trace are resolved against
    the config's folder, like the top-level workload.trace: the run does not
    depend on the directory it is started from."""
    import json

    from fleecesim.config import load_config, variants
    conf = tmp_path / "cfg"
    conf.mkdir()
    (conf / "t.log").write_text("fio version 3 iolog\n0 /dev/vdb add\n0 /dev/vdb open\n"
                                + "".join(f"{i * 1000} /dev/vdb write {i * 65536} 4096\n"
                                          for i in range(50)))
    raw = {**BASE, "vms": [{"name": "a"}, {"name": "b", "workload": {"trace": "t.log"}}],
           "variants": [{"name": "v", "set": {"workload.trace": "t.log"}}]}
    (conf / "fleet.yaml").write_text(json.dumps(raw))
    monkeypatch.chdir(tmp_path)  # not the config's folder
    cfg = load_config(conf / "fleet.yaml")
    trace = str((conf / "t.log").resolve())
    assert cfg.vm_configs()[1][2].workload.trace == trace
    assert [c.workload.trace for _n, c in variants(cfg)] == [trace]
    s = simulate(cfg.vm_configs()[1][2]).summary
    assert s["guest_ios"] == 50 and s["oracle_ok"]


def test_a_new_request_source_replaces_the_old_one():
    """--set / a VM / a variant naming a trace, a rate or a depth: the keys it
    cannot stand with go; a depth on a trace keeps the trace (closed loop)."""
    from fleecesim.config import _drop_replaced
    synth = {"iops": 400, "mix": {"read": 1}}
    assert _drop_replaced(synth, ["trace"]) == {}  # a trace gives each request's kind too
    assert _drop_replaced({"trace": "t", "loop": True, "iodepth": 2}, ["iops"]) == {}
    assert _drop_replaced({"trace": "t", "iodepth": 2}, ["iops"]) == {}
    assert _drop_replaced({"trace": "t"}, ["iodepth"]) == {"trace": "t"}
    assert _drop_replaced({"iodepth": 4, "mix": 1}, ["iops"]) == {"mix": 1}
    assert _drop_replaced(synth, ["mix"]) == synth


def test_two_equal_vms_share_one_target_fairly():
    """Each VM's QEMU has its own NBD client (its own 16 request slots) on the
    shared link and server; a write waiting for a slot is not on the wire. So
    two equal VMs starting together finish together, each taking about twice
    its solo time (the link carries both). Before each VM had its own client,
    the first VM's queued writes held the link's FIFO: 1.72 s against 2.29 s."""
    cfg = fleet([{"name": "a"}, {"name": "b"}])
    s = simulate(cfg).summary
    d = [v["backup_duration_s"] for v in s["vms"]]
    alone = [solo(cfg, i)["backup_duration_s"] for i in range(2)]
    assert min(d) / max(d) > 0.9
    for dv, av in zip(d, alone):
        assert dv > 1.6 * av
    assert all(v["oracle_ok"] for v in s["vms"])


def test_an_nbd_client_has_its_own_slots_on_the_shared_link():
    from fleecesim.devices.base import Device
    from fleecesim.devices.remote import RemoteDevice
    dev = RemoteDevice("r", Device("l", 1e-3, 1e9, 4 * 2), Device("b", 0.0, 1e12, 64),
                       connections=2)
    assert dev.slots == 4  # per connection: the link stood for connections x queue-depth
    other = dev.client()
    assert other.slots == 4 and len(other._conns) == 2 and other.link is dev.link
    assert dev.link.users == 2  # one full-duplex link, two clients' connections
    assert dev.link_shared and other.link_shared
    # 8 requests at t=0 fill one client's slots; the other's first still starts
    # at once (a 9th of the first client's would wait for a slot: BackupTarget
    # holds it back until then, so the shared link sees it only when it goes)
    ends = [dev.submit(0.0, 0, 0) for _ in range(8)]
    assert other.submit(0.0, 0, 0) == ends[0] == 1e-3
