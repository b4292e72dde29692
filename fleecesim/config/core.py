"""What every section of the config shares: the base model, unit-parsed
field types and the error formatting."""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, ValidationError

from ..units import parse_rate, parse_size, parse_time

Size = Annotated[int, BeforeValidator(parse_size)]
Rate = Annotated[float, BeforeValidator(parse_rate)]
Seconds = Annotated[float, BeforeValidator(parse_time)]


def _resume_after(v):
    from ..error_policy import parse_resume_after
    return parse_resume_after(v)


# ``resume-after``: seconds after a stop until management resumes, or None (never)
ResumeAfter = Annotated[float | None, BeforeValidator(_resume_after)]
# BlockdevOnError (qapi/block-core.json); what each does: fleecesim/error_policy.py
OnError = Literal["report", "ignore", "stop", "enospc"]


def _pow2_block(v: int) -> int:
    if v < 512 or v & (v - 1):
        raise ValueError(f"expected a power of two >= 512, got {v}")
    return v


# a cluster or extent size: a power of two of at least one 512-byte sector
BlockSize = Annotated[int, BeforeValidator(parse_size), AfterValidator(_pow2_block)]


class Model(BaseModel):
    # allow_inf_nan=False: ".inf" IOPS would never end, ".nan" latencies poison
    # every sum; a number in a config is finite.
    model_config = ConfigDict(extra="forbid", populate_by_name=True,
                              alias_generator=lambda s: s.replace("_", "-"),
                              validate_assignment=True, allow_inf_nan=False)

    def dump(self) -> dict:
        return self.model_dump(by_alias=True, mode="json")


def _is_pow2(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


def _folder_name(v: str, nested: bool = False) -> str:
    """A name that becomes a results folder: no separator, not '.' or '..'
    (which would write beside or above results/), no control character (a
    newline in a folder name breaks every listing), not starting with '-'
    (it would read as an option to the shell tools that list it). ``nested``
    (a variant's name): '/' between such names makes sub-folders
    ("ssd-nbd/w4"), still inside the config's results folder."""
    parts = v.split("/") if nested and v else [v]
    for p in parts:
        if (not p or p in (".", "..") or "/" in p or "\\" in p or p.startswith("-")
                or any(ord(c) < 32 or ord(c) == 127 for c in p)):
            what = ("plain names joined by '/'" if nested else "a plain name")
            raise ValueError(f"expected {what} (it names the results folder), got {v!r}")
    return v


def _changed_keys(d: dict, default: dict, prefix: str = "") -> set[str]:
    """Dotted keys whose value differs from the default: the keys a config sets."""
    out = set()
    for k, v in d.items():
        dv = default.get(k)
        if isinstance(v, dict) and isinstance(dv, dict):
            out |= _changed_keys(v, dv, f"{prefix}{k}.")
        elif v != dv:
            out.add(prefix + k)
    return out



def _fmt_loc(loc) -> str:
    parts = []
    for p in loc:
        if isinstance(p, int):
            parts.append(f"[{p}]")
        elif p in ("function-after", "function-before") or "[" in str(p):
            continue
        else:
            parts.append(("." if parts else "") + str(p))
    return "".join(parts)


def _format_error(e: ValidationError) -> str:
    err = e.errors()[0]
    loc = _fmt_loc([p for p in err["loc"] if not str(p).startswith(("str", "int", "float",
                                                                      "dict", "list"))])
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        msg = "unknown key"
    extra = f" (and {len(e.errors()) - 1} more)" if len(e.errors()) > 1 else ""
    return f"{loc}: {msg}{extra}" if loc else f"{msg}{extra}"

