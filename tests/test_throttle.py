"""Throttling the job (``backup.speed``). The limit holds back
the backup job's own copies only; a guest write's copy-before-write ignores it
(QEMU 7.2: block/copy-before-write.c cbw_do_copy_before_write calls block_copy()
with ignore_ratelimit = true; the job's block_copy_async() call sleeps in
block/block-copy.c block_copy_dirty_clusters). So a throttled job takes longer,
leaves the guest more clusters to copy itself, and every such copy runs at full
speed. Where the CBW shares the job's copy state (``backup``), its bytes still
use up the job's quota (block_copy_dirty_clusters charges every task). On the small scenario (256 MiB on NVMe, 1 GbE NBD target, 2000 IOPS
half writes), for ``backup`` and ``fleecing-push``."""
import pytest

from fleecesim.run import simulate
from tests.conftest import small

MiB = 2**20
DISK = 256 * MiB
SCHEMES = ("backup", "fleecing-push")


@pytest.fixture(scope="module")
def runs():
    """Per scheme: the unthrottled run and runs limited to 1/2 and 1/4 of the
    rate the unthrottled job reached (so the limit binds by construction)."""
    out = {}
    for scheme in SCHEMES:
        free = simulate(small(**{"backup.scheme": scheme})).summary
        rate = DISK / free["backup_duration_s"]
        by_k = {1: (0.0, free)}
        for k in (2, 4):
            speed = rate / k
            by_k[k] = (speed, simulate(small(**{"backup.scheme": scheme,
                                                 "backup.speed": speed})).summary)
        out[scheme] = by_k
    return out


@pytest.mark.parametrize("scheme", SCHEMES)
def test_every_run_is_the_point_in_time_image(runs, scheme):
    for _speed, s in runs[scheme].values():
        assert s["backup_outcome"] == "complete" and s["oracle_ok"]


@pytest.mark.parametrize("scheme", SCHEMES)
def test_duration_is_the_job_bytes_over_the_limit(runs, scheme):
    d = {k: s["backup_duration_s"] for k, (_sp, s) in runs[scheme].items()}
    assert d[1] < d[2] < d[4]
    for k in (2, 4):
        speed, s = runs[scheme][k]
        if scheme == "fleecing-push":
            # the job reads every cluster of the snapshot view (CBW copies go
            # to the fleecing image, through another block-copy state): all of
            # the disk passes the limiter
            assert s["job_copied_bytes"] == DISK
            assert d[k] == pytest.approx(DISK / speed, rel=0.03)
        else:
            # one block-copy state: each cluster is copied once, by the job or
            # by a CBW, and both charge the limiter (the CBW without waiting)
            assert s["job_copied_bytes"] + s["cbw_bytes"] == DISK
            assert d[k] == pytest.approx(DISK / speed, rel=0.03)
            assert s["job_copied_bytes"] / speed < 0.97 * d[k]


@pytest.mark.parametrize("scheme", SCHEMES)
def test_a_throttled_job_leaves_the_guest_more_copies(runs, scheme):
    cbw = {k: s["cbw_count"] for k, (_sp, s) in runs[scheme].items()}
    assert 0 < cbw[1] < cbw[2] < cbw[4]


def test_backup_guest_writes_stop_queueing_behind_the_job_on_the_target(runs):
    """blockdev-backup's CBW writes go to the target on the same NBD client as
    the job's 1 MiB writes. Unthrottled, the job keeps its 16 request slots
    full and a CBW queues behind up to 16 MiB on the 112 MiB/s link (>= 0.14 s);
    at a quarter of the rate the link idles most of the time."""
    p99 = {k: s["write_p99_s"] for k, (_sp, s) in runs["backup"].items()}
    assert p99[1] > 15 * MiB / (112 * MiB)
    assert p99[4] < p99[1] / 10
    assert runs["backup"][4][1]["write_mean_s"] < runs["backup"][1][1]["write_mean_s"]


def test_fleecing_push_guest_writes_do_not_get_slower(runs):
    """A CBW is a local copy at full speed whatever the limit; the throttled job
    reads the NVMe less often, so the guest shares it less: write latency does
    not rise although there are more CBWs."""
    s1, s4 = runs["fleecing-push"][1][1], runs["fleecing-push"][4][1]
    assert s4["cbw_count"] > s1["cbw_count"]
    assert s4["write_p99_s"] <= s1["write_p99_s"]
    assert s4["write_mean_s"] < s1["write_mean_s"]


WINDOW = 3.0  # run.max-time: the backup is cut off, unfinished, after 3 s


@pytest.mark.parametrize("scheme", SCHEMES)
def test_cbw_is_not_rate_limited(scheme):
    tiny, some = 256 * 1024, 8 * MiB
    cfg = {sp: small(**{"backup.scheme": scheme, "backup.speed": sp,
                        "run.max-time": "2000s"}) for sp in (tiny, some)}
    for c in cfg.values():
        # cut on purpose, to watch the limiter: a config that says so is refused
        # (config.py Config._chunk_and_speed: it cannot finish), so set after it
        c.run.max_time = WINDOW
    s = {sp: simulate(c).summary for sp, c in cfg.items()}
    # the job may go on copying until the run stops, run.tail after the cut
    span = WINDOW + cfg[tiny].run.tail
    for sp in (tiny, some):
        assert s[sp]["backup_outcome"] == "unfinished"
        # the limiter holds the job: its first chunk is free, every later one
        # waits for the bytes before it / speed
        assert s[sp]["job_copied_bytes"] <= cfg[sp].max_chunk + sp * span
    # ...while the guest's copies run far beyond the limit
    assert s[tiny]["cbw_count"] > 0
    assert s[tiny]["cbw_bytes"] > 20 * tiny * span
    if scheme == "fleecing-push":
        # the filter's copies do not depend on the job at all: the same guest
        # writes copy the same clusters whatever the job's speed
        assert s[tiny]["cbw_count"] == s[some]["cbw_count"]
        assert s[tiny]["cbw_bytes"] == s[some]["cbw_bytes"]
    else:
        # one copy state: the guest's copies alone use up more than either
        # quota, so the job gets no further than its first chunk under both
        for sp in (tiny, some):
            assert s[sp]["cbw_bytes"] > sp * span
            assert s[sp]["job_copied_bytes"] == cfg[sp].max_chunk
            assert s[sp]["job_copied_bytes"] + s[sp]["cbw_bytes"] <= DISK
