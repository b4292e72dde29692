"""Plots of run and sweep results. Each takes a DataFrame and returns a
matplotlib Figure (no pyplot state: safe in loops, notebooks and workers).

* ``latency_cdf``     — guest-write latency CDF per scheme/policy, baseline vs backup
* ``occupancy``       — fleecing-cache bytes over time, one panel per tier
* ``metric_vs_param`` — metrics against a swept parameter, a panel each, CI bands
* ``policy_bars``     — metrics per scheme/policy as bars with CI error bars
* ``attribution``     — where a guest write's time goes, per scheme: stacked bars

Frames come from ``fleecesim.sweep.load_latency / load_timelines / load_runs``
or, for a single ``fleecesim run``, from ``frames_from_results`` /
``load_run_dir``.
"""
from __future__ import annotations

import io
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from .store import read_json, read_parquet
from .summarize import NO_LIMIT_AT_ZERO, ci_table, quiet_on_broken_pipe

# ------------------------------------------------------------------ labels and units
METRIC_LABELS = {
    "backup_duration_s": "backup duration",
    "write_p50_s": "guest write p50 latency (during backup)",
    "write_p99_s": "guest write p99 latency (during backup)",
    "write_mean_s": "guest write mean latency (during backup)",
    "write_max_s": "guest write max latency (during backup)",
    "read_p99_s": "guest read p99 latency (during backup)",
    "write_p99_ratio_vs_baseline": "write p99 / baseline write p99",
    "cbw_count": "copy-before-write operations",
    "cbw_bytes": "bytes copied before write",
    "fleecing_peak_bytes": "fleecing space at peak",
    "ram_peak_bytes": "RAM tier at peak",
    "disk_cache_peak_bytes": "disk tier at peak",
    "spill_bytes": "spill to the disk tier",
    "target_write_bytes": "bytes written to the target",
    "guest_iops_during_backup": "guest IOPS during backup",
    "oracle_ok": "runs with a correct point-in-time image",
}
PARAM_WORDS = {"max-workers": "max-workers (parallel copy coroutines)",
               "rtt": "round-trip time", "bandwidth": "bandwidth",
               "scheme": "backup scheme", "order": "copy-ordering policy",
               "variant": "variant"}
KEY_LABELS = {
    "backup.cache.ram.size": "RAM tier size",
    "backup.cache.size": "disk tier size",
    "backup.max-chunk": "max-chunk (bytes per copy task)",
    "backup.speed": "backup job speed limit",
    "devices.target.rtt": "target round-trip time",
    "devices.target.backend.bandwidth": "target backend bandwidth",
    "devices.target.link-bandwidth": "target link bandwidth",
    "disk.size": "disk size",
    "workload.iops": "guest IOPS",
}
TIER_NAMES = {"cache.ram_bytes": "RAM tier", "cache.disk_bytes": "disk tier",
              "fleecing_bytes": "fleecing image", "overlay_bytes": "overlay image"}
_TIME_UNITS = ((1.0, "s"), (1e-3, "ms"), (1e-6, "µs"))
_SIZE_UNITS = ((2**40, "TiB"), (2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB"), (1, "B"))


def metric_label(m: str) -> str:
    return METRIC_LABELS.get(m, m.replace("_", " "))


def unit_for(name: str, values) -> tuple[float, str]:
    """(divisor, unit) so that the values read naturally, from the name's suffix."""
    v = np.abs(np.asarray(pd.to_numeric(pd.Series(values), errors="coerce"), dtype=float))
    v = v[np.isfinite(v) & (v > 0)]
    big = float(np.median(v)) if v.size else 1.0
    n = name.lower()
    if n.endswith("_s") or any(w in n.split(".")[-1] for w in ("rtt", "latency", "timeout")):
        return next(((f, u) for f, u in _TIME_UNITS if big >= f), _TIME_UNITS[-1])
    if n.endswith("_bytes") or n.split(".")[-1] in ("size", "max-chunk", "cluster-size"):
        return next(((f, u) for f, u in _SIZE_UNITS if big >= f), (1, "B"))
    if any(w in n.split(".")[-1] for w in ("bandwidth", "speed")):
        f, u = next(((f, u) for f, u in _SIZE_UNITS if big >= f), (1, "B"))
        return f, f"{u}/s"
    if n == "oracle_ok":
        return 0.01, "%"
    if "ratio" in n:
        return 1.0, "×"
    return 1.0, ""


def param_label(key: str) -> str:
    if key in KEY_LABELS:
        return KEY_LABELS[key]
    parts = key.split(".")
    last = parts[-1]
    if key.startswith("devices.") and len(parts) >= 3:
        dev = " ".join(p for p in parts[1:-1])
        return f"{dev} {PARAM_WORDS.get(last, last)}"
    return PARAM_WORDS.get(last, key)


def _with_unit(label: str, unit: str) -> str:
    return f"{label} ({unit})" if unit else label


def _fmt(key: str, v) -> str:
    if isinstance(v, (int, float, np.number)) and not isinstance(v, (bool, np.bool_)):
        if v == 0 and key in NO_LIMIT_AT_ZERO:
            return NO_LIMIT_AT_ZERO[key]
        f, u = unit_for(key, [v])
        x = v / f
        return f"{x:g}{u}" if u in ("B", "KiB", "MiB", "GiB", "TiB", "s", "ms", "µs") or \
            u.endswith("/s") else f"{x:g}{(' ' + u) if u else ''}"
    return str(v)


def default_by(df: pd.DataFrame, exclude=()) -> list[str]:
    """The columns that tell lines apart: every axis that varies, and the
    variant unless those axes already determine it."""
    by = [c for c in df.attrs.get("axes", [])
          if c in df and c not in exclude and df[c].nunique(dropna=False) > 1]
    if "variant" in df and "variant" not in exclude and df["variant"].nunique() > 1:
        if not by or int(df.groupby(by, dropna=False)["variant"].nunique().max()) > 1:
            by.append("variant")
    return by


def group_labels(df: pd.DataFrame, by: str | list[str] | None = None) -> pd.Series:
    """One label per row from the ``by`` columns (default: ``default_by``):
    names such as a scheme as they are, numbers as 'parameter=value+unit'."""
    by = default_by(df) if by is None else ([by] if isinstance(by, str) else list(by))
    if not by:
        return pd.Series(str(df["variant"].iloc[0]) if "variant" in df and len(df) else "all",
                         index=df.index)

    def one(c, v, alone):
        if isinstance(v, str) or alone:
            return _fmt(c, v)
        return f"{c.split('.')[-1]}={_fmt(c, v)}"
    if len(by) == 1:
        return df[by[0]].map(lambda v: one(by[0], v, True))
    return df.apply(lambda r: ", ".join(one(c, r[c], False) for c in by), axis=1)


def legend_title(by) -> str | None:
    by = [by] if isinstance(by, str) else list(by or [])
    return ", ".join(param_label(b) for b in by) or None


_MARKERS = ["o", "s", "^", "D", "v", "P", "X", "<", ">", "*"]
_DASHES = ["-", "--", "-.", ":"]


def _colors(labels: list[str]) -> dict[str, str]:
    cycle = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b",
             "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]
    if len(labels) > len(cycle):  # more lines than colours: no two may look alike
        from matplotlib import colormaps
        cmap = colormaps["tab20"] if len(labels) <= 20 else colormaps["turbo"]
        n = max(len(labels) - 1, 1)
        return {lab: cmap(i if len(labels) <= 20 else i / n) for i, lab in enumerate(labels)}
    return {lab: cycle[i % len(cycle)] for i, lab in enumerate(labels)}


# ------------------------------------------------------------------ line styles
# The columns a scheme or policy lives in: in a sweep over schemes and a
# parameter, the scheme is what a reader compares first, so it gets the hue.
SCHEME_KEYS = ("backup.scheme", "scheme", "variant")


def colour_key(df: pd.DataFrame, by: list[str]) -> str | None:
    """The ``by`` column whose values get a hue each: the scheme (or variant),
    else the first non-numeric column, else the first; None when ``by`` has
    fewer than two columns (then every line gets its own hue)."""
    if len(by) < 2:
        return None
    for k in SCHEME_KEYS:
        if k in by:
            return k
    return next((k for k in by if not pd.api.types.is_numeric_dtype(df[k])), by[0])


def _shades(colour, n: int) -> list[tuple]:
    """``n`` shades of one hue, light to dark: tints towards white, then shades
    towards black (hue unchanged: both are affine in each RGB channel)."""
    from matplotlib.colors import to_rgb
    rgb = np.array(to_rgb(colour))
    if n == 1:
        return [tuple(rgb)]
    return [tuple(rgb + (1 - rgb) * f if f >= 0 else rgb * (1 + f))
            for f in np.linspace(0.55, -0.35, n)]


def _order_value(key: str, v):
    """Sort key of an axis value: numbers by size (0 of a "no limit" key
    last), anything else as first seen."""
    if isinstance(v, (int, float, np.number)) and not isinstance(v, (bool, np.bool_)):
        return (0, math.inf if v == 0 and key in NO_LIMIT_AT_ZERO else float(v))
    return (1, 0.0)


class LineStyles:
    """One colour per line label. With two or more ``by`` columns, one hue per
    value of ``colour_key`` (the scheme) and shades of it, light to dark, for
    the other columns' values in ascending order; else a hue per label.
    ``groups``: the colour key's values (as text) and their labels in shade
    order; ``series``: the label of every row of the frame."""

    def __init__(self, df: pd.DataFrame, by: list[str]):
        self.by = list(by)
        self.series = group_labels(df, self.by)
        labels = list(dict.fromkeys(self.series))
        self.key = colour_key(df, self.by)
        self.rest = [b for b in self.by if b != self.key]
        if self.key is None:
            self.text = {lab: lab for lab in labels}
            self.groups = {lab: [lab] for lab in labels}
            self.colour = {lab: to_rgba_tuple(c) for lab, c in _colors(labels).items()}
            self.labels = labels
            return
        first = df.assign(_label=self.series).drop_duplicates("_label")
        value = {r["_label"]: _fmt(self.key, r[self.key]) for _, r in first.iterrows()}
        order = {r["_label"]: tuple(_order_value(c, r[c]) for c in self.rest)
                 for _, r in first.iterrows()}
        # in the legend: the scheme first, then the values (its title names them)
        # (a number is named: "max-workers=4", a scheme is its own name)
        named = pd.api.types.is_numeric_dtype(df[self.key])
        self.text = {r["_label"]: ", ".join(
            [f"{self.key.split('.')[-1]}={value[r['_label']]}" if named else value[r["_label"]]]
            + [_fmt(c, r[c]) for c in self.rest]) for _, r in first.iterrows()}
        hues = _colors(list(dict.fromkeys(value[lab] for lab in labels)))
        self.groups, self.colour = {}, {}
        for v, base in hues.items():
            members = sorted((lab for lab in labels if value[lab] == v), key=order.get)
            self.groups[v] = members
            self.colour.update(zip(members, _shades(base, len(members))))
        self.labels = [lab for g in self.groups.values() for lab in g]

    def legend_title(self) -> str | None:
        if self.key is None:
            return legend_title(self.by)
        return (f"{param_label(self.key)} (colour), "
                f"{', '.join(param_label(r) for r in self.rest)} (light → dark)")


def to_rgba_tuple(c) -> tuple:
    from matplotlib.colors import to_rgba
    return tuple(to_rgba(c))


def _blank():
    from matplotlib.lines import Line2D
    return Line2D([], [], ls="", marker="")


def legend_below(fig: Figure, handles: dict, styles: LineStyles, extra=(),
                 title: str | None = None, fontsize: int = 9, grow: bool = True):
    """A legend under the axes (never over the data). When the lines are
    hue x shade, the legend is a grid: a column per hue (few hues) or a row
    per hue (few shades), so the scheme and the parameter read off it.
    ``handles``: label -> artist; ``extra``: (artist, text) entries of their
    own column (e.g. the baseline)."""
    groups = {v: [lab for lab in labs if lab in handles] for v, labs in styles.groups.items()}
    groups = {v: labs for v, labs in groups.items() if labs}
    k = len(groups)
    m = max((len(labs) for labs in groups.values()), default=0)
    extra = list(extra)
    blank = (_blank(), "")
    text = styles.text
    if m > 1 and k <= 4:  # a column per hue
        cols = [[(handles[lab], text[lab]) for lab in labs] for labs in groups.values()]
    elif m > 1 and m <= 4:  # a row per hue: columns are the shades
        cols = [[(handles[labs[j]], text[labs[j]]) if j < len(labs) else blank
                 for labs in groups.values()] for j in range(m)]
    else:
        entries = [(handles[lab], text[lab]) for labs in groups.values() for lab in labs]
        entries += extra
        if not entries:
            return None
        n = len(entries)
        cols = [entries] if n <= 1 else [entries[i::ncols] for ncols in
                                          [n if n <= 3 else 2 if n <= 8 else 3]
                                          for i in range(ncols)]
        # the plain list fills row by row, in the lines' order
        extra = []
    if extra:
        cols.append(extra)
    rows = max(len(c) for c in cols)
    entries = [e for c in cols for e in c + [blank] * (rows - len(c))]
    if grow:  # room for the legend's rows: the axes keep their height
        w, h = fig.get_size_inches()
        lines = sum(str(t).count("\n") for _h, t in entries if t)
        fig.set_size_inches(w, h + 0.45 + 0.2 * (rows + lines / max(1, len(cols))))
    return fig.legend(*zip(*entries), loc="outside lower center", ncols=len(cols),
                      fontsize=fontsize, title=title, title_fontsize=fontsize)


def fit_width(fig: Figure, max_width_in: float = 20.0) -> Figure:
    """Widen ``fig`` until its titles, legends and tick labels are inside it
    and no two x tick labels of an axes overlap (drawn with Agg, measured)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    for _ in range(4):
        canvas = FigureCanvasAgg(fig)
        canvas.draw()
        r = canvas.get_renderer()
        w = fig.bbox.width
        need = w
        texts = [fig._suptitle] + list(fig.legends) + \
            [t for ax in fig.axes if ax.get_visible() for t in (ax.title, ax.get_legend())]
        for t in texts:
            if t is None or not t.get_visible() or (hasattr(t, "get_text") and not t.get_text()):
                continue
            bb = t.get_window_extent(r)
            over = max(0.0, -bb.x0, bb.x1 - w)
            if over > 0 or bb.width > w:
                need = max(need, w + 2 * over + 0.1 * fig.dpi, bb.width + 0.2 * fig.dpi)
        for ax in fig.axes:
            if not ax.get_visible():
                continue
            boxes = sorted((t.get_window_extent(r) for t in ax.get_xticklabels()
                            if t.get_visible() and t.get_text()), key=lambda b: b.x0)
            if any(a.x1 > b.x0 for a, b in zip(boxes, boxes[1:])):
                need = max(need, 1.25 * w)
        width_in, height_in = fig.get_size_inches()
        new = min(max_width_in, need / fig.dpi)
        if new <= width_in + 1e-3:
            break
        fig.set_size_inches(new, height_in)
    return fig


# ------------------------------------------------------------------ plots
def _by(df: pd.DataFrame, by, exclude=()) -> list[str]:
    return default_by(df, exclude) if by is None else ([by] if isinstance(by, str) else list(by))


def latency_cdf(lat: pd.DataFrame, by=None, title: str | None = None) -> Figure:
    """CDF of guest-write latency per scheme/policy (log x): solid during the
    backup, dashed before it (baseline). ``lat``: phase, prob, latency_s and
    label columns (quantiles; several replications are averaged per quantile).
    A hue per scheme, shades of it per swept value; the legend under the plot."""
    by = _by(lat, by)
    st = LineStyles(lat, by)
    df = lat.assign(_label=st.series)
    fig = Figure(figsize=(8, 5), layout="constrained")
    ax = fig.subplots()
    curves = df.groupby(["_label", "phase", "prob"], sort=False)["latency_s"].mean()
    f, unit = unit_for("latency_s", df["latency_s"])
    have = set(curves.index.droplevel(2))
    baselines, handles = {}, {}
    for lab in st.labels:
        if (lab, "baseline") in have:
            baselines[lab] = curves.loc[(lab, "baseline")].sort_index()
        if (lab, "backup") in have:
            c = curves.loc[(lab, "backup")].sort_index()
            handles[lab], = ax.step(c.to_numpy() / f, c.index, where="post",
                                    color=st.colour[lab], lw=2, label=lab)
    extra = []
    if baselines:
        vals = list(baselines.values())
        same = all(len(v) == len(vals[0]) and np.allclose(v.to_numpy(), vals[0].to_numpy(),
                                                          rtol=1e-9) for v in vals)
        for lab, c in ([("", vals[0])] if same else baselines.items()):
            h, = ax.step(c.to_numpy() / f, c.index, where="post", ls="--", lw=1.5,
                         color="black" if same else st.colour[lab])
        if same:
            extra.append((h, "no backup running (baseline, all)"))
        else:
            from matplotlib.lines import Line2D
            extra.append((Line2D([], [], ls="--", lw=1.5, color="gray"),
                          "no backup running (baseline):\ndashed, in its line's colour"))
    ax.set_xscale("log")
    ax.set_ylim(0, 1.005)
    ax.set_xlabel(f"guest write latency ({unit}, log scale)")
    ax.set_ylabel("fraction of guest writes ≤ latency")
    ax.grid(True, which="both", alpha=0.3)
    legend_below(fig, handles, st, extra,
                 title="during the backup, by " + (st.legend_title() or "run"))
    ax.set_title(title or "What does the guest feel? Write latency during backup vs baseline")
    return fit_width(fig)


IMAGE_LEVELS = ("fleecing_bytes", "overlay_bytes")


def occupancy(timelines: pd.DataFrame, by=None, replication: int | None = None,
              levels: list[str] | None = None, title: str | None = None) -> Figure:
    """Fleecing-cache bytes over time since the backup started, one panel per
    tier, one line per run (every replication, or only ``replication``), a hue
    per scheme and shades per swept value. A note over the panels says which
    replications are drawn and which runs have no fleecing image (a scheme
    that copies straight to the target) and so no line."""
    df = timelines
    reps = sorted(int(r) for r in df["replication"].dropna().unique()) \
        if "replication" in df else []
    if replication is not None and "replication" in df:
        df = df[df["replication"] == replication]
    by = _by(df, by)
    st = LineStyles(df, by)
    df = df.assign(_label=st.series)
    if levels is None:
        present = list(dict.fromkeys(df["level"]))
        levels = [lv for lv in present if lv.startswith("cache.")] or \
            [lv for lv in present if lv in IMAGE_LEVELS]
    tcol = "time_since_backup_start_s" if "time_since_backup_start_s" in df else "time"
    n = max(1, len(levels))
    fig = Figure(figsize=(8, 2.2 + 2.4 * n), layout="constrained")
    axes = np.atleast_1d(fig.subplots(n, 1, sharex=True, squeeze=False)[:, 0])
    sub = df[df["level"].isin(levels)]
    f, unit = unit_for("x_bytes", sub["value"]) if len(sub) else (2**20, "MiB")
    handles = {}
    for ax, lv in zip(axes, levels):
        d = sub[sub["level"] == lv]
        for lab in st.labels:
            g = d[d["_label"] == lab]
            runs = g.groupby("run_id", sort=False) if "run_id" in g else [(None, g)]
            for _rid, gr in runs:  # every run: replications are not averaged away
                if not len(gr):
                    continue
                gr = gr.sort_values(tcol, kind="stable")
                h, = ax.step(gr[tcol], gr["value"] / f, where="post", color=st.colour[lab],
                             lw=1.6)
                handles.setdefault(lab, h)
        if not len(d) or not (d["value"] > 0).any():
            ax.set_ylim(0, 1)
            ax.text(0.5, 0.5, "unused in these runs", ha="center", va="center",
                    transform=ax.transAxes, color="gray")
        ax.set_ylabel(f"{TIER_NAMES.get(lv, lv)} in use ({unit})")
        ax.grid(True, alpha=0.3)
        ax.set_ylim(bottom=0)
    legend_below(fig, handles, st, title=st.legend_title())
    if not len(levels):
        axes[0].text(0.5, 0.5, "no fleecing cache in these runs", ha="center",
                     transform=axes[0].transAxes)
    if len(sub):
        tmax = float(sub[tcol].max())
        axes[-1].set_xlim(left=-0.05 * tmax if tcol != "time" else None)
    axes[-1].set_xlabel("time since the backup started (s)" if tcol != "time" else "time (s)")
    note = _occupancy_note(df, st, levels, reps, replication)
    if note:
        axes[0].set_title(note, fontsize=9, color="dimgray")
    fig.suptitle(title or "How much fleecing space does the backup hold, and for how long?")
    return fit_width(fig)


def _occupancy_note(df: pd.DataFrame, st: LineStyles, levels, reps, replication) -> str:
    """Which runs are drawn, and which are not because they hold no fleecing
    image (or none of the drawn tiers)."""
    parts = []
    if len(reps) > 1:
        parts.append(f"replication {replication} of {len(reps)} drawn (--replication)"
                     if replication is not None else
                     f"all {len(reps)} replications drawn, a line each")
    drawn = set(df.loc[df["level"].isin(levels), "_label"])
    imaged = set(df.loc[df["level"].isin(IMAGE_LEVELS) | df["level"].str.startswith("cache."),
                        "_label"])
    for why, labs in (("no fleecing image", [x for x in st.labels if x not in imaged]),
                      ("none of these tiers", [x for x in st.labels
                                               if x in imaged and x not in drawn])):
        if not labs:
            continue
        names = []
        for v, members in st.groups.items():  # a whole scheme by its name alone
            if st.key is not None and all(m in labs for m in members):
                names.append(f"{v} (every {', '.join(param_label(r) for r in st.rest)})"
                             if len(members) > 1 else v)
            else:
                names += [st.text[m] for m in members if m in labs]
        parts.append(f"not drawn, {why}: {', '.join(names)}")
    return "\n".join(parts)


def _x_positions(x: str, xv: np.ndarray, logx: bool) -> tuple[np.ndarray, str | None]:
    """Where each x value is drawn. A key whose 0 means "no limit"
    (``NO_LIMIT_AT_ZERO``, e.g. ``backup.speed``) draws 0 one step past the
    largest limit, not at 0: the limit grows towards it."""
    word = NO_LIMIT_AT_ZERO.get(x)
    pos = xv.astype(float).copy()
    finite = np.unique(pos[pos > 0])
    if word is None or not (pos == 0).any() or not finite.size:
        return pos, None
    if logx:
        step = finite[-1] / finite[-2] if finite.size > 1 else 2.0
        pos[pos == 0] = finite[-1] * step
    else:
        step = np.diff(finite).min() if finite.size > 1 else finite[-1]
        pos[pos == 0] = finite[-1] + step
    return pos, word


def metric_vs_param(runs: pd.DataFrame, x: str, metric: str | list[str], by=None,
                    logx: bool | None = None, title: str | None = None) -> Figure:
    """``metric`` (mean over replications, 95 % CI band) against the swept
    parameter ``x``, one line per scheme/policy/other axis value. A list of
    metrics draws one panel each, side by side, sharing x and the legend; a
    panel whose means span a factor of 50 or more gets a log y axis."""
    metrics = [metric] if isinstance(metric, str) else list(metric)
    by = default_by(runs, exclude=(x,)) if by is None else (
        [by] if isinstance(by, str) else list(by))
    ci = ci_table(runs, metrics, by=[x] + by)
    ci.attrs["axes"] = by
    st = LineStyles(ci, by) if by else None
    ci["_label"] = st.series if by else ci["metric"].map(metric_label)
    fx, ux = unit_for(x, ci[x][ci[x] != 0] if (ci[x] != 0).any() else ci[x])
    xv = ci[x].to_numpy(dtype=float)
    if logx is None:
        pos = xv[xv > 0] if x in NO_LIMIT_AT_ZERO else xv
        logx = bool(len(pos) and (pos > 0).all() and pos.max() / pos.min() >= 8)
    ci["_x"], no_limit = _x_positions(x, xv, logx)
    labels = st.labels if st else list(dict.fromkeys(ci["_label"]))
    colors = st.colour if st else _colors(labels)
    many = len(labels) > 4  # overlapping bands turn to mud: dodged error bars instead
    n_panels = len(metrics)
    fig = Figure(figsize=(8, 5) if n_panels == 1 else (4.6 * n_panels, 4.8),
                 layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, n_panels, squeeze=False)[0])
    for ax, m in zip(axes, metrics):
        cm = ci[ci["metric"] == m]
        fy, uy = unit_for(m, cm["mean"])
        means = cm["mean"].to_numpy(dtype=float)
        means = means[np.isfinite(means)]
        logy = n_panels > 1 and bool(len(means) and (means > 0).all()
                                     and means.max() / means.min() >= 50)
        for i, lab in enumerate(labels):  # markers too: coinciding lines stay visible
            g = cm[cm["_label"] == lab].sort_values("_x")
            xs = g["_x"].to_numpy(dtype=float) / fx
            mean = (g["mean"] / fy).to_numpy()
            lo, hi = (g["ci_low"] / fy).to_numpy(), (g["ci_high"] / fy).to_numpy()
            style = dict(color=colors[lab], lw=2, label=lab,
                         marker=_MARKERS[i % len(_MARKERS)], ms=7 - 0.4 * (i % 6))
            if many:
                span = np.ptp(np.log(xs)) if logx and len(xs) > 1 else np.ptp(xs)
                shift = (i - (len(labels) - 1) / 2) * 0.012 * (span or 1.0)
                xd = xs * np.exp(shift) if logx else xs + shift
                err = np.vstack([np.nan_to_num(mean - np.maximum(lo, 0) if (mean >= 0).all()
                                               else mean - lo), np.nan_to_num(hi - mean)])
                ax.errorbar(xd, mean, yerr=err, capsize=3, elinewidth=1, **style)
            else:
                last = len(xs) - 1 if no_limit and (g[x] == 0).any() else len(xs)
                ax.plot(xs[:last], mean[:last], **style)
                if last < len(xs):  # to "no limit": dotted, the spacing is not a scale
                    ax.plot(xs[last - 1:], mean[last - 1:], color=colors[lab], lw=1.5, ls=":")
                    ax.plot(xs[last:], mean[last:], ls="", marker=style["marker"],
                            ms=style["ms"], color=colors[lab])
                if np.isfinite(lo).any():
                    ax.fill_between(xs, np.maximum(lo, mean * 1e-3) if logy else lo, hi,
                                    color=colors[lab], alpha=0.25, lw=0)
        if logx:
            ax.set_xscale("log")
            ax.minorticks_off()
        if logx or no_limit:  # a tick at each swept value, "unlimited" by name
            ticks = np.unique(ci["_x"].to_numpy(dtype=float))
            ax.set_xticks(ticks / fx, [f"{t / fx:g}" if t in xv else no_limit for t in ticks])
        ax.set_xlabel(_with_unit(param_label(x), ux))
        if logy:
            from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter
            ax.set_yscale("log")  # labelled at 1, 2, 5 per decade: values stay readable
            ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
            ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            ax.yaxis.set_minor_formatter(NullFormatter())
        else:
            ax.set_ylim(bottom=0)
        if n_panels == 1:
            ax.set_ylabel(_with_unit(metric_label(m), uy))
        else:  # the panel's title names it in full; the label stays short
            ax.set_title(metric_label(m), fontsize=10)
            scale = ", ".join(p for p in (uy, "log scale" if logy else "") if p)
            ax.set_ylabel(_with_unit(metric_label(m).split(" (")[0], scale))
        ax.grid(True, which="both" if logy else "major", alpha=0.3)
    if by:  # under the panels, never over a line
        handles, names = axes[0].get_legend_handles_labels()
        legend_below(fig, dict(zip(names, handles)), st, title=st.legend_title())
    n = int(ci["n"].max()) if len(ci) else 0
    names = [metric_label(m).split(" (")[0] for m in metrics]
    what = (f"does {metric_label(metrics[0])}" if n_panels == 1 else
            f"do {', '.join(names[:-1])} and {names[-1]}")
    default = (f"How {what} depend on {param_label(x).split(' (')[0]}?\n"
               f"(mean, {'bars' if many else 'band'}: 95 % CI over {n} replications)")
    if n_panels == 1:
        axes[0].set_title(title or default, fontsize=11)
    else:
        fig.suptitle(title or default, fontsize=11)
    return fit_width(fig)


# Metrics where more is better: a bar chart of them asks which does best.
HIGHER_IS_BETTER = {"oracle_ok", "guest_iops_during_backup"}


def _wrap(text: str, width: int = 14) -> str:
    """A tick label on short lines: one per ", "-part, long parts broken at
    hyphens, so labels stand upright side by side instead of rotated."""
    import textwrap
    return "\n".join(line for part in str(text).split(", ")
                     for line in textwrap.wrap(part, width, break_on_hyphens=True) or [""])


def policy_bars(runs: pd.DataFrame, metrics: list[str], by=None,
                title: str | None = None) -> Figure:
    """One panel per metric: mean and 95 % CI per scheme/policy. With one
    ``by`` column, a bar each, named under it; with more, bars grouped by the
    other columns' values (named under each group) and a hue per scheme (the
    legend under the panels). ``by`` defaults to every swept axis that varies
    (pooling runs of different settings into one bar would mix
    configurations, not replications)."""
    by = default_by(runs) or ["variant"] if by is None else by
    by = [by] if isinstance(by, str) else list(by)
    ci = ci_table(runs, list(metrics), by=by)
    key = colour_key(ci, by)
    rest = [b for b in by if b != key]
    if key is None:  # a bar per label, its name under it
        ci["_colour"] = group_labels(ci, by)
        ci["_group"] = ""
    else:
        ci["_colour"] = ci[key].map(lambda v: _fmt(key, v))
        ci["_group"] = ci.apply(lambda r: ", ".join(
            _fmt(c, r[c]) if len(rest) == 1 else f"{c.split('.')[-1]}={_fmt(c, r[c])}"
            for c in rest), axis=1)
    hues = list(dict.fromkeys(ci["_colour"]))
    first = ci.drop_duplicates("_group")
    groups = sorted(dict.fromkeys(ci["_group"]), key=lambda g: tuple(
        _order_value(c, first.loc[first["_group"] == g, c].iloc[0]) for c in rest))
    colors = _colors(hues)
    k = 1 if key is None else len(hues)
    ticks = [_wrap(h) for h in hues] if key is None else [_wrap(g) for g in groups]
    chars = max((len(line) for t in ticks for line in t.split("\n")), default=1)
    # inches per tick: the bars of a group, or the longest line of its name
    slot = max(0.34 * k + 0.25, 0.07 * chars + 0.2)
    n_ticks = len(hues) if key is None else len(groups)
    width = max(4.2, slot * n_ticks + 1.3)
    ncol = max(1, min(3, len(metrics), int(16 // width)))
    nrow = math.ceil(len(metrics) / ncol)
    lines = max(t.count("\n") + 1 for t in ticks) if ticks else 1
    fig = Figure(figsize=(max(8.0, width * ncol), 1.0 + (3.4 + 0.17 * lines) * nrow),
                 layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrow, ncol, squeeze=False).ravel())
    handles = {}
    for ax, m in zip(axes, metrics):
        d = ci[ci["metric"] == m].set_index(["_group", "_colour"])
        f, u = unit_for(m, d["mean"])
        for hi, h in enumerate(hues):
            idx = [(g, h) for g in groups] if key is not None else [("", h)]
            dd = d.reindex(idx)
            mean = (dd["mean"] / f).to_numpy()
            err = (dd["half_width"] / f).fillna(0).to_numpy()
            # counts, bytes and times cannot go below 0: clip the lower error bar there
            low = np.minimum(err, np.maximum(np.nan_to_num(mean), 0)) \
                if (d["mean"].dropna() >= 0).all() else err
            if key is None:
                xs, w = np.array([hi]), 0.8
            else:
                w = 0.8 / k
                xs = np.arange(len(groups)) - 0.4 + w * (hi + 0.5)
            bars = ax.bar(xs, mean, width=w, yerr=[low, err], capsize=3 if k > 4 else 4,
                          color=colors[h], label=h)
            handles.setdefault(h, bars)
        if key is None:
            ax.set_xticks(range(len(hues)), ticks, fontsize=9)
            ax.set_xlabel(legend_title(by) or "run")
        else:
            ax.set_xticks(range(len(groups)), ticks, fontsize=9)
            ax.set_xlabel(", ".join(param_label(c) for c in rest))
        ax.set_ylabel(_with_unit(metric_label(m).split(" (")[0], u))
        ax.set_title(metric_label(m), fontsize=10)
        ax.grid(True, axis="y", alpha=0.3)
    for ax in axes[len(metrics):]:
        ax.set_visible(False)
    if key is not None:
        st = LineStyles.__new__(LineStyles)  # a hue each, no shades: one entry per hue
        st.by, st.key, st.rest = by, None, []
        st.groups, st.text = {h: [h] for h in hues}, {h: h for h in hues}
        legend_below(fig, handles, st, title=param_label(key))
    n = int(ci["n"].max()) if len(ci) else 0
    what = param_label(key) if key is not None else (
        legend_title(by) if len(by) == 1 else "setting")
    verb = ("costs least" if not any(m in HIGHER_IS_BETTER for m in metrics) else
            "does best" if all(m in HIGHER_IS_BETTER for m in metrics) else "does best where")
    where = f", at each {' and '.join(param_label(c) for c in rest)}" if key is not None else ""
    fig.suptitle(title or f"Which {what} {verb}{where}?\n"
                          f"(mean; error bars: 95 % CI over {n} replications)", fontsize=11)
    return fit_width(fig)


# Component colours and words (metrics.COMPONENTS), the device's own time in
# greys and blues, the backup's costs in warm colours.
ATTR_STYLE = {
    "queue": ("#9e9e9e", "queue (behind other I/O, host CPU)"),
    "service": ("#4c72b0", "service (its own device request)"),
    "cbw_read": ("#dd8452", "CBW: read old data"),
    "cache_write": ("#55a868", "CBW: write to fleecing image"),
    "target_write": ("#c44e52", "CBW: write to backup target"),
    "inflight_wait": ("#8172b3", "wait: another's copy in flight"),
    "frozen_wait": ("#937860", "wait: snapshot read (frozen)"),
    "cache_full_wait": ("#da8bc3", "wait: fleecing image full"),
    "error": ("#000000", "failed (time until the error)"),
}
ATTR_PANELS = (("write_attribution_s", "all writes during the backup (mean)"),
               ("write_tail_attribution_s", "slowest 1 % of those writes (mean)"))


def attribution_bars(runs: pd.DataFrame, by=None, title: str | None = None) -> Figure:
    """Where a guest write's time goes during the backup: one stacked bar per
    scheme/variant, split into metrics.COMPONENTS; left all writes, right the
    slowest 1 %. ``runs``: summary rows (flattened, as sweeps store them) with
    ``write_attribution_s.<component>`` columns; replications are averaged."""
    from .errors import UserError
    from .metrics import COMPONENTS
    cols = [f"{p}.{c}" for p, _ in ATTR_PANELS for c in COMPONENTS]
    missing = [c for c in cols if c not in runs]
    if missing:
        raise UserError("--kind attribution: these results have no latency attribution "
                        f"({missing[0]} missing); re-run them with this fleecesim")
    by = default_by(runs) or ["variant"] if by is None else by
    by = [by] if isinstance(by, str) else list(by)
    d = runs.assign(_label=group_labels(runs, by))
    mean = d.groupby("_label", sort=False)[cols].mean()
    n = int(d.groupby("_label", sort=False).size().max())
    labels = list(mean.index)
    shown = [c for c in COMPONENTS if (mean[[f"{p}.{c}" for p, _ in ATTR_PANELS]] > 0).any().any()]
    height = max(2.6, 0.45 * len(labels) + 1.6)
    fig = Figure(figsize=(13, height), layout="constrained")
    axes = fig.subplots(1, 2)
    for ax, (prefix, panel) in zip(axes, ATTR_PANELS):
        tot = mean[[f"{prefix}.{c}" for c in COMPONENTS]].sum(axis=1)
        f, u = unit_for("latency_s", [tot.max()])
        left = np.zeros(len(labels))
        y = np.arange(len(labels))
        for c in shown:
            v = mean[f"{prefix}.{c}"].to_numpy() / f
            color, word = ATTR_STYLE[c]
            ax.barh(y, v, left=left, color=color, label=word, height=0.6)
            left += v
        for yi, t in zip(y, left):
            ax.text(t, yi, f" {t:.3g}{u}", va="center", fontsize=8)
        ax.set_yticks(y, labels, fontsize=9)
        ax.set_ylabel(legend_title(by) or "run")
        ax.invert_yaxis()
        ax.set_xlim(0, max(left.max(), 1e-12) * 1.15)
        ax.set_xlabel(_with_unit("guest write latency", u))
        ax.set_title(panel, fontsize=10)
        ax.grid(True, axis="x", alpha=0.3)
    h, lab = axes[0].get_legend_handles_labels()
    fig.legend(h, lab, loc="outside lower center", ncol=min(4, len(lab)), fontsize=8)
    fig.suptitle(title or "Where does a guest write's time go during the backup?"
                 + (f" (mean of {n} replications)" if n > 1 else ""))
    return fig


def summaries_frame(d: str | Path) -> pd.DataFrame:
    """One flattened row per run of a ``fleecesim run`` results directory
    (variant = its subdirectory), as sweeps store rows, in the config's
    variant order (the directory's own summary.json lists it)."""
    from .errors import UserError
    from .sweep.worker import flatten
    d = Path(d)
    rows = []
    for s in sorted(d.rglob("summary.json")):
        if s.parent == d:
            continue
        row = flatten(read_json(s))
        row["variant"] = str(s.parent.relative_to(d))
        rows.append(row)
    if not rows:
        raise UserError(f"{d}: no sweep (sweep.json) or run results (*/summary.json) here")
    rank = _variant_rank(d)
    rows.sort(key=lambda r: (rank.get(r["variant"], len(rank)), r["variant"]))
    return pd.DataFrame(rows)


def _variant_rank(d: Path) -> dict:
    """Variant name -> its place in the config (the run directory's own
    summary.json lists the variants in the order they ran)."""
    order: list = []
    try:
        order = [x.get("name") for x in json.loads((d / "summary.json").read_text())]
    except (OSError, ValueError, AttributeError, TypeError):
        pass
    return {name: i for i, name in enumerate(order)}


def _run_summaries(d: Path) -> list[Path]:
    """A run directory's per-variant summary.json files, in the config's order."""
    rank = _variant_rank(d)
    found = [s for s in sorted(d.rglob("summary.json")) if s.parent != d]
    return sorted(found, key=lambda s: (rank.get(str(s.parent.relative_to(d)), len(rank)),
                                        str(s.parent.relative_to(d))))


# ------------------------------------------------------------------ inputs and output
def frames_from_results(results) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(latency quantiles, timelines) from in-memory ``run.Result`` objects,
    labelled by variant: the inputs of ``latency_cdf`` and ``occupancy``."""
    from .sweep.worker import write_latency_quantiles
    lats, tls = [], []
    for r in results:
        lats.append(write_latency_quantiles(r.requests).assign(variant=r.name))
        if r.timeline is not None and len(r.timeline):
            t0 = r.summary.get("backup_start_s", 0.0)
            tls.append(r.timeline.assign(variant=r.name,
                                         time_since_backup_start_s=r.timeline["time"] - t0))
    lat = pd.concat(lats, ignore_index=True) if lats else pd.DataFrame()
    tl = pd.concat(tls, ignore_index=True) if tls else pd.DataFrame(
        columns=["time", "level", "value", "variant", "time_since_backup_start_s"])
    return lat, tl


def load_run_dir(d: str | Path, latency: bool = True,
                 timelines: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(latency quantiles, timelines) from a ``fleecesim run`` results directory.
    Only what is asked for is read, and of ``requests.parquet`` (every guest
    request: large) only the write rows' phase and latency."""
    from .sweep.worker import write_latency_quantiles
    d = Path(d)
    lats, tls = [], []
    found = False
    for s in _run_summaries(d):
        found = True
        name = str(s.parent.relative_to(d))
        req = s.parent / "requests.parquet"
        if latency and req.is_file():
            lats.append(write_latency_quantiles(_read_writes(req)).assign(variant=name))
        tlp = s.parent / "timeline.parquet"
        if timelines and tlp.is_file():
            summ = read_json(s)
            tl = read_parquet(tlp, columns=["time", "level", "value"])
            tls.append(tl.assign(variant=name, time_since_backup_start_s=tl["time"] - (
                summ.get("backup_start_s") or 0.0)))
    if not found:
        from .errors import UserError
        raise UserError(f"{d}: no sweep (sweep.json) or run results (*/summary.json) here")
    return (pd.concat(lats, ignore_index=True) if lats else pd.DataFrame(),
            pd.concat(tls, ignore_index=True) if tls else pd.DataFrame())


def _read_writes(path: Path) -> pd.DataFrame:
    """op, phase, latency of the guest writes in a run's requests.parquet."""
    import pyarrow.parquet as pq

    from .store import parquet_errors, unreadable_parquet
    try:
        t = pq.read_table(path, columns=["op", "phase", "latency"],
                          filters=[("op", "==", "write")])
    except parquet_errors() as e:
        raise unreadable_parquet(path, e) from None
    return t.to_pandas()


def save(fig: Figure, stem: str | Path, formats=("png", "svg"), dpi: int = 120) -> list[Path]:
    """Write ``stem.png`` and ``stem.svg`` atomically; returns the paths. Every
    format is rendered before any file is written: all or nothing."""
    from matplotlib import rc_context

    from .store import atomic_write_bytes
    data = []
    for fmt in formats:
        buf = io.BytesIO()
        # no creation date in SVG/PDF and SVG ids from a fixed salt (else
        # random): the same results give the same bytes
        meta = {"svg": {"Date": None}, "pdf": {"CreationDate": None}}.get(fmt)
        with rc_context({"svg.hashsalt": "fleecesim"}):
            fig.savefig(buf, format=fmt, dpi=dpi, metadata=meta)
        data.append((Path(f"{stem}.{fmt}"), buf.getvalue()))
    for p, b in data:
        atomic_write_bytes(p, b)
    return [p for p, _ in data]


# ------------------------------------------------------------------ CLI
def _filter(df: pd.DataFrame, where: list[str]) -> pd.DataFrame:
    from .errors import UserError
    from .units import parse_rate, parse_size, parse_time
    for w in where:
        if "=" not in w:
            raise UserError(f"--where {w}: expected COLUMN=VALUE")
        col, text = (s.strip() for s in w.split("=", 1))
        if col not in df:
            raise UserError(f"--where {col}: no such column; have {', '.join(map(str, df))}")
        val: object = text
        if pd.api.types.is_numeric_dtype(df[col]):
            for parse in (float, parse_rate, parse_time, parse_size):
                try:
                    val = parse(text)
                    break
                except (ValueError, TypeError, Exception):
                    continue
            keep = np.isclose(df[col].astype(float), float(val))
        else:
            keep = df[col].astype(str) == text
        df = df[keep]
        if not len(df):
            raise UserError(f"--where {w}: matches no runs")
    return df


def _formats(text: str) -> tuple[str, ...]:
    """--format, checked before anything is read or written."""
    from .errors import UserError
    ok = Figure().canvas.get_supported_filetypes()
    fmts = tuple(dict.fromkeys(f.strip().lower() for f in text.split(",") if f.strip()))
    bad = [f for f in fmts if f not in ok]
    if bad or not fmts:
        raise UserError(f"--format {text}: {', '.join(bad) or 'empty'} not supported; "
                        f"expected some of {', '.join(sorted(ok))}")
    return fmts


def _check_by(df: pd.DataFrame, by: list[str] | None) -> None:
    from .errors import UserError
    for c in by or []:
        if c not in df:
            have = [a for a in df.attrs.get("axes", []) if a in df]
            have += [c for c in ("variant", "replication", "point") if c in df]
            raise UserError(f"--by {c}: no such column; expected one of {', '.join(have)}")


def _slug(text: str) -> str:
    """A file-name-safe rendering of a metric, column or value."""
    import re
    return re.sub(r"[^A-Za-z0-9._=+-]+", "_", text).strip("_") or "_"


def stem_name(args) -> str:
    """The default file name: every option that changes the picture is in it,
    so plots of different metrics or slices do not overwrite each other."""
    parts = [args.kind]
    if args.kind in ("metric", "bars"):
        parts.append("+".join(args.metric or ["backup_duration_s"]))
    if args.kind == "metric" and args.x:
        parts.append(f"vs-{args.x}")
    if args.by:
        parts.append(f"by-{args.by}")
    if args.kind == "occupancy" and args.replication is not None:
        parts.append(f"rep{args.replication}")
    parts += [w.replace(" ", "") for w in args.where]
    return "-".join(_slug(p) for p in parts)


@quiet_on_broken_pipe
def cmd_plot(args) -> int:
    import sys

    from .errors import UserError
    formats = _formats(args.format)
    d = Path(args.dir)
    is_sweep = (d / "sweep.json").is_file()
    by = [b.strip() for b in args.by.split(",")] if args.by else None
    if args.kind in ("cdf", "occupancy"):
        if is_sweep:
            from .sweep import load_latency, load_timelines
            df = load_latency(d) if args.kind == "cdf" else load_timelines(d)
        else:
            if args.kind == "occupancy" and args.replication not in (None, 0):
                raise UserError(f"--replication {args.replication}: a run directory holds "
                                f"one replication (0)")
            lat, tl = load_run_dir(d, latency=args.kind == "cdf",
                                   timelines=args.kind == "occupancy")
            df = lat if args.kind == "cdf" else tl
        if not len(df):
            raise UserError(f"{d}: no {'latency' if args.kind == 'cdf' else 'timeline'} "
                            f"data to plot (no completed runs?)")
        attrs = dict(df.attrs)
        df = _filter(df, args.where)
        df.attrs.update(attrs)
        _check_by(df, by)
        if args.kind == "occupancy" and "replication" in df and args.replication is not None:
            reps = sorted(int(r) for r in df["replication"].dropna().unique())
            if args.replication not in reps:
                raise UserError(f"--replication {args.replication}: no such replication "
                                f"here; expected one of {', '.join(map(str, reps))}")
        fig = latency_cdf(df, by=by, title=args.title) if args.kind == "cdf" else \
            occupancy(df, by=by, replication=args.replication, title=args.title)
    elif args.kind == "attribution":
        if is_sweep:
            from .sweep import load_runs
            runs = load_runs(d)
        else:
            runs = summaries_frame(d)
        attrs = dict(runs.attrs)
        runs = _filter(runs, args.where)
        runs.attrs.update(attrs)
        _check_by(runs, by)
        fig = attribution_bars(runs, by=by, title=args.title)
    else:
        if not is_sweep:
            raise UserError(f"--kind {args.kind}: needs a sweep results directory (sweep.json)")
        from .sweep import load_runs
        runs = load_runs(d)
        attrs = dict(runs.attrs)
        runs = _filter(runs, args.where)
        runs.attrs.update(attrs)
        _check_by(runs, by)
        metrics = args.metric or ["backup_duration_s"]
        for m in metrics:
            if m not in runs:
                raise UserError(f"--metric {m}: no such column in {d}")
        if args.kind == "metric":
            axes = [a for a in runs.attrs.get("axes", [])
                    if pd.api.types.is_numeric_dtype(runs[a])]
            x = args.x or (axes[0] if axes else None)
            if x is None or x not in runs:
                raise UserError("--x: name a numeric swept parameter"
                                + (f" ({', '.join(axes)})" if axes else ""))
            fig = metric_vs_param(runs, x, metrics, by=by, title=args.title)
        else:
            fig = policy_bars(runs, metrics, by=by, title=args.title)
    if args.where and not args.title:  # the slice is part of the question
        t = fig._suptitle or next((ax.title for ax in fig.axes if ax.get_title()), None)
        if t is not None:
            t.set_text(f"{t.get_text()}\n(only runs with {', '.join(args.where)})")
            fit_width(fig)
    stem = Path(args.out) if args.out else d / "plots" / stem_name(args)
    try:
        paths = save(fig, stem, formats=formats)
    except OSError as e:
        raise UserError(f"--out {stem}: cannot write it ({e.strerror or e})") from None
    for p in paths:
        print(p, file=sys.stderr if args.quiet else sys.stdout)
    return 0
