"""Policies: small objects chosen by name from a registry, validated when built.

A copy-ordering policy answers one question for the backup job: which run of
clusters to copy next. Adding one is one file here plus its test.
"""
from __future__ import annotations

ORDERING: dict[str, type] = {}

# What a policy may need to know per cluster (a policy's ``needs``): "zero"
# (zero / allocated at t0), "tier" (which fleecing-cache tier holds it),
# "heat" (how often the guest wrote it before t0). A backup job inside QEMU
# (fleecing-push) knows all of it. An external NBD client (the pull schemes)
# knows only what its ``backup.client.hints`` grants:
CLIENT_HINTS: dict[str, frozenset] = {
    "none": frozenset(),                       # plain reads; zeroes found by reading them
    "block-status": frozenset({"zero"}),       # NBD "base:allocation" (nbd/server.c)
    "cache-tier": frozenset({"zero", "tier"}),  # hypothetical: the seed's proposal
}


def hint_error(order: str, hints: str) -> str | None:
    """None if a pull client with ``hints`` can follow ``order``, else one line why not."""
    missing = set(getattr(ORDERING[order], "needs", ())) - CLIENT_HINTS[hints]
    if not missing:
        return None
    what = {"zero": "which clusters are zero (NBD block status)",
            "tier": "which cache tier holds each cluster",
            "heat": "the guest's per-cluster write counts before t0"}
    grant = [h for h, g in CLIENT_HINTS.items() if missing <= g]
    fix = (f"backup.client.hints: {grant[0]}" if grant
           else "a backup job inside QEMU (fleecing-push); no NBD metadata context exports it")
    return (f"backup.order: {order!r} needs to know {', '.join(what[m] for m in sorted(missing))}, "
            f"which a pull client does not get with backup.client.hints: {hints} "
            f"(that takes {fix})")


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
# the tier-, zero- and heat-aware orders (each module cites what it follows)
from . import ram_first, zero_last, disk_cached_last, disk_cached_first, hot_first  # noqa: E402,F401,E501
