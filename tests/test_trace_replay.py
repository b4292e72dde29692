"""Trace workloads inside the simulator (readers themselves: test_traces.py)."""
import subprocess
import sys
from pathlib import Path

import pytest

from fleecesim.config import load_config, resolve, variants
from fleecesim.run import simulate
from tests.conftest import REPO, SHARED_TRACES


def _write_fio(path, lines):
    path.write_text("fio version 3 iolog\n0 /dev/vdb add\n0 /dev/vdb open\n" + "".join(lines))


def test_trace_requests_reach_the_disk_in_order(tmp_path):
    f = tmp_path / "t.log"
    # 200 writes, 1 ms apart, each to its own cluster: under fleecing every one costs a CBW
    _write_fio(f, [f"{i * 1000} /dev/vdb write {i * 65536} 4096\n" for i in range(200)])
    cfg = resolve({"disk": {"size": "64MiB"}, "workload": {"trace": str(f)},
                   "backup": {"scheme": "fleecing-push"},
                   "devices": {"target": {"kind": "remote", "rtt": "1ms",
                                          "link-bandwidth": "10MiB/s", "queue-depth": 16,
                                          "backend": {"preset": "nvme"}}},
                   "run": {"warmup": 0, "tail": 0}})
    r = simulate(cfg)
    s = r.summary
    assert s["guest_ios"] == 200 and s["oracle_ok"]
    # the backup of 64 MiB at 10 MiB/s outlasts the 0.2 s trace: every write hit
    # a cluster not yet copied, so each one copied exactly its own cluster
    assert s["cbw_count"] == 200 and s["cbw_bytes"] == 200 * 65536
    assert (r.requests["time"].diff().dropna().round(9) == 0.001).all()


def test_offset_beyond_disk_is_one_clear_error(tmp_path):
    f = tmp_path / "big.log"
    _write_fio(f, ["0 /dev/vdb write 0 4096\n", f"10 /dev/vdb write {2**40} 4096\n"])
    p = subprocess.run([sys.executable, "-m", "fleecesim", "run", "configs/trace-replay.yaml",
                        "--set", f"workload.trace={f}", "--set", "workload.map=error",
                        "--set", "workload.format=fio", "--quiet", "--out", str(tmp_path / "out")],
                       capture_output=True, text=True, cwd=REPO)
    assert p.returncode == 2, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "big.log" in lines[0] and "Traceback" not in p.stderr
    assert not (tmp_path / "out").exists()


def test_closed_loop_trace_keeps_order(tmp_path):
    f = tmp_path / "t.log"
    _write_fio(f, [f"{i} /dev/vdb read {i * 4096} 4096\n" for i in range(100)])
    cfg = resolve({"disk": {"size": "64MiB"}, "workload": {"trace": str(f), "iodepth": 1},
                   "backup": {"scheme": "none"}, "run": {"warmup": "1s", "tail": 0}})
    r = simulate(cfg)
    assert list(r.requests["offset"]) == [i * 4096 for i in range(100)]
    # iodepth 1: each read starts when the previous one ends; each pays the
    # host's request cost and copy (config.HostSpec defaults), then the NVMe
    # preset: latency, then the pipe (bandwidth or IOPS cap)
    d = cfg.devices["local"]
    lat = 8e-6 + 4096 / (8 * 2**30) + d.read_latency + max(4096 / d.read_bandwidth,
                                                            1 / d.read_iops)
    assert r.requests["time"].iloc[-1] == pytest.approx(99 * lat)


def test_bundled_trace_replay_passes_oracle():
    cfg = load_config(REPO / "configs" / "trace-replay.yaml", ["disk.size=4GiB"])
    n = len(Path(cfg.workload.trace).read_text().splitlines())  # one request a line
    for name, c in variants(cfg):
        s = simulate(c, name).summary
        assert s.get("error") is None, s.get("error")
        assert s["oracle_ok"], name
        assert s["guest_ios"] > n  # the bundled trace looped to cover the backup


@pytest.mark.skipif(not SHARED_TRACES.is_dir(), reason="../shared/traces not present")
def test_recorded_tpcc_trace_replays_through_the_bundled_config():
    cfg = load_config(REPO / "configs" / "trace-replay.yaml",
                      ["disk.size=4GiB", f"workload.trace={SHARED_TRACES / 'mqsim-tpcc-small.trace'}"])
    for name, c in variants(cfg):
        s = simulate(c, name).summary
        assert s.get("error") is None and s["oracle_ok"], name
        assert s["guest_ios"] > 6999  # the 6,999-request trace looped to cover the backup
