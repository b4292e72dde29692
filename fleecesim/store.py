"""Writing results: atomic files (a killed run never leaves a half-written one)."""
from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd


def _jsonable(o):
    if isinstance(o, dict):
        return {str(k): _jsonable(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_jsonable(v) for v in o]
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating, float)):
        f = float(o)
        return None if math.isnan(f) or math.isinf(f) else f
    if isinstance(o, np.bool_):
        return bool(o)
    return o


def to_json(obj, indent=None) -> str:
    return json.dumps(_jsonable(obj), indent=indent, sort_keys=False)


def _umask() -> int:
    """The process umask, read without changing it where the OS allows."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    old = os.umask(0o022)  # not Linux: the classic read-and-restore
    os.umask(old)
    return old


def _temp(path: Path) -> tuple[int, str]:
    """A temp file next to ``path``, with the mode a plain open() would give
    (mkstemp makes it 0600, and os.replace would keep that)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())
    except BaseException:
        os.close(fd)
        os.unlink(tmp)
        raise
    return fd, tmp


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _temp(path)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_write_parquet(path: str | Path, df: pd.DataFrame) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _temp(path)
    os.close(fd)
    try:
        df.to_parquet(tmp, index=False)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_run(outdir: str | Path, result) -> Path:
    """results/<name>/<variant>/{requests,timeline}.parquet + summary.json"""
    d = Path(outdir) / result.name
    if result.requests is not None and len(result.requests):
        atomic_write_parquet(d / "requests.parquet", result.requests)
    if result.timeline is not None and len(result.timeline):
        atomic_write_parquet(d / "timeline.parquet", result.timeline)
    atomic_write_text(d / "summary.json", to_json(result.summary, indent=2))
    return d


# ---------------------------------------------------------------- reading back
def _why(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0][:160] if text else type(e).__name__


def read_json(path: str | Path):
    """A results file's JSON; a truncated or foreign file is one line naming it
    (a UserError), never a JSONDecodeError traceback."""
    from .errors import UserError
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (ValueError, OSError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise UserError(f"{path}: not a readable results file ({_why(e)}); remove it and "
                        f"run again") from None


def read_parquet(path: str | Path, **kw) -> pd.DataFrame:
    """A results Parquet file; a truncated or foreign file is one line naming it
    (a UserError), never an ArrowInvalid traceback."""
    try:
        return pd.read_parquet(path, **kw)
    except parquet_errors() as e:
        raise unreadable_parquet(path, e) from None


def parquet_errors() -> tuple:
    """What pyarrow raises on a truncated or foreign file (imported only then:
    an except clause is evaluated when an exception reaches it)."""
    import pyarrow as pa
    return (pa.ArrowException, OSError, ValueError)


def unreadable_parquet(path, e: BaseException):
    """The one-line UserError for a results Parquet file pyarrow cannot read."""
    from .errors import UserError
    why = e.strerror if isinstance(e, OSError) and e.strerror else "truncated, or not Parquet"
    return UserError(f"{path}: not a readable Parquet file ({why}); remove it and run again")
