"""Policies: small objects chosen by name from a registry, validated when built.

A copy-ordering policy answers one question for the backup job: which run of
clusters to copy next. Adding one is one file here plus its test.
"""
from __future__ import annotations

ORDERING: dict[str, type] = {}


def register_ordering(name: str):
    def deco(cls):
        cls.name = name
        ORDERING[name] = cls
        return cls
    return deco


def make_ordering(name: str, **params):
    try:
        cls = ORDERING[name]
    except KeyError:
        raise ValueError(f"unknown copy-ordering policy {name!r}; expected one of "
                         f"{', '.join(sorted(ORDERING))}") from None
    return cls(**params)


from . import ascending  # noqa: E402,F401  (registers)
# issue 3: seed item 7 (a-d) and our own
from . import ram_first, zero_last, disk_cached_last, disk_cached_first, hot_first  # noqa: E402,F401,E501
