"""Atomic writes: whole files only, with the mode the user's umask gives."""
import os
import stat

import pandas as pd
import pytest

from fleecesim.store import atomic_write_bytes, atomic_write_parquet, atomic_write_text

WRITERS = {
    "bytes": lambda p: atomic_write_bytes(p, b"x"),
    "text": lambda p: atomic_write_text(p, "x"),
    "parquet": lambda p: atomic_write_parquet(p, pd.DataFrame({"a": [1]})),
}


@pytest.fixture
def umask():
    old = os.umask(0o022)
    yield lambda m: os.umask(m)
    os.umask(old)


@pytest.mark.parametrize("mask", [0o022, 0o002, 0o077])
@pytest.mark.parametrize("kind", list(WRITERS))
def test_written_files_follow_the_umask(tmp_path, umask, kind, mask):
    umask(mask)
    p = tmp_path / "sub" / f"f.{kind}"
    WRITERS[kind](p)
    assert stat.S_IMODE(p.stat().st_mode) == 0o666 & ~mask
    assert [q.name for q in p.parent.iterdir()] == [p.name]  # no temp file left


def test_a_failed_write_leaves_nothing(tmp_path):
    p = tmp_path / "f.parquet"
    with pytest.raises(Exception):
        atomic_write_parquet(p, pd.DataFrame({"a": [object()]}))
    assert list(tmp_path.iterdir()) == []
