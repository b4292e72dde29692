"""Device presets: the one place their numbers live, each with its source.

Values are raw config dicts (units as strings), validated like user input.
"""

PRESETS: dict[str, dict] = {
    # DDR4 memcpy-class throughput per VM thread; sub-microsecond access.
    "ram": {"kind": "ram", "latency": "1us", "bandwidth": "8GiB/s", "queue-depth": 64},
    # PCIe 3.0 x4 NVMe (e.g. Samsung 970 EVO datasheet: 3.4/2.5 GB/s seq,
    # ~80us QD1 4K random read latency as measured by fio reviews).
    "nvme": {"kind": "ssd", "latency": "80us", "bandwidth": "2.5GiB/s", "queue-depth": 32},
    # SATA III SSD (e.g. Samsung 870 EVO: 560/530 MB/s seq, ~100us QD1 latency),
    # NCQ depth 32.
    "sata-ssd": {"kind": "ssd", "latency": "100us", "bandwidth": "500MiB/s", "queue-depth": 32},
    # 7200 rpm SATA disk (e.g. WD Red Plus / Seagate IronWolf datasheets:
    # ~8.5ms average seek, ~180MiB/s sustained outer-zone transfer).
    "hdd-7200": {"kind": "hdd", "latency": "0.1ms", "bandwidth": "180MiB/s",
                 "seek": "8.5ms", "rpm": 7200},
    # NBD over 1 GbE: 941 Mbit/s TCP payload ~= 112 MiB/s; LAN RTT ~0.2ms;
    # 16 requests in flight (QEMU's NBD client limit); SATA SSD behind it.
    "nbd-1gbe": {"kind": "remote", "rtt": "0.2ms", "link-bandwidth": "112MiB/s",
                 "queue-depth": 16, "backend": {"preset": "sata-ssd"}},
    # NBD over 10 GbE: ~9.4 Gbit/s payload ~= 1.1 GiB/s; RTT ~0.1ms; NVMe behind it.
    "nbd-10gbe": {"kind": "remote", "rtt": "0.1ms", "link-bandwidth": "1.1GiB/s",
                  "queue-depth": 16, "backend": {"preset": "nvme"}},
    # NBD over a WAN link to an off-site backup server: 100 MiB/s, 20ms RTT, HDD pool.
    "nbd-wan": {"kind": "remote", "rtt": "20ms", "link-bandwidth": "100MiB/s",
                "queue-depth": 16, "backend": {"preset": "hdd-7200"}},
}
