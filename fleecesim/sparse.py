"""Per-cluster state whose memory follows what a run touches.

A 64 TiB disk at 64 KiB clusters has 2^30 clusters: dense numpy state (about
32 bytes a cluster over all the arrays a run keeps) would be 32 GiB, though a
backup and a 1k IOPS guest touch a tiny part of it in any pattern but long
runs. ``SparseArray`` keeps an array of ``n`` values as pages of
``PAGE`` (4096) entries, each page in one of three forms:

* **uniform** (``pages[p] is None``): every entry is ``uval[p]``. An untouched
  page costs a list slot and a value.
* **exceptions** (a dict ``{index in page: value}``): ``uval[p]`` except at a
  few entries. Scattered guest writes land here: a written cluster costs a
  dict entry (~50 bytes; the keys are shared int objects, see ``_KEY``), not a
  page. A page with more than ``limit`` exceptions becomes dense.
* **dense** (a numpy array): ``PAGE`` entries, or ``PAGE // g`` entries that
  each stand for ``g`` consecutive ones (a coarse page: a disk's zero map at
  t0 is uniform over its allocation extents, so a page of it is 64 entries,
  not 4096). A coarse page is refined when a write breaks that uniformity;
  a dense page that a range write leaves uniform becomes uniform again (the
  target behind the backup job is uniform pages, whatever order its copies
  land in).

It answers the subset of numpy indexing the model uses, with numpy's results:
``a[i]`` (a Python scalar), ``a[i] = v``, ``a[lo:hi]`` (a new ndarray: never a
view, so callers never write through it), ``a[lo:hi] = v`` (scalar or array),
``a[lo:hi] += 1`` (Python turns that into a get and a set), integer index
arrays, ``copy``, ``sum`` (bool), ``fill``; and what a whole-disk scan needs
page by page: ``count``, ``first`` (next set or clear entry), ``runs``,
``nonfill``, ``add``, ``widen``, ``set_runs`` (many runs at once).

Cost: a run touches these arrays a million times, mostly a scalar or a short
range inside one page, so those paths avoid per-call allocation and per-entry
Python steps (values already in range skip ``norm``; an exception page is read
and written through dict operations in C); whole-array passes (``count``,
``copy``, the t0 zero map, ``fill``) cost what was touched, not the 2^18 pages
of a 64 TiB disk. Whole-array equality and the data oracle go
through the slice interface in bounded blocks.

``state_mode`` decides per run: numpy arrays (``dense``: the fastest per
access, the model's reference) unless the disk is large (``auto``), or as
configured (``run.state``). Both hold the same values; tests run the bundled
scenarios both ways and compare the summaries.
"""
from __future__ import annotations

from itertools import compress, repeat
from operator import is_, is_not

import numpy as np

PAGE_BITS = 12
PAGE = 1 << PAGE_BITS
MASK = PAGE - 1
# A page's keys as shared int objects: a dict entry keyed by _KEY[i] stores a
# reference, not a new int (ints above 256 are not cached by CPython).
_KEY = tuple(range(PAGE))
SMALL = 32  # ranges up to this long go entry by entry through an exception page

# ``auto``: numpy arrays up to this many clusters (1 TiB at 64 KiB clusters:
# ~512 MiB of dense state, and ~1.5x faster than pages there), sparse beyond.
DENSE_MAX_CLUSTERS = 1 << 24


def state_mode(setting: str, n: int) -> str:
    """``dense`` or ``sparse`` for ``run.state`` (auto/dense/sparse) and ``n`` clusters."""
    if setting == "auto":
        return "sparse" if n > DENSE_MAX_CLUSTERS else "dense"
    return setting


def full(n: int, dtype, fill, sparse: bool):
    """An array of ``n`` entries of ``fill``: numpy, or a SparseArray."""
    if sparse:
        return SparseArray(n, dtype, fill)
    return np.full(n, fill, dtype=dtype)


def is_sparse(a) -> bool:
    return isinstance(a, SparseArray)


def env_sparse(env) -> bool:
    """Does this run keep sparse state (set on the environment by run.py)?"""
    return getattr(env, "sparse", False)


def count(a, lo: int = 0, hi: int | None = None) -> int:
    """Non-zero entries of ``a[lo:hi]``."""
    if isinstance(a, SparseArray):
        return a.count(lo, hi)
    return int(np.count_nonzero(a[lo:hi]))


def first(a, lo: int, hi: int | None = None, nz: bool = True) -> int:
    """First index in [lo, hi) whose entry is non-zero (``nz``) or zero; -1 if none."""
    if isinstance(a, SparseArray):
        return a.first(lo, hi, nz)
    hi = len(a) if hi is None else hi
    while lo < hi:  # windows: an early hit costs little
        e = min(hi, lo + 65536)
        seg = a[lo:e] if nz else ~a[lo:e].astype(bool)
        i = int(seg.argmax())
        if seg[i]:
            return lo + i
        lo = e
    return -1


def _normalizer(dtype: np.dtype):
    """Python values as numpy would store them (unsigned ints wrap)."""
    if dtype == np.bool_:
        return bool
    bits = 8 * dtype.itemsize
    m = (1 << bits) - 1
    if dtype.kind == "u":
        return lambda v: int(v) & m
    if dtype.kind == "i":
        half = 1 << (bits - 1)
        return lambda v: ((int(v) + half) & m) - half
    raise TypeError(f"SparseArray: unsupported dtype {dtype}")


class SparseArray:
    """``n`` values of one numpy dtype in pages allocated on first touch (module doc)."""

    __slots__ = ("n", "dtype", "pages", "uval", "norm", "limit", "shared", "ptype", "vmin",
                 "vmax")

    def __init__(self, n: int, dtype=bool, fill=0):
        self.n = n = int(n)
        self.dtype = np.dtype(dtype)
        self.norm = _normalizer(self.dtype)
        npg = -(-n // PAGE)
        self.uval = [self.norm(fill)] * npg
        self.pages: list = [None] * npg
        # copy-on-write: pages a ``copy`` shares (bytearray per page; None: none)
        self.shared: bytearray | None = None
        # past this many exceptions a dense page is smaller (~48 bytes an entry)
        self.limit = max(SMALL, PAGE * self.dtype.itemsize // 48)
        self._bounds()

    def _bounds(self) -> None:
        """A value of type ``ptype`` in [vmin, vmax] is stored as is: the hot
        paths skip ``norm`` (a Python call) for the values they see (``a[c] += 1``)."""
        if self.dtype == np.bool_:
            self.ptype, self.vmin, self.vmax = bool, False, True
        else:
            info = np.iinfo(self.dtype)
            self.ptype, self.vmin, self.vmax = int, int(info.min), int(info.max)

    # ------------------------------------------------------------ basics
    def __len__(self) -> int:
        return self.n

    @property
    def shape(self) -> tuple[int]:
        return (self.n,)

    @property
    def size(self) -> int:
        return self.n

    def __repr__(self) -> str:
        kinds = [0, 0, 0]
        for pg in self.pages:
            kinds[0 if pg is None else 1 if type(pg) is dict else 2] += 1
        return (f"SparseArray(n={self.n}, dtype={self.dtype}, pages: {kinds[0]} uniform, "
                f"{kinds[1]} with exceptions, {kinds[2]} dense)")

    @classmethod
    def from_dense(cls, arr: np.ndarray) -> "SparseArray":
        arr = np.asarray(arr)
        out = cls(len(arr), arr.dtype, 0)
        for p in range(len(out.pages)):
            out._put_page(p, arr[p << PAGE_BITS:(p + 1) << PAGE_BITS])
        return out

    def to_dense(self) -> np.ndarray:
        return self[0:self.n]

    def copy(self) -> "SparseArray":
        """A copy that shares its pages until either side writes one (then that
        side copies the page first: ``_own``)."""
        out = SparseArray.__new__(SparseArray)
        out.n, out.dtype, out.norm, out.limit = self.n, self.dtype, self.norm, self.limit
        out.ptype, out.vmin, out.vmax = self.ptype, self.vmin, self.vmax
        out.uval = list(self.uval)
        out.pages = list(self.pages)
        flags = bytearray(map(is_not, self.pages, repeat(None)))  # one C loop
        self.shared = flags
        out.shared = bytearray(flags)
        return out

    def _own(self, p: int):
        """Page ``p``, copied first if a copy shares it (before writing it in place)."""
        pg = self.pages[p]
        if self.shared[p]:
            self.shared[p] = 0
            if pg is not None:
                pg = self.pages[p] = pg.copy()
        return pg

    def fill(self, value) -> None:
        v = self.norm(value)
        npg = len(self.pages)
        self.uval = [v] * npg
        self.pages = [None] * npg
        self.shared = None

    def nbytes(self) -> int:
        """Approximate memory held (lists, exception dicts, dense pages)."""
        b = 16 * len(self.pages)
        for pg in self.pages:
            if pg is None:
                continue
            b += 64 + 48 * len(pg) if type(pg) is dict else 112 + pg.nbytes
        return b

    def sum(self) -> int:
        if self.dtype != np.bool_:
            raise TypeError("SparseArray.sum: only for bool arrays (use count)")
        return self.count()

    # ------------------------------------------------------------ pages
    def _page_len(self, p: int) -> int:
        return min(PAGE, self.n - (p << PAGE_BITS))

    def _touched(self) -> list:
        """Indices of the pages that are not uniform, in one C loop (a 64 TiB
        disk has 2^18 pages; a whole-array pass should cost what was touched)."""
        return list(compress(range(len(self.pages)), map(is_not, self.pages, repeat(None))))

    def _dense_page(self, p: int) -> np.ndarray:
        """Page ``p`` as PAGE entries (a new array, or the page itself if dense)."""
        pg = self.pages[p]
        if pg is None:
            return np.full(PAGE, self.uval[p], dtype=self.dtype)
        if type(pg) is dict:
            arr = np.full(PAGE, self.uval[p], dtype=self.dtype)
            if pg:
                arr[np.fromiter(pg.keys(), np.int64, len(pg))] = \
                    np.fromiter(pg.values(), self.dtype, len(pg))
            return arr
        if len(pg) != PAGE:
            return np.repeat(pg, PAGE // len(pg))
        return pg

    def _make_dense(self, p: int) -> np.ndarray:
        """Turn page ``p`` into a full-resolution dense page (owned) and return it."""
        pg = self._own(p) if self.shared is not None else self.pages[p]
        arr = self._dense_page(p)
        if arr is pg:
            return arr
        self.pages[p] = arr
        return arr

    def _put_page(self, p: int, vals: np.ndarray) -> None:
        """Store page ``p`` from ``vals`` (its valid entries): uniform if they all are."""
        ln = len(vals)
        if ln and not np.count_nonzero(vals != vals[0]):
            if ln == PAGE or ln == self._page_len(p):
                self.pages[p] = None
                self.uval[p] = self.norm(vals[0])
                return
        arr = np.empty(PAGE, dtype=self.dtype)
        arr[:ln] = vals
        if ln < PAGE:
            arr[ln:] = vals[-1] if ln else self.uval[p]
        self.pages[p] = arr

    def _maybe_uniform(self, p: int) -> None:
        pg = self.pages[p]
        ln = self._page_len(p)
        v0 = pg[0]
        if pg[ln - 1] == v0 and not np.count_nonzero(pg[:ln] != v0):
            self.pages[p] = None
            self.uval[p] = self.norm(v0)

    def _page_items(self, p: int, lo: int, hi: int):
        """(local indices, values) of page ``p``'s exceptions in [lo, hi)."""
        pg = self.pages[p]
        if hi - lo <= SMALL:
            ks = [i for i in range(lo, hi) if i in pg]
        else:
            ks = [k for k in pg if lo <= k < hi]
        return ks, [pg[k] for k in ks]

    # ------------------------------------------------------------ scalar access
    def _get1(self, c: int):
        p = c >> PAGE_BITS
        pg = self.pages[p]
        if pg is None:
            return self.uval[p]
        i = c & MASK
        if type(pg) is dict:
            v = pg.get(i)
            return self.uval[p] if v is None else v
        ln = len(pg)
        return pg[i if ln == PAGE else i * ln >> PAGE_BITS].item()

    def _set1(self, c: int, v) -> None:
        p = c >> PAGE_BITS
        pg = self.pages[p]
        i = c & MASK
        if pg is not None and self.shared is not None and self.shared[p]:
            pg = self._own(p)
        if pg is None:
            if v != self.uval[p]:
                self.pages[p] = {_KEY[i]: v}
            return
        if type(pg) is dict:
            if v == self.uval[p]:
                if pg.pop(i, None) is not None and not pg:
                    self.pages[p] = None
            else:
                pg[_KEY[i]] = v
                if len(pg) > self.limit:
                    self._make_dense(p)
            return
        ln = len(pg)
        if ln != PAGE:
            if pg[i * ln >> PAGE_BITS] == v:
                return
            pg = self._make_dense(p)
        pg[i] = v

    # ------------------------------------------------------------ indexing
    def __getitem__(self, key):
        if type(key) is slice:
            a, b = key.start, key.stop
            if a is None or b is None or key.step is not None or a < 0 or b > self.n:
                a, b, step = key.indices(self.n)
                if step != 1:
                    raise IndexError("SparseArray: slices with a step are not supported")
            if b <= a:
                return np.empty(0, dtype=self.dtype)
            p = a >> PAGE_BITS
            if (b - 1) >> PAGE_BITS == p:  # within one page: the common case
                pg = self.pages[p]
                if pg is None:
                    out = np.empty(b - a, dtype=self.dtype)
                    out.fill(self.uval[p])
                    return out
                lo = a & MASK
                if type(pg) is dict:
                    if b - a <= SMALL:  # one C loop, no numpy call per entry
                        u = self.uval[p]
                        if self.ptype is bool:  # an exception of a bool page is ``not u``
                            out = np.fromiter(map(pg.__contains__, range(lo, lo + b - a)),
                                              np.bool_, b - a)
                            if u:
                                np.logical_not(out, out=out)
                            return out
                        return np.fromiter(map(pg.get, range(lo, lo + b - a), repeat(u, b - a)),
                                           self.dtype, b - a)
                elif len(pg) == PAGE:
                    return pg[lo:lo + b - a].copy()
                else:  # a coarse page: most short ranges lie in one of its groups
                    g = PAGE // len(pg)
                    if lo // g == (lo + b - a - 1) // g:
                        out = np.empty(b - a, dtype=self.dtype)
                        out.fill(pg[lo // g])
                        return out
            return self._get_range(a, b)
        if type(key) is int:
            if 0 <= key < self.n:  # _get1, inlined: the hottest call
                p = key >> PAGE_BITS
                pg = self.pages[p]
                if pg is None:
                    return self.uval[p]
                if type(pg) is dict:
                    return pg.get(key & MASK, self.uval[p])
                ln = len(pg)
                return pg[key & MASK if ln == PAGE else (key & MASK) * ln >> PAGE_BITS].item()
        elif isinstance(key, np.ndarray):
            if key.dtype == np.bool_:
                raise IndexError("SparseArray: boolean masks are not supported")
            get = self._get1
            return np.array([get(c) for c in key.tolist()], dtype=self.dtype)
        c = int(key)
        if c < 0:
            c += self.n
        if not 0 <= c < self.n:
            raise IndexError(f"index {key} out of range for {self.n}")
        return self._get1(c)

    def __setitem__(self, key, value) -> None:
        if type(key) is slice:
            a, b = key.start, key.stop
            if a is None or b is None or key.step is not None or a < 0 or b > self.n:
                a, b, step = key.indices(self.n)
                if step != 1:
                    raise IndexError("SparseArray: slices with a step are not supported")
            if b <= a:
                return
            if type(value) is np.ndarray:
                if (value.dtype == self.dtype and b - a <= SMALL and value.shape == (b - a,)
                        and (b - 1) >> PAGE_BITS == a >> PAGE_BITS
                        and self._put_few(a, value.tolist())):
                    return
            elif not isinstance(value, (SparseArray, Segment)):
                v = value
                if type(v) is not self.ptype or not self.vmin <= v <= self.vmax:
                    v = self.norm(v)
                if b - a == 1:
                    self._set1(a, v)
                    return
                if a == 0 and b == self.n:  # all of it (a cache dropped at the end)
                    self.fill(v)
                    return
                p = a >> PAGE_BITS
                if (b - 1) >> PAGE_BITS == p:  # one page, one value: the common cases
                    pg = self.pages[p]
                    if pg is None:
                        if v == self.uval[p]:
                            return
                    elif type(pg) is dict and b - a <= SMALL:
                        if self.shared is not None and self.shared[p]:
                            pg = self._own(p)
                        lo = a & MASK
                        if v == self.uval[p]:  # a job clearing its bits: pops, in C
                            for _ in map(pg.pop, range(lo, lo + b - a), repeat(None, b - a)):
                                pass
                            if not pg:
                                self.pages[p] = None
                        else:
                            pg.update(zip(_KEY[lo:lo + b - a], repeat(v)))
                            if len(pg) > self.limit:
                                self._make_dense(p)
                        return
                    elif type(pg) is not dict and len(pg) == PAGE:
                        lo = a & MASK
                        if self.shared is not None and self.shared[p]:
                            pg = self._own(p)
                        pg[lo:lo + b - a] = v
                        self._maybe_uniform(p)
                        return
            self._set_range(a, b, value)
            return
        if type(key) is int and 0 <= key < self.n:
            v = value
            if type(v) is not self.ptype or not self.vmin <= v <= self.vmax:
                v = self.norm(v)
            p = key >> PAGE_BITS
            pg = self.pages[p]
            if pg is None:  # _set1's common cases, inlined (a guest write's gen[c] += 1)
                if v != self.uval[p]:
                    self.pages[p] = {_KEY[key & MASK]: v}
                return  # else already so (a guest write to a written cluster's zero bit)
            if type(pg) is dict and (self.shared is None or not self.shared[p]):
                if v == self.uval[p]:
                    if pg.pop(key & MASK, None) is not None and not pg:
                        self.pages[p] = None
                else:
                    pg[_KEY[key & MASK]] = v
                    if len(pg) > self.limit:
                        self._make_dense(p)
                return
            self._set1(key, v)
            return
        if isinstance(key, np.ndarray):
            if key.dtype == np.bool_:
                raise IndexError("SparseArray: boolean masks are not supported")
            cs = key.tolist()
            set1, norm = self._set1, self.norm
            if isinstance(value, np.ndarray) and value.ndim:
                for c, v in zip(cs, value.tolist()):
                    set1(c, norm(v))
            else:
                v = norm(value)
                for c in cs:
                    set1(c, v)
            return
        c = int(key)
        if c < 0:
            c += self.n
        if not 0 <= c < self.n:
            raise IndexError(f"index {key} out of range for {self.n}")
        self._set1(c, self.norm(value))

    def _put_few(self, a: int, vals: list) -> bool:
        """``a[a:a+len(vals)] = vals`` within one page that is uniform or has
        exceptions, ``vals`` already of this dtype (a copy's few clusters, a
        guest write's ``gen[c0:c1] += 1``): dict updates in C. False if the
        page is dense (the caller takes the general path)."""
        p = a >> PAGE_BITS
        pg = self.pages[p]
        if pg is not None:
            if type(pg) is not dict:
                return False
            if self.shared is not None and self.shared[p]:
                pg = self._own(p)
        lo = a & MASK
        u = self.uval[p]
        if pg is None:
            if u in vals and vals.count(u) == len(vals):
                return True
            pg = self.pages[p] = {}
        pg.update(zip(_KEY[lo:lo + len(vals)], vals))
        if u in vals:  # entries back at the page's value are no exceptions
            for i, x in enumerate(vals, lo):
                if x == u:
                    del pg[i]
            if not pg:
                self.pages[p] = None
                return True
        if len(pg) > self.limit:
            self._make_dense(p)
        return True

    def _get_range(self, a: int, b: int) -> np.ndarray:
        out = np.empty(b - a, dtype=self.dtype)
        pages, uval = self.pages, self.uval
        c = a
        while c < b:
            p = c >> PAGE_BITS
            e = min(b, (p + 1) << PAGE_BITS)
            lo = c & MASK
            hi = lo + (e - c)
            o = c - a
            pg = pages[p]
            if pg is None:
                out[o:o + hi - lo] = uval[p]
            elif type(pg) is dict:
                out[o:o + hi - lo] = uval[p]
                if hi - lo <= SMALL:
                    for i in range(lo, hi):
                        v = pg.get(i)
                        if v is not None:
                            out[o + i - lo] = v
                else:
                    for k, v in pg.items():
                        if lo <= k < hi:
                            out[o + k - lo] = v
            else:
                ln = len(pg)
                if ln == PAGE:
                    out[o:o + hi - lo] = pg[lo:hi]
                else:
                    g = PAGE // ln
                    out[o:o + hi - lo] = np.repeat(pg[lo // g:(hi - 1) // g + 1], g)[
                        lo % g:lo % g + hi - lo]
            c = e
        return out

    def _set_range(self, a: int, b: int, value) -> None:
        if isinstance(value, (SparseArray, Segment)):
            self._assign_pages(a, b, value)
            return
        arr = isinstance(value, np.ndarray) and value.ndim > 0
        if arr:
            if len(value) != b - a:
                raise ValueError(f"SparseArray: cannot assign {len(value)} values to "
                                 f"{b - a} entries")
        else:
            v = self.norm(value)
        pages, uval, norm = self.pages, self.uval, self.norm
        c = a
        while c < b:
            p = c >> PAGE_BITS
            e = min(b, (p + 1) << PAGE_BITS)
            lo = c & MASK
            hi = lo + (e - c)
            pg = pages[p]
            if lo == 0 and (hi == PAGE or e == self.n):  # the whole page
                if arr:
                    self._put_page(p, value[c - a:e - a])
                else:
                    pages[p] = None
                    uval[p] = v
                c = e
                continue
            if pg is not None and self.shared is not None and self.shared[p]:
                pg = self._own(p)
            if pg is None or type(pg) is dict:
                u = uval[p]
                if arr:
                    seg = value[c - a:e - a]
                    if hi - lo <= SMALL:
                        d = pg if pg is not None else {}
                        for i, x in zip(range(lo, hi), seg.tolist()):
                            x = norm(x)
                            if x == u:
                                d.pop(i, None)
                            else:
                                d[_KEY[i]] = x
                        pages[p] = d if d else None
                        if len(d) > self.limit:
                            self._make_dense(p)
                    else:
                        self._make_dense(p)[lo:hi] = seg
                        self._maybe_uniform(p)
                elif v == u:
                    if pg is not None:
                        for i in (range(lo, hi) if hi - lo <= SMALL
                                  else [k for k in pg if lo <= k < hi]):
                            pg.pop(i, None)
                        if not pg:
                            pages[p] = None
                elif hi - lo <= SMALL and (pg is None or len(pg) + hi - lo <= self.limit):
                    d = pg if pg is not None else {}
                    for i in range(lo, hi):
                        d[_KEY[i]] = v
                    pages[p] = d
                else:
                    self._make_dense(p)[lo:hi] = v
                    self._maybe_uniform(p)
            else:
                ln = len(pg)
                if ln != PAGE:
                    g = PAGE // ln
                    if not arr and lo % g == 0 and hi % g == 0:  # stays coarse
                        pg[lo // g:hi // g] = v
                        c = e
                        continue
                    pg = self._make_dense(p)
                pg[lo:hi] = value[c - a:e - a] if arr else v
                self._maybe_uniform(p)  # the write that completes a page (cheap when it does not)
            c = e

    # ------------------------------------------------------------ whole-range work
    def _spans(self, a: int, b: int):
        """(page, lo, hi, offset of lo from a) for the pages [a, b) covers."""
        c = a
        while c < b:
            p = c >> PAGE_BITS
            e = min(b, (p + 1) << PAGE_BITS)
            lo = c & MASK
            yield p, lo, lo + (e - c), c - a
            c = e

    def count(self, lo: int = 0, hi: int | None = None) -> int:
        """Non-zero entries in [lo, hi)."""
        hi = self.n if hi is None else min(hi, self.n)
        if lo == 0 and hi == self.n:  # the whole array: uniform pages by arithmetic
            pages = self.pages
            if not pages:
                return 0
            # uniform pages with a non-zero value, counted in C; the last may be short
            total = PAGE * sum(map(bool, compress(self.uval, map(is_, pages, repeat(None)))))
            last = len(pages) - 1
            if pages[last] is None and self.uval[last]:
                total -= PAGE - self._page_len(last)
            uval = self.uval
            touched = self._touched()
            # exception pages of a zero page: every exception is non-zero (one C sum)
            total += sum(map(len, [pages[p] for p in touched
                                   if not uval[p] and type(pages[p]) is dict]))
            for p in touched:
                pg, u = pages[p], uval[p]
                if type(pg) is dict and not u:
                    continue  # counted above
                ln = self._page_len(p)
                if type(pg) is dict:
                    total += ln - len(pg) + sum(map(bool, pg.values()))
                elif len(pg) == ln:
                    total += int(np.count_nonzero(pg))
                else:
                    total += int(np.count_nonzero(self._dense_page(p)[:ln]))
            return total
        return self._count(lo, hi)

    def _count(self, lo: int, hi: int) -> int:
        total = 0
        pages, uval = self.pages, self.uval
        for p, a, b, _o in self._spans(lo, hi):
            pg = pages[p]
            if pg is None:
                if uval[p]:
                    total += b - a
            elif type(pg) is dict:
                base = 1 if uval[p] else 0
                total += base * (b - a)
                _ks, vs = self._page_items(p, a, b)
                for v in vs:
                    total += (1 if v else 0) - base
            else:
                ln = len(pg)
                if ln == PAGE:
                    total += int(np.count_nonzero(pg[a:b]))
                else:
                    total += int(np.count_nonzero(self._dense_page(p)[a:b]))
        return total

    def first(self, lo: int, hi: int | None = None, nz: bool = True) -> int:
        """First index in [lo, hi) whose entry is non-zero (``nz``) or zero; -1 if none.

        Uniform pages that do not match are skipped in a tight loop (the job
        looking for its next dirty cluster crosses a few clean pages each time)."""
        hi = self.n if hi is None else min(hi, self.n)
        if lo >= hi:
            return -1
        pages, uval = self.pages, self.uval
        p, last = lo >> PAGE_BITS, (hi - 1) >> PAGE_BITS
        a = lo & MASK
        while p <= last:
            pg = pages[p]
            if pg is None:
                if bool(uval[p]) == nz:
                    return max(lo, p << PAGE_BITS)
                p += 1
                while p <= last and pages[p] is None and bool(uval[p]) != nz:
                    p += 1
                a = 0
                continue
            base = p << PAGE_BITS
            b = PAGE if p < last else hi - base
            if type(pg) is dict:
                u = uval[p]
                if bool(u) == nz:  # the first entry that is not an exception against
                    get = pg.get
                    for i in range(a, b):
                        v = get(i)
                        if v is None or bool(v) == nz:
                            return base + i
                elif not u:  # u == 0: every exception is non-zero
                    hits = [k for k in pg if a <= k < b]
                    if hits:
                        return base + min(hits)
                else:
                    hits = [k for k, v in pg.items() if a <= k < b and bool(v) == nz]
                    if hits:
                        return base + min(hits)
            else:
                seg = self._dense_page(p)[a:b]
                m = seg != 0 if nz else seg == 0
                i = int(m.argmax())
                if m[i]:
                    return base + a + i
            p += 1
            a = 0
        return -1

    def runs(self, lo: int = 0, hi: int | None = None):
        """Runs [s, e) of non-zero entries in [lo, hi), ascending."""
        hi = self.n if hi is None else min(hi, self.n)
        c = lo
        while c < hi:
            s = self.first(c, hi, True)
            if s < 0:
                return
            e = self.first(s, hi, False)
            e = hi if e < 0 else e
            yield s, e
            c = e

    def nonfill(self, lo: int, hi: int, value) -> np.ndarray:
        """Indices in [lo, hi) whose entry differs from ``value`` (ascending)."""
        v = self.norm(value)
        hi = min(hi, self.n)
        npg = len(self.pages)
        if lo == 0 and hi == self.n and self.uval.count(v) == npg and \
                all(pg is None for pg in self.pages):  # all of it uniform (a cache at t0)
            return np.zeros(0, dtype=np.int64)
        parts = []
        pages, uval = self.pages, self.uval
        for p, a, b, _o in self._spans(lo, hi):
            pg = pages[p]
            base = p << PAGE_BITS
            if pg is None:
                if uval[p] != v:
                    parts.append(np.arange(base + a, base + b, dtype=np.int64))
            elif type(pg) is dict and uval[p] == v:
                ks = sorted(k for k, x in pg.items() if a <= k < b and x != v)
                if ks:
                    parts.append(np.asarray(ks, dtype=np.int64) + base)
            else:
                seg = self._dense_page(p)[a:b]
                idx = np.flatnonzero(seg != v)
                if idx.size:
                    parts.append(idx + (base + a))
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)

    def add(self, lo: int, hi: int, delta: int) -> None:
        """``a[lo:hi] += delta`` without materialising the range (wraps as numpy)."""
        delta = self.norm(delta)
        if hi - lo <= SMALL:
            p = lo >> PAGE_BITS
            pg = self.pages[p]
            if (hi - 1) >> PAGE_BITS == p and lo < hi and (pg is None or type(pg) is dict):
                # a copy's few clusters (the target's copy counts): the new values
                # as one list, stored by _put_few; norm only if one wraps
                u = self.uval[p]
                if pg is None:
                    vals = [u + delta] * (hi - lo)
                else:
                    get, a = pg.get, lo & MASK
                    vals = [get(i, u) + delta for i in range(a, a + hi - lo)]
                if self.ptype is not int or not (self.vmin <= min(vals)
                                                 and max(vals) <= self.vmax):
                    vals = list(map(self.norm, vals))
                self._put_few(lo, vals)
                return
            if (hi - 1) >> PAGE_BITS == p and pg is not None:
                if self.shared is not None and self.shared[p]:
                    pg = self._own(p)
                a = lo & MASK
                if len(pg) == PAGE:
                    seg = pg[a:a + hi - lo]
                    seg += np.asarray(delta, self.dtype)  # in place, wrapping as numpy
                    self._maybe_uniform(p)
                    return
            self._set_range(lo, hi, self[lo:hi] + np.asarray(delta, self.dtype))
            return
        pages, uval, norm = self.pages, self.uval, self.norm
        for p, a, b, _o in self._spans(lo, min(hi, self.n)):
            pg = pages[p]
            whole = a == 0 and (b == PAGE or (p << PAGE_BITS) + b == self.n)
            if whole and pg is None:
                uval[p] = norm(uval[p] + delta)
            elif whole and type(pg) is dict:
                uval[p] = norm(uval[p] + delta)
                if self.shared is not None and self.shared[p]:
                    pg = self._own(p)
                for k in pg:
                    pg[k] = norm(pg[k] + delta)
                if self.ptype is bool:  # bool addition is an or: keep exceptions != uval
                    u = uval[p]
                    for k in [k for k, v in pg.items() if v == u]:
                        del pg[k]
                    if not pg:
                        pages[p] = None
            else:
                s = (p << PAGE_BITS) + a
                self._set_range(s, s + b - a, self[s:s + b - a] + np.asarray(delta, self.dtype))

    def set_runs(self, starts, ends, value=True) -> None:
        """``a[s:e] = value`` for every run [s, e) of ``starts``/``ends`` (runs
        may overlap), in bulk: the runs inside one page (most, when they are
        short) are grouped by page and written as one dict update or slice
        each, instead of one indexing call a run (an incremental bitmap of a
        64 TiB disk is 65 k runs)."""
        v = self.norm(value)
        s = np.asarray(starts, dtype=np.int64)
        e = np.minimum(np.asarray(ends, dtype=np.int64), self.n)
        keep = e > s
        s, e = s[keep], e[keep]
        p0 = s >> PAGE_BITS
        one = p0 == (e - 1) >> PAGE_BITS
        for a, b in zip(s[~one].tolist(), e[~one].tolist()):  # across pages: the general path
            self._set_range(a, b, v)
        s, e, p0 = s[one], e[one], p0[one]
        if not s.size:
            return
        o = np.argsort(p0, kind="stable")
        s, e, p0 = s[o] & MASK, e[o] - (p0[o] << PAGE_BITS), p0[o]
        firsts = np.flatnonzero(np.concatenate(([True], p0[1:] != p0[:-1])))
        bounds = firsts.tolist() + [len(p0)]
        los, his, pgs = s.tolist(), e.tolist(), p0[firsts].tolist()
        pages, uval, limit = self.pages, self.uval, self.limit
        for p, i, j in zip(pgs, bounds, bounds[1:]):
            pg = pages[p]
            if pg is None:
                if uval[p] == v:
                    continue
                if j == i + 1 and his[i] - los[i] <= SMALL:  # one short run: most pages
                    pages[p] = dict.fromkeys(_KEY[los[i]:his[i]], v)
                    continue
            if pg is not None and self.shared is not None and self.shared[p]:
                pg = self._own(p)
            spans = list(zip(los[i:j], his[i:j]))
            if pg is None or type(pg) is dict:
                # as _set_range does: a run longer than SMALL makes the page dense
                if max(hi - lo for lo, hi in spans) <= SMALL and \
                        sum(hi - lo for lo, hi in spans) + (len(pg) if pg else 0) <= limit:
                    d = {} if pg is None else pg
                    if v == uval[p]:
                        for lo, hi in spans:
                            for _ in map(d.pop, range(lo, hi), repeat(None, hi - lo)):
                                pass
                    else:
                        for lo, hi in spans:
                            d.update(zip(_KEY[lo:hi], repeat(v)))
                    pages[p] = d if d else None
                    continue
            arr = self._make_dense(p)
            for lo, hi in spans:
                arr[lo:hi] = v
            self._maybe_uniform(p)

    def segment(self, lo: int, hi: int) -> "Segment":
        """A copy of the content of [lo, hi), to assign later (``a[lo:hi] = seg``)."""
        return Segment(self, lo, hi)

    def _page_repr(self, p: int):
        return self.uval[p], self.pages[p]

    def _assign_pages(self, a: int, b: int, src) -> None:
        """``self[a:b] = src[a:b]`` for a SparseArray or Segment ``src`` over the
        same index space: whole pages by their representation."""
        for p, lo, hi, _o in self._spans(a, b):
            u, pg = src._page_repr(p)
            if lo == 0 and (hi == PAGE or (p << PAGE_BITS) + hi == self.n):
                self.uval[p] = self.norm(u)
                self.pages[p] = pg if pg is None else pg.copy()
            else:
                s = (p << PAGE_BITS) + lo
                self._set_range(s, s + hi - lo, _page_slice(u, pg, lo, hi, self.dtype))

    def widen(self, k: int, all_: bool = False) -> "SparseArray":
        """bitmap.widen for a bool SparseArray (k divides PAGE: groups never
        straddle pages)."""
        out = SparseArray(self.n, bool, False)
        if k <= 1:
            return self.copy()
        if PAGE % k:
            raise ValueError(f"SparseArray.widen: group of {k} does not divide a page")
        from .bitmap import widen
        for p, pg in enumerate(self.pages):
            if pg is None:
                out.uval[p] = bool(self.uval[p])
            else:
                ln = self._page_len(p)
                out._put_page(p, widen(self._dense_page(p)[:ln], k, all_))
        return out

    def __eq__(self, other):  # pragma: no cover - guard against silent misuse
        raise TypeError("SparseArray: compare through slices (a[lo:hi] == ...) or helpers")

    __hash__ = None


def _page_slice(u, pg, lo: int, hi: int, dtype) -> np.ndarray:
    """Entries [lo, hi) of a page given as (uniform value, representation)."""
    out = np.full(hi - lo, u, dtype=dtype)
    if pg is None:
        return out
    if type(pg) is dict:
        for k, v in pg.items():
            if lo <= k < hi:
                out[k - lo] = v
        return out
    ln = len(pg)
    if ln == PAGE:
        return pg[lo:hi].copy()
    g = PAGE // ln
    return np.repeat(pg, g)[lo:hi]


class Segment:
    """The content of [lo, hi) of a SparseArray at one moment (pages copied),
    in the array's own index space, plus point overrides (``put``). What a
    copy of a long range carries (a bulk of write-zeroes: jobs/bulk.py)."""

    __slots__ = ("lo", "hi", "dtype", "_pages", "_over")

    def __init__(self, src: SparseArray, lo: int, hi: int):
        self.lo, self.hi, self.dtype = lo, hi, src.dtype
        self._pages = {}
        for p in range(lo >> PAGE_BITS, ((hi - 1) >> PAGE_BITS) + 1 if hi > lo else 0):
            pg = src.pages[p]
            self._pages[p] = (src.uval[p], pg if pg is None else pg.copy())
        self._over = None

    def __len__(self) -> int:
        return self.hi - self.lo

    def put(self, idx: np.ndarray, vals: np.ndarray) -> None:
        """Entries at absolute indices ``idx`` (in [lo, hi)) are ``vals`` instead."""
        if not len(idx):
            return
        tmp = SparseArray(0, self.dtype)
        for c, v in zip(idx.tolist(), vals.tolist()):
            p = c >> PAGE_BITS
            u, pg = self._pages[p]
            if pg is None or type(pg) is dict:
                d = {} if pg is None else pg
                v = tmp.norm(v)
                if v == u:
                    d.pop(c & MASK, None)
                else:
                    d[_KEY[c & MASK]] = v
                self._pages[p] = (u, d if d else None)
            else:
                if len(pg) != PAGE:
                    pg = np.repeat(pg, PAGE // len(pg))
                    self._pages[p] = (u, pg)
                pg[c & MASK] = v

    def _page_repr(self, p: int):
        return self._pages[p]

    def to_dense(self) -> np.ndarray:
        out = np.empty(self.hi - self.lo, dtype=self.dtype)
        c = self.lo
        while c < self.hi:
            p = c >> PAGE_BITS
            e = min(self.hi, (p + 1) << PAGE_BITS)
            u, pg = self._pages[p]
            out[c - self.lo:e - self.lo] = _page_slice(u, pg, c & MASK, (c & MASK) + e - c,
                                                       self.dtype)
            c = e
        return out


def zero_map_from_extents(n: int, per: int, zero_extents: np.ndarray) -> SparseArray:
    """The t0 zero map as a SparseArray: ``zero_extents[j]`` says whether extent
    j (``per`` clusters) reads as zeroes; a page is uniform or a coarse page of
    its extents (``run.initial_zero_map``'s dense ``np.repeat`` layout)."""
    out = SparseArray(n, bool, False)
    npg = len(out.pages)
    if per >= PAGE:  # an extent covers whole pages
        pp = per // PAGE
        out.uval = np.repeat(np.asarray(zero_extents, dtype=bool), pp)[:npg].tolist()
        return out
    epp = PAGE // per  # extents per page
    ext = zero_extents
    full_pages = len(ext) // epp
    if full_pages:
        # one copy of the extents; a mixed page is a view of its row (no array a
        # page to allocate), a uniform one is None. The pages' lists in one go.
        blocks = np.array(ext[:full_pages * epp], dtype=bool).reshape(full_pages, epp)
        s = np.count_nonzero(blocks, axis=1)
        mixed = ((s > 0) & (s < epp)).tolist()
        out.pages[:full_pages] = [row if m else None for row, m in zip(blocks, mixed)]
        out.uval[:full_pages] = (s == epp).tolist()
    for p in range(full_pages, len(out.pages)):  # a short last page
        lo = p << PAGE_BITS
        out._put_page(p, np.repeat(ext[p * epp:], per)[:n - lo])
    return out


def oracle_pages(target_gen, copies, t0_gen, mask):
    """run.oracle_counts on SparseArrays, page by page: pages uniform in all four
    arrays (most of a large disk) by arithmetic, the others densely."""
    violations = multi = outside = wrong = 0
    n = len(t0_gen)
    mbool = mask.dtype == np.bool_
    pages = zip(target_gen.pages, target_gen.uval, copies.pages, copies.uval,
                t0_gen.pages, t0_gen.uval, mask.pages, mask.uval)
    for p, (pg, ug, pc, uc, pt, ut, pm, um) in enumerate(pages):
        ln = min(PAGE, n - (p << PAGE_BITS))
        if pg is None and pc is None and pt is None and pm is None:
            differ = ug != ut
            violations += ln * (differ and bool(um))
            multi += ln * (uc > 1)
            outside += ln * (uc > 0 and not um)
            wrong += ln * (differ and uc > 0)
            continue
        if (pt is None and not um and uc == 0 and mbool and type(pg) is dict
                and type(pc) is dict and type(pm) is dict and len(pg) == len(pc) == len(pm)
                and pg.keys() == pc.keys() == pm.keys()
                and list(pc.values()).count(1) == len(pc)):
            # an incremental backup's common page, by C calls: the mask asks for
            # its exceptions (all True: a bool page's exceptions are ``not um``),
            # each was copied once and nothing else was; the guest wrote none of
            # it before t0. Only copies whose content is not the t0 content
            # (``ut``) count: as violations and as wrong.
            d = len(pg) - list(pg.values()).count(ut)
            violations += d
            wrong += d
            continue
        if all(x is None or type(x) is dict for x in (pg, pc, pt, pm)):
            # exceptions only: the clusters any of them names, the rest by arithmetic
            keys = set()
            for x in (pg, pc, pt, pm):
                if x:
                    keys.update(x)
            keys = [k for k in keys if k < ln]
            rest = ln - len(keys)
            differ = ug != ut
            violations += rest * (differ and bool(um))
            multi += rest * (uc > 1)
            outside += rest * (uc > 0 and not um)
            wrong += rest * (differ and uc > 0)
            for k in keys:
                g = pg.get(k, ug) if pg else ug
                c = pc.get(k, uc) if pc else uc
                t = pt.get(k, ut) if pt else ut
                m = pm.get(k, um) if pm else um
                d = g != t
                violations += d and bool(m)
                multi += c > 1
                outside += c > 0 and not m
                wrong += d and c > 0
            continue
        g = target_gen._dense_page(p)[:ln]
        c = copies._dense_page(p)[:ln]
        t = t0_gen._dense_page(p)[:ln]
        m = mask._dense_page(p)[:ln]
        d = g != t
        violations += int(np.count_nonzero(d & m))
        multi += int(np.count_nonzero(c > 1))
        outside += int(np.count_nonzero((c > 0) & ~m))
        wrong += int(np.count_nonzero(d & (c > 0)))
    return violations, multi, outside, wrong


def differs(a, b):
    """Elementwise ``a != b`` (bool) for two arrays of one index space."""
    if not isinstance(a, SparseArray) and not isinstance(b, SparseArray):
        return a != b
    out = SparseArray(len(a), bool, False)
    for p in range(len(out.pages)):
        ua, pa = a._page_repr(p)
        ub, pb = b._page_repr(p)
        if pa is None and pb is None:
            out.uval[p] = ua != ub
            continue
        ln = out._page_len(p)
        out._put_page(p, a._dense_page(p)[:ln] != b._dense_page(p)[:ln])
    return out
