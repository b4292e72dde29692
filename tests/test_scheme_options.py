"""Issue 10 item 7: no backup option is silently ignored. For every scheme and
every key of ``backup`` set to a non-default value, either the run's summary
changes (same seed, same guest requests) or the config is rejected with one
line naming the key (and, for the per-scheme table, the scheme)."""
import math

import pytest

from fleecesim.config import BackupSpec
from fleecesim.errors import ConfigError
from fleecesim.run import simulate
from fleecesim.schemes import SCHEMES
from tests.conftest import small

# A small fast scenario (32 MiB disk, ~20 ms a run): zero extents, discards,
# a zipf guest busy enough for CBW, and spare devices for the *.device keys.
BASE = {"disk.size": "32MiB", "disk.allocated": 0.7, "disk.allocation-granularity": "1MiB",
        "devices.slow": {"preset": "hdd-7200"}, "devices.ram2": {"preset": "sata-ssd"},
        "devices.target2": {"preset": "nbd-10gbe"},
        "devices.wan": {"kind": "remote", "rtt": "20ms", "link-bandwidth": "40MiB/s",
                        "queue-depth": 16, "backup": None, "backend": {"preset": "nvme"}},
        "workload.iops": 3000, "workload.pattern": "zipf",
        "workload.mix": {"read": 0.4, "write": 0.5, "discard": 0.1},
        "run.warmup": "0.1s", "run.tail": "0.05s"}
BASE["devices.wan"].pop("backup")

# key -> (a non-default value, the companions it needs to act at all). The
# baseline of each trial is the scheme with the companions only.
SMALL_WORKERS = {"backup.max-workers": 2}  # 64 x 1 MiB claims all 32 MiB at t0: no order left
RAM = {"backup.cache.ram.size": "2MiB"}
RAM_SLOW = {**RAM, **SMALL_WORKERS}  # copy-on-read needs time before the job copies a cluster
PBS = {"backup.target.kind": "pbs"}
OUTAGE = {"kind": "outage", "at": "0.02s", "duration": "0.05s"}  # reconnect-delay 0: EIO
TRIALS = {
    "target.device": ("target2", {}),
    "target.cluster-size": ("1MiB", {}),
    "min-cluster-size": ("1MiB", {}),
    "max-workers": (2, {}),
    "max-chunk": ("64KiB", {}),
    "speed": ("20MiB/s", {}),
    "on-cbw-error": ("break-snapshot", {"backup.cache.size": "128KiB"}),  # CBW must fail
    "cbw-timeout": ("1us", {}),
    "sync": ("incremental", {}),
    "incremental.dirty": (0.5, {"backup.sync": "incremental"}),
    "incremental.extent": ("4MiB", {"backup.sync": "incremental"}),
    "incremental.granularity": ("1MiB", {"backup.sync": "incremental"}),
    "cache.cluster-size": ("1MiB", {}),
    "cbw-priority": (True, {}),
    # both images on the disk's device (one filesystem): the kernel offloads
    # (elsewhere block-copy falls back to read + write: tests/test_copy_offload.py)
    "x-perf.use-copy-range": (True, {"backup.target.device": "local"}),
    "window": ("0.3s", {"backup.sync": "none"}),
    "client.link": ("wan", {}),
    "client.storage": ("slow", {}),
    "client.discard": (True, {}),
    "client.hints": ("none", {}),           # zeroes are read, not skipped
    "client.block-status": (False, {}),
    "overlay.device": ("slow", {}),
    "overlay.copy-mode": ("background", {}),
    "discard-source": (True, {}),
    "lazy-discard": (True, {}),
    "order": ("zero-last", SMALL_WORKERS),
    "cache.device": ("slow", {}),
    "cache.size": ("1MiB", {}),
    "cache.ram.size": ("2MiB", {}),
    "cache.ram.device": ("ram2", RAM),
    "cache.flush.high": (0.8, RAM),
    "cache.flush.low": (0.1, {**RAM, "backup.cache.flush.high": 0.9}),
    # reads of RAM-cached clusters need COR, room, a slow job and a reading guest
    "cache.serve-reads-from-ram": (False, {"backup.cache.ram.size": "16MiB",
                                           "backup.cache.cor": True, "backup.speed": "20MiB/s",
                                           "workload.mix": {"read": 0.9, "write": 0.1}}),
    "cache.cor": (True, RAM_SLOW),
    # the job's error policies (fleecesim/error_policy.py): a target that fails
    # requests for a while; a snapshot that breaks
    "on-target-error": ("ignore", {"faults.target": [OUTAGE]}),
    "resume-after": ("0.05s", {"faults.target": [OUTAGE], "backup.on-target-error": "stop"}),
    "on-source-error": ("stop", {"backup.cache.size": "128KiB",
                                 "backup.on-cbw-error": "break-snapshot"}),
    # a Proxmox Backup Server target (nodes/pbs.py): each key with the pbs kind
    "target.kind": ("pbs", {}),
    **{f"target.pbs.{k}": (v, PBS) for k, v in {
        "chunk-size": "1MiB", "compression-ratio": 2.0, "known-fraction": 0.5,
        "stored-fraction": 0.5, "compress": False, "encrypt": True,
        "sha256-speed": "500MB/s", "compress-speed": "100MB/s",
        "tls-speed": "100MB/s", "verify-speed": "100MB/s", "server-threads": 1,
        "in-flight": 2, "h2-window": "64KiB", "sync-level": "file",
        "create-writes": 0}.items()},
    "target.pbs.aes-speed": ("100MB/s", {**PBS, "backup.target.pbs.encrypt": True}),
}
PENDING: set = set()


def _leaves(d, prefix=""):
    for k, v in d.items():
        yield from _leaves(v, f"{prefix}{k}.") if isinstance(v, dict) else [prefix + k]


KEYS = sorted(set(_leaves(BackupSpec().dump())) - {"scheme"})
IGNORE = {"wall_time_s", "config", "name"}


def test_every_backup_key_has_a_trial():
    assert sorted(TRIALS) == KEYS


def cfg(scheme, over):
    return small(**{**BASE, "backup.scheme": scheme, **over})


_RUNS: dict = {}


def summary(scheme, over: dict):
    """The run's summary (cached: trials with the same companions share a baseline)."""
    key = (scheme, repr(sorted(over.items())))
    if key not in _RUNS:
        s = simulate(cfg(scheme, over)).summary
        assert s.get("error") is None, s.get("traceback")
        _RUNS[key] = {k: _nan_safe(v) for k, v in s.items() if k not in IGNORE}
    return _RUNS[key]


def _nan_safe(v):
    """NaN != NaN would make every summary 'changed': compare NaNs as equal."""
    if isinstance(v, float) and math.isnan(v):
        return "nan"
    if isinstance(v, dict):
        return {k: _nan_safe(x) for k, x in v.items()}
    return v


def rejection(scheme, over) -> str | None:
    try:
        cfg(scheme, over)
    except ConfigError as e:
        return str(e)
    return None


@pytest.mark.parametrize("key", KEYS)
@pytest.mark.parametrize("scheme", sorted(SCHEMES))
def test_option_acts_or_is_rejected(scheme, key):
    value, comp = TRIALS[key]
    opt = {f"backup.{key}": value}
    if rejection(scheme, comp) is not None:  # a companion the scheme rejects:
        comp = {}                            # then the option alone must be rejected
    msg = rejection(scheme, {**comp, **opt})
    if msg is not None:
        assert msg.startswith(f"backup.{key}:") and "\n" not in msg, msg
        return
    assert comp or rejection(scheme, opt) is None
    base = summary(scheme, comp)
    got = summary(scheme, {**comp, **opt})
    assert got != base, f"backup.{key}={value!r} changed nothing under scheme {scheme!r}"


@pytest.mark.parametrize("scheme,key", [("backup", "order"), ("backup", "discard-source"),
                                        ("legacy-backup", "lazy-discard"),
                                        ("overlay-commit", "order"),
                                        ("fleecing-push", "client.discard")])
def test_rejection_names_key_scheme_and_reason(scheme, key):
    msg = rejection(scheme, {f"backup.{key}": TRIALS[key][0]})
    assert msg.startswith(f"backup.{key}: not used by the {scheme!r} scheme: ")
    assert len(msg.split(": ", 2)[2]) > 20  # a reason, not just "unused"


def test_a_scheme_list_takes_a_key_any_listed_scheme_acts_on():
    """In a list a key is in use when any listed scheme acts on it (a no-backup
    baseline beside a backup is the natural comparison); each scheme's own run
    leaves out what it does not act on, and a key no listed scheme acts on is
    still refused."""
    from fleecesim.config import variants
    c = cfg(["none", "backup", "fleecing-push"], {"backup.order": "ram-first",
                                                  "backup.target.cluster-size": "128KiB"})
    runs = dict(variants(c))
    assert runs["fleecing-push"].backup.order == "ram-first"
    assert runs["backup"].backup.order == BackupSpec().order  # backup has no ordering
    assert runs["backup"].backup.target.cluster_size == 128 * 2**10
    assert runs["none"].backup.target.cluster_size == BackupSpec().target.cluster_size
    s = simulate(runs["none"]).summary
    assert s.get("error") is None and s["oracle_ok"]
    msg = rejection(["none", "backup"], {"backup.order": "ram-first"})
    assert msg.startswith("backup.order: not used by any listed scheme (none, backup): ")
    assert "\n" not in msg
    # and variants of a list: a variant's key goes only to the schemes that act on it
    v = cfg(["backup", "fleecing-push"], {"variants": [{"name": "rf",
                                                       "set": {"backup.order": "ram-first"}}]})
    named = dict(variants(v))
    assert named["rf/fleecing-push"].backup.order == "ram-first"
    assert named["rf/backup"].backup.order == BackupSpec().order
