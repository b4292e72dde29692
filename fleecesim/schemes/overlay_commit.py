"""``overlay-commit``: Max Reitz's alternative — back up to a fast local overlay over
the slow target and run a live commit of the overlay into the target on the side.

The backup is the ``backup`` scheme (CBW filter sharing one BlockCopy with a
``max-workers`` job), but its target is an overlay image on a local device
(``backup.overlay.device``, default ``backup.cache.device``) whose backing is
the remote target: guest writes wait only for local copies. A commit job
copies every cluster written into the overlay down to the remote target while
the backup runs, and the scheme is done when the backup job has finished and
the commit has drained (the backup is on the target only then). The seed's
objection is the cost: every copied cluster goes through the overlay (written
and read back locally), not only the clusters the guest overwrote.

Besides the target oracle, ``commit_check`` counts clusters the backup wrote
into the overlay that the target does not hold as the overlay had them when
the drain ended (``commit_violations``: a commit that drops dirty clusters).
"""
import numpy as np

from ..jobs import BackupJob, BlockCopy, job_errors
from ..jobs.commit import CommitJob
from ..nodes import BackupTarget, CBWFilter
from ..nodes.overlay import TargetOverlay
from ..nodes.target import UNWRITTEN
from ..policies import make_ordering
from . import BLOCK_COPY, COPY, JOB_ERROR, Graph, register
from .backup import DIRECT_WHY


@register("overlay-commit", options=COPY + BLOCK_COPY + (
    "overlay.device", "cache.device"), why={
    **DIRECT_WHY,
    **{k: "its backup job writes the local overlay, which never fails; the target is "
          "written by the commit (QEMU's block-commit has its own on-error)"
       for k in JOB_ERROR},
    "overlay.copy-mode": "its commit drains an overlay only the backup writes (the guest "
                         "never writes it), so mirror's copy-mode has nothing to do",
    "cache": "it has no fleecing cache (backup.cache.device is only the default of "
             "backup.overlay.device)"})
def build(ctx):
    env, cfg, cs = ctx.env, ctx.cfg, ctx.cluster_size
    b = cfg.backup
    target = BackupTarget(env, ctx.devices[b.target.device], ctx.n_clusters, cs, ctx.stats)
    ov_dev = ctx.devices[b.overlay.device or b.cache.device]
    overlay = TargetOverlay(env, ov_dev, ctx.n_clusters, cs, ctx.stats)
    g = Graph(top=ctx.active, target=target, cache=overlay)
    g.levels += [overlay.level]

    def start(graph, needed):
        copier = BlockCopy(env, "backup", ctx.active, overlay, needed, cs, ctx.disk_size,
                           max_chunk=cfg.max_chunk, stats=ctx.stats)
        cbw = CBWFilter(env, ctx.active, copier, ctx.stats, cs,
                        on_cbw_error=b.on_cbw_error, cbw_timeout=b.cbw_timeout)
        job = BackupJob(env, copier, make_ordering("ascending"), workers=b.max_workers,
                        stats=ctx.stats, speed=b.speed, name="backup", **job_errors(b))
        dirty = needed.copy()
        dirty[:] = False
        ccopier = BlockCopy(env, "commit", overlay, target, dirty, cs, ctx.disk_size,
                            max_chunk=cfg.max_chunk, stats=ctx.stats, count_source_reads=False)
        commit = CommitJob(env, ccopier, make_ordering("ascending"), workers=b.max_workers,
                           stats=ctx.stats, source_done=job.done, name="commit")
        overlay.on_dirty = commit.mark_dirty
        graph.top = cbw
        graph.filter = cbw
        graph.job = job
        graph.commit = commit
        graph.levels += [copier.inflight_level, ccopier.inflight_level]
        graph.done = env.event()
        env.process(_lifecycle(graph, job, commit))
        job.start()
        commit.start()

    def _lifecycle(graph, job, commit):
        ok = yield job.done
        graph.filter.deactivate()  # the backup job ended: the filter goes
        graph.top = ctx.active
        ok_commit = yield commit.done
        graph.done.succeed(bool(ok) and bool(ok_commit))

    def finish(graph):
        overlay.clear()

    def commit_check(graph):
        """Clusters the backup put into the overlay that the drain did not carry
        to the target as they were (checked before the overlay is dropped)."""
        written = overlay.gen != UNWRITTEN
        return int(np.count_nonzero(written & (target.gen != overlay.gen)))

    g._start = start
    g._finish = finish
    g._commit_check = commit_check
    return g
