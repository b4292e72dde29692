"""A new user's mistakes: one line naming what is wrong, exit 2, nothing
written. Each row failed once: a traceback, a hang, a silent
default, or a misleading exit 1."""
import os

import pytest

from fleecesim.cli import main

SMALL = "disk: {size: 64MiB}\nrun: {warmup: 0.1s, tail: 0s}\n"


def _cli(tmp_path, capsys, text, *extra, name="c.yaml", raw=None):
    p = tmp_path / name
    if raw is not None:
        p.write_bytes(raw)
    else:
        p.write_text(text)
    out = tmp_path / "out"
    code = main(["run", str(p), "--quiet", "--out", str(out), *extra])
    err = capsys.readouterr().err.strip().splitlines()
    return code, err, out


BAD_CONFIGS = [
    ("", "the config is empty"),
    ("backup: {scheme: []}", "backup.scheme: expected a scheme or a non-empty list"),
    ("workload: {iops: .inf}", "workload.iops: Input should be a finite number"),
    ("devices: {local: {kind: ssd, latency: .nan, bandwidth: 1GiB/s}}",
     "devices.local.read-latency: expected a finite time"),
    ("name: /abs/path", "name: expected a plain name"),
    ("name: ../up", "name: expected a plain name"),
    ("run: {seed: -1}", "run.seed:"),
    ("disk: {size: 256MiB}\nworkload: {iops: 10, size: 1GiB}",
     "workload.size: a 1073741824-byte request does not fit"),
    ("workload: {iops: 10, size: {4KiB: 0}}", "workload.size: the weights must not all be 0"),
    ("disk: {size: 64MiB}\ndisk: {size: 1GiB}", ":2: not valid YAML (duplicate key 'disk')"),
    ("backup:\n  max-workers: 4\n  max-workers: 8", ":3: not valid YAML (duplicate key"),
    # dense state for 2^34 clusters: refused up front (sparse state would fit,
    # and the run would copy 900 TiB of data: tests/test_sparse.py covers it)
    ("disk: {size: 1PiB}\nrun: {state: dense}", "disk.size: 1024TiB in 64KiB clusters is"),
    ("disk: {cluster-size: 64KiB}", "disk.cluster-size: removed"),
    ("variants: [{name: v, set: {bogus: 1}}]", "variants: 'v': bogus: unknown key"),
]


@pytest.mark.parametrize("text,msg", BAD_CONFIGS)
def test_bad_config_is_one_line_exit_2_nothing_written(tmp_path, capsys, text, msg):
    code, err, out = _cli(tmp_path, capsys, text)
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith("fleecesim: error: ") and msg in err[0], err
    assert not out.exists()


def test_non_utf8_config(tmp_path, capsys):
    code, err, out = _cli(tmp_path, capsys, None, raw=b"disk: {size: \xff\xfe}\n")
    assert code == 2 and len(err) == 1 and "not UTF-8" in err[0] and not out.exists()


@pytest.mark.parametrize("arg,msg", [("=5", "--set =5: expected dotted.key=value"),
                                     ("backup..x=1", "expected dotted.key=value"),
                                     ("nokey", "expected dotted.key=value")])
def test_bad_set_names_itself(tmp_path, capsys, arg, msg):
    code, err, _ = _cli(tmp_path, capsys, SMALL, "--set", arg)
    assert code == 2 and len(err) == 1 and msg in err[0]


@pytest.mark.parametrize("out", ["/proc/nope", "FILE"])
def test_unwritable_out_fails_before_simulating(tmp_path, capsys, out):
    if out == "FILE":
        out = str(tmp_path / "a-file")
        open(out, "w").close()
    p = tmp_path / "c.yaml"
    p.write_text(SMALL)
    code = main(["run", str(p), "--quiet", "--out", out])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "cannot write results there" in err[0]


def test_ram_tier_larger_than_the_disk_is_clamped_with_a_warning(tmp_path, capsys):
    code, err, _ = _cli(tmp_path, capsys, SMALL + "backup: {cache: {ram: {size: 1GiB}}}\n",
                        "--no-save")
    assert code == 0
    assert any("backup.cache.ram.size" in e and "clamped to 67108864" in e for e in err), err


def test_a_variant_can_swap_a_device_preset():
    from fleecesim.config import resolve, variants
    cfg = resolve({"variants": [{"name": "hdd", "set": {"devices.local.preset": "hdd-7200"}},
                                {"name": "nvme", "set": {}}]})
    (_, hdd), (_, nvme) = variants(cfg)
    assert hdd.devices["local"].kind == "hdd" and nvme.devices["local"].kind == "ssd"


def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.startswith("fleecesim ")


def test_results_are_written_with_the_users_umask(tmp_path, capsys):
    old = os.umask(0o022)
    try:
        code, _err, out = _cli(tmp_path, capsys, SMALL)
    finally:
        os.umask(old)
    assert code == 0
    files = [p for p in out.rglob("*") if p.is_file()]
    assert files and all(p.stat().st_mode & 0o044 == 0o044 for p in files), \
        [oct(p.stat().st_mode) for p in files]


def test_a_guest_the_devices_cannot_serve_is_flagged():
    """Issue 14: an HDD at 500 random IOPS (it delivers ~60-130) had baseline
    write p99 in seconds and no warning. A guest well inside the devices'
    capacity is not flagged."""
    from fleecesim.run import simulate
    from tests.conftest import small
    hdd = simulate(small(**{"disk.size": "64MiB", "disk.device": "hdd",
                            "devices.hdd": {"preset": "hdd-7200"}, "workload.iops": 500,
                            "backup.scheme": "backup", "run.max-time": "10s"})).summary
    assert hdd["guest_overloaded"] and any("offered load" in w for w in hdd["warnings"])
    ok = simulate(small(**{"disk.size": "64MiB"})).summary
    assert not ok["guest_overloaded"] and ok["warnings"] == []
