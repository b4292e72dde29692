"""``overlay-cor``: Max Reitz's "slow source --> fast overlay --> COR node --> backup".

At t0 an overlay on a fast local device (``backup.overlay.device``, default
``backup.cache.device``) goes on top of the (slow) active disk, a
copy-on-read node on top of it, and the backup's CBW filter on top of that;
the backup is the ``backup`` scheme (one BlockCopy shared by CBW and a
``max-workers`` job, straight to the target). Guest writes land in the overlay
(never on the source); guest reads of clusters not in the overlay are copied
into it, so a later backup or CBW read of them is served by the fast device.

Wiring choice: copy-on-read applies to the guest's reads only. Taken literally
(COR node under the backup filter) the job's own reads would be copied on read
too and the overlay would end up holding the whole disk; the seed's point
(cache what the guest reads so the backup need not read the slow source
again) needs only the guest's reads.

When the backup job ends the filter goes, and the overlay must be merged back:
a live commit copies every allocated overlay cluster into the active disk's
image (guest writes meanwhile still land in the overlay and are committed
again with ``backup.overlay.copy-mode: background``; with the default
``write-blocking`` a guest write also goes to the backing synchronously, so
the commit always converges), then the overlay is dropped. The scheme is done
when the commit is; its I/O counts as local I/O caused by the backup.

The commit is checked: the active disk node's generations are what the guest
sees (overlay + backing); what is really on the disk image is tracked apart
(``DeviceWriter.gen``: its t0 content, then every commit copy and every
write-blocking guest write). When the commit ends, every cluster of the image
must hold the guest's latest generation; ``commit_check`` counts those that do
not (``commit_violations``, folded into ``oracle_ok``). Write-blocking writes
wait for the commit's copies in flight on their clusters first, as mirror's
active writes do (block/mirror.c, active_write_prepare ->
mirror_wait_on_conflicts); without that a copy that read older data could land
after the guest's write.
"""
import numpy as np

from ..jobs import BackupJob, BlockCopy, job_errors
from ..jobs.commit import CommitJob
from ..nodes import BackupTarget, CBWFilter
from ..nodes.overlay import DeviceWriter, Overlay
from ..policies import make_ordering
from . import BLOCK_COPY, COPY, JOB_ERROR, Graph, register
from .backup import DIRECT_WHY


@register("overlay-cor", options=COPY + BLOCK_COPY + JOB_ERROR + (
    "overlay", "cache.device"), why={
    **DIRECT_WHY,
    "discard-source": "the job's source is the overlay, which holds the guest's own new "
                      "writes until the commit (blockdev-backup discard-source would drop them)",
    "cache": "it has no fleecing cache (backup.cache.device is only the default of "
             "backup.overlay.device)"})
def build(ctx):
    env, cfg, cs = ctx.env, ctx.cfg, ctx.cluster_size
    b = cfg.backup
    target = BackupTarget(env, ctx.devices[b.target.device], ctx.n_clusters, cs, ctx.stats)
    ov_dev = ctx.devices[b.overlay.device or b.cache.device]
    overlay = Overlay(env, ov_dev, ctx.active, ctx.n_clusters, cs, ctx.stats, cor=True)
    g = Graph(top=ctx.active, target=target, cache=overlay)
    g.levels += [overlay.level]

    # The active disk's image below the overlay: its content at t0, then what
    # the commit (and write-blocking guest writes) put there.
    image = DeviceWriter(env, ctx.active.device, cs, ctx.stats)

    def start(graph, needed):
        image.gen = ctx.active.gen.copy()
        copier = BlockCopy(env, "backup", overlay.no_cor(), target, needed, cs, ctx.disk_size,
                           max_chunk=cfg.max_chunk, stats=ctx.stats,
                           count_source_reads=False)  # the no-COR view splits local/source
        cbw = CBWFilter(env, overlay, copier, ctx.stats, cs,
                        on_cbw_error=b.on_cbw_error, cbw_timeout=b.cbw_timeout)
        job = BackupJob(env, copier, make_ordering("ascending"), workers=b.max_workers,
                        stats=ctx.stats, speed=b.speed, name="backup", **job_errors(b))
        graph.top = cbw
        graph.filter = cbw
        graph.job = job
        graph.levels.append(copier.inflight_level)
        graph.done = env.event()
        env.process(_lifecycle(graph, job))
        job.start()

    def _lifecycle(graph, job):
        ok = yield job.done
        graph.filter.deactivate()
        graph.top = overlay
        dirty = overlay.alloc.copy()
        ccopier = BlockCopy(env, "commit", overlay.layer(), image, dirty, cs, ctx.disk_size, max_chunk=cfg.max_chunk, stats=ctx.stats,
                            count_source_reads=False)
        commit = CommitJob(env, ccopier, make_ordering("ascending"), workers=b.max_workers,
                           stats=ctx.stats, name="commit", drain=overlay.quiet,
                           on_complete=lambda _ok: drop_overlay(graph))
        overlay.on_write = commit.mark_dirty
        overlay.write_through = b.overlay.copy_mode == "write-blocking"
        overlay.image = image
        overlay.conflicts = ccopier.waits_in
        graph.commit = commit
        commit.start()
        ok_commit = yield commit.done
        graph.done.succeed(bool(ok) and bool(ok_commit))

    def drop_overlay(graph):
        """The commit is done (nothing dirty, nothing in flight): the overlay
        goes and the guest writes the active disk again, in the same instant
        (no guest write can land in the overlay in between)."""
        graph.image_lost = image_lost()  # the image must hold what the guest sees
        overlay.on_write = None
        overlay.write_through = False
        overlay.image = None
        overlay.conflicts = None
        graph.top = ctx.active
        overlay.clear()

    def image_lost() -> int:
        """Clusters whose image content is not the guest's latest generation."""
        if image.gen is None:
            return 0
        return int(np.count_nonzero(image.gen != ctx.active.gen))

    def commit_check(graph):
        lost = getattr(graph, "image_lost", None)
        return image_lost() if lost is None else lost  # commit never ended: as of now

    g._start = start
    g._commit_check = commit_check
    return g
