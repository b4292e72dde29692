"""Named random streams from one seed, so every scheme sees the same numbers.

Each named source gets its own SeedSequence child keyed by a stable hash of
its name: adding a source never shifts another's numbers, and the guest's
requests are identical under every scheme (paired comparisons).
"""
from __future__ import annotations

import zlib

import numpy as np


def stream(seed: int, name: str) -> np.random.Generator:
    key = zlib.crc32(name.encode())
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(key,)))


def vm_seed(seed: int, name: str) -> int:
    """The seed of fleet VM ``name``: its own, from the run's."""
    key = zlib.crc32(f"vm.{name}".encode())
    return int(np.random.SeedSequence(seed, spawn_key=(key,)).generate_state(1)[0] >> 1)
