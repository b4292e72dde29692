"""``sweep`` and ``advise`` say what a huge or implausible run will cost before
the first run starts, as ``run`` does (fleecesim/cost.py), once per distinct
point and without flooding: the few estimated largest, then a count."""
from __future__ import annotations

import re

import pytest
import yaml

from fleecesim import cost
from fleecesim.cli import main
from tests.test_input_escapes import SMALL


class Started(Exception):
    pass


@pytest.fixture
def no_runs(monkeypatch, tmp_path):
    """Any run starting raises Started: what is printed before is all there is."""
    import fleecesim.sweep.execute as ex

    def started(*_a, **_k):
        raise Started
    for name in ("serial", "processes", "dask"):
        monkeypatch.setattr(ex, name, started)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _warnings(capsys) -> list[str]:
    lines = capsys.readouterr().err.strip().splitlines()
    assert all(ln.startswith("fleecesim: warning: ") for ln in lines), lines
    return [ln[len("fleecesim: warning: "):] for ln in lines]


def test_a_sweep_warns_for_its_largest_points_and_counts_the_rest(no_runs, capsys):
    """Five points, four of them over the wall-time threshold (iops x 40 s of
    warm-up at WALL_PER_REQUEST_S each); two replications each. Shown: the
    PLAN_SHOWN largest, largest first; then the one more that warns."""
    iops = [500, 3e5, 3.5e5, 4e5, 4.5e5]
    warn = [i for i in iops if i * 40 * cost.WALL_PER_REQUEST_S > cost.WALL_WARN_S]
    assert len(warn) == 4 and cost.PLAN_SHOWN == 3  # the case this test is about
    p = no_runs / "s.yaml"
    p.write_text(yaml.safe_dump({"name": "big", "base": SMALL, "replications": 2,
                                 "set": {"run.warmup": "40s"},
                                 "grid": {"workload.iops": iops}}))
    with pytest.raises(Started):
        main(["sweep", str(p), "--jobs", "1", "--quiet"])
    lines = _warnings(capsys)
    est = [ln for ln in lines if "estimated ~" in ln]
    shown = [float(re.search(r"workload\.iops=([0-9.e+]+)", ln).group(1)) for ln in est]
    assert shown == sorted(warn, reverse=True)[:3], lines  # once each, the largest first
    assert lines[-1].startswith("1 more of the 5 points warn"), lines
    assert not any("iops=500" in ln for ln in lines)
    assert not (no_runs / "results").exists()  # nothing written before the warnings


def test_a_sweep_of_small_points_is_silent(no_runs, capsys):
    p = no_runs / "s.yaml"
    p.write_text(yaml.safe_dump({"name": "small", "base": SMALL,
                                 "grid": {"workload.iops": [100, 500]}}))
    with pytest.raises(Started):
        main(["sweep", str(p), "--jobs", "1", "--quiet"])
    assert _warnings(capsys) == []


def test_a_sweep_point_that_cannot_fit_is_refused_by_name(no_runs, capsys):
    """iops 1e12: its records alone exceed any machine (cost.check), as in ``run``."""
    p = no_runs / "s.yaml"
    p.write_text(yaml.safe_dump({"name": "huge", "base": SMALL,
                                 "grid": {"workload.iops": [500, 1e12]}}))
    assert main(["sweep", str(p), "--jobs", "1", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(
        "fleecesim: error: point 1 (fleecing-push, workload.iops=1e+12): workload.iops: "), err
    assert "records alone" in err[0]


def test_advise_warns_before_its_first_run(no_runs, capsys):
    """An implausible device latency (a bare 2 is seconds) is named once per
    worker count, before anything runs, not minutes later."""
    p = no_runs / "c.yaml"
    p.write_text(yaml.safe_dump(SMALL))
    with pytest.raises(Started):
        main(["advise", str(p), "--set", "devices.local.latency=2", "--workers", "1,2",
              "--replications", "50", "--jobs", "1", "--quiet"])
    lines = [ln for ln in _warnings(capsys) if "devices.local.read-latency: 2s" in ln]
    assert [ln.split(":")[0] for ln in lines] == [
        "point 0 (fleecing-push, backup.max-workers=1)",
        "point 1 (fleecing-push, backup.max-workers=2)"], lines
