"""The import layering: no circle among fleecesim's modules.

Every ``import`` / ``from ... import`` in fleecesim (module level or inside a
function: a lazy import still ties the two modules together) is an edge; a
strongly connected component of more than one module is a circle. config
sits below schemes (config reads the schemes' option tables, schemes read a
resolved Config), devices/__init__ builds devices from base, remote and the
kind modules, and vm.py (one VM) sits below both run.py and fleet.py.
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "fleecesim"


def modules(root: Path = ROOT) -> dict[str, tuple[Path, bool]]:
    out = {}
    for p in sorted(root.rglob("*.py")):
        parts = list(p.relative_to(root.parent).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        out[".".join(parts[:-1] if is_pkg else parts)] = (p, is_pkg)
    return out


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    """module -> the fleecesim modules it imports (``from pkg import sub``
    points at the submodule, ``from pkg import name`` at the package)."""
    mods = modules(root)
    graph = {}
    for name, (path, is_pkg) in mods.items():
        pkg = name if is_pkg else name.rpartition(".")[0]
        out = set()
        for n in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(n, ast.Import):
                out |= {a.name for a in n.names}
                continue
            if not isinstance(n, ast.ImportFrom):
                continue
            if n.level:
                base = pkg.split(".")[:len(pkg.split(".")) - (n.level - 1)]
                target = ".".join(base + ([n.module] if n.module else []))
            else:
                target = n.module or ""
            for a in n.names:
                sub = f"{target}.{a.name}"
                out.add(sub if sub in mods else target)
        graph[name] = {t for t in out if t in mods and t != name}
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


# Left as they are, each for its reason:
# - a registry package imports its plugin modules so that they register, and
#   each plugin imports ``register`` from it (schemes/, policies/); a circle
#   inside the package, reaching nothing outside it;
# - the CLI and ``fleecesim qemu`` share the check that the results folder is
#   writable (cli.writable_dir), imported lazily both ways.
REGISTRIES = ("fleecesim.schemes", "fleecesim.policies")
KNOWN = [["fleecesim.cli", "fleecesim.qemu.cli"]]


def allowed(circle: list[str]) -> bool:
    if circle in KNOWN:
        return True
    return any(pkg in circle and all(m == pkg or m.rpartition(".")[0] == pkg for m in circle)
               for pkg in REGISTRIES)


def test_no_import_circles():
    found = circles(import_graph())
    assert [c for c in found if not allowed(c)] == []
    # the three that were: config <-> schemes, run <-> fleet, devices.base <-> remote
    for a, b in (("fleecesim.config", "fleecesim.schemes"), ("fleecesim.run", "fleecesim.fleet"),
                 ("fleecesim.devices.base", "fleecesim.devices.remote")):
        assert not any(a in c and b in c for c in found)


def test_the_finder_sees_a_circle(tmp_path):
    """The check can fail: two modules importing each other (one lazily, in a
    function) form a circle, a one-way import does not."""
    pkg = tmp_path / "fleecesim"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("from .a import f\n")
    (pkg / "sub" / "a.py").write_text("def f():\n    from ..b import g\n    return g\n")
    (pkg / "b.py").write_text("from .sub import f\n")
    (pkg / "c.py").write_text("from . import b\n")
    assert circles(import_graph(pkg)) == [["fleecesim.b", "fleecesim.sub", "fleecesim.sub.a"]]
    (pkg / "sub" / "a.py").write_text("def f():\n    return 1\n")
    assert circles(import_graph(pkg)) == []
