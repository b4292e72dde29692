"""Devices: physical resources with timing only (no data).

A device answers one question: a request of ``length`` bytes arriving at time
``now`` completes when? Queueing is analytic (a heap of slot-free times and a
shared bandwidth pipe), so a request costs one heap operation and no SimPy
process. See DESIGN.md, performance notes.
"""
from .base import Device, HDD, build_device
from .remote import RemoteDevice
from .presets import PRESETS

__all__ = ["Device", "HDD", "RemoteDevice", "build_device", "PRESETS"]
