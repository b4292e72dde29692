"""``run:``, ``guest:``, ``host:`` and ``qemu:``: how the run goes, the guest drive's
error policy, the host's per-request cost and the QEMU version modelled."""
from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, field_validator

from .core import Model, OnError, Rate, ResumeAfter, Seconds
from .rules import needs


class QemuSpec(Model):
    """The QEMU the user runs (fleecesim/qemu/versions.py: what changes between
    versions). Default: the newest behaviour modelled."""
    version: str = "10.1"

    @field_validator("version", mode="before")
    @classmethod
    def _version(cls, v):
        from ..qemu.versions import fmt, parse
        return fmt(parse(v))  # 9.2 (a YAML float), "7.2.22" -> "7.2"

    @property
    def v(self) -> tuple[int, int]:
        from ..qemu.versions import parse
        return parse(self.version)


class GuestSpec(Model):
    """The guest drive's error policy (``-drive werror=,rerror=``; QEMU's
    defaults: werror=enospc, rerror=report, block/block-backend.c: blk_new).
    A policy that stops the VM holds it until management sends ``cont``,
    ``resume-after`` seconds after each stop (never: it stays paused).
    fleecesim/error_policy.py."""
    werror: OnError = "enospc"
    rerror: OnError = "report"
    resume_after: ResumeAfter = None

    # resume-after acts only where a policy can stop the VM (config/rules.py)
    ACTS: ClassVar = (
        needs(("resume-after",), lambda g: bool({g.werror, g.rerror} & {"stop", "enospc"}),
              lambda g: f"only acts when guest.werror or guest.rerror is stop or enospc "
                        f"(they stop the VM); both are {g.werror}/{g.rerror}"),
    )


class RunSpec(Model):
    seed: int = Field(1, ge=0)  # numpy's SeedSequence takes non-negative integers
    warmup: Seconds = 2.0
    tail: Seconds = 1.0
    max_time: Seconds = 3600.0
    # Per-cluster state (fleecesim/sparse.py): numpy arrays (dense), or pages
    # allocated on first touch (sparse); auto: sparse beyond 2^24 clusters. Both
    # give the same results; sparse makes multi-TiB disks fit.
    state: Literal["auto", "dense", "sparse"] = "auto"
    # A long run of zero clusters as one bulk of write-zeroes standing for all
    # the job's workers (jobs/bulk.py) instead of one task per chunk.
    bulk_zeroes: bool = True

    @field_validator("warmup", "tail", "max_time")
    @classmethod
    def _nonneg(cls, v):
        if v < 0:
            raise ValueError("expected a time >= 0")
        return v

    @field_validator("max_time")
    @classmethod
    def _positive(cls, v):
        # the backup's own time limit (after warm-up): 0 would stop every run
        # before the job copies anything
        if v <= 0:
            raise ValueError("expected a time > 0 like '1h' (the backup's time limit)")
        return v


class HostSpec(Model):
    """The host's software cost per I/O request (devices/host.py), paid by every
    request a QEMU node sends to a device: guest requests once, a block-copy
    chunk once for its read and once for its write.

    request-cost: CPU per request in the disk's AioContext (one thread, so a
    FIFO server): 8 us = 1 / 123k IOPS, QEMU virtio-blk on a host RAM disk,
    fio 4k randread iodepth 128, one vCPU/queue (A. Zhadchenko, "[RFC PATCH
    0/1] block: add vhost-blk backend", qemu-devel, 2022-07-25: virtio 123k
    IOPS vs host 95.8k on the SSD where QEMU virtio reached 57.5k).
    memcpy-bandwidth: the copy of each request's bytes between page cache (or
    socket) and QEMU's buffer; 8 GiB/s as the ``ram`` preset (one thread's
    memcpy class). 0: no copy (cache.direct=on)."""
    request_cost: Seconds = 8e-6
    memcpy_bandwidth: Rate = 8 * 2**30

    @field_validator("request_cost", "memcpy_bandwidth")
    @classmethod
    def _nonneg(cls, v):
        if v < 0:
            raise ValueError("expected a value >= 0")
        return v
