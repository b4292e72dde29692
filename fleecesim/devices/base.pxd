# Typed attributes of the analytic queue (compiled with Cython from base.py;
# fleecesim/_compiled.py). ``__dict__``: devices carry attributes set by
# others (reflink, page_cache, copy_s_per_byte) and read with vars().

cdef class _Last:
    cdef public double service


cdef class Device:
    cdef dict __dict__
    cdef public object name
    cdef public double latency, bandwidth, write_latency, write_bandwidth
    cdef public double inv_bw, inv_wbw, min_read, min_write
    cdef public object slots
    cdef public list _free, _busy
    cdef public double _pipe_free, busy
    cdef public bint ps, _positions
    cdef public Py_ssize_t _prune_at
    cdef public object ops, bytes
