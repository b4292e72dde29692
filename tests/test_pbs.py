"""A Proxmox Backup Server target (nodes/pbs.py, devices/pbs.py): each stage
against its closed form on one chunk and on a long run, digest-only backups,
fast incrementals, the oracle, both engines."""
import json
import math

import pytest

from fleecesim.config import DeviceSpec
from fleecesim.devices import build_device
from fleecesim.devices.pbs import (H2_FRAME, KNOWN, POST_HEADERS, RESPONSE_BYTES, UPLOAD,
                                   ZERO, PBSClient, chunk_post_path)
from fleecesim.run import simulate
from tests.conftest import small

MiB = 2**20
L = 4 * MiB


def tls(n):  # RFC 8446: 22 bytes a record of at most 16 KiB (written out, not imported)
    return n + 22 * math.ceil(n / 16384)


def remote(**kw):
    spec = {"kind": "remote", "rtt": "1ms", "link-bandwidth": "1GiB/s",
            "backend": {"kind": "ssd", "latency": "50us", "bandwidth": "1GB/s",
                        "queue-depth": 32}}
    spec.update(kw)
    return build_device("pbs", DeviceSpec.model_validate(spec))


# ---------------------------------------------------------------- one chunk
def test_one_uploaded_chunk_closed_form():
    dev = remote()
    c = PBSClient(dev, encrypt=True, sha256_speed=2e9, compress_speed=1e9, aes_speed=4e9,
                  tls_speed=1.5e9, verify_speed=0.8e9, create_writes=1)
    enc = L // 2 + 44
    t = c.submit(0.0, 0, L, enc, UPLOAD)
    cpu = L / 2e9 + L / 1e9 + enc / 4e9
    assert t == pytest.approx(cpu, rel=1e-12)  # the callback returns once queued
    # plaintext of the POST: HEADERS (9 + indexed fields + :path literal) and one DATA frame
    plain = H2_FRAME + POST_HEADERS + chunk_post_path(1, L, enc) + 2 + enc + H2_FRAME
    B = 2**30
    up = plain / 1.5e9 + 0.5e-3 + tls(plain) / B
    verify = 0.0  # encrypted: the server cannot verify (CRC only)
    store = (50e-6 + enc / 1e9) + (50e-6 + 4096 / 1e9)  # data, one metadata write
    down = tls(RESPONSE_BYTES) / B + 0.5e-3
    assert c._done == pytest.approx(cpu + up + verify + store + down, rel=1e-12)
    assert c.up_bytes == tls(plain) and c.n_uploaded == 1


def test_one_unencrypted_chunk_is_verified_on_the_server():
    c = PBSClient(remote(), verify_speed=0.5e9, create_writes=0)
    c0 = PBSClient(remote(), verify_speed=1e30, create_writes=0)
    enc = L + 12
    c.submit(0.0, 0, L, enc, UPLOAD)
    c0.submit(0.0, 0, L, enc, UPLOAD)
    assert c._done - c0._done == pytest.approx(L / 0.5e9, rel=1e-9)


def test_one_chunk_under_a_small_window():
    """A chunk larger than the window: its bytes pass a pipe of window / rtt
    and arrive half a round trip before that pipe's end (devices/remote.py)."""
    rtt, win = 20e-3, MiB
    c = PBSClient(remote(rtt="20ms", window="1MiB"), h2_window=32 * MiB, sha256_speed=1e30,
                  compress_speed=1e30, tls_speed=1e30, verify_speed=1e30, create_writes=0)
    c0 = PBSClient(remote(rtt="20ms"), h2_window=32 * MiB, sha256_speed=1e30,
                   compress_speed=1e30, tls_speed=1e30, verify_speed=1e30, create_writes=0)
    c.submit(0.0, 0, L, L, UPLOAD)
    c0.submit(0.0, 0, L, L, UPLOAD)  # the default 3 MiB window
    plain = H2_FRAME + POST_HEADERS + chunk_post_path(1, L, L) + 2 + L + H2_FRAME
    arrive = tls(plain) * rtt / win - rtt / 2
    store = 50e-6 + L / 1e9
    down = tls(RESPONSE_BYTES) / 2**30 + rtt / 2
    assert c._done == pytest.approx(arrive + store + down, rel=1e-9)
    assert c._done > c0._done


def test_the_end_of_a_backup_closed_form():
    """After the job: the last digest list (PUT fixed_index), fixed_close, the
    fixed index written to the datastore (4096 + 32 bytes a chunk),
    index.json.blob and finish: four round trips and one write."""
    dev = remote(**{"rtt": "10ms"})
    c = PBSClient(dev, sha256_speed=1e30, tls_speed=1e30)
    for i in range(3):
        c.submit(0.0, i * L, L, 0, KNOWN)
    end = c.drain(1.0)
    body = len(json.dumps({"wid": 1, "digest-list": ["0" * 64] * 3,
                           "offset-list": [0, L, 2 * L]}, separators=(",", ":")))
    B = 2**30
    rt = 10e-3 + tls(RESPONSE_BYTES) / B
    want = (1.0 + 4 * rt + tls(H2_FRAME + POST_HEADERS + len("/fixed_index") + 2 + body
                               + H2_FRAME) / B
            + sum(tls(H2_FRAME + POST_HEADERS + len(p) + 2 + b + (H2_FRAME if b else 0)) / B
                  for p, b in (("/fixed_close", 300), ("/blob", 300), ("/finish", 0)))
            + 50e-6 + (4096 + 32 * 3) / 1e9)
    assert end == pytest.approx(want, rel=1e-9)


def test_known_and_zero_chunks_cost_digest_or_nothing():
    c = PBSClient(remote(), sha256_speed=2e9)
    assert c.submit(0.0, 0, L, 0, KNOWN) == pytest.approx(L / 2e9, rel=1e-12)
    t = c.submit(1.0, L, L, 0, ZERO)
    assert t == 1.0
    assert c.up_bytes == 0 and c.n_known == 1 and c.n_zero == 1


def test_sync_level_file_adds_two_flushes():
    a = PBSClient(remote(), sync_level="filesystem", create_writes=0)
    b = PBSClient(remote(), sync_level="file", create_writes=0)
    a.submit(0.0, 0, L, L, UPLOAD)
    b.submit(0.0, 0, L, L, UPLOAD)
    assert b._done - a._done == pytest.approx(2 * 50e-6, rel=1e-9)  # two write latencies


def test_a_full_upload_queue_holds_the_callback():
    """A queue of 2 (tokio mpsc: 2 sent and not yet received) besides the one
    the handler awaits: on a slow link the fourth chunk's callback waits until
    the handler has the first's response and takes the second."""
    c = PBSClient(remote(**{"link-bandwidth": "10MiB/s"}), in_flight=2)
    ends = [c.submit(0.0, i * L, L, L, UPLOAD) for i in range(4)]
    assert ends[2] < 0.1 < ends[3]  # ~0.4 s a chunk on the wire
    first = PBSClient(remote(**{"link-bandwidth": "10MiB/s"}))
    first.submit(0.0, 0, L, L, UPLOAD)
    assert ends[3] == pytest.approx(first._done, rel=1e-9)  # the first chunk's response
    assert c.queue_full == 1


# ---------------------------------------------------------------- long runs
BASE = {"disk.size": "4GiB", "disk.allocated": 1.0, "workload.iops": 0,
        "backup.scheme": "backup", "backup.target.kind": "pbs",
        "run.warmup": "0.1s", "run.tail": "0s", "run.max-time": "600s"}
FAST = {"sha256-speed": "20GB/s", "compress-speed": "20GB/s", "tls-speed": "20GB/s",
        "verify-speed": "20GB/s"}
FAST_LINK = {"kind": "remote", "rtt": "0.1ms", "link-bandwidth": "10GiB/s",
             "backend": {"kind": "ssd", "latency": "20us", "bandwidth": "10GB/s",
                         "queue-depth": 32}}


def run(target=None, **pbs):
    over = dict(BASE)
    over["devices.target"] = target or FAST_LINK
    for k, v in {**FAST, **pbs}.items():
        over[f"backup.target.pbs.{k}"] = v
    s = simulate(small(**over)).summary
    assert s.get("error") is None, s.get("traceback")
    assert s["oracle_ok"]
    return s


E1 = L + 12  # incompressible chunk + blob header
WIRE = tls(H2_FRAME + POST_HEADERS + chunk_post_path(1, L, E1) + 2 + E1 + H2_FRAME)
PLAIN = H2_FRAME + POST_HEADERS + chunk_post_path(1, L, E1) + 2 + E1 + H2_FRAME


@pytest.mark.parametrize("stage,target,pbs,rate", [
    # the serialised dump callback: SHA-256 + zstd per byte of the chunk
    ("cpu", None, {"sha256-speed": "500MB/s", "compress-speed": "300MB/s"},
     1 / (1 / 500e6 + 1 / 300e6)),
    ("tls", None, {"tls-speed": "200MB/s"}, 200e6 * L / PLAIN),
    ("link", {**FAST_LINK, "link-bandwidth": "112MiB/s"}, {}, 112 * MiB * L / WIRE),
    ("window", {**FAST_LINK, "rtt": "20ms", "window": "1MiB"}, {},
     MiB / 20e-3 * L / WIRE),
    ("verify", None, {"verify-speed": "150MB/s", "server-threads": 1}, 150e6),
    ("datastore", {**FAST_LINK, "backend": {"kind": "ssd", "latency": "1ms",
                                            "bandwidth": "200MB/s", "queue-depth": 32}},
     {"create-writes": 1}, L / (1e-3 + E1 / 200e6 + 1e-3 + 4096 / 200e6)),
])
def test_long_run_throughput_is_the_slowest_stage(stage, target, pbs, rate):
    s = run(target, **pbs)
    thr = 4 * 2**30 / s["backup_duration_s"]
    assert thr == pytest.approx(rate, rel=0.02), (stage, thr / 1e6, rate / 1e6)
    assert s["pbs_bottleneck"] == stage
    assert s["pbs_chunks"] == s["pbs_chunks_uploaded"] == 1024


def test_compression_shrinks_what_crosses_the_link():
    a = run({**FAST_LINK, "link-bandwidth": "112MiB/s"})
    b = run({**FAST_LINK, "link-bandwidth": "112MiB/s"}, **{"compression-ratio": 2.0})
    assert b["pbs_encoded_bytes"] == 1024 * (L // 2 + 12)
    assert a["backup_duration_s"] / b["backup_duration_s"] == pytest.approx(
        tls(PLAIN) / tls(H2_FRAME + POST_HEADERS + chunk_post_path(1, L, L // 2 + 12) + 2
                         + L // 2 + 12 + H2_FRAME), rel=0.02)


# ---------------------------------------------------------------- digests only
def test_every_chunk_known_uploads_only_digest_lists():
    """The previous snapshot has every chunk: nothing but the digest lists
    goes up — each digest as 64 hex characters in a JSON list of 128 with
    their offsets (src/upload_queue.rs upload_chunk_list), so about
    ``chunks x (64 + 3 + offset digits + 1)`` bytes, not 32 a digest."""
    s = run(**{"known-fraction": 1.0})
    n = s["pbs_chunks"]
    assert s["pbs_chunks_known"] == n == 1024 and s["pbs_chunks_uploaded"] == 0
    body = 0
    for i in range(0, n, 128):
        offs = [j * L for j in range(i, min(n, i + 128))]
        body += len(json.dumps({"wid": 1, "digest-list": ["0" * 64] * len(offs),
                                "offset-list": offs}, separators=(",", ":")))
    puts = math.ceil(n / 128)
    # each request: TLS records, HTTP/2 frame headers and a short :path; plus
    # fixed_close, index.json.blob and finish (a few hundred bytes each)
    assert body <= s["pbs_net_up_bytes"] <= body + puts * 100 + 3 * 400
    assert s["pbs_net_up_bytes"] < 1e-4 * 4 * 2**30


# ---------------------------------------------------------------- fast incremental
@pytest.mark.parametrize("dirty", [0.05, 0.3])
def test_fast_incremental_uploads_the_dirty_chunks(dirty):
    """PVE's dirty bitmap has the chunk's granularity (pve-backup.c:
    bdrv_create_dirty_bitmap(di->bs, dump_cb_block_size, ...)): X % dirty
    uploads X % of the chunks, the clean ones are not read at all."""
    over = {"backup.sync": "incremental", "backup.incremental.dirty": dirty,
            "backup.incremental.granularity": "4MiB", "backup.incremental.extent": "4MiB"}
    s = simulate(small(**{**BASE, "devices.target": FAST_LINK, **over})).summary
    assert s["oracle_ok"]
    assert s["pbs_chunks_uploaded"] == round(dirty * 1024)
    assert s["source_read_bytes"] == round(dirty * 1024) * L


def test_fine_dirty_bitmap_is_amplified_to_chunks():
    """A bitmap of 64 KiB granules, a share p of them dirty at random: a
    4 MiB chunk is uploaded if any of its 64 granules is, 1 - (1 - p)^64 of
    them (for random 4 KiB guest writes covering p of the disk the exponent is
    4 MiB / 4 KiB = 1024: p = 0.1 % dirties 64 % of the chunks)."""
    p = 0.01
    over = {"backup.sync": "incremental", "backup.incremental.dirty": p,
            "backup.incremental.granularity": "64KiB", "backup.incremental.extent": "64KiB"}
    s = simulate(small(**{**BASE, "devices.target": FAST_LINK, **over})).summary
    assert s["oracle_ok"]
    want = 1 - (1 - p) ** 64
    n = 1024
    sd = math.sqrt(want * (1 - want) / n)
    assert abs(s["pbs_chunks_uploaded"] / n - want) < 4 * sd
    assert s["pbs_chunks_uploaded"] > 5 * p * n  # amplified, not p


# ---------------------------------------------------------------- oracle, engines
GUEST = {"disk.size": "1GiB", "workload.iops": 3000, "backup.max-workers": 16,
         "workload.mix": {"read": 0.3, "write": 0.7}, "backup.target.kind": "pbs",
         "backup.target.pbs.known-fraction": 0.3, "backup.target.pbs.compression-ratio": 1.7}


@pytest.mark.parametrize("scheme", ["backup", "fleecing-push"])
def test_oracle_checks_the_pbs_image(scheme, monkeypatch):
    s = simulate(small(**{**GUEST, "backup.scheme": scheme})).summary
    assert s["oracle_ok"] and s["cbw_count"] > 0 and s["target_wrong_clusters"] == 0
    from fleecesim.nodes.pbs import PBSTarget
    orig = PBSTarget.store

    def lose_known(self, offset, length, data, zero=False):  # a bug: known chunks not indexed
        if offset // self.chunk % 3 == 0:
            return None
        return orig(self, offset, length, data, zero)
    monkeypatch.setattr(PBSTarget, "store", lose_known)
    bad = simulate(small(**{**GUEST, "backup.scheme": scheme})).summary
    assert not bad["oracle_ok"] and bad["oracle_violations"] > 0


@pytest.mark.parametrize("scheme", ["backup", "fleecing-push"])
def test_both_engines_agree(scheme):
    from tests.test_engine_equivalence import assert_same
    cfg = small(**{**GUEST, "backup.scheme": scheme})
    a = simulate(cfg, analytic=True).summary
    b = simulate(cfg, analytic=False).summary
    assert a.get("error") is None and b.get("error") is None
    assert_same(a, b)
    c = simulate(cfg, fast_path=False).summary
    assert_same(a, c)


def test_same_seed_same_result_other_seed_other_chunks():
    a = simulate(small(**{**GUEST, "backup.scheme": "fleecing-push"})).summary
    b = simulate(small(**{**GUEST, "backup.scheme": "fleecing-push"})).summary
    c = simulate(small(**{**GUEST, "backup.scheme": "fleecing-push", "run.seed": 2})).summary
    keys = [k for k in a if k.startswith("pbs_")]
    assert [a[k] for k in keys] == [b[k] for k in keys]
    assert a["pbs_chunks_known"] != c["pbs_chunks_known"] or \
        a["pbs_busy_cpu_s"] != c["pbs_busy_cpu_s"]


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize("text,msg", [
    ("backup: {scheme: fleecing-pull, target: {kind: pbs}}",
     "backup.target.kind: pbs is written by QEMU's backup job"),
    ("devices: {target: {preset: sata-ssd}}\nbackup: {target: {kind: pbs}}",
     "backup.target.device: a pbs target needs a device of kind remote"),
    ("backup: {target: {kind: pbs, pbs: {chunk-size: 8MiB}}}",
     "backup.target.pbs.chunk-size: expected a power of two from 64KiB to 4MiB"),
    ("backup: {target: {kind: pbs, pbs: {compression-ratio: 0.5}}}",
     "backup.target.pbs.compression-ratio: Input should be greater than or equal to 1"),
    ("backup: {target: {pbs: {known-fraction: 0.5}}}",
     "backup.target.pbs.known-fraction: only for a pbs target"),
    ("backup: {target: {kind: pbs, cluster-size: 1MiB}}",
     "backup.target.cluster-size: a pbs target's cluster size is its pbs.chunk-size"),
    ("backup: {target: {kind: pbs, pbs: {aes-speed: 1GB/s}}}",
     "backup.target.pbs.aes-speed: only acts with encrypt: true"),
    ("backup: {target: {kind: pbs, pbs: {sync-level: always}}}",
     "backup.target.pbs.sync-level: Input should be 'none', 'filesystem' or 'file'"),
    ("backup: {target: {kind: sftp}}", "backup.target.kind: Input should be 'nbd' or 'pbs'"),
])
def test_bad_pbs_input_is_one_line(tmp_path, capsys, text, msg):
    from tests.test_bad_input import _cli
    code, err, out = _cli(tmp_path, capsys, "disk: {size: 64MiB}\nrun: {warmup: 0.1s}\n" + text)
    assert code == 2 and len(err) == 1 and msg in err[0], err
    assert not out.exists()


# ---------------------------------------------------------------- VMs sharing one PBS
SLOW_STORE = {**FAST_LINK, "backend": {"kind": "ssd", "latency": "1ms", "bandwidth": "200MB/s",
                                       "queue-depth": 32}}


def test_vms_on_one_datastore_share_its_store_mutex():
    """Two VMs backing up at once to one datastore: ChunkStore::insert_chunk
    holds one mutex per store, so their chunks are written one at a time
    (the SSD's queue depth of 32 does not overlap them): the fleet takes the
    sum of both VMs' chunks at one insert's service each."""
    from fleecesim.config import resolve
    raw = {"disk": {"size": "1GiB", "allocated": 1.0},
           "devices": {"local": {"preset": "nvme"}, "target": SLOW_STORE},
           "workload": {"iops": 0},
           "backup": {"scheme": "backup", "target": {"kind": "pbs", "pbs": {
               **FAST, "create-writes": 1}}},
           "run": {"seed": 1, "warmup": "0.1s", "tail": "0s", "max-time": "600s"},
           "vms": [{"name": "a"}, {"name": "b"}]}
    s = simulate(resolve(raw)).summary
    assert s.get("error") is None, s.get("traceback")
    per = s["vms"]
    S = 1e-3 + E1 / 200e6 + 1e-3 + 4096 / 200e6
    assert s["backup_duration_s"] == pytest.approx(2 * 256 * S, rel=0.02)
    for v in per:
        assert v["oracle_ok"] and v["pbs_bottleneck"] == "datastore"
        # both VMs' inserts over each one's window (booked when submitted, so
        # up to a queue of chunks ahead of the window's edges: not exactly 1)
        assert v["pbs_util_datastore"] > 0.9
