"""Block-trace readers: every format, options, errors, stats, CLI."""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fleecesim.errors import ConfigError, TraceError
from fleecesim.workloads.records import CHUNK, OP_DISCARD, OP_FLUSH, OP_READ, OP_WRITE, RECORD_DTYPE
from fleecesim.workloads.traces import (
    FORMATS, add_trace_subcommand, cmd_trace_stats, detect_format, format_stats_table, open_trace,
    trace_stats,
)
from fleecesim.workloads.traces import _text
from fleecesim.workloads.traces.stream import _ordered
from fleecesim.workloads.traces.vscsi import VSCSI_DTYPE

SHARED = Path(__file__).resolve().parents[2] / "shared" / "traces"
KiB = 1024


def read_all(path, **kw) -> np.ndarray:
    chunks = list(open_trace(path, **kw))
    for c in chunks:
        assert c.dtype == RECORD_DTYPE and 0 < len(c) <= CHUNK
    out = np.concatenate(chunks)
    assert (np.diff(out["time"]) >= 0).all()
    return out


def write(tmp_path, name, text) -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


@pytest.fixture
def small_blocks(monkeypatch):
    """Force many text blocks so block boundaries and both parse paths get exercised."""
    monkeypatch.setattr(_text.TextReader, "block_bytes", 64)


# --- fio ---------------------------------------------------------------------------

FIO2 = """fio version 2 iolog
/dev/vdb add
/dev/vdc add
/dev/vdb open

/dev/vdb write 0 4096
/dev/vdb wait 1000 0
/dev/vdb read 8192 8192
/dev/vdc write 65536 4096
/dev/vdb wait 2500
/dev/vdb trim 16384 4096
/dev/vdb sync 0 0
/dev/vdb read 100 0
/dev/vdb close
"""


@pytest.mark.parametrize("blocks", [False, True])
def test_fio_v2_time_from_waits(tmp_path, request, blocks):
    if blocks:
        request.getfixturevalue("small_blocks")
    p = write(tmp_path, "t.iolog", FIO2)
    s = open_trace(p)
    r = np.concatenate(list(s))
    assert list(r["op"]) == [OP_WRITE, OP_READ, OP_WRITE, OP_DISCARD, OP_FLUSH]
    assert list(r["offset"]) == [0, 8192, 65536, 16384, 0]
    assert list(r["length"]) == [4096, 8192, 4096, 4096, 0]
    # time advances only through waits: 1000 us, then 2500 us more
    assert np.allclose(r["time"], [0, 1e-3, 1e-3, 3.5e-3, 3.5e-3])
    assert s.counters["zero_length"] == 1 and s.counters["format"] == "fio2"
    vdc = read_all(p, device="/dev/vdc")
    assert list(vdc["offset"]) == [65536] and vdc["time"][0] == 0.0  # re-based on its first request


def test_fio_v3_timestamps_are_microseconds_and_unsorted(tmp_path):
    # fio writes utime_since_now() (us) as the v3 timestamp (iolog.c log_io_u)
    p = write(tmp_path, "t3.log", "fio version 3 iolog\n0 /f add\n0 /f open\n"
              "500 /f write 0 4096\n300 /f read 4096 4096\n2000 /f wait 5 5\n"
              "1500 /f trim 0 512\n1500 /f write 0 0\n2500 /f close\n")
    s = open_trace(p)
    r = np.concatenate(list(s))
    assert list(r["op"]) == [OP_READ, OP_WRITE, OP_DISCARD]
    assert np.allclose(r["time"], [0.0, 200e-6, 1200e-6])
    assert s.counters["ignored"] == 1 and s.counters["zero_length"] == 1


@pytest.mark.parametrize("text,line,needle", [
    ("fio version 2 iolog\n/f add\n/f read 0 4096\nfoo 1 2\n", 4, "got 'foo 1 2'"),
    ("fio version 2 iolog\n/f frobnicate 0 4096\n", 2, "'/f frobnicate 0 4096'"),
    ("fio version 2 iolog\n/f read x 4096\n", 2, "offset must be an integer"),
    ("fio version 2 iolog\n/f read -5 4096\n", 2, "negative offset"),
    ("fio version 3 iolog\nabc /f read 0 4096\n", 2, "timestamp must be an integer"),
    ("/f read 0 4096\n", 1, "expected header"),
])
def test_fio_malformed(tmp_path, text, line, needle):
    p = write(tmp_path, "bad.iolog", text)
    with pytest.raises(TraceError) as e:
        read_all(p, format="fio")
    msg = str(e.value)
    assert msg.startswith(f"{p}:{line}: ") and needle in msg and "\n" not in msg


# --- blkparse ----------------------------------------------------------------------

BLK = """  8,0    3        1     0.000000000   697  Q   W 1000 + 8 [kjournald]
  8,0    3        2     0.000010000   697  G   W 1000 + 8 [kjournald]
  8,0    3        3     0.000100000     0  C   W 1000 + 8 [0]
  8,16   1        1     0.000200000   700  Q   R 64 + 16 [dd]
  8,16   1        2     0.000300000     0  C   R 64 + 16 [0]
  8,0    0        4     0.000400000   698  Q FWS [jbd2/sda1-8]
  8,0    0        5     0.000500000     0  C  FN [0]
  8,0    2        6     0.000600000   699  Q  DS 2048 + 2048 [fstrim]
  8,0    2        7     0.000700000     0  C  DS 2048 + 2048 [0]
  8,0    1        8     0.000800000   701  A  WS 4000 + 8 <- (8,1) 3000
  8,0    1        9     0.000900000   701  C RSM 4000 + 8 [0]
CPU0 (8,0):
 Reads Queued:           0,        0KiB  Writes Queued:           1,        4KiB
Total (8,0):
 Reads Completed:        1,        4KiB  Writes Completed:        1,        4KiB

Throughput (R/W): 0KiB/s / 0KiB/s
"""


def test_blkparse_completed_default(tmp_path):
    p = write(tmp_path, "t.blk", BLK)
    s = open_trace(p)
    r = np.concatenate(list(s))
    assert list(r["op"]) == [OP_WRITE, OP_READ, OP_FLUSH, OP_DISCARD, OP_READ]
    assert list(r["offset"]) == [1000 * 512, 64 * 512, 0, 2048 * 512, 4000 * 512]
    assert list(r["length"]) == [8 * 512, 16 * 512, 0, 2048 * 512, 8 * 512]
    assert np.allclose(r["time"], [0, 200e-6, 400e-6, 600e-6, 800e-6])
    q = read_all(p, events="Q")
    assert list(q["op"]) == [OP_WRITE, OP_READ, OP_FLUSH, OP_DISCARD]
    dev = read_all(p, device="8,16")
    assert list(dev["op"]) == [OP_READ] and list(dev["length"]) == [16 * 512]


def test_blkparse_malformed_payload(tmp_path):
    p = write(tmp_path, "bad.blk", BLK.replace("C   W 1000 + 8 [0]", "C   W abc + 8 [0]"))
    with pytest.raises(TraceError, match=rf"^{p}:3: expected 'SECTOR \+ NBLOCKS"):
        read_all(p)
    with pytest.raises(ConfigError):
        open_trace(p, events="X")


# --- MSR Cambridge -----------------------------------------------------------------

def test_msr_filetime_hosts_disks(tmp_path):
    base = 128166372003061629  # FILETIME epochs exceed 2**53: must stay exact
    rows = [(0, "hm", 0, "Read", 0, 4096), (10, "hm", 1, "Write", 8192, 512),
            (25, "prn", 0, "Write", 4096, 4096), (40, "hm", 1, "Read", 0, 0), (70, "hm", 0, "Write", 512, 1024)]
    text = "Timestamp,Hostname,DiskNumber,Type,Offset,Size,ResponseTime\n" + "".join(
        f"{base + dt},{h},{d},{t},{o},{n},123\n" for dt, h, d, t, o, n in rows)
    p = write(tmp_path, "hm_0.csv", text)
    assert detect_format(p) == "msr"
    s = open_trace(p)
    r = np.concatenate(list(s))
    assert list(r["op"]) == [OP_READ, OP_WRITE, OP_WRITE, OP_WRITE]
    assert np.allclose(r["time"], np.array([0, 10, 25, 70]) * 1e-7, rtol=0, atol=1e-12)
    assert s.counters["zero_length"] == 1
    assert list(read_all(p, device="hm")["offset"]) == [0, 8192, 512]
    assert list(read_all(p, device="hm:0")["offset"]) == [0, 512]
    assert list(read_all(p, device="hm_1")["offset"]) == [8192]
    assert list(read_all(p, device="0")["offset"]) == [0, 4096, 512]
    bad = write(tmp_path, "bad.csv", text.replace(f"{base + 25},prn,0,Write", f"{base + 25},prn,0,Erase"))
    with pytest.raises(TraceError, match=rf"^{bad}:4: unknown request type 'Erase'"):
        read_all(bad, format="msr")


# --- DiskSim / MQSim ---------------------------------------------------------------

def test_disksim_unsorted_devices(tmp_path, small_blocks):
    p = write(tmp_path, "t.trace", "1000 0 8 16 1\n900 1 0 8 0\n\n3000 0 16 8 0\n2000 1 24 0 1\n2500 0 32 8 1\n")
    s = open_trace(p, format="disksim")
    r = np.concatenate(list(s))
    assert list(r["time"]) == pytest.approx([0, 100e-9, 1600e-9, 2100e-9])  # re-based on the earliest
    assert list(r["offset"]) == [0, 8 * 512, 32 * 512, 16 * 512]
    assert list(r["op"]) == [OP_WRITE, OP_READ, OP_READ, OP_WRITE]
    assert s.counters["zero_length"] == 1
    assert list(read_all(p, device=1)["offset"]) == [0]
    bad = write(tmp_path, "bad.trace", "1000 0 8 16 1\n1100 0 8 16 7\n")
    with pytest.raises(TraceError, match=rf"^{bad}:2: unknown request type 7"):
        read_all(bad, format="disksim")
    short = write(tmp_path, "short.trace", "1000 0 8 16 1\n1100 0 8 16\n")
    with pytest.raises(TraceError, match=rf"^{short}:2: expected"):
        read_all(short, format="disksim")


# --- vscsi -------------------------------------------------------------------------

def vscsi_bytes(recs) -> bytes:
    a = np.zeros(len(recs), dtype=VSCSI_DTYPE)
    for i, (op, lbn, ln, ts) in enumerate(recs):
        a[i] = (i, ln, 1, op, 1, lbn, ts)
    return a.tobytes()


def test_vscsi_records_and_opcodes(tmp_path):
    p = tmp_path / "t.vscsi"
    p.write_bytes(vscsi_bytes([(0x28, 8, 4096, 1000), (0x2A, 16, 8192, 1500), (0x12, 0, 36, 1600),
                               (0x88, 32, 512, 2000), (0x8A, 0, 0, 2100)]))
    assert detect_format(p) == "vscsi"
    s = open_trace(p)
    r = np.concatenate(list(s))
    assert list(r["op"]) == [OP_READ, OP_WRITE, OP_READ]
    assert list(r["offset"]) == [8 * 512, 16 * 512, 32 * 512]
    assert list(r["length"]) == [4096, 8192, 512]
    assert np.allclose(r["time"], [0, 500e-6, 1000e-6])
    assert s.counters["ignored"] == 1 and s.counters["zero_length"] == 1


def test_vscsi_truncated_record(tmp_path):
    p = tmp_path / "t.vscsi"
    p.write_bytes(vscsi_bytes([(0x28, 8, 4096, 1000), (0x2A, 16, 8192, 1500)]) + b"\x01" * 20)
    with pytest.raises(TraceError, match=rf"^{p}: record 3: truncated record \(20 of 32 bytes"):
        read_all(p, format="vscsi")


# --- Alibaba -----------------------------------------------------------------------

def test_alibaba(tmp_path):
    p = write(tmp_path, "ali.csv", "device_id,opcode,offset,length,timestamp\n"
              "7,R,4096,4096,1000000\n8,W,0,8192,1000010\n7,W,8192,512,1000030\n7,R,0,0,1000040\n")
    assert detect_format(p) == "alibaba"
    r = read_all(p)
    assert list(r["op"]) == [OP_READ, OP_WRITE, OP_WRITE]
    assert np.allclose(r["time"], [0, 10e-6, 30e-6])
    d7 = read_all(p, device="7")
    assert list(d7["offset"]) == [4096, 8192] and np.allclose(d7["time"], [0, 30e-6])
    bad = write(tmp_path, "bad.csv", "7,R,4096,4096,1000000\n7,X,0,512,1000001\n")
    with pytest.raises(TraceError, match=rf"^{bad}:2: unknown opcode 'X'"):
        read_all(bad, format="alibaba")


# --- detection ---------------------------------------------------------------------

def test_detection(tmp_path):
    assert detect_format(write(tmp_path, "a", FIO2)) == "fio"
    assert detect_format(write(tmp_path, "b", BLK)) == "blkparse"
    assert detect_format(write(tmp_path, "c", "10 0 8 8 1\n")) == "disksim"
    assert detect_format(write(tmp_path, "d", "7,R,0,512,1\n")) == "alibaba"
    p = write(tmp_path, "e", "hello world\n")
    with pytest.raises(TraceError) as e:
        open_trace(p)
    assert str(e.value).startswith(f"{p}:1: cannot tell") and all(f in str(e.value) for f in FORMATS)
    z = tmp_path / "z.bin"
    z.write_bytes(b"\x1f\x8b\x08\x00" + bytes(range(256)) * 4)
    with pytest.raises(TraceError, match="binary file that is not a vscsi trace"):
        open_trace(z)
    with pytest.raises(TraceError, match="unknown trace format 'csv'"):
        open_trace(p, format="csv")


# --- options -----------------------------------------------------------------------

def uniform_trace(tmp_path, n=100, gap_ns=1_000_000, size=4096) -> Path:
    # request i at i*gap_ns, offset i*size: closed form for every option test
    lines = "".join(f"{i * gap_ns} 0 {i * size // 512} {size // 512} {i % 2}\n" for i in range(n))
    return write(tmp_path, "u.trace", lines)


def test_time_scale_and_window(tmp_path):
    p = uniform_trace(tmp_path)  # 100 requests, 1 ms apart
    r = read_all(p, time_scale=0.5)  # 0.5 = twice as fast
    assert r["time"][-1] == pytest.approx(99 * 1e-3 * 0.5)
    w = read_all(p, start="10ms", duration=0.0205)  # requests 10..30 (30 is at 20 ms < 20.5 ms)
    assert len(w) == 21 and w["time"][0] == pytest.approx(0) and w["offset"][0] == 10 * 4096
    ws = read_all(p, start=0.0105, duration=0.01, time_scale=2)  # requests 11..20, re-based on 10.5 ms
    assert len(ws) == 10 and ws["time"][0] == pytest.approx(0.5e-3 * 2)
    with pytest.raises(TraceError, match="no requests"):
        read_all(p, start=1.0)
    for bad in (dict(time_scale=0), dict(map="fold"), dict(duration=-1), dict(disk_size="12 parsecs")):
        with pytest.raises(ConfigError):
            open_trace(p, **bad)


def test_map_error_wrap_scale(tmp_path):
    p = uniform_trace(tmp_path, n=10, size=64 * KiB)  # extent: 10 * 64 KiB
    with pytest.raises(TraceError, match=rf"^{p}:6: request at offset {5 * 64 * KiB} \+ length {64 * KiB} is beyond"):
        read_all(p, disk_size=5 * 64 * KiB + 100)  # request 5 (line 6) is the first not to fit
    disk = 3 * 64 * KiB + 512
    wr = read_all(p, disk_size=disk, map="wrap")
    exp_off = [(i * 64 * KiB) % disk // 512 * 512 for i in range(10)]
    assert list(wr["offset"]) == exp_off
    assert list(wr["length"]) == [min(64 * KiB, disk - o) for o in exp_off]
    assert (wr["offset"] + wr["length"] <= disk).all()
    disk = 5 * 64 * KiB  # scale: half the extent -> offsets halve, sizes kept
    sc = read_all(p, disk_size=disk, map="scale")
    assert list(sc["offset"]) == [min(i * 32 * KiB, disk - 64 * KiB) for i in range(10)]
    assert (sc["length"] == 64 * KiB).all()


def test_loop(tmp_path):
    p = uniform_trace(tmp_path, n=5, gap_ns=2_000_000)  # 0..8 ms, mean gap 2 ms -> period 10 ms
    s = open_trace(p, loop=True)
    got = []
    for c in s:
        got.append(c)
        if sum(map(len, got)) >= 12:
            break
    t = np.concatenate(got)["time"][:12]
    assert np.allclose(t, [(k // 5) * 0.010 + (k % 5) * 0.002 for k in range(12)])
    assert s.counters["loops"] >= 2


def test_reorder_window_clamps_very_late_records():
    from fleecesim.workloads.traces._text import pack
    counters = {"zero_length": 0, "clamped": 0}
    a = pack(np.array([0.0, 1, 2, 3, 4]), np.ones(5, np.uint8), np.zeros(5, np.int64), np.full(5, 512), np.arange(5))
    b = pack(np.array([3.5, 0.5]), np.ones(2, np.uint8), np.zeros(2, np.int64), np.full(2, 512), np.arange(5, 7))
    out = np.concatenate(list(_ordered(iter([a, b]), counters, window=2)))
    # window 2: 0,1,2 leave before b arrives; 3.5 still fits, 0.5 is clamped to 2
    assert list(out["time"]) == [0, 1, 2, 2, 3, 3.5, 4] and counters["clamped"] == 1
    assert list(out["line"]) == [0, 1, 2, 6, 3, 5, 4]


# --- round trips (hypothesis): fast and slow parse paths agree ----------------------

REC = st.tuples(st.integers(0, 10**9), st.integers(0, 3), st.integers(0, 2**30), st.integers(1, 2048), st.booleans())


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(recs=st.lists(REC, min_size=1, max_size=60), blank_every=st.integers(0, 7), block=st.sampled_from([64, 1 << 20]))
def test_disksim_roundtrip(tmp_path_factory, monkeypatch, recs, blank_every, block):
    monkeypatch.setattr(_text.TextReader, "block_bytes", block)
    recs = sorted(recs, key=lambda r: r[0])
    lines = []
    for i, (t, dev, lba, n, rd) in enumerate(recs):
        if blank_every and i % blank_every == 0:
            lines.append("")
        lines.append(f"{t} {dev} {lba} {n} {int(rd)}")
    p = tmp_path_factory.mktemp("h") / "r.trace"
    p.write_text("\n".join(lines) + "\n")
    r = read_all(p, format="disksim")
    assert np.allclose(r["time"], [(t - recs[0][0]) * 1e-9 for t, *_ in recs])
    assert list(r["offset"]) == [lba * 512 for _, _, lba, _, _ in recs]
    assert list(r["length"]) == [n * 512 for *_, n, _ in recs]
    assert list(r["op"]) == [OP_READ if rd else OP_WRITE for *_, rd in recs]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(recs=st.lists(st.tuples(st.integers(0, 10**6), st.sampled_from(["read", "write", "trim"]),
                               st.integers(0, 2**40), st.integers(1, 2**20)), min_size=1, max_size=60),
       block=st.sampled_from([48, 1 << 20]))
def test_fio_v3_roundtrip(tmp_path_factory, monkeypatch, recs, block):
    monkeypatch.setattr(_text.TextReader, "block_bytes", block)
    recs = sorted(recs, key=lambda r: r[0])
    # interleave a decoy file whose name extends the selected one
    body = "".join(f"{t} /dev/x {a} {o} {n}\n{t} /dev/xy read 0 1\n" for t, a, o, n in recs)
    p = tmp_path_factory.mktemp("h") / "r.log"
    p.write_text(f"fio version 3 iolog\n0 /dev/x add\n{body}{recs[-1][0]} /dev/x close\n")
    r = read_all(p, device="/dev/x")
    assert len(read_all(p, device="/dev/xy")) == len(recs)
    ops = {"read": OP_READ, "write": OP_WRITE, "trim": OP_DISCARD}
    assert np.allclose(r["time"], [(t - recs[0][0]) * 1e-6 for t, *_ in recs])
    assert list(r["op"]) == [ops[a] for _, a, _, _ in recs]
    assert list(r["offset"]) == [o for *_, o, _ in recs] and list(r["length"]) == [n for *_, n in recs]


# --- stats -------------------------------------------------------------------------

def test_stats_closed_form(tmp_path):
    # minute 0: writes to clusters 0 and 0 (again) and 1..2 (128 KiB at 64 KiB); read 10 MiB
    # minute 1: idle; minute 2: write cluster 0 again, one discard, one flush
    C = 64 * KiB
    lines = ["fio version 3 iolog",
             f"0 /f write 0 4096", f"100 /f write 8192 4096", f"200 /f write {C} {2 * C}",
             f"300 /f read {10 << 20} 8192", f"1000000 /f read 0 512",
             f"130000000 /f write 0 4096", f"130000001 /f trim {C} 8192", "130000002 /f sync 0 0"]
    p = write(tmp_path, "s.log", "\n".join(lines) + "\n")
    s = trace_stats(p)
    assert s["requests"] == 8 and s["duration_s"] == pytest.approx(130.000002)
    assert (s["reads"], s["writes"], s["discards"], s["flushes"]) == (2, 4, 1, 1)
    assert s["write_fraction"] == 0.5
    assert s["bytes_written"] == 4096 * 3 + 2 * C and s["bytes_read"] == 8192 + 512
    assert s["iops_peak_1s"] == 4  # four requests in second 0, one in second 1
    assert s["size_histogram"] == {"512B": 1, "4KiB": 3, "8KiB": 2, "128KiB": 1}
    assert s["written_clusters_per_minute"] == [3, 0, 1]
    assert s["written_clusters_per_minute_max"] == 3 and s["written_clusters_per_minute_mean"] == pytest.approx(4 / 3)
    assert s["written_set_bytes"] == 3 * C
    assert s["working_set_bytes"] == 4 * C  # clusters 0,1,2 and the 10 MiB read's one
    table = format_stats_table(s)
    assert "requests" in table and "128KiB" in table
    with pytest.raises(ConfigError):
        trace_stats(p, loop=True)


def test_extents_union_many_chunks():
    from fleecesim.workloads.traces.stats import _Extents
    e = _Extents()
    rng = np.random.default_rng(0)
    s = rng.integers(0, 10_000, 5000)
    ln = rng.integers(1, 20, 5000)
    for i in range(0, 5000, 700):
        e.add(s[i:i + 700], s[i:i + 700] + ln[i:i + 700])
    covered = np.zeros(10_100, bool)
    for a, b in zip(s, s + ln):
        covered[a:b] = True
    assert e.total() == covered.sum()


# --- CLI ---------------------------------------------------------------------------

def test_cli_subcommand(tmp_path, capsys):
    p = uniform_trace(tmp_path, n=10)
    ap = argparse.ArgumentParser(prog="fleecesim")
    add_trace_subcommand(ap.add_subparsers(dest="cmd"))
    args = ap.parse_args(["trace", "stats", str(p), "--json"])
    assert args.func(args) == 0
    assert json.loads(capsys.readouterr().out)["requests"] == 10
    args = ap.parse_args(["trace", "stats", str(p), "--device", "3"])
    with pytest.raises(TraceError, match="no requests"):
        cmd_trace_stats(args)


def test_main_module_error_exit(tmp_path):
    p = write(tmp_path, "bad.trace", "1 0 8 8 1\n2 0 x 8 1\n")
    r = subprocess.run([sys.executable, "-m", "fleecesim.workloads.traces", str(p)],
                       capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
    assert r.returncode == 2
    assert r.stderr.startswith(f"fleecesim: error: {p}:2: ") and r.stderr.count("\n") == 1


# --- real traces -------------------------------------------------------------------

def real(name) -> Path:
    p = SHARED / name
    if not p.exists():
        pytest.skip(f"{p} not present")
    return p


def test_real_mqsim_tpcc():
    s = trace_stats(real("mqsim-tpcc-small.trace"))
    assert s["format"] == "disksim" and s["requests"] == 6999
    assert round(100 * s["read_fraction"], 1) == 62.6
    assert s["duration_s"] < 0.137  # README: 136 ms


def test_real_mqsim_wsrch():
    p = real("mqsim-wsrch-small.trace")
    s = trace_stats(p)
    # README says 24,782 = its newline count; the last record has no trailing
    # newline but is complete, so there is one more request than newlines.
    assert not p.read_bytes().endswith(b"\n")
    assert s["requests"] == 24782 + 1 and round(100 * s["read_fraction"], 2) == 99.98
    assert 59 < s["duration_s"] < 61  # README: 60 s


def test_iops_mean_never_exceeds_the_peak(tmp_path):
    """Issue 14: the peak is the busiest >= 1 s window's rate, so it bounds the
    mean; a trace shorter than 1 s has peak = mean and says so."""
    rng = np.random.default_rng(3)
    for k in range(20):
        span = float(rng.choice([0.05, 0.9, 1.3, 5.0, 61.7]))
        ts = np.sort(rng.random(int(rng.integers(2, 400))) * span)
        ts = np.sort(np.r_[ts, ts[:5] if k % 2 else []])  # some bursts
        lines = ["fio version 3 iolog"] + [f"{int(t * 1e6)} /f write 0 4096" for t in ts]
        s = trace_stats(write(tmp_path, f"t{k}.log", "\n".join(lines) + "\n"))
        if s["duration_s"] > 0:
            assert s["iops_mean"] <= s["iops_peak_1s"] * (1 + 1e-9), (span, s["iops_mean"])
        assert s["shorter_than_1s"] == (s["duration_s"] < 1.0)
    short = trace_stats(write(tmp_path, "short.log", "fio version 3 iolog\n0 /f write 0 4096\n"
                              "100000 /f write 0 4096\n"))
    assert short["iops_peak_1s"] == short["iops_mean"] == 20.0  # 2 requests in 0.1 s
    assert "shorter than 1 s" in format_stats_table(short)


def test_skipped_records_are_counted_by_kind_and_shown(tmp_path):
    """Issue 14: vscsi opcode 0x99 and blkparse rwbs X were skipped silently.
    They are skipped (real traces hold many non-data commands) but counted by
    kind, listed by `trace stats`, and warned about by a replay."""
    p = tmp_path / "t.vscsi"
    p.write_bytes(vscsi_bytes([(0x28, 8, 4096, 1000), (0x99, 0, 512, 1200),
                               (0x99, 0, 512, 1300), (0x12, 0, 36, 1600)]))
    s = trace_stats(p, "vscsi")
    assert s["ignored"] == 3
    assert s["ignored_kinds"] == {"opcode 0x99": 2, "opcode 0x12": 1}
    assert "ignored records" in format_stats_table(s) and "opcode 0x99 x2" in format_stats_table(s)
    b = write(tmp_path, "b.txt", "8,0 1 1 0.000001 100 C W 0 + 8 [x]\n"
                                 "8,0 1 2 0.000002 100 C X 8 + 8 [x]\n")
    sb = trace_stats(b, "blkparse")
    assert sb["ignored_kinds"] == {"rwbs X": 1} and sb["requests"] == 1


def test_a_replay_warns_about_skipped_records(tmp_path):
    from fleecesim.run import simulate
    from tests.conftest import small
    p = tmp_path / "t.vscsi"
    p.write_bytes(vscsi_bytes([(0x2A, 8 * i, 4096, 1000 * i) for i in range(1, 50)]
                              + [(0x99, 0, 512, 60000)]))
    s = simulate(small(**{"workload": {"trace": str(p), "format": "vscsi"}, "disk.size": "64MiB",
                          "run.warmup": "10ms"})).summary
    assert any("1 records skipped" in w and "opcode 0x99 x1" in w for w in s["warnings"]), \
        s["warnings"]
