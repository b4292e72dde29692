# Compiled build (Cython): the copy-before-write filter as a typed class
# (the fields its fast path reads are C fields; the rest in its __dict__).
# nodes/cbw.py stays the one source.
import cython
from .base cimport Node


cdef class CBWFilter(Node):
    cdef dict __dict__
    cdef public object file, copier, cache, frozen
    cdef public bint active, _plain_reads, lazy_discard
    cdef public object k
