"""`fleecesim advise`: the advice is what the runs say, constraints are never
relaxed, bad constraints are one line and exit 2."""
from __future__ import annotations

import json

import numpy as np
import pytest

from fleecesim.advise import AXIS, Constraints, advise_config, analyse, sweep_dict
from fleecesim.cli import main
from fleecesim.errors import UserError
from tests.conftest import small


def tiny(**kw):
    base = {"disk.size": "64MiB", "workload.iops": 1500, "run.warmup": "0.3s",
            "run.tail": "0.1s"}
    base.update(kw)
    return small(**base)


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    cfg = tiny()
    cons = Constraints.parse(replications=4, workers="1,8", percentile=75)
    out = tmp_path_factory.mktemp("adv") / "r"
    advice, runs, _ = advise_config(cfg, cons, results_dir=out, jobs=1)
    return cfg, cons, advice, runs


def test_space_is_the_percentile_of_the_runs_peaks(swept):
    cfg, cons, advice, runs = swept
    assert advice.met and advice.workers in (1, 8)
    peaks = runs.loc[runs[AXIS] == advice.workers, "fleecing_peak_bytes"].to_numpy()
    assert len(peaks) == 4 and runs["error"].isna().all()
    assert advice.space_bytes == np.percentile(peaks, 75, method="higher")
    assert advice.space_bytes in set(peaks)  # an observed run, never interpolated
    # no RAM tier configured: the disk tier holds it all
    assert advice.ram_bytes == 0 and advice.disk_bytes == pytest.approx(advice.space_bytes)
    # unbounded fleecing image: the sweep measured need, not a cap
    assert sweep_dict(cfg, cons)["set"]["backup.cache.size"] is None


def test_write_p99_row_is_the_percentile_of_the_runs(swept):
    _cfg, _cons, advice, runs = swept
    for r in advice.table.itertuples():
        v = runs.loc[runs[AXIS] == r.workers, "write_p99_s"].to_numpy()
        assert r.write_p99_s == np.percentile(v, 75, method="higher")


def test_unmeetable_constraint_is_reported_not_relaxed(swept):
    cfg, _cons, _advice, runs = swept
    cons = Constraints.parse(replications=4, workers="1,8", percentile=75, write_p99="1us")
    adv = analyse(runs, cons, cfg)
    assert not adv.met and adv.workers is None
    assert any("write p99 <= 1us" in u and "best is" in u for u in adv.unmet)
    assert "NO worker count" in adv.text()
    assert not adv.table["feasible"].any()


def test_window_marks_slow_counts_infeasible(swept):
    cfg, _cons, _advice, runs = swept
    d = runs.groupby(AXIS)["backup_duration_s"].max()
    limit = (d.loc[1] + d.loc[8]) / 2  # between the two counts
    cons = Constraints.parse(replications=4, workers="1,8", percentile=100, window=limit)
    adv = analyse(runs, cons, cfg)
    assert d.loc[8] < d.loc[1]
    assert adv.workers == 8
    row1 = adv.table.set_index("workers").loc[1]
    assert not row1.feasible and "backup" in row1.why


def test_no_spill_sizes_the_ram_tier(tmp_path):
    cfg = tiny()
    cons = Constraints.parse(replications=2, workers="4", no_spill=True)
    s = sweep_dict(cfg, cons)
    assert s["set"]["backup.cache.ram.size"] >= cfg.disk.size
    adv, runs, _ = advise_config(cfg, cons, results_dir=tmp_path / "r", jobs=1)
    assert (runs["spill_bytes"] == 0).all()
    assert adv.ram_bytes == np.percentile(runs["ram_peak_bytes"], 95, method="higher")
    assert adv.ram_bytes == adv.space_bytes and adv.disk_bytes == 0


@pytest.mark.parametrize("kw, msg", [
    (dict(write_p99="-2ms"), "--write-p99"),
    (dict(window="soon"), "--window"),
    (dict(max_stall="0s"), "--max-stall"),
    (dict(percentile="0"), "--percentile"),
    (dict(percentile="101"), "--percentile"),
    (dict(replications=0), "--replications"),
    (dict(workers="0,4"), "--workers"),
    (dict(workers="a"), "--workers"),
])
def test_bad_constraints_are_user_errors(kw, msg):
    with pytest.raises(UserError, match=msg):
        Constraints.parse(**kw)


def test_cli_bad_constraint_exits_2_in_one_line(tmp_path, capsys):
    p = tmp_path / "c.yaml"
    p.write_text("disk: {size: 64MiB}\nbackup: {scheme: fleecing-push}\n")
    assert main(["advise", str(p), "--write-p99", "fast"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("fleecesim: error: --write-p99 fast") and "\n" not in err
    p.write_text("disk: {size: 64MiB}\nbackup: {scheme: legacy-backup}\n")
    assert main(["advise", str(p)]) == 2
    assert "no max-workers" in capsys.readouterr().err


def test_cli_answers_writes_plot_and_json(tmp_path, capsys):
    p = tmp_path / "c.yaml"
    p.write_text("disk: {size: 64MiB}\nworkload: {iops: 1000}\nbackup: {scheme: fleecing-push}\n"
                 "run: {warmup: 0.3s, tail: 0.1s}\n")
    out = tmp_path / "out"
    rc = main(["advise", str(p), "--workers", "2,16", "--replications", "2", "--jobs", "1",
               "--out", str(out), "-q", "--write-p99", "1us"])
    assert rc == 1  # unmet: said so, exit 1
    text = capsys.readouterr().out
    assert "NO worker count" in text and "write p99 p95" in text
    assert (out / "plots" / "advise.png").stat().st_size > 10_000
    j = json.loads((out / "advice.json").read_text())
    assert j["met"] is False and j["workers"] is None and len(j["table"]) == 2
