"""``fleecing-pull-2018``: image fleecing as QEMU 2.12/3.0 and libvirt's pull mode did it.

A scratch image (the fleecing cache, on ``backup.cache.device``) whose backing
is the active disk is exported over NBD; a ``backup sync=none`` job from the
active disk into the scratch image supplies copy-before-write through its
write notifier: no bitmap (every cluster is guarded for the whole backup, even
after the client read it), one cluster at a time, zeroes found by reading.
Reads of the export come from the scratch image where it holds the cluster,
else from the active disk (serialised against guest writes, as 2018's
"block/backup: fix fleecing scheme: use serialized writes" made them). The
external client is the same as in ``fleecing-pull`` (``backup.client.*``), but
read-once TRIM is not available: discarding the scratch image would expose the
backing's new data, so ``backup.client.discard`` is ignored.
"""
from . import register
from .fleecing_pull import build_pull


@register("fleecing-pull-2018")
def build(ctx):
    return build_pull(ctx, modern=False)
