# Compiled build (Cython): the analytic copy engine's per-task objects as
# typed classes (struct fields instead of slot descriptors); the BlockCopy
# state itself stays a Python class. jobs/block_copy.py stays the one source.
import cython
from ..nodes.base cimport Timer


cdef class CopyTask:
    cdef public object env, ev, urgent, result, read_end, end, room, read_failed


cdef class _Copy:
    cdef public object bc, a, b, zero, flags, done, sized, off, ln, fin
    cdef public CopyTask ev


cdef class _Join:
    cdef public object env, ok, done, copied
    cdef public long long left

    @cython.locals(t=Timer)
    cpdef task_end(self, ok)

    @cython.locals(t=Timer)
    cpdef _counted(self, _ev)
