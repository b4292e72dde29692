"""Sweeps under faults: SIGTERM and Ctrl-C stop cleanly (finished runs kept,
no process left behind), a killed worker's runs are run again, and --resume
completes a sweep exactly once, failed runs included."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import yaml

from fleecesim.cli import main
from fleecesim.sweep import load_runs, read_manifest, run_sweep

REPO = Path(__file__).resolve().parents[1]
BASE = {
    "disk": {"size": "2GiB"},  # ~1 s a run: signals land while runs are in flight
    "devices": {"local": {"preset": "nvme"}, "target": {"preset": "nbd-1gbe"}},
    "workload": {"iops": 2000, "mix": {"read": 0.5, "write": 0.5}},
    "backup": {"scheme": ["backup", "fleecing-push"]},
    "run": {"seed": 3, "warmup": "0.3s", "tail": "0.1s", "max-time": "60s"},
}
SWEEP = {"name": "faults", "base": BASE, "replications": 3,
         "grid": {"backup.max-workers": [1, 8]}}  # 12 runs


def _start(tmp_path, *extra):
    path = tmp_path / "faults.yaml"
    path.write_text(yaml.safe_dump(SWEEP))
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "fleecesim", "sweep", str(path), "--jobs", "2",
           "--out", str(out), *extra]
    proc = subprocess.Popen(cmd, cwd=REPO, start_new_session=True, stderr=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, text=True)
    return proc, path, out


def _rows(out: Path) -> int:
    return len(list((out / "runs").glob("*.parquet")))


class Descendants:
    """Every process the sweep started, remembered as it goes (workers come
    and go; a pool restarted after a lost worker has new ones)."""

    def __init__(self, pid):
        self.root = psutil.Process(pid)
        self.seen: dict[int, psutil.Process] = {}

    def look(self) -> None:
        try:
            for c in self.root.children(recursive=True):
                self.seen.setdefault(c.pid, c)
        except psutil.NoSuchProcess:
            pass

    def workers(self) -> list[psutil.Process]:
        """The forkserver's children: the pool's worker processes."""
        self.look()
        return [c for c in self.seen.values() if c.is_running() and c.ppid() != self.root.pid]

    def alive_after(self, timeout: float) -> list[psutil.Process]:
        _, alive = psutil.wait_procs(list(self.seen.values()), timeout=timeout)
        return alive


def _wait_rows(proc, out, n, tree, timeout=90):
    deadline = time.monotonic() + timeout
    while _rows(out) < n:
        assert time.monotonic() < deadline, "sweep too slow"
        assert proc.poll() is None, proc.stderr.read()
        tree.look()
        time.sleep(0.02)
    tree.look()


def _every_run_once(out: Path) -> None:
    runs = load_runs(out)
    total = len(read_manifest(out)["runs"])
    assert len(runs) == total == runs["run_id"].nunique()
    assert list(runs["index"]) == list(range(total))
    assert runs["error"].isna().all(), runs["error"].dropna().tolist()
    assert not list(out.rglob(".*.tmp"))


def test_sigterm_stops_the_sweep_and_leaves_no_process(tmp_path):
    proc, path, out = _start(tmp_path, "--quiet")
    tree = Descendants(proc.pid)
    _wait_rows(proc, out, 2, tree)
    assert tree.workers(), "no worker processes seen"
    proc.send_signal(signal.SIGTERM)  # the main process only, as `kill PID` does
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "Traceback" not in err and "stopped by SIGTERM" in err, err
    assert tree.alive_after(10) == [], "processes left behind"
    before = {p.name: p.stat().st_mtime_ns for p in (out / "runs").glob("*.parquet")}
    assert 2 <= len(before) < 12
    assert main(["sweep", str(path), "--jobs", "2", "--out", str(out), "--resume",
                 "--quiet"]) == 0
    _every_run_once(out)
    after = {p.name: p.stat().st_mtime_ns for p in (out / "runs").glob("*.parquet")}
    assert all(after[k] == v for k, v in before.items())  # finished runs not run again


def test_ctrl_c_keeps_the_runs_that_finish_in_the_grace_period(tmp_path):
    proc, path, out = _start(tmp_path, "--quiet")
    tree = Descendants(proc.pid)
    _wait_rows(proc, out, 1, tree)
    at_signal = _rows(out)
    os.killpg(proc.pid, signal.SIGINT)  # a terminal's Ctrl-C: the whole process group
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGINT, err
    assert "waiting up to" in err and "Traceback" not in err, err
    assert tree.alive_after(10) == []
    runs = load_runs(out)
    # runs in flight at Ctrl-C finished and were stored (none failed with
    # KeyboardInterrupt in a worker); nothing new was started
    assert at_signal < len(runs) <= at_signal + 2 + 1, (at_signal, len(runs))
    assert runs["error"].isna().all(), runs["error"].dropna().tolist()
    assert main(["sweep", str(path), "--jobs", "2", "--out", str(out), "--resume",
                 "--quiet"]) == 0
    _every_run_once(out)


def test_a_killed_worker_s_runs_are_run_again(tmp_path):
    proc, _, out = _start(tmp_path, "--quiet")
    tree = Descendants(proc.pid)
    _wait_rows(proc, out, 1, tree)
    victim = tree.workers()[0]
    victim.send_signal(signal.SIGKILL)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "Traceback" not in err, err
    assert not victim.is_running()
    _every_run_once(out)
    assert tree.alive_after(10) == []


def test_resume_runs_failed_runs_again_and_says_so(tmp_path, monkeypatch, capsys):
    import fleecesim.run as run_mod
    real = run_mod.simulate
    sweep = dict(SWEEP, base=dict(BASE, disk={"size": "64MiB"}), replications=2)

    def flaky(cfg, name=None, **kw):
        if cfg.backup.max_workers == 8 and name == "fleecing-push":
            raise RuntimeError("injected failure")
        return real(cfg, name, **kw)
    monkeypatch.setattr(run_mod, "simulate", flaky)
    out = run_sweep(sweep, results_dir=tmp_path / "r", jobs=1, quiet=True)
    assert load_runs(out)["error"].notna().sum() == 2
    monkeypatch.setattr(run_mod, "simulate", real)
    capsys.readouterr()
    run_sweep(sweep, results_dir=out, jobs=1, resume=True)
    assert "6 of 8 runs already stored; running 2, 2 of them failed before" in \
        capsys.readouterr().err
    runs = load_runs(out)
    assert len(runs) == 8 and runs["error"].isna().all()


def test_a_run_that_always_kills_its_worker_is_a_failed_row(tmp_path, monkeypatch):
    """Bounded re-queueing: the sweep ends, the run is recorded as lost."""
    from fleecesim.sweep import execute
    from fleecesim.sweep.spec import plan, spec_from_dict

    spec, base = spec_from_dict(dict(SWEEP, base=dict(BASE, disk={"size": "64MiB"}),
                                     replications=1))
    runs = plan(spec, base)
    doomed = runs[0].run_id
    monkeypatch.setattr(execute, "run_one", _KillIf(doomed))
    ex = execute.Processes(runs, 2)
    try:
        outs = {r.run_id: o for r, o in ex}
    finally:
        ex.close()
    assert set(outs) == {r.run_id for r in runs}
    assert "WorkerLost" in outs[doomed]["row"]["error"]
    assert ex.lost[doomed] == execute.MAX_LOST
    assert sum(o["row"]["error"] is None for o in outs.values()) >= len(runs) - 2


class _KillIf:
    """A picklable run_one that SIGKILLs its own worker on one run id."""

    def __init__(self, run_id):
        self.run_id = run_id

    def __call__(self, run):
        from fleecesim.sweep.worker import run_one
        if run.run_id == self.run_id:
            os.kill(os.getpid(), signal.SIGKILL)
        return run_one(run)


@pytest.fixture(autouse=True)
def _no_stray_children():
    yield
    me = psutil.Process()
    # the forkserver and resource tracker of in-process sweeps may stay; workers may not
    stray = [c for c in me.children(recursive=True)
             if c.ppid() != me.pid and c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
    assert stray == [], stray
