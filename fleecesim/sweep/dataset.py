"""The results of a sweep on disk: a Parquet dataset under results/<sweep>/.

    sweep.json                 manifest: name, axes, every run id in output order
    runs/<run_id>.parquet      one row per run: ids, axis values, every summary key
    timelines/<run_id>.parquet levels over time (cache bytes per tier, in flight)
    latency/<run_id>.parquet   guest-write latency quantiles, baseline and backup

Every file is written atomically (temp file + rename) and a run's row is
written last, so a row present means the run is complete: ``--resume`` skips
exactly the runs with a row, and a killed sweep leaves no half-written file.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..errors import UserError
from ..store import atomic_write_parquet, atomic_write_text, read_json, read_parquet, to_json
from .spec import Run, SweepSpec

PARTS = ("runs", "timelines", "latency")


def write_manifest(out: Path, spec: SweepSpec, runs: list[Run], source: str | None) -> None:
    m = {"name": spec.name, "description": spec.description, "source": source,
         "replications": max((r.replication for r in runs), default=-1) + 1,
         "axes": spec.axis_keys(), "spec": spec.model_dump(),
         "runs": [{"run_id": r.run_id, "index": r.index, "point": r.point,
                   "replication": r.replication, "variant": r.variant} for r in runs]}
    atomic_write_text(out / "sweep.json", to_json(m, indent=1))


def read_manifest(out: str | Path) -> dict:
    p = Path(out) / "sweep.json"
    if not p.is_file():
        raise UserError(f"{out}: not a sweep results directory (no sweep.json)")
    m = read_json(p)
    if not isinstance(m, dict) or not isinstance(m.get("runs"), list):
        raise UserError(f"{p}: not a sweep manifest (no list of runs)")
    return m


def clean_temp(out: Path) -> None:
    """Remove temp files a killed sweep left behind (never complete files)."""
    for part in PARTS:
        for p in (out / part).glob(".*.tmp"):
            p.unlink(missing_ok=True)


def clear(out: Path) -> None:
    """Drop a previous sweep's results in ``out`` (a fresh, non-resumed sweep)."""
    for part in PARTS:
        for p in (out / part).glob("*.parquet"):
            p.unlink()
    clean_temp(out)


def done_ids(out: Path) -> set[str]:
    return {p.stem for p in (out / "runs").glob("*.parquet")}


def write_output(out: Path, result: dict) -> None:
    """One run's files; its row last (the row marks the run as done)."""
    rid = result["row"]["run_id"]
    if result.get("timeline") is not None and len(result["timeline"]):
        atomic_write_parquet(out / "timelines" / f"{rid}.parquet", result["timeline"])
    if result.get("latency") is not None and len(result["latency"]):
        atomic_write_parquet(out / "latency" / f"{rid}.parquet", result["latency"])
    atomic_write_parquet(out / "runs" / f"{rid}.parquet", pd.DataFrame([result["row"]]))


def _numeric_objects(df: pd.DataFrame) -> pd.DataFrame:
    """Columns that are numbers in some rows and missing in others come back as
    object; make them numeric again."""
    for c in df.columns:
        if df[c].dtype == object:
            vals = df[c].dropna()
            if len(vals) and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                 for v in vals):
                df[c] = pd.to_numeric(df[c])
    return df


def _read_parts(out: Path, part: str, ids: list[str]) -> list[pd.DataFrame]:
    frames = []
    for rid in ids:
        p = out / part / f"{rid}.parquet"
        if p.is_file():
            frames.append(read_parquet(p))
    return frames


def load_runs(out: str | Path) -> pd.DataFrame:
    """One row per completed run, in the sweep's order (deterministic whatever
    order runs finished in). ``df.attrs['axes']`` names the axis columns."""
    out = Path(out)
    m = read_manifest(out)
    ids = [r["run_id"] for r in m["runs"]]
    frames = [f.dropna(axis=1, how="all") for f in _read_parts(out, "runs", ids)]
    if not frames:
        df = pd.DataFrame(columns=["run_id", "index", "point", "replication", "variant"])
    else:
        df = pd.concat(frames, ignore_index=True, sort=False)
        df = df.sort_values("index", kind="stable").reset_index(drop=True)
    for c in ("error", "traceback"):
        if c not in df:
            df[c] = None
    df = _numeric_objects(df)
    df.attrs["axes"] = [a for a in m["axes"] if a in df.columns]
    df.attrs["name"] = m["name"]
    return df


def _with_labels(out: Path, part: str) -> pd.DataFrame:
    runs = load_runs(out)
    keep = ["run_id", "index", "point", "replication", "variant"] + runs.attrs["axes"]
    frames = _read_parts(out, part, list(runs["run_id"]))
    if not frames:
        return pd.DataFrame(columns=keep)
    df = pd.concat(frames, ignore_index=True).merge(runs[keep], on="run_id", how="left")
    df = df.sort_values("index", kind="stable").reset_index(drop=True)
    df.attrs.update(runs.attrs)
    return df


def load_timelines(out: str | Path) -> pd.DataFrame:
    """Every run's levels over time, with the run's axis values and variant."""
    return _with_labels(Path(out), "timelines")


def load_latency(out: str | Path) -> pd.DataFrame:
    """Every run's guest-write latency quantiles, with axis values and variant."""
    return _with_labels(Path(out), "latency")
