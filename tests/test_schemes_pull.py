"""Pull fleecing over NBD: fleecing-pull and fleecing-pull-2018."""
import pytest

from fleecesim.errors import ConfigError
from fleecesim.policies import ORDERING
from fleecesim.run import simulate
from tests.conftest import small

MiB = 2**20


def idle(scheme, **kw):
    o = {"disk.size": "256MiB", "disk.allocated": 1.0, "workload.iops": 0,
         "backup.scheme": scheme}
    o.update(kw)
    return small(**o)


@pytest.mark.parametrize("scheme", ["fleecing-pull", "fleecing-pull-2018"])
def test_idle_pull_runs_at_link_bandwidth_like_push(scheme):
    pull = simulate(idle(scheme)).summary
    push = simulate(idle("fleecing-push")).summary
    assert pull["oracle_ok"]
    assert pull["backup_duration_s"] == pytest.approx(256 * MiB / (112 * MiB), rel=0.03)
    assert pull["backup_duration_s"] == pytest.approx(push["backup_duration_s"], rel=0.03)
    assert pull["target_write_bytes"] == 256 * MiB  # the client's storage got it all


def test_client_link_and_storage_keys_pick_the_devices():
    cfg = idle("fleecing-pull", **{
        "devices.wan": {"kind": "remote", "rtt": "20ms", "link-bandwidth": "40MiB/s",
                        "queue-depth": 16, "backend": {"preset": "nvme"}},
        "devices.nas": {"preset": "hdd-7200"},
        "backup.client": {"link": "wan", "storage": "nas"}})
    s = simulate(cfg).summary
    assert s["oracle_ok"]
    assert s["backup_duration_s"] == pytest.approx(256 * MiB / (40 * MiB), rel=0.03)
    assert s["device_util"]["nas"] > 0 and s["device_util"]["target"] == 0


def test_block_status_lets_the_client_skip_reading_zeroes():
    on = simulate(idle("fleecing-pull", **{"disk.allocated": 0.5})).summary
    off = simulate(idle("fleecing-pull", **{"disk.allocated": 0.5,
                                            "backup.client.block-status": False})).summary
    assert on["oracle_ok"] and off["oracle_ok"]
    z = on["target_zero_bytes"]
    assert 0 < z < 256 * MiB and off["target_zero_bytes"] == z
    assert on["source_read_bytes"] == 256 * MiB - z
    assert off["source_read_bytes"] == 256 * MiB  # read, then found zero
    assert on["backup_duration_s"] < 0.8 * off["backup_duration_s"]


def busy(scheme, **kw):
    o = {"backup.scheme": scheme, "workload.iops": 3000,
         "workload.mix": {"read": 0.3, "write": 0.7}, "workload.pattern": "uniform"}
    o.update(kw)
    return small(**o)


def test_read_once_discard_frees_the_cache_and_spares_cbw():
    keep = simulate(busy("fleecing-pull")).summary
    once = simulate(busy("fleecing-pull", **{"backup.client.discard": True})).summary
    assert keep["oracle_ok"] and once["oracle_ok"]
    # without TRIM, CBW keeps saving clusters the client already has
    assert once["cbw_bytes"] < 0.8 * keep["cbw_bytes"]
    assert once["fleecing_peak_bytes"] < 0.5 * keep["fleecing_peak_bytes"]
    assert once["local_write_bytes"] < keep["local_write_bytes"]


def test_2018_guards_every_cluster_modern_only_the_bitmap():
    kw = {"backup.sync": "incremental", "backup.incremental.dirty": 0.1}
    old = simulate(busy("fleecing-pull-2018", **kw)).summary
    new = simulate(busy("fleecing-pull", **kw)).summary
    assert old["oracle_ok"] and new["oracle_ok"]
    assert old["target_write_bytes"] == new["target_write_bytes"]  # same backup
    assert old["cbw_bytes"] > 3 * new["cbw_bytes"]
    assert old["local_write_bytes"] > 3 * new["local_write_bytes"]


def test_2018_rejects_read_once_discard():
    with pytest.raises(ConfigError, match=r"^backup.client.discard: .*'fleecing-pull-2018'"):
        busy("fleecing-pull-2018", **{"backup.client.discard": True})


@pytest.mark.parametrize("order", sorted(set(ORDERING) - {"hot-first"}))
def test_pull_client_follows_every_copy_ordering_policy_it_has_hints_for(order):
    s = simulate(busy("fleecing-pull", **{"backup.order": order, "disk.allocated": 0.7,
                                          "backup.client.hints": "cache-tier",
                                          "backup.client.discard": True})).summary
    assert s["oracle_ok"] and s["clusters_copied_twice"] == 0


def test_read_once_client_copying_cached_clusters_first_keeps_the_cache_smaller():
    kw = {"backup.client.discard": True, "disk.allocated": 0.7,
          "backup.client.hints": "cache-tier"}  # the seed's hypothetical tier hints
    asc = simulate(busy("fleecing-pull", **kw)).summary
    cf = simulate(busy("fleecing-pull", **kw, **{"backup.order": "disk-cached-first"})).summary
    assert asc["oracle_ok"] and cf["oracle_ok"]
    assert cf["fleecing_peak_bytes"] < 0.9 * asc["fleecing_peak_bytes"]


def test_pull_uses_the_same_tiered_cache_as_push():
    """backup.cache.ram is not silently ignored by pull: CBW data lands in RAM
    first, exactly as under push on the same guest requests."""
    over = {"backup.cache.ram.size": "4MiB", "backup.max-workers": 4}
    pull = simulate(small(**{"backup.scheme": "fleecing-pull", **over})).summary
    push = simulate(small(**{"backup.scheme": "fleecing-push", **over})).summary
    assert pull["oracle_ok"] and push["oracle_ok"]
    assert pull["ram_peak_bytes"] == push["ram_peak_bytes"] == 4 * MiB  # the tier filled
    assert pull["spill_bytes"] > 0  # and the rest went to the disk tier


# ------------------------------------------- what an external client knows (backup.client.hints)
@pytest.mark.parametrize("order", ["ram-first", "disk-cached-first", "disk-cached-last"])
@pytest.mark.parametrize("scheme", ["fleecing-pull", "fleecing-pull-2018"])
def test_a_client_without_tier_hints_cannot_order_by_tier(scheme, order):
    """NBD gives a client block status ("base:allocation"), not the cache tier:
    a tier policy under the default hints is one config error line naming both keys."""
    for hints in ("block-status", "none"):
        with pytest.raises(ConfigError) as e:
            busy(scheme, **{"backup.order": order, "backup.client.hints": hints})
        msg = str(e.value)
        assert msg.startswith("backup.order:") and "backup.client.hints" in msg
        assert "\n" not in msg


def test_no_nbd_hint_gives_write_counts_so_pull_rejects_hot_first():
    for hints in ("none", "block-status", "cache-tier"):
        with pytest.raises(ConfigError, match=r"^backup.order: 'hot-first'"):
            busy("fleecing-pull", **{"backup.order": "hot-first", "backup.client.hints": hints})
    busy("fleecing-push", **{"backup.order": "hot-first"})  # the job inside QEMU may


def test_without_hints_the_client_reads_zeroes_and_can_only_go_ascending():
    with pytest.raises(ConfigError, match=r"^backup.order: 'zero-last'.*client.hints: none"):
        idle("fleecing-pull", **{"backup.order": "zero-last", "backup.client.hints": "none"})
    with pytest.raises(ConfigError, match=r"^backup.client.block-status"):
        idle("fleecing-pull", **{"backup.client.block-status": True,
                                 "backup.client.hints": "none"})
    kw = {"disk.allocated": 0.5}
    none = simulate(idle("fleecing-pull", **kw, **{"backup.client.hints": "none"})).summary
    off = simulate(idle("fleecing-pull", **kw, **{"backup.client.block-status": False})).summary
    bs = simulate(idle("fleecing-pull", **kw)).summary
    assert none["source_read_bytes"] == off["source_read_bytes"] == 256 * MiB
    assert bs["source_read_bytes"] < 256 * MiB
    # zero-last needs only block status: the default hints serve it
    simulate(idle("fleecing-pull", **kw, **{"backup.order": "zero-last"}))


def test_only_tier_hints_show_a_policy_the_cache(monkeypatch):
    """Whatever the config says, the pull scheme hands a policy the cache's tier
    array only under hints: cache-tier (the policy sees no cache otherwise)."""
    from fleecesim.policies import ram_first
    from fleecesim.schemes import fleecing_pull
    seen = []
    real = ram_first.cache_view
    monkeypatch.setattr(ram_first, "cache_view", lambda g: seen.append(real(g)) or seen[-1])
    monkeypatch.setattr(fleecing_pull, "hint_error", lambda order, hints: None)
    for hints in ("block-status", "cache-tier"):
        cfg = busy("fleecing-pull", **{"backup.order": "ascending", "disk.size": "32MiB",
                                       "backup.client.hints": hints})
        cfg.backup.order = "ram-first"  # past validation, as a hand-built config could be
        assert simulate(cfg).summary["oracle_ok"]
    assert seen[0] is None and seen[1] is not None and "where" in seen[1]


def test_tier_hints_give_todays_pull_ordering():
    """Under hints: cache-tier a tier policy acts (differs from ascending), as it
    did before hints existed (checked then against the pre-hints code: equal
    summaries for every policy but hot-first)."""
    kw = {"backup.client.discard": True, "disk.allocated": 0.7, "backup.max-workers": 4,
          "backup.cache.ram.size": "4MiB", "backup.client.hints": "cache-tier"}
    asc = simulate(busy("fleecing-pull", **kw)).summary
    rf = simulate(busy("fleecing-pull", **kw, **{"backup.order": "ram-first"})).summary
    assert asc["oracle_ok"] and rf["oracle_ok"]
    assert rf["spill_bytes"] != asc["spill_bytes"]


# ------------------------------------------- the pull client's NBD transport
WAN = {"kind": "remote", "rtt": "20ms", "link-bandwidth": "1.1GiB/s", "queue-depth": 16,
       "backend": {"preset": "nvme"}}


@pytest.mark.parametrize("scheme", ["fleecing-push", "fleecing-pull", "fleecing-pull-2018"])
def test_push_and_pull_are_bounded_by_window_over_rtt(scheme):
    # One connection, the default 3 MiB TCP window, 20 ms: 150 MiB/s either
    # way, whether the job writes (push) or the client reads (pull).
    s = simulate(idle(scheme, **{"devices.target": WAN})).summary
    assert s["oracle_ok"]
    rate = 256 * MiB / s["backup_duration_s"]
    assert rate == pytest.approx(3 * MiB / 0.020, rel=0.05)


def _slots(qd):
    s = simulate(idle("fleecing-pull", **{
        "disk.size": "64MiB", "backup.max-chunk": "64KiB", "backup.max-workers": 64,
        "devices.target": {**WAN, "queue-depth": qd, "window": "1GiB"}})).summary
    assert s["oracle_ok"]
    return s["backup_duration_s"]


def test_pull_is_bounded_by_the_servers_16_requests():
    # No window limit: 16 requests of 64 KiB per round trip (QEMU's NBD
    # server, nbd/server.c MAX_NBD_REQUESTS) whatever the client's depth;
    # a shallower client is bound by its own depth.
    L, B = 64 * 2**10, 1.1 * 2**30
    per_request = 0.020 + (L + 28 + 16) / B
    d16 = _slots(16)
    assert 64 * MiB / d16 == pytest.approx(16 * L / per_request, rel=0.02)
    assert _slots(64) == d16
    assert _slots(8) == pytest.approx(2 * d16, rel=0.02)


def test_pull_client_link_must_be_an_nbd_transport():
    with pytest.raises(ConfigError) as e:
        idle("fleecing-pull", **{"backup.client.link": "local"})
    msg = str(e.value)
    assert msg.startswith("backup.client.link: 'local' is a ssd device") and "\n" not in msg
    with pytest.raises(ConfigError, match=r"^backup.target.device: 'local'"):
        idle("fleecing-pull", **{"backup.target.device": "local"})
