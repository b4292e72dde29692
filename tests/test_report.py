from fleecesim.report import WIDE_MAX, table


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
