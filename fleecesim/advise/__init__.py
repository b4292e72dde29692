"""``fleecesim advise``: how much fleecing space, and how many workers, for one VM
under the user's constraints.

One sweep (fleecesim.sweep: parallel, Dask, resumable) runs the VM's config
over ``max-workers`` candidates x replications with the fleecing image
unbounded, so each run's peak *is* the space that run needed:

* ``fleecing_peak_bytes`` — the space (both tiers) that run needed;
* with ``no_spill`` the RAM tier is made as large as the disk, so the whole
  peak stays in RAM: the RAM tier needed is that peak (``ram_peak_bytes``);
  without it the configured RAM tier is kept and the disk tier needed is
  ``disk_cache_peak_bytes``;
* ``write_p99_s``, the longest guest request (max of ``write_max_s`` and
  ``read_max_s``, whichever the workload has) and ``backup_duration_s``
  (``run.max-time`` is set just above ``window``, so a run over the window is
  "unfinished": infinite).

Each quantity is an upper confidence bound on its ``percentile``-th quantile
over backups of this VM: an observed run, the k-th largest of N, chosen by
``upper_bound`` so the true quantile lies at or below it with probability at
least ``confidence`` (distribution-free: no shape is assumed). Replications
are raised to the fewest runs for which such a bound exists (``min_runs``),
up to ``max_replications``. A worker count is feasible when every constraint
holds at its bound; the advice is the fewest feasible workers whose space is
within ``SPACE_SLACK`` of the least space any feasible count needs (more
workers rarely save much space but cost guest latency). A constraint no count
meets is reported as unmet, never relaxed. The disk tier gets the qcow2
metadata of the fleecing image on top (``qcow2_metadata_bytes``).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from ..errors import UserError
from ..units import fmt_size, fmt_time, parse_time

if TYPE_CHECKING:  # imported where used: ``fleecesim advise --help`` needs no pandas
    import pandas as pd

WORKERS = (1, 2, 4, 8, 16, 32, 64)
SPACE_SLACK = 0.10   # "within 10 % of the least space"
AXIS = "backup.max-workers"
# A fleet under vzdump's schedule: vzdump's performance max-workers, which it
# passes to every VM's backup job (config.VzdumpPerformance)
FLEET_AXIS = "fleet.vzdump.performance.max-workers"
MAX_REPLICATIONS = 100  # the default cap on runs per worker count (--max-replications)


# ---------------------------------------------------------------- statistics
def _binom_cdf(m: int, n: int, p: float) -> float:
    """P(Binomial(n, p) <= m), summed in log space (lgamma) so n in the
    thousands neither overflows math.comb's float nor underflows p**i."""
    if m < 0:
        return 0.0
    if m >= n:
        return 1.0
    if p <= 0.0:
        return 1.0
    if p >= 1.0:
        return 0.0
    lp, lq, lf = math.log(p), math.log1p(-p), math.lgamma(n + 1)
    return min(1.0, sum(math.exp(lf - math.lgamma(i + 1) - math.lgamma(n - i + 1)
                                 + i * lp + (n - i) * lq) for i in range(m + 1)))


def bound_confidence(k: int, n: int, p: float) -> float:
    """Confidence that the k-th largest of ``n`` independent runs is at or above
    the ``p``-quantile q_p (0 < p < 1) of what one run gives.

    With X_(1) <= ... <= X_(n) the order statistics, the k-th largest is
    X_(n-k+1), and it lies below q_p only if at least n-k+1 runs fall below
    q_p; each does with probability p (at most p when values tie, which makes
    the bound conservative), so

        P(X_(n-k+1) >= q_p) = P(Binomial(n, p) <= n - k)
                            = 1 - P(Binomial(n, 1 - p) <= k - 1).

    The distribution-free one-sided confidence bound on a quantile: Hahn &
    Meeker, "Statistical Intervals: A Guide for Practitioners" (Wiley 1991),
    ch. 5 (distribution-free confidence bounds on quantiles); David &
    Nagaraja, "Order Statistics", 3rd ed. (Wiley 2003), sec. 7.1."""
    return _binom_cdf(n - k, n, p)


def min_runs(p: float, confidence: float) -> int:
    """The fewest runs for which an upper ``confidence`` bound on the
    ``p``-quantile exists: the largest run (k = 1) has confidence 1 - p**n, so
    n >= log(1 - confidence) / log(p)."""
    if not 0 < p < 1:
        raise ValueError("p must be in (0, 1): no number of runs bounds the maximum")
    n = max(1, math.ceil(math.log1p(-confidence) / math.log(p) - 1e-9))
    while 1 - p ** n < confidence:  # guard the ceil against rounding
        n += 1
    return n


def bound_rank(n: int, p: float, confidence: float) -> int | None:
    """The largest k (the least conservative run) whose k-th largest of ``n``
    runs is an upper ``confidence`` bound on the ``p``-quantile; None when
    even the largest is not (n < min_runs)."""
    best = None
    for k in range(1, n + 1):  # confidence falls as k grows
        if bound_confidence(k, n, p) < confidence:
            break
        best = k
    return best


def upper_bound(values, p: float, confidence: float) -> tuple[float, int | None, float]:
    """(bound, k, its confidence): the k-th largest of the observed ``values``
    as an upper ``confidence`` bound on their ``p``-quantile (``bound_rank``);
    (nan, None, nan) when the runs are too few for one."""
    import numpy as np
    a = np.sort(np.asarray(values, dtype=float))
    k = bound_rank(len(a), p, confidence) if len(a) else None
    if k is None:
        return math.nan, None, math.nan
    return float(a[len(a) - k]), k, bound_confidence(k, len(a), p)


def ordinal(k: int) -> str:
    return f"{k}{'th' if 10 <= k % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(k % 10, 'th')}"


# ---------------------------------------------------------------- qcow2 metadata
def qcow2_metadata_bytes(virtual_size: int, data_bytes: float, cluster_size: int,
                         refcount_bits: int = 16) -> int:
    """Host bytes a qcow2 image's own metadata takes beside ``data_bytes`` of
    allocated data clusters, at most (QEMU docs/interop/qcow2.txt):

    * the header: one cluster;
    * the L1 table: 8 bytes per L2 table of the whole virtual size, in whole
      clusters (allocated when the image is created);
    * L2 tables: one cluster each, 8 bytes per cluster of the image
      (cluster_size / 8 entries); allocated data may touch every table, so
      as many as the data's clusters, up to all of them;
    * refcount blocks: refcount_bits per host cluster (2 bytes at the default
      refcount_bits=16), in whole clusters, covering every host cluster —
      data and metadata, themselves included — and the refcount table,
      8 bytes per refcount block, in whole clusters.

    Filesystem overhead under the image file is not included."""
    cs = int(cluster_size)
    per_l2 = cs // 8
    vclusters = -(-int(virtual_size) // cs)
    data = -(-int(math.ceil(data_bytes)) // cs)
    l2_all = -(-vclusters // per_l2)
    l1 = max(1, -(-l2_all * 8 // cs))
    l2 = min(l2_all, data)
    fixed = 1 + l1 + l2 + data
    per_refblock = cs * 8 // refcount_bits
    refblocks = reftable = 1
    while True:  # the refcount structures count themselves: iterate to a fixed point
        host = fixed + refblocks + reftable
        rb = -(-host // per_refblock)
        rt = max(1, -(-rb * 8 // cs))
        if (rb, rt) == (refblocks, reftable):
            break
        refblocks, reftable = rb, rt
    return (1 + l1 + l2 + refblocks + reftable) * cs


@dataclass
class Constraints:
    no_spill: bool = False
    write_p99: float | None = None   # seconds
    max_stall: float | None = None   # seconds: the longest guest request
    window: float | None = None      # seconds: the backup must finish within
    percentile: float = 95.0
    replications: int | None = None  # None: the fewest that give a bound (min_runs)
    workers: tuple[int, ...] = WORKERS
    confidence: float = 0.9
    max_replications: int = MAX_REPLICATIONS
    node: str | None = None          # a vzdump fleet: the node asked about

    @property
    def p(self) -> float:
        return self.percentile / 100

    @property
    def needed(self) -> int:
        """Runs per worker count for the bound to exist (``min_runs``)."""
        return min_runs(self.p, self.confidence)

    @property
    def runs(self) -> int:
        """Runs per worker count this question plans: the asked replications,
        raised to ``needed``."""
        return max(self.replications or 0, self.needed)

    def bound_text(self, n: int, k: int | None = None) -> str:
        """e.g. 'upper 90% confidence bound on p95 from 45 runs, the 1st largest'."""
        head = f"upper {self.confidence * 100:g}% confidence bound on p{self.percentile:g}"
        if k is None:
            return f"{head}: {n} runs are too few (needs {self.needed})"
        return f"{head} from {n} runs, the {ordinal(k)} largest"

    @classmethod
    def parse(cls, *, no_spill=False, write_p99=None, max_stall=None, window=None,
              percentile=95.0, replications=None, workers=None, confidence=0.9,
              max_replications=MAX_REPLICATIONS, node=None) -> "Constraints":
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

        def whole(flag, v, none_ok=False):
            if v is None and none_ok:
                return None
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise UserError(f"{flag} {v}: expected a whole number >= 1")
            return v
        try:
            p = float(percentile)
        except (TypeError, ValueError):
            raise UserError(f"--percentile {percentile}: expected a number in (0, 100)") from None
        if p == 100:
            raise UserError(f"--percentile {percentile}: no number of runs bounds the worst "
                            f"case with confidence; expected a number in (0, 100), e.g. 99")
        if not 0 < p < 100:
            raise UserError(f"--percentile {percentile}: expected a number in (0, 100)")
        try:
            conf = float(confidence)
        except (TypeError, ValueError):
            raise UserError(f"--confidence {confidence}: expected a number in (0, 1), "
                            f"e.g. 0.9") from None
        if not 0 < conf < 1:
            raise UserError(f"--confidence {confidence}: expected a number in (0, 1), e.g. 0.9")
        reps = whole("--replications", replications, none_ok=True)
        cap = whole("--max-replications", max_replications)
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
        c = cls(bool(no_spill), dur("--write-p99", write_p99), dur("--max-stall", max_stall),
                dur("--window", window), p, reps, ws, conf, cap, node)
        if reps is not None and reps > cap:
            raise UserError(f"--replications {reps}: more than --max-replications {cap}")
        if c.needed > cap:
            raise UserError(f"--max-replications {cap}: an upper {conf * 100:g}% confidence "
                            f"bound on p{p:g} needs at least {c.needed} runs per worker "
                            f"count; raise --max-replications to {c.needed}, or lower "
                            f"--percentile or --confidence")
        return c

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


# ---------------------------------------------------------------- a vzdump node
def is_vzdump(cfg) -> bool:
    return bool(cfg.vms) and cfg.fleet.vzdump is not None


def axis_of(cfg) -> str:
    return FLEET_AXIS if is_vzdump(cfg) else AXIS


def scheme_of(cfg) -> str:
    """The scheme the advice is about: a vzdump node's is fleecing-push when any
    of its VMs fleeces (the space question), else backup."""
    if not is_vzdump(cfg):
        return cfg.scheme
    schemes = {c.scheme for _n, _s, c in cfg.vm_configs()}
    return "fleecing-push" if "fleecing-push" in schemes else "backup"


def node_of(cfg, node: str | None) -> str:
    """The node a vzdump fleet's question is about: ``node``, or the only one."""
    nodes = list(dict.fromkeys(cfg.vm_nodes()))
    if node is None:
        if len(nodes) > 1:
            raise UserError(f"advise: {cfg.name} has nodes {', '.join(nodes)}; say which "
                            f"one with --node")
        return nodes[0]
    if node not in nodes:
        raise UserError(f"--node {node}: no such node in {cfg.name} (expected one of "
                        f"{', '.join(nodes)})")
    return node


def node_runs(runs: pd.DataFrame, cfg, node: str) -> pd.DataFrame:
    """A vzdump fleet's runs with the node's figures under the one-VM column
    names ``analyse`` reads: its fleecing peak is the space (PVE's fleecing
    image is one image on one storage: no RAM tier, all of it on disk), its
    window the duration; latencies stay the worst VM's of the whole fleet."""
    r = runs.copy()
    for col in ("fleecing_peak_bytes", "backup_window_s"):
        key = f"node_{node}_{col}"
        r[col] = r[key] if key in r else math.nan
    r["disk_cache_peak_bytes"] = r["fleecing_peak_bytes"]
    r["ram_peak_bytes"] = 0.0
    r["spill_bytes"] = 0.0
    r["backup_duration_s"] = r["backup_window_s"]
    return r


def sweep_dict(cfg, cons: Constraints, replications: int | None = None) -> dict:
    """The sweep (a dict for ``run_sweep``) that answers the question for ``cfg``
    (one resolved variant): ``replications`` runs per worker count (default
    ``cons.runs``). Replication r's seed depends on r alone, so a larger count
    plans the same runs and more: resuming keeps the earlier ones."""
    from ..schemes import option_error
    scheme = scheme_of(cfg)
    if option_error(scheme, "max-workers") is not None:
        raise UserError(f"advise: the {scheme!r} scheme has no max-workers to choose "
                        f"(use backup, fleecing-push or fleecing-pull)")
    base = cfg.dump()
    base.pop("variants", None)
    sets: dict = {}
    if is_vzdump(cfg):
        node_of(cfg, cons.node)  # the node must exist
        if cons.no_spill:
            raise UserError("advise --no-spill: a vzdump node's fleecing image is one image "
                            "on its fleecing storage (no RAM tier to size)")
        for i, vm in enumerate(cfg.vms):  # a VM's own cache size would bound its image
            if "size" in (vm.backup.get("cache") or {}):
                raise UserError(f"advise: vms[{i}].backup.cache.size bounds that VM's "
                                f"fleecing image; leave it out to measure the space needed")
    else:
        base["backup"]["scheme"] = scheme
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
            "replications": replications or cons.runs,
            "grid": {axis_of(cfg): list(cons.workers)}}


def _col(df: pd.DataFrame, name: str) -> pd.Series:
    """A summary column as floats; all-missing when no run has it (a read-only
    workload has no write latencies, a write-only one no read latencies)."""
    if name in df:
        return df[name].astype(float)
    import pandas as pd
    return pd.Series(math.nan, index=df.index, dtype=float)


def workload_text(cfg) -> str:
    """The modelled workload, in the config's own terms."""
    w = cfg.workload
    if w.trace is not None:
        src = f"trace {os.path.basename(w.trace)} (time-scale {w.time_scale:g})"
    elif w.iops is not None:
        src = f"{w.iops:g} IOPS"
    else:
        src = f"iodepth {w.iodepth}"
    mix = ", ".join(f"{k} {v:g}" for k, v in (("read", w.mix.read), ("write", w.mix.write),
                                             ("discard", w.mix.discard)) if v)
    sizes = "/".join(fmt_size(sz) for sz, _w in w.size_weights())
    tail = "" if w.trace is not None else f", {mix}, {sizes} {w.pattern}"
    return f"{src}{tail}, on a {fmt_size(cfg.disk.size)} disk"


def assumptions(cfg, scheme: str, metadata_bytes: float) -> list[str]:
    """What the advice takes for granted, printed with it."""
    out = [f"it holds for the modelled workload only ({workload_text(cfg)}); another "
           f"guest load needs its own runs"]
    if is_vzdump(cfg):
        out[0] = (f"it holds for the modelled VMs only ({len(cfg.vms)} VMs, shared workload "
                  f"{workload_text(cfg)}, each VM's own keys over it); other guests need "
                  f"their own runs")
        out.append("vzdump backs up one VM at a time per node (PVE/VZDump.pm exec_backup) "
                   "and removes each VM's fleecing image after its backup, so the node "
                   "needs the space of its largest VM's backup, not the sum; the guests "
                   "of all VMs run all night")
        if has_cache(scheme):
            out.append("PVE creates the fleecing image in the fleecing storage's default "
                       "format (qemu-server PVE/VZDump/QemuServer.pm: "
                       "allocate_fleecing_images): raw on LVM-thin or ZFS carries no qcow2 "
                       "metadata, the qcow2 metadata figure is for a directory storage")
    if has_cache(scheme):
        cs = cfg.backup.cache.cluster_size
        out.append(f"the disk tier includes {fmt_size(metadata_bytes)} of qcow2 metadata for "
                   f"{fmt_size(cs)} clusters (header, L1, L2 tables at 8 bytes per image "
                   f"cluster, refcount blocks at 2 bytes per cluster with refcount_bits=16; "
                   f"QEMU docs/interop/qcow2.txt); the filesystem's own overhead under the "
                   f"image is not included")
    if cfg.backup.discard_source:
        out.append("read-once (backup.discard-source) frees a copied cluster only if the "
                   "fleecing image's node discards (discard=unmap on its blockdev); "
                   "discard-source needs QEMU >= 9.1: without both, reserve the space the "
                   "same VM needs without read-once")
    elif has_cache(scheme):
        out.append("no read-once: copied clusters stay allocated until the backup ends "
                   "(backup.discard-source would free them, if the fleecing node has "
                   "discard=unmap; it needs QEMU >= 9.1)")
    out.append("each figure is its own bound (space, latency, duration), not a joint "
               "bound on all of them at once")
    return out


@dataclass
class Advice:
    question: str
    constraints: Constraints
    scheme: str
    table: pd.DataFrame            # one row per worker count
    workers: int | None            # None: no count meets every constraint
    space_bytes: float = math.nan  # fleecing space to reserve: data bound + qcow2 metadata
    ram_bytes: float = math.nan    # RAM tier to reserve
    disk_bytes: float = math.nan   # disk tier to reserve, qcow2 metadata included
    data_bytes: float = math.nan   # the bound on the data alone (what the runs measured)
    metadata_bytes: float = 0.0    # qcow2 metadata added to the disk tier
    runs: int = 0                  # runs (without error) the chosen count's bounds use
    rank: int | None = None        # the bound is the rank-th largest of them
    assumptions: list[str] = field(default_factory=list)
    unmet: list[str] = field(default_factory=list)
    axis: str = AXIS               # the swept key

    @property
    def met(self) -> bool:
        return self.workers is not None

    def text(self) -> str:
        c = self.constraints
        if not self.met:
            lines = [f"NO worker count in {list(c.workers)} meets {c.describe()} "
                     f"({c.bound_text(c.runs, 1)}):"]
            lines += [f"  - {u}" for u in self.unmet]
            lines.append("assumptions:")
            lines += [f"  - {a}" for a in self.assumptions]
            return "\n".join(lines)
        row = self.table.set_index("workers").loc[self.workers]
        lines = [f"max-workers {self.workers}; reserve {fmt_size(self.space_bytes)} of "
                 f"fleecing space (constraints: {c.describe()})",
                 f"  space {fmt_size(self.data_bytes)}: {c.bound_text(self.runs, self.rank)}"
                 f" (it needs at least {c.needed} runs: 1 - {c.p:g}^N >= {c.confidence:g})"]
        if has_cache(self.scheme):
            lines.append(f"  + qcow2 metadata {fmt_size(self.metadata_bytes)} (disk tier)")
            lines.append(f"  RAM tier {fmt_size(self.ram_bytes)}, disk tier "
                         f"{fmt_size(self.disk_bytes)}")
        lines.append(f"  then: write p99 {fmt_time(row.write_p99_s)}, longest request "
                     f"{fmt_time(row.stall_s)}, backup {fmt_time(row.duration_s)} "
                     f"(each the same bound)")
        lines.append("assumptions:")
        lines += [f"  - {a}" for a in self.assumptions]
        return "\n".join(lines)

    def table_text(self) -> str:
        from ..report import _render
        rows = []
        for r in self.table.itertuples():
            rows.append([str(r.workers), str(r.runs), fmt_size(r.space_bytes), fmt_size(r.ram_bytes),
                         fmt_size(r.disk_bytes), fmt_time(r.write_p99_s), fmt_time(r.stall_s),
                         fmt_time(r.duration_s), "yes" if r.feasible else r.why])
        c = self.constraints
        p = f"p{c.percentile:g}"
        header = ["workers", "runs", f"space {p}", f"RAM {p}", f"disk {p}",
                  f"write p99 {p}", f"longest {p}", f"backup {p}", "meets constraints"]
        text = _render(header, rows).splitlines()
        # the last column is words: left-aligned reads better
        note = (f"each {p} cell: the upper {c.confidence * 100:g}% confidence bound on the "
                f"{p} over backups (the k-th largest run; data only, no qcow2 metadata)")
        return "\n".join([note] + [line.rstrip() for line in text])


def analyse(runs: pd.DataFrame, cons: Constraints, cfg) -> Advice:
    """The advice from a sweep's runs (``load_runs`` of ``sweep_dict``'s sweep)."""
    import numpy as np
    import pandas as pd
    scheme, axis = scheme_of(cfg), axis_of(cfg)
    if is_vzdump(cfg):
        runs = node_runs(runs, cfg, node_of(cfg, cons.node))
    p, conf = cons.p, cons.confidence
    rows = []
    for w in cons.workers:
        g = runs[runs[axis] == w]
        errs = g["error"].dropna() if len(g) else pd.Series([], dtype=object)
        why = []
        if len(g) < cons.runs:
            why.append(f"{cons.runs - len(g)} runs missing")
        if len(errs):
            why.append(f"{len(errs)} runs failed: {str(errs.iloc[0])[:80]}")
        ok = g[g["error"].isna()] if len(g) else g
        done = ok["backup_outcome"] == "complete" if len(ok) else pd.Series([], dtype=bool)
        bad = ok[(ok["backup_outcome"] != "complete") & (ok["backup_outcome"] != "unfinished")]
        if len(bad):
            why.append(f"{len(bad)} backups {bad['backup_outcome'].iloc[0]}")
        dur = _col(ok, "backup_duration_s").where(done, math.inf)
        stall = np.fmax(_col(ok, "write_max_s"), _col(ok, "read_max_s")).fillna(0)
        space, k, got = upper_bound(_col(ok, "fleecing_peak_bytes"), p, conf)
        r = {"workers": w, "runs": len(ok), "rank": k, "confidence": got,
             "space_bytes": space,
             "ram_bytes": upper_bound(_col(ok, "ram_peak_bytes").fillna(0), p, conf)[0],
             "disk_bytes": upper_bound(_col(ok, "disk_cache_peak_bytes").fillna(0), p, conf)[0],
             "spill_max_bytes": float(_col(ok, "spill_bytes").max()) if len(ok) else math.nan,
             # no writes (a read-only workload): no write latency to hold to a limit
             "write_p99_s": upper_bound(_col(ok, "write_p99_s").fillna(0), p, conf)[0],
             "stall_s": upper_bound(stall, p, conf)[0],
             "duration_s": upper_bound(dur, p, conf)[0]}
        if k is None:
            why.append(f"{len(ok)} runs: too few for an upper {conf * 100:g}% bound on "
                       f"p{cons.percentile:g} (needs {cons.needed})")
        elif cons.window is not None and not r["duration_s"] <= cons.window:
            why.append(f"backup {fmt_time(r['duration_s'])} > {fmt_time(cons.window)}"
                       if math.isfinite(r["duration_s"]) else
                       f"backup unfinished within {fmt_time(cons.window)}")
        elif cons.window is None and math.isinf(r["duration_s"]):
            why.append("backup unfinished at run.max-time")
        if k is not None:
            if cons.write_p99 is not None and not r["write_p99_s"] <= cons.write_p99:
                why.append(f"write p99 {fmt_time(r['write_p99_s'])} > "
                           f"{fmt_time(cons.write_p99)}")
            if cons.max_stall is not None and not r["stall_s"] <= cons.max_stall:
                why.append(f"longest {fmt_time(r['stall_s'])} > {fmt_time(cons.max_stall)}")
        if cons.no_spill and has_cache(scheme) and r["spill_max_bytes"] > 0:
            why.append(f"spilled {fmt_size(r['spill_max_bytes'])} with a disk-sized RAM tier")
        r["feasible"] = not why
        r["why"] = "; ".join(why)
        rows.append(r)
    table = pd.DataFrame(rows)
    where = (f"{cfg.name}, node {node_of(cfg, cons.node)!r} (vzdump, one VM at a time)"
             if is_vzdump(cfg) else cfg.name)
    question = (f"{where}: how much fleecing space and how many workers for "
                f"{cons.describe()}? (upper {conf * 100:g}% confidence bounds on "
                f"p{cons.percentile:g}, {cons.runs} runs per worker count)")
    adv = Advice(question, cons, scheme, table, None, axis=axis)
    adv.assumptions = assumptions(cfg, scheme, _metadata(cfg, scheme, 0.0))
    feas = table[table["feasible"]]
    if not len(feas):
        adv.unmet = _unmet(table, cons)
        return adv
    least = feas["space_bytes"].min()
    pick = feas[feas["space_bytes"] <= least * (1 + SPACE_SLACK)].iloc[0]
    adv.workers = int(pick["workers"])
    adv.runs, adv.rank = int(pick["runs"]), int(pick["rank"])
    adv.data_bytes = float(pick["space_bytes"])
    if not has_cache(scheme):
        adv.ram_bytes = adv.disk_bytes = 0.0
        adv.space_bytes = adv.data_bytes
        return adv
    if cons.no_spill:
        adv.ram_bytes, disk_data = float(pick["ram_bytes"]), 0.0
    elif is_vzdump(cfg):
        adv.ram_bytes, disk_data = 0.0, float(pick["disk_bytes"])
    else:
        adv.ram_bytes = float(cfg.backup.cache.ram.size)
        disk_data = float(pick["disk_bytes"])
    adv.metadata_bytes = float(_metadata(cfg, scheme, disk_data))
    adv.disk_bytes = disk_data + adv.metadata_bytes
    adv.space_bytes = adv.data_bytes + adv.metadata_bytes
    adv.assumptions = assumptions(cfg, scheme, adv.metadata_bytes)
    return adv


def _metadata(cfg, scheme: str, disk_data: float) -> int:
    """qcow2 metadata of the fleecing image holding ``disk_data`` bytes (0 for a
    scheme without a fleecing image)."""
    if not has_cache(scheme):
        return 0
    if is_vzdump(cfg):  # one VM's image at a time: the largest of them
        return max(qcow2_metadata_bytes(c.disk.size, disk_data, c.backup.cache.cluster_size)
                   for _n, _s, c in cfg.vm_configs() if c.scheme == "fleecing-push")
    return qcow2_metadata_bytes(cfg.disk.size, disk_data, cfg.backup.cache.cluster_size)


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
    import numpy as np
    from matplotlib.figure import Figure
    c = advice.constraints
    fig = Figure(figsize=(11, 4.6))
    ax1, ax2 = fig.subplots(1, 2)
    qs = np.linspace(0, 100, 101)
    import matplotlib
    cmap = matplotlib.colormaps["viridis"]
    for i, w in enumerate(c.workers):
        g = runs[(runs[advice.axis] == w) & runs["error"].isna()]
        if not len(g):
            continue
        peaks = g["fleecing_peak_bytes"].astype(float).to_numpy()
        y = np.percentile(peaks, qs, method="higher") / 2**20
        chosen = w == advice.workers
        ax1.plot(qs, y, color=cmap(i / max(1, len(c.workers) - 1)), lw=2.6 if chosen else 1.2,
                 label=f"{w} workers" + (" (advice)" if chosen else ""))
    ax1.axvline(c.percentile, color="k", ls=":", lw=1, label=f"p{c.percentile:g}")
    if advice.met:
        ax1.plot([c.percentile], [advice.data_bytes / 2**20], "o", color="crimson", ms=8,
                 label=f"upper {c.confidence * 100:g}% bound {fmt_size(advice.data_bytes)}"
                       f" (+{fmt_size(advice.metadata_bytes)} qcow2 metadata)")
    ax1.set_xlabel(f"percentile of the {c.runs}+ runs per worker count (observed, %)")
    ax1.set_ylabel("fleecing space needed (MiB)")
    ax1.set_title("fleecing space needed vs percentile")
    ax1.legend(fontsize=8)
    t = advice.table
    ub = f"upper {c.confidence * 100:g}% bound on p{c.percentile:g}"
    ax2.plot(t["workers"], t["write_p99_s"] * 1e3, "o-", label=f"write p99 ({ub})")
    ax2.plot(t["workers"], t["stall_s"] * 1e3, "s--", alpha=0.6,
             label=f"longest request ({ub})")
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
    if (t[["write_p99_s", "stall_s"]].to_numpy() > 0).all():
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
                  dask_local=False, resume=True, quiet=True, say=None):
    """Run the sweep for ``cfg`` (one variant) and return (Advice, runs, results dir).

    ``cons.runs`` runs per worker count; while a count has fewer runs without
    error than the bound needs, replications are added (up to
    ``cons.max_replications``) and the sweep resumed, so the runs stored
    before are kept. ``resume`` (the default) keeps runs an earlier advise of
    the same question stored in ``results_dir`` (a run's id is the hash of
    its config and seed: a changed question never reuses one). Unless
    ``quiet``, the sweep shows its progress (a bar at a terminal, else lines:
    progress.py); ``say``: where to tell the user that replications were
    raised (default: nowhere)."""
    from ..sweep import load_runs, run_sweep
    reps = cons.runs
    if say and cons.replications is not None and cons.replications < reps:
        say(f"advise: --replications {cons.replications} is too few for an upper "
            f"{cons.confidence * 100:g}% confidence bound on p{cons.percentile:g} (it needs "
            f"{cons.needed} runs: 1 - {cons.p:g}^N >= {cons.confidence:g}); running {reps} "
            f"per worker count")
    warn = True  # the cost warnings once: more replications do not change them
    while True:
        sweep = sweep_dict(cfg, cons, reps)
        out = run_sweep(sweep, results_dir=results_dir, jobs=jobs, scheduler=scheduler,
                        dask_local=dask_local, resume=resume, quiet=quiet, warn=warn)
        warn = False
        runs = load_runs(out)
        ok = runs[runs["error"].isna()]
        fewest = min(int((ok[axis_of(cfg)] == w).sum()) for w in cons.workers)
        if fewest >= cons.needed or reps >= cons.max_replications:
            break
        more = min(cons.max_replications, reps + cons.needed - fewest)
        if say:
            say(f"advise: {cons.needed - fewest} runs failed at some worker count; adding "
                f"replications {reps}..{more - 1}")
        reps, resume = more, True
    if is_vzdump(cfg):  # the node's figures under the one-VM names (what plot reads)
        runs = node_runs(runs, cfg, node_of(cfg, cons.node))
    return analyse(runs, replace(cons, replications=reps), cfg), runs, out

