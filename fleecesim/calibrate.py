"""``fleecesim calibrate PATH``: measure a disk (a file on it) the way a user
would, fit the SSD device model to the figures, write a config fragment,
and check that the model reproduces what was measured.

Jobs (as benchmarks/calibrate_presets.py runs them on the presets): sequential
1 MiB read and write, random 4 KiB read and write, each at queue depth 1 and 32.

Tools:

* fio (preferred): ``--ioengine=libaio --iodepth=QD --time_based
  --runtime=R --output-format=json``; ``--direct=1`` with ``--direct``. fio's
  manual (``iodepth``): "Even async engines may impose OS restrictions
  causing the desired depth not to be achieved. This may happen on Linux
  when using libaio and not setting direct=1, since buffered IO is not async
  on that OS" — without ``--direct`` QD32 measures what a buffered writer
  sees, about QD1.
* ``qemu-img bench`` (fallback, always there with QEMU): ``-c COUNT -d QD
  -s BS -S STEP [-w] -t writeback|none -i threads|native -f raw``; COUNT is
  sized from a short probe run to fill the runtime. It has no random mode:
  qemu-img.c bench_cb advances ``offset += step; offset %= image_size``, so a
  step of an odd number of 4 KiB blocks (coprime to the file's block count, a
  power of two) visits every block once a pass in a scattered order —
  "random" for a flash device or the page cache, not for a disk head.

Fit (an ``ssd`` device, devices/base.py Device: a lone request takes
``latency + max(length/bandwidth, 1/iops)``, the pipe delivers at most
``bandwidth`` and ``iops``), per direction:

* bandwidth = 1 MiB QD32 throughput (the QD1 one if higher: noise);
* iops cap = 4 KiB QD32 IOPS, kept only when it binds (below bandwidth/4 KiB);
* latency = 1/IOPS(4 KiB QD1) - max(4 KiB/bandwidth, 1/iops) — the rule
  devices/presets.py uses for the datasheet presets;
* queue-depth 32 (what was measured), sharing ps.

Then the simulator runs the same eight jobs on the fitted device (closed loop
of QD requests, ``sim_job``) and each is printed beside the measurement;
within ``TOLERANCE`` counts as reproduced. 1 MiB QD1 and QD32 4 KiB on a
device where QD32 is no faster than QD1 are not fitted and show what the
model cannot express (flagged, not tuned away).
"""
from __future__ import annotations

import heapq
import json
import math
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .errors import UserError

KiB, MiB = 1024, 1024 * 1024
QD_HIGH = 32
TOLERANCE = 0.15
JOBS = [(f"{pat}-{rw}-qd{qd}", pat, rw, qd) for pat in ("seq", "rand")
        for rw in ("read", "write") for qd in (1, QD_HIGH)]
BS = {"seq": MiB, "rand": 4 * KiB}
RAND_STRIDE_BLOCKS = 40503  # odd, so coprime with a power-of-two block count


# ---------------------------------------------------------------- measuring

def _prepare(path: Path, size: int) -> None:
    """Write ``size`` bytes of non-zero data (reads must hit real data, not a
    hole the filesystem answers without the device), then fsync."""
    chunk = (bytes(range(1, 256)) * (MiB // 255 + 1))[:MiB]
    with open(path, "wb") as f:
        for _ in range(size // MiB):
            f.write(chunk)
        f.flush()
        os.fsync(f.fileno())


def _fio(path: Path, size: int, job: tuple, runtime: float, direct: bool) -> dict:
    name, pat, rw, qd = job
    fio_rw = {("seq", "read"): "read", ("seq", "write"): "write",
              ("rand", "read"): "randread", ("rand", "write"): "randwrite"}[pat, rw]
    cmd = ["fio", f"--name={name}", f"--filename={path}", f"--size={size}",
           f"--rw={fio_rw}", f"--bs={BS[pat]}", f"--iodepth={qd}", "--ioengine=libaio",
           f"--direct={int(direct)}", "--time_based", f"--runtime={max(runtime, 0.1):g}s",
           "--randrepeat=1", "--norandommap", "--output-format=json"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=runtime * 4 + 60)
    if p.returncode != 0:
        raise RuntimeError(f"fio {name} failed ({p.returncode}): {p.stderr.strip()[-300:]}")
    d = json.loads(p.stdout[p.stdout.index("{"):])["jobs"][0][rw]
    if not d.get("total_ios"):
        raise RuntimeError(f"fio {name}: no I/O completed")
    return {"iops": float(d["iops"]), "bw": float(d["bw_bytes"]),
            "lat_s": float(d["lat_ns"]["mean"]) * 1e-9, "ios": int(d["total_ios"])}


def _qemu_img_bench(path: Path, size: int, job: tuple, runtime: float, direct: bool) -> dict:
    name, pat, rw, qd = job
    bs = BS[pat]
    step = bs if pat == "seq" else RAND_STRIDE_BLOCKS * bs
    step %= size

    def run(count: int) -> float:
        cmd = ["qemu-img", "bench", "-c", str(count), "-d", str(qd), "-s", str(bs),
               "-S", str(step), "-t", "none" if direct else "writeback",
               "-i", "native" if direct else "threads", "-f", "raw"]
        p = subprocess.run(cmd + (["-w"] if rw == "write" else []) + [str(path)],
                           capture_output=True, text=True, timeout=runtime * 10 + 60)
        m = re.search(r"Run completed in ([0-9.]+) seconds", p.stdout)
        if p.returncode != 0 or not m:
            raise RuntimeError(f"qemu-img bench {name} failed ({p.returncode}): "
                               f"{(p.stderr or p.stdout).strip()[-300:]}")
        return max(float(m.group(1)), 1e-6)

    probe = max(qd * 4, 64 if pat == "seq" else 512)
    t = run(probe)
    count = max(probe, int(probe * runtime / t))
    if t < runtime / 2:
        t = run(count)
    else:
        count = probe
    return {"iops": count / t, "bw": count * bs / t, "lat_s": qd * t / count, "ios": count}


def tool_available(tool: str) -> bool:
    return shutil.which("fio" if tool == "fio" else "qemu-img") is not None


def pick_tool(tool: str | None) -> str:
    """``tool`` if given and installed; else fio, else qemu-img."""
    if tool is not None:
        if tool not in ("fio", "qemu-img"):
            raise UserError(f"--tool: expected fio or qemu-img, got {tool!r}")
        if not tool_available(tool):
            raise UserError(f"--tool {tool}: not installed (apt-get install "
                            f"{'fio' if tool == 'fio' else 'qemu-utils'})")
        return tool
    for t in ("fio", "qemu-img"):
        if tool_available(t):
            return t
    raise UserError("neither fio nor qemu-img is installed: apt-get install fio "
                    "(or qemu-utils for qemu-img bench)")


def target_file(path: str) -> tuple[Path, bool]:
    """(file to measure, whether calibrate created it). PATH is a directory on
    the device (a temporary file goes there) or a file that does not exist
    yet; an existing file or a block device is refused: the write jobs would
    destroy its data."""
    p = Path(path).expanduser()
    if p.is_dir():
        fd, name = tempfile.mkstemp(prefix=".fleecesim-calibrate-", dir=p)
        os.close(fd)
        return Path(name), True
    if p.exists():
        mode = p.stat().st_mode
        kind = ("block device" if stat.S_ISBLK(mode) else "file" if stat.S_ISREG(mode)
                else "special file")
        raise UserError(f"{path}: an existing {kind}; calibrate writes to what it "
                        f"measures, so give a directory on that device (a temporary "
                        f"file is used and removed) or a new file name")
    if not p.parent.is_dir():
        raise UserError(f"{path}: directory {p.parent} does not exist")
    return p, True


def measure(path: Path, size: int, runtime: float, tool: str, direct: bool,
            progress=None) -> dict:
    """Run the eight jobs on ``path`` (prepared here); job name -> figures."""
    say = progress or (lambda m: None)
    _prepare(path, size)
    run = _fio if tool == "fio" else _qemu_img_bench
    out = {}
    for job in JOBS:
        say(f"{tool}: {job[0]} ...")
        out[job[0]] = run(path, size, job, runtime, direct)
    return out


# ---------------------------------------------------------------- fitting

DEPTH_GAIN = 1.2  # QD32 4 KiB IOPS above this multiple of QD1: the device runs requests in parallel


def fit(meas: dict) -> tuple[dict, list[str]]:
    """The ``ssd`` device entry (raw config values) fitted to ``meas``, and
    the jobs it was fitted to (reproduced by construction; the rest check it).

    When queue depth raises 4 KiB IOPS (either direction, by DEPTH_GAIN) the
    device runs requests in parallel: queue-depth 32, bandwidth from 1 MiB
    QD32, the IOPS cap from 4 KiB QD32, latency from 4 KiB QD1 (module doc).
    Otherwise (buffered I/O: libaio is synchronous; or a device that serves
    one request at a time) it is a single server, queue-depth 1, fitted to the
    two QD1 jobs: ``1/IOPS = latency + 4KiB/bw``, ``1MiB/BW = latency + 1MiB/bw``
    — the lone-request times a guest sees; QD32 is then shown, not fitted."""
    parallel = any(meas[f"rand-{rw}-qd{QD_HIGH}"]["iops"] > DEPTH_GAIN * meas[f"rand-{rw}-qd1"]["iops"]
                   for rw in ("read", "write"))
    dev = {"kind": "ssd"}
    fitted: list[str] = []
    for rw in ("read", "write"):
        iops1 = meas[f"rand-{rw}-qd1"]["iops"]
        if parallel:
            bw = max(meas[f"seq-{rw}-qd{QD_HIGH}"]["bw"], meas[f"seq-{rw}-qd1"]["bw"])
            iops32 = meas[f"rand-{rw}-qd{QD_HIGH}"]["iops"]
            cap = iops32 if iops32 < bw / (4 * KiB) else 0.0
            service = max(4 * KiB / bw, 1 / cap if cap else 0.0)
            lat = max(0.0, 1.0 / iops1 - service)
        else:
            t_small, t_big = 1.0 / iops1, MiB / meas[f"seq-{rw}-qd1"]["bw"]
            bw = (MiB - 4 * KiB) / (t_big - t_small) if t_big > t_small else MiB / t_big
            lat, cap = max(0.0, t_small - 4 * KiB / bw), 0.0
        if parallel:
            used = [f"seq-{rw}-qd{QD_HIGH}" if bw == meas[f"seq-{rw}-qd{QD_HIGH}"]["bw"]
                    else f"seq-{rw}-qd1"] + ([f"rand-{rw}-qd{QD_HIGH}"] if cap else [])
        else:
            used = [f"seq-{rw}-qd1"]
        fitted += used + ([f"rand-{rw}-qd1"] if lat > 0 else [])
        dev[f"{rw}-latency"] = f"{lat * 1e6:.3f}us"
        dev[f"{rw}-bandwidth"] = f"{bw / MiB:.1f}MiB/s"
        dev[f"{rw}-iops"] = round(cap)
    dev["queue-depth"] = QD_HIGH if parallel else 1
    dev["sharing"] = "ps" if parallel else "fifo"
    return dev, fitted


def sim_job(dev, pattern: str, write: bool, qd: int, n: int, span: int,
            bs: int | None = None, seed: int = 1) -> tuple[float, float]:
    """The simulator's fio: a closed loop of ``qd`` outstanding requests on
    ``dev`` (a built device), ``n`` in all. Returns (bytes/s, IOPS)."""
    import numpy as np
    bs = bs or BS[pattern]
    offs = None
    if pattern == "rand":
        offs = (np.random.default_rng(seed).integers(0, max(1, span // bs), n) * bs).tolist()
    heap = [0.0] * qd
    t_end = 0.0
    for i in range(n):
        now = heapq.heappop(heap)
        off = offs[i] if offs is not None else (i * bs) % max(span, bs)
        end = dev.submit(now, off, bs, write)
        heapq.heappush(heap, end)
        t_end = max(t_end, end)
    return n * bs / t_end, n / t_end


def check(device: dict, meas: dict, span: int, fitted: list[str] = ()) -> list[dict]:
    """Each job on the fitted ``device`` beside its measurement."""
    from .config import DeviceSpec
    from .devices import build_device
    spec = DeviceSpec.model_validate(device)
    rows = []
    for name, pat, rw, qd in JOBS:
        bw, iops = sim_job(build_device("calibrated", spec), pat, rw == "write", qd,
                           400 if pat == "seq" else 4000, span)
        sim, real = (bw, meas[name]["bw"]) if pat == "seq" else (iops, meas[name]["iops"])
        rows.append({"job": name, "unit": "MiB/s" if pat == "seq" else "IOPS",
                     "measured": real if pat == "rand" else real / MiB,
                     "sim": sim if pat == "rand" else sim / MiB,
                     "ratio": sim / real if real else math.nan,
                     "ok": bool(real) and abs(sim / real - 1) <= TOLERANCE,
                     "fitted": name in fitted})
    return rows


# ---------------------------------------------------------------- output

def fragment(name: str, device: dict, rows: list[dict], header: str) -> str:
    """The YAML file: a ``devices:`` block to paste, the check as comments."""
    import yaml
    lines = [f"# {ln}" if ln else "#" for ln in header.splitlines()]
    lines.append("#   job               measured         sim  sim/meas  unit")
    for r in rows:
        note = ("fitted to it" if r["fitted"] else "") + ("" if r["ok"] else "OUTSIDE 15%")
        lines.append(f"#   {r['job']:15} {r['measured']:10.1f} {r['sim']:11.1f}  {r['ratio']:8.2f}  "
                     f"{r['unit']:5}  {note}")
    body = yaml.safe_dump({"devices": {name: device}}, sort_keys=False,
                          default_flow_style=False)
    return "\n".join(lines) + "\n" + body


def _parse_runtime(s: str) -> float:
    from .units import parse_time
    try:
        v = float(parse_time(s))
    except (ValueError, TypeError) as e:
        raise UserError(f"--runtime: expected a time like '5s' or '500ms', got {s!r}") from e
    if not 0 < v <= 3600:
        raise UserError(f"--runtime: expected a time in (0, 1h], got {s!r}")
    return v


def _parse_size(s: str) -> int:
    from .units import parse_size
    try:
        v = int(parse_size(s))
    except (ValueError, TypeError) as e:
        raise UserError(f"--size: expected a size like '256MiB', got {s!r}") from e
    if v < 4 * MiB or v % MiB:
        raise UserError(f"--size: expected a whole number of MiB, at least 4MiB, got {s!r}")
    if v & (v - 1):
        raise UserError(f"--size: expected a power of two (the qemu-img stride "
                        f"visits every block of it), got {s!r}")
    return v


NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def add_calibrate_subcommand(subparsers) -> None:
    c = subparsers.add_parser(
        "calibrate", help="measure a disk (fio or qemu-img bench) and write a device entry",
        description="Measure sequential 1 MiB and random 4 KiB reads and writes at queue "
                    "depth 1 and 32 on a file at PATH, fit fleecesim's ssd device model, "
                    "write it as a config fragment (devices: NAME: {...}) and check the "
                    "simulator reproduces the measurement.")
    c.add_argument("path", help="a directory on the device to measure (a temporary file "
                                "is used and removed) or a new file name")
    c.add_argument("--name", default="mydisk", help="device name in the fragment (default "
                                                    "mydisk; 'local' replaces the default disk)")
    c.add_argument("--size", default="256MiB", help="test file size, a power of two "
                                                   "(default 256MiB)")
    c.add_argument("--runtime", default="5s", help="time per job, 8 jobs (default 5s)")
    c.add_argument("--out", help="fragment file (default NAME.yaml)")
    c.add_argument("--tool", choices=None, help="fio | qemu-img (default: fio if installed)")
    c.add_argument("--direct", action="store_true",
                   help="O_DIRECT (fio --direct=1, qemu-img bench -t none -i native): the "
                        "device, not the page cache")
    c.add_argument("--json", action="store_true", help="print the result as JSON")
    c.set_defaults(func=cmd_calibrate)


def calibrate(path: str, *, name: str = "mydisk", size: str = "256MiB",
              runtime: str = "5s", tool: str | None = None, direct: bool = False,
              progress=None) -> dict:
    """Measure, fit, check. Returns {device, measured, check, tool, ...}."""
    if not NAME_RE.match(name or ""):
        raise UserError(f"--name: expected a plain name (letters, digits, _.-), got {name!r}")
    nbytes, secs = _parse_size(size), _parse_runtime(runtime)
    tool = pick_tool(tool)
    f, created = target_file(path)
    try:
        free = shutil.disk_usage(f.parent).free
        if free < nbytes + 16 * MiB:
            raise UserError(f"{f.parent}: {free // MiB} MiB free, --size {size} needs more")
        t0 = time.monotonic()
        try:
            meas = measure(f, nbytes, secs, tool, direct, progress)
        except (OSError, RuntimeError, subprocess.SubprocessError, ValueError, KeyError) as e:
            msg = str(e).splitlines()[0] if str(e) else type(e).__name__
            if direct and tool == "qemu-img" and "Invalid argument" in msg:
                msg += " (O_DIRECT not supported on this filesystem? try without --direct)"
            raise UserError(f"measuring {f}: {msg}") from None
    finally:
        if created:
            try:
                f.unlink()
            except OSError:
                pass
    dev, fitted = fit(meas)
    rows = check(dev, meas, nbytes, fitted)
    version = ""
    try:
        exe = "fio" if tool == "fio" else "qemu-img"
        version = subprocess.run([exe, "--version"], capture_output=True, text=True,
                                 timeout=10).stdout.splitlines()[0].strip()
    except (OSError, subprocess.SubprocessError, IndexError):
        pass
    return {"name": name, "path": str(Path(path).resolve()), "tool": tool,
            "tool_version": version, "direct": direct, "size": nbytes, "runtime_s": secs,
            "measured": meas, "device": dev, "check": rows,
            "reproduced": all(r["ok"] for r in rows), "wall_s": time.monotonic() - t0,
            "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def cmd_calibrate(args) -> int:
    from .store import atomic_write_text
    say = None if args.json else (lambda m: print(m, file=sys.stderr, flush=True))
    out = Path(args.out) if args.out else Path(f"{args.name}.yaml")
    if out.exists() and out.is_dir():
        raise UserError(f"--out {out}: is a directory")
    if not out.parent.exists():
        raise UserError(f"--out {out}: directory {out.parent} does not exist")
    try:  # before seconds of measuring: the fragment is written atomically beside it
        import tempfile
        with tempfile.TemporaryFile(dir=out.parent):
            pass
    except OSError as e:
        raise UserError(f"--out {out}: cannot write in {out.parent} "
                        f"({e.strerror or e})") from None
    r = calibrate(args.path, name=args.name, size=args.size, runtime=args.runtime,
                  tool=args.tool, direct=args.direct, progress=say)
    header = (f"fleecesim calibrate {r['path']}: {r['tool_version'] or r['tool']}, "
              f"{'O_DIRECT' if r['direct'] else 'buffered (page cache)'}, "
              f"{r['size'] // MiB}MiB file, {r['runtime_s']:g}s a job, {r['when']}\n"
              f"Use: paste the devices: entry into your config and point a device at it\n"
              f"(disk.device: {r['name']}, backup.cache.device: {r['name']}), or calibrate\n"
              f"with --name local to replace the default local disk.\n"
              f"The simulator's fio on this device vs the measurement (ok within 15%):")
    text = fragment(r["name"], r["device"], r["check"], header)
    atomic_write_text(out, text)
    if args.json:
        print(json.dumps({**r, "out": str(out)}, indent=2))
    else:
        print(text, end="")
        print(f"\nwritten to {out}")
    if not r["reproduced"]:
        bad = ", ".join(x["job"] for x in r["check"] if not x["ok"])
        print(f"fleecesim: warning: the fitted model is more than 15% off on {bad} "
              f"(see the table)", file=sys.stderr)
    return 0
