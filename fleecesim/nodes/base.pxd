# Compiled build (Cython): the analytic engine's timer event and event loop
# with typed locals; nodes/base.py stays the one source.
import cython


cdef class Timer:
    cdef public list callbacks


@cython.locals(t=Timer)
cpdef Timer timer(env, double delay)

@cython.locals(t=Timer)
cpdef call_at(env, end, cb)


cdef class Node:
    cdef public object env
    cdef public str name
    cdef public object cs
