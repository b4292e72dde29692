"""Run one sweep run and turn its Result into what the sweep stores.

This is the function local worker processes and Dask workers call, so it must
stay importable at top level and return plain, picklable data. It never raises:
a failure becomes a row with its error text.
"""
from __future__ import annotations

import json
import time
import traceback

import numpy as np
import pandas as pd

from .spec import Run

# Probabilities at which guest-write latency is kept per run: enough for a CDF
# on a log-latency axis with the tail resolved, ~200 numbers instead of every
# request.
CDF_PROBS = np.unique(np.concatenate([
    [0.0, 0.001, 0.005], np.round(np.arange(0.01, 1.0, 0.01), 2),
    [0.995, 0.999, 0.9995, 0.9999, 1.0]]))

# Summary entries that are large or nested: kept as JSON text, or dropped.
JSON_KEYS = ("config", "events")


def write_latency_quantiles(requests: pd.DataFrame) -> pd.DataFrame:
    """Guest-write latency quantiles per phase (baseline = before the backup,
    backup = while it runs): columns phase, prob, latency_s, n."""
    rows = []
    if requests is None or not len(requests) or "phase" not in requests:
        return pd.DataFrame({"phase": pd.Series(dtype=str), "prob": pd.Series(dtype=float),
                             "latency_s": pd.Series(dtype=float), "n": pd.Series(dtype=int)})
    w = requests[requests["op"] == "write"]
    for phase in ("baseline", "backup"):
        lat = w.loc[w["phase"] == phase, "latency"].to_numpy()
        if not lat.size:
            continue
        q = np.quantile(lat, CDF_PROBS)
        rows.append(pd.DataFrame({"phase": phase, "prob": CDF_PROBS, "latency_s": q,
                                  "n": lat.size}))
    if not rows:
        return write_latency_quantiles(None)
    return pd.concat(rows, ignore_index=True)


# A level with more change points than this (e.g. bytes in flight, which moves
# at every copy) is stored as its maximum over TIMELINE_BINS equal time bins:
# peaks survive, the file stays small. Exact means and peaks are in the row.
TIMELINE_MAX_POINTS = 5000
TIMELINE_BINS = 2000


def compact_timeline(tl: pd.DataFrame) -> pd.DataFrame:
    parts = []
    for level, g in tl.groupby("level", sort=False, observed=True):
        if len(g) <= TIMELINE_MAX_POINTS:
            parts.append(g)
            continue
        t = g["time"].to_numpy()
        v = g["value"].to_numpy()
        span = (t[-1] - t[0]) or 1.0
        b = np.minimum(((t - t[0]) / span * TIMELINE_BINS).astype(np.int64), TIMELINE_BINS - 1)
        starts = np.flatnonzero(np.r_[True, b[1:] != b[:-1]])
        tt, vv = t[starts], np.maximum.reduceat(v, starts)
        if starts[-1] != len(t) - 1:  # keep the final value (usually back to 0)
            tt, vv = np.r_[tt, t[-1]], np.r_[vv, v[-1]]
        parts.append(pd.DataFrame({"time": tt, "level": level, "value": vv}))
    return pd.concat(parts, ignore_index=True) if parts else tl


def flatten(summary: dict) -> dict:
    """A summary as one flat row: nested dicts -> 'a.b' columns, lists and the
    resolved config -> JSON text, the traceback kept as text."""
    out: dict = {}
    for k, v in summary.items():
        if k in JSON_KEYS:
            out[f"{k}_json" if k == "config" else k] = json.dumps(v, sort_keys=True, default=str)
        elif isinstance(v, dict):
            for kk, vv in v.items():
                out[f"{k}.{kk}"] = vv
        elif isinstance(v, (list, tuple)):
            out[k] = json.dumps(v, default=str)
        elif isinstance(v, np.generic):
            out[k] = v.item()
        else:
            out[k] = v
    return out


def _identity(run: Run) -> dict:
    row = {"run_id": run.run_id, "point_id": run.point_id, "index": run.index,
           "point": run.point, "replication": run.replication, "seed": run.seed,
           "variant": run.variant}
    row.update(run.axes)
    return row


def failed_output(run: Run, error: str, tb: str | None = None) -> dict:
    row = _identity(run)
    row.update({"error": error, "oracle_ok": False, "traceback": tb})
    return {"row": row, "timeline": None, "latency": None}


def run_one(run: Run) -> dict:
    """Simulate one run: {'row': dict, 'timeline': DataFrame, 'latency': DataFrame}."""
    if run.error is not None:
        return failed_output(run, f"ConfigError: {run.error}")
    wall0 = time.perf_counter()
    try:
        from ..config import Config
        from ..run import simulate

        cfg = Config.model_validate(run.config)
        res = simulate(cfg, run.variant or None)
        row = _identity(run)
        s = dict(res.summary)
        s.pop("name", None)   # == variant
        s.pop("seed", None)   # == run.seed, already a column
        row.update(flatten(s))
        row.setdefault("error", None)
        row.setdefault("traceback", None)
        tl = res.timeline if res.timeline is not None else pd.DataFrame()
        if len(tl):
            tl = compact_timeline(tl)
            t0 = res.summary.get("backup_start_s", 0.0)
            tl = tl.assign(time_since_backup_start_s=tl["time"] - t0, run_id=run.run_id)
        lat = write_latency_quantiles(res.requests).assign(run_id=run.run_id)
        return {"row": row, "timeline": tl if len(tl) else None, "latency": lat}
    except Exception as e:  # a failed point is a recorded result, not a crashed sweep
        out = failed_output(run, f"{type(e).__name__}: {e}", traceback.format_exc())
        out["row"]["wall_time_s"] = time.perf_counter() - wall0
        return out

