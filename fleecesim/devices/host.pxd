# Compiled build (Cython): typed layout of the host's cost and the
# HostDevice submit path; devices/host.py stays the one source.
import cython
from .base cimport Device as _CDevice


cdef class Host:
    cdef public double request_cost, memcpy_bandwidth
    cdef public object cpu, memcpy
    cdef public double _cpu_free
    cdef public long long requests, copied

    @cython.locals(t=cython.double, pipe=cython.double, mc=_CDevice)
    cpdef double charge(self, double now, long long nbytes) except? -1.0


cdef class HostDevice:
    cdef dict __dict__
    cdef public Host host
    cdef public bint copy

    @cython.locals(host=Host, mc=_CDevice, dev=_CDevice, free=list, b=list, t=cython.double,
                   hs=cython.double, cp=cython.double, pipe=cython.double,
                   start=cython.double, xfer=cython.double, dur=cython.double,
                   end=cython.double, last=cython.double, f0=cython.double,
                   b2=cython.double)
    cpdef double _submit_queue(self, double now, object offset, long long length,
                               bint write=*) except? -1.0
