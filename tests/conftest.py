from pathlib import Path

import pytest

from fleecesim.config import resolve

REPO = Path(__file__).resolve().parents[1]
SHARED_TRACES = REPO.parent / "shared" / "traces"


def small(**overrides):
    """A small scenario: 256 MiB disk on NVMe, a 1 GbE NBD target, a busy guest."""
    raw = {
        "disk": {"size": "256MiB"},
        "devices": {"local": {"preset": "nvme"}, "target": {"preset": "nbd-1gbe"}},
        "workload": {"iops": 2000, "mix": {"read": 0.5, "write": 0.5}},
        "backup": {"scheme": "fleecing-push"},
        "run": {"seed": 1, "warmup": "0.5s", "tail": "0.2s", "max-time": "120s"},
    }
    return resolve(raw, overrides)


def honoured(scheme, overrides: dict) -> dict:
    """``overrides`` without the backup.* keys that cannot act under ``scheme``
    and the other backup keys given (its sync mode, its cache tiers), which
    config validation rejects (BackupSpec.ACTS, config/rules.py): for tests
    that share options across schemes."""
    from fleecesim.config import BackupSpec, set_dotted
    from fleecesim.config.rules import inert
    raw = {}
    for k, v in overrides.items():
        if k.startswith("backup."):
            set_dotted(raw, k.removeprefix("backup."), v)
    spec = BackupSpec.model_validate({**raw, "scheme": scheme})
    return {k: v for k, v in overrides.items()
            if not k.startswith("backup.") or k == "backup.scheme"
            or inert(BackupSpec.ACTS, spec, {k.removeprefix("backup.")}) is None}


@pytest.fixture
def small_cfg():
    return small


@pytest.fixture(autouse=True)
def _headless(monkeypatch):
    monkeypatch.setenv("MPLBACKEND", "Agg")


def pytest_collection_modifyitems(config, items):
    """Tests against real QEMU (marker ``qemu``) run first, in their own order:
    their real half times a few seconds of I/O on the machine, and a clean-clone
    CI run measured fleecing-push's real write p50 at 2.0-2.15 ms (usual:
    0.67-0.71 ms) after the rest of the suite had run, while the same test
    passed alone and beside test_qemu.py in that clone. Measured before the
    suite's own load, the real side is the quiet machine the model is
    calibrated for."""
    items.sort(key=lambda item: item.get_closest_marker("qemu") is None)
