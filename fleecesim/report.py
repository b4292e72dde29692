"""Human-readable tables of run summaries (side by side, one column a variant)."""
from __future__ import annotations

import math

from .deadlines import DEADLINES_S
from .units import fmt_size, fmt_time

# (summary key, label, formatter)
ROWS = [
    ("scheme", "scheme", str),
    ("backup_duration_s", "backup duration", fmt_time),
    ("guest_ios", "guest I/Os", lambda v: _count(v)),
    ("read_p50_s", "read p50 (backup)", fmt_time),
    ("read_p99_s", "read p99 (backup)", fmt_time),
    ("write_p50_s", "write p50 (backup)", fmt_time),
    ("write_p99_s", "write p99 (backup)", fmt_time),
    ("write_p99_baseline_s", "write p99 (baseline)", fmt_time),
    ("write_max_s", "write max (backup)", fmt_time),
    ("write_tail_attribution_s", "slowest 1% writes: in", lambda d: _top_part(d)),
    ("cbw_count", "CBW count", lambda v: _count(v)),
    ("cbw_bytes", "CBW bytes", fmt_size),
    ("source_read_bytes", "source read", fmt_size),
    ("target_write_bytes", "target write", fmt_size),
    ("local_write_bytes", "local write", fmt_size),
    ("local_read_bytes", "local read", fmt_size),
    ("fleecing_peak_bytes", "fleecing peak", fmt_size),
    # --- a pbs target (nodes/pbs.py); rows only where a run has one ---
    ("pbs_chunks_uploaded", "PBS chunks uploaded", lambda v: _count(v)),
    ("pbs_chunks_known", "PBS chunks known", lambda v: _count(v)),
    ("pbs_chunks_zero", "PBS zero chunks", lambda v: _count(v)),
    ("pbs_net_up_bytes", "PBS network up", fmt_size),
    ("pbs_bottleneck", "PBS bottleneck stage", str),
    ("pbs_finish_after_job_s", "PBS finish after job", fmt_time),
    # --- tiered fleecing cache (RAM tier, spill, flush); hidden when zero in every column ---
    ("ram_peak_bytes", "RAM tier peak", fmt_size),
    ("disk_cache_peak_bytes", "disk tier peak", fmt_size),
    ("spill_bytes", "spill to disk tier", fmt_size),
    ("flush_bytes", "flushed RAM->disk", fmt_size),
    ("cor_admitted", "COR stored (clusters)", str),
    ("cor_dropped", "COR dropped (clusters)", str),
    ("ram_read_hits", "guest reads from RAM", str),
    ("cbw_absorbed", "writes w/o copy (cached)", str),
    ("deferred_discards", "discards deferred", str),
    ("cbw_errors", "CBW errors", str),
    ("snapshot_broken", "snapshot broken", str),
    # --- faults and deadlines; counts hidden when zero everywhere ---
    ("writes_failed", "guest writes failed", str),
    # --- error policies (fleecesim/error_policy.py) ---
    ("errors_ignored", "guest errors ignored", str),
    ("vm_stops", "VM stops (werror)", str),
    ("vm_paused_s", "VM paused", fmt_time),
    ("guest_requests_held", "guest I/Os held", str),
    ("guest_requests_retried", "guest I/Os retried", str),
    ("job_errors", "BLOCK_JOB_ERRORs", str),
    ("job_paused_s", "job paused", fmt_time),
    ("guest_requests_unfinished", "guest I/Os unanswered", str),
    ("target_errors", "target errors", str),
    ("cache_full_errors", "fleecing ENOSPC", str),
    ("cbw_timeouts", "CBW timeouts", str),
    ("thin_extensions", "thin extensions", str),
    ("thin_waits", "writes waited (thin)", str),
    ("longest_stall_s", "longest stall (backup)", fmt_time),
    ("longest_stall_after_t0_s", "  arrived (t0 = backup start)", lambda v: _after_t0(v)),
    *[(f"guest_requests_over_{d}s", f"I/Os > {d}s (backup)", str) for d in DEADLINES_S],
    ("longest_stall_overall_s", "longest stall (all)", fmt_time),
    ("longest_stall_overall_after_t0_s", "  arrived (t0 = backup start)",
     lambda v: _after_t0(v)),
    *[(f"guest_requests_over_{d}s_overall", f"I/Os > {d}s (all)", str) for d in DEADLINES_S],
    ("backup_outcome", "backup outcome", str),
    ("guest_overloaded", "guest overloaded", str),
    ("oracle_ok", "oracle ok", str),
    ("oracle_violations", "oracle violations", lambda v: _count(v)),
    ("wall_time_s", "wall time", lambda v: f"{v:,.2f}s"),
]


PART_WORDS = {"queue": "queue", "service": "device", "cbw_read": "CBW read",
              "cache_write": "CBW local write", "target_write": "CBW target write",
              "inflight_wait": "in-flight wait", "frozen_wait": "frozen wait",
              "cache_full_wait": "room wait", "error": "error"}


def _top_part(parts: dict) -> str:
    """The component most of the time went to, and its share (metrics.COMPONENTS)."""
    total = sum(parts.values())
    if not parts or total <= 0:
        return "-"
    k = max(parts, key=parts.get)
    return f"{PART_WORDS.get(k, k)} {100 * parts[k] / total:.0f}%"


def _count(v) -> str:
    """A count with thousands separators: "3,836,599"."""
    return f"{v:,}" if isinstance(v, int) and not isinstance(v, bool) else str(v)


def _after_t0(v: float) -> str:
    """A simulated time as an offset from the backup's start: "t0+24.6s"."""
    return f"t0{'-' if v < 0 else '+'}{fmt_time(abs(v))}"


def _stall_times(s: dict) -> dict:
    """The longest stalls' arrival times (``*_at_s``: simulated time since the
    run began, warm-up included) as offsets from the backup's start, the time
    base of every other figure of the backup."""
    t0 = s.get("backup_start_s")
    out = dict(s)
    for k in ("longest_stall", "longest_stall_overall"):
        at = s.get(f"{k}_at_s")
        if f"{k}_at_s" in s:
            out[f"{k}_after_t0_s"] = at - t0 if _number(at) and _number(t0) else None
    return out


def _fmt(f, v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    try:
        return f(v)
    except (TypeError, ValueError):
        return str(v)


# Rows shown only when some column has a non-zero / true value (the tiered cache's keys
# are in every summary; a table of single-tier schemes need not show them).
HIDE_WHEN_ZERO = {"ram_peak_bytes", "disk_cache_peak_bytes", "spill_bytes", "flush_bytes",
                  "cor_admitted", "cor_dropped", "ram_read_hits", "cbw_absorbed",
                  "deferred_discards", "cbw_errors", "snapshot_broken",
                  "writes_failed", "guest_requests_unfinished", "target_errors",
                  "errors_ignored", "vm_stops", "vm_paused_s", "guest_requests_held",
                  "guest_requests_retried", "job_errors", "job_paused_s",
                  "cache_full_errors", "cbw_timeouts", "thin_extensions", "thin_waits",
                  *[f"guest_requests_over_{d}s{w}" for d in DEADLINES_S
                    for w in ("", "_overall")]}
# The longest stall over the whole run is shown only when some request took
# over a second (else it is the backup's, or a baseline's microseconds).
STALL_OVERALL = {"longest_stall_overall_s", "longest_stall_overall_after_t0_s"}


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not (isinstance(v, float) and math.isnan(v))


def table(summaries: list[dict], rows=None, extra: list[str] = ()) -> str:
    summaries = [_stall_times(s) for s in summaries]
    rows = list(rows or ROWS) + [(k, k, str) for k in extra]
    rows = [r for r in rows if any(r[0] in s for s in summaries)]
    tier_rows = {"spill_bytes", "disk_cache_peak_bytes"}
    if any(s.get("ram_peak_bytes") for s in summaries):  # a tiered cache: always show these
        rows = [r for r in rows if r[0] in tier_rows or r[0] not in HIDE_WHEN_ZERO
                or any(s.get(r[0]) for s in summaries)]
    else:  # one tier: its peak is the fleecing peak, and nothing can spill
        rows = [r for r in rows if r[0] not in tier_rows and (
            r[0] not in HIDE_WHEN_ZERO or any(s.get(r[0]) for s in summaries))]
    if not any(s.get("guest_requests_over_1s_overall") for s in summaries):
        rows = [r for r in rows if r[0] not in STALL_OVERALL]
    if not any(_number(s.get("longest_stall_s")) for s in summaries):  # an idle guest
        rows = [r for r in rows if r[0] not in ("longest_stall_s", "longest_stall_after_t0_s")]
    if len(summaries) > WIDE_MAX:
        return _long_table(summaries, rows)
    header = [""] + [s.get("name", "?") for s in summaries]
    body = [[label] + [_fmt(f, s.get(key)) if key in s else "-" for s in summaries]
            for key, label, f in rows]
    for s in summaries:
        if s.get("error"):
            body.append(["error"] + [s.get("error", "") if x is s else "" for x in summaries])
    return _render(header, body)


# More variants than this: one row per variant with the key metrics (a
# side-by-side table would not fit a terminal).
WIDE_MAX = 6
LONG_KEYS = ("scheme", "backup_duration_s", "write_p50_s", "write_p99_s",
             "write_tail_attribution_s", "read_p99_s",
             "cbw_count", "fleecing_peak_bytes", "ram_peak_bytes", "spill_bytes",
             "local_write_bytes", "local_read_bytes", "writes_failed", "vm_paused_s",
             "guest_requests_held", "job_paused_s", "longest_stall_s",
             "guest_requests_over_1s", "guest_requests_over_60s", "backup_outcome",
             "oracle_ok")
SHORT = {"backup duration": "duration", "write p50 (backup)": "write p50",
         "write p99 (backup)": "write p99", "read p99 (backup)": "read p99",
         "slowest 1% writes: in": "slowest 1% writes: in"}


def _long_table(summaries: list[dict], rows) -> str:
    cols = [r for r in rows if r[0] in LONG_KEYS]
    header = ["variant"] + [SHORT.get(label, label) for _k, label, _f in cols]
    body = [[s.get("name", "?")] + [_fmt(f, s.get(k)) if k in s else "-" for k, _l, f in cols]
            + ([f"error: {s['error']}"] if s.get("error") else []) for s in summaries]
    if any(s.get("error") for s in summaries):
        header.append("")
        body = [b + [""] * (len(header) - len(b)) for b in body]
    return _render(header, body)


def _render(header: list[str], body: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [header] + body) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in
                       enumerate(zip(r, widths))) for r in [header] + body]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


RESULT_FILES = ("requests.parquet", "timeline.parquet", "summary.json")


def saved_line(outdir, run_dirs) -> str:
    """One line: where a run's results went and how much they take, so that a
    long run's per-request file (one row per guest request) is no surprise.
    ``run_dirs``: the variant directories ``store.write_run`` wrote."""
    from pathlib import Path
    outdir = Path(outdir)
    files = [p for d in run_dirs for p in (Path(d) / f for f in RESULT_FILES) if p.is_file()]
    files += [outdir / "summary.json"] if (outdir / "summary.json").is_file() else []
    total = sum(p.stat().st_size for p in files)
    req = sum(p.stat().st_size for p in files if p.name == "requests.parquet")
    line = f"results in {outdir}/: {fmt_size(total)} in {len(files)} files"
    if req:
        line += f" ({fmt_size(req)} of them requests.parquet, one row per guest request)"
    return line + "; --no-save writes none"


def sweep_saved_line(outdir, run_ids) -> str:
    """``saved_line`` for a sweep: where its results went and how much they
    take, per part (sweep/dataset.py: sweep.json, and a file per run in runs/,
    timelines/ and latency/). ``run_ids``: the sweep's runs (its manifest's);
    files of other sweeps or plots in the folder are not counted."""
    from pathlib import Path

    from .sweep.dataset import PARTS
    outdir = Path(outdir)
    man = outdir / "sweep.json"
    files, parts = [man] if man.is_file() else [], []
    for part in PARTS:
        got = [p for p in (outdir / part / f"{rid}.parquet" for rid in run_ids) if p.is_file()]
        if got:
            parts.append(f"{part}/ {fmt_size(sum(p.stat().st_size for p in got))}")
        files += got
    total = sum(p.stat().st_size for p in files)
    return (f"results in {outdir}/: {fmt_size(total)} in {len(files)} files"
            + (f" ({', '.join(parts)})" if parts else ""))


def vzdump_table(summary: dict) -> str:
    """A fleet run under vzdump's schedule as its admin reads it: per VM in
    backup order its node, start, end and duration (seconds after the warm-up)
    and fleecing peak, then per node its window and fleecing peak."""
    warm = summary.get("config", {}).get("run", {}).get("warmup", 0.0) or 0.0
    # a pbs target names the stage its chunks waited on most (nodes/pbs.py)
    stage = any("pbs_bottleneck" in v for v in summary.get("vms", ()))
    body = []
    for n in summary.get("nodes", ()):
        for name in n["vms"]:
            v = next(x for x in summary["vms"] if x["name"] == name)
            body.append([n["name"], name, f"{v['backup_start_s'] - warm:.1f}s",
                         f"{v['backup_end_s'] - warm:.1f}s",
                         f"{v['backup_duration_s']:.1f}s",
                         fmt_size(v.get("fleecing_peak_bytes") or 0)]
                        + ([str(v.get("pbs_bottleneck") or "-")] if stage else [])
                        + [v["backup_outcome"]])
        body.append([n["name"], "(node)", f"{n['backup_start_s'] - warm:.1f}s",
                     f"{n['backup_end_s'] - warm:.1f}s", f"{n['backup_window_s']:.1f}s",
                     fmt_size(n["fleecing_peak_bytes"])] + ([""] if stage else []) + [""])
    return _render(["node", "vm", "start", "end", "duration / window", "fleecing peak"]
                   + (["bottleneck"] if stage else []) + ["outcome"], body)
