"""Background work: the block-copy engine and the backup job that drives it."""
from .block_copy import BlockCopy
from .backup import BackupJob, job_errors

__all__ = ["BlockCopy", "BackupJob", "job_errors"]
