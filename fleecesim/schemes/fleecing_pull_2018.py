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
backing's new data, so ``backup.client.discard`` is rejected here.
"""
from . import BLOCK_COPY, register
from .fleecing_pull import PULL_WHY, build_pull

OLD = "2018's scratch image and backup sync=none job"


@register("fleecing-pull-2018", options=("target", "sync", "incremental") + BLOCK_COPY + (
    "cache.device", "cache.size", "cache.cluster-size", "order", "client.link", "client.storage",
    "client.block-status", "client.hints"), why={
    **PULL_WHY,
    "cache": f"{OLD} have no RAM tier, flush, copy-on-read or served reads (one qcow2 "
             f"scratch file)",
    "lazy-discard": f"{OLD} guard every cluster through the write notifier; there are no "
                    f"deferred discards",
    "on-cbw-error": "2018's write notifier had no on-cbw-error (a failed copy failed the "
                    "guest write)",
    "cbw-timeout": "2018's write notifier had no cbw-timeout",
    "min-cluster-size": "2018's backup sizes clusters from its target only "
                        "(backup_calculate_cluster_size)",
    "client.discard": "discarding the scratch image would expose the backing's new data, "
                      "so 2018 had no read-once TRIM (use fleecing-pull)"})
def build(ctx):
    return build_pull(ctx, modern=False)
