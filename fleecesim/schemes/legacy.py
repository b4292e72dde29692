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
from . import JOB_ERROR, register
from .backup import DIRECT_WHY, direct_backup

LEGACY_WHY = {
    **DIRECT_WHY,
    "max-workers": "2018's backup copies with one coroutine (x-perf max-workers came with "
                   "block-copy in QEMU 6.0); use scheme 'backup'",
    "max-chunk": "2018's backup copies one cluster at a time (x-perf max-chunk came with "
                 "block-copy in QEMU 6.0); use scheme 'backup'",
    "min-cluster-size": "2018's backup sizes clusters from the target only "
                        "(backup_calculate_cluster_size); use scheme 'backup'",
}


@register("legacy-backup", options=("target", "sync", "incremental", "speed", "window") + JOB_ERROR,
          why=LEGACY_WHY)
def build(ctx):
    return direct_backup(ctx, name="legacy-backup", max_chunk=ctx.job_cluster_size, workers=1,
                         zero_detect="buffer", parallel=False)
