# Compiled build (Cython): the backup target as a typed class (its write
# fast path's fields are C fields; the rest in its __dict__).
# nodes/target.py stays the one source.
import cython
from .base cimport Node


cdef class BackupTarget(Node):
    cdef dict __dict__
    cdef public object device, stats, gen, copies
    cdef public bint queued, _faulty
