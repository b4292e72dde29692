"""Issue 13 item 2: where a guest request's time goes (``lat_*`` columns of
requests.parquet, ``write_attribution_s`` in the summary, ``plot --kind
attribution``).

Node-level tests check each component against its closed form on the rig of
tests/test_cache_tiers.py (FIFO devices: a request alone takes latency +
bytes/bandwidth); run-level tests check the invariants on every scheme: the
components are non-negative and add up to the latency, and each path has the
components it must have.
"""
import json

import numpy as np
import pytest

from fleecesim.cli import main
from fleecesim.metrics import (A_CACHE_WRITE, A_CBW_READ, A_FROZEN, A_FULL, A_INFLIGHT,
                               A_TARGET_WRITE, COMPONENTS, Attr)
from fleecesim.run import simulate
from fleecesim.schemes import SCHEMES
from tests.conftest import honoured, small
from tests.test_cache_tiers import CS, GiB, rig

SSD = (80e-6, 2.5 * GiB)   # the rig's active disk and disk tier
RAM = (1e-6, 8 * GiB)      # the rig's RAM tier


def near(x):
    """Equal up to the float32 rounding of the recorded latency (~1e-11 s)."""
    return pytest.approx(x, rel=1e-6, abs=1e-10)


def t_io(dev, nbytes):
    lat, bw = dev
    return lat + nbytes / bw


def guest_write(r, c, att, at=0.0, nbytes=4096):
    """A guest write of cluster ``c`` through the filter, issued at ``at``."""
    def proc():
        if at > r.env.now:
            yield r.env.timeout(at - r.env.now)
        t = r.env.now
        yield from r.f.write(c * CS, nbytes, att=att)
        att.lat = r.env.now - t
    r.env.process(proc())


def lat_of(att):
    """Attr plus its latency -> seconds per component, as the recorder splits it."""
    from fleecesim.metrics import Recorder
    rec = Recorder()
    rec.add(0.0, 1, 0, 4096, att.lat, 1, att)
    return dict(zip(COMPONENTS, rec.attribution()[0].tolist()))


class Timed(Attr):
    __slots__ = ("lat",)


def test_cbw_write_splits_into_source_read_cache_write_and_its_own_write():
    r = rig()
    att = Timed()
    guest_write(r, 0, att)
    r.env.run()
    got = lat_of(att)
    assert got["cbw_read"] == near(t_io(SSD, CS))
    assert got["cache_write"] == near(t_io(RAM, CS))  # RAM tier first
    assert got["service"] == near(t_io(SSD, 4096))
    assert got["queue"] == near(0)
    assert att.c[A_TARGET_WRITE] == att.c[A_INFLIGHT] == att.c[A_FROZEN] == 0
    assert sum(got.values()) == near(att.lat)


def test_a_write_behind_anothers_copy_waits_for_it_then_queues_behind_its_write():
    """Two writes of one cluster at t=0: the second waits for the first's copy
    (its whole read + write), then both disk writes are submitted together and
    the second's transfer queues behind the first's in the one pipe."""
    r = rig()
    a, b = Timed(), Timed()
    guest_write(r, 0, a)
    guest_write(r, 0, b)
    r.env.run()
    ga, gb = lat_of(a), lat_of(b)
    assert gb["inflight_wait"] == near(t_io(SSD, CS) + t_io(RAM, CS))
    assert gb["cbw_read"] == 0 and gb["cache_write"] == 0
    assert ga["queue"] == near(0)
    assert gb["queue"] == near(4096 / SSD[1])
    assert gb["service"] == near(t_io(SSD, 4096))


def test_a_write_under_a_snapshot_read_waits_frozen_until_the_read_ends():
    r = rig()
    r.copier.needed[3] = False  # copied already: the write needs no CBW
    r.env.process(r.f.snapshot_read(3 * CS, CS))  # t=0: reads the active disk
    att = Timed()
    guest_write(r, 3, att, at=10e-6)
    r.env.run()
    got = lat_of(att)
    assert got["frozen_wait"] == near(t_io(SSD, CS) - 10e-6)
    assert got["queue"] == near(0)
    assert att.c[A_CBW_READ] == 0


def test_a_cbw_waiting_for_fleecing_room_counts_as_cache_full_wait():
    """Cache of 2 clusters, on-cbw-error=wait: the third CBW's write waits until
    the reader discards cluster 0 at t=1 ms."""
    r = rig(ram=1, disk=1, wait=True, cor=False, serve=False)
    first, second, third = Timed(), Timed(), Timed()
    guest_write(r, 0, first)
    guest_write(r, 1, second)
    guest_write(r, 2, third)

    def reader():
        yield r.env.timeout(1e-3)
        yield from r.f.snapshot_discard(0, CS)
    r.env.process(reader())
    r.env.run()
    got = lat_of(third)
    assert third.c[A_FULL] > 0
    read_done = got["cbw_read"]  # its read started at 0 (parallel slots)
    assert got["cache_full_wait"] == near(1e-3 - read_done)
    # then its write, alone, to the RAM tier the discard freed (cluster 0 was there)
    assert got["cache_write"] == near(t_io(RAM, CS))
    assert lat_of(first)["cache_full_wait"] == 0


# ------------------------------------------------------------------ whole runs
COLS = [f"lat_{c}" for c in COMPONENTS]


def _check(req):
    att = req[COLS].to_numpy(dtype=np.float64)
    lat = req["latency"].to_numpy(dtype=np.float64)
    assert (att >= 0).all()
    # float32 columns: the parts add up to the latency to float32 rounding
    np.testing.assert_allclose(att.sum(axis=1), lat, rtol=1e-5, atol=1e-9)
    direct = (req["path"] == "direct").to_numpy()
    other = [f"lat_{c}" for c in COMPONENTS[2:]]
    assert (req.loc[direct, other].to_numpy() == 0).all()  # device time only
    wait = (req["path"] == "wait").to_numpy()
    assert (req.loc[wait, "lat_inflight_wait"] > 0).all()
    cbw = (req["path"] == "cbw").to_numpy()
    copy = req.loc[cbw, ["lat_cbw_read", "lat_cache_write", "lat_target_write"]].sum(axis=1)
    assert (copy > 0).all()
    err = (req["path"] == "error").to_numpy()
    np.testing.assert_allclose(req.loc[err, "lat_error"], req.loc[err, "latency"])


@pytest.mark.parametrize("scheme", sorted(s for s in SCHEMES if s != "none"))
def test_components_add_up_to_the_latency_on_every_scheme(scheme):
    cfg = small(**honoured(scheme, {"backup.scheme": scheme, "backup.speed": "40MiB/s"}))
    res = simulate(cfg)
    req = res.requests
    _check(req)
    s = res.summary
    w = req[(req["op"] == "write") & (req["phase"] == "backup")]
    assert sum(s["write_attribution_s"].values()) == pytest.approx(
        float(w["latency"].astype(np.float64).mean()), rel=1e-5)
    # the CBW's write goes where the scheme's copies go
    part = "lat_target_write" if scheme in ("backup", "legacy-backup", "overlay-cor") \
        else "lat_cache_write"
    if s["cbw_count"] and scheme == "fleecing-push-2018":
        # both: job 1's copy into the scratch image waits for job 2's
        # notifier, whose copy goes to the remote target first
        assert w["lat_target_write"].sum() > 0 and w["lat_cache_write"].sum() > 0
    elif s["cbw_count"]:
        assert w[part].sum() > 0
        wrong = ({"lat_target_write", "lat_cache_write"} - {part}).pop()
        assert w[wrong].sum() == 0


def test_legacy_writes_pay_the_target_fleecing_writes_pay_local_copies():
    """What the attribution is for: under legacy-backup the slowest writes
    spend most of their time in the CBW's target write; under fleecing-push
    in the CBW's local copy (here its source read, queued on the NVMe behind
    the job's 1 MiB reads), never at the target."""
    out = {}
    for scheme in ("legacy-backup", "fleecing-push"):
        s = simulate(small(**honoured(scheme, {"backup.scheme": scheme}))).summary
        out[scheme] = s["write_tail_attribution_s"]
    leg, fl = out["legacy-backup"], out["fleecing-push"]
    assert leg["target_write"] > 0.5 * sum(leg.values())
    assert fl["target_write"] == 0
    assert fl["cbw_read"] + fl["cache_write"] > 0.5 * sum(fl.values())


def test_failed_writes_are_all_error():
    cfg = small(**{"backup.on-cbw-error": "break-guest-write", "backup.cache.size": "1MiB",
                   "guest.werror": "report"})  # reported, not held by a stopped VM
    res = simulate(cfg)
    req = res.requests
    assert (req["path"] == "error").sum() > 0
    _check(req)
    assert res.summary["write_attribution_s"]["error"] > 0


def test_fast_and_reference_engines_attribute_alike():
    cfg = small(**{"backup.speed": "40MiB/s"})
    a = simulate(cfg).summary["write_attribution_s"]
    b = simulate(cfg, fast_path=False).summary["write_attribution_s"]
    for k in COMPONENTS:
        assert a[k] == pytest.approx(b[k], rel=1e-4, abs=1e-9), k


def test_plot_attribution_from_a_run_directory(tmp_path):
    cfg = tmp_path / "two.yaml"
    cfg.write_text(json.dumps({
        "name": "two", "disk": {"size": "256MiB"},
        "devices": {"local": {"preset": "nvme"}, "target": {"preset": "nbd-1gbe"}},
        "workload": {"iops": 1000},
        "run": {"warmup": "0.2s", "tail": "0.1s"},
        "variants": [{"name": "legacy", "set": {"backup.scheme": "legacy-backup"}},
                     {"name": "fleecing", "set": {"backup.scheme": "fleecing-push"}}]}))
    out = tmp_path / "res"
    assert main(["run", str(cfg), "--out", str(out), "--quiet"]) == 0
    assert main(["plot", str(out / "two"), "--kind", "attribution", "--quiet"]) == 0
    png = out / "two" / "plots" / "attribution.png"
    assert png.stat().st_size > 10_000
    summ = json.loads((out / "two" / "legacy" / "summary.json").read_text())
    assert set(summ["write_attribution_s"]) == set(COMPONENTS)


def test_plot_attribution_refuses_results_without_it(tmp_path):
    d = tmp_path / "old" / "v"
    d.mkdir(parents=True)
    (d / "summary.json").write_text(json.dumps({"name": "v", "write_p99_s": 1e-3}))
    assert main(["plot", str(tmp_path / "old"), "--kind", "attribution", "--quiet"]) == 2
