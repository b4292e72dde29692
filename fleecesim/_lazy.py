"""A package's names loaded from its submodules on first use (PEP 562 module
``__getattr__``), so that importing the package — as the CLI does to build a
subcommand's parser — does not import numpy, pandas or SimPy."""
from __future__ import annotations

import importlib


def lazy_attributes(package: str, table: dict[str, str], namespace: dict):
    """The module ``__getattr__`` for ``package``: ``table`` maps a name to the
    submodule defining it; a loaded name is kept in ``namespace`` (the
    package's globals) so it is looked up only once."""
    def __getattr__(name):
        if name not in table:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f".{table[name]}", package), name)
        namespace[name] = value
        return value
    return __getattr__
