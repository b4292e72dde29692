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
from ..jobs import BackupJob, BlockCopy
from ..nodes import BackupTarget, CBWFilter
from ..policies import make_ordering
from . import Graph, register
from .backup import start_or_idle


@register("legacy-backup")
def build(ctx):
    env, cfg, cs = ctx.env, ctx.cfg, ctx.cluster_size
    target = BackupTarget(env, ctx.devices[cfg.backup.target.device], ctx.n_clusters, cs,
                          ctx.stats)
    g = Graph(top=ctx.active, target=target)

    def start(graph, needed):
        copier = BlockCopy(env, "backup", ctx.active, target, needed, cs, ctx.disk_size,
                           max_chunk=cs, stats=ctx.stats, zero_detect="buffer",
                           parallel=False)
        notifier = CBWFilter(env, ctx.active, copier, ctx.stats, cs)
        job = BackupJob(env, copier, make_ordering("ascending"), workers=1, stats=ctx.stats,
                        speed=cfg.backup.speed, name="legacy-backup")
        graph.top = notifier
        graph.filter = notifier
        graph.job = job
        graph.levels.append(copier.inflight_level)
        graph.done = start_or_idle(env, cfg, job)  # sync=none: the job idles (backup.py)

    def finish(graph):
        graph.filter.deactivate()
        graph.top = ctx.active

    g._start = start
    g._finish = finish
    return g
