"""``fleecesim calibrate``: fit the ssd model to measured figures, check it,
refuse bad input. The real measurement runs quickly (16 MiB, 0.2 s a job)
with whichever of fio / qemu-img is installed, and skips without either."""
from __future__ import annotations

import shutil

import pytest
import yaml

from fleecesim.calibrate import JOBS, MiB, calibrate, check, fit, sim_job
from fleecesim.cli import main
from fleecesim.config import DeviceSpec, resolve
from fleecesim.devices import build_device

KiB = 1024


def measured_from(spec: dict, span: int = 64 * MiB) -> dict:
    """What an exact fio would measure on the model device ``spec``."""
    out = {}
    for name, pat, rw, qd in JOBS:
        dev = build_device("x", DeviceSpec.model_validate(spec))
        bw, iops = sim_job(dev, pat, rw == "write", qd, 400 if pat == "seq" else 4000, span)
        out[name] = {"bw": bw, "iops": iops}
    return out


def test_fit_recovers_a_parallel_device():
    """nvme preset -> its jobs -> fit: bandwidth, IOPS cap and latency come
    back (latency = 1/IOPS_QD1 - 1/IOPS_QD32, the presets' own rule)."""
    meas = measured_from({"preset": "nvme"})
    dev, fitted = fit(meas)
    spec = DeviceSpec.model_validate(dev)
    assert spec.queue_depth == 32 and spec.sharing == "ps"
    assert spec.read_bandwidth == pytest.approx(3500e6, rel=0.01)
    assert spec.write_bandwidth == pytest.approx(3300e6, rel=0.01)
    assert spec.read_iops == pytest.approx(600000, rel=0.01)
    assert spec.read_latency == pytest.approx(50.96e-6, rel=0.02)
    assert spec.write_latency == pytest.approx(14.85e-6, rel=0.05)
    rows = check(dev, meas, 64 * MiB, fitted)
    assert all(r["ok"] for r in rows), rows
    assert {"rand-read-qd1", "rand-read-qd32", "seq-read-qd32"} <= set(fitted)


def test_fit_of_a_serial_device_uses_the_qd1_jobs():
    """Queue depth that does not raise throughput (buffered libaio is
    synchronous) -> one request at a time, fitted to the lone-request times:
    1/IOPS = lat + 4KiB/bw and 1MiB/BW = lat + 1MiB/bw."""
    lat, bw = 20e-6, 2e9
    t4, t1m = lat + 4 * KiB / bw, lat + MiB / bw
    meas = {}
    for name, pat, rw, qd in JOBS:
        t = t4 if pat == "rand" else t1m
        size = 4 * KiB if pat == "rand" else MiB
        meas[name] = {"iops": 1 / t, "bw": size / t}
    dev, fitted = fit(meas)
    spec = DeviceSpec.model_validate(dev)
    assert spec.queue_depth == 1 and spec.sharing == "fifo"
    assert spec.read_latency == pytest.approx(lat, rel=1e-3)
    assert spec.write_bandwidth == pytest.approx(bw, rel=1e-3)
    assert all(r["ok"] for r in check(dev, meas, 64 * MiB, fitted))


@pytest.mark.parametrize("args, what", [
    (["--size", "3MiB"], "--size"),
    (["--size", "100MiB"], "power of two"),
    (["--runtime", "soon"], "--runtime"),
    (["--runtime", "0s"], "--runtime"),
    (["--tool", "dd"], "--tool"),
    (["--name", "a b"], "--name"),
])
def test_bad_options_are_one_line_exit_2(tmp_path, capsys, args, what):
    assert main(["calibrate", str(tmp_path), "--out", str(tmp_path / "o.yaml"), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and what in err[0]


def test_existing_files_are_never_written(tmp_path, capsys):
    f = tmp_path / "precious.img"
    f.write_bytes(b"data")
    assert main(["calibrate", str(f), "--out", str(tmp_path / "o.yaml")]) == 2
    assert f.read_bytes() == b"data"
    assert "existing file" in capsys.readouterr().err
    assert main(["calibrate", str(tmp_path / "no" / "f")]) == 2


TOOL = "fio" if shutil.which("fio") else ("qemu-img" if shutil.which("qemu-img") else None)


@pytest.mark.skipif(TOOL is None, reason="neither fio nor qemu-img installed")
@pytest.mark.timeout(60)
def test_calibrate_a_file_here_and_use_the_fragment(tmp_path, capsys):
    out = tmp_path / "mydisk.yaml"
    rc = main(["calibrate", str(tmp_path), "--size", "16MiB", "--runtime", "0.2s",
               "--out", str(out), "--tool", TOOL])
    assert rc == 0
    assert [p.name for p in tmp_path.iterdir()] == ["mydisk.yaml"]  # test file removed
    frag = yaml.safe_load(out.read_text())
    assert list(frag["devices"]) == ["mydisk"]
    cfg = resolve({"devices": frag["devices"], "disk": {"size": "64MiB", "device": "mydisk"},
                   "backup": {"cache": {"device": "mydisk"}}})
    assert cfg.devices["mydisk"].kind == "ssd"
    r = calibrate(str(tmp_path), size="16MiB", runtime="0.1s", tool=TOOL)
    # what the fit was made from, the simulator reproduces
    for row in r["check"]:
        if row["fitted"]:
            assert row["ok"], row
    # the bandwidths always are; latency only where lat + size/bw describes the device
    assert sum(row["fitted"] for row in r["check"]) >= 2
