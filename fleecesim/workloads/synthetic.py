"""Synthetic guest workloads: Poisson (open loop) or back-to-back (closed loop)
requests with a read/write/discard mix, a size distribution and a spatial
pattern (uniform, sequential streams, zipf hot set). Generated in vectorised
chunks of the normalized record stream."""
from __future__ import annotations

from typing import Iterator

import numpy as np

from ..rng import stream
from .records import CHUNK, RECORD_DTYPE

# An odd multiplier to scatter zipf ranks over the disk: rank r -> (r * M) mod N
# is a bijection whenever gcd(M, N) = 1, so the hot set is spread out, not packed
# at offset 0, without a permutation table as large as the disk.
_SCATTER = 0x9E3779B97F4A7C15 % (1 << 61)


def bounded_zipf(rng: np.random.Generator, s: float, n: int, size: int) -> np.ndarray:
    """Ranks in [0, n) with P(r) ~ (r+1)^-s, by inverting the continuous CDF."""
    u = rng.random(size)
    if abs(s - 1.0) < 1e-9:
        x = np.exp(u * np.log(n + 1.0))
    else:
        a = 1.0 - s
        x = (1.0 + u * ((n + 1.0) ** a - 1.0)) ** (1.0 / a)
    return np.minimum(np.floor(x).astype(np.int64) - 1, n - 1).clip(0)


def _scatter_mult(n: int) -> int:
    m = _SCATTER % n if n > 1 else 1
    m |= 1
    while np.gcd(m, n) != 1:
        m += 2
    return m


def synthetic(spec, disk_size: int, seed: int) -> Iterator[np.ndarray]:
    """Endless chunks of requests for a WorkloadSpec on a disk of ``disk_size`` bytes."""
    r_arr = stream(seed, "workload.arrivals")
    r_op = stream(seed, "workload.ops")
    r_size = stream(seed, "workload.sizes")
    r_off = stream(seed, "workload.offsets")
    mix = np.array([spec.mix.read, spec.mix.write, spec.mix.discard], dtype=float)
    mix /= mix.sum()
    sw = spec.size_weights()
    sizes = np.array([s for s, _ in sw], dtype=np.int64)
    weights = np.array([w for _, w in sw], dtype=float)
    weights /= weights.sum()
    align = spec.align
    span = max(int(disk_size * spec.span) // align * align, align)
    if sizes.max() > span:
        raise ValueError(f"workload.size: {sizes.max()} bytes does not fit in the "
                         f"workload's span ({span} bytes)")
    nblocks = span // align
    mult = _scatter_mult(nblocks)
    region = span // spec.streams // align * align or align
    cursors = np.arange(spec.streams, dtype=np.int64) * region
    if spec.iops == 0:
        return  # idle guest
    t = 0.0
    while True:
        n = CHUNK
        out = np.empty(n, dtype=RECORD_DTYPE)
        if spec.iops:
            times = t + np.cumsum(r_arr.exponential(1.0 / spec.iops, n))
            t = float(times[-1])
            out["time"] = times
        else:
            out["time"] = 0.0
        out["op"] = r_op.choice(3, n, p=mix)
        ln = r_size.choice(sizes, n, p=weights)
        out["length"] = ln
        if spec.pattern == "uniform":
            slots = (span - ln) // align + 1
            off = (r_off.random(n) * slots).astype(np.int64) * align
        elif spec.pattern == "zipf":
            rank = bounded_zipf(r_off, spec.zipf_s, nblocks, n)
            blk = (rank * mult) % nblocks
            off = np.minimum(blk * align, (span - ln) // align * align)
        else:  # sequential streams, each walking its own region, wrapping
            sid = r_off.integers(0, spec.streams, n)
            off = np.empty(n, dtype=np.int64)
            for s in range(spec.streams):
                m = sid == s
                if not m.any():
                    continue
                lens = ln[m]
                base = s * region
                pos = cursors[s] - base + np.cumsum(lens) - lens
                pos = pos % region
                over = pos + lens > region  # would run past the region: restart at its start
                pos[over] = 0
                off[m] = base + pos
                cursors[s] = base + (pos[-1] + lens[-1]) % region
            off = np.minimum(off, span - ln)
        out["offset"] = off
        yield out
