"""``fleecesim --help`` imports no subcommand's module (fleecesim/cli.py:
SUBCOMMANDS): none of SimPy, pandas, numpy, matplotlib. Times are in
benchmarks/bench_help.py; nothing here is timed."""
import json
import subprocess
import sys

import pytest

from fleecesim import cli
from tests.conftest import REPO

HEAVY = ("simpy", "pandas", "numpy", "matplotlib", "pyarrow", "pydantic", "dask", "tqdm")

# run main(argv) as the console script does and report which heavy modules it imported
PROBE = """
import json, sys
from fleecesim.cli import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
print(json.dumps(sorted(m for m in %r if m in sys.modules)), file=sys.stderr)
""" % (HEAVY,)


def imported(*argv) -> list[str]:
    p = subprocess.run([sys.executable, "-c", PROBE, *argv], capture_output=True, text=True,
                       cwd=REPO, check=True)
    assert "usage: fleecesim" in p.stdout, p.stdout
    return json.loads(p.stderr.strip().splitlines()[-1])


@pytest.mark.parametrize("argv", [["--help"], ["run", "--help"]]
                         + [[name, "--help"] for name in cli.SUBCOMMANDS])
def test_help_imports_nothing_heavy(argv):
    """Every subcommand's help: its parser is built in a module that imports
    none of the heavy libraries (its work imports them when it runs)."""
    assert imported(*argv) == []


def test_python_dash_m_help_with_importtime():
    """The same through ``python -m fleecesim`` (its __main__), read from -X importtime."""
    p = subprocess.run([sys.executable, "-X", "importtime", "-m", "fleecesim", "--help"],
                       capture_output=True, text=True, cwd=REPO, check=True)
    mods = {ln.split("|")[-1].strip() for ln in p.stderr.splitlines() if "|" in ln}
    assert "fleecesim.cli" in mods and not mods & set(HEAVY), sorted(mods & set(HEAVY))


def test_a_subcommand_loads_its_own_module_only():
    p = cli.build_parser(["sweep", "--help"])
    sub = next(a for a in p._actions if a.dest == "cmd")
    assert {a.dest for a in sub.choices["sweep"]._actions} >= {"sweep", "jobs", "resume"}
    # the others are listed, not built: no options of their own
    assert [a.dest for a in sub.choices["advise"]._actions] == ["help"]


def test_the_lazy_listing_is_the_modules_own():
    """The help lines in SUBCOMMANDS are the ones each module's parser
    declares: the lazy top-level help equals the one built from every module."""
    lazy = cli.build_parser(["--help"]).format_help()
    full = cli.build_parser(load="all").format_help()
    assert lazy == full
    for name in cli.SUBCOMMANDS:  # and each command, built alone, is the full one
        one = cli.build_parser([name])
        sub = next(a for a in one._actions if a.dest == "cmd").choices[name]
        every = next(a for a in cli.build_parser(load="all")._actions
                     if a.dest == "cmd").choices[name]
        assert sub.format_help() == every.format_help(), name


def test_version_outside_a_checkout(tmp_path):
    """``fleecesim --version`` from a folder with no configs/ in it: reads no
    config and imports nothing heavy (the version and build only)."""
    import os
    env = dict(os.environ, PYTHONPATH=str(REPO))
    p = subprocess.run([sys.executable, "-c", PROBE, "--version"], capture_output=True,
                       text=True, cwd=tmp_path, env=env)
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("fleecesim ") and "build)" in p.stdout, p.stdout
    assert json.loads(p.stderr.strip().splitlines()[-1]) == []
