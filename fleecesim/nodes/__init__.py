"""Block-graph nodes: one read/write/discard interface; a node knows only its children."""
from .base import Node, REQ_CBW, REQ_ZERO, REQ_UNNECESSARY
from .active_disk import ActiveDisk
from .cache import FleecingCache, Tier
from .cbw import CBWFilter
from .snapshot import SnapshotView
from .target import BackupTarget

__all__ = ["Node", "REQ_CBW", "REQ_ZERO", "REQ_UNNECESSARY", "ActiveDisk", "FleecingCache", "Tier",
           "CBWFilter", "SnapshotView", "BackupTarget"]
