import subprocess
import sys

import pytest

from fleecesim.config import load_config, resolve, variants
from fleecesim.errors import ConfigError


@pytest.mark.parametrize("raw,where", [
    ({"disk": {"size": "-1"}}, "disk.size"),
    ({"disk": {"size": 1000}}, "disk.size"),
    ({"disk": {"cluster-size": 3000}}, "disk.cluster-size"),
    ({"devices": {"local": {"kind": "ssd", "bandwidth": 0}}}, "devices.local"),
    ({"devices": {"local": {"preset": "floppy"}}}, "devices.local"),
    ({"backup": {"scheme": "tape"}}, "backup.scheme"),
    ({"backup": {"cache": {"size": "4KiB"}}}, "backup.cache.size"),
    ({"disk": {"colour": "red"}}, "disk.colour"),
    ({"workload": {"iops": "many"}}, "workload.iops"),
    ({"backup": {"max-workers": 0}}, "backup.max-workers"),
    ({"disk": {"device": "nope"}}, "disk.device"),
])
def test_bad_values_name_the_key(raw, where):
    with pytest.raises(ConfigError) as e:
        resolve(raw)
    msg = str(e.value)
    assert where in msg and "\n" not in msg


def test_set_overrides_and_scheme_list_makes_variants():
    cfg = resolve({}, ["backup.scheme=[backup, fleecing-push]", "backup.max-workers=8",
                       "disk.size=1GiB"])
    vs = variants(cfg)
    assert [n for n, _ in vs] == ["backup", "fleecing-push"]
    assert all(c.backup.max_workers == 8 and c.disk.size == 2**30 for _, c in vs)


def test_cluster_size_follows_qemu_rule():
    assert resolve({}).cluster_size == 64 * 1024
    assert resolve({"backup": {"min-cluster-size": "4MiB"}}).cluster_size == 4 * 2**20
    assert resolve({"backup": {"target": {"cluster-size": "2MiB"}}}).cluster_size == 2 * 2**20
    # max-chunk defaults to 1 MiB, but never below a cluster
    assert resolve({}).max_chunk == 2**20
    assert resolve({"backup": {"min-cluster-size": "4MiB"}}).max_chunk == 4 * 2**20


def test_preset_with_override():
    cfg = resolve({"devices": {"local": {"preset": "nvme", "queue-depth": 4}}})
    assert cfg.devices["local"].queue_depth == 4
    assert cfg.devices["local"].kind == "ssd"


def test_bundled_configs_validate():
    from tests.conftest import REPO
    for p in sorted((REPO / "configs").glob("*.yaml")):
        load_config(p)


@pytest.mark.parametrize("args,needle", [
    (["run", "configs/fleecing-vs-legacy.yaml", "--set", "disk.size=lots"], "disk.size"),
    (["run", "configs/fleecing-vs-legacy.yaml", "--set", "backup.foo=1"], "backup.foo"),
    (["run", "configs/fleecing-vs-legacy.yaml", "--set", "nodots"], "--set"),
    (["run", "no-such.yaml"], "no-such.yaml"),
    (["frobnicate"], "invalid choice"),
])
def test_cli_bad_input_one_line_exit_2(args, needle, tmp_path):
    from tests.conftest import REPO
    p = subprocess.run([sys.executable, "-m", "fleecesim", *args, "--out", str(tmp_path)]
                       if args[0] == "run" else [sys.executable, "-m", "fleecesim", *args],
                       capture_output=True, text=True, cwd=REPO)
    assert p.returncode == 2
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in p.stderr
    assert not any(tmp_path.iterdir())  # nothing half-written


def test_bad_yaml_names_the_line(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("disk:\n  size: 1GiB\n  x: [1,\n")
    with pytest.raises(ConfigError, match=r"bad.yaml:\d+"):
        load_config(f)


def test_variants_times_scheme_list():
    cfg = resolve({"backup": {"scheme": ["backup", "fleecing-push"]},
                   "variants": [{"name": "one", "set": {"backup.max-workers": 1}},
                                {"name": "push8", "set": {"backup.scheme": "fleecing-push",
                                                          "backup.max-workers": 8}}]})
    vs = variants(cfg)
    assert [n for n, _ in vs] == ["one/backup", "one/fleecing-push", "push8"]
    assert [c.backup.max_workers for _, c in vs] == [1, 1, 8]
    assert [c.backup.scheme for _, c in vs] == ["backup", "fleecing-push", "fleecing-push"]


def test_duplicate_variant_names_are_an_error():
    cfg = resolve({"variants": [{"name": "a"}, {"name": "a"}]})
    with pytest.raises(ConfigError, match="used twice"):
        variants(cfg)
