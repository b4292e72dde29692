"""Device presets: the one place their numbers live, each with its source.

Values are raw config dicts (units as strings), validated like user input.
``benchmarks/calibrate_presets.py`` runs fio-like jobs on each preset and
prints them beside the figures cited here (tests/test_calibration.py holds
them within 10 %). SSD latencies are derived so that a lone 4 KiB request
reproduces the datasheet's QD1 IOPS:
``latency = 1/IOPS_QD1 - max(4KiB/bandwidth, 1/IOPS_QD32)``.
"""

PRESETS: dict[str, dict] = {
    # NOT sourced: sub-microsecond access and 8 GiB/s of memcpy per VM thread
    # are the model's own round numbers (no published single-thread memcpy
    # figure was checked for them).
    "ram": {"kind": "ram", "latency": "1us", "bandwidth": "8GiB/s", "queue-depth": 64},
    # Samsung 970 EVO Plus 1 TB (PCIe 3.0 x4 NVMe), Samsung's specification as
    # tabled in digit.in's review and cdrinfo's launch note: sequential read
    # 3,500 MB/s, write 3,300 MB/s (within TurboWrite; 1,700 MB/s after the
    # 42 GB SLC buffer, not modelled); 4 KiB random QD1 19k read / 60k write
    # IOPS, QD32 600k read / 550k write IOPS.
    #   read latency  = 1/19k - 1/600k = 50.96us; write = 1/60k - 1/550k = 14.85us
    "nvme": {"kind": "ssd", "read-latency": "50.96us", "write-latency": "14.85us",
             "read-bandwidth": "3500MB/s", "write-bandwidth": "3300MB/s",
             "read-iops": 600000, "write-iops": 550000, "queue-depth": 32},
    # Samsung 870 EVO 1 TB (SATA 6 Gb/s), Samsung's figures as quoted by
    # KitGuru's review: sequential 560 MB/s read, 530 MB/s write; 4 KiB random
    # QD1 13,000 read / 36,000 write IOPS, QD32 98,000 read / 88,000 write IOPS
    # (KitGuru measured 561/531 MB/s and 94,003/84,058 IOPS). NCQ depth 32.
    #   read latency  = 1/13k - 1/98k = 66.72us (4KiB/560MB/s = 7.3us < 1/98k)
    #   write latency = 1/36k - 1/88k = 16.41us
    "sata-ssd": {"kind": "ssd", "read-latency": "66.72us", "write-latency": "16.41us",
                 "read-bandwidth": "560MB/s", "write-bandwidth": "530MB/s",
                 "read-iops": 98000, "write-iops": 88000, "queue-depth": 32},
    # WD Ultrastar DC HC310 6 TB (HUS726T6TALE6L4), 3.5-inch 7200 rpm SATA
    # 6 Gb/s enterprise/NAS drive. From WD's "Ultrastar DC HC310 Hard Disk
    # Drive Specification" (OEM spec, rev 1.4, 18 Sep 2018) §4.5.1, as read:
    # average seek 7.4 ms read / 8.2 ms write, single-track seek 0.23 ms read
    # / 0.32 ms write (without command overhead, including settling),
    # 7200 rpm = 8.33 ms a turn (4.16 ms average latency).
    # From WD's HC310 data sheet, NOT re-read here (check before relying on
    # them): 256 MB buffer, 255 MB/s sustained transfer rate (6 TB model, the
    # outer zone); capacity 6 TB.
    # NOT sourced for this drive: the full-stroke seek (the spec's
    # full-stroke table was not reached) is the average times the 7K320
    # spec's full-stroke/average ratio (20/12 read, 22/12 write): 12.3 ms /
    # 15.0 ms; the inner-zone rate is half the outer one, the textbook figure
    # for zoned recording ("the inner zone having about half the sectors per
    # track ... of the outer zone", Mueller, Upgrading and Repairing PCs,
    # "media transfer rate"; Hitachi's Deskstar 7K500 spec table 10 shows the
    # same, 31.0 of 64.8 MB/s sustained in zone 29 vs zone 0) — no
    # measurement of this drive's inner zone was found.
    # Write cache on at the buffer's size: drives ship with WCE set (see
    # devices/hdd.py; the same spec's §9.8 "Write Cache Function", SET
    # FEATURES EF/02 enable, EF/82 disable, table 98); set write-cache: 0 to
    # model a drive with WCE off.
    # Interface 600 MB/s: SATA 6 Gb/s after 8b/10b coding. NCQ: 32 tags (SATA;
    # Linux libata ATA_MAX_QUEUE = 32). Read-ahead segment count and size are
    # the model's choice. Command overhead is not modelled (0).
    "hdd-hc310": {"kind": "hdd", "latency": "0s", "bandwidth": "255MB/s",
                  "inner-bandwidth": "127.5MB/s",
                  "seek": {"track-to-track": "0.23ms", "average": "7.4ms",
                           "full-stroke": "12.3ms"},
                  "write-seek": {"track-to-track": "0.32ms", "average": "8.2ms",
                                 "full-stroke": "15.0ms"},
                  "rpm": 7200, "capacity": "6TB", "scheduler": "ncq", "queue-depth": 32,
                  "read-ahead": True, "read-ahead-segments": 8,
                  "read-ahead-segment-size": "512KiB", "write-cache": "256MiB",
                  "interface-bandwidth": "600MB/s"},
    # Hitachi Travelstar 7K320 (2.5-inch, 7200 rpm, SATA 3 Gb/s). Mechanics
    # from its SATA OEM specification §4.4.2: single-track seek 1.0 ms read /
    # 1.1 ms write, average seek 12 ms (read and write), full-stroke 20.0 ms
    # read / 22.0 ms write, 7200 rpm = 8.3 ms a turn (4.2 ms average latency);
    # 320 GB the family's largest capacity. Buffer 16 MB (the 320 GB models;
    # from the spec's model table, NOT re-read here).
    # NOT sourced for this drive: the 180 MiB/s outer-zone media rate (carried
    # over from an earlier preset, not checked against the spec's data
    # transfer table, which was not reached) and the inner-zone rate (half the
    # outer, as for hdd-hc310). Interface 300 MB/s: SATA 3 Gb/s after 8b/10b.
    "hdd-7k320": {"kind": "hdd", "latency": "0s", "bandwidth": "180MiB/s",
                  "inner-bandwidth": "90MiB/s",
                  "seek": {"track-to-track": "1.0ms", "average": "12ms",
                           "full-stroke": "20.0ms"},
                  "write-seek": {"track-to-track": "1.1ms", "average": "12ms",
                                 "full-stroke": "22.0ms"},
                  "rpm": 7200, "capacity": "320GB", "scheduler": "ncq", "queue-depth": 32,
                  "read-ahead": True, "read-ahead-segments": 8,
                  "read-ahead-segment-size": "512KiB", "write-cache": "16MiB",
                  "interface-bandwidth": "300MB/s"},
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
    # Ceph RBD (librbd, as QEMU's rbd driver reaches it) on a replicated SATA-SSD
    # pool over 10 GbE. 4 KiB QD1 latency 0.57 ms read / 1 ms write measured on
    # a SATA-SSD Ceph cluster (yourcmc.ru/wiki/Ceph_performance, the Vitastor
    # author's side-by-side on one set of hardware), of which the network round
    # trip is ~0.06 ms (same page: sockperf "around 0.05-0.07ms"): the rest is the
    # OSDs' work incl. 3x replication. A client's large transfers are bound by
    # its link (the Ceph Reef RBD blog, 2023, measured 71 GB/s read / 25 GB/s
    # write aggregate on 60 NVMe, far above one client). In flight: librbd's
    # objecter allows 1024 ops (objecter_inflight_ops, Ceph config reference).
    "ceph-rbd": {"kind": "remote", "rtt": "0.06ms", "link-bandwidth": "1.1GiB/s",
                 "queue-depth": 1024,
                 "backend": {"kind": "ssd", "read-latency": "0.51ms", "write-latency": "0.94ms",
                             "read-bandwidth": "71GB/s", "write-bandwidth": "25GB/s",
                             "queue-depth": 1024}},
}

# The default 7200 rpm disk: a current 3.5-inch enterprise/NAS drive.
PRESETS["hdd-7200"] = PRESETS["hdd-hc310"]
