"""Bulk write-zeroes (devices/bulk.py, jobs/bulk.py): N equal requests at once
give the schedule of N submits; a long zero run costs what per-task copying costs."""
import pytest

from fleecesim.config import DeviceSpec
from fleecesim.devices import build_device
from fleecesim.devices.bulk import submit_many
from fleecesim.devices.host import Host, with_host

REMOTE = {"kind": "remote", "rtt": "2ms", "link-bandwidth": "1.1GiB/s", "queue-depth": 16,
          "backend": {"kind": "ssd", "latency": "0.2ms", "bandwidth": "250MiB/s",
                      "queue-depth": 32}}


def device(spec, host=True):
    spec = DeviceSpec.model_validate(spec)
    d = build_device("t", spec)
    return with_host(d, Host(8e-6, 8 * 2**30), spec.kind) if host else d


def loop(dev, now, m, off, step, length, keep):
    """m submits through the host's CPU queue, nothing else using it meanwhile."""
    ends = [dev.submit(now, off + i * step, length, True) for i in range(m)]
    return ends[-keep:]


def busy_first(dev, n=20):
    """Some 1 MiB writes already queued: the bulk starts behind a backlog."""
    for i in range(n):
        dev.submit(0.001 * i, i * 2**20, 2**20, True)


@pytest.mark.parametrize("spec", [REMOTE, dict(REMOTE, connections=3, window="256KiB"),
                                  {"preset": "nvme"}, {"preset": "hdd-7200"}])
@pytest.mark.parametrize("m", [1, 7, 200, 5000])
def test_submit_many_equals_the_loop(spec, m):
    a, b = device(spec), device(spec)
    busy_first(a)
    busy_first(b)
    got = submit_many(a, 0.05, m, 0, 2**20, 0, keep=64)
    want = loop(b, 0.05, m, 0, 2**20, 0, keep=64)
    assert len(got) == len(want)
    assert got == pytest.approx(want, abs=1e-9 * max(1, m))
    ra, rb = a.device, b.device
    # the state after: the next request is served alike
    assert ra.submit(10.0, 0, 2**20, True) == pytest.approx(rb.submit(10.0, 0, 2**20, True),
                                                            abs=1e-9 * max(1, m))
    assert ra.ops == rb.ops and ra.bytes == rb.bytes
    assert ra.busy == pytest.approx(rb.busy, rel=1e-9)
    assert a.host.requests == b.host.requests == m + 20


def test_long_run_is_skipped_not_looped():
    """64 Mi write-zeroes (a 64 TiB sparse disk) in well under a second, and the
    steady rate is the slots' (16 per RTT + backend latency)."""
    import time
    d = device(REMOTE)
    m = 64 * 2**20
    t = time.perf_counter()
    ends = submit_many(d, 0.0, m, 0, 2**20, 0, keep=64)
    assert time.perf_counter() - t < 1.0
    per = 2e-3 + 0.2e-3 + 44 / (1.1 * 2**30)
    assert ends[-1] == pytest.approx(m / 16 * per, rel=1e-3)
    assert d.device.ops == m and d.host.requests == m


# ---------------------------------------------------------------- the job's bulk
from fleecesim.jobs import bulk as jbulk  # noqa: E402
from fleecesim.run import simulate  # noqa: E402
from tests.conftest import small  # noqa: E402

# 4 GiB in 64 MiB extents, a quarter allocated: zero runs of 256 MiB and more (at t0:
# warm-up writes split them, so the guest keeps to the first GiB)
SPARSE = {"disk.size": "4GiB", "disk.allocation-granularity": "64MiB", "disk.allocated": 0.25,
          "workload.iops": 1000, "workload.span": 0.25}  # the guest keeps to the first GiB


@pytest.fixture
def bulks(monkeypatch):
    """Counts the bulks claimed by the runs of a test."""
    seen = []
    orig = jbulk.ZeroBulk.claim

    def claim(self, run):
        t = orig(self, run)
        if t is not None:
            seen.append(t[0][1] - t[0][0])
        return t
    monkeypatch.setattr(jbulk.ZeroBulk, "claim", claim)
    return seen


def test_bulk_costs_what_tasks_cost(bulks):
    """The same run with and without the bulk: bytes exact, duration and the
    guest's CBWs within a fraction of a percent (the bulk's edges)."""
    on = simulate(small(**SPARSE)).summary
    assert bulks, "no zero run was long enough for a bulk"
    off = simulate(small(**SPARSE, **{"run.bulk-zeroes": False})).summary
    assert on["oracle_ok"] and off["oracle_ok"]
    for k in ("target_zero_bytes", "target_write_bytes", "source_read_bytes"):
        assert on[k] == off[k], k
    assert on["target_zero_bytes"] + on["target_write_bytes"] == 4 * 2**30
    assert on["backup_duration_s"] == pytest.approx(off["backup_duration_s"], rel=0.01)
    assert on["host_requests"] == pytest.approx(off["host_requests"], rel=0.01)
    assert on["cbw_count"] == pytest.approx(off["cbw_count"], rel=0.03)


@pytest.mark.parametrize("state,workers", [("dense", None), ("sparse", None), ("dense", 1)])
def test_bulk_same_in_both_engines(bulks, state, workers):
    """One worker: the job's lone-task path counts a copy's bytes (``sized``);
    a bulk there once counted True, 1 byte (found by the engine-equivalence
    property test)."""
    over = {"run.state": state}
    if workers:
        over["backup.max-workers"] = workers
    cfg = small(**SPARSE, **over)
    a = simulate(cfg).summary
    b = simulate(cfg, fast_path=False).summary
    assert bulks
    for k in ("backup_duration_s", "target_zero_bytes", "cbw_count", "write_p99_s",
              "host_requests", "oracle_ok", "job_copied_bytes"):
        assert a[k] == b[k], k


def test_no_bulk_where_cbw_writes_the_target(bulks):
    """blockdev-backup's copy-before-write shares the job's block-copy and target."""
    s = simulate(small(**SPARSE, **{"backup.scheme": "backup"})).summary
    assert s["oracle_ok"] and not bulks
