"""RAM: memcpy-speed, no positioning; transfers share the memory bus (ps)."""
from __future__ import annotations

from .base import Device


class RAM(Device):
    kind = "ram"

    @classmethod
    def from_spec(cls, name: str, spec) -> "RAM":
        return cls(name, spec.read_latency, spec.read_bandwidth, spec.queue_depth,
                   sharing=spec.sharing or "ps", write_latency=spec.write_latency,
                   write_bandwidth=spec.write_bandwidth, read_iops=spec.read_iops,
                   write_iops=spec.write_iops)
