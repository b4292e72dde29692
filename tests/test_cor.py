"""Copy-on-read into the RAM tier with BDRV_REQ_UNNECESSARY (seed benefit 1)
and guest reads served from RAM (seed benefit 2)."""
import numpy as np

from fleecesim.run import simulate
from fleecesim.workloads.records import OP_READ
from tests.conftest import small
from tests.test_cache_tiers import CS, rig


def test_cor_store_never_delays_the_read_even_when_dropped():
    """Same reads on a filter with COR (1-cluster RAM tier) and one without: the
    completion times are identical, the first store is admitted, the next dropped."""
    with_cor, without = rig(ram=1), rig(ram=1, cor=False)
    ends = []
    for r in (with_cor, without):
        ends.append([r.f.fast(OP_READ, c * CS, 4096, 1e-3 * i) for i, c in enumerate((5, 6, 9))])
        r.env.run()  # COR stores once each read has completed
    assert ends[0] == ends[1]
    assert with_cor.stats.cor_admitted == 1 and with_cor.stats.cor_dropped == 2
    assert without.stats.cor_admitted == 0
    # what was stored is the cluster's t0 content, unchanged, in RAM
    c = with_cor.cache
    assert c.where[5] == 0 and not c.changed[5] and c.gen[5] == with_cor.active.gen[5]


def test_cor_skips_clusters_already_copied_or_claimed():
    r = rig()
    r.wanted[3] = False  # the backup job has it (claimed or copied)
    r.copier.needed[4] = False  # CBW saved it already
    r.f.fast(OP_READ, 3 * CS, 2 * CS, 0.0)
    r.env.run()
    assert r.stats.cor_admitted == 0 and r.stats.cor_dropped == 0


def test_ram_hit_is_timed_on_the_ram_device():
    r = rig()
    r.f.fast(OP_READ, 5 * CS, 4096, 0.0)
    r.env.run()
    t = 1.0
    end = r.f.fast(OP_READ, 5 * CS, 4096, t)
    assert r.stats.ram_read_hits == 1
    assert end == t + 1e-6 + 4096 / (8 * 2**30)  # RAM preset-like device: 1us + bytes/bw


# No host software cost: its one CPU queue would pass the COR writes' own
# CPU time on to later reads, which is not what "never waits" is about.
FROZEN = {"workload.mix": {"read": 1.0, "write": 0.0}, "disk.allocated": 1.0,
          "backup.speed": 1, "backup.max-workers": 1, "run.max-time": "1e9s",
          "host.request-cost": 0, "host.memcpy-bandwidth": 0}


def frozen(**overrides):
    """``small`` with the job held still, cut after 1 s of backup. A config
    saying run.max-time 1s with speed 1 B/s is refused (it cannot finish:
    config.py Config._chunk_and_speed), so the cut is set after validation."""
    cfg = small(**FROZEN, **overrides)
    cfg.run.max_time = 1.0
    return cfg


def _reads(res):
    rq = res.requests
    return rq[(rq.op == "read") & (rq.phase == "backup")]


def test_unnecessary_never_waits_guest_read_latency_unchanged():
    """Read-only guest, a backup job held still (speed 1 B/s): the active disk
    sees exactly the same requests with COR on or off, so every guest read must
    complete at exactly the same time — with room in RAM and with RAM full."""
    off = _reads(simulate(frozen(**{"backup.cache.ram.size": "256MiB",
                                    "backup.cache.serve-reads-from-ram": False})))
    for ram in ("256MiB", "64KiB"):
        res = simulate(frozen(**{"backup.cache.ram.size": ram,
                                 "backup.cache.cor": True,
                                 "backup.cache.serve-reads-from-ram": False}))
        on = _reads(res)
        assert len(on) == len(off) > 100
        assert np.array_equal(on.latency.to_numpy(), off.latency.to_numpy())
        s = res.summary
        assert s["cor_admitted"] > 0
        if ram == "64KiB":
            assert s["cor_admitted"] == 1 and s["cor_dropped"] > 0


def test_cor_admissions_and_ram_hits_closed_form():
    """With a RAM tier big enough and the job held on its first chunk, COR stores
    each cluster the guest reads once (outside that chunk), and a read is a RAM
    hit exactly when every cluster it touches was stored by an earlier read."""
    res = simulate(frozen(**{"backup.cache.ram.size": "256MiB",
                             "backup.cache.cor": True}))
    s = res.summary
    claimed = 2**20 // CS  # the one chunk the job claimed at t0
    stored, hits = set(), 0
    for off, ln in zip(_reads(res).offset.to_numpy(), _reads(res).length.to_numpy()):
        cl = set(range(off // CS, (off + ln + CS - 1) // CS))
        if cl <= stored:
            hits += 1
        else:
            stored |= {c for c in cl if c >= claimed}
    assert s["cor_admitted"] == len(stored) > 0
    assert s["ram_read_hits"] == hits > 0
    assert s["cor_dropped"] == 0


def test_backup_reads_cor_clusters_from_ram_not_the_active_disk():
    kw = {"workload.mix": {"read": 0.9, "write": 0.1}, "workload.iops": 4000,
          "backup.max-workers": 4, "backup.cache.ram.size": "256MiB"}
    off = simulate(small(**kw)).summary
    on = simulate(small(**kw, **{"backup.cache.cor": True})).summary
    assert on["oracle_ok"] and off["oracle_ok"]
    assert on["cor_admitted"] > 0
    assert on["source_read_bytes"] < off["source_read_bytes"]
    assert on["local_read_bytes"] > off["local_read_bytes"]


def test_cor_data_is_not_visible_before_the_read_completes():
    """Issue 10 item 5: on a slow disk the guest read ends late; until then the
    cluster is not in the RAM tier (the backup must read it from the disk)."""
    from fleecesim.devices.base import Device
    from fleecesim.nodes.cache import NOT_CACHED
    r = rig()
    r.active.device = Device("slow", 10e-3, 100 * 2**20)  # an HDD-like 10 ms access
    end = r.f.fast(OP_READ, 5 * CS, 4096, 0.0)
    assert end > 10e-3
    r.env.run(until=end / 2)
    assert r.cache.where[5] == NOT_CACHED and r.stats.cor_admitted == 0
    r.env.run()
    assert r.cache.where[5] != NOT_CACHED and r.stats.cor_admitted == 1
    # the generator path (no fast path) likewise
    r2 = rig()
    r2.active.device = Device("slow", 10e-3, 100 * 2**20)
    r2.env.process(r2.f.read(7 * CS, 4096))
    r2.env.run(until=5e-3)
    assert r2.cache.where[7] == NOT_CACHED
    r2.env.run()
    assert r2.cache.where[7] != NOT_CACHED
