"""`fleecesim advise`: the advice is what the runs say, constraints are never
relaxed, bad constraints are one line and exit 2."""
from __future__ import annotations

import json
import math
import sys

import numpy as np
import pytest

from fleecesim.advise import (AXIS, Constraints, advise_config, analyse, bound_confidence,
                              bound_rank, min_runs, qcow2_metadata_bytes, sweep_dict,
                              upper_bound)
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
    cons = Constraints.parse(workers="1,8", percentile=75)
    out = tmp_path_factory.mktemp("adv") / "r"
    advice, runs, _ = advise_config(cfg, cons, results_dir=out, jobs=1)
    return cfg, cons, advice, runs


# ---------------------------------------------------------------- the statistics
@pytest.mark.parametrize("n, p", [(45, 0.95), (9, 0.75), (100, 0.95), (230, 0.99), (7, 0.5)])
def test_bound_confidence_is_the_binomial_sum(n, p):
    # P(k-th largest >= q_p) = P(Binomial(n, p) <= n - k), summed with exact integers
    for k in range(1, n + 1):
        want = sum(math.comb(n, i) * p**i * (1 - p)**(n - i) for i in range(n - k + 1))
        assert bound_confidence(k, n, p) == pytest.approx(want, rel=1e-9, abs=1e-12)
    assert bound_confidence(1, n, p) == pytest.approx(1 - p**n)


@pytest.mark.parametrize("p, conf, n", [(0.95, 0.9, 45), (0.99, 0.9, 230), (0.95, 0.95, 59),
                                        (0.75, 0.9, 9), (0.5, 0.9, 4)])
def test_min_runs_is_the_closed_form(p, conf, n):
    assert min_runs(p, conf) == n == math.ceil(math.log(1 - conf) / math.log(p))
    assert bound_rank(n, p, conf) == 1 and bound_rank(n - 1, p, conf) is None


def test_bound_rank_is_the_largest_k_with_the_confidence():
    # 100 runs, p95 at 0.9: the 2nd largest (P(Bin(100, .05) >= 2) = 0.963), not the
    # 3rd (P(Bin(100, .05) >= 3) = 0.882)
    assert bound_rank(100, 0.95, 0.9) == 2
    assert bound_confidence(2, 100, 0.95) == pytest.approx(0.9629, abs=1e-4)
    assert bound_confidence(3, 100, 0.95) == pytest.approx(0.8817, abs=1e-4)


@pytest.mark.parametrize("n, p, conf", [(45, 0.95, 0.9), (120, 0.95, 0.9), (9, 0.75, 0.9)])
def test_bound_covers_the_true_quantile_as_often_as_it_says(n, p, conf):
    # uniform(0, 1) runs: the true p-quantile is p. Over many trials the bound
    # is >= p in the share bound_confidence says (3 sigma), which is >= conf.
    rng = np.random.default_rng(5)
    trials = 4000
    hits = 0
    for _ in range(trials):
        v, k, got = upper_bound(rng.random(n), p, conf)
        hits += v >= p
    assert got >= conf
    sigma = math.sqrt(got * (1 - got) / trials)
    assert abs(hits / trials - got) < 3 * sigma + 1e-9, (hits / trials, got)


def test_too_few_runs_give_no_bound():
    v, k, got = upper_bound(np.arange(44.0), 0.95, 0.9)
    assert k is None and math.isnan(v) and math.isnan(got)


def test_qcow2_metadata_closed_forms():
    # 256 MiB, 64 KiB clusters: 4096 clusters, one L2 table (8192 entries of 8
    # bytes), an L1 of one 8-byte entry (one cluster), one refcount block (2 bytes x
    # 32768 clusters), one refcount table cluster, the header: 5 clusters
    assert qcow2_metadata_bytes(256 * 2**20, 100 * 2**20, 65536) == 5 * 65536
    # no data yet: no L2 table (header, L1, refcount block and table only)
    assert qcow2_metadata_bytes(256 * 2**20, 0, 65536) == 4 * 65536
    # 1 GiB, 4 KiB clusters, 100 MiB of data: 262144 image clusters -> 512 L2 tables
    # (512 entries each), L1 512 x 8 B = 1 cluster; host clusters 1 + 1 + 512 + 25600
    # + refcount: blocks of 2048 entries: ceil((26114 + 13 + 1) / 2048) = 13, table 1
    assert qcow2_metadata_bytes(2**30, 100 * 2**20, 4096) == (1 + 1 + 512 + 13 + 1) * 4096
    # refcount_bits=64: 8 bytes per cluster, 512 per block: ceil(26114+52+1)/512 = 52
    assert qcow2_metadata_bytes(2**30, 100 * 2**20, 4096, refcount_bits=64) == \
        (1 + 1 + 512 + 52 + 1) * 4096


# ---------------------------------------------------------------- the advice
def test_space_is_the_bound_from_the_runs_peaks(swept):
    cfg, cons, advice, runs = swept
    assert cons.runs == 9 == min_runs(0.75, 0.9)  # raised from nothing to the fewest
    assert advice.met and advice.workers in (1, 8)
    peaks = np.sort(runs.loc[runs[AXIS] == advice.workers, "fleecing_peak_bytes"].to_numpy())
    assert len(peaks) == 9 and runs["error"].isna().all()
    k = bound_rank(9, 0.75, 0.9)
    assert advice.rank == k == 1 and advice.runs == 9
    assert advice.data_bytes == peaks[-k]  # an observed run, the k-th largest
    meta = qcow2_metadata_bytes(cfg.disk.size, advice.data_bytes, cfg.backup.cache.cluster_size)
    assert advice.metadata_bytes == meta > 0
    # no RAM tier configured: the disk tier holds it all, and the metadata
    assert advice.ram_bytes == 0 and advice.disk_bytes == pytest.approx(advice.data_bytes + meta)
    assert advice.space_bytes == pytest.approx(advice.data_bytes + meta)
    # unbounded fleecing image: the sweep measured need, not a cap
    assert sweep_dict(cfg, cons)["set"]["backup.cache.size"] is None
    text = advice.text()
    assert "upper 90% confidence bound on p75 from 9 runs, the 1st largest" in text
    assert "qcow2" in text and "modelled workload only" in text and "QEMU >= 9.1" in text


def test_write_p99_row_is_the_bound_from_the_runs(swept):
    _cfg, _cons, advice, runs = swept
    for r in advice.table.itertuples():
        v = np.sort(runs.loc[runs[AXIS] == r.workers, "write_p99_s"].to_numpy())
        assert r.write_p99_s == v[len(v) - r.rank]


def test_more_runs_take_a_lower_rank(swept):
    cfg, _cons, _advice, runs = swept
    # 9 runs at p50, confidence 0.9: the 3rd largest is still a bound
    cons = Constraints.parse(workers="1,8", percentile=50, replications=9)
    adv = analyse(runs, cons, cfg)
    assert bound_rank(9, 0.5, 0.9) == 3 and adv.rank == 3
    peaks = np.sort(runs.loc[runs[AXIS] == adv.workers, "fleecing_peak_bytes"].to_numpy())
    assert adv.data_bytes == peaks[-3]


def test_too_few_runs_is_infeasible_not_a_guess(swept):
    cfg, _cons, _advice, runs = swept
    cons = Constraints.parse(workers="1,8", percentile=75)
    adv = analyse(runs[runs["replication"] < 8], cons, cfg)  # 8 of the 9 needed
    assert not adv.met
    assert all("too few for an upper 90% bound on p75 (needs 9)" in w for w in adv.table["why"])


def test_unmeetable_constraint_is_reported_not_relaxed(swept):
    cfg, _cons, _advice, runs = swept
    cons = Constraints.parse(workers="1,8", percentile=75, write_p99="1us")
    adv = analyse(runs, cons, cfg)
    assert not adv.met and adv.workers is None
    assert any("write p99 <= 1us" in u and "best is" in u for u in adv.unmet)
    assert "NO worker count" in adv.text()
    assert not adv.table["feasible"].any()


def test_window_marks_slow_counts_infeasible(swept):
    cfg, _cons, _advice, runs = swept
    d = runs.groupby(AXIS)["backup_duration_s"].max()  # the 1st largest: the p75 bound
    limit = (d.loc[1] + d.loc[8]) / 2  # between the two counts
    cons = Constraints.parse(workers="1,8", percentile=75, window=limit)
    adv = analyse(runs, cons, cfg)
    assert d.loc[8] < d.loc[1]
    assert adv.workers == 8
    row1 = adv.table.set_index("workers").loc[1]
    assert not row1.feasible and "backup" in row1.why


def test_no_spill_sizes_the_ram_tier(tmp_path):
    cfg = tiny()
    cons = Constraints.parse(workers="4", no_spill=True, percentile=75)
    s = sweep_dict(cfg, cons)
    assert s["set"]["backup.cache.ram.size"] >= cfg.disk.size
    adv, runs, _ = advise_config(cfg, cons, results_dir=tmp_path / "r", jobs=1)
    assert (runs["spill_bytes"] == 0).all()
    assert adv.ram_bytes == np.sort(runs["ram_peak_bytes"])[-adv.rank]
    assert adv.ram_bytes == adv.data_bytes and adv.disk_bytes == adv.metadata_bytes


@pytest.mark.parametrize("mix", [{"read": 0, "write": 1}, {"read": 1, "write": 0}],
                         ids=["write-only", "read-only"])
def test_advise_on_a_one_direction_workload(tmp_path, mix):
    cfg = tiny(**{"workload.mix": mix})
    cons = Constraints.parse(workers="2", percentile=75, write_p99="50ms", max_stall="1s")
    adv, runs, _ = advise_config(cfg, cons, results_dir=tmp_path / "r", jobs=1)
    assert runs["error"].isna().all() and len(runs) == 9
    assert adv.met and adv.workers == 2
    if mix["write"]:
        assert "read_max_s" not in runs or runs["read_max_s"].isna().all()
        assert adv.data_bytes > 0  # writes before their copy: CBW into the fleecing image
    else:
        assert "write_max_s" not in runs or runs["write_max_s"].isna().all()
        assert adv.data_bytes == 0  # nothing written: nothing to fleece
        assert adv.space_bytes == adv.metadata_bytes  # the empty qcow2's own clusters
    assert math.isfinite(adv.table.iloc[0]["stall_s"])


def test_replications_are_raised_and_earlier_runs_kept(tmp_path):
    cfg = tiny()
    out = tmp_path / "r"
    said = []
    cons = Constraints.parse(workers="2", percentile=75, replications=4)
    assert cons.runs == 9
    adv, runs, _ = advise_config(cfg, cons, results_dir=out, jobs=1, say=said.append)
    assert len(runs) == 9 and adv.runs == 9
    assert any("--replications 4 is too few" in m and "running 9" in m for m in said)
    stamps = {p.name: p.stat().st_mtime_ns for p in (out / "runs").glob("*.parquet")}
    # a larger count plans the same runs and more: the 9 stored ones are kept
    cons = Constraints.parse(workers="2", percentile=75, replications=12)
    adv, runs, _ = advise_config(cfg, cons, results_dir=out, jobs=1)
    assert len(runs) == 12 and adv.runs == 12
    after = {p.name: p.stat().st_mtime_ns for p in (out / "runs").glob("*.parquet")}
    assert len(after) == 12 and all(after[n] == t for n, t in stamps.items())


def test_progress_lines_off_a_terminal(tmp_path, monkeypatch):
    import io

    from fleecesim.progress import ENV_EVERY
    monkeypatch.setenv(ENV_EVERY, "0.05s")
    monkeypatch.delenv("CI", raising=False)
    buf = io.StringIO()
    monkeypatch.setattr(sys, "stderr", buf)
    cfg = tiny()
    cons = Constraints.parse(workers="2,4", percentile=50, replications=6)
    advise_config(cfg, cons, results_dir=tmp_path / "r", jobs=1, quiet=False)
    lines = [ln for ln in buf.getvalue().splitlines() if not ln.startswith("resume: ")]
    assert len(lines) >= 3, lines  # the plan, a few while it ran, and the last
    assert all(ln.startswith("advise-scenario: ") and "/12 runs, " in ln for ln in lines)
    counts = [int(ln.split(": ")[1].split("/")[0]) for ln in lines]
    assert counts == sorted(counts) and counts[-1] == 12 and lines[-1].endswith("done")
    assert any("left" in ln for ln in lines[:-1])

@pytest.mark.parametrize("kw, msg", [
    (dict(write_p99="-2ms"), "--write-p99"),
    (dict(window="soon"), "--window"),
    (dict(max_stall="0s"), "--max-stall"),
    (dict(percentile="0"), "--percentile"),
    (dict(percentile="101"), "--percentile"),
    (dict(percentile="100"), "--percentile 100: no number of runs bounds the worst case"),
    (dict(confidence="0"), "--confidence 0: expected a number in"),
    (dict(confidence="1"), "--confidence 1:"),
    (dict(confidence="high"), "--confidence high:"),
    (dict(percentile="99"), "raise --max-replications to 230"),
    (dict(percentile="95", max_replications=44), "needs at least 45 runs"),
    (dict(replications=150), "--replications 150: more than --max-replications 100"),
    (dict(max_replications=0), "--max-replications 0"),
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
    rc = main(["advise", str(p), "--workers", "2,16", "--percentile", "50", "--jobs", "1",
               "--out", str(out), "-q", "--write-p99", "1us"])
    assert rc == 1  # unmet: said so, exit 1
    text = capsys.readouterr().out
    assert "NO worker count" in text and "write p99 p50" in text
    assert (out / "plots" / "advise.png").stat().st_size > 10_000
    j = json.loads((out / "advice.json").read_text())
    assert j["met"] is False and j["workers"] is None and len(j["table"]) == 2
    assert j["min_runs"] == 4 and j["confidence"] == 0.9  # 1 - 0.5^4 >= 0.9
    assert all(r["runs"] == 4 for r in j["table"])


def test_cli_off_a_terminal_logs_progress_and_assumptions(tmp_path, capsys):
    p = tmp_path / "c.yaml"
    p.write_text("disk: {size: 64MiB}\nworkload: {iops: 1000}\nbackup: {scheme: fleecing-push}\n"
                 "run: {warmup: 0.3s, tail: 0.1s}\n")
    rc = main(["advise", str(p), "--workers", "4", "--percentile", "50", "--jobs", "1",
               "--replications", "2", "--out", str(tmp_path / "out")])
    assert rc == 0
    cap = capsys.readouterr()
    err = cap.err.splitlines()  # capsys's stderr is not a terminal
    assert any("--replications 2 is too few" in ln and "running 4" in ln for ln in err)
    assert "advise-scenario: 4/4 runs, " in cap.err and any(ln.endswith("done") for ln in err)
    assert "upper 90% confidence bound on p50 from 4 runs, the 1st largest" in cap.out
    assert "assumptions:" in cap.out and "docs/interop/qcow2.txt" in cap.out
