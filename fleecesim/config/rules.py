"""Options that cannot act are errors: one validator over the rules each
section declares beside its keys (``DeviceSpec.ACTS``: by device kind;
``WorkloadSpec.ACTS``: by request source and pattern; ``BackupSpec.ACTS``: by
scheme, sync mode and cache tiers). A user must never believe they measured
an option that did nothing.

A rule names keys (dotted, relative to its section; a key covers the keys
under it, ``*`` covers every key) and says, for a key the user set, why it
cannot act here (None: it acts). ``inert`` gives the first such key of a
section, its keys in sorted order, rules in the order declared. A key set to
its default is not "set": it changes nothing whichever way it is read.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable


@dataclass(frozen=True)
class Rule:
    keys: tuple[str, ...]
    # (section, key) -> None when ``key`` acts in this section, else why not
    why_not: Callable[[Any, str], str | None]

    def covers(self, key: str) -> bool:
        return any(k == "*" or key == k or key.startswith(k + ".") for k in self.keys)


def needs(keys, acts: Callable[[Any], bool], why: str | Callable[[Any], str]) -> Rule:
    """``keys`` act only where ``acts(section)``; elsewhere ``why``."""
    return Rule(tuple(keys), lambda s, _k: None if acts(s) else (why(s) if callable(why) else why))


def by_value(field: str, table: dict[str, tuple[str, ...]],
             why: Callable[[Any, str, list[str]], str]) -> Rule:
    """Keys that act by the value of ``field``: ``table[value]`` lists the keys
    each value acts on; a key listed for some values acts only under those,
    ``why(section, key, values that use it)`` elsewhere."""
    users: dict[str, list[str]] = {}
    for value, keys in table.items():
        for k in keys:
            users.setdefault(k, []).append(value)

    def why_not(section, key):
        v = getattr(section, field)
        if key in table.get(v, ()):
            return None
        return why(section, key, users[key])
    return Rule(tuple(users), why_not)


def inert(rules, section, given) -> tuple[str, str] | None:
    """(key, reason) for the first key in ``given`` that a rule says cannot act."""
    for key in sorted(given):
        for r in rules:
            if r.covers(key):
                why = r.why_not(section, key)
                if why:
                    return key, why
    return None
