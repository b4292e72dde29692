"""Flash SSD (SATA or NVMe): no positioning; read and write have their own
access latency, bandwidth and controller IOPS cap; requests are served out
of order into the capacity earlier ones leave free (ps sharing by default,
devices/base.py).

No SLC/TurboWrite cliff is modelled: the presets' sources give the sustained
write rate after the SLC buffer only for the NVMe drive (970 EVO Plus 1 TB:
1,700 MB/s after a 42 GB buffer), far beyond what a fleecesim run writes."""
from __future__ import annotations

from .base import Device


class SSD(Device):
    kind = "ssd"
