"""Which build of fleecesim runs: the compiled core or the interpreted .py.

A module ``fleecesim/x/y.py`` with a ``fleecesim/x/y.pxd`` beside it is
compiled by setup.py (Cython, the .pxd types it) when a C compiler works;
the same .py runs interpreted otherwise. Each compiled module carries the
SHA-256 of its .py and .pxd as they were when it was built (setup.py bakes
it into the extension as a marked string, ``MARK`` + 64 hex digits). This
module is imported first by ``fleecesim/__init__.py`` and decides, before
any compiled module is imported:

* ``FLEECESIM_PURE=1``: the interpreted build, whatever is compiled;
* every compiled module's baked-in hash equals its source's, and every
  .pxd-paired module has its extension: the compiled build;
* otherwise (a source edited, a .pxd added or removed since the build, an
  extension without a hash): the interpreted build, said in one line on
  stderr with the rebuild command. All or nothing, because the compiled
  modules use each other's C types: one module's interpreted class in
  place of the typed one it was built against cannot be mixed with them.

The interpreted build is the normal import of the .py files, forced by a
finder placed first on ``sys.meta_path`` (the default path finder prefers
an extension module to a .py of the same name).

setup.py loads this file by path (not as part of the package) for
``source_hash`` and ``paired_modules``, so build and import hash alike.
Standard library only.
"""
from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import mmap
import os
import sys
from pathlib import Path

MARK = b"FLEECESIM-SOURCE-SHA256:"
#: baked in beside the hash by a FLEECESIM_PROFILE=1 build (Cython's
#: ``profile`` directive: cProfile sees the compiled functions)
PROFILE_MARK = b"FLEECESIM-PROFILE-HOOKS"
PACKAGE = Path(__file__).resolve().parent
REBUILD = "pip install -e ."

#: how this process runs: "compiled", "interpreted" (nothing compiled, or
#: FLEECESIM_PURE=1) or "interpreted (stale)"; set by ``install``
BUILD = "interpreted"
#: the modules running compiled (dotted names)
COMPILED: tuple[str, ...] = ()


def source_hash(py: Path) -> str:
    """SHA-256 of a module's .py and its .pxd (absent: hashed as absent)."""
    h = hashlib.sha256()
    for p in (py, py.with_suffix(".pxd")):
        h.update(p.suffix.encode())
        try:
            data = p.read_bytes()
        except FileNotFoundError:
            h.update(b"\0absent")
        else:
            h.update(len(data).to_bytes(8, "little"))
            h.update(data)
    return h.hexdigest()


def module_name(py: Path, package: Path = PACKAGE) -> str:
    rel = py.relative_to(package.parent).with_suffix("")
    return ".".join(rel.parts)


# never compiled: the package's own entry and this module (it must run
# before any extension is imported)
_NEVER = {"__init__", "__main__", "_compiled"}


def paired_modules(package: Path = PACKAGE) -> list[Path]:
    """The .py files with a .pxd beside them (the modules to compile), sorted."""
    return sorted(pxd.with_suffix(".py") for pxd in package.rglob("*.pxd")
                  if pxd.with_suffix(".py").is_file() and pxd.stem not in _NEVER)


def _extensions(package: Path) -> dict[Path, Path]:
    """.py -> the extension module built from it, for every extension in
    the package that has a .py of the same name."""
    found = {}
    suffixes = importlib.machinery.EXTENSION_SUFFIXES
    for ext in package.rglob("*.so" if os.name != "nt" else "*.pyd"):
        name = ext.name
        for suf in suffixes:
            if name.endswith(suf):
                py = ext.with_name(name[: -len(suf)] + ".py")
                if py.is_file():
                    found[py] = ext
                break
    return found


def baked_hash(ext: Path) -> str | None:
    """The source hash setup.py baked into an extension (None if it has none)."""
    with open(ext, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
        i = m.find(MARK)
        if i < 0:
            return None
        return m[i + len(MARK): i + len(MARK) + 64].decode("ascii", "replace")


def profiled(package: Path = PACKAGE) -> bool:
    """Whether every compiled module here has Cython's profiling hooks."""
    exts = _extensions(package).values()
    for ext in exts:
        with open(ext, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
            if m.find(PROFILE_MARK) < 0:
                return False
    return bool(exts)


def stale(package: Path = PACKAGE) -> tuple[dict[Path, Path], list[str]]:
    """The extensions found, and why the compiled build must not be used
    (empty: it may)."""
    exts = _extensions(package)
    why = []
    for py, ext in sorted(exts.items()):
        baked = baked_hash(ext)
        if baked is None:
            why.append(f"{module_name(py, package)} (no source hash in {ext.name})")
        elif baked != source_hash(py):
            what = "pxd" if py.with_suffix(".pxd").is_file() else "pxd removed"
            why.append(f"{py.relative_to(package.parent)} (or its {what}) changed")
    if exts:
        for py in paired_modules(package):
            if py not in exts:
                why.append(f"{py.relative_to(package.parent)} has a .pxd but no build")
    return exts, why


class _Interpreted:
    """A meta-path finder that loads the named modules from their .py."""

    def __init__(self, modules: dict[str, Path]):
        self.modules = modules

    def find_spec(self, fullname, path=None, target=None):
        py = self.modules.get(fullname)
        if py is None:
            return None
        return importlib.util.spec_from_file_location(fullname, py)


def install() -> None:
    """Choose the build for this process (see the module docstring)."""
    global BUILD, COMPILED
    exts, why = stale()
    if not exts:
        return
    pure = os.environ.get("FLEECESIM_PURE", "") not in ("", "0")
    if not pure and not why:
        BUILD = "compiled"
        COMPILED = tuple(sorted(module_name(py) for py in exts))
        return
    if pure:
        BUILD = "interpreted"
    else:
        BUILD = "interpreted (stale)"
        print(f"fleecesim: compiled build is stale ({'; '.join(why)}); running the "
              f"interpreted .py instead (rebuild: {REBUILD})", file=sys.stderr)
    sys.meta_path.insert(0, _Interpreted({module_name(py): py for py in exts}))
