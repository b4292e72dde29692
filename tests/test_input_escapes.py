"""Inputs that escaped as tracebacks or wrote outside results/: one line on
stderr naming what is wrong, exit status 2, and nothing written. Each case
was a traceback (TypeError, OverflowError, ArrowInvalid, JSONDecodeError,
OSError after the work) or a write outside the results folder before."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from fleecesim.cli import main
from fleecesim.sweep import run_sweep
from fleecesim.units import parse_rate, parse_size, parse_time
from tests.conftest import REPO

SMALL = {"disk": {"size": "64MiB"}, "workload": {"iops": 500},
         "backup": {"scheme": "fleecing-push"}, "run": {"warmup": "0.1s", "tail": "0s"}}


def _tree(d: Path) -> dict:
    return {str(p.relative_to(d)): p.stat().st_mtime_ns for p in d.rglob("*")}


def _one_line(capsys, *needles):
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fleecesim: error: "), err
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


def _run(tmp_path, monkeypatch, capsys, raw: dict | str, *extra):
    """``fleecesim run`` in an empty tmp_path (its default results/ there)."""
    monkeypatch.chdir(tmp_path)
    p = tmp_path / "conf" / "c.yaml"
    p.parent.mkdir(exist_ok=True)
    p.write_text(raw if isinstance(raw, str) else yaml.safe_dump(raw))
    before = _tree(tmp_path)
    code = main(["run", str(p), "--quiet", *extra])
    assert _tree(tmp_path) == before  # nothing written, anywhere
    return code


# ---------------------------------------------------------------- vms / variants not lists
@pytest.mark.parametrize("text, needles", [
    ("vms: 5", ["vms: Input should be a valid list"]),
    ("variants: 5", ["variants: Input should be a valid list"]),
    ("vms: {a: 1}", ["vms: Input should be a valid list"]),
    ("variants: x", ["variants: Input should be a valid list"]),
    ("variants: [5]", ["variants[0]:"]),
    ("vms: [5]", ["vms[0]:"]),
])
def test_vms_and_variants_must_be_lists(tmp_path, monkeypatch, capsys, text, needles):
    assert _run(tmp_path, monkeypatch, capsys, "disk: {size: 64MiB}\n" + text + "\n") == 2
    _one_line(capsys, *needles)


# ---------------------------------------------------------------- non-finite sizes, rates, times
@pytest.mark.parametrize("setting, needles", [
    ("disk.size=.inf", ["disk.size: expected a finite size", "inf"]),
    ("disk.size=1e400", ["disk.size: expected a finite size"]),
    ('disk.size="1e400"', ["disk.size: expected a finite size", "'1e400'"]),
    ('disk.size="1e300PiB"', ["disk.size: expected a finite size", "1e300PiB"]),
    ('devices.local.bandwidth="1e400MiB/s"', ["read-bandwidth: expected a finite rate"]),
    ('run.warmup="1e400s"', ["run.warmup: expected a finite time"]),
    ("backup.cache.cluster-size=.inf", ["backup.cache.cluster-size: expected a finite size"]),
])
def test_non_finite_sizes_rates_times_are_one_line(tmp_path, monkeypatch, capsys, setting,
                                                     needles):
    assert _run(tmp_path, monkeypatch, capsys, SMALL, "--set", setting) == 2
    _one_line(capsys, *needles)


@pytest.mark.parametrize("fn, bad", [
    (parse_size, float("inf")), (parse_size, float("nan")), (parse_size, "1e400"),
    (parse_size, "1e305PiB"), (parse_rate, float("inf")), (parse_rate, "1e305PiB/s"),
    (parse_time, float("nan")), (parse_time, "1e400ms"), (parse_time, float("-inf")),
])
def test_unit_parsers_refuse_non_finite(fn, bad):
    with pytest.raises(ValueError, match="expected a finite"):
        fn(bad)


def test_unit_parsers_keep_large_finite_values():
    assert parse_size(2**60) == 2**60 and parse_size("1PiB") == 2**50
    assert parse_size(1e18) == 10**18 and parse_rate("1e300/s") == 1e300


# ---------------------------------------------------------------- names that are paths
BAD_NAMES = ["../../X", "ABS", ".", "..", "a/../../b", "-x", "--help", "a\nb", "",
             "ok/.", "a//b", "a\\b"]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_variant_name_must_be_a_folder_name(tmp_path, monkeypatch, capsys, name):
    if name == "ABS":  # never a real /abs, even if the check regressed
        name = str(tmp_path / "abs" / "olute")
    raw = dict(SMALL, variants=[{"name": name, "set": {"backup.max-workers": 2}}])
    assert _run(tmp_path, monkeypatch, capsys, raw) == 2
    _one_line(capsys, "variants[0].name: expected plain names joined by '/'")


@pytest.mark.parametrize("name", [n for n in BAD_NAMES if n not in ("ok/.", "a//b")])
def test_config_name_must_be_a_folder_name(tmp_path, monkeypatch, capsys, name):
    if name == "ABS":
        name = str(tmp_path / "abs" / "olute")
    assert _run(tmp_path, monkeypatch, capsys, dict(SMALL, name=name)) == 2
    _one_line(capsys, "name: expected a plain name")


def test_nested_variant_names_stay_inside_the_results_folder(tmp_path, monkeypatch, capsys):
    # configs/workers.yaml names its variants "ssd-nbd/w4": sub-folders, still inside
    monkeypatch.chdir(tmp_path)
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump(dict(SMALL, name="n", variants=[
        {"name": "ssd/w1", "set": {"backup.max-workers": 1}}])))
    assert main(["run", str(p), "--quiet"]) == 0
    assert (tmp_path / "results" / "n" / "ssd" / "w1" / "summary.json").is_file()
    assert {q.name for q in tmp_path.iterdir()} == {"c.yaml", "results"}


# ---------------------------------------------------------------- corrupt results
@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory):
    s = {"name": "corrupt", "base": SMALL, "replications": 2,
         "grid": {"backup.max-workers": [1, 4]}}
    return run_sweep(s, results_dir=tmp_path_factory.mktemp("res") / "corrupt", jobs=1,
                     quiet=True)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("run")
    p = d / "c.yaml"
    p.write_text(yaml.safe_dump(dict(SMALL, name="r")))
    assert main(["run", str(p), "--quiet", "--out", str(d / "out")]) == 0
    return d / "out" / "r"


def _spoil(path: Path, how: str) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if how == "truncate" else b"not this\n")


CMDS = (["summarize"], ["plot", "--kind", "metric"], ["plot", "--kind", "cdf"])
SPOILED = [(part, how, cmd) for part, how in [("runs", "truncate"), ("runs", "garbage"),
                                              ("sweep.json", "truncate"),
                                              ("sweep.json", "garbage")] for cmd in CMDS]
SPOILED.append(("latency", "truncate", ["plot", "--kind", "cdf"]))  # only the CDF reads it


@pytest.mark.parametrize("part, how, cmd", SPOILED)
def test_corrupt_sweep_results_name_the_file(sweep_dir, tmp_path, capsys, part, how, cmd):
    d = tmp_path / "copy"
    shutil.copytree(sweep_dir, d)
    bad = d / "sweep.json" if part == "sweep.json" else sorted((d / part).glob("*.parquet"))[0]
    _spoil(bad, how)
    assert main([cmd[0], str(d), *cmd[1:], *(["--quiet"] if cmd[0] == "plot" else [])]) == 2
    _one_line(capsys, str(bad), "not a readable")


@pytest.mark.parametrize("file, kind", [("fleecing-push/summary.json", "attribution"),
                                        ("fleecing-push/summary.json", "occupancy"),
                                        ("fleecing-push/timeline.parquet", "occupancy"),
                                        ("fleecing-push/requests.parquet", "cdf")])
def test_corrupt_run_results_name_the_file(run_dir, tmp_path, capsys, file, kind):
    d = tmp_path / "copy"
    shutil.copytree(run_dir, d)
    _spoil(d / file, "truncate")
    assert main(["plot", str(d), "--kind", kind, "--quiet"]) == 2
    _one_line(capsys, str(d / file), "not a readable")


# ---------------------------------------------------------------- outputs checked first
def _never(*_a, **_k):
    raise AssertionError("the work started before the output was checked")


@pytest.mark.parametrize("out, needles", [
    ("/proc/fleecesim-x.yaml", ["--out /proc/", "cannot write"]),
    ("AFILE/x.yaml", ["cannot write", "Not a directory"])])
def test_calibrate_checks_its_output_before_measuring(tmp_path, monkeypatch, capsys, out,
                                                        needles):
    import fleecesim.calibrate as cal
    monkeypatch.setattr(cal, "calibrate", _never)
    (tmp_path / "AFILE").write_text("x")
    out = out.replace("AFILE", str(tmp_path / "AFILE"))
    assert main(["calibrate", str(tmp_path), "--out", out]) == 2
    _one_line(capsys, *needles)


@pytest.mark.parametrize("out, needles", [("AFILE", ["--out", "Not a directory"]),
                                          ("/proc", ["--out /proc/qemu-small/qemu"])])
def test_qemu_checks_its_output_before_running_qemu(tmp_path, monkeypatch, capsys, out,
                                                      needles):
    import fleecesim.qemu.compare as compare
    import fleecesim.qemu.runner as runner
    monkeypatch.setattr(runner, "qemu_available", _never)
    monkeypatch.setattr(compare, "compare", _never)
    (tmp_path / "AFILE").write_text("x")
    out = out.replace("AFILE", str(tmp_path / "AFILE"))
    before = _tree(tmp_path)
    assert main(["qemu", str(REPO / "configs" / "qemu-small.yaml"), "--out", out]) == 2
    _one_line(capsys, *needles)
    assert _tree(tmp_path) == before


# ---------------------------------------------------------------- a time limit of 0
@pytest.mark.parametrize("value", ["0", "0s", "0ms"])
def test_max_time_zero_is_a_config_error_not_an_unfinished_backup(tmp_path, monkeypatch,
                                                                   capsys, value):
    """run.max-time 0 stopped every backup before it copied anything and was
    reported as "backup unfinished" (exit 1)."""
    assert _run(tmp_path, monkeypatch, capsys, SMALL, "--set", f"run.max-time={value}") == 2
    _one_line(capsys, "run.max-time: expected a time > 0")


# ---------------------------------------------------------------- a speed that cannot finish
def test_speed_too_low_for_max_time_is_a_config_error(tmp_path, monkeypatch, capsys):
    """backup.speed 100 (bytes/s) ran the whole run.max-time and was reported
    as "backup unfinished" (exit 1). 64 MiB at 100 B/s is ~7.8 days."""
    assert _run(tmp_path, monkeypatch, capsys, SMALL, "--set", "backup.speed=100") == 2
    line = _one_line(capsys, "backup.speed: at 100B/s", "run.max-time 3,600s", "64MiB disk")
    # the time it would need: (disk - one chunk) / speed, the first claim free
    assert f"{(64 * 2**20 - 2**20) / 100:,.0f}s" in line


def test_speed_that_can_finish_is_accepted():
    """The bound is the one the job keeps: at disk / max-time the backup runs."""
    from fleecesim.config import resolve
    resolve(dict(SMALL, backup={"scheme": "backup", "speed": "1MiB/s"},
                 run={"max-time": "64s"}))
    with pytest.raises(Exception, match="backup.speed"):
        resolve(dict(SMALL, backup={"scheme": "backup", "speed": "1MiB/s"},
                     run={"max-time": "62s"}))


def test_unfinished_backup_says_both_the_limit_and_the_simulated_time(tmp_path, monkeypatch,
                                                                      capsys):
    monkeypatch.chdir(tmp_path)
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump(dict(SMALL, backup={"scheme": "backup"},
                                     run={"warmup": "0.5s", "tail": "0.25s",
                                          "max-time": "0.05s"})))
    assert main(["run", str(p), "--quiet", "--no-save"]) == 1
    err = capsys.readouterr().err
    assert ("backup unfinished at run.max-time 0.05s (counted from the backup's start at 0.5s "
            "of simulated time; the run ended at 0.8s of simulated time)") in err, err


# ---------------------------------------------------------------- request sizes, max-chunk
@pytest.mark.parametrize("size, needles", [
    ("4KB", ["workload: size: expected a multiple of 512 bytes, got 4000 bytes",
             "did you mean 4KiB?"]),
    ({"4KB": 1, "64KiB": 1}, ["got 4000 bytes", "4KiB"]),
    ("1MB", ["got 1000000 bytes", "did you mean 1MiB?"]),
    (4100, ["got 4100 bytes"]),
])
def test_request_sizes_are_whole_sectors(tmp_path, monkeypatch, capsys, size, needles):
    raw = dict(SMALL, workload={"iops": 500, "size": size})
    assert _run(tmp_path, monkeypatch, capsys, raw) == 2
    _one_line(capsys, *needles)


@pytest.mark.parametrize("sets, needles", [
    (["backup.max-chunk=32KiB"], ["backup.max-chunk: 32KiB is less than the backup cluster "
                                  "size 64KiB"]),
    (["backup.max-chunk=1MiB", "backup.min-cluster-size=2MiB"],
     ["backup.max-chunk: 1MiB is less than the backup cluster size 2MiB"]),
])
def test_max_chunk_below_a_cluster_is_refused_as_qemu_does(tmp_path, monkeypatch, capsys,
                                                            sets, needles):
    """It was raised to a cluster silently; QEMU's backup_job_create refuses it."""
    args = [a for s in sets for a in ("--set", s)]
    assert _run(tmp_path, monkeypatch, capsys, SMALL, *args) == 2
    _one_line(capsys, *needles)


# ---------------------------------------------------------------- qmp: target URI, socket
def test_qmp_target_with_an_unknown_uri_scheme_is_refused(capsys):
    assert main(["qmp", str(REPO / "configs" / "qemu-small.yaml"), "--variant", "backup",
                 "--target", "bogus://x"]) == 2
    _one_line(capsys, "--target bogus://x: unknown URI scheme 'bogus'")


def test_qmp_target_file_path_still_works(capsys, tmp_path):
    assert main(["qmp", str(REPO / "configs" / "qemu-small.yaml"), "--variant", "backup",
                 "--target", str(tmp_path / "t.qcow2")]) == 0
    assert str(tmp_path / "t.qcow2") in capsys.readouterr().out


@pytest.mark.parametrize("what, needles", [("missing", ["No such file or directory"]),
                                           ("file", ["not a socket"])])
def test_qmp_socket_that_is_not_there_fails_at_once(tmp_path, monkeypatch, capsys, what,
                                                    needles):
    """It retried for the daemon-start timeout (10 s) before saying so."""
    import fleecesim.qemu.qmp as qmp
    monkeypatch.setattr(qmp.QMPClient, "__init__", _never)
    path = tmp_path / "qmp.sock"
    if what == "file":
        path.write_text("x")
    assert main(["qmp", str(REPO / "configs" / "qemu-small.yaml"), "--variant", "backup",
                 "--socket", str(path)]) == 2
    _one_line(capsys, f"--socket {path}", *needles)


# ---------------------------------------------------------------- an overloaded guest
def _qemu_small(*sets):
    from fleecesim.config import load_config
    from fleecesim.run import simulate
    return simulate(load_config(REPO / "configs" / "qemu-small.yaml",
                                ["backup.scheme=fleecing-push", *sets])).summary


def test_a_guest_whose_requests_are_never_answered_is_overloaded():
    """2 s a request (a bare 2 is seconds) and 16 in flight serve 8 of the 200
    writes a second: the warm-up's 48 answered writes were too few for the
    latency-growth test, and the ~150 arrivals still waiting for a slot at the
    end were not counted, so it said "guest overloaded False" beside a 27.8 s
    baseline p99 and unanswered requests."""
    s = _qemu_small("devices.local.latency=2")
    assert s["guest_ios"] < 50 and s["write_p99_baseline_s"] > 20
    assert s["guest_overloaded"] is True
    w = [x for x in s["warnings"] if "offered load exceeds" in x]
    assert len(w) == 1 and "still unanswered" in w[0], s["warnings"]
    # the bundled setting is a steady state: every warm-up request answered
    assert _qemu_small()["guest_overloaded"] is False


# ---------------------------------------------------------------- huge runs: a warning first
def _cost_cfg(*sets):
    from fleecesim.config import resolve
    return resolve(dict(SMALL, workload={"iops": 500}), list(sets))


def test_cost_estimate_closed_forms():
    """Open loop: requests = iops x simulated time; the backup's time = its
    allocated bytes at the slowest of source read, target write and speed."""
    from fleecesim import cost
    c = _cost_cfg("backup.speed=32MiB/s", "workload.iops=1000")
    e = cost.estimate(c)
    data = c.disk.size * c.disk.allocated
    assert e.backup_s == pytest.approx(data / (32 * 2**20))  # speed is the slowest
    assert e.sim_s == pytest.approx(c.run.warmup + e.backup_s + c.run.tail)
    assert e.requests == pytest.approx(1000 * e.sim_s)
    assert e.copies == pytest.approx(data / c.max_chunk)
    assert e.wall_s == pytest.approx(e.requests * cost.WALL_PER_REQUEST_S
                                     + e.copies * cost.WALL_PER_COPY_S)
    # cut by run.max-time: the copies that fit, the time of the limit
    cut = cost.estimate(_cost_cfg("backup.speed=64MiB/s", "run.max-time=0.99s"))
    assert cut.backup_s == 0.99 and cut.copies == pytest.approx(0.99 * e.copies)
    # a closed loop: iodepth requests at the device (queue-depth of them served)
    cl = cost.estimate(_cost_cfg("workload.iops=null", "workload.iodepth=1",
                                 "workload.mix={read: 1, write: 0}", "workload.size=4KiB"))
    dev = c.devices["local"]
    assert cl.requests / cl.sim_s == pytest.approx(
        min(1 / (dev.read_latency + 4096 / dev.read_bandwidth), dev.read_bandwidth / 4096))


@pytest.mark.parametrize("sets, needles", [
    (["workload.iops=3e5", "run.warmup=40s"], ["estimated ~", "workload.iops (300,000 "
                                               "requests/s simulated)"]),
    (["workload.iops=null", "workload.iodepth=100000", "devices.local.queue-depth=100000",
      "run.warmup=20s"], ["estimated ~", "workload.iodepth"]),
])
def test_a_huge_run_warns_with_its_estimate_before_it_starts(tmp_path, monkeypatch, capsys,
                                                             sets, needles):
    """iops 1e6 or iodepth 100000 ran for minutes without a word."""
    import fleecesim.run as run

    class Started(Exception):
        pass

    def started(*_a, **_k):
        raise Started
    monkeypatch.setattr(run, "simulate", started)
    monkeypatch.chdir(tmp_path)
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump(SMALL))
    with pytest.raises(Started):
        main(["run", str(p), "--quiet", "--no-save", *[a for s in sets
                                                        for a in ("--set", s)]])
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fleecesim: warning: fleecing-push: "), lines
    for n in needles:
        assert n in lines[0], (n, lines[0])


def test_records_that_cannot_fit_in_memory_are_refused(tmp_path, monkeypatch, capsys):
    """iops 1e12 for 0.1 s is 1e11 requests: their records alone are ~2.7 TiB."""
    assert _run(tmp_path, monkeypatch, capsys, SMALL, "--set", "workload.iops=1e12") == 2
    _one_line(capsys, "workload.iops:", "records alone (30 B each)", "available")


@pytest.mark.parametrize("sets, needles", [
    (["devices.local.latency=2"], ["devices.local.read-latency: 2s a request on a ssd",
                                   "a bare number is seconds"]),
    (["devices.target.rtt=30"], ["devices.target.rtt: 30s a request on a remote"]),
])
def test_implausible_device_latency_is_named(sets, needles):
    from fleecesim import cost
    lines = cost.implausible(_cost_cfg(*sets))
    assert lines and all(n in lines[0] for n in needles), lines


def test_bundled_configs_have_no_implausible_devices():
    from fleecesim import cost
    from fleecesim.config import load_config, variants
    for p in sorted((REPO / "configs").glob("*.yaml")):
        for _n, c in variants(load_config(p)):
            assert cost.implausible(c) == [], p


def test_an_open_loop_beyond_the_device_is_named_before_the_run():
    """iops 1e6 on an NVMe whose IOPS cap is 550-600k: overloaded from the start."""
    from fleecesim import cost
    c = _cost_cfg("workload.iops=1e6")
    dev = c.devices["local"]
    cap = 1 / (0.5 / dev.read_iops + 0.5 / dev.write_iops)  # SMALL: half reads, 4 KiB
    line = cost.overloaded(c)
    assert line and f"~{cap:,.0f}/s" in line and line.startswith("workload.iops: 1e+06")
    assert cost.overloaded(_cost_cfg(f"workload.iops={cap * 0.99}")) is None
