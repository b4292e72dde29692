import pytest

from fleecesim.report import WIDE_MAX, table
from fleecesim.units import fmt_time


def _s(i):
    return {"name": f"v{i}", "scheme": "backup", "backup_duration_s": 1.0 + i,
            "write_p99_s": 1e-3, "cbw_count": i, "oracle_ok": True, "wall_time_s": 0.1}


def test_few_variants_side_by_side():
    out = table([_s(i) for i in range(2)]).splitlines()
    assert out[0].split() == ["v0", "v1"]
    assert any(line.startswith("backup duration") for line in out)


def test_many_variants_one_row_each():
    n = WIDE_MAX + 3
    out = table([_s(i) for i in range(n)]).splitlines()
    assert out[0].split()[:3] == ["variant", "scheme", "duration"]
    assert len(out) == n + 2  # header, rule, one line per variant
    assert out[2].split()[0] == "v0" and out[-1].split()[0] == f"v{n - 1}"


def test_long_durations_keep_their_unit():
    # 1,910 s used to print as "1.91e+03s", the only cell without a readable unit
    s = dict(_s(0), backup_duration_s=1910.3)
    row = next(line for line in table([s, _s(1)]).splitlines()
               if line.startswith("backup duration"))
    assert row.split()[2:] == ["1,910s", "2s"]


@pytest.mark.parametrize("v, text", [
    (1910.3, "1,910s"), (236.4, "236s"), (999.6, "1,000s"), (0.9996, "1s"),
    (0.0009996, "1ms"), (5.26e-3, "5.26ms"), (61.1e-6, "61.1us"),
    (99_999.0, "99,999s"), (1e5, "27.8h"), (3.6e7, "10,000h"), (-1910.0, "-1,910s"),
    (float("nan"), "-"),
])
def test_fmt_time_never_prints_an_exponent(v, text):
    # closed forms: 1e5 s / 3600 = 27.78 h; 3.6e7 s = 10,000 h
    assert fmt_time(v) == text
    assert "e+" not in fmt_time(v) and "e-" not in fmt_time(v)


def test_longest_stall_is_placed_from_the_backup_start():
    # the summary's *_at_s is simulated time since the run began (warm-up
    # included); the table shows it against t0, the backup's start
    s = dict(_s(0), backup_start_s=5.0, longest_stall_s=6e-3, longest_stall_at_s=29.5943,
             longest_stall_overall_s=2.0, longest_stall_overall_at_s=3.5,
             guest_requests_over_1s_overall=1)
    lines = table([s, _s(1)]).splitlines()
    at = [line for line in lines if line.lstrip().startswith("arrived")]
    assert len(at) == 2 and all("t0 = backup start" in line for line in at)
    assert at[0].split()[-2] == "t0+24.6s"  # 29.5943 - 5
    assert at[1].split()[-2] == "t0-1.5s"   # 3.5 - 5: before the backup began


def test_counts_have_thousands_separators():
    s = dict(_s(0), guest_ios=3836599, cbw_count=277814)
    lines = table([s]).splitlines()
    assert next(x for x in lines if x.startswith("guest I/Os")).split()[-1] == "3,836,599"
    assert next(x for x in lines if x.startswith("CBW count")).split()[-1] == "277,814"


def test_saved_line_says_where_and_how_much(tmp_path):
    from fleecesim.report import saved_line
    for v, n in (("a", 3000), ("b", 1000)):
        (tmp_path / v).mkdir()
        (tmp_path / v / "requests.parquet").write_bytes(b"x" * n)
        (tmp_path / v / "summary.json").write_bytes(b"x" * 100)
    (tmp_path / "summary.json").write_bytes(b"x" * 96)
    (tmp_path / "b" / "other.txt").write_bytes(b"x" * 10**6)  # not the run's: not counted
    line = saved_line(tmp_path, [tmp_path / "a", tmp_path / "b"])
    # 3000 + 1000 + 2 * 100 + 96 = 4296 bytes = 4.195 KiB, of them 4000 B = 3.906 KiB
    assert line == (f"results in {tmp_path}/: 4.195KiB in 5 files (3.906KiB of them "
                    f"requests.parquet, one row per guest request); --no-save writes none")


def test_run_prints_where_its_results_went_and_their_size(tmp_path, capsys):
    import re

    from fleecesim.cli import main
    from fleecesim.units import fmt_size
    from tests.conftest import REPO
    assert main(["run", str(REPO / "configs/fleecing-vs-legacy.yaml"), "--out", str(tmp_path),
                 "--set", "disk.size=64MiB", "--set", "run.warmup=0.2s", "--quiet"]) == 0
    d = tmp_path / "fleecing-vs-legacy"
    files = [p for p in d.rglob("*") if p.is_file()]
    line = capsys.readouterr().out.splitlines()[-1]
    m = re.fullmatch(rf"results in {re.escape(str(d))}/: (\S+) in (\d+) files \((\S+) of them "
                     r"requests.parquet, one row per guest request\); --no-save writes none", line)
    assert m, line
    # what is on disk: both variants' requests/timeline/summary and the config's summary
    assert int(m.group(2)) == len(files) == 7
    assert m.group(1) == fmt_size(sum(p.stat().st_size for p in files))
    assert m.group(3) == fmt_size(sum(p.stat().st_size for p in d.rglob("requests.parquet")))
