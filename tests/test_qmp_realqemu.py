"""Every sequence `fleecesim qmp` emits, run on a real qemu-storage-daemon
(marker ``qemu``; skipped when QEMU is absent): each scheme the exporter
supports and each option that changes the QMP, on small images. What is
checked is what the simulation assumes: the backup equals the disk at t0
(sha256), read-once frees the fleecing image's space, a read outside the
snapshot's bitmap fails, and cbw-timeout gives up when the configured
QEMU's version (fleecesim/qemu/versions.py) says it does."""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from fleecesim.qemu.runner import _Daemon, _write_pattern_disk, qemu_available
from fleecesim.qemu.versions import cbw_timeout_seconds, has, parse
from fleecesim.qmp_export import Endpoints, node_options, qmp_steps, run_steps
from tests.conftest import small

QEMU_OK, QEMU_WHY = qemu_available()
KiB, MiB = 1024, 1024 * 1024
SIZE = 4 * MiB
CL = 64 * KiB

pytestmark = [pytest.mark.qemu, pytest.mark.timeout(60),
              pytest.mark.skipif(not QEMU_OK, reason=f"real QEMU not available: {QEMU_WHY}")]


def _qemu_version():
    if not QEMU_OK:
        return (0, 0)
    out = subprocess.run(["qemu-storage-daemon", "--version"], capture_output=True,
                         text=True, timeout=10).stdout
    return parse(re.search(r"version (\d+\.\d+)", out).group(1))


VERSION = _qemu_version()


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def allocated(path: Path) -> int:
    """Bytes the file takes on disk (qemu-img info's disk size)."""
    return os.stat(path).st_blocks * 512


class Qsd:
    """One qemu-storage-daemon: ``disk-file`` (active.raw, a pattern), under it
    ``disk`` (the node the plan backs up: raw file, a qcow2 format node, or a
    throttle on reads), and ``guest``, a raw node the guest writes through over
    NBD (export ``guest``), with detect-zeroes=unmap so a reopen that drops it
    shows. Sockets live in a short directory (unix path limit)."""

    def __init__(self, tmp: Path, *, disk: str = "raw", read_bps: int | None = None,
                 second_disk: bool = False):
        self.tmp = tmp
        self.sock = Path(tempfile.mkdtemp(prefix="fsq", dir="/tmp"))
        self.active = tmp / ("active.qcow2" if disk == "qcow2" else "active.raw")
        if disk == "qcow2":
            raw = tmp / "pattern.raw"
            _write_pattern_disk(raw, SIZE, salt=5)
            subprocess.run(["qemu-img", "convert", "-q", "-f", "raw", "-O", "qcow2", str(raw),
                            str(self.active)], check=True, timeout=30)
            base = [f"driver=file,node-name=disk-file,filename={self.active}",
                    "driver=qcow2,node-name=disk,file=disk-file"]
        else:
            _write_pattern_disk(self.active, SIZE, salt=5)
            base = [f"driver=file,node-name=disk-file,filename={self.active}"]
            base.append("driver=throttle,node-name=disk,throttle-group=tgr,file=disk-file"
                        if read_bps else "driver=raw,node-name=disk,file=disk-file")
        self.qmp = self.sock / "m.qmp"
        self.nbd = self.sock / "g.sock"
        cmd = ["qemu-storage-daemon",
               "--chardev", f"socket,id=mon,path={self.qmp},server=on,wait=off",
               "--monitor", "chardev=mon"]
        if read_bps:
            cmd += ["--object", f"throttle-group,id=tgr,x-bps-read={read_bps}"]
        for b in base:
            cmd += ["--blockdev", b]
        if second_disk:  # a second disk of the same VM: disk2 (raw), guest2 over NBD
            self.active2 = tmp / "active2.raw"
            _write_pattern_disk(self.active2, SIZE, salt=9)
            cmd += ["--blockdev", f"driver=file,node-name=disk2,filename={self.active2}",
                    "--blockdev", "driver=raw,node-name=guest2,file=disk2"]
        cmd += ["--blockdev", "driver=raw,node-name=guest,file=disk,detect-zeroes=unmap,"
                              "discard=unmap",
                "--nbd-server", f"addr.type=unix,addr.path={self.nbd},max-connections=0",
                "--export", "type=nbd,id=guest-exp,node-name=guest,name=guest,writable=on"]
        if second_disk:
            cmd += ["--export", "type=nbd,id=guest2-exp,node-name=guest2,name=guest2,writable=on"]
        self.d = _Daemon("qsd", cmd, tmp)
        from fleecesim.qemu.qmp import QMPClient
        try:
            self.d.wait_path(self.nbd, 15)
            self.client = QMPClient(str(self.qmp), alive=self.d.alive)
        except Exception:
            self.close()
            raise

    def close(self):
        try:
            if getattr(self, "client", None):
                self.client.close()
        finally:
            self.d.stop()
            shutil.rmtree(self.sock, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def file(self, name: str, fmt: str = "raw") -> Path:
        p = self.tmp / name
        subprocess.run(["qemu-img", "create", "-q", "-f", fmt, str(p), str(SIZE)], check=True,
                       timeout=30)
        return p

    def io(self, script: str, export: str = "guest", read_only: bool = False):
        """qemu-io over NBD: (exit code, output, seconds)."""
        t = time.monotonic()
        p = subprocess.run(["qemu-io", "-f", "raw"] + (["-r"] if read_only else []) +
                           [f"nbd+unix:///{export}?socket={self.nbd}"], input=script,
                           text=True, capture_output=True, timeout=30)
        return p.returncode, p.stdout + p.stderr, time.monotonic() - t

    def ends(self, **kw) -> Endpoints:
        e = Endpoints(disk_node="disk", attach="node:guest", nbd_server="existing",
                      export="fleecing", **kw)
        e.attach_options = node_options(self.client, "guest")
        e.disk_driver = node_options(self.client, "disk")["driver"]
        return e

    def snapshot_uri(self) -> str:
        return f"nbd+unix:///fleecing?socket={self.nbd}"

    def node_names(self) -> set[str]:
        return {n["node-name"] for n in self.client.execute("query-named-block-nodes",
                                                            {"flat": True})}


def guest_writes(q: Qsd, clusters, pattern: int = 0x40, export: str = "guest") -> None:
    script = "\n".join(f"write -P 0x{pattern + i % 64:02x} {c * CL} 64k"
                       for i, c in enumerate(clusters)) + "\nflush\n"
    rc, out, _ = q.io(script, export=export)
    assert rc == 0 and "failed" not in out, out


WRITTEN = [1, 5, 9, 17, 33, 40, 51, 60]  # clusters the guest overwrites after t0


# ---------------------------------------------------------------- push / backup

@pytest.mark.parametrize("scheme, opts", [
    ("backup", {}),
    ("legacy-backup", {}),
    ("fleecing-push", {}),
    ("fleecing-push", {"backup.max-workers": 4, "backup.max-chunk": "128KiB"}),
    ("fleecing-push", {"backup.discard-source": True}),
])
def test_push_backs_up_t0(scheme, opts, tmp_path):
    cfg = small(**{"disk.size": SIZE, "backup.scheme": scheme, "backup.speed": "4MiB/s",
                   **opts})
    if opts.get("backup.discard-source") and not has(VERSION, "discard-source"):
        pytest.skip(f"discard-source needs QEMU >= 9.1; installed: {VERSION}")
    with Qsd(tmp_path) as q:
        fleece, target = q.file("f.qcow2", "qcow2"), q.file("t.raw")
        plan = qmp_steps(cfg, q.ends(fleece=str(fleece), target=str(target)), VERSION)
        t0 = tmp_path / "t0.raw"

        def on_command(step, _ret):
            if step.execute == "blockdev-backup":  # t0 has passed, the guest is idle
                shutil.copyfile(q.active, t0)
                guest_writes(q, WRITTEN)
        (done,) = run_steps(q.client, plan.steps, timeout=30, on_command=on_command,
                            on_error=plan.on_error)
        assert done["data"].get("error") is None, done
        assert sha(target) == sha(t0) != sha(q.active)
        assert q.node_names() == {"disk-file", "disk", "guest"}  # all cleaned up
        # the reopens kept the guest node's own options
        assert node_options(q.client, "guest").get("detect-zeroes") == "unmap"


def test_two_disks_in_one_grouped_transaction(tmp_path):
    """Two disks of one VM: their jobs start in one transaction (completion-mode
    grouped), so both backups are of the same t0."""
    cfg = small(**{"disk.size": SIZE, "backup.scheme": "backup", "backup.speed": "4MiB/s"})
    with Qsd(tmp_path, second_disk=True) as q:
        t1, t2 = q.file("t1.raw"), q.file("t2.raw")
        ends = q.ends(target=str(t1))
        ends.more_disks = [("disk2", str(t2))]
        plan = qmp_steps(cfg, ends, VERSION)
        c1, c2 = tmp_path / "c1.raw", tmp_path / "c2.raw"

        def on_command(step, _ret):
            if step.execute == "transaction":
                shutil.copyfile(q.active, c1)
                shutil.copyfile(q.active2, c2)
                guest_writes(q, WRITTEN)
                guest_writes(q, WRITTEN, export="guest2")
        done = run_steps(q.client, plan.steps, timeout=30, on_command=on_command,
                         on_error=plan.on_error)
        assert len(done) == 2 and not any(e["data"].get("error") for e in done)
        assert sha(t1) == sha(c1) != sha(q.active)
        assert sha(t2) == sha(c2) != sha(q.active2)
        assert not {"fs-target-0", "fs-target-1"} & q.node_names()


def test_incremental_backup_with_bitmap(tmp_path):
    """A full backup starts bitmap b0 in its transaction; after guest writes,
    sync=incremental over a copy of the full backup gives the disk at the second
    t0, and the job clears b0 (bitmap-mode on-success)."""
    with Qsd(tmp_path, disk="qcow2") as q:
        full = q.file("full.raw")
        cfg = small(**{"disk.size": SIZE, "backup.scheme": "backup"})
        (done,) = run_steps(q.client, qmp_steps(cfg, q.ends(target=str(full), bitmap="b0", job_id="full"),
                                                VERSION).steps, timeout=30)
        assert done["data"].get("error") is None
        guest_writes(q, WRITTEN)
        inc = tmp_path / "inc.raw"
        shutil.copyfile(full, inc)
        t1 = tmp_path / "t1.raw"
        subprocess.run(["qemu-img", "convert", "-U", "-q", "-O", "raw", str(q.active),
                        str(t1)], check=True, timeout=30)
        cfg = small(**{"disk.size": SIZE, "backup.scheme": "backup",
                       "backup.sync": "incremental"})
        (done,) = run_steps(q.client, qmp_steps(cfg, q.ends(target=str(inc), bitmap="b0", job_id="inc"),
                                                VERSION).steps, timeout=30)
        assert done["data"].get("error") is None
        assert sha(inc) == sha(t1) != sha(full)
        (bm,) = [b for n in q.client.execute("query-named-block-nodes", {"flat": True})
                 if n["node-name"] == "disk" for b in n.get("dirty-bitmaps", [])]
        assert bm["name"] == "b0" and bm["count"] == 0


# ---------------------------------------------------------------- pull

def test_pull_with_client_trim_frees_the_fleecing_image(tmp_path):
    """Read-once on real QEMU: the guest overwrites clusters (their old data
    goes to the fleecing image), the client reads them and TRIMs them on the
    export; the fleecing image gives the space back and the cluster is no
    longer readable. The full read of the snapshot equals t0."""
    cfg = small(**{"disk.size": SIZE, "backup.scheme": "fleecing-pull",
                   "backup.client.discard": True})
    with Qsd(tmp_path) as q:
        fleece = q.file("f.qcow2", "qcow2")
        plan = qmp_steps(cfg, q.ends(fleece=str(fleece)), VERSION)
        t0 = tmp_path / "t0.raw"
        seen = {}

        def on_command(step, _ret):
            if step.execute in ("qom-set", "blockdev-reopen") and "t0" not in seen:
                shutil.copyfile(q.active, t0)
                seen["t0"] = True

        def on_pause(_step):
            seen["before"] = allocated(fleece)
            guest_writes(q, WRITTEN)
            seen["written"] = allocated(fleece)
            pulled = tmp_path / "pulled.raw"
            subprocess.run(["qemu-img", "convert", "-q", "-f", "raw", "-O", "raw",
                            q.snapshot_uri(), str(pulled)], check=True, timeout=30)
            seen["pulled"] = sha(pulled)
            rc, out, _ = q.io("\n".join(f"discard {c * CL} 64k" for c in WRITTEN) + "\n",
                              export="fleecing")
            assert rc == 0 and "failed" not in out, out
            seen["trimmed"] = allocated(fleece)
            _rc, seen["reread"], _ = q.io(f"read {WRITTEN[0] * CL} 64k\n", export="fleecing",
                                          read_only=True)
        run_steps(q.client, plan.steps, timeout=30, on_command=on_command, on_pause=on_pause)
        assert seen["pulled"] == sha(t0) != sha(q.active)
        saved = len(WRITTEN) * CL
        assert seen["written"] - seen["before"] >= saved       # the old data went there
        # and left again: back to the size before the writes, but for the qcow2
        # metadata the first writes allocated: an L2 table and, when the
        # refcount table grows, a refcount block (each at most one qcow2
        # cluster; a partly written one counts the host blocks written)
        assert seen["trimmed"] - seen["before"] <= 2 * CL < saved, seen
        # read-once: gone for good (snapshot-access's EACCES reaches an NBD
        # client as EINVAL: nbd/server.c system_errno_to_nbd_errno)
        assert "read failed" in seen["reread"], seen["reread"]
        assert q.node_names() == {"disk-file", "disk", "guest"}


def test_pull_without_trim_keeps_the_fleecing_image(tmp_path):
    """The same without backup.client.discard: the export is read-only, the
    fleecing image has discard=ignore and keeps every saved cluster."""
    cfg = small(**{"disk.size": SIZE, "backup.scheme": "fleecing-pull"})
    with Qsd(tmp_path) as q:
        fleece = q.file("f.qcow2", "qcow2")
        plan = qmp_steps(cfg, q.ends(fleece=str(fleece)), VERSION)
        seen = {}

        def on_pause(_step):
            guest_writes(q, WRITTEN)
            seen["written"] = allocated(fleece)
            seen["trim"] = q.io(f"discard {WRITTEN[0] * CL} 64k\n", export="fleecing")
            seen["after"] = allocated(fleece)
        run_steps(q.client, plan.steps, timeout=30, on_pause=on_pause)
        assert seen["trim"][0] != 0 and "Permission denied" in seen["trim"][1]  # read-only
        assert seen["after"] == seen["written"]


def _dirty_extents(q: Qsd, bitmap: str) -> list[tuple[int, int]]:
    """The export's qemu:dirty-bitmap:NAME context as (offset, length) runs
    (qemu-img map with x-dirty-bitmap reports dirty as not data, as QEMU's
    iotests read it)."""
    opts = (f"driver=nbd,server.type=unix,server.path={q.nbd},export=fleecing,"
            f"x-dirty-bitmap=qemu:dirty-bitmap:{bitmap}")
    out = subprocess.run(["qemu-img", "map", "--output=json", "--image-opts", opts],
                         capture_output=True, text=True, timeout=30, check=True).stdout
    return [(e["start"], e["length"]) for e in json.loads(out) if not e["data"]]


def test_pull_incremental_with_bitmap(tmp_path):
    """A previous backup left bitmap b0 (the guest wrote some clusters since);
    the pull freezes it at t0 as b0.t0, exports it, and the client copies only
    the dirty ranges over the previous backup: the result equals t0. A read
    outside the bitmap fails; b0 restarts empty at t0 and records the writes
    made during the backup."""
    with Qsd(tmp_path, disk="qcow2") as q:
        prev = tmp_path / "prev.raw"
        q.client.execute("block-dirty-bitmap-add", {"node": "disk", "name": "b0",
                                                    "persistent": True})
        subprocess.run(["qemu-img", "convert", "-U", "-q", "-O", "raw", str(q.active),
                        str(prev)], check=True, timeout=30)  # the previous full backup
        before = [2, 3, 20, 50]
        guest_writes(q, before, pattern=0x10)
        cfg = small(**{"disk.size": SIZE, "backup.scheme": "fleecing-pull",
                       "backup.sync": "incremental"})
        plan = qmp_steps(cfg, q.ends(fleece=str(q.file("f.qcow2", "qcow2")), bitmap="b0"),
                         VERSION)
        t0 = tmp_path / "t0.raw"
        seen = {}

        def on_command(step, _ret):
            if step.execute in ("qom-set", "blockdev-reopen") and "t0" not in seen:
                subprocess.run(["qemu-img", "convert", "-U", "-q", "-O", "raw",
                                str(q.active), str(t0)], check=True, timeout=30)
                seen["t0"] = True

        def on_pause(_step):
            guest_writes(q, [3, 21, 50], pattern=0x70)  # during the backup
            ext = _dirty_extents(q, "b0.t0")
            seen["dirty"] = sum(n for _o, n in ext)
            seen["ext"] = ext
            out = tmp_path / "inc.raw"
            shutil.copyfile(prev, out)
            with open(out, "r+b") as f:
                for off, n in ext:
                    piece = tmp_path / "piece.raw"
                    src = (f"driver=raw,offset={off},size={n},file.driver=nbd,"
                           f"file.server.type=unix,file.server.path={q.nbd},"
                           f"file.export=fleecing")
                    subprocess.run(["qemu-img", "convert", "-q", "--image-opts", src, "-O",
                                    "raw", str(piece)], check=True, timeout=30)
                    f.seek(off)
                    f.write(piece.read_bytes()[:n])
            seen["inc"] = sha(out)
            _rc, seen["outside"], _ = q.io(f"read {10 * CL} 64k\n", export="fleecing",
                                           read_only=True)
        run_steps(q.client, plan.steps, timeout=30, on_command=on_command, on_pause=on_pause)
        assert seen["dirty"] == len(before) * CL
        if seen["inc"] != sha(t0):
            a, b = (tmp_path / "inc.raw").read_bytes(), t0.read_bytes()
            bad = [i for i in range(SIZE // CL) if a[i * CL:(i + 1) * CL] != b[i * CL:(i + 1) * CL]]
            raise AssertionError(f"clusters differing from t0: {bad}; dirty: {seen['ext']}")
        assert sha(t0) != sha(prev)
        assert "read failed" in seen["outside"], seen["outside"]  # EACCES, as EINVAL over NBD
        bms = {b["name"]: b["count"] for n in q.client.execute(
            "query-named-block-nodes", {"flat": True}) if n["node-name"] == "disk"
            for b in n.get("dirty-bitmaps", [])}
        assert bms == {"b0": 3 * CL}  # b0.t0 removed; b0 holds the writes since t0


# ---------------------------------------------------------------- cbw-timeout

COPY_S = 2.0  # a 64 KiB copy-before-write read behind a 32 KiB/s read throttle


def _timed_cbw_write(tmp_path, timeout_s: int, on_error: str):
    """Pull fleecing with the disk's reads throttled so one cluster's
    copy-before-write takes ~2 s; the guest writes one cluster: (rc, output,
    seconds less qemu-io's start-up, the snapshot's read of it afterwards)."""
    cfg = small(**{"disk.size": SIZE, "backup.scheme": "fleecing-pull",
                   "backup.cbw-timeout": f"{timeout_s}s", "backup.on-cbw-error": on_error})
    with Qsd(tmp_path, read_bps=int(64 * KiB / COPY_S)) as q:
        plan = qmp_steps(cfg, q.ends(fleece=str(q.file("f.qcow2", "qcow2"))), VERSION)
        seen = {}

        def on_pause(_step):
            # fill the throttle's bucket; this read passes at once, so its time
            # is qemu-io's own start-up and NBD connect, taken off the write's
            seen["base"] = q.io("read 0 64k\n", read_only=True)[2]
            rc, out, secs = q.io(f"write -P 0x77 {8 * CL} 64k\n")
            seen["write"] = (rc, out, secs - seen["base"])
            seen["raw"] = secs
            seen["snap"] = q.io(f"read -P 0x00 {8 * CL} 64k\n", export="fleecing",
                                read_only=True)[1]
        run_steps(q.client, plan.steps, timeout=30, on_pause=on_pause)
        return seen


@pytest.mark.parametrize("timeout_s", [1, 4, 5])
def test_cbw_timeout_break_guest_write_as_the_version_says(timeout_s, tmp_path):
    """The effective timeout is qemu/versions.py's for the installed QEMU: 4 s
    lets the 2 s copy finish; 1 s gives up after 1 s; 5 s gives up after
    0.705 s before 9.1 (uint32 nanoseconds) and lets the copy finish after."""
    eff = cbw_timeout_seconds(VERSION, timeout_s)
    seen = _timed_cbw_write(tmp_path, timeout_s, "break-guest-write")
    rc, out, secs = seen["write"]
    if eff and eff < COPY_S:
        assert "write failed" in out, out
        # never before the timeout (the whole time), soon after it (start-up off)
        assert seen["raw"] > eff and secs < eff + 0.3, (seen["raw"], secs, eff)
    else:
        assert "write failed" not in out, out
        assert seen["raw"] > COPY_S * 0.8 and secs < COPY_S + 0.5, (seen["raw"], secs)


def test_cbw_timeout_break_snapshot_breaks_the_snapshot_not_the_write(tmp_path):
    eff = cbw_timeout_seconds(VERSION, 5)
    seen = _timed_cbw_write(tmp_path, 5, "break-snapshot")
    rc, out, secs = seen["write"]
    assert "write failed" not in out, out
    if eff < COPY_S:  # timed out: the guest goes on, the snapshot is gone
        assert secs < eff + 0.3
        assert "read failed" in seen["snap"], seen["snap"]
    else:
        assert "read failed" not in seen["snap"], seen["snap"]


def test_push_that_fails_runs_the_error_clean_up(tmp_path):
    """break-snapshot with a copy-before-write that times out fails the push
    job (its reads of the snapshot get EACCES); the on-error steps remove every
    node the plan added and put the guest back on its disk."""
    cfg = small(**{"disk.size": SIZE, "backup.scheme": "fleecing-push",
                   "backup.cbw-timeout": "1s", "backup.on-cbw-error": "break-snapshot",
                   "backup.speed": "64KiB/s"})
    with Qsd(tmp_path, read_bps=int(64 * KiB / COPY_S)) as q:
        plan = qmp_steps(cfg, q.ends(fleece=str(q.file("f.qcow2", "qcow2")),
                                     target=str(q.file("t.raw"))), VERSION)

        def on_command(step, _ret):
            if step.execute == "blockdev-backup":
                q.io(f"write -P 0x77 {40 * CL} 64k\n")
        (done,) = run_steps(q.client, plan.steps, timeout=40, on_command=on_command,
                            on_error=plan.on_error)
        assert done["data"].get("error")
        assert q.node_names() == {"disk-file", "disk", "guest"}
        assert q.client.execute("query-block-jobs") == []
