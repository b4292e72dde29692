"""RAM: memcpy-speed, no positioning; transfers share the memory bus (ps)."""
from __future__ import annotations

from .base import Device


class RAM(Device):
    kind = "ram"
