"""Bad input to sweep / summarize / plot: one line on stderr naming the
argument or field and what was expected, exit status 2, no traceback, and
nothing written."""
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from fleecesim.cli import main
from fleecesim.sweep import run_sweep

REPO = Path(__file__).resolve().parents[1]
BASE = {
    "disk": {"size": "64MiB"},
    "devices": {"local": {"preset": "nvme"}, "target": {"preset": "nbd-1gbe"}},
    "workload": {"iops": 2000, "mix": {"read": 0.5, "write": 0.5}},
    "backup": {"scheme": ["backup", "fleecing-push"]},
    "run": {"seed": 3, "warmup": "0.3s", "tail": "0.1s", "max-time": "60s"},
}
GOOD = {"name": "good", "base": BASE, "replications": 3, "grid": {"backup.max-workers": [1, 8]}}


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory):
    return run_sweep(GOOD, results_dir=tmp_path_factory.mktemp("res") / "good", jobs=1,
                     quiet=True)


def _tree(d: Path) -> dict:
    return {str(p.relative_to(d)): p.stat().st_mtime_ns for p in d.rglob("*")}


def _one_line_error(capsys, *needles):
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fleecesim: error: "), err
    for n in needles:
        assert n in lines[0], (n, lines[0])


@pytest.mark.parametrize("sweep, args, needles", [
    ({}, ["--replications", "0"], ["--replications 0", ">= 1"]),
    ({}, ["--replications", "-1"], ["--replications -1", ">= 1"]),
    ({}, ["--jobs", "0"], ["--jobs 0"]),
    ({"grid": {}}, [], ["grid, zip and points are all empty", "points: [{}]"]),
    ({"grid": {}, "zip": []}, [], ["grid, zip and points"]),
    ({"name": "../escape"}, [], ["name:", "not a path", "../escape"]),
    ({"name": "ABS"}, [], ["name:", "not a path"]),  # an absolute path in tmp_path
    ({"name": ".."}, [], ["name:"]),
    ({}, ["--out", "FILE"], ["--out", "not a directory"]),
    ({}, ["--out", "/proc/nope"], ["--out /proc/nope"]),
    ({}, ["--out", "NONEMPTY"], ["--out", "not empty", "no sweep.json"]),
    ({}, ["--out", "OTHER"], ["--out", "sweep 'other'", "not 'good'"]),
])
def test_bad_sweep_input(tmp_path, monkeypatch, capsys, sweep, args, needles):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "FILE").write_text("x")
    (tmp_path / "NONEMPTY").mkdir()
    (tmp_path / "NONEMPTY" / "notes.txt").write_text("mine")
    run_sweep(dict(GOOD, name="other", replications=1), results_dir=tmp_path / "OTHER",
              jobs=1, quiet=True)
    path = tmp_path / "s.yaml"
    if sweep.get("name") == "ABS":  # never a real /abs, even if the check regressed
        sweep = dict(sweep, name=str(tmp_path / "abs" / "olute"))
    path.write_text(yaml.safe_dump(dict(GOOD, **sweep)))
    before = _tree(tmp_path)
    args = [str(tmp_path / a) if a in ("FILE", "NONEMPTY", "OTHER") else a for a in args]
    assert main(["sweep", str(path), "--jobs", "1", "--quiet", *args]) == 2
    _one_line_error(capsys, *needles)
    assert _tree(tmp_path) == before  # nothing written, nothing removed


def test_points_with_one_empty_override_set_runs_the_base_alone(tmp_path):
    out = run_sweep(dict(GOOD, grid={}, points=[{}], replications=2),
                    results_dir=tmp_path / "r", jobs=1, quiet=True)
    assert len(list((out / "runs").glob("*.parquet"))) == 2 * 2  # 2 schemes x 2 replications


def test_an_unreachable_scheduler_fails_fast_in_one_line(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(GOOD))
    t = time.monotonic()
    p = subprocess.run([sys.executable, "-m", "fleecesim", "sweep", str(path), "--scheduler",
                        "tcp://127.0.0.1:1", "--out", str(tmp_path / "r")],
                       capture_output=True, text=True, timeout=60, cwd=REPO)
    assert p.returncode == 2, p.stderr
    assert p.stderr.count("\n") == 1 and "--scheduler tcp://127.0.0.1:1" in p.stderr, p.stderr
    assert time.monotonic() - t < 15
    assert not (tmp_path / "r").exists()


def test_out_dir_is_the_results_directory_that_summarize_reads(tmp_path, capsys):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(dict(GOOD, replications=1)))
    assert main(["sweep", str(path), "--jobs", "1", "--out", str(tmp_path / "R")]) == 0
    assert (tmp_path / "R" / "sweep.json").is_file()
    assert f"next: fleecesim summarize {tmp_path / 'R'}" in capsys.readouterr().err
    assert main(["summarize", str(tmp_path / "R")]) == 0
    assert "fleecing-push" in capsys.readouterr().out


@pytest.mark.parametrize("args, needles", [
    (["--csv", "/proc/x"], ["--csv /proc/x"]),
    (["--csv", "NODIR/x.csv"], ["--csv"]),
    (["--metrics", "nope"], ["--metrics", "nope"]),
])
def test_bad_summarize_input(sweep_dir, tmp_path, monkeypatch, capsys, args, needles):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "NODIR").write_text("a file, not a directory")
    before = _tree(tmp_path)
    assert main(["summarize", str(sweep_dir), *args]) == 2
    _one_line_error(capsys, *needles)
    assert _tree(tmp_path) == before


def test_summarize_into_a_closed_pipe_exits_quietly(sweep_dir):
    p = subprocess.Popen([sys.executable, "-m", "fleecesim", "summarize", str(sweep_dir)],
                         cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p.stdout.close()  # `| head` that has already gone
    err = p.stderr.read().decode()
    assert p.wait(timeout=60) == 128 + 13, err
    assert err == ""


@pytest.mark.parametrize("args, needles", [
    (["--kind", "cdf", "--format", "pdf,jpg,bogus"], ["--format", "bogus", "png"]),
    (["--kind", "cdf", "--by", "nosuch"], ["--by nosuch", "backup.max-workers", "variant"]),
    (["--kind", "bars", "--by", "nosuch"], ["--by nosuch", "backup.max-workers"]),
    (["--kind", "occupancy", "--replication", "7"], ["--replication 7", "0, 1, 2"]),
    (["--kind", "occupancy", "--replication", "-1"], ["--replication -1"]),
    (["--kind", "bars", "--metric", "nope"], ["--metric nope"]),
    (["--kind", "cdf", "--where", "nosuch=1"], ["--where nosuch"]),
    (["--kind", "cdf", "--out", "/proc/nope/fig"], ["/proc/nope/fig"]),
])
def test_bad_plot_input_writes_nothing(sweep_dir, capsys, args, needles):
    plots = sweep_dir / "plots"
    before = _tree(plots) if plots.exists() else {}
    assert main(["plot", str(sweep_dir), *args, "--quiet"]) == 2
    _one_line_error(capsys, *needles)
    assert (_tree(plots) if plots.exists() else {}) == before


def test_plot_file_names_tell_metric_and_slice_apart(sweep_dir, capsys):
    cases = [["--kind", "bars", "--metric", "cbw_count"],
             ["--kind", "bars", "--metric", "write_p99_s"],
             ["--kind", "bars", "--metric", "cbw_count", "--where", "backup.max-workers=1"],
             ["--kind", "bars", "--metric", "cbw_count", "--where", "backup.max-workers=8"],
             ["--kind", "cdf", "--where", "variant=fleecing-push"],
             ["--kind", "occupancy", "--replication", "1"]]
    written = []
    for args in cases:
        assert main(["plot", str(sweep_dir), *args, "--format", "png"]) == 0
        written += capsys.readouterr().out.split()
    assert len(set(written)) == len(cases), written
    assert all(Path(p).parent == sweep_dir / "plots" for p in written)
    assert any("cbw_count" in p and "backup.max-workers=8" in p for p in written)


def test_results_and_plots_follow_the_umask(tmp_path, capsys):
    old = os.umask(0o022)
    try:
        out = run_sweep(dict(GOOD, replications=1), results_dir=tmp_path / "r", jobs=1,
                        quiet=True)
        assert main(["plot", str(out), "--kind", "cdf", "--format", "png", "--quiet"]) == 0
    finally:
        os.umask(old)
    files = [p for p in out.rglob("*") if p.is_file()]
    assert any(p.suffix == ".png" for p in files) and any(p.suffix == ".parquet" for p in files)
    assert {oct(p.stat().st_mode & 0o777) for p in files} == {"0o644"}
