import json
import subprocess
import sys

import pandas as pd

from tests.conftest import REPO

REQUIRED = ["scheme", "seed", "sim_time_s", "wall_time_s", "backup_duration_s", "guest_ios",
            "read_p50_s", "read_p99_s", "write_p50_s", "write_p99_s", "write_p99_baseline_s",
            "write_max_s", "cbw_count", "cbw_bytes", "source_read_bytes", "target_write_bytes",
            "fleecing_peak_bytes", "oracle_ok", "oracle_violations"]


def _run(*args, cwd=REPO):
    return subprocess.run([sys.executable, "-m", "fleecesim", *args], capture_output=True,
                          text=True, cwd=cwd)


def test_run_json_and_results_files(tmp_path):
    p = _run("run", "configs/fleecing-vs-legacy.yaml", "--json", "--out", str(tmp_path),
             "--set", "disk.size=256MiB", "--set", "run.warmup=0.3s")
    assert p.returncode == 0, p.stderr
    rows = json.loads(p.stdout)  # stdout holds only the JSON list
    assert [r["scheme"] for r in rows] == ["legacy-backup", "fleecing-push"]
    for r in rows:
        assert set(REQUIRED) <= set(r)
        assert r["oracle_ok"] is True
    d = tmp_path / "fleecing-vs-legacy"
    summ = json.loads((d / "fleecing-push" / "summary.json").read_text())
    assert summ["config"]["disk"]["size"] == 256 * 2**20  # resolved config is kept
    req = pd.read_parquet(d / "fleecing-push" / "requests.parquet")
    assert len(req) == summ["guest_ios"]
    tl = pd.read_parquet(d / "fleecing-push" / "timeline.parquet")
    assert "fleecing_bytes" in set(tl["level"])
    assert tl.loc[tl.level == "fleecing_bytes", "value"].max() == summ["fleecing_peak_bytes"]


def test_table_output_is_side_by_side(tmp_path):
    p = _run("run", "configs/fleecing-vs-legacy.yaml", "--no-save",
             "--set", "disk.size=128MiB", "--set", "run.warmup=0.2s", "--quiet")
    assert p.returncode == 0, p.stderr
    header = p.stdout.splitlines()[0]
    assert "legacy-backup" in header and "fleecing-push" in header
    assert "oracle ok" in p.stdout


def test_unfinished_backup_exits_nonzero_and_says_unfinished(tmp_path):
    p = _run("run", "configs/fleecing-vs-legacy.yaml", "--no-save", "--quiet",
             "--set", "disk.size=128MiB", "--set", "backup.scheme=legacy-backup",
             "--set", "run.max-time=0.1s")
    assert p.returncode == 1
    assert "backup unfinished at run.max-time" in p.stderr
    assert "NOT the point-in-time image" not in p.stderr  # not a wrong image: no image yet
