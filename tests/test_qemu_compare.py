"""The model against real QEMU (fleecesim.qemu.compare, ``fleecesim qemu``).

Translation and the simulator twin run everywhere; the real comparison needs
qemu-storage-daemon / qemu-io / qemu-img (marker ``qemu``; skipped with the
install hint when they are missing)."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from fleecesim.config import load_config, resolve
from fleecesim.errors import UserError
from fleecesim.qemu import QemuScenario, distinct_clusters_written, guest_requests, qemu_available
from fleecesim.qemu.compare import (
    LOCAL_ESTIMATE, NBD_INFLIGHT, compare, scenario_from_config, sim_config, sim_measure, table)

KiB, MiB = 1024, 1024 * 1024
REPO = Path(__file__).resolve().parents[1]
SMALL = REPO / "configs" / "qemu-small.yaml"

QEMU_OK, QEMU_WHY = qemu_available()
needs_qemu = pytest.mark.skipif(not QEMU_OK, reason=f"real QEMU not available: {QEMU_WHY}")


def tiny_cfg(**over):
    """64 MiB disk, 20 MiB/s target (3.2 s copy), 200 writes/s, 1/4 of 64 KiB."""
    cfg = load_config(SMALL)
    raw = cfg.dump()
    raw["disk"]["size"] = 64 * MiB
    raw["run"]["warmup"] = 0.5
    return resolve(raw, over)


# ---------------------------------------------------------------- translation

def test_qemu_small_translates_to_the_documented_scenario():
    cfg = load_config(SMALL)
    for scheme in ("backup", "fleecing-push", "fleecing-pull"):
        sc = scenario_from_config(cfg, scheme)
        assert sc.scheme == scheme
        assert sc.disk_size == 256 * MiB and sc.cluster_size == 64 * KiB
        assert sc.target_bps == 20 * MiB
        assert sc.write_rate == 200 and sc.read_rate == 0
        assert sorted(sc.write_sizes) == [(4 * KiB, 3.0), (64 * KiB, 1.0)]
        assert sc.pre_backup_s == 1.0 and sc.seed == 1
        assert sc.duration_s == pytest.approx(0.75 * 256 / 20, abs=0.05)
        assert sc.pull_bps is None
        # the read-splitting workaround for QEMU 7.2's snapshot read bug
        assert sc.snapshot_read_max == (None if scheme == "backup" else 64 * KiB)
        assert scenario_from_config(cfg, scheme, as_is=True).snapshot_read_max is None


def test_translation_of_mix_target_and_pull_link():
    cfg = tiny_cfg(**{"workload.iops": 400, "workload.mix": {"read": 1, "write": 3},
                      "devices.target": {"kind": "remote", "rtt": "1ms", "link-bandwidth": "50MiB/s",
                                         "queue-depth": 16,
                                         "backend": {"kind": "ssd", "latency": "0.1ms",
                                                     "bandwidth": "30MiB/s"}},
                      "devices.pull": {"kind": "remote", "rtt": "1ms", "link-bandwidth": "10MiB/s",
                                       "backend": {"preset": "nvme"}},
                      "backup.client.link": "pull", "backup.scheme": "fleecing-pull"})
    sc = scenario_from_config(cfg, "fleecing-pull", duration_s=1.5)
    assert sc.write_rate == pytest.approx(300) and sc.read_rate == pytest.approx(100)
    assert sc.read_sizes == sc.write_sizes
    assert sc.target_bps == 30 * MiB         # min(link, backend)
    assert sc.pull_bps == 10 * MiB           # the client's link
    assert sc.duration_s == 1.5
    req = guest_requests(sc)
    assert 0.15 < np.mean(req["op"] == 0) < 0.35


@pytest.mark.parametrize("over, key", [
    ({"workload.pattern": "zipf"}, "workload.pattern"),
    ({"workload.mix.discard": 0.1}, "workload.mix.discard"),
    ({"workload.iops": None, "workload.iodepth": 4}, "workload.iodepth"),
    ({"disk.allocated": 0.5}, "disk.allocated"),
    ({"backup.sync": "incremental"}, "backup.sync"),
    ({"backup.speed": "10MiB/s"}, "backup.speed"),
    ({"backup.max-workers": 8}, "backup.max-workers"),
    ({"workload.size": "6KiB"}, "workload.size"),
])
def test_what_qemu_cannot_run_is_a_one_line_error(over, key):
    if "workload.iodepth" in over:  # max-inflight is open-loop only
        over = {**over, "workload.max-inflight": None}
    with pytest.raises(UserError, match=key.replace(".", r"\.")) as e:
        scenario_from_config(tiny_cfg(**over), "fleecing-push")
    assert "\n" not in str(e.value)
    with pytest.raises(UserError, match="no real-QEMU counterpart"):
        scenario_from_config(tiny_cfg(), "legacy-backup")


def test_sim_twin_matches_the_real_setup():
    sc = scenario_from_config(tiny_cfg(), "fleecing-push")
    local = {"latency": 20e-6, "bandwidth": 10 * 2**30, "source": "test"}
    c = sim_config(sc, local)
    assert c.disk.size == sc.disk_size and c.disk.allocated == 1.0
    assert c.cluster_size == sc.cluster_size
    assert c.workload.max_inflight == NBD_INFLIGHT
    assert c.run.warmup == sc.pre_backup_s and c.run.seed == sc.seed
    tgt = c.devices["target"]
    assert tgt.kind == "remote" and tgt.link_bandwidth == sc.target_bps and tgt.queue_depth == 16
    assert c.devices["local"].latency == 20e-6 and c.devices["local"].bandwidth == 10 * 2**30
    assert c.max_chunk == sc.cluster_size         # split snapshot reads: one cluster a task
    assert c.backup.max_workers == 64
    as_is = sim_config(scenario_from_config(tiny_cfg(), "fleecing-push", as_is=True))
    assert as_is.max_chunk == MiB
    pull = sim_config(scenario_from_config(tiny_cfg(), "fleecing-pull"))
    assert pull.backup.client.link == "target" and pull.backup.client.storage == "local"
    assert pull.backup.max_workers == 8 and pull.max_chunk == 64 * KiB  # qemu-img convert
    assert sim_config(scenario_from_config(tiny_cfg(), "backup")).max_chunk == MiB


@pytest.fixture(scope="module")
def sim_runs():
    cfg = tiny_cfg()
    out = {}
    for s in ("backup", "fleecing-push", "fleecing-pull"):
        sc = scenario_from_config(cfg, s)
        out[s] = (sc, sim_measure(sc, sim_config(sc, LOCAL_ESTIMATE)))
    return out


def test_sim_twin_structural_agreements(sim_runs):
    for s, (sc, m) in sim_runs.items():
        assert m["oracle_ok"]
        assert m["target_write_bytes"] == sc.disk_size
        req = guest_requests(sc)
        assert m["writes_done"] == int(((req["op"] == 1) & (req["time"] >= sc.pre_backup_s)).sum())
        assert m["guest_clusters"] == distinct_clusters_written(
            req, sc.cluster_size, t_from=sc.pre_backup_s, t_to=m["backup_end_s"])
        if s == "backup":
            assert m["fleecing_clusters_written"] is None
        else:
            assert m["fleecing_clusters_written"] == m["guest_clusters"] > 100
        # the whole disk at the throttle's rate, and not much more
        ideal = sc.disk_size / sc.target_bps
        assert ideal <= m["backup_duration_s"] < 1.1 * ideal


def test_sim_twin_orders_the_schemes(sim_runs):
    """No fleecing: guest writes copy to the throttled target behind the job's
    queue (seconds); fleecing: they copy to the local page cache (well below 1 ms)."""
    p99 = {s: m["write_p99_s"] for s, (_, m) in sim_runs.items()}
    assert p99["backup"] > 0.5
    assert p99["fleecing-push"] < 1e-3 and p99["fleecing-pull"] < 1e-3


def _fake_real(sc: QemuScenario) -> dict:
    """A run_qemu result shaped like the real one, from the simulator twin."""
    req = guest_requests(sc)
    m = sim_measure(sc, sim_config(sc, LOCAL_ESTIMATE))
    n_pre = int(((req["op"] == 1) & (req["time"] < sc.pre_backup_s)).sum())
    guest = distinct_clusters_written(req, sc.cluster_size, t_from=sc.pre_backup_s)
    return {"scheme": sc.scheme, "qemu_version": "fake 7.2",
            "backup_duration_s": m["backup_duration_s"] * 1.1,
            "write_p50_s": m["write_p50_s"] + 1e-3, "write_p99_s": m["write_p99_s"] + 5e-3,
            "write_max_s": m["write_max_s"], "writes_done": m["writes_done"],
            "pre_write_lat": [1e-3 + LOCAL_ESTIMATE["latency"]] * n_pre,
            "target_write_bytes": sc.disk_size,
            "fleecing_clusters_written": guest if sc.scheme != "backup" else None,
            "distinct_clusters_written_by_guest": guest,
            "content_ok": sc.scheme != "fleecing-pull", "content_detail": "x blocks differ"}


def test_compare_plumbing_without_qemu():
    cmp = compare(tiny_cfg(), ["backup", "fleecing-push", "fleecing-pull"],
                  run_real=_fake_real, local=LOCAL_ESTIMATE)
    assert cmp["calibration"]["guest_hop_s"] == pytest.approx(1e-3, rel=0.05)
    push = cmp["schemes"]["fleecing-push"]
    assert push["metrics"]["backup_duration_s"]["ratio"] == pytest.approx(1 / 1.1)
    assert push["metrics"]["target_write_bytes"]["ratio"] == 1.0
    assert push["structural_ok"] and push["content_ok"]
    assert not cmp["schemes"]["fleecing-pull"]["content_ok"] and not cmp["content_ok"]
    # sim latencies carry the calibrated hop; raw ones are kept
    assert push["metrics"]["write_p50_s"]["sim"] == pytest.approx(
        push["write_p50_s_raw"] + cmp["calibration"]["guest_hop_s"])
    b = {(x["metric"], x["b"]): x for x in cmp["between"]}
    assert b[("write_p99_s", "fleecing-push")]["ordering_match"] is True
    assert b[("backup_duration_s", "fleecing-push")]["ordering_match"] is True  # a tie both ways
    text = table(cmp)
    assert "sim/real" in text and "fleecing clusters" in text and "guest hop" in text
    json.dumps(cmp["between"])


def test_cli_without_qemu_says_what_to_install(monkeypatch, capsys):
    import fleecesim.qemu.runner as runner
    from fleecesim.cli import main
    monkeypatch.setattr(runner.shutil, "which", lambda name: None)
    assert main(["qemu", str(SMALL), "--no-save"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "qemu-utils" in err[0]


def test_cli_content_mismatch_is_loud_and_exit_1(monkeypatch, capsys, tmp_path):
    import fleecesim.qemu.compare as compare_mod
    import fleecesim.qemu.runner as runner
    from fleecesim.cli import main
    monkeypatch.setattr(runner, "qemu_available", lambda: (True, "fake"))
    real_compare = compare_mod.compare
    monkeypatch.setattr(compare_mod, "compare", lambda cfg, schemes, **kw: real_compare(
        tiny_cfg(), schemes, run_real=_fake_real, local=LOCAL_ESTIMATE))
    rc = main(["qemu", str(SMALL), "--out", str(tmp_path), "--scheme", "fleecing-pull"])
    out, err = capsys.readouterr()
    assert rc == 1
    assert "CONTENT MISMATCH (fleecing-pull)" in err
    assert "sim/real" in out
    d = tmp_path / "qemu-small" / "qemu"
    assert sorted(p.name for p in d.iterdir()) == ["comparison.json", "real-fleecing-pull.json",
                                                   "table.txt"]
    assert json.loads((d / "comparison.json").read_text())["content_ok"] is False
    assert main(["qemu", str(SMALL), "--scheme", "mirror", "--no-save"]) == 2


def test_qemu_small_is_an_ordinary_config(capsys):
    from fleecesim.cli import main
    assert main(["run", str(SMALL), "--no-save", "--quiet"]) == 0


# ---------------------------------------------------------------- real QEMU

def _timing_in_band(cmp) -> bool:
    """Every timing band the tests below hold (backup duration within 25 %,
    write p50 within 2x for every scheme, the no-fleecing write p99 within 2x,
    the p99 ordering), as one yes/no."""
    for d in cmp["schemes"].values():
        m = d["metrics"]
        if not (0.8 < m["backup_duration_s"]["ratio"] < 1.25
                and 0.5 < m["write_p50_s"]["ratio"] < 2.0):
            return False
    b = cmp["schemes"]["backup"]["metrics"]
    if not 0.5 < b["write_p99_s"]["ratio"] < 2.0:
        return False
    return all(x["ordering_match"] for x in cmp["between"] if x["metric"] == "write_p99_s")


@pytest.fixture(scope="module")
def real_cmp():
    """One comparison of the three schemes against real QEMU, measured again
    once when a timing band fails. Its real half is a few seconds of timing on
    a shared machine: one CI run on a clean clone saw fleecing-push's real
    write p50 at 2.15 ms against its usual 0.67-0.71 ms (sim 0.63-0.72 ms),
    a disturbance its own hop probe did not see. A model that is off fails
    both measurements; the structural and content checks hold on whichever
    is kept."""
    if not QEMU_OK:
        pytest.skip(f"real QEMU not available: {QEMU_WHY}")
    schemes = ["backup", "fleecing-push", "fleecing-pull"]
    cmp = compare(tiny_cfg(), schemes)
    if not _timing_in_band(cmp):
        cmp = compare(tiny_cfg(), schemes)
    return cmp


def test_timing_in_band_sees_each_band():
    """The re-measure trigger is not always-true: each band, broken alone,
    makes it fail."""
    def fake(**over):
        m = {"backup_duration_s": {"ratio": 1.0}, "write_p50_s": {"ratio": 1.0},
             "write_p99_s": {"ratio": 1.0}}
        m.update({k: {"ratio": v} for k, v in over.items()})
        return {"schemes": {"backup": {"metrics": m},
                            "fleecing-push": {"metrics": {k: dict(v) for k, v in m.items()}}},
                "between": [{"metric": "write_p99_s", "ordering_match": True}]}
    assert _timing_in_band(fake())
    assert not _timing_in_band(fake(backup_duration_s=1.3))
    assert not _timing_in_band(fake(write_p50_s=0.42))
    assert not _timing_in_band(fake(write_p99_s=2.5))
    c = fake()
    c["between"][0]["ordering_match"] = False
    assert not _timing_in_band(c)


@pytest.mark.qemu
@pytest.mark.timeout(180)
@needs_qemu
def test_real_and_sim_agree_structurally(real_cmp):
    assert real_cmp["content_ok"], {s: d["content_detail"] for s, d in real_cmp["schemes"].items()}
    disk = 64 * MiB
    for s, d in real_cmp["schemes"].items():
        m = d["metrics"]
        # full backup: the whole disk reaches the target exactly once, in both worlds
        assert m["target_write_bytes"]["real"] == m["target_write_bytes"]["sim"] == disk
        assert m["writes_done"]["real"] == m["writes_done"]["sim"]
        if s != "backup":
            # every cluster the guest wrote during the backup was copied once
            assert m["fleecing_clusters_written"]["real"] == m["guest_clusters"]["real"] > 100
            assert m["fleecing_clusters_written"]["sim"] == m["guest_clusters"]["sim"] > 100
        assert d["structural_ok"] and d["sim_oracle_ok"]


@pytest.mark.qemu
@pytest.mark.timeout(180)
@needs_qemu
def test_sim_orders_write_p99_like_qemu(real_cmp):
    for x in real_cmp["between"]:
        if x["metric"] == "write_p99_s":
            assert x["real"] > 1 and x["sim"] > 1 and x["ordering_match"], x


@pytest.mark.qemu
@pytest.mark.timeout(180)
@needs_qemu
def test_magnitudes_where_the_model_should_hold(real_cmp):
    """Throttle-bound quantities: backup duration, and the no-fleecing guest's
    write latency (queued behind the job at the throttle) - within 25% / 2x."""
    for s, d in real_cmp["schemes"].items():
        assert 0.8 < d["metrics"]["backup_duration_s"]["ratio"] < 1.25, s
    b = real_cmp["schemes"]["backup"]["metrics"]
    assert 0.5 < b["write_p50_s"]["ratio"] < 2.0
    assert 0.5 < b["write_p99_s"]["ratio"] < 2.0
    assert math.isfinite(real_cmp["calibration"]["guest_hop_s"])


def test_guest_hop_calibration_reports_its_spread_and_warns_when_noisy():
    """Issue 14: a loaded machine made the calibrated guest hop 93 ms and 50 ms
    in two runs with no warning. The spread is reported; noise is flagged."""
    import numpy as np
    from fleecesim.qemu.compare import hop_calibration
    rng = np.random.default_rng(1)
    sim = {s: np.full(50, 1e-4) for s in ("backup", "fleecing-push")}
    quiet = {s: 2e-3 + rng.normal(0, 1e-4, 50) for s in sim}
    c = hop_calibration(quiet, sim)
    assert not c["noisy"] and abs(c["guest_hop_s"] - 1.9e-3) < 1e-4
    assert set(c["per_scheme_s"]) == set(sim) and c["real_pre_p10_s"] < c["real_pre_p90_s"]
    loaded = {"backup": 2e-3 + rng.normal(0, 1e-4, 50),
              "fleecing-push": 50e-3 + rng.exponential(40e-3, 50)}
    c = hop_calibration(loaded, sim)
    assert c["noisy"] and "differs" in c["noisy_why"] and "not trustworthy" in c["noisy_why"]
    few = hop_calibration({"backup": [1e-3] * 5}, sim)
    assert not few["noisy"] and "estimate" in few["guest_hop_source"]


def _fake_real_with_probe(sc: QemuScenario) -> dict:
    """As _fake_real, but the real path adds a hop drawn from a heavy-tailed
    distribution to every write, and the hop probe sees the same distribution
    (plus the lone 4 KiB write the simulator charges it)."""
    r = _fake_real(sc)
    m = sim_measure(sc, sim_config(sc, LOCAL_ESTIMATE))
    rng = np.random.default_rng(5)
    hop = lambda n: 0.5e-3 + rng.exponential(2e-3, n)  # noqa: E731
    w = m["write_lat"] + hop(len(m["write_lat"]))
    r["write_p50_s"], r["write_p99_s"] = float(np.percentile(w, 50)), float(np.percentile(w, 99))
    r["pre_write_lat"] = list(m["pre_write_lat"] + hop(len(m["pre_write_lat"])))
    r["probe_pre_lat"] = list(m["lone_4k_write_s"] + hop(60))
    r["probe_lat"] = list(m["lone_4k_write_s"] + hop(150))
    return r


def test_probe_hop_is_drawn_per_request():
    """With hop-probe samples the simulated latency is sim + a hop drawn per
    request from them: p50 and p99 both follow the real path's distribution
    (a constant hop would give p99 ~ p50 + hop)."""
    cmp = compare(tiny_cfg(), ["fleecing-push", "fleecing-pull"],
                  run_real=_fake_real_with_probe, local=LOCAL_ESTIMATE)
    cal = cmp["calibration"]
    assert cal["hop_model"] == "probe"
    assert cal["probe"]["fleecing-push"]["dur"]["n"] == 150
    for s, d in cmp["schemes"].items():
        m = d["metrics"]
        assert 0.7 < m["write_p50_s"]["ratio"] < 1.4, s
        assert 0.6 < m["write_p99_s"]["ratio"] < 1.6, s
    assert "hop probe" in table(cmp)
    # reproducible: the draws are seeded
    again = compare(tiny_cfg(), ["fleecing-push"], run_real=_fake_real_with_probe,
                    local=LOCAL_ESTIMATE)
    assert again["schemes"]["fleecing-push"]["metrics"]["write_p99_s"]["sim"] == \
        cmp["schemes"]["fleecing-push"]["metrics"]["write_p99_s"]["sim"]


@pytest.mark.qemu
@pytest.mark.timeout(180)
@needs_qemu
def test_write_p50_within_2x_with_the_probe_hop(real_cmp):
    """Issue 11 item 10: the guest's own path is measured beside the run (the
    hop probe), so write p50 holds within 2x for every scheme, quiet or loaded."""
    assert real_cmp["calibration"]["hop_model"] == "probe"
    for s, d in real_cmp["schemes"].items():
        assert 0.5 < d["metrics"]["write_p50_s"]["ratio"] < 2.0, (s, d["metrics"]["write_p50_s"])
