"""``backup``: QEMU >= 6's blockdev-backup without fleecing.

At t0 a copy-before-write filter goes on top of the active disk; it and the
backup job share one BlockCopy (active disk -> remote target): one copy
bitmap, one list of copies in flight, one 128 MiB in-flight memory cap. The
job copies with ``max-workers`` tasks of up to ``max-chunk`` (zero ranges found
by block status become write-zeroes, no data read), ``speed`` throttling only
the job; a guest write to a cluster not yet copied copies it straight to the
target first (chunked and parallel, ignoring ``speed``) and a guest write to a
cluster in flight waits for that copy. This is ``legacy-backup`` with 2018's
one-coroutine-one-cluster engine replaced by block-copy, so old vs new is one
config key.

``backup.sync``: ``full`` and ``incremental`` copy the t0 bitmap run.py hands
in; ``none`` starts no copying at all: the job idles for ``backup.window``
seconds while CBW saves to the target the t0 content of every cluster the
guest overwrites (see fleecesim/sync.py for what the oracle checks).

``backup.cbw-priority`` (default off, as QEMU): the target serves queued
copy-before-write writes before the job's queued writes (see
nodes/target.py, BackupTarget).

``backup.x-perf.use-copy-range`` (QEMU >= 6.0): the shared BlockCopy copies
data chunks (job and CBW alike, as they share QEMU's BlockCopyState method)
with copy_file_range, 1 MiB at a time until one succeeded, then 16 MiB unless
``max-chunk`` says otherwise; where the kernel cannot offload (NBD, two
filesystems) block-copy falls back to read + write (jobs/block_copy.py,
devices/host.py: copy_file_range).
"""
from ..jobs import BackupJob, BlockCopy, job_errors
from ..nodes import CBWFilter
from ..policies import make_ordering
from . import BLOCK_COPY, COPY, JOB_ERROR, Graph, backup_target, register, target_done

# blockdev-backup (qapi/block-core.json BackupCommon): speed, x-perf max-workers /
# max-chunk / min-cluster-size, sync; no ordering option (block/backup.c
# backup_loop walks the copy bitmap in ascending order). Its discard-source
# (9.1) discards the job's source -- here the guest's active disk.
DIRECT_WHY = {
    "order": "QEMU's blockdev-backup has no ordering option (block/backup.c backup_loop "
             "copies in ascending order); copy-ordering policies are for fleecing schemes",
    "discard-source": "blockdev-backup's discard-source discards the job's source, which "
                      "here is the guest's own active disk (read-once needs fleecing-push)",
}


def start_or_idle(env, cfg, job):
    """Start ``job``, or for sync=none let it idle for ``backup.window`` seconds;
    returns the event that ends the backup."""
    if cfg.backup.sync == "none":
        job.t_start = env.now
        return env.timeout(cfg.backup.window, value=True)
    job.start()
    return job.done


def direct_backup(ctx, *, name: str, max_chunk: int, workers: int, zero_detect: str,
                  parallel: bool, copy_range: bool = False) -> Graph:
    """A CBW filter and a backup job sharing one BlockCopy, active disk -> target:
    the wiring of both ``backup`` and ``legacy-backup`` (they differ only in the
    copy engine's parameters)."""
    env, cfg, cs = ctx.env, ctx.cfg, ctx.cluster_size
    b = cfg.backup
    target = backup_target(ctx, cbw_priority=b.cbw_priority)
    g = Graph(top=ctx.active, target=target)

    def start(graph, needed):
        copier = BlockCopy(env, "backup", ctx.active, target, needed, cs, ctx.disk_size,
                           max_chunk=max_chunk, stats=ctx.stats, zero_detect=zero_detect,
                           parallel=parallel, granularity=ctx.job_cluster_size,
                           copy_range=copy_range, copy_range_chunk=ctx.cfg.copy_range_chunk)
        cbw = CBWFilter(env, ctx.active, copier, ctx.stats, cs,
                        on_cbw_error=b.on_cbw_error, cbw_timeout=b.cbw_timeout)
        job = BackupJob(env, copier, make_ordering("ascending"), workers=workers,
                        stats=ctx.stats, speed=b.speed, name=name, **job_errors(b))
        graph.top = cbw
        graph.filter = cbw
        graph.job = job
        graph.levels.append(copier.inflight_level)
        graph.done = target_done(target, start_or_idle(env, cfg, job))

    g._start = start
    return g


@register("backup", options=COPY + BLOCK_COPY + JOB_ERROR + ("window", "cbw-priority", "x-perf"),
          why=DIRECT_WHY)
def build(ctx):
    return direct_backup(ctx, name="backup", max_chunk=ctx.cfg.max_chunk,
                         workers=ctx.cfg.backup.max_workers, zero_detect="block-status",
                         parallel=True, copy_range=ctx.cfg.backup.x_perf.use_copy_range)
