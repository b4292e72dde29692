"""`fleecesim qmp`: the scheme as QMP commands. Unit tests of the emitted
sequence (no QEMU), and (marker ``qemu``) the sequence fed to a real
qemu-storage-daemon: the backup must equal the disk at t0."""
from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import time

import pytest

from fleecesim.cli import main
from fleecesim.errors import UserError
from fleecesim.qemu.runner import qemu_available
from fleecesim.qmp_export import Endpoints, node_options, qmp_steps, render, run_steps
from tests.conftest import small

QEMU_OK, QEMU_WHY = qemu_available()
needs_qemu = pytest.mark.skipif(not QEMU_OK, reason=f"real QEMU not available: {QEMU_WHY}")
KiB, MiB = 1024, 1024 * 1024


def cmds(plan, name=None):
    return [c for c in plan.commands() if name is None or c["execute"] == name]


def backup_args(plan):
    (b,) = cmds(plan, "blockdev-backup")
    return b["arguments"]


# ---------------------------------------------------------------- unit tests

def test_backup_sequence_and_x_perf():
    cfg = small(**{"backup.scheme": "backup", "backup.max-workers": 8,
                   "backup.max-chunk": "4MiB", "backup.speed": "100MiB/s"})
    plan = qmp_steps(cfg, Endpoints(target="t.raw"))
    names = [c["execute"] for c in plan.commands()]
    assert names == ["blockdev-add", "blockdev-backup", "job-dismiss", "blockdev-del"]
    a = backup_args(plan)
    assert a["device"] == "disk0" and a["target"] == "fs-target" and a["sync"] == "full"
    assert a["x-perf"] == {"max-workers": 8, "max-chunk": 4 * MiB}
    assert a["speed"] == 100 * MiB and a["auto-dismiss"] is False
    assert plan.unsupported == []
    # the job's completion is waited for before it is dismissed
    kinds = [(s.kind, s.execute or s.event) for s in plan.steps if s.kind != "note"]
    assert kinds.index(("wait", "BLOCK_JOB_COMPLETED")) < kinds.index(("cmd", "job-dismiss"))


def test_defaults_emit_no_x_perf_and_qemu_6_has_none_before():
    plan = qmp_steps(small(**{"backup.scheme": "backup"}))
    assert "x-perf" not in backup_args(plan)
    old = qmp_steps(small(**{"backup.scheme": "legacy-backup"}), version=(5, 2))
    assert "x-perf" not in backup_args(old)
    # a feature the version lacks is the config's one-line error, naming the version
    with pytest.raises(UserError, match=r"needs QEMU >= 6\.0.*not qemu.version 5\.2"):
        qmp_steps(small(**{"backup.scheme": "backup", "backup.max-workers": 4}),
                  version=(5, 2))


def test_fleecing_push_graph_and_teardown_order():
    cfg = small(**{"backup.on-cbw-error": "break-snapshot", "backup.cbw-timeout": "1.2s"})
    guest = {"driver": "raw", "node-name": "guest", "detect-zeroes": "unmap"}
    plan = qmp_steps(cfg, Endpoints(attach="node:guest", attach_options=guest))
    names = [(c["execute"], (c.get("arguments") or {}).get("node-name")
              or (c.get("arguments") or {}).get("driver")) for c in plan.commands()]
    adds = [c["arguments"] for c in cmds(plan, "blockdev-add")]
    assert [a["driver"] for a in adds] == ["qcow2", "copy-before-write", "snapshot-access", "qcow2"]
    cbw = adds[1]
    assert cbw["file"] == "disk0" and cbw["target"] == "fs-fleece"
    assert cbw["on-cbw-error"] == "break-snapshot"
    assert cbw["cbw-timeout"] == 2  # whole seconds, rounded up
    assert any("rounded UP to 2 s" in u for u in plan.unsupported)
    assert backup_args(plan)["device"] == "fs-access"
    dels = [c["arguments"]["node-name"] for c in cmds(plan, "blockdev-del")]
    assert dels == ["fs-target", "fs-access", "fs-cbw", "fs-fleece"]
    reopens = cmds(plan, "blockdev-reopen")
    assert [r["arguments"]["options"][0]["file"] for r in reopens] == ["fs-cbw", "disk0"]
    # every option of the guest's node goes with the reopen (the rest would be reset)
    assert all(r["arguments"]["options"][0]["detect-zeroes"] == "unmap" for r in reopens)
    assert len(names) == 12  # 4 adds, 2 reopens, backup, dismiss, 4 dels
    # the error path cleans up the same nodes, in the same order
    err_dels = [s.arguments["node-name"] for s in plan.on_error
                if s.kind == "cmd" and s.execute == "blockdev-del"]
    assert err_dels == dels
    assert [s.execute for s in plan.on_error if s.kind == "cmd"][0] == "job-dismiss"


def test_attach_node_without_its_options_is_refused():
    with pytest.raises(UserError, match="blockdev-reopen resets every option"):
        qmp_steps(small(), Endpoints(attach="node:guest"))


def test_qemu_7_2_caps_snapshot_reads_at_one_cluster_and_9_1_has_discard_source():
    cfg = small()
    old = qmp_steps(cfg, version=(7, 2))
    assert backup_args(old)["x-perf"]["max-chunk"] == 64 * KiB
    with pytest.raises(UserError, match=r"discard-source: needs QEMU >= 9\.1"):
        qmp_steps(small(**{"backup.discard-source": True}), version=(7, 2))
    new = qmp_steps(small(**{"backup.discard-source": True}), version=(9, 1))
    assert backup_args(new)["discard-source"] is True
    assert "x-perf" not in backup_args(new)


@pytest.mark.parametrize("scheme, key", [("fleecing-push", "backup.discard-source"),
                                         ("fleecing-pull", "backup.client.discard")])
def test_read_once_sets_discard_unmap_on_the_fleecing_image_and_snapshot_access(scheme, key):
    on = qmp_steps(small(**{"backup.scheme": scheme, key: True}))
    adds = {a["node-name"]: a for a in (c["arguments"] for c in cmds(on, "blockdev-add"))}
    assert adds["fs-fleece"]["discard"] == "unmap"
    assert adds["fs-fleece"]["file"]["discard"] == "unmap"
    assert adds["fs-access"]["discard"] == "unmap"
    off = qmp_steps(small(**{"backup.scheme": scheme}))
    assert "unmap" not in json.dumps(off.commands())  # nothing discards: QEMU's default


def test_cbw_timeout_overflow_is_stated_where_the_version_has_it():
    cfg = small(**{"backup.cbw-timeout": "45s", "backup.on-cbw-error": "break-snapshot"})
    old = qmp_steps(cfg, version=(7, 2))
    assert any("2.05 s" in u for u in old.unsupported)
    new = qmp_steps(cfg, version=(9, 2))
    assert not any("uint32 of nanoseconds" in u for u in new.unsupported)


def test_pull_incremental_exports_the_bitmap_frozen_at_t0_and_its_life_cycle():
    cfg = small(**{"backup.scheme": "fleecing-pull", "backup.sync": "incremental"})
    plan = qmp_steps(cfg, Endpoints(bitmap="b0"), version=(9, 2))
    (tx,) = cmds(plan, "transaction")
    acts = [(a["type"], a["data"].get("name") or a["data"].get("target"))
            for a in tx["arguments"]["actions"]]
    assert acts == [("block-dirty-bitmap-add", "b0.t0"), ("block-dirty-bitmap-merge", "b0.t0"),
                    ("block-dirty-bitmap-clear", "b0")]
    cbw = next(c["arguments"] for c in cmds(plan, "blockdev-add")
               if c["arguments"]["driver"] == "copy-before-write")
    assert cbw["bitmap"] == {"node": "disk0", "name": "b0.t0"}
    (exp,) = cmds(plan, "block-export-add")
    assert exp["arguments"]["bitmaps"] == [{"node": "disk0", "name": "b0.t0"}]
    # the transaction comes before the filter copies the bitmap
    order = [c["execute"] for c in plan.commands()]
    assert order.index("transaction") < order.index("qom-set")
    # success: drop the frozen copy; error: give its changes back to b0 first
    assert [c["arguments"] for c in cmds(plan, "block-dirty-bitmap-remove")] == [
        {"node": "disk0", "name": "b0.t0"}]
    err = [(s.execute, s.arguments) for s in plan.on_error if s.kind == "cmd"]
    assert ("block-dirty-bitmap-merge", {"node": "disk0", "target": "b0",
                                         "bitmaps": ["b0.t0"]}) in err
    assert err[-1] == ("block-dirty-bitmap-remove", {"node": "disk0", "name": "b0.t0"})


@pytest.mark.parametrize("scheme", ["fleecing-push", "fleecing-pull"])
def test_full_backup_of_a_fleecing_scheme_starts_the_bitmap_before_t0(scheme):
    plan = qmp_steps(small(**{"backup.scheme": scheme}), Endpoints(bitmap="b1"))
    order = [c["execute"] for c in plan.commands()]
    assert order.index("block-dirty-bitmap-add") < order.index("qom-set")
    (add,) = cmds(plan, "block-dirty-bitmap-add")
    assert add["arguments"] == {"node": "disk0", "name": "b1", "persistent": True}


def test_model_only_features_are_listed_not_dropped_silently():
    cfg = small(**{"backup.cache.ram.size": "64MiB", "backup.cache.cor": True,
                   "backup.lazy-discard": True, "backup.order": "ram-first",
                   "backup.on-cbw-error": "wait", "backup.cache.size": "1GiB"})
    plan = qmp_steps(cfg)
    text = " ".join(plan.unsupported)
    for word in ("RAM tier", "BDRV_REQ_UNNECESSARY", "lazy-discard", "ram-first",
                 "on-cbw-error=wait", "backup.cache.size"):
        assert word in text
    assert "on-cbw-error" not in json.dumps(plan.commands())  # QEMU's default stays
    out = render(plan)
    assert out.splitlines()[-len(plan.unsupported) - 1].startswith("# configured, but QEMU")
    for line in out.splitlines():  # every line is JSON or a comment
        assert line.startswith("#") or json.loads(line)["execute"]


def test_cbw_priority_listed_for_backup():
    plan = qmp_steps(small(**{"backup.scheme": "backup", "backup.cbw-priority": True}))
    assert any("cbw-priority" in u for u in plan.unsupported)


def test_pull_exports_the_snapshot_and_trim_needs_writable():
    cfg = small(**{"backup.scheme": "fleecing-pull", "backup.client.discard": True})
    plan = qmp_steps(cfg, Endpoints(nbd_server="unix:/tmp/x.sock"), version=(9, 2))
    (start,) = cmds(plan, "nbd-server-start")
    assert start["arguments"]["addr"] == {"type": "unix", "data": {"path": "/tmp/x.sock"}}
    (exp,) = cmds(plan, "block-export-add")
    assert exp["arguments"]["node-name"] == "fs-access" and exp["arguments"]["writable"]
    assert any(s.kind == "pause" for s in plan.steps)
    old = qmp_steps(cfg, version=(7, 2))  # blkdebug split on 7.2
    (exp,) = cmds(old, "block-export-add")
    assert exp["arguments"]["node-name"] == "fs-split"


def test_legacy_is_the_same_command_and_pull_2018_is_sync_none():
    leg = qmp_steps(small(**{"backup.scheme": "legacy-backup"}))
    assert backup_args(leg)["sync"] == "full" and "x-perf" not in backup_args(leg)
    assert any("same command" in s.text for s in leg.steps if s.kind == "note")
    p18 = qmp_steps(small(**{"backup.scheme": "fleecing-pull-2018"}))
    a = backup_args(p18)
    assert a["sync"] == "none" and a["target"] == "fs-fleece"
    assert cmds(p18, "blockdev-add")[0]["arguments"]["backing"] == "disk0"
    assert cmds(p18, "block-job-cancel")


def test_incremental_and_new_bitmap():
    cfg = small(**{"backup.scheme": "backup", "backup.sync": "incremental"})
    with pytest.raises(UserError, match="--bitmap"):
        qmp_steps(cfg)
    a = backup_args(qmp_steps(cfg, Endpoints(bitmap="b0")))
    assert a["sync"] == "incremental" and a["bitmap"] == "b0"
    full = qmp_steps(small(**{"backup.scheme": "backup"}), Endpoints(bitmap="b1"))
    (tx,) = cmds(full, "transaction")
    kinds = [x["type"] for x in tx["arguments"]["actions"]]
    assert kinds == ["block-dirty-bitmap-add", "blockdev-backup"]


def test_several_disks_go_in_one_grouped_transaction():
    ends = Endpoints(target="a.raw", more_disks=[("disk1", "b.raw")], bitmap="b0")
    plan = qmp_steps(small(**{"backup.scheme": "backup"}), ends)
    (tx,) = cmds(plan, "transaction")
    assert tx["arguments"]["properties"] == {"completion-mode": "grouped"}
    jobs = [a["data"] for a in tx["arguments"]["actions"] if a["type"] == "blockdev-backup"]
    assert [(j["device"], j["target"]) for j in jobs] == [("disk0", "fs-target-0"),
                                                          ("disk1", "fs-target-1")]
    assert [a["data"]["node"] for a in tx["arguments"]["actions"]
            if a["type"] == "block-dirty-bitmap-add"] == ["disk0", "disk1"]
    waits = [s.match["id"] for s in plan.steps if s.kind == "wait"]
    assert waits == ["fs-backup-0", "fs-backup-1"]
    with pytest.raises(UserError, match="grouped transaction"):
        qmp_steps(small(), ends)  # fleecing: the attach is no transaction action


@pytest.mark.parametrize("scheme", ["none", "overlay-cor", "overlay-commit",
                                    "fleecing-push-2018"])
def test_inexpressible_schemes_refused_in_one_line(scheme, tmp_path, capsys):
    p = tmp_path / "c.yaml"
    p.write_text(f"disk: {{size: 64MiB}}\nbackup: {{scheme: {scheme}}}\n")
    assert main(["qmp", str(p)]) == 2
    err = capsys.readouterr().err.strip()
    assert "cannot be expressed in QMP" in err and "\n" not in err


@pytest.mark.parametrize("argv, msg", [
    (["--qemu-version", "seven"], "MAJOR.MINOR"),
    (["--target", "nbd://"], "nbd://HOST"),
    (["--variant", "nope"], "expected one of"),
])
def test_bad_arguments_exit_2(argv, msg, tmp_path, capsys):
    p = tmp_path / "c.yaml"
    p.write_text("disk: {size: 64MiB}\nbackup: {scheme: [backup, fleecing-push]}\n")
    if argv[0] != "--variant":
        argv = argv + ["--variant", "backup"]
    assert main(["qmp", str(p)] + argv) == 2
    assert msg in capsys.readouterr().err


def test_cli_prints_json_lines(tmp_path, capsys):
    p = tmp_path / "c.yaml"
    p.write_text("disk: {size: 64MiB}\nbackup: {scheme: fleecing-push}\n")
    assert main(["qmp", str(p)]) == 0
    lines = [ln for ln in capsys.readouterr().out.splitlines() if not ln.startswith("#")]
    assert [json.loads(ln)["execute"] for ln in lines][:3] == [
        "blockdev-add", "blockdev-add", "qom-set"]


# ---------------------------------------------------------------- real QEMU

def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.qemu
@pytest.mark.timeout(120)
@needs_qemu
@pytest.mark.parametrize("scheme", ["backup", "fleecing-push"])
def test_generated_sequence_backs_up_t0_on_real_qemu(scheme, tmp_path):
    """Feed `fleecesim qmp`'s sequence to qemu-storage-daemon; the job is slowed by
    the config's own backup.speed while the guest writes over NBD; the target
    must equal the disk as it was at t0, and must differ from the disk after."""
    from fleecesim.qemu.qmp import QMPClient, event_time
    from fleecesim.qemu.runner import _Daemon, _write_pattern_disk

    size = 32 * MiB
    active, target, fleece = tmp_path / "active.raw", tmp_path / "target.raw", tmp_path / "f.qcow2"
    _write_pattern_disk(active, size, salt=3)
    subprocess.run(["qemu-img", "create", "-q", "-f", "raw", str(target), str(size)], check=True)
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(fleece), str(size)], check=True)
    qmp_sock, nbd_sock = tmp_path / "m.qmp", tmp_path / "g.sock"
    d = _Daemon("qsd", [
        "qemu-storage-daemon",
        "--chardev", f"socket,id=mon,path={qmp_sock},server=on,wait=off", "--monitor", "chardev=mon",
        "--blockdev", f"driver=file,node-name=disk,filename={active}",
        "--blockdev", "driver=raw,node-name=guest,file=disk",
        "--nbd-server", f"addr.type=unix,addr.path={nbd_sock}",
        "--export", "type=nbd,id=guest-exp,node-name=guest,name=guest,writable=on",
    ], tmp_path)
    try:
        d.wait_path(nbd_sock, 15)
        cfg = small(**{"disk.size": size, "backup.scheme": scheme, "backup.speed": "8MiB/s",
                       "backup.max-workers": 4})
        ends = Endpoints(disk_node="disk", attach="node:guest", fleece=str(fleece),
                         target=str(target))
        t0_copy = tmp_path / "t0.raw"
        writes_done = []

        def on_command(step, _ret):
            if step.execute == "blockdev-backup":
                # t0 has passed: the disk is as at t0 (no guest I/O so far)
                shutil.copyfile(active, t0_copy)
                script = "\n".join(f"write -P 0x{0x40 + i:02x} {i * 1536 * KiB} 64k"
                                   for i in range(20)) + "\nflush\n"
                subprocess.run(["qemu-io", "-f", "raw", f"nbd+unix:///guest?socket={nbd_sock}"],
                               input=script, text=True, check=True, capture_output=True,
                               timeout=30)
                writes_done.append(time.time())

        with QMPClient(str(qmp_sock), alive=d.alive) as client:
            ends.attach_options = node_options(client, "guest")
            plan = qmp_steps(cfg, ends, (7, 2))
            (done,) = run_steps(client, plan.steps, timeout=60, on_command=on_command)
            assert done["data"].get("error") is None
            assert event_time(done) > writes_done[0], "the writes must land while the job runs"
            client.execute("quit")
        d.stop()
        assert _sha(target) == _sha(t0_copy)
        assert _sha(active) != _sha(t0_copy)  # the guest did change the disk meanwhile
    finally:
        d.stop()
