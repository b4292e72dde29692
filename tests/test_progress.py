"""Issue 12 item 5: a progress bar over simulated time, for a person at a
terminal only; it adds no events, so it never changes a run."""
import subprocess
import sys

from fleecesim.run import simulate, want_progress
from tests.conftest import REPO, small
from tests.test_engine_equivalence import assert_same


def test_the_bar_does_not_change_the_run(capsys):
    cfg = small(**{"workload.iops": 500})
    a = simulate(cfg, progress=True).summary
    b = simulate(cfg).summary
    assert_same(a, b)
    assert "simulated s" in capsys.readouterr().err


def test_silent_when_not_a_terminal_or_in_ci(monkeypatch):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False, raising=False)
    assert not want_progress()
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    monkeypatch.setenv("CI", "true")
    assert not want_progress()
    monkeypatch.delenv("CI")
    assert want_progress()


def test_cli_json_and_pipes_print_no_bar():
    cmd = [sys.executable, "-m", "fleecesim", "run", "configs/fleecing-vs-legacy.yaml", "--json",
           "--no-save", "--set", "disk.size=256MiB", "--set", "run.warmup=0.2s",
           "--set", "backup.scheme=fleecing-push"]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, check=True)
    assert "simulated s" not in out.stderr
