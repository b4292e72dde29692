"""Per-point means and 95 % confidence intervals over replications.

``ci_table(runs)`` is a tidy long table (one row per point x metric) with the
point's axis values and variant as columns; ``format_table`` renders it for a
terminal. The interval is mean +- t(0.975, n-1) * s / sqrt(n) over the
replications that finished without error.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .units import fmt_size, fmt_time

# Student t 0.975 quantiles for 1..30 degrees of freedom (no scipy needed).
_T975 = [12.7062, 4.3027, 3.1824, 2.7764, 2.5706, 2.4469, 2.3646, 2.3060, 2.2622, 2.2281,
         2.2010, 2.1788, 2.1604, 2.1448, 2.1314, 2.1199, 2.1098, 2.1009, 2.0930, 2.0860,
         2.0796, 2.0739, 2.0687, 2.0639, 2.0595, 2.0555, 2.0518, 2.0484, 2.0452, 2.0423]


def t975(df: int) -> float:
    """Two-sided 95 % Student t quantile; Cornish-Fisher expansion past 30 df."""
    if df < 1:
        return math.nan
    if df <= 30:
        return _T975[df - 1]
    z = 1.959964
    return (z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)
            + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * df**3))


# Swept keys whose 0 turns the limit off (QEMU's meaning): shown by name, and
# plotted past the largest limit rather than at 0.
NO_LIMIT_AT_ZERO = {"backup.speed": "unlimited", "backup.cbw-timeout": "no timeout"}

DEFAULT_METRICS = ("backup_duration_s", "write_p50_s", "write_p99_s",
                   "write_p99_ratio_vs_baseline", "cbw_count", "fleecing_peak_bytes",
                   "ram_peak_bytes", "spill_bytes", "target_write_bytes", "oracle_ok")


def point_columns(runs: pd.DataFrame) -> list[str]:
    """What identifies a point for display: its axis values and variant."""
    axes = list(runs.attrs.get("axes", []))
    cols = [c for c in axes if c in runs.columns]
    if "variant" in runs.columns and (not cols or runs["variant"].nunique() > 1 and int(
            runs.groupby(cols, dropna=False)["variant"].nunique().max()) > 1):
        cols.append("variant")  # only when the axes alone do not tell variants apart
    return cols


def default_metrics(runs: pd.DataFrame) -> list[str]:
    """The headline metrics present in ``runs``, skipping all-zero ones."""
    out = []
    for m in DEFAULT_METRICS:
        if m not in runs:
            continue
        v = pd.to_numeric(runs[m], errors="coerce").astype(float)
        if m == "oracle_ok" or v.fillna(0).abs().sum() > 0:
            out.append(m)
    return out


def ci_table(runs: pd.DataFrame, metrics: list[str] | None = None,
             by: list[str] | None = None) -> pd.DataFrame:
    """Tidy: by-columns, metric, n, n_failed, mean, std, half_width, ci_low, ci_high."""
    metrics = list(metrics or default_metrics(runs))
    missing = [m for m in metrics if m not in runs]
    if missing:
        raise KeyError(f"no such metric(s): {', '.join(missing)}")
    by = list(by or point_columns(runs))
    order_col = "point" if "point" in runs else None
    ok = runs["error"].isna() if "error" in runs else pd.Series(True, index=runs.index)
    rows = []
    keys = runs[by].astype(object).where(runs[by].notna(), None)
    groups: dict[tuple, list[int]] = {}
    for i, k in zip(runs.index, map(tuple, keys.to_numpy())):
        groups.setdefault(k, []).append(i)
    for k, idx in groups.items():  # first-appearance order = the sweep's order
        sub = runs.loc[idx]
        good = sub[ok.loc[idx]]
        for m in metrics:
            v = pd.to_numeric(good[m], errors="coerce").astype(float).dropna().to_numpy()
            n = v.size
            mean = float(v.mean()) if n else math.nan
            std = float(v.std(ddof=1)) if n > 1 else math.nan
            hw = t975(n - 1) * std / math.sqrt(n) if n > 1 else math.nan
            row = dict(zip(by, k))
            row.update({"metric": m, "n": n, "n_failed": int((~ok.loc[idx]).sum()),
                        "mean": mean, "std": std, "half_width": hw,
                        "ci_low": mean - hw, "ci_high": mean + hw})
            if order_col:
                row["_order"] = int(sub[order_col].min())
            rows.append(row)
    df = pd.DataFrame(rows)
    if order_col and len(df):
        df = df.sort_values("_order", kind="stable").drop(columns="_order").reset_index(drop=True)
    return df


def fmt_value(metric: str, v: float) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if abs(v) < 1e-12:
        return "0"
    if metric.endswith("_s"):
        return fmt_time(v)
    if metric.endswith("_bytes"):
        return fmt_size(v)
    if metric == "oracle_ok":
        return f"{v:.0%}"
    if abs(v) >= 1000 or float(v).is_integer():
        return f"{v:,.0f}"
    return f"{v:.3g}"


def format_table(ci: pd.DataFrame) -> str:
    """One line per point, one column per metric: 'mean ± half-width'."""
    if ci.empty:
        return "(no completed runs)"
    by = [c for c in ci.columns if c not in
          ("metric", "n", "n_failed", "mean", "std", "half_width", "ci_low", "ci_high")]
    metrics = list(dict.fromkeys(ci["metric"]))
    header = [_short(c) for c in by] + ["n"] + metrics
    body = []
    for _, g in ci.groupby(by, sort=False, dropna=False):
        first = g.iloc[0]
        line = [_fmt_axis(c, first[c]) for c in by]
        n, nf = int(g["n"].max()), int(g["n_failed"].max())
        line.append(f"{n}" + (f" ({nf} failed)" if nf else ""))
        for m in metrics:
            r = g[g["metric"] == m].iloc[0]
            cell = fmt_value(m, r["mean"])
            if not (isinstance(r["half_width"], float) and math.isnan(r["half_width"])):
                cell += " ± " + fmt_value(m, r["half_width"])
            line.append(cell)
        body.append(line)
    widths = [max(len(str(r[i])) for r in [header] + body) for i in range(len(header))]
    nb = len(by)
    lines = ["  ".join(str(c).ljust(w) if i < nb else str(c).rjust(w)
                       for i, (c, w) in enumerate(zip(r, widths))) for r in [header] + body]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines) + "\n(mean ± 95 % CI half-width over replications)"


def _short(col: str) -> str:
    return col.split(".")[-1] if "." in col else col


def _fmt_axis(col: str, v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if isinstance(v, (int, float, np.number)) and not isinstance(v, bool):
        if v == 0 and col in NO_LIMIT_AT_ZERO:
            return NO_LIMIT_AT_ZERO[col]
        c = col.lower()
        if any(w in c for w in ("bandwidth", "speed")):
            return fmt_size(v) + "/s"
        if any(w in c for w in ("size", "chunk")):
            return fmt_size(v)
        if any(w in c for w in ("rtt", "latency", "timeout", "seek", "warmup", "window")):
            return fmt_time(v)
        return f"{v:g}"
    return str(v)


def quiet_on_broken_pipe(cmd):
    """``fleecesim summarize DIR | head``: when the reader goes away, stop
    quietly with the status a SIGPIPE death gives (141), as CLI tools do."""
    import functools
    import os
    import sys

    @functools.wraps(cmd)
    def wrapped(args) -> int:
        try:
            rc = cmd(args)
            sys.stdout.flush()
            return rc
        except BrokenPipeError:
            # further writes (the interpreter's own flush at exit) go nowhere
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
            return 128 + 13
    return wrapped


@quiet_on_broken_pipe
def cmd_summarize(args) -> int:
    import sys

    from .errors import UserError
    from .sweep import load_runs

    runs = load_runs(args.dir)
    metrics = [m.strip() for m in args.metrics.split(",")] if args.metrics else None
    try:
        ci = ci_table(runs, metrics)
    except KeyError as e:
        raise UserError(f"--metrics: {e.args[0]}") from None
    if args.csv:
        text = ci.to_csv(index=False)
        if args.csv == "-":
            sys.stdout.write(text)
            return 0
        from .store import atomic_write_text
        try:
            atomic_write_text(args.csv, text)
        except OSError as e:
            raise UserError(f"--csv {args.csv}: cannot write it ({e.strerror or e})") from None
        print(f"wrote {args.csv}", file=sys.stderr)
    print(format_table(ci))
    failed = runs[runs["error"].notna()] if "error" in runs else runs.iloc[:0]
    if len(failed):
        print(f"\n{len(failed)} run(s) failed:")
        for _, r in failed.head(10).iterrows():
            print(f"  {r['run_id']} point {r['point']} rep {r['replication']} "
                  f"{r.get('variant') or ''}: {str(r['error']).splitlines()[0]}")
    return 0
