"""``legacy-backup``: QEMU's 2018 write-notifier backup.

One coroutine copies clusters in ascending order straight to the target; a
guest write (or discard) to a cluster not yet copied first copies that cluster
to the target (the before-write notifier), one cluster at a time, and only
then proceeds. Both share one copy bitmap. 2018's backup found zeroes by
reading the data (buffer_is_zero), not by block status.

In node terms this is a CBW filter whose copy target is the remote target
itself — the seed's "if we have only ram-cache, it would be equal to current
approach".
"""
from . import register
from .backup import direct_backup


@register("legacy-backup")
def build(ctx):
    return direct_backup(ctx, name="legacy-backup", max_chunk=ctx.job_cluster_size, workers=1,
                         zero_detect="buffer", parallel=False)
