"""QEMU's error policies: what a failed request or copy costs, by errno.

Two places in QEMU decide what an I/O error does, with the same four values
(qapi/block-core.json: BlockdevOnError ``report | ignore | enospc | stop``):

* **The guest's block backend** (``-drive werror=,rerror=``; config
  ``guest.werror`` / ``guest.rerror``). block/block-backend.c: ``blk_new``
  sets ``on_write_error = BLOCKDEV_ON_ERROR_ENOSPC`` and ``on_read_error =
  BLOCKDEV_ON_ERROR_REPORT``; ``blk_get_error_action`` maps ``enospc`` to
  BLOCK_ERROR_ACTION_STOP for ENOSPC and REPORT for any other errno. The
  device model acts on it (hw/block/virtio-blk.c: virtio_blk_handle_rw_error):
  STOP puts the request on the device's restart list (``req->next = s->rq``)
  and ``blk_error_action`` emits BLOCK_IO_ERROR and asks for the VM to stop
  (qemu_system_vmstop_request(RUN_STATE_IO_ERROR)); on ``cont`` the list is
  resubmitted (virtio_blk_dma_restart_cb). REPORT completes the request with
  VIRTIO_BLK_S_IOERR. IGNORE completes it as if it had succeeded
  (virtio_blk_handle_rw_error returns false: virtio_blk_rw_complete goes on to
  VIRTIO_BLK_S_OK) -- the write did not happen and the guest is not told.
* **The backup job** (blockdev-backup ``on-source-error`` / ``on-target-error``,
  default ``report``, blockdev.c: do_backup_common; config
  ``backup.on-source-error`` / ``backup.on-target-error``). block/backup.c:
  backup_error_action picks the policy by whether the failed request was the
  read (source) or the write (target); blockjob.c: block_job_error_action
  maps ``enospc`` as above, emits BLOCK_JOB_ERROR, and for STOP pauses the
  job as if the user had (job_user_pause_locked: ``block-job-resume`` resumes
  it). block/backup.c: backup_loop then ends the job for REPORT, waits at
  job_pause_point for STOP, and for IGNORE starts a new block-copy call at
  once ("Proceed to new block-copy call to retry"): the failed chunk's bits
  were set back (block/block-copy.c: block_copy_task_end), so it is copied
  again.

Which errno a failure has in this model (``errno`` of the node that failed):

* a write to the fleecing image that finds no room (``faults.fleecing-device.
  free``, ``backup.cache.size``, a thin volume with ``beyond: fail``): ENOSPC;
  copy-before-write returns it to the guest write (block/copy-before-write.c:
  cbw_do_copy_before_write returns block_copy's error when on-cbw-error is
  break-guest-write);
* a copy-before-write that exceeds ``cbw-timeout``: ETIMEDOUT (block/block-copy.c:
  block_copy -> qemu_co_timeout returns -ETIMEDOUT);
* any request to the backup target that fails (outage, reset): EIO (the NBD
  client's error, block/nbd.c);
* a snapshot read the snapshot refuses (broken, or outside the access bitmap):
  EACCES (block/copy-before-write.c: cbw_snapshot_read_lock).

So a job's error is never ENOSPC here, and ``enospc`` for the job acts as
``report``; a guest read never fails, so ``guest.rerror`` never acts. A
guest write the guest's ``ignore`` passes off as done never reached the
active disk: its clusters keep their t0 generation and their copy bit (the
failed copy set it back), so the job still copies their t0 content and the
data oracle (which checks the backup image only) holds; the guest's data is
what is lost, counted as ``errors_ignored``.

While the VM is stopped the backup job runs on (vm_stop pauses vCPUs and
drains requests, not block jobs); while the job is paused the
copy-before-write filter still copies before guest writes (under ``backup``
and ``legacy-backup`` to the target: a target error there fails the guest
write, with EIO, whatever on-target-error says).
"""
from __future__ import annotations

import errno as _errno

from .units import parse_time

ENOSPC = _errno.ENOSPC
EIO = _errno.EIO
EACCES = _errno.EACCES
ETIMEDOUT = _errno.ETIMEDOUT

POLICIES = ("report", "ignore", "stop", "enospc")
REPORT, IGNORE, STOP = "report", "ignore", "stop"


def action(policy: str, err: int) -> str:
    """BlockdevOnError -> BlockErrorAction (blk_get_error_action,
    block_job_error_action): ``report``, ``ignore`` or ``stop``."""
    if policy == "enospc":
        return STOP if err == ENOSPC else REPORT
    return policy


def errname(err: int) -> str:
    return _errno.errorcode.get(err, str(err))


def node_errno(node) -> int:
    """What a failed request of ``node`` is in errno terms (its ``errno``;
    EIO if it does not say)."""
    return getattr(node, "errno", EIO)


def parse_resume_after(v):
    """``resume-after``: ``never`` (None) or a time > 0 after the stop."""
    if v is None or (isinstance(v, str) and v.strip().lower() == "never"):
        return None
    t = parse_time(v)
    if not t > 0:
        raise ValueError(f"expected 'never' or a time > 0 like '10s', got {v!r}")
    return t
