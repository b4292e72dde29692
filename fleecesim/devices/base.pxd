# Compiled build (Cython): the typed layout of the analytic device queue.
# devices/base.py stays the one source; this file only declares types.
import cython


cdef class _Last:
    cdef public double service


cdef class Device:
    cdef dict __dict__
    cdef public str name
    cdef public double latency, bandwidth, write_latency, write_bandwidth
    cdef public double inv_bw, inv_wbw, min_read, min_write
    cdef public object slots
    cdef public list _free
    cdef public double _pipe_free
    cdef public bint ps
    cdef public list _busy
    cdef public Py_ssize_t _prune_at
    cdef public long long ops, bytes
    cdef public double busy
    cdef public bint _positions

    @cython.locals(free=list, b=list, start=cython.double, xfer=cython.double,
                   dur=cython.double, end=cython.double, last=cython.double,
                   pipe=cython.double, f0=cython.double, b2=cython.double)
    cpdef double submit(self, double now, object offset, long long length, bint write=*) except? -1.0

    @cython.locals(b=list, i=Py_ssize_t, n=Py_ssize_t, t=cython.double, rem=cython.double,
                   nxt=cython.double, end=cython.double)
    cpdef double _backfill(self, double xfer, double dur, double lo) except? -1.0
