"""An option that cannot act in the resolved config is an error naming the key
and why (config/rules.py reads the rules each section declares: DeviceSpec.ACTS
by kind, WorkloadSpec.ACTS by source and pattern, BackupSpec.ACTS by scheme,
sync mode and cache tiers). Each case was accepted before and did nothing."""
import pytest

from fleecesim.config import DeviceSpec, resolve, validate, variants
from fleecesim.devices.presets import PRESETS
from fleecesim.errors import ConfigError

BASE = {"disk": {"size": "64MiB"}, "workload": {"iops": 100}}
TIERED = {"backup.cache.ram.size": "8MiB"}

INERT = [
    # device keys of another kind (devices.target is the nbd-1gbe preset, remote)
    ({"devices.target.bandwidth": "1GiB/s"}, "devices.target: bandwidth: a remote device's rate"),
    ({"devices.target.read-bandwidth": "1GiB/s"}, "devices.target: read-bandwidth: a remote"),
    ({"devices.target.latency": "2ms"},
     "devices.target: latency: a remote device's latency is its rtt"),
    ({"devices.target.iops": 1000}, "devices.target: iops: a remote device has no IOPS cap"),
    ({"devices.local.rtt": "1ms"},
     "devices.local: rtt: only for a device of kind remote, not 'ssd'"),
    ({"devices.local.link-bandwidth": "1GiB/s"}, "devices.local: link-bandwidth: only for a device "
                                                 "of kind remote, not 'ssd'"),
    ({"devices.local.rpm": 7200}, "devices.local: rpm: only for a device of kind hdd, not 'ssd'"),
    ({"devices.local.backend": "nvme"}, "devices.local: backend: only for a device of kind remote"),
    ({"devices.local.scheduler": "ncq"}, "devices.local: scheduler: only for a device of kind hdd"),
    ({"devices.local": {"preset": "hdd-7200", "iops": 200}},
     "devices.local: iops: only for a device of kind ram or ssd, not 'hdd'"),
    ({"devices.target.backend": {"preset": "nvme", "rtt": "1ms"}},
     "devices.target.backend: rtt: only for a device of kind remote"),
    # workload keys of another pattern or source
    ({"workload.pattern": "zipf", "workload.streams": 4},
     "workload.streams: only for pattern sequential (parallel sequential streams), not zipf"),
    ({"workload.zipf-s": 1.5}, "workload.zipf-s: only for pattern zipf"),
    ({"workload.loop": True}, "workload.loop: only for a trace replay (workload.trace)"),
    # backup keys without what they act on
    ({"backup.incremental.dirty": 0.5},
     "backup.incremental.dirty: only for sync incremental (the dirty bitmap a previous backup "
     "left), not sync full"),
    ({"backup.cache.cor": True}, "backup.cache.cor: needs a RAM tier (backup.cache.ram.size)"),
    ({"backup.cache.serve-reads-from-ram": False},
     "backup.cache.serve-reads-from-ram: needs a RAM tier (backup.cache.ram.size)"),
    ({**TIERED, "backup.cache.flush.low": 0.2},
     "backup.cache.flush.low: the flush starts above backup.cache.flush.high"),
    ({"backup.cache.ram.device": "local"},
     "backup.cache.ram.device: with backup.cache.ram.size 0 there is no RAM tier"),
    ({"backup.scheme": "legacy-backup", "backup.window": "5s"},
     "backup.window: only for sync none (the job idles this long, then stops), not sync full"),
    ({"workload.iops": None, "workload.iodepth": 4, "workload.max-inflight": 8},
     "workload.max-inflight: only for open loop"),
    ({"backup.resume-after": "1s"}, "backup.resume-after: only acts when backup.on-source-error"),
    ({"guest.werror": "report", "guest.resume-after": "1s"},
     "guest.resume-after: only acts when guest.werror or guest.rerror is stop or enospc"),
]


@pytest.mark.parametrize("sets,msg", INERT, ids=[",".join(s) for s, _m in INERT])
def test_an_option_that_cannot_act_is_one_line(sets, msg):
    with pytest.raises(ConfigError) as e:
        resolve(BASE, sets)
    assert msg in str(e.value) and "\n" not in str(e.value), str(e.value)


@pytest.mark.parametrize("sets", [
    {"devices.target.rtt": "1ms", "devices.target.connections": 4},   # remote keys on remote
    {"devices.local.read-iops": 1000, "devices.local.sharing": "fifo"},  # ssd's controller
    {"devices.local": {"preset": "hdd-7200", "rpm": 5400}},
    {"devices.target.backend": {"preset": "nvme", "bandwidth": "1GiB/s"}},
    {"devices.local.rtt": 0},          # a default value changes nothing either way
    {"workload.pattern": "sequential", "workload.streams": 4},
    {"workload.pattern": "zipf", "workload.zipf-s": 1.5},
    {"backup.sync": "incremental", "backup.incremental.dirty": 0.5},
    {**TIERED, "backup.cache.cor": True, "backup.cache.flush.high": 0.8,
     "backup.cache.flush.low": 0.2},
    {"backup.scheme": "legacy-backup", "backup.sync": "none", "backup.window": "5s"},
])
def test_the_same_keys_where_they_act_are_accepted(sets):
    resolve(BASE, sets)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_validates_with_its_own_keys(name):
    """A preset's keys are its kind's (only what the user writes is checked,
    and the presets' keys must be valid for it anyway)."""
    spec = DeviceSpec.model_validate({"preset": name})
    again = DeviceSpec.model_validate(spec.dump())  # a resolved config, read again
    assert again == spec


def test_a_resolved_config_reads_back():
    """A dumped config (every key written out, as variants() and sweeps
    re-read it) trips no rule: its keys are at their defaults or act."""
    cfg = resolve(BASE, {**TIERED, "backup.cache.cor": True, "devices.local.rpm": 0})
    for _name, c in variants(cfg):
        assert validate(c.dump()).dump() == c.dump()


def test_a_new_request_source_drops_the_old_sources_keys(tmp_path):
    """--set workload.trace over a synthetic workload drops its synthetic keys
    (a trace gives each request's kind, offset and size), --set workload.iops
    over a trace drops the trace's keys; neither is then refused as inert."""
    trace = tmp_path / "t.trace"
    trace.write_text("0.0 0 0 8 1\n1.0 0 8 8 0\n")  # disksim: time devno blkno bcount flags
    synth = {**BASE, "workload": {"iops": 100, "mix": {"read": 0.2, "write": 0.8},
                                  "pattern": "zipf", "zipf-s": 1.5}}
    c = resolve(synth, {"workload.trace": str(trace), "workload.format": "disksim"})
    assert c.workload.trace == str(trace) and c.workload.pattern == "uniform"
    replay = {**BASE, "workload": {"trace": str(trace), "format": "disksim", "loop": True,
                                   "time-scale": 2}}
    c = resolve(replay, {"workload.iops": 50})
    assert c.workload.trace is None and not c.workload.loop and c.workload.time_scale == 1.0
    with pytest.raises(ConfigError, match=r"^workload\.mix\.read: not used with a trace"):
        resolve(replay, {"workload.mix.read": 0.9})  # written for the trace: refused


def test_a_new_pattern_drops_the_other_patterns_keys():
    """--set workload.pattern=uniform over a zipf workload drops its zipf-s;
    zipf-s given with it is kept (and refused: it cannot act)."""
    zipf = {**BASE, "workload": {"iops": 100, "pattern": "zipf", "zipf-s": 1.3}}
    assert resolve(zipf, {"workload.pattern": "uniform"}).workload.zipf_s == 1.1
    assert resolve(zipf, {"workload.pattern": "zipf"}).workload.zipf_s == 1.3
    with pytest.raises(ConfigError, match=r"^workload\.zipf-s: only for pattern zipf"):
        resolve(zipf, {"workload.pattern": "uniform", "workload.zipf-s": 1.3})
