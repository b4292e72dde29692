"""``disk:``: the guest disk."""
from __future__ import annotations

from pydantic import Field, field_validator

from .core import BlockSize, Model, Size


class DiskSpec(Model):
    size: Size = 64 * 2**30
    cluster_size: None = Field(None, exclude=True)  # removed key, kept to say so
    allocated: float = Field(1.0, ge=0.0, le=1.0)
    allocation_granularity: BlockSize = 4 * 2**20  # zero/allocated extents at t0 come in this size
    device: str = "local"

    @field_validator("size")
    @classmethod
    def _size(cls, v):
        if v <= 0 or v % 512:
            raise ValueError(f"expected a positive multiple of 512 bytes, got {v}")
        return v

    @field_validator("cluster_size", mode="before")
    @classmethod
    def _removed(cls, v):
        if v is None:
            return v
        raise ValueError("removed (it was read nowhere): the copy granularity comes from "
                         "the copy's target, as in QEMU — set backup.target.cluster-size, "
                         "backup.cache.cluster-size or backup.min-cluster-size")
