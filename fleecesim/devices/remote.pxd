# Compiled build (Cython): the NBD transport's submit path typed (its pipes,
# wires, connections and the remote device's per-request constants are C
# fields). devices/remote.py stays the one source; this file only declares types.
import cython


cdef class _Pipe:
    cdef public list s, e

    @cython.locals(s=list, e=list, end=cython.double, lo=cython.double, hi=cython.double,
                   cur=cython.double, rem=cython.double, gap=cython.double,
                   i=Py_ssize_t, j=Py_ssize_t, n=Py_ssize_t)
    cpdef double place(self, double x, double d) except? -1.0


cdef class Wire:
    cdef public _Pipe pipe
    cdef public double inv_bw, delay, busy
    cdef public long long bytes


cdef class _Connection:
    cdef public list free
    cdef public long long unused, open
    cdef public double last_start
    cdef public _Pipe win_up, win_down


cdef class RemoteDevice:
    cdef dict __dict__
    cdef public object name, link, backend, window, slots, latency, bandwidth
    cdef public long long connections, overhead, reply_overhead
    cdef public double _win_s_per_byte
    cdef public list _conns
    cdef public Py_ssize_t _rr
    cdef public double _rtt, _half_rtt, _inv_bw
    cdef public list _up_s, _up_e, _down_s, _down_e
    cdef public long long window_limited
    cdef public double copy_s_per_byte
    cdef public bint link_shared, _served
    cdef public double _seen

    @cython.locals(conn=_Connection, start=cython.double, s=list, e=list, ds=list, de=list,
                   win=cython.double, inv_bw=cython.double, half=cython.double,
                   copy=cython.double, x=cython.double, nbytes=cython.longlong,
                   d=cython.double, arrive=cython.double, w=cython.double,
                   up_bytes=cython.longlong, done=cython.double, s_back=cython.double,
                   d2=cython.double, end=cython.double, up=Wire, down=Wire)
    cpdef double submit(self, double now, object offset, long long length, bint write=*) except? -1.0
