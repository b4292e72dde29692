"""The choice between the compiled and the interpreted build
(fleecesim/_compiled.py): a compiled module is used only while its baked-in
source hash matches its .py and .pxd; FLEECESIM_PURE=1 forces the .py."""
from __future__ import annotations

import importlib.machinery
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fleecesim import _compiled

ROOT = Path(__file__).resolve().parents[1]
SUFFIX = importlib.machinery.EXTENSION_SUFFIXES[0]


def _package(tmp_path: Path, modules=("a", "b")) -> Path:
    """A package of .pxd-paired modules with stand-in extension files that
    carry the hash the way setup.py bakes it (a marked string among other
    bytes); the checks read them, never load them."""
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    for m in modules:
        py = pkg / "sub" / f"{m}.py"
        py.write_text(f"X = {m!r}\n")
        py.with_suffix(".pxd").write_text("cdef class C:\n    cdef public double x\n")
        (pkg / "sub" / f"{m}{SUFFIX}").write_bytes(
            b"\x7fELF junk" + _compiled.MARK + _compiled.source_hash(py).encode() + b"\0tail")
    return pkg


def test_fresh_build_is_used(tmp_path):
    pkg = _package(tmp_path)
    exts, why = _compiled.stale(pkg)
    assert sorted(p.name for p in exts) == ["a.py", "b.py"] and why == []


@pytest.mark.parametrize("edit", ["py", "pxd", "pxd-removed"])
def test_an_edited_source_makes_the_build_stale(tmp_path, edit):
    pkg = _package(tmp_path)
    py = pkg / "sub" / "b.py"
    if edit == "py":
        py.write_text("X = 'b'  # edited\n")
    elif edit == "pxd":
        py.with_suffix(".pxd").write_text("cdef class C:\n    cdef public long x\n")
    else:
        py.with_suffix(".pxd").unlink()
    _, why = _compiled.stale(pkg)
    assert len(why) == 1 and why[0].startswith("pkg/sub/b.py") and "changed" in why[0]


def test_touching_a_source_without_changing_it_keeps_the_build(tmp_path):
    pkg = _package(tmp_path)
    py = pkg / "sub" / "a.py"
    os.utime(py, (py.stat().st_atime + 100, py.stat().st_mtime + 100))
    assert _compiled.stale(pkg)[1] == []


def test_a_new_pairing_without_its_build_is_stale(tmp_path):
    pkg = _package(tmp_path)
    (pkg / "sub" / "c.py").write_text("X = 'c'\n")
    (pkg / "sub" / "c.pxd").write_text("")
    _, why = _compiled.stale(pkg)
    assert why == ["pkg/sub/c.py has a .pxd but no build"]


def test_an_extension_without_a_hash_is_not_trusted(tmp_path):
    pkg = _package(tmp_path)
    (pkg / "sub" / f"a{SUFFIX}").write_bytes(b"\x7fELF no mark")
    _, why = _compiled.stale(pkg)
    assert len(why) == 1 and "no source hash" in why[0]


def test_nothing_compiled_is_not_stale(tmp_path):
    pkg = _package(tmp_path)
    for so in pkg.rglob(f"*{SUFFIX}"):
        so.unlink()
    assert _compiled.stale(pkg) == ({}, [])


def test_the_hash_covers_both_files_and_only_them(tmp_path):
    py = tmp_path / "m.py"
    py.write_text("X = 1\n")
    h0 = _compiled.source_hash(py)
    py.with_suffix(".pxd").write_text("")
    h1 = _compiled.source_hash(py)  # an empty .pxd is not an absent one
    (tmp_path / "other.pxd").write_text("cdef int y\n")
    assert h0 != h1 == _compiled.source_hash(py)


def test_paired_modules_skip_the_package_entry_points(tmp_path):
    pkg = _package(tmp_path)
    (pkg / "__init__.py").write_text("")
    (pkg / "__init__.pxd").write_text("")
    (pkg / "sub" / "orphan.pxd").write_text("")  # no .py beside it
    assert [p.name for p in _compiled.paired_modules(pkg)] == ["a.py", "b.py"]


_COMPILED_HERE = sorted((ROOT / "fleecesim").rglob(f"*{SUFFIX}"))
_PROBE = ("import fleecesim, fleecesim._compiled as c, fleecesim.devices.base as b, "
          "fleecesim.devices.host as h; print(c.BUILD); print(b.__file__); print(h.__file__)")


def _import_in(copy: Path, **env) -> subprocess.CompletedProcess:
    e = {k: v for k, v in os.environ.items() if k != "FLEECESIM_PURE"}
    e.update(PYTHONPATH=str(copy), **env)
    return subprocess.run([sys.executable, "-c", _PROBE], cwd=copy, env=e,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(not _COMPILED_HERE, reason="no compiled build in the source tree "
                    "(pip install -e . with a C compiler builds one)")
def test_the_real_build_falls_back_to_the_py_when_its_source_changed(tmp_path):
    copy = tmp_path / "tree"
    shutil.copytree(ROOT / "fleecesim", copy / "fleecesim",
                    ignore=shutil.ignore_patterns("__pycache__"))
    fresh = _import_in(copy)
    assert fresh.returncode == 0, fresh.stderr
    assert fresh.stdout.split("\n")[:2] == [
        "compiled", str(copy / "fleecesim" / "devices" / f"base{SUFFIX}")]
    assert fresh.stderr == ""
    pure = _import_in(copy, FLEECESIM_PURE="1")
    assert pure.stdout.split("\n")[:2] == [
        "interpreted", str(copy / "fleecesim" / "devices" / "base.py")] and pure.stderr == ""
    base = copy / "fleecesim" / "devices" / "base.py"
    base.write_text(base.read_text() + "\n# edited after the build\n")
    edited = _import_in(copy)
    assert edited.returncode == 0, edited.stderr
    # all or nothing: host.py, unchanged, runs interpreted too (its compiled
    # form was built against base's typed classes)
    assert edited.stdout.split("\n")[:3] == [
        "interpreted (stale)", str(base), str(base.with_name("host.py"))]
    lines = edited.stderr.strip().splitlines()
    assert len(lines) == 1 and "fleecesim/devices/base.py" in lines[0] \
        and "pip install -e ." in lines[0]


def _setup_py():
    import importlib.util
    spec = importlib.util.spec_from_file_location("fleecesim_setup", ROOT / "setup.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # not as __main__: defines, builds nothing
    return mod


def _probe(monkeypatch, **env) -> str | None:
    from setuptools import Distribution
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    setup_py = _setup_py()
    cmd = setup_py.BuildExt(Distribution({"name": "probe"}))
    cmd.ensure_finalized()
    return cmd._probe()


def test_the_build_probe_says_when_the_compiler_fails(monkeypatch):
    why = _probe(monkeypatch, CC="/bin/false")
    # distutils words it "exit status 1" or "exit code 1" by version
    assert why in ("/bin/false: exit status 1", "/bin/false: exit code 1")


@pytest.mark.skipif(shutil.which("gcc") is None and shutil.which("cc") is None,
                    reason="no C compiler here")
def test_the_build_probe_accepts_a_working_compiler(monkeypatch):
    monkeypatch.delenv("CC", raising=False)
    assert _probe(monkeypatch) is None
