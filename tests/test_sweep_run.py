"""Sweep execution: serial == processes == Dask, failures recorded, kill + resume,
CI half-widths."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import yaml

from fleecesim.cli import main
from fleecesim.summarize import ci_table
from fleecesim.sweep import load_latency, load_runs, load_timelines, read_manifest, run_sweep

TINY_BASE = {
    "disk": {"size": "64MiB"},
    "devices": {"local": {"preset": "nvme"}, "target": {"preset": "nbd-1gbe"}},
    "workload": {"iops": 2000, "mix": {"read": 0.5, "write": 0.5}},
    "backup": {"scheme": ["fleecing-pull", "fleecing-push"]},
    "run": {"seed": 3, "warmup": "0.3s", "tail": "0.1s", "max-time": "60s"},
}
TINY = {"name": "tiny", "base": TINY_BASE, "replications": 2,
        "grid": {"backup.max-workers": [1, 8]},
        "points": [{"backup.cache.size": "64KiB"}, {"backup.cache.size": "1KiB"}]}
WALL = ["wall_time_s"]  # the only column allowed to differ between executors


def _write(tmp_path, sweep) -> Path:
    p = tmp_path / f"{sweep['name']}.yaml"
    p.write_text(yaml.safe_dump(sweep))
    return p


def test_serial_processes_and_dask_give_identical_tables(tmp_path):
    path = _write(tmp_path, TINY)
    outs = {}
    for how, kw in {"serial": {"jobs": 1}, "jobs2": {"jobs": 2},
                    "dask": {"dask_local": True, "jobs": 2}}.items():
        outs[how] = run_sweep(path, out=tmp_path / how, quiet=True, **kw)
    ref = load_runs(outs["serial"])
    assert len(ref) == 2 * 2 * 2 * 2 - 4  # invalid points have no variants: one row per rep
    for how in ("jobs2", "dask"):
        pd.testing.assert_frame_equal(ref.drop(columns=WALL),
                                      load_runs(outs[how]).drop(columns=WALL))
        pd.testing.assert_frame_equal(load_timelines(outs["serial"]), load_timelines(outs[how]))
        pd.testing.assert_frame_equal(load_latency(outs["serial"]), load_latency(outs[how]))
    ok = ref[ref["error"].isna()]
    assert ok["oracle_ok"].all()
    # common random numbers: at one replication every scheme saw the same guest
    # before the backup started
    # (the arrival count: on the NVMe preset a lone write's latency is its
    # deterministic service, so the baseline p99 no longer differs by seed)
    base = ok.groupby("replication")["guest_iops_baseline"].nunique()
    assert (base == 1).all()
    assert ok.groupby("variant")["guest_iops_baseline"].nunique().max() == 2


def test_a_failing_point_is_a_row_with_its_error(tmp_path, monkeypatch):
    import fleecesim.run as run_mod
    real = run_mod.simulate

    def flaky(cfg, name=None, **kw):
        if cfg.backup.max_workers == 8 and name == "fleecing-push":
            raise RuntimeError("injected failure")
        return real(cfg, name, **kw)
    monkeypatch.setattr(run_mod, "simulate", flaky)
    out = run_sweep(_write(tmp_path, TINY), out=tmp_path, jobs=1, quiet=True)
    runs = load_runs(out)
    assert len(runs) == len(read_manifest(out)["runs"])
    failed = runs[runs["error"].notna()]
    injected = failed[failed["error"].str.contains("injected failure")]
    assert len(injected) == 2 and set(injected["variant"]) == {"fleecing-push"}
    assert injected["error"].iloc[0] == "RuntimeError: injected failure"
    assert "Traceback" in injected["traceback"].iloc[0]
    invalid = failed[failed["error"].str.startswith("ConfigError")]
    assert len(invalid) == 4 and invalid["backup.cache.size"].eq("1KiB").all()
    assert runs.loc[runs["error"].isna(), "oracle_ok"].all()


def test_killed_sweep_resumes_with_every_run_exactly_once(tmp_path):
    sweep = dict(TINY, name="killme", replications=3, points=[{"backup.cache.size": "64KiB"}])
    sweep["base"] = dict(TINY_BASE, disk={"size": "256MiB"})
    path = _write(tmp_path, sweep)
    cmd = [sys.executable, "-m", "fleecesim", "sweep", str(path), "--jobs", "2",
           "--out", str(tmp_path / "killme"), "--quiet"]
    proc = subprocess.Popen(cmd, start_new_session=True, stderr=subprocess.PIPE)
    runs_dir = tmp_path / "killme" / "runs"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(list(runs_dir.glob("*.parquet"))) < 3:
        time.sleep(0.05)
        assert proc.poll() is None, proc.stderr.read().decode()
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    before = {p.name: p.stat().st_mtime_ns for p in runs_dir.glob("*.parquet")}
    total = len(read_manifest(tmp_path / "killme")["runs"])
    assert 3 <= len(before) < total
    assert main(["sweep", str(path), "--jobs", "2", "--out", str(tmp_path / "killme"),
                 "--resume", "--quiet"]) == 0
    runs = load_runs(tmp_path / "killme")
    assert len(runs) == total == runs["run_id"].nunique()
    assert list(runs["index"]) == list(range(total))
    assert runs["error"].isna().all()
    after = {p.name: p.stat().st_mtime_ns for p in runs_dir.glob("*.parquet")}
    assert all(after[k] == v for k, v in before.items())  # done runs were not re-run
    assert not list((tmp_path / "killme").rglob(".*.tmp"))


def test_ci_half_widths_shrink_as_replications_grow(tmp_path):
    sweep = {"name": "ci", "base": dict(TINY_BASE, backup={"scheme": "fleecing-push"}),
             "grid": {"backup.max-workers": [4]}}
    hw = {}
    for k in (3, 12):
        out = run_sweep(sweep, out=tmp_path / str(k), jobs=1, quiet=True, replications=k)
        ci = ci_table(load_runs(out), ["cbw_count", "guest_ios", "write_mean_s"])
        assert (ci["n"] == k).all()
        assert ((ci["ci_low"] <= ci["mean"]) & (ci["mean"] <= ci["ci_high"])).all()
        hw[k] = ci.set_index("metric")["half_width"]
    # t(0.975, 2)/sqrt(3) = 2.48 vs t(0.975, 11)/sqrt(12) = 0.64: ~4x narrower
    assert (hw[12] < hw[3] * 0.75).all(), (hw[3], hw[12])


def test_summarize_cli_table_and_csv(tmp_path, capsys):
    out = run_sweep(_write(tmp_path, TINY), out=tmp_path, jobs=1, quiet=True)
    assert main(["summarize", str(out), "--metrics", "backup_duration_s,cbw_count"]) == 0
    text = capsys.readouterr().out
    assert "±" in text and "fleecing-push" in text and "4 run(s) failed" in text
    assert main(["summarize", str(out), "--csv", str(tmp_path / "ci.csv")]) == 0
    ci = pd.read_csv(tmp_path / "ci.csv")
    assert {"metric", "n", "mean", "ci_low", "ci_high", "backup.max-workers"} <= set(ci)
    assert main(["summarize", str(out), "--metrics", "nope"]) == 2


def test_cli_dask_local_exits_cleanly(tmp_path):
    sweep = dict(TINY, name="dask", replications=1, points=[{"backup.cache.size": "64KiB"}])
    path = _write(tmp_path, sweep)
    t = time.monotonic()
    p = subprocess.run([sys.executable, "-m", "fleecesim", "sweep", str(path), "--dask-local",
                        "--jobs", "2", "--out", str(tmp_path / "dask")],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert "Traceback" not in p.stderr and "Error" not in p.stderr, p.stderr
    assert "4 runs (0 failed)" in p.stderr
    assert time.monotonic() - t < 60


def test_progress_bar_only_on_a_terminal(monkeypatch, tmp_path):
    """A bar at a terminal; lines off one or in CI (tests/test_progress.py); none quiet."""
    import io
    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    monkeypatch.setenv("CI", "true")
    run_sweep(dict(TINY, replications=1), results_dir=tmp_path / "q", jobs=1, quiet=True)
    assert err.getvalue() == ""
    run_sweep(dict(TINY, replications=1), results_dir=tmp_path / "l", jobs=1)
    lines = err.getvalue().splitlines()
    runs = load_runs(tmp_path / "l")
    n, failed = len(runs), int(runs["error"].notna().sum())
    assert lines[0].startswith(f"tiny: 0/{n} runs, ")
    shown = f" ({failed} failed)" if failed else ""
    assert lines[-1].startswith(f"tiny: {n}/{n} runs{shown}, ")
    assert lines[-1].endswith(", done") and "\r" not in err.getvalue()


def test_cli_exit_status_says_whether_any_run_failed(tmp_path):
    ok = dict(TINY, name="ok", replications=1, grid={}, points=[{"backup.cache.size": "64KiB"}])
    bad = dict(ok, name="bad", points=[{"backup.cache.size": "64KiB"},
                                       {"backup.cache.size": "1KiB"}])  # < one cluster
    codes = {}
    for sweep in (ok, bad):
        p = subprocess.run([sys.executable, "-m", "fleecesim", "sweep", str(_write(tmp_path, sweep)),
                            "--jobs", "1", "--quiet", "--out", str(tmp_path / sweep["name"])],
                           capture_output=True, text=True, timeout=120)
        codes[sweep["name"]] = (p.returncode, p.stderr)
    assert codes["ok"][0] == 0
    # some runs failed: their rows are kept, the count is said, the exit status is 1
    # (the invalid point never resolves to variants: one row for it, two for the good one)
    assert codes["bad"][0] == 1 and "3 runs (1 failed)" in codes["bad"][1]
    assert "Traceback" not in codes["bad"][1]


def test_a_sweep_ends_saying_what_it_wrote_where(tmp_path, capsys):
    """Like ``run``'s saved line: bytes and files of the sweep's own results,
    summed here from the folder (fmt_size of the same sum); a file of
    something else in the folder (a plot) is not the sweep's."""
    import re

    from fleecesim.units import fmt_size
    small = {**TINY, "points": [], "grid": {"backup.max-workers": [1, 8]}, "replications": 1}
    path = _write(tmp_path, small)
    out = tmp_path / "R"

    def line():
        err = capsys.readouterr().err.splitlines()
        return next(ln for ln in err if " runs (" in ln)
    assert main(["sweep", str(path), "--jobs", "1", "--out", str(out)]) == 0
    files = [p for p in out.rglob("*") if p.is_file()]
    assert {p.relative_to(out).parts[0] for p in files} == {"sweep.json", "runs", "timelines",
                                                            "latency"}
    total = sum(p.stat().st_size for p in files)
    first = line()
    assert first.startswith(f"4 runs (0 failed); results in {out}/: {fmt_size(total)} in "
                            f"{len(files)} files (runs/ "), first
    assert len(files) == 1 + 3 * 4  # the manifest, and per run its row, timeline, latency
    part = {m[0]: m[1] for m in re.findall(r"(\w+)/ ([0-9.]+\w+)", first)}
    assert part == {d: fmt_size(sum(p.stat().st_size for p in (out / d).iterdir()))
                    for d in ("runs", "timelines", "latency")}
    (out / "plots").mkdir()
    (out / "plots" / "cdf.png").write_bytes(b"x" * 5000)
    assert main(["sweep", str(path), "--jobs", "1", "--out", str(out), "--resume"]) == 0
    assert line() == first
