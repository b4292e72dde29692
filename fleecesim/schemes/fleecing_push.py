"""``fleecing-push``: CBW filter + fleecing cache + snapshot view + backup job.

At t0 a copy-before-write filter goes on top of the active disk, saving old
data into the local fleecing cache; a backup job (block-copy: ``max-workers``
tasks of up to ``max-chunk``) copies the snapshot view to the remote target.
When the job ends the filter is removed and the fleecing image deleted.
"""
from ..jobs import BackupJob, BlockCopy
from ..nodes import BackupTarget, CBWFilter, FleecingCache, SnapshotView, Tier
from ..policies import make_ordering
from . import Graph, register


@register("fleecing-push")
def build(ctx):
    env, cfg, cs = ctx.env, ctx.cfg, ctx.cluster_size
    b = cfg.backup
    target = BackupTarget(env, ctx.devices[b.target.device], ctx.n_clusters, cs, ctx.stats)
    capacity = b.cache.size if b.cache.size is not None else ctx.n_clusters * cs
    cache = FleecingCache(env, [Tier(env, "disk", ctx.devices[b.cache.device], capacity)],
                          ctx.n_clusters, cs, ctx.stats)
    g = Graph(top=ctx.active, target=target, cache=cache)
    g.levels += [cache.level]

    def start(graph, needed):
        cbw_copier = BlockCopy(env, "cbw", ctx.active, cache, needed.copy(), cs, ctx.disk_size,
                               max_chunk=cs, stats=ctx.stats)
        cbw = CBWFilter(env, ctx.active, cbw_copier, ctx.stats, cs, cache=cache,
                        on_cbw_error=b.on_cbw_error, cbw_timeout=b.cbw_timeout)
        snap = SnapshotView(env, cbw, cs)
        job_copier = BlockCopy(env, "backup", snap, target, needed, cs, ctx.disk_size,
                               max_chunk=cfg.max_chunk, stats=ctx.stats,
                               count_source_reads=False)  # the snapshot view counts them
        job = BackupJob(env, job_copier, make_ordering("ascending"), workers=b.max_workers,
                        stats=ctx.stats, speed=b.speed, name="backup")
        graph.top = cbw
        graph.filter = cbw
        graph.job = job
        graph.done = job.done
        graph.levels.append(job_copier.inflight_level)
        job.start()

    def finish(graph):
        graph.filter.deactivate()
        graph.top = ctx.active
        cache.clear()

    g._start = start
    g._finish = finish
    return g
