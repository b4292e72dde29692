# Compiled build (Cython): the guest request recorder's row buffers typed, so
# a fast-path request's record is one C call (add_fast) and seven C stores.
# metrics.py stays the one source; this file only declares types.
import cython


cdef class Recorder:
    cdef public object t, op, off, len, lat, path, svc, x_i, x_c
    cdef public Py_ssize_t _n
    cdef double[::1] _bt
    cdef unsigned char[::1] _bop, _bpath
    cdef long long[::1] _boff
    cdef unsigned int[::1] _blen
    cdef float[::1] _blat, _bsvc

    @cython.locals(n=Py_ssize_t)
    cpdef _flush(self)

    @cython.locals(i=Py_ssize_t)
    cpdef add_fast(self, double t, unsigned char op, long long off, unsigned int ln,
                   double lat, double svc, unsigned char path=*)


# a level's fields as C fields (every copy adds to two or three levels);
# value and peak stay objects: a level set to an int keeps it, as interpreted
cdef class Level:
    cdef dict __dict__
    cdef public object env, name, value, peak, times, values
