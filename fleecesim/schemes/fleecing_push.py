"""``fleecing-push``: CBW filter + fleecing cache + snapshot view + backup job.

At t0 a copy-before-write filter goes on top of the active disk, saving old
data into the local fleecing cache; a backup job (block-copy: ``max-workers``
tasks of up to ``max-chunk``) copies the snapshot view to the remote target.
When the job ends the filter is removed and the fleecing image deleted.

The seed's tiered cache is options here: ``backup.cache.ram``
(a RAM tier in front of the disk tier), ``backup.cache.flush`` watermarks,
``backup.cache.cor`` and ``serve-reads-from-ram``; ``backup.discard-source``
(read-once: the job discards each range of the snapshot view after copying
it), ``backup.lazy-discard``, ``backup.order`` (a copy-ordering policy) and
``on-cbw-error: wait``. The defaults are the single-tier cache of before.
"""
from ..jobs import BackupJob, BlockCopy, job_errors
from ..nodes import CBWFilter, FleecingCache, SnapshotView, Tier
from ..policies import make_ordering
from ..qemu import versions
from . import (BLOCK_COPY, COPY, JOB_ERROR, TIERED_CACHE, Graph, backup_target, register,
               target_done)


def tiered_cache(ctx) -> FleecingCache:
    """The fleecing image as configured: an optional RAM tier in front of the
    disk tier, watermarks, and what to do when both are full."""
    env, cs, b = ctx.env, ctx.cluster_size, ctx.cfg.backup
    capacity = b.cache.size if b.cache.size is not None else ctx.n_clusters * cs
    tiers = []
    if b.cache.ram.size:
        name = b.cache.ram.device  # a device of the config (config/scenario.py checks)
        ram = b.cache.ram.size // ctx.cbw_cluster_size * ctx.cbw_cluster_size  # whole clusters
        disk = -(-ctx.disk_size // ctx.cbw_cluster_size) * ctx.cbw_cluster_size
        if ram > disk:  # more RAM than the disk could ever need: clamp, and say so
            ctx.stats.warnings.append(
                f"backup.cache.ram.size ({ram} bytes) is larger than the disk; clamped to "
                f"{disk} bytes (the most the fleecing image can hold)")
            ram = disk
        tiers.append(Tier(env, "ram", ctx.devices[name], ram, kind="ram"))
    tiers.append(Tier(env, "disk", ctx.devices[b.cache.device], capacity))
    return FleecingCache(env, tiers, ctx.n_clusters, cs, ctx.stats,
                         wait_for_room=b.on_cbw_error == "wait",
                         flush_high=b.cache.flush.high, flush_low=b.cache.flush.low)


def cbw_filter(ctx, cache, needed) -> CBWFilter:
    """The copy-before-write filter into ``cache``, with the seed's options.
    Its cbw-timeout is the one the configured QEMU applies (before 9.1 a
    uint32 of nanoseconds: qemu/versions.py cbw_timeout_seconds)."""
    env, cs, b = ctx.env, ctx.cluster_size, ctx.cfg.backup
    cbw_copier = BlockCopy(env, "cbw", ctx.active, cache, needed.copy(), cs, ctx.disk_size,
                           max_chunk=ctx.cbw_cluster_size, stats=ctx.stats,
                           granularity=ctx.cbw_cluster_size)
    return CBWFilter(env, ctx.active, cbw_copier, ctx.stats, cs, cache=cache,
                     on_cbw_error=b.on_cbw_error,
                     cbw_timeout=versions.cbw_timeout_seconds(ctx.cfg.qemu.v, b.cbw_timeout),
                     cor=b.cache.cor, serve_reads=b.cache.serve_reads_from_ram,
                     lazy_discard=b.lazy_discard, wanted=needed,
                     access=cbw_copier.needed)  # snapshot-access starts as the CBW bitmap


def finish_fleecing(graph) -> None:
    """The backup ended: deferred discards land and the image is deleted (the
    filter itself is removed by Graph.finish)."""
    graph.filter.apply_deferred_discards()
    graph.cache.clear()


@register("fleecing-push", options=COPY + BLOCK_COPY + TIERED_CACHE + JOB_ERROR + (
    "on-source-error",
    "on-cbw-error", "cbw-timeout", "order", "discard-source"), why={
    "client": "its backup job reads the snapshot view inside QEMU; only pull schemes "
              "have an external NBD client"})
def build(ctx):
    env, cfg, cs = ctx.env, ctx.cfg, ctx.cluster_size
    b = cfg.backup
    target = backup_target(ctx)
    cache = tiered_cache(ctx)
    g = Graph(top=ctx.active, target=target, cache=cache)
    g.levels += [cache.level] + [t.level for t in cache.tiers]
    ctx.stats.warnings += versions.warnings(cfg, "fleecing-push")
    # before QEMU 8.0 the recipe caps the job's reads at one cluster (x-perf
    # max-chunk; qemu/versions.py: hbitmap-status), so the model copies so too
    chunk = versions.job_chunk(cfg.qemu.v, "fleecing-push", cfg.max_chunk, cfg.cluster_size)

    def start(graph, needed):
        cbw = cbw_filter(ctx, cache, needed)
        snap = SnapshotView(env, cbw, cs)
        job_copier = BlockCopy(env, "backup", snap, target, needed, cs, ctx.disk_size,
                               max_chunk=chunk, stats=ctx.stats,
                               granularity=ctx.job_cluster_size,
                               count_source_reads=False)  # the snapshot view counts them

        def read_once(a, c):  # QEMU's discard-source
            return snap.discard(a * cs, (c - a) * cs)
        policy = make_ordering(b.order)
        policy.bind(job_copier, graph)
        job = BackupJob(env, job_copier, policy, workers=b.max_workers, stats=ctx.stats,
                        speed=b.speed, name="backup",
                        after_copy=read_once if b.discard_source else None, **job_errors(b))
        graph.top = cbw
        graph.filter = cbw
        graph.job = job
        graph.done = target_done(target, job.done)
        graph.levels.append(job_copier.inflight_level)
        job.start()

    g._start = start
    g._finish = finish_fleecing
    return g
