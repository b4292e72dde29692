"""The seed's tiered fleecing cache: RAM tier, disk tier, spill,
flush watermarks, dropping unchanged RAM clusters, writes to cached clusters,
lazy discards, read-once, and what happens when both tiers are full.

Node-level tests build the graph by hand (a CBW filter over an active disk,
with a two-tier cache) and check exact states and times; scenario tests check
invariants and paired comparisons on small disks."""
from types import SimpleNamespace

import numpy as np
import pytest
import simpy

from fleecesim.devices import Device
from fleecesim.jobs import BlockCopy
from fleecesim.metrics import Stats
from fleecesim.nodes import ActiveDisk, CBWFilter, FleecingCache, Tier
from fleecesim.nodes.cache import NOT_CACHED
from fleecesim.run import simulate
from fleecesim.workloads.records import OP_DISCARD, OP_READ, OP_WRITE
from tests.conftest import small

CS = 64 * 1024
GiB = 2**30


def rig(n=64, ram=4, disk=64, *, cor=True, serve=True, lazy=False, wait=False, flush=None):
    """CBW filter + two-tier cache over a fresh active disk; sizes in clusters."""
    env = simpy.Environment()
    stats = Stats()
    active = ActiveDisk(env, Device("local", 80e-6, 2.5 * GiB, 32), n, CS,
                        np.zeros(n, dtype=bool))
    tiers = [Tier(env, "ram", Device("ram", 1e-6, 8 * GiB, 64), ram * CS, kind="ram"),
             Tier(env, "disk", Device("disk", 80e-6, 2.5 * GiB, 32), disk * CS)]
    high, low = flush if flush else (None, 0.5)
    cache = FleecingCache(env, tiers, n, CS, stats, wait_for_room=wait, flush_high=high,
                          flush_low=low)
    needed = np.ones(n, dtype=bool)
    copier = BlockCopy(env, "cbw", active, cache, needed.copy(), CS, n * CS, max_chunk=CS,
                       stats=stats)
    f = CBWFilter(env, active, copier, stats, CS, cache=cache, cor=cor, serve_reads=serve,
                  lazy_discard=lazy, wanted=needed, on_cbw_error="wait" if wait else
                  "break-guest-write")
    return SimpleNamespace(env=env, stats=stats, active=active, cache=cache, f=f,
                           copier=copier, wanted=needed, ram=tiers[0], disk=tiers[1])


def write(r, c):
    """A guest write of cluster c through the filter (fast path if it can)."""
    end = r.f.fast(OP_WRITE, c * CS, 4096, r.env.now)
    if end is None:
        r.env.process(r.f.write(c * CS, 4096))
    return end


# ------------------------------------------------------------------ node level
def test_cbw_data_goes_to_ram_while_it_has_room_then_spills():
    r = rig(ram=2)
    for c in (0, 1, 2):
        assert write(r, c) is None  # needs a CBW
    r.env.run()
    assert list(r.cache.where[:3]) == [0, 0, 1]  # RAM, RAM, disk
    assert r.stats.spill_bytes == CS
    assert r.ram.level.peak == 2 * CS and r.disk.level.peak == CS
    assert r.stats.cbw_count == 3
    assert r.cache.changed[:3].all()  # CBW data: the guest write followed


def test_write_to_a_cached_unchanged_cluster_needs_no_copy():
    r = rig()
    assert r.f.fast(OP_READ, 5 * CS, 4096, 0.0) is not None
    r.env.run()  # COR stores once the read has completed
    assert r.stats.cor_admitted == 1 and not r.cache.changed[5]
    end = write(r, 5)
    assert end is not None  # fast path: no copy, no process
    assert r.stats.cbw_count == 0 and r.stats.cbw_absorbed == 1
    assert not r.copier.needed[5] and r.cache.changed[5] and r.cache.clean == 0
    # and a changed cluster no longer serves guest reads
    hits = r.stats.ram_read_hits
    r.f.fast(OP_READ, 5 * CS, 4096, r.env.now)
    assert r.stats.ram_read_hits == hits


def test_unchanged_ram_clusters_are_dropped_for_cbw_room_oldest_first():
    r = rig(ram=2)
    r.f.fast(OP_READ, 5 * CS, 4096, 0.0)
    r.f.fast(OP_READ, 6 * CS, 4096, 0.0)
    r.env.run()
    assert r.cache.clean == 2 and r.ram.room() == 0
    assert write(r, 10) is None
    r.env.run()
    assert r.cache.where[10] == 0  # CBW data went to RAM, not to disk
    assert r.cache.where[5] == NOT_CACHED and r.cache.where[6] == 0  # oldest dropped
    assert r.copier.needed[5]  # still needed: the active disk has it unchanged
    assert r.stats.ram_evicted_bytes == CS and r.stats.spill_bytes == 0
    # the snapshot still reads cluster 5's t0 content (now from the active disk)
    proc = r.env.process(r.f.snapshot_read(5 * CS, CS))
    r.env.run()
    assert list(proc.value) == [0]


def test_flush_moves_oldest_ram_clusters_down_to_the_low_watermark():
    r = rig(ram=4, flush=(0.75, 0.25))
    for c in range(4):
        write(r, c)
    r.env.run()
    # starts above 3 clusters (75 %), stops at 1 (25 %): the 3 oldest move
    assert list(r.cache.where[:4]) == [1, 1, 1, 0]
    assert r.stats.flush_bytes == 3 * CS and r.stats.spill_bytes == 0
    assert r.ram.used == CS and r.disk.used == 3 * CS
    assert r.cache.level.value == 4 * CS


def test_flush_is_off_by_default():
    r = rig(ram=4)
    for c in range(4):
        write(r, c)
    r.env.run()
    assert r.stats.flush_bytes == 0 and r.ram.used == 4 * CS


def test_lazy_discard_is_deferred_then_applied_unless_rewritten():
    r = rig(lazy=True, cor=False)
    assert r.f.fast(OP_DISCARD, 3 * CS, CS, 0.0) == 0.0  # done at once
    assert r.f.fast(OP_DISCARD, 7 * CS, CS, 0.0) == 0.0
    assert r.stats.deferred_discards == 2 and r.stats.cbw_count == 0
    assert r.active.gen[3] == 0 and not r.active.zero[3]  # the disk is untouched
    write(r, 7)  # the guest rewrites cluster 7: its discard must not be applied
    r.env.run()
    assert r.f.apply_deferred_discards() == 1
    assert r.active.zero[3] and r.active.gen[3] == 1
    assert not r.active.zero[7]
    assert r.stats.deferred_discards_applied == 1


def test_wait_mode_blocks_the_write_until_read_once_frees_room():
    r = rig(ram=1, disk=1, wait=True, cor=False)
    for c in (0, 1, 2):
        write(r, c)
    r.env.run(until=0.01)
    assert r.cache.where[2] == NOT_CACHED and r.stats.cbw_room_waits == 1
    assert r.active.gen[2] == 0  # the guest write has not landed
    r.env.process(r.f.snapshot_discard(0, CS))  # the backup read cluster 0 (read-once)
    r.env.run()
    assert r.cache.where[2] == 0 and r.active.gen[2] == 1
    assert r.stats.guest_errors == 0


# ------------------------------------------------------------------ scenarios
TIERED = {"backup.cache.ram.size": "8MiB"}


def test_ram_tier_large_enough_means_the_disk_tier_is_never_written():
    res = simulate(small(**{"backup.cache.ram.size": "256MiB"}))
    s = res.summary
    assert s["oracle_ok"] and s["cbw_count"] > 0
    assert s["spill_bytes"] == 0 and s["disk_cache_peak_bytes"] == 0
    assert s["ram_peak_bytes"] == s["fleecing_peak_bytes"] > 0
    tl = res.timeline
    assert tl[tl.level == "cache.disk_bytes"].value.max() == 0
    # control: the same workload with a small RAM tier does spill
    s8 = simulate(small(**TIERED)).summary
    assert s8["spill_bytes"] > 0 and s8["ram_peak_bytes"] == 8 * 2**20


def test_tier_occupancy_is_in_the_timeline_and_time_weighted():
    res = simulate(small(**TIERED))
    s, tl = res.summary, res.timeline
    for name in ("cache.ram_bytes", "cache.disk_bytes"):
        assert len(tl[tl.level == name]) > 2
        key = name.replace(".", "_")
        assert 0 < s[f"{key}_mean"] <= s[f"{key}_peak"]
    # RAM fills first: it is full for most of the backup, so its mean is near its peak
    assert s["cache_ram_bytes_mean"] > 0.5 * s["cache_ram_bytes_peak"]


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_read_once_never_raises_cbw_count(seed):
    kw = {**TIERED, "run.seed": seed, "backup.cache.cor": True}
    off = simulate(small(**kw)).summary
    on = simulate(small(**kw, **{"backup.discard-source": True})).summary
    assert off["oracle_ok"] and on["oracle_ok"]
    assert on["cbw_count"] <= off["cbw_count"]
    assert on["fleecing_peak_bytes"] < off["fleecing_peak_bytes"]  # and it frees space


def test_lazy_discards_replace_cbw_for_discards():
    kw = {"workload.mix": {"read": 0.0, "write": 0.0, "discard": 1.0}}
    eager = simulate(small(**kw)).summary
    lazy = simulate(small(**kw, **{"backup.lazy-discard": True})).summary
    assert eager["cbw_count"] > 0 and lazy["cbw_count"] == 0
    assert lazy["oracle_ok"] and eager["oracle_ok"]
    # no writes: nothing supersedes a deferred discard, so all of them are applied
    assert lazy["deferred_discards"] == lazy["deferred_discards_applied"] > 0


FULL = {"backup.cache.ram.size": "1MiB", "backup.cache.size": "1MiB"}


def test_both_tiers_full_break_guest_write():
    s = simulate(small(**FULL, **{"backup.on-cbw-error": "break-guest-write"})).summary
    assert s["oracle_ok"] and not s["snapshot_broken"]
    assert s["guest_errors"] > 0 and s["cbw_errors"] == s["guest_errors"]
    assert any("first guest write failed" in e for e in s["events"])


def test_both_tiers_full_break_snapshot_is_reported_broken():
    s = simulate(small(**FULL, **{"backup.on-cbw-error": "break-snapshot"})).summary
    assert s["snapshot_broken"] and s["snapshot_broken_at"] >= s["backup_start_s"]
    assert not s["oracle_ok"] and s["backup_failed"]
    assert s["guest_errors"] == 0
    assert s["target_wrong_clusters"] == 0  # what it did copy is t0 content


def test_both_tiers_full_wait_then_read_once_frees_room():
    s = simulate(small(**FULL, **{"backup.on-cbw-error": "wait",
                                  "backup.discard-source": True})).summary
    assert s["oracle_ok"] and s["guest_errors"] == 0 and s["cbw_room_waits"] > 0
    assert s["fleecing_peak_bytes"] <= 2 * 2**20
    assert any("CBW waits for room" in e for e in s["events"])


def test_wait_with_cbw_timeout_fails_the_write():
    s = simulate(small(**FULL, **{"backup.on-cbw-error": "wait",
                                  "backup.cbw-timeout": "1ms"})).summary
    assert s["oracle_ok"] and s["guest_errors"] > 0


def test_fast_path_agrees_with_generator_path_with_every_option():
    cfg = small(**{"backup.cache.ram.size": "4MiB", "backup.cache.cor": True,
                   "backup.cache.flush": {"high": 0.75, "low": 0.25},
                   "backup.discard-source": True, "backup.lazy-discard": True,
                   "backup.order": "ram-first", "disk.allocated": 0.7,
                   "workload.mix": {"read": 0.5, "write": 0.45, "discard": 0.05}})
    a = simulate(cfg, fast_path=True).summary
    b = simulate(cfg, fast_path=False).summary
    assert a["cor_admitted"] > 0 and a["flush_bytes"] > 0 and a["deferred_discards"] > 0
    for k in ("backup_duration_s", "cbw_count", "spill_bytes", "flush_bytes", "cor_admitted",
              "cor_dropped", "ram_read_hits", "cbw_absorbed", "deferred_discards",
              "ram_peak_bytes", "read_p99_s", "write_p99_s", "oracle_ok"):
        assert a[k] == pytest.approx(b[k], rel=1e-9), k


# ------------------------------------------------------------------ config
@pytest.mark.parametrize("raw,where", [
    ({"backup": {"order": "random"}}, "backup.order"),
    ({"backup": {"cache": {"ram": {"size": "64MiB", "device": "dimm"}}}},
     "backup.cache.ram.device"),
    ({"backup": {"cache": {"ram": {"size": "4KiB"}}}}, "backup.cache.ram.size"),
    ({"backup": {"cache": {"ram": {"size": "64MiB"}, "flush": {"high": 0.5, "low": 0.6}}}},
     "backup.cache.flush"),
    ({"backup": {"cache": {"flush": {"high": 0.9}}}}, "backup.cache.flush.high"),
    ({"backup": {"cache": {"ram": {"size": "64MiB", "colour": "red"}}}},
     "backup.cache.ram.colour"),
    ({"backup": {"on-cbw-error": "retry"}}, "backup.on-cbw-error"),
    ({"backup": {"discard-source": "maybe"}}, "backup.discard-source"),
])
def test_tiered_cache_config_errors_are_one_line_naming_the_key(raw, where):
    from fleecesim.config import resolve
    from fleecesim.errors import ConfigError
    with pytest.raises(ConfigError) as e:
        resolve(raw)
    msg = str(e.value)
    assert msg.startswith(where) and "\n" not in msg


def test_single_tier_cache_keys_still_mean_the_disk_tier():
    s = simulate(small(**{"backup.cache.size": "32MiB",
                          "backup.on-cbw-error": "break-snapshot"})).summary
    assert s["ram_peak_bytes"] == 0 and s["disk_cache_peak_bytes"] == 32 * 2**20
    assert s["spill_bytes"] == 0  # no RAM tier: nothing was diverted from a full RAM
