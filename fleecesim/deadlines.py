"""Guest deadlines: how many guest requests took longer than
the times at which guests and tools give up, and the longest stall.

* 1 s — a stall users notice;
* 30 s — Linux SCSI disk command timeout (/sys/block/*/device/timeout
  default 30 s: the request is aborted and retried);
* 60 s — Windows resets the disk (disk.sys TimeOutValue 60 s on Hyper-V and
  virtio guests);
* 120 s — Linux's hung-task detector (kernel.hung_task_timeout_secs = 120)
  reports tasks blocked on I/O.

(Proxmox's backup uses cbw-timeout 45 s: a CBW that long fails and the
snapshot breaks instead of the guest write — see faults.py.)

Counted from each request's recorded latency (arrival to completion, failed
requests included): during the backup (arrival in [t0, t_end)) and overall.
"""
from __future__ import annotations

import math

import numpy as np

DEADLINES_S = (1, 30, 60, 120)


def deadline_stats(t: np.ndarray, lat: np.ndarray, t0: float, t_end: float) -> dict:
    out = {}
    during = (t >= t0) & (t < t_end)
    for suffix, m in (("", during), ("_overall", None)):
        lt = lat if m is None else lat[m]
        tt = t if m is None else t[m]
        for d in DEADLINES_S:
            out[f"guest_requests_over_{d}s{suffix}"] = int(np.count_nonzero(lt > d))
        if lt.size:
            i = int(np.argmax(lt))
            out[f"longest_stall{suffix}_s"] = float(lt[i])
            out[f"longest_stall{suffix}_at_s"] = float(tt[i])  # when that request arrived
        else:
            out[f"longest_stall{suffix}_s"] = math.nan
            out[f"longest_stall{suffix}_at_s"] = math.nan
    return out
