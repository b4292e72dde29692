"""Progress on stderr (fleecesim/progress.py): a bar at a terminal, a plain
line every few seconds off one; sampled from a thread of its own, so it never
changes a run."""
import io
import json
import os
import re
import subprocess
import sys
import threading

import pytest

from fleecesim import progress, run as run_mod
from fleecesim.cli import main
from fleecesim.run import simulate
from fleecesim.store import to_json
from tests.conftest import REPO, small

# a run's line: phase, simulated time, share copied, elapsed, what is left
LINE = re.compile(r"^(?P<name>[\w.-]+): (?P<phase>set-up|warm-up|t0|backup|tail|finishing)"
                  r"(?: \([^)]*\))?, (?P<sim>\d+\.\d) simulated s, (?P<pct>\d+\.\d{1,3})% copied, "
                  r"(?:\d+h)?(?:\d+m)?\d+s elapsed, (?:~(?:\d+h)?(?:\d+m)?\d+s left"
                  r"(?: of the warm-up)?|remaining: estimating)$")


def _same(a: dict, b: dict) -> None:
    strip = ("wall_time_s",)
    assert to_json({k: v for k, v in a.items() if k not in strip}) == \
        to_json({k: v for k, v in b.items() if k not in strip})


def test_progress_does_not_change_the_run(monkeypatch):
    # the thread samples every 10 ms: many reads of the clock and the copier mid-run
    monkeypatch.setenv(progress.ENV_EVERY, "0.01s")
    cfg = small(**{"workload.iops": 3000})
    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    a = simulate(cfg, progress="lines")
    b = simulate(cfg)
    _same(a.summary, b.summary)
    assert a.requests.equals(b.requests)
    lines = err.getvalue().splitlines()
    assert lines[-1].startswith("fleecing-push: done in ") and "100.0% copied" in lines[-1]
    assert sum(bool(LINE.match(ln)) for ln in lines) >= 2, lines


def test_the_bar_does_not_change_the_run(monkeypatch):
    cfg = small(**{"workload.iops": 500})
    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    a = simulate(cfg, progress="bar").summary
    _same(a, simulate(cfg).summary)
    assert "% copied |" in err.getvalue()  # tqdm drew its bar


def test_mode_bar_at_a_terminal_lines_elsewhere(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False, raising=False)
    assert progress.mode() == "lines"
    assert progress.mode(quiet=True) == "off"
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    assert progress.mode() == "bar"
    monkeypatch.setenv("CI", "true")
    assert progress.mode() == "lines"  # CI logs get lines, not a redrawn bar
    monkeypatch.delenv("CI")
    monkeypatch.setenv("TERM", "dumb")
    assert progress.mode() == "lines"


def test_backup_estimate_is_the_pace_so_far(monkeypatch):
    """Closed form: 10 wall s into a backup of 50 simulated s, a quarter
    copied -> 30 wall s to copy the rest, plus the 5 s tail at the same
    0.2 wall s per simulated s."""
    class Env:
        now = 0.0

    class Copier:
        remaining = 400

    clock = [1000.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: clock[0])
    cfg = small(**{"run.tail": "5s", "run.max-time": "1000s"})
    p = progress.RunProgress("x", cfg, "lines", stream=io.StringIO(), every=3600)
    try:
        env, cp = Env(), Copier()
        p.started(env)
        env.now = 2.0
        p.backup_began(cp)
        assert p.copied() == 0.0 and p.left_s() is None  # nothing to go on yet
        clock[0] += 10.0
        env.now = 52.0
        cp.remaining = 300
        assert p.copied() == pytest.approx(0.25)
        assert p.left_s() == pytest.approx(30.0 + 5 * 0.2)
        # run.max-time nearer than the copy's end: the clock bounds the estimate
        p.max_time = 60.0
        assert p.left_s() == pytest.approx((2 + 60 - 52) * 0.2 + 5 * 0.2)
        assert LINE.match("x: " + p.fields())
    finally:
        p.close(ok=False)


def test_a_line_during_the_set_up_before_the_first_event(monkeypatch):
    """A large disk's layout takes seconds to draw before any event: the
    ticker reports that phase while the main thread is inside it."""
    monkeypatch.setenv(progress.ENV_EVERY, "0.02s")
    seen = threading.Event()

    class Stream(io.StringIO):
        def write(self, s):
            if "set-up (drawing the layout of" in s:
                seen.set()
            return super().write(s)

    err = Stream()
    monkeypatch.setattr(sys, "stderr", err)
    import fleecesim.vm as vm_mod  # the VM's set-up draws the layout (vm.py)
    real = vm_mod.initial_zero_map

    def slow_layout(*a, **kw):
        assert seen.wait(10), "no progress line while the layout was drawn"
        return real(*a, **kw)

    monkeypatch.setattr(vm_mod, "initial_zero_map", slow_layout)
    r = simulate(small(), progress="lines")
    assert r.summary["oracle_ok"], r.summary.get("error")
    first = next(ln for ln in err.getvalue().splitlines() if "set-up" in ln)
    assert LINE.match(first) and "4,096 64KiB clusters" in first, first


def test_cli_off_a_terminal_logs_progress_lines_and_the_same_table(tmp_path):
    """stderr to a file: plain lines (no carriage return, no escape codes)
    with the fields; stdout is the table a --quiet run prints."""
    cmd = [sys.executable, "-m", "fleecesim", "run", "configs/fleecing-vs-legacy.yaml",
           "--no-save", "--set", "disk.size=1GiB", "--set", "run.warmup=1s"]
    env = dict(os.environ, **{progress.ENV_EVERY: "0.2s"})
    env.pop("CI", None)
    log = tmp_path / "stderr.log"
    with open(log, "w") as f:
        out = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=f, text=True, cwd=REPO,
                             env=env, check=True).stdout
    quiet = subprocess.run(cmd + ["--quiet"], capture_output=True, text=True, cwd=REPO,
                           env=env, check=True)
    text = log.read_text()
    assert "\r" not in text and "\x1b" not in text
    lines = text.splitlines()
    runs = [m for m in map(LINE.match, lines) if m]
    # a run shorter than the interval may print only its done line
    assert runs and {m["name"] for m in runs} <= {"legacy-backup", "fleecing-push"}, text
    backup = [m for m in runs if m["phase"] == "backup"]
    assert backup and any("left" in m.group(0) for m in backup), text
    for name in ("legacy-backup", "fleecing-push"):
        pct = [float(m["pct"]) for m in runs if m["name"] == name]
        sim = [float(m["sim"]) for m in runs if m["name"] == name]
        assert pct == sorted(pct) and sim == sorted(sim) and max(pct, default=0.0) <= 100.0
        assert any(ln.startswith(f"{name}: done in ") for ln in lines)
    assert quiet.stderr == ""

    def table(s):  # wall time is the one row that differs from run to run
        return [ln for ln in s.splitlines() if not ln.startswith("wall time")]
    assert table(out) == table(quiet.stdout) and "backup duration" in out


def test_json_prints_no_progress():
    cmd = [sys.executable, "-m", "fleecesim", "run", "configs/fleecing-vs-legacy.yaml", "--json",
           "--no-save", "--set", "disk.size=256MiB", "--set", "run.warmup=0.2s",
           "--set", "backup.scheme=fleecing-push"]
    env = dict(os.environ, **{progress.ENV_EVERY: "0.05s"})
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, check=True, env=env)
    assert out.stderr == "" and json.loads(out.stdout)[0]["oracle_ok"]


def test_bad_interval_is_one_line(monkeypatch, capsys):
    monkeypatch.setenv(progress.ENV_EVERY, "soon")
    rc = main(["run", str(REPO / "configs/fleecing-vs-legacy.yaml"), "--no-save"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1
    assert err[0].startswith("fleecesim: error: FLEECESIM_PROGRESS_EVERY=soon: expected a time")


SWEEP = {"name": "tiny-progress", "replications": 3, "grid": {"backup.max-workers": [1, 8]},
         "base": {"disk": {"size": "64MiB"}, "workload": {"iops": 2000},
                  "backup": {"scheme": "fleecing-push"},
                  "run": {"seed": 3, "warmup": "0.3s", "tail": "0.1s"}}}


def test_sweep_with_jobs_logs_runs_and_estimate(tmp_path):
    import yaml
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(SWEEP))
    env = dict(os.environ, **{progress.ENV_EVERY: "0.1s"})
    env.pop("CI", None)
    p = subprocess.run([sys.executable, "-m", "fleecesim", "sweep", str(path), "--jobs", "2",
                        "--out", str(tmp_path / "out")], capture_output=True, text=True,
                       cwd=REPO, env=env, timeout=300)
    assert p.returncode == 0, p.stderr
    assert "\r" not in p.stderr and "\x1b" not in p.stderr
    pat = re.compile(r"^tiny-progress: (\d+)/6 runs, (?:\d+m)?\d+s elapsed, "
                     r"(~(?:\d+m)?\d+s left|remaining: estimating|done)$")
    found = [m for m in map(pat.match, p.stderr.splitlines()) if m]
    counts = [int(m[1]) for m in found]
    assert counts[0] == 0 and counts[-1] == 6 and counts == sorted(counts), p.stderr
    assert found[-1][2] == "done" and "6 runs (0 failed)" in p.stderr
