"""``fleecing-push-2018``: the seed's "two backups, one with sync=none" push with a
local cache (Vladimir, 2018: "a local cache as COW target and slow remote
backup target. How to do it now? Using two backups, one with sync=none").

Job 1 is ``backup sync=none`` from the active disk into a local scratch image
(on ``backup.cache.device``) whose backing is the active disk: its write
notifier saves the old data of every cluster the guest overwrites into the
scratch image — 2018's engine: no bitmap (every cluster is guarded for the
whole backup), one cluster at a time, zeroes found by reading. This is the
wiring of ``fleecing-pull-2018``.

Job 2 is a plain backup job of that era (QEMU 2.12 block/backup.c,
backup_run -> backup_do_cow: one coroutine, one cluster at a time, zeroes by
buffer_is_zero; the engine ``legacy-backup`` uses) from the scratch image to
the remote target. Its reads of clusters the scratch image does not hold go
to the active disk, serialised against guest writes (the snapshot view's
frozen reads, as in fleecing-pull-2018).

The trap: job 2 has a write notifier too, on *its* source, the scratch image
(bdrv_add_before_write_notifier in backup_run). The guest never writes the
scratch image, but job 1 does: every CBW write of job 1 into the scratch image
goes through bdrv_aligned_pwritev (block/io.c), which calls the scratch
image's before-write notifiers, so job 2's backup_before_write_notify ->
backup_do_cow first copies that cluster (read through the scratch image, i.e.
from the active disk, still t0) to the remote target if job 2 has not copied
it yet. So a guest write to a cluster job 2 has not reached waits for a remote
copy, as with ``legacy-backup``; only clusters job 2 already passed get the
local-only CBW. Modelled as what it is: a CBW filter (job 2's notifier,
sharing job 2's copy bitmap) on top of the scratch image, under job 1's copies.
``cbw_count``/``cbw_bytes`` count both notifiers' copies.
"""
from ..jobs import BackupJob, BlockCopy, job_errors
from ..nodes import BackupTarget, CBWFilter, FleecingCache, SnapshotView, Tier
from ..policies import make_ordering
from . import JOB_ERROR, Graph, register
from .fleecing_push import finish_fleecing


@register("fleecing-push-2018", options=(
    "target", "sync", "incremental", "speed", "cache.device", "cache.size",
    "cache.cluster-size") + JOB_ERROR, why={
    "cache": "2018's scratch image has no RAM tier, flush, copy-on-read or served reads",
    "max-workers": "2018's backup jobs copy one cluster at a time with one coroutine",
    "max-chunk": "2018's backup jobs copy one cluster at a time",
    "min-cluster-size": "2018's backup sizes clusters from its target only "
                        "(backup_calculate_cluster_size)",
    "on-cbw-error": "2018's write notifiers had no on-cbw-error (a failed copy failed the "
                    "guest write)",
    "cbw-timeout": "2018's write notifiers had no cbw-timeout"})
def build(ctx):
    env, cfg, cs = ctx.env, ctx.cfg, ctx.cluster_size
    b = cfg.backup
    target = BackupTarget(env, ctx.devices[b.target.device], ctx.n_clusters, cs, ctx.stats)
    capacity = b.cache.size if b.cache.size is not None else ctx.n_clusters * cs
    scratch = FleecingCache(env, [Tier(env, "disk", ctx.devices[b.cache.device], capacity)],
                            ctx.n_clusters, cs, ctx.stats)
    g = Graph(top=ctx.active, target=target, cache=scratch)
    g.levels += [scratch.level]

    def start(graph, needed):
        # job 2's copy bitmap, shared by its loop and its write notifier
        copier2 = BlockCopy(env, "backup", None, target, needed, cs, ctx.disk_size,
                            max_chunk=ctx.job_cluster_size, stats=ctx.stats,
                            zero_detect="buffer", parallel=False, count_source_reads=False,
                            granularity=ctx.job_cluster_size)
        # job 2's write notifier on the scratch image: job 1's writes pass it
        # (nested: a guest write's wait for this notifier's remote copy is
        # attributed to target_write, not to the scratch image's write)
        notifier2 = CBWFilter(env, scratch, copier2, ctx.stats, cs,
                              on_cbw_error=b.on_cbw_error, cbw_timeout=b.cbw_timeout,
                              nested=True)
        # job 1: backup sync=none into the scratch image, no bitmap, one cluster at a time
        ones = needed.copy()
        ones[:] = True
        copier1 = BlockCopy(env, "cbw", ctx.active, notifier2, ones, cs, ctx.disk_size,
                            max_chunk=ctx.cbw_cluster_size, stats=ctx.stats,
                            zero_detect="buffer", parallel=False,
                            granularity=ctx.cbw_cluster_size)
        cbw = CBWFilter(env, ctx.active, copier1, ctx.stats, cs, cache=scratch,
                        on_cbw_error=b.on_cbw_error, cbw_timeout=b.cbw_timeout)
        copier2.source = SnapshotView(env, cbw, cs)  # the scratch image over the active disk
        job = BackupJob(env, copier2, make_ordering("ascending"), workers=1,
                        stats=ctx.stats, speed=b.speed, name="backup", **job_errors(b))
        graph.top = cbw
        graph.filter = cbw
        graph.job = job
        graph.levels.append(copier2.inflight_level)
        graph.done = job.done
        job.start()

    g._start = start
    g._finish = finish_fleecing
    return g
