# Compiled build (Cython): the guest driver's hot state typed; the analytic
# engine's arrival loop (_resume) runs compiled. workloads/driver.py stays
# the one source.
import cython
from ..devices.base cimport _Last
from ..nodes.base cimport Timer
from ..metrics cimport Recorder


cdef class GuestDriver:
    cdef dict __dict__
    cdef public object env, graph, source, rec, iodepth, max_inflight
    cdef public bint fast_path, processes, stopped, paused
    cdef public long long issued
    cdef public object progress
    cdef public object _it, _held, _chunks
    cdef public object _app

    @cython.locals(last=_Last, w=Timer, issue=cython.bint, rec=Recorder, app=tuple)
    cpdef _resume(self, _ev=*)

    @cython.locals(t=Timer)
    cpdef _wait(self, delay, held)
