"""The block-copy engine as QEMU's ``backup`` scheme uses it: workers, chunks,
memory cap, speed, zero clusters, the shared bitmap and in-flight waits."""
import numpy as np
import pytest
import simpy

from fleecesim.devices import Device, RemoteDevice
from fleecesim.errors import ConfigError
from fleecesim.jobs import BackupJob, BlockCopy
from fleecesim.metrics import PATH_CBW, PATH_WAIT, Stats
from fleecesim.nodes import ActiveDisk, BackupTarget, CBWFilter
from fleecesim.policies import make_ordering
from fleecesim.run import simulate
from tests.conftest import small

MiB = 2**20
# local SSD source; 20 ms RTT, 100 MiB/s WAN link with 16 NBD requests in flight;
# an SSD behind it.
SRC = {"kind": "ssd", "latency": "0.1ms", "bandwidth": "500MiB/s", "queue-depth": 32}
WAN = {"kind": "remote", "rtt": "20ms", "link-bandwidth": "100MiB/s", "queue-depth": 16,
       "backend": {"kind": "ssd", "latency": "0.2ms", "bandwidth": "400MiB/s",
                   "queue-depth": 32}}


def idle(size="256MiB", **kw):
    base = {"disk.size": size, "disk.allocated": 1.0, "workload.iops": 0,
            "devices.local": SRC, "devices.target": WAN, "backup.scheme": "backup"}
    base.update(kw)
    return small(**base)


def per_chunk(chunk):
    """One chunk, alone: source read + link (RTT + transfer) + backend write."""
    return (0.1e-3 + chunk / (500 * MiB)) + (20e-3 + chunk / (100 * MiB)) + \
        (0.2e-3 + chunk / (400 * MiB))


@pytest.mark.parametrize("chunk", [MiB, 4 * MiB])
def test_one_worker_is_n_chunks_times_per_chunk_cost(chunk):
    size = 256 * MiB
    s = simulate(idle(**{"backup.max-workers": 1, "backup.max-chunk": chunk})).summary
    assert s["oracle_ok"]
    want = size // chunk * per_chunk(chunk)
    assert s["backup_duration_s"] == pytest.approx(want, rel=0.03)


def test_many_workers_are_bandwidth_bound():
    size = 256 * MiB
    s = simulate(idle(**{"backup.max-workers": 64})).summary
    assert s["oracle_ok"]
    assert s["backup_duration_s"] == pytest.approx(size / (100 * MiB), rel=0.03)
    # and 1 worker is far from it: RTT per chunk dominates
    one = simulate(idle(**{"backup.max-workers": 1})).summary
    assert one["backup_duration_s"] > 2.5 * s["backup_duration_s"]


def test_duration_never_grows_with_workers_on_an_idle_guest():
    d = [simulate(idle(size="64MiB", **{"backup.max-workers": w})).summary["backup_duration_s"]
         for w in (1, 2, 4, 8, 16, 32, 64)]
    assert all(b <= a * 1.001 for a, b in zip(d, d[1:])), d
    # 16 NBD requests in flight cover RTT x bandwidth (2 MiB): beyond that, flat
    assert d[-1] == pytest.approx(d[-3], rel=0.03)


def test_default_max_chunk_is_one_cluster_when_clusters_are_larger():
    big = idle(**{"backup.min-cluster-size": "4MiB"})
    assert big.cluster_size == 4 * MiB and big.max_chunk == 4 * MiB
    assert idle().max_chunk == MiB


def test_min_cluster_size_sets_the_copy_granularity():
    s = simulate(idle(size="64MiB", **{"backup.max-workers": 1,
                                      "backup.min-cluster-size": "4MiB"})).summary
    assert s["cluster_size"] == 4 * MiB and s["clusters"] == 16
    assert s["backup_duration_s"] == pytest.approx(16 * per_chunk(4 * MiB), rel=0.03)


def test_inflight_memory_is_capped_at_128MiB():
    # 64 workers x 4 MiB chunks would hold 256 MiB; the cap keeps 128 MiB
    s = simulate(idle(size="512MiB", **{"backup.max-chunk": "4MiB"})).summary
    assert s["oracle_ok"]
    assert s["backup_inflight_bytes_peak"] == 128 * MiB
    s2 = simulate(idle(size="512MiB", **{"backup.max-chunk": "1MiB"})).summary
    assert s2["backup_inflight_bytes_peak"] == 64 * MiB  # under the cap: workers x chunk


def test_speed_delays_the_job_and_a_shared_cbw_uses_its_quota():
    """QEMU's block_copy_dirty_clusters never delays a CBW (ignore_ratelimit)
    but charges its bytes to the copy state's rate limit, which the backup
    job's filter shares: the job then ends at (job + CBW bytes) / speed."""
    speed = 20 * MiB
    s = simulate(idle(size="64MiB", **{"backup.speed": speed})).summary
    assert s["backup_duration_s"] == pytest.approx(64 * MiB / speed, rel=0.03)
    w = simulate(small(**{"disk.size": "64MiB", "backup.scheme": "backup",
                          "backup.speed": speed, "workload.iops": 3000,
                          "workload.mix": {"read": 0.0, "write": 1.0}})).summary
    assert w["oracle_ok"] and w["cbw_bytes"] > 4 * MiB
    assert w["job_copied_bytes"] + w["cbw_bytes"] == 64 * MiB
    assert w["backup_duration_s"] == pytest.approx(64 * MiB / speed, rel=0.03)
    # the job's own bytes alone would have let it end sooner
    assert w["job_copied_bytes"] / speed < 0.95 * w["backup_duration_s"]


def test_zero_clusters_are_written_as_zeroes_without_a_read():
    s = simulate(idle(**{"disk.allocated": 0.5})).summary
    z = s["target_zero_bytes"]
    assert 0 < z < 256 * MiB
    assert s["source_read_bytes"] == 256 * MiB - z == s["target_write_bytes"]
    # the 2018 engine reads everything to find the zeroes
    legacy = simulate(idle(**{"disk.allocated": 0.5, "backup.scheme": "legacy-backup"})).summary
    assert legacy["source_read_bytes"] == 256 * MiB
    assert legacy["target_zero_bytes"] == z


def test_legacy_is_one_worker_one_cluster_and_rejects_max_workers():
    cs = 64 * 2**10
    s = simulate(idle(size="16MiB", **{"backup.scheme": "legacy-backup"})).summary
    assert s["backup_duration_s"] == pytest.approx(256 * per_chunk(cs), rel=0.03)
    with pytest.raises(ConfigError, match=r"^backup.max-workers: .*'legacy-backup'"):
        idle(size="16MiB", **{"backup.scheme": "legacy-backup", "backup.max-workers": 8})


# ----------------------------------------------------------- shared bitmap, waits
def _graph(n=64, cs=65536):
    env = simpy.Environment()
    stats = Stats()
    src = Device("src", 1e-4, 500 * MiB, 32)
    tgt = RemoteDevice("tgt", Device("link", 20e-3, 100 * MiB, 16),
                       Device("be", 2e-4, 400 * MiB, 32))
    active = ActiveDisk(env, src, n, cs, np.zeros(n, dtype=bool))
    target = BackupTarget(env, tgt, n, cs, stats)
    copier = BlockCopy(env, "backup", active, target, np.ones(n, dtype=bool), cs, n * cs,
                       max_chunk=MiB, stats=stats)
    cbw = CBWFilter(env, active, copier, stats, cs)
    return env, stats, active, target, copier, cbw


def test_guest_write_to_an_inflight_cluster_waits_and_nothing_is_copied_twice():
    env, stats, active, target, copier, cbw = _graph()
    cs = copier.cs
    job = BackupJob(env, copier, make_ordering("ascending"), workers=1, stats=stats)
    job.start()
    out = {}

    def guest():
        yield env.timeout(1e-3)              # the job's first chunk (clusters 0-15) is in flight
        assert 3 in copier.inflight
        t = env.now
        out["wait"] = yield from cbw.write(3 * cs, 4096)
        out["wait_lat"] = env.now - t
        out["cbw"] = yield from cbw.write(40 * cs, 4096)   # not yet claimed: CBW copies it

    env.process(guest())
    env.run(until=job.done)
    env.run(until=env.now + 1)
    assert out["wait"] == PATH_WAIT and out["cbw"] == PATH_CBW
    # the waiting write finished only after the whole chunk crossed the link
    assert out["wait_lat"] > 20e-3
    assert stats.cbw_waits == 1 and stats.cbw_count == 1
    assert target.copies.max() == 1 and target.copies.min() == 1
    assert (target.gen == 0).all()  # every cluster holds its t0 content
    assert active.gen[3] == 1 and active.gen[40] == 1


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_busy_guest_waits_for_inflight_copies_never_copies_twice(seed):
    s = simulate(small(**{"disk.size": "128MiB", "backup.scheme": "backup",
                          "backup.max-workers": 8, "run.seed": seed, "workload.iops": 4000,
                          "workload.mix": {"read": 0.2, "write": 0.8},
                          "workload.size": {"4KiB": 0.5, "256KiB": 0.5}}),
                 keep_arrays=True)
    sm = s.summary
    assert sm["oracle_ok"]
    assert sm["cbw_waits"] > 0 and sm["cbw_count"] > 0
    assert sm["clusters_copied_twice"] == 0
    assert (s.arrays["copies"] == 1).all()
