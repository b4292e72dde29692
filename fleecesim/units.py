"""Parse the units a storage engineer writes: "64KiB", "100MiB/s", "2ms", "1.5GB"."""
from __future__ import annotations

import math
import re

_SIZE = {
    "": 1, "b": 1,
    "k": 1024, "kb": 1000, "kib": 1024,
    "m": 1024**2, "mb": 1000**2, "mib": 1024**2,
    "g": 1024**3, "gb": 1000**3, "gib": 1024**3,
    "t": 1024**4, "tb": 1000**4, "tib": 1024**4,
    "p": 1024**5, "pb": 1000**5, "pib": 1024**5,
}
_TIME = {"": 1.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9,
         "min": 60.0, "h": 3600.0}
_NUM = r"\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*"


def _finite(val: float, v, what: str) -> float:
    """``val`` (parsed from ``v``) if it is a finite number: ".inf", "1e400"
    and a product past float's range are mistakes, never "unlimited"."""
    if not math.isfinite(val):
        raise ValueError(f"expected a finite {what}, got {v!r}")
    return val


def parse_size(v) -> int:
    """Bytes from an int or a string like "64KiB" (binary K/M/G without 'B' too)."""
    if isinstance(v, bool):
        raise ValueError(f"expected a size like '64KiB', got {v!r}")
    if isinstance(v, int):
        return v
    if isinstance(v, float):
        if v != int(_finite(v, v, "size like '64KiB'")):
            raise ValueError(f"expected a whole number of bytes, got {v!r}")
        return int(v)
    m = re.fullmatch(_NUM + r"([A-Za-z]*)\s*", str(v))
    if not m or m.group(2).lower() not in _SIZE:
        raise ValueError(f"expected a size like '64KiB' or '1GiB', got {v!r}")
    val = _finite(float(m.group(1)) * _SIZE[m.group(2).lower()], v, "size like '64KiB'")
    if val != int(val):
        raise ValueError(f"expected a whole number of bytes, got {v!r}")
    return int(val)


def parse_rate(v) -> float:
    """Bytes per second from a number or "100MiB/s"."""
    if isinstance(v, bool):
        raise ValueError(f"expected a rate like '100MiB/s', got {v!r}")
    if isinstance(v, (int, float)):
        return _finite(float(v), v, "rate like '100MiB/s'")
    s = str(v).strip()
    if not s.endswith("/s"):
        raise ValueError(f"expected a rate like '100MiB/s', got {v!r}")
    m = re.fullmatch(_NUM + r"([A-Za-z]*)\s*", s[:-2])
    if not m or m.group(2).lower() not in _SIZE:
        raise ValueError(f"expected a rate like '100MiB/s', got {v!r}")
    return _finite(float(m.group(1)) * _SIZE[m.group(2).lower()], v, "rate like '100MiB/s'")


def parse_time(v) -> float:
    """Seconds from a number or "2ms", "50us", "1.5s"."""
    if isinstance(v, bool):
        raise ValueError(f"expected a time like '2ms', got {v!r}")
    if isinstance(v, (int, float)):
        return _finite(float(v), v, "time like '2ms'")
    m = re.fullmatch(_NUM + r"([a-zµ]*)\s*", str(v))
    if not m or m.group(2) not in _TIME:
        raise ValueError(f"expected a time like '2ms' or '1.5s', got {v!r}")
    return _finite(float(m.group(1)) * _TIME[m.group(2)], v, "time like '2ms'")


def fmt_size(n: float) -> str:
    for unit, f in (("TiB", 1024**4), ("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if abs(n) >= f:
            return f"{n / f:.4g}{unit}"
    return f"{int(n)}B"


def fmt_time(s: float) -> str:
    """Seconds as a person reads them: 3 significant digits in us, ms or s
    ("61.1us", "5.26ms", "236s"); from 1,000 s on whole seconds with thousands
    separators ("1,910s"), so that columns of durations compare at a glance,
    and from 100,000 s (~28 h) on hours ("27.8h", "1,234h"). The unit is chosen
    after rounding: 999.6 s is "1,000s", never "1e+03s"."""
    if s != s:  # NaN
        return "-"
    if math.isinf(s):
        return "-inf" if s < 0 else "inf"
    a = abs(s)
    if a >= 1e5:
        return _three(s / 3600.0) + "h"
    if float(f"{a:.3g}") >= 1:
        return _three(s) + "s"
    if float(f"{a * 1e3:.3g}") >= 1:
        return f"{s * 1e3:.3g}ms"
    return f"{s * 1e6:.3g}us"


def _three(x: float) -> str:
    """3 significant digits, or the whole number with thousands separators
    once it has more than 3 digits ("1,910", never "1.91e+03")."""
    if abs(float(f"{x:.3g}")) < 1000:
        return f"{x:.3g}"
    return f"{x:,.0f}"
