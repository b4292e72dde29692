"""``fleecesim advise``: how much fleecing space, and how many workers, for one VM
under the user's constraints (issue 13 item 1).

One sweep (fleecesim.sweep: parallel, Dask, resumable) runs the VM's config
over ``max-workers`` candidates x replications with the fleecing image
unbounded, so each run's peak *is* the space that run needed:

* ``fleecing_peak_bytes`` — the space (both tiers) that run needed;
* with ``no_spill`` the RAM tier is made as large as the disk, so the whole
  peak stays in RAM: the RAM tier needed is that peak (``ram_peak_bytes``);
  without it the configured RAM tier is kept and the disk tier needed is
  ``disk_cache_peak_bytes``;
* ``write_p99_s``, the longest guest request (max of ``write_max_s`` and
  ``read_max_s``) and ``backup_duration_s`` (``run.max-time`` is set just
  above ``window``, so a run over the window is "unfinished": infinite).

Each quantity is taken at the chosen percentile over the replications
(``numpy.percentile(..., method="higher")``: an observed run, never an
interpolation below it). A worker count is feasible when every constraint
holds at that percentile; the advice is the fewest feasible workers whose
space is within ``SPACE_SLACK`` of the least space any feasible count needs
(more workers rarely save much space but cost guest latency). A constraint no
count meets is reported as unmet, never relaxed.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..errors import UserError
from ..units import fmt_size, fmt_time, parse_time

WORKERS = (1, 2, 4, 8, 16, 32, 64)
SPACE_SLACK = 0.10   # "within 10 % of the least space"
AXIS = "backup.max-workers"


@dataclass
class Constraints:
    no_spill: bool = False
    write_p99: float | None = None   # seconds
    max_stall: float | None = None   # seconds: the longest guest request
    window: float | None = None      # seconds: the backup must finish within
    percentile: float = 95.0
    replications: int = 10
    workers: tuple[int, ...] = WORKERS

    @classmethod
    def parse(cls, *, no_spill=False, write_p99=None, max_stall=None, window=None,
              percentile=95.0, replications=10, workers=None) -> "Constraints":
        """From command-line text; UserError (one line) on a bad value."""
        def dur(flag, v):
            if v is None:
                return None
            try:
                t = parse_time(v)
            except ValueError as e:
                raise UserError(f"{flag} {v}: {e}") from None
            if not t > 0 or not math.isfinite(t):
                raise UserError(f"{flag} {v}: expected a time > 0 like '2ms'")
            return t
        try:
            p = float(percentile)
        except (TypeError, ValueError):
            raise UserError(f"--percentile {percentile}: expected a number in (0, 100]") from None
        if not 0 < p <= 100:
            raise UserError(f"--percentile {percentile}: expected a number in (0, 100]")
        if isinstance(replications, bool) or not isinstance(replications, int) or replications < 1:
            raise UserError(f"--replications {replications}: expected a whole number >= 1")
        if workers is None:
            ws = WORKERS
        else:
            try:
                ws = tuple(sorted({int(w) for w in (workers.split(",") if isinstance(workers, str)
                                                    else workers)}))
            except ValueError:
                raise UserError(f"--workers {workers}: expected whole numbers like 1,4,16,64") \
                    from None
            if not ws or ws[0] < 1:
                raise UserError(f"--workers {workers}: expected whole numbers >= 1")
        return cls(bool(no_spill), dur("--write-p99", write_p99), dur("--max-stall", max_stall),
                   dur("--window", window), p, replications, ws)

    def describe(self) -> str:
        parts = []
        if self.no_spill:
            parts.append("no spill to disk")
        if self.write_p99 is not None:
            parts.append(f"write p99 <= {fmt_time(self.write_p99)}")
        if self.max_stall is not None:
            parts.append(f"longest request <= {fmt_time(self.max_stall)}")
        if self.window is not None:
            parts.append(f"backup within {fmt_time(self.window)}")
        return ", ".join(parts) or "no constraints"


def has_cache(scheme: str) -> bool:
    from ..schemes import option_error
    return option_error(scheme, "cache") is None


def sweep_dict(cfg, cons: Constraints) -> dict:
    """The sweep (a dict for ``run_sweep``) that answers the question for ``cfg``
    (one resolved variant)."""
    from ..schemes import option_error
    scheme = cfg.scheme
    if option_error(scheme, "max-workers") is not None:
        raise UserError(f"advise: the {scheme!r} scheme has no max-workers to choose "
                        f"(use backup, fleecing-push or fleecing-pull)")
    base = cfg.dump()
    base.pop("variants", None)
    base["backup"]["scheme"] = scheme
    sets: dict = {}
    if has_cache(scheme):
        sets["backup.cache.size"] = None  # unbounded: the peak is the space needed
        if cons.no_spill:
            cs = cfg.cbw_cluster_size
            sets["backup.cache.ram.size"] = -(-cfg.disk.size // cs) * cs
            sets["backup.cache.flush.high"] = None
    if cons.window is not None:
        # a run over the window stops just after it ("unfinished"): the runs
        # never cost more than the question needs
        sets["run.max-time"] = cons.window * 1.02
    return {"name": f"advise-{cfg.name}", "base": base, "set": sets,
            "replications": cons.replications, "grid": {AXIS: list(cons.workers)}}


def pct(values, p: float) -> float:
    """The p-th percentile of observed runs (method 'higher': a run's own value)."""
    a = np.asarray(values, dtype=float)
    return float(np.percentile(a, p, method="higher")) if len(a) else math.nan


@dataclass
class Advice:
    question: str
    constraints: Constraints
    scheme: str
    table: pd.DataFrame            # one row per worker count
    workers: int | None            # None: no count meets every constraint
    space_bytes: float = math.nan  # fleecing space (both tiers) at the percentile
    ram_bytes: float = math.nan    # RAM tier to reserve
    disk_bytes: float = math.nan   # disk tier to reserve
    unmet: list[str] = field(default_factory=list)

    @property
    def met(self) -> bool:
        return self.workers is not None

    def text(self) -> str:
        c = self.constraints
        pc = f"p{c.percentile:g} of {c.replications} runs"
        if not self.met:
            lines = [f"NO worker count in {list(c.workers)} meets {c.describe()} ({pc}):"]
            lines += [f"  - {u}" for u in self.unmet]
            return "\n".join(lines)
        row = self.table.set_index("workers").loc[self.workers]
        lines = [f"max-workers {self.workers}; reserve {fmt_size(self.space_bytes)} of "
                 f"fleecing space ({pc}; constraints: {c.describe()})"]
        if has_cache(self.scheme):
            lines.append(f"  RAM tier {fmt_size(self.ram_bytes)}, disk tier "
                         f"{fmt_size(self.disk_bytes)}")
        lines.append(f"  then: write p99 {fmt_time(row.write_p99_s)}, longest request "
                     f"{fmt_time(row.stall_s)}, backup {fmt_time(row.duration_s)}")
        return "\n".join(lines)

    def table_text(self) -> str:
        from ..report import _render
        rows = []
        for r in self.table.itertuples():
            rows.append([str(r.workers), str(r.runs), fmt_size(r.space_bytes), fmt_size(r.ram_bytes),
                         fmt_size(r.disk_bytes), fmt_time(r.write_p99_s), fmt_time(r.stall_s),
                         fmt_time(r.duration_s), "yes" if r.feasible else r.why])
        p = f"p{self.constraints.percentile:g}"
        header = ["workers", "runs", f"space {p}", f"RAM {p}", f"disk {p}",
                  f"write p99 {p}", f"longest {p}", f"backup {p}", "meets constraints"]
        text = _render(header, rows).splitlines()
        # the last column is words: left-aligned reads better
        return "\n".join(line.rstrip() for line in text)


def analyse(runs: pd.DataFrame, cons: Constraints, cfg) -> Advice:
    """The advice from a sweep's runs (``load_runs`` of ``sweep_dict``'s sweep)."""
    scheme = cfg.scheme
    p = cons.percentile
    rows = []
    for w in cons.workers:
        g = runs[runs[AXIS] == w]
        errs = g["error"].dropna() if len(g) else pd.Series([], dtype=object)
        why = []
        if len(g) < cons.replications:
            why.append(f"{cons.replications - len(g)} runs missing")
        if len(errs):
            why.append(f"{len(errs)} runs failed: {str(errs.iloc[0])[:80]}")
        ok = g[g["error"].isna()] if len(g) else g
        done = ok["backup_outcome"] == "complete" if len(ok) else pd.Series([], dtype=bool)
        bad = ok[(ok["backup_outcome"] != "complete") & (ok["backup_outcome"] != "unfinished")]
        if len(bad):
            why.append(f"{len(bad)} backups {bad['backup_outcome'].iloc[0]}")
        dur = ok["backup_duration_s"].where(done, math.inf)
        stall = np.fmax(ok["write_max_s"].astype(float), ok["read_max_s"].astype(float)).fillna(0)
        r = {"workers": w, "runs": len(g),
             "space_bytes": pct(ok["fleecing_peak_bytes"], p),
             "ram_bytes": pct(ok["ram_peak_bytes"], p),
             "disk_bytes": pct(ok["disk_cache_peak_bytes"], p),
             "spill_max_bytes": float(ok["spill_bytes"].max()) if len(ok) else math.nan,
             "write_p99_s": pct(ok["write_p99_s"].astype(float).fillna(0), p),
             "stall_s": pct(stall, p), "duration_s": pct(dur, p)}
        if cons.window is not None and not r["duration_s"] <= cons.window:
            why.append(f"backup {fmt_time(r['duration_s'])} > {fmt_time(cons.window)}"
                       if math.isfinite(r["duration_s"]) else
                       f"backup unfinished within {fmt_time(cons.window)}")
        elif cons.window is None and math.isinf(r["duration_s"]):
            why.append("backup unfinished at run.max-time")
        if cons.write_p99 is not None and not r["write_p99_s"] <= cons.write_p99:
            why.append(f"write p99 {fmt_time(r['write_p99_s'])} > {fmt_time(cons.write_p99)}")
        if cons.max_stall is not None and not r["stall_s"] <= cons.max_stall:
            why.append(f"longest {fmt_time(r['stall_s'])} > {fmt_time(cons.max_stall)}")
        if cons.no_spill and has_cache(scheme) and r["spill_max_bytes"] > 0:
            why.append(f"spilled {fmt_size(r['spill_max_bytes'])} with a disk-sized RAM tier")
        r["feasible"] = not why
        r["why"] = "; ".join(why)
        rows.append(r)
    table = pd.DataFrame(rows)
    question = (f"{cfg.name}: how much fleecing space and how many workers for "
                f"{cons.describe()}? (p{cons.percentile:g} of {cons.replications} runs)")
    adv = Advice(question, cons, scheme, table, None)
    feas = table[table["feasible"]]
    if not len(feas):
        adv.unmet = _unmet(table, cons)
        return adv
    least = feas["space_bytes"].min()
    pick = feas[feas["space_bytes"] <= least * (1 + SPACE_SLACK)].iloc[0]
    adv.workers = int(pick["workers"])
    adv.space_bytes = float(pick["space_bytes"])
    if not has_cache(scheme):
        adv.ram_bytes = adv.disk_bytes = 0.0
    elif cons.no_spill:
        adv.ram_bytes, adv.disk_bytes = float(pick["ram_bytes"]), 0.0
    else:
        adv.ram_bytes = float(cfg.backup.cache.ram.size)
        adv.disk_bytes = float(pick["disk_bytes"])
    return adv


def _unmet(table: pd.DataFrame, cons: Constraints) -> list[str]:
    """Each constraint no worker count meets, with the best any count got."""
    out = []

    def best(col, limit, what, fmt=fmt_time):
        i = table[col].idxmin()
        v = table.loc[i, col]
        if not v <= limit:
            out.append(f"{what} <= {fmt(limit)}: best is {fmt(v)} with "
                       f"{table.loc[i, 'workers']} workers")
    if cons.write_p99 is not None:
        best("write_p99_s", cons.write_p99, "write p99")
    if cons.max_stall is not None:
        best("stall_s", cons.max_stall, "longest request")
    if cons.window is not None:
        best("duration_s", cons.window, "backup duration")
    if not out:  # each is met by some count, but never all by one
        out.append("each constraint is met by some worker count, none meets all: "
                   + "; ".join(f"{r.workers}: {r.why}" for r in table.itertuples()))
    return out


def plot(advice: Advice, runs: pd.DataFrame):
    """Left: fleecing space needed vs percentile (one line per worker count);
    right: write p99 (at the percentile) vs workers, with the limit."""
    from matplotlib.figure import Figure
    c = advice.constraints
    fig = Figure(figsize=(11, 4.6))
    ax1, ax2 = fig.subplots(1, 2)
    qs = np.linspace(0, 100, 101)
    import matplotlib
    cmap = matplotlib.colormaps["viridis"]
    for i, w in enumerate(c.workers):
        g = runs[(runs[AXIS] == w) & runs["error"].isna()]
        if not len(g):
            continue
        peaks = g["fleecing_peak_bytes"].astype(float).to_numpy()
        y = np.percentile(peaks, qs, method="higher") / 2**20
        chosen = w == advice.workers
        ax1.plot(qs, y, color=cmap(i / max(1, len(c.workers) - 1)), lw=2.6 if chosen else 1.2,
                 label=f"{w} workers" + (" (advice)" if chosen else ""))
    ax1.axvline(c.percentile, color="k", ls=":", lw=1, label=f"p{c.percentile:g}")
    if advice.met:
        ax1.plot([c.percentile], [advice.space_bytes / 2**20], "o", color="crimson", ms=8,
                 label=f"reserve {fmt_size(advice.space_bytes)}")
    ax1.set_xlabel(f"percentile over {c.replications} replications (%)")
    ax1.set_ylabel("fleecing space needed (MiB)")
    ax1.set_title("fleecing space needed vs percentile")
    ax1.legend(fontsize=8)
    t = advice.table
    ax2.plot(t["workers"], t["write_p99_s"] * 1e3, "o-", label=f"write p99 (p{c.percentile:g} "
                                                                 f"over runs)")
    ax2.plot(t["workers"], t["stall_s"] * 1e3, "s--", alpha=0.6,
             label=f"longest request (p{c.percentile:g})")
    if c.write_p99 is not None:
        ax2.axhline(c.write_p99 * 1e3, color="crimson", ls="--", lw=1,
                    label=f"limit {fmt_time(c.write_p99)}")
    if c.max_stall is not None:
        ax2.axhline(c.max_stall * 1e3, color="darkorange", ls=":", lw=1,
                    label=f"longest limit {fmt_time(c.max_stall)}")
    if advice.met:
        row = t.set_index("workers").loc[advice.workers]
        ax2.plot([advice.workers], [row.write_p99_s * 1e3], "o", color="crimson", ms=10,
                 mfc="none", mew=2, label=f"advice: {advice.workers} workers")
    ax2.set_xscale("log", base=2)
    ax2.set_xticks(list(c.workers))
    ax2.set_xticklabels([str(w) for w in c.workers])
    ax2.set_yscale("log")
    ax2.set_xlabel("max-workers")
    ax2.set_ylabel("guest latency during backup (ms)")
    ax2.set_title("guest latency vs workers")
    ax2.legend(fontsize=8)
    import textwrap
    fig.suptitle(textwrap.fill(advice.question, 100), fontsize=10)
    fig.tight_layout()
    return fig


def advise_config(cfg, cons: Constraints, *, results_dir=None, jobs=None, scheduler=None,
                  dask_local=False, resume=False, quiet=True):
    """Run the sweep for ``cfg`` (one variant) and return (Advice, runs, results dir)."""
    from ..sweep import load_runs, run_sweep
    out = run_sweep(sweep_dict(cfg, cons), results_dir=results_dir, jobs=jobs,
                    scheduler=scheduler, dask_local=dask_local, resume=resume, quiet=quiet)
    runs = load_runs(out)
    return analyse(runs, cons, cfg), runs, out
