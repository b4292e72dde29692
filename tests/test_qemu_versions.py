"""qemu.version: the one table of what changes between QEMU versions
(fleecesim/qemu/versions.py), read by config validation, the schemes and
`fleecesim qmp`."""
from __future__ import annotations

import pytest

from fleecesim.errors import ConfigError
from fleecesim.qemu import versions
from fleecesim.qemu.versions import BY_KEY, NEWEST, TABLE, cbw_timeout_seconds, has
from fleecesim.run import run
from tests.conftest import small

KiB, MiB = 1024, 1024 * 1024


@pytest.mark.parametrize("n, eff", [(5, 0.705032704), (10, 1.410065408), (45, 2.05032704),
                                    (60, 4.165425152), (4, 4.0), (1, 1.0)])
def test_cbw_timeout_overflow_closed_form(n, eff):
    # (N * 10^9 mod 2^32) ns before 9.1, the seconds as given from 9.1
    assert cbw_timeout_seconds((7, 2), n) == pytest.approx(eff, abs=1e-12)
    assert cbw_timeout_seconds((9, 0), n) == pytest.approx(eff, abs=1e-12)
    assert cbw_timeout_seconds((9, 1), n) == n
    assert cbw_timeout_seconds(NEWEST, n) == n
    assert cbw_timeout_seconds((7, 2), 0) == 0  # no limit stays no limit


def test_fractional_timeouts_overflow_as_the_whole_seconds_qemu_gets():
    assert cbw_timeout_seconds((7, 2), 1.5) == 1.5          # 2 s: no overflow, model's 1.5
    assert cbw_timeout_seconds((7, 2), 4.5) == pytest.approx((5 * 10**9 % 2**32) / 1e9)


def test_every_row_cites_a_source_and_bugs_have_a_range():
    keys = [c.key for c in TABLE]
    assert len(keys) == len(set(keys))
    for c in TABLE:
        assert c.kind in ("feature", "bug") and c.source and c.what
        if c.kind == "bug":
            assert c.first is not None and c.first < c.since
            assert "commit" in c.source
    assert has((7, 2), "cbw-timeout-overflow") and not has((9, 1), "cbw-timeout-overflow")
    assert not has((7, 0), "cbw-timeout-overflow")  # no cbw-timeout before 7.1 at all
    assert has((7, 2), "hbitmap-status") and not has((8, 0), "hbitmap-status")
    table = versions.readme_table()
    assert table.count("\n") == len(TABLE) + 1 and "10b1e09ed3c4" in table


def test_version_parses_and_bad_versions_are_one_line_errors():
    assert small(**{"qemu.version": "7.2.22"}).qemu.version == "7.2"
    assert small(**{"qemu.version": 9.2}).qemu.v == (9, 2)
    assert small().qemu.v == NEWEST
    for bad, msg in (("seven", "MAJOR.MINOR"), ("2.5", "2.12 or later")):
        with pytest.raises(ConfigError, match=f"qemu.version: .*{msg}") as e:
            small(**{"qemu.version": bad})
        assert "\n" not in str(e.value)


def test_default_version_dumps_as_before():
    assert "qemu" not in small().dump()
    assert small(**{"qemu.version": "7.2"}).dump()["qemu"] == {"version": "7.2"}


@pytest.mark.parametrize("overrides, since", [
    ({"backup.discard-source": True}, "9.1"),
    ({"backup.min-cluster-size": "128KiB"}, "9.2"),
])
def test_a_feature_the_version_lacks_names_the_version_that_has_it(overrides, since):
    small(**overrides, **{"qemu.version": since})  # fine there
    with pytest.raises(ConfigError, match=fr"needs QEMU >= {since}.*not qemu.version 8\.2"):
        small(**overrides, **{"qemu.version": "8.2"})


@pytest.mark.parametrize("overrides, version, since", [
    ({"backup.cbw-timeout": "5s"}, "7.0", "7.1"),
    ({"backup.on-cbw-error": "break-snapshot"}, "7.0", "7.1"),
    ({"backup.scheme": "fleecing-pull"}, "6.2", "7.0"),
    ({"backup.scheme": "backup"}, "5.2", "6.0"),
])
def test_older_features(overrides, version, since):
    with pytest.raises(ConfigError, match=fr"needs QEMU >= {since}"):
        small(**overrides, **{"qemu.version": version})


def test_hbitmap_bug_with_a_job_cluster_larger_than_the_fleecing_cluster_is_refused():
    cfg = {"backup.target.cluster-size": "128KiB"}
    small(**cfg, **{"qemu.version": "8.0"})
    with pytest.raises(ConfigError, match="backup.target.cluster-size.*8.0"):
        small(**cfg, **{"qemu.version": "7.2"})


def _thin(version, timeout):
    return small(**{"disk.size": "1GiB", "workload.iops": 400,
                    "workload.mix": {"read": 0.6, "write": 0.4},
                    "workload.size": {"4KiB": 0.5, "64KiB": 0.5},
                    "faults.fleecing-device.thin": {"extent": "64MiB",
                                                    "extend-time": ["2.2s", "6.2s"]},
                    "backup.on-cbw-error": "break-snapshot", "backup.cbw-timeout": timeout,
                    "qemu.version": version})


def test_thin_volume_cbw_timeout_45s_on_7_2_breaks_after_2_05s_and_warns():
    """The same run on 7.2 and 9.2: a thin extension of 2.2-6.2 s outlasts 7.2's
    effective 2.05 s (45 s overflowed) but not 9.2's 45 s."""
    old = run(_thin("7.2", "45s")).summary
    new = run(_thin("9.2", "45s")).summary
    assert old["snapshot_broken"] and not new["snapshot_broken"]
    assert old["oracle_ok"] is False and new["oracle_ok"] is True
    # the guest write that timed out waited exactly the effective timeout
    assert old["write_max_s"] == pytest.approx(2.05032704, abs=0.05)
    assert new["write_max_s"] > 2.2  # it waited for the extension instead
    assert any("2.05s" in w and "10b1e09ed3c4" in w for w in old["warnings"])
    assert not any("overflows" in w for w in new["warnings"])


def test_fleecing_push_before_8_0_copies_one_cluster_per_request():
    """The recipe's workaround (x-perf max-chunk = one cluster) is simulated:
    the same bytes reach the target in one-cluster requests instead of 1 MiB
    ones, which changes the job's timing, and the summary says so."""
    cfg = {"disk.size": "64MiB", "workload.iops": 50}
    old = run(small(**cfg, **{"qemu.version": "7.2"})).summary
    new = run(small(**cfg, **{"qemu.version": "8.0"})).summary
    assert any("one cluster" in w and "8.0" in w for w in old["warnings"])
    assert not new["warnings"]
    assert old["oracle_ok"] and new["oracle_ok"]
    assert old["target_write_bytes"] == new["target_write_bytes"]
    assert old["backup_duration_s"] != new["backup_duration_s"]
