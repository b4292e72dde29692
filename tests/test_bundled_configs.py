"""Every bundled config (configs/*.yaml) and sweep (configs/sweeps/*.yaml)
resolves and runs from a fresh clone: nothing it reads lies outside the
repository, and a shortened run of its first and last variant completes
with the point-in-time image."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from fleecesim.config import load_config, variants
from fleecesim.run import simulate
from tests.conftest import REPO

CONFIGS = sorted((REPO / "configs").glob("*.yaml"))
SWEEPS = sorted((REPO / "configs" / "sweeps").glob("*.yaml"))
# the shortening benchmarks/same_results.py uses, smaller still
SHORT = ["disk.size=64MiB", "run.max-time=60s"]


def _inside_repo(p: str | Path) -> bool:
    return Path(p).resolve().is_relative_to(REPO)


def _traces(cfg) -> list[str]:
    out = [cfg.workload.trace] if cfg.workload.trace else []
    return out + [vm.workload.get("trace") for vm in cfg.vms if vm.workload.get("trace")]


def _tracked(p: Path) -> bool:
    """In git's index (a fresh clone has it), when this is a git checkout."""
    r = subprocess.run(["git", "ls-files", "--error-unmatch", str(p)], cwd=REPO,
                       capture_output=True)
    return r.returncode == 0 or not (REPO / ".git").exists()


def test_the_bundled_configs_are_listed():
    assert len(CONFIGS) >= 10 and (REPO / "configs" / "trace-replay.yaml") in CONFIGS


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_bundled_config_runs_from_a_fresh_clone(path):
    cfg = load_config(path, SHORT)
    for t in _traces(cfg):
        assert _inside_repo(t), f"{path.name}: trace {t} lies outside the repository"
        assert _tracked(Path(t)), f"{path.name}: trace {t} is not in git"
    vs = variants(cfg)
    assert vs
    for name, c in {vs[0][0]: vs[0][1], vs[-1][0]: vs[-1][1]}.items():
        s = simulate(c, name).summary
        assert s.get("error") is None, (path.name, name, s.get("error"))
        assert s["oracle_ok"] and s["backup_outcome"] == "complete", (path.name, name)


@pytest.mark.parametrize("path", SWEEPS, ids=lambda p: p.name)
def test_bundled_sweep_plans(path):
    from fleecesim.sweep import load_sweep, plan
    spec, base_raw, _ = load_sweep(path)
    runs = plan(spec, base_raw, SHORT)
    assert runs and len({r.run_id for r in runs}) == len(runs)


def test_bundled_trace_is_what_its_generator_writes():
    import importlib.util
    gen = REPO / "configs" / "traces" / "make_oltp_sample.py"
    spec = importlib.util.spec_from_file_location("make_oltp_sample", gen)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.OUT.read_text() == mod.generate()
