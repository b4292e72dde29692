"""Write configs/traces/oltp-sample.trace: a small generated OLTP-like block
trace in DiskSim/MQSim ASCII (``arrival_time_ns device_no start_lba_512B
size_in_sectors type``, type 0 = write, 1 = read), so configs/trace-replay.yaml
runs from a fresh clone.

It is generated, not recorded. Its shape follows the published summary of
MQSim's TPC-C sample (CMU-SAFARI/MQSim traces/tpcc-small.trace, as measured by
``fleecesim trace stats``): Poisson arrivals at ~51k IOPS, 62.6 % reads, 96.8 %
of requests 8 KiB (the rest 512 B-32 KiB), offsets spread over ~135 GiB with
almost no reuse (its 2,618 writes touch 2,757 distinct 64 KiB clusters: uniform
placement). To replay the recorded trace instead, point ``workload.trace`` at it.

    python configs/traces/make_oltp_sample.py      # rewrites the file, byte for byte
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

OUT = Path(__file__).with_name("oltp-sample.trace")
REQUESTS = 2000
IOPS = 51_279            # tpcc-small: 6,999 requests in 136.5 ms
READ_FRACTION = 0.626
SPAN_BYTES = 135 * 2**30
# sizes in 512-byte sectors and their shares (tpcc-small's histogram, by bucket)
SIZES = np.array([1, 2, 4, 8, 16, 32, 64])
SHARES = np.array([10, 14, 19, 26, 6778, 118, 34], dtype=float)
SEED = 20261207


def generate() -> str:
    rng = np.random.default_rng(SEED)
    t = np.cumsum(rng.exponential(1e9 / IOPS, REQUESTS)).astype(np.int64)
    sectors = rng.choice(SIZES, REQUESTS, p=SHARES / SHARES.sum())
    # aligned to the request's own size, as a database's pages are
    lba = rng.integers(0, SPAN_BYTES // 512 // sectors) * sectors
    kind = (rng.random(REQUESTS) < READ_FRACTION).astype(int)  # 1 = read
    return "".join(f"{a} 0 {b} {s} {k}\n" for a, b, s, k in zip(t, lba, sectors, kind))


if __name__ == "__main__":
    OUT.write_text(generate())
    print(f"wrote {OUT} ({REQUESTS} requests)")
