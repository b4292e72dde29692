"""Run a QemuScenario on real QEMU (7.2) and measure it.

Processes (all started here, all killed on any exit):

* target daemon: ``qemu-storage-daemon`` exporting ``target.raw`` (disk_size)
  writable over NBD on a unix socket, tracing ``bdrv_co_pwritev_part`` to count
  the bytes written to it;
* main daemon: ``qemu-storage-daemon`` with
  ``disk`` (file: active.raw, a deterministic pattern per 4 KiB block)
  <- ``guest`` (raw format node, exported writable over NBD to the guest),
  and the backup target ``tgt`` = ``throttle`` (group ``tg0``, bps-write =
  target_bps) over ``tgt-nbd`` (NBD client of the target daemon);
* the guest: ``qemu-io`` over NBD on the ``guest`` export, fed a command file
  (``sleep MS`` / ``aio_write -P 0xNN OFF LEN`` / ``aio_read`` / ``aio_flush``);
* with ``probe_rate``: the hop probe, a second ``qemu-io`` on the ``probe``
  export (raw node ``probe`` over file ``probe-disk``: probe.raw, PROBE_SIZE)
  of the main daemon, started with the guest in each phase: 4 KiB writes
  whose latency is the guest's own path at that moment without the backup.

Schemes (t0 = the point-in-time the backup must capture):

* ``backup``: ``blockdev-backup sync=full`` disk -> tgt. t0 = job start.
* ``fleecing-push``: ``fleece`` (qcow2, no backing; cluster_size) is added,
  ``fl-cbw`` (copy-before-write, file=disk, target=fleece) is put under
  ``guest`` with ``blockdev-reopen`` of ``guest``'s ``file`` child (t0),
  ``fl-access`` (snapshot-access on fl-cbw), then ``blockdev-backup sync=full``
  fl-access -> tgt.
* ``fleecing-pull``: same graph; ``fl-access`` behind a ``throttle`` (group
  ``tg-pull``, bps-read = pull_bps or target_bps) is exported read-only over
  NBD and read by ``qemu-img convert`` into pulled.raw.

With ``snapshot_read_max`` set, a ``blkdebug`` node ``fl-split`` with
``max-transfer`` sits on ``fl-access`` and the backup / export read through it:
QEMU 7.2 (no fix for hbitmap_status(), fixed in 8.0) serves a snapshot read
that starts in an already-copied cluster and runs into a not-yet-copied one
from the active disk, so new guest data leaks into the backup; reads no larger
than a cluster cannot hit that.

The guest phase before the backup (pre_backup_s) runs as its own qemu-io,
which finishes (and flushes) before t0; the active disk's sha256 is then taken
as the expected backup content; the guest phase during the backup starts right
after t0.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections import defaultdict, deque
from contextlib import ExitStack
from pathlib import Path

import numpy as np

from fleecesim.errors import UserError
from fleecesim.qemu.qmp import QMPClient, QMPError, event_time
from fleecesim.qemu.scenario import (
    ALIGN, PROBE_SIZE, QemuScenario, clusters_touched, guest_requests, probe_requests,
    qemu_io_script)
from fleecesim.workloads.records import OP_READ, OP_WRITE

BINARIES = ("qemu-storage-daemon", "qemu-io", "qemu-img")
INSTALL_HINT = "install them with: apt-get install qemu-utils qemu-system-common (or run .ci/install-qemu.sh)"


def qemu_available() -> tuple[bool, str]:
    """(True, version) when qemu-storage-daemon, qemu-io and qemu-img run;
    else (False, what is missing and what to install)."""
    missing = [b for b in BINARIES if shutil.which(b) is None]
    if missing:
        return False, f"missing {', '.join(missing)}: {INSTALL_HINT}"
    try:
        out = subprocess.run(["qemu-storage-daemon", "--version"], capture_output=True,
                             text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as e:
        return False, f"qemu-storage-daemon --version failed ({e}); {INSTALL_HINT}"
    if out.returncode != 0:
        return False, f"qemu-storage-daemon --version exited {out.returncode}; {INSTALL_HINT}"
    return True, out.stdout.splitlines()[0].strip() if out.stdout else "unknown version"


# ---------------------------------------------------------------- helpers

def _run(cmd: list[str], timeout: float, what: str) -> subprocess.CompletedProcess:
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"{what} did not finish within {timeout:.0f}s: {' '.join(cmd)}") from None
    if p.returncode != 0:
        raise RuntimeError(f"{what} failed ({p.returncode}): {p.stderr.strip()[:500]}")
    return p


def _write_pattern_disk(path: Path, size: int, salt: int) -> None:
    """``size`` bytes where 4 KiB block b holds 512 u64 words
    0xA5 << 56 | salt << 40 | b << 9 | word — distinct per block, never zero."""
    words = ALIGN // 8
    per_chunk = 4096  # blocks per write: 16 MiB
    base = np.uint64(0xA5 << 56) | np.uint64((salt & 0xFFFF) << 40)
    w = np.arange(words, dtype=np.uint64)[None, :]
    nblocks = size // ALIGN
    with open(path, "wb") as f:
        for b0 in range(0, nblocks, per_chunk):
            b = np.arange(b0, min(nblocks, b0 + per_chunk), dtype=np.uint64)[:, None]
            f.write((base | (b << np.uint64(9)) | w).astype("<u8").tobytes())


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(8 * 1024 * 1024):
            h.update(chunk)
    return h.hexdigest()


def _first_mismatch(a: Path, b: Path, block: int = ALIGN) -> str:
    """Where two files first differ (one line), for the mismatch report."""
    sa, sb = a.stat().st_size, b.stat().st_size
    if sa != sb:
        return f"sizes differ: {a.name} {sa} vs {b.name} {sb}"
    n_diff, first = 0, None
    with open(a, "rb") as fa, open(b, "rb") as fb:
        off = 0
        while True:
            x, y = fa.read(1 << 20), fb.read(1 << 20)
            if not x:
                break
            if x != y:
                xa = np.frombuffer(x, np.uint8).reshape(-1, block)
                ya = np.frombuffer(y, np.uint8).reshape(-1, block)
                bad = np.nonzero((xa != ya).any(axis=1))[0]
                n_diff += len(bad)
                if first is None:
                    first = off + int(bad[0]) * block
            off += len(x)
    return f"{n_diff} of {sa // block} 4 KiB blocks differ, first at offset {first}"


def _trace_write_bytes(path: Path) -> dict:
    """Sum a ``bdrv_co_pwritev_part`` trace per node: the data bytes (and the
    zero-write bytes, flag BDRV_REQ_ZERO_WRITE=0x2) of the most-written node."""
    per_bs: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    rx = re.compile(r"bdrv_co_pwritev_part bs (\S+) offset (\d+) bytes (\d+) flags (0x[0-9a-f]+)")
    if path.exists():
        with open(path, errors="replace") as f:
            for line in f:
                m = rx.search(line)
                if not m:
                    continue
                acc = per_bs[m.group(1)]
                n = int(m.group(3))
                if int(m.group(4), 16) & 0x2:
                    acc[1] += n
                else:
                    acc[0] += n
                acc[2] += 1
    if not per_bs:
        return {"bytes": 0, "zero_bytes": 0, "requests": 0}
    data, zero, reqs = max(per_bs.values(), key=lambda v: v[0] + v[1])
    return {"bytes": data, "zero_bytes": zero, "requests": reqs}


_IO_DONE = re.compile(
    r"(wrote|read) (\d+)/(\d+) bytes at offset (\d+)\s*\n"
    r"[^\n]*? ops; [^\n(]*\([^\n)]* and ([0-9.]+|inf|nan) ops/sec\)")


def parse_qemu_io(out: str, req: np.ndarray, indices: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Per-request latency (s) from qemu-io's aio output, aligned with ``indices``.

    Each completion prints ``wrote|read N/N bytes at offset O`` and then
    ``..., 1 ops; TIME (RATE/sec and X ops/sec)`` where X = 1/latency (the
    TIME field has only 10 ms resolution, X has 4 decimals). Completions are
    matched to requests by (op, offset, length), first issued first.
    Returns (latencies with NaN for requests not seen, error lines)."""
    out = out.replace("qemu-io> ", "")
    pending: dict[tuple, deque] = defaultdict(deque)
    for k, i in enumerate(indices):
        r = req[i]
        pending[(int(r["op"]), int(r["offset"]), int(r["length"]))].append(k)
    lat = np.full(len(indices), np.nan)
    for m in _IO_DONE.finditer(out):
        op = OP_WRITE if m.group(1) == "wrote" else OP_READ
        q = pending.get((op, int(m.group(4)), int(m.group(3))))
        if not q:
            continue
        ops = float(m.group(5))
        lat[q.popleft()] = 1.0 / ops if ops > 0 else 0.0
    errors = [ln.strip() for ln in out.splitlines()
              if "failed" in ln or "error" in ln.lower() or "Invalid" in ln]
    return lat, errors


def _qemu_img_map_allocated(path: Path, timeout: float) -> int:
    """Bytes allocated with data in ``path`` itself (qemu-img map --output=json)."""
    p = _run(["qemu-img", "map", "--output=json", str(path)], timeout, "qemu-img map")
    total = 0
    for ext in json.loads(p.stdout):
        if ext.get("data") and ext.get("depth", 0) == 0 and "offset" in ext:
            total += int(ext["length"])
    return total


class _Daemon:
    """A qemu-storage-daemon (or other child) that is always reaped."""

    def __init__(self, name: str, cmd: list[str], logdir: Path):
        self.name = name
        self.log = logdir / f"{name}.log"
        self._logf = open(self.log, "wb")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self._logf,
                                     stderr=subprocess.STDOUT, start_new_session=True)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, n: int = 400) -> str:
        try:
            return self.log.read_text(errors="replace")[-n:].strip().replace("\n", " | ")
        except OSError:
            return ""

    def wait_path(self, path: Path, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not path.exists():
            if not self.alive():
                raise RuntimeError(f"{self.name} exited ({self.proc.returncode}): {self.log_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name}: {path.name} did not appear within {timeout}s")
            time.sleep(0.02)

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM (qemu-storage-daemon exits cleanly on it), then SIGKILL."""
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGTERM)
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=timeout)
            except ProcessLookupError:
                pass
        self._logf.close()


def _pctl(a: np.ndarray, q: float) -> float:
    a = a[np.isfinite(a)]
    return float(np.percentile(a, q)) if len(a) else float("nan")


# ---------------------------------------------------------------- the run

def run_qemu(sc: QemuScenario) -> dict:
    """Run ``sc`` on real QEMU; every daemon is killed on return or exception.

    Result keys: see ``RESULT_KEYS`` in fleecesim.qemu.__init__ (documented there).
    Raises UserError for a bad scenario or missing QEMU, RuntimeError when
    QEMU misbehaves (with the daemon's log tail)."""
    sc.validate()
    ok, why = qemu_available()
    if not ok:
        raise UserError(f"real QEMU is not available: {why}")
    qemu_version = why
    wall0 = time.monotonic()
    req = guest_requests(sc)
    t_start = sc.backup_start_s
    pre_idx = np.nonzero(req["time"] < t_start)[0]
    dur_idx = np.nonzero(req["time"] >= t_start)[0]
    copy_s = sc.disk_size / sc.target_bps
    budget = sc.timeout_s or (30.0 + 2 * (sc.pre_backup_s + sc.duration_s) + 4 * copy_s)
    deadline = time.monotonic() + budget

    def left(cap: float | None = None) -> float:
        rem = deadline - time.monotonic()
        if rem <= 0:
            raise RuntimeError(f"run exceeded its time budget of {budget:.0f}s")
        return rem if cap is None else min(rem, cap)

    if sc.workdir is not None:
        os.makedirs(sc.workdir, exist_ok=True)
    wd = Path(tempfile.mkdtemp(prefix="fleecesim-qemu-", dir=sc.workdir))
    # unix socket paths must fit in 108 bytes: keep them short
    sockdir = wd if len(str(wd)) < 70 else Path(tempfile.mkdtemp(prefix="fsq-"))

    daemons: list[_Daemon] = []
    qmps: list[QMPClient] = []
    with ExitStack() as stack:
        def cleanup():
            for q in qmps:
                q.close()
            for d in reversed(daemons):
                d.stop()
            if not sc.keep_workdir:
                shutil.rmtree(wd, ignore_errors=True)
                if sockdir != wd:
                    shutil.rmtree(sockdir, ignore_errors=True)
        stack.callback(cleanup)

        active = wd / "active.raw"
        target = wd / "target.raw"
        fleece = wd / "fleece.qcow2"
        pulled = wd / "pulled.raw"
        tgt_sock, main_sock = sockdir / "tgt.sock", sockdir / "main.sock"
        main_qmp = sockdir / "main.qmp"
        tgt_trace, pull_trace = wd / "target.trace", wd / "pull.trace"

        _write_pattern_disk(active, sc.disk_size, sc.seed)
        probe = sc.probe_rate > 0
        preq = probe_requests(sc) if probe else None
        if probe:
            _write_pattern_disk(wd / "probe.raw", PROBE_SIZE, sc.seed + 1)
        _run(["qemu-img", "create", "-q", "-f", "raw", str(target), str(sc.disk_size)],
             left(30), "qemu-img create")
        fleecing = sc.scheme.startswith("fleecing")
        if fleecing:
            _run(["qemu-img", "create", "-q", "-f", "qcow2", "-o", f"cluster_size={sc.cluster_size}",
                  str(fleece), str(sc.disk_size)], left(30), "qemu-img create")

        # ---- target daemon: target.raw over NBD, writes traced
        if sc.scheme != "fleecing-pull":
            td = _Daemon("target-daemon", [
                "qemu-storage-daemon",
                "--blockdev", f"driver=file,node-name=target,filename={target}",
                "--nbd-server", f"addr.type=unix,addr.path={tgt_sock}",
                "--export", "type=nbd,id=target-exp,node-name=target,name=target,writable=on",
                "--trace", f"enable=bdrv_co_pwritev_part,file={tgt_trace}",
            ], wd)
            daemons.append(td)
            td.wait_path(tgt_sock, left(15))

        # ---- main daemon
        cmd = [
            "qemu-storage-daemon",
            "--chardev", f"socket,id=mon,path={main_qmp},server=on,wait=off",
            "--monitor", "chardev=mon",
            "--blockdev", f"driver=file,node-name=disk,filename={active}",
            "--blockdev", "driver=raw,node-name=guest,file=disk",
            "--nbd-server", f"addr.type=unix,addr.path={main_sock},max-connections=0",
            "--export", "type=nbd,id=guest-exp,node-name=guest,name=guest,writable=on",
        ]
        if probe:
            cmd += ["--blockdev", f"driver=file,node-name=probe-disk,filename={wd / 'probe.raw'}",
                    "--blockdev", "driver=raw,node-name=probe,file=probe-disk",
                    "--export", "type=nbd,id=probe-exp,node-name=probe,name=probe,writable=on"]
        if sc.scheme != "fleecing-pull":
            cmd += [
                "--object", f"throttle-group,id=tg0,x-bps-write={int(sc.target_bps)}",
                "--blockdev", f"driver=nbd,node-name=tgt-nbd,server.type=unix,"
                              f"server.path={tgt_sock},export=target",
                "--blockdev", "driver=throttle,node-name=tgt,throttle-group=tg0,file=tgt-nbd",
            ]
        if fleecing:
            cmd += ["--blockdev", f"driver=qcow2,node-name=fleece,file.driver=file,"
                                  f"file.filename={fleece}"]
        md = _Daemon("main-daemon", cmd, wd)
        daemons.append(md)
        md.wait_path(main_sock, left(15))
        qmp = QMPClient(str(main_qmp), connect_timeout=left(15), alive=md.alive)
        qmps.append(qmp)

        def fail(msg: str) -> RuntimeError:
            return RuntimeError(f"{msg} | main-daemon log: {md.log_tail()}")

        if probe:
            t_b = sc.backup_start_s
            probe_idx = {"pre": np.nonzero(preq["time"] < t_b)[0],
                         "dur": np.nonzero(preq["time"] >= t_b)[0]}
        probe_lat = {"pre": [], "dur": []}

        def start_probe(phase: str, t0: float):
            """The hop probe's qemu-io for this phase (None without a probe)."""
            if not probe or not len(probe_idx[phase]):
                return None
            return start_guest(f"probe-{phase}", probe_idx[phase], t0, preq, "probe")

        def finish_probe(phase: str, started, planned_s: float) -> None:
            if started is None:
                return
            p_, out_, _ = started
            text_ = finish_guest(p_, out_, planned_s, f"hop probe ({phase})")
            lat_, _errs = parse_qemu_io(text_, preq, probe_idx[phase])
            probe_lat[phase] = [float(x) for x in lat_]

        def start_guest(name: str, idx: np.ndarray, t0: float, reqs=None, export="guest"):
            script = wd / f"{name}.qemu-io"
            script.write_text(qemu_io_script(req if reqs is None else reqs, idx, t0))
            out = wd / f"{name}.out"
            uri = f"nbd+unix:///{export}?socket={main_sock}"
            with open(script, "rb") as fin, open(out, "wb") as fout:
                p = subprocess.Popen(["qemu-io", "-f", "raw", uri], stdin=fin,
                                     stdout=fout, stderr=subprocess.STDOUT,
                                     start_new_session=True)
            ended: list[float] = []
            threading.Thread(target=lambda: (p.wait(), ended.append(time.monotonic())),
                             daemon=True).start()

            def _reap_guest():
                if p.poll() is None:
                    p.kill()
                    p.wait(timeout=5)
            stack.callback(_reap_guest)
            return p, out, ended

        def finish_guest(p: subprocess.Popen, out: Path, planned_s: float, what: str):
            try:
                p.wait(timeout=left(planned_s * 3 + copy_s * 2 + 30))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=5)
                raise fail(f"guest qemu-io ({what}) did not finish in time") from None
            text = out.read_text(errors="replace")
            if p.returncode != 0:
                raise fail(f"guest qemu-io ({what}) exited {p.returncode}: {text[-300:]}")
            return text

        # ---- guest phase before the backup
        pre_lat = np.empty(0)
        pre_errors: list[str] = []
        if len(pre_idx) or sc.pre_backup_s > 0:
            g0 = time.monotonic()
            pr = start_probe("pre", 0.0)
            p, out, ended = start_guest("guest-pre", pre_idx, 0.0)
            text = finish_guest(p, out, sc.pre_backup_s, "before backup")
            finish_probe("pre", pr, sc.pre_backup_s)
            pre_elapsed = (ended[0] if ended else time.monotonic()) - g0
            pre_lat, pre_errors = parse_qemu_io(text, req, pre_idx)
        else:
            pre_elapsed = 0.0
        # a copy of the active disk at t0 (the guest is idle and flushed; the
        # daemon writes through the page cache, which this read sees)
        t0_copy = wd / "active-t0.raw"
        shutil.copyfile(active, t0_copy)

        # ---- t0: start the backup / take the fleecing snapshot
        t0_wall = time.time()
        if fleecing:
            qmp.execute("blockdev-add", {"driver": "copy-before-write", "node-name": "fl-cbw",
                                         "file": "disk", "target": "fleece"})
            qmp.execute("blockdev-reopen", {"options": [
                {"driver": "raw", "node-name": "guest", "file": "fl-cbw"}]})
            t0_wall = time.time()
            qmp.execute("blockdev-add", {"driver": "snapshot-access", "node-name": "fl-access",
                                         "file": "fl-cbw"})
            snap_node = "fl-access"
            if sc.snapshot_read_max:
                qmp.execute("blockdev-add", {"driver": "blkdebug", "node-name": "fl-split",
                                             "image": "fl-access",
                                             "max-transfer": int(sc.snapshot_read_max)})
                snap_node = "fl-split"
        pull_proc = None
        if sc.scheme in ("backup", "fleecing-push"):
            qmp.execute("blockdev-backup", {
                "job-id": "backup0", "device": "disk" if sc.scheme == "backup" else snap_node,
                "target": "tgt", "sync": "full", "auto-finalize": True, "auto-dismiss": True})
        else:
            pull_bps = sc.target_bps if sc.pull_bps is None else sc.pull_bps
            pull_node = snap_node
            if pull_bps > 0:
                qmp.execute("object-add", {"qom-type": "throttle-group", "id": "tg-pull",
                                           "limits": {"bps-read": int(pull_bps)}})
                qmp.execute("blockdev-add", {"driver": "throttle", "node-name": "pull-throttle",
                                             "throttle-group": "tg-pull", "file": snap_node})
                pull_node = "pull-throttle"
            qmp.execute("block-export-add", {"type": "nbd", "id": "pull-exp", "node-name": pull_node,
                                             "name": "pull", "writable": False})
            pull_cmd = ["qemu-img", "--trace", f"enable=bdrv_co_pwritev_part,file={pull_trace}",
                        "convert", "-f", "raw", "-O", "raw",
                        f"nbd+unix:///pull?socket={main_sock}", str(pulled)]
            pull_log = open(wd / "pull.log", "wb")
            stack.callback(pull_log.close)
            pull_t0 = time.monotonic()
            pull_proc = subprocess.Popen(pull_cmd, stdin=subprocess.DEVNULL, stdout=pull_log,
                                         stderr=subprocess.STDOUT, start_new_session=True)

            def _reap_pull():
                if pull_proc.poll() is None:
                    pull_proc.kill()
                    pull_proc.wait(timeout=5)
            stack.callback(_reap_pull)

        # ---- guest phase during the backup
        g0 = time.monotonic()
        pr = start_probe("dur", t_start)
        p, out, ended = start_guest("guest-dur", dur_idx, t_start)

        backup_duration = float("nan")
        job_error = None
        if pull_proc is not None:
            try:
                pull_proc.wait(timeout=left(copy_s * 4 + 30))
            except subprocess.TimeoutExpired:
                raise fail("qemu-img convert (pull) did not finish in time") from None
            backup_duration = time.monotonic() - pull_t0
            if pull_proc.returncode != 0:
                raise fail(f"qemu-img convert (pull) exited {pull_proc.returncode}: "
                           f"{(wd / 'pull.log').read_text(errors='replace')[-300:]}")
        else:
            try:
                done = qmp.wait_event("BLOCK_JOB_COMPLETED", lambda d: d.get("device") == "backup0",
                                      timeout=left(copy_s * 4 + 30))
            except QMPError as e:
                raise fail(f"backup job: {e}") from None
            running = [e for e in qmp.events("JOB_STATUS_CHANGE")
                       if e["data"].get("id") == "backup0" and e["data"].get("status") == "running"]
            if not running:
                raise fail("backup job: no JOB_STATUS_CHANGE running event")
            backup_duration = event_time(done) - event_time(running[0])
            job_error = done["data"].get("error")
            job_done_wall = event_time(done)
        text = finish_guest(p, out, sc.duration_s, "during backup")
        finish_probe("dur", pr, sc.duration_s)
        time.sleep(0.05)  # let the reaper thread note the end time
        dur_elapsed = (ended[0] if ended else time.monotonic()) - g0
        lat, errors = parse_qemu_io(text, req, dur_idx)
        if sc.scheme == "fleecing-pull":
            job_done_wall = t0_wall + backup_duration

        # ---- shut down cleanly (flushes the trace logs and the qcow2 image)
        try:
            qmp.execute("quit", timeout=10)
        except QMPError:
            pass
        for d in reversed(daemons):
            d.stop(timeout=15)
        md_log = md.log_tail(2000)

        # ---- measure
        dur_req = req[dur_idx]
        is_w = dur_req["op"] == OP_WRITE
        wlat = lat[is_w]
        rlat = lat[dur_req["op"] == OP_READ]
        wr = dur_req[is_w]
        # writes issued (planned) before the job ended: approximate, planned times
        t_job_end_rel = t_start + (job_done_wall - t0_wall)
        in_window = wr[wr["time"] < t_job_end_rel]
        guest_clusters = clusters_touched(wr, sc.cluster_size)

        if sc.scheme == "fleecing-pull":
            tw = _trace_write_bytes(pull_trace)
            result_file = pulled
        else:
            tw = _trace_write_bytes(tgt_trace)
            result_file = target
        expected_sha = _sha256(t0_copy)
        got_sha = _sha256(result_file) if result_file.exists() else ""
        content_ok = bool(got_sha) and got_sha == expected_sha
        content_detail = "" if content_ok else (
            f"sha256 of {result_file.name} {got_sha[:16] or 'missing'} != active disk at t0 "
            f"{expected_sha[:16]}; " + (_first_mismatch(t0_copy, result_file)
                                        if result_file.exists() else "backup file missing"))
        fleece_clusters = None
        if fleecing:
            fleece_clusters = _qemu_img_map_allocated(fleece, left(60)) // sc.cluster_size

        result = {
            "scheme": sc.scheme,
            "qemu_version": qemu_version,
            "disk_size": sc.disk_size,
            "cluster_size": sc.cluster_size,
            "target_bps": sc.target_bps,
            "backup_duration_s": backup_duration,
            "backup_error": job_error,
            "requests": len(req),
            "writes_planned": int(is_w.sum()),
            "writes_done": int(np.isfinite(wlat).sum()),
            "reads_done": int(np.isfinite(rlat).sum()),
            "write_lat": [float(x) for x in wlat],
            "read_lat": [float(x) for x in rlat],
            "write_p50_s": _pctl(wlat, 50),
            "write_p99_s": _pctl(wlat, 99),
            "write_max_s": float(np.nanmax(wlat)) if np.isfinite(wlat).any() else float("nan"),
            "read_p50_s": _pctl(rlat, 50),
            "read_p99_s": _pctl(rlat, 99),
            "pre_write_lat": [float(x) for x in pre_lat[req[pre_idx]["op"] == OP_WRITE]] if len(pre_idx) else [],
            "probe_pre_lat": probe_lat["pre"],  # hop probe (4 KiB writes, own export)
            "probe_lat": probe_lat["dur"],
            "guest_errors": pre_errors + errors,
            "guest_planned_s": float(sc.duration_s),
            "guest_elapsed_s": dur_elapsed,
            "guest_pre_elapsed_s": pre_elapsed,
            "writes_in_backup_window": int(len(in_window)),
            "distinct_clusters_written_by_guest": int(len(guest_clusters)),
            "distinct_clusters_written_in_backup_window": int(len(clusters_touched(in_window, sc.cluster_size))),
            "fleecing_clusters_written": fleece_clusters,
            "target_write_bytes": tw["bytes"],
            "target_zero_write_bytes": tw["zero_bytes"],
            "target_write_requests": tw["requests"],
            "content_ok": content_ok,
            "content_detail": content_detail,
            "expected_sha256": expected_sha,
            "result_sha256": got_sha,
            "wall_time_s": time.monotonic() - wall0,
            "workdir": str(wd) if sc.keep_workdir else None,
        }
        if "error" in md_log.lower() and not result["guest_errors"]:
            result["daemon_log"] = md_log
        return result

