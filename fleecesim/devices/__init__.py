"""Devices: physical resources with timing only (no data).

A device answers one question: a request of ``length`` bytes arriving at time
``now`` completes when? Queueing is analytic (a heap of slot-free times and a
shared bandwidth pipe), so a request costs one heap operation and no SimPy
process. See DESIGN.md, performance notes. One module per device kind.
"""
from .base import Device, build_device
from .hdd import HDD, SeekCurve
from .remote import RemoteDevice
from .presets import PRESETS
from .ram import RAM
from .ssd import SSD

KINDS = {"ram": RAM, "ssd": SSD, "hdd": HDD}

__all__ = ["Device", "HDD", "RAM", "SSD", "SeekCurve", "RemoteDevice", "build_device",
           "PRESETS", "KINDS"]
