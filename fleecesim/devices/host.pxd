# Typed attributes of the host's per-request cost (compiled with Cython from
# host.py; fleecesim/_compiled.py). HostDevice keeps ``device`` in its
# ``__dict__``: bare() finds the wrapped device with vars().
from fleecesim.devices.base cimport Device


cdef class Host:
    cdef public double request_cost, memcpy_bandwidth, _cpu_free
    cdef public Device cpu, memcpy
    cdef public object requests, copied


cdef class HostDevice:
    cdef dict __dict__
    cdef public Host host
    cdef public bint copy
