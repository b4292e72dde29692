# Compiled build (Cython): the active disk's fast path with typed cluster
# arithmetic; nodes/active_disk.py stays the one source.
import cython
from .base cimport Node


cdef class ActiveDisk(Node):
    cdef dict __dict__
    cdef public object device, gen, zero
    cdef public long long n

    @cython.locals(cs=cython.longlong, c0=cython.longlong, c1=cython.longlong)
    cpdef _written(self, long long offset, long long length)
