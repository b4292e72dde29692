"""Devices: physical resources with timing only (no data).

A device answers one question: a request of ``length`` bytes arriving at time
``now`` completes when? Queueing is analytic (a heap of slot-free times and a
shared bandwidth pipe), so a request costs one heap operation and no SimPy
process. See DESIGN.md, performance notes. One module per device kind.
"""
from .base import Device
from .hdd import HDD, SeekCurve
from .remote import RemoteDevice, build_remote
from .presets import PRESETS
from .ram import RAM
from .ssd import SSD

KINDS = {"ram": RAM, "ssd": SSD, "hdd": HDD}


def build_device(name: str, spec):
    """Build a device from a resolved ``DeviceSpec`` (see fleecesim/config/devices.py)."""
    if spec.kind == "remote":
        return build_remote(name, spec, build_device)  # its backend is built here too
    dev = KINDS[spec.kind].from_spec(name, spec)
    # the filesystem on it clones extents for copy offload (devices/host.py: copy_method)
    dev.reflink = bool(spec.reflink)
    return dev


__all__ = ["Device", "HDD", "RAM", "SSD", "SeekCurve", "RemoteDevice", "build_device",
           "PRESETS", "KINDS"]
